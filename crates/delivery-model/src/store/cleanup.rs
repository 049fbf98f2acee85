//! The cleanup service's part of the Redis contract: failing stale `in_progress` deliveries, index hygiene,
//! trimming the streams, the subscription walks of the lifecycle (whose deletions go through
//! [`Store::delete_subscription`], which takes the subscription's add-ons with it). The lease that keeps two
//! replicas from running a cycle at once is in [`leases`](super::leases).
//!
//! Every method does a bounded amount of work (a chunk) and reports whether more remains, so the service can
//! pace itself. Each change is made by a script that re-checks its premise inside Redis, so a chunk run twice
//! (two replicas, a retried cycle) changes nothing twice.
//!
//! # Index hygiene
//!
//! Delivery records expire; their index entries do not. Every delivery index is a ZSET scored by created-at
//! (the activity index by last activity), walked by [`Store::prune_delivery_index`] from the lowest score in
//! chunks, removing members whose record is gone. The fixed indexes (all deliveries, the four status indexes,
//! the activity index) are known by name. The per-subscription, per-event-type and per-addon indexes are
//! created by the record-creating scripts, which list them nowhere, and their names cannot be derived from
//! live data alone (a deleted subscription's index, an event type only a wildcard subscription received), so
//! cleanup discovers them with a bounded keyspace `SCAN` ([`Store::discover_delivery_indexes`]) into a
//! registry set ([`Keyspace::delivery_index_registry`](crate::keys::Keyspace::delivery_index_registry)).

use std::fmt;
use std::str::FromStr;

use fred::prelude::*;
use fred::types::Value;

use super::{Store, scripts};
use crate::delivery::DeliveryStatus;
use crate::error::{Error, Result};
use crate::ids::{DeliveryId, SubscriptionId};
use crate::keys::{Layout, Shard};
use crate::subscription::SubscriptionStatus;
use crate::time::Micros;

/// What one chunk of the stale sweep did ([`Store::fail_stale_deliveries`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleSweep {
    /// Index members looked at (at most the limit per shard: fewer than the limit means the sweep has
    /// caught up).
    pub examined: u64,
    /// Still in progress with newer activity than the index knew: re-scored, kept.
    pub refreshed: u64,
    /// No longer in progress, or expired: removed from the activity index.
    pub dropped: u64,
    /// Deliveries moved to `failed`.
    pub failed: Vec<DeliveryId>,
}

/// A position in a delivery index walk: every member below `score` has been walked, and so have the first
/// `skip` surviving members at `score`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPosition {
    /// A ZSET score as Redis prints it, or `-inf` at the start.
    pub score: String,
    pub skip: u64,
}

impl Default for IndexPosition {
    fn default() -> Self {
        Self {
            score: "-inf".to_owned(),
            skip: 0,
        }
    }
}

/// What one chunk of an index walk did ([`Store::prune_delivery_index`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneChunk {
    pub examined: u64,
    /// Members whose record had expired, removed.
    pub removed: u64,
    /// Where the next chunk starts; `None` when this chunk reached the end of the index.
    pub next: Option<IndexPosition>,
}

/// A stream entry id (`<ms>-<seq>`), ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// `0-0`: below every entry.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for StreamId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Decode(format!("not a stream id: {s:?}"));
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        Ok(Self {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// One consumer group's progress on a stream (`XINFO GROUPS` and the `XPENDING` summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    pub name: String,
    /// The last entry delivered to any consumer of the group; later entries are unread.
    pub last_delivered: StreamId,
    /// The oldest entry delivered and not yet acknowledged, if any.
    pub oldest_pending: Option<StreamId>,
}

/// The lowest entry id some group still needs: entries strictly below it have been delivered to, and
/// acknowledged by, every group. `None` when nothing may be trimmed: the stream has no groups (nobody has
/// said what they consumed) or the floor is `0-0`.
pub fn trim_floor(groups: &[GroupState]) -> Option<StreamId> {
    groups
        .iter()
        .map(|g| match g.oldest_pending {
            Some(p) => p.min(g.last_delivered),
            None => g.last_delivered,
        })
        .min()
        .filter(|floor| *floor > StreamId::ZERO)
}

/// What one trimming chunk did ([`Store::trim_acknowledged`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimChunk {
    /// The stream does not exist or has no consumer group: nothing is trimmed.
    NoGroups,
    /// Every entry some group still needs is at or above the floor, and there is nothing below it.
    NothingToTrim,
    /// `removed` entries below the floor went; `more` when the limit cut the trim short.
    Trimmed { removed: u64, more: bool },
    /// A group fell behind the floor between reading the groups and trimming (created or rewound): skipped
    /// this time.
    FloorMoved,
}

