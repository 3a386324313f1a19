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
