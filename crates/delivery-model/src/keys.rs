//! Every Redis key, stream and consumer group Hookline uses. Nothing outside this module spells one.
//!
//! [`Keyspace`] takes a prefix at construction: empty by default, so that the keys TMI's tooling knows
//! (`webhook:delivery:{id}`, `webhook:ratelimit:*`, …) keep their names, and a random one in tests that
//! share a server. The input stream keeps its configured name (`tmi:events`): producers own it.
//!
//! The layout ([`Layout`], see [`layout`]) decides where keys live. Standalone and Sentinel keep today's
//! names byte for byte. In a Redis Cluster every key a Lua script touches must be in one slot, so keys carry
//! a hash tag after the prefix: [`CONTROL_TAG`] for subscriptions, add-ons, quotas and cleanup's bookkeeping
//! (control keys), a shard's tag for that shard's queue, schedule, delivery records and delivery indexes
//! (shard keys, built from a [`Shard`]), and none for keys only ever touched one at a time (circuits,
//! idempotency records, TMI's revocations, the URL deny list) so that they spread over the slots.
//!
//! `docs/architecture.md` has the same list as a table with each key's type, writer, readers, TTL and
//! cluster tag; `docs/cluster.md` explains the layout. Keep the three in step.

mod addons;
mod fair;
mod lanes;
pub mod layout;

use std::sync::Arc;

use crate::delivery::DeliveryStatus;
use crate::error::{Error, Result};
use crate::ids::{AddonId, DeliveryId, SubscriptionId};
use crate::subscription::SubscriptionStatus;

pub use layout::{
    CONTROL_TAG, DEFAULT_CLUSTER_SHARDS, Layout, MAX_CLUSTER_SHARDS, Shard, key_slot,
};

/// Consumer group of the event-consumer on the input stream (TMI's name).
pub const EVENTS_GROUP: &str = "webhook-consumers";
/// Consumer group of the delivery-worker on the queue stream.
pub const QUEUE_GROUP: &str = "delivery-workers";
/// Default name of the input stream.
pub const DEFAULT_EVENTS_STREAM: &str = "tmi:events";

/// Key builder bound to one prefix and one layout.
#[derive(Clone, Debug)]
pub struct Keyspace {
    prefix: String,
    events_stream: String,
    layout: Layout,
    /// Each shard's tag with its braces, indexed by [`Shard::index`]; one empty tag in standalone mode.
    shard_tags: Arc<[String]>,
    /// [`CONTROL_TAG`] in cluster mode, empty in standalone mode.
    control_tag: &'static str,
}

