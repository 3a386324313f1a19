//! The federated signing tree's math (DESIGN.md §3.5), sans-I/O: one
//! RFC 8554 LMS tree (HSS, L = 1) whose identifier no member chooses, whose
//! aligned subtrees different members build in parallel, and whose
//! one-time keys, after key generation, exist only as Shamir shares held by
//! the members, released leaf by leaf.
//!
//! 1. **Identifier by commit-then-reveal** ([`commitment`],
//!    [`identifier`]): every member commits to 32 random bytes, and only
//!    once every commitment is fixed (in the log) reveals them; `I` is a
//!    hash of all of them, so no member can choose it. A member can only
//!    refuse to reveal, which stops the run (a new run has new commitments):
//!    it cannot pick among outcomes it has seen.
//! 2. **Layout** ([`Layout`]): the tree of height `h` is cut into `2^k`
//!    aligned subtrees (`k ≤ h`); subtree `s` covers leaves
//!    `s·2^(h−k) ..` and its root is node `2^k + s`. Builders are chosen
//!    per subtree by rendezvous hashing over `I` ([`builders`]): fixed
//!    once `I` is, unpredictable before it.
//! 3. **Leaf secrets** ([`LeafSecret`]): a builder draws one scalar per leaf
//!    (Ristretto255's scalar field, 252 bits), derives the leaf's RFC 8554
//!    `SEED` from it ([`LeafSecret::seed`]) and the leaf's one-time public
//!    key from that, Shamir-shares the scalar `t`-of-`n`
//!    ([`LeafSecret::share`]), and erases it. Shamir's scheme is
//!    information-theoretic: the shares' field being an elliptic curve's
//!    scalar field costs the hash-based scheme nothing of its post-quantum
//!    security (no discrete logarithm is involved, and no Feldman
//!    commitment is published: a wrong share is caught when the leaf it
//!    rebuilds does not match the published tree).
//! 4. **Signing one leaf** ([`sign_leaf`]): from `t` shares the signer
//!    recovers the scalar, derives the seed and the one-time key, checks the
//!    key against the leaf's node in the published tree, signs, checks the
//!    signature against the public key, and only then returns it: a builder
//!    that shared a wrong seed, or a member that sent a wrong share, makes a
//!    clear error, never a signature that does not verify.
//!
//! The trust assumption, as with a dealer: a builder sees its subtree's
//! leaf secrets while it builds (it could keep them). After key generation
//! no single member holds any.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::hss::{single_signature, HssPublicKey};
use super::ots::{LeafSeed, LmotsType, OtsPrivateKey};
use super::tree::{self, leaf_hash, AuthPath, LmsType};
use super::{Hash, Identifier};
use crate::id::ParticipantId;
use crate::secret::SecretScalar;
use crate::suite::Ristretto255;
use crate::Error;

/// Domain separation of every hash this module defines.
const LABEL: &[u8] = b"keyquorum-lms-v1/";

fn labelled(what: &[u8], tree: &str) -> Sha256 {
    let mut h = Sha256::new();
    h.update(LABEL);
    h.update(what);
    let name = tree.as_bytes();
    h.update(u16::try_from(name.len()).unwrap_or(u16::MAX).to_be_bytes());
    h.update(name);
    h
}

/// Member `member`'s commitment to its contribution to tree `tree`'s
/// identifier: `SHA-256("keyquorum-lms-v1/commit" ‖ u16 len ‖ tree ‖
/// u64 member ‖ contribution)`.
pub fn commitment(tree: &str, member: u64, contribution: &[u8; 32]) -> Hash {
    let mut h = labelled(b"commit", tree);
    h.update(member.to_be_bytes());
    h.update(contribution);
    h.finalize().into()
}

