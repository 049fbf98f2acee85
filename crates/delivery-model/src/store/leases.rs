//! Leases held by one replica at a time: cleanup's cycle lease (with the state its walks resume from) and the
//! `SET NX PX` acquire it shares with the redrive runner's lease ([`redrive`](super::redrive)).

use std::collections::HashMap;
use std::time::Duration;

use fred::prelude::*;
use fred::types::{Expiration, SetOptions};

use super::{Store, scripts};
use crate::error::Result;

impl Store {
    /// Takes the cleanup lease for `ttl` if nobody holds it. Returns whether it is now ours.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn acquire_cleanup_lease(&self, token: &str, ttl: Duration) -> Result<bool> {
        self.acquire_lease(self.keys().cleanup_lease(), token, ttl)
            .await
    }

    /// `SET key token NX PX ttl`: whether `token` now holds the lease at `key` (cleanup's and the redrive
    /// runner's).
    pub(super) async fn acquire_lease(
        &self,
        key: String,
        token: &str,
        ttl: Duration,
    ) -> Result<bool> {
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let reply: Option<String> = self
            .pool()
            .set(
                key,
                token,
                Some(Expiration::PX(ms)),
                Some(SetOptions::NX),
                false,
            )
            .await?;
        Ok(reply.is_some())
    }

    /// Renews the lease for `ttl` if `token` still holds it, and only then stores `state` (field/value pairs
    /// of [`Keyspace::cleanup_state`](crate::keys::Keyspace::cleanup_state)). Returns whether it was renewed.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn commit_cleanup_lease(
        &self,
        token: &str,
        ttl: Duration,
        state: &[(String, String)],
    ) -> Result<bool> {
        let k = self.keys();
        let mut args = vec![token.to_owned(), ttl.as_millis().max(1).to_string()];
        for (f, v) in state {
            args.push(f.clone());
            args.push(v.clone());
        }
        let renewed: i64 = scripts::CLEANUP_LEASE_COMMIT
            .run(
                self.pool(),
                vec![k.cleanup_lease(), k.cleanup_state()],
                args,
            )
            .await?;
        Ok(renewed == 1)
    }

    /// Releases the lease if `token` holds it. Returns whether it did.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn release_cleanup_lease(&self, token: &str) -> Result<bool> {
        let released: i64 = scripts::CLEANUP_LEASE_RELEASE
            .run(
                self.pool(),
                vec![self.keys().cleanup_lease()],
                vec![token.to_owned()],
            )
            .await?;
        Ok(released == 1)
    }

    /// Where cleanup's walks stand (the fields stored by [`commit_cleanup_lease`](Self::commit_cleanup_lease)).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn cleanup_state(&self) -> Result<HashMap<String, String>> {
        Ok(self.pool().hgetall(self.keys().cleanup_state()).await?)
    }
}
