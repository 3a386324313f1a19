//! The federated hash-based signing tree (DESIGN.md §3.5): one RFC 8554
//! LMS/HSS key built in subtrees by the members, its one-time keys
//! Shamir-shared and released leaf by leaf; the API's bodies, the record
//! in the Raft log and the statements members sign.
//!
//! Bytes are lowercase hex; `public_key` and `signature` are the RFC 8554
//! HSS encodings (L = 1).

use serde::{Deserialize, Serialize};

use crate::{Hex, Hex32, NodeId};

/// Prefix of a tree's name in a client's signing permissions: a client
/// signs with tree `t` if its `sign_keys` hold `lms.t` (or `*`).
pub const GRANT_PREFIX: &str = "lms.";

/// The permission that signs with tree `name`.
pub fn grant_name(name: &str) -> String {
    format!("{GRANT_PREFIX}{name}")
}

/// `POST /v1/seedtrees`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateSeedtreeRequest {
    /// Tree name.
    pub name: String,
    /// The LMS tree's height (5, 10, 15 or 20): 2^height one-time keys.
    pub height: u8,
    /// The Winternitz parameter of its one-time keys (1, 2, 4 or 8).
    pub winternitz: u8,
    /// Aligned subtrees built in parallel (a power of two, at most the
    /// leaves; default: the smallest power of two at least the members).
    #[serde(default)]
    pub subtrees: Option<u32>,
    /// Members that must release a leaf's shares for it to sign (default:
    /// the cluster's default for the member count).
    #[serde(default)]
    pub threshold: Option<u16>,
    /// Members holding leaf shares (default: every voter).
    #[serde(default)]
    pub members: Option<Vec<NodeId>>,
}

/// A tree as the log holds it: what every replica re-derives on apply
/// (the identifier from the commitments and contributions, the builders,
/// the public key from the subtree roots).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeedtreeRecord {
    /// Tree name.
    pub name: String,
    /// The key generation run (the members' shares and nodes are stored
    /// under it).
    pub run: Hex32,
    /// LMS height.
    pub height: u8,
    /// Winternitz parameter.
    pub winternitz: u8,
    /// Subtrees.
    pub subtrees: u32,
    /// Shares needed to rebuild a leaf.
    pub threshold: u16,
    /// Members, in order.
    pub members: Vec<NodeId>,
    /// Each member's commitment to its contribution to `I`, in member order.
    pub commitments: Vec<Hex32>,
    /// Each member's revealed contribution, in member order.
    pub contributions: Vec<Hex32>,
    /// The builder of each subtree.
    pub builders: Vec<NodeId>,
    /// Each subtree's root.
    pub roots: Vec<Hex32>,
    /// The RFC 8554 HSS public key (L = 1).
    pub public_key: Hex,
    /// The admin that created it.
    pub created_by: String,
}

/// A tree's public description and usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeedtreeInfo {
    /// Tree name.
    pub name: String,
    /// The RFC 8554 HSS public key (L = 1).
    pub public_key: Hex,
    /// LMS height.
    pub height: u8,
    /// Winternitz parameter.
    pub winternitz: u8,
    /// Subtrees.
    pub subtrees: u32,
    /// Shares needed to rebuild a leaf.
    pub threshold: u16,
    /// Members.
    pub members: Vec<NodeId>,
    /// Members that must lock a leaf to one request before any releases
    /// it: ⌈(n + t) / 2⌉, so two requests' lock sets share an honest member.
    pub lock_quorum: u16,
    /// The builder of each subtree, by subtree.
    pub builders: Vec<NodeId>,
    /// One-time keys: 2^height.
    pub capacity: u64,
    /// Leaves handed out to signing nodes so far.
    pub reserved: u64,
    /// Leaves not handed out yet.
    pub remaining: u64,
    /// The key generation run.
    pub run: Hex32,
    /// The sharing in force: 0 from key generation, one more per reshare
    /// (absent from older nodes: 0).
    #[serde(default)]
    pub epoch: u32,
    /// The first leaf the sharing in force may sign: leaves below it were
    /// handed out, or not re-dealt, before a reshare (absent: 0).
    #[serde(default)]
    pub first: u64,
}

/// `POST /v1/seedtrees/{name}/reshare` (an admin): move the leaves not
/// handed out yet to these holders by re-dealing every holder's shares;
/// allowed for the target an approved drain gives the tree's members
/// (`keyquorum cluster drain`), keeping its threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReshareSeedtreeRequest {
    /// The new holders.
    pub members: Vec<NodeId>,
    /// Shares needed to rebuild a leaf (the tree's own).
    pub threshold: u16,
}

/// One reshare of a tree's leaf shares, as its coordinator fixes it: what
/// the dealers and the new holders each check against the admin's request
/// and their own replica, and what the new holders endorse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TreeResharePlan {
    /// Tree name.
    pub tree: String,
    /// Its key generation run.
    pub run: Hex32,
    /// The sharing being replaced.
    pub epoch: u32,
    /// The first leaf re-dealt: the leaves handed out when the plan was
    /// made are not (and the commit moves it up to what was handed out by
    /// then).
    pub cut: u32,
    /// Shares needed (the tree's own).
    pub threshold: u16,
    /// The new holders, sorted.
    pub members: Vec<NodeId>,
    /// The holders that re-deal, sorted: exactly `threshold` of the
    /// current ones.
    pub dealers: Vec<NodeId>,
    /// The coordinator's attempt (each try is a plan, and a run, of its
    /// own).
    pub attempt: u32,
}

