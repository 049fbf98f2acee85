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

pub mod addons;
pub mod attempts;
pub mod callbacks;
pub mod cleanup;
pub mod delivery_queries;
pub mod import;
pub mod quotas;
pub mod retries;
mod scripts;
mod streams;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::Value;

use crate::delivery::{AttemptLogEntry, DeliveryRecord, DeliveryStatus};
use crate::error::{Error, Result};
use crate::event::StreamEvent;
use crate::ids::{DeliveryId, SubscriptionId};
use crate::keys::{EVENTS_GROUP, Keyspace, QUEUE_GROUP};
use crate::queue::{MESSAGE_FIELD, QueueMessage};
use crate::subscription::{Subscription, SubscriptionStatus};
use crate::time::Micros;

pub use attempts::{
    AttemptOutcome, BeginAttempt, BeginItem, CircuitPolicy, CircuitSignal, CircuitState,
    CircuitUpdate, FinishItem, FinishResult, Leased,
};
pub use streams::{StreamEntry, StreamReader};

/// How to reach Redis and how long records live.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// `redis://[:password@]host:port[/db]` or `rediss://…` for TLS.
    pub url: String,
    /// Multiplexed connections shared by all non-blocking commands.
    pub pool_size: usize,
    /// Prepended to every key Hookline owns (not to the input stream).
    pub key_prefix: String,
    /// Name of the input stream.
    pub events_stream: String,
    /// TTL of `pending`/`in_progress` records.
    pub active_ttl: Duration,
    /// TTL of `delivered`/`failed` records.
    pub terminal_ttl: Duration,
    /// Upper bound on any single command (blocking reads add their block time).
    pub command_timeout: Duration,
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
            events_stream: "tmi:events".into(),
            active_ttl: Duration::from_secs(4 * 3600),
            terminal_ttl: Duration::from_secs(7 * 24 * 3600),
            command_timeout: Duration::from_secs(5),
        }
    }
}

/// Handle to the Redis contract. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    builder: Builder,
    keys: Keyspace,
    active_ttl_secs: i64,
    terminal_ttl_secs: i64,
}

/// Result of a failed challenge ([`Store::challenge_failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeFailure {
    /// Another challenge is scheduled.
    Retry,
    /// That was the last one: the subscription is now `pending_delete`.
    Exhausted,
    /// The subscription is no longer pending verification (deleted, or verified meanwhile).
    Gone,
}

/// One input entry to fan out ([`Store::fanout_batch`]).
#[derive(Debug, Clone, Copy)]
pub struct FanoutEntry<'a> {
    pub entry_id: &'a str,
    pub event_type: &'a str,
    /// The body every delivery of this entry sends (empty when `subscriptions` is).
    pub envelope: &'a str,
    /// The subscriptions it matched; none still acknowledges the entry.
    pub subscriptions: &'a [SubscriptionId],
}

/// A page of results and the total number of matches.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// Longest wait for `QUIT` when a service closes its connections.
pub(crate) const QUIT_WAIT: Duration = Duration::from_secs(1);

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1)
}

/// Appends a subscription's stored fields as field/value pairs (the tail of every subscription-writing script).
pub(crate) fn push_fields(args: &mut Vec<String>, sub: &Subscription) {
    for (f, v) in sub.to_fields() {
        args.push(f.to_owned());
        args.push(v);
    }
}

