//! Proofs that go with an input: knowledge of the encryption randomness,
//! and each slot's value in `[0, 2^BITS)`.
//!
//! ## Byte layouts (all hashes as in the [module doc](super))
//!
//! **Knowledge** (`knowledge` policy), per slot `k` (64 bytes, slots
//! concatenated): `e ‖ z` where, for a random `w`,
//! `A = w·B`, `e = H("keyquorum-he-v1/knowledge" ‖ context ‖ u32 BE k ‖ c1 ‖
//! c2 ‖ A)`, `z = w + e·r`. Checked as `A' = z·B − e·c1`, then `e` equal to
//! the hash with `A'`.
//!
//! **Range** (`range:BITS` policy), per slot `k` (`BITS × 192` bytes, slots
//! concatenated), per bit `j = 0 .. BITS−1` (least significant first):
//! `d1_j ‖ d2_j ‖ e0_j ‖ e1_j ‖ z0_j ‖ z1_j` where `(d1_j, d2_j) = (r_j·B,
//! b_j·B + r_j·P)` encrypts the bit `b_j` and the slot's ciphertext must
//! equal `Σ_j 2^j·(d1_j, d2_j)` (so its `r = Σ 2^j·r_j`). The bit proof
//! is a disjunctive Chaum–Pedersen proof (CDS94) that `(d1, d2)` or
//! `(d1, d2 − B)` is a DLEQ pair for `(B, P)`:
//! - the verifier computes `a0 = z0·B − e0·d1`, `b0 = z0·P − e0·d2`,
//!   `a1 = z1·B − e1·d1`, `b1 = z1·P − e1·(d2 − B)`;
//! - and checks `e0 + e1 = H("keyquorum-he-v1/range" ‖ context ‖ u32 BE k ‖
//!   u8 BITS ‖ u8 j ‖ d1 ‖ d2 ‖ a0 ‖ b0 ‖ a1 ‖ b1)`.
//!
//! The prover of bit `b` simulates branch `1 − b` (random `e_{1−b}`,
//! `z_{1−b}`), commits `a_b = w·B`, `b_b = w·P`, hashes, and sets `e_b = e −
//! e_{1−b}`, `z_b = w + e_b·r_j`.

use core::fmt;
use core::str::FromStr;

use curve25519_dalek::constants::{RISTRETTO_BASEPOINT_POINT, RISTRETTO_BASEPOINT_TABLE};
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::VartimeMultiscalarMul;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use super::ciphertext::{encrypt_with, Ciphertext, Randomness};
use super::{hash_to_scalar, point, random_scalar, scalar, Context, MAX_BOUND_BITS};
use crate::error::{DecodeError, Error};

const KNOWLEDGE_LABEL: &[u8] = b"keyquorum-he-v1/knowledge";
const RANGE_LABEL: &[u8] = b"keyquorum-he-v1/range";

/// Bytes of a knowledge proof per slot.
pub const KNOWLEDGE_BYTES: usize = 64;
/// Bytes of a range proof per slot and bit.
pub const RANGE_BIT_BYTES: usize = 192;

/// What a session asks of every input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputPolicy {
    /// No proof: a submitter can copy another's ciphertext or encrypt any
    /// value mod ℓ.
    None,
    /// A proof of knowledge of `r`, bound to the session and submitter.
    Knowledge,
    /// Every slot in `[0, 2^bits)` (and knowledge of `r`), bound likewise.
    Range(u8),
}

impl InputPolicy {
    /// How many bytes the proof of a `slots`-slot input has.
    pub fn proof_len(self, slots: usize) -> usize {
        match self {
            InputPolicy::None => 0,
            InputPolicy::Knowledge => slots * KNOWLEDGE_BYTES,
            InputPolicy::Range(bits) => slots * usize::from(bits) * RANGE_BIT_BYTES,
        }
    }

