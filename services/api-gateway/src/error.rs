//! Errors of the api-gateway.
//!
//! - [`ApiError`] is what handlers and extractors return. Its one [`ResponseError`] impl turns it into TMI's
//!   error body `{"error": …, "error_description": …}` (the description is always present) with the right
//!   status and headers. Client errors carry readable messages; store failures are logged once, with their
//!   details, and the client gets a generic 500 (or a 503 with `Retry-After` when Redis is unreachable or
//!   its replicas did not confirm a write in time: `redis.wait_replicas`).
//! - [`RunError`] is what [`run`](crate::run) returns when the server cannot start.
//! - [`AuthConfigError`] is unusable `[auth]` key material, refused when the
//!   [`Authenticator`](crate::auth::Authenticator) is built (re-exported as `auth::AuthConfigError`).
//!
//! Two families of client errors exist because TMI has both: the request pipeline answers with a code in
//! `error` and a sentence in `error_description` (`invalid_input`, `unauthorized`, …), while TMI's admin
//! webhook handlers put the sentence in `error` itself and leave the description empty
//! (`{"error":"subscription not found","error_description":""}`). [`ApiError::Handler`] is the second kind.

use std::fmt::Write as _;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// `Retry-After` of a 503 caused by Redis being unreachable, seconds.
pub const STORE_RETRY_AFTER_SECS: u64 = 5;

/// `Retry-After` of a 503 for a write the replicas did not confirm in time (`redis.wait_replicas`), seconds:
/// a replica that is only slow usually catches up within a second or two.
pub const REPLICAS_RETRY_AFTER_SECS: u64 = 2;

/// Longest error description sent, in characters (TMI truncates at 1000).
const MAX_DESCRIPTION_CHARS: usize = 1000;

/// TMI's realm in `WWW-Authenticate`.
const REALM: &str = "tmi";

