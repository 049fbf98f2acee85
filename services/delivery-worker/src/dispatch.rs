//! One queue entry, start to finish: a delivery attempt or a verification challenge.
//!
//! A delivery attempt: its lease is taken with the rest of its read batch ([`Dispatcher::begin_batch`],
//! one [`Store::begin_attempts`] call), then it checks the subscription, takes a per-host slot (or defers
//! without consuming an attempt, so one slow host cannot hold every slot), POSTs the stored payload bytes
//! with TMI's headers, classifies the answer ([`AttemptOutcome`]), and hands the outcome to the group commit
//! ([`Outcomes`]), which writes it fenced by the lease and acknowledges the entry in the same step. Exactly
//! one POST per attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use delivery_model::delivery::{AttemptLogEntry, DeliveryRecord};
use delivery_model::event::CHALLENGE;
use delivery_model::ids::DeliveryId;
use delivery_model::ids::SubscriptionId;
use delivery_model::queue::{MESSAGE_FIELD, QueueMessage};
use delivery_model::signing;
use delivery_model::store::{
    AttemptOutcome, BeginAttempt, BeginItem, CircuitPolicy, CircuitSignal, CircuitState,
    FinishItem, FinishResult, Leased, Store, StreamEntry,
};
use delivery_model::subscription::SubscriptionStatus;
use delivery_model::time::{Micros, now_micros};
use http::{HeaderName, HeaderValue, StatusCode};
use service_common::config::Settings;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::client::{Answer, HttpClient, Limits, SendError};
use crate::delegation::Delegation;
use crate::metrics::Metrics;
use crate::outcomes::Outcomes;

/// TMI's header names.
pub mod header {
    pub const EVENT: &str = "x-webhook-event";
    pub const DELIVERY_ID: &str = "x-webhook-delivery-id";
    pub const SUBSCRIPTION_ID: &str = "x-webhook-subscription-id";
    pub const SIGNATURE: &str = "x-webhook-signature";
    pub const DELEGATION_TOKEN: &str = "x-tmi-delegation-token";
    /// Receiver's answer: `async` means it will report progress by callback.
    pub const CALLBACK: &str = "x-tmi-callback";
}

/// How late a scheduled message may be relative to its record's `next_retry_at` (clock skew between hosts).
const DUE_TOLERANCE: Duration = Duration::from_secs(2);
/// A delivery deferred because its host has no free slot is retried after about this long.
const DEFER: Duration = Duration::from_millis(250);
/// TMI's challenge limits: 5 s to the headers, 10 s in all, 1 KiB of body.
const CHALLENGE_LIMITS: Limits = Limits {
    header_timeout: Duration::from_secs(5),
    total_timeout: Duration::from_secs(10),
    max_body: 1024,
};

/// The dispatcher's settings.
pub struct DispatchConfig {
    pub user_agent: HeaderValue,
    pub retry_schedule: Vec<Duration>,
    pub max_attempts: u32,
    pub lease: Duration,
    pub excerpt_bytes: usize,
    pub max_challenges: u32,
    pub challenge_interval: Duration,
    pub per_host: usize,
    /// How long an attempt may wait for a slot of its host: the lease's margin less a second, so the
    /// request that follows still fits in the lease.
    pub host_wait: Duration,
    pub circuit: CircuitPolicy,
}

