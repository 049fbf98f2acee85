//! The one consumer-group reader. The event-consumer (over the input stream) and the delivery-worker (over
//! the queue) both run a [`GroupReader`] and keep only their per-batch work, a [`BatchHandler`].
//!
//! # The state machine
//!
//! Each stream of the [`GroupSpec`] gets its own session on its own connection (a blocking `XREADGROUP`
//! holds the connection it waits on). A session:
//! 1. asks the handler for room ([`BatchHandler::reserve`]), so the stream is read only as fast as work can
//!    start;
//! 2. first re-reads this consumer's own pending entries (delivered to it before a crash or restart and never
//!    acknowledged; consumer names are stable per replica) until none is left, so a restarted replica resumes
//!    its work at once instead of waiting for another to reclaim it;
//! 3. every `claim_every`, takes over entries idle for `claim_idle` in other consumers' pending lists
//!    (`XAUTOCLAIM`: their consumer died or hung);
//! 4. otherwise blocks on `XREADGROUP … >` for at most `block`;
//! 5. hands what it read to [`BatchHandler::handle`]. [`Handled::Retry`] (some entries stayed pending) sends
//!    the session back to step 2 after a pause.
//!
//! On `NOGROUP` (Redis lost its data) the group is recreated and reading goes on. Any other error is logged
//! and followed by a pause; a non-retryable one also closes the connection and opens a new one
//! ([`SessionEnd::Reconnect`]). A call that gets no answer is bounded (a blocking read by `block` plus the
//! store's command timeout); after such a timeout the connection, which may be half-open, is replaced in
//! place ([`StreamReader::reconnect`]) and this consumer's own pending entries are re-read. Every error is also reported to the handler as a [`ReaderEvent`], which is
//! where the services count them.
//!
//! # Shutdown
//!
//! One rule for every loop: once the token fires, no new read starts. A blocking read already sent may
//! finish: a healthy one returns within `block`, and the entries Redis handed to it are handled rather than
//! left pending under this consumer's name. A read still unanswered [`SETTLE`] past `block` after the signal
//! is abandoned (Redis is unreachable): whatever it took stays pending, re-read by this consumer at restart
//! or taken over by another after `claim_idle`, as after a crash.
//!
//! # Several streams
//!
//! The spec names a set of streams (one today; the queue is sharded across several in cluster mode). Their
//! sessions run concurrently in the caller's task and share the handler. A session holds the room it reserved
//! while its read blocks, so a handler that shares a fixed number of slots between streams should reserve at
//! most its fair share per read.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::store::{Store, StreamEntry, StreamReader};

/// How long past `block` a read may run once shutdown has begun.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Pause after a Redis error, or after a batch that left entries pending, before trying again.
const PAUSE: Duration = Duration::from_millis(500);

/// What to read, as whom, and how.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    /// The streams read in `group` (one session each).
    pub streams: Vec<String>,
    /// The consumer group.
    pub group: &'static str,
    /// Where a group recreated after `NOGROUP` starts: `0` replays what the stream holds, `$` its end.
    pub start_id: String,
    /// This replica's consumer name, stable across restarts.
    pub consumer: String,
    /// Most entries per read.
    pub batch_size: u64,
    /// Longest a read blocks waiting for new entries.
    pub block: Duration,
    /// Entries idle this long in another consumer's pending list are taken over.
    pub claim_idle: Duration,
    /// How often to look for such entries.
    pub claim_every: Duration,
}

/// Where a batch's entries came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// This consumer's own pending entries, re-read after a restart or a failed batch.
    OwnPending,
    /// Entries taken over from a stalled consumer.
    Claimed,
    /// New entries.
    New,
}

/// Entries read from one stream in one call.
#[derive(Debug)]
pub struct Batch<'a> {
    pub stream: &'a str,
    pub source: Source,
    pub entries: Vec<StreamEntry>,
}

