//! `POST /admin/webhooks/subscriptions/{webhook_id}/rotate-secret` (Hookline addition, issue #17): secret
//! rotation without downtime.
//!
//! A new secret (in the subscription's scheme: 64 hex characters for `tmi`, `whsec_` for `standard`)
//! becomes current at once and is shown in this answer only. The replaced secret stays live for the grace
//! period (default 24 h, at most 7 days, 0 = none): every delivery is signed with both, and callbacks and
//! HMAC reads accept either, so the receiver can switch whenever it is ready. A second rotation drops the
//! older secret. The Ed25519 key of a `standard` subscription is not rotated here.

use actix_web::{HttpResponse, web};
use delivery_model::signing::standard;
use delivery_model::store::Rotation;
use delivery_model::subscription::SignatureScheme;
use delivery_model::time::now_micros;
use serde::Deserialize;

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::extract::{OptionalJsonBody, WebhookIdPath};
use crate::routes::subscriptions::{SubscriptionView, load, random_hex};
use crate::state::AppState;

/// Grace period when the request names none: 24 hours (what Svix and Standard Webhooks' guidance use).
pub const DEFAULT_GRACE_SECS: i64 = 24 * 3600;
/// Longest grace period: 7 days.
pub const MAX_GRACE_SECS: i64 = 7 * 24 * 3600;

/// `RotateSecretRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    #[serde(default)]
    pub grace_period_seconds: Option<i64>,
}

impl RotateRequest {
    /// The grace period in seconds.
    ///
    /// # Errors
    /// 400 `invalid_input` outside 0..=604800.
    pub fn grace_secs(&self) -> ApiResult<i64> {
        let secs = self.grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECS);
        if !(0..=MAX_GRACE_SECS).contains(&secs) {
            return Err(ApiError::invalid_input(format!(
                "Error at \"/grace_period_seconds\": must be between 0 and {MAX_GRACE_SECS}"
            )));
        }
        Ok(secs)
    }
}

/// A fresh secret in `scheme`'s form.
fn new_secret(scheme: SignatureScheme) -> ApiResult<String> {
    match scheme {
        SignatureScheme::Tmi => Ok(random_hex()),
        SignatureScheme::Standard => standard::generate_secret()
            .map_err(|e| ApiError::Internal(format!("generating a secret: {e}"))),
    }
}

/// `POST /admin/webhooks/subscriptions/{webhook_id}/rotate-secret`
pub async fn rotate_secret(
    WebhookIdPath(id): WebhookIdPath,
    _admin: Admin,
    state: web::Data<AppState>,
    OptionalJsonBody(body): OptionalJsonBody<RotateRequest>,
) -> ApiResult<HttpResponse> {
    let grace = body.unwrap_or_default().grace_secs()?;
    let sub = load(&state, id).await?;
    if sub.operator_pinned {
        return Err(ApiError::subscription_pinned());
    }
    let secret = new_secret(sub.signature_scheme)?;
    let now = now_micros();
    let until = (grace > 0).then(|| now + grace * 1_000_000);
    match state.store.rotate_secret(id, &secret, until, now).await? {
        Rotation::Rotated { .. } => {}
        Rotation::Missing => return Err(ApiError::subscription_not_found()),
        Rotation::Unsigned => {
            return Err(ApiError::conflict(
                "Subscription has no secret to rotate (its deliveries are unsigned)",
            ));
        }
        Rotation::Raced => {
            return Err(ApiError::conflict(
                "The secret was rotated concurrently; read the subscription and retry",
            ));
        }
    }
    tracing::info!(subscription.id = %id, grace_period_secs = grace, "subscription secret rotated");
    let rotated = load(&state, id).await?;
    Ok(HttpResponse::Ok().json(SubscriptionView::new(&rotated, true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_period_bounds() {
        let g = |v: Option<i64>| {
            RotateRequest {
                grace_period_seconds: v,
            }
            .grace_secs()
            .ok()
        };
        assert_eq!(g(None), Some(DEFAULT_GRACE_SECS));
        assert_eq!(g(Some(0)), Some(0));
        assert_eq!(g(Some(MAX_GRACE_SECS)), Some(MAX_GRACE_SECS));
        assert_eq!(g(Some(MAX_GRACE_SECS + 1)), None);
        assert_eq!(g(Some(-1)), None);
    }
}
