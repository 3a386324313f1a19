//! The cluster plumbing every capability stands on: this node's handle
//! ([`Node`]) with its identity, vault, Raft control plane and peers.
//!
//! | module | what |
//! |---|---|
//! | [`raft`] | the Raft client: [`Node::propose`] / [`Node::commit`] (applied here before they return), [`Node::propose_batched`] / [`Node::commit_batched`] (the leader's answer, batched), read barriers |
//! | `batch` | the write batcher behind the `*_batched` verbs |
//! | `commit` | group commit of durable vault work (nonce removal, leaf locks) |
//! | [`membership`] | who is in the cluster: node lookup, add and remove nodes |
//! | [`transport`] | peer calls ([`Node::call`], [`Node::call_signed`]), the peer HTTP endpoint, and the [`PeerHandler`] the capabilities' messages are dispatched through |
//! | [`peer`] | signed envelopes, HPKE sealing, replay window, the peer HTTP client |
//! | [`tls`] | TLS 1.3 with certificates bound to node identities |
//! | [`raftnet`] | openraft's network over the peer API |
//! | [`machine`] | the replicated state machine: [`machine::Registry`] and the command dispatcher in front of each capability's part |
//! | [`audit`] | the hash-chained audit log: its part of the state machine, the writer, verification |
//! | [`metrics`] | counters |
//!
//! Nothing here knows a capability's protocol; capabilities (`crate::keys`,
//! `crate::msg`) call into this module, never the other way round, except
//! that [`machine`] composes their replicated state parts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use keyquorum_store::raft::{FileHandle, MachineReader};
use keyquorum_store::vault::KdfParams;
use keyquorum_store::{Passphrase, Vault};
use keyquorum_wire::control::{AuditEvent, NodeInfo, TypeConfig};
use keyquorum_wire::NodeId;
use openraft::Raft;
use tokio::sync::{mpsc, oneshot};

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::identity::NodeKeys;

pub mod attest;
pub mod audit;
pub mod backup;
pub(crate) mod batch;
pub(crate) mod checkpoint;
pub mod coalesce;
pub(crate) mod commit;
pub(crate) mod fetch;
pub mod init;
pub mod join;
pub mod machine;
pub mod membership;
pub mod metrics;
pub mod netfaults;
pub mod peer;
pub mod raft;
pub mod raftnet;
pub(crate) mod refusals;
pub(crate) mod sessions;
pub mod tls;
pub mod transport;

pub use machine::Registry;
pub use metrics::Metrics;
pub use transport::PeerHandler;

pub(crate) struct Inner {
    id: NodeId,
    config: NodeConfig,
    addr: String,
    keys: Arc<NodeKeys>,
    cert: Arc<tls::NodeCert>,
    vault: Arc<Vault>,
    raft: Raft<TypeConfig>,
    registry: MachineReader<TypeConfig, Registry>,
    /// The side records beside the replicated state (the audit log's
    /// entries, heads and tree: [`audit`]).
    side: keyquorum_store::raft::Side,
    /// The digests of this node's recent checkpoints (it vouches with them).
    checkpoints: keyquorum_store::raft::Checkpoints,
    /// The snapshot being received ([`checkpoint`]).
    receiving: checkpoint::Receiving,
    peers: peer::PeerClient,
    replay: peer::ReplayGuard,
    /// Batchable calls waiting to leave together, per peer ([`coalesce`]).
    coalescer: coalesce::Coalescer,
    /// Client signatures this node verified (an Ed25519 check is not
    /// repeated for the same bytes: `httpsig::Verifications`).
    verifications: keyquorum_core::httpsig::Verifications,
    metrics: Metrics,
    /// Which refusals are audited or logged ([`refusals`]).
    refusals: refusals::Refusals,
    /// Requests in flight per client ([`sessions`]).
    sessions: std::sync::Arc<sessions::Sessions>,
    audit_tx: mpsc::Sender<(AuditEvent, Option<oneshot::Sender<()>>)>,
    batch_tx: mpsc::UnboundedSender<batch::Pending>,
    bootstrap: BTreeMap<NodeId, NodeInfo>,
    /// This process's boot: random, stated in the log at start
    /// ([`keyquorum_wire::control::ClusterCommand::Boot`]). Signing nonces
    /// are bound to it (`keys::sign`).
    boot: keyquorum_wire::Hex32,
    /// Where capability messages go (set once at start). The dispatcher
    /// holds no `Node` (it is handed one per message), so this is no cycle.
    dispatch: OnceLock<Arc<dyn PeerHandler>>,
    /// Test hook: while set, the leader does not make Raft's membership
    /// follow the membership record (set only with `fault-injection`).
    hold_membership: std::sync::atomic::AtomicBool,
    /// Nodes' requests to join, for the operators ([`join`]).
    joins: join::Pending,
    /// The members this node joined under, if it joined with a code
    /// ([`join::JOIN_FILE`]).
    joined: Option<keyquorum_wire::api::JoinInfo>,
    /// The last readiness answer and when it was found (`/readyz` asks the
    /// leader at most once a second, one request at a time).
    readiness: tokio::sync::Mutex<Option<(std::time::Instant, keyquorum_wire::api::Readiness)>>,
    /// Set when the node stops: the tasks of [`Node::spawn`] end with it.
    stopping: tokio::sync::watch::Sender<bool>,
}

