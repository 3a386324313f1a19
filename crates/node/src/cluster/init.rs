//! Initialising a new cluster (`keyquorum init`, DESIGN.md §4 item 4): its
//! operators, their quorum and the first admin client.
//!
//! No client exists yet to authorize this, and whoever reaches a new
//! cluster's API first must not be able to claim it. So:
//! - each node, while its registry has no client, keeps a one-time *init
//!   secret* in its data directory ([`INIT_SECRET_FILE`], 32 random bytes
//!   in hex, created 0600), readable only by whoever runs the node;
//! - `keyquorum init` reads those files and, for each, signs the
//!   [`InitBody`] with the Ed25519 key derived from the secret
//!   ([`init_key`]); the secrets never leave the operator's machine;
//! - every voting member, asked to co-sign the init command, signs only if
//!   a proof under the init key of *its own* secret verifies over the very
//!   body it builds the command from (`Node::init_sign`);
//! - apply accepts the command only with every voter's signature, and only
//!   while the registry has no client (`machine::authority`). So neither a
//!   stranger nor a member (nor t − 1 of them) can initialise a cluster
//!   alone: each honest voter waits for the proof of its own secret.
//!
//! Once the registry has a client, a node deletes its init secret
//! ([`tidy_init_secret`]).

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};
use keyquorum_wire::api::{init_statement, InitBody, InitProof, InitRequest};
use keyquorum_wire::control::{
    Authority, Authorized, ClientRecord, ClusterCommand, Command, Founder, Grant,
};
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::{Hex, Hex32, NodeId};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::machine::operators::operator_record;
use super::Node;
use crate::error::NodeError;

/// The init secret's file in a node's data directory.
pub const INIT_SECRET_FILE: &str = "init-secret";

/// Most operators `keyquorum init` registers.
pub const MAX_OPERATORS: usize = 64;

/// A node's one-time init secret, and the node it is for.
pub struct InitSecret(Zeroizing<[u8; 32]>, Option<NodeId>);

impl core::fmt::Debug for InitSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("InitSecret(<redacted>)")
    }
}

impl InitSecret {
    /// Read a secret file: 64 hex digits on the first line, then
    /// `node ID` (files from before the node line: the first line only).
    pub fn read(path: &Path) -> Result<Self, NodeError> {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                NodeError::BadRequest(format!("init secret {}: {e}", path.display()))
            })?);
        let bad =
            |what: &str| NodeError::BadRequest(format!("init secret {}: {what}", path.display()));
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(lines.next().unwrap_or_default(), bytes.as_mut_slice())
            .map_err(|_| bad("the first line is not 64 hex digits"))?;
        let node = match lines.next() {
            None => None,
            Some(l) => Some(
                l.strip_prefix("node ")
                    .and_then(|n| n.trim().parse::<NodeId>().ok())
                    .ok_or_else(|| bad("the second line is not `node ID`"))?,
            ),
        };
        Ok(InitSecret(bytes, node))
    }

    /// The node the secret is for (files from before the node line: none).
    pub fn node(&self) -> Option<NodeId> {
        self.1
    }

    /// The Ed25519 key derived from the secret: its seed is SHA-256 of a
    /// domain label and the secret.
    pub fn key(&self) -> SigningKey {
        let mut h = Sha256::new();
        h.update(b"keyquorum-init-key-v1\x00");
        h.update(self.0.as_slice());
        let seed = Zeroizing::new(<[u8; 32]>::from(h.finalize()));
        SigningKey::from_bytes(&seed)
    }

    /// A proof of this secret over `body`.
    pub fn prove(&self, body: &InitBody) -> InitProof {
        let key = self.key();
        InitProof {
            key: Hex32(key.verifying_key().to_bytes()),
            signature: Hex(key.sign(&init_statement(body)).to_bytes().to_vec()),
        }
    }
}

/// The Ed25519 key `keyquorum init` derives from a node's init secret
/// file.
pub fn init_key(path: &Path) -> Result<SigningKey, NodeError> {
    Ok(InitSecret::read(path)?.key())
}

fn secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join(INIT_SECRET_FILE)
}

/// Keep the init secret as long as the registry has no client: create it
/// for node `node` (0600, never replacing a file; a file from before the
/// node line gets it) if it is missing, delete it once the cluster is
/// initialised.
pub fn tidy_init_secret(data_dir: &Path, node: NodeId, initialised: bool) -> Result<(), NodeError> {
    let path = secret_path(data_dir);
    if initialised {
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NodeError::Internal(format!("{}: {e}", path.display()))),
        }
    } else {
        let mut secret = Zeroizing::new([0u8; 32]);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, secret.as_mut_slice());
        let text = Zeroizing::new(format!("{}\nnode {node}\n", hex::encode(secret.as_slice())));
        match crate::config::create_private(&path, text.as_bytes()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let io =
                    |e: std::io::Error| NodeError::Internal(format!("{}: {e}", path.display()));
                if InitSecret::read(&path)?.node().is_none() {
                    use std::io::Write as _;
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&path)
                        .map_err(io)?;
                    writeln!(f, "node {node}").map_err(io)?;
                }
                Ok(())
            }
            Err(e) => Err(NodeError::Internal(format!("{}: {e}", path.display()))),
        }
    }
}

