//! The keeper: makes this node hold the whole audit log. A snapshot carries
//! only the log's head ([`super::AuditLog`]), so a node that installs one (a
//! new member, a member the leader's compacted log left behind) lacks the
//! entries before it. The keeper finds the first entry or tree leaf it
//! lacks and:
//!
//! 1. **fetches missing entries from other members, newest first**, each
//!    checked before it is stored: the hash the gap must end with is known
//!    (the replicated state's last hash, vouched for with the snapshot, or
//!    the `prev` of the first entry held after the gap), an entry is taken
//!    only if its recomputed hash is that, and its own `prev` is then the
//!    hash the entry before it must have. So a member that answers with
//!    anything else is caught on the first wrong entry, and nothing it
//!    sent is stored. Where the gap meets the entries held before it, the
//!    chain must join them;
//! 2. **computes the tree's subtrees** for entries held without them, from
//!    the subtrees stored before them, locally.
//!
//! Both steps are resumable: what is stored is checked, and the next round
//! starts from the first thing missing.

use std::time::Duration;

use keyquorum_core::merkle::{self, Frontier};
use keyquorum_store::raft::SideWrite;
use keyquorum_wire::control::AuditEntry;
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::Hex32;

use super::log::{audit_hash, SPACE_ENTRY, SPACE_TREE};
use super::{stored, Node, PAGE};
use crate::cluster::fetch::{self, Fetch, PageFault, Run};
use crate::error::NodeError;

/// The most entries one fetch asks for, and a member answers.
pub const FETCH_MAX: usize = 1000;

/// About the most bytes of entries a member answers at once (at least one
/// entry goes).
pub const FETCH_BYTES: usize = 4 << 20;

/// How often the keeper looks for something missing.
const ROUND: Duration = Duration::from_secs(1);

/// Run the keeper until the node stops.
pub(crate) async fn keeper(node: Node) {
    // Leaves [0, held) and their subtrees and entries are stored.
    let mut held = 0u64;
    let mut turn = 0usize;
    loop {
        // Entries whose records the store has written: a gap before that
        // is a real one, not an apply in progress.
        let len = node.registry(|r| r.audit.written_len());
        if held >= len {
            tokio::time::sleep(ROUND).await;
            continue;
        }
        let n = node.clone();
        let step = tokio::task::spawn_blocking(move || local_step(&n, held, len)).await;
        let step = match step {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "audit keeper: reading the stored log failed");
                tokio::time::sleep(ROUND).await;
                continue;
            }
            Err(_) => return,
        };
        match step {
            Step::Held(upto) if upto > held => held = upto,
            // No progress: a stored record is not what it should be
            // (`verify_audit` names it).
            Step::Held(_) => {
                tracing::warn!(held, "audit keeper: the stored log does not continue here");
                tokio::time::sleep(ROUND).await;
            }
            Step::Fetch { from, to, expect } => {
                turn = turn.wrapping_add(1);
                match fetch(&node, from, to, expect, turn).await {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, from, to, "audit keeper: could not fetch entries yet");
                        tokio::time::sleep(ROUND).await;
                    }
                }
            }
        }
    }
}

/// What the keeper does next.
enum Step {
    /// Everything before this is stored.
    Held(u64),
    /// Entries `from..to` are missing; entry `to - 1` has hash `expect`.
    Fetch { from: u64, to: u64, expect: Hex32 },
}

/// Find the first missing leaf from `held`; compute the subtrees of entries
/// held without them; or say which entries to fetch.
fn local_step(node: &Node, held: u64, len: u64) -> Result<Step, NodeError> {
    let side = &node.0.side;
    let leaves = side.range(SPACE_TREE, held, PAGE).map_err(stored)?;
    let mut a = held;
    for (k, _) in &leaves {
        if *k != a || a >= len {
            break;
        }
        a += 1;
    }
    if a >= len || a > held {
        return Ok(Step::Held(a.min(len)));
    }
    // Leaf `a` is missing. Its entries, if held: compute the subtrees.
    let entries = node.audit_entries(a, PAGE)?;
    if !entries.is_empty() {
        let mut frontier = frontier_at(node, a)?;
        let mut writes = Vec::new();
        for e in entries.iter().take_while(|e| e.seq < len) {
            for (level, index, hash) in frontier.push(merkle::leaf_hash(&e.hash.0)) {
                writes.push(SideWrite {
                    space: SPACE_TREE + u32::from(level),
                    key: index,
                    value: hash.to_vec(),
                });
            }
        }
        side.put(&writes, true).map_err(stored)?;
        return Ok(Step::Held(frontier.size()));
    }
    // The entries are missing too: up to the next one held, or the end.
    let (len, last) = node.registry(|r| (r.audit.len(), r.audit.last_hash()));
    let next = side.range(SPACE_ENTRY, a, 1).map_err(stored)?;
    match next.first() {
        Some((b, v)) if *b < len => {
            let e: AuditEntry = serde_json::from_slice(v).map_err(stored)?;
            Ok(Step::Fetch {
                from: a,
                to: *b,
                expect: e.prev,
            })
        }
        _ => Ok(Step::Fetch {
            from: a,
            to: len,
            expect: last,
        }),
    }
}

