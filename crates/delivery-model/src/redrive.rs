//! A paced, filtered redrive (issue #18): a subscription's failed deliveries queued again by a job that the
//! cleanup service advances at a set pace, instead of all at once.
//!
//! This module is the job's domain: its filters ([`RedriveFilter`], with the last attempt's
//! [`ErrorClass`]), its stored record ([`RedriveJob`]) and its states. The Redis side is
//! [`Store`](crate::store::Store)'s `redrive` methods; the runner is in the cleanup service.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::delivery::{AttemptLogEntry, DeliveryRecord};
use crate::error::{Error, Result};
use crate::ids::SubscriptionId;
use crate::time::Micros;

/// Pace of a job whose request names none and whose subscription has no rate limit, deliveries/s.
pub const DEFAULT_PACE: u32 = 50;
/// Largest pace accepted (the rate limit's own bound).
pub const MAX_PACE: u32 = crate::subscription::limits::MAX_RATE;
/// Largest number of event types one filter may name.
pub const MAX_EVENT_TYPES: usize = 50;
/// Largest number of HTTP status codes or error classes one filter may name.
pub const MAX_FILTER_VALUES: usize = 50;
/// How long a finished (completed, cancelled or stopped) job stays readable, seconds.
pub const FINISHED_RETENTION_SECS: u64 = 7 * 86_400;

/// What a delivery's last attempt ended with, as far as a redrive filter is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The receiver answered 4xx.
    #[serde(rename = "http_4xx")]
    Http4xx,
    /// The receiver answered 5xx.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// The receiver answered another status (a 2xx whose status callback never came, a redirect).
    HttpOther,
    /// No answer in time.
    Timeout,
    /// Connecting, TLS or the exchange failed.
    Connection,
    /// No request was sent or none answered for another reason (target refused by the outbound policy,
    /// abandoned because the subscription was disabled, a stale callback).
    Other,
    /// The record has no attempt in its log.
    None,
}

impl ErrorClass {
    /// The class of a record's last attempt (`None` when there was none).
    pub fn of(last: Option<&AttemptLogEntry>) -> Self {
        let Some(a) = last else {
            return ErrorClass::None;
        };
        match a.status_code {
            Some(400..=499) => ErrorClass::Http4xx,
            Some(500..=599) => ErrorClass::Http5xx,
            Some(_) => ErrorClass::HttpOther,
            // The worker's wording (`request failed: …` around its client's `SendError`).
            None => match a.error.as_deref() {
                Some(e) if e.starts_with("request failed: timed out") => ErrorClass::Timeout,
                Some(e) if e.starts_with("request failed:") => ErrorClass::Connection,
                _ => ErrorClass::Other,
            },
        }
    }
}

/// Which failed deliveries of the subscription a job queues again; every given filter must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedriveFilter {
    /// Event types (any of them); empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// Created at or after, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_from_ms: Option<i64>,
    /// Created at or before, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_to_ms: Option<i64>,
    /// HTTP status of the last attempt (any of them); empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_codes: Vec<u16>,
    /// Class of the last attempt (any of them); empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_classes: Vec<ErrorClass>,
    /// Add-on invocations too (each attempt carries a delegation token minted for it by the worker).
    #[serde(default)]
    pub include_addons: bool,
}

impl RedriveFilter {
    /// Whether the filter looks at the last attempt (then each candidate's attempt log is read).
    pub fn needs_attempts(&self) -> bool {
        !self.status_codes.is_empty() || !self.error_classes.is_empty()
    }

    /// Whether `record` (failed, of the job's subscription, in its creation range) passes the filters that
    /// do not need its attempt log.
    pub fn matches_record(&self, record: &DeliveryRecord) -> bool {
        (self.include_addons || record.addon_id.is_none())
            && (self.event_types.is_empty() || self.event_types.contains(&record.event_type))
    }

    /// Whether the last attempt `last` passes the status-code and error-class filters.
    pub fn matches_attempt(&self, last: Option<&AttemptLogEntry>) -> bool {
        let code = last.and_then(|a| a.status_code);
        (self.status_codes.is_empty() || code.is_some_and(|c| self.status_codes.contains(&c)))
            && (self.error_classes.is_empty() || self.error_classes.contains(&ErrorClass::of(last)))
    }
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// The runner advances it.
    Running,
    /// Every matching delivery was walked.
    Completed,
    /// An administrator cancelled it.
    Cancelled,
    /// The runner stopped it (its subscription is no longer active, see `reason`).
    Stopped,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Cancelled => "cancelled",
            JobState::Stopped => "stopped",
        }
    }
}

