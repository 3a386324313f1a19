#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! openraft's storage suite against the redb backend, with a small
//! key-value machine as the application; and snapshots across a restart,
//! in the current format (their own table, the bytes as they are) and in
//! the earlier one (one JSON value in the meta table), which the next
//! snapshot replaces.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

use keyquorum_store::raft::{conformance, open, Machine, SideWrite};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{Entry, EntryPayload};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Put(String, String);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Kv(BTreeMap<String, String>);

impl Machine for Kv {
    type Command = Put;
    type Response = Option<String>;
    fn apply(&mut self, _index: u64, c: &Put) -> Option<String> {
        self.0.insert(c.0.clone(), c.1.clone())
    }
}

openraft::declare_raft_types!(
    TestConfig: D = Put, R = Option<String>
);

#[test]
fn redb_backend_passes_openraft_storage_suite() {
    conformance::run::<TestConfig, Kv>().unwrap();
}

const META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("raft_meta");
const SNAPSHOT: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("raft_snapshot");

fn put(index: u64, k: &str, v: &str) -> Entry<TestConfig> {
    Entry {
        log_id: openraft::testing::log_id(1, 1, index),
        payload: EntryPayload::Normal(Put(k.into(), v.into())),
    }
}

fn state(path: &Path) -> BTreeMap<String, String> {
    let (_log, sm) = open::<TestConfig, Kv>(path).unwrap();
    sm.reader().read(|m| m.0.clone())
}

#[tokio::test]
async fn a_snapshot_is_read_back_after_a_restart_in_either_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.redb");
    // A value large enough that the old number-array format would show.
    let big = "x".repeat(100_000);
    let meta = {
        let (_log, mut sm) = open::<TestConfig, Kv>(&path).unwrap();
        sm.apply(vec![put(1, "a", "1"), put(2, "b", &big)])
            .await
            .unwrap();
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id.as_ref().map(|l| l.index), Some(2));
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);
        assert_eq!(current.snapshot.into_inner(), snap.snapshot.into_inner());
        snap.meta
    };
    let want: BTreeMap<String, String> = [
        ("a".to_string(), "1".to_string()),
        ("b".to_string(), big.clone()),
    ]
    .into();
    assert_eq!(state(&path), want, "the current format is read back");

    // Its data are stored as they are: about the JSON's size, not four times.
    let data = {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_read().unwrap();
        let t = tx.open_table(SNAPSHOT).unwrap();
        let data = t.get("data").unwrap().unwrap().value().to_vec();
        assert!(data.len() < 2 * big.len(), "{} bytes", data.len());
        data
    };

    // Rewrite it in the earlier format and reopen.
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut s = tx.open_table(SNAPSHOT).unwrap();
            s.remove("meta").unwrap();
            s.remove("data").unwrap();
            let legacy =
                serde_json::to_vec(&serde_json::json!({ "meta": meta, "data": data })).unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("snapshot", legacy.as_slice())
                .unwrap();
        }
        tx.commit().unwrap();
    }
    assert_eq!(state(&path), want, "the earlier format is read back");
    {
        let (_log, mut sm) = open::<TestConfig, Kv>(&path).unwrap();
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, meta);
        // The next snapshot replaces the earlier format.
        sm.apply(vec![put(3, "c", "3")]).await.unwrap();
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
    }
    let db = Database::create(&path).unwrap();
    let tx = db.begin_read().unwrap();
    assert!(tx
        .open_table(META)
        .unwrap()
        .get("snapshot")
        .unwrap()
        .is_none());
    let keys: Vec<String> = tx
        .open_table(SNAPSHOT)
        .unwrap()
        .iter()
        .unwrap()
        .map(|r| r.unwrap().0.value().to_string())
        .collect();
    assert_eq!(keys, ["data", "meta"]);
    drop(tx);
    drop(db);
    let mut want = want;
    want.insert("c".into(), "3".into());
    assert_eq!(state(&path), want);
}

