//! Every Redis key, stream and consumer group Hookline uses. Nothing outside this module spells one.
//!
//! [`Keyspace`] takes a prefix at construction: empty by default, so that the keys TMI's tooling knows
//! (`webhook:delivery:{id}`, `webhook:ratelimit:*`, …) keep their names, and a random one in tests that
//! share a server. The input stream keeps its configured name (`tmi:events`): producers own it.
//!
//! `docs/architecture.md` has the same list as a table with each key's type, writer, readers and TTL; keep
//! the two in step.

use crate::delivery::DeliveryStatus;
use crate::ids::{AddonId, DeliveryId, SubscriptionId};
use crate::subscription::SubscriptionStatus;

/// Consumer group of the event-consumer on the input stream (TMI's name).
pub const EVENTS_GROUP: &str = "webhook-consumers";
/// Consumer group of the delivery-worker on the queue stream.
pub const QUEUE_GROUP: &str = "delivery-workers";
/// Default name of the input stream.
pub const DEFAULT_EVENTS_STREAM: &str = "tmi:events";

/// Key builder bound to one prefix.
#[derive(Clone, Debug)]
pub struct Keyspace {
    prefix: String,
    events_stream: String,
}

impl Keyspace {
    pub fn new(prefix: impl Into<String>, events_stream: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            events_stream: events_stream.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn k(&self, rest: impl std::fmt::Display) -> String {
        format!("{}{rest}", self.prefix)
    }

    // ---- streams -----------------------------------------------------------------------------------------

    /// STREAM: resource-change events from producers (and Hookline's `addon.invoked`). Group [`EVENTS_GROUP`].
    pub fn events_stream(&self) -> &str {
        &self.events_stream
    }

    /// STREAM: work for the delivery-worker ([`crate::queue::QueueMessage`]). Group [`QUEUE_GROUP`].
    pub fn queue_stream(&self) -> String {
        self.k("hookline:queue")
    }

    /// ZSET: queue messages due later (retries, challenge retries, circuit-open reschedules); score = due
    /// time in Unix milliseconds.
    pub fn scheduled(&self) -> String {
        self.k("hookline:scheduled")
    }

    // ---- subscriptions -----------------------------------------------------------------------------------

    /// HASH: one subscription.
    pub fn subscription(&self, id: SubscriptionId) -> String {
        self.k(format_args!("webhook:subscription:{id}"))
    }

    /// The prefix of [`subscription`](Self::subscription) keys (Lua scripts append the id).
    pub fn subscription_prefix(&self) -> String {
        self.k("webhook:subscription:")
    }

    /// ZSET: every subscription id; score = created_at in milliseconds.
    pub fn subscriptions_all(&self) -> String {
        self.k("webhook:subscriptions")
    }

    /// ZSET: subscriptions filtered to one threat model; score = created_at ms.
    pub fn subscriptions_by_threat_model(&self, tm: &str) -> String {
        format!("{}{tm}", self.subscriptions_by_threat_model_prefix())
    }

    pub fn subscriptions_by_threat_model_prefix(&self) -> String {
        self.k("webhook:subscriptions:tm:")
    }

    /// SET: subscriptions of one owner (any status), for the per-owner quota.
    pub fn subscriptions_by_owner(&self, owner: &str) -> String {
        format!("{}{owner}", self.subscriptions_by_owner_prefix())
    }

    pub fn subscriptions_by_owner_prefix(&self) -> String {
        self.k("webhook:subscriptions:owner:")
    }

    /// SET: subscriptions in one status (cleanup and lifecycle walk these, never the whole keyspace).
    pub fn subscriptions_by_status(&self, status: SubscriptionStatus) -> String {
        format!("{}{status}", self.subscriptions_by_status_prefix())
    }

    pub fn subscriptions_by_status_prefix(&self) -> String {
        self.k("webhook:subscriptions:status:")
    }

    /// SET: **active** subscriptions listing `event_type` (`*` for the wildcard). Matching an event reads two
    /// of these sets, never all subscriptions.
    pub fn subscriptions_by_event(&self, event_type: &str) -> String {
        format!("{}{event_type}", self.subscriptions_by_event_prefix())
    }

    pub fn subscriptions_by_event_prefix(&self) -> String {
        self.k("webhook:subscriptions:event:")
    }

    /// Counter bumped by every script that changes the per-event match sets (a subscription entering or
    /// leaving `active`, or deleted while active): the event-consumer keeps the candidates it read until
    /// this changes (issue #21).
    pub fn match_generation(&self) -> String {
        self.k("webhook:subscriptions:match_generation")
    }

    // ---- deliveries --------------------------------------------------------------------------------------

    /// HASH: one delivery record (TMI's key name). TTL 4 h while active, 7 days once terminal.
    pub fn delivery(&self, id: DeliveryId) -> String {
        format!("{}{id}", self.delivery_prefix())
    }

    pub fn delivery_prefix(&self) -> String {
        self.k("webhook:delivery:")
    }

    /// ZSET: every delivery id; score = created_at ms. Members of expired records are pruned by cleanup.
    pub fn deliveries_all(&self) -> String {
        self.k("webhook:deliveries")
    }

    /// ZSET: deliveries of one subscription; score = created_at ms.
    pub fn deliveries_by_subscription(&self, id: SubscriptionId) -> String {
        format!("{}{id}", self.deliveries_by_subscription_prefix())
    }

    pub fn deliveries_by_subscription_prefix(&self) -> String {
        self.k("webhook:deliveries:subscription:")
    }

    /// ZSET: deliveries in one status; score = created_at ms. Scripts move members on every status change.
    pub fn deliveries_by_status(&self, status: DeliveryStatus) -> String {
        format!("{}{status}", self.deliveries_by_status_prefix())
    }

    pub fn deliveries_by_status_prefix(&self) -> String {
        self.k("webhook:deliveries:status:")
    }

    /// ZSET: deliveries of one event type; score = created_at ms.
    pub fn deliveries_by_event(&self, event_type: &str) -> String {
        format!("{}{event_type}", self.deliveries_by_event_prefix())
    }

    pub fn deliveries_by_event_prefix(&self) -> String {
        self.k("webhook:deliveries:event:")
    }

    /// ZSET: deliveries of one addon; score = created_at ms.
    pub fn deliveries_by_addon(&self, id: AddonId) -> String {
        self.k(format_args!("webhook:deliveries:addon:{id}"))
    }

    /// HASH: circuit breaker of one destination host (lower-cased), shared by every worker replica: consecutive
    /// `failures`, `opens` (windows used so far), `open_until` and `probe_until` (ms). Expires when idle.
    pub fn circuit(&self, host: &str) -> String {
        self.k(format_args!(
            "hookline:circuit:{}",
            host.to_ascii_lowercase()
        ))
    }

    /// ZSET: `in_progress` deliveries; score = last_activity_at in **microseconds**. Cleanup fails the stale ones.
    pub fn deliveries_activity(&self) -> String {
        self.k("webhook:deliveries:activity")
    }

    /// The prefix of [`deliveries_by_addon`](Self::deliveries_by_addon) keys (cleanup recognises them by it).
    pub fn deliveries_by_addon_prefix(&self) -> String {
        self.k("webhook:deliveries:addon:")
    }

    // ---- cleanup -----------------------------------------------------------------------------------------

    /// STRING: the cleanup lease. Holds the random token of the replica running a cycle, set with `NX PX`
    /// (`[cleanup] lease_ttl_ms`), renewed after every chunk and deleted by its holder (compare-and-delete) when
    /// the cycle ends; a crashed holder's lease simply expires.
    pub fn cleanup_lease(&self) -> String {
        self.k("hookline:cleanup:lease")
    }

    /// HASH: where cleanup's walks stand between cycles (set-scan cursors, the index being pruned and the
    /// position in it, when the next index pass may start). Written only by the lease holder; a few fields,
    /// no TTL. Losing it only restarts the walks.
    pub fn cleanup_state(&self) -> String {
        self.k("hookline:cleanup:state")
    }

    /// SET: full key names of the per-subscription, per-event-type and per-addon delivery indexes that cleanup
    /// prunes. Cleanup adds keys found by its bounded `SCAN` and removes a key once Redis has deleted it (an
    /// emptied ZSET).
    pub fn delivery_index_registry(&self) -> String {
        self.k("hookline:cleanup:delivery_indexes")
    }
}

// ---- add-ons (issue #3) ---------------------------------------------------------------------------------

impl Keyspace {
    /// HASH: one add-on ([`crate::addon::field`]). No TTL: deleted by `DELETE /addons/{id}` or with its
    /// subscription.
    pub fn addon(&self, id: AddonId) -> String {
        format!("{}{id}", self.addon_prefix())
    }

