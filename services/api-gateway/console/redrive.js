// Bulk retry of a subscription's failed deliveries, through a redrive job
// (`/admin/webhooks/subscriptions/{id}/redrive`): a dry run first (how many failed deliveries the filters
// match, and a sample), then Start, then the job's progress, polled, with Cancel.
//
// The job runs on the server at its pace (the cleanup service advances it), so leaving the page does not
// stop it. The tab remembers the job it started (sessionStorage) so that coming back shows its progress;
// the console never asks for a job it did not start, because "no job" is a 404 the browser would log.

import { api, ApiError } from './api.js';
import { h, replace, when, badge, errorBox, notify, table, toRfc3339 } from './dom.js';

const POLL_MS = 1000;
const CLASSES = [
  ['http_5xx', 'HTTP 5xx'],
  ['http_4xx', 'HTTP 4xx'],
  ['http_other', 'another HTTP status'],
  ['timeout', 'a timeout'],
  ['connection', 'a connection error'],
  ['other', 'another error (such as a target the outbound policy refused)'],
  ['none', 'no attempt recorded'],
];

const jobKey = (id) => `hookline.redrive.${id}`;

function remembered(id) {
  try {
    return JSON.parse(sessionStorage.getItem(jobKey(id)) || 'null');
  } catch {
    return null;
  }
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/// The request body the form describes, or an Error saying what to fix.
function filters(form) {
  const v = (id) => form.querySelector(`#${id}`).value.trim();
  const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
  const body = {};
  const events = list(v('rd-events'));
  if (events.length) body.event_types = events;
  if (v('rd-after')) body.created_after = toRfc3339(v('rd-after'));
  if (v('rd-before')) body.created_before = toRfc3339(v('rd-before'));
  const codes = list(v('rd-codes'));
  if (codes.some((c) => !/^[1-5][0-9]{2}$/.test(c))) {
    return new Error('HTTP status codes: three-digit codes from 100 to 599, separated by commas.');
  }
  if (codes.length) body.status_codes = codes.map(Number);
  const classes = [...form.querySelectorAll('input[name="rd-class"]:checked')].map((c) => c.value);
  if (classes.length) body.error_classes = classes;
  if (form.querySelector('#rd-addons').checked) body.include_addons = true;
  if (v('rd-pace')) {
    const pace = Number(v('rd-pace'));
    if (!Number.isInteger(pace) || pace < 1 || pace > 10000) return new Error('Pace: a whole number from 1 to 10000.');
    body.pace = pace;
  }
  return body;
}

/// The panel for subscription `sub` (its admin view). Returns `{ el, stop }`; `stop` ends the polling.
export function redrivePanel(sub) {
  const base = `/admin/webhooks/subscriptions/${sub.id}/redrive`;
  const preview = h('div', { id: 'redrive-preview', 'aria-live': 'polite' });
  const progress = h('div', { id: 'redrive-job' });
  /// The job on screen: its id, the state shown, and the parts a poll rewrites.
  const view = { id: null, state: null, facts: null, end: null };
  let timer = null;
  let stopped = false;

  const field = (id, label, attrs = {}, help) => h('div', { class: 'field' },
    h('label', { for: id }, label),
    h('input', { id, name: id, ...attrs, ...(help ? { 'aria-describedby': `${id}-help` } : {}) }),
    help ? h('small', { id: `${id}-help`, class: 'muted' }, help) : null);
  const form = h('form', { id: 'redrive-form', novalidate: true },
    h('div', { class: 'fields' },
      field('rd-events', 'Event types', { placeholder: 'all' }, 'Comma-separated; empty for every event type'),
      field('rd-after', 'Created after', { type: 'datetime-local' }),
      field('rd-before', 'Created before', { type: 'datetime-local' }),
      field('rd-codes', 'Last HTTP status', { placeholder: 'any', inputmode: 'numeric' }, 'Comma-separated, such as 500, 503'),
      field('rd-pace', 'Pace (per second)', { type: 'number', min: 1, max: 10000, placeholder: String(sub.rate_limit ? sub.rate_limit.per_second : 50) },
        sub.rate_limit ? 'Empty: the subscription\'s rate limit' : 'Empty: 50 per second')),
    h('fieldset', { class: 'classes' },
      h('legend', {}, 'Last attempt ended with (none ticked: any)'),
      CLASSES.map(([value, label]) => h('label', { class: 'check' },
        h('input', { type: 'checkbox', name: 'rd-class', value }), ` ${label}`))),
    h('div', { class: 'row' },
      h('label', { class: 'check' }, h('input', { type: 'checkbox', id: 'rd-addons' }), ' Include add-on invocations'),
      h('button', { type: 'submit', id: 'redrive-preview-button' }, 'Preview')));

  // A preview describes the filters it was made with: editing them withdraws it.
  form.addEventListener('input', () => replace(preview));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = filters(form);
    if (body instanceof Error) {
      replace(preview, errorBox(body));
      return;
    }
    replace(preview, h('p', { class: 'muted' }, 'Counting…'));
    try {
      showPreview(body, await api('POST', base, { ...body, dry_run: true }));
    } catch (err) {
      replace(preview, errorBox(err));
    }
  });

  function showPreview(body, dry) {
    const count = h('p', { id: 'redrive-count' },
      h('strong', {}, plural(dry.matched, 'failed delivery matches', 'failed deliveries match')),
      ` (${plural(dry.scanned, 'failed delivery', 'failed deliveries')} looked at${dry.complete ? '' : '; the preview stopped there, more may match'}).`);
    if (dry.matched === 0) {
      replace(preview, count, h('p', { class: 'muted' }, 'Nothing to retry with these filters.'));
      return;
    }
    const start = h('button', { type: 'button', id: 'redrive-start', onclick: () => startJob(body, dry.matched) },
      `Start: retry ${dry.matched} at ${dry.pace} per second`);
    replace(preview, count,
      table(`Sample (${dry.sample.length} of ${dry.matched})`, ['Delivery', 'Event type', 'Created', 'Last error'],
        dry.sample.map((s) => [h('a', { href: `#/deliveries/${s.id}`, class: 'sample-link' }, h('code', { class: 'id' }, s.id)), s.event_type, when(s.created_at), s.last_error || '']),
        { id: 'redrive-sample' }),
      h('div', { class: 'actions' }, start,
        h('button', { type: 'button', class: 'secondary', onclick: () => replace(preview) }, 'Discard preview')));
    start.focus();
  }

  async function startJob(body, expected) {
    try {
      const job = await api('POST', base, body);
      sessionStorage.setItem(jobKey(sub.id), JSON.stringify({ job_id: job.job_id, expected }));
      replace(preview);
      notify('Redrive job started');
      showJob(job);
    } catch (err) {
      const show = err instanceof ApiError && err.status === 409 && /redrive job/i.test(err.message)
        ? h('button', { type: 'button', class: 'secondary', onclick: () => poll() }, 'Show the running job')
        : null;
      replace(preview, errorBox(err), show);
    }
  }

  function showJob(job) {
    clearTimeout(timer);
    const mem = remembered(sub.id);
    const expected = mem && mem.job_id === job.job_id ? mem.expected : 0;
    const done = job.queued + job.skipped;
    const max = Math.max(expected, job.matched, 1);
    const running = job.state === 'running';
    const facts = [
      ['State', h('span', { id: 'redrive-state' }, badge(job.state))],
      ['Progress', h('span', {},
        h('progress', { max, value: done, 'aria-label': 'Deliveries handled by the redrive job' }),
        ' ', h('span', { id: 'redrive-progress' },
          `${job.queued} queued again${job.skipped ? `, ${job.skipped} skipped (changed meanwhile)` : ''} of ${job.matched} matched${running ? ' so far' : ''}; ${job.scanned} looked at`))],
      ['Pace', `${job.pace} per second`],
      ['Started', h('span', {}, when(job.started_at), ` by ${job.started_by}`)],
    ];
    if (job.finished_at) facts.push(['Finished', when(job.finished_at)]);
    if (job.reason) facts.push(['Reason', job.reason]);
    // Each poll rewrites the numbers only: the Cancel button stays the same element, so keyboard focus
    // on it survives, and the live region below speaks only when the state changes.
    if (view.id !== job.job_id || !progress.contains(view.facts)) {
      view.id = job.job_id;
      view.state = null;
      view.facts = h('dl', { class: 'facts' });
      view.end = h('div', { 'aria-live': 'polite' });
      replace(progress, h('h3', {}, 'Redrive job ', h('code', { class: 'id' }, job.job_id)), view.facts, view.end);
    }
    replace(view.facts, facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    if (view.state !== job.state) {
      view.state = job.state;
      replace(view.end, running
        ? h('button', { type: 'button', id: 'redrive-cancel', class: 'danger', onclick: cancel }, 'Cancel job')
        : h('p', { class: job.state === 'completed' ? 'ok' : '' },
          `The job is ${job.state}. `,
          h('a', { href: `#/deliveries?subscription_id=${sub.id}` }, 'See the subscription\'s deliveries')));
    }
    if (running && !stopped) timer = setTimeout(poll, POLL_MS);
    if (!running) {
      // Its outcome is on screen: the tab need not ask for it again.
      sessionStorage.removeItem(jobKey(sub.id));
      notify(`Redrive job ${job.state}`);
    }
  }

  async function poll() {
    try {
      showJob(await api('GET', base));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        sessionStorage.removeItem(jobKey(sub.id));
        replace(progress);
      } else {
        replace(progress, errorBox(err));
      }
    }
  }

  async function cancel() {
    clearTimeout(timer);
    try {
      showJob(await api('DELETE', base));
    } catch (err) {
      // Most likely it finished meanwhile: show where it ended, under the API's answer.
      await poll();
      progress.prepend(errorBox(err));
    }
  }

  const active = sub.status === 'active';
  const el = h('section', { class: 'card', id: 'redrive', 'aria-labelledby': 'redrive-heading' },
    h('h2', { id: 'redrive-heading', tabindex: -1 }, 'Retry failed deliveries'),
    h('p', { class: 'muted' },
      'A redrive job queues this subscription\'s failed deliveries again at a steady pace, each with a fresh retry budget and its id unchanged. Preview first: nothing is written until you start the job.'),
    active ? form : h('p', { id: 'redrive-inactive' }, `The subscription is ${sub.status}: only an active subscription's deliveries can be retried${sub.disabled_reason ? '. Re-enable it first.' : '.'}`),
    active ? preview : null,
    progress);
  if (remembered(sub.id)) poll();
  return {
    el,
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