impl DispatchConfig {
    /// # Errors
    /// A user agent that is not a valid header value.
    pub fn from_settings(s: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            user_agent: HeaderValue::from_str(&s.outbound.user_agent)?,
            retry_schedule: s
                .worker
                .retry_schedule_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            max_attempts: s.worker.max_attempts,
            lease: s.worker.lease(&s.outbound),
            excerpt_bytes: s.outbound.error_excerpt_bytes,
            max_challenges: s.subscriptions.max_challenges,
            challenge_interval: Duration::from_millis(s.subscriptions.challenge_retry_interval_ms),
            per_host: s.worker.max_in_flight_per_host,
            host_wait: Duration::from_millis(
                s.worker.lease_margin_ms.saturating_sub(1000).max(100),
            ),
            circuit: CircuitPolicy {
                failure_threshold: s.worker.circuit_failure_threshold,
                open_windows: s
                    .worker
                    .circuit_open_ms
                    .iter()
                    .map(|ms| Duration::from_millis(*ms))
                    .collect(),
                probe_lease: s.worker.lease(&s.outbound),
            },
        })
    }

    /// Delay before the retry that follows attempt number `attempt` (1-based); the last step repeats.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let i = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        self.retry_schedule
            .get(i)
            .or(self.retry_schedule.last())
            .copied()
            .unwrap_or(Duration::from_secs(60))
    }

    fn largest_step(&self) -> Duration {
        self.retry_schedule
            .iter()
            .max()
            .copied()
            .unwrap_or(Duration::from_secs(60))
    }
}

/// Per-destination-host limits for this process.
///
/// A host may have `per_host` requests in flight and as many attempts waiting for one of those slots; an
/// attempt beyond that is deferred (rescheduled shortly, no attempt consumed). So one slow host holds at
/// most `2 × per_host` of the worker's slots, and the others keep flowing.
#[derive(Default)]
struct HostSlots {
    hosts: Mutex<HashMap<String, Arc<HostGate>>>,
}

struct HostGate {
    sending: Arc<Semaphore>,
    waiting: Semaphore,
}

impl HostSlots {
    /// A sending slot for `host`, waiting at most `wait`. `None`: the host is saturated (too many waiting,
    /// or no slot within `wait`); the caller defers the delivery.
    async fn acquire(
        &self,
        host: &str,
        per_host: usize,
        wait: Duration,
    ) -> Option<OwnedSemaphorePermit> {
        let gate = self.gate(host, per_host);
        if let Ok(p) = gate.sending.clone().try_acquire_owned() {
            return Some(p);
        }
        let _waiting = gate.waiting.try_acquire().ok()?;
        tokio::time::timeout(wait, gate.sending.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    fn gate(&self, host: &str, per_host: usize) -> Arc<HostGate> {
        let mut map = self
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 10_000 {
            // Forget idle hosts so the map stays bounded.
            map.retain(|_, g| g.sending.available_permits() < per_host);
        }
        map.entry(host.to_owned())
            .or_insert_with(|| {
                Arc::new(HostGate {
                    sending: Arc::new(Semaphore::new(per_host)),
                    waiting: Semaphore::new(per_host),
                })
            })
            .clone()
    }
}

/// How long this worker trusts that a host's circuit is closed without asking Redis again. The breaker's
/// state is shared by every replica; a circuit another replica opens takes effect here within this time,
/// and at once after this worker's own next failure. It saves a Redis round trip per healthy delivery.
const CIRCUIT_TRUST: Duration = Duration::from_secs(1);

/// Hosts whose circuit this worker recently saw closed.
#[derive(Default)]
struct ClosedCircuits {
    seen: Mutex<HashMap<String, Instant>>,
}

impl ClosedCircuits {
    fn known_closed(&self, host: &str) -> bool {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.get(host).is_some_and(|t| t.elapsed() < CIRCUIT_TRUST)
    }

    fn closed(&self, host: &str) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() > 10_000 {
            seen.retain(|_, t| t.elapsed() < CIRCUIT_TRUST);
        }
        seen.insert(host.to_owned(), Instant::now());
    }

    fn forget(&self, host: &str) {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(host);
    }
}

/// Handles queue entries. Shared by every task of the worker.
pub struct Dispatcher {
    store: Store,
    client: HttpClient,
    cfg: DispatchConfig,
    delegation: Option<Delegation>,
    metrics: Metrics,
    hosts: HostSlots,
    circuits: ClosedCircuits,
    outcomes: Outcomes,
}

/// A queue entry, sorted by [`Dispatcher::classify`].
pub enum Work {
    /// A delivery attempt: its lease is taken with the rest of its read batch.
    Delivery { entry_id: String, id: DeliveryId },
    /// A challenge or an undecodable entry: handled alone.
    Other(StreamEntry),
}

/// What the record's attempt log keeps of a request.
#[derive(Clone, Copy, Debug)]
struct Trace {
    started_at: Micros,
    duration: Duration,
    status: Option<u16>,
}

impl Trace {
    /// An attempt refused before any request was sent (the target failed the outbound policy).
    fn not_sent() -> Self {
        Self {
            started_at: now_micros(),
            duration: Duration::ZERO,
            status: None,
        }
    }
}

/// A delivery whose lease is held: ready to send.
pub struct Attempt {
    entry_id: String,
    token: String,
    /// When the lease was taken.
    now: Micros,
    leased: Leased,
}

/// Final word on one entry (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Done with it: acknowledged.
    Acked,
    /// Left pending for another attempt after its lease (a Redis error, or a live lease elsewhere).
    LeftPending,
}

