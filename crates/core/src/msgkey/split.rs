//! The base secret's split (Shamir with Feldman commitments, reusing
//! [`crate::vss`]) over Ristretto255, who holds which share, and the
//! coordinators' verification in the exponent.
//!
//! ## Layout (why these thresholds)
//!
//! With `m` coordinators the threshold is `t = m + 1` and the `2m + 1`
//! shares go: index 1 to the sender, indices `2..=m+1` (`m` shares) to the
//! receiver, index `m + 1 + j` to the `j`-th coordinator (one each). Then
//! - the coordinators together hold `m < t` shares: they never reach `k`;
//! - the receiver alone holds `m < t`: every message needs at least one
//!   coordinator's share, so the cluster takes part in every delivery;
//! - the receiver plus *any one* coordinator hold `m + 1 = t`: the message
//!   opens as long as one of its `m` coordinators answers (tolerates
//!   `m − 1` coordinator failures).
//!
//! In [`Mode::CoordinatorReconstructs`] each coordinator is also sent the
//! sender's share and `m − 1` of the receiver's, `t` in all, and rebuilds
//! `k`: the seed's literal flow, which trusts every coordinator with `k`.
//!
//! ## Verification in the exponent
//!
//! A coordinator checks each share it holds against the commitment
//! (Feldman: `s_i·G == Σ_k i^k·C_k`), requires the commitment to have
//! exactly `t` terms (a higher-degree polynomial would let different
//! subsets rebuild different secrets), and interpolates `k·G` from the
//! public share images of `t` holders. It signs
//! `H("keyquorum/msg/confirm/v1" ‖ k·G ‖ id)`; the receiver, having rebuilt
//! `k`, computes the same value from `k·G` and compares. `k·G` reveals
//! nothing usable about `k` (a uniformly random scalar; discrete log).

use std::collections::{BTreeMap, BTreeSet};

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::traits::VartimeMultiscalarMul;
use frost_core::{Ciphersuite, Field, Group};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{Mode, MsgError};
use crate::id::ParticipantId;
use crate::secret::SecretScalar;
use crate::vss::{self, Commitment, Polynomial};

/// The group the base secret lives in: Ristretto255 (prime order, canonical
/// encodings), through frost-ristretto255's ciphersuite.
pub type Grp = frost_ristretto255::Ristretto255Sha512;

type Elem = <<Grp as Ciphersuite>::Group as Group>::Element;
type Fld = <<Grp as Ciphersuite>::Group as Group>::Field;

/// Most coordinators per message.
pub const MAX_COORDINATORS: u16 = 8;

/// Who holds which share for `m` coordinators in a given mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    m: u16,
    mode: Mode,
}

fn pid(i: u16) -> ParticipantId {
    // Indices here are 1..=2m+1: never zero, so the fallback is not taken.
    ParticipantId::new(i).unwrap_or(ParticipantId::ONE)
}

impl Layout {
    /// `m` coordinators (1 ..= [`MAX_COORDINATORS`]).
    pub fn new(m: u16, mode: Mode) -> Result<Self, MsgError> {
        if m == 0 || m > MAX_COORDINATORS {
            return Err(MsgError::Invalid("coordinators per message must be 1..=8"));
        }
        Ok(Self { m, mode })
    }

