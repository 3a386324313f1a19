//! The threshold VOPRF on real clusters on loopback: keys by DKG, answers
//! an RFC 9497 client we did not write (the `voprf` crate, through
//! `keyquorum_client::oprf`) accepts, the same output from every signer
//! set and after a reshare, a member answering wrongly named and left out,
//! and members that release nothing no client asked for.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "integration tests: a failed unwrap is a failed test"
)]

use crate::common;

use std::sync::atomic::Ordering;

use common::SendAs as _;
use common::{allow_reshare, client_request, cluster, n, new_client, now_s, ns, status_of};
use keyquorum_client::Client;
use keyquorum_core::oprf::{self as core_oprf, Commitment, Element, Package};
use keyquorum_wire::api::SuiteName;
use keyquorum_wire::oprf::CreateOprfKeyRequest;
use keyquorum_wire::peer::{ClientRequest, PeerMessage};
use keyquorum_wire::{Hex, Hex32};

fn key(name: &str) -> CreateOprfKeyRequest {
    CreateOprfKeyRequest {
        name: name.into(),
        threshold: None,
        members: None,
    }
}

/// Evaluations through every node verify under the key's public key
/// (checked by the `voprf` crate) and agree; other inputs give other
/// outputs; a reshare to 3-of-3 keeps both the public key and every
/// output. Clients without a grant naming the key are refused; the key
/// never signs, and `POST /v1/keys` cannot take an `oprf.` name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_verify_and_agree_across_nodes_signer_sets_and_a_reshare() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let k = admin.oprf_create(&key("pw")).await.unwrap();
    assert_eq!((k.name.as_str(), k.threshold, k.epoch), ("pw", 2, 1));
    assert_eq!(k.members, ns(&[1, 2, 3]));
    assert_eq!(k.public_key.0.len(), 32);
    let pk = k.public_key.0.clone();
    let app_key = new_client(&admin, "app", false, false, &["oprf.pw"]).await;
    let other_key = new_client(&admin, "other", false, false, &["some-signing-key"]).await;
    let every_key = new_client(&admin, "every", false, false, &["*"]).await;
    let via = |i: u16, who: &keyquorum_client::ClientKey| {
        Client::new(&c.url_of(n(i)), who, c.ca_pem().as_bytes()).unwrap()
    };
    let mut outputs = Vec::new();
    let mut sets = std::collections::BTreeSet::new();
    for i in [1u16, 2, 3, 1, 2, 3] {
        let e = via(i, &app_key)
            .oprf_evaluate("pw", b"correct horse", &pk)
            .await
            .unwrap();
        assert_eq!(e.output.len(), 64);
        assert_eq!(e.members.len(), 2);
        sets.insert(e.members.clone());
        outputs.push(e.output.to_vec());
    }
    assert!(outputs.iter().all(|o| *o == outputs[0]), "one PRF");
    assert!(sets.len() >= 2, "several signer sets answered: {sets:?}");
    let other = via(1, &app_key)
        .oprf_evaluate("pw", b"battery staple", &pk)
        .await
        .unwrap();
    assert_ne!(other.output.to_vec(), outputs[0]);
    // A pinned public key that is not the key's: the proof fails here.
    let mut wrong = pk.clone();
    let stranger = admin.oprf_create(&key("other")).await.unwrap();
    wrong.copy_from_slice(&stranger.public_key.0);
    let err = via(1, &app_key)
        .oprf_evaluate("pw", b"correct horse", &wrong)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    // No grant naming the key, or only `*` (every signing key): refused.
    for who in [&other_key, &every_key] {
        let err = via(2, who)
            .oprf_evaluate("pw", b"correct horse", &pk)
            .await
            .unwrap_err();
        assert_eq!(status_of(&err), 403, "{err}");
    }
    // Not a canonical element, or the identity: refused with a clear error.
    let http = keyquorum_client::http_client(c.ca_pem().as_bytes()).unwrap();
    let mut bad = voprf_blind(b"x");
    bad[31] |= 0x80;
    for (m, what) in [
        (bad, "non-canonical"),
        (vec![0u8; 32], "the identity"),
        (vec![1u8; 31], "short"),
    ] {
        let r = http
            .post(format!("{}/v1/oprf/pw/evaluate", c.url_of(n(1))))
            .json(&serde_json::json!({ "blinded_element": hex::encode(&m) }))
            .send_as(&app_key)
            .await;
        assert_eq!(r.status().as_u16(), 400, "{what}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("blinded_element"),
            "{what}: {body}"
        );
    }
    // The key never signs; the signing API takes no oprf. names.
    let err = admin.sign("oprf.pw", b"m").await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    let err = admin
        .create_key(&common::create("oprf.sneaky", SuiteName::Ed25519, 2, None))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 400, "{err}");
    let listed = admin.oprf_keys().await.unwrap().keys;
    assert_eq!(
        listed.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["other", "pw"]
    );
    // Reshare 2-of-3 → 3-of-3: the same key, so the same outputs.
    allow_reshare(&c, &admin, "oprf.pw", 3, &ns(&[1, 2, 3])).await;
    let r = admin.reshare("oprf.pw", 3, &ns(&[1, 2, 3])).await.unwrap();
    assert_eq!((r.threshold, r.epoch), (3, 2));
    assert_eq!(r.public_key.0, pk);
    let after = via(3, &app_key)
        .oprf_evaluate("pw", b"correct horse", &pk)
        .await
        .unwrap();
    assert_eq!((after.epoch, after.members.len()), (2, 3));
    assert_eq!(after.output.to_vec(), outputs[0]);
    c.shutdown().await;
}

