//! The replicated state machine every node applies the Raft log to, and the
//! dispatcher in front of it: [`Registry`] is the capabilities' parts side
//! by side, and each [`Command`] goes to the part that owns it.
//!
//! | part | owner | commands |
//! |---|---|---|
//! | [`KeysState`]: key records, exports | `crate::keys::state` | [`KeysCommand`](keyquorum_wire::control::KeysCommand) |
//! | [`MsgState`]: endpoints, prekeys, mailboxes, seen-set | `crate::msg::state` | [`MsgCommand`](keyquorum_wire::msg::MsgCommand) |
//! | [`AuditLog`]: the hash-chained audit log | [`super::audit`] | [`ClusterCommand::Audit`], [`ClusterCommand::SignHead`] |
//! | token grants | here | [`ClusterCommand::PutToken`] |
//!
//! [`ClusterCommand::Batch`] applies several commands in one log entry,
//! each on its own. The serialized form (snapshots) is that of one flat
//! struct: the parts' fields side by side, as before they were split.
//! A new capability adds its part here: one field and one dispatch line.

use std::collections::BTreeMap;

use keyquorum_store::raft::Machine;
use keyquorum_wire::control::{ClusterCommand, Command, CommandResponse, TokenGrant, MAX_BATCH};
use keyquorum_wire::Hex32;
use serde::{Deserialize, Serialize};

pub use super::audit::AuditLog;
pub use crate::keys::state::KeysState;
pub use crate::msg::state::MsgState;

/// The replicated state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Registry {
    /// Shared keys: records by name, export requests.
    #[serde(flatten)]
    pub keys: KeysState,
    /// Token grants by SHA-256 of the token.
    pub tokens: BTreeMap<Hex32, TokenGrant>,
    /// The audit log and its signed heads.
    #[serde(flatten)]
    pub audit: AuditLog,
    /// Per-message key derivation: endpoints, prekeys, mailboxes, seen-set.
    #[serde(default)]
    pub msg: MsgState,
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
    fn apply_cluster(&mut self, index: u64, command: &ClusterCommand) -> CommandResponse {
        match command {
            ClusterCommand::Audit { .. } | ClusterCommand::SignHead { .. } => {
                self.audit.apply(command)
            }
            ClusterCommand::PutToken { token_hash, grant } => {
                self.tokens.insert(*token_hash, grant.clone());
                CommandResponse::Ok
            }
            ClusterCommand::Batch { commands } => {
                if commands.is_empty() || commands.len() > MAX_BATCH {
                    return CommandResponse::rejected(format!("a batch holds 1 to {MAX_BATCH} commands"));
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
    use keyquorum_wire::msg::{EndpointRecord, MsgCommand};

    use super::*;

    fn endpoint(name: &str, key: &ed25519_dalek::SigningKey) -> Command {
        MsgCommand::PutEndpoint {
            record: EndpointRecord {
                name: name.into(),
                identity: Hex32(key.verifying_key().to_bytes()),
                owner: "t".into(),
                revoked: false,
                created_ms: 0,
            },
        }
        .into()
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
        let r = Registry::default();
        let v = serde_json::to_value(&r).unwrap();
        let mut fields: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["audit", "exports", "heads", "keys", "msg", "tokens"]
        );
        let old = r#"{"keys":{},"tokens":{},"exports":{},"audit":[],"heads":[]}"#;
        let back: Registry = serde_json::from_str(old).unwrap();
        assert!(back.keys.records.is_empty() && back.audit.entries.is_empty());
    }
}
