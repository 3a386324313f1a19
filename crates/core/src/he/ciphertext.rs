//! Exponential ElGamal ciphertexts over Ristretto255 and their running sum.

use core::fmt;

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{point, random_scalar, MAX_SLOTS};
use crate::error::{DecodeError, Error};

/// Bytes of one slot: `c1 ‖ c2`.
pub const SLOT_BYTES: usize = 64;

/// One `(c1, c2)` pair per slot.
#[derive(Clone, PartialEq, Eq)]
pub struct Ciphertext {
    slots: Vec<(RistrettoPoint, RistrettoPoint)>,
}

impl fmt::Debug for Ciphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ciphertext({} slots)", self.slots.len())
    }
}

/// The encryption randomness `r` of each slot (secret: whoever holds it
/// decrypts the ciphertext with the public key alone).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Randomness(pub(crate) Vec<Scalar>);

impl fmt::Debug for Randomness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Randomness(<redacted>)")
    }
}

impl Ciphertext {
    /// Encrypt `values` (one per slot) under `public_key`: `c1 = r·B`,
    /// `c2 = m·B + r·P`.
    pub fn encrypt<R: RngCore + CryptoRng>(
        public_key: &RistrettoPoint,
        values: &[u64],
        rng: &mut R,
    ) -> Result<(Self, Randomness), Error> {
        check_slots(values.len())?;
        let mut slots = Vec::with_capacity(values.len());
        let mut rs = Vec::with_capacity(values.len());
        for v in values {
            let r = random_scalar(rng);
            slots.push(encrypt_with(public_key, &Scalar::from(*v), &r));
            rs.push(r);
        }
        Ok((Self { slots }, Randomness(rs)))
    }

    /// Decode `slots` slots from untrusted bytes: exactly `64 × slots`
    /// bytes, every point a canonical Ristretto255 encoding, no `c1` the
    /// identity (that slot would not be encrypted).
    pub fn from_bytes(bytes: &[u8], slots: usize) -> Result<Self, DecodeError> {
        let parsed = Self::from_bytes_any(bytes, slots)?;
        let identity = RistrettoPoint::identity();
        if parsed.slots.iter().any(|(c1, _)| *c1 == identity) {
            return Err(DecodeError::InvalidElement);
        }
        Ok(parsed)
    }

    /// As [`Ciphertext::from_bytes`] but `c1` may be the identity (an
    /// aggregate, or a bit of a range proof, can be anything).
    pub fn from_bytes_any(bytes: &[u8], slots: usize) -> Result<Self, DecodeError> {
        if slots == 0 || slots > MAX_SLOTS {
            return Err(DecodeError::TooLong {
                len: slots,
                max: MAX_SLOTS,
            });
        }
        if bytes.len() != slots * SLOT_BYTES {
            return Err(if bytes.len() < slots * SLOT_BYTES {
                DecodeError::Truncated
            } else {
                DecodeError::TrailingBytes(bytes.len() - slots * SLOT_BYTES)
            });
        }
        let slots = bytes
            .chunks_exact(SLOT_BYTES)
            .map(|c| {
                let (a, b) = c.split_at(32);
                Ok((point(a)?, point(b)?))
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        Ok(Self { slots })
    }

    /// `c1 ‖ c2` per slot.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.slots.len() * SLOT_BYTES);
        for (c1, c2) in &self.slots {
            out.extend_from_slice(c1.compress().as_bytes());
            out.extend_from_slice(c2.compress().as_bytes());
        }
        out
    }

    /// The number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Never: a ciphertext has at least one slot.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The `(c1, c2)` pairs.
    pub fn slots(&self) -> &[(RistrettoPoint, RistrettoPoint)] {
        &self.slots
    }

    /// No slot at all: what a `count` session's attestations are over.
    pub fn empty() -> Self {
        Self { slots: Vec::new() }
    }

    pub(crate) fn from_slots(slots: Vec<(RistrettoPoint, RistrettoPoint)>) -> Self {
        Self { slots }
    }

    /// Decrypt with the whole secret key `s` (tests, and a key that was
    /// exported on purpose): the points `m_k·B`.
    pub fn decrypt_points(&self, secret: &Scalar) -> Vec<RistrettoPoint> {
        self.slots.iter().map(|(c1, c2)| c2 - secret * c1).collect()
    }
}

/// `(r·B, m·B + r·P)`.
pub(crate) fn encrypt_with(
    public_key: &RistrettoPoint,
    m: &Scalar,
    r: &Scalar,
) -> (RistrettoPoint, RistrettoPoint) {
    let c1 = r * RISTRETTO_BASEPOINT_TABLE;
    let c2 = m * RISTRETTO_BASEPOINT_TABLE + r * public_key;
    (c1, c2)
}

fn check_slots(n: usize) -> Result<(), Error> {
    if n == 0 || n > MAX_SLOTS {
        return Err(Error::InvalidParameters("a ciphertext has 1 to 256 slots"));
    }
    Ok(())
}

/// The running (weighted) sum of the inputs a session accepted: the
/// homomorphism `Enc(a) + w·Enc(b) = Enc(a + w·b)` slot by slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    sum: Vec<(RistrettoPoint, RistrettoPoint)>,
    count: u64,
}

