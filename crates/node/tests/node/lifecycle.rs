#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! Key lifecycle end to end on in-process nodes over loopback: refresh,
//! membership change, reshare 2-of-3 → 3-of-5 with two new nodes, signing
//! with only new holders, export with operator approvals.

use crate::common;

use common::{cluster, n, ns, sign_and_check, status_of};
use keyquorum_client::{Client, ExportKey};
use keyquorum_node::dev::LocalCluster;
use keyquorum_store::Table;
use keyquorum_wire::api::{ApprovalRequest, Approved, CreateKeyRequest, SuiteName};
use keyquorum_wire::control::Change;
use keyquorum_wire::NodeId;

/// Generations of `key`'s share stored on node `id`.
fn share_epochs(c: &LocalCluster, id: NodeId, key: &str) -> Vec<String> {
    let node = c.node(id).unwrap();
    node.vault()
        .keys(Table::Shares, format!("{key}/").as_bytes())
        .unwrap()
        .into_iter()
        .map(|k| String::from_utf8(k).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_reshare_to_new_nodes_and_export() {
    let (_dir, mut c) = cluster(3, 2, 4).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let mut ed = admin
        .create_key(&CreateKeyRequest {
            name: "ed".into(),
            suite: SuiteName::Ed25519,
            threshold: Some(2),
            members: None,
            min_members: None,
        })
        .await
        .unwrap();
    let mut tr = admin
        .create_key(&CreateKeyRequest {
            name: "tr".into(),
            suite: SuiteName::Secp256k1Tr,
            threshold: Some(2),
            members: None,
            min_members: None,
        })
        .await
        .unwrap();
    sign_and_check(&admin, &ed, b"before refresh").await;
    sign_and_check(&admin, &tr, b"before refresh").await;

    // Refresh: same public key, next epoch, old shares erased everywhere.
    for key in [&mut ed, &mut tr] {
        let via = Client::new(&c.url_of(n(2)), &c.admin, c.ca_pem().as_bytes()).unwrap();
        let next = via.refresh(&key.name).await.unwrap();
        assert_eq!(next.public_key, key.public_key);
        assert_eq!(next.epoch, key.epoch + 1);
        assert_eq!(next.members, key.members);
        *key = next;
        for i in 0..4u8 {
            let via = Client::new(
                &c.url_of(n(u16::from(i % 3) + 1)),
                &c.admin,
                c.ca_pem().as_bytes(),
            )
            .unwrap();
            sign_and_check(&via, key, &[b'r', i]).await;
        }
        for id in (1..=3).map(n) {
            assert_eq!(
                share_epochs(&c, id, &key.name),
                vec![format!("{}/{:020}", key.name, key.epoch)],
                "node {id} keeps only the refreshed share"
            );
        }
    }

    // Two new nodes join through the API.
    for _ in 0..2 {
        let req = c.spawn_node().await.unwrap();
        common::join(&c, &admin, &req).await;
    }
    c.wait_ready(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(admin.status().await.unwrap().nodes.len(), 5);

    // Reshare 2-of-3 → 3-of-5, coordinated by a new node.
    let via4 = Client::new(&c.url_of(n(4)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    common::allow_reshare(&c, &admin, "ed", 3, &ns(&[1, 2, 3, 4, 5])).await;
    let ed3of5 = via4.reshare("ed", 3, &ns(&[1, 2, 3, 4, 5])).await.unwrap();
    assert_eq!(ed3of5.public_key, ed.public_key);
    assert_eq!(ed3of5.threshold, 3);
    assert_eq!(ed3of5.members, ns(&[1, 2, 3, 4, 5]));
    assert_eq!(ed3of5.epoch, ed.epoch + 1);
    for i in 0..5u8 {
        let via = Client::new(
            &c.url_of(n(u16::from(i % 5) + 1)),
            &c.admin,
            c.ca_pem().as_bytes(),
        )
        .unwrap();
        let signers = sign_and_check(&via, &ed3of5, &[b's', i]).await;
        assert_eq!(signers.len(), 3);
    }

    // Reshare the BIP-340 key to the two new nodes only; the old holders
    // erase their shares once the new generation is committed.
    common::allow_reshare(&c, &admin, "tr", 2, &ns(&[4, 5])).await;
    let tr_new = via4.reshare("tr", 2, &ns(&[4, 5])).await.unwrap();
    assert_eq!(tr_new.public_key, tr.public_key);
    assert_eq!(tr_new.members, ns(&[4, 5]));
    for id in (1..=3).map(n) {
        assert!(
            share_epochs(&c, id, "tr").is_empty(),
            "old holder {id} erased its share"
        );
    }
    // Bad reshare requests are refused and change nothing.
    let e = via4.reshare("tr", 3, &ns(&[4, 5])).await.unwrap_err();
    assert_eq!(status_of(&e), 400);
    let e = via4.reshare("tr", 2, &ns(&[4, 99])).await.unwrap_err();
    assert_eq!(status_of(&e), 400);
    let e = via4.reshare("nope", 2, &ns(&[4, 5])).await.unwrap_err();
    assert_eq!(status_of(&e), 404);
    assert_eq!(via4.key("tr").await.unwrap(), tr_new);

    // Old holders 1 and 2 down (3 of 5 voters still up: the control plane
    // has its quorum): the reshared key signs with the new holders alone,
    // and the 3-of-5 key with exactly three.
    for id in (1..=2).map(n) {
        c.stop_node(id).await;
    }
    for i in 0..3u8 {
        let signers = sign_and_check(&via4, &tr_new, &[b'n', i]).await;
        assert_eq!(signers, ns(&[4, 5]));
    }
    let mut signers = sign_and_check(&via4, &ed3of5, b"three of five").await;
    signers.sort_unstable();
    assert_eq!(signers, ns(&[3, 4, 5]));
    // Node 3 down as well: two holders are not enough for the 3-of-5 key,
    // and with 2 of 5 voters the audit log cannot commit, so no signature
    // is released at all (fail closed) — each request fails, none hangs.
    c.stop_node(n(3)).await;
    let e = via4.sign("ed", b"x").await.unwrap_err();
    assert_eq!(status_of(&e), 503);
    let e = via4.sign("tr", b"x").await.unwrap_err();
    assert_eq!(status_of(&e), 503);
    assert!(e.to_string().contains("audit"), "{e}");
    for id in (1..=3).map(n) {
        c.restart_node(id).await.unwrap();
    }
    c.wait_ready(std::time::Duration::from_secs(30))
        .await
        .unwrap();

    // Export with approvals. An admin cannot make an operator; the dev
    // cluster's one operator (quorum 1) approves enrolling two more and
    // then a quorum of 3.
    let e = common::try_new_client(&admin, "rogue", false, true, &[])
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 403, "{e}");
    let first = Client::new(&c.url_of(n(1)), &c.operator, c.ca_pem().as_bytes()).unwrap();
    let mut operators = vec![first];
    for i in 2..=3 {
        let key = keyquorum_client::ClientKey::generate(format!("op{i}"), &mut rand_core::OsRng);
        let change = admin
            .propose_change(Change::AddOperator {
                name: key.name().to_string(),
                public_key: keyquorum_wire::Hex32(key.public_key()),
            })
            .await
            .unwrap();
        assert_eq!(change.needed, 1);
        match operators[0]
            .approve(&change.id, &ApprovalRequest::of_change(&change))
            .await
            .unwrap()
        {
            Approved::Change(c) => assert!(c.done),
            other => panic!("{other:?}"),
        }
        operators.push(Client::new(&c.url_of(n(i)), &key, c.ca_pem().as_bytes()).unwrap());
    }
    let q = admin
        .propose_change(Change::SetQuorum { quorum: 3 })
        .await
        .unwrap();
    operators[1].approve_change(&q).await.unwrap();
    // Approved through another node than the admin's: wait for its replica.
    common::poll(
        "the quorum change to reach the admin's node",
        std::time::Duration::from_secs(10),
        || async { admin.changes().await.unwrap().quorum == 3 },
    )
    .await;
    let e = operators[0].sign("ed", b"x").await.unwrap_err();
    assert_eq!(status_of(&e), 403, "an operator client may not sign");
    let recipient = ExportKey::generate();
    let req = admin.request_export("ed", &recipient).await.unwrap();
    assert_eq!(req.needed, 3);
    // An admin alone cannot export: it is no operator, and cannot make one.
    let e = admin.approve_export(&req).await.unwrap_err();
    assert_eq!(status_of(&e), 403, "the admin is not an operator");
    let e = admin
        .approve(&req.id, &ApprovalRequest::of_export(&req))
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 403, "the admin is not an operator");
    for op in &operators[..2] {
        op.approve_export(&req).await.unwrap();
    }
    let e = admin.run_export(&req.id).await.unwrap_err();
    assert_eq!(status_of(&e), 403, "two approvals of three");
    let e = operators[0].run_export(&req.id).await.unwrap_err();
    assert_eq!(status_of(&e), 403, "only the requester runs it");
    let approved = operators[2].approve_export(&req).await.unwrap();
    assert_eq!(approved.approvals, vec!["operator", "op2", "op3"]);
    let result = admin.run_export(&req.id).await.unwrap();
    let secret = recipient.open(&result).unwrap();
    let scalar =
        curve25519_dalek::Scalar::from_canonical_bytes(secret.as_slice().try_into().unwrap())
            .into_option()
            .expect("a canonical scalar");
    let point = curve25519_dalek::EdwardsPoint::mul_base(&scalar).compress();
    assert_eq!(point.as_bytes().as_slice(), ed.public_key.0.as_slice());
    assert!(
        ExportKey::generate().open(&result).is_err(),
        "only the recipient opens it"
    );
    let e = admin.run_export(&req.id).await.unwrap_err();
    assert_eq!(status_of(&e), 409, "an export runs once");

    // BIP-340 key export: the scalar's point has the key's x coordinate.
    let recipient = ExportKey::generate();
    let req = admin.request_export("tr", &recipient).await.unwrap();
    assert_eq!(req.needed, 3);
    for op in &operators {
        op.approve_export(&req).await.unwrap();
    }
    let result = admin.run_export(&req.id).await.unwrap();
    let secret = recipient.open(&result).unwrap();
    let x = k256::schnorr::SigningKey::from_bytes(&secret)
        .unwrap()
        .verifying_key()
        .to_bytes();
    assert_eq!(x[..], tr.public_key.0[..]);

    // Every step is in the audit log, and the log verifies.
    // (Events are appended in batches: poll until the last ones land.)
    let wanted = [
        "key.refresh",
        "key.reshare",
        "export.request",
        "export.approve",
        "export.run",
        "export.release",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = admin.audit(0, 1000).await.unwrap();
        let actions: Vec<String> = log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"]["action"].as_str().unwrap().to_string())
            .collect();
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|a| !actions.iter().any(|x| x == a))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "audit log lacks {missing:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let v = admin.audit_verify().await.unwrap();
    assert_eq!(v["valid"], true, "{v}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_share_is_repaired_over_the_network() {
    let (_dir, c) = cluster(3, 3, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    for (name, suite) in [
        ("rep-ed", SuiteName::Ed25519),
        ("rep-tr", SuiteName::Secp256k1Tr),
    ] {
        // 2-of-3, so two helpers can rebuild node 3's share; signing with
        // node 3 as coordinator needs its own share.
        let key = admin
            .create_key(&CreateKeyRequest {
                name: name.into(),
                suite,
                threshold: Some(2),
                members: None,
                min_members: None,
            })
            .await
            .unwrap();
        let via3 = Client::new(&c.url_of(n(3)), &c.admin, c.ca_pem().as_bytes()).unwrap();
        sign_and_check(&via3, &key, b"before").await;
        // A repair of a member that still has its share is refused, and of
        // a node that is not a member.
        let e = admin.repair(name, n(3)).await.unwrap_err();
        assert_eq!(status_of(&e), 409, "{e}");
        assert_eq!(status_of(&admin.repair(name, n(9)).await.unwrap_err()), 400);
        // Node 3 loses its share.
        let n3 = c.node(n(3)).unwrap();
        let slot = format!("{name}/{:020}", key.epoch);
        assert!(n3
            .vault()
            .get(Table::Shares, slot.as_bytes())
            .unwrap()
            .is_some());
        n3.vault().delete(Table::Shares, slot.as_bytes()).unwrap();
        assert!(share_epochs(&c, n(3), name).is_empty());

        let after = admin.repair(name, n(3)).await.unwrap();
        assert_eq!(after, key, "same key, same generation");
        assert_eq!(share_epochs(&c, n(3), name).len(), 1);
        // Node 3 signs again with its rebuilt share: force it to be a
        // signer by signing through it (the coordinator signs first).
        for i in 0..3u8 {
            let signers = sign_and_check(&via3, &key, &[b'r', i]).await;
            assert!(signers.contains(&n(3)), "{signers:?}");
        }
    }
    c.shutdown().await;
}

/// A drain (issue #23 item 2) on four in-process nodes: nothing moves
/// before the operator quorum approves it; once it did, a shared key and
/// an HE session's key are reshared off the drained node onto node 4
/// (exactly that target: any other is refused), the accounts it guards
/// rotate away from it, and its removal is still refused while a signing
/// tree needs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_moves_keys_sessions_and_accounts_off_a_node() {
    use keyquorum_core::oprf::reset::DeviceSecret;
    use keyquorum_wire::he::CreateHeSessionRequest;
    use keyquorum_wire::recovery::{CreateAccountRequest, RotateAccountRequest};
    use keyquorum_wire::seedtree::CreateSeedtreeRequest;

    let (_dir, c) = cluster(4, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let operator = Client::new(&c.url_of(n(1)), &c.operator, c.ca_pem().as_bytes()).unwrap();
    let key = admin
        .create_key(&CreateKeyRequest {
            name: "k".into(),
            suite: SuiteName::Ed25519,
            threshold: Some(2),
            members: Some(ns(&[1, 2, 3])),

            min_members: None,
        })
        .await
        .unwrap();
    let device = DeviceSecret::generate();
    let account = admin
        .recovery_account_create(&CreateAccountRequest {
            account: "carol".into(),
            guardians: Some(3),
            threshold: Some(2),
            channels: vec!["app".into()],
            device_key: keyquorum_wire::Hex32(device.public_key()),
            measurements: None,
        })
        .await
        .unwrap();
    // The node to drain: one of nodes 2 and 3 that guards the account.
    let gone = account
        .guardians
        .iter()
        .map(|g| g.node)
        .find(|g| [n(2), n(3)].contains(g))
        .unwrap();
    let others: Vec<NodeId> = ns(&[1, 2, 3]).into_iter().filter(|m| *m != gone).collect();
    let mut target = others.clone();
    target.push(n(4));
    let session = admin
        .he_create(&CreateHeSessionRequest {
            threshold: Some(2),
            members: Some(ns(&[1, 2, 3])),
            ..common::he_session("s")
        })
        .await
        .unwrap();

    // Before the approval: the reshare onto the drained members is refused.
    let err = admin.reshare("k", 2, &target).await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    let change = admin
        .propose_change(Change::DrainNode {
            id: gone,
            onto: Some(n(4)),
        })
        .await
        .unwrap();
    assert!(!change.done, "an admin alone drains nothing");
    operator.approve_change(&change).await.unwrap();
    common::poll(
        "every node to know the drain",
        std::time::Duration::from_secs(10),
        || async {
            c.running()
                .into_iter()
                .all(|node| node.registry(|r| r.operators.drains.contains_key(&gone)))
        },
    )
    .await;

    // A new key goes to the voters not being drained by default (the
    // entry node and every replica agree on that).
    let fresh = admin
        .create_key(&CreateKeyRequest {
            name: "fresh".into(),
            suite: SuiteName::Ed25519,
            threshold: Some(2),
            members: None,
            min_members: None,
        })
        .await
        .unwrap();
    assert_eq!(fresh.members.len(), 3, "{fresh:?}");
    assert!(!fresh.members.contains(&gone), "{fresh:?}");
    // Only the drained members at the same threshold: not without node 4,
    // not at another threshold.
    let err = admin.reshare("k", 2, &others).await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    let err = admin.reshare("k", 3, &target).await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    let moved = admin.reshare("k", 2, &target).await.unwrap();
    assert_eq!(
        (moved.members.clone(), moved.threshold),
        (ns_sorted(&target), 2)
    );
    assert_eq!(moved.public_key, key.public_key);
    let s = admin.he_reshare("s", 2, &target).await.unwrap();
    assert_eq!(s.members, ns_sorted(&target));
    assert_eq!(
        admin.he_session("s").await.unwrap().public_key,
        session.public_key
    );
    let rotated = admin
        .recovery_account_rotate("carol", &RotateAccountRequest::default())
        .await
        .unwrap();
    assert!(
        rotated.guardians.iter().all(|g| g.node != gone),
        "{rotated:?}"
    );
    assert_eq!(rotated.reset_public_key, account.reset_public_key);
    // The key signs without the drained node.
    let via = Client::new(&c.url_of(n(4)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let signers = sign_and_check(&via, &moved, b"after the drain").await;
    assert!(!signers.contains(&gone), "{signers:?}");

    // A signing tree the drained node is a member of keeps it.
    admin
        .seedtree_create(&CreateSeedtreeRequest {
            name: "fw".into(),
            height: 5,
            winternitz: 4,
            subtrees: None,
            threshold: Some(2),
            members: Some(ns(&[1, 2, 3])),
        })
        .await
        .unwrap();
    let err = admin.remove_node(gone).await.unwrap_err();
    assert!(err.to_string().contains("signing trees"), "{err}");
    // The operators may remove it anyway, saying so.
    let change = admin.remove_node_despite_trees(gone).await.unwrap();
    operator.approve_change(&change).await.unwrap();
    common::wait_membership(&c, gone, false, true).await;
    c.shutdown().await;
}

fn ns_sorted(v: &[NodeId]) -> Vec<NodeId> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}
