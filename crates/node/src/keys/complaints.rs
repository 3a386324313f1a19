//! DKG complaints, settled (Gennaro–Jarecki–Krawczyk–Rabin, J. Cryptology
//! 2007, Fig. 2, step 1(c)–(d); core `dkg`): one member's word never
//! removes another.
//!
//! A member whose round-2 share from dealer `j` does not open, decode or
//! match `j`'s commitment answers `DkgFinish` with a signed `DkgComplaint`
//! instead of a share. The coordinator sends `j` the signed complaints
//! naming it (`DkgReveal`); `j` reveals, in the clear, the round-2 message
//! it dealt to each accuser — only against a complaint its accuser signed
//! for this run — and the coordinator checks each against `j`'s round-1
//! commitment:
//! - every reveal checks out: the accusation is **dismissed** and the
//!   accusers named in the audit log (`dkg.accusation_dismissed`); each
//!   accuser takes the revealed shares (`DkgResolve`, checking them itself)
//!   and finishes, so the key keeps all its members;
//! - a reveal is missing or off the commitment: the accusation is
//!   **upheld** and `j` is named; the caller's consent to fewer members
//!   (`min_members`) decides whether the run is retried without it.
//!
//! Why a reveal leaks nothing: `f_j(i)` in the clear teaches an adversary
//! something only if both `i` and `j` are honest; an honest `j`'s signed
//! message always holds a good share for `i`, and an honest `i` accuses
//! only a share in `j`'s own signed message (never a missing message, which
//! a coordinator could withhold, nor a transcript mismatch, which a member
//! that equivocated in round 1 could cause), so no honest pair ever reveals.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use keyquorum_core::codec::Encode;
use keyquorum_core::dkg;
use keyquorum_wire::api::SuiteName;
use keyquorum_wire::control::NodeInfo;
use keyquorum_wire::peer::{Envelope, PeerMessage, RevealedShare};
use keyquorum_wire::{Hex, Hex32, NodeId};
use zeroize::Zeroizing;

use super::dkg::{DkgSession, Phase};
use super::suite::{with_suite, KeySuite};
use super::{core_err, decode, lock, pid, Dealt, Keys, DKG_TTL};

/// At most this many complaints answered in one reveal (more than any run
/// has members).
const MAX_COMPLAINTS: usize = 1024;
use crate::cluster::Node;
use crate::error::NodeError;

impl Keys {
    /// Keep what this node dealt in the run with digest `run` (never
    /// replacing what it dealt in it before), and forget runs that are
    /// over: expired, or whose key is committed.
    pub(super) fn keep_dealt(
        &self,
        node: &Node,
        run: &Hex32,
        dealt: Dealt,
    ) -> Result<(), NodeError> {
        let mut d = lock(&self.dealt)?;
        d.retain(|_, x| {
            x.started.elapsed() < DKG_TTL
                && !node.registry(|r| {
                    r.keys
                        .records
                        .get(&x.key)
                        .is_some_and(|k| k.session == x.session)
                })
        });
        d.entry(run.0).or_insert(dealt);
        Ok(())
    }

    /// The coordinator of `session` gave it up: forget what was dealt.
    pub(super) fn drop_dealt(&self, from: NodeId, session: &Hex32) -> Result<(), NodeError> {
        lock(&self.dealt)?.retain(|_, x| x.session != *session || x.coordinator != from);
        Ok(())
    }