/// An error answered to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 from request validation; `code` is TMI's (`invalid_input`, `invalid_id`, `invalid_request`).
    #[error("{code}: {description}")]
    BadRequest {
        code: &'static str,
        description: String,
    },
    /// A TMI handler error: the sentence goes in `error`, `error_description` is empty.
    #[error("{status}: {error}")]
    Handler { status: StatusCode, error: String },
    /// 401. `reason` goes to `WWW-Authenticate`; the body always says "Authentication required".
    #[error("unauthorized: {reason}")]
    Unauthorized { reason: String },
    /// 403 with TMI's `forbidden` code.
    #[error("forbidden: {description}")]
    Forbidden { description: String },
    /// A client error with TMI's code in `error` and a sentence in `error_description` (`not_found` "Add-on
    /// not found", `conflict` …).
    #[error("{status}: {code}: {description}")]
    Coded {
        status: StatusCode,
        code: &'static str,
        description: String,
    },
    /// 401 from a webhook signature check: unlike a bearer-token failure, the body says what is wrong
    /// ("Invalid webhook signature"), as TMI does; `WWW-Authenticate` carries the same sentence.
    #[error("unauthorized: {description}")]
    SignatureRejected { description: String },
    /// 429 with TMI's `details` (`context`, `suggestion`) and, when known, `Retry-After` in seconds.
    #[error("too many requests: {code}: {description}")]
    TooManyRequests {
        code: &'static str,
        description: String,
        details: Option<serde_json::Value>,
        retry_after_secs: Option<u64>,
    },
    /// 404 for a path no route matches.
    #[error("no route for this path")]
    RouteNotFound,
    /// 405 for a known path and a method it does not serve; `allow` lists the ones it does.
    #[error("method not allowed (allow: {allow})")]
    MethodNotAllowed { allow: &'static str },
    /// 415: a body that is not `application/json`.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 413: a body over `api.max_body_bytes`.
    #[error("payload over {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 408: the request body did not arrive within `api.body_read_timeout_ms`; the connection is closed.
    #[error("request body not received in time")]
    RequestTimeout,
    /// 503 with `Retry-After` (a dependency is down; the request may succeed later).
    #[error("service unavailable: {description}")]
    Unavailable {
        description: String,
        retry_after_secs: u64,
    },
    /// The store failed: logged once, answered 503 when retryable and 500 otherwise.
    #[error("store: {0}")]
    Store(#[from] delivery_model::Error),
    /// Anything else that should not happen: logged once, answered 500.
    #[error("internal: {0}")]
    Internal(String),
}

/// `Result` with [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;

/// Unusable `[auth]` key material.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("unsupported jwt_algorithm {0:?} (HS256, RS256 or ES256)")]
    Algorithm(String),
    #[error("cannot use the configured key: {0}")]
    Key(#[from] jsonwebtoken::errors::Error),
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The `[auth]` key material is unusable.
    #[error("auth configuration: {0}")]
    Auth(#[from] AuthConfigError),
    /// The metrics registry refused a metric (a duplicate name: a bug).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The listener could not be served.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// TMI's error body.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Value>,
}

/// Replaces control characters by spaces and truncates, as TMI's `HandleRequestError` does, so that no
/// user-supplied text can break the JSON reader's lines or grow a response without bound.
pub fn sanitize_description(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DESCRIPTION_CHARS)
        .collect()
}

impl ApiError {
    /// 400 `invalid_input` (schema and value errors).
    pub fn invalid_input(description: impl AsRef<str>) -> Self {
        ApiError::BadRequest {
            code: "invalid_input",
            description: sanitize_description(description.as_ref()),
        }
    }

    /// 400 `invalid_id`: TMI's code for values that fail a format or pattern (UUIDs, control characters).
    pub fn invalid_format(description: impl AsRef<str>) -> Self {
        ApiError::BadRequest {
            code: "invalid_id",
            description: sanitize_description(description.as_ref()),
        }
    }

    /// 400 `invalid_id` for a parameter that is not a UUID, with TMI's exact sentence.
    pub fn invalid_uuid(param: &str) -> Self {
        ApiError::BadRequest {
            code: "invalid_id",
            description: format!("Invalid UUID format for parameter: {param}"),
        }
    }

    /// 400 `invalid_request` (the request as a whole is unusable).
    pub fn invalid_request(description: impl AsRef<str>) -> Self {
        ApiError::BadRequest {
            code: "invalid_request",
            description: sanitize_description(description.as_ref()),
        }
    }

    /// A TMI handler error.
    pub fn handler(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError::Handler {
            status,
            error: error.into(),
        }
    }

    /// 404 `{"error":"subscription not found","error_description":""}`.
    pub fn subscription_not_found() -> Self {
        Self::handler(StatusCode::NOT_FOUND, "subscription not found")
    }

    /// 404 `{"error":"delivery not found","error_description":""}`.
    pub fn delivery_not_found() -> Self {
        Self::handler(StatusCode::NOT_FOUND, "delivery not found")
    }

    /// 403 for operator-pinned subscriptions, which only the server configuration may change.
    pub fn subscription_pinned() -> Self {
        Self::handler(
            StatusCode::FORBIDDEN,
            "operator-pinned subscription is managed by server configuration and cannot be modified through the API",
        )
    }

    /// 400 `{"error":"invalid webhook URL: <reason>","error_description":""}`.
    pub fn invalid_webhook_url(reason: impl std::fmt::Display) -> Self {
        Self::handler(
            StatusCode::BAD_REQUEST,
            format!("invalid webhook URL: {reason}"),
        )
    }

    /// 404 `{"error":"not_found","error_description":<description>}`.
    pub fn not_found(description: impl Into<String>) -> Self {
        ApiError::Coded {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            description: description.into(),
        }
    }

    /// 409 `{"error":"conflict","error_description":<description>}`.
    pub fn conflict(description: impl Into<String>) -> Self {
        ApiError::Coded {
            status: StatusCode::CONFLICT,
            code: "conflict",
            description: description.into(),
        }
    }

    /// 404 `not_found` "Add-on not found" (TMI's sentence).
    pub fn addon_not_found() -> Self {
        Self::not_found("Add-on not found")
    }

    /// 401 from a webhook signature check, saying why.
    pub fn signature_rejected(description: impl Into<String>) -> Self {
        ApiError::SignatureRejected {
            description: description.into(),
        }
    }

    /// 403 `Administrator access required`.
    pub fn admin_required() -> Self {
        ApiError::Forbidden {
            description: "Administrator access required".into(),
        }
    }

    fn store_unavailable(&self) -> bool {
        matches!(self, ApiError::Store(e) if matches!(e, delivery_model::Error::Redis(_)) && e.is_retryable())
    }
}

/// Escapes a value for a quoted-string parameter of `WWW-Authenticate`.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() || !c.is_ascii() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `Bearer realm="tmi", error="invalid_token", error_description="…"` (TMI's `wwwauth` header).
pub fn www_authenticate(reason: &str) -> String {
    let mut v = String::new();
    let _ = write!(
        v,
        r#"Bearer realm="{REALM}", error="invalid_token", error_description="{}""#,
        quoted(reason)
    );
    v
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Handler { status, .. } => *status,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Coded { status, .. } => *status,
            ApiError::SignatureRejected { .. } => StatusCode::UNAUTHORIZED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(e) if e.is_not_replicated() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) if self.store_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut res = HttpResponse::build(status);
        let mut details = None;
        let (error, description): (&str, String) = match self {
            ApiError::BadRequest { code, description } => (code, description.clone()),
            ApiError::Handler { error, .. } => (error.as_str(), String::new()),
            ApiError::Unauthorized { reason } => {
                res.insert_header((header::WWW_AUTHENTICATE, www_authenticate(reason)));
                ("unauthorized", "Authentication required".into())
            }
            ApiError::Forbidden { description } => ("forbidden", description.clone()),
            ApiError::Coded {
                code, description, ..
            } => (code, description.clone()),
            ApiError::SignatureRejected { description } => {
                res.insert_header((header::WWW_AUTHENTICATE, www_authenticate(description)));
                ("unauthorized", description.clone())
            }
            ApiError::TooManyRequests {
                code,
                description,
                details: d,
                retry_after_secs,
            } => {
                if let Some(secs) = retry_after_secs {
                    res.insert_header((header::RETRY_AFTER, secs.to_string()));
                }
                details = d.as_ref();
                (code, description.clone())
            }
            ApiError::RouteNotFound => ("not_found", "The requested resource was not found".into()),
            ApiError::MethodNotAllowed { allow } => {
                res.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
                (
                    "method_not_allowed",
                    format!("Method not allowed; allowed methods: {allow}"),
                )
            }
            ApiError::UnsupportedMediaType => (
                "unsupported_media_type",
                "Content-Type must be application/json".into(),
            ),
            ApiError::PayloadTooLarge { limit } => (
                "payload_too_large",
                format!("Request body exceeds the maximum of {limit} bytes"),
            ),
            ApiError::RequestTimeout => {
                // The rest of the body may still be on its way: the connection cannot be reused.
                res.force_close();
                (
                    "request_timeout",
                    "The request body was not received in time".into(),
                )
            }
            ApiError::Unavailable {
                description,
                retry_after_secs,
            } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
                ("service_unavailable", description.clone())
            }
            ApiError::Store(e) if e.is_not_replicated() => {
                // Logged here, once. The write is applied on the primary: a retry with the same
                // Idempotency-Key replays its answer once the replicas confirm.
                tracing::warn!(error = %e, "write not confirmed by replicas; answering 503");
                res.insert_header((header::RETRY_AFTER, REPLICAS_RETRY_AFTER_SECS.to_string()));
                (
                    "service_unavailable",
                    "The write was not yet confirmed by enough Redis replicas - please retry; \
                     send an Idempotency-Key to avoid a duplicate"
                        .into(),
                )
            }
            ApiError::Store(e) if self.store_unavailable() => {
                // Logged here, once: the handler only propagated it.
                tracing::error!(error = %e, "store unavailable while serving a request");
                res.insert_header((header::RETRY_AFTER, STORE_RETRY_AFTER_SECS.to_string()));
                (
                    "service_unavailable",
                    "Storage temporarily unavailable - please retry".into(),
                )
            }
            ApiError::Store(e) => {
                tracing::error!(error = %e, "store failure while serving a request");
                ("server_error", "An unexpected error occurred".into())
            }
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "unexpected failure while serving a request");
                ("server_error", "An unexpected error occurred".into())
            }
        };
        res.json(ErrorBody {
            error,
            error_description: &description,
            details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_lose_control_chars_and_are_bounded() {
        let long = "x".repeat(2000);
        assert_eq!(sanitize_description("a\nb\tc"), "a b c");
        assert_eq!(
            sanitize_description(&long).chars().count(),
            MAX_DESCRIPTION_CHARS
        );
    }

    #[test]
    fn www_authenticate_quotes_safely() {
        assert_eq!(
            www_authenticate(r#"bad "token""#),
            r#"Bearer realm="tmi", error="invalid_token", error_description="bad \"token\"""#
        );
    }

    async fn body(
        e: ApiError,
    ) -> (
        StatusCode,
        actix_web::http::header::HeaderMap,
        serde_json::Value,
    ) {
        let res = e.error_response();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = actix_web::body::to_bytes(res.into_body())
            .await
            .unwrap_or_default();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or_default(),
        )
    }

    #[actix_web::test]
    async fn coded_signature_and_rate_limit_bodies() {
        let (status, _, b) = body(ApiError::addon_not_found()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            b,
            serde_json::json!({"error": "not_found", "error_description": "Add-on not found"})
        );
        let (status, h, b) = body(ApiError::signature_rejected("Invalid webhook signature")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(b["error_description"], "Invalid webhook signature");
        assert!(
            h.get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("Invalid webhook signature"))
        );
        let (status, h, b) = body(ApiError::TooManyRequests {
            code: "rate_limit_exceeded",
            description: "x".into(),
            details: Some(serde_json::json!({"context": {"retry_after": 7}})),
            retry_after_secs: Some(7),
        })
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(b["details"]["context"]["retry_after"], 7);
        assert_eq!(
            h.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()),
            Some("7")
        );
        let (_, h, b) = body(ApiError::TooManyRequests {
            code: "duplicate_invocation",
            description: "d".into(),
            details: None,
            retry_after_secs: None,
        })
        .await;
        assert!(b.get("details").is_none());
        assert!(h.get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn status_codes() {
        assert_eq!(
            ApiError::subscription_not_found().status_code(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ApiError::invalid_uuid("webhook_id").status_code(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ApiError::PayloadTooLarge { limit: 1 }.status_code(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            ApiError::Internal("x".into()).status_code(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let decode = ApiError::Store(delivery_model::Error::Decode("bad".into()));
        assert_eq!(decode.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
