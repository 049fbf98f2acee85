//! `hookline-migrate --from-redis` (issue #15, "Moving an existing deployment"): a standalone deployment
//! written through the normal store API, copied into a 3-master cluster as the services' ACL user. Read
//! back through the cluster's store, every pending delivery with exactly one queue or schedule entry (also
//! after a run that died midway), a re-run copying nothing, the copy onto itself refused, and the
//! delivery-worker binary delivering the moved pending deliveries.

use std::collections::HashMap;
use std::time::Duration;

use delivery_model::addon::Addon;
use delivery_model::delivery::{AttemptLogEntry, DeliveryRecord, DeliveryStatus, Invoker};
use delivery_model::event::StreamEvent;
use delivery_model::ids::{AddonId, DeliveryId, SubscriptionId};
use delivery_model::keys::{EVENTS_GROUP, QUEUE_GROUP};
use delivery_model::queue::{MESSAGE_FIELD, QueueMessage};
use delivery_model::quota::{AddonQuota, WebhookQuota};
use delivery_model::store::addons::{Invocation, InvocationLimits, InvokeOutcome};
use delivery_model::store::idempotency::{IdempotencyBegin, IdempotencyScope, StoredAnswer};
use delivery_model::store::import::{DenyPatternType, LegacyPlacement, UrlDenyEntry};
use delivery_model::store::{
    AttemptOutcome, BeginAttempt, CircuitPolicy, CircuitSignal, FinishItem, Store,
};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::{Micros, now_micros};
use fred::prelude::*;
use test_support::receiver::Receiver;
use test_support::redis::{ACL_PASSWORD, ACL_USER, HOOKLINE_ACL_RULE, RedisServer};
use test_support::service::{Service, ServiceBin};
use test_support::wait;

use crate::cluster_target::{Target, challenges, entries};
use crate::harness::{OWNER, WAIT, World, run_migrate, service_env};

const SEC: Micros = 1_000_000;
/// The add-on invoker.
const INVOKER: &str = "c1d2e3f4-0000-4000-8000-0000000000aa";

/// What the standalone deployment holds.
struct Source {
    active: Subscription,
    pending: Subscription,
    addon: Addon,
    queued: DeliveryId,
    retried: DeliveryId,
    delivered: DeliveryId,
    failed: DeliveryId,
    in_progress: DeliveryId,
    addon_delivery: DeliveryId,
    scope: (&'static str, &'static str, &'static str),
}

fn record(sub: SubscriptionId, now: Micros) -> DeliveryRecord {
    DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        sub,
        "threat_model.created",
        r#"{"event_type":"threat_model.created","n":1}"#,
        now,
    )
}

/// The `addon.invoked` input entry naming `record`.
fn invoked_event(record: &DeliveryRecord) -> StreamEvent {
    StreamEvent {
        event_type: "addon.invoked".into(),
        threat_model_id: None,
        object_id: None,
        object_type: None,
        owner_id: None,
        timestamp: None,
        payload: record.payload.clone(),
        delivery_id: Some(record.id),
        trace: None,
    }
}

/// One attempt as the worker makes it: the queue entry read, the lease taken, the outcome written with
/// its attempt log entry and the entry acknowledged.
async fn attempt(store: &Store, entry: &str, id: DeliveryId, outcome: AttemptOutcome, now: Micros) {
    let leased = match store
        .begin_attempt(id, "t", now, now + 30 * SEC, Duration::ZERO)
        .await
        .unwrap()
    {
        BeginAttempt::Go(l) => l.record,
        other => panic!("{id}: {other:?}"),
    };
    let log = AttemptLogEntry {
        attempt: leased.attempts + 1,
        started_at: now,
        duration_ms: 12,
        outcome: outcome.name().to_owned(),
        status_code: Some(if outcome.error().is_some() { 500 } else { 200 }),
        error: outcome.error().map(str::to_owned),
    };
    let item = FinishItem {
        id,
        subscription_id: leased.subscription_id,
        token: "t".into(),
        entry_id: entry.to_owned(),
        outcome,
        host: String::new(),
        signal: CircuitSignal::None,
        log: Some(log),
    };
    store
        .finish_attempts(&[item], &CircuitPolicy::default(), now)
        .await
        .unwrap();
}

