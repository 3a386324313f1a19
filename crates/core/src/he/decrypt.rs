//! Threshold decryption: each member's share with its Chaum–Pedersen
//! proof, and their combination by Lagrange interpolation.
//!
//! ## Byte layout of a share
//! `u16 BE member ‖ D_1 ‖ … ‖ D_K ‖ e ‖ z` (`2 + 32·K + 64` bytes), where
//! `D_k = s_i·c1_k` and, for a random `w`, `A_0 = w·B`, `A_k = w·c1_k`,
//! `e = H("keyquorum-he-v1/share" ‖ session id ‖ P ‖ u16 BE member ‖ Y_i ‖
//! u32 BE K ‖ u64 BE count ‖ inputs hash ‖ c1_1 … c1_K ‖ D_1 … D_K ‖ A_0 ‖
//! A_1 … A_K)`, `z = w + e·s_i` (one proof that `log_B Y_i = log_{c1_k}
//! D_k` for every `k`; Chaum and Pedersen, CRYPTO '92, over several bases
//! at once). The verifier recomputes `A_0 = z·B − e·Y_i`, `A_k = z·c1_k −
//! e·D_k` and the hash.
//!
//! The [`Binding`] (how many inputs the member's replica of the session
//! holds, and their hash chain) makes each share the member's statement of
//! which inputs it decrypted: `t` valid shares are `t` members' word that
//! the transcript's inputs are the session's. With `K = 0` a share decrypts
//! nothing and is only that statement (a `count` session's result).

use std::collections::{BTreeMap, BTreeSet};

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::VartimeMultiscalarMul;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use super::ciphertext::Ciphertext;
use super::dlog::DlogTable;
use super::{hash_to_scalar, point, random_scalar, scalar};
use crate::error::{DecodeError, Error, Fault};
use crate::id::ParticipantId;
use crate::keys::{GroupKey, KeyShare};
use crate::suite::Ristretto255;
use crate::vss::lagrange_at_zero;

const SHARE_LABEL: &[u8] = b"keyquorum-he-v1/share";

/// The proof of a decryption share: `e ‖ z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareProof {
    e: Scalar,
    z: Scalar,
}

/// What a share states besides the ciphertext: the number of inputs the
/// aggregate sums and the inputs' hash chain (`super::input_link`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// Inputs in the aggregate.
    pub count: u64,
    /// Their hash chain's last link.
    pub inputs: [u8; 32],
}

/// Member `i`'s decryption share of a ciphertext: `s_i·c1` per slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecryptionShare {
    member: ParticipantId,
    d: Vec<RistrettoPoint>,
    proof: ShareProof,
}

impl DecryptionShare {
    /// This member's share of `ciphertext` (the session's committed
    /// aggregate), proved against its public share.
    pub fn new<R: RngCore + CryptoRng>(
        session: &[u8; 32],
        share: &KeyShare<Ristretto255>,
        ciphertext: &Ciphertext,
        binding: &Binding,
        rng: &mut R,
    ) -> Result<Self, Error> {
        let secret = share.secret();
        let s = secret.expose();
        let d: Vec<RistrettoPoint> = ciphertext.slots().iter().map(|(c1, _)| s * c1).collect();
        let w = Zeroizing::new(random_scalar(rng));
        let a0 = &*w * RISTRETTO_BASEPOINT_TABLE;
        let a: Vec<RistrettoPoint> = ciphertext.slots().iter().map(|(c1, _)| *w * c1).collect();
        let e = challenge(
            session,
            &share.verifying_element(),
            share.id(),
            &share.public_share(),
            ciphertext,
            binding,
            &d,
            &a0,
            &a,
        );
        let z = *w + e * s;
        Ok(Self {
            member: share.id(),
            d,
            proof: ShareProof { e, z },
        })
    }

    /// Whose share it is.
    pub fn member(&self) -> ParticipantId {
        self.member
    }

