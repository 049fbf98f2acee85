//! Attempts: the lease an attempt takes before sending, and the fenced write of its outcome.
//!
//! Both sides work on batches, because a delivery's Redis cost is dominated by the fixed cost of a script
//! call, not by the handful of commands inside it: the worker takes the leases of a whole read batch in one
//! script ([`Store::begin_attempts`]) and writes the outcomes of every attempt that finished meanwhile in
//! another ([`Store::finish_attempts`], a group commit). Items of a batch are independent: each is exactly
//! what a batch of one would do, which is what [`Store::begin_attempt`] and [`Store::finish_attempt`] are.
//!
//! The circuit breaker shared by every replica (`circuits.rs`) is read before an attempt
//! ([`Store::circuit_check`]) and updated with the outcome.

use std::collections::HashMap;
use std::time::Duration;

use fred::types::Value;

use super::circuits::circuit_args;
pub use super::circuits::{
    CircuitPolicy, CircuitSignal, CircuitState, CircuitUpdate, HealthPolicy,
};
use super::{Store, scripts};
use crate::delivery::{ATTEMPT_LOG_LEN, AttemptLogEntry, DeliveryRecord, DeliveryStatus};
use crate::error::{Error, Result};
use crate::ids::{DeliveryId, SubscriptionId};
use crate::keys::{Layout, QUEUE_GROUP};
use crate::queue::{MESSAGE_FIELD, QueueMessage};
use crate::subscription::{DisabledReason, Subscription};
use crate::time::Micros;

/// A delivery whose lease this attempt holds, with its subscription as read in the same step.
#[derive(Debug)]
pub struct Leased {
    pub record: DeliveryRecord,
    /// `None` when the subscription was deleted.
    pub subscription: Option<Subscription>,
}

/// Result of [`Store::begin_attempts`] for one delivery.
#[derive(Debug)]
pub enum BeginAttempt {
    /// The lease is ours: send it.
    Go(Box<Leased>),
    /// The record expired or never existed.
    Missing,
    /// Already out of `pending` (delivered, failed, or in progress by callback).
    Done(DeliveryStatus),
    /// Another attempt holds a live lease: leave the entry to be reclaimed later.
    Busy,
    /// Scheduled for later (at this time): this queue entry was stale. Its queue entry was acknowledged and
    /// the delivery put back on the schedule at its due time in the same step.
    NotDue(Micros),
}

/// The outcome of one attempt, as the worker decided it.
#[derive(Debug, Clone)]
pub enum AttemptOutcome {
    /// 2xx: `delivered`.
    Delivered,
    /// 2xx with `X-TMI-Callback: async`: `in_progress`, awaiting callbacks.
    InProgress,
    /// Failed, attempts remain: try again at `at`.
    Retry { error: String, at: Micros },
    /// Not attempted (circuit open, `Retry-After` wait): try at `at` without consuming an attempt.
    Reschedule { error: String, at: Micros },
    /// The last attempt failed.
    Failed { error: String },
    /// Failed without an attempt (subscription gone or not active, target refused by policy).
    Abandoned { error: String },
    /// The receiver answered `410 Gone`: failed for good, and its subscription is disabled
    /// ([`DisabledReason::Gone`]) in the same step.
    Gone { error: String },
}

impl AttemptOutcome {
    /// The outcome's name, as the outcome script and the attempt log spell it.
    pub fn name(&self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::InProgress => "in_progress",
            AttemptOutcome::Retry { .. } => "retry",
            AttemptOutcome::Reschedule { .. } => "reschedule",
            AttemptOutcome::Failed { .. } => "failed",
            AttemptOutcome::Abandoned { .. } => "abandoned",
            AttemptOutcome::Gone { .. } => "gone",
        }
    }

    /// The error it records, if any.
    pub fn error(&self) -> Option<&str> {
        match self {
            AttemptOutcome::Retry { error, .. }
            | AttemptOutcome::Reschedule { error, .. }
            | AttemptOutcome::Failed { error }
            | AttemptOutcome::Abandoned { error }
            | AttemptOutcome::Gone { error } => Some(error),
            AttemptOutcome::Delivered | AttemptOutcome::InProgress => None,
        }
    }
}

/// What [`Store::finish_attempts`] did with one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishResult {
    /// The outcome was written and the queue entry acknowledged.
    Written,
    /// A callback changed the status first; the attempt was counted, the status kept.
    Superseded,
    /// Our lease was taken over by a newer attempt: nothing written.
    Fenced,
    /// Written, and the write disabled the subscription (endpoint health): its other pending deliveries
    /// are then failed by [`Store::fail_disabled_pending`].
    Disabled(DisabledReason),
}

