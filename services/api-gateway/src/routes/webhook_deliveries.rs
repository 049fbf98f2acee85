//! `/webhook-deliveries/{delivery_id}[/status]`: what receivers (and invokers) call about one delivery.
//!
//! - `POST …/status`: a receiver that answered `X-TMI-Callback: async` reports progress and the outcome.
//!   No bearer token: the body must carry `X-Webhook-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact
//!   body bytes under the subscription's secret, checked in constant time. `completed` becomes `delivered`
//!   (100 %), `failed` `failed`, `in_progress` stays in progress with the reported percent and message. The
//!   update is a compare-and-set in the store: terminal deliveries answer 409, and a `completed` that
//!   overtakes the worker's own write of the 2xx answer stays `delivered`.
//! - `GET`: dual authentication. With `X-Webhook-Signature` the signature is over the delivery id exactly as
//!   written in the path (the receiver's own read); otherwise a bearer token of an administrator, the
//!   subscription's owner or the add-on's invoker (TMI intends this, but its server never parses the token
//!   on this public path and always answers 401).
//!
//! During a secret rotation's grace period either live secret is accepted (callbacks and HMAC reads), and
//! only the new one after it.
//!
//! Compared with TMI: a missing signature is 401 (TMI's schema layer answers 400 first); a subscription
//! without a secret refuses callbacks with 401 "Webhook secret not configured" (TMI then skips the check, so
//! anyone could forge an outcome); a delivery whose subscription is gone answers 401 "Failed to verify
//! delivery" (TMI: 500); a bearer-token read authenticates before looking the delivery up, so an unknown id
//! answers 401, not 404, without credentials; with a signature (read or callback) an unknown id answers 401
//! "Invalid webhook signature" like a wrong signature (TMI: 404), and a callback without a signature is 401
//! before any lookup, so nobody without the secret or a token learns whether an id exists. 404 remains for
//! an authenticated caller (a bearer token, or a callback whose record expired after it was verified).

use actix_web::http::header::HeaderMap;
use actix_web::{HttpRequest, HttpResponse, web};
use delivery_model::delivery::{DeliveryRecord, DeliveryStatus};
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::stats::{Counted, OutcomeSample};
use delivery_model::store::callbacks::{CallbackResult, CallbackUpdate};
use delivery_model::subscription::Subscription;
use delivery_model::time::{Micros, format_micros, now_micros};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::error::{ApiError, ApiResult};
use crate::extract::{DELIVERY_ID_PARAM, DeliveryIdPath, JsonBytes, decode};
use crate::routes::deliveries::DeliveryView;
use crate::state::AppState;

/// Counts a callback that ended its delivery in the console's statistics (best effort: a Redis error is
/// logged, the callback's answer stands).
async fn record_final_outcome(
    state: &AppState,
    subscription: SubscriptionId,
    status: DeliveryStatus,
    now: Micros,
) {
    let counted = match status {
        DeliveryStatus::Delivered => Counted::Delivered,
        DeliveryStatus::Failed => Counted::Failed,
        DeliveryStatus::Pending | DeliveryStatus::InProgress => return,
    };
    let sample = OutcomeSample {
        subscription,
        counted,
        duration_ms: None,
    };
    if let Err(e) = state.store.record_stats(&[sample], now / 1_000_000).await {
        tracing::warn!(error = %e, "delivery statistics not recorded for a callback");
    }
}

/// The signature header (TMI's name).
pub const SIGNATURE_HEADER: &str = "x-webhook-signature";
/// Longest `status_message`, bytes (TMI measures bytes).
const MAX_STATUS_MESSAGE_BYTES: usize = 1024;

/// `UpdateWebhookDeliveryStatusRequest`. Kept loosely typed so each rule answers with TMI's own sentence.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusUpdateRequest {
    pub status: String,
    #[serde(default)]
    pub status_percent: Option<i64>,
    #[serde(default)]
    pub status_message: Option<String>,
}

