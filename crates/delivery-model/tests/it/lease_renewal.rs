//! Renewing an attempt's lease ([`delivery_model::store::Store::renew_lease`]): only the holder's token
//! renews it, and only while the record is pending.

use delivery_model::delivery::field;
use delivery_model::time::now_micros;

use crate::harness::{Ctx, LEASE, SEC, go};

#[tokio::test]
async fn only_the_holder_renews_a_pending_lease() {
    let ctx = Ctx::start().await;
    let (rec, _sub, _entry) = ctx.delivery_in_flight().await;
    // Its queue entry is not the point here.
    ctx.allow_pending();
    let key = ctx.k().delivery(rec.id);
    let now = now_micros();
    go(&ctx, rec.id, "A", now).await;
    let later = now + LEASE + 5 * SEC;

    assert!(!ctx.store.renew_lease(rec.id, "B", later).await.unwrap());
    assert_eq!(
        ctx.hget(&key, field::LEASE_UNTIL).await,
        Some((now + LEASE).to_string()),
        "another token changes nothing"
    );
    assert!(ctx.store.renew_lease(rec.id, "A", later).await.unwrap());
    assert_eq!(
        ctx.hget(&key, field::LEASE_UNTIL).await,
        Some(later.to_string())
    );
    ctx.hset(&key, field::STATUS, "delivered").await;
    assert!(
        !ctx.store
            .renew_lease(rec.id, "A", later + SEC)
            .await
            .unwrap(),
        "a finished record is not renewed"
    );
}
