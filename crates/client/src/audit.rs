//! Checking an audit entry's inclusion proof ([`AuditProof`]) without
//! trusting the node that gave it, nor any single member: the entry's hash
//! from its content, and for each signed head the Merkle path
//! (RFC 9162 §2.1.3.2) to its root and its signature by a key you hold;
//! enough distinct keys must have signed.

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, VerifyingKey};
use keyquorum_core::{auditlog, merkle};
use keyquorum_wire::control::{AuditProof, HeadProof};

/// Why a proof does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The entry's stated hash is not the hash of its content.
    #[error("the entry's hash does not match its content")]
    Entry,
    /// Fewer of the keys given signed heads the entry checks against than
    /// asked for.
    #[error("{got} of the keys given signed a head the entry checks against; {need} needed")]
    TooFew {
        /// Distinct keys whose heads check.
        got: usize,
        /// How many were asked for.
        need: usize,
    },
}

/// Check `proof` against `keys`, the Ed25519 identity keys you hold for the
/// cluster's members (`keyquorum node identity` on each): the entry must
/// check against heads signed by at least `min_signers` (at least 1)
/// distinct keys among them. Answers how many did.
pub fn verify_proof(
    proof: &AuditProof,
    keys: &[[u8; 32]],
    min_signers: usize,
) -> Result<usize, ProofError> {
    let e = &proof.entry;
    let event = serde_json::to_vec(&e.event).map_err(|_| ProofError::Entry)?;
    if auditlog::entry_hash(e.seq, &e.prev.0, &event) != e.hash.0 {
        return Err(ProofError::Entry);
    }
    let leaf = merkle::leaf_hash(&e.hash.0);
    let mut signers = BTreeSet::new();
    for hp in &proof.heads {
        if let Some(k) = head_key(hp, e.seq, &leaf, keys) {
            signers.insert(k);
        }
    }
    let need = min_signers.max(1);
    if signers.len() < need {
        return Err(ProofError::TooFew {
            got: signers.len(),
            need,
        });
    }
    Ok(signers.len())
}

/// The key among `keys` that signed `hp`'s head, if the head covers leaf
/// `seq` with a root the path leads to.
fn head_key(hp: &HeadProof, seq: u64, leaf: &merkle::Hash, keys: &[[u8; 32]]) -> Option<[u8; 32]> {
    let h = &hp.head;
    let root = h.root.as_ref().filter(|_| h.seq >= seq)?;
    let size = h.seq.checked_add(1)?;
    let path: Vec<merkle::Hash> = hp.path.iter().map(|p| p.0).collect();
    if !merkle::verify_inclusion(leaf, seq, size, &path, &root.0) {
        return None;
    }
    let bytes = auditlog::head_signing_bytes(h.seq, &h.hash.0, Some(&root.0));
    let sig = Signature::from_slice(&h.signature.0).ok()?;
    keys.iter().copied().find(|k| {
        VerifyingKey::from_bytes(k).is_ok_and(|vk| vk.verify_strict(&bytes, &sig).is_ok())
    })
}
