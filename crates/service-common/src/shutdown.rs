//! The process's one shutdown signal.
//!
//! [`token`] returns a `CancellationToken` cancelled on the first SIGTERM or SIGINT. It is passed down
//! explicitly (never read from a global), so a test can stop one loop without signalling the process.

use tokio_util::sync::CancellationToken;

/// A token cancelled when the process receives SIGTERM or SIGINT.
pub fn token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received, draining");
        t.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Sleeps for `d` unless `token` is cancelled first. Returns `false` when cancelled.
pub async fn sleep(token: &CancellationToken, d: std::time::Duration) -> bool {
    token
        .run_until_cancelled(tokio::time::sleep(d))
        .await
        .is_some()
}
