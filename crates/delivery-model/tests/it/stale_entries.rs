//! Queue entries that are no longer work: a `not_due` entry (promoted early by a worker whose clock runs
//! ahead) is acknowledged and goes back on the schedule at its due time, so the delivery is not lost.

use delivery_model::keys::Shard;
use std::time::Duration;

use delivery_model::delivery::field;
use delivery_model::queue::QueueMessage;
use delivery_model::store::{BeginAttempt, BeginItem};
use delivery_model::time::now_micros;

use crate::harness::{Ctx, LEASE, SEC};

#[tokio::test]
async fn a_not_due_entry_goes_back_on_the_schedule_at_its_due_time() {
    let ctx = Ctx::start().await;
    let (rec, _sub, entry) = ctx.delivery_in_flight().await;
    let now = now_micros();
    // Due in a minute plus a fraction of a millisecond: the schedule's score rounds up, never early.
    let due = now + 60 * SEC + 400;
    ctx.hset(
        &ctx.k().delivery(rec.id),
        field::NEXT_RETRY_AT,
        &due.to_string(),
    )
    .await;
    let item = BeginItem {
        id: rec.id,
        token: "T",
        entry_id: &entry,
    };
    let got = ctx
        .store
        .begin_attempts(&[item], now, now + LEASE, Duration::from_secs(2))
        .await
        .pop()
        .unwrap()
        .unwrap();
    assert!(
        matches!(got, BeginAttempt::NotDue(at) if at == due),
        "{got:?}"
    );

    let msg = QueueMessage::DeliveryV1 {
        delivery_id: rec.id,
    }
    .encode();
    let want_ms = (due + 999) / 1000;
    assert_eq!(
        ctx.zall(&ctx.k().scheduled(Shard::ZERO)).await,
        vec![(msg, want_ms as f64)],
        "the delivery is back on the schedule at its due time"
    );
    assert!(
        ctx.entries(&ctx.k().queue_stream(Shard::ZERO))
            .await
            .is_empty(),
        "its stale queue entry is acknowledged and deleted"
    );
}