fn voprf_blind(input: &[u8]) -> Vec<u8> {
    let b = voprf::VoprfClient::<voprf::Ristretto255>::blind(input, &mut rand_core::OsRng).unwrap();
    b.message.serialize().to_vec()
}

/// A member that answers wrongly is named, audited and left out; the
/// others answer and the output is still right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_answering_wrongly_is_named_and_the_others_answer() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let k = admin.oprf_create(&key("pw")).await.unwrap();
    let good = admin
        .oprf_evaluate("pw", b"pin 1234", &k.public_key.0)
        .await
        .unwrap();
    c.keys(n(2))
        .unwrap()
        .faults()
        .bad_evaluation_share
        .store(true, Ordering::Relaxed);
    for _ in 0..3 {
        let e = admin
            .oprf_evaluate("pw", b"pin 1234", &k.public_key.0)
            .await
            .unwrap();
        assert!(!e.members.contains(&n(2)), "{:?}", e.members);
        assert_eq!(e.output.to_vec(), good.output.to_vec());
    }
    common::wait_for_audit(&admin, "oprf.blame of node 2", |e| {
        e["event"]["action"] == "oprf.blame"
            && e["event"]["target"] == "oprf.pw"
            && e["event"]["outcome"]
                .as_str()
                .is_some_and(|o| o.contains("node 2"))
    })
    .await;
    c.shutdown().await;
}

fn evaluate_request(
    base: &str,
    who: &keyquorum_client::ClientKey,
    name: &str,
    m: &[u8],
) -> ClientRequest {
    client_request(
        base,
        who,
        "POST",
        &format!("/v1/oprf/{name}/evaluate"),
        Some(serde_json::json!({ "blinded_element": hex::encode(m) })),
        now_s(),
    )
}

fn commit_msg(epoch: u64, run: u8, request: ClientRequest) -> PeerMessage {
    PeerMessage::OprfCommit {
        key: "oprf.pw".into(),
        epoch,
        run: Hex32([run; 32]),
        request,
    }
}

