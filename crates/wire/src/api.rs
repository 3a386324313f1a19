//! Client API (`/v1`): requests, responses and the error body.

use serde::{Deserialize, Serialize};

use crate::{Hex, NodeId};

/// A signature scheme a key can be created for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SuiteName {
    /// FROST(Ed25519, SHA-512): RFC 8032 signatures.
    #[serde(rename = "ed25519")]
    Ed25519,
    /// FROST(secp256k1, SHA-256) with BIP-340 (Taproot) output.
    #[serde(rename = "secp256k1-tr")]
    Secp256k1Tr,
    /// FROST(ristretto255, SHA-512): the keys of encrypted-data sessions
    /// (`he.NAME`), which decrypt and never sign.
    #[serde(rename = "ristretto255")]
    Ristretto255,
}

impl SuiteName {
    /// The name used on the wire and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            SuiteName::Ed25519 => "ed25519",
            SuiteName::Secp256k1Tr => "secp256k1-tr",
            SuiteName::Ristretto255 => "ristretto255",
        }
    }
}

/// `POST /v1/keys`: generate a new shared key by DKG.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Consent to fewer members: if members are found misbehaving during
    /// key generation, the key may be made without them, down to this many
    /// members (at least the threshold). Without it, the key has exactly
    /// the members asked for or is not made.
    #[serde(default)]
    pub min_members: Option<u16>,
}

/// A shared key's public description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyList {
    /// Every key.
    pub keys: Vec<KeyInfo>,
}

/// `POST /v1/keys/{name}/sign`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The message to sign, hex (at most 64 KiB).
    pub message: Hex,
}

/// A threshold signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignResponse {
    /// The signature (64 bytes for both suites), hex.
    pub signature: Hex,
    /// The nodes whose shares made it.
    pub signers: Vec<NodeId>,
    /// The key's share generation used.
    pub epoch: u64,
}

/// `POST /v1/keys/{name}/verify`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The message, hex.
    pub message: Hex,
    /// The signature, hex.
    pub signature: Hex,
}

/// Whether a signature verifies under the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyResponse {
    /// True if it does.
    pub valid: bool,
}

/// A node as the cluster status shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeStatus {
    /// Node id.
    pub id: NodeId,
    /// Its API address.
    pub addr: String,
    /// Whether it votes (false: learner).
    pub voter: bool,
    /// What it runs, as its latest boot statement says (software
    /// attestation).
    #[serde(default)]
    pub measurement: Option<crate::control::Measurement>,
    /// Whether the operator quorum approved a drain of it
    /// ([`Change::DrainNode`](crate::control::Change::DrainNode)): its
    /// shares may be moved off it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
    /// The member that takes its place in that drain, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_onto: Option<NodeId>,
}

/// `GET /v1/cluster`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The apply rules the log is at (`crate::control::APPLY_RULES`);
    /// 0 from a node that does not say.
    #[serde(default)]
    pub rules: u16,
    /// Whether approvals must name what they approve (rules 14, or every
    /// member announced them).
    #[serde(default)]
    pub approvals_bound: bool,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// "ok" when the node serves requests; "no_leader" while it knows no
    /// leader; "stopped" when its Raft stopped (see its log).
    pub status: String,
    /// Node id.
    pub node_id: NodeId,
    /// Whether a Raft leader is known.
    pub has_leader: bool,
}

/// Every error response's body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `not_found`, `unauthorized`.
    pub error: String,
    /// A human-readable explanation.
    pub message: String,
    /// Nodes identified as misbehaving, when that is the cause.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub culprits: Vec<NodeId>,
}

/// `POST /v1/keys/{name}/reshare`: move the key to a new threshold and member
/// set; the public key stays the same.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReshareRequest {
    /// The new threshold t'.
    pub threshold: u16,
    /// The new share holders (any overlap with the old set; every one must be
    /// a node of the cluster).
    pub members: Vec<NodeId>,
}

/// `POST /v1/keys/{name}/repair`: rebuild one member's lost share from `t`
/// other holders; the key, its public key and its epoch stay the same.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RepairRequest {
    /// The member whose share is rebuilt.
    pub node: NodeId,
}

/// `POST /v1/keys/{name}/exports`: ask for a temporary reconstruction of the
/// key. It runs only after `t` operators approve.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// The X25519 public key (32 bytes, hex) the reconstructed secret is
    /// HPKE-sealed to (RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256),
    /// HKDF-SHA256, ChaCha20-Poly1305).
    pub recipient: crate::Hex32,
}

