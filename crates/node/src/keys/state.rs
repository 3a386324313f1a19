//! Shared keys' part of the replicated state machine: key records (public
//! data only: public key, group key with every public share, threshold,
//! members, generation) and export requests, and how [`KeysCommand`]s
//! apply.

use std::collections::BTreeMap;

use keyquorum_wire::control::{CommandResponse, ExportRecord, KeyRecord, KeysCommand};

/// Shared keys' replicated state (serialized as part of
/// [`crate::cluster::Registry`]).
#[derive(Debug, Clone, Default)]
pub struct KeysState {
    /// Keys by name.
    pub records: BTreeMap<String, KeyRecord>,
    /// Export requests by id.
    pub exports: BTreeMap<String, ExportRecord>,
}

impl KeysState {
    /// Apply one of shared keys' commands.
    pub(crate) fn apply(&mut self, command: &KeysCommand) -> CommandResponse {
        match command {
            KeysCommand::PutKey {
                record,
                expected_epoch,
                ..
            } => {
                let current = self.records.get(&record.name).map(|r| r.epoch);
                if current != *expected_epoch {
                    return CommandResponse::rejected(match current {
                        Some(e) => format!("key {} is at epoch {e}", record.name),
                        None => format!("key {} does not exist", record.name),
                    });
                }
                if record.epoch != expected_epoch.map_or(1, |e| e + 1) {
                    return CommandResponse::rejected("epoch must advance by one");
                }
                self.records.insert(record.name.clone(), record.clone());
                CommandResponse::Ok
            }
            KeysCommand::RequestExport { record } => {
                if self.exports.contains_key(&record.id) {
                    return CommandResponse::rejected("export id in use");
                }
                if !self.records.contains_key(&record.key) {
                    return CommandResponse::rejected(format!("no key {}", record.key));
                }
                self.exports.insert(record.id.clone(), record.clone());
                CommandResponse::Ok
            }
            KeysCommand::ApproveExport { id, operator } => match self.exports.get_mut(id) {
                None => CommandResponse::rejected(format!("no export request {id}")),
                Some(r) if r.done => CommandResponse::rejected("export already carried out"),
                Some(r) if r.requested_by == *operator => {
                    CommandResponse::rejected("the requester cannot approve its own export")
                }
                Some(r) => {
                    if !r.approvals.contains(operator) {
                        r.approvals.push(operator.clone());
                    }
                    CommandResponse::Ok
                }
            },
            KeysCommand::CompleteExport { id } => match self.exports.get_mut(id) {
                None => CommandResponse::rejected(format!("no export request {id}")),
                Some(r) if r.done => CommandResponse::rejected("export already carried out"),
                Some(r) if r.approvals.len() < usize::from(r.needed) => {
                    CommandResponse::rejected("not enough approvals")
                }
                Some(r) => {
                    r.done = true;
                    CommandResponse::Ok
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use keyquorum_wire::Hex32;

    use super::*;
    use crate::cluster::Registry;

    #[test]
    fn put_key_is_compare_and_set() {
        // The state part alone (what authorizes a command is the
        // registry's: `crate::cluster::machine::authority`).
        let mut r = Registry::default();
        let mut rec = KeyRecord {
            name: "k".into(),
            suite: keyquorum_wire::api::SuiteName::Ed25519,
            threshold: 2,
            members: (1..=3).filter_map(keyquorum_wire::NodeId::new).collect(),
            public_key: Default::default(),
            group_key: Default::default(),
            epoch: 1,
            session: Hex32([1u8; 32]),
            created_ms: 0,
        };
        assert_eq!(
            r.keys.apply(&KeysCommand::PutKey {
                record: rec.clone(),
                expected_epoch: None,
                endorsements: vec![],
            }),
            CommandResponse::Ok
        );
        assert!(matches!(
            r.keys.apply(&KeysCommand::PutKey {
                record: rec.clone(),
                expected_epoch: None,
                endorsements: vec![],
            }),
            CommandResponse::Rejected { .. }
        ));
        rec.epoch = 3;
        assert!(matches!(
            r.keys.apply(&KeysCommand::PutKey {
                record: rec.clone(),
                expected_epoch: Some(1),
                endorsements: vec![],
            }),
            CommandResponse::Rejected { .. }
        ));
        rec.epoch = 2;
        assert_eq!(
            r.keys.apply(&KeysCommand::PutKey {
                record: rec,
                expected_epoch: Some(1),
                endorsements: vec![],
            }),
            CommandResponse::Ok
        );
        assert_eq!(r.keys.records["k"].epoch, 2);
    }
}
