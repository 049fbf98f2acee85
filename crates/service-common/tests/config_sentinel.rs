//! The `[redis]` sentinel keys: parsing, the store options they make, and refusals that name the key.
#![expect(clippy::unwrap_used, reason = "tests")]

use service_common::config::{ConfigError, Settings};

fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let mut v: Vec<(String, String)> = vec![(
        "HOOKLINE__AUTH__JWT_SECRET".into(),
        "config-test-secret-abcdefghijklmnopqrstuv".into(),
    )];
    v.extend(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Settings::load_from(v)
}

fn err(pairs: &[(&str, &str)]) -> String {
    match load(pairs) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted {pairs:?}"),
    }
}

const SENTINELS: (&str, &str) = ("HOOKLINE__REDIS__SENTINELS", "s1:26379, 10.0.0.2:26380");
const MASTER: (&str, &str) = ("HOOKLINE__REDIS__SENTINEL_MASTER_NAME", "hookline");

#[test]
fn defaults_have_no_sentinel() {
    let s = load(&[]).unwrap();
    assert!(s.redis.sentinels.is_empty());
    assert!(s.store_options().sentinel.is_none());
}

#[test]
fn sentinels_become_store_options() {
    let s = load(&[
        ("HOOKLINE__REDIS__URL", "redis://app:pw@ignored:6379/1"),
        SENTINELS,
        MASTER,
        ("HOOKLINE__REDIS__SENTINEL_USERNAME", "watcher"),
        ("HOOKLINE__REDIS__SENTINEL_PASSWORD", "sentinel-secret-1"),
    ])
    .unwrap();
    let o = s.store_options().sentinel.unwrap();
    assert_eq!(
        o.hosts,
        [("s1".to_owned(), 26379), ("10.0.0.2".to_owned(), 26380)]
    );
    assert_eq!(o.master_name, "hookline");
    assert_eq!(o.username.as_deref(), Some("watcher"));
    assert_eq!(o.password.as_deref(), Some("sentinel-secret-1"));
    // Neither the settings nor the options print the sentinel password.
    assert!(!format!("{s:?}").contains("sentinel-secret-1"));
    assert!(!format!("{o:?}").contains("sentinel-secret-1"));
}

#[test]
fn the_password_can_come_from_a_file() {
    let path = std::env::temp_dir().join(format!("hookline-sentinel-pw-{}", std::process::id()));
    std::fs::write(&path, "from-file\n").unwrap();
    let file = path.to_string_lossy().into_owned();
    let s = load(&[
        SENTINELS,
        MASTER,
        ("HOOKLINE__REDIS__SENTINEL_PASSWORD_FILE", &file),
    ]);
    let both = err(&[
        SENTINELS,
        MASTER,
        ("HOOKLINE__REDIS__SENTINEL_PASSWORD_FILE", &file),
        ("HOOKLINE__REDIS__SENTINEL_PASSWORD", "x"),
    ]);
    std::fs::remove_file(&path).unwrap();
    let o = s.unwrap().store_options().sentinel.unwrap();
    assert_eq!(o.password.as_deref(), Some("from-file"));
    assert!(both.contains("`redis.sentinel_password_file`"), "{both}");
    let missing = err(&[
        SENTINELS,
        MASTER,
        ("HOOKLINE__REDIS__SENTINEL_PASSWORD_FILE", "/nonexistent/pw"),
    ]);
    assert!(
        missing.contains("`redis.sentinel_password_file`"),
        "{missing}"
    );
}

#[test]
fn bad_sentinel_settings_name_the_key() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[SENTINELS], "redis.sentinel_master_name"),
        (
            &[("HOOKLINE__REDIS__SENTINELS", "s1"), MASTER],
            "redis.sentinels",
        ),
        (
            &[("HOOKLINE__REDIS__SENTINELS", "s1:0"), MASTER],
            "redis.sentinels",
        ),
        (&[MASTER], "redis.sentinel_master_name"),
        (
            &[("HOOKLINE__REDIS__SENTINEL_PASSWORD", "x")],
            "redis.sentinel_password",
        ),
        // Sentinel with a cluster URL: the cluster check names the Sentinel key (tests/config_cluster.rs).
        (
            &[
                SENTINELS,
                MASTER,
                ("HOOKLINE__REDIS__URL", "redis-cluster://127.0.0.1:7000"),
            ],
            "redis.sentinels",
        ),
        (
            &[
                SENTINELS,
                MASTER,
                ("HOOKLINE__REDIS__URL", "redis://a:6379,b:6379"),
            ],
            "redis.url",
        ),
        (
            &[
                SENTINELS,
                MASTER,
                ("HOOKLINE__REDIS__URL", "redis://a:6379?node=b:6379"),
            ],
            "redis.url",
        ),
    ];
    for (pairs, key) in cases {
        let e = err(pairs);
        assert!(e.contains(&format!("`{key}`")), "{pairs:?}: {e}");
    }
}
