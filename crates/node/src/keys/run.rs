//! What binds one DKG run, and what its coordinator checks itself
//! rather than take a member's word for: the run digest every member signs
//! in its round-2 message, the round-1 broadcasts, the shares an accused
//! dealer reveals, and members' refusals that blame someone else.

use std::collections::BTreeMap;

use keyquorum_core::codec::Decode;
use keyquorum_core::{dkg, SessionId};
use keyquorum_wire::api::SuiteName;
use keyquorum_wire::control::NodeInfo;
use keyquorum_wire::peer::{Envelope, PeerMessage, RevealedShare};
use keyquorum_wire::{Hex32, NodeId};

use super::suite::with_suite;
use super::{core_err, pid};
use crate::cluster::Node;
use crate::error::NodeError;

/// What identifies one DKG run beyond its session id (which its
/// coordinator picks, and could reuse): the round-1 transcript (session,
/// threshold, members, every broadcast), the key, its suite and the
/// coordinator. Every honest member of one run computes the same digest;
/// no two runs share one.
pub(super) fn run_digest(
    transcript: &[u8; 32],
    key: &str,
    suite: SuiteName,
    coordinator: NodeId,
) -> Hex32 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"keyquorum/dkg-run/v1");
    h.update(transcript);
    h.update((key.len() as u64).to_be_bytes());
    h.update(key.as_bytes());
    h.update([suite as u8]);
    h.update(u64::from(coordinator).to_be_bytes());
    Hex32(h.finalize().into())
}

/// [`gather_checked`] if `checked`, else [`gather`](super::gather).
pub(super) async fn gather_run(
    node: &Node,
    infos: &BTreeMap<NodeId, NodeInfo>,
    checked: bool,
    make: impl Fn(NodeId) -> Option<PeerMessage>,
) -> Result<BTreeMap<NodeId, (Envelope, PeerMessage)>, NodeError> {
    if checked {
        gather_checked(node, infos, make).await
    } else {
        super::gather(node, infos, make).await
    }
}

/// As [`gather`](super::gather), but a member's word that *another* member
/// misbehaved is not taken: the coordinator checks what it can itself
/// (round-1 broadcasts, revealed shares), and a member that refuses a step
/// blaming someone else, without a complaint the protocol can settle, is
/// named itself. Only the coordinator's own verdicts name others.
pub(super) async fn gather_checked(
    node: &Node,
    infos: &BTreeMap<NodeId, NodeInfo>,
    make: impl Fn(NodeId) -> Option<PeerMessage>,
) -> Result<BTreeMap<NodeId, (Envelope, PeerMessage)>, NodeError> {
    let me = node.id();
    super::gather_judged(node, infos, make, |m, e| match e {
        NodeError::Misbehaved { message, culprits }
            if m != me && culprits.iter().any(|c| *c != m) =>
        {
            NodeError::Misbehaved {
                message: format!(
                    "node {m} refused, blaming {culprits:?} with no evidence: {message}"
                ),
                culprits: vec![m],
            }
        }
        e => e,
    })
    .await
}

/// Check every member's signed round-1 broadcast of DKG run `session`
/// (run, degree, proof of knowledge), each decoded once; the members whose
/// broadcast fails are named. All good: the round-1 transcript every
/// member computes.
pub(super) fn check_broadcasts(
    suite: SuiteName,
    session: Hex32,
    threshold: u16,
    members: &[NodeId],
    round1: &BTreeMap<NodeId, (Envelope, PeerMessage)>,
) -> Result<[u8; 32], NodeError> {
    let params = dkg::DkgParams {
        session: SessionId(session.0),
        threshold,
        members: members.iter().map(|m| pid(*m)).collect(),
    };
    with_suite!(suite, |C| {
        let mut all = BTreeMap::new();
        let mut bad = Vec::new();
        for (m, (_, msg)) in round1 {
            let checked = match msg {
                PeerMessage::DkgRound1 {
                    session: sid,
                    message,
                } if *sid == session => dkg::Round1Message::<C>::from_bytes(&message.0)
                    .ok()
                    .filter(|r| dkg::check_round1(&params, pid(*m), r).is_ok()),
                _ => None,
            };
            match checked {
                Some(r) => {
                    all.insert(pid(*m), r);
                }
                None => bad.push(*m),
            }
        }
        if !bad.is_empty() {
            return Err(NodeError::Misbehaved {
                message: format!("the round-1 broadcasts of {bad:?} do not check out"),
                culprits: bad,
            });
        }
        dkg::round1_transcript(&params, &all).map_err(core_err)
    })
}

/// Whether `dealer`'s reveal holds, for every one of `accusers`, a share
/// on the commitment of the dealer's round-1 broadcast (`round1`, as the
/// coordinator relayed it).
pub(super) fn reveals_check_out(
    suite: SuiteName,
    dealer: NodeId,
    round1: Option<&PeerMessage>,
    accusers: &[NodeId],
    shares: &[RevealedShare],
) -> bool {
    let Some(PeerMessage::DkgRound1 { message, .. }) = round1 else {
        return false;
    };
    with_suite!(suite, |C| {
        let Ok(r1) = dkg::Round1Message::<C>::from_bytes(&message.0) else {
            return false;
        };
        accusers.iter().all(|i| {
            let revealed = shares
                .iter()
                .find(|s| s.to == *i)
                .and_then(|s| dkg::Round2Message::<C>::from_bytes(&s.message.0).ok());
            revealed.is_some_and(|m| dkg::check_revealed(pid(dealer), &r1, pid(*i), &m).is_ok())
        })
    })
}