impl std::str::FromStr for JobState {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        [
            JobState::Running,
            JobState::Completed,
            JobState::Cancelled,
            JobState::Stopped,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
        .ok_or_else(|| Error::Decode(format!("unknown redrive state {s:?}")))
    }
}

/// The position of a job's walk over the failed index: the last delivery it passed, by (created ms, id),
/// the index's own order. `None` before the first step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub score_ms: i64,
    pub id: String,
}

/// A redrive job as stored (one per subscription; its hash and cursor in the control slot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedriveJob {
    pub job_id: uuid::Uuid,
    pub subscription_id: SubscriptionId,
    pub state: JobState,
    pub filter: RedriveFilter,
    /// Deliveries queued per second.
    pub pace: u32,
    /// Failed deliveries looked at so far.
    pub scanned: u64,
    /// Of those, the ones the filters matched.
    pub matched: u64,
    /// Matched and queued again.
    pub queued: u64,
    /// Matched but not queued (changed meanwhile, or an add-on invocation the script refused).
    pub skipped: u64,
    pub cursor: Option<Cursor>,
    /// The runner's next step is due at (µs).
    pub next_at: Micros,
    pub started_at: Micros,
    pub finished_at: Option<Micros>,
    /// Why the runner stopped it.
    pub reason: Option<String>,
    /// The administrator who started it.
    pub started_by: String,
}

/// Hash field names of a stored job.
pub mod field {
    pub const JOB_ID: &str = "job_id";
    pub const SUBSCRIPTION_ID: &str = "subscription_id";
    pub const STATE: &str = "state";
    pub const FILTER: &str = "filter";
    pub const PACE: &str = "pace";
    pub const SCANNED: &str = "scanned";
    pub const MATCHED: &str = "matched";
    pub const QUEUED: &str = "queued";
    pub const SKIPPED: &str = "skipped";
    pub const CURSOR_SCORE: &str = "cursor_score";
    pub const CURSOR_ID: &str = "cursor_id";
    pub const NEXT_AT: &str = "next_at";
    pub const STARTED_AT: &str = "started_at";
    pub const FINISHED_AT: &str = "finished_at";
    pub const REASON: &str = "reason";
    pub const STARTED_BY: &str = "started_by";
}

impl RedriveJob {
    /// A new running job, due at once.
    pub fn new(
        subscription_id: SubscriptionId,
        filter: RedriveFilter,
        pace: u32,
        started_by: impl Into<String>,
        now: Micros,
    ) -> Self {
        Self {
            job_id: uuid::Uuid::new_v4(),
            subscription_id,
            state: JobState::Running,
            filter,
            pace: pace.clamp(1, MAX_PACE),
            scanned: 0,
            matched: 0,
            queued: 0,
            skipped: 0,
            cursor: None,
            next_at: now,
            started_at: now,
            finished_at: None,
            reason: None,
            started_by: started_by.into(),
        }
    }

    /// The hash fields of a new job (counters at 0, no cursor).
    ///
    /// # Errors
    /// The filter does not encode (never, in practice).
    pub fn to_fields(&self) -> Result<Vec<(&'static str, String)>> {
        Ok(vec![
            (field::JOB_ID, self.job_id.to_string()),
            (field::SUBSCRIPTION_ID, self.subscription_id.to_string()),
            (field::STATE, self.state.as_str().to_owned()),
            (field::FILTER, serde_json::to_string(&self.filter)?),
            (field::PACE, self.pace.to_string()),
            (field::SCANNED, self.scanned.to_string()),
            (field::MATCHED, self.matched.to_string()),
            (field::QUEUED, self.queued.to_string()),
            (field::SKIPPED, self.skipped.to_string()),
            (field::NEXT_AT, self.next_at.to_string()),
            (field::STARTED_AT, self.started_at.to_string()),
            (field::STARTED_BY, self.started_by.clone()),
        ])
    }

