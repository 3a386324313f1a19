//! Computation on encrypted data (DESIGN.md §3.3): sessions, inputs,
//! results and the public transcript, and their commands in the Raft log.
//!
//! Bytes are lowercase hex; the layouts of ciphertexts, proofs and
//! decryption shares are in `keyquorum_core::he`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Hex, Hex32, NodeId};

/// Prefix of the name of a session's key in the key registry: session
/// `s` decrypts with the shared key `he.s` (suite ristretto255), which is
/// reshared, refreshed and repaired like any key.
pub const KEY_PREFIX: &str = "he.";

/// The key of session `name`.
pub fn key_name(name: &str) -> String {
    format!("{KEY_PREFIX}{name}")
}

/// What a session computes (fixed when it is created: a computation chosen
/// at decryption time would decrypt single inputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HeOp {
    /// The slot-wise sum of the inputs.
    #[default]
    Sum,
    /// How many inputs were accepted (no decryption).
    Count,
    /// The slot-wise sum of each input times its public weight.
    Weighted,
}

/// `POST /v1/he/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateHeSessionRequest {
    /// Session name (its key is `he.NAME`).
    pub name: String,
    /// Members that must cooperate to decrypt (default: the cluster's
    /// default for the member count).
    #[serde(default)]
    pub threshold: Option<u16>,
    /// Members holding decryption key shares (default: every voter).
    #[serde(default)]
    pub members: Option<Vec<NodeId>>,
    /// Values per input (1 ..= 256; default 1).
    #[serde(default)]
    pub slots: Option<u16>,
    /// `none`, `knowledge` (default) or `range:BITS`.
    #[serde(default)]
    pub inputs: Option<String>,
    /// Bound, in bits, on each slot's aggregate (1 ..= 48; default 32).
    #[serde(default)]
    pub bound: Option<u8>,
    /// The computation (default `sum`).
    #[serde(default)]
    pub op: Option<HeOp>,
    /// `weighted`: the weight of the input with each index (inputs past the
    /// list are refused).
    #[serde(default)]
    pub weights: Option<Vec<u64>>,
    /// `weighted`: the weight of each submitter's inputs (others may not
    /// submit).
    #[serde(default)]
    pub submitter_weights: Option<BTreeMap<String, u64>>,
    /// Clients that may submit (default: any client of the cluster).
    #[serde(default)]
    pub submitters: Option<Vec<String>>,
    /// At most one input per client.
    #[serde(default)]
    pub one_per_client: bool,
    /// Clients that may close the session and ask for its result, beside
    /// the creator.
    #[serde(default)]
    pub readers: Vec<String>,
    /// Fewest inputs the session may be closed with (default 1): a sum of
    /// fewer would be too close to single inputs.
    #[serde(default)]
    pub min_inputs: Option<u64>,
    /// Binary measurements (SHA-256 of the executable, hex) its members
    /// must have stated at their latest boot (software attestation);
    /// default: any.
    #[serde(default)]
    pub measurements: Option<Vec<Hex32>>,
}

/// A session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HeStatus {
    /// Taking inputs.
    Open,
    /// No more inputs; the aggregate is final.
    Closed,
    /// Decrypted: the result is recorded.
    Decrypted,
}

/// A session as the control plane records it (public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeSessionRecord {
    /// Name.
    pub name: String,
    /// `keyquorum_core::he::session_id` of this record (with the id zeroed
    /// and `space` 0) and the public key: every proof and share binds it.
    pub id: Hex32,
    /// The session public key (Ristretto255, the key `he.NAME`'s).
    pub public_key: Hex32,
    /// Values per input.
    pub slots: u16,
    /// Input proof policy (`none`, `knowledge`, `range:BITS`).
    pub inputs: String,
    /// Bound on each slot's aggregate (bits).
    pub bound: u8,
    /// The computation.
    pub op: HeOp,
    /// Weights per input index (`weighted`).
    #[serde(default)]
    pub weights: Option<Vec<u64>>,
    /// Weights per submitter (`weighted`).
    #[serde(default)]
    pub submitter_weights: Option<BTreeMap<String, u64>>,
    /// Who may submit (`None`: any client).
    #[serde(default)]
    pub submitters: Option<Vec<String>>,
    /// At most one input per client.
    pub one_per_client: bool,
    /// Who created it.
    pub created_by: String,
    /// Who else may close it and ask for its result.
    #[serde(default)]
    pub readers: Vec<String>,
    /// Fewest inputs it may be closed with.
    pub min_inputs: u64,
    /// Binary measurements its members must have stated (`None`: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Vec<Hex32>>,
    /// Where its inputs are kept (side records of this space; set on
    /// apply, not part of the id).
    pub space: u32,
}

/// A session's running state (public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeProgress {
    /// Open, closed or decrypted.
    pub status: HeStatus,
    /// Inputs accepted.
    pub count: u64,
    /// The aggregate so far (`64 × slots` bytes).
    pub aggregate: Hex,
    /// Hash chain over the accepted inputs: `SHA-256("keyquorum-he-v1/input"
    /// ‖ previous ‖ u64 BE index ‖ u16 BE len ‖ submitter ‖ u32 BE len ‖
    /// ciphertext ‖ u32 BE len ‖ proof)`, zero before the first.
    pub inputs_hash: Hex32,
    /// The result, once decrypted.
    #[serde(default)]
    pub result: Option<HeResultRecord>,
}

