//! Noisy neighbour (phase `noisy`, issue #18): does one subscription's trouble delay everyone else's
//! deliveries?
//!
//! Nine healthy subscriptions on one receiver get a steady rate (`--noisy-rate` events/s, each event
//! delivered to all nine; XADD publisher) for `--rate-secs`, and their event→receiver p99 is measured in
//! three cases, each on a fresh stack:
//! - **solo**: the nine alone;
//! - **backlog**: a tenth subscription, on a receiver of its own, has `--noisy-backlog` deliveries waiting
//!   (its events XADDed and fanned out — the input stream drained — just before the measured load starts:
//!   the deliveries wait, not the producers' events, which every subscription's would wait behind alike);
//! - **timeout**: the tenth's receiver never answers within the worker's request timeout, and it gets
//!   [`TIMEOUT_RATE`] events/s during the measured load.
//!
//! The tenth receiver listens on another loopback address (127.0.0.2), so to the worker it is another host,
//! with its own slots and circuit, as a tenant's endpoint usually is. The goal: each loaded p99 within 2×
//! the solo one. Printed side by side, with the verdict.

use std::net::Ipv4Addr;
use std::time::Duration;

use delivery_model::subscription::{Subscription, SubscriptionStatus};
use futures::StreamExt;

use crate::Args;
use crate::backend::RedisSpec;
use crate::load::{steady, stream_event_of};
use crate::measure::{Run, measure};
use crate::report;
use crate::sink::Sink;
use crate::stack::{Stack, StackSpec};

/// Healthy subscriptions per event.
const HEALTHY: usize = 9;
/// The tenth subscription's event type (the healthy ones listen to the benchmark's usual one).
const NOISY_EVENT: &str = "threat_model.deleted";
/// The tenth receiver's address: another host to the worker.
const NOISY_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Events per second for the timing-out subscription during the timeout case.
const TIMEOUT_RATE: u64 = 10;
/// How long the timing-out receiver waits before answering: past the worker's request timeout (30 s).
const NEVER: Duration = Duration::from_secs(120);
/// Length of the unmeasured solo run before the three cases.
const WARM_UP_SECS: u64 = 5;
/// XADDs in flight while the backlog is published.
const BACKLOG_CONCURRENCY: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Solo,
    Backlog,
    Timeout,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Solo => "solo",
            Case::Backlog => "backlog",
            Case::Timeout => "timeout",
        }
    }
}

/// Runs the three cases and prints their p99s side by side.
///
/// # Errors
/// A stack does not start, its warm-up fails, or the tenth subscription cannot be written.
pub(crate) async fn run(args: &Args) -> anyhow::Result<()> {
    println!(
        "\n## Noisy neighbour\n\n{HEALTHY} healthy subscriptions on one receiver, {} events/s by XADD \
         ({} deliveries/s) for {} s per case, each case on a fresh stack; a tenth subscription on another \
         loopback host either has {} deliveries waiting (backlog) or times out on every request at \
         {TIMEOUT_RATE} events/s (timeout). Goal: the healthy p99 within 2× its solo value.\n",
        args.noisy_rate,
        args.noisy_rate * HEALTHY as u64,
        args.rate_secs,
        args.noisy_backlog
    );
    // The first stack a bench process runs is often slowed by the machine (its p99 came out 5–10× the
    // later ones' on this VM), which would make the solo baseline, and every ratio to it, noise. A short
    // solo run first, not measured, takes that hit.
    let warm = run_case(args, Case::Solo, WARM_UP_SECS).await?;
    println!(
        "  - warm-up (solo, {WARM_UP_SECS} s, not measured): p99 {:.2} ms",
        report::quantile_ms(&warm.latencies, 0.99)
    );
    let mut results: Vec<(Case, Run)> = Vec::new();
    for case in [Case::Solo, Case::Backlog, Case::Timeout] {
        let r = run_case(args, case, args.rate_secs).await?;
        report::print_run(case.name(), &r);
        // Where the time goes, all deliveries of the case (the tenth's included) in the hop rows.
        report::print_cpu(&r.usage, r.delivered);
        report::print_hops(&r.usage, &r.latencies, false);
        results.push((case, r));
    }
    let p99 = |r: &Run| report::quantile_ms(&r.latencies, 0.99);
    let solo = results.first().map_or(0.0, |(_, r)| p99(r));
    println!();
    println!("| case | deliveries/s | p50 ms | p99 ms | p99 / solo | within 2× |");
    println!("|---|---:|---:|---:|---:|---|");
    for (case, r) in &results {
        let ratio = p99(r) / solo.max(1e-9);
        let verdict = match (case, r.complete()) {
            (Case::Solo, _) => "—",
            (_, false) => "FAIL (not drained)",
            _ if ratio <= 2.0 => "PASS",
            _ => "FAIL",
        };
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {ratio:.2} | {verdict} |",
            case.name(),
            r.deliveries_per_sec(),
            report::quantile_ms(&r.latencies, 0.5),
            p99(r),
        );
    }
    Ok(())
}

