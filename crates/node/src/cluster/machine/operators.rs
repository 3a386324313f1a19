//! The operators and their quorum (DESIGN.md §4 item 4): who approves the
//! changes no admin may make alone (exporting a key; enrolling or removing
//! an operator; changing the quorum; adding or removing a node: the
//! membership record, `roster`), and those changes' proposals.
//!
//! Operators are client identities with the `operator` grant and nothing
//! else. They enter the registry only through [`ClusterCommand::Init`]
//! (every voting member, each after the caller proved it holds that
//! member's init secret) or through an approved
//! [`Change::AddOperator`]: an admin registering a client cannot make one
//! (`authority`). Who may propose and approve is checked in `authority`;
//! here, what a change does to the state.
//!
//! [`ClusterCommand::Init`]: keyquorum_wire::control::ClusterCommand::Init

use std::collections::{BTreeMap, BTreeSet};

use keyquorum_wire::control::{Change, ChangeRecord, ClientRecord, CommandResponse, Grant};
use serde::{Deserialize, Serialize};

use keyquorum_wire::NodeId;

use super::Registry;

/// Most changes kept: past this, the oldest carried-out ones are dropped
/// (the audit log keeps them).
pub const MAX_CHANGES: usize = 1024;

/// Most changes one client may have pending (not carried out) at once, so
/// no one proposer can fill the table for the others.
pub const MAX_PENDING_PER_PROPOSER: usize = 16;

/// The operator quorum and the proposed changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operators {
    /// Distinct operator approvals an export or a change needs (0: the
    /// cluster is not initialised; nothing that needs approvals can run).
    pub quorum: u16,
    /// Proposed changes by id.
    pub changes: BTreeMap<String, ChangeRecord>,
    /// Threshold of a new key whose request states none, as `init` set
    /// it (unset: a majority of the key's members).
    #[serde(default)]
    pub default_threshold: Option<u16>,
    /// Signing policies the operator quorum approved, by key: the next
    /// reshare of that key may give it this threshold and these members
    /// (used up by it).
    #[serde(default)]
    pub key_policies: BTreeMap<String, KeyPolicy>,
    /// Drains the operator quorum approved (apply rules 12 on): node →
    /// the member that takes its place, if any. A key with a share on a
    /// drained node may be reshared to [`Registry::drained`] of its
    /// members, keeping its threshold.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drains: BTreeMap<NodeId, Option<NodeId>>,
}

/// Apply rules from which drains are approved
/// ([`Change::DrainNode`]) and
/// a signing tree's member is not removed.
pub const DRAIN_RULES: u16 = 12;
/// The apply rules from which a drain can be cancelled
/// ([`Change::CancelDrain`]).
pub const CANCEL_DRAIN_RULES: u16 = 13;
/// The apply rules from which an approval names what it approves
/// ([`keyquorum_wire::api::ApprovalRequest`], compared on apply).
pub const APPROVAL_RULES: u16 = 14;

/// A key's threshold and members, approved for its next reshare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPolicy {
    /// The threshold.
    pub threshold: u16,
    /// The members, sorted, each once.
    pub members: Vec<NodeId>,
}

impl KeyPolicy {
    /// `threshold` over `members` (in any order).
    pub fn new(threshold: u16, members: &[NodeId]) -> Self {
        KeyPolicy {
            threshold,
            members: members
                .iter()
                .copied()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        }
    }

    /// The policy a key record has now.
    pub fn of(record: &keyquorum_wire::control::KeyRecord) -> Self {
        Self::new(record.threshold, &record.members)
    }
}

impl Registry {
    /// Whether an approval must name what it approves
    /// ([`APPROVAL_RULES`]): once the log is at those rules, or may take
    /// them up (every member announced a build that knows them; a leader
    /// that keeps stamping older rules does not turn the check off).
    pub fn approvals_bound(&self) -> bool {
        self.rules >= APPROVAL_RULES || self.may_take_up(APPROVAL_RULES).is_ok()
    }

