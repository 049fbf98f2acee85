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
//! `WAIT` is sent with a single attempt: fred retries a command on a new connection after a reconnect, and
//! there `WAIT` would return at once (a fresh connection has written nothing), confirming nothing.

use std::time::Duration;

use fred::prelude::*;

use super::Store;
use crate::error::{Error, Result};

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
    /// waiting is off.
    ///
    /// # Errors
    /// [`Error::NotReplicated`] when fewer replicas confirm within the timeout; a Redis error when the
    /// connection fails meanwhile. Either way the write itself is applied on the primary.
    pub(crate) async fn confirm(&self, client: &Client) -> Result<()> {
        if !self.ack.is_on() {
            return Ok(());
        }
        let timeout_ms = i64::try_from(self.ack.timeout.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let opts = Options {
            max_attempts: Some(1),
            timeout: Some(self.ack.timeout + CLIENT_SLACK),
            ..Options::default()
        };
        let confirmed: i64 = client
            .with_options(&opts)
            .wait(i64::from(self.ack.replicas), timeout_ms)
            .await?;
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
