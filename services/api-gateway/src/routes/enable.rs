//! `POST /admin/webhooks/subscriptions/{webhook_id}/enable` (Hookline addition, issue #18): the way back
//! from endpoint health's disable.
//!
//! The delivery-worker disables a subscription whose receiver answered `410 Gone`, or that failed
//! `worker.disable_after_failures` times in a row with no success for `worker.disable_after_failing_for_secs`:
//! it becomes `inactive` with `disabled_reason` and `disabled_at`, and its pending deliveries fail. This
//! route makes it `active` again (its `publication_failures` reset), and with `{"requeue_failed": true}`
//! queues again the deliveries that failed at or after the disable (the one that caused it included), at
//! most 1000 per call, each as `POST /admin/webhooks/deliveries/{id}/retry` does. 409 for a subscription the
//! worker did not disable (an operator-pinned `inactive` sink included).

use actix_web::{HttpResponse, web};
use delivery_model::store::EnableResult;
use delivery_model::store::retries::RetrySummary;
use delivery_model::time::now_micros;
use serde::{Deserialize, Serialize};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::extract::{OptionalJsonBody, WebhookIdPath};
use crate::routes::deliveries::MAX_RETRY_FAILED;
use crate::routes::subscriptions::{SubscriptionView, load};
use crate::state::AppState;

/// `EnableSubscriptionRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnableRequest {
    /// Queue again the deliveries the disable failed.
    #[serde(default)]
    pub requeue_failed: bool,
}

/// `EnableSubscriptionResponse`.
#[derive(Serialize)]
struct Enabled<'a> {
    subscription: SubscriptionView<'a>,
    /// Deliveries queued again (0 without `requeue_failed`).
    requeued: u64,
    /// Whether more deliveries failed by the disable remain failed (more than 1000): retry them with
    /// `retry-failed`.
    more: bool,
}

/// `POST /admin/webhooks/subscriptions/{webhook_id}/enable`
pub async fn enable_subscription(
    WebhookIdPath(id): WebhookIdPath,
    Admin(admin): Admin,
    state: web::Data<AppState>,
    OptionalJsonBody(body): OptionalJsonBody<EnableRequest>,
) -> ApiResult<HttpResponse> {
    let requeue = body.unwrap_or_default().requeue_failed;
    let now = now_micros();
    let disabled_at = match state.store.enable_subscription(id, now).await? {
        EnableResult::Enabled { disabled_at } => disabled_at,
        EnableResult::Missing => return Err(ApiError::subscription_not_found()),
        EnableResult::NotDisabled(status) => {
            return Err(ApiError::conflict(format!(
                "The subscription is {status} and was not disabled by the delivery-worker; nothing to enable"
            )));
        }
    };
    let summary = if requeue {
        state
            .store
            .requeue_disabled(id, disabled_at, MAX_RETRY_FAILED, now)
            .await?
    } else {
        RetrySummary::default()
    };
    state.metrics.deliveries_retried.inc_by(summary.queued);
    tracing::info!(subscription_id = %id, admin = %admin.id, requeued = summary.queued,
        more = summary.more, "disabled subscription enabled by an administrator");
    let sub = load(&state, id).await?;
    Ok(HttpResponse::Ok().json(Enabled {
        subscription: SubscriptionView::new(&sub, false),
        requeued: summary.queued,
        more: summary.more,
    }))
}
