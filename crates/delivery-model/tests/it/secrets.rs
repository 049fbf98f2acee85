//! Secrets at rest (issue #16 item 4): what Redis holds is an envelope, never the secret; every read path
//! (get, match candidates, the worker's lease) opens it; legacy plain text and old keys keep working and
//! are resealed under the current key by [`Store::reseal_subscription_secrets`].

use std::time::Duration;

use delivery_model::secret_box::SecretBox;
use delivery_model::store::{BeginAttempt, ResealReport, Store, StoreOptions};
use delivery_model::subscription::SubscriptionStatus::Active;
use delivery_model::subscription::field;
use delivery_model::time::now_micros;
use test_support::store::StoreFixture;

use crate::harness::{LEASE, subscription};

const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "HxwdHhscGRoXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";
const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn keys(current: &str, keys: &[(&str, &str)]) -> SecretBox {
    SecretBox::from_base64_keys(current, keys.iter().copied()).unwrap()
}

async fn with_keys(fx: &StoreFixture, b: SecretBox) -> Store {
    fx.store_with(|o: &mut StoreOptions| o.secrets = b).await
}

#[tokio::test]
async fn redis_holds_no_secret_in_clear_and_every_read_opens_it() {
    let fx = StoreFixture::start_with(|o| o.secrets = keys("k1", &[("k1", K1)])).await;
    let sub = subscription(Active, &["threat_model.created"]);
    fx.create(&sub).await;

    // hookline-migrate's import path writes through the same encode.
    let imported = subscription(Active, &["threat_model.created"]);
    fx.store.import_subscription(&imported).await.unwrap();
    let stored = fx
        .hget(&fx.k().subscription(imported.id), field::SECRET)
        .await
        .unwrap();
    assert!(stored.starts_with("enc:v1:k1:"), "{stored}");

    let raw = fx.hgetall(&fx.k().subscription(sub.id)).await;
    assert!(raw.values().all(|v| !v.contains(SECRET)), "{raw:?}");
    assert!(raw[field::SECRET].starts_with("enc:v1:k1:"), "{raw:?}");

    let got = fx.store.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(got.secret.as_deref(), Some(SECRET));
    let cands = fx
        .store
        .match_candidates("threat_model.created")
        .await
        .unwrap();
    assert_eq!(cands[0].secret.as_deref(), Some(SECRET));
    // The worker's path: the lease hands out the subscription with its secret opened.
    let record = fx.queue_delivery(sub.id).await;
    let now = now_micros();
    match fx
        .store
        .begin_attempt(record.id, "t", now, now + LEASE, Duration::ZERO)
        .await
        .unwrap()
    {
        BeginAttempt::Go(l) => {
            assert_eq!(l.subscription.unwrap().secret.as_deref(), Some(SECRET));
        }
        other => panic!("expected Go, got {other:?}"),
    }
    fx.allow_pending();
}

#[tokio::test]
async fn legacy_plain_text_works_and_is_resealed_idempotently() {
    // Written before encryption: plain text.
    let fx = StoreFixture::start().await;
    let sub = subscription(Active, &["threat_model.created"]);
    fx.create(&sub).await;
    let unsigned = delivery_model::subscription::Subscription {
        secret: None,
        ..subscription(Active, &["x"])
    };
    fx.create(&unsigned).await;
    let key = fx.k().subscription(sub.id);
    assert_eq!(fx.hget(&key, field::SECRET).await.as_deref(), Some(SECRET));

    let enc = with_keys(&fx, keys("k1", &[("k1", K1)])).await;
    let got = enc.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(got.secret.as_deref(), Some(SECRET));

    let first = enc.reseal_subscription_secrets(1).await.unwrap();
    assert_eq!(
        first,
        ResealReport {
            scanned: 2,
            resealed: 1,
            current: 0,
            unsigned: 1,
            raced: 0
        }
    );
    let stored = fx.hget(&key, field::SECRET).await.unwrap();
    assert!(
        stored.starts_with("enc:v1:k1:") && !stored.contains(SECRET),
        "{stored}"
    );
    assert_eq!(
        enc.get_subscription(sub.id)
            .await
            .unwrap()
            .unwrap()
            .secret
            .as_deref(),
        Some(SECRET)
    );
    // A rerun (resuming after a crash, or checking) has nothing left to do.
    let second = enc.reseal_subscription_secrets(100).await.unwrap();
    assert_eq!((second.resealed, second.current), (0, 1));
    // Without a key there is nothing to seal with: refused, not a silent no-op.
    assert!(fx.store.reseal_subscription_secrets(10).await.is_err());
}

