//! FIFO lanes on a real Redis Cluster: an ordered delivery's id is chosen so that it falls in its lane's
//! shard, so fan-out, the outcome, the skip and the sweep move a lane in one script each (the cluster's
//! script shebang refuses any second slot).

use std::collections::BTreeMap;

use delivery_model::delivery::DeliveryStatus;
use delivery_model::ids::DeliveryId;
use delivery_model::lane::{LaneOnFailure, Ordering, OrderingKey};
use delivery_model::store::{AttemptOutcome, Fanned, LaneSkip};
use delivery_model::subscription::SubscriptionStatus;
use delivery_model::time::now_micros;
use test_support::cluster::Cluster;

use crate::cluster_delivery::connect_with;
use crate::fair::{queued, work_once};
use crate::harness::subscription;
use crate::lanes::{event_of, fan_out, fan_out_counted, read_entries};

#[tokio::test]
async fn every_lane_lives_in_one_shard_and_drains_there_in_order() {
    let cluster = Cluster::start(3, 0);
    let (store, raw) = connect_with(&cluster, |_| {}).await;
    let k = store.keys().clone();
    let mut sub = subscription(SubscriptionStatus::Active, &["threat_model.created"]);
    sub.ordering = Some(Ordering {
        key: Some(OrderingKey::ObjectId),
        on_failure: LaneOnFailure::Block,
    });
    let objects: Vec<String> = (0..24).map(|i| format!("obj-{}", i % 6)).collect();
    let refs: Vec<&str> = objects.iter().map(String::as_str).collect();
    let entries = read_entries(&store, &refs).await;
    let (ids, fanned) = fan_out_counted(&store, &[&sub], &entries, &refs).await;
    // Per shard, each lane's deliveries after its first wait behind it: 6 lanes of 4.
    let waiting = Fanned {
        created: 24,
        lane_waiting: 18,
    };
    assert_eq!(fanned, waiting);

    // Each object's deliveries share its lane's shard; the lanes spread over several shards.
    let mut lanes: BTreeMap<&str, Vec<DeliveryId>> = BTreeMap::new();
    for (o, d) in refs.iter().zip(&ids) {
        lanes.entry(o).or_default().push(d[0]);
    }
    let mut shards = std::collections::BTreeSet::new();
    for (o, ds) in &lanes {
        let lane = sub.ordering.unwrap().lane_of(sub.id, &event_of(o)).id;
        let shard = k.shard_of_lane(&lane);
        assert!(ds.iter().all(|d| k.shard_of(*d) == shard), "{o}");
        shards.insert(shard);
    }
    assert!(shards.len() > 1, "{shards:?}");

    // Per shard only the heads are queued; delivering drains every lane in its order.
    for shard in k.shards() {
        let mut order = Vec::new();
        for _ in 0..10 {
            let q = queued(&raw, &store, shard).await;
            let heads = lanes
                .values()
                .filter(|ds| k.shard_of(ds[0]) == shard)
                .count();
            assert!(
                q.len() <= heads,
                "shard {shard}: {} queued, {heads} lanes",
                q.len()
            );
            order.extend(
                work_once(&store, shard, now_micros(), |_| AttemptOutcome::Delivered)
                    .await
                    .0,
            );
        }
        for ds in lanes.values().filter(|ds| k.shard_of(ds[0]) == shard) {
            let mine: Vec<DeliveryId> = order.iter().copied().filter(|d| ds.contains(d)).collect();
            assert_eq!(&mine, ds, "shard {shard}");
        }
    }

    // A blocked lane, then the administrator's skip, in the lane's shard.
    let more = fan_out(&store, &[&sub], &["obj-0", "obj-0"]).await;
    let shard = k.shard_of(more[0][0]);
    let failed = |_| AttemptOutcome::Failed {
        error: "HTTP 500".into(),
    };
    assert_eq!(
        work_once(&store, shard, now_micros(), failed).await.0,
        vec![more[0][0]]
    );
    let sweep = store.lane_sweep().await.unwrap();
    assert_eq!((sweep.lanes, sweep.blocked, sweep.depth), (1, 1, 2));
    let lane = sub.ordering.unwrap().lane_of(sub.id, &event_of("obj-0")).id;
    assert_eq!(
        store.skip_lane(&lane).await.unwrap(),
        LaneSkip::Skipped { head: more[0][0] }
    );
    let sent = work_once(&store, shard, now_micros(), |_| AttemptOutcome::Delivered)
        .await
        .0;
    assert_eq!(sent, vec![more[1][0]]);
    let last = store.get_delivery(more[1][0]).await.unwrap().unwrap();
    assert_eq!(last.status, DeliveryStatus::Delivered);
    assert_eq!(store.lane_sweep().await.unwrap().lanes, 0);
    store.quit().await;
}
