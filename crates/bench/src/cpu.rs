//! CPU time from `/proc`: by process (and, for the benchmark's own process, by thread: the receiver runs on
//! threads of its own), and for the whole machine (`/proc/stat`), so a phase can say where the time went
//! and how busy the box was, other engineers' compilers included.
//!
//! Off Linux every reading is `None` and the report leaves it out.

use std::time::Duration;

use crate::sink::SINK_THREAD;

/// What a role's CPU time is read from.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// A whole process (a service, redis-server).
    Process(u32),
    /// The benchmark's receiver threads ([`SINK_THREAD`]).
    SinkThreads,
    /// The benchmark process minus its receiver threads: the publisher (and the probes).
    BenchRest,
}

/// Which total a role counts towards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Group {
    /// Hookline's services and Redis: what a deployment pays.
    System,
    /// The benchmark's publisher and receiver: what the load and the receivers cost.
    Bench,
}

/// One process (or part of one) the CPU of a phase is charged to.
#[derive(Clone, Debug)]
pub(crate) struct Role {
    pub(crate) name: String,
    pub(crate) group: Group,
    pub(crate) source: Source,
}

impl Role {
    pub(crate) fn process(name: impl Into<String>, pid: u32) -> Self {
        Self {
            name: name.into(),
            group: Group::System,
            source: Source::Process(pid),
        }
    }
}

/// The roles every stack has besides its services: the publisher and the receiver, both in this process.
pub(crate) fn bench_roles() -> [Role; 2] {
    [
        Role {
            name: "bench publisher".into(),
            group: Group::Bench,
            source: Source::BenchRest,
        },
        Role {
            name: "bench receiver".into(),
            group: Group::Bench,
            source: Source::SinkThreads,
        },
    ]
}

/// USER_HZ: fixed at 100 in the kernel ABI for `/proc` on every Linux this runs on.
const TICK: Duration = Duration::from_millis(10);

/// User + system time from a `/proc/.../stat` line.
fn stat_cpu(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is parenthesised and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(TICK * u32::try_from(ticks).ok()?)
}

fn process_cpu(pid: u32) -> Option<Duration> {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// CPU time of this process's threads named [`SINK_THREAD`].
fn sink_threads_cpu() -> Option<Duration> {
    let mut total = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() == SINK_THREAD {
            total += stat_cpu(&dir.join("stat").to_string_lossy()).unwrap_or_default();
        }
    }
    Some(total)
}

/// Every role's CPU time so far, in `roles` order.
pub(crate) fn snapshot(roles: &[Role]) -> Vec<Option<Duration>> {
    let sink = sink_threads_cpu();
    roles
        .iter()
        .map(|r| match r.source {
            Source::Process(pid) => process_cpu(pid),
            Source::SinkThreads => sink,
            Source::BenchRest => Some(process_cpu(std::process::id())?.saturating_sub(sink?)),
        })
        .collect()
}

/// Each role's CPU time between two [`snapshot`]s of `roles` (`None` where either reading is missing).
pub(crate) fn spent(
    roles: Vec<Role>,
    before: &[Option<Duration>],
    after: &[Option<Duration>],
) -> Vec<(Role, Option<Duration>)> {
    roles
        .into_iter()
        .zip(before.iter().zip(after))
        .map(|(role, (b, a))| (role, b.zip(*a).map(|(b, a)| a.saturating_sub(b))))
        .collect()
}

/// The machine's CPU counters (`/proc/stat`'s first line), in ticks summed over every CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MachineTicks {
    pub(crate) busy: u64,
    pub(crate) total: u64,
    pub(crate) cpus: u64,
}

impl MachineTicks {
    /// Reads `/proc/stat`.
    pub(crate) fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// `cpu  user nice system idle iowait irq softirq steal …`: idle and iowait are not busy; guest time is
    /// already inside user.
    fn parse(stat: &str) -> Option<Self> {
        let first = stat.lines().find(|l| l.starts_with("cpu "))?;
        let f: Vec<u64> = first
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        let idle = f.get(3)? + f.get(4)?;
        let total: u64 = f.iter().sum();
        let cpus = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .count() as u64;
        Some(Self {
            busy: total - idle,
            total,
            cpus: cpus.max(1),
        })
    }

    /// The counters between `before` and `self`.
    pub(crate) fn since(&self, before: &Self) -> Self {
        Self {
            busy: self.busy.saturating_sub(before.busy),
            total: self.total.saturating_sub(before.total),
            cpus: self.cpus,
        }
    }

    pub(crate) fn add(&mut self, other: &Self) {
        self.busy += other.busy;
        self.total += other.total;
        self.cpus = self.cpus.max(other.cpus);
    }

    /// Busy time as a percentage of one CPU (so a 2-CPU machine tops out at 200), and that top.
    pub(crate) fn busy_percent(&self) -> Option<(f64, u64)> {
        (self.total > 0).then(|| {
            (
                100.0 * self.cpus as f64 * self.busy as f64 / self.total as f64,
                100 * self.cpus,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_busy_is_a_share_of_all_cpus() {
        let before = MachineTicks::parse(
            "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\ncpu1 50 0 25 400 25 0 0 0 0 0\nintr 1\n",
        )
        .unwrap_or_else(|| panic!("parses"));
        assert_eq!(
            before,
            MachineTicks {
                busy: 150,
                total: 1000,
                cpus: 2
            }
        );
        // 300 busy of 400 ticks on 2 CPUs: 150 % of 200 %.
        let after = MachineTicks::parse("cpu  300 0 150 850 100 0 0 0 0 0\ncpu0 1\ncpu1 1\n")
            .unwrap_or_else(|| panic!("parses"));
        let d = after.since(&before);
        assert_eq!((d.busy, d.total), (300, 400));
        assert_eq!(d.busy_percent(), Some((150.0, 200)));
        assert_eq!(MachineTicks::default().busy_percent(), None);
    }

    #[test]
    fn this_process_and_its_threads_are_readable_on_linux() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let roles = bench_roles();
        let cpu = snapshot(&roles);
        assert!(cpu.iter().all(Option::is_some), "{cpu:?}");
        assert!(MachineTicks::read().is_some_and(|m| m.total > 0));
    }
}
