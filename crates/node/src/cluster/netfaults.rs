//! Network and clock faults for the nemesis test (`tests/nemesis.rs`): the
//! peers this node's messages do not reach (a partition, symmetric when
//! both sides cut, one-way when one does), a pause (the node neither sends
//! nor handles peer messages, as if its process were stopped; its Raft
//! timers run on, unlike a real stop), and a skewed clock (what the node
//! stamps and checks times with: `NetFaults::now_ms`). Like
//! `keys::faults`, it exists only with the `fault-injection` feature;
//! without it every check below is a constant "deliver" and the clock is
//! the system's.

#[cfg(feature = "fault-injection")]
use std::collections::BTreeSet;
#[cfg(feature = "fault-injection")]
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
#[cfg(feature = "fault-injection")]
use std::sync::Mutex;
#[cfg(feature = "fault-injection")]
use std::time::{Duration, Instant};

use keyquorum_wire::NodeId;

/// The system clock, milliseconds since the Unix epoch (the one place it
/// is read: `peer::now_ms` is this).
pub(crate) fn system_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a test cut or paused on this node; nothing until it asks.
#[derive(Debug, Default)]
pub struct NetFaults {
    #[cfg(feature = "fault-injection")]
    cut: Mutex<BTreeSet<NodeId>>,
    #[cfg(feature = "fault-injection")]
    paused_until: Mutex<Option<Instant>>,
    #[cfg(feature = "fault-injection")]
    skew_ms: AtomicI64,
    /// As the leader, answer forwarded commands "applied" without
    /// appending them (a hostile leader, for `tests/node/hostile`).
    #[cfg(feature = "fault-injection")]
    pub forge_forward_replies: AtomicBool,
    /// Serve sessions' inputs to a member that lacks them with each
    /// ciphertext altered (a hostile member, for `tests/node/he.rs`).
    #[cfg(feature = "fault-injection")]
    pub forge_he_inputs: AtomicBool,
    /// As a signing tree's coordinator, use leaf `value − 1` for every
    /// signature (0: the leaves the log hands out; a hostile coordinator
    /// or leader handing one leaf out twice, for `tests/seedtree.rs`).
    #[cfg(feature = "fault-injection")]
    pub seedtree_leaf: std::sync::atomic::AtomicU64,
    /// In a tree's key generation, reveal another contribution than the
    /// one committed to (a lying member).
    #[cfg(feature = "fault-injection")]
    pub seedtree_lie_reveal: AtomicBool,
    /// As a tree's builder, report altered subtree roots (a builder
    /// publishing a wrong root).
    #[cfg(feature = "fault-injection")]
    pub seedtree_bad_root: AtomicBool,
}

#[cfg(feature = "fault-injection")]
impl NetFaults {
    /// The leaf a test makes this coordinator use for every signature.
    pub(crate) fn seedtree_leaf(&self) -> Option<u32> {
        let v = self.seedtree_leaf.load(Ordering::Relaxed);
        u32::try_from(v.checked_sub(1)?).ok()
    }

    /// Messages from this node to `to` are lost from now on (the call
    /// waits out its timeout, as over a link that drops packets).
    pub fn cut(&self, to: impl IntoIterator<Item = NodeId>) {
        if let Ok(mut c) = self.cut.lock() {
            c.extend(to);
        }
    }

    /// Every link of this node delivers again, and a pause ends.
    pub fn heal(&self) {
        if let Ok(mut c) = self.cut.lock() {
            c.clear();
        }
        if let Ok(mut p) = self.paused_until.lock() {
            *p = None;
        }
    }

    /// Run this node's clock `ms` ahead (behind, if negative) of the
    /// system's, until set again.
    pub fn skew(&self, ms: i64) {
        self.skew_ms.store(ms, Ordering::Relaxed);
    }

    /// Stop sending and handling peer messages for `d`: each waits until
    /// the pause ends, then goes on.
    pub fn pause_for(&self, d: Duration) {
        if let Ok(mut p) = self.paused_until.lock() {
            *p = Some(Instant::now() + d);
        }
    }
}

impl NetFaults {
    /// This node's clock, ms since the Unix epoch: the system's, skewed
    /// when a test asked for it.
    pub(crate) fn now_ms(&self) -> u64 {
        let now = system_ms();
        #[cfg(feature = "fault-injection")]
        return now.saturating_add_signed(self.skew_ms.load(Ordering::Relaxed));
        #[cfg(not(feature = "fault-injection"))]
        now
    }

    /// Whether to answer forwarded commands without appending them.
    pub(crate) fn forges_forward_replies(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.forge_forward_replies.load(Ordering::Relaxed);
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Whether to alter the inputs this node serves to another member.
    pub(crate) fn forges_he_inputs(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.forge_he_inputs.load(Ordering::Relaxed);
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Whether a message from this node reaches `to`.
    pub(crate) fn reaches(&self, to: NodeId) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.cut.lock().map(|c| !c.contains(&to)).unwrap_or(true);
        #[cfg(not(feature = "fault-injection"))]
        {
            let _ = to;
            true
        }
    }

    /// Wait while this node is paused.
    pub(crate) async fn wait_unpaused(&self) {
        #[cfg(feature = "fault-injection")]
        loop {
            let until = self.paused_until.lock().ok().and_then(|p| *p);
            match until {
                Some(t) if t > Instant::now() => {
                    tokio::time::sleep_until(t.into()).await;
                }
                _ => return,
            }
        }
    }
}
