//! The floor (phase `floor`): what the pipeline's hops cost on this machine when they do nothing else.
//!
//! Issue #21 asks for ≤ 300 µs of CPU per delivery (Hookline's processes plus Redis) at 500 events/s. At a
//! moderate rate nothing is batched, so each event pays every hop's wake-ups and round trips. This phase
//! measures that fixed part alone: two stand-in processes (this binary, re-run as a *hop*) move events
//! along the same path as Hookline, with the same client library and socket settings, and do nothing
//! else:
//! - the **consumer hop** reads the input stream (blocking `XREADGROUP` on the store's own dedicated read
//!   connection, `Store::reader`) and runs one script per batch that appends each entry to a queue stream and acknowledges the batch;
//! - the **worker hop** reads the queue (blocking `XREADGROUP`), runs one script per batch that takes a
//!   lease per entry, POSTs each entry's payload to the receiver (keep-alive, `TCP_NODELAY`), and runs one
//!   script that drops the leases and acknowledges the batch.
//!
//! No records, indexes, matching, signing, fencing or retries: no design with separate processes that talk
//! through Redis, a durable hand-off between them and an outcome written after the answer can cost less.
//! The figures (CPU per event by process, the same `/proc` readings as every phase) are the floor under the
//! `rates` phase's figures at the same rate, on this machine.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use fred::prelude::*;
use fred::types::config::TcpConfig;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use delivery_model::event::field::PAYLOAD;
use delivery_model::queue::MESSAGE_FIELD;
use delivery_model::store::connection::fred_config;
use delivery_model::store::{Store, StoreOptions, StreamReader};

use crate::Args;
use crate::backend::{Backend, RedisSpec};
use crate::cpu::{MachineTicks, Role, bench_roles, snapshot, spent};
use crate::load::{Publisher, steady};
use crate::measure::Usage;
use crate::report::{self, Spread, quantile_ms};
use crate::sink::{Arrival, Sink};

/// Set (to `consumer` or `worker`) in a hop process's environment; `main` runs [`hop`] instead of the
/// benchmark.
pub(crate) const HOP_VAR: &str = "HOOKLINE_BENCH_FLOOR_HOP";
const REDIS_VAR: &str = "HOOKLINE_BENCH_FLOOR_REDIS";
const TARGET_VAR: &str = "HOOKLINE_BENCH_FLOOR_TARGET";

const QUEUE: &str = "floor:queue";
const INPUT_GROUP: &str = "floor-consumers";
const QUEUE_GROUP: &str = "floor-workers";

