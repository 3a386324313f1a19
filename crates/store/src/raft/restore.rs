//! A Raft file made from a saved snapshot: the control plane restored.
//!
//! [`restore`] writes a new file holding one snapshot as the stored one,
//! the log empty and purged up to the snapshot's last entry (as a
//! compaction would leave it), the committed id at that entry, and the
//! side records the snapshot's owner saved with it. Opened, the store
//! loads the snapshot as its state and openraft takes the log up after
//! it. The file is written under a temporary name and renamed into place
//! once it is whole and on disk, so a crash leaves either no file or the
//! whole one. What makes a snapshot worth restoring (the members vouch
//! for it) is the caller's to check.

use std::path::Path;

use openraft::{RaftTypeConfig, SnapshotMeta, Vote};
use redb::{Database, Durability};
use serde::Serialize;

use super::side::{SideWrite, SIDE};
use super::{LOG, META, SNAPSHOT};

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
#[error("restoring the Raft file: {0}")]
pub struct RestoreError(String);

fn err(e: impl std::fmt::Display) -> RestoreError {
    RestoreError(e.to_string())
}

/// Write a new Raft file at `path` (which must not exist) whose state is
/// the snapshot `meta`/`data`, with `vote` as the stored vote and `side`
/// as its side records.
pub fn restore<C: RaftTypeConfig>(
    path: &Path,
    meta: &SnapshotMeta<C::NodeId, C::Node>,
    data: &[u8],
    vote: &Vote<C::NodeId>,
    side: &[SideWrite],
) -> Result<(), RestoreError>
where
    C::Node: Serialize,
    C::NodeId: Serialize,
{
    if path.exists() {
        return Err(err(format!(
            "{} exists: move it aside first",
            path.display()
        )));
    }
    let Some(last) = meta.last_log_id.clone() else {
        return Err(err("the snapshot has no log position"));
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".restoring");
    let tmp = std::path::PathBuf::from(tmp);
    // A file left by an earlier attempt that crashed is not a store.
    if tmp.exists() {
        std::fs::remove_file(&tmp).map_err(err)?;
    }
    {
        let db = Database::create(&tmp).map_err(err)?;
        let mut tx = db.begin_write().map_err(err)?;
        tx.set_durability(Durability::Immediate);
        {
            tx.open_table(LOG).map_err(err)?;
            let mut m = tx.open_table(META).map_err(err)?;
            let purged = serde_json::to_vec(&Some(last.clone())).map_err(err)?;
            m.insert("last_purged", purged.as_slice()).map_err(err)?;
            let committed = serde_json::to_vec(&Some(last)).map_err(err)?;
            m.insert("committed", committed.as_slice()).map_err(err)?;
            let vote = serde_json::to_vec(vote).map_err(err)?;
            m.insert("vote", vote.as_slice()).map_err(err)?;
            let mut s = tx.open_table(SNAPSHOT).map_err(err)?;
            let meta = serde_json::to_vec(meta).map_err(err)?;
            s.insert("meta", meta.as_slice()).map_err(err)?;
            s.insert("data", data).map_err(err)?;
            let mut t = tx.open_table(SIDE).map_err(err)?;
            for w in side {
                t.insert((w.space, w.key), w.value.as_slice())
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename on disk too (best effort where directories cannot be
        // opened for syncing).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// A stored snapshot: its metadata and bytes.
pub type StoredSnapshot<C> = (
    SnapshotMeta<<C as RaftTypeConfig>::NodeId, <C as RaftTypeConfig>::Node>,
    Vec<u8>,
);

/// What the Raft file about to be replaced still tells.
pub enum Previous<C: RaftTypeConfig, M> {
    /// There is no file.
    Absent,
    /// There is one, but its state does not read.
    Unreadable {
        /// Why.
        why: String,
        /// Its vote, if that much reads.
        vote: Option<Vote<C::NodeId>>,
    },
    /// Its vote and its state: its stored snapshot with every entry of
    /// its log after it applied, committed or not.
    Read {
        /// The vote it holds.
        vote: Option<Vote<C::NodeId>>,
        /// The state, if it has any (none before its first snapshot or
        /// entry).
        state: Option<M>,
    },
}

/// The snapshot's bytes as the store writes them.
#[derive(serde::Deserialize)]
#[serde(bound = "")]
struct Stored<M: super::Machine> {
    machine: M,
}

/// Read the Raft file at `path` before it is replaced: an error if a
/// process has it open (redb locks an open file: stop the node first).
pub fn previous<C, M>(path: &Path) -> Result<Previous<C, M>, RestoreError>
where
    C: RaftTypeConfig<D = M::Command, Entry = openraft::Entry<C>>,
    M: super::Machine,
    C::D: serde::de::DeserializeOwned,
    C::Node: Serialize + serde::de::DeserializeOwned,
    C::NodeId: Serialize + serde::de::DeserializeOwned,
{
    if !path.exists() {
        return Ok(Previous::Absent);
    }
    let db = match Database::open(path) {
        Ok(db) => db,
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(err(format!(
                "{} is open: stop the node first",
                path.display()
            )))
        }
        Err(e) => {
            return Ok(Previous::Unreadable {
                why: e.to_string(),
                vote: None,
            })
        }
    };
    // The vote first: it bounds the restored one even if the state does
    // not read.
    let vote = super::get_meta::<Vote<C::NodeId>, C::NodeId>(&db, "vote")
        .ok()
        .flatten();
    match replay::<C, M>(&db) {
        Ok(state) => Ok(Previous::Read { vote, state }),
        Err(e) => Ok(Previous::Unreadable { why: e.0, vote }),
    }
}

/// The state of an opened Raft file: its snapshot with the entries after
/// it applied, which must follow it without a gap.
fn replay<C, M>(db: &Database) -> Result<Option<M>, RestoreError>
where
    C: RaftTypeConfig<D = M::Command, Entry = openraft::Entry<C>>,
    M: super::Machine,
    C::D: serde::de::DeserializeOwned,
    C::Node: Serialize + serde::de::DeserializeOwned,
    C::NodeId: Serialize + serde::de::DeserializeOwned,
{
    use openraft::EntryPayload;
    let (mut machine, from) = match super::machine::load_snapshot::<C>(db).map_err(err)? {
        Some((meta, data)) => {
            let s: Stored<M> = serde_json::from_slice(&data).map_err(err)?;
            // A newer build's state reads without what this build does not
            // know: unreadable here, not a state to compare the backup with.
            s.machine.check_state().map_err(err)?;
            (Some(s.machine), meta.last_log_id.map_or(0, |l| l.index + 1))
        }
        None => (None, 0),
    };
    // Every entry the log holds after the snapshot, committed or not: the
    // committed id is a hint that may lag, and what the state might hold
    // is what matters here (apply still refuses what is not authorized).
    let tx = db.begin_read().map_err(err)?;
    let log = tx.open_table(LOG).map_err(err)?;
    for (next, item) in (from..).zip(log.range(from..).map_err(err)?) {
        let (_, v) = item.map_err(err)?;
        let entry: openraft::Entry<C> = serde_json::from_slice(v.value()).map_err(err)?;
        if entry.log_id.index != next {
            return Err(err(format!(
                "the log skips from entry {next} to {}",
                entry.log_id.index
            )));
        }
        let m = machine.get_or_insert_with(M::default);
        match &entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Normal(cmd) => {
                let _ = m.apply(entry.log_id.index, cmd);
            }
            EntryPayload::Membership(ms) => {
                let nodes: Vec<_> = ms.nodes().map(|(id, n)| (id.clone(), n.clone())).collect();
                let voters: Vec<_> = ms.voter_ids().collect();
                m.membership(entry.log_id.index, &nodes, &voters);
            }
        }
    }
    Ok(machine)
}
