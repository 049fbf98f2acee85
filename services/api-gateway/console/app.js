// The console's shell: hash routes to pages, sign-in state, and the one refresh timer a page may own.
//
//   #/signin  #/overview  #/subscriptions  #/subscriptions/{id}  #/deliveries?…filters  #/deliveries/{id}
//
// A page module exports `render(main, ctx)`; it may return a cleanup function (called before the next page
// renders), which is how live refresh stops when the reader leaves.

import { token, clearToken, claims, takeTokenFromFragment } from './api.js';
import { replace, notify } from './dom.js';
import * as signin from './signin.js';
import * as overview from './overview.js';
import * as subscriptions from './subscriptions.js';
import * as subscription from './subscription.js';
import * as deliveries from './deliveries.js';
import * as delivery from './delivery.js';

let cleanup = null;

function route() {
  const hash = location.hash || '#/subscriptions';
  const [path, search = ''] = hash.slice(1).split('?');
  return { path, params: new URLSearchParams(search) };
}

/// Shows `path`, rendering again when it is already the current route (no `hashchange` then).
export function go(path) {
  if (location.hash === `#${path}`) render();
  else location.hash = `#${path}`;
}

function header() {
  const signedIn = Boolean(token());
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('signout').hidden = !signedIn;
  const c = claims();
  const who = document.getElementById('who');
  who.textContent = signedIn && c ? `${c.email || c.sub || 'signed in'}${c.tmi_is_administrator ? ' (administrator)' : ''}` : '';
  const { path } = route();
  for (const a of document.querySelectorAll('#nav a')) {
    if (path.startsWith(a.getAttribute('href').slice(1))) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function render() {
  if (cleanup) cleanup();
  cleanup = null;
  // A deep link may arrive while the console is open (only the fragment changes: no reload).
  takeTokenFromFragment();
  const main = document.getElementById('main');
  replace(main);
  notify('');
  header();
  const { path, params } = route();
  if (!token() || path === '/signin') {
    signin.render(main, { done: () => go('/subscriptions') });
    return;
  }
  let page;
  if (path === '/overview') page = overview.render(main, { params });
  else if (path === '/deliveries') page = deliveries.render(main, { params, go });
  else if (path.startsWith('/subscriptions/')) page = subscription.render(main, { id: decodeURIComponent(path.split('/')[2]), params, go });
  else if (path.startsWith('/deliveries/')) page = delivery.render(main, { id: decodeURIComponent(path.split('/')[2]), go });
  else page = subscriptions.render(main, { params, go });
  cleanup = typeof page === 'function' ? page : null;
  const heading = main.querySelector('h1');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: true });
  }
}

function start() {
  document.getElementById('signout').addEventListener('click', () => {
    clearToken();
    go('/signin');
  });
  window.addEventListener('hashchange', render);
  render();
}

start();
