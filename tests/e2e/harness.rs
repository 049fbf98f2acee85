//! One harness for every scenario: a private Redis, the services, a client for the API and the store.

use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use delivery_model::delivery::DeliveryRecord;
use delivery_model::event::StreamEvent;
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::keys::Keyspace;
use delivery_model::store::Store;
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::trace::TraceContext;
use serde_json::{Value, json};
use test_support::cluster::{Cluster, ClusterOptions};
use test_support::receiver::Receiver;
use test_support::redis::RedisServer;
use test_support::redis::hookline_cluster_acl_rule;
use test_support::service::{Service, ServiceBin};
use test_support::{auth, http, wait};

use crate::contract::Contract;

pub const SECRET: &str = "e2e-jwt-secret-0123456789abcdef0123";
pub const WAIT: Duration = Duration::from_secs(15);

/// Settings every e2e run uses: loopback receivers reachable only through the allowlist, short schedules.
pub fn base_env(redis_url: &str) -> Vec<(String, String)> {
    [
        ("HOOKLINE__REDIS__URL", redis_url),
        ("HOOKLINE__AUTH__JWT_SECRET", SECRET),
        ("HOOKLINE__OUTBOUND__ALLOW_HTTP_TARGETS", "true"),
        ("HOOKLINE__OUTBOUND__ALLOWLIST", "127.0.0.1"),
        // The create-time deny list refuses 127.*; receivers here are on loopback.
        ("HOOKLINE__SUBSCRIPTIONS__DENY_GLOBS", ""),
        (
            "HOOKLINE__SUBSCRIPTIONS__CHALLENGE_RETRY_INTERVAL_MS",
            "200",
        ),
        ("HOOKLINE__WORKER__RETRY_SCHEDULE_MS", "200,300,400,500"),
        ("HOOKLINE__WORKER__SCHEDULER_INTERVAL_MS", "50"),
        ("HOOKLINE__WORKER__BLOCK_MS", "200"),
        ("HOOKLINE__CONSUMER__BLOCK_MS", "200"),
        ("HOOKLINE__CONSUMER__CLAIM_IDLE_MS", "2000"),
        ("HOOKLINE__SHUTDOWN__GRACE_PERIOD_SECS", "5"),
        ("HOOKLINE__OUTBOUND__REQUEST_TIMEOUT_MS", "3000"),
        ("HOOKLINE__WORKER__LEASE_MARGIN_MS", "1000"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

pub fn merge(mut env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    env
}

/// A running stack.
pub struct Stack {
    pub api: Service,
    pub consumer: Service,
    pub worker: Service,
    pub store: Store,
    /// The settings every service of this stack got (for replicas and restarts).
    pub env: Vec<(String, String)>,
    admin: String,
    /// The API's OpenAPI document: every answer a test gets is checked against it.
    contract: Contract,
    // Last: dropped after the services so they never see Redis vanish.
    backing: Backing,
}

/// What a scenario runs on: the end-to-end scenarios that matter most run on both (issue #15).
#[derive(Clone, Copy, Debug)]
pub enum On {
    /// One plain redis-server.
    Single,
    /// A 3-master Redis Cluster, the services connecting as the minimal ACL user (with the cluster's
    /// additions) and the queue in 12 shards.
    Cluster,
}

/// Where a stack's data lives: one redis-server (every variant of it), or a Redis Cluster.
enum Backing {
    Single(RedisServer),
    Cluster(Cluster),
}

impl Backing {
    fn admin_options(&self) -> delivery_model::store::StoreOptions {
        match self {
            Backing::Single(r) => r.admin_options(),
            Backing::Cluster(c) => c.admin_options(),
        }
    }

    fn service_env(&self) -> Vec<(String, String)> {
        match self {
            Backing::Single(r) => r.service_env(),
            Backing::Cluster(c) => c.service_env(),
        }
    }
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts Redis and the three pipeline services with `extra` settings on top of the e2e defaults.
    pub async fn start_with(extra: &[(&str, &str)]) -> Self {
        Self::start_on(RedisServer::start(), extra).await
    }

    /// The three pipeline services on `redis` (a TLS or ACL variant: the services get what they need to
    /// reach it, the test's own store and clients the harness's admin access), `extra` on top.
    pub async fn start_on(redis: RedisServer, extra: &[(&str, &str)]) -> Self {
        let url = redis.url();
        Self::start_via(redis, &url, extra).await
    }

    /// As [`start_on`](Self::start_on), but the services reach `redis` at `services_url` (a proxy in front
    /// of it); the test's own store still talks to `redis` directly.
    pub async fn start_via(redis: RedisServer, services_url: &str, extra: &[(&str, &str)]) -> Self {
        Self::start_backed(Backing::Single(redis), services_url, extra).await
    }

    /// The three pipeline services on what `on` names, `extra` on top of the e2e defaults.
    pub async fn start_for(on: On, extra: &[(&str, &str)]) -> Self {
        match on {
            On::Single => Self::start_with(extra).await,
            On::Cluster => {
                let cluster = Cluster::start_with(ClusterOptions {
                    acl_rule: Some(hookline_cluster_acl_rule()),
                    ..ClusterOptions::new(3, 0)
                });
                Self::start_on_cluster(cluster, extra).await
            }
        }
    }

    /// The three pipeline services on a Redis Cluster (with the services' ACL user when it has one), `extra`
    /// on top; the test's own store is the harness's admin access.
    pub async fn start_on_cluster(cluster: Cluster, extra: &[(&str, &str)]) -> Self {
        let url = cluster.url();
        Self::start_backed(Backing::Cluster(cluster), &url, extra).await
    }

    async fn start_backed(backing: Backing, services_url: &str, extra: &[(&str, &str)]) -> Self {
        let access = backing.service_env();
        // The URL is `services_url`'s; the rest (credentials, TLS files) is the server's.
        let access: Vec<(&str, &str)> = access
            .iter()
            .filter(|(k, _)| k != "HOOKLINE__REDIS__URL")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let env = merge(merge(base_env(services_url), &access), extra);
        let api = Service::start(ServiceBin::ApiGateway, &env).await;
        let consumer = Service::start(ServiceBin::EventConsumer, &env).await;
        let worker = Service::start(ServiceBin::DeliveryWorker, &env).await;
        let store = Store::connect(&backing.admin_options())
            .await
            .expect("connect store");
        let admin = auth::admin_token(SECRET, "admin-1");
        let contract = Contract::fetch(&api.api_url("/openapi.json")).await;
        Self {
            api,
            consumer,
            worker,
            store,
            env,
            admin,
            contract,
            backing,
        }
    }

    /// The stack's one redis-server (not for a cluster stack).
    pub fn redis(&self) -> &RedisServer {
        match &self.backing {
            Backing::Single(r) => r,
            Backing::Cluster(_) => panic!("a cluster stack has no single redis-server"),
        }
    }

    /// [`redis`](Self::redis), to stop or restart it.
    pub fn redis_mut(&mut self) -> &mut RedisServer {
        match &mut self.backing {
            Backing::Single(r) => r,
            Backing::Cluster(_) => panic!("a cluster stack has no single redis-server"),
        }
    }

    /// The API's OpenAPI document, as the checks of every answer use it.
    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    /// An API call as the admin; returns (status, JSON body or Null).
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api_as(&self.admin, method, path, body).await
    }

    pub async fn api_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let bearer = format!("Bearer {token}");
        let mut headers = vec![("authorization", bearer.as_str())];
        let payload = match &body {
            Some(b) => {
                headers.push(("content-type", "application/json"));
                b.to_string()
            }
            None => String::new(),
        };
        let (status, h, bytes) =
            http::request(method, &self.api.api_url(path), &headers, payload).await;
        self.contract
            .check(method, path, status, content_type(&h), &bytes);
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Creates a subscription for `events` at `url`; returns the 201 body.
    pub async fn create_subscription(&self, url: &str, events: &[&str], tm: Option<&str>) -> Value {
        let mut body = json!({"name": "e2e", "url": url, "events": events});
        if let Some(tm) = tm {
            body["threat_model_id"] = json!(tm);
        }
        let (status, created) = self
            .api("POST", "/admin/webhooks/subscriptions", Some(body))
            .await;
        assert_eq!(status, 201, "create subscription: {created}");
        created
    }

    pub async fn subscription(&self, id: SubscriptionId) -> Option<Subscription> {
        self.store
            .get_subscription(id)
            .await
            .expect("read subscription")
    }

    pub async fn wait_status(&self, id: SubscriptionId, status: SubscriptionStatus) {
        wait::until(
            &format!("subscription {id} becomes {status}"),
            WAIT,
            || async {
                (self.subscription(id).await.map(|s| s.status) == Some(status)).then_some(())
            },
        )
        .await;
    }

    /// Creates a subscription and waits until the receiver has verified it. Returns (id, secret).
    pub async fn verified_subscription(
        &self,
        rx: &Receiver,
        events: &[&str],
        tm: Option<&str>,
    ) -> (SubscriptionId, String) {
        let created = self.create_subscription(&rx.url(), events, tm).await;
        let id: SubscriptionId = created["id"].as_str().unwrap().parse().unwrap();
        self.wait_status(id, SubscriptionStatus::Active).await;
        (id, created["secret"].as_str().unwrap().to_owned())
    }

    /// Starts one more replica of `bin` with this stack's settings plus `extra`.
    pub async fn replica(&self, bin: ServiceBin, extra: &[(&str, &str)]) -> Service {
        Service::start(bin, &merge(self.env.clone(), extra)).await
    }

    /// Stores an already-active subscription directly (no challenge): for targets a challenge could never
    /// reach, such as those the SSRF guard refuses.
    pub async fn active_subscription(&self, url: &str, events: &[&str]) -> SubscriptionId {
        let now = delivery_model::time::now_micros();
        let sub = Subscription {
            secret: Some("direct-secret-0123456789".into()),
            ..Subscription::new(
                "admin-1",
                "direct",
                url,
                events.iter().map(|e| (*e).to_owned()).collect(),
                SubscriptionStatus::Active,
                now,
            )
        };
        assert!(
            self.store
                .create_subscription(&sub)
                .await
                .expect("store subscription")
        );
        sub.id
    }

    /// Ids of every delivery of `subscription`, oldest first.
    pub async fn deliveries_of(&self, subscription: SubscriptionId) -> Vec<DeliveryRecord> {
        self.store
            .list_deliveries(Some(subscription), 0, 10_000)
            .await
            .expect("list deliveries")
            .items
    }

    /// Appends a TMI-shaped event to `tmi:events`, as TMI's emitter does.
    pub async fn publish(&self, event_type: &str, tm: Option<&str>, data: Value) -> String {
        self.publish_traced(event_type, tm, data, None).await
    }

    /// [`publish`](Self::publish) with `traceparent`/`tracestate` fields in the entry when `trace` is set
    /// (a producer that continues its own trace).
    pub async fn publish_traced(
        &self,
        event_type: &str,
        tm: Option<&str>,
        data: Value,
        trace: Option<TraceContext>,
    ) -> String {
        let object_id = tm.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        let mut payload = json!({
            "event_type": event_type,
            "object_id": object_id,
            "object_type": event_type.split('.').next().unwrap_or("thing"),
            "owner_id": "owner-1",
            "timestamp": "2026-04-01T12:00:00.123456789Z",
            "data": data,
        });
        if let Some(tm) = tm {
            payload["threat_model_id"] = json!(tm);
        }
        let event = StreamEvent {
            event_type: event_type.to_owned(),
            threat_model_id: tm.map(str::to_owned),
            object_id: Some(object_id),
            object_type: payload["object_type"].as_str().map(str::to_owned),
            owner_id: Some("owner-1".into()),
            timestamp: Some("2026-04-01T12:00:00Z".into()),
            payload: payload.to_string(),
            delivery_id: None,
            trace,
        };
        self.store.publish_event(&event).await.expect("publish")
    }

    pub async fn delivery(&self, id: &str) -> DeliveryRecord {
        let id: DeliveryId = id.parse().expect("delivery id");
        self.store
            .get_delivery(id)
            .await
            .expect("read delivery")
            .expect("delivery exists")
    }

    /// Waits until delivery `id` satisfies `pred`; returns it.
    pub async fn wait_delivery(
        &self,
        id: &str,
        what: &str,
        pred: impl Fn(&DeliveryRecord) -> bool,
    ) -> DeliveryRecord {
        wait::until(what, WAIT, || async {
            let d = self.delivery(id).await;
            pred(&d).then_some(d)
        })
        .await
    }
}

// ---- add-ons and callbacks (issue #3) ------------------------------------------------------------------------

/// An answer: status, headers (names lower-cased) and the body as JSON (`Null` when not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Answer {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The token of the admin every stack's `api` calls use (`admin-1`).
fn content_type(h: &http::HeaderMap) -> &str {
    h.get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

pub fn admin() -> String {
    auth::admin_token(SECRET, "admin-1")
}

/// A token for user `sub` with an e-mail address and a display name (not an administrator).
pub fn user(sub: &str) -> String {
    auth::user_token(SECRET, sub, &format!("{sub}@example.com"))
}

impl Stack {
    /// Any request: an optional bearer token, extra headers, the body exactly as given.
    pub async fn send(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(b) = &bearer {
            all.push(("authorization", b.as_str()));
        }
        if !body.is_empty() {
            all.push(("content-type", "application/json"));
        }
        let (status, h, bytes) =
            http::request(method, &self.api.api_url(path), &all, body.to_owned()).await;
        self.contract
            .check(method, path, status, content_type(&h), &bytes);
        Answer {
            status,
            headers: h
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// Creates an add-on as the admin; returns the 201 body.
    pub async fn create_addon(&self, body: Value) -> Value {
        let (status, created) = self.api("POST", "/addons", Some(body)).await;
        assert_eq!(status, 201, "create add-on: {created}");
        created
    }

    /// `POST /addons/{addon}/invoke` as `token` with `body` sent byte for byte.
    pub async fn invoke(&self, token: &str, addon: &str, body: &str) -> Answer {
        self.send(
            Some(token),
            "POST",
            &format!("/addons/{addon}/invoke"),
            &[],
            body,
        )
        .await
    }

    /// A receiver's status callback for delivery `id`, signed with `secret` over the exact `body`.
    pub async fn callback(&self, id: &str, secret: &str, body: &str) -> Answer {
        let sig = test_support::receiver::signature(secret, body.as_bytes());
        self.send(
            None,
            "POST",
            &format!("/webhook-deliveries/{id}/status"),
            &[("x-webhook-signature", &sig)],
            body,
        )
        .await
    }

    /// The key names the services use (their store and this one share the default, empty, prefix).
    pub fn keys(&self) -> &Keyspace {
        self.store.keys()
    }

    /// A plain client on this stack's Redis, to read (or break) what the services wrote.
    pub async fn redis_client(&self) -> fred::prelude::Client {
        use fred::prelude::*;
        let config = delivery_model::store::connection::fred_config(&self.backing.admin_options())
            .expect("redis config");
        let client = Builder::from_config(config).build().expect("redis client");
        client.init().await.expect("redis init");
        client
    }
}

/// An id the API answered as a string, typed for a [`Keyspace`] builder.
pub fn parse_id<T: FromStr>(id: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    id.parse().expect("an id the API answered")
}

/// The claims of an HS256 JWT, provided its signature verifies under `key`.
pub fn verified_jwt_claims(token: &str, key: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (header, claims, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header_json: Value = serde_json::from_slice(&base64url_decode(header)?).ok()?;
    if header_json["alg"] != "HS256" {
        return None;
    }
    // `signature` answers `sha256=<hex>` of HMAC-SHA256 over the signing input `<header>.<claims>`.
    let expected = test_support::receiver::signature(key, format!("{header}.{claims}").as_bytes());
    let got: String = base64url_decode(sig)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if expected != format!("sha256={got}") {
        return None;
    }
    serde_json::from_slice(&base64url_decode(claims)?).ok()
}

/// Unpadded base64url (RFC 4648 §5), as JWTs use.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// Runs `bin args…` to its exit with `env` (on top of a cleared environment); returns its exit code and
/// output. For runs expected to stop by themselves: `cleanup --once`, or a service that cannot start.
pub async fn run_to_exit(
    bin: ServiceBin,
    args: &[&str],
    env: &[(String, String)],
) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(bin.path());
    cmd.args(args)
        .env_clear()
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env.iter().cloned())
        .env("HOOKLINE__OPS__LISTEN", "127.0.0.1:0")
        .env("HOOKLINE__API__LISTEN", "127.0.0.1:0")
        .env("HOOKLINE__TELEMETRY__LOG_FORMAT", "json");
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("the process exits by itself")
        .expect("run the binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}
