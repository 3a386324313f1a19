//! Oblivious pseudorandom functions (DESIGN.md §3.4; issue #20), sans-I/O:
//! RFC 9497 VOPRF (mode `0x01`, ristretto255-SHA512) on the server side,
//! and its threshold form ([`threshold`]): `t` holders of Shamir shares of
//! the key evaluate jointly and produce **one** DLEQ proof under the group
//! public key, so an ordinary RFC 9497 VOPRF client verifies the answer.
//!
//! ## What is RFC 9497 here (§ numbers are the RFC's)
//! - `contextString = "OPRFV1-" ‖ 0x01 ‖ "-ristretto255-SHA512"` (§3.1).
//! - `HashToGroup`: `hash_to_ristretto255` of RFC 9380 with
//!   `expand_message_xmd`(SHA-512), DST `"HashToGroup-" ‖ contextString`;
//!   `HashToScalar`: 64 bytes of `expand_message_xmd` with DST
//!   `"HashToScalar-" ‖ contextString`, reduced mod ℓ (§4.1).
//! - The proof (§2.2.1): `(c, s)` with `c = HashToScalar(I2OSP(32,2) ‖ pk ‖
//!   … M' … Z' … t2 … t3 ‖ "Challenge")`, `s = r − c·k`, for the composites
//!   `M' = d0·M`, `Z' = d0·Z` of `ComputeComposites` (§2.2.2, batch of one).
//!   [`verify_proof`] is the verifier's side; [`generate_proof`] is the
//!   single-key prover (it reproduces the RFC's Appendix A.1.2 vectors).
//! - [`finalize`] is the client's last step (§3.3.2), here for tests and
//!   tools; keyquorum's client uses the `voprf` crate.
//!
//! Elements are 32-byte canonical Ristretto255 encodings; the identity is
//! refused (RFC 9497 §2.1 `DeserializeElement`). Scalars are 32-byte
//! little-endian and below ℓ.

pub mod pin;
pub mod reset;
pub mod threshold;

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, VartimeMultiscalarMul};
use elliptic_curve::hash2curve::{ExpandMsg, ExpandMsgXmd, Expander};
use sha2::{Digest, Sha512};

use crate::error::{DecodeError, Error};

pub use threshold::{aggregate, commit, respond, Commitment, Nonces, Package, Response};

/// RFC 9497 §3.1 `contextString` for VOPRF with ristretto255-SHA512.
pub const CONTEXT: &[u8] = b"OPRFV1-\x01-ristretto255-SHA512";

/// The bytes of an element.
pub const ELEMENT_LEN: usize = 32;
/// The bytes of a proof (`c ‖ s`).
pub const PROOF_LEN: usize = 64;

/// A group element from outside: canonical, not the identity.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Element(RistrettoPoint);

impl core::fmt::Debug for Element {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Element({})", hex_of(&self.to_bytes()))
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Element {
    /// Decode 32 bytes (RFC 9497 §2.1: canonical and not the identity).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let p = CompressedRistretto::from_slice(bytes)
            .map_err(|_| DecodeError::InvalidElement)?
            .decompress()
            .ok_or(DecodeError::InvalidElement)?;
        if p == RistrettoPoint::identity() {
            return Err(DecodeError::InvalidElement);
        }
        Ok(Self(p))
    }

    /// Its canonical encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.compress().to_bytes()
    }

    /// The point.
    pub fn point(&self) -> RistrettoPoint {
        self.0
    }

    pub(crate) fn from_point(p: RistrettoPoint) -> Result<Self, Error> {
        if p == RistrettoPoint::identity() {
            return Err(Error::InvalidParameters(
                "the identity is not an element here",
            ));
        }
        Ok(Self(p))
    }
}

/// An RFC 9497 DLEQ proof `(c, s)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Proof {
    c: Scalar,
    s: Scalar,
}

impl Proof {
    /// `c ‖ s` (RFC 9497 §2.2.1).
    pub fn to_bytes(&self) -> [u8; PROOF_LEN] {
        let mut out = [0u8; PROOF_LEN];
        out[..32].copy_from_slice(self.c.as_bytes());
        out[32..].copy_from_slice(self.s.as_bytes());
        out
    }

    /// Decode `c ‖ s` (canonical scalars).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() != PROOF_LEN {
            return Err(DecodeError::Truncated);
        }
        let (c, s) = bytes.split_at(32);
        Ok(Self {
            c: scalar(c)?,
            s: scalar(s)?,
        })
    }
}

/// Decode a canonical scalar.
pub(crate) fn scalar(bytes: &[u8]) -> Result<Scalar, DecodeError> {
    let b: [u8; 32] = bytes.try_into().map_err(|_| DecodeError::InvalidScalar)?;
    Option::from(Scalar::from_canonical_bytes(b)).ok_or(DecodeError::InvalidScalar)
}