fn micros(d: Duration) -> Micros {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// `HTTP 500: <excerpt>`, as TMI records it (but capped to a short excerpt).
fn http_error(status: StatusCode, body: &[u8], cap: usize) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(cap)]);
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let suffix = if body.len() > cap {
        "...[truncated]"
    } else {
        ""
    };
    format!("HTTP {}: {}{suffix}", status.as_u16(), clean.trim())
}

/// `Retry-After` as a delay: delta-seconds or an HTTP date.
fn retry_after(a: &Answer) -> Option<Duration> {
    let v = a
        .headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = at.timestamp() - chrono::Utc::now().timestamp();
    Some(Duration::from_secs(u64::try_from(delta).unwrap_or(0)))
}

fn class(status: Option<StatusCode>) -> &'static str {
    match status.map(|s| s.as_u16() / 100) {
        Some(2) => "2xx",
        Some(3) => "3xx",
        Some(4) => "4xx",
        Some(5) => "5xx",
        _ => "error",
    }
}

impl Dispatcher {
    pub fn new(
        store: Store,
        client: HttpClient,
        cfg: DispatchConfig,
        delegation: Option<Delegation>,
        metrics: Metrics,
    ) -> Self {
        let outcomes = Outcomes::start(store.clone(), cfg.circuit.clone());
        Self {
            store,
            client,
            cfg,
            delegation,
            metrics,
            hosts: HostSlots::default(),
            circuits: ClosedCircuits::default(),
            outcomes,
        }
    }

    /// Sorts a queue entry: a delivery (whose lease is taken with the rest of its read batch, see
    /// [`Dispatcher::begin_batch`]) or anything else ([`Dispatcher::dispatch`]).
    pub fn classify(entry: StreamEntry) -> Work {
        match entry
            .fields
            .get(MESSAGE_FIELD)
            .map(|m| QueueMessage::decode(m))
        {
            Some(Ok(QueueMessage::DeliveryV1 { delivery_id })) => Work::Delivery {
                entry_id: entry.id,
                id: delivery_id,
            },
            _ => Work::Other(entry),
        }
    }

    /// Handles one queue entry on its own: a challenge, an undecodable entry, or a delivery.
    pub async fn dispatch(&self, entry: StreamEntry) -> Handled {
        let msg = entry
            .fields
            .get(MESSAGE_FIELD)
            .map(|m| QueueMessage::decode(m));
        let result = match msg {
            Some(Ok(QueueMessage::DeliveryV1 { delivery_id })) => {
                let mut go = self
                    .begin_batch(vec![(entry.id.clone(), delivery_id)])
                    .await;
                return match go.pop().flatten() {
                    Some(attempt) => self.attempt(attempt).await,
                    None => Handled::LeftPending,
                };
            }
            Some(Ok(QueueMessage::ChallengeV1 { subscription_id })) => {
                self.challenge(&entry.id, subscription_id).await
            }
            _ => {
                tracing::warn!(entry.id = %entry.id, "undecodable queue entry acknowledged and skipped");
                self.store
                    .ack_queue(std::slice::from_ref(&entry.id))
                    .await
                    .map(|()| Handled::Acked)
            }
        };
        self.settle(&entry.id, result)
    }

