//! `POST /events`: a Hookline addition for producers that cannot reach Redis.
//!
//! The body describes one resource change; the gateway appends it to the input stream exactly as TMI's
//! emitter would (same entry fields, `payload` = TMI's `EventPayload` JSON), so the event-consumer cannot
//! tell the two apart. Callers need to be administrators or hold the `auth.events_scope` scope.
//! `addon.invoked` is refused: only the invoke endpoint may emit it, together with its delivery record.
//! `system_audit.*` events are published by administrators only: they are broadcast to every subscription,
//! the operator-pinned alert sink included, so an events-scope producer must not be able to forge them.
//! Unlike TMI's emitter there is no same-second de-duplication: a producer calling the API means to send;
//! a producer that retries sends an `Idempotency-Key` ([`crate::idempotency`]).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use delivery_model::event::{ADDON_INVOKED, StreamEvent, is_broadcast};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBytes, decode};
use crate::idempotency::{self, ROUTE_EVENTS};
use crate::middleware::RequestTrace;
use crate::state::AppState;

/// Longest accepted text field, in characters (TMI's bound on event type strings).
const MAX_FIELD_CHARS: usize = 1000;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    pub event_type: String,
    #[serde(default)]
    pub threat_model_id: Option<String>,
    #[serde(default)]
    pub object_id: Option<String>,
    #[serde(default)]
    pub object_type: Option<String>,
    #[serde(default)]
    pub owner_id: Option<String>,
    /// RFC 3339; now when absent.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Must be a JSON object when present.
    #[serde(default)]
    pub data: Option<Value>,
}

/// TMI's `EventPayload`, keys in TMI's order.
#[derive(Serialize)]
struct EventPayload<'a> {
    event_type: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    threat_model_id: &'a str,
    object_id: &'a str,
    object_type: &'a str,
    owner_id: &'a str,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Map<String, Value>>,
}

/// Answer of `POST /events`.
#[derive(Serialize)]
struct Published {
    id: String,
}

fn check_field(name: &str, v: &str, required: bool) -> ApiResult<()> {
    if required && v.is_empty() {
        return Err(ApiError::invalid_input(format!(
            "Error at \"/{name}\": minimum string length is 1"
        )));
    }
    if v.chars().count() > MAX_FIELD_CHARS {
        return Err(ApiError::invalid_input(format!(
            "Error at \"/{name}\": maximum string length is {MAX_FIELD_CHARS}"
        )));
    }
    if v.chars().any(|c| u32::from(c) < 0x20) {
        return Err(ApiError::invalid_format(format!(
            "Error at \"/{name}\": string doesn't match the regular expression pattern (no control characters)"
        )));
    }
    Ok(())
}

/// Go's `RFC3339Nano` in UTC: nanoseconds with trailing zeros trimmed (`…:00.5Z`, `…:00Z`).
fn rfc3339_nano(t: DateTime<Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos == 0 {
        return format!("{base}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{base}.{}Z", frac.trim_end_matches('0'))
}

/// A validated event, ready to append.
#[derive(Debug, PartialEq)]
pub struct PreparedEvent(pub StreamEvent);

impl EventInput {
    /// Validates the body and builds the stream entry.
    ///
    /// # Errors
    /// 400 naming the field at fault; `addon.invoked` is refused.
    pub fn prepare(&self, now: DateTime<Utc>) -> ApiResult<PreparedEvent> {
        check_field("event_type", &self.event_type, true)?;
        if self.event_type == ADDON_INVOKED {
            return Err(ApiError::invalid_input(
                "addon.invoked events are emitted by the add-on invoke endpoint only",
            ));
        }
        let text = |name: &str, v: &Option<String>| -> ApiResult<String> {
            let v = v.clone().unwrap_or_default();
            check_field(name, &v, false)?;
            Ok(v)
        };
        let threat_model_id = text("threat_model_id", &self.threat_model_id)?;
        let object_id = text("object_id", &self.object_id)?;
        let object_type = text("object_type", &self.object_type)?;
        let owner_id = text("owner_id", &self.owner_id)?;
        let timestamp = match &self.timestamp {
            None => now,
            Some(s) => DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::invalid_format(
                        "Error at \"/timestamp\": string doesn't match the format \"date-time\"",
                    )
                })?,
        };
        let data = match &self.data {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m).filter(|m| !m.is_empty()),
            Some(_) => {
                return Err(ApiError::invalid_input(
                    "Error at \"/data\": value must be an object",
                ));
            }
        };
        let payload = EventPayload {
            event_type: &self.event_type,
            threat_model_id: &threat_model_id,
            object_id: &object_id,
            object_type: &object_type,
            owner_id: &owner_id,
            timestamp: rfc3339_nano(timestamp),
            data,
        };
        let payload = serde_json::to_string(&payload)
            .map_err(|e| ApiError::Internal(format!("encoding event payload: {e}")))?;
        let some = |s: String| Some(s).filter(|s| !s.is_empty());
        Ok(PreparedEvent(StreamEvent {
            event_type: self.event_type.clone(),
            threat_model_id: some(threat_model_id),
            object_id: some(object_id),
            object_type: some(object_type),
            owner_id: some(owner_id),
            // The entry field has second precision, as TMI's emitter writes it.
            timestamp: Some(timestamp.to_rfc3339_opts(SecondsFormat::Secs, true)),
            payload,
            delivery_id: None,
            trace: None,
        }))
    }
}

