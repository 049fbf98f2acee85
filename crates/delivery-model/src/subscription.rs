//! Webhook subscriptions as stored in Redis.
//!
//! A subscription is a hash at [`Keyspace::subscription`](crate::keys::Keyspace::subscription). Its statuses
//! follow TMI: `pending_verification` → `active` (challenge answered) or `pending_delete` (challenges
//! exhausted); `active` → `pending_delete` (idle or broken, decided by cleanup); `pending_delete` → deleted.
//! Only `active` subscriptions are in the per-event-type match indexes, so matching never reads others.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::SubscriptionId;
use crate::lane::{self, Ordering};
use crate::store::Secret;
use crate::time::Micros;

/// Lifecycle status of a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    PendingVerification,
    Active,
    PendingDelete,
    /// Used only by TMI's operator-pinned sink when alerting is disabled; kept so imported rows decode.
    Inactive,
}

impl SubscriptionStatus {
    pub const ALL: [SubscriptionStatus; 4] = [
        SubscriptionStatus::PendingVerification,
        SubscriptionStatus::Active,
        SubscriptionStatus::PendingDelete,
        SubscriptionStatus::Inactive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::PendingVerification => "pending_verification",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PendingDelete => "pending_delete",
            SubscriptionStatus::Inactive => "inactive",
        }
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubscriptionStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| Error::Decode(format!("unknown subscription status {s:?}")))
    }
}

/// How a subscription's deliveries are signed (`signature_scheme`, chosen at create).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureScheme {
    /// TMI's `X-Webhook-Signature: sha256=<hex>` over the body, keyed by the secret's UTF-8 bytes.
    #[default]
    Tmi,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature` (see
    /// [`signing::standard`](crate::signing::standard)), with a `whsec_` secret.
    Standard,
}

impl SignatureScheme {
    pub const ALL: [SignatureScheme; 2] = [SignatureScheme::Tmi, SignatureScheme::Standard];

    pub fn as_str(self) -> &'static str {
        match self {
            SignatureScheme::Tmi => "tmi",
            SignatureScheme::Standard => "standard",
        }
    }
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignatureScheme {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| Error::Decode(format!("unknown signature scheme {s:?}")))
    }
}

/// Why the delivery-worker disabled a subscription (endpoint health, issue #18). A disabled subscription is
/// `inactive`: it matches no event, its pending deliveries fail without further attempts, and an
/// administrator re-enables it (`POST /admin/webhooks/subscriptions/{id}/enable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisabledReason {
    /// The receiver answered `410 Gone`: it asked not to be called again.
    Gone,
    /// `worker.disable_after_failures` permanent failures in a row and no success for
    /// `worker.disable_after_failing_for`.
    Failing,
}

impl DisabledReason {
    pub const ALL: [DisabledReason; 2] = [DisabledReason::Gone, DisabledReason::Failing];

    /// As stored, shown by the API and labelled in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DisabledReason::Gone => "gone",
            DisabledReason::Failing => "failing",
        }
    }

    /// The error the deliveries failed by the disable record.
    pub fn delivery_error(self) -> &'static str {
        match self {
            DisabledReason::Gone => "subscription disabled: the receiver answered 410 Gone",
            DisabledReason::Failing => "subscription disabled: too many consecutive failures",
        }
    }
}

impl FromStr for DisabledReason {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| Error::Decode(format!("unknown disabled reason {s:?}")))
    }
}

/// A subscription's delivery rate limit (issue #18), enforced in Redis across every worker replica (GCRA):
/// on average `per_second` requests a second, at most `burst` at once after a quiet spell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// Bounds of the per-subscription limits, shared by the API's validation and the docs.
pub mod limits {
    /// Largest `rate_limit.per_second` and `rate_limit.burst`.
    pub const MAX_RATE: u32 = 10_000;
    /// Largest `max_in_flight`.
    pub const MAX_IN_FLIGHT: u32 = 1_000;
}

