//! Request extractors that fail with [`ApiError`], never with actix's own plain-text errors, so that bad
//! input always gets TMI's JSON error body and a 4xx.
//!
//! - [`JsonBody`] / [`OptionalJsonBody`]: a JSON body, read up to `api.max_body_bytes` (413 beyond),
//!   `Content-Type: application/json` required when a body is present (415 otherwise; 400 when missing),
//!   decoded strictly (unknown fields, wrong types and trailing bytes are 400 `invalid_input`).
//! - [`JsonBytes`]: the same rules, the body kept as its exact bytes (signed callbacks).
//! - [`WebhookIdPath`] / [`DeliveryIdPath`] / [`AddonIdPath`]: path ids, 400 `invalid_id` with TMI's sentence
//!   when not UUIDs.
//! - [`parse_uuid`]: the same rule for query parameters and body fields.
//! - [`Caller`] / [`Admin`]: the bearer token, verified by the state's
//!   [`Authenticator`](crate::auth::Authenticator) and checked against TMI's revocation key
//!   ([`authenticate`]: 401 with `WWW-Authenticate`, 503 when Redis cannot say; 403 for a non-admin or a
//!   delegation token on an admin route). The types live in [`auth`](crate::auth); their extractors live here, next to the state
//!   they read, so that `auth` needs nothing from the state.

use std::future::{Ready, ready};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{FromRequest, HttpRequest, web};
use delivery_model::ids::{AddonId, DeliveryId, SubscriptionId};
use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::auth::{Admin, Caller, bearer_token};
use crate::error::{ApiError, STORE_RETRY_AFTER_SECS};
use crate::state::AppState;

/// Path parameter of the subscription routes.
pub const WEBHOOK_ID_PARAM: &str = "webhook_id";
/// Path parameter of the delivery routes.
pub const DELIVERY_ID_PARAM: &str = "delivery_id";
/// Path parameter of the add-on routes (TMI's OpenAPI calls it `id`).
pub const ADDON_ID_PARAM: &str = "id";

/// Parses a hyphenated UUID (the only form TMI's schema pattern accepts), case-insensitively.
pub fn parse_uuid(s: &str) -> Option<Uuid> {
    // 36 characters rules out the simple, braced and URN forms `Uuid::try_parse` also accepts.
    if s.len() == 36 {
        Uuid::try_parse(s).ok()
    } else {
        None
    }
}

fn path_uuid(req: &HttpRequest, name: &str) -> Result<Uuid, ApiError> {
    req.match_info()
        .get(name)
        .and_then(parse_uuid)
        .ok_or_else(|| ApiError::invalid_uuid(name))
}

/// A path parameter holding an id: a UUID, or 400 with TMI's invalid-UUID error naming the parameter.
macro_rules! path_id {
    ($(#[$doc:meta])* $name:ident($id:ident), $param:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name(pub $id);

        impl FromRequest for $name {
            type Error = ApiError;
            type Future = Ready<Result<Self, ApiError>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                ready(path_uuid(req, $param).map(|u| $name($id(u))))
            }
        }
    };
}

path_id!(
    /// The `{webhook_id}` of the path.
    WebhookIdPath(SubscriptionId),
    WEBHOOK_ID_PARAM
);
path_id!(
    /// The `{delivery_id}` of the path.
    DeliveryIdPath(DeliveryId),
    DELIVERY_ID_PARAM
);
path_id!(
    /// The `{id}` of the add-on paths.
    AddonIdPath(AddonId),
    ADDON_ID_PARAM
);

/// What the `Content-Type` header says about a body.
enum MediaType {
    Missing,
    Json,
    Other,
}

fn media_type(req: &HttpRequest) -> Result<MediaType, ApiError> {
    let mut values = req.headers().get_all(header::CONTENT_TYPE);
    let Some(value) = values.next() else {
        return Ok(MediaType::Missing);
    };
    if values.next().is_some() {
        return Err(ApiError::BadRequest {
            code: "duplicate_header",
            description: "Duplicate Content-Type header".into(),
        });
    }
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    Ok(if essence.eq_ignore_ascii_case("application/json") {
        MediaType::Json
    } else {
        MediaType::Other
    })
}

fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads the whole body, refusing it as soon as it passes `limit` bytes.
async fn read_limited(mut payload: Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => ApiError::PayloadTooLarge { limit },
            e => ApiError::invalid_request(format!("Failed to read request body: {e}")),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Decodes a JSON body strictly: a schema mismatch or bad JSON is 400 `invalid_input`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            ApiError::invalid_input(format!("Request body does not match the schema: {e}"))
        } else {
            ApiError::invalid_input(format!("Invalid JSON: {e}"))
        }
    })
}

type BodyFuture<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

