//! `/admin/quotas/webhooks[/{user_id}]` and `/admin/quotas/addons[/{user_id}]`: TMI's per-owner quota
//! overrides (admin only), and the subscription-create quota the subscription routes enforce with them.
//!
//! An owner without an override gets the configured defaults (`[quotas]` for webhooks, `[addons]` for
//! invocations); `GET` of such an owner answers those defaults, as TMI does (never 404). `PUT` creates (201)
//! or replaces (200) an override within TMI's bounds; `DELETE` removes it (404 when there is none). The
//! lists show overrides only, newest first, with the defaults alongside.
//!
//! `max_events_per_minute` is stored and shown but, as in TMI, enforced nowhere.
//!
//! This file holds what both override kinds share (the `{user_id}` path, TMI's bounds, list pagination);
//! `webhooks` and `addons` hold the two kinds' routes, and `subscription_create` the quota that
//! subscription creates are checked against.

mod addons;
mod subscription_create;
mod webhooks;

pub use addons::{
    AddonQuotaUpdate, delete_addon_quota, get_addon_quota, list_addon_quotas, put_addon_quota,
};
pub use subscription_create::{refusal, subscription_limits, with_rate_headers};
pub use webhooks::{
    WebhookQuotaUpdate, delete_webhook_quota, get_webhook_quota, list_webhook_quotas,
    put_webhook_quota,
};

use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest};
use delivery_model::time::{Micros, format_micros};
use std::future::{Ready, ready};

use crate::error::{ApiError, ApiResult};
use crate::extract::parse_uuid;
use crate::routes::{ListQuery, int_param};

/// Path parameter of the quota routes (TMI's `UserIdPathParam`).
pub const USER_ID_PARAM: &str = "user_id";
/// `limit` of the quota lists when the query has none (TMI's handler default).
const DEFAULT_QUOTA_LIMIT: u64 = 50;
/// Largest `limit` of the quota lists (TMI's `LimitQueryParam`).
const MAX_QUOTA_LIMIT: u64 = 1000;
/// Largest `offset` of the quota lists (TMI's `OffsetQueryParam`).
const MAX_QUOTA_OFFSET: u64 = 1_000_000;
/// `created_at`/`modified_at` of an owner without an override: TMI answers its defaults with Go's zero time.
const NEVER_SET: &str = "0001-01-01T00:00:00Z";

// TMI's admin bounds (`api/quota_limits.go`).
const MAX_SUBSCRIPTIONS: i64 = 100;
const MAX_EVENTS_PER_MINUTE: i64 = 1000;
const MAX_SUBSCRIPTION_REQUESTS_PER_MINUTE: i64 = 100;
const MAX_SUBSCRIPTION_REQUESTS_PER_DAY: i64 = 10_000;
const MAX_ACTIVE_INVOCATIONS: i64 = 10;
const MAX_INVOCATIONS_PER_HOUR: i64 = 1000;

/// The `{user_id}` of the path, lower-cased (the form owner ids are compared in).
#[derive(Clone, Debug)]
pub struct UserIdPath(pub String);

impl FromRequest for UserIdPath {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(
            req.match_info()
                .get(USER_ID_PARAM)
                .and_then(parse_uuid)
                .map(|u| UserIdPath(u.to_string()))
                .ok_or_else(|| ApiError::invalid_uuid(USER_ID_PARAM)),
        )
    }
}

/// TMI's bound check (`ValidateQuotaValue`), with its sentences; returns the value as stored.
fn bounded(field: &str, value: i64, max: i64) -> ApiResult<u32> {
    if value < 1 {
        return Err(ApiError::invalid_input(format!(
            "{field} must be at least 1 (got {value})"
        )));
    }
    if value > max {
        return Err(ApiError::invalid_input(format!(
            "{field} exceeds maximum allowed value of {max} (got {value})"
        )));
    }
    u32::try_from(value).map_err(|_| ApiError::invalid_input(format!("{field} is out of range")))
}

/// Pagination of the quota lists (TMI's `LimitQueryParam` / `OffsetQueryParam` bounds).
fn quota_page(req: &HttpRequest) -> ApiResult<(u64, u64)> {
    let q = ListQuery::parse(req)?;
    Ok((
        int_param(
            "limit",
            q.limit.as_deref(),
            DEFAULT_QUOTA_LIMIT,
            0,
            MAX_QUOTA_LIMIT,
        )?,
        int_param("offset", q.offset.as_deref(), 0, 0, MAX_QUOTA_OFFSET)?,
    ))
}

fn stamp(t: Option<Micros>) -> String {
    t.map_or_else(|| NEVER_SET.to_owned(), format_micros)
}

fn quota_not_found() -> ApiError {
    ApiError::handler(StatusCode::NOT_FOUND, "quota not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: ApiResult<u32>) -> (&'static str, String) {
        match r {
            Err(ApiError::BadRequest { code, description }) => (code, description),
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn bounds_use_tmis_sentences() {
        assert_eq!(bounded("max_subscriptions", 1, 100).ok(), Some(1));
        assert_eq!(bounded("max_subscriptions", 100, 100).ok(), Some(100));
        assert_eq!(
            code(bounded("max_subscriptions", 0, 100)),
            (
                "invalid_input",
                "max_subscriptions must be at least 1 (got 0)".to_owned()
            )
        );
        assert_eq!(
            code(bounded("max_subscriptions", 101, 100)).1,
            "max_subscriptions exceeds maximum allowed value of 100 (got 101)"
        );
        assert!(bounded("x", i64::MAX, i64::MAX).is_err());
    }
}
