//! A fake webhook receiver: a real HTTP/1.1 server on a loopback port that records every request and answers
//! as the test scripts it, mirroring TMI's integration-test receiver (contract §9).
//!
//! - Verification challenges (`X-Webhook-Event: webhook.challenge`) are answered by the [`ChallengeMode`]:
//!   echo the challenge (default), ignore it, answer a wrong value, or answer a given status.
//! - Every other request is a delivery: it gets the next scripted [`Response`] ([`Receiver::push_response`])
//!   if any, else the default response (status 200, optionally `X-TMI-Callback: async`, optionally delayed).
//!
//! Behaviour changes through `&self` methods while the receiver runs, so a test can make it fail, recover or
//! slow down mid-test. The server stops when the [`Receiver`] drops.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use test_support::receiver::{Receiver, Response};
//!
//! let rx = Receiver::start().await;
//! rx.push_response(Response::status(500)); // the first delivery fails, later ones succeed
//! // … point a subscription at rx.url() and publish an event …
//! let got = rx.wait_for_deliveries(2, Duration::from_secs(10)).await;
//! assert!(got.iter().all(|r| r.verify_signature("the-secret")));
//! # }
//! ```
//!
//! - `request`: the contract's header names, the [`RecordedRequest`] and the expected [`signature`].
//! - `script`: what the receiver answers ([`ChallengeMode`], scripted [`Response`]s, the default).
//! - this module: the [`Receiver`] handle and its HTTP server.

mod request;
mod script;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

pub use request::{
    CHALLENGE_EVENT, HEADER_CALLBACK, HEADER_DELIVERY_ID, HEADER_EVENT, HEADER_SIGNATURE,
    HEADER_SUBSCRIPTION_ID, RecordedRequest, signature,
};
use script::{Behaviour, answer};
pub use script::{ChallengeMode, Response};

/// State shared between the [`Receiver`] handle and its connection tasks.
struct Shared {
    behaviour: Mutex<Behaviour>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// Woken on every recorded request, for the `wait_for_*` helpers.
    arrived: Notify,
    /// Requests being answered now, and the most there ever were at once.
    concurrent: Mutex<(usize, usize)>,
}