/// A deployment as the services leave it: subscriptions (one active with counters, one awaiting
/// verification), an add-on, quotas, the deny list, an idempotency record, and deliveries queued,
/// retried (due in `retry_in`), delivered, failed (with attempt logs), awaiting a callback, and an
/// add-on invocation (queued, in its invoker's active set and hourly window).
async fn fill(store: &Store, receiver: &str, retry_in: Micros) -> Source {
    let now = now_micros();
    let mut active = Subscription::new(
        OWNER,
        "moved hook",
        format!("{receiver}/hook"),
        vec!["threat_model.created".into()],
        SubscriptionStatus::Active,
        now - 3600 * SEC,
    );
    active.secret = Some("moved-secret-0123456789abcdef".into());
    active.publication_failures = 2;
    active.last_successful_use = Some(now - 60 * SEC);
    assert!(store.create_subscription(&active).await.unwrap());
    let pending = Subscription::new(
        OWNER,
        "unverified hook",
        format!("{receiver}/other"),
        vec!["diagram.updated".into()],
        SubscriptionStatus::PendingVerification,
        now,
    );
    assert!(store.create_subscription(&pending).await.unwrap());
    let addon = Addon {
        id: AddonId::new_v4(),
        created_at: now,
        name: "STRIDE scanner".into(),
        webhook_id: active.id,
        description: Some("scans".into()),
        icon: None,
        objects: vec!["threat_model".into()],
        threat_model_id: None,
        parameters: Vec::new(),
    };
    store.create_addon(&addon).await.unwrap();
    store
        .put_webhook_quota(&WebhookQuota {
            owner_id: OWNER.into(),
            max_subscriptions: 5,
            max_events_per_minute: 12,
            max_subscription_requests_per_minute: 10,
            max_subscription_requests_per_day: 20,
            created_at: now,
            modified_at: now,
        })
        .await
        .unwrap();
    store
        .put_addon_quota(&AddonQuota {
            owner_id: OWNER.into(),
            max_active_invocations: 2,
            max_invocations_per_hour: 20,
            created_at: now,
            modified_at: now,
        })
        .await
        .unwrap();
    store
        .import_url_deny_entry(&UrlDenyEntry {
            id: "d1".into(),
            pattern: "*.internal.example.com".into(),
            pattern_type: DenyPatternType::Glob,
            description: None,
            created_at: now,
        })
        .await
        .unwrap();
    let scope = ("events", "caller-1", "key-1");
    let idem = IdempotencyScope {
        route: scope.0,
        caller: scope.1,
        key: scope.2,
    };
    assert_eq!(
        store.idempotency_begin(idem, "fp").await.unwrap(),
        IdempotencyBegin::New
    );
    let answer = StoredAnswer {
        status: 202,
        body: r#"{"accepted":1}"#.into(),
    };
    store
        .idempotency_finish(idem, "fp", &answer, Duration::from_secs(3600))
        .await
        .unwrap();

    // Deliveries, each created and queued as the pipeline does; then the attempts.
    let [queued, retried, delivered, failed, in_progress] =
        std::array::from_fn(|_| record(active.id, now));
    let mut addon_record = record(active.id, now);
    addon_record.event_type = "addon.invoked".into();
    addon_record.addon_id = Some(addon.id);
    addon_record.invoked_by = Some(Invoker {
        uuid: INVOKER.into(),
        email: "alice@example.com".into(),
        name: "Alice".into(),
        ..Invoker::default()
    });
    for r in [&queued, &retried, &delivered, &failed, &in_progress] {
        assert!(store.create_and_enqueue_delivery(r).await.unwrap());
    }
    // The add-on invocation as the gateway records it (the invoker's windows, the record, the input
    // entry), routed to the queue by the consumer.
    let invoked = invoked_event(&addon_record);
    let limits = InvocationLimits {
        max_active: 3,
        max_per_hour: 10,
        dedup_window: Duration::from_secs(5),
    };
    let invocation = Invocation {
        addon: addon.id,
        invoker: INVOKER,
        record: &addon_record,
        event: &invoked,
    };
    let outcome = store.invoke_addon(&invocation, &limits, now).await.unwrap();
    assert_eq!(outcome, InvokeOutcome::Created);
    store.ensure_events_group("0").await.unwrap();
    let reader = store.reader().await.unwrap();
    let events = reader
        .read_group(store.keys().events_stream(), EVENTS_GROUP, "c", 10, 100)
        .await
        .unwrap();
    assert!(
        store
            .route_existing(&events[0].id, addon_record.id)
            .await
            .unwrap()
    );
    store.ensure_queue_group().await.unwrap();
    let read = reader
        .read_group(
            &store.keys().queue_stream(delivery_model::keys::Shard::ZERO),
            QUEUE_GROUP,
            "w",
            100,
            100,
        )
        .await
        .unwrap();
    reader.quit().await;
    let entry: HashMap<DeliveryId, String> = read
        .into_iter()
        .filter_map(|e| match QueueMessage::decode(&e.fields[MESSAGE_FIELD]) {
            Ok(QueueMessage::DeliveryV1 { delivery_id }) => Some((delivery_id, e.id)),
            _ => None,
        })
        .collect();
    let error = || "HTTP 500".to_owned();
    let t = now + SEC;
    attempt(
        store,
        &entry[&retried.id],
        retried.id,
        AttemptOutcome::Retry {
            error: error(),
            at: now + retry_in,
        },
        t,
    )
    .await;
    attempt(
        store,
        &entry[&delivered.id],
        delivered.id,
        AttemptOutcome::Delivered,
        t,
    )
    .await;
    attempt(
        store,
        &entry[&failed.id],
        failed.id,
        AttemptOutcome::Failed { error: error() },
        t,
    )
    .await;
    attempt(
        store,
        &entry[&in_progress.id],
        in_progress.id,
        AttemptOutcome::InProgress,
        t,
    )
    .await;
    Source {
        active,
        pending,
        addon,
        queued: queued.id,
        retried: retried.id,
        delivered: delivered.id,
        failed: failed.id,
        in_progress: in_progress.id,
        addon_delivery: addon_record.id,
        scope,
    }
}

