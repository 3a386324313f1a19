//! Computation on encrypted data on real clusters on loopback: sessions
//! created by DKG, inputs checked on every replica, quorum decryption with
//! a proof per share, resharing mid-session, members down, hostile inputs
//! and hostile members, and transcripts re-checked from public data.
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

use common::{allow_reshare, cluster, n, new_client, ns, status_of};
use keyquorum_client::he::{encrypt_input, verify_transcript, TranscriptError};
use keyquorum_client::Client;
use keyquorum_core::he::{Context, InputPolicy};
use keyquorum_wire::he::{CreateHeSessionRequest, HeOp, HeStatus, SubmitInputRequest};
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::Hex;

use common::he_session as session;

/// A member the leader's compacted log left behind installs a snapshot,
/// which carries each session's count and the end of its inputs' hash
/// chain but not its inputs. It applies the inputs after the snapshot from
/// the log, and fetches the run between from the other members, each input
/// checked against the chain before it is stored: while both other members
/// serve altered inputs nothing is taken, and once one serves the real ones
/// the member serves the same transcript as they do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_behind_a_snapshot_fetches_the_inputs_and_serves_the_transcript() {
    use std::time::Duration;
    const EVERY: u64 = 20;
    let (_dir, mut c) = common::cluster_with(3, 2, 0, EVERY).await;
    let first = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let info = first.he_create(&session("late")).await.unwrap();
    let pin = Some(&info.public_key.0);
    // Inputs every member applies, then inputs the stopped one misses.
    for v in [3u64, 4] {
        first.he_submit("late", &[v], pin).await.unwrap();
    }
    let (leader, behind, admin) = common::stop_a_follower(&mut c).await;
    for v in 0..25u64 {
        admin.he_submit("late", &[v], pin).await.unwrap();
    }
    let lead = c.node(leader).unwrap();
    let missed = lead.raft().metrics().borrow().last_applied.unwrap().index;
    common::compact_past(&c, leader, &admin, EVERY).await;
    common::poll(
        "the leader to purge its log past the missed inputs",
        Duration::from_secs(30),
        || async {
            let m = lead.raft().metrics().borrow().clone();
            m.purged.is_some_and(|p| p.index > missed)
        },
    )
    .await;
    // Inputs after the snapshot: the member applies these from the log.
    for v in [7u64, 8, 9] {
        admin.he_submit("late", &[v], pin).await.unwrap();
    }
    let want = admin.he_transcript("late").await.unwrap();
    assert_eq!(want.inputs.len(), 30);

    // Both other members serve altered inputs.
    let others: Vec<_> = (1..=3)
        .map(n)
        .filter(|i| *i != behind)
        .map(|i| c.node(i).unwrap())
        .collect();
    let forge = |on: bool| {
        for o in &others {
            o.net_faults().forge_he_inputs.store(on, Ordering::Relaxed);
        }
    };
    forge(true);
    c.restart_node(behind).await.unwrap();
    let member = c.node(behind).unwrap();
    let via_member = Client::new(&c.url_of(behind), &c.admin, c.ca_pem().as_bytes()).unwrap();
    common::poll(
        "the member to apply every input",
        Duration::from_secs(30),
        || async {
            member.registry(|r| {
                r.he.sessions
                    .get("late")
                    .is_some_and(|e| e.progress.count == 30)
            })
        },
    )
    .await;
    // It installed a snapshot taken after the inputs it missed.
    let snap = member.raft().metrics().borrow().snapshot;
    assert!(snap.is_some_and(|s| s.index >= missed), "{snap:?} {missed}");
    // A few keeper rounds: every fetched run is refused, nothing stored.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let err = via_member.he_transcript("late").await.unwrap_err();
    assert_eq!(status_of(&err), 503, "{err}");
    // It holds at most the two inputs it applied before it stopped (one,
    // if it stopped before applying the second): nothing fetched.
    let text = err.to_string();
    let held: u64 = text
        .split("holds inputs 0..")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|k| k.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(held <= 2, "{err}");

    forge(false);
    common::poll(
        "the member to serve the whole transcript",
        Duration::from_secs(60),
        || async {
            via_member
                .he_transcript("late")
                .await
                .is_ok_and(|t| t.inputs.len() == 30)
        },
    )
    .await;
    let got = via_member.he_transcript("late").await.unwrap();
    assert_eq!(got, want);
    verify_transcript(&got, pin).unwrap();
    c.shutdown().await;
}

