//! The replicated state machine every node applies the Raft log to, and the
//! dispatcher in front of it: [`Registry`] is the capabilities' parts side
//! by side, and each [`Command`] goes to the part that owns it.
//!
//! | part | owner | commands |
//! |---|---|---|
//! | [`KeysState`]: key records, exports | `crate::keys::state` | [`KeysCommand`](keyquorum_wire::control::KeysCommand) |
//! | [`MsgState`]: endpoints, prekeys, mailboxes, seen-set | `crate::msg::state` | [`MsgCommand`](keyquorum_wire::msg::MsgCommand) |
//! | [`AuditLog`]: the hash-chained audit log | [`super::audit`] | [`ClusterCommand::Audit`], [`ClusterCommand::SignHead`] |
//! | client identities | here | [`ClusterCommand::PutClient`], [`ClusterCommand::RevokeClient`] |
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
    KeyRecord, NodeInfo, Proposal, SignedHead, APPLY_RULES, MAX_BATCH,
};
use keyquorum_wire::NodeId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod authority;

use authority::LogClock;

pub use super::audit::AuditLog;
pub use crate::keys::state::KeysState;
pub use crate::msg::state::MsgState;

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
    /// The members (voters and learners) as the last membership entry
    /// named them: whose statements and addresses apply accepts.
    pub members: BTreeMap<NodeId, NodeInfo>,
    /// The voters among them.
    pub voters: BTreeSet<NodeId>,
    /// The log clock and the authorizations used within its window.
    pub clock: LogClock,
}

/// The serialized form of [`Registry`], borrowed (a snapshot is written
/// without copying the state).
#[derive(Serialize)]
struct FlatRef<'a> {
    keys: &'a BTreeMap<String, KeyRecord>,
    clients: &'a BTreeMap<String, ClientRecord>,
    exports: &'a BTreeMap<String, ExportRecord>,
    audit: &'a Vec<AuditEntry>,
    heads: &'a Vec<SignedHead>,
    msg: &'a MsgState,
    members: &'a BTreeMap<NodeId, NodeInfo>,
    voters: &'a BTreeSet<NodeId>,
    clock: &'a LogClock,
}

/// The serialized form of [`Registry`], owned (read straight into the
/// parts, with no intermediate buffer).
#[derive(Deserialize)]
struct Flat {
    keys: BTreeMap<String, KeyRecord>,
    #[serde(default)]
    clients: BTreeMap<String, ClientRecord>,
    exports: BTreeMap<String, ExportRecord>,
    audit: Vec<AuditEntry>,
    heads: Vec<SignedHead>,
    #[serde(default)]
    msg: MsgState,
    #[serde(default)]
    members: BTreeMap<NodeId, NodeInfo>,
    #[serde(default)]
    voters: BTreeSet<NodeId>,
    #[serde(default)]
    clock: LogClock,
}

