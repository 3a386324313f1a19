//! The Raft client: how a node proposes commands and reads what is
//! committed.
//!
//! | verb | proposes | returns | rejection |
//! |---|---|---|---|
//! | [`Node::propose`] | now (leader's core, or a forward) | once applied on this node | in the answer |
//! | [`Node::commit`] | the same | the same | as [`NodeError::Conflict`] |
//! | [`Node::propose_batched`] | through the batcher (`batch`) | the leader's answer, not waiting for this node | in the answer |
//! | [`Node::commit_batched`] | the same | the same | as [`NodeError::Conflict`] |
//!
//! Every verb retries while there is no usable leader (up to ~10 s).
//! [`Node::read_barrier`] waits until this node has applied everything
//! committed before the call (Raft thesis §6.4).

use std::sync::Arc;
use std::time::Duration;

use keyquorum_wire::control::{
    members_statement, node_statement, Authority, Authorized, Command, CommandResponse,
    Endorsement, NodeInfo, Proposal, TypeConfig,
};
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::Hex;
use keyquorum_wire::NodeId;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Config, SnapshotPolicy};
use tokio::sync::oneshot;

use super::{Node, Registry};
use crate::error::NodeError;

/// openraft's configuration; a snapshot every `checkpoint_every` entries
/// (the store takes it at the multiples, see `cluster::checkpoint`).
pub(crate) fn raft_config(checkpoint_every: u64) -> Result<Arc<Config>, NodeError> {
    let c = Config {
        cluster_name: "keyquorum".into(),
        // openraft bounds each AppendEntries round trip by the heartbeat
        // interval. At 150 ms a saturated node (a follower's fsync queued
        // behind others) timed out and was sent the same entries again,
        // several times per second under message load; 300 ms stops that.
        heartbeat_interval: 300,
        election_timeout_min: 1_000,
        election_timeout_max: 2_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(checkpoint_every.max(1)),
        max_in_snapshot_log_to_keep: checkpoint_every.min(1_000),
        // The last chunk of a snapshot waits for the receiver to ask the
        // members to vouch for it (one round trip to each) and to install
        // it: openraft's 200 ms would cut off any sizeable one.
        install_snapshot_timeout: super::peer::SNAPSHOT_CALL_TIMEOUT.as_millis() as u64,
        ..Default::default()
    };
    c.validate()
        .map(Arc::new)
        .map_err(|e| NodeError::Internal(e.to_string()))
}

/// Whether a write must be applied on the node that took it before it
/// returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadBack {
    /// Yes: the caller reads through this node next.
    Here,
    /// No: the leader's answer is all the caller needs.
    NotNeeded,
}

impl Node {
    /// `commands` as one log entry stamped with this (the leader's) clock
    /// and the rules the log may take up (`machine::rules`).
    fn stamp(&self, commands: Vec<Authorized>) -> Proposal {
        Proposal {
            rules: self.registry(Registry::rules_to_stamp),
            time_ms: self.now_ms(),
            commands,
        }
    }

    /// `command` as a statement of this node about itself, signed by its
    /// identity key (see [`super::machine::authority`] for what a node may state).
    pub fn statement(&self, command: impl Into<Command>) -> Authorized {
        let command = command.into();
        let mut nonce = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let time_ms = self.now_ms();
        let signature = self
            .keys()
            .sign(&node_statement(self.id(), time_ms, &nonce, &command));
        Authorized {
            command,
            by: Authority::Node {
                node: self.id(),
                time_ms,
                nonce: Hex(nonce.to_vec()),
                signature: Hex(signature.to_vec()),
            },
        }
    }

    /// This node's signature over [`members_statement`]: one of the
    /// signatures an [`Authority::Members`] statement needs from every
    /// voting member.
    pub fn members_signature(&self, time_ms: u64, nonce: &[u8], command: &Command) -> Endorsement {
        Endorsement {
            node: self.id(),
            signature: Hex(self
                .keys()
                .sign(&members_statement(time_ms, nonce, command))
                .to_vec()),
        }
    }

    /// Commit `command` through Raft and return once this node has applied
    /// it too (so what the caller reads here next includes it): the state
    /// machine's answer, a rejection included.
    pub async fn propose(&self, command: Authorized) -> Result<CommandResponse, NodeError> {
        one(self.propose_now(vec![command], ReadBack::Here).await?)
    }

    /// [`Self::propose`], with a rejection as [`NodeError::Conflict`].
    pub async fn commit(&self, command: Authorized) -> Result<CommandResponse, NodeError> {
        rejection_as_conflict(self.propose(command).await?)
    }

