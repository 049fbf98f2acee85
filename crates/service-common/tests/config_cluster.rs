//! `[redis]` in cluster mode (issue #15): the URLs it takes with the standalone credentials and TLS keys,
//! refusals that name the key (and never print a password), and the services' refusal to start on a
//! cluster while the key layout is not slot-aware.
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

/// The error of a refused configuration; it never holds any of the test's passwords.
fn err(pairs: &[(&str, &str)]) -> String {
    match load(pairs) {
        Err(e) => {
            let e = e.to_string();
            assert!(!e.contains("url-pw") && !e.contains("opt-pw"), "{e}");
            e
        }
        Ok(_) => panic!("accepted {pairs:?}"),
    }
}

const CLUSTER: (&str, &str) = (
    "HOOKLINE__REDIS__URL",
    "redis-cluster://10.0.0.1:7000?node=10.0.0.2:7001&node=10.0.0.3:7002",
);
const TLS_CLUSTER: (&str, &str) = (
    "HOOKLINE__REDIS__URL",
    "rediss-cluster://clustercfg.hookline.example:6379",
);

struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("hookline-{name}-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn cluster_urls_load_with_the_standalone_credentials_and_tls() {
    let s = load(&[CLUSTER]).unwrap();
    assert!(s.redis.is_cluster());
    assert_eq!(s.store_options().url, CLUSTER.1);
    assert!(!load(&[]).unwrap().redis.is_cluster());

    let pem = TempFile::new("cluster-ca", "checked at connect");
    let password = TempFile::new("cluster-pw", "opt-pw\n");
    let s = load(&[
        TLS_CLUSTER,
        ("HOOKLINE__REDIS__USERNAME", "hookline"),
        ("HOOKLINE__REDIS__PASSWORD_FILE", password.path()),
        ("HOOKLINE__REDIS__TLS_CA_FILE", pem.path()),
        ("HOOKLINE__REDIS__TLS_CLIENT_CERT_FILE", pem.path()),
        ("HOOKLINE__REDIS__TLS_CLIENT_KEY_FILE", pem.path()),
        ("HOOKLINE__REDIS__TLS_SERVER_NAME", "redis.hookline.example"),
    ])
    .unwrap();
    let o = s.store_options();
    assert_eq!(o.username.as_deref(), Some("hookline"));
    assert_eq!(o.password.as_ref().map(|p| p.expose()), Some("opt-pw"));
    assert_eq!(o.tls.server_name.as_deref(), Some("redis.hookline.example"));
    // Neither the settings nor the store options print the password.
    assert!(!format!("{s:?}").contains("opt-pw"));
    assert!(!format!("{o:?}").contains("opt-pw"));

    let in_url = load(&[(
        "HOOKLINE__REDIS__URL",
        "rediss-cluster://hookline:url-pw@h:7000",
    )])
    .unwrap();
    assert!(!format!("{in_url:?}").contains("url-pw"));
    assert!(format!("{in_url:?}").contains("rediss-cluster://hookline:***@h:7000"));
    assert!(!format!("{:?}", in_url.store_options()).contains("url-pw"));
}

#[test]
fn tls_keys_need_a_tls_cluster_url() {
    let pem = TempFile::new("cluster-tls", "x");
    for key in ["TLS_CA_FILE", "TLS_CLIENT_CERT_FILE", "TLS_SERVER_NAME"] {
        let var = format!("HOOKLINE__REDIS__{key}");
        let e = err(&[CLUSTER, (&var, pem.path())]);
        assert!(
            e.contains(&format!("`redis.{}`", key.to_ascii_lowercase())),
            "{e}"
        );
        assert!(e.contains("rediss-cluster://"), "{e}");
    }
    assert!(
        err(&[
            TLS_CLUSTER,
            ("HOOKLINE__REDIS__TLS_CLIENT_CERT_FILE", pem.path())
        ])
        .contains("`redis.tls_client_key_file`")
    );
}

