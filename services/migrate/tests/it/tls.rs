//! TLS to PostgreSQL: a private server with `ssl=on`, a CA and server certificate made here, and
//! `pg_hba.conf` accepting TCP connections over TLS only. The server listens on 127.0.0.1 only; its
//! certificate names 127.0.0.1 only, so `localhost` is a host name it does not name.

use std::path::{Path, PathBuf};

use fred::prelude::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use test_support::postgres::{PG_USER, PostgresServer, PostgresTls};

use crate::harness::*;

/// A CA: its certificate (PEM) and what signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Ca {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// A server certificate for 127.0.0.1 (an IP SAN only) signed by `ca`: (certificate, key), PEM.
fn server_cert(ca: &Ca) -> (String, String) {
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "tmi-db test server");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn url(host: &str, port: u16, query: &str) -> String {
    format!("postgres://{PG_USER}@{host}:{port}/{PG_USER}{query}")
}

/// The same database as a libpq `key=value` string, with `extra` parameters.
fn key_value(host: &str, port: u16, extra: &str) -> String {
    format!("host={host} port={port} user={PG_USER} dbname={PG_USER} {extra}")
}

/// `path` percent-encoded for a URL's query (everything but unreserved characters and `/`).
fn query_value(path: &Path) -> String {
    path.display()
        .to_string()
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A directory of PEM files, removed on drop.
struct CertDir(PathBuf);

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A private PostgreSQL with TLS (certificate for 127.0.0.1 signed by "TMI database CA"; TLS connections
/// only) holding TMI's schema and one deny-list row, a private Redis, and the PEM files of that CA and of
/// another one.
struct TlsDb {
    w: World,
    port: u16,
    tmi_ca_file: PathBuf,
    other_ca_file: PathBuf,
    _certs: CertDir,
}

impl TlsDb {
    async fn start() -> Self {
        let tmi_ca = ca("TMI database CA");
        let other_ca = ca("Some other CA");
        let (cert_pem, key_pem) = server_cert(&tmi_ca);
        let pg = PostgresServer::start_with_tls(&PostgresTls {
            cert_pem,
            key_pem,
            hostssl_only: true,
        });
        let w = World::with_postgres(pg).await;
        w.pg.psql(TMI_SCHEMA);
        w.pg.psql(
            "INSERT INTO webhook_url_deny_list VALUES \
             ('d0000000-0000-4000-8000-000000000001', '*.internal.example.com', 'glob', NULL, now())",
        );
        let port = w.pg.port();
        let certs = CertDir(std::env::temp_dir().join(format!("migrate-tls-{port}")));
        std::fs::create_dir_all(&certs.0).unwrap();
        Self {
            tmi_ca_file: write(&certs.0, "tmi-ca.pem", &tmi_ca.pem),
            other_ca_file: write(&certs.0, "other-ca.pem", &other_ca.pem),
            w,
            port,
            _certs: certs,
        }
    }

    /// Runs `hookline-migrate` against `url` with `[migrate] postgres_ca_file` = `ca_file`: (exit code,
    /// stdout, stderr).
    async fn run(&self, url: &str, ca_file: Option<&Path>) -> (i32, String, String) {
        let ca_file = ca_file.map(|f| f.display().to_string()).unwrap_or_default();
        self.w
            .migrate_with(
                &[
                    ("HOOKLINE__MIGRATE__POSTGRES_URL", url),
                    ("HOOKLINE__MIGRATE__POSTGRES_CA_FILE", ca_file.as_str()),
                ],
                &[],
            )
            .await
    }

    /// Asserts that a run connects and imports (or finds already imported) the deny-list row.
    async fn imports(&self, url: &str, ca_file: Option<&Path>) {
        let (code, out, err) = self.run(url, ca_file).await;
        assert_eq!(code, 0, "{url}\n{out}\n{err}");
        assert!(
            !out.contains("PLAINTEXT") && !err.contains("PLAINTEXT"),
            "a TLS session is not reported as plaintext: {out}\n{err}"
        );
        let line = World::line(&out, "webhook_url_deny_list");
        assert!(
            line == "webhook_url_deny_list: imported 1, skipped (exists) 0, skipped (too old) 0, invalid 0"
                || line
                    == "webhook_url_deny_list: imported 0, skipped (exists) 1, skipped (too old) 0, invalid 0",
            "{url}: {line}"
        );
        let stored: u64 = self
            .w
            .redis_client
            .hlen("webhook:url_deny_list")
            .await
            .unwrap();
        assert_eq!(stored, 1, "{url}");
    }

    /// Asserts that a run fails (exit 1) with every one of `needles` in its error output; returns that output.
    async fn refused(&self, url: &str, ca_file: Option<&Path>, needles: &[&str]) -> String {
        let (code, out, err) = self.run(url, ca_file).await;
        assert_eq!(code, 1, "{url}\n{out}\n{err}");
        for needle in needles {
            assert!(err.contains(needle), "{url}: {needle:?} not in:\n{err}");
        }
        err
    }
}

/// The hint of a certificate that did not verify, for modes that check the host name.
const HINT_WITH_NAME: &str = "sslrootcert to the CA that signed it, and connect by a host name or IP address \
                              the certificate names)";
/// The hint of a certificate that did not verify, for `verify-ca`.
const HINT_CHAIN_ONLY: &str = "sslrootcert to the CA that signed it)";

#[tokio::test]
async fn imports_over_verified_tls_and_refuses_unverified_or_plaintext_connections() {
    let db = TlsDb::start().await;
    let port = db.port;
    let tmi_ca = Some(db.tmi_ca_file.as_path());
    let other_ca = Some(db.other_ca_file.as_path());

    // sslmode=require with the CA that signed the server's certificate: imported.
    let (code, out, err) = db
        .run(&url("127.0.0.1", port, "?sslmode=require"), tmi_ca)
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        World::line(&out, "webhook_url_deny_list"),
        "webhook_url_deny_list: imported 1, skipped (exists) 0, skipped (too old) 0, invalid 0"
    );
    let stored: u64 =
        db.w.redis_client
            .hlen("webhook:url_deny_list")
            .await
            .unwrap();
    assert_eq!(stored, 1);

    // sslmode=verify-full, libpq's name for the same thing, in both forms (quoted too): connected.
    db.imports(&url("127.0.0.1", port, "?sslmode=verify-full"), tmi_ca)
        .await;
    db.imports(
        &url("127.0.0.1", port, "?connect_timeout=10&sslmode=verify-full"),
        tmi_ca,
    )
    .await;
    db.imports(&key_value("127.0.0.1", port, "sslmode=verify-full"), tmi_ca)
        .await;
    db.imports(
        &key_value("127.0.0.1", port, "sslmode = 'verify-full'"),
        tmi_ca,
    )
    .await;

    // Another CA: the certificate does not verify, and the error says what to check.
    for mode in ["require", "verify-full"] {
        db.refused(
            &url("127.0.0.1", port, &format!("?sslmode={mode}")),
            other_ca,
            &[
                &format!("connecting to PostgreSQL at 127.0.0.1:{port} (sslmode={mode})"),
                "invalid peer certificate",
                "UnknownIssuer",
                "postgres_ca_file",
                HINT_WITH_NAME,
            ],
        )
        .await;
    }

    // prefer with only the public roots: the server offers TLS, its certificate does not verify, and that
    // fails the connection instead of falling back to plaintext.
    db.refused(
        &url("127.0.0.1", port, "?sslmode=prefer"),
        None,
        &["(sslmode=prefer)", "UnknownIssuer"],
    )
    .await;
    // No sslmode: verify-full (issue #16), not prefer.
    db.refused(
        &url("127.0.0.1", port, ""),
        None,
        &["(sslmode=verify-full)", "UnknownIssuer"],
    )
    .await;

    // The right CA, but a host name the certificate does not hold (it names 127.0.0.1 only).
    for mode in ["require", "verify-full"] {
        db.refused(
            &url("localhost", port, &format!("?sslmode={mode}")),
            tmi_ca,
            &[
                &format!("(sslmode={mode})"),
                "invalid peer certificate",
                "certificate not valid for name \"localhost\"",
                HINT_WITH_NAME,
            ],
        )
        .await;
    }

    // sslmode=disable against a server that accepts TLS connections only: refused by pg_hba.conf.
    db.refused(
        &url("127.0.0.1", port, "?sslmode=disable"),
        tmi_ca,
        &["(sslmode=disable)", "no pg_hba.conf entry", "no encryption"],
    )
    .await;

    // allow (plaintext first) is refused before connecting, naming what to use instead.
    for target in [
        url("127.0.0.1", port, "?sslmode=allow"),
        key_value("127.0.0.1", port, "sslmode=allow"),
    ] {
        let err = db
            .refused(
                &target,
                tmi_ca,
                &["sslmode=allow is not supported", "sslmode=verify-full"],
            )
            .await;
        assert!(!err.contains("connecting to PostgreSQL"), "{err}");
    }

    // A misspelt mode is an error, not a weaker mode.
    db.refused(
        &url("127.0.0.1", port, "?sslmode=verify-fullx"),
        tmi_ca,
        &["invalid value for option `sslmode`"],
    )
    .await;
}

#[tokio::test]
async fn verify_ca_checks_the_chain_but_not_the_host_name() {
    let db = TlsDb::start().await;
    let port = db.port;
    let tmi_ca = Some(db.tmi_ca_file.as_path());
    let other_ca = Some(db.other_ca_file.as_path());

    // localhost is not in the certificate (127.0.0.1 only): verify-ca connects all the same, in both forms.
    let (code, out, err) = db
        .run(&url("localhost", port, "?sslmode=verify-ca"), tmi_ca)
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        World::line(&out, "webhook_url_deny_list"),
        "webhook_url_deny_list: imported 1, skipped (exists) 0, skipped (too old) 0, invalid 0"
    );
    db.imports(&key_value("localhost", port, "sslmode='verify-ca'"), tmi_ca)
        .await;
    // And by the address the certificate does name.
    db.imports(&url("127.0.0.1", port, "?sslmode=verify-ca"), tmi_ca)
        .await;

    // The same setup with verify-full or require: refused for the name, with the hint.
    for mode in ["verify-full", "require"] {
        db.refused(
            &url("localhost", port, &format!("?sslmode={mode}")),
            tmi_ca,
            &[
                &format!("connecting to PostgreSQL at localhost:{port} (sslmode={mode})"),
                "certificate not valid for name \"localhost\"",
                "postgres_ca_file",
                HINT_WITH_NAME,
            ],
        )
        .await;
    }

    // verify-ca still verifies the chain: a CA that did not sign the certificate, or only the public roots,
    // is refused, by a name the certificate holds or not.
    for host in ["localhost", "127.0.0.1"] {
        for ca_file in [other_ca, None] {
            db.refused(
                &url(host, port, "?sslmode=verify-ca"),
                ca_file,
                &[
                    &format!("connecting to PostgreSQL at {host}:{port} (sslmode=verify-ca)"),
                    "invalid peer certificate",
                    "UnknownIssuer",
                    "postgres_ca_file",
                    HINT_CHAIN_ONLY,
                ],
            )
            .await;
        }
    }
}

