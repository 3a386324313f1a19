//! Distributed key generation across the members (core `dkg`, Pedersen
//! with proofs of knowledge), and the relayed two-round runs it shares with
//! refresh ([`Keys::dkg_rounds`]): round-1 broadcasts, then round-2 shares
//! sealed to each recipient, then every member's group key compared.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures::future::join_all;
use keyquorum_core::codec::{Decode, Encode};
use keyquorum_core::httpsig;
use keyquorum_core::{dkg, refresh, GroupKey, KeyShare, SessionId, Suite};
use keyquorum_wire::api::{KeyInfo, SuiteName};
use keyquorum_wire::control::{key_statement, Endorsement, KeyRecord, KeysCommand, NodeInfo};
use keyquorum_wire::peer::{Envelope, PeerMessage};
use keyquorum_wire::{Hex, Hex32, NodeId};
use rand_core::OsRng;

use super::shares::pending_slot;
use super::suite::{with_suite, KeySuite, PerSuite};
use super::{
    core_err, decode, gather, lock, open_mine, pid, random_session, seal_all, Keys, Outgoing,
    DKG_TTL,
};
use crate::api::auth::by_request;
use crate::cluster::peer::now_ms;
use crate::cluster::transport::clone_request;
use crate::cluster::Node;
use crate::error::NodeError;
use crate::names::check_name;

/// A DKG or refresh run's state between its rounds, for suite `C`.
pub(super) enum Phase<C: Suite> {
    /// DKG, waiting for the round-1 broadcasts.
    Dkg1(dkg::Round1<C>),
    /// DKG, waiting for the round-2 shares.
    Dkg2(dkg::Round2<C>),
    /// Refresh, waiting for the round-1 broadcasts.
    Refresh1(refresh::Round1<C>),
    /// Refresh, waiting for the round-2 shares.
    Refresh2(refresh::Round2<C>),
}

/// [`Phase`] as a family over suites.
pub(super) struct Phases;
impl PerSuite for Phases {
    type Of<C: KeySuite> = Phase<C>;
}

/// A run this node takes part in.
pub(super) struct DkgSession {
    /// Key name and the generation the run would create.
    pub(super) target: (String, u64),
    pub(super) coordinator: NodeId,
    pub(super) members: Vec<NodeId>,
    pub(super) started: Instant,
    pub(super) phase: super::Suited<Phases>,
}

/// Round 2: take the others' round-1 broadcasts, deal this node's shares.
fn advance<C: KeySuite>(
    phase: Phase<C>,
    received: &[(NodeId, Vec<u8>)],
    bad_shares: bool,
) -> Result<(Phase<C>, Outgoing), NodeError> {
    match phase {
        Phase::Dkg1(mut state) => {
            for (origin, bytes) in received {
                let m = decode::<dkg::Round1Message<C>>(bytes, "round-1 message", *origin)?;
                state.receive(pid(*origin), m).map_err(core_err)?;
            }
            let (next, out) = state.advance().map_err(core_err)?;
            let out = out
                .into_iter()
                .map(|(to, mut m)| {
                    if bad_shares {
                        m.tamper_share();
                    }
                    (to, m.to_bytes())
                })
                .collect();
            Ok((Phase::Dkg2(next), out))
        }
        Phase::Refresh1(mut state) => {
            for (origin, bytes) in received {
                let m = decode::<refresh::Round1Message<C>>(bytes, "round-1 message", *origin)?;
                state.receive(pid(*origin), m).map_err(core_err)?;
            }
            let (next, out) = state.advance().map_err(core_err)?;
            let out = out.into_iter().map(|(to, m)| (to, m.to_bytes())).collect();
            Ok((Phase::Refresh2(next), out))
        }
        Phase::Dkg2(_) | Phase::Refresh2(_) => {
            Err(NodeError::Conflict("session is not in round 1".into()))
        }
    }
}

