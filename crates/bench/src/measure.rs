//! One measured run: readings before the load (CPU by role, the machine's counters, every service's
//! histograms), the load, the wait for its deliveries, the same readings after; and what repeats of a run
//! add up to.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::cpu::{MachineTicks, Role, snapshot, spent};
use crate::hops::{HOPS, Histogram};
use crate::load::Sent;
use crate::sink::Arrival;
use crate::stack::Stack;

/// What a run (or several, added up) cost and how long each hop took.
#[derive(Clone, Debug, Default)]
pub(crate) struct Usage {
    /// CPU by role (same order as the stack's roles); `None` where it could not be read.
    pub(crate) cpu: Vec<(Role, Option<Duration>)>,
    pub(crate) machine: Option<MachineTicks>,
    /// Wall time of the window(s).
    pub(crate) wall: Duration,
    /// One per [`HOPS`] entry; `None`: no service exports it.
    pub(crate) hops: Vec<Option<Histogram>>,
}

impl Usage {
    /// Adds another run's usage (a repeat of the same stack shape: same roles).
    pub(crate) fn add(&mut self, other: &Usage) {
        if self.cpu.is_empty() && self.hops.is_empty() {
            *self = other.clone();
            return;
        }
        for ((_, mine), (_, theirs)) in self.cpu.iter_mut().zip(&other.cpu) {
            *mine = match (*mine, theirs) {
                (Some(a), Some(b)) => Some(a + *b),
                _ => None,
            };
        }
        match (&mut self.machine, &other.machine) {
            (Some(a), Some(b)) => a.add(b),
            (a, _) => *a = None,
        }
        self.wall += other.wall;
        for (mine, theirs) in self.hops.iter_mut().zip(&other.hops) {
            match (mine.as_mut(), theirs) {
                (Some(a), Some(b)) => a.add(b),
                (None, Some(b)) => *mine = Some(b.clone()),
                _ => {}
            }
        }
    }

    /// CPU of the roles in this usage as a percentage of one CPU over the window.
    pub(crate) fn own_percent(&self) -> Option<f64> {
        let secs = self.wall.as_secs_f64();
        let cpu: Duration = self.cpu.iter().filter_map(|(_, c)| *c).sum();
        (secs > 0.0).then(|| 100.0 * cpu.as_secs_f64() / secs)
    }
}

/// One run's outcome.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) sent: Sent,
    /// Deliveries expected: accepted events × subscriptions.
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    /// From the load's start to the last delivery (or to the timeout, when not all arrived).
    pub(crate) secs: f64,
    /// From the last accepted event to the last delivery; `None` when not all arrived.
    pub(crate) drain_secs: Option<f64>,
    /// Event→receiver latencies, µs, sorted.
    pub(crate) latencies: Vec<i64>,
    pub(crate) usage: Usage,
}

impl Run {
    pub(crate) fn deliveries_per_sec(&self) -> f64 {
        self.delivered as f64 / self.secs.max(1e-9)
    }

    pub(crate) fn complete(&self) -> bool {
        self.drain_secs.is_some()
    }
}

/// Readings at a window's start.
struct Window {
    t0: Instant,
    roles: Vec<Role>,
    cpu: Vec<Option<Duration>>,
    machine: Option<MachineTicks>,
    metrics: Vec<Option<String>>,
}

/// Every exporting service's `/metrics` text, in [`Stack::exporters`] order; `None` for one that did not
/// answer.
async fn scrape(stack: &Stack) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for (_, svc) in stack.exporters() {
        let r = test_support::http::try_request("GET", &svc.ops_url("/metrics"), &[], "").await;
        out.push(
            r.ok()
                .filter(|(s, _, _)| *s == 200)
                .map(|(_, _, b)| String::from_utf8_lossy(&b).into_owned()),
        );
    }
    out
}

/// Each hop's histogram between two scrapes, summed over the services that export it.
fn hop_deltas(
    stack: &Stack,
    before: &[Option<String>],
    after: &[Option<String>],
) -> Vec<Option<Histogram>> {
    let exporters = stack.exporters();
    HOPS.iter()
        .map(|hop| {
            let mut sum: Option<Histogram> = None;
            for (((kind, _), b), a) in exporters.iter().zip(before).zip(after) {
                if *kind != hop.exporter {
                    continue;
                }
                let Some(after) = a
                    .as_deref()
                    .and_then(|t| Histogram::parse(t, hop.metric, hop.filter))
                else {
                    continue;
                };
                let before = b
                    .as_deref()
                    .and_then(|t| Histogram::parse(t, hop.metric, hop.filter));
                let d = after.since(before.as_ref());
                match sum.as_mut() {
                    Some(s) => s.add(&d),
                    None => sum = Some(d),
                }
            }
            sum
        })
        .collect()
}

/// Runs `load` against `stack` and waits up to `drain_timeout` for its deliveries (accepted events × the
/// stack's subscriptions). The receiver is cleared first, so only this load's deliveries count.
pub(crate) async fn measure<F>(stack: &Stack, drain_timeout: Duration, load: F) -> Run
where
    F: Future<Output = Sent>,
{
    stack.sink.reset();
    let roles = stack.roles();
    let w = Window {
        metrics: scrape(stack).await,
        cpu: snapshot(&roles),
        machine: MachineTicks::read(),
        roles,
        t0: Instant::now(),
    };
    let sent = load.await;
    let expected = sent.accepted * stack.subscriptions as u64;
    let arrival = stack.sink.wait_for(expected, drain_timeout).await;
    let end = Instant::now();
    let cpu_after = snapshot(&w.roles);
    let machine_after = MachineTicks::read();
    let (delivered, drain_secs) = match arrival {
        Arrival::Complete(at) => (
            expected,
            sent.last_accepted
                .map(|last| at.saturating_duration_since(last).as_secs_f64()),
        ),
        Arrival::Partial(seen) => (seen, None),
    };
    // The histograms are read once the last attempts have answered and written their outcomes.
    tokio::time::sleep(stack.settle()).await;
    let metrics_after = scrape(stack).await;
    let cpu = spent(w.roles, &w.cpu, &cpu_after);
    let usage = Usage {
        cpu,
        machine: match (w.machine, machine_after) {
            (Some(b), Some(a)) => Some(a.since(&b)),
            _ => None,
        },
        wall: end - w.t0,
        hops: hop_deltas(stack, &w.metrics, &metrics_after),
    };
    Run {
        sent,
        expected,
        delivered,
        secs: (end - w.t0).as_secs_f64(),
        drain_secs,
        latencies: stack.sink.latencies(),
        usage,
    }
}
