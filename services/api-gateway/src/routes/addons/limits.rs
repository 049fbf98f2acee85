//! The 429 answers of `POST /addons/{id}/invoke` when a per-invoker limit is reached, with TMI's details.

use chrono::{DateTime, SecondsFormat, Utc};
use delivery_model::store::addons::{ActiveInvocation, HOURLY_WINDOW_SECS};
use delivery_model::time::Micros;
use serde_json::{Value, json};

use crate::error::ApiError;

/// How long an `in_progress` delivery may go without a callback before cleanup fails it (TMI's
/// `DeliveryStaleTimeout`, 15 minutes): when a blocking invocation will stop counting, at the latest.
const INVOCATION_TIMEOUT_SECS: i64 = 900;

/// RFC 3339 with whole seconds, as TMI prints the times of `blocking_invocations`.
pub(super) fn rfc3339_secs(us: Micros) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// TMI's 429 for the active limit: who blocks, and when the oldest will have timed out at the latest.
pub(super) fn active_limit(active: &[ActiveInvocation], limit: u32, now: Micros) -> ApiError {
    let timeout_us = INVOCATION_TIMEOUT_SECS * 1_000_000;
    let blocking: Vec<Value> = active
        .iter()
        .map(|a| {
            let expires = a.last_activity_at + timeout_us;
            json!({
                "delivery_id": a.delivery_id,
                "addon_id": a.addon_id.map(|id| id.to_string()).unwrap_or_default(),
                "status": a.status,
                "created_at": rfc3339_secs(a.created_at),
                "expires_at": rfc3339_secs(expires),
                "seconds_remaining": (expires - now) / 1_000_000,
            })
        })
        .collect();
    let earliest = active
        .iter()
        .map(|a| a.last_activity_at + timeout_us)
        .min()
        .unwrap_or(now);
    let retry_after = u64::try_from((earliest - now) / 1_000_000).unwrap_or(0);
    let current = active.len();
    ApiError::TooManyRequests {
        code: "rate_limit_exceeded",
        description: format!(
            "Active invocation limit reached: {current}/{limit} concurrent invocations."
        ),
        details: Some(json!({
            "context": {
                "limit": limit,
                "current": current,
                "retry_after": retry_after,
                "blocking_invocations": blocking,
            },
            "suggestion": format!(
                "Wait for an existing invocation to complete, or retry after {retry_after} seconds when the oldest will timeout."
            ),
        })),
        retry_after_secs: Some(retry_after),
    }
}

/// TMI's 429 for the hourly limit; the window frees up when its oldest entry is an hour old.
pub(super) fn hourly_limit(current: u64, limit: u32, oldest_secs: i64, now: Micros) -> ApiError {
    let window = i64::try_from(HOURLY_WINDOW_SECS).unwrap_or(3600);
    let retry_after = u64::try_from(oldest_secs + window - now.div_euclid(1_000_000)).unwrap_or(0);
    ApiError::TooManyRequests {
        code: "rate_limit_exceeded",
        description: format!(
            "Hourly invocation limit exceeded: {current}/{limit}. Retry after {retry_after} seconds."
        ),
        details: Some(json!({
            "context": {"retry_after": retry_after, "limit": limit, "current": current},
        })),
        retry_after_secs: Some(retry_after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use delivery_model::ids::{AddonId, DeliveryId};

    #[test]
    fn limit_errors_carry_tmi_details() {
        let now = 1_775_044_800_000_000;
        let a = ActiveInvocation {
            delivery_id: DeliveryId::new_v7(),
            addon_id: Some(AddonId::new_v4()),
            status: delivery_model::delivery::DeliveryStatus::InProgress,
            created_at: now - 60_000_000,
            last_activity_at: now - 60_000_000,
        };
        match active_limit(&[a], 1, now) {
            ApiError::TooManyRequests {
                code,
                description,
                details: Some(d),
                retry_after_secs,
            } => {
                assert_eq!(code, "rate_limit_exceeded");
                assert_eq!(
                    description,
                    "Active invocation limit reached: 1/1 concurrent invocations."
                );
                assert_eq!(retry_after_secs, Some(840));
                assert_eq!(d["context"]["retry_after"], 840);
                assert_eq!(
                    d["context"]["blocking_invocations"][0]["seconds_remaining"],
                    840
                );
                assert_eq!(
                    d["context"]["blocking_invocations"][0]["expires_at"],
                    "2026-04-01T12:14:00Z"
                );
            }
            other => panic!("{other:?}"),
        }
        match hourly_limit(10, 10, 1_775_044_800 - 600, now) {
            ApiError::TooManyRequests {
                description,
                retry_after_secs,
                ..
            } => {
                assert_eq!(retry_after_secs, Some(3000));
                assert_eq!(
                    description,
                    "Hourly invocation limit exceeded: 10/10. Retry after 3000 seconds."
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
