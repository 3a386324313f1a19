//! Leighton–Micali hash-based signatures (RFC 8554), the core of the
//! federated signing tree (DESIGN.md §3.5): LM-OTS one-time signatures
//! ([`ots`], RFC 8554 §4), LMS Merkle trees of them ([`tree`], §5) and the
//! HSS hierarchy's encoding and verification ([`hss`], §6), for the
//! SHA-256/32 parameter sets (n = m = 32: LM-OTS W 1, 2, 4, 8; LMS heights
//! 5, 10, 15, 20, 25), with one-time private keys derived from a seed as in
//! RFC 8554 Appendix A.
//!
//! What the federation needs beyond a plain implementation is here too:
//! - every node of the tree is named by its RFC 8554 node number `r`
//!   (root 1, leaves `2^h + q`), so a builder that owns an aligned subtree
//!   computes exactly the nodes a single machine would ([`tree::Subtree`]);
//! - a leaf's one-time key derives from `(I, q, SEED)` alone
//!   ([`ots::OtsPrivateKey::derive`], Appendix A's derivation), so each
//!   leaf can have a seed of its own (the federation gives every leaf one,
//!   Shamir-shared and released leaf by leaf: releasing one leaf's seed
//!   then reveals no other leaf's key);
//! - signing is split from the tree: an authentication path is public data
//!   ([`tree::AuthPath`]), a one-time signature needs only its leaf's key;
//! - [`federation`]: the identifier by commit-then-reveal, the layout of
//!   subtrees and their builders, leaf secrets Shamir-shared among the
//!   members and one leaf signed from a threshold of shares.
//!
//! Sans-I/O and deterministic: randomness (the signature's `C`) is passed
//! in. Hashing goes through SHA-256's compression function directly where
//! an input fits one block (the Winternitz chains: 55 bytes), which is most
//! of the work.
//!
//! Byte layouts are RFC 8554's (§3.3 `u32str`, §4.5, §5.3, §5.4, §6.1,
//! §6.2), so the public keys and signatures are read by any RFC 8554
//! implementation (`tests/rfc8554.rs` checks ours with one we did not
//! write, and the RFC's Appendix F vectors with ours).

pub mod federation;
pub mod hss;
pub mod ots;
pub mod tree;

use sha2::{Digest, Sha256};

pub use ots::{LmotsType, OtsPrivateKey};
pub use tree::{AuthPath, LmsPublicKey, LmsSignature, LmsType};

/// The hash output length of every parameter set here (SHA-256/32).
pub const N: usize = 32;

/// A tree's identifier `I` (RFC 8554 §5.1: 16 bytes, the same for every
/// node and leaf of one tree).
pub type Identifier = [u8; 16];

/// One hash value.
pub type Hash = [u8; N];

/// Domain separators (RFC 8554 §3.3 / §4, §5).
pub(crate) const D_PBLC: u16 = 0x8080;
pub(crate) const D_MESG: u16 = 0x8181;
pub(crate) const D_LEAF: u16 = 0x8282;
pub(crate) const D_INTR: u16 = 0x8383;

/// SHA-256's initial state (FIPS 180-4 §5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// `H(I ‖ u32str(q) ‖ u16str(i) ‖ u8str(j) ‖ tmp)`: one step of a
/// Winternitz chain (RFC 8554 §4.4, §4.5, §4.6) and, with `j = 0xff`, the
/// Appendix A derivation of a one-time private key element. The 55 input
/// bytes and SHA-256's padding fill exactly one block, so a step is one
/// call of the compression function; the block is laid out once per chain
/// and each step writes only `j` and `tmp` into it.
pub(crate) struct ChainHasher {
    block: [u8; 64],
}

impl ChainHasher {
    /// The chain of element `i` of leaf `q` of tree `id`.
    pub(crate) fn new(id: &Identifier, q: u32, i: u16) -> Self {
        let mut block = [0u8; 64];
        // I ‖ u32str(q) ‖ u16str(i), then (j and tmp per step) the padding:
        // 0x80 after the 55 bytes and the bit length (440) at the end.
        let fixed: [(core::ops::Range<usize>, &[u8]); 4] = [
            (0..16, id),
            (16..20, &q.to_be_bytes()),
            (20..22, &i.to_be_bytes()),
            (55..64, &[0x80, 0, 0, 0, 0, 0, 0, 0x01, 0xb8]),
        ];
        for (range, bytes) in fixed {
            if let Some(dst) = block.get_mut(range) {
                dst.copy_from_slice(bytes);
            }
        }
        Self { block }
    }

