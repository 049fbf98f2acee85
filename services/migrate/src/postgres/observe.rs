//! Whether a session really runs over TLS, seen from the client side.
//!
//! tokio-postgres falls back to plaintext under `sslmode=prefer` when the server (or a man-in-the-middle
//! speaking for it) answers "no TLS", and says nothing. [`Observed`] wraps the TLS connector and records
//! when a handshake is started: a session that connected without one is plaintext. The client's own view is
//! the one to trust: a man-in-the-middle could rewrite what the server reports (`pg_stat_ssl`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

/// A [`MakeTlsConnect`] that records whether any TLS handshake was started.
pub struct Observed<M> {
    inner: M,
    handshake: Arc<AtomicBool>,
}

impl<M> Observed<M> {
    /// Wraps `inner`; [`TlsSeen::used`] of the returned flag tells whether TLS was used.
    pub fn new(inner: M) -> (Self, TlsSeen) {
        let handshake = Arc::new(AtomicBool::new(false));
        (
            Self {
                inner,
                handshake: handshake.clone(),
            },
            TlsSeen(handshake),
        )
    }
}

/// Read side of [`Observed`].
#[derive(Clone, Debug)]
pub struct TlsSeen(Arc<AtomicBool>);

impl TlsSeen {
    /// Whether a TLS handshake was started (the connection succeeded, so it completed).
    pub fn used(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl<S, M: MakeTlsConnect<S>> MakeTlsConnect<S> for Observed<M> {
    type Stream = M::Stream;
    type TlsConnect = ObservedConnect<M::TlsConnect>;
    type Error = M::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(ObservedConnect {
            inner: self.inner.make_tls_connect(domain)?,
            handshake: self.handshake.clone(),
        })
    }
}

/// The per-connection side of [`Observed`].
pub struct ObservedConnect<T> {
    inner: T,
    handshake: Arc<AtomicBool>,
}

impl<S, T: TlsConnect<S>> TlsConnect<S> for ObservedConnect<T> {
    type Stream = T::Stream;
    type Error = T::Error;
    type Future = T::Future;

    fn connect(self, stream: S) -> Self::Future {
        // Called only once the server agreed to TLS (it answered `S` to the SSLRequest).
        self.handshake.store(true, Ordering::Release);
        self.inner.connect(stream)
    }
}
