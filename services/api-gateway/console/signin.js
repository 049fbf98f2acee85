// Sign-in: paste a bearer token (TMI's deep link hands it over in the URL fragment instead, see api.js).

import { api, setToken, clearToken } from './api.js';
import { h, replace, errorBox } from './dom.js';

export function render(main, { done }) {
  const input = h('textarea', { id: 'token', name: 'token', rows: 4, required: true, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'token-help' });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'card narrow', novalidate: true },
    h('label', { for: 'token' }, 'Bearer token'),
    input,
    h('p', { id: 'token-help', class: 'muted' },
      'The token is kept in this tab only (sessionStorage) and sent to this server\'s API. Administrators see every subscription and delivery; others only what the API lets them read.'),
    h('button', { type: 'submit' }, 'Sign in'),
    out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!input.value.trim()) {
      replace(out, errorBox(new Error('Paste a bearer token first.')));
      return;
    }
    setToken(input.value);
    try {
      // Any authenticated caller may list add-ons: a cheap check that the token is accepted at all.
      await api('GET', '/addons?limit=1');
      done();
    } catch (err) {
      clearToken();
      replace(out, errorBox(err));
    }
  });
  replace(main, h('h1', {}, 'Sign in'), form);
  input.focus();
}
