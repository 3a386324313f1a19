//! Shared keys (DESIGN.md §3.1) on the node: the coordinator and participant
//! halves of every threshold-key protocol, their session tables, their part
//! of the replicated state and their HTTP routes.
//!
//! Topology: the node that receives a client request coordinates it. It sends
//! each step to every member and relays the members' signed replies to the
//! others, so every protocol message stays signed by its author (a relay can
//! drop but not alter or forge) and every secret share stays HPKE-sealed to
//! its recipient (a relay learns nothing).
//!
//! DKG (Pedersen with proofs of knowledge, core `dkg`):
//! 1. `DkgStart` → each member starts and returns its round-1 broadcast.
//! 2. `DkgRound2` carries all round-1 broadcasts → each member checks them
//!    and returns its round-2 shares sealed to each recipient.
//! 3. `DkgFinish` carries the sealed shares → each member finishes, stores
//!    its share in its vault under the run's session id (pending), and
//!    returns the group key.
//! 4. The coordinator checks all members agree and commits the key record
//!    (epoch 1, the session id) through Raft. A member promotes its pending
//!    share when it first uses the committed record, so a run that never
//!    commits leaves only pending values (erased by [`Keys::tidy`] once the key's
//!    record shows the run can no longer commit).
//!
//! Signing (FROST, core `sign`): the coordinator draws one commitment per
//! signer from its pool of precomputed nonce commitments (or asks for a
//! fresh one), builds the signing package, and asks each signer for its
//! share. A signer removes the nonce from its vault durably before it signs.
//! Unreachable signers are replaced by other members while at least `t`
//! remain; a signer whose share fails verification is named.
//!
//! | module | what |
//! |---|---|
//! | `dkg` | DKG: participant rounds, coordinator, and the relayed two-round runs refresh shares |
//! | `complaints` | DKG complaints settled by reveals: a false accusation is dismissed, a true one names the dealer |
//! | `run` | what binds a DKG run (its digest) and what its coordinator checks itself |
//! | `sign` | FROST signing: nonce batches, signature shares, the coordinator with its nonce-commitment pools |
//! | `refresh` | proactive refresh (same key, new shares) |
//! | `reshare` | reshare to a new threshold and member set; a committed generation retires the old shares |
//! | `repair` | rebuild one member's lost share from `t` helpers |
//! | `export` | the approved temporary reconstruction, sealed to the requester |
//! | `shares` | this node's shares in its vault: pending, promoted, erased |
//! | [`state`] | key records and exports in the replicated state machine |
//! | [`api`] | `/v1/keys` and `/v1/exports` |
//! | `suite` | typed suites |
//! | `taker` | group-committed nonce removal |
//! | [`faults`] | test hooks for misbehaviour (feature `fault-injection`) |

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use keyquorum_core::codec::Decode;
use keyquorum_core::{GroupKey, ParticipantId};
use keyquorum_wire::api::KeyInfo;
use keyquorum_wire::control::{KeyRecord, NodeInfo};
use keyquorum_wire::peer::{Envelope, PeerMessage, Sealed};
use keyquorum_wire::{Hex32, NodeId};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroize;

use crate::cluster::peer::{open_envelope, open_secret, seal_secret};
use crate::cluster::Node;
use crate::error::NodeError;
use suite::{KeySuite, PerSuite, Suited};

pub mod api;
mod complaints;
mod create;
mod dkg;
mod export;
pub mod faults;
mod refresh;
mod repair;
mod reshare;
mod run;
mod shares;
mod sign;
pub mod state;
pub(crate) mod suite;
mod taker;

pub(crate) use create::NewKey;
#[cfg(feature = "fault-injection")]
pub use faults::Faults;
#[cfg(not(feature = "fault-injection"))]
use faults::Faults;
pub use sign::{verify_signature, MAX_NONCE_BATCH};

