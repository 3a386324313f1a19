//! Node configuration (`node.toml` for `keyquorum node`; built in code by
//! `keyquorum dev` and the test kit).

use std::net::SocketAddr;
use std::path::PathBuf;

use keyquorum_store::vault::KdfParams;
use keyquorum_wire::control::NodeInfo;
use keyquorum_wire::NodeId;
use serde::{Deserialize, Serialize};

/// Everything a node needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeConfig {
    /// This node's id (1..=65535; also its participant index in shared keys).
    pub id: NodeId,
    /// Where its redb files live.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0: the OS picks).
    pub listen: SocketAddr,
    /// Base URL peers and clients use; default `https://<bound address>`.
    /// Every connection is TLS 1.3 (see [`crate::cluster::tls`]).
    #[serde(default)]
    pub advertise: Option<String>,
    /// More names (DNS names or IP addresses) clients may dial this node
    /// by; the advertised host is always in the certificate.
    #[serde(default)]
    pub tls_names: Vec<String>,
    /// Known peers and their public keys, trusted for Raft traffic until the
    /// membership in the log names them (bootstrap and joining).
    #[serde(default)]
    pub peers: Vec<PeerEntry>,
    /// Nonces each signer keeps precomputed per key for this coordinator
    /// (0: fetch a fresh commitment for every signature, two round trips).
    #[serde(default = "default_pool")]
    pub nonce_pool: usize,
    /// Batches of peer messages this node may have on their way to one
    /// member at once (`cluster::coalesce`): calls of concurrent requests
    /// to the same member (signature shares, leaf locks, OPRF steps) that
    /// find them all out leave together in the next (0: every message goes
    /// alone).
    #[serde(default = "default_peer_batches")]
    pub peer_batches: usize,
    /// Argon2id cost for a new vault (memory KiB, passes, lanes).
    #[serde(default)]
    pub kdf: Option<KdfConfig>,
    /// Timeout for one peer call, milliseconds.
    #[serde(default = "default_peer_timeout")]
    pub peer_timeout_ms: u64,
    /// Take a snapshot of the control plane at every multiple of this log
    /// index. **The same on every node**: a replica installs a snapshot a
    /// leader sends only once other members vouch for it with their own
    /// checkpoint at the same index (`cluster::checkpoint`).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// A connection that has not sent a whole request head this long after
    /// it opened (TLS handshake included) or after its last answer (an
    /// idle keep-alive connection) is closed, milliseconds.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_ms: u64,
    /// Most clients' connections served at once; past it, a new one is
    /// closed at once (known nodes' connections have slots of their own).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most clients' connections served at once from one source (an IPv4
    /// address, or an IPv6 /64: one host's usual share), so one source
    /// cannot take every slot; past it, a new one is closed at once.
    #[serde(default = "default_max_connections_per_source")]
    pub max_connections_per_source: usize,
    /// Audit events that may wait for the log, at most. A log that cannot
    /// commit (no quorum) fills the queue; requests are then refused with
    /// 503 before they run, while an eighth of it is kept for the node's
    /// own events and the outcomes of requests already admitted.
    #[serde(default = "default_audit_queue")]
    pub audit_queue: usize,
    /// Requests one client may have in flight on this node at once (its
    /// signing sessions, key generations, exports, reads); past it, 429.
    #[serde(default = "default_client_sessions")]
    pub client_sessions: usize,
    /// Where this node sends the reset fragments of the accounts it guards
    /// whose channel is `email:ADDR` (`[smtp]`); without it those
    /// deliveries fail with a clear error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpConfig>,
    /// Deliver reset fragments to `webhook:http://` URLs and to loopback,
    /// private and link-local addresses (a dev cluster and tests). Off,
    /// a webhook is `https://` to a public address only, the address
    /// resolved once and pinned for the request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_private_webhooks: bool,
}

/// The `[smtp]` section: an SMTP server for reset fragments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `HOST:PORT`. The session is upgraded with STARTTLS (the server's
    /// certificate checked against the Web PKI roots) unless HOST is a
    /// loopback address or `localhost`.
    pub server: String,
    /// The `From:` address.
    pub from: String,
    /// SMTP AUTH user name, if the server wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// A file (0600) holding the SMTP AUTH password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// A trusted peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerEntry {
    /// Its id.
    pub id: NodeId,
    /// Its address and keys.
    pub info: NodeInfo,
}

/// Argon2id parameters in the config file.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct KdfConfig {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl From<KdfConfig> for KdfParams {
    fn from(k: KdfConfig) -> Self {
        KdfParams {
            m_kib: k.m_kib,
            t: k.t,
            p: k.p,
        }
    }
}

fn default_peer_batches() -> usize {
    NodeConfig::DEFAULT_PEER_BATCHES
}

fn default_pool() -> usize {
    32
}

fn default_peer_timeout() -> u64 {
    5_000
}

