//! TMI's database (schema from TMI's models, realistic rows including bad ones), a private Redis, and the
//! `hookline-migrate` binary run as a child process with a cleared environment.

use std::process::Stdio;
use std::time::Duration;

use delivery_model::store::Store;
use fred::prelude::*;
use test_support::postgres::PostgresServer;
use test_support::redis::RedisServer;

pub const SECRET: &str = "migrate-jwt-secret-0123456789abcdef";
pub const WAIT: Duration = Duration::from_secs(20);

/// TMI's tables as its GORM models create them (docs: shared reference `tmi-postgres-schema.md`).
pub const TMI_SCHEMA: &str = r"
CREATE TABLE webhook_subscriptions (
    id varchar(36) PRIMARY KEY,
    owner_internal_uuid varchar(36) NOT NULL,
    threat_model_id varchar(36),
    name varchar(256) NOT NULL,
    url text NOT NULL,
    events text NOT NULL,
    secret varchar(128),
    status varchar(128) DEFAULT 'pending_verification',
    challenge varchar(1000),
    challenges_sent int DEFAULT 0,
    timeout_count int DEFAULT 0,
    created_at timestamp NOT NULL,
    modified_at timestamp NOT NULL,
    last_successful_use timestamp,
    publication_failures int DEFAULT 0,
    operator_pinned boolean NOT NULL DEFAULT false
);
CREATE TABLE webhook_deliveries (
    id varchar(36) PRIMARY KEY,
    subscription_id varchar(36) NOT NULL,
    event_type varchar(1000) NOT NULL,
    payload jsonb NOT NULL,
    status varchar(128) DEFAULT 'pending',
    attempts int DEFAULT 0,
    next_retry_at timestamp,
    last_error varchar(1000),
    created_at timestamp NOT NULL,
    delivered_at timestamp
);
CREATE INDEX idx_webhook_deliveries_subscription_id ON webhook_deliveries (subscription_id);
CREATE TABLE addons (
    id varchar(36) PRIMARY KEY,
    created_at timestamp,
    name varchar(256),
    webhook_id varchar(36) NOT NULL,
    description text,
    icon varchar(60),
    objects text,
    threat_model_id varchar(36),
    parameters jsonb
);
CREATE TABLE webhook_quotas (
    owner_id varchar(36) PRIMARY KEY,
    max_subscriptions int DEFAULT 10,
    max_events_per_minute int DEFAULT 12,
    max_subscription_requests_per_minute int DEFAULT 10,
    max_subscription_requests_per_day int DEFAULT 20,
    created_at timestamp,
    modified_at timestamp
);
CREATE TABLE addon_invocation_quotas (
    owner_internal_uuid varchar(36) PRIMARY KEY,
    max_active_invocations int DEFAULT 3,
    max_invocations_per_hour int DEFAULT 10,
    created_at timestamp,
    modified_at timestamp
);
CREATE TABLE webhook_url_deny_list (
    id varchar(36) PRIMARY KEY,
    pattern varchar(256) UNIQUE,
    pattern_type varchar(64),
    description text,
    created_at timestamp
);
";

pub const OWNER: &str = "5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f";
pub const SUB_ACTIVE: &str = "a0000000-0000-4000-8000-000000000001";
pub const SUB_PENDING: &str = "a0000000-0000-4000-8000-000000000002";
pub const SUB_PINNED: &str = "a0000000-0000-4000-8000-000000000003";
pub const SUB_BAD_EVENTS: &str = "a0000000-0000-4000-8000-000000000004";
pub const SUB_BAD_STATUS: &str = "a0000000-0000-4000-8000-000000000005";
pub const SUB_BAD_ID: &str = "not-a-uuid";
pub const SUB_MISSING: &str = "a0000000-0000-4000-8000-000000000099";
pub const ADDON: &str = "b0000000-0000-4000-8000-000000000001";
pub const ADDON_ORPHAN: &str = "b0000000-0000-4000-8000-000000000002";
pub const DELIVERY_DUE: &str = "c0000000-0000-4000-8000-000000000001";
pub const DELIVERY_LATER: &str = "c0000000-0000-4000-8000-000000000002";
pub const DELIVERY_DONE: &str = "c0000000-0000-4000-8000-000000000003";
pub const DELIVERY_FAILED: &str = "c0000000-0000-4000-8000-000000000004";
pub const DELIVERY_OLD: &str = "c0000000-0000-4000-8000-000000000005";
pub const DELIVERY_BAD_STATUS: &str = "c0000000-0000-4000-8000-000000000006";
pub const DELIVERY_NO_SUB: &str = "c0000000-0000-4000-8000-000000000007";
pub const DELIVERY_BAD_ID: &str = "bad-uuid-1";
pub const SUB_SECRET: &str = "tmi-secret-0123456789abcdef0123";
/// As TMI's emitter wrote it; PostgreSQL's jsonb text form of it is what gets sent.
pub const DUE_PAYLOAD: &str = r#"{"event_type": "threat_model.created", "threat_model_id": "tm-1", "data": {"name": "Payments", "n": 1}}"#;