/// The command `body` asks for, or why it is not well formed.
/// The init command `body` asks for, naming `founders` (the nodes the
/// body names, each with its address and keys).
pub fn init_command(body: &InitBody, founders: &[Founder]) -> Result<Command, NodeError> {
    let bad = |m: &str| Err(NodeError::BadRequest(m.into()));
    if body.operators.is_empty() || body.operators.len() > MAX_OPERATORS {
        return bad("1 to 64 operators");
    }
    if body.quorum == 0 || usize::from(body.quorum) > body.operators.len() {
        return bad("1 <= quorum <= operators");
    }
    let listed: std::collections::BTreeSet<NodeId> = body.nodes.iter().copied().collect();
    if body.nodes.is_empty() || body.nodes.len() > 1024 || listed.len() != body.nodes.len() {
        return bad("name each node being initialised once (1 to 1024)");
    }
    if body.default_threshold.is_some_and(|t| t < 2) {
        return bad("a default threshold is at least 2");
    }
    let names = || body.operators.iter().chain([&body.admin]);
    if names().any(|k| crate::names::check_name(&k.name).is_err()) {
        return bad("names are 1-64 characters from [A-Za-z0-9._-]");
    }
    if names().any(|k| ed25519_dalek::VerifyingKey::from_bytes(&k.public_key.0).is_err()) {
        return bad("a public key is not an Ed25519 public key");
    }
    let distinct: std::collections::BTreeSet<&str> = names().map(|k| k.name.as_str()).collect();
    let keys: std::collections::BTreeSet<[u8; 32]> = names().map(|k| k.public_key.0).collect();
    if distinct.len() != body.operators.len() + 1 || keys.len() != distinct.len() {
        return bad("operator and admin names and keys must be distinct");
    }
    Ok(ClusterCommand::Init {
        operators: body
            .operators
            .iter()
            .map(|k| operator_record(k.name.clone(), k.public_key))
            .collect(),
        quorum: body.quorum,
        admin: ClientRecord {
            grant: Grant {
                name: body.admin.name.clone(),
                admin: true,
                operator: false,
                sign_keys: vec!["*".into()],
                recovery: false,
            },
            public_key: body.admin.public_key,
            expires_ms: None,
            revoked: false,
        },
        default_threshold: body.default_threshold,
        nodes: {
            let mut f = founders.to_vec();
            f.sort_by_key(|f| f.id);
            if f.iter().map(|f| f.id).collect::<Vec<_>>() != listed.into_iter().collect::<Vec<_>>()
            {
                return bad("the founders are not the nodes the init names");
            }
            f
        },
    }
    .into())
}

impl Node {
    /// The nodes `ids` with their addresses and keys as this node knows
    /// them (each founder checks its own before it co-signs).
    pub(crate) fn founders(&self, ids: &[NodeId]) -> Result<Vec<Founder>, NodeError> {
        ids.iter()
            .map(|id| {
                self.node_info(*id)
                    .map(|info| Founder { id: *id, info })
                    .ok_or_else(|| NodeError::BadRequest(format!("node {id} is unknown here")))
            })
            .collect()
    }

    /// Whether the registry has no client yet.
    pub fn uninitialised(&self) -> bool {
        self.registry(|r| r.clients.is_empty())
    }

