//! The loss budget: `WAIT` for replicas before Hookline acknowledges a write (issue #14).
//!
//! Redis replicates asynchronously: a primary answers a write before any replica has it, so a failover can
//! lose writes Hookline has already acknowledged. With `redis.wait_replicas = N > 0`, every write method
//! whose result someone outside Redis relies on (an API answer: `publish_event`, subscription create,
//! `invoke_addon`, `apply_callback`, `retry_delivery`/`retry_failed`; and the consumer's acknowledgement of
//! an input entry) sends `WAIT N timeout` on the connection that carried the write, and fails with
//! [`Error::NotReplicated`] when fewer replicas confirm in time. The write stays applied on the primary
//! (`WAIT` cannot undo it): the API answers 503 and the caller retries, safely with an `Idempotency-Key`;
//! the consumer leaves the entry pending and fans it out again (idempotent by delivery id).
//!
//! Why the same connection: `WAIT` waits for the replication offset of the last write *of its own
//! connection*. A later write on any connection also covers an earlier one, because replicas apply the
//! primary's one replication stream in order; [`idempotency`](super::idempotency) relies on that to confirm
//! a handler's write with the write that stores its answer.
//!
//! On a Redis Cluster each master replicates its own slots, so `WAIT` must reach every master that took one
//! of the writes, on the connection that carried it: a clustered fred client holds one connection per node,
//! and [`Store::confirm`] sends one `WAIT` routed by the hash slot of each key written (one per distinct
//! slot; two slots of one master make a second, instant `WAIT`). The caller names the keys it wrote. The
//! idempotency layer's one-write-confirms-all trick holds on one node only, so on a cluster
//! [`Store::without_ack_wait`] keeps waiting and each write confirms itself. A slot that moves between the
//! write and its `WAIT` (a reshard) routes the `WAIT` to the new owner, which confirms nothing of ours: a
//! reshard is an operator's planned step, not a failure, and the write is on the old owner's replicas
//! soon after; the bound is the one replication lag.
//!
//! `WAIT` is sent with a single attempt: fred retries a command on a new connection after a reconnect, and
//! there `WAIT` would return at once (a fresh connection has written nothing), confirming nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use fred::prelude::*;
use fred::types::ClusterHash;

use super::Store;
use crate::error::{Error, Result};
use crate::keys::{Layout, key_slot};

/// Slack between `WAIT`'s own timeout and the client's, so that Redis answers before fred gives up.
const CLIENT_SLACK: Duration = Duration::from_millis(250);

/// How many replicas must confirm an acknowledged write, and for how long to wait for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckWait {
    replicas: u32,
    timeout: Duration,
}

impl AckWait {
    /// `replicas` = 0 turns waiting off.
    pub fn new(replicas: u32, timeout: Duration) -> Self {
        Self { replicas, timeout }
    }

    /// Replicas that must confirm (0: none, no `WAIT` is sent).
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// Longest a write waits for them.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether writes wait at all.
    pub fn is_on(&self) -> bool {
        self.replicas > 0
    }
}

impl Store {
    /// What this store waits for after an acknowledged write.
    pub fn ack_wait(&self) -> AckWait {
        self.ack
    }

    /// The same store, writing without `WAIT`: for a caller that confirms several writes with one later
    /// confirmed write (the idempotency layer stores the answer, then waits once for both).
    #[must_use]
    pub fn without_ack_wait(&self) -> Store {
        if self.keys().layout() != Layout::Standalone {
            // Each master confirms only its own slots' writes (see the module doc).
            return self.clone();
        }
        Store {
            inner: self.inner.clone(),
            ack: AckWait::new(0, self.ack.timeout),
        }
    }

    /// One connection of the pool, for a write and the `WAIT` that confirms it.
    pub(crate) fn writer(&self) -> Client {
        self.pool().next().clone()
    }

    /// Waits until the configured number of replicas have every write sent so far on `client`; a no-op when
    /// waiting is off. `written` names the keys written (on a cluster, one `WAIT` per distinct hash slot,
    /// routed to its master; on one node, one `WAIT`, and the names are not needed).
    ///
    /// # Errors
    /// [`Error::NotReplicated`] when fewer replicas confirm within the timeout; a Redis error when the
    /// connection fails meanwhile. Either way the write itself is applied on the primary.
    pub(crate) async fn confirm(&self, client: &Client, written: &[&str]) -> Result<()> {
        if !self.ack.is_on() {
            return Ok(());
        }
        if self.keys().layout() == Layout::Standalone {
            return self.wait_for_replicas(client, None).await;
        }
        let slots: BTreeSet<u16> = written.iter().map(|k| key_slot(k)).collect();
        futures::future::try_join_all(
            slots
                .into_iter()
                .map(|slot| self.wait_for_replicas(client, Some(slot))),
        )
        .await?;
        Ok(())
    }

    /// One `WAIT` on `client`: to the master of `slot` on a cluster.
    async fn wait_for_replicas(&self, client: &Client, slot: Option<u16>) -> Result<()> {
        let timeout_ms = i64::try_from(self.ack.timeout.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let opts = Options {
            max_attempts: Some(1),
            timeout: Some(self.ack.timeout + CLIENT_SLACK),
            cluster_hash: slot.map(ClusterHash::Custom),
            ..Options::default()
        };
        // A reply that does not come within the slack either (a master too busy to answer its own timeout in
        // time) confirms nothing: the same answer as a `WAIT` that counted no replica.
        let confirmed: i64 = match client
            .with_options(&opts)
            .wait(i64::from(self.ack.replicas), timeout_ms)
            .await
        {
            Err(e) if *e.kind() == fred::error::ErrorKind::Timeout => 0,
            other => other?,
        };
        let confirmed = u32::try_from(confirmed.max(0)).unwrap_or(u32::MAX);
        if confirmed < self.ack.replicas {
            return Err(Error::NotReplicated {
                wanted: self.ack.replicas,
                confirmed,
            });
        }
        Ok(())
    }
}