// A poisoned lock only means another test thread panicked while holding it; the data is still usable and the
// panic is reported on its own.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The loopback receiver. Cheap to query from any task; stops serving when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop; it owns the connection tasks, so aborting it closes everything.
    server: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Binds `127.0.0.1:0` and starts serving on the current Tokio runtime.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start() -> Self {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST).await
    }

    /// Binds a free port of another loopback address (`127.0.0.2`, …: another destination host for the
    /// worker's per-host limits) and starts serving. The worker's allowlist must cover it.
    ///
    /// # Panics
    /// When `ip` is not a loopback address or no port can be bound.
    pub async fn start_on(ip: std::net::Ipv4Addr) -> Self {
        assert!(ip.is_loopback(), "receivers bind loopback addresses only");
        #[expect(clippy::expect_used, reason = "test harness: no port means no test")]
        let listener = TcpListener::bind((ip, 0))
            .await
            .expect("bind receiver on a loopback port");
        #[expect(clippy::expect_used, reason = "test harness")]
        let addr = listener.local_addr().expect("receiver local addr");
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(Behaviour::default()),
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            concurrent: Mutex::new((0, 0)),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
        Self {
            addr,
            shared,
            server: Some(server),
        }
    }

    /// `http://ADDR:PORT/hook`: the URL to subscribe.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits until the port is closed (a receiver that went down).
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    // ---- behaviour ---------------------------------------------------------------------------------------

    /// How to answer challenges from now on.
    pub fn set_challenge_mode(&self, mode: ChallengeMode) {
        lock(&self.shared.behaviour).challenge = mode;
    }

    /// Queues an answer for a coming delivery; queued answers are used in order before the default.
    pub fn push_response(&self, response: Response) {
        lock(&self.shared.behaviour).scripted.push_back(response);
    }

    /// The status of the default delivery answer (200 unless set).
    pub fn set_default_status(&self, status: u16) {
        lock(&self.shared.behaviour).default_status = status;
    }

    /// Whether default 200 answers carry `X-TMI-Callback: async`.
    pub fn set_async(&self, on: bool) {
        lock(&self.shared.behaviour).callback_async = on;
    }

    /// How long default delivery answers wait before answering.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.shared.behaviour).default_delay = delay;
    }

    // ---- what arrived ------------------------------------------------------------------------------------

    /// The most requests this receiver was answering at once (each counted from its body's arrival to
    /// its answer).
    pub fn max_concurrent(&self) -> usize {
        lock(&self.shared.concurrent).1
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The deliveries (every request that is not a challenge).
    pub fn deliveries(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| !r.is_challenge())
            .collect()
    }

    /// The verification challenges.
    pub fn challenges(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(RecordedRequest::is_challenge)
            .collect()
    }

    /// How many requests carried each `X-Webhook-Delivery-Id` (duplicates show up as counts above 1).
    pub fn count_by_delivery_id(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for r in lock(&self.shared.requests).iter() {
            if let Some(id) = r.delivery_id() {
                *counts.entry(id.to_owned()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Forgets every recorded request (behaviour is kept).
    pub fn clear(&self) {
        lock(&self.shared.requests).clear();
    }

    /// See [`RecordedRequest::verify_signature`].
    pub fn verify_signature(req: &RecordedRequest, secret: &str) -> bool {
        req.verify_signature(secret)
    }

    /// Waits until at least `n` deliveries have arrived and returns them all.
    ///
    /// # Panics
    /// When fewer than `n` arrive within `timeout`.
    pub async fn wait_for_deliveries(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        self.wait_for("deliveries", n, timeout, |r| !r.is_challenge())
            .await
    }

    /// Waits until at least `n` challenges have arrived and returns them all.
    ///
    /// # Panics
    /// When fewer than `n` arrive within `timeout`.
    pub async fn wait_for_challenges(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        self.wait_for("challenges", n, timeout, RecordedRequest::is_challenge)
            .await
    }

    async fn wait_for(
        &self,
        what: &str,
        n: usize,
        timeout: Duration,
        keep: impl Fn(&RecordedRequest) -> bool,
    ) -> Vec<RecordedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so a request recorded in between still wakes us.
            let arrived = self.shared.arrived.notified();
            let got: Vec<RecordedRequest> =
                self.requests().into_iter().filter(|r| keep(r)).collect();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let seen: Vec<String> = self
                    .requests()
                    .iter()
                    .map(|r| format!("{} {} event={:?}", r.method, r.path, r.event()))
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {n} {what}; got {}; all requests: {seen:#?}",
                    got.len()
                );
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Accepts connections until aborted; each connection is served on a task owned by this one.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(shared.clone(), req));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One request counted as being answered while it lives (also when its sender gives up and the answer is
/// dropped).
struct Busy<'a>(&'a Shared);

impl<'a> Busy<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let mut c = lock(&shared.concurrent);
        c.0 += 1;
        c.1 = c.1.max(c.0);
        Self(shared)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        lock(&self.0.concurrent).0 -= 1;
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    // A sender that gives up mid-body still leaves a trace: record what arrived.
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        received_at: Instant::now(),
    };
    let answer = answer(&mut lock(&shared.behaviour), &recorded);
    lock(&shared.requests).push(recorded);
    shared.arrived.notify_waiters();
    let _busy = Busy::enter(&shared);
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut response = hyper::Response::new(Full::new(answer.body));
    *response.status_mut() = hyper::StatusCode::from_u16(answer.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in &answer.headers {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            response.headers_mut().append(k, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;
    use crate::http;

    async fn post(
        rx: &Receiver,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, hyper::HeaderMap, Bytes) {
        http::request("POST", &rx.url(), headers, body.to_owned()).await
    }

    fn challenge_headers() -> [(&'static str, &'static str); 2] {
        [
            ("X-Webhook-Event", CHALLENGE_EVENT),
            ("content-type", "application/json"),
        ]
    }

    #[tokio::test]
    async fn challenge_modes() {
        let rx = Receiver::start().await;
        let body = r#"{"challenge":"c0ffee","type":"webhook.challenge"}"#;

        let (status, _, got) = post(&rx, &challenge_headers(), body).await;
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&got).unwrap(),
            serde_json::json!({"challenge": "c0ffee"})
        );

        rx.set_challenge_mode(ChallengeMode::Ignore);
        let (status, _, got) = post(&rx, &challenge_headers(), body).await;
        assert_eq!((status, got.len()), (200, 0));

        rx.set_challenge_mode(ChallengeMode::Wrong);
        let (status, _, got) = post(&rx, &challenge_headers(), body).await;
        assert_eq!(status, 200);
        assert_eq!(got, Bytes::from_static(br#"{"challenge":"wrong-value"}"#));

        rx.set_challenge_mode(ChallengeMode::Status(503));
        let (status, _, _) = post(&rx, &challenge_headers(), body).await;
        assert_eq!(status, 503);

        // Challenges never consume scripted delivery answers and are told apart from deliveries.
        assert_eq!(rx.challenges().len(), 4);
        assert!(rx.deliveries().is_empty());
        assert_eq!(
            rx.challenges()[0].header("X-WEBHOOK-EVENT"),
            Some(CHALLENGE_EVENT)
        );
    }

    #[tokio::test]
    async fn scripted_responses_then_default() {
        let rx = Receiver::start().await;
        rx.push_response(Response::status(500).body("boom"));
        rx.push_response(Response::status(429).header("Retry-After", "7"));
        rx.set_challenge_mode(ChallengeMode::Echo);

        let d1 = [("X-Webhook-Delivery-Id", "d1")];
        let (s1, _, b1) = post(&rx, &d1, "{}").await;
        // A challenge in between does not take the next scripted answer.
        let (sc, _, _) = post(&rx, &challenge_headers(), r#"{"challenge":"x"}"#).await;
        let (s2, h2, _) = post(&rx, &d1, "{}").await;
        let (s3, h3, _) = post(&rx, &[("X-Webhook-Delivery-Id", "d2")], "{}").await;
        assert_eq!((s1, b1.as_ref()), (500, b"boom".as_ref()));
        assert_eq!(sc, 200);
        assert_eq!(
            (s2, h2.get("retry-after").map(|v| v.to_str().unwrap())),
            (429, Some("7"))
        );
        assert_eq!(s3, 200);
        assert!(h3.get(HEADER_CALLBACK).is_none());

        rx.set_default_status(503);
        assert_eq!(post(&rx, &d1, "{}").await.0, 503);

        // Async callbacks are announced only on 200 answers.
        rx.set_async(true);
        assert!(post(&rx, &d1, "{}").await.1.get(HEADER_CALLBACK).is_none());
        rx.set_default_status(200);
        let (s, h, _) = post(&rx, &d1, "{}").await;
        assert_eq!(
            (s, h.get(HEADER_CALLBACK).map(|v| v.to_str().unwrap())),
            (200, Some("async"))
        );

        let counts = rx.count_by_delivery_id();
        assert_eq!(counts.get("d1"), Some(&5));
        assert_eq!(counts.get("d2"), Some(&1));
        assert_eq!(rx.deliveries().len(), 6);
        assert_eq!(rx.requests().len(), 7);
    }

    #[tokio::test]
    async fn records_method_path_headers_and_exact_body() {
        let rx = Receiver::start().await;
        let body = "{\"a\": 1.50,  \"b\":\"\u{e9}\"}";
        http::request(
            "PUT",
            &format!("{}?x=1", rx.url()),
            &[("X-Custom-Thing", "Yes")],
            body.to_owned(),
        )
        .await;
        let r = &rx.wait_for_deliveries(1, Duration::from_secs(5)).await[0];
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_deref()),
            ("PUT", "/hook", Some("x=1"))
        );
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "x-custom-thing" && v == "Yes"),
            "{:?}",
            r.headers
        );
        assert_eq!(r.body.as_ref(), body.as_bytes());
        assert!(r.received_at <= Instant::now());
    }

    #[tokio::test]
    async fn signature_check_covers_exact_bytes_and_lowercase_hex() {
        let rx = Receiver::start().await;
        let body = r#"{"event_type":"threat_model.created","data":{}}"#;
        let good = signature("s3cret", body.as_bytes());
        // RFC 4231 test case 2 pins the algorithm: HMAC-SHA256("Jefe", "what do ya want for nothing?").
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        post(&rx, &[(HEADER_SIGNATURE, &good)], body).await;
        post(
            &rx,
            &[(
                HEADER_SIGNATURE,
                &good.to_uppercase().replacen("SHA256", "sha256", 1),
            )],
            body,
        )
        .await;
        post(&rx, &[(HEADER_SIGNATURE, &good)], &format!("{body} ")).await;
        post(&rx, &[], body).await;
        let got = rx.deliveries();
        assert!(Receiver::verify_signature(&got[0], "s3cret"));
        assert!(!Receiver::verify_signature(&got[0], "wrong"));
        assert!(
            !got[1].verify_signature("s3cret"),
            "uppercase hex is not the wire format"
        );
        assert!(
            !got[2].verify_signature("s3cret"),
            "a changed body must not verify"
        );
        assert!(!got[3].verify_signature("s3cret"), "unsigned");
    }

    #[tokio::test]
    async fn delay_holds_the_answer_but_records_on_arrival() {
        let rx = Receiver::start().await;
        rx.set_delay(Duration::from_millis(300));
        let started = Instant::now();
        let call = tokio::spawn({
            let url = rx.url();
            async move { http::request("POST", &url, &[], "{}").await }
        });
        let got = rx.wait_for_deliveries(1, Duration::from_secs(5)).await;
        assert!(got[0].received_at.duration_since(started) < Duration::from_millis(300));
        let (status, _, _) = call.await.unwrap();
        assert_eq!(status, 200);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn wait_for_deliveries_times_out_with_a_panic() {
        let rx = Receiver::start().await;
        let waited =
            tokio::spawn(
                async move { rx.wait_for_deliveries(1, Duration::from_millis(100)).await },
            );
        let err = waited.await.expect_err("must panic");
        assert!(err.is_panic());
    }

    #[tokio::test]
    async fn stops_on_drop() {
        let rx = Receiver::start().await;
        let url = rx.url();
        assert_eq!(http::request("POST", &url, &[], "{}").await.0, 200);
        drop(rx);
        crate::wait::until("receiver port closed", Duration::from_secs(5), || {
            let url = url.clone();
            async move {
                http::try_request("POST", &url, &[], "{}")
                    .await
                    .is_err()
                    .then_some(())
            }
        })
        .await;
    }
}
