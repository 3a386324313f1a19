//! The canonical binary encoding of core messages and public values.
//!
//! Every encoding starts with a header `version (1) ‖ suite (1) ‖ kind (1)`.
//! Integers are big-endian; variable-length fields carry a `u32` length and a
//! per-field limit. Scalars and group elements use the suite's canonical
//! encodings and are validated on decode: non-canonical scalars, off-curve or
//! small-order points and the identity are rejected with a [`DecodeError`].
//! Nothing in a decoder panics on any input (fuzzed in `fuzz/`).

use frost_core::{Ciphersuite, Element, Field, Group, Scalar};

use crate::error::DecodeError;
use crate::id::{ParticipantId, SessionId};
use crate::suite::Suite;

/// Version of the encoding written by this crate.
pub const VERSION: u8 = 1;

/// Largest number of participants in any list (n ≤ 1024 is far above any
/// deployment; it bounds allocations made for untrusted input).
pub const MAX_PARTICIPANTS: usize = 1024;

/// Largest embedded blob (a message to sign, a frost-encoded value).
pub const MAX_BLOB: usize = 1 << 20;

/// A value with a canonical byte encoding.
pub trait Encode {
    /// The encoding.
    fn to_bytes(&self) -> Vec<u8>;
}

/// A value decoded from untrusted bytes.
pub trait Decode: Sized {
    /// Decode, rejecting anything malformed, non-canonical or with trailing bytes.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError>;
}

pub(crate) fn scalar_from_bytes<C: Ciphersuite>(bytes: &[u8]) -> Result<Scalar<C>, DecodeError> {
    let ser: <<C::Group as Group>::Field as Field>::Serialization =
        bytes.try_into().map_err(|_| DecodeError::InvalidScalar)?;
    <<C::Group as Group>::Field>::deserialize(&ser).map_err(|_| DecodeError::InvalidScalar)
}

pub(crate) fn element_from_bytes<C: Suite>(bytes: &[u8]) -> Result<Element<C>, DecodeError> {
    // An encoding this participant produced or checked before (see
    // `crate::known`) takes only the cheap part of the check.
    if C::SKIPS_KNOWN && crate::known::is_known(C::SUITE, bytes) {
        if let Some(e) = C::decode_known(bytes) {
            return Ok(e);
        }
    }
    let ser: <C::Group as Group>::Serialization =
        bytes.try_into().map_err(|_| DecodeError::InvalidElement)?;
    let e = <C::Group>::deserialize(&ser).map_err(|_| DecodeError::InvalidElement)?;
    // Some group decoders accept more than one encoding of a point (k256's
    // SEC1 parser takes the 0x05 "compact" tag beside 0x02/0x03, found by the
    // decode fuzzers). Only the canonical encoding is accepted, so every
    // value has exactly one wire form and transcript hashes cannot be split.
    if !C::CANONICAL_ELEMENT_DECODER && element_to_bytes::<C>(&e).as_deref() != Some(bytes) {
        return Err(DecodeError::InvalidElement);
    }
    if C::SKIPS_KNOWN {
        crate::known::remember(C::SUITE, bytes);
    }
    Ok(e)
}

/// The canonical encoding of a non-identity element; `None` for the identity,
/// which has no encoding.
pub(crate) fn element_to_bytes<C: Ciphersuite>(e: &Element<C>) -> Option<Vec<u8>> {
    <C::Group>::serialize(e).ok().map(|s| s.as_ref().to_vec())
}

fn scalar_len<C: Ciphersuite>() -> usize {
    <<C::Group as Group>::Field>::serialize(&<<C::Group as Group>::Field>::zero())
        .as_ref()
        .len()
}

fn element_len<C: Suite>() -> usize {
    C::ELEMENT_LEN
}

