//! Computation on encrypted data (DESIGN.md §3.3; issue #19), sans-I/O:
//! exponential ElGamal over Ristretto255 (RFC 9496) under a key from our
//! DKG, the proofs that go with it, threshold decryption with a proof per
//! member, and plaintext recovery.
//!
//! ## Encoding (what an outside implementation produces)
//!
//! `B` is the Ristretto255 basepoint, `P` the session public key (the DKG
//! group key, `P = s·B` for the shared secret `s`), `ℓ` the group order.
//! Points are 32-byte canonical Ristretto255 encodings (RFC 9496 §4.3.2:
//! decoding refuses every non-canonical string); scalars are 32-byte
//! little-endian integers below `ℓ` (a non-reduced scalar is refused).
//!
//! - **Ciphertext** of one slot (64 bytes): `c1 ‖ c2` with `c1 = r·B`,
//!   `c2 = m·B + r·P`, for a random scalar `r` and the value `m ≥ 0`. A
//!   `K`-slot ciphertext is `K` of them concatenated ([`Ciphertext`]).
//!   An input whose `c1` is the identity is not encrypted and is refused.
//! - **Hashes to scalars** are SHA-512 of the labelled, length-prefixed
//!   fields below, read as a 64-byte little-endian integer and reduced
//!   mod `ℓ` (as RFC 9496's `from_uniform_bytes` / dalek's
//!   `Scalar::from_bytes_mod_order_wide`).
//! - **Context** of a submission ([`Context::bytes`]): `"keyquorum-he-v1"
//!   ‖ session id (32 bytes) ‖ P (32) ‖ u16 BE length ‖ submitter (UTF-8)`.
//!   Binding the submitter means a ciphertext copied into another client's
//!   submission needs a new proof, which needs `r`.
//! - **Knowledge proof** ([`proof::KnowledgeProof`], 64 bytes per slot): a
//!   Schnorr proof of knowledge of `r` (Schnorr 1991; Fiat–Shamir):
//!   `A = k·B`, `e = H("keyquorum-he-v1/knowledge" ‖ context ‖ u32 BE slot ‖
//!   c1 ‖ c2 ‖ A)`, `z = k + e·r`; the proof is `e ‖ z`. The verifier
//!   computes `A = z·B − e·c1` and checks `e`.
//! - **Range proof** ([`proof::RangeProof`], `BITS × 192` bytes per slot):
//!   the slot value's bits `b_j` each encrypted as `(r_j·B, b_j·B + r_j·P)`
//!   with the slot's ciphertext equal to `Σ 2^j·(bit ciphertext j)`, and per
//!   bit a disjunctive Chaum–Pedersen proof (Cramer, Damgård and
//!   Schoenmakers, CRYPTO '94; as ElectionGuard 2.0 §3.3.5 uses it) that it
//!   encrypts 0 or 1. Layout in [`proof`].
//! - **Decryption share** ([`decrypt::DecryptionShare`]): member `i` with
//!   share `s_i` and public share `Y_i = s_i·B` sends `D_k = s_i·c1_k` for
//!   every slot `k` of the aggregate, and one Chaum–Pedersen proof that
//!   `log_B Y_i = log_{c1_k} D_k` for all `k` at once. Any `t` shares
//!   combine by Lagrange: `m_k·B = c2_k − Σ λ_i·D_{i,k}`.
//! - **Plaintext recovery** ([`dlog::DlogTable`]): baby-step/giant-step in
//!   `[0, 2^bound)`; a value past the bound is an error, never a wrong
//!   number (every candidate is checked by a scalar multiplication).
//!
//! ## What the proofs do and do not promise
//! With the `none` policy a client can copy another's ciphertext; with
//! `none` or `knowledge` it can encrypt a "negative" value (`ℓ − x`) and
//! pull a sum down: only `range` bounds each input. A range proof is also a
//! proof of knowledge of `r` (each bit proof is), bound to the submitter.

pub mod ciphertext;
pub mod decrypt;
pub mod dlog;
pub mod proof;

pub use ciphertext::{Aggregate, Ciphertext, Randomness};
pub use decrypt::{
    check_attestation, check_result, combine, combine_checked, decrypt, Binding, DecryptionShare,
    ShareProof,
};
pub use dlog::DlogTable;
pub use proof::{InputPolicy, InputProof, KnowledgeProof, RangeProof};

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};

use crate::error::{DecodeError, Error};

/// Label that opens every context.
pub const CONTEXT_LABEL: &[u8] = b"keyquorum-he-v1";

