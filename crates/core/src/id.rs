//! Participant and session identifiers.

use core::fmt;
use core::num::NonZeroU16;

use frost_core::{Ciphersuite, Identifier};

use crate::error::{DecodeError, Error};

/// A participant's index in a key's member set: a non-zero `u16`, the `x`
/// coordinate of its share. Stable for a node across epochs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParticipantId(NonZeroU16);

impl From<NonZeroU16> for ParticipantId {
    fn from(v: NonZeroU16) -> Self {
        ParticipantId(v)
    }
}

impl ParticipantId {
    /// The integer value, known not to be zero.
    pub fn nonzero(self) -> NonZeroU16 {
        self.0
    }

    /// Participant 1.
    pub const ONE: ParticipantId = ParticipantId(NonZeroU16::MIN);

    /// A participant id from a non-zero integer.
    pub fn new(value: u16) -> Result<Self, DecodeError> {
        NonZeroU16::new(value)
            .map(Self)
            .ok_or(DecodeError::ZeroIdentifier)
    }

    /// The integer value.
    pub fn get(self) -> u16 {
        self.0.get()
    }

    /// The frost-core identifier (the scalar `value`).
    pub fn to_frost<C: Ciphersuite>(self) -> Identifier<C> {
        // frost maps a non-zero u16 to the non-zero scalar of the same value;
        // it only fails for zero, which NonZeroU16 rules out.
        match Identifier::<C>::try_from(self.get()) {
            Ok(id) => id,
            Err(_) => unreachable_identifier(),
        }
    }

    /// Map a frost-core identifier back to the participant among `members`.
    pub(crate) fn from_frost<'a, C: Ciphersuite>(
        ident: &Identifier<C>,
        members: impl IntoIterator<Item = &'a ParticipantId>,
    ) -> Option<ParticipantId> {
        members
            .into_iter()
            .copied()
            .find(|m| m.to_frost::<C>() == *ident)
    }

    /// The ids `1..=n`.
    pub fn range(n: u16) -> impl Iterator<Item = ParticipantId> {
        (1..=n).filter_map(|i| ParticipantId::new(i).ok())
    }
}

#[allow(
    clippy::panic,
    reason = "NonZeroU16 makes this unreachable; a panic is the honest signal"
)]
fn unreachable_identifier() -> ! {
    panic!("frost rejected a non-zero u16 identifier")
}

impl fmt::Debug for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.0)
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl TryFrom<u16> for ParticipantId {
    type Error = Error;
    fn try_from(v: u16) -> Result<Self, Error> {
        Ok(Self::new(v)?)
    }
}

/// A 32-byte identifier of one protocol run, chosen by the driver (for
/// example the hash of the control-plane entry that started it). Every message
/// carries it, so a message from one run is never accepted by another.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub [u8; 32]);

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId(")?;
        for b in self.0.iter().take(6) {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}
