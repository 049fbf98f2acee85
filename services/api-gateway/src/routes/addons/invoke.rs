//! `POST /addons/{id}/invoke`: TMI's checks in TMI's order, then one store script that applies the
//! per-invoker limits and records the delivery with its input-stream entry.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use delivery_model::addon::{Addon, OBJECT_TYPES};
use delivery_model::delivery::{DeliveryRecord, Invoker};
use delivery_model::event::{ADDON_INVOKED, Envelope, StreamEvent};
use delivery_model::ids::{AddonId, DeliveryId, SubscriptionId};
use delivery_model::store::Store;
use delivery_model::store::addons::{Invocation, InvocationLimits, InvokeOutcome};
use delivery_model::time::{Micros, format_micros, now_micros};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::limits::{active_limit, hourly_limit, rfc3339_secs};
use crate::addon_rules::{MAX_DATA_BYTES, go_compact_len, validate_invocation_data};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{AddonIdPath, JsonBytes, decode, parse_uuid};
use crate::idempotency::{self, ROUTE_INVOKE};
use crate::middleware::RequestTrace;
use crate::state::AppState;
use delivery_model::trace::TraceContext;

/// `object_type` of the `addon.invoked` input entry (TMI's emitter names the add-on itself).
const ADDON_OBJECT_TYPE: &str = "addon";
/// The body answered to a duplicate invocation (TMI's sentence).
const DUPLICATE_MESSAGE: &str =
    "You just invoked this add-on. Please wait a few seconds before invoking again.";

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

/// `POST /addons/{id}/invoke` (with an optional `Idempotency-Key`: [`crate::idempotency`]).
pub async fn invoke_addon(
    req: HttpRequest,
    AddonIdPath(id): AddonIdPath,
    caller: Caller,
    state: web::Data<AppState>,
    JsonBytes(body): JsonBytes,
    RequestTrace(trace): RequestTrace,
) -> ApiResult<HttpResponse> {
    let input: InvokeAddonRequest = decode(&body)?;
    // TMI needs the e-mail (and the subject) to attribute the invocation.
    let Some(email) = caller.email.clone() else {
        return Err(ApiError::Unauthorized {
            reason: "token has no email claim".into(),
        });
    };
    let inv = input.validate()?;
    idempotency::once(&state, &req, &caller, ROUTE_INVOKE, &body, |store| {
        invoke_validated(store, &state, id, &caller, email, inv, trace)
    })
    .await
}

/// The invocation once the request is valid: the checks against the add-on, the limits, the record.
async fn invoke_validated(
    store: Store,
    state: &AppState,
    id: AddonId,
    caller: &Caller,
    email: String,
    inv: ValidInvocation,
    trace: Option<TraceContext>,
) -> ApiResult<HttpResponse> {
    let addon = store
        .get_addon(id)
        .await?
        .ok_or_else(ApiError::addon_not_found)?;
    check_against_addon(&addon, &inv)?;

    let now = now_micros();
    let timestamp = format_micros(now);
    let mut record = invocation_record(&addon, &inv, caller, email, now, &timestamp)?;
    let mut event = invoked_event(&addon, &inv, caller, &record, now, &timestamp)?;
    // The record carries the request's trace to the worker's attempts; the entry to the consumer's routing.
    record.trace.clone_from(&trace);
    event.trace = trace;
    // An administrator's override for this invoker (`PUT /admin/quotas/addons/{user_id}`) replaces the
    // `[addons]` defaults; the dedup window is not part of TMI's quota.
    let mut limits = state.addon_limits;
    if let Some(q) = store.get_addon_quota(&caller.id).await? {
        limits.max_active = q.max_active_invocations;
        limits.max_per_hour = q.max_invocations_per_hour;
    }
    let outcome = store
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
    let (label, result) = answer(outcome, &record, &limits, now);
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

/// The checks that need the add-on: its object types, then its declared parameters.
fn check_against_addon(addon: &Addon, inv: &ValidInvocation) -> ApiResult<()> {
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
    Ok(())
}

/// The pending delivery of `addon.invoked` to the add-on's subscription, attributed to the caller.
fn invocation_record(
    addon: &Addon,
    inv: &ValidInvocation,
    caller: &Caller,
    email: String,
    now: Micros,
    timestamp: &str,
) -> ApiResult<DeliveryRecord> {
    let mut record = DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        addon.webhook_id,
        ADDON_INVOKED,
        envelope(addon.id, inv, timestamp)?,
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
    Ok(record)
}

/// The `addon.invoked` input-stream entry that goes with `record`.
fn invoked_event(
    addon: &Addon,
    inv: &ValidInvocation,
    caller: &Caller,
    record: &DeliveryRecord,
    now: Micros,
    timestamp: &str,
) -> ApiResult<StreamEvent> {
    let payload = serde_json::to_string(&InvokedEventPayload {
        event_type: ADDON_INVOKED,
        threat_model_id: &inv.threat_model_id,
        object_id: addon.id.to_string(),
        object_type: ADDON_OBJECT_TYPE,
        owner_id: &caller.id,
        timestamp,
        data: InvokedEventData {
            addon_id: addon.id,
            delivery_id: record.id,
            subscription_id: addon.webhook_id,
        },
    })
    .map_err(encode_err)?;
    Ok(StreamEvent {
        event_type: ADDON_INVOKED.to_owned(),
        threat_model_id: Some(inv.threat_model_id.clone()),
        object_id: Some(addon.id.to_string()),
        object_type: Some(ADDON_OBJECT_TYPE.to_owned()),
        owner_id: Some(caller.id.clone()),
        // The entry field has second precision, as TMI's emitter writes it.
        timestamp: Some(rfc3339_secs(now)),
        payload,
        delivery_id: Some(record.id),
        trace: None,
    })
}

/// The store's outcome as the client's answer, with the metric label it counts under.
fn answer(
    outcome: InvokeOutcome,
    record: &DeliveryRecord,
    limits: &InvocationLimits,
    now: Micros,
) -> (&'static str, ApiResult<HttpResponse>) {
    match outcome {
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
    }
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
}