/// Escapes the glob characters of `SCAN MATCH` in a literal key part.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn int(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Field `name` of a flat `[k, v, k, v, …]` reply or a map (RESP3).
pub(super) fn field(v: &Value, name: &str) -> Option<Value> {
    match v {
        Value::Array(flat) => flat
            .chunks(2)
            .find(|kv| kv.first().and_then(Value::as_str).as_deref() == Some(name))
            .and_then(|kv| kv.get(1).cloned()),
        Value::Map(m) => m
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v.clone()),
        _ => None,
    }
}

impl Store {
    // ---- stale in-progress deliveries --------------------------------------------------------------------

    /// Fails up to `limit` `in_progress` deliveries whose last activity is at or before `cutoff`, oldest
    /// first, found through the activity index. Each is re-checked inside the script: one whose activity
    /// moved past the cutoff (a callback) is kept. A failed delivery gets `last_error = error`, moves to the
    /// `failed` index, leaves the activity index, takes the terminal TTL, and its subscription's
    /// `publication_failures` goes up by one.
    ///
    /// # Errors
    /// Redis failure (nothing was written).
    pub async fn fail_stale_deliveries(
        &self,
        cutoff: Micros,
        now: Micros,
        limit: u32,
        error: &str,
    ) -> Result<StaleSweep> {
        let k = self.keys();
        let mut sweep = StaleSweep::default();
        // One script per shard (one on one node), each with the whole limit: a cycle's work is bounded by
        // `limit` per shard.
        for shard in k.shards() {
            let (keys, subscriptions) = if k.layout() == Layout::Standalone {
                let keys = vec![k.deliveries_activity(shard), k.queue_stream(shard)];
                (keys, k.subscription_prefix())
            } else {
                let keys = vec![
                    k.deliveries_activity(shard),
                    k.queue_stream(shard),
                    k.sub_outcomes(shard),
                ];
                (keys, String::new())
            };
            let reply: Vec<Value> = scripts::CLEANUP_FAIL_STALE
                .run(
                    self.pool(),
                    keys,
                    [
                        cutoff.to_string(),
                        limit.max(1).to_string(),
                        now.to_string(),
                        self.inner.terminal_ttl_secs.to_string(),
                        k.delivery_prefix(shard),
                        k.deliveries_by_status_prefix(shard),
                        subscriptions,
                        error.to_owned(),
                    ]
                    .into_iter()
                    .chain(self.lane_args(shard))
                    .collect::<Vec<_>>(),
                )
                .await?;
            let mut it = reply.into_iter();
            let mut next = || it.next().map(|v| int(&v)).unwrap_or(0);
            sweep.examined += next();
            sweep.refreshed += next();
            sweep.dropped += next();
            for v in it.filter_map(|v| v.as_string()) {
                sweep.failed.push(v.parse().map_err(|_| {
                    Error::Script(format!("cleanup_fail_stale: delivery id {v:?}"))
                })?);
            }
        }
        Ok(sweep)
    }

    // ---- subscription lifecycle --------------------------------------------------------------------------