    /// Commit `command` through the node's batcher: concurrent ones share
    /// one forward and one log entry. Returns the leader's answer as soon as
    /// the leader applied it, without waiting for this node (a forwarding
    /// follower learns of the commit about one replication round later): for
    /// callers that read nothing back through this node.
    pub async fn propose_batched(&self, command: Authorized) -> Result<CommandResponse, NodeError> {
        let (tx, rx) = oneshot::channel();
        let stopping = || NodeError::Unavailable("the node is stopping".into());
        self.0
            .batch_tx
            .send((command, tx))
            .map_err(|_| stopping())?;
        rx.await.map_err(|_| stopping())?
    }

    /// [`Self::propose_batched`], with a rejection as
    /// [`NodeError::Conflict`].
    pub async fn commit_batched(&self, command: Authorized) -> Result<CommandResponse, NodeError> {
        rejection_as_conflict(self.propose_batched(command).await?)
    }

    /// As the leader: stamp `commands` with this node's clock into one
    /// [`Proposal`] and append it.
    pub(crate) async fn write_local(
        &self,
        commands: Vec<Authorized>,
    ) -> Result<(CommandResponse, u64), NodeError> {
        match self.client_write(commands).await? {
            Ok(r) => Ok((r.data, r.log_id.index)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(NodeError::Unavailable("this node is not the leader".into()))
            }
            Err(e) => Err(NodeError::Unavailable(format!("raft write: {e}"))),
        }
    }

    /// Append `commands` through this node's Raft core, bounded by the
    /// write deadline (the per-call peer timeout): a leader that lost its
    /// quorum waits for the commit forever, so past the deadline the caller
    /// is told the outcome is unknown ([`NodeError::TimedOut`], not
    /// retried: the entry may still commit).
    async fn client_write(
        &self,
        commands: Vec<Authorized>,
    ) -> Result<
        Result<
            openraft::raft::ClientWriteResponse<TypeConfig>,
            RaftError<u64, ClientWriteError<u64, NodeInfo>>,
        >,
        NodeError,
    > {
        let deadline = self.write_deadline();
        tokio::time::timeout(deadline, self.0.raft.client_write(self.stamp(commands)))
            .await
            .map_err(|_| {
                NodeError::TimedOut(format!(
                    "the write was not committed within {} ms (the leader may have lost its \
                     quorum); it may still commit",
                    deadline.as_millis()
                ))
            })
    }

    /// How long one Raft write attempt may wait for its commit.
    pub(crate) fn write_deadline(&self) -> Duration {
        self.0.peers.timeout()
    }

    /// As the leader: confirm leadership with a quorum and return the index
    /// a linearizable read must have applied.
    /// Bounded by the write deadline: a leader cut off from its quorum
    /// answers Unavailable (safe to retry: a read changes nothing).
    pub(crate) async fn leader_read_index(&self) -> Result<u64, NodeError> {
        let confirm = tokio::time::timeout(self.write_deadline(), self.0.raft.get_read_log_id());
        match confirm.await {
            Ok(Ok((read, _))) => Ok(read.map(|l| l.index).unwrap_or(0)),
            Ok(Err(e)) => Err(NodeError::Unavailable(format!("read index: {e}"))),
            Err(_) => Err(NodeError::Unavailable(
                "the leader could not confirm itself with a quorum in time".into(),
            )),
        }
    }

    /// Wait until this node has applied everything committed before the
    /// call: a read index from the leader (Raft thesis §6.4), then waiting
    /// for the local state machine to reach it (bounded). Used before
    /// answering "not found", so a client that wrote through one node and
    /// reads through another sees its write.
    ///
    /// A leader that cannot confirm itself with a quorum at once (a
    /// follower's answer timed out under load, an election) is asked again
    /// for up to about 5 s before this gives up.
    pub async fn read_barrier(&self) -> Result<(), NodeError> {
        let index = retry_while_unavailable(Duration::from_secs(5), || self.read_index()).await?;
        self.wait_applied(index).await;
        Ok(())
    }

    /// The index a linearizable read must have applied, from the leader.
    pub(crate) async fn read_index(&self) -> Result<u64, NodeError> {
        Ok(match self.leader() {
            Some(l) if l == self.id() => self.leader_read_index().await?,
            Some(l) => {
                let info = self
                    .node_info(l)
                    .ok_or_else(|| NodeError::Unavailable(format!("no address for leader {l}")))?;
                match self.call_signed(l, &info, &PeerMessage::ReadIndex).await?.1 {
                    PeerMessage::ReadIndexReply { index } => index,
                    _ => {
                        return Err(NodeError::Unavailable(
                            "the leader answered ReadIndex wrongly".into(),
                        ))
                    }
                }
            }
            None => return Err(NodeError::Unavailable("no Raft leader".into())),
        })
    }

