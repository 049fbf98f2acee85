//! Messages of the delivery queue stream.
//!
//! The queue ([`Keyspace::queue_stream`](crate::keys::Keyspace::queue_stream)) carries one field,
//! [`MESSAGE_FIELD`], holding a JSON-encoded [`QueueMessage`]. Entries carry ids only: the worker reads the
//! record (and its payload) when it attempts the delivery, so the stream stays small. The same encoding is the
//! member of the retry schedule ZSET, so scheduling the same message twice keeps one member.
//!
//! A new message shape is a new variant (`DeliveryV2`, …), so entries written by an older release still
//! decode during a rolling upgrade.

use serde::{Deserialize, Serialize};

use crate::ids::{DeliveryId, SubscriptionId};

/// The stream field that holds the encoded message.
pub const MESSAGE_FIELD: &str = "m";

/// Work for the delivery worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum QueueMessage {
    /// Attempt delivery `delivery_id` now.
    DeliveryV1 { delivery_id: DeliveryId },
    /// Send the verification challenge of `subscription_id` now.
    ChallengeV1 { subscription_id: SubscriptionId },
}

impl QueueMessage {
    /// The stored form. Deterministic: the same message always encodes to the same string.
    pub fn encode(&self) -> String {
        match self {
            // Hand-written so that encoding cannot fail and its bytes are fixed for the ZSET dedup above.
            QueueMessage::DeliveryV1 { delivery_id } => {
                format!(r#"{{"type":"delivery_v1","delivery_id":"{delivery_id}"}}"#)
            }
            QueueMessage::ChallengeV1 { subscription_id } => {
                format!(r#"{{"type":"challenge_v1","subscription_id":"{subscription_id}"}}"#)
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
            },
        ];
        for m in msgs {
            let by_hand = m.encode();
            assert_eq!(serde_json::to_string(&m).ok(), Some(by_hand.clone()));
            assert_eq!(QueueMessage::decode(&by_hand).ok(), Some(m));
        }
    }

    #[test]
    fn unknown_variant_fails() {
        assert!(QueueMessage::decode(r#"{"type":"delivery_v9","delivery_id":"x"}"#).is_err());
    }
}
