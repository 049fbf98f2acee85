//! Per-destination-host limits on requests in flight, adaptive, so that a fast host gets the concurrency it
//! can use while a slow one cannot hold every slot of the worker; and when a delivery that found its host
//! saturated is tried again.
//!
//! Every host starts at the configured limit (`worker.max_in_flight_per_host`, the *floor*). The limit then
//! follows what the host's answers show, additive increase and multiplicative decrease:
//! - **grow**: each healthy answer (a 2xx–4xx other than 429, faster than [`SLOW`]) that comes back while
//!   attempts for the host are waiting adds one slot, up to the *ceiling*: the worker's slots minus one
//!   floor, so other hosts always keep at least a floor's worth;
//! - **shrink**: a slow answer, a timeout, a connection failure, a 5xx or a 429 halves the limit, never below
//!   the floor.
//!
//! The argument is slot-time: a slot held by a fast host's request frees within milliseconds, so letting that
//! host use many slots costs the others almost nothing; a slow host's request holds its slot for up to the
//! request timeout, so a slow host stays at its floor. Measured by `make bench` (issue #21): with ten
//! subscriptions on one fast host, a fixed 64 slots deferred a third of the work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use delivery_model::time::{Micros, now_micros};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::micros;

/// A delivery deferred because its host has no free slot is retried after about this long.
const DEFER: Duration = Duration::from_millis(250);

/// An answer slower than this marks its host slow: its limit halves instead of growing.
pub(super) const SLOW: Duration = Duration::from_millis(500);

/// When a deferred delivery is tried again: after [`DEFER`] and up to 250 ms of jitter, so the deliveries
/// deferred together do not all come back at once.
pub(super) fn deferred_until() -> Micros {
    now_micros() + micros(DEFER) + i64::from(rand::random::<u16>() % 250) * 1000
}

/// The bounds of every host's limit.
#[derive(Clone, Copy, Debug)]
pub(super) struct GateBounds {
    /// Where a host starts and what a slow host keeps: `worker.max_in_flight_per_host`.
    pub floor: usize,
    /// The most a fast host may grow to.
    pub ceiling: usize,
}

impl GateBounds {
    /// A worker with `max_in_flight` slots and `per_host` as the floor: the ceiling leaves one floor's worth
    /// of slots to other hosts.
    pub(super) fn new(max_in_flight: usize, per_host: usize) -> Self {
        let floor = per_host.max(1);
        Self {
            floor,
            ceiling: max_in_flight.saturating_sub(floor).max(floor),
        }
    }
}

/// Per-destination-host limits for this process.
///
/// A host may have `limit` requests in flight and as many attempts waiting for one of those slots; an
/// attempt beyond that is deferred (rescheduled shortly, no attempt consumed). So a host holds at most
/// `2 × limit` of the worker's slots, and a slow host, whose limit is the floor, at most `2 × floor`.
pub(super) struct HostSlots {
    bounds: GateBounds,
    hosts: Mutex<HashMap<String, Arc<HostGate>>>,
}

struct HostGate {
    sending: Arc<Semaphore>,
    state: Mutex<GateState>,
}

struct GateState {
    /// Requests this host may have in flight now.
    limit: usize,
    /// Attempts waiting for one of those slots.
    waiting: usize,
    /// Permits to take out of circulation as they come back: a shrink larger than the free permits.
    debt: usize,
}

/// A slot of a host, held from before the request until its outcome is written. Dropping it frees the slot.
pub(super) struct HostSlot {
    gate: Arc<HostGate>,
    bounds: GateBounds,
    permit: Option<OwnedSemaphorePermit>,
}

/// What one answer tells the host's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Health {
    /// Answered in time with anything but a 5xx or a 429.
    Healthy,
    /// No answer, a 5xx, a 429, or an answer slower than [`SLOW`].
    Struggling,
}

impl Health {
    /// The health an answer shows: `answered` (with its status) or not, and how long it took.
    pub(super) fn of(status: Option<u16>, took: Duration) -> Self {
        match status {
            Some(s) if s < 500 && s != 429 && took < SLOW => Health::Healthy,
            _ => Health::Struggling,
        }
    }
}

