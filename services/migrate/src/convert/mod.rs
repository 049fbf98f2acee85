//! TMI's rows, as read from PostgreSQL, turned into Hookline's records. Pure functions: every rule about what
//! a valid row is lives here, with its unit tests.
//!
//! TMI stores its `StringArray` as `text` holding a JSON array (`["a","b"]`); its reader also accepts
//! PostgreSQL array literals (`{a,b}`), and so does [`parse_string_array`]. `jsonb` columns arrive as
//! PostgreSQL's text form of the value (the query casts them), which is also what TMI read and sent.

use std::time::Duration;

use delivery_model::addon::{Addon, AddonParameter};
use delivery_model::delivery::{DeliveryRecord, DeliveryStatus};
use delivery_model::ids::{AddonId, DeliveryId, SubscriptionId};
use delivery_model::quota::{AddonQuota, WebhookQuota};
use delivery_model::store::import::{DenyPatternType, LegacyPlacement, UrlDenyEntry};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::Micros;

/// Why a row cannot be imported (shown to the operator with the table and id).
pub type Reason = String;

/// A `webhook_subscriptions` row. Timestamps are microseconds since the epoch (the query converts them).
/// `Debug` is by hand: the secret and challenge are redacted.
#[derive(Clone, Default)]
pub struct SubscriptionRow {
    pub id: String,
    pub owner_internal_uuid: String,
    pub threat_model_id: Option<String>,
    pub name: String,
    pub url: String,
    pub events: String,
    pub secret: Option<String>,
    pub status: Option<String>,
    pub challenge: Option<String>,
    pub challenges_sent: Option<i64>,
    pub timeout_count: Option<i64>,
    pub created_at: Micros,
    pub modified_at: Micros,
    pub last_successful_use: Option<Micros>,
    pub publication_failures: Option<i64>,
    pub operator_pinned: bool,
}

/// An `addons` row.
#[derive(Debug, Clone, Default)]
pub struct AddonRow {
    pub id: String,
    pub created_at: Micros,
    pub name: String,
    pub webhook_id: String,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub objects: Option<String>,
    pub threat_model_id: Option<String>,
    /// `jsonb` as text.
    pub parameters: Option<String>,
}

/// A `webhook_deliveries` row (TMI's legacy table).
#[derive(Debug, Clone, Default)]
pub struct DeliveryRow {
    pub id: String,
    pub subscription_id: String,
    pub event_type: String,
    /// `jsonb` as text: the body to send.
    pub payload: String,
    pub status: Option<String>,
    pub attempts: Option<i64>,
    pub next_retry_at: Option<Micros>,
    pub last_error: Option<String>,
    pub created_at: Micros,
    pub delivered_at: Option<Micros>,
}

/// A `webhook_url_deny_list` row.
#[derive(Debug, Clone, Default)]
pub struct DenyRow {
    pub id: String,
    pub pattern: String,
    pub pattern_type: Option<String>,
    pub description: Option<String>,
    pub created_at: Micros,
}

/// A `webhook_quotas` row.
#[derive(Debug, Clone, Default)]
pub struct WebhookQuotaRow {
    pub owner_id: String,
    pub max_subscriptions: i64,
    pub max_events_per_minute: i64,
    pub max_subscription_requests_per_minute: i64,
    pub max_subscription_requests_per_day: i64,
    pub created_at: Micros,
    pub modified_at: Micros,
}

/// An `addon_invocation_quotas` row.
#[derive(Debug, Clone, Default)]
pub struct AddonQuotaRow {
    pub owner_internal_uuid: String,
    pub max_active_invocations: i64,
    pub max_invocations_per_hour: i64,
    pub created_at: Micros,
    pub modified_at: Micros,
}

/// Parses TMI's `StringArray` text: a JSON array of strings, or a PostgreSQL array literal (`{a,b}`, with
/// `"…"` quoting and `\` escapes). Empty text is an empty list.
///
/// # Errors
/// Anything else, with the reason.
pub fn parse_string_array(text: &str) -> Result<Vec<String>, Reason> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(Vec::new());
    }
    if t.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(t)
            .map_err(|e| format!("not a JSON array of strings ({e}): {}", excerpt(t)));
    }
    let Some(inner) = t.strip_prefix('{').and_then(|r| r.strip_suffix('}')) else {
        return Err(format!(
            "neither a JSON array nor a PostgreSQL array literal: {}",
            excerpt(t)
        ));
    };
    parse_pg_array(inner)
        .ok_or_else(|| format!("malformed PostgreSQL array literal: {}", excerpt(t)))
}

