//! `/admin/quotas/addons[/{user_id}]`: per-invoker overrides of the `[addons]` invocation limits.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use delivery_model::quota::AddonQuota;
use delivery_model::time::now_micros;
use serde::{Deserialize, Serialize};

use super::{
    MAX_ACTIVE_INVOCATIONS, MAX_INVOCATIONS_PER_HOUR, UserIdPath, bounded, quota_not_found,
    quota_page, stamp,
};
use crate::auth::Admin;
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::state::AppState;

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
