//! Integration tests of the api-gateway: the real server on a loopback port, a private redis-server per
//! test, a plain HTTP client. Modules mirror the URL tree.

#![expect(clippy::expect_used, reason = "tests")]

mod harness;

mod auth;
mod console;
mod deliveries;
mod durability;
mod enable;
mod events;
mod exposure;
mod health;
mod input_rules;
mod lanes;
mod limits;
mod quotas;
mod redrive;
mod routing;
mod security;
mod slow_clients;
mod subscriptions;
mod validation;
