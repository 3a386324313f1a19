#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! Faults on in-process clusters over loopback: a malicious DKG participant
//! and signer, losing n−t nodes under signing load, losing the Raft leader,
//! a node that stops answering in the middle of a DKG and of a reshare,
//! restarting every node, and a nonce asked for twice across a restart.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{check_sig, cluster, n, ns, sign_and_check, status_of, wait_for_audit};
use keyquorum_client::Client;
use keyquorum_core::codec::{Decode, Encode};
use keyquorum_core::sign::{Coordinator, SignatureShare, SigningCommitment};
use keyquorum_core::{Ed25519, GroupKey, SessionId};
use keyquorum_node::dev::LocalCluster;
use keyquorum_node::Node;
use keyquorum_store::Table;
use keyquorum_wire::api::{CreateKeyRequest, KeyInfo, SuiteName};
use keyquorum_wire::peer::{ClientRequest, NonceCommitment, PeerMessage};
use keyquorum_wire::{Hex, NodeId};

fn create(name: &str, suite: SuiteName, t: u16, members: Option<Vec<NodeId>>) -> CreateKeyRequest {
    CreateKeyRequest {
        name: name.into(),
        suite,
        threshold: Some(t),
        members,
        min_members: None,
    }
}

fn vault_count(c: &LocalCluster, id: NodeId, table: Table, key: &str) -> usize {
    c.node(id)
        .unwrap()
        .vault()
        .count(table, format!("{key}/").as_bytes())
        .unwrap()
}

