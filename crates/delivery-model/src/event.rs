//! Events: their type names, the entry TMI's producers append to `tmi:events`, and the unified envelope.
//!
//! A stream entry carries TMI's fields, all strings: `event_type`, `threat_model_id`, `object_id`,
//! `object_type`, `owner_id`, `timestamp` and `payload` (TMI's `EventPayload` JSON). Hookline's own producers
//! add `delivery_id` to `addon.invoked` entries, naming the delivery record the invoke endpoint pre-created.
//! Any entry may also carry `traceparent` and `tracestate` (W3C trace context, read with
//! [`TraceContext::from_fields`](crate::trace::TraceContext::from_fields)): the consumer's fan-out continues
//! that trace. TMI's emitter writes neither; an absent or malformed value changes nothing.
//!
//! Every receiver gets the same body shape, the unified envelope of TMI's design:
//! `{"event_type", "threat_model_id", "timestamp", "object_type", "object_id", "data"}`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::DeliveryId;
use crate::trace::TraceContext;

/// `addon.invoked`: the delivery record exists already; the consumer only routes it to the worker.
pub const ADDON_INVOKED: &str = "addon.invoked";
/// The wildcard a subscription lists to receive every event type.
pub const WILDCARD: &str = "*";
/// Prefix of the ownerless broadcast events (`system_audit.admin_write`).
pub const SYSTEM_AUDIT_PREFIX: &str = "system_audit.";
/// Pseudo event type of verification challenges (header only, never stored).
pub const CHALLENGE: &str = "webhook.challenge";
/// Pseudo event type of test deliveries when neither the request nor the subscription names one.
pub const TEST: &str = "webhook.test";

/// Every event type in TMI's `WebhookEventType` enum.
pub const KNOWN_EVENT_TYPES: &[&str] = &[
    "threat_model.created",
    "threat_model.updated",
    "threat_model.deleted",
    "diagram.created",
    "diagram.updated",
    "diagram.deleted",
    "document.created",
    "document.updated",
    "document.deleted",
    "document.extraction_completed",
    "document.extraction_failed",
    "note.created",
    "note.updated",
    "note.deleted",
    "repository.created",
    "repository.updated",
    "repository.deleted",
    "asset.created",
    "asset.updated",
    "asset.deleted",
    "threat.created",
    "threat.updated",
    "threat.deleted",
    "metadata.created",
    "metadata.updated",
    "metadata.deleted",
    "addon.invoked",
    "survey.created",
    "survey.updated",
    "survey.deleted",
    "survey_response.created",
    "survey_response.updated",
    "survey_response.deleted",
    "system_audit.admin_write",
];

/// Stream entry field names (TMI's emitter writes exactly these).
pub mod field {
    pub const EVENT_TYPE: &str = "event_type";
    pub const THREAT_MODEL_ID: &str = "threat_model_id";
    pub const OBJECT_ID: &str = "object_id";
    pub const OBJECT_TYPE: &str = "object_type";
    pub const OWNER_ID: &str = "owner_id";
    pub const TIMESTAMP: &str = "timestamp";
    pub const PAYLOAD: &str = "payload";
    /// Hookline's addition on `addon.invoked` entries.
    pub const DELIVERY_ID: &str = "delivery_id";
}

/// Whether `event_type` is an ownerless broadcast (`system_audit.*`).
pub fn is_broadcast(event_type: &str) -> bool {
    event_type.starts_with(SYSTEM_AUDIT_PREFIX)
}

/// One decoded entry of `tmi:events`.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamEvent {
    pub event_type: String,
    /// From the payload when present there (TMI filters on the payload's value), else the entry field.
    pub threat_model_id: Option<String>,
    pub object_id: Option<String>,
    pub object_type: Option<String>,
    pub owner_id: Option<String>,
    pub timestamp: Option<String>,
    /// The `payload` field, verbatim.
    pub payload: String,
    /// Set on Hookline's `addon.invoked` entries.
    pub delivery_id: Option<DeliveryId>,
    /// The producer's trace (`traceparent`, `tracestate` fields), when it sent a well-formed one.
    pub trace: Option<TraceContext>,
}

