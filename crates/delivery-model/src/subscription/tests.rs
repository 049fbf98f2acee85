use super::*;

pub(crate) fn sample() -> Subscription {
    Subscription {
        id: SubscriptionId::new_v4(),
        owner_id: "owner-1".into(),
        threat_model_id: None,
        name: "n".into(),
        url: "https://example.com/hook".into(),
        events: vec!["threat_model.created".into()],
        secret: Some("0123456789abcdef".into()),
        status: SubscriptionStatus::Active,
        challenge: Some("c".into()),
        challenges_sent: 1,
        timeout_count: 0,
        created_at: 10,
        modified_at: 11,
        last_successful_use: None,
        publication_failures: 0,
        operator_pinned: false,
        signature_scheme: SignatureScheme::Standard,
        signing_key: Some(Secret::new("whsk_signing-key-material")),
        previous_secret: Some(Secret::new("previous-secret-material")),
        previous_secret_until: Some(100),
        timestamped_callbacks: true,
        timestamp_header: true,
        disabled_reason: Some(DisabledReason::Gone),
        disabled_at: Some(12),
        rate_limit: Some(RateLimit {
            per_second: 50,
            burst: 5,
        }),
        max_in_flight: Some(2),
        ordering: Some(crate::lane::Ordering {
            key: Some(crate::lane::OrderingKey::ThreatModelId),
            on_failure: crate::lane::LaneOnFailure::Block,
        }),
    }
}

#[test]
fn hash_round_trip() {
    let s = sample();
    let h: HashMap<String, String> = s
        .to_fields()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(Subscription::from_hash(&h).ok(), Some(s));
}

#[test]
fn records_without_a_scheme_are_tmi() {
    let mut h: HashMap<String, String> = sample()
        .to_fields()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    h.remove(field::SIGNATURE_SCHEME);
    let s = Subscription::from_hash(&h).map(|s| s.signature_scheme);
    assert_eq!(s.ok(), Some(SignatureScheme::Tmi));
    h.insert(field::SIGNATURE_SCHEME.into(), "svix".into());
    assert!(Subscription::from_hash(&h).is_err());
}

#[test]
fn debug_redacts_the_secret_and_challenge() {
    let mut s = sample();
    s.challenge = Some("challenge-token-xyz".into());
    let printed = format!("{s:?}");
    assert!(!printed.contains("0123456789abcdef"), "{printed}");
    assert!(!printed.contains("challenge-token-xyz"), "{printed}");
    assert!(!printed.contains("signing-key-material"), "{printed}");
    assert!(!printed.contains("previous-secret-material"), "{printed}");
    assert!(printed.contains("<redacted>"), "{printed}");
}

#[test]
fn the_previous_secret_lives_until_its_grace_period_ends() {
    let s = sample();
    assert_eq!(
        s.live_secrets(99),
        vec!["0123456789abcdef", "previous-secret-material"]
    );
    assert_eq!(s.live_secrets(100), vec!["0123456789abcdef"]);
    let unsigned = Subscription {
        secret: None,
        ..sample()
    };
    assert_eq!(unsigned.live_secrets(99), vec!["previous-secret-material"]);
}

#[test]
fn matching_rules() {
    let mut s = sample();
    assert!(s.matches("threat_model.created", None, None, false));
    assert!(!s.matches("threat_model.updated", None, None, false));
    s.threat_model_id = Some("tm1".into());
    assert!(s.matches("threat_model.created", Some("tm1"), None, false));
    assert!(!s.matches("threat_model.created", Some("tm2"), None, false));
    assert!(!s.matches("threat_model.created", None, None, false));
    assert!(!s.matches("threat_model.created", Some("tm1"), Some("someone"), true));
    assert!(s.matches("threat_model.created", Some("tm1"), Some("owner-1"), true));
    s.events = vec!["*".into()];
    assert!(s.matches("system_audit.admin_write", None, None, true));
    s.status = SubscriptionStatus::PendingVerification;
    assert!(!s.matches("threat_model.created", Some("tm1"), Some("owner-1"), false));
}
