//! `/admin/webhooks/subscriptions[/{webhook_id}[/test]]`: TMI's subscription endpoints (admin only).
//!
//! A create runs TMI's three layers in order: the input schema ([`SubscriptionInput::validate`]), then the
//! handler checks and the URL policy ([`crate::url_policy`]). The new subscription awaits verification;
//! the store enqueues its first challenge in the same step, so the delivery-worker sends it at once.
//! The secret is shown only in the 201 answer of the create. Creates are subject to the owner's quota
//! ([`crate::routes::quotas`]): subscription count, successful creates per minute and per day.

use actix_web::{HttpRequest, HttpResponse, web};
use delivery_model::ids::SubscriptionId;
use delivery_model::lane::{Ordering, OrderingKey};
use delivery_model::signing::standard;
use delivery_model::store::Secret;
use delivery_model::subscription::{
    DisabledReason, RateLimit, SignatureScheme, Subscription, SubscriptionStatus,
};
use delivery_model::time::{format_micros, now_micros};
use serde::{Deserialize, Serialize};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, WebhookIdPath, parse_uuid};
use crate::middleware::RequestTrace;
use crate::routes::limits::{LimitsInput, RateLimitInput};
use crate::routes::{ListQuery, lanes, quotas};
use crate::state::AppState;
use delivery_model::store::quotas::QuotaCreate;

/// Shown instead of the URL of operator-pinned subscriptions.
pub const PINNED_URL: &str = "(operator-pinned)";
/// Random bytes in a generated secret or challenge (hex-encoded: 64 characters).
const TOKEN_BYTES: usize = 32;

/// `WebhookSubscriptionInput`.
/// `Debug` is by hand: the secret is redacted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionInput {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub threat_model_id: Option<String>,
    /// Hookline addition: `tmi` (absent) or `standard`. A string, so that an unknown value gets TMI's
    /// sentence rather than the JSON decoder's.
    #[serde(default)]
    pub signature_scheme: Option<String>,
    /// Hookline addition: callbacks and HMAC reads must be timestamped (replay protection).
    #[serde(default)]
    pub timestamped_callbacks: Option<bool>,
    /// Hookline addition, `tmi` only: deliveries also carry `X-Webhook-Timestamp` and a signature over it.
    #[serde(default)]
    pub timestamp_header: Option<bool>,
    /// Hookline addition (issue #18): per-subscription limits, see [`crate::routes::limits`].
    #[serde(default)]
    pub rate_limit: Option<RateLimitInput>,
    #[serde(default)]
    pub max_in_flight: Option<i64>,
    /// Hookline additions (issue #18): FIFO lanes, see [`crate::routes::lanes`]. Strings, for our sentences.
    #[serde(default)]
    pub ordering: Option<String>,
    #[serde(default)]
    pub ordering_key: Option<String>,
    #[serde(default)]
    pub lane_on_failure: Option<String>,
}

impl std::fmt::Debug for SubscriptionInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionInput")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("threat_model_id", &self.threat_model_id)
            .field("signature_scheme", &self.signature_scheme)
            .field("timestamped_callbacks", &self.timestamped_callbacks)
            .field("timestamp_header", &self.timestamp_header)
            .field("rate_limit", &self.rate_limit)
            .field("max_in_flight", &self.max_in_flight)
            .field("ordering", &self.ordering)
            .field("ordering_key", &self.ordering_key)
            .field("lane_on_failure", &self.lane_on_failure)
            .finish()
    }
}

fn has_control_chars(s: &str) -> bool {
    s.chars().any(|c| u32::from(c) < 0x20)
}

