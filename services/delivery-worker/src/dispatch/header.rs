//! TMI's header names, and the headers of the two requests the worker sends: a delivery and a
//! verification challenge.
//!
//! A delivery is signed by its subscription's scheme: `tmi` (TMI's `X-Webhook-Signature`, byte for byte)
//! or `standard` (Standard Webhooks' `webhook-id`, `webhook-timestamp`, `webhook-signature` carrying a
//! `v1,` HMAC entry and a `v1a,` Ed25519 entry, in place of TMI's signature; TMI's informational
//! `X-Webhook-*` headers are sent either way).
//!
//! During a secret rotation's grace period a delivery carries a signature for each live secret, so a
//! receiver may switch secrets at any moment: Standard Webhooks puts one `v1,` entry per secret in
//! `webhook-signature`; TMI's scheme keeps `X-Webhook-Signature` on the new secret (what TMI receivers
//! check) and adds `X-Webhook-Signature-Previous` on the old one.

use delivery_model::delivery::DeliveryRecord;
use delivery_model::event::CHALLENGE;
use delivery_model::ids::SubscriptionId;
use delivery_model::signing;
use delivery_model::signing::standard;
use delivery_model::subscription::{SignatureScheme, Subscription};
use delivery_model::time::Micros;
use http::{HeaderName, HeaderValue};

