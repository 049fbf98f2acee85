// One subscription (`#/subscriptions/{id}`): its fields and health, its actions (test, rotate, delete, and
// skipping a blocked lane: actions.js), why the delivery-worker disabled it and the way back (re-enable,
// optionally queueing again what the disable failed), and the bulk retry of its failed deliveries with a
// preview (redrive.js). Administrators only, as the API's admin routes are.

import { api, query } from './api.js';
import { h, replace, when, badge, errorBox, notify } from './dom.js';
import { redrivePanel } from './redrive.js';
import { subscriptionActions, laneSkipCard } from './actions.js';

/// What `disabled_reason` means, in words.
export const DISABLED = {
  gone: 'its receiver answered 410 Gone',
  failing: 'its deliveries failed too many times in a row',
};

export function render(main, { id, params }) {
  const name = h('span', {});
  const result = h('div', { class: 'result', 'aria-live': 'polite' });
  const body = h('div', { 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));
  let panel = null;
  let focused = false;
  let left = false;

  async function load() {
    if (panel) panel.stop();
    panel = null;
    try {
      const s = await api('GET', `/admin/webhooks/subscriptions/${encodeURIComponent(id)}`);
      replace(name, s.name);
      show(s);
      circuit(s);
    } catch (err) {
      replace(body, errorBox(err));
    }
    body.setAttribute('aria-busy', 'false');
  }

  // FIFO lanes (issue #18): chosen at create, shown as one line.
  function order(s) {
    if (!s.ordering) return 'unordered';
    const lanes = s.ordering === 'key' ? `in order per ${s.ordering_key}` : 'in order (one lane)';
    return s.lane_on_failure === 'block'
      ? `${lanes}; a failed delivery holds its lane until an administrator retries or skips it`
      : `${lanes}; a lane moves on after a failed delivery`;
  }

  function show(s) {
    // An answer that arrives after the reader left must not start the panel's polling.
    if (left) return;
    const limit = s.rate_limit ? `${s.rate_limit.per_second} per second (burst ${s.rate_limit.burst || 1})` : 'none';
    const facts = [
      ['Status', h('span', { id: 'sub-status' }, badge(s.status),
        s.disabled_reason ? ` — disabled: ${DISABLED[s.disabled_reason] || s.disabled_reason}` : '')],
      ['Id', h('code', {}, s.id)],
      ['URL', h('span', { class: 'url' }, s.url)],
      ['Events', s.events.join(', ')],
      ['Threat model', s.threat_model_id || 'any'],
      ['Owner', s.owner_id],
      ['Created', when(s.created_at)],
      ['Last success', when(s.last_successful_use)],
      ['Publication failures', String(s.publication_failures)],
      ['Host circuit', h('span', { id: 'sub-circuit' }, '…')],
      ['Rate limit', limit],
      ['Most in flight', s.max_in_flight ? String(s.max_in_flight) : 'no limit'],
      ['Delivery order', order(s)],
    ];
    if (s.disabled_at) facts.splice(1, 0, ['Disabled', when(s.disabled_at)]);
    panel = redrivePanel(s);
    replace(body,
      h('dl', { class: 'facts' }, facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      h('div', { class: 'actions links' },
        h('a', { href: `#/deliveries${query({ subscription_id: s.id })}` }, 'Deliveries'),
        h('a', { href: `#/deliveries${query({ subscription_id: s.id, status: 'failed' })}` }, 'Failed deliveries')),
      subscriptionActions(s, result, { onDeleted: () => { location.hash = '#/subscriptions'; }, links: false }),
      s.status === 'inactive' ? disabledCard(s) : null,
      s.lane_on_failure === 'block' ? laneSkipCard(s, result) : null,
      panel.el);
    if (!focused && params.get('focus') === 'redrive') {
      focused = true;
      const heading = body.querySelector('#redrive-heading');
      heading.focus({ preventScroll: true });
      heading.scrollIntoView({ block: 'start' });
    }
  }

  async function circuit(s) {
    const cell = body.querySelector('#sub-circuit');
    try {
      const st = await api('GET', `/admin/webhooks/subscriptions/${s.id}/stats`);
      replace(cell, badge(st.circuit.state), st.circuit.failures ? ` ${st.circuit.failures} failures` : '');
    } catch (err) {
      replace(cell, errorBox(err));
    }
  }

  /// Why it is inactive, and Re-enable when the delivery-worker did it (an operator's inactive sink is
  /// theirs to switch on: the API refuses).
  function disabledCard(s) {
    if (!s.disabled_reason) {
      return h('section', { class: 'card', id: 'disabled' },
        h('h2', {}, 'Inactive'),
        h('p', {}, 'An operator switched this subscription off; it cannot be enabled from here.'));
    }
    const requeue = h('input', { type: 'checkbox', id: 'requeue', 'aria-describedby': 'requeue-help' });
    const button = h('button', { type: 'button', id: 'enable' }, 'Re-enable');
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        const r = await api('POST', `/admin/webhooks/subscriptions/${s.id}/enable`, { requeue_failed: requeue.checked });
        replace(result, h('p', { class: 'ok', id: 'enable-result' },
          `${s.name} is ${r.subscription.status} again`,
          requeue.checked ? `; ${r.requeued} ${r.requeued === 1 ? 'delivery' : 'deliveries'} queued again` : '',
          r.more ? '. More deliveries the disable failed remain: retry them below.' : '.'));
        notify('Subscription re-enabled');
        load();
      } catch (err) {
        button.disabled = false;
        replace(result, errorBox(err));
        notify('Re-enable failed', 'bad');
      }
    });
    return h('section', { class: 'card', id: 'disabled', 'aria-labelledby': 'disabled-heading' },
      h('h2', { id: 'disabled-heading' }, 'Disabled'),
      h('p', { id: 'disabled-reason' },
        'The delivery-worker disabled this subscription on ', when(s.disabled_at), ` because ${DISABLED[s.disabled_reason] || s.disabled_reason}. `,
        'Its new events are not delivered until it is enabled again; fix the receiver first.'),
      h('p', {}, h('label', { class: 'check' }, requeue, ' Also queue again the deliveries that failed when it was disabled')),
      h('small', { id: 'requeue-help', class: 'muted' }, 'Up to 1000, the one that caused the disable included; each keeps its id.'),
      h('div', { class: 'actions' }, button));
  }

  replace(main, h('h1', {}, 'Subscription ', name), result, body);
  load();
  return () => {
    left = true;
    if (panel) panel.stop();
  };
}
