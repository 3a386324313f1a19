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
    // frost-ed25519 rejects the identity and every point outside the
    // prime-order subgroup; every non-canonical encoding (y >= p, or x = 0
    // with the sign bit set) decodes to a small- or mixed-order point
    // (Chalkias et al., "Taming the many EdDSAs", eprint 2020/1244 §3), so
    // what it accepts is canonical. The encoding tests check this.
    const CANONICAL_ELEMENT_DECODER: bool = true;
}
impl Suite for Secp256k1Tr {
    const SUITE: SuiteId = SuiteId::Secp256k1Tr;
    // k256's SEC1 parser also takes the 0x05 "compact" tag.
    const CANONICAL_ELEMENT_DECODER: bool = false;
}
impl Suite for Ristretto255 {
    const SUITE: SuiteId = SuiteId::Ristretto255;
    // RFC 9496 §4.3.1: decoding rejects every non-canonical encoding.
    const CANONICAL_ELEMENT_DECODER: bool = true;
}
impl Suite for Secp256k1 {
    const SUITE: SuiteId = SuiteId::Secp256k1;
    // k256's SEC1 parser also takes the 0x05 "compact" tag.
    const CANONICAL_ELEMENT_DECODER: bool = false;
}