/// Why a stream entry cannot be processed. Such entries are acknowledged, logged and counted, never retried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedEvent {
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `payload` is not a JSON object: {0}")]
    Payload(String),
    #[error("field `delivery_id` is not a UUID")]
    DeliveryId,
}

/// The parts of TMI's `EventPayload` the envelope needs. `data` is kept as raw JSON so its bytes reach the
/// receiver exactly as the producer wrote them.
#[derive(Deserialize)]
struct PayloadParts<'a> {
    #[serde(default, borrow)]
    threat_model_id: Option<&'a RawValue>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    object_type: Option<String>,
    #[serde(default)]
    object_id: Option<String>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

fn non_empty(s: Option<&String>) -> Option<String> {
    s.filter(|v| !v.is_empty()).cloned()
}

impl StreamEvent {
    /// Decodes an entry's field map.
    ///
    /// # Errors
    /// [`MalformedEvent`] when `event_type` or `payload` is missing, the payload is not a JSON object, or
    /// `delivery_id` is not a UUID.
    pub fn decode(fields: &HashMap<String, String>) -> Result<Self, MalformedEvent> {
        let event_type = non_empty(fields.get(field::EVENT_TYPE))
            .ok_or(MalformedEvent::Missing(field::EVENT_TYPE))?;
        let payload =
            non_empty(fields.get(field::PAYLOAD)).ok_or(MalformedEvent::Missing(field::PAYLOAD))?;
        // serde would also build the struct from a JSON array: insist on an object.
        if !payload.trim_start().starts_with('{') {
            return Err(MalformedEvent::Payload("expected a JSON object".into()));
        }
        let parts: PayloadParts<'_> =
            serde_json::from_str(&payload).map_err(|e| MalformedEvent::Payload(e.to_string()))?;
        let payload_tm = parts
            .threat_model_id
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .filter(|s| !s.is_empty());
        let delivery_id = match non_empty(fields.get(field::DELIVERY_ID)) {
            Some(s) => Some(s.parse().map_err(|_| MalformedEvent::DeliveryId)?),
            None => None,
        };
        Ok(Self {
            threat_model_id: payload_tm.or_else(|| non_empty(fields.get(field::THREAT_MODEL_ID))),
            object_id: non_empty(parts.object_id.as_ref())
                .or_else(|| non_empty(fields.get(field::OBJECT_ID))),
            object_type: non_empty(parts.object_type.as_ref())
                .or_else(|| non_empty(fields.get(field::OBJECT_TYPE))),
            owner_id: non_empty(fields.get(field::OWNER_ID)),
            timestamp: non_empty(parts.timestamp.as_ref())
                .or_else(|| non_empty(fields.get(field::TIMESTAMP))),
            event_type,
            payload,
            delivery_id,
            trace: TraceContext::from_fields(fields),
        })
    }

    /// The unified envelope for this event: the body every matching receiver gets.
    ///
    /// # Errors
    /// Only if the stored payload stops being JSON between [`decode`](Self::decode) and here (it cannot).
    pub fn envelope(&self) -> Result<String, serde_json::Error> {
        let parts: PayloadParts<'_> = serde_json::from_str(&self.payload)?;
        let empty = serde_json::value::to_raw_value(&serde_json::Map::new())?;
        let envelope = Envelope {
            event_type: &self.event_type,
            threat_model_id: self.threat_model_id.as_deref(),
            timestamp: self.timestamp.as_deref(),
            object_type: self.object_type.as_deref(),
            object_id: self.object_id.as_deref(),
            data: parts.data.unwrap_or(&empty),
        };
        serde_json::to_string(&envelope)
    }

