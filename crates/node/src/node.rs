//! Wiring and lifecycle: opens the vault and the Raft file, starts openraft,
//! the HTTP server and the audit writer, and stops them gracefully.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyquorum_store::raft::MachineReader;
use keyquorum_store::vault::KdfParams;
use keyquorum_store::{Passphrase, Vault};
use keyquorum_wire::api::AddNodeRequest;
use keyquorum_wire::control::{
    AuditEvent, Command, CommandResponse, NodeInfo, SignedHead, TypeConfig, MAX_BATCH,
};
use keyquorum_wire::peer::{Envelope, PeerMessage};
use keyquorum_wire::{Hex, NodeId};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Config, Raft, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::NodeConfig;
use crate::driver::Driver;
use crate::error::NodeError;
use crate::identity::NodeKeys;
use crate::machine::{head_signing_bytes, Registry};
use crate::peer::{now_ms, seal_envelope, PeerClient, ReplayGuard};
use crate::raftnet::Network;

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Client requests answered, by outcome.
    pub requests_ok: AtomicU64,
    /// Client requests refused or failed.
    pub requests_err: AtomicU64,
    /// Signatures produced.
    pub signatures: AtomicU64,
    /// Total signing latency, microseconds.
    pub sign_micros: AtomicU64,
    /// Keys generated.
    pub dkgs: AtomicU64,
    /// Peer messages rejected (signature, membership, replay).
    pub peer_rejects: AtomicU64,
    /// Writes that went through the batcher.
    pub batched_writes: AtomicU64,
    /// Commits (forwards or local Raft writes) that carried them.
    pub write_batches: AtomicU64,
}

pub(crate) struct Inner {
    id: NodeId,
    config: NodeConfig,
    addr: String,
    keys: Arc<NodeKeys>,
    cert: Arc<crate::tls::NodeCert>,
    vault: Arc<Vault>,
    pub(crate) nonces: crate::taker::NonceTaker,
    raft: Raft<TypeConfig>,
    registry: MachineReader<TypeConfig, Registry>,
    peers: PeerClient,
    pub(crate) replay: ReplayGuard,
    driver: Driver,
    pub(crate) metrics: Metrics,
    audit_tx: mpsc::UnboundedSender<(AuditEvent, Option<oneshot::Sender<()>>)>,
    batch_tx: mpsc::UnboundedSender<Pending>,
    bootstrap: BTreeMap<NodeId, NodeInfo>,
}

/// A handle on a running node (cheap to clone).
#[derive(Clone)]
pub struct Node(Arc<Inner>);

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.0.id)
            .finish_non_exhaustive()
    }
}

/// A started node: its handle, bound address and server task.
#[derive(Debug)]
pub struct RunningNode {
    /// The node.
    pub node: Node,
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    audit: Option<JoinHandle<()>>,
    batcher: Option<JoinHandle<()>>,
    raft_file: keyquorum_store::raft::FileHandle,
}

impl RunningNode {
    /// Stop serving and shut Raft down. `stop` returns once the Raft file is
    /// closed (openraft's tasks drop their storage handles shortly after its
    /// shutdown returns), so the node can be started again at once; the
    /// vault closes when the last [`Node`] handle drops.
    pub async fn stop(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.node.0.raft.shutdown().await;
        for t in [self.audit.take(), self.batcher.take()]
            .into_iter()
            .flatten()
        {
            t.abort();
            let _ = t.await;
        }
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
        }
        // A replication stream may be inside a network call to a node
        // that is gone: allow it its time-outs.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.raft_file.is_open() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for t in [self.audit.take(), self.batcher.take()]
            .into_iter()
            .flatten()
        {
            t.abort();
        }
    }
}

fn raft_config() -> Result<Arc<Config>, NodeError> {
    let c = Config {
        cluster_name: "keyquorum".into(),
        // openraft bounds each AppendEntries round trip by the heartbeat
        // interval. At 150 ms a saturated node (a follower's fsync queued
        // behind others) timed out and was sent the same entries again,
        // several times per second under message load; 300 ms stops that.
        heartbeat_interval: 300,
        election_timeout_min: 1_000,
        election_timeout_max: 2_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(5_000),
        max_in_snapshot_log_to_keep: 1_000,
        ..Default::default()
    };
    c.validate()
        .map(Arc::new)
        .map_err(|e| NodeError::Internal(e.to_string()))
}

