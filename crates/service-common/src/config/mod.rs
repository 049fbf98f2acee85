//! Configuration: one loader, one typed [`Settings`] for every service.
//!
//! Layers, later wins: `config/default.toml` (embedded in every binary), the file named by `HOOKLINE_CONFIG`
//! (optional), then environment variables `HOOKLINE__SECTION__KEY` (lists comma-separated). Unknown keys are
//! rejected and every value is validated before anything connects, with an error that names the key.
//!
//! Every service reads the whole file and uses its sections; one struct means one place to document a knob
//! and a typo is caught by every service.
//!
//! This file holds the section structs and the loader; `validate.rs` holds the checks, one function per
//! section.

mod cluster;
mod redis_access;
mod secret_keys;
mod sentinel;
mod validate;

pub use secret_keys::SecretKeySettings;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// The defaults shipped with the repository.
pub const DEFAULT_TOML: &str = include_str!("../../../../config/default.toml");

/// Environment variable naming an extra config file.
pub const CONFIG_FILE_ENV: &str = "HOOKLINE_CONFIG";

/// Keys whose environment value is taken verbatim as a string: the `config` crate's parsing would turn a
/// password such as `0123` into the number 123.
const STRING_KEYS: &[&str] = &[
    "redis.password",
    "redis.username",
    "secret_keys.current",
    "auth.jwt_secret",
    "worker.delegation_key",
    "consumer.fanout_id_key",
    "redis.sentinel_password",
    "migrate.postgres_url",
];

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "outbound.allowlist",
    "subscriptions.deny_globs",
    "subscriptions.deny_regexes",
    "worker.retry_schedule_ms",
    "worker.circuit_open_ms",
    "redis.sentinels",
];

/// A configuration that cannot be used, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub redis: RedisSettings,
    pub delivery: DeliverySettings,
    pub telemetry: TelemetrySettings,
    pub ops: OpsSettings,
    pub shutdown: ShutdownSettings,
    pub api: ApiSettings,
    pub auth: AuthSettings,
    pub outbound: OutboundSettings,
    pub subscriptions: SubscriptionSettings,
    pub consumer: ConsumerSettings,
    pub worker: WorkerSettings,
    pub addons: AddonSettings,
    pub cleanup: CleanupSettings,
    pub migrate: MigrateSettings,
    pub quotas: QuotaSettings,
    /// Encryption at rest of subscription secrets (issue #16 item 4; see `secret_keys.rs`).
    pub secret_keys: SecretKeySettings,
}

/// `[redis]`. `Debug` is written by hand (in `redis_access.rs`) so that the URL's password is redacted.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: String,
    pub pool_size: usize,
    pub key_prefix: String,
    /// Queue shards in cluster mode; 0: [`delivery_model::keys::DEFAULT_CLUSTER_SHARDS`]. Must stay 0 with a
    /// non-cluster URL (see `cluster.rs`).
    pub cluster_shards: u16,
    pub events_stream: String,
    pub command_timeout_ms: u64,
    /// Sentinels (`host:port`) that name the primary; empty connects to the URL's host (see `sentinel.rs`).
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the primary under; required with `sentinels`.
    pub sentinel_master_name: String,
    /// ACL user for the sentinels themselves (empty: none).
    pub sentinel_username: String,
    /// Password for the sentinels; after validation it also holds what `sentinel_password_file` contained.
    pub sentinel_password: delivery_model::store::Secret,
    /// A file holding the sentinels' password (a mounted Secret).
    pub sentinel_password_file: String,
    // ---- loss budget (issue #14) ----
    /// Replicas that must confirm (`WAIT`) a write Hookline acknowledges before it answers; 0 = none.
    pub wait_replicas: u32,
    /// Longest such a write waits for them, milliseconds (below `command_timeout_ms`).
    pub wait_timeout_ms: u64,
    // Credentials and TLS (checks and mapping in `redis_access.rs`).
    /// ACL user; empty: the URL's, else `default`.
    pub username: String,
    /// Password; empty: none, or `password_file`'s. After loading it holds the file's content when
    /// `password_file` is set.
    pub password: delivery_model::store::Secret,
    /// File whose content (without a trailing newline) is the password; empty: none.
    pub password_file: String,
    /// PEM bundle of CA certificates trusted in addition to the public roots; empty: none.
    pub tls_ca_file: String,
    /// PEM client certificate chain for mutual TLS (with `tls_client_key_file`); empty: none.
    pub tls_client_cert_file: String,
    /// PEM private key of `tls_client_cert_file`; empty: none.
    pub tls_client_key_file: String,
    /// Name the server certificate must carry when it is not the URL's host; empty: the URL's host.
    pub tls_server_name: String,
}

