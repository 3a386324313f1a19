//! The replicated state machine every node applies the Raft log to, and the
//! dispatcher in front of it: [`Registry`] is the capabilities' parts side
//! by side, and each [`Command`] goes to the part that owns it.
//!
//! | part | owner | commands |
//! |---|---|---|
//! | [`KeysState`]: key records, exports | `crate::keys::state` | [`KeysCommand`](keyquorum_wire::control::KeysCommand) |
//! | [`MsgState`]: endpoints, prekeys, mailboxes, seen-set | `crate::msg::state` | [`MsgCommand`](keyquorum_wire::msg::MsgCommand) |
//! | [`HeState`]: encrypted-data sessions, their aggregates and results | `crate::he::state` | [`HeCommand`](keyquorum_wire::he::HeCommand) |
//! | [`AuditLog`]: the hash-chained audit log | [`super::audit`] | [`ClusterCommand::Audit`], [`ClusterCommand::SignHead`] |
//! | client identities | here | [`ClusterCommand::PutClient`], [`ClusterCommand::RevokeClient`] |
//! | [`Operators`]: the operator quorum, proposed changes | [`operators`] | [`ClusterCommand::Init`], [`ClusterCommand::ProposeChange`], [`ClusterCommand::ApproveChange`] |
//!
//! A log entry is a [`Proposal`]: commands the leader stamped together,
//! applied in order, each on its own, and each only if what authorizes it
//! holds ([`authority`]). The serialized form (snapshots) is one
//! flat object: the parts' fields side by side, in the order they had
//! before the split (`Flat`). A new capability adds its part here: one
//! field, its fields in `Flat`, and one dispatch line.

use std::collections::{BTreeMap, BTreeSet};

use keyquorum_store::raft::Machine;
use keyquorum_wire::control::{
    AuditEntry, Authorized, ClientRecord, ClusterCommand, Command, CommandResponse, ExportRecord,
    KeyRecord, NodeInfo, Proposal, SignedHead, APPLY_RULES, MAX_BATCH, MIN_APPLY_RULES,
};
use keyquorum_wire::NodeId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod authority;
pub mod clock;
pub mod operators;
pub mod request;
pub mod roster;
pub mod rules;

use clock::LogClock;
use operators::KeyPolicy;
pub use operators::Operators;
pub use roster::Roster;

pub use super::audit::AuditLog;
pub use crate::he::state::HeState;
pub use crate::keys::state::KeysState;
pub use crate::msg::state::MsgState;
pub use crate::recovery::state::RecoveryState;
pub use crate::seedtree::state::SeedtreeState;

/// The replicated state.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Shared keys: records by name, export requests.
    pub keys: KeysState,
    /// Client identities by name (revoked ones stay: names are never
    /// reused).
    pub clients: BTreeMap<String, ClientRecord>,
    /// The audit log and its signed heads.
    pub audit: AuditLog,
    /// Per-message key derivation: endpoints, prekeys, mailboxes, seen-set.
    pub msg: MsgState,
    /// Computation on encrypted data: sessions (their inputs are side
    /// records).
    pub he: HeState,
    /// Federated hash-based signing trees (their shares and nodes are in
    /// the members' vaults).
    pub seedtree: SeedtreeState,
    /// Credential guardians' accounts.
    pub recovery: RecoveryState,
    /// The members (voters and learners): in Raft's membership and, once
    /// the cluster is initialised, in the membership record ([`Roster`]),
    /// with the keys the record gives them. Whose messages, statements and
    /// addresses every member accepts.
    pub members: BTreeMap<NodeId, NodeInfo>,
    /// The voters among them.
    pub voters: BTreeSet<NodeId>,
    /// The membership record the operators approve, and Raft's membership.
    pub roster: Roster,
    /// The newest apply rules an applied entry was stamped with (entries
    /// with older rules are refused from then on).
    pub rules: u16,
    /// The log clock and the authorizations used within its window.
    pub clock: LogClock,
    /// The operator quorum and the changes proposed to the operators (the
    /// operators themselves are clients with the operator grant).
    pub operators: Operators,
    /// Each node's latest boot id ([`ClusterCommand::Boot`]).
    pub boots: BTreeMap<NodeId, keyquorum_wire::Hex32>,
    /// Each node's software measurement, as its latest boot stated it
    /// (`super::attest`).
    pub attested: BTreeMap<NodeId, keyquorum_wire::control::Measurement>,
    /// The newest apply rules each node's build knows, as it announced at
    /// its latest boot ([`ClusterCommand::Boot`]; `rules`).
    pub announced: BTreeMap<NodeId, rules::Announced>,
    /// Every voter (with its identity key) the cluster had while it had no
    /// client: all of them must state [`ClusterCommand::Init`], so a leader
    /// that removes voters before init cannot initialise alone.
    pub founders: BTreeMap<NodeId, keyquorum_wire::Hex32>,
}

