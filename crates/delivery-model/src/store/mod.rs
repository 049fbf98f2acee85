//! The single Redis access layer. Loops and handlers call typed methods; nothing else builds Redis commands.
//!
//! # Data structures (see `docs/architecture.md` for the full key table)
//!
//! - **Input stream** (`tmi:events`, group `webhook-consumers`): producers append TMI's event entries. The
//!   event-consumer reads it in batches, fans each entry out to deliveries and acknowledges it in the same
//!   script ([`Store::fanout`]), so an entry is either fully processed or still pending.
//! - **Delivery records** (`webhook:delivery:{id}` hashes) with ZSET indexes by time, subscription, status
//!   and event type, so listing never scans the keyspace.
//! - **Queue stream** (`hookline:queue`, group `delivery-workers`): ids of work due now (deliveries and
//!   verification challenges). Entries are deleted once acknowledged, so the stream holds only live work.
//! - **Schedule** (`hookline:scheduled` ZSET, score = due ms): retries and reschedules. Any worker may move
//!   due members to the queue; the move is one script, so each is moved once ([`Store::promote_due`]).
//! - **Leases**: an attempt takes a lease (token + expiry) on its record before sending
//!   ([`Store::begin_attempt`]) and writes its outcome only if it still holds it ([`Store::finish_attempt`]).
//!   Queue entries left by a dead worker are reclaimed after the lease has expired, and a late result of the
//!   dead attempt is fenced off.
//! - **Subscriptions** (hashes) with index sets by owner, status and threat model, and — for active ones only
//!   — by event type, so matching an event reads two small sets.
//!
//! Setup is idempotent: consumer groups are created with `MKSTREAM`, and `BUSYGROUP` is ignored.
//!
//! This file holds the handle, its connection and the plumbing the other files share; `Store`'s methods for
//! each kind of record or structure live in a submodule of their own, each one `impl Store` block.

mod addon_shards;
pub mod addons;
mod attempt_subscriptions;
pub mod attempts;
pub mod backlog;
pub mod callbacks;
pub mod circuits;
pub mod cleanup;
pub mod cluster;
pub mod connection;
mod deliveries;
pub mod delivery_queries;
mod durability;
pub mod export;
pub mod fair;
mod fanout_shards;
pub mod health;
pub mod idempotency;
pub mod import;
pub mod lanes;
mod leases;
mod limits;
mod merged_pages;
mod queue;
pub mod quotas;
pub mod redrive;
mod replay;
pub mod retries;
mod revocation;
mod scripts;
pub mod secrets;
mod sentinel;
pub mod stats;
mod streams;
pub mod sub_outcomes;
mod subscriptions;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;

use crate::delivery::DeliveryRecord;
use crate::error::Result;
use crate::keys::{Keyspace, Layout};
use crate::secret_box::SecretBox;
use crate::subscription::Subscription;
use crate::time::Micros;

pub use attempts::{
    AttemptOutcome, BeginAttempt, BeginItem, CircuitPolicy, CircuitSignal, CircuitState,
    CircuitUpdate, FinishItem, FinishResult, HealthPolicy, Leased,
};
pub use backlog::GroupBacklog;
pub use connection::{Secret, TlsOptions, redact_url};
pub use deliveries::{Fanned, FanoutEntry};
pub use durability::AckWait;
pub use fair::{DEFAULT_FAIR_SHARE, FairSweep};
pub use health::EnableResult;
pub use lanes::{LaneSkip, LaneSweep};
pub use limits::{LimitDecision, LimitTiming};
pub use secrets::{ResealReport, Rotation};
pub use sentinel::SentinelOptions;
pub use streams::{StreamEntry, StreamReader, entry_time_ms};
pub use subscriptions::ChallengeFailure;