/// One delivery of a [`Store::begin_attempts`] batch.
#[derive(Debug, Clone, Copy)]
pub struct BeginItem<'a> {
    pub id: DeliveryId,
    /// This attempt's lease token (unique per attempt).
    pub token: &'a str,
    /// The queue entry that carried it: acknowledged when the delivery is no longer work. Empty: none.
    pub entry_id: &'a str,
}

/// One attempt's outcome for [`Store::finish_attempts`].
#[derive(Debug, Clone)]
pub struct FinishItem {
    pub id: DeliveryId,
    pub subscription_id: SubscriptionId,
    /// The lease token the attempt began with: the write is fenced by it.
    pub token: String,
    /// The queue entry to acknowledge with the write.
    pub entry_id: String,
    pub outcome: AttemptOutcome,
    /// Destination host, lower-cased (empty when `signal` is `None`).
    pub host: String,
    pub signal: CircuitSignal,
    /// The attempt for the record's log: `None` when no attempt was made (deferred, rescheduled,
    /// abandoned).
    pub log: Option<AttemptLogEntry>,
}

/// A flat `[field, value, …]` reply as a map.
pub(super) fn flat(v: Value) -> HashMap<String, String> {
    let mut h = HashMap::new();
    let mut it = v.into_array().into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if let (Some(k), Some(v)) = (k.as_string(), v.as_string()) {
            h.insert(k, v);
        }
    }
    h
}