/// Hash field names of a stored subscription.
pub mod field {
    pub const ID: &str = "id";
    pub const OWNER_ID: &str = "owner_id";
    pub const THREAT_MODEL_ID: &str = "threat_model_id";
    pub const NAME: &str = "name";
    pub const URL: &str = "url";
    pub const EVENTS: &str = "events";
    pub const SECRET: &str = "secret";
    pub const STATUS: &str = "status";
    pub const CHALLENGE: &str = "challenge";
    pub const CHALLENGES_SENT: &str = "challenges_sent";
    pub const TIMEOUT_COUNT: &str = "timeout_count";
    pub const CREATED_AT: &str = "created_at";
    pub const MODIFIED_AT: &str = "modified_at";
    pub const LAST_SUCCESSFUL_USE: &str = "last_successful_use";
    pub const PUBLICATION_FAILURES: &str = "publication_failures";
    pub const OPERATOR_PINNED: &str = "operator_pinned";
    /// Absent on records from before schemes existed (and on TMI's imports): `tmi`.
    pub const SIGNATURE_SCHEME: &str = "signature_scheme";
    /// Ed25519 signing key (`whsk_…`) of a `standard` subscription.
    pub const SIGNING_KEY: &str = "signing_key";
    /// The secret before the last rotation, live until [`PREVIOUS_SECRET_UNTIL`].
    pub const PREVIOUS_SECRET: &str = "previous_secret";
    /// End of the rotation's grace period (µs).
    pub const PREVIOUS_SECRET_UNTIL: &str = "previous_secret_until";
    /// `1`: callbacks and HMAC reads must be timestamped (replay protection); absent or `0`: TMI's form.
    pub const TIMESTAMPED_CALLBACKS: &str = "timestamped_callbacks";
    /// `1`: `tmi` deliveries also carry `X-Webhook-Timestamp` and a signature covering it.
    pub const TIMESTAMP_HEADER: &str = "timestamp_header";
    /// Why the worker disabled an `inactive` subscription ([`DisabledReason`]); absent otherwise.
    pub const DISABLED_REASON: &str = "disabled_reason";
    /// When it was disabled (µs).
    pub const DISABLED_AT: &str = "disabled_at";
    /// Rate limit ([`RateLimit`]): requests per second; absent when unlimited.
    pub const RATE_LIMIT_PER_SECOND: &str = "rate_limit_per_second";
    pub const RATE_LIMIT_BURST: &str = "rate_limit_burst";
    /// Most deliveries in flight at once, across every worker; absent when unlimited.
    pub const MAX_IN_FLIGHT: &str = "max_in_flight";
    /// The fields the store seals at rest (see [`crate::secret_box`]): every one a key to sign with.
    pub const SEALED: [&str; 3] = [SECRET, SIGNING_KEY, PREVIOUS_SECRET];
}

/// A stored webhook subscription. `Debug` redacts the secret and the challenge token (see the impl below).
#[derive(Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: SubscriptionId,
    /// The caller id of the admin who created it (TMI: internal user UUID).
    pub owner_id: String,
    /// Only events of this threat model match; `None` matches all.
    pub threat_model_id: Option<String>,
    pub name: String,
    pub url: String,
    /// Event types, possibly `*`.
    pub events: Vec<String>,
    /// HMAC key; `None` means deliveries are unsigned.
    pub secret: Option<String>,
    pub status: SubscriptionStatus,
    /// The verification token, reused on every challenge attempt.
    pub challenge: Option<String>,
    pub challenges_sent: u32,
    pub timeout_count: u32,
    pub created_at: Micros,
    pub modified_at: Micros,
    pub last_successful_use: Option<Micros>,
    /// Permanent delivery failures since the last success.
    pub publication_failures: u32,
    pub operator_pinned: bool,
    /// How deliveries are signed; `tmi` unless chosen at create.
    pub signature_scheme: SignatureScheme,
    /// Ed25519 signing key (`whsk_…`) of a `standard` subscription, sealed at rest; never shown (its public
    /// key is).
    pub signing_key: Option<Secret>,
    /// The secret replaced by the last rotation: it still signs and verifies until `previous_secret_until`
    /// (the grace period), then it is dead (and dropped by the next rotation). Sealed at rest.
    pub previous_secret: Option<Secret>,
    pub previous_secret_until: Option<Micros>,
    /// Callbacks and HMAC reads must carry a timestamp inside the tolerance window, signed with the body,
    /// and each such signature is accepted once (replay protection). Chosen at create.
    pub timestamped_callbacks: bool,
    /// `tmi` deliveries also carry `X-Webhook-Timestamp` and `X-Webhook-Signature-Timestamped` over
    /// `timestamp.body` (the plain `X-Webhook-Signature` is unchanged). Chosen at create.
    pub timestamp_header: bool,
    /// Set while the worker has disabled it (status `inactive`); cleared when an administrator enables it.
    pub disabled_reason: Option<DisabledReason>,
    /// When it was disabled (µs).
    pub disabled_at: Option<Micros>,
    /// Per-subscription delivery rate, across every worker; `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Most deliveries in flight at once, across every worker; `None`: unlimited.
    pub max_in_flight: Option<u32>,
    /// Ordered delivery (FIFO lanes, [`crate::lane`]); `None`: unordered. Chosen at create.
    pub ordering: Option<Ordering>,
}

