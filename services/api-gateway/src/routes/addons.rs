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

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use delivery_model::addon::{Addon, AddonParameter, OBJECT_TYPES};
use delivery_model::delivery::{DeliveryRecord, Invoker};
use delivery_model::event::{ADDON_INVOKED, Envelope, StreamEvent};
use delivery_model::ids::{AddonId, DeliveryId, SubscriptionId};
use delivery_model::store::addons::{
    ActiveInvocation, CreateAddon, DeleteAddon, HOURLY_WINDOW_SECS, Invocation, InvokeOutcome,
};
use delivery_model::time::{Micros, format_micros, now_micros};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::addon_rules::{
    CreateAddonRequest, MAX_DATA_BYTES, go_compact_len, validate_invocation_data,
};
use crate::auth::{Admin, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::{AddonIdPath, JsonBody, parse_uuid};
use crate::routes::{DEFAULT_ADDON_LIMIT, ListQuery};

/// How long an `in_progress` delivery may go without a callback before cleanup fails it (TMI's
/// `DeliveryStaleTimeout`, 15 minutes): when a blocking invocation will stop counting, at the latest.
const INVOCATION_TIMEOUT_SECS: i64 = 900;
/// `object_type` of the `addon.invoked` input entry (TMI's emitter names the add-on itself).
const ADDON_OBJECT_TYPE: &str = "addon";
/// The body answered to a duplicate invocation (TMI's sentence).
const DUPLICATE_MESSAGE: &str =
    "You just invoked this add-on. Please wait a few seconds before invoking again.";

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

/// `InvokeAddonRequest`. `data` stays raw JSON so its bytes reach the receiver unchanged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvokeAddonRequest {
    pub threat_model_id: String,
    #[serde(default)]
    pub object_type: Option<String>,
    #[serde(default)]
    pub object_id: Option<String>,
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
}

/// An invocation request that passed the schema: ids normalised, `data` an object (or absent).
#[derive(Debug)]
struct ValidInvocation {
    threat_model_id: String,
    object_type: Option<String>,
    object_id: Option<String>,
    data: Option<Box<RawValue>>,
}

fn uuid_field(field: &str, v: &str) -> ApiResult<String> {
    parse_uuid(v).map(|u| u.to_string()).ok_or_else(|| {
        ApiError::invalid_format(format!(
            "Error at \"/{field}\": string doesn't match the format \"uuid\""
        ))
    })
}

impl InvokeAddonRequest {
    /// The schema rules, then TMI's size limit on `data`.
    fn validate(self) -> ApiResult<ValidInvocation> {
        let threat_model_id = uuid_field("threat_model_id", &self.threat_model_id)?;
        if let Some(t) = &self.object_type
            && !OBJECT_TYPES.contains(&t.as_str())
        {
            return Err(ApiError::invalid_input(format!(
                "Error at \"/object_type\": value is not one of the allowed values [{}]",
                OBJECT_TYPES.join(", ")
            )));
        }
        let object_id = self
            .object_id
            .as_deref()
            .map(|o| uuid_field("object_id", o))
            .transpose()?;
        // `null` is no data, as TMI's optional field.
        let data = self.data.filter(|d| d.get() != "null");
        if let Some(d) = &data {
            if !d.get().trim_start().starts_with('{') {
                return Err(ApiError::invalid_input(
                    "Error at \"/data\": value must be an object",
                ));
            }
            let size = go_compact_len(d)
                .map_err(|e| ApiError::invalid_input(format!("Invalid JSON in data: {e}")))?;
            if size > MAX_DATA_BYTES {
                return Err(ApiError::invalid_input(format!(
                    "Payload exceeds maximum size of {MAX_DATA_BYTES} bytes"
                )));
            }
        }
        Ok(ValidInvocation {
            threat_model_id,
            object_type: self.object_type,
            object_id,
            data,
        })
    }
}

/// `data` of the envelope: the add-on and the user's data, verbatim.
#[derive(Serialize)]
struct InvocationData<'a> {
    addon_id: AddonId,
    user_data: &'a RawValue,
}

/// TMI's `EventPayload` of the `addon.invoked` input entry (keys in TMI's order).
#[derive(Serialize)]
struct InvokedEventPayload<'a> {
    event_type: &'a str,
    threat_model_id: &'a str,
    object_id: String,
    object_type: &'a str,
    owner_id: &'a str,
    timestamp: &'a str,
    data: InvokedEventData,
}

