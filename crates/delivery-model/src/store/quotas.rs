//! Per-owner quota overrides and the subscription-create quota (issue #6).
//!
//! - Overrides are hashes (`webhook:quota:{owner}`, `addon:quota:{owner}`) indexed by a ZSET each
//!   (`webhook:quotas`, `addon:quotas`, score = created_at ms); put and delete are single scripts so the index
//!   never disagrees with the rows. The `migrate` command imports TMI's tables through the same methods.
//! - [`Store::create_subscription_within_quota`] checks the owner's subscription count and the per-minute and
//!   per-day windows of successful creates (TMI's key names, so TMI's test harness can clear them) and creates
//!   the subscription, in one script.

use fred::types::Value;

use super::{Page, Store, created_score, read_each, scripts};
use crate::error::{Error, Result};
use crate::quota::{AddonQuota, WebhookQuota};
use crate::subscription::{Subscription, SubscriptionStatus};
use crate::time::Micros;

/// Length of the per-minute window of subscription creates, seconds (TMI).
pub const MINUTE_WINDOW_SECS: i64 = 60;
/// Length of the per-day window of subscription creates, seconds (TMI).
pub const DAY_WINDOW_SECS: i64 = 86_400;

/// The limits a subscription create is checked against (the owner's override, else the defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionLimits {
    pub max_subscriptions: u32,
    pub per_minute: u32,
    pub per_day: u32,
}

/// The owner's per-minute window as the create left it (for TMI's `X-RateLimit-*` headers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinuteWindow {
    /// Entries in the window (including this create when it succeeded).
    pub count: u64,
    /// Unix seconds of the oldest entry, if any.
    pub oldest_secs: Option<i64>,
}

/// Result of [`Store::create_subscription_within_quota`]. A refusal writes nothing (beyond dropping window
/// entries that have aged out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaCreate {
    Created {
        minute: MinuteWindow,
    },
    /// The owner already has `current` subscriptions (any status).
    SubscriptionLimit {
        current: u64,
        minute: MinuteWindow,
    },
    /// `current` creates in the last minute; the oldest at `oldest_secs`.
    MinuteLimit {
        current: u64,
        oldest_secs: Option<i64>,
        minute: MinuteWindow,
    },
    /// `current` creates in the last day; the oldest at `oldest_secs`.
    DayLimit {
        current: u64,
        oldest_secs: Option<i64>,
        minute: MinuteWindow,
    },
}

fn text(v: Option<Value>) -> String {
    v.and_then(|v| v.as_string()).unwrap_or_default()
}

/// A ZSET score as Redis returns it ("1775044800"), as whole seconds.
fn score_secs(s: &str) -> Option<i64> {
    s.parse::<f64>().ok().map(|f| f as i64)
}

