//! The error type of the migrate library.
//!
//! [`Error`] is a failure that stops the run (a database or Redis that cannot be read or written). A row that
//! cannot be imported is not an error: it is reported as invalid ([`crate::report::Invalid`]) and the run goes
//! on. Only `main` uses `anyhow`.

use std::path::PathBuf;

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection string cannot be parsed (the message never repeats the string: it may hold a password).
    #[error("[migrate] postgres_url: {0}")]
    ConnectionString(String),
    /// The connection string asks for an `sslmode` that libpq knows and this tool does not accept: `allow`.
    #[error(
        "[migrate] postgres_url: sslmode={0} is not supported (it tries plaintext first); use sslmode=verify-full \
         or require (TLS with the certificate chain and host name verified), verify-ca (TLS with the chain \
         verified, not the host name), prefer or disable"
    )]
    SslMode(String),
    /// A CA file (`[migrate] postgres_ca_file`, or the connection string's `sslrootcert`: `setting` says which)
    /// cannot be read or holds no usable certificate.
    #[error("{setting} {}: {reason}", path.display())]
    CaFile {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The TLS client could not be set up.
    #[error("TLS set-up: {0}")]
    Tls(String),
    /// PostgreSQL could not be reached, or refused the connection: TLS handshake, `pg_hba.conf`,
    /// authentication. `detail` holds every cause; `hint` says what to check, or is empty.
    #[error("connecting to PostgreSQL at {target}: {detail}{hint}")]
    Connect {
        target: String,
        detail: String,
        hint: &'static str,
    },
    /// PostgreSQL failed once connected (query, lock or drop). Nothing is half-written there: the tool only reads,
    /// and the drop runs in one transaction.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// `--from-redis` refused its source (the target itself, or a cluster node): nothing was written.
    #[error("--from-redis: {0}")]
    Refused(String),
    /// Redis failed. Each record is written by one create-if-absent step, so a re-run resumes safely.
    #[error(transparent)]
    Store(#[from] delivery_model::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
