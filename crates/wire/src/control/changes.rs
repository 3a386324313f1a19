//! Changes the operator quorum approves (DESIGN.md §4 item 4): what each
//! one asks, its record of approvals, and what an approved drain makes of
//! a key's members.

use serde::{Deserialize, Serialize};

use crate::{Hex32, NodeId};

/// A change to the cluster's operators that needs the operator quorum's
/// approval (DESIGN.md §4 item 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// Enrol an operator: a name (unique among clients and operators) and
    /// the Ed25519 public key its holder made on its own machine.
    AddOperator {
        /// Its name and RFC 9421 `keyid`.
        name: String,
        /// Its Ed25519 public key.
        public_key: Hex32,
    },
    /// Remove an operator (revoked; its name stays taken). Refused if fewer
    /// operators than the quorum would remain.
    RemoveOperator {
        /// Its name.
        name: String,
    },
    /// Set how many distinct operators must approve (1 ..= operators).
    SetQuorum {
        /// The new quorum.
        quorum: u16,
    },
    /// Add a node to the membership record: every member trusts it (its
    /// messages, statements and endorsements, under these keys) once the
    /// leader has also made it a Raft learner (then a voter, if `voter`).
    AddNode {
        /// Its id (1..=65535, not a member's).
        id: NodeId,
        /// Its API base URL.
        addr: String,
        /// Its Ed25519 identity public key.
        identity: Hex32,
        /// Its X25519 HPKE public key.
        hpke: Hex32,
        /// A voter (default) or a learner.
        #[serde(default = "yes")]
        voter: bool,
    },
    /// Remove a node from the membership record: no member trusts it from
    /// then on, and the leader takes it out of Raft's membership. Refused
    /// while it holds key shares or if it is the last voter, and (apply
    /// rules 12 on) while it is a member of a signing tree, unless
    /// `despite_trees`.
    RemoveNode {
        /// Its id.
        id: NodeId,
        /// Remove it although it is a member of signing trees (apply rules
        /// 12 on): it keeps its shares of their unused leaves (they cannot
        /// be moved yet), and a tree whose other members are fewer than
        /// its lock quorum stops signing for good.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        despite_trees: bool,
    },
    /// Drain a node before its removal (apply rules 12 on): from then on
    /// any key that has a share on it (shared keys, HE sessions', OPRF and
    /// PIN keys) may be reshared, keeping its threshold, to its members
    /// with `id` replaced by `onto` (or left out, if `onto` is none or
    /// already a member), and an account's rotation leaves `id` out of
    /// its guardians; one approval for every such step, each participant
    /// checking it in its own replica. Void once either node is removed.
    DrainNode {
        /// The node to drain.
        id: NodeId,
        /// The member that takes its place, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        onto: Option<NodeId>,
    },
    /// Stop draining a node (apply rules 13 on): what was moved stays
    /// moved; from then on its keys may no longer be reshared off it on
    /// the drain's approval, and new keys, sessions, trees and guardians
    /// may be put on it again.
    CancelDrain {
        /// The node being drained.
        id: NodeId,
    },
    /// Change a key's signing policy: allow its next reshare to give it
    /// this threshold and these members (once; a reshare that keeps both
    /// needs no approval).
    SetKeyPolicy {
        /// The key's name.
        key: String,
        /// Its new threshold (2 ..= members).
        threshold: u16,
        /// Its new share holders (members of the cluster).
        members: Vec<NodeId>,
    },
}

fn yes() -> bool {
    true
}

/// `members` with every drain in `drains` (node → the member taking its
/// place) applied: each drained node replaced by its replacement, or left
/// out if it has none, that one is already there or is drained too;
/// sorted, each once. `None` if no drained node is among them.
pub fn drained(
    drains: &std::collections::BTreeMap<NodeId, Option<NodeId>>,
    members: &[NodeId],
) -> Option<Vec<NodeId>> {
    if !members.iter().any(|m| drains.contains_key(m)) {
        return None;
    }
    let mut out: std::collections::BTreeSet<NodeId> = members
        .iter()
        .filter(|m| !drains.contains_key(m))
        .copied()
        .collect();
    for m in members {
        if let Some(Some(onto)) = drains.get(m) {
            if !drains.contains_key(onto) {
                out.insert(*onto);
            }
        }
    }
    Some(out.into_iter().collect())
}

/// A proposed [`Change`] and its approvals. It takes effect when the
/// `needed`-th distinct operator approves it, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeRecord {
    /// Id: 16 random bytes, lowercase hex.
    pub id: String,
    /// The change.
    pub change: Change,
    /// The client or operator that proposed it.
    pub requested_by: String,
    /// Operators that approved; distinct.
    pub approvals: Vec<String>,
    /// Approvals needed: the operator quorum when it was proposed.
    pub needed: u16,
    /// Whether it took effect.
    pub done: bool,
    /// When it was proposed (ms since the Unix epoch, the proposing node's
    /// clock; fresh by the log clock on apply).
    pub created_ms: u64,
}
