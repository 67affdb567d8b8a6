// The completed/failed per minute chart: stacked bars in an SVG drawn
// here, with the same numbers as a table for screen readers and keyboards.
import { h, s } from './dom.js';
import { count } from './format.js';

const W = 720, H = 180, PAD_L = 36, PAD_B = 22, PAD_T = 8;

function minuteLabel(iso) {
  return new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', hour12: false });
}

/** perMinuteChart(perMinute) → element; perMinute is oldest first. */
export function perMinuteChart(perMinute) {
  const max = Math.max(1, ...perMinute.map((m) => m.completed + m.failed));
  const total = perMinute.reduce((a, m) => ({ c: a.c + m.completed, f: a.f + m.failed }), { c: 0, f: 0 });
  const plotW = W - PAD_L - 4, plotH = H - PAD_B - PAD_T;
  const slot = plotW / Math.max(perMinute.length, 1);
  const y = (v) => PAD_T + plotH - (v / max) * plotH;

  const bars = perMinute.map((m, i) => {
    const x = PAD_L + i * slot + 1;
    const w = Math.max(slot - 2, 1);
    const label = `${minuteLabel(m.minute)}: ${m.completed} completed, ${m.failed} failed`;
    return s('g', {},
      s('title', {}, label),
      m.completed > 0 && s('rect', { class: 'completed', x, width: w, y: y(m.completed), height: y(0) - y(m.completed) }),
      m.failed > 0 && s('rect', { class: 'failed', x, width: w, y: y(m.completed + m.failed), height: y(m.completed) - y(m.completed + m.failed) }),
    );
  });
  const first = perMinute[0], last = perMinute[perMinute.length - 1];
  const summary = `Last hour: ${count(total.c)} completed, ${count(total.f)} failed; busiest minute ${count(max === 1 && total.c + total.f === 0 ? 0 : max)} jobs.`;
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc', focusable: 'false' },
    s('title', { id: 'chart-title' }, 'Jobs finished per minute over the last hour'),
    s('desc', { id: 'chart-desc' }, summary),
    s('line', { class: 'axis', x1: PAD_L, x2: W - 4, y1: y(0), y2: y(0) }),
    s('line', { class: 'axis', x1: PAD_L, x2: W - 4, y1: y(max), y2: y(max) }),
    s('text', { x: PAD_L - 6, y: y(max) + 4, 'text-anchor': 'end' }, String(max)),
    s('text', { x: PAD_L - 6, y: y(0) + 4, 'text-anchor': 'end' }, '0'),
    first && s('text', { x: PAD_L, y: H - 6 }, minuteLabel(first.minute)),
    last && s('text', { x: W - 4, y: H - 6, 'text-anchor': 'end' }, 'now'),
    bars,
  );
  const rows = perMinute.filter((m) => m.completed + m.failed > 0);
  const table = h('details', {},
    h('summary', {}, 'The numbers, by minute'),
    rows.length === 0 ? h('p', {}, 'No job finished in the last hour.') :
      h('table', {},
        h('caption', {}, 'Minutes in which jobs finished'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Minute'), h('th', { scope: 'col', class: 'num' }, 'Completed'), h('th', { scope: 'col', class: 'num' }, 'Failed'))),
        h('tbody', {}, rows.map((m) => h('tr', {}, h('td', {}, minuteLabel(m.minute)), h('td', { class: 'num' }, m.completed), h('td', { class: 'num' }, m.failed)))),
      ),
  );
  return h('figure', { class: 'chart-figure' },
    svg,
    h('figcaption', {},
      h('div', { class: 'legend' },
        h('span', {}, h('span', { class: 'swatch completed' }), `Completed (${count(total.c)})`),
        h('span', {}, h('span', { class: 'swatch failed' }), `Failed (${count(total.f)})`)),
      table),
  );
}
