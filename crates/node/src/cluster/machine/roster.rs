//! The membership record (DESIGN.md §4 item 3): the nodes the operators
//! approved, which is whom members trust.
//!
//! openraft applies a membership entry when it is appended, so a leader can
//! put any node into Raft's membership and no replica can veto it. What a
//! member trusts is therefore not Raft's membership but this record, in the
//! application state: it is set when the cluster is initialised (the
//! founding voters, each of whom stated the init) and changed only by a
//! [`Change::AddNode`] or [`Change::RemoveNode`] the operator quorum
//! approved. The members (whose peer messages, statements and
//! endorsements are accepted, under the keys in the record) are the
//! record's nodes, whatever Raft's membership says: a leader can neither
//! add a member of its own nor take an honest member's trust away by a
//! membership entry. The leader makes Raft's membership follow the record
//! (`cluster::membership::follow_roster`); until it has, an approved node
//! is a member that does not answer yet. A node a leader adds on its own
//! is in Raft's membership only: it may take part in Raft (replicate the
//! log, vote), and no member listens to it otherwise.
//!
//! Before init (and on a cluster made before the record existed) the
//! record is not in force and members follow Raft's membership, each
//! keeping the keys it joined with.
//!
//! [`Change::AddNode`]: keyquorum_wire::control::Change::AddNode
//! [`Change::RemoveNode`]: keyquorum_wire::control::Change::RemoveNode

use std::collections::{BTreeMap, BTreeSet};

use keyquorum_wire::control::{Founder, NodeInfo};
use keyquorum_wire::{Hex32, NodeId};
use serde::{Deserialize, Serialize};

use super::operators::DRAIN_RULES;
use super::Registry;

/// An approved node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterNode {
    /// Its address and keys.
    pub info: NodeInfo,
    /// A voter, or a learner.
    pub voter: bool,
}

/// One change to the record, for `audit verify`: from the audit log's
/// `at`-th entry on, `node` is a member with `identity`, or no member
/// (`None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEvent {
    /// The audit log's length when the change took effect.
    pub at: u64,
    /// The node.
    pub node: NodeId,
    /// Its identity key from then on; `None`: removed.
    pub identity: Option<Hex32>,
}

/// The membership record and Raft's membership as the log last named it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    /// Whether the record is in force (from init on).
    pub in_force: bool,
    /// The approved nodes.
    pub nodes: BTreeMap<NodeId, RosterNode>,
    /// Every change since init, oldest first (each needs the operator
    /// quorum's approval, so it grows only as fast as they approve).
    pub history: Vec<RosterEvent>,
    /// Raft's membership (voters and learners) as the last membership
    /// entry applied named it, each keeping the keys it joined with.
    pub raft_nodes: BTreeMap<NodeId, NodeInfo>,
    /// Raft's voters among them.
    pub raft_voters: BTreeSet<NodeId>,
}

impl Roster {
    /// The record's voters, with their addresses and keys.
    pub fn voters(&self) -> impl Iterator<Item = (NodeId, &NodeInfo)> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.voter)
            .map(|(id, n)| (*id, &n.info))
    }

    /// The identity `node` had as a member when the audit log had `len`
    /// entries, if the record says (`None`: not a member then, or the
    /// record does not reach back that far). A change made at exactly
    /// `len` counts either way: the node was a member on one side of it.
    pub fn identity_at(&self, node: NodeId, len: u64) -> Option<Hex32> {
        let mine = || self.history.iter().filter(|e| e.node == node);
        mine()
            .filter(|e| e.at == len)
            .filter_map(|e| e.identity)
            .next_back()
            .or_else(|| mine().rfind(|e| e.at < len).and_then(|e| e.identity))
    }

    /// Whether the record's last change to `node` removed it.
    pub fn removed(&self, node: NodeId) -> bool {
        self.history
            .iter()
            .rfind(|e| e.node == node)
            .is_some_and(|e| e.identity.is_none())
    }

    /// The audit log's length when the record came into force.
    pub fn since(&self) -> Option<u64> {
        self.history.first().map(|e| e.at)
    }

    fn record(&mut self, at: u64, node: NodeId, identity: Option<Hex32>) {
        self.history.push(RosterEvent { at, node, identity });
    }
}

