//! Restoring a node's control plane from a saved file ([`restore`], the
//! node stopped): the checks of the module above, then the node's Raft file
//! replaced with one holding the checkpoint, marked restored, as its
//! snapshot, and the audit records up to it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use keyquorum_store::raft::SideWrite;
use keyquorum_wire::control::TypeConfig;
use keyquorum_wire::{Hex32, NodeId};
use serde::Serialize;

use super::super::audit::log::{SPACE_ENTRY, SPACE_HEAD};
use super::super::checkpoint::{largest_threshold, needed};
use super::super::Registry;
use super::{examine, malformed, unvouched, BackupError, Checked, SnapshotFile, RAFT_FILE};

/// What [`restore`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// The file checked.
    #[serde(flatten)]
    pub checked: Checked,
    /// Whether this node had attested the checkpoint itself.
    pub own: bool,
    /// Where the node's previous Raft file was moved (none if it had
    /// none).
    pub previous: Option<PathBuf>,
    /// What of that file's state the checkpoint rolls back (only with
    /// `lose_newer`).
    pub lost: Vec<String>,
    /// Whether that file's state was read (`read`), or why not.
    pub previous_state: String,
}

/// How a node restores ([`restore`]).
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Identity keys the operator trusts (the CA file's): needed unless
    /// the node attested the checkpoint itself.
    pub trusted: Vec<[u8; 32]>,
    /// The least number of trusted attestations asked for then (a key's
    /// threshold above a majority: a forged checkpoint would not state it).
    pub min: usize,
    /// Restore even if what the checkpoint lacks cannot be told, or would
    /// be lost.
    pub lose_newer: bool,
    /// Now (ms since the Unix epoch), to name the old file.
    pub now_ms: u64,
    /// This restore's label, the same on every node and never used for
    /// another restore (`--restore-id`): with the checkpoint it names the
    /// restore the voters' boots count for
    /// (`machine::clock::RestoreFloor`), so boots from an earlier restore
    /// of the same file count for nothing. Required (not empty).
    pub label: String,
}