/// The summary lines of a copy, in order.
fn lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.contains(": imported") || l.contains(": would import"))
        .collect()
}

#[tokio::test]
async fn moves_a_standalone_deployment_into_a_cluster_once_and_its_workers_deliver_it() {
    let receiver = Receiver::start().await;
    let redis = RedisServer::start();
    let source = Store::connect(&redis.admin_options()).await.unwrap();
    // The retried delivery falls due a few seconds from now: after the checks, while the worker runs.
    let src = fill(&source, &receiver.url(), 4 * SEC).await;
    let target = Target::start().await;
    let from = ["--from-redis", &redis.url()];

    // A dry run counts and writes nothing on the cluster but the layout marker every store sets.
    let (code, out, err) = run_migrate(&target.env, &[from[0], from[1], "--dry-run"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("dry run: nothing was written"), "{out}");
    assert!(
        out.contains("deliveries: would import 6, skipped (exists) 0"),
        "{out}"
    );
    assert!(target.entries().await.is_empty());
    assert!(
        target
            .store
            .get_subscription(src.active.id)
            .await
            .unwrap()
            .is_none()
    );

    // A run that died midway: one pending delivery copied (its record and its queue entry), nothing else.
    let copy = source.export_delivery(src.queued).await.unwrap().unwrap();
    target
        .store
        .import_copied_delivery(&copy, LegacyPlacement::Enqueue, now_micros())
        .await
        .unwrap();

    let (code, out, err) = run_migrate(&target.env, &from).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        lines(&out),
        [
            "subscriptions: imported 2, skipped (exists) 0, skipped (too old) 0, invalid 0",
            "addons: imported 1, skipped (exists) 0, skipped (too old) 0, invalid 0",
            "webhook_quotas: imported 1, skipped (exists) 0, skipped (too old) 0, invalid 0",
            "addon_quotas: imported 1, skipped (exists) 0, skipped (too old) 0, invalid 0",
            "url_deny_list: imported 1, skipped (exists) 0, skipped (too old) 0, invalid 0",
            "deliveries: imported 5, skipped (exists) 1, skipped (too old) 0, invalid 0",
            "addon_invocation_windows: imported 1, skipped (exists) 0, skipped (too old) 0, invalid 0",
            "idempotency_keys: imported 1, skipped (exists) 0, skipped (too old) 0, invalid 0",
        ],
        "{out}"
    );

    // Everything reads back through the cluster's store as the source has it.
    let t = &target.store;
    for sub in [&src.active, &src.pending] {
        let (got, want) = (
            t.get_subscription(sub.id).await.unwrap().unwrap(),
            source.get_subscription(sub.id).await.unwrap().unwrap(),
        );
        assert!(got == want, "subscription {} differs", sub.id);
    }
    let moved = t.get_subscription(src.active.id).await.unwrap().unwrap();
    // Its counters as the attempts left them (the success reset the two earlier failures).
    assert_eq!(moved.publication_failures, 0);
    assert!(
        moved
            .last_successful_use
            .is_some_and(|t| t > src.active.created_at)
    );
    assert_eq!(
        moved.secret.as_deref(),
        Some("moved-secret-0123456789abcdef")
    );
    assert_eq!(
        t.get_addon(src.addon.id).await.unwrap(),
        Some(src.addon.clone())
    );
    assert!(t.get_webhook_quota(OWNER).await.unwrap().is_some());
    assert!(t.get_addon_quota(OWNER).await.unwrap().is_some());
    assert_eq!(
        t.url_deny_list().await.unwrap(),
        source.url_deny_list().await.unwrap()
    );
    // The unverified subscription's challenge is queued again, on the control queue.
    assert_eq!(target.challenges().await, [src.pending.id]);
    let all = [
        src.queued,
        src.retried,
        src.delivered,
        src.failed,
        src.in_progress,
        src.addon_delivery,
    ];
    for id in all {
        let got = t.get_delivery_with_attempts(id).await.unwrap().unwrap();
        let want = source
            .get_delivery_with_attempts(id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, want, "delivery {id}");
    }
    let failed = t
        .get_delivery_with_attempts(src.failed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.0.status, DeliveryStatus::Failed);
    assert_eq!(failed.1.len(), 1);
    assert_eq!(failed.1[0].error.as_deref(), Some("HTTP 500"));
    // A terminal record keeps the TTL it had left (7 days, less the seconds the test took).
    let key = t.keys().delivery(src.delivered);
    let ttl: i64 = target.raw.ttl(&key).await.unwrap();
    assert!((7 * 86_400 - 60..=7 * 86_400).contains(&ttl), "{ttl}");
    // Each pending delivery has exactly one entry: the queued one on its shard's queue, the retried one
    // on its shard's schedule; the others none.
    let entries = target.entries().await;
    assert_eq!(
        entries,
        HashMap::from([
            (src.queued, (1, 0)),
            (src.retried, (0, 1)),
            (src.addon_delivery, (1, 0))
        ])
    );
    // The one awaiting its callback is timed by cleanup's stale sweep as before.
    let shard = t.keys().shard_of(src.in_progress);
    let activity: Option<f64> = target
        .raw
        .zscore(
            t.keys().deliveries_activity(shard),
            src.in_progress.to_string(),
        )
        .await
        .unwrap();
    assert!(activity.is_some());
    // The admin lists see every delivery of the subscription.
    let page = t
        .list_deliveries(Some(src.active.id), 0, 100)
        .await
        .unwrap();
    assert_eq!(page.total, 6);
    // A client repeating its request gets the answer it got from the old deployment.
    let (route, caller, key) = src.scope;
    let replay = t
        .idempotency_begin(IdempotencyScope { route, caller, key }, "fp")
        .await
        .unwrap();
    assert!(
        matches!(&replay, IdempotencyBegin::Replay(a) if a.status == 202),
        "{replay:?}"
    );

    // The invoker's add-on windows came along: the hour's invocation still counts on the cluster.
    let (got, want) = (
        t.invocation_windows(INVOKER).await.unwrap(),
        source.invocation_windows(INVOKER).await.unwrap(),
    );
    assert_eq!((want.active.len(), want.hourly.len()), (1, 1));
    assert_eq!((&got.active, &got.hourly), (&want.active, &want.hourly));
    assert!(
        got.hourly_ttl
            .is_some_and(|ttl| ttl <= Duration::from_secs(3660))
    );
    let mut again = record(src.active.id, now_micros());
    again.event_type = "addon.invoked".into();
    again.addon_id = Some(src.addon.id);
    let event = invoked_event(&again);
    let one_per_hour = InvocationLimits {
        max_active: 3,
        max_per_hour: 1,
        dedup_window: Duration::from_secs(5),
    };
    let refused = t
        .invoke_addon(
            &Invocation {
                addon: src.addon.id,
                invoker: INVOKER,
                record: &again,
                event: &event,
            },
            &one_per_hour,
            now_micros(),
        )
        .await
        .unwrap();
    assert!(
        matches!(refused, InvokeOutcome::HourlyLimit { current: 1, .. }),
        "{refused:?}"
    );

    // A re-run copies nothing and queues nothing more.
    let (code, out, err) = run_migrate(&target.env, &from).await;
    assert_eq!(code, 0, "{out}\n{err}");
    for line in lines(&out) {
        assert!(line.contains(": imported 0, "), "{out}");
    }
    assert!(
        out.contains("deliveries: imported 0, skipped (exists) 6"),
        "{out}"
    );
    assert_eq!(target.entries().await, entries);
    assert_eq!(target.challenges().await, [src.pending.id]);

    // The workers on the cluster deliver the moved pending deliveries, each once.
    let worker = Service::start(ServiceBin::DeliveryWorker, &target.env).await;
    wait::until(
        "the moved pending deliveries are delivered",
        WAIT,
        || async {
            let mut done = true;
            for id in [src.queued, src.retried, src.addon_delivery] {
                let r = t.get_delivery(id).await.unwrap().unwrap();
                done &= r.status == DeliveryStatus::Delivered;
            }
            done.then_some(())
        },
    )
    .await;
    let sent = receiver.count_by_delivery_id();
    for id in [src.queued, src.retried, src.addon_delivery] {
        assert_eq!(sent.get(&id.to_string()), Some(&1), "{id}: {sent:?}");
    }
    for id in [src.delivered, src.failed, src.in_progress] {
        assert_eq!(sent.get(&id.to_string()), None, "{id} is not sent again");
    }
    drop(worker);
    source.quit().await;
    target.finish().await;
}

