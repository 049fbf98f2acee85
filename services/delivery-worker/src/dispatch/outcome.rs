//! How a delivery attempt ended, as this worker counts it ([`Outcome`]), and the reading of a receiver's
//! answer that decides it: the retry decision, the recorded error excerpt and `Retry-After`.
//!
//! Each [`Outcome`] is stored as one [`AttemptOutcome`] and counted under one label of
//! `hookline_worker_deliveries_total`; the label comes from the variant, so the two cannot drift apart.

use std::time::Duration;

use delivery_model::store::AttemptOutcome;
use delivery_model::time::{Micros, now_micros};
use http::StatusCode;

use super::config::DispatchConfig;
use super::{header, micros};
use crate::client::Answer;

/// The label of [`Outcome::Delivered`] (the SLO histogram is observed under it too).
pub(super) const DELIVERED: &str = "delivered";

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// 2xx.
    Delivered,
    /// 2xx with `X-TMI-Callback: async`: the receiver reports progress by callback.
    InProgress,
    /// Failed, attempts remain: try again at `at`.
    Retry { error: String, at: Micros },
    /// The last attempt failed.
    Failed { error: String },
    /// The receiver answered `410 Gone`: failed for good, and the subscription is disabled with it.
    Gone { error: String },
    /// The target failed the outbound policy: retrying will not help, so it fails for good.
    Refused { error: String },
    /// The subscription is gone or not active: nothing was sent.
    Abandoned { error: String },
    /// The host had no free slot: try again shortly, without consuming an attempt.
    Deferred { at: Micros },
    /// The host's circuit is open: try again when it may close, without consuming an attempt.
    CircuitOpen { until: Micros },
    /// Over the subscription's rate or in-flight limit: try again at `at` (the time the limiter named),
    /// without consuming an attempt.
    Limited { at: Micros },
}

impl Outcome {
    /// Its label in `hookline_worker_deliveries_total`, once written.
    pub(super) fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered => DELIVERED,
            Outcome::InProgress => "in_progress",
            Outcome::Retry { .. } => "retry",
            Outcome::Failed { .. } => "failed",
            Outcome::Gone { .. } => "gone",
            Outcome::Refused { .. } => "refused",
            Outcome::Abandoned { .. } => "abandoned",
            Outcome::Deferred { .. } => "deferred",
            Outcome::CircuitOpen { .. } => "circuit_open",
            Outcome::Limited { .. } => "limited",
        }
    }

    /// What the outcome script writes for it.
    pub(super) fn stored(self) -> AttemptOutcome {
        match self {
            Outcome::Delivered => AttemptOutcome::Delivered,
            Outcome::InProgress => AttemptOutcome::InProgress,
            Outcome::Retry { error, at } => AttemptOutcome::Retry { error, at },
            Outcome::Failed { error } | Outcome::Refused { error } => {
                AttemptOutcome::Failed { error }
            }
            Outcome::Abandoned { error } => AttemptOutcome::Abandoned { error },
            Outcome::Gone { error } => AttemptOutcome::Gone { error },
            Outcome::Deferred { at } | Outcome::Limited { at } => AttemptOutcome::Reschedule {
                error: String::new(),
                at,
            },
            Outcome::CircuitOpen { until } => AttemptOutcome::Reschedule {
                error: "circuit open".into(),
                at: until,
            },
        }
    }

    /// The outcome of a request that got an answer, for a record that had made `attempts` attempts before.
    pub(super) fn of_answer(cfg: &DispatchConfig, attempts: u32, a: &Answer) -> Self {
        if a.status.is_success() {
            let is_async = a
                .headers
                .get(header::CALLBACK)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("async"));
            return if is_async {
                Outcome::InProgress
            } else {
                Outcome::Delivered
            };
        }
        let error = http_error(a.status, &a.body, cfg.excerpt_bytes);
        // The receiver says it is gone for good: no retry, and the outcome write disables the subscription.
        if a.status == StatusCode::GONE {
            return Outcome::Gone { error };
        }
        let wait = match a.status.as_u16() {
            429 | 503 => retry_after(a),
            _ => None,
        };
        Outcome::failure(cfg, attempts, error, wait)
    }

    /// A failed attempt of a record that had made `attempts` before: retry after the schedule's delay
    /// (never sooner than a `Retry-After`, bounded by the schedule's largest step), or fail for good after
    /// the last attempt.
    pub(super) fn failure(
        cfg: &DispatchConfig,
        attempts: u32,
        error: String,
        retry_after: Option<Duration>,
    ) -> Self {
        let attempt = attempts + 1;
        if attempt >= cfg.max_attempts {
            return Outcome::Failed { error };
        }
        let mut delay = cfg.retry_delay(attempt);
        if let Some(ra) = retry_after {
            delay = delay.max(ra.min(cfg.largest_step()));
        }
        Outcome::Retry {
            error,
            at: now_micros() + micros(delay),
        }
    }
}