#[tokio::test]
async fn replication_reads_are_bounded_in_bytes_and_cover_the_log_in_order() {
    use openraft::storage::RaftLogReader;

    const LOG: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("raft_log");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.redb");
    // 40 entries of 300 KB (12 MB) and one of 5 MB, written as stored.
    let sizes: Vec<usize> = (1..=40)
        .map(|_| 300_000)
        .chain([5_000_000])
        .chain((0..3).map(|_| 10))
        .collect();
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(LOG).unwrap();
            for (i, n) in sizes.iter().enumerate() {
                let index = i as u64 + 1;
                let e = put(index, &format!("k{index}"), &"v".repeat(*n));
                t.insert(index, serde_json::to_vec(&e).unwrap().as_slice())
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let (mut log, _sm) = open::<TestConfig, Kv>(&path).unwrap();
    let last = sizes.len() as u64 + 1;
    // Everything at once through the unlimited read.
    let all = log.try_get_log_entries(1..last).await.unwrap();
    assert_eq!(all.len(), sizes.len());
    // The replication reads, one after another, as openraft issues them.
    let mut next = 1;
    let mut rounds = Vec::new();
    while next < last {
        let got = log.limited_get_log_entries(next, last).await.unwrap();
        assert!(!got.is_empty(), "a non-empty range never reads nothing");
        let bytes: usize = got
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap().len())
            .sum();
        // At most 2 MiB, unless a single entry is larger by itself.
        assert!(
            bytes <= 2 << 20 || got.len() == 1,
            "{} entries, {bytes} bytes",
            got.len()
        );
        for (k, e) in got.iter().enumerate() {
            assert_eq!(e.log_id.index, next + k as u64);
        }
        next += got.len() as u64;
        rounds.push(got.len());
    }
    // 300 KB entries go 6 or so at a time, the 5 MB one alone, the small
    // ones with nothing to stop them.
    assert!(rounds.len() > 6, "{rounds:?}");
    assert!(rounds.contains(&1), "{rounds:?}");
    assert_eq!(rounds.iter().sum::<usize>(), sizes.len());
}

/// Checkpoints: two stores that apply the same entries, in different
/// batches, take their snapshots at the same multiples of `every`, with
/// equal digests whatever was applied after the multiple; the snapshot a
/// store builds is its last checkpoint, not its current state; a store that
/// installs another's checkpoint can vouch for it (and for nothing older it
/// did not keep); and the newest digest comes back after a restart.
#[tokio::test]
async fn replicas_checkpoint_at_the_same_indices_with_the_same_digest() {
    use keyquorum_store::raft::{checkpoint, open_with};
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<_> = (1..=25u64)
        .map(|i| put(i, &format!("k{}", i % 7), &i.to_string()))
        .collect();
    let (_la, mut a) = open_with::<TestConfig, Kv>(&dir.path().join("a.redb"), Some(10)).unwrap();
    let (_lb, mut b) = open_with::<TestConfig, Kv>(&dir.path().join("b.redb"), Some(10)).unwrap();
    // a: one batch up to 23; b: small batches up to 25.
    a.apply(entries[..23].to_vec()).await.unwrap();
    for chunk in entries.chunks(3) {
        b.apply(chunk.to_vec()).await.unwrap();
    }
    let sa = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let sb = b
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(
        sa.meta.last_log_id.unwrap().index,
        20,
        "the last multiple, not 23"
    );
    assert_eq!(
        sb.meta.last_log_id.unwrap().index,
        20,
        "the last multiple, not 25"
    );
    let (da, db) = (
        a.checkpoints().digest_at(20).unwrap(),
        b.checkpoints().digest_at(20).unwrap(),
    );
    assert_eq!(da, db);
    assert_eq!(
        checkpoint::digest(&sa.meta, sa.snapshot.get_ref()).unwrap(),
        da,
        "the digest is the snapshot's, metadata and data"
    );
    // Index 10 was superseded in a's single batch before a snapshot was
    // asked for: a has no checkpoint there.
    assert_eq!(a.checkpoints().digest_at(10), None);
    // Asked again with nothing new to keep: the stored checkpoint.
    let again = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(again.meta, sa.meta);

    // A third store installs a's checkpoint and can vouch for it.
    let path_c = dir.path().join("c.redb");
    {
        let (_lc, mut c) = open_with::<TestConfig, Kv>(&path_c, Some(10)).unwrap();
        c.apply(entries[..12].to_vec()).await.unwrap();
        c.install_snapshot(
            &sa.meta,
            Box::new(Cursor::new(sa.snapshot.get_ref().clone())),
        )
        .await
        .unwrap();
        assert_eq!(c.checkpoints().digest_at(20), Some(da));
        // The checkpoint at 10 it kept while applying is not stored over
        // the installed one.
        let built = c
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(built.meta, sa.meta);
    }
    let (_lc, c) = open_with::<TestConfig, Kv>(&path_c, Some(10)).unwrap();
    assert_eq!(c.checkpoints().digest_at(20), Some(da), "after a restart");
    // A different state at the same index has another digest.
    let mut other = sa.snapshot.get_ref().clone();
    let pos = other.iter().position(|b| *b == b'2').unwrap();
    other[pos] = b'3';
    assert_ne!(checkpoint::digest(&sa.meta, &other).unwrap(), da);
}

