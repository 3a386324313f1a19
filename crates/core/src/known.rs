//! Element encodings a participant already knows to be valid, so that
//! decoding them again skips the expensive part of the check.
//!
//! Decoding an Ed25519 point from untrusted bytes costs a decompression and
//! a prime-order check, the check being a full scalar multiplication by the
//! group order (RFC 9591 §6.1 `DeserializeElement`; about 40 µs, as much as
//! a signature verification). On the signing path the same encodings come
//! back again and again to the same participant: a signer's own nonce
//! commitments inside the package the coordinator sends it, the
//! coordinator's own commitments, the verifying key stored with a key
//! share. Those encodings were produced by this participant from group
//! elements it holds, or decoded and checked by it before.
//!
//! [`KnownElements`] is a participant's bounded set of such encodings.
//! Inside [`KnownElements::scope`], every element [`crate::codec`] encodes,
//! and every element it decodes and checks in full, is added; an encoding in
//! the set decodes with the cheap part only (for Ed25519, the
//! decompression). The set is a pure memo of a deterministic check of the
//! exact bytes: an encoding enters it only after it passed the full check or
//! was produced from an element (every element in memory passed it or was
//! computed in the group), and a miss (never seen, or evicted) takes the full
//! check. Only suites where the skipped part costs more than a lookup use
//! it ([`crate::suite::Suite::decode_known`]).
//!
//! The set is per participant (each node owns one), never process-wide: in
//! a test or a benchmark that runs several nodes in one process, one node's
//! checks never stand for another's.

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use crate::suite::SuiteId;

/// How many encodings a set keeps by default (each about 100 bytes with
/// its bookkeeping): a few minutes of nonce commitments at a thousand
/// signatures per second.
pub const DEFAULT_CAPACITY: usize = 1 << 16;

/// A participant's set of element encodings known to be valid.
#[derive(Clone)]
pub struct KnownElements(Arc<Mutex<Known>>);

impl std::fmt::Debug for KnownElements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.0.lock().map(|k| k.set.len()).unwrap_or(0);
        f.debug_struct("KnownElements").field("len", &len).finish()
    }
}

struct Known {
    set: HashSet<(SuiteId, Box<[u8]>)>,
    /// Insertion order, oldest first, for eviction.
    order: VecDeque<(SuiteId, Box<[u8]>)>,
    capacity: usize,
}

thread_local! {
    /// The set of the scope running on this thread, if any.
    static CURRENT: RefCell<Option<KnownElements>> = const { RefCell::new(None) };
}

impl Default for KnownElements {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

/// Restores the previous scope's set when a scope ends (also on unwind).
struct Restore(Option<KnownElements>);

impl Drop for Restore {
    fn drop(&mut self) {
        let prev = self.0.take();
        let _ = CURRENT.try_with(|c| *c.borrow_mut() = prev);
    }
}

impl KnownElements {
    /// An empty set keeping at most `capacity` encodings (the oldest go
    /// first).
    pub fn new(capacity: usize) -> Self {
        Self(Arc::new(Mutex::new(Known {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        })))
    }

    /// Run `f` with this set consulted and fed by every element encoding
    /// and decoding [`crate::codec`] does on this thread. `f` is synchronous:
    /// the scope ends when it returns, on the thread it started on.
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let prev = CURRENT.with(|c| c.replace(Some(self.clone())));
        let _restore = Restore(prev);
        f()
    }