fn default_checkpoint_every() -> u64 {
    NodeConfig::DEFAULT_CHECKPOINT_EVERY
}

fn default_header_read_timeout() -> u64 {
    30_000
}

fn default_max_connections() -> usize {
    4_096
}

fn default_max_connections_per_source() -> usize {
    1_024
}

fn default_audit_queue() -> usize {
    NodeConfig::DEFAULT_AUDIT_QUEUE
}

fn default_client_sessions() -> usize {
    NodeConfig::DEFAULT_CLIENT_SESSIONS
}

impl NodeConfig {
    /// Whether the settings are within their bounds (checked at start).
    pub fn check(&self) -> Result<(), String> {
        if !(100..=3_600_000).contains(&self.header_read_timeout_ms) {
            return Err(format!(
                "header_read_timeout_ms is {}; it must be 100 to 3,600,000 (clients and peers \
                 drop idle connections after 20 s: below that, they may send on one the node is \
                 closing)",
                self.header_read_timeout_ms
            ));
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(format!(
                "max_connections is {}; it must be 1 to 1,000,000",
                self.max_connections
            ));
        }
        if !(1..=self.max_connections).contains(&self.max_connections_per_source) {
            return Err(format!(
                "max_connections_per_source is {}; it must be 1 to max_connections ({})",
                self.max_connections_per_source, self.max_connections
            ));
        }
        if !(1_024..=16_777_216).contains(&self.audit_queue) {
            return Err(format!(
                "audit_queue is {}; it must be 1,024 to 16,777,216",
                self.audit_queue
            ));
        }
        if !(1..=1_000_000).contains(&self.client_sessions) {
            return Err(format!(
                "client_sessions is {}; it must be 1 to 1,000,000",
                self.client_sessions
            ));
        }
        if self.peer_batches > 64 {
            return Err("peer_batches must be 0 to 64".into());
        }
        if self.checkpoint_every == 0 {
            return Err("checkpoint_every must be at least 1".into());
        }
        Ok(())
    }

    /// The default of [`NodeConfig::audit_queue`].
    pub const DEFAULT_AUDIT_QUEUE: usize = 65_536;

    /// The default of [`NodeConfig::peer_batches`].
    /// One measured best at concurrency 64 (BENCHMARKS.md, stop 43):
    /// while a batch is on its way, the next gathers.
    pub const DEFAULT_PEER_BATCHES: usize = 1;

    /// The default of [`NodeConfig::client_sessions`].
    pub const DEFAULT_CLIENT_SESSIONS: usize = 256;

    /// The default of [`NodeConfig::checkpoint_every`].
    pub const DEFAULT_CHECKPOINT_EVERY: u64 = 5_000;

    /// A config with defaults for everything but id, directory and address.
    pub fn new(id: NodeId, data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            id,
            data_dir,
            listen,
            advertise: None,
            tls_names: Vec::new(),
            peers: Vec::new(),
            nonce_pool: default_pool(),
            peer_batches: default_peer_batches(),
            kdf: None,
            peer_timeout_ms: default_peer_timeout(),
            checkpoint_every: default_checkpoint_every(),
            header_read_timeout_ms: default_header_read_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_source: default_max_connections_per_source(),
            audit_queue: default_audit_queue(),
            client_sessions: default_client_sessions(),
            smtp: None,
            allow_private_webhooks: false,
        }
    }
}

/// Create directory `path` (and its missing parents) private to this user:
/// mode 0700 from the start. An existing directory that others may read
/// or enter is made 0700 (with a warning).
pub fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        let existed = path.is_dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)?;
        if existed {
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    dir = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "data directory was open to others: made 0700"
                );
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(path)
    }
}

/// Create a private file at `path` holding `bytes`: mode 0600 from the
/// start, never replacing an existing file or following a symlink there
/// (`AlreadyExists` if anything is at `path`), synced before it returns.
pub fn create_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Replace the file at `path` with `bytes`, whole: written to
/// `path.tmp` (mode 0600, synced), renamed over `path`, the directory
/// synced where it can be. A crash leaves the old file or the new one.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    create_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            // Best effort: not every platform syncs a directory.
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// New directories (parents included) are 0700; an existing one open
    /// to others is closed; secret files are 0600 and never replace what
    /// is there.
    #[test]
    fn data_directories_and_secret_files_are_private() {
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_private_dir(&deep).unwrap();
        for d in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&dir.path().join(d)), 0o700, "{d}");
        }
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
        let f = deep.join("secret");
        create_private(&f, b"x").unwrap();
        assert_eq!(mode(&f), 0o600);
        let again = create_private(&f, b"y").unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&f).unwrap(), b"x");
        // Replacing one whole keeps it private.
        write_private(&f, b"z").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"z");
        assert_eq!(mode(&f), 0o600);
        assert!(!deep.join("secret.tmp").exists());
    }
}
