//! Opt-in FIFO lanes (issue #18, `docs/flow.md` §2).
//!
//! A subscription may ask for ordered delivery: per subscription (one lane) or per ordering key (one lane per
//! value of an envelope field, such as `threat_model_id`). Within a lane a delivery is sent only after the
//! previous one is terminal; a retry holds its lane while other lanes and other subscriptions keep flowing.
//! What happens after a lane's head fails for good is the subscription's choice ([`LaneOnFailure`]).
//!
//! A lane is named by a [`LaneId`]: the subscription and a digest of the key's value, so a value of any
//! length or alphabet makes a short, key-safe name. Its state (the list of its deliveries, head first) lives
//! in one queue shard with every delivery of the lane, so advancing it is part of the script that writes the
//! head's outcome (see `Keyspace::lane`).

use std::fmt;
use std::str::FromStr;

use ring::digest;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::StreamEvent;
use crate::ids::SubscriptionId;

/// The envelope field whose value keys a subscription's lanes (`ordering: key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderingKey {
    ThreatModelId,
    ObjectId,
    ObjectType,
    OwnerId,
}

impl OrderingKey {
    pub const ALL: [OrderingKey; 4] = [
        OrderingKey::ThreatModelId,
        OrderingKey::ObjectId,
        OrderingKey::ObjectType,
        OrderingKey::OwnerId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderingKey::ThreatModelId => "threat_model_id",
            OrderingKey::ObjectId => "object_id",
            OrderingKey::ObjectType => "object_type",
            OrderingKey::OwnerId => "owner_id",
        }
    }

    /// The key's value in `event`; an event without the field goes to the lane of the empty value.
    fn value_in(self, event: &StreamEvent) -> &str {
        let v = match self {
            OrderingKey::ThreatModelId => &event.threat_model_id,
            OrderingKey::ObjectId => &event.object_id,
            OrderingKey::ObjectType => &event.object_type,
            OrderingKey::OwnerId => &event.owner_id,
        };
        v.as_deref().unwrap_or_default()
    }
}

/// What a lane does once its head has failed for good (every attempt spent, a `410`, a stale callback).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaneOnFailure {
    /// The lane moves on: the failed delivery stays `failed` (an administrator may still retry it, out of
    /// order) and the next one is sent.
    #[default]
    Skip,
    /// The lane waits until an administrator retries the failed head (it is sent again, in its place) or
    /// skips it (`POST /admin/webhooks/subscriptions/{id}/lanes/skip`).
    Block,
}

/// A subscription's ordered delivery: by which lanes, and what a failed head does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ordering {
    /// `None`: one lane for the whole subscription.
    pub key: Option<OrderingKey>,
    pub on_failure: LaneOnFailure,
}

impl Ordering {
    /// The lane of `event`'s delivery to subscription `sub`.
    pub fn lane_of(&self, sub: SubscriptionId, event: &StreamEvent) -> Lane {
        Lane {
            id: LaneId::new(sub, self.key.map(|k| k.value_in(event))),
            block: self.on_failure == LaneOnFailure::Block,
        }
    }

    /// The value of the `ordering` field: `subscription` or `key`.
    pub fn mode(&self) -> &'static str {
        if self.key.is_some() {
            "key"
        } else {
            "subscription"
        }
    }
}

/// The lane a delivery joins, as fan-out needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lane {
    pub id: LaneId,
    /// The subscription blocks its lanes on failure ([`LaneOnFailure::Block`]).
    pub block: bool,
}

/// A lane's name: `<subscription id>:<first 16 bytes of SHA-256 of the key's value, hex>` (`-` in place of
/// the digest for a per-subscription lane). Lua scripts append it to the shard's lane prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneId(String);

