//! Draining a node: the operator quorum's approval of a drain lets a key
//! move off the drained node onto exactly the members the drain names, and
//! nowhere else. A hostile entry node (the drained node itself, wanting to
//! keep or steer its keys) asks a dealer for deals to other sets, with an
//! admin's genuine signed request for each: the dealer's own replica
//! refuses every one.

use super::*;
use keyquorum_wire::control::Change;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_lets_a_dealer_deal_only_to_the_drained_members() {
    let (_dir, c) = cluster(4, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let operator = Client::new(&c.url_of(n(2)), &c.operator, c.ca_pem().as_bytes()).unwrap();
    let d = admin
        .create_key(&create("d", SuiteName::Ed25519, 2, Some(ns(&[1, 2, 3]))))
        .await
        .unwrap();
    let e = admin
        .create_key(&create("e", SuiteName::Ed25519, 2, Some(ns(&[2, 3, 4]))))
        .await
        .unwrap();
    let base = c.url_of(n(1));
    // An admin's genuine request to reshare `key` to `t`-of-`members`, as
    // node 1 (the entry node) would hand it on.
    let asks = |key: &str, t: u16, members: &[u16]| {
        common::client_request(
            &base,
            &c.admin,
            "POST",
            &format!("/v1/keys/{key}/reshare"),
            Some(serde_json::json!({ "threshold": t, "members": members })),
            common::now_s(),
        )
    };
    let deal = |key: &KeyInfo, t: u16, members: &[u16], session: u8| PeerMessage::ReshareDeal {
        session: Hex32([session; 32]),
        plan: keyquorum_wire::peer::ResharePlan {
            key: key.name.clone(),
            epoch: key.epoch,
            dealers: vec![n(2), n(3)],
            threshold: t,
            members: ns(members),
        },
        request: asks(&key.name, t, members),
    };
    let n2 = c.node(n(2)).unwrap();
    common::poll(
        "node 2 to know both keys",
        std::time::Duration::from_secs(10),
        || async { n2.registry(|r| r.keys.records.len() >= 2) },
    )
    .await;

    // Before any approval, even the drained set is refused.
    let err = n2
        .handle_peer(n(1), deal(&d, 2, &[2, 3, 4], 1))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("operator quorum's approval"),
        "{err}"
    );
    // An admin alone proposes the drain; it does nothing until the
    // operator quorum approves.
    let change = admin
        .propose_change(Change::DrainNode {
            id: n(1),
            onto: Some(n(4)),
        })
        .await
        .unwrap();
    assert!(!change.done);
    let err = n2
        .handle_peer(n(1), deal(&d, 2, &[2, 3, 4], 2))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("operator quorum's approval"),
        "{err}"
    );
    operator.approve_change(&change).await.unwrap();
    // No wait for node 2 to apply the approval: a dealer that has not
    // applied it yet catches up with the leader before refusing.

    // Every set but the drained one, each asked for by the admin's own
    // signed request: refused by the dealer.
    let cases: Vec<(&str, &KeyInfo, u16, Vec<u16>)> = vec![
        (
            "the drained node left out, node 4 not added",
            &d,
            2,
            vec![2, 3],
        ),
        ("the drained set at another threshold", &d, 3, vec![2, 3, 4]),
        (
            "the drained node kept, another dropped",
            &d,
            2,
            vec![1, 2, 4],
        ),
        ("a key with no share on the drained node", &e, 2, vec![2, 3]),
        (
            "the drained node added to another key",
            &e,
            2,
            vec![1, 2, 3],
        ),
    ];
    for (i, (what, key, t, members)) in cases.into_iter().enumerate() {
        let err = n2
            .handle_peer(n(1), deal(key, t, &members, 10 + i as u8))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("operator quorum's approval"),
            "{what}: {err}"
        );
    }
    // Exactly the drained set: dealt.
    let dealt = n2
        .handle_peer(n(1), deal(&d, 2, &[2, 3, 4], 30))
        .await
        .unwrap();
    assert!(
        matches!(dealt, PeerMessage::ReshareDealt { .. }),
        "{dealt:?}"
    );

    // Through the API with the drained node as the entry: the same.
    let err = admin.reshare("d", 2, &ns(&[2, 3])).await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    let err = admin.reshare("e", 2, &ns(&[2, 3])).await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    let moved = admin.reshare("d", 2, &ns(&[2, 3, 4])).await.unwrap();
    assert_eq!(moved.members, ns(&[2, 3, 4]));
    assert_eq!(moved.public_key, d.public_key, "the same public key");
    sign_and_check(&admin, &moved, b"after the drain").await;
    // Nothing else moved.
    let still: KeyInfo = admin.key("e").await.unwrap();
    assert_eq!((still.epoch, &still.members), (e.epoch, &e.members));
    c.shutdown().await;
}

