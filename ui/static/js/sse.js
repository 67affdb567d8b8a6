// Server-Sent Events over fetch(): EventSource cannot send an Authorization
// header, and the token must not go into a query string. This reads the
// text/event-stream itself, remembers the last event id, and on a dropped
// stream reconnects with Last-Event-ID after the server's retry delay. A
// 204 answer (a finished job's last event was already seen) or done()
// returning true ends it for good.
import { authHeader, decode } from './api.js';

/**
 * follow(path, {onEvent(type, data), done(), onStop(reason), onError(err)})
 * returns {stop()}.
 */
export function follow(path, handlers) {
  const ctrl = new AbortController();
  let lastId = '';
  let retry = 3000;
  let failures = 0;
  let stopped = false;

  const stop = (reason) => {
    if (stopped) return;
    stopped = true;
    ctrl.abort();
    if (handlers.onStop) handlers.onStop(reason);
  };

  const dispatch = (ev) => {
    if (ev.id !== undefined) lastId = ev.id;
    if (ev.data === undefined) return;
    handlers.onEvent(ev.event || 'message', ev.data);
  };

  async function connectOnce() {
    const headers = { Authorization: authHeader(), Accept: 'text/event-stream' };
    if (lastId) headers['Last-Event-ID'] = lastId;
    const res = await fetch(path, { headers, signal: ctrl.signal, cache: 'no-store', credentials: 'omit' });
    if (res.status === 204) return 'finished';
    if (!res.ok || !res.body) {
      await decode(res); // throws the API's error (401 → sign-in)
      return 'error';
    }
    failures = 0;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let ev = {};
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      const lines = buf.split(/\r\n|\r|\n/);
      buf = lines.pop(); // an unfinished line waits for the next chunk
      for (const line of lines) {
        if (line === '') {
          dispatch(ev);
          ev = {};
          continue;
        }
        if (line.startsWith(':')) continue; // a comment: heartbeat
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        let val = i < 0 ? '' : line.slice(i + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'data') ev.data = ev.data === undefined ? val : `${ev.data}\n${val}`;
        else if (field === 'event') ev.event = val;
        else if (field === 'id' && !val.includes('\0')) ev.id = val;
        else if (field === 'retry' && /^\d+$/.test(val)) retry = Number(val);
      }
    }
    return 'ended';
  }

  (async () => {
    while (!stopped) {
      let outcome;
      try {
        outcome = await connectOnce();
      } catch (err) {
        if (stopped) return;
        if (err.name === 'AuthRequired' || (err.status && err.status < 500 && err.status !== 429)) {
          if (handlers.onError) handlers.onError(err);
          stop('error');
          return;
        }
        outcome = 'error';
        failures++;
      }
      if (stopped) return;
      if (outcome === 'finished' || (handlers.done && handlers.done())) {
        stop('finished');
        return;
      }
      // A stream that ended early (the server's hour limit, a restart, a
      // network blip) resumes after the server's retry delay, backing off
      // on repeated failures.
      const wait = retry * Math.min(2 ** failures, 10);
      await new Promise((r) => setTimeout(r, wait));
    }
  })();

  return { stop: () => stop('stopped') };
}
