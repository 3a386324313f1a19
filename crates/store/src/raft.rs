//! openraft storage (the v2 split interface) on one redb file.
//!
//! - [`LogStore`]: log entries keyed by index, the vote, the committed log
//!   id and the last purged log id. Every write of the log and the vote is a
//!   redb transaction with immediate durability, so the `LogFlushed`
//!   callback is called only once the entries are on disk (Raft's
//!   persistence requirement before acking an append); the commit runs on a
//!   blocking thread. The committed log id is a hint written without its own
//!   fsync (it reaches the disk with the next append).
//! - [`StateMachineStore`]: the application [`Machine`] in memory; snapshots
//!   are serialized into the same file. Because the committed log id is
//!   persisted too, openraft re-applies the committed entries after the last
//!   snapshot on restart, so the in-memory machine is rebuilt exactly (up to
//!   that id; entries committed after it are applied once the leader's
//!   commit index arrives).
//!
//! Entries and snapshots are JSON: the control plane carries small public
//! records, and JSON keeps the file readable with ordinary tools.
#![allow(
    clippy::result_large_err,
    reason = "openraft's storage traits fix StorageError as the error type"
)]

use std::fmt::Debug;
use std::io::Cursor;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, RaftTypeConfig, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, Vote,
};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Application state driven by the log. `apply` must be deterministic: every
/// replica applies the same entries in the same order and must reach the same
/// state.
pub trait Machine: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// A log entry's command.
    type Command;
    /// What applying a command returns to the proposer.
    type Response: Default;
    /// Apply one committed command at log index `index`.
    fn apply(&mut self, index: u64, command: &Self::Command) -> Self::Response;
}

const LOG: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("raft_meta");

/// The log store and state-machine store over one file.
pub type Stores<C, M> = (LogStore<C>, StateMachineStore<C, M>);

/// Open (or create) the Raft file and return its log and state-machine stores.
pub fn open<C, M>(path: &Path) -> Result<Stores<C, M>, StorageError<C::NodeId>>
where
    C: RaftTypeConfig<
        D = M::Command,
        R = M::Response,
        Entry = Entry<C>,
        SnapshotData = Cursor<Vec<u8>>,
    >,
    M: Machine,
    C::D: Serialize + DeserializeOwned,
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    let db = Database::create(path).map_err(io_write::<C::NodeId>)?;
    let tx = db.begin_write().map_err(io_write::<C::NodeId>)?;
    tx.open_table(LOG).map_err(io_write::<C::NodeId>)?;
    tx.open_table(META).map_err(io_write::<C::NodeId>)?;
    tx.commit().map_err(io_write::<C::NodeId>)?;
    let db = Arc::new(db);
    let log = LogStore {
        db: db.clone(),
        _c: PhantomData,
    };
    let sm = StateMachineStore::load(db)?;
    Ok((log, sm))
}

fn io_write<NID: openraft::NodeId>(e: impl std::error::Error + 'static) -> StorageError<NID> {
    StorageIOError::write(&e).into()
}

fn io_read<NID: openraft::NodeId>(e: impl std::error::Error + 'static) -> StorageError<NID> {
    StorageIOError::read(&e).into()
}

fn get_meta<T: DeserializeOwned, NID: openraft::NodeId>(
    db: &Database,
    key: &str,
) -> Result<Option<T>, StorageError<NID>> {
    let tx = db.begin_read().map_err(io_read::<NID>)?;
    let t = tx.open_table(META).map_err(io_read::<NID>)?;
    match t.get(key).map_err(io_read::<NID>)? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| io_read::<NID>(e)),
    }
}

fn put_meta<T: Serialize, NID: openraft::NodeId>(
    db: &Database,
    key: &str,
    value: &T,
) -> Result<(), StorageError<NID>> {
    put_meta_with(db, key, value, Durability::Immediate)
}

fn put_meta_with<T: Serialize, NID: openraft::NodeId>(
    db: &Database,
    key: &str,
    value: &T,
    durability: Durability,
) -> Result<(), StorageError<NID>> {
    let bytes = serde_json::to_vec(value).map_err(io_write::<NID>)?;
    let mut tx = db.begin_write().map_err(io_write::<NID>)?;
    tx.set_durability(durability);
    tx.open_table(META)
        .map_err(io_write::<NID>)?
        .insert(key, bytes.as_slice())
        .map_err(io_write::<NID>)?;
    tx.commit().map_err(io_write::<NID>)?;
    Ok(())
}

