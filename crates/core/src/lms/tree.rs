//! LMS Merkle trees of one-time keys (RFC 8554 §5), SHA-256/32 parameter
//! sets. Nodes are named by their RFC 8554 node number `r` (root 1, node
//! `r`'s children `2r` and `2r + 1`, leaf `q` at `2^h + q`), so an aligned
//! subtree built on one machine ([`Subtree`]) holds exactly the nodes the
//! whole tree built on one machine would, and the upper part over the
//! subtrees' roots is another [`Subtree`] ([`Subtree::from_nodes`]).

use super::ots::{candidate_public_key, LmotsType, OtsPrivateKey};
use super::{exact_len, hash_with, take, take_hash, take_u32, Hash, Identifier, D_INTR, D_LEAF, N};
use crate::{DecodeError, Error};

/// An LMS parameter set (RFC 8554 §5.1, Table 2; the numbers are the IANA
/// typecodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LmsType {
    /// `LMS_SHA256_M32_H5` (5).
    H5,
    /// `LMS_SHA256_M32_H10` (6).
    H10,
    /// `LMS_SHA256_M32_H15` (7).
    H15,
    /// `LMS_SHA256_M32_H20` (8).
    H20,
    /// `LMS_SHA256_M32_H25` (9).
    H25,
}

impl LmsType {
    /// Every parameter set.
    pub const ALL: [LmsType; 5] = [Self::H5, Self::H10, Self::H15, Self::H20, Self::H25];

    /// The IANA typecode.
    pub fn code(self) -> u32 {
        match self {
            Self::H5 => 5,
            Self::H10 => 6,
            Self::H15 => 7,
            Self::H20 => 8,
            Self::H25 => 9,
        }
    }

    /// The parameter set of a typecode.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The parameter set of a typecode read from untrusted bytes.
    pub fn decode(code: u32) -> Result<Self, Error> {
        Self::from_code(code).ok_or(Error::Decode(DecodeError::UnknownTypecode {
            what: "LMS",
            code,
        }))
    }

    /// The parameter set of height `h`.
    pub fn from_height(h: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.height() == h)
    }

    /// `h`: the tree's height.
    pub fn height(self) -> u8 {
        match self {
            Self::H5 => 5,
            Self::H10 => 10,
            Self::H15 => 15,
            Self::H20 => 20,
            Self::H25 => 25,
        }
    }

    /// One-time keys in the tree (`2^h`).
    pub fn leaves(self) -> u32 {
        1u32 << self.height()
    }

    /// Bytes of a signature with one-time signatures of type `ots`.
    pub fn signature_len(self, ots: LmotsType) -> usize {
        4 + ots.signature_len() + 4 + N * usize::from(self.height())
    }
}

fn truncated() -> Error {
    Error::Decode(DecodeError::Truncated)
}

/// `T[r]` of leaf `q` in a tree of height `h`:
/// `H(I ‖ u32str(2^h + q) ‖ u16str(D_LEAF) ‖ K)`; `None` past the tree.
pub fn leaf_hash(id: &Identifier, lms: LmsType, q: u32, k: &Hash) -> Option<Hash> {
    (q < lms.leaves()).then(|| hash_with(id, lms.leaves() + q, D_LEAF, &[k]))
}

/// `T[r]` of interior node `r`: `H(I ‖ u32str(r) ‖ u16str(D_INTR) ‖ T[2r] ‖ T[2r+1])`.
pub fn interior_hash(id: &Identifier, r: u32, left: &Hash, right: &Hash) -> Hash {
    hash_with(id, r, D_INTR, &[left, right])
}

/// One past the largest node number of any tree here (H25: leaves up to
/// `2^26 − 1`).
const MAX_NODE: u32 = 1 << 26;

/// An LMS public key (RFC 8554 §5.3):
/// `u32str(lms type) ‖ u32str(ots type) ‖ I ‖ T[1]` (56 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LmsPublicKey {
    /// The tree's parameter set.
    pub lms: LmsType,
    /// Its one-time keys' parameter set.
    pub ots: LmotsType,
    /// The tree's identifier.
    pub id: Identifier,
    /// The root, `T[1]`.
    pub root: Hash,
}

