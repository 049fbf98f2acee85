//! The subscription-create quota: the limits a create is checked against, TMI's `X-RateLimit-*` headers,
//! and the 429 of a refused create.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpResponse, ResponseError as _};
use delivery_model::store::quotas::{
    DAY_WINDOW_SECS, MINUTE_WINDOW_SECS, MinuteWindow, QuotaCreate, SubscriptionLimits,
};
use delivery_model::time::Micros;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `Retry-After` of the subscription-count refusal (TMI's), seconds.
const COUNT_RETRY_AFTER_SECS: u64 = 60;

/// The limits a create by `owner` is checked against: the owner's override, else `[quotas]`.
///
/// # Errors
/// Redis failure.
pub async fn subscription_limits(state: &AppState, owner: &str) -> ApiResult<SubscriptionLimits> {
    Ok(match state.store.get_webhook_quota(owner).await? {
        Some(q) => SubscriptionLimits {
            max_subscriptions: q.max_subscriptions,
            per_minute: q.max_subscription_requests_per_minute,
            per_day: q.max_subscription_requests_per_day,
        },
        None => SubscriptionLimits {
            max_subscriptions: state.quota_defaults.max_subscriptions,
            per_minute: state.quota_defaults.max_subscription_requests_per_minute,
            per_day: state.quota_defaults.max_subscription_requests_per_day,
        },
    })
}

/// TMI's `X-RateLimit-*` headers of a create, from the per-minute window: the per-minute limit, what is
/// left of it, and when the window frees up (oldest entry + 60 s, or now + 60 s when empty).
fn rate_headers(
    limits: &SubscriptionLimits,
    minute: &MinuteWindow,
    now_secs: i64,
) -> [(HeaderName, String); 3] {
    let remaining = u64::from(limits.per_minute).saturating_sub(minute.count);
    let reset = minute.oldest_secs.unwrap_or(now_secs) + MINUTE_WINDOW_SECS;
    [
        (
            HeaderName::from_static("x-ratelimit-limit"),
            limits.per_minute.to_string(),
        ),
        (
            HeaderName::from_static("x-ratelimit-remaining"),
            remaining.to_string(),
        ),
        (
            HeaderName::from_static("x-ratelimit-reset"),
            reset.to_string(),
        ),
    ]
}

/// Adds the rate headers to a response.
pub fn with_rate_headers(
    mut res: HttpResponse,
    limits: &SubscriptionLimits,
    minute: &MinuteWindow,
    now: Micros,
) -> HttpResponse {
    for (name, value) in rate_headers(limits, minute, now.div_euclid(1_000_000)) {
        if let Ok(v) = HeaderValue::from_str(&value) {
            res.headers_mut().insert(name, v);
        }
    }
    res
}

/// Seconds until a window whose oldest entry is at `oldest_secs` frees a slot (at least 1).
fn until_free(oldest_secs: Option<i64>, window: i64, now: Micros) -> u64 {
    let left = oldest_secs.map_or(window, |o| o + window - now.div_euclid(1_000_000));
    u64::try_from(left.max(1)).unwrap_or(1)
}

fn rate_limited(description: String, retry_after_secs: u64) -> ApiError {
    ApiError::TooManyRequests {
        code: "rate_limit_exceeded",
        description,
        details: None,
        retry_after_secs: Some(retry_after_secs),
    }
}

/// The 429 of a refused create (TMI's bodies; the per-day sentence names the per-day limit, where TMI's
/// names the per-minute one), with the rate headers. `None` for a create that happened.
pub fn refusal(
    outcome: &QuotaCreate,
    limits: &SubscriptionLimits,
    now: Micros,
) -> Option<HttpResponse> {
    let (err, minute) = match *outcome {
        QuotaCreate::Created { .. } => return None,
        QuotaCreate::SubscriptionLimit { current, minute } => (
            rate_limited(
                format!(
                    "subscription limit exceeded: {current}/{max} (limit: {max})",
                    max = limits.max_subscriptions
                ),
                COUNT_RETRY_AFTER_SECS,
            ),
            minute,
        ),
        QuotaCreate::MinuteLimit {
            oldest_secs,
            minute,
            ..
        } => (
            rate_limited(
                format!(
                    "subscription request rate limit exceeded: {n} requests per minute (limit: {n}/minute)",
                    n = limits.per_minute
                ),
                until_free(oldest_secs, MINUTE_WINDOW_SECS, now),
            ),
            minute,
        ),
        QuotaCreate::DayLimit {
            oldest_secs,
            minute,
            ..
        } => (
            rate_limited(
                format!(
                    "subscription request rate limit exceeded: {n} requests per day (limit: {n}/day)",
                    n = limits.per_day
                ),
                until_free(oldest_secs, DAY_WINDOW_SECS, now),
            ),
            minute,
        ),
    };
    let res = err.error_response();
    Some(with_rate_headers(res, limits, &minute, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;
    use actix_web::http::header;

    fn retry_after(res: &HttpResponse) -> Option<&str> {
        res.headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
    }

    const LIMITS: SubscriptionLimits = SubscriptionLimits {
        max_subscriptions: 10,
        per_minute: 10,
        per_day: 20,
    };

    #[test]
    fn rate_headers_from_the_minute_window() {
        let h = rate_headers(
            &LIMITS,
            &MinuteWindow {
                count: 3,
                oldest_secs: Some(1000),
            },
            1010,
        );
        let v: Vec<&str> = h.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(v, ["10", "7", "1060"]);
        let h = rate_headers(
            &LIMITS,
            &MinuteWindow {
                count: 12,
                oldest_secs: None,
            },
            1010,
        );
        let v: Vec<&str> = h.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(v, ["10", "0", "1070"]);
    }

    #[actix_web::test]
    async fn refusals_are_tmis_429s() {
        let now = 1_000_000 * 5000;
        let minute = MinuteWindow {
            count: 10,
            oldest_secs: Some(4970),
        };
        assert!(refusal(&QuotaCreate::Created { minute }, &LIMITS, now).is_none());
        let cases = [
            (
                QuotaCreate::SubscriptionLimit {
                    current: 10,
                    minute,
                },
                "subscription limit exceeded: 10/10 (limit: 10)",
                "60",
            ),
            (
                QuotaCreate::MinuteLimit {
                    current: 10,
                    oldest_secs: Some(4970),
                    minute,
                },
                "subscription request rate limit exceeded: 10 requests per minute (limit: 10/minute)",
                "30",
            ),
            (
                QuotaCreate::DayLimit {
                    current: 20,
                    oldest_secs: Some(5000 - 86_000),
                    minute,
                },
                "subscription request rate limit exceeded: 20 requests per day (limit: 20/day)",
                "400",
            ),
        ];
        for (outcome, sentence, retry) in cases {
            let res = refusal(&outcome, &LIMITS, now).unwrap_or_else(|| panic!("refused"));
            assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(retry_after(&res), Some(retry));
            assert_eq!(
                res.headers()
                    .get("x-ratelimit-remaining")
                    .and_then(|v| v.to_str().ok()),
                Some("0")
            );
            let body = actix_web::body::to_bytes(res.into_body())
                .await
                .unwrap_or_default();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_eq!(
                v,
                serde_json::json!({"error": "rate_limit_exceeded", "error_description": sentence})
            );
        }
    }
}