/// The serialized form of [`Registry`], borrowed (a snapshot is written
/// without copying the state).
#[derive(Serialize)]
struct FlatRef<'a> {
    keys: &'a BTreeMap<String, KeyRecord>,
    clients: &'a BTreeMap<String, ClientRecord>,
    exports: &'a BTreeMap<String, ExportRecord>,
    audit_log: &'a AuditLog,
    msg: &'a MsgState,
    he: &'a HeState,
    #[serde(skip_serializing_if = "SeedtreeState::is_empty")]
    seedtree: &'a SeedtreeState,
    #[serde(skip_serializing_if = "RecoveryState::is_empty")]
    recovery: &'a RecoveryState,
    members: &'a BTreeMap<NodeId, NodeInfo>,
    voters: &'a BTreeSet<NodeId>,
    clock: &'a LogClock,
    operators: &'a Operators,
    boots: &'a BTreeMap<NodeId, keyquorum_wire::Hex32>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    attested: &'a BTreeMap<NodeId, keyquorum_wire::control::Measurement>,
    announced: &'a BTreeMap<NodeId, rules::Announced>,
    founders: &'a BTreeMap<NodeId, keyquorum_wire::Hex32>,
    roster: &'a Roster,
    rules: u16,
}

/// The serialized form of [`Registry`], owned (read straight into the
/// parts, with no intermediate buffer).
#[derive(Deserialize)]
struct Flat {
    keys: BTreeMap<String, KeyRecord>,
    #[serde(default)]
    clients: BTreeMap<String, ClientRecord>,
    exports: BTreeMap<String, ExportRecord>,
    /// The audit log's head (the entries are side records).
    #[serde(default)]
    audit_log: Option<AuditLog>,
    /// A snapshot from before that: the entries and heads themselves.
    #[serde(default)]
    audit: Vec<AuditEntry>,
    #[serde(default)]
    heads: Vec<SignedHead>,
    #[serde(default)]
    msg: MsgState,
    #[serde(default)]
    he: HeState,
    #[serde(default)]
    seedtree: SeedtreeState,
    #[serde(default)]
    recovery: RecoveryState,
    #[serde(default)]
    members: BTreeMap<NodeId, NodeInfo>,
    #[serde(default)]
    voters: BTreeSet<NodeId>,
    #[serde(default)]
    clock: LogClock,
    #[serde(default)]
    operators: Operators,
    #[serde(default)]
    boots: BTreeMap<NodeId, keyquorum_wire::Hex32>,
    #[serde(default)]
    attested: BTreeMap<NodeId, keyquorum_wire::control::Measurement>,
    #[serde(default)]
    announced: BTreeMap<NodeId, rules::Announced>,
    #[serde(default)]
    founders: BTreeMap<NodeId, keyquorum_wire::Hex32>,
    #[serde(default)]
    roster: Roster,
    #[serde(default)]
    rules: u16,
}

