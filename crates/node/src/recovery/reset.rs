//! Reset requests (issue #20 item 2): a client opens one for an account
//! and the hash of a new credential; `t` of the account's guardians sign
//! the reset message with the account's reset key and each seals its
//! signature share to the account's device key and sends it over its own
//! channel. No guardian, and no coordinator, ever holds the token.
//!
//! 1. **Open** (`POST /v1/recovery/accounts/{account}/resets`, any live
//!    client: the user has lost the credential): the entry node picks the
//!    signer set (`keyquorum_core::oprf::reset::choose_signers`: `t`
//!    guardians covering the account's distinct channels up to `t`),
//!    draws one precomputed nonce commitment from each (the signing
//!    nonces' pool: the nonce stays in the signer's vault) and commits the
//!    request with them (`reset_open`). Every replica checks on apply the
//!    request id (derived from the client's signed request, so one signed
//!    request opens one reset), the expiry (the request's signature time +
//!    its TTL), the signer set and each commitment against the replicated
//!    account, and the rate limits (per account and per client, by the
//!    log clock: `super::state`).
//! 2. **Sign and deliver** (`ResetSign` to each signer): the signer reads
//!    the request from its own replica of the log (after a read barrier if
//!    it has not applied it yet), refuses an expired one or one it is not
//!    a signer of, rebuilds the message and the signing package from that
//!    record (nothing the coordinator sends is signed), spends its nonce
//!    durably (so it signs a request at most once: a second `ResetSign`
//!    finds no nonce), seals the share to the device key from the log and
//!    sends it over its channel from the log: `email:` through its
//!    `[smtp]` server, `webhook:` as an HTTP POST of JSON, `app` as its
//!    own signed statement into the account's inbox in the log
//!    (`reset_inbox`), which any node serves.
//! 3. **Assemble** (client side, `keyquorum_client::recovery`): the
//!    request's package (`GET .../resets/{id}`) and the `t` fragments give
//!    the token, an ordinary Ed25519 signature under the reset public key.
//!
//! A signer whose delivery fails has spent its nonce: that request cannot
//! complete, and the client opens another (the answer says which channel
//! failed). A coordinator that dies after the commit leaves the request
//! unsigned until it expires.

use std::time::Duration;

use futures::future::join_all;
use keyquorum_core::codec::{Decode, Encode};
use keyquorum_core::httpsig;
use keyquorum_core::oprf::reset::{self, Fragment, ResetMessage};
use keyquorum_core::sign::{Coordinator, SigningCommitment};
use keyquorum_core::Ed25519;
use keyquorum_wire::control::KeyRecord;
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::recovery::{
    key_name, AccountInbox, AccountRecord, FragmentDelivery, GuardianInfo, InboxItem,
    RecoveryCommand, ResetCommitment, ResetPackage, ResetRecord, ResetRequest, ResetResponse,
    DEFAULT_RESET_TTL_S, MAX_RESET_TTL_S, MIN_RESET_TTL_S,
};
use keyquorum_wire::{Hex, NodeId};
use serde::Serialize;

use super::state::RESET_RULES;
use crate::api::auth::{by_request, check_forwarded, forwarded};
use crate::cluster::Node;
use crate::error::NodeError;
use crate::keys::{me_first, Keys};

/// How long a webhook or SMTP delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The account and its reset key's current generation, from this replica.
fn account_of(node: &Node, account: &str) -> Result<(AccountRecord, KeyRecord), NodeError> {
    node.registry(|r| {
        let a = r.recovery.accounts.get(account)?.clone();
        let k = r.keys.records.get(&key_name(account))?.clone();
        Some((a, k))
    })
    .ok_or_else(|| NodeError::NotFound(format!("no account {account}")))
}

fn ids(members: &[NodeId]) -> Vec<u64> {
    members.iter().map(|m| u64::from(*m)).collect()
}

/// A request id from a path or body: 16 bytes, hex.
pub fn parse_request_id(s: &str) -> Result<[u8; 16], NodeError> {
    let b = hex::decode(s)
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok());
    b.ok_or_else(|| NodeError::BadRequest("a reset request id is 16 bytes of hex".into()))
}

fn message_of(reset: &ResetRecord) -> Result<(ResetMessage, [u8; 16]), NodeError> {
    let request_id = <[u8; 16]>::try_from(reset.request_id.0.as_slice())
        .map_err(|_| NodeError::Internal("stored request id is not 16 bytes".into()))?;
    Ok((
        ResetMessage {
            account: reset.account.clone(),
            request_id,
            expiry: reset.expires,
            credential_hash: reset.credential_hash.0,
        },
        request_id,
    ))
}

