//! Endpoint health (issue #18): what the worker does once an outcome write disabled a subscription (a
//! `410 Gone`, or failures past `worker.disable_after_failures`; the disable itself is part of that fenced
//! write). It counts it, and fails the subscription's other pending deliveries without an attempt in a task
//! of their own, so the attempt that caused it lets go of its slot at once. That sweep is prompt, not
//! essential: a delivery it misses is failed without an attempt when it next comes up (see
//! `attempt::prepare`), with the same error.

use delivery_model::ids::SubscriptionId;
use delivery_model::subscription::DisabledReason;
use delivery_model::time::now_micros;

use super::Dispatcher;

impl Dispatcher {
    /// Reacts to an outcome write that disabled `subscription` for `reason`.
    pub(super) fn disabled(&self, subscription: SubscriptionId, reason: DisabledReason) {
        self.metrics
            .subscriptions_disabled
            .with_label_values(&[reason.as_str()])
            .inc();
        tracing::warn!(subscription.id = %subscription, reason = reason.as_str(),
            "subscription disabled; its pending deliveries fail until an administrator enables it");
        let (store, metrics) = (self.store.clone(), self.metrics.clone());
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
}