/// Checks a string against TMI's length bounds (in characters) and "no control characters" pattern.
pub(crate) fn check_text(field: &str, v: &str, min: usize, max: usize) -> ApiResult<()> {
    let n = v.chars().count();
    if n < min {
        return Err(ApiError::invalid_input(format!(
            "Error at \"/{field}\": minimum string length is {min}"
        )));
    }
    if n > max {
        return Err(ApiError::invalid_input(format!(
            "Error at \"/{field}\": maximum string length is {max}"
        )));
    }
    if has_control_chars(v) {
        // TMI answers `invalid_id` for any pattern or format failure.
        return Err(ApiError::invalid_format(format!(
            "Error at \"/{field}\": string doesn't match the regular expression pattern (no control characters)"
        )));
    }
    Ok(())
}

impl SubscriptionInput {
    /// The signature scheme asked for: `tmi` when absent.
    ///
    /// # Errors
    /// 400 `invalid_input` for a value that is not a scheme.
    pub fn scheme(&self) -> ApiResult<SignatureScheme> {
        let scheme = match self.signature_scheme.as_deref() {
            None => SignatureScheme::Tmi,
            Some(s) => s.parse().map_err(|_| {
                ApiError::invalid_input(format!(
                    "Error at \"/signature_scheme\": value {:?} is not one of the allowed values (tmi, standard)",
                    crate::error::sanitize_description(s)
                ))
            })?,
        };
        // Standard Webhooks deliveries always carry a signed timestamp.
        if scheme == SignatureScheme::Standard && self.timestamp_header == Some(true) {
            return Err(ApiError::invalid_input(
                "Error at \"/timestamp_header\": only for the tmi scheme (standard deliveries always carry webhook-timestamp)",
            ));
        }
        Ok(scheme)
    }

    /// The FIFO lanes asked for ([`lanes::ordering_from_input`]); `None`: unordered.
    ///
    /// # Errors
    /// 400 `invalid_input` for an unknown value or a combination that means nothing.
    pub fn ordering(&self) -> ApiResult<Option<Ordering>> {
        lanes::ordering_from_input(
            self.ordering.as_deref(),
            self.ordering_key.as_deref(),
            self.lane_on_failure.as_deref(),
        )
    }

    /// The secret the new subscription gets: the caller's, which a `standard` subscription needs in the
    /// `whsec_` form its receivers' libraries decode, or a generated one in the scheme's form.
    ///
    /// # Errors
    /// 400 `invalid_input` for a `standard` secret that is not `whsec_<base64 of 24 to 64 bytes>`; 500 when
    /// the system random source fails.
    pub fn secret_for(&self, scheme: SignatureScheme) -> ApiResult<String> {
        match (scheme, &self.secret) {
            (SignatureScheme::Tmi, Some(s)) => Ok(s.clone()),
            (SignatureScheme::Tmi, None) => Ok(random_hex()),
            (SignatureScheme::Standard, Some(s)) if standard::secret_key(s).is_some() => {
                Ok(s.clone())
            }
            (SignatureScheme::Standard, Some(_)) => Err(ApiError::invalid_input(
                "Error at \"/secret\": a standard subscription's secret is whsec_ followed by the base64 of 24 to 64 bytes",
            )),
            (SignatureScheme::Standard, None) => standard::generate_secret()
                .map_err(|e| ApiError::Internal(format!("generating a secret: {e}"))),
        }
    }

    /// The `WebhookSubscriptionInput` schema rules; returns the normalised threat model id (`None` for
    /// absent or empty: all threat models).
    ///
    /// # Errors
    /// 400 `invalid_input` (bounds) or `invalid_id` (patterns and formats), naming the field.
    pub fn validate(&self) -> ApiResult<Option<String>> {
        check_text("name", &self.name, 1, 255)?;
        check_text("url", &self.url, 8, 1024)?;
        if self.events.is_empty() {
            return Err(ApiError::invalid_input(
                "Error at \"/events\": minimum number of items is 1",
            ));
        }
        if self.events.len() > 50 {
            return Err(ApiError::invalid_input(
                "Error at \"/events\": maximum number of items is 50",
            ));
        }
        for (i, e) in self.events.iter().enumerate() {
            check_text(&format!("events/{i}"), e, 0, 1000)?;
        }
        if let Some(secret) = &self.secret {
            check_text("secret", secret, 16, 128)?;
        }
        match self.threat_model_id.as_deref() {
            None | Some("") => Ok(None),
            Some(tm) => parse_uuid(tm).map(|u| Some(u.to_string())).ok_or_else(|| {
                ApiError::invalid_format(
                    "Error at \"/threat_model_id\": string doesn't match the format \"uuid\"",
                )
            }),
        }
    }
}

