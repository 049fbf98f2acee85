//! Delivery records: the unified record of TMI's design, one hash per delivery.
//!
//! Status machine (enforced by the store's compare-and-set scripts, mirrored by
//! [`DeliveryStatus::can_transition_to`]):
//!
//! ```text
//!            ┌── retry (attempts+1, next_retry_at) ──┐
//!            ▼                                        │
//!  (new) → pending ──2xx──────────────────────────► delivered
//!            │  └──2xx + X-TMI-Callback: async──► in_progress ──callback completed──► delivered
//!            │                                        │  ▲  └──callback failed / stale 15 min──► failed
//!            │                                        └──┘ callback in_progress (progress)
//!            └── last attempt failed / subscription gone or inactive ──► failed
//! ```
//!
//! `delivered` and `failed` are terminal: nothing moves a record out of them, so a late writer can never
//! resurrect it. TTL: 4 hours while `pending`/`in_progress`, 7 days once terminal, refreshed on each write.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{AddonId, DeliveryId, SubscriptionId};
use crate::subscription::{num, opt_num};
use crate::time::Micros;
use crate::trace::TraceContext;

/// Delivery status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    InProgress,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::InProgress,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::InProgress => "in_progress",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// `delivered` and `failed` never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, DeliveryStatus::Delivered | DeliveryStatus::Failed)
    }

    /// The allowed transitions (a retry is `pending` → `pending`; progress is `in_progress` → `in_progress`).
    pub fn can_transition_to(self, next: DeliveryStatus) -> bool {
        match self {
            DeliveryStatus::Pending => true,
            DeliveryStatus::InProgress => next != DeliveryStatus::Pending,
            DeliveryStatus::Delivered | DeliveryStatus::Failed => false,
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| Error::Decode(format!("unknown delivery status {s:?}")))
    }
}

/// Hash field names of a stored delivery (the names of TMI's record fields).
pub mod field {
    pub const ID: &str = "id";
    pub const SUBSCRIPTION_ID: &str = "subscription_id";
    pub const EVENT_TYPE: &str = "event_type";
    pub const STATUS: &str = "status";
    pub const STATUS_PERCENT: &str = "status_percent";
    pub const STATUS_MESSAGE: &str = "status_message";
    pub const PAYLOAD: &str = "payload";
    pub const ATTEMPTS: &str = "attempts";
    pub const NEXT_RETRY_AT: &str = "next_retry_at";
    pub const LAST_ERROR: &str = "last_error";
    pub const CREATED_AT: &str = "created_at";
    pub const DELIVERED_AT: &str = "delivered_at";
    pub const LAST_ACTIVITY_AT: &str = "last_activity_at";
    pub const ADDON_ID: &str = "addon_id";
    pub const INVOKED_BY_UUID: &str = "invoked_by_uuid";
    pub const INVOKED_BY_EMAIL: &str = "invoked_by_email";
    pub const INVOKED_BY_NAME: &str = "invoked_by_name";
    /// The invoker's identity provider, groups (JSON array) and security-reviewer flag, as their token said:
    /// kept for the delegation token of the addon delivery (internal; never shown by the API).
    pub const INVOKED_BY_IDP: &str = "invoked_by_idp";
    pub const INVOKED_BY_GROUPS: &str = "invoked_by_groups";
    pub const INVOKED_BY_SECURITY_REVIEWER: &str = "invoked_by_security_reviewer";
    /// Fencing token of the attempt in flight (internal; never shown by the API).
    pub const LEASE: &str = "lease";
    /// Until when that attempt's lease holds, in microseconds (internal).
    pub const LEASE_UNTIL: &str = "lease_until";
    /// The latest attempts, one JSON [`AttemptLogEntry`](super::AttemptLogEntry) per line, oldest first,
    /// at most [`ATTEMPT_LOG_LEN`](super::ATTEMPT_LOG_LEN) (internal; served by its own admin endpoint).
    pub const ATTEMPT_LOG: &str = "attempt_log";
    /// The W3C trace context of the hop that created the record (internal): every attempt and the status
    /// callbacks continue that trace. Absent on records written without one.
    pub const TRACEPARENT: &str = crate::trace::TRACEPARENT;
    /// Its `tracestate`, when there was one (internal).
    pub const TRACESTATE: &str = crate::trace::TRACESTATE;
}

/// Attempts a record's log keeps (the latest ones).
pub const ATTEMPT_LOG_LEN: usize = 10;

