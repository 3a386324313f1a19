//! Who is in the cluster: looking a node up, the member list, initialising
//! a cluster, and Raft's membership following the membership record the
//! operators approve (`machine::roster`; openraft joint consensus).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use keyquorum_wire::control::NodeInfo;
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::NodeId;
use openraft::error::RaftError;

use super::Node;
use crate::error::NodeError;

impl Node {
    /// A node's address and keys, if this node trusts it as a member: from
    /// the registry's members (in the membership record the operators
    /// approved and in Raft's membership, with the record's keys: a leader
    /// can neither add a member of its own nor swap a member's keys). Before
    /// the record is in force (a cluster not yet initialised, or one made
    /// before the record), also from Raft's membership (a node whose
    /// joining is not applied yet) and the bootstrap peers in the config.
    pub fn node_info(&self, id: NodeId) -> Option<NodeInfo> {
        if id == self.0.id {
            return Some(self.info());
        }
        let (info, in_force) = self.registry(|r| (r.members.get(&id).cloned(), r.roster.in_force));
        if info.is_some() || in_force {
            return info;
        }
        self.raft_node_info(id)
            .or_else(|| self.0.bootstrap.get(&id).cloned())
    }

    /// Whether `identity` is the identity key of a node this node might
    /// take a peer message from (a member, a node in Raft's membership, a
    /// bootstrap peer): the peer endpoint checks it before it reads a body.
    pub(crate) fn is_known_identity(&self, identity: &[u8; 32]) -> bool {
        let is = |i: &NodeInfo| i.identity.0 == *identity;
        let (member, in_force) = self.registry(|r| (r.members.values().any(is), r.roster.in_force));
        if member {
            return true;
        }
        // As `node_info` and the peer endpoint take them: Raft's membership
        // (for Raft's own messages) but not a node the record removed;
        // the config's bootstrap peers only before the record is in force.
        let raft = self
            .0
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .find(|(_, i)| is(i))
            .map(|(id, _)| *id);
        if let Some(id) = raft.and_then(|id| NodeId::try_from(id).ok()) {
            return !self.was_removed(id);
        }
        !in_force && self.0.bootstrap.values().any(is)
    }

    /// A node's address and keys as Raft's membership names it (not
    /// trusted as a member: for Raft's own messages only).
    pub(crate) fn raft_node_info(&self, id: NodeId) -> Option<NodeInfo> {
        let m = self.0.raft.metrics().borrow().membership_config.clone();
        m.membership().get_node(&u64::from(id)).cloned()
    }

    /// Whether the membership record removed `id` (its last change).
    pub(crate) fn was_removed(&self, id: NodeId) -> bool {
        self.registry(|r| r.roster.removed(id))
    }

    /// Every member this node trusts (voters and learners; see
    /// [`Self::node_info`]), and whether it votes.
    pub fn members(&self) -> Vec<(NodeId, NodeInfo, bool)> {
        if let Some(members) = self.registry(|r| {
            r.roster.in_force.then(|| {
                r.members
                    .iter()
                    .map(|(id, info)| (*id, info.clone(), r.voters.contains(id)))
                    .collect()
            })
        }) {
            return members;
        }
        let m = self.0.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<u64> = m.membership().voter_ids().collect();
        m.membership()
            .nodes()
            .filter_map(|(id, info)| match NodeId::try_from(*id) {
                Ok(node) => Some((node, info.clone(), voters.contains(id))),
                Err(e) => {
                    // Only a cluster set up before node ids were checked
                    // could hold one; it cannot be addressed.
                    tracing::warn!(error = %e, "membership holds an id that is not a node id");
                    None
                }
            })
            .collect()
    }

