//! FIFO lane keys (issue #18, `docs/flow.md` §2). A lane and every delivery in it share a queue shard, so the
//! script that writes the head's outcome also moves the lane on.

use super::{Keyspace, Layout, Shard};
use crate::lane::LaneId;

impl Keyspace {
    /// The prefix of the lane LISTs (Lua scripts append the [`LaneId`]): a lane's delivery messages in input
    /// order, head first. The head is the one message of the lane on the queue or the schedule (or, with
    /// `lane_on_failure = block`, its failed head waiting for an administrator); the rest wait. Renewed to
    /// the terminal TTL by every change, so a lane outlives the records it names.
    pub fn lane_prefix(&self, shard: Shard) -> String {
        self.s(shard, "hookline:lane:")
    }

    /// The LIST of lane `lane` (see [`lane_prefix`](Self::lane_prefix)).
    pub fn lane(&self, lane: &LaneId) -> String {
        format!("{}{lane}", self.lane_prefix(self.shard_of_lane(lane)))
    }

    /// SET: the shard's non-empty lanes (their [`LaneId`]s). Cleanup samples lane depth and blocked lanes
    /// from it, and advances a lane whose head's record expired.
    pub fn lanes(&self, shard: Shard) -> String {
        self.s(shard, "hookline:lanes")
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
