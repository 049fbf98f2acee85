//! Prometheus metrics of the delivery-worker. Each doc comment is the metric's HELP text. Labels stay
//! bounded: outcomes and status classes, never URLs or hosts.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// All metrics of this service.
#[derive(Clone)]
pub struct Metrics {
    /// Attempts finished, by outcome (delivered, in_progress, retry, failed, gone, abandoned, refused,
    /// deferred, circuit_open, limited, superseded, fenced).
    pub deliveries: IntCounterVec,
    /// Duration of delivery attempts, by result class (2xx, 3xx, 4xx, 5xx, error), in seconds.
    pub attempt_duration: HistogramVec,
    /// Time from a delivery's creation to its first attempt's answer, in seconds.
    pub first_attempt_lag: Histogram,
    /// SLO: from the event (the input entry's append time, carried in the delivery id) to the first
    /// attempt's answer, in seconds.
    pub event_to_first_attempt: Histogram,
    /// SLO: from the event to the attempt that delivered it (a 2xx without an async callback), retries
    /// included, in seconds.
    pub event_to_delivered: Histogram,
    /// Hop latency: from a delivery's creation (its fan-out) to a worker holding its first attempt's lease.
    pub pickup_lag: Histogram,
    /// Hop latency: from a read of the queue to the request of one of its entries starting (the batch's
    /// leases, the subscription, the host's slot and circuit).
    pub send_wait: Histogram,
    /// Hop latency: from an attempt's answer to its outcome written and its entry acknowledged.
    pub outcome_write: Histogram,
    /// Requests in flight in this process.
    pub in_flight: IntGauge,
    /// Entries in the queue stream (live work: due now or in flight).
    pub queue_length: IntGauge,
    /// Queue entries read by some worker and not yet acknowledged.
    pub queue_pending: IntGauge,
    /// Age of the oldest queue entry not yet acknowledged (read or not), in seconds; 0 when the queue is
    /// empty.
    pub queue_oldest_age: Gauge,
    /// Messages waiting on the schedule (retries, reschedules, challenge retries).
    pub scheduled: IntGauge,
    /// Queue entries taken over from a stalled or dead worker.
    pub reclaimed: IntCounter,
    /// Messages moved from the schedule to the queue.
    pub promoted: IntCounter,
    /// Targets refused by the outbound address policy (SSRF guard).
    pub ssrf_refusals: IntCounter,
    /// Verification challenges sent, by result (verified, failed, exhausted).
    pub challenges: IntCounterVec,
    /// Times the queue's consumer group was missing and recreated.
    pub group_recreated: IntCounter,
    /// Failed Redis operations (the work stays pending and is retried).
    pub redis_errors: IntCounter,
    /// Queue entries acknowledged without an attempt, by reason: `expired` (the record is gone, e.g. after a
    /// worker outage longer than the active TTL: the delivery is lost) or `not_due` (promoted early; the
    /// delivery went back on the schedule at its due time).
    pub dropped: IntCounterVec,
    /// Whether this worker last saw a host's circuit open (1) or closed (0). At most
    /// [`MAX_CIRCUIT_HOSTS`] hosts get their own label; the rest share `host="other"`.
    pub circuit_state: IntGaugeVec,
    /// Subscriptions this worker's outcome writes disabled (endpoint health), by reason (`gone`: the
    /// receiver answered 410; `failing`: `worker.disable_after_failures` in a row).
    pub subscriptions_disabled: IntCounterVec,
    /// Subscriptions now `inactive`: disabled by endpoint health (until an administrator enables them), or an
    /// operator-pinned sink switched off.
    pub subscriptions_inactive: IntGauge,
    /// Pending deliveries failed without an attempt because their subscription was disabled.
    pub disabled_failed: IntCounter,
    /// Attempts deferred without consuming an attempt, by reason: `host` (no free slot of the host in this
    /// worker), `rate` and `in_flight` (the subscription's limits, shared by every replica).
    pub deferrals: IntCounterVec,
    circuit_hosts: Arc<Mutex<HashSet<String>>>,
}

/// Bound on the `host` label of `hookline_worker_circuit_open`.
pub const MAX_CIRCUIT_HOSTS: usize = 50;

