//! Validation of loaded [`Settings`]: one function per section, run one after another; the first value
//! rejected is the error, and it names the key.
//!
//! The checks only read their own section (the cross-section steps, emptying blank list entries first and
//! checking that every wait fits inside the active TTL last, run in [`Settings::validated`]), so a new
//! knob's check goes beside its section's others.

use super::{
    AddonSettings, ApiSettings, AuthSettings, CleanupSettings, ConfigError, ConsumerSettings,
    DeliverySettings, MigrateSettings, OutboundSettings, QuotaSettings, RedisSettings, Settings,
    SubscriptionSettings, WorkerSettings,
};
use super::{DEV_JWT_SECRET, MIN_HS256_SECRET_BYTES};

pub(super) fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

impl Settings {
    /// Normalises the list settings, then checks every section; the first value at fault is the error.
    pub(super) fn validated(mut self) -> Result<Self, ConfigError> {
        // An empty environment list ("") arrives as [""]: treat it as empty.
        for list in [
            &mut self.outbound.allowlist,
            &mut self.subscriptions.deny_globs,
            &mut self.subscriptions.deny_regexes,
        ] {
            list.retain(|s| !s.trim().is_empty());
        }
        if self.telemetry.export_interval_ms == 0 {
            return Err(invalid(
                "telemetry.export_interval_ms",
                "must be at least 1",
            ));
        }
        self.redis.validate()?;
        self.redis.validate_cluster()?;
        self.redis.validate_sentinel()?;
        self.redis.read_password_file()?;
        self.delivery.validate()?;
        self.api.validate()?;
        self.auth.validate()?;
        self.outbound.validate()?;
        self.subscriptions.validate()?;
        self.consumer.validate()?;
        self.worker.validate()?;
        self.cleanup.validate()?;
        self.addons.validate()?;
        self.quotas.validate()?;
        self.migrate.validate()?;
        self.validate_lifetimes()?;
        self.secret_keys.validate_and_build()?;
        Ok(self)
    }

    /// The one cross-section check: every wait a pending delivery goes through must end while its record
    /// lives. A record's active TTL is renewed by each write (creation, every outcome), so the longest gap
    /// between two writes must fit inside it; otherwise the record expires and its queue entry or schedule
    /// entry finds nothing (counted as `hookline_worker_dropped_total{reason="expired"}`, but lost).
    fn validate_lifetimes(&self) -> Result<(), ConfigError> {
        let ttl_ms = self.delivery.active_ttl_secs.saturating_mul(1000);
        let longest = |v: &[u64]| v.iter().copied().max().unwrap_or(0);
        if self.cleanup.stale_after_secs >= self.delivery.active_ttl_secs {
            return Err(invalid(
                "cleanup.stale_after_secs",
                format!(
                    "must be below delivery.active_ttl_secs ({}), or in_progress deliveries expire before they are failed as stale",
                    self.delivery.active_ttl_secs
                ),
            ));
        }
        if longest(&self.worker.retry_schedule_ms) >= ttl_ms {
            return Err(invalid(
                "worker.retry_schedule_ms",
                format!(
                    "every step must be below delivery.active_ttl_secs ({} s), or a delivery waiting for its retry expires",
                    self.delivery.active_ttl_secs
                ),
            ));
        }
        if longest(&self.worker.circuit_open_ms) >= ttl_ms {
            return Err(invalid(
                "worker.circuit_open_ms",
                format!(
                    "every window must be below delivery.active_ttl_secs ({} s), or a delivery held by an open circuit expires",
                    self.delivery.active_ttl_secs
                ),
            ));
        }
        Ok(())
    }
}

impl RedisSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.url.is_empty() {
            return Err(invalid("redis.url", "must not be empty"));
        }
        if ![
            "redis://",
            "rediss://",
            "redis-cluster://",
            "rediss-cluster://",
        ]
        .iter()
        .any(|scheme| self.url.starts_with(scheme))
        {
            return Err(invalid(
                "redis.url",
                "must start with redis://, rediss://, redis-cluster:// or rediss-cluster://",
            ));
        }
        if self.pool_size == 0 || self.pool_size > 64 {
            return Err(invalid("redis.pool_size", "must be between 1 and 64"));
        }
        if self.events_stream.is_empty() {
            return Err(invalid("redis.events_stream", "must not be empty"));
        }
        if self.command_timeout_ms == 0 {
            return Err(invalid("redis.command_timeout_ms", "must be positive"));
        }
        if self.wait_replicas > 16 {
            return Err(invalid("redis.wait_replicas", "must be between 0 and 16"));
        }
        // The WAIT must end before the command timeout cuts it off, or a slow replica would look like a dead
        // primary. Only checked when waiting is on: an operator who lowers the command timeout should not
        // have to tune a setting that is not in use.
        if self.wait_timeout_ms == 0
            || (self.wait_replicas > 0 && self.wait_timeout_ms >= self.command_timeout_ms)
        {
            return Err(invalid(
                "redis.wait_timeout_ms",
                "must be positive and below redis.command_timeout_ms",
            ));
        }
        self.validate_access()?;
        Ok(())
    }
}