impl Registry {
    /// Recompute the members and voters from Raft's membership and the
    /// record (see the module docs).
    pub(super) fn derive_members(&mut self) {
        let roster = &self.roster;
        if roster.in_force {
            self.members = roster
                .nodes
                .iter()
                .map(|(id, n)| (*id, n.info.clone()))
                .collect();
            self.voters = roster.voters().map(|(id, _)| id).collect();
        } else {
            self.members = roster.raft_nodes.clone();
            self.voters = roster
                .raft_voters
                .iter()
                .filter(|v| self.members.contains_key(v))
                .copied()
                .collect();
        }
        // Messages are routed among the voters: their history lets a
        // receiver check a message routed before a change (from rules 5,
        // which start it, so every replica keeps the same history).
        if self.rules >= crate::cluster::audit::log::AUDIT_RULES {
            self.note_route();
        }
    }

    /// The identity key of `signer` as a member when the audit log had
    /// `seq + 1` entries (a head at entry `seq`): from the membership
    /// record's history once it is in force, a founding voter before, and
    /// for a cluster made before the record its members now.
    pub fn head_signer(&self, signer: NodeId, seq: u64) -> Option<Hex32> {
        let len = seq.saturating_add(1);
        match self.roster.since() {
            Some(since) if len >= since => self.roster.identity_at(signer, len),
            Some(_) => self.founders.get(&signer).copied(),
            None => self.members.get(&signer).map(|m| m.identity),
        }
    }

    /// Note the voters as messages' routing membership from now on.
    pub(super) fn note_route(&mut self) {
        let routing = self
            .voters
            .iter()
            .filter_map(|id| {
                self.members.get(id).map(|m| keyquorum_wire::msg::MsgNode {
                    id: *id,
                    identity: m.identity,
                    hpke: m.hpke,
                })
            })
            .collect();
        let now = self.clock.now_ms();
        self.msg.note_route(now, routing);
    }

    /// The founding members an init names, each with the address and
    /// keys it stated for itself: each must be a voter from before init
    /// (it states the init) with the identity it had then. None named (an
    /// init from before the field): the founding voters that are members
    /// now.
    pub(super) fn founding(&self, nodes: &[Founder]) -> Result<Vec<(NodeId, NodeInfo)>, String> {
        if nodes.is_empty() {
            return Ok(self
                .members
                .iter()
                .filter(|(id, m)| {
                    self.voters.contains(id) && self.founders.get(id) == Some(&m.identity)
                })
                .map(|(id, m)| (*id, m.clone()))
                .collect());
        }
        let ids: BTreeSet<NodeId> = nodes.iter().map(|f| f.id).collect();
        if ids.len() != nodes.len() {
            return Err("an init names each node once".into());
        }
        nodes
            .iter()
            .map(|f| match self.founders.get(&f.id) {
                Some(identity) if f.info.identity == *identity => Ok((f.id, f.info.clone())),
                _ => Err(format!(
                    "node {}, which the init names, is not a founding voter with that identity",
                    f.id
                )),
            })
            .collect()
    }

    /// Put the record in force at init with these founding members.
    pub(super) fn roster_from_founders(&mut self, founders: Vec<(NodeId, NodeInfo)>) {
        let at = self.audit.len();
        let roster = &mut self.roster;
        roster.in_force = true;
        for (id, info) in founders {
            roster.record(at, id, Some(info.identity));
            roster.nodes.insert(id, RosterNode { info, voter: true });
        }
        self.derive_members();
    }

