//! `make bench`: the real binaries (release build) against a private redis-server and a loopback receiver,
//! measuring the loads users run (issue #21).
//!
//! Phases (`--phases`, in this order; each prints as it finishes):
//! - **rates**: steady event rates (`--rates`) published with XADD, as TMI does; each rate `--repeats`
//!   times for `--rate-secs`: deliveries/s and event→receiver p50/p99 as median (min–max).
//! - **api-rates**: the same through the api-gateway's `POST /events` with a bearer token.
//! - **fanout**: steady rates through the API to `--fanout-subscriptions` subscriptions per event that
//!   share one receiver host (the worker's default per-host gate applies).
//! - **floor**: the rates again, through two stand-in processes that only move each event along
//!   Hookline's hops: the least CPU per event these hops cost on this machine (`phases/floor.rs`).
//! - **saturation**: `--producers` concurrent producers on `POST /events` for `--saturation-secs`, to one
//!   endpoint and to `--fanout-subscriptions` endpoints on one host: deliveries/s, p50/p99, the drain
//!   after the last accepted event, machine busy.
//! - **flood**: `--events` events by XADD as fast as possible; also Redis memory per delivery record.
//! - **ceiling**: `wrk` POSTing the same body straight to a receiver like the pipeline's.
//! - **scaling**: a receiver answering after `--slow-ms` with 1, 2, 4 workers of `--slots` slots each.
//! - **noisy**: nine healthy subscriptions' p99 alone, beside a tenth with a `--noisy-backlog` backlog, and
//!   beside a tenth that times out (issue #18's noisy neighbour).
//! - **cluster**: the flood once on one redis-server and once on a Redis Cluster of `--cluster-masters`
//!   masters with `--cluster-shards` queue shards: deliveries/s on each, the ratio, and each master's share
//!   of Redis commands and CPU against issue #15's ±25 % criterion.
//!
//! Every measured phase also prints CPU per delivery by process (Redis, each service, the benchmark's
//! publisher and receiver) and a per-hop latency table from the services' histograms. Each run starts a
//! fresh stack (Redis, receiver, services) with Hookline's default settings; see `stack.rs`.
#![expect(clippy::print_stdout, reason = "a benchmark prints its report")]

mod backend;
mod cpu;
mod hops;
mod load;
mod measure;
mod phases;
mod probes;
mod report;
mod sink;
mod stack;

use std::time::Duration;

use clap::Parser;

/// A phase `--phases` can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Phase {
    Rates,
    ApiRates,
    Fanout,
    Floor,
    Saturation,
    Flood,
    Ceiling,
    Scaling,
    Noisy,
    Cluster,
}

#[derive(Parser, Debug)]
#[command(about = "Hookline pipeline benchmark: the loads users run, through the real binaries")]
pub(crate) struct Args {
    /// Phases to run, comma-separated, in any order (they run in the order listed under `--help`).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "rates,api-rates,fanout,floor,saturation,flood,ceiling,scaling,noisy,cluster"
    )]
    phases: Vec<Phase>,
    /// Steady event rates of the rates and api-rates phases (events/s), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "500,2000")]
    rates: Vec<u64>,
    /// Seconds per steady-rate run.
    #[arg(long, default_value_t = 20)]
    rate_secs: u64,
    /// Runs per steady rate (each on a fresh stack); the report gives the median and the min–max.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Matching subscriptions per event in the rates, api-rates, saturation (first case) and flood phases.
    #[arg(long, default_value_t = 1)]
    subscriptions: usize,
    /// Subscriptions per event in the fan-out phase and the saturation's second case, all on one host.
    #[arg(long, default_value_t = 10)]
    fanout_subscriptions: usize,
    /// Steady event rates of the fan-out phase (events/s; deliveries/s = rate × fan-out).
    #[arg(long, value_delimiter = ',', default_value = "200")]
    fanout_rates: Vec<u64>,
    /// Concurrent `POST /events` producers in the saturation phase (each waits for its answer).
    #[arg(long, default_value_t = 32)]
    producers: usize,
    /// Seconds of load per saturation case.
    #[arg(long, default_value_t = 20)]
    saturation_secs: u64,
    /// Longest wait for a run's deliveries after its load ends, seconds; a run that is not drained by then
    /// is reported as such.
    #[arg(long, default_value_t = 300)]
    drain_timeout_secs: u64,
    /// Events in the flood phase.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Delay of the slow receiver in the scaling phase, milliseconds.
    #[arg(long, default_value_t = 20)]
    slow_ms: u64,
    /// Worker process counts for the scaling phase, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    workers: Vec<usize>,
    /// In-flight slots per worker process in the scaling phase.
    #[arg(long, default_value_t = 8)]
    slots: usize,
    /// Events per scaling run.
    #[arg(long, default_value_t = 3_000)]
    slow_events: usize,
    /// Delivery-worker processes in the fast-receiver phases (all but scaling).
    #[arg(long, default_value_t = 1)]
    fast_workers: usize,
    /// Events/s to the nine healthy subscriptions in the noisy-neighbour phase.
    #[arg(long, default_value_t = 100)]
    noisy_rate: u64,
    /// Deliveries waiting for the tenth subscription in the noisy-neighbour phase's backlog case.
    #[arg(long, default_value_t = 50_000)]
    noisy_backlog: usize,
    /// Masters of the cluster phase's Redis Cluster (at least 3).
    #[arg(long, default_value_t = 3)]
    cluster_masters: usize,
    /// Queue shards (`redis.cluster_shards`) in the cluster phase; Hookline's default is 12.
    #[arg(long, default_value_t = 12)]
    cluster_shards: u16,
    /// Leave out the scaling phase (as leaving it out of `--phases`).
    #[arg(long)]
    skip_scaling: bool,
    /// Extra environment for every service, `KEY=VALUE` (repeatable), e.g. `HOOKLINE__WORKER__BATCH_SIZE=64`
    /// or `TOKIO_WORKER_THREADS=1`.
    #[arg(long = "service-env", value_parser = parse_kv)]
    service_env: Vec<(String, String)>,
}

