//! Talking to peers: [`Node::call`] and [`Node::call_signed`] (to this node
//! itself without a network hop), the peer HTTP endpoint every node serves
//! at [`PEER_PATH`], and the [`PeerHandler`] through which capability
//! messages reach the capability that owns them.
//!
//! The cluster's own messages (Raft RPCs, ping, read index, forwarded
//! writes, membership changes) are handled here; every other message goes
//! to the registered [`PeerHandler`] (the wiring's dispatcher, which routes
//! it to `crate::keys` or `crate::msg`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use futures::future::BoxFuture;
use keyquorum_wire::control::{Authority, CommandResponse, NodeInfo, MAX_BATCH};
use keyquorum_wire::peer::{Envelope, PeerMessage};
use keyquorum_wire::NodeId;
use subtle::ConstantTimeEq;

use super::peer::{open_envelope, seal_envelope_at, PEER_PATH};
use super::tls::TlsPeer;
use super::Node;
use crate::error::{json_rejection, NodeError};

pub use super::peer::PEER_BODY_LIMIT;

/// Where the messages of capabilities go: implemented by the wiring's
/// dispatcher, which hands each message to the capability that owns it.
pub trait PeerHandler: Send + Sync {
    /// Handle an authenticated message from `from` to `node` and return
    /// the reply.
    fn handle<'a>(
        &'a self,
        node: &'a Node,
        from: NodeId,
        msg: PeerMessage,
    ) -> BoxFuture<'a, Result<PeerMessage, NodeError>>;
}

impl Node {
    /// Send a message to `to` (locally when it is this node) and return the
    /// reply with the envelope its sender signed: for a coordinator that
    /// relays the reply to others, who check the signature themselves.
    pub async fn call_signed(
        &self,
        to: NodeId,
        info: &NodeInfo,
        msg: &PeerMessage,
    ) -> Result<(Envelope, PeerMessage), NodeError> {
        if to == self.0.id {
            let reply = match self.handle_peer(to, clone_request(msg)?).await {
                Ok(m) => m,
                Err(e) => return Err(e),
            };
            let env = seal_envelope_at(&self.0.keys, to, to, &reply, self.now_ms())?;
            return Ok((env, reply));
        }
        self.0.peers.call(to, info, msg).await
    }

    /// Send a message to `to` and return the reply, for a caller that needs
    /// only the answer, not the signed envelope it came in: to this node
    /// itself, the message is handled directly (no encoding round trip, no
    /// envelope signed for nobody).
    pub async fn call(
        &self,
        to: NodeId,
        info: &NodeInfo,
        msg: PeerMessage,
    ) -> Result<PeerMessage, NodeError> {
        if to == self.0.id {
            return self.handle_peer(to, msg).await;
        }
        if self.coalesces(to, &msg) {
            return self.call_coalesced(to, info, msg).await;
        }
        self.0.peers.call(to, info, &msg).await.map(|(_, m)| m)
    }

