//! This worker's side of the circuit breaker: whether a host's circuit lets an attempt through, and what
//! an attempt tells the breaker.
//!
//! The breaker's state lives in Redis, shared by every replica; the outcome script updates it with each
//! outcome it writes. What this module keeps is a short-lived memory of hosts seen closed, so a healthy
//! host does not cost a Redis round trip per delivery.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use delivery_model::store::{CircuitSignal, CircuitState};
use delivery_model::time::{Micros, now_micros};

use super::Dispatcher;
use crate::client::{Answer, SendError};

/// How long this worker trusts that a host's circuit is closed without asking Redis again. The breaker's
/// state is shared by every replica; a circuit another replica opens takes effect here within this time,
/// and at once after this worker's own next failure. It saves a Redis round trip per healthy delivery.
const CIRCUIT_TRUST: Duration = Duration::from_secs(1);

/// Hosts whose circuit this worker recently saw closed.
#[derive(Default)]
pub(super) struct ClosedCircuits {
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

/// What a request's result tells the breaker: a 2xx closes the circuit, a policy refusal says nothing
/// about the host, anything else counts as a failure.
pub(super) fn signal(result: &Result<Answer, SendError>) -> CircuitSignal {
    match result {
        Ok(a) if a.status.is_success() => CircuitSignal::Success,
        Err(SendError::Refused(_)) => CircuitSignal::None,
        _ => CircuitSignal::Failure,
    }
}

impl Dispatcher {
    /// When the circuit of `host` is open: the time (µs) until which it stays open; `None` lets the attempt
    /// through (closed, or this attempt is the half-open probe).
    ///
    /// # Errors
    /// Redis failure.
    pub(super) async fn circuit_open_until(
        &self,
        host: &str,
    ) -> delivery_model::Result<Option<Micros>> {
        if self.circuits.known_closed(host) {
            return Ok(None);
        }
        match self
            .store
            .circuit_check(host, &self.cfg.circuit, now_micros() / 1000)
            .await?
        {
            CircuitState::Closed => self.circuits.closed(host),
            CircuitState::Probe => self.circuits.forget(host),
            CircuitState::Open { until_ms } => {
                self.circuits.forget(host);
                self.metrics.circuit_open(host, true);
                return Ok(Some(until_ms * 1000));
            }
        }
        Ok(None)
    }

    /// Updates this worker's memory of `host` with what a request told the breaker (the shared state is
    /// updated with the outcome's write).
    pub(super) fn learn(&self, host: &str, signal: CircuitSignal) {
        match signal {
            CircuitSignal::Success => {
                self.circuits.closed(host);
                self.metrics.circuit_open(host, false);
            }
            CircuitSignal::Failure => self.circuits.forget(host),
            CircuitSignal::None => {}
        }
    }
}