/// `[delivery]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    pub active_ttl_secs: u64,
    pub terminal_ttl_secs: u64,
    /// Fair sharing (issue #18): queue entries one subscription may have in each queue shard.
    pub fair_share: u32,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// `[telemetry]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    pub log_level: String,
    pub otlp_endpoint: String,
    /// How often finished spans are sent to the OTLP endpoint, in batches, milliseconds.
    pub export_interval_ms: u64,
}

/// `[ops]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsSettings {
    pub listen: SocketAddr,
}

/// `[shutdown]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSettings {
    pub grace_period_secs: u64,
}

impl ShutdownSettings {
    pub fn grace_period(&self) -> Duration {
        Duration::from_secs(self.grace_period_secs)
    }
}

/// `[api]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    pub listen: SocketAddr,
    pub base_url: String,
    pub workers: usize,
    pub max_body_bytes: usize,
    /// How long the first answer to an `Idempotency-Key` is kept for replay, seconds (issue #14).
    pub idempotency_window_secs: u64,
    // --- slow clients (issue #16 item 8) ---
    /// A request's head (request line and headers) must arrive within this, ms, or the client gets 408.
    pub header_read_timeout_ms: u64,
    /// A request's whole body must arrive within this, ms, counted from its first read, or 408.
    pub body_read_timeout_ms: u64,
    /// How long a closing connection may take to shut down before it is dropped, ms.
    pub client_disconnect_timeout_ms: u64,
    /// Most connections one worker thread holds open at once (actix's `max_connections`, per worker).
    pub max_connections_per_worker: usize,
    /// Also serve `/metrics` on the API listener (issue #16 item 7). Off by default: metrics are served on
    /// the ops listener, which is not exposed to API clients.
    pub metrics_on_api_port: bool,
}

/// `[auth]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub jwt_algorithm: String,
    /// Never printed (`Debug` shows `***`).
    pub jwt_secret: delivery_model::store::Secret,
    pub jwt_public_key_pem: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub user_id_claim: String,
    pub admin_claim: String,
    pub admin_group: String,
    pub events_scope: String,
    /// Accept [`DEV_JWT_SECRET`] (the public secret of `config/dev.toml`) as `jwt_secret`: the explicit
    /// development switch, on only in `config/dev.toml` and the compose stack (issue #16).
    pub allow_development_secret: bool,
}

/// The HS256 secret of `config/dev.toml` (`make run`, the compose stack). It is public, so a service
/// refuses it unless `auth.allow_development_secret` is on; a unit test keeps it equal to the file's.
pub const DEV_JWT_SECRET: &str = "hookline-dev-secret-change-me-not-for-production";

/// Shortest HS256 secret accepted, bytes: the hash's output size (RFC 7518 §3.2 requires at least that).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// `[outbound]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundSettings {
    pub allow_http_targets: bool,
    pub allowlist: Vec<String>,
    /// Accept allowlist CIDRs wider than /8 (IPv4) or /32 (IPv6), e.g. `0.0.0.0/0`, which would switch the
    /// address policy off. Off by default: such an entry is refused at start.
    pub allow_wide_allowlist: bool,
    pub user_agent: String,
    pub connect_timeout_ms: u64,
    pub response_header_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub max_response_bytes: usize,
    pub error_excerpt_bytes: usize,
    /// Send the attempt's W3C `traceparent` (and `tracestate`) with every delivery, so receivers can continue
    /// the trace. Off by default: it tells receivers the trace ids of the sender.
    pub send_traceparent: bool,
}