    /// Check `bits` of a range policy: 1 ..= 48.
    fn range(bits: u8) -> Result<Self, Error> {
        if bits == 0 || bits > MAX_BOUND_BITS {
            return Err(Error::InvalidParameters("range bits must be 1 to 48"));
        }
        Ok(InputPolicy::Range(bits))
    }

    /// Make `values` into a ciphertext with the proof this policy asks.
    pub fn encrypt<R: RngCore + CryptoRng>(
        self,
        context: &Context,
        values: &[u64],
        rng: &mut R,
    ) -> Result<(Ciphertext, Vec<u8>), Error> {
        match self {
            InputPolicy::None => {
                let (ct, _) = Ciphertext::encrypt(&context.public_key, values, rng)?;
                Ok((ct, Vec::new()))
            }
            InputPolicy::Knowledge => {
                let (ct, r) = Ciphertext::encrypt(&context.public_key, values, rng)?;
                let proof = KnowledgeProof::prove(context, &ct, &r, rng)?;
                Ok((ct, proof.to_bytes()))
            }
            InputPolicy::Range(bits) => {
                let (ct, proof) = RangeProof::prove(context, values, bits, rng)?;
                Ok((ct, proof.to_bytes()))
            }
        }
    }

    /// Check `proof` (bytes from outside) for `input` under this policy.
    pub fn verify(self, context: &Context, input: &Ciphertext, proof: &[u8]) -> Result<(), Error> {
        match InputProof::from_bytes(self, proof, input.len())? {
            InputProof::None => Ok(()),
            InputProof::Knowledge(p) => p.verify(context, input),
            InputProof::Range(p) => p.verify(context, input),
        }
    }
}

impl fmt::Display for InputPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputPolicy::None => f.write_str("none"),
            InputPolicy::Knowledge => f.write_str("knowledge"),
            InputPolicy::Range(b) => write!(f, "range:{b}"),
        }
    }
}

impl FromStr for InputPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "none" => Ok(InputPolicy::None),
            "knowledge" => Ok(InputPolicy::Knowledge),
            _ => match s.strip_prefix("range:").map(str::parse::<u8>) {
                Some(Ok(bits)) => InputPolicy::range(bits),
                _ => Err(Error::InvalidParameters(
                    "input policy is none, knowledge or range:BITS",
                )),
            },
        }
    }
}

/// A decoded proof of one of the policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputProof {
    /// No proof (empty bytes).
    None,
    /// See [`KnowledgeProof`].
    Knowledge(KnowledgeProof),
    /// See [`RangeProof`].
    Range(RangeProof),
}

impl InputProof {
    /// Decode a proof for a `slots`-slot input under `policy`.
    pub fn from_bytes(policy: InputPolicy, bytes: &[u8], slots: usize) -> Result<Self, Error> {
        let want = policy.proof_len(slots);
        if bytes.len() != want {
            return Err(Error::InvalidProof(match policy {
                InputPolicy::None => "this session takes inputs without a proof",
                _ => "the proof has the wrong length for the session's policy and slots",
            }));
        }
        Ok(match policy {
            InputPolicy::None => InputProof::None,
            InputPolicy::Knowledge => InputProof::Knowledge(KnowledgeProof::from_bytes(bytes)?),
            InputPolicy::Range(bits) => {
                InputProof::Range(RangeProof::from_bytes(bytes, bits, slots)?)
            }
        })
    }
}

/// Schnorr proofs of knowledge of each slot's `r` (layout in the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnowledgeProof {
    slots: Vec<(Scalar, Scalar)>,
}

