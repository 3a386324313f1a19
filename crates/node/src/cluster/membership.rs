//! Who is in the cluster: looking a node up, the member list, initialising
//! a cluster, adding and removing nodes (openraft joint consensus).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use keyquorum_wire::api::AddNodeRequest;
use keyquorum_wire::control::NodeInfo;
use keyquorum_wire::peer::{ClientRequest, PeerMessage};
use keyquorum_wire::NodeId;
use openraft::error::RaftError;

use super::Node;
use crate::error::NodeError;

impl Node {
    /// A node's address and keys: from the registry's members (which keep
    /// the identity and HPKE keys a member joined with, whatever a later
    /// membership entry says: a leader cannot make the others seal secrets
    /// to, or accept messages signed by, keys of its own in a member's
    /// name), else from the Raft membership (a node whose joining is not
    /// applied yet), else from the bootstrap peers in the config.
    pub fn node_info(&self, id: NodeId) -> Option<NodeInfo> {
        if id == self.0.id {
            return Some(self.info());
        }
        if let Some(info) = self.registry(|r| r.members.get(&id).cloned()) {
            return Some(info);
        }
        let m = self.0.raft.metrics().borrow().membership_config.clone();
        m.membership()
            .get_node(&u64::from(id))
            .cloned()
            .or_else(|| self.0.bootstrap.get(&id).cloned())
    }

    /// Every node in the current membership (voters and learners).
    pub fn members(&self) -> Vec<(NodeId, NodeInfo, bool)> {
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

    /// Whether `req` may be added: well-formed and not a member yet
    /// (checked where the request arrives and again by the leader).
    pub(crate) fn check_add(&self, req: &AddNodeRequest) -> Result<NodeInfo, NodeError> {
        crate::identity::hpke_public(&req.hpke)?;
        if !(req.addr.starts_with("http://") || req.addr.starts_with("https://")) {
            return Err(NodeError::BadRequest("addr must be an http(s) URL".into()));
        }
        if self.members().iter().any(|(id, _, _)| *id == req.id) {
            return Err(NodeError::Conflict(format!(
                "node {} is already a member",
                req.id
            )));
        }
        Ok(NodeInfo {
            addr: req.addr.clone(),
            identity: req.identity,
            hpke: req.hpke,
        })
    }

    /// Add a node (learner, then voter unless `voter` is false), as the
    /// admin's signed `request` asks. Runs on the leader; forwarded there
    /// (with the request, which the leader checks) from other nodes.
    pub async fn add_node(
        &self,
        req: AddNodeRequest,
        request: ClientRequest,
    ) -> Result<(), NodeError> {
        let info = self.check_add(&req)?;
        // The node must be reachable at `addr` and answer with a reply
        // signed by `identity` before it can count towards a quorum.
        match self.call_signed(req.id, &info, &PeerMessage::Ping).await {
            Ok((_, PeerMessage::Pong)) => {}
            Ok(_) => {
                return Err(NodeError::BadRequest(format!(
                    "node {} at {} answered a ping wrongly",
                    req.id, info.addr
                )))
            }
            Err(e) => {
                return Err(NodeError::BadRequest(format!(
                    "node {} at {} did not answer as that identity: {e}",
                    req.id, info.addr
                )))
            }
        }
        self.change_members(Some((req.id, info, req.voter)), None, request)
            .await
    }

    /// Remove a node that holds no key shares, as the admin's signed
    /// `request` asks.
    pub async fn remove_node(&self, id: NodeId, request: ClientRequest) -> Result<(), NodeError> {
        self.check_remove(id)?;
        self.change_members(None, Some(id), request).await
    }

    /// Whether `id` may be removed: a member holding no key shares
    /// (checked where the request arrives and again by the leader).
    pub(crate) fn check_remove(&self, id: NodeId) -> Result<(), NodeError> {
        if !self.members().iter().any(|(m, _, _)| *m == id) {
            return Err(NodeError::NotFound(format!("node {id} is not a member")));
        }
        let holds: Vec<String> = self.registry(|r| {
            r.keys
                .records
                .values()
                .filter(|k| k.members.contains(&id))
                .map(|k| k.name.clone())
                .collect()
        });
        if !holds.is_empty() {
            return Err(NodeError::Conflict(format!(
                "node {id} holds shares of {holds:?}; reshare them away first"
            )));
        }
        Ok(())
    }

    pub(crate) async fn change_members(
        &self,
        add: Option<(NodeId, NodeInfo, bool)>,
        remove: Option<NodeId>,
        request: ClientRequest,
    ) -> Result<(), NodeError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let leader = self.leader();
            let r = match leader {
                Some(l) if l == self.0.id => {
                    return self.change_members_local(add, remove).await;
                }
                Some(l) => match self.node_info(l) {
                    Some(info) => self
                        .0
                        .peers
                        .call(
                            l,
                            &info,
                            &PeerMessage::ChangeMembers {
                                add: add.clone(),
                                remove,
                                request: request.clone(),
                            },
                        )
                        .await
                        .map(|_| ()),
                    None => Err(NodeError::Unavailable("leader unknown".into())),
                },
                None => Err(NodeError::Unavailable("no Raft leader".into())),
            };
            match r {
                Err(NodeError::Unavailable(m)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = m, "membership change: waiting for a leader");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    pub(crate) async fn change_members_local(
        &self,
        add: Option<(NodeId, NodeInfo, bool)>,
        remove: Option<NodeId>,
    ) -> Result<(), NodeError> {
        let raft = &self.0.raft;
        // Another change still in flight is the caller's to retry (409);
        // anything else means the cluster cannot change now (503).
        let err = |e: String| {
            if e.contains("undergoing a configuration change") {
                NodeError::Conflict(format!("membership change: {e}"))
            } else {
                NodeError::Unavailable(format!("membership change: {e}"))
            }
        };
        if let Some((id, info, voter)) = add {
            raft.add_learner(u64::from(id), info, true)
                .await
                .map_err(|e| err(e.to_string()))?;
            if voter {
                let m = raft.metrics().borrow().membership_config.clone();
                let mut voters: BTreeSet<u64> = m.membership().voter_ids().collect();
                voters.insert(u64::from(id));
                raft.change_membership(voters, false)
                    .await
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        if let Some(id) = remove {
            let m = raft.metrics().borrow().membership_config.clone();
            let id = u64::from(id);
            let mut voters: BTreeSet<u64> = m.membership().voter_ids().collect();
            if voters.remove(&id) {
                if voters.is_empty() {
                    return Err(NodeError::BadRequest("cannot remove the last voter".into()));
                }
                raft.change_membership(voters, false)
                    .await
                    .map_err(|e| err(e.to_string()))?;
            } else {
                raft.change_membership(openraft::ChangeMembers::RemoveNodes([id].into()), false)
                    .await
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        Ok(())
    }
}