/// The elements between the braces of a one-dimensional array literal.
fn parse_pg_array(inner: &str) -> Option<Vec<String>> {
    let mut items = Vec::new();
    if inner.trim().is_empty() {
        return Some(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => item.push(chars.next()?),
                    '"' => break,
                    c => item.push(c),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                // Nested arrays and stray quotes are not TMI's one-dimensional text arrays.
                if matches!(c, '{' | '}' | '"') {
                    return None;
                }
                item.push(c);
                chars.next();
            }
            let trimmed = item.trim();
            if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("NULL") {
                return None;
            }
            item = trimmed.to_owned();
        }
        items.push(item);
        match chars.next() {
            None => return Some(items),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

fn excerpt(s: &str) -> String {
    let cut: String = s.chars().take(60).collect();
    if cut.len() < s.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

fn count(v: Option<i64>, column: &str) -> Result<u32, Reason> {
    let v = v.unwrap_or(0);
    u32::try_from(v).map_err(|_| format!("{column} is {v}, not a count"))
}

fn uuid<T: std::str::FromStr>(v: &str, column: &str) -> Result<T, Reason> {
    v.trim()
        .parse()
        .map_err(|_| format!("{column} {v:?} is not a UUID"))
}

/// A subscription row as stored by Hookline: same id, status, secret, challenge state and counters.
///
/// # Errors
/// A bad UUID, an unknown status, a malformed or empty `events`, a missing URL or owner, a negative counter.
pub fn subscription(row: &SubscriptionRow) -> Result<Subscription, Reason> {
    let id: SubscriptionId = uuid(&row.id, "id")?;
    let status_text = row.status.as_deref().unwrap_or("pending_verification");
    let status: SubscriptionStatus = status_text
        .parse()
        .map_err(|_| format!("unknown status {status_text:?}"))?;
    let events = parse_string_array(&row.events).map_err(|e| format!("events: {e}"))?;
    if events.is_empty() {
        return Err("events: no event types".into());
    }
    if row.url.trim().is_empty() {
        return Err("url is empty".into());
    }
    if row.owner_internal_uuid.trim().is_empty() {
        return Err("owner_internal_uuid is empty".into());
    }
    Ok(Subscription {
        id,
        owner_id: row.owner_internal_uuid.clone(),
        threat_model_id: non_empty(row.threat_model_id.clone()),
        name: row.name.clone(),
        url: row.url.clone(),
        events,
        secret: non_empty(row.secret.clone()),
        status,
        challenge: non_empty(row.challenge.clone()),
        challenges_sent: count(row.challenges_sent, "challenges_sent")?,
        timeout_count: count(row.timeout_count, "timeout_count")?,
        created_at: row.created_at,
        modified_at: row.modified_at,
        last_successful_use: row.last_successful_use,
        publication_failures: count(row.publication_failures, "publication_failures")?,
        // TMI has one scheme.
        signature_scheme: Default::default(),
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
        operator_pinned: row.operator_pinned,
    })
}

/// An add-on row as stored by Hookline. Whether its subscription exists is checked by the caller.
///
/// # Errors
/// A bad UUID, a malformed `objects` or `parameters`, an empty name.
pub fn addon(row: &AddonRow) -> Result<Addon, Reason> {
    let id: AddonId = uuid(&row.id, "id")?;
    let webhook_id: SubscriptionId = uuid(&row.webhook_id, "webhook_id")?;
    if row.name.trim().is_empty() {
        return Err("name is empty".into());
    }
    let objects = match row.objects.as_deref() {
        Some(t) => parse_string_array(t).map_err(|e| format!("objects: {e}"))?,
        None => Vec::new(),
    };
    let parameters = match row.parameters.as_deref().map(str::trim) {
        None | Some("" | "null") => Vec::new(),
        Some(t) => serde_json::from_str::<Vec<AddonParameter>>(t)
            .map_err(|e| format!("parameters: not TMI's parameter list ({e})"))?,
    };
    Ok(Addon {
        id,
        created_at: row.created_at,
        name: row.name.clone(),
        webhook_id,
        description: non_empty(row.description.clone()),
        icon: non_empty(row.icon.clone()),
        objects,
        threat_model_id: non_empty(row.threat_model_id.clone()),
        parameters,
    })
}

/// What to do with one legacy delivery row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryPlan {
    Import(Box<DeliveryRecord>, LegacyPlacement),
    /// Its last write is older than the terminal TTL: Hookline would have expired it already.
    TooOld,
}

/// The instant a legacy row was last written: `delivered_at`, else `created_at` (the table has no other).
pub fn last_write(created_at: Micros, delivered_at: Option<Micros>) -> Micros {
    delivered_at.unwrap_or(created_at).max(created_at)
}

/// Whether a row last written at `last_write` is past `terminal_ttl` at `now`.
pub fn is_too_old(last_write: Micros, now: Micros, terminal_ttl: Duration) -> bool {
    let ttl = i64::try_from(terminal_ttl.as_micros()).unwrap_or(i64::MAX);
    now.saturating_sub(last_write) >= ttl
}

/// A legacy delivery row as a unified record and its placement: `pending` ones are enqueued when due and
/// scheduled when their `next_retry_at` is ahead; `delivered` / `failed` ones keep their status and live
/// for what is left of `terminal_ttl` since their last write. Whether the subscription exists is checked by
/// the caller.
///
/// # Errors
/// A bad UUID, an unknown status, an empty event type.
pub fn delivery(
    row: &DeliveryRow,
    now: Micros,
    terminal_ttl: Duration,
) -> Result<DeliveryPlan, Reason> {
    let id: DeliveryId = uuid(&row.id, "id")?;
    let subscription_id: SubscriptionId = uuid(&row.subscription_id, "subscription_id")?;
    let status_text = row.status.as_deref().unwrap_or("pending");
    let status = match status_text {
        "pending" => DeliveryStatus::Pending,
        "delivered" => DeliveryStatus::Delivered,
        "failed" => DeliveryStatus::Failed,
        other => return Err(format!("unknown status {other:?}")),
    };
    if row.event_type.trim().is_empty() {
        return Err("event_type is empty".into());
    }
    let last = last_write(row.created_at, row.delivered_at);
    if is_too_old(last, now, terminal_ttl) {
        return Ok(DeliveryPlan::TooOld);
    }
    let attempts = count(row.attempts, "attempts")?;
    let placement = match status {
        DeliveryStatus::Pending => match row.next_retry_at {
            Some(at) if at > now => LegacyPlacement::Schedule { due_ms: at / 1000 },
            _ => LegacyPlacement::Enqueue,
        },
        _ => {
            let ttl = i64::try_from(terminal_ttl.as_micros()).unwrap_or(i64::MAX);
            let left = ttl.saturating_sub(now.saturating_sub(last)).max(1_000_000);
            LegacyPlacement::Keep {
                ttl: Duration::from_micros(u64::try_from(left).unwrap_or(u64::MAX)),
            }
        }
    };
    let mut record = DeliveryRecord::new_pending(
        id,
        subscription_id,
        row.event_type.clone(),
        row.payload.clone(),
        row.created_at,
    );
    record.status = status;
    record.attempts = attempts;
    record.last_error = non_empty(row.last_error.clone());
    record.last_activity_at = last;
    match status {
        // A due retry keeps no retry time: the worker's due check would otherwise hold back an overdue one.
        DeliveryStatus::Pending => {
            record.next_retry_at = row.next_retry_at.filter(|at| *at > now);
        }
        _ => record.delivered_at = row.delivered_at,
    }
    Ok(DeliveryPlan::Import(Box::new(record), placement))
}

/// A deny-list row.
///
/// # Errors
/// An empty id or pattern, an unknown `pattern_type`, a regex that does not compile.
pub fn deny_entry(row: &DenyRow) -> Result<UrlDenyEntry, Reason> {
    if row.id.trim().is_empty() {
        return Err("id is empty".into());
    }
    if row.pattern.trim().is_empty() {
        return Err("pattern is empty".into());
    }
    let kind_text = row.pattern_type.as_deref().unwrap_or("glob");
    let pattern_type: DenyPatternType = kind_text
        .parse()
        .map_err(|_| format!("unknown pattern_type {kind_text:?}"))?;
    if pattern_type == DenyPatternType::Regex
        && let Err(e) = regex::Regex::new(&row.pattern)
    {
        return Err(format!("pattern is not a valid regex: {e}"));
    }
    Ok(UrlDenyEntry {
        id: row.id.clone(),
        pattern: row.pattern.clone(),
        pattern_type,
        description: non_empty(row.description.clone()),
        created_at: row.created_at,
    })
}

fn limit(v: i64, column: &str) -> Result<u32, Reason> {
    u32::try_from(v)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("{column} is {v}, not a positive limit"))
}

/// A `webhook_quotas` row.
///
/// # Errors
/// An empty owner or a limit below 1.
pub fn webhook_quota(row: &WebhookQuotaRow) -> Result<WebhookQuota, Reason> {
    if row.owner_id.trim().is_empty() {
        return Err("owner_id is empty".into());
    }
    Ok(WebhookQuota {
        owner_id: row.owner_id.clone(),
        max_subscriptions: limit(row.max_subscriptions, "max_subscriptions")?,
        max_events_per_minute: limit(row.max_events_per_minute, "max_events_per_minute")?,
        max_subscription_requests_per_minute: limit(
            row.max_subscription_requests_per_minute,
            "max_subscription_requests_per_minute",
        )?,
        max_subscription_requests_per_day: limit(
            row.max_subscription_requests_per_day,
            "max_subscription_requests_per_day",
        )?,
        created_at: row.created_at,
        modified_at: row.modified_at,
    })
}

/// An `addon_invocation_quotas` row.
///
/// # Errors
/// An empty owner or a limit below 1.
pub fn addon_quota(row: &AddonQuotaRow) -> Result<AddonQuota, Reason> {
    if row.owner_internal_uuid.trim().is_empty() {
        return Err("owner_internal_uuid is empty".into());
    }
    Ok(AddonQuota {
        owner_id: row.owner_internal_uuid.clone(),
        max_active_invocations: limit(row.max_active_invocations, "max_active_invocations")?,
        max_invocations_per_hour: limit(row.max_invocations_per_hour, "max_invocations_per_hour")?,
        created_at: row.created_at,
        modified_at: row.modified_at,
    })
}

#[cfg(test)]
mod tests;