/// `expand_message_xmd`(SHA-512) of `parts` to 64 bytes under `dst`.
fn expand(parts: &[&[u8]], dst: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    // Both the DST (< 255 bytes) and the length (64) are in range, so the
    // expander cannot fail; an error would leave `out` zero, which no
    // caller relies on.
    if let Ok(mut e) = ExpandMsgXmd::<Sha512>::expand_message(parts, &[dst], 64) {
        e.fill_bytes(&mut out);
    }
    out
}

fn dst(prefix: &[u8]) -> Vec<u8> {
    [prefix, CONTEXT].concat()
}

/// RFC 9497 `HashToScalar` (ristretto255-SHA512).
pub fn hash_to_scalar(parts: &[&[u8]]) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&expand(parts, &dst(b"HashToScalar-")))
}

/// RFC 9497 `HashToGroup` (ristretto255-SHA512): the client's first step.
pub fn hash_to_group(input: &[u8]) -> RistrettoPoint {
    RistrettoPoint::from_uniform_bytes(&expand(&[input], &dst(b"HashToGroup-")))
}

fn len2(b: &[u8]) -> [u8; 2] {
    u16::try_from(b.len()).unwrap_or(u16::MAX).to_be_bytes()
}

/// RFC 9497 §2.2.2 `ComputeComposites` for one pair: the weight `d0` of
/// `(M, Z)` under public key `pk`.
pub(crate) fn composite_weight(pk: &[u8; 32], m: &[u8; 32], z: &[u8; 32]) -> Scalar {
    let seed_dst = dst(b"Seed-");
    let mut h = Sha512::new();
    h.update(len2(pk));
    h.update(pk);
    h.update(len2(&seed_dst));
    h.update(&seed_dst);
    let seed: [u8; 64] = h.finalize().into();
    hash_to_scalar(&[
        &len2(&seed),
        &seed,
        &0u16.to_be_bytes(),
        &len2(m),
        m,
        &len2(z),
        z,
        b"Composite",
    ])
}

/// RFC 9497 §2.2.1 challenge over `pk`, the composites and `t2`, `t3`.
pub(crate) fn challenge(
    pk: &[u8; 32],
    m2: &RistrettoPoint,
    z2: &RistrettoPoint,
    t2: &RistrettoPoint,
    t3: &RistrettoPoint,
) -> Scalar {
    let a0 = m2.compress().to_bytes();
    let a1 = z2.compress().to_bytes();
    let a2 = t2.compress().to_bytes();
    let a3 = t3.compress().to_bytes();
    hash_to_scalar(&[
        &len2(pk),
        pk,
        &len2(&a0),
        &a0,
        &len2(&a1),
        &a1,
        &len2(&a2),
        &a2,
        &len2(&a3),
        &a3,
        b"Challenge",
    ])
}

/// The single-key prover (RFC 9497 §2.2.1 `GenerateProof`, batch of one)
/// with the proof's random scalar `r` given: `Z = k·M`, proved against
/// `pk = k·G`.
pub fn generate_proof(k: &Scalar, m: &Element, z: &Element, r: &Scalar) -> Proof {
    let pk = (k * RISTRETTO_BASEPOINT_TABLE).compress().to_bytes();
    let d0 = composite_weight(&pk, &m.to_bytes(), &z.to_bytes());
    let m2 = d0 * m.0;
    let z2 = d0 * z.0;
    let t2 = r * RISTRETTO_BASEPOINT_TABLE;
    let t3 = r * m2;
    let c = challenge(&pk, &m2, &z2, &t2, &t3);
    Proof { c, s: r - c * k }
}

/// RFC 9497 §2.2.1 `VerifyProof` (batch of one): that `log_G pk = log_M
/// Z`.
pub fn verify_proof(pk: &Element, m: &Element, z: &Element, proof: &Proof) -> Result<(), Error> {
    let pkb = pk.to_bytes();
    let d0 = composite_weight(&pkb, &m.to_bytes(), &z.to_bytes());
    let m2 = d0 * m.0;
    let z2 = d0 * z.0;
    let t2 = RistrettoPoint::vartime_double_scalar_mul_basepoint(&proof.c, &pk.0, &proof.s);
    let t3 = RistrettoPoint::vartime_multiscalar_mul([proof.s, proof.c], [m2, z2]);
    if challenge(&pkb, &m2, &z2, &t2, &t3) != proof.c {
        return Err(Error::InvalidSignature);
    }
    Ok(())
}

/// RFC 9497 §3.3.2 `Finalize` (VOPRF, proof already checked): the PRF
/// output of `input` (at most 65535 bytes) from the evaluated element `z`
/// and the client's `blind`.
pub fn finalize(input: &[u8], blind: &Scalar, z: &Element) -> Result<[u8; 64], Error> {
    if input.len() > usize::from(u16::MAX) {
        return Err(Error::InvalidParameters(
            "an OPRF input is at most 65535 bytes",
        ));
    }
    let unblinded = (blind.invert() * z.0).compress().to_bytes();
    let mut h = Sha512::new();
    h.update(len2(input));
    h.update(input);
    h.update(len2(&unblinded));
    h.update(unblinded);
    h.update(b"Finalize");
    Ok(h.finalize().into())
}