/// Appends each (id, payload) pair's payload to the queue and acknowledges the ids. KEYS: input, queue;
/// ARGV: the pairs, then the queue's message field.
const FANOUT: &str = "local ids = {}
for i = 1, #ARGV - 1, 2 do
  redis.call('XADD', KEYS[2], '*', ARGV[#ARGV], ARGV[i + 1])
  ids[#ids + 1] = ARGV[i]
end
return redis.call('XACK', KEYS[1], 'floor-consumers', unpack(ids))";
/// A lease per queue entry id.
const LEASE: &str =
    "for i = 1, #ARGV do redis.call('SET', 'floor:lease:' .. ARGV[i], '1', 'PX', 60000) end
return #ARGV";
/// Drops the leases and acknowledges the queue entries. KEYS: queue.
const FINISH: &str = "for i = 1, #ARGV do redis.call('DEL', 'floor:lease:' .. ARGV[i]) end
return redis.call('XACK', KEYS[1], 'floor-workers', unpack(ARGV))";

/// Runs the floor at each of `args.rates`, `args.repeats` runs of `args.rate_secs` each (each on a fresh
/// Redis, receiver and hops).
///
/// # Errors
/// Redis, the receiver or a hop process does not start, or a run loses events.
pub(crate) async fn run(args: &Args) -> anyhow::Result<()> {
    println!(
        "\n## Floor: the hops alone ({} s per run, {} run(s) per rate, by XADD)\n",
        args.rate_secs, args.repeats
    );
    println!(
        "Two stand-in processes move each event along Hookline's path (blocking read, one script, blocking \
         read, lease script, POST, outcome script) and do nothing else: the least CPU any design with \
         these hops pays per event on this machine.\n"
    );
    let mut rows = Vec::new();
    for &rate in &args.rates {
        let mut runs = Vec::new();
        for _ in 0..args.repeats.max(1) {
            runs.push(run_once(rate, args.rate_secs).await?);
        }
        rows.push((rate, runs));
    }
    println!(
        "CPU µs per event, and the receiver's event→delivered latency: median (min–max) over the runs.\n"
    );
    println!(
        "| events/s | redis-server | consumer hop | worker hop | **floor: hops + Redis** | p50 ms | p99 ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (rate, runs) in &rows {
        let show = |decimals: usize, f: &dyn Fn(&FloorRun) -> f64| {
            let values: Vec<f64> = runs.iter().map(f).collect();
            Spread::of(&values).map_or_else(|| "n/a".into(), |s| s.show(decimals))
        };
        println!(
            "| {rate} | {} | {} | {} | **{}** | {} | {} |",
            show(0, &|r| r.per_event(0)),
            show(0, &|r| r.per_event(1)),
            show(0, &|r| r.per_event(2)),
            show(0, &|r| r.per_event(0) + r.per_event(1) + r.per_event(2)),
            show(2, &|r| r.p50_ms),
            show(2, &|r| r.p99_ms),
        );
    }
    for (rate, runs) in &rows {
        println!("\n### {rate} events/s, the runs pooled\n");
        let mut usage = Usage::default();
        for r in runs {
            usage.add(&r.usage);
        }
        report::print_cpu(&usage, runs.iter().map(|r| r.events).sum());
    }
    Ok(())
}

struct FloorRun {
    usage: Usage,
    events: u64,
    p50_ms: f64,
    p99_ms: f64,
}

impl FloorRun {
    /// CPU µs per event of role `i` (0 Redis, 1 the consumer hop, 2 the worker hop).
    fn per_event(&self, i: usize) -> f64 {
        self.usage
            .cpu
            .get(i)
            .and_then(|(_, c)| *c)
            .map_or(f64::NAN, |c| {
                c.as_secs_f64() * 1e6 / self.events.max(1) as f64
            })
    }
}

/// A hop process, killed when dropped.
struct HopProcess(Child);

impl HopProcess {
    fn spawn(role: &str, redis: &str, target: &str) -> anyhow::Result<Self> {
        let child = Command::new(std::env::current_exe()?)
            .env(HOP_VAR, role)
            .env(REDIS_VAR, redis)
            .env(TARGET_VAR, target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting the {role} hop"))?;
        Ok(Self(child))
    }
}

impl Drop for HopProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run_once(rate: u64, secs: u64) -> anyhow::Result<FloorRun> {
    let redis = Backend::start(RedisSpec::Single);
    let sink = Sink::start(Duration::ZERO)?;
    let opts = store_options(&redis.url())?;
    let store = Store::connect(&opts).await?;
    let raw = script_client(&opts).await?;
    for (stream, group) in [
        (store.keys().events_stream(), INPUT_GROUP),
        (QUEUE, QUEUE_GROUP),
    ] {
        let _: () = raw.xgroup_create(stream, group, "$", true).await?;
    }
    let redis_pid = redis.nodes()?.first().context("no redis node")?.pid;
    let consumer = HopProcess::spawn("consumer", &redis.url(), &sink.url(0))?;
    let worker = HopProcess::spawn("worker", &redis.url(), &sink.url(0))?;
    let publisher = Publisher::Xadd(store);

    // Warm-up: both hops connected and the path hot.
    let warm = steady(&publisher, rate as f64, 1.0).await;
    sink.expect(warm.accepted, Duration::from_secs(30)).await?;
    sink.reset();

    let mut roles = vec![
        Role::process("redis-server", redis_pid),
        Role::process("consumer hop", consumer.0.id()),
        Role::process("worker hop", worker.0.id()),
    ];
    roles.extend(bench_roles());
    let (cpu_before, machine_before, t0) = (
        snapshot(&roles),
        MachineTicks::read(),
        std::time::Instant::now(),
    );
    let sent = steady(&publisher, rate as f64, secs as f64).await;
    let arrival = sink.wait_for(sent.accepted, Duration::from_secs(60)).await;
    let (cpu_after, machine_after) = (snapshot(&roles), MachineTicks::read());
    let wall = t0.elapsed();
    if let Arrival::Partial(seen) = arrival {
        anyhow::bail!(
            "floor at {rate}/s: {seen} of {} events arrived",
            sent.accepted
        );
    }
    let cpu = spent(roles, &cpu_before, &cpu_after);
    let mut latencies = sink.latencies();
    latencies.sort_unstable();
    Ok(FloorRun {
        usage: Usage {
            cpu,
            machine: machine_before.zip(machine_after).map(|(b, a)| a.since(&b)),
            wall,
            hops: Vec::new(),
        },
        events: sent.accepted,
        p50_ms: quantile_ms(&latencies, 0.5),
        p99_ms: quantile_ms(&latencies, 0.99),
    })
}

/// The store options the services would use on `url` (their defaults, as a stack loads them).
fn store_options(url: &str) -> anyhow::Result<StoreOptions> {
    let env = crate::stack::env(url, &[], &[]);
    Ok(service_common::config::Settings::load_from(env)?.store_options())
}

/// A raw client for the hops' scripts, reaching Redis as the store does (`fred_config`) with the store's
/// socket setting (`TCP_NODELAY`), connected.
async fn script_client(opts: &StoreOptions) -> anyhow::Result<Client> {
    let mut builder = Builder::from_config(fred_config(opts)?);
    builder.with_connection_config(|c| {
        c.tcp = TcpConfig {
            nodelay: Some(true),
            ..Default::default()
        };
    });
    let client = builder.build()?;
    client.init().await?;
    Ok(client)
}

/// A hop process's body (`role` from [`HOP_VAR`]): runs until killed.
///
/// # Errors
/// Its environment is incomplete, or Redis or the receiver fails.
pub(crate) async fn hop(role: &str) -> anyhow::Result<()> {
    let var = |k: &str| std::env::var(k).with_context(|| format!("{k} not set"));
    let (url, target) = (var(REDIS_VAR)?, var(TARGET_VAR)?);
    // The store's dedicated connection for the blocking read, another for the scripts, as Hookline's
    // services do.
    let opts = store_options(&url)?;
    let store = Store::connect(&opts).await?;
    let (reader, writer) = (store.reader().await?, script_client(&opts).await?);
    let input = store.keys().events_stream().to_owned();
    match role {
        "consumer" => {
            let fanout: String = writer.script_load(FANOUT).await?;
            loop {
                let batch = read(&reader, INPUT_GROUP, &input, 200, PAYLOAD).await?;
                if batch.is_empty() {
                    continue;
                }
                let mut args: Vec<String> = batch.into_iter().flat_map(|(id, p)| [id, p]).collect();
                args.push(MESSAGE_FIELD.to_owned());
                let _: i64 = writer
                    .evalsha(&fanout, vec![input.clone(), QUEUE.to_owned()], args)
                    .await?;
            }
        }
        "worker" => {
            let (lease, finish): (String, String) = (
                writer.script_load(LEASE).await?,
                writer.script_load(FINISH).await?,
            );
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            let http = HttpClient::builder(TokioExecutor::new()).build(connector);
            let uri: hyper::Uri = target.parse()?;
            loop {
                let batch = read(&reader, QUEUE_GROUP, QUEUE, 128, MESSAGE_FIELD).await?;
                if batch.is_empty() {
                    continue;
                }
                let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
                let _: i64 = writer
                    .evalsha(&lease, Vec::<String>::new(), ids.clone())
                    .await?;
                for (_, payload) in batch {
                    let req = hyper::Request::post(uri.clone())
                        .header(hyper::header::CONTENT_TYPE, "application/json")
                        .body(Full::new(Bytes::from(payload)))?;
                    let resp = http.request(req).await?;
                    resp.into_body().collect().await?;
                }
                let _: i64 = writer.evalsha(&finish, vec![QUEUE.to_owned()], ids).await?;
            }
        }
        other => anyhow::bail!("{HOP_VAR}={other}: expected consumer or worker"),
    }
}

/// One blocking group read of up to `count` entries: (entry id, the value of `field`) each.
async fn read(
    reader: &StreamReader,
    group: &str,
    stream: &str,
    count: u64,
    field: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let entries = reader
        .read_group(stream, group, "floor", count, 2000)
        .await?;
    Ok(entries
        .into_iter()
        .filter_map(|mut e| Some((e.id, e.fields.remove(field)?)))
        .collect())
}
