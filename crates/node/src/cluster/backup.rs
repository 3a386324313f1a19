//! Backups of the control plane (`keyquorum snapshot save | verify |
//! restore`).
//!
//! **What a saved file holds** ([`SnapshotFile`]): the newest checkpoint
//! (`checkpoint`: the replicated state at a log index every replica
//! checkpoints at, as its bytes), the members' signed attestations of its
//! digest ([`CheckpointAttestation`], `GET /v1/checkpoints/{index}`), and
//! the whole audit log as the node it was saved from held it (every entry
//! and signed head, including those after the checkpoint). Everything in
//! it is public to an admin; no secret of any node is in it.
//!
//! **Checking a file** ([`check`]) needs no node: the digest is recomputed
//! from the bytes; each attestation is checked against the identity key
//! the checkpoint's own membership record gives its voter, and counts only
//! if that key is one the checker trusts (the operator's CA file, as for
//! join codes): as many trusted voters as a snapshot install needs
//! (`checkpoint::needed`: a majority of the voters, and at least the
//! largest key threshold), at least a majority of the keys trusted (the
//! checkpoint states its own voters and thresholds, so it cannot be the
//! only judge), and at least the operator's floor must attest. The audit entries must chain, end
//! at the checkpoint's head where the checkpoint's log ends, and every
//! signed head must match them and verify under its signer's key.
//!
//! **Restoring** ([`restore`], node stopped) replaces the node's Raft file
//! with one holding the checkpoint as its snapshot and the audit records
//! up to it; the old file is kept beside it. A node restores a checkpoint
//! only if it attested it itself (the state its own log reached), or if
//! the voters of its own current state vouch for it as they would for a
//! snapshot sent to it (when that state no longer reads: enough voters
//! the operator trusts); only if the checkpoint lists it as a member with
//! its own identity key; and, unless told, only if the checkpoint rolls
//! back none of its keys, trees, members or clients.
//!
//! **Why a restore reuses nothing** (DESIGN.md §4 item 5): a restored
//! control plane is an older state, so what was used after the checkpoint
//! looks unused in it. What guards each one-time resource is the
//! participant's own record, not the log:
//! - signing nonces are bound to the node's boot, and a restore needs the
//!   node stopped, so it starts with a new boot and erases every stored
//!   nonce (`keys::sign`);
//! - a signing tree's leaf is locked once, durably, by each member of a
//!   lock quorum: a leaf the restored log hands out again is refused by
//!   the members that locked it, and the signer moves on (`seedtree::member`);
//! - a messaging prekey's secret is held by the receiving endpoint, which
//!   deletes it when it processes the message sealed to it: a prekey the
//!   restored log hands out again opens nothing (`keyquorum_client::msg`);
//! - PIN guesses are counted by each guardian too (`recovery::pin`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use keyquorum_core::merkle::{self, Frontier};
use keyquorum_wire::api::{checkpoint_statement, CheckpointAttestation, SnapshotDownload};
use keyquorum_wire::control::{AuditEntry, NodeInfo, SignedHead, TypeConfig};
use keyquorum_wire::{Hex, Hex32, NodeId};
use openraft::SnapshotMeta;
use serde::{Deserialize, Serialize};

use super::audit::log::{audit_hash, head_signing_bytes};
use super::checkpoint::{largest_threshold, needed, CHECKPOINT_FORMAT};
use super::join::genesis;
use super::{Node, Registry};
use crate::error::NodeError;

/// The `format` of a saved file.
pub const FILE_FORMAT: &str = "keyquorum-snapshot-v1";

/// The Raft file in a node's data directory.
pub const RAFT_FILE: &str = "raft.redb";

/// A saved control plane (see the module text).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotFile {
    /// [`FILE_FORMAT`].
    pub format: String,
    /// When it was saved (ms since the Unix epoch).
    pub saved_ms: u64,
    /// The node it was saved from.
    pub saved_from: String,
    /// The checkpoint's Raft metadata.
    pub meta: serde_json::Value,
    /// The checkpoint's bytes (JSON text).
    pub data: String,
    /// Members' attestations of the checkpoint.
    pub attestations: Vec<CheckpointAttestation>,
    /// The audit log's signed heads, in the order they were applied.
    pub heads: Vec<SignedHead>,
    /// The audit log's entries from the first.
    pub entries: Vec<AuditEntry>,
}

