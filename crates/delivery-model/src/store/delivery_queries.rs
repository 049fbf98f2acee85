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

use fred::types::Value;

use super::{Page, Store, scripts};
use crate::delivery::{DeliveryRecord, DeliveryStatus};
use crate::error::Result;
use crate::ids::{AddonId, SubscriptionId};

/// Lifetime of the temporary intersection key (deleted at once; this only covers a script failing midway).
const TMP_KEY_TTL_SECS: u64 = 5;

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
    /// One page of the deliveries matching `filter`, oldest first, with the number of matches.
    ///
    /// # Errors
    /// Redis failure or a corrupt record.
    pub async fn query_deliveries(
        &self,
        filter: &DeliveryFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<DeliveryRecord>> {
        let k = self.keys();
        // Not slot-safe yet: one shard's indexes only (§4.5 runs this per shard and merges).
        let shard = k.unsplit_shard();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut keys = vec![k.delivery_query_tmp(shard, &token)];
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
        if keys.len() == 1 {
            keys.push(k.deliveries_all(shard));
        }
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
}