#[test]
fn sentinel_settings_with_a_cluster_url_name_the_key() {
    let pw_file = TempFile::new("cluster-sentinel-pw", "opt-pw");
    for (var, value, key) in [
        ("SENTINELS", "s1:26379", "redis.sentinels"),
        (
            "SENTINEL_MASTER_NAME",
            "hookline",
            "redis.sentinel_master_name",
        ),
        ("SENTINEL_USERNAME", "sentinel", "redis.sentinel_username"),
        ("SENTINEL_PASSWORD", "opt-pw", "redis.sentinel_password"),
        (
            "SENTINEL_PASSWORD_FILE",
            pw_file.path(),
            "redis.sentinel_password_file",
        ),
    ] {
        let var = format!("HOOKLINE__REDIS__{var}");
        for url in [CLUSTER, TLS_CLUSTER] {
            let e = err(&[url, (&var, value)]);
            assert!(e.contains(&format!("`{key}`")), "{e}");
            assert!(e.contains("Redis Cluster URL"), "{e}");
        }
    }
    // A complete Sentinel set-up is refused as a whole, by its first key.
    let e = err(&[
        CLUSTER,
        ("HOOKLINE__REDIS__SENTINELS", "s1:26379,s2:26379"),
        ("HOOKLINE__REDIS__SENTINEL_MASTER_NAME", "hookline"),
    ]);
    assert!(e.contains("`redis.sentinels`"), "{e}");
}

#[test]
fn what_a_cluster_would_ignore_is_refused() {
    for url in [
        "redis-cluster://:url-pw@h:7000/2",
        "redis-cluster://h:7000?node=g:7001&protocol=resp3",
        "redis-cluster://h:7000?node=g",
        "valkey-cluster://h:7000",
        "redis-sentinel://h:26379",
    ] {
        let e = err(&[("HOOKLINE__REDIS__URL", url)]);
        assert!(e.contains("`redis.url`"), "{url}: {e}");
    }
    // WAIT for replicas works on a cluster (each one at the master of a slot written).
    let s = load(&[CLUSTER, ("HOOKLINE__REDIS__WAIT_REPLICAS", "1")]).unwrap();
    assert_eq!(s.store_options().wait_replicas, 1);
    // The password is given once: the URL and a key both set is refused as for a single node.
    let e = err(&[
        ("HOOKLINE__REDIS__URL", "redis-cluster://:url-pw@h:7000"),
        ("HOOKLINE__REDIS__PASSWORD", "opt-pw"),
    ]);
    assert!(e.contains("`redis.password`"), "{e}");
}

#[tokio::test]
async fn every_caller_connects_to_a_cluster() {
    // Every binary's Redis paths are slot-safe (hookline-migrate's last, issue #15): a cluster URL is not
    // refused up front. Nothing listens there, so the error is the connection's, naming the seed node.
    let s = load(&[("HOOKLINE__REDIS__URL", "redis-cluster://127.0.0.1:9")]).unwrap();
    let e = service_common::redis::connect(&s).await.err().unwrap();
    let e = format!("{e:#}");
    assert!(
        e.contains("connecting to redis-cluster://127.0.0.1:9"),
        "{e}"
    );
    assert!(!e.contains("slot-aware"), "{e}");
}

#[test]
fn cluster_shards_default_to_twelve_and_apply_to_a_cluster_only() {
    assert_eq!(load(&[CLUSTER]).unwrap().store_options().cluster_shards, 12);
    let s = load(&[CLUSTER, ("HOOKLINE__REDIS__CLUSTER_SHARDS", "6")]).unwrap();
    assert_eq!(s.store_options().cluster_shards, 6);

    let e = err(&[CLUSTER, ("HOOKLINE__REDIS__CLUSTER_SHARDS", "300")]);
    assert!(
        e.contains("redis.cluster_shards") && e.contains("256"),
        "{e}"
    );
    // On one node it would silently do nothing: refused, naming the key.
    let e = err(&[("HOOKLINE__REDIS__CLUSTER_SHARDS", "12")]);
    assert!(
        e.contains("redis.cluster_shards") && e.contains("Cluster"),
        "{e}"
    );
    // A brace in the prefix would become every key's hash tag.
    let e = err(&[CLUSTER, ("HOOKLINE__REDIS__KEY_PREFIX", "a{b}:")]);
    assert!(e.contains("redis.key_prefix"), "{e}");
    assert!(load(&[("HOOKLINE__REDIS__KEY_PREFIX", "a{b}:")]).is_ok());
}
