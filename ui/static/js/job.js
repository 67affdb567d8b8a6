// Job: every field, the attempts timeline and the result; live through the
// admin event stream while the job is unfinished; cancel and requeue.
import { h, replace, announce } from './dom.js';
import { api, ApiError } from './api.js';
import { follow } from './sse.js';
import { jsonView } from './jsonview.js';
import { confirmDialog } from './dialog.js';
import { badge, between, duration, isTerminal, time } from './format.js';

export const title = 'Job';

export function render(main, ctx) {
  const id = ctx.params.id;
  const live = h('p', { class: 'live' });
  const status = h('div', { class: 'heading-row' });
  const actions = h('div', { class: 'actions' });
  const message = h('div', { role: 'status' });
  const details = h('dl', { class: 'details' });
  const error = h('section', { 'aria-labelledby': 'h-error' });
  const attempts = h('section', { 'aria-labelledby': 'h-attempts' });
  const result = h('section', { 'aria-labelledby': 'h-result' });
  main.append(
    h('div', { class: 'heading-row' }, h('h1', {}, 'Job ', h('span', { class: 'mono' }, id)), live),
    status, actions, message,
    h('section', { 'aria-labelledby': 'h-details' }, h('h2', { id: 'h-details' }, 'Details'), details),
    error, attempts, result);

  let aj = null;
  let stream = null;
  let resultFor = null; // the status the result section was drawn for
  let closed = false;
  const ctrl = new AbortController();

  const fail = (err) => {
    if (closed || err.name === 'AbortError' || ctx.fail(err)) return;
    replace(message, h('p', { class: 'alert' }, err.status === 404 ? 'No job has this id.' : `Something went wrong: ${err.message}`));
  };

  async function loadAttempts() {
    const at = await api(`/api/admin/jobs/${id}/attempts`, { signal: ctrl.signal });
    drawAttempts(attempts, at.attempts);
  }

  async function load() {
    try {
      const [job, at] = await Promise.all([
        api(`/api/admin/jobs/${id}`, { signal: ctrl.signal }),
        api(`/api/admin/jobs/${id}/attempts`, { signal: ctrl.signal }),
      ]);
      aj = job;
      draw();
      drawAttempts(attempts, at.attempts);
      if (!isTerminal(aj.job.status)) startStream();
    } catch (err) {
      fail(err);
    }
  }

  function startStream() {
    if (stream) return;
    live.className = 'live on';
    live.textContent = 'Live';
    stream = follow(`/api/admin/jobs/${id}/events`, {
      onEvent(type, data) {
        if (type !== 'job') return;
        const msg = JSON.parse(data);
        const job = msg.job && msg.userId !== undefined ? msg.job : msg; // a Job, or an AdminJob
        const before = aj.job.status;
        aj = msg.job ? msg : { ...aj, job };
        draw();
        if (before !== job.status) announce(`Job is now ${job.status}.`);
        // Owner, worker and links can change with the status: read them
        // again, and the attempts with them.
        Promise.all([api(`/api/admin/jobs/${id}`, { signal: ctrl.signal }), loadAttempts()])
          .then(([fresh]) => {
            if (fresh.job.updatedAt >= aj.job.updatedAt) {
              aj = fresh;
              draw();
            }
          })
          .catch(fail);
      },
      done: () => aj && isTerminal(aj.job.status),
      onStop() {
        live.className = 'live';
        live.textContent = aj && isTerminal(aj.job.status) ? 'Finished' : 'Not live';
        stream = null;
      },
      onError: fail,
    });
  }

  function draw() {
    const j = aj.job;
    replace(status, badge(j.status, true),
      j.error && j.status === 'FAILED' ? h('span', { class: 'muted' }, aj.cancelledBy ? `cancelled by ${aj.cancelledBy}` : 'failed') : null);
    drawActions();
    const row = (label, value) => [h('dt', {}, label), h('dd', {}, value)];
    const link = (uuid) => (uuid ? h('a', { href: `/ui/jobs/${uuid}`, class: 'mono' }, uuid) : h('span', { class: 'muted' }, '—'));
    const opt = (v) => v || h('span', { class: 'muted' }, '—');
    replace(details,
      row('ID', h('span', { class: 'mono' }, j.id)),
      row('Type', j.type),
      row('Status', j.status),
      row('User', h('a', { href: `/ui/jobs?userId=${encodeURIComponent(aj.userId)}` }, aj.userId)),
      row('Attempts', String(j.attempts)),
      row('Created', time(j.createdAt)),
      row('Started', time(j.startedAt)),
      row('Completed', time(j.completedAt)),
      row('Updated', time(j.updatedAt)),
      row('Run time', j.startedAt ? duration(between(j.startedAt, j.completedAt)) : h('span', { class: 'muted' }, '—')),
      row('Worker', aj.workerId ? h('span', { class: 'mono' }, aj.workerId) : opt(null)),
      row('Cancelled by', opt(aj.cancelledBy)),
      row('Requeued from', link(aj.requeuedFrom)),
      row('Requeued as', link(aj.requeuedAs)),
    );
    replace(error, ...(j.error ? [h('h2', { id: 'h-error' }, 'Error'), h('p', { class: 'alert' }, j.error)] : []));
    if (resultFor !== j.status) {
      resultFor = j.status;
      replace(result, h('h2', { id: 'h-result' }, 'Result'), resultBody(j));
    }
  }

  function resultBody(j) {
    if (j.result !== null && j.result !== undefined) return jsonView(j.result, 'Result JSON');
    if (j.status === 'COMPLETED') return h('p', {}, 'The job completed without a result.');
    if (j.status === 'FAILED') return h('p', {}, 'A failed job has no result.');
    return h('p', { class: 'muted' }, 'The result appears here when the job completes.');
  }

  function drawActions() {
    const j = aj.job;
    const buttons = [];
    if (!isTerminal(j.status)) {
      buttons.push(h('button', { type: 'button', class: 'danger', onclick: cancel }, 'Cancel job'));
    }
    if (j.status === 'FAILED' && !aj.requeuedAs && !aj.cancelledBy) {
      buttons.push(h('button', { type: 'button', class: 'primary', onclick: requeue }, 'Requeue'));
    }
    replace(actions, buttons);
  }

  async function cancel() {
    const ok = await confirmDialog({
      title: 'Cancel this job?',
      body: `It ends as FAILED with “Cancelled by an administrator”, and your user name is recorded. A job that is running stops at its next check.`,
      confirm: 'Cancel job', danger: true,
    });
    if (!ok) return;
    try {
      aj = await api(`/api/admin/jobs/${id}/cancel`, { method: 'POST', signal: ctrl.signal });
      draw();
      await loadAttempts();
      replace(message, h('p', { class: 'notice' }, 'The job was cancelled.'));
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        replace(message, h('p', { class: 'notice' }, `${err.message}.`));
        return;
      }
      fail(err);
    }
  }

  async function requeue() {
    const ok = await confirmDialog({
      title: 'Requeue this job?',
      body: 'A new job with the same user, type and input is created and queued; this one stays FAILED and links to it.',
      confirm: 'Requeue',
    });
    if (!ok) return;
    try {
      const fresh = await api(`/api/admin/jobs/${id}/requeue`, { method: 'POST', signal: ctrl.signal });
      ctx.navigate(`/ui/jobs/${fresh.job.id}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        replace(message, h('p', { class: 'notice' }, `${err.message}.`));
        return;
      }
      fail(err);
    }
  }

  load();
  return () => {
    closed = true;
    ctrl.abort();
    if (stream) stream.stop();
  };
}

const OUTCOME = {
  running: 'running', completed: 'completed', retried: 'failed, retried',
  failed: 'failed', lost: 'worker lost', cancelled: 'cancelled',
};

function drawAttempts(section, list) {
  replace(section, h('h2', { id: 'h-attempts' }, 'Attempts'),
    list.length === 0 ? h('p', { class: 'muted' }, 'No attempt yet.') :
      h('ol', { class: 'timeline' }, list.map((a) => h('li', { class: a.outcome },
        h('strong', {}, a.attempt === 0 ? 'Before any attempt' : `Attempt ${a.attempt}`), ' · ', OUTCOME[a.outcome] || a.outcome,
        a.workerId ? [' · ', h('span', { class: 'mono' }, a.workerId)] : null,
        h('div', { class: 'when' },
          time(a.startedAt), a.startedAt ? ' → ' : null, a.endedAt ? time(a.endedAt) : (a.startedAt ? 'now' : null),
          a.startedAt ? ` (${duration(between(a.startedAt, a.endedAt))})` : null),
        a.error ? h('div', {}, a.error) : null,
      ))));
}
