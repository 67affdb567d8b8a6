// Signing in: OAuth 2.0 authorization code with PKCE (S256) and state,
// against the endpoints the server read from the issuer's discovery
// document. The access token lives in this tab's sessionStorage (so a
// reload keeps it) and in memory; never in a URL, a cookie or a log.

const TOKEN_KEY = 'jobsd.console.token';
const FLOW_KEY = 'jobsd.console.signin';

function meta(name) {
  const el = document.querySelector(`meta[name="${name}"]`);
  return el ? el.content : '';
}

export const config = {
  clientId: meta('jobsd-client-id'),
  redirectUri: meta('jobsd-redirect-uri'),
  authorize: meta('jobsd-authorize'),
  token: meta('jobsd-token'),
  endSession: meta('jobsd-end-session'),
};

export class AuthRequired extends Error {
  constructor(reason) {
    super(reason || 'Sign in to continue.');
    this.name = 'AuthRequired';
  }
}

function base64url(bytes) {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString(n) {
  return base64url(crypto.getRandomValues(new Uint8Array(n)));
}

async function s256(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** beginSignIn sends the browser to the issuer's sign-in page. */
export async function beginSignIn(returnTo) {
  const verifier = randomString(32); // 43 characters, RFC 7636's minimum
  const state = randomString(16);
  sessionStorage.setItem(FLOW_KEY, JSON.stringify({ state, verifier, returnTo, started: Date.now() }));
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: config.clientId,
    redirect_uri: config.redirectUri,
    scope: 'openid',
    state,
    code_challenge: await s256(verifier),
    code_challenge_method: 'S256',
  });
  location.assign(`${config.authorize}?${q}`);
}

/**
 * completeSignIn handles the redirect back from the issuer. The code and
 * state leave the address bar before anything else happens; the state must
 * be the one this tab sent, and the stored verifier is used once.
 * It returns the path to go to.
 */
export async function completeSignIn() {
  const params = new URLSearchParams(location.search);
  history.replaceState(null, '', '/ui/');
  const flow = JSON.parse(sessionStorage.getItem(FLOW_KEY) || 'null');
  sessionStorage.removeItem(FLOW_KEY);
  if (params.get('error')) {
    throw new AuthRequired(`Sign-in was not completed: ${params.get('error_description') || params.get('error')}.`);
  }
  const code = params.get('code');
  if (!flow || !code || params.get('state') !== flow.state) {
    throw new AuthRequired('That sign-in response does not belong to a sign-in started in this tab. Sign in again.');
  }
  const res = await fetch(config.token, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      client_id: config.clientId,
      code,
      redirect_uri: config.redirectUri,
      code_verifier: flow.verifier,
    }),
    cache: 'no-store',
    credentials: 'omit',
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok || !body.access_token) {
    throw new AuthRequired(`The issuer refused the sign-in (${body.error || res.status}). Sign in again.`);
  }
  const expiresIn = Number(body.expires_in) || 3600;
  // Leave a minute of margin, so a request never leaves with a token that
  // expires on the way.
  const expiresAt = Date.now() + Math.max(expiresIn - 60, 5) * 1000;
  sessionStorage.setItem(TOKEN_KEY, JSON.stringify({ accessToken: body.access_token, expiresAt }));
  current = null;
  return safeReturn(flow.returnTo);
}

function safeReturn(path) {
  return typeof path === 'string' && path.startsWith('/ui/') && !path.startsWith('/ui/callback') ? path : '/ui/';
}

let current = null;

/** session returns {accessToken, expiresAt} or null when signed out or expired. */
export function session() {
  if (!current) current = JSON.parse(sessionStorage.getItem(TOKEN_KEY) || 'null');
  if (current && Date.now() >= current.expiresAt) {
    forget();
    return null;
  }
  return current;
}

export function forget() {
  current = null;
  sessionStorage.removeItem(TOKEN_KEY);
}

/** claims decodes the token's payload, for showing who is signed in only. */
export function claims() {
  const s = session();
  if (!s) return {};
  try {
    const part = s.accessToken.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0)));
    return JSON.parse(json);
  } catch {
    return {};
  }
}

/**
 * signOut forgets the token; with an issuer that has an end-session
 * endpoint, it also ends the issuer's own session there.
 */
export function signOut() {
  forget();
  if (config.endSession) {
    const q = new URLSearchParams({ client_id: config.clientId, post_logout_redirect_uri: new URL('/ui/', location.href).href });
    location.assign(`${config.endSession}?${q}`);
    return true;
  }
  return false;
}