/// A machine that cannot apply values "newer" than it knows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Picky(BTreeMap<String, String>);

impl Machine for Picky {
    type Command = Put;
    type Response = Option<String>;
    fn apply(&mut self, _index: u64, c: &Put) -> Option<String> {
        self.0.insert(c.0.clone(), c.1.clone())
    }
    fn check(&self, index: u64, c: &Put) -> Result<(), String> {
        if c.1 == "newer" {
            Err(format!("cannot apply index {index}"))
        } else {
            Ok(())
        }
    }
    fn check_state(&self) -> Result<(), String> {
        if self.0.values().any(|v| v == "newer state") {
            Err("a state from a newer build".into())
        } else {
            Ok(())
        }
    }
}

/// A checkpoint or snapshot whose state the machine's `check_state`
/// refuses: the store does not open on it, and an install of it fails
/// with nothing installed; a state it takes opens and installs.
#[tokio::test]
async fn a_state_the_machine_cannot_take_is_not_loaded_or_installed() {
    let dir = tempfile::tempdir().unwrap();
    let (newer, fine) = (dir.path().join("newer.redb"), dir.path().join("fine.redb"));
    let mut snaps = Vec::new();
    for (path, value) in [(&newer, "newer state"), (&fine, "1")] {
        let (_log, mut sm) = open::<TestConfig, Picky>(path).unwrap();
        sm.apply(vec![put(1, "a", value)]).await.unwrap();
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        snaps.push((snap.meta, snap.snapshot.into_inner()));
    }
    let err = open::<TestConfig, Picky>(&newer).err().expect("refused");
    assert!(
        err.to_string().contains("a state from a newer build"),
        "{err}"
    );
    let (_log, sm) = open::<TestConfig, Picky>(&fine).unwrap();
    assert!(sm.reader().read(|m| m.0.get("a") == Some(&"1".to_string())));
    drop((_log, sm));
    let other = dir.path().join("other.redb");
    let (_log, mut sm) = open::<TestConfig, Picky>(&other).unwrap();
    let (meta, data) = snaps.remove(0);
    let err = sm
        .install_snapshot(&meta, Box::new(Cursor::new(data)))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("a state from a newer build"),
        "{err}"
    );
    assert!(sm.reader().read(|m| m.0.is_empty()), "nothing installed");
    assert_eq!(sm.reader().applied_index(), None);
    let (meta, data) = snaps.remove(0);
    sm.install_snapshot(&meta, Box::new(Cursor::new(data)))
        .await
        .unwrap();
    assert!(sm.reader().read(|m| m.0.get("a") == Some(&"1".to_string())));
}