pub const EVENT: &str = "x-webhook-event";
pub const DELIVERY_ID: &str = "x-webhook-delivery-id";
pub const SUBSCRIPTION_ID: &str = "x-webhook-subscription-id";
pub const SIGNATURE: &str = "x-webhook-signature";
/// TMI's signature form under the previous secret, during a rotation's grace period (Hookline's).
pub const SIGNATURE_PREVIOUS: &str = "x-webhook-signature-previous";
/// Opt-in for `tmi` subscriptions: the attempt's Unix time in seconds (Hookline's).
pub const TIMESTAMP: &str = "x-webhook-timestamp";
/// Opt-in for `tmi` subscriptions: `sha256=<hex>` over `<timestamp>.<body>` (Hookline's); with
/// `…-previous` on the previous secret during a rotation's grace period.
pub const SIGNATURE_TIMESTAMPED: &str = "x-webhook-signature-timestamped";
pub const SIGNATURE_TIMESTAMPED_PREVIOUS: &str = "x-webhook-signature-timestamped-previous";
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
/// a secret (one signature per live secret), and the delegation token when one was minted. `now` is the
/// attempt's time (Standard Webhooks' timestamp, and whether a previous secret is still live). A value that
/// is not a valid header value is left out.
pub(super) fn delivery(
    user_agent: &HeaderValue,
    record: &DeliveryRecord,
    sub: &Subscription,
    delegation_token: Option<&str>,
    now: Micros,
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
    let previous = sub.previous_secret_at(now);
    match (sub.signature_scheme, &sub.secret) {
        (_, None) => {}
        (SignatureScheme::Tmi, Some(secret)) => {
            add(SIGNATURE, &signing::sign(secret, body));
            if let Some(old) = previous {
                add(SIGNATURE_PREVIOUS, &signing::sign(old, body));
            }
            // A second signature that covers the time, next to TMI's (which TMI receivers keep checking).
            if sub.timestamp_header {
                let now_secs = now.div_euclid(1_000_000);
                let content = signing::timestamped(now_secs, body);
                add(TIMESTAMP, &now_secs.to_string());
                add(SIGNATURE_TIMESTAMPED, &signing::sign(secret, &content));
                if let Some(old) = previous {
                    add(
                        SIGNATURE_TIMESTAMPED_PREVIOUS,
                        &signing::sign(old, &content),
                    );
                }
            }
        }
        (SignatureScheme::Standard, Some(_)) => {
            let now_secs = now.div_euclid(1_000_000);
            let id = record.id.to_string();
            add(STANDARD_ID, &id);
            add(STANDARD_TIMESTAMP, &now_secs.to_string());
            // The API only stores well-formed `whsec_`/`whsk_` keys for this scheme; one that is not (edited
            // in Redis by hand) is left out, and without any entry every receiver refuses the delivery.
            let entries: Vec<String> = sub
                .live_secrets(now)
                .into_iter()
                .map(|s| standard::sign_v1(s, &id, now_secs, body))
                .chain([sub
                    .signing_key
                    .as_ref()
                    .and_then(|k| standard::sign_v1a(k.expose(), &id, now_secs, body))])
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
    use delivery_model::store::Secret;
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

    const NOW: Micros = 1_700_000_000_000_000;
    const NOW_SECS: i64 = 1_700_000_000;

    fn headers(record: &DeliveryRecord, sub: &Subscription, now: Micros) -> Headers {
        delivery(&HeaderValue::from_static("ua"), record, sub, None, now)
    }

    /// `sub` mid-rotation: `old` is live until NOW + 1 s.
    fn rotated(mut sub: Subscription, old: &str) -> Subscription {
        sub.previous_secret = Some(Secret::new(old));
        sub.previous_secret_until = Some(NOW + 1_000_000);
        sub
    }

    #[test]
    fn tmi_scheme_sends_tmi_signature_only() {
        let (record, sub) = fixture(SignatureScheme::Tmi, "0123456789abcdef");
        let h = headers(&record, &sub, NOW);
        assert_eq!(
            get(&h, SIGNATURE),
            Some(signing::sign("0123456789abcdef", record.payload.as_bytes()).as_str())
        );
        for absent in [
            STANDARD_ID,
            STANDARD_TIMESTAMP,
            STANDARD_SIGNATURE,
            SIGNATURE_PREVIOUS,
            TIMESTAMP,
            SIGNATURE_TIMESTAMPED,
        ] {
            assert_eq!(get(&h, absent), None);
        }
    }

    #[test]
    fn tmi_timestamp_header_adds_a_second_signature() {
        let (record, mut sub) = fixture(SignatureScheme::Tmi, "0123456789abcdef");
        sub.timestamp_header = true;
        let body = record.payload.as_bytes();
        let h = headers(&record, &sub, NOW);
        assert_eq!(
            get(&h, SIGNATURE),
            Some(signing::sign("0123456789abcdef", body).as_str()),
            "TMI's signature is untouched"
        );
        assert_eq!(get(&h, TIMESTAMP), Some("1700000000"));
        let content = signing::timestamped(NOW_SECS, body);
        assert_eq!(
            get(&h, SIGNATURE_TIMESTAMPED),
            Some(signing::sign("0123456789abcdef", &content).as_str())
        );
        assert_eq!(get(&h, SIGNATURE_TIMESTAMPED_PREVIOUS), None);
    }

    #[test]
    fn tmi_rotation_adds_the_previous_signature_during_grace_only() {
        let (record, sub) = fixture(SignatureScheme::Tmi, "new-secret-0123456789");
        let sub = rotated(sub, "old-secret-0123456789");
        let body = record.payload.as_bytes();
        let h = headers(&record, &sub, NOW);
        let new_sig = signing::sign("new-secret-0123456789", body);
        let old_sig = signing::sign("old-secret-0123456789", body);
        assert_eq!(get(&h, SIGNATURE), Some(new_sig.as_str()));
        assert_eq!(get(&h, SIGNATURE_PREVIOUS), Some(old_sig.as_str()));
        let after = headers(&record, &sub, NOW + 1_000_000);
        assert_eq!(get(&after, SIGNATURE), Some(new_sig.as_str()));
        assert_eq!(get(&after, SIGNATURE_PREVIOUS), None);
    }

    #[test]
    fn standard_scheme_sends_standard_headers() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let (record, mut sub) = fixture(SignatureScheme::Standard, secret);
        let signing_key = standard::generate_signing_key().unwrap_or_default();
        let public_key = standard::public_key(&signing_key).unwrap_or_default();
        sub.signing_key = Some(Secret::new(signing_key));
        let h = headers(&record, &sub, NOW);
        let id = record.id.to_string();
        let body = record.payload.as_bytes();
        assert_eq!(get(&h, STANDARD_ID), Some(id.as_str()));
        assert_eq!(get(&h, DELIVERY_ID), Some(id.as_str()));
        assert_eq!(get(&h, STANDARD_TIMESTAMP), Some("1700000000"));
        let sig = get(&h, STANDARD_SIGNATURE).unwrap_or_default();
        assert!(standard::verify_v1(secret, &id, NOW_SECS, body, sig));
        assert!(standard::verify_v1a(&public_key, &id, NOW_SECS, body, sig));
        assert_eq!(sig.split(' ').count(), 2, "{sig}");
        assert_eq!(get(&h, SIGNATURE), None);
    }

    #[test]
    fn standard_rotation_signs_with_every_live_secret() {
        let new = standard::generate_secret().unwrap_or_default();
        let old = standard::generate_secret().unwrap_or_default();
        let (record, sub) = fixture(SignatureScheme::Standard, &new);
        let sub = rotated(sub, &old);
        let id = record.id.to_string();
        let body = record.payload.as_bytes();
        let h = headers(&record, &sub, NOW);
        let sig = get(&h, STANDARD_SIGNATURE).unwrap_or_default();
        assert!(standard::verify_v1(&new, &id, NOW_SECS, body, sig));
        assert!(standard::verify_v1(&old, &id, NOW_SECS, body, sig));
        let after = headers(&record, &sub, NOW + 1_000_000);
        let sig = get(&after, STANDARD_SIGNATURE).unwrap_or_default();
        assert!(standard::verify_v1(&new, &id, NOW_SECS + 1, body, sig));
        assert!(!standard::verify_v1(&old, &id, NOW_SECS + 1, body, sig));
    }
}
