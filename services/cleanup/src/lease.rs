//! The Redis lease a cycle runs under, so that two replicas never run a cycle at the same time.
//!
//! `SET hookline:cleanup:lease <token> NX PX <ttl>` takes it; after every chunk the holder renews it and saves
//! its walk state in one script that first checks the token; at the end of the cycle a compare-and-delete
//! script releases it. A holder that crashes leaves a lease that expires after `ttl`. A holder that stalls
//! longer than `ttl` finds the lease gone or taken at its next renewal and stops (every change is a
//! compare-and-set, so even then nothing is done twice).

use std::time::Duration;

use delivery_model::store::Store;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::state::WalkState;

/// A held lease. Release it with [`Lease::release`]; if dropped otherwise, it expires after its TTL.
pub struct Lease {
    store: Store,
    token: String,
    ttl: Duration,
    metrics: Metrics,
}

impl Lease {
    /// Takes the lease if nobody holds it; `None` when another replica does.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn acquire(
        store: &Store,
        replica: &str,
        ttl: Duration,
        metrics: &Metrics,
    ) -> Result<Option<Self>> {
        // The replica name makes `GET hookline:cleanup:lease` say who runs; the UUID makes every cycle's
        // token unique, so a replica can never mistake its previous cycle's lease for this one's.
        let token = format!("{replica}:{}", uuid::Uuid::new_v4().simple());
        if !store.acquire_cleanup_lease(&token, ttl).await? {
            return Ok(None);
        }
        metrics.lease_held.set(1);
        tracing::debug!(lease.token = %token, "cleanup lease acquired");
        Ok(Some(Self {
            store: store.clone(),
            token,
            ttl,
            metrics: metrics.clone(),
        }))
    }

    /// Renews the lease and saves `state`, in one step and only while the lease is ours.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] when it expired or another replica holds it; Redis failure.
    pub async fn commit(&self, state: &WalkState) -> Result<()> {
        if self
            .store
            .commit_cleanup_lease(&self.token, self.ttl, &state.to_fields())
            .await?
        {
            Ok(())
        } else {
            self.metrics.lease_held.set(0);
            Err(Error::LeaseLost)
        }
    }

    /// Releases the lease (if still ours). A failure is logged: the lease then expires by itself.
    pub async fn release(self) {
        self.metrics.lease_held.set(0);
        match self.store.release_cleanup_lease(&self.token).await {
            Ok(true) => tracing::debug!(lease.token = %self.token, "cleanup lease released"),
            Ok(false) => {
                tracing::debug!(lease.token = %self.token, "cleanup lease had already gone")
            }
            Err(e) => {
                tracing::warn!(error = %e, "releasing the cleanup lease failed; it expires by itself")
            }
        }
    }
}
