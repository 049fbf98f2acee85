//! Fair sharing on a real Redis Cluster: every shard keeps its own share, parked list and parking set in
//! its slot, so fan-out, the lease, the outcome, promotion and the sweep move deliveries in one script each
//! (the cluster's script shebang refuses any second slot).

use std::collections::BTreeMap;

use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::time::now_micros;
use test_support::cluster::Cluster;

use crate::cluster_delivery::connect_with;
use crate::fair::{drain, entries, fan_out, parked, queued};

#[tokio::test]
async fn each_shard_keeps_a_share_parks_the_rest_and_releases_it_in_order() {
    let cluster = Cluster::start(3, 0);
    let (store, raw) = connect_with(&cluster, |o| o.fair_share = 2).await;
    let k = store.keys().clone();
    let busy = SubscriptionId::new_v4();
    let calm = SubscriptionId::new_v4();
    let backlog = fan_out(&store, busy, &entries(1, 48)).await;
    let later = fan_out(&store, calm, &entries(2, 1)).await;

    // Per shard, in fan-out order: the first two queued, the rest parked.
    let mut by_shard: BTreeMap<u16, Vec<DeliveryId>> = BTreeMap::new();
    for id in &backlog {
        by_shard
            .entry(k.shard_of(*id).index())
            .or_default()
            .push(*id);
    }
    assert!(by_shard.len() > 1, "{by_shard:?}");
    for shard in k.shards() {
        let mine = by_shard.get(&shard.index()).cloned().unwrap_or_default();
        let split = mine.len().min(2);
        let mut expected = mine[..split].to_vec();
        if k.shard_of(later[0]) == shard {
            expected.push(later[0]);
        }
        assert_eq!(
            queued(&raw, &store, shard).await,
            expected,
            "shard {}",
            shard.index()
        );
        assert_eq!(
            parked(&raw, &store, shard, busy).await,
            mine[split..].to_vec()
        );
    }

    // Drained shard by shard: each delivery once, each shard's in its fan-out order.
    for shard in k.shards() {
        let order = drain(&raw, &store, shard, busy, 2).await;
        let mine = by_shard.get(&shard.index()).cloned().unwrap_or_default();
        let busy_order: Vec<DeliveryId> =
            order.iter().copied().filter(|id| *id != later[0]).collect();
        assert_eq!(busy_order, mine, "shard {}", shard.index());
    }
    let sweep = store.fair_sweep(now_micros()).await.unwrap();
    assert_eq!((sweep.parking, sweep.parked, sweep.moved), (0, 0, 0));
    // Promotion runs over every shard's schedule and the challenges' (no fair keys there).
    assert_eq!(
        store.promote_due(now_micros() / 1000, 100).await.unwrap(),
        0
    );
    store.quit().await;
}
