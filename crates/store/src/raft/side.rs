//! Side records: what a [`Machine`](super::Machine) keeps outside itself and outside its
//! snapshots (the audit log's entries and tree), in the Raft file's own
//! `side` table, keyed by `(space, key)`.
//!
//! Applying an entry hands its records to the store ([`Machine::take_side`](super::Machine::take_side)),
//! which writes them before `apply` returns, in a transaction without its
//! own fsync: the next durable write to the file (an append, a snapshot)
//! makes them durable with it. A snapshot is stored after the entries it
//! covers were applied, so a stored snapshot's records are on disk; records
//! lost in a crash belong to entries after the last snapshot, which openraft
//! applies again on restart (writing the same records). A snapshot installed
//! from the leader carries none: the machine learns which it lacks and its
//! owner fetches them ([`Side::put`]).

use std::sync::{Arc, Weak};

use redb::{Durability, TableDefinition};

use super::RaftFile;

/// The side table.
pub(super) const SIDE: TableDefinition<'static, (u32, u64), &'static [u8]> =
    TableDefinition::new("side");

/// One record to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideWrite {
    /// Which kind of record (the machine's own numbering).
    pub space: u32,
    /// Its key within the space.
    pub key: u64,
    /// Its bytes.
    pub value: Vec<u8>,
}

/// Why a side read or write failed.
#[derive(Debug, thiserror::Error)]
#[error("side records: {0}")]
pub struct SideError(String);

fn err(e: impl std::fmt::Display) -> SideError {
    SideError(e.to_string())
}

/// A handle on the side table. It does not keep the file open: once the
/// stores are dropped, every call fails.
#[derive(Clone)]
pub struct Side {
    db: Weak<RaftFile>,
}

impl std::fmt::Debug for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Side").finish_non_exhaustive()
    }
}

impl Side {
    pub(super) fn new(db: &Arc<RaftFile>) -> Self {
        Self {
            db: Arc::downgrade(db),
        }
    }

    fn file(&self) -> Result<Arc<RaftFile>, SideError> {
        self.db
            .upgrade()
            .ok_or_else(|| err("the Raft file is closed"))
    }

    /// The record at `(space, key)`.
    pub fn get(&self, space: u32, key: u64) -> Result<Option<Vec<u8>>, SideError> {
        let db = self.file()?;
        let tx = db.begin_read().map_err(err)?;
        let t = tx.open_table(SIDE).map_err(err)?;
        Ok(t.get((space, key))
            .map_err(err)?
            .map(|v| v.value().to_vec()))
    }

    /// Up to `limit` records of `space` with keys `from` and above, in key
    /// order.
    pub fn range(
        &self,
        space: u32,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, SideError> {
        self.range_within(space, from, limit, usize::MAX)
    }

    /// As [`Side::range`], but stop after the record that takes the values
    /// read past `max_bytes` (at least one record is read): what a reader
    /// holds in memory is bounded by bytes, not only by records.
    pub fn range_within(
        &self,
        space: u32,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, SideError> {
        let db = self.file()?;
        let tx = db.begin_read().map_err(err)?;
        let t = tx.open_table(SIDE).map_err(err)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in t.range((space, from)..=(space, u64::MAX)).map_err(err)? {
            if out.len() >= limit || bytes > max_bytes {
                break;
            }
            let (k, v) = item.map_err(err)?;
            let v = v.value().to_vec();
            bytes = bytes.saturating_add(v.len());
            out.push((k.value().1, v));
        }
        Ok(out)
    }

    /// The keys of up to `limit` records of `space` from `from` on, in
    /// order (their values are not read).
    pub fn keys(&self, space: u32, from: u64, limit: usize) -> Result<Vec<u64>, SideError> {
        let db = self.file()?;
        let tx = db.begin_read().map_err(err)?;
        let t = tx.open_table(SIDE).map_err(err)?;
        let mut out = Vec::new();
        for item in t.range((space, from)..=(space, u64::MAX)).map_err(err)? {
            if out.len() >= limit {
                break;
            }
            out.push(item.map_err(err)?.0.value().1);
        }
        Ok(out)
    }

    /// The snapshot the store holds now (its newest checkpoint): metadata
    /// and bytes.
    pub fn stored_snapshot<C: openraft::RaftTypeConfig>(
        &self,
    ) -> Result<Option<super::restore::StoredSnapshot<C>>, SideError>
    where
        C::Node: serde::Serialize + serde::de::DeserializeOwned,
        C::NodeId: serde::Serialize + serde::de::DeserializeOwned,
    {
        let db = self.file()?;
        super::machine::load_snapshot::<C>(&db).map_err(err)
    }

    /// Store records (replacing any at the same keys); `durable`: on disk
    /// when this returns.
    pub fn put(&self, writes: &[SideWrite], durable: bool) -> Result<(), SideError> {
        write(&*self.file()?, writes, durable)
    }
}

/// Store records in one transaction.
pub(super) fn write(db: &RaftFile, writes: &[SideWrite], durable: bool) -> Result<(), SideError> {
    if writes.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin_write().map_err(err)?;
    if !durable {
        tx.set_durability(Durability::None);
    }
    {
        let mut t = tx.open_table(SIDE).map_err(err)?;
        for w in writes {
            t.insert((w.space, w.key), w.value.as_slice())
                .map_err(err)?;
        }
    }
    tx.commit().map_err(err)
}