/// The sealed result of an export. Open it with the recipient's X25519
/// secret key: info [`EXPORT_HPKE_INFO`], associated data [`export_aad`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportResult {
    /// Export id.
    pub id: String,
    /// Key name.
    pub key: String,
    /// Scheme.
    pub suite: SuiteName,
    /// Generation exported.
    pub epoch: u64,
    /// The key's public key (to check the opened secret against).
    pub public_key: Hex,
    /// The core `GroupKey` encoding (threshold, members, public shares):
    /// each opened share is checked against its holder's public share.
    pub group_key: Hex,
    /// The holders' shares, each sealed by its holder to the requester's
    /// key (no node, the coordinator included, can open them): at least
    /// the threshold of them. The requester opens them, checks each and
    /// rebuilds the 32-byte secret scalar (little-endian for Ed25519,
    /// big-endian for secp256k1; for secp256k1-tr the scalar whose point
    /// has the x coordinate of the BIP-340 key).
    pub shares: Vec<SealedExportShare>,
}

/// One holder's share of an exported key, HPKE-sealed (RFC 9180 base mode,
/// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305) to the
/// requester's X25519 key: info [`EXPORT_HPKE_INFO`], associated data
/// [`export_aad`] with the holder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SealedExportShare {
    /// The holder.
    pub node: NodeId,
    /// HPKE encapsulated key.
    pub enc: Hex,
    /// HPKE ciphertext of the holder's core `KeyShare` secret encoding.
    pub ciphertext: Hex,
}

/// HPKE `info` for export shares.
pub const EXPORT_HPKE_INFO: &[u8] = b"keyquorum/export-share/v2";

/// HPKE associated data for one holder's export share: binds the
/// ciphertext to the export, the key, its generation and the holder.
pub fn export_aad(id: &str, key: &str, epoch: u64, holder: NodeId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(id.len() + key.len() + 24);
    aad.extend_from_slice(&(id.len() as u64).to_be_bytes());
    aad.extend_from_slice(id.as_bytes());
    aad.extend_from_slice(&(key.len() as u64).to_be_bytes());
    aad.extend_from_slice(key.as_bytes());
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad.extend_from_slice(&u64::from(holder).to_be_bytes());
    aad
}

/// `GET /v1/exports`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportList {
    /// Every export request, oldest first.
    pub exports: Vec<crate::control::ExportRecord>,
}

/// `POST /v1/clients`: register a client identity. The key pair is made
/// on the client's side (`keyquorum client create`); only the public key is
/// sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateClientRequest {
    /// Its name and RFC 9421 `keyid`: 1–64 characters from
    /// `[A-Za-z0-9._-]`, unique, never reused.
    pub name: String,
    /// Its Ed25519 public key, hex.
    pub public_key: crate::Hex32,
    /// May manage keys, clients and membership.
    #[serde(default)]
    pub admin: bool,
    /// May approve exports.
    #[serde(default)]
    pub operator: bool,
    /// Keys it may sign with (`*`: every key).
    #[serde(default)]
    pub sign_keys: Vec<String>,
    /// May enrol accounts with the credential guardians (apply rules 9;
    /// left out of the body when false, which older members read).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovery: bool,
    /// When its requests stop being accepted (ms since the Unix epoch).
    #[serde(default)]
    pub expires_ms: Option<u64>,
}

/// A registered client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientCreated {
    /// Its name.
    pub name: String,
    /// The `keyid` its signatures carry (its name).
    pub key_id: String,
    /// Its Ed25519 public key, hex.
    pub public_key: crate::Hex32,
}

/// `GET /v1/clients`: every registered client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientList {
    /// By name.
    pub clients: Vec<crate::control::ClientRecord>,
}

/// A node to add (as a learner, then as a voter): what `keyquorum cluster add`
/// proposes as a [`Change::AddNode`](crate::control::Change::AddNode).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddNodeRequest {
    /// Its id (1..=65535, unused).
    pub id: NodeId,
    /// Its API base URL.
    pub addr: String,
    /// Its Ed25519 identity public key, hex.
    pub identity: crate::Hex32,
    /// Its X25519 HPKE public key, hex.
    pub hpke: crate::Hex32,
    /// Add it as a voter (default true) or keep it a learner.
    #[serde(default = "yes")]
    pub voter: bool,
}

fn yes() -> bool {
    true
}

/// A name and an Ed25519 public key made on its holder's machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NamedKey {
    /// Its name and RFC 9421 `keyid`: 1–64 characters from `[A-Za-z0-9._-]`.
    pub name: String,
    /// Its Ed25519 public key, hex.
    pub public_key: crate::Hex32,
}

