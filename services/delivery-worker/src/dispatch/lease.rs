//! Taking the leases of a read batch's deliveries in one Redis call: each lease that is ours becomes an
//! [`Attempt`], ready to send.

use std::time::{Duration, Instant};

use delivery_model::ids::DeliveryId;
use delivery_model::store::{BeginAttempt, BeginItem, Leased};
use delivery_model::time::{Micros, now_micros};

use super::{Dispatcher, micros};

/// How late a scheduled message may be relative to its record's `next_retry_at` (clock skew between hosts).
const DUE_TOLERANCE: Duration = Duration::from_secs(2);

/// A delivery whose lease is held: ready to send.
pub struct Attempt {
    pub(super) entry_id: String,
    /// Fences the outcome's write: it lands only while this lease is still the record's.
    pub(super) token: String,
    /// When the lease was taken.
    pub(super) now: Micros,
    /// When its queue entry was read (the start of the `send_wait` hop).
    pub(super) read_at: Instant,
    pub(super) leased: Leased,
}

impl Dispatcher {
    /// Takes the leases of a read batch's deliveries (queue entry id, delivery id) in one Redis call.
    /// Returns, per item in order, the attempt to make, or `None`: no longer work (acknowledged in the same
    /// call), leased by a live attempt elsewhere, or not readable (left pending).
    pub async fn begin_batch(
        &self,
        batch: Vec<(String, DeliveryId)>,
        read_at: Instant,
    ) -> Vec<Option<Attempt>> {
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
            .map(|(((entry_id, id), token), r)| match r {
                Ok(BeginAttempt::Go(leased)) => {
                    if leased.record.attempts == 0 {
                        let lag = (now - leased.record.created_at).max(0);
                        self.metrics.pickup_lag.observe(lag as f64 / 1e6);
                    }
                    Some(Attempt {
                        entry_id,
                        token,
                        now,
                        read_at,
                        leased: *leased,
                    })
                }
                Ok(BeginAttempt::Missing) => {
                    // Its record outlived the active TTL (a long worker outage): the delivery is lost, so
                    // it must show up somewhere an operator looks.
                    self.metrics.dropped.with_label_values(&["expired"]).inc();
                    tracing::warn!(delivery.id = %id, entry.id = %entry_id, "queue entry for an expired delivery record acknowledged; the delivery is lost");
                    None
                }
                Ok(BeginAttempt::NotDue(at)) => {
                    // Promoted early (worker clocks differ by more than the due tolerance); the store put
                    // it back on the schedule in the same step.
                    self.metrics.dropped.with_label_values(&["not_due"]).inc();
                    tracing::info!(delivery.id = %id, entry.id = %entry_id, due_at_us = at, "queue entry not due yet; the delivery is back on the schedule at its due time");
                    None
                }
                Ok(BeginAttempt::Done(_) | BeginAttempt::Busy) => None,
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
}