/// Builds an encoding.
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub(crate) fn new<C: Suite>(kind: u8) -> Self {
        Writer(vec![VERSION, C::SUITE as u8, kind])
    }

    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn id(&mut self, v: ParticipantId) -> &mut Self {
        self.u16(v.get())
    }

    pub(crate) fn ids<'a>(
        &mut self,
        ids: impl ExactSizeIterator<Item = &'a ParticipantId>,
    ) -> &mut Self {
        self.u16(ids.len() as u16);
        for id in ids {
            self.id(*id);
        }
        self
    }

    pub(crate) fn session(&mut self, s: &SessionId) -> &mut Self {
        self.0.extend_from_slice(&s.0);
        self
    }

    pub(crate) fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }

    pub(crate) fn blob(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }

    pub(crate) fn scalar<C: Ciphersuite>(&mut self, s: &Scalar<C>) -> &mut Self {
        self.raw(<<C::Group as Group>::Field>::serialize(s).as_ref())
    }

    /// Writes a non-identity element. Identity elements never reach an
    /// encoder: every element we encode is a commitment to a random non-zero
    /// value or a validated decoded element. If one did, the zero-filled field
    /// makes the decoder reject the message rather than misread it.
    pub(crate) fn element<C: Suite>(&mut self, e: &Element<C>) -> &mut Self {
        match element_to_bytes::<C>(e) {
            Some(b) => {
                // In a producing scope (elements computed in the group
                // only) the encoding is known valid.
                if C::SKIPS_KNOWN {
                    crate::known::remember_encoded(C::SUITE, &b);
                }
                self.raw(&b)
            }
            None => {
                let len = element_len::<C>();
                self.0.extend(core::iter::repeat_n(0u8, len));
                self
            }
        }
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads an encoding, checking every field.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Check the header and position after it.
    pub(crate) fn new<C: Suite>(buf: &'a [u8], kind: u8) -> Result<Self, DecodeError> {
        let mut r = Reader { buf };
        let version = r.u8()?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let suite = r.u8()?;
        if suite != C::SUITE as u8 {
            return Err(DecodeError::WrongSuite {
                expected: C::SUITE as u8,
                found: suite,
            });
        }
        let k = r.u8()?;
        if k != kind {
            return Err(DecodeError::WrongKind {
                expected: kind,
                found: k,
            });
        }
        Ok(r)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = self.take(1)?;
        b.first().copied().ok_or(DecodeError::Truncated)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        let arr: [u8; 2] = b.try_into().map_err(|_| DecodeError::Truncated)?;
        Ok(u16::from_be_bytes(arr))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        let arr: [u8; 4] = b.try_into().map_err(|_| DecodeError::Truncated)?;
        Ok(u32::from_be_bytes(arr))
    }

    pub(crate) fn id(&mut self) -> Result<ParticipantId, DecodeError> {
        ParticipantId::new(self.u16()?)
    }

    /// A count-prefixed, strictly increasing list of ids.
    pub(crate) fn ids(&mut self) -> Result<Vec<ParticipantId>, DecodeError> {
        let n = self.count(MAX_PARTICIPANTS)?;
        let mut out: Vec<ParticipantId> = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.id()?;
            if let Some(last) = out.last() {
                if *last >= id {
                    return Err(DecodeError::UnsortedIdentifiers);
                }
            }
            out.push(id);
        }
        Ok(out)
    }

    /// A `u16` count, bounded by `max`.
    pub(crate) fn count(&mut self, max: usize) -> Result<usize, DecodeError> {
        let n = self.u16()? as usize;
        if n > max {
            return Err(DecodeError::TooLong { len: n, max });
        }
        Ok(n)
    }

    pub(crate) fn session(&mut self) -> Result<SessionId, DecodeError> {
        let b = self.take(32)?;
        let arr: [u8; 32] = b.try_into().map_err(|_| DecodeError::Truncated)?;
        Ok(SessionId(arr))
    }

    pub(crate) fn array32(&mut self) -> Result<[u8; 32], DecodeError> {
        Ok(self.session()?.0)
    }

    pub(crate) fn blob(&mut self, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(DecodeError::TooLong { len, max });
        }
        self.take(len)
    }

    pub(crate) fn scalar<C: Ciphersuite>(&mut self) -> Result<Scalar<C>, DecodeError> {
        let b = self.take(scalar_len::<C>())?;
        scalar_from_bytes::<C>(b)
    }

    pub(crate) fn element<C: Suite>(&mut self) -> Result<Element<C>, DecodeError> {
        let b = self.take(element_len::<C>())?;
        element_from_bytes::<C>(b)
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.buf.len()))
        }
    }
}