impl DeliverySettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.active_ttl_secs == 0 {
            return Err(invalid("delivery.active_ttl_secs", "must be positive"));
        }
        if self.terminal_ttl_secs == 0 {
            return Err(invalid("delivery.terminal_ttl_secs", "must be positive"));
        }
        Ok(())
    }
}

impl ApiSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(invalid("api.max_body_bytes", "must be at least 1024"));
        }
        if !(1..=60_000).contains(&self.header_read_timeout_ms) {
            return Err(invalid(
                "api.header_read_timeout_ms",
                "must be between 1 and 60000",
            ));
        }
        if !(1..=300_000).contains(&self.body_read_timeout_ms) {
            return Err(invalid(
                "api.body_read_timeout_ms",
                "must be between 1 and 300000",
            ));
        }
        if self.client_disconnect_timeout_ms > 60_000 {
            return Err(invalid(
                "api.client_disconnect_timeout_ms",
                "must be at most 60000",
            ));
        }
        if !(1..=1_000_000).contains(&self.max_connections_per_worker) {
            return Err(invalid(
                "api.max_connections_per_worker",
                "must be between 1 and 1000000",
            ));
        }
        // At least the lease of a first request in flight, or a stored answer could expire before its claim.
        if self.idempotency_window_secs < 60 || self.idempotency_window_secs > 7 * 24 * 3600 {
            return Err(invalid(
                "api.idempotency_window_secs",
                "must be between 60 and 604800",
            ));
        }
        Ok(())
    }
}

impl AuthSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        match self.jwt_algorithm.as_str() {
            "HS256" if self.jwt_secret.is_empty() => {
                return Err(invalid(
                    "auth.jwt_secret",
                    "required when auth.jwt_algorithm is HS256",
                ));
            }
            "RS256" | "ES256" if self.jwt_public_key_pem.is_empty() => {
                return Err(invalid(
                    "auth.jwt_public_key_pem",
                    "required when auth.jwt_algorithm is RS256 or ES256",
                ));
            }
            "HS256" if self.jwt_secret.expose().len() < MIN_HS256_SECRET_BYTES => {
                return Err(invalid(
                    "auth.jwt_secret",
                    format!("must be at least {MIN_HS256_SECRET_BYTES} bytes for HS256"),
                ));
            }
            "HS256"
                if self.jwt_secret.expose() == DEV_JWT_SECRET && !self.allow_development_secret =>
            {
                return Err(invalid(
                    "auth.jwt_secret",
                    "is the public development secret of config/dev.toml; set a secret of your own \
                     (or auth.allow_development_secret = true on a development stack)",
                ));
            }
            "HS256" | "RS256" | "ES256" => {}
            _ => {
                return Err(invalid(
                    "auth.jwt_algorithm",
                    "must be HS256, RS256 or ES256",
                ));
            }
        }
        if self.user_id_claim.is_empty() {
            return Err(invalid("auth.user_id_claim", "must not be empty"));
        }
        Ok(())
    }
}

impl OutboundSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        for entry in &self.allowlist {
            if !entry.contains('/') {
                continue;
            }
            let Ok(net) = entry.trim().parse::<ipnet::IpNet>() else {
                return Err(invalid(
                    "outbound.allowlist",
                    format!("{entry:?} is not a valid CIDR"),
                ));
            };
            // A very wide entry (0.0.0.0/0 at worst) silently switches the SSRF guard off: it must be a
            // deliberate choice.
            let wide = match net {
                ipnet::IpNet::V4(n) => n.prefix_len() < 8,
                ipnet::IpNet::V6(n) => n.prefix_len() < 32,
            };
            if wide && !self.allow_wide_allowlist {
                return Err(invalid(
                    "outbound.allowlist",
                    format!(
                        "{entry:?} is wider than /8 (IPv4) or /32 (IPv6); set outbound.allow_wide_allowlist to accept it"
                    ),
                ));
            }
        }
        if self.request_timeout_ms == 0 || self.response_header_timeout_ms == 0 {
            return Err(invalid(
                "outbound.request_timeout_ms",
                "timeouts must be positive",
            ));
        }
        if self.connect_timeout_ms == 0 {
            return Err(invalid("outbound.connect_timeout_ms", "must be positive"));
        }
        Ok(())
    }
}

