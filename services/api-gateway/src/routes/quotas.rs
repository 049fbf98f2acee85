//! `/admin/quotas/webhooks[/{user_id}]` and `/admin/quotas/addons[/{user_id}]`: TMI's per-owner quota
//! overrides (admin only), and the subscription-create quota the subscription routes enforce with them.
//!
//! An owner without an override gets the configured defaults (`[quotas]` for webhooks, `[addons]` for
//! invocations); `GET` of such an owner answers those defaults, as TMI does (never 404). `PUT` creates (201)
//! or replaces (200) an override within TMI's bounds; `DELETE` removes it (404 when there is none). The
//! lists show overrides only, newest first, with the defaults alongside.
//!
//! `max_events_per_minute` is stored and shown but, as in TMI, enforced nowhere.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError as _, web};
use delivery_model::quota::{AddonQuota, WebhookQuota};
use delivery_model::store::quotas::{
    DAY_WINDOW_SECS, MINUTE_WINDOW_SECS, MinuteWindow, QuotaCreate, SubscriptionLimits,
};
use delivery_model::time::{Micros, format_micros, now_micros};
use serde::{Deserialize, Serialize};
use std::future::{Ready, ready};

use crate::AppState;
use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, parse_uuid};
use crate::routes::{ListQuery, int_param};

/// Path parameter of the quota routes (TMI's `UserIdPathParam`).
pub const USER_ID_PARAM: &str = "user_id";
/// `limit` of the quota lists when the query has none (TMI's handler default).
const DEFAULT_QUOTA_LIMIT: u64 = 50;
/// Largest `limit` of the quota lists (TMI's `LimitQueryParam`).
const MAX_QUOTA_LIMIT: u64 = 1000;
/// Largest `offset` of the quota lists (TMI's `OffsetQueryParam`).
const MAX_QUOTA_OFFSET: u64 = 1_000_000;
/// `created_at`/`modified_at` of an owner without an override: TMI answers its defaults with Go's zero time.
const NEVER_SET: &str = "0001-01-01T00:00:00Z";
/// `Retry-After` of the subscription-count refusal (TMI's), seconds.
const COUNT_RETRY_AFTER_SECS: u64 = 60;

// TMI's admin bounds (`api/quota_limits.go`).
const MAX_SUBSCRIPTIONS: i64 = 100;
const MAX_EVENTS_PER_MINUTE: i64 = 1000;
const MAX_SUBSCRIPTION_REQUESTS_PER_MINUTE: i64 = 100;
const MAX_SUBSCRIPTION_REQUESTS_PER_DAY: i64 = 10_000;
const MAX_ACTIVE_INVOCATIONS: i64 = 10;
const MAX_INVOCATIONS_PER_HOUR: i64 = 1000;

/// The `{user_id}` of the path, lower-cased (the form owner ids are compared in).
#[derive(Clone, Debug)]
pub struct UserIdPath(pub String);

impl FromRequest for UserIdPath {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(
            req.match_info()
                .get(USER_ID_PARAM)
                .and_then(parse_uuid)
                .map(|u| UserIdPath(u.to_string()))
                .ok_or_else(|| ApiError::invalid_uuid(USER_ID_PARAM)),
        )
    }
}

/// TMI's bound check (`ValidateQuotaValue`), with its sentences; returns the value as stored.
fn bounded(field: &str, value: i64, max: i64) -> ApiResult<u32> {
    if value < 1 {
        return Err(ApiError::invalid_input(format!(
            "{field} must be at least 1 (got {value})"
        )));
    }
    if value > max {
        return Err(ApiError::invalid_input(format!(
            "{field} exceeds maximum allowed value of {max} (got {value})"
        )));
    }
    u32::try_from(value).map_err(|_| ApiError::invalid_input(format!("{field} is out of range")))
}

/// Pagination of the quota lists (TMI's `LimitQueryParam` / `OffsetQueryParam` bounds).
fn quota_page(req: &HttpRequest) -> ApiResult<(u64, u64)> {
    let q = ListQuery::parse(req)?;
    Ok((
        int_param(
            "limit",
            q.limit.as_deref(),
            DEFAULT_QUOTA_LIMIT,
            0,
            MAX_QUOTA_LIMIT,
        )?,
        int_param("offset", q.offset.as_deref(), 0, 0, MAX_QUOTA_OFFSET)?,
    ))
}

fn stamp(t: Option<Micros>) -> String {
    t.map_or_else(|| NEVER_SET.to_owned(), format_micros)
}