impl HostSlots {
    pub(super) fn new(bounds: GateBounds) -> Self {
        Self {
            bounds,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// A sending slot for `host`, waiting at most `wait`. `None`: the host is saturated (as many waiting as
    /// its limit, or no slot within `wait`); the caller defers the delivery.
    pub(super) async fn acquire(&self, host: &str, wait: Duration) -> Option<HostSlot> {
        let gate = self.gate(host);
        let slot = |permit| HostSlot {
            gate: gate.clone(),
            bounds: self.bounds,
            permit: Some(permit),
        };
        if let Ok(p) = gate.sending.clone().try_acquire_owned() {
            return Some(slot(p));
        }
        let _waiting = Waiting::enter(&gate)?;
        let permit = tokio::time::timeout(wait, gate.sending.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        Some(slot(permit))
    }

    /// The current limit of `host` (for tests and logs).
    #[cfg(test)]
    fn limit(&self, host: &str) -> usize {
        self.gate(host).lock().limit
    }

    fn gate(&self, host: &str) -> Arc<HostGate> {
        let mut map = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() > 10_000 {
            // Forget idle hosts so the map stays bounded (a forgotten host starts again at the floor).
            map.retain(|_, g| Arc::strong_count(g) > 1);
        }
        map.entry(host.to_owned())
            .or_insert_with(|| {
                Arc::new(HostGate {
                    sending: Arc::new(Semaphore::new(self.bounds.floor)),
                    state: Mutex::new(GateState {
                        limit: self.bounds.floor,
                        waiting: 0,
                        debt: 0,
                    }),
                })
            })
            .clone()
    }
}

impl HostGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One attempt counted as waiting for its host while it lives.
struct Waiting<'a>(&'a HostGate);

impl<'a> Waiting<'a> {
    /// `None` when as many attempts as the host's limit already wait.
    fn enter(gate: &'a HostGate) -> Option<Self> {
        let mut s = gate.lock();
        if s.waiting >= s.limit {
            return None;
        }
        s.waiting += 1;
        Some(Self(gate))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.waiting = s.waiting.saturating_sub(1);
    }
}

impl HostSlot {
    /// Feeds one answer into the host's limit (see the module doc).
    pub(super) fn observe(&self, health: Health) {
        let mut s = self.gate.lock();
        match health {
            Health::Healthy if s.waiting > 0 && s.limit < self.bounds.ceiling => {
                s.limit += 1;
                if s.debt > 0 {
                    s.debt -= 1;
                } else {
                    self.gate.sending.add_permits(1);
                }
            }
            Health::Healthy => {}
            Health::Struggling => {
                let target = (s.limit / 2).max(self.bounds.floor);
                let cut = s.limit - target;
                if cut > 0 {
                    s.limit = target;
                    // Free permits go at once; the rest as the requests holding them end.
                    let forgotten = self.gate.sending.forget_permits(cut);
                    s.debt += cut - forgotten;
                }
            }
        }
    }
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let mut s = self.gate.lock();
        if s.debt > 0 {
            s.debt -= 1;
            permit.forget();
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_millis(2);
    const NO_WAIT: Duration = Duration::ZERO;

    fn slots(max_in_flight: usize, per_host: usize) -> HostSlots {
        HostSlots::new(GateBounds::new(max_in_flight, per_host))
    }

    #[test]
    fn bounds_leave_a_floor_to_other_hosts() {
        let b = GateBounds::new(256, 64);
        assert_eq!((b.floor, b.ceiling), (64, 192));
        // A floor of more than half the slots leaves no room to grow.
        let b = GateBounds::new(256, 256);
        assert_eq!((b.floor, b.ceiling), (256, 256));
    }

    #[test]
    fn health_of_answers() {
        assert_eq!(Health::of(Some(200), FAST), Health::Healthy);
        assert_eq!(Health::of(Some(404), FAST), Health::Healthy);
        assert_eq!(Health::of(Some(429), FAST), Health::Struggling);
        assert_eq!(Health::of(Some(503), FAST), Health::Struggling);
        assert_eq!(Health::of(None, FAST), Health::Struggling);
        assert_eq!(Health::of(Some(200), SLOW), Health::Struggling);
    }

    #[tokio::test]
    async fn a_host_at_its_limit_queues_then_defers() {
        let hosts = slots(16, 2);
        let a = hosts.acquire("h", NO_WAIT).await.unwrap();
        let _b = hosts.acquire("h", NO_WAIT).await.unwrap();
        // No slot within the wait: deferred.
        assert!(hosts.acquire("h", NO_WAIT).await.is_none());
        // Another host is not affected.
        assert!(hosts.acquire("other", NO_WAIT).await.is_some());
        // A waiter gets the slot that frees.
        let waiter = tokio::spawn({
            let hosts = Arc::new(hosts);
            async move { hosts.acquire("h", Duration::from_secs(5)).await.is_some() }
        });
        tokio::task::yield_now().await;
        drop(a);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn a_fast_host_with_waiting_work_grows_to_the_ceiling_and_no_further() {
        let hosts = Arc::new(slots(16, 2));
        let ceiling = GateBounds::new(16, 2).ceiling;
        assert_eq!(hosts.limit("fast"), 2);
        // Keep one attempt waiting while answers come back healthy.
        let mut held: Vec<HostSlot> = Vec::new();
        for _ in 0..2 {
            held.push(hosts.acquire("fast", NO_WAIT).await.unwrap());
        }
        let waiter = {
            let hosts = hosts.clone();
            tokio::spawn(async move { hosts.acquire("fast", Duration::from_secs(5)).await })
        };
        while hosts.gate("fast").lock().waiting == 0 {
            tokio::task::yield_now().await;
        }
        held[0].observe(Health::Healthy);
        // The new slot goes to the waiter at once.
        held.push(waiter.await.unwrap().unwrap());
        assert_eq!(hosts.limit("fast"), 3);
        // With demand, every healthy answer adds one, up to the ceiling.
        hosts.gate("fast").lock().waiting = 1;
        for _ in 0..100 {
            held[0].observe(Health::Healthy);
        }
        hosts.gate("fast").lock().waiting = 0;
        assert_eq!(hosts.limit("fast"), ceiling);
        let mut extra = Vec::new();
        while let Some(s) = hosts.acquire("fast", NO_WAIT).await {
            extra.push(s);
        }
        assert_eq!(
            held.len() + extra.len(),
            ceiling,
            "the limit is what can be held"
        );
    }

    #[tokio::test]
    async fn without_waiting_work_the_limit_does_not_grow() {
        let hosts = slots(16, 2);
        let s = hosts.acquire("h", NO_WAIT).await.unwrap();
        for _ in 0..10 {
            s.observe(Health::Healthy);
        }
        assert_eq!(hosts.limit("h"), 2);
    }

    #[tokio::test]
    async fn a_struggling_host_halves_back_to_the_floor_even_with_requests_in_flight() {
        let hosts = slots(64, 4);
        hosts.gate("h").lock().waiting = 1;
        let s = hosts.acquire("h", NO_WAIT).await.unwrap();
        for _ in 0..28 {
            s.observe(Health::Healthy);
        }
        hosts.gate("h").lock().waiting = 0;
        assert_eq!(hosts.limit("h"), 32);
        // Hold 20 of the 32 slots, then the host turns slow.
        let mut held = vec![s];
        for _ in 0..19 {
            held.push(hosts.acquire("h", NO_WAIT).await.unwrap());
        }
        held[0].observe(Health::Struggling);
        assert_eq!(hosts.limit("h"), 16);
        held[0].observe(Health::Struggling);
        held[0].observe(Health::Struggling);
        assert_eq!(hosts.limit("h"), 4, "never below the floor");
        // 20 are held over a limit of 4: nothing new until 17 of them are back.
        assert!(hosts.acquire("h", NO_WAIT).await.is_none());
        held.truncate(4);
        assert!(hosts.acquire("h", NO_WAIT).await.is_none());
        held.truncate(3);
        let one = hosts.acquire("h", NO_WAIT).await;
        assert!(one.is_some());
        assert!(hosts.acquire("h", NO_WAIT).await.is_none());
    }
}
