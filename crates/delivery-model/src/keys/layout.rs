//! Where keys live: one Redis node (today's names) or a Redis Cluster, where every key a Lua script touches
//! must hash to one slot (`docs/cluster.md`).
//!
//! In cluster mode Hookline's keys carry a **hash tag** (Redis hashes only the text between the first `{`
//! and the next `}`): the control tag `{hl:c}` for subscriptions, add-ons, quotas and cleanup's bookkeeping,
//! and one shard tag per queue shard for a shard's queue, schedule, delivery records and delivery indexes.
//! Standalone and Sentinel keep today's untagged names byte for byte: there the layout has one shard whose
//! tag is empty, so code written per shard runs unchanged on one node.

use crate::ids::DeliveryId;

/// Number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;
/// Default number of queue shards in cluster mode (`redis.cluster_shards`): divides evenly over 1, 2, 3, 4,
/// 6 and 12 masters.
pub const DEFAULT_CLUSTER_SHARDS: u16 = 12;
/// Most queue shards a cluster layout may have. Each shard's tag is found by a short search at start (see
/// [`shard_tag`]); at 256 shards a shard's slot range is 64 slots wide and the search stays in the
/// hundreds of hashes per shard.
pub const MAX_CLUSTER_SHARDS: u16 = 256;
/// The control tag, braces included (`hl:c` hashes to slot 1152).
pub const CONTROL_TAG: &str = "{hl:c}";

/// How Hookline's keys are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One node (or a Sentinel-managed primary): today's key names, one queue.
    Standalone,
    /// A Redis Cluster: tagged names, the queue split into `shards` shards.
    Cluster { shards: u16 },
}

/// One queue shard: its stream, schedule, and the delivery records and indexes it owns share one slot.
/// Standalone has exactly one, [`Shard::ZERO`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shard(u16);

impl Shard {
    /// The first shard; in standalone mode the only one.
    pub const ZERO: Shard = Shard(0);

    /// The shard's index in `0..shards`.
    pub fn index(self) -> u16 {
        self.0
    }

    pub(crate) fn new(index: u16) -> Self {
        Shard(index)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The shard that owns a delivery: the last 8 bytes of its UUID (random in v4 and v7 ids, HMAC output in
/// keyed fan-out ids, so uniform) modulo the shard count. A pure function of the id, so every route that
/// names a delivery finds its record without asking anything.
pub fn shard_of(id: DeliveryId, shards: u16) -> Shard {
    let bytes = id.0.as_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..16]);
    let n = u64::from_be_bytes(low) % u64::from(shards.max(1));
    // n < shards ≤ u16::MAX, so the conversion cannot fail.
    Shard(u16::try_from(n).unwrap_or(0))
}

/// The hash tag of shard `i` of `shards`, without braces: `hl:s<i>.<salt>` with the smallest salt whose slot
/// lies in the middle half of the `i`-th of `shards` equal slot ranges. Plain sequential tags (`hl:s0`,
/// `hl:s1`, …) cluster on CRC16 and put up to 5 of 12 shards on one of three masters; salting spreads them
/// exactly over any master count dividing `shards` when the slots are split evenly.
pub fn shard_tag(i: u16, shards: u16) -> String {
    let n = u32::from(shards.max(1));
    let i = u32::from(i);
    let lo = i * u32::from(SLOTS) / n;
    let hi = (i + 1) * u32::from(SLOTS) / n;
    let quarter = (hi - lo) / 4;
    let (from, to) = (lo + quarter, hi - quarter);
    // Every slot of [from, to) is hit by some salt: CRC16 of varying decimal suffixes covers the slot space,
    // and `shards` ≤ MAX_CLUSTER_SHARDS keeps the range at least 32 slots wide. The bound only stops a
    // logic error from spinning; it is never reached for valid shard counts (checked by a unit test).
    let mut fallback = format!("hl:s{i}");
    for salt in 0..1_000_000u32 {
        let tag = format!("hl:s{i}.{salt}");
        let slot = u32::from(crc16(tag.as_bytes()) % SLOTS);
        if (from..to).contains(&slot) {
            return tag;
        }
        if salt == 0 {
            fallback = tag;
        }
    }
    fallback
}

/// The slot Redis Cluster assigns to `key`: CRC16 (XMODEM) of its hash tag (the text between the first `{`
/// and the next `}`, when not empty), else of the whole key, modulo 16384.
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(bytes);
    crc16(hashed) % SLOTS
}

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum Redis Cluster's slots use.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (0..8).fold(crc ^ (u16::from(b) << 8), |c, _| {
            if c & 0x8000 != 0 {
                (c << 1) ^ 0x1021
            } else {
                c << 1
            }
        })
    })
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn crc16_and_slots_match_redis() {
        // The check value of CRC16/XMODEM, and slots Redis's CLUSTER KEYSLOT answers.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        // An empty tag hashes the whole key.
        assert_eq!(key_slot("foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
        assert_eq!(key_slot(CONTROL_TAG), 1152);
        assert_eq!(key_slot("tmi:events"), 2398);
    }

    #[test]
    fn salted_tags_of_twelve_shards_are_the_documented_ones() {
        // docs/cluster.md §1.6: exactly 4/4/4 over three masters with even slot ranges.
        let expected = [
            ("hl:s0.3", 473),
            ("hl:s1.8", 1922),
            ("hl:s2.62", 3501),
            ("hl:s3.11", 4845),
            ("hl:s4.29", 6043),
            ("hl:s5.62", 7296),
            ("hl:s6.2", 9048),
            ("hl:s7.12", 10367),
            ("hl:s8.13", 11440),
            ("hl:s9.60", 13296),
            ("hl:s10.50", 14280),
            ("hl:s11.13", 15835),
        ];
        for (i, (tag, slot)) in expected.iter().enumerate() {
            let got = shard_tag(u16::try_from(i).unwrap(), 12);
            assert_eq!(&got, tag);
            assert_eq!(key_slot(&format!("{{{got}}}x")), *slot);
        }
    }

    #[test]
    fn every_valid_shard_count_finds_a_tag_in_its_range() {
        for n in [1, 2, 3, 5, 7, 12, 64, 100, MAX_CLUSTER_SHARDS] {
            for i in 0..n {
                let tag = shard_tag(i, n);
                assert!(tag.contains('.'), "shard {i} of {n} fell back to {tag}");
                let slot = u32::from(key_slot(&tag));
                let lo = u32::from(i) * 16384 / u32::from(n);
                let hi = (u32::from(i) + 1) * 16384 / u32::from(n);
                assert!(
                    (lo..hi).contains(&slot),
                    "{tag} at {slot} outside {lo}..{hi}"
                );
            }
        }
    }

    #[test]
    fn shard_of_uses_the_last_eight_bytes() {
        let id: DeliveryId = "0190f0c0-0000-7000-8000-00000000000d".parse().unwrap();
        // 0x8000_0000_0000_000d mod 12 = 9.
        assert_eq!(shard_of(id, 12), Shard(9));
        assert_eq!(shard_of(id, 1), Shard::ZERO);
        // Uniform enough: 1200 random ids leave no shard of 12 empty.
        let mut seen = [0u32; 12];
        for _ in 0..1200 {
            seen[usize::from(shard_of(DeliveryId::new_v7(), 12).index())] += 1;
        }
        assert!(seen.iter().all(|&c| c > 0), "{seen:?}");
    }
}