/// Shown in place of a secret by `Debug`.
const REDACTED: &str = "<redacted>";

// By hand rather than derived, so a secret never reaches a log line through `{:?}`. A new field must be
// added here too.
impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |v: &Option<String>| v.as_ref().map(|_| REDACTED);
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("owner_id", &self.owner_id)
            .field("threat_model_id", &self.threat_model_id)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &redact(&self.secret))
            .field("status", &self.status)
            .field("challenge", &redact(&self.challenge))
            .field("challenges_sent", &self.challenges_sent)
            .field("timeout_count", &self.timeout_count)
            .field("created_at", &self.created_at)
            .field("modified_at", &self.modified_at)
            .field("last_successful_use", &self.last_successful_use)
            .field("publication_failures", &self.publication_failures)
            .field("operator_pinned", &self.operator_pinned)
            .field("signature_scheme", &self.signature_scheme)
            .field("signing_key", &self.signing_key)
            .field("previous_secret", &self.previous_secret)
            .field("previous_secret_until", &self.previous_secret_until)
            .field("timestamped_callbacks", &self.timestamped_callbacks)
            .field("timestamp_header", &self.timestamp_header)
            .field("disabled_reason", &self.disabled_reason)
            .field("disabled_at", &self.disabled_at)
            .field("rate_limit", &self.rate_limit)
            .field("max_in_flight", &self.max_in_flight)
            .field("ordering", &self.ordering)
            .finish()
    }
}

fn get<'a>(h: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    h.get(k).map(String::as_str).filter(|s| !s.is_empty())
}

fn req<'a>(h: &'a HashMap<String, String>, k: &str) -> Result<&'a str> {
    get(h, k).ok_or_else(|| Error::Decode(format!("subscription field `{k}` missing")))
}

pub(crate) fn num<T: FromStr + Default>(h: &HashMap<String, String>, k: &str) -> Result<T> {
    match get(h, k) {
        None => Ok(T::default()),
        Some(v) => v
            .parse()
            .map_err(|_| Error::Decode(format!("field `{k}` is not a number: {v:?}"))),
    }
}

pub(crate) fn opt_num<T: FromStr>(h: &HashMap<String, String>, k: &str) -> Result<Option<T>> {
    match get(h, k) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| Error::Decode(format!("field `{k}` is not a number: {v:?}"))),
    }
}

impl Subscription {
    /// A new subscription with a fresh id, created and modified `now`: unsigned, no challenge, no history.
    /// Callers set what differs (a secret, the challenge of a pending verification, a threat model).
    pub fn new(
        owner_id: impl Into<String>,
        name: impl Into<String>,
        url: impl Into<String>,
        events: Vec<String>,
        status: SubscriptionStatus,
        now: Micros,
    ) -> Self {
        Self {
            id: SubscriptionId::new_v4(),
            owner_id: owner_id.into(),
            threat_model_id: None,
            name: name.into(),
            url: url.into(),
            events,
            secret: None,
            status,
            challenge: None,
            challenges_sent: 0,
            timeout_count: 0,
            created_at: now,
            modified_at: now,
            last_successful_use: None,
            publication_failures: 0,
            operator_pinned: false,
            signature_scheme: SignatureScheme::Tmi,
            signing_key: None,
            previous_secret: None,
            previous_secret_until: None,
            timestamped_callbacks: false,
            timestamp_header: false,
            disabled_reason: None,
            disabled_at: None,
            rate_limit: None,
            max_in_flight: None,
            ordering: None,
        }
    }

