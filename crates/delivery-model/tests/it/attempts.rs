//! Attempts: the lease taken by `begin_attempt`, the outcomes written by `finish_attempt`, and the races the
//! lease and the status check settle (a worker that outlived its lease, a callback that came first).

use delivery_model::keys::Shard;
use std::time::Duration;

use delivery_model::delivery::{AttemptLogEntry, DeliveryRecord, DeliveryStatus, field};
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::keys::QUEUE_GROUP;
use delivery_model::queue::QueueMessage;
use delivery_model::store::{
    AttemptOutcome, BeginAttempt, BeginItem, CircuitPolicy, CircuitSignal, CircuitUpdate,
    FinishItem, FinishResult,
};
use delivery_model::subscription::field as sub_field;
use delivery_model::time::{Micros, now_micros};

use crate::harness::{ACTIVE_TTL, Ctx, LEASE, SEC, TERMINAL_TTL, go, ms};

/// Whether the queue entry is acknowledged and deleted.
async fn entry_gone(ctx: &Ctx, entry: &str) -> bool {
    let q = ctx.k().queue_stream(Shard::ZERO);
    ctx.pending(&q, QUEUE_GROUP).await == 0
        && ctx.entries(&q).await.iter().all(|(id, _)| id != entry)
}

async fn ttl_secs(ctx: &Ctx, id: DeliveryId) -> i64 {
    ctx.ttl(&ctx.k().delivery(id)).await
}

fn assert_about(ttl: i64, want: Duration) {
    let want = want.as_secs() as i64;
    assert!(
        ttl <= want && ttl > want - 60,
        "ttl {ttl}, want about {want}"
    );
}

#[tokio::test]
async fn begin_takes_the_lease_and_another_token_is_busy_while_it_lives() {
    let ctx = Ctx::start().await;
    let (rec, _sub, entry) = ctx.delivery_in_flight().await;
    let key = ctx.k().delivery(rec.id);
    let now = now_micros();

    assert_eq!(
        go(&ctx, rec.id, "A", now).await,
        rec,
        "Go hands out the stored record"
    );
    assert_eq!(ctx.hget(&key, field::LEASE).await.as_deref(), Some("A"));
    assert_eq!(
        ctx.hget(&key, field::LEASE_UNTIL).await,
        Some((now + LEASE).to_string())
    );

    let busy = ctx
        .store
        .begin_attempt(rec.id, "B", now + SEC, now + SEC + LEASE, Duration::ZERO)
        .await
        .unwrap();
    assert!(matches!(busy, BeginAttempt::Busy), "{busy:?}");
    assert_eq!(
        ctx.hget(&key, field::LEASE).await.as_deref(),
        Some("A"),
        "a busy answer writes nothing"
    );

    // The holder may take it again; once it has expired, anyone may.
    go(&ctx, rec.id, "A", now + 2 * SEC).await;
    go(&ctx, rec.id, "B", now + 3 * SEC + LEASE).await;
    assert_eq!(ctx.hget(&key, field::LEASE).await.as_deref(), Some("B"));

    let delivered = AttemptOutcome::Delivered;
    let written = finish(&ctx, &rec, "B", &entry, &delivered, now + 4 * SEC + LEASE);
    assert_eq!(written.await, FinishResult::Written);
    ctx.assert_nothing_pending();
}

