//! Distributed key generation across the members (core `dkg`, Pedersen
//! with proofs of knowledge), the participants' side, shared with refresh:
//! round-1 broadcasts, then round-2 shares sealed to each recipient, then
//! the new share stored pending and the group key endorsed. The
//! coordinator's relayed rounds ([`Keys::dkg_rounds`]) are in
//! `keys::create`.

use std::collections::BTreeSet;
use std::time::Instant;

use keyquorum_core::codec::Encode;
use keyquorum_core::{dkg, refresh, GroupKey, KeyShare, SessionId, Suite};
use keyquorum_wire::api::SuiteName;
use keyquorum_wire::control::key_statement;
use keyquorum_wire::peer::{Envelope, PeerMessage};
use keyquorum_wire::{Hex, Hex32, NodeId};
use rand_core::OsRng;

use super::run::run_digest;
use super::shares::pending_slot;
use super::suite::{with_suite, KeySuite, PerSuite};
use super::{
    core_err, decode, lock, open_mine, pid, seal_all, Keys, Outgoing, DKG_TTL,
    MAX_RUNS_PER_COORDINATOR, MAX_SEEN_SESSIONS,
};
use crate::cluster::Node;
use crate::error::NodeError;
use crate::names::check_key_name;

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
    /// DKG, from round 2 on: the run digest ([`super::run::run_digest`]).
    pub(super) run: Option<Hex32>,
}

/// What [`advance`] returns: the next phase, the plaintexts to seal, and a
/// DKG's round-1 transcript.
type Advanced<C> = (Phase<C>, Outgoing, Option<[u8; 32]>);

/// Round 2: take the others' round-1 broadcasts, deal this node's shares
/// (and, for a DKG, whose dealt shares are kept for complaints, the
/// round-1 transcript).
fn advance<C: KeySuite>(
    phase: Phase<C>,
    received: &[(NodeId, Vec<u8>)],
    bad_shares: bool,
) -> Result<Advanced<C>, NodeError> {
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
            let transcript = next.transcript();
            Ok((Phase::Dkg2(next), out, Some(transcript)))
        }
        Phase::Refresh1(mut state) => {
            for (origin, bytes) in received {
                let m = decode::<refresh::Round1Message<C>>(bytes, "round-1 message", *origin)?;
                state.receive(pid(*origin), m).map_err(core_err)?;
            }
            let (next, out) = state.advance().map_err(core_err)?;
            let out = out.into_iter().map(|(to, m)| (to, m.to_bytes())).collect();
            Ok((Phase::Refresh2(next), out, None))
        }
        Phase::Dkg2(_) | Phase::Refresh2(_) => {
            Err(NodeError::Conflict("session is not in round 1".into()))
        }
    }
}

/// A sealed share opened, or why it would not open.
type Opened = Result<zeroize::Zeroizing<Vec<u8>>, NodeError>;

/// What a member's last round comes to.
pub(super) enum Finished {
    /// Its new share and the group key, encoded.
    Done(zeroize::Zeroizing<Vec<u8>>, Vec<u8>),
    /// DKG only: the dealers it accuses, and its state until the complaints
    /// are settled.
    Complain(Box<super::Suited<Phases>>, Vec<NodeId>),
}