impl Keyspace {
    /// The standalone layout: today's key names.
    pub fn new(prefix: impl Into<String>, events_stream: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            events_stream: events_stream.into(),
            layout: Layout::Standalone,
            shard_tags: Arc::from(vec![String::new()]),
            control_tag: "",
        }
    }

    /// A key builder for `layout`.
    ///
    /// # Errors
    /// [`Error::Config`] in cluster mode for a shard count outside `1..=`[`MAX_CLUSTER_SHARDS`], or a prefix
    /// holding `{` or `}` (it would become the hash tag of every key).
    pub fn with_layout(
        prefix: impl Into<String>,
        events_stream: impl Into<String>,
        layout: Layout,
    ) -> Result<Self> {
        let mut keys = Self::new(prefix, events_stream);
        let Layout::Cluster { shards } = layout else {
            return Ok(keys);
        };
        if !(1..=MAX_CLUSTER_SHARDS).contains(&shards) {
            return Err(Error::Config(format!(
                "redis.cluster_shards must be between 1 and {MAX_CLUSTER_SHARDS}, not {shards}"
            )));
        }
        if keys.prefix.contains(['{', '}']) {
            return Err(Error::Config(
                "redis.key_prefix must not contain '{' or '}' in cluster mode: it would become the hash \
                 tag of every key"
                    .into(),
            ));
        }
        keys.layout = layout;
        keys.control_tag = CONTROL_TAG;
        keys.shard_tags = (0..shards)
            .map(|i| format!("{{{}}}", layout::shard_tag(i, shards)))
            .collect();
        Ok(keys)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where the keys live.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Every queue shard, in index order: one ([`Shard::ZERO`]) in standalone mode.
    pub fn shards(&self) -> impl ExactSizeIterator<Item = Shard> + use<> {
        let n = u16::try_from(self.shard_tags.len()).unwrap_or(1);
        (0..n).map(Shard::new)
    }

    /// The shard owning delivery `id` ([`layout::shard_of`]); [`Shard::ZERO`] in standalone mode.
    pub fn shard_of(&self, id: DeliveryId) -> Shard {
        match self.layout {
            Layout::Standalone => Shard::ZERO,
            Layout::Cluster { shards } => layout::shard_of(id, shards),
        }
    }

    /// The shard whose tag key `key` carries ([`Shard::ZERO`] in standalone mode); `None` for a key of no
    /// shard (control or untagged keys on a cluster). Cleanup learns an index's shard from its name.
    pub fn shard_of_key(&self, key: &str) -> Option<Shard> {
        let rest = key.strip_prefix(self.prefix.as_str())?;
        match self.layout {
            Layout::Standalone => Some(Shard::ZERO),
            Layout::Cluster { .. } => self.shards().find(|s| {
                self.shard_tags
                    .get(usize::from(s.index()))
                    .is_some_and(|t| rest.starts_with(t.as_str()))
            }),
        }
    }

    /// An untagged key: touched only by single-key commands and single-key scripts.
    fn k(&self, rest: impl std::fmt::Display) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// A control key (`{hl:c}` in cluster mode).
    fn c(&self, rest: impl std::fmt::Display) -> String {
        format!("{}{}{rest}", self.prefix, self.control_tag)
    }

    /// A key of `shard` (its tag in cluster mode). A shard of another layout wraps around rather than
    /// panicking; shards only come from this keyspace or are [`Shard::ZERO`].
    fn s(&self, shard: Shard, rest: impl std::fmt::Display) -> String {
        let i = usize::from(shard.index()) % self.shard_tags.len().max(1);
        let tag = self.shard_tags.get(i).map_or("", String::as_str);
        format!("{}{tag}{rest}", self.prefix)
    }

    // ---- streams -----------------------------------------------------------------------------------------

    /// STREAM: resource-change events from producers (and Hookline's `addon.invoked`). Group [`EVENTS_GROUP`].
    pub fn events_stream(&self) -> &str {
        &self.events_stream
    }

    /// STREAM: one shard's work for the delivery-worker ([`crate::queue::QueueMessage`]). Group
    /// [`QUEUE_GROUP`]. In standalone mode the one queue, shared with the challenges.
    pub fn queue_stream(&self, shard: Shard) -> String {
        self.s(shard, "hookline:queue")
    }

    /// ZSET: one shard's queue messages due later (retries, circuit-open reschedules); score = due time in
    /// Unix milliseconds. In standalone mode the one schedule, shared with the challenge retries.
    pub fn scheduled(&self, shard: Shard) -> String {
        self.s(shard, "hookline:scheduled")
    }

    /// STREAM: verification challenges, written in the same script as their subscription (control). The
    /// same key as [`queue_stream`](Self::queue_stream) in standalone mode.
    pub fn challenge_queue(&self) -> String {
        self.c("hookline:queue")
    }

    /// ZSET: challenge retries (control). The same key as [`scheduled`](Self::scheduled) in standalone mode.
    pub fn challenge_scheduled(&self) -> String {
        self.c("hookline:scheduled")
    }

    /// Every queue stream a worker reads, each once: the shards' and the challenge queue (one key in
    /// standalone mode).
    pub fn worker_streams(&self) -> Vec<String> {
        let mut streams: Vec<String> = self.shards().map(|s| self.queue_stream(s)).collect();
        let challenges = self.challenge_queue();
        if !streams.contains(&challenges) {
            streams.push(challenges);
        }
        streams
    }

    /// Every (schedule, queue) pair the scheduler promotes from and to, each once: each shard's, and the
    /// challenge retries' (one pair in standalone mode).
    pub fn schedules(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = self
            .shards()
            .map(|s| (self.scheduled(s), self.queue_stream(s)))
            .collect();
        let challenges = (self.challenge_scheduled(), self.challenge_queue());
        if !pairs.contains(&challenges) {
            pairs.push(challenges);
        }
        pairs
    }

    /// STRING (cluster mode only): the shard count the stored data was laid out with, set at the first
    /// start and compared at every later one, so a changed `redis.cluster_shards` (which would re-home every
    /// record) stops the service instead of losing track of its deliveries.
    pub fn layout_marker(&self) -> String {
        self.c("hookline:layout:shards")
    }

    // ---- subscriptions -----------------------------------------------------------------------------------

    /// HASH: one subscription.
    pub fn subscription(&self, id: SubscriptionId) -> String {
        self.c(format_args!("webhook:subscription:{id}"))
    }

    /// The prefix of [`subscription`](Self::subscription) keys (Lua scripts append the id).
    pub fn subscription_prefix(&self) -> String {
        self.c("webhook:subscription:")
    }

    /// ZSET: every subscription id; score = created_at in milliseconds.
    pub fn subscriptions_all(&self) -> String {
        self.c("webhook:subscriptions")
    }

    /// ZSET: subscriptions filtered to one threat model; score = created_at ms.
    pub fn subscriptions_by_threat_model(&self, tm: &str) -> String {
        format!("{}{tm}", self.subscriptions_by_threat_model_prefix())
    }

    pub fn subscriptions_by_threat_model_prefix(&self) -> String {
        self.c("webhook:subscriptions:tm:")
    }

    /// SET: subscriptions of one owner (any status), for the per-owner quota.
    pub fn subscriptions_by_owner(&self, owner: &str) -> String {
        format!("{}{owner}", self.subscriptions_by_owner_prefix())
    }

    pub fn subscriptions_by_owner_prefix(&self) -> String {
        self.c("webhook:subscriptions:owner:")
    }

    /// SET: subscriptions in one status (cleanup and lifecycle walk these, never the whole keyspace).
    pub fn subscriptions_by_status(&self, status: SubscriptionStatus) -> String {
        format!("{}{status}", self.subscriptions_by_status_prefix())
    }

    pub fn subscriptions_by_status_prefix(&self) -> String {
        self.c("webhook:subscriptions:status:")
    }

    /// SET: **active** subscriptions listing `event_type` (`*` for the wildcard). Matching an event reads two
    /// of these sets, never all subscriptions.
    pub fn subscriptions_by_event(&self, event_type: &str) -> String {
        format!("{}{event_type}", self.subscriptions_by_event_prefix())
    }

    pub fn subscriptions_by_event_prefix(&self) -> String {
        self.c("webhook:subscriptions:event:")
    }

    /// Counter bumped by every script that changes the per-event match sets (a subscription entering or
    /// leaving `active`, or deleted while active): the event-consumer keeps the candidates it read until
    /// this changes (issue #21).
    pub fn match_generation(&self) -> String {
        self.c("webhook:subscriptions:match_generation")
    }

    // ---- deliveries --------------------------------------------------------------------------------------

    /// HASH: one delivery record (TMI's key name). TTL 4 h while active, 7 days once terminal.
    pub fn delivery(&self, id: DeliveryId) -> String {
        format!("{}{id}", self.delivery_prefix(self.shard_of(id)))
    }

    pub fn delivery_prefix(&self, shard: Shard) -> String {
        self.s(shard, "webhook:delivery:")
    }

    /// ZSET: every delivery id; score = created_at ms. Members of expired records are pruned by cleanup.
    pub fn deliveries_all(&self, shard: Shard) -> String {
        self.s(shard, "webhook:deliveries")
    }

    /// ZSET: deliveries of one subscription; score = created_at ms.
    pub fn deliveries_by_subscription(&self, shard: Shard, id: SubscriptionId) -> String {
        format!("{}{id}", self.deliveries_by_subscription_prefix(shard))
    }

    pub fn deliveries_by_subscription_prefix(&self, shard: Shard) -> String {
        self.s(shard, "webhook:deliveries:subscription:")
    }

    /// ZSET: deliveries in one status; score = created_at ms. Scripts move members on every status change.
    pub fn deliveries_by_status(&self, shard: Shard, status: DeliveryStatus) -> String {
        format!("{}{status}", self.deliveries_by_status_prefix(shard))
    }

    pub fn deliveries_by_status_prefix(&self, shard: Shard) -> String {
        self.s(shard, "webhook:deliveries:status:")
    }

    /// ZSET: deliveries of one event type; score = created_at ms.
    pub fn deliveries_by_event(&self, shard: Shard, event_type: &str) -> String {
        format!("{}{event_type}", self.deliveries_by_event_prefix(shard))
    }

    pub fn deliveries_by_event_prefix(&self, shard: Shard) -> String {
        self.s(shard, "webhook:deliveries:event:")
    }

    /// ZSET: deliveries of one addon; score = created_at ms.
    pub fn deliveries_by_addon(&self, shard: Shard, id: AddonId) -> String {
        format!("{}{id}", self.deliveries_by_addon_prefix(shard))
    }

    /// HASH: circuit breaker of one destination host (lower-cased), shared by every worker replica: consecutive
    /// `failures`, `opens` (windows used so far), `open_until` and `probe_until` (ms). Expires when idle.
    pub fn circuit(&self, host: &str) -> String {
        self.k(format_args!(
            "hookline:circuit:{}",
            host.to_ascii_lowercase()
        ))
    }

    /// STREAM (cluster mode only): one shard's subscription counter effects, written by the outcome script
    /// beside the outcome (fields `sub`, `kind` = success|failure|stale|callback_delivered, `t` in µs), since
    /// the subscription hashes live in the control slot. Folded into them by the workers
    /// ([`crate::store::Store::fold_outcomes`]) and trimmed below the folded watermark.
    pub fn sub_outcomes(&self, shard: Shard) -> String {
        self.s(shard, "hookline:sub_outcomes")
    }

    /// HASH (cluster mode only): per shard index, the id of the last `sub_outcomes` entry folded into the
    /// subscriptions; compared and set by the fold, so no effect applies twice or is skipped.
    pub fn fold_watermarks(&self) -> String {
        self.c("hookline:fold:watermarks")
    }

    /// ZSET: a short-lived intersection of delivery indexes for one filtered admin list (random `token`);
    /// deleted by the script that made it, and given a few seconds' TTL in case that script fails midway.
    pub fn delivery_query_tmp(&self, shard: Shard, token: &str) -> String {
        self.s(shard, format_args!("hookline:tmp:deliveries:{token}"))
    }

    // ---- per-subscription limits (issue #18) ---------------------------------------------------------------

    /// A limiter key of subscription `sub`. In cluster mode each subscription's limiter keys carry a tag of
    /// their own (`{hl:l.<sub>}`): the limiter script touches only them, and its load spreads over the
    /// slots instead of landing on the control slot once per delivery.
    fn l(&self, sub: SubscriptionId, rest: &str) -> String {
        match self.layout {
            Layout::Standalone => format!("{}hookline:limit:{rest}:{sub}", self.prefix),
            Layout::Cluster { .. } => {
                format!("{}{{hl:l.{sub}}}hookline:limit:{rest}:{sub}", self.prefix)
            }
        }
    }

    /// STRING: the GCRA theoretical arrival time (µs) of a rate-limited subscription. Expires when idle.
    pub fn limit_rate(&self, sub: SubscriptionId) -> String {
        self.l(sub, "rate")
    }

    /// ZSET: delivery ids holding one of the subscription's in-flight slots; score = the attempt's lease
    /// expiry (µs), after which a slot a dead worker held counts as free.
    pub fn limit_in_flight(&self, sub: SubscriptionId) -> String {
        self.l(sub, "in_flight")
    }

    /// ZSET: delivery ids deferred for want of an in-flight slot, score = when (µs); a released slot wakes
    /// the oldest.
    pub fn limit_waiting(&self, sub: SubscriptionId) -> String {
        self.l(sub, "waiting")
    }

    /// ZSET: delivery ids deferred by the rate limit to a send time already counted (reserved), score =
    /// that time (µs): when they come back they pass without being counted again.
    pub fn limit_reserved(&self, sub: SubscriptionId) -> String {
        self.l(sub, "reserved")
    }

    /// ZSET: `in_progress` deliveries; score = last_activity_at in **microseconds**. Cleanup fails the stale ones.
    pub fn deliveries_activity(&self, shard: Shard) -> String {
        self.s(shard, "webhook:deliveries:activity")
    }

    /// The prefix of [`deliveries_by_addon`](Self::deliveries_by_addon) keys (cleanup recognises them by it).
    pub fn deliveries_by_addon_prefix(&self, shard: Shard) -> String {
        self.s(shard, "webhook:deliveries:addon:")
    }

    // ---- cleanup -----------------------------------------------------------------------------------------

    /// STRING: the cleanup lease. Holds the random token of the replica running a cycle, set with `NX PX`
    /// (`[cleanup] lease_ttl_ms`), renewed after every chunk and deleted by its holder (compare-and-delete) when
    /// the cycle ends; a crashed holder's lease simply expires.
    pub fn cleanup_lease(&self) -> String {
        self.c("hookline:cleanup:lease")
    }

    /// HASH: where cleanup's walks stand between cycles (set-scan cursors, the index being pruned and the
    /// position in it, when the next index pass may start). Written only by the lease holder; a few fields,
    /// no TTL. Losing it only restarts the walks.
    pub fn cleanup_state(&self) -> String {
        self.c("hookline:cleanup:state")
    }

    /// SET: full key names of the per-subscription, per-event-type and per-addon delivery indexes that cleanup
    /// prunes. Cleanup adds keys found by its bounded `SCAN` and removes a key once Redis has deleted it (an
    /// emptied ZSET).
    pub fn delivery_index_registry(&self, shard: Shard) -> String {
        self.s(shard, "hookline:cleanup:delivery_indexes")
    }

    // ---- redrive jobs (issue #18) --------------------------------------------------------------------------

    /// HASH: the subscription's redrive job ([`crate::redrive::field`]: filters, pace, counters and the
    /// cursor of its walk over the failed index). One per subscription; no TTL while it runs, then
    /// [`FINISHED_RETENTION_SECS`](crate::redrive::FINISHED_RETENTION_SECS).
    pub fn redrive_job(&self, subscription: SubscriptionId) -> String {
        self.c(format_args!("hookline:redrive:job:{subscription}"))
    }

    /// SET: subscription ids whose redrive job is running (the runner's work list).
    pub fn redrive_active(&self) -> String {
        self.c("hookline:redrive:active")
    }

    /// STRING: the redrive runner's lease (token of the cleanup replica that advances the jobs), `NX PX`,
    /// renewed every tick, deleted by its holder when it stops.
    pub fn redrive_lease(&self) -> String {
        self.c("hookline:redrive:lease")
    }
}