impl SubscriptionSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        for re in &self.deny_regexes {
            if let Err(e) = regex::Regex::new(re) {
                return Err(invalid(
                    "subscriptions.deny_regexes",
                    format!("{re:?}: {e}"),
                ));
            }
        }
        if self.max_challenges == 0 {
            return Err(invalid(
                "subscriptions.max_challenges",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

impl ConsumerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.group_start_id.as_str(), "0" | "$") {
            return Err(invalid("consumer.group_start_id", "must be \"0\" or \"$\""));
        }
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return Err(invalid(
                "consumer.batch_size",
                "must be between 1 and 10000",
            ));
        }
        if self.claim_idle_ms == 0 {
            return Err(invalid("consumer.claim_idle_ms", "must be positive"));
        }
        // A short key could be guessed, and then every id computed again.
        let key = self.fanout_id_key.expose();
        if !key.is_empty() && key.len() < 32 {
            return Err(invalid(
                "consumer.fanout_id_key",
                "must be empty or at least 32 bytes",
            ));
        }
        Ok(())
    }
}

impl WorkerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_in_flight == 0 {
            return Err(invalid("worker.max_in_flight", "must be at least 1"));
        }
        if self.max_in_flight_per_host == 0 {
            return Err(invalid(
                "worker.max_in_flight_per_host",
                "must be at least 1",
            ));
        }
        if self.batch_size == 0 {
            return Err(invalid("worker.batch_size", "must be at least 1"));
        }
        if self.max_attempts == 0 {
            return Err(invalid("worker.max_attempts", "must be at least 1"));
        }
        if self.retry_schedule_ms.is_empty() {
            return Err(invalid(
                "worker.retry_schedule_ms",
                "must list at least one delay",
            ));
        }
        if self.circuit_failure_threshold == 0 {
            return Err(invalid(
                "worker.circuit_failure_threshold",
                "must be at least 1",
            ));
        }
        if self.circuit_open_ms.is_empty() || self.circuit_open_ms.contains(&0) {
            return Err(invalid(
                "worker.circuit_open_ms",
                "must list at least one positive window",
            ));
        }
        if self.scheduler_interval_ms == 0 {
            return Err(invalid("worker.scheduler_interval_ms", "must be positive"));
        }
        Ok(())
    }
}

impl CleanupSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("cleanup.interval_ms", self.interval_ms),
            ("cleanup.error_pause_ms", self.error_pause_ms),
            ("cleanup.stale_after_secs", self.stale_after_secs),
            ("cleanup.idle_after_secs", self.idle_after_secs),
            ("cleanup.broken_after_secs", self.broken_after_secs),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be positive"));
            }
        }
        if self.lease_ttl_ms < 1000 {
            return Err(invalid("cleanup.lease_ttl_ms", "must be at least 1000"));
        }
        if self.chunk_size == 0 || self.chunk_size > 10_000 {
            return Err(invalid("cleanup.chunk_size", "must be between 1 and 10000"));
        }
        if self.max_chunks_per_step == 0 {
            return Err(invalid("cleanup.max_chunks_per_step", "must be at least 1"));
        }
        if self.broken_min_failures == 0 {
            return Err(invalid("cleanup.broken_min_failures", "must be at least 1"));
        }
        Ok(())
    }
}

impl AddonSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        // TMI's admin bounds for the per-user quotas: 1–10 active, 1–1000 per hour.
        if !(1..=10).contains(&self.max_active_invocations) {
            return Err(invalid(
                "addons.max_active_invocations",
                "must be between 1 and 10",
            ));
        }
        if !(1..=1000).contains(&self.max_invocations_per_hour) {
            return Err(invalid(
                "addons.max_invocations_per_hour",
                "must be between 1 and 1000",
            ));
        }
        if self.dedup_window_secs == 0 {
            return Err(invalid("addons.dedup_window_secs", "must be positive"));
        }
        Ok(())
    }
}

impl QuotaSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        // TMI's admin bounds for a quota override apply to the defaults too.
        for (key, value, max) in [
            ("quotas.max_subscriptions", self.max_subscriptions, 100),
            (
                "quotas.max_events_per_minute",
                self.max_events_per_minute,
                1000,
            ),
            (
                "quotas.max_subscription_requests_per_minute",
                self.max_subscription_requests_per_minute,
                100,
            ),
            (
                "quotas.max_subscription_requests_per_day",
                self.max_subscription_requests_per_day,
                10_000,
            ),
        ] {
            if !(1..=max).contains(&value) {
                return Err(invalid(key, format!("must be between 1 and {max}")));
            }
        }
        Ok(())
    }
}

impl MigrateSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let pg = self.postgres_url.expose().trim();
        let pg_ok = pg.is_empty()
            || pg.starts_with("postgres://")
            || pg.starts_with("postgresql://")
            || pg.contains('=');
        if !pg_ok {
            return Err(invalid(
                "migrate.postgres_url",
                "must be a postgres:// or postgresql:// URL or a key=value connection string",
            ));
        }
        Ok(())
    }
}
