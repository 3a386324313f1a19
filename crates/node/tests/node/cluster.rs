#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! End to end on in-process clusters over loopback (OS-chosen ports,
//! readiness polled).

use crate::common;

use common::{check_sig, cluster, n, ns};
use keyquorum_client::Client;
use keyquorum_wire::api::{CreateKeyRequest, SuiteName};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_dkg_and_sign_both_suites() {
    let (_dir, c) = cluster(3, 2, 8).await;
    for id in (1..=3).map(n) {
        let client = Client::new(&c.url_of(id), &c.admin, c.ca_pem().as_bytes()).unwrap();
        let suite = if id.get() % 2 == 1 {
            SuiteName::Ed25519
        } else {
            SuiteName::Secp256k1Tr
        };
        let name = format!("k{id}");
        let key = client
            .create_key(&CreateKeyRequest {
                name: name.clone(),
                suite,
                threshold: None,
                members: None,
                min_members: None,
            })
            .await
            .unwrap();
        assert_eq!(key.threshold, 2);
        assert_eq!(key.members, ns(&[1, 2, 3]));
        assert_eq!(key.public_key.0.len(), 32);
        for i in 0..5u8 {
            // Sign through every node in turn.
            let via = Client::new(
                &c.url_of(n(u16::from(i % 3) + 1)),
                &c.admin,
                c.ca_pem().as_bytes(),
            )
            .unwrap();
            let msg = [b'm', i];
            let sig = via.sign(&name, &msg).await.unwrap();
            assert_eq!(sig.signers.len(), 2);
            check_sig(&key, &msg, &sig.signature.0);
            assert!(via.verify(&name, &msg, &sig.signature.0).await.unwrap());
            assert!(!via.verify(&name, b"other", &sig.signature.0).await.unwrap());
        }
    }
    let client = Client::new(&c.url(), &c.admin, c.ca_pem().as_bytes()).unwrap();
    assert_eq!(client.list_keys().await.unwrap().keys.len(), 3);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_nodes_threshold_four() {
    let (_dir, c) = cluster(7, 4, 4).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    for (name, suite) in [("ed7", SuiteName::Ed25519), ("tr7", SuiteName::Secp256k1Tr)] {
        let key = admin
            .create_key(&CreateKeyRequest {
                name: name.into(),
                suite,
                threshold: None,
                members: None,
                min_members: None,
            })
            .await
            .unwrap();
        assert_eq!(key.threshold, 4);
        assert_eq!(key.members, ns(&[1, 2, 3, 4, 5, 6, 7]));
        let check = check_sig;
        for id in (1..=7).map(n) {
            let via = Client::new(&c.url_of(id), &c.admin, c.ca_pem().as_bytes()).unwrap();
            let msg = [b'7', u8::try_from(id.get()).unwrap()];
            let s = via.sign(name, &msg).await.unwrap();
            assert_eq!(s.signers.len(), 4);
            check(&key, &msg, &s.signature.0);
        }
        // Refresh, then reshare 4-of-7 → 5-of-{3..7}: same public key.
        let refreshed = admin.refresh(name).await.unwrap();
        assert_eq!(refreshed.public_key, key.public_key);
        common::allow_reshare(&c, &admin, name, 5, &ns(&[3, 4, 5, 6, 7])).await;
        let reshared = admin.reshare(name, 5, &ns(&[3, 4, 5, 6, 7])).await.unwrap();
        assert_eq!(reshared.public_key, key.public_key);
        assert_eq!(reshared.epoch, key.epoch + 2);
        let via = Client::new(&c.url_of(n(2)), &c.admin, c.ca_pem().as_bytes()).unwrap();
        let s = via.sign(name, b"five of five").await.unwrap();
        assert_eq!(s.signers.len(), 5);
        assert!(s.signers.iter().all(|m| *m >= n(3)));
        check(&reshared, b"five of five", &s.signature.0);
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_batches_and_each_gets_its_own_answer() {
    use std::sync::atomic::Ordering;

    use keyquorum_wire::control::{AuditEvent, Authorized, ClusterCommand, CommandResponse};

    let (_dir, c) = cluster(3, 2, 0).await;
    // Each write: a node's signed statement of one audit event.
    let put = |node: &keyquorum_node::Node, tag: String| -> Authorized {
        node.statement(ClusterCommand::Audit {
            events: vec![AuditEvent {
                time_ms: 0,
                node: node.id(),
                actor: "t".into(),
                action: tag,
                target: None,
                outcome: "ok".into(),
            }],
        })
    };
    // Through the leader (local Raft writes) and through a follower
    // (forwards): 200 writes at once, and a repeat of the first.
    let leader = c.node(n(1)).unwrap().leader().unwrap();
    let follower = (1..=3).map(n).find(|i| *i != leader).unwrap();
    for id in [leader, follower] {
        let node = c.node(id).unwrap();
        let before = (
            node.metrics().batched_writes.load(Ordering::Relaxed),
            node.metrics().write_batches.load(Ordering::Relaxed),
        );
        let mut commands: Vec<Authorized> = (0..200u8)
            .map(|i| put(&node, format!("batch.n{id}-{i}")))
            .collect();
        commands.push(commands[0].clone());
        let answers =
            futures::future::join_all(commands.into_iter().map(|cmd| node.propose_batched(cmd)))
                .await;
        // Concurrent writes have no order among themselves: of the two
        // copies of one signed statement exactly one lands, the other is
        // refused as a replay.
        let answers: Vec<CommandResponse> = answers.into_iter().map(Result::unwrap).collect();
        for (i, a) in answers.iter().enumerate().take(200).skip(1) {
            assert_eq!(*a, CommandResponse::Ok, "write {i} through node {id}");
        }
        let refused = |a: &CommandResponse| matches!(a, CommandResponse::Rejected { reason } if reason.contains("replayed"));
        let (first, repeat) = (&answers[0], &answers[200]);
        assert!(
            (*first == CommandResponse::Ok && refused(repeat))
                || (refused(first) && *repeat == CommandResponse::Ok),
            "the two writes of n{id}-0 through node {id}: {first:?}, {repeat:?}"
        );
        let writes = node.metrics().batched_writes.load(Ordering::Relaxed) - before.0;
        let batches = node.metrics().write_batches.load(Ordering::Relaxed) - before.1;
        assert_eq!(writes, 201);
        // All queue before the first batch leaves: a handful of commits
        // (at most one per batch in flight, then full batches), not 201.
        assert!(
            batches <= 10,
            "{batches} commits for 201 writes via node {id}"
        );
    }
    // Every node has every entry, once. (Each node's audit writer commits
    // its entries on its own schedule, and a replica writes an entry's
    // record just after applying it: polled, then counted exactly.)
    for id in (1..=3).map(n) {
        let node = c.node(id).unwrap();
        let count = || {
            node.audit_entries(0, usize::MAX)
                .unwrap()
                .iter()
                .filter(|e| e.event.action.starts_with("batch."))
                .count()
        };
        common::poll(
            &format!("node {id} to hold every batch entry"),
            std::time::Duration::from_secs(20),
            || async { count() >= 400 },
        )
        .await;
        assert_eq!(count(), 400, "node {id}");
    }
}

/// Concurrent requests' signature shares to the same signer leave the
/// coordinator together (`cluster::coalesce`), and each request still gets
/// its own valid signature. Node 1's outgoing peer messages are held for
/// 1.5 s while 24 requests reach it, so its calls to each other signer
/// queue behind the batch allowed on its way; asserted: some
/// batch carried two or more shares, and every request was signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_signature_shares_to_one_signer_travel_in_batches() {
    let (_dir, c) = cluster(3, 2, 64).await;
    let client = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let key = client
        .create_key(&common::create("b", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let (batches, carried) =
        common::held_concurrent_signs(&c, &key, 1, 24, std::time::Duration::from_millis(1500))
            .await;
    assert!(batches >= 1, "no batch for 24 concurrent requests");
    // Each request's one share for another signer went at most once.
    assert!(carried <= 24, "{batches} batches carried {carried} shares");
    c.shutdown().await;
}

/// The audit log lives beside the replicated state, not in it: a member
/// that the leader's compacted log left behind installs a snapshot that
/// carries only the log's head, fetches the entries before it from the
/// other members (checked against that head), and then holds, verifies and
/// proves the whole log like the others. Proofs check with the client's
/// verifier against the signer's identity key, and a proof altered in any
/// part does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_behind_a_snapshot_fetches_verifies_and_proves_the_whole_audit_log() {
    use keyquorum_client::audit::{verify_proof, ProofError};
    use std::time::Duration;
    const EVERY: u64 = 20;
    let (_dir, mut c) = common::cluster_with(3, 2, 0, EVERY).await;
    let (leader, behind, _admin) = common::leave_member_behind(&mut c, EVERY).await;
    let lead = c.node(leader).unwrap();
    // The snapshot form of the state holds the log's head, no entry.
    let state = lead.registry(|r| serde_json::to_string(r).unwrap());
    assert!(state.contains("\"audit_log\""));
    assert!(
        !state.contains("client.create"),
        "no audit entry in the state"
    );

    c.restart_node(behind).await.unwrap();
    let member = c.node(behind).unwrap();
    common::poll(
        "the member to hold the whole audit log",
        Duration::from_secs(60),
        || async {
            let len = lead.registry(|r| r.audit.len());
            member.registry(|r| r.audit.len()) >= len
                && member.audit_entries(0, usize::MAX).unwrap().len() as u64 >= len
        },
    )
    .await;
    let theirs = lead.audit_entries(0, usize::MAX).unwrap();
    let ours = member.audit_entries(0, usize::MAX).unwrap();
    let common_len = theirs.len().min(ours.len());
    assert!(common_len > 20, "{} {}", theirs.len(), ours.len());
    // It got there by a snapshot (its log begins after entry 0).
    let snap = member.raft().metrics().borrow().snapshot;
    assert!(snap.is_some_and(|s| s.index >= EVERY), "{snap:?}");
    assert_eq!(ours[..common_len], theirs[..common_len]);

    // It verifies the whole log, and proves an early entry.
    let via_member = Client::new(&c.url_of(behind), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let v = via_member.audit_verify().await.unwrap();
    assert_eq!(v["valid"], true, "{v}");
    // Every member signs its own head about a second after the log moves.
    common::poll(
        "two members' signed heads over the fetched entries",
        Duration::from_secs(20),
        || async {
            via_member
                .audit_proof(3)
                .await
                .is_ok_and(|p| p.heads.len() >= 2)
        },
    )
    .await;
    let proof = via_member.audit_proof(3).await.unwrap();
    assert_eq!(proof.entry, theirs[3]);
    let keys: Vec<[u8; 32]> = lead
        .members()
        .into_iter()
        .map(|(_, info, _)| info.identity.0)
        .collect();
    for h in &proof.heads {
        assert!(!h.path.is_empty());
        let known = lead.node_info(h.head.signer).unwrap().identity;
        assert_eq!(h.signer_identity, known);
    }
    assert!(verify_proof(&proof, &keys, 2).unwrap() >= 2);

    // Altered anywhere, or checked against too few of the keys, it fails.
    let mut altered = proof.clone();
    altered.entry.event.outcome = "denied".into();
    assert_eq!(verify_proof(&altered, &keys, 1), Err(ProofError::Entry));
    let mut altered = proof.clone();
    for h in &mut altered.heads {
        h.path[0].0[0] ^= 1;
    }
    assert_eq!(
        verify_proof(&altered, &keys, 1),
        Err(ProofError::TooFew { got: 0, need: 1 })
    );
    let mut altered = proof.clone();
    altered.entry = theirs[4].clone();
    assert!(verify_proof(&altered, &keys, 1).is_err());
    let mut altered = proof.clone();
    for h in &mut altered.heads {
        h.head.root.as_mut().unwrap().0[0] ^= 1;
    }
    assert!(verify_proof(&altered, &keys, 1).is_err());
    let one = [proof.heads[0].signer_identity.0];
    assert_eq!(
        verify_proof(&proof, &one, 2),
        Err(ProofError::TooFew { got: 1, need: 2 })
    );
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
        .verifying_key()
        .to_bytes();
    assert_eq!(
        verify_proof(&proof, &[stranger], 1),
        Err(ProofError::TooFew { got: 0, need: 1 })
    );
    // An entry past the latest head, and one past the log, are clear errors.
    let err = via_member.audit_proof(u64::MAX / 2).await.unwrap_err();
    assert_eq!(common::status_of(&err), 404, "{err}");
    c.shutdown().await;
}

/// What operators watch (issue #23 item 6): `/readyz` is 200 on members
/// that caught up and 503 `not_member` on a node not yet joined; `/metrics`
/// reports Raft (leader changes, the commit-latency histogram, voters),
/// readiness, errors by kind and protocol failures by action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_metrics_report_raft_errors_and_failures() {
    let (_dir, mut c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let http = keyquorum_client::http_client(c.ca_pem().as_bytes()).unwrap();
    admin
        .create_key(&common::create("k", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    assert!(admin.key("missing").await.is_err());
    for id in 1..=3u16 {
        let url = c.url_of(n(id));
        common::poll(
            "every member ready",
            std::time::Duration::from_secs(10),
            || async {
                let r = http.get(format!("{url}/readyz")).send().await.unwrap();
                r.status() == 200
            },
        )
        .await;
        let v: serde_json::Value = http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["status"], "ready");
        assert!(v["leader_index"].as_u64().unwrap() <= v["applied"].as_u64().unwrap());
    }
    let leader = c.node(n(1)).unwrap().leader().unwrap();
    let text = http
        .get(format!("{}/metrics", c.url_of(leader)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |line: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let node = format!("{{node=\"{leader}\"");
    assert!(value(&format!("keyquorum_raft_leader_changes_total{node}")) >= 1.0);
    assert!(value(&format!("keyquorum_raft_commit_seconds_count{node}")) >= 1.0);
    assert!(
        value(&format!(
            "keyquorum_raft_commit_seconds_bucket{node},le=\"+Inf\"}}"
        )) >= 1.0
    );
    assert_eq!(value(&format!("keyquorum_raft_voters{node}")), 3.0);
    assert!(value(&format!("keyquorum_raft_millis_since_quorum_ack{node}")) >= 0.0);
    assert_eq!(value(&format!("keyquorum_ready{node}")), 1.0);
    // The failed read, on the node that answered it.
    let text1 = http
        .get(format!("{}/metrics", c.url_of(n(1))))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text1.contains("keyquorum_request_errors_total{node=\"1\",kind=\"not_found\"} 1"),
        "{text1}"
    );
    assert!(text1.contains("# TYPE keyquorum_protocol_failures_total counter"));
    // Every series the Grafana dashboard (deploy/grafana) queries is one
    // the node exports.
    let dashboard: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../deploy/grafana/keyquorum.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("keyquorum_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // A series, or a counter declared with none yet.
                assert!(
                    text.contains(&format!("\n{name}{{"))
                        || text.contains(&format!("# TYPE {name} counter\n")),
                    "the dashboard queries {name}, which /metrics does not export"
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 20, "{queried}");

    // A node started but not joined is live and not ready.
    let req = c.spawn_node().await.unwrap();
    let url = c.url_of(req.id);
    let http = keyquorum_client::http_client(c.ca_pem().as_bytes()).unwrap();
    let r = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        ["not_member", "no_leader"].contains(&v["status"].as_str().unwrap()),
        "{v}"
    );
    c.shutdown().await;
}
