//! `/admin/webhooks/deliveries[/{delivery_id}]`: TMI's admin view of delivery records, and Hookline's
//! `/admin/webhooks/deliveries/{delivery_id}/retry` (send a failed delivery again).
//!
//! The list takes TMI's `subscription_id`, `limit` and `offset`, and Hookline's filters `status`,
//! `event_type`, `addon_id`, `created_after` and `created_before` (RFC 3339, inclusive, millisecond
//! precision). It is served from the delivery indexes (see `delivery_model::store::delivery_queries`), oldest
//! first, never by scanning the keyspace as TMI does.
//!
//! Records are shown as TMI's `WebhookDelivery`: the stored payload parsed back into an object,
//! `status_percent` omitted when 0, empty optional fields omitted, `invoked_by` as a principal when the
//! record comes from an addon invocation. The internal lease fields are never shown. For operator-pinned
//! subscriptions, URLs inside `last_error` are redacted as TMI does.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use delivery_model::delivery::{DeliveryRecord, DeliveryStatus};
use delivery_model::ids::{AddonId, DeliveryId, SubscriptionId};
use delivery_model::store::delivery_queries::DeliveryFilter;
use delivery_model::store::retries::RetryResult;
use delivery_model::subscription::SubscriptionStatus;
use delivery_model::time::{format_micros, now_micros};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::extract::{DeliveryIdPath, WebhookIdPath};
use crate::routes::ListQuery;
use crate::routes::subscriptions::PINNED_URL;
use crate::state::AppState;

/// `User` principal of `invoked_by` (keys in Go's order). Hookline knows only what the token said.
#[derive(Debug, Serialize)]
struct InvokedBy<'a> {
    display_name: &'a str,
    email: &'a str,
    principal_type: &'static str,
    provider: &'static str,
    provider_id: &'static str,
}

/// `WebhookDelivery` (keys in Go's order).
#[derive(Debug, Serialize)]
pub struct DeliveryView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    addon_id: Option<AddonId>,
    attempts: u32,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<String>,
    event_type: &'a str,
    id: DeliveryId,
    #[serde(skip_serializing_if = "Option::is_none")]
    invoked_by: Option<InvokedBy<'a>>,
    last_activity_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_retry_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Map<String, Value>>,
    status: DeliveryStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_percent: Option<u8>,
    subscription_id: SubscriptionId,
}

/// Replaces every `http://…`/`https://…` run (up to whitespace) with the pinned placeholder, so a pinned
/// sink's address never leaks through an error message.
fn redact_urls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let next = ["https://", "http://"]
            .iter()
            .filter_map(|p| rest.find(p))
            .min();
        let Some(start) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        out.push_str(PINNED_URL);
        rest = &tail[end..];
    }
}

impl<'a> DeliveryView<'a> {
    /// The same view with `last_error` passed through `f` (the readers who are not administrators get
    /// internal addresses hidden: [`crate::routes::webhook_deliveries`]).
    pub(crate) fn map_last_error(mut self, f: impl FnOnce(&str) -> String) -> Self {
        self.last_error = self.last_error.as_deref().map(f);
        self
    }

    /// The API form of `r`; `pinned` when its subscription is operator-pinned.
    pub fn new(r: &'a DeliveryRecord, pinned: bool) -> Self {
        let payload = serde_json::from_str::<Value>(&r.payload)
            .ok()
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            });
        let invoked_by = r
            .invoked_by
            .as_ref()
            .filter(|i| !i.email.is_empty())
            .map(|i| InvokedBy {
                display_name: &i.name,
                email: &i.email,
                principal_type: "user",
                provider: "unknown",
                provider_id: "",
            });
        Self {
            addon_id: r.addon_id,
            attempts: r.attempts,
            created_at: format_micros(r.created_at),
            delivered_at: r.delivered_at.map(format_micros),
            event_type: &r.event_type,
            id: r.id,
            invoked_by,
            last_activity_at: format_micros(r.last_activity_at),
            last_error: r
                .last_error
                .as_deref()
                .filter(|e| !e.is_empty())
                .map(|e| if pinned { redact_urls(e) } else { e.to_owned() }),
            next_retry_at: r.next_retry_at.map(format_micros),
            payload,
            status: r.status,
            status_message: Some(r.status_message.as_str()).filter(|m| !m.is_empty()),
            status_percent: Some(r.status_percent).filter(|p| *p != 0),
            subscription_id: r.subscription_id,
        }
    }
}