impl StatusUpdateRequest {
    /// TMI's rules; `completed` is the internal `delivered`.
    fn validate(self) -> ApiResult<CallbackUpdate> {
        let status = match self.status.as_str() {
            "in_progress" => DeliveryStatus::InProgress,
            "completed" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            _ => {
                return Err(ApiError::invalid_input(
                    "Invalid status. Must be: in_progress, completed, or failed",
                ));
            }
        };
        let percent = match self.status_percent {
            None => None,
            Some(p) => Some(u8::try_from(p).ok().filter(|p| *p <= 100).ok_or_else(|| {
                ApiError::invalid_input("Status percent must be between 0 and 100")
            })?),
        };
        if self
            .status_message
            .as_ref()
            .is_some_and(|m| m.len() > MAX_STATUS_MESSAGE_BYTES)
        {
            return Err(ApiError::invalid_input(
                "Status message exceeds maximum length of 1024 characters",
            ));
        }
        Ok(CallbackUpdate {
            status,
            percent,
            message: self.status_message,
        })
    }
}

/// `UpdateWebhookDeliveryStatusResponse` (keys in Go's order).
#[derive(Serialize)]
struct StatusUpdateResponse {
    id: DeliveryId,
    status: DeliveryStatus,
    status_percent: u8,
    status_updated_at: String,
}

fn record_not_found() -> ApiError {
    ApiError::not_found("Delivery record not found or expired")
}

use crate::receiver_auth::{self, invalid_signature};

/// The signature a receiver's request carries (`X-Webhook-Signature`, or Standard Webhooks'
/// `webhook-signature`), when present and not blank.
fn signature(headers: &HeaderMap) -> Option<&str> {
    receiver_auth::presented(headers)
}

/// The subscription whose secret signs this delivery's callbacks, and its live secrets: the current one,
/// and during a rotation's grace period the previous one too (a receiver switches when it is ready).
async fn signing_secrets(
    state: &AppState,
    record: &DeliveryRecord,
) -> ApiResult<(Subscription, Vec<String>)> {
    let sub = state
        .store
        .get_subscription(record.subscription_id)
        .await?
        .ok_or_else(|| ApiError::signature_rejected("Failed to verify delivery"))?;
    // Unsigned callbacks could be forged by anyone who learns a delivery id: refuse rather than skip.
    let secrets: Vec<String> = sub
        .live_secrets(now_micros())
        .into_iter()
        .map(str::to_owned)
        .collect();
    if secrets.is_empty() {
        return Err(ApiError::signature_rejected(
            "Webhook secret not configured",
        ));
    }
    Ok((sub, secrets))
}