fn quota_not_found() -> ApiError {
    ApiError::handler(StatusCode::NOT_FOUND, "quota not found")
}

// ---- webhook quotas ----------------------------------------------------------------------------------------

/// `WebhookQuota`.
#[derive(Serialize)]
struct WebhookQuotaView {
    owner_id: String,
    max_subscriptions: u32,
    max_events_per_minute: u32,
    max_subscription_requests_per_minute: u32,
    max_subscription_requests_per_day: u32,
    created_at: String,
    modified_at: String,
}

impl WebhookQuotaView {
    fn of(q: &WebhookQuota) -> Self {
        Self {
            owner_id: q.owner_id.clone(),
            max_subscriptions: q.max_subscriptions,
            max_events_per_minute: q.max_events_per_minute,
            max_subscription_requests_per_minute: q.max_subscription_requests_per_minute,
            max_subscription_requests_per_day: q.max_subscription_requests_per_day,
            created_at: stamp(Some(q.created_at)),
            modified_at: stamp(Some(q.modified_at)),
        }
    }

    fn defaults(owner: String, d: &WebhookDefaults) -> Self {
        Self {
            owner_id: owner,
            max_subscriptions: d.max_subscriptions,
            max_events_per_minute: d.max_events_per_minute,
            max_subscription_requests_per_minute: d.max_subscription_requests_per_minute,
            max_subscription_requests_per_day: d.max_subscription_requests_per_day,
            created_at: stamp(None),
            modified_at: stamp(None),
        }
    }
}

/// The `defaults` object of `ListWebhookQuotasResponse`.
#[derive(Serialize)]
struct WebhookDefaults {
    max_subscriptions: u32,
    max_events_per_minute: u32,
    max_subscription_requests_per_minute: u32,
    max_subscription_requests_per_day: u32,
}

fn webhook_defaults(state: &AppState) -> WebhookDefaults {
    let d = &state.quota_defaults;
    WebhookDefaults {
        max_subscriptions: d.max_subscriptions,
        max_events_per_minute: d.max_events_per_minute,
        max_subscription_requests_per_minute: d.max_subscription_requests_per_minute,
        max_subscription_requests_per_day: d.max_subscription_requests_per_day,
    }
}

/// `ListWebhookQuotasResponse`.
#[derive(Serialize)]
struct WebhookQuotaList {
    quotas: Vec<WebhookQuotaView>,
    total: u64,
    limit: u64,
    offset: u64,
    defaults: WebhookDefaults,
}

/// `WebhookQuotaUpdate`. Numbers are read wide so that out-of-range values get TMI's bound sentences.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookQuotaUpdate {
    max_subscriptions: i64,
    max_events_per_minute: i64,
    max_subscription_requests_per_minute: i64,
    max_subscription_requests_per_day: i64,
}

/// `GET /admin/quotas/webhooks`
pub async fn list_webhook_quotas(
    _admin: Admin,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let (limit, offset) = quota_page(&req)?;
    let page = state.store.list_webhook_quotas(offset, limit).await?;
    Ok(HttpResponse::Ok().json(WebhookQuotaList {
        quotas: page.items.iter().map(WebhookQuotaView::of).collect(),
        total: page.total,
        limit,
        offset,
        defaults: webhook_defaults(&state),
    }))
}

/// `GET /admin/quotas/webhooks/{user_id}`: the override, else the defaults.
pub async fn get_webhook_quota(
    UserIdPath(owner): UserIdPath,
    _admin: Admin,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let view = match state.store.get_webhook_quota(&owner).await? {
        Some(q) => WebhookQuotaView::of(&q),
        None => WebhookQuotaView::defaults(owner, &webhook_defaults(&state)),
    };
    Ok(HttpResponse::Ok().json(view))
}