/// A recorded decryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeResultRecord {
    /// One value per slot (`count`: one, the number of inputs).
    pub values: Vec<u64>,
    /// The key generation that decrypted.
    pub epoch: u64,
    /// Its group key (core encoding: threshold, members, public shares).
    pub group_key: Hex,
    /// The `t` decryption shares that combined (core encoding, with
    /// proofs, each binding the inputs' count and hash chain); for a
    /// `count`, the members' attestations (shares of no ciphertext).
    pub shares: Vec<Hex>,
}

/// `POST /v1/he/sessions/{name}/close` and `.../result`: the inputs the
/// client closes or decrypts, as it saw them. Applied (and, for a result,
/// released by each member) only if the session holds exactly these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeInputsStatement {
    /// How many inputs.
    pub count: u64,
    /// Their hash chain's last link.
    pub inputs_hash: Hex32,
}

/// `GET /v1/he/sessions/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeSessionInfo {
    /// Name.
    pub name: String,
    /// Session public key (hex, 32 bytes).
    pub public_key: Hex32,
    /// Session id (hex, 32 bytes): inputs' proofs are bound to it.
    pub id: Hex32,
    /// Current threshold of its key.
    pub threshold: u16,
    /// Current members of its key.
    pub members: Vec<NodeId>,
    /// Current generation of its key.
    pub epoch: u64,
    /// Values per input.
    pub slots: u16,
    /// Input proof policy.
    pub inputs: String,
    /// Bound (bits).
    pub bound: u8,
    /// The computation.
    pub op: HeOp,
    /// Open, closed or decrypted.
    pub status: HeStatus,
    /// Inputs accepted.
    pub count: u64,
    /// Their hash chain's last link.
    pub inputs_hash: Hex32,
    /// Fewest inputs it may be closed with.
    pub min_inputs: u64,
    /// Weights per input index (`weighted`).
    #[serde(default)]
    pub weights: Option<Vec<u64>>,
    /// Weights per submitter (`weighted`).
    #[serde(default)]
    pub submitter_weights: Option<BTreeMap<String, u64>>,
    /// Who may submit (`None`: any client).
    #[serde(default)]
    pub submitters: Option<Vec<String>>,
    /// At most one input per client.
    pub one_per_client: bool,
    /// Binary measurements its members must have stated (`None`: any).
    #[serde(default)]
    pub measurements: Option<Vec<Hex32>>,
}

/// `GET /v1/he/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeSessionList {
    /// Sessions by name.
    pub sessions: Vec<HeSessionInfo>,
}

/// `POST /v1/he/sessions/{name}/inputs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitInputRequest {
    /// `64 × slots` bytes.
    pub ciphertext: Hex,
    /// The proof the session's policy asks (empty for `none`).
    #[serde(default)]
    pub proof: Hex,
    /// The index this input must take (required by sessions weighted per
    /// input index: the log's order, which the leader picks, then cannot
    /// choose an input's weight; refused if the session is at another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
}

/// An accepted input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitInputResponse {
    /// Its index in the session (0-based).
    pub index: u64,
}

/// One input in a transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeInput {
    /// Index (0-based).
    pub index: u64,
    /// Who submitted it.
    pub submitter: String,
    /// The ciphertext.
    pub ciphertext: Hex,
    /// Its proof.
    pub proof: Hex,
}

/// An input as members store it: the input and the inputs' hash chain
/// before it. A member that lacks a run of inputs (it installed a snapshot,
/// which carries only the chain's end) checks a fetched run newest first:
/// each input with its `prev` must hash to the link after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeStoredInput {
    /// The input.
    #[serde(flatten)]
    pub input: HeInput,
    /// The chain before it (`None` in records written before this field:
    /// those cannot be served to a member that lacks them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<Hex32>,
}

/// The public record of a session: enough to re-check its result from
/// public data alone (`keyquorum he verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeTranscript {
    /// Format version (1).
    pub version: u16,
    /// The session.
    pub session: HeSessionRecord,
    /// Its state.
    pub progress: HeProgress,
    /// Every accepted input, by index.
    pub inputs: Vec<HeInput>,
}

/// `POST /v1/he/sessions/{name}/result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeResultResponse {
    /// One value per slot.
    pub values: Vec<u64>,
    /// The public record.
    pub transcript: HeTranscript,
}

/// The session capability's commands in the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HeCommand {
    /// Create a session and its key (the key's first generation, endorsed
    /// by its members as any key's).
    HeCreate {
        /// The session.
        session: Box<HeSessionRecord>,
        /// Its key record (`he.NAME`, ristretto255, epoch 1).
        key: Box<crate::control::KeyRecord>,
        /// The members' endorsements of the key.
        endorsements: Vec<crate::control::Endorsement>,
    },
    /// Accept the input in the client's request (the request body is the
    /// input: it is not copied here).
    HeSubmit {
        /// Session name.
        session: String,
    },
    /// Take no more inputs.
    HeClose {
        /// Session name.
        session: String,
    },
    /// Record the decryption: apply checks the shares against the key's
    /// generation and the committed aggregate, and the values against the
    /// combined shares.
    HeResult {
        /// Session name.
        session: String,
        /// The result.
        result: HeResultRecord,
    },
}
