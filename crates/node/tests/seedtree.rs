//! The federated hash-based signing tree on real clusters on loopback:
//! key generation in subtrees across the members, signatures an RFC 8554
//! implementation we did not write accepts, exhaustion, a dead builder,
//! every node restarted mid-use, and hostile members and coordinators that
//! try to have one leaf used twice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "integration tests: a failed unwrap is a failed test"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use common::{client_request, cluster, n, new_client, now_s, status_of};
use keyquorum_client::seedtree::{sign_with_leaf, verify, ReplyKey};
use keyquorum_client::Client;
use keyquorum_store::Table;
use keyquorum_wire::control::Endorsement;
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::seedtree::{lock_quorum, CreateSeedtreeRequest, SeedtreeInfo};
use keyquorum_wire::Hex;

fn tree(name: &str, height: u8, winternitz: u8) -> CreateSeedtreeRequest {
    CreateSeedtreeRequest {
        name: name.into(),
        height,
        winternitz,
        subtrees: None,
        threshold: Some(2),
        members: None,
    }
}

/// Checked by hbs-lms (an RFC 8554 implementation we did not write) and
/// by ours.
fn check(info: &SeedtreeInfo, msg: &[u8], sig: &[u8]) {
    assert!(
        hbs_lms::verify::<hbs_lms::Sha256_256>(msg, sig, &info.public_key.0).is_ok(),
        "hbs-lms refused a signature of {}",
        info.name
    );
    assert!(verify(&info.public_key.0, msg, sig));
    assert!(!verify(&info.public_key.0, b"another message", sig));
}

fn client(c: &keyquorum_node::dev::LocalCluster, id: u16) -> Client {
    Client::new(&c.url_of(n(id)), &c.admin, c.ca_pem().as_bytes()).unwrap()
}

/// A 2-of-4 tree of height 5 (W4) is built in four subtrees by the
/// members; every one of its 32 leaves signs once, through every node,
/// each signature accepted by hbs-lms; the 33rd request is a clear
/// "exhausted". A tree of height 10 (W2, two subtrees) signs too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_signs_each_leaf_once_until_it_is_exhausted() {
    let (_dir, c) = cluster(4, 2, 0).await;
    // Rows are written once a member's log is at their rules (the entry
    // after every member's boot; an audit tick comes every 5 s).
    common::poll(
        "every log at the rules of rows",
        std::time::Duration::from_secs(30),
        || async {
            c.running().iter().all(|node| {
                node.registry(|r| r.rules) >= keyquorum_node::seedtree::rows::ROWS_RULES
            })
        },
    )
    .await;
    let admin = client(&c, 1);
    let info = admin.seedtree_create(&tree("fw", 5, 4)).await.unwrap();
    assert_eq!(info.capacity, 32);
    assert_eq!(info.subtrees, 4);
    assert_eq!(info.builders.len(), 4);
    assert_eq!(info.lock_quorum, 3);
    assert_eq!(info.public_key.0.len(), 60);
    assert_eq!(
        &info.public_key.0[..4],
        &1u32.to_be_bytes(),
        "HSS with L = 1"
    );
    let mut leaves = BTreeSet::new();
    for i in 0..32u32 {
        let via = client(&c, 1 + (i % 4) as u16);
        let msg = format!("firmware {i}");
        let s = via
            .seedtree_sign("fw", msg.as_bytes(), Some(&info.public_key.0))
            .await
            .unwrap();
        check(&info, msg.as_bytes(), &s.signature.0);
        assert!(leaves.insert(s.leaf), "leaf {} used twice", s.leaf);
        // The signature names its leaf (RFC 8554: q after Nspk = 0).
        assert_eq!(&s.signature.0[4..8], &s.leaf.to_be_bytes());
    }
    assert_eq!(leaves.len(), 32);
    // Each member keeps its shares in rows of a subtree's 8 leaves, its
    // public nodes likewise (keys of 37 bytes; one value per row was 36).
    for id in 1..=4 {
        let node = c.node(n(id)).unwrap();
        let vault = node.vault();
        let held = |t| {
            vault
                .keys(t, &info.run.0)
                .unwrap()
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>()
        };
        assert_eq!(held(Table::LeafShares), vec![37; 4], "node {id}");
        assert_eq!(
            keyquorum_node::seedtree::rows::count_values(vault, Table::LeafShares, &info.run.0)
                .unwrap(),
            32
        );
        // 4 subtrees of 15 nodes: per subtree, rows of 8, 4, 2 and 1.
        assert_eq!(held(Table::TreeNodes), vec![37; 16], "node {id}");
    }
    let err = client(&c, 2)
        .seedtree_sign("fw", b"one too many", None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    assert!(err.to_string().contains("exhausted"), "{err}");
    let status = admin.seedtree("fw").await.unwrap();
    assert_eq!((status.reserved, status.remaining), (32, 0));

    let tall = admin
        .seedtree_create(&CreateSeedtreeRequest {
            subtrees: Some(2),
            ..tree("tall", 10, 2)
        })
        .await
        .unwrap();
    assert_eq!((tall.capacity, tall.subtrees), (1024, 2));
    for i in 0..3 {
        let msg = [i as u8; 100];
        let s = client(&c, 3)
            .seedtree_sign("tall", &msg, Some(&tall.public_key.0))
            .await
            .unwrap();
        check(&tall, &msg, &s.signature.0);
    }
    c.shutdown().await;
}

