//! A subscription's verification challenge: TMI's request, TMI's rule for a right answer, and the
//! subscription's status afterwards (active, or another try later until the tries run out).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use delivery_model::event::CHALLENGE;
use delivery_model::ids::SubscriptionId;
use delivery_model::store::ChallengeFailure;
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::now_micros;
use delivery_model::trace::TraceContext;
use http::StatusCode;

use super::{Dispatcher, Handled, header, micros};
use crate::client::{Answer, Limits};

/// TMI's challenge limits: 5 s to the headers, 10 s in all, 1 KiB of body.
const CHALLENGE_LIMITS: Limits = Limits {
    header_timeout: Duration::from_secs(5),
    total_timeout: Duration::from_secs(10),
    max_body: 1024,
};

/// How a challenge ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChallengeEnd {
    /// Answered right: the subscription is active.
    Verified,
    /// Not answered right; it will be sent again.
    Failed,
    /// Not answered right, and that was the last try.
    Exhausted,
}

impl ChallengeEnd {
    /// Its label in `hookline_worker_challenges_total` (and in the log).
    fn label(self) -> &'static str {
        match self {
            ChallengeEnd::Verified => "verified",
            ChallengeEnd::Failed => "failed",
            ChallengeEnd::Exhausted => "exhausted",
        }
    }
}

/// TMI's rule: exactly HTTP 200, a JSON object whose values are all strings, echoing the challenge.
fn challenge_answered(a: &Answer, challenge: &str) -> bool {
    if a.status != StatusCode::OK {
        return false;
    }
    match serde_json::from_slice::<HashMap<String, String>>(&a.body) {
        Ok(m) => m.get("challenge").is_some_and(|c| c == challenge),
        Err(_) => false,
    }
}

impl Dispatcher {
    /// Sends a subscription's verification challenge and records the result.
    ///
    /// # Errors
    /// Redis failure: the entry stays pending.
    /// Runs inside the challenge's span (`spans::challenge`); `trace` goes on with the next challenge.
    pub(super) async fn challenge(
        &self,
        stream: &str,
        entry_id: &str,
        id: SubscriptionId,
        trace: Option<TraceContext>,
    ) -> delivery_model::Result<Handled> {
        let sub = match self.store.get_subscription(id).await? {
            Some(s) if s.status == SubscriptionStatus::PendingVerification => s,
            _ => {
                self.store.ack_queue(stream, &[entry_id.to_owned()]).await?;
                return Ok(Handled::Acked);
            }
        };
        let verified = self.send_challenge(id, &sub).await;
        let end = self.record_challenge(id, verified, trace.as_ref()).await?;
        tracing::Span::current().record("challenge.result", end.label());
        self.metrics
            .challenges
            .with_label_values(&[end.label()])
            .inc();
        if end == ChallengeEnd::Verified {
            tracing::info!("subscription verified");
        } else {
            tracing::info!(result = end.label(), "challenge failed");
        }
        self.store.ack_queue(stream, &[entry_id.to_owned()]).await?;
        Ok(Handled::Acked)
    }

    /// Sends the challenge; whether it was answered right. A refused target or a failed request is logged
    /// here and counts as a wrong answer.
    async fn send_challenge(&self, id: SubscriptionId, sub: &Subscription) -> bool {
        let challenge = sub.challenge.clone().unwrap_or_default();
        let uri = match self.client.vet(&sub.url) {
            Ok(uri) => uri,
            Err(e) => {
                self.metrics.ssrf_refusals.inc();
                tracing::info!(error = %e, "challenge target refused");
                return false;
            }
        };
        // Keys in TMI's (sorted) order.
        let body = serde_json::json!({"challenge": challenge, "type": CHALLENGE}).to_string();
        let headers = header::challenge(&self.cfg.user_agent, id);
        match self
            .client
            .post(uri, headers, Bytes::from(body), CHALLENGE_LIMITS)
            .await
        {
            Ok(a) => challenge_answered(&a, &challenge),
            Err(e) => {
                tracing::info!(error = %e, "challenge request failed");
                false
            }
        }
    }

    /// Writes the challenge's result: the subscription becomes active, or its failure is counted and
    /// another try is scheduled (unless that was the last).
    ///
    /// # Errors
    /// Redis failure.
    async fn record_challenge(
        &self,
        id: SubscriptionId,
        verified: bool,
        trace: Option<&TraceContext>,
    ) -> delivery_model::Result<ChallengeEnd> {
        let now = now_micros();
        if verified {
            self.store
                .set_subscription_status(
                    id,
                    SubscriptionStatus::PendingVerification,
                    SubscriptionStatus::Active,
                    now,
                    true,
                )
                .await?;
            return Ok(ChallengeEnd::Verified);
        }
        let retry_at_ms = (now + micros(self.cfg.challenge_interval)) / 1000;
        let r = self
            .store
            .challenge_failed(id, trace, self.cfg.max_challenges, retry_at_ms, now)
            .await?;
        Ok(if r == ChallengeFailure::Exhausted {
            ChallengeEnd::Exhausted
        } else {
            ChallengeEnd::Failed
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::answer;

    #[test]
    fn challenge_rules() {
        assert!(challenge_answered(
            &answer(200, r#"{"challenge":"abc"}"#),
            "abc"
        ));
        assert!(challenge_answered(
            &answer(200, r#"{"challenge":"abc","note":"x"}"#),
            "abc"
        ));
        assert!(!challenge_answered(
            &answer(200, r#"{"challenge":"abc","ok":true}"#),
            "abc"
        ));
        assert!(!challenge_answered(
            &answer(201, r#"{"challenge":"abc"}"#),
            "abc"
        ));
        assert!(!challenge_answered(
            &answer(200, r#"{"challenge":"wrong-value"}"#),
            "abc"
        ));
        assert!(!challenge_answered(&answer(200, ""), "abc"));
    }
}
