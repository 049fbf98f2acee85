//! The `[cleanup]` settings as the binary loads them: defaults (TMI's thresholds), environment overrides and
//! validation naming the key. Its own test binary: the environment is passed explicitly, never set.
#![expect(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use cleanup::config::{CleanupConfig, risky_settings};
use service_common::config::Settings;

fn load(pairs: &[(&str, &str)]) -> Result<Settings, String> {
    let mut env: Vec<(String, String)> = vec![(
        "HOOKLINE__AUTH__JWT_SECRET".into(),
        "config-test-secret-abcdefghijklmnopqrstuv".into(),
    )];
    env.extend(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Settings::load_from(env).map_err(|e| e.to_string())
}

#[test]
fn defaults_follow_tmi_and_find_stale_deliveries_within_a_minute() {
    let s = load(&[]).unwrap();
    let c = CleanupConfig::from_settings(&s);
    assert_eq!(c.stale_after, Duration::from_secs(15 * 60));
    assert_eq!(c.lifecycle.idle_after, Duration::from_secs(90 * 86_400));
    assert_eq!(c.lifecycle.broken_min_failures, 10);
    assert_eq!(c.lifecycle.broken_after, Duration::from_secs(7 * 86_400));
    assert_eq!(c.lifecycle.delete_grace, Duration::ZERO);
    assert!(
        c.interval <= Duration::from_secs(30),
        "stale detection within a minute of the limit"
    );
    assert!(c.lease_ttl > c.interval);
    assert!(risky_settings(&s).is_empty(), "{:?}", risky_settings(&s));
}

#[test]
fn environment_overrides_every_knob() {
    let s = load(&[
        ("HOOKLINE__CLEANUP__INTERVAL_MS", "250"),
        ("HOOKLINE__CLEANUP__STALE_AFTER_SECS", "2"),
        ("HOOKLINE__CLEANUP__CHUNK_SIZE", "7"),
        ("HOOKLINE__CLEANUP__DELETE_GRACE_SECS", "60"),
        ("HOOKLINE__CLEANUP__INDEX_PASS_INTERVAL_SECS", "0"),
    ])
    .unwrap();
    let c = CleanupConfig::from_settings(&s);
    assert_eq!(c.interval, Duration::from_millis(250));
    assert_eq!(c.stale_after, Duration::from_secs(2));
    assert_eq!(c.chunk_size, 7);
    assert_eq!(c.lifecycle.delete_grace, Duration::from_secs(60));
    assert_eq!(c.index_pass_interval, Duration::ZERO);
}

#[test]
fn invalid_values_name_the_key() {
    for (key, value) in [
        ("HOOKLINE__CLEANUP__INTERVAL_MS", "0"),
        ("HOOKLINE__CLEANUP__STALE_AFTER_SECS", "0"),
        ("HOOKLINE__CLEANUP__LEASE_TTL_MS", "10"),
        ("HOOKLINE__CLEANUP__CHUNK_SIZE", "0"),
        ("HOOKLINE__CLEANUP__CHUNK_SIZE", "100000"),
        ("HOOKLINE__CLEANUP__MAX_CHUNKS_PER_STEP", "0"),
        ("HOOKLINE__CLEANUP__BROKEN_MIN_FAILURES", "0"),
        ("HOOKLINE__CLEANUP__IDLE_AFTER_SECS", "soon"),
    ] {
        let err = load(&[(key, value)]).err().unwrap_or_default();
        let name = key
            .trim_start_matches("HOOKLINE__")
            .replace("__", ".")
            .to_lowercase();
        assert!(err.contains(&name), "{key}={value}: {err}");
    }
    let err = load(&[("HOOKLINE__CLEANUP__STALE_AFTER", "1")])
        .err()
        .unwrap_or_default();
    assert!(
        err.contains("stale_after"),
        "unknown keys are refused: {err}"
    );
}

#[test]
fn a_stale_limit_beyond_the_record_ttl_is_refused() {
    let err = load(&[("HOOKLINE__DELIVERY__ACTIVE_TTL_SECS", "600")])
        .err()
        .unwrap_or_default();
    assert!(err.contains("cleanup.stale_after_secs"), "{err}");
}
