//! Endpoint health (issue #18): what follows when the worker disables a subscription, and an
//! administrator's way back.
//!
//! The disable itself is part of the fenced outcome write ([`Store::finish_attempts`]: a `410 Gone`, or
//! `publication_failures` past [`HealthPolicy`](super::attempts::HealthPolicy)), so it happens exactly when
//! the outcome that caused it is written. Then:
//! - [`Store::fail_disabled_pending`] fails the subscription's other pending deliveries without an attempt
//!   (per shard, page by page). It is a prompt clean-up, not the guarantee: a delivery it misses (in flight
//!   at the time, or the worker died first) is failed without an attempt by the worker when it next comes
//!   up, since its subscription is no longer active.
//! - [`Store::enable_subscription`] makes it `active` again, and [`Store::requeue_disabled`] queues again
//!   the deliveries that failed at or after the disable (the one that caused it included).

use super::retries::RetrySummary;
use super::{Store, scripts};
use crate::error::{Error, Result};
use crate::ids::SubscriptionId;
use crate::subscription::{DisabledReason, SubscriptionStatus};
use crate::time::Micros;

/// Index entries one [`Store::fail_disabled_pending`] script reads.
const FAIL_PAGE: u64 = 500;

/// Result of [`Store::enable_subscription`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnableResult {
    /// Active again; it had been disabled at this time (µs).
    Enabled { disabled_at: Micros },
    /// No such subscription.
    Missing,
    /// Not disabled by the worker (its status as it is): nothing changed.
    NotDisabled(SubscriptionStatus),
}

impl Store {
    /// Fails every pending delivery of the disabled `subscription` that no attempt holds, recording why
    /// (`reason`), and returns how many it failed.
    ///
    /// # Errors
    /// Redis failure: what was failed before it stays failed.
    pub async fn fail_disabled_pending(
        &self,
        subscription: SubscriptionId,
        reason: DisabledReason,
        now: Micros,
    ) -> Result<u64> {
        let k = self.keys();
        let mut failed = 0;
        for shard in k.shards() {
            let mut offset = 0;
            loop {
                let reply: Vec<u64> = scripts::FAIL_DISABLED_PENDING
                    .run(
                        self.pool(),
                        vec![k.deliveries_by_subscription(shard, subscription)],
                        vec![
                            now.to_string(),
                            k.delivery_prefix(shard),
                            k.deliveries_by_status_prefix(shard),
                            self.inner.terminal_ttl_secs.to_string(),
                            reason.delivery_error().to_owned(),
                            offset.to_string(),
                            FAIL_PAGE.to_string(),
                            k.lane_prefix(shard),
                            k.lanes(shard),
                            k.lanes_held(shard),
                        ],
                    )
                    .await?;
                let (read, n) = (reply.first().copied(), reply.get(1).copied());
                let (Some(read), Some(n)) = (read, n) else {
                    return Err(Error::Script(format!("fail_disabled_pending: {reply:?}")));
                };
                failed += n;
                // The index keeps every status, so offsets stay valid while records fail.
                if read < FAIL_PAGE {
                    break;
                }
                offset += read;
            }
        }
        Ok(failed)
    }

    /// Makes a subscription the worker disabled `active` again (its failure count reset); anything else is
    /// left unchanged.
    ///
    /// # Errors
    /// Redis failure, or a reply the script never gives.
    pub async fn enable_subscription(
        &self,
        id: SubscriptionId,
        now: Micros,
    ) -> Result<EnableResult> {
        let k = self.keys();
        let reply: Vec<String> = scripts::ENABLE_SUBSCRIPTION
            .run(
                self.pool(),
                vec![k.subscription(id), k.match_generation()],
                vec![
                    now.to_string(),
                    k.subscriptions_by_status_prefix(),
                    k.subscriptions_by_event_prefix(),
                    id.to_string(),
                ],
            )
            .await?;
        match reply.first().map(String::as_str) {
            Some("enabled") => Ok(EnableResult::Enabled {
                disabled_at: reply.get(1).and_then(|v| v.parse().ok()).unwrap_or(0),
            }),
            Some("missing") => Ok(EnableResult::Missing),
            Some("not_disabled") => Ok(EnableResult::NotDisabled(
                reply
                    .get(1)
                    .map(String::as_str)
                    .unwrap_or_default()
                    .parse()?,
            )),
            other => Err(Error::Script(format!("enable_subscription: {other:?}"))),
        }
    }

    /// Queues again up to `max` failed deliveries of `subscription` that failed at or after `disabled_at`
    /// (those its disable failed, and the one that caused it), each as [`Store::retry_delivery`] does. The
    /// caller enables the subscription first.
    ///
    /// # Errors
    /// Redis failure: what was queued before it stays queued.
    pub async fn requeue_disabled(
        &self,
        subscription: SubscriptionId,
        disabled_at: Micros,
        max: u64,
        now: Micros,
    ) -> Result<RetrySummary> {
        self.retry_failed_where(subscription, (None, None), max, now, |r| {
            r.last_activity_at >= disabled_at
        })
        .await
    }
}
