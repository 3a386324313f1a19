//! The node side of per-message key derivation (DESIGN.md §3.2; the
//! protocol steps are `keyquorum_core::msgkey`, pure functions).
//!
//! What the node adds is state and transport:
//!
//! - **Registry** (Raft, [`state::MsgState`]): endpoints and their
//!   identities, published signed prekeys, prekey claims (a sender reserves
//!   a receiver's prekey through consensus, so none is handed out twice),
//!   the receivers' mailboxes and the seen-set of identifiers (kept for the
//!   acceptance window; persisted with the log).
//! - **Send** ([`send`]): the node a sender calls checks who is asking,
//!   hands each coordinator its bundle ([`coordinate`], a peer message), and
//!   once at least one coordinator confirmed, commits the message to the
//!   receiver's mailbox ([`MsgCommand::Deliver`] —
//!   which refuses a replayed identifier and an unclaimed or used prekey).
//!   Concurrent deliveries through one node share one forward and one log
//!   entry ([`Node::commit_batched`] batches them).
//!   With `m` coordinators the message survives `m − 1` unreachable ones.
//! - **Coordinate**: the routed node runs `msgkey::protocol::coordinate`
//!   with its HPKE key and clock, refuses identifiers already accepted, and
//!   signs the confirmation with its identity key.
//!
//! The sender's and receiver's steps run in the endpoint's process (the
//! client crate); the node never sees an endpoint secret.

use futures::future::join_all;
use keyquorum_core::msgkey::protocol::{self as mk, AtCoordinator, Routing, Sealed};
use keyquorum_core::msgkey::route::Member;
use keyquorum_core::msgkey::MsgError;
use keyquorum_wire::control::{CommandResponse, Grant};
use keyquorum_wire::msg::{
    ClaimedPrekeys, CoordinatorBundle, EndpointInfo, EndpointRecord, MailItem, MsgCommand,
    MsgConfirmation, MsgDeployment, MsgNode, Prekey, SealedBox, SendRequest, SendResponse,
    CLAIM_COUNTS, MAX_CLAIM,
};
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::{Hex, Hex32};

use crate::api::Caller;
use crate::cluster::Node;
use crate::error::NodeError;
use crate::names::check_name;
use state::{MsgState, Unusable};

pub mod api;
pub mod authority;
pub mod quota;
pub mod state;

/// Default acceptance window: timestamps within ±5 minutes of a
/// coordinator's clock.
pub const DEFAULT_WINDOW_MS: u64 = 300_000;
/// Largest sealed payload.
pub const MAX_PAYLOAD: usize = 64 * 1024 + 16;
/// Largest canonical header (8 coordinators' commitments and then some).
const MAX_HEADER: usize = 4096;

fn bad(e: MsgError) -> NodeError {
    NodeError::BadRequest(e.to_string())
}

fn sealed(b: &SealedBox) -> Sealed {
    Sealed {
        enc: b.enc.0.clone(),
        ciphertext: b.ciphertext.0.clone(),
    }
}

fn sealed_box(s: &Sealed) -> SealedBox {
    SealedBox {
        enc: Hex(s.enc.clone()),
        ciphertext: Hex(s.ciphertext.clone()),
    }
}

fn sig64(h: &Hex, what: &str) -> Result<[u8; 64], NodeError> {
    h.0.as_slice()
        .try_into()
        .map_err(|_| NodeError::BadRequest(format!("{what} is not 64 bytes")))
}

/// May `grant` act for endpoint `record`?
fn owns(grant: &Grant, record: &EndpointRecord) -> Result<(), NodeError> {
    if grant.admin || grant.name == record.owner {
        Ok(())
    } else {
        Err(NodeError::Forbidden(format!(
            "token {} does not own endpoint {}",
            grant.name, record.name
        )))
    }
}

fn live(node: &Node, name: &str) -> Result<EndpointRecord, NodeError> {
    node.registry(|r| r.msg.live(name).cloned())
        .map_err(|e| match e {
            Unusable::Unknown(_) => NodeError::NotFound(e.to_string()),
            Unusable::Revoked(_) => NodeError::Conflict(e.to_string()),
        })
}

/// The deployment as this node's replica knows it (`None` before the salt
/// is chosen).
fn current(node: &Node) -> Option<MsgDeployment> {
    let (salt, window_ms, earlier) =
        node.registry(|r| (r.msg.salt, r.msg.window_ms, r.msg.earlier_routes()));
    let nodes = node
        .members()
        .into_iter()
        .filter(|(_, _, voter)| *voter)
        .map(|(id, info, _)| MsgNode {
            id,
            identity: info.identity,
            hpke: info.hpke,
        })
        .collect();
    salt.map(|salt| MsgDeployment {
        salt,
        window_ms,
        nodes,
        earlier,
    })
}