/// One attempt as the record's log keeps it: written by the worker's fenced outcome write, so only attempts
/// whose result was recorded appear, each once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptLogEntry {
    /// The record's `attempts` after this attempt (it restarts at 1 after an administrator's retry).
    pub attempt: u32,
    /// When the request started (µs since the epoch).
    pub started_at: Micros,
    /// How long it took, milliseconds (0 when no request was sent: a target refused before connecting).
    pub duration_ms: u64,
    /// `delivered`, `in_progress`, `retry` or `failed`.
    pub outcome: String,
    /// The receiver's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Why it failed (the same excerpt as `last_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AttemptLogEntry {
    /// The stored log (JSON lines) as entries, oldest first; lines that do not decode are skipped.
    pub fn parse_log(log: &str) -> Vec<AttemptLogEntry> {
        log.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Who invoked an addon (addon deliveries only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoker {
    pub uuid: String,
    pub email: String,
    pub name: String,
    /// The `idp` claim of the invoker's token.
    #[serde(default)]
    pub idp: Option<String>,
    /// The `groups` claim of the invoker's token.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The `tmi_is_security_reviewer` claim of the invoker's token.
    #[serde(default)]
    pub security_reviewer: bool,
}

/// A stored delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: DeliveryId,
    pub subscription_id: SubscriptionId,
    pub event_type: String,
    pub status: DeliveryStatus,
    /// 0–100, reported by async receivers.
    pub status_percent: u8,
    pub status_message: String,
    /// The exact HTTP body to send (and sign).
    pub payload: String,
    /// Attempts made so far; a first-try success shows 1.
    pub attempts: u32,
    pub next_retry_at: Option<Micros>,
    pub last_error: Option<String>,
    pub created_at: Micros,
    pub delivered_at: Option<Micros>,
    pub last_activity_at: Micros,
    pub addon_id: Option<AddonId>,
    pub invoked_by: Option<Invoker>,
    /// Where this delivery's trace continues (set at creation, kept for every attempt).
    pub trace: Option<TraceContext>,
}

impl DeliveryRecord {
    /// A new `pending` record created now.
    pub fn new_pending(
        id: DeliveryId,
        subscription_id: SubscriptionId,
        event_type: impl Into<String>,
        payload: impl Into<String>,
        now: Micros,
    ) -> Self {
        Self {
            id,
            subscription_id,
            event_type: event_type.into(),
            status: DeliveryStatus::Pending,
            status_percent: 0,
            status_message: String::new(),
            payload: payload.into(),
            attempts: 0,
            next_retry_at: None,
            last_error: None,
            created_at: now,
            delivered_at: None,
            last_activity_at: now,
            addon_id: None,
            invoked_by: None,
            trace: None,
        }
    }

    /// Decodes a stored hash (HGETALL). An empty map means "not found": callers check that first.
    ///
    /// # Errors
    /// [`Error::Decode`] when a required field is missing or malformed.
    pub fn from_hash(h: &HashMap<String, String>) -> Result<Self> {
        let s = |k: &str| h.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let req = |k: &'static str| {
            s(k).ok_or_else(|| Error::Decode(format!("delivery field `{k}` missing")))
        };
        let uuid = |k: &'static str| -> Result<uuid::Uuid> {
            req(k)?
                .parse()
                .map_err(|_| Error::Decode(format!("delivery field `{k}` is not a UUID")))
        };
        let groups: Vec<String> = match s(field::INVOKED_BY_GROUPS) {
            Some(g) => serde_json::from_str(g)?,
            None => Vec::new(),
        };
        let invoked_by = s(field::INVOKED_BY_UUID).map(|u| Invoker {
            uuid: u.to_owned(),
            email: s(field::INVOKED_BY_EMAIL).unwrap_or_default().to_owned(),
            name: s(field::INVOKED_BY_NAME).unwrap_or_default().to_owned(),
            idp: s(field::INVOKED_BY_IDP).map(str::to_owned),
            groups,
            security_reviewer: s(field::INVOKED_BY_SECURITY_REVIEWER) == Some("true"),
        });
        Ok(Self {
            id: DeliveryId(uuid(field::ID)?),
            subscription_id: SubscriptionId(uuid(field::SUBSCRIPTION_ID)?),
            event_type: req(field::EVENT_TYPE)?.to_owned(),
            status: req(field::STATUS)?.parse()?,
            status_percent: num(h, field::STATUS_PERCENT)?,
            status_message: s(field::STATUS_MESSAGE).unwrap_or_default().to_owned(),
            payload: h.get(field::PAYLOAD).cloned().unwrap_or_default(),
            attempts: num(h, field::ATTEMPTS)?,
            next_retry_at: opt_num(h, field::NEXT_RETRY_AT)?,
            last_error: s(field::LAST_ERROR).map(str::to_owned),
            created_at: num(h, field::CREATED_AT)?,
            delivered_at: opt_num(h, field::DELIVERED_AT)?,
            last_activity_at: num(h, field::LAST_ACTIVITY_AT)?,
            addon_id: match s(field::ADDON_ID) {
                Some(a) => Some(AddonId(a.parse().map_err(|_| {
                    Error::Decode("delivery field `addon_id` is not a UUID".into())
                })?)),
                None => None,
            },
            invoked_by,
            trace: TraceContext::from_fields(h),
        })
    }

    /// The hash fields to store for a new record.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            (field::ID, self.id.to_string()),
            (field::SUBSCRIPTION_ID, self.subscription_id.to_string()),
            (field::EVENT_TYPE, self.event_type.clone()),
            (field::STATUS, self.status.as_str().to_owned()),
            (field::STATUS_PERCENT, self.status_percent.to_string()),
            (field::STATUS_MESSAGE, self.status_message.clone()),
            (field::PAYLOAD, self.payload.clone()),
            (field::ATTEMPTS, self.attempts.to_string()),
            (field::CREATED_AT, self.created_at.to_string()),
            (field::LAST_ACTIVITY_AT, self.last_activity_at.to_string()),
        ];
        if let Some(t) = self.next_retry_at {
            v.push((field::NEXT_RETRY_AT, t.to_string()));
        }
        if let Some(e) = &self.last_error {
            v.push((field::LAST_ERROR, e.clone()));
        }
        if let Some(t) = self.delivered_at {
            v.push((field::DELIVERED_AT, t.to_string()));
        }
        if let Some(a) = self.addon_id {
            v.push((field::ADDON_ID, a.to_string()));
        }
        if let Some(i) = &self.invoked_by {
            v.push((field::INVOKED_BY_UUID, i.uuid.clone()));
            v.push((field::INVOKED_BY_EMAIL, i.email.clone()));
            v.push((field::INVOKED_BY_NAME, i.name.clone()));
            if let Some(idp) = &i.idp {
                v.push((field::INVOKED_BY_IDP, idp.clone()));
            }
            if !i.groups.is_empty() {
                // A Vec<String> always serialises.
                let groups = serde_json::to_string(&i.groups).unwrap_or_default();
                v.push((field::INVOKED_BY_GROUPS, groups));
            }
            if i.security_reviewer {
                v.push((field::INVOKED_BY_SECURITY_REVIEWER, "true".to_owned()));
            }
        }
        if let Some(t) = &self.trace {
            v.extend(t.to_fields());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_never_move() {
        for next in DeliveryStatus::ALL {
            assert!(!DeliveryStatus::Delivered.can_transition_to(next));
            assert!(!DeliveryStatus::Failed.can_transition_to(next));
            assert!(DeliveryStatus::Pending.can_transition_to(next));
        }
        assert!(!DeliveryStatus::InProgress.can_transition_to(DeliveryStatus::Pending));
        assert!(DeliveryStatus::InProgress.can_transition_to(DeliveryStatus::Delivered));
    }

    #[test]
    fn hash_round_trip_with_addon_fields() {
        let mut r = DeliveryRecord::new_pending(
            DeliveryId::new_v7(),
            SubscriptionId::new_v4(),
            "addon.invoked",
            "{}",
            1_000,
        );
        r.addon_id = Some(AddonId::new_v4());
        r.invoked_by = Some(Invoker {
            uuid: "u".into(),
            email: "a@example.com".into(),
            name: "A".into(),
            idp: Some("github".into()),
            groups: vec!["eng".into(), "administrators".into()],
            security_reviewer: true,
        });
        r.last_error = Some("HTTP 500: boom".into());
        r.next_retry_at = Some(2_000);
        r.trace = TraceContext::parse(
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("congo=t61rcWkgMzE"),
        );
        assert!(r.trace.is_some());
        let h: HashMap<String, String> = r
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(DeliveryRecord::from_hash(&h).ok(), Some(r));
    }

    #[test]
    fn status_strings() {
        for s in DeliveryStatus::ALL {
            assert_eq!(s.as_str().parse::<DeliveryStatus>().ok(), Some(s));
        }
        assert!("completed".parse::<DeliveryStatus>().is_err());
    }
}