/// How long a participant keeps an unfinished DKG or refresh run.
const DKG_TTL: Duration = Duration::from_secs(300);

/// At most this many DKG and refresh run ids remembered (each for twice
/// [`DKG_TTL`]; past it the oldest is forgotten).
const MAX_SEEN_SESSIONS: usize = 65_536;

/// At most this many open DKG and refresh runs per coordinator on a node.
const MAX_RUNS_PER_COORDINATOR: usize = 256;

/// Secret messages to send: recipient and plaintext.
type Outgoing = Vec<(ParticipantId, Vec<u8>)>;

/// Decoded group keys (public), by family.
struct Groups;
impl PerSuite for Groups {
    type Of<C: KeySuite> = Arc<GroupKey<C>>;
}

/// Decoded group keys by key and generation, with the bytes they came from.
type GroupCache = HashMap<(String, u64), (Vec<u8>, Suited<Groups>)>;

/// A precomputed signing nonce, decoded, on the heap (so that it is
/// zeroized where it lies: see `sign::NonceCache`).
struct Nonces;
impl PerSuite for Nonces {
    type Of<C: KeySuite> = Box<keyquorum_core::sign::SigningNonce<C>>;
}

/// What this node dealt in a DKG run: its answer to a complaint. Kept in
/// memory only, until the run is aborted, its key committed, or
/// [`DKG_TTL`] passes.
pub(crate) struct Dealt {
    /// The run's key.
    pub(crate) key: String,
    /// The run's id.
    pub(crate) session: Hex32,
    pub(crate) coordinator: NodeId,
    pub(crate) members: Vec<NodeId>,
    pub(crate) started: Instant,
    /// The round-2 message dealt to each member, encoded.
    pub(crate) shares: BTreeMap<NodeId, zeroize::Zeroizing<Vec<u8>>>,
}

/// Shared keys on this node: every protocol's session table, the signing
/// coordinator's nonce pools, and the test hooks.
pub struct Keys {
    /// DKG and refresh runs this node takes part in, by session.
    dkg: Mutex<HashMap<[u8; 32], dkg::DkgSession>>,
    /// Runs their coordinator gave up, with when: a late message of one of
    /// them must not leave a pending share behind.
    aborted: Mutex<HashMap<([u8; 32], NodeId), Instant>>,
    /// DKG and refresh run ids this node took part in lately (each used once).
    seen_sessions: Mutex<HashMap<[u8; 32], Instant>>,
    /// What this node dealt in DKG runs, by run digest: its answer to a
    /// complaint.
    dealt: Mutex<HashMap<[u8; 32], Dealt>>,
    /// Repairs this node helps with, by run.
    repairs: Mutex<HashMap<[u8; 32], repair::HelperSession>>,
    groups: Mutex<GroupCache>,
    /// The signing coordinator's pools of signers' nonce commitments.
    pools: Arc<sign::Pools>,
    rotation: AtomicUsize,
    /// Removes spent signing nonces from the vault, group-committed.
    nonces: taker::NonceTaker,
    /// What each client authorization has driven on this node.
    ledger: crate::api::auth::Ledger,
    /// Element encodings this node produced or checked before: decoding
    /// them again skips the prime-order check (`keyquorum_core::known`).
    known: keyquorum_core::known::KnownElements,
    /// The nonces this start of the node precomputed, decoded, by vault
    /// slot (see `sign::NonceCache`).
    decoded_nonces: Mutex<sign::NonceCache>,
    faults: Faults,
}

impl core::fmt::Debug for Keys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

impl Keys {
    /// Shared keys on `node` (starts the nonce taker on its vault).
    pub(crate) fn new(node: &Node) -> Result<Self, NodeError> {
        Ok(Keys {
            dkg: Mutex::default(),
            aborted: Mutex::default(),
            seen_sessions: Mutex::default(),
            dealt: Mutex::default(),
            repairs: Mutex::default(),
            groups: Mutex::default(),
            pools: Arc::default(),
            known: keyquorum_core::known::KnownElements::default(),
            decoded_nonces: Mutex::default(),
            rotation: AtomicUsize::new(0),
            nonces: taker::NonceTaker::start(node.vault_arc())?,
            ledger: crate::api::auth::Ledger::default(),
            faults: Faults::default(),
        })
    }

