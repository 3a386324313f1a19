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
//! [`ClusterCommand::Batch`] applies several commands in one log entry,
//! each on its own. The serialized form (snapshots) is one flat object: the
//! parts' fields side by side, in the order they had before the split
//! (`Flat`). A new capability adds its part here: one field, its fields in
//! `Flat`, and one dispatch line.

use std::collections::BTreeMap;

use keyquorum_store::raft::Machine;
use keyquorum_wire::control::{
    AuditEntry, ClientRecord, ClusterCommand, Command, CommandResponse, ExportRecord, KeyRecord,
    SignedHead, MAX_BATCH,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
        } = self;
        FlatRef {
            keys: records,
            clients,
            exports,
            audit: entries,
            heads,
            msg,
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
        })
    }
}

impl Machine for Registry {
    type Command = Command;
    type Response = CommandResponse;

    fn apply(&mut self, index: u64, command: &Command) -> CommandResponse {
        match command {
            Command::Cluster(c) => self.apply_cluster(index, c),
            Command::Keys(c) => self.keys.apply(c),
            Command::Msg(c) => self.msg.apply(c),
        }
    }
}

impl Registry {
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

    fn apply_cluster(&mut self, index: u64, command: &ClusterCommand) -> CommandResponse {
        match command {
            ClusterCommand::Audit { .. } | ClusterCommand::SignHead { .. } => {
                self.audit.apply(command)
            }
            ClusterCommand::PutClient { record } => self.put_client(record),
            ClusterCommand::RevokeClient { name } => self.revoke_client(name),
            ClusterCommand::Batch { commands } => {
                if commands.is_empty() || commands.len() > MAX_BATCH {
                    return CommandResponse::rejected(format!(
                        "a batch holds 1 to {MAX_BATCH} commands"
                    ));
                }
                if commands
                    .iter()
                    .any(|c| matches!(c, Command::Cluster(ClusterCommand::Batch { .. })))
                {
                    return CommandResponse::rejected("a batch cannot hold a batch");
                }
                CommandResponse::Batch {
                    responses: commands.iter().map(|c| self.apply(index, c)).collect(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(name: &str, key: &ed25519_dalek::SigningKey) -> Command {
        crate::msg::state::tests::endpoint(name, key).into()
    }

    #[test]
    fn a_batch_applies_each_command_on_its_own_and_a_bad_batch_changes_nothing() {
        let (ka, kb) = (
            ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]),
            ed25519_dalek::SigningKey::from_bytes(&[2u8; 32]),
        );
        let commands = vec![endpoint("a", &ka), endpoint("a", &kb), endpoint("b", &kb)];
        // Applied one by one, for comparison.
        let mut one_by_one = Registry::default();
        let singles: Vec<_> = commands.iter().map(|c| one_by_one.apply(1, c)).collect();
        assert_eq!(singles[0], CommandResponse::Ok);
        assert!(matches!(singles[1], CommandResponse::Rejected { .. }));
        assert_eq!(singles[2], CommandResponse::Ok);

        let mut r = Registry::default();
        let got = r.apply(
            1,
            &ClusterCommand::Batch {
                commands: commands.clone(),
            }
            .into(),
        );
        assert_eq!(got, CommandResponse::Batch { responses: singles });
        let json = |r: &Registry| serde_json::to_string(r).unwrap();
        assert_eq!(json(&r), json(&one_by_one));
        assert_eq!(r.msg.endpoints.len(), 2);

        // Refused whole, the state unchanged: empty, too long, nested.
        let before = json(&r);
        let kc = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let long: Vec<_> = (0..=MAX_BATCH)
            .map(|i| endpoint(&format!("e{i}"), &kc))
            .collect();
        let nested = vec![
            endpoint("c", &kc),
            ClusterCommand::Batch {
                commands: vec![endpoint("d", &kc)],
            }
            .into(),
        ];
        for bad in [Vec::new(), long, nested] {
            assert!(matches!(
                r.apply(2, &ClusterCommand::Batch { commands: bad }.into()),
                CommandResponse::Rejected { .. }
            ));
            assert_eq!(json(&r), before);
        }
    }

    #[test]
    fn the_snapshot_form_is_one_flat_object() {
        // Snapshots written before the state was split by capability must
        // still load: the parts' fields sit side by side.
        // Field for field, in the old order.
        let r = Registry::default();
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.starts_with(
                r#"{"keys":{},"clients":{},"exports":{},"audit":[],"heads":[],"msg":{"#
            ),
            "{json}"
        );
        let old = r#"{"keys":{},"clients":{},"exports":{},"audit":[],"heads":[]}"#;
        let back: Registry = serde_json::from_str(old).unwrap();
        assert!(back.keys.records.is_empty() && back.audit.entries.is_empty());
        // A registry with content round-trips to the same bytes.
        let mut r = Registry::default();
        r.apply(
            1,
            &endpoint("a", &ed25519_dalek::SigningKey::from_bytes(&[5; 32])),
        );
        r.apply(
            2,
            &ClusterCommand::Audit {
                events: vec![keyquorum_wire::control::AuditEvent {
                    time_ms: 1,
                    node: keyquorum_wire::NodeId::new(1).unwrap(),
                    actor: "t".into(),
                    action: "x".into(),
                    target: None,
                    outcome: "ok".into(),
                }],
            }
            .into(),
        );
        let json = serde_json::to_string(&r).unwrap();
        let back: Registry = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        assert_eq!(back.msg.endpoints.len(), 1);
        assert_eq!(back.audit.entries.len(), 1);
    }
}
