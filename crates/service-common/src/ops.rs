//! The operations listener every service has: `/healthz`, `/readyz`, `/metrics`.
//!
//! - `/healthz` answers 200 while the process runs (liveness).
//! - `/readyz` answers 200 only when the service's readiness check passes — Redis answers a PING and the
//!   consumer group the service reads from exists — and 503 otherwise (readiness). The whole check is
//!   bounded by `redis.command_timeout_ms`: a Redis that stops answering (a half-open connection) makes it
//!   answer 503 within that bound, not hang until the probe gives up.
//! - `/metrics` is the Prometheus text exposition of the service's registry.
//!
//! It is the only place metrics are served (the api-gateway's API port keeps `/metrics` only with
//! `api.metrics_on_api_port`), so scrapers and probes reach it while API clients are kept off it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use delivery_model::reader::GroupSpec;
use delivery_model::store::Store;
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A readiness check: `Err(reason)` when not ready.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Readiness of a service that only needs Redis: it answers a PING.
pub fn redis_ready(store: Store) -> ReadyCheck {
    Arc::new(move || {
        let store = store.clone();
        Box::pin(bounded(store.command_timeout(), async move {
            store.ping().await.map_err(|e| format!("redis: {e}"))
        }))
    })
}

/// `check`, or not ready once `limit` has passed: a readiness check makes several calls, each bounded by
/// the command timeout, and the probe must get its answer within one.
async fn bounded(
    limit: Duration,
    check: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(limit, check)
        .await
        .unwrap_or_else(|_| Err(format!("redis: no answer within {limit:?}")))
}

/// Readiness of a service that reads the streams of `spec` in its consumer group: Redis answers and the
/// group exists on every stream.
pub fn group_ready(store: Store, spec: &GroupSpec) -> ReadyCheck {
    let streams = Arc::new(spec.streams.clone());
    let group = spec.group;
    Arc::new(move || {
        let store = store.clone();
        let streams = streams.clone();
        let limit = store.command_timeout();
        Box::pin(bounded(limit, async move {
            store.ping().await.map_err(|e| format!("redis: {e}"))?;
            for stream in streams.iter() {
                match store.group_exists(stream, group).await {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(format!("consumer group {group} on {stream} is missing"));
                    }
                    Err(e) => return Err(format!("redis: {e}")),
                }
            }
            Ok(())
        }))
    })
}

/// Buckets of the per-hop latency histograms (`hookline_consumer_event_lag_seconds`,
/// `hookline_worker_pickup_lag_seconds`, …): fine below 10 ms, where a healthy pipeline's hops sit, coarse
/// above, where only a backlog or an outage puts them.
pub fn hop_buckets() -> Vec<f64> {
    vec![
        0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015,
        0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
}

/// Buckets of the SLO histograms: fine below a second, and the SLO thresholds operators pick (10 s, 30 s,
/// 60 s, 5 min) as exact bucket bounds.
pub const SLO_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0,
];

/// Name of the SLO histogram of deliveries delivered, from their event: observed by the worker for a 2xx
/// without an async callback, and by the api-gateway when an async receiver's callback completes one. The
/// same name and buckets in both, so the SLO's queries sum them without knowing where a delivery ended.
pub const EVENT_TO_DELIVERED: &str = "hookline_worker_event_to_delivered_seconds";
/// Its help text, the same in both processes.
pub const EVENT_TO_DELIVERED_HELP: &str = "Time from the event to its delivery being delivered (a 2xx, or an async receiver's completing callback), retries included.";

/// Seconds from the event behind delivery `id` to `now_ms`: a delivery id is a UUIDv7 whose timestamp is
/// the input entry's append time (fan-out) or the record's creation (test deliveries, invocations). 0 for
/// a clock behind the id's.
pub fn since_event(id: delivery_model::ids::DeliveryId, now_ms: i64) -> f64 {
    id.time_ms()
        .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0)
}

/// Renders a registry in the Prometheus text format.
pub fn render_metrics(registry: &Registry) -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Binds the ops listener and logs `listening` with its address (the e2e harness reads that line).
///
/// # Errors
/// The address cannot be bound.
pub async fn bind(addr: SocketAddr, service: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, service, kind = "ops", "listening");
    Ok(listener)
}

/// Serves the ops endpoints until `token` is cancelled.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    ready: ReadyCheck,
    token: CancellationToken,
) {
    let registry = Arc::new(registry);
    loop {
        let accepted = tokio::select! {
            () = token.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, _peer): (_, SocketAddr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "ops listener accept failed");
                continue;
            }
        };
        let registry = registry.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let registry = registry.clone();
                let ready = ready.clone();
                async move { Ok::<_, Infallible>(route(&req, &registry, &ready).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn route(
    req: &Request<Incoming>,
    registry: &Registry,
    ready: &ReadyCheck,
) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String, ctype: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(ctype),
        );
        r
    };
    if req.method() != hyper::Method::GET {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, String::new(), "text/plain");
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET"),
        );
        return r;
    }
    match req.uri().path() {
        "/healthz" => text(
            StatusCode::OK,
            r#"{"status":"ok"}"#.into(),
            "application/json",
        ),
        "/readyz" => match ready().await {
            Ok(()) => text(
                StatusCode::OK,
                r#"{"status":"ready"}"#.into(),
                "application/json",
            ),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "not_ready", "reason": reason}).to_string(),
                "application/json",
            ),
        },
        "/metrics" => text(
            StatusCode::OK,
            render_metrics(registry),
            "text/plain; version=0.0.4",
        ),
        _ => text(StatusCode::NOT_FOUND, String::new(), "text/plain"),
    }
}
