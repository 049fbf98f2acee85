//! Turning runs into the printed report: medians and spreads over repeats, CPU per delivery by process,
//! machine busy, and the per-hop table.

use crate::cpu::Group;
use crate::hops::{Estimate, HOPS};
use crate::measure::{Run, Usage};

/// The median and the range of one figure over repeats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Spread {
    /// `None` for no values. The median of an even count is the mean of the middle two.
    pub(crate) fn of(values: &[f64]) -> Option<Self> {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }

    /// `median (min–max)` with `decimals`, or just the median when the range rounds to one value.
    pub(crate) fn show(&self, decimals: usize) -> String {
        let (median, min, max) = (
            format!("{:.decimals$}", self.median),
            format!("{:.decimals$}", self.min),
            format!("{:.decimals$}", self.max),
        );
        if min == max {
            median
        } else {
            format!("{median} ({min}–{max})")
        }
    }
}

/// `f` of every run, as a spread with `decimals`.
pub(crate) fn spread(runs: &[Run], decimals: usize, f: impl Fn(&Run) -> f64) -> String {
    let v: Vec<f64> = runs.iter().map(f).filter(|x| x.is_finite()).collect();
    Spread::of(&v).map_or_else(|| "n/a".into(), |s| s.show(decimals))
}

/// The `q` quantile of sorted µs values, in ms (the nearest rank at or below).
pub(crate) fn quantile_ms(sorted_us: &[i64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted_us.len() - 1) as f64 * q) as usize;
    sorted_us[idx.min(sorted_us.len() - 1)] as f64 / 1000.0
}

/// Every run's latencies merged and sorted (for a phase's pooled end-to-end row).
pub(crate) fn pooled_latencies(runs: &[Run]) -> Vec<i64> {
    let mut all: Vec<i64> = runs
        .iter()
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    all.sort_unstable();
    all
}

/// Every run's usage added up.
pub(crate) fn pooled_usage(runs: &[Run]) -> Usage {
    let mut u = Usage::default();
    for r in runs {
        u.add(&r.usage);
    }
    u
}

/// `185 % of 200 %`, or `n/a`.
pub(crate) fn machine_busy(u: &Usage) -> String {
    match u.machine.and_then(|m| m.busy_percent()) {
        Some((pct, top)) => format!("{pct:.0} % of {top} %"),
        None => "n/a".into(),
    }
}

/// The machine's busy % alone (for table cells).
pub(crate) fn busy_percent(r: &Run) -> f64 {
    r.usage
        .machine
        .and_then(|m| m.busy_percent())
        .map_or(f64::NAN, |(p, _)| p)
}

/// One line: CPU µs per delivery by role, the Hookline + Redis total and the total with the benchmark's
/// own publisher and receiver; then the machine's busy share.
pub(crate) fn print_cpu(u: &Usage, deliveries: u64) {
    if deliveries == 0 {
        return;
    }
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / deliveries as f64;
    let mut parts = Vec::new();
    let (mut system, mut bench) = (0.0, 0.0);
    for (role, cpu) in &u.cpu {
        let Some(cpu) = cpu else { continue };
        let us = per(*cpu);
        match role.group {
            Group::System => system += us,
            Group::Bench => bench += us,
        }
        parts.push(format!("{} {us:.0}", role.name));
    }
    if !parts.is_empty() {
        println!(
            "- CPU per delivery (µs): {}; **Hookline + Redis {system:.0}**; with the benchmark {:.0}",
            parts.join(", "),
            system + bench
        );
    }
    println!(
        "- machine busy over the phase: {} (all processes on the box; ours: {})",
        machine_busy(u),
        u.own_percent()
            .map_or_else(|| "n/a".into(), |p| format!("{p:.0} %"))
    );
}

fn est_ms(e: Estimate) -> String {
    match e {
        Estimate::Within(s) => format!("{:.2}", s * 1e3),
        Estimate::Above(s) => format!("> {:.0}", s * 1e3),
        Estimate::Empty => "–".into(),
    }
}

/// The per-hop table: each hop's p50/p99 from its histogram (bucket estimates), then the receiver's exact
/// end-to-end figures. `api` says whether events came through the gateway (else its row is left out).
pub(crate) fn print_hops(u: &Usage, e2e_sorted_us: &[i64], api: bool) {
    println!();
    println!("| hop | p50 ms | p99 ms | samples |");
    println!("|---|---:|---:|---:|");
    for (hop, h) in HOPS.iter().zip(&u.hops) {
        if hop.exporter == crate::hops::Exporter::Gateway && !api {
            continue;
        }
        match h {
            Some(h) => println!(
                "| {} | {} | {} | {:.0} |",
                hop.label,
                est_ms(h.quantile(0.5)),
                est_ms(h.quantile(0.99)),
                h.count()
            ),
            None => println!("| {} | n/a | n/a | n/a |", hop.label),
        }
    }
    println!(
        "| **receiver: event published → delivered (exact)** | **{:.2}** | **{:.2}** | {} |",
        quantile_ms(e2e_sorted_us, 0.5),
        quantile_ms(e2e_sorted_us, 0.99),
        e2e_sorted_us.len()
    );
    println!(
        "\n(hop rows: estimates by linear interpolation inside Prometheus buckets; n/a: the service does not \
         export the histogram; \"> x\": above the highest bucket bound)"
    );
}

/// A run's one-line progress note.
pub(crate) fn print_run(label: &str, r: &Run) {
    let mut line = format!(
        "  - {label}: {} events accepted, {:.0} deliveries/s, p50 {:.2} ms, p99 {:.2} ms, busy {:.0} %",
        r.sent.accepted,
        r.deliveries_per_sec(),
        quantile_ms(&r.latencies, 0.5),
        quantile_ms(&r.latencies, 0.99),
        busy_percent(r)
    );
    if r.sent.max_lateness_ms > 0.0 {
        line.push_str(&format!(
            ", generator at most {:.1} ms late",
            r.sent.max_lateness_ms
        ));
    }
    if r.sent.failed > 0 {
        line.push_str(&format!(
            "; {} publishes FAILED (first: {})",
            r.sent.failed,
            r.sent.first_error.as_deref().unwrap_or("?")
        ));
    }
    if !r.complete() {
        line.push_str(&format!(
            "; NOT DRAINED: {} of {} delivered",
            r.delivered, r.expected
        ));
    }
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range_of_repeats() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap_or_else(|| panic!("values"));
        assert_eq!(
            s,
            Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(s.show(1), "2.0 (1.0–3.0)");
        let even = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap_or_else(|| panic!("values"));
        assert_eq!(even.median, 2.5);
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(
            Spread::of(&[1999.6]).map(|s| s.show(0)),
            Some("2000".into())
        );
        // A range that rounds to one value is not printed as "500 (500–500)".
        assert_eq!(
            Spread::of(&[499.6, 500.2, 500.4]).map(|s| s.show(0)),
            Some("500".into())
        );
    }

    #[test]
    fn latency_quantiles_take_the_nearest_rank_below() {
        let v: Vec<i64> = (1..=100).map(|i| i * 1000).collect();
        // Index (100 − 1) × 0.5 = 49 → the 50th value, 50 ms.
        assert_eq!(quantile_ms(&v, 0.5), 50.0);
        // Index 98.01 → 98 → 99 ms.
        assert_eq!(quantile_ms(&v, 0.99), 99.0);
        assert!(quantile_ms(&[], 0.5).is_nan());
    }
}