/// 3 nodes, t = 2: clients submit through different nodes, every replica
/// has the same aggregate, the result is the sum, later calls give the same
/// result, and the transcript re-checks from public data; the session's
/// key never signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_sum_inputs_from_several_clients_and_the_transcript_checks() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let info = admin
        .he_create(&CreateHeSessionRequest {
            slots: Some(2),
            ..session("survey")
        })
        .await
        .unwrap();
    assert_eq!((info.threshold, info.slots), (2, 2));
    assert_eq!(info.members, ns(&[1, 2, 3]));
    assert_eq!(info.inputs, "knowledge");
    let mut want = [0u64; 2];
    for (i, who) in ["alice", "bob", "carol"].iter().enumerate() {
        let key = new_client(&admin, who, false, false, &[]).await;
        let via = Client::new(&c.url_of(n(i as u16 + 1)), &key, c.ca_pem().as_bytes()).unwrap();
        for v in [[10 * (i as u64 + 1), 1], [7, 0]] {
            via.he_submit("survey", &v, Some(&info.public_key.0))
                .await
                .unwrap();
            want[0] += v[0];
            want[1] += v[1];
        }
    }
    // A pinned key that is not the session's: refused before encrypting.
    let err = admin
        .he_submit("survey", &[1, 1], Some(&[9; 32]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not the one you pinned"), "{err}");
    // An input is not a result: a submitter may not close or decrypt.
    let bob = new_client(&admin, "dave", false, false, &[]).await;
    let dave = Client::new(&c.url_of(n(2)), &bob, c.ca_pem().as_bytes()).unwrap();
    assert_eq!(status_of(&dave.he_close("survey").await.unwrap_err()), 403);
    // Not before it is closed.
    assert_eq!(
        status_of(&admin.he_result("survey").await.unwrap_err()),
        409
    );
    // A close that states other inputs than the session holds: refused.
    let now = admin.he_session("survey").await.unwrap();
    let stale = keyquorum_wire::he::HeInputsStatement {
        count: now.count - 1,
        inputs_hash: now.inputs_hash,
    };
    let err = admin.he_close_at("survey", &stale).await.unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    let closed = admin.he_close("survey").await.unwrap();
    assert_eq!((closed.status, closed.count), (HeStatus::Closed, 6));
    // Every replica holds the same aggregate.
    let aggregates: Vec<_> = c
        .running()
        .iter()
        .map(|node| node.registry(|r| r.he.sessions["survey"].progress.aggregate.clone()))
        .collect();
    assert!(aggregates.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(status_of(&dave.he_result("survey").await.unwrap_err()), 403);
    let r = admin.he_result("survey").await.unwrap();
    assert_eq!(r.values, want.to_vec());
    let v = verify_transcript(&r.transcript, Some(&info.public_key.0)).unwrap();
    assert_eq!((v.inputs, v.values), (6, Some(want.to_vec())));
    // Later calls, through any node, return the recorded result.
    let again = Client::new(&c.url_of(n(3)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let r2 = again.he_result("survey").await.unwrap();
    assert_eq!(r2.transcript, r.transcript);
    // No input after close.
    let late = dave.he_submit("survey", &[1, 1], None).await.unwrap_err();
    assert_eq!(status_of(&late), 409, "{late}");
    // Software attestation: every node states what it runs at boot, and a
    // session can require its members' build.
    let mut status = admin.status().await.unwrap();
    for _ in 0..100 {
        if status.nodes.iter().all(|x| x.measurement.is_some()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        status = admin.status().await.unwrap();
    }
    let m = status.nodes[0].measurement.unwrap();
    assert!(status.nodes.iter().all(|x| x.measurement == Some(m)));
    assert_ne!(m.binary.0, [0; 32]);
    let attested = admin
        .he_create(&CreateHeSessionRequest {
            measurements: Some(vec![m.binary]),
            ..session("attested")
        })
        .await
        .unwrap();
    assert_eq!(attested.measurements, Some(vec![m.binary]));
    let err = admin
        .he_create(&CreateHeSessionRequest {
            measurements: Some(vec![keyquorum_wire::Hex32([7; 32])]),
            ..session("another-build")
        })
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    assert!(err.to_string().contains("measurement"), "{err}");
    // The session's key decrypts; it never signs.
    let err = admin.sign("he.survey", b"a signature").await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    // And a plain key may not take the sessions' names or suite.
    let err = admin
        .create_key(&keyquorum_wire::api::CreateKeyRequest {
            name: "he.other".into(),
            suite: keyquorum_wire::api::SuiteName::Ed25519,
            threshold: None,
            members: None,
            min_members: None,
        })
        .await
        .unwrap_err();
    assert!(status_of(&err) >= 400, "{err}");
    c.shutdown().await;
}

/// Bad inputs: a clear 4xx each, and nothing stored (count and hash chain
/// unchanged on every replica); a result past the bound is an error, never
/// a wrong number; an altered transcript is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_refused_and_change_nothing() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let info = admin
        .he_create(&CreateHeSessionRequest {
            inputs: Some("range:4".into()),
            bound: Some(5),
            ..session("r")
        })
        .await
        .unwrap();
    let me = admin.identity().name().to_string();
    let good = encrypt_input(&info, &me, &[9]).unwrap();
    admin.he_submit_raw("r", &good).await.unwrap();
    let before = |c: &keyquorum_node::dev::LocalCluster| {
        c.running()
            .iter()
            .map(|node| {
                node.registry(|r| {
                    let p = &r.he.sessions["r"].progress;
                    (p.count, p.inputs_hash)
                })
            })
            .collect::<Vec<_>>()
    };
    common::poll(
        "every replica to hold the first input",
        std::time::Duration::from_secs(10),
        || async { before(&c).iter().all(|(count, _)| *count == 1) },
    )
    .await;
    let stored = before(&c);
    let mut cases: Vec<(&str, SubmitInputRequest)> = Vec::new();
    // A value out of the proof's range cannot be made; a proof of another
    // input, a flipped bit, a short proof, a non-canonical point.
    let other = encrypt_input(&info, &me, &[3]).unwrap();
    cases.push((
        "another input's proof",
        SubmitInputRequest {
            index: None,
            ciphertext: good.ciphertext.clone(),
            proof: other.proof.clone(),
        },
    ));
    let mut flipped = good.proof.0.clone();
    flipped[100] ^= 1;
    cases.push((
        "a flipped proof bit",
        SubmitInputRequest {
            index: None,
            ciphertext: good.ciphertext.clone(),
            proof: Hex(flipped),
        },
    ));
    cases.push((
        "a short proof",
        SubmitInputRequest {
            index: None,
            ciphertext: good.ciphertext.clone(),
            proof: Hex(good.proof.0[..100].to_vec()),
        },
    ));
    let mut noncanonical = good.ciphertext.0.clone();
    noncanonical[32..64].copy_from_slice(&[0xff; 32]);
    cases.push((
        "a non-canonical point",
        SubmitInputRequest {
            index: None,
            ciphertext: Hex(noncanonical),
            proof: good.proof.clone(),
        },
    ));
    let mut tampered = good.ciphertext.0.clone();
    tampered[..32].copy_from_slice(&other.ciphertext.0[..32]);
    cases.push((
        "a tampered ciphertext",
        SubmitInputRequest {
            index: None,
            ciphertext: Hex(tampered),
            proof: good.proof.clone(),
        },
    ));
    cases.push((
        "a short ciphertext",
        SubmitInputRequest {
            index: None,
            ciphertext: Hex(good.ciphertext.0[..63].to_vec()),
            proof: good.proof.clone(),
        },
    ));
    // The same input again, replayed by another client: its proof is
    // bound to the submitter.
    let eve_key = new_client(&admin, "eve", false, false, &[]).await;
    let eve = Client::new(&c.url_of(n(2)), &eve_key, c.ca_pem().as_bytes()).unwrap();
    for (what, input) in &cases {
        let err = eve.he_submit_raw("r", input).await.unwrap_err();
        assert_eq!(status_of(&err), 400, "{what}: {err}");
    }
    let err = eve.he_submit_raw("r", &good).await.unwrap_err();
    assert_eq!(status_of(&err), 400, "a copied input: {err}");
    assert_eq!(before(&c), stored);
    assert_eq!(
        status_of(&admin.he_submit("nope", &[1], None).await.unwrap_err()),
        404
    );
    // Refused policies.
    for bad in [
        CreateHeSessionRequest {
            bound: Some(49),
            ..session("b1")
        },
        CreateHeSessionRequest {
            slots: Some(0),
            ..session("b2")
        },
        CreateHeSessionRequest {
            inputs: Some("range:0".into()),
            ..session("b3")
        },
        CreateHeSessionRequest {
            op: Some(HeOp::Weighted),
            ..session("b4")
        },
        CreateHeSessionRequest {
            weights: Some(vec![1]),
            ..session("b5")
        },
        CreateHeSessionRequest {
            inputs: Some("range:40".into()),
            slots: Some(256),
            ..session("b6")
        },
        CreateHeSessionRequest {
            inputs: Some("none".into()),
            ..session("b7")
        },
        CreateHeSessionRequest {
            op: Some(HeOp::Weighted),
            weights: Some(vec![1, 0]),
            ..session("b8")
        },
        CreateHeSessionRequest {
            bound: Some(48),
            slots: Some(8),
            ..session("b9")
        },
        CreateHeSessionRequest {
            min_inputs: Some(0),
            ..session("b10")
        },
    ] {
        let err = admin.he_create(&bad).await.unwrap_err();
        assert_eq!(status_of(&err), 400, "{}: {err}", bad.name);
    }
    // Past the bound: 9 + 15 + 15 = 39 >= 2^5.
    for _ in 0..2 {
        admin.he_submit("r", &[15], None).await.unwrap();
    }
    admin.he_close("r").await.unwrap();
    let err = admin.he_result("r").await.unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    assert!(
        err.to_string().contains("beyond the session's bound"),
        "{err}"
    );
    let t = admin.he_transcript("r").await.unwrap();
    assert_eq!(t.progress.status, HeStatus::Closed);
    verify_transcript(&t, None).unwrap();
    // An altered transcript: an input dropped, a ciphertext swapped, the
    // aggregate or the count changed, another public key pinned.
    let mut dropped = t.clone();
    dropped.inputs.pop();
    assert!(verify_transcript(&dropped, None).is_err());
    let mut swapped = t.clone();
    swapped.inputs[1].ciphertext = other.ciphertext.clone();
    assert!(matches!(
        verify_transcript(&swapped, None),
        Err(TranscriptError::Input { index: 1, .. })
    ));
    let mut renamed = t.clone();
    renamed.inputs[0].submitter = "eve".into();
    assert!(verify_transcript(&renamed, None).is_err());
    let mut counted = t.clone();
    counted.progress.count += 1;
    assert!(verify_transcript(&counted, None).is_err());
    assert_eq!(
        verify_transcript(&t, Some(&[1; 32])),
        Err(TranscriptError::PublicKey)
    );
    // The policy changed (a wider bound, a submitter list): the record no
    // longer matches its id, which every proof and share binds.
    let mut widened = t.clone();
    widened.session.bound = 16;
    assert_eq!(
        verify_transcript(&widened, None),
        Err(TranscriptError::Record)
    );
    let mut listed = t.clone();
    listed.session.submitters = Some(vec!["admin".into()]);
    assert_eq!(
        verify_transcript(&listed, None),
        Err(TranscriptError::Record)
    );
    c.shutdown().await;
}

/// A member that sends a bad decryption share is named and left out, and
/// the result still decrypts from the others; an altered share or value in
/// the transcript is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_decryption_share_is_named_and_the_result_still_decrypts() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    admin
        .he_create(&CreateHeSessionRequest {
            op: Some(HeOp::Weighted),
            weights: Some(vec![1, 2, 3]),
            min_inputs: Some(3),
            ..session("w")
        })
        .await
        .unwrap();
    for v in [5u64, 6] {
        admin.he_submit("w", &[v], None).await.unwrap();
    }
    // Fewer inputs than the session's minimum: it does not close.
    let err = admin.he_close("w").await.unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    assert!(err.to_string().contains("at least 3"), "{err}");
    admin.he_submit("w", &[7], None).await.unwrap();
    // An input that does not state its index, or states another: refused
    // (the leader's order cannot pick an input's weight).
    let me = admin.identity().name().to_string();
    let info = admin.he_session("w").await.unwrap();
    let mut unindexed = encrypt_input(&info, &me, &[1]).unwrap();
    unindexed.index = None;
    let err = admin.he_submit_raw("w", &unindexed).await.unwrap_err();
    assert_eq!(status_of(&err), 400, "{err}");
    let mut elsewhere = encrypt_input(&info, &me, &[1]).unwrap();
    elsewhere.index = Some(0);
    let err = admin.he_submit_raw("w", &elsewhere).await.unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    // Past the weights' list: refused.
    let err = admin.he_submit("w", &[1], None).await.unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    admin.he_close("w").await.unwrap();
    // Node 2 (the first member node 1 asks after itself) lies.
    c.keys(n(2))
        .unwrap()
        .faults()
        .bad_decryption_share
        .store(true, Ordering::Relaxed);
    let r = admin.he_result("w").await.unwrap();
    assert_eq!(r.values, vec![5 + 12 + 21]);
    let result = r.transcript.progress.result.clone().unwrap();
    let signers: Vec<u16> = result
        .shares
        .iter()
        .map(|s| u16::from_be_bytes([s.0[0], s.0[1]]))
        .collect();
    assert_eq!(signers, vec![1, 3], "node 2's bad share is left out");
    assert_eq!(result.shares.len(), 2);
    verify_transcript(&r.transcript, None).unwrap();
    common::wait_for_audit(&admin, "he.blame of node 2", |e| {
        e["event"]["action"] == "he.blame" && e["event"]["target"] == "w"
    })
    .await;
    let mut wrong = r.transcript.clone();
    wrong.progress.result.as_mut().unwrap().values = vec![39];
    assert!(matches!(
        verify_transcript(&wrong, None),
        Err(TranscriptError::Result(_))
    ));
    let mut forged = r.transcript.clone();
    forged.progress.result.as_mut().unwrap().shares[1].0[40] ^= 1;
    assert!(verify_transcript(&forged, None).is_err());
    c.shutdown().await;
}

/// Reshare 2-of-3 → 3-of-5 in the middle of a session (public key and
/// inputs unchanged, inputs keep coming), then decrypt with the new
/// generation's shares, the old-only member stopped; an old member asked
/// for a share of the new generation has none to give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshare_mid_session_then_decrypt_with_new_members_only() {
    let (_dir, mut c) = cluster(6, 2, 0).await;
    let admin = Client::new(&c.url_of(n(4)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let info = admin
        .he_create(&CreateHeSessionRequest {
            threshold: Some(2),
            members: Some(ns(&[1, 2, 3])),
            ..session("vote")
        })
        .await
        .unwrap();
    for v in [1u64, 1, 0] {
        admin.he_submit("vote", &[v], None).await.unwrap();
    }
    let new = ns(&[2, 3, 4, 5, 6]);
    // Without the operators' approval, no new threshold or member set.
    let err = admin.he_reshare("vote", 3, &new).await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    allow_reshare(&c, &admin, "he.vote", 3, &new).await;
    let k = admin.he_reshare("vote", 3, &new).await.unwrap();
    assert_eq!((k.threshold, k.epoch), (3, 2));
    assert_eq!(k.public_key.0, info.public_key.0.to_vec());
    let after = admin.he_session("vote").await.unwrap();
    assert_eq!((after.threshold, after.members.clone()), (3, new.clone()));
    admin.he_submit("vote", &[1], None).await.unwrap();
    admin.he_close("vote").await.unwrap();
    // Node 1 held a share of generation 1 only: asked for generation 2 it
    // has nothing to give.
    let now = admin.he_session("vote").await.unwrap();
    let request = common::client_request(
        &c.url_of(n(4)),
        &c.admin,
        "POST",
        "/v1/he/sessions/vote/result",
        Some(serde_json::json!({"count": now.count, "inputs_hash": now.inputs_hash.to_string()})),
        common::now_s(),
    );
    let ask = PeerMessage::HeDecrypt {
        session: "vote".into(),
        epoch: 2,
        run: keyquorum_wire::Hex32([7; 32]),
        request,
    };
    let err = c
        .node(n(1))
        .unwrap()
        .handle_peer(n(4), ask)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("holds no share"), "{err}");
    // Node 1 (old generation only) and node 2 down (Raft keeps 4 of 6
    // voters): the new generation's shares of 3, 4, 5 or 6 decrypt.
    for id in [1, 2] {
        c.stop_node(n(id)).await;
    }
    let r = admin.he_result("vote").await.unwrap();
    assert_eq!(r.values, vec![3]);
    let result = r.transcript.progress.result.clone().unwrap();
    assert_eq!(result.epoch, 2);
    assert_eq!(result.shares.len(), 3);
    verify_transcript(&r.transcript, Some(&info.public_key.0)).unwrap();
    c.shutdown().await;
}

/// 7 nodes, t = 4, range proofs over two slots, one input per client;
/// n − t = 3 members killed before decryption; `count` needs no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_nodes_threshold_four_with_three_down() {
    let (_dir, mut c) = cluster(7, 4, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let info = admin
        .he_create(&CreateHeSessionRequest {
            slots: Some(2),
            inputs: Some("range:8".into()),
            bound: Some(16),
            one_per_client: true,
            ..session("hist")
        })
        .await
        .unwrap();
    assert_eq!(info.threshold, 4);
    let mut want = [0u64; 2];
    for i in 0..5u64 {
        let key = new_client(&admin, &format!("h{i}"), false, false, &[]).await;
        let via = Client::new(
            &c.url_of(n((i % 7) as u16 + 1)),
            &key,
            c.ca_pem().as_bytes(),
        )
        .unwrap();
        via.he_submit("hist", &[i * 50, 255 - i], None)
            .await
            .unwrap();
        want[0] += i * 50;
        want[1] += 255 - i;
        // One input per client.
        let err = via.he_submit("hist", &[1, 1], None).await.unwrap_err();
        assert_eq!(status_of(&err), 409, "{err}");
    }
    admin.he_close("hist").await.unwrap();
    for id in [5, 6, 7] {
        c.stop_node(n(id)).await;
    }
    let r = admin.he_result("hist").await.unwrap();
    assert_eq!(r.values, want.to_vec());
    verify_transcript(&r.transcript, Some(&info.public_key.0)).unwrap();
    // A count.
    admin
        .he_create(&CreateHeSessionRequest {
            op: Some(HeOp::Count),
            members: Some(ns(&[1, 2, 3, 4])),
            ..session("n")
        })
        .await
        .unwrap();
    admin.he_submit("n", &[123], None).await.unwrap();
    admin.he_close("n").await.unwrap();
    let counted = admin.he_result("n").await.unwrap();
    assert_eq!(counted.values, vec![1]);
    let shares = &counted.transcript.progress.result.as_ref().unwrap().shares;
    assert_eq!(shares.len(), 4);
    verify_transcript(&counted.transcript, None).unwrap();
    // A made-up count: the members' attestations bind the real one.
    let mut inflated = counted.transcript.clone();
    inflated.progress.result.as_mut().unwrap().values = vec![2];
    assert!(verify_transcript(&inflated, None).is_err());
    // The input dropped, and count, hash chain and aggregate made to fit:
    // still refused, as the members' attestations bind the inputs they saw.
    let mut dropped = counted.transcript.clone();
    dropped.inputs.clear();
    dropped.progress.count = 0;
    dropped.progress.inputs_hash = keyquorum_wire::Hex32([0; 32]);
    dropped.progress.aggregate = Hex(vec![0; 64]);
    dropped.progress.result.as_mut().unwrap().values = vec![0];
    assert!(matches!(
        verify_transcript(&dropped, None),
        Err(TranscriptError::Result(_))
    ));
    c.shutdown().await;
}

/// A hostile coordinator (a member) asking for decryption shares: refused
/// without a client's request for this session's result, for an open
/// session, by a client that may not read it, or with a request sent to
/// another node; the members' shares are only ever of the committed
/// aggregate, so no single input can be decrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_get_decryption_shares_no_client_asked_for() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    admin.he_create(&session("s")).await.unwrap();
    admin.he_submit("s", &[42], None).await.unwrap();
    let mallory = new_client(&admin, "mallory", false, false, &["*"]).await;
    let base = c.url_of(n(2));
    let info = admin.he_session("s").await.unwrap();
    let stated = serde_json::json!({"count": 1, "inputs_hash": info.inputs_hash.to_string()});
    let req = |who: &keyquorum_client::ClientKey, path: &str| {
        common::client_request(
            &base,
            who,
            "POST",
            path,
            Some(stated.clone()),
            common::now_s(),
        )
    };
    let ask = |request| PeerMessage::HeDecrypt {
        session: "s".into(),
        epoch: 1,
        run: keyquorum_wire::Hex32([1; 32]),
        request,
    };
    let n3 = c.node(n(3)).unwrap();
    // Open: a single input's "sum" is that input. Refused.
    let err = n3
        .handle_peer(n(2), ask(req(&c.admin, "/v1/he/sessions/s/result")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not closed"), "{err}");
    admin.he_close("s").await.unwrap();
    common::poll(
        "node 3 to see the close",
        std::time::Duration::from_secs(10),
        || async { n3.registry(|r| r.he.sessions["s"].progress.status == HeStatus::Closed) },
    )
    .await;
    // A request for something else (a signature, another session).
    let sign = common::sign_request(&base, &c.admin, "k", b"m");
    let err = n3.handle_peer(n(2), ask(sign)).await.unwrap_err();
    assert!(err.to_string().contains("not the result of s"), "{err}");
    let err = n3
        .handle_peer(n(2), ask(req(&c.admin, "/v1/he/sessions/t/result")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not the result of s"), "{err}");
    // A client that may not read it.
    let err = n3
        .handle_peer(n(2), ask(req(&mallory, "/v1/he/sessions/s/result")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("may not read"), "{err}");
    // The admin's request, but sent to node 2 and relayed by node 1.
    let err = n3
        .handle_peer(n(1), ask(req(&c.admin, "/v1/he/sessions/s/result")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not to node 1"), "{err}");
    // A request that states other inputs than this replica holds (a
    // leader showing this member a shorter log would make it so).
    let other = common::client_request(
        &base,
        &c.admin,
        "POST",
        "/v1/he/sessions/s/result",
        Some(serde_json::json!({"count": 2, "inputs_hash": info.inputs_hash.to_string()})),
        common::now_s(),
    );
    let err = n3.handle_peer(n(2), ask(other)).await.unwrap_err();
    assert!(err.to_string().contains("not the 2"), "{err}");
    // The same count with another hash chain (other inputs): refused too.
    let forked = common::client_request(
        &base,
        &c.admin,
        "POST",
        "/v1/he/sessions/s/result",
        Some(serde_json::json!({"count": 1, "inputs_hash": "11".repeat(32)})),
        common::now_s(),
    );
    let err = n3.handle_peer(n(2), ask(forked)).await.unwrap_err();
    assert!(err.to_string().contains("not the 1"), "{err}");
    // The real thing: a share of the committed aggregate, once per
    // attempt of one operation.
    let ok = req(&c.admin, "/v1/he/sessions/s/result");
    let reply = n3.handle_peer(n(2), ask(ok.clone())).await.unwrap();
    assert!(matches!(reply, PeerMessage::HeShare { .. }));
    let err = n3.handle_peer(n(2), ask(ok)).await.unwrap_err();
    assert!(
        err.to_string().contains("already") || err.to_string().contains("attempt"),
        "{err}"
    );
    // Mallory's own proofs cannot pass off the admin's input as hers:
    // its knowledge proof is bound to its submitter.
    let t = admin.he_transcript("s").await.unwrap();
    let ctx = Context::new(t.session.id.0, &t.session.public_key.0, "mallory").unwrap();
    let ct = keyquorum_core::he::Ciphertext::from_bytes(&t.inputs[0].ciphertext.0, 1).unwrap();
    assert!(InputPolicy::Knowledge
        .verify(&ctx, &ct, &t.inputs[0].proof.0)
        .is_err());
    c.shutdown().await;
}