    /// Coordinators per message.
    pub fn coordinators(&self) -> u16 {
        self.m
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `t = m + 1`.
    pub fn threshold(&self) -> u16 {
        self.m + 1
    }

    /// The sender's share index.
    pub fn sender(&self) -> ParticipantId {
        pid(1)
    }

    /// The receiver's share indices (`m` of them).
    pub fn receiver(&self) -> Vec<ParticipantId> {
        (2..=self.m + 1).map(pid).collect()
    }

    /// The share index of the coordinator ranked `rank` (0-based) by
    /// rendezvous weight.
    pub fn coordinator(&self, rank: u16) -> Result<ParticipantId, MsgError> {
        if rank >= self.m {
            return Err(MsgError::Invalid("no such coordinator rank"));
        }
        Ok(pid(self.m + 2 + rank))
    }

    /// Every share index, sender first.
    pub fn holders(&self) -> BTreeSet<ParticipantId> {
        (1..=2 * self.m + 1).map(pid).collect()
    }

    /// The shares sealed to the coordinator ranked `rank`: its own, plus in
    /// the literal mode the sender's and `m − 1` of the receiver's.
    pub fn coordinator_shares(&self, rank: u16) -> Result<Vec<ParticipantId>, MsgError> {
        let own = self.coordinator(rank)?;
        Ok(match self.mode {
            Mode::VerifyInTheExponent => vec![own],
            Mode::CoordinatorReconstructs => {
                let mut v = vec![self.sender()];
                v.extend(self.receiver().into_iter().take(usize::from(self.m - 1)));
                v.push(own);
                v
            }
        })
    }
}

/// A freshly dealt base secret: `k`, the shares, the commitment.
pub struct Dealt {
    /// `k` (the sender keeps it only long enough to derive the session key).
    pub secret: SecretScalar<Grp>,
    /// Share by index.
    pub shares: BTreeMap<ParticipantId, SecretScalar<Grp>>,
    /// Feldman commitment, `t` terms; its constant term is `k·G`.
    pub commitment: Commitment<Grp>,
}

impl core::fmt::Debug for Dealt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Dealt")
            .field("shares", &self.shares.len())
            .finish_non_exhaustive()
    }
}

/// `s·G` through curve25519-dalek's precomputed Ristretto basepoint table:
/// constant time, and about three times faster than the variable-base
/// multiplication frost-core's generic `generator() * s` performs (the
/// per-message cost is dominated by these).
fn mul_base(s: &SecretScalar<Grp>) -> Elem {
    RISTRETTO_BASEPOINT_TABLE * s.expose()
}

/// `f(x)·G = Σ_k x^k·C_k` for a public `x`: only public values, so one
/// variable-time multiscalar multiplication (Straus) instead of Horner's
/// rule with constant-time multiplications.
fn public_share(commitment: &Commitment<Grp>, holder: ParticipantId) -> Elem {
    let x = vss::x_of::<Grp>(holder);
    let mut power = <Fld>::one();
    let powers: Vec<_> = commitment
        .elements()
        .iter()
        .map(|_| {
            let p = power;
            power *= x;
            p
        })
        .collect();
    Elem::vartime_multiscalar_mul(&powers, commitment.elements())
}

/// Draw `k` and split it for `layout`.
pub fn deal<R: RngCore + CryptoRng>(layout: &Layout, rng: &mut R) -> Dealt {
    let secret = SecretScalar::<Grp>::random(rng);
    let poly = Polynomial::random(SecretScalar::new(*secret.expose()), layout.threshold(), rng);
    let shares = layout
        .holders()
        .into_iter()
        .map(|i| (i, poly.share_for(i)))
        .collect();
    let commitment = Commitment::from_elements(poly.coefficients().iter().map(mul_base).collect());
    Dealt {
        secret,
        shares,
        commitment,
    }
}

/// The HKDF input keying material for `k`: its canonical 32-byte encoding.
pub fn ikm(secret: &SecretScalar<Grp>) -> Zeroizing<Vec<u8>> {
    secret.to_bytes()
}

fn check_degree(layout: &Layout, commitment: &Commitment<Grp>) -> Result<(), MsgError> {
    if commitment.threshold() != usize::from(layout.threshold()) {
        return Err(MsgError::Invalid(
            "commitment has the wrong number of terms",
        ));
    }
    Ok(())
}

/// Check one share against the commitment.
pub fn check_share(
    layout: &Layout,
    commitment: &Commitment<Grp>,
    holder: ParticipantId,
    share: &SecretScalar<Grp>,
) -> Result<(), MsgError> {
    check_degree(layout, commitment)?;
    if !layout.holders().contains(&holder) {
        return Err(MsgError::Invalid("share index outside the layout"));
    }
    // The same Feldman equation as `Commitment::verify`: the secret share
    // through the constant-time table, the public side in variable time.
    if bool::from(mul_base(share).ct_eq(&public_share(commitment, holder))) {
        Ok(())
    } else {
        Err(MsgError::ShareOffCommitments {
            holder: holder.get(),
        })
    }
}

