//! Saved files checked and restored: an honest one, and what a forger
//! holding fewer than the needed members' keys can make.

use ed25519_dalek::{Signer as _, SigningKey};
use keyquorum_wire::api::{checkpoint_statement, CheckpointAttestation};
use keyquorum_wire::control::{NodeInfo, TypeConfig};
use keyquorum_wire::{Hex, Hex32, NodeId};
use openraft::{CommittedLeaderId, LogId, SnapshotMeta, StoredMembership};

use super::*;
use crate::cluster::machine::roster::RosterNode;

const INDEX: u64 = 40;

fn id(n: u16) -> NodeId {
    NodeId::new(n).unwrap()
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn public(k: &SigningKey) -> Hex32 {
    Hex32(k.verifying_key().to_bytes())
}

/// A registry whose record lists nodes 1..=3 as voters with `keys`.
fn registry(keys: &[SigningKey]) -> Registry {
    let mut r = Registry::default();
    r.roster.in_force = true;
    for (i, k) in keys.iter().enumerate() {
        let n = id(i as u16 + 1);
        let info = NodeInfo {
            addr: format!("https://127.0.0.1:{}", 7001 + i),
            identity: public(k),
            hpke: Hex32([i as u8; 32]),
        };
        r.roster.nodes.insert(n, RosterNode { info, voter: true });
        r.founders.insert(n, public(k));
    }
    r
}

/// A file of `r` at [`INDEX`], attested by `signers` (node, key).
fn file(r: &Registry, signers: &[(u16, &SigningKey)]) -> SnapshotFile {
    let meta: SnapshotMeta<u64, NodeInfo> = SnapshotMeta {
        last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), INDEX)),
        last_membership: StoredMembership::default(),
        snapshot_id: "test".into(),
    };
    let data = serde_json::to_string(&serde_json::json!({
        "last_applied": meta.last_log_id,
        "membership": meta.last_membership,
        "machine": r,
    }))
    .unwrap();
    let digest = Hex32(keyquorum_store::raft::checkpoint::digest(&meta, data.as_bytes()).unwrap());
    let gen = Hex32(genesis(&r.founders));
    let attestations = signers
        .iter()
        .map(|(n, k)| attest(*n, k, gen, INDEX, digest))
        .collect();
    SnapshotFile {
        format: FILE_FORMAT.into(),
        saved_ms: 0,
        saved_from: "test".into(),
        meta: serde_json::to_value(&meta).unwrap(),
        data,
        attestations,
        heads: Vec::new(),
        entries: Vec::new(),
    }
}

fn attest(
    n: u16,
    k: &SigningKey,
    genesis: Hex32,
    index: u64,
    digest: Hex32,
) -> CheckpointAttestation {
    let statement = checkpoint_statement(id(n), &genesis, index, CHECKPOINT_FORMAT, &digest);
    CheckpointAttestation {
        node: id(n),
        identity: public(k),
        genesis,
        index,
        format: CHECKPOINT_FORMAT,
        digest,
        signature: Hex(k.sign(&statement).to_bytes().to_vec()),
    }
}

fn opts(trusted: &[[u8; 32]], lose_newer: bool) -> RestoreOptions {
    RestoreOptions {
        label: "first".into(),
        trusted: trusted.to_vec(),
        min: 0,
        lose_newer,
        now_ms: 5,
    }
}

fn anchors(keys: &[&SigningKey]) -> Vec<[u8; 32]> {
    keys.iter().map(|k| k.verifying_key().to_bytes()).collect()
}

#[test]
fn an_honest_file_checks_with_a_majority_of_trusted_voters_and_no_fewer() {
    let ks = [key(1), key(2), key(3)];
    let r = registry(&ks);
    let all = anchors(&[&ks[0], &ks[1], &ks[2]]);
    let f = file(&r, &[(1, &ks[0]), (2, &ks[1]), (3, &ks[2])]);
    let c = check(&f, &all, 0).unwrap();
    assert_eq!((c.index, c.needed), (INDEX, 2));
    assert_eq!(c.trusted_by, vec![id(1), id(2), id(3)]);
    // Two trusted voters are enough; one is not.
    assert!(check(&f, &anchors(&[&ks[0], &ks[2]]), 0).is_ok());
    let one = check(&f, &anchors(&[&ks[1]]), 0).unwrap_err();
    assert!(matches!(one, BackupError::Unvouched(_)), "{one}");
    // Nor is one attestation, whoever trusts it.
    let f1 = file(&r, &[(1, &ks[0])]);
    assert!(matches!(
        check(&f1, &all, 0),
        Err(BackupError::Unvouched(_))
    ));
}

