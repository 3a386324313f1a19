//! LM-OTS one-time signatures (RFC 8554 §4), SHA-256/32 parameter sets,
//! with private keys derived from a seed (Appendix A).

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{
    chain_step, chains_together, exact_len, hash_with, run_together, take_hash, take_u32,
    ChainHasher, Hash, Identifier, D_MESG, D_PBLC, N,
};
use crate::{DecodeError, Error};
use sha2::{Digest, Sha256};

/// An LM-OTS parameter set (RFC 8554 §4.1, Table 1; the numbers are the
/// IANA typecodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LmotsType {
    /// `LMOTS_SHA256_N32_W1` (1).
    W1,
    /// `LMOTS_SHA256_N32_W2` (2).
    W2,
    /// `LMOTS_SHA256_N32_W4` (3).
    W4,
    /// `LMOTS_SHA256_N32_W8` (4).
    W8,
}

impl LmotsType {
    /// Every parameter set.
    pub const ALL: [LmotsType; 4] = [Self::W1, Self::W2, Self::W4, Self::W8];

    /// The IANA typecode.
    pub fn code(self) -> u32 {
        match self {
            Self::W1 => 1,
            Self::W2 => 2,
            Self::W4 => 3,
            Self::W8 => 4,
        }
    }

    /// The parameter set of a typecode.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => Self::W1,
            2 => Self::W2,
            3 => Self::W4,
            4 => Self::W8,
            _ => return None,
        })
    }

    /// The parameter set of a typecode read from untrusted bytes.
    pub fn decode(code: u32) -> Result<Self, Error> {
        Self::from_code(code).ok_or(Error::Decode(DecodeError::UnknownTypecode {
            what: "LM-OTS",
            code,
        }))
    }

    /// The parameter set of Winternitz width `w`.
    pub fn from_w(w: u8) -> Option<Self> {
        Some(match w {
            1 => Self::W1,
            2 => Self::W2,
            4 => Self::W4,
            8 => Self::W8,
            _ => return None,
        })
    }

    /// `w`: bits per Winternitz digit.
    pub fn w(self) -> u8 {
        match self {
            Self::W1 => 1,
            Self::W2 => 2,
            Self::W4 => 4,
            Self::W8 => 8,
        }
    }

    /// `p`: chains (digits of the message hash and its checksum).
    pub fn p(self) -> usize {
        match self {
            Self::W1 => 265,
            Self::W2 => 133,
            Self::W4 => 67,
            Self::W8 => 34,
        }
    }

    /// `ls`: the checksum's left shift.
    fn ls(self) -> u32 {
        match self {
            Self::W1 => 7,
            Self::W2 => 6,
            Self::W4 => 4,
            Self::W8 => 0,
        }
    }

    /// The largest digit, `2^w − 1` (a chain's length).
    fn max_digit(self) -> u8 {
        match self {
            Self::W8 => u8::MAX,
            other => (1u8 << other.w()) - 1,
        }
    }

    /// Bytes of a signature: `u32str(type) ‖ C ‖ y[0] ‖ … ‖ y[p−1]`.
    pub fn signature_len(self) -> usize {
        4 + N * (self.p() + 1)
    }

    /// Hash-function calls to compute one leaf's public key from its seed
    /// (key derivation, the chains, the final hash's blocks).
    pub fn keygen_hashes(self) -> u64 {
        let p = self.p() as u64;
        p + p * u64::from(self.max_digit()) + (22 + N as u64 * p + 9).div_ceil(64)
    }
}

/// Digit `i` of `s` for width `w` (RFC 8554 §3.1.3 `coef`).
fn coef(s: &[u8], i: usize, w: u8) -> u8 {
    let w = usize::from(w);
    let per_byte = 8 / w;
    let byte = s.get(i * w / 8).copied().unwrap_or(0);
    let shift = 8 - (w * (i % per_byte) + w);
    let mask = if w == 8 { 0xff } else { (1u8 << w) - 1 };
    (byte >> shift) & mask
}

