//! FIFO lanes at the API (issue #18, `docs/flow.md` §2).
//!
//! - A create may ask for ordered delivery with three flat fields of `WebhookSubscriptionInput`, read by
//!   [`ordering_from_input`]: `ordering` (`none`, the default; `subscription`, one lane; `key`, one lane per
//!   value of the envelope field named by `ordering_key`) and `lane_on_failure` (`skip`, the default, or
//!   `block`). They are chosen at create only.
//! - `POST /admin/webhooks/subscriptions/{webhook_id}/lanes/skip` ([`skip_lane`]): an administrator moves a
//!   lane that blocks on failure past its failed head; the head stays `failed` and the lane's next delivery is
//!   queued. The lane is the subscription's single lane, or the one of `key`'s value.

use actix_web::{HttpResponse, web};
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::lane::{LaneId, LaneOnFailure, Ordering, OrderingKey};
use delivery_model::store::LaneSkip;
use serde::{Deserialize, Serialize};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, sanitize_description};
use crate::extract::{OptionalJsonBody, WebhookIdPath};
use crate::routes::subscriptions::{check_text, load};
use crate::state::AppState;

/// `ordering` values.
const UNORDERED: &str = "none";
const BY_SUBSCRIPTION: &str = "subscription";
const BY_KEY: &str = "key";

/// Longest ordering key value accepted by the skip route, in characters (TMI's bound on event strings).
pub const MAX_KEY_CHARS: usize = 1000;

/// `Error at "/<field>": value "<v>" is not one of the allowed values (<allowed>)`.
fn not_allowed(field: &str, v: &str, allowed: &str) -> ApiError {
    ApiError::invalid_input(format!(
        "Error at \"/{field}\": value {:?} is not one of the allowed values ({allowed})",
        sanitize_description(v)
    ))
}

/// The ordered delivery a create asks for: `None` for `ordering` absent or `none`.
///
/// # Errors
/// 400 `invalid_input` for an unknown value, `ordering_key` missing with `ordering = key` or given with any
/// other ordering, and `lane_on_failure` given to an unordered subscription.
pub fn ordering_from_input(
    ordering: Option<&str>,
    ordering_key: Option<&str>,
    lane_on_failure: Option<&str>,
) -> ApiResult<Option<Ordering>> {
    let mode = ordering.unwrap_or(UNORDERED);
    if ![UNORDERED, BY_SUBSCRIPTION, BY_KEY].contains(&mode) {
        return Err(not_allowed("ordering", mode, "none, subscription, key"));
    }
    let key = match (mode, ordering_key) {
        (BY_KEY, None) => {
            return Err(ApiError::invalid_input(
                "Error at \"/ordering_key\": required when ordering is key",
            ));
        }
        (BY_KEY, Some(k)) => Some(k.parse::<OrderingKey>().map_err(|_| {
            let allowed = OrderingKey::ALL.map(OrderingKey::as_str).join(", ");
            not_allowed("ordering_key", k, &allowed)
        })?),
        (_, Some(_)) => {
            return Err(ApiError::invalid_input(
                "Error at \"/ordering_key\": only allowed when ordering is key",
            ));
        }
        (_, None) => None,
    };
    if mode == UNORDERED {
        return match lane_on_failure {
            None => Ok(None),
            Some(_) => Err(ApiError::invalid_input(
                "Error at \"/lane_on_failure\": only allowed when ordering is subscription or key",
            )),
        };
    }
    let on_failure = match lane_on_failure {
        None => LaneOnFailure::default(),
        Some(v) => v
            .parse()
            .map_err(|_| not_allowed("lane_on_failure", v, "skip, block"))?,
    };
    Ok(Some(Ordering { key, on_failure }))
}

/// `SkipLaneRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipLaneRequest {
    /// The ordering key's value naming the lane (`ordering = key`); absent or null for `ordering =
    /// subscription`, whose single lane it is.
    #[serde(default)]
    pub key: Option<String>,
}

/// `SkipLaneResponse`.
#[derive(Debug, Serialize)]
struct LaneSkipped<'a> {
    /// The failed head that left the lane (it stays `failed`).
    skipped_delivery_id: DeliveryId,
    subscription_id: SubscriptionId,
    key: Option<&'a str>,
}

/// The lane `key` names in a subscription ordered by `ordering`.
///
/// # Errors
/// 400 `invalid_input` for a key given to a subscription with one lane, or missing for one ordered by key.
fn lane_of(sub: SubscriptionId, ordering: &Ordering, key: Option<&str>) -> ApiResult<LaneId> {
    match (ordering.key, key) {
        (None, None) => Ok(LaneId::new(sub, None)),
        (None, Some(_)) => Err(ApiError::invalid_input(
            "Error at \"/key\": the subscription is ordered per subscription and has a single lane; leave key out",
        )),
        (Some(field), None) => Err(ApiError::invalid_input(format!(
            "Error at \"/key\": required: the subscription is ordered by {}; give the value of the lane to skip",
            field.as_str()
        ))),
        (Some(_), Some(v)) => Ok(LaneId::new(sub, Some(v))),
    }
}

