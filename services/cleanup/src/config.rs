//! The cleanup service's settings, typed from `[cleanup]` (and `[delivery]` for the startup checks).

use std::time::Duration;

use service_common::config::{Settings, consumer_name};

use crate::lifecycle::LifecycleRules;

/// How the cleanup service runs.
#[derive(Clone, Debug)]
pub struct CleanupConfig {
    /// Names this replica in lease tokens and logs (the pod name).
    pub replica: String,
    /// Pause between cycles once caught up.
    pub interval: Duration,
    /// Pause after a failed cycle.
    pub error_pause: Duration,
    /// Lifetime of the cycle lease; renewed after every chunk.
    pub lease_ttl: Duration,
    /// Items handled per chunk (one script call).
    pub chunk_size: u32,
    /// Chunks per step per cycle in the loop (`--once` runs every step until caught up).
    pub max_chunks_per_step: u32,
    /// An `in_progress` delivery with no activity for this long becomes `failed`.
    pub stale_after: Duration,
    pub lifecycle: LifecycleRules,
    /// How often a pass over the delivery indexes starts.
    pub index_pass_interval: Duration,
}

impl CleanupConfig {
    pub fn from_settings(s: &Settings) -> Self {
        let c = &s.cleanup;
        Self {
            replica: consumer_name("", "cleanup"),
            interval: Duration::from_millis(c.interval_ms),
            error_pause: Duration::from_millis(c.error_pause_ms),
            lease_ttl: Duration::from_millis(c.lease_ttl_ms),
            chunk_size: c.chunk_size,
            max_chunks_per_step: c.max_chunks_per_step,
            stale_after: Duration::from_secs(c.stale_after_secs),
            lifecycle: LifecycleRules {
                idle_after: Duration::from_secs(c.idle_after_secs),
                broken_min_failures: c.broken_min_failures,
                broken_after: Duration::from_secs(c.broken_after_secs),
                delete_grace: Duration::from_secs(c.delete_grace_secs),
            },
            index_pass_interval: Duration::from_secs(c.index_pass_interval_secs),
        }
    }
}

/// Settings that are valid but probably not what the operator meant; logged as warnings at startup.
pub fn risky_settings(s: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    if s.cleanup.interval_ms / 1000 >= s.cleanup.stale_after_secs {
        out.push(format!(
            "cleanup.interval_ms ({}) is not below cleanup.stale_after_secs ({} s): stale deliveries are found \
             late",
            s.cleanup.interval_ms, s.cleanup.stale_after_secs
        ));
    }
    out
}

/// The `last_error` of a delivery failed for want of callbacks: "no status callback for 15 minutes".
pub fn stale_message(after: Duration) -> String {
    let secs = after.as_secs();
    let (n, unit) = if secs >= 3600 && secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else if secs >= 60 && secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("no status callback for {n} {unit}{plural}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_message_names_the_limit_in_the_largest_whole_unit() {
        assert_eq!(
            stale_message(Duration::from_secs(900)),
            "no status callback for 15 minutes"
        );
        assert_eq!(
            stale_message(Duration::from_secs(3600)),
            "no status callback for 1 hour"
        );
        assert_eq!(
            stale_message(Duration::from_secs(90)),
            "no status callback for 90 seconds"
        );
        assert_eq!(
            stale_message(Duration::from_secs(1)),
            "no status callback for 1 second"
        );
        assert_eq!(
            stale_message(Duration::from_secs(60)),
            "no status callback for 1 minute"
        );
    }
}