impl OutboundSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// `[subscriptions]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSettings {
    pub deny_globs: Vec<String>,
    pub deny_regexes: Vec<String>,
    pub max_challenges: u32,
    pub challenge_retry_interval_ms: u64,
}

/// `[consumer]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSettings {
    pub consumer_name: String,
    pub group_start_id: String,
    pub batch_size: u64,
    pub block_ms: u64,
    pub claim_idle_ms: u64,
    pub require_owner_match: bool,
    /// Keys fan-out delivery ids (issue #16); empty: the unkeyed, predictable derivation (warned at start).
    pub fanout_id_key: delivery_model::store::Secret,
}

/// `[worker]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub consumer_name: String,
    pub max_in_flight: usize,
    pub max_in_flight_per_host: usize,
    pub batch_size: u64,
    pub block_ms: u64,
    pub scheduler_interval_ms: u64,
    pub retry_schedule_ms: Vec<u64>,
    pub max_attempts: u32,
    pub lease_margin_ms: u64,
    /// Never printed (`Debug` shows `***`).
    pub delegation_key: delivery_model::store::Secret,
    pub delegation_issuer: String,
    pub delegation_ttl_secs: u64,
    pub circuit_failure_threshold: u32,
    pub circuit_open_ms: Vec<u64>,
    /// Permanent failures in a row that, with no success for `disable_after_failing_for_secs`, disable a
    /// subscription (0 = never).
    pub disable_after_failures: u32,
    /// See `disable_after_failures`, seconds.
    pub disable_after_failing_for_secs: u64,
}

impl WorkerSettings {
    /// How long an attempt's lease lasts: the whole request may take `request_timeout`, plus the margin.
    pub fn lease(&self, outbound: &OutboundSettings) -> Duration {
        outbound.request_timeout() + Duration::from_millis(self.lease_margin_ms)
    }
}

/// `[cleanup]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupSettings {
    /// Pause between cycles once caught up, milliseconds.
    pub interval_ms: u64,
    /// Pause after a failed cycle, milliseconds.
    pub error_pause_ms: u64,
    /// Lifetime of the cycle lease (renewed after every chunk), milliseconds.
    pub lease_ttl_ms: u64,
    /// Items handled by one script call.
    pub chunk_size: u32,
    /// Chunks per step per cycle (looping mode).
    pub max_chunks_per_step: u32,
    /// `in_progress` without a callback this long becomes `failed`, seconds.
    pub stale_after_secs: u64,
    /// Active subscriptions idle this long become `pending_delete`, seconds.
    pub idle_after_secs: u64,
    /// Publication failures that, with no success for `broken_after_secs`, make a subscription broken.
    pub broken_min_failures: u32,
    /// See `broken_min_failures`, seconds.
    pub broken_after_secs: u64,
    /// Time a subscription stays `pending_delete` before it is deleted, seconds.
    pub delete_grace_secs: u64,
    /// How often a delivery-index pass starts, seconds.
    pub index_pass_interval_secs: u64,
}

/// `[addons]`: per-invoker limits of `POST /addons/{id}/invoke` (TMI's quota defaults).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddonSettings {
    /// Invocations per user whose delivery is still `pending` or `in_progress` (TMI: 3).
    pub max_active_invocations: u32,
    /// Invocations per user in any sliding hour (TMI: 10).
    pub max_invocations_per_hour: u32,
    /// A repeat of the same add-on by the same user within this window is refused as a duplicate (TMI: 5),
    /// seconds.
    pub dedup_window_secs: u64,
}

/// `[quotas]`: default per-owner webhook quotas (TMI's `webhook_quotas` defaults), used for owners without an
/// override (`PUT /admin/quotas/webhooks/{user_id}`). Add-on invocation defaults are `[addons]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSettings {
    /// Subscriptions per owner, in any status (TMI: 10).
    pub max_subscriptions: u32,
    /// Shown by the quota endpoints; not enforced, as in TMI (TMI: 12).
    pub max_events_per_minute: u32,
    /// Successful subscription creates per owner in any sliding minute (TMI: 10).
    pub max_subscription_requests_per_minute: u32,
    /// Successful subscription creates per owner in any sliding day (TMI: 20).
    pub max_subscription_requests_per_day: u32,
}