    /// Check it against `ciphertext` and the member's public share in
    /// `group` (an unknown member fails).
    pub fn verify(
        &self,
        session: &[u8; 32],
        group: &GroupKey<Ristretto255>,
        ciphertext: &Ciphertext,
        binding: &Binding,
    ) -> Result<(), Error> {
        let bad = || Error::misbehaved(self.member, Fault::InvalidDecryptionShare);
        let y = group.public_share(self.member).map_err(|_| bad())?;
        if self.d.len() != ciphertext.len() {
            return Err(bad());
        }
        let ShareProof { e, z } = self.proof;
        let a0 = RistrettoPoint::vartime_double_scalar_mul_basepoint(&-e, &y, &z);
        let a: Vec<RistrettoPoint> = ciphertext
            .slots()
            .iter()
            .zip(&self.d)
            .map(|((c1, _), d)| RistrettoPoint::vartime_multiscalar_mul([z, -e], [*c1, *d]))
            .collect();
        let want = challenge(
            session,
            &group.verifying_element(),
            self.member,
            &y,
            ciphertext,
            binding,
            &self.d,
            &a0,
            &a,
        );
        if want != e {
            return Err(bad());
        }
        Ok(())
    }

    /// `u16 BE member ‖ D_1 … D_K ‖ e ‖ z`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 32 * self.d.len() + 64);
        out.extend_from_slice(&self.member.get().to_be_bytes());
        for d in &self.d {
            out.extend_from_slice(d.compress().as_bytes());
        }
        out.extend_from_slice(self.proof.e.as_bytes());
        out.extend_from_slice(self.proof.z.as_bytes());
        out
    }

    /// Decode a share of a `slots`-slot ciphertext.
    pub fn from_bytes(bytes: &[u8], slots: usize) -> Result<Self, DecodeError> {
        let want = 2 + 32 * slots + 64;
        if bytes.len() != want {
            return Err(if bytes.len() < want {
                DecodeError::Truncated
            } else {
                DecodeError::TrailingBytes(bytes.len() - want)
            });
        }
        let (id, rest) = bytes.split_at(2);
        let id: [u8; 2] = id.try_into().map_err(|_| DecodeError::Truncated)?;
        let member = ParticipantId::new(u16::from_be_bytes(id))?;
        let (ds, proof) = rest.split_at(32 * slots);
        let d = ds
            .chunks_exact(32)
            .map(point)
            .collect::<Result<Vec<_>, _>>()?;
        let (e, z) = proof.split_at(32);
        Ok(Self {
            member,
            d,
            proof: ShareProof {
                e: scalar(e)?,
                z: scalar(z)?,
            },
        })
    }

    /// Make the share wrong, so its proof fails (tests of culprit
    /// identification only).
    #[doc(hidden)]
    pub fn tamper(&mut self) {
        if let Some(d) = self.d.first_mut() {
            *d += RISTRETTO_BASEPOINT_TABLE.basepoint();
        }
    }
}

