//! Signing with a tree, the entry node's side (DESIGN.md §3.5; the
//! members' side is `seedtree::member`): the next leaf of the interval the
//! log handed this node, a lock quorum's locks on it for the client's
//! request, then the members' shares sealed to the client's one-time key,
//! each member's leaf path checked against the public root.

use keyquorum_core::httpsig;
use keyquorum_wire::control::{CommandResponse, Endorsement};
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::seedtree::{
    lock_quorum, lock_statement, SeedtreeCommand, SeedtreeLeaf, SeedtreeRecord, SignSeedtreeRequest,
};
use keyquorum_wire::{Hex32, NodeId};

use super::state::{self, ST_RULES};
use super::{ask_each, member, records, Seedtrees, RESERVE};
use crate::api::auth::{check_forwarded, forwarded};
use crate::cluster::Node;
use crate::error::NodeError;
use crate::keys::me_first;

impl Seedtrees {
    /// The next leaf this node may try for `tree` (reserving more through
    /// the log when its interval is used up).
    ///
    /// An interval is at most [`RESERVE`] leaves and at most 1/16 of what
    /// is left per member, so near the end of a tree each node takes one
    /// leaf at a time and few leaves are stranded in other nodes'
    /// intervals when the log runs out.
    async fn next_leaf(&self, node: &Node, record: &SeedtreeRecord) -> Result<u32, NodeError> {
        let tree = &record.name;
        let capacity = 1u64 << record.height;
        let mut leaves = self.leaves.lock().await;
        let slot = leaves.entry(tree.to_string()).or_insert((0, 0));
        // Leaves below the sharing in force are not signed (a reshare came
        // after this interval was handed out, or its cut was past the
        // leaves handed out): skipped, reserving again if need be (each
        // reservation moves past at most an interval of them).
        for _ in 0..4 {
            let first = node.registry(|r| r.seedtree.trees.get(tree).map_or(0, |e| e.first));
            slot.0 = slot.0.max(first.min(slot.1));
            if slot.0 < slot.1 {
                break;
            }
            let left = node.registry(|r| {
                r.seedtree
                    .trees
                    .get(tree)
                    .map_or(0, |e| capacity.saturating_sub(e.next))
            });
            let count = (left / (16 * record.members.len().max(1) as u64))
                .clamp(1, u64::from(RESERVE)) as u32;
            let first = match node
                .commit(node.statement(SeedtreeCommand::StReserve {
                    tree: tree.to_string(),
                    count,
                }))
                .await?
            {
                CommandResponse::Appended { index } => index,
                other => {
                    return Err(NodeError::Internal(format!(
                        "a reservation was answered {other:?}"
                    )))
                }
            };
            *slot = (first, (first + u64::from(count)).min(capacity));
        }
        let first = node.registry(|r| r.seedtree.trees.get(tree).map_or(0, |e| e.first));
        slot.0 = slot.0.max(first.min(slot.1));
        if slot.0 >= slot.1 {
            return Err(NodeError::Unavailable(format!(
                "no leaf of {tree} at or past the sharing in force was handed to this node"
            )));
        }
        let q = slot.0;
        slot.0 += 1;
        u32::try_from(q).map_err(|_| NodeError::Internal("a leaf past 2^32".into()))
    }

