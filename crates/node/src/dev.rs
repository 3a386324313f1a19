//! A whole cluster in one process on loopback: what `keyquorum dev` runs and
//! what the test kit builds on. Each node has its own directory, vault and
//! Raft file under one data directory; ports are chosen by the OS on first
//! start and kept in `cluster.json` so a restart finds the same addresses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyquorum_core::httpsig::ClientKey;
use keyquorum_store::vault::KdfParams;
use keyquorum_store::{Passphrase, Vault};
use keyquorum_wire::api::AddNodeRequest;
use keyquorum_wire::control::NodeInfo;
use keyquorum_wire::Hex32;
use keyquorum_wire::NodeId;
use serde::{Deserialize, Serialize};

use crate::cluster::Node;
use crate::config::{KdfConfig, NodeConfig, PeerEntry};
use crate::error::NodeError;
use crate::identity::NodeKeys;
use crate::keys::Keys;
use crate::server::RunningNode;

/// Options for a local cluster.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Number of nodes.
    pub nodes: u16,
    /// Default threshold for new keys.
    pub threshold: u16,
    /// Where everything lives.
    pub data_dir: PathBuf,
    /// Vault key derivation cost.
    pub kdf: KdfParams,
    /// Nonces precomputed per signer and key.
    pub nonce_pool: usize,
    /// Batches of peer messages on their way to one member at once
    /// (`NodeConfig::peer_batches`).
    pub peer_batches: usize,
    /// Control-plane checkpoint interval (`NodeConfig::checkpoint_every`).
    pub checkpoint_every: u64,
    /// Audit queue bound (`NodeConfig::audit_queue`).
    pub audit_queue: usize,
    /// Requests in flight per client (`NodeConfig::client_sessions`).
    pub client_sessions: usize,
    /// An SMTP server (`HOST:PORT`) every node sends email fragments to
    /// (`NodeConfig::smtp`, from `keyquorum-node-ID@localhost`).
    pub smtp: Option<String>,
}

/// What `cluster.json` remembers.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Layout {
    ports: BTreeMap<NodeId, u16>,
    threshold: u16,
    kdf: KdfConfig,
    nonce_pool: usize,
    #[serde(default = "default_peer_batches")]
    peer_batches: usize,
    #[serde(default = "default_checkpoint_every")]
    checkpoint_every: u64,
    #[serde(default = "default_audit_queue")]
    audit_queue: usize,
    #[serde(default = "default_client_sessions")]
    client_sessions: usize,
}

fn default_peer_batches() -> usize {
    NodeConfig::DEFAULT_PEER_BATCHES
}

fn default_client_sessions() -> usize {
    NodeConfig::DEFAULT_CLIENT_SESSIONS
}

fn default_audit_queue() -> usize {
    NodeConfig::DEFAULT_AUDIT_QUEUE
}

fn default_checkpoint_every() -> u64 {
    NodeConfig::DEFAULT_CHECKPOINT_EVERY
}

/// A running local cluster.
#[derive(Debug)]
pub struct LocalCluster {
    /// Running nodes by id (`None`: stopped).
    pub nodes: BTreeMap<NodeId, Option<RunningNode>>,
    /// The first admin client's key (also in `DATA_DIR/admin.key`).
    pub admin: ClientKey,
    /// The one operator's key (also in `DATA_DIR/operator.key`): the dev
    /// cluster's operator quorum is 1.
    pub operator: ClientKey,
    data_dir: PathBuf,
    passphrase: Passphrase,
    layout: Layout,
    infos: BTreeMap<NodeId, NodeInfo>,
    certs: BTreeMap<NodeId, String>,
    smtp: Option<String>,
}