/// A handle on this node as a member of the cluster (cheap to clone).
#[derive(Clone)]
pub struct Node(Arc<Inner>);

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.0.id)
            .finish_non_exhaustive()
    }
}

/// A node whose storage is open and whose Raft core runs, not serving yet:
/// what [`Node::open`] gives the wiring (`crate::server`).
pub(crate) struct Opened {
    pub(crate) node: Node,
    pub(crate) listener: tokio::net::TcpListener,
    pub(crate) bound: SocketAddr,
    pub(crate) tls: Arc<rustls::ServerConfig>,
    pub(crate) raft_file: FileHandle,
    pub(crate) vault_file: FileHandle,
    pub(crate) audit_rx: mpsc::Receiver<(AuditEvent, Option<oneshot::Sender<()>>)>,
    pub(crate) batch_rx: mpsc::UnboundedReceiver<batch::Pending>,
}

impl Node {
    /// Open storage and start Raft, bound to `config.listen` (or to
    /// `listener` if given); serving is the caller's.
    pub(crate) async fn open(
        config: NodeConfig,
        passphrase: &Passphrase,
        listener: Option<tokio::net::TcpListener>,
    ) -> Result<Opened, NodeError> {
        config
            .check()
            .map_err(|e| NodeError::BadRequest(format!("node config: {e}")))?;
        crate::config::create_private_dir(&config.data_dir)
            .map_err(|e| NodeError::Internal(format!("data dir: {e}")))?;
        let kdf = config.kdf.map(KdfParams::from).unwrap_or_default();
        // Argon2id runs once here, before the node serves anything.
        let vault = Arc::new(Vault::open(
            &config.data_dir.join("vault.redb"),
            passphrase,
            kdf,
        )?);
        let vault_file = vault.file();
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
        let cert = Arc::new(tls::NodeCert::new(
            &keys,
            config.id,
            &tls::certificate_names(&addr, &config.tls_names),
        )?);
        let tls = tls::server_config(&cert)?;
        let (log, sm) = keyquorum_store::raft::open_with::<TypeConfig, Registry>(
            &config.data_dir.join("raft.redb"),
            Some(config.checkpoint_every),
        )
        .map_err(|e| NodeError::Internal(format!("raft storage: {e}")))?;
        let registry = sm.reader();
        let side = sm.side();
        let checkpoints = sm.checkpoints();
        let raft_file = log.file();
        let peers = peer::PeerClient::new(
            config.id,
            keys.clone(),
            cert.clone(),
            Duration::from_millis(config.peer_timeout_ms),
        )?;
        let raft = Raft::new(
            u64::from(config.id),
            raft::raft_config(config.checkpoint_every)?,
            raftnet::Network {
                client: peers.clone(),
                registry: registry.clone(),
            },
            log,
            sm,
        )
        .await
        .map_err(|e| NodeError::Internal(format!("raft: {e}")))?;
        let (audit_tx, audit_rx) = mpsc::channel(config.audit_queue);
        let (batch_tx, batch_rx) = mpsc::unbounded_channel();
        // The config's peers, and the members a join verified (`join`).
        let joined = join::joined(&config.data_dir)?;
        let bootstrap = config
            .peers
            .iter()
            .map(|p| (p.id, p.info.clone()))
            .chain(
                joined
                    .iter()
                    .flat_map(|j| j.members.iter().map(|m| (m.id, m.info.clone()))),
            )
            .filter(|(id, _)| *id != config.id)
            .collect();
        let sessions = sessions::Sessions::new(config.client_sessions);
        let node = Node(Arc::new(Inner {
            id: config.id,
            config,
            addr,
            keys,
            cert,
            vault,
            raft,
            registry,
            side,
            checkpoints,
            receiving: checkpoint::Receiving::default(),
            peers,
            replay: peer::ReplayGuard::default(),
            coalescer: coalesce::Coalescer::default(),
            verifications: keyquorum_core::httpsig::Verifications::default(),
            metrics: Metrics::default(),
            refusals: refusals::Refusals::default(),
            sessions,
            audit_tx,
            batch_tx,
            bootstrap,
            boot: {
                let mut b = [0u8; 32];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
                keyquorum_wire::Hex32(b)
            },
            dispatch: OnceLock::new(),
            hold_membership: std::sync::atomic::AtomicBool::new(false),
            joins: join::Pending::default(),
            joined,
            readiness: tokio::sync::Mutex::new(None),
            stopping: tokio::sync::watch::Sender::new(false),
        }));
        Ok(Opened {
            node,
            listener,
            bound,
            tls,
            raft_file,
            vault_file,
            audit_rx,
            batch_rx,
        })
    }

