//! Every route of the gateway, registered in one place by [`configure`].
//!
//! Each path is one actix resource whose default service answers 405 with an `Allow` header listing the
//! methods registered for it (actix's own 405 has no JSON body). Paths no resource matches get the app's
//! default service, a JSON 404 ([`not_found`]).
//!
//! One file per resource: [`subscriptions`] (and [`rotation`], their secrets; [`test_delivery`]; [`lanes`],
//! their FIFO lanes), [`deliveries`] (admin reads), [`addons`] (CRUD and invoke),
//! [`webhook_deliveries`] (receivers' status reads and callbacks), [`quotas`] (admin quota overrides and the
//! subscription-create quota), [`events`], [`health`], [`stats`] (the console's aggregated counters),
//! [`console`] (the web console's embedded files).

pub mod addons;
pub mod console;
pub mod deliveries;
pub mod enable;
pub mod events;
pub mod health;
pub mod lanes;
pub mod limits;
pub mod openapi;
pub mod quotas;
pub mod redrive;
pub mod rotation;
pub mod stats;
pub mod subscriptions;
pub mod test_delivery;
pub mod webhook_deliveries;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use delivery_model::delivery::DeliveryStatus;
use delivery_model::time::{Micros, parse_rfc3339};

use crate::error::{ApiError, ApiResult};
use crate::extract::parse_uuid;

/// `limit` when the query has none (TMI's default).
pub const DEFAULT_LIMIT: u64 = 20;
/// `limit` of `GET /addons` when the query has none (TMI's add-on handler default).
pub const DEFAULT_ADDON_LIMIT: u64 = 50;
/// Largest `limit` accepted (TMI's schema maximum).
pub const MAX_LIMIT: u64 = 100;
/// Largest `offset` accepted (TMI's schema maximum).
pub const MAX_OFFSET: u64 = 1_000_000_000;
/// Longest `event_type` filter (TMI's bound on event type strings).
const MAX_EVENT_TYPE_CHARS: usize = 1000;

