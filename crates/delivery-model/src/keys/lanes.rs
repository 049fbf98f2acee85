//! FIFO lane keys (issue #18, `docs/flow.md` §2). A lane and every delivery in it share a queue shard, so the
//! script that writes an outcome also moves the lane on.

use super::{Keyspace, Layout, Shard};
use crate::lane::LaneId;

impl Keyspace {
    /// The prefix of the lane ZSETs (Lua scripts append the [`LaneId`]): a lane's deliveries, scored by their
    /// input entry's position (`lane_score`), the one out included. Renewed to the terminal TTL by every
    /// change, so a lane outlives the records it names.
    pub fn lane_prefix(&self, shard: Shard) -> String {
        self.s(shard, "hookline:lane:")
    }

    /// The ZSET of lane `lane` (see [`lane_prefix`](Self::lane_prefix)).
    pub fn lane(&self, lane: &LaneId) -> String {
        format!("{}{lane}", self.lane_prefix(self.shard_of_lane(lane)))
    }

    /// HASH: the shard's non-empty lanes, each with the delivery it has out (on the queue, the schedule, in
    /// flight, or failed and blocking it), or `''` while it waits for the watermark. Cleanup samples lane
    /// depth and blocked lanes from it, and moves on a lane whose delivery out expired.
    pub fn lanes(&self, shard: Shard) -> String {
        self.s(shard, "hookline:lanes")
    }

    /// ZSET: the shard's lanes with nothing out that wait for the input watermark, scored by their first
    /// delivery's position; released when the watermark passes it.
    pub fn lanes_held(&self, shard: Shard) -> String {
        self.s(shard, "hookline:lanes:held")
    }

    /// STRING: the shard's input watermark, a lane score: every input entry before it has been fanned out,
    /// so no delivery before it can still join a lane. Only ever raised.
    pub fn lanes_low(&self, shard: Shard) -> String {
        self.s(shard, "hookline:lanes:low")
    }

    /// The shard that holds lane `lane` and its deliveries ([`Shard::ZERO`] in standalone mode).
    pub fn shard_of_lane(&self, lane: &LaneId) -> Shard {
        match self.layout {
            Layout::Standalone => Shard::ZERO,
            Layout::Cluster { shards } => {
                let n = lane.hash64() % u64::from(shards.max(1));
                // n < shards ≤ u16::MAX, so the conversion cannot fail.
                Shard::new(u16::try_from(n).unwrap_or(0))
            }
        }
    }
}