#[tokio::test]
async fn rotation_opens_old_key_records_and_moves_them_to_the_new_key() {
    let fx = StoreFixture::start_with(|o| o.secrets = keys("k1", &[("k1", K1)])).await;
    let sub = subscription(Active, &["threat_model.created"]);
    fx.create(&sub).await;
    let key = fx.k().subscription(sub.id);

    // Rotated: k2 seals, k1 still opens.
    let rotated = with_keys(&fx, keys("k2", &[("k1", K1), ("k2", K2)])).await;
    assert_eq!(
        rotated
            .get_subscription(sub.id)
            .await
            .unwrap()
            .unwrap()
            .secret
            .as_deref(),
        Some(SECRET)
    );
    // New writes use the new key.
    let fresh = subscription(Active, &["threat_model.created"]);
    rotated.create_subscription(&fresh).await.unwrap();
    let fresh_stored = fx
        .hget(&fx.k().subscription(fresh.id), field::SECRET)
        .await
        .unwrap();
    assert!(fresh_stored.starts_with("enc:v1:k2:"), "{fresh_stored}");

    let report = rotated.reseal_subscription_secrets(10).await.unwrap();
    assert_eq!((report.resealed, report.current), (1, 1));
    assert!(
        fx.hget(&key, field::SECRET)
            .await
            .unwrap()
            .starts_with("enc:v1:k2:")
    );

    // k1 can now be retired: a store with k2 alone reads everything.
    let only_k2 = with_keys(&fx, keys("k2", &[("k2", K2)])).await;
    assert_eq!(
        only_k2
            .get_subscription(sub.id)
            .await
            .unwrap()
            .unwrap()
            .secret
            .as_deref(),
        Some(SECRET)
    );
    // A store missing the key of a record refuses to read it rather than hand out garbage.
    let err = fx
        .store
        .get_subscription(sub.id)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("k2") && !err.contains(SECRET), "{err}");
}

#[tokio::test]
async fn signing_keys_are_sealed_opened_and_resealed_like_secrets() {
    use delivery_model::signing::standard;
    use delivery_model::store::Secret;
    let fx = StoreFixture::start_with(|o| o.secrets = keys("k1", &[("k1", K1)])).await;
    let signing_key = standard::generate_signing_key().unwrap();
    let sub = delivery_model::subscription::Subscription {
        signing_key: Some(Secret::new(signing_key.clone())),
        ..subscription(Active, &["threat_model.created"])
    };
    fx.create(&sub).await;
    let key = fx.k().subscription(sub.id);
    let stored = fx.hget(&key, field::SIGNING_KEY).await.unwrap();
    assert!(
        stored.starts_with("enc:v1:k1:") && !stored.contains(&signing_key),
        "{stored}"
    );
    let got = fx.store.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(
        got.signing_key.as_ref().map(Secret::expose),
        Some(signing_key.as_str())
    );
    assert!(!format!("{got:?}").contains(&signing_key));

    let rotated = with_keys(&fx, keys("k2", &[("k1", K1), ("k2", K2)])).await;
    let report = rotated.reseal_subscription_secrets(10).await.unwrap();
    assert_eq!((report.resealed, report.current), (2, 0), "secret and key");
    assert!(
        fx.hget(&key, field::SIGNING_KEY)
            .await
            .unwrap()
            .starts_with("enc:v1:k2:")
    );
}

#[tokio::test]
async fn rotation_seals_both_secrets_and_ends_with_its_grace_period() {
    use delivery_model::store::Rotation;
    let fx = StoreFixture::start_with(|o| o.secrets = keys("k1", &[("k1", K1)])).await;
    let sub = subscription(Active, &["threat_model.created"]);
    fx.create(&sub).await;
    let key = fx.k().subscription(sub.id);
    let now = now_micros();
    let until = now + 60_000_000;
    let r = fx
        .store
        .rotate_secret(sub.id, "new-secret-0123456789", Some(until), now)
        .await
        .unwrap();
    assert_eq!(
        r,
        Rotation::Rotated {
            previous_until: Some(until)
        }
    );
    let raw = fx.hgetall(&key).await;
    assert!(
        raw.values()
            .all(|v| !v.contains(SECRET) && !v.contains("new-secret")),
        "{raw:?}"
    );
    assert!(raw[field::PREVIOUS_SECRET].starts_with("enc:v1:k1:"));
    let got = fx.store.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(got.live_secrets(now), vec!["new-secret-0123456789", SECRET]);
    assert_eq!(got.live_secrets(until), vec!["new-secret-0123456789"]);

    // Without a grace period the replaced secret is gone at once, and so is the older one.
    fx.store
        .rotate_secret(sub.id, "newest-secret-0123456789", None, now)
        .await
        .unwrap();
    let got = fx.store.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(got.live_secrets(now), vec!["newest-secret-0123456789"]);
    assert!(!fx.hgetall(&key).await.contains_key(field::PREVIOUS_SECRET));

    let unsigned = delivery_model::subscription::Subscription {
        secret: None,
        ..subscription(Active, &["x"])
    };
    fx.create(&unsigned).await;
    let r = fx.store.rotate_secret(unsigned.id, "s", None, now).await;
    assert_eq!(r.unwrap(), Rotation::Unsigned);
    let missing = delivery_model::ids::SubscriptionId::new_v4();
    let r = fx.store.rotate_secret(missing, "s", None, now).await;
    assert_eq!(r.unwrap(), Rotation::Missing);
}
