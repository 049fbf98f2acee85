//! `/healthz`, `/readyz` and (only with `api.metrics_on_api_port`) `/metrics` on the API listener, without
//! authentication. The ops listener serves all three as well (`service_common::ops`).
//!
//! - `/healthz`: 200 while the process serves requests (liveness; touches nothing).
//! - `/readyz`: 200 when Redis answers a PING, else 503 with `Retry-After` (readiness: a gateway without
//!   Redis can answer nothing useful).
//! - `/metrics`: the Prometheus text exposition of [`ApiMetrics`](crate::metrics::ApiMetrics).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::error::{ApiError, ApiResult, STORE_RETRY_AFTER_SECS};
use crate::state::AppState;

/// Content type of the Prometheus text format.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /healthz`
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`
pub async fn readyz(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    match state.store.ping().await {
        Ok(()) => Ok(HttpResponse::Ok().json(json!({"status": "ready"}))),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: Redis does not answer");
            Err(ApiError::Unavailable {
                description: "Redis is not reachable".into(),
                retry_after_secs: STORE_RETRY_AFTER_SECS,
            })
        }
    }
}

/// `GET /metrics`
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(PROMETHEUS_CONTENT_TYPE)
        .body(service_common::ops::render_metrics(
            state.metrics.registry(),
        ))
}