/// The deployment parameters and routing membership; the salt is chosen
/// (randomly, once, through consensus) on first use.
pub async fn deployment(node: &Node) -> Result<MsgDeployment, NodeError> {
    if let Some(d) = current(node) {
        return Ok(d);
    }
    let mut salt = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
    node.commit(node.statement(MsgCommand::InitMsg {
        salt: Hex32(salt),
        window_ms: DEFAULT_WINDOW_MS,
    }))
    .await?;
    current(node).ok_or_else(|| NodeError::Unavailable("message salt not applied yet".into()))
}

/// The protocol's view of a deployment.
pub fn protocol_parts(d: &MsgDeployment) -> (mk::Deployment, Vec<mk::Node>) {
    (
        mk::Deployment {
            salt: d.salt.0.to_vec(),
            window_ms: d.window_ms,
        },
        d.nodes
            .iter()
            .map(|n| mk::Node {
                member: Member {
                    id: u64::from(n.id),
                    identity: n.identity.0,
                },
                hpke: n.hpke.0,
            })
            .collect(),
    )
}

fn check_prekeys(record: &EndpointRecord, prekeys: &[Prekey]) -> Result<(), NodeError> {
    prekeys
        .iter()
        .try_for_each(|p| MsgState::check_prekey(record, p).map_err(NodeError::BadRequest))
}

fn info(node: &Node, record: EndpointRecord) -> EndpointInfo {
    let (prekeys_available, mailbox) = node.registry(|r| {
        (
            r.msg
                .prekeys
                .get(&record.name)
                .map_or(0, |q| q.len() as u64),
            r.msg.mail.get(&record.name).map_or(0, |q| q.len() as u64),
        )
    });
    EndpointInfo {
        record,
        prekeys_available,
        mailbox,
    }
}

/// Register an endpoint (owned by the calling token).
pub async fn create_endpoint(
    node: &Node,
    c: &Caller,
    name: String,
    identity: Hex32,
    prekeys: Vec<Prekey>,
) -> Result<EndpointInfo, NodeError> {
    check_name(&name).map_err(|_| {
        NodeError::BadRequest("endpoint names are 1-64 characters from [A-Za-z0-9._-]".into())
    })?;
    ed25519_dalek::VerifyingKey::from_bytes(&identity.0)
        .map_err(|_| NodeError::BadRequest("identity is not an Ed25519 public key".into()))?;
    let record = EndpointRecord {
        name: name.clone(),
        identity,
        owner: c.grant.name.clone(),
        revoked: false,
        created_ms: node.now_ms(),
    };
    check_prekeys(&record, &prekeys)?;
    // Every replica checks it on apply; checked here first so a refusal
    // costs no Raft write.
    node.registry(|r| match r.rules >= quota::QUOTA_RULES {
        true => r.msg.endpoint_quota(&record.owner),
        false => Ok(()),
    })
    .map_err(NodeError::TooMany)?;
    node.commit(c.authorize(MsgCommand::PutEndpoint {
        record: record.clone(),
    }))
    .await?;
    if !prekeys.is_empty() {
        node.commit(c.authorize(MsgCommand::AddPrekeys { name, prekeys }))
            .await?;
    }
    Ok(info(node, record))
}

/// Describe an endpoint (any authenticated caller: it is public).
pub fn endpoint(node: &Node, name: &str) -> Result<EndpointInfo, NodeError> {
    let record = node
        .registry(|r| r.msg.endpoints.get(name).cloned())
        .ok_or_else(|| NodeError::NotFound(format!("unknown endpoint {name}")))?;
    Ok(info(node, record))
}

/// Publish more prekeys (owner or admin).
pub async fn add_prekeys(
    node: &Node,
    c: &Caller,
    name: &str,
    prekeys: Vec<Prekey>,
) -> Result<EndpointInfo, NodeError> {
    let record = live(node, name)?;
    owns(&c.grant, &record)?;
    check_prekeys(&record, &prekeys)?;
    node.commit(c.authorize(MsgCommand::AddPrekeys {
        name: name.to_string(),
        prekeys,
    }))
    .await?;
    Ok(info(node, record))
}

/// Revoke an endpoint (owner or admin).
pub async fn revoke(node: &Node, c: &Caller, name: &str) -> Result<EndpointInfo, NodeError> {
    let record = live(node, name)?;
    owns(&c.grant, &record)?;
    node.commit(c.authorize(MsgCommand::RevokeEndpoint {
        name: name.to_string(),
    }))
    .await?;
    endpoint(node, name)
}

