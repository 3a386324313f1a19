//! What a tree's records are keyed by and bound to: the vault keys of a
//! leaf's share, lock and tree nodes, and the hash of a client's request
//! that a lock (and a key generation run) binds.

use keyquorum_wire::peer::ClientRequest;
use keyquorum_wire::Hex32;
use sha2::{Digest, Sha256};

use crate::api::auth::Authorized;

/// Vault key of leaf `q`'s share or lock in run `run`.
pub(crate) fn leaf_key(run: &Hex32, q: u32) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..32].copy_from_slice(&run.0);
    k[32..].copy_from_slice(&q.to_be_bytes());
    k
}

/// What a lock binds: what the client's signature covers and makes unique
/// (its key, nonce and time, the method, target URI and body), never the
/// bytes around it a relaying node could vary.
pub(crate) fn request_hash(a: &Authorized, request: &ClientRequest) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"keyquorum-seedtree-request-v2");
    for part in [
        a.verified.keyid.as_bytes(),
        a.verified.nonce.as_bytes(),
        a.method.as_bytes(),
        request.target_uri.as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(a.verified.created.to_be_bytes());
    h.update(Sha256::digest(&a.body));
    h.finalize().into()
}