/// How to reach Redis and how long records live. `Debug` redacts the password (see the impl below).
#[derive(Clone)]
pub struct StoreOptions {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` for TLS; a Redis Cluster:
    /// `redis-cluster://[user:password@]host:port[?node=host:port…]` or `rediss-cluster://…` (see [`cluster`]).
    pub url: String,
    /// Multiplexed connections shared by all non-blocking commands.
    pub pool_size: usize,
    /// Prepended to every key Hookline owns (not to the input stream).
    pub key_prefix: String,
    /// Queue shards with a cluster URL ([`Layout::Cluster`]); ignored on one node, where the layout is
    /// always [`Layout::Standalone`] (today's key names). Fixed for a deployment: the store refuses to start
    /// against data laid out with another count ([`Keyspace::layout_marker`]).
    pub cluster_shards: u16,
    /// Name of the input stream.
    pub events_stream: String,
    /// TTL of `pending`/`in_progress` records.
    pub active_ttl: Duration,
    /// TTL of `delivered`/`failed` records.
    pub terminal_ttl: Duration,
    /// Upper bound on any single command (blocking reads add their block time). Also the bound on a
    /// half-open connection: one whose oldest unanswered command is this old is closed and replaced.
    pub command_timeout: Duration,
    /// Sentinels naming the primary; `None` connects to the URL's host. See [`SentinelOptions`]. Refused
    /// with a cluster URL.
    pub sentinel: Option<SentinelOptions>,
    // ---- loss budget (issue #14): WAIT before acknowledging -------------------------------------------
    /// Replicas that must confirm a write Hookline acknowledges to a caller before it answers (`WAIT`);
    /// 0 = answer at once (Redis's asynchronous replication). See [`AckWait`].
    pub wait_replicas: u32,
    /// Longest a write waits for those replicas (below `command_timeout`).
    pub wait_timeout: Duration,
    /// ACL user, when the URL names none (`None`: the URL's, else `default`).
    pub username: Option<String>,
    /// Password, when the URL carries none; given in both places it is refused.
    pub password: Option<Secret>,
    /// TLS settings for a `rediss://` URL; refused with a plain one.
    pub tls: TlsOptions,
    // ---- secrets at rest (issue #16 item 4) ------------------------------------------------------------
    /// Key-encryption keys for subscription secrets; [`SecretBox::disabled`] stores them in plain text.
    pub secrets: SecretBox,
    // ---- fan-out delivery ids (issue #16) ----
    /// Keys the fan-out delivery ids ([`DeliveryId::for_fanout_keyed`](crate::ids::DeliveryId)); `None`:
    /// the unkeyed (predictable) derivation.
    pub fanout_id_key: Option<crate::ids::FanoutKey>,
    // ---- fair sharing (issue #18) ----
    /// Queue entries one subscription may have in each shard's queue; the rest wait parked beside it
    /// ([`fair`]). 0 = off.
    pub fair_share: u32,
}

// By hand rather than derived, so the URL's password is redacted. A new field must be added here too.
impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("key_prefix", &self.key_prefix)
            .field("cluster_shards", &self.cluster_shards)
            .field("events_stream", &self.events_stream)
            .field("active_ttl", &self.active_ttl)
            .field("terminal_ttl", &self.terminal_ttl)
            .field("command_timeout", &self.command_timeout)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("tls", &self.tls)
            .field("sentinel", &self.sentinel)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .field("secrets", &self.secrets)
            .field("fanout_id_key", &self.fanout_id_key)
            .field("fair_share", &self.fair_share)
            .finish_non_exhaustive()
    }
}

impl StoreOptions {
    /// Options for `url` with TMI's defaults: the `tmi:events` input stream, no key prefix, records kept 4 h
    /// while active and 7 days once finished, two pooled connections, 5-s commands. Services build theirs
    /// from settings; tools and tests start here and change what they need.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 2,
            key_prefix: String::new(),
            cluster_shards: crate::keys::DEFAULT_CLUSTER_SHARDS,
            events_stream: "tmi:events".into(),
            active_ttl: Duration::from_secs(4 * 3600),
            terminal_ttl: Duration::from_secs(7 * 24 * 3600),
            command_timeout: Duration::from_secs(5),
            sentinel: None,
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(500),
            username: None,
            password: None,
            tls: TlsOptions::default(),
            secrets: SecretBox::disabled(),
            fanout_id_key: None,
            fair_share: DEFAULT_FAIR_SHARE,
        }
    }
}

/// Handle to the Redis contract. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// Outside `inner` so that [`Store::without_ack_wait`] is a cheap copy.
    ack: AckWait,
}

struct Inner {
    pool: Pool,
    builder: Builder,
    /// [`StoreOptions::command_timeout`], for bounds the store applies itself (readiness, blocking reads).
    command_timeout: Duration,
    keys: Keyspace,
    active_ttl_secs: i64,
    terminal_ttl_secs: i64,
    /// Seals subscription secrets on write, opens them on read.
    secrets: SecretBox,
    /// [`StoreOptions::fanout_id_key`].
    fanout_id_key: Option<crate::ids::FanoutKey>,
    /// [`StoreOptions::fair_share`].
    fair_share: u32,
}

/// A page of results and the total number of matches.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// Longest wait for `QUIT` when a service closes its connections.
pub(crate) const QUIT_WAIT: Duration = Duration::from_secs(1);