#[test]
fn a_forged_roster_or_a_replayed_attestation_is_not_vouched_for() {
    let ks = [key(1), key(2), key(3)];
    let honest = file(&registry(&ks), &[(1, &ks[0]), (2, &ks[1]), (3, &ks[2])]);
    let all = anchors(&[&ks[0], &ks[1], &ks[2]]);
    // A forger holding node 3's key (t − 1 = 1 of a 2-of-3 cluster) makes a
    // state whose record gives node 2 a key of its own, and signs for it.
    let m2 = key(12);
    let forged_r = registry(&[ks[0].clone(), m2.clone(), ks[2].clone()]);
    let mut forged = file(&forged_r, &[(2, &m2), (3, &ks[2])]);
    // Node 1's genuine attestation of the honest checkpoint, replayed.
    forged.attestations.push(honest.attestations[0].clone());
    let c = examine(&forged, &all, 0).unwrap().checked;
    assert_eq!(
        (c.attested_by, c.trusted_by),
        (vec![id(2), id(3)], vec![id(3)])
    );
    let e = check(&forged, &all, 0).unwrap_err();
    assert!(matches!(e, BackupError::Unvouched(_)), "{e}");
    // Nor by making itself the only voter (the others listed as learners,
    // no keys): the checkpoint alone would ask for one attestation, the
    // three identities trusted ask for two.
    let mut alone_r = registry(&ks);
    for n in [1, 2] {
        alone_r.roster.nodes.get_mut(&id(n)).unwrap().voter = false;
    }
    let alone = file(&alone_r, &[(3, &ks[2])]);
    assert!(
        check(&alone, &anchors(&[&ks[2]]), 0).is_ok(),
        "one trusted, one needed"
    );
    let e = check(&alone, &all, 0).unwrap_err();
    assert!(matches!(e, BackupError::Unvouched(_)), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let e = restore(
        dir.path(),
        id(1),
        public(&ks[0]),
        &alone,
        &opts(&all, false),
    )
    .unwrap_err();
    assert!(matches!(e, BackupError::Unvouched(_)), "{e}");
    // Node 1 restores it neither on its own word (it attested another
    // digest) nor on the trusted voters'.
    let e = restore(
        dir.path(),
        id(1),
        public(&ks[0]),
        &forged,
        &opts(&all, false),
    )
    .unwrap_err();
    assert!(matches!(e, BackupError::Unvouched(_)), "{e}");
    assert!(!dir.path().join(RAFT_FILE).exists());
    // An attestation of the same bytes at another index, or another
    // cluster's genesis, counts for nothing.
    let mut moved = honest.clone();
    let digest = moved.attestations[1].digest;
    let gen = moved.attestations[1].genesis;
    moved.attestations = vec![
        attest(1, &ks[0], gen, INDEX + 20, digest),
        attest(2, &ks[1], Hex32([7; 32]), INDEX, digest),
        moved.attestations[2].clone(),
    ];
    let c = examine(&moved, &all, 0).unwrap().checked;
    assert_eq!(c.attested_by, vec![id(3)]);
    // A changed byte of the state: no attestation matches it.
    let mut changed = honest.clone();
    changed.data = changed.data.replace("7002", "7009");
    assert!(matches!(
        check(&changed, &all, 0),
        Err(BackupError::Unvouched(_))
    ));
}

#[test]
fn a_node_restores_what_it_attested_itself_and_the_store_opens_on_it() {
    let ks = [key(1), key(2), key(3)];
    let r = registry(&ks);
    let f = file(&r, &[(1, &ks[0]), (2, &ks[1])]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(RAFT_FILE), b"an older file").unwrap();
    // Node 3 did not attest it and trusts no one: refused.
    let e = restore(dir.path(), id(3), public(&ks[2]), &f, &opts(&[], false)).unwrap_err();
    assert!(matches!(e, BackupError::Unvouched(_)), "{e}");
    // A node the record does not list with its key: refused.
    let e = restore(dir.path(), id(2), public(&key(9)), &f, &opts(&[], false)).unwrap_err();
    assert!(matches!(e, BackupError::NotMember(_)), "{e}");
    assert_eq!(
        std::fs::read(dir.path().join(RAFT_FILE)).unwrap(),
        b"an older file"
    );
    // Node 1 attested it, but its old file does not read: what the
    // checkpoint rolls back cannot be told, so it must be told to go on.
    let e = restore(dir.path(), id(1), public(&ks[0]), &f, &opts(&[], false)).unwrap_err();
    assert!(matches!(e, BackupError::Newer(_)), "{e}");
    // Told: restored, the old file kept beside.
    let done = restore(dir.path(), id(1), public(&ks[0]), &f, &opts(&[], true)).unwrap();
    assert!(done.own);
    let aside = done.previous.unwrap();
    assert_eq!(std::fs::read(&aside).unwrap(), b"an older file");
    let (_, sm) = keyquorum_store::raft::open_with::<TypeConfig, Registry>(
        &dir.path().join(RAFT_FILE),
        Some(20),
    )
    .unwrap();
    assert_eq!(sm.reader().applied_index(), Some(INDEX));
    assert_eq!(sm.reader().read(|m| m.roster.nodes.len()), 3);
    // The state is the checkpoint's marked restored (nothing signed before
    // the voters boot on it is taken: `machine::clock::RestoreFloor`), so
    // its checkpoint is not the file's; every node restoring the file
    // writes the same one, and can attest it to the others.
    let c = check(&f, &anchors(&[&ks[0], &ks[1]]), 0).unwrap();
    let restored = sm.checkpoints().digest_at(INDEX).unwrap();
    assert_ne!(restored, c.digest.0);
    assert!(sm.reader().read(|m| m.clock.restore_id()).is_some());
    let dir2 = tempfile::tempdir().unwrap();
    restore(dir2.path(), id(2), public(&ks[1]), &f, &opts(&[], true)).unwrap();
    let (_, sm2) = keyquorum_store::raft::open_with::<TypeConfig, Registry>(
        &dir2.path().join(RAFT_FILE),
        Some(20),
    )
    .unwrap();
    assert_eq!(sm2.checkpoints().digest_at(INDEX), Some(restored));
    let first_id = sm2.reader().read(|m| m.clock.restore_id());
    drop(sm2);
    // The same file restored again under another label: another restore
    // (boots naming the first count for nothing); no label: refused.
    let dir3 = tempfile::tempdir().unwrap();
    let again = RestoreOptions {
        label: "second".into(),
        ..opts(&[], true)
    };
    restore(dir3.path(), id(2), public(&ks[1]), &f, &again).unwrap();
    let (_, sm3) = keyquorum_store::raft::open_with::<TypeConfig, Registry>(
        &dir3.path().join(RAFT_FILE),
        Some(20),
    )
    .unwrap();
    assert!(first_id.is_some());
    assert_ne!(sm3.reader().read(|m| m.clock.restore_id()), first_id);
    let unlabelled = RestoreOptions {
        label: String::new(),
        ..opts(&[], true)
    };
    let dir4 = tempfile::tempdir().unwrap();
    let e = restore(dir4.path(), id(2), public(&ks[1]), &f, &unlabelled).unwrap_err();
    assert!(e.to_string().contains("label"), "{e}");
}

#[test]
fn malformed_files_are_refused_with_an_error() {
    let ks = [key(1), key(2), key(3)];
    let f = file(&registry(&ks), &[(1, &ks[0]), (2, &ks[1])]);
    let all = anchors(&[&ks[0], &ks[1], &ks[2]]);
    let mut other = f.clone();
    other.format = "keyquorum-snapshot-v9".into();
    assert!(matches!(
        check(&other, &all, 0),
        Err(BackupError::Malformed(_))
    ));
    let mut other = f.clone();
    other.data = "{".into();
    assert!(matches!(
        check(&other, &all, 0),
        Err(BackupError::Malformed(_))
    ));
    let mut other = f.clone();
    other.meta = serde_json::json!({"last_log_id": null});
    assert!(matches!(
        check(&other, &all, 0),
        Err(BackupError::Malformed(_))
    ));
    // A state from before init (no record in force).
    let mut r = registry(&ks);
    r.roster.in_force = false;
    let other = file(&r, &[(1, &ks[0]), (2, &ks[1])]);
    assert!(matches!(
        check(&other, &all, 0),
        Err(BackupError::Malformed(_))
    ));
}

#[test]
fn a_restore_that_would_lose_a_newer_key_needs_to_be_told() {
    let ks = [key(1), key(2), key(3)];
    let older = registry(&ks);
    let mut newer_r = older.clone();
    let record = |epoch| keyquorum_wire::control::KeyRecord {
        name: "prod".into(),
        suite: keyquorum_wire::api::SuiteName::Ed25519,
        threshold: 2,
        members: vec![id(1), id(2), id(3)],
        public_key: Hex(vec![1; 32]),
        group_key: Hex(vec![2; 8]),
        epoch,
        session: Hex32([3; 32]),
        created_ms: 0,
    };
    newer_r.keys.records.insert("prod".into(), record(1));
    let mut older_r = older;
    older_r.keys.records.insert("prod".into(), record(0));
    let dir = tempfile::tempdir().unwrap();
    // The node's state now: the key refreshed (epoch 1).
    let now = file(&newer_r, &[(1, &ks[0]), (2, &ks[1])]);
    restore(dir.path(), id(1), public(&ks[0]), &now, &opts(&[], true)).unwrap();
    // Back to epoch 0: refused unless told, then the loss is named.
    let then = file(&older_r, &[(1, &ks[0]), (2, &ks[1])]);
    let e = restore(dir.path(), id(1), public(&ks[0]), &then, &opts(&[], false)).unwrap_err();
    assert!(
        matches!(&e, BackupError::Newer(l) if l == &["key prod (epoch 1 after 0)"]),
        "{e}"
    );
    let done = restore(dir.path(), id(1), public(&ks[0]), &then, &opts(&[], true)).unwrap();
    assert_eq!(done.lost, ["key prod (epoch 1 after 0)"]);
}

#[test]
fn a_node_that_did_not_attest_needs_the_ca_file_and_as_many_as_its_own_state_asks() {
    let ks = [key(1), key(2), key(3)];
    let r = registry(&ks);
    let dir = tempfile::tempdir().unwrap();
    let first = file(&r, &[(1, &ks[0]), (2, &ks[1])]);
    restore(dir.path(), id(1), public(&ks[0]), &first, &opts(&[], true)).unwrap();
    // A file node 1 did not attest, attested by nodes 2 and 3: not
    // without the CA file.
    let mut later = file(&r, &[(2, &ks[1]), (3, &ks[2])]);
    let e = restore(dir.path(), id(1), public(&ks[0]), &later, &opts(&[], false)).unwrap_err();
    assert!(matches!(e, BackupError::Unvouched(_)), "{e}");
    // With it, its own state's voters (the same) vouch.
    let all = anchors(&[&ks[0], &ks[1], &ks[2]]);
    let done = restore(
        dir.path(),
        id(1),
        public(&ks[0]),
        &later,
        &opts(&all, false),
    )
    .unwrap();
    assert!(!done.own);
    assert_eq!(done.checked.trusted_by, vec![id(2), id(3)]);
    assert_eq!(done.previous_state, "read");
    // One of them is not enough.
    later.attestations.truncate(1);
    let e = restore(
        dir.path(),
        id(1),
        public(&ks[0]),
        &later,
        &opts(&all, false),
    )
    .unwrap_err();
    assert!(matches!(e, BackupError::Unvouched(_)), "{e}");
}

#[test]
fn a_node_whose_state_missed_new_members_still_asks_the_ca_file_s_majority() {
    // Node 1's state: voters 1-3. The cluster has since grown to 1-5
    // (the CA file), and 2 and 3 are compromised: their two attestations
    // satisfy node 1's stale state, not a majority of five.
    let ks = [key(1), key(2), key(3)];
    let dir = tempfile::tempdir().unwrap();
    let mine = file(&registry(&ks), &[(1, &ks[0]), (2, &ks[1])]);
    restore(dir.path(), id(1), public(&ks[0]), &mine, &opts(&[], true)).unwrap();
    let forged = file(&registry(&ks), &[(2, &ks[1]), (3, &ks[2])]);
    let five = anchors(&[&ks[0], &ks[1], &ks[2], &key(4), &key(5)]);
    let e = restore(
        dir.path(),
        id(1),
        public(&ks[0]),
        &forged,
        &opts(&five, false),
    )
    .unwrap_err();
    assert!(matches!(e, BackupError::Unvouched(_)), "{e}");
}

#[test]
fn a_record_listing_one_key_twice_is_refused() {
    // A compromised node 3 gives node 2 its own key, to sign for two.
    let ks = [key(1), key(3), key(3)];
    let f = file(&registry(&ks), &[(2, &ks[1]), (3, &ks[2])]);
    let all = anchors(&[&key(1), &key(2), &key(3)]);
    let e = check(&f, &all, 0).unwrap_err();
    assert!(matches!(e, BackupError::Malformed(_)), "{e}");
}
