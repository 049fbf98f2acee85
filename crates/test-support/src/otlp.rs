//! A loopback OTLP/gRPC trace receiver: what the services' exporter (`opentelemetry-otlp` over tonic) sends,
//! decoded with the `opentelemetry-proto` message types, kept for the test to read.
//!
//! It speaks just enough gRPC for the one unary call an exporter makes
//! (`/opentelemetry.proto.collector.trace.v1.TraceService/Export` over HTTP/2 without TLS): the body is one
//! length-prefixed `ExportTraceServiceRequest`, the answer one empty `ExportTraceServiceResponse` followed by
//! the `grpc-status: 0` trailer. Anything else (another path, a compressed message) is answered with a gRPC
//! error and recorded nowhere. The server stops when the [`OtlpReceiver`] drops.
//!
//! ```no_run
//! # async fn demo() {
//! use test_support::otlp::OtlpReceiver;
//!
//! let otlp = OtlpReceiver::start().await;
//! let env = [("HOOKLINE__TELEMETRY__OTLP_ENDPOINT", otlp.endpoint())];
//! // … start services with `env`, do something …
//! let spans = otlp.spans();
//! # }
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The one gRPC method an OTLP trace exporter calls.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// One received span, flattened for assertions. Ids are lower-case hex, as in a `traceparent`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    /// The exporting process's `service.name` resource attribute.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// OTLP's `SpanKind` number (1 internal, 2 server, 3 client, 4 producer, 5 consumer).
    pub kind: i32,
    /// String, integer and boolean attributes, rendered as text.
    pub attributes: HashMap<String, String>,
    /// The (trace id, span id) of every link.
    pub links: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// The attribute `key`, as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// The running receiver. Stops on drop.
pub struct OtlpReceiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    server: JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OtlpReceiver {
    /// Binds a free loopback port and starts serving.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start() -> Self {
        #[expect(clippy::expect_used, reason = "test harness")]
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the OTLP receiver on a loopback port");
        #[expect(clippy::expect_used, reason = "test harness")]
        let addr = listener.local_addr().expect("local address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let server = tokio::spawn(serve(listener, spans.clone()));
        Self {
            addr,
            spans,
            server,
        }
    }

    /// The endpoint to configure in an exporter (`telemetry.otlp_endpoint`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.spans).clone()
    }

    /// Waits until `check` finds what it needs among the spans received so far (polling, like
    /// [`wait::until`](crate::wait::until), but a timeout lists every span that did arrive).
    ///
    /// # Panics
    /// When it does not within `timeout`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[ReceivedSpan]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check(&lock(&self.spans)) {
                return v;
            }
            if Instant::now() >= deadline {
                let got: Vec<String> = self
                    .spans()
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {} trace={} span={} parent={} {:?}",
                            s.service,
                            s.name,
                            s.trace_id,
                            s.span_id,
                            s.parent_span_id,
                            s.attributes
                        )
                    })
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for: {what}; spans received:\n{}",
                    got.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, spans: Arc<Mutex<Vec<ReceivedSpan>>>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let spans = spans.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(spans.clone(), req));
                    let _ = http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

type GrpcBody =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// One gRPC call: decode and keep its spans, answer OK (or a gRPC error status).
async fn handle(
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<GrpcBody>, Infallible> {
    let path_ok = req.uri().path() == EXPORT_PATH;
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // 12 UNIMPLEMENTED for another method, 3 INVALID_ARGUMENT for a message this receiver cannot read.
    let status = if !path_ok {
        12
    } else {
        match decode(&body) {
            Some(received) => {
                lock(&spans).extend(received);
                0
            }
            None => 3,
        }
    };
    Ok(grpc_answer(status))
}

/// The spans of one `ExportTraceServiceRequest` frame; `None` when the body is not one uncompressed frame.
fn decode(body: &[u8]) -> Option<Vec<ReceivedSpan>> {
    let (&compressed, rest) = body.split_first()?;
    let len = usize::try_from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
    let msg = rest.get(4..4 + len)?;
    if compressed != 0 {
        return None;
    }
    let req = ExportTraceServiceRequest::decode(msg).ok()?;
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(text)
            .unwrap_or_default();
        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
            out.push(ReceivedSpan {
                service: service.clone(),
                name: span.name,
                trace_id: hex::encode(&span.trace_id),
                span_id: hex::encode(&span.span_id),
                parent_span_id: hex::encode(&span.parent_span_id),
                kind: span.kind,
                attributes: span
                    .attributes
                    .iter()
                    .filter_map(|kv| Some((kv.key.clone(), text(kv.value.as_ref()?))))
                    .collect(),
                links: span
                    .links
                    .iter()
                    .map(|l| (hex::encode(&l.trace_id), hex::encode(&l.span_id)))
                    .collect(),
            });
        }
    }
    Some(out)
}

/// An attribute value as text (strings verbatim, numbers and booleans in their usual spelling).
fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

/// A unary gRPC answer: for status 0 one empty response message, then the `grpc-status` trailer.
fn grpc_answer(status: u8) -> hyper::Response<GrpcBody> {
    let mut frames = Vec::new();
    if status == 0 {
        // Flag 0 (uncompressed), length 0: an empty `ExportTraceServiceResponse`.
        frames.push(Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))));
    }
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert(
        "grpc-status",
        hyper::header::HeaderValue::from(u16::from(status)),
    );
    frames.push(Ok(Frame::trailers(trailers)));
    let mut res = hyper::Response::new(StreamBody::new(futures::stream::iter(frames)));
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/grpc"),
    );
    res
}