/// `WebhookSubscription` as TMI serialises it (keys in Go's order).
#[derive(Debug, Serialize)]
pub struct SubscriptionView<'a> {
    challenges_sent: u32,
    created_at: String,
    events: &'a [String],
    id: SubscriptionId,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_successful_use: Option<String>,
    modified_at: String,
    name: &'a str,
    owner_id: &'a str,
    publication_failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
    /// Hookline addition, always shown.
    signature_scheme: SignatureScheme,
    /// Hookline addition: the Ed25519 public key (`whpk_…`) of a `standard` subscription.
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    /// Hookline additions, always shown.
    timestamped_callbacks: bool,
    timestamp_header: bool,
    /// Hookline addition: while a rotation's grace period lasts, when the previous secret stops working.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_secret_expires_at: Option<String>,
    status: SubscriptionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    threat_model_id: Option<&'a str>,
    url: &'a str,
    /// Hookline addition (endpoint health): why the delivery-worker disabled it, while it is disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<DisabledReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_at: Option<String>,
    /// Hookline additions (issue #18): the subscription's limits, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit: Option<RateLimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_in_flight: Option<u32>,
    /// Hookline additions (issue #18): FIFO lanes, only for an ordered subscription.
    #[serde(skip_serializing_if = "Option::is_none")]
    ordering: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ordering_key: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lane_on_failure: Option<&'static str>,
}

impl<'a> SubscriptionView<'a> {
    /// The API form; `with_secret` only for the create answer. Pinned rows never show their URL or secret.
    pub fn new(s: &'a Subscription, with_secret: bool) -> Self {
        Self {
            challenges_sent: s.challenges_sent,
            created_at: format_micros(s.created_at),
            events: &s.events,
            id: s.id,
            last_successful_use: s.last_successful_use.map(format_micros),
            modified_at: format_micros(s.modified_at),
            name: &s.name,
            owner_id: &s.owner_id,
            publication_failures: s.publication_failures,
            secret: if with_secret && !s.operator_pinned {
                s.secret.as_deref()
            } else {
                None
            },
            signature_scheme: s.signature_scheme,
            public_key: s
                .signing_key
                .as_ref()
                .and_then(|k| standard::public_key(k.expose())),
            timestamped_callbacks: s.timestamped_callbacks,
            timestamp_header: s.timestamp_header,
            previous_secret_expires_at: s
                .previous_secret_until
                .filter(|_| s.previous_secret_at(now_micros()).is_some())
                .map(format_micros),
            status: s.status,
            threat_model_id: s.threat_model_id.as_deref(),
            url: if s.operator_pinned {
                PINNED_URL
            } else {
                &s.url
            },
            disabled_reason: s.disabled_reason,
            disabled_at: s.disabled_at.map(format_micros),
            rate_limit: s.rate_limit,
            max_in_flight: s.max_in_flight,
            ordering: s.ordering.as_ref().map(Ordering::mode),
            ordering_key: s.ordering.and_then(|o| o.key).map(OrderingKey::as_str),
            lane_on_failure: s.ordering.map(|o| o.on_failure.as_str()),
        }
    }
}

/// `ListWebhookSubscriptionsResponse`.
#[derive(Serialize)]
struct SubscriptionList<'a> {
    limit: u64,
    offset: u64,
    subscriptions: Vec<SubscriptionView<'a>>,
    total: u64,
}

