//! Integration tests of the Redis store ([`delivery_model::store::Store`]) against a real `redis-server`.
//!
//! The Lua scripts and the store's methods are the contract every service relies on, so each test drives a
//! method and then reads Redis itself (a raw client: `XRANGE`, `XPENDING`, `TTL`, `ZSCORE`, …) to check what
//! was really written, not only what the method answered.
//!
//! Each test gets its own redis-server (see [`harness::Ctx`], over `test_support::store::StoreFixture`): the
//! input stream name is fixed and some tests `FLUSHALL`, so sharing one server would couple tests.
//!
//! - [`harness`]: the per-test server, store and raw client (whose drop checks that no queue or events entry
//!   is left pending), builders and raw reads.
//! - [`subscriptions`]: create, status compare-and-set, match indexes, challenge failures, delete.
//! - [`fanout`]: one input entry to deliveries, idempotent and acknowledged in the same step.
//! - [`attempts`]: leases, outcomes, fencing and callback races.
//! - [`deliveries`]: test deliveries and listing.
//! - [`retries`]: an administrator's retry of a failed delivery.
//! - [`queue`]: the retry schedule, consumer groups and reclaiming stale entries.
//! - [`fair`]: fair sharing: a subscription's share of the queue, the rest parked, released in order.
//! - [`backlog`]: a consumer group's unread and pending entries and the oldest one's age (lag gauges).
//! - [`durability`]: the loss budget: writes that wait for a real replica (`WAIT`), idempotency records.
//! - [`secrets`]: subscription secrets encrypted at rest, legacy plain text, key rotation and resealing.
//! - [`connection`]: failing fast at connect, and recovering from a Redis restart.
//! - [`sentinel`]: following a Sentinel failover (pool, read connection, scripts).
//! - [`lease_renewal`]: an attempt that waited renews its lease, only while it holds it.
//! - [`stale_entries`]: a `not_due` queue entry goes back on the schedule.
//! - [`stats`]: the console's delivery counters, standalone and on a cluster.
//! - [`tls`]: TLS verification, mutual TLS and ACL credentials at connect.
//! - [`cluster`]: a real Redis Cluster: connecting (plain, mutual TLS, the ACL user), every master, a
//!   stream read on a dedicated connection, a master failover.
//! - [`cluster_layout`]: the cluster key layout: control and shard scripts in one slot each, a second slot
//!   refused loudly, the shard count fixed by the data.
//! - [`cluster_delivery`]: the delivery path on a cluster: fan-out per shard, routing, nothing twice.
//! - [`cluster_fair`]: fair sharing per shard on a cluster, in one slot per script.
//! - [`cluster_durability`]: the loss budget on a cluster: each `WAIT` at the master of a slot written.
//! - [`cluster_lists`]: the admin delivery lists merged across the shards, stable pages, both layouts agree.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod attempts;
mod backlog;
mod cluster;
mod cluster_addons;
mod cluster_delivery;
mod cluster_durability;
mod cluster_fair;
mod cluster_lanes;
mod cluster_layout;
mod cluster_lists;
mod cluster_outcomes;
mod connection;
mod deliveries;
mod durability;
mod fair;
mod fanout;
mod harness;
mod health;
mod lanes;
mod lease_renewal;
mod limits;
mod queue;
mod retries;
mod secrets;
mod sentinel;
mod stale_entries;
mod stats;
mod subscriptions;
mod tls;