    /// Whether node `id` may be added with these keys.
    pub(super) fn check_add_node(
        &self,
        id: NodeId,
        addr: &str,
        identity: &Hex32,
        hpke: &Hex32,
    ) -> Result<(), String> {
        if !self.roster.in_force {
            return Err("the cluster is not initialised".into());
        }
        if self.roster.nodes.contains_key(&id) {
            return Err(format!("node {id} is a member"));
        }
        // A tree's record names its members by id: a new node under a
        // removed member's id would count in its lock quorums without the
        // old one's lock records or shares.
        if self.rules >= DRAIN_RULES {
            if let Some(t) = self
                .seedtree
                .trees
                .values()
                .find(|t| t.record.members.contains(&id))
            {
                return Err(format!(
                    "node id {id} is a member of the signing tree {}; use another id",
                    t.record.name
                ));
            }
        }
        if !(addr.starts_with("https://") || addr.starts_with("http://"))
            || addr.len() > 256
            || addr.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err("addr must be an http(s) URL of at most 256 characters".into());
        }
        if ed25519_dalek::VerifyingKey::from_bytes(&identity.0).is_err() {
            return Err("identity is not an Ed25519 public key".into());
        }
        if crate::identity::hpke_public(hpke).is_err() {
            return Err("hpke is not an X25519 public key".into());
        }
        if self
            .roster
            .nodes
            .values()
            .any(|n| n.info.identity == *identity || n.info.hpke == *hpke)
        {
            return Err("those keys are another member's".into());
        }
        let authority = super::authority::authority_of(addr);
        if self
            .roster
            .nodes
            .values()
            .any(|n| super::authority::authority_of(&n.info.addr) == authority)
        {
            return Err("that address is another member's".into());
        }
        Ok(())
    }

    /// Whether `name` is the PIN key of a secret the log destroyed (from
    /// rules 16): its guardians erased their shares, so it holds nothing.
    fn retired_pin_key(&self, name: &str) -> bool {
        self.rules >= crate::recovery::state::AGAIN_RULES
            && keyquorum_wire::recovery::pin_key_of(name).is_some_and(|(account, g)| {
                self.recovery.pin_keys.contains_key(account)
                    && self.recovery.secrets.contains_key(account)
                    && !self.recovery.pin_generations_in_use(account).contains(&g)
            })
    }

    /// Whether node `id` may be removed: a member holding no key shares,
    /// not the last voter.
    pub(super) fn check_remove_node(&self, id: NodeId, despite_trees: bool) -> Result<(), String> {
        let Some(n) = self.roster.nodes.get(&id) else {
            return Err(format!("node {id} is not a member"));
        };
        let holds: Vec<&str> = self
            .keys
            .records
            .values()
            .filter(|k| k.members.contains(&id))
            .filter(|k| !self.retired_pin_key(&k.name))
            .map(|k| k.name.as_str())
            .collect();
        if !holds.is_empty() {
            return Err(format!(
                "node {id} holds shares of {holds:?}; reshare them away first \
                 (keyquorum cluster drain {id})"
            ));
        }
        // A tree member leaves once a drain moved its trees' leaves (rules
        // 15), or if the operators say so: it keeps its shares of the
        // tree's unused leaves, and
        // the tree's lock quorum still counts it (with too few others the
        // tree stops signing for good).
        if despite_trees && self.rules < DRAIN_RULES {
            return Err(format!("despite_trees needs apply rules {DRAIN_RULES}"));
        }
        if self.rules >= DRAIN_RULES && !despite_trees {
            let trees: Vec<&str> = self
                .seedtree
                .trees
                .values()
                .filter(|t| t.record.members.contains(&id))
                .map(|t| t.record.name.as_str())
                .collect();
            if !trees.is_empty() {
                return Err(format!(
                    "node {id} is a member of the signing trees {trees:?}: move their leaves \
                     first (keyquorum cluster drain {id}); removing it with despite_trees \
                     leaves it its shares \
                     of their unused leaves and stops a tree that cannot gather a lock quorum \
                     without it"
                ));
            }
        }
        if n.voter && self.roster.nodes.values().filter(|n| n.voter).count() == 1 {
            return Err("cannot remove the last voter".into());
        }
        Ok(())
    }

    /// Whether node `id` may be drained onto `onto`: both members (and
    /// distinct), neither drained already, and rules 12 in force.
    pub(super) fn check_drain(&self, id: NodeId, onto: Option<NodeId>) -> Result<(), String> {
        if self.rules < DRAIN_RULES {
            return Err(format!(
                "drains need apply rules {DRAIN_RULES} (the log is at {})",
                self.rules
            ));
        }
        if !self.roster.nodes.contains_key(&id) {
            return Err(format!("node {id} is not a member"));
        }
        if self.operators.drains.contains_key(&id) {
            return Err(format!("node {id} is being drained already"));
        }
        // No chains: a node taking another's place is not drained in turn
        // (the first drain's keys would lose their replacement).
        if let Some((d, _)) = self
            .operators
            .drains
            .iter()
            .find(|(_, onto)| **onto == Some(id))
        {
            return Err(format!("node {id} is taking node {d}'s place"));
        }
        if let Some(o) = onto {
            if o == id {
                return Err("a node cannot take its own place".into());
            }
            if !self.roster.nodes.contains_key(&o) {
                return Err(format!("node {o} is not a member"));
            }
            if self.operators.drains.contains_key(&o) {
                return Err(format!("node {o} is being drained"));
            }
        }
        Ok(())
    }

    /// Add an approved node to the record.
    pub(super) fn add_node(&mut self, id: NodeId, info: NodeInfo, voter: bool) {
        let at = self.audit.len();
        self.roster.record(at, id, Some(info.identity));
        self.roster.nodes.insert(id, RosterNode { info, voter });
        self.derive_members();
    }

    /// Take an approved removal out of the record.
    pub(super) fn remove_node(&mut self, id: NodeId) {
        let at = self.audit.len();
        self.roster.record(at, id, None);
        self.roster.nodes.remove(&id);
        // An approved key policy naming it is void (a node re-added under
        // this id later is another node).
        self.operators
            .key_policies
            .retain(|_, p| !p.members.contains(&id));
        // So is a drain of it, or onto it (and, rules 13 on, the pending
        // drains and cancellations of the drains that end).
        let ended: Vec<NodeId> = self
            .operators
            .drains
            .iter()
            .filter(|(d, onto)| **d == id || **onto == Some(id))
            .map(|(d, _)| *d)
            .collect();
        self.operators
            .drains
            .retain(|d, onto| *d != id && *onto != Some(id));
        for d in ended {
            self.void_pending_drain_changes(d);
        }
        // And (rules 12 on) a pending change that names it: approvals given
        // for this node do not carry over to another under its id.
        if self.rules >= DRAIN_RULES {
            self.operators
                .changes
                .retain(|_, c| c.done || !names(&c.change, id));
        }
        // So is what it announced (`rules`).
        self.announced.remove(&id);
        self.derive_members();
    }
}

/// Whether `change` names node `id` (as the node it adds, removes, drains
/// or drains onto, or as a key's member).
fn names(change: &keyquorum_wire::control::Change, id: NodeId) -> bool {
    use keyquorum_wire::control::Change;
    match change {
        Change::AddNode { id: n, .. }
        | Change::RemoveNode { id: n, .. }
        | Change::CancelDrain { id: n } => *n == id,
        Change::DrainNode { id: n, onto } => *n == id || *onto == Some(id),
        Change::SetKeyPolicy { members, .. } => members.contains(&id),
        Change::AddOperator { .. } | Change::RemoveOperator { .. } | Change::SetQuorum { .. } => {
            false
        }
    }
}
