//! Per-hop latency from the services' Prometheus histograms.
//!
//! Each service's `/metrics` is scraped before and after a phase; the bucket counts are subtracted, so the
//! phase's own observations remain (a service's histograms are cumulative since its start, warm-up
//! included). Quantiles are estimated the way PromQL's `histogram_quantile` does: linear interpolation
//! inside the bucket the rank falls in. They are estimates, only as fine as the bucket bounds. A metric a
//! service does not export yields `None`, printed as "n/a", so the benchmark runs against services that
//! predate a histogram.

/// Which service exports a hop's histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exporter {
    Gateway,
    Consumer,
    Worker,
}

/// One hop of an event's way to the receiver, as one histogram (label filter included).
pub(crate) struct Hop {
    pub(crate) label: &'static str,
    pub(crate) exporter: Exporter,
    pub(crate) metric: &'static str,
    /// Labels a series must carry to count; the others are summed over.
    pub(crate) filter: &'static [(&'static str, &'static str)],
}

/// The hops in the order an event takes them. The first applies only when events come through the API.
pub(crate) const HOPS: &[Hop] = &[
    Hop {
        label: "api-gateway: POST /events request → 202",
        exporter: Exporter::Gateway,
        metric: "hookline_api_request_duration_seconds",
        filter: &[("route", "/events"), ("method", "POST")],
    },
    Hop {
        label: "event-consumer: XADD → fan-out committed",
        exporter: Exporter::Consumer,
        metric: "hookline_consumer_event_lag_seconds",
        filter: &[],
    },
    Hop {
        label: "delivery-worker: record created → lease held",
        exporter: Exporter::Worker,
        metric: "hookline_worker_pickup_lag_seconds",
        filter: &[],
    },
    Hop {
        label: "delivery-worker: entry read → request started (lease + host slot)",
        exporter: Exporter::Worker,
        metric: "hookline_worker_send_wait_seconds",
        filter: &[],
    },
    Hop {
        label: "delivery-worker: request → response (2xx)",
        exporter: Exporter::Worker,
        metric: "hookline_worker_attempt_duration_seconds",
        filter: &[("class", "2xx")],
    },
    Hop {
        label: "delivery-worker: response → outcome written",
        exporter: Exporter::Worker,
        metric: "hookline_worker_outcome_write_seconds",
        filter: &[],
    },
    Hop {
        label: "delivery-worker: record created → first answer",
        exporter: Exporter::Worker,
        metric: "hookline_worker_first_attempt_lag_seconds",
        filter: &[],
    },
];

/// A cumulative histogram: `(upper bound, observations ≤ bound)` by ascending bound, `+Inf` last.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Histogram {
    buckets: Vec<(f64, f64)>,
}

/// A quantile estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Estimate {
    /// Seconds, interpolated inside a finite bucket.
    Within(f64),
    /// The rank falls in the `+Inf` bucket: above the highest finite bound (seconds).
    Above(f64),
    /// The histogram holds no observation.
    Empty,
}

impl Histogram {
    /// The series of `metric` in Prometheus text `text` whose labels include `filter`, summed bound by
    /// bound (over workers, status classes, …). `None` when no series matches: the metric is not exported.
    pub(crate) fn parse(text: &str, metric: &str, filter: &[(&str, &str)]) -> Option<Self> {
        let prefix = format!("{metric}_bucket{{");
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else {
                continue;
            };
            let Some((labels, value)) = split_labels(rest) else {
                continue;
            };
            if !filter
                .iter()
                .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            {
                continue;
            }
            let Some(le) = labels
                .iter()
                .find(|(k, _)| k == "le")
                .and_then(|(_, v)| parse_bound(v))
            else {
                continue;
            };
            let Ok(count) = value.trim().parse::<f64>() else {
                continue;
            };
            add_bucket(&mut buckets, le, count);
        }
        if buckets.is_empty() {
            return None;
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(Self { buckets })
    }

    /// Adds `other`'s counts bound by bound (another worker, another repeat).
    pub(crate) fn add(&mut self, other: &Self) {
        for (le, c) in &other.buckets {
            add_bucket(&mut self.buckets, *le, *c);
        }
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }

    /// `self − before`, bound by bound: the observations made between the two scrapes. A bound missing from
    /// `before` counts as zero there; a negative difference (the service restarted) is clamped to zero.
    pub(crate) fn since(&self, before: Option<&Self>) -> Self {
        let buckets = self
            .buckets
            .iter()
            .map(|(le, c)| {
                let b = before
                    .and_then(|h| h.buckets.iter().find(|(l, _)| l == le))
                    .map_or(0.0, |(_, c)| *c);
                (*le, (c - b).max(0.0))
            })
            .collect();
        Self { buckets }
    }

    /// Observations in all.
    pub(crate) fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |(_, c)| *c)
    }

    /// The `q` quantile (0 < q < 1) by linear interpolation inside its bucket, the first bucket starting at
    /// zero (every hop is a duration), as PromQL's `histogram_quantile`.
    pub(crate) fn quantile(&self, q: f64) -> Estimate {
        let total = self.count();
        if total <= 0.0 {
            return Estimate::Empty;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(upper, cum) in &self.buckets {
            if cum >= rank && cum > below {
                if upper.is_infinite() {
                    return Estimate::Above(lower);
                }
                return Estimate::Within(lower + (upper - lower) * (rank - below) / (cum - below));
            }
            lower = if upper.is_finite() { upper } else { lower };
            below = cum;
        }
        Estimate::Above(lower)
    }
}

