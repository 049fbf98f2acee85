//! How a receiver proves it holds a subscription's secret on the requests it makes about one delivery:
//! status callbacks (the message is the raw body) and HMAC reads (the message is the delivery id as written
//! in the path). Every live secret is accepted: the current one and, during a rotation's grace period, the
//! previous one.
//!
//! - **TMI's form** (the default): `X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the message>`.
//! - **Timestamped** (a subscription created with `timestamped_callbacks`, issue #17): the signature also
//!   covers a timestamp, which must lie within ±[`TOLERANCE_SECS`] of now, and each accepted signature is
//!   remembered in Redis for the window, so a captured request is accepted once. A `tmi` subscription sends
//!   `X-Webhook-Timestamp: <unix seconds>` and `X-Webhook-Signature: sha256=<hex HMAC of
//!   "<timestamp>.<message>">`; a `standard` one sends Standard Webhooks' headers, exactly what the
//!   libraries' `sign(msg_id, timestamp, message)` produces with `webhook-id` = the delivery id:
//!   `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`.
//!
//! Every refusal is a 401 with TMI's body, saying why.

use std::time::Duration;

use actix_web::http::header::HeaderMap;
use delivery_model::signing::{self, standard};
use delivery_model::subscription::{SignatureScheme, Subscription};
use delivery_model::time::now_micros;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// TMI's signature header.
pub const SIGNATURE: &str = "x-webhook-signature";
/// The timestamp of a timestamped `tmi` request (Hookline's).
pub const TIMESTAMP: &str = "x-webhook-timestamp";
/// Standard Webhooks' headers, for timestamped `standard` requests.
pub const STANDARD_ID: &str = "webhook-id";
pub const STANDARD_TIMESTAMP: &str = "webhook-timestamp";
pub const STANDARD_SIGNATURE: &str = "webhook-signature";
/// How far a request's timestamp may be from now, either way (Standard Webhooks' 5 minutes).
pub const TOLERANCE_SECS: i64 = 300;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The signature a request carries, in either form: `X-Webhook-Signature`, else `webhook-signature`. `None`
/// when absent or blank (TMI treats an empty one as absent).
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    header(headers, SIGNATURE).or_else(|| header(headers, STANDARD_SIGNATURE))
}

pub fn invalid_signature() -> ApiError {
    ApiError::signature_rejected("Invalid webhook signature")
}

/// Checks a receiver's request about delivery `delivery_id` against `sub`'s live `secrets`.
///
/// # Errors
/// 401: no signature in the expected form, a wrong one, a missing or malformed timestamp, a timestamp
/// outside the window, or a signature already used; 503 when Redis cannot record a timestamped one.
pub async fn verify(
    state: &AppState,
    sub: &Subscription,
    secrets: &[String],
    headers: &HeaderMap,
    delivery_id: &str,
    message: &[u8],
) -> ApiResult<()> {
    if !sub.timestamped_callbacks {
        let sig = header(headers, SIGNATURE).ok_or_else(invalid_signature)?;
        return if secrets.iter().any(|s| signing::verify(s, message, sig)) {
            Ok(())
        } else {
            Err(invalid_signature())
        };
    }
    let (ts_header, sig_header) = match sub.signature_scheme {
        SignatureScheme::Tmi => (TIMESTAMP, SIGNATURE),
        SignatureScheme::Standard => (STANDARD_TIMESTAMP, STANDARD_SIGNATURE),
    };
    let sig = header(headers, sig_header).ok_or_else(invalid_signature)?;
    let ts: i64 = header(headers, ts_header)
        .ok_or_else(|| ApiError::signature_rejected("Missing webhook timestamp"))?
        .parse()
        .map_err(|_| ApiError::signature_rejected("Invalid webhook timestamp"))?;
    let now = now_micros().div_euclid(1_000_000);
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err(ApiError::signature_rejected(
            "Webhook timestamp outside the tolerance window",
        ));
    }
    let matched = match sub.signature_scheme {
        SignatureScheme::Tmi => {
            let content = signing::timestamped(ts, message);
            secrets
                .iter()
                .any(|s| signing::verify(s, &content, sig))
                .then_some(sig)
        }
        SignatureScheme::Standard => {
            // The id binds the signature to this delivery, as the deliveries' own `webhook-id` does.
            if header(headers, STANDARD_ID) != Some(delivery_id) {
                return Err(invalid_signature());
            }
            secrets
                .iter()
                .find_map(|s| standard::matching_v1(s, delivery_id, ts, message, sig))
        }
    };
    let matched = matched.ok_or_else(invalid_signature)?;
    // Remembered only once verified, so forged requests cannot fill Redis or block a real one.
    let window = Duration::from_secs(2 * TOLERANCE_SECS.unsigned_abs());
    if !state
        .store
        .remember_signature(sub.id, matched, window)
        .await?
    {
        return Err(ApiError::signature_rejected(
            "Webhook signature already used",
        ));
    }
    Ok(())
}
