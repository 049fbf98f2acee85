//! The loopback receiver the benchmark delivers to: it counts requests and records each event's latency.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// Wall-clock microseconds: the publisher stamps events with it and the sink reads it on arrival, so both
/// ends of the latency come from the same clock.
pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A lean receiver: counts requests and records event→arrival latency from the `t` in the body's data.
pub(crate) struct Sink {
    addr: SocketAddr,
    count: Arc<AtomicU64>,
    latencies: Arc<std::sync::Mutex<Vec<i64>>>,
}

#[derive(serde::Deserialize)]
struct Body {
    data: Option<Data>,
}
#[derive(serde::Deserialize)]
struct Data {
    t: Option<i64>,
}

impl Sink {
    pub(crate) async fn start(delay: Duration) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let count = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(100_000)));
        let (c, l) = (count.clone(), latencies.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (c, l) = (c.clone(), l.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let (c, l) = (c.clone(), l.clone());
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let arrived = now_us();
                            if let Some(t) = serde_json::from_slice::<Body>(&body)
                                .ok()
                                .and_then(|b| b.data?.t)
                                && let Ok(mut v) = l.lock()
                            {
                                v.push(arrived - t);
                            }
                            c.fetch_add(1, Ordering::Relaxed);
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            count,
            latencies,
        })
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub(crate) fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
        if let Ok(mut v) = self.latencies.lock() {
            v.clear();
        }
    }

    pub(crate) fn percentiles(&self) -> (f64, f64, f64) {
        let mut v = self.latencies.lock().map(|v| v.clone()).unwrap_or_default();
        if v.is_empty() {
            return (0.0, 0.0, 0.0);
        }
        v.sort_unstable();
        let p = |q: f64| v[((v.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
        (p(0.50), p(0.95), p(0.99))
    }

    pub(crate) async fn wait_for(&self, n: u64, timeout: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count.load(Ordering::Relaxed) >= n {
                return Ok(Instant::now());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {} of {n} deliveries arrived within {timeout:?}",
                self.count.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}
