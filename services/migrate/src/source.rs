//! Reading TMI's tables. Only `SELECT`s (and, in [`crate::drop_legacy`], the one `DROP`).
//!
//! Columns are cast in SQL so each arrives as one Rust type whatever width TMI's migrations gave it: ids and
//! texts as `text`, counters as `bigint`, `jsonb` as its text form (what TMI sent), and timestamps as
//! microseconds since the epoch. TMI's columns are `timestamp` without time zone holding UTC (GORM writes
//! UTC), and `extract(epoch …)` reads such a value as UTC; a `timestamptz` column converts the same way.

use tokio_postgres::{GenericClient, Row};

use crate::convert::{
    AddonQuotaRow, AddonRow, DeliveryRow, DenyRow, SubscriptionRow, WebhookQuotaRow,
};
use crate::error::Result;

/// TMI's table names.
pub mod table {
    pub const SUBSCRIPTIONS: &str = "webhook_subscriptions";
    pub const ADDONS: &str = "addons";
    pub const WEBHOOK_QUOTAS: &str = "webhook_quotas";
    pub const ADDON_QUOTAS: &str = "addon_invocation_quotas";
    pub const DENY_LIST: &str = "webhook_url_deny_list";
    pub const DELIVERIES: &str = "webhook_deliveries";
}

/// `timestamp` column → microseconds since the epoch (NULL stays NULL).
fn us(column: &str) -> String {
    format!("(extract(epoch from {column}) * 1000000)::bigint")
}

/// Whether `name` exists (TMI may have dropped `webhook_deliveries` already, or never created a table).
///
/// # Errors
/// PostgreSQL failure.
pub async fn table_exists(db: &impl GenericClient, name: &str) -> Result<bool> {
    let row = db
        .query_one("SELECT to_regclass($1)::text", &[&name])
        .await?;
    Ok(row.try_get::<_, Option<String>>(0)?.is_some())
}

fn text(row: &Row, i: usize) -> Result<String> {
    Ok(row.try_get::<_, Option<String>>(i)?.unwrap_or_default())
}

/// A `bigint` column, `default` when NULL (TMI's column default).
fn int(row: &Row, i: usize, default: i64) -> Result<i64> {
    Ok(row.try_get::<_, Option<i64>>(i)?.unwrap_or(default))
}

/// Every `webhook_subscriptions` row, oldest first.
///
/// # Errors
/// PostgreSQL failure.
pub async fn subscriptions(db: &impl GenericClient) -> Result<Vec<SubscriptionRow>> {
    let sql = format!(
        "SELECT id::text, owner_internal_uuid::text, threat_model_id::text, name::text, url::text, \
         events::text, secret::text, status::text, challenge::text, challenges_sent::bigint, \
         timeout_count::bigint, {}, {}, {}, publication_failures::bigint, operator_pinned \
         FROM {} ORDER BY created_at, id",
        us("created_at"),
        us("modified_at"),
        us("last_successful_use"),
        table::SUBSCRIPTIONS
    );
    let rows = db.query(sql.as_str(), &[]).await?;
    rows.iter()
        .map(|r| {
            Ok(SubscriptionRow {
                id: text(r, 0)?,
                owner_internal_uuid: text(r, 1)?,
                threat_model_id: r.try_get(2)?,
                name: text(r, 3)?,
                url: text(r, 4)?,
                events: text(r, 5)?,
                secret: r.try_get(6)?,
                status: r.try_get(7)?,
                challenge: r.try_get(8)?,
                challenges_sent: r.try_get(9)?,
                timeout_count: r.try_get(10)?,
                created_at: int(r, 11, 0)?,
                modified_at: int(r, 12, 0)?,
                last_successful_use: r.try_get(13)?,
                publication_failures: r.try_get(14)?,
                operator_pinned: r.try_get::<_, Option<bool>>(15)?.unwrap_or(false),
            })
        })
        .collect()
}

/// Every `addons` row, oldest first.
///
/// # Errors
/// PostgreSQL failure.
pub async fn addons(db: &impl GenericClient) -> Result<Vec<AddonRow>> {
    let sql = format!(
        "SELECT id::text, {}, name::text, webhook_id::text, description::text, icon::text, \
         objects::text, threat_model_id::text, parameters::text FROM {} ORDER BY created_at, id",
        us("created_at"),
        table::ADDONS
    );
    let rows = db.query(sql.as_str(), &[]).await?;
    rows.iter()
        .map(|r| {
            Ok(AddonRow {
                id: text(r, 0)?,
                created_at: int(r, 1, 0)?,
                name: text(r, 2)?,
                webhook_id: text(r, 3)?,
                description: r.try_get(4)?,
                icon: r.try_get(5)?,
                objects: r.try_get(6)?,
                threat_model_id: r.try_get(7)?,
                parameters: r.try_get(8)?,
            })
        })
        .collect()
}

