//! Checkpoints: snapshots every replica takes at the same log indices
//! (multiples of `every`), so the members can vouch for the one a leader
//! sends.
//!
//! A snapshot replaces a replica's whole state, and Raft takes it from the
//! leader as sent. With checkpoints, the state at index `i` is the same on
//! every replica that applied the same log, and so are its bytes (the
//! machine's serialized form is deterministic), so a replica can check a
//! snapshot before installing it: it asks the other members for the
//! [`digest`] of their own checkpoint at `i` (the node does this, see
//! `keyquorum-node`'s `cluster::checkpoint`). This module computes the
//! digests and remembers those of the recent checkpoints.

use std::sync::{Arc, Mutex};

use openraft::SnapshotMeta;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Domain of a checkpoint digest.
const DOMAIN: &[u8] = b"keyquorum/checkpoint/v1";

/// How many recent checkpoints' digests are kept (a replica asked about an
/// index it has since checkpointed past can still answer).
const KEEP: usize = 4;

/// A snapshot's digest, computed as its bytes arrive: SHA-256 over the
/// domain, the metadata (JSON, length-prefixed) and the data.
pub struct DigestWriter(Sha256);

impl DigestWriter {
    /// Start the digest of a snapshot with metadata `meta`.
    pub fn new<NID, N>(meta: &SnapshotMeta<NID, N>) -> Result<Self, serde_json::Error>
    where
        NID: openraft::NodeId + Serialize,
        N: openraft::Node + Serialize,
    {
        let meta = serde_json::to_vec(meta)?;
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update((meta.len() as u64).to_be_bytes());
        h.update(&meta);
        Ok(Self(h))
    }

    /// The next bytes of the data.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// The digest of a whole snapshot.
pub fn digest<NID, N>(
    meta: &SnapshotMeta<NID, N>,
    data: &[u8],
) -> Result<[u8; 32], serde_json::Error>
where
    NID: openraft::NodeId + Serialize,
    N: openraft::Node + Serialize,
{
    let mut w = DigestWriter::new(meta)?;
    w.update(data);
    Ok(w.finish())
}

/// The digests of the checkpoints this store built or installed recently
/// (in memory; the newest comes back from the stored snapshot at start).
#[derive(Clone, Default)]
pub struct Checkpoints(Arc<Mutex<Recent>>);

/// `(index, digest)`, oldest first.
type Recent = Vec<(u64, [u8; 32])>;

impl Checkpoints {
    /// The digest of this store's checkpoint at `index`, if it has one.
    pub fn digest_at(&self, index: u64) -> Option<[u8; 32]> {
        super::lock(&self.0)
            .iter()
            .rev()
            .find(|(i, _)| *i == index)
            .map(|(_, d)| *d)
    }

    /// Remember the checkpoint at `index` (replacing one at the same index).
    pub(super) fn record(&self, index: u64, digest: [u8; 32]) {
        let mut v = super::lock(&self.0);
        v.retain(|(i, _)| *i != index);
        v.push((index, digest));
        v.sort_unstable_by_key(|(i, _)| *i);
        let excess = v.len().saturating_sub(KEEP);
        v.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_few_are_kept_and_an_index_is_recorded_once() {
        let c = Checkpoints::default();
        for i in 1..=6u64 {
            c.record(i * 10, [i as u8; 32]);
        }
        assert_eq!(c.digest_at(10), None);
        assert_eq!(c.digest_at(20), None);
        assert_eq!(c.digest_at(30), Some([3; 32]));
        assert_eq!(c.digest_at(60), Some([6; 32]));
        c.record(60, [9; 32]);
        assert_eq!(c.digest_at(60), Some([9; 32]));
        assert_eq!(c.digest_at(30), Some([3; 32]));
    }
}