/// Members release nothing no client asked for: a round one without the
/// client's request for this key, with a request sent to another node,
/// or by a client without the grant, is refused; round-one nonces answer
/// only the coordinator of round one, and only one package (a second,
/// even the right one, finds nothing); a client request drives at most
/// `n − t + 1` runs at a member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_release_nothing_no_client_asked_for_and_a_nonce_answers_once() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    admin.oprf_create(&key("pw")).await.unwrap();
    let app = new_client(&admin, "app", false, false, &["oprf.pw"]).await;
    let nosy = new_client(&admin, "nosy", false, false, &["oprf.other"]).await;
    let base = c.url_of(n(1));
    let m = voprf_blind(b"secret input");
    let n2 = c.node(n(2)).unwrap();
    let refused = |r: Result<PeerMessage, keyquorum_node::error::NodeError>| {
        r.map(|_| ()).unwrap_err().to_string()
    };
    // A request for another path (a signature), by a client without the
    // grant, or sent to node 1 but coming from node 3.
    let sign = common::sign_request(&base, &app, "pw", b"m");
    let e = refused(n2.handle_peer(n(1), commit_msg(1, 1, sign)).await);
    assert!(e.contains("not an evaluation"), "{e}");
    let e = refused(
        n2.handle_peer(
            n(1),
            commit_msg(1, 2, evaluate_request(&base, &nosy, "pw", &m)),
        )
        .await,
    );
    assert!(e.contains("may not evaluate"), "{e}");
    let e = refused(
        n2.handle_peer(
            n(3),
            commit_msg(1, 3, evaluate_request(&base, &app, "pw", &m)),
        )
        .await,
    );
    assert!(e.contains("not to node 3"), "{e}");
    // A forged request (body changed after signing).
    let mut forged = evaluate_request(&base, &app, "pw", &m);
    forged.body = Hex(serde_json::to_vec(
        &serde_json::json!({"blinded_element": hex::encode(voprf_blind(b"other"))}),
    )
    .unwrap());
    let e = refused(n2.handle_peer(n(1), commit_msg(1, 4, forged)).await);
    assert!(!e.is_empty());
    // A proper round one, as node 1 coordinating.
    let req = evaluate_request(&base, &app, "pw", &m);
    let PeerMessage::OprfCommitted { commitment } = n2
        .handle_peer(n(1), commit_msg(1, 5, req.clone()))
        .await
        .unwrap()
    else {
        panic!("not a commitment")
    };
    let mine = Commitment::from_bytes(&commitment.0).unwrap();
    // Another node cannot use node 1's round one.
    let el = Element::from_bytes(&m).unwrap();
    let package = Package::new(el, vec![mine]).unwrap();
    let respond = |pkg: &Package| PeerMessage::OprfRespond {
        run: Hex32([5; 32]),
        package: Hex(pkg.to_bytes()),
    };
    let e = refused(n2.handle_peer(n(3), respond(&package)).await);
    assert!(e.contains("no round one of run"), "{e}");
    // A package of fewer than t members is refused, and the nonces are
    // gone with the refusal: a second package finds nothing.
    let e = refused(n2.handle_peer(n(1), respond(&package)).await);
    assert!(e.contains("not enough"), "{e}");
    let e = refused(n2.handle_peer(n(1), respond(&package)).await);
    assert!(e.contains("no round one"), "{e}");
    // A real round two: with node 3's commitment too, once only.
    let n3 = c.node(n(3)).unwrap();
    let req = evaluate_request(&base, &app, "pw", &m);
    let mut commits = Vec::new();
    for (node, run) in [(&n2, 6u8), (&n3, 6u8)] {
        let PeerMessage::OprfCommitted { commitment } = node
            .handle_peer(n(1), commit_msg(1, run, req.clone()))
            .await
            .unwrap()
        else {
            panic!("not a commitment")
        };
        commits.push(Commitment::from_bytes(&commitment.0).unwrap());
    }
    let package = Package::new(el, commits).unwrap();
    let round2 = || PeerMessage::OprfRespond {
        run: Hex32([6; 32]),
        package: Hex(package.to_bytes()),
    };
    let mut responses = Vec::new();
    for node in [&n2, &n3] {
        let PeerMessage::OprfResponded { response } =
            node.handle_peer(n(1), round2()).await.unwrap()
        else {
            panic!("not a response")
        };
        responses.push(core_oprf::Response::from_bytes(&response.0).unwrap());
        let e = refused(node.handle_peer(n(1), round2()).await);
        assert!(e.contains("no round one"), "{e}");
    }
    let group = {
        let r = n2
            .registry(|r| r.keys.records.get("oprf.pw").cloned())
            .unwrap();
        <keyquorum_core::GroupKey<keyquorum_core::Ristretto255> as keyquorum_core::codec::Decode>::from_bytes(&r.group_key.0).unwrap()
    };
    assert!(core_oprf::aggregate(&group, &package, &responses).is_ok());
    // One client request drives at most n − t + 1 = 2 runs at a member.
    let req = evaluate_request(&base, &app, "pw", &m);
    for run in [7u8, 8] {
        n2.handle_peer(n(1), commit_msg(1, run, req.clone()))
            .await
            .unwrap();
    }
    let e = refused(n2.handle_peer(n(1), commit_msg(1, 9, req)).await);
    assert!(e.contains("attempt"), "{e}");
    c.shutdown().await;
}