impl Serialize for Registry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Destructured in full: a field added to any part fails to compile
        // here until it is in the serialized form too.
        let Registry {
            keys: KeysState { records, exports },
            clients,
            audit,
            msg,
            he,
            seedtree,
            recovery,
            members,
            voters,
            clock,
            operators,
            boots,
            attested,
            announced,
            founders,
            roster,
            rules,
        } = self;
        FlatRef {
            keys: records,
            clients,
            exports,
            audit_log: audit,
            msg,
            he,
            seedtree,
            recovery,
            members,
            voters,
            clock,
            operators,
            boots,
            attested,
            announced,
            founders,
            roster,
            rules: *rules,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Registry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut f = Flat::deserialize(d)?;
        // A snapshot from before the record: Raft's membership was the
        // members.
        if f.roster.raft_nodes.is_empty() && !f.roster.in_force {
            f.roster.raft_nodes = f.members.clone();
            f.roster.raft_voters = f.voters.clone();
        }
        Ok(Registry {
            keys: KeysState {
                records: f.keys,
                exports: f.exports,
            },
            clients: f.clients,
            audit: match f.audit_log {
                Some(log) => log,
                // Its records go to the store when it is loaded.
                None => AuditLog::from_legacy(&f.audit, &f.heads),
            },
            msg: {
                let mut msg = f.msg;
                msg.rebuild_usage();
                msg
            },
            he: f.he,
            seedtree: f.seedtree,
            recovery: f.recovery,
            members: f.members,
            voters: f.voters,
            clock: f.clock,
            operators: f.operators,
            boots: f.boots,
            attested: f.attested,
            announced: f.announced,
            founders: f.founders,
            roster: f.roster,
            rules: f.rules,
        })
    }
}

impl Machine for Registry {
    type Command = Proposal;
    type Response = CommandResponse;

    /// Apply a proposal: advance the log clock to its stamp, then each
    /// command on its own, if what authorizes it holds. Answers one
    /// response per command ([`CommandResponse::Batch`]).
    fn apply(&mut self, index: u64, p: &Proposal) -> CommandResponse {
        if p.rules < MIN_APPLY_RULES {
            return CommandResponse::rejected(format!(
                "apply rules {} are not known to this node (it knows {MIN_APPLY_RULES} to \
                 {APPLY_RULES})",
                p.rules
            ));
        }
        if p.rules < self.rules {
            return CommandResponse::rejected(format!(
                "apply rules {} are older than rules {} the log used before",
                p.rules, self.rules
            ));
        }
        if let Err(why) = self.may_take_up(p.rules) {
            return CommandResponse::rejected(why);
        }
        if p.rules > APPLY_RULES {
            // Only without `check` (which stops the replica first).
            return CommandResponse::rejected(format!(
                "apply rules {} are not known to this node (it knows {MIN_APPLY_RULES} to \
                 {APPLY_RULES})",
                p.rules
            ));
        }
        let taking_up = self.rules < super::audit::log::AUDIT_RULES
            && p.rules >= super::audit::log::AUDIT_RULES;
        self.rules = p.rules;
        if taking_up {
            // Rules 5 start the audit heads' checks and the messages'
            // routing history from this entry, alike on every replica.
            self.audit.take_up_strict();
            self.msg.routes.clear();
            self.note_route();
        }
        if p.commands.is_empty() || p.commands.len() > MAX_BATCH {
            return CommandResponse::rejected(format!(
                "a proposal holds 1 to {MAX_BATCH} commands"
            ));
        }
        CommandResponse::Batch {
            responses: p
                .commands
                .iter()
                .map(|a| self.apply_authorized(index, a))
                .collect(),
        }
    }

    /// Rules the cluster took up and this build does not know: applying
    /// on would leave this replica out of step, so it stops.
    fn check(&self, index: u64, p: &Proposal) -> Result<(), String> {
        if p.rules > APPLY_RULES && p.rules >= self.rules && self.may_take_up(p.rules).is_ok() {
            return Err(format!(
                "the entry at index {index} has apply rules {}, which every member announced \
                 and this build does not know (it knows up to {APPLY_RULES}): upgrade this node",
                p.rules
            ));
        }
        Ok(())
    }

    /// A state applied under rules this build does not know (a checkpoint
    /// or snapshot a newer build wrote) is refused: read by this build it
    /// would lose what it does not know, and this replica would apply on
    /// out of step. The node does not start on such a checkpoint; run a
    /// build that knows the rules.
    fn check_state(&self) -> Result<(), String> {
        if self.rules > APPLY_RULES {
            return Err(format!(
                "this state was applied under apply rules {}, and this build knows up to \
                 {APPLY_RULES}: run a build that knows them (a node cannot go back past rules \
                 its cluster took up)",
                self.rules
            ));
        }
        Ok(())
    }

