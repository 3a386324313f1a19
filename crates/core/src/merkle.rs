//! Merkle tree hashing, inclusion proofs and their verification, as in
//! RFC 9162 §2.1 (the Certificate Transparency v2 tree; the same as
//! RFC 6962 §2.1), with SHA-256.
//!
//! The audit log is such a tree over its entries. A log kept on disk stores
//! the hash of every *complete, aligned* subtree (level `l`, index `i`:
//! leaves `i·2^l .. (i+1)·2^l`); those never change once their last leaf is
//! appended. Everything else (the root at any size, an inclusion path) is
//! computed from them with at most a few dozen lookups, through the `get`
//! closure the caller passes, so this module does no I/O.
//!
//! - [`Frontier`]: the roots of the complete subtrees that make up a tree of
//!   a given size (at most 64 hashes); appending a leaf returns the complete
//!   subtrees it finished, for the caller to store.
//! - [`range_hash`], [`root_at`]: MTH over any range of leaves (§2.1.1).
//! - [`inclusion_path`]: PATH(m, D\[n\]) (§2.1.3.1).
//! - [`verify_inclusion`]: the verification algorithm of §2.1.3.2.

use sha2::{Digest, Sha256};

/// A SHA-256 node or leaf hash.
pub type Hash = [u8; 32];

/// The hash of a leaf: `SHA-256(0x00 ‖ data)` (RFC 9162 §2.1.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`
/// (RFC 9162 §2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256()` (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// What went wrong computing over a stored tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// A complete subtree's hash is not stored.
    #[error("the hash of subtree (level {level}, index {index}) is not stored")]
    Missing {
        /// Its level (0: a leaf).
        level: u8,
        /// Its index within the level.
        index: u64,
    },
    /// A leaf index or range lies outside the tree.
    #[error("leaf {index} is not in a tree of {size} leaves")]
    OutOfRange {
        /// The leaf (or range end) asked for.
        index: u64,
        /// The tree's size.
        size: u64,
    },
}

