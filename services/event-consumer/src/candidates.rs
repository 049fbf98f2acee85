//! The subscriptions an event type can match, kept between batches.
//!
//! Reading them costs a set union and one hash read per subscription, per event type, per batch: at a
//! moderate rate, where a batch holds one event, that was most of the consumer's Redis work (issue #21).
//! Subscriptions change rarely, so the consumer keeps what it read, with the match generation it read it
//! at. Every script that changes the per-event match sets bumps the generation in the same step (see
//! `Keyspace::match_generation`). On one node the fan-out script checks it as it writes and refuses a batch
//! matched at an older one (`Error::StaleMatch`: the consumer drops the cache and matches again), so a batch
//! served from the cache costs no read at all; on a cluster, where the generation lives apart from the
//! shards, the consumer reads it once per batch. Either way a cached list is exactly as fresh as a read one.
//! Entries are also re-read after [`MAX_AGE`], which bounds staleness if Redis loses the counter with its data.
//!
//! The fan-out script checks each subscription's status again when it writes, so a subscription that left
//! `active` between the read and the write gets nothing either way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use delivery_model::store::Store;
use delivery_model::subscription::Subscription;

/// A cached list is read again after this long, whatever the generation says.
const MAX_AGE: Duration = Duration::from_secs(5);

/// Candidate subscriptions per event type.
pub type Candidates<'a> = HashMap<&'a str, Arc<Vec<Subscription>>>;

/// Candidates and the match generation they were read at.
pub struct Matched<'a> {
    pub candidates: Candidates<'a>,
    pub generation: i64,
}

/// What the consumer read, by event type, and the generation it belongs to.
#[derive(Default)]
pub struct CandidateCache {
    inner: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    generation: i64,
    by_type: HashMap<String, (Instant, Arc<Vec<Subscription>>)>,
}

impl Cached {
    /// The candidates of `event_type`, if cached and young enough.
    fn fresh(&self, event_type: &str) -> Option<Arc<Vec<Subscription>>> {
        match self.by_type.get(event_type) {
            Some((read_at, subs)) if read_at.elapsed() < MAX_AGE => Some(subs.clone()),
            _ => None,
        }
    }
}

impl CandidateCache {
    /// The candidates of each of `types`: from the cache while the match generation is unchanged and the
    /// entry young enough, else read from Redis (and kept). When the fan-out checks the generation itself
    /// (one node) and every type is cached, nothing is read.
    ///
    /// # Errors
    /// Redis failure: the caller leaves its batch pending.
    pub async fn get<'a>(
        &self,
        store: &Store,
        types: &[&'a str],
    ) -> Result<Matched<'a>, (&'a str, delivery_model::Error)> {
        if store.fanout_checks_match_generation()
            && let Some(hit) = self.cached(types)
        {
            return Ok(hit);
        }
        let generation = store.match_generation().await.map_err(|e| ("", e))?;
        let mut found = Candidates::new();
        let mut missing = Vec::new();
        {
            let mut cached = self.lock();
            if cached.generation != generation {
                cached.by_type.clear();
                cached.generation = generation;
            }
            for &t in types {
                match cached.fresh(t) {
                    Some(subs) => {
                        found.insert(t, subs);
                    }
                    None => missing.push(t),
                }
            }
        }
        for t in missing {
            let read_at = Instant::now();
            let subs = Arc::new(store.match_candidates(t).await.map_err(|e| (t, e))?);
            let mut cached = self.lock();
            // Kept only if no newer generation was seen meanwhile (the next batch would drop it anyway).
            if cached.generation == generation {
                cached.by_type.insert(t.to_owned(), (read_at, subs.clone()));
            }
            found.insert(t, subs);
        }
        Ok(Matched {
            candidates: found,
            generation,
        })
    }

    /// Every one of `types` from the cache, if each is there and young enough.
    fn cached<'a>(&self, types: &[&'a str]) -> Option<Matched<'a>> {
        let cached = self.lock();
        let candidates = types
            .iter()
            .map(|&t| Some((t, cached.fresh(t)?)))
            .collect::<Option<Candidates<'a>>>()?;
        Some(Matched {
            candidates,
            generation: cached.generation,
        })
    }

    /// Forgets everything: the fan-out found the match generation moved.
    pub fn invalidate(&self) {
        self.lock().by_type.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
