// A job's result as formatted JSON. Results can be megabytes: the first
// 64 KiB show at once, the rest on request, appended a slice per animation
// frame so the page stays responsive; each slice is a block that the
// browser lays out only when scrolled to (content-visibility).
import { h } from './dom.js';
import { bytes } from './format.js';

const FIRST = 64 * 1024;
const STEP = 1024 * 1024;
const SLICE = 128 * 1024;

export function jsonView(value, label) {
  const text = JSON.stringify(value, null, 2);
  const pre = h('pre', { class: 'json', tabindex: '0', 'aria-label': label });
  let shown = 0;
  const status = h('span', { class: 'muted', 'aria-live': 'polite' });
  const more = h('button', { type: 'button' }, `Show ${bytes(STEP)} more`);
  const all = h('button', { type: 'button' }, 'Show all');
  const controls = h('div', { class: 'actions' }, status, more, all);

  // appendUpTo adds text up to about n characters, ending at a line break.
  const appendUpTo = (n) => {
    let end = Math.min(text.length, shown + n);
    if (end < text.length) {
      const nl = text.lastIndexOf('\n', end);
      if (nl > shown) end = nl + 1;
    }
    pre.append(h('span', { class: 'chunk' }, text.slice(shown, end)));
    shown = end;
  };
  const update = () => {
    if (shown >= text.length) {
      controls.remove();
      return;
    }
    status.textContent = `Showing ${bytes(shown)} of ${bytes(text.length)}.`;
  };
  const grow = (target, done) => {
    more.disabled = all.disabled = true;
    const step = () => {
      appendUpTo(Math.min(SLICE, target - shown));
      update();
      if (shown < target && shown < text.length) requestAnimationFrame(step);
      else {
        more.disabled = all.disabled = false;
        if (done) done();
      }
    };
    requestAnimationFrame(step);
  };
  more.addEventListener('click', () => grow(shown + STEP));
  all.addEventListener('click', () => grow(text.length));

  appendUpTo(FIRST);
  update();
  return h('div', {}, pre, shown < text.length ? controls : null);
}
