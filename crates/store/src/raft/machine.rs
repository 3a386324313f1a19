//! The state-machine half: the applied [`Machine`], its snapshots.

use super::checkpoint::{self, Checkpoints};
use super::*;

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

/// How a snapshot was stored before it had its own table: metadata and data
/// in one JSON value under the meta key `"snapshot"` (the data as an array
/// of numbers). Still read, so a node upgraded in place keeps its snapshot;
/// the next snapshot replaces it.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct LegacySnapshot<C: RaftTypeConfig>
where
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    meta: SnapshotMeta<C::NodeId, C::Node>,
    data: Vec<u8>,
}

type StoredSnapshot<C> = (
    SnapshotMeta<<C as RaftTypeConfig>::NodeId, <C as RaftTypeConfig>::Node>,
    Vec<u8>,
);

/// Store a snapshot (durably) in place of the previous one, unless that
/// one is newer (a build that took its copy before a snapshot was
/// installed finishes after it): then keep it, and answer `false`.
fn store_snapshot<C: RaftTypeConfig>(
    db: &Database,
    meta: &SnapshotMeta<C::NodeId, C::Node>,
    data: &[u8],
) -> Result<bool, StorageError<C::NodeId>>
where
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    let err = |e: &dyn std::error::Error| StorageError::IO {
        source: StorageIOError::write_snapshot(Some(meta.signature()), AnyError::error(e)),
    };
    let meta_bytes = serde_json::to_vec(meta).map_err(|e| err(&e))?;
    // One write transaction at a time: the check and the write are one.
    let tx = db.begin_write().map_err(|e| err(&e))?;
    {
        let mut t = tx.open_table(SNAPSHOT).map_err(|e| err(&e))?;
        let newer = match t.get("meta").map_err(|e| err(&e))? {
            Some(stored) => {
                serde_json::from_slice::<SnapshotMeta<C::NodeId, C::Node>>(stored.value())
                    .is_ok_and(|m| m.last_log_id > meta.last_log_id)
            }
            None => false,
        };
        if newer {
            return Ok(false);
        }
        t.insert("meta", meta_bytes.as_slice())
            .map_err(|e| err(&e))?;
        t.insert("data", data).map_err(|e| err(&e))?;
        tx.open_table(META)
            .map_err(|e| err(&e))?
            .remove("snapshot")
            .map_err(|e| err(&e))?;
    }
    tx.commit().map_err(|e| err(&e))?;
    Ok(true)
}

/// The stored snapshot, if any (in either format).
pub(super) fn load_snapshot<C: RaftTypeConfig>(
    db: &Database,
) -> Result<Option<StoredSnapshot<C>>, StorageError<C::NodeId>>
where
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    let stored = {
        let tx = db.begin_read().map_err(io_read::<C::NodeId>)?;
        let t = tx.open_table(SNAPSHOT).map_err(io_read::<C::NodeId>)?;
        let meta = t.get("meta").map_err(io_read::<C::NodeId>)?;
        let data = t.get("data").map_err(io_read::<C::NodeId>)?;
        match (meta, data) {
            (Some(m), Some(d)) => Some((
                serde_json::from_slice(m.value()).map_err(io_read::<C::NodeId>)?,
                d.value().to_vec(),
            )),
            _ => None,
        }
    };
    match stored {
        Some(s) => Ok(Some(s)),
        None => Ok(get_meta::<LegacySnapshot<C>, _>(db, "snapshot")?.map(|s| (s.meta, s.data))),
    }
}

/// Run blocking storage work (a large encoding, a commit that waits for
/// fsync) off the async workers.
async fn blocking<T: Send + 'static, NID: openraft::NodeId>(
    f: impl FnOnce() -> Result<T, StorageError<NID>> + Send + 'static,
) -> Result<T, StorageError<NID>> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io_write::<NID>(std::io::Error::other(e.to_string())))?
}

/// The state machine: the application [`Machine`] plus Raft's applied log id
/// and membership.
pub struct StateMachineStore<C: RaftTypeConfig, M: Machine>
where
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    db: Arc<RaftFile>,
    state: Arc<RwLock<Applied<C, M>>>,
    /// Checkpoint at multiples of this index (`None`: a snapshot is the
    /// state when openraft asks for one).
    every: Option<u64>,
    /// The state at the last multiple of `every` applied, not yet stored.
    pending: Pending<C, M>,
    checkpoints: Checkpoints,
}

