//! The PostgreSQL import into a Redis Cluster (issue #15), as the services' ACL user: every script stays in
//! one slot (a subscription with its indexes and challenge in the control slot, a delivery with its indexes
//! and its queue or schedule entry in its shard's), what TMI had reads back through the cluster's store,
//! each pending delivery has exactly one entry, a re-run writes nothing, and a worker delivers the due one.

use std::collections::HashMap;

use delivery_model::delivery::DeliveryStatus;
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::subscription::SubscriptionStatus;
use test_support::postgres::PostgresServer;
use test_support::receiver::Receiver;
use test_support::resp::Reply;
use test_support::service::{Service, ServiceBin};
use test_support::wait;

use crate::cluster_target::Target;
use crate::harness::*;

/// Keys on each master: what a run wrote, counted.
fn key_counts(target: &Target) -> Vec<Option<Reply>> {
    let c = &target.cluster;
    c.master_ports()
        .into_iter()
        .map(|port| c.node_command(port, &["DBSIZE"]))
        .collect()
}

#[tokio::test]
async fn imports_tmi_tables_into_a_cluster_and_reruns_change_nothing() {
    let pg = PostgresServer::start();
    let rx = Receiver::start().await;
    fill(&pg, &rx.url());
    let target = Target::start().await;
    let mut env = target.env.clone();
    env.push((
        "HOOKLINE__MIGRATE__POSTGRES_URL".into(),
        format!("{}?sslmode=disable", pg.url()),
    ));

    let (code, out, err) = run_migrate(&env, &[]).await;
    assert_eq!(code, 2, "invalid rows make a non-zero exit:\n{out}\n{err}");
    for (table, line) in [
        (
            "webhook_subscriptions",
            "imported 3, skipped (exists) 0, skipped (too old) 0, invalid 3",
        ),
        (
            "addons",
            "imported 1, skipped (exists) 0, skipped (too old) 0, invalid 1",
        ),
        (
            "webhook_quotas",
            "imported 1, skipped (exists) 0, skipped (too old) 0, invalid 0",
        ),
        (
            "addon_invocation_quotas",
            "imported 1, skipped (exists) 0, skipped (too old) 0, invalid 0",
        ),
        (
            "webhook_url_deny_list",
            "imported 2, skipped (exists) 0, skipped (too old) 0, invalid 1",
        ),
        (
            "webhook_deliveries",
            "imported 4, skipped (exists) 0, skipped (too old) 1, invalid 3",
        ),
    ] {
        assert_eq!(
            World::line(&out, table),
            format!("{table}: {line}"),
            "{out}"
        );
    }

    // What TMI had, through the cluster's store.
    let t = &target.store;
    let sub: SubscriptionId = SUB_ACTIVE.parse().unwrap();
    let active = t.get_subscription(sub).await.unwrap().unwrap();
    assert_eq!(active.status, SubscriptionStatus::Active);
    assert_eq!(active.secret.as_deref(), Some(SUB_SECRET));
    assert_eq!(active.publication_failures, 2);
    let candidates = t.match_candidates("diagram.updated").await.unwrap();
    assert_eq!(
        candidates.iter().map(|s| s.id).collect::<Vec<_>>(),
        [sub],
        "an active subscription is matched at once"
    );
    assert!(t.get_addon(ADDON.parse().unwrap()).await.unwrap().is_some());
    assert_eq!(
        t.get_webhook_quota(OWNER)
            .await
            .unwrap()
            .unwrap()
            .max_subscriptions,
        5
    );
    assert!(t.get_addon_quota(OWNER).await.unwrap().is_some());
    assert_eq!(t.url_deny_list().await.unwrap().len(), 2);
    let failed = t
        .get_delivery(DELIVERY_FAILED.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (failed.status, failed.attempts),
        (DeliveryStatus::Failed, 5)
    );
    assert_eq!(t.list_deliveries(Some(sub), 0, 100).await.unwrap().total, 4);
    // Each pending delivery has exactly one entry in its shard: the due one queued, the later one
    // scheduled; the unverified subscription's challenge is on the control queue.
    let (due, later): (DeliveryId, DeliveryId) = (
        DELIVERY_DUE.parse().unwrap(),
        DELIVERY_LATER.parse().unwrap(),
    );
    let entries = target.entries().await;
    assert_eq!(entries, HashMap::from([(due, (1, 0)), (later, (0, 1))]));
    let pending: SubscriptionId = SUB_PENDING.parse().unwrap();
    assert_eq!(target.challenges().await, [pending]);

    // A re-run imports nothing and writes nothing.
    let keys = key_counts(&target);
    let (code, out, _) = run_migrate(&env, &[]).await;
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        World::line(&out, "webhook_deliveries"),
        "webhook_deliveries: imported 0, skipped (exists) 4, skipped (too old) 1, invalid 3"
    );
    assert_eq!(
        World::line(&out, "webhook_subscriptions"),
        "webhook_subscriptions: imported 0, skipped (exists) 3, skipped (too old) 0, invalid 3"
    );
    assert_eq!(key_counts(&target), keys);
    assert_eq!(target.entries().await, entries);
    assert_eq!(target.challenges().await, [pending]);

    // A worker on the cluster delivers the due one.
    let worker = Service::start(ServiceBin::DeliveryWorker, &target.env).await;
    let delivered = rx.wait_for_deliveries(1, WAIT).await;
    assert_eq!(delivered[0].delivery_id(), Some(DELIVERY_DUE));
    assert!(delivered[0].verify_signature(SUB_SECRET));
    wait::until("the due delivery is delivered", WAIT, || async {
        let r = t.get_delivery(due).await.unwrap()?;
        (r.status == DeliveryStatus::Delivered).then_some(())
    })
    .await;
    drop(worker);
    target.finish().await;
}