impl LmsPublicKey {
    /// Bytes of the encoding.
    pub const LEN: usize = 8 + 16 + N;

    /// The RFC 8554 encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.lms.code().to_be_bytes());
        out.extend_from_slice(&self.ots.code().to_be_bytes());
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.root);
        out
    }

    /// Read the RFC 8554 encoding (exactly [`Self::LEN`] bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        exact_len(bytes, Self::LEN)?;
        let (lms, rest) = take_u32(bytes).ok_or_else(truncated)?;
        let (ots, rest) = take_u32(rest).ok_or_else(truncated)?;
        let (id, rest) = rest.split_first_chunk::<16>().ok_or_else(truncated)?;
        let (root, _) = take_hash(rest).ok_or_else(truncated)?;
        Ok(Self {
            lms: LmsType::decode(lms)?,
            ots: LmotsType::decode(ots)?,
            id: *id,
            root,
        })
    }

    /// Check `signature` on `message` (RFC 8554 §5.4.2, Algorithm 6a).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        let sig = LmsSignature::parse(signature)?;
        if sig.lms != self.lms || sig.ots != self.ots {
            return Err(Error::InvalidSignature);
        }
        if sig.q >= self.lms.leaves() {
            return Err(Error::InvalidSignature);
        }
        let kc = candidate_public_key(self.ots, &self.id, sig.q, message, sig.ots_signature)?;
        let mut node = self.lms.leaves() + sig.q;
        let mut tmp = hash_with(&self.id, node, D_LEAF, &[&kc]);
        for sibling in &sig.path {
            tmp = if !node.is_multiple_of(2) {
                interior_hash(&self.id, node / 2, sibling, &tmp)
            } else {
                interior_hash(&self.id, node / 2, &tmp, sibling)
            };
            node /= 2;
        }
        if tmp == self.root {
            Ok(())
        } else {
            Err(Error::InvalidSignature)
        }
    }
}

/// An LMS signature's parts (RFC 8554 §5.4):
/// `u32str(q) ‖ lmots_signature ‖ u32str(lms type) ‖ path[0] ‖ … ‖ path[h−1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmsSignature<'a> {
    /// The leaf.
    pub q: u32,
    /// Its one-time signature's parameter set.
    pub ots: LmotsType,
    /// The one-time signature, as encoded.
    pub ots_signature: &'a [u8],
    /// The tree's parameter set.
    pub lms: LmsType,
    /// The authentication path, from the leaf's sibling up.
    pub path: Vec<Hash>,
}

impl<'a> LmsSignature<'a> {
    /// The length of the LMS signature at the front of `bytes` (read from
    /// its typecodes), for reading one out of an HSS signature.
    pub fn len_at(bytes: &[u8]) -> Result<usize, Error> {
        let (ots, _) = Self::ots_at(bytes)?;
        let (_, rest) = take(bytes, 4 + ots.signature_len()).ok_or_else(truncated)?;
        let (code, _) = take_u32(rest).ok_or_else(truncated)?;
        Ok(LmsType::decode(code)?.signature_len(ots))
    }

    /// The one-time signature's type, after `q`; the bytes from the type on.
    fn ots_at(bytes: &[u8]) -> Result<(LmotsType, &[u8]), Error> {
        let (_, rest) = take_u32(bytes).ok_or_else(truncated)?;
        let (code, _) = take_u32(rest).ok_or_else(truncated)?;
        Ok((LmotsType::decode(code)?, rest))
    }

    /// Read an encoded signature (exactly its length).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        exact_len(bytes, Self::len_at(bytes)?)?;
        let (q, _) = take_u32(bytes).ok_or_else(truncated)?;
        let (ots, rest) = Self::ots_at(bytes)?;
        let (ots_signature, rest) = take(rest, ots.signature_len()).ok_or_else(truncated)?;
        let (code, mut rest) = take_u32(rest).ok_or_else(truncated)?;
        let lms = LmsType::decode(code)?;
        let mut path = Vec::with_capacity(usize::from(lms.height()));
        for _ in 0..lms.height() {
            let (h, tail) = take_hash(rest).ok_or_else(truncated)?;
            path.push(h);
            rest = tail;
        }
        Ok(Self {
            q,
            ots,
            ots_signature,
            lms,
            path,
        })
    }
}