/// The blinded element of `input` under `blind` (RFC 9497 §3.3.1 `Blind`).
pub fn blind(input: &[u8], blind: &Scalar) -> Result<Element, Error> {
    Element::from_point(blind * hash_to_group(input))
}

#[cfg(test)]
mod tests {
    //! RFC 9497 Appendix A.1.2 (VOPRF, ristretto255-SHA512), test vectors
    //! 1 and 2 (batch size 1), from the RFC's text.
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap_or_default()
    }
    fn sc(s: &str) -> Scalar {
        scalar(&h(s)).unwrap_or(Scalar::ZERO)
    }

    const SK: &str = "e6f73f344b79b379f1a0dd37e07ff62e38d9f71345ce62ae3a9bc60b04ccd909";
    const PK: &str = "c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e";
    const BLIND: &str = "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706";
    const R: &str = "222a5e897cf59db8145db8d16e597e8facb80ae7d4e26d9881aa6f61d645fc0e";

    struct Vector {
        input: &'static str,
        blinded: &'static str,
        evaluated: &'static str,
        proof: &'static str,
        output: &'static str,
    }

    const VECTORS: [Vector; 2] = [
        Vector {
            input: "00",
            blinded: "863f330cc1a1259ed5a5998a23acfd37fb4351a793a5b3c090b642ddc439b945",
            evaluated: "aa8fa048764d5623868679402ff6108d2521884fa138cd7f9c7669a9a014267e",
            proof: "ddef93772692e535d1a53903db24367355cc2cc78de93b3be5a8ffcc6985dd06\
                    6d4346421d17bf5117a2a1ff0fcb2a759f58a539dfbe857a40bce4cf49ec600d",
            output: "b58cfbe118e0cb94d79b5fd6a6dafb98764dff49c14e1770b566e42402da1a7d\
                     a4d8527693914139caee5bd03903af43a491351d23b430948dd50cde10d32b3c",
        },
        Vector {
            input: "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
            blinded: "cc0b2a350101881d8a4cba4c80241d74fb7dcbfde4a61fde2f91443c2bf9ef0c",
            evaluated: "60a59a57208d48aca71e9e850d22674b611f752bed48b36f7a91b372bd7ad468",
            proof: "401a0da6264f8cf45bb2f5264bc31e109155600babb3cd4e5af7d181a2c9dc0a\
                    67154fabf031fd936051dec80b0b6ae29c9503493dde7393b722eafdf5a50b02",
            output: "8a9a2f3c7f085b65933594309041fc1898d42d0858e59f90814ae90571a6df60\
                     356f4610bf816f27afdd84f47719e480906d27ecd994985890e5f539e7ea74b6",
        },
    ];

    #[test]
    fn rfc9497_voprf_ristretto255_vectors() {
        let k = sc(SK);
        let pk = Element::from_bytes(&h(PK)).unwrap_or(Element(RistrettoPoint::identity()));
        assert_eq!(
            (&k * RISTRETTO_BASEPOINT_TABLE)
                .compress()
                .to_bytes()
                .to_vec(),
            h(PK)
        );
        for v in VECTORS {
            let input = h(v.input);
            let m = blind(&input, &sc(BLIND)).unwrap_or(pk);
            assert_eq!(m.to_bytes().to_vec(), h(v.blinded), "blinded element");
            let z = Element::from_point(k * m.point()).unwrap_or(pk);
            assert_eq!(z.to_bytes().to_vec(), h(v.evaluated), "evaluated element");
            let proof = generate_proof(&k, &m, &z, &sc(R));
            assert_eq!(proof.to_bytes().to_vec(), h(v.proof), "proof");
            assert!(verify_proof(&pk, &m, &z, &proof).is_ok());
            assert_eq!(
                finalize(&input, &sc(BLIND), &z).map(|o| o.to_vec()).ok(),
                Some(h(v.output)),
                "output"
            );
            // Any other evaluated element fails the proof.
            let wrong = Element::from_point(z.point() + RISTRETTO_BASEPOINT_TABLE.basepoint())
                .unwrap_or(pk);
            assert!(verify_proof(&pk, &m, &wrong, &proof).is_err());
        }
    }

    #[test]
    fn the_identity_and_non_canonical_encodings_are_refused() {
        assert!(Element::from_bytes(&[0u8; 32]).is_err());
        assert!(Element::from_bytes(&[0xffu8; 32]).is_err());
        assert!(Element::from_bytes(&[1u8; 31]).is_err());
        assert!(Proof::from_bytes(&[0xffu8; 64]).is_err());
        assert!(Proof::from_bytes(&[0u8; 63]).is_err());
        let z = Element(RISTRETTO_BASEPOINT_TABLE.basepoint());
        assert!(finalize(&vec![0u8; 65536], &Scalar::ONE, &z).is_err());
        assert!(finalize(&vec![0u8; 65535], &Scalar::ONE, &z).is_ok());
    }
}