/// The Raft log, vote and committed index.
pub struct LogStore<C: RaftTypeConfig> {
    db: Arc<Database>,
    _c: PhantomData<C>,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            _c: PhantomData,
        }
    }
}

impl<C: RaftTypeConfig> Debug for LogStore<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => Some(e.saturating_add(1)),
        Bound::Excluded(e) => Some(*e),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: DeserializeOwned,
    C::Node: DeserializeOwned,
    C::NodeId: DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let (start, end) = bounds(&range);
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        let tx = self.db.begin_read().map_err(io_read::<C::NodeId>)?;
        let t = tx.open_table(LOG).map_err(io_read::<C::NodeId>)?;
        let iter = match end {
            Some(e) => t.range(start..e),
            None => t.range(start..),
        }
        .map_err(io_read::<C::NodeId>)?;
        let mut out = Vec::new();
        for item in iter {
            let (_, v) = item.map_err(io_read::<C::NodeId>)?;
            let entry: Entry<C> =
                serde_json::from_slice(v.value()).map_err(io_read::<C::NodeId>)?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: Serialize + DeserializeOwned,
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let last_purged_log_id: Option<LogId<C::NodeId>> = get_meta(&self.db, "last_purged")?;
        let last = {
            let tx = self.db.begin_read().map_err(io_read::<C::NodeId>)?;
            let t = tx.open_table(LOG).map_err(io_read::<C::NodeId>)?;
            let last = t.last().map_err(io_read::<C::NodeId>)?;
            match last {
                None => None,
                Some((_, v)) => {
                    let e: Entry<C> =
                        serde_json::from_slice(v.value()).map_err(io_read::<C::NodeId>)?;
                    Some(e.log_id)
                }
            }
        };
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id.clone()),
            last_purged_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        put_meta::<_, C::NodeId>(&self.db, "vote", vote).map_err(|e| StorageError::IO {
            source: StorageIOError::new(ErrorSubject::Vote, ErrorVerb::Write, AnyError::error(e)),
        })
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        get_meta(&self.db, "vote")
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        // A hint, not a safety record: it is written without its own fsync
        // and reaches the disk with the next log append. Losing the newest
        // value in a crash only means fewer entries are re-applied at
        // startup; the leader's next commit index brings the rest.
        put_meta_with(&self.db, "committed", &committed, Durability::None)
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(get_meta::<Option<LogId<C::NodeId>>, _>(&self.db, "committed")?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(io_write::<C::NodeId>)?;
            rows.push((entry.log_id.index, bytes));
        }
        // The commit waits for fsync: run it on a blocking thread so the
        // async workers (the API, the peers, the other Raft tasks) keep
        // running meanwhile. Awaiting it keeps the contract that appended
        // entries are readable when `append` returns.
        let db = self.db.clone();
        let res = tokio::task::spawn_blocking(move || -> Result<(), redb::Error> {
            let tx = db.begin_write()?;
            {
                let mut t = tx.open_table(LOG)?;
                for (index, bytes) in &rows {
                    t.insert(*index, bytes.as_slice())?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| io_write::<C::NodeId>(std::io::Error::other(e.to_string())))?;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_write::<C::NodeId>(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let tx = self.db.begin_write().map_err(io_write::<C::NodeId>)?;
        {
            let mut t = tx.open_table(LOG).map_err(io_write::<C::NodeId>)?;
            t.retain_in(log_id.index.., |_, _| false)
                .map_err(io_write::<C::NodeId>)?;
        }
        tx.commit().map_err(io_write::<C::NodeId>)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let bytes = serde_json::to_vec(&Some(log_id.clone())).map_err(io_write::<C::NodeId>)?;
        let tx = self.db.begin_write().map_err(io_write::<C::NodeId>)?;
        {
            tx.open_table(META)
                .map_err(io_write::<C::NodeId>)?
                .insert("last_purged", bytes.as_slice())
                .map_err(io_write::<C::NodeId>)?;
            let mut t = tx.open_table(LOG).map_err(io_write::<C::NodeId>)?;
            t.retain_in(..=log_id.index, |_, _| false)
                .map_err(io_write::<C::NodeId>)?;
        }
        tx.commit().map_err(io_write::<C::NodeId>)?;
        Ok(())
    }
}

/// What a snapshot holds: the machine and the Raft metadata at its point.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct Applied<C: RaftTypeConfig, M: Machine>
where
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    last_applied: Option<LogId<C::NodeId>>,
    membership: StoredMembership<C::NodeId, C::Node>,
    machine: M,
}

impl<C: RaftTypeConfig, M: Machine> Clone for Applied<C, M>
where
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    fn clone(&self) -> Self {
        Self {
            last_applied: self.last_applied.clone(),
            membership: self.membership.clone(),
            machine: self.machine.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct StoredSnapshot<C: RaftTypeConfig>
where
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    meta: SnapshotMeta<C::NodeId, C::Node>,
    data: Vec<u8>,
}

/// The state machine: the application [`Machine`] plus Raft's applied log id
/// and membership.
pub struct StateMachineStore<C: RaftTypeConfig, M: Machine>
where
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    db: Arc<Database>,
    state: Arc<RwLock<Applied<C, M>>>,
}

/// A read handle on the applied machine, for the node to answer queries.
pub struct MachineReader<C: RaftTypeConfig, M: Machine>
where
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    state: Arc<RwLock<Applied<C, M>>>,
}

