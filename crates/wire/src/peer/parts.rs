//! The small records peer messages carry (re-exported by [`super`]).

use serde::{Deserialize, Serialize};

use crate::{Hex, NodeId};

/// What the helpers and the repaired member of a repair agree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairPlan {
    /// Key name.
    pub key: String,
    /// Its current generation.
    pub epoch: u64,
    /// The helpers (`t` holders, not `target`).
    pub helpers: Vec<NodeId>,
    /// The member whose share is rebuilt.
    pub target: NodeId,
}

/// An HPKE-sealed secret for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Recipient.
    pub to: NodeId,
    /// HPKE encapsulated key.
    pub enc: Hex,
    /// HPKE ciphertext.
    pub ciphertext: Hex,
}

/// One precomputed nonce's public commitment, with the id to redeem it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceCommitment {
    /// Opaque id (16 bytes).
    pub id: Hex,
    /// The core `SigningCommitment` encoding.
    pub commitment: Hex,
}

/// The parameters of a reshare run, as every dealer and new member sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResharePlan {
    /// Key name.
    pub key: String,
    /// The generation being reshared.
    pub epoch: u64,
    /// Old holders that deal (at least the old threshold).
    pub dealers: Vec<NodeId>,
    /// New threshold.
    pub threshold: u16,
    /// New members.
    pub members: Vec<NodeId>,
}

/// A round-2 share a dealer revealed on its recipient's complaint.
#[derive(Clone, Serialize, Deserialize)]
pub struct RevealedShare {
    /// The accuser the share was dealt to.
    pub to: NodeId,
    /// Core `dkg::Round2Message` encoding, in the clear.
    pub message: Hex,
}

impl core::fmt::Debug for RevealedShare {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RevealedShare")
            .field("to", &self.to)
            .field("message", &"<redacted>")
            .finish()
    }
}
