//! The redrive runner (issue #18) against real Redis: paced, filtered, cancellable, and resumed by a new
//! runner after the first one was killed mid-job, without queueing any delivery twice.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cleanup::metrics::Metrics;
use cleanup::redrive::{RedriveConfig, Runner};
use delivery_model::delivery::{DeliveryRecord, DeliveryStatus, field};
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::queue::QueueMessage;
use delivery_model::redrive::{JobState, RedriveFilter, RedriveJob};
use delivery_model::store::import::LegacyPlacement;
use delivery_model::store::redrive::{CancelResult, StartResult};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::now_micros;
use test_support::wait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::harness::{Ctx, LONG_TTL};

async fn active_subscription(ctx: &Ctx) -> SubscriptionId {
    let sub = Subscription::new(
        "owner-1",
        "redrive",
        "https://receiver.example/hook",
        vec!["*".into()],
        SubscriptionStatus::Active,
        now_micros() - 60_000_000,
    );
    ctx.store.import_subscription(&sub).await.unwrap();
    sub.id
}

/// `n` failed deliveries of `sub` with event type `event` whose last attempt got `status`; three share
/// each creation millisecond, so the walk's cursor meets equal scores.
async fn failed(
    ctx: &Ctx,
    sub: SubscriptionId,
    n: usize,
    event: &str,
    status: u16,
) -> Vec<DeliveryId> {
    let base = now_micros() - 3_600_000_000;
    let mut ids = Vec::new();
    for i in 0..n {
        let created = base + i64::try_from(i / 3).unwrap() * 1000;
        let mut r = DeliveryRecord::new_pending(
            DeliveryId::new_v7(),
            sub,
            event,
            format!(r#"{{"event_type":"{event}","data":{{}}}}"#),
            created,
        );
        r.status = DeliveryStatus::Failed;
        r.attempts = 5;
        r.last_error = Some(format!("HTTP {status}: no"));
        ctx.store
            .import_delivery(&r, LegacyPlacement::Keep { ttl: LONG_TTL }, now_micros())
            .await
            .unwrap();
        // One line of the attempt log, as the worker's outcome write appends it.
        let line = format!(
            r#"{{"attempt":5,"started_at":{created},"duration_ms":3,"outcome":"failed","status_code":{status},"error":"HTTP {status}: no"}}"#
        );
        ctx.hset(&ctx.k().delivery(r.id), field::ATTEMPT_LOG, &line)
            .await;
        ids.push(r.id);
    }
    ids
}

fn config() -> RedriveConfig {
    RedriveConfig {
        replica: "it".into(),
        lease_ttl: Duration::from_secs(1),
        tick: Duration::from_millis(100),
    }
}

fn spawn_runner(ctx: &Ctx, metrics: &Metrics) -> (JoinHandle<()>, CancellationToken) {
    let token = CancellationToken::new();
    let runner = Runner::new(ctx.store.clone(), config(), metrics.clone());
    (tokio::spawn(runner.run(token.clone())), token)
}

async fn start(ctx: &Ctx, sub: SubscriptionId, filter: RedriveFilter, pace: u32) -> RedriveJob {
    let job = RedriveJob::new(sub, filter, pace, "admin-1", now_micros());
    assert_eq!(
        ctx.store.start_redrive(&job).await.unwrap(),
        StartResult::Started
    );
    job
}

async fn job(ctx: &Ctx, sub: SubscriptionId) -> RedriveJob {
    ctx.store.get_redrive(sub).await.unwrap().unwrap()
}

async fn wait_state(ctx: &Ctx, sub: SubscriptionId, state: JobState) -> RedriveJob {
    wait::until(
        "the redrive job finishes",
        Duration::from_secs(30),
        || async {
            let j = job(ctx, sub).await;
            (j.state == state).then_some(j)
        },
    )
    .await
}

/// The delivery ids on the queue, with how often each appears.
async fn queued_ids(ctx: &Ctx) -> Vec<DeliveryId> {
    ctx.queue()
        .await
        .into_iter()
        .filter_map(|(_, m)| match m {
            QueueMessage::DeliveryV1 { delivery_id } => Some(delivery_id),
            _ => None,
        })
        .collect()
}

async fn status(ctx: &Ctx, id: DeliveryId) -> DeliveryStatus {
    ctx.store.get_delivery(id).await.unwrap().unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_job_queues_exactly_the_matching_deliveries_at_its_pace() {
    let ctx = Ctx::start().await;
    let sub = active_subscription(&ctx).await;
    let wanted = failed(&ctx, sub, 60, "threat_model.created", 500).await;
    let other_event = failed(&ctx, sub, 20, "threat_model.deleted", 500).await;
    let other_status = failed(&ctx, sub, 20, "threat_model.created", 404).await;
    let filter = RedriveFilter {
        event_types: vec!["threat_model.created".into()],
        status_codes: vec![500],
        ..RedriveFilter::default()
    };
    start(&ctx, sub, filter.clone(), 20).await;
    // One job per subscription.
    let second = RedriveJob::new(sub, filter, 20, "admin-2", now_micros());
    assert!(matches!(
        ctx.store.start_redrive(&second).await.unwrap(),
        StartResult::Busy(_)
    ));

    let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
    let began = Instant::now();
    let (task, token) = spawn_runner(&ctx, &metrics);
    let done = wait_state(&ctx, sub, JobState::Completed).await;
    let elapsed = began.elapsed();
    token.cancel();
    task.await.unwrap();

    // 60 at 20/s: the last step is due ~2.9 s after the first.
    assert!(elapsed >= Duration::from_millis(2500), "{elapsed:?}");
    assert_eq!(
        (done.matched, done.queued, done.skipped),
        (60, 60, 0),
        "{done:?}"
    );
    assert_eq!(
        done.scanned, 80,
        "one event type narrows the index query; the 404s are looked at and passed over"
    );
    assert!(done.finished_at.is_some());
    let queued = queued_ids(&ctx).await;
    assert_eq!(queued.len(), 60);
    assert_eq!(
        queued.iter().collect::<HashSet<_>>(),
        wanted.iter().collect::<HashSet<_>>()
    );
    for id in &wanted {
        assert_eq!(status(&ctx, *id).await, DeliveryStatus::Pending);
    }
    for id in other_event.iter().chain(&other_status) {
        assert_eq!(status(&ctx, *id).await, DeliveryStatus::Failed);
    }
    assert_eq!(metrics.redrive_queued.get(), 60);
    assert!(
        !ctx.smembers(&ctx.k().redrive_active())
            .await
            .contains(&sub.to_string()),
        "a finished job leaves the running set"
    );
    assert!(
        ctx.ttl(&ctx.k().redrive_job(sub)).await > 0,
        "and expires later"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_stops() {
    let ctx = Ctx::start().await;
    let sub = active_subscription(&ctx).await;
    let ids = failed(&ctx, sub, 40, "threat_model.created", 503).await;
    start(&ctx, sub, RedriveFilter::default(), 10).await;
    let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
    let (task, token) = spawn_runner(&ctx, &metrics);
    wait::until("a few are queued", Duration::from_secs(10), || async {
        (job(&ctx, sub).await.queued >= 3).then_some(())
    })
    .await;
    let CancelResult::Cancelled(cancelled) =
        ctx.store.cancel_redrive(sub, now_micros()).await.unwrap()
    else {
        panic!("not cancelled");
    };
    assert_eq!(cancelled.state, JobState::Cancelled);
    // A step in hand may still queue its one delivery (pace 10 × 100 ms); nothing after that.
    let at_cancel = queued_ids(&ctx).await.len();
    wait::never(
        "the runner goes on after the cancel",
        Duration::from_secs(1),
        || async { queued_ids(&ctx).await.len() > at_cancel + 1 },
    )
    .await;
    token.cancel();
    task.await.unwrap();
    let queued = queued_ids(&ctx).await.len();
    assert!(queued < 20, "{queued} of 40 queued");
    let mut still_failed = 0;
    for id in &ids {
        if status(&ctx, *id).await == DeliveryStatus::Failed {
            still_failed += 1;
        }
    }
    assert_eq!(still_failed, 40 - queued);
    assert_eq!(job(&ctx, sub).await.state, JobState::Cancelled);
    assert!(matches!(
        ctx.store.cancel_redrive(sub, now_micros()).await.unwrap(),
        CancelResult::Finished(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runner_is_replaced_and_the_job_completes_without_duplicates() {
    let ctx = Ctx::start().await;
    let sub = active_subscription(&ctx).await;
    let ids = failed(&ctx, sub, 60, "threat_model.created", 500).await;
    start(&ctx, sub, RedriveFilter::default(), 20).await;
    let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
    let (first, _token) = spawn_runner(&ctx, &metrics);
    wait::until(
        "the first runner is under way",
        Duration::from_secs(10),
        || async { (job(&ctx, sub).await.queued >= 10).then_some(()) },
    )
    .await;
    // Killed: no release, its lease expires.
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    let mid = job(&ctx, sub).await;
    assert_eq!(mid.state, JobState::Running);
    assert!(mid.queued < 60, "{mid:?}");

    let (second, token) = spawn_runner(&ctx, &metrics);
    let done = wait_state(&ctx, sub, JobState::Completed).await;
    token.cancel();
    second.await.unwrap();
    let queued = queued_ids(&ctx).await;
    assert_eq!(queued.len(), 60, "each delivery queued once");
    assert_eq!(
        queued.iter().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>()
    );
    // A step cut short between its retries and its commit leaves them uncounted, never counted twice.
    assert!(done.queued <= 60 && done.matched <= 60, "{done:?}");
}