/// A sender (`by`, owned by the caller) reserves one of `name`'s prekeys.
pub async fn claim(
    node: &Node,
    c: &Caller,
    name: &str,
    by: &str,
    count: u16,
) -> Result<ClaimedPrekeys, NodeError> {
    if !CLAIM_COUNTS.contains(&count) {
        return Err(NodeError::BadRequest(format!(
            "count must be 1 to {MAX_CLAIM}"
        )));
    }
    let sender = live(node, by)?;
    owns(&c.grant, &sender)?;
    let receiver = live(node, name)?;
    // The claimed prekeys come back in the answer; nothing is read back here.
    match node
        .commit_batched(c.authorize(MsgCommand::ClaimPrekey {
            name: name.to_string(),
            by: by.to_string(),
            count,
            time_ms: node.now_ms(),
        }))
        .await?
    {
        CommandResponse::Claimed { prekeys } => Ok(ClaimedPrekeys {
            endpoint: name.to_string(),
            identity: receiver.identity,
            prekeys,
        }),
        other => Err(NodeError::Internal(format!("claim answered {other:?}"))),
    }
}

/// Handle a messaging peer message (the coordinator's step).
pub(crate) async fn handle(node: &Node, msg: PeerMessage) -> Result<PeerMessage, NodeError> {
    match msg {
        PeerMessage::MsgCoordinate {
            from,
            header,
            signature,
            payload,
            bundle,
        } => {
            catch_up(node, &from).await;
            coordinate(node, &from, &header, &signature, &payload, &bundle)
                .map(|confirmation| PeerMessage::MsgConfirmed { confirmation })
        }
        _ => Err(NodeError::BadRequest("not a messaging message".into())),
    }
}

/// A coordinator's replica may not yet have applied the deployment's salt or
/// the sender's registration that the entry node saw committed: before
/// answering "unknown", it reads through the leader once (a linearizable
/// read barrier). A replica that knows both answers at once.
async fn catch_up(node: &Node, from: &str) {
    let known = node.registry(|r| r.msg.salt.is_some() && r.msg.live(from).is_ok());
    if !known {
        if let Err(e) = node.read_barrier().await {
            tracing::debug!(error = %e, "coordinator could not catch up before checking");
        }
    }
}

/// The coordinator's step for one message (peer message from the entry
/// node).
pub fn coordinate(
    node: &Node,
    from: &str,
    header: &Hex,
    signature: &Hex,
    payload: &Hex,
    bundle: &SealedBox,
) -> Result<MsgConfirmation, NodeError> {
    let sender = live(node, from)?;
    let deployment =
        current(node).ok_or_else(|| NodeError::Unavailable("messaging not initialised".into()))?;
    let id = Routing::from_header(&header.0).map_err(bad)?.id;
    if node.registry(|r| r.msg.seen.contains_key(&Hex32(id))) {
        return Err(NodeError::Conflict(format!(
            "message {} was already accepted (replay)",
            Hex32(id)
        )));
    }
    let (dep, nodes) = protocol_parts(&deployment);
    let signature = sig64(signature, "signature")?;
    let bundle = sealed(bundle);
    let (_, confirmation) = mk::coordinate(
        &mut rand_core::OsRng,
        &dep,
        u64::from(node.id()),
        node.keys().hpke_secret(),
        &nodes,
        &sender.identity.0,
        node.now_ms(),
        AtCoordinator {
            header: &header.0,
            signature: &signature,
            payload: &payload.0,
            bundle: &bundle,
        },
    )
    .map_err(bad)?;
    let signed = node.keys().sign(&confirmation.signing_bytes());
    Ok(MsgConfirmation {
        node: node.id(),
        value: Hex32(confirmation.value),
        forwarded: sealed_box(&confirmation.forwarded),
        signature: Hex(signed.to_vec()),
    })
}

