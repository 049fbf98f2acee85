// What an administrator can do to one subscription, on the list and on its own page: a test delivery,
// a secret rotation (the new secret shown once), delete (each risky one asks for a second click), and for
// a subscription whose FIFO lanes block on failure, skipping a lane's failed delivery.

import { api, query } from './api.js';
import { h, replace, errorBox, notify, confirmButton } from './dom.js';

/// The action buttons of subscription `s`; outcomes go to `result`; `onDeleted` runs after a delete.
export function subscriptionActions(s, result, { onDeleted, links = true } = {}) {
  const act = async (label, fn) => {
    try {
      await fn();
    } catch (err) {
      replace(result, errorBox(err));
      notify(`${label} failed`, 'bad');
    }
  };
  return h('div', { class: 'actions' },
    links ? h('a', { href: `#/deliveries${query({ subscription_id: s.id })}` }, 'Deliveries') : null,
    h('button', {
      type: 'button',
      class: 'secondary',
      'data-action': 'test',
      onclick: () => act('Test delivery', async () => {
        const r = await api('POST', `/admin/webhooks/subscriptions/${s.id}/test`, {});
        replace(result, h('p', { class: 'ok', id: 'test-result' }, `${r.message}: `, h('a', { href: `#/deliveries/${r.delivery_id}` }, r.delivery_id)));
        notify('Test delivery queued');
      }),
    }, 'Test'),
    confirmButton('Rotate secret', 'Confirm rotation', () => act('Rotate secret', async () => {
      const r = await api('POST', `/admin/webhooks/subscriptions/${s.id}/rotate-secret`, {});
      replace(result, h('div', { class: 'ok', id: 'rotate-result' },
        h('p', {}, `New secret for ${s.name} (shown once; the previous one works until ${r.previous_secret_expires_at || 'now'}):`),
        h('code', { class: 'secret' }, r.secret)));
      notify('Secret rotated');
    }), { class: 'secondary', 'data-action': 'rotate' }),
    links ? h('a', { href: `#/subscriptions/${s.id}?focus=redrive` }, 'Retry failed…') : null,
    confirmButton('Delete', 'Confirm delete', () => act('Delete', async () => {
      await api('DELETE', `/admin/webhooks/subscriptions/${s.id}`);
      notify(`Subscription ${s.name} deleted`);
      onDeleted();
    }), { class: 'danger', 'data-action': 'delete' }));
}

/// A subscription whose lanes block on failure: skip the failed delivery holding one lane (by its key's
/// value, or the single lane of a subscription ordered as a whole).
export function laneSkipCard(s, result) {
  const byKey = s.ordering === 'key';
  const key = h('input', { id: 'lane-key', name: 'lane-key', maxlength: 1000, required: byKey });
  const form = h('form', { class: 'card', id: 'lane-skip', 'aria-labelledby': 'lane-skip-heading' },
    h('h2', { id: 'lane-skip-heading' }, 'Blocked lanes'),
    h('p', {}, 'A failed delivery holds its lane until it is retried (from its page) or skipped here; the ',
      'lane then sends its next delivery.'),
    byKey ? h('div', { class: 'field' }, h('label', { for: 'lane-key' }, `The lane's ${s.ordering_key}`), key) : null,
    h('button', { type: 'submit', class: 'secondary' }, 'Skip the failed delivery'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const body = byKey ? { key: key.value } : {};
      const r = await api('POST', `/admin/webhooks/subscriptions/${s.id}/lanes/skip`, body);
      replace(result, h('p', { class: 'ok', id: 'skip-result' }, 'Skipped ',
        h('a', { href: `#/deliveries/${r.skipped_delivery_id}` }, r.skipped_delivery_id), '; the lane moves on.'));
      notify('Lane moved on');
    } catch (err) {
      replace(result, errorBox(err));
      notify('Skip failed', 'bad');
    }
  });
  return form;
}