#[tokio::test]
async fn begin_reports_missing_done_and_not_due() {
    let ctx = Ctx::start().await;
    let now = now_micros();
    let missing = ctx
        .store
        .begin_attempt(DeliveryId::new_v7(), "A", now, now + LEASE, Duration::ZERO)
        .await
        .unwrap();
    assert!(matches!(missing, BeginAttempt::Missing), "{missing:?}");

    let (rec, _sub, entry) = ctx.delivery_in_flight().await;
    let key = ctx.k().delivery(rec.id);
    let later = now + 60 * SEC;
    ctx.hset(&key, field::NEXT_RETRY_AT, &later.to_string())
        .await;
    let not_due = ctx
        .store
        .begin_attempt(rec.id, "A", now, now + LEASE, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        matches!(not_due, BeginAttempt::NotDue(at) if at == later),
        "{not_due:?}"
    );
    assert_eq!(
        ctx.hget(&key, field::LEASE).await,
        None,
        "not due: no lease taken"
    );
    // Within the tolerance it counts as due.
    let soon = later - SEC / 2;
    let due = ctx
        .store
        .begin_attempt(rec.id, "A", soon, soon + LEASE, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(matches!(due, BeginAttempt::Go(_)), "{due:?}");

    for (status, want) in [
        ("delivered", DeliveryStatus::Delivered),
        ("in_progress", DeliveryStatus::InProgress),
    ] {
        ctx.hset(&key, field::STATUS, status).await;
        let done = ctx
            .store
            .begin_attempt(
                rec.id,
                "C",
                later + LEASE,
                later + 2 * LEASE,
                Duration::ZERO,
            )
            .await
            .unwrap();
        assert!(
            matches!(done, BeginAttempt::Done(s) if s == want),
            "{done:?}"
        );
    }
    ctx.store
        .ack_queue(&ctx.k().queue_stream(Shard::ZERO), &[entry])
        .await
        .unwrap();
    ctx.assert_nothing_pending();
}

/// `finish_attempt` of `rec` under `token` at `at`, telling no circuit anything.
async fn finish(
    ctx: &Ctx,
    rec: &DeliveryRecord,
    token: &str,
    entry: &str,
    outcome: &AttemptOutcome,
    at: Micros,
) -> FinishResult {
    ctx.store
        .finish_attempt(rec, token, entry, outcome, &CircuitUpdate::none(), at)
        .await
        .unwrap()
}

/// What `begin_attempt` answers after an outcome was written.
#[derive(Debug)]
enum Next {
    /// Finished: `Done` with this status.
    Done(DeliveryStatus),
    /// Scheduled: `NotDue` until the outcome's time, then `Go` without counting another attempt.
    NotDueUntilScheduled,
}

/// One outcome written alone by the lease holder, and everything it must leave behind.
struct OutcomeCase {
    /// The outcome, given the time it schedules for (if it schedules).
    outcome: fn(Micros) -> AttemptOutcome,
    /// When the outcome schedules the next attempt, after the lease was taken.
    schedules_in: Option<Micros>,
    /// When the outcome is written, after the lease was taken.
    written_in: Micros,
    /// The subscription's publication failures before the outcome.
    failures_before: Option<&'static str>,
    status: DeliveryStatus,
    attempts: u32,
    last_error: Option<&'static str>,
    ttl: Duration,
    /// The subscription's publication failures after the outcome.
    failures_after: u32,
    /// Whether the outcome counts as the subscription's last successful use.
    success: bool,
    next: Next,
}

fn outcome_cases() -> Vec<OutcomeCase> {
    vec![
        // Delivered is terminal, counts the attempt and resets the subscription's failures.
        OutcomeCase {
            outcome: |_| AttemptOutcome::Delivered,
            schedules_in: None,
            written_in: SEC,
            failures_before: Some("2"),
            status: DeliveryStatus::Delivered,
            attempts: 1,
            last_error: None,
            ttl: TERMINAL_TTL,
            failures_after: 0,
            success: true,
            next: Next::Done(DeliveryStatus::Delivered),
        },
        // Retry counts the attempt and schedules the next.
        OutcomeCase {
            outcome: |at| AttemptOutcome::Retry {
                error: "HTTP 500: boom".into(),
                at,
            },
            schedules_in: Some(60 * SEC),
            written_in: SEC,
            failures_before: None,
            status: DeliveryStatus::Pending,
            attempts: 1,
            last_error: Some("HTTP 500: boom"),
            ttl: ACTIVE_TTL,
            failures_after: 0,
            success: false,
            next: Next::NotDueUntilScheduled,
        },
        // Reschedule consumes no attempt.
        OutcomeCase {
            outcome: |at| AttemptOutcome::Reschedule {
                error: "circuit open".into(),
                at,
            },
            schedules_in: Some(10 * SEC),
            written_in: 0,
            failures_before: None,
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_error: Some("circuit open"),
            ttl: ACTIVE_TTL,
            failures_after: 0,
            success: false,
            next: Next::NotDueUntilScheduled,
        },
        // Failed is terminal and counts a publication failure.
        OutcomeCase {
            outcome: |_| AttemptOutcome::Failed {
                error: "HTTP 400".into(),
            },
            schedules_in: None,
            written_in: SEC,
            failures_before: None,
            status: DeliveryStatus::Failed,
            attempts: 1,
            last_error: Some("HTTP 400"),
            ttl: TERMINAL_TTL,
            failures_after: 1,
            success: false,
            next: Next::Done(DeliveryStatus::Failed),
        },
        // Abandoned fails without an attempt or a publication failure.
        OutcomeCase {
            outcome: |_| AttemptOutcome::Abandoned {
                error: "subscription not active".into(),
            },
            schedules_in: None,
            written_in: 0,
            failures_before: None,
            status: DeliveryStatus::Failed,
            attempts: 0,
            last_error: Some("subscription not active"),
            ttl: TERMINAL_TTL,
            failures_after: 0,
            success: false,
            next: Next::Done(DeliveryStatus::Failed),
        },
        // In progress awaits callbacks and is tracked for staleness.
        OutcomeCase {
            outcome: |_| AttemptOutcome::InProgress,
            schedules_in: None,
            written_in: SEC,
            failures_before: None,
            status: DeliveryStatus::InProgress,
            attempts: 1,
            last_error: None,
            ttl: ACTIVE_TTL,
            failures_after: 0,
            success: true,
            next: Next::Done(DeliveryStatus::InProgress),
        },
    ]
}

#[tokio::test]
async fn each_outcome_writes_its_status_attempts_indexes_and_schedule_and_acks_the_entry() {
    for case in outcome_cases() {
        check_outcome(case).await;
    }
}

/// Writes `case`'s outcome on a fresh delivery in flight and checks the record, its indexes and TTL, the
/// schedule, the subscription, the queue entry and what a later `begin_attempt` answers.
async fn check_outcome(case: OutcomeCase) {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let (rec, sub, entry) = ctx.delivery_in_flight().await;
    if let Some(failures) = case.failures_before {
        ctx.hset(
            &k.subscription(sub.id),
            sub_field::PUBLICATION_FAILURES,
            failures,
        )
        .await;
    }
    let now = now_micros();
    go(&ctx, rec.id, "A", now).await;
    let at = case.schedules_in.map(|d| now + d);
    let outcome = (case.outcome)(at.unwrap_or(now));
    let written = now + case.written_in;

    let r = finish(&ctx, &rec, "A", &entry, &outcome, written).await;

    let name = outcome.name();
    assert_eq!(r, FinishResult::Written, "{name}");
    let got = ctx.stored_delivery(rec.id).await;
    assert_eq!(
        (got.status, got.attempts, got.next_retry_at),
        (case.status, case.attempts, at),
        "{name}"
    );
    assert_eq!(
        (got.last_error.as_deref(), got.last_activity_at),
        (case.last_error, written),
        "{name}"
    );
    let delivered = (case.status == DeliveryStatus::Delivered).then_some(written);
    assert_eq!(got.delivered_at, delivered, "{name}");
    assert_about(ttl_secs(&ctx, rec.id).await, case.ttl);
    // Indexed under its new status only; the activity index (scored in microseconds) holds it while in
    // progress.
    let member = rec.id.to_string();
    assert_eq!(
        ctx.zscore(&k.deliveries_by_status(Shard::ZERO, case.status), &member)
            .await,
        Some(ms(rec.created_at)),
        "{name}"
    );
    if case.status != DeliveryStatus::Pending {
        assert_eq!(
            ctx.zscore(
                &k.deliveries_by_status(Shard::ZERO, DeliveryStatus::Pending),
                &member
            )
            .await,
            None,
            "{name}"
        );
    }
    let in_progress = (case.status == DeliveryStatus::InProgress).then_some(written as f64);
    assert_eq!(
        ctx.zscore(&k.deliveries_activity(Shard::ZERO), &member)
            .await,
        in_progress,
        "{name}"
    );
    let scheduled: Vec<(String, f64)> = at
        .map(|at| {
            let msg = QueueMessage::DeliveryV1 {
                delivery_id: rec.id,
            };
            (msg.encode(), ms(at))
        })
        .into_iter()
        .collect();
    assert_eq!(
        ctx.zall(&k.scheduled(Shard::ZERO)).await,
        scheduled,
        "{name}"
    );
    let s = ctx.stored_subscription(sub.id).await;
    assert_eq!(
        (s.publication_failures, s.last_successful_use),
        (case.failures_after, case.success.then_some(written)),
        "{name}"
    );
    let h = ctx.hgetall(&k.delivery(rec.id)).await;
    assert!(
        !h.contains_key(field::LEASE) && !h.contains_key(field::LEASE_UNTIL),
        "{name}: lease released: {h:?}"
    );
    assert!(entry_gone(&ctx, &entry).await, "{name}");

    let begin = ctx
        .store
        .begin_attempt(
            rec.id,
            "B",
            now + 2 * SEC,
            now + 2 * SEC + LEASE,
            Duration::ZERO,
        )
        .await
        .unwrap();
    match (case.next, at) {
        (Next::Done(want), _) => assert!(
            matches!(begin, BeginAttempt::Done(s) if s == want),
            "{name}: {begin:?}"
        ),
        // Until it is due, a stale queue message for it is not attempted.
        (Next::NotDueUntilScheduled, Some(at)) => {
            assert!(
                matches!(begin, BeginAttempt::NotDue(t) if t == at),
                "{name}: {begin:?}"
            );
            let again = go(&ctx, rec.id, "B", at).await;
            assert_eq!(again.attempts, case.attempts, "{name}");
        }
        (next, None) => panic!("{name}: {next:?} needs a scheduled time"),
    }
}

#[tokio::test]
async fn a_stale_token_is_fenced_and_writes_nothing() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let (rec, sub, entry) = ctx.delivery_in_flight().await;
    let now = now_micros();
    // A took a short lease and hung; B took over once it expired.
    assert!(matches!(
        ctx.store
            .begin_attempt(rec.id, "A", now, now + SEC, Duration::ZERO)
            .await
            .unwrap(),
        BeginAttempt::Go(_)
    ));
    go(&ctx, rec.id, "B", now + 2 * SEC).await;
    let before = ctx.hgetall(&k.delivery(rec.id)).await;

    let late = finish(
        &ctx,
        &rec,
        "A",
        &entry,
        &AttemptOutcome::Delivered,
        now + 3 * SEC,
    )
    .await;

    assert_eq!(late, FinishResult::Fenced);
    assert_eq!(
        ctx.hgetall(&k.delivery(rec.id)).await,
        before,
        "nothing written"
    );
    assert_eq!(
        ctx.pending(&k.queue_stream(Shard::ZERO), QUEUE_GROUP).await,
        1,
        "the entry stays for B"
    );
    assert_eq!(
        ctx.stored_subscription(sub.id).await.last_successful_use,
        None
    );
    // A fenced retry schedules nothing either.
    let retry = AttemptOutcome::Retry {
        error: "late".into(),
        at: now,
    };
    assert_eq!(
        finish(&ctx, &rec, "A", &entry, &retry, now + 3 * SEC).await,
        FinishResult::Fenced
    );
    assert!(ctx.zall(&k.scheduled(Shard::ZERO)).await.is_empty());

    let r = finish(
        &ctx,
        &rec,
        "B",
        &entry,
        &AttemptOutcome::Delivered,
        now + 4 * SEC,
    )
    .await;
    assert_eq!(r, FinishResult::Written);
    let got = ctx.stored_delivery(rec.id).await;
    assert_eq!((got.status, got.attempts), (DeliveryStatus::Delivered, 1));
    assert!(entry_gone(&ctx, &entry).await);
}