impl Aggregate {
    /// The sum of no input (`K` slots of `Enc(0)` with `r = 0`).
    pub fn new(slots: usize) -> Result<Self, Error> {
        check_slots(slots)?;
        Ok(Self {
            sum: vec![(RistrettoPoint::identity(), RistrettoPoint::identity()); slots],
            count: 0,
        })
    }

    /// Add `weight × input`.
    pub fn add(&mut self, input: &Ciphertext, weight: u64) -> Result<(), Error> {
        if input.len() != self.sum.len() {
            return Err(Error::InvalidParameters(
                "the input has another number of slots than the session",
            ));
        }
        let w = Scalar::from(weight);
        for ((a1, a2), (c1, c2)) in self.sum.iter_mut().zip(input.slots()) {
            if weight == 1 {
                *a1 += c1;
                *a2 += c2;
            } else {
                *a1 += w * c1;
                *a2 += w * c2;
            }
        }
        self.count = self.count.saturating_add(1);
        Ok(())
    }

    /// How many inputs were added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum as a ciphertext (what members decrypt).
    pub fn ciphertext(&self) -> Ciphertext {
        Ciphertext::from_slots(self.sum.clone())
    }

    /// Rebuild from a stored sum and count.
    pub fn from_parts(sum: Ciphertext, count: u64) -> Self {
        Self {
            sum: sum.slots,
            count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn key(rng: &mut ChaCha20Rng) -> (Scalar, RistrettoPoint) {
        let s = random_scalar(rng);
        (s, &s * RISTRETTO_BASEPOINT_TABLE)
    }

    fn value_point(v: u64) -> RistrettoPoint {
        &Scalar::from(v) * RISTRETTO_BASEPOINT_TABLE
    }

    #[test]
    fn bytes_round_trip_and_refuse_bad_lengths_and_points() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let (_, p) = key(&mut rng);
        let (ct, _) = Ciphertext::encrypt(&p, &[1, 2, 3], &mut rng).unwrap();
        let bytes = ct.to_bytes();
        assert_eq!(bytes.len(), 192);
        assert_eq!(Ciphertext::from_bytes(&bytes, 3).unwrap(), ct);
        assert_eq!(
            Ciphertext::from_bytes(&bytes, 2),
            Err(DecodeError::TrailingBytes(64))
        );
        assert_eq!(
            Ciphertext::from_bytes(&bytes[..100], 2),
            Err(DecodeError::Truncated)
        );
        assert!(Ciphertext::from_bytes(&[], 0).is_err());
        // A non-canonical encoding: 2^255 - 1 is above the field prime.
        let mut bad = bytes.clone();
        bad[32..64].copy_from_slice(&[0xff; 32]);
        assert_eq!(
            Ciphertext::from_bytes(&bad, 3),
            Err(DecodeError::InvalidElement)
        );
        // A negative field element (low bit set) is not canonical Ristretto.
        let mut neg = bytes.clone();
        neg[0] |= 1;
        assert!(Ciphertext::from_bytes(&neg, 3).is_err());
        // c1 the identity: not encrypted.
        let mut plain = bytes;
        plain[..32].fill(0);
        assert_eq!(
            Ciphertext::from_bytes(&plain, 3),
            Err(DecodeError::InvalidElement)
        );
        assert!(Ciphertext::from_bytes_any(&plain, 3).is_ok());
    }

    #[test]
    fn weighted_sums_decrypt_to_the_weighted_sum() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let (s, p) = key(&mut rng);
        let mut agg = Aggregate::new(2).unwrap();
        let inputs = [([5u64, 1u64], 1u64), ([7, 0], 3), ([0, 9], 0), ([1, 1], 2)];
        for (v, w) in inputs {
            let (ct, _) = Ciphertext::encrypt(&p, &v, &mut rng).unwrap();
            agg.add(&ct, w).unwrap();
        }
        assert_eq!(agg.count(), 4);
        let got = agg.ciphertext().decrypt_points(&s);
        assert_eq!(got, vec![value_point(5 + 21 + 2), value_point(1 + 2)]);
        let (wrong, _) = Ciphertext::encrypt(&p, &[1], &mut rng).unwrap();
        assert!(agg.add(&wrong, 1).is_err());
    }

    #[test]
    fn randomness_is_redacted() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (_, p) = key(&mut rng);
        let (_, r) = Ciphertext::encrypt(&p, &[1], &mut rng).unwrap();
        assert_eq!(format!("{r:?}"), "Randomness(<redacted>)");
    }
}
