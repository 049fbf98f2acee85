//! TMI's header names, and the headers of the two requests the worker sends: a delivery and a
//! verification challenge.

use delivery_model::delivery::DeliveryRecord;
use delivery_model::event::CHALLENGE;
use delivery_model::ids::SubscriptionId;
use delivery_model::signing;
use delivery_model::subscription::Subscription;
use http::{HeaderName, HeaderValue};

pub const EVENT: &str = "x-webhook-event";
pub const DELIVERY_ID: &str = "x-webhook-delivery-id";
pub const SUBSCRIPTION_ID: &str = "x-webhook-subscription-id";
pub const SIGNATURE: &str = "x-webhook-signature";
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

/// A delivery's headers: its event, ids, the payload's signature when the subscription has a secret, and
/// the delegation token when one was minted. A value that is not a valid header value is left out.
pub(super) fn delivery(
    user_agent: &HeaderValue,
    record: &DeliveryRecord,
    sub: &Subscription,
    delegation_token: Option<&str>,
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
    if let Some(secret) = &sub.secret {
        add(SIGNATURE, &signing::sign(secret, record.payload.as_bytes()));
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