fn add_bucket(buckets: &mut Vec<(f64, f64)>, le: f64, count: f64) {
    match buckets.iter_mut().find(|(l, _)| *l == le) {
        Some(slot) => slot.1 += count,
        None => buckets.push((le, count)),
    }
}

fn parse_bound(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        _ => v.parse().ok(),
    }
}

/// `a="x",b="y\"z"} 12` → the labels and what follows the closing brace. Values may hold commas, braces
/// and escaped quotes (a route pattern may).
fn split_labels(s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after_name) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after_name.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                _ => value.push(c),
            }
        };
        labels.push((name.trim().to_owned(), value));
        rest = &after_name[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP hookline_api_request_duration_seconds Time to answer.
# TYPE hookline_api_request_duration_seconds histogram
hookline_api_request_duration_seconds_bucket{method="POST",route="/events",le="0.001"} 10
hookline_api_request_duration_seconds_bucket{method="POST",route="/events",le="0.005"} 60
hookline_api_request_duration_seconds_bucket{method="POST",route="/events",le="0.01"} 100
hookline_api_request_duration_seconds_bucket{method="POST",route="/events",le="+Inf"} 100
hookline_api_request_duration_seconds_sum{method="POST",route="/events"} 0.4
hookline_api_request_duration_seconds_count{method="POST",route="/events"} 100
hookline_api_request_duration_seconds_bucket{method="GET",route="/a,b\"}",le="0.001"} 7
hookline_api_request_duration_seconds_bucket{method="GET",route="/a,b\"}",le="0.005"} 7
hookline_api_request_duration_seconds_bucket{method="GET",route="/a,b\"}",le="0.01"} 7
hookline_api_request_duration_seconds_bucket{method="GET",route="/a,b\"}",le="+Inf"} 7
"#;

    fn within(e: Estimate) -> f64 {
        match e {
            Estimate::Within(v) => v,
            other => panic!("expected an interpolated value, got {other:?}"),
        }
    }

    #[test]
    fn interpolates_inside_the_bucket_of_the_rank() {
        let h = Histogram::parse(
            TEXT,
            "hookline_api_request_duration_seconds",
            HOPS[0].filter,
        )
        .unwrap_or_else(|| panic!("series present"));
        assert_eq!(h.count(), 100.0);
        // Rank 50 lies in (0.001, 0.005], which holds ranks 10..60: 0.001 + 0.004 × 40/50.
        assert!((within(h.quantile(0.5)) - 0.0042).abs() < 1e-12);
        // Rank 99 lies in (0.005, 0.01], ranks 60..100: 0.005 + 0.005 × 39/40 = 0.009875.
        assert!((within(h.quantile(0.99)) - 0.009875).abs() < 1e-12);
        // Rank 5 in the first bucket, which starts at zero: 0.001 × 5/10.
        assert!((within(h.quantile(0.05)) - 0.0005).abs() < 1e-12);
    }

    #[test]
    fn labels_with_commas_quotes_and_braces_are_matched_exactly() {
        let h = Histogram::parse(
            TEXT,
            "hookline_api_request_duration_seconds",
            &[("route", "/a,b\"}")],
        )
        .unwrap_or_else(|| panic!("series present"));
        assert_eq!(h.count(), 7.0);
        // Without a filter both series are summed bound by bound.
        let all = Histogram::parse(TEXT, "hookline_api_request_duration_seconds", &[])
            .unwrap_or_else(|| panic!("series present"));
        assert_eq!(all.count(), 107.0);
        assert_eq!(all.buckets[0], (0.001, 17.0));
    }

    #[test]
    fn an_absent_metric_is_none_and_an_empty_one_has_no_estimate() {
        assert_eq!(
            Histogram::parse(TEXT, "hookline_worker_pickup_lag_seconds", &[]),
            None
        );
        let h = Histogram::parse(TEXT, "hookline_api_request_duration_seconds", &[])
            .unwrap_or_else(|| panic!("series present"));
        assert_eq!(h.since(Some(&h)).quantile(0.5), Estimate::Empty);
    }

    #[test]
    fn the_difference_of_two_scrapes_holds_only_the_phase() {
        let before = Histogram {
            buckets: vec![(0.001, 10.0), (0.01, 10.0), (f64::INFINITY, 10.0)],
        };
        let after = Histogram {
            buckets: vec![(0.001, 10.0), (0.01, 30.0), (f64::INFINITY, 40.0)],
        };
        let d = after.since(Some(&before));
        assert_eq!(
            d.buckets,
            vec![(0.001, 0.0), (0.01, 20.0), (f64::INFINITY, 30.0)]
        );
        // Ranks 20..30 are in +Inf: above the highest finite bound.
        assert_eq!(d.quantile(0.99), Estimate::Above(0.01));
        // Rank 15 of 30 in (0.001, 0.01], which holds ranks 0..20: 0.001 + 0.009 × 15/20.
        assert!((within(d.quantile(0.5)) - 0.00775).abs() < 1e-12);
        // A restart (counts fell) is clamped rather than negative.
        assert_eq!(before.since(Some(&after)).count(), 0.0);
        // Nothing before: everything counts.
        assert_eq!(after.since(None).count(), 40.0);
    }

    #[test]
    fn repeats_add_up_bound_by_bound() {
        let mut a = Histogram {
            buckets: vec![(0.001, 1.0), (f64::INFINITY, 2.0)],
        };
        a.add(&Histogram {
            buckets: vec![(0.001, 3.0), (f64::INFINITY, 3.0)],
        });
        assert_eq!(a.buckets, vec![(0.001, 4.0), (f64::INFINITY, 5.0)]);
    }
}