impl KnowledgeProof {
    /// Prove knowledge of `randomness` for `input`.
    pub fn prove<R: RngCore + CryptoRng>(
        context: &Context,
        input: &Ciphertext,
        randomness: &Randomness,
        rng: &mut R,
    ) -> Result<Self, Error> {
        if randomness.0.len() != input.len() {
            return Err(Error::Misuse("randomness of another ciphertext"));
        }
        let ctx = context.bytes()?;
        let mut slots = Vec::with_capacity(input.len());
        for (k, ((c1, c2), r)) in input.slots().iter().zip(&randomness.0).enumerate() {
            let w = Zeroizing::new(random_scalar(rng));
            let a = &*w * RISTRETTO_BASEPOINT_TABLE;
            let e = knowledge_challenge(&ctx, k, c1, c2, &a);
            slots.push((e, *w + e * r));
        }
        Ok(Self { slots })
    }

    /// Check it for `input` in `context`.
    pub fn verify(&self, context: &Context, input: &Ciphertext) -> Result<(), Error> {
        if self.slots.len() != input.len() {
            return Err(Error::InvalidProof(
                "the proof covers another number of slots",
            ));
        }
        let ctx = context.bytes()?;
        for (k, ((c1, c2), (e, z))) in input.slots().iter().zip(&self.slots).enumerate() {
            let a = RistrettoPoint::vartime_double_scalar_mul_basepoint(&-e, c1, z);
            if knowledge_challenge(&ctx, k, c1, c2, &a) != *e {
                return Err(Error::InvalidProof("a proof of knowledge does not verify"));
            }
        }
        Ok(())
    }

    /// `e ‖ z` per slot.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.slots.len() * KNOWLEDGE_BYTES);
        for (e, z) in &self.slots {
            out.extend_from_slice(e.as_bytes());
            out.extend_from_slice(z.as_bytes());
        }
        out
    }

    /// Decode (canonical scalars only).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(KNOWLEDGE_BYTES) {
            return Err(DecodeError::Truncated);
        }
        let slots = bytes
            .chunks_exact(KNOWLEDGE_BYTES)
            .map(|c| {
                let (e, z) = c.split_at(32);
                Ok((scalar(e)?, scalar(z)?))
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(Self { slots })
    }
}

fn knowledge_challenge(
    ctx: &[u8],
    slot: usize,
    c1: &RistrettoPoint,
    c2: &RistrettoPoint,
    a: &RistrettoPoint,
) -> Scalar {
    hash_to_scalar(&[
        KNOWLEDGE_LABEL,
        ctx,
        &slot_index(slot),
        c1.compress().as_bytes(),
        c2.compress().as_bytes(),
        a.compress().as_bytes(),
    ])
}

fn slot_index(slot: usize) -> [u8; 4] {
    // Slots are at most MAX_SLOTS: always fits.
    u32::try_from(slot).unwrap_or(u32::MAX).to_be_bytes()
}

/// One bit: its ciphertext and the disjunctive proof.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BitProof {
    d1: RistrettoPoint,
    d2: RistrettoPoint,
    e0: Scalar,
    e1: Scalar,
    z0: Scalar,
    z1: Scalar,
}

/// Per slot, bit ciphertexts with CDS94 proofs that each is 0 or 1
/// (layout in the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeProof {
    bits: u8,
    slots: Vec<Vec<BitProof>>,
}

impl RangeProof {
    /// Encrypt `values`, each below `2^bits`, and prove it.
    pub fn prove<R: RngCore + CryptoRng>(
        context: &Context,
        values: &[u64],
        bits: u8,
        rng: &mut R,
    ) -> Result<(Ciphertext, Self), Error> {
        InputPolicy::range(bits)?;
        if values.is_empty() || values.len() > super::MAX_SLOTS {
            return Err(Error::InvalidParameters("a ciphertext has 1 to 256 slots"));
        }
        if values.iter().any(|v| bits < 64 && *v >> bits != 0) {
            return Err(Error::InvalidParameters(
                "a value is out of the proof's range",
            ));
        }
        let ctx = context.bytes()?;
        let p = context.public_key;
        let mut slots = Vec::with_capacity(values.len());
        let mut cts = Vec::with_capacity(values.len());
        for (k, v) in values.iter().enumerate() {
            let mut proofs = Vec::with_capacity(usize::from(bits));
            let mut sum = (RistrettoPoint::default(), RistrettoPoint::default());
            let mut weight = Scalar::ONE;
            for j in 0..bits {
                let bit = (v >> j) & 1 == 1;
                let r = Zeroizing::new(random_scalar(rng));
                let (d1, d2) = encrypt_with(&p, &Scalar::from(u64::from(bit)), &r);
                let proof = prove_bit(&ctx, k, bits, j, &p, d1, d2, bit, &r, rng);
                sum.0 += weight * d1;
                sum.1 += weight * d2;
                weight += weight;
                proofs.push(proof);
            }
            cts.push(sum);
            slots.push(proofs);
        }
        Ok((Ciphertext::from_slots(cts), Self { bits, slots }))
    }