#[derive(Serialize)]
struct InvokedEventData {
    addon_id: AddonId,
    delivery_id: DeliveryId,
    subscription_id: SubscriptionId,
}

/// `InvokeAddonResponse` (keys in Go's order).
#[derive(Serialize)]
struct InvokeResponse {
    created_at: String,
    delivery_id: DeliveryId,
    status: &'static str,
}

fn encode_err(e: serde_json::Error) -> ApiError {
    ApiError::Internal(format!("encoding the invocation: {e}"))
}

/// The delivery body: the unified envelope with `data = {"addon_id", "user_data": <data as sent>}`.
fn envelope(addon: AddonId, inv: &ValidInvocation, timestamp: &str) -> ApiResult<String> {
    let empty = serde_json::value::to_raw_value(&Map::new()).map_err(encode_err)?;
    let data = serde_json::value::to_raw_value(&InvocationData {
        addon_id: addon,
        user_data: inv.data.as_deref().unwrap_or(&empty),
    })
    .map_err(encode_err)?;
    serde_json::to_string(&Envelope {
        event_type: ADDON_INVOKED,
        threat_model_id: Some(&inv.threat_model_id),
        timestamp: Some(timestamp),
        object_type: inv.object_type.as_deref(),
        object_id: inv.object_id.as_deref(),
        data: &data,
    })
    .map_err(encode_err)
}

/// RFC 3339 with whole seconds, as TMI prints the times of `blocking_invocations`.
fn rfc3339_secs(us: Micros) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// TMI's 429 for the active limit: who blocks, and when the oldest will have timed out at the latest.
fn active_limit(active: &[ActiveInvocation], limit: u32, now: Micros) -> ApiError {
    let timeout_us = INVOCATION_TIMEOUT_SECS * 1_000_000;
    let blocking: Vec<Value> = active
        .iter()
        .map(|a| {
            let expires = a.last_activity_at + timeout_us;
            json!({
                "delivery_id": a.delivery_id,
                "addon_id": a.addon_id.map(|id| id.to_string()).unwrap_or_default(),
                "status": a.status,
                "created_at": rfc3339_secs(a.created_at),
                "expires_at": rfc3339_secs(expires),
                "seconds_remaining": (expires - now) / 1_000_000,
            })
        })
        .collect();
    let earliest = active
        .iter()
        .map(|a| a.last_activity_at + timeout_us)
        .min()
        .unwrap_or(now);
    let retry_after = u64::try_from((earliest - now) / 1_000_000).unwrap_or(0);
    let current = active.len();
    ApiError::TooManyRequests {
        code: "rate_limit_exceeded",
        description: format!(
            "Active invocation limit reached: {current}/{limit} concurrent invocations."
        ),
        details: Some(json!({
            "context": {
                "limit": limit,
                "current": current,
                "retry_after": retry_after,
                "blocking_invocations": blocking,
            },
            "suggestion": format!(
                "Wait for an existing invocation to complete, or retry after {retry_after} seconds when the oldest will timeout."
            ),
        })),
        retry_after_secs: Some(retry_after),
    }
}

/// TMI's 429 for the hourly limit; the window frees up when its oldest entry is an hour old.
fn hourly_limit(current: u64, limit: u32, oldest_secs: i64, now: Micros) -> ApiError {
    let window = i64::try_from(HOURLY_WINDOW_SECS).unwrap_or(3600);
    let retry_after = u64::try_from(oldest_secs + window - now.div_euclid(1_000_000)).unwrap_or(0);
    ApiError::TooManyRequests {
        code: "rate_limit_exceeded",
        description: format!(
            "Hourly invocation limit exceeded: {current}/{limit}. Retry after {retry_after} seconds."
        ),
        details: Some(json!({
            "context": {"retry_after": retry_after, "limit": limit, "current": current},
        })),
        retry_after_secs: Some(retry_after),
    }
}