    fn settle(&self, entry_id: &str, result: delivery_model::Result<Handled>) -> Handled {
        match result {
            Ok(h) => h,
            Err(e) => {
                self.metrics.redis_errors.inc();
                tracing::warn!(entry.id = %entry_id, error = %e, "Redis failed; the entry stays pending and will be retried");
                Handled::LeftPending
            }
        }
    }

    /// Takes the leases of a read batch's deliveries (queue entry id, delivery id) in one Redis call.
    /// Returns, per item in order, the attempt to make, or `None`: no longer work (acknowledged in the same
    /// call), leased by a live attempt elsewhere, or not readable (left pending).
    pub async fn begin_batch(&self, batch: Vec<(String, DeliveryId)>) -> Vec<Option<Attempt>> {
        // Lease tokens only need to be unique per attempt: one random id per batch, numbered.
        let batch_id = uuid::Uuid::new_v4().simple().to_string();
        let tokens: Vec<String> = (0..batch.len())
            .map(|i| format!("{batch_id}.{i}"))
            .collect();
        let items: Vec<BeginItem<'_>> = batch
            .iter()
            .zip(&tokens)
            .map(|((entry_id, id), token)| BeginItem {
                id: *id,
                token,
                entry_id,
            })
            .collect();
        let now = now_micros();
        let results = self
            .store
            .begin_attempts(&items, now, now + micros(self.cfg.lease), DUE_TOLERANCE)
            .await;
        drop(items);
        let mut failed: Option<(usize, delivery_model::Error)> = None;
        let attempts = batch
            .into_iter()
            .zip(tokens)
            .zip(results)
            .map(|(((entry_id, _), token), r)| match r {
                Ok(BeginAttempt::Go(leased)) => Some(Attempt {
                    entry_id,
                    token,
                    now,
                    leased: *leased,
                }),
                Ok(_) => None,
                Err(e) => {
                    match &mut failed {
                        Some((n, _)) => *n += 1,
                        None => failed = Some((1, e)),
                    }
                    None
                }
            })
            .collect();
        // One line per batch, however many of its entries failed (a Redis failure fails a whole chunk).
        if let Some((n, e)) = failed {
            self.metrics.redis_errors.inc();
            tracing::warn!(entries = n, error = %e, "taking leases failed (Redis, or an unreadable record); the entries stay pending and will be retried");
        }
        attempts
    }

    /// Makes one attempt whose lease [`Dispatcher::begin_batch`] took.
    pub async fn attempt(&self, attempt: Attempt) -> Handled {
        let entry_id = attempt.entry_id.clone();
        let result = self.attempt_delivery(attempt).await;
        self.settle(&entry_id, result)
    }

