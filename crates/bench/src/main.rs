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

mod probes;
mod sink;

use std::time::{Duration, Instant};

use clap::Parser;
use delivery_model::event::StreamEvent;
use delivery_model::store::{Store, StoreOptions};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use fred::prelude::*;
use futures::StreamExt;
use test_support::redis::RedisServer;
use test_support::service::{Service, ServiceBin};

use probes::{
    cpu_snapshot, memory_used, print_commandstats, print_cpu_per_delivery, print_service_metrics,
    process_roles, redis_client, wrk,
};
use sink::{Sink, now_us};

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

fn env(
    redis: &RedisServer,
    extra: &[(&str, String)],
    overrides: &[(String, String)],
) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("HOOKLINE__REDIS__URL", redis.url()),
        (
            "HOOKLINE__AUTH__JWT_SECRET",
            "bench-jwt-secret-0123456789abcdef".into(),
        ),
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

/// Runs the phases in order. The fast-receiver services serve the first three; they are stopped before the
/// scaling phase, which starts its own per worker count.
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
    let consumer = Service::start(ServiceBin::EventConsumer, &e).await;
    let mut fast_workers = Vec::new();
    for _ in 0..args.fast_workers.max(1) {
        fast_workers.push(Service::start(ServiceBin::DeliveryWorker, &e).await);
    }
    let raw = redis_client(&redis).await?;

    // Warm-up: connections, script cache.
    flood(&st, 200).await?;
    sink.wait_for(200 * k as u64, Duration::from_secs(60))
        .await?;

    rates_phase(&args, &st, &sink, k).await?;
    if std::env::var_os("BENCH_DEBUG").is_some() {
        print_service_metrics(std::iter::once(&consumer).chain(&fast_workers)).await;
    }
    let fast = FastServices {
        raw: &raw,
        consumer: &consumer,
        workers: &fast_workers,
    };
    let pipeline = flood_phase(&args, &st, &sink, &fast, k).await?;
    ceiling_phase(&sink, pipeline)?;
    drop(fast_workers);
    drop(consumer);
    drop(redis);

    // ---- slow receiver: scaling ------------------------------------------------------------------------
    if !args.skip_scaling {
        scaling_phase(&args).await?;
    }
    Ok(())
}

/// Phase 1: events at each `--rates` rate for `--rate-secs`; one table row per rate.
async fn rates_phase(args: &Args, st: &Store, sink: &Sink, k: usize) -> anyhow::Result<()> {
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
        let n = at_rate(st, rate, args.rate_secs).await?;
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
    Ok(())
}

/// What the flood phase reads besides the store and the sink: Redis directly, and the processes it charges
/// CPU time to.
struct FastServices<'a> {
    raw: &'a Client,
    consumer: &'a Service,
    workers: &'a [Service],
}

/// Phase 2: `--events` events as fast as possible. Returns the pipeline's deliveries/s for the ceiling ratio.
async fn flood_phase(
    args: &Args,
    st: &Store,
    sink: &Sink,
    fast: &FastServices<'_>,
    k: usize,
) -> anyhow::Result<f64> {
    sink.reset();
    let mem_before = memory_used(fast.raw).await?;
    let roles = process_roles(fast.raw, fast.consumer, fast.workers).await?;
    let cpu_before = cpu_snapshot(&roles);
    let t0 = Instant::now();
    flood(st, args.events).await?;
    let published = t0.elapsed().as_secs_f64();
    let done = sink
        .wait_for((args.events * k) as u64, Duration::from_secs(600))
        .await?;
    let secs = done.duration_since(t0).as_secs_f64();
    let (p50, p95, p99) = sink.percentiles();
    let pipeline = (args.events * k) as f64 / secs;
    let cpu_after = cpu_snapshot(&roles);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mem_after = memory_used(fast.raw).await?;
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
    print_cpu_per_delivery(&roles, &cpu_before, &cpu_after, (args.events * k) as f64);

    if std::env::var_os("BENCH_DEBUG").is_some() {
        print_commandstats(fast.raw, (args.events * k) as f64).await?;
    }
    Ok(pipeline)
}

/// Phase 3: `wrk` POSTing one event's body straight to the sink, against the flood's `pipeline` rate. A
/// missing `wrk` is reported in the output, not as a failure.
fn ceiling_phase(sink: &Sink, pipeline: f64) -> anyhow::Result<()> {
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
    Ok(())
}

/// Phase 4: one run per `--workers` count on a slow receiver; one table row each, relative to the first.
async fn scaling_phase(args: &Args) -> anyhow::Result<()> {
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
        let rate = scaling_run(args, w).await?;
        if base == 0.0 {
            base = rate;
        }
        println!("| {w} | {rate:.0} | {:.2} |", rate / base);
    }
    Ok(())
}

/// One scaling run: a fresh Redis, slow sink, consumer and `workers` worker processes with `--slots` slots
/// each; returns deliveries/s. Everything it started stops when it returns.
async fn scaling_run(args: &Args, workers: usize) -> anyhow::Result<f64> {
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
    let mut worker_services = Vec::new();
    for _ in 0..workers {
        worker_services.push(Service::start(ServiceBin::DeliveryWorker, &e).await);
    }
    flood(&st, 100).await?;
    sink.wait_for(100, Duration::from_secs(60)).await?;
    sink.reset();
    let t0 = Instant::now();
    flood(&st, args.slow_events).await?;
    let done = sink
        .wait_for(args.slow_events as u64, Duration::from_secs(600))
        .await?;
    Ok(args.slow_events as f64 / done.duration_since(t0).as_secs_f64())
}
