//! The circuit breaker shared by every worker replica: its rules, the check before an attempt, and (on a
//! cluster) its update after the outcome. On one node the outcome script updates the breaker itself; on a
//! cluster a host's breaker hash has no tag, so each host's signals go to their own single-key script. Both
//! scripts share one definition of the breaker (`lua/lib/circuit.lua`).

use std::collections::HashMap;
use std::time::Duration;

use super::attempts::{FinishItem, FinishResult};
use super::{Store, scripts};
use crate::error::{Error, Result};
use crate::time::Micros;

/// What an attempt tells its destination's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitSignal {
    /// The host answered 2xx: close the circuit.
    Success,
    /// Transport error or non-2xx: count a failure.
    Failure,
    /// Nothing was learned about the host (not attempted, refused by policy).
    None,
}

impl CircuitSignal {
    /// The signal as the outcome and circuit scripts spell it.
    pub fn name(self) -> &'static str {
        match self {
            CircuitSignal::Success => "success",
            CircuitSignal::Failure => "failure",
            CircuitSignal::None => "none",
        }
    }
}

/// The breaker's rules (TMI: 5 consecutive failures open it for 1, 5, 15, then 30 minutes).
#[derive(Debug, Clone)]
pub struct CircuitPolicy {
    pub failure_threshold: u32,
    /// How long the circuit stays open on its 1st, 2nd, … opening; the last repeats.
    pub open_windows: Vec<Duration>,
    /// How long a half-open probe holds the circuit before another attempt may probe.
    pub probe_lease: Duration,
    /// When failures disable the subscription itself (the breaker only pauses a host).
    pub health: HealthPolicy,
}

impl Default for CircuitPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_windows: [60, 300, 900, 1800].map(Duration::from_secs).to_vec(),
            probe_lease: Duration::from_secs(40),
            health: HealthPolicy::default(),
        }
    }
}

/// Endpoint health (issue #18): when an outcome disables a subscription for its failures
/// ([`DisabledReason::Failing`](crate::subscription::DisabledReason::Failing)). A `410 Gone`
/// ([`AttemptOutcome::Gone`](super::AttemptOutcome::Gone)) disables it whatever this says.
#[derive(Debug, Clone, Copy, Default)]
pub struct HealthPolicy {
    /// Permanent failures in a row (`publication_failures`) that may disable it; 0: never.
    pub disable_after_failures: u32,
    /// … if it has also had no success (or, never used, no creation) for this long.
    pub disable_after_failing_for: Duration,
}

static NO_POLICY: std::sync::LazyLock<CircuitPolicy> =
    std::sync::LazyLock::new(CircuitPolicy::default);

/// The circuit-breaker part of an attempt's outcome.
#[derive(Debug, Clone, Copy)]
pub struct CircuitUpdate<'a> {
    /// Destination host, lower-cased.
    pub host: &'a str,
    pub signal: CircuitSignal,
    pub policy: &'a CircuitPolicy,
}

impl CircuitUpdate<'static> {
    /// An outcome that tells the breaker nothing.
    pub fn none() -> Self {
        Self {
            host: "",
            signal: CircuitSignal::None,
            policy: &NO_POLICY,
        }
    }
}

/// What a host's circuit breaker says before an attempt ([`Store::circuit_check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Send.
    Closed,
    /// The open window has passed: this attempt is the single half-open probe.
    Probe,
    /// Do not send before `until` (Unix ms); reschedule without consuming an attempt.
    Open { until_ms: i64 },
}

impl Store {
    /// Asks `host`'s circuit breaker whether an attempt may go now (see [`CircuitState`]).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn circuit_check(
        &self,
        host: &str,
        policy: &CircuitPolicy,
        now_ms: i64,
    ) -> Result<CircuitState> {
        let probe = u64::try_from(policy.probe_lease.as_millis()).unwrap_or(u64::MAX);
        let reply: Vec<String> = scripts::CIRCUIT_CHECK
            .run(
                self.pool(),
                vec![self.keys().circuit(host)],
                vec![now_ms.to_string(), probe.to_string()],
            )
            .await?;
        match reply.first().map(String::as_str) {
            Some("closed") => Ok(CircuitState::Closed),
            Some("probe") => Ok(CircuitState::Probe),
            Some("open") => Ok(CircuitState::Open {
                until_ms: reply.get(1).and_then(|v| v.parse().ok()).unwrap_or(now_ms),
            }),
            other => Err(Error::Script(format!("circuit_check: {other:?}"))),
        }
    }

    /// Tells each host's breaker what the written attempts of a batch learned about it, in the batch's
    /// order (cluster mode, after the outcome script). Fenced attempts are left out: a newer attempt owns
    /// their delivery. A failed update is logged and dropped: the breaker is advisory, and losing one
    /// signal only delays an opening or a closing by one attempt.
    pub(super) async fn update_circuits(
        &self,
        items: &[FinishItem],
        results: &[FinishResult],
        policy: &CircuitPolicy,
        now: Micros,
    ) {
        let mut by_host: HashMap<&str, Vec<String>> = HashMap::new();
        for (item, result) in items.iter().zip(results) {
            if *result == FinishResult::Fenced || item.signal == CircuitSignal::None {
                continue;
            }
            by_host
                .entry(item.host.as_str())
                .or_default()
                .push(item.signal.name().to_owned());
        }
        let calls = by_host.into_iter().map(|(host, signals)| {
            let mut args = circuit_args(policy, now).to_vec();
            args.extend(signals);
            let key = self.keys().circuit(host);
            async move {
                let r: Result<i64> = scripts::CIRCUIT_UPDATE
                    .run(self.pool(), vec![key], args)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(host, error = %e, "circuit breaker update failed");
                }
            }
        });
        futures::future::join_all(calls).await;
    }
}

/// The circuit breaker's arguments of the outcome and circuit scripts: failures that open a circuit, now
/// (ms), the open windows (ms, comma-separated) and how long an idle circuit hash lives (s).
pub(super) fn circuit_args(policy: &CircuitPolicy, now: Micros) -> [String; 4] {
    [
        policy.failure_threshold.to_string(),
        (now / 1000).to_string(),
        policy
            .open_windows
            .iter()
            .map(|w| w.as_millis().to_string())
            .collect::<Vec<_>>()
            .join(","),
        // Idle circuits disappear: a host quiet for longer than the widest window starts fresh.
        (policy
            .open_windows
            .iter()
            .max()
            .map_or(3600, Duration::as_secs)
            + 3600)
            .to_string(),
    ]
}