/// `Q ‖ Cksm(Q)` (RFC 8554 §4.4): the digits a signature reveals.
fn digits(typ: LmotsType, q_hash: &Hash) -> [u8; N + 2] {
    let w = typ.w();
    let mut sum: u32 = 0;
    for i in 0..(N * 8 / usize::from(w)) {
        sum += u32::from(typ.max_digit() - coef(q_hash, i, w));
    }
    let cksm = u16::try_from(sum << typ.ls()).unwrap_or(u16::MAX);
    let mut out = [0u8; N + 2];
    for (dst, src) in out.iter_mut().zip(q_hash.iter().chain(&cksm.to_be_bytes())) {
        *dst = *src;
    }
    out
}

/// `Q = H(I ‖ u32str(q) ‖ u16str(D_MESG) ‖ C ‖ message)`.
fn message_hash(id: &Identifier, q: u32, c: &Hash, message: &[u8]) -> Hash {
    hash_with(id, q, D_MESG, &[c, message])
}

/// A leaf's seed: the secret its one-time key derives from (RFC 8554
/// Appendix A `SEED`). Zeroized on drop, compared in constant time, never
/// printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct LeafSeed([u8; N]);

impl LeafSeed {
    /// A seed from its bytes.
    pub fn from_bytes(bytes: [u8; N]) -> Self {
        Self(bytes)
    }

    /// A fresh seed.
    pub fn random<R: rand_core::RngCore + rand_core::CryptoRng>(rng: &mut R) -> Self {
        let mut seed = Self([0u8; N]);
        rng.fill_bytes(&mut seed.0);
        seed
    }

    /// The randomizer `C` of the one-time signature of `message` by leaf
    /// `q` with this seed: `SHA-256("keyquorum-lms-v1/C" ‖ SEED ‖ u32 q ‖
    /// message)`. RFC 8554 §4.5 asks for `C` unpredictable to whoever
    /// chooses the message: derived from the secret seed it is (as XMSS
    /// derives its randomizer), and a retried signature of the same message
    /// is the same signature, never a second one by the same leaf.
    pub fn randomizer(&self, q: u32, message: &[u8]) -> Hash {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"keyquorum-lms-v1/C");
        h.update(self.0);
        h.update(q.to_be_bytes());
        h.update(message);
        h.finalize().into()
    }

    /// The bytes (to share or seal them).
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl fmt::Debug for LeafSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeafSeed(<redacted>)")
    }
}

impl ConstantTimeEq for LeafSeed {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for LeafSeed {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for LeafSeed {}

/// The one-time private key of leaf `q` of tree `I` (RFC 8554 §4.2 with
/// Appendix A): `x[i] = H(I ‖ u32str(q) ‖ u16str(i) ‖ u8str(0xff) ‖ SEED)`.
/// Signing consumes it: one key, one signature.
pub struct OtsPrivateKey {
    typ: LmotsType,
    id: Identifier,
    q: u32,
    x: Zeroizing<Vec<Hash>>,
}

impl fmt::Debug for OtsPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtsPrivateKey")
            .field("typ", &self.typ)
            .field("q", &self.q)
            .finish_non_exhaustive()
    }
}

impl OtsPrivateKey {
    /// The leaf this key belongs to.
    pub fn leaf(&self) -> u32 {
        self.q
    }

    /// The tree this key belongs to.
    pub fn tree(&self) -> &Identifier {
        &self.id
    }

    /// The key's parameter set.
    pub fn typ(&self) -> LmotsType {
        self.typ
    }

    /// Derive leaf `q`'s key from `seed`.
    pub fn derive(typ: LmotsType, id: &Identifier, q: u32, seed: &LeafSeed) -> Self {
        let x = (0..typ.p())
            .map(|i| chain_step(id, q, i as u16, 0xff, &seed.0))
            .collect();
        Self {
            typ,
            id: *id,
            q,
            x: Zeroizing::new(x),
        }
    }

    /// `K`, the hash of the one-time public key (RFC 8554 §4.3), which the
    /// LMS leaf commits to.
    pub fn public_key_hash(&self) -> Hash {
        // (The public key: nothing to erase.)
        let ys: Vec<Hash> = self
            .x
            .iter()
            .enumerate()
            .map(|(i, x)| chain(&self.id, self.q, i as u16, x, 0, self.typ.max_digit()))
            .collect();
        public_hash(&self.id, self.q, &ys)
    }

