//! # keyquorum-core
//!
//! The math and protocols of keyquorum as sans-I/O state machines: the caller
//! feeds messages in and collects the messages to send. Nothing here opens a
//! socket, reads a clock, spawns a task or touches a global RNG; randomness is
//! passed in as `&mut (impl RngCore + CryptoRng)`.
//!
//! | module | what |
//! |---|---|
//! | [`keys`] | shared keys (DESIGN.md §3.1): [`dkg`], FROST [`sign`]ing, [`refresh`], verifiable [`repair`], [`reshare`] to a new `t` and member set, temporary reconstruction ([`hazmat`]); re-exported here under their short names |
//! | [`msgkey`] | per-message key derivation (DESIGN.md §3.2): identifiers, rendezvous coordinator choice, the base secret's split and verification in the exponent, HKDF session keys, payload AEAD |
//! | [`he`] | computation on encrypted data (DESIGN.md §3.3): exponential ElGamal over Ristretto255, input proofs (knowledge, range), decryption shares with Chaum–Pedersen proofs, their combination, plaintext recovery |
//! | [`oprf`] | oblivious pseudorandom functions (DESIGN.md §3.4): RFC 9497 VOPRF (ristretto255-SHA512) proofs, and its threshold form, `t` key holders answering with one proof under the group key |
//! | [`lms`] | hash-based signatures (DESIGN.md §3.5): LM-OTS, LMS trees built whole or as aligned subtrees, HSS encodings and verification (RFC 8554, SHA-256/32 parameter sets) |
//! | [`httpsig`] | HTTP Message Signatures (RFC 9421, Ed25519) and Content-Digest (RFC 9530): how a client signs a request and any participant checks it |
//! | [`auditlog`] | the audit log's entry hash and signed-head formats (what a client checks a proof with) |
//! | [`merkle`] | Merkle trees as in RFC 9162 §2.1: roots at any size and inclusion proofs from stored subtrees, and their verification (the audit log) |
//! | [`vss`] | Shamir sharing, Feldman commitments, Lagrange interpolation at any point (used by every capability) |
//! | [`suite`] | the ciphersuites ([`Suite`]) every protocol is generic over |
//! | [`codec`] | the canonical binary encoding of every protocol message |
//! | [`secret`], [`id`], [`error`] | secret newtypes, participant and session identifiers, the crate's error |
//! | [`local`] | an in-process message router that runs every participant's state machine (demos, tests, benches) |
//!
//! One folder per capability: [`keys`], [`msgkey`], [`he`], [`oprf`] and
//! [`lms`].
//!
//! The same generic code serves every [`Suite`]: Ed25519, secp256k1 with
//! BIP-340/Taproot output, plain secp256k1 (RFC 9591) and Ristretto255.
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::indexing_slicing,
        reason = "tests index fixed-size data they built"
    )
)]

pub mod auditlog;
pub mod codec;
pub mod error;
pub mod he;
pub mod httpsig;
pub mod id;
pub mod keys;
pub mod known;
pub mod lms;
pub mod local;
pub mod merkle;
pub mod msgkey;
pub mod oprf;
pub mod secret;
pub mod suite;
pub mod vss;

pub use error::{Blame, DecodeError, Error, Fault};
pub use id::{ParticipantId, SessionId};
pub use keys::{dkg, hazmat, refresh, repair, reshare, sign};
pub use keys::{GroupKey, KeyShare};
pub use suite::{Ed25519, Ristretto255, Secp256k1, Secp256k1Tr, Suite, SuiteId};

/// Re-export of the frost-core version this crate is built on.
pub use frost_core;

/// rand_core 0.9 view of a rand_core 0.6 RNG, for the hpke crate.
pub(crate) struct Rng09<'a, R>(pub(crate) &'a mut R);

impl<R: rand_core::RngCore> rand_core_09::RngCore for Rng09<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst);
    }
}

impl<R: rand_core::RngCore + rand_core::CryptoRng> rand_core_09::CryptoRng for Rng09<'_, R> {}