/// A builder stopped for good after key generation costs nothing: the
/// other three members (a lock quorum of a 2-of-4 tree) still sign every
/// leaf, including the dead builder's subtree's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_builder_costs_nothing_after_key_generation() {
    let (_dir, mut c) = cluster(4, 2, 0).await;
    let info = client(&c, 1)
        .seedtree_create(&CreateSeedtreeRequest {
            subtrees: Some(4),
            ..tree("orphan", 5, 8)
        })
        .await
        .unwrap();
    let dead = *info.builders.iter().find(|b| **b != n(1)).unwrap();
    c.stop_node(dead).await;
    let via = client(&c, 1);
    let mut leaves = BTreeSet::new();
    for i in 0..20u32 {
        let msg = i.to_be_bytes();
        let s = via.seedtree_sign("orphan", &msg, None).await.unwrap();
        check(&info, &msg, &s.signature.0);
        leaves.insert(s.leaf);
    }
    assert_eq!(leaves.len(), 20);
    c.shutdown().await;
}

/// The node a create request went to reports how far the key generation
/// has come while it runs (the chunks the members stored never go back),
/// and `done` with every chunk once the tree exists; an unknown tree is
/// 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_generation_reports_its_progress() {
    let (_dir, c) = cluster(4, 2, 0).await;
    let via = client(&c, 1);
    let err = via.seedtree_progress("nothing").await.unwrap_err();
    assert_eq!(status_of(&err), 404, "{err}");
    let creator = client(&c, 1);
    let create = tokio::spawn(async move {
        creator
            .seedtree_create(&CreateSeedtreeRequest {
                subtrees: Some(4),
                ..tree("watched", 15, 8)
            })
            .await
    });
    let mut seen = Vec::new();
    let mut last = 0u64;
    while !create.is_finished() {
        if let Ok(p) = via.seedtree_progress("watched").await {
            assert!(p.chunks >= last, "progress went back: {p:?}");
            assert!(p.chunks <= p.chunks_total, "{p:?}");
            last = p.chunks;
            if seen.last() != Some(&p.phase) {
                seen.push(p.phase.clone());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let info = create.await.unwrap().unwrap();
    assert!(
        seen.iter().any(|p| p == "building"),
        "the build was watched: {seen:?}"
    );
    for i in [1u16, 2] {
        let p = client(&c, i).seedtree_progress("watched").await.unwrap();
        assert_eq!(p.phase, "done");
        assert_eq!((p.roots, p.subtrees), (info.subtrees, info.subtrees));
        // 2^15 leaves: 4 subtrees of 2 chunks of 4,096, at 4 members.
        assert_eq!((p.chunks, p.chunks_total), (4 * 2 * 4, 4 * 2 * 4));
    }
    c.shutdown().await;
}

/// Every node stopped and restarted between signatures: the log and the
/// members' lock records come back, and no leaf signs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leaf_is_reused_across_every_node_restarting() {
    let (_dir, mut c) = cluster(4, 2, 0).await;
    let info = client(&c, 1)
        .seedtree_create(&tree("again", 10, 4))
        .await
        .unwrap();
    let mut leaves = BTreeSet::new();
    for round in 0..3u16 {
        for i in 0..6u32 {
            let msg = format!("{round}/{i}");
            let s = client(&c, 1 + (i % 4) as u16)
                .seedtree_sign("again", msg.as_bytes(), None)
                .await
                .unwrap();
            check(&info, msg.as_bytes(), &s.signature.0);
            assert!(leaves.insert(s.leaf), "leaf {} used twice", s.leaf);
        }
        for id in 1..=4 {
            c.restart_node(n(id)).await.unwrap();
        }
        c.wait_ready(std::time::Duration::from_secs(30))
            .await
            .unwrap();
    }
    assert_eq!(leaves.len(), 18);
    c.shutdown().await;
}

/// A hostile coordinator (node 1, as a test hook) uses leaf 5 for every
/// request. The first request gets it; for the second, the members that
/// locked leaf 5 to the first refuse, so it is never released twice. Then
/// node 1, acting alone, locks a leaf for a request and asks another
/// member to release it with fewer locks than the lock quorum: refused. A
/// lock made up in the asked member's own name counts only as that
/// member's own record has it: with a leaf it locked to another request,
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_is_released_for_one_request_only() {
    let (_dir, c) = cluster(4, 2, 0).await;
    let admin = client(&c, 1);
    // Height 10: the first signature hands node 1 16 leaves (5 and 9
    // among them); members lock only leaves the log handed out.
    let info = admin.seedtree_create(&tree("once", 10, 4)).await.unwrap();
    let signer = new_client(&admin, "signer", false, false, &["lms.once"]).await;
    let nosy = new_client(&admin, "nosy", false, false, &["lms.other"]).await;
    let hostile = c.node(n(1)).unwrap();
    hostile
        .net_faults()
        .seedtree_leaf
        .store(5 + 1, Ordering::Relaxed);
    let via = Client::new(&c.url_of(n(1)), &signer, c.ca_pem().as_bytes()).unwrap();
    let first = via.seedtree_sign("once", b"first", None).await.unwrap();
    assert_eq!(first.leaf, 5);
    check(&info, b"first", &first.signature.0);
    let err = via
        .seedtree_sign("once", b"second", None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    assert!(
        err.to_string().contains("locked to another request"),
        "{err}"
    );
    hostile
        .net_faults()
        .seedtree_leaf
        .store(0, Ordering::Relaxed);
    // A client without the tree's permission gets nothing.
    let err = Client::new(&c.url_of(n(2)), &nosy, c.ca_pem().as_bytes())
        .unwrap()
        .seedtree_sign("once", b"nosy", None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");

    // Node 1 alone: its own lock on leaf 9, then a release asked of node 2;
    // and a leaf the log never handed out, refused.
    let key = ReplyKey::generate();
    let request = client_request(
        &c.url_of(n(1)),
        &signer,
        "POST",
        "/v1/seedtrees/once/sign",
        Some(serde_json::json!({
            "message": hex::encode(b"forged"),
            "reply_key": key.public().to_string(),
        })),
        now_s(),
    );
    let signature = lock_of(&hostile, n(1), 9, &request).await.signature;
    let two = hostile.node_info(n(2)).unwrap();
    let ahead = hostile
        .call_signed(
            n(2),
            &two,
            &PeerMessage::StLock {
                tree: "once".into(),
                leaf: 1000,
                request: request.clone(),
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(ahead.contains("was not handed out"), "{ahead}");
    let refused = hostile
        .call_signed(
            n(2),
            &two,
            &PeerMessage::StRelease {
                tree: "once".into(),
                leaf: 9,
                request: request.clone(),
                locks: vec![
                    Endorsement {
                        node: n(1),
                        signature: signature.clone(),
                    };
                    3
                ],
            },
        )
        .await;
    let err = refused.unwrap_err().to_string();
    assert!(err.contains("1 of the 3 members' locks"), "{err}");
    assert_eq!(lock_quorum(4, 2), 3);
    // A lock in node 2's own name counts for node 2 whatever its signature
    // (its own record decides): with node 1's (on leaf 10: a member takes
    // each step of a request once) it makes 2, still refused.
    let made_up = Endorsement {
        node: n(2),
        signature: Hex(vec![0u8; 64]),
    };
    let own10 = lock_of(&hostile, n(1), 10, &request).await;
    let err = hostile
        .call_signed(
            n(2),
            &two,
            &PeerMessage::StRelease {
                tree: "once".into(),
                leaf: 10,
                request: request.clone(),
                locks: vec![
                    own10,
                    made_up.clone(),
                    // Made up in another member's name: not counted.
                    Endorsement {
                        node: n(3),
                        signature: Hex(vec![7u8; 64]),
                    },
                ],
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 of the 3 members' locks"), "{err}");
    // And its record holds: node 2 locks leaf 9 to this request; asked to
    // release leaf 9 for another request with nodes 3 and 4's genuine
    // locks on it and a made-up lock of its own, it refuses.
    lock_of(&hostile, n(2), 9, &request).await;
    let other = client_request(
        &c.url_of(n(1)),
        &signer,
        "POST",
        "/v1/seedtrees/once/sign",
        Some(serde_json::json!({
            "message": hex::encode(b"other"),
            "reply_key": key.public().to_string(),
        })),
        now_s(),
    );
    let mut others = vec![made_up.clone()];
    for m in [n(3), n(4)] {
        others.push(lock_of(&hostile, m, 9, &other).await);
    }
    let err = hostile
        .call_signed(
            n(2),
            &two,
            &PeerMessage::StRelease {
                tree: "once".into(),
                leaf: 9,
                request: other.clone(),
                locks: others,
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("leaf locked"), "{err}");
    // On a free leaf (11) the same kind of release is granted, and node 2's
    // count of itself is a lock it records: it then refuses to lock leaf 11
    // to another request.
    let mut locks11 = vec![made_up];
    for m in [n(1), n(3)] {
        locks11.push(lock_of(&hostile, m, 11, &other).await);
    }
    let (_, released) = hostile
        .call_signed(
            n(2),
            &two,
            &PeerMessage::StRelease {
                tree: "once".into(),
                leaf: 11,
                request: other.clone(),
                locks: locks11,
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(released, PeerMessage::StReleased { .. }),
        "{released:?}"
    );
    let err = hostile
        .call_signed(
            n(2),
            &two,
            &PeerMessage::StLock {
                tree: "once".into(),
                leaf: 11,
                request: request.clone(),
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("leaf locked"), "{err}");
    // A lock taken for leaf 5 by the first request: node 2 refuses to lock
    // it to this one.
    let locked = hostile
        .call_signed(
            n(2),
            &two,
            &PeerMessage::StLock {
                tree: "once".into(),
                leaf: 5,
                request: request.clone(),
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(locked.contains("leaf locked"), "{locked}");
    c.shutdown().await;
}

/// The shares a member releases are sealed to the client's one-time key:
/// the coordinator that relays them cannot open them, and the client can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relayed_shares_open_only_with_the_clients_key() {
    let (_dir, c) = cluster(4, 2, 0).await;
    let admin = client(&c, 2);
    let info = admin.seedtree_create(&tree("sealed", 5, 2)).await.unwrap();
    let key = ReplyKey::generate();
    let leaf = admin
        .seedtree_leaf("sealed", b"payload", &key)
        .await
        .unwrap();
    assert!(leaf.shares.len() >= 2);
    assert_eq!(leaf.run, info.run);
    let other = ReplyKey::generate();
    assert!(sign_with_leaf(&leaf, &other, b"payload", None).is_err());
    let s = sign_with_leaf(&leaf, &key, b"payload", Some(&info.public_key.0)).unwrap();
    check(&info, b"payload", &s.signature.0);
    // A node answering for another public key is refused by a pinned client.
    assert!(sign_with_leaf(&leaf, &key, b"payload", Some(&[0u8; 60])).is_err());
    c.shutdown().await;
}

/// Node `m`'s lock on `leaf` of tree "once" for `request`, asked by `from`
/// (a test acting as a hostile coordinator); panics unless it locks.
async fn lock_of(
    from: &keyquorum_node::cluster::Node,
    m: keyquorum_wire::NodeId,
    leaf: u32,
    request: &keyquorum_wire::peer::ClientRequest,
) -> Endorsement {
    let info = from.node_info(m).unwrap();
    let (_, reply) = from
        .call_signed(
            m,
            &info,
            &PeerMessage::StLock {
                tree: "once".into(),
                leaf,
                request: request.clone(),
            },
        )
        .await
        .unwrap();
    let PeerMessage::StLocked { signature } = reply else {
        panic!("node {m} did not lock leaf {leaf}: {reply:?}")
    };
    Endorsement { node: m, signature }
}

/// The culprits an API error names.
fn culprits(e: &keyquorum_client::ClientError) -> Vec<keyquorum_wire::NodeId> {
    match e {
        keyquorum_client::ClientError::Api { body, .. } => body.culprits.clone(),
        _ => Vec::new(),
    }
}

/// A member that reveals another contribution than it committed to is
/// named, and a builder that publishes a wrong subtree root is named by
/// the members, which refuse to endorse: no tree is created either time,
/// and with both hooks off the same tree is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_member_or_builder_is_named_and_no_tree_is_made() {
    let (_dir, c) = cluster(4, 2, 0).await;
    let admin = client(&c, 1);
    let liar = c.node(n(3)).unwrap();
    liar.net_faults()
        .seedtree_lie_reveal
        .store(true, Ordering::Relaxed);
    let err = admin.seedtree_create(&tree("lie", 5, 4)).await.unwrap_err();
    assert_eq!(status_of(&err), 502, "{err}");
    assert_eq!(culprits(&err), vec![n(3)], "{err}");
    liar.net_faults()
        .seedtree_lie_reveal
        .store(false, Ordering::Relaxed);
    // Every builder reports wrong roots: the members, which computed the
    // subtrees from the leaves they were dealt, name the builders.
    for id in 1..=4 {
        c.node(n(id))
            .unwrap()
            .net_faults()
            .seedtree_bad_root
            .store(true, Ordering::Relaxed);
    }
    let req = CreateSeedtreeRequest {
        subtrees: Some(4),
        ..tree("lie", 5, 4)
    };
    let err = admin.seedtree_create(&req).await.unwrap_err();
    assert_eq!(status_of(&err), 502, "{err}");
    assert!(!culprits(&err).is_empty(), "{err}");
    assert!(err.to_string().contains("roots"), "{err}");
    assert!(admin.seedtrees().await.unwrap().trees.is_empty());
    for id in 1..=4 {
        c.node(n(id))
            .unwrap()
            .net_faults()
            .seedtree_bad_root
            .store(false, Ordering::Relaxed);
    }
    let made = admin.seedtree_create(&req).await.unwrap();
    let s = admin.seedtree_sign("lie", b"now", None).await.unwrap();
    check(&made, b"now", &s.signature.0);
    c.shutdown().await;
}

/// Signing load through every node while each node in turn is stopped
/// abruptly and started again: every signature the clients got verifies,
/// and no leaf appears twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leaf_is_reused_when_nodes_die_under_signing_load() {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    let (_dir, mut c) = cluster(4, 2, 0).await;
    let info = client(&c, 1)
        .seedtree_create(&tree("load", 10, 4))
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..4u16 {
        let via = client(&c, 1 + w);
        let (stop, acked) = (stop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let msg = format!("{w}/{i}");
                if let Ok(s) = via.seedtree_sign("load", msg.as_bytes(), None).await {
                    got.push((msg, s));
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            got
        }));
    }
    for id in 1..=4u16 {
        let before = acked.load(Ordering::Relaxed);
        common::poll(
            "signatures between restarts",
            std::time::Duration::from_secs(60),
            || {
                let acked = acked.clone();
                async move { acked.load(Ordering::Relaxed) >= before + 5 }
            },
        )
        .await;
        c.restart_node(n(id)).await.unwrap();
    }
    let before = acked.load(Ordering::Relaxed);
    common::poll(
        "signatures after the last restart",
        std::time::Duration::from_secs(60),
        || {
            let acked = acked.clone();
            async move { acked.load(Ordering::Relaxed) >= before + 5 }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut leaves = BTreeSet::new();
    for t in tasks {
        for (msg, s) in t.await.unwrap() {
            check(&info, msg.as_bytes(), &s.signature.0);
            assert!(leaves.insert(s.leaf), "leaf {} signed twice", s.leaf);
        }
    }
    assert!(leaves.len() >= 25, "{} signatures", leaves.len());
    c.shutdown().await;
}

/// 10,000 signatures from one tree (`KEYQUORUM_SEEDTREE_SIGNATURES` for
/// another count) with no leaf repeated, from 8 concurrent clients
/// through all four nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_signatures_never_repeat_a_leaf() {
    let total: u32 = std::env::var("KEYQUORUM_SEEDTREE_SIGNATURES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let (_dir, c) = cluster(4, 2, 0).await;
    let info = client(&c, 1)
        .seedtree_create(&tree("many", 15, 4))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..8u32 {
        let via = client(&c, 1 + (w % 4) as u16);
        let pk = info.public_key.0.clone();
        tasks.push(tokio::spawn(async move {
            let mut leaves = Vec::new();
            for i in (w..total).step_by(8) {
                let s = via
                    .seedtree_sign("many", &i.to_be_bytes(), Some(&pk))
                    .await
                    .unwrap();
                leaves.push(s.leaf);
            }
            leaves
        }));
    }
    let mut leaves = BTreeSet::new();
    for t in tasks {
        for leaf in t.await.unwrap() {
            assert!(leaves.insert(leaf), "leaf {leaf} signed twice");
        }
    }
    assert_eq!(leaves.len(), total as usize);
    let status = client(&c, 2).seedtree("many").await.unwrap();
    assert!(status.reserved >= u64::from(total));
    assert_eq!(status.remaining, status.capacity - status.reserved);
    c.shutdown().await;
}

/// A member whose vault is restored from a backup taken before it locked
/// a leaf has lost that lock record. It still refuses the leaf: it was
/// handed out before the member started, and a member locks only leaves
/// handed out since (its records may be older than the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restored_from_a_backup_locks_no_leaf_handed_out_before_it_started() {
    let (dir, mut c) = cluster(4, 2, 0).await;
    let admin = client(&c, 1);
    // Height 10: the first signature hands node 1 16 leaves, 7 among them.
    let info = admin
        .seedtree_create(&tree("restore", 10, 4))
        .await
        .unwrap();
    let vault = |id: u16| dir.path().join(format!("node-{id}")).join("vault.redb");
    let backup = |id: u16| dir.path().join(format!("node-{id}-vault.backup"));
    for id in 2..=4 {
        c.stop_node(n(id)).await;
        std::fs::copy(vault(id), backup(id)).unwrap();
        c.restart_node(n(id)).await.unwrap();
    }
    c.wait_ready(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let hostile = c.node(n(1)).unwrap();
    hostile
        .net_faults()
        .seedtree_leaf
        .store(7 + 1, Ordering::Relaxed);
    let first = common::poll_value(
        "a signature once the members caught up",
        std::time::Duration::from_secs(30),
        || async { admin.seedtree_sign("restore", b"first", None).await.ok() },
    )
    .await;
    assert_eq!(first.leaf, 7);
    check(&info, b"first", &first.signature.0);
    let mut lock_key = info.run.0.to_vec();
    lock_key.extend_from_slice(&7u32.to_be_bytes());
    let table = keyquorum_store::vault::Table::LeafLocks;
    let locked = |c: &keyquorum_node::dev::LocalCluster, id: u16| {
        c.node(n(id))
            .unwrap()
            .vault()
            .get(table, &lock_key)
            .unwrap()
            .is_some()
    };
    // A member other than the coordinator that locked leaf 7: its disk
    // goes back to before the lock.
    let id = (2..=4).find(|id| locked(&c, *id)).unwrap();
    c.stop_node(n(id)).await;
    std::fs::copy(backup(id), vault(id)).unwrap();
    c.restart_node(n(id)).await.unwrap();
    c.wait_ready(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert!(!locked(&c, id));
    let signer = &c.admin;
    let to = hostile.node_info(n(id)).unwrap();
    let refusal = common::poll_value(
        "the restored member to judge leaf 7 once it caught up",
        std::time::Duration::from_secs(30),
        || async {
            let request = client_request(
                &c.url_of(n(1)),
                signer,
                "POST",
                "/v1/seedtrees/restore/sign",
                Some(serde_json::json!({
                    "message": hex::encode(b"second"),
                    "reply_key": ReplyKey::generate().public().to_string(),
                })),
                now_s(),
            );
            let msg = PeerMessage::StLock {
                tree: "restore".into(),
                leaf: 7,
                request,
            };
            match hostile.call_signed(n(id), &to, &msg).await {
                Ok(reply) => panic!("node {id} locked leaf 7 again: {:?}", reply.1),
                Err(e) if e.to_string().contains("caught up") => None,
                Err(e) => Some(e.to_string()),
            }
        },
    )
    .await;
    assert!(refusal.contains("before this member started"), "{refusal}");
    // Through the API, the hostile coordinator's second use of leaf 7 is
    // refused; the leaves the log hands out next sign.
    let err = admin
        .seedtree_sign("restore", b"second", None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    hostile
        .net_faults()
        .seedtree_leaf
        .store(0, Ordering::Relaxed);
    let fresh = admin
        .seedtree_sign("restore", b"third", None)
        .await
        .unwrap();
    assert_ne!(fresh.leaf, 7);
    check(&info, b"third", &fresh.signature.0);
    c.shutdown().await;
}