/// `PUT /admin/quotas/webhooks/{user_id}`: 201 when new, 200 when replaced (its `created_at` kept).
pub async fn put_webhook_quota(
    UserIdPath(owner): UserIdPath,
    _admin: Admin,
    state: web::Data<AppState>,
    JsonBody(input): JsonBody<WebhookQuotaUpdate>,
) -> ApiResult<HttpResponse> {
    let max_subscriptions = bounded(
        "max_subscriptions",
        input.max_subscriptions,
        MAX_SUBSCRIPTIONS,
    )?;
    let max_events_per_minute = bounded(
        "max_events_per_minute",
        input.max_events_per_minute,
        MAX_EVENTS_PER_MINUTE,
    )?;
    let per_minute = bounded(
        "max_subscription_requests_per_minute",
        input.max_subscription_requests_per_minute,
        MAX_SUBSCRIPTION_REQUESTS_PER_MINUTE,
    )?;
    let per_day = bounded(
        "max_subscription_requests_per_day",
        input.max_subscription_requests_per_day,
        MAX_SUBSCRIPTION_REQUESTS_PER_DAY,
    )?;
    let now = now_micros();
    // Two concurrent PUTs may both see "new": both answer 201 and the later one's values win — harmless.
    let existing = state.store.get_webhook_quota(&owner).await?;
    let q = WebhookQuota {
        owner_id: owner,
        max_subscriptions,
        max_events_per_minute,
        max_subscription_requests_per_minute: per_minute,
        max_subscription_requests_per_day: per_day,
        created_at: existing.as_ref().map_or(now, |e| e.created_at),
        modified_at: now,
    };
    state.store.put_webhook_quota(&q).await?;
    tracing::info!(owner.id = %q.owner_id, "webhook quota set");
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(HttpResponse::build(status).json(WebhookQuotaView::of(&q)))
}

/// `DELETE /admin/quotas/webhooks/{user_id}`: the owner reverts to the defaults.
pub async fn delete_webhook_quota(
    UserIdPath(owner): UserIdPath,
    _admin: Admin,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    if !state.store.delete_webhook_quota(&owner).await? {
        return Err(quota_not_found());
    }
    tracing::info!(owner.id = %owner, "webhook quota deleted");
    Ok(HttpResponse::NoContent().finish())
}

// ---- add-on invocation quotas ------------------------------------------------------------------------------

/// `AddonInvocationQuota`.
#[derive(Serialize)]
struct AddonQuotaView {
    owner_id: String,
    max_active_invocations: u32,
    max_invocations_per_hour: u32,
    created_at: String,
    modified_at: String,
}

impl AddonQuotaView {
    fn of(q: &AddonQuota) -> Self {
        Self {
            owner_id: q.owner_id.clone(),
            max_active_invocations: q.max_active_invocations,
            max_invocations_per_hour: q.max_invocations_per_hour,
            created_at: stamp(Some(q.created_at)),
            modified_at: stamp(Some(q.modified_at)),
        }
    }
}

/// The `defaults` object of `ListAddonQuotasResponse`.
#[derive(Serialize)]
struct AddonDefaults {
    max_active_invocations: u32,
    max_invocations_per_hour: u32,
}

fn addon_defaults(state: &AppState) -> AddonDefaults {
    AddonDefaults {
        max_active_invocations: state.addon_limits.max_active,
        max_invocations_per_hour: state.addon_limits.max_per_hour,
    }
}

/// `ListAddonQuotasResponse`.
#[derive(Serialize)]
struct AddonQuotaList {
    quotas: Vec<AddonQuotaView>,
    total: u64,
    limit: u64,
    offset: u64,
    defaults: AddonDefaults,
}

/// `AddonQuotaUpdate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddonQuotaUpdate {
    max_active_invocations: i64,
    max_invocations_per_hour: i64,
}

/// `GET /admin/quotas/addons`
pub async fn list_addon_quotas(
    _admin: Admin,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let (limit, offset) = quota_page(&req)?;
    let page = state.store.list_addon_quotas(offset, limit).await?;
    Ok(HttpResponse::Ok().json(AddonQuotaList {
        quotas: page.items.iter().map(AddonQuotaView::of).collect(),
        total: page.total,
        limit,
        offset,
        defaults: addon_defaults(&state),
    }))
}

/// `GET /admin/quotas/addons/{user_id}`: the override, else the defaults.
pub async fn get_addon_quota(
    UserIdPath(owner): UserIdPath,
    _admin: Admin,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let view = match state.store.get_addon_quota(&owner).await? {
        Some(q) => AddonQuotaView::of(&q),
        None => AddonQuotaView {
            owner_id: owner,
            max_active_invocations: state.addon_limits.max_active,
            max_invocations_per_hour: state.addon_limits.max_per_hour,
            created_at: stamp(None),
            modified_at: stamp(None),
        },
    };
    Ok(HttpResponse::Ok().json(view))
}

