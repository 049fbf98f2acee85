//! Attempts: the lease taken by `begin_attempt`, the outcomes written by `finish_attempt`, and the races the
//! lease and the status check settle (a worker that outlived its lease, a callback that came first).

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
    let q = ctx.k().queue_stream();
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

    let no_circuit = CircuitUpdate::none();
    let written = ctx.store.finish_attempt(
        &rec,
        "B",
        &entry,
        &AttemptOutcome::Delivered,
        &no_circuit,
        now + 4 * SEC + LEASE,
    );
    assert_eq!(written.await.unwrap(), FinishResult::Written);
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
    ctx.store.ack_queue(&[entry]).await.unwrap();
    ctx.assert_nothing_pending();
}

#[tokio::test]
async fn delivered_is_terminal_counts_the_attempt_and_acks_the_entry() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let (rec, sub, entry) = ctx.delivery_in_flight().await;
    ctx.hset(
        &k.subscription(sub.id),
        sub_field::PUBLICATION_FAILURES,
        "2",
    )
    .await;
    let now = now_micros();
    go(&ctx, rec.id, "A", now).await;

    let r = ctx
        .store
        .finish_attempt(
            &rec,
            "A",
            &entry,
            &AttemptOutcome::Delivered,
            &CircuitUpdate::none(),
            now + SEC,
        )
        .await
        .unwrap();

    assert_eq!(r, FinishResult::Written);
    let got = ctx.store.get_delivery(rec.id).await.unwrap().unwrap();
    assert_eq!((got.status, got.attempts), (DeliveryStatus::Delivered, 1));
    assert_eq!(
        (got.delivered_at, got.last_activity_at, got.next_retry_at),
        (Some(now + SEC), now + SEC, None)
    );
    assert_about(ttl_secs(&ctx, rec.id).await, TERMINAL_TTL);
    let member = rec.id.to_string();
    assert_eq!(
        ctx.zscore(&k.deliveries_by_status(DeliveryStatus::Pending), &member)
            .await,
        None
    );
    assert_eq!(
        ctx.zscore(&k.deliveries_by_status(DeliveryStatus::Delivered), &member)
            .await,
        Some(ms(rec.created_at))
    );
    let s = ctx.store.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(
        (s.last_successful_use, s.publication_failures),
        (Some(now + SEC), 0)
    );
    let h = ctx.hgetall(&k.delivery(rec.id)).await;
    assert!(
        !h.contains_key(field::LEASE) && !h.contains_key(field::LEASE_UNTIL),
        "lease released: {h:?}"
    );
    assert!(entry_gone(&ctx, &entry).await);
    assert!(ctx.zall(&k.scheduled()).await.is_empty());
}

#[tokio::test]
async fn retry_counts_the_attempt_and_schedules_the_next() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let (rec, sub, entry) = ctx.delivery_in_flight().await;
    let now = now_micros();
    go(&ctx, rec.id, "A", now).await;
    let at = now + 60 * SEC;

    let outcome = AttemptOutcome::Retry {
        error: "HTTP 500: boom".into(),
        at,
    };
    let r = ctx
        .store
        .finish_attempt(
            &rec,
            "A",
            &entry,
            &outcome,
            &CircuitUpdate::none(),
            now + SEC,
        )
        .await
        .unwrap();

    assert_eq!(r, FinishResult::Written);
    let got = ctx.store.get_delivery(rec.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.attempts, got.next_retry_at),
        (DeliveryStatus::Pending, 1, Some(at))
    );
    assert_eq!(
        (got.last_error.as_deref(), got.last_activity_at),
        (Some("HTTP 500: boom"), now + SEC)
    );
    assert_eq!(
        ctx.zall(&k.scheduled()).await,
        vec![(
            QueueMessage::DeliveryV1 {
                delivery_id: rec.id
            }
            .encode(),
            ms(at)
        )]
    );
    assert!(
        ctx.zscore(
            &k.deliveries_by_status(DeliveryStatus::Pending),
            &rec.id.to_string()
        )
        .await
        .is_some()
    );
    assert_about(ttl_secs(&ctx, rec.id).await, ACTIVE_TTL);
    assert!(entry_gone(&ctx, &entry).await);
    assert_eq!(
        ctx.store
            .get_subscription(sub.id)
            .await
            .unwrap()
            .unwrap()
            .publication_failures,
        0
    );

    // Until it is due, a stale queue message for it is not attempted.
    let early = ctx
        .store
        .begin_attempt(
            rec.id,
            "B",
            now + 2 * SEC,
            now + 2 * SEC + LEASE,
            Duration::ZERO,
        )
        .await;
    assert!(matches!(early.unwrap(), BeginAttempt::NotDue(t) if t == at));
    let again = go(&ctx, rec.id, "B", at).await;
    assert_eq!(again.attempts, 1);
}

