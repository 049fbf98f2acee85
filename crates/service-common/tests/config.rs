//! Environment-variable parsing of the configuration. Its own test binary: the environment is passed
//! explicitly through `Settings::load_from`, never set on the process.
#![expect(clippy::unwrap_used, reason = "tests")]

use service_common::config::{ConfigError, LogFormat, Settings};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![("HOOKLINE__AUTH__JWT_SECRET".into(), "s".into())];
    v.extend(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    v
}

#[test]
fn defaults_load_and_match_tmi() {
    let s = Settings::load_from(env(&[])).unwrap();
    assert_eq!(s.redis.events_stream, "tmi:events");
    assert_eq!(
        s.worker.retry_schedule_ms,
        [60_000, 300_000, 900_000, 1_800_000]
    );
    assert_eq!(s.worker.max_attempts, 5);
    assert_eq!(s.delivery.active_ttl_secs, 4 * 3600);
    assert_eq!(s.delivery.terminal_ttl_secs, 7 * 24 * 3600);
    assert!(!s.outbound.allow_http_targets);
    assert!(s.subscriptions.deny_globs.contains(&"127.*".to_owned()));
}

#[test]
fn environment_overrides_scalars_booleans_and_lists() {
    let s = Settings::load_from(env(&[
        ("HOOKLINE__REDIS__URL", "redis://10.0.0.5:6380/2"),
        ("HOOKLINE__OUTBOUND__ALLOW_HTTP_TARGETS", "true"),
        ("HOOKLINE__WORKER__MAX_IN_FLIGHT", "12"),
        ("HOOKLINE__WORKER__RETRY_SCHEDULE_MS", "50"),
        ("HOOKLINE__WORKER__CIRCUIT_OPEN_MS", "100,200"),
        ("HOOKLINE__OUTBOUND__ALLOWLIST", "127.0.0.1,10.0.0.0/8"),
        ("HOOKLINE__SUBSCRIPTIONS__DENY_GLOBS", ""),
        ("HOOKLINE__TELEMETRY__LOG_FORMAT", "json"),
    ]))
    .unwrap();
    assert_eq!(s.redis.url, "redis://10.0.0.5:6380/2");
    assert!(s.outbound.allow_http_targets);
    assert_eq!(s.worker.max_in_flight, 12);
    assert_eq!(s.worker.retry_schedule_ms, [50]);
    assert_eq!(s.worker.circuit_open_ms, [100, 200]);
    assert_eq!(s.outbound.allowlist, ["127.0.0.1", "10.0.0.0/8"]);
    assert!(s.subscriptions.deny_globs.is_empty());
    assert_eq!(s.telemetry.log_format, LogFormat::Json);
}

fn err(pairs: &[(&str, &str)]) -> String {
    match Settings::load_from(env(pairs)) {
        Err(e @ (ConfigError::Invalid { .. } | ConfigError::Load(_))) => e.to_string(),
        Ok(_) => panic!("accepted {pairs:?}"),
    }
}

#[test]
fn bad_values_name_the_key() {
    assert!(err(&[("HOOKLINE__REDIS__URL", "http://x")]).contains("redis.url"));
    assert!(err(&[("HOOKLINE__WORKER__MAX_IN_FLIGHT", "0")]).contains("worker.max_in_flight"));
    assert!(err(&[("HOOKLINE__WORKER__MAX_IN_FLIGHT", "many")]).contains("worker.max_in_flight"));
    assert!(
        err(&[("HOOKLINE__OUTBOUND__ALLOWLIST", "10.0.0.0/99")]).contains("outbound.allowlist")
    );
    assert!(err(&[("HOOKLINE__AUTH__JWT_ALGORITHM", "none")]).contains("auth.jwt_algorithm"));
    assert!(err(&[("HOOKLINE__AUTH__JWT_SECRET", "")]).contains("auth.jwt_secret"));
    assert!(
        err(&[("HOOKLINE__SUBSCRIPTIONS__DENY_REGEXES", "(")])
            .contains("subscriptions.deny_regexes")
    );
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let e = err(&[("HOOKLINE__WORKER__MAX_INFLIGHT", "3")]);
    assert!(e.contains("max_inflight"), "{e}");
    let e = err(&[("HOOKLINE__NOPE__X", "1")]);
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn loss_budget_settings_load_and_bad_ones_name_the_key() {
    let s = Settings::load_from(env(&[
        ("HOOKLINE__REDIS__WAIT_REPLICAS", "1"),
        ("HOOKLINE__REDIS__WAIT_TIMEOUT_MS", "250"),
    ]))
    .unwrap();
    let opts = s.store_options();
    assert_eq!(opts.wait_replicas, 1);
    assert_eq!(opts.wait_timeout, std::time::Duration::from_millis(250));
    assert_eq!(s.api.idempotency_window_secs, 86_400);
    for (pairs, key) in [
        (
            &[
                ("HOOKLINE__REDIS__WAIT_REPLICAS", "1"),
                ("HOOKLINE__REDIS__WAIT_TIMEOUT_MS", "5000"),
            ][..],
            "redis.wait_timeout_ms",
        ),
        (
            &[("HOOKLINE__REDIS__WAIT_TIMEOUT_MS", "0")],
            "redis.wait_timeout_ms",
        ),
        (
            &[("HOOKLINE__REDIS__WAIT_REPLICAS", "17")],
            "redis.wait_replicas",
        ),
        (
            &[("HOOKLINE__API__IDEMPOTENCY_WINDOW_SECS", "10")],
            "api.idempotency_window_secs",
        ),
    ] {
        let e = err(pairs);
        assert!(e.contains(key), "{pairs:?}: {e}");
    }
}