type Pending<C, M> = Arc<std::sync::Mutex<Option<Applied<C, M>>>>;

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
    pub(super) fn load(
        db: Arc<RaftFile>,
        every: Option<u64>,
    ) -> Result<Self, StorageError<C::NodeId>> {
        let checkpoints = Checkpoints::default();
        let applied = match load_snapshot::<C>(&db)? {
            Some((meta, data)) => {
                if let (Some(l), Ok(d)) = (&meta.last_log_id, checkpoint::digest(&meta, &data)) {
                    checkpoints.record(l.index, d);
                }
                let mut applied: Applied<C, M> =
                    serde_json::from_slice(&data).map_err(io_read::<C::NodeId>)?;
                applied
                    .machine
                    .check_state()
                    .map_err(|e| io_read::<C::NodeId>(std::io::Error::other(e)))?;
                side::write(&db, &applied.machine.take_side(), true).map_err(io_write)?;
                applied.machine.side_written();
                applied
            }
            None => Applied {
                last_applied: None,
                membership: StoredMembership::default(),
                machine: M::default(),
            },
        };
        Ok(Self {
            db,
            state: Arc::new(RwLock::new(applied)),
            every: every.filter(|e| *e > 0),
            pending: Arc::default(),
            checkpoints,
        })
    }

    /// The digests of this store's recent checkpoints.
    pub fn checkpoints(&self) -> Checkpoints {
        self.checkpoints.clone()
    }

    /// A handle on the side records ([`side`]).
    pub fn side(&self) -> Side {
        Side::new(&self.db)
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
        write_applied(&self.state)
    }
}

/// The applied state, locked for writing.
fn write_applied<C, M>(
    state: &RwLock<Applied<C, M>>,
) -> Result<std::sync::RwLockWriteGuard<'_, Applied<C, M>>, StorageError<C::NodeId>>
where
    C: RaftTypeConfig,
    M: Machine,
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    state.write().map_err(|_| StorageError::IO {
        source: StorageIOError::write_state_machine(AnyError::error("state machine lock poisoned")),
    })
}

/// Builds snapshots from a copy of the applied state.
pub struct SnapshotBuilder<C: RaftTypeConfig, M: Machine>
where
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    db: Arc<RaftFile>,
    state: Arc<RwLock<Applied<C, M>>>,
    checkpointing: bool,
    pending: Pending<C, M>,
    checkpoints: Checkpoints,
}