impl Args {
    fn runs(&self, phase: Phase) -> bool {
        self.phases.contains(&phase) && !(phase == Phase::Scaling && self.skip_scaling)
    }

    pub(crate) fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got `{s}`"))
}

/// A syntactically valid Redis URL for loading the settings the header prints; nothing connects to it.
const SETTINGS_ONLY_REDIS_URL: &str = "redis://127.0.0.1:1";

/// The settings the services run with, as they load them (defaults plus `--service-env`).
fn print_header(args: &Args) -> anyhow::Result<()> {
    // Only loaded, never connected: each phase starts its own redis-server and passes its URL.
    let env = stack::env(SETTINGS_ONLY_REDIS_URL, &[], &args.service_env);
    let s = service_common::config::Settings::load_from(env)?;
    println!("# Hookline benchmark\n");
    println!(
        "- services: release binaries, one fresh Redis and stack per run; worker max_in_flight {}, \
         max_in_flight_per_host {} (Hookline's defaults unless --service-env says otherwise; only the \
         scaling phase overrides them, see there)",
        s.worker.max_in_flight, s.worker.max_in_flight_per_host
    );
    println!(
        "- steady rates: {} s per run, {} run(s) per rate; saturation: {} producers for {} s",
        args.rate_secs, args.repeats, args.producers, args.saturation_secs
    );
    if !args.service_env.is_empty() {
        println!("- --service-env: {:?}", args.service_env);
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // The floor phase re-runs this binary as its stand-in hops: one thread each, the least a process pays.
    if let Ok(role) = std::env::var(phases::floor::HOP_VAR) {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(phases::floor::hop(&role));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let args = Args::parse();
    print_header(&args)?;
    let k = args.subscriptions.max(1);
    let fan = args.fanout_subscriptions.max(1);
    if args.runs(Phase::Rates) {
        phases::steady::run(&args, phases::steady::Mode::Xadd, k, &args.rates).await?;
    }
    if args.runs(Phase::ApiRates) {
        phases::steady::run(&args, phases::steady::Mode::Api, k, &args.rates).await?;
    }
    if args.runs(Phase::Fanout) {
        phases::steady::run(&args, phases::steady::Mode::Api, fan, &args.fanout_rates).await?;
    }
    if args.runs(Phase::Floor) {
        phases::floor::run(&args).await?;
    }
    if args.runs(Phase::Saturation) {
        phases::saturation::run(&args, &[k, fan]).await?;
    }
    let mut pipeline = None;
    if args.runs(Phase::Flood) {
        pipeline = Some(phases::flood::run(&args, k).await?);
    }
    if args.runs(Phase::Ceiling) {
        phases::flood::ceiling(pipeline)?;
    }
    if args.runs(Phase::Scaling) {
        phases::scaling::run(&args).await?;
    }
    if args.runs(Phase::Noisy) {
        phases::noisy::run(&args).await?;
    }
    if args.runs(Phase::Cluster) {
        phases::cluster::run(&args, k).await?;
    }
    Ok(())
}
