//! Per-owner quotas (TMI's `webhook_quotas` and `addon_invocation_quotas` tables, issue #6).
//!
//! A quota row is an **override** of the configured defaults for one owner (TMI's internal user id): an owner
//! without one gets `[quotas]` (webhooks) and `[addons]` (invocations). Rows are hashes at
//! [`Keyspace::webhook_quota`](crate::keys::Keyspace::webhook_quota) /
//! [`Keyspace::addon_quota`](crate::keys::Keyspace::addon_quota), indexed by creation time so the admin lists
//! never scan the keyspace (see [`crate::store::Store::put_webhook_quota`] and friends).
//!
//! `max_events_per_minute` is stored and returned but, as in TMI, enforced nowhere.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::time::Micros;

/// Hash field names of a stored quota (both kinds share `owner_id`, `created_at`, `modified_at`).
pub mod field {
    pub const OWNER_ID: &str = "owner_id";
    pub const MAX_SUBSCRIPTIONS: &str = "max_subscriptions";
    pub const MAX_EVENTS_PER_MINUTE: &str = "max_events_per_minute";
    pub const MAX_SUBSCRIPTION_REQUESTS_PER_MINUTE: &str = "max_subscription_requests_per_minute";
    pub const MAX_SUBSCRIPTION_REQUESTS_PER_DAY: &str = "max_subscription_requests_per_day";
    pub const MAX_ACTIVE_INVOCATIONS: &str = "max_active_invocations";
    pub const MAX_INVOCATIONS_PER_HOUR: &str = "max_invocations_per_hour";
    pub const CREATED_AT: &str = "created_at";
    pub const MODIFIED_AT: &str = "modified_at";
}

/// TMI's `WebhookQuota`: one owner's subscription limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookQuota {
    pub owner_id: String,
    /// Subscriptions the owner may have, in any status.
    pub max_subscriptions: u32,
    /// Stored and shown only: TMI never enforces it, and neither does Hookline.
    pub max_events_per_minute: u32,
    /// Successful subscription creates in any sliding minute.
    pub max_subscription_requests_per_minute: u32,
    /// Successful subscription creates in any sliding day.
    pub max_subscription_requests_per_day: u32,
    pub created_at: Micros,
    pub modified_at: Micros,
}

/// TMI's `AddonInvocationQuota`: one invoker's add-on invocation limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddonQuota {
    pub owner_id: String,
    /// Invocations whose delivery is still `pending`/`in_progress`.
    pub max_active_invocations: u32,
    /// Invocations in any sliding hour.
    pub max_invocations_per_hour: u32,
    pub created_at: Micros,
    pub modified_at: Micros,
}

fn get<'a>(h: &'a HashMap<String, String>, f: &str) -> Result<&'a str> {
    h.get(f)
        .map(String::as_str)
        .ok_or_else(|| Error::Decode(format!("quota: missing field {f}")))
}

fn number<T: std::str::FromStr>(h: &HashMap<String, String>, f: &str) -> Result<T> {
    let v = get(h, f)?;
    v.parse()
        .map_err(|_| Error::Decode(format!("quota: field {f} is not a number: {v:?}")))
}

impl WebhookQuota {
    /// The hash fields as stored.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            (field::OWNER_ID, self.owner_id.clone()),
            (field::MAX_SUBSCRIPTIONS, self.max_subscriptions.to_string()),
            (
                field::MAX_EVENTS_PER_MINUTE,
                self.max_events_per_minute.to_string(),
            ),
            (
                field::MAX_SUBSCRIPTION_REQUESTS_PER_MINUTE,
                self.max_subscription_requests_per_minute.to_string(),
            ),
            (
                field::MAX_SUBSCRIPTION_REQUESTS_PER_DAY,
                self.max_subscription_requests_per_day.to_string(),
            ),
            (field::CREATED_AT, self.created_at.to_string()),
            (field::MODIFIED_AT, self.modified_at.to_string()),
        ]
    }

    /// Reads a stored hash.
    ///
    /// # Errors
    /// A missing or non-numeric field.
    pub fn from_hash(h: &HashMap<String, String>) -> Result<Self> {
        Ok(Self {
            owner_id: get(h, field::OWNER_ID)?.to_owned(),
            max_subscriptions: number(h, field::MAX_SUBSCRIPTIONS)?,
            max_events_per_minute: number(h, field::MAX_EVENTS_PER_MINUTE)?,
            max_subscription_requests_per_minute: number(
                h,
                field::MAX_SUBSCRIPTION_REQUESTS_PER_MINUTE,
            )?,
            max_subscription_requests_per_day: number(h, field::MAX_SUBSCRIPTION_REQUESTS_PER_DAY)?,
            created_at: number(h, field::CREATED_AT)?,
            modified_at: number(h, field::MODIFIED_AT)?,
        })
    }
}

impl AddonQuota {
    /// The hash fields as stored.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            (field::OWNER_ID, self.owner_id.clone()),
            (
                field::MAX_ACTIVE_INVOCATIONS,
                self.max_active_invocations.to_string(),
            ),
            (
                field::MAX_INVOCATIONS_PER_HOUR,
                self.max_invocations_per_hour.to_string(),
            ),
            (field::CREATED_AT, self.created_at.to_string()),
            (field::MODIFIED_AT, self.modified_at.to_string()),
        ]
    }

    /// Reads a stored hash.
    ///
    /// # Errors
    /// A missing or non-numeric field.
    pub fn from_hash(h: &HashMap<String, String>) -> Result<Self> {
        Ok(Self {
            owner_id: get(h, field::OWNER_ID)?.to_owned(),
            max_active_invocations: number(h, field::MAX_ACTIVE_INVOCATIONS)?,
            max_invocations_per_hour: number(h, field::MAX_INVOCATIONS_PER_HOUR)?,
            created_at: number(h, field::CREATED_AT)?,
            modified_at: number(h, field::MODIFIED_AT)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_corrupt_rows() {
        let w = WebhookQuota {
            owner_id: "u1".into(),
            max_subscriptions: 5,
            max_events_per_minute: 12,
            max_subscription_requests_per_minute: 3,
            max_subscription_requests_per_day: 40,
            created_at: 1,
            modified_at: 2,
        };
        let h: HashMap<String, String> = w
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(WebhookQuota::from_hash(&h).ok(), Some(w));
        let a = AddonQuota {
            owner_id: "u2".into(),
            max_active_invocations: 1,
            max_invocations_per_hour: 1000,
            created_at: 3,
            modified_at: 4,
        };
        let mut h: HashMap<String, String> = a
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(AddonQuota::from_hash(&h).ok(), Some(a));
        h.insert(field::MAX_ACTIVE_INVOCATIONS.into(), "x".into());
        assert!(AddonQuota::from_hash(&h).is_err());
        h.remove(field::MAX_ACTIVE_INVOCATIONS);
        assert!(AddonQuota::from_hash(&h).is_err());
    }
}
