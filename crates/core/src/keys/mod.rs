//! Shared keys (DESIGN.md §3.1): the threshold-key protocols, one module per
//! protocol, each a sans-I/O state machine whose rounds consume their state.
//!
//! | module | what |
//! |---|---|
//! | [`share`] | the output of key generation: a holder's [`KeyShare`], the public [`GroupKey`] |
//! | [`dkg`] | Pedersen DKG with proofs of knowledge (frost-core `keys::dkg`), culprits named |
//! | [`sign`] | FROST (RFC 9591) signing: one-shot nonces, signer, coordinator/aggregator |
//! | [`refresh`] | proactive refresh: new shares, same `t`, `n` and group key (frost-core `keys::refresh`) |
//! | [`repair`] | verifiable repair of one lost share from `t` helpers (frost-core `keys::repairable` + commitments) |
//! | [`reshare`] | redistribution to a new threshold and member set under the same group key |
//! | [`hazmat`] | temporary reconstruction (export) of a group secret |
//!
//! The next capabilities (`he/`, `oprf/`, `lms/`) are siblings of this
//! folder and of [`crate::msgkey`].

pub mod dkg;
pub mod hazmat;
pub mod refresh;
pub mod repair;
pub mod reshare;
pub mod share;
pub mod sign;

pub use share::{GroupKey, KeyShare};
