//! `api-gateway`: Hookline's REST API, wire-compatible with TMI's webhook endpoints.
//!
//! It serves TMI's admin subscription and delivery endpoints, TMI's add-on endpoints (CRUD and invoke), the
//! receivers' delivery status endpoints (`/webhook-deliveries/{id}[/status]`, HMAC or JWT), Hookline's
//! `POST /events` for producers that cannot reach Redis, and `/healthz` and `/readyz` (metrics are on the
//! ops listener, as for every service). It owns no background work: it writes subscriptions,
//! delivery records, queue entries and events through the shared [`Store`] and the other services take
//! them from there.
//!
//! - [`routes`]: every route, registered by [`routes::configure`]; one file per resource.
//! - [`auth`]: JWT bearer verification and the [`Caller`](auth::Caller) / [`Admin`](auth::Admin) identities.
//! - [`extract`]: body, path and caller extractors that always fail with TMI's JSON errors.
//! - [`idempotency`]: `Idempotency-Key` on `POST /events` and invoke: first answer stored, retries replayed.
//! - [`receiver_auth`]: how receivers sign callbacks and HMAC reads (TMI's form, or timestamped with
//!   replay protection), accepting every live secret.
//! - [`url_policy`]: TMI's create-time webhook URL rules and deny list.
//! - [`addon_rules`]: TMI's add-on rules: create-time fields and parameter declarations, invocation data.
//! - [`middleware`]: request ids, per-request span, access log and request metrics.
//! - [`metrics`]: the service's Prometheus metrics.
//! - [`dev_token`]: the `dev-token` command, minting bearer tokens for a development stack.
//! - [`error`]: [`ApiError`](error::ApiError), the one error type answered to clients.
//! - [`state`]: [`AppState`], what every handler shares (re-exported here).
//!
//! [`run`] (the entry every service shares) binds `api.listen` and calls [`run_on`], which serves until its token is cancelled, then stops accepting and lets in-flight requests finish
//! within `shutdown.grace_period_secs`.

pub mod addon_rules;
pub mod auth;
pub mod dev_token;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod receiver_auth;
pub mod routes;
pub mod state;
pub mod url_policy;

pub use state::AppState;

use std::net::TcpListener;
use std::time::Duration;

use anyhow::Context as _;
use prometheus::Registry;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use delivery_model::store::Store;
use service_common::config::Settings;
use service_common::ops::ReadyCheck;
use service_common::service::Context;
use tokio_util::sync::CancellationToken;

use crate::error::RunError;

/// Builds the server. A plain function so that the (`!Send`) builder never lives in [`run`]'s future, which
/// a caller may spawn on any thread.
fn serve(settings: &Settings, state: AppState, listener: TcpListener) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let metrics_on_api_port = settings.api.metrics_on_api_port;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap_fn(middleware::observe)
            .configure(routes::configure)
            .configure(|cfg| {
                if metrics_on_api_port {
                    routes::configure_metrics(cfg);
                }
            })
            .default_service(web::to(routes::not_found))
    })
    .disable_signals()
    .shutdown_timeout(settings.shutdown.grace_period_secs)
    // Slow clients (issue #16): a trickled head is answered 408 by actix itself; a trickled body by the
    // body extractors (`api.body_read_timeout_ms`).
    .client_request_timeout(Duration::from_millis(settings.api.header_read_timeout_ms))
    .client_disconnect_timeout(Duration::from_millis(
        settings.api.client_disconnect_timeout_ms,
    ))
    .max_connections(settings.api.max_connections_per_worker)
    // actix leaves accepted sockets with Nagle's algorithm on: a response written in more than one piece
    // can then wait for the client's delayed ACK (issue #21).
    .tcp_nodelay(true);
    if settings.api.workers > 0 {
        server = server.workers(settings.api.workers);
    }
    Ok(server.listen(listener)?.run())
}

/// The service's name in logs.
pub const SERVICE: &str = "api-gateway";

/// The gateway's `/readyz` on the ops listener: Redis answers (the API port's `/readyz` checks the same).
pub fn readiness(_settings: &Settings, store: &Store) -> ReadyCheck {
    service_common::ops::redis_ready(store.clone())
}

/// The entry every service shares: binds `api.listen` (logging `listening` with the bound address, which
/// the e2e harness reads) and serves the API there with [`run_on`]. Like every service, the gateway serves
/// `/healthz`, `/readyz` and `/metrics` on its ops listener (`service_common::service::main`); the API port
/// also answers `/healthz` and `/readyz`, and `/metrics` only with `api.metrics_on_api_port`.
///
/// # Errors
/// The address cannot be bound, or what [`run_on`] returns.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let addr = ctx.settings.api.listen;
    let listener = TcpListener::bind(addr).with_context(|| format!("binding api.listen {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, kind = "api", "listening");
    Ok(run_on(
        ctx.settings,
        ctx.store,
        ctx.registry,
        listener,
        ctx.shutdown,
    )
    .await?)
}

/// Serves the API on `listener` until `token` is cancelled, then drains: no new connections are accepted
/// and in-flight requests get up to `shutdown.grace_period_secs` to finish.
///
/// actix's own signal handling is switched off: the process's one shutdown token (fired by SIGTERM/SIGINT
/// in `main`, or by a test) is the only way to stop.
///
/// # Errors
/// Unusable `[auth]` settings, or the listener cannot be served.
pub async fn run_on(
    settings: Settings,
    store: Store,
    registry: Registry,
    listener: TcpListener,
    token: CancellationToken,
) -> Result<(), RunError> {
    let server = serve(
        &settings,
        AppState::new(&settings, store, registry)?,
        listener,
    )?;
    let handle = server.handle();
    let stopper = tokio::spawn(async move {
        token.cancelled().await;
        tracing::info!("api-gateway stopping: draining in-flight requests");
        handle.stop(true).await;
    });
    let result = server.await;
    // The server may end on its own (an I/O error): the stopper must not outlive it.
    stopper.abort();
    result?;
    tracing::info!("api-gateway stopped");
    Ok(())
}
