//! Shared keys' part of the replicated state machine: key records (public
//! data only: public key, group key with every public share, threshold,
//! members, generation) and export requests, and how [`KeysCommand`]s
//! apply.

use std::collections::BTreeMap;

use keyquorum_wire::control::{CommandResponse, ExportRecord, KeyRecord, KeysCommand};

/// Export requests one client may have waiting (not yet carried out),
/// from apply rules `crate::msg::quota::QUOTA_RULES`.
pub const PENDING_EXPORTS_PER_CLIENT: usize = 16;

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
    /// Whether `client` may request one more export: at most
    /// [`PENDING_EXPORTS_PER_CLIENT`] not yet carried out. Err says why not.
    pub fn export_quota(&self, client: &str) -> Result<(), String> {
        let pending = self
            .exports
            .values()
            .filter(|e| !e.done && e.requested_by == client)
            .count();
        if pending >= PENDING_EXPORTS_PER_CLIENT {
            return Err(format!(
                "{}: client {client} has {PENDING_EXPORTS_PER_CLIENT} export requests not yet \
                 carried out",
                crate::msg::quota::QUOTA_EXCEEDED
            ));
        }
        Ok(())
    }

    /// Apply one of shared keys' commands.
    /// `quotas`: whether the entry's apply rules put the per-client
    /// quotas in force (`crate::msg::quota::QUOTA_RULES`).
    pub(crate) fn apply(&mut self, command: &KeysCommand, quotas: bool) -> CommandResponse {
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
                if quotas {
                    if let Err(e) = self.export_quota(&record.requested_by) {
                        return CommandResponse::rejected(e);
                    }
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

    /// Key "k", 2-of-3, epoch 1.
    fn record() -> KeyRecord {
        KeyRecord {
            name: "k".into(),
            suite: keyquorum_wire::api::SuiteName::Ed25519,
            threshold: 2,
            members: (1..=3).filter_map(keyquorum_wire::NodeId::new).collect(),
            public_key: Default::default(),
            group_key: Default::default(),
            epoch: 1,
            session: Hex32([1u8; 32]),
            created_ms: 0,
        }
    }

    #[test]
    fn put_key_is_compare_and_set() {
        // The state part alone (what authorizes a command is the
        // registry's: `crate::cluster::machine::authority`).
        let mut r = Registry::default();
        let mut rec = record();
        assert_eq!(
            r.keys.apply(
                &KeysCommand::PutKey {
                    record: rec.clone(),
                    expected_epoch: None,
                    endorsements: vec![],
                },
                true
            ),
            CommandResponse::Ok
        );
        assert!(matches!(
            r.keys.apply(
                &KeysCommand::PutKey {
                    record: rec.clone(),
                    expected_epoch: None,
                    endorsements: vec![],
                },
                true
            ),
            CommandResponse::Rejected { .. }
        ));
        rec.epoch = 3;
        assert!(matches!(
            r.keys.apply(
                &KeysCommand::PutKey {
                    record: rec.clone(),
                    expected_epoch: Some(1),
                    endorsements: vec![],
                },
                true
            ),
            CommandResponse::Rejected { .. }
        ));
        rec.epoch = 2;
        assert_eq!(
            r.keys.apply(
                &KeysCommand::PutKey {
                    record: rec,
                    expected_epoch: Some(1),
                    endorsements: vec![],
                },
                true
            ),
            CommandResponse::Ok
        );
        assert_eq!(r.keys.records["k"].epoch, 2);
    }

    #[test]
    fn a_client_has_at_most_its_pending_exports() {
        let mut k = KeysState::default();
        let put = KeysCommand::PutKey {
            record: record(),
            expected_epoch: None,
            endorsements: vec![],
        };
        assert_eq!(k.apply(&put, true), CommandResponse::Ok);
        let request = |i: usize, by: &str| KeysCommand::RequestExport {
            record: ExportRecord {
                id: format!("{i:032x}"),
                key: "k".into(),
                epoch: 1,
                requested_by: by.into(),
                approvals: vec![],
                needed: 1,
                done: false,
                recipient: Hex32([2; 32]),
                created_ms: 0,
            },
        };
        for i in 0..PENDING_EXPORTS_PER_CLIENT {
            assert_eq!(k.apply(&request(i, "a"), true), CommandResponse::Ok);
        }
        let past = request(100, "a");
        match k.apply(&past, true) {
            CommandResponse::Rejected { reason } => {
                assert!(
                    reason.starts_with(crate::msg::quota::QUOTA_EXCEEDED),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Another client is not held; older rules had no limit.
        assert_eq!(k.apply(&request(101, "b"), true), CommandResponse::Ok);
        assert_eq!(k.apply(&request(102, "a"), false), CommandResponse::Ok);
        // One carried out frees a place (17 pending with the old-rules one).
        for e in k
            .exports
            .values_mut()
            .filter(|e| e.requested_by == "a")
            .take(2)
        {
            e.done = true;
        }
        assert_eq!(k.apply(&past, true), CommandResponse::Ok);
    }
}
