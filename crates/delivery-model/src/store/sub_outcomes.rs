//! The fold of subscription counter effects (cluster mode only).
//!
//! On one node the outcome script updates a subscription's `last_successful_use` and `publication_failures`
//! beside the outcome. On a cluster the subscription hashes are in the control slot and the outcomes in
//! their shard's, so the outcome script appends each effect to its shard's `sub_outcomes` stream, and the
//! workers fold each shard's stream into the subscriptions about once a second. The fold applies a range
//! of entries only if the shard's watermark still names where it read from (compare-and-set in one control
//! script), so concurrent folders never apply an entry twice or skip one; then it trims what is folded.
//! docs/cluster.md §4.3 gives the rules and the bound on how far the counters lag.

use fred::prelude::*;

use fred::types::Value;

use super::{HealthPolicy, Store, scripts};
use crate::error::{Error, Result};
use crate::ids::SubscriptionId;
use crate::keys::{Layout, Shard};
use crate::subscription::DisabledReason;

/// Most entries one fold script applies; a longer stream is folded over several calls.
pub const FOLD_CHUNK: usize = 500;

/// What [`Store::fold_outcomes`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folded {
    /// Counter effects applied.
    pub applied: usize,
    /// Subscriptions the fold disabled (endpoint health), for the caller to fail their pending deliveries.
    pub disabled: Vec<(SubscriptionId, DisabledReason)>,
}

impl Store {
    /// Folds every shard's pending counter effects into the subscriptions (nothing on one node), applying
    /// endpoint health (`health`) as the outcome script does on one node.
    ///
    /// # Errors
    /// Redis failure (what was folded before it stays folded; the rest waits for the next call).
    pub async fn fold_outcomes(&self, health: &HealthPolicy) -> Result<Folded> {
        let mut folded = Folded::default();
        if self.keys().layout() == Layout::Standalone {
            return Ok(folded);
        }
        for shard in self.keys().shards() {
            loop {
                let n = self.fold_shard(shard, health, &mut folded).await?;
                if n < FOLD_CHUNK {
                    break;
                }
            }
        }
        Ok(folded)
    }

    /// One fold step on `shard`: up to [`FOLD_CHUNK`] entries after the watermark, added to `folded`.
    /// Returns how many were applied (0 when there were none, or another folder moved the watermark first).
    async fn fold_shard(
        &self,
        shard: Shard,
        health: &HealthPolicy,
        folded: &mut Folded,
    ) -> Result<usize> {
        let k = self.keys();
        let field = shard.index().to_string();
        let watermark: Option<String> = self.pool().hget(k.fold_watermarks(), &field).await?;
        let watermark = watermark.unwrap_or_default();
        let start = if watermark.is_empty() {
            "-".to_owned()
        } else {
            format!("({watermark}")
        };
        let stream = k.sub_outcomes(shard);
        let entries: Vec<(String, Vec<(String, String)>)> = self
            .pool()
            .xrange(&stream, start, "+", Some(FOLD_CHUNK as u64))
            .await?;
        let Some((last, _)) = entries.last() else {
            return Ok(0);
        };
        let last = last.clone();
        let mut args = vec![
            field,
            watermark,
            last.clone(),
            k.subscription_prefix(),
            health.disable_after_failures.to_string(),
            u64::try_from(health.disable_after_failing_for.as_micros())
                .unwrap_or(u64::MAX)
                .to_string(),
            k.subscriptions_by_status_prefix(),
            k.subscriptions_by_event_prefix(),
            k.match_generation(),
        ];
        for (_, fields) in &entries {
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(f, _)| f == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            args.extend([get("sub"), get("kind"), get("t")]);
        }
        let reply: Vec<Value> = scripts::FOLD_OUTCOMES
            .run(self.pool(), vec![k.fold_watermarks()], args)
            .await?;
        let mut reply = reply.into_iter();
        if reply.next().and_then(|v| v.as_i64()) != Some(1) {
            return Ok(0);
        }
        while let (Some(sub), Some(reason)) = (reply.next(), reply.next()) {
            let (sub, reason) = (sub.as_string(), reason.as_string());
            let parsed = sub
                .as_deref()
                .and_then(|s| s.parse::<SubscriptionId>().ok())
                .zip(
                    reason
                        .as_deref()
                        .and_then(|r| r.parse::<DisabledReason>().ok()),
                );
            let Some(disabled) = parsed else {
                return Err(Error::Script(format!("fold_outcomes: {sub:?} {reason:?}")));
            };
            folded.disabled.push(disabled);
        }
        folded.applied += entries.len();
        // Everything up to `last` is folded: drop it (the entry `last` itself stays until the next trim;
        // reads start after the watermark, so it is never applied again).
        let _: u64 = self
            .pool()
            .xtrim(&stream, ("MINID", "=", last.as_str()))
            .await?;
        Ok(entries.len())
    }
}
