//! This node's shares of shared keys in its vault, and the rules that keep
//! them consistent with the committed registry:
//!
//! - a run's new share waits under [`pending_slot`] until the generation it
//!   belongs to is committed; it is promoted (moved to [`share_slot`]) on
//!   first use of the committed record. A coordinator's abort stops a run
//!   this node has not finished, but never rolls back a share this node has
//!   stored: storing it and endorsing the group key are one step, and an
//!   endorsed generation can still be committed (with ≥ t endorsements) by
//!   the coordinator that said abort. Were the share dropped on abort, that
//!   commit would leave the key without shares and the older generation
//!   would then be erased: a hostile coordinator could destroy a key;
//! - a pending share is promoted only if the committed record's group key
//!   is the one this node computed with it (its SHA-256 kept beside it in
//!   [`Table::PendingGroups`]): a coordinator that commits another group
//!   key than the members computed gets no share used under it;
//! - once a generation is committed, older generations' shares and nonces,
//!   and pending shares of runs that can no longer commit, are erased. Only
//!   committed state is consulted, so a lagging node erases nothing it may
//!   still need.

use std::time::Instant;

use keyquorum_store::vault::Op;
use keyquorum_store::Table;
use keyquorum_wire::control::KeyRecord;
use keyquorum_wire::{Hex32, NodeId};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{lock, Keys, DKG_TTL};
use crate::cluster::Node;
use crate::error::NodeError;

pub(crate) fn share_slot(name: &str, epoch: u64) -> Vec<u8> {
    format!("{name}/{epoch:020}").into_bytes()
}

/// Where a run's new share waits until its generation is committed: under
/// the key, the generation it would create and the run.
pub(crate) fn pending_slot(name: &str, epoch: u64, session: &Hex32) -> Vec<u8> {
    format!("{name}/{epoch:020}/{}", hex::encode(session.0)).into_bytes()
}

/// Parse a [`pending_slot`] key.
fn parse_pending(k: &[u8]) -> Option<(String, u64, [u8; 32])> {
    let s = std::str::from_utf8(k).ok()?;
    let mut it = s.splitn(3, '/');
    let (name, epoch, session) = (it.next()?, it.next()?, it.next()?);
    let mut sid = [0u8; 32];
    hex::decode_to_slice(session, &mut sid).ok()?;
    Some((name.to_string(), epoch.parse().ok()?, sid))
}

pub(crate) fn nonce_slot(name: &str, epoch: u64, id: &[u8]) -> Vec<u8> {
    let mut k = format!("{name}/{epoch:020}/").into_bytes();
    k.extend_from_slice(hex::encode(id).as_bytes());
    k
}

/// The digest kept beside a pending share: SHA-256 of the group key's
/// encoding, under a domain label.
fn group_digest(group_key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"keyquorum/pending-group-key/v1\x00");
    h.update(group_key);
    h.finalize().into()
}

impl Keys {
    /// Keep a finished run's new share as pending (until its generation
    /// commits or a later one supersedes it), with the digest of the group
    /// key this node computed, unless the run's coordinator has aborted it.
    /// Checked and stored under one lock so an abort racing with the store
    /// either stops it (nothing stored, nothing endorsed) or comes after it
    /// (the share stays: the caller endorses it next).
    pub(crate) fn store_pending(
        &self,
        node: &Node,
        session: &Hex32,
        coordinator: NodeId,
        slot: Vec<u8>,
        share: &[u8],
        group_key: &[u8],
    ) -> Result<(), NodeError> {
        let aborted = lock(&self.aborted)?;
        if aborted.contains_key(&(session.0, coordinator)) {
            return Err(NodeError::Conflict("the run was aborted".into()));
        }
        let computed = group_digest(group_key);
        node.vault().apply(&[
            Op::Put(Table::Pending, &slot, share),
            Op::Put(Table::PendingGroups, &slot, &computed),
        ])?;
        drop(aborted);
        Ok(())
    }

