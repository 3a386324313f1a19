//! Deliberate misbehaviour, for the tests of blame, recovery and crash
//! safety (a member that deals bad shares, signs wrongly, or stalls). It
//! exists only with the `fault-injection` feature, which the node's own
//! tests enable and no release build does; without it every hook below is a
//! constant "behave".

#[cfg(feature = "fault-injection")]
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::cluster::Node;

/// What a test has asked this node to do wrong. Everything is off until a
/// test turns it on through `Keys::faults`; no API or config reaches it.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Default)]
pub struct Faults {
    /// Send DKG round-2 shares that are off this node's commitment.
    pub bad_dkg_share: AtomicBool,
    /// Send signature shares that do not verify.
    pub bad_signature_share: AtomicBool,
    /// Send decryption shares (encrypted-data sessions) that do not verify.
    pub bad_decryption_share: AtomicBool,
    /// Send OPRF evaluation answers that do not verify.
    pub bad_evaluation_share: AtomicBool,
    /// Wait this many milliseconds before handling a DKG finish or a
    /// reshare receive (a window to stop the node mid-run).
    pub stall_finish_ms: AtomicU64,
    /// How many stalls have ended (so a test can wait for the late handler).
    pub stalls_ended: AtomicU64,
    /// As a DKG's coordinator, commit the group key (and public key) of
    /// this other key instead of the one the members computed.
    pub commit_group_key_of: std::sync::Mutex<Option<String>>,
    /// As a refresh's coordinator, tell every member to abort the run after
    /// they endorsed it, then commit it anyway.
    pub abort_then_commit: AtomicBool,
    /// As a DKG member, accuse this node (id; 0: none) of dealing a bad
    /// share, whatever it dealt (a false complaint).
    pub accuse: AtomicU64,
    /// As a DKG member, refuse to finish, blaming this node (id; 0: none)
    /// in an error instead of a complaint (an accusation with no evidence).
    pub accuse_by_error: AtomicU64,
}

/// Without the feature: nothing to turn on.
#[cfg(not(feature = "fault-injection"))]
#[derive(Debug, Default)]
pub(crate) struct Faults {
    _nothing: (),
}

impl Faults {
    /// Whether to deal DKG shares off this node's commitment.
    pub(crate) fn deal_bad_dkg_shares(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.bad_dkg_share.load(Ordering::Relaxed);
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Whether to send signature shares that do not verify.
    pub(crate) fn send_bad_signature_shares(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.bad_signature_share.load(Ordering::Relaxed);
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Whether to send decryption shares that do not verify.
    pub(crate) fn send_bad_decryption_shares(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.bad_decryption_share.load(Ordering::Relaxed);
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Whether to send OPRF answers that do not verify.
    pub(crate) fn send_bad_evaluation_shares(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.bad_evaluation_share.load(Ordering::Relaxed);
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Whether to say abort to a run's members after they endorsed it, and
    /// then commit it.
    pub(crate) fn abort_then_commit(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.abort_then_commit.load(Ordering::Relaxed);
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// The node this member falsely accuses in a DKG (complaint, or error).
    pub(crate) fn false_accusation(&self) -> (Option<u64>, Option<u64>) {
        #[cfg(feature = "fault-injection")]
        {
            let get = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|n| *n != 0);
            (get(&self.accuse), get(&self.accuse_by_error))
        }
        #[cfg(not(feature = "fault-injection"))]
        (None, None)
    }

    /// How long to stall before a DKG finish or a reshare receive (0: not).
    pub(crate) fn stall_ms(&self) -> u64 {
        #[cfg(feature = "fault-injection")]
        return self.stall_finish_ms.load(Ordering::Relaxed);
        #[cfg(not(feature = "fault-injection"))]
        0
    }

    /// The group key and public key a hostile coordinator commits instead
    /// of the computed ones, if a test asked for it.
    pub(crate) fn substitute_group_key(&self, node: &Node) -> Option<(Vec<u8>, Vec<u8>)> {
        #[cfg(feature = "fault-injection")]
        let other = self.commit_group_key_of.lock().ok().and_then(|g| g.clone());
        #[cfg(not(feature = "fault-injection"))]
        let other: Option<String> = None;
        let other = other?;
        node.registry(|r| {
            r.keys
                .records
                .get(&other)
                .map(|k| (k.group_key.0.clone(), k.public_key.0.clone()))
        })
    }

    /// Note that a stalled handler has finished.
    pub(crate) fn stall_ended(&self) {
        #[cfg(feature = "fault-injection")]
        self.stalls_ended.fetch_add(1, Ordering::Relaxed);
    }
}
