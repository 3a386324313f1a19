//! Shamir secret sharing and Feldman verifiable secret sharing over the scalar
//! field of any [`Suite`], with Lagrange interpolation at any point — of
//! scalars (shares) and "in the exponent" (public shares).
//!
//! Shamir, "How to share a secret" (CACM 1979); Feldman, "A practical scheme
//! for non-interactive verifiable secret sharing" (FOCS 1987). A dealer picks
//! `f(x) = a_0 + a_1 x + ... + a_{t-1} x^{t-1}`, gives participant `i` the
//! share `f(i)` and publishes `C_k = a_k·G`; participant `i` checks
//! `f(i)·G == Σ_k i^k·C_k`.

use std::collections::{BTreeMap, BTreeSet};

use frost_core::{Ciphersuite, Element, Field, Group, Scalar};
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::codec::{Decode, Encode, Reader, Writer, MAX_PARTICIPANTS};
use crate::error::{DecodeError, Error};
use crate::id::ParticipantId;
use crate::secret::SecretScalar;
use crate::suite::Suite;

type F<C> = <<C as Ciphersuite>::Group as Group>::Field;

/// The scalar `x` for participant `id`.
pub fn x_of<C: Ciphersuite>(id: ParticipantId) -> Scalar<C> {
    id.to_frost::<C>().to_scalar()
}

/// A secret polynomial of degree `t - 1`; its coefficients are zeroized on drop.
pub struct Polynomial<C: Ciphersuite> {
    coefficients: Vec<SecretScalar<C>>,
}

impl<C: Ciphersuite> Polynomial<C> {
    /// A random polynomial of degree `threshold - 1` with constant term `secret`.
    pub fn random<R: RngCore + CryptoRng>(
        secret: SecretScalar<C>,
        threshold: u16,
        rng: &mut R,
    ) -> Self {
        let mut coefficients = Vec::with_capacity(threshold as usize);
        coefficients.push(secret);
        for _ in 1..threshold {
            coefficients.push(SecretScalar::random(rng));
        }
        Self { coefficients }
    }

    /// A polynomial with the given coefficients (lowest degree first).
    pub fn from_coefficients(coefficients: Vec<SecretScalar<C>>) -> Self {
        Self { coefficients }
    }

    /// The threshold `t` (number of coefficients).
    pub fn threshold(&self) -> u16 {
        self.coefficients.len() as u16
    }

    /// `f(x)` by Horner's rule.
    pub fn evaluate(&self, x: &Scalar<C>) -> SecretScalar<C> {
        let mut acc = <F<C>>::zero();
        for c in self.coefficients.iter().rev() {
            acc = acc * *x + *c.expose();
        }
        SecretScalar::new(acc)
    }

    /// The share `f(id)` for participant `id`.
    pub fn share_for(&self, id: ParticipantId) -> SecretScalar<C> {
        self.evaluate(&x_of::<C>(id))
    }

    /// The Feldman commitment `(a_0·G, ..., a_{t-1}·G)`.
    pub fn commit(&self) -> Commitment<C> {
        Commitment {
            coefficients: self.coefficients.iter().map(|c| c.public()).collect(),
        }
    }

    /// The coefficients, lowest degree first.
    pub(crate) fn coefficients(&self) -> &[SecretScalar<C>] {
        &self.coefficients
    }
}

impl<C: Ciphersuite> Zeroize for Polynomial<C> {
    fn zeroize(&mut self) {
        self.coefficients.iter_mut().for_each(Zeroize::zeroize);
    }
}

impl<C: Ciphersuite> ZeroizeOnDrop for Polynomial<C> {}

impl<C: Ciphersuite> core::fmt::Debug for Polynomial<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Polynomial")
            .field("threshold", &self.coefficients.len())
            .finish_non_exhaustive()
    }
}

/// A Feldman commitment to a polynomial: `C_k = a_k·G`.
#[derive(Clone, PartialEq, Eq)]
pub struct Commitment<C: Ciphersuite> {
    coefficients: Vec<Element<C>>,
}

impl<C: Ciphersuite> core::fmt::Debug for Commitment<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Commitment")
            .field("threshold", &self.coefficients.len())
            .finish_non_exhaustive()
    }
}

impl<C: Ciphersuite> Commitment<C> {
    /// A commitment from its coefficient images, lowest degree first.
    pub fn from_elements(coefficients: Vec<Element<C>>) -> Self {
        Self { coefficients }
    }

    /// The coefficient images, lowest degree first.
    pub fn elements(&self) -> &[Element<C>] {
        &self.coefficients
    }

    /// The threshold `t` this commitment is for.
    pub fn threshold(&self) -> usize {
        self.coefficients.len()
    }

    /// `C_0 = a_0·G`, the image of the shared secret.
    pub fn constant(&self) -> Element<C> {
        self.coefficients
            .first()
            .copied()
            .unwrap_or_else(<C::Group>::identity)
    }

    /// `Σ_k x^k·C_k = f(x)·G`, by Horner's rule in the exponent.
    pub fn evaluate(&self, x: &Scalar<C>) -> Element<C> {
        let mut acc = <C::Group>::identity();
        for c in self.coefficients.iter().rev() {
            acc = acc * *x + *c;
        }
        acc
    }