#[tokio::test]
async fn a_callback_that_came_first_supersedes_the_outcome_but_the_attempt_counts() {
    let outcomes = [
        (AttemptOutcome::Delivered, 1),
        (
            AttemptOutcome::Retry {
                error: "HTTP 502".into(),
                at: now_micros() + 60 * SEC,
            },
            1,
        ),
        (
            AttemptOutcome::Reschedule {
                error: "circuit open".into(),
                at: now_micros() + 60 * SEC,
            },
            0,
        ),
    ];
    for (outcome, attempts) in outcomes {
        let ctx = Ctx::start().await;
        let k = ctx.k();
        let (rec, _sub, entry) = ctx.delivery_in_flight().await;
        let now = now_micros();
        go(&ctx, rec.id, "A", now).await;
        // The receiver's `completed` callback lands while the worker is still reading the response.
        ctx.hset(&k.delivery(rec.id), field::STATUS, "delivered")
            .await;

        let r = finish(&ctx, &rec, "A", &entry, &outcome, now + SEC).await;

        assert_eq!(r, FinishResult::Superseded, "{outcome:?}");
        let got = ctx.stored_delivery(rec.id).await;
        assert_eq!(
            (got.status, got.attempts),
            (DeliveryStatus::Delivered, attempts),
            "{outcome:?}"
        );
        assert_eq!(
            (got.next_retry_at, got.last_error),
            (None, None),
            "{outcome:?}"
        );
        assert!(
            ctx.zall(&k.scheduled(Shard::ZERO)).await.is_empty(),
            "{outcome:?}: no retry scheduled"
        );
        assert!(entry_gone(&ctx, &entry).await, "{outcome:?}");
    }
}

