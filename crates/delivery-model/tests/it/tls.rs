//! TLS and credentials at connect: a real TLS-only redis-server with certificates made by the test, and a
//! server whose `default` user is off. Every refusal happens in `Store::connect` (so at a service's start),
//! with an error that says why and never holds the password.

use std::time::{Duration, Instant};

use delivery_model::store::{Secret, Store, StoreOptions};
use test_support::certs::SERVER_NAME;
use test_support::redis::{ACL_PASSWORD, ACL_USER, RedisServer};

/// Connects with `opts`, expecting a refusal within a few seconds; returns the error's text.
async fn refused(opts: &StoreOptions) -> String {
    let started = Instant::now();
    let res = Store::connect(opts).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    match res {
        Ok(_) => panic!("connected with {opts:?}"),
        Err(e) => {
            eprintln!("refused: {e}");
            e.to_string()
        }
    }
}

fn with_timeout(mut opts: StoreOptions) -> StoreOptions {
    opts.command_timeout = Duration::from_secs(2);
    opts
}

#[tokio::test]
async fn tls_verifies_the_chain_and_the_host_name() {
    let redis = RedisServer::start_tls(false);
    let files = redis.tls_files().unwrap().clone();
    let trusted = || {
        let mut o = with_timeout(StoreOptions::new(redis.url()));
        o.tls.ca_file = Some(files.ca.clone());
        o
    };

    let store = Store::connect(&trusted())
        .await
        .expect("trusted CA connects");
    store.ping().await.unwrap();
    store.quit().await;

    // Connecting by IP to a certificate checked for another name it carries.
    let mut by_name = trusted();
    by_name.tls.server_name = Some(SERVER_NAME.into());
    Store::connect(&by_name)
        .await
        .expect("server name override");

    let mut untrusted = trusted();
    untrusted.tls.ca_file = Some(files.untrusted_ca.clone());
    let e = refused(&untrusted).await;
    assert!(e.contains("UnknownIssuer"), "{e}");
    // Without a CA file only the public roots are trusted: the private CA is not among them.
    let e = refused(&with_timeout(StoreOptions::new(redis.url()))).await;
    assert!(e.contains("UnknownIssuer"), "{e}");

    let mut wrong_host = trusted();
    wrong_host.url = format!("rediss://localhost:{}", redis.port());
    let e = refused(&wrong_host).await;
    assert!(e.contains("NotValidForName"), "{e}");
    let mut wrong_name = trusted();
    wrong_name.tls.server_name = Some("other.hookline.test".into());
    let e = refused(&wrong_name).await;
    assert!(e.contains("NotValidForName"), "{e}");

    // Plain text to the TLS port: refused, never a silent downgrade.
    let plain = with_timeout(StoreOptions::new(format!(
        "redis://127.0.0.1:{}",
        redis.port()
    )));
    let e = refused(&plain).await;
    assert!(e.contains("use rediss://"), "{e}");
}

#[tokio::test]
async fn tls_to_a_plaintext_server_fails_at_connect() {
    let redis = RedisServer::start();
    let files = test_support::certs::generate(redis.dir());
    let mut opts = with_timeout(StoreOptions::new(format!(
        "rediss://127.0.0.1:{}",
        redis.port()
    )));
    opts.tls.ca_file = Some(files.ca);
    let e = refused(&opts).await;
    assert!(
        e.to_lowercase().contains("tls") || e.contains("corrupt"),
        "{e}"
    );
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let redis = RedisServer::start_tls(true);
    let opts = with_timeout(redis.admin_options());
    let store = Store::connect(&opts)
        .await
        .expect("with the client certificate");
    store.ping().await.unwrap();

    let mut without = opts.clone();
    without.tls.client_cert_file = None;
    without.tls.client_key_file = None;
    refused(&without).await;
}

#[tokio::test]
async fn acl_credentials_from_the_url_or_the_options_and_never_in_errors() {
    let redis = RedisServer::start_acl("~* +@all");
    let host = format!("127.0.0.1:{}", redis.port());

    let in_url = with_timeout(StoreOptions::new(format!(
        "redis://{ACL_USER}:{ACL_PASSWORD}@{host}"
    )));
    Store::connect(&in_url)
        .await
        .expect("user and password in the URL");

    let mut separate = with_timeout(StoreOptions::new(format!("redis://{host}")));
    separate.username = Some(ACL_USER.into());
    separate.password = Some(Secret::new(ACL_PASSWORD));
    Store::connect(&separate)
        .await
        .expect("user and password as options");

    let mut wrong = separate.clone();
    wrong.password = Some(Secret::new("wrong-password-42"));
    let e = refused(&wrong).await;
    assert!(e.contains("WRONGPASS"), "{e}");
    assert!(!e.contains("wrong-password-42"), "{e}");

    let e = refused(&with_timeout(StoreOptions::new(format!("redis://{host}")))).await;
    assert!(!e.is_empty(), "the disabled default user is refused");

    let bad_url = with_timeout(StoreOptions::new(format!(
        "redis://{ACL_USER}:{ACL_PASSWORD}@{host}/not-a-db"
    )));
    let e = refused(&bad_url).await;
    assert!(!e.contains(ACL_PASSWORD), "{e}");
}