    /// Set the chain's current value.
    pub(crate) fn load(&mut self, tmp: &Hash) {
        if let Some(dst) = self.block.get_mut(23..55) {
            dst.copy_from_slice(tmp);
        }
    }

    /// The chain's current value.
    pub(crate) fn value(&self) -> Hash {
        let mut out = [0u8; N];
        if let Some(src) = self.block.get(23..55) {
            out.copy_from_slice(src);
        }
        out
    }

    /// Point this hasher at chain `i` of the same tree and leaf.
    fn set_chain(&mut self, i: u16) {
        if let Some(dst) = self.block.get_mut(20..22) {
            dst.copy_from_slice(&i.to_be_bytes());
        }
    }

    /// Set the digit position `j` the next compression hashes.
    fn set_j(&mut self, j: u8) {
        if let Some(b) = self.block.get_mut(22) {
            *b = j;
        }
    }

    /// One step: the current value `tmp` becomes
    /// `H(I ‖ u32str(q) ‖ u16str(i) ‖ u8str(j) ‖ tmp)`, written straight
    /// into the block the next step hashes.
    pub(crate) fn step(&mut self, j: u8) {
        self.set_j(j);
        self.compress_then(j);
    }

    /// Hash the block as it stands, write the result into it as the new
    /// `tmp`, and then `next` as the next step's `j`: every write to the
    /// block follows its compression at once, so a caller stepping several
    /// chains in turn ([`chains_together`]) leaves each block untouched
    /// while the others are hashed. (A store just before the compression
    /// reads it cannot be forwarded to its 16-byte loads: the read then
    /// waits for every older instruction, and chains stepped in turn would
    /// run one at a time.)
    #[allow(
        deprecated,
        reason = "sha2 0.10's compression function takes generic-array 0.14 blocks"
    )]
    fn compress_then(&mut self, next: u8) {
        use sha2::digest::generic_array::GenericArray;
        let mut state = IV;
        sha2::compress256(
            &mut state,
            core::slice::from_ref(GenericArray::from_slice(&self.block)),
        );
        let mut out = [0u8; N];
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        self.load(&out);
        self.set_j(next);
    }

    /// `tmp ← H(I ‖ u32str(q) ‖ u16str(i) ‖ u8str(j) ‖ tmp)` for each `j`
    /// of `js` in turn.
    pub(crate) fn run(&mut self, js: impl IntoIterator<Item = u8>, tmp: &mut Hash) {
        self.load(tmp);
        for j in js {
            self.step(j);
        }
        *tmp = self.value();
    }
}

impl Drop for ChainHasher {
    fn drop(&mut self) {
        // The block may hold a private key element.
        zeroize::Zeroize::zeroize(&mut self.block);
    }
}

/// Chains `first .. first + K` of leaf `q`, each from `start`, through
/// the digit positions `js` in turn, stepped together: one step of each
/// chain, then the next step of each. SHA-256's compression is a chain of
/// dependent rounds; two independent ones in flight keep the SHA unit busy
/// where one leaves it waiting (on this project's x86 machine with SHA
/// extensions, 2 chains together run a step in about 0.7 of the time of
/// one chain alone; more than 2 gain nothing more). Key generation's
/// chains all take the same `js`.
pub(crate) fn chains_together<const K: usize>(
    id: &Identifier,
    q: u32,
    first: u16,
    start: &Hash,
    js: &[u8],
) -> [Hash; K] {
    let mut lanes: [ChainHasher; K] = core::array::from_fn(|_| ChainHasher::new(id, q, 0));
    run_together(&mut lanes, first, start, js)
}

/// [`chains_together`] in `lanes` (hashers of the right tree and leaf,
/// reused from chain to chain: key generation lays out their blocks once
/// per leaf, not once per chain, and erases them once).
pub(crate) fn run_together<const K: usize>(
    lanes: &mut [ChainHasher; K],
    first: u16,
    start: &Hash,
    js: &[u8],
) -> [Hash; K] {
    let Some(&j0) = js.first() else {
        return [*start; K];
    };
    for (k, lane) in lanes.iter_mut().enumerate() {
        // K ≤ 3 and chains number at most 265: no overflow.
        lane.set_chain(first.saturating_add(u16::try_from(k).unwrap_or(u16::MAX)));
        lane.load(start);
        lane.set_j(j0);
    }
    // Each step's compression, then the next step's j (the last writes a
    // j nobody reads).
    for next in js.iter().skip(1).chain(core::iter::once(&0)) {
        for lane in lanes.iter_mut() {
            lane.compress_then(*next);
        }
    }
    lanes.each_ref().map(ChainHasher::value)
}