impl LaneId {
    /// The lane of `sub` for key value `value` (`None`: the subscription's single lane).
    pub fn new(sub: SubscriptionId, value: Option<&str>) -> Self {
        match value {
            None => Self(format!("{sub}:-")),
            Some(v) => {
                let d = digest::digest(&digest::SHA256, v.as_bytes());
                Self(format!("{sub}:{}", hex::encode(&d.as_ref()[..16])))
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A stable 64-bit hash of the name (its shard on a cluster: `keys::layout::shard_of_lane`).
    pub fn hash64(&self) -> u64 {
        let d = digest::digest(&digest::SHA256, self.0.as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&d.as_ref()[..8]);
        u64::from_be_bytes(b)
    }
}

impl fmt::Display for LaneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Subscription hash fields and their values, written only for an ordered subscription.
pub mod field {
    /// `subscription` | `key`; absent: unordered.
    pub const ORDERING: &str = "ordering";
    /// With `ordering = key`: the [`OrderingKey`](super::OrderingKey).
    pub const ORDERING_KEY: &str = "ordering_key";
    /// [`LaneOnFailure`](super::LaneOnFailure); absent: `skip`.
    pub const LANE_ON_FAILURE: &str = "lane_on_failure";
}

impl FromStr for OrderingKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| Error::Decode(format!("unknown ordering key {s:?}")))
    }
}

impl LaneOnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            LaneOnFailure::Skip => "skip",
            LaneOnFailure::Block => "block",
        }
    }
}

impl FromStr for LaneOnFailure {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "skip" => Ok(LaneOnFailure::Skip),
            "block" => Ok(LaneOnFailure::Block),
            _ => Err(Error::Decode(format!("unknown lane_on_failure {s:?}"))),
        }
    }
}

impl Ordering {
    /// Decodes the stored fields (`ordering`, `ordering_key`, `lane_on_failure`); `None` when unordered.
    ///
    /// # Errors
    /// [`Error::Decode`] on an unknown value, or `key` without an `ordering_key`.
    pub fn from_fields(
        ordering: Option<&str>,
        key: Option<&str>,
        on_failure: Option<&str>,
    ) -> Result<Option<Self>> {
        let key = match ordering {
            None | Some("none") => return Ok(None),
            Some("subscription") => None,
            Some("key") => Some(
                key.ok_or_else(|| Error::Decode("ordering `key` without ordering_key".into()))?
                    .parse()?,
            ),
            Some(o) => return Err(Error::Decode(format!("unknown ordering {o:?}"))),
        };
        let on_failure = on_failure.map(str::parse).transpose()?.unwrap_or_default();
        Ok(Some(Self { key, on_failure }))
    }

    /// The hash fields to store.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![(field::ORDERING, self.mode().to_owned())];
        if let Some(k) = self.key {
            v.push((field::ORDERING_KEY, k.as_str().to_owned()));
        }
        v.push((field::LANE_ON_FAILURE, self.on_failure.as_str().to_owned()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_refuse_nonsense() -> Result<()> {
        for o in [
            Ordering {
                key: None,
                on_failure: LaneOnFailure::Skip,
            },
            Ordering {
                key: Some(OrderingKey::ObjectId),
                on_failure: LaneOnFailure::Block,
            },
        ] {
            let f = o.to_fields();
            let get = |k: &str| f.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
            let back = Ordering::from_fields(
                get(field::ORDERING),
                get(field::ORDERING_KEY),
                get(field::LANE_ON_FAILURE),
            )?;
            assert_eq!(back, Some(o));
        }
        assert_eq!(Ordering::from_fields(None, None, None)?, None);
        assert!(Ordering::from_fields(Some("key"), None, None).is_err());
        assert!(Ordering::from_fields(Some("key"), Some("name"), None).is_err());
        assert!(Ordering::from_fields(Some("subscription"), None, Some("wait")).is_err());
        Ok(())
    }

    #[test]
    fn lanes_split_by_key_value_only() {
        let sub = SubscriptionId::new_v4();
        let a = LaneId::new(sub, Some("tm-1"));
        assert_eq!(a, LaneId::new(sub, Some("tm-1")));
        assert_ne!(a, LaneId::new(sub, Some("tm-2")));
        assert_ne!(a, LaneId::new(SubscriptionId::new_v4(), Some("tm-1")));
        assert_eq!(LaneId::new(sub, None).as_str(), format!("{sub}:-"));
        // Key-safe and bounded whatever the value.
        let long = LaneId::new(sub, Some(&"x{}: ".repeat(1000)));
        assert_eq!(long.as_str().len(), 36 + 1 + 32);
    }
}
