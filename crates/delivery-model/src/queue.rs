//! Messages of the delivery queue stream.
//!
//! The queue ([`Keyspace::queue_stream`](crate::keys::Keyspace::queue_stream)) carries one field,
//! [`MESSAGE_FIELD`], holding a JSON-encoded [`QueueMessage`]. Entries carry ids only: the worker reads the
//! record (and its payload) when it attempts the delivery, so the stream stays small. The same encoding is the
//! member of the retry schedule ZSET, so scheduling the same message twice keeps one member.
//!
//! A challenge message may carry the W3C trace context of the request that created its subscription
//! (`traceparent`, `tracestate`: optional fields, ignored by a release that does not know them). A
//! delivery's context lives in its record instead, which every attempt reads: retries, takeovers and an
//! administrator's retry keep it without re-encoding, and a `delivery_v1` message stays one fixed string per
//! delivery (the schedule's dedup above).
//!
//! A new message shape is a new variant (`DeliveryV2`, …), so entries written by an older release still
//! decode during a rolling upgrade.

use serde::{Deserialize, Serialize};

use crate::ids::{DeliveryId, SubscriptionId};
use crate::trace::TraceContext;

/// The stream field that holds the encoded message.
pub const MESSAGE_FIELD: &str = "m";

/// Work for the delivery worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum QueueMessage {
    /// Attempt delivery `delivery_id` now.
    DeliveryV1 { delivery_id: DeliveryId },
    /// Send the verification challenge of `subscription_id` now.
    ChallengeV1 {
        subscription_id: SubscriptionId,
        /// The trace the challenge continues (the subscription's creation), when there is one.
        #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
        trace: Option<TraceContext>,
    },
}

/// A delivery message is these two strings around the delivery id. Lua scripts that queue a delivery they
/// know only by id (the next delivery of a FIFO lane) build its message from them.
pub const DELIVERY_MESSAGE_AROUND_ID: [&str; 2] =
    [r#"{"type":"delivery_v1","delivery_id":""#, r#""}"#];

impl QueueMessage {
    /// The stored form. Deterministic: the same message always encodes to the same string.
    pub fn encode(&self) -> String {
        match self {
            // Hand-written so that encoding cannot fail and its bytes are fixed for the ZSET dedup above.
            QueueMessage::DeliveryV1 { delivery_id } => {
                let [pre, post] = DELIVERY_MESSAGE_AROUND_ID;
                format!("{pre}{delivery_id}{post}")
            }
            QueueMessage::ChallengeV1 {
                subscription_id,
                trace,
            } => {
                let mut s =
                    format!(r#"{{"type":"challenge_v1","subscription_id":"{subscription_id}""#);
                // Validated values (hex, dashes; `tracestate` printable ASCII) but escaped all the same.
                for (k, v) in trace.iter().flat_map(TraceContext::to_fields) {
                    s.push_str(&format!(",\"{k}\":{}", serde_json::Value::from(v)));
                }
                s.push('}');
                s
            }
        }
    }

    /// Decodes a stored message.
    ///
    /// # Errors
    /// When the text is not a known message variant.
    pub fn decode(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_matches_serde_and_round_trips() {
        let msgs = [
            QueueMessage::DeliveryV1 {
                delivery_id: DeliveryId::new_v7(),
            },
            QueueMessage::ChallengeV1 {
                subscription_id: SubscriptionId::new_v4(),
                trace: None,
            },
            QueueMessage::ChallengeV1 {
                subscription_id: SubscriptionId::new_v4(),
                trace: TraceContext::parse(
                    Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                    Some("congo=\"t61\""),
                ),
            },
        ];
        for m in msgs {
            let by_hand = m.encode();
            assert_eq!(serde_json::to_string(&m).ok(), Some(by_hand.clone()));
            assert_eq!(QueueMessage::decode(&by_hand).ok(), Some(m));
        }
    }

    #[test]
    fn challenge_without_trace_fields_still_decodes() {
        let id = SubscriptionId::new_v4();
        let old = format!(r#"{{"type":"challenge_v1","subscription_id":"{id}"}}"#);
        assert_eq!(
            QueueMessage::decode(&old).ok(),
            Some(QueueMessage::ChallengeV1 {
                subscription_id: id,
                trace: None
            })
        );
    }

    #[test]
    fn unknown_variant_fails() {
        assert!(QueueMessage::decode(r#"{"type":"delivery_v9","delivery_id":"x"}"#).is_err());
    }
}