/// Proof of one node's one-time init secret: a signature by the Ed25519 key
/// derived from it over [`init_statement`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InitProof {
    /// The init key's public key.
    pub key: crate::Hex32,
    /// Its Ed25519 signature over [`init_statement`].
    pub signature: crate::Hex,
}

/// What `keyquorum init` asks for: a new cluster's operators, their quorum
/// and its first admin client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InitBody {
    /// The operators (at least one).
    pub operators: Vec<NamedKey>,
    /// Distinct operator approvals needed (1 ..= operators).
    pub quorum: u16,
    /// The first admin client.
    pub admin: NamedKey,
    /// Threshold of a new key whose request states none (2 ..= its
    /// members; fewer members: all of them). Unset: a majority of the
    /// key's members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_threshold: Option<u16>,
    /// The nodes being initialised, as the operator knows them (the ids in
    /// the init secret files): the membership record starts as exactly
    /// these, and each co-signs only if it is listed, so a node a leader
    /// slipped into Raft's membership before init is in no record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<crate::NodeId>,
}

/// `POST /v1/init`: [`InitBody`] with one proof per voting member's init
/// secret (the file each node wrote to its data directory at first start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InitRequest {
    /// What to initialise.
    pub init: InitBody,
    /// One per voting member.
    pub proofs: Vec<InitProof>,
}

/// The bytes an init key signs: a domain label and the body's JSON (serde
/// writes struct fields in declaration order: one encoding per value).
pub fn init_statement(body: &InitBody) -> Vec<u8> {
    let mut m = b"keyquorum-init-v1\x00".to_vec();
    m.extend_from_slice(&serde_json::to_vec(body).unwrap_or_default());
    m
}

/// `POST /v1/changes`: propose a change to the operators.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    /// The change.
    pub change: crate::control::Change,
}

/// `GET /v1/changes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeList {
    /// The operator quorum now.
    pub quorum: u16,
    /// The operators (live ones).
    pub operators: Vec<String>,
    /// Proposed and carried-out changes, oldest first.
    pub changes: Vec<crate::control::ChangeRecord>,
}

/// `POST /v1/approvals/{id}`: what was approved.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Approved {
    /// An export request.
    Export(crate::control::ExportRecord),
    /// A change to the operators.
    Change(crate::control::ChangeRecord),
}

/// `POST /v1/approvals/{id}` and `POST /v1/exports/{id}/approve`: what the
/// operator approves, as they read it (apply rules 14 on). Every replica
/// compares it with the record it holds under that id and refuses the
/// approval if they differ, so a node that showed an operator one request
/// under another's id gets a refusal, not an approval of the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ApprovalRequest {
    /// A proposed change.
    Change {
        /// The change.
        change: crate::control::Change,
        /// Who proposed it.
        requested_by: String,
    },
    /// An export request.
    Export {
        /// The key to export.
        key: String,
        /// Its generation.
        epoch: u64,
        /// Who asked.
        requested_by: String,
        /// The X25519 key the result is sealed to.
        recipient: crate::Hex32,
    },
}

impl ApprovalRequest {
    /// What approving `record` approves.
    pub fn of_change(record: &crate::control::ChangeRecord) -> Self {
        Self::Change {
            change: record.change.clone(),
            requested_by: record.requested_by.clone(),
        }
    }

    /// What approving `record` approves.
    pub fn of_export(record: &crate::control::ExportRecord) -> Self {
        Self::Export {
            key: record.key.clone(),
            epoch: record.epoch,
            requested_by: record.requested_by.clone(),
            recipient: record.recipient,
        }
    }
}

/// A member as `GET /v1/join` lists it: what a joining node trusts for
/// the cluster's traffic once the list matches its join code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinMember {
    /// Its id.
    pub id: NodeId,
    /// Its address and keys.
    pub info: crate::control::NodeInfo,
    /// Whether it votes.
    pub voter: bool,
}

/// `GET /v1/join` (public): the members a joining node checks against its
/// join code, and their fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinInfo {
    /// The members, by id.
    pub members: Vec<JoinMember>,
    /// SHA-256 over the founders (the voters that initialised the cluster,
    /// with their identity keys): the cluster's identity, which no other
    /// history can have (its init needs every founder's signature).
    pub genesis: crate::Hex32,
    /// The largest threshold of the cluster's keys (0 with none): how many
    /// of these voters a joining node needs to vouch for a snapshot.
    pub threshold: u16,
    /// SHA-256 over all of the above (the node crate's
    /// `cluster::join::fingerprint`): what a join code carries.
    pub fingerprint: crate::Hex32,
}