/// Finish: take the shares sealed to this node; this node's new share and
/// the group key, encoded.
fn finish<C: KeySuite>(
    phase: Phase<C>,
    received: &[(NodeId, zeroize::Zeroizing<Vec<u8>>)],
) -> Result<(zeroize::Zeroizing<Vec<u8>>, Vec<u8>), NodeError> {
    let (share, group): (KeyShare<C>, GroupKey<C>) = match phase {
        Phase::Dkg2(mut state) => {
            for (origin, plain) in received {
                let m = decode::<dkg::Round2Message<C>>(plain, "round-2 share", *origin)?;
                state.receive(pid(*origin), m).map_err(core_err)?;
            }
            state.finish().map_err(core_err)?
        }
        Phase::Refresh2(mut state) => {
            for (origin, plain) in received {
                let m = decode::<refresh::Round2Message<C>>(plain, "round-2 share", *origin)?;
                state.receive(pid(*origin), m).map_err(core_err)?;
            }
            state.finish().map_err(core_err)?
        }
        Phase::Dkg1(_) | Phase::Refresh1(_) => {
            return Err(NodeError::Conflict("session is not in round 2".into()))
        }
    };
    Ok((share.to_secret_bytes(), group.to_bytes()))
}

/// A key to create, as the client asked for it (defaults filled in).
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Its name.
    pub name: String,
    /// Its signature scheme.
    pub suite: SuiteName,
    /// Its threshold.
    pub threshold: u16,
    /// Its members.
    pub members: Vec<NodeId>,
    /// The client's consent to fewer members (see
    /// `CreateKeyRequest::min_members`).
    pub min_members: Option<u16>,
}

impl Keys {
    // ----- participant side -------------------------------------------------