impl Metrics {
    /// Creates and registers the metrics.
    ///
    /// # Errors
    /// A metric registered twice.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            deliveries: IntCounterVec::new(
                Opts::new(
                    "hookline_worker_deliveries_total",
                    "Attempts finished, by outcome.",
                ),
                &["outcome"],
            )?,
            attempt_duration: HistogramVec::new(
                HistogramOpts::new(
                    "hookline_worker_attempt_duration_seconds",
                    "Duration of delivery attempts.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ]),
                &["class"],
            )?,
            first_attempt_lag: Histogram::with_opts(
                HistogramOpts::new(
                    "hookline_worker_first_attempt_lag_seconds",
                    "Time from a delivery's creation to its first attempt's answer.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
                ]),
            )?,
            event_to_first_attempt: slo(
                "hookline_worker_event_to_first_attempt_seconds",
                "Time from the event to its delivery's first attempt's answer.",
            )?,
            event_to_delivered: slo(
                service_common::ops::EVENT_TO_DELIVERED,
                service_common::ops::EVENT_TO_DELIVERED_HELP,
            )?,
            pickup_lag: hop(
                "hookline_worker_pickup_lag_seconds",
                "Time from a delivery's creation to a worker holding its first attempt's lease.",
            )?,
            send_wait: hop(
                "hookline_worker_send_wait_seconds",
                "Time from reading a queue entry to its request starting (lease, host slot, circuit).",
            )?,
            outcome_write: hop(
                "hookline_worker_outcome_write_seconds",
                "Time from an attempt's answer to its outcome written and its entry acknowledged.",
            )?,
            in_flight: IntGauge::new(
                "hookline_worker_in_flight",
                "Requests in flight in this process.",
            )?,
            queue_length: IntGauge::new(
                "hookline_worker_queue_length",
                "Entries in the queue stream.",
            )?,
            queue_pending: IntGauge::new(
                "hookline_worker_queue_pending",
                "Queue entries read by a worker and not yet acknowledged.",
            )?,
            queue_oldest_age: Gauge::new(
                "hookline_worker_queue_oldest_age_seconds",
                "Age of the oldest queue entry not yet acknowledged (0 when the queue is empty).",
            )?,
            scheduled: IntGauge::new(
                "hookline_worker_scheduled",
                "Messages waiting on the schedule.",
            )?,
            reclaimed: IntCounter::new(
                "hookline_worker_reclaimed_total",
                "Queue entries taken over from a stalled or dead worker.",
            )?,
            promoted: IntCounter::new(
                "hookline_worker_promoted_total",
                "Messages moved from the schedule to the queue.",
            )?,
            ssrf_refusals: IntCounter::new(
                "hookline_worker_ssrf_refusals_total",
                "Targets refused by the outbound address policy.",
            )?,
            challenges: IntCounterVec::new(
                Opts::new(
                    "hookline_worker_challenges_total",
                    "Verification challenges sent, by result.",
                ),
                &["result"],
            )?,
            group_recreated: IntCounter::new(
                "hookline_worker_group_recreated_total",
                "Times the queue's consumer group was missing and recreated.",
            )?,
            redis_errors: IntCounter::new(
                "hookline_worker_redis_errors_total",
                "Failed Redis operations.",
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "hookline_worker_dropped_total",
                    "Queue entries acknowledged without an attempt, by reason (expired: the delivery is lost; not_due: rescheduled).",
                ),
                &["reason"],
            )?,
            circuit_state: IntGaugeVec::new(
                Opts::new(
                    "hookline_worker_circuit_open",
                    "Whether this worker last saw the host's circuit open (1) or closed (0).",
                ),
                &["host"],
            )?,
            subscriptions_disabled: IntCounterVec::new(
                Opts::new(
                    "hookline_worker_subscriptions_disabled_total",
                    "Subscriptions disabled by an outcome write, by reason (gone, failing).",
                ),
                &["reason"],
            )?,
            disabled_failed: IntCounter::new(
                "hookline_worker_disabled_failed_total",
                "Pending deliveries failed without an attempt because their subscription was disabled.",
            )?,
            subscriptions_inactive: IntGauge::new(
                "hookline_worker_subscriptions_inactive",
                "Subscriptions now inactive (disabled by endpoint health, or an operator-pinned sink switched off).",
            )?,
            deferrals: IntCounterVec::new(
                Opts::new(
                    "hookline_worker_deferrals_total",
                    "Attempts deferred without consuming an attempt, by reason (host, rate, in_flight).",
                ),
                &["reason"],
            )?,
            circuit_hosts: Arc::new(Mutex::new(HashSet::new())),
        };
        registry.register(Box::new(m.circuit_state.clone()))?;
        registry.register(Box::new(m.deliveries.clone()))?;
        registry.register(Box::new(m.attempt_duration.clone()))?;
        registry.register(Box::new(m.first_attempt_lag.clone()))?;
        registry.register(Box::new(m.event_to_first_attempt.clone()))?;
        registry.register(Box::new(m.event_to_delivered.clone()))?;
        registry.register(Box::new(m.queue_oldest_age.clone()))?;
        registry.register(Box::new(m.pickup_lag.clone()))?;
        registry.register(Box::new(m.send_wait.clone()))?;
        registry.register(Box::new(m.outcome_write.clone()))?;
        registry.register(Box::new(m.in_flight.clone()))?;
        registry.register(Box::new(m.queue_length.clone()))?;
        registry.register(Box::new(m.queue_pending.clone()))?;
        registry.register(Box::new(m.scheduled.clone()))?;
        registry.register(Box::new(m.reclaimed.clone()))?;
        registry.register(Box::new(m.promoted.clone()))?;
        registry.register(Box::new(m.ssrf_refusals.clone()))?;
        registry.register(Box::new(m.challenges.clone()))?;
        registry.register(Box::new(m.group_recreated.clone()))?;
        registry.register(Box::new(m.redis_errors.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.subscriptions_disabled.clone()))?;
        registry.register(Box::new(m.disabled_failed.clone()))?;
        registry.register(Box::new(m.deferrals.clone()))?;
        registry.register(Box::new(m.subscriptions_inactive.clone()))?;
        Ok(m)
    }
}

/// A per-hop latency histogram ([`service_common::ops::hop_buckets`]).
fn hop(name: &str, help: &str) -> prometheus::Result<Histogram> {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(service_common::ops::hop_buckets()))
}

pub use service_common::ops::{SLO_BUCKETS, since_event};

/// An SLO histogram ([`SLO_BUCKETS`]).
fn slo(name: &str, help: &str) -> prometheus::Result<Histogram> {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(SLO_BUCKETS.to_vec()))
}

impl Metrics {
    /// Records what this worker last saw of `host`'s circuit, with bounded label cardinality.
    pub fn circuit_open(&self, host: &str, open: bool) {
        let label = {
            let mut hosts = self
                .circuit_hosts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if hosts.contains(host) {
                host.to_owned()
            } else if !open {
                // A closed circuit on a host never seen open needs no series.
                return;
            } else if hosts.len() < MAX_CIRCUIT_HOSTS {
                hosts.insert(host.to_owned());
                host.to_owned()
            } else {
                "other".to_owned()
            }
        };
        self.circuit_state
            .with_label_values(&[label.as_str()])
            .set(i64::from(open));
    }
}
