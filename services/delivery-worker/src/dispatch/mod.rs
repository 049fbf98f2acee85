//! One queue entry, start to finish: a delivery attempt or a verification challenge.
//!
//! A delivery attempt: its lease is taken with the rest of its read batch ([`Dispatcher::begin_batch`],
//! one [`Store::begin_attempts`] call), then it checks the subscription, takes a per-host slot (or defers
//! without consuming an attempt, so one slow host cannot hold every slot), POSTs the stored payload bytes
//! with TMI's headers, classifies the answer ([`AttemptOutcome`]), and hands the outcome to the group commit
//! ([`Outcomes`]), which writes it fenced by the lease and acknowledges the entry in the same step. Exactly
//! one POST per attempt.
//!
//! This module sorts entries and settles their results; the work itself sits in its submodules:
//! - `config`: [`DispatchConfig`], the dispatcher's settings and its retry schedule.
//! - `lease`: taking a read batch's leases in one call, which yields each [`Attempt`].
//! - `attempt`: one attempt as typed stages: prepare (subscription, target, host slot, circuit), send,
//!   classify the answer, and the fenced write of the outcome.
//! - `outcome`: the attempt's outcome as this worker counts it (its metric label), the retry decision, and
//!   how an answer's error and `Retry-After` are read.
//! - [`header`]: TMI's header names and the headers of each request the worker sends.
//! - `host_slots`: the per-host limit on requests in flight.
//! - `limits`: the per-subscription rate and in-flight limits, shared by every replica through Redis.
//! - `circuit`: this worker's view of the shared circuit breaker.
//! - `health`: what follows when an outcome write disabled a subscription (endpoint health).
//! - `challenge`: a subscription's verification challenge.
//! - `spans`: the attempt's and the challenge's spans (continuing the trace their work carries) and the
//!   outbound `traceparent`.
//!
//! [`AttemptOutcome`]: delivery_model::store::AttemptOutcome

mod attempt;
mod challenge;
mod circuit;
mod config;
pub mod header;
mod health;
mod host_slots;
mod lease;
mod limits;
mod outcome;
mod spans;

use std::time::{Duration, Instant};

use tracing::Instrument as _;

use delivery_model::ids::DeliveryId;
use delivery_model::queue::{MESSAGE_FIELD, QueueMessage};
use delivery_model::store::{Store, StreamEntry};
use delivery_model::time::Micros;

use crate::client::HttpClient;
use crate::delegation::Delegation;
use crate::metrics::Metrics;
use crate::outcomes::Outcomes;

pub use config::DispatchConfig;
pub(crate) use health::on_disabled;
pub use lease::Attempt;

/// Handles queue entries. Shared by every task of the worker.
pub struct Dispatcher {
    store: Store,
    client: HttpClient,
    cfg: DispatchConfig,
    delegation: Option<Delegation>,
    metrics: Metrics,
    hosts: host_slots::HostSlots,
    circuits: circuit::ClosedCircuits,
    outcomes: Outcomes,
}

/// A queue entry, sorted by [`Dispatcher::classify`].
pub enum Work {
    /// A delivery attempt: its lease is taken with the rest of its read batch.
    Delivery { entry_id: String, id: DeliveryId },
    /// A challenge or an undecodable entry: handled alone.
    Other(StreamEntry),
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

impl Dispatcher {
    pub fn new(
        store: Store,
        client: HttpClient,
        cfg: DispatchConfig,
        delegation: Option<Delegation>,
        metrics: Metrics,
    ) -> Self {
        let outcomes = Outcomes::start(store.clone(), cfg.circuit.clone());
        let hosts = host_slots::HostSlots::new(cfg.host_bounds);
        Self {
            store,
            client,
            cfg,
            delegation,
            metrics,
            hosts,
            circuits: circuit::ClosedCircuits::default(),
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
    pub async fn dispatch(&self, stream: &str, entry: StreamEntry) -> Handled {
        let msg = entry
            .fields
            .get(MESSAGE_FIELD)
            .map(|m| QueueMessage::decode(m));
        let result = match msg {
            Some(Ok(QueueMessage::DeliveryV1 { delivery_id })) => {
                let mut go = self
                    .begin_batch(vec![(entry.id.clone(), delivery_id)], Instant::now())
                    .await;
                return match go.pop().flatten() {
                    Some(attempt) => self.attempt(attempt).await,
                    None => Handled::LeftPending,
                };
            }
            Some(Ok(QueueMessage::ChallengeV1 {
                subscription_id,
                trace,
            })) => {
                let span = spans::challenge(subscription_id, trace.as_ref());
                self.challenge(stream, &entry.id, subscription_id, trace)
                    .instrument(span)
                    .await
            }
            _ => {
                tracing::warn!(entry.id = %entry.id, "undecodable queue entry acknowledged and skipped");
                self.store
                    .ack_queue(stream, std::slice::from_ref(&entry.id))
                    .await
                    .map(|()| Handled::Acked)
            }
        };
        self.settle(&entry.id, result)
    }

    /// Makes one attempt whose lease [`Dispatcher::begin_batch`] took.
    pub async fn attempt(&self, attempt: Attempt) -> Handled {
        let entry_id = attempt.entry_id.clone();
        let span = spans::attempt(&attempt.leased.record);
        let result = self.attempt_delivery(attempt).instrument(span).await;
        self.settle(&entry_id, result)
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
}

/// An answer for the unit tests of the submodules that read answers.
#[cfg(test)]
fn answer(status: u16, body: &str) -> crate::client::Answer {
    crate::client::Answer {
        status: http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK),
        headers: http::HeaderMap::new(),
        body: bytes::Bytes::from(body.to_owned()),
    }
}
