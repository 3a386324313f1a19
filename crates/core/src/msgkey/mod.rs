//! Per-message key derivation for authenticated messages (DESIGN.md §3.2;
//! issue #4), sans-I/O: the math and message checks, no sockets, no clock
//! (times are arguments), no global RNG (every random draw takes an RNG).
//!
//! ## The seed flow and what this module makes of it
//!
//! Two endpoints, a *sender* and a *receiver*, exchange a message with no
//! pre-shared key and no key server. For each message:
//!
//! 1. the sender draws a random nonce and computes the **message
//!    identifier** `id = SHA-256("keyquorum/msg/id/v1" ‖ SHA-256(content) ‖
//!    time ‖ sender ‖ receiver ‖ nonce)` ([`message_id`]);
//! 2. the **coordinators** for the message are the `m` cluster members with
//!    the highest rendezvous weight for `id` ([`route::coordinators`],
//!    Thaler & Ravishankar, "Using name-based mappings to increase hit
//!    rates", IEEE/ACM ToN 1998): every party recomputes the choice and a
//!    message sent to another node is refused;
//! 3. the sender draws a **base secret** `k` and Shamir-splits it with
//!    Feldman commitments ([`split::deal`]) among itself, the receiver
//!    and the coordinators, with a threshold that the coordinators alone
//!    never reach (layout in [`split::Layout`]);
//! 4. the **session key** is `HKDF-SHA256(ikm = k, salt = deployment salt,
//!    info = id)` (RFC 5869) and the payload is sealed with
//!    ChaCha20-Poly1305 (RFC 8439) under it, the encoded header as
//!    associated data ([`kdf`]);
//! 5. in the default **verify-in-the-exponent** mode each coordinator checks
//!    its share against the commitments, takes `k·G` from them (the
//!    commitment's constant term, equal to the interpolation of the public
//!    share images) without learning `k`, and signs the **verification
//!    value** `H("keyquorum/msg/confirm/v1" ‖ k·G ‖ id)`
//!    ([`split::verification_value`]); sender and receiver compare it with
//!    their own. The receiver rebuilds `k` from its shares and one or more
//!    coordinators' forwarded shares, derives the session key, and opens the
//!    payload. No single node other than the receiver (and the sender, who
//!    chose `k`) can learn `k`.
//!
//! The roles' steps are [`protocol::send`], [`protocol::coordinate`] and
//! [`protocol::receive`]; the node crate keeps the state they leave to their
//! caller (seen identifiers, prekeys, the endpoint registry).
//!
//! The seed's literal flow ("the coordinator reconstructs `k` and broadcasts
//! a hash of the session key") is kept as the explicit
//! [`Mode::CoordinatorReconstructs`]: there the coordinator is trusted with
//! the session key of every message it coordinates.

pub mod kdf;
pub mod protocol;
pub mod route;
pub mod split;

pub use kdf::{message_id, open_payload, seal_payload, session_key, SessionKey};

/// Domain label of the message identifier.
pub const ID_LABEL: &[u8] = b"keyquorum/msg/id/v1";

/// How coordinators take part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Default: coordinators verify shares against the commitments and
    /// confirm `k·G`; none of them learns `k`.
    VerifyInTheExponent,
    /// The seed's literal flow: each coordinator receives enough shares to
    /// rebuild `k`, derives the session key and confirms a hash of it. The
    /// coordinator is trusted with the key.
    CoordinatorReconstructs,
}

/// Why a message is refused. Every variant leaves stored state unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MsgError {
    /// The payload or header was altered (AEAD authentication failed).
    #[error("payload or header was tampered with")]
    Tampered,
    /// A share does not lie on the sender's committed polynomial.
    #[error("share {holder} is not on the sender's commitments")]
    ShareOffCommitments {
        /// The share's index (the sender dealt it: the sender is to blame).
        holder: u16,
    },
    /// The coordinator's verification value is not ours.
    #[error("verification value mismatch")]
    VerificationMismatch,
    /// The identifier was seen before inside the acceptance window.
    #[error("replayed message identifier")]
    Replayed,
    /// The timestamp is outside the acceptance window.
    #[error("timestamp outside the acceptance window")]
    OutsideWindow,
    /// This node is not a coordinator the identifier routes to.
    #[error("message routed to the wrong coordinator")]
    WrongCoordinator,
    /// Parameters do not fit (coordinator count, shares, encodings).
    #[error("invalid: {0}")]
    Invalid(&'static str),
}