    /// The audit log's entries, heads and subtrees ([`AuditLog`]), and
    /// sessions' inputs ([`HeState`]).
    fn take_side(&mut self) -> Vec<keyquorum_store::raft::SideWrite> {
        let mut records = self.audit.take_side();
        records.extend(self.he.take_side());
        records
    }

    fn side_written(&mut self) {
        self.audit.side_written();
    }

    fn membership<I: Serialize, N: Serialize>(
        &mut self,
        _index: u64,
        nodes: &[(I, N)],
        voters: &[I],
    ) {
        // The store's node types are ours (`TypeConfig`). A Raft id that is
        // not a valid node id (0, or past 65535) names no member: it is
        // left out, and the others are taken as they are.
        fn id_of<I: Serialize>(id: &I) -> Option<NodeId> {
            serde_json::to_value(id)
                .ok()
                .and_then(|v| serde_json::from_value::<NodeId>(v).ok())
        }
        // Raft's membership, each node keeping the identity and HPKE keys
        // it joined with: Raft applies membership entries on append, so a
        // leader could otherwise swap a member's keys for its own and sign
        // in its name. (Once the record is in force, its keys are the ones
        // trusted: `roster`.)
        let before = std::mem::take(&mut self.roster.raft_nodes);
        self.roster.raft_nodes = nodes
            .iter()
            .filter_map(|(id, n)| {
                let mut n = serde_json::to_value(n)
                    .ok()
                    .and_then(|v| serde_json::from_value::<NodeInfo>(v).ok())?;
                let id = id_of(id)?;
                if let Some(old) = before.get(&id) {
                    n.identity = old.identity;
                    n.hpke = old.hpke;
                }
                Some((id, n))
            })
            .collect();
        self.roster.raft_voters = voters.iter().filter_map(id_of).collect();
        self.derive_members();
        // Before init, every voter ever seen is a founder (only added to).
        if self.clients.is_empty() {
            for v in &self.voters {
                if let Some(m) = self.members.get(v) {
                    self.founders.entry(*v).or_insert(m.identity);
                }
            }
        }
    }
}

impl Registry {
    /// Apply one command if what authorizes it holds.
    fn apply_authorized(&mut self, index: u64, a: &Authorized) -> CommandResponse {
        match authority::admit(self, a) {
            Ok(actor) => {
                let by = match actor {
                    authority::Actor::Node(n) => Some(n),
                    _ => None,
                };
                let response = match (&a.command, &actor, &a.by) {
                    // A session command acts for the client whose request
                    // authorizes it (an input is that request's body).
                    (
                        Command::He(c),
                        authority::Actor::Client(grant),
                        keyquorum_wire::control::Authority::Client { request },
                    ) => self.apply_he(c, &grant.name, &request.body.0),
                    (Command::Seedtree(c), _, _) => self.apply_seedtree(c, by),
                    (Command::Recovery(c), _, _) => self.apply_recovery(c, by),
                    _ => self.apply_command(index, &a.command, by),
                };
                if let (
                    Command::Cluster(ClusterCommand::Boot { rules, .. }),
                    keyquorum_wire::control::Authority::Node { node, time_ms, .. },
                    CommandResponse::Ok,
                ) = (&a.command, &a.by, &response)
                {
                    self.announce(*node, *rules, *time_ms);
                }
                response
            }
            Err(reason) => CommandResponse::rejected(format!("not authorized: {reason}")),
        }
    }

    /// Apply one authorized command.
    fn apply_command(
        &mut self,
        _index: u64,
        command: &Command,
        by: Option<NodeId>,
    ) -> CommandResponse {
        match command {
            Command::Cluster(c) => self.apply_cluster(c, by),
            Command::Keys(c) => {
                // A reshare that changed the key's policy uses its approval
                // up.
                let changes_policy = match c {
                    keyquorum_wire::control::KeysCommand::PutKey {
                        record,
                        expected_epoch: Some(_),
                        ..
                    } => self
                        .keys
                        .records
                        .get(&record.name)
                        .is_some_and(|k| KeyPolicy::of(k) != KeyPolicy::of(record))
                        .then(|| record.name.clone()),
                    _ => None,
                };
                let response = self
                    .keys
                    .apply(c, self.rules >= crate::msg::quota::QUOTA_RULES);
                if let (Some(name), CommandResponse::Ok) = (changes_policy, &response) {
                    self.operators.key_policies.remove(&name);
                }
                response
            }
            Command::Msg(c) => self
                .msg
                .apply(c, self.rules >= crate::msg::quota::QUOTA_RULES),
            Command::He(_) => CommandResponse::rejected("only a client's request drives a session"),
            Command::Seedtree(c) => self.apply_seedtree(c, by),
            Command::Recovery(c) => self.apply_recovery(c, by),
        }
    }