// ---- idempotency keys (issue #14) ---------------------------------------------------------------------

impl Keyspace {
    /// HASH: the first answer to one caller's `Idempotency-Key` on one route (`fp` request fingerprint,
    /// `state` `pending`/`done`, `status`, `body`, `replays`). `route` is a fixed word (`events`, `invoke`);
    /// the caller and the client's key are hashed together (SHA-1), so neither can shape the key name.
    /// TTL: a short lease while the first request runs, then `api.idempotency_window_secs`.
    pub fn idempotency(&self, route: &str, caller: &str, key: &str) -> String {
        let digest = fred::util::sha1_hash(&format!("{caller}\n{key}"));
        format!("{}{route}:{digest}", self.idempotency_prefix())
    }

    /// The prefix of [`idempotency`](Self::idempotency) keys (a copy finds them by it on one node).
    pub fn idempotency_prefix(&self) -> String {
        self.k("hookline:idempotency:")
    }

    /// STRING: a receiver's timestamped signature (callback or HMAC read) already accepted for subscription
    /// `sub` (issue #17 replay protection): present while the signature's timestamp is inside the tolerance
    /// window, so a captured request cannot be replayed in it. The signature is hashed (SHA-1), so a caller
    /// cannot shape the key name. Set with `NX EX` (twice the tolerance: the window is ±).
    pub fn replay_signature(&self, sub: SubscriptionId, signature: &str) -> String {
        let digest = fred::util::sha1_hash(signature);
        self.k(format_args!("hookline:replay:{sub}:{digest}"))
    }
}