/// `ListWebhookDeliveriesResponse`.
#[derive(Serialize)]
struct DeliveryList<'a> {
    deliveries: Vec<DeliveryView<'a>>,
    limit: u64,
    offset: u64,
    total: u64,
}

/// Whether each subscription of `records` is operator-pinned (a deleted one counts as not pinned).
pub(crate) async fn pinned_subscriptions(
    state: &AppState,
    records: &[DeliveryRecord],
) -> ApiResult<HashMap<SubscriptionId, bool>> {
    let mut pinned = HashMap::new();
    for r in records {
        if let Entry::Vacant(slot) = pinned.entry(r.subscription_id) {
            slot.insert(
                state
                    .store
                    .get_subscription(r.subscription_id)
                    .await?
                    .is_some_and(|s| s.operator_pinned),
            );
        }
    }
    Ok(pinned)
}

/// `GET /admin/webhooks/deliveries`
pub async fn list_deliveries(
    _admin: Admin,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let query = ListQuery::parse(&req)?;
    let page = query.pagination()?;
    let (created_after, created_before) = query.created_range()?;
    let mut filter = DeliveryFilter {
        status: query.status()?,
        event_type: query.event_type()?,
        addon: query
            .addon_id()?
            .map(|a| a.parse::<AddonId>())
            .transpose()
            .map_err(|_| ApiError::invalid_uuid("addon_id"))?,
        // The indexes are scored in milliseconds: the range is applied at that precision, bounds included.
        created_from_ms: created_after.map(|us| us.div_euclid(1000)),
        created_to_ms: created_before.map(|us| us.div_euclid(1000)),
        ..DeliveryFilter::default()
    };
    filter.subscription = match query.subscription_id()? {
        Some(id) => {
            let id: SubscriptionId = id
                .parse()
                .map_err(|_| ApiError::invalid_uuid("subscription_id"))?;
            // TMI answers 404 for a filter naming a subscription that does not exist.
            if state.store.get_subscription(id).await?.is_none() {
                return Err(ApiError::subscription_not_found());
            }
            Some(id)
        }
        None => None,
    };
    let result = state
        .store
        .query_deliveries(&filter, page.offset, page.limit)
        .await?;
    let pinned = pinned_subscriptions(&state, &result.items).await?;
    let deliveries = result
        .items
        .iter()
        .map(|r| DeliveryView::new(r, pinned.get(&r.subscription_id).copied().unwrap_or(false)))
        .collect();
    Ok(HttpResponse::Ok().json(DeliveryList {
        deliveries,
        limit: page.limit,
        offset: page.offset,
        total: result.total,
    }))
}

/// `GET /admin/webhooks/deliveries/{delivery_id}`
pub async fn get_delivery(
    DeliveryIdPath(id): DeliveryIdPath,
    _admin: Admin,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let record = state
        .store
        .get_delivery(id)
        .await?
        .ok_or_else(ApiError::delivery_not_found)?;
    one_view(&state, &record, HttpResponse::Ok()).await
}

/// `record` as the answer's body, its URLs redacted when its subscription is operator-pinned.
async fn one_view(
    state: &AppState,
    record: &DeliveryRecord,
    mut response: HttpResponseBuilder,
) -> ApiResult<HttpResponse> {
    let pinned = is_pinned(state, record).await?;
    Ok(response.json(DeliveryView::new(record, pinned)))
}

