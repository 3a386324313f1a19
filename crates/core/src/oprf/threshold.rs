//! The threshold VOPRF: `t` holders of Shamir shares `k_i` of the key `k`
//! (public key `pk = k·G`, public shares `Y_i = k_i·G`, from our DKG)
//! answer a blinded element `M` with `Z = k·M` and **one** RFC 9497 proof
//! under `pk`, in two rounds. The proof is a Schnorr-type DLEQ made by
//! several signers, so its nonce is made the way FROST (RFC 9591 §5) makes
//! a signature's: two nonces per member, bound to the whole round-one
//! transcript by a binding factor, used once.
//!
//! 1. **Commit** ([`commit`]): member `i` draws `d_i, e_i` and sends
//!    `Z_i = k_i·M`, `D_i = d_i·G`, `E_i = e_i·G`, `D̂_i = d_i·M`,
//!    `Ê_i = e_i·M` ([`Commitment`]). It keeps the nonces ([`Nonces`]).
//! 2. **Respond** ([`respond`]): given the [`Package`] (`M` and the
//!    commitments of the signer set `S`), every member computes the same
//!    values: `λ_j` (Lagrange at zero over `S`), `Z = Σ λ_j·Z_j`, the
//!    composite weight `d0` of `(M, Z)` (RFC 9497 §2.2.2), binding factors
//!    `ρ_j = H("keyquorum-oprf-v1/binding" ‖ pk ‖ package ‖ Z ‖ u16 BE j)`
//!    (SHA-512 mod ℓ), `t2 = Σ (D_j + ρ_j·E_j)`, `t3 = d0·Σ (D̂_j +
//!    ρ_j·Ê_j)` and the RFC's challenge `c` over `pk, d0·M, d0·Z, t2, t3`;
//!    it answers `s_i = d_i + ρ_i·e_i − c·λ_i·k_i` and forgets its nonces.
//! 3. **Aggregate** ([`aggregate`]): each `s_i` is checked against the
//!    member's own commitments, `s_i·G + c·λ_i·Y_i = D_i + ρ_i·E_i` and
//!    `s_i·M + c·λ_i·Z_i = D̂_i + ρ_i·Ê_i` (the second is what proves
//!    `Z_i` right: a member that lies is named), then `s = Σ s_i`. `(c, s)`
//!    is exactly the proof `GenerateProof(k, G, pk, M, Z)` with nonce
//!    `r = Σ (d_j + ρ_j·e_j)` would make: `s·G + c·pk = t2` and
//!    `s·M' + c·Z' = t3` for `M' = d0·M`, `Z' = d0·Z`.
//!
//! The commitments on `M` cannot be made before `M` is known, hence two
//! online rounds (FROST can precompute; this cannot). A nonce answers at
//! most one package: [`respond`] takes [`Nonces`] by value.

use std::collections::{BTreeMap, BTreeSet};

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, VartimeMultiscalarMul};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha512};
use zeroize::Zeroize;

use super::{challenge, composite_weight, scalar, Element, Proof};
use crate::error::{DecodeError, Error, Fault};
use crate::id::ParticipantId;
use crate::keys::{GroupKey, KeyShare};
use crate::suite::Ristretto255;
use crate::vss::lagrange_at_zero;

/// Bytes of an encoded [`Commitment`].
pub const COMMITMENT_LEN: usize = 2 + 5 * 32;
/// Bytes of an encoded [`Response`].
pub const RESPONSE_LEN: usize = 2 + 32;

fn be16(b: &[u8]) -> Result<u16, DecodeError> {
    b.try_into()
        .map(u16::from_be_bytes)
        .map_err(|_| DecodeError::Truncated)
}

/// A member's round-one message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Commitment {
    member: ParticipantId,
    z: RistrettoPoint,
    d: RistrettoPoint,
    e: RistrettoPoint,
    dm: RistrettoPoint,
    em: RistrettoPoint,
}

impl Commitment {
    /// Whose it is.
    pub fn member(&self) -> ParticipantId {
        self.member
    }

    /// `u16 BE member ‖ Z_i ‖ D_i ‖ E_i ‖ D̂_i ‖ Ê_i`.
    pub fn to_bytes(&self) -> [u8; COMMITMENT_LEN] {
        let mut out = [0u8; COMMITMENT_LEN];
        let (id, rest) = out.split_at_mut(2);
        id.copy_from_slice(&self.member.get().to_be_bytes());
        for (chunk, p) in rest
            .chunks_exact_mut(32)
            .zip([self.z, self.d, self.e, self.dm, self.em])
        {
            chunk.copy_from_slice(p.compress().as_bytes());
        }
        out
    }

