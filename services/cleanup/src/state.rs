//! Where cleanup's walks stand between chunks and cycles, kept in Redis
//! ([`Keyspace::cleanup_state`](delivery_model::keys::Keyspace::cleanup_state)) so that whichever replica
//! holds the lease next resumes them. It is saved together with every lease renewal, and only by the holder.
//! Missing or unreadable fields mean "from the start": losing the state costs repeated work, never
//! correctness.

use std::collections::HashMap;

use delivery_model::store::cleanup::IndexPosition;

const ACTIVE_CURSOR: &str = "lifecycle.active_cursor";
const PENDING_DELETE_CURSOR: &str = "lifecycle.pending_delete_cursor";
const ACTIVE_NEXT_MS: &str = "lifecycle.active_next_walk_ms";
const PENDING_DELETE_NEXT_MS: &str = "lifecycle.pending_delete_next_walk_ms";
const INDEX_PHASE: &str = "index.phase";
const INDEX_NEXT_PASS_MS: &str = "index.next_pass_ms";
const INDEX_SCAN_CURSOR: &str = "index.scan_cursor";
const INDEX_KEY: &str = "index.key";
const INDEX_SCORE: &str = "index.score";
const INDEX_SKIP: &str = "index.skip";

/// The start of every `SSCAN`/`SCAN` walk.
pub const START: &str = "0";

/// The delivery-index pass: idle until it is due, then a keyspace scan for index keys, then a walk of every
/// index in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexPass {
    /// No pass running; the next one may start at [`WalkState::next_index_pass_ms`].
    Idle,
    /// Registering index keys: the `SCAN` cursor.
    Scanning { cursor: String },
    /// Pruning index `key` from `at`.
    Pruning { key: String, at: IndexPosition },
}

/// Everything cleanup remembers between chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkState {
    /// `SSCAN` cursor over the active subscriptions (idle/broken checks).
    pub active_cursor: String,
    /// `SSCAN` cursor over the `pending_delete` subscriptions (deletion).
    pub pending_delete_cursor: String,
    /// When the next walk over the active subscriptions may start (Unix ms): at most one per
    /// `[cleanup] interval_ms`, even while catch-up cycles run back to back.
    pub active_next_walk_ms: i64,
    /// The same for the `pending_delete` subscriptions.
    pub pending_delete_next_walk_ms: i64,
    pub index: IndexPass,
    /// When the next index pass may start (Unix ms); set when a pass starts.
    pub next_index_pass_ms: i64,
}

impl Default for WalkState {
    fn default() -> Self {
        Self {
            active_cursor: START.to_owned(),
            pending_delete_cursor: START.to_owned(),
            active_next_walk_ms: 0,
            pending_delete_next_walk_ms: 0,
            index: IndexPass::Idle,
            next_index_pass_ms: 0,
        }
    }
}

impl WalkState {
    /// Reads the stored fields; anything missing or malformed falls back to the start.
    pub fn from_fields(h: &HashMap<String, String>) -> Self {
        let get = |k: &str| h.get(k).filter(|v| !v.is_empty()).cloned();
        let index = match get(INDEX_PHASE).as_deref() {
            Some("scan") => IndexPass::Scanning {
                cursor: get(INDEX_SCAN_CURSOR).unwrap_or_else(|| START.to_owned()),
            },
            Some("prune") => match get(INDEX_KEY) {
                Some(key) => IndexPass::Pruning {
                    key,
                    at: IndexPosition {
                        score: get(INDEX_SCORE).unwrap_or_else(|| IndexPosition::default().score),
                        skip: get(INDEX_SKIP).and_then(|v| v.parse().ok()).unwrap_or(0),
                    },
                },
                None => IndexPass::Idle,
            },
            _ => IndexPass::Idle,
        };
        let ms = |k: &str| get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Self {
            active_cursor: get(ACTIVE_CURSOR).unwrap_or_else(|| START.to_owned()),
            pending_delete_cursor: get(PENDING_DELETE_CURSOR).unwrap_or_else(|| START.to_owned()),
            active_next_walk_ms: ms(ACTIVE_NEXT_MS),
            pending_delete_next_walk_ms: ms(PENDING_DELETE_NEXT_MS),
            index,
            next_index_pass_ms: ms(INDEX_NEXT_PASS_MS),
        }
    }

    /// Every field, so that a stored field of an earlier phase never outlives it.
    pub fn to_fields(&self) -> Vec<(String, String)> {
        let (phase, cursor, key, score, skip) = match &self.index {
            IndexPass::Idle => ("idle", "", "", String::new(), String::new()),
            IndexPass::Scanning { cursor } => {
                ("scan", cursor.as_str(), "", String::new(), String::new())
            }
            IndexPass::Pruning { key, at } => (
                "prune",
                "",
                key.as_str(),
                at.score.clone(),
                at.skip.to_string(),
            ),
        };
        [
            (ACTIVE_CURSOR, self.active_cursor.clone()),
            (PENDING_DELETE_CURSOR, self.pending_delete_cursor.clone()),
            (ACTIVE_NEXT_MS, self.active_next_walk_ms.to_string()),
            (
                PENDING_DELETE_NEXT_MS,
                self.pending_delete_next_walk_ms.to_string(),
            ),
            (INDEX_PHASE, phase.to_owned()),
            (INDEX_NEXT_PASS_MS, self.next_index_pass_ms.to_string()),
            (INDEX_SCAN_CURSOR, cursor.to_owned()),
            (INDEX_KEY, key.to_owned()),
            (INDEX_SCORE, score),
            (INDEX_SKIP, skip),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &WalkState) -> WalkState {
        WalkState::from_fields(&s.to_fields().into_iter().collect())
    }

    #[test]
    fn every_phase_survives_a_round_trip() {
        let mut s = WalkState {
            active_cursor: "17".into(),
            pending_delete_cursor: "3".into(),
            active_next_walk_ms: 1_700_000_000_500,
            pending_delete_next_walk_ms: 1_700_000_000_600,
            index: IndexPass::Scanning {
                cursor: "4096".into(),
            },
            next_index_pass_ms: 1_700_000_000_000,
        };
        assert_eq!(round_trip(&s), s);
        s.index = IndexPass::Pruning {
            key: "webhook:deliveries:event:team.created".into(),
            at: IndexPosition {
                score: "1700000000123".into(),
                skip: 2,
            },
        };
        assert_eq!(round_trip(&s), s);
        s.index = IndexPass::Idle;
        assert_eq!(round_trip(&s), s);
    }

    #[test]
    fn missing_or_broken_fields_start_over() {
        assert_eq!(
            WalkState::from_fields(&HashMap::new()),
            WalkState::default()
        );
        let h: HashMap<String, String> = [
            (INDEX_PHASE.to_owned(), "prune".to_owned()),
            (INDEX_SKIP.to_owned(), "x".to_owned()),
        ]
        .into_iter()
        .collect();
        // A prune phase without its key cannot resume: idle, and the next pass starts from scratch.
        assert_eq!(WalkState::from_fields(&h).index, IndexPass::Idle);
    }
}
