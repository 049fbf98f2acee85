//! `hookline-migrate` against a real PostgreSQL holding TMI's tables and a private Redis, with the real
//! api-gateway and delivery-worker binaries serving and delivering what it imported.
//!
//! The service binaries must be built first (`cargo build --workspace --bins`, as `make test` does).

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod acl;
mod cluster_import;
mod cluster_target;
mod from_redis;
mod harness;
mod import;
mod legacy_drop;
mod plaintext;
mod tls;
