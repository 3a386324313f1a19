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

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    check_sig, cluster, create, n, nonce, ns, package, poll, sign_and_check, sign_share, status_of,
    vault_count, wait_for_audit,
};
use keyquorum_client::Client;
use keyquorum_core::codec::Decode;
use keyquorum_core::sign::SignatureShare;
use keyquorum_core::{Ed25519, GroupKey};
use keyquorum_store::Table;
use keyquorum_wire::api::{CreateKeyRequest, KeyInfo, SuiteName};
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::NodeId;

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
    // Every honest member complained; node 4 revealed what it dealt, which
    // is off its commitment: the accusations are upheld.
    assert!(
        err.to_string()
            .contains("accusations by [1, 2, 3] upheld: [4] revealed no share"),
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
    // The culprit holds no share of the key; whatever it kept of the failed
    // run is superseded by the committed one and erased when it starts.
    assert_eq!(vault_count(&c, n(4), Table::Shares, "k"), 0);
    c.keys(n(4)).unwrap().tidy(&c.node(n(4)).unwrap()).unwrap();
    assert_eq!(vault_count(&c, n(4), Table::Pending, "k"), 0);

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
    let v = admin.audit_verify().await.unwrap();
    assert_eq!(v["valid"], true, "{v}");
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
    let v = admin.audit_verify().await.unwrap();
    assert_eq!(v["valid"], true, "{v}");
    c.shutdown().await;
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
    // Nodes 1 and 2 finished their part: their new shares stay pending
    // (they endorsed them, so an abort cannot roll them back) and unused.
    for id in ns(&[1, 2]) {
        assert_eq!(vault_count(&c, id, Table::Pending, "mid"), 1, "node {id}");
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
    // The aborted run's shares are superseded by the committed one: erased
    // at the member's first use of it or, at the latest, when it starts.
    for id in (1..=3).map(n) {
        c.keys(id).unwrap().tidy(&c.node(id).unwrap()).unwrap();
        assert_eq!(vault_count(&c, id, Table::Pending, "mid"), 0, "node {id}");
        assert_eq!(vault_count(&c, id, Table::Shares, "mid"), 1, "node {id}");
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
    common::join(&c, &admin, &add).await;
    let n4 = c.keys(new_id).unwrap();
    n4.faults().stall_finish_ms.store(6_000, Ordering::Relaxed);
    common::allow_reshare(&c, &admin, "r", 3, &[n(1), n(2), n(3), new_id]).await;

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
    // The members that finished keep their endorsed new shares pending,
    // unused (an abort cannot roll back what a member endorsed).
    poll(
        "node 4's stalled handler",
        Duration::from_secs(10),
        || async { n4.faults().stalls_ended.load(Ordering::Relaxed) >= 1 },
    )
    .await;
    for id in [n(1), n(2), n(3)] {
        assert_eq!(vault_count(&c, id, Table::Pending, "r"), 1, "node {id}");
    }
    assert_eq!(vault_count(&c, new_id, Table::Pending, "r"), 0);
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
    // The committed run retires the aborted one's shares on every member.
    for id in [n(1), n(2), n(3), new_id] {
        poll(
            "the aborted run's shares erased",
            Duration::from_secs(10),
            || async { vault_count(&c, id, Table::Pending, "r") == 0 },
        )
        .await;
        assert_eq!(vault_count(&c, id, Table::Shares, "r"), 1, "node {id}");
    }
    c.shutdown().await;
}

/// #18 item 4: a leader cut off from its quorum answers a write with 503
/// instead of holding the request forever (openraft's leader waits for the
/// commit without end; the node bounds each attempt by its write
/// deadline). Once the others are back, the write that timed out is on
/// every node or on none, and writes go through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_quorum_answers_503_and_the_write_is_all_or_nothing() {
    let (_dir, mut c) = cluster(3, 2, 0).await;
    let leader = c.node(n(1)).unwrap().leader().unwrap();
    let others: Vec<NodeId> = (1..=3).map(n).filter(|i| *i != leader).collect();
    for o in &others {
        c.stop_node(*o).await;
    }
    let via = Client::new(&c.url_of(leader), &c.admin, c.ca_pem().as_bytes()).unwrap();
    // A hang guard, far above the node's deadlines (5 s a try, 10 s of
    // retries): a hang fails here instead of stalling the suite.
    let answer = tokio::time::timeout(
        Duration::from_secs(120),
        common::try_new_client(&via, "cut-off", false, false, &["*"]),
    )
    .await
    .expect("the leader held the request instead of answering");
    let e = answer.expect_err("a write without a quorum cannot succeed");
    assert_eq!(status_of(&e), 503, "{e}");
    let keyquorum_client::ClientError::Api { body, .. } = &e else {
        unreachable!()
    };
    assert!(
        body.error == "timed_out" || body.error == "unavailable",
        "{body:?}"
    );

    for o in &others {
        c.restart_node(*o).await.unwrap();
    }
    // Writes go through again (through the old leader, whatever the new
    // one is).
    let mut after = None;
    for _ in 0..60 {
        match common::try_new_client(&via, "after-heal", false, false, &["*"]).await {
            Ok(k) => {
                after = Some(k);
                break;
            }
            Err(e) => {
                assert_eq!(status_of(&e), 503, "{e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    assert!(after.is_some(), "writes did not resume after the heal");
    // Every node has applied the later write, so each has decided the
    // earlier one alike.
    for id in (1..=3).map(n) {
        let node = c.node(id).unwrap();
        poll("the heal to replicate", Duration::from_secs(20), || async {
            node.registry(|r| r.clients.contains_key("after-heal"))
        })
        .await;
    }
    let present: Vec<bool> = (1..=3)
        .map(|i| {
            c.node(n(i))
                .unwrap()
                .registry(|r| r.clients.contains_key("cut-off"))
        })
        .collect();
    assert!(
        present.iter().all(|p| *p == present[0]),
        "the timed-out write is on some nodes only: {present:?}"
    );
    c.shutdown().await;
}

/// #18 item 4: the audit queue is bounded. A leader cut off from its
/// quorum cannot commit its audit log: the queue fills to its bound (here
/// 1,024 events) and no further, and from seven eighths of it requests are
/// refused with 503 before they run: nothing is done that the log could
/// not record. After the heal the queue drains and requests are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_audit_queue_refuses_requests_before_they_run() {
    const QUEUE: usize = 1_024;
    let (_dir, mut c) = common::cluster_opts(
        3,
        2,
        0,
        keyquorum_node::config::NodeConfig::DEFAULT_CHECKPOINT_EVERY,
        QUEUE,
    )
    .await;
    let leader = c.node(n(1)).unwrap().leader().unwrap();
    let others: Vec<NodeId> = (1..=3).map(n).filter(|i| *i != leader).collect();
    for o in &others {
        c.stop_node(*o).await;
    }
    let via = Client::new(&c.url_of(leader), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let node = c.node(leader).unwrap();
    // Every answered request is an audit event the log cannot take. The
    // writer holds up to 512 in its batch, the queue up to 1,024: well
    // within 4,000 requests the node must start refusing.
    let mut served = 0usize;
    let mut refusal = None;
    for _ in 0..4_000 {
        match via.list_keys().await {
            Ok(_) => served += 1,
            Err(e) => {
                assert_eq!(status_of(&e), 503, "{e}");
                refusal = Some(e.to_string());
                break;
            }
        }
    }
    let refusal = refusal.expect("the node kept admitting requests it could not audit");
    assert!(refusal.contains("audit log is not keeping up"), "{refusal}");
    // Refused because the queue was at seven eighths, not before.
    assert!(
        node.audit_queued() >= QUEUE * 7 / 8,
        "refused with {} queued",
        node.audit_queued()
    );
    assert!(
        served >= QUEUE * 7 / 8,
        "refused after {served} requests, before the queue was full"
    );
    // Refused again while cut off, and the refusals are counted, not
    // queued (they would eat the room kept for the node's own events).
    let queued = node.audit_queued();
    for _ in 0..100 {
        let e = via.list_keys().await.unwrap_err();
        assert_eq!(status_of(&e), 503, "{e}");
    }
    assert!(
        node.audit_queued() < queued + 50,
        "{} queued after 100 refusals, {queued} before",
        node.audit_queued()
    );

    for o in &others {
        c.restart_node(*o).await.unwrap();
    }
    poll(
        "the audit queue to drain",
        Duration::from_secs(60),
        || async { node.audit_queued() < QUEUE / 8 },
    )
    .await;
    let mut ok = false;
    for _ in 0..60 {
        if via.list_keys().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(ok, "requests are not served after the heal");
    c.shutdown().await;
}

/// Issue #18 item 3, sessions: a client holds at most `client_sessions`
/// requests in flight on a node (here 1); past that it is answered 429 at
/// once, another client is not held by it, and the place comes back when
/// the request ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_its_requests_in_flight_gets_429_and_others_are_not_held() {
    use keyquorum_node::config::NodeConfig;
    let (_dir, c) = common::cluster_full(
        3,
        2,
        0,
        NodeConfig::DEFAULT_CHECKPOINT_EVERY,
        NodeConfig::DEFAULT_AUDIT_QUEUE,
        1,
    )
    .await;
    let ca = c.ca_pem();
    let admin = Client::new(&c.url_of(n(1)), &c.admin, ca.as_bytes()).unwrap();
    let key = admin
        .create_key(&create("k", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let app_key = common::new_client(&admin, "app", false, false, &["k"]).await;
    let app = Client::new(&c.url_of(n(1)), &app_key, ca.as_bytes()).unwrap();
    // Node 1 cut off from the others: a signature through it waits for
    // them (up to its peer time-out), holding the client's one place.
    let n1 = c.node(n(1)).unwrap();
    n1.net_faults().cut([n(2), n(3)]);
    let held = tokio::spawn({
        let app = app.clone();
        async move { app.sign("k", b"held").await }
    });
    common::poll(
        "the signature to be in flight",
        Duration::from_secs(10),
        || async { n1.client_sessions_held("app") == 1 },
    )
    .await;
    let e = app.sign("k", b"second").await.unwrap_err();
    assert_eq!(common::status_of(&e), 429, "{e}");
    assert!(e.to_string().contains("in flight"), "{e}");
    // Another client is not held by it (its request may fail for the cut,
    // not for the quota).
    if let Err(e) = admin.list_keys().await {
        assert_ne!(common::status_of(&e), 429, "{e}");
    }
    n1.net_faults().heal();
    let _ = held.await.unwrap();
    common::poll(
        "the place to come back",
        Duration::from_secs(10),
        || async { n1.client_sessions_held("app") == 0 },
    )
    .await;
    sign_and_check(&app, &key, b"after").await;
    c.shutdown().await;
}
