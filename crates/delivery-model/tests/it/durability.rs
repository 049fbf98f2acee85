//! The loss budget (issue #14) against a real primary and a real replica (`redis-server --replicaof`):
//! acknowledged writes wait for the replica (`WAIT`) when `wait_replicas` > 0, fail with
//! [`Error::NotReplicated`] when it does not confirm in time (the write stays on the primary), the fan-out
//! acknowledges its input entry only once the replica confirmed, and `Idempotency-Key` records replay.

use std::time::{Duration, Instant};

use delivery_model::Error;
use delivery_model::keys::EVENTS_GROUP;
use delivery_model::store::Store;
use delivery_model::store::idempotency::{
    IdempotencyBegin, IdempotencyScope, StoredAnswer, request_fingerprint,
};
use delivery_model::time::now_micros;
use fred::prelude::*;
use test_support::replica::ReplicaServer;

use crate::harness::{CONSUMER, Ctx, event};

/// Short, so the "replica down" cases stay quick; long enough for a loopback replica to answer on a busy
/// 2-core machine.
const WAIT_TIMEOUT: Duration = Duration::from_millis(1000);

/// A primary (the fixture's server), a replica of it, a store that waits for one replica, and a raw client
/// on the replica.
async fn with_replica() -> (Ctx, ReplicaServer, Store, Client) {
    let ctx = Ctx::start().await;
    let replica = ReplicaServer::start(&ctx.redis);
    let store = ctx
        .store_with(|o| {
            o.wait_replicas = 1;
            o.wait_timeout = WAIT_TIMEOUT;
        })
        .await;
    let raw = Client::new(Config::from_url(&replica.url()).unwrap(), None, None, None);
    raw.init().await.unwrap();
    (ctx, replica, store, raw)
}

#[tokio::test]
async fn an_acknowledged_event_is_on_the_replica_when_publish_returns() {
    let (ctx, _replica, store, on_replica) = with_replica().await;
    assert_eq!(store.ack_wait().replicas(), 1);
    for n in 0..20 {
        let id = store.publish_event(&event(n)).await.unwrap();
        // Read at once, no waiting: WAIT returned only after the replica acknowledged the offset.
        let got: Vec<(String, Vec<(String, String)>)> = on_replica
            .xrange(ctx.k().events_stream(), &id, &id, None)
            .await
            .unwrap();
        assert_eq!(
            got.len(),
            1,
            "entry {id} not on the replica when acknowledged"
        );
    }
}

#[tokio::test]
async fn with_the_replica_down_a_write_fails_after_the_timeout_but_stays_on_the_primary() {
    let (ctx, mut replica, store, _on_replica) = with_replica().await;
    replica.kill();
    let started = Instant::now();
    let err = store.publish_event(&event(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotReplicated {
                wanted: 1,
                confirmed: 0
            }
        ),
        "{err}"
    );
    assert!(err.is_retryable() && err.is_not_replicated());
    assert!(started.elapsed() >= WAIT_TIMEOUT, "{:?}", started.elapsed());
    // WAIT cannot undo the write: it is on the primary (hence Idempotency-Key for retries).
    assert_eq!(ctx.entry_ids(ctx.k().events_stream()).await.len(), 1);
    // A store that does not wait answers as before.
    ctx.store.publish_event(&event(2)).await.unwrap();
    assert!(
        store
            .without_ack_wait()
            .publish_event(&event(3))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn fanout_acknowledges_the_entry_only_once_the_replica_confirmed() {
    let (ctx, mut replica, store, _on_replica) = with_replica().await;
    let sub = ctx.verified(&["threat_model.created"]).await;
    store.ensure_events_group("0").await.unwrap();
    let ev = event(1);
    let entry = store.publish_event(&ev).await.unwrap();
    let reader = store.reader().await.unwrap();
    let got = reader
        .read_group(ctx.k().events_stream(), EVENTS_GROUP, CONSUMER, 10, 10)
        .await
        .unwrap();
    reader.quit().await;
    assert_eq!(got.len(), 1);
    let envelope = ev.envelope().unwrap();

    replica.kill();
    let err = store
        .fanout(&entry, &ev.event_type, &envelope, &[sub.id], now_micros())
        .await
        .unwrap_err();
    assert!(err.is_not_replicated(), "{err}");
    // Written on the primary, but the entry is still pending: the consumer will fan it out again.
    assert_eq!(ctx.pending(ctx.k().events_stream(), EVENTS_GROUP).await, 1);
    let queued = ctx.queue().await.len();
    assert!(queued >= 1);

    // A new replica syncs; the second fan-out creates nothing new and acknowledges the entry.
    let _replica = ReplicaServer::start(&ctx.redis);
    let created = store
        .fanout(&entry, &ev.event_type, &envelope, &[sub.id], now_micros())
        .await
        .unwrap();
    assert_eq!(created, 0);
    assert_eq!(ctx.pending(ctx.k().events_stream(), EVENTS_GROUP).await, 0);
    assert_eq!(ctx.queue().await.len(), queued);
}

#[tokio::test]
async fn idempotency_records_claim_replay_refuse_and_release() {
    let (_ctx, mut replica, store, _on_replica) = with_replica().await;
    let scope = IdempotencyScope {
        route: "events",
        caller: "alice",
        key: "k-1",
    };
    let fp = request_fingerprint("/events", br#"{"event_type":"x"}"#);
    let other_fp = request_fingerprint("/events", br#"{"event_type":"y"}"#);
    let answer = StoredAnswer {
        status: 202,
        body: r#"{"id":"1-0"}"#.into(),
    };
    assert_eq!(
        store.idempotency_begin(scope, &fp).await.unwrap(),
        IdempotencyBegin::New
    );
    assert_eq!(
        store.idempotency_begin(scope, &fp).await.unwrap(),
        IdempotencyBegin::InFlight
    );
    let window = Duration::from_secs(3600);
    store
        .idempotency_finish(scope, &fp, &answer, window)
        .await
        .unwrap();
    assert_eq!(
        store.idempotency_begin(scope, &fp).await.unwrap(),
        IdempotencyBegin::Replay(answer.clone())
    );
    assert_eq!(
        store.idempotency_begin(scope, &other_fp).await.unwrap(),
        IdempotencyBegin::Mismatch
    );
    // Another caller's key of the same name is its own.
    let bob = IdempotencyScope {
        caller: "bob",
        ..scope
    };
    assert_eq!(
        store.idempotency_begin(bob, &fp).await.unwrap(),
        IdempotencyBegin::New
    );
    store.idempotency_release(bob, &fp).await.unwrap();
    assert_eq!(
        store.idempotency_begin(bob, &fp).await.unwrap(),
        IdempotencyBegin::New
    );

    // With the replica gone, a replay is not confirmed either: the caller gets no answer it could trust.
    replica.kill();
    let err = store.idempotency_begin(scope, &fp).await.unwrap_err();
    assert!(err.is_not_replicated(), "{err}");
}