/// 64 lowercase hex characters from the thread-local CSPRNG.
pub(crate) fn random_hex() -> String {
    let bytes: [u8; TOKEN_BYTES] = rand::random();
    hex::encode(bytes)
}

/// `POST /admin/webhooks/subscriptions`
pub async fn create_subscription(
    Admin(caller): Admin,
    state: web::Data<AppState>,
    JsonBody(input): JsonBody<SubscriptionInput>,
    RequestTrace(trace): RequestTrace,
) -> ApiResult<HttpResponse> {
    let threat_model_id = input.validate()?;
    let (rate_limit, max_in_flight) = LimitsInput {
        rate_limit: input.rate_limit,
        max_in_flight: input.max_in_flight,
    }
    .validate()?;
    let ordering = input.ordering()?;
    let scheme = input.scheme()?;
    let secret = input.secret_for(scheme)?;
    // Standard Webhooks prefers asymmetric signatures: a `standard` subscription also signs with its own
    // Ed25519 key, whose public half its admin reads.
    let signing_key = match scheme {
        SignatureScheme::Tmi => None,
        SignatureScheme::Standard => Some(Secret::new(
            standard::generate_signing_key()
                .map_err(|e| ApiError::Internal(format!("generating a signing key: {e}")))?,
        )),
    };
    let imported_deny_list = state.store.url_deny_list().await?;
    state
        .url_policy
        .validate_with(&input.url, &imported_deny_list)
        .map_err(ApiError::invalid_webhook_url)?;
    let now = now_micros();
    let sub = Subscription {
        threat_model_id,
        secret: Some(secret),
        challenge: Some(random_hex()),
        signature_scheme: scheme,
        signing_key,
        timestamped_callbacks: input.timestamped_callbacks.unwrap_or(false),
        timestamp_header: input.timestamp_header.unwrap_or(false),
        rate_limit,
        max_in_flight,
        ordering,
        ..Subscription::new(
            caller.id,
            input.name,
            input.url,
            input.events,
            SubscriptionStatus::PendingVerification,
            now,
        )
    };
    // The quota is checked after the body (unlike TMI), so that only creates that happen use it up; the
    // check, the create and the window entries are one script.
    let limits = quotas::subscription_limits(&state, &sub.owner_id).await?;
    let outcome = state
        .store
        .create_subscription_within_quota(&sub, &limits, now, trace.as_ref())
        .await?;
    if let Some(refused) = quotas::refusal(&outcome, &limits, now) {
        tracing::info!(owner.id = %sub.owner_id, outcome = ?outcome, "subscription create refused by quota");
        return Ok(refused);
    }
    let QuotaCreate::Created { minute } = outcome else {
        return Err(ApiError::Internal(format!(
            "unexpected quota outcome {outcome:?}"
        )));
    };
    state.metrics.subscriptions_created.inc();
    tracing::info!(subscription.id = %sub.id, owner.id = %sub.owner_id, "subscription created");
    Ok(quotas::with_rate_headers(
        HttpResponse::Created().json(SubscriptionView::new(&sub, true)),
        &limits,
        &minute,
        now,
    ))
}

/// `GET /admin/webhooks/subscriptions`
pub async fn list_subscriptions(
    _admin: Admin,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let query = ListQuery::parse(&req)?;
    let page = query.pagination()?;
    let tm = query.threat_model_id()?;
    let result = state
        .store
        .list_subscriptions(tm.as_deref(), page.offset, page.limit)
        .await?;
    Ok(HttpResponse::Ok().json(SubscriptionList {
        limit: page.limit,
        offset: page.offset,
        subscriptions: result
            .items
            .iter()
            .map(|s| SubscriptionView::new(s, false))
            .collect(),
        total: result.total,
    }))
}

