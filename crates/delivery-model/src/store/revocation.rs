//! Token revocation (issue #16): TMI revokes a bearer token by writing
//! [`Keyspace::revoked_token`](crate::keys::Keyspace::revoked_token); the gateway asks here on every
//! authenticated request.

use fred::interfaces::KeysInterface as _;

use super::Store;
use crate::error::Result;

impl Store {
    /// Whether `raw_token` has been revoked: one `EXISTS`.
    ///
    /// # Errors
    /// Redis unreachable or failing; the caller must then refuse the request (fail closed).
    pub async fn is_token_revoked(&self, raw_token: &str) -> Result<bool> {
        let n: u32 = self
            .pool()
            .exists(self.keys().revoked_token(raw_token))
            .await?;
        Ok(n > 0)
    }
}