    /// The public share `f(id)·G` of participant `id`.
    pub fn public_share(&self, id: ParticipantId) -> Element<C> {
        self.evaluate(&x_of::<C>(id))
    }

    /// Feldman check: does `share` equal `f(id)` for the committed `f`?
    pub fn verify(&self, id: ParticipantId, share: &SecretScalar<C>) -> Result<(), Error> {
        if share.public() == self.public_share(id) {
            Ok(())
        } else {
            Err(Error::ShareMismatch)
        }
    }

    /// Coefficient-wise sum (the commitment to the sum of the polynomials).
    pub fn add(&self, other: &Self) -> Result<Self, Error> {
        if self.coefficients.len() != other.coefficients.len() {
            return Err(Error::InvalidParameters("commitments of different degree"));
        }
        Ok(Self {
            coefficients: self
                .coefficients
                .iter()
                .zip(&other.coefficients)
                .map(|(a, b)| *a + *b)
                .collect(),
        })
    }

    /// Coefficient-wise multiplication by a public scalar.
    pub fn scale(&self, by: &Scalar<C>) -> Self {
        Self {
            coefficients: self.coefficients.iter().map(|c| *c * *by).collect(),
        }
    }
}

impl<C: Suite> Encode for Commitment<C> {
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new::<C>(kind::COMMITMENT);
        write_commitment(&mut w, self);
        w.finish()
    }
}

impl<C: Suite> Decode for Commitment<C> {
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new::<C>(bytes, kind::COMMITMENT)?;
        let c = read_commitment(&mut r)?;
        r.finish()?;
        Ok(c)
    }
}

pub(crate) fn write_commitment<C: crate::suite::Suite>(w: &mut Writer, c: &Commitment<C>) {
    w.u16(c.coefficients.len() as u16);
    for e in &c.coefficients {
        w.element::<C>(e);
    }
}

pub(crate) fn read_commitment<C: crate::suite::Suite>(
    r: &mut Reader<'_>,
) -> Result<Commitment<C>, DecodeError> {
    let t = r.count(MAX_PARTICIPANTS)?;
    if t == 0 {
        return Err(DecodeError::TooLong { len: 0, max: 0 });
    }
    let mut coefficients = Vec::with_capacity(t);
    for _ in 0..t {
        coefficients.push(r.element::<C>()?);
    }
    Ok(Commitment { coefficients })
}

/// Message kinds of the encodings in this module.
pub(crate) mod kind {
    pub(crate) const COMMITMENT: u8 = 0x01;
}

/// Shares by holder.
pub type Shares<C> = BTreeMap<ParticipantId, SecretScalar<C>>;

/// Shares by holder, and the Feldman commitment.
pub type Split<C> = (Shares<C>, Commitment<C>);

/// Split `secret` into shares for `ids` with threshold `t` (Shamir) and return
/// the Feldman commitment. Used for trusted-dealer *import* only; keys made by
/// keyquorum come from the DKG, where no dealer holds the secret.
pub fn split<C: Ciphersuite, R: RngCore + CryptoRng>(
    secret: SecretScalar<C>,
    threshold: u16,
    ids: &BTreeSet<ParticipantId>,
    rng: &mut R,
) -> Result<Split<C>, Error> {
    let (poly, shares) = dealt(secret, threshold, ids, rng)?;
    Ok((shares, poly.commit()))
}

/// A random polynomial with constant term `secret`, and its shares.
fn dealt<C: Ciphersuite, R: RngCore + CryptoRng>(
    secret: SecretScalar<C>,
    threshold: u16,
    ids: &BTreeSet<ParticipantId>,
    rng: &mut R,
) -> Result<(Polynomial<C>, Shares<C>), Error> {
    check_threshold(threshold, ids.len())?;
    let poly = Polynomial::random(secret, threshold, rng);
    let shares = ids.iter().map(|id| (*id, poly.share_for(*id))).collect();
    Ok((poly, shares))
}

/// Shamir shares of `secret` for `ids` with threshold `t`, with no Feldman
/// commitment: for secrets whose rebuilt value is checked some other way
/// by whoever rebuilds it (a tree's leaf against the published tree, by
/// the signer; a PIN secret by its AEAD); a holder cannot check its own
/// share. A commitment costs `t` scalar multiplications per secret, a
/// tree's leaves are a million secrets, and nobody would read it.
pub fn shares<C: Ciphersuite, R: RngCore + CryptoRng>(
    secret: SecretScalar<C>,
    threshold: u16,
    ids: &BTreeSet<ParticipantId>,
    rng: &mut R,
) -> Result<Shares<C>, Error> {
    Ok(dealt(secret, threshold, ids, rng)?.1)
}

/// `2 ≤ t ≤ n ≤ MAX_PARTICIPANTS`.
pub(crate) fn check_threshold(t: u16, n: usize) -> Result<(), Error> {
    if t < 2 {
        return Err(Error::InvalidParameters("threshold must be at least 2"));
    }
    if t as usize > n {
        return Err(Error::InvalidParameters(
            "threshold larger than the member count",
        ));
    }
    if n > MAX_PARTICIPANTS {
        return Err(Error::InvalidParameters("too many members"));
    }
    Ok(())
}