    /// The decoded nonces this start precomputed. The cache is only an
    /// optimisation: a poisoned lock is taken as it is, so its clearing
    /// paths always run and no nonce stays in memory for it.
    fn decoded_nonces(&self) -> std::sync::MutexGuard<'_, sign::NonceCache> {
        self.decoded_nonces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The hooks for deliberate misbehaviour (constant "behave" without
    /// the `fault-injection` feature).
    pub(crate) fn hooks(&self) -> &Faults {
        &self.faults
    }

    /// The test hook for deliberate misbehaviour.
    #[cfg(feature = "fault-injection")]
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Runs this node is part of that have not finished yet.
    pub fn open_sessions(&self) -> usize {
        self.dkg.lock().map(|d| d.len()).unwrap_or(0)
    }

    /// Handle a shared-keys message from `from`.
    pub(crate) async fn handle(
        self: &Arc<Self>,
        node: &Node,
        from: NodeId,
        msg: PeerMessage,
    ) -> Result<PeerMessage, NodeError> {
        catch_up(node, &msg).await;
        if matches!(
            msg,
            PeerMessage::DkgFinish { .. } | PeerMessage::ReshareReceive { .. }
        ) {
            let stall = self.faults.stall_ms();
            if stall > 0 {
                // Detached, so the late work goes on after the caller gives
                // up (as on a slow node), instead of being cancelled with
                // the request.
                let (node, keys) = (node.clone(), self.clone());
                let late = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(stall)).await;
                    let r = keys.dispatch(&node, from, msg).await;
                    keys.faults.stall_ended();
                    r
                });
                return late
                    .await
                    .map_err(|e| NodeError::Internal(format!("stalled handler: {e}")))?;
            }
        }
        self.dispatch(node, from, msg).await
    }

    async fn dispatch(
        &self,
        node: &Node,
        from: NodeId,
        msg: PeerMessage,
    ) -> Result<PeerMessage, NodeError> {
        match msg {
            PeerMessage::DkgStart {
                session,
                key,
                suite,
                threshold,
                members,
            } => self.dkg_start(node, from, session, key, suite, threshold, members),
            PeerMessage::RefreshStart {
                session,
                key,
                epoch,
            } => self.refresh_start(node, from, session, &key, epoch),
            PeerMessage::ReshareDeal {
                session,
                plan,
                request,
            } => {
                self.reshare_deal(node, from, session, &plan, &request)
                    .await
            }
            PeerMessage::ReshareReceive {
                session,
                plan,
                deals,
            } => self.reshare_receive(node, from, session, &plan, &deals),
            PeerMessage::EpochCommitted { key, epoch } => {
                self.retire(node, &key, epoch).await?;
                Ok(PeerMessage::Ack)
            }
            PeerMessage::ExportShare { id, request } => {
                self.export_share(node, from, &id, &request)
            }
            PeerMessage::RepairStart { session, plan } => {
                self.repair_start(node, from, session, &plan)
            }
            PeerMessage::RepairSum { session, round1 } => {
                self.repair_sum(node, from, session, &round1)
            }
            PeerMessage::RepairFinish {
                session,
                plan,
                round1,
                round2,
            } => self.repair_finish(node, from, session, &plan, &round1, &round2),
            PeerMessage::DkgRound2 { session, round1 } => {
                self.dkg_round2(node, from, session, round1)
            }
            PeerMessage::DkgFinish { session, round2 } => {
                self.dkg_finish(node, from, session, round2)
            }
            PeerMessage::DkgReveal {
                session,
                complaints,
            } => self.dkg_reveal(node, from, session, &complaints),
            PeerMessage::DkgResolve { session, reveals } => {
                self.dkg_resolve(node, from, session, &reveals)
            }
            PeerMessage::Abort { session } => {
                self.abort(from, &session)?;
                Ok(PeerMessage::Abort { session })
            }
            PeerMessage::NonceBatch { key, epoch, count } => {
                self.nonce_batch(node, &key, epoch, count)
            }
            PeerMessage::SignShare {
                key,
                epoch,
                nonce,
                package,
                request,
            } => {
                self.sign_share(node, from, &key, epoch, &nonce, &package, &request)
                    .await
            }
            other => Err(NodeError::BadRequest(format!(
                "unexpected peer message {}",
                message_name(&other)
            ))),
        }
    }

    /// The decoded group key of `record` (decoding checks it, which costs
    /// an interpolation in the exponent: done once per key generation and
    /// kept, since it is public).
    pub(crate) fn group_key<C: KeySuite>(
        &self,
        record: &KeyRecord,
    ) -> Result<std::sync::Arc<GroupKey<C>>, NodeError> {
        let slot = (record.name.clone(), record.epoch);
        if let Some(g) = lock(&self.groups)?.get(&slot) {
            if g.0 == record.group_key.0 {
                if let Some(k) = C::get(&g.1) {
                    return Ok(k.clone());
                }
            }
        }
        let k = std::sync::Arc::new(
            GroupKey::<C>::from_bytes(&record.group_key.0)
                .map_err(|e| NodeError::Internal(format!("stored group key: {e}")))?,
        );
        let mut groups = lock(&self.groups)?;
        groups.retain(|(name, epoch), _| name != &record.name || *epoch >= record.epoch);
        groups.insert(slot, (record.group_key.0.clone(), C::wrap(k.clone())));
        Ok(k)
    }

    /// The registry record of `name`, checked to be at `epoch` and to list
    /// this node as a holder.
    pub(crate) fn record(node: &Node, name: &str, epoch: u64) -> Result<KeyRecord, NodeError> {
        let record = record_at(node, name, epoch)?;
        if !record.members.contains(&node.id()) {
            return Err(NodeError::Forbidden(format!(
                "node {} holds no share of {name}",
                node.id()
            )));
        }
        Ok(record)
    }

    /// Open a relayed envelope from `origin` (a member other than me) that
    /// was addressed to the coordinator.
    pub(crate) fn relayed(
        &self,
        node: &Node,
        coordinator: NodeId,
        members: &[NodeId],
        env: &Envelope,
    ) -> Result<(NodeId, PeerMessage), NodeError> {
        let origin = env.from;
        if !members.contains(&origin) {
            return Err(NodeError::BadRequest(format!(
                "relayed message from non-member {origin}"
            )));
        }
        let info = node
            .node_info(origin)
            .ok_or_else(|| NodeError::BadRequest(format!("unknown node {origin}")))?;
        let msg = open_envelope(env, coordinator, &info).map_err(|e| NodeError::Misbehaved {
            // The coordinator relayed something its author did not sign.
            message: format!("relayed message from node {origin} does not verify: {e}"),
            culprits: vec![coordinator],
        })?;
        Ok((origin, msg))
    }

    /// Every node of `ids` with its address and keys, or which is missing.
    pub(crate) fn infos(
        node: &Node,
        ids: &[NodeId],
    ) -> Result<BTreeMap<NodeId, NodeInfo>, NodeError> {
        ids.iter()
            .map(|m| {
                node.node_info(*m)
                    .map(|i| (*m, i))
                    .ok_or_else(|| NodeError::BadRequest(format!("node {m} is not in the cluster")))
            })
            .collect()
    }
}

