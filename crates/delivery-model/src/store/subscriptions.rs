//! Subscriptions: creation (with the first verification challenge), reads and listings, the status
//! compare-and-set that keeps every index true, failed challenges, deletion with its add-on cascade, and
//! the event-type match candidates the event-consumer fans out to.

use fred::prelude::*;

use super::{Page, Store, created_score, push_fields, read_each, scripts};
use crate::error::{Error, Result};
use crate::ids::SubscriptionId;
use crate::queue::{MESSAGE_FIELD, QueueMessage};
use crate::subscription::{Subscription, SubscriptionStatus};
use crate::time::Micros;
use crate::trace::TraceContext;

/// Result of a failed challenge ([`Store::challenge_failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeFailure {
    /// Another challenge is scheduled.
    Retry,
    /// That was the last one: the subscription is now `pending_delete`.
    Exhausted,
    /// The subscription is no longer pending verification (deleted, or verified meanwhile).
    Gone,
}

impl Store {
    /// The keys and leading arguments of every script that writes a new subscription (create, quota-checked
    /// create, import): the hash, its indexes, the queue, `extra_keys`, then the threat-model index if any;
    /// and id, score, queue message field, has-threat-model flag, and the challenge message (empty unless the
    /// subscription awaits verification; it carries `trace`, the context of the request creating it).
    pub(crate) fn subscription_write(
        &self,
        sub: &Subscription,
        extra_keys: Vec<String>,
        trace: Option<&TraceContext>,
    ) -> (Vec<String>, Vec<String>) {
        let k = self.keys();
        let challenge = if sub.status == SubscriptionStatus::PendingVerification {
            QueueMessage::ChallengeV1 {
                subscription_id: sub.id,
                trace: trace.cloned(),
            }
            .encode()
        } else {
            String::new()
        };
        let mut keys = vec![
            k.subscription(sub.id),
            k.subscriptions_all(),
            k.subscriptions_by_owner(&sub.owner_id),
            k.subscriptions_by_status(sub.status),
            k.challenge_queue(),
        ];
        keys.extend(extra_keys);
        if let Some(tm) = &sub.threat_model_id {
            keys.push(k.subscriptions_by_threat_model(tm));
        }
        let args = vec![
            sub.id.to_string(),
            created_score(sub.created_at),
            MESSAGE_FIELD.to_owned(),
            if sub.threat_model_id.is_some() {
                "1"
            } else {
                "0"
            }
            .to_owned(),
            challenge,
        ];
        (keys, args)
    }