/// What a handler made of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Every entry was acknowledged or handed on.
    Done,
    /// Some entries could not be processed and stay pending: re-read them after a pause.
    Retry,
}

/// Something the reader did or met, reported to the handler for its metrics (the reader logs it).
#[derive(Debug)]
pub enum ReaderEvent<'a> {
    /// `count` entries of a stalled consumer were taken over.
    Reclaimed { stream: &'a str, count: usize },
    /// The group was missing and has been recreated.
    GroupRecreated { stream: &'a str },
    /// A Redis call failed (opening the connection, reading, or recreating the group).
    RedisError { stream: &'a str, error: &'a Error },
}

/// The per-batch work of a loop.
pub trait BatchHandler: Sync {
    /// Room reserved for a read's entries (slots, permits), released when dropped.
    type Room: Send;

    /// Waits until there is room for at least one entry and returns it with its size (1 to `max`), or
    /// `None` when the handler takes no more work.
    fn reserve(&self, max: u64) -> impl Future<Output = Option<(Self::Room, u64)>> + Send;

    /// Processes (or starts processing) one non-empty batch, within the room reserved for it.
    fn handle(&self, batch: Batch<'_>, room: Self::Room) -> impl Future<Output = Handled> + Send;

    /// Counts what the reader reports. The default ignores it.
    fn observe(&self, event: ReaderEvent<'_>) {
        let _ = event;
    }
}

/// How one session on one connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// Shutdown, or the handler takes no more work.
    Stopped,
    /// A non-retryable error: open a new connection.
    Reconnect,
}

/// Reads a set of streams in one consumer group until cancelled (see the module doc).
pub struct GroupReader {
    store: Store,
    spec: GroupSpec,
}

impl GroupReader {
    pub fn new(store: Store, spec: GroupSpec) -> Self {
        Self { store, spec }
    }

    pub fn spec(&self) -> &GroupSpec {
        &self.spec
    }

    /// Creates the group on every stream (and the streams) where missing; idempotent, run at start-up so
    /// that a bad connection or missing permission fails the start.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn ensure_groups(&self) -> crate::Result<()> {
        for stream in &self.spec.streams {
            self.store
                .ensure_group(stream, self.spec.group, &self.spec.start_id)
                .await?;
        }
        Ok(())
    }

    /// Reads every stream of the spec, each in its own session, until `token` is cancelled; returns once
    /// every session has stopped and handed its last batch to `handler`.
    pub async fn run<H: BatchHandler>(&self, handler: &H, token: &CancellationToken) {
        tracing::info!(
            consumer = %self.spec.consumer,
            group = self.spec.group,
            streams = ?self.spec.streams,
            "reading"
        );
        futures::future::join_all(
            self.spec
                .streams
                .iter()
                .map(|stream| self.run_stream(stream, handler, token)),
        )
        .await;
    }

    /// Sessions on one stream, a new connection each, until stopped.
    async fn run_stream<H: BatchHandler>(
        &self,
        stream: &str,
        handler: &H,
        token: &CancellationToken,
    ) {
        while !token.is_cancelled() {
            let conn = match token.run_until_cancelled(self.store.reader()).await {
                None => return,
                Some(Ok(conn)) => conn,
                Some(Err(error)) => {
                    handler.observe(ReaderEvent::RedisError {
                        stream,
                        error: &error,
                    });
                    tracing::warn!(%error, stream, "cannot open a read connection; retrying");
                    pause(token).await;
                    continue;
                }
            };
            let end = self.session(stream, &conn, handler, token).await;
            conn.quit().await;
            if end == SessionEnd::Stopped {
                return;
            }
        }
    }

    /// Reads on one connection until stopped or the connection must be replaced.
    async fn session<H: BatchHandler>(
        &self,
        stream: &str,
        conn: &StreamReader,
        handler: &H,
        token: &CancellationToken,
    ) -> SessionEnd {
        let spec = &self.spec;
        let mut own_pending_done = false;
        let mut last_claim: Option<Instant> = None;
        while !token.is_cancelled() {
            let Some(Some((room, count))) = token
                .run_until_cancelled(handler.reserve(spec.batch_size))
                .await
            else {
                return SessionEnd::Stopped;
            };
            let source = if !own_pending_done {
                Source::OwnPending
            } else if last_claim.is_none_or(|t| t.elapsed() >= spec.claim_every) {
                last_claim = Some(Instant::now());
                Source::Claimed
            } else {
                Source::New
            };
            let read = match source {
                Source::OwnPending => {
                    conn.read_own_pending(stream, spec.group, &spec.consumer, count)
                        .await
                }
                Source::Claimed => {
                    let idle_ms = u64::try_from(spec.claim_idle.as_millis()).unwrap_or(u64::MAX);
                    conn.claim_stale(stream, spec.group, &spec.consumer, idle_ms, count)
                        .await
                }
                Source::New => match self.read_new(stream, conn, count, token).await {
                    Some(read) => read,
                    None => return SessionEnd::Stopped,
                },
            };
            match read {
                Ok(entries) => {
                    if source == Source::OwnPending && entries.is_empty() {
                        own_pending_done = true;
                    }
                    if source == Source::Claimed && !entries.is_empty() {
                        let count = entries.len();
                        handler.observe(ReaderEvent::Reclaimed { stream, count });
                        tracing::info!(count, stream, "took over entries of a stalled consumer");
                    }
                    if entries.is_empty() {
                        continue;
                    }
                    let batch = Batch {
                        stream,
                        source,
                        entries,
                    };
                    if handler.handle(batch, room).await == Handled::Retry {
                        own_pending_done = false;
                        pause(token).await;
                    }
                }
                Err(error) if error.is_nogroup() => {
                    drop(room);
                    handler.observe(ReaderEvent::GroupRecreated { stream });
                    tracing::warn!(
                        stream,
                        group = spec.group,
                        "consumer group is missing (Redis lost its data?); recreating it"
                    );
                    if let Err(error) = self
                        .store
                        .ensure_group(stream, spec.group, &spec.start_id)
                        .await
                    {
                        handler.observe(ReaderEvent::RedisError {
                            stream,
                            error: &error,
                        });
                        tracing::warn!(%error, stream, "cannot recreate the consumer group");
                        pause(token).await;
                    }
                }
                Err(error) => {
                    drop(room);
                    handler.observe(ReaderEvent::RedisError {
                        stream,
                        error: &error,
                    });
                    tracing::warn!(%error, stream, "reading the stream failed; retrying");
                    if error.is_timeout() {
                        // No answer: the connection may be half-open, and a blocking read holds it, so
                        // replace it; a reply lost with it may have handed entries to this consumer.
                        own_pending_done = false;
                        if let Err(error) = conn.reconnect().await {
                            tracing::warn!(%error, stream, "cannot replace the read connection");
                        }
                    }
                    pause(token).await;
                    if !error.is_retryable() {
                        return SessionEnd::Reconnect;
                    }
                }
            }
        }
        SessionEnd::Stopped
    }

    /// The blocking read of new entries under the shutdown rule (see the module doc): `None` when it was
    /// abandoned.
    async fn read_new(
        &self,
        stream: &str,
        conn: &StreamReader,
        count: u64,
        token: &CancellationToken,
    ) -> Option<crate::Result<Vec<StreamEntry>>> {
        let spec = &self.spec;
        let block_ms = u64::try_from(spec.block.as_millis()).unwrap_or(u64::MAX);
        let read = conn.read_group(stream, spec.group, &spec.consumer, count, block_ms);
        let settle = spec.block + SETTLE;
        tokio::select! {
            read = read => Some(read),
            () = async {
                token.cancelled().await;
                tokio::time::sleep(settle).await;
            } => None,
        }
    }
}

async fn pause(token: &CancellationToken) {
    let _ = token.run_until_cancelled(tokio::time::sleep(PAUSE)).await;
}
