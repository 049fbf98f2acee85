//! Fan-out and routing in cluster mode (`docs/cluster.md` §4.1): the deliveries of a batch of input entries
//! are created per queue shard, one script per shard that gets any, and the entries are acknowledged only
//! after every shard's script succeeded. The single-node path ([`Store::fanout_batch`] on one node) does
//! both in one script; here the input stream and the shards are different slots.

use std::collections::BTreeMap;

use fred::prelude::*;

use super::lanes::lane_fanout_args;
use super::{Store, created_score, scripts};
use crate::error::Result;
use crate::ids::{DeliveryId, SubscriptionId};
use crate::keys::{EVENTS_GROUP, Shard};
use crate::lane::Lane;
use crate::queue::{MESSAGE_FIELD, QueueMessage};
use crate::time::Micros;

use super::FanoutEntry;
use super::deliveries::Fanned;

/// One entry's deliveries that one shard owns.
struct ShardPart<'a> {
    entry: &'a FanoutEntry<'a>,
    /// (subscription, delivery id, its FIFO lane if ordered).
    deliveries: Vec<(SubscriptionId, DeliveryId, Option<&'a Lane>)>,
}

impl Store {
    /// [`Store::fanout_batch`] on a cluster: one `fanout_shard` script per shard with deliveries (run
    /// concurrently), then one `XACK` of every entry. A failed shard call leaves every entry pending; the
    /// consumer reprocesses them, and the shards that succeeded find their records and create nothing twice.
    pub(super) async fn fanout_sharded(
        &self,
        entries: &[FanoutEntry<'_>],
        now: Micros,
    ) -> Result<Fanned> {
        let k = self.keys();
        let mut shards: BTreeMap<Shard, Vec<ShardPart<'_>>> = BTreeMap::new();
        for entry in entries {
            for (i, sub) in entry.subscriptions.iter().enumerate() {
                let lane = entry.lane(i);
                let id = self.fanout_id(entry.entry_id, *sub, lane);
                let parts = shards.entry(k.shard_of(id)).or_default();
                match parts.last_mut() {
                    Some(part) if std::ptr::eq(part.entry, entry) => {
                        part.deliveries.push((*sub, id, lane))
                    }
                    _ => parts.push(ShardPart {
                        entry,
                        deliveries: vec![(*sub, id, lane)],
                    }),
                }
            }
        }
        // One client for the shards' writes and the `WAIT`s that confirm them (one connection per master).
        let client = self.writer();
        let calls = shards
            .iter()
            .map(|(shard, parts)| self.fanout_shard(&client, *shard, parts, now));
        let mut fanned = Fanned::default();
        for shard in futures::future::try_join_all(calls).await? {
            fanned += shard;
        }
        // With replicas to wait for, the entries are acknowledged only after every shard's writes are
        // confirmed: if one is not, the entries stay pending and are fanned out again (nothing twice).
        let queues: Vec<String> = shards.keys().map(|s| k.queue_stream(*s)).collect();
        let written: Vec<&str> = queues.iter().map(String::as_str).collect();
        self.confirm(&client, &written).await?;
        let ids: Vec<String> = entries.iter().map(|e| e.entry_id.to_owned()).collect();
        let _: i64 = client.xack(k.events_stream(), EVENTS_GROUP, ids).await?;
        Ok(fanned)
    }

    async fn fanout_shard(
        &self,
        client: &Client,
        shard: Shard,
        parts: &[ShardPart<'_>],
        now: Micros,
    ) -> Result<Fanned> {
        let k = self.keys();
        let mut args = vec![
            now.to_string(),
            created_score(now),
            self.inner.active_ttl_secs.to_string(),
            k.delivery_prefix(shard),
            k.deliveries_by_subscription_prefix(shard),
            k.deliveries_by_event_prefix(shard),
            MESSAGE_FIELD.to_owned(),
        ];
        args.extend(self.fair_args(shard));
        args.extend(self.lane_args(shard));
        for part in parts {
            args.push(part.entry.event_type.to_owned());
            args.push(part.entry.envelope.to_owned());
            args.extend(part.entry.trace_args());
            args.push(part.deliveries.len().to_string());
            for (sub, id, lane) in &part.deliveries {
                args.push(sub.to_string());
                args.push(id.to_string());
                args.push(QueueMessage::DeliveryV1 { delivery_id: *id }.encode());
                args.extend(lane_fanout_args(*lane, part.entry.entry_id));
            }
        }
        let keys = vec![
            k.queue_stream(shard),
            k.deliveries_all(shard),
            k.deliveries_by_status(shard, crate::delivery::DeliveryStatus::Pending),
            k.delivery_index_registry(shard),
            k.fair_parking(shard),
        ];
        let reply: Vec<i64> = scripts::FANOUT_SHARD.run_on(client, keys, args).await?;
        Fanned::from_reply(&reply)
    }

    /// [`Store::route_existing`] on a cluster: enqueue once (the record's `routed` flag), then acknowledge.
    pub(super) async fn route_existing_sharded(
        &self,
        entry_id: &str,
        id: DeliveryId,
    ) -> Result<bool> {
        let k = self.keys();
        let client = self.writer();
        let routed: i64 = scripts::ROUTE_EXISTING_SHARD
            .run_on(
                &client,
                vec![k.delivery(id), k.queue_stream(k.shard_of(id))],
                vec![
                    MESSAGE_FIELD.to_owned(),
                    QueueMessage::DeliveryV1 { delivery_id: id }.encode(),
                ],
            )
            .await?;
        self.confirm(&client, &[&k.delivery(id)]).await?;
        let _: i64 = client
            .xack(k.events_stream(), EVENTS_GROUP, entry_id)
            .await?;
        Ok(routed == 1)
    }
}
