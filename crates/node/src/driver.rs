//! The protocol driver: runs the core's state machines across the members.
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
//!    commits leaves only pending values (erased by [`Driver::tidy`] once the key's record shows the run can no longer commit).
//!
//! Signing (FROST, core `sign`): the coordinator draws one commitment per
//! signer from its pool of precomputed nonce commitments (or asks for a
//! fresh one), builds the signing package, and asks each signer for its
//! share. A signer removes the nonce from its vault durably before it signs.
//! Unreachable signers are replaced by other members while at least `t`
//! remain; a signer whose share fails verification is named.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::join_all;
use keyquorum_core::codec::{Decode, Encode};
use keyquorum_core::sign::{SignatureShare, SigningCommitment, SigningNonce, SigningPackage};
use keyquorum_core::{dkg, refresh, sign, GroupKey, KeyShare, ParticipantId, SessionId};
use keyquorum_store::vault::Op;
use keyquorum_store::Table;
use keyquorum_wire::api::{KeyInfo, SignResponse, SuiteName};
use keyquorum_wire::control::{Command, KeyRecord, NodeInfo};
use keyquorum_wire::peer::{Envelope, NonceCommitment, PeerMessage, Sealed};
use keyquorum_wire::{Hex, Hex32, NodeId};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroize;

use crate::error::NodeError;
use crate::node::{clone_request, Node};
use crate::peer::{now_ms, open_envelope, open_secret, seal_secret};

/// Dispatch on a suite name with a type alias for the suite.
macro_rules! with_suite {
    ($suite:expr, |$C:ident| $body:expr) => {
        match $suite {
            SuiteName::Ed25519 => {
                type $C = keyquorum_core::Ed25519;
                $body
            }
            SuiteName::Secp256k1Tr => {
                type $C = keyquorum_core::Secp256k1Tr;
                $body
            }
        }
    };
}

/// How long a participant keeps an unfinished DKG run.
const DKG_TTL: Duration = Duration::from_secs(300);
/// Most nonces one request may ask a signer to precompute.
pub const MAX_NONCE_BATCH: u16 = 1024;

/// Which two-round protocol a session runs (both share the DKG's relay
/// messages: round-1 broadcasts, then sealed round-2 shares).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Pedersen DKG (core `dkg`).
    Dkg,
    /// Proactive refresh of an existing key (core `refresh`).
    Refresh,
}

/// A session's protocol state (`dkg::Round1<C>`, `refresh::Round2<C>`, ...).
type Phase = Box<dyn Any + Send>;
/// Secret messages to send: recipient and plaintext.
type Outgoing = Vec<(ParticipantId, Vec<u8>)>;

struct DkgSession {
    kind: Kind,
    /// Key name and the generation the run would create.
    target: (String, u64),
    suite: SuiteName,
    coordinator: NodeId,
    members: Vec<NodeId>,
    started: Instant,
    /// `dkg::Round1<C>` then `dkg::Round2<C>`.
    phase: Box<dyn Any + Send>,
}

/// A run this node finished as a participant whose new share waits in the
/// vault's pending table: kept so the run's coordinator can roll it back.
struct Finished {
    coordinator: NodeId,
    slot: Vec<u8>,
    at: Instant,
}

/// Deliberate misbehaviour, for tests of blame, recovery and crash safety.
/// Everything is off unless a test turns it on through [`Driver::faults`];
/// no API or config reaches it.
#[derive(Debug, Default)]
pub struct Faults {
    /// Send DKG round-2 shares that are off this node's commitment.
    pub bad_dkg_share: AtomicBool,
    /// Send signature shares that do not verify.
    pub bad_signature_share: AtomicBool,
    /// Wait this many milliseconds before handling a DKG finish or a
    /// reshare receive (a window to stop the node mid-run).
    pub stall_finish_ms: AtomicU64,
    /// How many stalls have ended (so a test can wait for the late handler).
    pub stalls_ended: AtomicU64,
}

/// Decoded group keys (a `GroupKey<C>` behind `Any`).
type GroupCache = HashMap<(String, u64), (Vec<u8>, std::sync::Arc<dyn Any + Send + Sync>)>;

/// Per-node protocol state.
#[derive(Default)]
pub struct Driver {
    dkg: Mutex<HashMap<[u8; 32], DkgSession>>,
    finished: Mutex<HashMap<[u8; 32], Finished>>,
    /// Runs their coordinator gave up, with when: a late message of one of
    /// them must not leave a pending share behind.
    aborted: Mutex<HashMap<[u8; 32], (NodeId, Instant)>>,
    /// Repairs this node helps with, by run.
    pub(crate) repairs: Mutex<HashMap<[u8; 32], crate::repair::HelperSession>>,
    /// Decoded group keys by key and generation, with the bytes they came
    /// from.
    groups: Mutex<GroupCache>,
    faults: Faults,
    pools: Mutex<HashMap<(String, u64, NodeId), VecDeque<NonceCommitment>>>,
    refilling: Mutex<BTreeSet<(String, u64, NodeId)>>,
    rotation: AtomicUsize,
}

impl core::fmt::Debug for Driver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, NodeError> {
    m.lock()
        .map_err(|_| NodeError::Internal("driver lock poisoned".into()))
}

/// A node id as a participant index.
pub fn pid(n: NodeId) -> Result<ParticipantId, NodeError> {
    u16::try_from(n)
        .ok()
        .and_then(|v| ParticipantId::new(v).ok())
        .ok_or_else(|| {
            NodeError::BadRequest(format!(
                "node id {n} is not a valid participant index (1..=65535)"
            ))
        })
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

/// Check a key name: 1–64 characters from `[A-Za-z0-9._-]`.
pub fn check_key_name(name: &str) -> Result<(), NodeError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(NodeError::BadRequest(
            "key names are 1-64 characters from [A-Za-z0-9._-]".into(),
        ))
    }
}

