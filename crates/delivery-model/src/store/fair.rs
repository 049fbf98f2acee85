//! Fair sharing (issue #18, `docs/flow.md` §1): each subscription has at most a share of every shard's
//! queue waiting to be read, the rest of its deliveries parked beside it in the shard and moved to the queue
//! as its entries are read. The moves happen inside the scripts that queue delivery messages and the one that
//! leases them (`lua/lib/fair.lua`: fan-out, promotion, the lease); this module holds their arguments and
//! cleanup's sweep.

use std::time::Duration;

use super::{Store, scripts};
use crate::error::{Error, Result};
use crate::keys::Shard;
use crate::queue::MESSAGE_FIELD;
use crate::time::Micros;

/// Entries a subscription may have waiting to be read in each shard's queue unless configured
/// (`delivery.fair_share`). A healthy delivery waits behind at most this many entries of a subscription
/// with a backlog. It does not cap the subscription's concurrency: a place is given back when its entry is
/// leased, so a subscription alone still gets every slot its host's gate allows (`make bench`'s flood, one
/// subscription: 6,699 deliveries/s at 16, as without fair sharing). Measured against 64 and 32 (noisy and
/// flood phases, 2026-12-03): smaller waits, the same throughput.
pub const DEFAULT_FAIR_SHARE: u32 = 16;

/// A counted message older than this is forgotten by the sweep: nothing will release its place (its entry
/// was deleted outside the scripts, or its record expired). Far above any healthy queue wait; forgetting one
/// still queued only admits one more.
pub const FAIR_STALE: Duration = Duration::from_secs(15 * 60);

/// Parking subscriptions one sweep script reads.
const SWEEP_PAGE: u32 = 100;
/// Most messages one sweep call moves per subscription (fair sharing turned off: the drain's pace).
const SWEEP_MOST: u32 = 1000;

/// What one [`Store::fair_sweep`] found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FairSweep {
    /// Subscriptions with parked deliveries, over every shard.
    pub parking: u64,
    /// Deliveries parked after the sweep's moves.
    pub parked: u64,
    /// Parked deliveries the sweep moved to a queue (refilled a subscription whose places went missing).
    pub moved: u64,
}

impl Store {
    /// The fair-sharing arguments of shard `shard`'s scripts: share, queued prefix, parked prefix.
    pub(super) fn fair_args(&self, shard: Shard) -> [String; 3] {
        let k = self.keys();
        [
            self.inner.fair_share.to_string(),
            k.fair_queued_prefix(shard),
            k.fair_parked_prefix(shard),
        ]
    }

    /// Fair sharing's safety net, run by cleanup: in every shard, forgets counted messages older than
    /// [`FAIR_STALE`], refills each parking subscription up to its share (or drains what an earlier
    /// configuration parked when fair sharing is off), and reports the parked depth.
    ///
    /// # Errors
    /// Redis failure (shards swept before it keep their moves; each move is atomic).
    pub async fn fair_sweep(&self, now: Micros) -> Result<FairSweep> {
        let k = self.keys();
        let mut total = FairSweep::default();
        let stale_ms = i64::try_from(FAIR_STALE.as_millis()).unwrap_or(i64::MAX);
        for shard in k.shards() {
            let [share, queued, parked] = self.fair_args(shard);
            let mut cursor = "0".to_owned();
            loop {
                let reply: Vec<fred::types::Value> = scripts::FAIR_SWEEP
                    .run(
                        self.pool(),
                        vec![k.fair_parking(shard), k.queue_stream(shard)],
                        vec![
                            cursor.clone(),
                            SWEEP_PAGE.to_string(),
                            share.clone(),
                            SWEEP_MOST.to_string(),
                            queued.clone(),
                            parked.clone(),
                            MESSAGE_FIELD.to_owned(),
                            (now / 1000).to_string(),
                            stale_ms.to_string(),
                            self.inner.active_ttl_secs.to_string(),
                        ],
                    )
                    .await?;
                let mut it = reply.into_iter();
                let next = it.next().and_then(|v| v.as_string());
                let counts: Vec<u64> = it.filter_map(|v| v.as_u64()).collect();
                let (Some(next), [seen, parked_now, moved]) = (next, counts.as_slice()) else {
                    return Err(Error::Script("fair_sweep: malformed reply".into()));
                };
                total.parking += seen;
                total.parked += parked_now;
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