    #[tracing::instrument(skip_all, fields(delivery.id = %attempt.leased.record.id))]
    async fn attempt_delivery(&self, attempt: Attempt) -> delivery_model::Result<Handled> {
        let Attempt {
            entry_id,
            token,
            now,
            leased,
        } = attempt;
        let entry_id = entry_id.as_str();
        let record = leased.record;
        // `circuit`: the destination host and what this attempt tells its breaker (None: nothing);
        // `trace`: the attempt for the record's log (None: nothing was attempted).
        let finish = |outcome: AttemptOutcome,
                      label: &'static str,
                      circuit: Option<(String, CircuitSignal)>,
                      trace: Option<Trace>| {
            let (host, signal) = circuit.unwrap_or((String::new(), CircuitSignal::None));
            let log = trace.map(|t| AttemptLogEntry {
                attempt: record.attempts.saturating_add(1),
                started_at: t.started_at,
                duration_ms: u64::try_from(t.duration.as_millis()).unwrap_or(u64::MAX),
                outcome: outcome.name().to_owned(),
                status_code: t.status,
                error: outcome.error().map(str::to_owned),
            });
            let item = FinishItem {
                id: record.id,
                subscription_id: record.subscription_id,
                token: token.clone(),
                entry_id: entry_id.to_owned(),
                outcome,
                host,
                signal,
                log,
            };
            async move {
                let r = self.outcomes.write(item).await?;
                let label = match r {
                    FinishResult::Written => label,
                    FinishResult::Superseded => "superseded",
                    FinishResult::Fenced => "fenced",
                };
                self.metrics.deliveries.with_label_values(&[label]).inc();
                Ok(if r == FinishResult::Fenced {
                    Handled::LeftPending
                } else {
                    Handled::Acked
                })
            }
        };

        let sub = match leased.subscription {
            None => {
                let outcome = AttemptOutcome::Abandoned {
                    error: "subscription not found".into(),
                };
                return finish(outcome, "abandoned", None, None).await;
            }
            Some(s) if s.status != SubscriptionStatus::Active => {
                let error = format!("subscription is not active (status {})", s.status);
                return finish(AttemptOutcome::Abandoned { error }, "abandoned", None, None).await;
            }
            Some(s) => s,
        };
        let uri = match self.client.vet(&sub.url) {
            Ok(u) => u,
            Err(e) => {
                let trace = Some(Trace::not_sent());
                return self.refused(e, |o, l| finish(o, l, None, trace)).await;
            }
        };
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let circuit = |signal| Some((host.clone(), signal));
        let Some(_slot) = self
            .hosts
            .acquire(&host, self.cfg.per_host, self.cfg.host_wait)
            .await
        else {
            let at = now_micros() + micros(DEFER) + i64::from(rand::random::<u16>() % 250) * 1000;
            let outcome = AttemptOutcome::Reschedule {
                error: String::new(),
                at,
            };
            return finish(outcome, "deferred", circuit(CircuitSignal::None), None).await;
        };
        if !self.circuits.known_closed(&host) {
            match self
                .store
                .circuit_check(&host, &self.cfg.circuit, now_micros() / 1000)
                .await?
            {
                CircuitState::Closed => self.circuits.closed(&host),
                CircuitState::Probe => self.circuits.forget(&host),
                CircuitState::Open { until_ms } => {
                    self.circuits.forget(&host);
                    self.metrics.circuit_open(&host, true);
                    let outcome = AttemptOutcome::Reschedule {
                        error: "circuit open".into(),
                        at: until_ms * 1000,
                    };
                    return finish(outcome, "circuit_open", circuit(CircuitSignal::None), None)
                        .await;
                }
            }
        }

        let mut headers = vec![
            (
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (http::header::USER_AGENT, self.cfg.user_agent.clone()),
        ];
        let mut add = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.push((HeaderName::from_static(name), v));
            }
        };
        add(header::EVENT, &record.event_type);
        add(header::DELIVERY_ID, &record.id.to_string());
        add(header::SUBSCRIPTION_ID, &sub.id.to_string());
        if let Some(secret) = &sub.secret {
            add(
                header::SIGNATURE,
                &signing::sign(secret, record.payload.as_bytes()),
            );
        }
        if let Some(token) = self
            .delegation
            .as_ref()
            .and_then(|d| d.mint(&record, now / 1_000_000))
        {
            add(header::DELEGATION_TOKEN, &token);
        }

