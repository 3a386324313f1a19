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
//! Inside [`KnownElements::scope`], every element [`crate::codec`] decodes
//! and checks in full is added; inside [`KnownElements::producing`] also
//! every element it encodes, for code that encodes only elements it
//! computed in the group itself (a signer's fresh nonce commitments). An
//! encoding in the set decodes with the cheap part only (for Ed25519, the
//! decompression). The set is a pure memo of a deterministic check of the
//! exact bytes: an encoding enters it only after it passed the full check,
//! or as the encoding of an element computed as a multiple of the
//! generator; a miss (never seen, or evicted) takes the full check. Only
//! suites where the skipped part costs more than a lookup use it
//! ([`crate::suite::Suite::decode_known`]).
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

/// Longest encoding kept (a SEC1 compressed point is 33 bytes).
const MAX_ENCODING: usize = 33;

/// An entry: the suite's tag, the encoding's length, the encoding, zero
/// padded (no allocation per lookup).
type Key = [u8; 2 + MAX_ENCODING];

/// The entry for `bytes`; `None` (never known) past [`MAX_ENCODING`].
fn key(suite: SuiteId, bytes: &[u8]) -> Option<Key> {
    let len = u8::try_from(bytes.len()).ok()?;
    let mut k: Key = [0u8; 2 + MAX_ENCODING];
    k.get_mut(2..2 + bytes.len())?.copy_from_slice(bytes);
    let [tag, length, ..] = &mut k;
    *tag = suite as u8;
    *length = len;
    Some(k)
}

struct Known {
    set: HashSet<Key>,
    /// Insertion order, oldest first, for eviction.
    order: VecDeque<Key>,
    capacity: usize,
}

/// The scope running on this thread: its set, and whether encodings count.
type Current = Option<(KnownElements, bool)>;

thread_local! {
    /// The set of the scope running on this thread, if any.
    static CURRENT: RefCell<Current> = const { RefCell::new(None) };
}

impl Default for KnownElements {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

/// Restores the previous scope's set when a scope ends (also on unwind).
struct Restore(Current);

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

    /// Run `f` with this set consulted by every element decoding
    /// [`crate::codec`] does on this thread, and fed by every one that
    /// passes the full check. `f` is synchronous: the scope ends when it
    /// returns, on the thread it started on.
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        self.enter(false, f)
    }

    /// [`KnownElements::scope`], and every element [`crate::codec`] encodes
    /// in `f` is added too. Only for code that encodes nothing but elements
    /// it computed in the group itself (multiples of the generator: a
    /// signer's fresh nonce commitments), never an element built from bytes
    /// without the full check.
    pub fn producing<R>(&self, f: impl FnOnce() -> R) -> R {
        self.enter(true, f)
    }

    fn enter<R>(&self, encodes: bool, f: impl FnOnce() -> R) -> R {
        let prev = CURRENT.with(|c| c.replace(Some((self.clone(), encodes))));
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
        let Some(key) = key(suite, bytes) else {
            return false;
        };
        self.0.lock().is_ok_and(|k| k.set.contains(&key))
    }

    fn insert(&self, suite: SuiteId, bytes: &[u8]) {
        let Some(key) = key(suite, bytes) else { return };
        let Ok(mut k) = self.0.lock() else { return };
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
        k.order.push_back(key);
        k.set.insert(key);
    }
}

/// Whether the current scope's set holds `bytes` for `suite`.
pub(crate) fn is_known(suite: SuiteId, bytes: &[u8]) -> bool {
    CURRENT
        .try_with(|c| {
            c.borrow()
                .as_ref()
                .is_some_and(|(k, _)| k.contains(suite, bytes))
        })
        .unwrap_or(false)
}

/// Add `bytes`, which passed the full check for `suite`, to the current
/// scope's set, if there is one.
pub(crate) fn remember(suite: SuiteId, bytes: &[u8]) {
    let _ = CURRENT.try_with(|c| {
        if let Some((k, _)) = c.borrow().as_ref() {
            k.insert(suite, bytes);
        }
    });
}

/// Add `bytes`, the encoding of an element being written, to the current
/// scope's set if it is a [`KnownElements::producing`] scope.
pub(crate) fn remember_encoded(suite: SuiteId, bytes: &[u8]) {
    let _ = CURRENT.try_with(|c| {
        if let Some((k, true)) = c.borrow().as_ref() {
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
        let write = |p| {
            let mut w = Writer::new::<Ed25519>(0);
            w.element::<Ed25519>(p);
            w.finish()
        };
        let enc = p.compress().to_bytes();
        // Encoding in a plain scope remembers nothing.
        assert!(k.scope(|| write(&p)).ends_with(&enc));
        assert!(!k.scope(|| is_known(SuiteId::Ed25519, &enc)));
        // Encoding in a producing scope remembers it; decoding it again
        // gives it back.
        assert!(k.producing(|| write(&p)).ends_with(&enc));
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
        // Encodings longer than any point's are never known, never kept.
        let long = [7u8; MAX_ENCODING + 1];
        k.scope(|| remember(SuiteId::Ed25519, &long));
        assert!(!k.scope(|| is_known(SuiteId::Ed25519, &long)));
        assert_eq!(k.len(), 2);
    }
}