/// Waits until the consumer has fanned out everything on the input stream; returns how long that took.
async fn fanned_out(store: &delivery_model::store::Store) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(300);
    loop {
        let b = store.events_backlog().await?;
        if b.unread == 0 && b.pending == 0 {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the backlog was not fanned out within 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run_case(args: &Args, case: Case, secs: u64) -> anyhow::Result<Run> {
    let stack = Stack::start(&StackSpec {
        redis: RedisSpec::Single,
        subscriptions: HEALTHY,
        gateway: false,
        workers: args.fast_workers,
        receiver_delay: Duration::ZERO,
        // The tenth receiver's address must pass the outbound policy like the first's.
        extra_env: vec![(
            "HOOKLINE__OUTBOUND__ALLOWLIST".into(),
            format!("127.0.0.1,{NOISY_IP}"),
        )],
        service_env: &args.service_env,
    })
    .await?;
    let noisy_sink = Sink::start_on(
        NOISY_IP,
        if case == Case::Timeout {
            NEVER
        } else {
            Duration::ZERO
        },
    )?;
    if case != Case::Solo {
        let noisy = Subscription {
            secret: Some("bench-secret-0123456789abcdef".into()),
            ..Subscription::new(
                "bench-noisy",
                "bench-noisy",
                noisy_sink.url(0),
                vec![NOISY_EVENT.into()],
                SubscriptionStatus::Active,
                delivery_model::time::now_micros(),
            )
        };
        stack.store.create_subscription(&noisy).await?;
    }
    let publisher = stack.publisher(0)?;
    stack.warm_up(&publisher).await?;
    if case == Case::Backlog {
        let store = stack.store.clone();
        futures::stream::iter(0..args.noisy_backlog)
            .map(|i| {
                let store = store.clone();
                async move { store.publish_event(&stream_event_of(NOISY_EVENT, i)).await }
            })
            .buffer_unordered(BACKLOG_CONCURRENCY)
            .for_each(|_| async {})
            .await;
        let fanned = fanned_out(&stack.store).await?;
        let queue = stack.store.queue_backlog().await?;
        println!(
            "  - backlog: {} events fanned out in {:.1} s; queue then held {} entries (the rest parked by fair \
             sharing, or already delivered)",
            args.noisy_backlog,
            fanned.as_secs_f64(),
            queue.unread + queue.pending
        );
    }
    // Stopped (aborted) once the measured load is done.
    let noisy_load = (case == Case::Timeout).then(|| {
        let store = stack.store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / TIMEOUT_RATE));
            for i in 0.. {
                tick.tick().await;
                let _ = store.publish_event(&stream_event_of(NOISY_EVENT, i)).await;
            }
        })
    });
    // How much of the backlog the measured load really ran beside: it drains from the moment it is fanned
    // out, so a fast drain leaves less of it for the measurement (printed, so runs can be compared).
    let before = noisy_sink.count();
    let started = std::time::Instant::now();
    let started_us = crate::sink::now_us();
    let backlog = args.noisy_backlog as u64;
    let drained_at = (case == Case::Backlog).then(|| {
        let count = noisy_sink.counter();
        tokio::spawn(async move {
            while count.load(std::sync::atomic::Ordering::Relaxed) < backlog {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            started.elapsed()
        })
    });
    let r = measure(
        &stack,
        args.drain_timeout(),
        steady(&publisher, args.noisy_rate as f64, secs as f64),
    )
    .await;
    if let Some(task) = noisy_load {
        task.abort();
    }
    if let Some(task) = drained_at {
        let left = backlog.saturating_sub(before);
        if task.is_finished() {
            let took = task.await?;
            let window = stack.sink.latencies_sent_between(
                started_us,
                started_us + i64::try_from(took.as_micros()).unwrap_or(i64::MAX),
            );
            println!(
                "  - backlog: {left} of the tenth's deliveries were still waiting when the measured load began; \
                 they drained {:.1} s into it ({:.0}/s beside the healthy load); the healthy events sent \
                 meanwhile ({}): p50 {:.2} ms, p99 {:.2} ms",
                took.as_secs_f64(),
                left as f64 / took.as_secs_f64().max(0.001),
                window.len(),
                report::quantile_ms(&window, 0.5),
                report::quantile_ms(&window, 0.99),
            );
        } else {
            task.abort();
            println!(
                "  - backlog: {left} of the tenth's deliveries were still waiting when the measured load began; \
                 {} still were at its end",
                backlog.saturating_sub(noisy_sink.count())
            );
        }
    }
    Ok(r)
}