#[tokio::test]
async fn outcomes_for_a_deleted_subscription_do_not_resurrect_it() {
    for outcome in [
        AttemptOutcome::Delivered,
        AttemptOutcome::Failed {
            error: "HTTP 500".into(),
        },
    ] {
        let ctx = Ctx::start().await;
        let (rec, sub, entry) = ctx.delivery_in_flight().await;
        let now = now_micros();
        go(&ctx, rec.id, "A", now).await;
        assert!(ctx.store.delete_subscription(sub.id).await.unwrap());

        let r = finish(&ctx, &rec, "A", &entry, &outcome, now + SEC).await;

        assert_eq!(r, FinishResult::Written, "{outcome:?}");
        assert!(
            !ctx.exists(&ctx.k().subscription(sub.id)).await,
            "{outcome:?}: no partial subscription hash"
        );
        assert!(entry_gone(&ctx, &entry).await);
    }
}

/// `n` deliveries in flight, each leased with token `T{i}` at `now`.
async fn leased(
    ctx: &Ctx,
    n: usize,
    now: Micros,
) -> (SubscriptionId, Vec<(DeliveryRecord, String)>) {
    let (sub, items) = ctx.deliveries_in_flight(n).await;
    for (i, (r, _)) in items.iter().enumerate() {
        go(ctx, r.id, &format!("T{i}"), now).await;
    }
    (sub.id, items)
}

