//! `/admin/webhooks/subscriptions/{webhook_id}/redrive` (Hookline addition, issue #18): a subscription's
//! failed deliveries queued again by a paced, filtered job instead of all at once.
//!
//! `POST` starts the job (202 with it), or with `"dry_run": true` only counts what it would queue and shows
//! a sample (200, nothing written). `GET` shows the job's progress, `DELETE` cancels it. One job per
//! subscription at a time (409 otherwise). The cleanup service's runner advances it at `pace` deliveries
//! per second (default: the subscription's `rate_limit.per_second`, else 50), each delivery as
//! `POST /admin/webhooks/deliveries/{id}/retry` does. `retry-failed` stays the unpaced shorthand.

use actix_web::{HttpResponse, web};
use delivery_model::delivery::DeliveryRecord;
use delivery_model::redrive::{
    DEFAULT_PACE, ErrorClass, MAX_EVENT_TYPES, MAX_FILTER_VALUES, MAX_PACE, RedriveFilter,
    RedriveJob,
};
use delivery_model::store::redrive::{CancelResult, StartResult};
use delivery_model::subscription::SubscriptionStatus;
use delivery_model::time::{format_micros, now_micros, parse_rfc3339};
use serde::{Deserialize, Serialize};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::extract::{OptionalJsonBody, WebhookIdPath};
use crate::state::AppState;

/// Failed deliveries a dry run looks at, at most (its answer says whether it saw them all).
const DRY_RUN_MAX_SCAN: u64 = 10_000;
/// Deliveries a dry run's sample shows.
const SAMPLE: usize = 10;
/// Longest event type accepted (TMI's bound on event type strings).
const MAX_EVENT_TYPE_CHARS: usize = 1000;

/// `RedriveRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// Only count, and show a sample.
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    event_types: Vec<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    #[serde(default)]
    status_codes: Vec<u16>,
    #[serde(default)]
    error_classes: Vec<ErrorClass>,
    #[serde(default)]
    include_addons: bool,
    /// Deliveries per second.
    pace: Option<u32>,
}

impl RedriveRequest {
    fn filter(&self) -> ApiResult<RedriveFilter> {
        if self.event_types.len() > MAX_EVENT_TYPES
            || self.event_types.iter().any(|e| {
                e.is_empty()
                    || e.chars().count() > MAX_EVENT_TYPE_CHARS
                    || e.chars().any(char::is_control)
            })
        {
            return Err(ApiError::invalid_input(format!(
                "event_types: at most {MAX_EVENT_TYPES} event types of 1 to {MAX_EVENT_TYPE_CHARS} characters without control characters"
            )));
        }
        if self.status_codes.len() > MAX_FILTER_VALUES
            || self.status_codes.iter().any(|c| !(100..=599).contains(c))
        {
            return Err(ApiError::invalid_input(format!(
                "status_codes: at most {MAX_FILTER_VALUES} HTTP status codes (100-599)"
            )));
        }
        if self.error_classes.len() > MAX_FILTER_VALUES {
            return Err(ApiError::invalid_input(format!(
                "error_classes: at most {MAX_FILTER_VALUES} values"
            )));
        }
        let instant = |name: &str, raw: Option<&str>| -> ApiResult<Option<i64>> {
            raw.map(|r| {
                parse_rfc3339(r)
                    .map(|us| us.div_euclid(1000))
                    .ok_or_else(|| {
                        ApiError::invalid_input(format!("{name}: must be an RFC 3339 date-time"))
                    })
            })
            .transpose()
        };
        Ok(RedriveFilter {
            event_types: self.event_types.clone(),
            created_from_ms: instant("created_after", self.created_after.as_deref())?,
            created_to_ms: instant("created_before", self.created_before.as_deref())?,
            status_codes: self.status_codes.clone(),
            error_classes: self.error_classes.clone(),
            include_addons: self.include_addons,
        })
    }
}

/// `RedriveJob` in the OpenAPI document.
#[derive(Serialize)]
struct JobView<'a> {
    job_id: String,
    subscription_id: String,
    state: &'static str,
    pace: u32,
    filter: &'a RedriveFilter,
    scanned: u64,
    matched: u64,
    queued: u64,
    skipped: u64,
    started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    started_by: &'a str,
}

impl<'a> JobView<'a> {
    fn new(j: &'a RedriveJob) -> Self {
        Self {
            job_id: j.job_id.to_string(),
            subscription_id: j.subscription_id.to_string(),
            state: j.state.as_str(),
            pace: j.pace,
            filter: &j.filter,
            scanned: j.scanned,
            matched: j.matched,
            queued: j.queued,
            skipped: j.skipped,
            started_at: format_micros(j.started_at),
            finished_at: j.finished_at.map(format_micros),
            reason: j.reason.as_deref(),
            started_by: &j.started_by,
        }
    }
}

