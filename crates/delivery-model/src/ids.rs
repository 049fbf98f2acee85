//! Identifier newtypes.
//!
//! Subscriptions and addons get random UUIDv4 ids (as TMI); deliveries get UUIDv7 ids, time-ordered, so that
//! index order and id order agree. A delivery created by event fan-out gets a *deterministic* UUIDv7 derived
//! from the stream entry and the subscription ([`DeliveryId::for_fanout`]): reprocessing an entry after a crash
//! produces the same ids, so the create script sees the records already exist and creates nothing twice.
//! With a deployment key ([`FanoutKey`], issue #16) the derivation is an HMAC, so nobody who sees the event
//! stream and a subscription id can compute a delivery id; without one it is the older, public SHA-256.

use std::fmt;
use std::str::FromStr;

use ring::hmac;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Hyphenated lowercase, the form TMI prints and the form every key uses.
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A webhook subscription (UUIDv4).
    SubscriptionId
);
id_type!(
    /// A delivery record (UUIDv7). Also the addon invocation id: TMI's design has no separate invocation.
    DeliveryId
);
id_type!(
    /// An addon (UUIDv4).
    AddonId
);

impl SubscriptionId {
    /// A fresh random id.
    pub fn new_v4() -> Self {
        Self(Uuid::new_v4())
    }
}

impl AddonId {
    /// A fresh random id.
    pub fn new_v4() -> Self {
        Self(Uuid::new_v4())
    }
}

impl DeliveryId {
    /// A fresh time-ordered id.
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }

    /// The millisecond time in the id (Unix ms): the input entry's append time for a fan-out delivery (see
    /// [`for_fanout`](Self::for_fanout)), the creation time for any other; `None` for an id that is not a
    /// UUIDv7 (imported from TMI).
    pub fn time_ms(&self) -> Option<i64> {
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        i64::try_from(secs)
            .ok()?
            .checked_mul(1000)?
            .checked_add(i64::from(nanos / 1_000_000))
    }

    /// The id of the delivery that fan-out of stream entry `entry_id` creates for `subscription`.
    ///
    /// The timestamp part is the entry's millisecond time (so ids still sort by event time); the random part
    /// is a SHA-256 of the entry id and the subscription id. Same inputs, same id.
    pub fn for_fanout(entry_id: &str, subscription: SubscriptionId) -> Self {
        Self::for_fanout_nth(None, entry_id, subscription, 0)
    }

    /// [`for_fanout`](Self::for_fanout) keyed with the deployment's `key`: the random part is an
    /// HMAC-SHA256 of the same inputs, so it cannot be computed without the key. Same key and inputs, same
    /// id; with `None`, the unkeyed derivation.
    pub fn for_fanout_keyed(
        key: Option<&FanoutKey>,
        entry_id: &str,
        subscription: SubscriptionId,
    ) -> Self {
        Self::for_fanout_nth(key, entry_id, subscription, 0)
    }

    /// The `n`-th candidate id of the delivery of `entry_id` to `subscription`; the 0th is
    /// [`for_fanout_keyed`](Self::for_fanout_keyed)'s. On a cluster an ordered delivery takes the first
    /// candidate that falls in its lane's shard (the lane and its deliveries must share a slot); the search is
    /// deterministic, so reprocessing an entry finds the same id.
    pub fn for_fanout_nth(
        key: Option<&FanoutKey>,
        entry_id: &str,
        subscription: SubscriptionId,
        n: u32,
    ) -> Self {
        let counter = n.to_string();
        let extra: &[&[u8]] = if n == 0 {
            &[]
        } else {
            &[b"\0", counter.as_bytes()]
        };
        let Some(key) = key else {
            let mut hasher = Sha256::new();
            hasher.update(entry_id.as_bytes());
            hasher.update(b"\0");
            hasher.update(subscription.0.as_bytes());
            extra.iter().for_each(|e| hasher.update(e));
            return Self::from_entry_and_digest(entry_id, &hasher.finalize());
        };
        let mut ctx = hmac::Context::with_key(&key.0);
        ctx.update(entry_id.as_bytes());
        ctx.update(b"\0");
        ctx.update(subscription.0.as_bytes());
        extra.iter().for_each(|e| ctx.update(e));
        Self::from_entry_and_digest(entry_id, ctx.sign().as_ref())
    }

    /// The entry's millisecond time as the UUIDv7 timestamp, the first 10 bytes of `digest` as the rest.
    fn from_entry_and_digest(entry_id: &str, digest: &[u8]) -> Self {
        let millis = entry_id
            .split_once('-')
            .map_or(entry_id, |(ms, _)| ms)
            .parse::<u64>()
            .unwrap_or(0);
        let mut random = [0u8; 10];
        for (r, d) in random.iter_mut().zip(digest) {
            *r = *d;
        }
        Self(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }
}

/// The deployment's key for fan-out delivery ids (`consumer.fanout_id_key`). Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct FanoutKey(hmac::Key);

impl FanoutKey {
    /// A key from the configured secret text.
    pub fn new(secret: &str) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()))
    }
}

impl fmt::Debug for FanoutKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FanoutKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_ids_are_deterministic_v7() {
        let sub = SubscriptionId::new_v4();
        let a = DeliveryId::for_fanout("1775044800123-0", sub);
        let b = DeliveryId::for_fanout("1775044800123-0", sub);
        let c = DeliveryId::for_fanout("1775044800123-1", sub);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.0.get_version_num(), 7);
        let (secs, nanos) = a.0.get_timestamp().map(|t| t.to_unix()).unwrap_or_default();
        assert_eq!(
            secs * 1000 + u64::from(nanos) / 1_000_000,
            1_775_044_800_123
        );
        assert_eq!(a.time_ms(), Some(1_775_044_800_123));
        // A v4 id (imported from TMI) has no time.
        assert_eq!(DeliveryId(Uuid::new_v4()).time_ms(), None);
    }

    #[test]
    fn keyed_fanout_ids_depend_on_the_key_and_stay_deterministic() {
        let sub = SubscriptionId::new_v4();
        let entry = "1775044800123-0";
        let k1 = FanoutKey::new("first-deployment-key-0123456789abcdef");
        let k2 = FanoutKey::new("second-deployment-key-0123456789abcdef");
        let a = DeliveryId::for_fanout_keyed(Some(&k1), entry, sub);
        assert_eq!(a, DeliveryId::for_fanout_keyed(Some(&k1), entry, sub));
        // Not the public derivation, and not another deployment's.
        assert_ne!(a, DeliveryId::for_fanout(entry, sub));
        assert_ne!(a, DeliveryId::for_fanout_keyed(Some(&k2), entry, sub));
        assert_eq!(
            DeliveryId::for_fanout_keyed(None, entry, sub),
            DeliveryId::for_fanout(entry, sub)
        );
        assert_eq!(a.0.get_version_num(), 7);
        assert!(!format!("{k1:?}").contains("first"));
    }

    #[test]
    fn different_subscriptions_get_different_ids() {
        let a = DeliveryId::for_fanout("1-0", SubscriptionId::new_v4());
        let b = DeliveryId::for_fanout("1-0", SubscriptionId::new_v4());
        assert_ne!(a, b);
    }

    #[test]
    fn display_is_lower_hyphenated() {
        let id: SubscriptionId = "550E8400-E29B-41D4-A716-446655440000"
            .parse()
            .unwrap_or_else(|_| SubscriptionId::new_v4());
        assert_eq!(id.to_string(), "550e8400-e29b-41d4-a716-446655440000");
    }
}
