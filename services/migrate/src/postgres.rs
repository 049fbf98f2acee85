//! The connection to TMI's PostgreSQL, with TLS as the connection string's `sslmode` asks.
//!
//! `sslmode` takes libpq's names; tokio-postgres understands three of them:
//!
//! - `disable`: plaintext.
//! - `prefer` (the default): TLS when the server offers it, verified as below; plaintext only when the server
//!   does not offer TLS. A certificate that does not verify fails the connection: it is never a reason to fall
//!   back to plaintext.
//! - `require`: TLS, verified as below. A server that does not offer TLS fails the connection.
//!
//! `allow`, `verify-ca` and `verify-full` are refused with an error that says so ([`Error::SslMode`]).
//!
//! Verification is always what libpq calls `verify-full`: the certificate chains to a trusted root, and it
//! names the host of the connection string (DNS name, or IP address in an IP SAN). There is no switch to
//! accept an invalid certificate. Trusted roots: Mozilla's (`webpki-roots`, compiled in) plus every
//! certificate in the PEM file `[migrate] postgres_ca_file`. Client certificates are not supported.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::task::JoinHandle;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// `sslmode` values libpq knows and tokio-postgres does not parse.
const UNSUPPORTED_SSL_MODES: &[&str] = &["allow", "verify-ca", "verify-full"];

/// Connects to `url` (a `postgres://` URL or a `key=value` string), over TLS as its `sslmode` says, trusting
/// the public roots plus the certificates in `ca_file` (when given). The connection is driven by a spawned
/// task, which ends when the [`Client`] is dropped; await it to close the connection cleanly.
///
/// # Errors
/// [`Error::SslMode`] or [`Error::ConnectionString`] for a connection string that cannot be used,
/// [`Error::CaFile`] for a CA file that cannot be read or holds no certificate, [`Error::Connect`] when the
/// server cannot be reached or refuses the connection (TLS, `pg_hba.conf`, authentication).
pub async fn connect(url: &str, ca_file: Option<&Path>) -> Result<(Client, JoinHandle<()>)> {
    let config = parse(url)?;
    let tls = MakeRustlsConnect::new(client_config(ca_file)?);
    let (client, connection) = config.connect(tls).await.map_err(|e| Error::Connect {
        target: target(&config),
        detail: chain(&e),
        hint: if is_certificate_error(&e) {
            " (the server's certificate did not verify: set [migrate] postgres_ca_file to the CA that \
             signed it, and connect by a host name or IP address the certificate names)"
        } else {
            ""
        },
    })?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %chain(&e), "PostgreSQL connection failed");
        }
    });
    Ok((client, task))
}

/// Parses a connection string, naming an `sslmode` that libpq knows and this tool does not accept.
///
/// # Errors
/// [`Error::SslMode`] or [`Error::ConnectionString`].
pub fn parse(url: &str) -> Result<Config> {
    url.parse::<Config>().map_err(|e| {
        match UNSUPPORTED_SSL_MODES
            .iter()
            .find(|mode| ssl_mode_is(url, mode))
        {
            Some(mode) => Error::SslMode((*mode).to_owned()),
            None => Error::ConnectionString(chain(&e)),
        }
    })
}

/// Whether `url` sets `sslmode` to `mode`, in URL (`?sslmode=x`) or `key=value` (`sslmode = 'x'`) form.
fn ssl_mode_is(url: &str, mode: &str) -> bool {
    let mut rest = url;
    while let Some(at) = rest.find("sslmode") {
        let after = rest[at + "sslmode".len()..].trim_start();
        if let Some(value) = after.strip_prefix('=') {
            let value = value.trim_start().trim_start_matches('\'');
            if value.starts_with(mode)
                && !value[mode.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
            {
                return true;
            }
        }
        rest = &rest[at + "sslmode".len()..];
    }
    false
}

/// The rustls client configuration: ring, TLS 1.2 and 1.3, the public roots plus `ca_file`.
///
/// # Errors
/// [`Error::CaFile`].
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let ca_error = |reason: String| Error::CaFile {
            path: path.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_error(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_error(
                "no PEM certificate (BEGIN CERTIFICATE) in it".into(),
            ));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// `host:port, … (sslmode=…)` for messages; never the user or password.
fn target(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
            }
        })
        .collect();
    let mode = match config.get_ssl_mode() {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        _ => "other",
    };
    format!("{} (sslmode={mode})", hosts.join(", "))
}

/// The error and its causes, `: `-separated (tokio-postgres' own message is only the kind: "db error").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// Whether the handshake failed because the server's certificate did not verify.
fn is_certificate_error(e: &tokio_postgres::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        // tokio-rustls hands rustls' error over inside an io::Error.
        let tls = err
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .or_else(|| err.downcast_ref::<rustls::Error>());
        if matches!(
            tls,
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
        ) {
            return true;
        }
        next = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn the_three_parsed_modes_are_accepted() {
        for (url, mode) in [
            ("postgres://tmi@db/tmi", SslMode::Prefer),
            ("postgres://tmi@db/tmi?sslmode=disable", SslMode::Disable),
            ("postgres://tmi@db/tmi?sslmode=prefer", SslMode::Prefer),
            ("postgres://tmi@db/tmi?sslmode=require", SslMode::Require),
            ("host=db user=tmi sslmode=require", SslMode::Require),
        ] {
            assert_eq!(parse(url).unwrap().get_ssl_mode(), mode, "{url}");
        }
    }

    #[test]
    fn libpq_modes_tokio_postgres_lacks_are_refused_by_name() {
        for (url, mode) in [
            ("postgres://tmi@db/tmi?sslmode=verify-full", "verify-full"),
            (
                "postgresql://db/tmi?connect_timeout=5&sslmode=verify-ca",
                "verify-ca",
            ),
            ("host=db sslmode = 'verify-full' user=tmi", "verify-full"),
            ("host=db user=tmi sslmode=allow", "allow"),
        ] {
            let err = parse(url).unwrap_err();
            assert!(
                matches!(&err, Error::SslMode(m) if m == mode),
                "{url}: {err}"
            );
            let text = err.to_string();
            assert!(text.contains(&format!("sslmode={mode}")), "{text}");
            assert!(text.contains("require"), "says what to use instead: {text}");
        }
    }

    #[test]
    fn other_bad_strings_are_connection_string_errors_without_the_password() {
        let err = parse("postgres://tmi:hunter2@db/tmi?sslmode=verify-everything").unwrap_err();
        assert!(matches!(err, Error::ConnectionString(_)), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn target_names_hosts_ports_and_mode_but_no_credentials() {
        let config = parse("postgres://tmi:hunter2@db.example:6432/tmi?sslmode=require").unwrap();
        assert_eq!(target(&config), "db.example:6432 (sslmode=require)");
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("migrate-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(Some(&empty)).unwrap_err();
        assert!(matches!(err, Error::CaFile { .. }), "{err}");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let missing = dir.join("missing.pem");
        let err = client_config(Some(&missing)).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(client_config(None).is_ok());
    }
}