/// `k·G`: the interpolation at 0, in the exponent, of the public share
/// images `f(i)·G` of any `t` holders — which for a commitment of the right
/// degree is its constant term `C_0`, so that is what is returned (the test
/// `any_t_open_fewer_do_not` checks the identity; interpolating
/// would cost `t·(t+1)` scalar multiplications per message for the same
/// point).
pub fn public_image(layout: &Layout, commitment: &Commitment<Grp>) -> Result<Elem, MsgError> {
    check_degree(layout, commitment)?;
    Ok(commitment.constant())
}

/// `k·G` interpolated from the public images of the receiver's shares and
/// coordinator `rank`'s (Lagrange in the exponent) — the long way to
/// [`public_image`].
pub fn public_image_interpolated(
    layout: &Layout,
    commitment: &Commitment<Grp>,
    rank: u16,
) -> Result<Elem, MsgError> {
    check_degree(layout, commitment)?;
    let mut holders = layout.receiver();
    holders.push(layout.coordinator(rank)?);
    let points: BTreeMap<_, _> = holders
        .into_iter()
        .map(|i| (i, commitment.public_share(i)))
        .collect();
    vss::interpolate_public::<Grp>(&points, &<Fld>::zero())
        .map_err(|_| MsgError::Invalid("cannot interpolate the public image"))
}

/// The verification value `SHA-256("keyquorum/msg/confirm/v1" ‖ k·G ‖ id)`.
pub fn verification_value(public_image: &Elem, id: &[u8; 32]) -> Result<[u8; 32], MsgError> {
    let enc = <Grp as Ciphersuite>::Group::serialize(public_image)
        .map_err(|_| MsgError::Invalid("identity element as public image"))?;
    let mut h = Sha256::new();
    h.update(b"keyquorum/msg/confirm/v1");
    h.update(enc.as_ref());
    h.update(id);
    Ok(h.finalize().into())
}

/// Rebuild `k` from at least `t` shares, each checked against the
/// commitment first (a bad one is named), and the result checked against
/// the commitment's constant term.
pub fn reconstruct(
    layout: &Layout,
    commitment: &Commitment<Grp>,
    shares: &BTreeMap<ParticipantId, SecretScalar<Grp>>,
) -> Result<SecretScalar<Grp>, MsgError> {
    for (i, s) in shares {
        check_share(layout, commitment, *i, s)?;
    }
    let t = usize::from(layout.threshold());
    if shares.len() < t {
        return Err(MsgError::Invalid("fewer shares than the threshold"));
    }
    let subset: BTreeMap<_, _> = shares
        .iter()
        .take(t)
        .map(|(i, s)| (*i, SecretScalar::new(*s.expose())))
        .collect();
    let k = vss::interpolate::<Grp>(&subset, &<Fld>::zero())
        .map_err(|_| MsgError::Invalid("cannot interpolate"))?;
    if !bool::from(mul_base(&k).ct_eq(&commitment.constant())) {
        return Err(MsgError::VerificationMismatch);
    }
    Ok(k)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap is a failed test"
)]
mod tests {
    use super::*;
    use crate::msgkey::kdf::session_key;
    use proptest::prelude::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn subset(d: &Dealt, ids: &[ParticipantId]) -> BTreeMap<ParticipantId, SecretScalar<Grp>> {
        ids.iter()
            .map(|i| (*i, SecretScalar::new(*d.shares[i].expose())))
            .collect()
    }