/// One delivery of a dry run's sample.
#[derive(Serialize)]
struct SampleItem {
    id: String,
    event_type: String,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

impl SampleItem {
    fn new(r: &DeliveryRecord) -> Self {
        Self {
            id: r.id.to_string(),
            event_type: r.event_type.clone(),
            created_at: format_micros(r.created_at),
            last_error: r.last_error.clone(),
        }
    }
}

/// `RedriveDryRun`.
#[derive(Serialize)]
struct DryRun {
    dry_run: bool,
    matched: u64,
    scanned: u64,
    /// Whether every failed delivery in range was looked at (false past 10,000).
    complete: bool,
    pace: u32,
    sample: Vec<SampleItem>,
}

/// `POST /admin/webhooks/subscriptions/{webhook_id}/redrive`
pub async fn start_redrive(
    WebhookIdPath(id): WebhookIdPath,
    Admin(admin): Admin,
    state: web::Data<AppState>,
    OptionalJsonBody(body): OptionalJsonBody<RedriveRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.unwrap_or_default();
    let filter = body.filter()?;
    if body.pace.is_some_and(|p| p == 0 || p > MAX_PACE) {
        return Err(ApiError::invalid_input(format!(
            "pace: must be 1 to {MAX_PACE} deliveries per second"
        )));
    }
    let sub = crate::routes::subscriptions::load(&state, id).await?;
    if sub.status != SubscriptionStatus::Active {
        return Err(ApiError::conflict(format!(
            "The subscription is {}; only deliveries of active subscriptions can be retried",
            sub.status
        )));
    }
    let pace = body
        .pace
        .or(sub.rate_limit.map(|r| r.per_second))
        .unwrap_or(DEFAULT_PACE);
    if body.dry_run {
        return dry_run(&state, id, &filter, pace).await;
    }
    let job = RedriveJob::new(id, filter, pace, admin.id.clone(), now_micros());
    match state.store.start_redrive(&job).await? {
        StartResult::Started => {}
        StartResult::Busy(running) => {
            return Err(ApiError::conflict(format!(
                "A redrive job of this subscription is running (job {}); cancel it or wait for it to finish",
                running.job_id
            )));
        }
        StartResult::SubscriptionNotActive(None) => return Err(ApiError::subscription_not_found()),
        StartResult::SubscriptionNotActive(Some(s)) => {
            return Err(ApiError::conflict(format!(
                "The subscription is {s}; only deliveries of active subscriptions can be retried"
            )));
        }
    }
    tracing::info!(subscription_id = %id, admin = %admin.id, job_id = %job.job_id, pace,
        "redrive job started by an administrator");
    Ok(HttpResponse::Accepted().json(JobView::new(&job)))
}

/// Counts what a job with `filter` would queue now, without writing anything.
async fn dry_run(
    state: &AppState,
    id: delivery_model::ids::SubscriptionId,
    filter: &RedriveFilter,
    pace: u32,
) -> ApiResult<HttpResponse> {
    let mut out = DryRun {
        dry_run: true,
        matched: 0,
        scanned: 0,
        complete: false,
        pace,
        sample: Vec::new(),
    };
    let mut cursor = None;
    while out.scanned < DRY_RUN_MAX_SCAN {
        let page = state
            .store
            .redrive_scan(id, filter, cursor.as_ref(), 1000, 1000)
            .await?;
        out.scanned += page.scanned;
        out.matched += page.matched.len() as u64;
        let room = SAMPLE.saturating_sub(out.sample.len());
        out.sample
            .extend(page.matched.iter().take(room).map(SampleItem::new));
        cursor = page.cursor;
        if page.exhausted {
            out.complete = true;
            break;
        }
    }
    Ok(HttpResponse::Ok().json(out))
}

/// `GET /admin/webhooks/subscriptions/{webhook_id}/redrive`
pub async fn get_redrive(
    WebhookIdPath(id): WebhookIdPath,
    _admin: Admin,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    match state.store.get_redrive(id).await? {
        Some(job) => Ok(HttpResponse::Ok().json(JobView::new(&job))),
        None => Err(no_job()),
    }
}

/// `DELETE /admin/webhooks/subscriptions/{webhook_id}/redrive`: cancels the running job.
pub async fn cancel_redrive(
    WebhookIdPath(id): WebhookIdPath,
    Admin(admin): Admin,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    match state.store.cancel_redrive(id, now_micros()).await? {
        CancelResult::Cancelled(job) => {
            tracing::info!(subscription_id = %id, admin = %admin.id, job_id = %job.job_id,
                "redrive job cancelled by an administrator");
            Ok(HttpResponse::Ok().json(JobView::new(&job)))
        }
        CancelResult::Finished(job) => Err(ApiError::conflict(format!(
            "The redrive job is {}; nothing to cancel",
            job.state.as_str()
        ))),
        CancelResult::Missing => Err(no_job()),
    }
}

fn no_job() -> ApiError {
    ApiError::not_found("No redrive job for this subscription")
}