fn hash_args(owner: &str, created_at: Micros, fields: Vec<(&'static str, String)>) -> Vec<String> {
    let mut args = vec![owner.to_owned(), created_score(created_at)];
    for (f, v) in fields {
        args.push(f.to_owned());
        args.push(v);
    }
    args
}

impl Store {
    /// Stores (inserts or replaces) a quota override hash and its index entry (both kinds of quota).
    async fn put_quota(
        &self,
        key: String,
        index: String,
        owner: &str,
        created_at: Micros,
        fields: Vec<(&'static str, String)>,
    ) -> Result<()> {
        let _: i64 = scripts::PUT_QUOTA
            .run(
                self.pool(),
                vec![key, index],
                hash_args(owner, created_at, fields),
            )
            .await?;
        Ok(())
    }

    /// Deletes a quota override hash and its index entry; returns whether there was one.
    async fn delete_quota(&self, key: String, index: String, owner: &str) -> Result<bool> {
        let n: i64 = scripts::DELETE_QUOTA
            .run(self.pool(), vec![key, index], vec![owner.to_owned()])
            .await?;
        Ok(n == 1)
    }

    /// Stores (inserts or replaces) an owner's webhook quota override, with its index entry.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn put_webhook_quota(&self, q: &WebhookQuota) -> Result<()> {
        let k = self.keys();
        self.put_quota(
            k.webhook_quota(&q.owner_id),
            k.webhook_quotas(),
            &q.owner_id,
            q.created_at,
            q.to_fields(),
        )
        .await
    }

    /// An owner's webhook quota override; `None` when the owner has none (the defaults apply).
    ///
    /// # Errors
    /// Redis failure or a corrupt row.
    pub async fn get_webhook_quota(&self, owner: &str) -> Result<Option<WebhookQuota>> {
        self.read_hash(self.keys().webhook_quota(owner), WebhookQuota::from_hash)
            .await
    }

    /// Deletes an owner's webhook quota override; returns whether there was one.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn delete_webhook_quota(&self, owner: &str) -> Result<bool> {
        let k = self.keys();
        self.delete_quota(k.webhook_quota(owner), k.webhook_quotas(), owner)
            .await
    }

    /// Lists webhook quota overrides newest first (TMI: `created_at DESC`).
    ///
    /// # Errors
    /// Redis failure or a corrupt row.
    pub async fn list_webhook_quotas(&self, offset: u64, limit: u64) -> Result<Page<WebhookQuota>> {
        let (owners, total) = self
            .zpage(&self.keys().webhook_quotas(), offset, limit, true)
            .await?;
        let items = read_each(&owners, |o| self.get_webhook_quota(o)).await?;
        Ok(Page { items, total })
    }

    /// Stores (inserts or replaces) an invoker's add-on quota override, with its index entry.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn put_addon_quota(&self, q: &AddonQuota) -> Result<()> {
        let k = self.keys();
        self.put_quota(
            k.addon_quota(&q.owner_id),
            k.addon_quotas(),
            &q.owner_id,
            q.created_at,
            q.to_fields(),
        )
        .await
    }

    /// An invoker's add-on quota override; `None` when there is none (`[addons]` applies).
    ///
    /// # Errors
    /// Redis failure or a corrupt row.
    pub async fn get_addon_quota(&self, owner: &str) -> Result<Option<AddonQuota>> {
        self.read_hash(self.keys().addon_quota(owner), AddonQuota::from_hash)
            .await
    }

    /// Deletes an invoker's add-on quota override; returns whether there was one.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn delete_addon_quota(&self, owner: &str) -> Result<bool> {
        let k = self.keys();
        self.delete_quota(k.addon_quota(owner), k.addon_quotas(), owner)
            .await
    }

    /// Lists add-on quota overrides newest first.
    ///
    /// # Errors
    /// Redis failure or a corrupt row.
    pub async fn list_addon_quotas(&self, offset: u64, limit: u64) -> Result<Page<AddonQuota>> {
        let (owners, total) = self
            .zpage(&self.keys().addon_quotas(), offset, limit, true)
            .await?;
        let items = read_each(&owners, |o| self.get_addon_quota(o)).await?;
        Ok(Page { items, total })
    }

    /// Creates a subscription awaiting verification (enqueueing its first challenge) if its owner's quota
    /// allows it, all in one step: the owner's subscription count (any status), then the per-minute and
    /// per-day windows of successful creates; the create then takes one entry in each window. Refused
    /// creates record nothing.
    ///
    /// # Errors
    /// Redis failure (nothing was written), a subscription that is not `pending_verification`, an id
    /// that exists already, or [`Error::NotReplicated`] (created, not yet confirmed by replicas).
    pub async fn create_subscription_within_quota(
        &self,
        sub: &Subscription,
        limits: &SubscriptionLimits,
        now: Micros,
        trace: Option<&crate::trace::TraceContext>,
    ) -> Result<QuotaCreate> {
        if sub.status != SubscriptionStatus::PendingVerification {
            // Imported or pinned subscriptions go through `create_subscription`, outside any quota.
            return Err(Error::Script(format!(
                "create_subscription_within_quota: status {} is not pending_verification",
                sub.status
            )));
        }
        let k = self.keys();
        let now_secs = now.div_euclid(1_000_000);
        // TMI's member is "<unix>:<unixnano>"; a random sub-microsecond part keeps two creates in the same
        // microsecond apart.
        let nanos = now
            .saturating_mul(1000)
            .saturating_add(i64::from(rand::random::<u16>() % 1000));
        let (keys, mut args) = self.subscription_write(
            sub,
            vec![
                k.subscription_rate_minute(&sub.owner_id),
                k.subscription_rate_day(&sub.owner_id),
            ],
            trace,
        );
        args.extend([
            now_secs.to_string(),
            format!("{now_secs}:{nanos}"),
            limits.max_subscriptions.to_string(),
            limits.per_minute.to_string(),
            limits.per_day.to_string(),
        ]);
        super::push_fields(&mut args, sub, self.secrets())?;
        let written = k.subscription(sub.id);
        let client = self.writer();
        let reply: Vec<Value> = scripts::CREATE_SUBSCRIPTION_QUOTA
            .run_on(&client, keys, args)
            .await?;
        let mut it = reply.into_iter();
        let kind = text(it.next());
        if kind == "created" {
            self.confirm(&client, &[&written]).await?;
        }
        let current = text(it.next()).parse().unwrap_or(0);
        let minute = MinuteWindow {
            count: text(it.next()).parse().unwrap_or(0),
            oldest_secs: score_secs(&text(it.next())),
        };
        let oldest_secs = score_secs(&text(it.next()));
        match kind.as_str() {
            "created" => Ok(QuotaCreate::Created { minute }),
            "count" => Ok(QuotaCreate::SubscriptionLimit { current, minute }),
            "minute" => Ok(QuotaCreate::MinuteLimit {
                current,
                oldest_secs,
                minute,
            }),
            "day" => Ok(QuotaCreate::DayLimit {
                current,
                oldest_secs,
                minute,
            }),
            "exists" => Err(Error::Script(format!(
                "create_subscription_within_quota: subscription id {} already exists",
                sub.id
            ))),
            other => Err(Error::Script(format!(
                "create_subscription_within_quota: {other:?}"
            ))),
        }
    }
}
