//! Plaintext recovery: the discrete log of `m·B` for `m` in `[0, 2^bits)`
//! by baby-step/giant-step (Shanks 1971).
//!
//! The table holds `m_baby = 2^⌈bits/2⌉` baby steps (at most `2^24`, 128
//! MiB, for a 48-bit bound; 512 KiB for the default 32) as sorted 8-byte
//! keys: the top 40 bits of a hash of `compress(2·j·B)` and `j` in the low
//! 24 bits. Doubling before compressing is what lets dalek compress a batch
//! with one field inversion (`double_and_compress_batch`); `2·Q` is a
//! bijection on a prime-order group, so nothing is lost. A lookup checks
//! every candidate `i·m_baby + j` by a scalar multiplication: a key
//! collision costs time, never a wrong answer; a value past the bound is
//! [`Error::BeyondBound`].

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;

use super::MAX_BOUND_BITS;
use crate::error::Error;

/// Baby steps (and giant steps) computed per batch compression.
const BATCH: usize = 1024;

/// Bits of `j` in a key.
const INDEX_BITS: u32 = 24;

/// A baby-step table for values below `2^bits`.
#[derive(Clone)]
pub struct DlogTable {
    bits: u8,
    baby: u64,
    keys: Vec<u64>,
    giant: RistrettoPoint,
}

impl core::fmt::Debug for DlogTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DlogTable(bits {}, {} baby steps)", self.bits, self.baby)
    }
}

impl DlogTable {
    /// Build the table for values below `2^bits` (1 ..= 48).
    pub fn new(bits: u8) -> Result<Self, Error> {
        if bits == 0 || bits > MAX_BOUND_BITS {
            return Err(Error::InvalidParameters("the bound is 1 to 48 bits"));
        }
        let baby_bits = u32::from(bits).div_ceil(2).min(INDEX_BITS);
        let baby = 1u64 << baby_bits;
        let mut keys = Vec::with_capacity(usize::try_from(baby).unwrap_or(0));
        let b = RISTRETTO_BASEPOINT_TABLE.basepoint();
        let mut p = RistrettoPoint::identity();
        let mut batch = Vec::with_capacity(BATCH);
        let mut j = 0u64;
        while j < baby {
            batch.clear();
            while batch.len() < BATCH && j + (batch.len() as u64) < baby {
                batch.push(p);
                p += b;
            }
            for (k, c) in RistrettoPoint::double_and_compress_batch(&batch)
                .iter()
                .enumerate()
            {
                keys.push(prefix(c.as_bytes()) | (j + k as u64));
            }
            j += batch.len() as u64;
        }
        keys.sort_unstable();
        let giant = &Scalar::from(baby) * RISTRETTO_BASEPOINT_TABLE;
        Ok(Self {
            bits,
            baby,
            keys,
            giant,
        })
    }

    /// The bound this table searches (bits).
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// `m` with `m·B = target` and `0 ≤ m < 2^bits`, or
    /// [`Error::BeyondBound`].
    pub fn solve(&self, target: &RistrettoPoint) -> Result<u64, Error> {
        let limit = 1u64 << self.bits;
        let giants = limit.div_ceil(self.baby);
        let mut i = 0u64;
        let mut q = *target;
        let mut batch = Vec::with_capacity(BATCH);
        while i < giants {
            batch.clear();
            while batch.len() < BATCH && i + (batch.len() as u64) < giants {
                batch.push(q);
                q -= self.giant;
            }
            for (k, c) in RistrettoPoint::double_and_compress_batch(&batch)
                .iter()
                .enumerate()
            {
                let step = i + k as u64;
                if let Some(m) = self.lookup(prefix(c.as_bytes()), step, target, limit) {
                    return Ok(m);
                }
            }
            i += batch.len() as u64;
        }
        Err(Error::BeyondBound { bits: self.bits })
    }

    /// Candidates `step·baby + j` for the key prefix `key`, checked.
    fn lookup(&self, key: u64, step: u64, target: &RistrettoPoint, limit: u64) -> Option<u64> {
        let start = self.keys.partition_point(|k| *k < key);
        self.keys
            .get(start..)?
            .iter()
            .take_while(|k| *k & !INDEX_MASK == key)
            .map(|k| step * self.baby + (k & INDEX_MASK))
            .find(|m| *m < limit && &Scalar::from(*m) * RISTRETTO_BASEPOINT_TABLE == *target)
    }
}

const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// The key prefix of a compressed point: 40 bits of its encoding (bytes
/// 8..16; byte 0 carries the encoding's sign bit), low 24 bits clear.
fn prefix(encoding: &[u8; 32]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&encoding[8..16]);
    u64::from_le_bytes(b) & !INDEX_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(v: u64) -> RistrettoPoint {
        &Scalar::from(v) * RISTRETTO_BASEPOINT_TABLE
    }

    #[test]
    fn every_value_of_a_small_bound_and_nothing_past_it() {
        let t = DlogTable::new(10).unwrap();
        for v in 0..1024 {
            assert_eq!(t.solve(&point(v)).unwrap(), v);
        }
        assert_eq!(t.solve(&point(1024)), Err(Error::BeyondBound { bits: 10 }));
        assert_eq!(t.solve(&-point(1)), Err(Error::BeyondBound { bits: 10 }));
    }

    #[test]
    fn odd_bounds_and_the_edges_of_32_bits() {
        let t = DlogTable::new(7).unwrap();
        assert_eq!(t.solve(&point(127)).unwrap(), 127);
        assert!(t.solve(&point(128)).is_err());
        let t = DlogTable::new(32).unwrap();
        for v in [0, 1, 65_535, 65_536, 1 << 31, u64::from(u32::MAX)] {
            assert_eq!(t.solve(&point(v)).unwrap(), v);
        }
        assert!(t.solve(&point(1 << 32)).is_err());
        assert!(DlogTable::new(0).is_err());
        assert!(DlogTable::new(49).is_err());
    }
}
