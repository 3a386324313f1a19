//! The one error type of the core crate, grouped by who is at fault.

use crate::id::ParticipantId;

/// Everything that can go wrong in a core protocol.
///
/// Variants are grouped by who is at fault (see [`Error::blame`]): a peer that
/// misbehaved (always named), invalid input from the caller or the network, API
/// misuse, and internal errors that should be unreachable.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// One or more participants sent something provably wrong. Every one of
    /// them is named.
    #[error("participant(s) {} misbehaved: {fault}", list(culprits))]
    Misbehaved {
        /// Who sent it, in id order.
        culprits: Vec<ParticipantId>,
        /// What was wrong.
        fault: Fault,
    },
    /// Bytes from outside could not be decoded.
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    /// Protocol parameters are inconsistent (threshold, member set, ...).
    #[error("invalid parameters: {0}")]
    InvalidParameters(&'static str),
    /// A message came from, or names, a participant outside this protocol run.
    #[error("participant {0} is not part of this protocol run")]
    UnknownParticipant(ParticipantId),
    /// A message belongs to another session.
    #[error("message belongs to another session")]
    WrongSession,
    /// A message belongs to another protocol or round.
    #[error("unexpected message: expected {expected}, got {got}")]
    UnexpectedMessage {
        /// What this state accepts.
        expected: &'static str,
        /// What arrived.
        got: &'static str,
    },
    /// Not enough participants or messages to proceed.
    #[error("not enough participants: have {have}, need {need}")]
    NotEnough {
        /// How many are present.
        have: usize,
        /// How many are required.
        need: usize,
    },
    /// A signature did not verify under the group key.
    #[error("signature does not verify")]
    InvalidSignature,
    /// A share did not match the public commitments it should match.
    #[error("share does not match its public commitment")]
    ShareMismatch,
    /// The protocol was driven in the wrong order.
    #[error("protocol misuse: {0}")]
    Misuse(&'static str),
    /// An error from frost-core that is not attributable to a participant.
    #[error("frost: {0}")]
    Frost(String),
    /// A proof attached to an input does not verify (or does not fit).
    #[error("invalid proof: {0}")]
    InvalidProof(&'static str),
    /// A decrypted value is not below the bound decryption searches.
    #[error("the result is beyond the session's bound of {bits} bits")]
    BeyondBound {
        /// The bound (bits).
        bits: u8,
    },
}

/// What a misbehaving participant did.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The Schnorr proof of knowledge of its constant term is invalid.
    #[error("invalid proof of knowledge")]
    InvalidProofOfKnowledge,
    /// A secret share does not match the sender's Feldman commitment.
    #[error("secret share does not match the sender's commitment")]
    InvalidShare,
    /// A commitment has the wrong number of coefficients.
    #[error("commitment has the wrong degree")]
    WrongDegree,
    /// The sender's commitment does not commit to the value it must (reshare:
    /// its old public share; refresh: zero).
    #[error("commitment does not commit to the required constant term")]
    WrongConstantTerm,
    /// The sender sent two different messages for the same round.
    #[error("sent two different messages for the same round")]
    Equivocation,
    /// The sender saw a different set of round-one broadcasts than we did.
    #[error("saw a different round-one transcript (broadcast inconsistency)")]
    TranscriptMismatch,
    /// A value does not match the commitments the sender published.
    #[error("value does not match the sender's published commitments")]
    InconsistentValue,
    /// A FROST signature share does not verify against the signer's public share.
    #[error("invalid signature share")]
    InvalidSignatureShare,
    /// A decryption share's proof does not verify against the member's
    /// public share and the ciphertext.
    #[error("invalid decryption share")]
    InvalidDecryptionShare,
    /// A threshold-OPRF answer does not verify against the member's public
    /// share and its own round-one commitments.
    #[error("invalid evaluation share")]
    InvalidEvaluationShare,
}

/// Who is at fault for an [`Error`], for mapping to a peer or HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// A named peer misbehaved.
    Peer,
    /// The input was invalid (malformed bytes, bad parameters).
    Input,
    /// The caller drove the API wrongly.
    Misuse,
    /// Should not happen.
    Internal,
}

impl Error {
    /// The participants this error blames, empty if none.
    pub fn culprits(&self) -> Vec<ParticipantId> {
        match self {
            Error::Misbehaved { culprits, .. } => culprits.clone(),
            _ => Vec::new(),
        }
    }

    /// Who is at fault.
    pub fn blame(&self) -> Blame {
        match self {
            Error::Misbehaved { .. } => Blame::Peer,
            Error::Decode(_)
            | Error::InvalidParameters(_)
            | Error::UnknownParticipant(_)
            | Error::WrongSession
            | Error::UnexpectedMessage { .. }
            | Error::NotEnough { .. }
            | Error::InvalidSignature
            | Error::ShareMismatch
            | Error::InvalidProof(_)
            | Error::BeyondBound { .. } => Blame::Input,
            Error::Misuse(_) => Blame::Misuse,
            Error::Frost(_) => Blame::Internal,
        }
    }

    pub(crate) fn misbehaved(culprit: ParticipantId, fault: Fault) -> Self {
        Error::Misbehaved {
            culprits: vec![culprit],
            fault,
        }
    }

    pub(crate) fn frost<C: frost_core::Ciphersuite>(e: frost_core::Error<C>) -> Self {
        Error::Frost(e.to_string())
    }
}

fn list(ids: &[ParticipantId]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why bytes from outside were rejected.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("input truncated")]
    Truncated,
    /// Bytes were left over after the value.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// The format version is not one we read.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// The ciphersuite tag is unknown or not the one expected.
    #[error("wrong ciphersuite: expected {expected}, found {found}")]
    WrongSuite {
        /// The suite this decoder reads.
        expected: u8,
        /// The tag found in the input.
        found: u8,
    },
    /// The message kind tag is not the one expected.
    #[error("wrong message kind: expected {expected}, found {found}")]
    WrongKind {
        /// The kind this decoder reads.
        expected: u8,
        /// The tag found in the input.
        found: u8,
    },
    /// A length field exceeds its limit.
    #[error("length {len} exceeds limit {max}")]
    TooLong {
        /// Length found.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
    /// A scalar is malformed or not canonical (or zero where zero is forbidden).
    #[error("invalid scalar encoding")]
    InvalidScalar,
    /// A group element is malformed, not canonical, not in the prime-order
    /// subgroup, or the identity.
    #[error("invalid group element encoding")]
    InvalidElement,
    /// A participant identifier is zero.
    #[error("participant identifier must be non-zero")]
    ZeroIdentifier,
    /// Participant identifiers are not strictly increasing (duplicates or unsorted).
    #[error("participant identifiers must be strictly increasing")]
    UnsortedIdentifiers,
    /// An embedded frost-core value failed to decode.
    #[error("invalid {0}")]
    InvalidFrostValue(&'static str),
    /// A text or byte layout is not what it must be (what, in words).
    #[error("{0}")]
    Invalid(&'static str),
    /// A typecode (RFC 8554 parameter set) we do not read.
    #[error("unknown {what} typecode {code}")]
    UnknownTypecode {
        /// What the typecode names.
        what: &'static str,
        /// The code found.
        code: u32,
    },
}
