//! openraft's network: each Raft RPC is a signed [`PeerMessage`] over the
//! peer API, checked against the target's identity from the membership.

use keyquorum_wire::control::{NodeInfo, TypeConfig};
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::NodeId;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::cluster::peer::PeerClient;
use crate::error::NodeError;

/// Creates one [`Connection`] per target.
#[derive(Debug, Clone)]
pub struct Network {
    /// The signing client.
    pub client: PeerClient,
}

/// A connection to one peer.
#[derive(Debug)]
pub struct Connection {
    client: PeerClient,
    target: NodeId,
    info: NodeInfo,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Connection {
        Connection {
            client: self.client.clone(),
            target,
            info: node.clone(),
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>;

fn to_rpc<E: std::error::Error>(e: NodeError) -> RPCError<NodeId, NodeInfo, RaftError<NodeId, E>> {
    match e {
        NodeError::Unavailable(_) => RPCError::Unreachable(Unreachable::new(&e)),
        other => RPCError::Network(NetworkError::new(&other)),
    }
}

fn unexpected<E: std::error::Error>(
    target: NodeId,
) -> RPCError<NodeId, NodeInfo, RaftError<NodeId, E>> {
    RPCError::Network(NetworkError::new(&NodeError::PeerRejected(format!(
        "node {target} answered a Raft RPC with the wrong message"
    ))))
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        match self
            .client
            .call(self.target, &self.info, &PeerMessage::AppendEntries(rpc))
            .await
        {
            Ok((_, PeerMessage::AppendEntriesReply(r))) => Ok(r),
            Ok(_) => Err(unexpected(self.target)),
            Err(e) => Err(to_rpc(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self
            .client
            .call(self.target, &self.info, &PeerMessage::InstallSnapshot(rpc))
            .await
        {
            Ok((_, PeerMessage::InstallSnapshotReply(r))) => Ok(r),
            Ok(_) => Err(unexpected(self.target)),
            Err(e) => Err(to_rpc(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self
            .client
            .call(self.target, &self.info, &PeerMessage::Vote(rpc))
            .await
        {
            Ok((_, PeerMessage::VoteReply(r))) => Ok(r),
            Ok(_) => Err(unexpected(self.target)),
            Err(e) => Err(to_rpc(e)),
        }
    }
}
