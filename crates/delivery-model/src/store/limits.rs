//! Per-subscription limits (issue #18): a delivery rate and a cap on deliveries in flight, enforced in
//! Redis so that one worker or ten give the same figures.
//!
//! The worker asks [`Store::limit_acquire`] before each request of a limited subscription (an unlimited one
//! costs nothing: it never asks). The answer is go, or a time to try again: a delivery over the rate gets
//! the next free send time, already counted, so a backlog drains at exactly the rate and nothing polls; one
//! without an in-flight slot waits until [`Store::limit_release`] (called once the outcome of an attempt
//! holding a slot is written) wakes it, or, should that wake be lost, until a lease has passed. A slot held
//! by a worker that died is free once its lease expires.
//!
//! The limiter's keys carry the subscription's own hash tag on a cluster (`Keyspace::limit_rate` and
//! siblings), so the limiter is its own slot-safe script and adds nothing to the outcome script.

use std::time::Duration;

use super::{Store, scripts};
use crate::error::{Error, Result};
use crate::ids::{DeliveryId, SubscriptionId};
use crate::queue::QueueMessage;
use crate::subscription::{RateLimit, Subscription};
use crate::time::Micros;

/// Waiters a release hands back at most: it wakes the first of them that is still waiting.
const WAKE_CANDIDATES: u32 = 3;

/// What the limiter says about one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitDecision {
    /// Send now (holding an in-flight slot if the subscription caps them).
    Go,
    /// Over the rate: send at `at` (µs), a time already counted for it.
    Rate { at: Micros },
    /// No in-flight slot: ask again at `at` (µs) unless a released slot wakes it first.
    InFlight { at: Micros },
}

/// How far the limiter plans ahead ([`Store::limit_acquire`]).
#[derive(Debug, Clone, Copy)]
pub struct LimitTiming {
    /// The latest send time the rate limit reserves; a delivery further out asks again then.
    pub horizon: Duration,
    /// When a delivery without an in-flight slot asks again if no release wakes it.
    pub wait: Duration,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Store {
    /// Asks the limiter of `sub` whether delivery `id` may be sent now; on go, it holds one of the
    /// subscription's in-flight slots (if capped) until [`Store::limit_release`] or `lease_until`.
    ///
    /// # Errors
    /// Redis failure, or a reply the script never gives.
    pub async fn limit_acquire(
        &self,
        sub: &Subscription,
        id: DeliveryId,
        now: Micros,
        lease_until: Micros,
        timing: LimitTiming,
    ) -> Result<LimitDecision> {
        let k = self.keys();
        let (interval, tolerance) = match sub.rate_limit {
            Some(RateLimit { per_second, burst }) => {
                let interval = 1_000_000 / i64::from(per_second.max(1));
                (interval, interval * i64::from(burst.max(1) - 1))
            }
            None => (0, 0),
        };
        let reply: Vec<String> = scripts::LIMIT_ACQUIRE
            .run(
                self.pool(),
                vec![
                    k.limit_rate(sub.id),
                    k.limit_in_flight(sub.id),
                    k.limit_waiting(sub.id),
                    k.limit_reserved(sub.id),
                ],
                vec![
                    now.to_string(),
                    id.to_string(),
                    interval.to_string(),
                    tolerance.to_string(),
                    sub.max_in_flight.unwrap_or(0).to_string(),
                    lease_until.to_string(),
                    micros(timing.horizon).to_string(),
                    micros(timing.wait).to_string(),
                ],
            )
            .await?;
        let at = || reply.get(1).and_then(|v| v.parse().ok()).unwrap_or(now);
        match reply.first().map(String::as_str) {
            Some("go") => Ok(LimitDecision::Go),
            Some("rate") => Ok(LimitDecision::Rate { at: at() }),
            Some("in_flight") => Ok(LimitDecision::InFlight { at: at() }),
            other => Err(Error::Script(format!("limit_acquire: {other:?}"))),
        }
    }

    /// Frees the in-flight slot delivery `id` held in subscription `sub`'s limiter, and wakes the oldest
    /// delivery waiting for one (due at once on its shard's schedule). Returns whether one was woken.
    ///
    /// # Errors
    /// Redis failure (the slot frees itself when the attempt's lease expires).
    pub async fn limit_release(
        &self,
        sub: SubscriptionId,
        id: DeliveryId,
        now: Micros,
    ) -> Result<bool> {
        let k = self.keys();
        let waiters: Vec<String> = scripts::LIMIT_RELEASE
            .run(
                self.pool(),
                vec![k.limit_in_flight(sub), k.limit_waiting(sub)],
                vec![id.to_string(), WAKE_CANDIDATES.to_string()],
            )
            .await?;
        for waiter in waiters {
            let Ok(waiter) = waiter.parse::<DeliveryId>() else {
                continue;
            };
            let shard = k.shard_of(waiter);
            let woken: i64 = scripts::LIMIT_WAKE
                .run(
                    self.pool(),
                    vec![k.delivery(waiter), k.scheduled(shard)],
                    vec![
                        now.to_string(),
                        QueueMessage::DeliveryV1 {
                            delivery_id: waiter,
                        }
                        .encode(),
                    ],
                )
                .await?;
            if woken == 1 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Sets subscription `sub`'s limits to those of `sub` (clearing the ones it has not), if it exists.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn set_subscription_limits(&self, sub: &Subscription, now: Micros) -> Result<bool> {
        let names = [
            crate::subscription::field::RATE_LIMIT_PER_SECOND,
            crate::subscription::field::RATE_LIMIT_BURST,
            crate::subscription::field::MAX_IN_FLIGHT,
        ];
        let mut args = vec![now.to_string()];
        for (name, value) in names.into_iter().zip(sub.limit_fields()) {
            args.push(name.to_owned());
            args.push(value.map(|(_, v)| v).unwrap_or_default());
        }
        let changed: i64 = scripts::SET_LIMITS
            .run(self.pool(), vec![self.keys().subscription(sub.id)], args)
            .await?;
        Ok(changed == 1)
    }
}
