//! A verifier's memo of signatures it has verified.
//!
//! A participant often checks the same client signature more than once: the
//! entry node checks a request when it arrives and again as one of the
//! signers it hands the request to, and a participant may check before and
//! after catching up with the registry. An Ed25519 verification costs about
//! 50 µs; the memo costs a SHA-256 of the signature base.
//!
//! [`Verifications`] remembers, for each signature that verified, the
//! SHA-256 of the public key, the signature and the exact signature base.
//! Only the Ed25519 equation is memoised: every other check (freshness,
//! covered components, the key's registration and grant, the body digest)
//! runs every time. A hit needs all three inputs byte for byte, so it can
//! only stand for a verification of exactly those bytes that succeeded.
//! Bounded; the oldest entries go first; a miss verifies in full.
//!
//! Each verifier owns its memo (a node holds one): one node's verification
//! never stands for another's, also when several run in one process.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// Entries kept by default (32 bytes each, plus bookkeeping): a minute of
/// requests at a few hundred per second.
const DEFAULT_CAPACITY: usize = 1 << 15;

/// A verifier's memo of successful signature verifications.
#[derive(Debug)]
pub struct Verifications {
    inner: Mutex<Memo>,
}

#[derive(Debug)]
struct Memo {
    seen: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl Default for Verifications {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl Verifications {
    /// An empty memo of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Memo {
                seen: HashSet::new(),
                order: VecDeque::new(),
                capacity: capacity.max(1),
            }),
        }
    }

    /// `key.verify_strict(base, signature)`, answered from the memo when
    /// these exact bytes verified before.
    pub fn verify_strict(&self, key: &VerifyingKey, base: &[u8], signature: &Signature) -> bool {
        let mut h = Sha256::new();
        h.update(b"keyquorum httpsig memo v1\0");
        h.update(key.as_bytes());
        h.update(signature.to_bytes());
        h.update((base.len() as u64).to_be_bytes());
        h.update(base);
        let id: [u8; 32] = h.finalize().into();
        if self.inner.lock().is_ok_and(|m| m.seen.contains(&id)) {
            return true;
        }
        if key.verify_strict(base, signature).is_err() {
            return false;
        }
        if let Ok(mut m) = self.inner.lock() {
            if m.seen.insert(id) {
                m.order.push_back(id);
                while m.seen.len() > m.capacity {
                    match m.order.pop_front() {
                        Some(old) => {
                            m.seen.remove(&old);
                        }
                        None => break,
                    }
                }
            }
        }
        true
    }

    /// How many verifications it remembers.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.seen.len()).unwrap_or(0)
    }

    /// Whether it remembers none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    #[test]
    fn only_the_exact_bytes_that_verified_are_remembered() {
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let sig = sk.sign(b"base");
        let memo = Verifications::new(2);
        assert!(memo.verify_strict(&sk.verifying_key(), b"base", &sig));
        assert_eq!(memo.len(), 1);
        assert!(memo.verify_strict(&sk.verifying_key(), b"base", &sig));
        // Another base, another key, another signature: verified in full,
        // and refused.
        assert!(!memo.verify_strict(&sk.verifying_key(), b"basf", &sig));
        assert!(!memo.verify_strict(&other.verifying_key(), b"base", &sig));
        assert!(!memo.verify_strict(&sk.verifying_key(), b"base", &other.sign(b"base")));
        assert_eq!(memo.len(), 1);
        // Bounded: the oldest goes first.
        for m in [b"one".as_slice(), b"two", b"three"] {
            assert!(memo.verify_strict(&sk.verifying_key(), m, &sk.sign(m)));
        }
        assert_eq!(memo.len(), 2);
    }
}
