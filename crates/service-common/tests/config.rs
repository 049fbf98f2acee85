//! Environment-variable parsing of the configuration. Its own test binary: the environment is passed
//! explicitly through `Settings::load_from`, never set on the process.
#![expect(clippy::unwrap_used, reason = "tests")]

use service_common::config::{ConfigError, LogFormat, Settings};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![(
        "HOOKLINE__AUTH__JWT_SECRET".into(),
        "config-test-secret-abcdefghijklmnopqrstuv".into(),
    )];
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
fn waits_longer_than_the_active_ttl_are_refused_by_name() {
    let ttl = ("HOOKLINE__DELIVERY__ACTIVE_TTL_SECS", "600");
    let fits = [
        ttl,
        ("HOOKLINE__CLEANUP__STALE_AFTER_SECS", "599"),
        ("HOOKLINE__WORKER__RETRY_SCHEDULE_MS", "1000,599999"),
        ("HOOKLINE__WORKER__CIRCUIT_OPEN_MS", "599999"),
    ];
    Settings::load_from(env(&fits)).unwrap();
    for (key, name, value) in [
        (
            "HOOKLINE__CLEANUP__STALE_AFTER_SECS",
            "cleanup.stale_after_secs",
            "600",
        ),
        (
            "HOOKLINE__WORKER__RETRY_SCHEDULE_MS",
            "worker.retry_schedule_ms",
            "1000,600000",
        ),
        (
            "HOOKLINE__WORKER__CIRCUIT_OPEN_MS",
            "worker.circuit_open_ms",
            "600000",
        ),
    ] {
        let mut pairs = fits.to_vec();
        pairs.retain(|(k, _)| *k != key);
        pairs.push((key, value));
        let e = err(&pairs);
        assert!(
            e.contains(name) && e.contains("delivery.active_ttl_secs"),
            "{e}"
        );
    }
}

