//! What a client's signed request must ask for before an account command
//! applies (DESIGN.md §4 item 3), on every replica alike.
//!
//! | command | request | who |
//! |---|---|---|
//! | `account_create` | `POST /v1/recovery/accounts`: the account, its guardians (rendezvous over the voters), threshold, channels and device key as asked; its reset key `reset.ACCOUNT`, Ed25519, epoch 1, on exactly those guardians, endorsed by ≥ t of them | a client with the `recovery` permission, or an admin |

use keyquorum_core::oprf::reset;
use keyquorum_wire::api::SuiteName;
use keyquorum_wire::control::Grant;
use keyquorum_wire::recovery::{
    check_channel, key_name, CreateAccountRequest, RecoveryCommand, MAX_CHANNELS,
};
use keyquorum_wire::NodeId;

use super::state::ACCOUNT_RULES;
use crate::cluster::machine::request::{body, distinct, endorsed, need};
use crate::cluster::Registry;

/// Whether key `name` is an account's reset key under the log's apply
/// rules (from rules 9), which the generic key paths do not touch.
pub(crate) fn reset_key(r: &Registry, name: &str) -> bool {
    r.rules >= ACCOUNT_RULES && keyquorum_wire::recovery::is_reset_key(name)
}

/// Whether a client may enrol accounts: the `recovery` permission or an
/// admin.
pub(crate) fn may_enrol(grant: &Grant) -> bool {
    grant.recovery || grant.admin
}

/// Default number of guardians: every voter, at most this many.
pub const DEFAULT_GUARDIANS: usize = 5;

/// The guardians and threshold a request asks for, from the replicated
/// voters (never the entry node's choice).
pub(crate) fn shape(r: &Registry, b: &CreateAccountRequest) -> Result<(Vec<NodeId>, u16), String> {
    reset::check_account(&b.account).map_err(|e| e.to_string())?;
    need(
        !b.channels.is_empty() && b.channels.len() <= MAX_CHANNELS,
        "1 to 16 channels",
    )?;
    for c in &b.channels {
        check_channel(c)?;
    }
    let voters: Vec<u64> = r.voters.iter().map(|v| u64::from(*v)).collect();
    let n = b
        .guardians
        .map_or(voters.len().min(DEFAULT_GUARDIANS), usize::from);
    let chosen = reset::guardians(&b.account, &voters, n).map_err(|e| e.to_string())?;
    let guardians: Vec<NodeId> = r
        .voters
        .iter()
        .copied()
        .filter(|v| chosen.contains(&u64::from(*v)))
        .collect();
    let threshold = b
        .threshold
        .unwrap_or_else(|| r.default_threshold(guardians.len()));
    need(
        threshold >= 2 && usize::from(threshold) <= guardians.len(),
        "2 <= threshold <= guardians",
    )?;
    Ok((guardians, threshold))
}

/// Whether account command `command` is what a `POST` (`post`) to the path
/// with segments `seg` and body `body_bytes` by a client with `grant` asks
/// for.
pub(crate) fn asks_for(
    r: &Registry,
    grant: &Grant,
    post: bool,
    seg: &[&str],
    body_bytes: &[u8],
    command: &RecoveryCommand,
) -> Result<(), String> {
    if r.rules < ACCOUNT_RULES {
        return Err(format!(
            "accounts need apply rules {ACCOUNT_RULES} (the log is at {})",
            r.rules
        ));
    }
    match command {
        RecoveryCommand::AccountCreate {
            account,
            key,
            endorsements,
        } => {
            need(
                post && seg == ["v1", "recovery", "accounts"],
                "POST /v1/recovery/accounts",
            )?;
            need(
                may_enrol(grant),
                "the client has neither the recovery permission nor admin",
            )?;
            let b: CreateAccountRequest = body(body_bytes)?;
            let (guardians, threshold) = shape(r, &b)?;
            need(
                account.account == b.account
                    && account.guardians == guardians
                    && account.threshold == threshold
                    && account.channels == b.channels
                    && account.device_key == b.device_key
                    && account.created_by == grant.name
                    && account.version == 0,
                "the account asked for",
            )?;
            endorsed(r, key, endorsements)?;
            need(
                key.name == key_name(&b.account)
                    && key.suite == SuiteName::Ed25519
                    && key.epoch == 1
                    && key.threshold == threshold
                    && distinct(&key.members) == guardians
                    && key.members.len() == guardians.len(),
                "the account's reset key: reset.ACCOUNT, Ed25519, epoch 1, on its guardians",
            )
        }
    }
}
