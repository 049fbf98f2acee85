//! Delivery statistics: small per-minute and per-hour counters that the console's charts read, so that no
//! client has to page through delivery records to draw them (issue #20).
//!
//! Writers (the delivery-worker after each group commit of outcomes, the gateway after a receiver's final
//! callback) hand [`OutcomeSample`]s to `Store::record_stats`; it adds them up per key and increments each
//! hash with one single-key script, which also refreshes the key's TTL. Readers get [`MinuteStats`] and
//! [`HourStats`]. The counters are best effort: they are written after the outcome itself, so a process that
//! dies in between loses a few counts, and nothing ever counts an outcome twice.
//!
//! Latency is the duration of each attempt that sent a request, kept as a histogram with fixed bucket
//! bounds ([`LATENCY_BOUNDS_MS`]); percentiles are interpolated within a bucket, as Prometheus's
//! `histogram_quantile` does.

use std::collections::HashMap;

use crate::ids::SubscriptionId;

/// Seconds a minute's hash lives after its last write: the console shows the last hour.
pub const MINUTE_TTL_SECS: u64 = 2 * 3600;
/// Seconds a subscription's hour hash lives after its last write: the sparkline covers 24 hours.
pub const HOUR_TTL_SECS: u64 = 25 * 3600;
/// Upper bounds (ms, inclusive) of the attempt-duration buckets; longer attempts go to `lat:inf`.
pub const LATENCY_BOUNDS_MS: [u64; 12] = [
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000,
];

/// Hash fields.
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";
pub const RETRIED: &str = "retried";
pub const ATTEMPTS: &str = "attempts";
/// Prefix of the histogram fields (`lat:5`, …, `lat:inf`).
const LATENCY_PREFIX: &str = "lat:";
const LATENCY_INF: &str = "lat:inf";

/// What became of a delivery, as far as the counters care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// It reached `delivered`.
    Delivered,
    /// It reached `failed` (last attempt failed, abandoned, or the receiver's callback said so).
    Failed,
    /// An attempt failed and another is scheduled.
    Retried,
    /// An attempt whose status change is counted elsewhere (async `in_progress`, or a callback got there
    /// first): only the attempt and its duration.
    AttemptOnly,
}

/// One outcome to count.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeSample {
    pub subscription: SubscriptionId,
    pub counted: Counted,
    /// The attempt's duration when a request was sent (counts an attempt and feeds the histogram).
    pub duration_ms: Option<u64>,
}

/// The histogram field a duration falls into.
fn latency_field(ms: u64) -> String {
    LATENCY_BOUNDS_MS.iter().find(|b| ms <= **b).map_or_else(
        || LATENCY_INF.to_owned(),
        |b| format!("{LATENCY_PREFIX}{b}"),
    )
}

/// Which hash an increment goes to (turned into a key name by the store's [`crate::keys::Keyspace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatsKey {
    Minute(i64),
    SubscriptionHour(SubscriptionId, i64),
}

/// Adds `samples`, all observed at `now_secs`, up into per-key increments.
pub fn aggregate(
    samples: &[OutcomeSample],
    now_secs: i64,
) -> HashMap<StatsKey, HashMap<String, i64>> {
    let minute = StatsKey::Minute(now_secs.div_euclid(60));
    let hour = now_secs.div_euclid(3600);
    let mut out: HashMap<StatsKey, HashMap<String, i64>> = HashMap::new();
    let mut bump =
        |key: StatsKey, field: String| *out.entry(key).or_default().entry(field).or_default() += 1;
    for s in samples {
        let status = match s.counted {
            Counted::Delivered => Some(DELIVERED),
            Counted::Failed => Some(FAILED),
            Counted::Retried => Some(RETRIED),
            Counted::AttemptOnly => None,
        };
        if let Some(field) = status {
            bump(minute, field.to_owned());
            if matches!(s.counted, Counted::Delivered | Counted::Failed) {
                bump(
                    StatsKey::SubscriptionHour(s.subscription, hour),
                    field.to_owned(),
                );
            }
        }
        if let Some(ms) = s.duration_ms {
            bump(minute, ATTEMPTS.to_owned());
            bump(minute, latency_field(ms));
        }
    }
    out
}

/// Attempt-duration percentiles (ms).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// An attempt-duration histogram: counts per bucket of [`LATENCY_BOUNDS_MS`], then the overflow bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: [u64; LATENCY_BOUNDS_MS.len() + 1],
}