/// The Lagrange coefficient `λ_i(x) = Π_{j∈S, j≠i} (x - x_j) / (x_i - x_j)` of
/// participant `i` in set `S`, evaluated at `x`.
pub fn lagrange_at<C: Ciphersuite>(
    set: &BTreeSet<ParticipantId>,
    i: ParticipantId,
    x: &Scalar<C>,
) -> Result<Scalar<C>, Error> {
    if !set.contains(&i) {
        return Err(Error::UnknownParticipant(i));
    }
    let xi = x_of::<C>(i);
    let mut num = <F<C>>::one();
    let mut den = <F<C>>::one();
    for j in set.iter().filter(|j| **j != i) {
        let xj = x_of::<C>(*j);
        num = num * (*x - xj);
        den = den * (xi - xj);
    }
    let inv = <F<C>>::invert(&den).map_err(|_| Error::InvalidParameters("duplicate x"))?;
    Ok(num * inv)
}

/// `λ_i(0)` for every `i` in `set`: the weights that recombine `f(0)`.
pub fn lagrange_at_zero<C: Ciphersuite>(
    set: &BTreeSet<ParticipantId>,
) -> Result<BTreeMap<ParticipantId, Scalar<C>>, Error> {
    let zero = <F<C>>::zero();
    set.iter()
        .map(|i| Ok((*i, lagrange_at::<C>(set, *i, &zero)?)))
        .collect()
}

/// Interpolate `f(x)` from shares `f(i)`. With fewer than `t` shares the
/// result is unrelated to `f(x)` (and reveals nothing about it).
pub fn interpolate<C: Ciphersuite>(
    shares: &BTreeMap<ParticipantId, SecretScalar<C>>,
    x: &Scalar<C>,
) -> Result<SecretScalar<C>, Error> {
    if shares.is_empty() {
        return Err(Error::NotEnough { have: 0, need: 1 });
    }
    let set: BTreeSet<_> = shares.keys().copied().collect();
    let mut acc = SecretScalar::<C>::zero();
    for (i, s) in shares {
        let l = lagrange_at::<C>(&set, *i, x)?;
        acc = SecretScalar::new(*acc.expose() + l * *s.expose());
    }
    Ok(acc)
}

/// Interpolate `f(x)·G` from public shares `f(i)·G` ("in the exponent").
pub fn interpolate_public<C: Ciphersuite>(
    points: &BTreeMap<ParticipantId, Element<C>>,
    x: &Scalar<C>,
) -> Result<Element<C>, Error> {
    if points.is_empty() {
        return Err(Error::NotEnough { have: 0, need: 1 });
    }
    let set: BTreeSet<_> = points.keys().copied().collect();
    let mut acc = <C::Group>::identity();
    for (i, p) in points {
        acc = acc + *p * lagrange_at::<C>(&set, *i, x)?;
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ed25519, Secp256k1Tr};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn ids(n: u16) -> BTreeSet<ParticipantId> {
        ParticipantId::range(n).collect()
    }

    fn roundtrip<C: Suite>() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let secret = SecretScalar::<C>::random(&mut rng);
        let (shares, commitment) = split(secret.clone(), 3, &ids(5), &mut rng).unwrap();
        for (id, s) in &shares {
            commitment.verify(*id, s).unwrap();
        }
        assert!(commitment.constant() == secret.public());
        let three: BTreeMap<_, _> = shares
            .iter()
            .take(3)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let zero = <F<C>>::zero();
        assert_eq!(interpolate(&three, &zero).unwrap(), secret);
        let two: BTreeMap<_, _> = shares
            .iter()
            .take(2)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        assert_ne!(interpolate(&two, &zero).unwrap(), secret);
        // Interpolating at another participant's x gives that participant's share.
        let p5 = ParticipantId::new(5).unwrap();
        assert_eq!(interpolate(&three, &x_of::<C>(p5)).unwrap(), shares[&p5]);
        // And the same in the exponent.
        let pubs: BTreeMap<_, _> = three.iter().map(|(k, v)| (*k, v.public())).collect();
        assert!(interpolate_public::<C>(&pubs, &zero).unwrap() == secret.public());
        // A wrong share fails the Feldman check.
        let p1 = ParticipantId::new(1).unwrap();
        assert_eq!(
            commitment.verify(p1, &shares[&p5]),
            Err(Error::ShareMismatch)
        );
        // Encoding round-trips.
        let bytes = commitment.to_bytes();
        assert_eq!(Commitment::<C>::from_bytes(&bytes).unwrap(), commitment);
    }

    #[test]
    fn shamir_feldman_ed25519() {
        roundtrip::<Ed25519>();
    }

    #[test]
    fn shamir_feldman_secp256k1() {
        roundtrip::<Secp256k1Tr>();
    }

    #[test]
    fn threshold_bounds() {
        assert!(check_threshold(1, 3).is_err());
        assert!(check_threshold(4, 3).is_err());
        assert!(check_threshold(3, 3).is_ok());
    }
}