    /// The prefix of [`addon`](Self::addon) keys (Lua scripts append the id).
    pub fn addon_prefix(&self) -> String {
        self.k("webhook:addon:")
    }

    /// ZSET: every add-on id; score = created_at ms.
    pub fn addons_all(&self) -> String {
        self.k("webhook:addons")
    }

    /// ZSET: add-ons scoped to one threat model; score = created_at ms.
    pub fn addons_by_threat_model(&self, tm: &str) -> String {
        format!("{}{tm}", self.addons_by_threat_model_prefix())
    }

    pub fn addons_by_threat_model_prefix(&self) -> String {
        self.k("webhook:addons:tm:")
    }

    /// ZSET: add-ons without a threat-model scope (offered for every threat model); score = created_at ms.
    pub fn addons_unscoped(&self) -> String {
        self.k("webhook:addons:unscoped")
    }

    /// SET: add-ons bound to one subscription (the subscription-delete cascade reads it).
    pub fn addons_by_subscription(&self, id: SubscriptionId) -> String {
        format!("{}{id}", self.addons_by_subscription_prefix())
    }

    pub fn addons_by_subscription_prefix(&self) -> String {
        self.k("webhook:addons:subscription:")
    }

    /// ZSET (TMI's key): one invoker's invocations in the last hour; member `<unix>:<unixnano>`, score = unix
    /// seconds. Expires 3660 s after the last invocation.
    pub fn addon_hourly(&self, user: &str) -> String {
        self.k(format_args!("addon:ratelimit:hour:{user}"))
    }

