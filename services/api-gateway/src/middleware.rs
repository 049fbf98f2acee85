//! The one middleware of the gateway, wrapped around every request ([`observe`]):
//!
//! - gives the request an id — the client's `X-Request-ID` when it sent a usable one, else a fresh UUIDv4 —
//!   and echoes it on the response, whatever the outcome (TMI does the same);
//! - runs the request inside a span carrying that id, so every log line of the request can be correlated;
//!   the span continues the caller's W3C trace (`traceparent`/`tracestate` headers) when it sent one, and
//!   the context the next hop continues is left in the request's extensions ([`RequestTrace`]);
//! - records the request in [`ApiMetrics`](crate::metrics::ApiMetrics) by route *pattern* and logs one
//!   access line.

use std::future::Future;
use std::time::Instant;

use std::future::{Ready, ready};

use actix_web::HttpMessage as _;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpRequest, web};
use delivery_model::trace::TraceContext;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::metrics::UNMATCHED_ROUTE;
use crate::state::AppState;

/// The request-id header.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest client-supplied request id echoed; a longer one is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;
/// Probe routes, logged at debug level so that they do not drown the access log.
const PROBE_ROUTES: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// The id of the request being served (a request extension).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The trace context the request's work hands on (to a stream entry, a challenge, a delivery record): the
/// request span's own, or without trace export the caller's unchanged. An extractor; never fails.
#[derive(Clone, Debug, Default)]
pub struct RequestTrace(pub Option<TraceContext>);

impl FromRequest for RequestTrace {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(req
            .extensions()
            .get::<RequestTrace>()
            .cloned()
            .unwrap_or_default()))
    }
}

/// The client's id when it is printable ASCII of sensible length, else a new UUIDv4.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID_LEN
                && v.chars().all(|c| c.is_ascii_graphic())
        })
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned)
}

/// The middleware function, for `App::wrap_fn`.
pub fn observe<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    let started = Instant::now();
    let id = request_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().to_string();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        request.id = %id,
        http.method = %method,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    let incoming = service_common::trace::from_headers(|name| {
        req.headers().get(name).and_then(|v| v.to_str().ok())
    });
    service_common::trace::set_parent(&span, incoming.as_ref());
    let trace = service_common::trace::continuation(&span, incoming.as_ref());
    req.extensions_mut().insert(RequestTrace(trace));
    let fut = span.in_scope(|| srv.call(req));
    let request_span = span.clone();
    async move {
        // Handler and extractor errors arrive here already turned into responses (actix converts them
        // inside the route), so they carry the id too; only a failing inner middleware could return `Err`,
        // and there is none.
        let mut res = fut.await?.map_into_boxed_body();
        if let Ok(v) = HeaderValue::from_str(&id) {
            res.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        let route = res.request().match_pattern().unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
        let status = res.status().as_u16();
        service_common::trace::rename(&request_span, format!("{method} {route}"));
        request_span.record("http.route", route.as_str());
        request_span.record("http.response.status_code", status);
        let elapsed = started.elapsed();
        if let Some(state) = state {
            state.metrics.observe_request(&method, &route, status, elapsed);
        }
        let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        if PROBE_ROUTES.contains(&route.as_str()) {
            tracing::debug!(http.route = %route, http.status = status, duration_ms, "request served");
        } else {
            tracing::info!(http.route = %route, http.status = status, duration_ms, "request served");
        }
        Ok(res)
    }
    .instrument(span)
}
