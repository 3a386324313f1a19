//! Per-message key derivation (DESIGN.md §3.2): endpoints, prekeys, the
//! messages senders hand to the cluster, coordinator confirmations and the
//! receiver's mailbox. The cryptography is in `keyquorum_core::msgkey`;
//! these are its bytes on the wire (hex in JSON).

use serde::{Deserialize, Serialize};

use crate::{Hex, Hex32, NodeId};

/// A one-time X25519 prekey signed by its endpoint's Ed25519 identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Prekey {
    /// X25519 public key.
    pub public: Hex32,
    /// Ed25519 signature by the endpoint identity (64 bytes).
    pub signature: Hex,
}

/// An HPKE box (RFC 9180 base mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SealedBox {
    /// Encapsulated key.
    pub enc: Hex,
    /// Ciphertext and tag.
    pub ciphertext: Hex,
}

/// A registered endpoint as the control plane records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EndpointRecord {
    /// Unique name, 1–64 characters from `[A-Za-z0-9._-]`.
    pub name: String,
    /// Ed25519 identity public key.
    pub identity: Hex32,
    /// The token name that registered it (it alone, or an admin, may read
    /// its mailbox, add prekeys or revoke it).
    pub owner: String,
    /// Revoked endpoints neither send nor receive.
    pub revoked: bool,
    /// When it was registered (ms since the Unix epoch).
    pub created_ms: u64,
}

/// `POST /v1/msg/endpoints`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateEndpointRequest {
    /// Unique name, 1–64 characters from `[A-Za-z0-9._-]`.
    pub name: String,
    /// Ed25519 identity public key.
    pub identity: Hex32,
    /// First prekeys to publish (may be empty).
    #[serde(default)]
    pub prekeys: Vec<Prekey>,
}

/// `POST /v1/msg/endpoints/{name}/prekeys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PublishPrekeys {
    /// Prekeys signed by the endpoint identity.
    pub prekeys: Vec<Prekey>,
}

/// An endpoint's public description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EndpointInfo {
    /// The record.
    #[serde(flatten)]
    pub record: EndpointRecord,
    /// Published prekeys not yet claimed by a sender.
    pub prekeys_available: u64,
    /// Messages waiting in its mailbox.
    pub mailbox: u64,
}

/// `POST /v1/msg/endpoints/{name}/claim`: a sender reserves some of the
/// receiver's prekeys, oldest first, through consensus (no prekey is handed
/// out twice). A long-lived sender reserves a few at once and spends them
/// over its next messages: one consensus write instead of one per message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimedPrekeys {
    /// The receiver.
    pub endpoint: String,
    /// Its identity (the prekey signatures verify under it).
    pub identity: Hex32,
    /// The prekeys, now reserved for the claiming sender: at least one, at
    /// most the count asked for (fewer when fewer were left). An unused
    /// reservation lapses after twice the acceptance window.
    pub prekeys: Vec<Prekey>,
}

/// Most prekeys one claim reserves.
pub const MAX_CLAIM: u16 = 64;

/// The counts a claim may ask for.
pub const CLAIM_COUNTS: core::ops::RangeInclusive<u16> = 1..=MAX_CLAIM;

/// A cluster node as senders and receivers route to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MsgNode {
    /// Node id.
    pub id: NodeId,
    /// Ed25519 identity (confirmations are signed with it).
    pub identity: Hex32,
    /// X25519 HPKE key (coordinator bundles are sealed to it).
    pub hpke: Hex32,
}

/// `GET /v1/msg/deployment`: what a sender needs to build a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MsgDeployment {
    /// The public HKDF salt.
    pub salt: Hex32,
    /// Timestamps more than this far from a coordinator's clock are refused (ms).
    pub window_ms: u64,
    /// The voting members coordinators are chosen from.
    pub nodes: Vec<MsgNode>,
    /// The voting members before, newest first (the last few changes): a
    /// message accepted under an earlier membership is checked against
    /// the membership it was routed under.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<MsgRoute>,
}

/// The voting members from one membership change to the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MsgRoute {
    /// In force from this log time (ms).
    pub from_ms: u64,
    /// Until this log time (ms), when the next took over.
    pub until_ms: u64,
    /// The voting members.
    pub nodes: Vec<MsgNode>,
}

/// How the coordinator confirms a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MsgMode {
    /// Default: the coordinator checks shares and confirms H(k·G ‖ id)
    /// without learning k.
    VerifyInTheExponent,
    /// The coordinator reconstructs k and confirms H(session key); it is
    /// trusted with the key.
    CoordinatorReconstructs,
}

/// One coordinator's bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CoordinatorBundle {
    /// The coordinator.
    pub node: NodeId,
    /// Its shares, sealed to its HPKE key.
    pub sealed: SealedBox,
}