/// Sign `message` with `key`, a leaf of the tree whose public key is
/// `public`, whose authentication path (public data) is `path`; `c` is the
/// one-time signature's randomizer. Consumes the key. The leaf is the key's
/// own, and the signature is checked against `public` before it is
/// returned: a key of another tree or type, or a wrong path, is an error
/// (the leaf is spent all the same: whoever keeps the one-time state must
/// count it used before calling this).
pub fn sign(
    public: &LmsPublicKey,
    key: OtsPrivateKey,
    path: &AuthPath,
    message: &[u8],
    c: &Hash,
) -> Result<Vec<u8>, Error> {
    let (lms, q) = (public.lms, key.leaf());
    if *key.tree() != public.id || key.typ() != public.ots {
        return Err(Error::InvalidParameters(
            "the one-time key is not of this tree or of its type",
        ));
    }
    if path.0.len() != usize::from(lms.height()) || q >= lms.leaves() {
        return Err(Error::InvalidParameters(
            "the authentication path is not the tree's height, or the leaf is past it",
        ));
    }
    let ots = key.sign(message, c);
    let mut out = Vec::with_capacity(8 + ots.len() + N * path.0.len());
    out.extend_from_slice(&q.to_be_bytes());
    out.extend_from_slice(&ots);
    out.extend_from_slice(&lms.code().to_be_bytes());
    for h in &path.0 {
        out.extend_from_slice(h);
    }
    public.verify(message, &out)?;
    Ok(out)
}

/// A leaf's authentication path: the siblings of the nodes from the leaf
/// up to the root's children (public data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPath(pub Vec<Hash>);

impl AuthPath {
    /// The path within a subtree followed by the path of the subtree's
    /// root in the tree above it.
    pub fn join(mut self, above: AuthPath) -> Self {
        self.0.extend(above.0);
        self
    }
}

/// Every node of an aligned subtree of an LMS tree, bottom level first:
/// its bottom level is `2^k` consecutive nodes starting at node number
/// `first` (a multiple of `2^k`), its top is their common ancestor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subtree {
    id: Identifier,
    first: u32,
    levels: Vec<Vec<Hash>>,
}

impl Subtree {
    /// The subtree over leaves `first_leaf ..` of a tree of type `lms`,
    /// from their one-time public key hashes `ks` (a power of two of them,
    /// `first_leaf` a multiple of it). With every leaf, the whole tree.
    pub fn from_leaves(
        id: &Identifier,
        lms: LmsType,
        first_leaf: u32,
        ks: &[Hash],
    ) -> Result<Self, Error> {
        let len = u32::try_from(ks.len()).unwrap_or(u32::MAX);
        if first_leaf
            .checked_add(len)
            .is_none_or(|end| end > lms.leaves())
        {
            return Err(Error::InvalidParameters("the leaves are past the tree"));
        }
        let leaves = ks
            .iter()
            .zip(first_leaf..)
            .map(|(k, q)| leaf_hash(id, lms, q, k).unwrap_or([0u8; N]))
            .collect();
        Self::from_nodes(id, lms.leaves() + first_leaf, leaves)
    }

    /// The subtree over `nodes`, the values of nodes `first ..` of one
    /// level (a power of two of them, `first` a multiple of it): for the
    /// part of a tree above its subtrees, their roots.
    pub fn from_nodes(id: &Identifier, first: u32, nodes: Vec<Hash>) -> Result<Self, Error> {
        let len = u32::try_from(nodes.len()).unwrap_or(0);
        if !len.is_power_of_two()
            || first < len
            || !first.is_multiple_of(len)
            || first.checked_add(len).is_none_or(|end| end > MAX_NODE)
        {
            return Err(Error::InvalidParameters(
                "a subtree's bottom level is a power of two of aligned nodes of a tree",
            ));
        }
        let mut levels = vec![nodes];
        let mut r = first;
        while let Some(below) = levels.last().filter(|l| l.len() > 1) {
            r /= 2;
            let above = below
                .chunks_exact(2)
                .zip(r..)
                .map(|(pair, parent)| match pair {
                    [left, right] => interior_hash(id, parent, left, right),
                    _ => [0u8; N],
                })
                .collect();
            levels.push(above);
        }
        Ok(Self {
            id: *id,
            first,
            levels,
        })
    }

