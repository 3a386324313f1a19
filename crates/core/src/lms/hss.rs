//! The HSS hierarchy's encodings and verification (RFC 8554 §6). The
//! federated key is HSS with one level (L = 1: the public key is `u32str(1)`
//! and the LMS public key, a signature `u32str(0)` and the LMS signature);
//! verification takes any number of levels (the RFC's vectors have two).

use super::tree::{LmsPublicKey, LmsSignature};
use super::{exact_len, take, take_u32};
use crate::{DecodeError, Error};

/// The most levels HSS allows (RFC 8554 §6).
pub const MAX_LEVELS: u32 = 8;

/// An HSS public key: `u32str(L) ‖ pub[0]` (RFC 8554 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HssPublicKey {
    /// Levels, `L` (1 ..= 8).
    pub levels: u32,
    /// The top tree's public key.
    pub top: LmsPublicKey,
}

impl HssPublicKey {
    /// Bytes of the encoding.
    pub const LEN: usize = 4 + LmsPublicKey::LEN;

    /// A one-level key over `top`.
    pub fn single(top: LmsPublicKey) -> Self {
        Self { levels: 1, top }
    }

    /// The RFC 8554 encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.levels.to_be_bytes().to_vec();
        out.extend_from_slice(&self.top.to_bytes());
        out
    }

    /// Read the RFC 8554 encoding (exactly [`Self::LEN`] bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        exact_len(bytes, Self::LEN)?;
        let (levels, rest) = take_u32(bytes).ok_or(Error::Decode(DecodeError::Truncated))?;
        if !(1..=MAX_LEVELS).contains(&levels) {
            return Err(Error::InvalidParameters("an HSS key has 1 to 8 levels"));
        }
        Ok(Self {
            levels,
            top: LmsPublicKey::from_bytes(rest)?,
        })
    }

    /// Check an HSS signature on `message` (RFC 8554 §6.3, Algorithm 8):
    /// `u32str(Nspk) ‖ (signed_pub_key[i] = sig[i] ‖ pub[i+1])… ‖ sig[Nspk]`,
    /// each tree's key signed by the one above, `Nspk = L − 1`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        let (nspk, mut rest) = take_u32(signature).ok_or(Error::Decode(DecodeError::Truncated))?;
        if nspk.checked_add(1) != Some(self.levels) {
            return Err(Error::InvalidSignature);
        }
        let mut key = self.top;
        for _ in 0..nspk {
            let len = LmsSignature::len_at(rest)?;
            let (sig, tail) = take(rest, len).ok_or(Error::Decode(DecodeError::Truncated))?;
            let (public, tail) =
                take(tail, LmsPublicKey::LEN).ok_or(Error::Decode(DecodeError::Truncated))?;
            key.verify(public, sig)?;
            key = LmsPublicKey::from_bytes(public)?;
            rest = tail;
        }
        key.verify(message, rest)
    }
}

/// The one-level HSS signature of an LMS signature: `u32str(0) ‖ sig`.
pub fn single_signature(lms_signature: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + lms_signature.len());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(lms_signature);
    out
}