impl Histogram {
    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q`-quantile (0 < q ≤ 1) in ms, interpolated linearly inside its bucket; an observation in the
    /// overflow bucket is reported as the largest bound. `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut seen = 0u64;
        let mut lower = 0.0;
        for (i, count) in self.counts.iter().enumerate() {
            let Some(upper) = LATENCY_BOUNDS_MS.get(i).map(|b| *b as f64) else {
                return Some(lower);
            };
            if *count > 0 && (seen + count) as f64 >= rank {
                let within = (rank - seen as f64) / *count as f64;
                return Some(lower + (upper - lower) * within.clamp(0.0, 1.0));
            }
            seen += count;
            lower = upper;
        }
        Some(lower)
    }

    pub fn percentiles(&self) -> Option<Percentiles> {
        Some(Percentiles {
            p50: self.quantile(0.5)?,
            p95: self.quantile(0.95)?,
            p99: self.quantile(0.99)?,
        })
    }
}

/// One minute's counters, as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteStats {
    pub delivered: u64,
    pub failed: u64,
    pub retried: u64,
    pub attempts: u64,
    pub latency: Histogram,
}

fn count(h: &HashMap<String, String>, field: &str) -> u64 {
    h.get(field).and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl MinuteStats {
    /// From the stored hash (missing or unreadable fields count as 0).
    pub fn from_hash(h: &HashMap<String, String>) -> Self {
        let mut latency = Histogram::default();
        for (i, slot) in latency.counts.iter_mut().enumerate() {
            let field = LATENCY_BOUNDS_MS.get(i).map_or_else(
                || LATENCY_INF.to_owned(),
                |b| format!("{LATENCY_PREFIX}{b}"),
            );
            *slot = count(h, &field);
        }
        Self {
            delivered: count(h, DELIVERED),
            failed: count(h, FAILED),
            retried: count(h, RETRIED),
            attempts: count(h, ATTEMPTS),
            latency,
        }
    }
}

/// One subscription's outcomes during one hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourStats {
    pub delivered: u64,
    pub failed: u64,
}

impl HourStats {
    pub fn from_hash(h: &HashMap<String, String>) -> Self {
        Self {
            delivered: count(h, DELIVERED),
            failed: count(h, FAILED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(counted: Counted, duration_ms: Option<u64>) -> OutcomeSample {
        OutcomeSample {
            subscription: SubscriptionId::new_v4(),
            counted,
            duration_ms,
        }
    }

    #[test]
    fn aggregates_per_minute_and_subscription_hour() {
        let now = 7200 + 125; // minute 122, hour 2
        let samples = [
            sample(Counted::Delivered, Some(3)),
            sample(Counted::Retried, Some(40_000)),
            sample(Counted::Failed, None),
            sample(Counted::AttemptOnly, Some(7)),
        ];
        let got = aggregate(&samples, now);
        let minute = &got[&StatsKey::Minute(122)];
        assert_eq!(minute[DELIVERED], 1);
        assert_eq!(minute[FAILED], 1);
        assert_eq!(minute[RETRIED], 1);
        assert_eq!(minute[ATTEMPTS], 3);
        assert_eq!(minute["lat:5"], 1);
        assert_eq!(minute["lat:10"], 1);
        assert_eq!(minute["lat:inf"], 1);
        // Only terminal outcomes reach the subscription's hour.
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[&StatsKey::SubscriptionHour(samples[0].subscription, 2)][DELIVERED],
            1
        );
        assert_eq!(
            got[&StatsKey::SubscriptionHour(samples[2].subscription, 2)][FAILED],
            1
        );
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let mut h = HashMap::new();
        h.insert("lat:10".to_owned(), "50".to_owned()); // (5, 10]
        h.insert("lat:100".to_owned(), "50".to_owned()); // (50, 100]
        h.insert(DELIVERED.to_owned(), "9".to_owned());
        let m = MinuteStats::from_hash(&h);
        assert_eq!(m.delivered, 9);
        assert_eq!(m.latency.total(), 100);
        assert_eq!(m.latency.quantile(0.5), Some(10.0));
        assert_eq!(m.latency.quantile(0.25), Some(7.5));
        assert_eq!(m.latency.quantile(0.99), Some(99.0));
        assert_eq!(Histogram::default().percentiles(), None);
        let mut over = HashMap::new();
        over.insert(LATENCY_INF.to_owned(), "1".to_owned());
        assert_eq!(
            MinuteStats::from_hash(&over).latency.quantile(0.5),
            Some(30_000.0)
        );
    }
}