/// A resource that answers 405 (with `Allow: allow`) to the methods it has no route for.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow })
    }))
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/admin/webhooks/subscriptions", "GET, POST")
            .route(web::get().to(subscriptions::list_subscriptions))
            .route(web::post().to(subscriptions::create_subscription)),
    )
    .service(
        resource("/admin/webhooks/subscriptions/{webhook_id}", "GET, DELETE")
            .route(web::get().to(subscriptions::get_subscription))
            .route(web::delete().to(subscriptions::delete_subscription)),
    )
    .service(
        resource("/admin/webhooks/subscriptions/{webhook_id}/test", "POST")
            .route(web::post().to(test_delivery::test_subscription)),
    )
    .service(
        resource(
            "/admin/webhooks/subscriptions/{webhook_id}/rotate-secret",
            "POST",
        )
        .route(web::post().to(rotation::rotate_secret)),
    )
    .service(
        resource("/admin/webhooks/subscriptions/{webhook_id}/limits", "PUT")
            .route(web::put().to(limits::put_limits)),
    )
    .service(
        resource("/admin/webhooks/subscriptions/{webhook_id}/enable", "POST")
            .route(web::post().to(enable::enable_subscription)),
    )
    .service(
        resource(
            "/admin/webhooks/subscriptions/{webhook_id}/lanes/skip",
            "POST",
        )
        .route(web::post().to(lanes::skip_lane)),
    )
    .service(
        resource(
            "/admin/webhooks/subscriptions/{webhook_id}/retry-failed",
            "POST",
        )
        .route(web::post().to(deliveries::retry_failed)),
    )
    .service(
        resource(
            "/admin/webhooks/subscriptions/{webhook_id}/redrive",
            "GET, POST, DELETE",
        )
        .route(web::get().to(redrive::get_redrive))
        .route(web::post().to(redrive::start_redrive))
        .route(web::delete().to(redrive::cancel_redrive)),
    )
    .service(
        resource("/admin/webhooks/subscriptions/{webhook_id}/stats", "GET")
            .route(web::get().to(stats::get_subscription_stats)),
    )
    .service(resource("/admin/webhooks/stats", "GET").route(web::get().to(stats::get_stats)))
    .service(
        resource("/admin/webhooks/deliveries", "GET")
            .route(web::get().to(deliveries::list_deliveries)),
    )
    .service(
        resource("/admin/webhooks/deliveries/{delivery_id}", "GET")
            .route(web::get().to(deliveries::get_delivery)),
    )
    .service(
        resource("/admin/webhooks/deliveries/{delivery_id}/attempts", "GET")
            .route(web::get().to(deliveries::list_attempts)),
    )
    .service(
        resource("/admin/webhooks/deliveries/{delivery_id}/retry", "POST")
            .route(web::post().to(deliveries::retry_delivery)),
    )
    .service(
        resource("/addons", "GET, POST")
            .route(web::get().to(addons::list_addons))
            .route(web::post().to(addons::create_addon)),
    )
    .service(
        resource("/addons/{id}", "GET, DELETE")
            .route(web::get().to(addons::get_addon))
            .route(web::delete().to(addons::delete_addon)),
    )
    .service(resource("/addons/{id}/invoke", "POST").route(web::post().to(addons::invoke_addon)))
    .service(
        resource("/webhook-deliveries/{delivery_id}", "GET")
            .route(web::get().to(webhook_deliveries::get_delivery_status)),
    )
    .service(
        resource("/webhook-deliveries/{delivery_id}/status", "POST")
            .route(web::post().to(webhook_deliveries::update_delivery_status)),
    )
    .service(
        resource("/admin/quotas/webhooks", "GET").route(web::get().to(quotas::list_webhook_quotas)),
    )
    .service(
        resource("/admin/quotas/webhooks/{user_id}", "GET, PUT, DELETE")
            .route(web::get().to(quotas::get_webhook_quota))
            .route(web::put().to(quotas::put_webhook_quota))
            .route(web::delete().to(quotas::delete_webhook_quota)),
    )
    .service(
        resource("/admin/quotas/addons", "GET").route(web::get().to(quotas::list_addon_quotas)),
    )
    .service(
        resource("/admin/quotas/addons/{user_id}", "GET, PUT, DELETE")
            .route(web::get().to(quotas::get_addon_quota))
            .route(web::put().to(quotas::put_addon_quota))
            .route(web::delete().to(quotas::delete_addon_quota)),
    )
    .service(resource("/events", "POST").route(web::post().to(events::publish_event)))
    .service(resource("/healthz", "GET").route(web::get().to(health::healthz)))
    .service(resource("/readyz", "GET").route(web::get().to(health::readyz)))
    .configure(openapi::configure)
    .configure(console::configure);
}

/// `/metrics` on the API listener: only with `api.metrics_on_api_port` (issue #16 item 7). Metrics are served
/// on the ops listener, which API clients cannot reach; the API port keeps them only where it is private.
pub fn configure_metrics(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/metrics", "GET").route(web::get().to(health::metrics)));
}

/// The app's default service: no route matches the path.
pub async fn not_found() -> ApiResult<HttpResponse> {
    Err(ApiError::RouteNotFound)
}

/// Query parameters, kept as text so that each gets its own readable error.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<String>,
    offset: Option<String>,
    threat_model_id: Option<String>,
    subscription_id: Option<String>,
    status: Option<String>,
    event_type: Option<String>,
    addon_id: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    /// `GET /admin/webhooks/stats` only.
    minutes: Option<String>,
}

/// Validated pagination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pagination {
    pub limit: u64,
    pub offset: u64,
}

impl ListQuery {
    /// Parses the query string. Unknown parameters are ignored, as TMI's validator does.
    pub(crate) fn parse(req: &HttpRequest) -> ApiResult<Self> {
        web::Query::<ListQuery>::from_query(req.query_string())
            .map(web::Query::into_inner)
            .map_err(|e| ApiError::invalid_input(format!("Invalid query string: {e}")))
    }

    pub(crate) fn pagination(&self) -> ApiResult<Pagination> {
        self.pagination_with(DEFAULT_LIMIT)
    }

    /// Pagination with another default `limit` (same bounds).
    pub(crate) fn pagination_with(&self, default_limit: u64) -> ApiResult<Pagination> {
        Ok(Pagination {
            limit: int_param("limit", self.limit.as_deref(), default_limit, 1, MAX_LIMIT)?,
            offset: int_param("offset", self.offset.as_deref(), 0, 0, MAX_OFFSET)?,
        })
    }