// ---- quotas (issue #6) ----------------------------------------------------------------------------------

impl Keyspace {
    /// HASH: one owner's webhook quota override ([`crate::quota::field`]). No TTL: deleted by
    /// `DELETE /admin/quotas/webhooks/{user_id}`.
    pub fn webhook_quota(&self, owner: &str) -> String {
        self.c(format_args!("webhook:quota:{owner}"))
    }

    /// ZSET: owners with a webhook quota override; score = the override's created_at ms.
    pub fn webhook_quotas(&self) -> String {
        self.c("webhook:quotas")
    }

    /// HASH: one invoker's add-on invocation quota override ([`crate::quota::field`]). No TTL.
    pub fn addon_quota(&self, owner: &str) -> String {
        self.c(format_args!("addon:quota:{owner}"))
    }

    /// ZSET: owners with an add-on quota override; score = the override's created_at ms.
    pub fn addon_quotas(&self) -> String {
        self.c("addon:quotas")
    }

    /// ZSET (TMI's key): one owner's successful subscription creates in the last minute; member
    /// `<unix>:<unixnano>`, score = unix seconds. Expires 120 s after the last create.
    pub fn subscription_rate_minute(&self, owner: &str) -> String {
        self.c(format_args!("webhook:ratelimit:sub:minute:{owner}"))
    }

