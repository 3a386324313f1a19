//! Repair over the peer API: rebuild one member's lost share of a key from
//! `t` helpers, none of whom learns it (core `repair`, Laing–Stinson
//! enrollment as in frost-core, made verifiable with public delta images).
//!
//! ```text
//! coordinator ──RepairStart──► each helper i      (split ζ_i·s_i into deltas)
//!             ◄─RepairImages── images D_i*, deltas sealed to each helper j
//! coordinator ──RepairSum────► each helper j      (the others' signed images+deltas)
//!             ◄─RepairSigma─── σ_j sealed to the target
//! coordinator ──RepairFinish─► target r           (every signed images and σ)
//!             ◄─Ack────────── share checked against Y_r and stored
//! ```
//!
//! The coordinator relays envelopes its authors signed and secrets sealed
//! to their recipients, so it learns nothing and cannot forge. The target
//! stores the rebuilt share only if it holds none for that generation and
//! only after it matches the target's public share in the registry, so a
//! coordinator cannot overwrite or corrupt a share by asking for a repair.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use keyquorum_core::codec::Encode;
use keyquorum_core::repair::{self, RepairParams};
use keyquorum_core::{KeyShare, ParticipantId, SessionId};
use keyquorum_store::Table;
use keyquorum_wire::control::KeyRecord;
use keyquorum_wire::peer::{Envelope, PeerMessage, RepairPlan, Sealed};
use keyquorum_wire::{Hex, Hex32, NodeId};
use rand_core::OsRng;

use super::shares::share_slot;
use super::suite::{with_suite, KeySuite, PerSuite, Suited};
use super::{
    core_err, decode, gather, key_record, lock, node_of, open_mine, pid, random_session, record_at,
    seal_all, Keys,
};
use crate::cluster::peer::{open_secret, seal_secret};
use crate::cluster::Node;
use crate::error::NodeError;

/// How long a helper keeps an unfinished repair.
const REPAIR_TTL: Duration = Duration::from_secs(300);

/// A helper's state between `RepairStart` and `RepairSum`.
pub(super) struct HelperSession {
    coordinator: NodeId,
    plan: RepairPlan,
    started: Instant,
    phase: Suited<Helpers>,
}

/// `repair::Helper<C>` as a family over suites.
pub(super) struct Helpers;
impl PerSuite for Helpers {
    type Of<C: KeySuite> = repair::Helper<C>;
}

fn params(plan: &RepairPlan, session: &Hex32) -> Result<RepairParams, NodeError> {
    let helpers = plan
        .helpers
        .iter()
        .map(|h| pid(*h))
        .collect::<BTreeSet<ParticipantId>>();
    if helpers.len() != plan.helpers.len() {
        return Err(NodeError::BadRequest("repeated helper".into()));
    }
    Ok(RepairParams {
        session: SessionId(session.0),
        helpers,
        target: pid(plan.target),
    })
}

/// The current record of `plan.key`, checked against the plan.
fn checked_record(node: &Node, plan: &RepairPlan) -> Result<KeyRecord, NodeError> {
    let record = record_at(node, &plan.key, plan.epoch)?;
    let members: BTreeSet<NodeId> = record.members.iter().copied().collect();
    if !members.contains(&plan.target)
        || plan
            .helpers
            .iter()
            .any(|h| !members.contains(h) || *h == plan.target)
        || plan.helpers.len() < usize::from(record.threshold)
    {
        return Err(NodeError::BadRequest(
            "helpers must be at least t members other than the target".into(),
        ));
    }
    Ok(record)
}

