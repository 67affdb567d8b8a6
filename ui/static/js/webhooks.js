// Webhooks: every user's endpoints with their health, and one endpoint's
// deliveries, each of which can be sent again (replay).
import { h, replace } from './dom.js';
import { api, query } from './api.js';
import { badge, time } from './format.js';
import { confirmDialog } from './dialog.js';

export const title = 'Webhooks';
const PAGE = 25;

export function render(main, ctx) {
  if (ctx.params.id) return renderEndpoint(main, ctx, ctx.params.id);
  const cursor = ctx.query.get('cursor') || '';
  const results = h('div', { 'aria-live': 'polite', 'aria-busy': 'true' }, h('p', {}, 'Loading…'));
  main.append(h('h1', {}, 'Webhooks'),
    h('p', { class: 'muted' }, 'Every user’s endpoints, oldest first. An endpoint failing in a row, or disabled with a reason, is one to look at.'),
    results);
  const ctrl = new AbortController();
  api(`/api/admin/webhooks${query({ limit: PAGE, cursor })}`, { signal: ctrl.signal })
    .then((list) => {
      results.setAttribute('aria-busy', 'false');
      replace(results, endpointsTable(list.endpoints, cursor), pager('/ui/webhooks', list.nextCursor, cursor));
    })
    .catch((err) => {
      if (err.name === 'AbortError' || ctx.fail(err)) return;
      results.setAttribute('aria-busy', 'false');
      replace(results, h('p', { class: 'alert' }, `Could not list webhook endpoints: ${err.message}`));
    });
  return () => ctrl.abort();
}

function health(e) {
  if (!e.enabled) return h('span', { class: 'badge FAILED' }, 'DISABLED');
  if (e.consecutiveFailures > 0) return h('span', { class: 'badge PROCESSING' }, 'FAILING');
  return h('span', { class: 'badge COMPLETED' }, 'OK');
}

function endpointsTable(endpoints, cursor) {
  if (endpoints.length === 0) return h('p', {}, cursor ? 'No more endpoints.' : 'No user has a webhook endpoint.');
  const th = (t, cls) => h('th', { scope: 'col', class: cls }, t);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', {}, 'Webhook endpoints'),
    h('thead', {}, h('tr', {}, th('Endpoint'), th('User'), th('URL'), th('Events'), th('Health'), th('Failures in a row', 'num'), th('Last success'), th('Reason'))),
    h('tbody', {}, endpoints.map((e) => h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: `/ui/webhooks/${e.id}`, class: 'mono' }, e.id)),
      h('td', {}, h('a', { href: `/ui/jobs${query({ userId: e.userId })}` }, e.userId || '')),
      h('td', { class: 'mono' }, e.url),
      h('td', {}, e.eventTypes.join(', ')),
      h('td', {}, health(e)),
      h('td', { class: 'num' }, e.consecutiveFailures),
      h('td', {}, time(e.lastSuccessAt)),
      h('td', {}, e.disabledReason || h('span', { class: 'muted' }, '—')),
    ))),
  ));
}

function pager(base, next, cursor) {
  return h('nav', { 'aria-label': 'Pages', class: 'actions' },
    cursor ? h('a', { href: base, class: 'button' }, 'First page') : null,
    next ? h('a', { href: `${base}${query({ cursor: next })}`, class: 'button', rel: 'next' }, 'Next page') : null);
}

function renderEndpoint(main, ctx, id) {
  const cursor = ctx.query.get('cursor') || '';
  const message = h('div', { 'aria-live': 'polite' });
  const results = h('div', { 'aria-live': 'polite', 'aria-busy': 'true' }, h('p', {}, 'Loading…'));
  main.append(h('h1', {}, 'Webhook deliveries'),
    h('p', {}, 'Endpoint ', h('span', { class: 'mono' }, id), '. Newest first; each delivery’s id is its ', h('span', { class: 'mono' }, 'webhook-id'), '.'),
    message, results);
  const ctrl = new AbortController();
  const base = `/ui/webhooks/${id}`;

  async function load() {
    try {
      const list = await api(`/api/admin/webhooks/${id}/deliveries${query({ limit: PAGE, cursor })}`, { signal: ctrl.signal });
      results.setAttribute('aria-busy', 'false');
      replace(results, deliveriesTable(list.deliveries, cursor, replay), pager(base, list.nextCursor, cursor));
    } catch (err) {
      if (err.name === 'AbortError' || ctx.fail(err)) return;
      results.setAttribute('aria-busy', 'false');
      replace(results, h('p', { class: 'alert' }, `Could not list deliveries: ${err.message}`));
    }
  }

  async function replay(d) {
    const ok = await confirmDialog({
      title: 'Send this delivery again?',
      body: `It is queued at once with the same webhook-id (${d.id}) and a fresh run of retries; your user name is logged.`,
      confirm: 'Replay',
    });
    if (!ok) return;
    try {
      await api(`/api/admin/webhooks/${id}/deliveries/${d.id}/replay`, { method: 'POST', signal: ctrl.signal });
      replace(message, h('p', { class: 'notice' }, 'The delivery was queued again.'));
      await load();
    } catch (err) {
      if (err.name === 'AbortError' || ctx.fail(err)) return;
      replace(message, h('p', { class: 'alert' }, `Could not replay: ${err.message}`));
    }
  }

  load();
  return () => ctrl.abort();
}

function deliveriesTable(deliveries, cursor, replay) {
  if (deliveries.length === 0) return h('p', {}, cursor ? 'No more deliveries.' : 'No delivery yet.');
  const th = (t, cls) => h('th', { scope: 'col', class: cls }, t);
  const dash = (v) => (v === null || v === undefined ? h('span', { class: 'muted' }, '—') : v);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', {}, 'Deliveries, newest first'),
    h('thead', {}, h('tr', {}, th('Delivery'), th('Event'), th('Job'), th('Status'), th('Attempts', 'num'), th('Last answer', 'num'), th('Latency', 'num'), th('Next retry'), th('Last error'), th('Action'))),
    h('tbody', {}, deliveries.map((d) => h('tr', {},
      h('th', { scope: 'row', class: 'mono' }, d.id),
      h('td', {}, d.eventType),
      h('td', {}, d.jobId ? h('a', { href: `/ui/jobs/${d.jobId}`, class: 'mono' }, d.jobId) : dash(null)),
      h('td', {}, badge(d.status === 'DELIVERED' ? 'COMPLETED' : d.status === 'PENDING' ? 'PENDING' : 'FAILED', false, d.status)),
      h('td', { class: 'num' }, d.attempts),
      h('td', { class: 'num' }, dash(d.lastStatusCode)),
      h('td', { class: 'num' }, d.lastLatencyMs === null ? dash(null) : `${d.lastLatencyMs} ms`),
      h('td', {}, time(d.nextAttemptAt)),
      h('td', {}, dash(d.lastError)),
      h('td', {}, h('button', { type: 'button', onclick: () => replay(d), 'aria-label': `Replay delivery ${d.id}` }, 'Replay')),
    ))),
  ));
}