    pub(crate) fn addon_id(&self) -> ApiResult<Option<String>> {
        uuid_param("addon_id", self.addon_id.as_deref())
    }

    /// `status`: one of the four delivery statuses.
    pub(crate) fn status(&self) -> ApiResult<Option<DeliveryStatus>> {
        self.status
            .as_deref()
            .map(|s| {
                s.parse().map_err(|_| {
                    ApiError::invalid_input(
                        "Invalid value for query parameter status: must be one of pending, in_progress, delivered, failed",
                    )
                })
            })
            .transpose()
    }

    /// `event_type`: any event type name (unknown ones simply match nothing).
    pub(crate) fn event_type(&self) -> ApiResult<Option<String>> {
        match self.event_type.as_deref() {
            None => Ok(None),
            Some(e)
                if e.is_empty()
                    || e.chars().count() > MAX_EVENT_TYPE_CHARS
                    || e.chars().any(char::is_control) =>
            {
                Err(ApiError::invalid_input(format!(
                    "Invalid value for query parameter event_type: must be 1 to {MAX_EVENT_TYPE_CHARS} characters without control characters"
                )))
            }
            Some(e) => Ok(Some(e.to_owned())),
        }
    }

    /// `created_after` / `created_before` (RFC 3339) as Unix microseconds.
    pub(crate) fn created_range(&self) -> ApiResult<(Option<Micros>, Option<Micros>)> {
        let instant = |name: &str, raw: Option<&str>| -> ApiResult<Option<Micros>> {
            raw.map(|r| {
                parse_rfc3339(r).ok_or_else(|| {
                    ApiError::invalid_input(format!(
                        "Invalid value for query parameter {name}: must be an RFC 3339 date-time"
                    ))
                })
            })
            .transpose()
        };
        Ok((
            instant("created_after", self.created_after.as_deref())?,
            instant("created_before", self.created_before.as_deref())?,
        ))
    }

    pub(crate) fn threat_model_id(&self) -> ApiResult<Option<String>> {
        uuid_param("threat_model_id", self.threat_model_id.as_deref())
    }

    pub(crate) fn subscription_id(&self) -> ApiResult<Option<String>> {
        uuid_param("subscription_id", self.subscription_id.as_deref())
    }
}

fn int_param(name: &str, raw: Option<&str>, default: u64, min: u64, max: u64) -> ApiResult<u64> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(ApiError::invalid_input(format!(
            "Invalid value for query parameter {name}: must be an integer between {min} and {max}"
        ))),
    }
}

/// A UUID query parameter, in lower-case hyphenated form (the form ids are stored in).
fn uuid_param(name: &str, raw: Option<&str>) -> ApiResult<Option<String>> {
    match raw {
        None => Ok(None),
        Some(raw) => parse_uuid(raw)
            .map(|u| Some(u.to_string()))
            .ok_or_else(|| ApiError::invalid_uuid(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(limit: Option<&str>, offset: Option<&str>) -> ListQuery {
        ListQuery {
            limit: limit.map(Into::into),
            offset: offset.map(Into::into),
            ..ListQuery::default()
        }
    }

    #[test]
    fn pagination_defaults_and_bounds() {
        assert_eq!(
            q(None, None).pagination().ok(),
            Some(Pagination {
                limit: 20,
                offset: 0
            })
        );
        assert_eq!(
            q(Some("100"), Some("5")).pagination().ok(),
            Some(Pagination {
                limit: 100,
                offset: 5
            })
        );
        for (l, o) in [
            (Some("0"), None),
            (Some("101"), None),
            (Some("x"), None),
            (None, Some("-1")),
            (Some("1.5"), None),
        ] {
            assert!(q(l, o).pagination().is_err(), "{l:?} {o:?}");
        }
    }

    #[test]
    fn uuid_params_are_normalised() {
        assert_eq!(
            uuid_param("x", Some("550E8400-E29B-41D4-A716-446655440000"))
                .ok()
                .flatten()
                .as_deref(),
            Some("550e8400-e29b-41d4-a716-446655440000")
        );
        assert!(uuid_param("x", Some("nope")).is_err());
    }
}