    /// Check it for `input` in `context`.
    pub fn verify(&self, context: &Context, input: &Ciphertext) -> Result<(), Error> {
        if self.slots.len() != input.len() {
            return Err(Error::InvalidProof(
                "the proof covers another number of slots",
            ));
        }
        let ctx = context.bytes()?;
        let p = context.public_key;
        let b = RISTRETTO_BASEPOINT_POINT;
        for (k, ((c1, c2), proofs)) in input.slots().iter().zip(&self.slots).enumerate() {
            let mut weights = Vec::with_capacity(proofs.len());
            let mut weight = Scalar::ONE;
            for (j, bp) in (0u8..).zip(proofs) {
                let a0 =
                    RistrettoPoint::vartime_double_scalar_mul_basepoint(&-bp.e0, &bp.d1, &bp.z0);
                let b0 = RistrettoPoint::vartime_multiscalar_mul([bp.z0, -bp.e0], [p, bp.d2]);
                let a1 =
                    RistrettoPoint::vartime_double_scalar_mul_basepoint(&-bp.e1, &bp.d1, &bp.z1);
                let b1 = RistrettoPoint::vartime_multiscalar_mul([bp.z1, -bp.e1], [p, bp.d2 - b]);
                let e = bit_challenge(&ctx, k, self.bits, j, &bp.d1, &bp.d2, [&a0, &b0, &a1, &b1]);
                if bp.e0 + bp.e1 != e {
                    return Err(Error::InvalidProof(
                        "a bit of a range proof does not verify",
                    ));
                }
                weights.push(weight);
                weight += weight;
            }
            let s1 = RistrettoPoint::vartime_multiscalar_mul(&weights, proofs.iter().map(|x| x.d1));
            let s2 = RistrettoPoint::vartime_multiscalar_mul(&weights, proofs.iter().map(|x| x.d2));
            if s1 != *c1 || s2 != *c2 {
                return Err(Error::InvalidProof(
                    "the ciphertext is not the sum of the range proof's bits",
                ));
            }
        }
        Ok(())
    }

    /// Per slot, per bit: `d1 ‖ d2 ‖ e0 ‖ e1 ‖ z0 ‖ z1`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.slots.len() * usize::from(self.bits) * RANGE_BIT_BYTES);
        for bp in self.slots.iter().flatten() {
            out.extend_from_slice(bp.d1.compress().as_bytes());
            out.extend_from_slice(bp.d2.compress().as_bytes());
            for s in [&bp.e0, &bp.e1, &bp.z0, &bp.z1] {
                out.extend_from_slice(s.as_bytes());
            }
        }
        out
    }

    /// Decode a `bits`-bit proof of `slots` slots.
    pub fn from_bytes(bytes: &[u8], bits: u8, slots: usize) -> Result<Self, DecodeError> {
        let per_slot = usize::from(bits) * RANGE_BIT_BYTES;
        if bits == 0 || bytes.len() != slots * per_slot {
            return Err(DecodeError::Truncated);
        }
        let slots = bytes
            .chunks_exact(per_slot)
            .map(|slot| {
                slot.chunks_exact(RANGE_BIT_BYTES)
                    .map(|c| {
                        let f =
                            |i: usize| c.get(i * 32..(i + 1) * 32).ok_or(DecodeError::Truncated);
                        Ok(BitProof {
                            d1: point(f(0)?)?,
                            d2: point(f(1)?)?,
                            e0: scalar(f(2)?)?,
                            e1: scalar(f(3)?)?,
                            z0: scalar(f(4)?)?,
                            z1: scalar(f(5)?)?,
                        })
                    })
                    .collect::<Result<Vec<_>, DecodeError>>()
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { bits, slots })
    }
}

