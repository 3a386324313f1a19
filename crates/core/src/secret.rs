//! Secret scalars: one newtype, zeroized on drop, redacted in `Debug`, compared
//! in constant time, never `Copy`.

use core::fmt;
use core::sync::atomic::{compiler_fence, Ordering};

use frost_core::{Ciphersuite, Field, Group, Scalar};
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop};

type F<C> = <<C as Ciphersuite>::Group as Group>::Field;

/// A secret scalar of suite `C` (a share, a polynomial coefficient, a
/// reconstructed key).
///
/// Zeroization overwrites the value with the field's zero and fences the
/// compiler, the same approach frost-core takes for its generic scalars (the
/// scalar types are not `Zeroize` through the `Ciphersuite` trait). Encodings
/// produced by [`SecretScalar::to_bytes`] are wrapped in `Zeroizing`.
pub struct SecretScalar<C: Ciphersuite>(Scalar<C>);

impl<C: Ciphersuite> SecretScalar<C> {
    /// Wrap a scalar that is secret.
    pub fn new(value: Scalar<C>) -> Self {
        Self(value)
    }

    /// A uniformly random secret scalar.
    pub fn random<R: rand_core::RngCore + rand_core::CryptoRng>(rng: &mut R) -> Self {
        Self(<F<C>>::random(rng))
    }

    /// The zero scalar.
    pub fn zero() -> Self {
        Self(<F<C>>::zero())
    }

    /// Borrow the secret value. Every call site is a place where the secret is
    /// used in arithmetic; it must not be logged or sent.
    pub fn expose(&self) -> &Scalar<C> {
        &self.0
    }

    /// The canonical encoding, in a buffer that zeroizes on drop.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(<F<C>>::serialize(&self.0).as_ref().to_vec())
    }

    /// Decode a canonical scalar encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, crate::DecodeError> {
        crate::codec::scalar_from_bytes::<C>(bytes).map(Self)
    }

    /// The public image `self·G`.
    pub fn public(&self) -> frost_core::Element<C> {
        <C::Group>::generator() * self.0
    }
}

impl<C: Ciphersuite> Clone for SecretScalar<C> {
    fn clone(&self) -> Self {
        Self(self.0)
    }
}

impl<C: Ciphersuite> Zeroize for SecretScalar<C> {
    fn zeroize(&mut self) {
        self.0 = <F<C>>::zero();
        compiler_fence(Ordering::SeqCst);
    }
}

impl<C: Ciphersuite> Drop for SecretScalar<C> {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl<C: Ciphersuite> ZeroizeOnDrop for SecretScalar<C> {}

impl<C: Ciphersuite> fmt::Debug for SecretScalar<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<C: Ciphersuite> ConstantTimeEq for SecretScalar<C> {
    fn ct_eq(&self, other: &Self) -> Choice {
        let a = <F<C>>::serialize(&self.0);
        let b = <F<C>>::serialize(&other.0);
        a.as_ref().ct_eq(b.as_ref())
    }
}

impl<C: Ciphersuite> PartialEq for SecretScalar<C> {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl<C: Ciphersuite> Eq for SecretScalar<C> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ed25519;
    use rand_core::SeedableRng;

    #[test]
    fn debug_is_redacted_and_zeroize_clears() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut s = SecretScalar::<Ed25519>::random(&mut rng);
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_ne!(s, SecretScalar::zero());
        s.zeroize();
        assert_eq!(s, SecretScalar::zero());
    }

    #[test]
    fn equality_is_by_value() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let a = SecretScalar::<Ed25519>::random(&mut rng);
        let b = a.clone();
        let c = SecretScalar::<Ed25519>::random(&mut rng);
        assert!(bool::from(a.ct_eq(&b)));
        assert!(!bool::from(a.ct_eq(&c)));
    }
}