/// `now() - interval` as a UTC `timestamp`, as GORM stores it.
fn ago(interval: &str) -> String {
    format!("(timezone('UTC', now()) - interval '{interval}')")
}

fn ahead(interval: &str) -> String {
    format!("(timezone('UTC', now()) + interval '{interval}')")
}

/// TMI's rows: good ones of every kind and bad ones a real database may hold. `receiver` is the URL of the
/// active and pending subscriptions.
pub fn fill(pg: &PostgresServer, receiver: &str) {
    let now = ago("0 seconds");
    pg.psql(TMI_SCHEMA);
    pg.psql(&format!(
        "INSERT INTO webhook_subscriptions (id, owner_internal_uuid, threat_model_id, name, url, events, secret, \
           status, challenge, challenges_sent, timeout_count, created_at, modified_at, last_successful_use, \
           publication_failures, operator_pinned) VALUES
         ('{SUB_ACTIVE}', '{OWNER}', NULL, 'CI hook', '{receiver}', '[\"threat_model.created\",\"diagram.updated\"]',
          '{SUB_SECRET}', 'active', 'old-challenge', 1, 0, {c}, {m}, {u}, 2, false),
         ('{SUB_PENDING}', '{OWNER}', 'tm-1', 'Pending hook', '{receiver}', '{{threat_model.updated}}',
          'pending-secret-0123456789abcdef', 'pending_verification', 'tmi-challenge-token', 0, 0, {c}, {c}, NULL, 0, false),
         ('{SUB_PINNED}', '{OWNER}', NULL, 'Operator alerts', 'https://alerts.example.com/tmi', '[\"*\"]',
          NULL, 'inactive', NULL, 0, 0, {c}, {c}, NULL, 0, true),
         ('{SUB_BAD_EVENTS}', '{OWNER}', NULL, 'Broken events', 'https://example.com/a', 'threat_model.created',
          NULL, 'active', NULL, 0, 0, {c}, {c}, NULL, 0, false),
         ('{SUB_BAD_STATUS}', '{OWNER}', NULL, 'Odd status', 'https://example.com/b', '[]',
          NULL, 'paused', NULL, 0, 0, {c}, {c}, NULL, 0, false),
         ('{SUB_BAD_ID}', '{OWNER}', NULL, 'Bad id', 'https://example.com/c', '[\"threat_model.created\"]',
          NULL, 'active', NULL, 0, 0, {c}, {c}, NULL, 0, false)",
        c = ago("30 days"),
        m = ago("1 day"),
        u = ago("2 hours"),
    ));
    pg.psql(&format!(
        "INSERT INTO addons (id, created_at, name, webhook_id, description, icon, objects, threat_model_id, parameters)
         VALUES
         ('{ADDON}', {c}, 'STRIDE scanner', '{SUB_ACTIVE}', 'Scans a threat model', 'material-symbols:security',
          '[\"threat_model\",\"diagram\"]', NULL,
          '[{{\"name\": \"mode\", \"type\": \"enum\", \"enum_values\": [\"fast\", \"deep\"], \"required\": true}}]'),
         ('{ADDON_ORPHAN}', {c}, 'Orphan', '{SUB_MISSING}', NULL, NULL, NULL, NULL, NULL)",
        c = ago("20 days"),
    ));
    pg.psql(&format!(
        "INSERT INTO webhook_quotas VALUES ('{OWNER}', 5, 12, 10, 20, {c}, {c});
         INSERT INTO addon_invocation_quotas VALUES ('{OWNER}', 2, 20, {c}, {c});
         INSERT INTO webhook_url_deny_list VALUES
           ('d0000000-0000-4000-8000-000000000001', '*.internal.example.com', 'glob', 'internal hosts', {c}),
           ('d0000000-0000-4000-8000-000000000002', '^10\\.', 'regex', NULL, {c}),
           ('d0000000-0000-4000-8000-000000000003', '*.corp', 'wildcard', 'unknown type', {c})",
        c = ago("10 days"),
    ));
    pg.psql(&format!(
        "INSERT INTO webhook_deliveries (id, subscription_id, event_type, payload, status, attempts, next_retry_at,
           last_error, created_at, delivered_at) VALUES
         ('{DELIVERY_DUE}', '{SUB_ACTIVE}', 'threat_model.created', '{DUE_PAYLOAD}', 'pending', 1, {due},
          'HTTP 503', {c10m}, NULL),
         ('{DELIVERY_LATER}', '{SUB_ACTIVE}', 'diagram.updated', '{{\"event_type\": \"diagram.updated\"}}', 'pending', 2,
          {later}, 'timeout', {c10m}, NULL),
         ('{DELIVERY_DONE}', '{SUB_ACTIVE}', 'threat_model.created', '{{\"n\": 1}}', 'delivered', 1, NULL, NULL,
          {c2d}, {d2d}),
         ('{DELIVERY_FAILED}', '{SUB_ACTIVE}', 'threat_model.created', '{{\"n\": 2}}', 'failed', 5, NULL, 'HTTP 500',
          {c1d}, NULL),
         ('{DELIVERY_OLD}', '{SUB_ACTIVE}', 'threat_model.created', '{{\"n\": 3}}', 'delivered', 1, NULL, NULL,
          {c9d}, {d8d}),
         ('{DELIVERY_BAD_STATUS}', '{SUB_ACTIVE}', 'threat_model.created', '{{}}', 'in_flight', 0, NULL, NULL,
          {now}, NULL),
         ('{DELIVERY_NO_SUB}', '{SUB_MISSING}', 'threat_model.created', '{{}}', 'pending', 0, NULL, NULL, {now}, NULL),
         ('{DELIVERY_BAD_ID}', '{SUB_ACTIVE}', 'threat_model.created', '{{}}', 'pending', 0, NULL, NULL, {now}, NULL)",
        due = ago("1 minute"),
        later = ahead("1 hour"),
        c10m = ago("10 minutes"),
        c2d = ago("2 days 1 minute"),
        d2d = ago("2 days"),
        c1d = ago("1 day"),
        c9d = ago("9 days"),
        d8d = ago("8 days"),
    ));
}

