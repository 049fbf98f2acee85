//! `service-common`: the plumbing every Hookline service shares, so that each `main.rs` only wires it.
//!
//! - [`config`]: the one configuration loader (embedded defaults, optional file, `HOOKLINE__*` environment)
//!   and the typed, validated [`Settings`](config::Settings).
//! - [`telemetry`]: `tracing` logs (human or JSON) and optional OpenTelemetry trace export.
//! - [`ops`]: the `/healthz`, `/readyz`, `/metrics` listener of the non-API services.
//! - [`shutdown`]: the process's one cancellation token, fired by SIGTERM or SIGINT.
//! - [`redis`]: connecting the [`delivery_model::store::Store`] from settings.
//! - [`startup`]: the few lines every `main` starts with (TLS provider, config, telemetry).

pub mod config;
pub mod ops;
pub mod redis;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