/// The identifier `I` from every member's revealed contribution, checked
/// against their commitments: the first 16 bytes of
/// `SHA-256("keyquorum-lms-v1/I" ‖ u16 len ‖ tree ‖ (u64 member ‖
/// contribution) in member order)`. Every committed member must reveal, and
/// no one else; a reveal that does not open its commitment names its
/// member.
pub fn identifier(
    tree: &str,
    commitments: &BTreeMap<u64, Hash>,
    reveals: &BTreeMap<u64, [u8; 32]>,
) -> Result<Identifier, RevealError> {
    if commitments.len() < 2 {
        return Err(RevealError::TooFew);
    }
    let missing: Vec<u64> = commitments
        .keys()
        .filter(|m| !reveals.contains_key(m))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(RevealError::Missing(missing));
    }
    let wrong: Vec<u64> = reveals
        .iter()
        .filter(|(m, r)| commitments.get(m) != Some(&commitment(tree, **m, r)))
        .map(|(m, _)| *m)
        .collect();
    if !wrong.is_empty() {
        return Err(RevealError::Wrong(wrong));
    }
    let mut h = labelled(b"I", tree);
    for (m, r) in reveals {
        h.update(m.to_be_bytes());
        h.update(r);
    }
    let full: Hash = h.finalize().into();
    let mut id = [0u8; 16];
    id.copy_from_slice(
        full.split_first_chunk::<16>()
            .map_or(&[0u8; 16], |(a, _)| a),
    );
    Ok(id)
}

/// Why an identifier could not be fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevealError {
    /// Fewer than two members took part.
    #[error("an identifier needs at least two members' contributions")]
    TooFew,
    /// These members committed and have not revealed.
    #[error("members {0:?} have not revealed their contributions")]
    Missing(Vec<u64>),
    /// These members revealed something their commitment does not open
    /// (or revealed without having committed).
    #[error("members {0:?} revealed what they did not commit to")]
    Wrong(Vec<u64>),
}

/// How the tree is cut: an LMS tree of `lms` one-time keys of type `ots`
/// in `subtrees` aligned subtrees (a power of two, at most the leaves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The tree.
    pub lms: LmsType,
    /// Its one-time keys.
    pub ots: LmotsType,
    /// Aligned subtrees, `2^k`.
    pub subtrees: u32,
}

impl Layout {
    /// A layout, if `subtrees` is a power of two no larger than the leaves.
    pub fn new(lms: LmsType, ots: LmotsType, subtrees: u32) -> Result<Self, Error> {
        if !subtrees.is_power_of_two() || subtrees > lms.leaves() {
            return Err(Error::InvalidParameters(
                "subtrees must be a power of two no larger than the tree's leaves",
            ));
        }
        Ok(Self { lms, ots, subtrees })
    }

    /// Leaves per subtree.
    pub fn per_subtree(&self) -> u32 {
        self.lms.leaves() / self.subtrees
    }

    /// The leaves of subtree `s`.
    pub fn leaves_of(&self, s: u32) -> core::ops::Range<u32> {
        let per = self.per_subtree();
        s.saturating_mul(per)..s.saturating_add(1).saturating_mul(per)
    }

    /// The subtree leaf `q` is in.
    pub fn subtree_of(&self, q: u32) -> u32 {
        q / self.per_subtree()
    }

    /// The node number of subtree `s`'s root.
    pub fn root_node(&self, s: u32) -> u32 {
        self.subtrees + s
    }
}

/// The builder of each subtree (index = subtree): the member with the
/// highest rendezvous weight `SHA-256("keyquorum-lms-v1/builder" ‖ u16 len
/// ‖ tree ‖ I ‖ u32 subtree ‖ u64 member)` (first 8 bytes), so builders
/// spread evenly and a member's share does not depend on the others.
pub fn builders(tree: &str, id: &Identifier, layout: &Layout, members: &[u64]) -> Vec<u64> {
    (0..layout.subtrees)
        .filter_map(|s| {
            members.iter().copied().max_by_key(|m| {
                let mut h = labelled(b"builder", tree);
                h.update(id);
                h.update(s.to_be_bytes());
                h.update(m.to_be_bytes());
                let d: Hash = h.finalize().into();
                (
                    u64::from_be_bytes(*d.split_first_chunk::<8>().map_or(&[0u8; 8], |(a, _)| a)),
                    *m,
                )
            })
        })
        .collect()
}

/// A leaf's secret: the scalar its RFC 8554 `SEED` derives from, and what
/// the members hold shares of. Zeroized on drop, never printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSecret(SecretScalar<Ristretto255>);

