//! Delivery records: fan-out of input entries (create, enqueue and acknowledge in one script; per shard on a
//! cluster, in `fanout_shards.rs`), single
//! deliveries created with their queue or input-stream entry, routing of pre-created records, and reads.

use fred::prelude::*;

use super::lanes::lane_fanout_args;
use super::merged_pages::{ScoreRange, ShardList};
use super::{Page, Store, created_score, push_record, read_each, scripts};
use crate::delivery::{AttemptLogEntry, DeliveryRecord, DeliveryStatus};
use crate::error::Result;
use crate::event::StreamEvent;
use crate::ids::{DeliveryId, SubscriptionId};
use crate::keys::{EVENTS_GROUP, Layout, Shard};
use crate::lane::Lane;
use crate::queue::{MESSAGE_FIELD, QueueMessage};
use crate::time::Micros;
use crate::trace::TraceContext;

/// One input entry to fan out ([`Store::fanout_batch`]).
#[derive(Debug, Clone, Copy)]
pub struct FanoutEntry<'a> {
    pub entry_id: &'a str,
    pub event_type: &'a str,
    /// The body every delivery of this entry sends (empty when `subscriptions` is).
    pub envelope: &'a str,
    /// The subscriptions it matched; none still acknowledges the entry.
    pub subscriptions: &'a [SubscriptionId],
    /// The FIFO lane of each of `subscriptions` (`None`: unordered), in the same order; empty when none is
    /// ordered.
    pub lanes: &'a [Option<Lane>],
    /// The trace its deliveries continue (stored in each record), if any.
    pub trace: Option<&'a TraceContext>,
}

/// What a fan-out created ([`Store::fanout_batch_matched`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fanned {
    /// Deliveries created (an entry fanned out again creates nothing twice).
    pub created: u64,
    /// Of them, those that joined their FIFO lane behind an earlier delivery: deferred by their lane, they
    /// are queued when it moves on.
    pub lane_waiting: u64,
}

impl std::ops::AddAssign for Fanned {
    fn add_assign(&mut self, other: Self) {
        self.created += other.created;
        self.lane_waiting += other.lane_waiting;
    }
}

impl Fanned {
    /// The reply of the fan-out scripts: `{created, waiting}`; a negative count (the match generation
    /// moved: nothing written) is [`Error::StaleMatch`](crate::Error::StaleMatch).
    pub(super) fn from_reply(reply: &[i64]) -> Result<Self> {
        let unexpected = || crate::Error::Script(format!("fan-out answered {reply:?}"));
        let [created, waiting] = reply else {
            return Err(unexpected());
        };
        let Ok(created) = u64::try_from(*created) else {
            return Err(crate::Error::StaleMatch);
        };
        let lane_waiting = u64::try_from(*waiting).map_err(|_| unexpected())?;
        Ok(Self {
            created,
            lane_waiting,
        })
    }
}

impl FanoutEntry<'_> {
    /// The lane of the `i`-th subscription, if it is ordered.
    pub(super) fn lane(&self, i: usize) -> Option<&Lane> {
        self.lanes.get(i).and_then(Option::as_ref)
    }

    /// The script arguments of the entry's trace context: `traceparent`, `tracestate` (`''` when absent).
    pub(super) fn trace_args(&self) -> [String; 2] {
        let tp = self.trace.map(|t| t.traceparent.clone());
        let ts = self.trace.and_then(|t| t.tracestate.clone());
        [tp.unwrap_or_default(), ts.unwrap_or_default()]
    }
}

impl Store {
    /// Creates the deliveries of input entry `entry_id` for `subscriptions`, enqueues them, and acknowledges
    /// the entry — all in one step. See [`fanout_batch`](Self::fanout_batch).
    ///
    /// # Errors
    /// Redis failure (nothing was written).
    pub async fn fanout(
        &self,
        entry_id: &str,
        event_type: &str,
        envelope: &str,
        subscriptions: &[SubscriptionId],
        now: Micros,
    ) -> Result<u64> {
        let entry = FanoutEntry {
            entry_id,
            event_type,
            envelope,
            subscriptions,
            lanes: &[],
            trace: None,
        };
        self.fanout_batch(std::slice::from_ref(&entry), now).await
    }