    /// The fields to append for this event, in TMI's order (used by `POST /events` and the invoke endpoint),
    /// then Hookline's own (`delivery_id`, the trace context) when set.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            (field::EVENT_TYPE, self.event_type.clone()),
            (
                field::THREAT_MODEL_ID,
                self.threat_model_id.clone().unwrap_or_default(),
            ),
            (field::OBJECT_ID, self.object_id.clone().unwrap_or_default()),
            (
                field::OBJECT_TYPE,
                self.object_type.clone().unwrap_or_default(),
            ),
            (field::OWNER_ID, self.owner_id.clone().unwrap_or_default()),
            (field::TIMESTAMP, self.timestamp.clone().unwrap_or_default()),
            (field::PAYLOAD, self.payload.clone()),
        ];
        if let Some(id) = self.delivery_id {
            v.push((field::DELIVERY_ID, id.to_string()));
        }
        if let Some(t) = &self.trace {
            v.extend(t.to_fields());
        }
        v
    }
}

/// The unified delivery body. Field order is the wire order.
#[derive(Serialize)]
pub struct Envelope<'a> {
    pub event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threat_model_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_id: Option<&'a str>,
    pub data: &'a RawValue,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const TM: &str = "0f6c0000-0000-4000-8000-000000000001";

    #[test]
    fn decodes_tmi_entry_and_builds_envelope_with_data_bytes_intact() {
        let payload = format!(
            r#"{{"event_type":"threat_model.updated","threat_model_id":"{TM}","object_id":"{TM}","object_type":"threat_model","owner_id":"5b1e0000-0000-4000-8000-000000000002","timestamp":"2026-04-01T12:00:00.123456789Z","data":{{"name":"Payments TM","description":null, "x":1.50}}}}"#
        );
        let e = StreamEvent::decode(&entry(&[
            ("event_type", "threat_model.updated"),
            ("threat_model_id", TM),
            ("object_id", TM),
            ("object_type", "threat_model"),
            ("owner_id", "5b1e0000-0000-4000-8000-000000000002"),
            ("timestamp", "2026-04-01T12:00:00Z"),
            ("payload", &payload),
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.threat_model_id.as_deref(), Some(TM));
        let env = e.envelope().unwrap_or_default();
        assert_eq!(
            env,
            format!(
                r#"{{"event_type":"threat_model.updated","threat_model_id":"{TM}","timestamp":"2026-04-01T12:00:00.123456789Z","object_type":"threat_model","object_id":"{TM}","data":{{"name":"Payments TM","description":null, "x":1.50}}}}"#
            )
        );
    }

    #[test]
    fn missing_fields_are_malformed() {
        assert_eq!(
            StreamEvent::decode(&entry(&[("payload", "{}")])),
            Err(MalformedEvent::Missing("event_type"))
        );
        assert_eq!(
            StreamEvent::decode(&entry(&[("event_type", "team.created")])),
            Err(MalformedEvent::Missing("payload"))
        );
        assert!(matches!(
            StreamEvent::decode(&entry(&[
                ("event_type", "team.created"),
                ("payload", "[1]")
            ])),
            Err(MalformedEvent::Payload(_))
        ));
    }

    #[test]
    fn trace_fields_are_optional_and_malformed_ones_ignored() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let base = [("event_type", "team.created"), ("payload", "{}")];
        let plain = StreamEvent::decode(&entry(&base)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain.trace, None);
        let bad = [base[0], base[1], ("traceparent", "not-a-traceparent")];
        let with_bad = StreamEvent::decode(&entry(&bad)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(with_bad, plain, "a malformed traceparent changes nothing");
        let good = [base[0], base[1], ("traceparent", tp), ("tracestate", "k=v")];
        let traced = StreamEvent::decode(&entry(&good)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            traced.trace.as_ref().map(|t| t.trace_id()),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        let fields: HashMap<String, String> = traced
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(StreamEvent::decode(&fields).ok(), Some(traced));
    }

    #[test]
    fn envelope_without_data_has_empty_object() {
        let e = StreamEvent::decode(&entry(&[
            ("event_type", "team.created"),
            ("payload", r#"{"object_type":"team","object_id":"t1"}"#),
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            e.envelope().unwrap_or_default(),
            r#"{"event_type":"team.created","object_type":"team","object_id":"t1","data":{}}"#
        );
    }
}
