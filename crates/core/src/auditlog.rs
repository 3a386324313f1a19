//! The audit log's hash formats, shared by the nodes that keep the log and
//! the clients that check proofs from it.
//!
//! - Entry `i` has the chain hash
//!   `h_i = SHA-256("keyquorum-audit-v1" ‖ u64 BE i ‖ h_{i-1} ‖ event)` with
//!   `h_{-1} = 0³²`, `event` the entry's event as JSON (fields in
//!   declaration order).
//! - The entries are the leaves of a Merkle tree ([`crate::merkle`],
//!   RFC 9162 §2.1) whose leaf data are the 32 bytes of `h_i`.
//! - A signed head states the last entry's number and hash and the tree's
//!   root; its signature covers [`head_signing_bytes`].

use sha2::{Digest, Sha256};

const ENTRY_DOMAIN: &[u8] = b"keyquorum-audit-v1";

/// The chain hash of entry `seq` with predecessor hash `prev` and event
/// JSON `event`.
pub fn entry_hash(seq: u64, prev: &[u8; 32], event: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ENTRY_DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(prev);
    h.update(event);
    h.finalize().into()
}

/// The bytes a signed head's signature covers: with a root
/// `"keyquorum-audit-head-v2\0" ‖ u64 BE seq ‖ hash ‖ root`; without (heads
/// signed before the log kept its tree)
/// `"keyquorum-audit-head-v1\0" ‖ u64 BE seq ‖ hash`.
pub fn head_signing_bytes(seq: u64, hash: &[u8; 32], root: Option<&[u8; 32]>) -> Vec<u8> {
    let mut m = match root {
        Some(_) => b"keyquorum-audit-head-v2\x00".to_vec(),
        None => b"keyquorum-audit-head-v1\x00".to_vec(),
    };
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    if let Some(r) = root {
        m.extend_from_slice(r);
    }
    m
}
