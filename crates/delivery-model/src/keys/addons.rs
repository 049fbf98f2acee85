//! Add-on keys (issue #3): the add-ons, their indexes, and the per-invoker limits of invocations.

use super::Keyspace;
use crate::ids::{AddonId, SubscriptionId};

impl Keyspace {
    /// HASH: one add-on ([`crate::addon::field`]). No TTL: deleted by `DELETE /addons/{id}` or with its
    /// subscription.
    pub fn addon(&self, id: AddonId) -> String {
        format!("{}{id}", self.addon_prefix())
    }

    /// The prefix of [`addon`](Self::addon) keys (Lua scripts append the id).
    pub fn addon_prefix(&self) -> String {
        self.c("webhook:addon:")
    }

    /// ZSET: every add-on id; score = created_at ms.
    pub fn addons_all(&self) -> String {
        self.c("webhook:addons")
    }

    /// ZSET: add-ons scoped to one threat model; score = created_at ms.
    pub fn addons_by_threat_model(&self, tm: &str) -> String {
        format!("{}{tm}", self.addons_by_threat_model_prefix())
    }

    pub fn addons_by_threat_model_prefix(&self) -> String {
        self.c("webhook:addons:tm:")
    }

    /// ZSET: add-ons without a threat-model scope (offered for every threat model); score = created_at ms.
    pub fn addons_unscoped(&self) -> String {
        self.c("webhook:addons:unscoped")
    }

    /// SET: add-ons bound to one subscription (the subscription-delete cascade reads it).
    pub fn addons_by_subscription(&self, id: SubscriptionId) -> String {
        format!("{}{id}", self.addons_by_subscription_prefix())
    }

    pub fn addons_by_subscription_prefix(&self) -> String {
        self.c("webhook:addons:subscription:")
    }

    /// ZSET (TMI's key): one invoker's invocations in the last hour; member `<unix>:<unixnano>`, score = unix
    /// seconds. Expires 3660 s after the last invocation.
    pub fn addon_hourly(&self, user: &str) -> String {
        self.c(format_args!("addon:ratelimit:hour:{user}"))
    }

    /// STRING (TMI's key): set `NX EX 5` by an invocation, so the same user repeating it at once is refused.
    pub fn addon_dedup(&self, addon: AddonId, user: &str) -> String {
        self.c(format_args!("addon:dedup:{addon}:{user}"))
    }

    /// ZSET: one invoker's addon delivery ids; score = created_at ms. Only members whose record is still
    /// `pending`/`in_progress` count as active; the invoke script prunes the others.
    pub fn addon_active(&self, user: &str) -> String {
        self.c(format_args!("addon:active:{user}"))
    }

    /// ZSET: a short-lived union of add-on indexes for one threat-model-filtered list (random `token`), as
    /// [`delivery_query_tmp`](Self::delivery_query_tmp).
    pub fn addon_query_tmp(&self, token: &str) -> String {
        self.c(format_args!("hookline:tmp:addons:{token}"))
    }
}