/// TMI's database, a private Redis and a store over it.
pub struct World {
    pub pg: PostgresServer,
    pub store: Store,
    pub redis_client: Client,
    pub redis: RedisServer,
}

impl World {
    pub async fn start() -> Self {
        Self::with_postgres(PostgresServer::start()).await
    }

    /// A world around an already started PostgreSQL (e.g. one with TLS).
    pub async fn with_postgres(pg: PostgresServer) -> Self {
        Self::on(pg, RedisServer::start()).await
    }

    /// A world on a started PostgreSQL and Redis (e.g. Redis with ACL users only): the runs get what they
    /// need to reach it, the test's store and client the harness's admin access.
    pub async fn on(pg: PostgresServer, redis: RedisServer) -> Self {
        let store = Store::connect(&redis.admin_options())
            .await
            .expect("connect store");
        let config =
            delivery_model::store::connection::fred_config(&redis.admin_options()).unwrap();
        let redis_client = Builder::from_config(config).build().unwrap();
        redis_client.init().await.unwrap();
        Self {
            pg,
            store,
            redis_client,
            redis,
        }
    }

    /// What every service of a test gets: this Redis, loopback receivers allowed (as the e2e harness).
    pub fn env(&self) -> Vec<(String, String)> {
        service_env(self.redis.service_env())
    }

    /// Runs `hookline-migrate args…` with this world's settings (the database from the config section,
    /// `sslmode=disable`: the test server has no TLS and the default is `verify-full`); returns (exit code,
    /// stdout).
    pub async fn migrate(&self, args: &[&str]) -> (i32, String) {
        let url = format!("{}?sslmode=disable", self.pg.url());
        let (code, stdout, _) = self
            .migrate_with(&[("HOOKLINE__MIGRATE__POSTGRES_URL", url.as_str())], args)
            .await;
        (code, stdout)
    }

    /// Runs `hookline-migrate args…` with this world's settings plus `env` (which names the database);
    /// returns (exit code, stdout, stderr).
    pub async fn migrate_with(&self, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
        let mut all = self.env();
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        run_migrate(&all, args).await
    }

    /// The summary line of `table` in a run's output.
    pub fn line<'a>(out: &'a str, table: &str) -> &'a str {
        let prefix = format!("{table}: ");
        out.lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no summary line for {table} in:\n{out}"))
    }

    pub async fn dbsize(&self) -> u64 {
        self.redis_client.dbsize().await.unwrap()
    }
}

/// `redis_env` (how to reach Redis) plus what every service of a test gets: loopback receivers allowed (as
/// the e2e harness), a quick scheduler and short reads.
pub fn service_env(redis_env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut env = redis_env;
    env.extend(
        [
            ("HOOKLINE__AUTH__JWT_SECRET", SECRET.to_owned()),
            ("HOOKLINE__OUTBOUND__ALLOW_HTTP_TARGETS", "true".to_owned()),
            ("HOOKLINE__OUTBOUND__ALLOWLIST", "127.0.0.1".to_owned()),
            ("HOOKLINE__SUBSCRIPTIONS__DENY_GLOBS", String::new()),
            ("HOOKLINE__WORKER__SCHEDULER_INTERVAL_MS", "50".to_owned()),
            ("HOOKLINE__WORKER__BLOCK_MS", "200".to_owned()),
            ("HOOKLINE__SHUTDOWN__GRACE_PERIOD_SECS", "2".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    env
}

/// Runs `hookline-migrate args…` with exactly `env` (a cleared environment otherwise, but `PATH`); returns
/// (exit code, stdout, stderr).
pub async fn run_migrate(env: &[(String, String)], args: &[&str]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookline-migrate"));
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("HOOKLINE__TELEMETRY__LOG_FORMAT", "json")
        .args(args)
        .stdin(Stdio::null());
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("hookline-migrate finishes")
        .expect("run hookline-migrate");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.code().is_none() {
        panic!("hookline-migrate killed: {stdout}\n{stderr}");
    }
    (out.status.code().unwrap_or(-1), stdout, stderr)
}