impl Node {
    /// Open storage, start Raft and serve on `config.listen` (or on
    /// `listener` if given).
    pub async fn start(
        config: NodeConfig,
        passphrase: &Passphrase,
        listener: Option<tokio::net::TcpListener>,
    ) -> Result<RunningNode, NodeError> {
        crate::driver::pid(config.id)?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| NodeError::Internal(format!("data dir: {e}")))?;
        let kdf = config.kdf.map(KdfParams::from).unwrap_or_default();
        // Argon2id runs once here, before the node serves anything.
        let vault = Arc::new(Vault::open(
            &config.data_dir.join("vault.redb"),
            passphrase,
            kdf,
        )?);
        let nonces = crate::taker::NonceTaker::start(&vault)?;
        let keys = Arc::new(NodeKeys::load_or_create(&vault)?);
        let listener = match listener {
            Some(l) => l,
            None => tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(|e| NodeError::Internal(format!("bind {}: {e}", config.listen)))?,
        };
        let bound = listener
            .local_addr()
            .map_err(|e| NodeError::Internal(e.to_string()))?;
        let addr = config
            .advertise
            .clone()
            .unwrap_or_else(|| format!("https://{bound}"));
        let cert = Arc::new(crate::tls::NodeCert::new(
            &keys,
            config.id,
            &crate::tls::certificate_names(&addr, &config.tls_names),
        )?);
        let tls = crate::tls::server_config(&cert)?;
        let (log, sm) =
            keyquorum_store::raft::open::<TypeConfig, Registry>(&config.data_dir.join("raft.redb"))
                .map_err(|e| NodeError::Internal(format!("raft storage: {e}")))?;
        let registry = sm.reader();
        let raft_file = log.file();
        let peers = PeerClient::new(
            config.id,
            keys.clone(),
            cert.clone(),
            Duration::from_millis(config.peer_timeout_ms),
        )?;
        let raft = Raft::new(
            config.id,
            raft_config()?,
            Network {
                client: peers.clone(),
            },
            log,
            sm,
        )
        .await
        .map_err(|e| NodeError::Internal(format!("raft: {e}")))?;
        let (audit_tx, audit_rx) = mpsc::unbounded_channel();
        let (batch_tx, batch_rx) = mpsc::unbounded_channel();
        let bootstrap = config
            .peers
            .iter()
            .map(|p| (p.id, p.info.clone()))
            .collect();
        let node = Node(Arc::new(Inner {
            id: config.id,
            config,
            addr,
            keys,
            cert,
            vault,
            nonces,
            raft,
            registry,
            peers,
            replay: ReplayGuard::default(),
            driver: Driver::default(),
            metrics: Metrics::default(),
            audit_tx,
            batch_tx,
            bootstrap,
        }));
        let erased = node.0.driver.tidy(&node)?;
        if erased > 0 {
            tracing::info!(
                node = node.id(),
                erased,
                "erased old share generations, their nonces and pending shares of dead runs"
            );
        }
        let audit = tokio::spawn(audit_writer(node.clone(), audit_rx));
        let batcher = tokio::spawn(batch_writer(node.clone(), batch_rx));
        let (tx, rx) = oneshot::channel::<()>();
        let app = crate::api::router(node.clone());
        let server = tokio::spawn(crate::tls::serve(listener, tls, app, rx));
        tracing::info!(node = node.id(), %bound, "node started");
        Ok(RunningNode {
            node,
            addr: bound,
            shutdown: Some(tx),
            server: Some(server),
            audit: Some(audit),
            batcher: Some(batcher),
            raft_file,
        })
    }

    /// This node's TLS certificate (PEM), self-signed by its identity key:
    /// what clients add to their trusted roots.
    pub fn certificate_pem(&self) -> String {
        self.0.cert.pem()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.0.id
    }

    /// Its configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.0.config
    }

    /// Its public description.
    pub fn info(&self) -> NodeInfo {
        self.0.keys.info(self.0.addr.clone())
    }

    /// Its keys.
    pub fn keys(&self) -> &NodeKeys {
        &self.0.keys
    }

    /// Its vault.
    pub fn vault(&self) -> &Vault {
        &self.0.vault
    }

    /// The protocol driver.
    pub fn driver(&self) -> &Driver {
        &self.0.driver
    }

    /// The Raft handle.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.0.raft
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Read the replicated registry.
    pub fn registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        self.0.registry.read(f)
    }

    /// The last applied log index.
    pub fn applied_index(&self) -> Option<u64> {
        self.0.registry.applied_index()
    }

    /// A node's address and keys: from the Raft membership, else from the
    /// bootstrap peers in the config.
    pub fn node_info(&self, id: NodeId) -> Option<NodeInfo> {
        if id == self.0.id {
            return Some(self.info());
        }
        let m = self.0.raft.metrics().borrow().membership_config.clone();
        m.membership()
            .get_node(&id)
            .cloned()
            .or_else(|| self.0.bootstrap.get(&id).cloned())
    }

    /// Every node in the current membership (voters and learners).
    pub fn members(&self) -> Vec<(NodeId, NodeInfo, bool)> {
        let m = self.0.raft.metrics().borrow().membership_config.clone();
        let voters: std::collections::BTreeSet<NodeId> = m.membership().voter_ids().collect();
        m.membership()
            .nodes()
            .map(|(id, info)| (*id, info.clone(), voters.contains(id)))
            .collect()
    }

    /// Initialize a new cluster with these voters (call on one node once).
    pub async fn initialize(&self, members: BTreeMap<NodeId, NodeInfo>) -> Result<(), NodeError> {
        match self.0.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(NodeError::Internal(format!("initialize: {e}"))),
        }
    }

    /// Send a message to `to` (locally when it is this node) and return the
    /// signed reply.
    pub async fn call(
        &self,
        to: NodeId,
        info: &NodeInfo,
        msg: &PeerMessage,
    ) -> Result<(Envelope, PeerMessage), NodeError> {
        if to == self.0.id {
            let reply = match self.handle_peer(to, clone_request(msg)?).await {
                Ok(m) => m,
                Err(e) => return Err(e),
            };
            let env = seal_envelope(&self.0.keys, to, to, &reply)?;
            return Ok((env, reply));
        }
        self.0.peers.call(to, info, msg).await
    }

    /// Like [`Self::call`] for a caller that needs only the answer, not
    /// the signed envelope it came in: to this node itself, the message is
    /// handled directly (no encoding round trip, no envelope signed for
    /// nobody).
    pub async fn ask(
        &self,
        to: NodeId,
        info: &NodeInfo,
        msg: PeerMessage,
    ) -> Result<PeerMessage, NodeError> {
        if to == self.0.id {
            return self.handle_peer(to, msg).await;
        }
        self.0.peers.call(to, info, &msg).await.map(|(_, m)| m)
    }

    /// Handle an authenticated peer message from `from`.
    pub async fn handle_peer(
        &self,
        from: NodeId,
        msg: PeerMessage,
    ) -> Result<PeerMessage, NodeError> {
        let raft_err = |e: String| NodeError::Unavailable(format!("raft: {e}"));
        match msg {
            PeerMessage::AppendEntries(rpc) => self
                .0
                .raft
                .append_entries(rpc)
                .await
                .map(PeerMessage::AppendEntriesReply)
                .map_err(|e| raft_err(e.to_string())),
            PeerMessage::Vote(rpc) => self
                .0
                .raft
                .vote(rpc)
                .await
                .map(PeerMessage::VoteReply)
                .map_err(|e| raft_err(e.to_string())),
            PeerMessage::InstallSnapshot(rpc) => self
                .0
                .raft
                .install_snapshot(rpc)
                .await
                .map(PeerMessage::InstallSnapshotReply)
                .map_err(|e| raft_err(e.to_string())),
            PeerMessage::ChangeMembers { add, remove } => {
                self.change_members_local(add, remove).await?;
                Ok(PeerMessage::Ack)
            }
            PeerMessage::Ping => Ok(PeerMessage::Pong),
            PeerMessage::ReadIndex => Ok(PeerMessage::ReadIndexReply {
                index: self.leader_read_index().await?,
            }),
            PeerMessage::Forward { command } => {
                let (response, index) = self.write_local(command).await?;
                Ok(PeerMessage::ForwardReply { response, index })
            }
            PeerMessage::MsgCoordinate {
                from: sender,
                header,
                signature,
                payload,
                bundle,
            } => crate::msg::coordinate(self, &sender, &header, &signature, &payload, &bundle)
                .map(|confirmation| PeerMessage::MsgConfirmed { confirmation }),
            other => self.0.driver.handle(self, from, other).await,
        }
    }

    async fn write_local(&self, command: Command) -> Result<(CommandResponse, u64), NodeError> {
        match self.0.raft.client_write(command).await {
            Ok(r) => Ok((r.data, r.log_id.index)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(NodeError::Unavailable("this node is not the leader".into()))
            }
            Err(e) => Err(NodeError::Unavailable(format!("raft write: {e}"))),
        }
    }

    /// As the leader: confirm leadership with a quorum and return the index
    /// a linearizable read must have applied.
    async fn leader_read_index(&self) -> Result<u64, NodeError> {
        match self.0.raft.get_read_log_id().await {
            Ok((read, _)) => Ok(read.map(|l| l.index).unwrap_or(0)),
            Err(e) => Err(NodeError::Unavailable(format!("read index: {e}"))),
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
    async fn read_index(&self) -> Result<u64, NodeError> {
        Ok(match self.leader() {
            Some(l) if l == self.id() => self.leader_read_index().await?,
            Some(l) => {
                let info = self
                    .node_info(l)
                    .ok_or_else(|| NodeError::Unavailable(format!("no address for leader {l}")))?;
                match self.call(l, &info, &PeerMessage::ReadIndex).await?.1 {
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

    /// The registry record of key `name`; if this node does not know it,
    /// after a [`read barrier`](Self::read_barrier) (it may have been
    /// created through another node a moment ago).
    pub async fn key_record(&self, name: &str) -> Option<keyquorum_wire::control::KeyRecord> {
        if let Some(r) = self.registry(|r| r.keys.get(name).cloned()) {
            return Some(r);
        }
        if let Err(e) = self.read_barrier().await {
            tracing::debug!(error = %e, "read barrier failed");
        }
        self.registry(|r| r.keys.get(name).cloned())
    }

    /// Wait (briefly) until this node has applied log index `index`:
    /// woken by Raft's metrics when it has, not polled.
    async fn wait_applied(&self, index: u64) {
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

    /// Commit a command through Raft: directly on the leader, forwarded
    /// otherwise, and return once this node has applied it too (so what
    /// the caller reads here next includes it). Retries while an election
    /// is under way (up to ~10 s).
    pub async fn write(&self, command: Command) -> Result<CommandResponse, NodeError> {
        self.write_with(command, ReadBack::Here).await
    }

    /// Like [`Self::write`]; with [`ReadBack::NotNeeded`] it returns as soon
    /// as the leader applied the command, for callers that read nothing
    /// back through this node (a forwarding follower learns of the commit
    /// with the leader's next message, about one replication round later).
    /// Such writes go through the node's batcher: concurrent ones
    /// share one forward and one log entry.
    pub async fn write_with(
        &self,
        command: Command,
        read_back: ReadBack,
    ) -> Result<CommandResponse, NodeError> {
        if read_back == ReadBack::Here {
            return self.write_now(command, ReadBack::Here).await;
        }
        let (tx, rx) = oneshot::channel();
        let stopping = || NodeError::Unavailable("the node is stopping".into());
        self.0
            .batch_tx
            .send((command, tx))
            .map_err(|_| stopping())?;
        rx.await.map_err(|_| stopping())?
    }

    /// Commit one command (perhaps a batch) now: the leader's Raft core or
    /// a forward to the leader.
    async fn write_now(
        &self,
        command: Command,
        read_back: ReadBack,
    ) -> Result<CommandResponse, NodeError> {
        let command = &command;
        retry_while_unavailable(Duration::from_secs(10), || {
            self.write_once(command, read_back)
        })
        .await
    }

    /// One try of [`Self::write_now`].
    async fn write_once(
        &self,
        command: &Command,
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
            None => match self.0.raft.client_write(command.clone()).await {
                Ok(r) => return Ok(r.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    match (f.leader_id, f.leader_node) {
                        (Some(id), Some(info)) if id != self.0.id => (id, info),
                        _ => return Err(NodeError::Unavailable("no Raft leader".into())),
                    }
                }
                Err(e) => return Err(NodeError::Unavailable(format!("raft write: {e}"))),
            },
        };
        let forward = PeerMessage::Forward {
            command: command.clone(),
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

    /// [`Self::write`], with a rejection as [`NodeError::Conflict`].
    pub async fn commit(&self, command: Command) -> Result<CommandResponse, NodeError> {
        self.commit_with(command, ReadBack::Here).await
    }

    /// [`Self::write_with`], with a rejection as [`NodeError::Conflict`].
    pub async fn commit_with(
        &self,
        command: Command,
        read_back: ReadBack,
    ) -> Result<CommandResponse, NodeError> {
        match self.write_with(command, read_back).await? {
            CommandResponse::Rejected { reason } => Err(NodeError::Conflict(reason)),
            applied => Ok(applied),
        }
    }

    /// Record an event in the audit log (asynchronously, batched).
    pub fn audit_event(&self, actor: &str, action: &str, target: Option<&str>, outcome: &str) {
        self.queue_audit(actor, action, target, outcome, None);
    }

    /// Like [`Self::audit_event`], and the returned receiver fires once the
    /// batch holding the event is committed in the Raft log. Used to hold a
    /// signature or an export back until its audit entry is durable.
    pub fn audit_event_committed(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        outcome: &str,
    ) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.queue_audit(actor, action, target, outcome, Some(tx));
        rx
    }

    fn queue_audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        outcome: &str,
        done: Option<oneshot::Sender<()>>,
    ) {
        let event = AuditEvent {
            time_ms: now_ms(),
            node: self.0.id,
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.map(str::to_string),
            outcome: outcome.to_string(),
        };
        let _ = self.0.audit_tx.send((event, done));
    }

    /// Add a node (learner, then voter unless `voter` is false). Runs on the
    /// leader; forwarded there from other nodes.
    pub async fn add_node(&self, req: AddNodeRequest) -> Result<(), NodeError> {
        crate::driver::pid(req.id)?;
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
        let info = NodeInfo {
            addr: req.addr,
            identity: req.identity,
            hpke: req.hpke,
        };
        // The node must be reachable at `addr` and answer with a reply
        // signed by `identity` before it can count towards a quorum.
        match self.call(req.id, &info, &PeerMessage::Ping).await {
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
        self.change_members(Some((req.id, info, req.voter)), None)
            .await
    }

    /// Remove a node that holds no key shares.
    pub async fn remove_node(&self, id: NodeId) -> Result<(), NodeError> {
        if !self.members().iter().any(|(m, _, _)| *m == id) {
            return Err(NodeError::NotFound(format!("node {id} is not a member")));
        }
        let holds: Vec<String> = self.registry(|r| {
            r.keys
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
        self.change_members(None, Some(id)).await
    }

    async fn change_members(
        &self,
        add: Option<(NodeId, NodeInfo, bool)>,
        remove: Option<NodeId>,
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

    async fn change_members_local(
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
            raft.add_learner(id, info, true)
                .await
                .map_err(|e| err(e.to_string()))?;
            if voter {
                let m = raft.metrics().borrow().membership_config.clone();
                let mut voters: std::collections::BTreeSet<NodeId> =
                    m.membership().voter_ids().collect();
                voters.insert(id);
                raft.change_membership(voters, false)
                    .await
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        if let Some(id) = remove {
            let m = raft.metrics().borrow().membership_config.clone();
            let mut voters: std::collections::BTreeSet<NodeId> =
                m.membership().voter_ids().collect();
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

    /// The current leader, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.0.raft.metrics().borrow().current_leader
    }
}

/// Whether a write must be applied on the node that took it before it
/// returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBack {
    /// Yes: the caller reads through this node next.
    Here,
    /// No: the leader's answer is all the caller needs.
    NotNeeded,
}

/// A write waiting for the batcher, and where its result goes.
type Pending = (Command, oneshot::Sender<Result<CommandResponse, NodeError>>);

/// How many batches one node may have on their way to the leader at once.
/// More in flight means smaller batches and less waiting for a turn; while
/// all are out, new writes gather into the next.
///
/// One measured best (group commit: while a batch is on its way the next
/// gathers); see BENCHMARKS.md, session 10.
const BATCHES_IN_FLIGHT: usize = 1;

/// A batch stops growing past about this many bytes in the log, so that
/// one entry (and the AppendEntries carrying it) stays small enough to
/// replicate well within the heartbeat-bounded RPC time-out.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// About how many bytes `command` takes in the log (its byte strings are
/// hex there, twice their length).
fn rough_size(command: &Command) -> usize {
    const OVERHEAD: usize = 256;
    match command {
        Command::Deliver { item, .. } => {
            let boxed = |b: &keyquorum_wire::msg::SealedBox| b.enc.0.len() + b.ciphertext.0.len();
            let bytes = item.header.0.len()
                + item.payload.0.len()
                + item.signature.0.len()
                + boxed(&item.for_receiver)
                + item
                    .confirmations
                    .iter()
                    .map(|c| boxed(&c.forwarded) + c.signature.0.len() + 32)
                    .sum::<usize>();
            2 * bytes + OVERHEAD
        }
        _ => OVERHEAD,
    }
}

/// Groups the writes that need no read-back ([`ReadBack::NotNeeded`]) into
/// [`Command::Batch`]es: whatever has queued up by the time a batch may go
/// leaves together (up to [`MAX_BATCH`] commands or about
/// [`MAX_BATCH_BYTES`]), so under load one forward (one
/// signed envelope, one HTTPS request) and one Raft entry carry many writes,
/// and when idle a write leaves alone at once.
async fn batch_writer(node: Node, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let batch = gather(first, &mut rx);
        let node = node.clone();
        tokio::spawn(async move {
            let _permit = permit;
            write_batch(&node, batch).await;
        });
    }
}

/// `first` and what is queued behind it, up to [`MAX_BATCH`] commands or
/// about [`MAX_BATCH_BYTES`].
fn gather(first: Pending, rx: &mut mpsc::UnboundedReceiver<Pending>) -> Vec<Pending> {
    let mut bytes = rough_size(&first.0);
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
        match rx.try_recv() {
            Ok(p) => {
                bytes += rough_size(&p.0);
                batch.push(p);
            }
            Err(_) => break,
        }
    }
    batch
}

/// Commit `batch` and hand each waiter its own result.
async fn write_batch(node: &Node, mut batch: Vec<Pending>) {
    let m = node.metrics();
    m.write_batches.fetch_add(1, Ordering::Relaxed);
    m.batched_writes
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    if batch.len() == 1 {
        if let Some((command, tx)) = batch.pop() {
            let _ = tx.send(node.write_now(command, ReadBack::NotNeeded).await);
        }
        return;
    }
    let (commands, waiters): (Vec<Command>, Vec<_>) = batch.into_iter().unzip();
    let n = commands.len();
    let e = match node
        .write_now(Command::Batch { commands }, ReadBack::NotNeeded)
        .await
    {
        Ok(CommandResponse::Batch { responses }) if responses.len() == n => {
            for (tx, r) in waiters.into_iter().zip(responses) {
                let _ = tx.send(Ok(r));
            }
            return;
        }
        Ok(other) => NodeError::Internal(format!("a batch of {n} was answered {other:?}")),
        Err(e) => e,
    };
    for tx in waiters {
        let _ = tx.send(Err(e.clone()));
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

/// Raft messages carry no secrets and are not Clone; the driver's requests
/// are cloned through their JSON form for local delivery.
pub(crate) fn clone_request(msg: &PeerMessage) -> Result<PeerMessage, NodeError> {
    let bytes = serde_json::to_vec(msg).map_err(|e| NodeError::Internal(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| NodeError::Internal(e.to_string()))
}

/// Batches audit events into `Audit` commands; as leader, signs the head
/// whenever it has moved, at most once a second (so every entry is covered
/// by a signed head about a second after it is appended).
async fn audit_writer(
    node: Node,
    mut rx: mpsc::UnboundedReceiver<(AuditEvent, Option<oneshot::Sender<()>>)>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut signed: Option<u64> = None;
    loop {
        let first = tokio::select! {
            e = rx.recv() => match e {
                Some(e) => Some(e),
                None => return,
            },
            _ = tick.tick() => None,
        };
        if let Some(first) = first {
            let mut batch = vec![first];
            while batch.len() < 512 {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            let (events, waiters): (Vec<AuditEvent>, Vec<_>) = batch.into_iter().unzip();
            let mut delay = Duration::from_millis(50);
            loop {
                match node
                    .write(Command::Audit {
                        events: events.clone(),
                    })
                    .await
                {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, pending = events.len(), "audit append failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
            }
            for w in waiters.into_iter().flatten() {
                let _ = w.send(());
            }
            continue;
        }
        if node.leader() != Some(node.id()) {
            continue;
        }
        let head = node.registry(|r| {
            let last_signed = r.heads.last().map(|h| h.seq);
            r.audit
                .last()
                .filter(|e| Some(e.seq) > last_signed)
                .map(|e| (e.seq, e.hash))
        });
        if let Some((seq, hash)) = head {
            if signed == Some(seq) {
                continue;
            }
            let signature = node.keys().sign(&head_signing_bytes(seq, &hash));
            let head = SignedHead {
                seq,
                hash,
                signer: node.id(),
                signature: Hex(signature.to_vec()),
            };
            match node.write(Command::SignHead { head }).await {
                Ok(_) => signed = Some(seq),
                Err(e) => tracing::warn!(error = %e, "signing the audit head failed"),
            }
        }
    }
}

impl Node {
    pub(crate) fn inner(&self) -> &Inner {
        &self.0
    }
}

impl Inner {
    pub(crate) fn count_peer_reject(&self) {
        self.metrics.peer_rejects.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use keyquorum_wire::msg::{MailItem, SealedBox};
    use keyquorum_wire::Hex32;

    use super::*;

    fn deliver(payload: usize) -> Command {
        let b = SealedBox {
            enc: Hex(vec![0; 32]),
            ciphertext: Hex(vec![0; 80]),
        };
        Command::Deliver {
            item: MailItem {
                id: Hex32([0; 32]),
                from: "a".into(),
                to: "b".into(),
                header: Hex(vec![0; 300]),
                signature: Hex(vec![0; 64]),
                payload: Hex(vec![0; payload]),
                for_receiver: b,
                confirmations: Vec::new(),
                time_ms: 0,
            },
            prekey: Hex32([0; 32]),
        }
    }

    /// Queue `n` copies of `command`, then gather one batch.
    fn gathered(command: &Command, n: usize) -> (usize, usize) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for _ in 0..n {
            let (reply, _) = oneshot::channel();
            tx.send((command.clone(), reply)).unwrap();
        }
        let first = rx.try_recv().unwrap();
        let batch = gather(first, &mut rx);
        let left = std::iter::from_fn(|| rx.try_recv().ok()).count();
        (batch.len(), left)
    }

    #[test]
    fn a_batch_is_bounded_by_count_and_by_bytes() {
        // Small commands: MAX_BATCH of them, the rest wait.
        let small = deliver(1024);
        assert_eq!(gathered(&small, 300), (MAX_BATCH, 300 - MAX_BATCH));
        assert_eq!(gathered(&small, 5), (5, 0));
        // The largest payloads: the batch stops once about MAX_BATCH_BYTES
        // are in it, and its log entry stays near that size.
        let big = deliver(crate::msg::MAX_PAYLOAD);
        let (n, left) = gathered(&big, 100);
        assert_eq!(n + left, 100);
        assert!(n > 1 && n < MAX_BATCH, "{n}");
        let entry = serde_json::to_vec(&Command::Batch {
            commands: vec![big; n],
        })
        .unwrap();
        assert!(entry.len() >= MAX_BATCH_BYTES, "{}", entry.len());
        assert!(
            entry.len() < MAX_BATCH_BYTES + 2 * rough_size(&deliver(crate::msg::MAX_PAYLOAD)),
            "{}",
            entry.len()
        );
    }
}