/// The registry record of key `name`; if this node does not know it,
/// after a [`read barrier`](Node::read_barrier) (it may have been created
/// through another node a moment ago). Not found: [`NodeError::NotFound`].
pub(crate) async fn key_record(node: &Node, name: &str) -> Result<KeyRecord, NodeError> {
    node.registry_fresh(|r| r.keys.records.get(name).cloned())
        .await
        .ok_or_else(|| NodeError::NotFound(format!("no key named {name}")))
}

/// The members and threshold of a new key as asked: unstated members are
/// every voter not being drained; an explicit threshold is taken as asked (and refused later
/// if it does not fit), an unstated one is the cluster's default
/// (replicated: every replica checks it), which adapts to a small member
/// set.
pub(crate) fn new_key_shape(
    node: &Node,
    members: Option<Vec<NodeId>>,
    threshold: Option<u16>,
) -> (Vec<NodeId>, u16) {
    // Every voter the operators do not drain.
    let members = members.unwrap_or_else(|| node.registry(|r| r.candidates()));
    let threshold = threshold.unwrap_or_else(|| {
        node.registry(|r| {
            r.default_threshold(
                members
                    .iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
            )
        })
    });
    (members, threshold)
}

/// This replica's record of key `name`, which must be at `epoch` (a run's
/// step refers to the generation it started from).
pub(crate) fn record_at(node: &Node, name: &str, epoch: u64) -> Result<KeyRecord, NodeError> {
    let record = node
        .registry(|r| r.keys.records.get(name).cloned())
        .ok_or_else(|| NodeError::NotFound(format!("no key named {name}")))?;
    if record.epoch != epoch {
        return Err(NodeError::Conflict(format!(
            "key {name} is at epoch {}, not {epoch}",
            record.epoch
        )));
    }
    Ok(record)
}