/// One `begin_attempts` batch over every item at `now`, item `i` with token `T{i}`: the tokens and the answers.
async fn begin_all(
    ctx: &Ctx,
    items: &[(DeliveryRecord, String)],
    now: Micros,
) -> (Vec<String>, Vec<delivery_model::Result<BeginAttempt>>) {
    let tokens: Vec<String> = (0..items.len()).map(|i| format!("T{i}")).collect();
    let batch: Vec<BeginItem<'_>> = items
        .iter()
        .zip(&tokens)
        .map(|((r, entry), token)| BeginItem {
            id: r.id,
            token,
            entry_id: entry,
        })
        .collect();
    let got = ctx
        .store
        .begin_attempts(&batch, now, now + LEASE, Duration::ZERO)
        .await;
    (tokens, got)
}

/// The outcome of item `i` of `items` under `token`, telling the circuit of `host` `signal`.
fn finish_item(
    items: &[(DeliveryRecord, String)],
    i: usize,
    token: &str,
    outcome: AttemptOutcome,
    host: &str,
    signal: CircuitSignal,
) -> FinishItem {
    // Each item logs an attempt that names its index, so a test can tell whose line went where.
    let log = Some(AttemptLogEntry {
        attempt: items[i].0.attempts + 1,
        started_at: 1_000 + i as i64,
        duration_ms: i as u64,
        outcome: outcome.name().to_owned(),
        status_code: Some(200 + i as u16),
        error: outcome.error().map(str::to_owned),
    });
    FinishItem {
        id: items[i].0.id,
        subscription_id: items[i].0.subscription_id,
        token: token.to_owned(),
        entry_id: items[i].1.clone(),
        outcome,
        host: host.to_owned(),
        signal,
        log,
    }
}

