//! A snapshot is installed only once the members vouch for it (DESIGN.md
//! §4 item 3: a leader cannot change the registry on its own).
//!
//! Raft installs a snapshot the leader sends as the replica's whole state,
//! without applying (so without checking) the entries it stands for. Every
//! replica therefore takes its snapshots as checkpoints at the same log
//! indices (multiples of `checkpoint_every`, `keyquorum_store::raft::checkpoint`):
//! the state there, and its bytes, are the same on every replica that
//! applied the same log. This node takes a snapshot's chunks itself (Raft
//! sees none of them), digests the whole, and asks the other voters of its
//! own membership record for the digest of their checkpoint at the
//! snapshot's index ([`PeerMessage::Attest`]); only if enough of them, the
//! sender counted, answer with the same digest ([`needed`]) does it hand
//! Raft exactly the bytes it digested (`install_full_snapshot`). A refused
//! snapshot changes nothing: the leader tries again later (with a newer
//! checkpoint, which the others have taken by then).
//!
//! Not covered:
//! - A node whose record is not in force yet (one that has applied no
//!   `init`) asks the voters its join code fingerprinted (`join`); one that
//!   did not join with a code (a founder before init) has no one to ask and
//!   takes the snapshot as sent.
//! - A node left behind across a membership change asks the voters of the
//!   record it has, not the newer one (which only the snapshot, untrusted,
//!   would tell it): the fix is a snapshot that carries the approved
//!   changes of the record since, for the receiver to check.

use std::io::Cursor;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::join_all;
use keyquorum_store::raft::checkpoint::DigestWriter;
use keyquorum_wire::control::{NodeInfo, TypeConfig};
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::{Hex32, NodeId};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};
use openraft::storage::Snapshot;
use openraft::SnapshotMeta;

use super::Node;
use crate::error::NodeError;

/// Largest snapshot taken (the whole control plane's state).
const MAX_SNAPSHOT_BYTES: usize = 1 << 30;

/// How long a member has to answer [`PeerMessage::Attest`].
const ATTEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The form of this build's checkpoints: bump it whenever the serialized
/// state changes shape (the same state then has another digest).
/// 3: encrypted-data sessions (`he`) and nodes' measurements (`attested`).
pub(crate) const CHECKPOINT_FORMAT: u16 = 3;

/// A snapshot arriving in chunks.
pub(crate) struct Incoming {
    from: NodeId,
    meta: SnapshotMeta<u64, NodeInfo>,
    data: Vec<u8>,
    digest: DigestWriter,
}

/// The snapshot being received, if any (one at a time, as in openraft).
#[derive(Default)]
pub(crate) struct Receiving(Mutex<Option<Incoming>>);

/// How many voters must vouch for a snapshot: a majority of the record's
/// voters and at least the largest threshold of any key, so that t − 1
/// compromised members, the sender among them, never suffice. `None` when
/// there are fewer other voters than that (an n-of-n key): then no
/// snapshot is taken, and the node catches up from the log only.
pub(crate) fn needed(voters: usize, others: usize, largest_threshold: usize) -> Option<usize> {
    let need = (voters / 2 + 1).max(largest_threshold).max(1);
    (need <= others).then_some(need)
}