/// Restore the control plane of node `id`, whose public identity key is
/// `identity` and data directory `data_dir` (the node stopped), from
/// `file`. Accepted if the node attested the checkpoint itself; otherwise
/// (the CA file then required) if as many voters attested it as [`check`](super::check)
/// asks with `opts.min`, and, where the node's Raft file still reads, as
/// many as its own state's voters would to vouch for a snapshot sent to it
/// (its voters count too, under the keys it gives them). Refused if the node's state has keys, trees,
/// members or clients the checkpoint would roll back, or if that cannot be
/// told, unless `opts.lose_newer`. The node's Raft file is moved to
/// `raft.redb.before-restore-MS`; its vault is not touched.
pub fn restore(
    data_dir: &Path,
    id: NodeId,
    identity: Hex32,
    file: &SnapshotFile,
    opts: &RestoreOptions,
) -> Result<Restored, BackupError> {
    use keyquorum_store::raft::restore::{previous, Previous};
    let e = examine(file, &opts.trusted, opts.min)?;
    let listed = e.registry.roster.nodes.get(&id).map(|n| n.info.identity);
    if listed != Some(identity) {
        return Err(BackupError::NotMember(format!(
            "the checkpoint does not list node {id} with this node's identity {identity}: it is \
             not this node's cluster, or the node joined after it was saved (join it again)"
        )));
    }
    let path = data_dir.join(RAFT_FILE);
    let before =
        previous::<TypeConfig, Registry>(&path).map_err(|err| BackupError::Io(err.to_string()))?;
    let (old_vote, now, unread) = match before {
        Previous::Absent => (
            None,
            None,
            Some(format!("{} does not exist", path.display())),
        ),
        Previous::Unreadable { why, vote } => {
            (vote, None, Some(format!("{}: {why}", path.display())))
        }
        Previous::Read { vote, state } => match state.filter(|r| r.roster.in_force) {
            Some(state) => (vote, Some(state), None),
            None => (
                vote,
                None,
                Some(format!("{} holds no initialised state", path.display())),
            ),
        },
    };
    let own = e.checked.attested_by.contains(&id);
    if !own && opts.trusted.is_empty() {
        return Err(BackupError::Unvouched(
            "this node did not attest the checkpoint itself: give the CA file of the members' \
             certificates (--ca-cert)"
                .into(),
        ));
    }
    let mut checked = e.checked;
    let lost = match &now {
        Some(now) => {
            // Counted as `check` counts (the CA file's voters, its
            // majority, the operator's floor) and as a snapshot sent to
            // this node would be: the voters of its own state, under the
            // keys it gives them, as many as it would ask. A state that
            // missed changes (the node was down while members were
            // added) asks too few; the CA file's majority does not.
            let voters: BTreeMap<NodeId, Hex32> = now
                .roster
                .voters()
                .map(|(id, info)| (id, info.identity))
                .collect();
            let listed_then: BTreeMap<NodeId, Hex32> = e
                .registry
                .roster
                .nodes
                .iter()
                .map(|(id, n)| (*id, n.info.identity))
                .collect();
            let mut trusted_by: BTreeSet<NodeId> = checked.trusted_by.iter().copied().collect();
            trusted_by.extend(
                checked
                    .attested_by
                    .iter()
                    .filter(|n| voters.contains_key(n) && voters.get(n) == listed_then.get(n)),
            );
            checked.trusted_by = trusted_by.into_iter().collect();
            let need =
                needed(voters.len(), voters.len(), largest_threshold(now)).unwrap_or(usize::MAX);
            checked.needed = checked.needed.max(need);
            newer(now, &e.registry)
        }
        None => vec![format!(
            "what the checkpoint lacks cannot be told ({})",
            unread.clone().unwrap_or_default()
        )],
    };
    if !own && checked.trusted_by.len() < checked.needed {
        return Err(unvouched(&checked));
    }
    if !lost.is_empty() && !opts.lose_newer {
        return Err(BackupError::Newer(lost));
    }
    // The checkpoint's state, marked restored: what was signed after the
    // checkpoint is forgotten with its nonces, so nothing signed before the
    // voters start on the restored state is taken
    // (`machine::clock::RestoreFloor`). Every node restoring this file
    // writes the same state.
    if opts.label.is_empty() {
        return Err(BackupError::Malformed(
            "a restore needs a label (--restore-id), the same on every node and new for each \
             restore"
                .into(),
        ));
    }
    let restore_id = {
        use sha2::Digest as _;
        Hex32(
            sha2::Sha256::new()
                .chain_update(b"keyquorum restore\0")
                .chain_update((opts.label.len() as u64).to_be_bytes())
                .chain_update(opts.label.as_bytes())
                .chain_update(file.data.as_bytes())
                .finalize()
                .into(),
        )
    };
    let mut marked = e.registry.clone();
    marked.clock.begin_restore(restore_id);
    let mut data: serde_json::Value = serde_json::from_str(&file.data).map_err(malformed)?;
    data.as_object_mut()
        .ok_or_else(|| BackupError::Malformed("the checkpoint is not a JSON object".into()))?
        .insert(
            "machine".into(),
            serde_json::to_value(&marked).map_err(malformed)?,
        );
    let data = serde_json::to_vec(&data).map_err(malformed)?;
    // The audit records up to the checkpoint: entries and signed heads
    // (the keeper computes the tree's subtrees from the entries).
    let mut side = Vec::new();
    for entry in file
        .entries
        .iter()
        .take_while(|x| x.seq < e.registry.audit.len())
    {
        side.push(SideWrite {
            space: SPACE_ENTRY,
            key: entry.seq,
            value: serde_json::to_vec(entry).map_err(malformed)?,
        });
    }
    for (i, h) in file.heads.iter().enumerate() {
        // `check_audit` saw the first `head_count` all end within the
        // checkpoint's entries.
        if i as u64 >= e.registry.audit.head_count() {
            break;
        }
        side.push(SideWrite {
            space: SPACE_HEAD,
            key: i as u64,
            value: serde_json::to_vec(h).map_err(malformed)?,
        });
    }
    // A vote for itself in a term past both the checkpoint's and the one
    // this node last voted in (votes only go up), so elections after the
    // restore start past every term its log holds.
    let term = e
        .meta
        .last_log_id
        .map_or(0, |l| l.leader_id.term)
        .max(old_vote.map_or(0, |v| v.leader_id().get_term()))
        .saturating_add(1);
    let vote = openraft::Vote::new(term, u64::from(id.get()));
    // The new file is written whole beside the old one, then the old one
    // is moved aside and the new one into place.
    let fresh = data_dir.join(format!("{RAFT_FILE}.restored"));
    if fresh.exists() {
        std::fs::remove_file(&fresh)
            .map_err(|err| BackupError::Io(format!("{}: {err}", fresh.display())))?;
    }
    keyquorum_store::raft::restore::restore::<TypeConfig>(&fresh, &e.meta, &data, &vote, &side)
        .map_err(|err| BackupError::Io(err.to_string()))?;
    // The old file is kept under a second name (a hard link, or a copy
    // where there are none), then the new one replaces it in one rename:
    // a crash leaves the old file or the new one at `raft.redb`, never
    // neither.
    let previous = if path.exists() {
        let aside = data_dir.join(format!("{RAFT_FILE}.before-restore-{}", opts.now_ms));
        std::fs::hard_link(&path, &aside)
            .or_else(|_| std::fs::copy(&path, &aside).map(|_| ()))
            .map_err(|err| BackupError::Io(format!("keeping {}: {err}", path.display())))?;
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&fresh, &path)
        .map_err(|err| BackupError::Io(format!("{}: {err}", path.display())))?;
    if let Ok(dir) = std::fs::File::open(data_dir) {
        // Best effort: not every platform syncs a directory.
        let _ = dir.sync_all();
    }
    Ok(Restored {
        checked,
        own,
        previous,
        lost,
        previous_state: unread.map_or_else(|| "read".into(), |u| format!("not read: {u}")),
    })
}

