//! Steady rates (phases `rates`, `api-rates`, `fanout`): events at a fixed rate, evenly spaced, each rate
//! `--repeats` times on a fresh stack, reported as median (min–max) over the repeats. Latency at a load
//! users actually run, rather than at saturation.

use crate::Args;
use crate::backend::RedisSpec;
use crate::load::steady;
use crate::measure::{Run, measure};
use crate::probes::{self, print_commandstats};
use crate::report::{self, pooled_latencies, pooled_usage, spread};
use crate::stack::{Stack, StackSpec};
use fred::prelude::ClientLike;

/// How the events get in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// XADD to the input stream, as TMI does.
    Xadd,
    /// `POST /events` through the api-gateway.
    Api,
}

/// Producers a steady API load keeps connections for: the load is open-loop (one task per event), so this
/// only sizes the idle pool; more connections open if answers are slow.
const STEADY_POOL: usize = 32;

/// Runs every rate of `rates` in `mode` with `k` subscriptions per event, all on the receiver's host.
///
/// # Errors
/// A stack does not start or its warm-up fails.
pub(crate) async fn run(args: &Args, mode: Mode, k: usize, rates: &[u64]) -> anyhow::Result<()> {
    let (title, how) = match mode {
        Mode::Xadd => ("Steady rates, XADD publisher", "XADD to tmi:events"),
        Mode::Api => (
            if k > 1 {
                "Fan-out on one receiver host, through the API"
            } else {
                "Steady rates through the API"
            },
            "POST /events through the api-gateway, bearer token with the events scope",
        ),
    };
    println!(
        "\n## {title}\n\n{how}; {k} subscription(s) per event on one receiver host; {} run(s) × {} s per \
         rate, each on a fresh stack; figures are median (min–max) over the runs.\n",
        args.repeats, args.rate_secs
    );
    let mut by_rate: Vec<(u64, Vec<Run>)> = Vec::new();
    for &rate in rates {
        let mut runs = Vec::new();
        for rep in 1..=args.repeats.max(1) {
            let stack = Stack::start(&StackSpec {
                redis: RedisSpec::Single,
                subscriptions: k,
                gateway: mode == Mode::Api,
                workers: args.fast_workers,
                receiver_delay: std::time::Duration::ZERO,
                extra_env: Vec::new(),
                service_env: &args.service_env,
            })
            .await?;
            let publisher = stack.publisher(STEADY_POOL)?;
            stack.warm_up(&publisher).await?;
            let debug = probes::debug();
            if debug {
                // The run's own commands only: the warm-up's are dropped.
                let _: () = stack
                    .raw
                    .custom(fred::cmd!("CONFIG"), vec!["RESETSTAT"])
                    .await?;
            }
            let secs = args.rate_secs as f64;
            let r = measure(
                &stack,
                args.drain_timeout(),
                steady(&publisher, rate as f64, secs),
            )
            .await;
            report::print_run(&format!("{rate} events/s, run {rep}"), &r);
            if debug {
                print_commandstats(&stack.raw, r.delivered as f64).await?;
            }
            runs.push(r);
        }
        by_rate.push((rate, runs));
    }
    println!();
    println!("| events/s | deliveries/s | p50 ms | p99 ms | machine busy % |");
    println!("|---:|---:|---:|---:|---:|");
    for (rate, runs) in &by_rate {
        println!(
            "| {rate} | {} | {} | {} | {} |",
            spread(runs, 0, Run::deliveries_per_sec),
            spread(runs, 2, |r| report::quantile_ms(&r.latencies, 0.5)),
            spread(runs, 2, |r| report::quantile_ms(&r.latencies, 0.99)),
            spread(runs, 0, report::busy_percent),
        );
    }
    for (rate, runs) in &by_rate {
        println!("\n### {rate} events/s: where the time goes (all runs pooled)\n");
        let usage = pooled_usage(runs);
        report::print_cpu(&usage, runs.iter().map(|r| r.delivered).sum());
        report::print_hops(&usage, &pooled_latencies(runs), mode == Mode::Api);
    }
    Ok(())
}
