//! openraft storage (the v2 split interface) on one redb file.
//!
//! - [`LogStore`]: log entries keyed by index, the vote, the committed log
//!   id and the last purged log id. One writer thread per file takes every
//!   write waiting and commits them in one redb transaction with immediate
//!   durability (group commit: one fsync for many appends). `append` returns
//!   once the entries are in an in-memory cache of the log's tail, where
//!   readers find them at once; openraft's `LogFlushed` callback is called
//!   only after the fsync (Raft's persistence rule before acking an append).
//!   The vote, a truncation and a purge are awaited until they are on disk.
//!   The committed log id is a hint written without its own fsync (it
//!   reaches the disk with the next durable write). Writes take effect in
//!   the order openraft issues them, as it requires.
//! - [`StateMachineStore`]: the application [`Machine`] in memory; snapshots
//!   are serialized into the same file (their own table, the bytes as they
//!   are), built and stored on a blocking thread. Because the committed log id is
//!   persisted too, openraft re-applies the committed entries after the last
//!   snapshot on restart, so the in-memory machine is rebuilt exactly (up to
//!   that id; entries committed after it are applied once the leader's
//!   commit index arrives).
//!
//! - [`side`]: records a machine keeps outside itself and its snapshots
//!   (the node's audit log), in their own table, written with the entries
//!   that produce them.
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
    /// A log entry's command (the log cache hands out copies and the log
    /// writer thread encodes them).
    type Command: Clone + Send + 'static;
    /// What applying a command returns to the proposer.
    type Response: Default + Send;
    /// Apply one committed command at log index `index`.
    fn apply(&mut self, index: u64, command: &Self::Command) -> Self::Response;

    /// Whether this replica can apply `command` at `index` the way every
    /// other replica does. An error stops the replica before it applies
    /// anything (the store fails the apply and openraft shuts down): for a
    /// command this build cannot apply as the rest of the cluster does,
    /// where refusing it would leave this replica out of step. It stops
    /// again at the same entry after a restart, until the build changes.
    fn check(&self, index: u64, command: &Self::Command) -> Result<(), String> {
        let _ = (index, command);
        Ok(())
    }

    /// Whether this build can take `self` as its state: a checkpoint
    /// loaded when the store opens, or a snapshot installed from the
    /// leader. An error refuses it (the store does not open; the install
    /// fails and openraft shuts down): for a state made by a newer build,
    /// under rules this one does not know, which it would read without
    /// what it does not know and then apply on from out of step (the state
    /// counterpart of [`Self::check`]). The default takes any.
    fn check_state(&self) -> Result<(), String> {
        Ok(())
    }

    /// Records applying produced that live outside the machine and its
    /// snapshots ([`side`]): taken after every apply, after a snapshot is
    /// loaded or installed, and written to the side table before the store
    /// goes on. The default keeps none.
    fn take_side(&mut self) -> Vec<SideWrite> {
        Vec::new()
    }

    /// The records [`Self::take_side`] handed out are written (readers of
    /// the machine may now look for them).
    fn side_written(&mut self) {}

    /// A membership entry at `index` took effect: `nodes` are all its
    /// members (voters and learners) with their node data, `voters` the
    /// voters among them. Raft changes membership on append, not on apply;
    /// a machine that checks commands against the members sees here the
    /// membership each later entry was appended under.
    fn membership<I: Serialize, N: Serialize>(
        &mut self,
        index: u64,
        nodes: &[(I, N)],
        voters: &[I],
    ) {
        let _ = (index, nodes, voters);
    }
}

const LOG: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("raft_meta");
/// The current snapshot: `"meta"` (JSON) and `"data"` (the bytes as they are).
const SNAPSHOT: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("raft_snapshot");

/// The log store and state-machine store over one file.
pub type Stores<C, M> = (LogStore<C>, StateMachineStore<C, M>);

/// Open (or create) the Raft file and return its log and state-machine
/// stores; a snapshot is the state when openraft asks for one.
pub fn open<C, M>(path: &Path) -> Result<Stores<C, M>, StorageError<C::NodeId>>
where
    C: RaftTypeConfig<
        D = M::Command,
        R = M::Response,
        Entry = Entry<C>,
        SnapshotData = Cursor<Vec<u8>>,
    >,
    M: Machine,
    C::D: Serialize + DeserializeOwned + Clone,
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    open_with(path, None)
}

