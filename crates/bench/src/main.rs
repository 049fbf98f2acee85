//! `make bench`: the real binaries (release build) against a private redis-server and a loopback receiver.
//!
//! Phases, each printed as it finishes:
//! 1. **Rates**: events at fixed rates to K matching subscriptions on a fast receiver: deliveries/s and
//!    event→receiver latency p50/p95/p99 (publish time is carried in the event's data).
//! 2. **Flood**: N events as fast as possible: deliveries/s, latency, and Redis memory per delivery record
//!    (records and their indexes; the input stream is trimmed before both readings).
//! 3. **Ceiling**: `wrk` POSTing the same body straight to the same receiver; pipeline/ceiling ratio.
//! 4. **Scaling**: a receiver that answers after a fixed delay, with 1, 2 and 4 worker processes, each
//!    limited to the same in-flight slots: throughput per worker count and the scaling ratio.
#![expect(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use delivery_model::event::StreamEvent;
use delivery_model::store::{Store, StoreOptions};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use fred::prelude::*;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use test_support::redis::RedisServer;
use test_support::service::{Service, ServiceBin};

#[derive(Parser, Debug)]
#[command(about = "Hookline pipeline benchmark")]
struct Args {
    /// Events in the flood phase.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Matching subscriptions per event (deliveries per event).
    #[arg(long, default_value_t = 1)]
    subscriptions: usize,
    /// Fixed event rates to measure latency at (events/s), comma-separated.
    #[arg(long, default_value = "500,1000,2000")]
    rates: String,
    /// Seconds per fixed-rate phase.
    #[arg(long, default_value_t = 5)]
    rate_secs: u64,
    /// Delay of the slow receiver in the scaling phase, milliseconds.
    #[arg(long, default_value_t = 20)]
    slow_ms: u64,
    /// Worker process counts for the scaling phase.
    #[arg(long, default_value = "1,2,4")]
    workers: String,
    /// In-flight slots per worker process in the scaling phase.
    #[arg(long, default_value_t = 8)]
    slots: usize,
    /// Events per scaling run.
    #[arg(long, default_value_t = 3_000)]
    slow_events: usize,
    /// Delivery-worker processes in the fast-receiver phases (rates, flood).
    #[arg(long, default_value_t = 1)]
    fast_workers: usize,
    /// Skip the scaling phase.
    #[arg(long)]
    skip_scaling: bool,
    /// Extra environment for every service, `KEY=VALUE` (repeatable), e.g. `HOOKLINE__WORKER__BATCH_SIZE=64`
    /// or `TOKIO_WORKER_THREADS=1`.
    #[arg(long = "service-env", value_parser = parse_kv)]
    service_env: Vec<(String, String)>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got `{s}`"))
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A lean receiver: counts requests and records event→arrival latency from the `t` in the body's data.
struct Sink {
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
    async fn start(delay: Duration) -> anyhow::Result<Self> {
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

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
        if let Ok(mut v) = self.latencies.lock() {
            v.clear();
        }
    }

