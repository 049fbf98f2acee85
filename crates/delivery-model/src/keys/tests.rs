//! Key names: the standalone names byte for byte, and in the cluster layout one slot per script call.
#![expect(clippy::unwrap_used, reason = "tests")]

use super::*;

#[test]
fn tmi_compatible_names_without_prefix() {
    let k = Keyspace::new("", DEFAULT_EVENTS_STREAM);
    let id: DeliveryId = DeliveryId::new_v7();
    assert_eq!(k.delivery(id), format!("webhook:delivery:{id}"));
    assert_eq!(k.events_stream(), "tmi:events");
    // TMI's revocation key for the token "abc": echo -n abc | sha256sum.
    assert_eq!(
        Keyspace::new("test:", DEFAULT_EVENTS_STREAM).revoked_token("abc"),
        "blacklist:token:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        k.subscription_rate_minute("u"),
        "webhook:ratelimit:sub:minute:u"
    );
    assert_eq!(k.subscription_rate_day("u"), "webhook:ratelimit:sub:day:u");
    assert_eq!(k.addon_quota("u"), "addon:quota:u");
    assert_eq!(
        k.subscriptions_by_event("*"),
        "webhook:subscriptions:event:*"
    );
}

#[test]
fn prefix_applies_to_owned_keys_only() {
    let k = Keyspace::new("t1:", "tmi:events");
    assert_eq!(k.queue_stream(Shard::ZERO), "t1:hookline:queue");
    assert_eq!(
        k.deliveries_by_status(Shard::ZERO, DeliveryStatus::Pending),
        "t1:webhook:deliveries:status:pending"
    );
    assert_eq!(k.events_stream(), "tmi:events");
}

#[test]
fn idempotency_keys_are_per_caller_and_route() {
    let k = Keyspace::new("t1:", "tmi:events");
    let a = k.idempotency("events", "alice", "k1");
    assert!(a.starts_with("t1:hookline:idempotency:events:"), "{a}");
    assert_eq!(a, k.idempotency("events", "alice", "k1"));
    assert_ne!(a, k.idempotency("events", "bob", "k1"));
    assert_ne!(a, k.idempotency("invoke", "alice", "k1"));
    // The separator cannot be forged by moving characters between caller and key.
    assert_ne!(
        k.idempotency("events", "a", "b:c"),
        k.idempotency("events", "a:b", "c")
    );
}

const SUB: &str = "0190f0c0-0000-4000-8000-0000000000a1";
const ADDON: &str = "0190f0c0-0000-4000-8000-0000000000b2";
const DELIVERY: &str = "0190f0c0-0000-7000-8000-00000000000d";

fn ids() -> (SubscriptionId, AddonId, DeliveryId) {
    (
        SUB.parse().unwrap(),
        ADDON.parse().unwrap(),
        DELIVERY.parse().unwrap(),
    )
}

