// Deliveries: filters (subscription, status, event type, time range), pages, and live refresh by polling
// that keeps the reader's scroll position (rows are replaced in place, the page never jumps).

import { api, query } from './api.js';
import { h, replace, when, badge, errorBox, toRfc3339, toLocal } from './dom.js';

const LIMITS = [20, 50, 100];
const LIVE_MS = 3000;
const STATUSES = ['pending', 'in_progress', 'delivered', 'failed'];

export function render(main, { params, go }) {
  const f = {
    subscription_id: params.get('subscription_id') || '',
    status: params.get('status') || '',
    event_type: params.get('event_type') || '',
    created_after: params.get('created_after') || '',
    created_before: params.get('created_before') || '',
    limit: Number(params.get('limit')) || 20,
    offset: Math.max(0, Number(params.get('offset')) || 0),
  };
  const list = h('div', { id: 'delivery-list', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));
  const live = h('input', { type: 'checkbox', id: 'live', checked: params.get('live') !== '0' });
  let timer = null;

  const input = (id, label, attrs) => h('div', { class: 'field' }, h('label', { for: id }, label), h('input', { id, name: id, ...attrs }));
  const form = h('form', { class: 'card filters', id: 'filters' },
    h('div', { class: 'fields' },
      input('f-subscription', 'Subscription id', { value: f.subscription_id, placeholder: 'any', size: 36 }),
      h('div', { class: 'field' }, h('label', { for: 'f-status' }, 'Status'),
        h('select', { id: 'f-status', name: 'f-status' },
          h('option', { value: '' }, 'any'),
          STATUSES.map((s) => h('option', { value: s, selected: s === f.status }, s)))),
      input('f-event', 'Event type', { value: f.event_type, placeholder: 'any' }),
      input('f-after', 'Created after', { type: 'datetime-local', value: toLocal(f.created_after) }),
      input('f-before', 'Created before', { type: 'datetime-local', value: toLocal(f.created_before) }),
      h('div', { class: 'field' }, h('label', { for: 'f-limit' }, 'Per page'),
        h('select', { id: 'f-limit', name: 'f-limit' }, LIMITS.map((n) => h('option', { value: n, selected: n === f.limit }, n))))),
    h('div', { class: 'row' },
      h('button', { type: 'submit' }, 'Apply filters'),
      h('label', { class: 'check' }, live, ' Live refresh')));

  function hashFor(over) {
    return `/deliveries${query({ ...f, limit: f.limit === 20 ? '' : f.limit, offset: f.offset || '', live: live.checked ? '' : '0', ...over })}`;
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = (id) => form.querySelector(`#${id}`).value.trim();
    go(hashFor({
      subscription_id: v('f-subscription'),
      status: v('f-status'),
      event_type: v('f-event'),
      created_after: toRfc3339(v('f-after')),
      created_before: toRfc3339(v('f-before')),
      limit: Number(v('f-limit')) === 20 ? '' : v('f-limit'),
      offset: '',
    }));
  });

  async function load() {
    clearTimeout(timer);
    const scroll = window.scrollY;
    try {
      const page = await api('GET', `/admin/webhooks/deliveries${query({
        subscription_id: f.subscription_id, status: f.status, event_type: f.event_type,
        created_after: f.created_after, created_before: f.created_before, limit: f.limit, offset: f.offset,
      })}`);
      renderPage(page);
    } catch (err) {
      replace(list, errorBox(err));
    }
    list.setAttribute('aria-busy', 'false');
    // Rows were replaced: put the reader back where they were.
    window.scrollTo(0, scroll);
    if (live.checked) timer = setTimeout(load, LIVE_MS);
  }

  function renderPage(page) {
    const body = h('tbody', {}, page.deliveries.map((d) => h('tr', { 'data-id': d.id },
      h('td', {}, h('a', { href: `#/deliveries/${d.id}`, class: 'delivery-link' }, h('code', { class: 'id' }, d.id))),
      h('td', {}, d.event_type),
      h('td', {}, badge(d.status), d.status_percent ? ` ${d.status_percent}%` : ''),
      h('td', {}, String(d.attempts)),
      h('td', {}, when(d.created_at)),
      h('td', {}, h('a', { href: `#/deliveries${query({ subscription_id: d.subscription_id })}` }, h('code', { class: 'id' }, d.subscription_id.slice(0, 8)))),
      h('td', { class: 'err' }, d.last_error || ''))));
    const from = page.total === 0 ? 0 : f.offset + 1;
    const existing = list.querySelector('tbody');
    if (existing && list.querySelector('caption')) {
      existing.replaceWith(body);
      list.querySelector('caption').textContent = `Deliveries ${from}–${f.offset + page.deliveries.length} of ${page.total} (oldest first)`;
      replace(list.querySelector('.pager'), ...pagerLinks(page));
      return;
    }
    replace(list,
      h('div', { class: 'table-wrap' }, h('table', { id: 'deliveries' },
        h('caption', {}, `Deliveries ${from}–${f.offset + page.deliveries.length} of ${page.total} (oldest first)`),
        h('thead', {}, h('tr', {}, ['Delivery', 'Event type', 'Status', 'Attempts', 'Created', 'Subscription', 'Last error'].map((x) => h('th', { scope: 'col' }, x)))),
        body)),
      h('nav', { class: 'pager', 'aria-label': 'Delivery pages' }, ...pagerLinks(page)));
  }

  function pagerLinks(page) {
    const links = [];
    if (f.offset > 0) links.push(h('a', { href: `#${hashFor({ offset: Math.max(0, f.offset - f.limit) || '' })}` }, '← Previous'));
    if (f.offset + f.limit < page.total) links.push(h('a', { href: `#${hashFor({ offset: f.offset + f.limit })}` }, 'Next →'));
    return links;
  }

  live.addEventListener('change', () => (live.checked ? load() : clearTimeout(timer)));
  replace(main, h('h1', {}, 'Deliveries'), form, list);
  load();
  return () => clearTimeout(timer);
}