    /// The top node's value.
    pub fn root(&self) -> Hash {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or([0u8; N])
    }

    /// The top node's number.
    pub fn root_node(&self) -> u32 {
        self.first >> (self.levels.len() - 1)
    }

    /// Levels below the top (`k`).
    pub fn height(&self) -> usize {
        self.levels.len() - 1
    }

    /// The node numbers of the bottom level.
    pub fn bottom(&self) -> core::ops::Range<u32> {
        let len = self.levels.first().map_or(0, Vec::len) as u32;
        self.first..self.first + len
    }

    /// The tree's identifier.
    pub fn id(&self) -> &Identifier {
        &self.id
    }

    /// The value of node `r`, if it is in this subtree (each level's node
    /// numbers are a range of their own).
    pub fn node(&self, r: u32) -> Option<Hash> {
        self.levels.iter().enumerate().find_map(|(d, level)| {
            let start = self.first >> d;
            r.checked_sub(start)
                .and_then(|i| level.get(i as usize))
                .copied()
        })
    }

    /// The authentication path of leaf `q` of a tree of type `lms` (this
    /// subtree's bottom being leaves) up to this subtree's top.
    pub fn leaf_path(&self, lms: LmsType, q: u32) -> Result<AuthPath, Error> {
        if q >= lms.leaves() {
            return Err(Error::InvalidParameters("the leaf is past the tree"));
        }
        self.path(lms.leaves() + q)
    }