/// Every `webhook_deliveries` row, oldest first.
///
/// # Errors
/// PostgreSQL failure.
pub async fn deliveries(db: &impl GenericClient) -> Result<Vec<DeliveryRow>> {
    let sql = format!(
        "SELECT id::text, subscription_id::text, event_type::text, payload::text, status::text, \
         attempts::bigint, {}, last_error::text, {}, {} FROM {} ORDER BY created_at, id",
        us("next_retry_at"),
        us("created_at"),
        us("delivered_at"),
        table::DELIVERIES
    );
    let rows = db.query(sql.as_str(), &[]).await?;
    rows.iter()
        .map(|r| {
            Ok(DeliveryRow {
                id: text(r, 0)?,
                subscription_id: text(r, 1)?,
                event_type: text(r, 2)?,
                payload: text(r, 3)?,
                status: r.try_get(4)?,
                attempts: r.try_get(5)?,
                next_retry_at: r.try_get(6)?,
                last_error: r.try_get(7)?,
                created_at: int(r, 8, 0)?,
                delivered_at: r.try_get(9)?,
            })
        })
        .collect()
}

/// The fields of `webhook_deliveries` that decide whether a row may be dropped: (id, created_at, delivered_at).
///
/// # Errors
/// PostgreSQL failure.
pub async fn delivery_ages(db: &impl GenericClient) -> Result<Vec<(String, i64, Option<i64>)>> {
    let sql = format!(
        "SELECT id::text, {}, {} FROM {} ORDER BY created_at, id",
        us("created_at"),
        us("delivered_at"),
        table::DELIVERIES
    );
    let rows = db.query(sql.as_str(), &[]).await?;
    rows.iter()
        .map(|r| Ok((text(r, 0)?, int(r, 1, 0)?, r.try_get(2)?)))
        .collect()
}

/// Every `webhook_url_deny_list` row, oldest first.
///
/// # Errors
/// PostgreSQL failure.
pub async fn deny_list(db: &impl GenericClient) -> Result<Vec<DenyRow>> {
    let sql = format!(
        "SELECT id::text, pattern::text, pattern_type::text, description::text, {} FROM {} \
         ORDER BY created_at, id",
        us("created_at"),
        table::DENY_LIST
    );
    let rows = db.query(sql.as_str(), &[]).await?;
    rows.iter()
        .map(|r| {
            Ok(DenyRow {
                id: text(r, 0)?,
                pattern: text(r, 1)?,
                pattern_type: r.try_get(2)?,
                description: r.try_get(3)?,
                created_at: int(r, 4, 0)?,
            })
        })
        .collect()
}

/// Every `webhook_quotas` row.
///
/// # Errors
/// PostgreSQL failure.
pub async fn webhook_quotas(db: &impl GenericClient) -> Result<Vec<WebhookQuotaRow>> {
    let sql = format!(
        "SELECT owner_id::text, max_subscriptions::bigint, max_events_per_minute::bigint, \
         max_subscription_requests_per_minute::bigint, max_subscription_requests_per_day::bigint, {}, {} \
         FROM {} ORDER BY owner_id",
        us("created_at"),
        us("modified_at"),
        table::WEBHOOK_QUOTAS
    );
    let rows = db.query(sql.as_str(), &[]).await?;
    rows.iter()
        .map(|r| {
            Ok(WebhookQuotaRow {
                owner_id: text(r, 0)?,
                max_subscriptions: int(r, 1, 10)?,
                max_events_per_minute: int(r, 2, 12)?,
                max_subscription_requests_per_minute: int(r, 3, 10)?,
                max_subscription_requests_per_day: int(r, 4, 20)?,
                created_at: int(r, 5, 0)?,
                modified_at: int(r, 6, 0)?,
            })
        })
        .collect()
}

/// Every `addon_invocation_quotas` row.
///
/// # Errors
/// PostgreSQL failure.
pub async fn addon_quotas(db: &impl GenericClient) -> Result<Vec<AddonQuotaRow>> {
    let sql = format!(
        "SELECT owner_internal_uuid::text, max_active_invocations::bigint, max_invocations_per_hour::bigint, \
         {}, {} FROM {} ORDER BY owner_internal_uuid",
        us("created_at"),
        us("modified_at"),
        table::ADDON_QUOTAS
    );
    let rows = db.query(sql.as_str(), &[]).await?;
    rows.iter()
        .map(|r| {
            Ok(AddonQuotaRow {
                owner_internal_uuid: text(r, 0)?,
                max_active_invocations: int(r, 1, 3)?,
                max_invocations_per_hour: int(r, 2, 10)?,
                created_at: int(r, 3, 0)?,
                modified_at: int(r, 4, 0)?,
            })
        })
        .collect()
}