    /// An accused dealer answers the signed complaints naming it with the
    /// round-2 message it dealt to each accuser.
    pub(super) fn dkg_reveal(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        complaints: &[Envelope],
    ) -> Result<PeerMessage, NodeError> {
        let me = node.id();
        let d = lock(&self.dealt)?;
        let mut run_of: Option<Hex32> = None;
        let mut shares = Vec::with_capacity(complaints.len());
        let mut seen = BTreeSet::new();
        if complaints.is_empty() || complaints.len() > MAX_COMPLAINTS {
            return Err(NodeError::BadRequest(format!(
                "a reveal answers 1 to {MAX_COMPLAINTS} complaints"
            )));
        }
        for env in complaints {
            // Signed by its accuser, a member of the run (below), to the
            // coordinator asking.
            let origin = env.from;
            let info = node
                .node_info(origin)
                .ok_or_else(|| NodeError::BadRequest(format!("unknown node {origin}")))?;
            let msg = crate::cluster::peer::open_envelope(env, from, &info).map_err(|e| {
                NodeError::Forbidden(format!(
                    "a complaint from node {origin} does not verify: {e}"
                ))
            })?;
            let PeerMessage::DkgComplaint {
                session: sid,
                run,
                accused,
            } = msg
            else {
                return Err(NodeError::BadRequest("expected a DkgComplaint".into()));
            };
            // The run this node dealt in with that digest, under this
            // coordinator and id: the complaint's accuser signed for it.
            let dealt = d
                .get(&run.0)
                .filter(|x| x.started.elapsed() < DKG_TTL)
                .filter(|x| x.session == session && sid == session)
                .ok_or_else(|| {
                    NodeError::Forbidden(format!(
                        "node {origin}'s complaint is for no open run this node dealt in"
                    ))
                })?;
            if dealt.coordinator != from {
                return Err(NodeError::Forbidden(
                    "only the run's coordinator asks for a reveal".into(),
                ));
            }
            if *run_of.get_or_insert(run) != run {
                return Err(NodeError::BadRequest("complaints of different runs".into()));
            }
            let accuser = origin;
            if !dealt.members.contains(&accuser) || accuser == me || !accused.contains(&me) {
                return Err(NodeError::Forbidden(format!(
                    "node {accuser}'s complaint does not accuse node {me} in this run"
                )));
            }
            if !seen.insert(accuser) {
                continue;
            }
            let message = dealt.shares.get(&accuser).ok_or_else(|| {
                NodeError::Internal(format!("no share was dealt to node {accuser}"))
            })?;
            shares.push(RevealedShare {
                to: accuser,
                message: Hex(message.to_vec()),
            });
        }
        if shares.is_empty() {
            return Err(NodeError::BadRequest(
                "a reveal answers at least one complaint".into(),
            ));
        }
        tracing::info!(session = %hex::encode(session.0), accusers = ?seen, "revealed DKG shares on complaint");
        Ok(PeerMessage::DkgRevealed { session, shares })
    }

    /// An accuser takes the shares its accused dealers revealed (each
    /// checked against the dealer's commitment) and finishes the run.
    pub(super) fn dkg_resolve(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        reveals: &[Envelope],
    ) -> Result<PeerMessage, NodeError> {
        let DkgSession {
            target,
            coordinator,
            members,
            phase,
            ..
        } = self.take_session(from, &session)?;
        let me = node.id();
        let mut revealed = Vec::with_capacity(reveals.len());
        for env in reveals {
            let (dealer, msg) = self.relayed(node, coordinator, &members, env)?;
            let PeerMessage::DkgRevealed {
                session: sid,
                shares,
            } = msg
            else {
                return Err(NodeError::BadRequest("expected a DkgRevealed".into()));
            };
            if sid != session {
                return Err(NodeError::BadRequest("a reveal from another run".into()));
            }
            let share =
                shares
                    .into_iter()
                    .find(|s| s.to == me)
                    .ok_or_else(|| NodeError::Misbehaved {
                        message: format!("node {dealer} revealed no share for node {me}"),
                        culprits: vec![dealer],
                    })?;
            revealed.push((dealer, Zeroizing::new(share.message.0)));
        }
        let (share, group_key) = with_suite!(phase.suite(), |C| {
            let phase = C::unwrap(phase)
                .ok_or_else(|| NodeError::Internal("session of another suite".into()))?;
            let Phase::Dkg2(mut state) = phase else {
                return Err(NodeError::Conflict(
                    "this node has no complaint to settle in that run".into(),
                ));
            };
            for (dealer, bytes) in &revealed {
                let m = decode::<dkg::Round2Message<C>>(bytes, "revealed share", *dealer)?;
                state.resolve(pid(*dealer), m).map_err(core_err)?;
            }
            let open = state.accusations().map_err(core_err)?;
            if !open.is_empty() {
                return Err(NodeError::BadRequest(format!(
                    "no reveal from {:?}",
                    open.into_iter().map(super::node_of).collect::<Vec<_>>()
                )));
            }
            let (share, group) = state.finish().map_err(core_err)?;
            (share.to_secret_bytes(), group.to_bytes())
        });
        self.finished(node, session, coordinator, &target, &share, group_key)
    }