    /// Wait (briefly) until this node has applied log index `index`:
    /// woken by Raft's metrics when it has, not polled.
    pub(crate) async fn wait_applied(&self, index: u64) {
        if self.applied_index().unwrap_or(0) >= index {
            return;
        }
        // A timeout only means the caller reads a slightly older state.
        let _ = self
            .0
            .raft
            .wait(Some(Duration::from_secs(2)))
            .applied_index_at_least(Some(index), "write applied here")
            .await;
    }

    /// Commit commands in one log entry now (the leader's Raft core or a
    /// forward to the leader): one answer per command, in order.
    pub(crate) async fn propose_now(
        &self,
        commands: Vec<Authorized>,
        read_back: ReadBack,
    ) -> Result<Vec<CommandResponse>, NodeError> {
        let n = commands.len();
        let commands = &commands;
        let started = std::time::Instant::now();
        let r = retry_while_unavailable(Duration::from_secs(10), || {
            self.propose_once(commands, read_back)
        })
        .await?;
        self.0.metrics.commit.observe(started.elapsed());
        match r {
            CommandResponse::Batch { responses } if responses.len() == n => Ok(responses),
            // The whole proposal was refused (its size, its rules).
            CommandResponse::Rejected { reason } => {
                Ok(vec![CommandResponse::Rejected { reason }; n])
            }
            other => Err(NodeError::Internal(format!(
                "a proposal of {n} was answered {other:?}"
            ))),
        }
    }

    /// One try of [`Self::propose_now`].
    pub(crate) async fn propose_once(
        &self,
        commands: &[Authorized],
        read_back: ReadBack,
    ) -> Result<CommandResponse, NodeError> {
        // A follower that knows the leader forwards at once instead of
        // asking its Raft core first.
        let known = self
            .leader()
            .filter(|l| *l != self.0.id)
            .and_then(|l| self.node_info(l).map(|info| (l, info)));
        let (id, info) = match known {
            Some(t) => t,
            None => match self.client_write(commands.to_vec()).await? {
                Ok(r) => return Ok(r.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    match (f.leader_id, f.leader_node) {
                        (Some(id), Some(info)) if id != u64::from(self.0.id) => {
                            match NodeId::try_from(id) {
                                Ok(id) => (id, info),
                                Err(e) => {
                                    return Err(NodeError::Unavailable(format!("leader: {e}")))
                                }
                            }
                        }
                        _ => return Err(NodeError::Unavailable("no Raft leader".into())),
                    }
                }
                Err(e) => return Err(NodeError::Unavailable(format!("raft write: {e}"))),
            },
        };
        let forward = PeerMessage::Forward {
            commands: commands.to_vec(),
        };
        match self.0.peers.call(id, &info, &forward).await? {
            (_, PeerMessage::ForwardReply { response, index }) => {
                if read_back == ReadBack::Here {
                    self.wait_applied(index).await;
                }
                Ok(response)
            }
            _ => Err(NodeError::Misbehaved {
                message: format!("leader {id} answered a forward wrongly"),
                culprits: vec![id],
            }),
        }
    }
}

/// The one answer of a one-command proposal.
fn one(mut r: Vec<CommandResponse>) -> Result<CommandResponse, NodeError> {
    match (r.pop(), r.is_empty()) {
        (Some(x), true) => Ok(x),
        _ => Err(NodeError::Internal(
            "one command got several answers".into(),
        )),
    }
}

/// A rejection as [`NodeError::Conflict`], or as [`NodeError::TooMany`]
/// when a quota refused it (`crate::msg::quota`).
fn rejection_as_conflict(r: CommandResponse) -> Result<CommandResponse, NodeError> {
    match r {
        CommandResponse::Rejected { reason }
            if reason.starts_with(crate::msg::quota::QUOTA_EXCEEDED) =>
        {
            Err(NodeError::TooMany(reason))
        }
        CommandResponse::Rejected { reason } if reason.starts_with(crate::he::state::BAD_INPUT) => {
            Err(NodeError::BadRequest(reason))
        }
        CommandResponse::Rejected { reason } => Err(NodeError::Conflict(reason)),
        applied => Ok(applied),
    }
}

/// Run `attempt` until it succeeds, fails with anything but
/// [`NodeError::Unavailable`], or `within` has passed. Unavailable is a
/// moment without a usable leader (an election, a follower's answer timed
/// out under load): waited out with a backoff from 20 ms, doubling to
/// 500 ms.
async fn retry_while_unavailable<T, F, Fut>(
    within: Duration,
    mut attempt: F,
) -> Result<T, NodeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, NodeError>>,
{
    let mut delay = Duration::from_millis(20);
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match attempt().await {
            Err(e @ NodeError::Unavailable(_)) => {
                if tokio::time::Instant::now() + delay > deadline {
                    return Err(e);
                }
                tracing::debug!(error = %e, "unavailable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
            done => return done,
        }
    }
}