/// `members` in the order a coordinator asks them: this node first (no
/// network hop) if it is one, then the others rotated left by `rotate`
/// (so load spreads when the caller varies it).
pub(crate) fn me_first(members: &[NodeId], me: NodeId, rotate: usize) -> Vec<NodeId> {
    let mut order: Vec<NodeId> = members.iter().copied().filter(|m| *m != me).collect();
    if !order.is_empty() {
        let r = rotate % order.len();
        order.rotate_left(r);
    }
    if members.contains(&me) {
        order.insert(0, me);
    }
    order
}

/// Open the secret `origin` sealed to this node among `shares` in a relayed
/// message of run `session`; `origin` (a `who`) is named if it sent none
/// (`what` names the missing secret in the error).
pub(crate) fn open_mine(
    node: &Node,
    session: &Hex32,
    origin: NodeId,
    shares: &[Sealed],
    who: &str,
    what: &str,
) -> Result<zeroize::Zeroizing<Vec<u8>>, NodeError> {
    let me = node.id();
    let sealed = shares
        .iter()
        .find(|x| x.to == me)
        .ok_or_else(|| NodeError::Misbehaved {
            message: format!("{who} {origin} sent no {what} for node {me}"),
            culprits: vec![origin],
        })?;
    open_secret(node.keys(), session, origin, me, sealed)
}

/// A key's public description.
pub(crate) fn key_info(r: &KeyRecord) -> KeyInfo {
    KeyInfo {
        name: r.name.clone(),
        suite: r.suite,
        threshold: r.threshold,
        members: r.members.clone(),
        public_key: r.public_key.clone(),
        epoch: r.epoch,
    }
}

