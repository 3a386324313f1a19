//! OS randomness drawn in bulk for key generation, which takes 32–64
//! random bytes per leaf (a leaf's secret, its Shamir coefficients): one
//! `getrandom` call each was 1.5% of a whole build's CPU.

use rand_core::{CryptoRng, OsRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

/// Bytes fetched from the OS at a time.
const POOL: usize = 16 * 1024;

/// The OS's random bytes, fetched [`POOL`] at a time and handed out in
/// order. Every byte is handed out once: it is zeroized in the pool as it
/// leaves, and whatever is left is zeroized on drop, so the pool never
/// holds a byte that became a secret.
pub(crate) struct OsPool {
    buf: Zeroizing<Vec<u8>>,
    /// Bytes of `buf` handed out (zeroed) so far.
    used: usize,
}

impl OsPool {
    pub(crate) fn new() -> Self {
        Self {
            buf: Zeroizing::new(vec![0u8; POOL]),
            used: POOL,
        }
    }
}

impl RngCore for OsPool {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if self.try_fill_bytes(dest).is_err() {
            // The OS's own call, which fails as `OsRng` does: no
            // randomness, no key.
            OsRng.fill_bytes(dest);
        }
    }

    fn try_fill_bytes(&mut self, mut dest: &mut [u8]) -> Result<(), rand_core::Error> {
        while !dest.is_empty() {
            if self.used == self.buf.len() {
                OsRng.try_fill_bytes(&mut self.buf)?;
                self.used = 0;
            }
            let take = dest.len().min(self.buf.len() - self.used);
            let (now, rest) = dest.split_at_mut(take);
            if let Some(src) = self.buf.get_mut(self.used..self.used + take) {
                now.copy_from_slice(src);
                src.zeroize();
            }
            self.used += take;
            dest = rest;
        }
        Ok(())
    }
}

impl std::fmt::Debug for OsPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OsPool(<redacted>)")
    }
}

/// The OS's randomness, buffered: as good as [`OsRng`].
impl CryptoRng for OsPool {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draws of every size (none, small, across a refill, larger than the
    /// pool) come out full of fresh bytes, and a handed-out byte is gone
    /// from the pool.
    #[test]
    fn every_byte_is_handed_out_once_and_erased() {
        let mut pool = OsPool::new();
        let mut seen = std::collections::HashSet::new();
        for size in [0usize, 1, 32, 64, POOL - 100, 300, 3 * POOL + 7] {
            let mut out = vec![0u8; size];
            pool.fill_bytes(&mut out);
            // Every 32 bytes of every draw fresh: all zero, or a repeat,
            // has probability 2^-256 each.
            for chunk in out.chunks_exact(32) {
                assert!(chunk.iter().any(|b| *b != 0), "size {size}: zeros");
                assert!(seen.insert(chunk.to_vec()), "size {size}: a repeat");
            }
            assert!(
                pool.buf[..pool.used].iter().all(|b| *b == 0),
                "handed-out bytes left in the pool"
            );
        }
        // The rest of the pool is the next draw's: fresh bytes, kept.
        assert!(pool.buf[pool.used..].iter().any(|b| *b != 0));
    }
}
