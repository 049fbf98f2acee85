//! TLS to PostgreSQL: a private server with `ssl=on`, a CA and server certificate made here, and
//! `pg_hba.conf` accepting TCP connections over TLS only.

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

#[tokio::test]
async fn imports_over_verified_tls_and_refuses_unverified_or_plaintext_connections() {
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
    let certs = std::env::temp_dir().join(format!("migrate-tls-{}", w.pg.port()));
    std::fs::create_dir_all(&certs).unwrap();
    let tmi_ca_file = write(&certs, "tmi-ca.pem", &tmi_ca.pem);
    let other_ca_file = write(&certs, "other-ca.pem", &other_ca.pem);
    let port = w.pg.port();
    let run = |url: String, ca_file: Option<&Path>| {
        let ca_file = ca_file.map(|f| f.display().to_string()).unwrap_or_default();
        let w = &w;
        async move {
            w.migrate_with(
                &[
                    ("HOOKLINE__MIGRATE__POSTGRES_URL", url.as_str()),
                    ("HOOKLINE__MIGRATE__POSTGRES_CA_FILE", ca_file.as_str()),
                ],
                &[],
            )
            .await
        }
    };

    // sslmode=require with the CA that signed the server's certificate: imported.
    let (code, out, err) = run(
        url("127.0.0.1", port, "?sslmode=require"),
        Some(&tmi_ca_file),
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        World::line(&out, "webhook_url_deny_list"),
        "webhook_url_deny_list: imported 1, skipped (exists) 0, skipped (too old) 0, invalid 0"
    );
    let stored: u64 = w.redis_client.hlen("webhook:url_deny_list").await.unwrap();
    assert_eq!(stored, 1);

    // Another CA: the certificate does not verify, and the error says what to check.
    let (code, out, err) = run(
        url("127.0.0.1", port, "?sslmode=require"),
        Some(&other_ca_file),
    )
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    for needle in [
        &format!("connecting to PostgreSQL at 127.0.0.1:{port} (sslmode=require)"),
        "invalid peer certificate",
        "UnknownIssuer",
        "postgres_ca_file",
    ] {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }

    // prefer (the default) with only the public roots: the server offers TLS, its certificate does not
    // verify, and that fails the connection instead of falling back to plaintext.
    let (code, out, err) = run(url("127.0.0.1", port, ""), None).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("(sslmode=prefer)"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");

    // The right CA, but a host name the certificate does not hold (it names 127.0.0.1 only).
    let (code, out, err) = run(
        url("localhost", port, "?sslmode=require"),
        Some(&tmi_ca_file),
    )
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("invalid peer certificate"), "{err}");
    assert!(
        err.contains("certificate not valid for name \"localhost\""),
        "{err}"
    );

    // sslmode=disable against a server that accepts TLS connections only: refused by pg_hba.conf.
    let (code, out, err) = run(
        url("127.0.0.1", port, "?sslmode=disable"),
        Some(&tmi_ca_file),
    )
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("(sslmode=disable)"), "{err}");
    assert!(err.contains("no pg_hba.conf entry"), "{err}");
    assert!(err.contains("no encryption"), "{err}");

    // verify-full is libpq's, not tokio-postgres': refused before connecting, naming what to use.
    let (code, out, err) = run(
        url("127.0.0.1", port, "?sslmode=verify-full"),
        Some(&tmi_ca_file),
    )
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("sslmode=verify-full is not supported"),
        "{err}"
    );

    std::fs::remove_dir_all(&certs).unwrap();
}