/// 24 random bytes, hex.
fn random_hex() -> String {
    let mut b = [0u8; 24];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

fn io(e: std::io::Error) -> NodeError {
    NodeError::Internal(e.to_string())
}

/// Open a node's vault once to create (or read) its identity.
pub fn prepare_identity(
    dir: &Path,
    passphrase: &Passphrase,
    kdf: KdfParams,
) -> Result<NodeKeys, NodeError> {
    crate::config::create_private_dir(dir).map_err(io)?;
    let vault = Vault::open(&dir.join("vault.redb"), passphrase, kdf)?;
    NodeKeys::load_or_create(&vault)
}

impl LocalCluster {
    /// Start (or restart) the cluster under `opts.data_dir`.
    pub async fn start(opts: DevOptions, passphrase: Passphrase) -> Result<Self, NodeError> {
        crate::config::create_private_dir(&opts.data_dir).map_err(io)?;
        let layout_path = opts.data_dir.join("cluster.json");
        let existing: Option<Layout> = match std::fs::read(&layout_path) {
            Ok(b) => Some(
                serde_json::from_slice(&b)
                    .map_err(|e| NodeError::Internal(format!("cluster.json: {e}")))?,
            ),
            Err(_) => None,
        };
        let fresh = existing.is_none();
        let mut listeners = BTreeMap::new();
        let layout = match existing {
            Some(l) => {
                for (id, port) in &l.ports {
                    let l =
                        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], *port)))
                            .await
                            .map_err(|e| {
                                NodeError::Internal(format!(
                                    "port {port} of node {id} is taken: {e}"
                                ))
                            })?;
                    listeners.insert(*id, l);
                }
                l
            }
            None => {
                if opts.nodes < 1 || opts.threshold < 2 || opts.threshold > opts.nodes {
                    return Err(NodeError::BadRequest("need 2 <= threshold <= nodes".into()));
                }
                let mut ports = BTreeMap::new();
                for id in (1..=opts.nodes).filter_map(NodeId::new) {
                    let l = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                        .await
                        .map_err(io)?;
                    ports.insert(id, l.local_addr().map_err(io)?.port());
                    listeners.insert(id, l);
                }
                let l = Layout {
                    ports,
                    threshold: opts.threshold,
                    kdf: KdfConfig {
                        m_kib: opts.kdf.m_kib,
                        t: opts.kdf.t,
                        p: opts.kdf.p,
                    },
                    nonce_pool: opts.nonce_pool,
                    peer_batches: opts.peer_batches,
                    checkpoint_every: opts.checkpoint_every,
                    audit_queue: opts.audit_queue,
                    client_sessions: opts.client_sessions,
                };
                std::fs::write(
                    &layout_path,
                    serde_json::to_vec_pretty(&l)
                        .map_err(|e| NodeError::Internal(e.to_string()))?,
                )
                .map_err(io)?;
                l
            }
        };
        let mut infos = BTreeMap::new();
        for (id, port) in &layout.ports {
            let keys = prepare_identity(
                &node_dir(&opts.data_dir, *id),
                &passphrase,
                layout.kdf.into(),
            )?;
            infos.insert(*id, keys.info(format!("https://127.0.0.1:{port}")));
        }
        let mut cluster = Self {
            nodes: BTreeMap::new(),
            admin: ClientKey::generate("admin", &mut rand_core::OsRng),
            operator: ClientKey::generate("operator", &mut rand_core::OsRng),
            data_dir: opts.data_dir.clone(),
            passphrase,
            layout,
            infos,
            certs: BTreeMap::new(),
            smtp: opts.smtp.clone(),
        };
        for (id, listener) in listeners {
            let running = cluster.start_node_with(id, Some(listener)).await?;
            cluster.certs.insert(id, running.node.certificate_pem());
            cluster.nodes.insert(id, Some(running));
        }
        cluster.write_ca()?;
        let key_file = cluster.admin_key_path();
        let operator_file = cluster.operator_key_path();
        if fresh {
            // The private keys are on disk before their public keys are
            // registered: a registered admin is never without its key.
            for (key, file) in [
                (&cluster.admin, &key_file),
                (&cluster.operator, &operator_file),
            ] {
                let pem = key
                    .to_pkcs8_pem()
                    .map_err(|e| NodeError::Internal(e.to_string()))?;
                write_private(file, pem.as_bytes())?;
            }
            let first = cluster.any_node()?;
            first.initialize(cluster.infos.clone()).await?;
            // `keyquorum init`, done here for the nodes of this process:
            // one operator (quorum 1) and the first admin, stated by every
            // voting member together (apply accepts that only while the
            // registry has no client). A real cluster's members each sign
            // only for a caller that proves it holds their init secret.
            let body = keyquorum_wire::api::InitBody {
                operators: vec![keyquorum_wire::api::NamedKey {
                    name: cluster.operator.name().to_string(),
                    public_key: Hex32(cluster.operator.public_key()),
                }],
                quorum: 1,
                admin: keyquorum_wire::api::NamedKey {
                    name: cluster.admin.name().to_string(),
                    public_key: Hex32(cluster.admin.public_key()),
                },
                default_threshold: Some(cluster.layout.threshold),
                nodes: cluster.infos.keys().copied().collect(),
            };
            let founders: Vec<keyquorum_wire::control::Founder> = cluster
                .infos
                .iter()
                .map(|(id, info)| keyquorum_wire::control::Founder {
                    id: *id,
                    info: info.clone(),
                })
                .collect();
            let command = crate::cluster::init::init_command(&body, &founders)?;
            let mut nonce = [0u8; 16];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
            let time_ms = crate::cluster::peer::now_ms();
            let signatures = cluster
                .nodes
                .values()
                .flatten()
                .map(|r| r.node.members_signature(time_ms, &nonce, &command))
                .collect();
            first
                .commit(keyquorum_wire::control::Authorized {
                    command,
                    by: keyquorum_wire::control::Authority::Members {
                        time_ms,
                        nonce: keyquorum_wire::Hex(nonce.to_vec()),
                        signatures,
                    },
                })
                .await?;
        } else {
            let pem = zeroize::Zeroizing::new(std::fs::read_to_string(&key_file).map_err(io)?);
            cluster.admin = ClientKey::from_pkcs8_pem("admin", &pem)
                .map_err(|e| NodeError::Internal(format!("{}: {e}", key_file.display())))?;
            // Clusters made before operators existed have no operator key.
            if let Ok(pem) = std::fs::read_to_string(&operator_file).map(zeroize::Zeroizing::new) {
                cluster.operator = ClientKey::from_pkcs8_pem("operator", &pem).map_err(|e| {
                    NodeError::Internal(format!("{}: {e}", operator_file.display()))
                })?;
            }
        }
        cluster.wait_ready(Duration::from_secs(30)).await?;
        // Messaging endpoints' sealed files (`keyquorum msg`) for this dev
        // cluster: a directory beside it and one passphrase, kept.
        let endpoint_pass = opts.data_dir.join("endpoint-passphrase");
        let endpoint_pass = match std::fs::read_to_string(&endpoint_pass) {
            Ok(p) => p.trim().to_string(),
            Err(_) => {
                let p = random_hex();
                write_private(&endpoint_pass, p.as_bytes())?;
                p
            }
        };
        let env = format!(
            "KEYQUORUM_URL={}\nKEYQUORUM_KEY_FILE={}\nKEYQUORUM_KEY_ID={}\n\
             KEYQUORUM_OPERATOR_KEY_FILE={}\nKEYQUORUM_OPERATOR_KEY_ID={}\n\
             KEYQUORUM_CA_CERT={}\n\
             KEYQUORUM_ENDPOINT_DIR={}\nKEYQUORUM_ENDPOINT_PASSPHRASE={}\n",
            cluster.url(),
            key_file.display(),
            cluster.admin.name(),
            operator_file.display(),
            cluster.operator.name(),
            cluster.ca_path().display(),
            opts.data_dir.join("endpoints").display(),
            endpoint_pass,
        );
        write_private(&opts.data_dir.join("client.env"), env.as_bytes())?;
        Ok(cluster)
    }

    fn node_config(&self, id: NodeId) -> NodeConfig {
        let port = self.layout.ports.get(&id).copied().unwrap_or(0);
        let mut c = NodeConfig::new(
            id,
            node_dir(&self.data_dir, id),
            SocketAddr::from(([127, 0, 0, 1], port)),
        );
        c.peers = self
            .infos
            .iter()
            .map(|(id, info)| PeerEntry {
                id: *id,
                info: info.clone(),
            })
            .collect();
        c.tls_names = vec!["localhost".into()];
        c.kdf = Some(self.layout.kdf);
        c.nonce_pool = self.layout.nonce_pool;
        c.peer_batches = self.layout.peer_batches;
        c.checkpoint_every = self.layout.checkpoint_every;
        c.audit_queue = self.layout.audit_queue;
        c.client_sessions = self.layout.client_sessions;
        // Webhooks of a local cluster are local too.
        c.allow_private_webhooks = true;
        c.smtp = self.smtp.as_ref().map(|server| crate::config::SmtpConfig {
            server: server.clone(),
            from: format!("keyquorum-node-{id}@localhost"),
            username: None,
            password_file: None,
        });
        c
    }

    async fn start_node_with(
        &self,
        id: NodeId,
        listener: Option<tokio::net::TcpListener>,
    ) -> Result<RunningNode, NodeError> {
        Node::start(self.node_config(id), &self.passphrase, listener).await
    }

    /// Some running node.
    pub fn any_node(&self) -> Result<Node, NodeError> {
        self.nodes
            .values()
            .flatten()
            .map(|r| r.node.clone())
            .next()
            .ok_or_else(|| NodeError::Unavailable("no node is running".into()))
    }

    /// Every running node.
    pub fn running(&self) -> Vec<Node> {
        self.nodes
            .values()
            .filter_map(|r| r.as_ref().map(|r| r.node.clone()))
            .collect()
    }

    /// A running node by id.
    pub fn node(&self, id: NodeId) -> Option<Node> {
        self.nodes
            .get(&id)
            .and_then(|r| r.as_ref())
            .map(|r| r.node.clone())
    }

    /// The shared keys of a running node by id (test hooks included).
    pub fn keys(&self, id: NodeId) -> Option<std::sync::Arc<Keys>> {
        self.nodes
            .get(&id)
            .and_then(|r| r.as_ref())
            .map(|r| r.keys.clone())
    }

    /// The API URL of the first running node.
    pub fn url(&self) -> String {
        self.nodes
            .values()
            .flatten()
            .next()
            .map(|r| format!("https://{}", r.addr))
            .unwrap_or_default()
    }

    /// The API URL of node `id`.
    pub fn url_of(&self, id: NodeId) -> String {
        self.infos
            .get(&id)
            .map(|i| i.addr.clone())
            .unwrap_or_default()
    }

    /// Every node's TLS certificate (PEM, concatenated): the roots a
    /// client trusts to reach this cluster.
    pub fn ca_pem(&self) -> String {
        self.certs.values().map(String::as_str).collect()
    }

    /// Where [`Self::ca_pem`] is written (`<data-dir>/ca.pem`, absolute
    /// when the working directory is known).
    pub fn ca_path(&self) -> PathBuf {
        let p = self.data_dir.join("ca.pem");
        std::path::absolute(&p).unwrap_or(p)
    }

    /// Where the admin client's private key is (PKCS#8 PEM, 0600).
    pub fn admin_key_path(&self) -> PathBuf {
        self.data_dir.join("admin.key")
    }

    /// Where the operator's private key is (PKCS#8 PEM, 0600).
    pub fn operator_key_path(&self) -> PathBuf {
        self.data_dir.join("operator.key")
    }

    fn write_ca(&self) -> Result<(), NodeError> {
        std::fs::write(self.ca_path(), self.ca_pem()).map_err(io)
    }

    /// Every node's public description.
    pub fn infos(&self) -> &BTreeMap<NodeId, NodeInfo> {
        &self.infos
    }

    /// Wait until every running node knows a leader, has applied the admin
    /// client and has its start in the log (polled, not slept).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), NodeError> {
        let admin = self.admin.public_key();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ready = self.nodes.values().flatten().all(|r| {
                r.node.leader().is_some()
                    && r.node.boot_confirmed()
                    && r.node.registry(|g| {
                        g.clients
                            .get("admin")
                            .is_some_and(|c| c.public_key.0 == admin)
                    })
            });
            if ready {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(NodeError::Unavailable(
                    "cluster did not become ready".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop one node (its files stay).
    pub async fn stop_node(&mut self, id: NodeId) {
        if let Some(slot) = self.nodes.get_mut(&id) {
            if let Some(r) = slot.take() {
                r.stop().await;
            }
        }
    }

    /// Start a stopped node again on its port.
    pub async fn restart_node(&mut self, id: NodeId) -> Result<(), NodeError> {
        self.stop_node(id).await;
        let port = self
            .layout
            .ports
            .get(&id)
            .copied()
            .ok_or_else(|| NodeError::NotFound(format!("no node {id}")))?;
        // The old socket may linger briefly after shutdown, and a task of
        // the old node that outlived `stop`'s wait may hold its files a
        // moment longer: retry until a deadline.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let running = loop {
            let listener = loop {
                match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await
                {
                    Ok(l) => break l,
                    Err(e) if tokio::time::Instant::now() < deadline => {
                        tracing::debug!(error = %e, "port busy, retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => return Err(io(e)),
                }
            };
            match self.start_node_with(id, Some(listener)).await {
                Ok(r) => break r,
                Err(e)
                    if tokio::time::Instant::now() < deadline
                        && e.to_string().contains("already open") =>
                {
                    tracing::debug!(error = %e, "files still held, retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.nodes.insert(id, Some(running));
        Ok(())
    }

    /// Start a new node that is not yet a member (it trusts the current
    /// nodes as bootstrap peers) and return what adds it (a
    /// [`Change::AddNode`](keyquorum_wire::control::Change::AddNode) the
    /// operator quorum approves).
    pub async fn spawn_node(&mut self) -> Result<AddNodeRequest, NodeError> {
        let next = self
            .layout
            .ports
            .keys()
            .max()
            .map_or(1, |m| m.get().saturating_add(1));
        let id = NodeId::new(next)
            .filter(|id| !self.layout.ports.contains_key(id))
            .ok_or_else(|| NodeError::BadRequest("no node id left".into()))?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(io)?;
        let port = listener.local_addr().map_err(io)?.port();
        let keys = prepare_identity(
            &node_dir(&self.data_dir, id),
            &self.passphrase,
            self.layout.kdf.into(),
        )?;
        let info = keys.info(format!("https://127.0.0.1:{port}"));
        self.layout.ports.insert(id, port);
        self.infos.insert(id, info.clone());
        std::fs::write(
            self.data_dir.join("cluster.json"),
            serde_json::to_vec_pretty(&self.layout)
                .map_err(|e| NodeError::Internal(e.to_string()))?,
        )
        .map_err(io)?;
        let running = self.start_node_with(id, Some(listener)).await?;
        self.certs.insert(id, running.node.certificate_pem());
        self.nodes.insert(id, Some(running));
        self.write_ca()?;
        Ok(AddNodeRequest {
            id,
            addr: info.addr,
            identity: info.identity,
            hpke: info.hpke,
            voter: true,
        })
    }

    /// Stop every node.
    pub async fn shutdown(mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop_node(id).await;
        }
    }
}

fn node_dir(data_dir: &Path, id: NodeId) -> PathBuf {
    data_dir.join(format!("node-{id}"))
}

/// Write a private file: created with mode 0600 from the start (never
/// readable by others, not even for a moment), replacing an older file by
/// rename, never following a symlink at `path`.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp-private");
    let _ = std::fs::remove_file(&tmp);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    let mut f = o.open(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