#[allow(clippy::too_many_arguments, reason = "every value the proof binds")]
fn challenge(
    session: &[u8; 32],
    public_key: &RistrettoPoint,
    member: ParticipantId,
    y: &RistrettoPoint,
    ciphertext: &Ciphertext,
    binding: &Binding,
    d: &[RistrettoPoint],
    a0: &RistrettoPoint,
    a: &[RistrettoPoint],
) -> Scalar {
    let pk = public_key.compress().to_bytes();
    let member = member.get().to_be_bytes();
    let y = y.compress().to_bytes();
    let k = u32::try_from(ciphertext.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes();
    let tail: Vec<[u8; 32]> = ciphertext
        .slots()
        .iter()
        .map(|(c1, _)| c1.compress().to_bytes())
        .chain(d.iter().map(|p| p.compress().to_bytes()))
        .chain(std::iter::once(a0.compress().to_bytes()))
        .chain(a.iter().map(|p| p.compress().to_bytes()))
        .collect();
    let count = binding.count.to_be_bytes();
    let mut parts: Vec<&[u8]> = Vec::with_capacity(8 + tail.len());
    parts.extend([
        SHARE_LABEL,
        session.as_slice(),
        &pk,
        &member,
        &y,
        &k,
        &count,
        &binding.inputs,
    ]);
    parts.extend(tail.iter().map(|t| t.as_slice()));
    hash_to_scalar(&parts)
}

/// Combine decryption shares of `ciphertext` into the points `m_k·B`.
/// Every share is checked; shares that fail are named together in one
/// [`Error::Misbehaved`] if fewer than `t` good ones remain, and otherwise
/// left out (see [`combine_checked`] to learn who they were).
pub fn combine(
    session: &[u8; 32],
    group: &GroupKey<Ristretto255>,
    ciphertext: &Ciphertext,
    binding: &Binding,
    shares: &[DecryptionShare],
) -> Result<Vec<RistrettoPoint>, Error> {
    combine_checked(session, group, ciphertext, binding, shares).map(|(points, _)| points)
}

/// As [`combine`], also returning the members whose shares failed.
pub fn combine_checked(
    session: &[u8; 32],
    group: &GroupKey<Ristretto255>,
    ciphertext: &Ciphertext,
    binding: &Binding,
    shares: &[DecryptionShare],
) -> Result<(Vec<RistrettoPoint>, Vec<ParticipantId>), Error> {
    let t = usize::from(group.threshold());
    let mut good: BTreeMap<ParticipantId, &DecryptionShare> = BTreeMap::new();
    let mut bad = BTreeSet::new();
    for s in shares {
        if good.contains_key(&s.member) {
            continue;
        }
        match s.verify(session, group, ciphertext, binding) {
            Ok(()) => {
                good.insert(s.member, s);
            }
            Err(_) => {
                bad.insert(s.member);
            }
        }
        if good.len() == t {
            break;
        }
    }
    if good.len() < t {
        if !bad.is_empty() {
            return Err(Error::Misbehaved {
                culprits: bad.into_iter().collect(),
                fault: Fault::InvalidDecryptionShare,
            });
        }
        return Err(Error::NotEnough {
            have: good.len(),
            need: t,
        });
    }
    let set: BTreeSet<ParticipantId> = good.keys().copied().collect();
    let lambda = lagrange_at_zero::<Ristretto255>(&set)?;
    let points = ciphertext
        .slots()
        .iter()
        .enumerate()
        .map(|(k, (_, c2))| {
            let (ls, ds): (Vec<Scalar>, Vec<RistrettoPoint>) = good
                .iter()
                .filter_map(|(id, s)| Some((*lambda.get(id)?, *s.d.get(k)?)))
                .unzip();
            c2 - RistrettoPoint::vartime_multiscalar_mul(ls, ds)
        })
        .collect();
    Ok((points, bad.into_iter().collect()))
}

/// Check a `count` session's result: exactly `t` valid shares over no
/// ciphertext at all (each only its member's statement of `binding`).
pub fn check_attestation(
    session: &[u8; 32],
    group: &GroupKey<Ristretto255>,
    binding: &Binding,
    shares: &[DecryptionShare],
) -> Result<(), Error> {
    let none = Ciphertext::empty();
    if shares.iter().any(|s| !s.d.is_empty()) {
        return Err(Error::InvalidParameters("an attestation decrypts nothing"));
    }
    check_result(session, group, &none, binding, shares, &[], 0)
}

/// Decrypt `ciphertext` from `shares` (bad ones left out, see
/// [`combine_checked`]) and recover each slot's value with `table`: the
/// values and the members whose shares failed.
pub fn decrypt(
    session: &[u8; 32],
    group: &GroupKey<Ristretto255>,
    ciphertext: &Ciphertext,
    binding: &Binding,
    shares: &[DecryptionShare],
    table: &DlogTable,
) -> Result<(Vec<u64>, Vec<ParticipantId>), Error> {
    let (points, bad) = combine_checked(session, group, ciphertext, binding, shares)?;
    let values = points
        .iter()
        .map(|p| table.solve(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((values, bad))
}

/// Check a recorded decryption without searching for logarithms: exactly
/// `t` shares, every one valid for `ciphertext`, and `values` (each below
/// `2^bound`) what they combine to (`values_k·B = c2_k − Σ λ_i·D_{i,k}`).
#[allow(
    clippy::too_many_arguments,
    reason = "everything a recorded result states"
)]
pub fn check_result(
    session: &[u8; 32],
    group: &GroupKey<Ristretto255>,
    ciphertext: &Ciphertext,
    binding: &Binding,
    shares: &[DecryptionShare],
    values: &[u64],
    bound: u8,
) -> Result<(), Error> {
    if shares.len() != usize::from(group.threshold()) {
        return Err(Error::InvalidParameters("a result holds exactly t shares"));
    }
    let (points, bad) = combine_checked(session, group, ciphertext, binding, shares)?;
    if !bad.is_empty() {
        return Err(Error::Misbehaved {
            culprits: bad,
            fault: Fault::InvalidDecryptionShare,
        });
    }
    if values.len() != points.len() {
        return Err(Error::InvalidParameters("one value per slot"));
    }
    for (v, p) in values.iter().zip(&points) {
        if bound < 64 && *v >> bound != 0 {
            return Err(Error::BeyondBound { bits: bound });
        }
        if &Scalar::from(*v) * RISTRETTO_BASEPOINT_TABLE != *p {
            return Err(Error::InvalidProof(
                "a value is not what the shares decrypt",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIND: Binding = Binding {
        count: 3,
        inputs: [5; 32],
    };
    use crate::he::ciphertext::Aggregate;
    use crate::id::SessionId;
    use crate::local;
    use proptest::prelude::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn value(v: u64) -> RistrettoPoint {
        &Scalar::from(v) * RISTRETTO_BASEPOINT_TABLE
    }

    fn setup(t: u16, n: u16, seed: u64) -> (GroupKey<Ristretto255>, Vec<KeyShare<Ristretto255>>) {
        let h = holders(t, n, seed);
        (h.group, h.shares.into_values().collect())
    }

    fn holders(t: u16, n: u16, seed: u64) -> local::Holders<Ristretto255> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let members: BTreeSet<ParticipantId> = ParticipantId::range(n).collect();
        local::dkg::<Ristretto255, _>(SessionId([1; 32]), t, &members, &mut rng).unwrap()
    }

    #[test]
    fn after_a_reshare_new_members_decrypt_and_old_shares_do_not_combine() {
        // 2-of-3 → 3-of-5 in the middle of a session: same public key, the
        // inputs already aggregated decrypt with new shares only.
        let old = holders(2, 3, 6);
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let p = old.group.verifying_element();
        let mut agg = Aggregate::new(1).unwrap();
        agg.add(&Ciphertext::encrypt(&p, &[41], &mut rng).unwrap().0, 1)
            .unwrap();
        let dealers: BTreeSet<ParticipantId> = ParticipantId::range(2).collect();
        let new_members: BTreeSet<ParticipantId> =
            (3..=7).map(|i| ParticipantId::new(i).unwrap()).collect();
        let new = local::reshare(
            &old,
            SessionId([2; 32]),
            &dealers,
            3,
            &new_members,
            &mut rng,
        )
        .unwrap();
        assert_eq!(new.group.verifying_element(), p);
        // Inputs keep coming after the reshare, under the same key.
        agg.add(&Ciphertext::encrypt(&p, &[1], &mut rng).unwrap().0, 1)
            .unwrap();
        let ct = agg.ciphertext();
        let sid = [3; 32];
        let fresh: Vec<DecryptionShare> = new
            .shares
            .values()
            .skip(2)
            .map(|s| DecryptionShare::new(&sid, s, &ct, &BIND, &mut rng).unwrap())
            .collect();
        assert_eq!(
            combine(&sid, &new.group, &ct, &BIND, &fresh).unwrap(),
            vec![value(42)]
        );
        // An old member's share fails against the new generation: member 3
        // holds a new share, and its old one is named.
        let stale = DecryptionShare::new(
            &sid,
            &old.shares[&ParticipantId::new(3).unwrap()],
            &ct,
            &BIND,
            &mut rng,
        )
        .unwrap();
        let mixed = vec![stale.clone(), fresh[0].clone(), fresh[1].clone()];
        assert_eq!(
            combine(&sid, &new.group, &ct, &BIND, &mixed)
                .unwrap_err()
                .culprits(),
            vec![stale.member()]
        );
        // Old members 1 and 2 are not members of the new generation at all.
        let gone = DecryptionShare::new(
            &sid,
            &old.shares[&ParticipantId::new(1).unwrap()],
            &ct,
            &BIND,
            &mut rng,
        )
        .unwrap();
        assert!(gone.verify(&sid, &new.group, &ct, &BIND).is_err());
    }

    #[test]
    fn any_t_shares_decrypt_and_a_bad_share_is_named_and_left_out() {
        let (group, shares) = setup(3, 5, 1);
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let p = group.verifying_element();
        let mut agg = Aggregate::new(2).unwrap();
        for v in [[1u64, 10], [2, 20], [3, 30]] {
            agg.add(&Ciphertext::encrypt(&p, &v, &mut rng).unwrap().0, 1)
                .unwrap();
        }
        let ct = agg.ciphertext();
        let sid = [9u8; 32];
        let mut ds: Vec<DecryptionShare> = shares
            .iter()
            .map(|s| DecryptionShare::new(&sid, s, &ct, &BIND, &mut rng).unwrap())
            .collect();
        for d in &ds {
            let back = DecryptionShare::from_bytes(&d.to_bytes(), 2).unwrap();
            assert_eq!(&back, d);
            d.verify(&sid, &group, &ct, &BIND).unwrap();
            // Bound to the session and the ciphertext.
            assert!(d.verify(&[8; 32], &group, &ct, &BIND).is_err());
            assert!(d
                .verify(&sid, &group, &agg_plus_one(&agg, &p, &mut rng), &BIND)
                .is_err());
        }
        assert_eq!(
            combine(&sid, &group, &ct, &BIND, &ds[2..]).unwrap(),
            vec![value(6), value(60)]
        );
        ds[0].tamper();
        let (pts, bad) = combine_checked(&sid, &group, &ct, &BIND, &ds).unwrap();
        assert_eq!(pts, vec![value(6), value(60)]);
        assert_eq!(bad, vec![ds[0].member()]);
        // Two good shares and a bad one: not enough, and the bad one named.
        let err = combine(
            &sid,
            &group,
            &ct,
            &BIND,
            &ds[..3].iter().cloned().rev().collect::<Vec<_>>()[..],
        );
        let err = err.unwrap_err();
        assert_eq!(err.culprits(), vec![ds[0].member()]);
        assert!(combine(&sid, &group, &ct, &BIND, &ds[3..]).is_err());
    }

    fn agg_plus_one(agg: &Aggregate, p: &RistrettoPoint, rng: &mut ChaCha20Rng) -> Ciphertext {
        let mut a = agg.clone();
        a.add(&Ciphertext::encrypt(p, &[1, 1], rng).unwrap().0, 1)
            .unwrap();
        a.ciphertext()
    }

    #[test]
    fn a_recorded_result_is_checked_without_a_table() {
        let (group, shares) = setup(2, 3, 8);
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let (ct, _) = Ciphertext::encrypt(&group.verifying_element(), &[7, 0], &mut rng).unwrap();
        let sid = [4; 32];
        let ds: Vec<DecryptionShare> = shares[..2]
            .iter()
            .map(|s| DecryptionShare::new(&sid, s, &ct, &BIND, &mut rng).unwrap())
            .collect();
        let table = DlogTable::new(8).unwrap();
        let (values, bad) = decrypt(&sid, &group, &ct, &BIND, &ds, &table).unwrap();
        assert_eq!((values.as_slice(), bad.len()), ([7u64, 0].as_slice(), 0));
        check_result(&sid, &group, &ct, &BIND, &ds, &[7, 0], 8).unwrap();
        assert!(check_result(&sid, &group, &ct, &BIND, &ds, &[8, 0], 8).is_err());
        assert!(check_result(&sid, &group, &ct, &BIND, &ds, &[7], 8).is_err());
        assert_eq!(
            check_result(&sid, &group, &ct, &BIND, &ds, &[7, 0], 2),
            Err(Error::BeyondBound { bits: 2 })
        );
        assert!(check_result(&sid, &group, &ct, &BIND, &ds[..1], &[7, 0], 8).is_err());
        let mut bad_share = ds.clone();
        bad_share[1].tamper();
        assert_eq!(
            check_result(&sid, &group, &ct, &BIND, &bad_share, &[7, 0], 8)
                .unwrap_err()
                .culprits(),
            vec![bad_share[1].member()]
        );
        // Past the table's bound: an error, not a wrong number.
        let (big, _) =
            Ciphertext::encrypt(&group.verifying_element(), &[300, 1], &mut rng).unwrap();
        let ds: Vec<DecryptionShare> = shares[1..]
            .iter()
            .map(|s| DecryptionShare::new(&sid, s, &big, &BIND, &mut rng).unwrap())
            .collect();
        assert_eq!(
            decrypt(&sid, &group, &big, &BIND, &ds, &table),
            Err(Error::BeyondBound { bits: 8 })
        );
    }

    #[test]
    fn a_share_states_its_binding_and_attestations_decrypt_nothing() {
        let (group, shares) = setup(2, 3, 10);
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let (ct, _) = Ciphertext::encrypt(&group.verifying_element(), &[1], &mut rng).unwrap();
        let sid = [6; 32];
        let d = DecryptionShare::new(&sid, &shares[0], &ct, &BIND, &mut rng).unwrap();
        d.verify(&sid, &group, &ct, &BIND).unwrap();
        for other in [
            Binding { count: 4, ..BIND },
            Binding {
                inputs: [6; 32],
                ..BIND
            },
        ] {
            assert!(d.verify(&sid, &group, &ct, &other).is_err());
        }
        let none = Ciphertext::empty();
        let att: Vec<DecryptionShare> = shares[1..]
            .iter()
            .map(|s| DecryptionShare::new(&sid, s, &none, &BIND, &mut rng).unwrap())
            .collect();
        assert_eq!(att[0].to_bytes().len(), 66);
        assert_eq!(
            DecryptionShare::from_bytes(&att[0].to_bytes(), 0).unwrap(),
            att[0]
        );
        check_attestation(&sid, &group, &BIND, &att).unwrap();
        let other = Binding { count: 2, ..BIND };
        assert!(check_attestation(&sid, &group, &other, &att).is_err());
        assert!(check_attestation(&sid, &group, &BIND, &att[..1]).is_err());
        // A real decryption share is no attestation.
        assert!(check_attestation(&sid, &group, &BIND, &[att[0].clone(), d]).is_err());
    }

    #[test]
    fn a_share_from_a_member_of_another_key_fails() {
        let (group, _) = setup(2, 3, 3);
        let (_, other) = setup(2, 3, 4);
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let (ct, _) = Ciphertext::encrypt(&group.verifying_element(), &[1], &mut rng).unwrap();
        let d = DecryptionShare::new(&[1; 32], &other[0], &ct, &BIND, &mut rng).unwrap();
        assert!(d.verify(&[1; 32], &group, &ct, &BIND).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Homomorphism and combination: for any values, weights and any
        /// t-subset of members, the decryption is the weighted sum.
        #[test]
        fn any_subset_of_t_decrypts_the_weighted_sum(
            seed in any::<u64>(),
            t in 2u16..5,
            extra in 0u16..3,
            values in proptest::collection::vec((0u64..1_000_000, 0u64..1000), 1..6),
            pick in any::<u64>(),
        ) {
            let n = t + extra;
            let (group, shares) = setup(t, n, seed);
            let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 1);
            let mut agg = Aggregate::new(1).unwrap();
            let mut want = 0u64;
            for (v, w) in &values {
                agg.add(&Ciphertext::encrypt(&group.verifying_element(), &[*v], &mut rng).unwrap().0, *w).unwrap();
                want += v * w;
            }
            let ct = agg.ciphertext();
            // A t-subset chosen by `pick`.
            let mut idx: Vec<usize> = (0..usize::from(n)).collect();
            let mut p = pick;
            for i in (1..idx.len()).rev() {
                idx.swap(i, (p % (i as u64 + 1)) as usize);
                p /= i as u64 + 1;
            }
            let chosen: Vec<DecryptionShare> = idx[..usize::from(t)]
                .iter()
                .map(|i| DecryptionShare::new(&[0; 32], &shares[*i], &ct, &BIND, &mut rng).unwrap())
                .collect();
            prop_assert_eq!(combine(&[0; 32], &group, &ct, &BIND, &chosen).unwrap(), vec![value(want)]);
            // t − 1 of them are not enough.
            prop_assert!(combine(&[0; 32], &group, &ct, &BIND, &chosen[1..]).is_err());
        }
    }
}
