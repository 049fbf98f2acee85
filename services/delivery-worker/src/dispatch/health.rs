//! Endpoint health (issue #18): what the worker does once an outcome write disabled a subscription (a
//! `410 Gone`, or failures past `worker.disable_after_failures`; the disable itself is part of that fenced
//! write). It counts it, and fails the subscription's other pending deliveries without an attempt in a task
//! of their own, so the attempt that caused it lets go of its slot at once. That sweep is prompt, not
//! essential: a delivery it misses is failed without an attempt when it next comes up (see
//! `attempt::prepare`), with the same error. On a cluster the disable happens in the fold of the shards'
//! counter effects (`Store::fold_outcomes`), and the scheduler that folded reacts the same way.

use delivery_model::ids::SubscriptionId;
use delivery_model::store::{HealthPolicy, Store};
use delivery_model::subscription::DisabledReason;
use delivery_model::time::now_micros;

use super::Dispatcher;
use crate::metrics::Metrics;

impl Dispatcher {
    /// When failures disable a subscription (the fold applies it on a cluster).
    pub fn health(&self) -> HealthPolicy {
        self.cfg.circuit.health
    }

    /// Reacts to an outcome write that disabled `subscription` for `reason`.
    pub(super) fn disabled(&self, subscription: SubscriptionId, reason: DisabledReason) {
        on_disabled(&self.store, &self.metrics, subscription, reason);
    }
}

/// After `subscription` was disabled for `reason` (by an outcome write on one node, by the fold on a
/// cluster): counts it, and fails its other pending deliveries in the background.
pub(crate) fn on_disabled(
    store: &Store,
    metrics: &Metrics,
    subscription: SubscriptionId,
    reason: DisabledReason,
) {
    metrics
        .subscriptions_disabled
        .with_label_values(&[reason.as_str()])
        .inc();
    tracing::warn!(subscription.id = %subscription, reason = reason.as_str(),
        "subscription disabled; its pending deliveries fail until an administrator enables it");
    let (store, metrics) = (store.clone(), metrics.clone());
    tokio::spawn(async move {
        match store
            .fail_disabled_pending(subscription, reason, now_micros())
            .await
        {
            Ok(n) => metrics.disabled_failed.inc_by(n),
            Err(e) => {
                metrics.redis_errors.inc();
                tracing::warn!(subscription.id = %subscription, error = %e,
                    "failing a disabled subscription's pending deliveries; they fail when next due");
            }
        }
    });
}
