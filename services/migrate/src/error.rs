//! The error type of the migrate library.
//!
//! [`Error`] is a failure that stops the run (a database or Redis that cannot be read or written). A row that
//! cannot be imported is not an error: it is reported as invalid ([`crate::report::Invalid`]) and the run goes
//! on. Only `main` uses `anyhow`.

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// PostgreSQL failed (connection, query, lock or drop). Nothing is half-written there: the tool only reads,
    /// and the drop runs in one transaction.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Redis failed. Each record is written by one create-if-absent step, so a re-run resumes safely.
    #[error(transparent)]
    Store(#[from] delivery_model::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