/// Every builder with a `p:` prefix in standalone mode: exactly the names before the cluster layout
/// existed (TMI's tooling and stored data depend on them), whatever shard a caller passes.
#[test]
fn standalone_names_are_unchanged() {
    let k = Keyspace::new("p:", "ev");
    let (sub, addon, id) = ids();
    let s = k.shard_of(id);
    assert_eq!(s, Shard::ZERO);
    assert_eq!(k.shards().collect::<Vec<_>>(), [Shard::ZERO]);
    let pending = DeliveryStatus::Pending;
    let active = SubscriptionStatus::Active;
    let names = [
        (k.events_stream().to_owned(), "ev".to_owned()),
        (k.queue_stream(s), "p:hookline:queue".into()),
        (k.challenge_queue(), "p:hookline:queue".into()),
        (k.scheduled(s), "p:hookline:scheduled".into()),
        (k.challenge_scheduled(), "p:hookline:scheduled".into()),
        (k.subscription(sub), format!("p:webhook:subscription:{SUB}")),
        (k.subscription_prefix(), "p:webhook:subscription:".into()),
        (k.subscriptions_all(), "p:webhook:subscriptions".into()),
        (
            k.subscriptions_by_threat_model("t"),
            "p:webhook:subscriptions:tm:t".into(),
        ),
        (
            k.subscriptions_by_owner("o"),
            "p:webhook:subscriptions:owner:o".into(),
        ),
        (
            k.subscriptions_by_status(active),
            "p:webhook:subscriptions:status:active".into(),
        ),
        (
            k.subscriptions_by_event("e"),
            "p:webhook:subscriptions:event:e".into(),
        ),
        (
            k.match_generation(),
            "p:webhook:subscriptions:match_generation".into(),
        ),
        (k.delivery(id), format!("p:webhook:delivery:{DELIVERY}")),
        (k.delivery_prefix(s), "p:webhook:delivery:".into()),
        (k.deliveries_all(s), "p:webhook:deliveries".into()),
        (
            k.deliveries_by_subscription(s, sub),
            format!("p:webhook:deliveries:subscription:{SUB}"),
        ),
        (
            k.deliveries_by_status(s, pending),
            "p:webhook:deliveries:status:pending".into(),
        ),
        (
            k.deliveries_by_event(s, "e"),
            "p:webhook:deliveries:event:e".into(),
        ),
        (
            k.deliveries_by_addon(s, addon),
            format!("p:webhook:deliveries:addon:{ADDON}"),
        ),
        (
            k.deliveries_by_addon_prefix(s),
            "p:webhook:deliveries:addon:".into(),
        ),
        (
            k.deliveries_activity(s),
            "p:webhook:deliveries:activity".into(),
        ),
        (
            k.circuit("Example.COM"),
            "p:hookline:circuit:example.com".into(),
        ),
        (k.cleanup_lease(), "p:hookline:cleanup:lease".into()),
        (k.cleanup_state(), "p:hookline:cleanup:state".into()),
        (k.redrive_job(sub), format!("p:hookline:redrive:job:{SUB}")),
        (k.redrive_active(), "p:hookline:redrive:active".into()),
        (k.redrive_lease(), "p:hookline:redrive:lease".into()),
        (
            k.delivery_index_registry(s),
            "p:hookline:cleanup:delivery_indexes".into(),
        ),
        (k.addon(addon), format!("p:webhook:addon:{ADDON}")),
        (k.addons_all(), "p:webhook:addons".into()),
        (
            k.addons_by_threat_model("t"),
            "p:webhook:addons:tm:t".into(),
        ),
        (k.addons_unscoped(), "p:webhook:addons:unscoped".into()),
        (
            k.addons_by_subscription(sub),
            format!("p:webhook:addons:subscription:{SUB}"),
        ),
        (k.addon_hourly("u"), "p:addon:ratelimit:hour:u".into()),
        (
            k.addon_dedup(addon, "u"),
            format!("p:addon:dedup:{ADDON}:u"),
        ),
        (k.addon_active("u"), "p:addon:active:u".into()),
        (
            k.delivery_query_tmp(s, "x"),
            "p:hookline:tmp:deliveries:x".into(),
        ),
        (k.addon_query_tmp("x"), "p:hookline:tmp:addons:x".into()),
        (k.webhook_quota("o"), "p:webhook:quota:o".into()),
        (k.webhook_quotas(), "p:webhook:quotas".into()),
        (k.addon_quota("o"), "p:addon:quota:o".into()),
        (k.addon_quotas(), "p:addon:quotas".into()),
        (
            k.subscription_rate_minute("o"),
            "p:webhook:ratelimit:sub:minute:o".into(),
        ),
        (
            k.subscription_rate_day("o"),
            "p:webhook:ratelimit:sub:day:o".into(),
        ),
        (k.url_deny_list(), "p:webhook:url_deny_list".into()),
    ];
    for (got, want) in names {
        assert_eq!(got, want);
    }
    assert_eq!(k.worker_streams(), ["p:hookline:queue"]);
}

fn cluster(shards: u16) -> Keyspace {
    Keyspace::with_layout("p:", "tmi:events", Layout::Cluster { shards }).unwrap()
}

/// Asserts that every key (or key prefix a script extends) of one script call is in one slot.
#[track_caller]
fn one_slot(script: &str, keys: &[String]) {
    let slots: std::collections::BTreeSet<u16> = keys.iter().map(|k| key_slot(k)).collect();
    assert_eq!(slots.len(), 1, "{script}: {keys:#?} span slots {slots:?}");
}

