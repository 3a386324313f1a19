//! The ciphersuites keyquorum serves, all through one generic API.

use frost_core::Ciphersuite;

/// A stable one-byte tag for each ciphersuite, used in every encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SuiteId {
    /// FROST(Ed25519, SHA-512), RFC 9591 §6.1: signatures verify under RFC 8032.
    Ed25519 = 1,
    /// FROST(secp256k1, SHA-256) with BIP-340/Taproot output (x-only keys).
    Secp256k1Tr = 2,
    /// FROST(ristretto255, SHA-512), RFC 9591 §6.2: internal protocols.
    Ristretto255 = 3,
    /// FROST(secp256k1, SHA-256), RFC 9591 §6.5 (SEC1 compressed keys).
    Secp256k1 = 4,
}

impl SuiteId {
    /// The suite with this tag.
    pub fn from_u8(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::Ed25519),
            2 => Some(Self::Secp256k1Tr),
            3 => Some(Self::Ristretto255),
            4 => Some(Self::Secp256k1),
            _ => None,
        }
    }

    /// The name used in APIs and configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::Secp256k1Tr => "secp256k1-tr",
            Self::Ristretto255 => "ristretto255",
            Self::Secp256k1 => "secp256k1",
        }
    }
}

impl core::str::FromStr for SuiteId {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ed25519" => Ok(Self::Ed25519),
            "secp256k1-tr" => Ok(Self::Secp256k1Tr),
            "ristretto255" => Ok(Self::Ristretto255),
            "secp256k1" => Ok(Self::Secp256k1),
            _ => Err(crate::Error::InvalidParameters(
                "unknown suite (ed25519 | secp256k1-tr | ristretto255 | secp256k1)",
            )),
        }
    }
}

/// A frost-core ciphersuite that keyquorum supports.
pub trait Suite: Ciphersuite {
    /// Its tag in encodings.
    const SUITE: SuiteId;
    /// Whether the frost crate's element decoder accepts only canonical
    /// encodings. Where it does not, [`crate::codec`] re-encodes every decoded
    /// element and compares (a field inversion per point); where it does, that
    /// check is skipped.
    const CANONICAL_ELEMENT_DECODER: bool;
    /// Bytes in an element's encoding (read on every element decoded:
    /// a constant, not a serialization of the generator).
    const ELEMENT_LEN: usize;
    /// Whether an encoding known to be valid ([`crate::known`]) decodes
    /// with [`Suite::decode_known`] instead of the full check. The rule
    /// that keeps this sound: an encoding is known only after it passed the
    /// full check, or as the encoding of an element computed as a multiple
    /// of the generator in a `KnownElements::producing` scope.
    const SKIPS_KNOWN: bool = false;
    /// Decode an encoding known to be valid (it passed the full check
    /// before, or was produced from an element), skipping the part of the
    /// check that cannot fail for it. Never called on untrusted bytes
    /// that are not in the participant's [`crate::known::KnownElements`].
    fn decode_known(_bytes: &[u8]) -> Option<frost_core::Element<Self>> {
        None
    }
    /// `s·G`, in constant time. The generic multiplication is frost-core's
    /// `generator() * s`; a suite with a precomputed basepoint table uses it.
    fn mul_base(s: &frost_core::Scalar<Self>) -> frost_core::Element<Self> {
        <Self::Group as frost_core::Group>::generator() * *s
    }
}

/// FROST(Ed25519, SHA-512).
pub type Ed25519 = frost_ed25519::Ed25519Sha512;
/// FROST(secp256k1, SHA-256) with BIP-340/Taproot output.
pub type Secp256k1Tr = frost_secp256k1_tr::Secp256K1Sha256TR;
/// FROST(ristretto255, SHA-512).
pub type Ristretto255 = frost_ristretto255::Ristretto255Sha512;
/// FROST(secp256k1, SHA-256).
pub type Secp256k1 = frost_secp256k1::Secp256K1Sha256;

impl Suite for Ed25519 {
    const SUITE: SuiteId = SuiteId::Ed25519;
    const ELEMENT_LEN: usize = 32;
    // frost-ed25519 rejects the identity and every point outside the
    // prime-order subgroup; every non-canonical encoding (y >= p, or x = 0
    // with the sign bit set) decodes to a small- or mixed-order point
    // (Chalkias et al., "Taming the many EdDSAs", eprint 2020/1244 §3), so
    // what it accepts is canonical. The encoding tests check this.
    const CANONICAL_ELEMENT_DECODER: bool = true;
    // The full check is a decompression and a multiplication by the group
    // order (the prime-order check, about 40 µs); a known encoding needs
    // the decompression only.
    const SKIPS_KNOWN: bool = true;
    fn decode_known(bytes: &[u8]) -> Option<frost_core::Element<Self>> {
        curve25519_dalek::edwards::CompressedEdwardsY::from_slice(bytes)
            .ok()?
            .decompress()
    }
    // curve25519-dalek's precomputed table: about a third of the
    // variable-base multiplication's time, also constant time.
    fn mul_base(s: &frost_core::Scalar<Self>) -> frost_core::Element<Self> {
        curve25519_dalek::constants::ED25519_BASEPOINT_TABLE * s
    }
}
impl Suite for Secp256k1Tr {
    const SUITE: SuiteId = SuiteId::Secp256k1Tr;
    const ELEMENT_LEN: usize = 33;
    // k256's SEC1 parser also takes the 0x05 "compact" tag.
    const CANONICAL_ELEMENT_DECODER: bool = false;
}
impl Suite for Ristretto255 {
    const SUITE: SuiteId = SuiteId::Ristretto255;
    const ELEMENT_LEN: usize = 32;
    // RFC 9496 §4.3.1: decoding rejects every non-canonical encoding.
    const CANONICAL_ELEMENT_DECODER: bool = true;
    fn mul_base(s: &frost_core::Scalar<Self>) -> frost_core::Element<Self> {
        curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE * s
    }
}
impl Suite for Secp256k1 {
    const SUITE: SuiteId = SuiteId::Secp256k1;
    const ELEMENT_LEN: usize = 33;
    // k256's SEC1 parser also takes the 0x05 "compact" tag.
    const CANONICAL_ELEMENT_DECODER: bool = false;
}

#[cfg(test)]
mod tests {
    use super::*;
    use frost_core::{Field, Group};
    use rand_core::OsRng;

    fn mul_base_is_generator_times<C: Suite>() {
        for _ in 0..16 {
            let s = <<C::Group as Group>::Field>::random(&mut OsRng);
            assert!(C::mul_base(&s) == <C::Group>::generator() * s);
        }
    }

    fn element_len_is_the_encodings<C: Suite>() {
        let g = <C::Group>::serialize(&<C::Group>::generator()).ok();
        assert_eq!(g.map(|s| s.as_ref().len()), Some(C::ELEMENT_LEN));
    }

    #[test]
    fn every_suites_element_len_is_its_encodings_length() {
        element_len_is_the_encodings::<Ed25519>();
        element_len_is_the_encodings::<Ristretto255>();
        element_len_is_the_encodings::<Secp256k1Tr>();
        element_len_is_the_encodings::<Secp256k1>();
    }

    #[test]
    fn every_suites_mul_base_is_the_generic_multiplication() {
        mul_base_is_generator_times::<Ed25519>();
        mul_base_is_generator_times::<Ristretto255>();
        mul_base_is_generator_times::<Secp256k1Tr>();
        mul_base_is_generator_times::<Secp256k1>();
    }
}