/// Appends a delivery record as the record-writing scripts take it: creation score, id, field count, then
/// field/value pairs.
pub(crate) fn push_record(args: &mut Vec<String>, record: &DeliveryRecord) {
    let fields = record.to_fields();
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

fn created_score(created_at: Micros) -> String {
    (created_at / 1000).to_string()
}

impl Store {
    /// Connects the pool (failing fast if Redis cannot be reached or authenticated at start) and keeps the
    /// configuration to open dedicated connections for blocking reads later. Once connected, lost connections
    /// are re-established with capped exponential backoff.
    ///
    /// # Errors
    /// Bad URL, or Redis unreachable within the command timeout.
    pub async fn connect(opts: &StoreOptions) -> Result<Self> {
        let config = Config::from_url(&opts.url)?;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = opts.command_timeout;
                c.internal_command_timeout = opts.command_timeout;
                c.max_command_attempts = 3;
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
        match tokio::time::timeout(opts.command_timeout, connect).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Error::Redis(fred::error::Error::new(
                    fred::error::ErrorKind::Timeout,
                    format!(
                        "could not connect to Redis within {:?}",
                        opts.command_timeout
                    ),
                )));
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                builder,
                keys: Keyspace::new(opts.key_prefix.clone(), opts.events_stream.clone()),
                active_ttl_secs: secs(opts.active_ttl),
                terminal_ttl_secs: secs(opts.terminal_ttl),
            }),
        })
    }

    /// The key builder this store uses.
    pub fn keys(&self) -> &Keyspace {
        &self.inner.keys
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

    // ---- subscriptions -----------------------------------------------------------------------------------

    /// The keys and leading arguments of every script that writes a new subscription (create, quota-checked
    /// create, import): the hash, its indexes, the queue, `extra_keys`, then the threat-model index if any;
    /// and id, score, queue message field, has-threat-model flag, and the challenge message (empty unless the
    /// subscription awaits verification).
    pub(crate) fn subscription_write(
        &self,
        sub: &Subscription,
        extra_keys: Vec<String>,
    ) -> (Vec<String>, Vec<String>) {
        let k = self.keys();
        let challenge = if sub.status == SubscriptionStatus::PendingVerification {
            QueueMessage::ChallengeV1 {
                subscription_id: sub.id,
            }
            .encode()
        } else {
            String::new()
        };
        let mut keys = vec![
            k.subscription(sub.id),
            k.subscriptions_all(),
            k.subscriptions_by_owner(&sub.owner_id),
            k.subscriptions_by_status(sub.status),
            k.queue_stream(),
        ];
        keys.extend(extra_keys);
        if let Some(tm) = &sub.threat_model_id {
            keys.push(k.subscriptions_by_threat_model(tm));
        }
        let args = vec![
            sub.id.to_string(),
            created_score(sub.created_at),
            MESSAGE_FIELD.to_owned(),
            if sub.threat_model_id.is_some() {
                "1"
            } else {
                "0"
            }
            .to_owned(),
            challenge,
        ];
        (keys, args)
    }

    /// Stores a new subscription with its indexes; if it awaits verification, enqueues its first challenge
    /// in the same step so the worker sends it within moments.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn create_subscription(&self, sub: &Subscription) -> Result<bool> {
        let (keys, mut args) = self.subscription_write(sub, Vec::new());
        push_fields(&mut args, sub);
        let created: i64 = scripts::CREATE_SUBSCRIPTION
            .run(self.pool(), keys, args)
            .await?;
        if created == 1 && sub.status == SubscriptionStatus::Active {
            // Imported or pinned subscriptions start active: put them in the match indexes.
            self.set_subscription_status(
                sub.id,
                SubscriptionStatus::Active,
                SubscriptionStatus::Active,
                sub.modified_at,
                false,
            )
            .await?;
        }
        Ok(created == 1)
    }

    /// Reads one subscription.
    ///
    /// # Errors
    /// Redis failure or a corrupt record.
    pub async fn get_subscription(&self, id: SubscriptionId) -> Result<Option<Subscription>> {
        self.read_hash(self.keys().subscription(id), Subscription::from_hash)
            .await
    }

    async fn get_subscriptions(&self, ids: &[String]) -> Result<Vec<Subscription>> {
        let ids = ids
            .iter()
            .filter_map(|id| id.parse::<SubscriptionId>().ok());
        read_each(ids, |id| self.get_subscription(id)).await
    }

    /// Lists subscriptions newest first, optionally only those filtered to threat model `tm`.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn list_subscriptions(
        &self,
        tm: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Subscription>> {
        let key = match tm {
            Some(tm) => self.keys().subscriptions_by_threat_model(tm),
            None => self.keys().subscriptions_all(),
        };
        let (ids, total) = self.zpage(&key, offset, limit, true).await?;
        Ok(Page {
            items: self.get_subscriptions(&ids).await?,
            total,
        })
    }

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

    /// How many subscriptions `owner` has, in any status (TMI's `max_subscriptions` quota).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn count_subscriptions_by_owner(&self, owner: &str) -> Result<u64> {
        Ok(self
            .pool()
            .scard(self.keys().subscriptions_by_owner(owner))
            .await?)
    }

    /// Ids of the subscriptions in `status` (small sets walked by cleanup).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn subscription_ids_by_status(
        &self,
        status: SubscriptionStatus,
    ) -> Result<Vec<SubscriptionId>> {
        let ids: Vec<String> = self
            .pool()
            .smembers(self.keys().subscriptions_by_status(status))
            .await?;
        Ok(ids.iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Deletes a subscription and its index entries, and its add-ons with theirs (TMI's cascade), in one step.
    /// Its deliveries expire by TTL.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn delete_subscription(&self, id: SubscriptionId) -> Result<bool> {
        let k = self.keys();
        let deleted: i64 = scripts::DELETE_SUBSCRIPTION
            .run(
                self.pool(),
                vec![
                    k.subscription(id),
                    k.subscriptions_all(),
                    k.addons_by_subscription(id),
                    k.addons_all(),
                    k.addons_unscoped(),
                ],
                vec![
                    id.to_string(),
                    k.subscriptions_by_owner_prefix(),
                    k.subscriptions_by_status_prefix(),
                    k.subscriptions_by_threat_model_prefix(),
                    k.subscriptions_by_event_prefix(),
                    k.addon_prefix(),
                    k.addons_by_threat_model_prefix(),
                ],
            )
            .await?;
        Ok(deleted == 1)
    }

    /// Compare-and-set of a subscription's status; keeps every index true. Returns whether it changed.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn set_subscription_status(
        &self,
        id: SubscriptionId,
        expected: SubscriptionStatus,
        new: SubscriptionStatus,
        now: Micros,
        count_challenge: bool,
    ) -> Result<bool> {
        let k = self.keys();
        let changed: i64 = scripts::SET_SUBSCRIPTION_STATUS
            .run(
                self.pool(),
                vec![k.subscription(id)],
                vec![
                    expected.as_str().to_owned(),
                    new.as_str().to_owned(),
                    now.to_string(),
                    k.subscriptions_by_status_prefix(),
                    k.subscriptions_by_event_prefix(),
                    id.to_string(),
                    if count_challenge { "1" } else { "0" }.to_owned(),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    /// Records a failed challenge: schedules the next one at `retry_at_ms`, or moves the subscription to
    /// `pending_delete` once `max_challenges` have been sent.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn challenge_failed(
        &self,
        id: SubscriptionId,
        max_challenges: u32,
        retry_at_ms: i64,
        now: Micros,
    ) -> Result<ChallengeFailure> {
        let k = self.keys();
        let r: String = scripts::CHALLENGE_FAILED
            .run(
                self.pool(),
                vec![k.subscription(id), k.scheduled()],
                vec![
                    max_challenges.to_string(),
                    retry_at_ms.to_string(),
                    QueueMessage::ChallengeV1 {
                        subscription_id: id,
                    }
                    .encode(),
                    now.to_string(),
                    k.subscriptions_by_status_prefix(),
                    id.to_string(),
                ],
            )
            .await?;
        match r.as_str() {
            "retry" => Ok(ChallengeFailure::Retry),
            "exhausted" => Ok(ChallengeFailure::Exhausted),
            "gone" => Ok(ChallengeFailure::Gone),
            other => Err(Error::Script(other.to_owned())),
        }
    }

    /// The active subscriptions that list `event_type` or `*` — the only candidates an event can match.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn match_candidates(&self, event_type: &str) -> Result<Vec<Subscription>> {
        let k = self.keys();
        let ids: Vec<String> = self
            .pool()
            .sunion(vec![
                k.subscriptions_by_event(event_type),
                k.subscriptions_by_event(crate::event::WILDCARD),
            ])
            .await?;
        self.get_subscriptions(&ids).await
    }

    // ---- deliveries --------------------------------------------------------------------------------------

    /// Creates the deliveries of input entry `entry_id` for `subscriptions`, enqueues them, and acknowledges
    /// the entry — all in one step. See [`fanout_batch`](Self::fanout_batch).
    ///
    /// # Errors
    /// Redis failure (nothing was written).
    pub async fn fanout(
        &self,
        entry_id: &str,
        event_type: &str,
        envelope: &str,
        subscriptions: &[SubscriptionId],
        now: Micros,
    ) -> Result<u64> {
        let entry = FanoutEntry {
            entry_id,
            event_type,
            envelope,
            subscriptions,
        };
        self.fanout_batch(std::slice::from_ref(&entry), now).await
    }

    /// Creates the deliveries of several input entries, enqueues them, and acknowledges the entries — all in
    /// one step. Ids are deterministic, so running it again for the same entries creates nothing new. A
    /// subscription that stopped being active meanwhile is skipped. Returns how many were created. Callers
    /// keep chunks modest (tens of entries): the script runs without interruption.
    ///
    /// # Errors
    /// Redis failure (nothing was written).
    pub async fn fanout_batch(&self, entries: &[FanoutEntry<'_>], now: Micros) -> Result<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let k = self.keys();
        let mut args = vec![
            EVENTS_GROUP.to_owned(),
            now.to_string(),
            created_score(now),
            self.inner.active_ttl_secs.to_string(),
            k.delivery_prefix(),
            k.subscription_prefix(),
            k.deliveries_by_subscription_prefix(),
            k.deliveries_by_event_prefix(),
            MESSAGE_FIELD.to_owned(),
        ];
        for e in entries {
            args.push(e.entry_id.to_owned());
            args.push(e.event_type.to_owned());
            args.push(e.envelope.to_owned());
            args.push(e.subscriptions.len().to_string());
            for sub in e.subscriptions {
                let id = DeliveryId::for_fanout(e.entry_id, *sub);
                args.push(sub.to_string());
                args.push(id.to_string());
                args.push(QueueMessage::DeliveryV1 { delivery_id: id }.encode());
            }
        }
        let keys = vec![
            k.events_stream().to_owned(),
            k.queue_stream(),
            k.deliveries_all(),
            k.deliveries_by_status(DeliveryStatus::Pending),
        ];
        scripts::FANOUT.run(self.pool(), keys, args).await
    }

    fn record_index_keys(&self, r: &DeliveryRecord) -> Vec<String> {
        let k = self.keys();
        let mut keys = vec![
            k.deliveries_all(),
            k.deliveries_by_subscription(r.subscription_id),
            k.deliveries_by_status(r.status),
            k.deliveries_by_event(&r.event_type),
        ];
        if let Some(a) = r.addon_id {
            keys.push(k.deliveries_by_addon(a));
        }
        keys
    }

    /// Creates a `pending` delivery record (test deliveries) and enqueues it for the worker, atomically.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn create_and_enqueue_delivery(&self, record: &DeliveryRecord) -> Result<bool> {
        let k = self.keys();
        let msg = QueueMessage::DeliveryV1 {
            delivery_id: record.id,
        }
        .encode();
        self.create_delivery_then_append(
            record,
            k.queue_stream(),
            vec![(MESSAGE_FIELD.to_owned(), msg)],
        )
        .await
    }

    /// Creates a `pending` record and emits `event` on the input stream in the same step (addon
    /// invocations: the event-consumer routes the pre-created record to the worker).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn create_delivery_and_emit(
        &self,
        record: &DeliveryRecord,
        event: &StreamEvent,
    ) -> Result<bool> {
        let fields = event
            .to_fields()
            .into_iter()
            .map(|(f, v)| (f.to_owned(), v))
            .collect();
        self.create_delivery_then_append(record, self.keys().events_stream().to_owned(), fields)
            .await
    }

    async fn create_delivery_then_append(
        &self,
        record: &DeliveryRecord,
        stream: String,
        entry: Vec<(String, String)>,
    ) -> Result<bool> {
        let mut keys = vec![self.keys().delivery(record.id), stream];
        keys.extend(self.record_index_keys(record));
        let ttl = if record.status.is_terminal() {
            self.inner.terminal_ttl_secs
        } else {
            self.inner.active_ttl_secs
        };
        let mut args = vec![ttl.to_string()];
        push_record(&mut args, record);
        for (f, v) in entry {
            args.push(f);
            args.push(v);
        }
        let created: i64 = scripts::CREATE_DELIVERY
            .run(self.pool(), keys, args)
            .await?;
        Ok(created == 1)
    }

    /// Routes the pre-created delivery `id` named by input entry `entry_id` (an `addon.invoked` event) to the
    /// worker and acknowledges the entry, in one step. Returns whether it was enqueued (false: the record is
    /// gone or no longer pending).
    ///
    /// # Errors
    /// Redis failure (nothing was written).
    pub async fn route_existing(&self, entry_id: &str, id: DeliveryId) -> Result<bool> {
        let k = self.keys();
        let routed: i64 = scripts::ROUTE_EXISTING
            .run(
                self.pool(),
                vec![
                    k.delivery(id),
                    k.queue_stream(),
                    k.events_stream().to_owned(),
                ],
                vec![
                    EVENTS_GROUP.to_owned(),
                    entry_id.to_owned(),
                    MESSAGE_FIELD.to_owned(),
                    QueueMessage::DeliveryV1 { delivery_id: id }.encode(),
                ],
            )
            .await?;
        Ok(routed == 1)
    }

    /// Reads one delivery record.
    ///
    /// # Errors
    /// Redis failure or a corrupt record.
    pub async fn get_delivery(&self, id: DeliveryId) -> Result<Option<DeliveryRecord>> {
        self.read_hash(self.keys().delivery(id), DeliveryRecord::from_hash)
            .await
    }

    /// A delivery with its attempt log (oldest first), or `None` when the record does not exist.
    ///
    /// # Errors
    /// Redis failure or a corrupt record.
    pub async fn get_delivery_with_attempts(
        &self,
        id: DeliveryId,
    ) -> Result<Option<(DeliveryRecord, Vec<AttemptLogEntry>)>> {
        self.read_hash(self.keys().delivery(id), |h| {
            let log = h
                .get(crate::delivery::field::ATTEMPT_LOG)
                .map(|l| AttemptLogEntry::parse_log(l))
                .unwrap_or_default();
            Ok((DeliveryRecord::from_hash(h)?, log))
        })
        .await
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

    /// Lists deliveries oldest first (TMI's order), optionally of one subscription.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn list_deliveries(
        &self,
        subscription: Option<SubscriptionId>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<DeliveryRecord>> {
        let key = match subscription {
            Some(s) => self.keys().deliveries_by_subscription(s),
            None => self.keys().deliveries_all(),
        };
        let (ids, total) = self.zpage(&key, offset, limit, false).await?;
        let ids = ids.iter().filter_map(|id| id.parse::<DeliveryId>().ok());
        let items = read_each(ids, |id| self.get_delivery(id)).await?;
        Ok(Page { items, total })
    }

    // ---- queue and schedule ------------------------------------------------------------------------------

    /// Moves up to `limit` messages due by `now_ms` from the schedule to the queue; returns how many.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn promote_due(&self, now_ms: i64, limit: u32) -> Result<u64> {
        let k = self.keys();
        scripts::PROMOTE_DUE
            .run(
                self.pool(),
                vec![k.scheduled(), k.queue_stream()],
                vec![
                    now_ms.to_string(),
                    limit.to_string(),
                    MESSAGE_FIELD.to_owned(),
                ],
            )
            .await
    }

    /// Puts a message on the schedule, due at `due_ms`.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn schedule(&self, msg: &QueueMessage, due_ms: i64) -> Result<()> {
        let _: i64 = self
            .pool()
            .zadd(
                self.keys().scheduled(),
                None,
                None,
                false,
                false,
                (due_ms as f64, msg.encode()),
            )
            .await?;
        Ok(())
    }

    /// Acknowledges and deletes queue entries handled without an outcome write (stale or finished work).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn ack_queue(&self, entry_ids: &[String]) -> Result<()> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        let q = self.keys().queue_stream();
        let _: i64 = self
            .pool()
            .xack(&q, QUEUE_GROUP, entry_ids.to_vec())
            .await?;
        let _: i64 = self.pool().xdel(&q, entry_ids.to_vec()).await?;
        Ok(())
    }

    /// Acknowledges input entries without fan-out (malformed entries, `addon.invoked` routing).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn ack_events(&self, entry_ids: &[String]) -> Result<()> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        let _: i64 = self
            .pool()
            .xack(
                self.keys().events_stream(),
                EVENTS_GROUP,
                entry_ids.to_vec(),
            )
            .await?;
        Ok(())
    }

    /// Appends an event to the input stream exactly as TMI's emitter does; returns the entry id.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn publish_event(&self, event: &StreamEvent) -> Result<String> {
        Ok(self
            .pool()
            .xadd(
                self.keys().events_stream(),
                false,
                None,
                "*",
                event.to_fields(),
            )
            .await?)
    }

    /// Creates the input stream's consumer group if missing (`start_id` for a new group: `0` replays what
    /// the stream holds, `$` starts at its end).
    ///
    /// # Errors
    /// Redis failure other than `BUSYGROUP`.
    pub async fn ensure_events_group(&self, start_id: &str) -> Result<()> {
        self.ensure_group(self.keys().events_stream(), EVENTS_GROUP, start_id)
            .await
    }

    /// Creates the queue's consumer group if missing. The queue only ever holds live work, so a new group
    /// starts at `0`.
    ///
    /// # Errors
    /// Redis failure other than `BUSYGROUP`.
    pub async fn ensure_queue_group(&self) -> Result<()> {
        self.ensure_group(&self.keys().queue_stream(), QUEUE_GROUP, "0")
            .await
    }

    /// Creates `group` on `stream` (and the stream) if missing, starting at `start_id`.
    ///
    /// # Errors
    /// Redis failure other than `BUSYGROUP`.
    pub async fn ensure_group(&self, stream: &str, group: &str, start_id: &str) -> Result<()> {
        match self
            .pool()
            .xgroup_create::<Value, _, _, _>(stream, group, start_id, true)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.details().starts_with("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `group` exists on `stream` (readiness).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn group_exists(&self, stream: &str, group: &str) -> Result<bool> {
        let groups: Value = match self.pool().xinfo_groups(stream).await {
            Ok(v) => v,
            // "ERR no such key": the stream itself is gone.
            Err(e) if e.details().contains("no such key") => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        Ok(streams::group_names(groups).iter().any(|g| g == group))
    }

    /// Opens a dedicated connection for blocking stream reads. A blocking `XREADGROUP` would hold up every
    /// command multiplexed on a shared connection, so each read loop gets its own.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn reader(&self) -> Result<StreamReader> {
        let client = self.inner.builder.build()?;
        client.init().await?;
        Ok(StreamReader::new(client))
    }

    /// Length and pending count of the queue (metrics).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn queue_depth(&self) -> Result<(u64, u64)> {
        let q = self.keys().queue_stream();
        let len: u64 = self.pool().xlen(&q).await?;
        let pending: Value = match self.pool().xpending(&q, QUEUE_GROUP, ()).await {
            Ok(v) => v,
            Err(e) if e.details().starts_with("NOGROUP") => Value::Null,
            Err(e) => return Err(e.into()),
        };
        let pending = pending
            .into_array()
            .first()
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Ok((len, pending))
    }

    /// Number of scheduled messages (metrics).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn scheduled_len(&self) -> Result<u64> {
        Ok(self.pool().zcard(self.keys().scheduled()).await?)
    }
}
