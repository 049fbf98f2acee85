//! TMI's subscription lifecycle rules (contract §6), as pure decisions over a subscription read from Redis.
//!
//! - **Idle**: `active`, not pinned, and no successful delivery for `idle_after` (counted from creation when
//!   it never had one) → `pending_delete`.
//! - **Broken**: `active`, not pinned, at least `broken_min_failures` publication failures and no successful
//!   delivery for `broken_after` (or never) → `pending_delete`.
//! - **Deletion**: `pending_delete`, not pinned, for at least `delete_grace` → deleted.
//!
//! The cycle applies a decision with a compare-and-set ([`Store::set_subscription_status`]), so a subscription
//! whose status changed since it was read is left alone.
//!
//! [`Store::set_subscription_status`]: delivery_model::store::Store::set_subscription_status

use std::time::Duration;

use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::Micros;

/// The thresholds (TMI: 90 days idle; 10 failures and 7 days without success; deletion at the next run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LifecycleRules {
    pub idle_after: Duration,
    pub broken_min_failures: u32,
    pub broken_after: Duration,
    pub delete_grace: Duration,
}

/// What the lifecycle makes of an `active` subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Leave it.
    Keep,
    /// Unused for too long: `pending_delete`.
    Idle,
    /// Failing for too long: `pending_delete`.
    Broken,
}

fn micros(d: Duration) -> Micros {
    Micros::try_from(d.as_micros()).unwrap_or(Micros::MAX)
}

/// The verdict on `sub` at `now`. Only `active`, unpinned subscriptions can be idle or broken; idleness is
/// checked first, as TMI does.
pub fn verdict(sub: &Subscription, now: Micros, rules: &LifecycleRules) -> Verdict {
    if sub.status != SubscriptionStatus::Active || sub.operator_pinned {
        return Verdict::Keep;
    }
    let last_used = sub.last_successful_use.unwrap_or(sub.created_at);
    if last_used < now.saturating_sub(micros(rules.idle_after)) {
        return Verdict::Idle;
    }
    let no_recent_success = sub
        .last_successful_use
        .is_none_or(|t| t < now.saturating_sub(micros(rules.broken_after)));
    if sub.publication_failures >= rules.broken_min_failures && no_recent_success {
        return Verdict::Broken;
    }
    Verdict::Keep
}

/// Whether `sub` is to be deleted now: `pending_delete`, unpinned (TMI's safety guard) and in that status
/// (measured by `modified_at`, set by every status change) for at least the grace period.
pub fn due_for_deletion(sub: &Subscription, now: Micros, rules: &LifecycleRules) -> bool {
    sub.status == SubscriptionStatus::PendingDelete
        && !sub.operator_pinned
        && sub.modified_at <= now.saturating_sub(micros(rules.delete_grace))
}

#[cfg(test)]
mod tests {
    use delivery_model::ids::SubscriptionId;

    use super::*;

    const DAY: Micros = 86_400_000_000;
    const NOW: Micros = 1_000 * DAY;

    fn tmi() -> LifecycleRules {
        LifecycleRules {
            idle_after: Duration::from_secs(90 * 86_400),
            broken_min_failures: 10,
            broken_after: Duration::from_secs(7 * 86_400),
            delete_grace: Duration::ZERO,
        }
    }

    fn sub(created_days_ago: i64, last_used_days_ago: Option<i64>, failures: u32) -> Subscription {
        Subscription {
            id: SubscriptionId::new_v4(),
            owner_id: "o".into(),
            threat_model_id: None,
            name: "n".into(),
            url: "https://example.com/h".into(),
            events: vec!["*".into()],
            secret: None,
            status: SubscriptionStatus::Active,
            challenge: None,
            challenges_sent: 1,
            timeout_count: 0,
            created_at: NOW - created_days_ago * DAY,
            modified_at: NOW - created_days_ago * DAY,
            last_successful_use: last_used_days_ago.map(|d| NOW - d * DAY),
            publication_failures: failures,
            operator_pinned: false,
            signature_scheme: Default::default(),
            signing_key: None,
            previous_secret: None,
            previous_secret_until: None,
            timestamped_callbacks: false,
            timestamp_header: false,
            disabled_reason: None,
            disabled_at: None,
            rate_limit: None,
            max_in_flight: None,
            ordering: None,
        }
    }

    #[test]
    fn idle_counts_from_the_last_success_or_else_from_creation() {
        let r = tmi();
        assert_eq!(verdict(&sub(91, None, 0), NOW, &r), Verdict::Idle);
        assert_eq!(verdict(&sub(89, None, 0), NOW, &r), Verdict::Keep);
        assert_eq!(verdict(&sub(400, Some(91), 0), NOW, &r), Verdict::Idle);
        assert_eq!(verdict(&sub(400, Some(89), 0), NOW, &r), Verdict::Keep);
    }

    #[test]
    fn broken_needs_enough_failures_and_no_recent_success() {
        let r = tmi();
        assert_eq!(verdict(&sub(30, Some(8), 10), NOW, &r), Verdict::Broken);
        assert_eq!(
            verdict(&sub(30, None, 10), NOW, &r),
            Verdict::Broken,
            "never succeeded"
        );
        assert_eq!(
            verdict(&sub(30, Some(8), 9), NOW, &r),
            Verdict::Keep,
            "too few failures"
        );
        assert_eq!(
            verdict(&sub(30, Some(6), 50), NOW, &r),
            Verdict::Keep,
            "a success this week"
        );
        // Both idle and broken: idle is checked first, as TMI does.
        assert_eq!(verdict(&sub(100, Some(95), 20), NOW, &r), Verdict::Idle);
    }

    #[test]
    fn pinned_and_non_active_subscriptions_are_never_judged() {
        let r = tmi();
        let mut s = sub(500, None, 99);
        s.operator_pinned = true;
        assert_eq!(verdict(&s, NOW, &r), Verdict::Keep);
        for status in [
            SubscriptionStatus::PendingVerification,
            SubscriptionStatus::PendingDelete,
            SubscriptionStatus::Inactive,
        ] {
            let mut s = sub(500, None, 99);
            s.status = status;
            assert_eq!(verdict(&s, NOW, &r), Verdict::Keep, "{status}");
        }
    }

    #[test]
    fn deletion_waits_for_the_grace_period_and_spares_pinned_ones() {
        let mut r = tmi();
        let mut s = sub(10, None, 0);
        assert!(!due_for_deletion(&s, NOW, &r), "active");
        s.status = SubscriptionStatus::PendingDelete;
        s.modified_at = NOW;
        assert!(due_for_deletion(&s, NOW, &r), "no grace: at once");
        r.delete_grace = Duration::from_secs(3600);
        assert!(!due_for_deletion(&s, NOW, &r));
        assert!(due_for_deletion(&s, NOW + 3_600_000_000, &r));
        s.operator_pinned = true;
        assert!(!due_for_deletion(&s, NOW + 3_600_000_000, &r));
    }
}
