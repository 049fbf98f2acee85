//! Re-encryption of every stored subscription secret (and Ed25519 signing key) under the current key (`hookline-migrate
//! reencrypt-secrets`): after a key rotation, and to seal plain-text secrets from before encryption.
//!
//! It walks the all-subscriptions index in pages and replaces each secret that is in plain text or under
//! an old key with a compare-and-set ([`scripts::RESEAL_SECRET`]). Each record is its own step, so the
//! walk is idempotent and resumable: a rerun (after a crash, or to mop up records written meanwhile) skips
//! what is already under the current key, and a clean run reports nothing left to reseal.

use fred::prelude::*;

use super::{Store, scripts};
use crate::error::{Error, Result};
use crate::ids::SubscriptionId;
use crate::subscription::field;

/// What a re-encryption pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Subscriptions looked at.
    pub scanned: u64,
    /// Values (secrets, signing keys) sealed again under the current key (plain text or an old key before).
    pub resealed: u64,
    /// Values already under the current key.
    pub current: u64,
    /// Subscriptions without a secret (unsigned deliveries).
    pub unsigned: u64,
    /// Records that changed or vanished between read and write; a rerun picks them up.
    pub raced: u64,
}

impl Store {
    /// Seals every subscription secret that is not under the current key; `page` ids at a time.
    ///
    /// # Errors
    /// [`Error::Config`] when no current key is configured; [`Error::Crypto`] (naming the subscription,
    /// never the secret) when a secret is under a key that is no longer configured; Redis failure.
    pub async fn reseal_subscription_secrets(&self, page: u64) -> Result<ResealReport> {
        if !self.secrets().is_enabled() {
            return Err(Error::Config(
                "no current key in [secret_keys]: nothing to encrypt with".into(),
            ));
        }
        let mut report = ResealReport::default();
        let all = self.keys().subscriptions_all();
        let mut offset = 0;
        loop {
            let (ids, _) = self.zpage(&all, offset, page.max(1), false).await?;
            if ids.is_empty() {
                return Ok(report);
            }
            offset += ids.len() as u64;
            for id in ids {
                report.scanned += 1;
                self.reseal_one(&id, &mut report).await?;
            }
        }
    }

    async fn reseal_one(&self, id: &str, report: &mut ResealReport) -> Result<()> {
        let Ok(sid) = id.parse::<SubscriptionId>() else {
            return Err(Error::Decode(format!("subscription index holds {id:?}")));
        };
        let key = self.keys().subscription(sid);
        for f in field::SEALED {
            let stored: Option<String> = self.pool().hget(&key, f).await?;
            match stored.filter(|s| !s.is_empty()) {
                Some(stored) => self.reseal_field(id, &key, f, stored, report).await?,
                None if f == field::SECRET => report.unsigned += 1,
                None => {}
            }
        }
        Ok(())
    }

    async fn reseal_field(
        &self,
        id: &str,
        key: &str,
        f: &str,
        stored: String,
        report: &mut ResealReport,
    ) -> Result<()> {
        if !self.secrets().needs_reseal(&stored) {
            report.current += 1;
            return Ok(());
        }
        let plain = self
            .secrets()
            .open(&stored)
            .map_err(|e| Error::Crypto(format!("subscription {id}: {e}")))?;
        let sealed = self.secrets().seal(&plain)?;
        let replaced: i64 = scripts::RESEAL_SECRET
            .run(
                self.pool(),
                vec![key.to_owned()],
                vec![stored, sealed, f.to_owned()],
            )
            .await?;
        if replaced == 1 {
            report.resealed += 1;
        } else {
            report.raced += 1;
        }
        Ok(())
    }
}