/// `POST /v1/msg/messages`: a message built by the sending endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Sending endpoint.
    pub from: String,
    /// Receiving endpoint.
    pub to: String,
    /// Canonical header bytes.
    pub header: Hex,
    /// Sender's Ed25519 signature over header and payload hash.
    pub signature: Hex,
    /// ChaCha20-Poly1305 sealed payload.
    pub payload: Hex,
    /// Receiver's shares, sealed to its prekey.
    pub for_receiver: SealedBox,
    /// Each coordinator's bundle.
    pub for_coordinators: Vec<CoordinatorBundle>,
}

/// A coordinator's signed confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MsgConfirmation {
    /// The coordinator.
    pub node: NodeId,
    /// The verification value.
    pub value: Hex32,
    /// The coordinator's share, sealed to the receiver's prekey.
    pub forwarded: SealedBox,
    /// Node identity signature over the confirmation.
    pub signature: Hex,
}

/// The answer to a send: the message is in the receiver's mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendResponse {
    /// Message identifier.
    pub id: Hex32,
    /// Every coordinator that confirmed (the sender checks each value).
    pub confirmations: Vec<MsgConfirmation>,
    /// Coordinators that could not be reached.
    pub unreachable: Vec<NodeId>,
}

/// A message waiting for its receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MailItem {
    /// Message identifier.
    pub id: Hex32,
    /// Sending endpoint.
    pub from: String,
    /// Receiving endpoint.
    pub to: String,
    /// Canonical header bytes.
    pub header: Hex,
    /// Sender's signature.
    pub signature: Hex,
    /// Sealed payload.
    pub payload: Hex,
    /// Receiver's shares.
    pub for_receiver: SealedBox,
    /// Coordinator confirmations with forwarded shares.
    pub confirmations: Vec<MsgConfirmation>,
    /// The header's timestamp (ms).
    pub time_ms: u64,
}

/// `GET /v1/msg/endpoints/{name}/inbox`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Inbox {
    /// Waiting messages, oldest first (at most one page).
    pub messages: Vec<MailItem>,
    /// More are waiting after this page (ack these, then ask again).
    pub more: bool,
}

/// `POST /v1/msg/endpoints/{name}/inbox/ack`: remove opened messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Identifiers to remove.
    pub ids: Vec<Hex32>,
}

/// The answer to an ack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AckResponse {
    /// How many were removed.
    pub removed: u64,
}

/// `POST /v1/msg/endpoints/{name}/claim`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The sending endpoint (owned by the caller) the prekeys are reserved
    /// for.
    pub by: String,
    /// How many to reserve, 1 ..= 64 (default 1).
    #[serde(default = "one")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 64, default = 1))]
    pub count: u16,
}

/// A claim's count when none is given.
pub(crate) fn one() -> u16 {
    1
}

/// Per-message key derivation's commands in the Raft log (one of
/// [`crate::control::Command`]'s capabilities).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MsgCommand {
    /// Set the message deployment's public salt and window (first one wins).
    InitMsg {
        /// HKDF salt.
        salt: Hex32,
        /// Acceptance window (ms).
        window_ms: u64,
    },
    /// Register a messaging endpoint.
    PutEndpoint {
        /// The record.
        record: EndpointRecord,
    },
    /// Revoke an endpoint: it no longer sends or receives; its prekeys and
    /// mailbox are dropped.
    RevokeEndpoint {
        /// Endpoint name.
        name: String,
    },
    /// Publish signed one-time prekeys for an endpoint.
    AddPrekeys {
        /// Endpoint name.
        name: String,
        /// Prekeys (each signature is checked again on apply).
        prekeys: Vec<Prekey>,
    },
    /// A sender reserves the `count` oldest unclaimed prekeys of `name`
    /// (fewer if fewer are left; refused if none are).
    ClaimPrekey {
        /// Receiving endpoint.
        name: String,
        /// Sending endpoint (the only one that may use the prekeys).
        by: String,
        /// How many, 1 ..= [`crate::msg::MAX_CLAIM`] (entries written
        /// before batching have none: one).
        #[serde(default = "crate::msg::one")]
        count: u16,
        /// When (the proposing node's clock, ms): an unused claim lapses
        /// once it is older than the acceptance window allows.
        #[serde(default)]
        time_ms: u64,
    },
    /// Accept a confirmed message into its receiver's mailbox: refuses a
    /// replayed identifier and a prekey not claimed by this sender (or
    /// already used), and spends the prekey.
    Deliver {
        /// The message.
        item: MailItem,
        /// The prekey it is sealed to.
        prekey: Hex32,
    },
    /// Remove opened messages from a mailbox.
    Ack {
        /// Endpoint name.
        name: String,
        /// Identifiers.
        ids: Vec<Hex32>,
    },
}