#[test]
fn cluster_names_carry_their_tag_after_the_prefix() {
    let k = cluster(12);
    let (sub, _, id) = ids();
    let s = k.shard_of(id);
    assert_eq!(s.index(), 9);
    assert_eq!(k.shards().len(), 12);
    assert_eq!(
        k.delivery(id),
        format!("p:{{hl:s9.60}}webhook:delivery:{DELIVERY}")
    );
    assert_eq!(
        k.subscription(sub),
        format!("p:{{hl:c}}webhook:subscription:{SUB}")
    );
    assert_eq!(k.queue_stream(s), "p:{hl:s9.60}hookline:queue");
    assert_eq!(k.challenge_queue(), "p:{hl:c}hookline:queue");
    // Producer-owned and single-key names stay untagged.
    assert_eq!(k.events_stream(), "tmi:events");
    assert_eq!(k.circuit("h"), "p:hookline:circuit:h");
    assert_eq!(k.url_deny_list(), "p:webhook:url_deny_list");
    assert_eq!(k.stats_minute(7), "p:hookline:stats:minute:7");
    assert_eq!(
        k.stats_subscription_hour(sub, 3),
        format!("p:hookline:stats:sub:{SUB}:3")
    );
    assert!(
        k.idempotency("events", "a", "b")
            .starts_with("p:hookline:idempotency:")
    );
    assert!(k.revoked_token("t").starts_with(REVOKED_TOKEN_PREFIX));
    // Workers read every shard's queue and the challenge queue.
    let streams = k.worker_streams();
    assert_eq!(streams.len(), 13);
    assert_eq!(streams.last().unwrap(), &k.challenge_queue());
}

#[test]
fn cluster_layout_refuses_bad_settings() {
    assert!(Keyspace::with_layout("", "e", Layout::Cluster { shards: 0 }).is_err());
    assert!(Keyspace::with_layout("", "e", Layout::Cluster { shards: 257 }).is_err());
    assert!(Keyspace::with_layout("a{b}:", "e", Layout::Cluster { shards: 3 }).is_err());
    // A brace is harmless on one node: there is no slot to decide.
    assert!(Keyspace::with_layout("a{b}:", "e", Layout::Standalone).is_ok());
}

/// The control scripts: every key and key prefix they are given is in the control slot.
#[test]
fn control_scripts_touch_one_slot() {
    let k = cluster(12);
    let (sub, addon, _) = ids();
    let subscription_writes = [
        k.subscription(sub),
        k.subscriptions_all(),
        k.subscriptions_by_owner("o"),
        k.subscriptions_by_status(SubscriptionStatus::PendingVerification),
        k.challenge_queue(),
        k.subscriptions_by_threat_model("t"),
        k.match_generation(),
        k.subscriptions_by_event_prefix(),
        k.subscriptions_by_status_prefix(),
        k.subscription_rate_minute("o"),
        k.subscription_rate_day("o"),
        k.webhook_quota("o"),
    ];
    one_slot(
        "create_subscription(_quota), import_subscription",
        &subscription_writes,
    );
    one_slot(
        "set_subscription_status, challenge_failed",
        &[
            k.subscription(sub),
            k.challenge_scheduled(),
            k.subscriptions_by_status_prefix(),
            k.subscriptions_by_event_prefix(),
            k.match_generation(),
        ],
    );
    one_slot(
        "enable_subscription",
        &[
            k.subscription(sub),
            k.match_generation(),
            k.subscriptions_by_status_prefix(),
            k.subscriptions_by_event_prefix(),
        ],
    );
    one_slot(
        "delete_subscription",
        &[
            k.subscription(sub),
            k.subscriptions_all(),
            k.addons_by_subscription(sub),
            k.addons_all(),
            k.addons_unscoped(),
            k.match_generation(),
            k.addon_prefix(),
            k.addons_by_threat_model_prefix(),
            k.subscriptions_by_owner_prefix(),
            k.subscriptions_by_status_prefix(),
            k.subscriptions_by_event_prefix(),
            k.subscriptions_by_threat_model_prefix(),
        ],
    );
    one_slot(
        "create_addon, list_addons",
        &[
            k.addon(addon),
            k.subscription(sub),
            k.addons_all(),
            k.addons_by_threat_model("t"),
            k.addons_unscoped(),
            k.addons_by_subscription(sub),
            k.addon_query_tmp("x"),
        ],
    );
    one_slot(
        "put_quota, delete_quota",
        &[
            k.webhook_quota("o"),
            k.webhook_quotas(),
            k.addon_quota("o"),
            k.addon_quotas(),
        ],
    );
    one_slot(
        "invoke reservation (§4.4)",
        &[
            k.addon(addon),
            k.addon_hourly("u"),
            k.addon_dedup(addon, "u"),
            k.addon_active("u"),
            k.addon_quota("u"),
        ],
    );
    one_slot(
        "cleanup_lease_commit, cleanup_lease_release",
        &[k.cleanup_lease(), k.cleanup_state(), k.layout_marker()],
    );
    one_slot(
        "redrive_start, redrive_cancel, redrive_step, the redrive lease",
        &[
            k.redrive_job(sub),
            k.redrive_active(),
            k.redrive_lease(),
            k.subscription(sub),
        ],
    );
    one_slot(
        "fold_outcomes",
        &[
            k.fold_watermarks(),
            k.subscription(sub),
            k.subscription_prefix(),
        ],
    );
    one_slot(
        "promote_due (challenges)",
        &[k.challenge_scheduled(), k.challenge_queue()],
    );
    assert_eq!(key_slot(&k.subscription(sub)), key_slot(CONTROL_TAG));
}