impl Node {
    /// Take one snapshot chunk from `from`: chunks in order, one snapshot
    /// at a time; at the last one, install the whole if the members vouch
    /// for it. Raft sees only a whole, vouched-for snapshot.
    pub(crate) async fn receive_snapshot_chunk(
        &self,
        from: NodeId,
        rpc: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<InstallSnapshotResponse<u64>, NodeError> {
        let InstallSnapshotRequest {
            vote,
            meta,
            offset,
            data,
            done,
        } = rpc;
        let finished =
            {
                let mut slot =
                    self.0.receiving.0.lock().map_err(|_| {
                        NodeError::Internal("snapshot receiver lock poisoned".into())
                    })?;
                // A chunk sent again (its answer was lost): taken already.
                let again = slot.as_ref().is_some_and(|i| {
                    i.from == from
                        && i.meta == meta
                        && !done
                        && offset as usize + data.len() == i.data.len()
                        && i.data.get(offset as usize..) == Some(data.as_slice())
                });
                if again {
                    let vote = self.0.raft.metrics().borrow().vote;
                    return Ok(InstallSnapshotResponse { vote });
                }
                if offset == 0 {
                    let local = self.0.raft.metrics().borrow().vote;
                    if vote < local {
                        return Err(NodeError::PeerRejected(format!(
                            "a snapshot from node {from} under vote {vote}, older than {local}"
                        )));
                    }
                    // Refused now, not after the whole has come, if no
                    // vouching could let it in.
                    if let Some((voters, largest)) = self.vouching_policy() {
                        let others = voters.iter().filter(|(id, _)| *id != self.id()).count();
                        if needed(voters.len(), others, largest).is_none() {
                            return Err(NodeError::PeerRejected(no_snapshot(largest, others)));
                        }
                    }
                    let digest = DigestWriter::new(&meta)
                        .map_err(|e| NodeError::BadRequest(format!("snapshot metadata: {e}")))?;
                    *slot = Some(Incoming {
                        from,
                        meta: meta.clone(),
                        data: Vec::new(),
                        digest,
                    });
                }
                let incoming = slot
                    .as_mut()
                    .filter(|i| i.from == from && i.meta == meta && i.data.len() as u64 == offset)
                    .ok_or_else(|| {
                        NodeError::PeerRejected(format!(
                            "snapshot chunk at offset {offset} from node {from} does not continue \
                         the snapshot being received"
                        ))
                    })?;
                if incoming.data.len() + data.len() > MAX_SNAPSHOT_BYTES {
                    *slot = None;
                    return Err(NodeError::PeerRejected(format!(
                        "a snapshot over {MAX_SNAPSHOT_BYTES} bytes"
                    )));
                }
                incoming.digest.update(&data);
                incoming.data.extend_from_slice(&data);
                if done {
                    slot.take()
                } else {
                    None
                }
            };
        let Some(Incoming {
            from,
            meta,
            data,
            digest,
        }) = finished
        else {
            let vote = self.0.raft.metrics().borrow().vote;
            return Ok(InstallSnapshotResponse { vote });
        };
        self.vouched(from, &meta, digest.finish()).await?;
        check_rules(&data)?;
        let reply = self
            .0
            .raft
            .install_full_snapshot(
                vote,
                Snapshot {
                    meta,
                    snapshot: Box::new(Cursor::new(data)),
                },
            )
            .await
            .map_err(|e| NodeError::Unavailable(format!("raft: {e}")))?;
        Ok(InstallSnapshotResponse { vote: reply.vote })
    }

    /// This node's record's voters and the largest threshold of any key,
    /// if its record is in force.
    fn vouching_policy(&self) -> Option<(Vec<(NodeId, NodeInfo)>, usize)> {
        let in_force = self.registry(|r| r.roster.in_force);
        if !in_force {
            // A node that joined with a code: the voters and the largest
            // threshold the code fingerprinted (`join`).
            return self.joined().map(|j| {
                let voters = j
                    .members
                    .iter()
                    .filter(|m| m.voter)
                    .map(|m| (m.id, m.info.clone()))
                    .collect();
                (voters, usize::from(j.threshold))
            });
        }
        self.registry(|r| {
            r.roster.in_force.then(|| {
                let voters: Vec<_> = r
                    .roster
                    .voters()
                    .map(|(id, info)| (id, info.clone()))
                    .collect();
                (voters, largest_threshold(r))
            })
        })
    }

    /// Whether enough voters of this node's record vouch for `digest` as
    /// the state at the snapshot's index: as many as this node's state
    /// requires, and as the most demanding answer reports (this node's
    /// state may be stale: a key with a higher threshold, more voters).
    async fn vouched(
        &self,
        from: NodeId,
        meta: &SnapshotMeta<u64, NodeInfo>,
        digest: [u8; 32],
    ) -> Result<(), NodeError> {
        let Some(index) = meta.last_log_id.map(|l| l.index) else {
            return Err(NodeError::PeerRejected(
                "a snapshot with no log position".into(),
            ));
        };
        let Some((voters, largest)) = self.vouching_policy() else {
            // Nothing to check it against (see the module doc).
            return Ok(());
        };
        let others: Vec<_> = voters.iter().filter(|(id, _)| *id != self.id()).collect();
        let mut need = needed(voters.len(), others.len(), largest)
            .ok_or_else(|| NodeError::PeerRejected(no_snapshot(largest, others.len())))?;
        let answers = join_all(others.iter().map(|(id, info)| async move {
            let answer = tokio::time::timeout(
                ATTEST_TIMEOUT,
                self.call(*id, info, PeerMessage::Attest { index }),
            )
            .await;
            (*id, answer)
        }))
        .await;
        let mut vouching = Vec::new();
        let mut differing = Vec::new();
        for (id, answer) in answers {
            let Ok(Ok(PeerMessage::Attestation {
                index: i,
                digest: Some(Hex32(d)),
                format,
                voters: v,
                largest_threshold: t,
            })) = answer
            else {
                continue;
            };
            // Another build's checkpoints, or another index: no answer.
            if i != index || format != CHECKPOINT_FORMAT {
                continue;
            }
            match needed(usize::from(v), others.len(), usize::from(t)) {
                Some(n) => need = need.max(n),
                None => {
                    return Err(NodeError::PeerRejected(no_snapshot(
                        usize::from(t),
                        others.len(),
                    )))
                }
            }
            if d == digest {
                vouching.push(id);
            } else {
                differing.push(id);
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
            // (Rate-limited: `from` sent it under its own certificate.)
            let who = format!("peer:{from}");
            self.refusal(Some((&who, &who)), "snapshot.refused", None, &why);
        }
        tracing::warn!("{why}");
        Err(NodeError::PeerRejected(why))
    }

    /// This node's answer to [`PeerMessage::Attest`].
    pub(crate) fn attest(&self, index: u64) -> PeerMessage {
        let (voters, largest) = self.registry(|r| {
            let voters = r.roster.nodes.values().filter(|n| n.voter).count();
            (voters, largest_threshold(r))
        });
        PeerMessage::Attestation {
            index,
            digest: self.0.checkpoints.digest_at(index).map(Hex32),
            format: CHECKPOINT_FORMAT,
            voters: u16::try_from(voters).unwrap_or(u16::MAX),
            largest_threshold: u16::try_from(largest).unwrap_or(u16::MAX),
        }
    }
}

/// The largest threshold of any key in `r`.
pub(crate) fn largest_threshold(r: &super::Registry) -> usize {
    r.keys
        .records
        .values()
        .map(|k| usize::from(k.threshold))
        .max()
        .unwrap_or(0)
}

/// Why no snapshot can be taken: too few other voters to outvote a key's
/// compromised members.
fn no_snapshot(largest: usize, others: usize) -> String {
    format!(
        "a key's threshold ({largest}) is more than the {others} other voters, who could not \
         outvote its compromised members: this node takes no snapshot and catches up from the \
         log only"
    )
}

/// A snapshot of apply rules this build does not know is not taken (the
/// state could hold what this build would drop; `machine::rules`).
pub(crate) fn check_rules(data: &[u8]) -> Result<(), NodeError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        machine: Rules,
    }
    #[derive(serde::Deserialize)]
    struct Rules {
        #[serde(default)]
        rules: u16,
    }
    let probe: Probe = serde_json::from_slice(data)
        .map_err(|e| NodeError::PeerRejected(format!("a snapshot that does not decode: {e}")))?;
    let known = keyquorum_wire::control::APPLY_RULES;
    if probe.machine.rules > known {
        return Err(NodeError::PeerRejected(format!(
            "a snapshot at apply rules {}, which this build does not know (it knows up to \
             {known}): upgrade this node",
            probe.machine.rules
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::needed;

    #[test]
    fn enough_to_outnumber_the_compromised_or_none() {
        // 3 voters, 2-of-3 keys: 2 of the 2 others.
        assert_eq!(needed(3, 2, 2), Some(2));
        // 5 voters, 3-of-5: a majority, 3 of the 4 others.
        assert_eq!(needed(5, 4, 3), Some(3));
        // 5 voters, a 4-of-5 key: 4.
        assert_eq!(needed(5, 4, 4), Some(4));
        // A 5-of-5 key: the 4 others could all be compromised; none.
        assert_eq!(needed(5, 4, 5), None);
        // A learner (not a voter itself): all 3 of 3 for a 3-of-3 key.
        assert_eq!(needed(3, 3, 3), Some(3));
        // No keys yet: a majority.
        assert_eq!(needed(4, 3, 0), Some(3));
        assert_eq!(needed(1, 0, 0), None);
    }
}
