//! Signing: no signature share without a client's request for that
//! message, and no nonce used twice, even after a vault restore.

use super::*;

/// A hostile member (node 1, speaking as itself on the peer channel) asks an
/// honest signer for signature shares no client asked for. Every attempt is
/// refused before a nonce is spent; the one request a client did sign drives
/// its operation's attempts and nothing more; the key still signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_get_signature_shares_no_client_asked_for() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let (key, record, group) = ed25519_key(&c, &admin, "h").await;
    admin
        .create_key(&create("other", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let app = common::new_client(&admin, "app", false, false, &["other"]).await;
    let gone = common::new_client(&admin, "gone", false, false, &["*"]).await;
    admin.revoke_client("gone").await.unwrap();
    let (n2, n3) = (c.node(n(2)).unwrap(), c.node(n(3)).unwrap());
    // The signers judge by their own replicas: wait until they know the
    // clients and the revocation.
    for node in [&n2, &n3] {
        common::poll(
            "the signers to learn the clients",
            std::time::Duration::from_secs(10),
            || async {
                node.registry(|r| {
                    r.clients.contains_key("app")
                        && r.clients.get("gone").is_some_and(|g| g.revoked)
                })
            },
        )
        .await;
    }
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

/// A vault restored from a copy brings back nonces that were spent after the
/// copy was taken; they are never used again. Here node 2 deals a nonce,
/// its entry is kept (the "copy"), the nonce signs one message, the entry is
/// put back (the file now holds what the copy held) and the node restarts:
/// the nonce is refused, and so is the copy put back again into the new
/// start's vault (nonces are bound to the start that dealt them, and a
/// start to the log). The key then signs with fresh nonces only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_restored_from_a_copy_does_not_reuse_a_nonce() {
    let (_dir, mut c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let (key, record, group) = ed25519_key(&c, &admin, "v").await;
    let (n2, n3) = (c.node(n(2)).unwrap(), c.node(n(3)).unwrap());
    let boot_before = n2.boot();
    let c2 = nonce(&n2, "v", record.epoch).await;
    let c3 = nonce(&n3, "v", record.epoch).await;
    let slot = n2
        .vault()
        .keys(Table::Nonces, b"v/")
        .unwrap()
        .pop()
        .unwrap();
    let copy = n2.vault().get(Table::Nonces, &slot).unwrap().unwrap();

    // The nonce signs one message.
    let base = c.url_of(n(1));
    let first = common::sign_request(&base, &c.admin, "v", b"before the restore");
    let coord = package(&group, b"before the restore", &[&c2, &c3]);
    let reply = n2
        .handle_peer(n(1), sign_share("v", record.epoch, &c2, &coord, &first))
        .await
        .unwrap();
    assert!(matches!(reply, PeerMessage::SignatureShare { .. }));
    assert_eq!(vault_count(&c, n(2), Table::Nonces, "v"), 0);

    // The copy comes back, the node starts from it.
    let restore = |node: &Node| {
        node.vault()
            .apply(&[keyquorum_store::vault::Op::Put(Table::Nonces, &slot, &copy)])
            .unwrap()
    };
    restore(&n2);
    drop(n2);
    c.stop_node(n(2)).await;
    c.restart_node(n(2)).await.unwrap();
    c.wait_ready(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let n2 = c.node(n(2)).unwrap();
    assert_ne!(n2.boot(), boot_before, "a start has a new boot id");
    assert!(n2.boot_confirmed());
    let c3 = nonce(&n3, "v", record.epoch).await;
    let second = common::sign_request(&base, &c.admin, "v", b"after the restore");
    let other = package(&group, b"after the restore", &[&c2, &c3]);
    let err = n2
        .handle_peer(n(1), sign_share("v", record.epoch, &c2, &other, &second))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");
    // Put back into the running node's vault (this start): still refused.
    restore(&n2);
    let third = common::sign_request(&base, &c.admin, "v", b"after the restore");
    let err = n2
        .handle_peer(n(1), sign_share("v", record.epoch, &c2, &other, &third))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("another start"), "{err}");
    assert_eq!(
        vault_count(&c, n(2), Table::Nonces, "v"),
        0,
        "taken and dropped"
    );

    // Signing goes on with fresh nonces, through every node.
    for via in [1u8, 2, 3] {
        let client =
            Client::new(&c.url_of(n(via.into())), &c.admin, c.ca_pem().as_bytes()).unwrap();
        sign_and_check(&client, &key, &[b'v', via]).await;
    }
    c.shutdown().await;
}

/// A batch of peer messages is no way around a signer's checks (issue #22's
/// batching): a hostile member (node 1) puts a share no client asked for
/// beside one a client did ask for. The signer judges each item alone:
/// the first is refused before its nonce is spent, the second signs. A
/// batch holding anything that travels alone (a nested batch, the
/// cluster's own messages, a nonce deal), or no item, or too many, is
/// refused whole: nothing in it is handled, no nonce spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_judged_item_by_item_and_carries_only_batchable_messages() {
    use keyquorum_wire::peer::MAX_PEER_BATCH;

    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let (key, record, group) = ed25519_key(&c, &admin, "h").await;
    let (n2, n3) = (c.node(n(2)).unwrap(), c.node(n(3)).unwrap());
    let base = c.url_of(n(1));
    let epoch = record.epoch;
    let item = |request: ClientRequest| batch_item(&n2, &n3, &group, epoch, request);
    let spent = |before: usize| before - vault_count(&c, n(2), Table::Nonces, "h");

    let forged = item(common::sign_request(&base, &c.admin, "h", b"pay 1")).await;
    let asked = item(common::sign_request(&base, &c.admin, "h", b"pay 1000")).await;
    let before = vault_count(&c, n(2), Table::Nonces, "h");
    let reply = n2
        .handle_peer(
            n(1),
            PeerMessage::Batch {
                items: vec![forged, asked],
            },
        )
        .await
        .unwrap();
    let PeerMessage::Batched { replies } = reply else {
        panic!("not a batch's answer: {reply:?}");
    };
    assert_eq!(replies.len(), 2);
    assert!(
        matches!(&replies[0], PeerMessage::Error { code, message, .. }
            if code == "forbidden" && message.contains("not the one the client asked for")),
        "the share no client asked for: {:?}",
        replies[0]
    );
    assert!(
        matches!(&replies[1], PeerMessage::SignatureShare { .. }),
        "the share the client asked for: {:?}",
        replies[1]
    );
    assert_eq!(spent(before), 1, "only the asked-for item spent its nonce");

    // Refused whole. `good` would sign alone (checked after).
    let good_request = common::sign_request(&base, &c.admin, "h", b"pay 1000");
    let good = item(good_request.clone()).await;
    let PeerMessage::SignShare {
        nonce: good_nonce,
        package: good_package,
        ..
    } = &good
    else {
        unreachable!()
    };
    let again = || PeerMessage::SignShare {
        key: "h".into(),
        epoch,
        nonce: good_nonce.clone(),
        package: good_package.clone(),
        request: good_request.clone(),
    };
    let deal = PeerMessage::NonceBatch {
        key: "h".into(),
        epoch,
        count: 1,
    };
    let cases: Vec<(&str, Vec<PeerMessage>, &str)> = vec![
        (
            "a nested batch",
            vec![
                again(),
                PeerMessage::Batch {
                    items: vec![again()],
                },
            ],
            "travels alone",
        ),
        (
            "the cluster's own message",
            vec![again(), PeerMessage::Ping],
            "travels alone",
        ),
        ("a nonce deal", vec![again(), deal], "travels alone"),
        ("no item", vec![], "a batch holds 1 to"),
        (
            "too many items",
            (0..=MAX_PEER_BATCH).map(|_| again()).collect(),
            "a batch holds 1 to",
        ),
    ];
    let before = vault_count(&c, n(2), Table::Nonces, "h");
    for (what, items, needle) in cases {
        let err = n2
            .handle_peer(n(1), PeerMessage::Batch { items })
            .await
            .unwrap_err();
        assert_eq!(status_of_node(&err), 400, "{what}: {err}");
        assert!(err.to_string().contains(needle), "{what}: {err}");
        assert_eq!(spent(before), 0, "{what}: nothing spent");
    }
    // The item those batches carried was good: alone, it signs.
    assert!(matches!(
        n2.handle_peer(n(1), good).await.unwrap(),
        PeerMessage::SignatureShare { .. }
    ));
    assert_eq!(spent(before), 1);
    sign_and_check(&admin, &key, b"after the batches").await;
    c.shutdown().await;
}

/// A `SignShare` of `b"pay 1000"` with `h` for node `a`, with a fresh pair
/// of nonces (`a`'s and `b`'s), carrying `request`.
async fn batch_item(
    a: &Node,
    b: &Node,
    group: &GroupKey<Ed25519>,
    epoch: u64,
    request: ClientRequest,
) -> PeerMessage {
    let mine = nonce(a, "h", epoch).await;
    let other = nonce(b, "h", epoch).await;
    let coord = package(group, b"pay 1000", &[&mine, &other]);
    sign_share("h", epoch, &mine, &coord, &request)
}

/// The HTTP status a node error maps to.
fn status_of_node(e: &keyquorum_node::NodeError) -> u16 {
    e.status().0.as_u16()
}

/// Create the 2-of-3 Ed25519 key `name` through `admin`; its record as
/// node 1 has it, and its group key.
async fn ed25519_key(
    c: &LocalCluster,
    admin: &Client,
    name: &str,
) -> (
    KeyInfo,
    keyquorum_wire::control::KeyRecord,
    GroupKey<Ed25519>,
) {
    let key = admin
        .create_key(&create(name, SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let record = c
        .node(n(1))
        .unwrap()
        .registry(|r| r.keys.records.get(name).cloned())
        .unwrap();
    let group = GroupKey::<Ed25519>::from_bytes(&record.group_key.0).unwrap();
    (key, record, group)
}
