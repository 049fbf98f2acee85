// Subscriptions: the list with each one's health (status, last success, failures, its host's circuit, a
// 24-hour sparkline), and create, test delivery, rotate secret and delete. A subscription's own page
// (subscription.js) has the rest: why it was disabled and re-enable, and the bulk retry of its failures.

import { api, query } from './api.js';
import { h, replace, when, badge, errorBox, notify, table } from './dom.js';
import { subscriptionActions } from './actions.js';
import { sparkline } from './charts.js';
import { DISABLED } from './subscription.js';

const LIMIT = 20;
/// While a new subscription awaits its challenge, the list refreshes itself this often.
const PENDING_REFRESH_MS = 2000;

export function render(main, { params }) {
  const offset = Math.max(0, Number(params.get('offset')) || 0);
  const result = h('div', { class: 'result', 'aria-live': 'polite' });
  const list = h('div', { 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));
  let timer = null;
  let stopped = false;

  async function load() {
    clearTimeout(timer);
    try {
      const page = await api('GET', `/admin/webhooks/subscriptions${query({ limit: LIMIT, offset })}`);
      renderList(page);
      if (!stopped && page.subscriptions.some((s) => s.status === 'pending_verification')) {
        timer = setTimeout(load, PENDING_REFRESH_MS);
      }
    } catch (err) {
      replace(list, errorBox(err));
    }
    list.setAttribute('aria-busy', 'false');
  }

  function renderList(page) {
    const rows = page.subscriptions.map((s) => [
      h('span', {}, h('a', { href: `#/subscriptions/${s.id}`, class: 'sub-link' }, s.name), h('br'), h('code', { class: 'id' }, s.id)),
      h('span', {}, badge(s.status), s.disabled_reason ? h('small', { class: 'reason' }, `disabled: ${DISABLED[s.disabled_reason] || s.disabled_reason}`) : ''),
      s.events.join(', '),
      h('span', { class: 'url' }, s.url),
      when(s.created_at),
      when(s.last_successful_use),
      String(s.publication_failures),
      h('span', { class: 'circuit', 'data-sub': s.id }, '…'),
      h('span', { class: 'spark-cell', 'data-sub': s.id }),
      subscriptionActions(s, result, { onDeleted: load }),
    ]);
    replace(list,
      page.total === 0
        ? h('p', { class: 'muted' }, 'No subscriptions yet.')
        : table(`Subscriptions ${offset + 1}–${offset + page.subscriptions.length} of ${page.total}`,
          ['Name', 'Status', 'Events', 'URL', 'Created', 'Last success', 'Publication failures', 'Host circuit', 'Last 24 h', 'Actions'],
          rows, { id: 'subscriptions' }),
      pager(page));
    for (const s of page.subscriptions) health(s);
  }

  async function health(s) {
    const circuit = list.querySelector(`.circuit[data-sub="${s.id}"]`);
    const spark = list.querySelector(`.spark-cell[data-sub="${s.id}"]`);
    try {
      const st = await api('GET', `/admin/webhooks/subscriptions/${s.id}/stats`);
      const delivered = st.hours.map((x) => x.delivered);
      const failed = st.hours.map((x) => x.failed);
      const sum = (a) => a.reduce((x, y) => x + y, 0);
      replace(circuit, badge(st.circuit.state), st.circuit.failures ? ` ${st.circuit.failures} failures` : '');
      replace(spark,
        sparkline([{ values: delivered, cls: 's-delivered' }, { values: failed, cls: 's-failed' }],
          `Last 24 hours: ${sum(delivered)} delivered, ${sum(failed)} failed`),
        h('span', { class: 'spark-text' }, `${sum(delivered)} ✓ ${sum(failed)} ✗`));
    } catch (err) {
      replace(circuit, errorBox(err));
    }
  }

  function pager(page) {
    const nav = h('nav', { class: 'pager', 'aria-label': 'Subscription pages' });
    if (offset > 0) nav.append(h('a', { href: `#/subscriptions${query({ offset: Math.max(0, offset - LIMIT) })}` }, '← Previous'));
    if (offset + LIMIT < page.total) nav.append(h('a', { href: `#/subscriptions${query({ offset: offset + LIMIT })}` }, 'Next →'));
    return nav;
  }

  replace(main, h('h1', {}, 'Subscriptions'), createForm(load, result), result, list);
  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function createForm(reload, result) {
  const field = (id, label, attrs = {}, help) => h('div', { class: 'field' },
    h('label', { for: id }, label),
    h('input', { id, name: id, ...attrs, ...(help ? { 'aria-describedby': `${id}-help` } : {}) }),
    help ? h('small', { id: `${id}-help`, class: 'muted' }, help) : null);
  const choice = (id, label, options, help) => h('div', { class: 'field' },
    h('label', { for: id }, label),
    h('select', { id, name: id, ...(help ? { 'aria-describedby': `${id}-help` } : {}) },
      options.map(([value, text]) => h('option', { value }, text))),
    help ? h('small', { id: `${id}-help`, class: 'muted' }, help) : null);
  const form = h('form', { class: 'card create', id: 'create-subscription' },
    h('h2', {}, 'New subscription'),
    h('div', { class: 'fields' },
      field('sub-name', 'Name', { required: true, maxlength: 255 }),
      field('sub-url', 'URL', { type: 'url', required: true, placeholder: 'https://' }),
      field('sub-events', 'Event types', { required: true, value: '*' }, 'Comma-separated, or * for all'),
      field('sub-tm', 'Threat model id', {}, 'Optional: only this threat model\'s events'),
      choice('sub-ordering', 'Delivery order', [['', 'Any order'], ['subscription', 'In order (one lane)'], ['key', 'In order per key']],
        'In order: each delivery waits until the previous one is delivered or has failed for good'),
      choice('sub-ordering-key', 'Order key', [['threat_model_id', 'threat_model_id'], ['object_id', 'object_id'], ['object_type', 'object_type'], ['owner_id', 'owner_id']],
        'With "in order per key": one lane per value of this event field'),
      choice('sub-lane-on-failure', 'After a failed delivery', [['skip', 'Move on'], ['block', 'Hold the lane until an administrator acts']])),
    h('button', { type: 'submit' }, 'Create'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = (id) => form.querySelector(`#${id}`).value.trim();
    const body = { name: v('sub-name'), url: v('sub-url'), events: v('sub-events').split(',').map((x) => x.trim()).filter(Boolean) };
    if (v('sub-tm')) body.threat_model_id = v('sub-tm');
    if (v('sub-ordering')) {
      body.ordering = v('sub-ordering');
      if (body.ordering === 'key') body.ordering_key = v('sub-ordering-key');
      body.lane_on_failure = v('sub-lane-on-failure');
    }
    try {
      const s = await api('POST', '/admin/webhooks/subscriptions', body);
      replace(result, h('div', { class: 'ok' },
        h('p', {}, `Created ${s.name} (${s.id}); it becomes active once its URL answers the verification challenge. Its secret, shown once:`),
        h('code', { class: 'secret' }, s.secret)));
      notify('Subscription created');
      form.reset();
      reload();
    } catch (err) {
      replace(result, errorBox(err));
      notify('Create failed', 'bad');
    }
  });
  return form;
}