/// Whether `record`'s subscription is operator-pinned (its URLs are redacted in every answer).
async fn is_pinned(state: &AppState, record: &DeliveryRecord) -> ApiResult<bool> {
    Ok(pinned_subscriptions(state, std::slice::from_ref(record))
        .await?
        .get(&record.subscription_id)
        .copied()
        .unwrap_or(false))
}

/// `POST /admin/webhooks/deliveries/{delivery_id}/retry` (a Hookline addition; TMI has no way to send a
/// failed delivery again): a `failed` resource-change delivery of an active subscription goes back to
/// `pending` with a fresh retry budget and is queued at once, under the same id. 202 with the record as it
/// is now; 404 when it does not exist; 409 `conflict` (nothing changed) when it is not `failed`, is an add-on
/// invocation (invoke the add-on again instead), or its subscription is not active.
pub async fn retry_delivery(
    DeliveryIdPath(id): DeliveryIdPath,
    Admin(admin): Admin,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let record = match state.store.retry_delivery(id, now_micros()).await? {
        RetryResult::Queued(record) => record,
        RetryResult::Missing => return Err(ApiError::delivery_not_found()),
        RetryResult::NotFailed(status) => {
            return Err(ApiError::conflict(format!(
                "Only failed deliveries can be retried; this delivery is {status}"
            )));
        }
        RetryResult::AddonInvocation => {
            return Err(ApiError::conflict(
                "Add-on invocations cannot be retried; invoke the add-on again",
            ));
        }
        RetryResult::SubscriptionNotActive(status) => {
            return Err(ApiError::conflict(match status {
                Some(s) => format!(
                    "The delivery's subscription is {s}; only deliveries of active subscriptions can be retried"
                ),
                None => "The delivery's subscription no longer exists".to_owned(),
            }));
        }
    };
    state.metrics.deliveries_retried.inc();
    // An audit trail of who sent what again.
    tracing::info!(delivery_id = %id, subscription_id = %record.subscription_id, admin = %admin.id,
        "failed delivery queued again by an administrator");
    one_view(&state, &record, HttpResponse::Accepted()).await
}

/// One entry of `GET …/attempts` (`DeliveryAttempt` in the OpenAPI document).
#[derive(Debug, Serialize)]
struct AttemptView<'a> {
    attempt: u32,
    started_at: String,
    duration_ms: u64,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct AttemptList<'a> {
    attempts: Vec<AttemptView<'a>>,
}

/// `GET /admin/webhooks/deliveries/{delivery_id}/attempts` (a Hookline addition): the delivery's latest
/// attempts (up to 10), oldest first: when each started, how long it took, its outcome, the receiver's
/// status and the error. Errors are redacted like `last_error` for operator-pinned subscriptions.
pub async fn list_attempts(
    DeliveryIdPath(id): DeliveryIdPath,
    _admin: Admin,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let (record, log) = state
        .store
        .get_delivery_with_attempts(id)
        .await?
        .ok_or_else(ApiError::delivery_not_found)?;
    let pinned = is_pinned(&state, &record).await?;
    let attempts = log
        .iter()
        .map(|a| AttemptView {
            attempt: a.attempt,
            started_at: format_micros(a.started_at),
            duration_ms: a.duration_ms,
            outcome: &a.outcome,
            status_code: a.status_code,
            error: a
                .error
                .as_deref()
                .map(|e| if pinned { redact_urls(e) } else { e.to_owned() }),
        })
        .collect();
    Ok(HttpResponse::Ok().json(AttemptList { attempts }))
}

/// Most failed deliveries `retry-failed` retries per call, and its default.
pub const MAX_RETRY_FAILED: u64 = 1000;

