//! Accounts (issue #20 item 1): `POST /v1/recovery/accounts` picks the
//! account's guardians by rendezvous hashing over the voters (every
//! replica recomputes the choice: `super::authority::shape`), runs a DKG
//! among them for the account's Ed25519 reset key `reset.ACCOUNT`, and
//! commits the account (guardians, threshold, channels, device key) with
//! the key's first generation in one command. The reset key signs only
//! reset tokens: `POST /v1/keys/reset.*/sign` is refused by every member,
//! and the key is not reshared through `/v1/keys` (its guardians move with
//! the account).
//!
//! **Rotation** (`POST /v1/recovery/accounts/{account}/rotate`): the
//! guardians rendezvous hashing picks over the voters now (as many as
//! asked, by default as many as before) get the reset key's next
//! generation by resharing (the reset public key does not change); each
//! old guardian that deals checks the client's request and recomputes the
//! new guardians and threshold itself; the account and the key's new
//! generation are committed in one command, endorsed by the new
//! guardians. Old guardians then erase their shares, and requests opened
//! before the rotation cannot complete (their package names the old
//! generation). As in every resharing scheme, an old guardian that kept
//! its share against the protocol could still sign with `t − 1` others of
//! the old set under the unchanged key (honest erasure is assumed).

use keyquorum_core::httpsig;
use keyquorum_wire::api::SuiteName;

use keyquorum_wire::peer::{ClientRequest, PeerMessage, ResharePlan};
use keyquorum_wire::recovery::{
    key_name, AccountInfo, AccountList, AccountRecord, CreateAccountRequest, GuardianInfo,
    RecoveryCommand, RotateAccountRequest, KEY_PREFIX,
};
use keyquorum_wire::{Hex32, NodeId};

use super::authority::{rotate_shape, shape};
use super::state::{ACCOUNT_RULES, RESET_RULES};
use crate::api::auth::by_request;
use crate::cluster::Node;
use crate::error::NodeError;
use crate::keys::{Keys, NewKey};