    /// Coordinator: settle the complaints of DKG run `session` (accuser →
    /// its signed complaint and whom it accuses). Dismissed: the accusers'
    /// `DkgDone` answers. Upheld: the accused dealers, named.
    #[allow(
        clippy::too_many_arguments,
        reason = "the run's parts the settlement reads"
    )]
    pub(super) async fn settle_complaints(
        &self,
        node: &Node,
        key: &str,
        suite: SuiteName,
        infos: &BTreeMap<NodeId, NodeInfo>,
        session: Hex32,
        run: Hex32,
        round1: &BTreeMap<NodeId, (Envelope, PeerMessage)>,
        complaints: BTreeMap<NodeId, (Envelope, PeerMessage)>,
    ) -> Result<BTreeMap<NodeId, (Envelope, PeerMessage)>, NodeError> {
        // A complaint the accused would rightly refuse is the accuser's
        // fault, not the accused's.
        let mut by_accused: BTreeMap<NodeId, Vec<NodeId>> = BTreeMap::new();
        let mut accusations: BTreeMap<NodeId, (Envelope, Vec<NodeId>)> = BTreeMap::new();
        for (accuser, (env, msg)) in complaints {
            let accused = match msg {
                PeerMessage::DkgComplaint {
                    session: sid,
                    run: theirs,
                    accused,
                } if sid == session && theirs == run => accused,
                _ => vec![],
            };
            let distinct: BTreeSet<NodeId> = accused.iter().copied().collect();
            if accused.is_empty()
                || distinct.len() != accused.len()
                || accused
                    .iter()
                    .any(|j| *j == accuser || !infos.contains_key(j))
            {
                return Err(NodeError::Misbehaved {
                    message: format!("node {accuser} sent a malformed complaint"),
                    culprits: vec![accuser],
                });
            }
            accusations.insert(accuser, (env, accused));
        }
        let complaints = accusations;
        for (accuser, (_, accused)) in &complaints {
            for j in accused {
                by_accused.entry(*j).or_default().push(*accuser);
            }
        }
        let accusers: Vec<NodeId> = complaints.keys().copied().collect();
        let calls = by_accused.iter().map(|(j, from)| {
            let msg = PeerMessage::DkgReveal {
                session,
                complaints: from
                    .iter()
                    .filter_map(|i| complaints.get(i).map(|(env, _)| env.clone()))
                    .collect(),
            };
            let info = &infos[j];
            async move { (*j, node.call_signed(*j, info, &msg).await) }
        });
        let mut upheld = Vec::new();
        let mut reveals: BTreeMap<NodeId, Envelope> = BTreeMap::new();
        for (j, answer) in join_all(calls).await {
            let answered = match &answer {
                Ok((
                    env,
                    PeerMessage::DkgRevealed {
                        session: sid,
                        shares,
                    },
                )) if *sid == session => {
                    let accusers = by_accused.get(&j).map_or(&[][..], Vec::as_slice);
                    let round1 = round1.get(&j).map(|(_, m)| m);
                    let good = super::run::reveals_check_out(suite, j, round1, accusers, shares);
                    good.then(|| env.clone())
                }
                _ => None,
            };
            match answered {
                Some(env) => {
                    reveals.insert(j, env);
                }
                None => upheld.push(j),
            }
        }
        if !upheld.is_empty() {
            return Err(NodeError::Misbehaved {
                message: format!(
                    "accusations by {accusers:?} upheld: {upheld:?} revealed no share on \
                     their commitment"
                ),
                culprits: upheld,
            });
        }
        node.audit_failure(
            "peer",
            "dkg.accusation_dismissed",
            Some(key),
            &format!(
                "accusers {accusers:?} accused {:?}; every accused revealed shares on its \
                 commitment (the accusation was false, or the dealer sent a bad share and \
                 revealed a good one; the run is correct either way)",
                by_accused.keys().collect::<Vec<_>>()
            ),
        );
        tracing::warn!(key, ?accusers, "DKG accusations dismissed");
        let resolve_infos: BTreeMap<NodeId, NodeInfo> =
            accusers.iter().map(|i| (*i, infos[i].clone())).collect();
        let done = super::run::gather_checked(node, &resolve_infos, |i| {
            Some(PeerMessage::DkgResolve {
                session,
                reveals: complaints
                    .get(&i)
                    .into_iter()
                    .flat_map(|(_, accused)| accused.iter())
                    .filter_map(|j| reveals.get(j).cloned())
                    .collect(),
            })
        })
        .await?;
        Ok(done)
    }
}