impl LeafSecret {
    /// A fresh secret.
    pub fn random<R: rand_core::RngCore + rand_core::CryptoRng>(rng: &mut R) -> Self {
        Self(SecretScalar::random(rng))
    }

    /// Leaf `q`'s `SEED`: `SHA-256("keyquorum-lms-v1/seed" ‖ I ‖ u32 q ‖
    /// scalar)` (the scalar's 32-byte encoding).
    pub fn seed(&self, id: &Identifier, q: u32) -> LeafSeed {
        let mut h = Sha256::new();
        h.update(LABEL);
        h.update(b"seed");
        h.update(id);
        h.update(q.to_be_bytes());
        h.update(self.0.to_bytes().as_slice());
        LeafSeed::from_bytes(h.finalize().into())
    }

    /// Leaf `q`'s one-time public key hash `K`.
    pub fn public_key_hash(&self, ots: LmotsType, id: &Identifier, q: u32) -> Hash {
        super::ots::leaf_public_key_hash(ots, id, q, &self.seed(id, q))
    }

    /// Shamir shares, `threshold` of `holders` recover the secret.
    pub fn share<R: rand_core::RngCore + rand_core::CryptoRng>(
        &self,
        threshold: u16,
        holders: &BTreeSet<ParticipantId>,
        rng: &mut R,
    ) -> Result<BTreeMap<ParticipantId, LeafShare>, Error> {
        let shares = crate::vss::shares(self.0.clone(), threshold, holders, rng)?;
        Ok(shares.into_iter().map(|(p, s)| (p, LeafShare(s))).collect())
    }

    /// The secret from shares (at least the threshold's worth; fewer give
    /// an unrelated scalar, caught by [`sign_leaf`]'s checks).
    pub fn recover(shares: &BTreeMap<ParticipantId, LeafShare>) -> Result<Self, Error> {
        let plain: BTreeMap<_, _> = shares.iter().map(|(p, s)| (*p, s.0.clone())).collect();
        use frost_core::{Ciphersuite, Field, Group};
        let zero = <<Ristretto255 as Ciphersuite>::Group as Group>::Field::zero();
        Ok(Self(crate::vss::interpolate(&plain, &zero)?))
    }
}

/// One member's share of a leaf's secret. Zeroized on drop, never printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafShare(SecretScalar<Ristretto255>);

impl LeafShare {
    /// The share's 32-byte encoding (to seal it to its holder).
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        self.0.to_bytes()
    }

    /// A share from its encoding (a canonical scalar).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Ok(Self(SecretScalar::from_bytes(bytes)?))
    }
}

/// A dealer's weight in a redistribution of leaf shares to new holders
/// (Desmedt–Jajodia, "A Method for Sharing a Secret Among Shareholders
/// with Threshold Change", 1997, without commitments): `λ_me(0)` over the
/// dealer set, so the dealers' weighted shares add up to the secret.
#[derive(Debug, Clone)]
pub struct RedealWeight(SecretScalar<Ristretto255>);

impl RedealWeight {
    /// Dealer `me`'s weight among `dealers` (exactly the threshold's worth
    /// of old holders, `me` one of them).
    pub fn new(me: ParticipantId, dealers: &BTreeSet<ParticipantId>) -> Result<Self, Error> {
        use frost_core::{Ciphersuite, Field, Group};
        let zero = <<Ristretto255 as Ciphersuite>::Group as Group>::Field::zero();
        Ok(Self(SecretScalar::new(crate::vss::lagrange_at::<
            Ristretto255,
        >(dealers, me, &zero)?)))
    }
}