impl<C, M> RaftSnapshotBuilder<C> for SnapshotBuilder<C, M>
where
    C: RaftTypeConfig<SnapshotData = Cursor<Vec<u8>>>,
    M: Machine,
    C::Node: Serialize + DeserializeOwned,
    C::NodeId: Serialize + DeserializeOwned,
{
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<C::NodeId>> {
        // Copying, encoding and storing a large machine takes long: all of
        // it on a blocking thread, the read lock held only for the copy.
        let (db, state) = (self.db.clone(), self.state.clone());
        let pending = lock(&self.pending).take();
        let checkpointing = self.checkpointing;
        let checkpoints = self.checkpoints.clone();
        let (meta, data) = blocking(move || {
            let applied = match pending {
                Some(a) => a,
                None => {
                    // openraft asks once the committed index passed the
                    // next multiple, which was applied (and kept) first;
                    // between two, the last checkpoint is the snapshot.
                    if checkpointing {
                        if let Some(stored) = load_snapshot::<C>(&db)? {
                            return Ok(stored);
                        }
                    }
                    match state.read() {
                        Ok(g) => g.clone(),
                        Err(p) => p.into_inner().clone(),
                    }
                }
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
            if !store_snapshot::<C>(&db, &meta, &data)? {
                if let Some(stored) = load_snapshot::<C>(&db)? {
                    return Ok(stored);
                }
            }
            if let Some(l) = &meta.last_log_id {
                checkpoints.record(l.index, checkpoint::digest(&meta, &data).map_err(io_write)?);
            }
            Ok((meta, data))
        })
        .await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<C, M> StateMachineStore<C, M>
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
    /// Apply `entries` under the state's lock, answers into `out`; returns
    /// the side records they produced, and the state at a checkpoint index
    /// among them (kept for the next snapshot once the records are
    /// written).
    #[allow(
        clippy::type_complexity,
        reason = "a pair of the records and the checkpoint, used once"
    )]
    fn apply_entries<I>(
        &mut self,
        entries: I,
        out: &mut Vec<C::R>,
    ) -> Result<(Vec<SideWrite>, Option<Applied<C, M>>), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry>,
    {
        let mut g = write_applied(&self.state)?;
        let mut checkpoint = None;
        for entry in entries {
            let index = entry.log_id.index;
            if let EntryPayload::Normal(cmd) = &entry.payload {
                if let Err(why) = g.machine.check(index, cmd) {
                    tracing::error!(index, "this replica stops applying: {why}");
                    return Err(StorageError::IO {
                        source: StorageIOError::apply(entry.log_id.clone(), AnyError::error(why)),
                    });
                }
            }
            g.last_applied = Some(entry.log_id.clone());
            match entry.payload {
                EntryPayload::Blank => out.push(M::Response::default()),
                EntryPayload::Normal(cmd) => {
                    let r = g.machine.apply(entry.log_id.index, &cmd);
                    out.push(r);
                }
                EntryPayload::Membership(m) => {
                    let nodes: Vec<_> = m.nodes().map(|(id, n)| (id.clone(), n.clone())).collect();
                    let voters: Vec<_> = m.voter_ids().collect();
                    g.machine.membership(entry.log_id.index, &nodes, &voters);
                    g.membership = StoredMembership::new(Some(entry.log_id.clone()), m);
                    out.push(M::Response::default());
                }
            }
            if self.every.is_some_and(|e| index % e == 0) {
                checkpoint = Some(g.clone());
            }
        }
        Ok((g.machine.take_side(), checkpoint))
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
        let mut out = Vec::new();
        let (side, checkpoint) = self.apply_entries(entries, &mut out)?;
        if !side.is_empty() {
            // Before answering, and before a checkpoint among these
            // entries can be stored as a snapshot: a snapshot's records are
            // written before it (its durable commit makes them durable).
            // The machine learns they are written once they are
            // (`Machine::side_written`): the state's lock is not held
            // across the write.
            let db = self.db.clone();
            blocking(move || side::write(&db, &side, false).map_err(io_write)).await?;
            self.write_state()?.machine.side_written();
        }
        if let Some(copy) = checkpoint {
            *lock(&self.pending) = Some(copy);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            state: self.state.clone(),
            checkpointing: self.every.is_some(),
            pending: self.pending.clone(),
            checkpoints: self.checkpoints.clone(),
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
        let (db, state, meta) = (self.db.clone(), self.state.clone(), meta.clone());
        let (pending, checkpoints) = (self.pending.clone(), self.checkpoints.clone());
        blocking(move || {
            let mut applied: Applied<C, M> =
                serde_json::from_slice(&data).map_err(|e| StorageError::IO {
                    source: StorageIOError::read_snapshot(Some(meta.signature()), &e),
                })?;
            applied
                .machine
                .check_state()
                .map_err(|e| StorageError::IO {
                    source: StorageIOError::read_snapshot(
                        Some(meta.signature()),
                        &std::io::Error::other(e),
                    ),
                })?;
            side::write(&db, &applied.machine.take_side(), true).map_err(io_write)?;
            applied.machine.side_written();
            if !store_snapshot::<C>(&db, &meta, &data)? {
                // openraft installs only past what is committed, so past
                // any snapshot stored: never reached.
                return Err(io_write(std::io::Error::other(
                    "a snapshot older than the stored one was to be installed",
                )));
            }
            if let Some(l) = &meta.last_log_id {
                checkpoints.record(l.index, checkpoint::digest(&meta, &data).map_err(io_write)?);
            }
            // A checkpoint taken before this point must not replace it.
            *lock(&pending) = None;
            let mut g = write_applied(&state)?;
            *g = Applied {
                last_applied: meta.last_log_id.clone(),
                membership: meta.last_membership.clone(),
                machine: applied.machine,
            };
            Ok(())
        })
        .await
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<C>>, StorageError<C::NodeId>> {
        let db = self.db.clone();
        let snap = blocking(move || load_snapshot::<C>(&db)).await?;
        Ok(snap.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