/// [`open`], with snapshots taken as [`checkpoint`]s: the state at every
/// multiple of `every` applied is the next snapshot (set openraft's
/// `SnapshotPolicy::LogsSinceLast(every)` with it).
pub fn open_with<C, M>(
    path: &Path,
    every: Option<u64>,
) -> Result<Stores<C, M>, StorageError<C::NodeId>>
where
    C: RaftTypeConfig<
        D = M::Command,
        R = M::Response,
        Entry = Entry<C>,
        SnapshotData = Cursor<Vec<u8>>,
    >,
    M: Machine,
    C::D: Serialize + DeserializeOwned + Clone,
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    let db = Database::create(path).map_err(io_write::<C::NodeId>)?;
    let tx = db.begin_write().map_err(io_write::<C::NodeId>)?;
    tx.open_table(LOG).map_err(io_write::<C::NodeId>)?;
    tx.open_table(META).map_err(io_write::<C::NodeId>)?;
    tx.open_table(SNAPSHOT).map_err(io_write::<C::NodeId>)?;
    tx.open_table(side::SIDE).map_err(io_write::<C::NodeId>)?;
    tx.commit().map_err(io_write::<C::NodeId>)?;
    let db = Arc::new(RaftFile::new(db));
    let log = LogStore::start(db.clone())?;
    let sm = StateMachineStore::load(db, every)?;
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

mod cache;
use cache::Cache;
pub mod side;
pub use side::{Side, SideError, SideWrite};

/// One write for the log writer thread, in the order openraft issued it
/// (openraft requires log and vote writes to take effect in order).
enum Op<C: RaftTypeConfig> {
    /// Entries with their cache tags; `done` is openraft's flush callback.
    Append {
        entries: Vec<(u64, Entry<C>)>,
        tag: u64,
        done: LogFlushed<C>,
    },
    /// The serialized vote; answered once it is on disk.
    Vote {
        bytes: Vec<u8>,
        done: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
    /// The serialized committed log id: a hint, flushed with the next
    /// durable write.
    Committed { bytes: Vec<u8> },
    /// Delete entries from this index on.
    Truncate {
        from: u64,
        done: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
    /// Delete entries up to this index, recording the purged log id.
    Purge {
        upto: u64,
        bytes: Vec<u8>,
        done: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
}

/// The log writer: takes every write waiting in the queue, puts them in one
/// redb transaction and commits it with one fsync (group commit), then
/// reports each write. Under load the Raft core never waits for the disk
/// (append returns once the entries are in the cache) and many appends share
/// one fsync.
fn writer_loop<C>(
    db: Arc<RaftFile>,
    cache: Arc<std::sync::Mutex<Cache<C>>>,
    ops: std::sync::mpsc::Receiver<Op<C>>,
) where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: Serialize + Clone,
    C::Node: Serialize,
    C::NodeId: Serialize,
{
    /// Writes taken into one transaction at most.
    const BATCH: usize = 1_024;
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let result = write_batch(&db, &batch);
        if let Ok(written) = &result {
            lock(&cache).flushed(written);
        }
        let outcome = result.map(|_| ()).map_err(|e| e.to_string());
        for op in batch {
            match op {
                Op::Append { done, .. } => done.log_io_completed(
                    outcome
                        .clone()
                        .map_err(|e| std::io::Error::other(e.clone())),
                ),
                Op::Vote { done, .. } | Op::Truncate { done, .. } | Op::Purge { done, .. } => {
                    // The caller may have gone (its task was dropped):
                    // nothing is waiting for the answer then.
                    let _ = done.send(outcome.clone());
                }
                Op::Committed { .. } => {}
            }
        }
    }
}

/// Apply `batch` in one transaction; returns `(index, tag, size)` of every
/// entry written.
fn write_batch<C>(db: &Database, batch: &[Op<C>]) -> Result<Vec<(u64, u64, usize)>, WriteError>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: Serialize,
    C::Node: Serialize,
    C::NodeId: Serialize,
{
    let mut written = Vec::new();
    let mut durable = false;
    let mut tx = db.begin_write()?;
    {
        let mut log = tx.open_table(LOG)?;
        let mut meta = tx.open_table(META)?;
        for op in batch {
            match op {
                Op::Append { entries, tag, .. } => {
                    durable = true;
                    for (index, entry) in entries {
                        let bytes = serde_json::to_vec(entry)?;
                        log.insert(*index, bytes.as_slice())?;
                        written.push((*index, *tag, bytes.len()));
                    }
                }
                Op::Vote { bytes, .. } => {
                    durable = true;
                    meta.insert("vote", bytes.as_slice())?;
                }
                Op::Committed { bytes } => {
                    meta.insert("committed", bytes.as_slice())?;
                }
                Op::Truncate { from, .. } => {
                    durable = true;
                    log.retain_in(*from.., |_, _| false)?;
                }
                Op::Purge { upto, bytes, .. } => {
                    durable = true;
                    meta.insert("last_purged", bytes.as_slice())?;
                    log.retain_in(..=*upto, |_, _| false)?;
                }
            }
        }
    }
    // Only the committed-index hint may wait for a later fsync.
    tx.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    });
    tx.commit()?;
    Ok(written)
}