    /// Whether key `key` may be reshared to `threshold` over `members`
    /// (in any order): its policy stays as it is, or the operator
    /// quorum approved exactly this one, or it approved a drain of one of
    /// its members and these are the members drained, no fewer than now
    /// or more than the threshold (an account's keys excepted: its reset
    /// key moves by rotation, its PIN key not at all).
    pub fn policy_allows(&self, key: &str, threshold: u16, members: &[NodeId]) -> bool {
        let Some(current) = self.keys.records.get(key) else {
            return false;
        };
        let asked = KeyPolicy::new(threshold, members);
        KeyPolicy::of(current) == asked
            || self.operators.key_policies.get(key) == Some(&asked)
            || !crate::recovery::authority::reset_key(self, key)
                && self.drained(&current.members).is_some_and(|m| {
                    // A drain replaces; it shrinks a key only while a
                    // member more than the threshold stays (never t-of-t,
                    // where one member could veto signing and reshares).
                    (m.len() >= current.members.len() || m.len() > usize::from(current.threshold))
                        && KeyPolicy::new(current.threshold, &m) == asked
                })
    }

    /// `members` with every approved drain applied
    /// ([`keyquorum_wire::control::drained`]); `None` if no drained node
    /// is among them.
    pub fn drained(&self, members: &[NodeId]) -> Option<Vec<NodeId>> {
        keyquorum_wire::control::drained(&self.operators.drains, members)
    }

    /// The voters new keys, trees and accounts go to by default: those
    /// not being drained.
    pub fn candidates(&self) -> Vec<NodeId> {
        self.voters
            .iter()
            .filter(|v| !self.operators.drains.contains_key(v))
            .copied()
            .collect()
    }

    /// The threshold of a new key with `members` members whose request
    /// states none: the cluster's default (replicated, so an entry node
    /// cannot pick a lower one), or a majority; at most `members`.
    pub fn default_threshold(&self, members: usize) -> u16 {
        let n = u16::try_from(members).unwrap_or(u16::MAX);
        self.operators.default_threshold.unwrap_or(n / 2 + 1).min(n)
    }

    /// The live operators' names (operator grant, not revoked; operators do
    /// not expire).
    pub fn live_operators(&self) -> BTreeSet<String> {
        self.clients
            .values()
            .filter(|c| c.grant.operator && !c.revoked)
            .map(|c| c.grant.name.clone())
            .collect()
    }

    /// A new cluster's operators, quorum and first admin. Every record is
    /// checked here as `put_client` checks one; either all are registered
    /// or none.
    pub(super) fn init(
        &mut self,
        operators: &[ClientRecord],
        quorum: u16,
        admin: &ClientRecord,
        default_threshold: Option<u16>,
        nodes: &[keyquorum_wire::control::Founder],
    ) -> CommandResponse {
        if !self.clients.is_empty() {
            return CommandResponse::rejected("the cluster is initialised already");
        }
        let names: BTreeSet<&str> = operators
            .iter()
            .chain([admin])
            .map(|c| c.grant.name.as_str())
            .collect();
        if names.len() != operators.len() + 1 {
            return CommandResponse::rejected("operator and admin names must be distinct");
        }
        if operators.is_empty() || quorum == 0 || usize::from(quorum) > operators.len() {
            return CommandResponse::rejected("1 <= quorum <= operators");
        }
        if default_threshold.is_some_and(|t| t < 2) {
            return CommandResponse::rejected("a default threshold is at least 2");
        }
        // Rules 1 had no membership record and their inits named no nodes.
        // An init that names nodes was made for rules 2: stamped with rules
        // 1 (the founders' signatures do not cover the rules), a leader
        // would initialise without a record; refused.
        let founding = if self.rules < 2 {
            if !nodes.is_empty() {
                return CommandResponse::rejected(
                    "an init that names its nodes is applied under rules 2 or later",
                );
            }
            Vec::new()
        } else {
            match self.founding(nodes) {
                Ok(f) if !f.is_empty() => f,
                Ok(_) => return CommandResponse::rejected("an init names at least one node"),
                Err(reason) => return CommandResponse::rejected(reason),
            }
        };
        let only_operator = |c: &ClientRecord| {
            c.grant.operator
                && !c.grant.admin
                && c.grant.sign_keys.is_empty()
                && c.expires_ms.is_none()
                && !c.revoked
        };
        let only_admin = admin.grant.admin && !admin.grant.operator && !admin.revoked;
        if !operators.iter().all(only_operator) || !only_admin {
            return CommandResponse::rejected(
                "operators only approve; the admin is not an operator",
            );
        }
        let mut next = self.clients.clone();
        for record in operators.iter().chain([admin]) {
            if let Err(reason) = check_client(&next, record) {
                return CommandResponse::rejected(reason);
            }
            next.insert(record.grant.name.clone(), record.clone());
        }
        self.clients = next;
        self.operators.quorum = quorum;
        self.operators.default_threshold = default_threshold;
        // Rules 1 had no membership record: an init logged under them
        // replays without one (a cluster made then is a legacy cluster).
        if self.rules >= 2 {
            self.roster_from_founders(founding);
        }
        CommandResponse::Ok
    }

