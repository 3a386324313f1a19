#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! The malicious-member suite (issue #17): one member, the coordinator or
//! the leader runs hostile code (the `fault-injection` hooks, or peer
//! messages and log entries written by hand) and tries to release, commit
//! or destroy what no client asked for. Every attempt is refused by the
//! honest nodes and changes none of their keys, shares or registry.

mod common;

use std::sync::atomic::Ordering;

use common::{
    cluster, create, n, nonce, ns, package, sign_and_check, sign_share, status_of, vault_count,
};
use keyquorum_client::Client;
use keyquorum_core::codec::Decode;
use keyquorum_core::{Ed25519, GroupKey};
use keyquorum_node::dev::LocalCluster;
use keyquorum_node::Node;
use keyquorum_store::Table;
use keyquorum_wire::api::{KeyInfo, SuiteName};
use keyquorum_wire::peer::{ClientRequest, NonceCommitment, PeerMessage};
use keyquorum_wire::{Hex, Hex32, NodeId};

/// A refresh coordinator that says abort to the members after they stored
/// and endorsed their new shares, and then commits the run anyway (with
/// their endorsements), would destroy the key if an abort rolled the new
/// shares back: the committed generation would have no shares and the old
/// one is erased once it is superseded. An abort never rolls back an
/// endorsed share, so the committed generation signs, under the same
/// public key, through every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_cannot_destroy_a_key_by_aborting_after_the_members_endorsed() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let key = admin
        .create_key(&create("z", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    sign_and_check(&admin, &key, b"before").await;
    let faults = c.keys(n(1)).unwrap();
    faults
        .faults()
        .abort_then_commit
        .store(true, Ordering::Relaxed);
    let next = admin.refresh("z").await.unwrap();
    faults
        .faults()
        .abort_then_commit
        .store(false, Ordering::Relaxed);
    assert_eq!(next.epoch, key.epoch + 1);
    assert_eq!(next.public_key, key.public_key);
    for via in [1u8, 2, 3] {
        let client =
            Client::new(&c.url_of(n(via.into())), &c.admin, c.ca_pem().as_bytes()).unwrap();
        let signers = sign_and_check(&client, &next, &[b'z', via]).await;
        assert_eq!(signers.len(), 2, "via {via}: {signers:?}");
    }
    for id in ns(&[1, 2, 3]) {
        // Each member holds exactly its share of the new generation.
        assert_eq!(
            vault_count(&c, id, Table::Shares, "z") + vault_count(&c, id, Table::Pending, "z"),
            1,
            "node {id}"
        );
    }
    c.shutdown().await;
}

/// A coordinator that commits another group key than the one the members
/// computed (here: an existing key's, whose secret it might know) gets it
/// refused on apply by every replica: the record is not endorsed by
/// threshold-many members (issue #17). The members keep their new shares
/// pending and never use them. (Were such a record committed, each member
/// would still refuse to promote a share under a group key it did not
/// compute: `keys::shares`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_key_the_members_did_not_compute_is_never_used() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let a = admin
        .create_key(&create("a", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    // Node 1 coordinates the next DKG and commits key a's group key for it.
    let commit_group_key_of = |key: Option<&str>| {
        *c.keys(n(1))
            .unwrap()
            .faults()
            .commit_group_key_of
            .lock()
            .unwrap() = key.map(str::to_string);
    };
    commit_group_key_of(Some("a"));
    let err = admin
        .create_key(&create("b", SuiteName::Ed25519, 2, None))
        .await
        .unwrap_err();
    commit_group_key_of(None);
    assert!(
        err.to_string().contains("endorsed by 0 of its members"),
        "{err}"
    );

    for via in [1, 2, 3] {
        let client = Client::new(&c.url_of(n(via)), &c.admin, c.ca_pem().as_bytes()).unwrap();
        let err = client.sign("b", b"under a forged key").await.unwrap_err();
        assert_eq!(status_of(&err), 404, "via {via}: {err}");
    }
    for id in ns(&[1, 2, 3]) {
        assert!(
            c.node(id)
                .unwrap()
                .registry(|r| !r.keys.records.contains_key("b")),
            "node {id}"
        );
        assert_eq!(vault_count(&c, id, Table::Shares, "b"), 0, "node {id}");
        assert_eq!(vault_count(&c, id, Table::Pending, "b"), 1, "node {id}");
        assert_eq!(
            vault_count(&c, id, Table::PendingGroups, "b"),
            1,
            "node {id}"
        );
    }
    // The key whose group key was borrowed is untouched and signs.
    sign_and_check(&admin, &a, b"a still signs").await;
    // An honest run afterwards promotes and erases as before.
    let d = admin
        .create_key(&create("d", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let signers = sign_and_check(&admin, &d, b"d signs").await;
    for id in ns(&[1, 2, 3]) {
        // The digest leaves with the pending share it belongs to: at the
        // first use (the signers) or later (the others).
        let pending = vault_count(&c, id, Table::Pending, "d");
        assert_eq!(
            vault_count(&c, id, Table::PendingGroups, "d"),
            pending,
            "node {id}"
        );
        if signers.contains(&id) {
            assert_eq!(pending, 0, "node {id}");
            assert_eq!(vault_count(&c, id, Table::Shares, "d"), 1, "node {id}");
        }
    }
    c.shutdown().await;
}

/// A hostile member (node 1, speaking as itself on the peer channel) asks an
/// honest signer for signature shares no client asked for. Every attempt is
/// refused before a nonce is spent; the one request a client did sign drives
/// its operation's attempts and nothing more; the key still signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_get_signature_shares_no_client_asked_for() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let key: KeyInfo = admin
        .create_key(&create("h", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    admin
        .create_key(&create("other", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let app = common::new_client(&admin, "app", false, false, &["other"]).await;
    let gone = common::new_client(&admin, "gone", false, false, &["*"]).await;
    admin.revoke_client("gone").await.unwrap();
    let record = c
        .node(n(1))
        .unwrap()
        .registry(|r| r.keys.records.get("h").cloned())
        .unwrap();
    let group = GroupKey::<Ed25519>::from_bytes(&record.group_key.0).unwrap();
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

/// DESIGN.md §4 item 3: a member, or the leader itself, proposes registry
/// changes no client asked for, and re-appends a validly signed command:
/// every honest replica refuses them on apply, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_or_the_leader_cannot_commit_what_no_one_authorized() {
    use keyquorum_wire::control::{
        AuditEvent, Authorized, ClientRecord, ClusterCommand, CommandResponse, Grant, KeysCommand,
        Proposal, APPLY_RULES,
    };
    use keyquorum_wire::Hex32;

    let (_dir, c) = cluster(3, 2, 0).await;
    let base = c.url_of(n(1));
    let admin = Client::new(&base, &c.admin, c.ca_pem().as_bytes()).unwrap();
    admin
        .create_key(&create("k", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let leader_id = c.node(n(1)).unwrap().leader().unwrap();
    let leader = c.node(leader_id).unwrap();
    let others: Vec<NodeId> = (1..=3).map(n).filter(|i| *i != leader_id).collect();
    let (m, third) = (c.node(others[0]).unwrap(), c.node(others[1]).unwrap());
    let record = leader.registry(|r| r.keys.records["k"].clone());
    let before = |node: &Node| {
        node.registry(|r| {
            serde_json::to_string(&(&r.clients, &r.keys.records, &r.keys.exports, &r.operators))
                .unwrap()
        })
    };
    let was = before(&leader);

    let mallory = keyquorum_client::ClientKey::generate("mallory", &mut rand_core::OsRng);
    let put_mallory = ClusterCommand::PutClient {
        record: ClientRecord {
            grant: Grant {
                name: "mallory".into(),
                admin: true,
                operator: true,
                sign_keys: vec!["*".into()],
            },
            public_key: Hex32(mallory.public_key()),
            expires_ms: None,
            revoked: false,
        },
    };
    let mut rogue = record.clone();
    rogue.epoch += 1;
    rogue.members = vec![m.id(), leader_id];
    let overwrite = KeysCommand::PutKey {
        record: rogue,
        expected_epoch: Some(record.epoch),
        endorsements: vec![],
    };
    let forged_event = |node: NodeId| ClusterCommand::Audit {
        events: vec![AuditEvent {
            time_ms: 0,
            node,
            actor: "admin".into(),
            action: "forged.event".into(),
            target: None,
            outcome: "ok".into(),
        }],
    };
    let refused = |r: &CommandResponse| matches!(r, CommandResponse::Batch { responses } if responses.iter().all(|r| matches!(r, CommandResponse::Rejected { reason } if reason.contains("not authorized"))));
    let forward = |commands: Vec<Authorized>| PeerMessage::Forward { commands };

    // A follower forwards its own statements of what needs a client.
    let enrol_mallory = ClusterCommand::Init {
        operators: vec![ClientRecord {
            grant: Grant {
                name: "mallory-op".into(),
                admin: false,
                operator: true,
                sign_keys: vec![],
            },
            public_key: Hex32(mallory.public_key()),
            expires_ms: None,
            revoked: false,
        }],
        quorum: 1,
        admin: ClientRecord {
            grant: Grant {
                name: "mallory".into(),
                admin: true,
                operator: false,
                sign_keys: vec!["*".into()],
            },
            public_key: Hex32(mallory.public_key()),
            expires_ms: None,
            revoked: false,
        },
        default_threshold: None,
        nodes: vec![],
    };
    let commands: [(&str, keyquorum_wire::control::Command); 7] = [
        ("mint an admin", put_mallory.clone().into()),
        ("initialise again", enrol_mallory.clone().into()),
        (
            "approve a change as an operator",
            ClusterCommand::ApproveChange {
                id: "x".into(),
                operator: "operator".into(),
            }
            .into(),
        ),
        (
            "propose a change",
            ClusterCommand::ProposeChange {
                record: keyquorum_wire::control::ChangeRecord {
                    id: "00112233445566778899aabbccddeeff".into(),
                    change: keyquorum_wire::control::Change::SetQuorum { quorum: 1 },
                    requested_by: "admin".into(),
                    approvals: vec![],
                    needed: 1,
                    done: false,
                    created_ms: 0,
                },
            }
            .into(),
        ),
        ("overwrite a key record", overwrite.clone().into()),
        (
            "approve an export",
            KeysCommand::ApproveExport {
                id: "x".into(),
                operator: "admin".into(),
            }
            .into(),
        ),
        (
            "report another node's event",
            forged_event(third.id()).into(),
        ),
    ];
    for (what, command) in commands {
        let reply = leader
            .handle_peer(m.id(), forward(vec![m.statement(command)]))
            .await
            .unwrap();
        match reply {
            PeerMessage::ForwardReply { response, .. } => {
                assert!(refused(&response), "{what}: {response:?}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // It forwards another node's statement: the leader refuses the forward.
    let err = leader
        .handle_peer(
            m.id(),
            forward(vec![third.statement(forged_event(third.id()))]),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("statement of node"), "{err}");

    // The leader appends such commands itself.
    let append = |commands: Vec<Authorized>| {
        let leader = leader.clone();
        async move {
            leader
                .raft()
                .client_write(Proposal {
                    rules: APPLY_RULES,
                    time_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis() as u64,
                    commands,
                })
                .await
                .unwrap()
                .data
        }
    };
    let r = append(vec![
        leader.statement(put_mallory.clone()),
        leader.statement(overwrite.clone()),
        leader.statement(enrol_mallory.clone()),
    ])
    .await;
    assert!(refused(&r), "{r:?}");

    // A validly signed client request and a node statement, applied once,
    // then appended again by the leader: refused as replays.
    let bob = keyquorum_client::ClientKey::generate("bob", &mut rand_core::OsRng);
    let body = serde_json::json!({ "name": "bob", "public_key": hex::encode(bob.public_key()) });
    let request = common::client_request(
        &base,
        &c.admin,
        "POST",
        "/v1/clients",
        Some(body),
        common::now_s(),
    );
    let create_bob = Authorized {
        command: ClusterCommand::PutClient {
            record: ClientRecord {
                grant: Grant {
                    name: "bob".into(),
                    admin: false,
                    operator: false,
                    sign_keys: vec![],
                },
                public_key: Hex32(bob.public_key()),
                expires_ms: None,
                revoked: false,
            },
        }
        .into(),
        by: keyquorum_wire::control::Authority::Client { request },
    };
    let event = leader.statement(ClusterCommand::Audit {
        events: vec![AuditEvent {
            time_ms: 0,
            node: leader_id,
            actor: "t".into(),
            action: "once.only".into(),
            target: None,
            outcome: "ok".into(),
        }],
    });
    let first = append(vec![create_bob.clone(), event.clone()]).await;
    assert_eq!(
        first,
        CommandResponse::Batch {
            responses: vec![CommandResponse::Ok, CommandResponse::Ok]
        }
    );
    admin.revoke_client("bob").await.unwrap();
    let again = append(vec![create_bob, event]).await;
    match &again {
        CommandResponse::Batch { responses } => assert!(
            responses.iter().all(
                |r| matches!(r, CommandResponse::Rejected { reason } if reason.contains("replayed"))
            ),
            "{again:?}"
        ),
        other => panic!("{other:?}"),
    }

    // Every replica: no mallory, the key record unchanged, no forged
    // event, the once-only event once, bob registered once and revoked.
    for id in (1..=3).map(n) {
        let node = c.node(id).unwrap();
        node.read_barrier().await.unwrap();
        node.registry(|r| {
            assert!(!r.clients.contains_key("mallory"), "node {id}");
            assert!(r.clients["bob"].revoked, "node {id}");
            assert_eq!(r.keys.records["k"], record, "node {id}");
            assert!(r.keys.exports.is_empty(), "node {id}");
            let count = |a: &str| {
                r.audit
                    .entries
                    .iter()
                    .filter(|e| e.event.action == a)
                    .count()
            };
            assert_eq!(count("forged.event"), 0, "node {id}");
            assert_eq!(count("once.only"), 1, "node {id}");
        });
    }
    // Apart from bob, the registry is as it was.
    let mut now: serde_json::Value = serde_json::from_str(&before(&leader)).unwrap();
    now[0].as_object_mut().unwrap().remove("bob");
    assert_eq!(
        now,
        serde_json::from_str::<serde_json::Value>(&was).unwrap()
    );
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
    let key: KeyInfo = admin
        .create_key(&create("v", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let record = c
        .node(n(1))
        .unwrap()
        .registry(|r| r.keys.records.get("v").cloned())
        .unwrap();
    let group = GroupKey::<Ed25519>::from_bytes(&record.group_key.0).unwrap();
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
    operator.approve(&id).await.unwrap();
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

/// A member falsely accuses an honest dealer in a DKG (issue #17 item 5):
/// the dealer reveals the share it dealt, it checks out against its
/// commitment, the accusation is dismissed with the accuser named in the
/// audit log, and the key keeps every member without the caller having
/// consented to fewer. A member that instead refuses, blaming the dealer in
/// an error with no evidence, is the one named and left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_false_dkg_accusation_is_dismissed_and_the_accuser_named() {
    let (_dir, c) = cluster(4, 3, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let faults = c.keys(n(4)).unwrap();
    faults.faults().accuse.store(2, Ordering::Relaxed);
    let key = admin
        .create_key(&create("accused", SuiteName::Ed25519, 3, None))
        .await
        .unwrap();
    assert_eq!(key.members, ns(&[1, 2, 3, 4]), "every member kept");
    let dismissed = common::wait_for_audit(&admin, "a dismissed accusation", |e| {
        e["event"]["action"] == "dkg.accusation_dismissed"
    })
    .await;
    let outcome = dismissed["event"]["outcome"].as_str().unwrap();
    assert!(outcome.contains("accusers [4] accused [2]"), "{outcome}");
    assert_eq!(dismissed["event"]["target"], "accused", "{dismissed}");
    // The accuser took the revealed share: every 3-subset signs, node 4's
    // share included.
    for set in [[1, 2, 4], [2, 3, 4], [1, 3, 4], [1, 2, 3]] {
        let signed = sign_with(&c, &key, &set).await;
        assert!(signed, "signer set {set:?}");
    }
    faults.faults().accuse.store(0, Ordering::Relaxed);

    // An accusation by refusal: without consent to fewer members no key;
    // with it, the refuser (not the accused) is left out.
    faults.faults().accuse_by_error.store(2, Ordering::Relaxed);
    let err = admin
        .create_key(&create("refused", SuiteName::Ed25519, 3, None))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("node 4 refused, blaming [2] with no evidence"),
        "{err}"
    );
    let key = admin
        .create_key(&keyquorum_wire::api::CreateKeyRequest {
            min_members: Some(3),
            ..create("refused", SuiteName::Ed25519, 3, None)
        })
        .await
        .unwrap();
    assert_eq!(
        key.members,
        ns(&[1, 2, 3]),
        "the refuser is left out, not the accused"
    );
    sign_and_check(&admin, &key, b"without the refuser").await;
    c.shutdown().await;
}

/// Sign with exactly the signer set `set` (as node 1 coordinating): true
/// if the signature verifies under the key.
async fn sign_with(c: &LocalCluster, key: &KeyInfo, set: &[u16]) -> bool {
    let record = c
        .node(n(1))
        .unwrap()
        .registry(|r| r.keys.records.get(&key.name).cloned())
        .unwrap();
    let group = GroupKey::<Ed25519>::from_bytes(&record.group_key.0).unwrap();
    let request = common::sign_request(&c.url_of(n(1)), &c.admin, &key.name, b"pay 1000");
    let mut commitments = Vec::new();
    for id in set {
        commitments.push(nonce(&c.node(n(*id)).unwrap(), &key.name, record.epoch).await);
    }
    let refs: Vec<&NonceCommitment> = commitments.iter().collect();
    let mut coord = package(&group, b"pay 1000", &refs);
    for (i, id) in set.iter().enumerate() {
        let node = c.node(n(*id)).unwrap();
        let reply = node
            .handle_peer(
                n(1),
                sign_share(&key.name, record.epoch, &commitments[i], &coord, &request),
            )
            .await;
        let Ok(PeerMessage::SignatureShare { share }) = reply else {
            return false;
        };
        let share = keyquorum_core::sign::SignatureShare::<Ed25519>::from_bytes(&share.0).unwrap();
        if coord
            .receive(keyquorum_node::keys::pid(n(*id)), share)
            .is_err()
        {
            return false;
        }
    }
    let Ok(signature) = coord.finish() else {
        return false;
    };
    // Checked by ed25519-dalek (RFC 8032, strict), not by our code.
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key.0.clone().try_into().unwrap())
        .unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&signature.to_bytes()).unwrap();
    vk.verify_strict(b"pay 1000", &sig).is_ok()
}

/// A member (here the coordinator of a run it drives by hand) tries to
/// make an honest dealer reveal the share it dealt to another honest
/// member: a dealer reveals only to the run's coordinator, only against a
/// complaint its accuser signed for this run (its id and its digest), and
/// only the accuser's share; a member complains only about a dealer's
/// message signed for the run it is in itself; a run id is used once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dealer_reveals_a_share_only_on_its_accusers_signed_complaint() {
    use keyquorum_node::cluster::peer::seal_envelope;
    use keyquorum_wire::Hex32;
    let (_dir, c) = cluster(3, 2, 0).await;
    let node = |i: u16| c.node(n(i)).unwrap();
    let session = Hex32([7; 32]);
    let members = ns(&[1, 2, 3]);
    let start = || PeerMessage::DkgStart {
        session,
        key: "by-hand".into(),
        suite: SuiteName::Ed25519,
        threshold: 2,
        members: members.clone(),
    };
    // Nodes 2 and 3 are honest; node 1 coordinates (and is hostile). Each
    // member's reply, as that member signs it to node 1.
    let sealed =
        |i: u16, msg: &PeerMessage| seal_envelope(node(i).keys(), n(i), n(1), msg).unwrap();
    let mut round1 = Vec::new();
    for i in 1..=3 {
        let r = node(i).handle_peer(n(1), start()).await.unwrap();
        round1.push((i, sealed(i, &r)));
    }
    // A run id is used once.
    let err = node(2).handle_peer(n(1), start()).await.unwrap_err();
    assert!(err.to_string().contains("already started"), "{err}");
    let mut round2 = Vec::new();
    for i in 1..=3 {
        let others = round1
            .iter()
            .filter(|(j, _)| *j != i)
            .map(|(_, e)| e.clone())
            .collect();
        let r = node(i)
            .handle_peer(
                n(1),
                PeerMessage::DkgRound2 {
                    session,
                    round1: others,
                },
            )
            .await
            .unwrap();
        round2.push((i, r));
    }
    let PeerMessage::DkgShares { run, .. } = &round2[1].1 else {
        panic!("expected node 2's shares");
    };
    let run = *run;
    // The coordinator relays to node 3 a message of its own signed for
    // another run (holding no share for node 3): node 3 does not complain
    // (a complaint would make an honest dealer reveal), the run fails.
    let PeerMessage::DkgShares { shares, .. } = &round2[0].1 else {
        panic!("expected node 1's shares");
    };
    let other_run = PeerMessage::DkgShares {
        session,
        run: Hex32([9; 32]),
        shares: shares.iter().filter(|x| x.to != n(3)).cloned().collect(),
    };
    let err = node(3)
        .handle_peer(
            n(1),
            PeerMessage::DkgFinish {
                session,
                round2: vec![sealed(2, &round2[1].1), sealed(1, &other_run)],
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("for another run"), "{err}");

    let reveal = |complaints| PeerMessage::DkgReveal {
        session,
        complaints,
    };
    let complaint = |accused: &[u16], sid: Hex32, run: Hex32| PeerMessage::DkgComplaint {
        session: sid,
        run,
        accused: ns(accused),
    };
    // Node 3 never complained: a complaint "by node 3" signed by node 1
    // does not verify.
    let mut forged = sealed(1, &complaint(&[2], session, run));
    forged.from = n(3);
    let err = node(2)
        .handle_peer(n(1), reveal(vec![forged]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    // Another signed message of node 3 is no complaint.
    let err = node(2)
        .handle_peer(n(1), reveal(vec![round1[2].1.clone()]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expected a DkgComplaint"), "{err}");
    // A complaint of another run id, or of another run (digest), or one
    // that accuses someone else.
    for (msg, needle) in [
        (complaint(&[2], Hex32([8; 32]), run), "no open run"),
        (complaint(&[2], session, Hex32([9; 32])), "no open run"),
        (complaint(&[3], session, run), "does not accuse node 2"),
    ] {
        let err = node(2)
            .handle_peer(n(1), reveal(vec![sealed(1, &msg)]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    // Only the run's coordinator asks.
    let err = node(2)
        .handle_peer(
            n(3),
            reveal(vec![sealed(1, &complaint(&[2], session, run))]),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    let err = node(2)
        .handle_peer(
            n(3),
            reveal(vec![seal_envelope(
                node(1).keys(),
                n(1),
                n(3),
                &complaint(&[2], session, run),
            )
            .unwrap()]),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("only the run's coordinator"),
        "{err}"
    );
    // Node 1's own signed complaint gets node 1's share only (which node 1
    // was dealt anyway), never node 3's.
    let r = node(2)
        .handle_peer(
            n(1),
            reveal(vec![sealed(1, &complaint(&[2], session, run))]),
        )
        .await
        .unwrap();
    let PeerMessage::DkgRevealed { shares, .. } = r else {
        panic!("expected a reveal, got {r:?}");
    };
    assert_eq!(shares.len(), 1);
    assert_eq!(shares[0].to, n(1));
    // Once the coordinator aborts, nothing is revealed any more, and the
    // run id cannot be used again.
    node(2)
        .handle_peer(n(1), PeerMessage::Abort { session })
        .await
        .unwrap();
    let err = node(2)
        .handle_peer(
            n(1),
            reveal(vec![sealed(1, &complaint(&[2], session, run))]),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no open run"), "{err}");
    let err = node(2).handle_peer(n(1), start()).await.unwrap_err();
    assert!(err.to_string().contains("used before"), "{err}");
    c.shutdown().await;
}

/// The leader appends a membership entry that gives member 2 keys of the
/// leader's choosing (Raft applies membership on append, so no replica can
/// refuse it): every node still seals to, and checks signatures of, the
/// keys node 2 joined with, so a new key is dealt to node 2 itself and
/// signs through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cannot_swap_a_members_keys() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let leader = c.node(n(1)).unwrap().leader().unwrap();
    let victim = if leader == n(2) { n(3) } else { n(2) };
    let lead = c.node(leader).unwrap();
    let honest = lead.node_info(victim).unwrap();
    // The leader's own keys, in the victim's name.
    let mut swapped = lead.node_info(leader).unwrap();
    swapped.addr = honest.addr.clone();
    lead.raft()
        .change_membership(
            openraft::ChangeMembers::SetNodes([(u64::from(victim), swapped.clone())].into()),
            false,
        )
        .await
        .unwrap();
    // (The victim itself stops getting entries: the leader's replication
    // to it pins the swapped identity. Stalling a member is a leader's to
    // do; using keys in its name is not.)
    for id in (1..=3u16).filter(|i| n(*i) != victim) {
        let node = c.node(n(id)).unwrap();
        common::poll(
            "the swapped entry to reach every node",
            std::time::Duration::from_secs(10),
            || async {
                let m = node.raft().metrics().borrow().membership_config.clone();
                m.membership()
                    .get_node(&u64::from(victim))
                    .is_some_and(|i| i.identity == swapped.identity)
            },
        )
        .await;
        let seen = node.node_info(victim).unwrap();
        assert_eq!(seen.identity, honest.identity, "node {id}");
        assert_eq!(seen.hpke, honest.hpke, "node {id}");
    }
    // A key dealt after the swap: the victim opened its shares (sealed to
    // its own HPKE key) and signed its endorsement with its own identity,
    // or no key would be made (every member must finish).
    let key = admin
        .create_key(&create("after-swap", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    assert!(key.members.contains(&victim));
    sign_and_check(&admin, &key, b"after the swap").await;
    c.shutdown().await;
}

/// Membership is a record only the operator quorum changes (DESIGN.md §4
/// item 3): a client that is neither admin nor operator cannot propose a
/// node; an admin's proposal alone changes nothing; a leader that puts a
/// node into Raft's membership on its own (openraft applies it on append,
/// no replica can refuse it) gets it trusted by no one (no member looks it
/// up, lists it or counts it), and an honest leader takes it out again;
/// a removal takes effect only once an operator approves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_only_with_the_operator_quorum() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let leader = c.node(n(1)).unwrap().leader().unwrap();
    let follower = (1..=3).map(n).find(|i| *i != leader).unwrap();
    let other = (1..=3)
        .map(n)
        .find(|i| *i != leader && *i != follower)
        .unwrap();
    let lead = c.node(leader).unwrap();
    let admin = Client::new(&c.url_of(follower), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let operator = Client::new(&c.url_of(follower), &c.operator, c.ca_pem().as_bytes()).unwrap();
    let app = common::new_client(&admin, "app", false, false, &["*"]).await;
    let app = Client::new(&c.url_of(follower), &app, c.ca_pem().as_bytes()).unwrap();
    // A rogue node: fresh keys, an address no one serves.
    let rogue_key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let rogue = keyquorum_wire::control::NodeInfo {
        addr: "https://127.0.0.1:9".into(),
        identity: Hex32(rogue_key.verifying_key().to_bytes()),
        hpke: Hex32([9u8; 32]),
    };
    let req = keyquorum_wire::api::AddNodeRequest {
        id: n(9),
        addr: rogue.addr.clone(),
        identity: rogue.identity,
        hpke: rogue.hpke,
        voter: true,
    };
    let every_node = |f: &dyn Fn(&Node) -> bool| (1..=3).map(n).all(|id| f(&c.node(id).unwrap()));
    let trusted = |node: &Node, id: NodeId| {
        node.node_info(id).is_some() || node.members().iter().any(|(m, _, _)| *m == id)
    };

    let e = app.add_node(&req).await.unwrap_err();
    assert_eq!(status_of(&e), 403, "{e}");
    let proposed = admin.add_node(&req).await.unwrap();
    assert!(!proposed.done && proposed.approvals.is_empty());
    common::poll(
        "the proposal on every node",
        std::time::Duration::from_secs(10),
        || async {
            every_node(&|node| node.registry(|r| r.operators.changes.contains_key(&proposed.id)))
        },
    )
    .await;
    assert!(every_node(
        &|node| !node.registry(|r| r.roster.nodes.contains_key(&n(9)))
    ));

    // The leader adds node 9 to Raft's membership by itself, as a voter.
    for id in (1..=3).map(n) {
        c.node(id).unwrap().hold_membership(true);
    }
    lead.raft()
        .add_learner(u64::from(n(9)), rogue.clone(), false)
        .await
        .unwrap();
    common::poll(
        "the rogue entry to be applied everywhere",
        std::time::Duration::from_secs(10),
        || async { every_node(&|node| node.registry(|r| r.roster.raft_nodes.contains_key(&n(9)))) },
    )
    .await;
    assert!(
        every_node(&|node| !trusted(node, n(9))),
        "no one trusts node 9"
    );
    // Nor a swapped identity under a member's id, nor a stranger's
    // statement: members are the record's.
    assert!(every_node(
        &|node| node.registry(|r| r.members.len() == 3 && r.voters.len() == 3)
    ));
    // An honest leader takes it out.
    for id in (1..=3).map(n) {
        c.node(id).unwrap().hold_membership(false);
    }
    common::poll(
        "the honest leader to remove the stranger",
        std::time::Duration::from_secs(20),
        || async {
            let leader = c.node(n(1)).unwrap().leader();
            leader.is_some_and(|l| {
                let m = c
                    .node(l)
                    .unwrap()
                    .raft()
                    .metrics()
                    .borrow()
                    .membership_config
                    .clone();
                m.membership().get_node(&u64::from(n(9))).is_none()
            })
        },
    )
    .await;

    // A removal: proposed by the admin, nothing happens until approved.
    let removal = admin.remove_node(other).await.unwrap();
    assert!(!removal.done);
    assert!(every_node(&|node| trusted(node, other)));
    let e = app.remove_node(other).await.unwrap_err();
    assert_eq!(status_of(&e), 403, "{e}");
    operator.approve(&removal.id).await.unwrap();
    common::wait_membership(&c, other, false, false).await;
    common::poll(
        "Raft's membership to follow the record",
        std::time::Duration::from_secs(20),
        || async {
            let m = lead.raft().metrics().borrow().membership_config.clone();
            m.membership().get_node(&u64::from(other)).is_none()
        },
    )
    .await;
    c.shutdown().await;
}