#[tokio::test]
async fn refuses_to_copy_a_deployment_onto_itself_or_from_a_cluster() {
    let w = World::start().await;
    let url = w.redis.url();
    // Same server as the configured target: refused before anything is read or written.
    let (code, out, err) = run_migrate(&w.env(), &["--from-redis", &url]).await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("same Redis server"), "{err}");
    assert_eq!(w.dbsize().await, 0);
    // A cluster as the source: refused by its URL.
    let (code, _, err) =
        run_migrate(&w.env(), &["--from-redis", "redis-cluster://127.0.0.1:9"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("standalone"), "{err}");
}

#[tokio::test]
async fn copies_into_another_single_node_as_well() {
    let receiver = Receiver::start().await;
    // The source is read as the services' user, restricted by the minimal ACL rule.
    let old = RedisServer::start_acl(HOOKLINE_ACL_RULE);
    let source = Store::connect(&old.admin_options()).await.unwrap();
    let src = fill(&source, &receiver.url(), 3600 * SEC).await;
    let new = RedisServer::start();
    let env = service_env(new.service_env());
    let target = Store::connect(&new.admin_options()).await.unwrap();
    let raw = Builder::from_config(
        delivery_model::store::connection::fred_config(&new.admin_options()).unwrap(),
    )
    .build()
    .unwrap();
    raw.init().await.unwrap();
    let url = old
        .url()
        .replace("redis://", &format!("redis://{ACL_USER}:{ACL_PASSWORD}@"));
    let from = ["--from-redis", url.as_str()];

    let (code, out, err) = run_migrate(&env, &from).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("deliveries: imported 6, skipped (exists) 0"),
        "{out}"
    );
    // Today's key names on one node, each pending delivery once, the challenge on the one queue.
    let entries = entries(&target, &raw).await;
    assert_eq!(
        entries,
        HashMap::from([
            (src.queued, (1, 0)),
            (src.retried, (0, 1)),
            (src.addon_delivery, (1, 0))
        ])
    );
    assert_eq!(challenges(&target, &raw).await, [src.pending.id]);
    for id in [src.failed, src.in_progress, src.addon_delivery] {
        assert_eq!(
            target.get_delivery_with_attempts(id).await.unwrap(),
            source.get_delivery_with_attempts(id).await.unwrap()
        );
    }
    assert!(target.get_addon(src.addon.id).await.unwrap().is_some());

    let (code, out, _) = run_migrate(&env, &from).await;
    assert_eq!(code, 0, "{out}");
    for line in lines(&out) {
        assert!(line.contains(": imported 0, "), "{out}");
    }
    assert_eq!(self::entries(&target, &raw).await, entries);
    let admin = Builder::from_config(
        delivery_model::store::connection::fred_config(&old.admin_options()).unwrap(),
    )
    .build()
    .unwrap();
    admin.init().await.unwrap();
    let denied: Vec<Value> = admin.custom(fred::cmd!("ACL"), vec!["LOG"]).await.unwrap();
    assert!(
        denied.is_empty(),
        "the source refused the ACL user: {denied:#?}"
    );
    source.quit().await;
    target.quit().await;
}