    /// Creates the deliveries of several input entries, enqueues them, and acknowledges the entries — all in
    /// one step. Ids are deterministic, so running it again for the same entries creates nothing new. A
    /// subscription that stopped being active meanwhile is skipped. Returns how many were created. Callers
    /// keep chunks modest (tens of entries): the script runs without interruption.
    ///
    /// With replicas to wait for ([`AckWait`](super::AckWait)) the order changes: the script writes without
    /// acknowledging, `WAIT` confirms the writes, and only then are the entries acknowledged — so an entry is
    /// never acknowledged before its deliveries are on the replicas.
    ///
    /// On a cluster the deliveries are written per queue shard and the entries acknowledged after every
    /// shard's script succeeded (`docs/cluster.md` §4.1); the consumer passes only subscriptions it read as
    /// active, since their status lives in another slot.
    ///
    /// # Errors
    /// Redis failure (nothing was written, or, with replicas to wait for, written but the entries left
    /// pending), or [`Error::NotReplicated`](crate::Error::NotReplicated) (written, entries left pending).
    pub async fn fanout_batch(&self, entries: &[FanoutEntry<'_>], now: Micros) -> Result<u64> {
        Ok(self.fanout_batch_matched(entries, now, None).await?.created)
    }

    /// Whether [`fanout_batch_matched`](Self::fanout_batch_matched) checks the match generation in its
    /// script (one node). On a cluster the generation lives in the control slot, apart from the shards the
    /// deliveries are written to, so a caller that matched against a cached list reads the generation itself.
    pub fn fanout_checks_match_generation(&self) -> bool {
        self.keys().layout() == Layout::Standalone
    }

    /// [`fanout_batch`](Self::fanout_batch) for entries matched against subscriptions read at match
    /// generation `generation` ([`match_generation`](Self::match_generation)). On one node the script
    /// writes nothing when the generation has moved since, so a consumer that keeps its candidate list
    /// between batches needs no read of the generation per batch; on a cluster it is not checked (see
    /// [`fanout_checks_match_generation`](Self::fanout_checks_match_generation)). Also tells how many of the
    /// deliveries wait in their FIFO lane.
    ///
    /// # Errors
    /// As [`fanout_batch`](Self::fanout_batch), and [`Error::StaleMatch`](crate::Error::StaleMatch) (nothing
    /// written) when the generation moved.
    pub async fn fanout_batch_matched(
        &self,
        entries: &[FanoutEntry<'_>],
        now: Micros,
        generation: Option<i64>,
    ) -> Result<Fanned> {
        if entries.is_empty() {
            return Ok(Fanned::default());
        }
        let k = self.keys();
        if k.layout() != Layout::Standalone {
            return self.fanout_sharded(entries, now).await;
        }
        let shard = Shard::ZERO;
        let mut args = vec![
            EVENTS_GROUP.to_owned(),
            now.to_string(),
            created_score(now),
            self.inner.active_ttl_secs.to_string(),
            k.delivery_prefix(shard),
            k.subscription_prefix(),
            k.deliveries_by_subscription_prefix(shard),
            k.deliveries_by_event_prefix(shard),
            MESSAGE_FIELD.to_owned(),
            // With replicas to wait for, the entries are acknowledged only after they confirmed the writes.
            if self.ack_wait().is_on() { "0" } else { "1" }.to_owned(),
        ];
        args.extend(self.fair_args(shard));
        args.extend(self.lane_args(shard));
        args.push(generation.map(|g| g.to_string()).unwrap_or_default());
        for e in entries {
            args.push(e.entry_id.to_owned());
            args.push(e.event_type.to_owned());
            args.push(e.envelope.to_owned());
            args.extend(e.trace_args());
            args.push(e.subscriptions.len().to_string());
            for (i, sub) in e.subscriptions.iter().enumerate() {
                let lane = e.lane(i);
                let id = self.fanout_id(e.entry_id, *sub, lane);
                args.push(sub.to_string());
                args.push(id.to_string());
                args.push(QueueMessage::DeliveryV1 { delivery_id: id }.encode());
                args.extend(lane_fanout_args(lane, e.entry_id));
            }
        }
        let keys = vec![
            k.events_stream().to_owned(),
            k.queue_stream(shard),
            k.deliveries_all(shard),
            k.deliveries_by_status(shard, DeliveryStatus::Pending),
            k.fair_parking(shard),
            k.match_generation(),
        ];
        let client = self.writer();
        let reply: Vec<i64> = scripts::FANOUT.run_on(&client, keys, args).await?;
        let fanned = Fanned::from_reply(&reply)?;
        if self.ack_wait().is_on() {
            // The deliveries are written but the entries still pending: if the replicas do not confirm, the
            // error leaves them pending and the consumer fans them out again (same ids, nothing twice).
            // One node (a cluster takes `fanout_sharded`): one `WAIT`, no names needed.
            self.confirm(&client, &[]).await?;
            let ids: Vec<String> = entries.iter().map(|e| e.entry_id.to_owned()).collect();
            let _: i64 = client
                .xack(self.keys().events_stream(), EVENTS_GROUP, ids)
                .await?;
        }
        Ok(fanned)
    }

    pub(super) fn record_index_keys(&self, r: &DeliveryRecord) -> Vec<String> {
        let k = self.keys();
        let shard = k.shard_of(r.id);
        let mut keys = vec![
            k.deliveries_all(shard),
            k.deliveries_by_subscription(shard, r.subscription_id),
            k.deliveries_by_status(shard, r.status),
            k.deliveries_by_event(shard, &r.event_type),
        ];
        if let Some(a) = r.addon_id {
            keys.push(k.deliveries_by_addon(shard, a));
        }
        keys
    }

    /// Creates a `pending` delivery record (test deliveries) and enqueues it for the worker, atomically.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn create_and_enqueue_delivery(&self, record: &DeliveryRecord) -> Result<bool> {
        let k = self.keys();
        let msg = QueueMessage::DeliveryV1 {
            delivery_id: record.id,
        }
        .encode();
        self.create_delivery_then_append(
            record,
            k.queue_stream(k.shard_of(record.id)),
            vec![(MESSAGE_FIELD.to_owned(), msg)],
        )
        .await
    }

    /// Creates a `pending` record and emits `event` on the input stream in the same step (addon
    /// invocations: the event-consumer routes the pre-created record to the worker).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn create_delivery_and_emit(
        &self,
        record: &DeliveryRecord,
        event: &StreamEvent,
    ) -> Result<bool> {
        let fields = event
            .to_fields()
            .into_iter()
            .map(|(f, v)| (f.to_owned(), v))
            .collect();
        self.create_delivery_then_append(record, self.keys().events_stream().to_owned(), fields)
            .await
    }

