//! The load: two ways in (XADD straight to the input stream, as TMI does; `POST /events` through the
//! api-gateway, as producers without Redis access do) and three shapes (a steady rate, N producers as fast
//! as the gateway answers, a burst of N events).
//!
//! Every event carries its publish time in `data.t` (µs, [`now_us`]) so the receiver measures
//! event→receiver latency the same way in both modes; in API mode that time is taken before the request,
//! so the gateway's own time is part of the latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use delivery_model::event::StreamEvent;
use delivery_model::store::Store;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use service_common::config::AuthSettings;
use tokio::task::JoinSet;

use crate::sink::now_us;

/// The event type every benchmark subscription listens to.
pub(crate) const EVENT_TYPE: &str = "threat_model.updated";
const THREAT_MODEL: &str = "0f6c0000-0000-4000-8000-000000000001";
const OWNER: &str = "5b1e0000-0000-4000-8000-000000000002";

/// `data` of event `i`, stamped now.
fn data(i: usize) -> serde_json::Value {
    serde_json::json!({"name": "Payments TM", "description": "benchmark event", "i": i, "t": now_us()})
}

/// Event `i` as TMI writes it to the stream.
pub(crate) fn stream_event(i: usize) -> StreamEvent {
    stream_event_of(EVENT_TYPE, i)
}

/// Event `i` of type `event_type` as TMI writes it to the stream.
pub(crate) fn stream_event_of(event_type: &str, i: usize) -> StreamEvent {
    let payload = serde_json::json!({
        "event_type": event_type, "threat_model_id": THREAT_MODEL, "object_id": THREAT_MODEL,
        "object_type": "threat_model", "owner_id": OWNER,
        "timestamp": "2026-04-01T12:00:00.123456789Z",
        "data": data(i),
    });
    StreamEvent {
        event_type: event_type.into(),
        threat_model_id: Some(THREAT_MODEL.into()),
        object_id: Some(THREAT_MODEL.into()),
        object_type: Some("threat_model".into()),
        owner_id: Some(OWNER.into()),
        timestamp: Some("2026-04-01T12:00:00Z".into()),
        payload: payload.to_string(),
        delivery_id: None,
        trace: None,
    }
}

/// Event `i` as a `POST /events` body (openapi `/events`; the gateway stamps the timestamp).
fn api_body(i: usize) -> String {
    serde_json::json!({
        "event_type": EVENT_TYPE, "threat_model_id": THREAT_MODEL, "object_id": THREAT_MODEL,
        "object_type": "threat_model", "owner_id": OWNER, "data": data(i),
    })
    .to_string()
}

/// How events get in.
#[derive(Clone)]
pub(crate) enum Publisher {
    Xadd(Store),
    Api(Arc<ApiProducer>),
}

/// A keep-alive HTTP/1.1 client pool to the gateway with a bearer token holding the events scope.
pub(crate) struct ApiProducer {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: hyper::Uri,
    bearer: HeaderValue,
}

impl Publisher {
    /// A `POST /events` publisher to `url`, keeping up to `producers` connections open, with a token minted
    /// by the gateway's own `dev-token` code for a non-admin caller holding `auth.events_scope` (with the
    /// configured issuer and audience, so the gateway accepts it).
    ///
    /// # Errors
    /// An invalid URL or an empty JWT secret.
    pub(crate) fn api(url: &str, auth: &AuthSettings, producers: usize) -> anyhow::Result<Self> {
        let claims = api_gateway::dev_token::DevClaims {
            sub: "bench-producer".into(),
            admin: false,
            scopes: vec![auth.events_scope.clone()],
            // A run lasts minutes; the cap is 24 h.
            ttl_secs: 3600,
            issuer: Some(auth.jwt_issuer.clone()).filter(|s| !s.is_empty()),
            audience: Some(auth.jwt_audience.clone()).filter(|s| !s.is_empty()),
        };
        let now = now_us() / 1_000_000;
        let token = api_gateway::dev_token::mint(auth.jwt_secret.expose(), &claims, now)
            .context("minting the producer's token")?;
        let mut connector = HttpConnector::new();
        // Without it a small request waits on Nagle for the previous segment's ACK (~40 ms on loopback).
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(producers.max(64))
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Self::Api(Arc::new(ApiProducer {
            client,
            uri: url.parse().context("gateway URL")?,
            bearer: HeaderValue::from_str(&format!("Bearer {token}"))?,
        })))
    }

    /// Publishes event `i`; Ok once it is accepted (XADD answered, or `202 Accepted`).
    ///
    /// # Errors
    /// Redis or the connection fails, or the gateway answers anything but 202.
    pub(crate) async fn publish(&self, i: usize) -> anyhow::Result<()> {
        match self {
            Publisher::Xadd(store) => {
                store.publish_event(&stream_event(i)).await?;
                Ok(())
            }
            Publisher::Api(p) => {
                let mut req = hyper::Request::post(p.uri.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(api_body(i))))?;
                req.headers_mut().insert(AUTHORIZATION, p.bearer.clone());
                let resp = p.client.request(req).await?;
                let status = resp.status();
                // Read to the end, so the connection goes back to the pool.
                let body = resp.into_body().collect().await?.to_bytes();
                anyhow::ensure!(
                    status == hyper::StatusCode::ACCEPTED,
                    "POST /events answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
                Ok(())
            }
        }
    }
}