#[tokio::test]
async fn a_begin_batch_answers_each_item_in_order_and_acknowledges_what_is_no_longer_work() {
    let ctx = Ctx::start().await;
    // The go and busy entries stay pending: their attempts are never finished here.
    ctx.allow_pending();
    let (sub, items) = ctx.deliveries_in_flight(5).await;
    let sub = ctx.store.get_subscription(sub.id).await.unwrap();
    let q = ctx.k().queue_stream(Shard::ZERO);
    let now = now_micros();
    // 0 and 4: go (one subscription, read once); 1: delivered by a callback; 2: expired; 3: leased elsewhere.
    ctx.hset(&ctx.k().delivery(items[1].0.id), field::STATUS, "delivered")
        .await;
    ctx.del(&ctx.k().delivery(items[2].0.id)).await;
    go(&ctx, items[3].0.id, "other", now).await;

    let (tokens, got) = begin_all(&ctx, &items, now + SEC).await;

    assert_eq!(got.len(), 5);
    for i in [0, 4] {
        match &got[i] {
            Ok(BeginAttempt::Go(l)) => {
                assert_eq!(l.record, items[i].0, "item {i}: the stored record");
                assert_eq!(l.subscription, sub, "item {i}: the stored subscription");
            }
            other => panic!("item {i}: expected Go, got {other:?}"),
        }
        assert_eq!(
            ctx.hget(&ctx.k().delivery(items[i].0.id), field::LEASE)
                .await
                .as_deref(),
            Some(tokens[i].as_str())
        );
    }
    assert!(matches!(
        got[1],
        Ok(BeginAttempt::Done(DeliveryStatus::Delivered))
    ));
    assert!(matches!(got[2], Ok(BeginAttempt::Missing)));
    assert!(matches!(got[3], Ok(BeginAttempt::Busy)));
    assert_eq!(
        ctx.hget(&ctx.k().delivery(items[3].0.id), field::LEASE)
            .await
            .as_deref(),
        Some("other"),
        "a live lease elsewhere is left alone"
    );

    // Done and missing entries are acknowledged and deleted; go and busy ones stay pending.
    let left = ctx.entry_ids(&q).await;
    let want: Vec<String> = [0, 3, 4].iter().map(|i| items[*i].1.clone()).collect();
    assert_eq!(left, want);
    assert_eq!(ctx.pending(&q, QUEUE_GROUP).await, 3);
}