/// `HTTP 500: <excerpt>`, as TMI records it (but capped to a short excerpt).
fn http_error(status: StatusCode, body: &[u8], cap: usize) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(cap)]);
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let suffix = if body.len() > cap {
        "...[truncated]"
    } else {
        ""
    };
    format!("HTTP {}: {}{suffix}", status.as_u16(), clean.trim())
}

/// `Retry-After` as a delay: delta-seconds or an HTTP date.
fn retry_after(a: &Answer) -> Option<Duration> {
    let v = a
        .headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = at.timestamp() - chrono::Utc::now().timestamp();
    Some(Duration::from_secs(u64::try_from(delta).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::dispatch::answer;
    use crate::dispatch::config::tests::cfg;

    #[test]
    fn error_excerpt_is_capped_and_clean() {
        assert_eq!(
            http_error(StatusCode::INTERNAL_SERVER_ERROR, b"boom\nbang and more", 8),
            "HTTP 500: boom ban...[truncated]"
        );
        assert_eq!(http_error(StatusCode::BAD_REQUEST, b"", 8), "HTTP 400: ");
    }

    #[test]
    fn retry_after_forms() {
        let mut a = answer(429, "");
        a.headers
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&a), Some(Duration::from_secs(120)));
        a.headers.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&a), Some(Duration::ZERO));
        a.headers
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&a), None);
    }

    #[test]
    fn answers_classify_by_status_callback_and_attempts_left() {
        let c = cfg();
        assert_eq!(
            Outcome::of_answer(&c, 0, &answer(204, "")),
            Outcome::Delivered
        );
        let mut a = answer(200, "");
        a.headers
            .insert(header::CALLBACK, HeaderValue::from_static(" Async "));
        assert_eq!(Outcome::of_answer(&c, 0, &a), Outcome::InProgress);
        assert_eq!(
            Outcome::of_answer(&c, 4, &answer(500, "no")),
            Outcome::Failed {
                error: "HTTP 500: no".into()
            }
        );
        let before = now_micros();
        let Outcome::Retry { error, at } = Outcome::of_answer(&c, 0, &answer(500, "no")) else {
            panic!("a failure with attempts left is retried");
        };
        assert_eq!(error, "HTTP 500: no");
        assert!(at >= before + micros(Duration::from_secs(60)));
    }

    #[test]
    fn retry_after_delays_but_never_past_the_largest_step() {
        let c = cfg();
        let mut a = answer(429, "");
        a.headers
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("99999"));
        let before = now_micros();
        let Outcome::Retry { at, .. } = Outcome::of_answer(&c, 0, &a) else {
            panic!("a 429 with attempts left is retried");
        };
        let largest = micros(Duration::from_secs(1800));
        assert!(at >= before + largest && at <= now_micros() + largest);
    }

    #[test]
    fn labels_and_stored_outcomes() {
        let refused = Outcome::Refused { error: "no".into() };
        assert_eq!(refused.label(), "refused");
        assert_eq!(refused.stored().name(), "failed");
        let open = Outcome::CircuitOpen { until: 7 };
        assert_eq!(open.label(), "circuit_open");
        assert!(matches!(
            open.stored(),
            AttemptOutcome::Reschedule { error, at: 7 } if error == "circuit open"
        ));
        let gone = Outcome::of_answer(&cfg(), 0, &answer(410, "bye"));
        assert_eq!(gone.label(), "gone");
        assert!(
            matches!(gone.stored(), AttemptOutcome::Gone { error } if error == "HTTP 410: bye")
        );
        let deferred = Outcome::Deferred { at: 7 };
        assert_eq!(deferred.label(), "deferred");
        assert_eq!(deferred.stored().error(), Some(""));
    }
}
