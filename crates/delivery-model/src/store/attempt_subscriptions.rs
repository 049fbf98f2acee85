//! Cluster mode: the subscriptions of a leased batch, read after `begin_attempts` (`docs/cluster.md` §4.2).
//! On one node the lease script reads them itself; on a cluster they live in the control slot, so the
//! worker reads each distinct one once per batch, concurrently, right after the leases are taken. Reading
//! them a moment later changes nothing the lease protects: a subscription is never locked, and a change
//! right after the script was always possible.

use std::collections::{BTreeSet, HashMap};

use fred::prelude::*;
use fred::types::Value;

use super::Store;
use crate::error::Result;
use crate::subscription::Subscription;

/// Per subscription id: the subscription (`None`: gone) or why it could not be decoded.
pub(super) type BatchSubscriptions = HashMap<String, Result<Option<Subscription>, String>>;

impl Store {
    /// One entry of [`BatchSubscriptions`] from a subscription hash as read (empty: the subscription is gone).
    pub(super) fn batch_subscription(
        &self,
        h: &HashMap<String, String>,
    ) -> Result<Option<Subscription>, String> {
        if h.is_empty() {
            return Ok(None);
        }
        self.decode_subscription(h)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// The subscriptions of the `go` results of a `begin_attempts` reply, each read once.
    ///
    /// # Errors
    /// Redis failure (the leases stay taken and expire; the entries are reclaimed).
    pub(super) async fn leased_subscriptions(
        &self,
        results: &[Value],
    ) -> Result<BatchSubscriptions> {
        let ids: BTreeSet<String> = results.iter().filter_map(go_subscription).collect();
        let reads = ids.into_iter().map(|id| async move {
            let h: HashMap<String, String> = self
                .pool()
                .hgetall(self.keys().subscription_prefix() + &id)
                .await?;
            Ok::<_, crate::error::Error>((id, self.batch_subscription(&h)))
        });
        Ok(futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .collect())
    }
}

/// The `subscription_id` of a `{'go', {field, value, …}}` result.
fn go_subscription(result: &Value) -> Option<String> {
    let Value::Array(parts) = result else {
        return None;
    };
    let (Some(kind), Some(Value::Array(fields))) = (parts.first(), parts.get(1)) else {
        return None;
    };
    if kind.as_str().as_deref() != Some("go") {
        return None;
    }
    fields
        .chunks(2)
        .find(|pair| pair.first().and_then(Value::as_str).as_deref() == Some("subscription_id"))
        .and_then(|pair| pair.get(1))
        .and_then(Value::as_string)
}