    /// STRING (TMI's key): set `NX EX 5` by an invocation, so the same user repeating it at once is refused.
    pub fn addon_dedup(&self, addon: AddonId, user: &str) -> String {
        self.k(format_args!("addon:dedup:{addon}:{user}"))
    }

    /// ZSET: one invoker's addon delivery ids; score = created_at ms. Only members whose record is still
    /// `pending`/`in_progress` count as active; the invoke script prunes the others.
    pub fn addon_active(&self, user: &str) -> String {
        self.k(format_args!("addon:active:{user}"))
    }

    /// ZSET: a short-lived intersection of delivery indexes for one filtered admin list (random `token`);
    /// deleted by the script that made it, and given a few seconds' TTL in case that script fails midway.
    pub fn delivery_query_tmp(&self, token: &str) -> String {
        self.k(format_args!("hookline:tmp:deliveries:{token}"))
    }

    /// ZSET: a short-lived union of add-on indexes for one threat-model-filtered list (random `token`), as
    /// [`delivery_query_tmp`](Self::delivery_query_tmp).
    pub fn addon_query_tmp(&self, token: &str) -> String {
        self.k(format_args!("hookline:tmp:addons:{token}"))
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
        self.k(format_args!("hookline:idempotency:{route}:{digest}"))
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
        self.k(format_args!("webhook:quota:{owner}"))
    }

    /// ZSET: owners with a webhook quota override; score = the override's created_at ms.
    pub fn webhook_quotas(&self) -> String {
        self.k("webhook:quotas")
    }

    /// HASH: one invoker's add-on invocation quota override ([`crate::quota::field`]). No TTL.
    pub fn addon_quota(&self, owner: &str) -> String {
        self.k(format_args!("addon:quota:{owner}"))
    }

    /// ZSET: owners with an add-on quota override; score = the override's created_at ms.
    pub fn addon_quotas(&self) -> String {
        self.k("addon:quotas")
    }

    /// ZSET (TMI's key): one owner's successful subscription creates in the last minute; member
    /// `<unix>:<unixnano>`, score = unix seconds. Expires 120 s after the last create.
    pub fn subscription_rate_minute(&self, owner: &str) -> String {
        self.k(format_args!("webhook:ratelimit:sub:minute:{owner}"))
    }

    /// ZSET (TMI's key): as [`subscription_rate_minute`](Self::subscription_rate_minute) over the last day.
    /// Expires a day and a minute after the last create.
    pub fn subscription_rate_day(&self, owner: &str) -> String {
        self.k(format_args!("webhook:ratelimit:sub:day:{owner}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmi_compatible_names_without_prefix() {
        let k = Keyspace::new("", DEFAULT_EVENTS_STREAM);
        let id: DeliveryId = DeliveryId::new_v7();
        assert_eq!(k.delivery(id), format!("webhook:delivery:{id}"));
        assert_eq!(k.events_stream(), "tmi:events");
        // TMI's revocation key for the token "abc": echo -n abc | sha256sum.
        assert_eq!(
            Keyspace::new("test:", DEFAULT_EVENTS_STREAM).revoked_token("abc"),
            "blacklist:token:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            k.subscription_rate_minute("u"),
            "webhook:ratelimit:sub:minute:u"
        );
        assert_eq!(k.subscription_rate_day("u"), "webhook:ratelimit:sub:day:u");
        assert_eq!(k.addon_quota("u"), "addon:quota:u");
        assert_eq!(
            k.subscriptions_by_event("*"),
            "webhook:subscriptions:event:*"
        );
    }

    #[test]
    fn prefix_applies_to_owned_keys_only() {
        let k = Keyspace::new("t1:", "tmi:events");
        assert_eq!(k.queue_stream(), "t1:hookline:queue");
        assert_eq!(
            k.deliveries_by_status(DeliveryStatus::Pending),
            "t1:webhook:deliveries:status:pending"
        );
        assert_eq!(k.events_stream(), "tmi:events");
    }

    #[test]
    fn idempotency_keys_are_per_caller_and_route() {
        let k = Keyspace::new("t1:", "tmi:events");
        let a = k.idempotency("events", "alice", "k1");
        assert!(a.starts_with("t1:hookline:idempotency:events:"), "{a}");
        assert_eq!(a, k.idempotency("events", "alice", "k1"));
        assert_ne!(a, k.idempotency("events", "bob", "k1"));
        assert_ne!(a, k.idempotency("invoke", "alice", "k1"));
        // The separator cannot be forged by moving characters between caller and key.
        assert_ne!(
            k.idempotency("events", "a", "b:c"),
            k.idempotency("events", "a:b", "c")
        );
    }
}