/// `POST /events` (with an optional `Idempotency-Key`: [`crate::idempotency`]).
pub async fn publish_event(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    JsonBytes(body): JsonBytes,
    RequestTrace(trace): RequestTrace,
) -> ApiResult<HttpResponse> {
    let input: EventInput = decode(&body)?;
    if !(caller.admin || caller.has_scope(&state.events_scope)) {
        return Err(ApiError::Forbidden {
            description: format!(
                "Administrator access or the {} scope is required",
                state.events_scope
            ),
        });
    }
    if is_broadcast(&input.event_type) && !caller.admin {
        return Err(ApiError::Forbidden {
            description: "Administrator access is required to publish system_audit events".into(),
        });
    }
    let PreparedEvent(mut event) = input.prepare(Utc::now())?;
    // The consumer's fan-out continues this request's trace.
    event.trace = trace;
    let (metrics, caller_id) = (state.metrics.clone(), caller.id.clone());
    idempotency::once(&state, &req, &caller, ROUTE_EVENTS, &body, |store| async move {
        let id = store.publish_event(&event).await?;
        metrics.events_published.inc();
        tracing::info!(event.r#type = %event.event_type, stream.entry = %id, caller.id = %caller_id, "event published");
        Ok(HttpResponse::build(StatusCode::ACCEPTED).json(Published { id }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> EventInput {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn builds_tmi_payload_in_tmi_order() {
        let e = input(json!({
            "event_type": "threat_model.updated",
            "threat_model_id": "tm1", "object_id": "tm1", "object_type": "threat_model", "owner_id": "o1",
            "timestamp": "2026-04-01T14:00:00.123456789+02:00",
            "data": {"name": "Payments", "description": null}
        }))
        .prepare(Utc::now())
        .unwrap_or_else(|e| panic!("{e}"))
        .0;
        assert_eq!(
            e.payload,
            r#"{"event_type":"threat_model.updated","threat_model_id":"tm1","object_id":"tm1","object_type":"threat_model","owner_id":"o1","timestamp":"2026-04-01T12:00:00.123456789Z","data":{"description":null,"name":"Payments"}}"#
        );
        assert_eq!(e.timestamp.as_deref(), Some("2026-04-01T12:00:00Z"));
        assert_eq!(e.threat_model_id.as_deref(), Some("tm1"));
    }

    #[test]
    fn empty_parts_are_omitted_like_go() {
        let e = input(json!({"event_type": "team.created", "object_type": "team", "data": {}}))
            .prepare(at("2026-04-01T12:00:00.5Z"))
            .unwrap_or_else(|e| panic!("{e}"))
            .0;
        assert_eq!(
            e.payload,
            r#"{"event_type":"team.created","object_id":"","object_type":"team","owner_id":"","timestamp":"2026-04-01T12:00:00.5Z"}"#
        );
        assert_eq!(e.threat_model_id, None);
        assert_eq!(e.timestamp.as_deref(), Some("2026-04-01T12:00:00Z"));
    }

    #[test]
    fn rejects_bad_events() {
        for bad in [
            json!({"event_type": ""}),
            json!({"event_type": "addon.invoked"}),
            json!({"event_type": "a\nb"}),
            json!({"event_type": "x".repeat(1001)}),
            json!({"event_type": "x", "timestamp": "yesterday"}),
            json!({"event_type": "x", "data": [1]}),
            json!({"event_type": "x", "owner_id": "o\u{0}"}),
        ] {
            assert!(input(bad.clone()).prepare(Utc::now()).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_nano_format() {
        assert_eq!(
            rfc3339_nano(at("2026-04-01T12:00:00Z")),
            "2026-04-01T12:00:00Z"
        );
        assert_eq!(
            rfc3339_nano(at("2026-04-01T12:00:00.120Z")),
            "2026-04-01T12:00:00.12Z"
        );
    }
}
