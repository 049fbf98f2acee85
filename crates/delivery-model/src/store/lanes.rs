//! FIFO lanes (issue #18, `docs/flow.md` §2): an ordered subscription's deliveries wait in their lane and
//! only its head is on the queue. The moves happen inside the scripts that create deliveries and write their
//! outcomes (`lua/lib/lane.lua`: fan-out, the finish script, receiver callbacks, the stale sweep, retries);
//! this module holds their arguments, the delivery ids that keep a lane in one shard, an administrator's
//! skip, and cleanup's sweep.

use fred::types::Value;

use super::{Store, scripts};
use crate::error::{Error, Result};
use crate::ids::{DeliveryId, SubscriptionId};
use crate::keys::Shard;
use crate::lane::{Lane, LaneId};
use crate::queue::{DELIVERY_MESSAGE_AROUND_ID, MESSAGE_FIELD};

/// Lanes one sweep script reads.
const SWEEP_PAGE: u32 = 100;

/// What one [`Store::lane_sweep`] found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LaneSweep {
    /// Non-empty lanes, over every shard.
    pub lanes: u64,
    /// Deliveries in lanes (each lane's head included).
    pub depth: u64,
    /// Lanes whose head failed and that wait for an administrator (`lane_on_failure = block`).
    pub blocked: u64,
    /// Lanes the sweep moved on (their head's record had expired or was terminal).
    pub moved: u64,
}

/// What [`Store::skip_lane`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaneSkip {
    /// The lane holds no delivery.
    Empty,
    /// The head has not failed: it is being delivered (or waits for its retry); nothing to skip.
    NotFailed { head: DeliveryId, status: String },
    /// The failed head left the lane; the next delivery is queued.
    Skipped { head: DeliveryId },
}

/// The script arguments of a delivery's lane in fan-out: lane id and `'1'` when it blocks on failure
/// (`''`, `''` when unordered).
pub(super) fn lane_fanout_args(lane: Option<&Lane>) -> [String; 2] {
    match lane {
        None => [String::new(), String::new()],
        Some(l) => [l.id.to_string(), if l.block { "1" } else { "" }.to_owned()],
    }
}

impl Store {
    /// The 7 lane arguments of shard `shard`'s scripts (`lane_ctx` in `lua/lib/lane.lua`): lane prefix,
    /// lanes set, delivery-key prefix, terminal TTL, the queue message around an id, message field.
    pub(super) fn lane_args(&self, shard: Shard) -> [String; 7] {
        let k = self.keys();
        let [pre, post] = DELIVERY_MESSAGE_AROUND_ID;
        [
            k.lane_prefix(shard),
            k.lanes(shard),
            k.delivery_prefix(shard),
            self.inner.terminal_ttl_secs.to_string(),
            pre.to_owned(),
            post.to_owned(),
            MESSAGE_FIELD.to_owned(),
        ]
    }

    /// The id of the delivery of entry `entry_id` to `sub`. An ordered delivery's id must fall in its lane's
    /// shard: the first of [`DeliveryId::for_fanout_nth`]'s candidates that does (the 0th on one node, so
    /// ids are as for any delivery there). Deterministic: reprocessing an entry finds the same id.
    pub(super) fn fanout_id(
        &self,
        entry_id: &str,
        sub: SubscriptionId,
        lane: Option<&Lane>,
    ) -> DeliveryId {
        let key = self.inner.fanout_id_key.as_ref();
        let Some(lane) = lane else {
            return DeliveryId::for_fanout_keyed(key, entry_id, sub);
        };
        let k = self.keys();
        let want = k.shard_of_lane(&lane.id);
        // Each candidate lands in the lane's shard with probability 1/shards: giving up after 64 rounds per
        // shard happens with probability e^-64. The fallback only costs that one delivery its order.
        let tries = 64 * u32::try_from(k.shards().len()).unwrap_or(u32::MAX).max(1);
        (0..tries)
            .map(|n| DeliveryId::for_fanout_nth(key, entry_id, sub, n))
            .find(|id| k.shard_of(*id) == want)
            .unwrap_or_else(|| DeliveryId::for_fanout_keyed(key, entry_id, sub))
    }

    /// An administrator skips the failed head of `lane` (a subscription that blocks its lanes on failure):
    /// the next delivery is queued.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn skip_lane(&self, lane: &LaneId) -> Result<LaneSkip> {
        let k = self.keys();
        let shard = k.shard_of_lane(lane);
        let mut args = vec![lane.to_string()];
        args.extend(self.lane_args(shard));
        let reply: Vec<Value> = scripts::LANE_SKIP
            .run_on(&self.writer(), vec![k.queue_stream(shard)], args)
            .await?;
        let mut it = reply.into_iter().map(|v| v.as_string().unwrap_or_default());
        let kind = it.next().unwrap_or_default();
        let head = |s: Option<String>| -> Result<DeliveryId> {
            s.unwrap_or_default()
                .parse()
                .map_err(|_| Error::Script("lane_skip: malformed head id".into()))
        };
        match kind.as_str() {
            "empty" => Ok(LaneSkip::Empty),
            "not_failed" => Ok(LaneSkip::NotFailed {
                head: head(it.next())?,
                status: it.next().unwrap_or_default(),
            }),
            "skipped" => Ok(LaneSkip::Skipped {
                head: head(it.next())?,
            }),
            other => Err(Error::Script(format!("lane_skip: unexpected {other:?}"))),
        }
    }

    /// FIFO lanes' hygiene, run by cleanup: in every shard, moves on a lane whose head is done with (its
    /// record expired while it waited), drops empty lanes from the set, and counts lanes, their depth and
    /// the blocked ones.
    ///
    /// # Errors
    /// Redis failure (shards swept before it keep their moves; each move is atomic).
    pub async fn lane_sweep(&self) -> Result<LaneSweep> {
        let k = self.keys();
        let mut total = LaneSweep::default();
        for shard in k.shards() {
            let mut cursor = "0".to_owned();
            loop {
                let mut args = vec![cursor.clone(), SWEEP_PAGE.to_string()];
                args.extend(self.lane_args(shard));
                let reply: Vec<Value> = scripts::LANE_SWEEP
                    .run(
                        self.pool(),
                        vec![k.lanes(shard), k.queue_stream(shard)],
                        args,
                    )
                    .await?;
                let mut it = reply.into_iter();
                let next = it.next().and_then(|v| v.as_string());
                let counts: Vec<u64> = it.filter_map(|v| v.as_u64()).collect();
                let (Some(next), [lanes, depth, blocked, moved]) = (next, counts.as_slice()) else {
                    return Err(Error::Script("lane_sweep: malformed reply".into()));
                };
                total.lanes += lanes;
                total.depth += depth;
                total.blocked += blocked;
                total.moved += moved;
                if next == "0" {
                    break;
                }
                cursor = next;
            }
        }
        Ok(total)
    }
}