#[tokio::test]
async fn a_finish_batch_writes_each_item_as_if_alone_and_fences_each_by_its_own_token() {
    let ctx = Ctx::start().await;
    // The fenced item's entry stays pending: only its lease holder, who never finishes here, acknowledges it.
    ctx.allow_pending();
    let q = ctx.k().queue_stream(Shard::ZERO);
    let now = now_micros();
    let (_sub, items) = leased(&ctx, 3, now).await;
    let item = |i: usize, token: &str, outcome: AttemptOutcome| {
        finish_item(
            &items,
            i,
            token,
            outcome,
            "receiver.test",
            CircuitSignal::Failure,
        )
    };
    let at = now + 60 * SEC;
    let batch = vec![
        item(0, "T0", AttemptOutcome::Delivered),
        item(1, "stale", AttemptOutcome::Delivered),
        item(
            2,
            "T2",
            AttemptOutcome::Retry {
                error: "HTTP 500: boom".into(),
                at,
            },
        ),
    ];
    let got = ctx
        .store
        .finish_attempts(&batch, &CircuitPolicy::default(), now + SEC)
        .await
        .unwrap();

    assert_eq!(
        got,
        vec![
            FinishResult::Written,
            FinishResult::Fenced,
            FinishResult::Written
        ]
    );
    let r0 = ctx.stored_delivery(items[0].0.id).await;
    assert_eq!((r0.status, r0.attempts), (DeliveryStatus::Delivered, 1));
    let r1 = ctx.stored_delivery(items[1].0.id).await;
    assert_eq!(
        (r1.status, r1.attempts),
        (DeliveryStatus::Pending, 0),
        "a fenced item writes nothing"
    );
    let r2 = ctx.stored_delivery(items[2].0.id).await;
    assert_eq!(
        (r2.status, r2.attempts, r2.next_retry_at),
        (DeliveryStatus::Pending, 1, Some(at))
    );
    assert_eq!(
        ctx.zall(&ctx.k().scheduled(Shard::ZERO)).await.len(),
        1,
        "the retry is scheduled"
    );
    // Only the fenced item's entry is still pending.
    let left = ctx.entry_ids(&q).await;
    assert_eq!(left, vec![items[1].1.clone()]);
    assert_eq!(ctx.pending(&q, QUEUE_GROUP).await, 1);
    // Items were applied in order: two failures reached the host's circuit (the fenced one did not).
    assert_eq!(
        ctx.hget(&ctx.k().circuit("receiver.test"), "failures")
            .await
            .as_deref(),
        Some("2")
    );
}

#[tokio::test]
async fn in_a_finish_batch_a_subscriptions_success_and_later_failure_count_in_order() {
    let ctx = Ctx::start().await;
    let now = now_micros();
    let (sub, items) = leased(&ctx, 3, now).await;
    let item = |i: usize, outcome: AttemptOutcome| {
        finish_item(
            &items,
            i,
            &format!("T{i}"),
            outcome,
            "",
            CircuitSignal::None,
        )
    };
    let failed = || AttemptOutcome::Failed {
        error: "HTTP 500".into(),
    };
    // success, failure: the failure counts after the success reset the counter.
    let batch = vec![item(0, AttemptOutcome::Delivered), item(1, failed())];
    ctx.store
        .finish_attempts(&batch, &CircuitPolicy::default(), now + SEC)
        .await
        .unwrap();
    let key = ctx.k().subscription(sub);
    assert_eq!(
        ctx.hget(&key, sub_field::PUBLICATION_FAILURES)
            .await
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        ctx.hget(&key, sub_field::LAST_SUCCESSFUL_USE).await,
        Some((now + SEC).to_string())
    );
    // A later failure counts on.
    let batch = vec![item(2, failed())];
    ctx.store
        .finish_attempts(&batch, &CircuitPolicy::default(), now + 2 * SEC)
        .await
        .unwrap();
    assert_eq!(
        ctx.hget(&key, sub_field::PUBLICATION_FAILURES)
            .await
            .as_deref(),
        Some("2")
    );
    ctx.assert_nothing_pending();
}