/// `PUT /admin/quotas/addons/{user_id}`: 201 when new, 200 when replaced (its `created_at` kept).
pub async fn put_addon_quota(
    UserIdPath(owner): UserIdPath,
    _admin: Admin,
    state: web::Data<AppState>,
    JsonBody(input): JsonBody<AddonQuotaUpdate>,
) -> ApiResult<HttpResponse> {
    let max_active = bounded(
        "max_active_invocations",
        input.max_active_invocations,
        MAX_ACTIVE_INVOCATIONS,
    )?;
    let max_per_hour = bounded(
        "max_invocations_per_hour",
        input.max_invocations_per_hour,
        MAX_INVOCATIONS_PER_HOUR,
    )?;
    let now = now_micros();
    let existing = state.store.get_addon_quota(&owner).await?;
    let q = AddonQuota {
        owner_id: owner,
        max_active_invocations: max_active,
        max_invocations_per_hour: max_per_hour,
        created_at: existing.as_ref().map_or(now, |e| e.created_at),
        modified_at: now,
    };
    state.store.put_addon_quota(&q).await?;
    tracing::info!(owner.id = %q.owner_id, "add-on quota set");
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(HttpResponse::build(status).json(AddonQuotaView::of(&q)))
}

/// `DELETE /admin/quotas/addons/{user_id}`: the invoker reverts to `[addons]`.
pub async fn delete_addon_quota(
    UserIdPath(owner): UserIdPath,
    _admin: Admin,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    if !state.store.delete_addon_quota(&owner).await? {
        return Err(quota_not_found());
    }
    tracing::info!(owner.id = %owner, "add-on quota deleted");
    Ok(HttpResponse::NoContent().finish())
}

// ---- the subscription-create quota -------------------------------------------------------------------------

/// The limits a create by `owner` is checked against: the owner's override, else `[quotas]`.
///
/// # Errors
/// Redis failure.
pub async fn subscription_limits(state: &AppState, owner: &str) -> ApiResult<SubscriptionLimits> {
    Ok(match state.store.get_webhook_quota(owner).await? {
        Some(q) => SubscriptionLimits {
            max_subscriptions: q.max_subscriptions,
            per_minute: q.max_subscription_requests_per_minute,
            per_day: q.max_subscription_requests_per_day,
        },
        None => SubscriptionLimits {
            max_subscriptions: state.quota_defaults.max_subscriptions,
            per_minute: state.quota_defaults.max_subscription_requests_per_minute,
            per_day: state.quota_defaults.max_subscription_requests_per_day,
        },
    })
}

/// TMI's `X-RateLimit-*` headers of a create, from the per-minute window: the per-minute limit, what is
/// left of it, and when the window frees up (oldest entry + 60 s, or now + 60 s when empty).
fn rate_headers(
    limits: &SubscriptionLimits,
    minute: &MinuteWindow,
    now_secs: i64,
) -> [(HeaderName, String); 3] {
    let remaining = u64::from(limits.per_minute).saturating_sub(minute.count);
    let reset = minute.oldest_secs.unwrap_or(now_secs) + MINUTE_WINDOW_SECS;
    [
        (
            HeaderName::from_static("x-ratelimit-limit"),
            limits.per_minute.to_string(),
        ),
        (
            HeaderName::from_static("x-ratelimit-remaining"),
            remaining.to_string(),
        ),
        (
            HeaderName::from_static("x-ratelimit-reset"),
            reset.to_string(),
        ),
    ]
}

/// Adds the rate headers to a response.
pub fn with_rate_headers(
    mut res: HttpResponse,
    limits: &SubscriptionLimits,
    minute: &MinuteWindow,
    now: Micros,
) -> HttpResponse {
    for (name, value) in rate_headers(limits, minute, now.div_euclid(1_000_000)) {
        if let Ok(v) = HeaderValue::from_str(&value) {
            res.headers_mut().insert(name, v);
        }
    }
    res
}

/// Seconds until a window whose oldest entry is at `oldest_secs` frees a slot (at least 1).
fn until_free(oldest_secs: Option<i64>, window: i64, now: Micros) -> u64 {
    let left = oldest_secs.map_or(window, |o| o + window - now.div_euclid(1_000_000));
    u64::try_from(left.max(1)).unwrap_or(1)
}

fn rate_limited(description: String, retry_after_secs: u64) -> ApiError {
    ApiError::TooManyRequests {
        code: "rate_limit_exceeded",
        description,
        details: None,
        retry_after_secs: Some(retry_after_secs),
    }
}