#[tokio::test]
async fn sslrootcert_in_the_connection_string_is_trusted_as_postgres_ca_file_is() {
    let db = TlsDb::start().await;
    let port = db.port;
    let tmi_ca = db.tmi_ca_file.as_path();
    let other_ca = db.other_ca_file.as_path();
    let tmi_root = query_value(tmi_ca);
    let other_root = query_value(other_ca);

    // sslrootcert alone, no postgres_ca_file: connected, in both forms.
    let (code, out, err) = db
        .run(
            &url(
                "127.0.0.1",
                port,
                &format!("?sslmode=verify-full&sslrootcert={tmi_root}"),
            ),
            None,
        )
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        World::line(&out, "webhook_url_deny_list"),
        "webhook_url_deny_list: imported 1, skipped (exists) 0, skipped (too old) 0, invalid 0"
    );
    db.imports(
        &url(
            "127.0.0.1",
            port,
            &format!("?sslrootcert={tmi_root}&sslmode=require"),
        ),
        None,
    )
    .await;
    db.imports(
        &key_value(
            "127.0.0.1",
            port,
            &format!("sslrootcert='{}' sslmode=verify-full", tmi_ca.display()),
        ),
        None,
    )
    .await;
    // With verify-ca, by a name the certificate does not hold.
    db.imports(
        &url(
            "localhost",
            port,
            &format!("?sslmode=verify-ca&sslrootcert={tmi_root}"),
        ),
        None,
    )
    .await;

    // Both given: the certificates of both are trusted, whichever holds the right CA.
    let both = url(
        "127.0.0.1",
        port,
        &format!("?sslmode=verify-full&sslrootcert={other_root}"),
    );
    db.imports(&both, Some(tmi_ca)).await;
    let both = url(
        "127.0.0.1",
        port,
        &format!("?sslmode=verify-full&sslrootcert={tmi_root}"),
    );
    db.imports(&both, Some(other_ca)).await;

    // Neither holds the right CA: refused.
    db.refused(
        &url(
            "127.0.0.1",
            port,
            &format!("?sslmode=verify-full&sslrootcert={other_root}"),
        ),
        Some(other_ca),
        &["UnknownIssuer", HINT_WITH_NAME],
    )
    .await;

    // sslrootcert=system: the public roots only, which do not hold this CA.
    db.refused(
        &url("127.0.0.1", port, "?sslmode=verify-full&sslrootcert=system"),
        None,
        &["(sslmode=verify-full)", "UnknownIssuer"],
    )
    .await;

    // A file that is not there: named, as sslrootcert, before connecting.
    let missing = tmi_ca.with_file_name("missing-ca.pem");
    let err = db
        .refused(
            &url(
                "127.0.0.1",
                port,
                &format!("?sslmode=verify-full&sslrootcert={}", query_value(&missing)),
            ),
            None,
            &["[migrate] postgres_url: sslrootcert", "missing-ca.pem"],
        )
        .await;
    assert!(!err.contains("connecting to PostgreSQL"), "{err}");
}