    /// Decodes a stored hash (HGETALL). An empty map means the subscription does not exist: callers check that.
    ///
    /// # Errors
    /// [`Error::Decode`] when a required field is missing or malformed.
    pub fn from_hash(h: &HashMap<String, String>) -> Result<Self> {
        let id = req(h, field::ID)?
            .parse()
            .map_err(|_| Error::Decode("subscription id is not a UUID".into()))?;
        let events: Vec<String> = serde_json::from_str(req(h, field::EVENTS)?)?;
        Ok(Self {
            id,
            owner_id: get(h, field::OWNER_ID).unwrap_or_default().to_owned(),
            threat_model_id: get(h, field::THREAT_MODEL_ID).map(str::to_owned),
            name: get(h, field::NAME).unwrap_or_default().to_owned(),
            url: req(h, field::URL)?.to_owned(),
            events,
            secret: get(h, field::SECRET).map(str::to_owned),
            status: req(h, field::STATUS)?.parse()?,
            challenge: get(h, field::CHALLENGE).map(str::to_owned),
            challenges_sent: num(h, field::CHALLENGES_SENT)?,
            timeout_count: num(h, field::TIMEOUT_COUNT)?,
            created_at: num(h, field::CREATED_AT)?,
            modified_at: num(h, field::MODIFIED_AT)?,
            last_successful_use: opt_num(h, field::LAST_SUCCESSFUL_USE)?,
            publication_failures: num(h, field::PUBLICATION_FAILURES)?,
            operator_pinned: get(h, field::OPERATOR_PINNED) == Some("1"),
            signature_scheme: get(h, field::SIGNATURE_SCHEME)
                .map(str::parse)
                .transpose()?
                .unwrap_or_default(),
            signing_key: get(h, field::SIGNING_KEY).map(Secret::new),
            previous_secret: get(h, field::PREVIOUS_SECRET).map(Secret::new),
            previous_secret_until: opt_num(h, field::PREVIOUS_SECRET_UNTIL)?,
            timestamped_callbacks: get(h, field::TIMESTAMPED_CALLBACKS) == Some("1"),
            timestamp_header: get(h, field::TIMESTAMP_HEADER) == Some("1"),
            disabled_reason: get(h, field::DISABLED_REASON).map(str::parse).transpose()?,
            disabled_at: opt_num(h, field::DISABLED_AT)?,
            rate_limit: match opt_num(h, field::RATE_LIMIT_PER_SECOND)? {
                None => None,
                Some(per_second) => Some(RateLimit {
                    per_second,
                    burst: opt_num(h, field::RATE_LIMIT_BURST)?.unwrap_or(1),
                }),
            },
            max_in_flight: opt_num(h, field::MAX_IN_FLIGHT)?,
            ordering: Ordering::from_fields(
                get(h, lane::field::ORDERING),
                get(h, lane::field::ORDERING_KEY),
                get(h, lane::field::LANE_ON_FAILURE),
            )?,
        })
    }