/// Most slots in one ciphertext.
pub const MAX_SLOTS: usize = 256;

/// Largest bound (bits) on a slot's aggregate that decryption searches.
pub const MAX_BOUND_BITS: u8 = 48;

/// What a submission's proofs are bound to: the session (its id and public
/// key) and the submitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The session's id (fixed when it is created).
    pub session: [u8; 32],
    /// The session public key `P`.
    pub public_key: RistrettoPoint,
    /// Who submits (the client's name in the registry).
    pub submitter: String,
}

impl Context {
    /// A context for `submitter`'s inputs to session `session` under the
    /// encoded public key `public_key` (refused unless a canonical point).
    pub fn new(session: [u8; 32], public_key: &[u8], submitter: &str) -> Result<Self, Error> {
        Ok(Self {
            session,
            public_key: point(public_key)?,
            submitter: submitter.to_string(),
        })
    }

    /// `"keyquorum-he-v1" ‖ session ‖ P ‖ u16 BE len ‖ submitter`.
    pub fn bytes(&self) -> Result<Vec<u8>, Error> {
        let name = self.submitter.as_bytes();
        let len = u16::try_from(name.len())
            .map_err(|_| Error::InvalidParameters("submitter name longer than 65535 bytes"))?;
        let mut out = Vec::with_capacity(CONTEXT_LABEL.len() + 66 + name.len());
        out.extend_from_slice(CONTEXT_LABEL);
        out.extend_from_slice(&self.session);
        out.extend_from_slice(self.public_key.compress().as_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(name);
        Ok(out)
    }
}

/// The next link of a session's hash chain over its accepted inputs:
/// `SHA-256("keyquorum-he-v1/input" ‖ previous ‖ u64 BE index ‖ u16 BE len ‖
/// submitter ‖ u32 BE len ‖ ciphertext ‖ u32 BE len ‖ proof)`; the chain
/// starts at 32 zero bytes.
pub fn input_link(
    previous: &[u8; 32],
    index: u64,
    submitter: &str,
    ciphertext: &[u8],
    proof: &[u8],
) -> [u8; 32] {
    use sha2::Sha256;
    let mut h = Sha256::new();
    h.update(b"keyquorum-he-v1/input");
    h.update(previous);
    h.update(index.to_be_bytes());
    h.update(
        u16::try_from(submitter.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    h.update(submitter.as_bytes());
    for part in [ciphertext, proof] {
        h.update(u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// A session's id: `SHA-256("keyquorum-he-v1/session" ‖ u32 BE len ‖
/// policy ‖ P)`, where `policy` is the canonical encoding of everything
/// fixed at creation (the node and client use the session record's JSON
/// with the id zeroed). Every proof and share binds the id, so a verifier
/// that recomputes it knows the policy it checks under is the one the
/// members decrypted under.
pub fn session_id(policy: &[u8], public_key: &[u8; 32]) -> [u8; 32] {
    use sha2::Sha256;
    let mut h = Sha256::new();
    h.update(b"keyquorum-he-v1/session");
    h.update(
        u32::try_from(policy.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    h.update(policy);
    h.update(public_key);
    h.finalize().into()
}

/// SHA-512 of `parts`, reduced mod ℓ.
pub(crate) fn hash_to_scalar(parts: &[&[u8]]) -> Scalar {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    let wide: [u8; 64] = h.finalize().into();
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// Decode a canonical Ristretto255 encoding (identity allowed).
pub(crate) fn point(bytes: &[u8]) -> Result<RistrettoPoint, DecodeError> {
    CompressedRistretto::from_slice(bytes)
        .map_err(|_| DecodeError::InvalidElement)?
        .decompress()
        .ok_or(DecodeError::InvalidElement)
}

/// Decode a canonical scalar (below ℓ).
pub(crate) fn scalar(bytes: &[u8]) -> Result<Scalar, DecodeError> {
    let b: [u8; 32] = bytes.try_into().map_err(|_| DecodeError::InvalidScalar)?;
    Option::from(Scalar::from_canonical_bytes(b)).ok_or(DecodeError::InvalidScalar)
}

/// A random scalar from `rng`.
pub(crate) fn random_scalar<R: rand_core::RngCore + rand_core::CryptoRng>(rng: &mut R) -> Scalar {
    let mut wide = zeroize::Zeroizing::new([0u8; 64]);
    rng.fill_bytes(wide.as_mut());
    Scalar::from_bytes_mod_order_wide(&wide)
}
