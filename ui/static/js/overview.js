// Overview: the queue at a glance, refreshed every few seconds.
import { h, replace } from './dom.js';
import { api } from './api.js';
import { perMinuteChart } from './chart.js';
import { clock, count, duration, time, TYPES } from './format.js';

const REFRESH_MS = 3000;

export const title = 'Overview';

export function render(main, ctx) {
  const updated = h('p', { class: 'live' }, 'Loading…');
  const body = h('div', {});
  main.append(h('div', { class: 'heading-row' }, h('h1', {}, 'Overview'), updated), body);

  let ctrl = new AbortController();
  let detailsOpen = false;
  body.addEventListener('toggle', (e) => { if (e.target.tagName === 'DETAILS') detailsOpen = e.target.open; }, true);

  async function refresh() {
    if (document.hidden) return;
    try {
      const stats = await api('/api/admin/stats', { signal: ctrl.signal });
      draw(body, stats);
      const d = body.querySelector('details');
      if (d) d.open = detailsOpen;
      updated.className = 'live on';
      updated.textContent = `Live · updated ${clock(new Date())}`;
    } catch (err) {
      if (err.name === 'AbortError') return;
      if (ctx.fail(err)) return;
      updated.className = 'live';
      updated.textContent = `Could not refresh: ${err.message}`;
    }
  }
  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => {
    clearInterval(timer);
    ctrl.abort();
  };
}

function sum(list, pred) {
  return list.filter(pred).reduce((a, c) => a + c.count, 0);
}

function draw(body, st) {
  const pending = sum(st.queued, (c) => c.status === 'PENDING');
  const processing = sum(st.queued, (c) => c.status === 'PROCESSING');
  const completed = sum(st.finishedLastHour, (c) => c.status === 'COMPLETED');
  const failed = sum(st.finishedLastHour, (c) => c.status === 'FAILED');
  const capacity = st.workers.reduce((a, w) => a + w.concurrency, 0);
  const inFlight = st.workers.reduce((a, w) => a + w.inFlight, 0);
  const atLeast = st.queuedCapped ? 'at least ' : '';

  const card = (label, value, href) => h('div', { class: 'card' },
    h('dt', {}, label), h('dd', {}, href ? h('a', { href }, value) : value));
  const cards = h('dl', { class: 'cards' },
    card('Pending', atLeast + count(pending), '/ui/jobs?status=PENDING'),
    card('Processing', atLeast + count(processing), '/ui/jobs?status=PROCESSING'),
    card('Completed, last hour', count(completed)),
    card('Failed, last hour', count(failed), '/ui/jobs?status=FAILED'),
    card('Oldest pending', st.oldestPendingSeconds === null ? 'none' : duration(st.oldestPendingSeconds)),
    card('Workers', `${st.workers.length} · ${inFlight}/${capacity} busy`),
  );

  replace(body,
    h('section', { 'aria-labelledby': 'h-now' }, h('h2', { id: 'h-now', class: 'visually-hidden' }, 'Now'), cards),
    h('section', { 'aria-labelledby': 'h-chart' }, h('h2', { id: 'h-chart' }, 'Finished per minute, last hour'), perMinuteChart(st.perMinute)),
    h('section', { 'aria-labelledby': 'h-types' }, h('h2', { id: 'h-types' }, 'By type'), typeTable(st)),
    h('section', { 'aria-labelledby': 'h-workers' }, h('h2', { id: 'h-workers' }, 'Workers'), workerTable(st.workers)),
  );
}

function typeTable(st) {
  const get = (list, type, status) => sum(list, (c) => c.type === type && c.status === status);
  const types = TYPES.filter((t) => st.queued.some((c) => c.type === t) || st.finishedLastHour.some((c) => c.type === t));
  if (types.length === 0) return h('p', {}, 'No job is queued and none finished in the last hour.');
  const th = (t, cls) => h('th', { scope: 'col', class: cls }, t);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', {}, 'Jobs queued now and finished in the last hour, by type'),
    h('thead', {}, h('tr', {}, th('Type'), th('Pending', 'num'), th('Processing', 'num'), th('Completed, 1 h', 'num'), th('Failed, 1 h', 'num'))),
    h('tbody', {}, types.map((t) => h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: `/ui/jobs?type=${t}` }, t)),
      h('td', { class: 'num' }, count(get(st.queued, t, 'PENDING'))),
      h('td', { class: 'num' }, count(get(st.queued, t, 'PROCESSING'))),
      h('td', { class: 'num' }, count(get(st.finishedLastHour, t, 'COMPLETED'))),
      h('td', { class: 'num' }, count(get(st.finishedLastHour, t, 'FAILED'))),
    ))),
  ));
}

function workerTable(workers) {
  if (workers.length === 0) return h('p', {}, 'No worker has been seen in the last minute.');
  const th = (t, cls) => h('th', { scope: 'col', class: cls }, t);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', {}, 'Workers seen in the last minute'),
    h('thead', {}, h('tr', {}, th('Worker'), th('Host'), th('PID', 'num'), th('Version'), th('Started'), th('Last seen'), th('Load'))),
    h('tbody', {}, workers.map((w) => h('tr', {},
      h('th', { scope: 'row', class: 'mono' }, w.id),
      h('td', {}, w.host),
      h('td', { class: 'num' }, w.pid),
      h('td', { class: 'mono' }, w.version),
      h('td', {}, time(w.startedAt)),
      h('td', {}, time(w.lastSeenAt)),
      h('td', {},
        h('meter', { min: 0, max: w.concurrency, value: w.inFlight, 'aria-label': `Load of ${w.id}` }),
        ` ${w.inFlight} / ${w.concurrency}`),
    ))),
  ));
}