    /// Initialize a new cluster with these voters (call on one node once).
    pub async fn initialize(&self, members: BTreeMap<NodeId, NodeInfo>) -> Result<(), NodeError> {
        let members: BTreeMap<u64, NodeInfo> = members
            .into_iter()
            .map(|(id, i)| (u64::from(id), i))
            .collect();
        match self.0.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(NodeError::Internal(format!("initialize: {e}"))),
        }
    }

    /// Test hook: stop (or resume) making Raft's membership follow the
    /// membership record here, as a hostile leader would.
    #[cfg(feature = "fault-injection")]
    pub fn hold_membership(&self, hold: bool) {
        self.0
            .hold_membership
            .store(hold, std::sync::atomic::Ordering::Relaxed);
    }

    /// As the leader, take one step to make Raft's membership what the
    /// membership record says (DESIGN.md §4 item 3: the Raft voter set
    /// follows the record): add an approved node as a learner (once it
    /// answers as its identity) and promote it, demote or remove a node
    /// the record does not list. Returns whether it changed anything.
    pub(crate) async fn follow_roster(&self) -> Result<bool, NodeError> {
        if self.leader() != Some(self.0.id)
            || self
                .0
                .hold_membership
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(false);
        }
        let Some(roster) = self.registry(|r| r.roster.in_force.then(|| r.roster.nodes.clone()))
        else {
            return Ok(false);
        };
        let raft = &self.0.raft;
        let m = raft.metrics().borrow().membership_config.clone();
        let joint = m.membership().get_joint_config().len() > 1;
        let voters: BTreeSet<u64> = m.membership().voter_ids().collect();
        let nodes: BTreeMap<u64, NodeInfo> = m
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.clone()))
            .collect();
        let err = |what: &str, e: String| NodeError::Unavailable(format!("{what}: {e}"));
        let mut unreachable = Vec::new();
        // Additions first (a replacement joins before the node it
        // replaces leaves), each only once it answers, signed by the
        // approved identity; one that does not is skipped for now.
        if !joint {
            for (id, n) in roster
                .iter()
                .filter(|(id, _)| !nodes.contains_key(&u64::from(**id)))
            {
                match self.call_signed(*id, &n.info, &PeerMessage::Ping).await {
                    Ok((_, PeerMessage::Pong)) => {
                        raft.add_learner(u64::from(*id), n.info.clone(), true)
                            .await
                            .map_err(|e| err("add learner", e.to_string()))?;
                        self.audit_event(
                            "leader",
                            "cluster.member.add",
                            Some(&id.to_string()),
                            "ok",
                        );
                        return Ok(true);
                    }
                    Ok(_) => unreachable.push(format!("node {id} answered a ping wrongly")),
                    Err(e) => unreachable.push(format!(
                        "node {id} at {} did not answer as its identity: {e}",
                        n.info.addr
                    )),
                }
            }
            // A record node Raft names with other keys or address: the
            // record's.
            let differs: BTreeMap<u64, NodeInfo> = roster
                .iter()
                .filter_map(|(id, n)| {
                    let raft_id = u64::from(*id);
                    (nodes.get(&raft_id).is_some_and(|i| *i != n.info))
                        .then(|| (raft_id, n.info.clone()))
                })
                .collect();
            if !differs.is_empty() {
                raft.change_membership(openraft::ChangeMembers::SetNodes(differs), false)
                    .await
                    .map_err(|e| err("restore node keys", e.to_string()))?;
                self.audit_event("leader", "cluster.member.keys", None, "ok");
                return Ok(true);
            }
        }
        // The voters: the record's voters Raft has (also what finishes a
        // joint configuration left behind).
        let wanted: BTreeSet<u64> = roster
            .iter()
            .filter(|(_, n)| n.voter)
            .map(|(id, _)| u64::from(*id))
            .filter(|id| nodes.contains_key(id))
            .collect();
        if (joint || wanted != voters) && !wanted.is_empty() {
            raft.change_membership(wanted, true)
                .await
                .map_err(|e| err("change voters", e.to_string()))?;
            self.audit_event("leader", "cluster.member.voters", None, "ok");
            return Ok(true);
        }
        let strangers: BTreeSet<u64> = nodes
            .keys()
            .filter(|id| NodeId::try_from(**id).map_or(true, |n| !roster.contains_key(&n)))
            .filter(|id| !voters.contains(id))
            .copied()
            .collect();
        if !strangers.is_empty() {
            let list = format!("{strangers:?}");
            raft.change_membership(openraft::ChangeMembers::RemoveNodes(strangers), false)
                .await
                .map_err(|e| err("remove nodes", e.to_string()))?;
            self.audit_event("leader", "cluster.member.remove", Some(&list), "ok");
            return Ok(true);
        }
        match unreachable.is_empty() {
            true => Ok(false),
            false => Err(NodeError::Unavailable(unreachable.join("; "))),
        }
    }
}

/// On every node, while it runs: when it leads, make Raft's membership
/// follow the membership record, one step at a time, each time something
/// is applied (and at least every second).
pub(crate) async fn follow_roster(node: Node) {
    let mut metrics = node.raft().metrics();
    loop {
        match node.follow_roster().await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(error = %e, "membership: Raft does not follow the record yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // Err inside: Raft is shut down.
        if let Ok(Err(_)) = tokio::time::timeout(Duration::from_secs(1), metrics.changed()).await {
            return;
        }
    }
}
