//! What a cluster node says about the cluster: `CLUSTER NODES` parsed into [`NodeView`]s. The key → slot
//! function is delivery-model's (`keys::layout::key_slot`), so tests pick keys on chosen masters with the
//! same function the services lay their keys out with.

pub use delivery_model::keys::layout::{SLOTS, key_slot};

/// One line of `CLUSTER NODES`, as far as the harness needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// The node's 40-character id.
    pub id: String,
    /// Its port as the asking connection sees it (the plain port when asked over plain text).
    pub port: u16,
    /// `master` in its flags (a failed master keeps the flag, without slots once its replica took over).
    pub master: bool,
    /// `fail` or `fail?` in its flags: the cluster (or the node asked) believes it is down.
    pub failing: bool,
    /// The master it replicates, for a replica.
    pub master_id: Option<String>,
    /// The slot ranges it serves, inclusive (migrating/importing markers `[…]` left out).
    pub slots: Vec<(u16, u16)>,
}

impl NodeView {
    /// Whether the node serves `slot`.
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }

    /// Number of slots it serves.
    pub fn slot_count(&self) -> u32 {
        self.slots
            .iter()
            .map(|&(a, b)| u32::from(b) - u32::from(a) + 1)
            .sum()
    }
}

/// Parses a `CLUSTER NODES` reply; lines it cannot read are skipped.
pub fn parse_nodes(text: &str) -> Vec<NodeView> {
    text.lines().filter_map(parse_line).collect()
}

/// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>…`
fn parse_line(line: &str) -> Option<NodeView> {
    let mut parts = line.split_whitespace();
    let id = parts.next()?.to_owned();
    let addr = parts.next()?;
    let port = addr.split('@').next()?.rsplit_once(':')?.1.parse().ok()?;
    let flags: Vec<&str> = parts.next()?.split(',').collect();
    let master_id = parts.next().filter(|m| *m != "-").map(str::to_owned);
    let slots = parts
        .skip(4)
        .filter(|s| !s.starts_with('['))
        .filter_map(|s| match s.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => s.parse().ok().map(|v| (v, v)),
        })
        .collect();
    Some(NodeView {
        id,
        port,
        master: flags.contains(&"master"),
        failing: flags.iter().any(|f| f.starts_with("fail")),
        master_id,
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_masters_replicas_failures_and_slot_ranges() {
        let text = "\
94039d 127.0.0.1:23101@33101 myself,master - 0 1796286753000 1 connected 0-99 100 [101->-2c91e9]\n\
2c91e9 127.0.0.1:23102@33102 master,fail - 1796286759526 1796286759019 2 disconnected\n\
6f34b8 127.0.0.1:23104@33104,node4.example slave 94039d 0 1796286753185 2 connected\n";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].slots, vec![(0, 99), (100, 100)]);
        assert!(nodes[0].master && !nodes[0].failing && nodes[0].serves(100));
        assert_eq!(nodes[0].slot_count(), 101);
        assert!(nodes[1].master && nodes[1].failing && nodes[1].slots.is_empty());
        assert_eq!(nodes[2].port, 23104);
        assert_eq!(nodes[2].master_id.as_deref(), Some("94039d"));
        assert!(!nodes[2].master);
    }
}