    #[allow(
        clippy::too_many_arguments,
        reason = "the fields of one DkgStart message"
    )]
    pub(super) fn dkg_start(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        key: String,
        suite: SuiteName,
        threshold: u16,
        members: Vec<NodeId>,
    ) -> Result<PeerMessage, NodeError> {
        check_name(&key)?;
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
            members: members.iter().map(|m| pid(*m)).collect(),
        };
        let (phase, message) = with_suite!(suite, |C| {
            let (state, msg) = dkg::start::<C, _>(params, pid(me), &mut OsRng).map_err(core_err)?;
            (C::wrap::<Phases>(Phase::Dkg1(state)), msg.to_bytes())
        });
        self.open_session(
            &session,
            DkgSession {
                target: (key, 1),
                coordinator: from,
                members,
                started: Instant::now(),
                phase,
            },
            "DKG session already started",
        )?;
        Ok(PeerMessage::DkgRound1 {
            session,
            message: Hex(message),
        })
    }

    /// Start keeping run `session`; if it exists, refused with `exists`.
    pub(super) fn open_session(
        &self,
        session: &Hex32,
        s: DkgSession,
        exists: &str,
    ) -> Result<(), NodeError> {
        let mut d = lock(&self.dkg)?;
        d.retain(|_, s| s.started.elapsed() < DKG_TTL);
        if d.contains_key(&session.0) {
            return Err(NodeError::Conflict(exists.into()));
        }
        d.insert(session.0, s);
        Ok(())
    }

    /// Take run `session` out of the table for its next round (only its
    /// coordinator drives it).
    pub(super) fn take_session(
        &self,
        from: NodeId,
        session: &Hex32,
    ) -> Result<DkgSession, NodeError> {
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

    /// Put a run's state back between rounds.
    pub(super) fn keep_session(&self, session: &Hex32, s: DkgSession) -> Result<(), NodeError> {
        lock(&self.dkg)?.insert(session.0, s);
        Ok(())
    }

    pub(super) fn dkg_round2(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        round1: Vec<Envelope>,
    ) -> Result<PeerMessage, NodeError> {
        let DkgSession {
            target,
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
        let bad = self.faults.deal_bad_dkg_shares();
        let (phase, out) = with_suite!(phase.suite(), |C| {
            let phase = C::unwrap(phase)
                .ok_or_else(|| NodeError::Internal("session of another suite".into()))?;
            let (next, out) = advance::<C>(phase, &received, bad)?;
            (C::wrap::<Phases>(next), out)
        });
        let shares = seal_all(node, &session, out)?;
        self.keep_session(
            &session,
            DkgSession {
                target,
                coordinator,
                members,
                started,
                phase,
            },
        )?;
        Ok(PeerMessage::DkgShares { session, shares })
    }

    pub(super) fn dkg_finish(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        round2: Vec<Envelope>,
    ) -> Result<PeerMessage, NodeError> {
        let DkgSession {
            target,
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
            received.push((
                origin,
                open_mine(node, &session, origin, &shares, "node", "share")?,
            ));
        }
        let (share, group_key) = with_suite!(phase.suite(), |C| {
            let phase = C::unwrap(phase)
                .ok_or_else(|| NodeError::Internal("session of another suite".into()))?;
            finish::<C>(phase, &received)?
        });
        // Pending until the registry commits the run's record.
        let slot = pending_slot(&target.0, target.1, &session);
        self.store_pending(node, &session, coordinator, slot, &share, &group_key)?;
        let endorsement = node
            .keys()
            .sign(&key_statement(&target.0, target.1, &session, &group_key));
        Ok(PeerMessage::DkgDone {
            session,
            group_key: Hex(group_key),
            endorsement: Hex(endorsement.to_vec()),
        })
    }

    // ----- coordinator side -------------------------------------------------

    /// Run a DKG among the plan's members and commit the key. Members named
    /// as culprits are left out of a retry only while at least the
    /// threshold and the plan's `min_members` remain (without
    /// `min_members`, never).
    pub async fn create_key(
        &self,
        node: &Node,
        plan: NewKey,
        request: &httpsig::Request,
    ) -> Result<KeyInfo, NodeError> {
        let NewKey {
            name,
            suite,
            threshold,
            mut members,
            min_members,
        } = plan;
        let name = name.as_str();
        check_name(name)?;
        members.sort_unstable();
        members.dedup();
        if threshold < 2 || usize::from(threshold) > members.len() {
            return Err(NodeError::BadRequest(format!(
                "threshold must be between 2 and the number of members ({})",
                members.len()
            )));
        }
        if node.registry(|r| r.keys.records.contains_key(name)) {
            return Err(NodeError::Conflict(format!("a key named {name} exists")));
        }
        let mut infos = Self::infos(node, &members)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .run_dkg(node, name, suite, threshold, &infos, request)
                .await
            {
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
                    // Only with the caller's consent to fewer members.
                    let floor = min_members.map_or(usize::MAX, usize::from);
                    if infos.len() < usize::from(threshold)
                        || infos.len() < floor
                        || culprits.is_empty()
                    {
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

    pub(super) async fn run_dkg(
        &self,
        node: &Node,
        name: &str,
        suite: SuiteName,
        threshold: u16,
        infos: &BTreeMap<NodeId, NodeInfo>,
        request: &httpsig::Request,
    ) -> Result<KeyInfo, NodeError> {
        let session = random_session();
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
            let calls = infos.iter().map(|(m, i)| node.call_signed(*m, i, &abort));
            let _ = join_all(calls).await;
        }
        let (group_bytes, public_key, endorsements) = result?;
        // A hostile coordinator (test hook) commits another key's group key.
        let (group_bytes, public_key) = self
            .faults
            .substitute_group_key(node)
            .unwrap_or((group_bytes, public_key));
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
        node.commit(by_request(
            request,
            KeysCommand::PutKey {
                record,
                expected_epoch: None,
                endorsements,
            },
        ))
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
    /// its public key, with each member's endorsement of it.
    pub(crate) async fn dkg_rounds(
        &self,
        node: &Node,
        suite: SuiteName,
        infos: &BTreeMap<NodeId, NodeInfo>,
        session: Hex32,
        start: &PeerMessage,
    ) -> Result<(Vec<u8>, Vec<u8>, Vec<Endorsement>), NodeError> {
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
        let mut endorsements = Vec::with_capacity(done.len());
        for (m, (_, msg)) in &done {
            let PeerMessage::DkgDone {
                group_key,
                endorsement,
                ..
            } = msg
            else {
                return Err(NodeError::Misbehaved {
                    message: format!("node {m} answered DkgFinish with the wrong message"),
                    culprits: vec![*m],
                });
            };
            endorsements.push(Endorsement {
                node: *m,
                signature: endorsement.clone(),
            });
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
        Ok((group_bytes, public_key, endorsements))
    }
}