/// The signing package of `reset`, rebuilt from its record.
fn package_of(
    keys: &Keys,
    key: &KeyRecord,
    reset: &ResetRecord,
) -> Result<keyquorum_core::sign::SigningPackage<Ed25519>, NodeError> {
    let (message, request_id) = message_of(reset)?;
    let bytes = message.to_bytes().map_err(NodeError::from_core)?;
    let group = keys.group_key::<Ed25519>(key)?;
    let cs = reset
        .commitments
        .iter()
        .map(|c| {
            SigningCommitment::<Ed25519>::from_bytes(&c.commitment.0)
                .map_err(|e| NodeError::Internal(format!("stored commitment: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let c = Coordinator::new(&group, reset::session(&request_id), &bytes, cs)
        .map_err(NodeError::from_core)?;
    Ok(c.package().clone())
}

// ----- coordinator -----------------------------------------------------------

/// Open a reset request for `account` as the client's signed `request`
/// asks, and have its signers deliver their fragments.
pub async fn open(
    keys: &Keys,
    node: &Node,
    account: &str,
    req: ResetRequest,
    request: &httpsig::Request,
) -> Result<ResetResponse, NodeError> {
    node.require_rules(RESET_RULES, "reset requests")?;
    let ttl = req.ttl_s.unwrap_or(DEFAULT_RESET_TTL_S);
    if !(MIN_RESET_TTL_S..=MAX_RESET_TTL_S).contains(&ttl) {
        return Err(NodeError::BadRequest("ttl_s is 60 to 3600 seconds".into()));
    }
    let a = check_forwarded(node, &forwarded(request))?;
    let (acct, key) = account_of(node, account)?;
    // The rate limits as this replica sees them, before any nonce is drawn
    // (apply decides).
    node.registry(|r| {
        r.recovery
            .reset_limits(account, &a.grant.name, r.clock.now_ms())
    })
    .map_err(NodeError::Conflict)?;
    let guardians = ids(&key.members);
    let t = usize::from(key.threshold);
    let rotate = usize::try_from(a.verified.created).unwrap_or(0);
    let order = ids(&me_first(&key.members, node.id(), rotate));
    let mut excluded: Vec<u64> = Vec::new();
    let commitments = loop {
        let signers = reset::choose_signers(&guardians, &acct.channels, t, &order, &excluded)
            .ok_or_else(|| {
                NodeError::Unavailable(format!(
                    "fewer than {t} guardians of {account} covering its channels are reachable"
                ))
            })?;
        let key = &key;
        let fetched = join_all(signers.iter().map(|s| {
            let s = key.members.iter().copied().find(|m| u64::from(*m) == *s);
            async move {
                let s = s.ok_or_else(|| NodeError::Internal("signer not a member".into()))?;
                let info = node
                    .node_info(s)
                    .ok_or_else(|| NodeError::Unavailable(format!("no address for node {s}")))?;
                keys.commitment(node, key, s, &info)
                    .await
                    .map(|c| ResetCommitment {
                        node: s,
                        nonce: c.id,
                        commitment: c.commitment,
                    })
                    .map_err(|e| {
                        keys.drop_pool(key, s);
                        NodeError::Unavailable(format!("node {s}: {e}"))
                    })
            }
        }))
        .await;
        let mut got = Vec::with_capacity(t);
        for (s, r) in signers.iter().zip(fetched) {
            match r {
                Ok(c) => got.push(c),
                Err(e) => {
                    tracing::warn!(account, signer = s, error = %e, "reset signer unavailable");
                    excluded.push(*s);
                }
            }
        }
        if got.len() == t {
            break got;
        }
    };
    let reset = ResetRecord {
        account: account.to_string(),
        request_id: Hex(reset::request_id(&a.verified.keyid, &a.verified.nonce).to_vec()),
        credential_hash: req.credential_hash,
        expires: a.verified.created.saturating_add(u64::from(ttl)),
        epoch: key.epoch,
        commitments,
        requested_by: a.grant.name.clone(),
        created_ms: a.verified.created.saturating_mul(1000),
        opened_ms: 0,
        inbox: Vec::new(),
    };
    node.commit(by_request(
        request,
        RecoveryCommand::ResetOpen {
            reset: Box::new(reset.clone()),
        },
    ))
    .await?;
    let id = hex::encode(&reset.request_id.0);
    let fragments = join_all(reset.commitments.iter().map(|c| {
        let msg = PeerMessage::ResetSign {
            account: account.to_string(),
            request_id: reset.request_id.clone(),
        };
        let channel = reset::channel(&guardians, &acct.channels, u64::from(c.node))
            .unwrap_or_default()
            .to_string();
        async move {
            let got = match node.node_info(c.node) {
                Some(info) => node.call_signed(c.node, &info, &msg).await.map(|r| r.1),
                None => Err(NodeError::Unavailable(format!(
                    "no address for node {}",
                    c.node
                ))),
            };
            let error = match got {
                Ok(PeerMessage::ResetDelivered { .. }) => None,
                Ok(_) => Some(format!("node {} answered ResetSign wrongly", c.node)),
                Err(e) => Some(e.to_string()),
            };
            FragmentDelivery {
                guardian: c.node,
                channel,
                delivered: error.is_none(),
                error,
            }
        }
    }))
    .await;
    let failed = fragments.iter().filter(|f| !f.delivered).count();
    node.audit_event(
        "client",
        "recovery.reset",
        Some(account),
        &format!(
            "request {id} by {}, signers {:?}, {failed} delivery failure(s)",
            reset.requested_by,
            fragments.iter().map(|f| f.guardian).collect::<Vec<_>>()
        ),
    );
    Ok(ResetResponse {
        account: account.to_string(),
        request_id: reset.request_id,
        expires: reset.expires,
        fragments,
    })
}

/// The live reset request `id` of `account`, from this replica.
fn live_reset(node: &Node, account: &str, id: &[u8; 16]) -> Option<ResetRecord> {
    node.registry(|r| {
        let now_s = r.clock.now_ms() / 1000;
        r.recovery
            .resets
            .get(&hex::encode(id))
            .filter(|x| x.account == account && x.expires > now_s)
            .cloned()
    })
}

/// What a client needs to assemble reset request `id`'s token.
pub fn package(node: &Node, account: &str, id: &str) -> Result<ResetPackage, NodeError> {
    let rid = parse_request_id(id)?;
    let reset = live_reset(node, account, &rid)
        .ok_or_else(|| NodeError::NotFound(format!("no live reset request {id} of {account}")))?;
    let (acct, _) = account_of(node, account)?;
    let key = Keys::record(node, &key_name(account), reset.epoch)?;
    let (message, _) = message_of(&reset)?;
    let guardians = ids(&key.members);
    Ok(ResetPackage {
        account: account.to_string(),
        request_id: reset.request_id.clone(),
        message: Hex(message.to_bytes().map_err(NodeError::from_core)?),
        expires: reset.expires,
        signers: reset
            .commitments
            .iter()
            .map(|c| GuardianInfo {
                node: c.node,
                channel: reset::channel(&guardians, &acct.channels, u64::from(c.node))
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect(),
        commitments: reset.commitments.clone(),
        group_key: key.group_key.clone(),
        reset_public_key: key.public_key.clone(),
    })
}

/// The account's `app` inbox: fragments of its live requests.
pub fn inbox(node: &Node, account: &str) -> Result<AccountInbox, NodeError> {
    account_of(node, account)?;
    let mut live: Vec<ResetRecord> = node.registry(|r| {
        let now_s = r.clock.now_ms() / 1000;
        r.recovery
            .resets
            .values()
            .filter(|x| x.account == account && x.expires > now_s)
            .cloned()
            .collect()
    });
    live.sort_by_key(|x| x.created_ms);
    Ok(AccountInbox {
        fragments: live.into_iter().flat_map(|x| x.inbox).collect(),
    })
}

// ----- signer ----------------------------------------------------------------

/// `ResetSign`: sign reset request `request_id` of `account` from this
/// replica's record, seal the share to the device and deliver it.
pub(crate) async fn sign(
    keys: &Keys,
    node: &Node,
    account: &str,
    request_id: &Hex,
) -> Result<PeerMessage, NodeError> {
    node.require_rules(RESET_RULES, "reset requests")?;
    let rid = <[u8; 16]>::try_from(request_id.0.as_slice())
        .map_err(|_| NodeError::BadRequest("a reset request id is 16 bytes".into()))?;
    let find = || node.registry(|r| r.recovery.resets.get(&hex::encode(rid)).cloned());
    let reset = match find() {
        Some(x) => x,
        None => {
            // The coordinator returns once it applied the request; this
            // replica may be an entry behind.
            node.read_barrier().await?;
            find().ok_or_else(|| {
                NodeError::NotFound(format!("no reset request {}", hex::encode(rid)))
            })?
        }
    };
    if reset.account != account {
        return Err(NodeError::BadRequest(
            "the reset request is of another account".into(),
        ));
    }
    let now_s = node.registry(|r| r.clock.now_ms()).max(node.now_ms()) / 1000;
    if now_s >= reset.expires {
        return Err(NodeError::Forbidden(format!(
            "reset request {} has expired",
            hex::encode(rid)
        )));
    }
    let me = node.id();
    let mine = reset
        .commitments
        .iter()
        .find(|c| c.node == me)
        .ok_or_else(|| NodeError::Forbidden("this node is not a signer of the request".into()))?;
    let (acct, _) = account_of(node, account)?;
    // A guardian on a build the account does not allow signs nothing.
    node.registry(|r| super::authority::attested_for(r, &acct, &[me]))
        .map_err(NodeError::Forbidden)?;
    let key = Keys::record(node, &key_name(account), reset.epoch)?;
    let package = package_of(keys, &key, &reset)?;
    let share = keys
        .reset_share(
            node,
            &key,
            &rid,
            &mine.nonce.0,
            &mine.commitment.0,
            &package,
        )
        .await?;
    let signer = u16::try_from(u64::from(me))
        .map_err(|_| NodeError::Internal("node id above 65535".into()))?;
    let fragment = Fragment::seal(&acct.device_key.0, account, rid, signer, &share.to_bytes())
        .map_err(NodeError::from_core)?;
    let channel = reset::channel(&ids(&key.members), &acct.channels, u64::from(me))
        .ok_or_else(|| NodeError::Internal("a signer without a channel".into()))?
        .to_string();
    deliver(node, &channel, &reset, me, fragment.to_text())
        .await
        .map_err(|e| {
            // The detail (an SMTP reply, a webhook's status) stays here: the
            // opener learns only that this channel failed.
            tracing::warn!(account, channel = kind_of(&channel), error = %e, "reset fragment not delivered");
            NodeError::Unavailable(format!(
                "guardian {me} could not deliver over its {} channel",
                kind_of(&channel)
            ))
        })?;
    node.audit_event(
        "node",
        "recovery.reset.deliver",
        Some(account),
        &format!("request {} over {}", hex::encode(rid), kind_of(&channel)),
    );
    Ok(PeerMessage::ResetDelivered { channel })
}

/// The channel's kind, for logs (the address is the account's, not
/// logged).
fn kind_of(channel: &str) -> &str {
    channel.split(':').next().unwrap_or("?")
}

/// What a webhook receives.
#[derive(Serialize)]
struct WebhookBody<'a> {
    account: &'a str,
    request_id: String,
    credential_hash: String,
    guardian: NodeId,
    expires: u64,
    fragment: &'a str,
}

/// Send `fragment` over `channel`.
async fn deliver(
    node: &Node,
    channel: &str,
    reset: &ResetRecord,
    me: NodeId,
    fragment: String,
) -> Result<(), NodeError> {
    if channel == "app" {
        let item = InboxItem {
            request_id: reset.request_id.clone(),
            guardian: me,
            fragment,
        };
        return node
            .commit(node.statement(RecoveryCommand::ResetInbox {
                account: reset.account.clone(),
                item,
            }))
            .await
            .map(|_| ());
    }
    if let Some(url) = channel.strip_prefix("webhook:") {
        let body = WebhookBody {
            account: &reset.account,
            request_id: hex::encode(&reset.request_id.0),
            credential_hash: hex::encode(reset.credential_hash.0),
            guardian: me,
            expires: reset.expires,
            fragment: &fragment,
        };
        return super::channels::webhook(
            url,
            &body,
            node.config().allow_private_webhooks,
            DELIVERY_TIMEOUT,
        )
        .await;
    }
    if let Some(to) = channel.strip_prefix("email:") {
        let smtp = node.config().smtp.clone().ok_or_else(|| {
            NodeError::Unavailable(format!(
                "node {me} has no [smtp] server for email fragments"
            ))
        })?;
        let id = hex::encode(&reset.request_id.0);
        let subject = format!(
            "Reset code for {} (request {})",
            reset.account,
            id.get(..8).unwrap_or_default()
        );
        let text = format!(
            "A reset of account {} was requested: request {id}, for the new credential whose \
             hash starts {}. If you did not ask for it, ignore this message. This is one \
             fragment of the reset token, from guardian {me}; paste it into your device \
             together with the others. It expires at {} (Unix time).\n\n{fragment}\n",
            reset.account,
            hex::encode(reset.credential_hash.0.get(..8).unwrap_or_default()),
            reset.expires
        );
        return super::channels::email(&smtp, to, &subject, text, DELIVERY_TIMEOUT).await;
    }
    Err(NodeError::Internal(format!(
        "unknown channel kind {}",
        kind_of(channel)
    )))
}