/// Finish: take the shares sealed to this node (each opened, or why it
/// would not open); this node's new share and the group key, encoded. In a
/// DKG a dealer whose own signed message held no usable share for this
/// node is accused instead (`accuse`: a false accusation, test hook only).
fn finish<C: KeySuite>(
    phase: Phase<C>,
    received: Vec<(NodeId, Opened)>,
    accuse: Option<NodeId>,
) -> Result<Finished, NodeError> {
    let (share, group): (KeyShare<C>, GroupKey<C>) = match phase {
        Phase::Dkg2(mut state) => {
            for (origin, plain) in received {
                let m = plain
                    .and_then(|p| decode::<dkg::Round2Message<C>>(&p, "round-2 share", origin));
                let m = match m {
                    Ok(m) if m.session == state.session() => m,
                    // The dealer's signed message holds nothing usable for
                    // this node: its fault alone, so it may be accused.
                    Ok(_) | Err(NodeError::Misbehaved { .. }) => {
                        state.dispute(pid(origin)).map_err(core_err)?;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                match state.receive(pid(origin), m) {
                    Ok(()) => {}
                    // The dealer signed this run's digest (checked by the
                    // caller) beside a share for another transcript, or two
                    // different shares: its fault alone.
                    Err(keyquorum_core::Error::Misbehaved { .. }) => {
                        state.dispute(pid(origin)).map_err(core_err)?;
                    }
                    Err(e) => return Err(core_err(e)),
                }
            }
            if let Some(a) = accuse {
                state.dispute(pid(a)).map_err(core_err)?;
            }
            let accused = state.accusations().map_err(core_err)?;
            if !accused.is_empty() {
                let accused = accused.into_iter().map(super::node_of).collect();
                return Ok(Finished::Complain(
                    Box::new(C::wrap::<Phases>(Phase::Dkg2(state))),
                    accused,
                ));
            }
            state.finish().map_err(core_err)?
        }
        Phase::Refresh2(mut state) => {
            for (origin, plain) in received {
                let m = decode::<refresh::Round2Message<C>>(&plain?, "round-2 share", origin)?;
                state.receive(pid(origin), m).map_err(core_err)?;
            }
            state.finish().map_err(core_err)?
        }
        Phase::Dkg1(_) | Phase::Refresh1(_) => {
            return Err(NodeError::Conflict("session is not in round 2".into()))
        }
    };
    Ok(Finished::Done(share.to_secret_bytes(), group.to_bytes()))
}

impl Keys {
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
                run: None,
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
        // A run id is used once: a coordinator that reuses one cannot
        // pass one run's signed messages off as another's.
        let mut seen = lock(&self.seen_sessions)?;
        seen.retain(|_, at| at.elapsed() < 2 * DKG_TTL);
        if seen.contains_key(&session.0) {
            return Err(NodeError::Conflict("that run id was used before".into()));
        }
        // (The run digest binds a run whatever its id: this is a backstop,
        // which must not fail closed for everyone.) Open runs are counted
        // per coordinator, so a member starting runs in a loop locks out
        // only its own.
        let by_coordinator = d
            .values()
            .filter(|x| x.coordinator == s.coordinator)
            .count();
        if by_coordinator >= MAX_RUNS_PER_COORDINATOR {
            return Err(NodeError::Unavailable(format!(
                "node {} coordinates {MAX_RUNS_PER_COORDINATOR} open runs here already",
                s.coordinator
            )));
        }
        if seen.len() >= MAX_SEEN_SESSIONS {
            // Oldest first: forgetting an id only weakens the backstop.
            if let Some(oldest) = seen.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) {
                seen.remove(&oldest);
            }
        }
        seen.insert(session.0, Instant::now());
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
            ..
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
        let suite = phase.suite();
        let (phase, out, transcript) = with_suite!(suite, |C| {
            let phase = C::unwrap(phase)
                .ok_or_else(|| NodeError::Internal("session of another suite".into()))?;
            let (next, out, transcript) = advance::<C>(phase, &received, bad)?;
            (C::wrap::<Phases>(next), out, transcript)
        });
        let run = transcript.map(|t| run_digest(&t, &target.0, suite, coordinator));
        if let Some(run) = &run {
            // What this node dealt, as it dealt it: its answer to a complaint.
            self.keep_dealt(
                node,
                run,
                super::Dealt {
                    key: target.0.clone(),
                    session,
                    coordinator,
                    members: members.clone(),
                    started: Instant::now(),
                    shares: out
                        .iter()
                        .map(|(to, m)| (super::node_of(*to), zeroize::Zeroizing::new(m.clone())))
                        .collect(),
                },
            )?;
        }
        let shares = seal_all(node, &session, out)?;
        self.keep_session(
            &session,
            DkgSession {
                target,
                coordinator,
                members,
                started,
                phase,
                run,
            },
        )?;
        Ok(PeerMessage::DkgShares {
            session,
            // Refresh: all zero (no complaints to bind).
            run: run.unwrap_or(Hex32([0; 32])),
            shares,
        })
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
            run,
            started,
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
                run: theirs,
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
            if run.is_some_and(|run| theirs != run) {
                // Not this dealer's fault alone (the coordinator relayed
                // another run's message, or a member equivocated in round
                // 1): no one is accused, nothing revealed; the run fails.
                return Err(NodeError::Conflict(format!(
                    "node {origin}'s round-2 message is for another run than this node's"
                )));
            }
            received.push((
                origin,
                open_mine(node, &session, origin, &shares, "node", "share"),
            ));
        }
        let (accuse, accuse_by_error) = self.faults.false_accusation();
        if let Some(j) = accuse_by_error.and_then(|j| NodeId::try_from(j).ok()) {
            return Err(NodeError::Misbehaved {
                message: format!("node {j} dealt a bad share (no evidence given)"),
                culprits: vec![j],
            });
        }
        let accuse = accuse
            .and_then(|a| NodeId::try_from(a).ok())
            .filter(|a| *a != me && members.contains(a));
        let finished = with_suite!(phase.suite(), |C| {
            let phase = C::unwrap(phase)
                .ok_or_else(|| NodeError::Internal("session of another suite".into()))?;
            finish::<C>(phase, received, accuse)?
        });
        match finished {
            Finished::Done(share, group_key) => {
                self.finished(node, session, coordinator, &target, &share, group_key)
            }
            Finished::Complain(phase, accused) => {
                let Some(digest) = run else {
                    return Err(NodeError::Internal("a complaint outside a DKG".into()));
                };
                self.keep_session(
                    &session,
                    DkgSession {
                        target,
                        coordinator,
                        members,
                        // The run's own start: complaining keeps its
                        // state no longer than the run may last.
                        started,
                        phase: *phase,
                        run,
                    },
                )?;
                Ok(PeerMessage::DkgComplaint {
                    session,
                    run: digest,
                    accused,
                })
            }
        }
    }

    /// A member's last step: store its new share, pending until the
    /// registry commits the run's record, and endorse the group key.
    pub(super) fn finished(
        &self,
        node: &Node,
        session: Hex32,
        coordinator: NodeId,
        target: &(String, u64),
        share: &[u8],
        group_key: Vec<u8>,
    ) -> Result<PeerMessage, NodeError> {
        let slot = pending_slot(&target.0, target.1, &session);
        self.store_pending(node, &session, coordinator, slot, share, &group_key)?;
        let endorsement = node
            .keys()
            .sign(&key_statement(&target.0, target.1, &session, &group_key));
        Ok(PeerMessage::DkgDone {
            session,
            group_key: Hex(group_key),
            endorsement: Hex(endorsement.to_vec()),
        })
    }
}