impl<C: RaftTypeConfig, M: Machine> Clone for MachineReader<C, M>
where
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<C: RaftTypeConfig, M: Machine> MachineReader<C, M>
where
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    /// Read the machine under a lock held for the closure only.
    pub fn read<T>(&self, f: impl FnOnce(&M) -> T) -> T {
        let guard: RwLockReadGuard<'_, Applied<C, M>> = match self.state.read() {
            Ok(g) => g,
            // A writer panicked mid-apply; the process is stopping (panics
            // abort the node), reading the last state is the best we can do.
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&guard.machine)
    }

    /// The index of the last applied entry.
    pub fn applied_index(&self) -> Option<u64> {
        match self.state.read() {
            Ok(g) => g.last_applied.as_ref().map(|l| l.index),
            Err(p) => p.into_inner().last_applied.as_ref().map(|l| l.index),
        }
    }
}

impl<C, M> StateMachineStore<C, M>
where
    C: RaftTypeConfig,
    M: Machine,
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    fn load(db: Arc<Database>) -> Result<Self, StorageError<C::NodeId>> {
        let snap: Option<StoredSnapshot<C>> = get_meta(&db, "snapshot")?;
        let applied = match snap {
            Some(s) => serde_json::from_slice(&s.data).map_err(io_read::<C::NodeId>)?,
            None => Applied {
                last_applied: None,
                membership: StoredMembership::default(),
                machine: M::default(),
            },
        };
        Ok(Self {
            db,
            state: Arc::new(RwLock::new(applied)),
        })
    }

    /// A read handle on the machine.
    pub fn reader(&self) -> MachineReader<C, M> {
        MachineReader {
            state: self.state.clone(),
        }
    }

    fn write_state(
        &self,
    ) -> Result<std::sync::RwLockWriteGuard<'_, Applied<C, M>>, StorageError<C::NodeId>> {
        self.state.write().map_err(|_| StorageError::IO {
            source: StorageIOError::write_state_machine(AnyError::error(
                "state machine lock poisoned",
            )),
        })
    }
}

/// Builds snapshots from a copy of the applied state.
pub struct SnapshotBuilder<C: RaftTypeConfig, M: Machine>
where
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    db: Arc<Database>,
    state: Arc<RwLock<Applied<C, M>>>,
}