/// `POST /webhook-deliveries/{delivery_id}/status`
pub async fn update_delivery_status(
    DeliveryIdPath(id): DeliveryIdPath,
    state: web::Data<AppState>,
    req: HttpRequest,
    JsonBytes(body): JsonBytes,
) -> ApiResult<HttpResponse> {
    let update = decode::<StatusUpdateRequest>(&body)?.validate()?;
    let count = |outcome: &str| {
        state
            .metrics
            .delivery_callbacks
            .with_label_values(&[outcome])
            .inc();
    };
    // Authentication comes before the lookup: an unknown id answers exactly like a wrong signature, so
    // only the holder of the secret learns whether a delivery exists.
    let verified = match (
        signature(req.headers()),
        state.store.get_delivery(id).await?,
    ) {
        (None, _) => Err(ApiError::signature_rejected("Missing webhook signature")),
        (Some(_), None) => Err(invalid_signature()),
        (Some(_), Some(record)) => match signing_secrets(&state, &record).await {
            Ok((sub, secrets)) => {
                let id = record.id.to_string();
                receiver_auth::verify(&state, &sub, &secrets, req.headers(), &id, &body)
                    .await
                    .map(|()| record)
            }
            Err(e) => Err(e),
        },
    };
    let record = match verified {
        Ok(record) => record,
        Err(e) => {
            count("unauthorized");
            tracing::warn!(delivery.id = %id, reason = %e, "delivery status callback refused");
            return Err(e);
        }
    };
    let now = now_micros();
    // The callback joins its delivery's trace (the request's own span stays in the caller's trace, if any).
    let span = tracing::info_span!(
        "delivery.status_callback",
        delivery.id = %id,
        callback.status = %update.status,
    );
    service_common::trace::set_parent(&span, record.trace.as_ref());
    let request = service_common::trace::context_of(&tracing::Span::current());
    service_common::trace::add_link(&span, request.as_ref());
    let applied = state
        .store
        .apply_callback(id, record.subscription_id, &update, now)
        .instrument(span)
        .await?;
    match applied {
        CallbackResult::Updated { status, percent } => {
            count(status.as_str());
            record_final_outcome(&state, record.subscription_id, status, now).await;
            if status == DeliveryStatus::Delivered {
                let slo = service_common::ops::since_event(id, now / 1000);
                state.metrics.event_to_delivered.observe(slo);
            }
            tracing::info!(delivery.id = %id, delivery.status = %status, status_percent = percent, "delivery status updated by callback");
            Ok(HttpResponse::Ok().json(StatusUpdateResponse {
                id,
                status,
                status_percent: percent,
                status_updated_at: format_micros(now),
            }))
        }
        CallbackResult::Terminal(status) => {
            count("conflict");
            tracing::info!(delivery.id = %id, delivery.status = %status, "callback on a terminal delivery refused");
            Err(ApiError::conflict(
                "Cannot update delivery that is already delivered or failed",
            ))
        }
        CallbackResult::Missing => {
            count("not_found");
            Err(record_not_found())
        }
    }
}

/// `GET /webhook-deliveries/{delivery_id}`
pub async fn get_delivery_status(
    DeliveryIdPath(id): DeliveryIdPath,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let (record, sub, admin) = match signature(req.headers()) {
        // HMAC mode whenever the header is present, even next to a bearer token (TMI's rule).
        Some(_) => {
            // Unknown id: the same 401 as a wrong signature (no existence oracle without the secret).
            let record = state
                .store
                .get_delivery(id)
                .await?
                .ok_or_else(invalid_signature)?;
            let (sub, secrets) = signing_secrets(&state, &record).await?;
            // The message is the id exactly as the caller wrote it in the path.
            let path_id = req.match_info().get(DELIVERY_ID_PARAM).unwrap_or_default();
            receiver_auth::verify(
                &state,
                &sub,
                &secrets,
                req.headers(),
                path_id,
                path_id.as_bytes(),
            )
            .await?;
            (record, Some(sub), false)
        }
        None => {
            let caller = crate::extract::authenticate(&state, req.headers()).await?;
            let record = state
                .store
                .get_delivery(id)
                .await?
                .ok_or_else(record_not_found)?;
            let sub = state.store.get_subscription(record.subscription_id).await?;
            let invoker = record
                .invoked_by
                .as_ref()
                .is_some_and(|i| i.uuid == caller.id);
            let owner = sub.as_ref().is_some_and(|s| s.owner_id == caller.id);
            if !(caller.admin || invoker || owner) {
                return Err(ApiError::Forbidden {
                    description: "Access denied".into(),
                });
            }
            (record, sub, caller.admin)
        }
    };
    let pinned = sub.is_some_and(|s| s.operator_pinned);
    let view = DeliveryView::new(&record, pinned);
    // `last_error` may name the internal address a refused target resolved to: only admins see it.
    let view = if admin {
        view
    } else {
        view.map_last_error(hide_ip_addresses)
    };
    Ok(HttpResponse::Ok().json(view))
}

/// What replaces an IP address in `last_error` for a reader who is not an administrator.
pub const HIDDEN_ADDRESS: &str = "[address hidden]";

