//! The control plane: what a member forwards or a leader appends is
//! applied only as its authority allows.

use super::*;

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
                recovery: false,
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
                recovery: false,
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
                recovery: false,
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
                    // The rules the leader would stamp (the log takes up
                    // this build's newest once every member announced them).
                    rules: leader.registry(|r| r.rules_to_stamp()),
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
    // It stamps rules no member announced (to stop every replica at an
    // entry none of them may apply): refused alike, and every replica
    // goes on (the writes below are applied everywhere).
    let newer = leader
        .raft()
        .client_write(Proposal {
            rules: APPLY_RULES + 1,
            time_ms: common::now_s() * 1000,
            commands: vec![leader.statement(ClusterCommand::Tick {})],
        })
        .await
        .unwrap()
        .data;
    assert!(
        matches!(&newer, CommandResponse::Rejected { reason } if reason.contains("not taken up")),
        "{newer:?}"
    );

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
                    recovery: false,
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
        let log = node.audit_entries(0, usize::MAX).unwrap();
        node.registry(|r| {
            assert!(!r.clients.contains_key("mallory"), "node {id}");
            assert!(r.clients["bob"].revoked, "node {id}");
            assert_eq!(r.keys.records["k"], record, "node {id}");
            assert!(r.keys.exports.is_empty(), "node {id}");
            let count = |a: &str| log.iter().filter(|e| e.event.action == a).count();
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
