//! Moving a tree's unused leaves to new holders (issue #23 item 2: a
//! drain's target), by redistribution of every leaf's shares
//! (Desmedt–Jajodia 1997; `keyquorum_core::lms::federation::RedealWeight`).
//!
//! 1. `StRedealOpen`: the coordinator fixes a plan (the tree's run and
//!    sharing now, the cut: the first leaf not handed out, the new holders,
//!    `t` current holders as dealers) and sends it with the admin's signed
//!    request to every dealer and new holder. Each checks the request
//!    (signature, freshness, sent to the coordinator, `POST
//!    /v1/seedtrees/{name}/reshare`, an admin) and, in its own replica
//!    after a read barrier, that the plan is the target an approved drain
//!    gives the tree (`authority::check_plan`, the check apply makes too).
//!    One request drives at most [`RESHARE_ATTEMPTS`] plans on a member
//!    (each attempt is a plan of its own); a member keeps one run per
//!    tree, and the same plan opened again (a second coordinator) goes on
//!    as it is.
//! 2. `StRedeal` per chunk of [`CHUNK`] leaves: each dealer re-deals its
//!    share of every leaf from the cut on (`t`-of-new-holders Shamir shares
//!    of its Lagrange-weighted share, the polynomials drawn from a secret
//!    of the dealer's, the plan and the chunk, so a chunk asked for again,
//!    after a restart too, is dealt the same and no two holders take parts
//!    of different dealings) and
//!    sends each holder its parts,
//!    HPKE-sealed, itself (`StRedealPart`, so the holder knows the dealer).
//!    The first dealer adds the chunk's public leaf nodes for a holder new
//!    to the tree, which checks every subtree it needs against the roots
//!    in the record before it keeps them (in a task of its own; the
//!    coordinator asks for the endorsement until it is ready).
//! 3. A holder adds every dealer's parts of a leaf and stores the sum under
//!    the new sharing's own vault prefix (`state::sharing_of`), beside the
//!    old one; `StRedealEndorse` once it holds every re-dealt leaf.
//! 4. The coordinator commits `StReshare` with every new holder's
//!    endorsement; each replica checks it again and puts the new sharing
//!    in force from the later of the cut and the leaves handed out by then
//!    (`SeedtreeState::reshare`). Until then the old sharing signs, and an
//!    interrupted run leaves the tree as it was.
//! 5. `StRedealDone` (and every start, `redeal::sweep`): each member
//!    erases the share rows of every sharing a newer one replaced in its
//!    replica: the key generation's once a reshare is in force, and each
//!    plan's (its `Pending` row names the sharing it replaces) once the
//!    tree's sharing is newer than that and is not the plan's. A plan for
//!    the sharing in force is never erased, finished or not: it may still
//!    be committed.
//!
//! Why no leaf signs twice across a reshare: the new sharing signs only
//! leaves from `first` on, which were not handed out when the commit was
//! applied; an honest holder locks a leaf only once the log handed it out
//! (`member::authorize`), so it never locked such a leaf under the old
//! sharing, and `t − 1` faulty old holders' old shares do not rebuild one.
//! Leaves handed out before the commit and unused are lost (at most an
//! interval per signing node). Like a builder at key generation, a dealer
//! is trusted for the leaves' *availability*: a dealer that deals something
//! else than its share makes the leaves fail their check when they are
//! rebuilt (`federation::sign_leaf`), never a wrong signature or a key.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use keyquorum_core::httpsig;
use keyquorum_core::lms::federation::Layout;
use keyquorum_wire::control::Endorsement;
use keyquorum_wire::peer::{ClientRequest, PeerMessage};
use keyquorum_wire::seedtree::{
    ReshareSeedtreeRequest, SeedtreeCommand, SeedtreeInfo, TreeResharePlan,
};
use keyquorum_wire::NodeId;

use super::authority::check_plan;
use super::redeal::{chunks, tree, RESHARE_ATTEMPTS};
use super::state::{layout_of, plan_id, RESHARE_RULES};
use super::{all_ok, ask_each, Seedtrees};
use crate::api::auth::{by_request, forwarded};
use crate::cluster::Node;
use crate::error::NodeError;

