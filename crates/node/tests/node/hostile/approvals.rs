//! Approvals name what they approve (apply rules 14): a node that shows an
//! operator one request under another's id cannot turn the operator's
//! approval into an approval of the other, neither as the entry node nor
//! as the leader appending the approval itself.

use super::*;

/// A change and an export request are pending. The operator is shown, by a
/// lying node, the harmless change under the dangerous change's id, and an
/// export sealed to the admin's key under an export actually sealed to
/// mallory's. Its genuine signed approvals of what it read are refused by
/// an honest entry node (409) and, appended by the leader itself, by every
/// replica on apply; so is an approval by id alone. Nothing is approved;
/// then the operator approves what is really there, and that applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_approves_only_what_the_operator_read() {
    use keyquorum_client::ExportKey;
    use keyquorum_wire::api::ApprovalRequest;
    use keyquorum_wire::control::{
        Authority, Authorized, Change, ClusterCommand, Command, CommandResponse, KeysCommand,
        Proposal, APPLY_RULES,
    };

    let (_dir, c) = cluster(3, 2, 0).await;
    let base = c.url_of(n(1));
    let ca = c.ca_pem();
    let admin = Client::new(&base, &c.admin, ca.as_bytes()).unwrap();
    let operator = Client::new(&base, &c.operator, ca.as_bytes()).unwrap();
    admin
        .create_key(&create("k", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();

    let status = admin.status().await.unwrap();
    assert!(status.approvals_bound, "{status:?}");
    assert_eq!(status.rules, APPLY_RULES);

    // Pending: a harmless change and a dangerous one; an export of k.
    let harmless = admin
        .propose_change(Change::SetQuorum { quorum: 1 })
        .await
        .unwrap();
    let mallory = keyquorum_client::ClientKey::generate("mallory", &mut rand_core::OsRng);
    let dangerous = admin
        .propose_change(Change::AddOperator {
            name: "mallory".into(),
            public_key: Hex32(mallory.public_key()),
        })
        .await
        .unwrap();
    let export = admin
        .request_export("k", &ExportKey::generate())
        .await
        .unwrap();
    // What the lying node showed: the harmless change under the dangerous
    // one's id, and the export with another recipient (the one the
    // operator expected) under the real export's id.
    let lie_change = ApprovalRequest::of_change(&harmless);
    let mut shown_export = export.clone();
    shown_export.recipient = ExportKey::generate().public();
    let lie_export = ApprovalRequest::of_export(&shown_export);

    // An honest entry node compares and refuses.
    // (Its own message: the replicas' refusal on apply would be a 409 too.)
    for (id, lie) in [(&dangerous.id, &lie_change), (&export.id, &lie_export)] {
        let e = operator.approve(id, lie).await.unwrap_err();
        assert_eq!(status_of(&e), 409, "{e}");
        assert!(e.to_string().contains("names another request"), "{e}");
    }
    let e = operator.approve_export(&shown_export).await.unwrap_err();
    assert_eq!(status_of(&e), 409, "{e}");
    assert!(e.to_string().contains("names another request"), "{e}");

    // A hostile leader appends the approvals itself, each authorized by
    // the operator's genuine signed request: with the lie as its body, and
    // with no body (an approval by id alone). Every replica refuses them.
    let leader_id = c.node(n(1)).unwrap().leader().unwrap();
    let leader = c.node(leader_id).unwrap();
    let approval = |id: &str, path: String, body: Option<&ApprovalRequest>, export: bool| {
        let request = common::client_request(
            &base,
            &c.operator,
            "POST",
            &path,
            body.map(|b| serde_json::to_value(b).unwrap()),
            common::now_s(),
        );
        let command: Command = if export {
            KeysCommand::ApproveExport {
                id: id.into(),
                operator: "operator".into(),
            }
            .into()
        } else {
            ClusterCommand::ApproveChange {
                id: id.into(),
                operator: "operator".into(),
            }
            .into()
        };
        Authorized {
            command,
            by: Authority::Client { request },
        }
    };
    let forged = vec![
        approval(
            &dangerous.id,
            format!("/v1/approvals/{}", dangerous.id),
            Some(&lie_change),
            false,
        ),
        approval(
            &dangerous.id,
            format!("/v1/approvals/{}", dangerous.id),
            None,
            false,
        ),
        approval(
            &export.id,
            format!("/v1/exports/{}/approve", export.id),
            Some(&lie_export),
            true,
        ),
        approval(
            &export.id,
            format!("/v1/approvals/{}", export.id),
            None,
            true,
        ),
    ];
    let r = leader
        .raft()
        .client_write(Proposal {
            rules: APPLY_RULES,
            time_ms: common::now_s() * 1000,
            commands: forged,
        })
        .await
        .unwrap()
        .data;
    match &r {
        CommandResponse::Batch { responses } => {
            assert_eq!(responses.len(), 4);
            for (i, r) in responses.iter().enumerate() {
                assert!(
                    matches!(r, CommandResponse::Rejected { reason }
                        if reason.contains("not authorized")
                            && (reason.contains("names what is held")
                                || reason.contains("does not parse"))),
                    "forged approval {i}: {r:?}"
                );
            }
        }
        other => panic!("{other:?}"),
    }
    for id in (1..=3).map(n) {
        let node = c.node(id).unwrap();
        node.read_barrier().await.unwrap();
        node.registry(|r| {
            let d = &r.operators.changes[&dangerous.id];
            assert!(d.approvals.is_empty() && !d.done, "node {id}: {d:?}");
            assert!(!r.live_operators().contains("mallory"), "node {id}");
            let e = &r.keys.exports[&export.id];
            assert!(e.approvals.is_empty() && !e.done, "node {id}: {e:?}");
        });
    }

    // What is really there, approved as read, applies.
    let done = operator.approve_change(&harmless).await.unwrap();
    assert!(done.done, "{done:?}");
    let approved = operator.approve_export(&export).await.unwrap();
    assert_eq!(approved.approvals, vec!["operator".to_string()]);
}
