//! `/admin/webhooks/stats` and `/admin/webhooks/subscriptions/{webhook_id}/stats` (Hookline additions, issue
//! #20): the aggregated counters the console draws its charts from, so that no client pages through
//! delivery records for them. What is counted, and how percentiles are estimated, is in
//! `delivery_model::stats`; the counters live in Redis (`hookline:stats:*`, see `docs/architecture.md`), so
//! every gateway replica answers the same.

use actix_web::{HttpRequest, HttpResponse, web};
use delivery_model::stats::Percentiles;
use delivery_model::time::{format_micros, now_micros};
use serde::Serialize;

use crate::auth::Admin;
use crate::error::ApiResult;
use crate::extract::WebhookIdPath;
use crate::routes::{ListQuery, int_param, subscriptions};
use crate::state::AppState;

/// Minutes `GET /admin/webhooks/stats` covers by default (the console's last hour).
const DEFAULT_MINUTES: u64 = 60;
/// Most minutes one request may ask for (the counters live two hours).
const MAX_MINUTES: u64 = 120;
/// Hours of a subscription's sparkline.
const SPARKLINE_HOURS: u32 = 24;

/// One minute of `DeliveryStats` (keys in the OpenAPI document's order).
#[derive(Debug, Serialize)]
struct MinuteView {
    start: String,
    delivered: u64,
    failed: u64,
    retried: u64,
    attempts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<Percentiles>,
}

/// `DeliveryStats`.
#[derive(Debug, Serialize)]
struct StatsView {
    minutes: Vec<MinuteView>,
    totals: MinuteView,
}

fn secs_to_rfc3339(secs: i64) -> String {
    format_micros(secs.saturating_mul(1_000_000))
}

/// `GET /admin/webhooks/stats[?minutes=N]`: deliveries delivered, failed and retried, attempts, and
/// attempt-duration percentiles per minute over the last `minutes` (1–120, default 60) minutes, the current
/// one last, and the same over the whole range in `totals`.
pub async fn get_stats(
    _admin: Admin,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let query = ListQuery::parse(&req)?;
    let minutes = int_param(
        "minutes",
        query.minutes.as_deref(),
        DEFAULT_MINUTES,
        1,
        MAX_MINUTES,
    )?;
    let now_secs = now_micros() / 1_000_000;
    let rows = state
        .store
        .minute_stats(now_secs, u32::try_from(minutes).unwrap_or(60))
        .await?;
    let first = rows.first().map_or(now_secs, |(t, _)| *t);
    let mut total = delivery_model::stats::MinuteStats::default();
    let minutes = rows
        .into_iter()
        .map(|(start, m)| {
            total.delivered += m.delivered;
            total.failed += m.failed;
            total.retried += m.retried;
            total.attempts += m.attempts;
            total.latency.merge(&m.latency);
            MinuteView {
                start: secs_to_rfc3339(start),
                delivered: m.delivered,
                failed: m.failed,
                retried: m.retried,
                attempts: m.attempts,
                latency_ms: m.latency.percentiles(),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(StatsView {
        minutes,
        totals: MinuteView {
            start: secs_to_rfc3339(first),
            delivered: total.delivered,
            failed: total.failed,
            retried: total.retried,
            attempts: total.attempts,
            latency_ms: total.latency.percentiles(),
        },
    }))
}

/// One hour of `SubscriptionStats`.
#[derive(Debug, Serialize)]
struct HourView {
    start: String,
    delivered: u64,
    failed: u64,
}

/// `SubscriptionCircuit`: the breaker of the subscription's destination host.
#[derive(Debug, Serialize)]
struct CircuitOut {
    /// Absent for operator-pinned subscriptions (their URL is never shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    state: &'static str,
    failures: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    open_until: Option<String>,
}

/// `SubscriptionStats`.
#[derive(Debug, Serialize)]
struct SubscriptionStatsView {
    subscription_id: String,
    hours: Vec<HourView>,
    circuit: CircuitOut,
}

/// The lower-cased host of `url`, as the delivery-worker keys its circuit breakers.
fn url_host(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .host_str()
        .map(str::to_ascii_lowercase)
}

/// `GET /admin/webhooks/subscriptions/{webhook_id}/stats`: the subscription's delivered and failed
/// deliveries per hour over the last 24 hours (the current hour last) and its host's circuit breaker.
/// 404 for an unknown subscription.
pub async fn get_subscription_stats(
    WebhookIdPath(id): WebhookIdPath,
    _admin: Admin,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let sub = subscriptions::load(&state, id).await?;
    let now = now_micros();
    let hours = state
        .store
        .subscription_hour_stats(id, now / 1_000_000, SPARKLINE_HOURS)
        .await?
        .into_iter()
        .map(|(start, h)| HourView {
            start: secs_to_rfc3339(start),
            delivered: h.delivered,
            failed: h.failed,
        })
        .collect();
    let host = url_host(&sub.url);
    let circuit = match &host {
        Some(h) => state.store.circuit(h).await?,
        None => delivery_model::store::stats::CircuitView {
            failures: 0,
            open_until_ms: None,
        },
    };
    Ok(HttpResponse::Ok().json(SubscriptionStatsView {
        subscription_id: id.to_string(),
        hours,
        circuit: CircuitOut {
            host: host.filter(|_| !sub.operator_pinned),
            state: circuit.state(now / 1000),
            failures: circuit.failures,
            open_until: circuit
                .open_until_ms
                .map(|ms| format_micros(ms.saturating_mul(1000))),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_as_the_worker_keys_them() {
        assert_eq!(
            url_host("https://Hooks.Example.com:8443/x").as_deref(),
            Some("hooks.example.com")
        );
        assert_eq!(
            url_host("http://127.0.0.1:9/").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(url_host("not a url"), None);
    }
}