/// `POST /addons/{id}/invoke`
pub async fn invoke_addon(
    AddonIdPath(id): AddonIdPath,
    caller: Caller,
    state: web::Data<AppState>,
    JsonBody(input): JsonBody<InvokeAddonRequest>,
) -> ApiResult<HttpResponse> {
    // TMI needs the e-mail (and the subject) to attribute the invocation.
    let Some(email) = caller.email.clone() else {
        return Err(ApiError::Unauthorized {
            reason: "token has no email claim".into(),
        });
    };
    let inv = input.validate()?;
    let addon = state
        .store
        .get_addon(id)
        .await?
        .ok_or_else(ApiError::addon_not_found)?;
    if let Some(t) = &inv.object_type
        && !addon.supports(t)
    {
        return Err(ApiError::invalid_input(
            "Object type not supported by this add-on",
        ));
    }
    if !addon.parameters.is_empty() {
        let data: Option<Map<String, Value>> = inv
            .data
            .as_deref()
            .map(|d| serde_json::from_str(d.get()))
            .transpose()
            .map_err(|e| ApiError::invalid_input(format!("Invalid JSON in data: {e}")))?;
        validate_invocation_data(data.as_ref(), &addon.parameters)?;
    }

    let now = now_micros();
    let timestamp = format_micros(now);
    let mut record = DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        addon.webhook_id,
        ADDON_INVOKED,
        envelope(addon.id, &inv, &timestamp)?,
        now,
    );
    record.addon_id = Some(addon.id);
    record.invoked_by = Some(Invoker {
        uuid: caller.id.clone(),
        name: caller.name.clone().unwrap_or_else(|| email.clone()),
        email,
        idp: caller.idp.clone(),
        groups: caller.groups.clone(),
        security_reviewer: caller.security_reviewer,
    });
    let payload = serde_json::to_string(&InvokedEventPayload {
        event_type: ADDON_INVOKED,
        threat_model_id: &inv.threat_model_id,
        object_id: addon.id.to_string(),
        object_type: ADDON_OBJECT_TYPE,
        owner_id: &caller.id,
        timestamp: &timestamp,
        data: InvokedEventData {
            addon_id: addon.id,
            delivery_id: record.id,
            subscription_id: addon.webhook_id,
        },
    })
    .map_err(encode_err)?;
    let event = StreamEvent {
        event_type: ADDON_INVOKED.to_owned(),
        threat_model_id: Some(inv.threat_model_id.clone()),
        object_id: Some(addon.id.to_string()),
        object_type: Some(ADDON_OBJECT_TYPE.to_owned()),
        owner_id: Some(caller.id.clone()),
        // The entry field has second precision, as TMI's emitter writes it.
        timestamp: Some(rfc3339_secs(now)),
        payload,
        delivery_id: Some(record.id),
    };
    // An administrator's override for this invoker (`PUT /admin/quotas/addons/{user_id}`) replaces the
    // `[addons]` defaults; the dedup window is not part of TMI's quota.
    let mut limits = state.addon_limits;
    if let Some(q) = state.store.get_addon_quota(&caller.id).await? {
        limits.max_active = q.max_active_invocations;
        limits.max_per_hour = q.max_invocations_per_hour;
    }
    let outcome = state
        .store
        .invoke_addon(
            &Invocation {
                addon: addon.id,
                invoker: &caller.id,
                record: &record,
                event: &event,
            },
            &limits,
            now,
        )
        .await?;
    let (label, result) = match outcome {
        InvokeOutcome::Created => (
            "accepted",
            Ok(
                HttpResponse::build(StatusCode::ACCEPTED).json(InvokeResponse {
                    created_at: format_micros(record.created_at),
                    delivery_id: record.id,
                    status: record.status.as_str(),
                }),
            ),
        ),
        InvokeOutcome::AddonGone => ("gone", Err(ApiError::addon_not_found())),
        InvokeOutcome::ActiveLimit { active } => (
            "active_limit",
            Err(active_limit(&active, limits.max_active, now)),
        ),
        InvokeOutcome::HourlyLimit {
            current,
            oldest_secs,
        } => (
            "hourly_limit",
            Err(hourly_limit(current, limits.max_per_hour, oldest_secs, now)),
        ),
        InvokeOutcome::Duplicate => (
            "duplicate",
            Err(ApiError::TooManyRequests {
                code: "duplicate_invocation",
                description: DUPLICATE_MESSAGE.into(),
                details: None,
                // Every 429 says when to come back (TMI sends none here): after the duplicate window.
                retry_after_secs: Some(limits.dedup_window.as_secs().max(1)),
            }),
        ),
    };
    state
        .metrics
        .addon_invocations
        .with_label_values(&[label])
        .inc();
    if result.is_ok() {
        tracing::info!(addon.id = %addon.id, delivery.id = %record.id, caller.id = %caller.id, "add-on invoked");
    } else {
        tracing::info!(addon.id = %addon.id, caller.id = %caller.id, outcome = label, "add-on invocation refused");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn req(data: Option<&str>) -> InvokeAddonRequest {
        InvokeAddonRequest {
            threat_model_id: "0F6C0000-0000-4000-8000-000000000001".into(),
            object_type: Some("diagram".into()),
            object_id: Some("880e8400-e29b-41d4-a716-446655440003".into()),
            data: data.map(raw),
        }
    }

    #[test]
    fn envelope_keeps_user_data_bytes() {
        let addon: AddonId = "770e8400-e29b-41d4-a716-446655440002"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let data = "{\"Mode\": \"Fast\",  \"x\":1.50, \"s\":\"e\u{301}\"}";
        let inv = req(Some(data)).validate().unwrap_or_else(|e| panic!("{e}"));
        let body =
            envelope(addon, &inv, "2026-04-01T12:00:00.5Z").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            body,
            format!(
                r#"{{"event_type":"addon.invoked","threat_model_id":"0f6c0000-0000-4000-8000-000000000001","timestamp":"2026-04-01T12:00:00.5Z","object_type":"diagram","object_id":"880e8400-e29b-41d4-a716-446655440003","data":{{"addon_id":"770e8400-e29b-41d4-a716-446655440002","user_data":{data}}}}}"#
            )
        );
        let none = req(None).validate().unwrap_or_else(|e| panic!("{e}"));
        let body = envelope(addon, &none, "t").unwrap_or_else(|e| panic!("{e}"));
        assert!(body.ends_with(r#""user_data":{}}}"#), "{body}");
        let null = req(Some("null"))
            .validate()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(null.data.is_none());
    }

    #[test]
    fn schema_and_size() {
        let mut r = req(None);
        r.threat_model_id = "nope".into();
        assert!(r.validate().is_err());
        let mut r = req(None);
        r.object_type = Some("widget".into());
        assert!(r.validate().is_err());
        let mut r = req(None);
        r.object_id = Some("x".into());
        assert!(r.validate().is_err());
        assert!(req(Some("[1]")).validate().is_err());
        // 1024 bytes compact pass, 1025 fail; whitespace does not count.
        let fits = format!("{{\"k\": \"{}\"}}", "x".repeat(1024 - 8));
        assert!(req(Some(&fits)).validate().is_ok());
        let over = format!("{{\"k\":\"{}\"}}", "x".repeat(1024 - 7));
        match req(Some(&over)).validate() {
            Err(ApiError::BadRequest { description, .. }) => {
                assert_eq!(description, "Payload exceeds maximum size of 1024 bytes");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn limit_errors_carry_tmi_details() {
        let now = 1_775_044_800_000_000;
        let a = ActiveInvocation {
            delivery_id: DeliveryId::new_v7(),
            addon_id: Some(AddonId::new_v4()),
            status: delivery_model::delivery::DeliveryStatus::InProgress,
            created_at: now - 60_000_000,
            last_activity_at: now - 60_000_000,
        };
        match active_limit(&[a], 1, now) {
            ApiError::TooManyRequests {
                code,
                description,
                details: Some(d),
                retry_after_secs,
            } => {
                assert_eq!(code, "rate_limit_exceeded");
                assert_eq!(
                    description,
                    "Active invocation limit reached: 1/1 concurrent invocations."
                );
                assert_eq!(retry_after_secs, Some(840));
                assert_eq!(d["context"]["retry_after"], 840);
                assert_eq!(
                    d["context"]["blocking_invocations"][0]["seconds_remaining"],
                    840
                );
                assert_eq!(
                    d["context"]["blocking_invocations"][0]["expires_at"],
                    "2026-04-01T12:14:00Z"
                );
            }
            other => panic!("{other:?}"),
        }
        match hourly_limit(10, 10, 1_775_044_800 - 600, now) {
            ApiError::TooManyRequests {
                description,
                retry_after_secs,
                ..
            } => {
                assert_eq!(retry_after_secs, Some(3000));
                assert_eq!(
                    description,
                    "Hourly invocation limit exceeded: 10/10. Retry after 3000 seconds."
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