    /// Decode (canonical points, none the identity).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() != COMMITMENT_LEN {
            return Err(DecodeError::Truncated);
        }
        let (id, rest) = bytes.split_at(2);
        let member = ParticipantId::new(be16(id)?)?;
        let mut pts = [RistrettoPoint::identity(); 5];
        for (p, chunk) in pts.iter_mut().zip(rest.chunks_exact(32)) {
            *p = Element::from_bytes(chunk)?.point();
        }
        let [z, d, e, dm, em] = pts;
        Ok(Self {
            member,
            z,
            d,
            e,
            dm,
            em,
        })
    }
}

/// A member's secret nonces for one evaluation, with what it committed
/// to. Zeroized on drop; answers one [`Package`] at most.
pub struct Nonces {
    d: Scalar,
    e: Scalar,
    m: Element,
    own: Commitment,
}

impl core::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Nonces(<redacted>)")
    }
}

impl Drop for Nonces {
    fn drop(&mut self) {
        self.d.zeroize();
        self.e.zeroize();
    }
}

impl Nonces {
    /// The blinded element they were drawn for.
    pub fn element(&self) -> &Element {
        &self.m
    }

    /// The commitment sent with them.
    pub fn commitment(&self) -> &Commitment {
        &self.own
    }
}

fn random_scalar<R: RngCore + CryptoRng>(rng: &mut R) -> Scalar {
    let mut wide = zeroize::Zeroizing::new([0u8; 64]);
    rng.fill_bytes(wide.as_mut());
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// Round one for the holder of `share`: its evaluation share of `m` and
/// fresh nonces committed on both bases.
pub fn commit<R: RngCore + CryptoRng>(
    share: &KeyShare<Ristretto255>,
    m: &Element,
    rng: &mut R,
) -> (Nonces, Commitment) {
    let secret = share.secret();
    let k = secret.expose();
    let d = random_scalar(rng);
    let e = random_scalar(rng);
    let own = Commitment {
        member: share.id(),
        z: k * m.point(),
        d: &d * RISTRETTO_BASEPOINT_TABLE,
        e: &e * RISTRETTO_BASEPOINT_TABLE,
        dm: d * m.point(),
        em: e * m.point(),
    };
    (Nonces { d, e, m: *m, own }, own)
}

/// Round two's input: the blinded element and the signer set's
/// commitments, in member order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Package {
    m: Element,
    commitments: Vec<Commitment>,
}

/// Most commitments a package holds.
pub const MAX_SIGNERS: usize = 255;

impl Package {
    /// `m` with `commitments` (distinct members; put in member order).
    pub fn new(m: Element, mut commitments: Vec<Commitment>) -> Result<Self, Error> {
        commitments.sort_by_key(Commitment::member);
        let n = commitments.len();
        commitments.dedup_by_key(|c| c.member);
        if commitments.len() != n {
            return Err(Error::InvalidParameters(
                "a member commits once per package",
            ));
        }
        if n == 0 || n > MAX_SIGNERS {
            return Err(Error::InvalidParameters(
                "a package holds 1 to 255 commitments",
            ));
        }
        Ok(Self { m, commitments })
    }

    /// The blinded element.
    pub fn element(&self) -> &Element {
        &self.m
    }

    /// The signer set.
    pub fn signers(&self) -> BTreeSet<ParticipantId> {
        self.commitments.iter().map(Commitment::member).collect()
    }