    /// How many encodings it holds.
    pub fn len(&self) -> usize {
        self.0.lock().map(|k| k.set.len()).unwrap_or(0)
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn contains(&self, suite: SuiteId, bytes: &[u8]) -> bool {
        let key = (suite, Box::<[u8]>::from(bytes));
        self.0.lock().is_ok_and(|k| k.set.contains(&key))
    }

    fn insert(&self, suite: SuiteId, bytes: &[u8]) {
        let Ok(mut k) = self.0.lock() else { return };
        let key = (suite, Box::<[u8]>::from(bytes));
        if k.set.contains(&key) {
            return;
        }
        while k.set.len() >= k.capacity {
            match k.order.pop_front() {
                Some(old) => {
                    k.set.remove(&old);
                }
                None => break,
            }
        }
        k.order.push_back(key.clone());
        k.set.insert(key);
    }
}

/// Whether the current scope's set holds `bytes` for `suite`.
pub(crate) fn is_known(suite: SuiteId, bytes: &[u8]) -> bool {
    CURRENT
        .try_with(|c| {
            c.borrow()
                .as_ref()
                .is_some_and(|k| k.contains(suite, bytes))
        })
        .unwrap_or(false)
}

/// Add `bytes` for `suite` to the current scope's set, if there is one.
pub(crate) fn remember(suite: SuiteId, bytes: &[u8]) {
    let _ = CURRENT.try_with(|c| {
        if let Some(k) = c.borrow().as_ref() {
            k.insert(suite, bytes);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_sees_only_its_own_set_and_ends_with_its_closure() {
        let a = KnownElements::new(4);
        let b = KnownElements::new(4);
        a.scope(|| remember(SuiteId::Ed25519, b"one"));
        assert!(a.scope(|| is_known(SuiteId::Ed25519, b"one")));
        assert!(!a.scope(|| is_known(SuiteId::Secp256k1Tr, b"one")));
        assert!(!b.scope(|| is_known(SuiteId::Ed25519, b"one")));
        // Outside any scope nothing is known and nothing is kept.
        assert!(!is_known(SuiteId::Ed25519, b"one"));
        remember(SuiteId::Ed25519, b"two");
        assert!(!a.scope(|| is_known(SuiteId::Ed25519, b"two")));
        // Nested scopes restore the outer one.
        a.scope(|| {
            b.scope(|| remember(SuiteId::Ed25519, b"three"));
            assert!(!is_known(SuiteId::Ed25519, b"three"));
        });
        assert!(b.scope(|| is_known(SuiteId::Ed25519, b"three")));
    }

    #[test]
    fn known_encodings_decode_to_the_same_points_and_bad_ones_never_get_in() {
        use crate::codec::{element_from_bytes, Writer};
        use crate::suite::Ed25519;
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use curve25519_dalek::Scalar;
        let k = KnownElements::default();
        let p = ED25519_BASEPOINT_POINT * Scalar::from(12345u64);
        // Encoding an element remembers it; decoding it again gives it back.
        let bytes = k.scope(|| {
            let mut w = Writer::new::<Ed25519>(0);
            w.element::<Ed25519>(&p);
            w.finish()
        });
        let enc = p.compress().to_bytes();
        assert!(bytes.ends_with(&enc));
        assert!(k.scope(|| is_known(SuiteId::Ed25519, &enc)));
        assert_eq!(k.scope(|| element_from_bytes::<Ed25519>(&enc)), Ok(p));
        // A point with a torsion component is refused, inside a scope as
        // outside, and is not remembered: it is refused again.
        let mixed = (p + EIGHT_TORSION[1]).compress().to_bytes();
        let small = EIGHT_TORSION[2].compress().to_bytes();
        for bad in [mixed, small] {
            assert!(k.scope(|| element_from_bytes::<Ed25519>(&bad)).is_err());
            assert!(!k.scope(|| is_known(SuiteId::Ed25519, &bad)));
            assert!(k.scope(|| element_from_bytes::<Ed25519>(&bad)).is_err());
        }
        // A point that passed the full check is remembered.
        let q = (ED25519_BASEPOINT_POINT * Scalar::from(99u64))
            .compress()
            .to_bytes();
        let fresh = KnownElements::default();
        assert!(fresh.scope(|| element_from_bytes::<Ed25519>(&q)).is_ok());
        assert!(fresh.scope(|| is_known(SuiteId::Ed25519, &q)));
    }

    #[test]
    fn the_oldest_encodings_go_first_when_it_is_full() {
        let k = KnownElements::new(2);
        k.scope(|| {
            remember(SuiteId::Ed25519, b"a");
            remember(SuiteId::Ed25519, b"b");
            remember(SuiteId::Ed25519, b"a");
            remember(SuiteId::Ed25519, b"c");
            assert!(!is_known(SuiteId::Ed25519, b"a"));
            assert!(is_known(SuiteId::Ed25519, b"b"));
            assert!(is_known(SuiteId::Ed25519, b"c"));
        });
        assert_eq!(k.len(), 2);
    }
}
