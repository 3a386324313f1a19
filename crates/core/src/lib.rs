//! # keyquorum-core
//!
//! The math and protocols of keyquorum as sans-I/O state machines: the caller
//! feeds messages in and collects the messages to send. Nothing here opens a
//! socket, reads a clock, spawns a task or touches a global RNG; randomness is
//! passed in as `&mut (impl RngCore + CryptoRng)`.
//!
//! | module | what |
//! |---|---|
//! | [`vss`] | Shamir sharing, Feldman commitments, Lagrange interpolation at any point |
//! | [`dkg`] | Pedersen DKG with proofs of knowledge (frost-core `keys::dkg`), culprits named |
//! | [`sign`] | FROST (RFC 9591) signing: one-shot nonces, signer, coordinator/aggregator |
//! | [`refresh`] | proactive refresh: new shares, same `t`, `n` and group key (frost-core `keys::refresh`) |
//! | [`repair`] | verifiable repair of one lost share from `t` helpers (frost-core `keys::repairable` + commitments) |
//! | [`reshare`] | redistribution to a new threshold and member set under the same group key |
//! | [`hazmat`] | temporary reconstruction (export) of a group secret |
//! | [`msgkey`] | per-message key derivation (issue #4, in progress): identifiers, rendezvous coordinator choice, the base secret's split and verification in the exponent, HKDF session keys, payload AEAD |
//! | [`local`] | an in-process message router that runs every participant's state machine (demos, tests, benches) |
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

pub mod codec;
pub mod dkg;
pub mod error;
pub mod hazmat;
pub mod id;
pub mod keys;
pub mod local;
pub mod msgkey;
pub mod refresh;
pub mod repair;
pub mod reshare;
pub mod secret;
pub mod sign;
pub mod suite;
pub mod vss;

pub use error::{Blame, DecodeError, Error, Fault};
pub use id::{ParticipantId, SessionId};
pub use keys::{GroupKey, KeyShare};
pub use suite::{Ed25519, Ristretto255, Secp256k1, Secp256k1Tr, Suite, SuiteId};

/// Re-export of the frost-core version this crate is built on.
pub use frost_core;