    /// `M ‖ u16 BE count ‖ commitments`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(34 + self.commitments.len() * COMMITMENT_LEN);
        out.extend_from_slice(&self.m.to_bytes());
        out.extend_from_slice(
            &u16::try_from(self.commitments.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        for c in &self.commitments {
            out.extend_from_slice(&c.to_bytes());
        }
        out
    }

    /// Decode; refused unless canonical (members in order, each once).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < 34 {
            return Err(DecodeError::Truncated);
        }
        let (m, rest) = bytes.split_at(32);
        let (count, rest) = rest.split_at(2);
        let count = usize::from(be16(count)?);
        if count == 0 || count > MAX_SIGNERS {
            return Err(DecodeError::TooLong {
                len: count,
                max: MAX_SIGNERS,
            });
        }
        if rest.len() != count * COMMITMENT_LEN {
            return Err(if rest.len() < count * COMMITMENT_LEN {
                DecodeError::Truncated
            } else {
                DecodeError::TrailingBytes(rest.len() - count * COMMITMENT_LEN)
            });
        }
        let commitments = rest
            .chunks_exact(COMMITMENT_LEN)
            .map(Commitment::from_bytes)
            .collect::<Result<Vec<_>, _>>()?;
        if commitments
            .iter()
            .zip(commitments.iter().skip(1))
            .any(|(a, b)| a.member >= b.member)
        {
            return Err(DecodeError::UnsortedIdentifiers);
        }
        Ok(Self {
            m: Element::from_bytes(m)?,
            commitments,
        })
    }

    /// The joint evaluation `Z = Σ λ_j·Z_j` the package stands for.
    pub fn evaluated(&self) -> Result<Element, Error> {
        let lambda = lagrange_at_zero::<Ristretto255>(&self.signers())?;
        let (ls, zs): (Vec<Scalar>, Vec<RistrettoPoint>) = self
            .commitments
            .iter()
            .filter_map(|c| Some((*lambda.get(&c.member)?, c.z)))
            .unzip();
        Element::from_point(RistrettoPoint::vartime_multiscalar_mul(ls, zs))
    }
}

/// What every member and the aggregator compute from a package.
struct Transcript {
    z: Element,
    lambda: BTreeMap<ParticipantId, Scalar>,
    rho: BTreeMap<ParticipantId, Scalar>,
    c: Scalar,
}

fn transcript(pk: &[u8; 32], package: &Package) -> Result<Transcript, Error> {
    let lambda = lagrange_at_zero::<Ristretto255>(&package.signers())?;
    let z = package.evaluated()?;
    let zb = z.to_bytes();
    let mb = package.m.to_bytes();
    let encoded = package.to_bytes();
    let mut prefix = Sha512::new();
    prefix.update(b"keyquorum-oprf-v1/binding");
    prefix.update(pk);
    prefix.update(
        u32::try_from(encoded.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    prefix.update(&encoded);
    prefix.update(zb);
    let rho: BTreeMap<ParticipantId, Scalar> = package
        .commitments
        .iter()
        .map(|c| {
            let mut h = prefix.clone();
            h.update(c.member.get().to_be_bytes());
            let wide: [u8; 64] = h.finalize().into();
            (c.member, Scalar::from_bytes_mod_order_wide(&wide))
        })
        .collect();
    // Everything here is public (commitments, M, Z, pk): variable-time
    // multiscalar multiplication, one per point the challenge hashes.
    let d0 = composite_weight(pk, &mb, &zb);
    let n = package.commitments.len();
    let mut s2 = Vec::with_capacity(2 * n);
    let mut p2 = Vec::with_capacity(2 * n);
    let mut s3 = Vec::with_capacity(2 * n);
    let mut p3 = Vec::with_capacity(2 * n);
    for c in &package.commitments {
        let r = rho.get(&c.member).copied().unwrap_or(Scalar::ZERO);
        s2.extend([Scalar::ONE, r]);
        p2.extend([c.d, c.e]);
        s3.extend([d0, d0 * r]);
        p3.extend([c.dm, c.em]);
    }
    let t2 = RistrettoPoint::vartime_multiscalar_mul(s2, p2);
    let t3 = RistrettoPoint::vartime_multiscalar_mul(s3, p3);
    let m2 = RistrettoPoint::vartime_multiscalar_mul([d0], [package.m.point()]);
    let z2 = RistrettoPoint::vartime_multiscalar_mul([d0], [z.point()]);
    let c = challenge(pk, &m2, &z2, &t2, &t3);
    Ok(Transcript { z, lambda, rho, c })
}

/// A member's round-two answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Response {
    member: ParticipantId,
    s: Scalar,
}

impl Response {
    /// Whose it is.
    pub fn member(&self) -> ParticipantId {
        self.member
    }

    /// `u16 BE member ‖ s_i`.
    pub fn to_bytes(&self) -> [u8; RESPONSE_LEN] {
        let mut out = [0u8; RESPONSE_LEN];
        out[..2].copy_from_slice(&self.member.get().to_be_bytes());
        out[2..].copy_from_slice(self.s.as_bytes());
        out
    }

    /// Decode.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() != RESPONSE_LEN {
            return Err(DecodeError::Truncated);
        }
        let (id, s) = bytes.split_at(2);
        Ok(Self {
            member: ParticipantId::new(be16(id)?)?,
            s: scalar(s)?,
        })
    }

    /// A wrong answer (fault injection in tests).
    pub fn tamper(&mut self) {
        self.s += Scalar::ONE;
    }
}

