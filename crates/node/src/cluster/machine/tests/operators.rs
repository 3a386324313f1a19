//! Operators and their quorum on apply: an admin cannot make, remove or
//! stand in for an operator; a change takes effect at the quorum's
//! distinct approvals, once; the quorum cannot be left unreachable.

use keyquorum_wire::api::ApprovalRequest;
use keyquorum_wire::control::{Change, ChangeRecord, KeysCommand};

use super::*;

pub(super) const ID: &str = "00112233445566778899aabbccddeeff";

pub(super) fn propose(by: &ClientKey, nonce: &str, change: Change, needed: u16) -> Authorized {
    propose_id(by, nonce, change, needed, ID)
}

std::thread_local! {
    /// What each change proposed on this test's thread is (by id): what
    /// [`approve`] names in its body, as an operator's client does.
    static PROPOSED: std::cell::RefCell<std::collections::BTreeMap<String, ApprovalRequest>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

pub(super) fn propose_id(
    by: &ClientKey,
    nonce: &str,
    change: Change,
    needed: u16,
    id: &str,
) -> Authorized {
    PROPOSED.with(|p| {
        p.borrow_mut().insert(
            id.to_string(),
            ApprovalRequest::Change {
                change: change.clone(),
                requested_by: by.name().into(),
            },
        )
    });
    let body = serde_json::to_vec(&keyquorum_wire::api::ChangeRequest {
        change: change.clone(),
    })
    .unwrap();
    client(
        by,
        "POST",
        "https://n1:7000/v1/changes",
        &body,
        T0,
        nonce,
        ClusterCommand::ProposeChange {
            record: ChangeRecord {
                id: id.into(),
                change,
                requested_by: by.name().into(),
                approvals: vec![],
                needed,
                done: false,
                created_ms: T0,
            },
        },
    )
}

/// `by` approves the change proposed under `id` on this thread, naming
/// it as proposed.
pub(super) fn approve(by: &ClientKey, nonce: &str, id: &str) -> Authorized {
    let what = PROPOSED.with(|p| p.borrow().get(id).cloned());
    approve_as(by, nonce, id, what.as_ref())
}

/// `by` approves `id`, naming `what` in its body (`None`: an empty body).
pub(super) fn approve_as(
    by: &ClientKey,
    nonce: &str,
    id: &str,
    what: Option<&ApprovalRequest>,
) -> Authorized {
    let body = what.map_or_else(Vec::new, |w| serde_json::to_vec(w).unwrap());
    client(
        by,
        "POST",
        &format!("https://n2:7000/v1/approvals/{id}"),
        &body,
        T0,
        nonce,
        ClusterCommand::ApproveChange {
            id: id.into(),
            operator: by.name().into(),
        },
    )
}

#[test]
fn an_admin_cannot_make_or_remove_an_operator() {
    let (mut r, admin, _) = registry();
    let mallory = ClientKey::new("mallory", SigningKey::from_bytes(&[77; 32]));
    let body = serde_json::to_vec(&serde_json::json!({
        "name": "mallory",
        "public_key": hex::encode(mallory.public_key()),
        "operator": true,
    }))
    .unwrap();
    let mut rec = record(&mallory, false);
    rec.grant.operator = true;
    let put = client(
        &admin,
        "POST",
        "https://n1:7000/v1/clients",
        &body,
        T0,
        "m1",
        ClusterCommand::PutClient { record: rec },
    );
    assert!(refused(&apply(&mut r, T0, vec![put])[0]));
    assert!(!r.clients.contains_key("mallory"));
    // Nor revoke one.
    let revoke = client(
        &admin,
        "POST",
        "https://n1:7000/v1/clients/op1/revoke",
        b"",
        T0,
        "m2",
        ClusterCommand::RevokeClient { name: "op1".into() },
    );
    assert!(refused(&apply(&mut r, T0, vec![revoke])[0]));
    assert!(!r.clients["op1"].revoked);
    // Nor approve a change (or an export) as if it were one.
    let add = Change::AddOperator {
        name: "mallory".into(),
        public_key: Hex32(mallory.public_key()),
    };
    assert_eq!(
        apply(&mut r, T0, vec![propose(&admin, "m3", add, 2)]),
        vec![ok()]
    );
    let as_admin = client(
        &admin,
        "POST",
        &format!("https://n2:7000/v1/approvals/{ID}"),
        b"",
        T0,
        "m4",
        ClusterCommand::ApproveChange {
            id: ID.into(),
            operator: "op1".into(),
        },
    );
    assert!(refused(&apply(&mut r, T0, vec![as_admin])[0]));
    let export_as_admin = client(
        &admin,
        "POST",
        &format!("https://n2:7000/v1/approvals/{ID}"),
        b"",
        T0,
        "m5",
        KeysCommand::ApproveExport {
            id: ID.into(),
            operator: "admin".into(),
        },
    );
    assert!(refused(&apply(&mut r, T0, vec![export_as_admin])[0]));
    assert!(r.operators.changes[ID].approvals.is_empty());
    assert!(!r.clients.contains_key("mallory"));
}

#[test]
fn a_change_takes_effect_at_the_quorums_distinct_approvals() {
    let (mut r, admin, _) = registry();
    let carol = ClientKey::new("carol", SigningKey::from_bytes(&[55; 32]));
    let add = Change::AddOperator {
        name: "carol".into(),
        public_key: Hex32(carol.public_key()),
    };
    // The proposal must need the current quorum (2), no fewer.
    assert!(refused(
        &apply(&mut r, T0, vec![propose(&admin, "p0", add.clone(), 1)])[0]
    ));
    assert_eq!(
        apply(&mut r, T0, vec![propose(&admin, "p1", add, 2)]),
        vec![ok()]
    );
    let (op1, op2) = (operator(1), operator(2));
    assert_eq!(apply(&mut r, T0, vec![approve(&op1, "a1", ID)]), vec![ok()]);
    assert!(!r.clients.contains_key("carol"), "one approval of two");
    // The same operator again (a new request) does not count twice.
    assert!(refused(
        &apply(&mut r, T0, vec![approve(&op1, "a2", ID)])[0]
    ));
    // Another operator's approval signed by op1 is refused.
    let forged = client(
        &op1,
        "POST",
        &format!("https://n2:7000/v1/approvals/{ID}"),
        b"",
        T0,
        "a3",
        ClusterCommand::ApproveChange {
            id: ID.into(),
            operator: "op2".into(),
        },
    );
    assert!(refused(&apply(&mut r, T0, vec![forged])[0]));
    assert!(!r.clients.contains_key("carol"));
    assert_eq!(apply(&mut r, T0, vec![approve(&op2, "a4", ID)]), vec![ok()]);
    assert!(r.clients["carol"].grant.operator);
    assert!(!r.clients["carol"].grant.admin);
    assert!(r.operators.changes[ID].done);
    assert_eq!(r.live_operators().len(), 3);
    // Carried out once.
    assert!(refused(
        &apply(&mut r, T0, vec![approve(&carol, "a5", ID)])[0]
    ));
}

/// From apply rules 14 an approval names what it approves: one naming
/// another change than the one under its id (what a lying node showed the
/// operator), or nothing, is refused; the one naming it counts. Before,
/// an approval by id alone counted (an older log keeps its meaning).
#[test]
fn an_approval_counts_only_for_what_it_names() {
    let (mut r, admin, _) = registry();
    let carol = ClientKey::new("carol", SigningKey::from_bytes(&[55; 32]));
    let add = Change::AddOperator {
        name: "carol".into(),
        public_key: Hex32(carol.public_key()),
    };
    const OTHER: &str = "ffeeddccbbaa99887766554433221100";
    // Before rules 14: the id alone is approved.
    assert_eq!(
        apply(&mut r, T0, vec![propose(&admin, "n1", add.clone(), 2)]),
        vec![ok()]
    );
    assert!(r.rules < crate::cluster::machine::operators::APPROVAL_RULES);
    assert_eq!(
        apply(&mut r, T0, vec![approve_as(&operator(1), "n2", ID, None)]),
        vec![ok()]
    );
    assert_eq!(r.operators.changes[ID].approvals, vec!["op1".to_string()]);

    announce_rules(&mut r, 100);
    assert!(r.approvals_bound());
    // Every member announced rules 14: an approval by id alone is refused
    // even in an entry a leader still stamps with the older rules.
    let old = r.rules;
    assert!(old < crate::cluster::machine::operators::APPROVAL_RULES);
    let stale = Proposal {
        rules: old,
        time_ms: T0,
        commands: vec![approve_as(&operator(2), "n2b", ID, None)],
    };
    let refusal = match r.apply(8, &stale) {
        CommandResponse::Batch { responses } => responses[0].clone(),
        other => other,
    };
    assert!(refused(&refusal), "{refusal:?}");
    let harmless = Change::SetQuorum { quorum: 1 };
    assert_eq!(
        apply(
            &mut r,
            T0,
            vec![propose_id(&admin, "n3", harmless.clone(), 2, OTHER)]
        ),
        vec![ok()]
    );
    let shown = ApprovalRequest::Change {
        change: harmless,
        requested_by: "admin".into(),
    };
    let other_proposer = ApprovalRequest::Change {
        change: add,
        requested_by: "op1".into(),
    };
    for (nonce, what) in [
        ("n4", None),
        ("n5", Some(&shown)),
        ("n6", Some(&other_proposer)),
    ] {
        let refusal = &apply(&mut r, T0, vec![approve_as(&operator(2), nonce, ID, what)])[0];
        assert!(refused(refusal), "{what:?}: {refusal:?}");
    }
    assert_eq!(r.operators.changes[ID].approvals, vec!["op1".to_string()]);
    assert!(!r.clients.contains_key("carol"));
    // Naming what is there: the second approval carries it out.
    assert_eq!(
        apply(&mut r, T0, vec![approve(&operator(2), "n7", ID)]),
        vec![ok()]
    );
    assert!(r.clients["carol"].grant.operator);
    // The harmless change, named as it is, still only by its own id.
    assert_eq!(
        apply(
            &mut r,
            T0,
            vec![approve_as(&operator(1), "n8", OTHER, Some(&shown))]
        ),
        vec![ok()]
    );
}

#[test]
fn the_quorum_cannot_be_left_unreachable() {
    let (mut r, admin, _) = registry();
    // Two operators, quorum 2: removing one would leave 1 for a quorum of 2.
    let remove = Change::RemoveOperator { name: "op2".into() };
    assert!(refused(
        &apply(&mut r, T0, vec![propose(&admin, "q1", remove, 2)])[0]
    ));
    // A quorum above the operators is refused, too.
    assert!(refused(
        &apply(
            &mut r,
            T0,
            vec![propose(&admin, "q2", Change::SetQuorum { quorum: 3 }, 2)]
        )[0]
    ));
    // Lowering it takes both approvals; then it is 1.
    assert_eq!(
        apply(
            &mut r,
            T0,
            vec![propose(&admin, "q3", Change::SetQuorum { quorum: 1 }, 2)]
        ),
        vec![ok()]
    );
    assert_eq!(
        apply(
            &mut r,
            T0,
            vec![
                approve(&operator(1), "q4", ID),
                approve(&operator(2), "q5", ID)
            ]
        ),
        vec![ok(), ok()]
    );
    assert_eq!(r.operators.quorum, 1);
}

#[test]
fn a_change_proposed_under_a_lower_quorum_needs_the_quorum_in_force() {
    let (mut r, admin, _) = registry();
    let (op1, op2) = (operator(1), operator(2));
    // Quorum 2 → 1.
    apply(
        &mut r,
        T0,
        vec![propose(&admin, "l1", Change::SetQuorum { quorum: 1 }, 2)],
    );
    apply(
        &mut r,
        T0,
        vec![approve(&op1, "l2", ID), approve(&op2, "l3", ID)],
    );
    assert_eq!(r.operators.quorum, 1);
    // A change proposed at quorum 1 ...
    let carol = ClientKey::new("carol", SigningKey::from_bytes(&[56; 32]));
    let add = ClusterCommand::ProposeChange {
        record: ChangeRecord {
            id: "ffeeddccbbaa99887766554433221100".into(),
            change: Change::AddOperator {
                name: "carol".into(),
                public_key: Hex32(carol.public_key()),
            },
            requested_by: "admin".into(),
            approvals: vec![],
            needed: 1,
            done: false,
            created_ms: T0,
        },
    };
    let body = serde_json::to_vec(&keyquorum_wire::api::ChangeRequest {
        change: Change::AddOperator {
            name: "carol".into(),
            public_key: Hex32(carol.public_key()),
        },
    })
    .unwrap();
    let add = client(
        &admin,
        "POST",
        "https://n1:7000/v1/changes",
        &body,
        T0,
        "l4",
        add,
    );
    assert_eq!(apply(&mut r, T0, vec![add]), vec![ok()]);
    // ... then the quorum goes back to 2 (one approval at quorum 1) ...
    r.operators.changes.remove(ID);
    apply(
        &mut r,
        T0,
        vec![
            propose(&admin, "l5", Change::SetQuorum { quorum: 2 }, 1),
            approve(&op1, "l6", ID),
        ],
    );
    assert_eq!(r.operators.quorum, 2);
    // ... and one approval no longer carries the older change out.
    let late = "ffeeddccbbaa99887766554433221100";
    assert_eq!(
        apply(&mut r, T0, vec![approve(&op2, "l7", late)]),
        vec![ok()]
    );
    assert!(!r.clients.contains_key("carol"), "one approval at quorum 2");
    assert_eq!(
        apply(&mut r, T0, vec![approve(&op1, "l8", late)]),
        vec![ok()]
    );
    assert!(r.clients.contains_key("carol"));
}

#[test]
fn one_request_approves_one_thing_and_ids_do_not_cross() {
    let (mut r, admin, _) = registry();
    let op1 = operator(1);
    let dave = ClientKey::new("dave", SigningKey::from_bytes(&[57; 32]));
    let add = Change::AddOperator {
        name: "dave".into(),
        public_key: Hex32(dave.public_key()),
    };
    assert_eq!(
        apply(&mut r, T0, vec![propose(&admin, "x1", add, 2)]),
        vec![ok()]
    );
    // An export may not take the change's id.
    put_test_key(&mut r);
    let body = format!(r#"{{"recipient":"{}"}}"#, hex::encode([5u8; 32]));
    let export = client(
        &admin,
        "POST",
        "https://n2:7000/v1/keys/k/exports",
        body.as_bytes(),
        T0,
        "x2",
        KeysCommand::RequestExport {
            record: keyquorum_wire::control::ExportRecord {
                id: ID.into(),
                key: "k".into(),
                epoch: 1,
                requested_by: "admin".into(),
                approvals: vec![],
                needed: 2,
                done: false,
                recipient: Hex32([5; 32]),
                created_ms: T0,
            },
        },
    );
    assert!(refused(&apply(&mut r, T0, vec![export])[0]));
    assert!(r.keys.exports.is_empty());
    // One signed approval request, wrapped as both kinds: the second is a
    // replay.
    let change = approve(&op1, "x3", ID);
    let as_export = Authorized {
        command: KeysCommand::ApproveExport {
            id: ID.into(),
            operator: "op1".into(),
        }
        .into(),
        by: change.by.clone(),
    };
    assert_eq!(apply(&mut r, T0, vec![change]), vec![ok()]);
    let again = apply(&mut r, T0, vec![as_export]);
    assert!(
        matches!(&again[0], CommandResponse::Rejected { reason } if reason.contains("replayed")),
        "{again:?}"
    );
}

#[test]
fn one_proposer_cannot_fill_the_change_table() {
    let (mut r, admin, _) = registry();
    for i in 0..super::super::operators::MAX_PENDING_PER_PROPOSER + 1 {
        let id = format!("{i:032x}");
        let change = Change::SetQuorum { quorum: 1 };
        let body = serde_json::to_vec(&keyquorum_wire::api::ChangeRequest {
            change: change.clone(),
        })
        .unwrap();
        let a = client(
            &admin,
            "POST",
            "https://n1:7000/v1/changes",
            &body,
            T0,
            &format!("f{i}"),
            ClusterCommand::ProposeChange {
                record: ChangeRecord {
                    id,
                    change,
                    requested_by: "admin".into(),
                    approvals: vec![],
                    needed: 2,
                    done: false,
                    created_ms: T0,
                },
            },
        );
        let got = apply(&mut r, T0, vec![a]);
        if i < super::super::operators::MAX_PENDING_PER_PROPOSER {
            assert_eq!(got, vec![ok()], "{i}");
        } else {
            assert!(refused(&got[0]), "{got:?}");
        }
    }
}

#[test]
fn a_leader_that_removed_voters_before_init_cannot_initialise_alone() {
    let mut r = Registry::default();
    r.membership(1, &nodes(3), &[1, 2, 3]);
    // The leader (node 1) appends a membership with itself the only voter.
    r.membership(2, &nodes(1), &[1]);
    assert_eq!(r.voters.len(), 1);
    let admin = ClientKey::new("admin", SigningKey::from_bytes(&[9; 32]));
    let init = init_command(&admin);
    assert!(refused(
        &apply(&mut r, T0, vec![members(&[1], 1, init.clone())])[0]
    ));
    assert!(r.clients.is_empty());
    // Every founder (by the identity it had) together still can, and the
    // founders the leader took out of Raft's membership are members (the
    // leader is to add them back).
    assert_eq!(
        apply(&mut r, T0, vec![members(&[1, 2, 3], 2, init)]),
        vec![ok()]
    );
    assert_eq!(
        r.members.keys().copied().collect::<Vec<_>>(),
        vec![id(1), id(2)]
    );
}