/// `POST /admin/webhooks/subscriptions/{webhook_id}/retry-failed` (a Hookline addition): after a receiver's
/// outage, retries the subscription's failed deliveries created in `[created_after, created_before]` (both
/// optional, RFC 3339), oldest first, at most `limit` (1–1000, default 1000) per call, each exactly as
/// [`retry_delivery`] does. 202 `{queued, skipped, more}`: `skipped` counts failed deliveries that cannot be
/// retried (add-on invocations); call again while `more` is true. 404 for an unknown subscription, 409 when
/// it is not active.
pub async fn retry_failed(
    WebhookIdPath(id): WebhookIdPath,
    Admin(admin): Admin,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let query = ListQuery::parse(&req)?;
    let limit = super::int_param(
        "limit",
        query.limit.as_deref(),
        MAX_RETRY_FAILED,
        1,
        MAX_RETRY_FAILED,
    )?;
    let (created_after, created_before) = query.created_range()?;
    let sub = crate::routes::subscriptions::load(&state, id).await?;
    if sub.status != SubscriptionStatus::Active {
        return Err(ApiError::conflict(format!(
            "The subscription is {}; only deliveries of active subscriptions can be retried",
            sub.status
        )));
    }
    let summary = state
        .store
        .retry_failed(
            id,
            created_after.map(|us| us.div_euclid(1000)),
            created_before.map(|us| us.div_euclid(1000)),
            limit,
            now_micros(),
        )
        .await?;
    state.metrics.deliveries_retried.inc_by(summary.queued);
    tracing::info!(subscription_id = %id, admin = %admin.id, queued = summary.queued,
        skipped = summary.skipped, more = summary.more,
        "failed deliveries queued again by an administrator");
    // `RetryFailedResponse` in the OpenAPI document.
    Ok(HttpResponse::Accepted().json(summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use delivery_model::delivery::Invoker;
    use serde_json::json;

    #[test]
    fn redacts_every_url() {
        assert_eq!(
            redact_urls(
                "request failed: Post \"https://alerts.internal/x?y\": dial tcp; see http://a.b"
            ),
            "request failed: Post \"(operator-pinned) dial tcp; see (operator-pinned)"
        );
        assert_eq!(redact_urls("HTTP 500: boom"), "HTTP 500: boom");
    }

    #[test]
    fn view_shape() {
        let mut r = DeliveryRecord::new_pending(
            DeliveryId::new_v7(),
            SubscriptionId::new_v4(),
            "addon.invoked",
            r#"{"event_type":"addon.invoked","data":{"b":1,"a":2}}"#,
            1_775_044_800_000_000,
        );
        let v = serde_json::to_value(DeliveryView::new(&r, false)).unwrap_or_default();
        assert_eq!(v["status"], "pending");
        assert_eq!(v["attempts"], 0);
        assert_eq!(v["created_at"], "2026-04-01T12:00:00Z");
        assert_eq!(v["last_activity_at"], "2026-04-01T12:00:00Z");
        assert_eq!(v["payload"]["data"], json!({"a": 2, "b": 1}));
        for absent in [
            "status_percent",
            "status_message",
            "last_error",
            "next_retry_at",
            "delivered_at",
            "invoked_by",
            "addon_id",
            "lease",
            "lease_until",
        ] {
            assert!(v.get(absent).is_none(), "{absent} in {v}");
        }
        r.status_percent = 40;
        r.status_message = "Working".into();
        r.addon_id = Some(AddonId::new_v4());
        r.invoked_by = Some(Invoker {
            uuid: "u".into(),
            email: "a@example.com".into(),
            name: "Alice".into(),
            ..Default::default()
        });
        r.payload = "[1]".into();
        let v = serde_json::to_value(DeliveryView::new(&r, false)).unwrap_or_default();
        assert_eq!(v["status_percent"], 40);
        assert_eq!(v["status_message"], "Working");
        assert!(v.get("payload").is_none());
        assert_eq!(
            v["invoked_by"],
            json!({"display_name": "Alice", "email": "a@example.com", "principal_type": "user", "provider": "unknown", "provider_id": ""})
        );
    }
}
