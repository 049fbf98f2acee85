//! The error type of `delivery-model`.
//!
//! Library code returns [`Error`]; binaries wrap it in `anyhow` at their edges. Callers that must decide
//! whether to retry ask the error ([`Error::is_retryable`], [`Error::is_nogroup`]) instead of reading its text.

/// Everything that can go wrong in the Redis contract layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// A stored value or stream entry could not be decoded.
    #[error("decode: {0}")]
    Decode(String),
    /// JSON (de)serialisation failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A Lua script returned something this crate does not understand (a bug or a contract mismatch).
    #[error("unexpected script reply: {0}")]
    Script(String),
    /// The write is applied on the primary, but fewer replicas than `redis.wait_replicas` confirmed it in
    /// time (`WAIT`): a failover now could still lose it. Retryable; the caller must not report success.
    #[error("write not confirmed by replicas: {confirmed} of {wanted} within the wait timeout")]
    NotReplicated { wanted: u32, confirmed: u32 },
    /// A fan-out matched its entries against subscriptions read at an older match generation: a
    /// subscription changed since, so nothing was written and the caller matches the entries again.
    #[error("the subscriptions changed since the entries were matched")]
    StaleMatch,
    /// The connection settings cannot be used (URL, credentials, TLS files); the message never holds the
    /// password.
    #[error("redis settings: {0}")]
    Config(String),
    /// A stored secret could not be encrypted or decrypted (unknown key id, failed authentication); the
    /// message never holds the secret or the key.
    #[error("secret encryption: {0}")]
    Crypto(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A failure that may go away on its own (connection loss, timeout, Redis busy or loading).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Redis(e) => !matches!(
                e.kind(),
                fred::error::ErrorKind::InvalidArgument
                    | fred::error::ErrorKind::InvalidCommand
                    | fred::error::ErrorKind::Parse
            ),
            Error::Decode(_)
            | Error::Json(_)
            | Error::Script(_)
            | Error::Config(_)
            | Error::Crypto(_) => false,
            Error::NotReplicated { .. } | Error::StaleMatch => true,
        }
    }

    /// Redis gave no answer within the command timeout: the connection may be half-open, so a caller that
    /// owns a dedicated connection replaces it.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Redis(e) if *e.kind() == fred::error::ErrorKind::Timeout)
    }

    /// The same failure again, for each caller waiting on one batched call (errors of the libraries below are
    /// not all `Clone`; their text is kept).
    #[must_use]
    pub fn for_waiter(&self) -> Error {
        match self {
            Error::Redis(e) => Error::Redis(e.clone()),
            Error::Decode(s) => Error::Decode(s.clone()),
            Error::Json(e) => Error::Decode(e.to_string()),
            Error::Script(s) => Error::Script(s.clone()),
            Error::NotReplicated { wanted, confirmed } => Error::NotReplicated {
                wanted: *wanted,
                confirmed: *confirmed,
            },
            Error::StaleMatch => Error::StaleMatch,
            Error::Config(s) => Error::Config(s.clone()),
            Error::Crypto(s) => Error::Crypto(s.clone()),
        }
    }

    /// Replicas did not confirm an acknowledged write in time ([`Error::NotReplicated`]).
    pub fn is_not_replicated(&self) -> bool {
        matches!(self, Error::NotReplicated { .. })
    }

    /// Redis reported `NOGROUP`: the stream or its consumer group is gone (a Redis restart without persistence).
    /// The caller recreates the group and carries on.
    pub fn is_nogroup(&self) -> bool {
        // Redis error replies carry their code as the first word of the message; this is the protocol's error
        // code, not free text.
        matches!(self, Error::Redis(e) if e.details().starts_with("NOGROUP"))
    }
}