    /// Sign request `req` by client `client` with tree `name`: gather a
    /// lock quorum's locks on a fresh leaf and at least `t` sealed shares.
    pub async fn sign(
        &self,
        node: &Node,
        name: &str,
        req: SignSeedtreeRequest,
        (client, grant): (&str, &keyquorum_wire::control::Grant),
        request: &httpsig::Request,
    ) -> Result<SeedtreeLeaf, NodeError> {
        node.require_rules(ST_RULES, "signing trees")?;
        if !member::may_sign(grant, name) {
            return Err(NodeError::Forbidden(format!(
                "client {client} may not sign with {name}"
            )));
        }
        if req.message.0.len() > member::MAX_MESSAGE {
            return Err(NodeError::BadRequest(format!(
                "a message is at most {} bytes",
                member::MAX_MESSAGE
            )));
        }
        let e = node
            .registry_fresh(|r| r.seedtree.trees.get(name).cloned())
            .await
            .ok_or_else(|| NodeError::NotFound(format!("no tree named {name}")))?;
        let record = e.record;
        if !record.members.contains(&node.id()) {
            return Err(NodeError::Conflict(format!(
                "node {} is not a member of tree {name}: ask one of its members {:?}",
                node.id(),
                record.members
            )));
        }
        let quorum = lock_quorum(record.members.len(), record.threshold);
        let fwd = forwarded(request);
        let hash = records::request_hash(&check_forwarded(node, &fwd)?, &fwd);
        let mut failures: Vec<String> = Vec::new();
        let mut tried = std::collections::BTreeSet::new();
        for _ in 0..member::LEAVES_PER_REQUEST {
            let leaf = self.next_leaf(node, &record).await?;
            #[cfg(feature = "fault-injection")]
            let leaf = node.net_faults().seedtree_leaf().unwrap_or(leaf);
            if !tried.insert(leaf) {
                break;
            }
            match self
                .try_leaf(node, &record, leaf, quorum, &hash, &fwd)
                .await?
            {
                Tried::Released(out) => {
                    node.audit_event(client, "seedtree.sign", Some(name), &format!("leaf {leaf}"));
                    return Ok(out);
                }
                Tried::Locked => {
                    tracing::info!(tree = %name, leaf, "leaf locked to another request: skipped");
                    failures.push(format!("leaf {leaf} is locked to another request"));
                }
                Tried::Stale => {
                    // Members started after this node's interval was handed
                    // out, too many for a lock quorum: the rest of the
                    // interval is no better, take a fresh one (unless a
                    // concurrent request did already).
                    if let Some(slot) = self.leaves.lock().await.get_mut(name) {
                        if slot.0 == u64::from(leaf) + 1 {
                            slot.0 = slot.1;
                        }
                    }
                    failures.push(format!(
                        "leaf {leaf} was handed out before a member started"
                    ));
                }
            }
        }
        Err(NodeError::Conflict(format!(
            "no leaf of {name} could be locked to this request: {}",
            failures.join("; ")
        )))
    }

