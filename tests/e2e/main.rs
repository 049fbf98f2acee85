//! End-to-end tests: the four real binaries, separate processes sharing only a private redis-server, and
//! real receivers on loopback. Build the binaries first (`make test` does): `cargo build --workspace --bins`.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod addons;
mod callbacks;
mod cleanup;
mod cluster;
mod cluster_failover;
mod console;
mod contract;
mod failover;
mod halfopen;
mod harness;
mod health;
mod lanes;
mod observability;
mod pipeline;
mod production;
mod quotas;
mod replay;
mod resilience;
mod rotation;
mod secrets;
mod signatures;
mod tracing;
mod worker;