/// A drain moves a signing tree's unused leaves: before the operator
/// quorum approves it, and to any other holders after, every dealer and
/// new holder refuses (the admin's genuine request for each); the approved
/// target gets new shares of every leaf not handed out, the new holder
/// signs (hbs-lms and ours accept), no leaf is used twice, and every old
/// share row is erased, on the drained node too, which may then leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_moves_a_trees_unused_leaves_to_exactly_its_target() {
    use keyquorum_wire::seedtree::TreeResharePlan;
    let (_dir, mut c) = cluster(4, 2, 0).await;
    let (admin, operator, info) = tree_on_1_2_3(&c).await;
    let check = |msg: &[u8], sig: &[u8]| {
        assert!(hbs_lms::verify::<hbs_lms::Sha256_256>(msg, sig, &info.public_key.0).is_ok());
        assert!(keyquorum_client::seedtree::verify(
            &info.public_key.0,
            msg,
            sig
        ));
    };
    let mut used = std::collections::BTreeSet::new();
    for i in 0..3 {
        let msg = format!("before {i}");
        let s = admin
            .seedtree_sign("fw", msg.as_bytes(), Some(&info.public_key.0))
            .await
            .unwrap();
        check(msg.as_bytes(), &s.signature.0);
        assert!(used.insert(s.leaf));
    }
    let rows = |id: u16, prefix: &Hex32| {
        keyquorum_node::seedtree::rows::count_values(
            c.node(n(id)).unwrap().vault(),
            Table::LeafShares,
            &prefix.0,
        )
        .unwrap()
    };
    assert_eq!(rows(1, &info.run), 32);
    assert_eq!(rows(4, &info.run), 0);

    let base = c.url_of(n(1));
    let asks = |members: &[u16]| {
        common::client_request(
            &base,
            &c.admin,
            "POST",
            "/v1/seedtrees/fw/reshare",
            Some(serde_json::json!({ "threshold": 2, "members": members })),
            common::now_s(),
        )
    };
    let n2 = c.node(n(2)).unwrap();
    let next = n2.registry(|r| r.seedtree.trees["fw"].next) as u32;
    let open = |members: &[u16], asked: &[u16]| PeerMessage::StRedealOpen {
        plan: Box::new(TreeResharePlan {
            tree: "fw".into(),
            run: info.run,
            epoch: 0,
            cut: next,
            threshold: 2,
            members: ns(members),
            dealers: ns(&[2, 3]),
            attempt: 0,
        }),
        request: asks(asked),
    };
    // Before any approval, even the drained set is refused, by a dealer
    // and by the new holder; through the API too.
    for at in [2u16, 4] {
        let err = c
            .node(n(at))
            .unwrap()
            .handle_peer(n(1), open(&[2, 3, 4], &[2, 3, 4]))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("approved drain"),
            "node {at}: {err}"
        );
    }
    let err = admin
        .seedtree_reshare("fw", 2, &ns(&[2, 3, 4]))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    drain_1_onto_4(&admin, &operator).await;
    // Every other set, each asked for by the admin's own signed request;
    // and a plan that is not what the request asks.
    for (what, members, asked) in [
        (
            "the drained node left out, 4 not added",
            vec![2u16, 3],
            vec![2u16, 3],
        ),
        ("the drained node kept", vec![1, 2, 4], vec![1, 2, 4]),
        ("another node added", vec![2, 3, 4, 1], vec![1, 2, 3, 4]),
        ("a plan the request does not ask", vec![2, 3, 4], vec![2, 3]),
    ] {
        let err = n2
            .handle_peer(n(1), open(&members, &asked))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("refused"), "{what}: {err}");
    }
    // A part from a node that deals in no plan here: refused.
    let err = c
        .node(n(4))
        .unwrap()
        .handle_peer(
            n(1),
            PeerMessage::StRedealEndorse {
                plan: Hex32([7; 32]),
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no tree reshare"), "{err}");

    // A plan for the drain's target that its coordinator never finishes:
    // the new holder takes part; no sweep erases what such a plan stored
    // while the sharing it replaces is in force (it could still be
    // committed), and a "done" for a sharing not applied is refused.
    let n4 = c.node(n(4)).unwrap();
    let mut stale = open(&[2, 3, 4], &[2, 3, 4]);
    if let PeerMessage::StRedealOpen { plan, .. } = &mut stale {
        plan.attempt = 9;
    }
    assert!(matches!(
        n4.handle_peer(n(1), stale).await.unwrap(),
        PeerMessage::Ack
    ));
    let pending = || {
        n4.vault()
            .count(Table::Pending, b"seedtree-sharing/")
            .unwrap()
    };
    assert_eq!(pending(), 1);
    let err = n4
        .handle_peer(
            n(1),
            PeerMessage::StRedealDone {
                tree: "fw".into(),
                epoch: 1,
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not applied"), "{err}");
    assert_eq!(pending(), 1);

    // The approved target, through the drained node as the entry.
    let moved = admin
        .seedtree_reshare("fw", 2, &ns(&[2, 3, 4]))
        .await
        .unwrap();
    assert_eq!(moved.members, ns(&[2, 3, 4]));
    assert_eq!((moved.epoch, moved.threshold), (1, 2));
    assert_eq!(moved.public_key, info.public_key, "the same public key");
    assert!(moved.first >= 3, "{moved:?}");
    // The new holder signs, from the sharing's first leaf on.
    let via4 = Client::new(&c.url_of(n(4)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    for i in 0..4 {
        let msg = format!("after {i}");
        let s = via4
            .seedtree_sign("fw", msg.as_bytes(), Some(&info.public_key.0))
            .await
            .unwrap();
        check(msg.as_bytes(), &s.signature.0);
        assert!(
            u64::from(s.leaf) >= moved.first,
            "leaf {} below {}",
            s.leaf,
            moved.first
        );
        assert!(used.insert(s.leaf), "leaf {} used twice", s.leaf);
    }
    // The drained node holds no share of the tree and signs nothing with it.
    let err = admin.seedtree_sign("fw", b"x", None).await.unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    let keep = 32 - moved.first as usize;
    let sharing = n2.registry(|r| r.seedtree.trees["fw"].sharing());
    common::poll(
        "every old share row erased",
        std::time::Duration::from_secs(10),
        || async {
            (1..=4).all(|id| rows(id, &info.run) == 0)
                && rows(1, &sharing) == 0
                && [2, 3, 4].iter().all(|id| rows(*id, &sharing) >= keep)
        },
    )
    .await;
    // The unfinished plan's row is forgotten at node 4's next start (its
    // sharing was replaced: any rows of it are erased); the one in force
    // stays.
    assert_eq!(pending(), 2);
    // (The old handle holds its vault open: let it go first.)
    drop(n4);
    c.restart_node(n(4)).await.unwrap();
    let n4 = c.node(n(4)).unwrap();
    common::poll(
        "the unfinished plan forgotten at start",
        std::time::Duration::from_secs(20),
        || async {
            n4.vault()
                .count(Table::Pending, b"seedtree-sharing/")
                .unwrap()
                == 1
        },
    )
    .await;
    assert!(
        keyquorum_node::seedtree::rows::count_values(n4.vault(), Table::LeafShares, &sharing.0)
            .unwrap()
            >= keep
    );
    // Nothing left on node 1: its removal is no longer refused.
    let removal = admin
        .propose_change(Change::RemoveNode {
            id: n(1),
            despite_trees: false,
        })
        .await
        .unwrap();
    assert!(!removal.done);
    c.shutdown().await;
}

/// A tree reshare that cannot finish (the new holder is down) changes
/// nothing: the tree signs on with its old holders, and once the new
/// holder is back a second run moves the leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_tree_reshare_leaves_the_tree_as_it_was() {
    let (_dir, mut c) = cluster(4, 2, 0).await;
    let (admin, operator, info) = tree_on_1_2_3(&c).await;
    let via2 = Client::new(&c.url_of(n(2)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    drain_1_onto_4(&admin, &operator).await;
    c.stop_node(n(4)).await;
    let err = admin
        .seedtree_reshare("fw", 2, &ns(&[2, 3, 4]))
        .await
        .unwrap_err();
    assert!(status_of(&err) >= 500, "{err}");
    let same = via2.seedtree("fw").await.unwrap();
    assert_eq!((same.epoch, &same.members), (0, &ns(&[1, 2, 3])));
    let mut used = std::collections::BTreeSet::new();
    let s = via2
        .seedtree_sign("fw", b"while node 4 is down", Some(&info.public_key.0))
        .await
        .unwrap();
    assert!(keyquorum_client::seedtree::verify(
        &info.public_key.0,
        b"while node 4 is down",
        &s.signature.0
    ));
    used.insert(s.leaf);
    c.restart_node(n(4)).await.unwrap();
    let via4 = Client::new(&c.url_of(n(4)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    common::poll(
        "node 4 answers again",
        std::time::Duration::from_secs(30),
        || async { via4.seedtree("fw").await.is_ok() },
    )
    .await;
    let moved = admin
        .seedtree_reshare("fw", 2, &ns(&[2, 3, 4]))
        .await
        .unwrap();
    assert_eq!((moved.epoch, &moved.members), (1, &ns(&[2, 3, 4])));
    let s = via4
        .seedtree_sign("fw", b"after the second run", Some(&info.public_key.0))
        .await
        .unwrap();
    assert!(keyquorum_client::seedtree::verify(
        &info.public_key.0,
        b"after the second run",
        &s.signature.0
    ));
    assert!(u64::from(s.leaf) >= moved.first && used.insert(s.leaf));
    c.shutdown().await;
}

/// The admin's client through node 1, the operator's through node 2, and
/// a 2-of-{1, 2, 3} tree `fw` of height 5 in four subtrees.
async fn tree_on_1_2_3(
    c: &LocalCluster,
) -> (Client, Client, keyquorum_wire::seedtree::SeedtreeInfo) {
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let operator = Client::new(&c.url_of(n(2)), &c.operator, c.ca_pem().as_bytes()).unwrap();
    let info = admin
        .seedtree_create(&keyquorum_wire::seedtree::CreateSeedtreeRequest {
            name: "fw".into(),
            height: 5,
            winternitz: 4,
            subtrees: Some(4),
            threshold: Some(2),
            members: Some(ns(&[1, 2, 3])),
        })
        .await
        .unwrap();
    (admin, operator, info)
}

/// Node 1's drain onto node 4: proposed by the admin, approved by the
/// operator (the quorum).
async fn drain_1_onto_4(admin: &Client, operator: &Client) {
    let change = admin
        .propose_change(Change::DrainNode {
            id: n(1),
            onto: Some(n(4)),
        })
        .await
        .unwrap();
    operator.approve_change(&change).await.unwrap();
}