impl Keys {
    /// Helper, step 1.
    pub(super) fn repair_start(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        plan: &RepairPlan,
    ) -> Result<PeerMessage, NodeError> {
        let record = checked_record(node, plan)?;
        if !plan.helpers.contains(&node.id()) {
            return Err(NodeError::BadRequest("this node is not a helper".into()));
        }
        let p = params(plan, &session)?;
        let share_bytes = self.share_bytes(node, &record)?;
        let (phase, images, out) = with_suite!(record.suite, |C| {
            let group = (*self.group_key::<C>(&record)?).clone();
            let share = KeyShare::<C>::from_secret_bytes(&share_bytes)
                .map_err(|e| NodeError::Internal(e.to_string()))?;
            let (helper, images, deltas) =
                repair::Helper::<C>::start(p, group, &share, &mut OsRng).map_err(core_err)?;
            let out: Vec<(ParticipantId, Vec<u8>)> = deltas
                .into_iter()
                .map(|(to, d)| (to, d.to_bytes()))
                .collect();
            (C::wrap::<Helpers>(helper), images.to_bytes(), out)
        });
        let deltas = seal_all(node, &session, out)?;
        let mut r = lock(&self.repairs)?;
        r.retain(|_, s| s.started.elapsed() < REPAIR_TTL);
        if r.contains_key(&session.0) {
            return Err(NodeError::Conflict("repair session exists".into()));
        }
        r.insert(
            session.0,
            HelperSession {
                coordinator: from,
                plan: plan.clone(),
                started: Instant::now(),
                phase,
            },
        );
        Ok(PeerMessage::RepairImages {
            session,
            images: Hex(images),
            deltas,
        })
    }

    /// Helper, step 2.
    pub(super) fn repair_sum(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        round1: &[Envelope],
    ) -> Result<PeerMessage, NodeError> {
        let s = {
            let mut r = lock(&self.repairs)?;
            match r.get(&session.0) {
                Some(s) if s.coordinator == from => r.remove(&session.0),
                Some(_) => None,
                None => None,
            }
        }
        .ok_or_else(|| NodeError::NotFound("no such repair session".into()))?;
        let record = checked_record(node, &s.plan)?;
        let me = node.id();
        let mut images = Vec::new();
        let mut deltas = Vec::new();
        for env in round1 {
            let (origin, msg) = self.relayed(node, s.coordinator, &s.plan.helpers, env)?;
            if origin == me {
                return Err(NodeError::BadRequest(
                    "relayed this node's own message".into(),
                ));
            }
            let PeerMessage::RepairImages {
                session: sid,
                images: im,
                deltas: ds,
            } = msg
            else {
                return Err(NodeError::BadRequest("expected RepairImages".into()));
            };
            if sid != session {
                return Err(NodeError::BadRequest("message from another session".into()));
            }
            let delta = open_mine(node, &session, origin, &ds, "helper", "delta")?;
            images.push((origin, im.0));
            deltas.push((origin, delta));
        }
        let (target, sigma) = with_suite!(record.suite, |C| {
            let mut helper = C::unwrap(s.phase)
                .ok_or_else(|| NodeError::Conflict("repair session of another suite".into()))?;
            for (origin, bytes) in &images {
                let m = decode::<repair::ImagesMessage<C>>(bytes, "repair images", *origin)?;
                helper.receive_images(pid(*origin), m).map_err(core_err)?;
            }
            for (origin, plain) in &deltas {
                let m = decode::<repair::DeltaMessage<C>>(plain, "repair delta", *origin)?;
                helper.receive_delta(pid(*origin), m).map_err(core_err)?;
            }
            let (target, sigma) = helper.finish().map_err(core_err)?;
            (node_of(target), sigma.to_bytes())
        });
        let info = node
            .node_info(target)
            .ok_or_else(|| NodeError::Unavailable(format!("no address for node {target}")))?;
        let mut sigma = sigma;
        let sealed = seal_secret(&session, me, target, &info, &sigma);
        zeroize::Zeroize::zeroize(&mut sigma);
        Ok(PeerMessage::RepairSigma {
            session,
            sigma: sealed?,
        })
    }

