//! Re-encryption of every stored subscription secret (and Ed25519 signing key) under the current key (`hookline-migrate
//! reencrypt-secrets`): after a key rotation, and to seal plain-text secrets from before encryption.
//!
//! It walks the all-subscriptions index in pages and replaces each secret that is in plain text or under
//! an old key with a compare-and-set ([`scripts::RESEAL_SECRET`]). Each record is its own step, so the
//! walk is idempotent and resumable: a rerun (after a crash, or to mop up records written meanwhile) skips
//! what is already under the current key, and a clean run reports nothing left to reseal.
//!
//! Also the rotation of a subscription's secret ([`Store::rotate_secret`], issue #17): the new secret
//! replaces the current one, which stays live as `previous_secret` for a grace period, both sealed.

use fred::prelude::*;

use super::{Store, scripts};
use crate::error::{Error, Result};
use crate::ids::SubscriptionId;
use crate::subscription::field;
use crate::time::Micros;

/// What [`Store::rotate_secret`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The new secret is current; the old one stays live until the given time (`None`: no grace period).
    Rotated { previous_until: Option<Micros> },
    /// No such subscription.
    Missing,
    /// The subscription has no secret (an unsigned import): nothing to rotate.
    Unsigned,
    /// Another rotation (or a rewrite) changed the secret between read and write, twice in a row.
    Raced,
}

/// Attempts of the compare-and-set before [`Rotation::Raced`]: a loser re-reads once and goes again.
const ROTATE_ATTEMPTS: usize = 2;

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
    /// Makes `new_secret` the subscription's secret; the one it replaces keeps signing and verifying until
    /// `previous_until` (`None`: at once dead). A previous secret from an earlier rotation is dropped.
    ///
    /// # Errors
    /// Redis failure; [`Error::Crypto`] when the stored secret cannot be opened.
    pub async fn rotate_secret(
        &self,
        id: SubscriptionId,
        new_secret: &str,
        previous_until: Option<Micros>,
        now: Micros,
    ) -> Result<Rotation> {
        let key = self.keys().subscription(id);
        for _ in 0..ROTATE_ATTEMPTS {
            let (exists, stored): (Option<String>, Option<String>) = self
                .pool()
                .hmget(&key, vec![field::ID, field::SECRET])
                .await?;
            if exists.is_none() {
                return Ok(Rotation::Missing);
            }
            let Some(stored) = stored.filter(|s| !s.is_empty()) else {
                return Ok(Rotation::Unsigned);
            };
            let previous = match previous_until {
                Some(_) => self.secrets().seal(&self.secrets().open(&stored)?)?,
                None => String::new(),
            };
            let rotated: i64 = scripts::ROTATE_SECRET
                .run(
                    self.pool(),
                    vec![key.clone()],
                    vec![
                        stored,
                        self.secrets().seal(new_secret)?,
                        previous,
                        previous_until.unwrap_or_default().to_string(),
                        now.to_string(),
                    ],
                )
                .await?;
            if rotated == 1 {
                return Ok(Rotation::Rotated { previous_until });
            }
        }
        Ok(Rotation::Raced)
    }

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
