//! Slow clients (issue #16): a trickled body or head is cut off with 408 within the configured time, while
//! ordinary requests keep being served.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::{TestApp, admin_token};

const BODY_TIMEOUT_MS: u64 = 1500;
const HEADER_TIMEOUT_MS: u64 = 1000;

/// Sends `head` at once, then one byte of `trickle` per second until the server answers; returns the
/// answer's status line and how long after the head it came.
async fn trickle(base: &str, head: String, trickle: &[u8]) -> (String, Duration) {
    let addr = base.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(head.as_bytes()).await.expect("head");
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut answer = Vec::new();
    let mut buf = [0_u8; 1024];
    let mut bytes = trickle.iter();
    loop {
        tokio::select! {
            n = conn.read(&mut buf) => {
                let n = n.unwrap_or(0);
                answer.extend_from_slice(&buf[..n]);
                if n == 0 || answer.windows(2).any(|w| w == b"\r\n") {
                    break;
                }
            }
            _ = tick.tick() => {
                if let Some(b) = bytes.next() {
                    // The server may already have closed its side; the answer is read above.
                    let _ = conn.write_all(&[*b]).await;
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no answer within 15 s"
        );
    }
    let text = String::from_utf8_lossy(&answer);
    (
        text.lines().next().unwrap_or_default().to_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_body_and_slow_head_get_408_while_others_are_served() {
    let app = TestApp::start_with(|s| {
        s.api.body_read_timeout_ms = BODY_TIMEOUT_MS;
        s.api.header_read_timeout_ms = HEADER_TIMEOUT_MS;
    })
    .await;
    let body = r#"{"event_type":"team.created","owner_id":"someone-who-types-slowly"}"#;
    let head = format!(
        "POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        admin_token(),
        body.len()
    );
    let slow_body = trickle(&app.base, head, body.as_bytes());
    // Ordinary requests, on the same (single) worker, while the slow body trickles.
    let others = async {
        for _ in 0..3 {
            let res = app
                .post("/events")
                .bearer(&admin_token())
                .json(&json!({"event_type": "team.created"}))
                .send()
                .await;
            assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
            assert_eq!(app.get("/healthz").send().await.status, StatusCode::OK);
        }
    };
    let ((status, took), ()) = tokio::join!(slow_body, others);
    assert!(status.contains(" 408 "), "slow body answered {status:?}");
    assert!(
        took >= Duration::from_millis(BODY_TIMEOUT_MS - 100) && took < Duration::from_secs(4),
        "cut off after {took:?}"
    );
    assert_eq!(
        app.stream_entries(app.store.keys().events_stream())
            .await
            .len(),
        3,
        "only the ordinary requests were published"
    );

    // A head that never completes: actix's own request timeout.
    let (status, took) = trickle(
        &app.base,
        "GET /healthz HTTP/1.1\r\n".into(),
        b"Host: slow.example\r\n",
    )
    .await;
    assert!(status.contains(" 408 "), "slow head answered {status:?}");
    assert!(took < Duration::from_secs(4), "cut off after {took:?}");
}