async fn poll<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malicious_dkg_participant_and_signer_are_identified_and_left_out() {
    let (_dir, c) = cluster(4, 3, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();

    // Node 4 deals shares off its own commitment.
    c.keys(n(4))
        .unwrap()
        .faults()
        .bad_dkg_share
        .store(true, Ordering::Relaxed);
    // Without the caller's consent to fewer members, no key is made.
    let err = admin
        .create_key(&create("k", SuiteName::Ed25519, 3, None))
        .await
        .unwrap_err();
    assert!(status_of(&err) >= 500, "{err}");
    assert!(
        err.to_string().contains("participant(s) 4 misbehaved"),
        "{err}"
    );
    let key = admin
        .create_key(&CreateKeyRequest {
            min_members: Some(3),
            ..create("k", SuiteName::Ed25519, 3, None)
        })
        .await
        .unwrap();
    assert_eq!(key.members, ns(&[1, 2, 3]), "the culprit is left out");
    assert_eq!(key.threshold, 3);
    sign_and_check(&admin, &key, b"without the culprit").await;
    let blame = wait_for_audit(&admin, "dkg.blame", |e| e["event"]["action"] == "dkg.blame").await;
    assert!(
        blame["event"]["outcome"].as_str().unwrap().contains("[4]"),
        "{blame}"
    );
    // The culprit keeps nothing of either run (the failed one was rolled back).
    assert_eq!(vault_count(&c, n(4), Table::Shares, "k"), 0);
    poll(
        "node 4's pending share rolled back",
        Duration::from_secs(5),
        || async { vault_count(&c, n(4), Table::Pending, "k") == 0 },
    )
    .await;

    // Node 2 sends signature shares that do not verify: every signature
    // still comes out valid, made without it.
    let k2 = admin
        .create_key(&create(
            "k2",
            SuiteName::Secp256k1Tr,
            2,
            Some(ns(&[1, 2, 3])),
        ))
        .await
        .unwrap();
    c.keys(n(2))
        .unwrap()
        .faults()
        .bad_signature_share
        .store(true, Ordering::Relaxed);
    for i in 0..6u8 {
        let signers = sign_and_check(&admin, &k2, &[b's', i]).await;
        assert!(
            !signers.contains(&n(2)),
            "node 2's bad share was used: {signers:?}"
        );
    }
    c.shutdown().await;
}

/// A message and its signature.
type Signed = (Vec<u8>, Vec<u8>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_n_minus_t_nodes_under_signing_load() {
    let (_dir, mut c) = cluster(5, 3, 16).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let key = admin
        .create_key(&create("load", SuiteName::Ed25519, 3, None))
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let sigs: Arc<Mutex<Vec<Signed>>> = Arc::default();
    let survivor_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..10u64 {
        // Eight workers enter through the nodes that stay, two through the
        // ones that go (their requests may fail, but must not hang).
        let entry = if w < 8 { w % 3 + 1 } else { w - 4 };
        let client = Client::new(
            &c.url_of(n(u16::try_from(entry).unwrap())),
            &c.admin,
            c.ca_pem().as_bytes(),
        )
        .unwrap();
        let (stop, done, sigs, errs, name) = (
            stop.clone(),
            done.clone(),
            sigs.clone(),
            survivor_errors.clone(),
            key.name.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let msg = format!("w{w} m{i}").into_bytes();
                let r = tokio::time::timeout(Duration::from_secs(30), client.sign(&name, &msg))
                    .await
                    .unwrap_or_else(|_| panic!("a sign request through node {entry} hung"));
                match r {
                    Ok(s) => {
                        sigs.lock().unwrap().push((msg, s.signature.0));
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if entry <= 3 => errs.lock().unwrap().push(e.to_string()),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    let d = done.clone();
    poll(
        "signatures before the kill",
        Duration::from_secs(60),
        || {
            let d = d.clone();
            async move { d.load(Ordering::Relaxed) >= 40 }
        },
    )
    .await;
    c.stop_node(n(4)).await;
    c.stop_node(n(5)).await;
    let at_kill = done.load(Ordering::Relaxed);
    let d = done.clone();
    poll("signatures after the kill", Duration::from_secs(60), || {
        let d = d.clone();
        async move { d.load(Ordering::Relaxed) >= at_kill + 60 }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let errs = survivor_errors.lock().unwrap().clone();
    assert!(
        errs.is_empty(),
        "requests through surviving nodes failed: {errs:?}"
    );
    let sigs = std::mem::take(&mut *sigs.lock().unwrap());
    assert!(sigs.len() >= at_kill + 60);
    for (msg, sig) in sigs.iter() {
        check_sig(&key, msg, sig);
    }
    // With only t = 3 members left, every signer set is {1, 2, 3}.
    let s = admin.sign(&key.name, b"after").await.unwrap();
    assert_eq!(
        s.signers
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        ns(&[1, 2, 3]).into_iter().collect()
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_resume_after_the_leader_is_lost() {
    let (_dir, mut c) = cluster(3, 2, 0).await;
    let leader = c.node(n(1)).unwrap().leader().unwrap();
    c.stop_node(leader).await;
    let survivors: Vec<NodeId> = (1..=3).map(n).filter(|i| *i != leader).collect();
    let via = Client::new(&c.url_of(survivors[0]), &c.admin, c.ca_pem().as_bytes()).unwrap();
    // Raft writes: a client, then a key among the survivors.
    let app = common::new_client(&via, "after-election", false, false, &["*"]).await;
    let key = via
        .create_key(&create(
            "k",
            SuiteName::Secp256k1Tr,
            2,
            Some(survivors.clone()),
        ))
        .await
        .unwrap();
    let new_leader = c.node(survivors[0]).unwrap().leader().unwrap();
    assert_ne!(new_leader, leader);
    let app_client = Client::new(&c.url_of(survivors[1]), &app, c.ca_pem().as_bytes()).unwrap();
    sign_and_check(&app_client, &key, b"after the election").await;

    // The old leader comes back, catches up and serves the new client.
    c.restart_node(leader).await.unwrap();
    let old = Client::new(&c.url_of(leader), &app, c.ca_pem().as_bytes()).unwrap();
    let n = c.node(leader).unwrap();
    poll(
        "the old leader to catch up",
        Duration::from_secs(20),
        || async { n.registry(|r| r.keys.records.contains_key("k")) },
    )
    .await;
    sign_and_check(&old, &key, b"through the old leader").await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_node_keeps_keys_audit_and_membership() {
    let (_dir, mut c) = cluster(3, 2, 8).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let a = admin
        .create_key(&create("a", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let b = admin
        .create_key(&create("b", SuiteName::Secp256k1Tr, 3, None))
        .await
        .unwrap();
    sign_and_check(&admin, &a, b"before").await;
    sign_and_check(&admin, &b, b"before").await;
    wait_for_audit(&admin, "the key creations", |e| {
        e["event"]["action"] == "key.create" && e["event"]["target"] == "b"
    })
    .await;
    let keys_before = admin.list_keys().await.unwrap().keys;
    let entries_before = common::audit_entries(&admin).await;
    let members_before: Vec<NodeId> = admin
        .status()
        .await
        .unwrap()
        .nodes
        .iter()
        .map(|n| n.id)
        .collect();

    for id in (1..=3).map(n) {
        c.stop_node(id).await;
    }
    for id in (1..=3).map(n) {
        c.restart_node(id).await.unwrap();
    }
    c.wait_ready(Duration::from_secs(30)).await.unwrap();

    let admin = Client::new(&c.url_of(n(2)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    assert_eq!(admin.list_keys().await.unwrap().keys, keys_before);
    let members: Vec<NodeId> = admin
        .status()
        .await
        .unwrap()
        .nodes
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(members, members_before);
    sign_and_check(&admin, &a, b"after").await;
    sign_and_check(&admin, &b, b"after").await;
    let entries = common::audit_entries(&admin).await;
    assert!(entries.len() >= entries_before.len());
    assert_eq!(
        entries[..entries_before.len()],
        entries_before[..],
        "the audit log before the restart is intact"
    );
    assert_eq!(admin.audit_verify().await.unwrap()["valid"], true);
    c.shutdown().await;
}

/// A signature leaves the cluster only after its audit entry is committed:
/// stopping every node the moment the last signature arrives loses none of
/// their audit entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_released_signature_is_in_the_audit_log_even_after_an_abrupt_stop() {
    let (_dir, mut c) = cluster(3, 2, 8).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let key = admin
        .create_key(&create("durable", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let via = Client::new(&c.url_of(n(2)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let mut released = 0;
    for i in 0..12u8 {
        sign_and_check(&via, &key, &[i; 8]).await;
        released += 1;
    }
    // No grace period: stop everything now (the audit writers are aborted).
    for id in (1..=3).map(n) {
        c.stop_node(id).await;
    }
    for id in (1..=3).map(n) {
        c.restart_node(id).await.unwrap();
    }
    c.wait_ready(Duration::from_secs(30)).await.unwrap();
    let admin = Client::new(&c.url_of(n(3)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let entries = common::audit_entries(&admin).await;
    let signs = entries
        .iter()
        .filter(|e| {
            e["event"]["action"] == "key.sign"
                && e["event"]["target"] == "durable"
                && e["event"]["outcome"] == "ok"
        })
        .count();
    assert_eq!(
        signs, released,
        "one committed audit entry per released signature"
    );
    assert_eq!(admin.audit_verify().await.unwrap()["valid"], true);
    c.shutdown().await;
}

async fn nonce(node: &Node, key: &str, epoch: u64) -> NonceCommitment {
    let batch = PeerMessage::NonceBatch {
        key: key.into(),
        epoch,
        count: 1,
    };
    match node.handle_peer(n(1), batch).await.unwrap() {
        PeerMessage::Nonces { mut items } => items.pop().unwrap(),
        other => panic!("unexpected reply {other:?}"),
    }
}

fn package<'a>(
    group: &'a GroupKey<Ed25519>,
    msg: &[u8],
    cs: &[&NonceCommitment],
) -> Coordinator<'a, Ed25519> {
    let cs: Vec<_> = cs
        .iter()
        .map(|c| SigningCommitment::<Ed25519>::from_bytes(&c.commitment.0).unwrap())
        .collect();
    Coordinator::new(group, SessionId([7; 32]), msg, cs).unwrap()
}

fn sign_share(
    key: &str,
    epoch: u64,
    nonce: &NonceCommitment,
    c: &Coordinator<Ed25519>,
    request: &ClientRequest,
) -> PeerMessage {
    PeerMessage::SignShare {
        key: key.into(),
        epoch,
        nonce: nonce.id.clone(),
        package: Hex(c.package().to_bytes()),
        request: request.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_is_never_used_twice_even_across_a_restart() {
    let (_dir, mut c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let key: KeyInfo = admin
        .create_key(&create("n", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let record = c
        .node(n(1))
        .unwrap()
        .registry(|r| r.keys.records.get("n").cloned())
        .unwrap();
    let group = GroupKey::<Ed25519>::from_bytes(&record.group_key.0).unwrap();
    let (n2, n3) = (c.node(n(2)).unwrap(), c.node(n(3)).unwrap());
    let c2 = nonce(&n2, "n", record.epoch).await;
    let c3 = nonce(&n3, "n", record.epoch).await;
    assert_eq!(vault_count(&c, n(2), Table::Nonces, "n"), 1);

    // One honest signing with the two nonces.
    let base = c.url_of(n(1));
    let first = common::sign_request(&base, &c.admin, "n", b"first");
    let mut coord = package(&group, b"first", &[&c2, &c3]);
    for (id, node, nc) in [(2u8, &n2, &c2), (3, &n3, &c3)] {
        let PeerMessage::SignatureShare { share } = node
            .handle_peer(n(1), sign_share("n", record.epoch, nc, &coord, &first))
            .await
            .unwrap()
        else {
            panic!("no signature share from node {id}");
        };
        let share = SignatureShare::<Ed25519>::from_bytes(&share.0).unwrap();
        coord
            .receive(
                keyquorum_core::ParticipantId::new(u16::from(id)).unwrap(),
                share,
            )
            .unwrap();
    }
    let sig = coord.finish().unwrap();
    check_sig(&key, b"first", &sig.to_bytes());
    // The nonce is gone from the vault the moment its share left.
    assert_eq!(vault_count(&c, n(2), Table::Nonces, "n"), 0);

    // Asked again for another message with the same nonce (and a client
    // request for it): refused.
    let second = common::sign_request(&base, &c.admin, "n", b"second");
    let other = package(&group, b"second", &[&c2, &c3]);
    let err = n2
        .handle_peer(n(1), sign_share("n", record.epoch, &c2, &other, &second))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");

    // And after the node restarts (the vault reopened from disk).
    drop(n2);
    c.stop_node(n(2)).await;
    c.restart_node(n(2)).await.unwrap();
    c.wait_ready(Duration::from_secs(30)).await.unwrap();
    let n2 = c.node(n(2)).unwrap();
    let second = common::sign_request(&base, &c.admin, "n", b"second");
    let err = n2
        .handle_peer(n(1), sign_share("n", record.epoch, &c2, &other, &second))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");
    assert_eq!(vault_count(&c, n(2), Table::Nonces, "n"), 0);
    // The key still signs (fresh nonces).
    sign_and_check(
        &Client::new(&c.url_of(n(2)), &c.admin, c.ca_pem().as_bytes()).unwrap(),
        &key,
        b"later",
    )
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_lost_in_the_middle_of_dkg_leaves_nothing_half_done() {
    let (_dir, mut c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    // Node 3 stops answering at the last DKG step (past the peer timeout).
    let n3 = c.node(n(3)).unwrap();
    let k3 = c.keys(n(3)).unwrap();
    k3.faults().stall_finish_ms.store(6_000, Ordering::Relaxed);
    let err = admin
        .create_key(&create("mid", SuiteName::Ed25519, 2, None))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 503, "{err}");
    assert_eq!(status_of(&admin.key("mid").await.unwrap_err()), 404);
    // Nodes 1 and 2 finished their part; the abort rolled it back.
    for id in ns(&[1, 2]) {
        assert_eq!(vault_count(&c, id, Table::Pending, "mid"), 0, "node {id}");
        assert_eq!(vault_count(&c, id, Table::Shares, "mid"), 0, "node {id}");
        assert_eq!(c.keys(id).unwrap().open_sessions(), 0);
    }
    // Node 3 is stopped while its stalled handler sleeps; the handler wakes
    // on the stopped node, after the abort, and keeps nothing.
    c.stop_node(n(3)).await;
    poll(
        "node 3's stalled handler",
        Duration::from_secs(10),
        || async { k3.faults().stalls_ended.load(Ordering::Relaxed) >= 1 },
    )
    .await;
    assert_eq!(n3.vault().count(Table::Pending, b"mid/").unwrap(), 0);
    assert_eq!(k3.open_sessions(), 0);
    drop((n3, k3));

    // With node 3 down, a new DKG over all three aborts cleanly at once.
    let err = admin
        .create_key(&create("mid", SuiteName::Ed25519, 2, None))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 503, "{err}");
    assert_eq!(status_of(&admin.key("mid").await.unwrap_err()), 404);

    // Back up (faults off after a restart): the same key name works.
    c.restart_node(n(3)).await.unwrap();
    c.wait_ready(Duration::from_secs(30)).await.unwrap();
    assert_eq!(vault_count(&c, n(3), Table::Pending, "mid"), 0);
    let key = admin
        .create_key(&create("mid", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    for id in (1..=3).map(n) {
        sign_and_check(
            &Client::new(&c.url_of(id), &c.admin, c.ca_pem().as_bytes()).unwrap(),
            &key,
            b"ok",
        )
        .await;
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_lost_in_the_middle_of_reshare_leaves_the_key_usable() {
    let (_dir, mut c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let key = admin
        .create_key(&create("r", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let add = c.spawn_node().await.unwrap();
    let new_id = add.id;
    admin.add_node(&add).await.unwrap();
    let n4 = c.keys(new_id).unwrap();
    n4.faults().stall_finish_ms.store(6_000, Ordering::Relaxed);

    let err = admin
        .reshare("r", 3, &[n(1), n(2), n(3), new_id])
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 503, "{err}");
    // The key is as it was and signs through every old holder.
    let now = admin.key("r").await.unwrap();
    assert_eq!(now, key);
    for id in (1..=3).map(n) {
        sign_and_check(
            &Client::new(&c.url_of(id), &c.admin, c.ca_pem().as_bytes()).unwrap(),
            &key,
            b"still",
        )
        .await;
    }
    // The late node wakes after the abort: it keeps nothing of the run.
    poll(
        "node 4's stalled handler",
        Duration::from_secs(10),
        || async { n4.faults().stalls_ended.load(Ordering::Relaxed) >= 1 },
    )
    .await;
    for id in [n(1), n(2), n(3), new_id] {
        assert_eq!(vault_count(&c, id, Table::Pending, "r"), 0, "node {id}");
    }
    assert_eq!(vault_count(&c, new_id, Table::Shares, "r"), 0);

    // Once it answers again the reshare goes through, same public key.
    n4.faults().stall_finish_ms.store(0, Ordering::Relaxed);
    let next = admin
        .reshare("r", 3, &[n(1), n(2), n(3), new_id])
        .await
        .unwrap();
    assert_eq!(next.public_key, key.public_key);
    assert_eq!(next.epoch, key.epoch + 1);
    sign_and_check(
        &Client::new(&c.url_of(new_id), &c.admin, c.ca_pem().as_bytes()).unwrap(),
        &next,
        b"new",
    )
    .await;
    c.shutdown().await;
}

/// A coordinator that commits another group key than the one the members
/// computed (here: an existing key's, whose secret it might know) gets it
/// refused on apply by every replica: the record is not endorsed by
/// threshold-many members (issue #17). The members keep their new shares
/// pending and never use them. (Were such a record committed, each member
/// would still refuse to promote a share under a group key it did not
/// compute: `keys::shares`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_key_the_members_did_not_compute_is_never_used() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let a = admin
        .create_key(&create("a", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    // Node 1 coordinates the next DKG and commits key a's group key for it.
    let commit_group_key_of = |key: Option<&str>| {
        *c.keys(n(1))
            .unwrap()
            .faults()
            .commit_group_key_of
            .lock()
            .unwrap() = key.map(str::to_string);
    };
    commit_group_key_of(Some("a"));
    let err = admin
        .create_key(&create("b", SuiteName::Ed25519, 2, None))
        .await
        .unwrap_err();
    commit_group_key_of(None);
    assert!(
        err.to_string().contains("endorsed by 0 of its members"),
        "{err}"
    );

    for via in [1, 2, 3] {
        let client = Client::new(&c.url_of(n(via)), &c.admin, c.ca_pem().as_bytes()).unwrap();
        let err = client.sign("b", b"under a forged key").await.unwrap_err();
        assert_eq!(status_of(&err), 404, "via {via}: {err}");
    }
    for id in ns(&[1, 2, 3]) {
        assert!(
            c.node(id)
                .unwrap()
                .registry(|r| !r.keys.records.contains_key("b")),
            "node {id}"
        );
        assert_eq!(vault_count(&c, id, Table::Shares, "b"), 0, "node {id}");
        assert_eq!(vault_count(&c, id, Table::Pending, "b"), 1, "node {id}");
        assert_eq!(
            vault_count(&c, id, Table::PendingGroups, "b"),
            1,
            "node {id}"
        );
    }
    // The key whose group key was borrowed is untouched and signs.
    sign_and_check(&admin, &a, b"a still signs").await;
    // An honest run afterwards promotes and erases as before.
    let d = admin
        .create_key(&create("d", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let signers = sign_and_check(&admin, &d, b"d signs").await;
    for id in ns(&[1, 2, 3]) {
        // The digest leaves with the pending share it belongs to: at the
        // first use (the signers) or later (the others).
        let pending = vault_count(&c, id, Table::Pending, "d");
        assert_eq!(
            vault_count(&c, id, Table::PendingGroups, "d"),
            pending,
            "node {id}"
        );
        if signers.contains(&id) {
            assert_eq!(pending, 0, "node {id}");
            assert_eq!(vault_count(&c, id, Table::Shares, "d"), 1, "node {id}");
        }
    }
    c.shutdown().await;
}

/// A hostile member (node 1, speaking as itself on the peer channel) asks an
/// honest signer for signature shares no client asked for. Every attempt is
/// refused before a nonce is spent; the one request a client did sign drives
/// its operation's attempts and nothing more; the key still signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_get_signature_shares_no_client_asked_for() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let key: KeyInfo = admin
        .create_key(&create("h", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    admin
        .create_key(&create("other", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let app = common::new_client(&admin, "app", false, false, &["other"]).await;
    let gone = common::new_client(&admin, "gone", false, false, &["*"]).await;
    admin.revoke_client("gone").await.unwrap();
    let record = c
        .node(n(1))
        .unwrap()
        .registry(|r| r.keys.records.get("h").cloned())
        .unwrap();
    let group = GroupKey::<Ed25519>::from_bytes(&record.group_key.0).unwrap();
    let (n2, n3) = (c.node(n(2)).unwrap(), c.node(n(3)).unwrap());
    let base = c.url_of(n(1));
    let body = |m: &[u8]| Some(serde_json::json!({ "message": hex::encode(m) }));
    let unsigned = ClientRequest {
        method: "POST".into(),
        target_uri: format!("{base}/v1/keys/h/sign"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Hex(serde_json::to_vec(&body(b"pay 1000").unwrap()).unwrap()),
    };
    let cases: Vec<(&str, ClientRequest, &str)> = vec![
        ("no client request", unsigned, "not signed"),
        (
            "a request for another message",
            common::sign_request(&base, &c.admin, "h", b"pay 1"),
            "not the one the client asked for",
        ),
        (
            "a request for another key",
            common::sign_request(&base, &c.admin, "other", b"pay 1000"),
            "not a signature with h",
        ),
        (
            "a request for another operation",
            common::client_request(
                &base,
                &c.admin,
                "POST",
                "/v1/keys/h/verify",
                body(b"pay 1000"),
                common::now_s(),
            ),
            "not a signature with h",
        ),
        (
            "a client without permission for the key",
            common::sign_request(&base, &app, "h", b"pay 1000"),
            "may not sign with h",
        ),
        (
            "a revoked client",
            common::sign_request(&base, &gone, "h", b"pay 1000"),
            "revoked",
        ),
        (
            "a request signed for another cluster",
            common::sign_request("https://kq.other.example:7001", &c.admin, "h", b"pay 1000"),
            "not this cluster",
        ),
        (
            "a stale request",
            common::client_request(
                &base,
                &c.admin,
                "POST",
                "/v1/keys/h/sign",
                body(b"pay 1000"),
                common::now_s() - 600,
            ),
            "stale",
        ),
    ];
    for (what, request, needle) in cases {
        for (signer, node) in [(n(2), &n2), (n(3), &n3)] {
            let before = vault_count(&c, signer, Table::Nonces, "h");
            let nc = nonce(node, "h", record.epoch).await;
            let other = if signer == n(2) { n(3) } else { n(2) };
            let oc = nonce(&c.node(other).unwrap(), "h", record.epoch).await;
            let pair = if signer == n(2) {
                [&nc, &oc]
            } else {
                [&oc, &nc]
            };
            let coord = package(&group, b"pay 1000", &pair);
            let err = node
                .handle_peer(n(1), sign_share("h", record.epoch, &nc, &coord, &request))
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains(needle),
                "{what} at node {signer}: {err}"
            );
            // Refused before the nonce was spent.
            assert_eq!(
                vault_count(&c, signer, Table::Nonces, "h"),
                before + 1,
                "{what} at node {signer}"
            );
        }
    }

    // A request the client did sign drives its own operation: each signer
    // set once, at most n - t + 1 = 2 attempts, and not a second time.
    let paid = common::sign_request(&base, &c.admin, "h", b"pay 1000");
    let ask = |node: Node, set: &'static [u16]| {
        ask_share(&c, &group, record.epoch, node, n(1), set, &paid)
    };
    // A made-up nonce id, or the request handed on by another member, uses
    // up nothing.
    let mut bogus = nonce(&n2, "h", record.epoch).await;
    let n3c = nonce(&n3, "h", record.epoch).await;
    let coord = package(&group, b"pay 1000", &[&bogus, &n3c]);
    bogus.id = Hex(vec![9; 16]);
    let err = n2
        .handle_peer(n(1), sign_share("h", record.epoch, &bogus, &coord, &paid))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown or already used nonce"),
        "{err}"
    );
    let err = ask_share(&c, &group, record.epoch, n2.clone(), n(3), &[2, 3], &paid)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("was sent to node 1, not to node 3"),
        "{err}"
    );
    // Each signer set once, at most n - t + 1 = 2 attempts.
    assert!(ask(n2.clone(), &[2, 3]).await.is_ok(), "first attempt");
    let err = ask(n2.clone(), &[2, 3]).await.unwrap_err();
    assert!(
        err.to_string().contains("already drove this step"),
        "same set again: {err}"
    );
    assert!(ask(n2.clone(), &[1, 2]).await.is_ok(), "a fallback attempt");
    let err = ask(n2.clone(), &[1, 2, 3]).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("as many attempts as an operation has"),
        "a third attempt: {err}"
    );
    // Node 3 keeps its own record: the request's first attempt there is fine.
    assert!(ask(n3.clone(), &[1, 3]).await.is_ok());

    // Honest signing through the API is unaffected.
    sign_and_check(&admin, &key, b"after the attempts").await;
    c.shutdown().await;
}

/// Ask `node` for its share of `b"pay 1000"` with signer set `set`, as
/// node `from`.
async fn ask_share(
    c: &LocalCluster,
    group: &GroupKey<Ed25519>,
    epoch: u64,
    node: Node,
    from: NodeId,
    set: &[u16],
    request: &ClientRequest,
) -> Result<PeerMessage, keyquorum_node::NodeError> {
    let mut commitments = Vec::new();
    for id in set {
        commitments.push(nonce(&c.node(n(*id)).unwrap(), "h", epoch).await);
    }
    let refs: Vec<&NonceCommitment> = commitments.iter().collect();
    let coord = package(group, b"pay 1000", &refs);
    let mine = set
        .iter()
        .position(|id| n(*id) == node.id())
        .map(|i| &commitments[i])
        .unwrap();
    node.handle_peer(from, sign_share("h", epoch, mine, &coord, request))
        .await
}

/// DESIGN.md §4 item 3: a member, or the leader itself, proposes registry
/// changes no client asked for, and re-appends a validly signed command:
/// every honest replica refuses them on apply, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_or_the_leader_cannot_commit_what_no_one_authorized() {
    use keyquorum_wire::control::{
        AuditEvent, Authorized, ClientRecord, ClusterCommand, CommandResponse, Grant, KeysCommand,
        Proposal, APPLY_RULES,
    };
    use keyquorum_wire::Hex32;

    let (_dir, c) = cluster(3, 2, 0).await;
    let base = c.url_of(n(1));
    let admin = Client::new(&base, &c.admin, c.ca_pem().as_bytes()).unwrap();
    admin
        .create_key(&create("k", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let leader_id = c.node(n(1)).unwrap().leader().unwrap();
    let leader = c.node(leader_id).unwrap();
    let others: Vec<NodeId> = (1..=3).map(n).filter(|i| *i != leader_id).collect();
    let (m, third) = (c.node(others[0]).unwrap(), c.node(others[1]).unwrap());
    let record = leader.registry(|r| r.keys.records["k"].clone());
    let before = |node: &Node| {
        node.registry(|r| {
            serde_json::to_string(&(&r.clients, &r.keys.records, &r.keys.exports)).unwrap()
        })
    };
    let was = before(&leader);

    let mallory = keyquorum_client::ClientKey::generate("mallory", &mut rand_core::OsRng);
    let put_mallory = ClusterCommand::PutClient {
        record: ClientRecord {
            grant: Grant {
                name: "mallory".into(),
                admin: true,
                operator: true,
                sign_keys: vec!["*".into()],
            },
            public_key: Hex32(mallory.public_key()),
            expires_ms: None,
            revoked: false,
        },
    };
    let mut rogue = record.clone();
    rogue.epoch += 1;
    rogue.members = vec![m.id(), leader_id];
    let overwrite = KeysCommand::PutKey {
        record: rogue,
        expected_epoch: Some(record.epoch),
        endorsements: vec![],
    };
    let forged_event = |node: NodeId| ClusterCommand::Audit {
        events: vec![AuditEvent {
            time_ms: 0,
            node,
            actor: "admin".into(),
            action: "forged.event".into(),
            target: None,
            outcome: "ok".into(),
        }],
    };
    let refused = |r: &CommandResponse| matches!(r, CommandResponse::Batch { responses } if responses.iter().all(|r| matches!(r, CommandResponse::Rejected { reason } if reason.contains("not authorized"))));
    let forward = |commands: Vec<Authorized>| PeerMessage::Forward { commands };

    // A follower forwards its own statements of what needs a client.
    let commands: [(&str, keyquorum_wire::control::Command); 4] = [
        ("mint an admin", put_mallory.clone().into()),
        ("overwrite a key record", overwrite.clone().into()),
        (
            "approve an export",
            KeysCommand::ApproveExport {
                id: "x".into(),
                operator: "admin".into(),
            }
            .into(),
        ),
        (
            "report another node's event",
            forged_event(third.id()).into(),
        ),
    ];
    for (what, command) in commands {
        let reply = leader
            .handle_peer(m.id(), forward(vec![m.statement(command)]))
            .await
            .unwrap();
        match reply {
            PeerMessage::ForwardReply { response, .. } => {
                assert!(refused(&response), "{what}: {response:?}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // It forwards another node's statement: the leader refuses the forward.
    let err = leader
        .handle_peer(
            m.id(),
            forward(vec![third.statement(forged_event(third.id()))]),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("statement of node"), "{err}");

    // The leader appends such commands itself.
    let append = |commands: Vec<Authorized>| {
        let leader = leader.clone();
        async move {
            leader
                .raft()
                .client_write(Proposal {
                    rules: APPLY_RULES,
                    time_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis() as u64,
                    commands,
                })
                .await
                .unwrap()
                .data
        }
    };
    let r = append(vec![
        leader.statement(put_mallory.clone()),
        leader.statement(overwrite.clone()),
    ])
    .await;
    assert!(refused(&r), "{r:?}");

    // A validly signed client request and a node statement, applied once,
    // then appended again by the leader: refused as replays.
    let bob = keyquorum_client::ClientKey::generate("bob", &mut rand_core::OsRng);
    let body = serde_json::json!({ "name": "bob", "public_key": hex::encode(bob.public_key()) });
    let request = common::client_request(
        &base,
        &c.admin,
        "POST",
        "/v1/clients",
        Some(body),
        common::now_s(),
    );
    let create_bob = Authorized {
        command: ClusterCommand::PutClient {
            record: ClientRecord {
                grant: Grant {
                    name: "bob".into(),
                    admin: false,
                    operator: false,
                    sign_keys: vec![],
                },
                public_key: Hex32(bob.public_key()),
                expires_ms: None,
                revoked: false,
            },
        }
        .into(),
        by: keyquorum_wire::control::Authority::Client { request },
    };
    let event = leader.statement(ClusterCommand::Audit {
        events: vec![AuditEvent {
            time_ms: 0,
            node: leader_id,
            actor: "t".into(),
            action: "once.only".into(),
            target: None,
            outcome: "ok".into(),
        }],
    });
    let first = append(vec![create_bob.clone(), event.clone()]).await;
    assert_eq!(
        first,
        CommandResponse::Batch {
            responses: vec![CommandResponse::Ok, CommandResponse::Ok]
        }
    );
    admin.revoke_client("bob").await.unwrap();
    let again = append(vec![create_bob, event]).await;
    match &again {
        CommandResponse::Batch { responses } => assert!(
            responses.iter().all(
                |r| matches!(r, CommandResponse::Rejected { reason } if reason.contains("replayed"))
            ),
            "{again:?}"
        ),
        other => panic!("{other:?}"),
    }

    // Every replica: no mallory, the key record unchanged, no forged
    // event, the once-only event once, bob registered once and revoked.
    for id in (1..=3).map(n) {
        let node = c.node(id).unwrap();
        node.read_barrier().await.unwrap();
        node.registry(|r| {
            assert!(!r.clients.contains_key("mallory"), "node {id}");
            assert!(r.clients["bob"].revoked, "node {id}");
            assert_eq!(r.keys.records["k"], record, "node {id}");
            assert!(r.keys.exports.is_empty(), "node {id}");
            let count = |a: &str| {
                r.audit
                    .entries
                    .iter()
                    .filter(|e| e.event.action == a)
                    .count()
            };
            assert_eq!(count("forged.event"), 0, "node {id}");
            assert_eq!(count("once.only"), 1, "node {id}");
        });
    }
    // Apart from bob, the registry is as it was.
    let mut now: serde_json::Value = serde_json::from_str(&before(&leader)).unwrap();
    now[0].as_object_mut().unwrap().remove("bob");
    assert_eq!(
        now,
        serde_json::from_str::<serde_json::Value>(&was).unwrap()
    );
}
