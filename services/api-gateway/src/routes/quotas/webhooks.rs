//! `/admin/quotas/webhooks[/{user_id}]`: per-owner overrides of the `[quotas]` webhook defaults.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use delivery_model::quota::WebhookQuota;
use delivery_model::time::now_micros;
use serde::{Deserialize, Serialize};

use super::{
    MAX_EVENTS_PER_MINUTE, MAX_SUBSCRIPTION_REQUESTS_PER_DAY, MAX_SUBSCRIPTION_REQUESTS_PER_MINUTE,
    MAX_SUBSCRIPTIONS, UserIdPath, bounded, quota_not_found, quota_page, stamp,
};
use crate::auth::Admin;
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::state::AppState;

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