#[test]
fn wide_allowlist_cidrs_need_an_explicit_setting() {
    for wide in ["0.0.0.0/0", "10.0.0.0/7", "::/0", "2001::/31"] {
        let e = err(&[("HOOKLINE__OUTBOUND__ALLOWLIST", wide)]);
        assert!(
            e.contains("outbound.allowlist") && e.contains("outbound.allow_wide_allowlist"),
            "{wide}: {e}"
        );
        let s = Settings::load_from(env(&[
            ("HOOKLINE__OUTBOUND__ALLOWLIST", wide),
            ("HOOKLINE__OUTBOUND__ALLOW_WIDE_ALLOWLIST", "true"),
        ]))
        .unwrap();
        assert_eq!(s.outbound.allowlist, [wide]);
    }
    for narrow in ["10.0.0.0/8", "fd00:1234::/32", "192.168.1.7"] {
        Settings::load_from(env(&[("HOOKLINE__OUTBOUND__ALLOWLIST", narrow)])).unwrap();
    }
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

/// A file in a fresh temp dir (kept alive by the returned guard).
fn temp_file(content: &str) -> (std::path::PathBuf, TempDirGuard) {
    let dir = std::env::temp_dir().join(format!("hookline-config-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("file");
    std::fs::write(&path, content).unwrap();
    (path, TempDirGuard(dir))
}

struct TempDirGuard(std::path::PathBuf);

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[test]
fn the_password_comes_from_one_place_and_is_never_printed() {
    let (file, _guard) = temp_file("from-file-0123\n");
    let file = file.to_str().unwrap();
    let s = Settings::load_from(env(&[
        ("HOOKLINE__REDIS__URL", "redis://127.0.0.1:6380"),
        ("HOOKLINE__REDIS__USERNAME", "hookline"),
        ("HOOKLINE__REDIS__PASSWORD_FILE", file),
    ]))
    .unwrap();
    let opts = s.store_options();
    assert_eq!(opts.username.as_deref(), Some("hookline"));
    assert_eq!(
        opts.password.as_ref().map(|p| p.expose()),
        Some("from-file-0123"),
        "one trailing newline dropped"
    );
    for printed in [format!("{s:?}"), format!("{opts:?}")] {
        assert!(!printed.contains("from-file"), "{printed}");
    }

    // A numeric-looking password keeps its leading zero (not parsed as a number).
    let s = Settings::load_from(env(&[("HOOKLINE__REDIS__PASSWORD", "0123")])).unwrap();
    assert_eq!(s.redis.password.expose(), "0123");
    assert!(!format!("{s:?}").contains("0123"));

    let s = Settings::load_from(env(&[("HOOKLINE__REDIS__URL", "redis://u:url-pw@h:1")])).unwrap();
    let printed = format!("{s:?}");
    assert!(
        !printed.contains("url-pw") && printed.contains("u:***@h:1"),
        "{printed}"
    );

    let e = err(&[
        ("HOOKLINE__REDIS__PASSWORD", "a-secret"),
        ("HOOKLINE__REDIS__PASSWORD_FILE", file),
    ]);
    assert!(
        e.contains("redis.password_file") && !e.contains("a-secret"),
        "{e}"
    );
    let e = err(&[
        ("HOOKLINE__REDIS__URL", "redis://:url-pw@h:1"),
        ("HOOKLINE__REDIS__PASSWORD", "a-secret"),
    ]);
    assert!(
        e.contains("redis.password") && !e.contains("url-pw") && !e.contains("a-secret"),
        "{e}"
    );
    let e = err(&[
        ("HOOKLINE__REDIS__URL", "redis://u:url-pw@h:1"),
        ("HOOKLINE__REDIS__USERNAME", "v"),
    ]);
    assert!(e.contains("redis.username") && !e.contains("url-pw"), "{e}");
    assert!(
        err(&[("HOOKLINE__REDIS__PASSWORD_FILE", "/nonexistent/pw")])
            .contains("redis.password_file")
    );
    let (empty, _g) = temp_file("\n");
    assert!(
        err(&[("HOOKLINE__REDIS__PASSWORD_FILE", empty.to_str().unwrap())])
            .contains("redis.password_file")
    );
}

#[test]
fn tls_settings_need_rediss_and_usable_files() {
    let (pem, _guard) = temp_file("not checked until connect");
    let pem = pem.to_str().unwrap();
    let s = Settings::load_from(env(&[
        ("HOOKLINE__REDIS__URL", "rediss://10.0.0.5:6380"),
        ("HOOKLINE__REDIS__TLS_CA_FILE", pem),
        ("HOOKLINE__REDIS__TLS_CLIENT_CERT_FILE", pem),
        ("HOOKLINE__REDIS__TLS_CLIENT_KEY_FILE", pem),
        ("HOOKLINE__REDIS__TLS_SERVER_NAME", "redis.internal"),
    ]))
    .unwrap();
    let tls = s.store_options().tls;
    assert_eq!(tls.ca_file.as_deref(), Some(std::path::Path::new(pem)));
    assert_eq!(tls.server_name.as_deref(), Some("redis.internal"));

    for key in [
        "TLS_CA_FILE",
        "TLS_CLIENT_CERT_FILE",
        "TLS_CLIENT_KEY_FILE",
        "TLS_SERVER_NAME",
    ] {
        let var = format!("HOOKLINE__REDIS__{key}");
        let e = err(&[("HOOKLINE__REDIS__URL", "redis://h:1"), (&var, pem)]);
        assert!(
            e.contains(&format!("redis.{}", key.to_ascii_lowercase())),
            "{e}"
        );
        assert!(e.contains("rediss://"), "{e}");
    }
    let rediss = ("HOOKLINE__REDIS__URL", "rediss://h:1");
    assert!(
        err(&[rediss, ("HOOKLINE__REDIS__TLS_CLIENT_CERT_FILE", pem)])
            .contains("redis.tls_client_key_file")
    );
    assert!(
        err(&[rediss, ("HOOKLINE__REDIS__TLS_CLIENT_KEY_FILE", pem)])
            .contains("redis.tls_client_cert_file")
    );
    assert!(
        err(&[
            rediss,
            ("HOOKLINE__REDIS__TLS_CA_FILE", "/nonexistent/ca.pem")
        ])
        .contains("redis.tls_ca_file")
    );
    assert!(
        err(&[rediss, ("HOOKLINE__REDIS__TLS_SERVER_NAME", "not a name!")])
            .contains("redis.tls_server_name")
    );
    assert!(err(&[("HOOKLINE__REDIS__URL", "valkeys://h:1")]).contains("redis.url"));
}

const KEK_1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEK_2: &str = "HxwdHhscGRoXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

#[test]
fn secret_keys_load_from_env_and_file_and_bad_ones_name_the_key() {
    // Default: no keys, secrets stay in plain text.
    assert!(
        !Settings::load_from(env(&[]))
            .unwrap()
            .store_options()
            .secrets
            .is_enabled()
    );
    // From the environment, one current and one old key; the store seals under the current one.
    let s = Settings::load_from(env(&[
        ("HOOKLINE__SECRET_KEYS__CURRENT", "k2"),
        ("HOOKLINE__SECRET_KEYS__KEYS__K1", KEK_1),
        ("HOOKLINE__SECRET_KEYS__KEYS__K2", KEK_2),
    ]))
    .unwrap();
    let secrets = s.store_options().secrets;
    assert_eq!(secrets.current_id(), Some("k2"));
    assert!(!format!("{s:?}").contains(KEK_1));
    // From a file (a mounted Secret).
    let (path, _guard) = temp_file(&format!("# keys\nold={KEK_1}\nnew={KEK_2}\n"));
    let p = path.to_string_lossy().into_owned();
    let s = Settings::load_from(env(&[
        ("HOOKLINE__SECRET_KEYS__CURRENT", "new"),
        ("HOOKLINE__SECRET_KEYS__KEYS_FILE", &p),
    ]))
    .unwrap();
    let sealed = s.store_options().secrets.seal("x").unwrap();
    assert!(sealed.starts_with("enc:v1:new:"), "{sealed}");
    // Refusals name the key and never print the material.
    let e = err(&[
        ("HOOKLINE__SECRET_KEYS__CURRENT", "k1"),
        ("HOOKLINE__SECRET_KEYS__KEYS__K1", "c2hvcnQ="),
    ]);
    assert!(e.contains("secret_keys.keys") && e.contains("32"), "{e}");
    let e = err(&[
        ("HOOKLINE__SECRET_KEYS__CURRENT", "k9"),
        ("HOOKLINE__SECRET_KEYS__KEYS__K1", KEK_1),
    ]);
    assert!(
        e.contains("secret_keys.current") && !e.contains(KEK_1),
        "{e}"
    );
    let e = err(&[("HOOKLINE__SECRET_KEYS__KEYS__K1", KEK_1)]);
    assert!(e.contains("secret_keys.current"), "{e}");
    let e = err(&[
        ("HOOKLINE__SECRET_KEYS__CURRENT", "k1"),
        ("HOOKLINE__SECRET_KEYS__KEYS_FILE", "/nonexistent/keys"),
    ]);
    assert!(e.contains("secret_keys.keys_file"), "{e}");
}

/// `config/dev.toml`, as `make run` loads it.
fn dev_toml() -> String {
    format!("{}/../../config/dev.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn short_hs256_secrets_are_refused() {
    let e = err(&[(
        "HOOKLINE__AUTH__JWT_SECRET",
        "0123456789abcdef0123456789abcde",
    )]);
    assert!(
        e.contains("auth.jwt_secret") && e.contains("32 bytes"),
        "{e}"
    );
    assert!(
        Settings::load_from(env(&[(
            "HOOKLINE__AUTH__JWT_SECRET",
            "0123456789abcdef0123456789abcdef"
        )]))
        .is_ok()
    );
}

#[test]
fn the_dev_secret_needs_the_development_switch() {
    use service_common::config::DEV_JWT_SECRET;
    // What `make run` loads: the file's secret is the one the services know, and its switch is on.
    let dev = Settings::load_from([("HOOKLINE_CONFIG".to_owned(), dev_toml())]).unwrap();
    assert_eq!(dev.auth.jwt_secret.expose(), DEV_JWT_SECRET);
    assert!(dev.auth.allow_development_secret);
    // The same secret anywhere else (compose's default, a copied value) is refused, naming the key.
    let e = err(&[("HOOKLINE__AUTH__JWT_SECRET", DEV_JWT_SECRET)]);
    assert!(
        e.contains("auth.jwt_secret") && e.contains("development"),
        "{e}"
    );
    let e = Settings::load_from([
        ("HOOKLINE_CONFIG".to_owned(), dev_toml()),
        (
            "HOOKLINE__AUTH__ALLOW_DEVELOPMENT_SECRET".to_owned(),
            "false".to_owned(),
        ),
    ])
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(e.contains("auth.jwt_secret"), "{e}");
}

/// Issue #16 item 4: no secret the configuration holds shows in its `Debug` (a `{settings:?}` in a log line
/// or a panic message), and numeric-looking secrets keep their text.
#[test]
fn debug_output_shows_no_secret() {
    let secrets = [
        (
            "HOOKLINE__AUTH__JWT_SECRET",
            "jwt-secret-0123456789-0123456789-abc",
        ),
        ("HOOKLINE__WORKER__DELEGATION_KEY", "0042-delegation-key"),
        (
            "HOOKLINE__CONSUMER__FANOUT_ID_KEY",
            "fanout-id-key-material-0123456789abcdef",
        ),
        ("HOOKLINE__REDIS__PASSWORD", "redis-password-material"),
        (
            "HOOKLINE__MIGRATE__POSTGRES_URL",
            "postgres://tmi:pg-password-material@db:5432/tmi",
        ),
    ];
    let s = Settings::load_from(env(&secrets)).unwrap();
    assert_eq!(s.worker.delegation_key.expose(), "0042-delegation-key");
    let printed = format!("{s:?}");
    for (key, value) in secrets {
        let needle = value.rsplit(':').next().unwrap_or(value);
        assert!(
            !printed.contains(value) && !printed.contains("material") && !printed.contains(needle),
            "{key} printed in:\n{printed}"
        );
    }
}
