//! Fair-sharing keys (issue #18, `docs/flow.md` §1): per shard, how many of each subscription's deliveries
//! are in the queue, and the ones waiting beyond its share. All of a shard's fair keys carry the shard's tag,
//! so the scripts that queue and acknowledge its messages move them in the same step.

use super::Keyspace;
use crate::keys::Shard;

impl Keyspace {
    /// The prefix of the per-subscription ZSETs (Lua scripts append the subscription id): the delivery
    /// messages of one subscription counted in the shard's queue; score = when queued (ms). Expires when idle
    /// (the active TTL, renewed by every message added).
    pub fn fair_queued_prefix(&self, shard: Shard) -> String {
        self.s(shard, "hookline:fair:queued:")
    }

    /// The prefix of the per-subscription LISTs (Lua scripts append the subscription id): the delivery
    /// messages of one subscription beyond its share of the shard's queue, oldest first (a retry coming due
    /// goes first). Expires when idle, like the records it names.
    pub fn fair_parked_prefix(&self, shard: Shard) -> String {
        self.s(shard, "hookline:fair:parked:")
    }

    /// SET: the subscriptions with parked messages in the shard. Cleanup walks it to refill a subscription
    /// whose counted messages went missing (an operator's `XDEL`, an expired record), so a parked list can
    /// never be stranded, and to sample the parked depth.
    pub fn fair_parking(&self, shard: Shard) -> String {
        self.s(shard, "hookline:fair:parking")
    }

    /// ZSET subscription id -> when it last had work fanned out in the shard (ms), kept for a second: a
    /// subscription gets its whole share only while no other one is here (`lua/lib/fair.lua`, `fair_cap`,
    /// which derives this name from the parking set's, as below). Expires 10 s after its last write.
    pub fn fair_recent(&self, shard: Shard) -> String {
        format!("{}:recent", self.fair_parking(shard))
    }
}
