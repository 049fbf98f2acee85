//! Test harness shared by every Hookline test: real parts, no mocks.
//!
//! - [`redis`]: a private `redis-server` on a free loopback port (plain, TLS-only or ACL users only),
//!   killed on drop; [`certs`]: the certificates of its TLS variant.
//! - [`sentinel`]: a primary, a replica and three sentinels on loopback, for failover tests.
//! - [`cluster`]: a real Redis Cluster on loopback (plain, TLS or ACL users only): failover of a killed
//!   master, resharding, which node serves a slot.
//! - [`proxy`]: a loopback TCP proxy that can blackhole its connections (half-open Redis).
//! - [`resp`]: one command and its reply over a plain TCP connection, for checks of the nodes above.
//! - [`replica`]: a replica of such a server (`--replicaof`), for the `WAIT` (loss budget) tests.
//! - [`store`]: a [`store::StoreFixture`] per test: a private redis-server, a store with a random key
//!   prefix and a raw client; on drop it checks that no stream entry is left pending.
//! - [`wait`]: waiting on a condition with a deadline instead of sleeping.
//! - [`auth`]: HS256 bearer tokens for administrators and ordinary users.
//! - [`receiver`]: a fake webhook receiver (a real HTTP/1.1 server on loopback) that records requests and
//!   answers challenges and deliveries as the test scripts it, changeable mid-test.
//! - [`service`]: the real service binaries as child processes (cleared environment, port 0, JSON logs read
//!   for the `listening` address), with SIGTERM, `kill -9` and restart; killed on drop.
//! - [`inproc`]: a service library's `run` in process against a private Redis, with its registry and a
//!   token the test cancels.
//! - [`http`]: a minimal HTTP/1.1 client for calling loopback services.
//! - [`postgres`]: a private PostgreSQL server (TMI's database, for `hookline-migrate`), stopped on drop.
//! - [`python`]: receiver-side signature verifiers in Python with the libraries receivers use.
//! - [`prometheus`]: a private Prometheus server scraping the services' ops listeners, killed on drop.
//! - [`otlp`]: a loopback OTLP/gRPC trace receiver collecting the services' spans.

pub mod auth;
pub mod certs;
pub mod cluster;
pub mod http;
pub mod inproc;
pub mod otlp;
pub mod postgres;
pub mod prometheus;
pub mod proxy;
pub mod python;
pub mod receiver;
pub mod redis;
pub mod replica;
pub mod resp;
pub mod sentinel;
pub mod service;
pub mod store;
pub mod wait;