    /// The authentication path of bottom node `r` up to (not including)
    /// this subtree's top.
    pub fn path(&self, r: u32) -> Result<AuthPath, Error> {
        if !self.bottom().contains(&r) {
            return Err(Error::InvalidParameters(
                "the node is not at this subtree's bottom",
            ));
        }
        let mut i = (r - self.first) as usize;
        let mut out = Vec::with_capacity(self.height());
        for level in self.levels.iter().take(self.height()) {
            out.push(
                level
                    .get(i ^ 1)
                    .copied()
                    .ok_or(Error::InvalidParameters("a subtree level is short"))?,
            );
            i /= 2;
        }
        Ok(AuthPath(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lms::ots::LeafSeed;

    /// A whole H5 tree's leaves from one seed per leaf.
    fn keys(id: &Identifier, ots: LmotsType) -> Vec<Hash> {
        (0..32)
            .map(|q| {
                OtsPrivateKey::derive(ots, id, q, &LeafSeed::from_bytes([q as u8; 32]))
                    .public_key_hash()
            })
            .collect()
    }

    #[test]
    fn subtrees_and_the_tree_above_them_are_the_whole_tree() {
        let id = [1u8; 16];
        let ks = keys(&id, LmotsType::W4);
        let whole = Subtree::from_leaves(&id, LmsType::H5, 0, &ks).unwrap();
        assert_eq!(whole.root_node(), 1);
        assert_eq!(whole.height(), 5);
        // Four subtrees of 8 leaves, then the two levels above their roots.
        let subs: Vec<Subtree> = (0..4)
            .map(|s| {
                Subtree::from_leaves(&id, LmsType::H5, s * 8, &ks[s as usize * 8..][..8]).unwrap()
            })
            .collect();
        assert_eq!(
            subs.iter().map(Subtree::root_node).collect::<Vec<_>>(),
            [4, 5, 6, 7]
        );
        let upper = Subtree::from_nodes(&id, 4, subs.iter().map(Subtree::root).collect()).unwrap();
        assert_eq!(upper.root(), whole.root());
        assert_eq!(whole.node(1), Some(whole.root()));
        assert_eq!(whole.node(4), Some(subs[0].root()));
        assert_eq!(subs[1].node(5), Some(subs[1].root()));
        assert_eq!(subs[1].node(4), None);
        assert_eq!(subs[1].node(40), whole.node(40));
        assert_eq!(whole.node(64), None);
        for q in 0..32u32 {
            let r = 32 + q;
            let sub = &subs[(q / 8) as usize];
            let joined = sub
                .path(r)
                .unwrap()
                .join(upper.path(sub.root_node()).unwrap());
            assert_eq!(joined, whole.path(r).unwrap());
        }
        // Misaligned or short bottoms are refused.
        assert!(Subtree::from_leaves(&id, LmsType::H5, 4, &ks[..8]).is_err());
        assert!(Subtree::from_leaves(&id, LmsType::H5, 0, &ks[..6]).is_err());
        assert!(Subtree::from_leaves(&id, LmsType::H5, 24, &ks[..16]).is_err());
        assert!(Subtree::from_nodes(&id, 2, vec![[0u8; 32]; 4]).is_err());
        assert!(Subtree::from_nodes(&id, u32::MAX, vec![[0u8; 32]]).is_err());
        assert!(Subtree::from_nodes(&id, 1 << 26, vec![[0u8; 32]]).is_err());
        assert_eq!(leaf_hash(&id, LmsType::H5, 32, &[0u8; 32]), None);
        assert_eq!(leaf_hash(&id, LmsType::H25, u32::MAX, &[0u8; 32]), None);
    }

    #[test]
    fn a_leaf_signs_once_and_verifies_under_the_root_only_as_signed() {
        let id = [2u8; 16];
        for ots in LmotsType::ALL {
            let ks = keys(&id, ots);
            let tree = Subtree::from_leaves(&id, LmsType::H5, 0, &ks).unwrap();
            let pk = LmsPublicKey {
                lms: LmsType::H5,
                ots,
                id,
                root: tree.root(),
            };
            assert_eq!(LmsPublicKey::from_bytes(&pk.to_bytes()).unwrap(), pk);
            let q = 13;
            let key = OtsPrivateKey::derive(ots, &id, q, &LeafSeed::from_bytes([q as u8; 32]));
            let path = tree.leaf_path(LmsType::H5, q).unwrap();
            assert_eq!(path, tree.path(32 + q).unwrap());
            let sig = sign(&pk, key, &path, b"fw", &[5u8; 32]).unwrap();
            assert_eq!(sig.len(), LmsType::H5.signature_len(ots));
            assert_eq!(LmsSignature::len_at(&sig).unwrap(), sig.len());
            pk.verify(b"fw", &sig).unwrap();
            assert!(pk.verify(b"fx", &sig).is_err());
            // The leaf index, a path node, the tree type: each altered fails.
            let mut bad = sig.clone();
            bad[3] ^= 1;
            assert!(pk.verify(b"fw", &bad).is_err());
            let mut bad = sig.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(pk.verify(b"fw", &bad).is_err());
            let mut other = pk;
            other.root[0] ^= 1;
            assert!(other.verify(b"fw", &sig).is_err());
            assert!(pk.verify(b"fw", &sig[..sig.len() - 1]).is_err());
            let mut longer = sig.clone();
            longer.push(0);
            assert!(pk.verify(b"fw", &longer).is_err());
            // A path of the wrong length, another leaf's path, a key of
            // another tree or type: refused at signing.
            let key =
                |q: u32| OtsPrivateKey::derive(ots, &id, q, &LeafSeed::from_bytes([q as u8; 32]));
            let path = tree.leaf_path(LmsType::H5, q).unwrap();
            let mut short = path.clone();
            short.0.pop();
            assert!(sign(&pk, key(q), &short, b"fw", &[5u8; 32]).is_err());
            assert_eq!(
                sign(&pk, key(q + 1), &path, b"fw", &[5u8; 32]),
                Err(Error::InvalidSignature)
            );
            let other_tree =
                OtsPrivateKey::derive(ots, &[9u8; 16], q, &LeafSeed::from_bytes([q as u8; 32]));
            assert!(sign(&pk, other_tree, &path, b"fw", &[5u8; 32]).is_err());
            let other_type = LmotsType::ALL.into_iter().find(|t| *t != ots).unwrap();
            let other_type =
                OtsPrivateKey::derive(other_type, &id, q, &LeafSeed::from_bytes([q as u8; 32]));
            assert!(sign(&pk, other_type, &path, b"fw", &[5u8; 32]).is_err());
        }
    }
}