#[allow(clippy::too_many_arguments, reason = "one bit's statement and witness")]
fn prove_bit<R: RngCore + CryptoRng>(
    ctx: &[u8],
    slot: usize,
    bits: u8,
    j: u8,
    p: &RistrettoPoint,
    d1: RistrettoPoint,
    d2: RistrettoPoint,
    bit: bool,
    r: &Scalar,
    rng: &mut R,
) -> BitProof {
    let b = RISTRETTO_BASEPOINT_POINT;
    // The other branch is simulated: its challenge and response are random.
    let e_sim = random_scalar(rng);
    let z_sim = random_scalar(rng);
    let w = Zeroizing::new(random_scalar(rng));
    let real = (&*w * RISTRETTO_BASEPOINT_TABLE, *w * p);
    let sim_target = if bit { d2 } else { d2 - b };
    let sim = (
        &z_sim * RISTRETTO_BASEPOINT_TABLE - e_sim * d1,
        z_sim * p - e_sim * sim_target,
    );
    let (c0, c1) = if bit { (sim, real) } else { (real, sim) };
    let e = bit_challenge(ctx, slot, bits, j, &d1, &d2, [&c0.0, &c0.1, &c1.0, &c1.1]);
    let e_real = e - e_sim;
    let z_real = *w + e_real * r;
    if bit {
        BitProof {
            d1,
            d2,
            e0: e_sim,
            e1: e_real,
            z0: z_sim,
            z1: z_real,
        }
    } else {
        BitProof {
            d1,
            d2,
            e0: e_real,
            e1: e_sim,
            z0: z_real,
            z1: z_sim,
        }
    }
}

