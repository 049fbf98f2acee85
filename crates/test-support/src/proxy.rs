//! A loopback TCP proxy the test owns, for half-open connections (like crates.io's `ChaosProxy`).
//!
//! [`Proxy::start`] listens on a free loopback port and forwards every connection to a target port. Then:
//! - [`Proxy::blackhole`] stops forwarding bytes in both directions on every connection, without closing
//!   any; new connections are still accepted but nothing they send is forwarded. To the client this is a
//!   peer that stopped answering (a dropped route, a dead NAT entry): writes succeed, replies never come.
//! - [`Proxy::restore`] resumes forwarding on every connection; what was held back flows on (as when a
//!   partition heals and TCP retransmits).
//! - [`Proxy::restore_new_only`] forwards new connections again, but those open during the blackhole stay
//!   silent until the proxy is dropped (the path of an old flow never returns, as after a NAT or firewall
//!   lost its state). A client recovers only if it notices and opens a new connection itself.
//!
//! [`Proxy::accepted`] counts connections, so a test can see that clients reconnected. Dropping the proxy
//! closes the listener and every connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Bytes read per copy step.
const CHUNK: usize = 16 * 1024;

/// Which connections forward bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Path {
    /// Forwarding is on (not blackholed).
    open: bool,
    /// Connections numbered below this stay silent for good ([`Proxy::restore_new_only`]).
    dead_below: u64,
}

impl Path {
    fn forwards(self, conn: u64) -> bool {
        self.open && conn >= self.dead_below
    }
}

/// A running proxy; stopped, with all its connections closed, on drop.
pub struct Proxy {
    addr: SocketAddr,
    path: watch::Sender<Path>,
    accepted: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `127.0.0.1:target`.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start(target: u16) -> Self {
        #[expect(clippy::expect_used, reason = "test harness: no port means no test")]
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy listener");
        #[expect(clippy::expect_used, reason = "test harness")]
        let addr = listener.local_addr().expect("proxy address");
        let (path, _) = watch::channel(Path {
            open: true,
            dead_below: 0,
        });
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            target,
            path.clone(),
            accepted.clone(),
            stop.clone(),
        ));
        Self {
            addr,
            path,
            accepted,
            stop,
        }
    }

    /// The proxy's port (point clients here).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops forwarding on every connection, old and new, without closing any.
    pub fn blackhole(&self) {
        self.path.send_modify(|p| p.open = false);
    }

    /// Resumes forwarding on every connection.
    pub fn restore(&self) {
        self.path.send_modify(|p| {
            p.open = true;
            p.dead_below = 0;
        });
    }

    /// Resumes forwarding for connections accepted from now on; every connection accepted before stays
    /// silent (but open) until the proxy is dropped.
    pub fn restore_new_only(&self) {
        let next = self.accepted();
        self.path.send_modify(|p| {
            p.open = true;
            p.dead_below = next;
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: u16,
    path: watch::Sender<Path>,
    accepted: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    loop {
        let client = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => match a {
                Ok((client, _)) => client,
                Err(_) => continue,
            },
        };
        let id = accepted.fetch_add(1, Ordering::SeqCst);
        let path = path.subscribe();
        let stop = stop.clone();
        tokio::spawn(async move {
            // Connect to the target even while blackholed: the client must see an open connection.
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::select! {
                () = stop.cancelled() => {}
                () = copy(cr, sw, id, path.clone()) => {}
                () = copy(sr, cw, id, path) => {}
            }
        });
    }
}

/// Copies `from` to `to` while connection `id` forwards; ends when either side closes (which closes both).
async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    id: u64,
    mut path: watch::Receiver<Path>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        // Not reading while blackholed leaves the bytes in the kernel's buffers, so nothing is lost and
        // nothing gets through; a client's writes still succeed until those buffers fill.
        if path.wait_for(|p| p.forwards(id)).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just before a blackhole are held, not forwarded, until the path returns.
        if path.wait_for(|p| p.forwards(id)).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use super::*;

    /// An echo server on loopback; returns its port.
    async fn echo() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        port
    }

    async fn roundtrip(s: &mut TcpStream, msg: &[u8], within: Duration) -> Option<Vec<u8>> {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        match tokio::time::timeout(within, s.read_exact(&mut got)).await {
            Ok(Ok(_)) => Some(got),
            _ => None,
        }
    }

    #[tokio::test]
    async fn blackhole_holds_bytes_and_restore_releases_them() {
        let proxy = Proxy::start(echo().await).await;
        let mut s = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        let quick = Duration::from_millis(300);
        assert_eq!(
            roundtrip(&mut s, b"one", Duration::from_secs(5)).await,
            Some(b"one".to_vec())
        );

        proxy.blackhole();
        assert_eq!(roundtrip(&mut s, b"two", quick).await, None, "old conn");
        let mut fresh = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        assert_eq!(roundtrip(&mut fresh, b"new", quick).await, None, "new conn");

        proxy.restore();
        let mut held = vec![0u8; 3];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut held))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&held, b"two", "held bytes flow on after restore");
        assert_eq!(proxy.accepted(), 2);
    }

    #[tokio::test]
    async fn restore_new_only_leaves_old_connections_silent() {
        let proxy = Proxy::start(echo().await).await;
        let mut old = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        // The proxy numbers a connection when it accepts it, a moment after the client's connect returns.
        crate::wait::until("the proxy accepted", Duration::from_secs(5), || async {
            (proxy.accepted() == 1).then_some(())
        })
        .await;
        proxy.blackhole();
        proxy.restore_new_only();
        let quick = Duration::from_millis(300);
        assert_eq!(roundtrip(&mut old, b"old", quick).await, None);
        let mut new = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        assert_eq!(
            roundtrip(&mut new, b"new", Duration::from_secs(5)).await,
            Some(b"new".to_vec())
        );
    }
}