#[tokio::test]
async fn reschedule_consumes_no_attempt() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let (rec, _sub, entry) = ctx.delivery_in_flight().await;
    let now = now_micros();
    go(&ctx, rec.id, "A", now).await;
    let at = now + 10 * SEC;

    let outcome = AttemptOutcome::Reschedule {
        error: "circuit open".into(),
        at,
    };
    let r = ctx
        .store
        .finish_attempt(&rec, "A", &entry, &outcome, &CircuitUpdate::none(), now)
        .await
        .unwrap();

    assert_eq!(r, FinishResult::Written);
    let got = ctx.store.get_delivery(rec.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.attempts, got.next_retry_at),
        (DeliveryStatus::Pending, 0, Some(at))
    );
    assert_eq!(
        ctx.zall(&k.scheduled()).await,
        vec![(
            QueueMessage::DeliveryV1 {
                delivery_id: rec.id
            }
            .encode(),
            ms(at)
        )]
    );
    assert!(entry_gone(&ctx, &entry).await);
}

#[tokio::test]
async fn failed_is_terminal_and_counts_a_publication_failure() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let (rec, sub, entry) = ctx.delivery_in_flight().await;
    let now = now_micros();
    go(&ctx, rec.id, "A", now).await;

    let outcome = AttemptOutcome::Failed {
        error: "HTTP 400".into(),
    };
    let r = ctx
        .store
        .finish_attempt(
            &rec,
            "A",
            &entry,
            &outcome,
            &CircuitUpdate::none(),
            now + SEC,
        )
        .await
        .unwrap();

    assert_eq!(r, FinishResult::Written);
    let got = ctx.store.get_delivery(rec.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.attempts, got.last_error.as_deref()),
        (DeliveryStatus::Failed, 1, Some("HTTP 400"))
    );
    assert_eq!((got.next_retry_at, got.delivered_at), (None, None));
    assert_about(ttl_secs(&ctx, rec.id).await, TERMINAL_TTL);
    assert_eq!(
        ctx.zscore(
            &k.deliveries_by_status(DeliveryStatus::Failed),
            &rec.id.to_string()
        )
        .await,
        Some(ms(rec.created_at))
    );
    assert_eq!(
        ctx.zscore(
            &k.deliveries_by_status(DeliveryStatus::Pending),
            &rec.id.to_string()
        )
        .await,
        None
    );
    let s = ctx.store.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!((s.publication_failures, s.last_successful_use), (1, None));
    assert!(entry_gone(&ctx, &entry).await);
    let done = ctx
        .store
        .begin_attempt(rec.id, "B", now + 2 * SEC, now + LEASE, Duration::ZERO)
        .await
        .unwrap();
    assert!(
        matches!(done, BeginAttempt::Done(DeliveryStatus::Failed)),
        "{done:?}"
    );
}

#[tokio::test]
async fn abandoned_fails_without_an_attempt_or_a_publication_failure() {
    let ctx = Ctx::start().await;
    let (rec, sub, entry) = ctx.delivery_in_flight().await;
    let now = now_micros();
    go(&ctx, rec.id, "A", now).await;

    let outcome = AttemptOutcome::Abandoned {
        error: "subscription not active".into(),
    };
    assert_eq!(
        ctx.store
            .finish_attempt(&rec, "A", &entry, &outcome, &CircuitUpdate::none(), now)
            .await
            .unwrap(),
        FinishResult::Written
    );

    let got = ctx.store.get_delivery(rec.id).await.unwrap().unwrap();
    assert_eq!((got.status, got.attempts), (DeliveryStatus::Failed, 0));
    assert_eq!(
        ctx.store
            .get_subscription(sub.id)
            .await
            .unwrap()
            .unwrap()
            .publication_failures,
        0
    );
    assert!(entry_gone(&ctx, &entry).await);
}