impl LeafShare {
    /// Re-deal this share to new holders: Shamir shares, `threshold` of
    /// `holders`, of `weight · share`. A new holder's share is the sum of
    /// what every dealer of the set dealt it ([`LeafShare::sum`]); the
    /// secret stays the same, and old and new shares do not combine. No
    /// commitment is published (as at key generation): a dealer that
    /// deals something else is caught when a leaf it rebuilds does not
    /// match the published tree ([`sign_leaf`]).
    pub fn redeal<R: rand_core::RngCore + rand_core::CryptoRng>(
        &self,
        weight: &RedealWeight,
        threshold: u16,
        holders: &BTreeSet<ParticipantId>,
        rng: &mut R,
    ) -> Result<BTreeMap<ParticipantId, LeafShare>, Error> {
        let weighted = SecretScalar::new(*weight.0.expose() * *self.0.expose());
        let shares = crate::vss::shares(weighted, threshold, holders, rng)?;
        Ok(shares.into_iter().map(|(p, s)| (p, LeafShare(s))).collect())
    }

    /// The sum of parts (a new holder's share from every dealer's part).
    pub fn sum<'a>(parts: impl IntoIterator<Item = &'a LeafShare>) -> LeafShare {
        let mut acc = SecretScalar::<Ristretto255>::zero();
        for p in parts {
            acc = SecretScalar::new(*acc.expose() + *p.0.expose());
        }
        LeafShare(acc)
    }
}

/// What a builder makes of subtree `s`: its leaves' one-time public key
/// hashes (public: the subtree and its root follow from them) and the
/// leaves' secrets (to share, then erase).
pub struct Built {
    /// `K` of each leaf of the subtree, in order.
    pub keys: Vec<Hash>,
    /// Each leaf's secret, in order.
    pub secrets: Vec<LeafSecret>,
}