/// What in `now` a restore to `then` rolls back: keys made, refreshed or
/// reshared (the members erased the older shares, or hold shares the
/// state no longer names), signing trees made or reshared, members added, changed or
/// removed, clients added, revoked or given another grant, the operator
/// quorum changed, exports carried out.
fn newer(now: &Registry, then: &Registry) -> Vec<String> {
    let keys = now
        .keys
        .records
        .iter()
        .filter_map(|(name, k)| match then.keys.records.get(name) {
            Some(old) if old.epoch >= k.epoch => None,
            Some(old) => Some(format!(
                "key {name} (epoch {} after {})",
                k.epoch, old.epoch
            )),
            None => Some(format!("key {name}")),
        });
    let trees =
        now.seedtree
            .trees
            .iter()
            .filter_map(|(name, t)| match then.seedtree.trees.get(name) {
                // A reshare's holders erased the older sharing's rows.
                Some(old) if old.epoch >= t.epoch => None,
                Some(old) => Some(format!(
                    "signing tree {name} (sharing {} after {})",
                    t.epoch, old.epoch
                )),
                None => Some(format!("signing tree {name}")),
            });
    let members = now
        .roster
        .nodes
        .iter()
        .filter(|(id, n)| then.roster.nodes.get(*id) != Some(*n))
        .map(|(id, _)| format!("member {id} (added or changed)"))
        .chain(
            then.roster
                .nodes
                .keys()
                .filter(|id| !now.roster.nodes.contains_key(*id))
                .map(|id| format!("member {id} (removed)")),
        );
    let clients = now
        .clients
        .iter()
        .filter_map(|(name, c)| match then.clients.get(name) {
            None => Some(format!("client {name}")),
            Some(old) if c.revoked && !old.revoked => Some(format!("client {name} (revoked)")),
            Some(old) if old.grant != c.grant => Some(format!("client {name} (grant changed)")),
            Some(_) => None,
        });
    let quorum = (now.operators.quorum != then.operators.quorum).then(|| {
        format!(
            "the operator quorum ({} now, {} in the checkpoint)",
            now.operators.quorum, then.operators.quorum
        )
    });
    let exports = now.keys.exports.iter().filter_map(|(id, x)| {
        let done_then = then.keys.exports.get(id).is_some_and(|o| o.done);
        (x.done && !done_then).then(|| format!("export {id} (carried out)"))
    });
    keys.chain(trees)
        .chain(members)
        .chain(clients)
        .chain(quorum)
        .chain(exports)
        .collect()
}