#[tokio::test]
async fn in_progress_awaits_callbacks_and_is_tracked_for_staleness() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let (rec, sub, entry) = ctx.delivery_in_flight().await;
    let now = now_micros();
    go(&ctx, rec.id, "A", now).await;

    let r = ctx
        .store
        .finish_attempt(
            &rec,
            "A",
            &entry,
            &AttemptOutcome::InProgress,
            &CircuitUpdate::none(),
            now + SEC,
        )
        .await
        .unwrap();

    assert_eq!(r, FinishResult::Written);
    let got = ctx.store.get_delivery(rec.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.attempts, got.delivered_at),
        (DeliveryStatus::InProgress, 1, None)
    );
    // The activity index is scored in microseconds.
    assert_eq!(
        ctx.zscore(&k.deliveries_activity(), &rec.id.to_string())
            .await,
        Some((now + SEC) as f64)
    );
    assert!(
        ctx.zscore(
            &k.deliveries_by_status(DeliveryStatus::InProgress),
            &rec.id.to_string()
        )
        .await
        .is_some()
    );
    assert_about(ttl_secs(&ctx, rec.id).await, ACTIVE_TTL);
    assert_eq!(
        ctx.store
            .get_subscription(sub.id)
            .await
            .unwrap()
            .unwrap()
            .last_successful_use,
        Some(now + SEC)
    );
    assert!(entry_gone(&ctx, &entry).await);
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

    let late = ctx
        .store
        .finish_attempt(
            &rec,
            "A",
            &entry,
            &AttemptOutcome::Delivered,
            &CircuitUpdate::none(),
            now + 3 * SEC,
        )
        .await
        .unwrap();

    assert_eq!(late, FinishResult::Fenced);
    assert_eq!(
        ctx.hgetall(&k.delivery(rec.id)).await,
        before,
        "nothing written"
    );
    assert_eq!(
        ctx.pending(&k.queue_stream(), QUEUE_GROUP).await,
        1,
        "the entry stays for B"
    );
    assert_eq!(
        ctx.store
            .get_subscription(sub.id)
            .await
            .unwrap()
            .unwrap()
            .last_successful_use,
        None
    );
    // A fenced retry schedules nothing either.
    let retry = AttemptOutcome::Retry {
        error: "late".into(),
        at: now,
    };
    assert_eq!(
        ctx.store
            .finish_attempt(
                &rec,
                "A",
                &entry,
                &retry,
                &CircuitUpdate::none(),
                now + 3 * SEC
            )
            .await
            .unwrap(),
        FinishResult::Fenced
    );
    assert!(ctx.zall(&k.scheduled()).await.is_empty());

    let r = ctx
        .store
        .finish_attempt(
            &rec,
            "B",
            &entry,
            &AttemptOutcome::Delivered,
            &CircuitUpdate::none(),
            now + 4 * SEC,
        )
        .await
        .unwrap();
    assert_eq!(r, FinishResult::Written);
    let got = ctx.store.get_delivery(rec.id).await.unwrap().unwrap();
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

        let r = ctx
            .store
            .finish_attempt(
                &rec,
                "A",
                &entry,
                &outcome,
                &CircuitUpdate::none(),
                now + SEC,
            )
            .await
            .unwrap();

        assert_eq!(r, FinishResult::Superseded, "{outcome:?}");
        let got = ctx.store.get_delivery(rec.id).await.unwrap().unwrap();
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
            ctx.zall(&k.scheduled()).await.is_empty(),
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

        let r = ctx
            .store
            .finish_attempt(
                &rec,
                "A",
                &entry,
                &outcome,
                &CircuitUpdate::none(),
                now + SEC,
            )
            .await
            .unwrap();

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
    let q = ctx.k().queue_stream();
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
    let q = ctx.k().queue_stream();
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
    let r0 = ctx
        .store
        .get_delivery(items[0].0.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r0.status, r0.attempts), (DeliveryStatus::Delivered, 1));
    let r1 = ctx
        .store
        .get_delivery(items[1].0.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r1.status, r1.attempts),
        (DeliveryStatus::Pending, 0),
        "a fenced item writes nothing"
    );
    let r2 = ctx
        .store
        .get_delivery(items[2].0.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r2.status, r2.attempts, r2.next_retry_at),
        (DeliveryStatus::Pending, 1, Some(at))
    );
    assert_eq!(
        ctx.zall(&ctx.k().scheduled()).await.len(),
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