pub(crate) async fn load(state: &AppState, id: SubscriptionId) -> ApiResult<Subscription> {
    state
        .store
        .get_subscription(id)
        .await?
        .ok_or_else(ApiError::subscription_not_found)
}

/// `GET /admin/webhooks/subscriptions/{webhook_id}`
pub async fn get_subscription(
    WebhookIdPath(id): WebhookIdPath,
    _admin: Admin,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let sub = load(&state, id).await?;
    Ok(HttpResponse::Ok().json(SubscriptionView::new(&sub, false)))
}

/// `DELETE /admin/webhooks/subscriptions/{webhook_id}`
pub async fn delete_subscription(
    WebhookIdPath(id): WebhookIdPath,
    _admin: Admin,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let sub = load(&state, id).await?;
    if sub.operator_pinned {
        return Err(ApiError::subscription_pinned());
    }
    // Deleted meanwhile by someone else: the caller's view is the same as if we had found nothing.
    if !state.store.delete_subscription(id).await? {
        return Err(ApiError::subscription_not_found());
    }
    tracing::info!(subscription.id = %id, "subscription deleted");
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: serde_json::Value) -> SubscriptionInput {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn code(r: ApiResult<Option<String>>) -> &'static str {
        match r {
            Err(ApiError::BadRequest { code, .. }) => code,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn schema_rules() {
        let ok = json!({"name": "n", "url": "https://example.com/hook", "events": ["*"]});
        assert_eq!(input(ok.clone()).validate().ok(), Some(None));
        let with = |k: &str, v: serde_json::Value| {
            let mut o = ok.clone();
            o[k] = v;
            input(o).validate()
        };
        assert_eq!(code(with("name", json!(""))), "invalid_input");
        assert_eq!(code(with("name", json!("a\u{1}b"))), "invalid_id");
        assert_eq!(code(with("name", json!("x".repeat(256)))), "invalid_input");
        assert_eq!(code(with("url", json!("https:/"))), "invalid_input");
        assert_eq!(code(with("events", json!([]))), "invalid_input");
        assert_eq!(code(with("events", json!(vec!["a"; 51]))), "invalid_input");
        assert_eq!(
            code(with("events", json!(["x".repeat(1001)]))),
            "invalid_input"
        );
        assert_eq!(code(with("secret", json!("short"))), "invalid_input");
        assert_eq!(code(with("threat_model_id", json!("nope"))), "invalid_id");
        assert_eq!(with("threat_model_id", json!("")).ok(), Some(None));
        assert_eq!(
            with(
                "threat_model_id",
                json!("660E8400-E29B-41D4-A716-446655440001")
            )
            .ok(),
            Some(Some("660e8400-e29b-41d4-a716-446655440001".to_owned()))
        );
        assert_eq!(with("secret", json!("0123456789abcdef")).ok(), Some(None));
    }

    #[test]
    fn view_hides_secret_and_pinned_url() {
        let mut s = delivery_model_sample();
        let v = serde_json::to_value(SubscriptionView::new(&s, false)).unwrap_or_default();
        assert!(v.get("secret").is_none());
        assert!(v.get("last_successful_use").is_none());
        assert_eq!(v["challenges_sent"], 0);
        let v = serde_json::to_value(SubscriptionView::new(&s, true)).unwrap_or_default();
        assert_eq!(v["secret"], "0123456789abcdef");
        s.operator_pinned = true;
        let v = serde_json::to_value(SubscriptionView::new(&s, true)).unwrap_or_default();
        assert!(v.get("secret").is_none());
        assert_eq!(v["url"], PINNED_URL);
    }

    pub(crate) fn delivery_model_sample() -> Subscription {
        Subscription {
            secret: Some("0123456789abcdef".into()),
            challenge: Some("c".into()),
            ..Subscription::new(
                "owner",
                "n",
                "https://example.com/hook",
                vec!["threat_model.created".into()],
                SubscriptionStatus::PendingVerification,
                1,
            )
        }
    }
}
