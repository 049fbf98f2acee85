//! Receivers' status callbacks (`POST /webhook-deliveries/{id}/status`, issue #3).
//!
//! A callback moves a `pending` or `in_progress` delivery to `in_progress`, `delivered` or `failed` as one
//! compare-and-set script ([`Store::apply_callback`]). It keeps the record's status indexes and the
//! `webhook:deliveries:activity` ZSET (in-progress ids scored by last activity in µs, which cleanup reads to
//! fail stale deliveries) true, and refreshes the record's TTL. A record that is already terminal is never
//! touched, and the worker's later outcome write keeps a status set here (it reports "superseded").

use fred::types::Value;

use super::{Store, scripts};
use crate::delivery::DeliveryStatus;
use crate::error::{Error, Result};
use crate::ids::{DeliveryId, SubscriptionId};
use crate::keys::Layout;
use crate::time::Micros;

/// What a callback asks for. `status` is the internal status (a callback's `completed` is `Delivered`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackUpdate {
    /// `InProgress`, `Delivered` or `Failed` (a callback cannot move a record back to `Pending`).
    pub status: DeliveryStatus,
    /// 0–100; unchanged when `None` (and forced to 100 on `Delivered`).
    pub percent: Option<u8>,
    /// Unchanged when `None`.
    pub message: Option<String>,
}

/// Result of [`Store::apply_callback`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackResult {
    /// Written; the record's status and percent now.
    Updated { status: DeliveryStatus, percent: u8 },
    /// The record expired or never existed.
    Missing,
    /// Already `delivered` or `failed`: nothing changed.
    Terminal(DeliveryStatus),
}

impl Store {
    /// Applies a receiver's callback to delivery `id` of `subscription`, as a compare-and-set: refused for
    /// terminal records, allowed for `pending` ones (a callback may overtake the worker's own write). On
    /// `Delivered` it also resets the subscription's `timeout_count`, as TMI does.
    ///
    /// # Errors
    /// Redis failure (nothing was written), an update asking for `Pending`, or [`Error::NotReplicated`]
    /// (applied, not yet confirmed by replicas).
    pub async fn apply_callback(
        &self,
        id: DeliveryId,
        subscription: SubscriptionId,
        update: &CallbackUpdate,
        now: Micros,
    ) -> Result<CallbackResult> {
        if update.status == DeliveryStatus::Pending {
            return Err(Error::Decode(
                "a callback cannot move a delivery back to pending".into(),
            ));
        }
        let k = self.keys();
        let shard = k.shard_of(id);
        let client = self.writer();
        // On a cluster the subscription's counter follows through the shard's stream and the fold.
        let (counters, sub_arg) = if k.layout() == Layout::Standalone {
            (k.subscription(subscription), String::new())
        } else {
            (k.sub_outcomes(shard), subscription.to_string())
        };
        let reply: Vec<Value> = scripts::DELIVERY_CALLBACK
            .run_on(
                &client,
                vec![
                    k.delivery(id),
                    counters,
                    k.deliveries_activity(shard),
                    k.queue_stream(shard),
                ],
                [
                    update.status.as_str().to_owned(),
                    update.percent.map(|p| p.to_string()).unwrap_or_default(),
                    if update.message.is_some() { "1" } else { "0" }.to_owned(),
                    update.message.clone().unwrap_or_default(),
                    now.to_string(),
                    self.inner.active_ttl_secs.to_string(),
                    self.inner.terminal_ttl_secs.to_string(),
                    k.deliveries_by_status_prefix(shard),
                    id.to_string(),
                    sub_arg,
                ]
                .into_iter()
                .chain(self.lane_args(shard))
                .collect::<Vec<_>>(),
            )
            .await?;
        let mut it = reply.into_iter().map(|v| v.as_string().unwrap_or_default());
        match it.next().as_deref() {
            Some("updated") => {
                let status = it.next().unwrap_or_default().parse()?;
                let percent = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                self.confirm(&client, &[&k.delivery(id)]).await?;
                Ok(CallbackResult::Updated { status, percent })
            }
            Some("missing") => Ok(CallbackResult::Missing),
            Some("terminal") => Ok(CallbackResult::Terminal(
                it.next().unwrap_or_default().parse()?,
            )),
            other => Err(Error::Script(format!("delivery_callback: {other:?}"))),
        }
    }
}