/// The account's public description, from the replicated records.
fn info_of(a: &AccountRecord, k: &keyquorum_wire::control::KeyRecord) -> AccountInfo {
    let ids: Vec<u64> = a.guardians.iter().map(|g| u64::from(*g)).collect();
    AccountInfo {
        account: a.account.clone(),
        guardians: a
            .guardians
            .iter()
            .map(|g| GuardianInfo {
                node: *g,
                channel: keyquorum_core::oprf::reset::channel(&ids, &a.channels, u64::from(*g))
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect(),
        threshold: k.threshold,
        reset_public_key: k.public_key.clone(),
        device_key: a.device_key,
        measurements: a.measurements.clone(),
        version: a.version,
        epoch: k.epoch,
    }
}

/// Enrol the account `req` asks for (the caller is checked on apply: the
/// `recovery` permission or an admin).
pub async fn create(
    keys: &Keys,
    node: &Node,
    req: CreateAccountRequest,
    client: &str,
    request: &httpsig::Request,
) -> Result<AccountInfo, NodeError> {
    node.require_rules(ACCOUNT_RULES, "accounts")?;
    let (guardians, threshold) = node
        .registry(|r| shape(r, &req))
        .map_err(NodeError::BadRequest)?;
    let key = key_name(&req.account);
    if node.registry(|r| {
        r.recovery.accounts.contains_key(&req.account) || r.keys.records.contains_key(&key)
    }) {
        return Err(NodeError::Conflict(format!(
            "account {} exists",
            req.account
        )));
    }
    let plan = NewKey {
        name: key,
        suite: SuiteName::Ed25519,
        threshold,
        members: guardians.clone(),
        min_members: None,
    };
    let record = AccountRecord {
        account: req.account.clone(),
        guardians,
        threshold,
        channels: req.channels.clone(),
        device_key: req.device_key,
        created_by: client.to_string(),
        measurements: req.measurements.clone(),
        version: 0,
    };
    let record = &record;
    keys.create_with(node, plan, |key, endorsements| async move {
        node.commit(by_request(
            request,
            RecoveryCommand::AccountCreate {
                account: Box::new(record.clone()),
                key: Box::new(key),
                endorsements,
            },
        ))
        .await
        .map(|_| ())
    })
    .await?;
    node.audit_event(
        "client",
        "recovery.enrol",
        Some(&req.account),
        &format!(
            "guardians {:?}, threshold {threshold}, {} channel(s)",
            record.guardians,
            record.channels.len()
        ),
    );
    info(node, &req.account)
}

/// Move account `account` to the guardians its rotation asks for (the
/// caller is checked by each dealer and on apply).
pub async fn rotate(
    keys: &Keys,
    node: &Node,
    grant: &keyquorum_wire::control::Grant,
    account: &str,
    req: RotateAccountRequest,
    request: &httpsig::Request,
) -> Result<AccountInfo, NodeError> {
    node.require_rules(RESET_RULES, "account rotation")?;
    let (guardians, threshold) =
        node.registry(|r| rotate_shape(r, account, &req))
            .map_err(|e| {
                if e.starts_with("no account") {
                    NodeError::NotFound(e)
                } else {
                    NodeError::BadRequest(e)
                }
            })?;
    let before = node
        .registry(|r| r.recovery.accounts.get(account).cloned())
        .ok_or_else(|| NodeError::NotFound(format!("no account {account}")))?;
    if !super::authority::may_rotate(grant, &before) {
        return Err(NodeError::Forbidden(format!(
            "client {} may not rotate {account}: an admin, or the client that enrolled it",
            grant.name
        )));
    }
    let next = AccountRecord {
        guardians: guardians.clone(),
        threshold,
        ..before.clone()
    };
    let next = &next;
    keys.reshare_with(
        node,
        &key_name(account),
        threshold,
        guardians.clone(),
        request,
        false,
        |key, _expected, endorsements| async move {
            node.commit(by_request(
                request,
                RecoveryCommand::AccountRotate {
                    account: Box::new(next.clone()),
                    key: Box::new(key),
                    endorsements,
                },
            ))
            .await
            .map(|_| ())
        },
    )
    .await?;
    node.audit_event(
        "client",
        "recovery.rotate",
        Some(account),
        &format!(
            "guardians {:?} -> {guardians:?}, threshold {} -> {threshold}",
            before.guardians, before.threshold
        ),
    );
    info(node, account)
}

/// An old guardian's part of a rotation: the dealer's re-deal, once this
/// replica's own view of the rotation (guardians and threshold) matches
/// the plan and the client's request asks for it.
pub(crate) fn deal_rotation(
    keys: &Keys,
    node: &Node,
    from: NodeId,
    session: Hex32,
    plan: &ResharePlan,
    request: &ClientRequest,
) -> Result<PeerMessage, NodeError> {
    node.require_rules(RESET_RULES, "account rotation")?;
    let account = plan
        .key
        .strip_prefix(KEY_PREFIX)
        .ok_or_else(|| NodeError::BadRequest("not an account's reset key".into()))?;
    let path = crate::cluster::machine::authority::path_of(&request.target_uri);
    if path != format!("/v1/recovery/accounts/{account}/rotate") {
        return Err(NodeError::Forbidden(format!(
            "reshare refused: {} is an account's reset key; only the account's rotation \
             (POST /v1/recovery/accounts/{account}/rotate) moves it",
            plan.key
        )));
    }
    let shape = |body: &[u8]| {
        let asked: RotateAccountRequest =
            serde_json::from_slice(body).map_err(|e| format!("the body does not parse: {e}"))?;
        node.registry(|r| rotate_shape(r, account, &asked))
    };
    let creator = node
        .registry(|r| {
            r.recovery
                .accounts
                .get(account)
                .map(|a| a.created_by.clone())
        })
        .ok_or_else(|| NodeError::NotFound(format!("no account {account}")))?;
    keys.reshare_deal_for_rotation(node, from, session, plan, request, account, &creator, shape)
}

/// Account `account`'s public description.
pub fn info(node: &Node, account: &str) -> Result<AccountInfo, NodeError> {
    node.registry(|r| {
        let a = r.recovery.accounts.get(account)?;
        let k = r.keys.records.get(&key_name(account))?;
        Some(info_of(a, k))
    })
    .ok_or_else(|| NodeError::NotFound(format!("no account {account}")))
}

/// Every account, and the shard map's version.
pub fn list(node: &Node) -> AccountList {
    node.registry(|r| AccountList {
        accounts: r
            .recovery
            .accounts
            .values()
            .filter_map(|a| {
                r.keys
                    .records
                    .get(&key_name(&a.account))
                    .map(|k| info_of(a, k))
            })
            .collect(),
        version: r.recovery.version,
    })
}