    async fn create_delivery_then_append(
        &self,
        record: &DeliveryRecord,
        stream: String,
        entry: Vec<(String, String)>,
    ) -> Result<bool> {
        let k = self.keys();
        let registry = k.delivery_index_registry(k.shard_of(record.id));
        let mut keys = vec![k.delivery(record.id), stream, registry];
        keys.extend(self.record_index_keys(record));
        let ttl = if record.status.is_terminal() {
            self.inner.terminal_ttl_secs
        } else {
            self.inner.active_ttl_secs
        };
        let mut args = vec![ttl.to_string()];
        push_record(&mut args, record);
        for (f, v) in entry {
            args.push(f);
            args.push(v);
        }
        let created: i64 = scripts::CREATE_DELIVERY
            .run(self.pool(), keys, args)
            .await?;
        Ok(created == 1)
    }

    /// Routes the pre-created delivery `id` named by input entry `entry_id` (an `addon.invoked` event) to the
    /// worker and acknowledges the entry, in one step. Returns whether it was enqueued (false: the record is
    /// gone or no longer pending).
    /// On a cluster: enqueued once by the record's `routed` flag, then the entry acknowledged.
    ///
    /// # Errors
    /// Redis failure (nothing was written).
    pub async fn route_existing(&self, entry_id: &str, id: DeliveryId) -> Result<bool> {
        let k = self.keys();
        if k.layout() != Layout::Standalone {
            return self.route_existing_sharded(entry_id, id).await;
        }
        let routed: i64 = scripts::ROUTE_EXISTING
            .run(
                self.pool(),
                vec![
                    k.delivery(id),
                    k.queue_stream(k.shard_of(id)),
                    k.events_stream().to_owned(),
                ],
                vec![
                    EVENTS_GROUP.to_owned(),
                    entry_id.to_owned(),
                    MESSAGE_FIELD.to_owned(),
                    QueueMessage::DeliveryV1 { delivery_id: id }.encode(),
                ],
            )
            .await?;
        Ok(routed == 1)
    }

    /// Reads one delivery record.
    ///
    /// # Errors
    /// Redis failure or a corrupt record.
    pub async fn get_delivery(&self, id: DeliveryId) -> Result<Option<DeliveryRecord>> {
        self.read_hash(self.keys().delivery(id), DeliveryRecord::from_hash)
            .await
    }

    /// A delivery with its attempt log (oldest first), or `None` when the record does not exist.
    ///
    /// # Errors
    /// Redis failure or a corrupt record.
    pub async fn get_delivery_with_attempts(
        &self,
        id: DeliveryId,
    ) -> Result<Option<(DeliveryRecord, Vec<AttemptLogEntry>)>> {
        self.read_hash(self.keys().delivery(id), |h| {
            let log = h
                .get(crate::delivery::field::ATTEMPT_LOG)
                .map(|l| AttemptLogEntry::parse_log(l))
                .unwrap_or_default();
            Ok((DeliveryRecord::from_hash(h)?, log))
        })
        .await
    }

    /// Lists deliveries oldest first (TMI's order), optionally of one subscription. On a cluster the
    /// shards' indexes are merged (`docs/cluster.md` §4.5, `store/merged_pages.rs`).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn list_deliveries(
        &self,
        subscription: Option<SubscriptionId>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<DeliveryRecord>> {
        let k = self.keys();
        let index = |shard| match subscription {
            Some(s) => k.deliveries_by_subscription(shard, s),
            None => k.deliveries_all(shard),
        };
        if k.layout() != Layout::Standalone {
            let lists: Vec<ShardList> = k
                .shards()
                .map(|shard| ShardList {
                    key: index(shard),
                    indexes: vec![index(shard)],
                })
                .collect();
            let all = ScoreRange {
                from_ms: None,
                to_ms: None,
            };
            return self.merged_page(&lists, all, offset, limit).await;
        }
        let (ids, total) = self
            .zpage(&index(Shard::ZERO), offset, limit, false)
            .await?;
        let ids = ids.iter().filter_map(|id| id.parse::<DeliveryId>().ok());
        let items = read_each(ids, |id| self.get_delivery(id)).await?;
        Ok(Page { items, total })
    }
}
