//! A snapshot is installed only once the members vouch for it (DESIGN.md
//! §4 item 3: a leader cannot change the registry on its own).
//!
//! Raft installs a snapshot the leader sends as the replica's whole state,
//! without applying (so without checking) the entries it stands for. Every
//! replica therefore takes its snapshots as checkpoints at the same log
//! indices (multiples of `checkpoint_every`, `keyquorum_store::raft::checkpoint`):
//! the state there, and its bytes, are the same on every replica that
//! applied the same log. Before the last chunk of a snapshot reaches Raft,
//! this node digests it as it arrives and asks the other voters of its own
//! membership record for the digest of their checkpoint at the snapshot's
//! index ([`PeerMessage::Attest`]); it goes on only if enough of them, the
//! sender counted, answer with the same digest ([`needed`]). A refused
//! snapshot changes nothing: the leader tries again later (with a newer
//! checkpoint, which the others have taken by then).
//!
//! A node whose record is not in force yet (one that has applied no
//! `init`, such as a node joining) has no one to ask and takes the snapshot
//! as sent: the joiner's trust anchor is issue #23's join code.

use std::sync::Mutex;

use futures::future::join_all;
use keyquorum_store::raft::checkpoint::DigestWriter;
use keyquorum_wire::control::TypeConfig;
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::{Hex32, NodeId};
use openraft::raft::InstallSnapshotRequest;

use super::Node;
use crate::error::NodeError;

/// A snapshot arriving in chunks.
pub(crate) struct Incoming {
    from: NodeId,
    meta: openraft::SnapshotMeta<u64, keyquorum_wire::control::NodeInfo>,
    next_offset: u64,
    digest: DigestWriter,
}

/// The snapshot being received, if any (one at a time, as in openraft).
#[derive(Default)]
pub(crate) struct Receiving(Mutex<Option<Incoming>>);

/// How many voters must vouch for a snapshot: a majority of the record's
/// voters and at least the largest threshold of any key (so t − 1
/// compromised members, the sender among them, never suffice), but no more
/// than the voters other than this node (so one node being behind does not
/// stop it for good).
pub(crate) fn needed(voters: usize, others: usize, largest_threshold: usize) -> usize {
    (voters / 2 + 1).max(largest_threshold).min(others).max(1)
}

impl Node {
    /// Check one snapshot chunk from `from` before Raft sees it: chunks in
    /// order, one snapshot at a time, and at the last one, the members'
    /// word for the whole.
    pub(crate) async fn check_snapshot_chunk(
        &self,
        from: NodeId,
        rpc: &InstallSnapshotRequest<TypeConfig>,
    ) -> Result<(), NodeError> {
        let finished = {
            let mut slot = self
                .0
                .receiving
                .0
                .lock()
                .map_err(|_| NodeError::Internal("snapshot receiver lock poisoned".into()))?;
            if rpc.offset == 0 {
                let digest = DigestWriter::new(&rpc.meta)
                    .map_err(|e| NodeError::BadRequest(format!("snapshot metadata: {e}")))?;
                *slot = Some(Incoming {
                    from,
                    meta: rpc.meta.clone(),
                    next_offset: 0,
                    digest,
                });
            }
            let incoming = slot
                .as_mut()
                .filter(|i| i.from == from && i.meta == rpc.meta && i.next_offset == rpc.offset)
                .ok_or_else(|| {
                    NodeError::PeerRejected(format!(
                        "snapshot chunk at offset {} from node {from} does not continue the snapshot being received",
                        rpc.offset
                    ))
                })?;
            incoming.digest.update(&rpc.data);
            incoming.next_offset += rpc.data.len() as u64;
            if rpc.done {
                slot.take()
            } else {
                None
            }
        };
        match finished {
            Some(i) => self.vouched(i.from, &i.meta, i.digest.finish()).await,
            None => Ok(()),
        }
    }

    /// Whether enough voters of this node's record vouch for `digest` as
    /// the state at the snapshot's index.
    async fn vouched(
        &self,
        from: NodeId,
        meta: &openraft::SnapshotMeta<u64, keyquorum_wire::control::NodeInfo>,
        digest: [u8; 32],
    ) -> Result<(), NodeError> {
        let Some(index) = meta.last_log_id.map(|l| l.index) else {
            return Err(NodeError::PeerRejected(
                "a snapshot with no log position".into(),
            ));
        };
        let Some((voters, largest)) = self.registry(|r| {
            r.roster.in_force.then(|| {
                let voters: Vec<_> = r
                    .roster
                    .nodes
                    .iter()
                    .filter(|(_, n)| n.voter)
                    .map(|(id, n)| (*id, n.info.clone()))
                    .collect();
                let largest = r
                    .keys
                    .records
                    .values()
                    .map(|k| usize::from(k.threshold))
                    .max()
                    .unwrap_or(0);
                (voters, largest)
            })
        }) else {
            // Nothing to check it against (see the module doc).
            return Ok(());
        };
        let others: Vec<_> = voters.iter().filter(|(id, _)| *id != self.id()).collect();
        let need = needed(voters.len(), others.len(), largest);
        let answers = join_all(others.iter().map(|(id, info)| async move {
            (
                *id,
                self.call(*id, info, PeerMessage::Attest { index }).await,
            )
        }))
        .await;
        let mut vouching = Vec::new();
        let mut differing = Vec::new();
        for (id, answer) in answers {
            match answer {
                Ok(PeerMessage::Attestation {
                    index: i,
                    digest: Some(Hex32(d)),
                }) if i == index => {
                    if d == digest {
                        vouching.push(id);
                    } else {
                        differing.push(id);
                    }
                }
                _ => {}
            }
        }
        if vouching.len() >= need {
            tracing::info!(index, from = %from, vouching = ?vouching, "snapshot vouched for");
            return Ok(());
        }
        let why = format!(
            "snapshot at index {index} from node {from}: {} of the {need} voters needed vouch for it{}",
            vouching.len(),
            if differing.is_empty() {
                String::new()
            } else {
                format!(" (nodes {differing:?} hold another state there)")
            }
        );
        if !differing.is_empty() {
            // Not a lagging peer: the state sent is not the members'.
            self.audit_event(&format!("peer:{from}"), "snapshot.refused", None, &why);
        }
        tracing::warn!("{why}");
        Err(NodeError::PeerRejected(why))
    }

    /// This node's answer to [`PeerMessage::Attest`].
    pub(crate) fn attest(&self, index: u64) -> PeerMessage {
        PeerMessage::Attestation {
            index,
            digest: self.0.checkpoints.digest_at(index).map(Hex32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::needed;

    #[test]
    fn enough_to_outnumber_the_compromised_but_never_more_than_there_are() {
        // 3 voters, 2-of-3 keys: 2 of the 2 others.
        assert_eq!(needed(3, 2, 2), 2);
        // 5 voters, 3-of-5: a majority, 3 of the 4 others.
        assert_eq!(needed(5, 4, 3), 3);
        // 5 voters, a 4-of-5 key: 4.
        assert_eq!(needed(5, 4, 4), 4);
        // A 5-of-5 key: all 4 others (this node cannot vouch for itself).
        assert_eq!(needed(5, 4, 5), 4);
        // A learner (not a voter itself): all 3 of 3 for a 3-of-3 key.
        assert_eq!(needed(3, 3, 3), 3);
        // No keys yet: a majority.
        assert_eq!(needed(4, 3, 0), 3);
        assert_eq!(needed(1, 0, 0), 1);
    }
}
