//! Releasing shares: export shares and reshare deals go only where a
//! client (and the operator quorum) asked.

use super::*;

/// A member asking holders for export shares: refused without the
/// requester's own signed request to run the export, and before the export
/// is approved and carried out. When the requester runs it, every share is
/// sealed to the requester's one-time key: the coordinator cannot open one
/// (only the requester rebuilds the key), and a holder releases once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_get_export_shares_and_the_coordinator_never_holds_the_key() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let operator = Client::new(&c.url_of(n(2)), &c.operator, c.ca_pem().as_bytes()).unwrap();
    let key = admin
        .create_key(&create("x", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let app = common::new_client(&admin, "app", false, false, &["*"]).await;
    let recipient = keyquorum_client::ExportKey::generate();
    let export = admin.request_export("x", &recipient).await.unwrap();
    let id = export.id.clone();
    let base = c.url_of(n(1));
    let run_by = |who: &keyquorum_client::ClientKey| {
        common::client_request(
            &base,
            who,
            "POST",
            &format!("/v1/exports/{id}/run"),
            None,
            common::now_s(),
        )
    };
    let n2 = c.node(n(2)).unwrap();
    let ask = |request: ClientRequest| PeerMessage::ExportShare {
        id: id.clone(),
        request,
    };
    // Not approved yet: refused, even with the requester's request.
    let err = n2
        .handle_peer(n(1), ask(run_by(&c.admin)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not approved"), "{err}");
    operator.approve_export(&export).await.unwrap();
    // Approved but not carried out: still refused.
    let err = n2
        .handle_peer(n(1), ask(run_by(&c.admin)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not approved"), "{err}");
    // Another client's request, or the requester's request for something
    // else, is no request to run this export.
    let err = n2.handle_peer(n(1), ask(run_by(&app))).await.unwrap_err();
    assert!(err.to_string().contains("no request by admin"), "{err}");
    let sign = common::sign_request(&base, &c.admin, "x", b"not an export");
    let err = n2.handle_peer(n(1), ask(sign)).await.unwrap_err();
    assert!(err.to_string().contains("no request by admin"), "{err}");
    assert_eq!(
        vault_count(&c, n(2), Table::Identity, "export-released"),
        0,
        "nothing released"
    );

    // The requester runs it: shares sealed to its key, the key rebuilt
    // only by the requester.
    let result = admin.run_export(&id).await.unwrap();
    assert!(result.shares.len() >= 2);
    let secret = recipient.open(&result).unwrap();
    let scalar =
        curve25519_dalek::Scalar::from_canonical_bytes(secret.as_slice().try_into().unwrap())
            .into_option()
            .unwrap();
    let point = curve25519_dalek::EdwardsPoint::mul_base(&scalar).compress();
    assert_eq!(point.as_bytes().as_slice(), key.public_key.0.as_slice());
    // Any other X25519 key opens none (they are sealed to the requester).
    assert!(keyquorum_client::ExportKey::generate()
        .open(&result)
        .is_err());
    // A holder releases once per export.
    let err = n2
        .handle_peer(n(1), ask(run_by(&c.admin)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already released"), "{err}");
    c.shutdown().await;
}

/// A member asks a dealer to re-deal its share of a key to a member set
/// and threshold it picked (a rogue set it could then control): a dealer
/// deals only for an admin's own signed request to reshare this key to
/// exactly the plan's threshold and members, and for at most as many runs
/// as one reshare has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_get_a_key_re_dealt_to_a_set_no_admin_asked_for() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let key = admin
        .create_key(&create("r", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let app = common::new_client(&admin, "app", false, false, &["*"]).await;
    let base = c.url_of(n(1));
    let asks = |who: &keyquorum_client::ClientKey, key: &str, t: u16, members: &[u16]| {
        common::client_request(
            &base,
            who,
            "POST",
            &format!("/v1/keys/{key}/reshare"),
            Some(serde_json::json!({ "threshold": t, "members": members })),
            common::now_s(),
        )
    };
    // The rogue plan: 2-of-{1, 2}, dealt by nodes 2 and 3.
    let plan = keyquorum_wire::peer::ResharePlan {
        key: "r".into(),
        epoch: key.epoch,
        dealers: vec![n(2), n(3)],
        threshold: 2,
        members: vec![n(1), n(2)],
    };
    let deal = |request: ClientRequest, session: u8| PeerMessage::ReshareDeal {
        session: keyquorum_wire::Hex32([session; 32]),
        plan: plan.clone(),
        request,
    };
    let unsigned = ClientRequest {
        method: "POST".into(),
        target_uri: format!("{base}/v1/keys/r/reshare"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Hex(br#"{"threshold":2,"members":[1,2]}"#.to_vec()),
    };
    let n2 = c.node(n(2)).unwrap();
    // Node 2 judges by its own replica: wait until it knows the client.
    common::poll(
        "node 2 to learn the client",
        std::time::Duration::from_secs(10),
        || async { n2.registry(|r| r.clients.contains_key("app")) },
    )
    .await;
    let cases: Vec<(&str, NodeId, ClientRequest, &str)> = vec![
        ("no client request", n(1), unsigned, "not signed"),
        (
            "the admin asked for another set",
            n(1),
            asks(&c.admin, "r", 2, &[1, 2, 3]),
            "not the ones the client asked for",
        ),
        (
            "the admin asked for another threshold",
            n(1),
            asks(&c.admin, "r", 3, &[1, 2]),
            "not the ones the client asked for",
        ),
        (
            "the admin asked to reshare another key",
            n(1),
            asks(&c.admin, "s", 2, &[1, 2]),
            "not a reshare of r",
        ),
        (
            "a client that is not an admin",
            n(1),
            asks(&app, "r", 2, &[1, 2]),
            "not an admin",
        ),
        (
            "the admin's request handed on by another member",
            n(3),
            asks(&c.admin, "r", 2, &[1, 2]),
            "was sent to node 1, not to node 3",
        ),
    ];
    for (i, (what, from, request, needle)) in cases.into_iter().enumerate() {
        let err = n2
            .handle_peer(from, deal(request, i as u8))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{what}: {err}");
    }
    // The admin's own request, but the new member set (the key's signing
    // policy) is not approved by the operator quorum: refused by the
    // dealer and by the entry node.
    let err = n2
        .handle_peer(n(1), deal(asks(&c.admin, "r", 2, &[1, 2]), 50))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("operator quorum's approval"),
        "{err}"
    );
    let err = admin.reshare("r", 2, &[n(1), n(2)]).await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    common::allow_reshare(&c, &admin, "r", 2, &[n(1), n(2)]).await;
    // The admin's own request drives its own reshare: one session per run,
    // at most three runs, never a second time the same run.
    let asked = asks(&c.admin, "r", 2, &[1, 2]);
    for session in 100..103 {
        let dealt = n2
            .handle_peer(n(1), deal(asked.clone(), session))
            .await
            .unwrap();
        assert!(
            matches!(dealt, PeerMessage::ReshareDealt { .. }),
            "run {session}"
        );
    }
    let err = n2
        .handle_peer(n(1), deal(asked.clone(), 100))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already drove this step"), "{err}");
    let err = n2.handle_peer(n(1), deal(asked, 103)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("as many attempts as an operation has"),
        "{err}"
    );
    // Nothing was committed: the key is where it was, and signs.
    let now: KeyInfo = admin.key("r").await.unwrap();
    assert_eq!(now.epoch, key.epoch);
    assert_eq!(now.members, key.members);
    sign_and_check(&admin, &key, b"after the rogue deals").await;
    // And an honest reshare through the API is unaffected.
    let done = admin.reshare("r", 2, &[n(1), n(2)]).await.unwrap();
    assert_eq!(done.epoch, key.epoch + 1);
    sign_and_check(&admin, &done, b"after the reshare").await;
    // The approval is used up: back to three members needs another.
    common::poll(
        "every node to see the approval used",
        std::time::Duration::from_secs(10),
        || async {
            (1..=3).all(|i| {
                c.node(n(i))
                    .unwrap()
                    .registry(|r| !r.operators.key_policies.contains_key("r"))
            })
        },
    )
    .await;
    let err = admin.reshare("r", 2, &ns(&[1, 2, 3])).await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    c.shutdown().await;
}

/// A leader that answers a follower's forwarded audit batch "applied"
/// without appending it cannot get a signature released unaudited: the
/// follower releases only once its own replica holds the entry. The
/// signature is withheld (503); once the leader behaves, the follower's
/// writer appends the entry again and it lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_fakes_the_audit_commit_gets_no_signature_released() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let leader = c.node(n(1)).unwrap().leader().unwrap();
    let follower = (1..=3).map(n).find(|i| *i != leader).unwrap();
    let admin = Client::new(&c.url_of(follower), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let key = admin
        .create_key(&create("k", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    common::sign_and_check(&admin, &key, b"honest").await;
    let lying = c.node(leader).unwrap();
    lying
        .net_faults()
        .forge_forward_replies
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let e = admin.sign("k", b"under a lying leader").await.unwrap_err();
    assert_eq!(common::status_of(&e), 503, "{e}");
    assert!(e.to_string().contains("withheld"), "{e}");
    // The leader behaves again: the withheld signature's entry is
    // appended by the follower's writer (never released, always recorded).
    lying
        .net_faults()
        .forge_forward_replies
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let signs = || async {
        common::audit_entries(&admin)
            .await
            .iter()
            .filter(|e| e["event"]["action"] == "key.sign" && e["event"]["outcome"] == "ok")
            .count()
    };
    common::poll(
        "the withheld signature's entry",
        std::time::Duration::from_secs(30),
        || async { signs().await >= 2 },
    )
    .await;
    // And once only, though the writer tried it several times.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        signs().await,
        2,
        "the honest signature and the withheld one"
    );
    c.shutdown().await;
}
