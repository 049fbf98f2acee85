//! `Idempotency-Key` on `POST /events` and `POST /addons/{id}/invoke` (a Hookline addition, issue #14).
//!
//! A caller that retries after a timeout or a 503 (replicas did not confirm, see `redis.wait_replicas`)
//! sends the same `Idempotency-Key` and gets the first answer back instead of a second event or invocation.
//! Keys are per caller and per route, kept for `api.idempotency_window_secs`. The rules:
//! - first request: runs; a 2xx answer is stored, then confirmed by the replicas with one `WAIT` that covers
//!   the request's own write (see `delivery_model::store::idempotency`); a refusal or an error stores
//!   nothing, so a retry runs afresh;
//! - a retry with the same target and body: the stored answer, with `Idempotent-Replayed: true`;
//! - the same key with another body or target: 422 `idempotency_key_reused`;
//! - the same key while the first request still runs: 409 `conflict` (its claim lapses after a minute if
//!   that request died).
//!
//! [`once`] wraps a handler's write; the handler writes through the [`Store`] it is given.

use std::future::Future;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use delivery_model::store::Store;
use delivery_model::store::idempotency::{
    IdempotencyBegin, IdempotencyScope, StoredAnswer, request_fingerprint,
};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Set on a replayed answer.
pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";
/// Longest accepted key, in bytes (UUIDs and the like are far shorter).
pub const MAX_KEY_LEN: usize = 255;

/// Route words of the key names (constants, never client input).
pub const ROUTE_EVENTS: &str = "events";
pub const ROUTE_INVOKE: &str = "invoke";

/// The request's `Idempotency-Key`, if any.
///
/// # Errors
/// 400 `invalid_input` for an empty, over-long or non-printable key, or one sent twice.
pub fn key_of(req: &HttpRequest) -> ApiResult<Option<String>> {
    let mut values = req.headers().get_all(IDEMPOTENCY_KEY);
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::invalid_input("Idempotency-Key must be sent once"));
    }
    let bad = || {
        ApiError::invalid_input(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} printable ASCII characters"
        ))
    };
    let s = v.to_str().map_err(|_| bad())?;
    if s.is_empty()
        || s.len() > MAX_KEY_LEN
        || !s.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

/// Runs `write` at most once per (caller, `route`, `Idempotency-Key`); without a key, just runs it. `write`
/// gets the store to write through (one that does not wait for replicas when the answer's storage will).
///
/// # Errors
/// What `write` returns; 400 for a bad key; 409 while the first request runs; 422 for a reused key; 503
/// when the replicas do not confirm (the answer is stored: a retry replays it once they do).
pub async fn once<F, Fut>(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    route: &'static str,
    body: &[u8],
    write: F,
) -> ApiResult<HttpResponse>
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ApiResult<HttpResponse>>,
{
    let Some(key) = key_of(req)? else {
        return write(state.store.clone()).await;
    };
    let scope = IdempotencyScope {
        route,
        caller: &caller.id,
        key: &key,
    };
    let fingerprint = request_fingerprint(req.path(), body);
    match state.store.idempotency_begin(scope, &fingerprint).await? {
        IdempotencyBegin::New => {}
        IdempotencyBegin::InFlight => return Err(in_flight()),
        IdempotencyBegin::Mismatch => return Err(reused()),
        IdempotencyBegin::Replay(answer) => {
            state.metrics.idempotent_replays.inc();
            return Ok(respond(&answer, true));
        }
    }
    let result = write(state.store.without_ack_wait()).await;
    let res = match result {
        Ok(res) if res.status().is_success() => res,
        other => {
            // Refusals and failures store nothing: a retry with the same key runs afresh.
            if let Err(e) = state.store.idempotency_release(scope, &fingerprint).await {
                tracing::warn!(error = %e, "could not release an idempotency key; it lapses with its lease");
            }
            return other;
        }
    };
    let status = res.status().as_u16();
    let bytes = actix_web::body::to_bytes(res.into_body())
        .await
        .map_err(|e| ApiError::Internal(format!("reading an answer to store: {e}")))?;
    let answer = StoredAnswer {
        status,
        body: String::from_utf8(bytes.to_vec())
            .map_err(|e| ApiError::Internal(format!("answer is not UTF-8: {e}")))?,
    };
    state
        .store
        .idempotency_finish(scope, &fingerprint, &answer, state.idempotency_window)
        .await?;
    Ok(respond(&answer, false))
}

fn respond(answer: &StoredAnswer, replayed: bool) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut res = HttpResponse::build(status);
    res.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    ));
    if replayed {
        res.insert_header((IDEMPOTENT_REPLAYED, HeaderValue::from_static("true")));
    }
    res.body(answer.body.clone())
}

fn in_flight() -> ApiError {
    ApiError::conflict("A request with this Idempotency-Key is still being processed; retry later")
}

fn reused() -> ApiError {
    ApiError::Coded {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "idempotency_key_reused",
        description: "This Idempotency-Key was used with a different request (body or target)"
            .into(),
    }
}