/// SHA-256 compressions per second on this core, the physical limit the
/// benchmarks hold key generation to: the best of 1, 2 and 4 independent
/// states compressed in turn (`n` compressions each; the rounds of one
/// compression depend on each other, so more than one in flight can go
/// faster than one at a time, and key generation keeps two in flight).
/// For measurement only; it runs for `3 n` compressions.
#[allow(
    deprecated,
    reason = "sha2 0.10's compression function takes generic-array 0.14 blocks"
)]
pub fn compression_rate(n: u64) -> f64 {
    fn lanes<const K: usize>(n: u64) -> f64 {
        let block = sha2::digest::generic_array::GenericArray::from([7u8; 64]);
        let mut states = [[0u32; 8]; K];
        let rounds = n / K as u64;
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            for state in &mut states {
                sha2::compress256(state, core::slice::from_ref(&block));
            }
        }
        core::hint::black_box(states);
        (rounds * K as u64) as f64 / t.elapsed().as_secs_f64()
    }
    lanes::<1>(n).max(lanes::<2>(n)).max(lanes::<4>(n))
}

/// One chain step (see [`ChainHasher`]).
pub(crate) fn chain_step(id: &Identifier, q: u32, i: u16, j: u8, tmp: &Hash) -> Hash {
    let mut out = *tmp;
    ChainHasher::new(id, q, i).run([j], &mut out);
    out
}

/// `H(I ‖ u32str(r) ‖ u16str(d) ‖ parts…)` for the hashes that do not fit
/// one block (leaves, interior nodes, message and public-key hashes).
pub(crate) fn hash_with(id: &Identifier, r: u32, d: u16, parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    h.update(id);
    h.update(r.to_be_bytes());
    h.update(d.to_be_bytes());
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Read a big-endian u32 at the front of `bytes`; the rest.
pub(crate) fn take_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*head), rest))
}

/// Read `n` bytes at the front of `bytes`; the rest.
pub(crate) fn take(bytes: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (bytes.len() >= n).then(|| bytes.split_at(n))
}

/// `bytes` is exactly `len` long (a clear decoding error otherwise).
pub(crate) fn exact_len(bytes: &[u8], len: usize) -> Result<(), crate::Error> {
    use crate::{DecodeError, Error};
    match bytes.len() {
        n if n < len => Err(Error::Decode(DecodeError::Truncated)),
        n if n > len => Err(Error::Decode(DecodeError::TrailingBytes(n - len))),
        _ => Ok(()),
    }
}

/// Read a hash at the front of `bytes`; the rest.
pub(crate) fn take_hash(bytes: &[u8]) -> Option<(Hash, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    Some((*head, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_block_chain_step_is_sha256_of_its_55_bytes() {
        let id = [7u8; 16];
        let tmp = [0xa5u8; 32];
        for (q, i, j) in [
            (0u32, 0u16, 0u8),
            (31, 264, 254),
            (u32::MAX, u16::MAX, 0xff),
        ] {
            let mut h = Sha256::new();
            h.update(id);
            h.update(q.to_be_bytes());
            h.update(i.to_be_bytes());
            h.update([j]);
            h.update(tmp);
            let want: Hash = h.finalize().into();
            assert_eq!(chain_step(&id, q, i, j, &tmp), want);
        }
    }

    /// Each chain stepped together with others ends where it would alone,
    /// for chains of any length (none, one step, many; `j` values that
    /// differ from step to step).
    #[test]
    fn chains_stepped_together_end_where_each_would_alone() {
        fn alone(id: &Identifier, q: u32, i: u16, start: &Hash, js: &[u8]) -> Hash {
            js.iter()
                .fold(*start, |tmp, &j| chain_step(id, q, i, j, &tmp))
        }
        fn check<const K: usize>(js: &[u8]) {
            let id = [0x3cu8; 16];
            let start = [0x5au8; 32];
            let got = chains_together::<K>(&id, 77, 10, &start, js);
            for (k, y) in got.iter().enumerate() {
                assert_eq!(*y, alone(&id, 77, 10 + k as u16, &start, js), "K={K} k={k}");
            }
            // Distinct chains give distinct values (unless there is no step).
            if K > 1 && !js.is_empty() {
                assert_ne!(got[0], got[1]);
            }
        }
        let long: Vec<u8> = core::iter::once(0xff).chain(0..15).collect();
        for js in [&[][..], &[0xff][..], &[3, 1, 4, 1, 5][..], &long[..]] {
            check::<1>(js);
            check::<2>(js);
            check::<3>(js);
        }
    }
}
