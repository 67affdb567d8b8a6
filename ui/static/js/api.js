// The admin API, with the bearer token. A 401 means the token is no longer
// good: the app goes back to sign-in.
import { session, forget, AuthRequired } from './auth.js';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

function authHeader() {
  const s = session();
  if (!s) throw new AuthRequired('Your session has ended. Sign in again.');
  return `Bearer ${s.accessToken}`;
}

/** api(path, {method, body, signal}) returns the decoded JSON answer. */
export async function api(path, opts = {}) {
  const headers = { Authorization: authHeader(), Accept: 'application/json' };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method: opts.method || 'GET',
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    signal: opts.signal,
    cache: 'no-store',
    credentials: 'omit',
  });
  return decode(res);
}

export async function decode(res) {
  if (res.status === 401) {
    forget();
    throw new AuthRequired('Your session has ended. Sign in again.');
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new ApiError(res.status, body.error || `${res.status} ${res.statusText}`);
  }
  return res.status === 204 ? null : res.json();
}

export { authHeader };

/** query builds "?a=1&b=2" from the non-empty values of an object. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}