    /// As a voting member: co-sign the init command `init` asks for, if it
    /// carries a proof of this node's own init secret over its body.
    pub(crate) fn init_sign(
        &self,
        init: &InitRequest,
        time_ms: u64,
        nonce: &[u8],
        founders: &[Founder],
    ) -> Result<PeerMessage, NodeError> {
        if !self.uninitialised() {
            return Err(NodeError::Conflict("the cluster is initialised".into()));
        }
        // The statement's time attests every voter's clock on apply: it
        // must be this node's time, give or take the skew.
        let now = super::peer::now_ms();
        let skew = super::machine::clock::SKEW_S * 1000;
        if time_ms.abs_diff(now) > skew {
            return Err(NodeError::BadRequest(format!(
                "the init statement's time {time_ms} ms is not node {}'s ({now} ms)",
                self.id()
            )));
        }
        let command = init_command(&init.init, founders)?;
        // Named, and with this node's own address and keys: the record
        // starts with what each founder stated for itself.
        if !founders
            .iter()
            .any(|f| f.id == self.id() && f.info == self.info())
        {
            return Err(NodeError::Forbidden(format!(
                "the init does not name node {} with its own address and keys",
                self.id()
            )));
        }
        if !init.init.nodes.contains(&self.id()) {
            return Err(NodeError::Forbidden(format!(
                "node {} is not among the nodes the init names ({:?})",
                self.id(),
                init.init.nodes
            )));
        }
        let path = secret_path(&self.config().data_dir);
        let mine = InitSecret::read(&path)
            .map_err(|_| NodeError::Unavailable(format!("node {} has no init secret", self.id())))?
            .key()
            .verifying_key();
        let statement = init_statement(&init.init);
        let proven = init.proofs.iter().any(|p| {
            p.key.0 == mine.to_bytes()
                && ed25519_dalek::Signature::from_slice(&p.signature.0)
                    .is_ok_and(|s| mine.verify(&statement, &s).is_ok())
        });
        if !proven {
            return Err(NodeError::Forbidden(format!(
                "no proof of node {}'s init secret (its data directory's {INIT_SECRET_FILE})",
                self.id()
            )));
        }
        Ok(PeerMessage::InitSigned {
            endorsement: self.members_signature(time_ms, nonce, &command),
        })
    }

    /// Initialise this cluster as `init` asks: every voting member co-signs
    /// (each checking the proof of its own init secret), then the command
    /// is committed.
    pub async fn initialise(&self, init: InitRequest) -> Result<(), NodeError> {
        if init.proofs.len() > 1024 {
            return Err(NodeError::BadRequest("too many proofs".into()));
        }
        let founders = self.founders(&init.init.nodes)?;
        let command = init_command(&init.init, &founders)?;
        if !self.uninitialised() {
            return self.initialised_as(&command);
        }
        let mut nonce = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let time_ms = super::peer::now_ms();
        // Every voter and every founding voter (apply needs them all).
        let ids: std::collections::BTreeSet<NodeId> =
            self.registry(|r| r.voters.iter().chain(r.founders.keys()).copied().collect());
        let voters = ids
            .into_iter()
            .map(|id| {
                self.node_info(id)
                    .map(|info| (id, info, true))
                    .ok_or_else(|| {
                        NodeError::Unavailable(format!(
                            "founding member {id} is no longer a member: init needs its signature"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let asks = voters.iter().map(|(id, info, _)| {
            self.call(
                *id,
                info,
                PeerMessage::InitSign {
                    init: init.clone(),
                    time_ms,
                    nonce: Hex(nonce.to_vec()),
                    nodes: founders.clone(),
                },
            )
        });
        let mut signatures = Vec::with_capacity(voters.len());
        for ((id, _, _), answer) in voters.iter().zip(futures::future::join_all(asks).await) {
            match answer? {
                PeerMessage::InitSigned { endorsement } if endorsement.node == *id => {
                    signatures.push(endorsement)
                }
                other => {
                    return Err(NodeError::Internal(format!(
                        "node {id} answered an init request with {other:?}"
                    )))
                }
            }
        }
        let committed = self
            .commit(Authorized {
                command: command.clone(),
                by: Authority::Members {
                    time_ms,
                    nonce: Hex(nonce.to_vec()),
                    signatures,
                },
            })
            .await;
        if let Err(e) = committed {
            // Another node may have committed this very init first (with
            // the proofs it saw as a voter): that is success, not a loss.
            if self.uninitialised() {
                return Err(e);
            }
            self.initialised_as(&command)?;
        }
        tidy_init_secret(&self.config().data_dir, self.id(), true)
    }

    /// Ok if the registry holds exactly what init `command` registers (an
    /// init committed already, e.g. the same request through another
    /// node); a conflict otherwise.
    pub(crate) fn initialised_as(&self, command: &Command) -> Result<(), NodeError> {
        let Command::Cluster(ClusterCommand::Init {
            operators,
            quorum,
            admin,
            default_threshold,
            nodes,
        }) = command
        else {
            return Err(NodeError::Internal("not an init command".into()));
        };
        let same = self.registry(|r| {
            r.operators.quorum == *quorum
                && r.operators.default_threshold == *default_threshold
                && (nodes.is_empty()
                    || r.roster.nodes.keys().copied().collect::<Vec<_>>()
                        == nodes.iter().map(|f| f.id).collect::<Vec<_>>())
                && operators
                    .iter()
                    .chain([admin])
                    .all(|c| r.clients.get(&c.grant.name) == Some(c))
        });
        if same {
            Ok(())
        } else {
            Err(NodeError::Conflict("the cluster is initialised".into()))
        }
    }
}
