//! Refusals are counted, not logged (issue #18 item 1; DESIGN.md §4 item
//! 6: nothing an unauthenticated caller sends grows replicated state).
//!
//! - A refusal of a caller that did not authenticate goes to a metrics
//!   counter and to this node's own log, sampled (at most [`SAMPLE_BURST`]
//!   at once, then one per [`SAMPLE_EVERY`]): never to the audit log, which
//!   is replicated.
//! - A refusal of an authenticated caller (a client that signed its
//!   request, a known node) is audited, at most [`AUDIT_BURST`] at once per
//!   caller and then one per [`AUDIT_EVERY`]; past that it is counted
//!   (`keyquorum_refusals_unaudited_total`), so a client's own credentials
//!   cannot flood the log either.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refusals of one caller audited at once.
pub(crate) const AUDIT_BURST: u32 = 20;
/// Then one per this.
pub(crate) const AUDIT_EVERY: Duration = Duration::from_secs(5);
/// Unauthenticated refusals logged at once.
pub(crate) const SAMPLE_BURST: u32 = 10;
/// Then one per this.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Callers tracked; past it a new caller's refusals are counted, not
/// audited (the table is never cleared: that would give every caller its
/// burst again).
const MAX_CALLERS: usize = 10_000;

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    last: Instant,
}

impl Bucket {
    fn full(burst: u32) -> Self {
        Self {
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Take a token if there is one, refilling one per `every` up to
    /// `burst`.
    fn take(&mut self, burst: u32, every: Duration) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_nanos() / every.as_nanos().max(1);
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(burst);
            self.last = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Which refusals are audited or logged.
#[derive(Debug)]
pub(crate) struct Refusals {
    callers: Mutex<HashMap<String, Bucket>>,
    sample: Mutex<Bucket>,
}

impl Default for Refusals {
    fn default() -> Self {
        Self {
            callers: Mutex::default(),
            sample: Mutex::new(Bucket::full(SAMPLE_BURST)),
        }
    }
}

impl Refusals {
    /// Whether a refusal of authenticated caller `who` is audited.
    pub(crate) fn audit(&self, who: &str) -> bool {
        let Ok(mut callers) = self.callers.lock() else {
            return false;
        };
        if callers.len() >= MAX_CALLERS && !callers.contains_key(who) {
            return false;
        }
        callers
            .entry(who.to_string())
            .or_insert_with(|| Bucket::full(AUDIT_BURST))
            .take(AUDIT_BURST, AUDIT_EVERY)
    }

    /// Whether an unauthenticated refusal is written to this node's log.
    pub(crate) fn sample(&self) -> bool {
        self.sample
            .lock()
            .is_ok_and(|mut b| b.take(SAMPLE_BURST, SAMPLE_EVERY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_gets_its_burst_and_no_more_at_once() {
        let r = Refusals::default();
        let a = (0..100).filter(|_| r.audit("a")).count();
        let b = (0..100).filter(|_| r.audit("b")).count();
        assert_eq!(a, AUDIT_BURST as usize);
        assert_eq!(b, AUDIT_BURST as usize);
        let s = (0..100).filter(|_| r.sample()).count();
        assert_eq!(s, SAMPLE_BURST as usize);
    }

    #[test]
    fn a_bucket_refills_with_time() {
        let mut b = Bucket::full(2);
        assert!(b.take(2, Duration::from_secs(1)));
        assert!(b.take(2, Duration::from_secs(1)));
        assert!(!b.take(2, Duration::from_secs(1)));
        b.last -= Duration::from_secs(5);
        assert!(b.take(2, Duration::from_secs(1)));
        assert!(b.take(2, Duration::from_secs(1)));
        assert!(
            !b.take(2, Duration::from_secs(1)),
            "refilled to the burst only"
        );
    }
}