    /// Sign `message` with randomizer `c` (RFC 8554 §4.5: `C` must be
    /// unpredictable, n random bytes): `u32str(type) ‖ C ‖ y[0..p]`.
    pub fn sign(self, message: &[u8], c: &Hash) -> Vec<u8> {
        let q_hash = message_hash(&self.id, self.q, c, message);
        let digits = digits(self.typ, &q_hash);
        let mut out = Vec::with_capacity(self.typ.signature_len());
        out.extend_from_slice(&self.typ.code().to_be_bytes());
        out.extend_from_slice(c);
        for (i, x) in self.x.iter().enumerate() {
            let a = coef(&digits, i, self.typ.w());
            out.extend_from_slice(&chain(&self.id, self.q, i as u16, x, 0, a));
        }
        out
    }
}

/// `K` of leaf `q`'s one-time key derived from `seed` (as
/// [`OtsPrivateKey::derive`] then [`OtsPrivateKey::public_key_hash`], in one
/// pass: each private element is derived, run up its chain and dropped, so
/// key generation holds no private key).
pub fn leaf_public_key_hash(typ: LmotsType, id: &Identifier, q: u32, seed: &LeafSeed) -> Hash {
    // Every chain takes the same steps: 0xff (the private element's
    // derivation from the seed), then digit positions 0 .. 2^w − 1.
    let mut steps = [0u8; 256];
    let js = core::iter::once(0xff).chain(0..typ.max_digit());
    for (s, j) in steps.iter_mut().zip(js) {
        *s = j;
    }
    let (js, _) = steps.split_at(usize::from(typ.max_digit()) + 1);
    // Chains two at a time (see `chains_together`) in one pair of hashers
    // for the whole leaf; an odd count (every `p` is 34 or more) ends with
    // three together. Each chain's end goes straight into the public key's
    // hash.
    let p = typ.p();
    let pairs = if p % 2 == 1 { p.saturating_sub(3) } else { p };
    let mut lanes = [ChainHasher::new(id, q, 0), ChainHasher::new(id, q, 1)];
    let mut k = Sha256::new();
    k.update(id);
    k.update(q.to_be_bytes());
    k.update(D_PBLC.to_be_bytes());
    for i in (0..pairs).step_by(2) {
        for y in run_together(&mut lanes, i as u16, &seed.0, js) {
            k.update(y);
        }
    }
    if pairs < p {
        for y in chains_together::<3>(id, q, pairs as u16, &seed.0, js) {
            k.update(y);
        }
    }
    k.finalize().into()
}

/// Apply chain steps `from..to` to `start` (digit positions `j`).
fn chain(id: &Identifier, q: u32, i: u16, start: &Hash, from: u8, to: u8) -> Hash {
    let mut tmp = *start;
    ChainHasher::new(id, q, i).run(from..to, &mut tmp);
    tmp
}

/// `K = H(I ‖ u32str(q) ‖ u16str(D_PBLC) ‖ y[0] ‖ … ‖ y[p−1])`.
fn public_hash(id: &Identifier, q: u32, ys: &[Hash]) -> Hash {
    let parts: Vec<&[u8]> = ys.iter().map(|y| y.as_slice()).collect();
    hash_with(id, q, D_PBLC, &parts)
}