fn bit_challenge(
    ctx: &[u8],
    slot: usize,
    bits: u8,
    j: u8,
    d1: &RistrettoPoint,
    d2: &RistrettoPoint,
    commitments: [&RistrettoPoint; 4],
) -> Scalar {
    let [a0, b0, a1, b1] = commitments.map(|c| c.compress().to_bytes());
    hash_to_scalar(&[
        RANGE_LABEL,
        ctx,
        &slot_index(slot),
        &[bits, j],
        d1.compress().as_bytes(),
        d2.compress().as_bytes(),
        &a0,
        &b0,
        &a1,
        &b1,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn context(rng: &mut ChaCha20Rng, who: &str) -> (Scalar, Context) {
        let s = random_scalar(rng);
        let ctx = Context {
            session: [7; 32],
            public_key: &s * RISTRETTO_BASEPOINT_TABLE,
            submitter: who.into(),
        };
        (s, ctx)
    }

    #[test]
    fn policies_parse_and_print() {
        for s in ["none", "knowledge", "range:1", "range:32", "range:48"] {
            assert_eq!(s.parse::<InputPolicy>().unwrap().to_string(), s);
        }
        for s in ["", "range:0", "range:49", "range:", "range:x", "Knowledge"] {
            assert!(s.parse::<InputPolicy>().is_err(), "{s}");
        }
    }

    #[test]
    fn knowledge_proofs_bind_the_ciphertext_the_session_and_the_submitter() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let (_, alice) = context(&mut rng, "alice");
        let (ct, proof) = InputPolicy::Knowledge
            .encrypt(&alice, &[3, 4], &mut rng)
            .unwrap();
        assert_eq!(proof.len(), 128);
        InputPolicy::Knowledge.verify(&alice, &ct, &proof).unwrap();
        // Copied into bob's submission: refused.
        let bob = Context {
            submitter: "bob".into(),
            ..alice.clone()
        };
        assert!(InputPolicy::Knowledge.verify(&bob, &ct, &proof).is_err());
        // Into another session: refused.
        let other = Context {
            session: [8; 32],
            ..alice.clone()
        };
        assert!(InputPolicy::Knowledge.verify(&other, &ct, &proof).is_err());
        // Another ciphertext, or any flipped bit of the proof: refused.
        let (ct2, _) = InputPolicy::None
            .encrypt(&alice, &[3, 4], &mut rng)
            .unwrap();
        assert!(InputPolicy::Knowledge.verify(&alice, &ct2, &proof).is_err());
        for i in [0, 31, 32, 64, 127] {
            let mut bad = proof.clone();
            bad[i] ^= 1;
            assert!(
                InputPolicy::Knowledge.verify(&alice, &ct, &bad).is_err(),
                "byte {i}"
            );
        }
        // Wrong lengths and policies.
        assert!(InputPolicy::Knowledge
            .verify(&alice, &ct, &proof[..64])
            .is_err());
        assert!(InputPolicy::None.verify(&alice, &ct, &proof).is_err());
        InputPolicy::None.verify(&alice, &ct, &[]).unwrap();
    }

    #[test]
    fn range_proofs_accept_every_value_in_range_and_nothing_else() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let (s, ctx) = context(&mut rng, "alice");
        let policy = InputPolicy::Range(4);
        for v in 0..16u64 {
            let (ct, proof) = policy.encrypt(&ctx, &[v, 15 - v], &mut rng).unwrap();
            assert_eq!(proof.len(), 2 * 4 * RANGE_BIT_BYTES);
            policy.verify(&ctx, &ct, &proof).unwrap();
            let pts = ct.decrypt_points(&s);
            assert_eq!(pts[0], &Scalar::from(v) * RISTRETTO_BASEPOINT_TABLE);
        }
        assert!(policy.encrypt(&ctx, &[16], &mut rng).is_err());
        // A proof for 4 bits does not pass as a proof for 5, nor for
        // another submitter, nor for a ciphertext that is not the bits' sum.
        let (ct, proof) = policy.encrypt(&ctx, &[9], &mut rng).unwrap();
        assert!(InputPolicy::Range(5).verify(&ctx, &ct, &proof).is_err());
        let bob = Context {
            submitter: "bob".into(),
            ..ctx.clone()
        };
        assert!(policy.verify(&bob, &ct, &proof).is_err());
        let (other, _) = Ciphertext::encrypt(&ctx.public_key, &[9], &mut rng).unwrap();
        assert!(policy.verify(&ctx, &other, &proof).is_err());
        for i in [0, 40, 64, 100, 130, 170, 191, 700] {
            let mut bad = proof.clone();
            bad[i] ^= 1;
            assert!(policy.verify(&ctx, &ct, &bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn a_bit_that_is_two_cannot_be_proved() {
        // Forge: encrypt 2 as a "bit" and run the prover as if it were 1:
        // the real branch's equation does not hold, so verification fails.
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let (_, ctx) = context(&mut rng, "mallory");
        let ctxb = ctx.bytes().unwrap();
        let r = random_scalar(&mut rng);
        let (d1, d2) = encrypt_with(&ctx.public_key, &Scalar::from(2u64), &r);
        let proof = prove_bit(&ctxb, 0, 1, 0, &ctx.public_key, d1, d2, true, &r, &mut rng);
        let input = Ciphertext::from_slots(vec![(d1, d2)]);
        let rp = RangeProof {
            bits: 1,
            slots: vec![vec![proof]],
        };
        assert!(rp.verify(&ctx, &input).is_err());
    }
}