    fn percentiles(&self) -> (f64, f64, f64) {
        let mut v = self.latencies.lock().map(|v| v.clone()).unwrap_or_default();
        if v.is_empty() {
            return (0.0, 0.0, 0.0);
        }
        v.sort_unstable();
        let p = |q: f64| v[((v.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
        (p(0.50), p(0.95), p(0.99))
    }

    async fn wait_for(&self, n: u64, timeout: Duration) -> anyhow::Result<Instant> {
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

fn env(
    redis: &RedisServer,
    extra: &[(&str, String)],
    overrides: &[(String, String)],
) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("HOOKLINE__REDIS__URL", redis.url()),
        ("HOOKLINE__AUTH__JWT_SECRET", "bench".into()),
        ("HOOKLINE__OUTBOUND__ALLOW_HTTP_TARGETS", "true".into()),
        ("HOOKLINE__OUTBOUND__ALLOWLIST", "127.0.0.1".into()),
        (
            "HOOKLINE__TELEMETRY__LOG_LEVEL",
            "warn,service_common=info".into(),
        ),
        ("HOOKLINE__REDIS__POOL_SIZE", "4".into()),
        // The default slots per worker; one destination, so let it use every slot (the per-host cap exists
        // for fairness between hosts).
        ("HOOKLINE__WORKER__MAX_IN_FLIGHT", "256".into()),
        ("HOOKLINE__WORKER__MAX_IN_FLIGHT_PER_HOST", "256".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, val) in extra
        .iter()
        .map(|(k, v)| (*k, v))
        .chain(overrides.iter().map(|(k, v)| (k.as_str(), v)))
    {
        v.retain(|(ek, _)| ek != k);
        v.push((k.to_owned(), val.clone()));
    }
    v
}

async fn store(redis: &RedisServer) -> anyhow::Result<Store> {
    Ok(Store::connect(&StoreOptions {
        pool_size: 4,
        command_timeout: Duration::from_secs(10),
        ..StoreOptions::new(redis.url())
    })
    .await?)
}

/// K active subscriptions straight into the store (the benchmark measures delivery, not verification).
async fn subscribe(store: &Store, url: &str, k: usize) -> anyhow::Result<()> {
    for i in 0..k {
        let now = delivery_model::time::now_micros();
        let sub = Subscription {
            secret: Some("bench-secret-0123456789abcdef".into()),
            ..Subscription::new(
                "bench",
                format!("bench-{i}"),
                url,
                vec!["threat_model.updated".into()],
                SubscriptionStatus::Active,
                now,
            )
        };
        store.create_subscription(&sub).await?;
    }
    Ok(())
}

fn event(i: usize) -> StreamEvent {
    let tm = "0f6c0000-0000-4000-8000-000000000001";
    let payload = serde_json::json!({
        "event_type": "threat_model.updated", "threat_model_id": tm, "object_id": tm,
        "object_type": "threat_model", "owner_id": "5b1e0000-0000-4000-8000-000000000002",
        "timestamp": "2026-04-01T12:00:00.123456789Z",
        "data": {"name": "Payments TM", "description": "benchmark event", "i": i, "t": now_us()},
    });
    StreamEvent {
        event_type: "threat_model.updated".into(),
        threat_model_id: Some(tm.into()),
        object_id: Some(tm.into()),
        object_type: Some("threat_model".into()),
        owner_id: Some("5b1e0000-0000-4000-8000-000000000002".into()),
        timestamp: Some("2026-04-01T12:00:00Z".into()),
        payload: payload.to_string(),
        delivery_id: None,
    }
}

async fn flood(store: &Store, n: usize) -> anyhow::Result<()> {
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            async move { store.publish_event(&event(i)).await }
        })
        .buffer_unordered(128)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(())
}

async fn at_rate(store: &Store, rate: u64, secs: u64) -> anyhow::Result<usize> {
    let total = (rate * secs) as usize;
    let tick = Duration::from_millis(10);
    let per_tick = (rate as f64 / 100.0).max(1.0);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0usize;
    let mut owed = 0.0f64;
    while sent < total {
        interval.tick().await;
        owed += per_tick;
        while owed >= 1.0 && sent < total {
            let store = store.clone();
            let i = sent;
            tokio::spawn(async move { store.publish_event(&event(i)).await });
            sent += 1;
            owed -= 1.0;
        }
    }
    Ok(total)
}

async fn redis_client(redis: &RedisServer) -> anyhow::Result<Client> {
    let c = Builder::from_config(Config::from_url(&redis.url())?).build()?;
    c.init().await?;
    Ok(c)
}

async fn memory_used(c: &Client) -> anyhow::Result<u64> {
    let _: u64 = c.xtrim("tmi:events", ("MAXLEN", 0)).await?;
    let info: String = c.info(Some(fred::types::InfoKind::Memory)).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("used_memory")
}

/// Redis's own time per command since start, heaviest first, and per delivery of the flood (`BENCH_DEBUG`).
async fn print_commandstats(c: &Client, deliveries: f64) -> anyhow::Result<()> {
    let info: String = c.info(Some(fred::types::InfoKind::CommandStats)).await?;
    let mut rows: Vec<(String, u64, u64)> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |f: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(f)?.strip_prefix('='))?
                    .parse::<u64>()
                    .ok()
            };
            Some((name.to_owned(), field("calls")?, field("usec")?))
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.2));
    println!("\n    Redis time by command since start (µs per flood delivery is indicative):");
    for (name, calls, usec) in rows.iter().take(12) {
        println!(
            "    {name:<16} calls {calls:>9}  usec {usec:>10}  per call {:>7.1}  per delivery {:>6.1}",
            *usec as f64 / (*calls).max(1) as f64,
            *usec as f64 / deliveries
        );
    }
    Ok(())
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`; None off Linux.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is parenthesised and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on (it is fixed in the kernel ABI for /proc).
    Some(Duration::from_millis(ticks * 10))
}

/// The processes whose CPU the flood is charged to, by role.
fn cpu_snapshot(roles: &[(String, u32)]) -> Vec<Option<Duration>> {
    roles.iter().map(|(_, pid)| cpu_time(*pid)).collect()
}

async fn redis_pid(c: &Client) -> anyhow::Result<u32> {
    let info: String = c.info(Some(fred::types::InfoKind::Server)).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
        .context("process_id")
}

fn wrk(url: &str, body: &str) -> anyhow::Result<f64> {
    let script = std::env::temp_dir().join(format!("hookline-bench-{}.lua", std::process::id()));
    let escaped = body.replace('\\', "\\\\").replace('"', "\\\"");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"{escaped}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )?;
    let out = std::process::Command::new("wrk")
        .args(["-t2", "-c64", "-d5s", "-s"])
        .arg(&script)
        .arg(url)
        .output()
        .context("running wrk (make bench installs it)")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("parsing wrk output: {text}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let k = args.subscriptions.max(1);
    println!(
        "# Hookline benchmark ({} matching subscription(s) per event)",
        k
    );

    // ---- fast receiver: rates, flood, ceiling ----------------------------------------------------------
    let redis = RedisServer::start();
    let sink = Sink::start(Duration::ZERO).await?;
    let st = store(&redis).await?;
    subscribe(&st, &sink.url(), k).await?;
    let e = env(&redis, &[], &args.service_env);
    let _consumer = Service::start(ServiceBin::EventConsumer, &e).await;
    let mut fast_workers = Vec::new();
    for _ in 0..args.fast_workers.max(1) {
        fast_workers.push(Service::start(ServiceBin::DeliveryWorker, &e).await);
    }
    let raw = redis_client(&redis).await?;

    // Warm-up: connections, script cache.
    flood(&st, 200).await?;
    sink.wait_for(200 * k as u64, Duration::from_secs(60))
        .await?;

    println!("\n## Fixed rates (fast receiver)\n");
    println!("| events/s | deliveries/s | p50 ms | p95 ms | p99 ms |");
    println!("|---:|---:|---:|---:|---:|");
    for rate in args
        .rates
        .split(',')
        .filter_map(|r| r.trim().parse::<u64>().ok())
    {
        sink.reset();
        let t0 = Instant::now();
        let n = at_rate(&st, rate, args.rate_secs).await?;
        let done = sink
            .wait_for((n * k) as u64, Duration::from_secs(120))
            .await?;
        let secs = done.duration_since(t0).as_secs_f64();
        let (p50, p95, p99) = sink.percentiles();
        println!(
            "| {rate} | {:.0} | {p50:.2} | {p95:.2} | {p99:.2} |",
            (n * k) as f64 / secs
        );
    }

    if std::env::var_os("BENCH_DEBUG").is_some() {
        for svc in std::iter::once(&_consumer).chain(&fast_workers) {
            let (_, _, m) =
                test_support::http::request("GET", &svc.ops_url("/metrics"), &[], "").await;
            for l in String::from_utf8_lossy(&m)
                .lines()
                .filter(|l| l.contains("_sum") || l.contains("_count") || l.contains("total"))
            {
                println!("    {l}");
            }
        }
    }
    sink.reset();
    let mem_before = memory_used(&raw).await?;
    let mut roles = vec![
        ("redis-server".to_owned(), redis_pid(&raw).await?),
        ("event-consumer".to_owned(), _consumer.pid()),
    ];
    for (i, w) in fast_workers.iter().enumerate() {
        roles.push((format!("delivery-worker {}", i + 1), w.pid()));
    }
    roles.push((
        "bench (publisher + receiver)".to_owned(),
        std::process::id(),
    ));
    let cpu_before = cpu_snapshot(&roles);
    let t0 = Instant::now();
    flood(&st, args.events).await?;
    let published = t0.elapsed().as_secs_f64();
    let done = sink
        .wait_for((args.events * k) as u64, Duration::from_secs(600))
        .await?;
    let secs = done.duration_since(t0).as_secs_f64();
    let (p50, p95, p99) = sink.percentiles();
    let pipeline = (args.events * k) as f64 / secs;
    let cpu_after = cpu_snapshot(&roles);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mem_after = memory_used(&raw).await?;
    let records = (args.events + 200) * k;
    let per_record = (mem_after.saturating_sub(mem_before)) as f64 / (args.events * k) as f64;
    println!("\n## Flood ({} events as fast as possible)\n", args.events);
    println!(
        "- published in {published:.2} s ({:.0} events/s)",
        args.events as f64 / published
    );
    println!(
        "- deliveries/s: **{pipeline:.0}** (all {} delivered in {secs:.2} s)",
        args.events * k
    );
    println!(
        "- event→receiver latency under flood: p50 {p50:.1} ms, p95 {p95:.1} ms, p99 {p99:.1} ms"
    );
    println!(
        "- Redis memory per delivery record (record + indexes, {records} records held): **{per_record:.0} bytes**"
    );

    // Where the machine's time went: the ceiling ratio is bounded by the CPU all processes share.
    let deliveries = (args.events * k) as f64;
    let mut parts = Vec::new();
    let mut total = 0.0;
    for (((role, _), before), after) in roles.iter().zip(&cpu_before).zip(&cpu_after) {
        if let (Some(b), Some(a)) = (before, after) {
            let us = a.saturating_sub(*b).as_secs_f64() * 1e6 / deliveries;
            total += us;
            parts.push(format!("{role} {us:.0}"));
        }
    }
    if !parts.is_empty() {
        println!(
            "- CPU per delivery during the flood (µs): {}; all {total:.0}",
            parts.join(", ")
        );
    }

    if std::env::var_os("BENCH_DEBUG").is_some() {
        print_commandstats(&raw, (args.events * k) as f64).await?;
    }

    let body = serde_json::to_string(&serde_json::from_str::<serde_json::Value>(
        &event(0).payload,
    )?)?;
    match wrk(&sink.url(), &body) {
        Ok(ceiling) => {
            println!("\n## Ceiling\n");
            println!(
                "- raw POST ceiling (wrk -t2 -c64, same receiver, same body): {ceiling:.0} requests/s"
            );
            println!(
                "- pipeline / ceiling: **{:.0} %**",
                100.0 * pipeline / ceiling
            );
        }
        Err(e) => println!("\n## Ceiling\n\n- not measured: {e:#}"),
    }
    drop(fast_workers);
    drop(_consumer);
    drop(redis);

    // ---- slow receiver: scaling ------------------------------------------------------------------------
    if !args.skip_scaling {
        println!(
            "\n## Scaling (receiver answers after {} ms; {} in-flight slots per worker; {} events)\n",
            args.slow_ms, args.slots, args.slow_events
        );
        println!("| workers | deliveries/s | × one worker |");
        println!("|---:|---:|---:|");
        let mut base = 0.0;
        for w in args
            .workers
            .split(',')
            .filter_map(|w| w.trim().parse::<usize>().ok())
        {
            let redis = RedisServer::start();
            let sink = Sink::start(Duration::from_millis(args.slow_ms)).await?;
            let st = store(&redis).await?;
            subscribe(&st, &sink.url(), 1).await?;
            let slots = args.slots.to_string();
            let e = env(
                &redis,
                &[
                    ("HOOKLINE__WORKER__MAX_IN_FLIGHT", slots.clone()),
                    ("HOOKLINE__WORKER__MAX_IN_FLIGHT_PER_HOST", slots),
                ],
                &args.service_env,
            );
            let _consumer = Service::start(ServiceBin::EventConsumer, &e).await;
            let mut workers = Vec::new();
            for _ in 0..w {
                workers.push(Service::start(ServiceBin::DeliveryWorker, &e).await);
            }
            flood(&st, 100).await?;
            sink.wait_for(100, Duration::from_secs(60)).await?;
            sink.reset();
            let t0 = Instant::now();
            flood(&st, args.slow_events).await?;
            let done = sink
                .wait_for(args.slow_events as u64, Duration::from_secs(600))
                .await?;
            let rate = args.slow_events as f64 / done.duration_since(t0).as_secs_f64();
            if base == 0.0 {
                base = rate;
            }
            println!("| {w} | {rate:.0} | {:.2} |", rate / base);
        }
    }
    Ok(())
}