    /// Leaf `leaf` for this request, unless a member locked it to another
    /// request (the leaf is spent) or started after it was handed out.
    async fn try_leaf(
        &self,
        node: &Node,
        record: &SeedtreeRecord,
        leaf: u32,
        quorum: usize,
        hash: &[u8; 32],
        fwd: &keyquorum_wire::peer::ClientRequest,
    ) -> Result<Tried, NodeError> {
        let statement = lock_statement(&record.run, leaf, hash);
        let mut candidates = me_first(&record.members, node.id(), leaf as usize).into_iter();
        let mut locks: Vec<Endorsement> = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        let mut stale = false;
        while locks.len() < quorum {
            let ask: Vec<NodeId> = candidates.by_ref().take(quorum - locks.len()).collect();
            if ask.is_empty() {
                if stale {
                    return Ok(Tried::Stale);
                }
                return Err(NodeError::Unavailable(format!(
                    "{} of the {quorum} locks signing with {} needs: {}",
                    locks.len(),
                    record.name,
                    failures.join("; ")
                )));
            }
            for (m, r) in ask_each(node, &ask, |_| PeerMessage::StLock {
                tree: record.name.clone(),
                leaf,
                request: fwd.clone(),
            })
            .await
            {
                match r {
                    // (This node's own lock is its own signature: not
                    // checked, but only as a member of the record.)
                    Ok(PeerMessage::StLocked { signature })
                        if node.registry(|r| {
                            r.members.get(&m).is_some_and(|i| {
                                m == node.id()
                                    || crate::identity::verify(
                                        &i.identity,
                                        &statement,
                                        &signature.0,
                                    )
                            })
                        }) =>
                    {
                        locks.push(Endorsement { node: m, signature });
                    }
                    Err(NodeError::Conflict(why)) | Err(NodeError::Unavailable(why))
                        if why.contains(member::LOCKED) =>
                    {
                        return Ok(Tried::Locked);
                    }
                    // That member alone cannot lock it: ask another.
                    Err(NodeError::Conflict(why)) | Err(NodeError::Unavailable(why))
                        if why.contains(member::STALE) =>
                    {
                        stale = true;
                        failures.push(format!("node {m}: {why}"));
                    }
                    Ok(other) => failures.push(format!("node {m}: answered {}", kind(&other))),
                    Err(e) => failures.push(format!("node {m}: {e}")),
                }
            }
        }
        let lockers: Vec<NodeId> = locks.iter().map(|l| l.node).collect();
        let released = ask_each(node, &lockers, |_| PeerMessage::StRelease {
            tree: record.name.clone(),
            leaf,
            request: fwd.clone(),
            locks: locks.clone(),
        })
        .await;
        let top = state::identifier_of(record).map_err(NodeError::Internal)?;
        let layout = state::layout_of(record).map_err(NodeError::Internal)?;
        let public = keyquorum_core::lms::hss::HssPublicKey::from_bytes(&record.public_key.0)
            .map_err(NodeError::from_core)?;
        let mut shares = Vec::new();
        let mut public_data: Option<(Hex32, Vec<Hex32>)> = None;
        let mut culprits = Vec::new();
        for (m, r) in released {
            match r {
                Ok(PeerMessage::StReleased {
                    share,
                    leaf_node,
                    path,
                }) if share.node == m => {
                    // The leaf's node and path must lead to the public root.
                    if root_of(&top, layout.lms.leaves() + leaf, &leaf_node, &path)
                        != Some(public.top.root)
                    {
                        culprits.push(m);
                        continue;
                    }
                    public_data.get_or_insert((leaf_node, path));
                    shares.push(share);
                }
                Ok(_) => culprits.push(m),
                Err(e) => failures.push(format!("node {m}: {e}")),
            }
        }
        if !culprits.is_empty() {
            node.audit_failure(
                "peer",
                "seedtree.blame",
                Some(&record.name),
                &format!("nodes {culprits:?} answered a release with a path off the tree"),
            );
        }
        let Some((leaf_node, path)) =
            public_data.filter(|_| shares.len() >= usize::from(record.threshold))
        else {
            return Err(if culprits.is_empty() {
                NodeError::Unavailable(format!(
                    "{} of the {} shares of leaf {leaf} were released: {}",
                    shares.len(),
                    record.threshold,
                    failures.join("; ")
                ))
            } else {
                NodeError::Misbehaved {
                    message: format!("nodes {culprits:?} answered a release with a wrong leaf"),
                    culprits,
                }
            });
        };
        Ok(Tried::Released(SeedtreeLeaf {
            name: record.name.clone(),
            run: record.run,
            threshold: record.threshold,
            leaf,
            public_key: record.public_key.clone(),
            leaf_node,
            path,
            shares,
        }))
    }
}

/// What trying one leaf came to.
enum Tried {
    /// A lock quorum locked it to this request; the shares.
    Released(SeedtreeLeaf),
    /// A member locked it to another request.
    Locked,
    /// Members that started after it was handed out left too few for a
    /// lock quorum.
    Stale,
}

/// The root that node `r` with value `value` and `path` lead to (None if
/// the path is the wrong length).
fn root_of(id: &[u8; 16], mut r: u32, value: &Hex32, path: &[Hex32]) -> Option<[u8; 32]> {
    let mut h = value.0;
    for sib in path {
        h = if r.is_multiple_of(2) {
            keyquorum_core::lms::tree::interior_hash(id, r / 2, &h, &sib.0)
        } else {
            keyquorum_core::lms::tree::interior_hash(id, r / 2, &sib.0, &h)
        };
        r /= 2;
    }
    (r == 1).then_some(h)
}

fn kind(m: &PeerMessage) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_object().and_then(|o| o.keys().next().cloned()))
        .unwrap_or_default()
}