/// What a load sent.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    pub(crate) accepted: u64,
    pub(crate) failed: u64,
    pub(crate) first_error: Option<String>,
    /// When the last accepted event's acknowledgement arrived.
    pub(crate) last_accepted: Option<Instant>,
    /// From the load's start to the last event handed to the publisher.
    pub(crate) issue_secs: f64,
    /// The steady generator's worst delay between an event's due time and its send, ms.
    pub(crate) max_lateness_ms: f64,
}

impl Sent {
    /// # Errors
    /// Not all `n` events were accepted (the first error is in the message).
    pub(crate) fn ensure_all(&self, n: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.accepted == n as u64,
            "{} of {n} events accepted; first error: {}",
            self.accepted,
            self.first_error.as_deref().unwrap_or("none")
        );
        Ok(())
    }
}

/// Counters shared by a load's tasks.
struct Tally {
    start: Instant,
    accepted: AtomicU64,
    failed: AtomicU64,
    /// µs after `start` of the latest acknowledgement, plus one (0: none yet).
    last_us: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn new(start: Instant) -> Arc<Self> {
        Arc::new(Self {
            start,
            accepted: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_us: AtomicU64::new(0),
            first_error: std::sync::Mutex::new(None),
        })
    }

    fn record(&self, r: anyhow::Result<()>) {
        match r {
            Ok(()) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                let us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.last_us.fetch_max(us + 1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock()
                    && first.is_none()
                {
                    *first = Some(format!("{e:#}"));
                }
            }
        }
    }

    fn sent(&self, issue_secs: f64, max_lateness_ms: f64) -> Sent {
        let last = self.last_us.load(Ordering::Relaxed);
        Sent {
            accepted: self.accepted.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            first_error: self.first_error.lock().ok().and_then(|e| e.clone()),
            last_accepted: (last > 0).then(|| self.start + Duration::from_micros(last - 1)),
            issue_secs,
            max_lateness_ms,
        }
    }
}

/// When event `i` of a steady `rate` is due, after the start: `i / rate` exactly, so the schedule never
/// drifts however late the timer fires.
pub(crate) fn due_at(i: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate)
}

/// `rate` events per second for `secs`, spread evenly: event i is sent at start + i/rate. The loop sleeps
/// until the next event is due and then sends every event due by then; tokio's timer has millisecond
/// granularity, so at 2,000/s events leave in pairs each millisecond rather than in bursts of 20 every
/// 10 ms. Each event is its own task, so a slow answer does not hold up the schedule (an open-loop load,
/// as real producers are).
pub(crate) async fn steady(publisher: &Publisher, rate: f64, secs: f64) -> Sent {
    let total = (rate * secs).round() as u64;
    let start = Instant::now();
    let tally = Tally::new(start);
    let mut tasks = JoinSet::new();
    let mut max_late = Duration::ZERO;
    let mut i = 0u64;
    while i < total {
        let now = start.elapsed();
        while i < total && due_at(i, rate) <= now {
            max_late = max_late.max(now - due_at(i, rate));
            let (p, t) = (publisher.clone(), tally.clone());
            let n = usize::try_from(i).unwrap_or(usize::MAX);
            tasks.spawn(async move { t.record(p.publish(n).await) });
            i += 1;
        }
        // Reap finished publishes as we go, so a long run does not hold tens of thousands of results.
        while tasks.try_join_next().is_some() {}
        if i < total {
            tokio::time::sleep_until((start + due_at(i, rate)).into()).await;
        }
    }
    let issue_secs = start.elapsed().as_secs_f64();
    while tasks.join_next().await.is_some() {}
    tally.sent(issue_secs, max_late.as_secs_f64() * 1e3)
}

/// `producers` closed-loop producers for `secs`: each sends an event, waits for its answer, and sends the
/// next, the way a saturating client fleet behaves.
pub(crate) async fn saturate(publisher: &Publisher, producers: usize, secs: f64) -> Sent {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let tally = Tally::new(start);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..producers.max(1) {
        let (p, t, next) = (publisher.clone(), tally.clone(), next.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let i = usize::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(0);
                t.record(p.publish(i).await);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let issue_secs = start.elapsed().as_secs_f64();
    tally.sent(issue_secs, 0.0)
}

/// `n` events as fast as `concurrency` requests in flight allow.
pub(crate) async fn burst(publisher: &Publisher, n: usize, concurrency: usize) -> Sent {
    let start = Instant::now();
    let tally = Tally::new(start);
    futures::stream::iter(0..n)
        .for_each_concurrent(concurrency.max(1), |i| {
            let (p, t) = (publisher.clone(), tally.clone());
            async move { t.record(p.publish(i).await) }
        })
        .await;
    tally.sent(start.elapsed().as_secs_f64(), 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_even_and_does_not_drift() {
        // 2,000/s: one event every 500 µs, and event 40,000 exactly 20 s in.
        assert_eq!(due_at(1, 2000.0), Duration::from_micros(500));
        assert_eq!(due_at(3, 2000.0), Duration::from_micros(1500));
        assert_eq!(due_at(40_000, 2000.0), Duration::from_secs(20));
        // 3/s: no accumulated rounding after many events.
        assert_eq!(due_at(3_000, 3.0), Duration::from_secs(1000));
    }

    #[test]
    fn api_bodies_carry_the_publish_time_in_data() {
        let before = now_us();
        let v: serde_json::Value =
            serde_json::from_str(&api_body(7)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v["event_type"], EVENT_TYPE);
        assert_eq!(v["data"]["i"], 7);
        assert!(v["data"]["t"].as_i64().is_some_and(|t| t >= before));
        assert!(v.get("timestamp").is_none(), "the gateway stamps it");
    }
}
