//! The conversion rules, row by row.

use super::*;

const DAY_US: i64 = 86_400_000_000;
const WEEK: Duration = Duration::from_secs(7 * 86_400);

#[test]
fn string_arrays_as_tmi_writes_and_reads_them() {
    let ok = |t: &str| parse_string_array(t).unwrap_or_else(|e| panic!("{t}: {e}"));
    assert_eq!(ok(r#"["a.created","b.*"]"#), ["a.created", "b.*"]);
    assert_eq!(ok("[]"), Vec::<String>::new());
    assert_eq!(ok(""), Vec::<String>::new());
    assert_eq!(ok("{a,b}"), ["a", "b"]);
    assert_eq!(ok("{}"), Vec::<String>::new());
    assert_eq!(ok(r#"{"x y", z ,"q\"uote"}"#), ["x y", "z", "q\"uote"]);
    for bad in [
        "[\"a\",",
        "[1,2]",
        "a,b",
        "{a,{b}}",
        "{a,,b}",
        "{NULL}",
        r#"{"a"b}"#,
    ] {
        assert!(parse_string_array(bad).is_err(), "{bad}");
    }
}

fn sub_row() -> SubscriptionRow {
    SubscriptionRow {
        id: "550e8400-e29b-41d4-a716-446655440000".into(),
        owner_internal_uuid: "owner-1".into(),
        name: "n".into(),
        url: "https://example.com/hook".into(),
        events: r#"["threat_model.created"]"#.into(),
        status: Some("active".into()),
        challenges_sent: Some(1),
        ..SubscriptionRow::default()
    }
}

#[test]
fn subscription_rows() {
    let s = subscription(&sub_row()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.status, SubscriptionStatus::Active);
    assert_eq!(s.challenges_sent, 1);
    assert_eq!(s.secret, None);
    let mut r = sub_row();
    r.status = Some("paused".into());
    assert!(subscription(&r).is_err_and(|e| e.contains("unknown status")));
    let mut r = sub_row();
    r.id = "not-a-uuid".into();
    assert!(subscription(&r).is_err_and(|e| e.contains("not a UUID")));
    let mut r = sub_row();
    r.events = "threat_model.created".into();
    assert!(subscription(&r).is_err_and(|e| e.starts_with("events:")));
    let mut r = sub_row();
    r.timeout_count = Some(-1);
    assert!(subscription(&r).is_err());
}

fn delivery_row(status: &str, created_at: Micros) -> DeliveryRow {
    DeliveryRow {
        id: "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b".into(),
        subscription_id: "550e8400-e29b-41d4-a716-446655440000".into(),
        event_type: "threat_model.created".into(),
        payload: r#"{"a": 1}"#.into(),
        status: Some(status.into()),
        attempts: Some(2),
        created_at,
        ..DeliveryRow::default()
    }
}

#[test]
fn pending_rows_are_enqueued_or_scheduled() {
    let now = 100 * DAY_US;
    let plan = delivery(&delivery_row("pending", now - 1000), now, WEEK);
    let Ok(DeliveryPlan::Import(r, LegacyPlacement::Enqueue)) = plan else {
        panic!("{plan:?}")
    };
    assert_eq!(r.status, DeliveryStatus::Pending);
    assert_eq!(r.attempts, 2);
    assert_eq!(r.payload, r#"{"a": 1}"#);

    let mut row = delivery_row("pending", now - 1000);
    row.next_retry_at = Some(now + 60_000_000);
    let plan = delivery(&row, now, WEEK);
    assert!(
        matches!(&plan, Ok(DeliveryPlan::Import(r, LegacyPlacement::Schedule { due_ms }))
            if *due_ms == (now + 60_000_000) / 1000 && r.next_retry_at == Some(now + 60_000_000)),
        "{plan:?}"
    );
    row.next_retry_at = Some(now - 5);
    assert!(matches!(
        delivery(&row, now, WEEK),
        Ok(DeliveryPlan::Import(r, LegacyPlacement::Enqueue)) if r.next_retry_at.is_none()
    ));
}

#[test]
fn terminal_rows_keep_what_is_left_of_their_ttl() {
    let now = 100 * DAY_US;
    let mut row = delivery_row("delivered", now - 3 * DAY_US);
    row.delivered_at = Some(now - 2 * DAY_US);
    let plan = delivery(&row, now, WEEK);
    assert!(
        matches!(&plan, Ok(DeliveryPlan::Import(r, LegacyPlacement::Keep { ttl }))
            if *ttl == Duration::from_secs(5 * 86_400) && r.delivered_at == row.delivered_at),
        "{plan:?}"
    );
    let old = delivery_row("failed", now - 8 * DAY_US);
    assert_eq!(delivery(&old, now, WEEK), Ok(DeliveryPlan::TooOld));
    let odd = delivery_row("completed", now);
    assert!(delivery(&odd, now, WEEK).is_err_and(|e| e.contains("unknown status")));
    let mut bad = delivery_row("pending", now);
    bad.id = "123".into();
    assert!(delivery(&bad, now, WEEK).is_err_and(|e| e.contains("not a UUID")));
}

#[test]
fn addon_rows_parse_objects_and_parameters() {
    let row = AddonRow {
        id: "770e8400-e29b-41d4-a716-446655440002".into(),
        name: "Scanner".into(),
        webhook_id: "550e8400-e29b-41d4-a716-446655440000".into(),
        objects: Some("{threat_model,diagram}".into()),
        parameters: Some(r#"[{"name": "mode", "type": "enum", "enum_values": ["a"]}]"#.into()),
        ..AddonRow::default()
    };
    let a = addon(&row).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.objects, ["threat_model", "diagram"]);
    assert_eq!(a.parameters.len(), 1);
    let mut r = row.clone();
    r.parameters = Some(r#"{"name": "x"}"#.into());
    assert!(addon(&r).is_err_and(|e| e.starts_with("parameters")));
    let mut r = row;
    r.parameters = None;
    r.objects = None;
    assert!(addon(&r).is_ok_and(|a| a.objects.is_empty() && a.parameters.is_empty()));
}

#[test]
fn deny_and_quota_rows() {
    let d = DenyRow {
        id: "d1".into(),
        pattern: "*.internal".into(),
        pattern_type: Some("regexp".into()),
        ..DenyRow::default()
    };
    assert!(deny_entry(&d).is_err());
    let q = WebhookQuotaRow {
        owner_id: "o".into(),
        max_subscriptions: 0,
        max_events_per_minute: 12,
        max_subscription_requests_per_minute: 10,
        max_subscription_requests_per_day: 20,
        ..WebhookQuotaRow::default()
    };
    assert!(webhook_quota(&q).is_err_and(|e| e.contains("max_subscriptions")));
}
