//! Delivery statistics in Redis (see [`crate::stats`] for what is counted): writing a batch of outcomes,
//! reading the last minutes and a subscription's last hours, and a host's circuit breaker as the console
//! shows it.
//!
//! Every hash is touched by single-key commands only (the `stats_add` script increments one hash and
//! refreshes its TTL), so the keys need no hash tag and the same code serves one node and a cluster.
//! Reads fetch one hash per minute or hour concurrently: at most a few dozen small `HGETALL`s per request.

use std::collections::HashMap;

use fred::prelude::*;

use super::{AttemptOutcome, FinishItem, FinishResult, Store, scripts};
use crate::error::Result;
use crate::ids::SubscriptionId;
use crate::stats::{
    Counted, HOUR_TTL_SECS, HourStats, MINUTE_TTL_SECS, MinuteStats, OutcomeSample, StatsKey,
    aggregate,
};

/// A destination host's circuit breaker, as stored by the delivery-worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitView {
    /// Consecutive failures counted since the last success.
    pub failures: u64,
    /// Unix ms until which attempts are held back; `None` when the circuit is closed.
    pub open_until_ms: Option<i64>,
}

impl CircuitView {
    /// `closed`, `open` (attempts held back until `open_until_ms`) or `half_open` (the window has passed:
    /// the next attempt probes the host).
    pub fn state(&self, now_ms: i64) -> &'static str {
        match self.open_until_ms {
            None => "closed",
            Some(t) if t > now_ms => "open",
            Some(_) => "half_open",
        }
    }
}

impl FinishItem {
    /// What the counters learn from this attempt once [`Store::finish_attempts`] answered `result`: nothing
    /// when it was fenced or only rescheduled (no attempt was made).
    pub fn stats_sample(&self, result: FinishResult) -> Option<OutcomeSample> {
        let counted = match (result, &self.outcome) {
            (FinishResult::Fenced, _) | (_, AttemptOutcome::Reschedule { .. }) => return None,
            (FinishResult::Superseded, _) | (_, AttemptOutcome::InProgress) => Counted::AttemptOnly,
            (_, AttemptOutcome::Delivered) => Counted::Delivered,
            (_, AttemptOutcome::Retry { .. }) => Counted::Retried,
            (
                _,
                AttemptOutcome::Failed { .. }
                | AttemptOutcome::Gone { .. }
                | AttemptOutcome::Abandoned { .. },
            ) => Counted::Failed,
        };
        Some(OutcomeSample {
            subscription: self.subscription_id,
            counted,
            duration_ms: self.log.as_ref().map(|l| l.duration_ms),
        })
    }
}

impl Store {
    /// Counts `samples`, all observed at `now_secs` (Unix seconds): one `stats_add` call per hash touched,
    /// concurrently.
    ///
    /// # Errors
    /// Redis failure (some hashes may have been incremented: the counters are best effort).
    pub async fn record_stats(&self, samples: &[OutcomeSample], now_secs: i64) -> Result<()> {
        let k = self.keys();
        let calls = aggregate(samples, now_secs)
            .into_iter()
            .map(|(key, fields)| {
                let (key, ttl) = match key {
                    StatsKey::Minute(m) => (k.stats_minute(m), MINUTE_TTL_SECS),
                    StatsKey::SubscriptionHour(id, h) => {
                        (k.stats_subscription_hour(id, h), HOUR_TTL_SECS)
                    }
                };
                let mut args = Vec::with_capacity(1 + 2 * fields.len());
                args.push(ttl.to_string());
                for (field, delta) in fields {
                    args.push(field);
                    args.push(delta.to_string());
                }
                scripts::STATS_ADD.run::<i64>(self.pool(), vec![key], args)
            });
        futures::future::try_join_all(calls).await?;
        Ok(())
    }

    /// The `count` minutes ending with the one holding `now_secs`, oldest first, each with its start (Unix
    /// seconds).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn minute_stats(&self, now_secs: i64, count: u32) -> Result<Vec<(i64, MinuteStats)>> {
        let last = now_secs.div_euclid(60);
        let minutes: Vec<i64> = (0..i64::from(count))
            .rev()
            .map(|back| last - back)
            .collect();
        let reads = minutes.iter().map(|m| {
            self.pool()
                .hgetall::<HashMap<String, String>, _>(self.keys().stats_minute(*m))
        });
        let hashes = futures::future::try_join_all(reads).await?;
        Ok(minutes
            .into_iter()
            .zip(hashes)
            .map(|(m, h)| (m * 60, MinuteStats::from_hash(&h)))
            .collect())
    }

    /// Subscription `id`'s outcomes over the `count` hours ending with the one holding `now_secs`, oldest
    /// first, each with its start (Unix seconds).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn subscription_hour_stats(
        &self,
        id: SubscriptionId,
        now_secs: i64,
        count: u32,
    ) -> Result<Vec<(i64, HourStats)>> {
        let last = now_secs.div_euclid(3600);
        let hours: Vec<i64> = (0..i64::from(count))
            .rev()
            .map(|back| last - back)
            .collect();
        let reads = hours.iter().map(|h| {
            self.pool()
                .hgetall::<HashMap<String, String>, _>(self.keys().stats_subscription_hour(id, *h))
        });
        let hashes = futures::future::try_join_all(reads).await?;
        Ok(hours
            .into_iter()
            .zip(hashes)
            .map(|(h, s)| (h * 3600, HourStats::from_hash(&s)))
            .collect())
    }

    /// The circuit breaker of `host` (lower-cased by the key builder), closed when none is stored.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn circuit(&self, host: &str) -> Result<CircuitView> {
        let h: HashMap<String, String> = self.pool().hgetall(self.keys().circuit(host)).await?;
        let num = |f: &str| h.get(f).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        Ok(CircuitView {
            failures: u64::try_from(num("failures")).unwrap_or(0),
            open_until_ms: Some(num("open_until")).filter(|t| *t > 0),
        })
    }
}