/// Why a saved file is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// It is not a well-formed file of this build's format.
    #[error("not a snapshot this build reads: {0}")]
    Malformed(String),
    /// Too few trusted members attest its checkpoint.
    #[error("the checkpoint is not vouched for: {0}")]
    Unvouched(String),
    /// Its audit log is not the checkpoint's, or does not verify.
    #[error("the audit log in the file does not verify: {0}")]
    Audit(String),
    /// The node restoring it is not a member in it.
    #[error("{0}")]
    NotMember(String),
    /// Reading or writing files.
    #[error("{0}")]
    Io(String),
    /// The node's current state has keys or trees newer than the
    /// checkpoint, which the restore would lose.
    #[error(
        "restoring would lose what was made or changed after the checkpoint: {}. Save again \
         if the cluster still runs; otherwise pass --lose-newer (their shares on this node \
         become unusable)",
        .0.join(", ")
    )]
    Newer(Vec<String>),
}

/// What [`check`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// The checkpoint's log index.
    pub index: u64,
    /// Its digest.
    pub digest: Hex32,
    /// The cluster's genesis.
    pub genesis: Hex32,
    /// The voters of its membership record.
    pub voters: Vec<NodeId>,
    /// How many trusted voters must attest it.
    pub needed: usize,
    /// Voters whose attestation verifies.
    pub attested_by: Vec<NodeId>,
    /// Those among them whose identity the checker trusts.
    pub trusted_by: Vec<NodeId>,
    /// Audit entries the checkpoint covers (restored with it).
    pub audit_entries: u64,
    /// Audit entries in the file after the checkpoint (a record of what
    /// happened after it; a restore does not bring them back).
    pub audit_after: u64,
    /// Signed heads the checkpoint covers.
    pub heads: u64,
    /// Signed heads whose signer's key the checkpoint's record gives and
    /// whose signature verified (the others name a signer it does not).
    pub heads_verified: usize,
    /// Keys the checkpoint names.
    pub keys: usize,
    /// Signing trees it names.
    pub trees: usize,
    /// Clients it lists.
    pub clients: usize,
}

/// A file examined: what was found, and the parts a restore writes.
struct Examined {
    checked: Checked,
    meta: SnapshotMeta<u64, NodeInfo>,
    registry: Registry,
}

/// The checkpoint's bytes as the store writes them: the machine is all
/// this reads.
#[derive(Deserialize)]
struct Data {
    machine: Registry,
}

/// The voters of a checkpoint's membership record, with their addresses
/// and keys (whom `keyquorum snapshot save` asks for attestations).
pub fn voters_of(data: &str) -> Result<Vec<(NodeId, NodeInfo)>, BackupError> {
    let Data { machine: r } = serde_json::from_str(data).map_err(malformed)?;
    Ok(r.roster
        .voters()
        .map(|(id, info)| (id, info.clone()))
        .collect())
}

fn malformed(e: impl std::fmt::Display) -> BackupError {
    BackupError::Malformed(e.to_string())
}

