//! Admin delivery lists over every queue shard of a Redis Cluster (`docs/cluster.md` §4.5).
//!
//! Each shard holds its own delivery indexes, all scored by created ms, and a list is oldest first by
//! `(score, id)` across the shards. The total is the sum of the shards' counts. The page at `offset` starts
//! at the largest score `s` with at most `offset` entries below it, found by binary search on the score
//! (each round one `ZCOUNT` per shard, concurrently); each shard is then read from `s` on, only as far as
//! the page can reach, and the reads are merged. The cost grows with the shard count and the log of the
//! score range, not with the offset. A new delivery's score is its creation time, so it sorts after every
//! page already served: pages neither shift nor repeat while deliveries are created, as on one node.
//!
//! Scores are whole milliseconds (every index is written with the record's created ms), which the search
//! relies on: "below `s`" is "at most `s − 1`".

use fred::prelude::*;

use super::{Page, Store};
use crate::delivery::DeliveryRecord;
use crate::error::Result;
use crate::ids::DeliveryId;

/// One shard's part of a merged list.
pub(super) struct ShardList {
    /// The ZSET read: an index, or the shard's intersection of several.
    pub key: String,
    /// The indexes its entries come from: an expired record's id is removed from these when met.
    pub indexes: Vec<String>,
}

/// An inclusive range of created ms; `None` is open.
#[derive(Debug, Clone, Copy)]
pub(super) struct ScoreRange {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

impl ScoreRange {
    fn min(self) -> f64 {
        self.from_ms.map_or(f64::NEG_INFINITY, ms)
    }

    fn max(self) -> f64 {
        self.to_ms.map_or(f64::INFINITY, ms)
    }
}

/// A created-ms score as Redis takes it (exact: ms values are far below 2^53).
fn ms(v: i64) -> f64 {
    v as f64
}

/// A score Redis returned, as the whole ms it was written as.
fn whole_ms(score: f64) -> i64 {
    score as i64
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// One page of the entries of `lists` in `range`, oldest first by `(score, id)`, with the number of
    /// entries. Ids whose record has expired are left out of the page and the total and removed from their
    /// indexes (as the single-node query script does), so a page can be shorter than `limit`.
    pub(super) async fn merged_page(
        &self,
        lists: &[ShardList],
        range: ScoreRange,
        offset: u64,
        limit: u64,
    ) -> Result<Page<DeliveryRecord>> {
        let (min, max) = (range.min(), range.max());
        let counts = futures::future::try_join_all(
            lists
                .iter()
                .map(|l| self.pool().zcount::<u64, _>(&l.key, min, max)),
        )
        .await?;
        let mut total: u64 = counts.iter().sum();
        if limit == 0 || offset >= total {
            return Ok(Page {
                items: Vec::new(),
                total,
            });
        }
        let lists: Vec<&ShardList> = lists
            .iter()
            .zip(&counts)
            .filter(|&(_, &n)| n > 0)
            .map(|(l, _)| l)
            .collect();
        let (start, below) = if offset == 0 {
            (min, 0)
        } else {
            let (s, below) = self.page_start(&lists, range, offset).await?;
            (ms(s), below)
        };

        // Every entry of the page is among the first `skip + limit` from `start` of its shard.
        let skip = offset - below;
        let want = signed(skip.saturating_add(limit));
        let reads = futures::future::try_join_all(lists.iter().map(|l| {
            self.pool().zrangebyscore::<Vec<(String, f64)>, _, _, _>(
                &l.key,
                start,
                max,
                true,
                Some((0, want)),
            )
        }))
        .await?;
        let mut merged: Vec<(i64, String, usize)> = reads
            .into_iter()
            .enumerate()
            .flat_map(|(i, entries)| {
                entries
                    .into_iter()
                    .map(move |(id, score)| (whole_ms(score), id, i))
            })
            .collect();
        // Redis orders equal scores by member bytes; `String`'s order is the same.
        merged.sort_unstable();
        let window: Vec<(String, usize)> = merged
            .into_iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|(_, id, i)| (id, i))
            .collect();

        let records = futures::future::try_join_all(window.iter().map(|(id, _)| async move {
            match id.parse::<DeliveryId>() {
                Ok(id) => self.get_delivery(id).await,
                Err(_) => Ok(None),
            }
        }))
        .await?;
        let mut items = Vec::with_capacity(records.len());
        let mut expired = Vec::new();
        for (record, (id, i)) in records.into_iter().zip(&window) {
            match record {
                Some(r) => items.push(r),
                None => expired.push((id, lists[*i])),
            }
        }
        total = total.saturating_sub(expired.len() as u64);
        futures::future::try_join_all(expired.iter().flat_map(|(id, list)| {
            list.indexes
                .iter()
                .map(move |index| self.pool().zrem::<i64, _, _>(index, id.as_str()))
        }))
        .await?;
        Ok(Page { items, total })
    }

    /// The largest score `s` with at most `offset` entries of `lists` below it, and how many are below it.
    /// The entry at `offset` has score `s`. Needs `0 < offset <` the number of entries in `range`.
    async fn page_start(
        &self,
        lists: &[&ShardList],
        range: ScoreRange,
        offset: u64,
    ) -> Result<(i64, u64)> {
        let (min, max) = (range.min(), range.max());
        let ends = futures::future::try_join_all(lists.iter().map(|l| async move {
            let first: Vec<(String, f64)> = self
                .pool()
                .zrangebyscore(&l.key, min, max, true, Some((0, 1)))
                .await?;
            let last: Vec<(String, f64)> = self
                .pool()
                .zrevrangebyscore(&l.key, max, min, true, Some((0, 1)))
                .await?;
            Ok::<_, crate::error::Error>((first.first().map(|e| e.1), last.first().map(|e| e.1)))
        }))
        .await?;
        let lo = ends.iter().filter_map(|e| e.0).map(whole_ms).min();
        let hi = ends.iter().filter_map(|e| e.1).map(whole_ms).max();
        let (Some(mut lo), Some(mut hi)) = (lo, hi) else {
            // Emptied meanwhile: the read from the start of the range finds what is left.
            return Ok((range.from_ms.unwrap_or(i64::MIN), 0));
        };
        // Nothing in range is below the first score; the entry at `offset` (< the count) is at most the
        // last one. Invariant: below(lo) ≤ offset, and the answer is in [lo, hi].
        let mut below_lo = 0;
        while lo < hi {
            let mid = lo + (hi - lo + 1) / 2;
            let below = self.count_below(lists, min, mid).await?;
            if below <= offset {
                (lo, below_lo) = (mid, below);
            } else {
                hi = mid - 1;
            }
        }
        Ok((lo, below_lo))
    }

    /// How many entries of `lists` from `min` have a score below `s` (whole ms: at most `s − 1`).
    async fn count_below(&self, lists: &[&ShardList], min: f64, s: i64) -> Result<u64> {
        let below = ms(s - 1);
        Ok(futures::future::try_join_all(
            lists
                .iter()
                .map(|l| self.pool().zcount::<u64, _>(&l.key, min, below)),
        )
        .await?
        .into_iter()
        .sum())
    }
}