/// `POST /v1/join` (public): a node asks to join. It proves it holds the
/// identity key it names (the signature); joining takes the operator
/// quorum's approval of an `AddNode` change with exactly these keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The id it asks for (its config's `id`).
    pub id: NodeId,
    /// Its address and keys.
    pub info: crate::control::NodeInfo,
    /// The fingerprint of the members it checked (its join code's).
    pub fingerprint: crate::Hex32,
    /// When it asked (ms since the Unix epoch).
    pub created_ms: u64,
    /// Ed25519 signature by `info.identity` over [`join_statement`].
    pub signature: Hex,
}

/// The bytes a joining node signs: a domain label, then each field with
/// its length where it varies.
pub fn join_statement(
    id: NodeId,
    info: &crate::control::NodeInfo,
    fingerprint: &crate::Hex32,
    created_ms: u64,
) -> Vec<u8> {
    let mut m = b"keyquorum-join-v1\x00".to_vec();
    m.extend_from_slice(&id.get().to_be_bytes());
    m.extend_from_slice(&(info.addr.len() as u64).to_be_bytes());
    m.extend_from_slice(info.addr.as_bytes());
    m.extend_from_slice(&info.identity.0);
    m.extend_from_slice(&info.hpke.0);
    m.extend_from_slice(&fingerprint.0);
    m.extend_from_slice(&created_ms.to_be_bytes());
    m
}

/// `POST /v1/join`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinStatus {
    /// `pending` (waiting for the operators' approval) or `member` (the
    /// membership record lists the node with these keys).
    pub status: String,
}

/// `GET /v1/joins` (an operator or admin): join requests this node holds
/// (in memory, newest per id), for `keyquorum operator join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinList {
    /// The requests, by id.
    pub requests: Vec<JoinRequest>,
}

/// `GET /readyz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// `ready`, or why not: `stopped`, `no_leader`, `not_member`,
    /// `catching_up`.
    pub status: String,
    /// Node id.
    pub node_id: NodeId,
    /// The log index this node has applied.
    pub applied: u64,
    /// The leader's commit index it must reach (when known).
    pub leader_index: Option<u64>,
}

/// A member's signed statement that its control-plane checkpoint at
/// `index` has `digest` (`GET /v1/checkpoints/{index}`, public): what a
/// saved snapshot carries so that anyone holding the members' identity
/// keys can check it offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CheckpointAttestation {
    /// The member.
    pub node: NodeId,
    /// Its identity key (the signature verifies under it).
    pub identity: crate::Hex32,
    /// The cluster's genesis ([`JoinInfo::genesis`]).
    pub genesis: crate::Hex32,
    /// The checkpoint's log index.
    pub index: u64,
    /// The form of the checkpoint's bytes (the node crate's
    /// `CHECKPOINT_FORMAT`).
    pub format: u16,
    /// SHA-256 over the checkpoint (the store's `checkpoint::digest`).
    pub digest: crate::Hex32,
    /// Ed25519 signature by `identity` over [`checkpoint_statement`].
    pub signature: Hex,
}

/// The bytes a member signs to attest a checkpoint.
pub fn checkpoint_statement(
    node: NodeId,
    genesis: &crate::Hex32,
    index: u64,
    format: u16,
    digest: &crate::Hex32,
) -> Vec<u8> {
    let mut m = b"keyquorum-checkpoint-v1\x00".to_vec();
    m.extend_from_slice(&node.get().to_be_bytes());
    m.extend_from_slice(&genesis.0);
    m.extend_from_slice(&index.to_be_bytes());
    m.extend_from_slice(&format.to_be_bytes());
    m.extend_from_slice(&digest.0);
    m
}

/// `GET /v1/snapshot` (an admin): the newest checkpoint this node holds,
/// its own attestation of it and the audit log's signed heads.
/// `keyquorum snapshot save` adds the other members' attestations and the
/// audit entries (`GET /v1/audit`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SnapshotDownload {
    /// The checkpoint's Raft metadata (openraft's `SnapshotMeta`).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub meta: serde_json::Value,
    /// The checkpoint's bytes as they are digested (JSON text).
    pub data: String,
    /// This node's attestation of it.
    pub attestation: CheckpointAttestation,
    /// Every signed head of the audit log this node holds, in the order
    /// they were applied.
    pub heads: Vec<crate::control::SignedHead>,
}