    /// Handle an authenticated peer message from `from`.
    pub async fn handle_peer(
        &self,
        from: NodeId,
        msg: PeerMessage,
    ) -> Result<PeerMessage, NodeError> {
        let raft_err = |e: String| NodeError::Unavailable(format!("raft: {e}"));
        match msg {
            PeerMessage::AppendEntries(rpc) => self
                .0
                .raft
                .append_entries(rpc)
                .await
                .map(PeerMessage::AppendEntriesReply)
                .map_err(|e| raft_err(e.to_string())),
            PeerMessage::Vote(rpc) => self
                .0
                .raft
                .vote(rpc)
                .await
                .map(PeerMessage::VoteReply)
                .map_err(|e| raft_err(e.to_string())),
            // The members vouch for a snapshot before Raft takes it.
            PeerMessage::InstallSnapshot(rpc) => self
                .receive_snapshot_chunk(from, rpc)
                .await
                .map(PeerMessage::InstallSnapshotReply),
            PeerMessage::Attest { index } => Ok(self.attest(index)),
            PeerMessage::Ping => Ok(PeerMessage::Pong),
            PeerMessage::AuditFetch { from, limit } => {
                let node = self.clone();
                let limit = usize::try_from(limit)
                    .unwrap_or(usize::MAX)
                    .min(super::audit::keeper::FETCH_MAX);
                let mut entries =
                    tokio::task::spawn_blocking(move || node.audit_entries(from, limit))
                        .await
                        .map_err(|e| NodeError::Internal(e.to_string()))??;
                // A byte budget as well: the asker asks for fewer next.
                let mut bytes = 0usize;
                let keep = entries
                    .iter()
                    .take_while(|e| {
                        bytes += serde_json::to_vec(e).map(|v| v.len()).unwrap_or(0);
                        bytes <= super::audit::keeper::FETCH_BYTES
                    })
                    .count()
                    .max(1);
                entries.truncate(keep);
                Ok(PeerMessage::AuditEntries { entries })
            }
            PeerMessage::InitSign {
                init,
                time_ms,
                nonce,
                nodes,
            } => self.init_sign(&init, time_ms, &nonce.0, &nodes),
            PeerMessage::ReadIndex => Ok(PeerMessage::ReadIndexReply {
                index: self.leader_read_index().await?,
            }),
            PeerMessage::Batch { items } => self.handle_batch(from, items).await,
            PeerMessage::Forward { commands } => {
                // A member forwards its own statements, and clients'
                // requests; another node's statement it cannot have been
                // asked to carry.
                if commands.is_empty() || commands.len() > MAX_BATCH {
                    return Err(NodeError::BadRequest(format!(
                        "a forward holds 1 to {MAX_BATCH} commands"
                    )));
                }
                if let Some(other) = commands.iter().find_map(|a| match &a.by {
                    Authority::Node { node, .. } if *node != from => Some(*node),
                    _ => None,
                }) {
                    return Err(NodeError::Forbidden(format!(
                        "node {from} forwarded a statement of node {other}"
                    )));
                }
                if self.0.peers.net().forges_forward_replies() {
                    // A hostile leader's word (tests only: `netfaults`).
                    return Ok(PeerMessage::ForwardReply {
                        response: CommandResponse::Batch {
                            responses: vec![CommandResponse::Ok; commands.len()],
                        },
                        index: self.applied_index().unwrap_or(0),
                    });
                }
                let (response, index) = self.write_local(commands).await?;
                Ok(PeerMessage::ForwardReply { response, index })
            }
            other => match self.0.dispatch.get() {
                Some(h) => h.handle(self, from, other).await,
                None => Err(NodeError::Unavailable(
                    "the node is not serving capability messages".into(),
                )),
            },
        }
    }
}

/// The answer that tells a peer its message failed with `e`.
pub(crate) fn error_reply(e: NodeError) -> PeerMessage {
    let (_, code) = e.status();
    let culprits = match &e {
        NodeError::Misbehaved { culprits, .. } => culprits.clone(),
        _ => Vec::new(),
    };
    PeerMessage::Error {
        code: code.to_string(),
        message: e.to_string(),
        culprits,
    }
}

/// Raft messages carry no secrets and are not Clone; the capabilities' requests
/// are cloned through their JSON form for local delivery.
pub(crate) fn clone_request(msg: &PeerMessage) -> Result<PeerMessage, NodeError> {
    let bytes = serde_json::to_vec(msg).map_err(|e| NodeError::Internal(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| NodeError::Internal(e.to_string()))
}

/// The peer endpoint's route.
pub(crate) fn routes(node: Node) -> Router {
    Router::new()
        .route(PEER_PATH, post(peer_endpoint))
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            known_peer_only,
        ))
        .layer(DefaultBodyLimit::max(PEER_BODY_LIMIT))
        .with_state(node)
}