        self.metrics.in_flight.inc();
        let started_at = now_micros();
        let started = Instant::now();
        let result = self
            .client
            .post(
                uri,
                headers,
                Bytes::from(record.payload.clone()),
                self.client.limits(),
            )
            .await;
        self.metrics.in_flight.dec();
        let status = result.as_ref().ok().map(|a| a.status);
        let trace = Trace {
            started_at,
            duration: started.elapsed(),
            status: status.map(|s| s.as_u16()),
        };
        self.metrics
            .attempt_duration
            .with_label_values(&[class(status)])
            .observe(trace.duration.as_secs_f64());
        if record.attempts == 0 {
            let lag = (now_micros() - record.created_at).max(0);
            self.metrics.first_attempt_lag.observe(lag as f64 / 1e6);
        }
        let signal = match &result {
            Ok(a) if a.status.is_success() => CircuitSignal::Success,
            Err(SendError::Refused(_)) => CircuitSignal::None,
            _ => CircuitSignal::Failure,
        };
        match signal {
            CircuitSignal::Success => {
                self.circuits.closed(&host);
                self.metrics.circuit_open(&host, false);
            }
            CircuitSignal::Failure => self.circuits.forget(&host),
            CircuitSignal::None => {}
        }
        let finish = |o, l| finish(o, l, circuit(signal), Some(trace));
        match result {
            Err(e @ SendError::Refused(_)) => self.refused(e, finish).await,
            Ok(a) if a.status.is_success() => {
                let is_async = a
                    .headers
                    .get(header::CALLBACK)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("async"));
                if is_async {
                    finish(AttemptOutcome::InProgress, "in_progress").await
                } else {
                    finish(AttemptOutcome::Delivered, "delivered").await
                }
            }
            Ok(a) => {
                let error = http_error(a.status, &a.body, self.cfg.excerpt_bytes);
                let wait = match a.status.as_u16() {
                    429 | 503 => retry_after(&a),
                    _ => None,
                };
                let outcome = self.failure(&record, error, wait);
                let label = if matches!(outcome, AttemptOutcome::Failed { .. }) {
                    "failed"
                } else {
                    "retry"
                };
                finish(outcome, label).await
            }
            Err(e) => {
                let outcome = self.failure(&record, format!("request failed: {e}"), None);
                let label = if matches!(outcome, AttemptOutcome::Failed { .. }) {
                    "failed"
                } else {
                    "retry"
                };
                finish(outcome, label).await
            }
        }
    }

    /// A failed attempt: retry after the schedule's delay (never sooner than a `Retry-After`, bounded by the
    /// schedule's largest step), or fail for good after the last attempt.
    fn failure(
        &self,
        record: &DeliveryRecord,
        error: String,
        retry_after: Option<Duration>,
    ) -> AttemptOutcome {
        let attempt = record.attempts + 1;
        if attempt >= self.cfg.max_attempts {
            return AttemptOutcome::Failed { error };
        }
        let mut delay = self.cfg.retry_delay(attempt);
        if let Some(ra) = retry_after {
            delay = delay.max(ra.min(self.cfg.largest_step()));
        }
        AttemptOutcome::Retry {
            error,
            at: now_micros() + micros(delay),
        }
    }

    async fn refused<F, Fut>(&self, e: SendError, finish: F) -> delivery_model::Result<Handled>
    where
        F: FnOnce(AttemptOutcome, &'static str) -> Fut,
        Fut: std::future::Future<Output = delivery_model::Result<Handled>>,
    {
        self.metrics.ssrf_refusals.inc();
        tracing::warn!(error = %e, "delivery target refused by the outbound policy");
        finish(
            AttemptOutcome::Failed {
                error: e.to_string(),
            },
            "refused",
        )
        .await
    }

    /// Sends a subscription's verification challenge and records the result.
    #[tracing::instrument(skip_all, fields(subscription.id = %id))]
    async fn challenge(
        &self,
        entry_id: &str,
        id: SubscriptionId,
    ) -> delivery_model::Result<Handled> {
        let sub = match self.store.get_subscription(id).await? {
            Some(s) if s.status == SubscriptionStatus::PendingVerification => s,
            _ => {
                self.store.ack_queue(&[entry_id.to_owned()]).await?;
                return Ok(Handled::Acked);
            }
        };
        let challenge = sub.challenge.clone().unwrap_or_default();
        let verified = match self.client.vet(&sub.url) {
            Err(e) => {
                self.metrics.ssrf_refusals.inc();
                tracing::info!(error = %e, "challenge target refused");
                false
            }
            Ok(uri) => {
                // Keys in TMI's (sorted) order.
                let body =
                    serde_json::json!({"challenge": challenge, "type": CHALLENGE}).to_string();
                let headers = vec![
                    (
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ),
                    (http::header::USER_AGENT, self.cfg.user_agent.clone()),
                    (
                        HeaderName::from_static(header::EVENT),
                        HeaderValue::from_static(CHALLENGE),
                    ),
                    (
                        HeaderName::from_static(header::SUBSCRIPTION_ID),
                        HeaderValue::from_str(&id.to_string())
                            .unwrap_or(HeaderValue::from_static("")),
                    ),
                ];
                match self
                    .client
                    .post(uri, headers, Bytes::from(body), CHALLENGE_LIMITS)
                    .await
                {
                    Ok(a) => challenge_answered(&a, &challenge),
                    Err(e) => {
                        tracing::info!(error = %e, "challenge request failed");
                        false
                    }
                }
            }
        };
        let now = now_micros();
        if verified {
            self.store
                .set_subscription_status(
                    id,
                    SubscriptionStatus::PendingVerification,
                    SubscriptionStatus::Active,
                    now,
                    true,
                )
                .await?;
            self.metrics
                .challenges
                .with_label_values(&["verified"])
                .inc();
            tracing::info!("subscription verified");
        } else {
            let retry_at_ms = (now + micros(self.cfg.challenge_interval)) / 1000;
            let r = self
                .store
                .challenge_failed(id, self.cfg.max_challenges, retry_at_ms, now)
                .await?;
            let label = if r == delivery_model::store::ChallengeFailure::Exhausted {
                "exhausted"
            } else {
                "failed"
            };
            self.metrics.challenges.with_label_values(&[label]).inc();
            tracing::info!(result = label, "challenge failed");
        }
        self.store.ack_queue(&[entry_id.to_owned()]).await?;
        Ok(Handled::Acked)
    }
}

