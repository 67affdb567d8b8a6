// The console's entry point: routing, sign-in state and the shared frame.
import { h, replace } from './dom.js';
import { beginSignIn, claims, completeSignIn, config, forget, session, signOut } from './auth.js';
import * as overview from './overview.js';
import * as jobs from './jobs.js';
import * as job from './job.js';
import * as webhooks from './webhooks.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
let cleanup = null;
let expiryTimer = null;
let firstRender = true;

const UUID = '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}';
const routes = [
  { re: /^\/ui\/?$/, page: overview, nav: 'overview' },
  { re: /^\/ui\/jobs\/?$/, page: jobs, nav: 'jobs' },
  { re: new RegExp(`^/ui/jobs/(?<id>${UUID})$`), page: job, nav: 'jobs' },
  { re: /^\/ui\/webhooks\/?$/, page: webhooks, nav: 'webhooks' },
  { re: new RegExp(`^/ui/webhooks/(?<id>${UUID})$`), page: webhooks, nav: 'webhooks' },
];

function match(path) {
  for (const r of routes) {
    const m = r.re.exec(path);
    if (m) return { ...r, params: m.groups || {} };
  }
  return null;
}

export function navigate(path, opts = {}) {
  history[opts.replace ? 'replaceState' : 'pushState'](null, '', path);
  render();
}

function teardown() {
  if (cleanup) cleanup();
  cleanup = null;
}

/** fail handles the errors every page shares; it returns true if it did. */
function fail(err) {
  if (err && err.name === 'AuthRequired') {
    showSignIn(err.message);
    return true;
  }
  if (err && err.status === 403) {
    showForbidden();
    return true;
  }
  return false;
}

function frame(signedIn) {
  nav.hidden = !signedIn;
  if (!signedIn) {
    replace(who);
    return;
  }
  const c = claims();
  replace(who,
    h('span', {}, 'Signed in as ', h('strong', {}, c.username || c['cognito:username'] || c.sub || 'unknown')),
    h('button', { type: 'button', onclick: onSignOut }, 'Sign out'));
}

function onSignOut() {
  teardown();
  if (signOut()) return; // the issuer's end-session page takes over
  history.replaceState(null, '', '/ui/');
  showSignIn('You are signed out.');
}

function page(title, ...children) {
  teardown();
  document.title = `${title} · jobsd console`;
  replace(main, ...children);
  focusMain();
}

function showSignIn(message) {
  forget();
  clearTimeout(expiryTimer);
  frame(false);
  const returnTo = location.pathname.startsWith('/ui/callback') ? '/ui/' : location.pathname + location.search;
  const host = (() => { try { return new URL(config.authorize).host; } catch { return 'the issuer'; } })();
  page('Sign in', h('div', { class: 'center' },
    h('h1', {}, 'Sign in'),
    message ? h('p', { class: 'notice' }, message) : null,
    h('p', {}, 'The jobsd console is for administrators. You sign in at your identity provider, ',
      h('span', { class: 'mono' }, host), ', and come back here.'),
    h('button', { type: 'button', class: 'primary', onclick: () => beginSignIn(returnTo) }, 'Sign in')));
}

function showForbidden() {
  frame(true);
  nav.hidden = true;
  const c = claims();
  page('Admin access required', h('div', { class: 'center' },
    h('h1', {}, 'Admin access required'),
    h('p', {}, 'You are signed in as ', h('strong', {}, c.username || c.sub || 'unknown'),
      ', who is not in the administrators’ group. The console shows every user’s jobs, so only administrators may use it.'),
    h('p', {}, 'Ask an administrator to add you to the group, then sign out and sign in again.'),
    h('button', { type: 'button', onclick: onSignOut }, 'Sign out')));
}

function scheduleExpiry(s) {
  clearTimeout(expiryTimer);
  expiryTimer = setTimeout(() => {
    teardown();
    showSignIn('Your session expired. Sign in again.');
  }, Math.max(s.expiresAt - Date.now(), 0));
}

function focusMain() {
  // After a navigation inside the app, move focus to the new page so that
  // screen readers and keyboards start there; not on the first load.
  if (firstRender) {
    firstRender = false;
    return;
  }
  main.focus();
}

function render() {
  teardown();
  const s = session();
  if (!s) {
    showSignIn();
    return;
  }
  scheduleExpiry(s);
  frame(true);
  const route = match(location.pathname);
  for (const a of nav.querySelectorAll('a')) {
    if (route && a.dataset.nav === route.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!route) {
    page('Not found', h('h1', {}, 'Not found'), h('p', {}, 'There is no such page. ', h('a', { href: '/ui/' }, 'Go to the overview.')));
    return;
  }
  document.title = `${route.page.title} · jobsd console`;
  main.replaceChildren();
  focusMain();
  cleanup = route.page.render(main, {
    params: route.params,
    query: new URLSearchParams(location.search),
    navigate,
    fail,
  });
}

// Links inside the console change the page without a reload.
document.addEventListener('click', (e) => {
  const a = e.target.closest('a');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.target || a.hasAttribute('download') || (a.getAttribute('href') || '').startsWith('#')) return;
  if (a.origin !== location.origin || !a.pathname.startsWith('/ui/')) return;
  e.preventDefault();
  navigate(a.pathname + a.search);
});
window.addEventListener('popstate', render);

async function start() {
  if (location.pathname === '/ui/callback') {
    try {
      const to = await completeSignIn();
      history.replaceState(null, '', to);
    } catch (err) {
      showSignIn(err.message);
      return;
    }
  }
  render();
}

start();