    /// Apply an account command (authorized by a client's request, or a
    /// signer's statement of its inbox fragment).
    fn apply_recovery(
        &mut self,
        command: &keyquorum_wire::recovery::RecoveryCommand,
        by: Option<NodeId>,
    ) -> CommandResponse {
        use keyquorum_wire::recovery::RecoveryCommand;
        if self.rules < crate::recovery::state::ACCOUNT_RULES {
            return CommandResponse::rejected(format!(
                "accounts need apply rules {}",
                crate::recovery::state::ACCOUNT_RULES
            ));
        }
        match command {
            RecoveryCommand::AccountCreate { account, key, .. } => {
                self.recovery.create(account, key, &mut self.keys.records)
            }
            RecoveryCommand::AccountRotate { account, key, .. } => {
                if self.rules < crate::recovery::state::RESET_RULES {
                    return CommandResponse::rejected("rotation needs apply rules 10");
                }
                self.recovery.rotate(account, key, &mut self.keys.records)
            }
            RecoveryCommand::ResetOpen { reset } => {
                if self.rules < crate::recovery::state::RESET_RULES {
                    return CommandResponse::rejected("reset requests need apply rules 10");
                }
                self.recovery.open_reset(reset, self.clock.now_ms())
            }
            RecoveryCommand::ResetInbox { account, item } => {
                if self.rules < crate::recovery::state::RESET_RULES {
                    return CommandResponse::rejected("reset requests need apply rules 10");
                }
                self.recovery.add_to_inbox(account, item)
            }
            _ if self.rules < crate::recovery::state::PIN_RULES => {
                CommandResponse::rejected("PIN-protected secrets need apply rules 11")
            }
            RecoveryCommand::PinKey {
                account,
                key,
                endorsements,
            } => self
                .recovery
                .pin_key(account, key, endorsements, &mut self.keys.records),
            RecoveryCommand::SecretRegister { record } => {
                // Older builds drop a generation they do not know: below
                // rules 16 every build stores the first.
                let mut record = record.clone();
                if self.rules < crate::recovery::state::AGAIN_RULES {
                    record.generation = 1;
                }
                self.recovery
                    .register_secret(&record, &mut self.keys.records)
            }
            RecoveryCommand::PinGuess { account, guess } => self.recovery.guess(account, guess),
            RecoveryCommand::PinUnlocked { account, guess_id } => {
                let key = self
                    .recovery
                    .secrets
                    .get(account)
                    .map(|s| keyquorum_wire::recovery::pin_key_name_at(account, s.generation));
                let t = key
                    .and_then(|k| self.keys.records.get(&k))
                    .map_or(u16::MAX, |k| k.threshold);
                match by {
                    Some(node) => self.recovery.unlocked(account, guess_id, node, t),
                    None => CommandResponse::rejected("a guardian states its unlock"),
                }
            }
        }
    }

    /// Apply a signing tree's command (`by`: the stating node, for a
    /// reservation).
    fn apply_seedtree(
        &mut self,
        command: &keyquorum_wire::seedtree::SeedtreeCommand,
        by: Option<NodeId>,
    ) -> CommandResponse {
        use keyquorum_wire::seedtree::SeedtreeCommand;
        if self.rules < crate::seedtree::state::ST_RULES {
            return CommandResponse::rejected(format!(
                "signing trees need apply rules {}",
                crate::seedtree::state::ST_RULES
            ));
        }
        match (command, by) {
            (SeedtreeCommand::StCreate { record, .. }, None) => self.seedtree.create(record),
            (SeedtreeCommand::StReserve { tree, count }, Some(node)) => {
                self.seedtree.reserve(tree, *count, node)
            }
            (SeedtreeCommand::StReshare { plan, .. }, None) => {
                if self.rules < crate::seedtree::state::RESHARE_RULES {
                    return CommandResponse::rejected(format!(
                        "moving a tree's leaves needs apply rules {}",
                        crate::seedtree::state::RESHARE_RULES
                    ));
                }
                self.seedtree.reshare(plan)
            }
            _ => CommandResponse::rejected(
                "a tree is created by an admin's request, its leaves reserved by a node's statement",
            ),
        }
    }