    /// Record a proposed change (checked against the state now; checked
    /// again when it takes effect).
    pub(super) fn propose_change(&mut self, record: &ChangeRecord) -> CommandResponse {
        if self.operators.changes.contains_key(&record.id) {
            return CommandResponse::rejected("change id in use");
        }
        let pending = |by: &str| {
            self.operators
                .changes
                .values()
                .filter(|c| !c.done && c.requested_by == by)
                .count()
        };
        if pending(&record.requested_by) >= MAX_PENDING_PER_PROPOSER {
            return CommandResponse::rejected(format!(
                "{} has {MAX_PENDING_PER_PROPOSER} changes pending",
                record.requested_by
            ));
        }
        if self.operators.changes.len() >= MAX_CHANGES {
            let oldest_done = self
                .operators
                .changes
                .values()
                .filter(|c| c.done)
                .min_by_key(|c| c.created_ms)
                .map(|c| c.id.clone());
            match oldest_done {
                Some(id) => {
                    self.operators.changes.remove(&id);
                }
                None => return CommandResponse::rejected("too many pending changes"),
            }
        }
        if let Err(reason) = self.check_change(&record.change) {
            return CommandResponse::rejected(reason);
        }
        self.operators
            .changes
            .insert(record.id.clone(), record.clone());
        CommandResponse::Ok
    }

    /// From rules 13, once node `id`'s drain starts or ends: the other
    /// pending drains and cancellations of its drain are void. They were
    /// approved (in part) for the state before, and one more approval must
    /// not carry one out in the state after (a cancellation ending a later
    /// drain, or an old drain onto another node coming back).
    pub(super) fn void_pending_drain_changes(&mut self, id: NodeId) {
        if self.rules < CANCEL_DRAIN_RULES {
            return;
        }
        self.operators.changes.retain(|_, c| {
            c.done
                || !matches!(
                    &c.change,
                    Change::DrainNode { id: d, .. } | Change::CancelDrain { id: d } if *d == id
                )
        });
    }

    /// An operator approves change `id`; at the `needed`-th distinct
    /// approval the change takes effect (if it still can: otherwise the
    /// approval is refused and nothing changes).
    pub(super) fn approve_change(&mut self, id: &str, operator: &str) -> CommandResponse {
        let Some(record) = self.operators.changes.get(id).cloned() else {
            return CommandResponse::rejected(format!("no change {id}"));
        };
        if record.done {
            return CommandResponse::rejected("the change was carried out already");
        }
        if record.approvals.iter().any(|a| a == operator) {
            return CommandResponse::rejected(format!("{operator} approved it already"));
        }
        let mut record = record;
        record.approvals.push(operator.to_string());
        // Approvals by operators removed since do not count.
        let live = self.live_operators();
        let counted = record
            .approvals
            .iter()
            .filter(|a| live.contains(*a))
            .count();
        // The quorum as it is now, if it was raised since the proposal.
        if counted >= usize::from(record.needed.max(self.operators.quorum)) {
            if let Err(reason) = self.check_change(&record.change) {
                return CommandResponse::rejected(reason);
            }
            self.carry_out(&record.change);
            record.done = true;
        }
        self.operators.changes.insert(id.to_string(), record);
        CommandResponse::Ok
    }

