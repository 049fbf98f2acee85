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

use super::{Store, scripts};
use crate::error::Result;
use crate::keys::{Layout, Shard};

/// Most entries one fold script applies; a longer stream is folded over several calls.
pub const FOLD_CHUNK: usize = 500;

impl Store {
    /// Folds every shard's pending counter effects into the subscriptions (nothing on one node). Returns
    /// how many effects this call applied.
    ///
    /// # Errors
    /// Redis failure (what was folded before it stays folded; the rest waits for the next call).
    pub async fn fold_outcomes(&self) -> Result<usize> {
        if self.keys().layout() == Layout::Standalone {
            return Ok(0);
        }
        let mut applied = 0;
        for shard in self.keys().shards() {
            loop {
                let n = self.fold_shard(shard).await?;
                applied += n;
                if n < FOLD_CHUNK {
                    break;
                }
            }
        }
        Ok(applied)
    }

    /// One fold step on `shard`: up to [`FOLD_CHUNK`] entries after the watermark. Returns how many were
    /// applied (0 when there were none, or another folder moved the watermark first).
    async fn fold_shard(&self, shard: Shard) -> Result<usize> {
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
        let mut args = vec![field, watermark, last.clone(), k.subscription_prefix()];
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
        let applied: i64 = scripts::FOLD_OUTCOMES
            .run(self.pool(), vec![k.fold_watermarks()], args)
            .await?;
        if applied == 0 {
            return Ok(0);
        }
        // Everything up to `last` is folded: drop it (the entry `last` itself stays until the next trim;
        // reads start after the watermark, so it is never applied again).
        let _: u64 = self
            .pool()
            .xtrim(&stream, ("MINID", "=", last.as_str()))
            .await?;
        Ok(entries.len())
    }
}