/// TMI's rule: exactly HTTP 200, a JSON object whose values are all strings, echoing the challenge.
fn challenge_answered(a: &Answer, challenge: &str) -> bool {
    if a.status != StatusCode::OK {
        return false;
    }
    match serde_json::from_slice::<HashMap<String, String>>(&a.body) {
        Ok(m) => m.get("challenge").is_some_and(|c| c == challenge),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DispatchConfig {
        DispatchConfig {
            user_agent: HeaderValue::from_static("ua"),
            retry_schedule: [60, 300, 900, 1800].map(Duration::from_secs).to_vec(),
            max_attempts: 5,
            lease: Duration::from_secs(40),
            excerpt_bytes: 8,
            max_challenges: 3,
            challenge_interval: Duration::from_secs(30),
            per_host: 4,
            host_wait: Duration::from_secs(9),
            circuit: CircuitPolicy::default(),
        }
    }

    #[test]
    fn retry_schedule_is_tmis_and_repeats_its_last_step() {
        let c = cfg();
        assert_eq!(c.retry_delay(1), Duration::from_secs(60));
        assert_eq!(c.retry_delay(4), Duration::from_secs(1800));
        assert_eq!(c.retry_delay(9), Duration::from_secs(1800));
    }

    #[test]
    fn error_excerpt_is_capped_and_clean() {
        assert_eq!(
            http_error(StatusCode::INTERNAL_SERVER_ERROR, b"boom\nbang and more", 8),
            "HTTP 500: boom ban...[truncated]"
        );
        assert_eq!(http_error(StatusCode::BAD_REQUEST, b"", 8), "HTTP 400: ");
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            headers: http::HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn challenge_rules() {
        assert!(challenge_answered(
            &answer(200, r#"{"challenge":"abc"}"#),
            "abc"
        ));
        assert!(challenge_answered(
            &answer(200, r#"{"challenge":"abc","note":"x"}"#),
            "abc"
        ));
        assert!(!challenge_answered(
            &answer(200, r#"{"challenge":"abc","ok":true}"#),
            "abc"
        ));
        assert!(!challenge_answered(
            &answer(201, r#"{"challenge":"abc"}"#),
            "abc"
        ));
        assert!(!challenge_answered(
            &answer(200, r#"{"challenge":"wrong-value"}"#),
            "abc"
        ));
        assert!(!challenge_answered(&answer(200, ""), "abc"));
    }

    #[test]
    fn retry_after_forms() {
        let mut a = answer(429, "");
        a.headers
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&a), Some(Duration::from_secs(120)));
        a.headers.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&a), Some(Duration::ZERO));
        a.headers
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&a), None);
    }
}