/// The roots of the complete subtrees that make up a tree of `size` leaves,
/// largest (leftmost) first: one per set bit of `size`, so at most 64.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// A frontier from its parts, if they fit: one hash per set bit of
    /// `size`.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Self> {
        (nodes.len() == size.count_ones() as usize).then_some(Self { size, nodes })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The complete subtrees' roots, largest first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Append the leaf with hash `leaf` (see [`leaf_hash`]). Returns every
    /// complete subtree this finished, as `(level, index, hash)`, the leaf
    /// itself first: exactly the subtrees a stored tree lacks.
    ///
    /// # Panics
    /// Never in practice: a tree of 2^64 − 1 leaves cannot grow (the call
    /// is refused with an empty list, and the frontier is unchanged).
    pub fn push(&mut self, leaf: Hash) -> Vec<(u8, u64, Hash)> {
        let Some(size) = self.size.checked_add(1) else {
            return Vec::new();
        };
        let mut done = vec![(0u8, self.size, leaf)];
        let mut hash = leaf;
        let mut level = 0u8;
        let mut index = self.size;
        // Each trailing one bit of the old size is a complete subtree of
        // that level that the new one pairs with.
        while index & 1 == 1 {
            let Some(left) = self.nodes.pop() else { break };
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            done.push((level, index, hash));
        }
        self.nodes.push(hash);
        self.size = size;
        done
    }

    /// MTH over all leaves: the complete subtrees folded from the right.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// The largest power of two smaller than `n` (`n` ≥ 2): RFC 9162's `k`.
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// MTH(D\[a:b\]) (RFC 9162 §2.1.1) for a range that starts on a boundary
/// of the tree's recursive split (every range [`inclusion_path`] and
/// [`root_at`] ask for does), from the stored complete subtrees.
pub fn range_hash(
    a: u64,
    b: u64,
    get: &impl Fn(u8, u64) -> Option<Hash>,
) -> Result<Hash, TreeError> {
    let n = b.saturating_sub(a);
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && a.is_multiple_of(n) {
        let level = n.trailing_zeros() as u8;
        let index = a >> level;
        return get(level, index).ok_or(TreeError::Missing { level, index });
    }
    let k = split(n);
    let left = range_hash(a, a + k, get)?;
    let right = range_hash(a + k, b, get)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree's first `size` leaves.
pub fn root_at(size: u64, get: &impl Fn(u8, u64) -> Option<Hash>) -> Result<Hash, TreeError> {
    range_hash(0, size, get)
}

/// PATH(m, D\[n\]) (RFC 9162 §2.1.3.1): the inclusion proof of leaf `m` in
/// the tree of its first `n` leaves, from the leaf upwards.
pub fn inclusion_path(
    m: u64,
    n: u64,
    get: &impl Fn(u8, u64) -> Option<Hash>,
) -> Result<Vec<Hash>, TreeError> {
    if m >= n {
        return Err(TreeError::OutOfRange { index: m, size: n });
    }
    // Iterative form of the recursion: descend from the whole tree, noting
    // the sibling subtree at each split; the proof lists them bottom-up.
    let (mut lo, mut hi) = (0u64, n);
    let mut siblings = Vec::new();
    while hi - lo > 1 {
        let k = split(hi - lo);
        if m < lo + k {
            siblings.push(range_hash(lo + k, hi, get)?);
            hi = lo + k;
        } else {
            siblings.push(range_hash(lo, lo + k, get)?);
            lo += k;
        }
    }
    siblings.reverse();
    Ok(siblings)
}

/// Verify that `leaf` (a [`leaf_hash`]) is leaf `m` of the tree of `n`
/// leaves with root `root`, by the algorithm of RFC 9162 §2.1.3.2.
pub fn verify_inclusion(leaf: &Hash, m: u64, n: u64, path: &[Hash], root: &Hash) -> bool {
    // Step 1.
    if m >= n {
        return false;
    }
    // Step 2.
    let (mut f_n, mut s_n) = (m, n - 1);
    // Step 3.
    let mut r = *leaf;
    // Step 4.
    for p in path {
        // 4.a
        if s_n == 0 {
            return false;
        }
        // 4.b
        if f_n & 1 == 1 || f_n == s_n {
            // 4.b.i
            r = node_hash(p, &r);
            // 4.b.ii
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            // 4.c
            r = node_hash(&r, p);
        }
        // 4.d
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5 (`r` is public: a plain comparison).
    s_n == 0 && r == *root
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ct_merkle::mem_backed_tree::MemoryBackedTree;
    use proptest::prelude::*;

    use super::*;

    /// Stored subtrees by (level, index).
    type Store = HashMap<(u8, u64), Hash>;

    /// A stored tree: every subtree [`Frontier::push`] finished.
    fn build(leaves: u64) -> (Frontier, Store, Vec<Vec<u8>>) {
        let mut f = Frontier::default();
        let mut store = HashMap::new();
        let mut data = Vec::new();
        for i in 0..leaves {
            let d = format!("entry {i}").into_bytes();
            for (l, idx, h) in f.push(leaf_hash(&d)) {
                assert!(store.insert((l, idx), h).is_none(), "stored twice");
            }
            data.push(d);
        }
        (f, store, data)
    }

    /// ct-merkle (an RFC 6962 tree we did not write) agrees on every root
    /// and every inclusion proof, and its verifier takes ours.
    #[test]
    fn roots_and_proofs_match_an_independent_implementation() {
        let (f, store, data) = build(70);
        let get = |l: u8, i: u64| store.get(&(l, i)).copied();
        let mut theirs = MemoryBackedTree::<sha2::Sha256, Vec<u8>>::new();
        assert_eq!(root_at(0, &get).unwrap(), empty_root());
        for n in 1..=70u64 {
            theirs.push(data[n as usize - 1].clone());
            let root = root_at(n, &get).unwrap();
            assert_eq!(
                root.as_slice(),
                &theirs.root().as_bytes()[..],
                "root at {n}"
            );
            for m in 0..n {
                let path = inclusion_path(m, n, &get).unwrap();
                let proof = theirs.prove_inclusion(m as usize);
                let flat: Vec<u8> = path.concat();
                assert_eq!(flat, proof.as_bytes(), "path of {m} in {n}");
                let leaf = leaf_hash(&data[m as usize]);
                assert!(verify_inclusion(&leaf, m, n, &path, &root));
                // Their verifier takes our proof.
                let ours = ct_merkle::InclusionProof::<sha2::Sha256>::try_from_bytes(flat).unwrap();
                theirs
                    .root()
                    .verify_inclusion(&data[m as usize], m, &ours)
                    .unwrap();
            }
        }
        assert_eq!(f.root(), root_at(70, &get).unwrap());
    }

    #[test]
    fn a_wrong_leaf_index_size_path_or_root_is_refused() {
        let (_, store, data) = build(13);
        let get = |l: u8, i: u64| store.get(&(l, i)).copied();
        let root = root_at(13, &get).unwrap();
        let path = inclusion_path(5, 13, &get).unwrap();
        let leaf = leaf_hash(&data[5]);
        assert!(verify_inclusion(&leaf, 5, 13, &path, &root));
        assert!(!verify_inclusion(&leaf_hash(&data[6]), 5, 13, &path, &root));
        assert!(!verify_inclusion(&leaf, 6, 13, &path, &root));
        // A size whose tree has another shape. (Sizes with the same shape
        // give the same root: the size is bound by the signed head that
        // states it with the root, as in RFC 9162.)
        assert!(!verify_inclusion(&leaf, 5, 8, &path, &root));
        assert!(!verify_inclusion(&leaf, 5, 17, &path, &root));
        assert!(!verify_inclusion(&leaf, 13, 13, &path, &root));
        assert!(!verify_inclusion(&leaf, 5, 13, &path[1..], &root));
        let mut longer = path.clone();
        longer.push([0u8; 32]);
        assert!(!verify_inclusion(&leaf, 5, 13, &longer, &root));
        let mut bent = path.clone();
        bent[1][0] ^= 1;
        assert!(!verify_inclusion(&leaf, 5, 13, &bent, &root));
        assert!(!verify_inclusion(&leaf, 5, 13, &path, &[0u8; 32]));
        // A missing subtree is a clear error, not a wrong hash.
        let mut holed = store.clone();
        holed.remove(&(2, 2));
        let get = |l: u8, i: u64| holed.get(&(l, i)).copied();
        assert_eq!(
            root_at(13, &get),
            Err(TreeError::Missing { level: 2, index: 2 })
        );
        assert!(matches!(
            inclusion_path(13, 13, &get),
            Err(TreeError::OutOfRange { .. })
        ));
    }

    proptest! {
        /// Any leaf of any tree: the proof from the stored subtrees
        /// verifies against the root of that size, and a historical root
        /// equals the frontier's root when the tree had that size.
        #[test]
        fn every_leaf_proves_at_every_size(n in 1u64..600, pick in any::<u64>(), at in any::<u64>()) {
            let (_, store, data) = build(n);
            let get = |l: u8, i: u64| store.get(&(l, i)).copied();
            let size = 1 + at % n;
            let m = pick % size;
            let (f, _, _) = build(size);
            let root = root_at(size, &get).unwrap();
            prop_assert_eq!(root, f.root());
            let path = inclusion_path(m, size, &get).unwrap();
            prop_assert!(verify_inclusion(&leaf_hash(&data[m as usize]), m, size, &path, &root));
        }
    }
}