fn pk_bytes(group: &GroupKey<Ristretto255>) -> [u8; 32] {
    group.verifying_element().compress().to_bytes()
}

/// Round two for the holder of `share`, with the `nonces` it drew for
/// this evaluation (used up). Refused unless the package is for the same
/// blinded element, holds this member's commitment exactly as it sent
/// it, and names at least `t` members of the share's key.
pub fn respond(
    share: &KeyShare<Ristretto255>,
    group: &GroupKey<Ristretto255>,
    nonces: Nonces,
    package: &Package,
) -> Result<Response, Error> {
    if package.m != nonces.m {
        return Err(Error::InvalidParameters(
            "the package is for another blinded element",
        ));
    }
    if !package.commitments.contains(&nonces.own) {
        return Err(Error::InvalidParameters(
            "the package does not hold this member's commitment as sent",
        ));
    }
    check_signers(group, package)?;
    let tr = transcript(&pk_bytes(group), package)?;
    let me = share.id();
    let (Some(rho), Some(lambda)) = (tr.rho.get(&me), tr.lambda.get(&me)) else {
        return Err(Error::UnknownParticipant(me));
    };
    let secret = share.secret();
    let s = nonces.d + rho * nonces.e - tr.c * lambda * secret.expose();
    Ok(Response { member: me, s })
}

fn check_signers(group: &GroupKey<Ristretto255>, package: &Package) -> Result<(), Error> {
    let signers = package.signers();
    if signers.len() < usize::from(group.threshold()) {
        return Err(Error::NotEnough {
            have: signers.len(),
            need: usize::from(group.threshold()),
        });
    }
    if let Some(out) = signers.iter().find(|s| !group.members().contains(s)) {
        return Err(Error::UnknownParticipant(*out));
    }
    Ok(())
}

