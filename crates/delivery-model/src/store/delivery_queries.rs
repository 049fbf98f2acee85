//! Filtered delivery lists for the admin API (issue #3), served from the ZSET indexes, never a keyspace scan.
//!
//! Every delivery index (`webhook:deliveries`, `…:subscription:{id}`, `…:status:{s}`, `…:event:{t}`,
//! `…:addon:{id}`) is scored by created_at in milliseconds, so one filter is a range page of its index
//! (`ZRANGEBYSCORE … LIMIT`, `ZCOUNT` for the total) and several are an intersection into a short-lived key
//! first. Order is created_at ascending, then id (Redis orders equal scores by member).
//!
//! Expired records whose ids are still indexed (cleanup prunes them later) never appear: the script skips
//! them, removes them from the indexes it read, and leaves them out of `total`. Ghosts outside the page
//! still count until cleanup or a later page removes them, so `total` can exceed the true count briefly, by
//! no more than the number of records expired since the last pruning.

use std::collections::HashMap;

use fred::prelude::*;
use fred::types::Value;

use super::merged_pages::{ScoreRange, ShardList};
use super::{Page, Store, scripts};
use crate::delivery::{DeliveryRecord, DeliveryStatus};
use crate::error::Result;
use crate::ids::{AddonId, SubscriptionId};
use crate::keys::{Layout, Shard};

/// Lifetime of the temporary intersection key (deleted at once; this only covers a script failing midway).
const TMP_KEY_TTL_SECS: u64 = 5;
/// Lifetime of a shard's intersection kept for a merged list on a cluster: it must outlast the request's
/// count, search and reads (a few dozen round trips; the command timeout bounds each), and is deleted at
/// the end of the request.
const MERGE_TMP_KEY_TTL_SECS: u64 = 60;

/// Filters of [`Store::query_deliveries`]; all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub subscription: Option<SubscriptionId>,
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<String>,
    pub addon: Option<AddonId>,
    /// Created at or after this instant, Unix milliseconds (index precision).
    pub created_from_ms: Option<i64>,
    /// Created at or before this instant, Unix milliseconds.
    pub created_to_ms: Option<i64>,
}

impl Store {
    /// One page of the deliveries matching `filter`, oldest first, with the number of matches. On a
    /// cluster every shard's indexes (or, with several filters, each shard's intersection of them) are
    /// merged (`docs/cluster.md` §4.5, `store/merged_pages.rs`).
    ///
    /// # Errors
    /// Redis failure or a corrupt record.
    pub async fn query_deliveries(
        &self,
        filter: &DeliveryFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<DeliveryRecord>> {
        if self.keys().layout() != Layout::Standalone {
            return self.query_shards(filter, offset, limit).await;
        }
        let k = self.keys();
        let shard = Shard::ZERO;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut keys = vec![k.delivery_query_tmp(shard, &token)];
        keys.extend(self.filter_indexes(filter, shard));
        let bound =
            |b: Option<i64>, open: &str| b.map_or_else(|| open.to_owned(), |v| v.to_string());
        let reply: Vec<Value> = scripts::QUERY_DELIVERIES
            .run(
                self.pool(),
                keys,
                vec![
                    bound(filter.created_from_ms, "-inf"),
                    bound(filter.created_to_ms, "+inf"),
                    offset.to_string(),
                    limit.to_string(),
                    k.delivery_prefix(shard),
                    TMP_KEY_TTL_SECS.to_string(),
                ],
            )
            .await?;
        let mut it = reply.into_iter();
        let total = it.next().and_then(|v| v.as_i64()).unwrap_or(0).max(0);
        let mut items = Vec::new();
        for flat in it {
            let mut h = HashMap::new();
            let mut pairs = flat.into_array().into_iter();
            while let (Some(f), Some(v)) = (pairs.next(), pairs.next()) {
                if let (Some(f), Some(v)) = (f.as_string(), v.as_string()) {
                    h.insert(f, v);
                }
            }
            items.push(DeliveryRecord::from_hash(&h)?);
        }
        Ok(Page {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    /// The indexes of `shard` that `filter` intersects (the whole index without a filter).
    fn filter_indexes(&self, filter: &DeliveryFilter, shard: Shard) -> Vec<String> {
        let k = self.keys();
        let mut keys = Vec::new();
        if let Some(s) = filter.subscription {
            keys.push(k.deliveries_by_subscription(shard, s));
        }
        if let Some(s) = filter.status {
            keys.push(k.deliveries_by_status(shard, s));
        }
        if let Some(e) = &filter.event_type {
            keys.push(k.deliveries_by_event(shard, e));
        }
        if let Some(a) = filter.addon {
            keys.push(k.deliveries_by_addon(shard, a));
        }
        if keys.is_empty() {
            keys.push(k.deliveries_all(shard));
        }
        keys
    }

    /// [`query_deliveries`](Self::query_deliveries) on a cluster: one filter reads each shard's index; several
    /// are intersected per shard into a temporary key first, which the count, the search and the reads of
    /// the merge then share (a consistent view for the whole request), and which is deleted afterwards.
    async fn query_shards(
        &self,
        filter: &DeliveryFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<DeliveryRecord>> {
        let k = self.keys();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let lists: Vec<ShardList> = k
            .shards()
            .map(|shard| {
                let indexes = self.filter_indexes(filter, shard);
                let key = match indexes.as_slice() {
                    [one] => one.clone(),
                    _ => k.delivery_query_tmp(shard, &token),
                };
                ShardList { key, indexes }
            })
            .collect();
        let range = ScoreRange {
            from_ms: filter.created_from_ms,
            to_ms: filter.created_to_ms,
        };
        let temporary: Vec<&ShardList> = lists.iter().filter(|l| l.indexes.len() > 1).collect();
        let intersect = futures::future::try_join_all(temporary.iter().map(|l| {
            let mut keys = vec![l.key.clone()];
            keys.extend(l.indexes.iter().cloned());
            scripts::INTERSECT_DELIVERIES.run::<u64>(
                self.pool(),
                keys,
                vec![MERGE_TMP_KEY_TTL_SECS.to_string()],
            )
        }))
        .await;
        let page = match intersect {
            Ok(_) => self.merged_page(&lists, range, offset, limit).await,
            Err(e) => Err(e),
        };
        // Deleted whatever happened: the TTL only covers a gateway that stops in between.
        let deleted = futures::future::join_all(
            temporary
                .iter()
                .map(|l| self.pool().del::<i64, _>(l.key.as_str())),
        )
        .await;
        if let Some(Err(e)) = deleted.into_iter().find(std::result::Result::is_err) {
            tracing::debug!(error = %e, "temporary delivery intersection left to expire");
        }
        page
    }
}