/// What a new holder signs once it holds its new share of every leaf the
/// plan re-deals and checked the public nodes it needs.
pub fn reshare_statement(plan: &TreeResharePlan) -> Vec<u8> {
    let mut m = b"keyquorum-seedtree-reshare-v1\x00".to_vec();
    m.extend_from_slice(&serde_json::to_vec(plan).unwrap_or_default());
    m
}

/// `GET /v1/seedtrees/{name}/progress`: how far a key generation this
/// node coordinates has come (or a finished tree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeedtreeProgress {
    /// Tree name.
    pub name: String,
    /// `identifier` (commit and reveal), `building` (subtrees built and
    /// dealt), `endorsing`, or `done`.
    pub phase: String,
    /// Subtrees.
    pub subtrees: u32,
    /// Subtree roots their builders reported.
    pub roots: u32,
    /// Chunks of leaf shares the members stored, all members together.
    pub chunks: u64,
    /// Chunks the members store in all.
    pub chunks_total: u64,
}

/// `GET /v1/seedtrees`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeedtreeList {
    /// Every tree.
    pub trees: Vec<SeedtreeInfo>,
}

/// `POST /v1/seedtrees/{name}/sign`: the client signs with the leaf it is
/// given; the members seal their shares of the leaf's secret to
/// `reply_key`, which only the client holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignSeedtreeRequest {
    /// The message the client will sign (at most 64 KiB).
    pub message: Hex,
    /// A one-time X25519 public key of the client's.
    pub reply_key: Hex32,
}

/// One member's share of a leaf's secret, sealed to the client's reply
/// key (RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
/// ChaCha20-Poly1305; info [`SHARE_HPKE_INFO`], aad [`share_aad`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SealedLeafShare {
    /// The member.
    pub node: NodeId,
    /// HPKE encapsulated key.
    pub enc: Hex,
    /// The sealed 32-byte share.
    pub ciphertext: Hex,
}

/// The answer to a sign request: everything the client needs to sign with
/// leaf `leaf` (its shares, its node in the tree and its authentication
/// path), never the leaf's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeedtreeLeaf {
    /// Tree name.
    pub name: String,
    /// Its key generation run (the shares' `aad` names it).
    pub run: Hex32,
    /// Shares needed.
    pub threshold: u16,
    /// The global leaf index q.
    pub leaf: u32,
    /// The tree's public key.
    pub public_key: Hex,
    /// Node `2^h + q`.
    pub leaf_node: Hex32,
    /// The leaf's authentication path, bottom up.
    pub path: Vec<Hex32>,
    /// The members' sealed shares (at least the threshold).
    pub shares: Vec<SealedLeafShare>,
}

/// What the client library returns once it signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedtreeSignature {
    /// The RFC 8554 HSS signature.
    pub signature: Hex,
    /// The global leaf index it used.
    pub leaf: u32,
}

/// HPKE `info` of a sealed leaf share.
pub const SHARE_HPKE_INFO: &[u8] = b"keyquorum-seedtree-share-v1";

/// HPKE `aad` of member `node`'s sealed share of leaf `leaf` of the tree
/// made by run `run`.
pub fn share_aad(run: &Hex32, leaf: u32, node: NodeId) -> Vec<u8> {
    let mut a = Vec::with_capacity(44);
    a.extend_from_slice(&run.0);
    a.extend_from_slice(&leaf.to_be_bytes());
    a.extend_from_slice(&u64::from(node).to_be_bytes());
    a
}

/// What a member signs to endorse a tree: it holds a share of every leaf
/// and checked every subtree against the roots.
pub fn endorse_statement(record: &SeedtreeRecord) -> Vec<u8> {
    let mut m = b"keyquorum-seedtree-v1\x00".to_vec();
    m.extend_from_slice(&serde_json::to_vec(record).unwrap_or_default());
    m
}

/// What a member signs when it locks leaf `leaf` of the tree made by run
/// `run` to the request whose hash is `request`: it never locks that leaf
/// to another.
pub fn lock_statement(run: &Hex32, leaf: u32, request: &[u8; 32]) -> Vec<u8> {
    let mut m = b"keyquorum-seedtree-lock-v1\x00".to_vec();
    m.extend_from_slice(&run.0);
    m.extend_from_slice(&leaf.to_be_bytes());
    m.extend_from_slice(request);
    m
}

/// The smallest number of members whose lock sets any two intersect in at
/// least `t` members (so in an honest one when at most `t − 1` lie):
/// ⌈(n + t) / 2⌉.
pub fn lock_quorum(n: usize, t: u16) -> usize {
    (n + usize::from(t)).div_ceil(2)
}

/// The tree capability's commands in the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SeedtreeCommand {
    /// Create a tree (an admin's request), endorsed by every member.
    StCreate {
        /// The tree.
        record: Box<SeedtreeRecord>,
        /// Every member's signature over [`endorse_statement`].
        endorsements: Vec<crate::control::Endorsement>,
    },
    /// A node statement: hand the stating node the next `count` leaves of
    /// `tree` to sign with (fewer at the end; none: exhausted).
    StReserve {
        /// Tree name.
        tree: String,
        /// 1 ..= 1024.
        count: u32,
    },
    /// Move a tree's unused leaves to new holders (an admin's request, for
    /// the target of an approved drain), endorsed by every new holder.
    StReshare {
        /// The reshare.
        plan: Box<TreeResharePlan>,
        /// Every new holder's signature over [`reshare_statement`].
        endorsements: Vec<crate::control::Endorsement>,
    },
}
