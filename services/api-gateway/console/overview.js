// Overview: deliveries per minute and attempt-latency percentiles over the last hour, from the aggregated
// counters (`GET /admin/webhooks/stats`): one request, whatever the traffic.

import { api } from './api.js';
import { h, replace, errorBox } from './dom.js';
import { lineChart } from './charts.js';

const REFRESH_MS = 10000;

function hhmm(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function stat(label, value) {
  return h('div', { class: 'stat' }, h('span', { class: 'stat-value' }, value), h('span', { class: 'stat-label' }, label));
}

export function render(main) {
  const body = h('div', { 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));
  replace(main, h('h1', {}, 'Overview'), h('p', { class: 'muted' }, 'The last hour, per minute. Refreshes every 10 seconds.'), body);
  async function load() {
    try {
      const s = await api('GET', '/admin/webhooks/stats?minutes=60');
      const labels = s.minutes.map((m) => hhmm(m.start));
      const t = s.totals;
      const lat = (k) => s.minutes.map((m) => (m.latency_ms ? m.latency_ms[k] : null));
      replace(body,
        h('div', { class: 'stats' },
          stat('delivered', t.delivered),
          stat('failed', t.failed),
          stat('attempts retried', t.retried),
          stat('p95 latency', t.latency_ms ? `${Math.round(t.latency_ms.p95)} ms` : '—')),
        h('div', { class: 'charts' },
          lineChart({
            title: 'Deliveries per minute',
            unit: '',
            labels,
            series: [
              { name: 'delivered', cls: 's-delivered', values: s.minutes.map((m) => m.delivered) },
              { name: 'failed', cls: 's-failed', values: s.minutes.map((m) => m.failed) },
              { name: 'retried', cls: 's-retried', values: s.minutes.map((m) => m.retried) },
            ],
          }),
          lineChart({
            title: 'Attempt latency (ms)',
            unit: ' ms',
            labels,
            series: [
              { name: 'p50', cls: 's-p50', values: lat('p50') },
              { name: 'p95', cls: 's-p95', values: lat('p95') },
              { name: 'p99', cls: 's-p99', values: lat('p99') },
            ],
          })));
    } catch (err) {
      replace(body, errorBox(err));
    }
    body.setAttribute('aria-busy', 'false');
  }
  load();
  const timer = setInterval(load, REFRESH_MS);
  return () => clearInterval(timer);
}