impl Serialize for Registry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Destructured in full: a field added to any part fails to compile
        // here until it is in the serialized form too.
        let Registry {
            keys: KeysState { records, exports },
            clients,
            audit: AuditLog { entries, heads },
            msg,
            members,
            voters,
            clock,
        } = self;
        FlatRef {
            keys: records,
            clients,
            exports,
            audit: entries,
            heads,
            msg,
            members,
            voters,
            clock,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Registry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = Flat::deserialize(d)?;
        Ok(Registry {
            keys: KeysState {
                records: f.keys,
                exports: f.exports,
            },
            clients: f.clients,
            audit: AuditLog {
                entries: f.audit,
                heads: f.heads,
            },
            msg: f.msg,
            members: f.members,
            voters: f.voters,
            clock: f.clock,
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
        if p.rules != APPLY_RULES {
            return CommandResponse::rejected(format!(
                "apply rules {} are not known to this node (it knows {APPLY_RULES})",
                p.rules
            ));
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
        // A member keeps the identity and HPKE keys it joined with: Raft
        // applies membership entries on append, so a leader could otherwise
        // swap a member's keys for its own and sign in its name. (Until the
        // operator-approved membership record, a leader can still add a
        // member of its own: see the README's threat model.)
        let before = std::mem::take(&mut self.members);
        self.members = nodes
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
        self.voters = voters
            .iter()
            .filter_map(id_of)
            .filter(|v| self.members.contains_key(v))
            .collect();
    }
}

impl Registry {
    /// Apply one command if what authorizes it holds.
    fn apply_authorized(&mut self, index: u64, a: &Authorized) -> CommandResponse {
        match authority::admit(self, a) {
            Ok(_) => self.apply_command(index, &a.command),
            Err(reason) => CommandResponse::rejected(format!("not authorized: {reason}")),
        }
    }

    /// Apply one authorized command.
    fn apply_command(&mut self, _index: u64, command: &Command) -> CommandResponse {
        match command {
            Command::Cluster(c) => self.apply_cluster(c),
            Command::Keys(c) => self.keys.apply(c),
            Command::Msg(c) => self.msg.apply(c),
        }
    }

    /// A new client: a valid name not taken before, a valid Ed25519 key.
    fn put_client(&mut self, record: &ClientRecord) -> CommandResponse {
        let name = &record.grant.name;
        if crate::names::check_name(name).is_err() {
            return CommandResponse::rejected(
                "client names are 1-64 characters from [A-Za-z0-9._-]",
            );
        }
        if self.clients.contains_key(name) {
            return CommandResponse::rejected(format!("a client named {name} exists"));
        }
        if ed25519_dalek::VerifyingKey::from_bytes(&record.public_key.0).is_err() {
            return CommandResponse::rejected("the public key is not an Ed25519 point");
        }
        self.clients.insert(name.clone(), record.clone());
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

    fn apply_cluster(&mut self, command: &ClusterCommand) -> CommandResponse {
        match command {
            ClusterCommand::Audit { .. } | ClusterCommand::SignHead { .. } => {
                self.audit.apply(command)
            }
            ClusterCommand::PutClient { record } => self.put_client(record),
            ClusterCommand::RevokeClient { name } => self.revoke_client(name),
            ClusterCommand::Tick {} => CommandResponse::Ok,
        }
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};
    use keyquorum_core::httpsig::{ClientKey, Request};
    use keyquorum_wire::control::{node_statement, AuditEvent, Authority, Grant};
    use keyquorum_wire::msg::MsgCommand;
    use keyquorum_wire::peer::ClientRequest;
    use keyquorum_wire::{Hex, Hex32};

    use super::*;

    const T0: u64 = 1_800_000_000_000;

    fn id(n: u64) -> NodeId {
        NodeId::new(n as u16).unwrap()
    }

    fn node_key(n: u64) -> SigningKey {
        SigningKey::from_bytes(&[n as u8; 32])
    }

    /// A registry with members 1 and 2 (addresses https://n1, https://n2)
    /// and an admin client `admin` and a plain client `user`.
    fn registry() -> (Registry, ClientKey, ClientKey) {
        let mut r = Registry::default();
        let nodes: Vec<(u64, NodeInfo)> = (1..=2)
            .map(|n| {
                (
                    n,
                    NodeInfo {
                        addr: format!("https://n{n}:7000"),
                        identity: Hex32(node_key(n).verifying_key().to_bytes()),
                        hpke: Hex32([0; 32]),
                    },
                )
            })
            .collect();
        r.membership(1, &nodes, &[1, 2]);
        assert_eq!(r.members.len(), 2);
        assert_eq!(r.voters.len(), 2);
        let admin = ClientKey::new("admin", SigningKey::from_bytes(&[9; 32]));
        let user = ClientKey::new("user", SigningKey::from_bytes(&[8; 32]));
        let first = ClusterCommand::PutClient {
            record: record(&admin, true),
        };
        // One member alone cannot state the first client; one of two
        // members' signatures is not enough; both are.
        assert!(refused(
            &apply(&mut r, T0, vec![statement(1, T0, 1, first.clone())])[0]
        ));
        assert!(refused(
            &apply(&mut r, T0, vec![members(&[1], 2, first.clone())])[0]
        ));
        assert_eq!(
            apply(&mut r, T0, vec![members(&[1, 2], 3, first.clone())]),
            vec![ok()]
        );
        // Once there is a client, not even all members together add one.
        let again = ClusterCommand::PutClient {
            record: record(
                &ClientKey::new("other", SigningKey::from_bytes(&[6; 32])),
                true,
            ),
        };
        assert!(refused(
            &apply(&mut r, T0, vec![members(&[1, 2], 4, again)])[0]
        ));
        let put_user = client(
            &admin,
            "POST",
            "https://n1:7000/v1/clients",
            &create_body(&user, false),
            T0,
            "n-user",
            ClusterCommand::PutClient {
                record: record(&user, false),
            },
        );
        assert_eq!(apply(&mut r, T0, vec![put_user]), vec![ok()]);
        (r, admin, user)
    }

    fn ok() -> CommandResponse {
        CommandResponse::Ok
    }

    fn refused(r: &CommandResponse) -> bool {
        matches!(r, CommandResponse::Rejected { .. })
    }

    fn record(k: &ClientKey, admin: bool) -> ClientRecord {
        ClientRecord {
            grant: Grant {
                name: k.name().to_string(),
                admin,
                operator: false,
                sign_keys: vec![],
            },
            public_key: Hex32(k.public_key()),
            expires_ms: None,
            revoked: false,
        }
    }

    fn create_body(k: &ClientKey, admin: bool) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "name": k.name(),
            "public_key": hex::encode(k.public_key()),
            "admin": admin,
        }))
        .unwrap()
    }

    fn statement(node: u64, time_ms: u64, nonce: u8, command: impl Into<Command>) -> Authorized {
        let command = command.into();
        let nonce = vec![nonce; 16];
        let sig = node_key(node).sign(&node_statement(id(node), time_ms, &nonce, &command));
        Authorized {
            command,
            by: Authority::Node {
                node: id(node),
                time_ms,
                nonce: Hex(nonce),
                signature: Hex(sig.to_bytes().to_vec()),
            },
        }
    }

    /// A statement signed by each of `nodes`, made at `T0`.
    fn members(nodes: &[u64], nonce: u8, command: impl Into<Command>) -> Authorized {
        let command = command.into();
        let nonce = vec![nonce; 16];
        let signatures = nodes
            .iter()
            .map(|n| keyquorum_wire::control::Endorsement {
                node: id(*n),
                signature: Hex(node_key(*n)
                    .sign(&keyquorum_wire::control::members_statement(
                        T0, &nonce, &command,
                    ))
                    .to_bytes()
                    .to_vec()),
            })
            .collect();
        Authorized {
            command,
            by: Authority::Members {
                time_ms: T0,
                nonce: Hex(nonce),
                signatures,
            },
        }
    }

    fn client(
        k: &ClientKey,
        method: &str,
        uri: &str,
        body: &[u8],
        created_ms: u64,
        nonce: &str,
        command: impl Into<Command>,
    ) -> Authorized {
        let mut req = Request {
            method: method.into(),
            target_uri: uri.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_vec(),
        };
        k.sign(&mut req, created_ms / 1000, nonce).unwrap();
        Authorized {
            command: command.into(),
            by: Authority::Client {
                request: ClientRequest {
                    method: req.method,
                    target_uri: req.target_uri,
                    headers: req.headers,
                    body: Hex(req.body),
                },
            },
        }
    }

    fn apply(r: &mut Registry, time_ms: u64, commands: Vec<Authorized>) -> Vec<CommandResponse> {
        let p = Proposal {
            rules: APPLY_RULES,
            time_ms,
            commands,
        };
        match r.apply(7, &p) {
            CommandResponse::Batch { responses } => responses,
            other => vec![other],
        }
    }

    fn audit(node: u64, action: &str) -> ClusterCommand {
        ClusterCommand::Audit {
            events: vec![AuditEvent {
                time_ms: T0,
                node: id(node),
                actor: "x".into(),
                action: action.into(),
                target: None,
                outcome: "ok".into(),
            }],
        }
    }

    fn json(r: &Registry) -> String {
        serde_json::to_string(r).unwrap()
    }

    #[test]
    fn a_proposal_applies_each_command_on_its_own_and_a_bad_proposal_changes_nothing() {
        let (mut r, _, _) = registry();
        let got = apply(
            &mut r,
            T0 + 1,
            vec![
                statement(1, T0, 10, audit(1, "a")),
                // Node 1 reports an event as node 2's: refused alone.
                statement(1, T0, 11, audit(2, "b")),
                statement(2, T0, 12, audit(2, "c")),
            ],
        );
        assert_eq!(got[0], ok());
        assert!(refused(&got[1]), "{got:?}");
        assert_eq!(got[2], ok());
        let actions: Vec<_> = r
            .audit
            .entries
            .iter()
            .map(|e| e.event.action.clone())
            .collect();
        assert_eq!(actions, ["a", "c"]);
        assert_eq!(r.clock.now_ms(), T0);

        // Refused whole, the state unchanged: empty, too long, other rules.
        let before = json(&r);
        let long: Vec<_> = (0..=MAX_BATCH)
            .map(|i| statement(1, T0, (i % 250) as u8 + 1, audit(1, "l")))
            .collect();
        for (rules, commands) in [
            (APPLY_RULES, Vec::new()),
            (APPLY_RULES, long),
            (APPLY_RULES + 1, vec![statement(1, T0, 20, audit(1, "z"))]),
        ] {
            let p = Proposal {
                rules,
                time_ms: T0 + 2,
                commands,
            };
            assert!(refused(&r.apply(8, &p)));
            assert_eq!(json(&r), before);
        }
    }

    /// What a hostile leader or member might append: each is refused and
    /// changes nothing.
    #[test]
    fn commands_without_their_authority_are_refused_on_apply() {
        let (mut r, admin, user) = registry();
        let mallory = ClientKey::new("mallory", SigningKey::from_bytes(&[7; 32]));
        let put_mallory = || ClusterCommand::PutClient {
            record: record(&mallory, true),
        };
        let outsider = SigningKey::from_bytes(&[66; 32]);
        let forged_by_outsider = {
            let mut a = statement(1, T0, 30, audit(1, "x"));
            if let Authority::Node { signature, .. } = &mut a.by {
                let c = a.command.clone();
                *signature = Hex(outsider
                    .sign(&node_statement(id(1), T0, &[30; 16], &c))
                    .to_bytes()
                    .to_vec());
            }
            a
        };
        let body = create_body(&mallory, true);
        let uri = "https://n1:7000/v1/clients";
        let attempts: Vec<(&str, Authorized)> = vec![
            // A member mints an admin on its own.
            (
                "node statement of a client",
                statement(1, T0, 31, put_mallory()),
            ),
            // A statement by a node that is not a member.
            ("non-member", statement(3, T0, 32, audit(3, "x"))),
            ("bad signature", forged_by_outsider),
            // A client's request for one thing carried with another.
            (
                "command not asked for",
                client(
                    &admin,
                    "POST",
                    uri,
                    &create_body(&user, false),
                    T0,
                    "c1",
                    put_mallory(),
                ),
            ),
            // A plain client asking for an admin.
            (
                "not an admin",
                client(&user, "POST", uri, &body, T0, "c2", put_mallory()),
            ),
            // A request signed for another cluster's address.
            (
                "another cluster",
                client(
                    &admin,
                    "POST",
                    "https://elsewhere:7000/v1/clients",
                    &body,
                    T0,
                    "c3",
                    put_mallory(),
                ),
            ),
            // A request made long before the log clock.
            (
                "stale request",
                client(
                    &admin,
                    "POST",
                    uri,
                    &body,
                    T0 - 400_000,
                    "c4",
                    put_mallory(),
                ),
            ),
            // A statement made long before the log clock.
            (
                "stale statement",
                statement(1, T0 - 400_000, 33, audit(1, "x")),
            ),
            // A request to revoke another client used to revoke the admin.
            (
                "other path",
                client(
                    &admin,
                    "POST",
                    "https://n1:7000/v1/clients/user/revoke",
                    b"",
                    T0,
                    "c5",
                    ClusterCommand::RevokeClient {
                        name: "admin".into(),
                    },
                ),
            ),
            // Messaging commands a node may not state for a client.
            (
                "node statement of an ack",
                statement(
                    2,
                    T0,
                    34,
                    MsgCommand::Ack {
                        name: "e".into(),
                        ids: vec![],
                    },
                ),
            ),
        ];
        let before = json(&r);
        for (what, a) in attempts {
            let got = apply(&mut r, T0 + 5, vec![a]);
            assert!(refused(&got[0]), "{what}: {got:?}");
        }
        // Nothing changed but the log clock.
        let mut after: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        let mut was: serde_json::Value = serde_json::from_str(&before).unwrap();
        after["clock"] = serde_json::Value::Null;
        was["clock"] = serde_json::Value::Null;
        assert_eq!(after, was);

        // The real request is accepted once; the same authorization again
        // (a leader re-appending an old entry) is refused.
        let good = client(&admin, "POST", uri, &body, T0, "c6", put_mallory());
        assert_eq!(apply(&mut r, T0 + 6, vec![good.clone()]), vec![ok()]);
        let revoke = client(
            &admin,
            "POST",
            "https://n1:7000/v1/clients/mallory/revoke",
            b"",
            T0,
            "c7",
            ClusterCommand::RevokeClient {
                name: "mallory".into(),
            },
        );
        assert_eq!(apply(&mut r, T0 + 7, vec![revoke.clone()]), vec![ok()]);
        let a = statement(2, T0, 40, audit(2, "once"));
        assert_eq!(apply(&mut r, T0 + 8, vec![a.clone()]), vec![ok()]);
        let entries = r.audit.entries.len();
        for replay in [good, revoke, a.clone()] {
            assert!(refused(&apply(&mut r, T0 + 9, vec![replay])[0]));
        }
        assert_eq!(r.audit.entries.len(), entries);
        // Once the clock passes the window (moved by a command made then)
        // the authorization is forgotten, and the old statement is refused
        // as stale instead.
        let later = T0 + 1_000_000;
        let now = statement(1, later, 41, audit(1, "later"));
        assert_eq!(apply(&mut r, later, vec![now]), vec![ok()]);
        // With two voters (f = 0) the highest attested time is the clock;
        // `no_single_member_moves_the_log_clock` has three (f = 1).
        let now = statement(2, later, 42, audit(2, "later"));
        assert_eq!(apply(&mut r, later, vec![now]), vec![ok()]);
        assert_eq!(r.clock.now_ms(), later);
        let got = apply(&mut r, later, vec![a]);
        assert!(
            matches!(&got[0], CommandResponse::Rejected { reason } if reason.contains("stale")),
            "{got:?}"
        );
        assert_eq!(r.clock.remembered(), 2);
    }

    /// Replicas that apply the same entries reach the same state, and a
    /// snapshot of it (members, clock, seen authorizations) loads back to
    /// the same bytes and the same decisions.
    #[test]
    fn the_snapshot_form_round_trips_and_keeps_decisions() {
        let (mut r, admin, _) = registry();
        let a = statement(1, T0, 50, audit(1, "s"));
        assert_eq!(apply(&mut r, T0 + 1, vec![a.clone()]), vec![ok()]);
        let json1 = json(&r);
        let mut back: Registry = serde_json::from_str(&json1).unwrap();
        assert_eq!(json(&back), json1);
        assert!(
            refused(&apply(&mut back, T0 + 2, vec![a])[0]),
            "replay after a snapshot"
        );
        let c = client(
            &admin,
            "POST",
            "https://n2:7000/v1/clients/user/revoke",
            b"",
            T0,
            "s1",
            ClusterCommand::RevokeClient {
                name: "user".into(),
            },
        );
        assert_eq!(apply(&mut back, T0 + 3, vec![c.clone()]), vec![ok()]);
        assert!(refused(
            &apply(&mut r, T0 + 2, vec![statement(1, T0, 50, audit(1, "s"))])[0]
        ));
        assert_eq!(apply(&mut r, T0 + 3, vec![c]), vec![ok()]);
        assert_eq!(json(&r), json(&back));
        // The flat form: the parts' fields side by side.
        assert!(json1.starts_with(r#"{"keys":{},"clients":{"#), "{json1}");
        let old = r#"{"keys":{},"clients":{},"exports":{},"audit":[],"heads":[]}"#;
        let back: Registry = serde_json::from_str(old).unwrap();
        assert!(back.keys.records.is_empty() && back.members.is_empty());
    }

    /// The log clock is what the members attest: with three voters, the
    /// second-highest of their latest statements. A leader's stamp moves
    /// nothing; one member (the leader included) signing far-future times
    /// moves only its own entry.
    #[test]
    fn no_single_member_moves_the_log_clock() {
        let mut r = Registry::default();
        let nodes: Vec<(u64, NodeInfo)> = (1..=3)
            .map(|n| {
                (
                    n,
                    NodeInfo {
                        addr: format!("https://n{n}:7000"),
                        identity: Hex32(node_key(n).verifying_key().to_bytes()),
                        hpke: Hex32([0; 32]),
                    },
                )
            })
            .collect();
        r.membership(1, &nodes, &[1, 2, 3]);
        // A later membership entry cannot swap a member's keys, and an id
        // that is no node id is left out without losing the others.
        let mut swapped = nodes.clone();
        swapped[0].1.identity = Hex32([9; 32]);
        swapped.push((0, swapped[1].1.clone()));
        r.membership(2, &swapped, &[0, 1, 2, 3]);
        assert_eq!(r.members.len(), 3);
        assert_eq!(r.voters.len(), 3);
        assert_eq!(r.members[&id(1)].identity, nodes[0].1.identity);
        let far = u64::MAX / 4;
        // The leader (node 1) stamps and signs a far-future time.
        assert_eq!(
            apply(&mut r, far, vec![statement(1, far, 60, audit(1, "t"))]),
            vec![ok()]
        );
        assert_eq!(r.clock.now_ms(), 0);
        // Nodes 2 and 3 attest real times: the clock is the second highest.
        assert_eq!(
            apply(&mut r, far, vec![statement(2, T0, 61, audit(2, "t"))]),
            vec![ok()]
        );
        assert_eq!(r.clock.now_ms(), T0);
        assert_eq!(
            apply(&mut r, far, vec![statement(3, T0 + 5, 62, audit(3, "t"))]),
            vec![ok()]
        );
        assert_eq!(r.clock.now_ms(), T0 + 5);
        // A refused statement (bad signature) attests nothing.
        let mut forged = statement(2, far, 63, audit(2, "u"));
        if let Authority::Node { signature, .. } = &mut forged.by {
            signature.0[0] ^= 1;
        }
        assert!(refused(&apply(&mut r, far, vec![forged])[0]));
        assert_eq!(r.clock.now_ms(), T0 + 5);
        // A tick is a statement like any other.
        let tick = statement(2, T0 + 9, 64, ClusterCommand::Tick {});
        assert_eq!(apply(&mut r, far, vec![tick]), vec![ok()]);
        assert_eq!(r.clock.now_ms(), T0 + 9);
    }

    /// Messaging statements within bounds only.
    #[test]
    fn messaging_statements_are_bounded() {
        let (mut r, _, _) = registry();
        let init = |window_ms, nonce| {
            statement(
                1,
                T0,
                nonce,
                MsgCommand::InitMsg {
                    salt: Hex32([1; 32]),
                    window_ms,
                },
            )
        };
        for (bad, nonce) in [(0, 70), (u64::MAX, 71)] {
            assert!(refused(&apply(&mut r, T0, vec![init(bad, nonce)])[0]));
        }
        assert_eq!(apply(&mut r, T0, vec![init(60_000, 72)]), vec![ok()]);
    }

    /// A key record must be what threshold-many of its members computed,
    /// asked for by an admin's request, and a next generation keeps the
    /// public key.
    #[test]
    fn a_key_record_needs_its_request_and_its_members_endorsements() {
        use keyquorum_core::codec::Encode;
        use keyquorum_wire::api::SuiteName;
        use keyquorum_wire::control::{key_statement, Endorsement, KeyRecord, KeysCommand};

        let (mut r, admin, user) = registry();
        let pids = [1u16, 2]
            .iter()
            .map(|i| keyquorum_core::ParticipantId::from(std::num::NonZeroU16::new(*i).unwrap()))
            .collect();
        let gk = |seed: u8| {
            let g = keyquorum_core::local::dkg::<keyquorum_core::Ed25519, _>(
                keyquorum_core::SessionId([seed; 32]),
                2,
                &pids,
                &mut rand_core::OsRng,
            )
            .unwrap()
            .group;
            (g.to_bytes(), g.public_key_bytes())
        };
        let (group, public) = gk(1);
        let rec = |epoch: u64, group: &[u8], public: &[u8]| KeyRecord {
            name: "k".into(),
            suite: SuiteName::Ed25519,
            threshold: 2,
            members: vec![id(1), id(2)],
            public_key: Hex(public.to_vec()),
            group_key: Hex(group.to_vec()),
            epoch,
            session: Hex32([epoch as u8; 32]),
            created_ms: T0,
        };
        let endorse = |rec: &KeyRecord, by: &[u64]| -> Vec<Endorsement> {
            by.iter()
                .map(|n| Endorsement {
                    node: id(*n),
                    signature: Hex(node_key(*n)
                        .sign(&key_statement(
                            &rec.name,
                            rec.epoch,
                            &rec.session,
                            &rec.group_key.0,
                        ))
                        .to_bytes()
                        .to_vec()),
                })
                .collect()
        };
        let create: &[u8] = br#"{"name":"k","suite":"ed25519"}"#;
        let put = |who: &ClientKey,
                   nonce: &str,
                   rec: KeyRecord,
                   by: &[u64],
                   path: &str,
                   body: &[u8],
                   expected: Option<u64>| {
            let endorsements = endorse(&rec, by);
            client(
                who,
                "POST",
                &format!("https://n1:7000{path}"),
                body,
                T0,
                nonce,
                KeysCommand::PutKey {
                    record: rec,
                    expected_epoch: expected,
                    endorsements,
                },
            )
        };
        let first = rec(1, &group, &public);
        let mut t1 = first.clone();
        t1.threshold = 1;
        let mut one_member = first.clone();
        one_member.members = vec![id(1)];
        let mut wrong_public = first.clone();
        wrong_public.public_key = Hex(gk(2).1);
        let other_name: &[u8] = br#"{"name":"j","suite":"ed25519"}"#;
        let only_node_1: &[u8] = br#"{"name":"k","suite":"ed25519","members":[1]}"#;
        let one_voter: &[u8] = br#"{"name":"k","suite":"ed25519","members":[1],"min_members":1}"#;
        let attempts = vec![
            (
                "endorsed by one of two",
                put(&admin, "k1", first.clone(), &[1], "/v1/keys", create, None),
            ),
            (
                "not an admin",
                put(
                    &user,
                    "k2",
                    first.clone(),
                    &[1, 2],
                    "/v1/keys",
                    create,
                    None,
                ),
            ),
            // (These two are refused by the group key check; the member
            // rules alone refuse the last two.)
            (
                "threshold 1",
                put(&admin, "k3", t1, &[1, 2], "/v1/keys", create, None),
            ),
            (
                "fewer members than asked",
                put(&admin, "k4", one_member, &[1], "/v1/keys", create, None),
            ),
            (
                "a public key not the group key's",
                put(
                    &admin,
                    "k5",
                    wrong_public,
                    &[1, 2],
                    "/v1/keys",
                    create,
                    None,
                ),
            ),
            (
                "another key's name",
                put(
                    &admin,
                    "k6",
                    first.clone(),
                    &[1, 2],
                    "/v1/keys",
                    other_name,
                    None,
                ),
            ),
            // A valid, endorsed record over more members than asked, with
            // and without consent to fewer.
            (
                "members not asked for",
                put(
                    &admin,
                    "k11",
                    first.clone(),
                    &[1, 2],
                    "/v1/keys",
                    only_node_1,
                    None,
                ),
            ),
            (
                "more members than asked, with consent to fewer",
                put(
                    &admin,
                    "k12",
                    first.clone(),
                    &[1, 2],
                    "/v1/keys",
                    one_voter,
                    None,
                ),
            ),
        ];
        for (what, a) in attempts {
            assert!(refused(&apply(&mut r, T0, vec![a])[0]), "{what}");
        }
        assert!(r.keys.records.is_empty());
        let good = put(
            &admin,
            "k7",
            first.clone(),
            &[1, 2],
            "/v1/keys",
            create,
            None,
        );
        assert_eq!(apply(&mut r, T0, vec![good]), vec![ok()]);

        // A refresh: the same public key, the next epoch, endorsed.
        let (other_group, other_public) = gk(3);
        let swapped = rec(2, &other_group, &other_public);
        let refresh = "/v1/keys/k/refresh";
        let a = put(&admin, "k8", swapped, &[1, 2], refresh, b"", Some(1));
        assert!(
            refused(&apply(&mut r, T0, vec![a])[0]),
            "a refresh that swaps the public key"
        );
        let a = put(
            &admin,
            "k9",
            rec(2, &group, &public),
            &[1, 2],
            "/v1/keys/k/repair",
            b"",
            Some(1),
        );
        assert!(
            refused(&apply(&mut r, T0, vec![a])[0]),
            "repair commits no generation"
        );
        let a = put(
            &admin,
            "k10",
            rec(2, &group, &public),
            &[1, 2],
            refresh,
            b"",
            Some(1),
        );
        assert_eq!(apply(&mut r, T0, vec![a]), vec![ok()]);
        assert_eq!(r.keys.records["k"].epoch, 2);
    }

    #[test]
    fn an_export_needs_a_well_formed_id_and_an_operator_to_approve() {
        use keyquorum_wire::control::{ExportRecord, KeysCommand};
        let (mut r, admin, _) = registry();
        // A key to export, put straight into the state part (endorsements
        // are another test's).
        r.keys.apply(&KeysCommand::PutKey {
            record: keyquorum_wire::control::KeyRecord {
                name: "k".into(),
                suite: keyquorum_wire::api::SuiteName::Ed25519,
                threshold: 2,
                members: vec![id(1), id(2)],
                public_key: Hex(vec![]),
                group_key: Hex(vec![]),
                epoch: 1,
                session: Hex32([1; 32]),
                created_ms: T0,
            },
            expected_epoch: None,
            endorsements: vec![],
        });
        let export = |id: &str| ExportRecord {
            id: id.into(),
            key: "k".into(),
            epoch: 1,
            requested_by: "admin".into(),
            approvals: vec![],
            needed: 2,
            done: false,
            recipient: Hex32([5; 32]),
            created_ms: T0,
        };
        let body = format!(r#"{{"recipient":"{}"}}"#, hex::encode([5u8; 32]));
        let ask = |id: &str, nonce: &str| {
            client(
                &admin,
                "POST",
                "https://n2:7000/v1/keys/k/exports",
                body.as_bytes(),
                T0,
                nonce,
                KeysCommand::RequestExport { record: export(id) },
            )
        };
        assert!(refused(&apply(&mut r, T0, vec![ask("a/b", "e1")])[0]));
        let id = "00112233445566778899aabbccddeeff";
        assert_eq!(apply(&mut r, T0, vec![ask(id, "e2")]), vec![ok()]);
        // Approving needs an operator (this admin is not one).
        let approve = client(
            &admin,
            "POST",
            &format!("https://n2:7000/v1/exports/{id}/approve"),
            b"",
            T0,
            "e3",
            KeysCommand::ApproveExport {
                id: id.into(),
                operator: "admin".into(),
            },
        );
        assert!(refused(&apply(&mut r, T0, vec![approve])[0]));
        assert!(r.keys.exports[id].approvals.is_empty());
    }
}