/// The limiter script's keys (issue #18): one slot per subscription, not the control slot.
#[test]
fn limiter_keys_share_a_slot_per_subscription() {
    let k = cluster(12);
    let (sub, _, _) = ids();
    let keys = [
        k.limit_rate(sub),
        k.limit_in_flight(sub),
        k.limit_waiting(sub),
        k.limit_reserved(sub),
    ];
    one_slot("limit_acquire, limit_release", &keys);
    assert!(keys[0].contains(&format!("{{hl:l.{sub}}}")), "{}", keys[0]);
    let standalone = Keyspace::new("", "tmi:events");
    assert_eq!(
        standalone.limit_rate(sub),
        format!("hookline:limit:rate:{sub}")
    );
}

/// The per-shard scripts: for every shard, its queue, schedule, records and indexes share one slot, and
/// a record is found in the shard its id names.
#[test]
fn shard_scripts_touch_one_slot() {
    let k = cluster(12);
    let (sub, addon, _) = ids();
    for shard in k.shards() {
        // A delivery this shard owns.
        let id = std::iter::repeat_with(DeliveryId::new_v7)
            .find(|id| k.shard_of(*id) == shard)
            .unwrap();
        let record = [
            k.delivery(id),
            k.deliveries_all(shard),
            k.deliveries_by_subscription(shard, sub),
            k.deliveries_by_status(shard, DeliveryStatus::Pending),
            k.deliveries_by_event(shard, "e"),
            k.deliveries_by_addon(shard, addon),
        ];
        let work = [
            k.queue_stream(shard),
            k.scheduled(shard),
            k.deliveries_activity(shard),
            k.delivery_prefix(shard),
            k.deliveries_by_status_prefix(shard),
            k.sub_outcomes(shard),
        ];
        let cleanup = [
            k.delivery_index_registry(shard),
            k.deliveries_by_subscription_prefix(shard),
            k.deliveries_by_event_prefix(shard),
            k.deliveries_by_addon_prefix(shard),
            k.delivery_query_tmp(shard, "x"),
        ];
        let all: Vec<String> = record.into_iter().chain(work).chain(cleanup).collect();
        // create_delivery, import_delivery, begin/finish_attempts, promote_due, delivery_callback,
        // retry_delivery, query_deliveries, fail_disabled_pending and the cleanup steps, each on one shard.
        one_slot(&format!("shard {shard}"), &all);
        assert_ne!(key_slot(&all[0]), key_slot(CONTROL_TAG));
    }
}

/// Twelve shards spread 4/4/4 over three masters with even slot ranges (the harness's cluster).
#[test]
fn twelve_shards_spread_evenly_over_three_masters() {
    let k = cluster(12);
    let mut per_master = [0; 3];
    for shard in k.shards() {
        let slot = usize::from(key_slot(&k.queue_stream(shard)));
        per_master[slot * 3 / 16384] += 1;
    }
    assert_eq!(per_master, [4, 4, 4]);
}

#[test]
fn the_scheduler_promotes_each_schedule_into_its_own_queue() {
    let one = Keyspace::new("p:", "ev");
    assert_eq!(
        one.schedules(),
        [(
            "p:hookline:scheduled".to_owned(),
            "p:hookline:queue".to_owned()
        )]
    );
    let k = cluster(12);
    let pairs = k.schedules();
    assert_eq!(pairs.len(), 13);
    for (schedule, queue) in &pairs {
        one_slot("promote_due", &[schedule.clone(), queue.clone()]);
    }
    assert_eq!(
        pairs.last().unwrap(),
        &(k.challenge_scheduled(), k.challenge_queue())
    );
}