/// The entry node's part of a send: authorize, fan out to the
/// coordinators, commit to the mailbox.
pub async fn send(node: &Node, grant: &Grant, req: SendRequest) -> Result<SendResponse, NodeError> {
    let sender = live(node, &req.from)?;
    owns(grant, &sender)?;
    let receiver = live(node, &req.to)?;
    if req.header.0.len() > MAX_HEADER || req.payload.0.len() > MAX_PAYLOAD {
        return Err(NodeError::BadRequest(format!(
            "header is limited to {MAX_HEADER} bytes and payload to {MAX_PAYLOAD}"
        )));
    }
    // The coordinators decode and check the whole header.
    let header = Routing::from_header(&req.header.0).map_err(bad)?;
    if header.sender != sender.identity.0 {
        return Err(NodeError::BadRequest(format!(
            "header sender is not endpoint {}'s identity",
            req.from
        )));
    }
    if header.receiver != receiver.identity.0 {
        return Err(NodeError::BadRequest(format!(
            "header receiver is not endpoint {}'s identity",
            req.to
        )));
    }
    let mut routed: Vec<u64> = req
        .for_coordinators
        .iter()
        .map(|b| u64::from(b.node))
        .collect();
    routed.sort_unstable();
    let mut named = header.coordinators.clone();
    named.sort_unstable();
    if routed != named {
        return Err(NodeError::BadRequest(
            "one bundle per coordinator named in the header is needed".into(),
        ));
    }
    sig64(&req.signature, "signature")?;
    // Before the coordinators are asked (every replica checks it again on
    // apply).
    quota::check_shape(&req.for_receiver, &[]).map_err(NodeError::BadRequest)?;
    let bytes = quota::message_bytes(
        req.header.0.len(),
        req.payload.0.len(),
        req.signature.0.len() + req.for_receiver.enc.0.len() + req.for_receiver.ciphertext.0.len(),
        quota::max_confirmation_bytes(req.for_coordinators.len()),
    );
    node.registry(|r| match r.rules >= quota::QUOTA_RULES {
        true => r.msg.delivery_quota(&req.from, &req.to, bytes),
        false => Ok(()),
    })
    .map_err(NodeError::TooMany)?;
    let calls = req
        .for_coordinators
        .iter()
        .map(|CoordinatorBundle { node: to, sealed }| {
            let msg = PeerMessage::MsgCoordinate {
                from: req.from.clone(),
                header: req.header.clone(),
                signature: req.signature.clone(),
                payload: req.payload.clone(),
                bundle: sealed.clone(),
            };
            let to = *to;
            async move {
                let Some(info) = node.node_info(to) else {
                    return (
                        to,
                        Err(NodeError::Unavailable(format!("node {to} is not a member"))),
                    );
                };
                let r = node
                    .call(to, &info, msg)
                    .await
                    .and_then(|reply| match reply {
                        PeerMessage::MsgConfirmed { confirmation } if confirmation.node == to => {
                            Ok(confirmation)
                        }
                        _ => Err(NodeError::Misbehaved {
                            message: format!("node {to} answered a coordination wrongly"),
                            culprits: vec![to],
                        }),
                    });
                (to, r)
            }
        });
    let mut confirmations = Vec::new();
    let mut unreachable = Vec::new();
    let mut refusal = None;
    for (to, r) in join_all(calls).await {
        match r {
            Ok(c) => confirmations.push(c),
            Err(NodeError::Unavailable(e)) => {
                tracing::debug!(node = %to, error = %e, "coordinator unreachable");
                unreachable.push(to);
            }
            Err(e) => refusal = refusal.or(Some(e)),
        }
    }
    // A coordinator that checked the message and refused it speaks for the
    // message (tampered, replayed, off the commitments, outside the window):
    // it is not delivered even if another coordinator confirmed.
    if let Some(e) = refusal {
        return Err(e);
    }
    if confirmations.is_empty() {
        return Err(NodeError::Unavailable(format!(
            "no coordinator reachable (tried {unreachable:?})"
        )));
    }
    let id = Hex32(header.id);
    let item = MailItem {
        id,
        from: req.from,
        to: req.to,
        header: req.header,
        signature: req.signature,
        payload: req.payload,
        for_receiver: req.for_receiver,
        confirmations: confirmations.clone(),
        time_ms: header.time_ms,
    };
    // The receiver reads its mailbox through any node, whose replica may
    // lag by a replication round anyway: this one need not wait to apply.
    node.commit_batched(node.statement(MsgCommand::Deliver {
        item,
        prekey: Hex32(header.prekey),
    }))
    .await?;
    Ok(SendResponse {
        id,
        confirmations,
        unreachable,
    })
}

/// Most messages returned by one inbox call.
pub const INBOX_PAGE: usize = 256;

/// The oldest waiting messages, one page, and whether more wait (owner or
/// admin).
pub fn inbox(node: &Node, grant: &Grant, name: &str) -> Result<(Vec<MailItem>, bool), NodeError> {
    let record = live(node, name)?;
    owns(grant, &record)?;
    Ok(node.registry(|r| {
        let all = r.msg.mail.get(name).map_or(&[][..], Vec::as_slice);
        let page = all.iter().take(INBOX_PAGE).cloned().collect();
        (page, all.len() > INBOX_PAGE)
    }))
}

/// Remove opened messages (owner or admin).
pub async fn ack(node: &Node, c: &Caller, name: &str, ids: Vec<Hex32>) -> Result<u64, NodeError> {
    let record = live(node, name)?;
    owns(&c.grant, &record)?;
    match node
        .commit(c.authorize(MsgCommand::Ack {
            name: name.to_string(),
            ids,
        }))
        .await?
    {
        CommandResponse::Removed { count } => Ok(count),
        other => Err(NodeError::Internal(format!("ack answered {other:?}"))),
    }
}