    /// The coordinator gave run `session` up: drop its state and refuse to
    /// store its share later. A share already stored stays (see the module
    /// notes): it is erased once a later generation of the key, or another
    /// run of the same generation, is committed.
    pub(super) fn abort(&self, from: NodeId, session: &Hex32) -> Result<(), NodeError> {
        {
            let mut d = lock(&self.dkg)?;
            if d.get(&session.0).is_some_and(|s| s.coordinator == from) {
                d.remove(&session.0);
            }
        }
        self.drop_dealt(from, session)?;
        // By (run, sender): another member's abort of the same run id does
        // not replace the coordinator's.
        let mut a = lock(&self.aborted)?;
        a.retain(|_, at| at.elapsed() < DKG_TTL);
        a.insert((session.0, from), Instant::now());
        Ok(())
    }

    /// This node's share of `record`, promoting the pending share of the run
    /// that produced it on first use and erasing older generations (their
    /// shares and nonces): they are useless once this one is committed.
    pub(crate) fn share_bytes(
        &self,
        node: &Node,
        record: &KeyRecord,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, NodeError> {
        let slot = share_slot(&record.name, record.epoch);
        if let Some(s) = node.vault().get(Table::Shares, &slot)? {
            return Ok(s);
        }
        let pending = pending_slot(&record.name, record.epoch, &record.session);
        let Some(share) = node.vault().get(Table::Pending, &pending)? else {
            return Err(NodeError::NotFound(format!(
                "node {} holds no share of {} at epoch {}",
                node.id(),
                record.name,
                record.epoch
            )));
        };
        // Shares stored before the digest was kept have none: they are
        // promoted as before.
        if let Some(computed) = node.vault().get(Table::PendingGroups, &pending)? {
            let committed = group_digest(&record.group_key.0);
            if !bool::from(computed.as_slice().ct_eq(committed.as_slice())) {
                tracing::error!(
                    key = record.name,
                    epoch = record.epoch,
                    "the committed group key is not the one this node computed; its share is not used"
                );
                node.audit_event(
                    &format!("node:{}", node.id()),
                    "key.group_mismatch",
                    Some(&record.name),
                    &format!(
                        "epoch {}: the committed group key is not the one this node computed",
                        record.epoch
                    ),
                );
                return Err(NodeError::Conflict(format!(
                    "the committed group key of {} at epoch {} is not the one node {} computed; \
                     its share is not used",
                    record.name,
                    record.epoch,
                    node.id()
                )));
            }
        }
        node.vault().apply(&[
            Op::Put(Table::Shares, &slot, &share),
            Op::Delete(Table::Pending, &pending),
            Op::Delete(Table::PendingGroups, &pending),
        ])?;
        self.erase_older(node, record)?;
        Ok(share)
    }

    /// Erase every generation of key `name` from this node's vault (a PIN
    /// key no longer in use, which the registry may no longer list): what
    /// [`Self::erase_older`] does for a generation past every other.
    pub(crate) fn erase_all(&self, node: &Node, name: &str) -> Result<usize, NodeError> {
        self.erase_older_of(node, name, u64::MAX, &Hex32([0; 32]))
    }

    /// Erase this node's shares and nonces of generations of `record`'s key
    /// older than `record`'s, and pending shares of runs that can no longer
    /// commit. Only committed state is consulted, so a lagging node erases
    /// nothing it may still need.
    pub(crate) fn erase_older(&self, node: &Node, record: &KeyRecord) -> Result<usize, NodeError> {
        self.erase_older_of(node, &record.name, record.epoch, &record.session)
    }

    /// [`Self::erase_older`] for key `name` at generation `current`, made
    /// by run `session`.
    fn erase_older_of(
        &self,
        node: &Node,
        name: &str,
        current: u64,
        session: &Hex32,
    ) -> Result<usize, NodeError> {
        let prefix = format!("{name}/");
        let older = |k: &[u8]| -> bool {
            std::str::from_utf8(k)
                .ok()
                .and_then(|s| s.strip_prefix(&prefix))
                .and_then(|rest| rest.get(..20))
                .and_then(|e| e.parse::<u64>().ok())
                .is_some_and(|e| e < current)
        };
        let shares: Vec<Vec<u8>> = node
            .vault()
            .keys(Table::Shares, prefix.as_bytes())?
            .into_iter()
            .filter(|k| older(k))
            .collect();
        let nonces: Vec<Vec<u8>> = node
            .vault()
            .keys(Table::Nonces, prefix.as_bytes())?
            .into_iter()
            .filter(|k| older(k))
            .collect();
        let pending: Vec<Vec<u8>> = node
            .vault()
            .keys(Table::Pending, prefix.as_bytes())?
            .into_iter()
            .filter(|k| {
                parse_pending(k).is_some_and(|(key, epoch, sid)| {
                    key == name && (epoch < current || (epoch == current && sid != session.0))
                })
            })
            .collect();
        let mut ops: Vec<Op<'_>> = Vec::new();
        ops.extend(shares.iter().map(|k| Op::Delete(Table::Shares, k)));
        ops.extend(nonces.iter().map(|k| Op::Delete(Table::Nonces, k)));
        ops.extend(pending.iter().map(|k| Op::Delete(Table::Pending, k)));
        ops.extend(pending.iter().map(|k| Op::Delete(Table::PendingGroups, k)));
        if !ops.is_empty() {
            node.vault().apply(&ops)?;
        }
        self.pools.forget_older(name, current);
        self.decoded_nonces().forget_older(name, current);
        Ok(ops.len())
    }

    /// While the node runs: whenever this node's own replica of the log
    /// moves a key to a new generation, erase its shares (and nonces, and
    /// pending shares of dead runs) of the older ones, and promote its
    /// share of the new one, within about a second. The coordinator's
    /// `EpochCommitted` only hastens this: a coordinator that never sends
    /// it cannot leave superseded shares behind (a reshare that moved a key
    /// off this node, an account's rotation).
    pub async fn retire_superseded(self: std::sync::Arc<Self>, node: Node) {
        let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let moved: Vec<KeyRecord> = node.registry(|r| {
                r.keys
                    .records
                    .values()
                    .filter(|k| seen.get(&k.name) != Some(&k.epoch))
                    .cloned()
                    .collect()
            });
            for record in moved {
                if record.members.contains(&node.id()) {
                    let _ = self.share_bytes(&node, &record);
                }
                match self.erase_older(&node, &record) {
                    Ok(n) => {
                        if n > 0 {
                            tracing::info!(key = %record.name, epoch = record.epoch, erased = n, "erased superseded shares");
                        }
                        seen.insert(record.name.clone(), record.epoch);
                    }
                    Err(e) => {
                        tracing::warn!(key = %record.name, error = %e, "could not erase superseded shares");
                    }
                }
            }
        }
    }

    /// At start: erase every stored signing nonce (all are from an earlier
    /// start); for every key in the (locally applied) registry, erase
    /// older generations and dead pending shares, and promote this node's
    /// share of the current generation if it is still pending. A pending
    /// share for a key the registry does not know yet is kept: the run may
    /// have committed on a quorum this node has not heard from.
    pub fn tidy(&self, node: &Node) -> Result<usize, NodeError> {
        let records: Vec<KeyRecord> = node.registry(|r| r.keys.records.values().cloned().collect());
        // Every stored nonce is from an earlier start (they are bound to the
        // start that dealt them and never used in another): erase them.
        let nonces = node.vault().keys(Table::Nonces, b"")?;
        let ops: Vec<Op<'_>> = nonces
            .iter()
            .map(|k| Op::Delete(Table::Nonces, k))
            .collect();
        if !ops.is_empty() {
            node.vault().apply(&ops)?;
        }
        let mut erased = ops.len();
        for record in &records {
            if record.members.contains(&node.id()) {
                // Promotes a pending share (and erases older ones) if needed;
                // a member that lost its share is repaired separately.
                let _ = self.share_bytes(node, record);
            }
            erased += self.erase_older(node, record)?;
        }
        Ok(erased)
    }
}