    /// Apply a session command for client `client`, whose signed request
    /// had `body`.
    fn apply_he(
        &mut self,
        command: &keyquorum_wire::he::HeCommand,
        client: &str,
        body: &[u8],
    ) -> CommandResponse {
        use keyquorum_wire::he::HeCommand;
        if self.rules < crate::he::state::HE_RULES {
            return CommandResponse::rejected(format!(
                "encrypted-data sessions need apply rules {}",
                crate::he::state::HE_RULES
            ));
        }
        match command {
            HeCommand::HeCreate { session, key, .. } => {
                self.he.create(session, key, &mut self.keys.records)
            }
            HeCommand::HeSubmit { session } => self.he.submit(session, client, body),
            HeCommand::HeClose { session } => self.he.close(session, body),
            HeCommand::HeResult { session, result } => {
                self.he
                    .result(session, result, body, &self.keys.records, &self.attested)
            }
        }
    }

    /// A new client: a valid name not taken before, a valid Ed25519 key.
    fn put_client(&mut self, record: &ClientRecord) -> CommandResponse {
        if let Err(reason) = operators::check_client(&self.clients, record) {
            return CommandResponse::rejected(reason);
        }
        self.clients
            .insert(record.grant.name.clone(), record.clone());
        CommandResponse::Ok
    }

    /// Revoke a client, unless it is the last admin that is not revoked
    /// (the cluster would have no one left to manage it).
    fn revoke_client(&mut self, name: &str) -> CommandResponse {
        let Some(c) = self.clients.get(name) else {
            return CommandResponse::rejected(format!("no client named {name}"));
        };
        let live_admins = self
            .clients
            .values()
            .filter(|c| c.grant.admin && !c.revoked)
            .count();
        if c.grant.operator {
            return CommandResponse::rejected(format!(
                "{name} is an operator: operators are removed by a change the operator quorum approves"
            ));
        }
        if c.grant.admin && !c.revoked && live_admins == 1 {
            return CommandResponse::rejected(format!(
                "{name} is the last admin; create another admin first"
            ));
        }
        if let Some(c) = self.clients.get_mut(name) {
            c.revoked = true;
        }
        CommandResponse::Ok
    }

    /// Apply one of the cluster's own commands (`by`: the stating node, for
    /// statements).
    fn apply_cluster(&mut self, command: &ClusterCommand, by: Option<NodeId>) -> CommandResponse {
        match command {
            ClusterCommand::Audit { .. } | ClusterCommand::SignHead { .. } => self.audit.apply(
                command,
                self.rules >= super::audit::log::AUDIT_RULES,
                self.rules >= super::audit::log::EVIDENCE_RULES,
            ),
            ClusterCommand::PutClient { record } => self.put_client(record),
            ClusterCommand::RevokeClient { name } => self.revoke_client(name),
            ClusterCommand::Tick {} => CommandResponse::Ok,
            // Its announced rules: `apply_authorized` (it needs the time).
            ClusterCommand::Boot {
                boot, measurement, ..
            } => match by {
                Some(node) => {
                    self.boots.insert(node, *boot);
                    match measurement {
                        Some(m) => self.attested.insert(node, *m),
                        None => self.attested.remove(&node),
                    };
                    CommandResponse::Ok
                }
                None => CommandResponse::rejected("only a node states its boot"),
            },
            ClusterCommand::Init {
                operators,
                quorum,
                admin,
                default_threshold,
                nodes,
            } => self.init(operators, *quorum, admin, *default_threshold, nodes),
            ClusterCommand::ProposeChange { record } => self.propose_change(record),
            ClusterCommand::ApproveChange { id, operator } => self.approve_change(id, operator),
        }
    }
}

#[cfg(test)]
mod tests;
