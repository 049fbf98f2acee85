//! The dispatcher's settings, read once from the service's [`Settings`], and the retry schedule they hold.

use std::time::Duration;

use delivery_model::store::{CircuitPolicy, HealthPolicy};
use http::HeaderValue;
use service_common::config::Settings;

/// The dispatcher's settings.
pub struct DispatchConfig {
    pub user_agent: HeaderValue,
    pub retry_schedule: Vec<Duration>,
    pub max_attempts: u32,
    pub lease: Duration,
    pub excerpt_bytes: usize,
    pub max_challenges: u32,
    pub challenge_interval: Duration,
    /// The floor and ceiling of every host's adaptive limit (see `host_slots`).
    pub(super) host_bounds: super::host_slots::GateBounds,
    /// How long an attempt may wait for a slot of its host: one request timeout (the longest a slot can
    /// stay taken by one request). The wait does not eat into the request's lease: an attempt that waited
    /// renews its lease before it sends (see `renew_after`).
    pub host_wait: Duration,
    /// An attempt that has spent longer than this since its lease was taken (waiting for its host's slot)
    /// renews the lease before it sends: half the lease's margin, so a request always starts with at least
    /// its timeout plus half the margin ahead of it, and an attempt that got its slot at once costs no
    /// extra Redis call.
    pub renew_after: Duration,
    pub circuit: CircuitPolicy,
    /// `outbound.send_traceparent`: deliveries carry the attempt's W3C trace context to the receiver.
    pub send_traceparent: bool,
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
            host_bounds: super::host_slots::GateBounds::new(
                s.worker.max_in_flight,
                s.worker.max_in_flight_per_host,
            ),
            host_wait: s.outbound.request_timeout(),
            renew_after: Duration::from_millis(s.worker.lease_margin_ms / 2),
            circuit: CircuitPolicy {
                failure_threshold: s.worker.circuit_failure_threshold,
                open_windows: s
                    .worker
                    .circuit_open_ms
                    .iter()
                    .map(|ms| Duration::from_millis(*ms))
                    .collect(),
                probe_lease: s.worker.lease(&s.outbound),
                health: HealthPolicy {
                    disable_after_failures: s.worker.disable_after_failures,
                    disable_after_failing_for: Duration::from_secs(
                        s.worker.disable_after_failing_for_secs,
                    ),
                },
            },
            send_traceparent: s.outbound.send_traceparent,
        })
    }

    /// The most requests one host may have in flight (its adaptive limit's ceiling): how many idle
    /// connections per host the HTTP client keeps, so a fast host at its ceiling reuses its connections.
    pub fn host_ceiling(&self) -> usize {
        self.host_bounds.ceiling
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

    /// The schedule's longest delay: how long a receiver's `Retry-After` may hold a delivery back at most.
    pub(super) fn largest_step(&self) -> Duration {
        self.retry_schedule
            .iter()
            .max()
            .copied()
            .unwrap_or(Duration::from_secs(60))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// TMI's schedule and limits, with a short error excerpt.
    pub(in crate::dispatch) fn cfg() -> DispatchConfig {
        DispatchConfig {
            user_agent: HeaderValue::from_static("ua"),
            retry_schedule: [60, 300, 900, 1800].map(Duration::from_secs).to_vec(),
            max_attempts: 5,
            lease: Duration::from_secs(40),
            excerpt_bytes: 8,
            max_challenges: 3,
            challenge_interval: Duration::from_secs(30),
            host_bounds: super::super::host_slots::GateBounds::new(8, 4),
            host_wait: Duration::from_secs(30),
            renew_after: Duration::from_secs(5),
            circuit: CircuitPolicy::default(),
            send_traceparent: false,
        }
    }

    #[test]
    fn retry_schedule_is_tmis_and_repeats_its_last_step() {
        let c = cfg();
        assert_eq!(c.retry_delay(1), Duration::from_secs(60));
        assert_eq!(c.retry_delay(4), Duration::from_secs(1800));
        assert_eq!(c.retry_delay(9), Duration::from_secs(1800));
        assert_eq!(c.largest_step(), Duration::from_secs(1800));
    }
}
