//! The error type of the cleanup library.
//!
//! A cycle returns [`Error`]; the loop logs it once, naps and tries again, and `cleanup --once` exits with it
//! (non-zero). Only `main` uses `anyhow`.

/// Why a cycle failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis failed or answered something unexpected. The chunk in hand wrote nothing or all of its change
    /// (each is one script), so the next cycle resumes safely.
    #[error(transparent)]
    Store(#[from] delivery_model::Error),
    /// The lease expired or was taken over mid-cycle (a stall longer than `[cleanup] lease_ttl_ms`): another
    /// replica may be running, so this one stops at once.
    #[error("the cleanup lease was lost mid-cycle (expired or taken over)")]
    LeaseLost,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