/// The 409 sentence for a lane whose delivery out (`head`) has not failed, or that has none out yet.
fn not_failed(head: Option<DeliveryId>, status: &str) -> String {
    const ONLY: &str = "only a failed head of a lane that blocks on failure can be skipped";
    match head {
        Some(head) => format!("The lane's head, delivery {head}, is {status}: {ONLY}"),
        None => format!(
            "The lane's first delivery is not sent yet (it waits until every earlier event is fanned out): {ONLY}"
        ),
    }
}

/// `POST /admin/webhooks/subscriptions/{webhook_id}/lanes/skip`
pub async fn skip_lane(
    WebhookIdPath(id): WebhookIdPath,
    Admin(admin): Admin,
    state: web::Data<AppState>,
    OptionalJsonBody(body): OptionalJsonBody<SkipLaneRequest>,
) -> ApiResult<HttpResponse> {
    let key = body.unwrap_or_default().key;
    if let Some(k) = &key {
        check_text("key", k, 0, MAX_KEY_CHARS)?;
    }
    let sub = load(&state, id).await?;
    let Some(ordering) = sub.ordering else {
        return Err(ApiError::conflict(
            "The subscription is not ordered; it has no lanes",
        ));
    };
    let lane = lane_of(sub.id, &ordering, key.as_deref())?;
    match state.store.skip_lane(&lane).await? {
        LaneSkip::Empty => Err(ApiError::conflict(
            "The lane holds no delivery; nothing to skip",
        )),
        LaneSkip::NotFailed { head, status } => Err(ApiError::conflict(not_failed(head, &status))),
        LaneSkip::Skipped { head } => {
            tracing::info!(subscription.id = %id, delivery.id = %head, lane = %lane, admin = %admin.id,
                "failed head of a FIFO lane skipped by an administrator");
            Ok(HttpResponse::Ok().json(LaneSkipped {
                skipped_delivery_id: head,
                subscription_id: id,
                key: key.as_deref(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description(r: ApiResult<Option<Ordering>>) -> String {
        match r {
            Err(ApiError::BadRequest {
                code: "invalid_input",
                description,
            }) => description,
            other => panic!("expected 400 invalid_input, got {other:?}"),
        }
    }

    #[test]
    fn ordering_fields_combine_as_documented() {
        let ok = |o, k, f| ordering_from_input(o, k, f).ok().flatten();
        assert_eq!(ordering_from_input(None, None, None).ok(), Some(None));
        assert_eq!(
            ordering_from_input(Some("none"), None, None).ok(),
            Some(None)
        );
        assert_eq!(
            ok(Some("subscription"), None, None),
            Some(Ordering {
                key: None,
                on_failure: LaneOnFailure::Skip
            })
        );
        assert_eq!(
            ok(Some("key"), Some("owner_id"), Some("block")),
            Some(Ordering {
                key: Some(OrderingKey::OwnerId),
                on_failure: LaneOnFailure::Block
            })
        );
        assert_eq!(
            description(ordering_from_input(Some("fifo\n"), None, None)),
            "Error at \"/ordering\": value \"fifo \" is not one of the allowed values (none, subscription, key)"
        );
        assert_eq!(
            description(ordering_from_input(Some("key"), Some("name"), None)),
            "Error at \"/ordering_key\": value \"name\" is not one of the allowed values (threat_model_id, object_id, object_type, owner_id)"
        );
        assert!(description(ordering_from_input(Some("key"), None, None)).contains("required"));
        for o in [None, Some("none"), Some("subscription")] {
            assert!(description(ordering_from_input(o, Some("object_id"), None)).contains("only"));
        }
        assert!(description(ordering_from_input(None, None, Some("skip"))).contains("only"));
        assert!(
            description(ordering_from_input(
                Some("subscription"),
                None,
                Some("wait")
            ))
            .contains("(skip, block)")
        );
    }

    #[test]
    fn a_lane_is_named_by_key_only_when_ordered_by_key() {
        let sub = SubscriptionId::new_v4();
        let one = Ordering {
            key: None,
            on_failure: LaneOnFailure::Block,
        };
        let by_key = Ordering {
            key: Some(OrderingKey::ObjectId),
            ..one
        };
        assert_eq!(lane_of(sub, &one, None).ok(), Some(LaneId::new(sub, None)));
        assert!(lane_of(sub, &one, Some("")).is_err());
        assert_eq!(
            lane_of(sub, &by_key, Some("")).ok(),
            Some(LaneId::new(sub, Some("")))
        );
        assert!(lane_of(sub, &by_key, None).is_err());
    }

    #[test]
    fn a_lane_with_nothing_out_says_so() {
        let id = DeliveryId::new_v7();
        assert!(not_failed(Some(id), "pending").starts_with(&format!(
            "The lane's head, delivery {id}, is pending: only a failed head"
        )));
        assert!(
            not_failed(None, "waiting").starts_with("The lane's first delivery is not sent yet")
        );
    }
}