pub(crate) fn share_slot(name: &str, epoch: u64) -> Vec<u8> {
    format!("{name}/{epoch:020}").into_bytes()
}

/// Where a run's new share waits until its generation is committed: under
/// the key, the generation it would create and the run.
pub(crate) fn pending_slot(name: &str, epoch: u64, session: &Hex32) -> Vec<u8> {
    format!("{name}/{epoch:020}/{}", hex::encode(session.0)).into_bytes()
}

/// Parse a [`pending_slot`] key.
fn parse_pending(k: &[u8]) -> Option<(String, u64, [u8; 32])> {
    let s = std::str::from_utf8(k).ok()?;
    let mut it = s.splitn(3, '/');
    let (name, epoch, session) = (it.next()?, it.next()?, it.next()?);
    let mut sid = [0u8; 32];
    hex::decode_to_slice(session, &mut sid).ok()?;
    Some((name.to_string(), epoch.parse().ok()?, sid))
}

pub(crate) fn nonce_slot(name: &str, epoch: u64, id: &[u8]) -> Vec<u8> {
    let mut k = format!("{name}/{epoch:020}/").into_bytes();
    k.extend_from_slice(hex::encode(id).as_bytes());
    k
}

impl Driver {
    // ----- participant side -------------------------------------------------

    /// Handle a protocol message from `from`.
    pub async fn handle(
        &self,
        node: &Node,
        from: NodeId,
        msg: PeerMessage,
    ) -> Result<PeerMessage, NodeError> {
        catch_up(node, &msg).await;
        if matches!(
            msg,
            PeerMessage::DkgFinish { .. } | PeerMessage::ReshareReceive { .. }
        ) {
            let stall = self.faults.stall_finish_ms.load(Ordering::Relaxed);
            if stall > 0 {
                // Detached, so the late work goes on after the caller gives
                // up (as on a slow node), instead of being cancelled with
                // the request.
                let node = node.clone();
                let late = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(stall)).await;
                    let driver = node.driver();
                    let r = driver.dispatch(&node, from, msg).await;
                    driver.faults.stalls_ended.fetch_add(1, Ordering::Relaxed);
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
            PeerMessage::ReshareDeal { session, plan } => {
                self.reshare_deal(node, from, session, &plan)
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
            PeerMessage::ExportShare { id } => self.export_share(node, from, &id),
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
            PeerMessage::Abort { session } => {
                self.abort(node, from, &session)?;
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
            } => {
                self.sign_share(node, from, &key, epoch, &nonce, &package)
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
    pub(crate) fn group_key<C: keyquorum_core::Suite>(
        &self,
        record: &KeyRecord,
    ) -> Result<std::sync::Arc<GroupKey<C>>, NodeError> {
        let slot = (record.name.clone(), record.epoch);
        if let Some(g) = lock(&self.groups)?.get(&slot) {
            if g.0 == record.group_key.0 {
                if let Ok(k) = g.1.clone().downcast::<GroupKey<C>>() {
                    return Ok(k);
                }
            }
        }
        let k = std::sync::Arc::new(
            GroupKey::<C>::from_bytes(&record.group_key.0)
                .map_err(|e| NodeError::Internal(format!("stored group key: {e}")))?,
        );
        let mut groups = lock(&self.groups)?;
        groups.retain(|(name, epoch), _| name != &record.name || *epoch >= record.epoch);
        groups.insert(slot, (record.group_key.0.clone(), k.clone()));
        Ok(k)
    }

    /// Runs this node is part of that have not finished yet.
    pub fn open_sessions(&self) -> usize {
        self.dkg.lock().map(|d| d.len()).unwrap_or(0)
    }

    /// Keep a finished run's new share as pending (until its generation
    /// commits), unless the run's coordinator has aborted it. Checked and
    /// stored under one lock so an abort racing with the store either stops
    /// it or finds it to roll back.
    pub(crate) fn store_pending(
        &self,
        node: &Node,
        session: &Hex32,
        coordinator: NodeId,
        slot: Vec<u8>,
        share: &[u8],
    ) -> Result<(), NodeError> {
        let aborted = lock(&self.aborted)?;
        if aborted
            .get(&session.0)
            .is_some_and(|(c, _)| *c == coordinator)
        {
            return Err(NodeError::Conflict("the run was aborted".into()));
        }
        node.vault().put(Table::Pending, &slot, share)?;
        self.remember_pending(session, coordinator, slot);
        drop(aborted);
        Ok(())
    }

    /// The test hook for deliberate misbehaviour.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Note that this node finished run `session` (coordinated by
    /// `coordinator`) with a pending share at `slot`.
    fn remember_pending(&self, session: &Hex32, coordinator: NodeId, slot: Vec<u8>) {
        if let Ok(mut f) = self.finished.lock() {
            f.retain(|_, v| v.at.elapsed() < DKG_TTL);
            f.insert(
                session.0,
                Finished {
                    coordinator,
                    slot,
                    at: Instant::now(),
                },
            );
        }
    }

    /// The coordinator gave run `session` up: drop its state and roll back
    /// the pending share it left here, unless the registry committed it (a
    /// coordinator cannot un-commit a generation by saying abort).
    fn abort(&self, node: &Node, from: NodeId, session: &Hex32) -> Result<(), NodeError> {
        {
            let mut d = lock(&self.dkg)?;
            if d.get(&session.0).is_some_and(|s| s.coordinator == from) {
                d.remove(&session.0);
            }
        }
        {
            let mut a = lock(&self.aborted)?;
            a.retain(|_, (_, at)| at.elapsed() < DKG_TTL);
            a.insert(session.0, (from, Instant::now()));
        }
        let done = {
            let mut f = lock(&self.finished)?;
            match f.get(&session.0) {
                Some(x) if x.coordinator == from => f.remove(&session.0),
                _ => None,
            }
        };
        if let Some(done) = done {
            let committed = node.registry(|r| r.keys.values().any(|k| k.session == *session));
            if !committed {
                node.vault().delete(Table::Pending, &done.slot)?;
            }
        }
        Ok(())
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the fields of one DkgStart message"
    )]
    fn dkg_start(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        key: String,
        suite: SuiteName,
        threshold: u16,
        members: Vec<NodeId>,
    ) -> Result<PeerMessage, NodeError> {
        check_key_name(&key)?;
        let me = node.id();
        let set: BTreeSet<NodeId> = members.iter().copied().collect();
        if set.len() != members.len() || !set.contains(&me) {
            return Err(NodeError::BadRequest(
                "members must be distinct and include the recipient".into(),
            ));
        }
        let params = dkg::DkgParams {
            session: SessionId(session.0),
            threshold,
            members: members.iter().map(|m| pid(*m)).collect::<Result<_, _>>()?,
        };
        let (phase, message): (Box<dyn Any + Send>, Vec<u8>) = with_suite!(suite, |C| {
            let (state, msg) =
                dkg::start::<C, _>(params, pid(me)?, &mut OsRng).map_err(core_err)?;
            (Box::new(state), msg.to_bytes())
        });
        let mut d = lock(&self.dkg)?;
        d.retain(|_, s| s.started.elapsed() < DKG_TTL);
        if d.contains_key(&session.0) {
            return Err(NodeError::Conflict("DKG session already started".into()));
        }
        d.insert(
            session.0,
            DkgSession {
                kind: Kind::Dkg,
                target: (key, 1),
                suite,
                coordinator: from,
                members,
                started: Instant::now(),
                phase,
            },
        );
        Ok(PeerMessage::DkgRound1 {
            session,
            message: Hex(message),
        })
    }

    /// Refresh round 1: start refreshing this node's share of `key` at `epoch`.
    fn refresh_start(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        key: &str,
        epoch: u64,
    ) -> Result<PeerMessage, NodeError> {
        let record = Self::record(node, key, epoch)?;
        let share_bytes = self.share_bytes(node, &record)?;
        let (phase, message): (Box<dyn Any + Send>, Vec<u8>) = with_suite!(record.suite, |C| {
            let group = GroupKey::<C>::from_bytes(&record.group_key.0)
                .map_err(|e| NodeError::Internal(format!("stored group key: {e}")))?;
            let share = KeyShare::<C>::from_secret_bytes(&share_bytes)
                .map_err(|e| NodeError::Internal(e.to_string()))?;
            let (state, msg) =
                refresh::start::<C, _>(SessionId(session.0), &group, share, &mut OsRng)
                    .map_err(core_err)?;
            (Box::new(state), msg.to_bytes())
        });
        let mut d = lock(&self.dkg)?;
        d.retain(|_, s| s.started.elapsed() < DKG_TTL);
        if d.contains_key(&session.0) {
            return Err(NodeError::Conflict("session already started".into()));
        }
        d.insert(
            session.0,
            DkgSession {
                kind: Kind::Refresh,
                target: (key.to_string(), epoch + 1),
                suite: record.suite,
                coordinator: from,
                members: record.members.clone(),
                started: Instant::now(),
                phase,
            },
        );
        Ok(PeerMessage::DkgRound1 {
            session,
            message: Hex(message),
        })
    }

    fn take_session(&self, from: NodeId, session: &Hex32) -> Result<DkgSession, NodeError> {
        let mut d = lock(&self.dkg)?;
        match d.get(&session.0) {
            None => Err(NodeError::NotFound(
                "no such DKG session (expired, aborted or never started)".into(),
            )),
            Some(s) if s.coordinator != from => Err(NodeError::Forbidden(
                "only the run's coordinator drives it".into(),
            )),
            Some(_) => d
                .remove(&session.0)
                .ok_or_else(|| NodeError::Internal("session vanished".into())),
        }
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

    fn dkg_round2(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        round1: Vec<Envelope>,
    ) -> Result<PeerMessage, NodeError> {
        let DkgSession {
            kind,
            target,
            suite,
            coordinator,
            members,
            started,
            phase,
        } = self.take_session(from, &session)?;
        // The round-1 broadcasts, checked for origin and session; decoded per
        // protocol below.
        let mut received = Vec::with_capacity(round1.len());
        for env in &round1 {
            let (origin, msg) = self.relayed(node, coordinator, &members, env)?;
            if origin == node.id() {
                return Err(NodeError::BadRequest(
                    "relayed this node's own message".into(),
                ));
            }
            let PeerMessage::DkgRound1 {
                session: sid,
                message,
            } = msg
            else {
                return Err(NodeError::BadRequest("expected a DkgRound1 message".into()));
            };
            if sid != session {
                return Err(NodeError::BadRequest(
                    "round-1 message from another session".into(),
                ));
            }
            received.push((origin, message.0));
        }
        let (phase, out): (Phase, Outgoing) = with_suite!(suite, |C| match kind {
            Kind::Dkg => {
                let mut state = phase
                    .downcast::<dkg::Round1<C>>()
                    .map_err(|_| NodeError::Conflict("session is not in round 1".into()))?;
                for (origin, bytes) in &received {
                    let m = decode::<dkg::Round1Message<C>>(bytes, "round-1 message", *origin)?;
                    state.receive(pid(*origin)?, m).map_err(core_err)?;
                }
                let (next, out) = state.advance().map_err(core_err)?;
                let bad = self.faults.bad_dkg_share.load(Ordering::Relaxed);
                let out = out
                    .into_iter()
                    .map(|(to, mut m)| {
                        if bad {
                            m.tamper_share();
                        }
                        (to, m.to_bytes())
                    })
                    .collect();
                (Box::new(next) as Box<dyn Any + Send>, out)
            }
            Kind::Refresh => {
                let mut state = phase
                    .downcast::<refresh::Round1<C>>()
                    .map_err(|_| NodeError::Conflict("session is not in round 1".into()))?;
                for (origin, bytes) in &received {
                    let m = decode::<refresh::Round1Message<C>>(bytes, "round-1 message", *origin)?;
                    state.receive(pid(*origin)?, m).map_err(core_err)?;
                }
                let (next, out) = state.advance().map_err(core_err)?;
                let out = out.into_iter().map(|(to, m)| (to, m.to_bytes())).collect();
                (Box::new(next) as Box<dyn Any + Send>, out)
            }
        });
        let shares = seal_all(node, &session, out)?;
        let mut d = lock(&self.dkg)?;
        d.insert(
            session.0,
            DkgSession {
                kind,
                target,
                suite,
                coordinator,
                members,
                started,
                phase,
            },
        );
        Ok(PeerMessage::DkgShares { session, shares })
    }

    fn dkg_finish(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        round2: Vec<Envelope>,
    ) -> Result<PeerMessage, NodeError> {
        let DkgSession {
            kind,
            target,
            suite,
            coordinator,
            members,
            phase,
            ..
        } = self.take_session(from, &session)?;
        let me = node.id();
        // Open the share each member sealed to this node.
        let mut received = Vec::with_capacity(round2.len());
        for env in &round2 {
            let (origin, msg) = self.relayed(node, coordinator, &members, env)?;
            if origin == me {
                return Err(NodeError::BadRequest(
                    "relayed this node's own message".into(),
                ));
            }
            let PeerMessage::DkgShares {
                session: sid,
                shares,
            } = msg
            else {
                return Err(NodeError::BadRequest("expected a DkgShares message".into()));
            };
            if sid != session {
                return Err(NodeError::BadRequest(
                    "round-2 message from another session".into(),
                ));
            }
            let sealed =
                shares
                    .iter()
                    .find(|x| x.to == me)
                    .ok_or_else(|| NodeError::Misbehaved {
                        message: format!("node {origin} sent no share for node {me}"),
                        culprits: vec![origin],
                    })?;
            received.push((
                origin,
                open_secret(node.keys(), &session, origin, me, sealed)?,
            ));
        }
        let (share, group_key) = with_suite!(suite, |C| {
            let (share, group): (KeyShare<C>, GroupKey<C>) = match kind {
                Kind::Dkg => {
                    let mut state = phase
                        .downcast::<dkg::Round2<C>>()
                        .map_err(|_| NodeError::Conflict("session is not in round 2".into()))?;
                    for (origin, plain) in &received {
                        let m = decode::<dkg::Round2Message<C>>(plain, "round-2 share", *origin)?;
                        state.receive(pid(*origin)?, m).map_err(core_err)?;
                    }
                    state.finish().map_err(core_err)?
                }
                Kind::Refresh => {
                    let mut state = phase
                        .downcast::<refresh::Round2<C>>()
                        .map_err(|_| NodeError::Conflict("session is not in round 2".into()))?;
                    for (origin, plain) in &received {
                        let m =
                            decode::<refresh::Round2Message<C>>(plain, "round-2 share", *origin)?;
                        state.receive(pid(*origin)?, m).map_err(core_err)?;
                    }
                    state.finish().map_err(core_err)?
                }
            };
            (share.to_secret_bytes(), group.to_bytes())
        });
        // Pending until the registry commits the run's record.
        let slot = pending_slot(&target.0, target.1, &session);
        self.store_pending(node, &session, coordinator, slot, &share)?;
        Ok(PeerMessage::DkgDone {
            session,
            group_key: Hex(group_key),
        })
    }

    /// This node's share of `record`, promoting the pending share of the run
    /// that produced it on first use and erasing older generations (their
    /// shares and nonces): they are useless once this one is committed.
    pub(crate) fn share_bytes(
        &self,
        node: &Node,
        record: &KeyRecord,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, NodeError> {
        let slot = share_slot(&record.name, record.epoch);
        if let Some(s) = node.vault().get(Table::Shares, &slot)? {
            return Ok(s);
        }
        let pending = pending_slot(&record.name, record.epoch, &record.session);
        let Some(share) = node.vault().get(Table::Pending, &pending)? else {
            return Err(NodeError::NotFound(format!(
                "node {} holds no share of {} at epoch {}",
                node.id(),
                record.name,
                record.epoch
            )));
        };
        node.vault().apply(&[
            Op::Put(Table::Shares, &slot, &share),
            Op::Delete(Table::Pending, &pending),
        ])?;
        self.erase_older(node, record)?;
        Ok(share)
    }

    /// Erase this node's shares and nonces of generations of `record`'s key
    /// older than `record`'s, and pending shares of runs that can no longer
    /// commit. Only committed state is consulted, so a lagging node erases
    /// nothing it may still need.
    pub(crate) fn erase_older(&self, node: &Node, record: &KeyRecord) -> Result<usize, NodeError> {
        let prefix = format!("{}/", record.name);
        let older = |k: &[u8]| -> bool {
            std::str::from_utf8(k)
                .ok()
                .and_then(|s| s.strip_prefix(&prefix))
                .and_then(|rest| rest.get(..20))
                .and_then(|e| e.parse::<u64>().ok())
                .is_some_and(|e| e < record.epoch)
        };
        let shares: Vec<Vec<u8>> = node
            .vault()
            .keys(Table::Shares, prefix.as_bytes())?
            .into_iter()
            .filter(|k| older(k))
            .collect();
        let nonces: Vec<Vec<u8>> = node
            .vault()
            .keys(Table::Nonces, prefix.as_bytes())?
            .into_iter()
            .filter(|k| older(k))
            .collect();
        let pending: Vec<Vec<u8>> = node
            .vault()
            .keys(Table::Pending, prefix.as_bytes())?
            .into_iter()
            .filter(|k| {
                parse_pending(k).is_some_and(|(name, epoch, sid)| {
                    name == record.name
                        && (epoch < record.epoch
                            || (epoch == record.epoch && sid != record.session.0))
                })
            })
            .collect();
        let mut ops: Vec<Op<'_>> = Vec::new();
        ops.extend(shares.iter().map(|k| Op::Delete(Table::Shares, k)));
        ops.extend(nonces.iter().map(|k| Op::Delete(Table::Nonces, k)));
        ops.extend(pending.iter().map(|k| Op::Delete(Table::Pending, k)));
        if !ops.is_empty() {
            node.vault().apply(&ops)?;
        }
        if let Ok(mut p) = self.pools.lock() {
            p.retain(|(name, epoch, _), _| name != &record.name || *epoch >= record.epoch);
        }
        Ok(ops.len())
    }

    pub(crate) fn record(node: &Node, name: &str, epoch: u64) -> Result<KeyRecord, NodeError> {
        let record = node
            .registry(|r| r.keys.get(name).cloned())
            .ok_or_else(|| NodeError::NotFound(format!("no key named {name}")))?;
        if record.epoch != epoch {
            return Err(NodeError::Conflict(format!(
                "key {name} is at epoch {}, not {epoch}",
                record.epoch
            )));
        }
        if !record.members.contains(&node.id()) {
            return Err(NodeError::Forbidden(format!(
                "node {} holds no share of {name}",
                node.id()
            )));
        }
        Ok(record)
    }

    fn nonce_batch(
        &self,
        node: &Node,
        name: &str,
        epoch: u64,
        count: u16,
    ) -> Result<PeerMessage, NodeError> {
        if count == 0 || count > MAX_NONCE_BATCH {
            return Err(NodeError::BadRequest(format!(
                "nonce batch size must be 1..={MAX_NONCE_BATCH}"
            )));
        }
        let record = Self::record(node, name, epoch)?;
        let share_bytes = self.share_bytes(node, &record)?;
        let (items, secrets) = with_suite!(record.suite, |C| {
            let share = KeyShare::<C>::from_secret_bytes(&share_bytes)
                .map_err(|e| NodeError::Internal(e.to_string()))?;
            let mut items = Vec::with_capacity(usize::from(count));
            let mut secrets = Vec::with_capacity(usize::from(count));
            for (nonce, commitment) in sign::precompute(&share, usize::from(count), &mut OsRng) {
                let mut id = [0u8; 16];
                OsRng.fill_bytes(&mut id);
                secrets.push((nonce_slot(name, epoch, &id), nonce.to_secret_bytes()));
                items.push(NonceCommitment {
                    id: Hex(id.to_vec()),
                    commitment: Hex(commitment.to_bytes()),
                });
            }
            (items, secrets)
        });
        let ops: Vec<Op<'_>> = secrets
            .iter()
            .map(|(k, v)| Op::Put(Table::Nonces, k, v))
            .collect();
        node.vault().apply(&ops)?;
        Ok(PeerMessage::Nonces { items })
    }

    async fn sign_share(
        &self,
        node: &Node,
        from: NodeId,
        name: &str,
        epoch: u64,
        nonce: &Hex,
        package: &Hex,
    ) -> Result<PeerMessage, NodeError> {
        let record = Self::record(node, name, epoch)?;
        if nonce.0.len() != 16 {
            return Err(NodeError::BadRequest("nonce id must be 16 bytes".into()));
        }
        let me = pid(node.id())?;
        let share_bytes = self.share_bytes(node, &record)?;
        let slot = nonce_slot(name, epoch, &nonce.0);
        let share = with_suite!(record.suite, |C| {
            // Check the package names this node before spending a nonce.
            let package = decode::<SigningPackage<C>>(&package.0, "signing package", from)?;
            if !package.signers().any(|s| s == me) {
                return Err(NodeError::BadRequest(
                    "this node is not a signer in the package".into(),
                ));
            }
            // Durably removed before anything is computed with it: a crash
            // after this line can never sign with the same nonce again.
            // (Removals of concurrent requests share one commit; see `taker`.)
            let secret = node
                .inner()
                .nonces
                .take(slot.clone())
                .await?
                .ok_or_else(|| NodeError::Conflict("unknown or already used nonce".into()))?;
            let share = KeyShare::<C>::from_secret_bytes(&share_bytes)
                .map_err(|e| NodeError::Internal(e.to_string()))?;
            let nonce = SigningNonce::<C>::from_secret_bytes(&secret)
                .map_err(|e| NodeError::Internal(e.to_string()))?;
            let mut s: SignatureShare<C> = nonce.sign(&share, &package).map_err(core_err)?;
            if self.faults.bad_signature_share.load(Ordering::Relaxed) {
                s.tamper();
            }
            s.to_bytes()
        });
        Ok(PeerMessage::SignatureShare { share: Hex(share) })
    }

    /// At start: for every key in the (locally applied) registry, erase
    /// older generations and dead pending shares, and promote this node's
    /// share of the current generation if it is still pending. A pending
    /// share for a key the registry does not know yet is kept: the run may
    /// have committed on a quorum this node has not heard from.
    pub fn tidy(&self, node: &Node) -> Result<usize, NodeError> {
        let records: Vec<KeyRecord> = node.registry(|r| r.keys.values().cloned().collect());
        let mut erased = 0;
        for record in &records {
            if record.members.contains(&node.id()) {
                // Promotes a pending share (and erases older ones) if needed;
                // a member that lost its share is repaired separately.
                let _ = self.share_bytes(node, record);
            }
            erased += self.erase_older(node, record)?;
        }
        Ok(erased)
    }

    // ----- coordinator side -------------------------------------------------

    /// Run a DKG among `members` and commit the key. Members named as
    /// culprits are left out of a retry while at least `threshold` remain.
    pub async fn create_key(
        &self,
        node: &Node,
        name: &str,
        suite: SuiteName,
        threshold: u16,
        mut members: Vec<NodeId>,
    ) -> Result<KeyInfo, NodeError> {
        check_key_name(name)?;
        members.sort_unstable();
        members.dedup();
        if threshold < 2 || usize::from(threshold) > members.len() {
            return Err(NodeError::BadRequest(format!(
                "threshold must be between 2 and the number of members ({})",
                members.len()
            )));
        }
        if node.registry(|r| r.keys.contains_key(name)) {
            return Err(NodeError::Conflict(format!("a key named {name} exists")));
        }
        let mut infos = BTreeMap::new();
        for m in &members {
            pid(*m)?;
            let info = node
                .node_info(*m)
                .ok_or_else(|| NodeError::BadRequest(format!("node {m} is not in the cluster")))?;
            infos.insert(*m, info);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.run_dkg(node, name, suite, threshold, &infos).await {
                Ok(info) => return Ok(info),
                Err(NodeError::Misbehaved { message, culprits }) if attempt < 3 => {
                    node.audit_event(
                        "peer",
                        "dkg.blame",
                        Some(name),
                        &format!("culprits {culprits:?}: {message}"),
                    );
                    for c in &culprits {
                        infos.remove(c);
                    }
                    if infos.len() < usize::from(threshold) || culprits.is_empty() {
                        return Err(NodeError::Misbehaved { message, culprits });
                    }
                    tracing::warn!(
                        key = name,
                        ?culprits,
                        "DKG blamed members; retrying without them"
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn run_dkg(
        &self,
        node: &Node,
        name: &str,
        suite: SuiteName,
        threshold: u16,
        infos: &BTreeMap<NodeId, NodeInfo>,
    ) -> Result<KeyInfo, NodeError> {
        let mut sid = [0u8; 32];
        OsRng.fill_bytes(&mut sid);
        let session = Hex32(sid);
        let members: Vec<NodeId> = infos.keys().copied().collect();
        let start = PeerMessage::DkgStart {
            session,
            key: name.to_string(),
            suite,
            threshold,
            members: members.clone(),
        };
        let result = self.dkg_rounds(node, suite, infos, session, &start).await;
        if result.is_err() {
            // Best effort: tell everyone to drop the run.
            let abort = PeerMessage::Abort { session };
            let calls = infos.iter().map(|(m, i)| node.call(*m, i, &abort));
            let _ = join_all(calls).await;
        }
        let (group_bytes, public_key) = result?;
        let record = KeyRecord {
            name: name.to_string(),
            suite,
            threshold,
            members: members.clone(),
            public_key: Hex(public_key.clone()),
            group_key: Hex(group_bytes),
            epoch: 1,
            session,
            created_ms: now_ms(),
        };
        node.commit(Command::PutKey {
            record,
            expected_epoch: None,
        })
        .await?;
        Ok(KeyInfo {
            name: name.to_string(),
            suite,
            threshold,
            members,
            public_key: Hex(public_key),
            epoch: 1,
        })
    }

    /// The three relayed rounds of a two-round protocol (DKG or refresh),
    /// opened by `start`; returns the group key every member agreed on and
    /// its public key.
    pub(crate) async fn dkg_rounds(
        &self,
        node: &Node,
        suite: SuiteName,
        infos: &BTreeMap<NodeId, NodeInfo>,
        session: Hex32,
        start: &PeerMessage,
    ) -> Result<(Vec<u8>, Vec<u8>), NodeError> {
        let round1 = gather(node, infos, |_| clone_request(start).ok()).await?;
        let round2 = gather(node, infos, |m| {
            Some(PeerMessage::DkgRound2 {
                session,
                round1: round1
                    .iter()
                    .filter(|(k, _)| **k != m)
                    .map(|(_, (e, _))| e.clone())
                    .collect(),
            })
        })
        .await?;
        let done = gather(node, infos, |m| {
            Some(PeerMessage::DkgFinish {
                session,
                round2: round2
                    .iter()
                    .filter(|(k, _)| **k != m)
                    .map(|(_, (e, _))| e.clone())
                    .collect(),
            })
        })
        .await?;
        let mut agreed: Option<Vec<u8>> = None;
        for (m, (_, msg)) in &done {
            let PeerMessage::DkgDone { group_key, .. } = msg else {
                return Err(NodeError::Misbehaved {
                    message: format!("node {m} answered DkgFinish with the wrong message"),
                    culprits: vec![*m],
                });
            };
            match &agreed {
                None => agreed = Some(group_key.0.clone()),
                Some(g) if *g == group_key.0 => {}
                Some(_) => {
                    return Err(NodeError::Misbehaved {
                        message: "members computed different group keys".into(),
                        culprits: vec![*m],
                    })
                }
            }
        }
        let group_bytes = agreed.ok_or_else(|| NodeError::Internal("no members".into()))?;
        let public_key = with_suite!(suite, |C| {
            GroupKey::<C>::from_bytes(&group_bytes)
                .map_err(|e| NodeError::Internal(format!("group key: {e}")))?
                .public_key_bytes()
        });
        Ok((group_bytes, public_key))
    }

    /// Take a commitment for `signer` from the pool, or fetch fresh ones.
    async fn commitment(
        &self,
        node: &Node,
        record: &KeyRecord,
        signer: NodeId,
        info: &NodeInfo,
    ) -> Result<NonceCommitment, NodeError> {
        let pool_key = (record.name.clone(), record.epoch, signer);
        let target = node.config().nonce_pool;
        let (got, low) = {
            let mut pools = lock(&self.pools)?;
            let q = pools.entry(pool_key.clone()).or_default();
            (q.pop_front(), q.len() < target / 2)
        };
        if target > 0 && low {
            self.spawn_refill(node, record, signer, info.clone());
        }
        if let Some(c) = got {
            return Ok(c);
        }
        let batch = PeerMessage::NonceBatch {
            key: record.name.clone(),
            epoch: record.epoch,
            count: 1,
        };
        match node.call(signer, info, &batch).await?.1 {
            PeerMessage::Nonces { mut items } if items.len() == 1 => items
                .pop()
                .ok_or_else(|| NodeError::Internal("empty".into())),
            _ => Err(NodeError::Misbehaved {
                message: format!("node {signer} answered NonceBatch wrongly"),
                culprits: vec![signer],
            }),
        }
    }

    fn spawn_refill(&self, node: &Node, record: &KeyRecord, signer: NodeId, info: NodeInfo) {
        let key = (record.name.clone(), record.epoch, signer);
        match self.refilling.lock() {
            Ok(mut r) => {
                if !r.insert(key.clone()) {
                    return;
                }
            }
            Err(_) => return,
        }
        let node = node.clone();
        let count = u16::try_from(
            node.config()
                .nonce_pool
                .clamp(1, usize::from(MAX_NONCE_BATCH)),
        )
        .unwrap_or(1);
        tokio::spawn(async move {
            let batch = PeerMessage::NonceBatch {
                key: key.0.clone(),
                epoch: key.1,
                count,
            };
            let got = node.call(signer, &info, &batch).await;
            let driver = node.driver();
            if let Ok((_, PeerMessage::Nonces { items })) = got {
                if let Ok(mut pools) = driver.pools.lock() {
                    pools.entry(key.clone()).or_default().extend(items);
                }
            }
            if let Ok(mut r) = driver.refilling.lock() {
                r.remove(&key);
            }
        });
    }

    /// Forget pooled commitments of `signer` (it failed; its vault may have
    /// lost them).
    fn drop_pool(&self, record: &KeyRecord, signer: NodeId) {
        if let Ok(mut p) = self.pools.lock() {
            p.remove(&(record.name.clone(), record.epoch, signer));
        }
    }

    /// Threshold-sign `message` with key `name`.
    pub async fn sign(
        &self,
        node: &Node,
        name: &str,
        message: &[u8],
    ) -> Result<SignResponse, NodeError> {
        let record = node
            .key_record(name)
            .await
            .ok_or_else(|| NodeError::NotFound(format!("no key named {name}")))?;
        let t = usize::from(record.threshold);
        // This node first (no network hop), then the others rotated per
        // request so load spreads.
        let me = node.id();
        let mut order: Vec<NodeId> = record
            .members
            .iter()
            .copied()
            .filter(|m| *m != me)
            .collect();
        if !order.is_empty() {
            let r = self.rotation.fetch_add(1, Ordering::Relaxed) % order.len();
            order.rotate_left(r);
        }
        if record.members.contains(&me) {
            order.insert(0, me);
        }
        let mut failed: BTreeSet<NodeId> = BTreeSet::new();
        let mut last_err = None;
        loop {
            let signers: Vec<NodeId> = order
                .iter()
                .copied()
                .filter(|m| !failed.contains(m))
                .take(t)
                .collect();
            if signers.len() < t {
                return Err(last_err.unwrap_or_else(|| {
                    NodeError::Unavailable(format!(
                        "fewer than {t} members of {name} are reachable"
                    ))
                }));
            }
            match self.sign_once(node, &record, &signers, message).await {
                Ok(r) => return Ok(r),
                Err((bad, e)) => {
                    if bad.is_empty() {
                        return Err(e);
                    }
                    for b in &bad {
                        self.drop_pool(&record, *b);
                    }
                    tracing::warn!(key = name, ?bad, error = %e, "signers failed; retrying with others");
                    failed.extend(bad);
                    last_err = Some(e);
                }
            }
        }
    }

    async fn sign_once(
        &self,
        node: &Node,
        record: &KeyRecord,
        signers: &[NodeId],
        message: &[u8],
    ) -> Result<SignResponse, (Vec<NodeId>, NodeError)> {
        let mut infos = BTreeMap::new();
        for s in signers {
            let info = node.node_info(*s).ok_or_else(|| {
                (
                    vec![*s],
                    NodeError::Unavailable(format!("no address for node {s}")),
                )
            })?;
            infos.insert(*s, info);
        }
        let fetched = join_all(
            infos
                .iter()
                .map(|(s, i)| async move { (*s, self.commitment(node, record, *s, i).await) }),
        )
        .await;
        let mut nonce_ids = BTreeMap::new();
        let mut commitments = Vec::new();
        let mut bad = Vec::new();
        let mut err = None;
        for (s, r) in fetched {
            match r {
                Ok(c) => {
                    commitments.push((s, c.commitment));
                    nonce_ids.insert(s, c.id);
                }
                Err(e) => {
                    bad.push(s);
                    err = Some(e);
                }
            }
        }
        if let Some(e) = err {
            return Err((bad, e));
        }
        let mut sid = [0u8; 32];
        OsRng.fill_bytes(&mut sid);
        with_suite!(record.suite, |C| {
            let group = self.group_key::<C>(record).map_err(|e| (vec![], e))?;
            let group: &GroupKey<C> = &group;
            let mut cs = Vec::with_capacity(commitments.len());
            for (s, c) in &commitments {
                let c = decode::<SigningCommitment<C>>(&c.0, "nonce commitment", *s)
                    .map_err(|e| (vec![*s], e))?;
                if u64::from(c.signer().get()) != *s {
                    return Err((
                        vec![*s],
                        NodeError::Misbehaved {
                            message: format!("node {s} sent another signer's commitment"),
                            culprits: vec![*s],
                        },
                    ));
                }
                cs.push(c);
            }
            let mut coordinator = sign::Coordinator::new(group, SessionId(sid), message, cs)
                .map_err(|e| (vec![], core_err(e)))?;
            let package = Hex(coordinator.package().to_bytes());
            let calls = infos.iter().map(|(s, i)| {
                let msg = PeerMessage::SignShare {
                    key: record.name.clone(),
                    epoch: record.epoch,
                    nonce: nonce_ids.get(s).cloned().unwrap_or_default(),
                    package: package.clone(),
                };
                async move { (*s, node.call(*s, i, &msg).await) }
            });
            let replies = join_all(calls).await;
            let mut bad = Vec::new();
            let mut err = None;
            for (s, r) in replies {
                match r {
                    Ok((_, PeerMessage::SignatureShare { share })) => {
                        let share = decode::<SignatureShare<C>>(&share.0, "signature share", s)
                            .map_err(|e| (vec![s], e))?;
                        coordinator
                            .receive(pid(s).map_err(|e| (vec![s], e))?, share)
                            .map_err(|e| (vec![s], core_err(e)))?;
                    }
                    Ok(_) => {
                        bad.push(s);
                        err = Some(NodeError::Misbehaved {
                            message: format!("node {s} answered SignShare wrongly"),
                            culprits: vec![s],
                        });
                    }
                    Err(e) => {
                        bad.push(s);
                        err = Some(e);
                    }
                }
            }
            if let Some(e) = err {
                return Err((bad, e));
            }
            let sig = coordinator.finish().map_err(|e| {
                let culprits: Vec<NodeId> =
                    e.culprits().iter().map(|p| u64::from(p.get())).collect();
                (culprits, core_err(e))
            })?;
            Ok(SignResponse {
                signature: Hex(sig.to_bytes()),
                signers: signers.to_vec(),
                epoch: record.epoch,
            })
        })
    }
}

/// A request refers to control-plane state (a key generation, an export's
/// approvals) that the coordinator has seen committed; if this node has not
/// applied it yet, give replication a moment (bounded; the handler then
/// judges on what it has).
async fn catch_up(node: &Node, msg: &PeerMessage) {
    let ready = |node: &Node| -> bool {
        match msg {
            PeerMessage::RefreshStart { key, epoch, .. }
            | PeerMessage::NonceBatch { key, epoch, .. }
            | PeerMessage::SignShare { key, epoch, .. } => {
                node.registry(|r| r.keys.get(key).is_some_and(|k| k.epoch >= *epoch))
            }
            PeerMessage::ReshareDeal { plan, .. } | PeerMessage::ReshareReceive { plan, .. } => {
                node.registry(|r| r.keys.get(&plan.key).is_some_and(|k| k.epoch >= plan.epoch))
            }
            PeerMessage::ExportShare { id } => node.registry(|r| {
                r.exports
                    .get(id)
                    .is_some_and(|e| e.done && e.approvals.len() >= usize::from(e.needed))
            }),
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
        let to = u64::from(to.get());
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
    let calls = infos.iter().filter_map(|(m, i)| {
        let msg = make(*m)?;
        Some(async move { (*m, node.call(*m, i, &msg).await) })
    });
    let mut out = BTreeMap::new();
    for (m, r) in join_all(calls).await {
        out.insert(m, r?);
    }
    Ok(out)
}

/// Whether `signature` on `message` verifies under `public_key` with the
/// ordinary verifier of `suite` (RFC 8032 Ed25519, BIP-340).
pub fn verify_signature(
    suite: SuiteName,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    with_suite!(suite, |C| sign::verify::<C>(public_key, message, signature)
        .is_ok())
}

/// A short name for a message, for errors and logs.
pub fn message_name(m: &PeerMessage) -> &'static str {
    match m {
        PeerMessage::AppendEntries(_) => "append_entries",
        PeerMessage::AppendEntriesReply(_) => "append_entries_reply",
        PeerMessage::Vote(_) => "vote",
        PeerMessage::VoteReply(_) => "vote_reply",
        PeerMessage::InstallSnapshot(_) => "install_snapshot",
        PeerMessage::InstallSnapshotReply(_) => "install_snapshot_reply",
        PeerMessage::RepairStart { .. } => "repair_start",
        PeerMessage::RepairImages { .. } => "repair_images",
        PeerMessage::RepairSum { .. } => "repair_sum",
        PeerMessage::RepairSigma { .. } => "repair_sigma",
        PeerMessage::RepairFinish { .. } => "repair_finish",
        PeerMessage::Ping => "ping",
        PeerMessage::Pong => "pong",
        PeerMessage::ReadIndex => "read_index",
        PeerMessage::ReadIndexReply { .. } => "read_index_reply",
        PeerMessage::Forward { .. } => "forward",
        PeerMessage::ForwardReply { .. } => "forward_reply",
        PeerMessage::DkgStart { .. } => "dkg_start",
        PeerMessage::DkgRound1 { .. } => "dkg_round1",
        PeerMessage::DkgRound2 { .. } => "dkg_round2",
        PeerMessage::DkgShares { .. } => "dkg_shares",
        PeerMessage::DkgFinish { .. } => "dkg_finish",
        PeerMessage::DkgDone { .. } => "dkg_done",
        PeerMessage::Abort { .. } => "abort",
        PeerMessage::NonceBatch { .. } => "nonce_batch",
        PeerMessage::Nonces { .. } => "nonces",
        PeerMessage::SignShare { .. } => "sign_share",
        PeerMessage::SignatureShare { .. } => "signature_share",
        PeerMessage::RefreshStart { .. } => "refresh_start",
        PeerMessage::ReshareDeal { .. } => "reshare_deal",
        PeerMessage::ReshareDealt { .. } => "reshare_dealt",
        PeerMessage::ReshareReceive { .. } => "reshare_receive",
        PeerMessage::ReshareDone { .. } => "reshare_done",
        PeerMessage::EpochCommitted { .. } => "epoch_committed",
        PeerMessage::ExportShare { .. } => "export_share",
        PeerMessage::ExportedShare { .. } => "exported_share",
        PeerMessage::Ack => "ack",
        PeerMessage::ChangeMembers { .. } => "change_members",
        PeerMessage::MsgCoordinate { .. } => "msg_coordinate",
        PeerMessage::MsgConfirmed { .. } => "msg_confirmed",
        PeerMessage::Error { .. } => "error",
    }
}
