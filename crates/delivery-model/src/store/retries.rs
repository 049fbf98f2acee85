//! An administrator's retry of a failed delivery (`POST /admin/webhooks/deliveries/{id}/retry`).
//!
//! TMI has no way to send a failed delivery again; operators of webhook systems ask for one first when a
//! receiver was down for longer than the retry schedule. The retry is one compare-and-set script
//! ([`Store::retry_delivery`]): a `failed` record of an active subscription goes back to `pending` with a fresh
//! retry budget and is queued at once, under the same delivery id, so a receiver that already saw an earlier
//! attempt can recognise it. Everything else is refused and left untouched.
//!
//! After an outage, [`Store::retry_failed`] does the same for a subscription's failed deliveries in a creation
//! time range, a bounded number per call, oldest first.

use fred::prelude::*;
use fred::types::Value;

use super::attempts::flat;
use super::delivery_queries::DeliveryFilter;
use super::{Store, scripts};
use crate::delivery::{DeliveryRecord, DeliveryStatus};
use crate::error::{Error, Result};
use crate::ids::{DeliveryId, SubscriptionId};
use crate::keys::Layout;
use crate::queue::{MESSAGE_FIELD, QueueMessage};
use crate::subscription::SubscriptionStatus;
use crate::time::Micros;

/// Result of [`Store::retry_delivery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryResult {
    /// Back to `pending` (attempts 0) and queued; the record as it is now.
    Queued(Box<DeliveryRecord>),
    /// The record expired or never existed.
    Missing,
    /// Not `failed`: nothing changed.
    NotFailed(DeliveryStatus),
    /// An add-on invocation: nothing changed (re-invoke the add-on instead).
    AddonInvocation,
    /// The subscription is gone (`None`) or not active: nothing changed.
    SubscriptionNotActive(Option<SubscriptionStatus>),
}

/// Result of [`Store::retry_failed`] (serialised as the API's answer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetrySummary {
    /// Deliveries back to `pending` and queued.
    pub queued: u64,
    /// Failed deliveries in the range that were not retried (add-on invocations, or changed meanwhile).
    pub skipped: u64,
    /// Whether failed deliveries beyond `max` remain in the range: call again.
    pub more: bool,
}

/// Records read per page by [`Store::retry_failed`].
const RETRY_PAGE: u64 = 100;

impl Store {
    /// Retries up to `max` failed deliveries of `subscription` created in `[from_ms, to_ms]` (Unix ms, either
    /// open), oldest first, each as [`Store::retry_delivery`] does (so each is checked and changed atomically,
    /// and none is queued twice). The caller checks that the subscription is active first.
    ///
    /// # Errors
    /// Redis failure: what was queued before it stays queued.
    pub async fn retry_failed(
        &self,
        subscription: SubscriptionId,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        max: u64,
        now: Micros,
    ) -> Result<RetrySummary> {
        self.retry_failed_where(subscription, (from_ms, to_ms), max, now, |_| true)
            .await
    }

    /// [`Store::retry_failed`] for the failed deliveries `select` picks; the others are passed over (and
    /// not counted).
    pub(super) async fn retry_failed_where(
        &self,
        subscription: SubscriptionId,
        (from_ms, to_ms): (Option<i64>, Option<i64>),
        max: u64,
        now: Micros,
        select: impl Fn(&DeliveryRecord) -> bool,
    ) -> Result<RetrySummary> {
        let filter = DeliveryFilter {
            subscription: Some(subscription),
            status: Some(DeliveryStatus::Failed),
            created_from_ms: from_ms,
            created_to_ms: to_ms,
            ..DeliveryFilter::default()
        };
        let mut summary = RetrySummary::default();
        // Failed deliveries left where they are (skipped or not selected): the offset of the next page.
        let mut passed = 0;
        loop {
            let done = summary.queued + summary.skipped;
            // Retried deliveries leave the failed index; the others stay at its head.
            if done >= max {
                let rest = self.query_deliveries(&filter, passed, RETRY_PAGE).await?;
                summary.more = rest.items.iter().any(&select);
                return Ok(summary);
            }
            let page = self
                .query_deliveries(&filter, passed, (max - done).min(RETRY_PAGE))
                .await?;
            if page.items.is_empty() {
                return Ok(summary);
            }
            let (chosen, other): (Vec<_>, Vec<_>) = page.items.iter().partition(|r| select(r));
            passed += other.len() as u64;
            // Each retry is its own atomic script, so a page's run concurrently.
            let results = futures::future::try_join_all(
                chosen.iter().map(|r| self.retry_delivery(r.id, now)),
            )
            .await?;
            for r in results {
                match r {
                    RetryResult::Queued(_) => summary.queued += 1,
                    _ => {
                        summary.skipped += 1;
                        passed += 1;
                    }
                }
            }
        }
    }

