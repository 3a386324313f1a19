//! Checking an audit entry's inclusion proof ([`AuditProof`]) without
//! trusting the node that gave it: the entry's hash from its content, the
//! Merkle path (RFC 9162 §2.1.3.2) to the signed head's root, and the
//! head's signature by the key you know for its signer.

use ed25519_dalek::{Signature, VerifyingKey};
use keyquorum_core::{auditlog, merkle};
use keyquorum_wire::control::AuditProof;

/// Why a proof does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The entry's stated hash is not the hash of its content.
    #[error("the entry's hash does not match its content")]
    Entry,
    /// The head does not cover the entry, or states no root.
    #[error("the signed head does not cover entry {0} with a Merkle root")]
    Head(u64),
    /// The path does not lead from the entry to the head's root.
    #[error("the inclusion path does not lead to the signed root")]
    Path,
    /// The head's signature does not verify under the given key.
    #[error("the head's signature does not verify under node {0}'s identity key")]
    Signature(keyquorum_wire::NodeId),
}

/// Check `proof` with `identity`, the Ed25519 identity key you hold for the
/// head's signer (`keyquorum node identity` on that node).
pub fn verify_proof(proof: &AuditProof, identity: &[u8; 32]) -> Result<(), ProofError> {
    let e = &proof.entry;
    let event = serde_json::to_vec(&e.event).map_err(|_| ProofError::Entry)?;
    if auditlog::entry_hash(e.seq, &e.prev.0, &event) != e.hash.0 {
        return Err(ProofError::Entry);
    }
    let h = &proof.head;
    let Some(root) = h.root.as_ref().filter(|_| h.seq >= e.seq) else {
        return Err(ProofError::Head(e.seq));
    };
    let path: Vec<merkle::Hash> = proof.path.iter().map(|p| p.0).collect();
    let size = h.seq.checked_add(1).ok_or(ProofError::Head(e.seq))?;
    if !merkle::verify_inclusion(&merkle::leaf_hash(&e.hash.0), e.seq, size, &path, &root.0) {
        return Err(ProofError::Path);
    }
    // The head's own entry hash is bound by the signature with the root;
    // for the last entry the path is empty and the leaf is the root.
    let bytes = auditlog::head_signing_bytes(h.seq, &h.hash.0, Some(&root.0));
    let ok = VerifyingKey::from_bytes(identity).is_ok_and(|k| {
        Signature::from_slice(&h.signature.0).is_ok_and(|s| k.verify_strict(&bytes, &s).is_ok())
    });
    if !ok {
        return Err(ProofError::Signature(h.signer));
    }
    Ok(())
}
