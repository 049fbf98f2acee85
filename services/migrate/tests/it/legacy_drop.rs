//! `--drop-legacy`: the legacy table goes only when every row is in Redis or too old.

use crate::harness::*;

fn table_exists(w: &World) -> bool {
    w.pg.psql("SELECT to_regclass('webhook_deliveries') IS NOT NULL") == "t"
}

#[tokio::test]
async fn drops_the_legacy_table_only_once_every_row_is_imported() {
    let w = World::start().await;
    fill(&w.pg, "http://127.0.0.1:9/hook");

    // Nothing imported yet: refused, every live row named.
    let (code, out) = w.migrate(&["--drop-legacy"]).await;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("NOT dropped"), "{out}");
    assert!(out.contains(&format!("id={DELIVERY_DUE}")), "{out}");
    assert!(
        !out.contains(&format!("id={DELIVERY_OLD}")),
        "too old rows do not count:\n{out}"
    );
    assert!(table_exists(&w));
    assert_eq!(w.dbsize().await, 0, "--drop-legacy imports nothing");

    // Imported, but the bad rows never were: still refused, naming exactly them.
    let (code, _) = w.migrate(&[]).await;
    assert_eq!(code, 2);
    let (code, out) = w.migrate(&["--drop-legacy"]).await;
    assert_eq!(code, 3, "{out}");
    for id in [DELIVERY_BAD_STATUS, DELIVERY_NO_SUB, DELIVERY_BAD_ID] {
        assert!(out.contains(&format!("id={id}")), "{id} not named:\n{out}");
    }
    assert!(!out.contains(&format!("id={DELIVERY_DUE}")), "{out}");
    assert!(table_exists(&w));

    // The operator deletes the bad rows; meanwhile a new row arrives that was not imported: refused.
    let new_id = "c0000000-0000-4000-8000-000000000042";
    w.pg.psql(&format!(
        "DELETE FROM webhook_deliveries WHERE id IN ('{DELIVERY_BAD_STATUS}', '{DELIVERY_NO_SUB}', '{DELIVERY_BAD_ID}');
         INSERT INTO webhook_deliveries (id, subscription_id, event_type, payload, status, created_at)
         VALUES ('{new_id}', '{SUB_ACTIVE}', 'threat_model.created', '{{}}', 'pending', timezone('UTC', now()))"
    ));
    let (code, out) = w.migrate(&["--drop-legacy"]).await;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains(&format!("id={new_id}: not in Redis")), "{out}");
    assert!(table_exists(&w));

    // Imported too: a dry run says it would drop, then the drop.
    let (code, out) = w.migrate(&[]).await;
    assert_eq!(
        World::line(&out, "webhook_deliveries"),
        "webhook_deliveries: imported 1, skipped (exists) 4, skipped (too old) 1, invalid 0",
        "exit {code}"
    );
    let (code, out) = w.migrate(&["--drop-legacy", "--dry-run"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("would be dropped (6 rows"), "{out}");
    assert!(table_exists(&w));
    let (code, out) = w.migrate(&["--drop-legacy"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("webhook_deliveries: dropped (6 rows"), "{out}");
    assert!(!table_exists(&w));

    // Afterwards both modes know the table is gone.
    let (code, out) = w.migrate(&["--drop-legacy"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("table absent, nothing to drop"), "{out}");
    let (_, out) = w.migrate(&[]).await;
    assert_eq!(
        World::line(&out, "webhook_deliveries"),
        "webhook_deliveries: table absent, nothing to import"
    );
}