/// Half-open connections (Redis stops answering, nothing closes the socket) are found by fred's
/// unresponsive check: a connection whose oldest unanswered command is older than the command timeout is
/// closed and re-established under the reconnect policy. Without it a caller only sees its own command
/// time out, and the dead connection keeps every later command until the kernel gives up on the socket
/// (about 15 minutes of TCP retransmissions). The check skips a connection held by a blocking command;
/// the reader replaces those itself ([`StreamReader::reconnect`]).
fn unresponsive(command_timeout: Duration) -> fred::types::config::UnresponsiveConfig {
    fred::types::config::UnresponsiveConfig {
        max_timeout: Some(command_timeout),
        // fred advises checking at least twice per bound; a check is a timer and a clock read.
        interval: (command_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)),
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1)
}

/// Appends a subscription's stored fields as field/value pairs (the tail of every subscription-writing
/// script), with the secret and the signing key sealed under the current key: the one place they are
/// written.
pub(crate) fn push_fields(
    args: &mut Vec<String>,
    sub: &Subscription,
    secrets: &SecretBox,
) -> Result<()> {
    for (f, v) in sub.to_fields() {
        let v = if crate::subscription::field::SEALED.contains(&f) {
            secrets.seal(&v)?
        } else {
            v
        };
        args.push(f.to_owned());
        args.push(v);
    }
    Ok(())
}

/// Appends a delivery record as the record-writing scripts take it: creation score, id, field count, then
/// field/value pairs.
pub(crate) fn push_record(args: &mut Vec<String>, record: &DeliveryRecord) {
    push_record_with(args, record, &[]);
}

