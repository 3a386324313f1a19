//! The conformance suite: openraft's own storage tests
//! (`openraft::testing::Suite`), run against a fresh store per test case.
//! Any storage backend for keyquorum must pass it.

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
    ) -> Result<(Guard, LogStore<C>, StateMachineStore<C, M>), StorageError<C::NodeId>> {
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