/// A fresh random run identifier.
pub(crate) fn random_session() -> Hex32 {
    let mut sid = [0u8; 32];
    OsRng.fill_bytes(&mut sid);
    Hex32(sid)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, NodeError> {
    m.lock()
        .map_err(|_| NodeError::Internal("driver lock poisoned".into()))
}

/// A node's participant index in every shared key: its node id.
pub fn pid(n: NodeId) -> ParticipantId {
    ParticipantId::from(n.nonzero())
}

/// The node whose participant index is `p`.
pub fn node_of(p: ParticipantId) -> NodeId {
    NodeId::from(p.nonzero())
}

pub(crate) fn core_err(e: keyquorum_core::Error) -> NodeError {
    NodeError::from_core(e)
}

pub(crate) fn decode<T: Decode>(bytes: &[u8], what: &str, from: NodeId) -> Result<T, NodeError> {
    T::from_bytes(bytes).map_err(|e| NodeError::Misbehaved {
        message: format!("node {from} sent a malformed {what}: {e}"),
        culprits: vec![from],
    })
}

/// A request refers to control-plane state (a key generation, an export's
/// approvals) that the coordinator has seen committed; if this node has not
/// applied it yet, give replication a moment (bounded; the handler then
/// judges on what it has).
pub(crate) async fn catch_up(node: &Node, msg: &PeerMessage) {
    let ready = |node: &Node| -> bool {
        match msg {
            PeerMessage::RefreshStart { key, epoch, .. }
            | PeerMessage::NonceBatch { key, epoch, .. }
            | PeerMessage::SignShare { key, epoch, .. } => {
                node.registry(|r| r.keys.records.get(key).is_some_and(|k| k.epoch >= *epoch))
            }
            PeerMessage::ReshareDeal { plan, .. } | PeerMessage::ReshareReceive { plan, .. } => {
                node.registry(|r| {
                    r.keys
                        .records
                        .get(&plan.key)
                        .is_some_and(|k| k.epoch >= plan.epoch)
                })
            }
            PeerMessage::ExportShare { id, .. } => {
                node.registry(|r| r.keys.exports.get(id).is_some_and(|e| e.done))
            }
            _ => true,
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !ready(node) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Seal each `(recipient, plaintext)` to its recipient for `session`; the
/// plaintexts are zeroized.
pub(crate) fn seal_all(
    node: &Node,
    session: &Hex32,
    out: Vec<(ParticipantId, Vec<u8>)>,
) -> Result<Vec<Sealed>, NodeError> {
    let me = node.id();
    let mut sealed = Vec::with_capacity(out.len());
    for (to, mut plain) in out {
        let to = NodeId::from(to.nonzero());
        let r = node
            .node_info(to)
            .ok_or_else(|| NodeError::Unavailable(format!("no address for node {to}")))
            .and_then(|info| seal_secret(session, me, to, &info, &plain));
        plain.zeroize();
        sealed.push(r?);
    }
    Ok(sealed)
}

/// Send one message per member (built by `make`) concurrently; every member
/// must answer.
pub(crate) async fn gather(
    node: &Node,
    infos: &BTreeMap<NodeId, NodeInfo>,
    make: impl Fn(NodeId) -> Option<PeerMessage>,
) -> Result<BTreeMap<NodeId, (Envelope, PeerMessage)>, NodeError> {
    gather_judged(node, infos, make, |_, e| e).await
}

/// [`gather`], with the first failing member's error passed through
/// `judge` (given that member) before it is returned.
pub(crate) async fn gather_judged(
    node: &Node,
    infos: &BTreeMap<NodeId, NodeInfo>,
    make: impl Fn(NodeId) -> Option<PeerMessage>,
    judge: impl Fn(NodeId, NodeError) -> NodeError,
) -> Result<BTreeMap<NodeId, (Envelope, PeerMessage)>, NodeError> {
    let calls = infos.iter().filter_map(|(m, i)| {
        let msg = make(*m)?;
        Some(async move { (*m, node.call_signed(*m, i, &msg).await) })
    });
    let mut out = BTreeMap::new();
    for (m, r) in join_all(calls).await {
        out.insert(m, r.map_err(|e| judge(m, e))?);
    }
    Ok(out)
}

/// A short name for a message, for errors and logs: its tag on the wire.
fn message_name(m: &PeerMessage) -> String {
    match serde_json::to_value(m) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(o)) => o.keys().next().cloned().unwrap_or_default(),
        _ => "unknown".into(),
    }
}