    /// The status of the subscription delivery `id` belongs to (`""` when the record or the subscription is
    /// gone): two reads, the record's shard then the control slot (cluster mode).
    async fn subscription_status_of(&self, id: DeliveryId) -> Result<String> {
        let k = self.keys();
        let sub: Option<String> = self
            .pool()
            .hget(k.delivery(id), crate::delivery::field::SUBSCRIPTION_ID)
            .await?;
        let Some(sub) = sub.and_then(|s| s.parse::<SubscriptionId>().ok()) else {
            return Ok(String::new());
        };
        let status: Option<String> = self
            .pool()
            .hget(k.subscription(sub), crate::subscription::field::STATUS)
            .await?;
        Ok(status.unwrap_or_default())
    }

    /// Moves delivery `id` back to `pending` and queues it, if it is a `failed` resource-change delivery whose
    /// subscription is active, and returns it as it is then. The checks and the change are one atomic step.
    ///
    /// # Errors
    /// Redis failure (nothing was written), a corrupt record, a reply the script never gives, or
    /// [`Error::NotReplicated`] (queued, not yet confirmed by replicas; retrying it again answers 409).
    pub async fn retry_delivery(&self, id: DeliveryId, now: Micros) -> Result<RetryResult> {
        self.retry_delivery_with(id, now, false).await
    }

    /// [`Store::retry_delivery`], which with `include_addons` also retries a failed add-on invocation (a
    /// redrive job that asked for them: the worker mints a fresh delegation token for every attempt).
    ///
    /// # Errors
    /// As [`Store::retry_delivery`].
    pub async fn retry_delivery_with(
        &self,
        id: DeliveryId,
        now: Micros,
        include_addons: bool,
    ) -> Result<RetryResult> {
        let k = self.keys();
        let shard = k.shard_of(id);
        let msg = QueueMessage::DeliveryV1 { delivery_id: id }.encode();
        let client = self.writer();
        // On one node the script reads the subscription's status; on a cluster it is read here first.
        let (sub_prefix, sub_status) = if k.layout() == Layout::Standalone {
            (k.subscription_prefix(), String::new())
        } else {
            (String::new(), self.subscription_status_of(id).await?)
        };
        let reply: Vec<Value> = scripts::RETRY_DELIVERY
            .run_on(
                &client,
                vec![k.delivery(id), k.queue_stream(shard)],
                [
                    now.to_string(),
                    self.inner.active_ttl_secs.to_string(),
                    k.deliveries_by_status_prefix(shard),
                    id.to_string(),
                    sub_prefix,
                    MESSAGE_FIELD.to_owned(),
                    msg,
                    sub_status,
                    if include_addons { "1" } else { "0" }.to_owned(),
                ]
                .into_iter()
                .chain(self.lane_args(shard))
                .collect::<Vec<_>>(),
            )
            .await?;
        let mut reply = reply.into_iter();
        let tag = reply.next().and_then(|v| v.as_string());
        let mut text = || reply.next().and_then(|v| v.as_string()).unwrap_or_default();
        match tag.as_deref() {
            Some("queued") => {
                let record = reply.next().map(flat).unwrap_or_default();
                let record = DeliveryRecord::from_hash(&record)?;
                self.confirm(&client, &[&k.delivery(id)]).await?;
                Ok(RetryResult::Queued(Box::new(record)))
            }
            Some("missing") => Ok(RetryResult::Missing),
            Some("addon") => Ok(RetryResult::AddonInvocation),
            Some("status") => Ok(RetryResult::NotFailed(text().parse()?)),
            Some("subscription") => {
                let status = text();
                Ok(RetryResult::SubscriptionNotActive(if status.is_empty() {
                    None
                } else {
                    Some(status.parse()?)
                }))
            }
            other => Err(Error::Script(format!("retry_delivery: {other:?}"))),
        }
    }
}