/// The 429 of a refused create (TMI's bodies; the per-day sentence names the per-day limit, where TMI's
/// names the per-minute one), with the rate headers. `None` for a create that happened.
pub fn refusal(
    outcome: &QuotaCreate,
    limits: &SubscriptionLimits,
    now: Micros,
) -> Option<HttpResponse> {
    let (err, minute) = match *outcome {
        QuotaCreate::Created { .. } => return None,
        QuotaCreate::SubscriptionLimit { current, minute } => (
            rate_limited(
                format!(
                    "subscription limit exceeded: {current}/{max} (limit: {max})",
                    max = limits.max_subscriptions
                ),
                COUNT_RETRY_AFTER_SECS,
            ),
            minute,
        ),
        QuotaCreate::MinuteLimit {
            oldest_secs,
            minute,
            ..
        } => (
            rate_limited(
                format!(
                    "subscription request rate limit exceeded: {n} requests per minute (limit: {n}/minute)",
                    n = limits.per_minute
                ),
                until_free(oldest_secs, MINUTE_WINDOW_SECS, now),
            ),
            minute,
        ),
        QuotaCreate::DayLimit {
            oldest_secs,
            minute,
            ..
        } => (
            rate_limited(
                format!(
                    "subscription request rate limit exceeded: {n} requests per day (limit: {n}/day)",
                    n = limits.per_day
                ),
                until_free(oldest_secs, DAY_WINDOW_SECS, now),
            ),
            minute,
        ),
    };
    let res = err.error_response();
    Some(with_rate_headers(res, limits, &minute, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header;

    fn retry_after(res: &HttpResponse) -> Option<&str> {
        res.headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
    }

    const LIMITS: SubscriptionLimits = SubscriptionLimits {
        max_subscriptions: 10,
        per_minute: 10,
        per_day: 20,
    };

    fn code(r: ApiResult<u32>) -> (&'static str, String) {
        match r {
            Err(ApiError::BadRequest { code, description }) => (code, description),
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn bounds_use_tmis_sentences() {
        assert_eq!(bounded("max_subscriptions", 1, 100).ok(), Some(1));
        assert_eq!(bounded("max_subscriptions", 100, 100).ok(), Some(100));
        assert_eq!(
            code(bounded("max_subscriptions", 0, 100)),
            (
                "invalid_input",
                "max_subscriptions must be at least 1 (got 0)".to_owned()
            )
        );
        assert_eq!(
            code(bounded("max_subscriptions", 101, 100)).1,
            "max_subscriptions exceeds maximum allowed value of 100 (got 101)"
        );
        assert!(bounded("x", i64::MAX, i64::MAX).is_err());
    }

    #[test]
    fn rate_headers_from_the_minute_window() {
        let h = rate_headers(
            &LIMITS,
            &MinuteWindow {
                count: 3,
                oldest_secs: Some(1000),
            },
            1010,
        );
        let v: Vec<&str> = h.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(v, ["10", "7", "1060"]);
        let h = rate_headers(
            &LIMITS,
            &MinuteWindow {
                count: 12,
                oldest_secs: None,
            },
            1010,
        );
        let v: Vec<&str> = h.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(v, ["10", "0", "1070"]);
    }

    #[actix_web::test]
    async fn refusals_are_tmis_429s() {
        let now = 1_000_000 * 5000;
        let minute = MinuteWindow {
            count: 10,
            oldest_secs: Some(4970),
        };
        assert!(refusal(&QuotaCreate::Created { minute }, &LIMITS, now).is_none());
        let cases = [
            (
                QuotaCreate::SubscriptionLimit {
                    current: 10,
                    minute,
                },
                "subscription limit exceeded: 10/10 (limit: 10)",
                "60",
            ),
            (
                QuotaCreate::MinuteLimit {
                    current: 10,
                    oldest_secs: Some(4970),
                    minute,
                },
                "subscription request rate limit exceeded: 10 requests per minute (limit: 10/minute)",
                "30",
            ),
            (
                QuotaCreate::DayLimit {
                    current: 20,
                    oldest_secs: Some(5000 - 86_000),
                    minute,
                },
                "subscription request rate limit exceeded: 20 requests per day (limit: 20/day)",
                "400",
            ),
        ];
        for (outcome, sentence, retry) in cases {
            let res = refusal(&outcome, &LIMITS, now).unwrap_or_else(|| panic!("refused"));
            assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(retry_after(&res), Some(retry));
            assert_eq!(
                res.headers()
                    .get("x-ratelimit-remaining")
                    .and_then(|v| v.to_str().ok()),
                Some("0")
            );
            let body = actix_web::body::to_bytes(res.into_body())
                .await
                .unwrap_or_default();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_eq!(
                v,
                serde_json::json!({"error": "rate_limit_exceeded", "error_description": sentence})
            );
        }
    }
}