    /// Route capability messages (local and from peers) to `handler`.
    /// Set once; later calls are ignored.
    pub(crate) fn set_dispatch(&self, handler: Arc<dyn PeerHandler>) {
        let _ = self.0.dispatch.set(handler);
    }

    /// Run `task` on its own until it ends (its output) or the node stops
    /// (`None`), whichever is first. A detached task holding the node (a
    /// statement proposed in the background, a subtree being built) would
    /// otherwise outlive the node inside a call to a peer that is gone, and
    /// hold its files open.
    pub(crate) fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<Option<F::Output>>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let mut stopping = self.0.stopping.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                out = task => Some(out),
                _ = stopping.wait_for(|s| *s) => None,
            }
        })
    }

    /// End every task of [`Self::spawn`] (the node is stopping).
    pub(crate) fn stop_tasks(&self) {
        self.0.stopping.send_replace(true);
    }

    /// The vault, shared (for services that keep their own handle).
    pub(crate) fn vault_arc(&self) -> &Arc<Vault> {
        &self.0.vault
    }

    /// This node's TLS certificate (PEM), self-signed by its identity key:
    /// what clients add to their trusted roots.
    pub fn certificate_pem(&self) -> String {
        self.0.cert.pem()
    }

    /// The last `/readyz` answer and when it was found.
    pub(crate) fn readiness(
        &self,
    ) -> &tokio::sync::Mutex<Option<(std::time::Instant, keyquorum_wire::api::Readiness)>> {
        &self.0.readiness
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.0.id
    }

    /// This process's boot id (random at every start).
    pub fn boot(&self) -> keyquorum_wire::Hex32 {
        self.0.boot
    }

    /// What this node runs (software attestation: `attest`).
    pub fn measurement(&self) -> keyquorum_wire::control::Measurement {
        use attest::Attestation as _;
        attest::SoftwareAttestation.measure(self.config())
    }

    /// Whether the log's latest boot of this node is this process's: its
    /// boot statement is applied here and no later start of this node (a
    /// restore, a clone) has stated another since.
    pub fn boot_confirmed(&self) -> bool {
        let mine = self.0.boot;
        self.registry(|r| r.boots.get(&self.0.id) == Some(&mine))
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

    /// The test hook for network faults (`netfaults`).
    #[cfg(feature = "fault-injection")]
    pub fn net_faults(&self) -> &netfaults::NetFaults {
        self.0.peers.net()
    }

    /// Whether a test made this node serve altered sessions' inputs.
    pub(crate) fn forges_he_inputs(&self) -> bool {
        self.0.peers.net().forges_he_inputs()
    }

    /// This node's clock, ms since the Unix epoch: what it stamps its
    /// statements, proposals and messages with and checks freshness by
    /// (the system's; skewed only by a test, `netfaults`).
    pub fn now_ms(&self) -> u64 {
        self.0.peers.net().now_ms()
    }

    /// The Raft handle.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.0.raft
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The client signatures this node verified.
    pub(crate) fn verifications(&self) -> &keyquorum_core::httpsig::Verifications {
        &self.0.verifications
    }

    /// Side records of `space` with keys `from` and above, at most `limit`
    /// (a capability's records beside the replicated state).
    pub(crate) fn side_records(
        &self,
        space: u32,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, NodeError> {
        self.0
            .side
            .range(space, from, limit)
            .map_err(|e| NodeError::Internal(format!("side records: {e}")))
    }

    /// As [`Node::side_records`], at most about `max_bytes` of values (at
    /// least one record).
    pub(crate) fn side_records_within(
        &self,
        space: u32,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, NodeError> {
        self.0
            .side
            .range_within(space, from, limit, max_bytes)
            .map_err(|e| NodeError::Internal(format!("side records: {e}")))
    }

    /// The keys of side records of `space` from `from` on, at most `limit`.
    pub(crate) fn side_keys(
        &self,
        space: u32,
        from: u64,
        limit: usize,
    ) -> Result<Vec<u64>, NodeError> {
        self.0
            .side
            .keys(space, from, limit)
            .map_err(|e| NodeError::Internal(format!("side records: {e}")))
    }

    /// Store side records a capability fetched and checked (durably: they
    /// are not in the log to be applied again).
    pub(crate) fn put_side_records(
        &self,
        writes: &[keyquorum_store::raft::SideWrite],
    ) -> Result<(), NodeError> {
        self.0
            .side
            .put(writes, true)
            .map_err(|e| NodeError::Internal(format!("side records: {e}")))
    }

    /// Read the replicated registry.
    pub fn registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        self.0.registry.read(f)
    }

    /// Refused (409) unless the cluster has taken up apply rules `min`,
    /// which `what` (a capability, in the plural) needs.
    pub fn require_rules(&self, min: u16, what: &str) -> Result<(), NodeError> {
        let rules = self.registry(|r| r.rules_to_stamp());
        if rules < min {
            return Err(NodeError::Conflict(format!(
                "{what} need apply rules {min}; the cluster is at {rules} until every member \
                 runs a build that knows them"
            )));
        }
        Ok(())
    }

    /// `f` of this replica; if it finds nothing, `f` again after a read
    /// barrier (what another node committed a moment ago may not have
    /// reached this one).
    pub async fn registry_fresh<T>(&self, f: impl Fn(&Registry) -> Option<T>) -> Option<T> {
        if let Some(v) = self.registry(&f) {
            return Some(v);
        }
        if let Err(e) = self.read_barrier().await {
            tracing::debug!(error = %e, "read barrier failed");
        }
        self.registry(&f)
    }

    /// The last applied log index.
    pub fn applied_index(&self) -> Option<u64> {
        self.0.registry.applied_index()
    }

    /// Whether this node holds log entries it has not applied yet (just
    /// restarted and replaying, or behind under load): what it does not
    /// know may be in them.
    pub fn catching_up(&self) -> bool {
        let last_log = self.0.raft.metrics().borrow().last_log_index;
        last_log.unwrap_or(0) > self.applied_index().unwrap_or(0)
    }

    /// The current leader, if known.
    pub fn leader(&self) -> Option<NodeId> {
        let leader = self.0.raft.metrics().borrow().current_leader;
        leader.and_then(|l| NodeId::try_from(l).ok())
    }

    pub(crate) fn count_peer_reject(&self) {
        self.0.metrics.peer_rejects.fetch_add(1, Ordering::Relaxed);
    }
}