/// The tree's frontier after its first `size` leaves, from the stored
/// subtrees of `size`'s binary decomposition.
fn frontier_at(node: &Node, size: u64) -> Result<Frontier, NodeError> {
    let mut nodes = Vec::new();
    let mut offset = 0u64;
    for level in (0..64u8).rev() {
        let width = 1u64 << level;
        if size & width != 0 {
            let h = node.audit_subtree(level, offset >> level).ok_or_else(|| {
                NodeError::Internal(format!(
                    "audit subtree (level {level}, index {}) is missing before leaf {size}",
                    offset >> level
                ))
            })?;
            nodes.push(h);
            offset += width;
        }
    }
    Frontier::from_parts(size, nodes)
        .ok_or_else(|| NodeError::Internal("audit frontier does not fit".into()))
}

/// How audit entries are fetched, checked and stored.
struct Entries;

impl Fetch for Entries {
    type Item = AuditEntry;

    fn ask(&self, from: u64, limit: u32) -> PeerMessage {
        PeerMessage::AuditFetch { from, limit }
    }

    fn take(&self, answer: PeerMessage) -> Option<Vec<AuditEntry>> {
        match answer {
            PeerMessage::AuditEntries { entries } => Some(entries),
            _ => None,
        }
    }

    fn check(
        &self,
        page: &[AuditEntry],
        start: u64,
        end: u64,
        expect: Hex32,
    ) -> Result<Hex32, PageFault> {
        check_page(page, start, end, expect)
    }

    fn writes(&self, page: &[AuditEntry]) -> Vec<SideWrite> {
        page.iter()
            .map(|e| SideWrite {
                space: SPACE_ENTRY,
                key: e.seq,
                value: serde_json::to_vec(e).unwrap_or_default(),
            })
            .collect()
    }
}

/// Fetch entries `from..to` from other members, newest first, storing each
/// page once it is checked (see the module text).
async fn fetch(
    node: &Node,
    from: u64,
    to: u64,
    expect: Hex32,
    turn: usize,
) -> Result<(), NodeError> {
    let run = Run {
        from,
        to,
        expect,
        turn,
        page: FETCH_MAX as u64,
        what: "audit entries",
    };
    let expect = fetch::newest_first(node, run, &Entries).await?;
    // The fetched chain must join the entry held before the gap.
    let joined = match from.checked_sub(1) {
        None => expect == Hex32([0u8; 32]),
        Some(p) => node
            .audit_entries(p, 1)?
            .first()
            .is_some_and(|e| e.hash == expect),
    };
    if !joined {
        return Err(NodeError::Internal(format!(
            "the audit log's entries before {from} stored here do not join the chain the \
             members hold: this node's store was altered"
        )));
    }
    Ok(())
}

/// Check a page `start..end` newest first against the hash its last entry
/// must have; answers the hash the entry before `start` must have.
fn check_page(
    entries: &[AuditEntry],
    start: u64,
    end: u64,
    mut expect: Hex32,
) -> Result<Hex32, PageFault> {
    if entries.len() as u64 != end - start {
        return Err(PageFault::Short);
    }
    for (e, seq) in entries.iter().rev().zip((start..end).rev()) {
        if e.seq != seq || e.hash != expect || audit_hash(e.seq, &e.prev, &e.event) != expect {
            return Err(PageFault::Wrong(seq));
        }
        expect = e.prev;
    }
    Ok(expect)
}

#[cfg(test)]
mod tests {
    use super::super::log::tests::logged;
    use super::*;

    #[test]
    fn a_page_is_taken_only_if_it_ends_at_the_known_hash() {
        let (log, all) = logged(0..6);
        let head = log.last_hash();
        // The last three, then the first three.
        let prev = check_page(&all[3..], 3, 6, head).unwrap();
        assert_eq!(prev, all[2].hash);
        assert_eq!(check_page(&all[..3], 0, 3, prev), Ok(Hex32([0u8; 32])));
        // Short, altered, re-linked or shifted pages are refused.
        assert_eq!(check_page(&all[4..], 3, 6, head), Err(PageFault::Short));
        let mut altered = all.clone();
        altered[4].event.outcome = "denied".into();
        assert_eq!(
            check_page(&altered[3..], 3, 6, head),
            Err(PageFault::Wrong(4))
        );
        // A forged entry with its hash recomputed breaks the link above it.
        altered[4].hash = audit_hash(4, &altered[4].prev, &altered[4].event);
        assert_eq!(
            check_page(&altered[3..], 3, 6, head),
            Err(PageFault::Wrong(4))
        );
        assert_eq!(check_page(&all[2..5], 3, 6, head), Err(PageFault::Wrong(5)));
        // A whole forged chain does not end at the head.
        let (_, forged) = logged(10..16);
        assert_eq!(
            check_page(&forged[3..], 3, 6, head),
            Err(PageFault::Wrong(5))
        );
    }
}
