//! Flood and ceiling (phases `flood`, `ceiling`).
//!
//! The flood publishes `--events` events by XADD as fast as 128 concurrent XADDs go: the pipeline's
//! throughput when a backlog forms at once, and Redis memory per delivery record. It runs with the default
//! per-host gate like every user-load phase (before issue #21 it raised the gate to 256, so figures from
//! then are not comparable). The ceiling is `wrk` POSTing the same body straight to a receiver of the same
//! kind: what the loopback HTTP path alone allows on this machine.

use std::time::Duration;

use crate::Args;
use crate::backend::RedisSpec;
use crate::load::{burst, stream_event};
use crate::measure::measure;
use crate::probes::{memory_used, print_debug, wrk};
use crate::report;
use crate::sink::Sink;
use crate::stack::{Stack, StackSpec};

/// XADDs in flight during the flood.
pub(crate) const FLOOD_CONCURRENCY: usize = 128;

/// Runs the flood with `k` subscriptions per event; returns the pipeline's deliveries/s for the ceiling.
///
/// # Errors
/// The stack does not start, or Redis cannot be read.
pub(crate) async fn run(args: &Args, k: usize) -> anyhow::Result<f64> {
    let stack = Stack::start(&StackSpec {
        redis: RedisSpec::Single,
        subscriptions: k,
        gateway: false,
        workers: args.fast_workers,
        receiver_delay: Duration::ZERO,
        extra_env: Vec::new(),
        service_env: &args.service_env,
    })
    .await?;
    let publisher = stack.publisher(0)?;
    stack.warm_up(&publisher).await?;
    let mem_before = memory_used(&stack.raw).await?;
    let r = measure(
        &stack,
        args.drain_timeout(),
        burst(&publisher, args.events, FLOOD_CONCURRENCY),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mem_after = memory_used(&stack.raw).await?;
    let deliveries = r.delivered.max(1);
    let records = (args.events + 200) * k;
    let per_record = mem_after.saturating_sub(mem_before) as f64 / deliveries as f64;
    println!(
        "\n## Flood ({} events by XADD as fast as possible, {k} subscription(s) per event)\n",
        args.events
    );
    println!(
        "- published in {:.2} s ({:.0} events/s)",
        r.sent.issue_secs,
        r.sent.accepted as f64 / r.sent.issue_secs.max(1e-9)
    );
    let pipeline = r.deliveries_per_sec();
    match r.drain_secs {
        Some(drain) => println!(
            "- deliveries/s: **{pipeline:.0}** (all {} delivered in {:.2} s; {drain:.2} s after the last XADD)",
            r.delivered, r.secs
        ),
        None => println!(
            "- deliveries/s: **{pipeline:.0}**, NOT DRAINED: {} of {} within {} s",
            r.delivered, r.expected, args.drain_timeout_secs
        ),
    }
    println!(
        "- event→receiver latency under flood: p50 {:.1} ms, p99 {:.1} ms",
        report::quantile_ms(&r.latencies, 0.5),
        report::quantile_ms(&r.latencies, 0.99)
    );
    println!(
        "- Redis memory per delivery record (record + indexes, {records} records held): **{per_record:.0} bytes**"
    );
    report::print_cpu(&r.usage, r.delivered);
    report::print_hops(&r.usage, &r.latencies, false);
    print_debug(&stack, deliveries).await?;
    Ok(pipeline)
}

/// `wrk` POSTing one event's body to a fresh receiver, against the flood's `pipeline` rate when the flood
/// ran. A missing `wrk` is reported in the output, not as a failure.
///
/// # Errors
/// The receiver cannot start.
pub(crate) fn ceiling(pipeline: Option<f64>) -> anyhow::Result<()> {
    let sink = Sink::start(Duration::ZERO)?;
    let body = serde_json::to_string(&serde_json::from_str::<serde_json::Value>(
        &stream_event(0).payload,
    )?)?;
    println!("\n## Ceiling\n");
    match wrk(&sink.url(0), &body) {
        Ok(ceiling) => {
            println!(
                "- raw POST ceiling (wrk -t2 -c64, a receiver like the pipeline's, same body): {ceiling:.0} requests/s"
            );
            if let Some(p) = pipeline {
                println!(
                    "- flood pipeline / ceiling: **{:.0} %**",
                    100.0 * p / ceiling
                );
            }
        }
        Err(e) => println!("- not measured: {e:#}"),
    }
    Ok(())
}
