//! The guardians' part of the replicated state machine. OPRF keys are
//! ordinary key records (`oprf.NAME`, suite ristretto255); what is theirs
//! is the apply rule that lets `POST /v1/oprf/keys` create one
//! (`crate::cluster::machine::authority`). Accounts (apply rules 9) are
//! records here, each with its reset key `reset.ACCOUNT` in the key
//! registry, committed together ([`RecoveryState::create`]).

use std::collections::BTreeMap;

use keyquorum_wire::control::{CommandResponse, KeyRecord};
use keyquorum_wire::recovery::AccountRecord;
use serde::{Deserialize, Serialize};

/// Apply rules from which OPRF keys exist
/// (`keyquorum_wire::control::APPLY_RULES`).
pub const OPRF_RULES: u16 = 8;

/// Apply rules from which accounts and the `recovery` permission exist.
pub const ACCOUNT_RULES: u16 = 9;

/// Accounts by name, and the shard map's version (every enrolment and
/// rotation counts one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryState {
    /// Accounts by name.
    pub accounts: BTreeMap<String, AccountRecord>,
    /// The shard map's version.
    pub version: u64,
}

impl RecoveryState {
    /// Nothing enrolled (left out of snapshots, which then read as
    /// before).
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.version == 0
    }

    /// Enrol `account` with its reset key's first generation (already
    /// checked against the request by `super::authority`).
    pub fn create(
        &mut self,
        account: &AccountRecord,
        key: &KeyRecord,
        keys: &mut BTreeMap<String, KeyRecord>,
    ) -> CommandResponse {
        if self.accounts.contains_key(&account.account) {
            return CommandResponse::rejected(format!("account {} exists", account.account));
        }
        if keys.contains_key(&key.name) {
            return CommandResponse::rejected(format!("a key named {} exists", key.name));
        }
        self.version += 1;
        keys.insert(key.name.clone(), key.clone());
        let mut entry = account.clone();
        entry.version = self.version;
        self.accounts.insert(entry.account.clone(), entry);
        CommandResponse::Ok
    }
}
