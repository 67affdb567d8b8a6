// Jobs: every user's jobs, newest first, with filters and cursor paging.
// The filters live in the address, so a filtered page can be linked to and
// survives a reload.
import { h, replace } from './dom.js';
import { api, query } from './api.js';
import { badge, time, STATUSES, TYPES } from './format.js';

export const title = 'Jobs';
const PAGE = 25;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

// datetime-local inputs speak local time without a zone; the API and the
// address speak UTC.
function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const off = d.getTimezoneOffset() * 60000;
  return new Date(d - off).toISOString().slice(0, 16);
}
function fromLocalInput(v) {
  return v ? new Date(v).toISOString() : '';
}

export function render(main, ctx) {
  const q = ctx.query;
  const f = {
    status: q.get('status') || '', type: q.get('type') || '', userId: q.get('userId') || '',
    createdAfter: q.get('createdAfter') || '', createdBefore: q.get('createdBefore') || '',
  };
  const cursor = q.get('cursor') || '';
  // ?limit= (1 to 100) sets the page size; it stays in the paging links.
  const limit = Math.min(Math.max(Number.parseInt(q.get('limit'), 10) || PAGE, 1), 100);
  if (limit !== PAGE) f.limit = limit;

  const select = (id, label, options, value) => h('div', { class: 'field' },
    h('label', { for: id }, label),
    h('select', { id, name: id }, h('option', { value: '' }, 'Any'),
      options.map((o) => h('option', { value: o, selected: o === value }, o))));
  const input = (id, label, type, value, extra) => h('div', { class: 'field' },
    h('label', { for: id }, label), h('input', { id, name: id, type, value, ...extra }));

  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter jobs' },
    select('status', 'Status', STATUSES, f.status),
    select('type', 'Type', TYPES, f.type),
    input('userId', 'User', 'text', f.userId, { maxlength: 200, autocomplete: 'off' }),
    input('createdAfter', 'Created after', 'datetime-local', toLocalInput(f.createdAfter)),
    input('createdBefore', 'Created before', 'datetime-local', toLocalInput(f.createdBefore)),
    h('button', { type: 'submit', class: 'primary' }, 'Apply'),
    h('a', { href: '/ui/jobs', class: 'button' }, 'Clear'),
  );
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    const d = new FormData(filters);
    ctx.navigate(`/ui/jobs${query({
      limit: f.limit,
      status: d.get('status'), type: d.get('type'), userId: String(d.get('userId') || '').trim(),
      createdAfter: fromLocalInput(d.get('createdAfter')), createdBefore: fromLocalInput(d.get('createdBefore')),
    })}`);
  });

  const idError = h('p', { id: 'goto-error', class: 'muted' });
  const idInput = h('input', { id: 'goto', name: 'goto', type: 'text', class: 'id mono', placeholder: '0190…', autocomplete: 'off', 'aria-describedby': 'goto-error', spellcheck: 'false' });
  const goto = h('form', { class: 'filters', 'aria-label': 'Go to a job' },
    h('div', { class: 'field' }, h('label', { for: 'goto' }, 'Go to job id'), idInput),
    h('button', { type: 'submit' }, 'Open'), idError);
  goto.addEventListener('submit', (e) => {
    e.preventDefault();
    const id = idInput.value.trim();
    if (!UUID.test(id)) {
      idInput.setAttribute('aria-invalid', 'true');
      idError.textContent = 'A job id is a UUID such as 0190c2a4-5b7e-7c3d-9f00-1a2b3c4d5e6f.';
      idInput.focus();
      return;
    }
    ctx.navigate(`/ui/jobs/${id.toLowerCase()}`);
  });

  const results = h('div', { 'aria-live': 'polite', 'aria-busy': 'true' }, h('p', {}, 'Loading…'));
  main.append(h('h1', {}, 'Jobs'), filters, goto, results);

  const ctrl = new AbortController();
  api(`/api/admin/jobs${query({ limit, cursor, ...f })}`, { signal: ctrl.signal })
    .then((list) => {
      results.setAttribute('aria-busy', 'false');
      replace(results, table(list.jobs, cursor), pager(list.nextCursor, f, cursor));
    })
    .catch((err) => {
      if (err.name === 'AbortError' || ctx.fail(err)) return;
      results.setAttribute('aria-busy', 'false');
      replace(results, h('p', { class: 'alert' }, `Could not list jobs: ${err.message}`));
    });
  return () => ctrl.abort();
}

function table(jobs, cursor) {
  if (jobs.length === 0) return h('p', {}, cursor ? 'No more jobs.' : 'No job matches.');
  const th = (t, cls) => h('th', { scope: 'col', class: cls }, t);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', {}, 'Jobs, newest first'),
    h('thead', {}, h('tr', {}, th('Job'), th('Type'), th('Status'), th('User'), th('Attempts', 'num'), th('Created'), th('Finished'))),
    h('tbody', {}, jobs.map((aj) => h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: `/ui/jobs/${aj.job.id}`, class: 'mono' }, aj.job.id)),
      h('td', {}, aj.job.type),
      h('td', {}, badge(aj.job.status)),
      h('td', {}, h('a', { href: `/ui/jobs${query({ userId: aj.userId })}` }, aj.userId)),
      h('td', { class: 'num' }, aj.job.attempts),
      h('td', {}, time(aj.job.createdAt)),
      h('td', {}, time(aj.job.completedAt)),
    ))),
  ));
}

function pager(next, f, cursor) {
  return h('nav', { 'aria-label': 'Pages', class: 'actions' },
    cursor ? h('a', { href: `/ui/jobs${query(f)}`, class: 'button' }, 'First page') : null,
    next ? h('a', { href: `/ui/jobs${query({ ...f, cursor: next })}`, class: 'button', rel: 'next' }, 'Next page') : null);
}