/// Reads the body; `None` when it is empty. Checks the media type first when it is declared, so a wrong
/// type is refused before its bytes are read.
fn read_body(req: &HttpRequest, payload: &mut Payload) -> BodyFuture<Option<web::BytesMut>> {
    let state = req.app_data::<web::Data<AppState>>();
    let limit = state.map_or(0, |s| s.max_body_bytes);
    let timeout = state.map_or(std::time::Duration::ZERO, |s| s.body_read_timeout);
    let media = media_type(req);
    let declared = declared_length(req);
    let payload = payload.take();
    Box::pin(async move {
        let media = media?;
        if matches!(media, MediaType::Other) {
            return Err(ApiError::UnsupportedMediaType);
        }
        if declared.is_some_and(|n| n > limit) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        // A client trickling its body would otherwise hold this worker for as long as it likes.
        let body = tokio::time::timeout(timeout, read_limited(payload, limit))
            .await
            .map_err(|_| ApiError::RequestTimeout)??;
        if body.is_empty() {
            return Ok(None);
        }
        if matches!(media, MediaType::Missing) {
            return Err(ApiError::invalid_request(
                "Content-Type header is required for requests with a body",
            ));
        }
        Ok(Some(body))
    })
}

/// A required JSON body decoded into `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = BodyFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_body(req, payload);
        Box::pin(async move {
            match body.await? {
                Some(bytes) => decode(&bytes).map(JsonBody),
                None => Err(ApiError::invalid_input("Request body is required")),
            }
        })
    }
}

/// A required JSON body kept as its exact bytes (what a webhook signature covers), with the same media-type
/// and size rules as [`JsonBody`]; decode it with [`decode`].
#[derive(Debug)]
pub struct JsonBytes(pub web::Bytes);

impl FromRequest for JsonBytes {
    type Error = ApiError;
    type Future = BodyFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_body(req, payload);
        Box::pin(async move {
            match body.await? {
                Some(bytes) => Ok(JsonBytes(bytes.freeze())),
                None => Err(ApiError::invalid_input("Request body is required")),
            }
        })
    }
}

/// An optional JSON body: `None` when the request has none.
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJsonBody<T> {
    type Error = ApiError;
    type Future = BodyFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_body(req, payload);
        Box::pin(async move {
            match body.await? {
                Some(bytes) => decode(&bytes).map(|v| OptionalJsonBody(Some(v))),
                None => Ok(OptionalJsonBody(None)),
            }
        })
    }
}

/// What a request with a revoked token, or one whose revocation cannot be checked, is told (TMI's words).
const AUTH_UNAVAILABLE: &str = "Authentication service temporarily unavailable - please retry";

/// Authenticates `headers`: the bearer token must verify and must not be revoked.
///
/// Revocation is TMI's `blacklist:token:<sha256>` key, checked with one `EXISTS` after the signature (so a
/// forged token costs no Redis round trip). When Redis cannot answer, the request is refused with 503 and
/// `Retry-After` (fail closed, as TMI): a revoked admin must never get through because Redis is down.
///
/// # Errors
/// 401 for a missing, invalid or revoked token; 503 when the revocation check fails.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = bearer_token(headers)?;
    let caller = state.auth.verify(token)?;
    match state.store.is_token_revoked(token).await {
        Ok(false) => Ok(caller),
        Ok(true) => Err(ApiError::Unauthorized {
            reason: "token revoked".into(),
        }),
        Err(e) => {
            // Logged here, once; the error names a key made of a hash, never the token.
            tracing::warn!(error = %e, "token revocation check failed; refusing the request");
            Err(ApiError::Unavailable {
                description: AUTH_UNAVAILABLE.into(),
                retry_after_secs: STORE_RETRY_AFTER_SECS,
            })
        }
    }
}

/// The caller of a request: the state and the headers are taken before the future so that it is `'static`.
fn authenticate_request(req: &HttpRequest) -> BodyFuture<Caller> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let headers = req.headers().clone();
    Box::pin(async move {
        let state = state
            .ok_or_else(|| ApiError::Internal("application state is not registered".into()))?;
        authenticate(&state, &headers).await
    })
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = BodyFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        authenticate_request(req)
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = BodyFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let caller = authenticate_request(req);
        Box::pin(async move {
            let c = caller.await?;
            if c.delegated {
                // An add-on's delegation token acts for its invoker, never as an administrator.
                Err(ApiError::Forbidden {
                    description: "Delegation tokens cannot perform administrative operations"
                        .into(),
                })
            } else if c.admin {
                Ok(Admin(c))
            } else {
                Err(ApiError::admin_required())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyphenated_uuids() {
        assert!(parse_uuid("550e8400-e29b-41d4-a716-446655440000").is_some());
        assert!(parse_uuid("550E8400-E29B-41D4-A716-446655440000").is_some());
        assert!(parse_uuid("550e8400e29b41d4a716446655440000").is_none());
        assert!(parse_uuid("{550e8400-e29b-41d4-a716-446655440000}").is_none());
        assert!(parse_uuid("not-a-uuid").is_none());
        assert!(parse_uuid("").is_none());
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "decoded only to check errors")]
    struct Sample {
        name: String,
    }

    #[test]
    fn decode_errors_are_invalid_input() {
        for bad in [
            &b"{"[..],
            b"{\"name\":1}",
            b"{\"name\":\"a\",\"x\":1}",
            b"{\"name\":\"a\"} trailing",
            b"[]",
        ] {
            match decode::<Sample>(bad) {
                Err(ApiError::BadRequest { code, .. }) => assert_eq!(code, "invalid_input"),
                other => panic!("{other:?}"),
            }
        }
        assert!(decode::<Sample>(b"{\"name\":\"a\"}").is_ok());
    }
}
