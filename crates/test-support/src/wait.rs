//! Waiting for eventual outcomes with a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `timeout`.
///
/// # Panics
/// When the condition does not hold within `timeout`.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that `check` stays `false` for the whole of `window` (for "nothing arrives" assertions).
///
/// # Panics
/// When `check` becomes true within `window`.
pub async fn never<F, Fut>(what: &str, window: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        if check().await {
            panic!("unexpected: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
