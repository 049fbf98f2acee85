//! What a webhook request carries and what the receiver kept of one: the header names of the contract, the
//! [`RecordedRequest`] and the [`signature`] a correct sender computes.

use std::time::Instant;

use bytes::Bytes;
use ring::hmac;

/// `X-Webhook-Event`: the event type of a request (`webhook.challenge` for challenges).
pub const HEADER_EVENT: &str = "x-webhook-event";
/// `X-Webhook-Delivery-Id`: the delivery a request carries (absent on challenges).
pub const HEADER_DELIVERY_ID: &str = "x-webhook-delivery-id";
/// `X-Webhook-Subscription-Id`: the subscription a request is for.
pub const HEADER_SUBSCRIPTION_ID: &str = "x-webhook-subscription-id";
/// `X-Webhook-Signature: sha256=<lowercase hex>`: HMAC-SHA256 of the body with the subscription secret.
pub const HEADER_SIGNATURE: &str = "x-webhook-signature";
/// `X-TMI-Callback`: `async` asks the sender to wait for status callbacks.
pub const HEADER_CALLBACK: &str = "x-tmi-callback";
/// The `X-Webhook-Event` value of verification challenges.
pub const CHALLENGE_EVENT: &str = "webhook.challenge";

/// One request as the receiver got it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// The URI path, without the query.
    pub path: String,
    pub query: Option<String>,
    /// Header names lowercased, in arrival order (a repeated header appears once per value).
    pub headers: Vec<(String, String)>,
    /// The exact body bytes (what a signature covers).
    pub body: Bytes,
    /// When the request head and body had fully arrived.
    pub received_at: Instant,
}

impl RecordedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `X-Webhook-Event`.
    pub fn event(&self) -> Option<&str> {
        self.header(HEADER_EVENT)
    }

    /// `X-Webhook-Delivery-Id`.
    pub fn delivery_id(&self) -> Option<&str> {
        self.header(HEADER_DELIVERY_ID)
    }

    /// `X-Webhook-Subscription-Id`.
    pub fn subscription_id(&self) -> Option<&str> {
        self.header(HEADER_SUBSCRIPTION_ID)
    }

    /// Whether this is a verification challenge.
    pub fn is_challenge(&self) -> bool {
        self.event() == Some(CHALLENGE_EVENT)
    }

    /// The body as text (lossy).
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, when it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Whether `X-Webhook-Signature` is `sha256=` followed by the lowercase hex HMAC-SHA256 of the exact body
    /// bytes under `secret`.
    pub fn verify_signature(&self, secret: &str) -> bool {
        let Some(got) = self.header(HEADER_SIGNATURE) else {
            return false;
        };
        got == signature(secret, &self.body)
    }
}

/// `sha256=<lowercase hex HMAC-SHA256 of body under secret>`: the `X-Webhook-Signature` value a correct
/// sender computes.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}
