// Small DOM helpers: build elements without innerHTML (no markup from data, nothing for the CSP to refuse).

/// `h('a', {href: '#/x', class: 'y'}, 'text', child…)`. Attributes starting with `on` are listeners.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/// Replaces an element's children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/// A local, readable time for an RFC 3339 timestamp (the full value in the title).
export function when(ts) {
  if (!ts) return h('span', { class: 'muted' }, '—');
  const d = new Date(ts);
  return h('time', { datetime: ts, title: ts }, d.toLocaleString());
}

/// `datetime-local` value (local time) → RFC 3339, and back.
export function toRfc3339(local) {
  return local ? new Date(local).toISOString() : '';
}
export function toLocal(rfc) {
  if (!rfc) return '';
  const d = new Date(rfc);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/// A status badge (text always present: colour is never the only signal).
export function badge(status) {
  return h('span', { class: `badge b-${String(status).replace(/[^a-z_]/g, '')}` }, status);
}

/// An error shown in place, with the API's (TMI's) text.
export function errorBox(err) {
  return h('p', { class: 'error', role: 'alert' }, err.message || String(err));
}

/// The page's status line (screen readers hear it).
export function notify(message, kind = 'ok') {
  const n = document.getElementById('notice');
  n.className = `notice ${kind}`;
  n.textContent = message;
}

/// A table with a caption and header row; `rows` are arrays of cells.
export function table(caption, headers, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs,
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))))));
}

/// A button that asks for a second click before `action` runs (no modal dialogs).
export function confirmButton(label, confirmLabel, action, attrs = {}) {
  let armed = false;
  let timer;
  const b = h('button', { type: 'button', ...attrs }, label);
  b.addEventListener('click', async () => {
    if (!armed) {
      armed = true;
      b.textContent = confirmLabel;
      b.classList.add('armed');
      timer = setTimeout(() => {
        armed = false;
        b.textContent = label;
        b.classList.remove('armed');
      }, 6000);
      return;
    }
    clearTimeout(timer);
    armed = false;
    b.textContent = label;
    b.classList.remove('armed');
    await action();
  });
  return b;
}
