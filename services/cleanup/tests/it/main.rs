//! Integration tests of the cleanup library against a private redis-server: each step's effect on real Redis
//! state, the races it must lose or win, and the lease. The binary itself is exercised end to end in
//! `tests/e2e/cleanup.rs`.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod cluster;
mod harness;
mod indexes;
mod lease;
mod lifecycle;
mod redrive;
mod stale;
mod streams;