impl Seedtrees {
    /// Move tree `name`'s unused leaves to the holders `req` asks for (the
    /// target of an approved drain; the caller is an admin).
    pub async fn reshare(
        &self,
        node: &Node,
        name: &str,
        req: ReshareSeedtreeRequest,
        request: &httpsig::Request,
    ) -> Result<SeedtreeInfo, NodeError> {
        node.require_rules(RESHARE_RULES, "moving a tree's leaves")?;
        node.read_barrier().await?;
        let e = tree(node, name)?;
        let capacity = 1u64 << e.record.height;
        let cut = u32::try_from(e.next.max(e.first))
            .ok()
            .filter(|c| u64::from(*c) < capacity)
            .ok_or_else(|| {
                NodeError::Conflict(format!(
                    "{}: tree {name} has no leaf left to move",
                    super::state::EXHAUSTED
                ))
            })?;
        let mut members = req.members.clone();
        members.sort_unstable();
        members.dedup();
        // Dealers: holders not being drained first (they stay), then the
        // others; one that fails is replaced in the next attempt.
        let drains = node.registry(|r| r.operators.drains.clone());
        let mut order = e.record.members.clone();
        order.sort_by_key(|m| (drains.contains_key(m), *m != node.id(), *m));
        let fwd = forwarded(request);
        let t = usize::from(e.record.threshold);
        let mut failed: BTreeSet<NodeId> = BTreeSet::new();
        let mut last = None;
        for attempt in 0..RESHARE_ATTEMPTS as u32 {
            let mut dealers: Vec<NodeId> = order
                .iter()
                .filter(|m| !failed.contains(m))
                .take(t)
                .copied()
                .collect();
            if dealers.len() < t {
                break;
            }
            dealers.sort_unstable();
            let plan = TreeResharePlan {
                tree: name.to_string(),
                run: e.record.run,
                epoch: e.epoch,
                cut,
                threshold: e.record.threshold,
                members: members.clone(),
                dealers: dealers.clone(),
                attempt,
            };
            node.registry(|r| check_plan(r, &e, &req, &plan))
                .map_err(|why| NodeError::Forbidden(format!("tree reshare refused: {why}")))?;
            match self.run_plan(node, &plan, &fwd, &mut failed).await {
                Ok(endorsements) => {
                    node.commit(by_request(
                        request,
                        SeedtreeCommand::StReshare {
                            plan: Box::new(plan.clone()),
                            endorsements,
                        },
                    ))
                    .await?;
                    let mut everyone = e.record.members.clone();
                    everyone.extend(plan.members.iter().copied());
                    everyone.sort_unstable();
                    everyone.dedup();
                    for (m, r) in ask_each(node, &everyone, |_| PeerMessage::StRedealDone {
                        tree: name.to_string(),
                        epoch: plan.epoch + 1,
                    })
                    .await
                    {
                        if let Err(err) = r {
                            tracing::warn!(node = %m, error = %err, "old leaf shares not erased yet (erased at its next start)");
                        }
                    }
                    return Seedtrees::info(node, name);
                }
                Err(err) => {
                    tracing::info!(tree = %name, error = %err, "tree reshare attempt failed");
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            NodeError::Unavailable(format!("fewer than {t} holders of {name} could deal"))
        }))
    }

    /// One plan: open it on every dealer and new holder, have the dealers
    /// re-deal chunk by chunk, gather the new holders' endorsements (each
    /// once it checked and kept what it needs; asked again until a
    /// deadline). A dealer that does not open or deal is added to
    /// `failed` (the next attempt deals without it).
    async fn run_plan(
        &self,
        node: &Node,
        plan: &TreeResharePlan,
        fwd: &ClientRequest,
        failed: &mut BTreeSet<NodeId>,
    ) -> Result<Vec<Endorsement>, NodeError> {
        let mut everyone = plan.dealers.clone();
        everyone.extend(plan.members.iter().copied());
        everyone.sort_unstable();
        everyone.dedup();
        let opened = ask_each(node, &everyone, |_| PeerMessage::StRedealOpen {
            plan: Box::new(plan.clone()),
            request: fwd.clone(),
        })
        .await;
        for (m, r) in &opened {
            if plan.dealers.contains(m) && !matches!(r, Ok(PeerMessage::Ack)) {
                failed.insert(*m);
            }
        }
        all_ok(opened, "open the tree reshare")?;
        let id = plan_id(plan);
        let layout = layout_of_plan(node, plan)?;
        let all = chunks(&layout, plan.cut);
        for first in &all {
            let dealt = ask_each(node, &plan.dealers, |_| PeerMessage::StRedeal {
                plan: id,
                first: *first,
            })
            .await;
            for (m, r) in &dealt {
                if !matches!(r, Ok(PeerMessage::Ack)) {
                    failed.insert(*m);
                }
            }
            all_ok(dealt, "re-deal")?;
        }
        // A new holder rebuilds and keeps the subtrees it lacks in tasks
        // of its own: generous time for them (a node number a microsecond).
        let deadline =
            Instant::now() + Duration::from_secs(30 + u64::from(layout.lms.leaves()) / 100_000);
        let mut endorsements: Vec<Endorsement> = Vec::new();
        let mut waiting: Vec<NodeId> = plan.members.clone();
        loop {
            let mut still = Vec::new();
            for (m, r) in ask_each(node, &waiting, |_| PeerMessage::StRedealEndorse {
                plan: id,
            })
            .await
            {
                match r {
                    Ok(reply @ PeerMessage::StEndorsed { .. }) => {
                        endorsements.extend(super::keygen::endorsement(m, reply));
                    }
                    Err(NodeError::Unavailable(why)) if Instant::now() < deadline => {
                        tracing::debug!(node = %m, %why, "not ready to endorse the tree reshare");
                        still.push(m);
                    }
                    other => {
                        all_ok(vec![(m, other)], "endorse the tree reshare")?;
                        return Err(NodeError::Internal(format!(
                            "node {m} answered an endorsement request wrongly"
                        )));
                    }
                }
            }
            if still.is_empty() {
                return Ok(endorsements);
            }
            waiting = still;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn layout_of_plan(node: &Node, plan: &TreeResharePlan) -> Result<Layout, NodeError> {
    layout_of(&tree(node, &plan.tree)?.record).map_err(NodeError::Internal)
}