    /// Stores a new subscription with its indexes; if it awaits verification, enqueues its first challenge
    /// in the same step so the worker sends it within moments.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn create_subscription(&self, sub: &Subscription) -> Result<bool> {
        let (keys, mut args) = self.subscription_write(sub, Vec::new(), None);
        push_fields(&mut args, sub, self.secrets())?;
        let created: i64 = scripts::CREATE_SUBSCRIPTION
            .run(self.pool(), keys, args)
            .await?;
        if created == 1 && sub.status == SubscriptionStatus::Active {
            // Imported or pinned subscriptions start active: put them in the match indexes.
            self.set_subscription_status(
                sub.id,
                SubscriptionStatus::Active,
                SubscriptionStatus::Active,
                sub.modified_at,
                false,
            )
            .await?;
        }
        Ok(created == 1)
    }

    /// Reads one subscription.
    ///
    /// # Errors
    /// Redis failure or a corrupt record.
    pub async fn get_subscription(&self, id: SubscriptionId) -> Result<Option<Subscription>> {
        self.read_hash(self.keys().subscription(id), |h| {
            self.decode_subscription(h)
        })
        .await
    }

    async fn get_subscriptions(&self, ids: &[String]) -> Result<Vec<Subscription>> {
        let ids = ids
            .iter()
            .filter_map(|id| id.parse::<SubscriptionId>().ok());
        read_each(ids, |id| self.get_subscription(id)).await
    }

    /// Lists subscriptions newest first, optionally only those filtered to threat model `tm`.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn list_subscriptions(
        &self,
        tm: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Subscription>> {
        let key = match tm {
            Some(tm) => self.keys().subscriptions_by_threat_model(tm),
            None => self.keys().subscriptions_all(),
        };
        let (ids, total) = self.zpage(&key, offset, limit, true).await?;
        Ok(Page {
            items: self.get_subscriptions(&ids).await?,
            total,
        })
    }

    /// How many subscriptions `owner` has, in any status (TMI's `max_subscriptions` quota).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn count_subscriptions_by_owner(&self, owner: &str) -> Result<u64> {
        Ok(self
            .pool()
            .scard(self.keys().subscriptions_by_owner(owner))
            .await?)
    }

    /// How many subscriptions are in `status` (one `SCARD`).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn count_subscriptions_by_status(&self, status: SubscriptionStatus) -> Result<u64> {
        Ok(self
            .pool()
            .scard(self.keys().subscriptions_by_status(status))
            .await?)
    }

    /// Ids of the subscriptions in `status` (small sets walked by cleanup).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn subscription_ids_by_status(
        &self,
        status: SubscriptionStatus,
    ) -> Result<Vec<SubscriptionId>> {
        let ids: Vec<String> = self
            .pool()
            .smembers(self.keys().subscriptions_by_status(status))
            .await?;
        Ok(ids.iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Deletes a subscription and its index entries, and its add-ons with theirs (TMI's cascade), in one step.
    /// Its deliveries expire by TTL.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn delete_subscription(&self, id: SubscriptionId) -> Result<bool> {
        let k = self.keys();
        let deleted: i64 = scripts::DELETE_SUBSCRIPTION
            .run(
                self.pool(),
                vec![
                    k.subscription(id),
                    k.subscriptions_all(),
                    k.addons_by_subscription(id),
                    k.addons_all(),
                    k.addons_unscoped(),
                    k.match_generation(),
                ],
                vec![
                    id.to_string(),
                    k.subscriptions_by_owner_prefix(),
                    k.subscriptions_by_status_prefix(),
                    k.subscriptions_by_threat_model_prefix(),
                    k.subscriptions_by_event_prefix(),
                    k.addon_prefix(),
                    k.addons_by_threat_model_prefix(),
                ],
            )
            .await?;
        Ok(deleted == 1)
    }

    /// Compare-and-set of a subscription's status; keeps every index true. Returns whether it changed.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn set_subscription_status(
        &self,
        id: SubscriptionId,
        expected: SubscriptionStatus,
        new: SubscriptionStatus,
        now: Micros,
        count_challenge: bool,
    ) -> Result<bool> {
        let k = self.keys();
        let changed: i64 = scripts::SET_SUBSCRIPTION_STATUS
            .run(
                self.pool(),
                vec![k.subscription(id), k.match_generation()],
                vec![
                    expected.as_str().to_owned(),
                    new.as_str().to_owned(),
                    now.to_string(),
                    k.subscriptions_by_status_prefix(),
                    k.subscriptions_by_event_prefix(),
                    id.to_string(),
                    if count_challenge { "1" } else { "0" }.to_owned(),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    /// Records a failed challenge: schedules the next one at `retry_at_ms`, or moves the subscription to
    /// `pending_delete` once `max_challenges` have been sent. The next challenge carries `trace` on.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn challenge_failed(
        &self,
        id: SubscriptionId,
        trace: Option<&TraceContext>,
        max_challenges: u32,
        retry_at_ms: i64,
        now: Micros,
    ) -> Result<ChallengeFailure> {
        let k = self.keys();
        let r: String = scripts::CHALLENGE_FAILED
            .run(
                self.pool(),
                vec![k.subscription(id), k.challenge_scheduled()],
                vec![
                    max_challenges.to_string(),
                    retry_at_ms.to_string(),
                    QueueMessage::ChallengeV1 {
                        subscription_id: id,
                        trace: trace.cloned(),
                    }
                    .encode(),
                    now.to_string(),
                    k.subscriptions_by_status_prefix(),
                    id.to_string(),
                ],
            )
            .await?;
        match r.as_str() {
            "retry" => Ok(ChallengeFailure::Retry),
            "exhausted" => Ok(ChallengeFailure::Exhausted),
            "gone" => Ok(ChallengeFailure::Gone),
            other => Err(Error::Script(other.to_owned())),
        }
    }

    /// The match generation: changes whenever the set of subscriptions an event can match changes (see
    /// [`Keyspace::match_generation`](crate::keys::Keyspace::match_generation)); 0 before the first change.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn match_generation(&self) -> Result<i64> {
        let g: Option<i64> = self.pool().get(self.keys().match_generation()).await?;
        Ok(g.unwrap_or(0))
    }

    /// The active subscriptions that list `event_type` or `*` — the only candidates an event can match.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn match_candidates(&self, event_type: &str) -> Result<Vec<Subscription>> {
        let k = self.keys();
        let ids: Vec<String> = self
            .pool()
            .sunion(vec![
                k.subscriptions_by_event(event_type),
                k.subscriptions_by_event(crate::event::WILDCARD),
            ])
            .await?;
        self.get_subscriptions(&ids).await
    }
}
