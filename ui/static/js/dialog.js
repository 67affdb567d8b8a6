// A modal confirmation: a native <dialog>, so focus stays inside it and
// Escape cancels.
import { h } from './dom.js';

/** confirmDialog({title, body, confirm, danger}) resolves to true or false. */
export function confirmDialog({ title, body, confirm, danger }) {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'button', class: danger ? 'danger' : 'primary', 'data-confirm': '' }, confirm);
    const cancel = h('button', { type: 'button' }, 'Keep it');
    const dlg = h('dialog', { 'aria-labelledby': 'dialog-title', 'aria-describedby': 'dialog-body' },
      h('h2', { id: 'dialog-title' }, title),
      h('p', { id: 'dialog-body' }, body),
      h('div', { class: 'actions' }, ok, cancel));
    const close = (v) => {
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    ok.addEventListener('click', () => close(true));
    cancel.addEventListener('click', () => close(false));
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); close(false); });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}
