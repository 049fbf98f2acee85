//! Replay protection of receivers' timestamped requests (issue #17): each accepted signature is remembered
//! for the tolerance window ([`Keyspace::replay_signature`](crate::keys::Keyspace::replay_signature)), so the
//! same signed request is accepted once; outside the window its timestamp already refuses it.

use std::time::Duration;

use fred::prelude::*;
use fred::types::{Expiration, SetOptions};

use super::Store;
use crate::error::Result;
use crate::ids::SubscriptionId;

impl Store {
    /// Records `signature` as used for subscription `sub` for `window`; `false` when it was already used.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn remember_signature(
        &self,
        sub: SubscriptionId,
        signature: &str,
        window: Duration,
    ) -> Result<bool> {
        let secs = i64::try_from(window.as_secs()).unwrap_or(i64::MAX).max(1);
        let set: Option<String> = self
            .pool()
            .set(
                self.keys().replay_signature(sub, signature),
                "1",
                Some(Expiration::EX(secs)),
                Some(SetOptions::NX),
                false,
            )
            .await?;
        Ok(set.is_some())
    }
}
