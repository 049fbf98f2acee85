//! A tiny HTTP/1.1 client for tests: one request over plain HTTP to a loopback service, whole body read.
//!
//! A fresh client per call, without connection pooling: tests run on many short-lived runtimes, and a pooled
//! connection must not outlive the runtime (or the server) it was opened on.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
pub use hyper::HeaderMap;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Upper bound on one request, so a hung server fails the test instead of hanging it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one request and returns `(status, headers, body)`.
///
/// # Errors
/// Invalid method, URL or header; connection refused or reset; no complete answer within [`REQUEST_TIMEOUT`].
pub async fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> anyhow::Result<(u16, HeaderMap, Bytes)> {
    let mut req = hyper::Request::builder()
        .method(hyper::Method::from_bytes(method.as_bytes()).context("method")?)
        .uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).context("build request")?;
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Full<Bytes>>();
    let exchange = async {
        let resp = client.request(req).await.context("send request")?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .context("read response body")?
            .to_bytes();
        anyhow::Ok((parts.status.as_u16(), parts.headers, body))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .with_context(|| format!("{method} {url}: no answer within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("{method} {url}"))
}

/// Sends one request and returns `(status, headers, body)`.
///
/// ```no_run
/// # async fn demo(url: &str, token: &str) {
/// let auth = format!("Bearer {token}");
/// let (status, _headers, body) =
///     test_support::http::request("GET", url, &[("authorization", &auth)], "").await;
/// # }
/// ```
///
/// # Panics
/// When the request fails (see [`try_request`]): use that to assert that a service is down.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (u16, HeaderMap, Bytes) {
    match try_request(method, url, headers, body).await {
        Ok(r) => r,
        Err(e) => panic!("HTTP request failed: {e:#}"),
    }
}