/// Replaces every IPv4 or IPv6 address in `s` with [`HIDDEN_ADDRESS`]. A refused target's error names the
/// internal address its host resolved to (`… resolves to 10.1.2.3, a private address`), which tells an
/// outsider how the internal network is laid out; connect errors can carry an address too.
pub fn hide_ip_addresses(s: &str) -> String {
    let is_ip_char = |c: char| c.is_ascii_hexdigit() || c == '.' || c == ':';
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find(is_ip_char) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let len = tail.find(|c: char| !is_ip_char(c)).unwrap_or(tail.len());
        let run = &tail[..len];
        // A sentence's full stop, or a `:port`, may follow an address.
        let candidate = run.trim_end_matches(['.', ':']);
        // `a.b.c.d:port`: the address is what comes before the colon (IPv6 has no dots before one).
        let addr = match candidate.rsplit_once(':') {
            Some((a, p)) if a.contains('.') && p.bytes().all(|b| b.is_ascii_digit()) => a,
            _ => candidate,
        };
        if addr.parse::<std::net::IpAddr>().is_ok() {
            out.push_str(HIDDEN_ADDRESS);
            out.push_str(&run[addr.len()..]);
        } else {
            out.push_str(run);
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(status: &str, percent: Option<i64>, message: Option<String>) -> StatusUpdateRequest {
        StatusUpdateRequest {
            status: status.into(),
            status_percent: percent,
            status_message: message,
        }
    }

    fn description(r: ApiResult<CallbackUpdate>) -> String {
        match r {
            Err(ApiError::BadRequest { description, .. }) => description,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn callback_statuses_map_to_internal_ones() {
        let u = req("completed", Some(40), None)
            .validate()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            u,
            CallbackUpdate {
                status: DeliveryStatus::Delivered,
                percent: Some(40),
                message: None
            }
        );
        let u = req("in_progress", None, Some(String::new()))
            .validate()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.status, DeliveryStatus::InProgress);
        assert_eq!(u.message.as_deref(), Some(""));
        assert_eq!(
            req("failed", Some(0), None)
                .validate()
                .ok()
                .map(|u| u.status),
            Some(DeliveryStatus::Failed)
        );
    }

    #[test]
    fn callback_rules_use_tmi_sentences() {
        for s in ["delivered", "pending", "Completed", ""] {
            assert_eq!(
                description(req(s, None, None).validate()),
                "Invalid status. Must be: in_progress, completed, or failed"
            );
        }
        for p in [-1, 101, 1000] {
            assert_eq!(
                description(req("in_progress", Some(p), None).validate()),
                "Status percent must be between 0 and 100"
            );
        }
        // Bytes, not characters: 512 two-byte characters fit, 513 do not.
        assert!(
            req("in_progress", None, Some("é".repeat(512)))
                .validate()
                .is_ok()
        );
        assert_eq!(
            description(req("in_progress", None, Some("é".repeat(513))).validate()),
            "Status message exceeds maximum length of 1024 characters"
        );
    }

    #[test]
    fn ip_addresses_are_hidden() {
        assert_eq!(
            hide_ip_addresses(
                "destination refused: hooks.example.com resolves to 10.1.2.3, a private address"
            ),
            "destination refused: hooks.example.com resolves to [address hidden], a private address"
        );
        assert_eq!(
            hide_ip_addresses("connect to 192.168.0.9:8443 failed; fd00:ec2::254 refused."),
            "connect to [address hidden]:8443 failed; [address hidden] refused."
        );
        for kept in [
            "HTTP 500: boom",
            "timed out after 30 s",
            "deadbeef cafe 1.2.3",
        ] {
            assert_eq!(hide_ip_addresses(kept), kept);
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(decode::<StatusUpdateRequest>(br#"{"status":"completed","extra":1}"#).is_err());
        assert!(decode::<StatusUpdateRequest>(br#"{"status_percent":5}"#).is_err());
        assert!(
            decode::<StatusUpdateRequest>(br#"{"status":"completed","status_percent":5.5}"#)
                .is_err()
        );
    }
}
