//! The connection to TMI's PostgreSQL, with TLS as the connection string's `sslmode` asks.
//!
//! `sslmode` takes libpq's values, in lower case (libpq compares them case-sensitively):
//!
//! - `disable`: plaintext.
//! - `prefer`: TLS when the server offers it, verified as for `verify-full`; plaintext only when the server
//!   does not offer TLS. A certificate that does not verify fails the connection: it is never a reason to
//!   fall back to plaintext. Only when asked for explicitly: an active man-in-the-middle can answer "no TLS".
//! - `require` and `verify-full` (the default when the string names no `sslmode`, issue #16): TLS; the certificate must chain to a trusted root and name the host of the
//!   connection string (DNS name, or IP address in an IP SAN). A server that does not offer TLS fails the
//!   connection. (libpq's own `require` checks no certificate unless it finds a root file; this tool's
//!   `require` always verifies, exactly as `verify-full`.)
//! - `verify-ca`: TLS; the certificate must chain to a trusted root, but need not name the host (for
//!   connecting by an address the certificate does not name). Everything else (issuer, validity dates,
//!   signatures, key usage) is checked as for `verify-full`.
//! - `allow` (plaintext first, TLS only when the server insists) is refused ([`Error::SslMode`]).
//!
//! tokio-postgres parses only `disable`, `prefer` and `require`: [`parse`] hands it `require` in place of
//! `verify-ca` and `verify-full` and keeps the mode asked for in [`ConnectionString::mode`].
//!
//! Trusted roots: Mozilla's (`webpki-roots`, compiled in) plus every certificate in the PEM file `[migrate]
//! postgres_ca_file` and in the PEM file named by the connection string's `sslrootcert` (libpq's parameter).
//! Both may be given; the certificates of both are trusted. `sslrootcert=system` (or an empty value) names
//! the public roots alone, which are always trusted. tokio-postgres does not know `sslrootcert`: [`parse`]
//! takes it out of the string first. There is no switch to accept a certificate that does not chain to a
//! trusted root. Client certificates (`sslcert`, `sslkey`) are not supported.
//!
//! No error message repeats the connection string or its password. A session that ends up in plaintext
//! (`disable`, or `prefer` against a server that offered no TLS) is logged as a warning, every time.
//!
//! Submodules: `conninfo` reads the connection string ([`TlsMode`], [`parse`]), `params` splits it as
//! tokio-postgres does, `tls` builds the rustls configuration ([`client_config`]), `messages` words errors
//! (cause chains, passwords redacted), `observe` sees whether TLS was really used. This file connects.

mod conninfo;
mod messages;
mod observe;
mod params;
mod tls;

pub use conninfo::{ConnectionString, TlsMode, parse};
pub use tls::client_config;

use std::io;
use std::path::Path;

use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};
use messages::{chain, redact};
use tls::{CA_FILE_SETTING, ROOT_CERT_SETTING};

/// Connects to `url` (a `postgres://` URL or a `key=value` string), over TLS as its `sslmode` says, trusting
/// the public roots plus the certificates in `ca_file` and in the URL's `sslrootcert` (when given). The
/// connection is driven by a spawned task, which ends when the [`Client`] is dropped; await it to close the
/// connection cleanly.
///
/// # Errors
/// [`Error::SslMode`] or [`Error::ConnectionString`] for a connection string that cannot be used,
/// [`Error::CaFile`] for a CA file that cannot be read or holds no certificate, [`Error::Connect`] when the
/// server cannot be reached or refuses the connection (TLS, `pg_hba.conf`, authentication).
pub async fn connect(url: &str, ca_file: Option<&Path>) -> Result<(Client, JoinHandle<()>)> {
    let parsed = parse(url)?;
    let mut ca_files = Vec::new();
    if let Some(path) = ca_file {
        ca_files.push((CA_FILE_SETTING, path));
    }
    if let Some(path) = &parsed.root_cert {
        ca_files.push((ROOT_CERT_SETTING, path.as_path()));
    }
    let (tls, seen) = observe::Observed::new(MakeRustlsConnect::new(client_config(
        parsed.mode,
        &ca_files,
    )?));
    let (client, connection) = parsed.config.connect(tls).await.map_err(|e| {
        let password = parsed
            .config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        Error::Connect {
            target: target(&parsed.config, parsed.mode),
            detail: redact(chain(&e), password.as_slice()),
            hint: match (is_certificate_error(&e), parsed.mode.checks_host_name()) {
                (false, _) => "",
                (true, true) => {
                    " (the server's certificate did not verify: set [migrate] postgres_ca_file or the connection \
                     string's sslrootcert to the CA that signed it, and connect by a host name or IP address the \
                     certificate names)"
                }
                (true, false) => {
                    " (the server's certificate did not verify: set [migrate] postgres_ca_file or the connection \
                     string's sslrootcert to the CA that signed it)"
                }
            },
        }
    })?;
    if !seen.used() {
        // Subscription secrets travel over this session: say so every time it is not encrypted.
        tracing::warn!(
            target = %target(&parsed.config, parsed.mode),
            "PostgreSQL session is in PLAINTEXT (no TLS): subscription secrets cross the network unencrypted; \
             use sslmode=verify-full"
        );
    }
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %chain(&e), "PostgreSQL connection failed");
        }
    });
    Ok((client, task))
}

/// `host:port, … (sslmode=…)` for messages, with the mode asked for; never the user or password.
fn target(config: &Config, mode: TlsMode) -> String {
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
    format!("{} (sslmode={})", hosts.join(", "), mode.name())
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
    fn target_names_hosts_ports_and_the_mode_asked_for_but_no_credentials() {
        let parsed = parse("postgres://tmi:hunter2@db.example:6432/tmi?sslmode=verify-ca").unwrap();
        assert_eq!(
            target(&parsed.config, parsed.mode),
            "db.example:6432 (sslmode=verify-ca)"
        );
        let parsed =
            parse("host=db.example user=tmi password=hunter2 sslmode='verify-full'").unwrap();
        assert_eq!(
            target(&parsed.config, parsed.mode),
            "db.example:5432 (sslmode=verify-full)"
        );
        assert!(!format!("{parsed:?}").contains("hunter2"));
    }
}