    #[test]
    fn layout_thresholds_keep_k_from_coordinators_and_need_one() {
        for m in 1..=MAX_COORDINATORS {
            let l = Layout::new(m, Mode::VerifyInTheExponent).unwrap();
            let t = usize::from(l.threshold());
            assert_eq!(l.holders().len(), 2 * usize::from(m) + 1);
            assert!(usize::from(m) < t, "coordinators alone stay below t");
            assert!(l.receiver().len() < t, "the receiver needs a coordinator");
            assert_eq!(l.receiver().len() + 1, t, "receiver + one coordinator = t");
            let lit = Layout::new(m, Mode::CoordinatorReconstructs).unwrap();
            for r in 0..m {
                assert_eq!(lit.coordinator_shares(r).unwrap().len(), t);
                assert_eq!(
                    l.coordinator_shares(r).unwrap(),
                    vec![l.coordinator(r).unwrap()]
                );
            }
            assert!(l.coordinator(m).is_err());
        }
        assert!(Layout::new(0, Mode::VerifyInTheExponent).is_err());
        assert!(Layout::new(MAX_COORDINATORS + 1, Mode::VerifyInTheExponent).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Receiver + any one coordinator rebuild k; every (t−1)-subset of
        /// shares interpolates to something else; the coordinators' own
        /// shares never suffice; the public image and verification value
        /// agree between coordinator and receiver.
        #[test]
        fn any_t_open_fewer_do_not(m in 1u16..=4, seed in any::<u64>(), pick in any::<u16>()) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let l = Layout::new(m, Mode::VerifyInTheExponent).unwrap();
            let d = deal(&l, &mut rng);
            let id = [seed as u8; 32];
            let kg = public_image(&l, &d.commitment).unwrap();
            // Every coordinator's interpolation in the exponent lands on
            // the same point.
            for r in 0..m {
                prop_assert!(public_image_interpolated(&l, &d.commitment, r).unwrap() == kg);
            }
            prop_assert!(kg == d.secret.public());
            let v = verification_value(&kg, &id).unwrap();
            let rank = pick % m;
            let mut ids = l.receiver();
            ids.push(l.coordinator(rank).unwrap());
            let k = reconstruct(&l, &d.commitment, &subset(&d, &ids)).unwrap();
            prop_assert!(k.expose() == d.secret.expose());
            prop_assert_eq!(verification_value(&k.public(), &id).unwrap(), v);
            // t − 1 shares (drop one): refused, and interpolating them
            // anyway gives another value.
            let fewer = &ids[1..];
            prop_assert!(reconstruct(&l, &d.commitment, &subset(&d, fewer)).is_err());
            let wrong = vss::interpolate::<Grp>(&subset(&d, fewer), &<Fld>::zero()).unwrap();
            prop_assert!(wrong.expose() != d.secret.expose());
            // All coordinators' shares together: still t − 1.
            let coords: Vec<_> = (0..m).map(|r| l.coordinator(r).unwrap()).collect();
            prop_assert!(coords.len() < usize::from(l.threshold()));
        }

        /// A share off the commitment is named by index, wherever it is.
        #[test]
        fn a_bad_share_is_named(m in 1u16..=4, seed in any::<u64>(), which in any::<u16>()) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let l = Layout::new(m, Mode::VerifyInTheExponent).unwrap();
            let d = deal(&l, &mut rng);
            let holders: Vec<_> = l.holders().into_iter().collect();
            let bad = holders[usize::from(which) % holders.len()];
            let mut all = subset(&d, &holders);
            let off = *all[&bad].expose() + <Fld>::one();
            all.insert(bad, SecretScalar::new(off));
            prop_assert_eq!(
                check_share(&l, &d.commitment, bad, &all[&bad]),
                Err(MsgError::ShareOffCommitments { holder: bad.get() })
            );
            prop_assert_eq!(
                reconstruct(&l, &d.commitment, &all).err(),
                Some(MsgError::ShareOffCommitments { holder: bad.get() })
            );
        }
    }

    #[test]
    fn a_commitment_of_the_wrong_degree_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let l = Layout::new(2, Mode::VerifyInTheExponent).unwrap();
        let higher = Layout::new(3, Mode::VerifyInTheExponent).unwrap();
        let d = deal(&higher, &mut rng);
        assert!(public_image(&l, &d.commitment).is_err());
        assert!(public_image_interpolated(&l, &d.commitment, 0).is_err());
        let i = l.coordinator(0).unwrap();
        assert!(check_share(&l, &d.commitment, i, &d.shares[&i]).is_err());
    }

    #[test]
    fn per_message_keys_never_repeat() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let l = Layout::new(1, Mode::VerifyInTheExponent).unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0u32..2_000 {
            let d = deal(&l, &mut rng);
            // Same identifier on purpose: fresh k alone makes keys differ.
            let key = session_key(&ikm(&d.secret), b"salt", &[0u8; 32]);
            assert!(seen.insert(*key.expose()), "key repeated at message {i}");
        }
    }
}