    /// The hash fields to store. Absent optional values are simply not written.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            (field::ID, self.id.to_string()),
            (field::OWNER_ID, self.owner_id.clone()),
            (field::NAME, self.name.clone()),
            (field::URL, self.url.clone()),
            (
                field::EVENTS,
                serde_json::to_string(&self.events).unwrap_or_else(|_| "[]".into()),
            ),
            (field::STATUS, self.status.as_str().to_owned()),
            (field::CHALLENGES_SENT, self.challenges_sent.to_string()),
            (field::TIMEOUT_COUNT, self.timeout_count.to_string()),
            (field::CREATED_AT, self.created_at.to_string()),
            (field::MODIFIED_AT, self.modified_at.to_string()),
            (
                field::PUBLICATION_FAILURES,
                self.publication_failures.to_string(),
            ),
            (
                field::OPERATOR_PINNED,
                if self.operator_pinned { "1" } else { "0" }.to_owned(),
            ),
            (
                field::SIGNATURE_SCHEME,
                self.signature_scheme.as_str().to_owned(),
            ),
        ];
        if let Some(t) = &self.threat_model_id {
            v.push((field::THREAT_MODEL_ID, t.clone()));
        }
        if let Some(s) = &self.secret {
            v.push((field::SECRET, s.clone()));
        }
        if let Some(c) = &self.challenge {
            v.push((field::CHALLENGE, c.clone()));
        }
        if let Some(k) = &self.signing_key {
            v.push((field::SIGNING_KEY, k.expose().to_owned()));
        }
        // Written only when on, so records of TMI's shape stay as they were.
        if self.timestamped_callbacks {
            v.push((field::TIMESTAMPED_CALLBACKS, "1".to_owned()));
        }
        if self.timestamp_header {
            v.push((field::TIMESTAMP_HEADER, "1".to_owned()));
        }
        if let (Some(p), Some(until)) = (&self.previous_secret, self.previous_secret_until) {
            v.push((field::PREVIOUS_SECRET, p.expose().to_owned()));
            v.push((field::PREVIOUS_SECRET_UNTIL, until.to_string()));
        }
        if let Some(t) = self.last_successful_use {
            v.push((field::LAST_SUCCESSFUL_USE, t.to_string()));
        }
        if let (Some(r), Some(at)) = (self.disabled_reason, self.disabled_at) {
            v.push((field::DISABLED_REASON, r.as_str().to_owned()));
            v.push((field::DISABLED_AT, at.to_string()));
        }
        v.extend(self.limit_fields().into_iter().flatten());
        if let Some(o) = &self.ordering {
            v.extend(o.to_fields());
        }
        v
    }

    /// The limit fields: each `Some` to write, `None` to delete (an unlimited subscription writes none).
    pub fn limit_fields(&self) -> [Option<(&'static str, String)>; 3] {
        let rate = self.rate_limit;
        [
            rate.map(|r| (field::RATE_LIMIT_PER_SECOND, r.per_second.to_string())),
            rate.map(|r| (field::RATE_LIMIT_BURST, r.burst.to_string())),
            self.max_in_flight
                .map(|n| (field::MAX_IN_FLIGHT, n.to_string())),
        ]
    }

    /// Whether deliveries ask the Redis limiter first (any limit set).
    pub fn is_limited(&self) -> bool {
        self.rate_limit.is_some() || self.max_in_flight.is_some()
    }

    /// The secret replaced by the last rotation, while its grace period lasts at `now`.
    pub fn previous_secret_at(&self, now: Micros) -> Option<&str> {
        match (&self.previous_secret, self.previous_secret_until) {
            (Some(p), Some(until)) if now < until => Some(p.expose()),
            _ => None,
        }
    }

    /// Every secret that signs deliveries and verifies callbacks at `now`: the current one first, then the
    /// previous one during a rotation's grace period. Empty for an unsigned subscription.
    pub fn live_secrets(&self, now: Micros) -> Vec<&str> {
        self.secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .into_iter()
            .chain(self.previous_secret_at(now))
            .collect()
    }

    /// Whether an event of `event_type` for threat model `tm` (and resource owner `owner`) is for this
    /// subscription. `require_owner` applies TMI's rule that only the owner's own resources match
    /// (`system_audit.*` broadcasts are exempt).
    pub fn matches(
        &self,
        event_type: &str,
        tm: Option<&str>,
        owner: Option<&str>,
        require_owner: bool,
    ) -> bool {
        if self.status != SubscriptionStatus::Active {
            return false;
        }
        if !self
            .events
            .iter()
            .any(|e| e == event_type || e == crate::event::WILDCARD)
        {
            return false;
        }
        if crate::event::is_broadcast(event_type) {
            return true;
        }
        if let Some(want) = &self.threat_model_id
            && tm != Some(want.as_str())
        {
            return false;
        }
        !require_owner || owner == Some(self.owner_id.as_str())
    }
}

#[cfg(test)]
mod tests;
