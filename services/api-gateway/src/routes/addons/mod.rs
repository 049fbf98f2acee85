//! `/addons[/{id}[/invoke]]`: TMI's add-ons.
//!
//! Administrators create and delete add-ons; any authenticated user lists, reads and invokes them. An
//! add-on must name an existing subscription (TMI answers 500 when it does not; Hookline answers 404). Its
//! invocations are deliveries of `addon.invoked` to that subscription.
//!
//! An invocation runs TMI's checks in TMI's order — caller identity (an `email` claim is required), the body
//! schema, the size of `data`, the add-on, its object types, its declared parameters — and then one store
//! script applies the per-invoker limits and records the delivery with its input-stream entry
//! ([`Store::invoke_addon`](delivery_model::store::Store::invoke_addon)). The event-consumer routes that
//! entry to the worker, which delivers the record as it is.
//!
//! The request's `data` reaches the receiver byte for byte as the client sent it: it is kept as raw JSON and
//! spliced into the envelope's `data.user_data` (TMI re-serialises it after normalising it).
//!
//! This file holds the add-on CRUD and the add-on view; `invoke` holds `POST /addons/{id}/invoke` and
//! `limits` the 429 answers of its per-invoker limits.

mod invoke;
mod limits;

pub use invoke::{InvokeAddonRequest, invoke_addon};

use actix_web::{HttpRequest, HttpResponse, web};
use delivery_model::addon::{Addon, AddonParameter};
use delivery_model::ids::{AddonId, SubscriptionId};
use delivery_model::store::addons::{CreateAddon, DeleteAddon};
use delivery_model::time::{format_micros, now_micros};
use serde::Serialize;

use crate::addon_rules::CreateAddonRequest;
use crate::auth::{Admin, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::{AddonIdPath, JsonBody};
use crate::routes::{DEFAULT_ADDON_LIMIT, ListQuery};
use crate::state::AppState;

/// `AddonResponse` (keys in Go's order; empty values omitted, as TMI does).
#[derive(Debug, Serialize)]
pub struct AddonView<'a> {
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icon: Option<&'a str>,
    id: AddonId,
    name: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    objects: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    parameters: &'a [AddonParameter],
    #[serde(skip_serializing_if = "Option::is_none")]
    threat_model_id: Option<&'a str>,
    webhook_id: SubscriptionId,
}

impl<'a> AddonView<'a> {
    pub fn new(a: &'a Addon) -> Self {
        Self {
            created_at: format_micros(a.created_at),
            description: a.description.as_deref(),
            icon: a.icon.as_deref(),
            id: a.id,
            name: &a.name,
            objects: &a.objects,
            parameters: &a.parameters,
            threat_model_id: a.threat_model_id.as_deref(),
            webhook_id: a.webhook_id,
        }
    }
}

/// `ListAddonsResponse` (keys in Go's order).
#[derive(Serialize)]
struct AddonList<'a> {
    addons: Vec<AddonView<'a>>,
    limit: u64,
    offset: u64,
    total: u64,
}

/// `POST /addons`
pub async fn create_addon(
    _admin: Admin,
    state: web::Data<AppState>,
    JsonBody(input): JsonBody<CreateAddonRequest>,
) -> ApiResult<HttpResponse> {
    let v = input.validate()?;
    let addon = Addon {
        id: AddonId::new_v4(),
        created_at: now_micros(),
        name: v.name,
        webhook_id: SubscriptionId(v.webhook_id),
        description: v.description,
        icon: v.icon,
        objects: v.objects,
        threat_model_id: v.threat_model_id,
        parameters: v.parameters,
    };
    match state.store.create_addon(&addon).await? {
        CreateAddon::Created => {}
        // TMI's foreign-key failure is a 500; the client named a subscription that does not exist.
        CreateAddon::NoSubscription => {
            return Err(ApiError::not_found("Webhook subscription not found"));
        }
        CreateAddon::Exists => {
            return Err(ApiError::Internal(format!(
                "add-on id {} already exists",
                addon.id
            )));
        }
    }
    tracing::info!(addon.id = %addon.id, subscription.id = %addon.webhook_id, "add-on created");
    Ok(HttpResponse::Created().json(AddonView::new(&addon)))
}

/// `GET /addons`
pub async fn list_addons(
    _caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let query = ListQuery::parse(&req)?;
    let page = query.pagination_with(DEFAULT_ADDON_LIMIT)?;
    let tm = query.threat_model_id()?;
    let result = state
        .store
        .list_addons(tm.as_deref(), page.offset, page.limit)
        .await?;
    Ok(HttpResponse::Ok().json(AddonList {
        addons: result.items.iter().map(AddonView::new).collect(),
        limit: page.limit,
        offset: page.offset,
        total: result.total,
    }))
}

/// `GET /addons/{id}`
pub async fn get_addon(
    AddonIdPath(id): AddonIdPath,
    _caller: Caller,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let addon = state
        .store
        .get_addon(id)
        .await?
        .ok_or_else(ApiError::addon_not_found)?;
    Ok(HttpResponse::Ok().json(AddonView::new(&addon)))
}

/// `DELETE /addons/{id}`
pub async fn delete_addon(
    AddonIdPath(id): AddonIdPath,
    _admin: Admin,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    match state.store.delete_addon(id).await? {
        DeleteAddon::Deleted => {
            tracing::info!(addon.id = %id, "add-on deleted");
            Ok(HttpResponse::NoContent().finish())
        }
        DeleteAddon::NotFound => Err(ApiError::addon_not_found()),
        DeleteAddon::Active => Err(ApiError::conflict(
            "Cannot delete add-on with active invocations. Please wait for invocations to complete.",
        )),
    }
}