/// Check every member's `responses` against its commitments and the
/// group's public shares, and combine them: the evaluated element and the
/// RFC 9497 proof under the group public key. Members whose answer fails
/// are named ([`Fault::InvalidEvaluationShare`]).
pub fn aggregate(
    group: &GroupKey<Ristretto255>,
    package: &Package,
    responses: &[Response],
) -> Result<(Element, Proof), Error> {
    check_signers(group, package)?;
    let pk = pk_bytes(group);
    let tr = transcript(&pk, package)?;
    let by_member: BTreeMap<ParticipantId, &Response> =
        responses.iter().map(|r| (r.member, r)).collect();
    let mut bad = Vec::new();
    let mut missing = 0usize;
    let mut s = Scalar::ZERO;
    for c in &package.commitments {
        let Some(r) = by_member.get(&c.member) else {
            missing += 1;
            continue;
        };
        let (Some(rho), Some(lambda)) = (tr.rho.get(&c.member), tr.lambda.get(&c.member)) else {
            bad.push(c.member);
            continue;
        };
        let y = group.public_share(c.member)?;
        let cl = tr.c * lambda;
        let ok_g =
            RistrettoPoint::vartime_double_scalar_mul_basepoint(&cl, &y, &r.s) == c.d + rho * c.e;
        let ok_m = RistrettoPoint::vartime_multiscalar_mul([r.s, cl], [package.m.point(), c.z])
            == c.dm + rho * c.em;
        if ok_g && ok_m {
            s += r.s;
        } else {
            bad.push(c.member);
        }
    }
    if !bad.is_empty() {
        return Err(Error::Misbehaved {
            culprits: bad,
            fault: Fault::InvalidEvaluationShare,
        });
    }
    if missing > 0 {
        return Err(Error::NotEnough {
            have: package.commitments.len() - missing,
            need: package.commitments.len(),
        });
    }
    let proof = Proof { c: tr.c, s };
    let pk_el = Element::from_point(group.verifying_element())?;
    super::verify_proof(&pk_el, &package.m, &tr.z, &proof)?;
    Ok((tr.z, proof))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local;
    use crate::oprf::{blind, finalize, generate_proof, verify_proof};
    use proptest::prelude::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn holders(t: u16, n: u16, seed: u64) -> local::Holders<Ristretto255> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let members: BTreeSet<ParticipantId> = ParticipantId::range(n).collect();
        local::dkg::<Ristretto255, _>(crate::SessionId([1; 32]), t, &members, &mut rng)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The whole key, rebuilt for a check only.
    fn key_of(h: &local::Holders<Ristretto255>) -> Scalar {
        let set: BTreeSet<ParticipantId> = h.shares.keys().copied().collect();
        let lambda = lagrange_at_zero::<Ristretto255>(&set).unwrap_or_default();
        h.shares
            .iter()
            .map(|(id, s)| lambda[id] * s.secret().expose())
            .sum()
    }

    /// Run both rounds with the holders in `set`.
    fn evaluate(
        h: &local::Holders<Ristretto255>,
        set: &[ParticipantId],
        m: &Element,
        rng: &mut ChaCha20Rng,
    ) -> (Package, Vec<Response>) {
        let mut nonces = Vec::new();
        let mut commits = Vec::new();
        for id in set {
            let (n, c) = commit(&h.shares[id], m, rng);
            nonces.push((id, n));
            commits.push(c);
        }
        let package = Package::new(*m, commits).unwrap_or_else(|_| unreachable!());
        let responses = nonces
            .into_iter()
            .map(|(id, n)| {
                respond(&h.shares[id], &h.group, n, &package).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        (package, responses)
    }

    #[test]
    fn a_joint_answer_is_the_single_key_answer_and_its_proof_verifies() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let h = holders(3, 5, 1);
        let m = blind(b"hello", &Scalar::from(99u64)).unwrap_or_else(|_| unreachable!());
        let set: Vec<ParticipantId> = h.shares.keys().copied().take(3).collect();
        let (package, responses) = evaluate(&h, &set, &m, &mut rng);
        let (z, proof) =
            aggregate(&h.group, &package, &responses).unwrap_or_else(|e| panic!("{e}"));
        // The key, rebuilt here for the check only.
        let k = key_of(&h);
        assert_eq!(z.point(), k * m.point());
        let pk = Element::from_point(h.group.verifying_element()).unwrap_or(m);
        assert!(verify_proof(&pk, &m, &z, &proof).is_ok());
        // Same output as one server holding k.
        let single = generate_proof(&k, &m, &z, &Scalar::from(5u64));
        assert!(verify_proof(&pk, &m, &z, &single).is_ok());
        assert_eq!(
            finalize(b"hello", &Scalar::from(99u64), &z),
            finalize(
                b"hello",
                &Scalar::from(99u64),
                &Element::from_point(k * m.point()).unwrap_or(m)
            )
        );
    }

    #[test]
    fn a_member_lying_about_its_share_is_named() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let h = holders(2, 3, 2);
        let m = blind(b"x", &Scalar::from(3u64)).unwrap_or_else(|_| unreachable!());
        let set: Vec<ParticipantId> = h.shares.keys().copied().take(2).collect();
        let (package, mut responses) = evaluate(&h, &set, &m, &mut rng);
        responses[1].tamper();
        match aggregate(&h.group, &package, &responses) {
            Err(Error::Misbehaved { culprits, fault }) => {
                assert_eq!(culprits, vec![set[1]]);
                assert_eq!(fault, Fault::InvalidEvaluationShare);
            }
            other => panic!("{other:?}"),
        }
        // A wrong evaluation share Z_i with an honest-looking response is
        // caught by the check on M.
        let mut nonces = Vec::new();
        let mut commits = Vec::new();
        for id in &set {
            let (n, c) = commit(&h.shares[id], &m, &mut rng);
            nonces.push((id, n));
            commits.push(c);
        }
        commits[0].z += RISTRETTO_BASEPOINT_TABLE.basepoint();
        let package = Package::new(m, commits.clone()).unwrap_or_else(|_| unreachable!());
        // The liar's own nonces hold its true commitment: it cannot even
        // answer the altered package.
        let mut it = nonces.into_iter();
        let (id0, n0) = it.next().unwrap_or_else(|| unreachable!());
        assert!(respond(&h.shares[id0], &h.group, n0, &package).is_err());
        let (id1, n1) = it.next().unwrap_or_else(|| unreachable!());
        let r1 = respond(&h.shares[id1], &h.group, n1, &package).unwrap_or_else(|e| panic!("{e}"));
        // Forge a response for member 0 that passes the G check: impossible
        // without k_0; any value fails one of the two equations.
        let forged = Response {
            member: *id0,
            s: Scalar::from(1u64),
        };
        assert!(matches!(
            aggregate(&h.group, &package, &[forged, r1]),
            Err(Error::Misbehaved { .. })
        ));
    }

    #[test]
    fn a_package_without_the_members_commitment_or_for_another_element_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let h = holders(2, 3, 3);
        let ids: Vec<ParticipantId> = h.shares.keys().copied().collect();
        let m = blind(b"a", &Scalar::from(3u64)).unwrap_or_else(|_| unreachable!());
        let other = blind(b"b", &Scalar::from(3u64)).unwrap_or_else(|_| unreachable!());
        let (n0, c0) = commit(&h.shares[&ids[0]], &m, &mut rng);
        let (_, c1) = commit(&h.shares[&ids[1]], &m, &mut rng);
        let (_, c0b) = commit(&h.shares[&ids[0]], &m, &mut rng);
        // Another commitment of the same member (a replayed round one).
        let p = Package::new(m, vec![c0b, c1]).unwrap_or_else(|_| unreachable!());
        assert!(respond(&h.shares[&ids[0]], &h.group, n0, &p).is_err());
        let (n0, c0) = (commit(&h.shares[&ids[0]], &m, &mut rng).0, c0);
        let p = Package::new(other, vec![c0, c1]).unwrap_or_else(|_| unreachable!());
        assert!(respond(&h.shares[&ids[0]], &h.group, n0, &p).is_err());
        // Fewer than t signers.
        let (n0, c0) = commit(&h.shares[&ids[0]], &m, &mut rng);
        let p = Package::new(m, vec![c0]).unwrap_or_else(|_| unreachable!());
        assert!(matches!(
            respond(&h.shares[&ids[0]], &h.group, n0, &p),
            Err(Error::NotEnough { .. })
        ));
        // Two commitments of one member.
        assert!(Package::new(m, vec![c0, c0]).is_err());
    }

    #[test]
    fn encodings_round_trip_and_refuse_junk() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let h = holders(2, 3, 4);
        let ids: Vec<ParticipantId> = h.shares.keys().copied().collect();
        let m = blind(b"a", &Scalar::from(3u64)).unwrap_or_else(|_| unreachable!());
        let (_, c0) = commit(&h.shares[&ids[0]], &m, &mut rng);
        let (_, c1) = commit(&h.shares[&ids[1]], &m, &mut rng);
        let p = Package::new(m, vec![c1, c0]).unwrap_or_else(|_| unreachable!());
        let bytes = p.to_bytes();
        assert_eq!(Package::from_bytes(&bytes).ok(), Some(p.clone()));
        assert!(Package::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Package::from_bytes(&longer).is_err());
        // Out of member order.
        let mut swapped = bytes[..34].to_vec();
        swapped.extend_from_slice(&c1.to_bytes());
        swapped.extend_from_slice(&c0.to_bytes());
        let sorted_first = c0.member() < c1.member();
        assert_eq!(Package::from_bytes(&swapped).is_err(), sorted_first);
        assert_eq!(Commitment::from_bytes(&c0.to_bytes()).ok(), Some(c0));
        let mut zero = c0.to_bytes();
        zero[2..34].fill(0);
        assert!(Commitment::from_bytes(&zero).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn any_t_of_n_answers_the_same_and_verifies(
            (t, n) in (2u16..=5).prop_flat_map(|n| (2u16..=n, Just(n))),
            seed in any::<u64>(),
            pick in any::<u64>(),
        ) {
            let h = holders(t, n, seed);
            let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 1);
            let m = blind(&seed.to_be_bytes(), &Scalar::from(pick | 1)).unwrap_or_else(|_| unreachable!());
            let mut ids: Vec<ParticipantId> = h.shares.keys().copied().collect();
            let rot = usize::try_from(pick % u64::from(n)).unwrap_or(0);
            ids.rotate_left(rot);
            let first: Vec<ParticipantId> = ids.iter().copied().take(usize::from(t)).collect();
            let last: Vec<ParticipantId> = ids.iter().rev().copied().take(usize::from(t)).collect();
            let (p1, r1) = evaluate(&h, &first, &m, &mut rng);
            let (p2, r2) = evaluate(&h, &last, &m, &mut rng);
            let a = aggregate(&h.group, &p1, &r1);
            let b = aggregate(&h.group, &p2, &r2);
            prop_assert!(a.is_ok() && b.is_ok());
            let (za, _) = a.unwrap_or_else(|_| unreachable!());
            let (zb, _) = b.unwrap_or_else(|_| unreachable!());
            prop_assert_eq!(za, zb);
        }
    }
}
