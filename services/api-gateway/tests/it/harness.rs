//! A running gateway for one test: its own redis-server, a random key prefix, the real `run` on a loopback
//! port, and a small HTTP client. Dropping a [`TestApp`] stops the server (gracefully) and then Redis.

use std::collections::HashMap;
use std::time::Duration;

use api_gateway::error::RunError;
use bytes::Bytes;
use delivery_model::store::Store;
use fred::prelude::*;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use service_common::config::Settings;
use test_support::redis::RedisServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The HS256 secret every test token is signed with.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

/// Subject of [`admin_token`].
pub const ADMIN_ID: &str = "admin-1";

/// A token signed with [`SECRET`] carrying `claims`.
pub fn token(alg: Algorithm, claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
    jsonwebtoken::encode(&Header::new(alg), claims, &key).expect("encode")
}

fn exp() -> i64 {
    chrono::Utc::now().timestamp() + 600
}

/// An administrator by the `tmi_is_administrator` claim.
pub fn admin_token() -> String {
    token(
        Algorithm::HS256,
        &json!({"sub": ADMIN_ID, "email": "admin@example.com", "tmi_is_administrator": true, "exp": exp()}),
    )
}

/// An ordinary user.
pub fn user_token() -> String {
    token(
        Algorithm::HS256,
        &json!({"sub": "user-1", "email": "user@example.com", "exp": exp()}),
    )
}

/// An ordinary user with extra claims.
pub fn user_token_with(extra: Value) -> String {
    let mut claims = json!({"sub": "user-2", "exp": exp()});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    token(Algorithm::HS256, &claims)
}

pub struct TestApp {
    pub base: String,
    pub store: Store,
    /// A plain Redis client, to look at what the gateway wrote.
    pub redis: Client,
    /// The registry the gateway registers its metrics in (its ops listener renders it).
    registry: prometheus::Registry,
    token: CancellationToken,
    server: Option<JoinHandle<Result<(), RunError>>>,
    http: Option<HttpClient<HttpConnector, Full<Bytes>>>,
    // Declared last so that it is dropped last, after the server stopped.
    pub redis_server: RedisServer,
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the test defaults, then `adjust` applied to the settings.
    pub async fn start_with(adjust: impl FnOnce(&mut Settings)) -> Self {
        let redis_server = RedisServer::start();
        let mut settings = Settings::load_from([
            ("HOOKLINE__REDIS__URL".to_owned(), redis_server.url()),
            ("HOOKLINE__AUTH__JWT_SECRET".to_owned(), SECRET.to_owned()),
        ])
        .expect("settings");
        settings.redis.key_prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
        settings.redis.pool_size = 2;
        settings.api.workers = 1;
        settings.shutdown.grace_period_secs = 2;
        adjust(&mut settings);
        let store = Store::connect(&settings.store_options())
            .await
            .expect("store");
        let redis = Builder::from_config(Config::from_url(&redis_server.url()).expect("url"))
            .build()
            .expect("client");
        redis.init().await.expect("redis init");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let token = CancellationToken::new();
        let registry = prometheus::Registry::new();
        let server = tokio::spawn(api_gateway::run_on(
            settings,
            store.clone(),
            registry.clone(),
            listener,
            token.clone(),
        ));
        let http = HttpClient::builder(TokioExecutor::new()).build_http();
        Self {
            base,
            store,
            redis,
            registry,
            token,
            server: Some(server),
            http: Some(http),
            redis_server,
        }
    }

    /// The gateway's metrics as its ops listener's `/metrics` renders them.
    pub fn metrics(&self) -> String {
        service_common::ops::render_metrics(&self.registry)
    }

    pub fn request(&self, method: Method, path: &str) -> Req<'_> {
        Req {
            app: self,
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn get(&self, path: &str) -> Req<'_> {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Req<'_> {
        self.request(Method::POST, path)
    }

    pub fn put(&self, path: &str) -> Req<'_> {
        self.request(Method::PUT, path)
    }

    pub fn delete(&self, path: &str) -> Req<'_> {
        self.request(Method::DELETE, path)
    }

    /// Creates a subscription as admin and returns the 201 body.
    pub async fn create_subscription(&self, body: Value) -> Value {
        let res = self
            .post("/admin/webhooks/subscriptions")
            .bearer(&admin_token())
            .json(&body)
            .send()
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        res.json()
    }

    /// Stops the server and returns how `run` ended.
    pub async fn shutdown(mut self) -> Result<(), RunError> {
        self.http.take();
        self.token.cancel();
        let server = self.server.take().expect("server running");
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("stops in time")
            .expect("join")
    }

    /// Entries of a stream: (id, fields).
    pub async fn stream_entries(&self, key: &str) -> Vec<(String, HashMap<String, String>)> {
        self.redis
            .xrange_values(key, "-", "+", None)
            .await
            .expect("xrange")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Idle keep-alive connections would hold the graceful drain open: close them first.
        self.http.take();
        self.token.cancel();
        if let Some(server) = self.server.take() {
            // Wait for the drain so that no worker thread outlives the test (multi-thread runtime only).
            tokio::task::block_in_place(|| {
                let _ = tokio::runtime::Handle::current().block_on(async {
                    tokio::time::timeout(Duration::from_secs(10), server).await
                });
            });
        }
    }
}

/// A request being built.
pub struct Req<'a> {
    app: &'a TestApp,
    method: Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Req<'_> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            HeaderName::try_from(name).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        ));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn admin(self) -> Self {
        self.bearer(&admin_token())
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(self, v: &Value) -> Self {
        self.raw("application/json", v.to_string())
    }

    /// A body with the given content type.
    pub fn raw(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self.header("content-type", content_type)
    }

    /// A body without any content type.
    pub fn untyped(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub async fn send(self) -> Resp {
        let mut req = Request::builder()
            .method(self.method)
            .uri(format!("{}{}", self.app.base, self.path));
        for (k, v) in self.headers {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(self.body)).expect("request");
        let http = self.app.http.as_ref().expect("client");
        let res = tokio::time::timeout(Duration::from_secs(20), http.request(req))
            .await
            .expect("answered in time")
            .expect("request sent");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }
}

/// A received response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and TMI's error body, exactly.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, error: &str, description: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.error(),
            (error.to_owned(), description.to_owned()),
            "{status}"
        );
    }

    /// Asserts TMI's error shape and returns `(error, error_description)`.
    pub fn error(&self) -> (String, String) {
        let v = self.json();
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("error body is not an object: {v}"));
        assert_eq!(
            obj.len(),
            2,
            "error body has exactly error and error_description: {v}"
        );
        (
            obj["error"].as_str().expect("error is a string").to_owned(),
            obj["error_description"]
                .as_str()
                .expect("error_description is a string")
                .to_owned(),
        )
    }
}

/// A valid subscription body.
pub fn subscription_body() -> Value {
    json!({"name": "Test hook", "url": "https://example.com/hook", "events": ["threat_model.created"]})
}