#[tokio::test]
async fn a_begin_batch_larger_than_a_chunk_answers_every_item_in_order() {
    let ctx = Ctx::start().await;
    // Every entry stays pending: the attempts are begun, never finished.
    ctx.allow_pending();
    let n = delivery_model::store::attempts::BEGIN_CHUNK * 2 + 7;
    let (_sub, items) = ctx.deliveries_in_flight(n).await;
    let (_, got) = begin_all(&ctx, &items, now_micros()).await;
    assert_eq!(got.len(), n);
    for (i, r) in got.iter().enumerate() {
        match r {
            Ok(BeginAttempt::Go(l)) => assert_eq!(l.record.id, items[i].0.id, "item {i}"),
            other => panic!("item {i}: expected Go, got {other:?}"),
        }
    }
    for (i, (r, _)) in items.iter().enumerate().step_by(37) {
        assert_eq!(
            ctx.hget(&ctx.k().delivery(r.id), field::LEASE).await,
            Some(format!("T{i}"))
        );
    }
}

#[tokio::test]
async fn the_attempt_log_keeps_each_records_latest_unfenced_attempts() {
    let ctx = Ctx::start().await;
    let (_sub, items) = ctx.deliveries_in_flight(2).await;
    let now = now_micros();
    let (tokens, _) = begin_all(&ctx, &items, now).await;
    // A batch: each record gets its own item's line.
    let batch: Vec<FinishItem> = (0..2)
        .map(|i| {
            finish_item(
                &items,
                i,
                &tokens[i],
                AttemptOutcome::Retry {
                    error: format!("HTTP 50{i}"),
                    at: now,
                },
                "",
                CircuitSignal::None,
            )
        })
        .collect();
    let r = ctx
        .store
        .finish_attempts(&batch, &CircuitPolicy::default(), now)
        .await
        .unwrap();
    assert_eq!(r, vec![FinishResult::Written; 2]);
    for (i, (rec, _)) in items.iter().enumerate() {
        let (got, log) = ctx
            .store
            .get_delivery_with_attempts(rec.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.attempts, 1);
        assert_eq!(
            log,
            vec![AttemptLogEntry {
                attempt: 1,
                started_at: 1_000 + i as i64,
                duration_ms: i as u64,
                outcome: "retry".into(),
                status_code: Some(200 + i as u16),
                error: Some(format!("HTTP 50{i}")),
            }]
        );
    }

    // Eleven more attempts of the first record: the log keeps the latest ten, oldest first.
    let one = &items[..1];
    for n in 2..=12u32 {
        let t = now + i64::from(n) * SEC;
        let token = format!("A{n}");
        go(&ctx, one[0].0.id, &token, t).await;
        let mut item = finish_item(
            one,
            0,
            &token,
            AttemptOutcome::Retry {
                error: format!("attempt {n}"),
                at: t,
            },
            "",
            CircuitSignal::None,
        );
        if let Some(l) = item.log.as_mut() {
            l.attempt = n;
        }
        let r = ctx
            .store
            .finish_attempts(&[item], &CircuitPolicy::default(), t)
            .await
            .unwrap();
        assert_eq!(r, vec![FinishResult::Written]);
    }
    let (_, log) = ctx
        .store
        .get_delivery_with_attempts(one[0].0.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        log.iter().map(|l| l.attempt).collect::<Vec<_>>(),
        (3..=12).collect::<Vec<_>>()
    );
    assert_eq!(log[9].error.as_deref(), Some("attempt 12"));

    // A fenced write (a token that no longer holds the lease) logs nothing.
    let stale = finish_item(
        one,
        0,
        "A2",
        AttemptOutcome::Delivered,
        "",
        CircuitSignal::None,
    );
    let r = ctx
        .store
        .finish_attempts(&[stale], &CircuitPolicy::default(), now + 20 * SEC)
        .await
        .unwrap();
    assert_eq!(r, vec![FinishResult::Fenced]);
    let (_, after) = ctx
        .store
        .get_delivery_with_attempts(one[0].0.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after, log);
}
