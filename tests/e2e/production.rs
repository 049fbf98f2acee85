//! The Redis production runs: TLS with client certificates, and an ACL user restricted by exactly the rule
//! `docs/operations.md` gives. Each is one whole-pipeline scenario on its own redis-server variant
//! (`test_support::redis::RedisServer::start_tls` / `start_acl`), plus the ways a bad setup fails at start.

use delivery_model::delivery::DeliveryStatus;
use serde_json::json;
use test_support::certs::SERVER_NAME;
use test_support::receiver::Receiver;
use test_support::redis::{
    ACL_PASSWORD, ACL_USER, CLUSTER_ACL_ADDITIONS, HOOKLINE_ACL_RULE, RedisServer,
};
use test_support::service::ServiceBin;

use crate::harness::{Stack, WAIT, run_to_exit, user};

const TM: &str = "0f6c0000-0000-4000-8000-00000000abcd";

/// Settings a case changes, as (environment variable, value).
type Settings<'a> = Vec<(&'a str, &'a str)>;

/// `env` with `changes` applied (an empty value removes the key).
fn with(env: &[(String, String)], changes: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    for (k, v) in changes {
        env.retain(|(ek, _)| ek != k);
        if !v.is_empty() {
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
    }
    env
}

/// Subscribes a receiver, sends one event through `POST /events`, and waits until it is delivered, signed.
async fn deliver_one_event(stack: &Stack, rx: &Receiver) -> String {
    let (_, secret) = stack
        .verified_subscription(rx, &["threat_model.updated"], Some(TM))
        .await;
    let (status, body) = stack
        .api(
            "POST",
            "/events",
            Some(
                json!({"event_type": "threat_model.updated", "threat_model_id": TM,
                        "object_id": TM, "object_type": "threat_model", "data": {"n": 1}}),
            ),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let got = rx.wait_for_deliveries(1, WAIT).await;
    assert!(got[0].verify_signature(&secret));
    let id = got[0].delivery_id().expect("delivery id").to_owned();
    stack
        .wait_delivery(&id, "delivered", |r| r.status == DeliveryStatus::Delivered)
        .await;
    id
}

#[tokio::test]
async fn the_pipeline_runs_over_mutual_tls_and_a_bad_tls_setup_fails_at_start() {
    let stack = Stack::start_on(RedisServer::start_tls(true), &[]).await;
    let rx = Receiver::start().await;
    deliver_one_event(&stack, &rx).await;

    let files = stack.redis().tls_files().expect("a TLS server").clone();
    let untrusted = files.untrusted_ca.display().to_string();
    let plain = RedisServer::start();
    let plain_url = format!("rediss://127.0.0.1:{}", plain.port());
    let fast = ("HOOKLINE__REDIS__COMMAND_TIMEOUT_MS", "1500");
    let cases: [(&str, Settings<'_>, &str); 4] = [
        (
            "untrusted CA",
            vec![("HOOKLINE__REDIS__TLS_CA_FILE", &untrusted)],
            "UnknownIssuer",
        ),
        (
            "wrong host name",
            vec![("HOOKLINE__REDIS__TLS_SERVER_NAME", "other.hookline.test")],
            "NotValidForName",
        ),
        (
            "no client certificate",
            vec![
                ("HOOKLINE__REDIS__TLS_CLIENT_CERT_FILE", ""),
                ("HOOKLINE__REDIS__TLS_CLIENT_KEY_FILE", ""),
            ],
            "CertificateRequired",
        ),
        (
            "plaintext server",
            vec![("HOOKLINE__REDIS__URL", &plain_url), fast],
            "over TLS",
        ),
    ];
    for (what, changes, needle) in cases {
        let env = with(&stack.env, &changes);
        let (code, out) = run_to_exit(ServiceBin::EventConsumer, &[], &env).await;
        assert_ne!(code, Some(0), "{what}: {out}");
        assert!(out.contains(needle), "{what}: {needle:?} not in {out}");
    }
    // The override names a name the certificate carries: starts (and exits after one cleanup cycle).
    let env = with(
        &stack.env,
        &[("HOOKLINE__REDIS__TLS_SERVER_NAME", SERVER_NAME)],
    );
    let (code, out) = run_to_exit(ServiceBin::Cleanup, &["--once"], &env).await;
    assert_eq!(code, Some(0), "{out}");
}

/// The entries of `ACL LOG` (what Redis refused the restricted user), as text.
async fn acl_log(stack: &Stack) -> Vec<String> {
    use fred::prelude::*;
    let client = stack.redis_client().await;
    let log: Vec<fred::types::Value> = client
        .custom(fred::cmd!("ACL"), vec!["LOG"])
        .await
        .expect("ACL LOG");
    log.iter().map(|entry| format!("{entry:?}")).collect()
}

#[tokio::test]
async fn the_whole_pipeline_runs_as_the_minimal_acl_user() {
    let stack = Stack::start_on(RedisServer::start_acl(HOOKLINE_ACL_RULE), &[]).await;
    let rx = Receiver::start().await;
    // Fail once first, so the retry schedule and its promotion run too.
    rx.push_response(test_support::receiver::Response::status(500));
    let id = deliver_one_event(&stack, &rx).await;
    assert_eq!(rx.deliveries().len(), 2, "one failure, one retry");

    // An add-on invocation (quota, rate-limit and dedup keys, all in one script) is delivered too.
    let sub = rx.deliveries()[0]
        .subscription_id()
        .expect("subscription id")
        .to_owned();
    let addon = stack
        .create_addon(json!({"name": "Scanner", "webhook_id": sub, "objects": ["threat_model"]}))
        .await;
    let body = format!(
        r#"{{"threat_model_id":"{TM}","object_type":"threat_model","object_id":"{TM}","data":{{}}}}"#
    );
    let addon_id = addon["id"].as_str().expect("add-on id");
    let answer = stack.invoke(&user("alice"), addon_id, &body).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    rx.wait_for_deliveries(3, WAIT).await;

    // Reads the gateway serves from index scripts.
    let (status, body) = stack
        .api("GET", "/admin/webhooks/deliveries?status=delivered", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains(&id), "{body}");

    // cleanup --once: the lease, every step (SCAN, SSCAN, XINFO, XTRIM) as the restricted user.
    let (code, out) = run_to_exit(ServiceBin::Cleanup, &["--once"], &stack.env).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("cleanup cycle completed"), "{out}");

    let denied = acl_log(&stack).await;
    assert!(denied.is_empty(), "Redis refused the ACL user: {denied:#?}");

    // The password is in no log line: not of the running services, not of one refused at start with a
    // wrong password in its URL.
    for service in [&stack.api, &stack.consumer, &stack.worker] {
        let logs = service.logs().join("\n");
        assert!(!logs.contains(ACL_PASSWORD), "{logs}");
    }
    let wrong_url = format!(
        "redis://{ACL_USER}:wrong-secret-77@127.0.0.1:{}",
        stack.redis().port()
    );
    let env = with(
        &stack.env,
        &[
            ("HOOKLINE__REDIS__URL", &wrong_url),
            ("HOOKLINE__REDIS__USERNAME", ""),
            ("HOOKLINE__REDIS__PASSWORD_FILE", ""),
        ],
    );
    let (code, out) = run_to_exit(ServiceBin::EventConsumer, &[], &env).await;
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("WRONGPASS"), "{out}");
    assert!(!out.contains("wrong-secret-77"), "{out}");
    assert!(
        out.contains(&format!("{ACL_USER}:***@")),
        "the URL, redacted: {out}"
    );

    // And the restriction is real: a command outside the rule is refused.
    use fred::prelude::*;
    let mut opts = stack.redis().admin_options();
    opts.username = Some(ACL_USER.into());
    opts.password = Some(delivery_model::store::Secret::new(ACL_PASSWORD));
    let config = delivery_model::store::connection::fred_config(&opts).unwrap();
    let restricted = Builder::from_config(config).build().unwrap();
    restricted.init().await.unwrap();
    let refused: Result<fred::types::Value, _> = restricted
        .custom(fred::cmd!("FLUSHALL"), Vec::<String>::new())
        .await;
    assert!(refused.is_err_and(|e| e.details().contains("NOPERM")));
    let refused: Result<fred::types::Value, _> = restricted.get("some:other:key").await;
    assert!(refused.is_err_and(|e| e.details().contains("NOPERM")));
}

#[test]
fn the_documented_acl_rule_is_the_tested_one() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/operations.md"
    ))
    .expect("docs/operations.md");
    let documented = format!("ACL SETUSER hookline on >PASSWORD {HOOKLINE_ACL_RULE}\n");
    assert!(
        doc.contains(&documented),
        "docs/operations.md must give the rule the tests use: {HOOKLINE_ACL_RULE}"
    );
    // What a Redis Cluster adds (crates/delivery-model/tests/it/cluster.rs runs the user with both).
    let cluster = format!("ACL SETUSER hookline {CLUSTER_ACL_ADDITIONS}\n");
    assert!(
        doc.contains(&cluster),
        "docs/operations.md must give the cluster additions the tests use: {CLUSTER_ACL_ADDITIONS}"
    );
}
