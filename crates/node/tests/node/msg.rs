//! Per-message key derivation end to end on a local cluster (issue #4):
//! endpoints with sealed local files, prekeys claimed through consensus,
//! coordinators chosen per message, mailboxes, and every refusal the API
//! names.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "integration tests: a failed unwrap is a failed test"
)]

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{cluster, n, ns, status_of};
use futures::StreamExt;
use keyquorum_client::msg::{Endpoint, Reservation};
use keyquorum_client::{Client, ClientError};
use keyquorum_core::msgkey::Mode;
use keyquorum_store::vault::KdfParams;
use keyquorum_store::Passphrase;
use keyquorum_wire::Hex32;

const NAMES: [&str; 4] = ["alice", "bob", "carol", "dave"];

fn endpoint(dir: &std::path::Path, name: &str) -> Endpoint {
    Endpoint::create(
        &dir.join(format!("{name}.kqe")),
        &Passphrase::new(format!("pw-{name}").into_bytes()),
        KdfParams::insecure_fast(),
        name,
    )
    .unwrap()
}

async fn endpoints(
    dir: &std::path::Path,
    c: &Client,
    prekeys: usize,
    claim_batch: u16,
) -> Vec<Arc<Endpoint>> {
    let mut out = Vec::new();
    for name in NAMES {
        let e = endpoint(dir, name).with_claim_batch(claim_batch);
        let info = e.register(c, prekeys.min(200)).await.unwrap();
        assert_eq!(info.record.identity, Hex32(e.identity()));
        let mut left = prekeys.saturating_sub(200);
        while left > 0 {
            let n = left.min(200);
            c.publish_prekeys(name, e.new_prekeys(n).unwrap())
                .await
                .unwrap();
            left -= n;
        }
        out.push(Arc::new(e));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_in_both_modes_with_one_and_two_coordinators_open_at_their_receivers() {
    let (dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url(), &c.admin, c.ca_pem().as_bytes()).unwrap();
    // Senders reserve 8 prekeys per claim (one consensus write per 8
    // messages to a receiver); 300 prekeys cover 250 messages plus what
    // three senders leave reserved.
    let eps = endpoints(dir.path(), &admin, 300, 8).await;
    let d = admin.msg_deployment().await.unwrap();
    assert_eq!(d.nodes.len(), 3);

    // 1,000 messages, 250 for each of (mode, m), every ordered pair of
    // endpoints, sent 16 at a time through different nodes.
    let clients: Vec<Client> = (1..=3)
        .map(n)
        .map(|i| Client::new(&c.url_of(i), &c.admin, c.ca_pem().as_bytes()).unwrap())
        .collect();
    let configs = [
        (Mode::VerifyInTheExponent, 1u16),
        (Mode::VerifyInTheExponent, 2),
        (Mode::CoordinatorReconstructs, 1),
        (Mode::CoordinatorReconstructs, 2),
    ];
    let jobs = (0..1000usize).map(|i| {
        let (mode, m) = configs[i % 4];
        let from = i % 4;
        let to = (from + 1 + (i / 4) % 3) % 4;
        let (sender, via, d) = (eps[from].clone(), clients[i % 3].clone(), d.clone());
        async move {
            let content = format!("message {i} from {} to {}", NAMES[from], NAMES[to]);
            let r = sender
                .send(&via, &d, NAMES[to], content.as_bytes(), m, mode)
                .await
                .unwrap_or_else(|e| panic!("message {i}: {e}"));
            assert_eq!(r.confirmations.len(), usize::from(m), "message {i}");
            assert!(r.unreachable.is_empty());
            (r.id, (NAMES[to], content))
        }
    });
    let sent: BTreeMap<Hex32, (&str, String)> = futures::stream::iter(jobs)
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(sent.len(), 1000, "identifiers are unique");
    // Every published prekey is still available, carried a message, or is
    // held reserved by a sender (at most 7 per sender and receiver).
    let mut available = 0;
    for name in NAMES {
        available += admin.endpoint(name).await.unwrap().prekeys_available;
    }
    let reserved: usize = eps.iter().map(|e| e.reserved()).sum();
    assert_eq!(available as usize + 1000 + reserved, 4 * 300);
    assert!(reserved <= 4 * 3 * 7, "{reserved} reserved");

    // Nobody but the receiver opens a message: the others have neither the
    // prekey nor the identity it names.
    let bob_inbox = admin.inbox("bob").await.unwrap().messages;
    let bob_sender = admin.endpoint(&bob_inbox[0].from).await.unwrap();
    for other in [&eps[0], &eps[2], &eps[3]] {
        let e = other
            .open_item(&d, &bob_sender.record.identity.0, &bob_inbox[0])
            .unwrap_err();
        assert!(matches!(e, ClientError::Msg(_)), "{e}");
    }

    let mut opened = 0;
    for (i, e) in eps.iter().enumerate() {
        let secrets_before = e.prekey_secrets().unwrap();
        let got = e.receive(&admin, &d).await.unwrap();
        for r in &got {
            let content = r
                .content
                .as_ref()
                .unwrap_or_else(|err| panic!("{} could not open {}: {err}", NAMES[i], r.id));
            let (to, expected) = &sent[&r.id];
            assert_eq!(*to, NAMES[i]);
            assert_eq!(content.as_slice(), expected.as_bytes());
        }
        opened += got.len();
        // Every prekey secret used is gone from the local file (replenish
        // may have added a batch).
        let after = e.prekey_secrets().unwrap();
        assert!(
            after + got.len() == secrets_before
                || after + got.len() == secrets_before + keyquorum_client::msg::PREKEY_BATCH,
            "{}: {secrets_before} secrets, {} opened, {after} left",
            NAMES[i],
            got.len()
        );
        assert_eq!(admin.endpoint(NAMES[i]).await.unwrap().mailbox, 0);
    }
    assert_eq!(opened, 1000);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_coordinators_a_coordinator_killed_mid_flight_does_not_lose_a_message() {
    let (dir, mut c) = cluster(3, 2, 0).await;
    let via = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let eps = endpoints(dir.path(), &via, 320, 1).await;
    let d = via.msg_deployment().await.unwrap();
    let (alice, bob) = (eps[0].clone(), eps[1].clone());

    let sending = {
        let (via, d) = (via.clone(), d.clone());
        tokio::spawn(async move {
            let jobs = (0..300).map(|i| {
                let (via, d, alice) = (via.clone(), d.clone(), alice.clone());
                async move {
                    let r = alice
                        .send(
                            &via,
                            &d,
                            "bob",
                            format!("m{i}").as_bytes(),
                            2,
                            Mode::VerifyInTheExponent,
                        )
                        .await
                        .unwrap_or_else(|e| panic!("message {i}: {e}"));
                    (i, r)
                }
            });
            futures::stream::iter(jobs)
                .buffer_unordered(8)
                .collect::<Vec<_>>()
                .await
        })
    };
    // Kill node 3 once a few messages are through (polled, not slept).
    loop {
        if via.endpoint("bob").await.unwrap().mailbox >= 40 {
            break;
        }
        tokio::task::yield_now().await;
    }
    c.stop_node(n(3)).await;
    let results = sending.await.unwrap();
    assert_eq!(results.len(), 300);
    let degraded = results
        .iter()
        .filter(|(_, r)| r.unreachable == ns(&[3]))
        .count();
    assert!(
        degraded > 0,
        "some messages routed to node 3 after it stopped"
    );
    for (_, r) in &results {
        assert!(!r.confirmations.is_empty());
        assert!(r.confirmations.iter().all(|k| k.node != n(3)) || r.unreachable.is_empty());
    }
    // 300 waiting: the inbox comes in pages, and receive takes them all.
    let first = via.inbox("bob").await.unwrap();
    assert_eq!(first.messages.len(), 256);
    assert!(first.more);
    let got = bob.receive(&via, &d).await.unwrap();
    assert_eq!(got.len(), 300);
    assert_eq!(via.endpoint("bob").await.unwrap().mailbox, 0);
    let mut contents: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8(r.content.as_ref().unwrap().to_vec()).unwrap())
        .collect();
    contents.sort();
    let mut expected: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    expected.sort();
    assert_eq!(contents, expected);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_typed_and_changes_nothing() {
    let (dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url(), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let eps = endpoints(dir.path(), &admin, 40, 1).await;
    let d = admin.msg_deployment().await.unwrap();
    let (alice, bob) = (&eps[0], &eps[1]);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let mailbox = |c: &Client| {
        let c = c.clone();
        async move { c.endpoint("bob").await.unwrap().mailbox }
    };
    let refused = |e: ClientError, status: u16, needle: &str| {
        assert_eq!(status_of(&e), status, "{e}");
        assert!(e.to_string().contains(needle), "{needle:?} not in {e}");
    };

    // A good message, then its replay.
    let p = alice
        .prepare(
            &admin,
            &d,
            "bob",
            b"hello",
            1,
            Mode::VerifyInTheExponent,
            now(),
        )
        .await
        .unwrap();
    alice.submit(&admin, &d, &p).await.unwrap();
    assert_eq!(mailbox(&admin).await, 1);
    let e = alice.submit(&admin, &d, &p).await.unwrap_err();
    refused(e, 409, "replay");
    assert_eq!(mailbox(&admin).await, 1);

    // Tampered payload and tampered header: the signature over both fails.
    let mut t = alice
        .prepare(&admin, &d, "bob", b"x", 1, Mode::VerifyInTheExponent, now())
        .await
        .unwrap();
    t.request.payload.0[0] ^= 1;
    refused(
        alice.submit(&admin, &d, &t).await.unwrap_err(),
        400,
        "tampered",
    );
    let mut h = alice
        .prepare(&admin, &d, "bob", b"x", 1, Mode::VerifyInTheExponent, now())
        .await
        .unwrap();
    let last = h.request.header.0.len() - 1;
    h.request.header.0[last] ^= 1;
    let e = alice.submit(&admin, &d, &h).await.unwrap_err();
    assert_eq!(status_of(&e), 400, "{e}");

    // Outside the window (10 minutes old; the window is 5).
    let old = alice
        .prepare(
            &admin,
            &d,
            "bob",
            b"x",
            1,
            Mode::VerifyInTheExponent,
            now() - 600_000,
        )
        .await
        .unwrap();
    refused(
        alice.submit(&admin, &d, &old).await.unwrap_err(),
        400,
        "window",
    );

    // Bundles sent to nodes the identifier does not route to.
    let mut w = alice
        .prepare(&admin, &d, "bob", b"x", 1, Mode::VerifyInTheExponent, now())
        .await
        .unwrap();
    let routed = w.request.for_coordinators[0].node;
    let wrong = (1..=3).map(n).find(|n| *n != routed).unwrap();
    w.request.for_coordinators[0].node = wrong;
    refused(
        alice.submit(&admin, &d, &w).await.unwrap_err(),
        400,
        "bundle per coordinator",
    );

    // Two messages sealed to one claimed prekey: the first spends it.
    let claim = alice.reserve(&admin, &d, "bob").await.unwrap();
    let first = alice
        .build(&d, &claim, b"first", 1, Mode::VerifyInTheExponent, now())
        .unwrap();
    let again = alice
        .build(&d, &claim, b"again", 1, Mode::VerifyInTheExponent, now())
        .unwrap();
    alice.submit(&admin, &d, &first).await.unwrap();
    refused(
        alice.submit(&admin, &d, &again).await.unwrap_err(),
        409,
        "already used",
    );
    // A prekey claimed by another sender is not alice's to use.
    // A claim reserves 1 to 64 prekeys.
    for count in [0, 65] {
        refused(
            admin
                .claim_prekeys("bob", "alice", count)
                .await
                .unwrap_err(),
            400,
            "count must be 1 to 64",
        );
    }
    let carols =
        Reservation::all(&admin.claim_prekeys("bob", "carol", 1).await.unwrap(), 0).remove(0);
    let taken = alice
        .build(&d, &carols, b"taken", 1, Mode::VerifyInTheExponent, now())
        .unwrap();
    refused(
        alice.submit(&admin, &d, &taken).await.unwrap_err(),
        409,
        "not claimed by alice",
    );
    assert_eq!(mailbox(&admin).await, 2);

    // Unknown and revoked endpoints.
    let e = alice
        .send(&admin, &d, "nobody", b"x", 1, Mode::VerifyInTheExponent)
        .await
        .unwrap_err();
    refused(e, 404, "unknown endpoint");
    let pending = alice
        .prepare(
            &admin,
            &d,
            "dave",
            b"x",
            1,
            Mode::VerifyInTheExponent,
            now(),
        )
        .await
        .unwrap();
    admin.revoke_endpoint("dave").await.unwrap();
    refused(
        alice.submit(&admin, &d, &pending).await.unwrap_err(),
        409,
        "revoked",
    );
    refused(
        alice
            .send(&admin, &d, "dave", b"x", 1, Mode::VerifyInTheExponent)
            .await
            .unwrap_err(),
        409,
        "revoked",
    );

    // A client that does not own the sending endpoint.
    let other = common::new_client(&admin, "mallory", false, false, &[]).await;
    let mallory = Client::new(&c.url(), &other, c.ca_pem().as_bytes()).unwrap();
    refused(
        alice
            .send(&mallory, &d, "bob", b"x", 1, Mode::VerifyInTheExponent)
            .await
            .unwrap_err(),
        403,
        "does not own",
    );
    refused(mallory.inbox("bob").await.unwrap_err(), 403, "does not own");

    // Nothing refused reached the mailbox: hello, first.
    let got = bob.receive(&admin, &d).await.unwrap();
    let mut texts: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8(r.content.as_ref().unwrap().to_vec()).unwrap())
        .collect();
    texts.sort();
    assert_eq!(texts, ["first", "hello"]);
    c.shutdown().await;
}

/// A member delivers a message its sender never signed (the payload
/// changed after the sender signed it): the leader commits the member's
/// statement, and every replica refuses it on apply (DESIGN.md §4 item 3:
/// a delivery is bound to the sending endpoint's signature, not to the
/// entry node's word). The untouched message, delivered again, is refused
/// as a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_deliver_what_the_sender_did_not_sign() {
    use keyquorum_wire::msg::MsgCommand;
    use keyquorum_wire::peer::PeerMessage;

    let (dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url(), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let eps = endpoints(dir.path(), &admin, 4, 1).await;
    let d = admin.msg_deployment().await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let p = eps[0]
        .prepare(
            &admin,
            &d,
            "bob",
            b"hello",
            1,
            Mode::VerifyInTheExponent,
            now,
        )
        .await
        .unwrap();
    eps[0].submit(&admin, &d, &p).await.unwrap();
    let item = admin.inbox("bob").await.unwrap().messages[0].clone();
    let leader_id = c.node(n(1)).unwrap().leader().unwrap();
    let member = (1..=3).map(n).find(|i| *i != leader_id).unwrap();
    let (leader, m) = (c.node(leader_id).unwrap(), c.node(member).unwrap());
    let deliver = |item: keyquorum_wire::msg::MailItem, prekey: Hex32| PeerMessage::Forward {
        commands: vec![m.statement(MsgCommand::Deliver { item, prekey })],
    };
    let signed_prekey = Hex32(
        keyquorum_core::msgkey::protocol::Routing::from_header(&item.header.0)
            .unwrap()
            .prekey,
    );
    let mut forged = item.clone();
    forged.payload.0[0] ^= 1;
    for (what, forged, prekey, needle) in [
        (
            "a changed payload",
            forged,
            signed_prekey,
            "not its sender's",
        ),
        ("another prekey", item.clone(), Hex32([5; 32]), "prekey"),
        ("the message again", item, signed_prekey, "replay"),
    ] {
        match leader
            .handle_peer(member, deliver(forged, prekey))
            .await
            .unwrap()
        {
            PeerMessage::ForwardReply { response, .. } => {
                assert!(
                    format!("{response:?}").contains(needle),
                    "{what}: {response:?}"
                )
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    assert_eq!(admin.endpoint("bob").await.unwrap().mailbox, 1);
    c.shutdown().await;
}

/// #18 item 3: a client has at most 1,000 live endpoints. The one past it
/// is refused with 429 by the node that takes it (every replica checks it
/// again on apply: `msg/quota.rs`'s unit tests), changes nothing, and does
/// not hold another client back; revoking one frees a place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_its_endpoint_quota_gets_429_and_others_are_not_held() {
    use keyquorum_node::msg::quota::{ENDPOINTS_PER_CLIENT, QUOTA_RULES};
    use keyquorum_wire::msg::CreateEndpointRequest;
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url(), &c.admin, c.ca_pem().as_bytes()).unwrap();
    // Every member announced rules 4 at boot: the log takes them up.
    for id in 1..=3 {
        let node = c.node(n(id)).unwrap();
        common::poll(
            "the log to take up the quota rules",
            std::time::Duration::from_secs(30),
            || async { node.registry(|r| r.rules) >= QUOTA_RULES },
        )
        .await;
    }
    let app_key = common::new_client(&admin, "app", false, false, &[]).await;
    let other_key = common::new_client(&admin, "other", false, false, &[]).await;
    let app = Client::new(&c.url_of(n(2)), &app_key, c.ca_pem().as_bytes()).unwrap();
    let other = Client::new(&c.url_of(n(3)), &other_key, c.ca_pem().as_bytes()).unwrap();
    let request = |name: String| CreateEndpointRequest {
        name,
        identity: Hex32(
            ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng)
                .verifying_key()
                .to_bytes(),
        ),
        prekeys: Vec::new(),
    };
    let made: Vec<_> = futures::stream::iter(0..ENDPOINTS_PER_CLIENT)
        .map(|i| {
            let app = app.clone();
            let req = request(format!("app-{i}"));
            async move { app.create_endpoint(&req).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(
        made.iter().all(Result::is_ok),
        "{:?}",
        made.iter().find(|r| r.is_err())
    );

    let e = app
        .create_endpoint(&request("app-past".into()))
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 429, "{e}");
    assert!(e.to_string().contains("live endpoints"), "{e}");
    assert_eq!(
        status_of(&admin.endpoint("app-past").await.unwrap_err()),
        404
    );
    // Another client is not held back by app's quota.
    other
        .create_endpoint(&request("other-0".into()))
        .await
        .unwrap();
    // Revoking one frees a place.
    app.revoke_endpoint("app-0").await.unwrap();
    app.create_endpoint(&request("app-past".into()))
        .await
        .unwrap();
    let e = app
        .create_endpoint(&request("app-past-2".into()))
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 429, "{e}");
    c.shutdown().await;
}

/// Found by the nemesis: a message accepted under one membership must
/// still open after the membership changes (a voter joins, which moves
/// the rendezvous choice of coordinators for some identifiers). The
/// receiver checks each message against the membership it was routed
/// under, which the deployment lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_routed_before_a_membership_change_open_after_it() {
    let (dir, mut c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url(), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let eps = endpoints(dir.path(), &admin, 100, 4).await;
    let before = admin.msg_deployment().await.unwrap();
    assert_eq!(before.nodes.len(), 3);
    let mut sent = BTreeMap::new();
    for i in 0..40usize {
        let content = format!("before the change {i}");
        let r = eps[0]
            .send(
                &admin,
                &before,
                "bob",
                content.as_bytes(),
                1,
                Mode::VerifyInTheExponent,
            )
            .await
            .unwrap();
        sent.insert(r.id, content);
    }
    let req = c.spawn_node().await.unwrap();
    common::join(&c, &admin, &req).await;
    let mut after = admin.msg_deployment().await.unwrap();
    for _ in 0..100 {
        if after.nodes.len() == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = admin.msg_deployment().await.unwrap();
    }
    assert_eq!(after.nodes.len(), 4);
    assert_eq!(
        after.earlier.first().map(|r| r.nodes.len()),
        Some(3),
        "{after:?}"
    );
    // Some of the 40 identifiers now rank the new node first.
    let (_, now) = keyquorum_client::msg::protocol_parts(&after);
    let members: Vec<_> = now.iter().map(|n| n.member).collect();
    let moved: Vec<Hex32> = sent
        .keys()
        .filter(|id| {
            keyquorum_core::msgkey::route::coordinators(&id.0, &members, 1).unwrap()
                == [u64::from(req.id)]
        })
        .copied()
        .collect();
    assert!(!moved.is_empty(), "no message moved coordinator");
    // Checked against the membership now alone, a moved one is refused
    // (this spends its prekey: it is refused again below).
    let inbox = admin.inbox("bob").await.unwrap().messages;
    let item = inbox.iter().find(|m| m.id == moved[0]).unwrap();
    let mut bare = after.clone();
    bare.earlier.clear();
    let e = eps[1]
        .open_item(&bare, &eps[0].identity(), item)
        .unwrap_err();
    assert!(e.to_string().contains("wrong coordinator"), "{e}");
    // With the membership it was routed under, every other one opens.
    let got = eps[1].receive(&admin, &after).await.unwrap();
    assert_eq!(got.len(), 40);
    for r in &got {
        match &r.content {
            Ok(content) => assert_eq!(content.as_slice(), sent[&r.id].as_bytes()),
            Err(e) => assert_eq!(r.id, moved[0], "{}: {e}", r.id),
        }
    }
    assert_eq!(got.iter().filter(|r| r.content.is_ok()).count(), 39);
    c.shutdown().await;
}
