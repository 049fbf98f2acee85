//! `hookline-migrate` as a Redis user restricted by exactly the ACL rule `docs/operations.md` gives (the
//! `default` user off): the import and the legacy-table check run, and Redis refuses it nothing.

use fred::prelude::*;
use test_support::postgres::PostgresServer;
use test_support::redis::{HOOKLINE_ACL_RULE, RedisServer};

use crate::harness::*;

#[tokio::test]
async fn imports_as_the_minimal_acl_user() {
    let w = World::on(
        PostgresServer::start(),
        RedisServer::start_acl(HOOKLINE_ACL_RULE),
    )
    .await;
    fill(&w.pg, "http://127.0.0.1:9/hook");

    // Exit 2: imported, with the fixture's bad rows reported (as in the plain-Redis tests).
    let (code, out) = w.migrate(&[]).await;
    assert_eq!(code, 2, "{out}");
    assert!(w.dbsize().await > 0, "something was imported");
    let (code, out) = w.migrate(&["--drop-legacy", "--dry-run"]).await;
    assert_eq!(code, 3, "the bad rows keep the table: {out}");

    let denied: Vec<Value> = w
        .redis_client
        .custom(fred::cmd!("ACL"), vec!["LOG"])
        .await
        .unwrap();
    assert!(denied.is_empty(), "Redis refused the ACL user: {denied:#?}");
}
