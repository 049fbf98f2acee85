//! FIFO lanes (issue #18, `docs/flow.md` §2): an ordered subscription's deliveries wait in their lane and
//! only its head is on the queue. The moves happen inside the scripts that create deliveries and write their
//! outcomes (`lua/lib/lane.lua`: fan-out, the finish script, receiver callbacks, the stale sweep, retries);
//! this module holds their arguments, the delivery ids that keep a lane in one shard, an administrator's
//! skip, and cleanup's sweep.

use fred::types::Value;

use super::{Store, scripts};
use crate::error::{Error, Result};
use crate::ids::{DeliveryId, SubscriptionId};
use crate::keys::{EVENTS_GROUP, Shard};
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
    /// The delivery out has not failed: it is being delivered (or waits for its retry), or nothing is out yet
    /// (`head` `None`, status `waiting`: the lane waits for the input watermark); nothing to skip.
    NotFailed {
        head: Option<DeliveryId>,
        status: String,
    },
    /// The failed head left the lane; the next delivery is queued.
    Skipped { head: DeliveryId },
}

/// The script arguments of a delivery's lane in fan-out: lane id, `'1'` when it blocks on failure, and the
/// input entry's lane score (all `''` when unordered).
pub(super) fn lane_fanout_args(lane: Option<&Lane>, entry_id: &str) -> [String; 3] {
    match lane {
        None => [String::new(), String::new(), String::new()],
        Some(l) => [
            l.id.to_string(),
            if l.block { "1" } else { "" }.to_owned(),
            lane_score(entry_id).to_string(),
        ],
    }
}

/// An input entry's position as a lane score: `ms * 1000 + seq` (a sequence past 999 within one millisecond
/// counts as 999, so order among those is not kept; exact in a double for any date before year 2255). Lua's
/// `lane_entry_score` is the same function.
pub fn lane_score(entry_id: &str) -> u64 {
    let (ms, seq) = entry_id.split_once('-').unwrap_or((entry_id, "0"));
    let ms: u64 = ms.parse().unwrap_or(0);
    let seq: u64 = seq.parse().unwrap_or(0);
    ms.saturating_mul(1000).saturating_add(seq.min(999))
}

impl Store {
    /// The 9 lane arguments of shard `shard`'s scripts (`lane_ctx` in `lua/lib/lane.lua`): lane prefix,
    /// lanes hash, held lanes, watermark, delivery-key prefix, terminal TTL, the queue message around an id,
    /// message field.
    pub(super) fn lane_args(&self, shard: Shard) -> [String; 9] {
        let k = self.keys();
        let [pre, post] = DELIVERY_MESSAGE_AROUND_ID;
        [
            k.lane_prefix(shard),
            k.lanes(shard),
            k.lanes_held(shard),
            k.lanes_low(shard),
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
    pub fn fanout_id(
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

    /// An administrator skips the failed delivery `lane` has out (a subscription that blocks its lanes on
    /// failure): the lane moves on.
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
            "not_failed" => {
                let out = it.next().filter(|s| !s.is_empty());
                Ok(LaneSkip::NotFailed {
                    head: out.map(|s| head(Some(s))).transpose()?,
                    status: it.next().unwrap_or_default(),
                })
            }
            "skipped" => Ok(LaneSkip::Skipped {
                head: head(it.next())?,
            }),
            other => Err(Error::Script(format!("lane_skip: unexpected {other:?}"))),
        }
    }

    /// Whether fan-out raises the lane watermark itself (one node, acknowledging in the fan-out script);
    /// otherwise the consumer calls [`raise_lane_watermark`](Self::raise_lane_watermark) after acknowledging.
    pub fn fanout_raises_lane_watermark(&self) -> bool {
        self.keys().layout() == crate::keys::Layout::Standalone && !self.ack_wait().is_on()
    }

    /// Raises every shard's lane watermark to what the input stream's group shows now (the first entry still
    /// pending, or just past the last delivered one) and sends the first delivery of each held lane it
    /// passed. Returns the number of held lanes looked at. The consumer calls it after acknowledging entries
    /// whenever some subscription is ordered (on one node the fan-out script already did, unless it left
    /// the acknowledgement to the caller); cleanup calls it each cycle.
    ///
    /// # Errors
    /// Redis failure (shards raised before it keep their watermark; raising is idempotent).
    pub async fn raise_lane_watermark(&self) -> Result<u64> {
        let Some(low) = self.input_watermark().await? else {
            return Ok(0);
        };
        let k = self.keys();
        let client = self.writer();
        let calls = k.shards().map(|shard| {
            let mut args = vec![low.to_string()];
            args.extend(self.lane_args(shard));
            scripts::LANE_WATERMARK.run_on::<u64>(&client, vec![k.queue_stream(shard)], args)
        });
        Ok(futures::future::try_join_all(calls)
            .await?
            .into_iter()
            .sum())
    }

    /// The input watermark as a lane score (see `lua/lib/lane.lua`): `None` when the stream or group is
    /// missing. One script on the input stream's node, so the pending summary and the group's last delivered
    /// id are read at one instant (`lua/lane_input_low.lua` says why that matters).
    async fn input_watermark(&self) -> Result<Option<u64>> {
        let k = self.keys();
        let low: u64 = scripts::LANE_INPUT_LOW
            .run_on(
                &self.writer(),
                vec![k.events_stream().to_owned()],
                vec![EVENTS_GROUP.to_owned()],
            )
            .await?;
        Ok((low > 0).then_some(low))
    }

    /// FIFO lanes' hygiene, run by cleanup: in every shard, moves on a lane whose delivery out is done with
    /// (its record expired while it waited), looks again at the lanes with nothing out, and counts lanes,
    /// their depth and the blocked ones.
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
                    .run(self.pool(), vec![k.queue_stream(shard)], args)
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
