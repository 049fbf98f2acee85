//! `hookline-migrate`: imports TMI's PostgreSQL webhook tables (or a standalone Hookline's Redis) into
//! Hookline's Redis, once, through `delivery-model` (docs/migration.md and docs/operations.md have the
//! operator's steps).
//!
//! - [`postgres`]: the connection to TMI's database, with TLS as `sslmode` asks and certificates verified.
//! - [`source`]: the `SELECT`s over TMI's tables (typed casts, timestamps as microseconds).
//! - [`convert`]: each row turned into Hookline's record, or the reason it cannot be.
//! - [`import`]: the run over every table in dependency order, create-if-absent writes, dry run.
//! - [`from_redis`]: `--from-redis`, a standalone Hookline deployment copied into the configured Redis (a
//!   cluster's layout), through the same create-if-absent writes.
//! - [`drop_legacy`]: dropping `webhook_deliveries` once every row is in Redis or too old, checked under a
//!   table lock in the transaction that drops it.
//! - [`report`]: per-table counts and the invalid rows, as printed.
//! - `redact`: the redacting `Debug` of rows that carry a receiver's secret.
//! - [`error`]: the failures that stop a run.

pub mod convert;
pub mod drop_legacy;
pub mod error;
pub mod from_redis;
pub mod import;
pub mod postgres;
mod redact;
pub mod report;
pub mod source;

pub use error::{Error, Result};