/// Why the log writer's transaction failed.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("redb: {0}")]
    Db(#[from] redb::Error),
    #[error("encoding a log entry: {0}")]
    Encode(#[from] serde_json::Error),
}

macro_rules! into_write_error {
    ($($t:ty),*) => {$(
        impl From<$t> for WriteError {
            fn from(e: $t) -> Self {
                Self::Db(e.into())
            }
        }
    )*};
}
into_write_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a lock leaves what it guards (the cache, the
    // pending checkpoint, the checkpoint digests) as consistent as any
    // single step leaves it; the node is stopping anyway (panics abort).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What every clone of a [`LogStore`] shares: the file, the cache, the
/// writer thread's queue. Dropping the last clone closes the queue and waits
/// for the writer to finish what it was given.
struct LogShared<C: RaftTypeConfig> {
    db: Arc<RaftFile>,
    cache: Arc<std::sync::Mutex<Cache<C>>>,
    last_purged: std::sync::Mutex<Option<LogId<C::NodeId>>>,
    ops: Option<std::sync::mpsc::Sender<Op<C>>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl<C: RaftTypeConfig> Drop for LogShared<C> {
    fn drop(&mut self) {
        drop(self.ops.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The Raft log, vote and committed index.
pub struct LogStore<C: RaftTypeConfig> {
    shared: Arc<LogShared<C>>,
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: Serialize + DeserializeOwned + Clone,
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    /// The entries of `start..end` (`None`: to the end), in order, stopping
    /// before the one that would take them past `budget` bytes (entries not
    /// yet on disk count as nothing; the first always comes).
    fn entries(
        &self,
        start: u64,
        end: Option<u64>,
        budget: usize,
    ) -> Result<Vec<Entry<C>>, StorageError<C::NodeId>> {
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        // The cache first: an entry that leaves it afterwards is on disk by
        // then, so the disk read below cannot miss it.
        let (first_cached, cached) = lock(&self.shared.cache).read(start, end);
        // What lies before the cache's run is on disk.
        let disk_end = match (first_cached, end) {
            (Some(f), Some(e)) => Some(f.min(e)),
            (Some(f), None) => Some(f),
            (None, e) => e,
        };
        let mut out = Vec::new();
        let mut used = 0usize;
        let mut fits = |size: usize, taken: usize| {
            let ok = taken == 0 || used.saturating_add(size) <= budget;
            if ok {
                used = used.saturating_add(size);
            }
            ok
        };
        if disk_end.is_none_or(|d| d > start) {
            let tx = self.shared.db.begin_read().map_err(io_read::<C::NodeId>)?;
            let t = tx.open_table(LOG).map_err(io_read::<C::NodeId>)?;
            let iter = match disk_end {
                Some(e) => t.range(start..e),
                None => t.range(start..),
            }
            .map_err(io_read::<C::NodeId>)?;
            for item in iter {
                let (_, v) = item.map_err(io_read::<C::NodeId>)?;
                let bytes = v.value();
                if !fits(bytes.len(), out.len()) {
                    return Ok(out);
                }
                let entry: Entry<C> =
                    serde_json::from_slice(bytes).map_err(io_read::<C::NodeId>)?;
                out.push(entry);
            }
        }
        for (entry, size) in cached {
            if !fits(size, out.len()) {
                break;
            }
            out.push(entry);
        }
        Ok(out)
    }

    fn start(db: Arc<RaftFile>) -> Result<Self, StorageError<C::NodeId>> {
        let last_purged = get_meta(&db, "last_purged")?;
        let cache = Arc::new(std::sync::Mutex::new(Cache::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = {
            let (db, cache) = (db.clone(), cache.clone());
            std::thread::Builder::new()
                .name("raft-log-writer".into())
                .spawn(move || writer_loop::<C>(db, cache, rx))
                .map_err(io_write::<C::NodeId>)?
        };
        Ok(Self {
            shared: Arc::new(LogShared {
                db,
                cache,
                last_purged: std::sync::Mutex::new(last_purged),
                ops: Some(tx),
                writer: Some(writer),
            }),
        })
    }

    fn submit(&self, op: Op<C>) -> Result<(), StorageError<C::NodeId>> {
        self.shared
            .ops
            .as_ref()
            .and_then(|q| q.send(op).ok())
            .ok_or_else(|| io_write::<C::NodeId>(std::io::Error::other("the log writer stopped")))
    }

    /// Submit a write and wait until it is on disk.
    async fn submit_and_wait(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<(), String>>) -> Op<C>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.submit(make(done))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io_write::<C::NodeId>(std::io::Error::other(e))),
            Err(_) => Err(io_write::<C::NodeId>(std::io::Error::other(
                "the log writer stopped",
            ))),
        }
    }
}

/// The open Raft file, shared by the log store, the state machine, the log
/// writer thread and snapshot builders. Its `closed` flag is set only after
/// the redb database itself has been dropped (its file lock released), not
/// when the last reference goes away: redb's drop does work of its own, and
/// a restart that looked at the reference count alone could find the file
/// still locked.
pub(crate) struct RaftFile {
    // Fields drop in declaration order: the database first, then the flag.
    db: Database,
    closed: ClosedOnDrop,
}

impl RaftFile {
    fn new(db: Database) -> Self {
        Self {
            db,
            closed: ClosedOnDrop::new(),
        }
    }
}

impl std::ops::Deref for RaftFile {
    type Target = Database;
    fn deref(&self) -> &Database {
        &self.db
    }
}

use crate::closed::ClosedOnDrop;
pub use crate::closed::FileHandle;

impl<C: RaftTypeConfig> LogStore<C> {
    /// A handle that tells when the file is closed.
    pub fn file(&self) -> FileHandle {
        self.shared.db.closed.handle()
    }
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
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
    C::D: Serialize + DeserializeOwned + Clone,
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let (start, end) = bounds(&range);
        self.entries(start, end, usize::MAX)
    }

    /// What one AppendEntries carries: openraft bounds it by entry count
    /// (`max_payload_entries`); this also bounds it by size, so a follower
    /// far behind catches up in RPCs that fit the heartbeat-bounded
    /// time-out instead of timing out on the same huge one again and again.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        self.entries(start, Some(end), REPLICATION_BYTES)
    }
}

/// About how many bytes of entries (as stored) one AppendEntries carries;
/// at least one entry always goes.
const REPLICATION_BYTES: usize = 2 << 20;

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: Serialize + DeserializeOwned + Clone,
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let last_purged_log_id = lock(&self.shared.last_purged).clone();
        let cached = lock(&self.shared.cache).last_log_id();
        let last = match cached {
            Some(l) => Some(l),
            None => {
                let tx = self.shared.db.begin_read().map_err(io_read::<C::NodeId>)?;
                let t = tx.open_table(LOG).map_err(io_read::<C::NodeId>)?;
                let last = match t.last().map_err(io_read::<C::NodeId>)? {
                    None => None,
                    Some((_, v)) => {
                        let e: Entry<C> =
                            serde_json::from_slice(v.value()).map_err(io_read::<C::NodeId>)?;
                        Some(e.log_id)
                    }
                };
                last
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
        let bytes = serde_json::to_vec(vote).map_err(io_write::<C::NodeId>)?;
        self.submit_and_wait(|done| Op::Vote { bytes, done })
            .await
            .map_err(|e| StorageError::IO {
                source: StorageIOError::new(
                    ErrorSubject::Vote,
                    ErrorVerb::Write,
                    AnyError::error(e),
                ),
            })
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        get_meta(&self.shared.db, "vote")
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        // A hint, not a safety record: it is written without its own fsync
        // and reaches the disk with the next durable write. Losing the
        // newest value in a crash only means fewer entries are re-applied at
        // startup; the leader's next commit index brings the rest.
        let bytes = serde_json::to_vec(&committed).map_err(io_write::<C::NodeId>)?;
        self.submit(Op::Committed { bytes })
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(get_meta::<Option<LogId<C::NodeId>>, _>(&self.shared.db, "committed")?.flatten())
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
        // Readable from the cache when this returns; `callback` is called by
        // the writer once the entries are on disk.
        let entries: Vec<(u64, Entry<C>)> =
            entries.into_iter().map(|e| (e.log_id.index, e)).collect();
        let tag = lock(&self.shared.cache).append(&entries);
        self.submit(Op::Append {
            entries,
            tag,
            done: callback,
        })
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        lock(&self.shared.cache).remove(log_id.index..);
        self.submit_and_wait(|done| Op::Truncate {
            from: log_id.index,
            done,
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let bytes = serde_json::to_vec(&Some(log_id.clone())).map_err(io_write::<C::NodeId>)?;
        let upto = log_id.index;
        *lock(&self.shared.last_purged) = Some(log_id);
        lock(&self.shared.cache).remove(..=upto);
        self.submit_and_wait(|done| Op::Purge { upto, bytes, done })
            .await
    }
}

pub mod checkpoint;
mod machine;
pub mod restore;
pub use checkpoint::Checkpoints;
pub use machine::{MachineReader, SnapshotBuilder, StateMachineStore};
pub mod conformance;
