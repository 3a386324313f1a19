//! The threshold VOPRF service (DESIGN.md §3.4; issue #20 item 4): keys
//! made by DKG on Ristretto255, evaluated by `t` members at once with one
//! RFC 9497 proof under the key's public key.
//!
//! Bytes are lowercase hex; the element, proof, commitment, package and
//! response layouts are in `keyquorum_core::oprf`.

use serde::{Deserialize, Serialize};

use crate::{Hex, NodeId};

/// Prefix of an OPRF key's name in the key registry: OPRF key `k` is the
/// shared key `oprf.k` (suite ristretto255), reshared, refreshed and
/// repaired like any key; it never signs and never decrypts.
pub const KEY_PREFIX: &str = "oprf.";

/// The registry name of OPRF key `name`.
pub fn key_name(name: &str) -> String {
    format!("{KEY_PREFIX}{name}")
}

/// `POST /v1/oprf/keys` (an admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateOprfKeyRequest {
    /// The key's name (the registry holds it as `oprf.NAME`).
    pub name: String,
    /// Members that must answer together (default: the cluster's default
    /// for that many members).
    #[serde(default)]
    pub threshold: Option<u16>,
    /// Members holding shares (default: every voter).
    #[serde(default)]
    pub members: Option<Vec<NodeId>>,
}

/// `POST /v1/oprf/{key}/evaluate` (a client whose grant names `oprf.KEY`,
/// or an admin): RFC 9497 VOPRF `BlindEvaluate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// The client's blinded element (32 bytes, a canonical Ristretto255
    /// encoding, not the identity).
    pub blinded_element: Hex,
}

/// The answer: `Z = k·M` and an RFC 9497 proof under the key's public key
/// (`GET /v1/oprf/{key}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvaluateResponse {
    /// The evaluated element (32 bytes).
    pub evaluated_element: Hex,
    /// The proof `c ‖ s` (64 bytes).
    pub proof: Hex,
    /// The members that answered.
    pub members: Vec<NodeId>,
    /// The key generation they answered with.
    pub epoch: u64,
}
