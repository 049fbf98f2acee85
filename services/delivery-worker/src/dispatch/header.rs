//! TMI's header names, and the headers of the two requests the worker sends: a delivery and a
//! verification challenge.
//!
//! A delivery is signed by its subscription's scheme: `tmi` (TMI's `X-Webhook-Signature`, byte for byte)
//! or `standard` (Standard Webhooks' `webhook-id`, `webhook-timestamp`, `webhook-signature` carrying a
//! `v1,` HMAC entry and a `v1a,` Ed25519 entry, in place of TMI's signature; TMI's informational
//! `X-Webhook-*` headers are sent either way).

use delivery_model::delivery::DeliveryRecord;
use delivery_model::event::CHALLENGE;
use delivery_model::ids::SubscriptionId;
use delivery_model::signing;
use delivery_model::signing::standard;
use delivery_model::subscription::{SignatureScheme, Subscription};
use http::{HeaderName, HeaderValue};

pub const EVENT: &str = "x-webhook-event";
pub const DELIVERY_ID: &str = "x-webhook-delivery-id";
pub const SUBSCRIPTION_ID: &str = "x-webhook-subscription-id";
pub const SIGNATURE: &str = "x-webhook-signature";
/// Standard Webhooks: the message id (the delivery id, stable across retries).
pub const STANDARD_ID: &str = "webhook-id";
/// Standard Webhooks: the attempt's Unix time in seconds.
pub const STANDARD_TIMESTAMP: &str = "webhook-timestamp";
/// Standard Webhooks: space-separated `version,base64` signatures.
pub const STANDARD_SIGNATURE: &str = "webhook-signature";
pub const DELEGATION_TOKEN: &str = "x-tmi-delegation-token";
/// Receiver's answer: `async` means it will report progress by callback.
pub const CALLBACK: &str = "x-tmi-callback";

/// A request's headers, in the order they are sent.
pub(super) type Headers = Vec<(HeaderName, HeaderValue)>;

/// What every request carries: a JSON body, and our user agent.
fn common(user_agent: &HeaderValue) -> Headers {
    vec![
        (
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (http::header::USER_AGENT, user_agent.clone()),
    ]
}

/// A delivery's headers: its event, ids, the payload's signature in the subscription's scheme when it has
/// a secret, and the delegation token when one was minted. `now_secs` is the attempt's Unix time (the
/// Standard Webhooks timestamp). A value that is not a valid header value is left out.
pub(super) fn delivery(
    user_agent: &HeaderValue,
    record: &DeliveryRecord,
    sub: &Subscription,
    delegation_token: Option<&str>,
    now_secs: i64,
) -> Headers {
    let mut headers = common(user_agent);
    let mut add = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.push((HeaderName::from_static(name), v));
        }
    };
    add(EVENT, &record.event_type);
    add(DELIVERY_ID, &record.id.to_string());
    add(SUBSCRIPTION_ID, &sub.id.to_string());
    let body = record.payload.as_bytes();
    match (sub.signature_scheme, &sub.secret) {
        (_, None) => {}
        (SignatureScheme::Tmi, Some(secret)) => add(SIGNATURE, &signing::sign(secret, body)),
        (SignatureScheme::Standard, Some(secret)) => {
            let id = record.id.to_string();
            add(STANDARD_ID, &id);
            add(STANDARD_TIMESTAMP, &now_secs.to_string());
            // The API only stores well-formed `whsec_`/`whsk_` keys for this scheme; one that is not (edited
            // in Redis by hand) is left out, and without any entry every receiver refuses the delivery.
            let entries: Vec<String> = [
                standard::sign_v1(secret, &id, now_secs, body),
                sub.signing_key
                    .as_ref()
                    .and_then(|k| standard::sign_v1a(k.expose(), &id, now_secs, body)),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !entries.is_empty() {
                add(STANDARD_SIGNATURE, &entries.join(" "));
            }
        }
    }
    if let Some(token) = delegation_token {
        add(DELEGATION_TOKEN, token);
    }
    headers
}

/// A verification challenge's headers: the challenge event and the subscription's id.
pub(super) fn challenge(user_agent: &HeaderValue, id: SubscriptionId) -> Headers {
    let mut headers = common(user_agent);
    headers.push((
        HeaderName::from_static(EVENT),
        HeaderValue::from_static(CHALLENGE),
    ));
    headers.push((
        HeaderName::from_static(SUBSCRIPTION_ID),
        HeaderValue::from_str(&id.to_string()).unwrap_or(HeaderValue::from_static("")),
    ));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use delivery_model::ids::DeliveryId;
    use delivery_model::subscription::SubscriptionStatus;

    fn fixture(scheme: SignatureScheme, secret: &str) -> (DeliveryRecord, Subscription) {
        let sub = Subscription {
            secret: Some(secret.into()),
            signature_scheme: scheme,
            ..Subscription::new(
                "o",
                "n",
                "https://example.com/h",
                vec!["*".into()],
                SubscriptionStatus::Active,
                1,
            )
        };
        let record = DeliveryRecord::new_pending(
            DeliveryId::new_v7(),
            sub.id,
            "threat_model.created",
            r#"{"a":1}"#.to_owned(),
            1,
        );
        (record, sub)
    }

    fn get<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
        h.iter()
            .find(|(n, _)| n.as_str() == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn tmi_scheme_sends_tmi_signature_only() {
        let (record, sub) = fixture(SignatureScheme::Tmi, "0123456789abcdef");
        let h = delivery(
            &HeaderValue::from_static("ua"),
            &record,
            &sub,
            None,
            1_700_000_000,
        );
        assert_eq!(
            get(&h, SIGNATURE),
            Some(signing::sign("0123456789abcdef", record.payload.as_bytes()).as_str())
        );
        for absent in [STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_SIGNATURE] {
            assert_eq!(get(&h, absent), None);
        }
    }

    #[test]
    fn standard_scheme_sends_standard_headers() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let (record, mut sub) = fixture(SignatureScheme::Standard, secret);
        let signing_key = standard::generate_signing_key().unwrap_or_default();
        let public_key = standard::public_key(&signing_key).unwrap_or_default();
        sub.signing_key = Some(delivery_model::store::Secret::new(signing_key));
        let h = delivery(
            &HeaderValue::from_static("ua"),
            &record,
            &sub,
            None,
            1_700_000_000,
        );
        let id = record.id.to_string();
        assert_eq!(get(&h, STANDARD_ID), Some(id.as_str()));
        assert_eq!(get(&h, DELIVERY_ID), Some(id.as_str()));
        assert_eq!(get(&h, STANDARD_TIMESTAMP), Some("1700000000"));
        let sig = get(&h, STANDARD_SIGNATURE).unwrap_or_default();
        assert!(standard::verify_v1(
            secret,
            &id,
            1_700_000_000,
            record.payload.as_bytes(),
            sig
        ));
        assert!(standard::verify_v1a(
            &public_key,
            &id,
            1_700_000_000,
            record.payload.as_bytes(),
            sig
        ));
        assert_eq!(sig.split(' ').count(), 2, "{sig}");
        assert_eq!(get(&h, SIGNATURE), None);
    }
}
