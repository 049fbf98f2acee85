//! W3C trace context as it travels between the services: in `tmi:events` entries, in challenge messages of
//! the queue, and in delivery records.
//!
//! Only the two header values are carried, as text (`traceparent`, `tracestate`): this crate knows nothing
//! of OpenTelemetry; `service_common::trace` turns a [`TraceContext`] into a span's parent and back. A value
//! that is not a well-formed version-00 `traceparent` (W3C Trace Context, level 1) is dropped where it is
//! read, so garbage from a producer never reaches a span or a receiver; an absent or dropped context changes
//! nothing else (the entry, the message or the record is processed exactly as without it).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Field name of the `traceparent` value: in stream entries, queue messages and delivery records alike, and
/// the HTTP header's name.
pub const TRACEPARENT: &str = "traceparent";
/// Field name of the `tracestate` value (same places as [`TRACEPARENT`]).
pub const TRACESTATE: &str = "tracestate";
/// Longest `tracestate` kept, bytes: W3C's 32 list members of at most 256 bytes are far beyond what
/// vendors send; 512 bytes is what the specification asks implementations to propagate at least.
const MAX_TRACESTATE_LEN: usize = 512;

/// A remote span's identity: where the next hop continues the trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, validated.
    pub traceparent: String,
    /// Vendor data that travels along, verbatim; `None` when absent, empty or over-long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The context of a `traceparent` (and optional `tracestate`) value; `None` when `traceparent` is absent
    /// or malformed. A `tracestate` is only kept beside a valid `traceparent`.
    pub fn parse(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Self> {
        let tp = traceparent?.trim();
        if !valid_traceparent(tp) {
            return None;
        }
        let tracestate = tracestate
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE_LEN && s.is_ascii())
            .map(str::to_owned);
        Some(Self {
            traceparent: tp.to_ascii_lowercase(),
            tracestate,
        })
    }

    /// The context carried by a field map (a stream entry's or a record's), if any.
    pub fn from_fields(fields: &HashMap<String, String>) -> Option<Self> {
        Self::parse(
            fields.get(TRACEPARENT).map(String::as_str),
            fields.get(TRACESTATE).map(String::as_str),
        )
    }

    /// The fields that carry this context (appended to a stream entry or stored in a record).
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![(TRACEPARENT, self.traceparent.clone())];
        if let Some(s) = &self.tracestate {
            v.push((TRACESTATE, s.clone()));
        }
        v
    }

    /// The trace id, 32 lower-case hex digits.
    pub fn trace_id(&self) -> &str {
        self.traceparent.get(3..35).unwrap_or_default()
    }

    /// The parent span id, 16 lower-case hex digits.
    pub fn span_id(&self) -> &str {
        self.traceparent.get(36..52).unwrap_or_default()
    }
}

/// W3C's version-00 shape, with the all-zero ids it forbids refused.
fn valid_traceparent(tp: &str) -> bool {
    let parts: Vec<&str> = tp.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    matches!(parts.as_slice(), [v, t, s, f]
        if *v == "00" && hex(t, 32) && nonzero(t) && hex(s, 16) && nonzero(s) && hex(f, 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_w3c_example_and_exposes_ids() {
        let c = TraceContext::parse(Some(TP), Some("congo=t61rcWkgMzE")).unwrap_or_else(|| {
            panic!("valid traceparent refused");
        });
        assert_eq!(c.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.span_id(), "00f067aa0ba902b7");
        assert_eq!(c.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        let fields: HashMap<String, String> = c
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(TraceContext::from_fields(&fields), Some(c));
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(Some(bad), Some("a=b")), None, "{bad}");
        }
        assert_eq!(TraceContext::parse(None, Some("a=b")), None);
    }

    #[test]
    fn drops_oversized_or_empty_tracestate_but_keeps_the_parent() {
        let long = "a=".to_owned() + &"b".repeat(MAX_TRACESTATE_LEN);
        for state in [Some(long.as_str()), Some(""), None] {
            let c = TraceContext::parse(Some(TP), state);
            assert_eq!(c.and_then(|c| c.tracestate), None);
        }
    }
}