    /// One `SSCAN` step over the subscriptions in `status`, from `cursor` (`"0"` to start). Returns the next
    /// cursor (`"0"` once the walk is complete) and the ids found. A walk may return an id twice; every change
    /// the lifecycle makes is a compare-and-set, so that is harmless.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn scan_subscription_ids(
        &self,
        status: SubscriptionStatus,
        cursor: &str,
        count: u32,
    ) -> Result<(String, Vec<SubscriptionId>)> {
        let reply: Value = self
            .pool()
            .next()
            .custom(
                fred::cmd!("SSCAN"),
                vec![
                    self.keys().subscriptions_by_status(status),
                    cursor.to_owned(),
                    "COUNT".to_owned(),
                    count.max(1).to_string(),
                ],
            )
            .await?;
        let mut parts = reply.into_array().into_iter();
        let next = parts
            .next()
            .and_then(|v| v.as_string())
            .unwrap_or_else(|| "0".to_owned());
        let ids = parts
            .next()
            .map(Value::into_array)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| v.as_string())
            .filter_map(|s| s.parse().ok())
            .collect();
        Ok((next, ids))
    }

    // ---- index hygiene -----------------------------------------------------------------------------------

    /// One bounded step of the keyspace scan that registers per-subscription, per-event-type and per-addon
    /// delivery indexes for pruning: `SCAN` from `cursor` (`"0"` to start) examining about `count` keys.
    /// Returns the next cursor (`"0"` when the scan is complete) and how many index keys were new to the
    /// registry. Bounded per call; a full scan visits every key once, so it runs on its own schedule.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn discover_delivery_indexes(
        &self,
        cursor: &str,
        count: u32,
    ) -> Result<(String, u64)> {
        let k = self.keys();
        // Standalone only: `SCAN` sees one node. On a cluster the record-creating scripts register their
        // index keys (§3), so there is nothing to discover: the walk is complete at once.
        if k.layout() != Layout::Standalone {
            return Ok(("0".to_owned(), 0));
        }
        let shard = Shard::ZERO;
        let pattern = format!("{}*", glob_escape(&format!("{}:", k.deliveries_all(shard))));
        let reply: Vec<Value> = scripts::CLEANUP_DISCOVER_INDEXES
            .run(
                self.pool(),
                vec![k.delivery_index_registry(shard)],
                vec![
                    cursor.to_owned(),
                    pattern,
                    count.max(1).to_string(),
                    k.deliveries_by_subscription_prefix(shard),
                    k.deliveries_by_event_prefix(shard),
                    k.deliveries_by_addon_prefix(shard),
                ],
            )
            .await?;
        let next = reply
            .first()
            .and_then(Value::as_string)
            .unwrap_or_else(|| "0".to_owned());
        Ok((next, reply.get(1).map_or(0, int)))
    }

    /// Every delivery index to prune, sorted: the fixed ones and the registered per-subscription,
    /// per-event-type and per-addon ones.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn delivery_indexes(&self) -> Result<Vec<String>> {
        let k = self.keys();
        let mut keys: Vec<String> = Vec::new();
        for shard in k.shards() {
            let registered: Vec<String> = self
                .pool()
                .smembers(k.delivery_index_registry(shard))
                .await?;
            keys.extend(registered);
            keys.push(k.deliveries_all(shard));
            keys.push(k.deliveries_activity(shard));
            keys.extend(DeliveryStatus::ALL.map(|s| k.deliveries_by_status(shard, s)));
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// Walks up to `limit` members of delivery index `key` from `from`, lowest score first, removing those
    /// whose record has expired. A registered index that ends up empty leaves the registry.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn prune_delivery_index(
        &self,
        key: &str,
        from: &IndexPosition,
        limit: u32,
    ) -> Result<PruneChunk> {
        let k = self.keys();
        // The index's shard, from its tag: its records and its registry are in the same slot.
        let shard = k
            .shard_of_key(key)
            .ok_or_else(|| Error::Script(format!("cleanup: {key} is not a delivery index")))?;
        let reply: Vec<Value> = scripts::CLEANUP_PRUNE_INDEX
            .run(
                self.pool(),
                vec![key.to_owned(), k.delivery_index_registry(shard)],
                vec![
                    k.delivery_prefix(shard),
                    from.score.clone(),
                    from.skip.to_string(),
                    limit.max(1).to_string(),
                ],
            )
            .await?;
        let [examined, removed, score, skip, done] = reply.as_slice() else {
            return Err(Error::Script(format!("cleanup_prune_index: {reply:?}")));
        };
        Ok(PruneChunk {
            examined: int(examined),
            removed: int(removed),
            next: (int(done) == 0).then(|| IndexPosition {
                score: score.as_string().unwrap_or_else(|| "-inf".to_owned()),
                skip: int(skip),
            }),
        })
    }

    // ---- streams -----------------------------------------------------------------------------------------

    /// The consumer groups of `stream` and how far each has got (empty when the stream does not exist).
    ///
    /// # Errors
    /// Redis failure or an unreadable reply.
    pub async fn stream_groups(&self, stream: &str) -> Result<Vec<GroupState>> {
        let groups: Value = match self.pool().xinfo_groups(stream).await {
            Ok(v) => v,
            Err(e) if e.details().contains("no such key") => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for g in groups.into_array() {
            let name = field(&g, "name")
                .and_then(|v| v.as_string())
                .ok_or_else(|| Error::Decode("XINFO GROUPS: a group without a name".into()))?;
            let last_delivered = field(&g, "last-delivered-id")
                .and_then(|v| v.as_string())
                .ok_or_else(|| {
                    Error::Decode(format!("XINFO GROUPS: {name} has no last-delivered-id"))
                })?
                .parse()?;
            let summary: Value = self.pool().xpending(stream, name.as_str(), ()).await?;
            let summary = summary.into_array();
            let oldest_pending = match summary.first().map(int) {
                Some(n) if n > 0 => summary
                    .get(1)
                    .and_then(Value::as_string)
                    .map(|s| s.parse())
                    .transpose()?,
                _ => None,
            };
            out.push(GroupState {
                name,
                last_delivered,
                oldest_pending,
            });
        }
        Ok(out)
    }

    /// Trims up to `limit` entries of `stream` that every consumer group has acknowledged: those strictly
    /// below [`trim_floor`] of its groups. Entries still pending in any group, or not yet read by any group,
    /// are never trimmed; a stream without groups is left alone. The floor is re-checked atomically with the
    /// trim, so a group created or rewound meanwhile makes it a no-op.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn trim_acknowledged(&self, stream: &str, limit: u32) -> Result<TrimChunk> {
        let groups = self.stream_groups(stream).await?;
        if groups.is_empty() {
            return Ok(TrimChunk::NoGroups);
        }
        let Some(floor) = trim_floor(&groups) else {
            return Ok(TrimChunk::NothingToTrim);
        };
        let reply: Vec<i64> = scripts::CLEANUP_TRIM_STREAM
            .run(
                self.pool(),
                vec![stream.to_owned()],
                vec![floor.to_string(), limit.max(1).to_string()],
            )
            .await?;
        match reply.as_slice() {
            [-1, _] => Ok(TrimChunk::FloorMoved),
            [0, _] => Ok(TrimChunk::NothingToTrim),
            [removed, more] => Ok(TrimChunk::Trimmed {
                removed: u64::try_from(*removed).unwrap_or(0),
                more: *more == 1,
            }),
            other => Err(Error::Script(format!("cleanup_trim_stream: {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> StreamId {
        s.parse().unwrap_or(StreamId::ZERO)
    }

    fn group(last: &str, pending: Option<&str>) -> GroupState {
        GroupState {
            name: "g".into(),
            last_delivered: id(last),
            oldest_pending: pending.map(id),
        }
    }

    #[test]
    fn stream_ids_parse_print_and_order_numerically() {
        assert_eq!(id("1700000000000-3").to_string(), "1700000000000-3");
        assert!(id("9-0") < id("10-0"), "numeric, not lexicographic");
        assert!(id("10-2") < id("10-11"));
        assert!("10".parse::<StreamId>().is_err());
        assert!("a-1".parse::<StreamId>().is_err());
    }

    #[test]
    fn floor_is_the_lowest_unacknowledged_or_unread_entry_over_all_groups() {
        // No groups: nobody said what they consumed.
        assert_eq!(trim_floor(&[]), None);
        // One group, nothing pending: everything up to the last delivered entry is acknowledged.
        assert_eq!(trim_floor(&[group("5-0", None)]), Some(id("5-0")));
        // A pending entry holds the floor down to it.
        assert_eq!(trim_floor(&[group("5-0", Some("3-1"))]), Some(id("3-1")));
        // The slowest group decides.
        assert_eq!(
            trim_floor(&[
                group("9-0", None),
                group("4-0", None),
                group("7-0", Some("6-0"))
            ]),
            Some(id("4-0"))
        );
        assert_eq!(
            trim_floor(&[group("9-0", Some("2-5")), group("4-0", None)]),
            Some(id("2-5"))
        );
        // A group that has read nothing yet keeps everything.
        assert_eq!(trim_floor(&[group("9-0", None), group("0-0", None)]), None);
    }

    #[test]
    fn scan_patterns_escape_the_prefix() {
        assert_eq!(glob_escape("t[1]*:webhook:"), r"t\[1\]\*:webhook:");
        assert_eq!(glob_escape("webhook:deliveries:"), "webhook:deliveries:");
    }
}