    /// Target, step 3.
    pub(super) fn repair_finish(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        plan: &RepairPlan,
        round1: &[Envelope],
        round2: &[Envelope],
    ) -> Result<PeerMessage, NodeError> {
        let record = checked_record(node, plan)?;
        let me = node.id();
        if plan.target != me {
            return Err(NodeError::BadRequest("this node is not the target".into()));
        }
        let slot = share_slot(&record.name, record.epoch);
        if node.vault().get(Table::Shares, &slot)?.is_some() {
            return Err(NodeError::Conflict(
                "this node holds its share; nothing to repair".into(),
            ));
        }
        let p = params(plan, &session)?;
        let mut images = BTreeMap::new();
        for env in round1 {
            let (origin, msg) = self.relayed(node, from, &plan.helpers, env)?;
            match msg {
                PeerMessage::RepairImages {
                    session: sid,
                    images: im,
                    ..
                } if sid == session => {
                    images.insert(origin, im.0);
                }
                _ => return Err(NodeError::BadRequest("expected RepairImages".into())),
            }
        }
        let mut sigmas = BTreeMap::new();
        for env in round2 {
            let (origin, msg) = self.relayed(node, from, &plan.helpers, env)?;
            match msg {
                PeerMessage::RepairSigma {
                    session: sid,
                    sigma,
                } if sid == session => {
                    let sealed: Sealed = sigma;
                    if sealed.to != me {
                        return Err(NodeError::BadRequest("sigma sealed to another node".into()));
                    }
                    sigmas.insert(
                        origin,
                        open_secret(node.keys(), &session, origin, me, &sealed)?,
                    );
                }
                _ => return Err(NodeError::BadRequest("expected RepairSigma".into())),
            }
        }
        let share = with_suite!(record.suite, |C| {
            let group = (*self.group_key::<C>(&record)?).clone();
            let mut target = repair::Target::<C>::new(p, group).map_err(core_err)?;
            for (origin, bytes) in &images {
                let m = decode::<repair::ImagesMessage<C>>(bytes, "repair images", *origin)?;
                target.receive_images(pid(*origin), m).map_err(core_err)?;
            }
            for (origin, plain) in &sigmas {
                let m = decode::<repair::SigmaMessage<C>>(plain, "repair sigma", *origin)?;
                target.receive_sigma(pid(*origin), m).map_err(core_err)?;
            }
            // Checked against this member's public share before it is kept.
            target.finish().map_err(core_err)?.to_secret_bytes()
        });
        node.vault().put(Table::Shares, &slot, &share)?;
        node.audit_event(
            &format!("peer:{from}"),
            "key.repair.restored",
            Some(&record.name),
            "ok",
        );
        Ok(PeerMessage::Ack)
    }

    /// Rebuild `target`'s share of `name` from `t` other holders.
    pub async fn repair_key(
        &self,
        node: &Node,
        name: &str,
        target: NodeId,
    ) -> Result<(), NodeError> {
        let record = key_record(node, name).await?;
        if !record.members.contains(&target) {
            return Err(NodeError::BadRequest(format!(
                "node {target} holds no share of {name}"
            )));
        }
        let helpers: Vec<NodeId> = record
            .members
            .iter()
            .copied()
            .filter(|m| *m != target)
            .take(usize::from(record.threshold))
            .collect();
        let session = random_session();
        let plan = RepairPlan {
            key: name.to_string(),
            epoch: record.epoch,
            helpers: helpers.clone(),
            target,
        };
        let helper_infos = Self::infos(node, &helpers)?;
        let round1 = gather(node, &helper_infos, |_| {
            Some(PeerMessage::RepairStart {
                session,
                plan: plan.clone(),
            })
        })
        .await?;
        let round2 = gather(node, &helper_infos, |h| {
            Some(PeerMessage::RepairSum {
                session,
                round1: round1
                    .iter()
                    .filter(|(k, _)| **k != h)
                    .map(|(_, (e, _))| e.clone())
                    .collect(),
            })
        })
        .await?;
        let info = node
            .node_info(target)
            .ok_or_else(|| NodeError::Unavailable(format!("no address for node {target}")))?;
        let finish = PeerMessage::RepairFinish {
            session,
            plan,
            round1: round1.values().map(|(e, _)| e.clone()).collect(),
            round2: round2.values().map(|(e, _)| e.clone()).collect(),
        };
        match node.call_signed(target, &info, &finish).await?.1 {
            PeerMessage::Ack => Ok(()),
            _ => Err(NodeError::Misbehaved {
                message: format!("node {target} answered RepairFinish wrongly"),
                culprits: vec![target],
            }),
        }
    }
}