    /// ZSET (TMI's key): as [`subscription_rate_minute`](Self::subscription_rate_minute) over the last day.
    /// Expires a day and a minute after the last create.
    pub fn subscription_rate_day(&self, owner: &str) -> String {
        self.c(format_args!("webhook:ratelimit:sub:day:{owner}"))
    }

    // ---- token revocation (issue #16) --------------------------------------------------------------------

    /// STRING (TMI's key, written by TMI when it revokes a token, e.g. on logout): present while `raw_token`
    /// is revoked. The name carries the lowercase hex SHA-256 of the raw token string, never the token.
    /// Unprefixed, like the events stream: TMI owns it and Hookline only reads it, so a `redis.key_prefix`
    /// must not hide TMI's revocations.
    pub fn revoked_token(&self, raw_token: &str) -> String {
        use sha2::Digest as _;
        format!(
            "{REVOKED_TOKEN_PREFIX}{}",
            hex::encode(sha2::Sha256::digest(raw_token.as_bytes()))
        )
    }
}

/// The prefix of [`Keyspace::revoked_token`] keys (TMI's name).
pub const REVOKED_TOKEN_PREFIX: &str = "blacklist:token:";

// ---- import from TMI's PostgreSQL (issue #7) --------------------------------------------------------------

impl Keyspace {
    /// HASH: TMI's `webhook_url_deny_list` rows; field = row id, value = the entry as JSON (`pattern`,
    /// `pattern_type` `glob`/`regex`, `description`, `created_at` µs). Written by `hookline-migrate` (HSETNX, so
    /// a re-run changes nothing); read by the api-gateway's URL policy on top of `[subscriptions] deny_*`.
    /// No TTL.
    pub fn url_deny_list(&self) -> String {
        self.k("webhook:url_deny_list")
    }
}

// ---- delivery statistics (issue #20) ---------------------------------------------------------------------

impl Keyspace {
    /// HASH: what every delivery-worker and gateway replica recorded during one UTC minute (`minute` = Unix
    /// seconds / 60): `delivered`, `failed`, `retried`, `attempts` and the attempt-duration histogram
    /// `lat:<upper bound ms>` (see [`crate::stats`]). Untagged: only single-key commands touch it, so it
    /// spreads over a cluster's slots. Expires [`crate::stats::MINUTE_TTL_SECS`] after its last write.
    pub fn stats_minute(&self, minute: i64) -> String {
        self.k(format_args!("hookline:stats:minute:{minute}"))
    }

    /// HASH: one subscription's `delivered` and `failed` outcomes during one UTC hour (`hour` = Unix seconds /
    /// 3600), for the console's 24-hour sparkline. Untagged like [`stats_minute`](Self::stats_minute);
    /// expires [`crate::stats::HOUR_TTL_SECS`] after its last write.
    pub fn stats_subscription_hour(&self, id: SubscriptionId, hour: i64) -> String {
        self.k(format_args!("hookline:stats:sub:{id}:{hour}"))
    }
}

#[cfg(test)]
mod tests;
