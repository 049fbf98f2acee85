// One delivery: its fields, the payload pretty-printed, status and progress of an async delivery, the
// attempt log (HTTP status, duration, error), and retry. Refreshes itself while the delivery is live.

import { api, query, ApiError } from './api.js';
import { h, replace, when, badge, errorBox, notify, table } from './dom.js';

const LIVE_MS = 1500;

export function render(main, { id }) {
  const body = h('div', { 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));
  const result = h('div', { class: 'result', 'aria-live': 'polite' });
  let timer = null;
  let stopped = false;

  async function read() {
    try {
      return { d: await api('GET', `/admin/webhooks/deliveries/${encodeURIComponent(id)}`), admin: true };
    } catch (err) {
      // Not an administrator: the subscription's owner or the add-on's invoker may still read it.
      if (err instanceof ApiError && err.status === 403) {
        return { d: await api('GET', `/webhook-deliveries/${encodeURIComponent(id)}`), admin: false };
      }
      throw err;
    }
  }

  async function load() {
    clearTimeout(timer);
    try {
      const { d, admin } = await read();
      const attempts = admin ? (await api('GET', `/admin/webhooks/deliveries/${d.id}/attempts`)).attempts : null;
      show(d, attempts, admin);
      if (!stopped && (d.status === 'pending' || d.status === 'in_progress')) timer = setTimeout(load, LIVE_MS);
    } catch (err) {
      replace(body, errorBox(err));
    }
    body.setAttribute('aria-busy', 'false');
  }

  function show(d, attempts, admin) {
    const facts = [
      ['Status', h('span', { id: 'delivery-status' }, badge(d.status))],
      ['Event type', d.event_type],
      ['Subscription', h('a', { href: `#/deliveries${query({ subscription_id: d.subscription_id })}` }, h('code', {}, d.subscription_id))],
      ['Attempts', String(d.attempts)],
      ['Created', when(d.created_at)],
      ['Last activity', when(d.last_activity_at)],
      ['Delivered', when(d.delivered_at)],
      ['Next retry', when(d.next_retry_at)],
      ['Last error', d.last_error || '—'],
    ];
    if (d.status === 'in_progress' || d.status_percent || d.status_message) {
      const pct = d.status_percent || 0;
      facts.splice(1, 0, ['Progress', h('span', {},
        h('progress', { max: 100, value: pct, 'aria-label': 'Progress reported by the receiver' }, `${pct}%`),
        ` ${pct}%${d.status_message ? ` — ${d.status_message}` : ''}`)]);
    }
    const dl = h('dl', { class: 'facts' }, facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    const buttons = h('div', { class: 'actions' });
    if (admin && d.status === 'failed') {
      buttons.append(h('button', { type: 'button', id: 'retry', onclick: retry }, 'Retry this delivery'));
    }
    if (admin) {
      buttons.append(h('a', { href: `#/deliveries${query({ subscription_id: d.subscription_id, status: 'failed' })}` }, 'This subscription\'s failures'));
      buttons.append(h('a', { href: `#/subscriptions/${d.subscription_id}?focus=redrive` }, 'Retry all of them…'));
    }
    const log = attempts === null ? null : attempts.length === 0
      ? h('p', { class: 'muted' }, 'No attempts yet.')
      : table('Attempt log (latest 10, oldest first)', ['#', 'Started', 'Duration', 'Outcome', 'HTTP status', 'Error'],
        attempts.map((a) => [String(a.attempt), when(a.started_at), `${a.duration_ms} ms`, badge(a.outcome), a.status_code ? String(a.status_code) : '—', a.error || '']),
        { id: 'attempts' });
    replace(body, dl, buttons,
      h('h2', {}, 'Attempts'), log || h('p', { class: 'muted' }, 'The attempt log is for administrators.'),
      h('h2', {}, 'Payload'),
      h('pre', { class: 'payload', tabindex: 0, 'aria-label': 'Payload' }, d.payload ? JSON.stringify(d.payload, null, 2) : '(not JSON)'));
  }

  async function retry() {
    try {
      await api('POST', `/admin/webhooks/deliveries/${id}/retry`);
      replace(result, h('p', { class: 'ok' }, 'Queued again.'));
      notify('Delivery queued again');
      load();
    } catch (err) {
      replace(result, errorBox(err));
    }
  }

  replace(main, h('h1', {}, 'Delivery ', h('code', { class: 'id' }, id)), result, body);
  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
