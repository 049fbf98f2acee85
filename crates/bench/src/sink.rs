//! The loopback receiver the benchmark delivers to: it counts requests and records each event's latency.
//!
//! It runs on a runtime of its own whose threads are named [`SINK_THREAD`], so that the CPU it costs can be
//! told apart from the publisher's in `/proc/self/task` (both live in the benchmark process).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// Name of the receiver's runtime threads (at most 15 bytes: the kernel truncates `comm`).
pub(crate) const SINK_THREAD: &str = "bench-sink";

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
    /// (event time, event→arrival latency), µs, in arrival order.
    latencies: Arc<std::sync::Mutex<Vec<(i64, i64)>>>,
    /// Taken on drop: a runtime may not be dropped (which blocks) inside the benchmark's own runtime.
    runtime: Option<tokio::runtime::Runtime>,
}

/// How waiting for deliveries ended.
pub(crate) enum Arrival {
    /// All arrived; the instant the last one was seen.
    Complete(Instant),
    /// The timeout passed with this many arrived.
    Partial(u64),
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
    /// Starts a receiver on a loopback port that answers 200 after `delay`.
    ///
    /// # Errors
    /// No loopback port, or the runtime cannot be built.
    pub(crate) fn start(delay: Duration) -> anyhow::Result<Self> {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST, delay)
    }

    /// As [`Sink::start`], on loopback address `ip` (another address is another host to the worker: its
    /// own slots and circuit).
    ///
    /// # Errors
    /// No port on `ip`, or the runtime cannot be built.
    pub(crate) fn start_on(ip: std::net::Ipv4Addr, delay: Duration) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind((ip, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        // Two threads: on a 2-core machine the receiver should never be the queue the pipeline waits in.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(SINK_THREAD)
            .enable_all()
            .build()?;
        let count = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(100_000)));
        let (c, l) = (count.clone(), latencies.clone());
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
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
                                v.push((t, arrived - t));
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
            runtime: Some(runtime),
        })
    }

    /// The URL of endpoint `i`: every endpoint is on the same host and port, only the path differs (the
    /// worker's per-host gate sees one host).
    pub(crate) fn url(&self, i: usize) -> String {
        format!("http://{}/hook/{i}", self.addr)
    }

    /// The request counter itself, for a task that watches it.
    pub(crate) fn counter(&self) -> Arc<AtomicU64> {
        self.count.clone()
    }

    /// Requests received since the last reset.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
        if let Ok(mut v) = self.latencies.lock() {
            v.clear();
        }
    }

    /// Event→arrival latencies since the last reset, µs, sorted.
    pub(crate) fn latencies(&self) -> Vec<i64> {
        self.latencies_sent_between(i64::MIN, i64::MAX)
    }

    /// Event→arrival latencies, µs, sorted, of the events sent (their `t`) in `[from, to)` (epoch µs).
    pub(crate) fn latencies_sent_between(&self, from: i64, to: i64) -> Vec<i64> {
        let mut v: Vec<i64> = self
            .latencies
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(t, _)| (from..to).contains(t))
                    .map(|(_, l)| *l)
                    .collect()
            })
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Waits until `n` deliveries have arrived since the last reset, or `timeout` passed.
    pub(crate) async fn wait_for(&self, n: u64, timeout: Duration) -> Arrival {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.count.load(Ordering::Relaxed);
            if seen >= n {
                return Arrival::Complete(Instant::now());
            }
            if Instant::now() >= deadline {
                return Arrival::Partial(seen);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// As [`wait_for`](Self::wait_for), but a timeout is an error (warm-ups, where partial is a failure).
    ///
    /// # Errors
    /// Fewer than `n` deliveries within `timeout`.
    pub(crate) async fn expect(&self, n: u64, timeout: Duration) -> anyhow::Result<Instant> {
        match self.wait_for(n, timeout).await {
            Arrival::Complete(at) => Ok(at),
            Arrival::Partial(seen) => {
                anyhow::bail!("only {seen} of {n} deliveries arrived within {timeout:?}")
            }
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