impl core::fmt::Debug for Built {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Built")
            .field("leaves", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// Build subtree `s`: draw each leaf's secret and compute its one-time
/// public key hash. (`tree::Subtree::from_leaves` over `keys` gives the
/// subtree's nodes and root.)
pub fn build<R: rand_core::RngCore + rand_core::CryptoRng>(
    layout: &Layout,
    id: &Identifier,
    s: u32,
    rng: &mut R,
) -> Result<Built, Error> {
    if s >= layout.subtrees {
        return Err(Error::InvalidParameters("no such subtree"));
    }
    let mut keys = Vec::with_capacity(layout.per_subtree() as usize);
    let mut secrets = Vec::with_capacity(layout.per_subtree() as usize);
    for q in layout.leaves_of(s) {
        let secret = LeafSecret::random(rng);
        keys.push(secret.public_key_hash(layout.ots, id, q));
        secrets.push(secret);
    }
    Ok(Built { keys, secrets })
}

/// Sign `message` with leaf `q` of the tree whose public key is `public`,
/// from `shares` of the leaf's secret, the leaf's node value `leaf` (node
/// `2^h + q` of the published tree) and its authentication path (public
/// data). The one-time signature's randomizer derives from the leaf's seed
/// and the message ([`LeafSeed::randomizer`]), so a retry of the same
/// request makes the same signature. The key is checked against the leaf
/// and the signature against the public key before it is returned
/// (RFC 8554 HSS, one level).
pub fn sign_leaf(
    public: &HssPublicKey,
    q: u32,
    shares: &BTreeMap<ParticipantId, LeafShare>,
    leaf: &Hash,
    path: &AuthPath,
    message: &[u8],
) -> Result<Vec<u8>, Error> {
    let top = &public.top;
    if public.levels != 1 || q >= top.lms.leaves() {
        return Err(Error::InvalidParameters(
            "a one-level key and a leaf inside its tree",
        ));
    }
    let secret = LeafSecret::recover(shares)?;
    let seed = secret.seed(&top.id, q);
    let key = OtsPrivateKey::derive(top.ots, &top.id, q, &seed);
    if leaf_hash(&top.id, top.lms, q, &key.public_key_hash()).as_ref() != Some(leaf) {
        return Err(Error::ShareMismatch);
    }
    let c = seed.randomizer(q, message);
    let signature = single_signature(&tree::sign(top, key, path, message, &c)?);
    public.verify(message, &signature)?;
    Ok(signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lms::tree::{LmsPublicKey, Subtree};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn ids(n: u16) -> BTreeSet<ParticipantId> {
        (1..=n).map(|i| ParticipantId::new(i).unwrap()).collect()
    }

    #[test]
    fn the_identifier_needs_every_members_reveal_and_no_one_chooses_it() {
        let contributions: BTreeMap<u64, [u8; 32]> = (1..=3).map(|m| (m, [m as u8; 32])).collect();
        let commitments: BTreeMap<u64, Hash> = contributions
            .iter()
            .map(|(m, r)| (*m, commitment("fw", *m, r)))
            .collect();
        let id = identifier("fw", &commitments, &contributions).unwrap();
        // Another tree name, another identifier; any one contribution
        // changed: another identifier, and a reveal that does not open.
        assert_ne!(identifier("fx", &commitments, &contributions), Ok(id));
        let mut changed = contributions.clone();
        changed.insert(2, [9u8; 32]);
        assert_eq!(
            identifier("fw", &commitments, &changed),
            Err(RevealError::Wrong(vec![2]))
        );
        let mut short = contributions.clone();
        short.remove(&3);
        assert_eq!(
            identifier("fw", &commitments, &short),
            Err(RevealError::Missing(vec![3]))
        );
        let mut extra = contributions.clone();
        extra.insert(4, [4u8; 32]);
        assert_eq!(
            identifier("fw", &commitments, &extra),
            Err(RevealError::Wrong(vec![4]))
        );
        let one: BTreeMap<u64, Hash> = commitments.iter().take(1).map(|(a, b)| (*a, *b)).collect();
        assert_eq!(
            identifier("fw", &one, &contributions),
            Err(RevealError::TooFew)
        );
    }

    #[test]
    fn builders_spread_over_the_members_and_follow_the_identifier() {
        let layout = Layout::new(LmsType::H10, LmotsType::W4, 64).unwrap();
        let members = [1u64, 2, 3, 4];
        let b = builders("fw", &[1u8; 16], &layout, &members);
        assert_eq!(b.len(), 64);
        for m in members {
            let mine = b.iter().filter(|x| **x == m).count();
            assert!((6..=26).contains(&mine), "member {m} builds {mine} of 64");
        }
        assert_ne!(b, builders("fw", &[2u8; 16], &layout, &members));
        assert_eq!(b, builders("fw", &[1u8; 16], &layout, &members));
        assert!(Layout::new(LmsType::H5, LmotsType::W4, 3).is_err());
        assert!(Layout::new(LmsType::H5, LmotsType::W4, 64).is_err());
        assert_eq!(layout.leaves_of(3), 48..64);
        assert_eq!((layout.subtree_of(63), layout.root_node(3)), (3, 67));
    }

    /// A whole federated key generation on one machine: two builders'
    /// subtrees, shares to five members, any three sign any leaf, two do
    /// not, and a wrong share is caught before anything is returned.
    #[test]
    fn any_threshold_of_members_signs_a_leaf_and_fewer_or_wrong_shares_do_not() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let layout = Layout::new(LmsType::H5, LmotsType::W8, 2).unwrap();
        let id = [4u8; 16];
        let members = ids(5);
        let built: Vec<Built> = (0..2)
            .map(|s| build(&layout, &id, s, &mut rng).unwrap())
            .collect();
        let subtrees: Vec<Subtree> = built
            .iter()
            .zip(0..)
            .map(|(b, s)| {
                Subtree::from_leaves(&id, layout.lms, layout.leaves_of(s).start, &b.keys).unwrap()
            })
            .collect();
        let upper =
            Subtree::from_nodes(&id, 2, subtrees.iter().map(Subtree::root).collect()).unwrap();
        let public = HssPublicKey::single(LmsPublicKey {
            lms: layout.lms,
            ots: layout.ots,
            id,
            root: upper.root(),
        });
        // Every leaf's secret shared 3-of-5, then erased (dropped).
        let shares: Vec<BTreeMap<ParticipantId, LeafShare>> = built
            .into_iter()
            .flat_map(|b| b.secrets)
            .map(|secret| secret.share(3, &members, &mut rng).unwrap())
            .collect();
        // Leaf q's node and authentication path (public data).
        let leaf_and_path = |q: u32| {
            let s = layout.subtree_of(q);
            let sub = &subtrees[s as usize];
            let r = layout.lms.leaves() + q;
            let path = sub
                .path(r)
                .unwrap()
                .join(upper.path(layout.root_node(s)).unwrap());
            (sub.node(r).unwrap(), path)
        };
        for (q, subset) in [(0u32, [1u16, 2, 3]), (17, [2, 4, 5]), (31, [1, 3, 5])] {
            let (leaf, path) = leaf_and_path(q);
            let some: BTreeMap<_, _> = subset
                .iter()
                .map(|i| {
                    let p = ParticipantId::new(*i).unwrap();
                    (p, shares[q as usize][&p].clone())
                })
                .collect();
            let sig = sign_leaf(&public, q, &some, &leaf, &path, b"fw 2.1").unwrap();
            public.verify(b"fw 2.1", &sig).unwrap();
            // The same request again: the same signature (C derives from
            // the seed and the message), never a second one by the leaf.
            assert_eq!(
                sign_leaf(&public, q, &some, &leaf, &path, b"fw 2.1").unwrap(),
                sig
            );
            // Two shares: another scalar, caught against the leaf.
            let two: BTreeMap<_, _> = some.iter().take(2).map(|(a, b)| (*a, b.clone())).collect();
            assert_eq!(
                sign_leaf(&public, q, &two, &leaf, &path, b"fw 2.1"),
                Err(Error::ShareMismatch)
            );
            // One wrong share: caught; another leaf's shares: caught.
            let mut wrong = some.clone();
            let first = *wrong.keys().next().unwrap();
            wrong.insert(first, shares[(q as usize + 1) % 32][&first].clone());
            assert_eq!(
                sign_leaf(&public, q, &wrong, &leaf, &path, b"fw 2.1"),
                Err(Error::ShareMismatch)
            );
        }
        // Redistribution: any three of 1..5 re-deal every leaf 2-of-{1,2,6}
        // (a holder replaced, the threshold changed); any two new holders
        // sign, old and new shares do not combine.
        let new_holders: BTreeSet<ParticipantId> = [1u16, 2, 6]
            .iter()
            .map(|i| ParticipantId::new(*i).unwrap())
            .collect();
        let dealers: BTreeSet<ParticipantId> = [2u16, 4, 5]
            .iter()
            .map(|i| ParticipantId::new(*i).unwrap())
            .collect();
        let q = 9u32;
        let mut parts: BTreeMap<ParticipantId, Vec<LeafShare>> = BTreeMap::new();
        for d in &dealers {
            let w = RedealWeight::new(*d, &dealers).unwrap();
            for (p, s) in shares[q as usize][d]
                .redeal(&w, 2, &new_holders, &mut rng)
                .unwrap()
            {
                parts.entry(p).or_default().push(s);
            }
        }
        let fresh: BTreeMap<ParticipantId, LeafShare> =
            parts.iter().map(|(p, v)| (*p, LeafShare::sum(v))).collect();
        let (leaf, path) = leaf_and_path(q);
        for pair in [[1u16, 2], [1, 6], [2, 6]] {
            let some: BTreeMap<_, _> = pair
                .iter()
                .map(|i| {
                    let p = ParticipantId::new(*i).unwrap();
                    (p, fresh[&p].clone())
                })
                .collect();
            let sig = sign_leaf(&public, q, &some, &leaf, &path, b"after").unwrap();
            public.verify(b"after", &sig).unwrap();
        }
        let one = ParticipantId::new(1).unwrap();
        let three = ParticipantId::new(3).unwrap();
        let mixed: BTreeMap<_, _> = [
            (one, fresh[&one].clone()),
            (three, shares[q as usize][&three].clone()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            sign_leaf(&public, q, &mixed, &leaf, &path, b"after"),
            Err(Error::ShareMismatch)
        );
        // A dealer outside its own set has no weight.
        assert!(RedealWeight::new(three, &dealers).is_err());
        // A share survives its encoding; a non-canonical one is refused.
        let p = ParticipantId::new(1).unwrap();
        let s = &shares[0][&p];
        assert_eq!(&LeafShare::from_bytes(&s.to_bytes()).unwrap(), s);
        assert!(LeafShare::from_bytes(&[0xff; 32]).is_err());
    }
}
