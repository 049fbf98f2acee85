//! Per-subscription limits (Hookline addition, issue #18): `rate_limit` (`{per_second, burst}`) and
//! `max_in_flight`, set at create or replaced by `PUT /admin/webhooks/subscriptions/{webhook_id}/limits`.
//! The delivery-worker enforces them in Redis across every replica; a subscription without them pays
//! nothing.

use actix_web::{HttpResponse, web};
use delivery_model::subscription::{RateLimit, Subscription, limits};
use delivery_model::time::now_micros;
use serde::Deserialize;

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, WebhookIdPath};
use crate::routes::subscriptions::{SubscriptionView, load};
use crate::state::AppState;

/// `RateLimit`. Integers wider than the bounds, so that a value out of range gets the range's sentence.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitInput {
    pub per_second: i64,
    /// Absent: 1 (strict pacing, no burst).
    #[serde(default)]
    pub burst: Option<i64>,
}

/// `SubscriptionLimits`: the body of `PUT …/limits`; absent or null means unlimited.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsInput {
    #[serde(default)]
    pub rate_limit: Option<RateLimitInput>,
    #[serde(default)]
    pub max_in_flight: Option<i64>,
}

/// `value` within `1..=max`, else 400 `invalid_input` naming `field`.
fn bounded(field: &str, value: i64, max: u32) -> ApiResult<u32> {
    u32::try_from(value)
        .ok()
        .filter(|v| (1..=max).contains(v))
        .ok_or_else(|| {
            ApiError::invalid_input(format!(
                "Error at \"/{field}\": must be an integer between 1 and {max}"
            ))
        })
}

impl LimitsInput {
    /// The limits as stored.
    ///
    /// # Errors
    /// 400 `invalid_input` for a bound out of range, naming the field.
    pub fn validate(&self) -> ApiResult<(Option<RateLimit>, Option<u32>)> {
        let rate = self
            .rate_limit
            .map(|r| {
                Ok::<_, ApiError>(RateLimit {
                    per_second: bounded("rate_limit/per_second", r.per_second, limits::MAX_RATE)?,
                    burst: bounded("rate_limit/burst", r.burst.unwrap_or(1), limits::MAX_RATE)?,
                })
            })
            .transpose()?;
        let in_flight = self
            .max_in_flight
            .map(|n| bounded("max_in_flight", n, limits::MAX_IN_FLIGHT))
            .transpose()?;
        Ok((rate, in_flight))
    }
}

/// `PUT /admin/webhooks/subscriptions/{webhook_id}/limits`: replaces both limits (an absent one is
/// removed). 200 with the subscription; 403 for an operator-pinned one.
pub async fn put_limits(
    WebhookIdPath(id): WebhookIdPath,
    Admin(admin): Admin,
    state: web::Data<AppState>,
    JsonBody(input): JsonBody<LimitsInput>,
) -> ApiResult<HttpResponse> {
    let (rate_limit, max_in_flight) = input.validate()?;
    let sub = load(&state, id).await?;
    if sub.operator_pinned {
        return Err(ApiError::subscription_pinned());
    }
    let limited = Subscription {
        rate_limit,
        max_in_flight,
        ..sub
    };
    if !state
        .store
        .set_subscription_limits(&limited, now_micros())
        .await?
    {
        return Err(ApiError::subscription_not_found());
    }
    tracing::info!(subscription_id = %id, admin = %admin.id, ?rate_limit, ?max_in_flight,
        "subscription limits set");
    let sub = load(&state, id).await?;
    Ok(HttpResponse::Ok().json(SubscriptionView::new(&sub, false)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let input = |per_second, burst, in_flight| LimitsInput {
            rate_limit: Some(RateLimitInput { per_second, burst }),
            max_in_flight: in_flight,
        };
        let ok = input(50, None, Some(2)).validate().ok();
        let rate = RateLimit {
            per_second: 50,
            burst: 1,
        };
        assert_eq!(ok, Some((Some(rate), Some(2))));
        assert!(input(0, None, None).validate().is_err());
        assert!(input(10_001, None, None).validate().is_err());
        assert!(input(5, Some(0), None).validate().is_err());
        assert!(input(5, Some(-1), None).validate().is_err());
        assert!(input(5, None, Some(1_001)).validate().is_err());
        assert_eq!(LimitsInput::default().validate().ok(), Some((None, None)));
    }
}
