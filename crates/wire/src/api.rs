//! Client API (`/v1`): requests, responses and the error body.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Hex, NodeId};

/// A signature scheme a key can be created for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum SuiteName {
    /// FROST(Ed25519, SHA-512): RFC 8032 signatures.
    #[serde(rename = "ed25519")]
    Ed25519,
    /// FROST(secp256k1, SHA-256) with BIP-340 (Taproot) output.
    #[serde(rename = "secp256k1-tr")]
    Secp256k1Tr,
}

impl SuiteName {
    /// The name used on the wire and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            SuiteName::Ed25519 => "ed25519",
            SuiteName::Secp256k1Tr => "secp256k1-tr",
        }
    }
}

/// `POST /v1/keys`: generate a new shared key by DKG.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// Unique name, 1–64 characters from `[A-Za-z0-9._-]`.
    pub name: String,
    /// The signature scheme.
    pub suite: SuiteName,
    /// Signing threshold t (default: the cluster's default).
    #[serde(default)]
    pub threshold: Option<u16>,
    /// The nodes that hold shares (default: every voting member).
    #[serde(default)]
    pub members: Option<Vec<NodeId>>,
}

/// A shared key's public description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyInfo {
    /// Name.
    pub name: String,
    /// Signature scheme.
    pub suite: SuiteName,
    /// Signing threshold t.
    pub threshold: u16,
    /// The nodes holding shares.
    pub members: Vec<NodeId>,
    /// The public key as ordinary verifiers take it: a 32-byte Ed25519 point
    /// or a 32-byte x-only BIP-340 key.
    pub public_key: Hex,
    /// Share generation: 1 after DKG, +1 at every refresh or reshare.
    pub epoch: u64,
}

/// `GET /v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    /// Every key.
    pub keys: Vec<KeyInfo>,
}

/// `POST /v1/keys/{name}/sign`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The message to sign, hex (at most 64 KiB).
    pub message: Hex,
}

/// A threshold signature.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignResponse {
    /// The signature (64 bytes for both suites), hex.
    pub signature: Hex,
    /// The nodes whose shares made it.
    pub signers: Vec<NodeId>,
    /// The key's share generation used.
    pub epoch: u64,
}

/// `POST /v1/keys/{name}/verify`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The message, hex.
    pub message: Hex,
    /// The signature, hex.
    pub signature: Hex,
}

/// Whether a signature verifies under the key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyResponse {
    /// True if it does.
    pub valid: bool,
}

/// A node as the cluster status shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    /// Node id.
    pub id: NodeId,
    /// Its API address.
    pub addr: String,
    /// Whether it votes (false: learner).
    pub voter: bool,
}

/// `GET /v1/cluster`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatus {
    /// The node answering.
    pub node_id: NodeId,
    /// The current Raft leader, if known.
    pub leader: Option<NodeId>,
    /// Current Raft term.
    pub term: u64,
    /// Last applied log index.
    pub applied: Option<u64>,
    /// Members and learners.
    pub nodes: Vec<NodeStatus>,
    /// Number of keys.
    pub keys: usize,
    /// Number of audit entries.
    pub audit_entries: u64,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// "ok" when the node serves requests.
    pub status: String,
    /// Node id.
    pub node_id: NodeId,
    /// Whether a Raft leader is known.
    pub has_leader: bool,
}

/// Every error response's body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `not_found`, `unauthorized`.
    pub error: String,
    /// A human-readable explanation.
    pub message: String,
    /// Nodes identified as misbehaving, when that is the cause.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub culprits: Vec<NodeId>,
}