/// A command the machine's `check` refuses fails the apply at that entry,
/// before anything of it is applied (openraft then stops); the entries
/// before it in the batch are applied.
#[tokio::test]
async fn a_command_the_machine_cannot_apply_stops_the_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open::<TestConfig, Picky>(&dir.path().join("raft.redb")).unwrap();
    sm.apply(vec![put(1, "a", "1")]).await.unwrap();
    let err = sm
        .apply(vec![put(2, "b", "2"), put(3, "c", "newer")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot apply index 3"), "{err}");
    let reader = sm.reader();
    assert!(!reader.read(|m| m.0.contains_key("c")));
    assert_eq!(
        reader.applied_index(),
        Some(2),
        "applied up to the entry before"
    );
}

/// A machine that keeps its values as side records and only their count in
/// itself (and its snapshots).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Logged {
    count: u64,
    #[serde(skip)]
    pending: Vec<SideWrite>,
}

impl Machine for Logged {
    type Command = Put;
    type Response = Option<String>;
    fn apply(&mut self, _index: u64, c: &Put) -> Option<String> {
        self.pending.push(SideWrite {
            space: 7,
            key: self.count,
            value: c.1.clone().into_bytes(),
        });
        self.count += 1;
        None
    }
    fn take_side(&mut self) -> Vec<SideWrite> {
        std::mem::take(&mut self.pending)
    }
}

#[tokio::test]
async fn side_records_are_written_with_their_entries_and_stay_out_of_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.redb");
    let snap = {
        let (_log, mut sm) = open::<TestConfig, Logged>(&path).unwrap();
        let side = sm.side();
        sm.apply(vec![put(1, "a", "first"), put(2, "b", "second")])
            .await
            .unwrap();
        // Readable as soon as apply returns.
        assert_eq!(side.get(7, 1).unwrap().unwrap(), b"second");
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let data = snap.snapshot.into_inner();
        assert!(
            !String::from_utf8_lossy(&data).contains("second"),
            "the snapshot carries the count only"
        );
        (snap.meta, data)
    };
    // After a restart: the records and the count are back.
    {
        let (log, sm) = open::<TestConfig, Logged>(&path).unwrap();
        assert_eq!(sm.reader().read(|m| m.count), 2);
        let side = sm.side();
        let all = side.range(7, 0, 10).unwrap();
        assert_eq!(all, vec![(0, b"first".to_vec()), (1, b"second".to_vec())]);
        assert_eq!(side.range(7, 1, 1).unwrap().len(), 1);
        // Keys without their values; a read bounded by bytes stops after
        // the record that passes the budget, and reads one at least.
        assert_eq!(side.keys(7, 0, 10).unwrap(), vec![0, 1]);
        assert_eq!(side.keys(7, 1, 10).unwrap(), vec![1]);
        assert_eq!(side.range_within(7, 0, 10, 3).unwrap(), all[..1]);
        assert_eq!(side.range_within(7, 0, 10, 0).unwrap(), all[..1]);
        assert_eq!(side.range_within(7, 0, 10, 5).unwrap(), all);
        assert_eq!(side.range_within(7, 0, 1, 100).unwrap(), all[..1]);
        assert!(side.get(8, 0).unwrap().is_none());
        drop((log, sm));
        assert!(
            side.get(7, 0).is_err(),
            "a handle does not keep the file open"
        );
    }
    // A snapshot installed elsewhere brings the count, not the records
    // (the machine's owner fetches them).
    let other = dir.path().join("other.redb");
    let (_log, mut sm) = open::<TestConfig, Logged>(&other).unwrap();
    sm.install_snapshot(&snap.0, Box::new(Cursor::new(snap.1)))
        .await
        .unwrap();
    assert_eq!(sm.reader().read(|m| m.count), 2);
    assert!(sm.side().range(7, 0, 10).unwrap().is_empty());
    sm.side()
        .put(
            &[SideWrite {
                space: 7,
                key: 0,
                value: b"fetched".to_vec(),
            }],
            true,
        )
        .unwrap();
    assert_eq!(sm.side().get(7, 0).unwrap().unwrap(), b"fetched");
}