/// Before a peer message's body is read: the TLS client certificate must
/// be a known node's (a caller without one, or a stranger, is answered at
/// once, its body never read or parsed).
async fn known_peer_only(
    State(node): State<Node>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let known = req
        .extensions()
        .get::<TlsPeer>()
        .and_then(|TlsPeer(k)| k.as_ref())
        .is_some_and(|k| node.is_known_identity(k));
    if !known {
        node.count_peer_reject();
        return NodeError::PeerRejected(
            "peer messages need the TLS client certificate of a known node".into(),
        )
        .into_response();
    }
    // The body within a deadline (a node's too).
    let (parts, body) = req.into_parts();
    let bytes = match crate::api::auth::read_body(body, PEER_BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// The peer endpoint: a signed envelope in, a signed envelope out.
///
/// The TLS client certificate must carry the sender's identity: a member
/// cannot relay a message on another connection than its own, and a
/// message without a client certificate is refused before its signature is
/// even checked.
async fn peer_endpoint(
    State(node): State<Node>,
    tls: Option<Extension<TlsPeer>>,
    body: Result<Json<Envelope>, JsonRejection>,
) -> Response {
    let env = match body {
        Ok(Json(e)) => e,
        Err(r) => {
            node.count_peer_reject();
            return json_rejection(r);
        }
    };
    // A paused node (tests only: `netfaults`) handles nothing meanwhile.
    node.0.peers.net().wait_unpaused().await;
    let from = env.from;
    // A member by the membership record; else a node only in Raft's
    // membership (one the record has not reached this replica for yet, or
    // one a leader added on its own), which may send Raft's own messages
    // and nothing else.
    let member = node.node_info(from);
    let raft_only = member.is_none();
    let checked = member
        .or_else(|| node.raft_node_info(from))
        .filter(|_| from != node.id())
        .ok_or_else(|| NodeError::PeerRejected(format!("node {from} is not a member")))
        .and_then(|info| {
            let proven = tls.as_ref().and_then(|Extension(TlsPeer(k))| *k);
            match proven {
                Some(k) if bool::from(k.ct_eq(&info.identity.0)) => Ok(info),
                Some(_) => Err(NodeError::PeerRejected(format!(
                    "TLS client certificate is not node {from}'s identity"
                ))),
                None => Err(NodeError::PeerRejected(
                    "peer messages need a TLS client certificate".into(),
                )),
            }
        })
        .and_then(|info| open_envelope(&env, node.id(), &info))
        .and_then(|msg| {
            // A Raft message speaks for its sender only: the leader or
            // candidate its vote names is the node that sent it.
            let speaker = match &msg {
                PeerMessage::AppendEntries(rpc) => Some(rpc.vote.leader_id().voted_for()),
                PeerMessage::Vote(rpc) => Some(rpc.vote.leader_id().voted_for()),
                PeerMessage::InstallSnapshot(rpc) => Some(rpc.vote.leader_id().voted_for()),
                _ => None,
            };
            match speaker {
                Some(s) if s != Some(u64::from(from)) => Err(NodeError::PeerRejected(format!(
                    "node {from} sent a Raft message in another node's name"
                ))),
                // A snapshot replaces the whole state: only from a member.
                Some(_) if raft_only && matches!(msg, PeerMessage::InstallSnapshot(_)) => {
                    Err(NodeError::PeerRejected(format!(
                        "node {from} is not a member: no snapshot is taken from it"
                    )))
                }
                Some(_) if raft_only && node.was_removed(from) => Err(NodeError::PeerRejected(
                    format!("node {from} was removed from the membership record"),
                )),
                Some(_) => Ok(msg),
                None if raft_only => Err(NodeError::PeerRejected(format!(
                    "node {from} is not a member (only Raft's messages are taken from it)"
                ))),
                None => Ok(msg),
            }
        })
        .and_then(|msg| node.0.replay.check(&env, node.now_ms()).map(|()| msg));
    let msg = match checked {
        Ok(m) => m,
        Err(e) => {
            node.count_peer_reject();
            // Past the TLS gate, so from a known node's certificate: the
            // limit is that certificate's (the claimed sender is only
            // named), so no node can spread its refusals over made-up ids.
            let proven = tls
                .as_ref()
                .and_then(|Extension(TlsPeer(k))| k.map(|k| hex::encode(&k[..8])))
                .unwrap_or_default();
            node.refusal(
                Some((&format!("cert:{proven}"), &format!("peer:{from}"))),
                "peer.reject",
                None,
                &e.to_string(),
            );
            return e.into_response();
        }
    };
    let reply = node
        .handle_peer(from, msg)
        .await
        .unwrap_or_else(error_reply);
    match seal_envelope_at(node.keys(), node.id(), from, &reply, node.now_ms()) {
        Ok(env) => Json(env).into_response(),
        Err(e) => e.into_response(),
    }
}