/// Read a saved file (at most 2 GiB).
pub fn read_file(path: &Path) -> Result<SnapshotFile, BackupError> {
    const MAX: u64 = 2 << 30;
    let io = |e: std::io::Error| BackupError::Io(format!("{}: {e}", path.display()));
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX {
        return Err(BackupError::Malformed(format!(
            "{} is {len} bytes, more than a snapshot file may be",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    serde_json::from_slice(&bytes).map_err(malformed)
}

/// Write `file` to `path` whole (a temporary file synced and renamed),
/// readable by its owner only.
pub fn write_file(path: &Path, file: &SnapshotFile) -> Result<(), BackupError> {
    let bytes = serde_json::to_vec(file).map_err(malformed)?;
    crate::config::write_private(path, &bytes).map_err(|e| BackupError::Io(e.to_string()))
}

/// Check `file` offline: its checkpoint attested by as many voters whose
/// identity keys are among `trusted` as a snapshot install needs, a
/// majority of `trusted` and `min` (the operator's floor: a key's
/// threshold above a majority, which a forged checkpoint would not state),
/// and its audit log (see the module text).
pub fn check(
    file: &SnapshotFile,
    trusted: &[[u8; 32]],
    min: usize,
) -> Result<Checked, BackupError> {
    let e = examine(file, trusted, min)?;
    if e.checked.trusted_by.len() < e.checked.needed {
        return Err(unvouched(&e.checked));
    }
    Ok(e.checked)
}

fn unvouched(c: &Checked) -> BackupError {
    BackupError::Unvouched(format!(
        "{} trusted voters attest checkpoint {} ({:?}; {} attested in all), {} needed: give the \
         CA file holding the members' certificates",
        c.trusted_by.len(),
        c.index,
        c.trusted_by,
        c.attested_by.len(),
        c.needed
    ))
}

/// A majority of `n` trusted identities (none of none).
fn majority(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        n / 2 + 1
    }
}

fn examine(file: &SnapshotFile, trusted: &[[u8; 32]], min: usize) -> Result<Examined, BackupError> {
    if file.format != FILE_FORMAT {
        return Err(BackupError::Malformed(format!(
            "format {:?}, not {FILE_FORMAT:?}",
            file.format
        )));
    }
    let meta: SnapshotMeta<u64, NodeInfo> =
        serde_json::from_value(file.meta.clone()).map_err(malformed)?;
    let Some(index) = meta.last_log_id.map(|l| l.index) else {
        return Err(malformed("the checkpoint has no log position"));
    };
    let digest = Hex32(
        keyquorum_store::raft::checkpoint::digest(&meta, file.data.as_bytes())
            .map_err(malformed)?,
    );
    super::checkpoint::check_rules(file.data.as_bytes())
        .map_err(|e| BackupError::Malformed(e.to_string()))?;
    let Data { machine: registry } = serde_json::from_str(&file.data).map_err(malformed)?;
    if !registry.roster.in_force || registry.founders.is_empty() {
        return Err(malformed(
            "the checkpoint is from before the cluster was initialised",
        ));
    }
    // One identity, one vote: a record listing a key twice is not one a
    // cluster makes (an AddNode of a known identity is refused).
    let mut keys_seen = BTreeSet::new();
    if !registry
        .roster
        .nodes
        .values()
        .all(|n| keys_seen.insert(n.info.identity))
    {
        return Err(malformed("the checkpoint lists an identity key twice"));
    }
    let gen = Hex32(genesis(&registry.founders));
    let voters: BTreeMap<NodeId, Hex32> = registry
        .roster
        .voters()
        .map(|(id, info)| (id, info.identity))
        .collect();
    let largest = largest_threshold(&registry);
    // The checkpoint states its own voters and thresholds, so it cannot
    // be the only judge of how many must vouch for it (a forged one would
    // name one voter): at least a majority of the identities trusted too.
    let distinct: BTreeSet<[u8; 32]> = trusted.iter().copied().collect();
    let stated_need = needed(voters.len(), voters.len(), largest).unwrap_or(usize::MAX);
    let need = stated_need.max(majority(distinct.len())).max(min);
    let mut attested_by = BTreeSet::new();
    let mut trusted_by = BTreeSet::new();
    for a in &file.attestations {
        let Some(identity) = voters.get(&a.node) else {
            continue;
        };
        let statement = checkpoint_statement(a.node, &a.genesis, a.index, a.format, &a.digest);
        let good = a.identity == *identity
            && a.genesis == gen
            && a.index == index
            && a.format == CHECKPOINT_FORMAT
            && a.digest == digest
            && crate::identity::verify(identity, &statement, &a.signature.0);
        if !good {
            continue;
        }
        attested_by.insert(a.node);
        if trusted.contains(&identity.0) {
            trusted_by.insert(a.node);
        }
    }
    let (after, heads_verified) = check_audit(&registry, &file.entries, &file.heads)?;
    let checked = Checked {
        index,
        digest,
        genesis: gen,
        voters: voters.keys().copied().collect(),
        needed: need,
        attested_by: attested_by.into_iter().collect(),
        trusted_by: trusted_by.into_iter().collect(),
        audit_entries: registry.audit.len(),
        audit_after: after,
        heads: registry.audit.head_count(),
        heads_verified,
        keys: registry.keys.records.len(),
        trees: registry.seedtree.trees.len(),
        clients: registry.clients.len(),
    };
    Ok(Examined {
        checked,
        meta,
        registry,
    })
}

/// Check the file's audit log against the checkpoint's head: entries from
/// 0, each linked and hashed, the checkpoint's last entry and root where
/// its log ends; heads matching the entries and, where the record names
/// their signer's key, signed by it. Answers the entries after the
/// checkpoint and the heads verified.
fn check_audit(
    r: &Registry,
    entries: &[AuditEntry],
    heads: &[SignedHead],
) -> Result<(u64, usize), BackupError> {
    let bad = |m: String| BackupError::Audit(m);
    let len = r.audit.len();
    if (entries.len() as u64) < len {
        return Err(bad(format!(
            "the file holds {} entries; the checkpoint's log has {len}",
            entries.len()
        )));
    }
    if (heads.len() as u64) < r.audit.head_count() {
        return Err(bad(format!(
            "the file holds {} signed heads; the checkpoint's log has {}",
            heads.len(),
            r.audit.head_count()
        )));
    }
    // The heads the checkpoint counts are the first ones applied: each
    // within its entries, the last its latest head.
    let counted = usize::try_from(r.audit.head_count()).unwrap_or(usize::MAX);
    let first = heads.get(..counted).unwrap_or(heads);
    if first.iter().any(|h| h.seq >= len) || first.last() != r.audit.last_head() {
        return Err(bad(
            "the file's first signed heads are not the checkpoint's".into(),
        ));
    }
    let mut by_seq: BTreeMap<u64, Vec<&SignedHead>> = BTreeMap::new();
    for h in heads {
        by_seq.entry(h.seq).or_default().push(h);
    }
    let mut frontier = Frontier::default();
    let mut prev = Hex32::default();
    let mut verified = 0usize;
    for (i, e) in entries.iter().enumerate() {
        if e.seq != i as u64 || e.prev != prev || audit_hash(e.seq, &e.prev, &e.event) != e.hash {
            return Err(bad(format!("entry {i} does not link or hash")));
        }
        prev = e.hash;
        frontier.push(merkle::leaf_hash(&e.hash.0));
        if e.seq + 1 == len
            && (e.hash != r.audit.last_hash() || Hex32(frontier.root()) != r.audit.root())
        {
            return Err(bad(format!(
                "entry {} is not the checkpoint's last entry",
                e.seq
            )));
        }
        for h in by_seq.remove(&e.seq).unwrap_or_default() {
            let root = Hex32(frontier.root());
            if h.hash != e.hash || h.root.is_some_and(|x| x != root) {
                return Err(bad(format!(
                    "node {}'s head at entry {} is not this log's",
                    h.signer, h.seq
                )));
            }
            if let Some(key) = r.head_signer(h.signer, h.seq) {
                let bytes = head_signing_bytes(h.seq, &h.hash, h.root.as_ref());
                if !crate::identity::verify(&key, &bytes, &h.signature.0) {
                    return Err(bad(format!(
                        "node {}'s head at entry {} has a bad signature",
                        h.signer, h.seq
                    )));
                }
                verified += 1;
            }
        }
    }
    if let Some((seq, _)) = by_seq.first_key_value() {
        return Err(bad(format!(
            "a signed head at entry {seq}, past the entries in the file"
        )));
    }
    Ok((entries.len() as u64 - len, verified))
}

impl Node {
    /// This node's signed attestation of its checkpoint at `index` (not
    /// found if it holds none there: it keeps the newest few).
    pub fn checkpoint_attestation(&self, index: u64) -> Result<CheckpointAttestation, NodeError> {
        let founders = self.registry(|r| r.founders.clone());
        if founders.is_empty() {
            return Err(NodeError::Conflict(
                "the cluster is not initialised yet (keyquorum init)".into(),
            ));
        }
        let digest = self.0.checkpoints.digest_at(index).ok_or_else(|| {
            NodeError::NotFound(format!(
                "node {} holds no checkpoint at index {index} (it keeps its newest few)",
                self.id()
            ))
        })?;
        let gen = Hex32(genesis(&founders));
        let digest = Hex32(digest);
        let statement = checkpoint_statement(self.id(), &gen, index, CHECKPOINT_FORMAT, &digest);
        Ok(CheckpointAttestation {
            node: self.id(),
            identity: self.0.keys.identity(),
            genesis: gen,
            index,
            format: CHECKPOINT_FORMAT,
            digest,
            signature: Hex(self.0.keys.sign(&statement).to_vec()),
        })
    }

    /// The newest checkpoint this node holds, its attestation of it and
    /// the audit log's signed heads (`GET /v1/snapshot`). Blocking reads:
    /// call it from a blocking thread.
    pub fn snapshot_download(&self) -> Result<SnapshotDownload, NodeError> {
        let stored = self
            .0
            .side
            .stored_snapshot::<TypeConfig>()
            .map_err(|e| NodeError::Internal(e.to_string()))?;
        let Some((meta, data)) = stored else {
            return Err(NodeError::Conflict(
                "this node holds no checkpoint yet: try again once the log has passed its first \
                 (checkpoint_every entries)"
                    .into(),
            ));
        };
        let index = meta.last_log_id.map(|l| l.index).unwrap_or_default();
        let attestation = self.checkpoint_attestation(index)?;
        let data = String::from_utf8(data)
            .map_err(|_| NodeError::Internal("a checkpoint that is not JSON text".into()))?;
        let meta = serde_json::to_value(&meta).map_err(|e| NodeError::Internal(e.to_string()))?;
        let heads = self.audit_heads(0, usize::MAX)?;
        Ok(SnapshotDownload {
            meta,
            data,
            attestation,
            heads,
        })
    }
}

mod restore;
#[cfg(test)]
mod tests;

pub use restore::{restore, RestoreOptions, Restored};
