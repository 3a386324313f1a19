//! openraft's network: each Raft RPC is a signed [`PeerMessage`] over the
//! peer API, checked against the target's identity: the membership
//! record's for a member (a membership entry that swaps a member's keys
//! does not make Raft count the swapped keys' holder as that member), Raft's
//! membership's for any other node.

use keyquorum_wire::control::{NodeInfo, TypeConfig};
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::NodeId;

/// Raft's own id for a node: its [`NodeId`] as a `u64`.
type RaftId = u64;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use keyquorum_store::raft::MachineReader;

use crate::cluster::machine::Registry;
use crate::cluster::peer::PeerClient;
use crate::error::NodeError;

/// Creates one [`Connection`] per target.
#[derive(Clone)]
pub struct Network {
    /// The signing client.
    pub client: PeerClient,
    /// The replicated state: the members' keys.
    pub registry: MachineReader<TypeConfig, Registry>,
}

/// A connection to one peer.
pub struct Connection {
    client: PeerClient,
    registry: MachineReader<TypeConfig, Registry>,
    /// The target, if Raft's id for it is a node id (the membership holds
    /// only node ids; anything else is unreachable).
    target: Option<NodeId>,
    raft_id: RaftId,
    info: NodeInfo,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: RaftId, node: &NodeInfo) -> Connection {
        Connection {
            client: self.client.clone(),
            registry: self.registry.clone(),
            target: NodeId::try_from(target).ok(),
            raft_id: target,
            info: node.clone(),
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<RaftId, NodeInfo, RaftError<RaftId, E>>;

fn to_rpc<E: std::error::Error>(e: NodeError) -> RpcErr<E> {
    match e {
        NodeError::Unavailable(_) => RPCError::Unreachable(Unreachable::new(&e)),
        other => RPCError::Network(NetworkError::new(&other)),
    }
}

fn unexpected<E: std::error::Error>(target: RaftId) -> RpcErr<E> {
    RPCError::Network(NetworkError::new(&NodeError::PeerRejected(format!(
        "node {target} answered a Raft RPC with the wrong message"
    ))))
}

impl Connection {
    /// Send `msg` to the target and return its answer.
    async fn send(&self, msg: &PeerMessage) -> Result<PeerMessage, NodeError> {
        let target = self.target.ok_or_else(|| {
            NodeError::Unavailable(format!("Raft id {} is not a node id", self.raft_id))
        })?;
        let info = self
            .registry
            .read(|r| {
                r.roster
                    .in_force
                    .then(|| r.members.get(&target).cloned())
                    .flatten()
            })
            .unwrap_or_else(|| self.info.clone());
        self.client.call(target, &info, msg).await.map(|(_, m)| m)
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<RaftId>, RpcErr> {
        match self.send(&PeerMessage::AppendEntries(rpc)).await {
            Ok(PeerMessage::AppendEntriesReply(r)) => Ok(r),
            Ok(_) => Err(unexpected(self.raft_id)),
            Err(e) => Err(to_rpc(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<RaftId>, RpcErr<InstallSnapshotError>> {
        match self.send(&PeerMessage::InstallSnapshot(rpc)).await {
            Ok(PeerMessage::InstallSnapshotReply(r)) => Ok(r),
            Ok(_) => Err(unexpected(self.raft_id)),
            Err(e) => Err(to_rpc(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<RaftId>, RpcErr> {
        match self.send(&PeerMessage::Vote(rpc)).await {
            Ok(PeerMessage::VoteReply(r)) => Ok(r),
            Ok(_) => Err(unexpected(self.raft_id)),
            Err(e) => Err(to_rpc(e)),
        }
    }
}
