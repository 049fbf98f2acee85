//! What the receiver answers: the [`ChallengeMode`] for challenges, scripted [`Response`]s for deliveries,
//! and the default answer behind them.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::request::{HEADER_CALLBACK, RecordedRequest};

/// How the receiver answers verification challenges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChallengeMode {
    /// 200 with `{"challenge": <the challenge from the request body>}`: verification passes.
    #[default]
    Echo,
    /// 200 with an empty body: verification fails.
    Ignore,
    /// 200 with `{"challenge":"wrong-value"}`: verification fails.
    Wrong,
    /// This status with an empty body.
    Status(u16),
}

/// A scripted answer to one delivery.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// How long to wait before answering (the request is recorded on arrival, before the wait).
    pub delay: Duration,
}

impl Default for Response {
    fn default() -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: Duration::ZERO,
        }
    }
}

impl Response {
    /// An empty answer with `status`.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    /// Adds a response header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Answers only after `delay`.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// What the receiver does, changed by the test through [`Receiver`](super::Receiver)'s methods.
pub(super) struct Behaviour {
    pub(super) challenge: ChallengeMode,
    /// Answers for the next deliveries, first in first out.
    pub(super) scripted: VecDeque<Response>,
    pub(super) default_status: u16,
    /// Add `X-TMI-Callback: async` to default 200 answers.
    pub(super) callback_async: bool,
    pub(super) default_delay: Duration,
}

impl Default for Behaviour {
    /// Echo challenges; answer deliveries 200 at once, without `X-TMI-Callback`.
    fn default() -> Self {
        Self {
            challenge: ChallengeMode::Echo,
            scripted: VecDeque::new(),
            default_status: 200,
            callback_async: false,
            default_delay: Duration::ZERO,
        }
    }
}

/// Decides the answer to `req` (consuming a scripted response for deliveries).
pub(super) fn answer(b: &mut Behaviour, req: &RecordedRequest) -> Response {
    if req.is_challenge() {
        let json = |v: serde_json::Value| {
            Response::status(200)
                .header("content-type", "application/json")
                .body(v.to_string())
        };
        return match b.challenge {
            ChallengeMode::Echo => {
                let challenge = req
                    .json()
                    .and_then(|v| {
                        v.get("challenge")
                            .and_then(|c| c.as_str())
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                json(serde_json::json!({ "challenge": challenge }))
            }
            ChallengeMode::Ignore => Response::status(200),
            ChallengeMode::Wrong => json(serde_json::json!({ "challenge": "wrong-value" })),
            ChallengeMode::Status(s) => Response::status(s),
        };
    }
    if let Some(scripted) = b.scripted.pop_front() {
        return scripted;
    }
    let mut r = Response::status(b.default_status).delay(b.default_delay);
    if b.callback_async && b.default_status == 200 {
        r = r.header(HEADER_CALLBACK, "async");
    }
    r
}