/// Most deliveries one lease script takes (see [`Store::begin_attempts`]).
pub const BEGIN_CHUNK: usize = 64;

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Store {
    /// Takes the lease of a pending delivery for one attempt and reads its subscription in the same step:
    /// a batch of one ([`Store::begin_attempts`]) that acknowledges no queue entry.
    ///
    /// # Errors
    /// Redis failure or a corrupt record.
    pub async fn begin_attempt(
        &self,
        id: DeliveryId,
        token: &str,
        now: Micros,
        lease_until: Micros,
        due_tolerance: Duration,
    ) -> Result<BeginAttempt> {
        let item = BeginItem {
            id,
            token,
            entry_id: "",
        };
        self.begin_attempts(&[item], now, lease_until, due_tolerance)
            .await
            .pop()
            .unwrap_or_else(|| Err(Error::Script("begin_attempts: no result".into())))
    }

    /// Takes the leases of a batch of deliveries and returns, per item in order, whether its attempt may go
    /// (with the record and its subscription). Entries that are no longer work (record gone, out of
    /// `pending`, scheduled for later) are acknowledged and deleted from the queue in the same step (one
    /// scheduled for later goes back on the schedule at its due time, so it is not lost); a busy
    /// one (another attempt's live lease) stays pending.
    ///
    /// The batch goes as one script per [`BEGIN_CHUNK`] items, the calls in flight together: a reply holds
    /// every record, and the client re-parses a reply from its start each time more of it arrives, so one
    /// huge reply costs far more than a few medium ones.
    ///
    /// Per item: a corrupt record or subscription, or the Redis failure of its chunk (nothing of that chunk
    /// was leased or acknowledged).
    pub async fn begin_attempts(
        &self,
        items: &[BeginItem<'_>],
        now: Micros,
        lease_until: Micros,
        due_tolerance: Duration,
    ) -> Vec<Result<BeginAttempt>> {
        let chunks = items
            .chunks(BEGIN_CHUNK)
            .map(|chunk| self.begin_chunk(chunk, now, lease_until, due_tolerance));
        let mut out = Vec::with_capacity(items.len());
        for (chunk, result) in items
            .chunks(BEGIN_CHUNK)
            .zip(futures::future::join_all(chunks).await)
        {
            match result {
                Ok(results) => out.extend(results),
                Err(e) => out.extend(chunk.iter().map(|_| Err(e.for_waiter()))),
            }
        }
        out
    }

    /// One script call of [`Store::begin_attempts`].
    async fn begin_chunk(
        &self,
        items: &[BeginItem<'_>],
        now: Micros,
        lease_until: Micros,
        due_tolerance: Duration,
    ) -> Result<Vec<Result<BeginAttempt>>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let k = self.keys();
        // A batch comes from one queue, so all its deliveries are of one shard.
        let shard = k.shard_of(items[0].id);
        let mut keys = Vec::with_capacity(items.len() + 3);
        keys.push(k.queue_stream(shard));
        keys.push(k.scheduled(shard));
        keys.push(k.fair_parking(shard));
        keys.extend(items.iter().map(|i| k.delivery(i.id)));
        let mut args = Vec::with_capacity(11 + 3 * items.len());
        args.extend([
            now.to_string(),
            lease_until.to_string(),
            micros(due_tolerance).to_string(),
            // On a cluster the subscriptions are in the control slot: read after the script.
            if k.layout() == Layout::Standalone {
                k.subscription_prefix()
            } else {
                String::new()
            },
            QUEUE_GROUP.to_owned(),
        ]);
        args.extend(self.fair_args(shard));
        args.extend([
            (now / 1000).to_string(),
            self.inner.active_ttl_secs.to_string(),
            MESSAGE_FIELD.to_owned(),
        ]);
        for i in items {
            args.push(i.token.to_owned());
            args.push(i.entry_id.to_owned());
            args.push(QueueMessage::DeliveryV1 { delivery_id: i.id }.encode());
        }
        let reply: Value = scripts::BEGIN_ATTEMPTS.run(self.pool(), keys, args).await?;
        let mut reply = reply.into_array().into_iter();
        let results = reply.next().unwrap_or(Value::Null).into_array();
        // Each subscription once, however many deliveries of the batch it has.
        let mut subs: super::attempt_subscriptions::BatchSubscriptions = HashMap::new();
        let mut it = reply.next().unwrap_or(Value::Null).into_array().into_iter();
        while let (Some(id), Some(fields)) = (it.next(), it.next()) {
            let sub = self.batch_subscription(&flat(fields));
            subs.insert(id.as_string().unwrap_or_default(), sub);
        }
        if k.layout() != Layout::Standalone {
            subs = self.leased_subscriptions(&results).await?;
        }
        if results.len() != items.len() {
            return Err(Error::Script(format!(
                "begin_attempts: {} results for {} items",
                results.len(),
                items.len()
            )));
        }
        Ok(results.into_iter().map(|r| parse_begin(r, &subs)).collect())
    }

    /// Writes an attempt's outcome if `token` still holds the record's lease, and acknowledges (and deletes)
    /// queue entry `entry_id` in the same step: a batch of one ([`Store::finish_attempts`]).
    ///
    /// # Errors
    /// Redis failure (nothing was written; the entry stays pending and will be reclaimed).
    pub async fn finish_attempt(
        &self,
        record: &DeliveryRecord,
        token: &str,
        entry_id: &str,
        outcome: &AttemptOutcome,
        circuit: &CircuitUpdate<'_>,
        now: Micros,
    ) -> Result<FinishResult> {
        let item = FinishItem {
            id: record.id,
            subscription_id: record.subscription_id,
            token: token.to_owned(),
            entry_id: entry_id.to_owned(),
            outcome: outcome.clone(),
            host: circuit.host.to_owned(),
            signal: circuit.signal,
            log: None,
        };
        self.finish_attempts(std::slice::from_ref(&item), circuit.policy, now)
            .await?
            .pop()
            .ok_or_else(|| Error::Script("finish_attempts: no result".into()))
    }

    /// Writes the outcomes of a batch of attempts in one script, each only if its token still holds the
    /// record's lease, and acknowledges (and deletes) their queue entries in the same step. Returns what was
    /// done per item, in order. The items must be of one shard (always so on one node): on a cluster the
    /// worker commits each shard's outcomes separately.
    ///
    /// On a cluster the subscription counters and circuit breakers are in other slots: the script appends
    /// the counter effects to the shard's `sub_outcomes` stream (see [`Store::fold_outcomes`]), and the
    /// circuit signals of the attempts it wrote (not the fenced ones) go to each host's breaker right after.
    ///
    /// # Errors
    /// Redis failure (nothing was written; the entries stay pending and will be reclaimed), or items of
    /// several shards.
    pub async fn finish_attempts(
        &self,
        items: &[FinishItem],
        policy: &CircuitPolicy,
        now: Micros,
    ) -> Result<Vec<FinishResult>> {
        let Some(first) = items.first() else {
            return Ok(Vec::new());
        };
        let k = self.keys();
        let shard = k.shard_of(first.id);
        if items.iter().any(|i| k.shard_of(i.id) != shard) {
            return Err(Error::Script(
                "finish_attempts: items of several shards in one call".into(),
            ));
        }
        let clustered = k.layout() != Layout::Standalone;
        let mut keys = Vec::with_capacity(4 + 3 * items.len());
        keys.extend([
            k.queue_stream(shard),
            k.scheduled(shard),
            k.deliveries_activity(shard),
        ]);
        if clustered {
            keys.push(k.sub_outcomes(shard));
        }
        let mut args = Vec::with_capacity(23 + 11 * items.len());
        args.extend([
            now.to_string(),
            QUEUE_GROUP.to_owned(),
            self.inner.active_ttl_secs.to_string(),
            self.inner.terminal_ttl_secs.to_string(),
            k.deliveries_by_status_prefix(shard),
        ]);
        args.extend(circuit_args(policy, now));
        args.extend([
            ATTEMPT_LOG_LEN.to_string(),
            if clustered { "1" } else { "" }.to_owned(),
            // Endpoint health: on a cluster these apply in the fold instead (the subscription's slot).
            policy.health.disable_after_failures.to_string(),
            micros(policy.health.disable_after_failing_for).to_string(),
            k.subscriptions_by_status_prefix(),
            k.subscriptions_by_event_prefix(),
            k.match_generation(),
        ]);
        args.extend(self.lane_args(shard));
        for i in items {
            keys.push(k.delivery(i.id));
            if !clustered {
                keys.push(k.subscription(i.subscription_id));
                keys.push(k.circuit(&i.host));
            }
            // The schedule's message only for outcomes that schedule one.
            let (next_retry, due_ms, message) = match &i.outcome {
                AttemptOutcome::Retry { at, .. } | AttemptOutcome::Reschedule { at, .. } => (
                    at.to_string(),
                    (at / 1000).to_string(),
                    QueueMessage::DeliveryV1 { delivery_id: i.id }.encode(),
                ),
                _ => (String::new(), String::new(), String::new()),
            };
            let error = i.outcome.error().unwrap_or_default().to_owned();
            args.extend([
                i.token.clone(),
                i.outcome.name().to_owned(),
                i.entry_id.clone(),
                error,
                next_retry,
                due_ms,
                message,
                i.id.to_string(),
                i.signal.name().to_owned(),
                // One line of JSON (serde_json never writes a raw newline).
                i.log
                    .as_ref()
                    .and_then(|l| serde_json::to_string(l).ok())
                    .unwrap_or_default(),
                i.subscription_id.to_string(),
            ]);
        }
        let replies: Vec<String> = scripts::FINISH_ATTEMPTS
            .run(self.pool(), keys, args)
            .await?;
        if replies.len() != items.len() {
            return Err(Error::Script(format!(
                "finish_attempts: {} results for {} items",
                replies.len(),
                items.len()
            )));
        }
        let results = items
            .iter()
            .zip(replies)
            .map(|(i, r)| match r.as_str() {
                "fenced" => Ok(FinishResult::Fenced),
                "superseded" => Ok(FinishResult::Superseded),
                s if s == i.outcome.name() => Ok(FinishResult::Written),
                s if s.strip_suffix("+disabled") == Some(i.outcome.name()) => {
                    Ok(FinishResult::Disabled(match i.outcome {
                        AttemptOutcome::Gone { .. } => DisabledReason::Gone,
                        _ => DisabledReason::Failing,
                    }))
                }
                other => Err(Error::Script(format!("finish_attempts: {other}"))),
            })
            .collect::<Result<Vec<_>>>()?;
        if clustered {
            self.update_circuits(items, &results, policy, now).await;
        }
        Ok(results)
    }

    /// Moves the lease of delivery `id` to `lease_until` if `token` still holds it (and the record is still
    /// pending). An attempt that waited for its host's slot calls this before it sends, so the wait does
    /// not eat into the lease its request needs. `false`: the lease is no longer this attempt's; it must
    /// not send.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn renew_lease(
        &self,
        id: DeliveryId,
        token: &str,
        lease_until: Micros,
    ) -> Result<bool> {
        let renewed: i64 = scripts::RENEW_LEASE
            .run(
                self.pool(),
                vec![self.keys().delivery(id)],
                vec![token.to_owned(), lease_until.to_string()],
            )
            .await?;
        Ok(renewed == 1)
    }
}