impl<C, M> RaftSnapshotBuilder<C> for SnapshotBuilder<C, M>
where
    C: RaftTypeConfig<SnapshotData = Cursor<Vec<u8>>>,
    M: Machine,
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<C::NodeId>> {
        let applied = match self.state.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let data = serde_json::to_vec(&applied).map_err(|e| StorageError::IO {
            source: StorageIOError::write_snapshot(None, &e),
        })?;
        let snapshot_id = match &applied.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied.clone(),
            last_membership: applied.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot::<C> {
            meta: meta.clone(),
            data: data.clone(),
        };
        put_meta(&self.db, "snapshot", &stored)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<C, M> RaftStateMachine<C> for StateMachineStore<C, M>
where
    C: RaftTypeConfig<
        D = M::Command,
        R = M::Response,
        Entry = Entry<C>,
        SnapshotData = Cursor<Vec<u8>>,
    >,
    M: Machine,
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    type SnapshotBuilder = SnapshotBuilder<C, M>;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<C::NodeId>>,
            StoredMembership<C::NodeId, C::Node>,
        ),
        StorageError<C::NodeId>,
    > {
        let g = self.write_state()?;
        Ok((g.last_applied.clone(), g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut g = self.write_state()?;
        let mut out = Vec::new();
        for entry in entries {
            g.last_applied = Some(entry.log_id.clone());
            match entry.payload {
                EntryPayload::Blank => out.push(M::Response::default()),
                EntryPayload::Normal(cmd) => {
                    let r = g.machine.apply(entry.log_id.index, &cmd);
                    out.push(r);
                }
                EntryPayload::Membership(m) => {
                    g.membership = StoredMembership::new(Some(entry.log_id.clone()), m);
                    out.push(M::Response::default());
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            state: self.state.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<C::SnapshotData>, StorageError<C::NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<C::NodeId, C::Node>,
        snapshot: Box<C::SnapshotData>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let data = snapshot.into_inner();
        let applied: Applied<C, M> =
            serde_json::from_slice(&data).map_err(|e| StorageError::IO {
                source: StorageIOError::read_snapshot(Some(meta.signature()), &e),
            })?;
        let stored = StoredSnapshot::<C> {
            meta: meta.clone(),
            data,
        };
        put_meta(&self.db, "snapshot", &stored)?;
        let mut g = self.write_state()?;
        *g = Applied {
            last_applied: meta.last_log_id.clone(),
            membership: meta.last_membership.clone(),
            machine: applied.machine,
        };
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<C>>, StorageError<C::NodeId>> {
        let snap: Option<StoredSnapshot<C>> = get_meta(&self.db, "snapshot")?;
        Ok(snap.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

/// The conformance suite: openraft's own storage tests
/// (`openraft::testing::Suite`), run against a fresh store per test case.
/// Any storage backend for keyquorum must pass it.
pub mod conformance {
    use super::*;
    use openraft::testing::{StoreBuilder, Suite};

    /// A builder of fresh redb stores in temporary directories.
    pub struct RedbBuilder<M>(PhantomData<M>);

    impl<M> Default for RedbBuilder<M> {
        fn default() -> Self {
            Self(PhantomData)
        }
    }

    /// The directory a store lives in; removed when dropped.
    pub struct Guard(std::path::PathBuf);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl<C, M> StoreBuilder<C, LogStore<C>, StateMachineStore<C, M>, Guard> for RedbBuilder<M>
    where
        C: RaftTypeConfig<
            D = M::Command,
            R = M::Response,
            Entry = Entry<C>,
            SnapshotData = Cursor<Vec<u8>>,
        >,
        M: Machine,
        C::D: Serialize + DeserializeOwned,
        C::Node: Serialize + DeserializeOwned,
        C::NodeId: Serialize + DeserializeOwned,
    {
        async fn build(
            &self,
        ) -> Result<(Guard, LogStore<C>, StateMachineStore<C, M>), StorageError<C::NodeId>>
        {
            use rand_core::RngCore;
            let mut tag = [0u8; 8];
            rand_core::OsRng.fill_bytes(&mut tag);
            let dir = std::env::temp_dir().join(format!(
                "keyquorum-conformance-{:016x}",
                u64::from_le_bytes(tag)
            ));
            std::fs::create_dir_all(&dir).map_err(io_write::<C::NodeId>)?;
            let (log, sm) = open::<C, M>(&dir.join("raft.redb"))?;
            Ok((Guard(dir), log, sm))
        }
    }

    /// Run every openraft storage test against the redb backend.
    pub fn run<C, M>() -> Result<(), StorageError<C::NodeId>>
    where
        C: RaftTypeConfig<
            D = M::Command,
            R = M::Response,
            Entry = Entry<C>,
            SnapshotData = Cursor<Vec<u8>>,
        >,
        M: Machine,
        C::D: Serialize + DeserializeOwned + Debug,
        C::R: Debug,
        C::Node: Serialize + DeserializeOwned,
        C::NodeId: Serialize + DeserializeOwned + From<u64>,
    {
        Suite::<C, LogStore<C>, StateMachineStore<C, M>, RedbBuilder<M>, Guard>::test_all(
            RedbBuilder::default(),
        )
    }
}
