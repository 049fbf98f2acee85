//! `delivery-model`: the one place that knows Hookline's domain and its Redis contract.
//!
//! Every Hookline service depends on this crate and on nothing else to talk to the others. The services share
//! only Redis, so whatever two of them must agree on lives here:
//!
//! - [`ids`]: newtype ids (`SubscriptionId`, `DeliveryId`, `AddonId`) and the deterministic UUIDv7 that makes
//!   event fan-out idempotent.
//! - [`event`]: event type names, the stream entry TMI's producers append to `tmi:events`, and the unified
//!   payload envelope every receiver gets.
//! - [`addon`]: add-ons (TMI's invocable extensions) and their typed parameter declarations.
//! - [`subscription`], [`delivery`]: the stored records, their statuses and allowed transitions.
//! - [`lane`]: opt-in FIFO lanes: a subscription's ordering settings and the names of its lanes.
//! - [`queue`]: the versioned message enum carried by the delivery queue stream.
//! - [`keys`]: every Redis key, stream and consumer group name. No service spells a key itself.
//! - [`signing`]: HMAC-SHA256 signatures (TMI's `sha256=<hex>`, Standard Webhooks' `v1,<base64>`) and their
//!   constant-time verification.
//! - [`store`]: the single Redis access layer (typed methods over fred, multi-key changes as Lua scripts).
//! - [`reader`]: the one consumer-group reader every stream loop runs (own pending entries at start, taking
//!   over a stalled consumer's entries, blocking reads, group recreation, reconnects, the shutdown rule).
//! - [`quota`]: per-owner quota overrides (subscriptions, add-on invocations) and their defaults' shape.
//! - [`secret_box`]: AES-256-GCM encryption at rest of subscription secrets under configured keys.
//! - [`stats`]: per-minute and per-hour delivery counters for the console's charts (what is counted, how
//!   percentiles are estimated).
//! - [`trace`]: the W3C trace context carried by stream entries, challenge messages and delivery records.
//! - [`time`]: the timestamp representation shared by records and the API (microseconds, RFC 3339).
//! - [`error`]: this crate's error type.

pub mod addon;
pub mod delivery;
pub mod error;
pub mod event;
pub mod ids;
pub mod keys;
pub mod lane;
pub mod queue;
pub mod quota;
pub mod reader;
pub mod redrive;
pub mod secret_box;
pub mod signing;
pub mod stats;
pub mod store;
pub mod subscription;
pub mod time;
pub mod trace;

pub use error::{Error, Result};