    /// Decodes a stored hash (HGETALL, not empty).
    ///
    /// # Errors
    /// [`Error::Decode`] for a missing or malformed field.
    pub fn from_hash(h: &HashMap<String, String>) -> Result<Self> {
        let s = |k: &str| h.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let req = |k: &'static str| {
            s(k).ok_or_else(|| Error::Decode(format!("redrive field `{k}` missing")))
        };
        fn num<T: std::str::FromStr>(v: Option<&str>, k: &str) -> Result<Option<T>> {
            v.map(|v| {
                v.parse()
                    .map_err(|_| Error::Decode(format!("redrive field `{k}` is not a number")))
            })
            .transpose()
        }
        let count = |k: &'static str| -> Result<u64> { Ok(num(s(k), k)?.unwrap_or(0)) };
        let bad_uuid = |k: &str| Error::Decode(format!("redrive field `{k}` is not a UUID"));
        let cursor = match (
            num::<i64>(s(field::CURSOR_SCORE), field::CURSOR_SCORE)?,
            s(field::CURSOR_ID),
        ) {
            (Some(score_ms), Some(id)) => Some(Cursor {
                score_ms,
                id: id.to_owned(),
            }),
            _ => None,
        };
        Ok(Self {
            job_id: req(field::JOB_ID)?
                .parse()
                .map_err(|_| bad_uuid(field::JOB_ID))?,
            subscription_id: SubscriptionId(
                req(field::SUBSCRIPTION_ID)?
                    .parse()
                    .map_err(|_| bad_uuid(field::SUBSCRIPTION_ID))?,
            ),
            state: req(field::STATE)?.parse()?,
            filter: serde_json::from_str(req(field::FILTER)?)?,
            pace: num(s(field::PACE), field::PACE)?.unwrap_or(DEFAULT_PACE),
            scanned: count(field::SCANNED)?,
            matched: count(field::MATCHED)?,
            queued: count(field::QUEUED)?,
            skipped: count(field::SKIPPED)?,
            cursor,
            next_at: num(s(field::NEXT_AT), field::NEXT_AT)?.unwrap_or(0),
            started_at: num(s(field::STARTED_AT), field::STARTED_AT)?.unwrap_or(0),
            finished_at: num(s(field::FINISHED_AT), field::FINISHED_AT)?,
            reason: s(field::REASON).map(str::to_owned),
            started_by: s(field::STARTED_BY).unwrap_or_default().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(status_code: Option<u16>, error: Option<&str>) -> AttemptLogEntry {
        AttemptLogEntry {
            attempt: 1,
            started_at: 0,
            duration_ms: 1,
            outcome: "failed".into(),
            status_code,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn classes_of_the_last_attempt() {
        let class = |c, e| ErrorClass::of(Some(&attempt(c, e)));
        assert_eq!(class(Some(404), Some("HTTP 404: x")), ErrorClass::Http4xx);
        assert_eq!(class(Some(503), None), ErrorClass::Http5xx);
        assert_eq!(class(Some(200), None), ErrorClass::HttpOther);
        assert_eq!(
            class(None, Some("request failed: timed out waiting for headers")),
            ErrorClass::Timeout
        );
        assert_eq!(
            class(None, Some("request failed: connection refused")),
            ErrorClass::Connection
        );
        assert_eq!(class(None, Some("target refused")), ErrorClass::Other);
        assert_eq!(ErrorClass::of(None), ErrorClass::None);
    }

    #[test]
    fn class_names_are_the_documented_ones() {
        let names =
            serde_json::to_string(&[ErrorClass::Http4xx, ErrorClass::Http5xx, ErrorClass::None])
                .unwrap_or_default();
        assert_eq!(names, r#"["http_4xx","http_5xx","none"]"#);
    }

    #[test]
    fn filters_combine() {
        let f = RedriveFilter {
            status_codes: vec![500],
            error_classes: vec![ErrorClass::Http5xx],
            ..RedriveFilter::default()
        };
        assert!(f.needs_attempts());
        assert!(f.matches_attempt(Some(&attempt(Some(500), None))));
        assert!(!f.matches_attempt(Some(&attempt(Some(502), None))));
        assert!(!f.matches_attempt(None));
        assert!(RedriveFilter::default().matches_attempt(None));
    }

    #[test]
    fn a_job_round_trips_through_its_hash() {
        let mut job = RedriveJob::new(
            SubscriptionId::new_v4(),
            RedriveFilter {
                event_types: vec!["a".into()],
                ..RedriveFilter::default()
            },
            20,
            "admin",
            5,
        );
        let h: HashMap<String, String> = job
            .to_fields()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let back = RedriveJob::from_hash(&h).map_err(|e| e.to_string());
        job.cursor = None;
        assert_eq!(back, Ok(job));
    }
}