/// The candidate public key hash `Kc` a signature implies for `message`
/// (RFC 8554 §4.6, Algorithm 4b): the signature is valid for leaf `q` iff
/// this equals the leaf's `K`. Refuses a signature of another type or
/// length.
pub fn candidate_public_key(
    expected: LmotsType,
    id: &Identifier,
    q: u32,
    message: &[u8],
    signature: &[u8],
) -> Result<Hash, Error> {
    let (code, rest) = take_u32(signature).ok_or(Error::Decode(DecodeError::Truncated))?;
    if LmotsType::decode(code)? != expected {
        return Err(Error::InvalidSignature);
    }
    exact_len(signature, expected.signature_len())?;
    let (c, mut rest) = take_hash(rest).ok_or(Error::Decode(DecodeError::Truncated))?;
    let q_hash = message_hash(id, q, &c, message);
    let digits = digits(expected, &q_hash);
    let mut zs = Vec::with_capacity(expected.p());
    for i in 0..expected.p() {
        let (y, tail) = take_hash(rest).ok_or(Error::Decode(DecodeError::Truncated))?;
        rest = tail;
        let a = coef(&digits, i, expected.w());
        zs.push(chain(id, q, i as u16, &y, a, expected.max_digit()));
    }
    Ok(public_hash(id, q, &zs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coef_reads_digits_as_rfc_8554_section_3_1_3_shows() {
        // The RFC's example: S = 0x1234, w = 1, 2, 4, 8.
        let s = [0x12u8, 0x34];
        let w1: Vec<u8> = (0..16).map(|i| coef(&s, i, 1)).collect();
        assert_eq!(w1, [0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0]);
        let w2: Vec<u8> = (0..8).map(|i| coef(&s, i, 2)).collect();
        assert_eq!(w2, [0, 1, 0, 2, 0, 3, 1, 0]);
        let w4: Vec<u8> = (0..4).map(|i| coef(&s, i, 4)).collect();
        assert_eq!(w4, [1, 2, 3, 4]);
        assert_eq!([coef(&s, 0, 8), coef(&s, 1, 8)], [0x12, 0x34]);
    }

    #[test]
    fn the_checksum_takes_its_extremes_as_rfc_8554_section_4_4_computes() {
        // All digits 0: the largest checksum, (n·8/w)·(2^w − 1) << ls.
        for (typ, want) in [
            (LmotsType::W1, 256u32 << 7),
            (LmotsType::W2, (128 * 3) << 6),
            (LmotsType::W4, (64 * 15) << 4),
            (LmotsType::W8, 32 * 255),
        ] {
            let d = digits(typ, &[0u8; N]);
            assert_eq!(
                u32::from(u16::from_be_bytes([d[N], d[N + 1]])),
                want,
                "{typ:?}"
            );
            // All digits at the maximum: checksum 0.
            let d = digits(typ, &[0xffu8; N]);
            assert_eq!([d[N], d[N + 1]], [0, 0], "{typ:?}");
        }
    }

    #[test]
    fn a_signature_implies_its_leafs_key_and_nothing_else_does() {
        let id = [3u8; 16];
        let seed = LeafSeed::from_bytes([9u8; 32]);
        for typ in LmotsType::ALL {
            let k = OtsPrivateKey::derive(typ, &id, 5, &seed).public_key_hash();
            assert_eq!(leaf_public_key_hash(typ, &id, 5, &seed), k);
            let sig = OtsPrivateKey::derive(typ, &id, 5, &seed).sign(b"msg", &[1u8; 32]);
            assert_eq!(sig.len(), typ.signature_len());
            assert_eq!(candidate_public_key(typ, &id, 5, b"msg", &sig).unwrap(), k);
            // Another message, leaf, tree or an altered signature: another key.
            assert_ne!(candidate_public_key(typ, &id, 5, b"msh", &sig).unwrap(), k);
            assert_ne!(candidate_public_key(typ, &id, 6, b"msg", &sig).unwrap(), k);
            assert_ne!(
                candidate_public_key(typ, &[4u8; 16], 5, b"msg", &sig).unwrap(),
                k
            );
            let mut bad = sig.clone();
            bad[40] ^= 1;
            assert_ne!(candidate_public_key(typ, &id, 5, b"msg", &bad).unwrap(), k);
            // Wrong type or length: refused.
            let other = LmotsType::ALL.into_iter().find(|t| *t != typ).unwrap();
            assert!(candidate_public_key(other, &id, 5, b"msg", &sig).is_err());
            assert!(candidate_public_key(typ, &id, 5, b"msg", &sig[..sig.len() - 1]).is_err());
            assert!(candidate_public_key(typ, &id, 5, b"msg", &[]).is_err());
        }
        assert_eq!(format!("{seed:?}"), "LeafSeed(<redacted>)");
    }
}