/// `[migrate]`: `hookline-migrate`, the one-shot import of TMI's PostgreSQL tables (docs/migration.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateSettings {
    /// TMI's PostgreSQL database: `postgres://user:password@host:5432/tmi` or a `key=value` connection string.
    /// Empty means not configured; `hookline-migrate --postgres-url` overrides it. Other services ignore it.
    /// Never printed (`Debug` shows `***`): it may carry a password.
    pub postgres_url: delivery_model::store::Secret,
    /// A PEM file of CA certificates trusted for TLS to that database, in addition to the public roots
    /// compiled into the binary. Empty means none. Read by `hookline-migrate` at connect time.
    pub postgres_ca_file: String,
}

/// The replica's stable consumer name: the configured one, else `$HOSTNAME` (the pod name in Kubernetes),
/// else a fixed fallback.
pub fn consumer_name(configured: &str, service: &str) -> String {
    if !configured.is_empty() {
        return configured.to_owned();
    }
    match std::env::var("HOSTNAME") {
        Ok(h) if !h.is_empty() => h,
        _ => format!("{service}-0"),
    }
}

impl Settings {
    /// Loads and validates the configuration from the embedded defaults, `HOOKLINE_CONFIG` and the process
    /// environment.
    ///
    /// # Errors
    /// A file that cannot be read or parsed, an unknown key, or an invalid value.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(std::env::vars())
    }

    /// As [`load`](Self::load), with an explicit environment (tests).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_from(env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let env: std::collections::HashMap<String, String> = env.into_iter().collect();
        let mut b = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = env.get(CONFIG_FILE_ENV).filter(|p| !p.is_empty()) {
            b = b.add_source(config::File::with_name(path).required(true));
        }
        // List keys are split here rather than by the `config` crate, whose parser turns a one-element
        // numeric list ("50") into a number.
        let mut env = env;
        for key in LIST_KEYS {
            let var = format!("HOOKLINE__{}", key.to_ascii_uppercase().replace('.', "__"));
            if let Some(v) = env.remove(&var) {
                let items: Vec<String> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                b = b.set_override(*key, items)?;
            }
        }
        for key in STRING_KEYS {
            let var = format!("HOOKLINE__{}", key.to_ascii_uppercase().replace('.', "__"));
            if let Some(v) = env.remove(&var) {
                b = b.set_override(*key, v)?;
            }
        }
        let environment = config::Environment::with_prefix("HOOKLINE")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(
                env.into_iter()
                    .filter(|(k, _)| k.starts_with("HOOKLINE__"))
                    .collect(),
            ));
        let settings: Settings = b.add_source(environment).build()?.try_deserialize()?;
        settings.validated()
    }

    /// The store options these settings describe.
    pub fn store_options(&self) -> delivery_model::store::StoreOptions {
        delivery_model::store::StoreOptions {
            url: self.redis.url.clone(),
            pool_size: self.redis.pool_size,
            key_prefix: self.redis.key_prefix.clone(),
            cluster_shards: self.redis.cluster_shards(),
            events_stream: self.redis.events_stream.clone(),
            active_ttl: Duration::from_secs(self.delivery.active_ttl_secs),
            terminal_ttl: Duration::from_secs(self.delivery.terminal_ttl_secs),
            command_timeout: Duration::from_millis(self.redis.command_timeout_ms),
            sentinel: self.redis.sentinel_options(),
            wait_replicas: self.redis.wait_replicas,
            wait_timeout: Duration::from_millis(self.redis.wait_timeout_ms),
            username: self.redis.store_username(),
            password: self.redis.store_password(),
            tls: self.redis.store_tls(),
            secrets: self.secret_keys.secret_box(),
            fanout_id_key: Some(&self.consumer.fanout_id_key)
                .filter(|k| !k.is_empty())
                .map(|k| delivery_model::ids::FanoutKey::new(k.expose())),
            fair_share: self.delivery.fair_share,
        }
    }
}
