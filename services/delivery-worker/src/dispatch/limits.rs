//! Per-subscription limits (issue #18): a limited subscription's attempt asks the limiter shared by every
//! replica ([`Store::limit_acquire`](delivery_model::store::Store::limit_acquire)) right before its
//! request, once its host's slot and circuit allow it. Over a limit, the attempt is deferred to the time the
//! limiter names without consuming an attempt (the schedule brings it back; nothing polls). An attempt that
//! took an in-flight slot gives it back once its outcome is written, which wakes the oldest delivery waiting
//! for one. Unlimited subscriptions never get here: they pay nothing.

use std::time::Duration;

use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::store::{LimitDecision, LimitTiming};
use delivery_model::subscription::Subscription;
use delivery_model::time::now_micros;

use super::outcome::Outcome;
use super::{Dispatcher, micros};

/// The latest send time the rate limit reserves ahead: far below a pending record's lifetime
/// (`delivery.active_ttl_secs`), so a deferred delivery never expires on the schedule.
const HORIZON: Duration = Duration::from_secs(600);

/// An in-flight slot of a subscription's limiter, held until the attempt's outcome is written.
#[derive(Debug)]
pub(super) struct LimitSlot {
    sub: SubscriptionId,
    delivery: DeliveryId,
}

impl Dispatcher {
    /// Asks `sub`'s limiter for delivery `id`: `Ok(slot)` to send now (holding an in-flight slot if the
    /// subscription caps them), `Err(outcome)` to defer.
    ///
    /// # Errors
    /// Redis failure: nothing is sent; the entry stays pending.
    pub(super) async fn limit(
        &self,
        sub: &Subscription,
        id: DeliveryId,
    ) -> delivery_model::Result<Result<Option<LimitSlot>, Outcome>> {
        let now = now_micros();
        let timing = LimitTiming {
            horizon: HORIZON,
            wait: self.cfg.lease,
        };
        let lease_until = now + micros(self.cfg.lease);
        let (reason, at) = match self
            .store
            .limit_acquire(sub, id, now, lease_until, timing)
            .await?
        {
            LimitDecision::Go => {
                return Ok(Ok(sub.max_in_flight.map(|_| LimitSlot {
                    sub: sub.id,
                    delivery: id,
                })));
            }
            LimitDecision::Rate { at } => ("rate", at),
            LimitDecision::InFlight { at } => ("in_flight", at),
        };
        self.metrics.deferrals.with_label_values(&[reason]).inc();
        Ok(Err(Outcome::Limited { at }))
    }

    /// Gives back an in-flight slot (waking the oldest delivery waiting for one). A failure only delays:
    /// the slot frees itself when the attempt's lease expires.
    pub(super) async fn release(&self, slot: LimitSlot) {
        if let Err(e) = self
            .store
            .limit_release(slot.sub, slot.delivery, now_micros())
            .await
        {
            self.metrics.redis_errors.inc();
            tracing::warn!(subscription.id = %slot.sub, error = %e,
                "releasing an in-flight slot failed; it frees itself when the lease expires");
        }
    }
}