    /// Whether `change` can take effect on the state now.
    fn check_change(&self, change: &Change) -> Result<(), String> {
        let live = self.live_operators();
        match change {
            Change::AddOperator { name, public_key } => {
                // One key, one operator: Q approvals are Q keys' holders.
                if self.clients.values().any(|c| c.public_key == *public_key) {
                    return Err("that public key is another client's".into());
                }
                check_client(&self.clients, &operator_record(name.clone(), *public_key))
            }
            Change::RemoveOperator { name } => {
                if !live.contains(name) {
                    return Err(format!("{name} is not a live operator"));
                }
                if live.len() - 1 < usize::from(self.operators.quorum) {
                    return Err(format!(
                        "removing {name} would leave {} operators for a quorum of {}",
                        live.len() - 1,
                        self.operators.quorum
                    ));
                }
                Ok(())
            }
            Change::SetQuorum { quorum } => {
                if *quorum == 0 || usize::from(*quorum) > live.len() {
                    return Err(format!("1 <= quorum <= operators ({})", live.len()));
                }
                Ok(())
            }
            Change::AddNode {
                id,
                addr,
                identity,
                hpke,
                ..
            } => self.check_add_node(*id, addr, identity, hpke),
            Change::RemoveNode { id, despite_trees } => self.check_remove_node(*id, *despite_trees),
            Change::DrainNode { id, onto } => self.check_drain(*id, *onto),
            Change::CancelDrain { id } => {
                if self.rules < CANCEL_DRAIN_RULES {
                    return Err(format!(
                        "cancelling a drain needs apply rules {CANCEL_DRAIN_RULES} (the log is \
                         at {})",
                        self.rules
                    ));
                }
                if !self.operators.drains.contains_key(id) {
                    return Err(format!("node {id} is not being drained"));
                }
                Ok(())
            }
            Change::SetKeyPolicy {
                key,
                threshold,
                members,
            } => {
                let Some(current) = self.keys.records.get(key) else {
                    return Err(format!("no key {key}"));
                };
                let set: BTreeSet<NodeId> = members.iter().copied().collect();
                if set.len() != members.len() || members.len() > 1024 {
                    return Err("name each member once (at most 1024)".into());
                }
                if *threshold < 2 || usize::from(*threshold) > members.len() {
                    return Err("2 <= threshold <= members".into());
                }
                if let Some(m) = members.iter().find(|m| !self.members.contains_key(m)) {
                    return Err(format!("node {m} is not a member"));
                }
                if KeyPolicy::of(current) == KeyPolicy::new(*threshold, members) {
                    return Err(format!("that is {key}'s policy already"));
                }
                Ok(())
            }
        }
    }

    fn carry_out(&mut self, change: &Change) {
        match change {
            Change::AddOperator { name, public_key } => {
                self.clients
                    .insert(name.clone(), operator_record(name.clone(), *public_key));
            }
            Change::RemoveOperator { name } => {
                if let Some(c) = self.clients.get_mut(name) {
                    c.revoked = true;
                }
            }
            Change::SetQuorum { quorum } => self.operators.quorum = *quorum,
            Change::AddNode {
                id,
                addr,
                identity,
                hpke,
                voter,
            } => self.add_node(
                *id,
                keyquorum_wire::control::NodeInfo {
                    addr: addr.clone(),
                    identity: *identity,
                    hpke: *hpke,
                },
                *voter,
            ),
            Change::RemoveNode { id, .. } => self.remove_node(*id),
            Change::DrainNode { id, onto } => {
                self.operators.drains.insert(*id, *onto);
                self.void_pending_drain_changes(*id);
            }
            Change::CancelDrain { id } => {
                self.operators.drains.remove(id);
                self.void_pending_drain_changes(*id);
            }
            Change::SetKeyPolicy {
                key,
                threshold,
                members,
            } => {
                self.operators
                    .key_policies
                    .insert(key.clone(), KeyPolicy::new(*threshold, members));
            }
        }
    }
}

/// The client record of operator `name`.
pub(crate) fn operator_record(name: String, public_key: keyquorum_wire::Hex32) -> ClientRecord {
    ClientRecord {
        grant: Grant {
            name,
            admin: false,
            operator: true,
            sign_keys: Vec::new(),
            recovery: false,
        },
        public_key,
        expires_ms: None,
        revoked: false,
    }
}

/// A client record that may join `clients`: a valid name not taken
/// before, a valid Ed25519 key.
pub(super) fn check_client(
    clients: &BTreeMap<String, ClientRecord>,
    record: &ClientRecord,
) -> Result<(), String> {
    let name = &record.grant.name;
    if crate::names::check_name(name).is_err() {
        return Err("client names are 1-64 characters from [A-Za-z0-9._-]".into());
    }
    if clients.contains_key(name) {
        return Err(format!("a client named {name} exists"));
    }
    if ed25519_dalek::VerifyingKey::from_bytes(&record.public_key.0).is_err() {
        return Err("the public key is not an Ed25519 point".into());
    }
    Ok(())
}