fn parse_begin(
    r: Value,
    subs: &HashMap<String, Result<Option<Subscription>, String>>,
) -> Result<BeginAttempt> {
    let mut r = r.into_array().into_iter();
    let kind = r.next().and_then(|v| v.as_string());
    match kind.as_deref() {
        Some("go") => {
            let record = DeliveryRecord::from_hash(&flat(r.next().unwrap_or(Value::Null)))?;
            let subscription = match subs.get(&record.subscription_id.to_string()) {
                Some(Ok(s)) => s.clone(),
                Some(Err(e)) => return Err(Error::Decode(e.clone())),
                None => None,
            };
            Ok(BeginAttempt::Go(Box::new(Leased {
                record,
                subscription,
            })))
        }
        Some("missing") => Ok(BeginAttempt::Missing),
        Some("busy") => Ok(BeginAttempt::Busy),
        Some("done") => Ok(BeginAttempt::Done(
            r.next()
                .and_then(|v| v.as_string())
                .unwrap_or_default()
                .parse::<DeliveryStatus>()?,
        )),
        Some("not_due") => Ok(BeginAttempt::NotDue(
            r.next()
                .and_then(|v| v.as_string())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        )),
        other => Err(Error::Script(format!("begin_attempts: {other:?}"))),
    }
}
