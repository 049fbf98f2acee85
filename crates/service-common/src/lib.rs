//! `service-common`: the plumbing every Hookline service shares, so that each `main.rs` only wires it.
//!
//! - [`config`]: the one configuration loader (embedded defaults, optional file, `HOOKLINE__*` environment)
//!   and the typed, validated [`Settings`](config::Settings).
//! - [`telemetry`]: `tracing` logs (human or JSON) and optional OpenTelemetry trace export.
//! - [`trace`]: W3C trace context across the hops (request headers and stored contexts to span parents and
//!   back).
//! - [`ops`]: the `/healthz`, `/readyz`, `/metrics` listener of every service.
//! - [`shutdown`]: the process's one cancellation token, fired by SIGTERM or SIGINT.
//! - [`redis`]: connecting the [`delivery_model::store::Store`] from settings.
//! - [`service`]: the front door every background service's `main` calls: start-up, Redis, the ops listener,
//!   the service's `run`, then the drain and quit.
//! - [`startup`]: the few lines every `main` starts with (TLS provider, config, telemetry).
//!
//! Every service also allocates through mimalloc (declared here, so each binary gets it by linking this
//! crate): a delivery is many small short-lived allocations (Redis replies, headers, request bodies), and
//! glibc's allocator spent about a fifth of the delivery worker's CPU on them under load.

pub mod config;
pub mod ops;
pub mod redis;
pub mod service;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
pub mod trace;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
