//! Per-destination-host limits on requests in flight, so that one slow host cannot hold every slot of the
//! worker; and when a delivery that found its host saturated is tried again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use delivery_model::time::{Micros, now_micros};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::micros;

/// A delivery deferred because its host has no free slot is retried after about this long.
const DEFER: Duration = Duration::from_millis(250);

/// When a deferred delivery is tried again: after [`DEFER`] and up to 250 ms of jitter, so the deliveries
/// deferred together do not all come back at once.
pub(super) fn deferred_until() -> Micros {
    now_micros() + micros(DEFER) + i64::from(rand::random::<u16>() % 250) * 1000
}

/// Per-destination-host limits for this process.
///
/// A host may have `per_host` requests in flight and as many attempts waiting for one of those slots; an
/// attempt beyond that is deferred (rescheduled shortly, no attempt consumed). So one slow host holds at
/// most `2 × per_host` of the worker's slots, and the others keep flowing.
#[derive(Default)]
pub(super) struct HostSlots {
    hosts: Mutex<HashMap<String, Arc<HostGate>>>,
}

struct HostGate {
    sending: Arc<Semaphore>,
    waiting: Semaphore,
}

impl HostSlots {
    /// A sending slot for `host`, waiting at most `wait`. `None`: the host is saturated (too many waiting,
    /// or no slot within `wait`); the caller defers the delivery.
    pub(super) async fn acquire(
        &self,
        host: &str,
        per_host: usize,
        wait: Duration,
    ) -> Option<OwnedSemaphorePermit> {
        let gate = self.gate(host, per_host);
        if let Ok(p) = gate.sending.clone().try_acquire_owned() {
            return Some(p);
        }
        let _waiting = gate.waiting.try_acquire().ok()?;
        tokio::time::timeout(wait, gate.sending.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    fn gate(&self, host: &str, per_host: usize) -> Arc<HostGate> {
        let mut map = self
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 10_000 {
            // Forget idle hosts so the map stays bounded.
            map.retain(|_, g| g.sending.available_permits() < per_host);
        }
        map.entry(host.to_owned())
            .or_insert_with(|| {
                Arc::new(HostGate {
                    sending: Arc::new(Semaphore::new(per_host)),
                    waiting: Semaphore::new(per_host),
                })
            })
            .clone()
    }
}
