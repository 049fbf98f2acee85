//! `Debug` for the rows that carry a receiver's secret, by hand so that a secret never reaches a log line
//! or an error through `{:?}` (issue #16 item 4).

use crate::convert::SubscriptionRow;

impl std::fmt::Debug for SubscriptionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("SubscriptionRow")
            .field("id", &self.id)
            .field("owner_internal_uuid", &self.owner_internal_uuid)
            .field("threat_model_id", &self.threat_model_id)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &redact(&self.secret))
            .field("status", &self.status)
            .field("challenge", &redact(&self.challenge))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_secret_and_challenge() {
        let row = SubscriptionRow {
            secret: Some("receiver-secret-0123456789".into()),
            challenge: Some("challenge-token-0123".into()),
            ..SubscriptionRow::default()
        };
        let printed = format!("{row:?}");
        assert!(!printed.contains("receiver-secret"), "{printed}");
        assert!(!printed.contains("challenge-token"), "{printed}");
    }
}
