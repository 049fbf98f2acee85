//! The one outbound HTTP client: connection reuse (keep-alive, HTTP/2 by ALPN), rustls on ring, the SSRF
//! guard in its resolver, timeouts, no redirects, and bounded response bodies.
//!
//! hyper never follows redirects, so a 3xx is simply a non-2xx answer. Response bodies are read up to
//! `outbound.max_response_bytes` and the rest is dropped.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use service_common::config::OutboundSettings;

use crate::guard::{Policy, Refusal};

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The target is not allowed (scheme, or an internal address). Retrying will not help.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The URL cannot be requested.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// No response headers within the response-header timeout, or no complete answer within the total one.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// Connecting, TLS, or the HTTP exchange failed.
    #[error("{0}")]
    Transport(String),
}

/// An HTTP answer (body possibly truncated).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Limits of one request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub total_timeout: Duration,
    pub max_body: usize,
}

/// The guarded client. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    policy: Arc<Policy>,
    limits: Limits,
}

impl HttpClient {
    /// Builds the client from `[outbound]`.
    ///
    /// # Errors
    /// A malformed allowlist entry.
    pub fn new(cfg: &OutboundSettings, pool_per_host: usize) -> anyhow::Result<Self> {
        let policy = Arc::new(Policy::new(cfg.allow_http_targets, &cfg.allowlist)?);
        // Operators must be able to see what the worker may reach, allowlist included.
        tracing::info!(policy = %policy, "outbound address policy");
        let mut http = HttpConnector::new_with_resolver(GuardedResolver {
            policy: policy.clone(),
        });
        // The HTTPS connector hands https URIs to this one; it must not insist on http.
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(Self {
            client,
            policy,
            limits: Limits {
                header_timeout: Duration::from_millis(cfg.response_header_timeout_ms),
                total_timeout: Duration::from_millis(cfg.request_timeout_ms),
                max_body: cfg.max_response_bytes,
            },
        })
    }

    /// The default limits (deliveries).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Parses and vets a target URL before any connection: scheme policy, and IP-literal hosts (which the
    /// connector dials without asking the resolver).
    ///
    /// # Errors
    /// [`SendError::InvalidUrl`] or [`SendError::Refused`].
    pub fn vet(&self, url: &str) -> Result<Uri, SendError> {
        let uri: Uri = url
            .trim()
            .parse()
            .map_err(|e: http::uri::InvalidUri| SendError::InvalidUrl(e.to_string()))?;
        let scheme = uri
            .scheme_str()
            .ok_or_else(|| SendError::InvalidUrl("no scheme".into()))?;
        self.policy.check_scheme(&scheme.to_ascii_lowercase())?;
        let host = uri
            .host()
            .ok_or_else(|| SendError::InvalidUrl("no host".into()))?;
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            self.policy.check_ip(host, ip)?;
        }
        Ok(uri)
    }

    /// POSTs `body` to `uri` with `headers`, within `limits`.
    ///
    /// # Errors
    /// See [`SendError`].
    pub async fn post(
        &self,
        uri: Uri,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Bytes,
        limits: Limits,
    ) -> Result<Answer, SendError> {
        let mut req = Request::builder().method(Method::POST).uri(uri);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| SendError::InvalidUrl(e.to_string()))?;
        let exchange = async {
            let resp = tokio::time::timeout(limits.header_timeout, self.client.request(req))
                .await
                .map_err(|_| SendError::Timeout("response headers"))?
                .map_err(classify)?;
            let (parts, mut body) = resp.into_parts();
            let mut buf = BytesMut::new();
            while buf.len() < limits.max_body {
                match body.frame().await {
                    None => break,
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            let room = limits.max_body - buf.len();
                            buf.extend_from_slice(&data[..data.len().min(room)]);
                        }
                    }
                    // A body cut short still leaves us the status, which is what decides the outcome.
                    Some(Err(_)) => break,
                }
            }
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body: buf.freeze(),
            })
        };
        tokio::time::timeout(limits.total_timeout, exchange)
            .await
            .map_err(|_| SendError::Timeout("the complete response"))?
    }
}

/// Turns a client error into a [`SendError`], finding a [`Refusal`] raised by the resolver anywhere in the
/// chain (it arrives wrapped in the connector's and the client's errors).
fn classify(e: hyper_util::client::legacy::Error) -> SendError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refusal>() {
            return SendError::Refused(r.clone());
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<Refusal>())
        {
            return SendError::Refused(r.clone());
        }
        cur = err.source();
    }
    // The innermost cause is the readable one ("connection refused", "certificate expired", …).
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    SendError::Transport(msg)
}

/// Resolves names and refuses them when any address is internal, unless allowlisted. The connector then
/// dials exactly the vetted addresses, so a DNS answer that changes after the check is never used.
#[derive(Clone)]
struct GuardedResolver {
    policy: Arc<Policy>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for a in &addrs {
                policy
                    .check_ip(&host, a.ip())
                    .map_err(|r| std::io::Error::new(std::io::ErrorKind::PermissionDenied, r))?;
            }
            if addrs.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host} has no address"),
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}
