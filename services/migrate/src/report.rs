//! What a run did, per table, and how it is shown to the operator.

use std::fmt::Write as _;

/// A row that was not imported, named so the operator can find and fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub table: &'static str,
    /// The row's primary key as TMI stored it.
    pub id: String,
    pub reason: String,
}

/// Counts for one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: &'static str,
    /// The table does not exist in the database (nothing to import).
    pub absent: bool,
    /// Written (or, in a dry run, that would be written).
    pub imported: u64,
    /// Already in Redis: nothing written.
    pub exists: u64,
    /// Legacy deliveries whose last write is older than the terminal TTL (Hookline would have expired them).
    pub too_old: u64,
    pub invalid: Vec<Invalid>,
}

impl TableReport {
    pub fn new(table: &'static str) -> Self {
        Self {
            table,
            absent: false,
            imported: 0,
            exists: 0,
            too_old: 0,
            invalid: Vec::new(),
        }
    }

    pub fn invalid(&mut self, id: impl Into<String>, reason: impl Into<String>) {
        let (id, reason) = (id.into(), reason.into());
        tracing::warn!(table = self.table, row.id = %id, reason = %reason, "row not imported");
        self.invalid.push(Invalid {
            table: self.table,
            id,
            reason,
        });
    }
}

/// The result of an import run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub dry_run: bool,
    pub tables: Vec<TableReport>,
}

impl Report {
    /// Every invalid row, table by table.
    pub fn invalid(&self) -> impl Iterator<Item = &Invalid> {
        self.tables.iter().flat_map(|t| t.invalid.iter())
    }

    /// The operator's summary: one line per table, then every invalid row.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.dry_run {
            out.push_str("dry run: nothing was written\n");
        }
        let verb = if self.dry_run {
            "would import"
        } else {
            "imported"
        };
        for t in &self.tables {
            if t.absent {
                let _ = writeln!(out, "{}: table absent, nothing to import", t.table);
                continue;
            }
            let _ = writeln!(
                out,
                "{}: {verb} {}, skipped (exists) {}, skipped (too old) {}, invalid {}",
                t.table,
                t.imported,
                t.exists,
                t.too_old,
                t.invalid.len()
            );
        }
        let invalid: Vec<&Invalid> = self.invalid().collect();
        if !invalid.is_empty() {
            let _ = writeln!(out, "invalid rows ({}):", invalid.len());
            for i in invalid {
                let _ = writeln!(out, "  {} id={}: {}", i.table, i.id, i.reason);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_names_invalid_rows() {
        let mut subs = TableReport::new("webhook_subscriptions");
        subs.imported = 2;
        subs.exists = 1;
        subs.invalid("x", "id \"x\" is not a UUID");
        let mut gone = TableReport::new("webhook_deliveries");
        gone.absent = true;
        let r = Report {
            dry_run: false,
            tables: vec![subs, gone],
        };
        assert_eq!(
            r.render(),
            "webhook_subscriptions: imported 2, skipped (exists) 1, skipped (too old) 0, invalid 1\n\
             webhook_deliveries: table absent, nothing to import\n\
             invalid rows (1):\n  webhook_subscriptions id=x: id \"x\" is not a UUID\n"
        );
    }
}