/// [`push_record`] with `extra` internal fields written with the record (a cluster's `routed` flag).
pub(crate) fn push_record_with(
    args: &mut Vec<String>,
    record: &DeliveryRecord,
    extra: &[(&'static str, &str)],
) {
    let mut fields = record.to_fields();
    fields.extend(extra.iter().map(|(f, v)| (*f, (*v).to_owned())));
    args.push(created_score(record.created_at));
    args.push(record.id.to_string());
    args.push(fields.len().to_string());
    for (f, v) in fields {
        args.push(f.to_owned());
        args.push(v);
    }
}

/// Reads every id concurrently, keeping their order and leaving out what is gone meanwhile (expired or
/// deleted since the index was read).
pub(crate) async fn read_each<I, T, F, Fut>(ids: I, get: F) -> Result<Vec<T>>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    Ok(futures::future::try_join_all(ids.into_iter().map(get))
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// In cluster mode, records the shard count on first start and refuses another one later: records are
/// found by `shard(id) = … % N`, so a changed `N` would lose track of every stored delivery. One `SET NX GET`
/// (Redis ≥ 7.0): the first store to start writes the marker, every later one reads what it holds.
async fn check_layout_marker(pool: &Pool, keys: &Keyspace) -> Result<()> {
    let Layout::Cluster { shards } = keys.layout() else {
        return Ok(());
    };
    let stored: Option<u16> = pool
        .set(
            keys.layout_marker(),
            shards,
            None,
            Some(fred::types::SetOptions::NX),
            true,
        )
        .await?;
    match stored {
        Some(stored) if stored != shards => Err(crate::error::Error::Config(format!(
            "redis.cluster_shards is {shards} but the data in this cluster was laid out with {stored} \
             shards: changing it re-homes every delivery and needs a migration (docs/cluster.md)"
        ))),
        _ => Ok(()),
    }
}

fn created_score(created_at: Micros) -> String {
    (created_at / 1000).to_string()
}

impl Store {
    /// Connects the pool (failing fast if Redis cannot be reached or authenticated at start) and keeps the
    /// configuration to open dedicated connections for blocking reads later. Once connected, lost connections
    /// are re-established with capped exponential backoff.
    ///
    /// # Errors
    /// [`crate::error::Error::Config`] for a bad URL or TLS setting; Redis unreachable, refusing the credentials or the
    /// TLS handshake failing within the command timeout.
    pub async fn connect(opts: &StoreOptions) -> Result<Self> {
        let layout = if cluster::is_cluster_url(&opts.url) {
            Layout::Cluster {
                shards: opts.cluster_shards,
            }
        } else {
            Layout::Standalone
        };
        let keys =
            Keyspace::with_layout(opts.key_prefix.clone(), opts.events_stream.clone(), layout)?;
        let mut config = connection::fred_config(opts)?;
        sentinel::apply(&mut config, opts.sentinel.as_ref());
        let config_uses_tls = config.uses_tls();
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = opts.command_timeout;
                c.internal_command_timeout = opts.command_timeout;
                c.max_command_attempts = 3;
                c.unresponsive = unresponsive(opts.command_timeout);
                // Nagle's algorithm holds a small write back while an earlier one is unacknowledged, and
                // the peer's delayed ACK can make that 40 ms: a latency tail at moderate load, where
                // pipelined commands are small and sparse (issue #21). Every command here is latency-bound.
                c.tcp = fred::types::config::TcpConfig {
                    nodelay: Some(true),
                    ..Default::default()
                };
            })
            .with_performance_config(|p| {
                p.default_command_timeout = opts.command_timeout;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
        let pool = builder.build_pool(opts.pool_size.max(1))?;
        let connect = async {
            pool.init().await?;
            pool.ping::<()>(None).await
        };
        let failure = match tokio::time::timeout(opts.command_timeout, connect).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(fred::error::Error::new(
                fred::error::ErrorKind::Timeout,
                format!("no answer within {:?}", opts.command_timeout),
            )),
        };
        if let Some(e) = failure {
            return Err(connection::connect_error(&opts.url, config_uses_tls, &e));
        }
        check_layout_marker(&pool, &keys).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                builder,
                command_timeout: opts.command_timeout,
                keys,
                active_ttl_secs: secs(opts.active_ttl),
                terminal_ttl_secs: secs(opts.terminal_ttl),
                secrets: opts.secrets.clone(),
                fanout_id_key: opts.fanout_id_key.clone(),
                fair_share: opts.fair_share,
            }),
            ack: AckWait::new(opts.wait_replicas, opts.wait_timeout),
        })
    }

    /// The key-encryption keys of subscription secrets.
    pub fn secrets(&self) -> &SecretBox {
        &self.inner.secrets
    }

    /// Decodes a stored subscription hash and opens its secret and signing key: the one place they are
    /// read.
    pub(crate) fn decode_subscription(&self, h: &HashMap<String, String>) -> Result<Subscription> {
        let mut sub = Subscription::from_hash(h)?;
        if let Some(s) = &sub.secret {
            sub.secret = Some(self.inner.secrets.open(s)?);
        }
        if let Some(k) = &sub.signing_key {
            sub.signing_key = Some(Secret::new(self.inner.secrets.open(k.expose())?));
        }
        if let Some(p) = &sub.previous_secret {
            sub.previous_secret = Some(Secret::new(self.inner.secrets.open(p.expose())?));
        }
        Ok(sub)
    }

    /// The key builder this store uses.
    pub fn keys(&self) -> &Keyspace {
        &self.inner.keys
    }

    /// The bound on any single command ([`StoreOptions::command_timeout`]).
    pub fn command_timeout(&self) -> Duration {
        self.inner.command_timeout
    }

    fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Closes the pool's connections, waiting at most [`QUIT_WAIT`]: `QUIT` is a courtesy to the server, and
    /// with Redis unreachable it would wait out reconnects and command timeouts while a pod shuts down.
    pub async fn quit(&self) {
        let _ = tokio::time::timeout(QUIT_WAIT, self.pool().quit()).await;
    }

    /// A round trip to Redis (health checks).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn ping(&self) -> Result<()> {
        self.pool().ping::<()>(None).await?;
        Ok(())
    }

    /// Approximate memory used by Redis (`used_memory`), for the benchmark.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn used_memory(&self) -> Result<u64> {
        let info: String = self
            .pool()
            .info(Some(fred::types::InfoKind::Memory))
            .await?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// A page of the ids in ZSET `key` (in score order, or reversed for `newest_first`) and its total size;
    /// the listing methods of every record type read their indexes through it.
    async fn zpage(
        &self,
        key: &str,
        offset: u64,
        limit: u64,
        newest_first: bool,
    ) -> Result<(Vec<String>, u64)> {
        if limit == 0 {
            let total: u64 = self.pool().zcard(key).await?;
            return Ok((Vec::new(), total));
        }
        let start = i64::try_from(offset).unwrap_or(i64::MAX);
        let stop = start
            .saturating_add(i64::try_from(limit).unwrap_or(i64::MAX))
            .saturating_sub(1);
        let ids: Vec<String> = self
            .pool()
            .zrange(key, start, stop, None, newest_first, None, false)
            .await?;
        let total: u64 = self.pool().zcard(key).await?;
        Ok((ids, total))
    }

    /// Reads a stored hash and decodes it; an empty reply means the key does not exist.
    pub(crate) async fn read_hash<T>(
        &self,
        key: String,
        decode: impl FnOnce(&HashMap<String, String>) -> Result<T>,
    ) -> Result<Option<T>> {
        let h: HashMap<String, String> = self.pool().hgetall(key).await?;
        if h.is_empty() {
            return Ok(None);
        }
        decode(&h).map(Some)
    }
}
