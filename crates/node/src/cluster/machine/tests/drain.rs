//! Drains on apply (rules 12): the operator quorum approves one, after
//! which a key with a share on the drained node may be reshared, keeping
//! its threshold, to exactly its drained members (an account's keys
//! excepted); a signing tree's member is not removed; a removal voids the
//! drains of and onto the node; the quorum can cancel a drain (rules 13).

use keyquorum_wire::api::SuiteName;
use keyquorum_wire::control::{Change, KeyRecord};
use keyquorum_wire::seedtree::SeedtreeRecord;

use super::operators::{approve, propose_id};
use super::*;
use crate::seedtree::state::TreeEntry;

fn key(name: &str, threshold: u16, members: &[u64]) -> KeyRecord {
    KeyRecord {
        name: name.into(),
        suite: SuiteName::Ed25519,
        threshold,
        members: members.iter().map(|m| id(*m)).collect(),
        public_key: Hex(vec![1; 32]),
        group_key: Hex(vec![2; 8]),
        epoch: 1,
        session: Hex32([9; 32]),
        created_ms: T0,
    }
}

fn ids(v: &[u64]) -> Vec<NodeId> {
    v.iter().map(|m| id(*m)).collect()
}

/// Proposes `change` as `admin` with id `cid` and has both operators
/// approve it: the three answers.
fn approved(
    r: &mut Registry,
    admin: &ClientKey,
    n: &str,
    cid: &str,
    change: Change,
) -> Vec<CommandResponse> {
    apply(
        r,
        T0,
        vec![
            propose_id(admin, &format!("{n}-p"), change, 2, cid),
            approve(&operator(1), &format!("{n}-a1"), cid),
            approve(&operator(2), &format!("{n}-a2"), cid),
        ],
    )
}

fn rejected_for(out: &CommandResponse, why: &str) {
    assert!(
        matches!(out, CommandResponse::Rejected { reason } if reason.contains(why)),
        "expected a refusal for {why:?}: {out:?}"
    );
}

#[test]
fn a_drain_needs_rules_12_and_the_quorum_and_names_members() {
    let (mut r, admin, _) = registry();
    let drain = |id_: u64, onto: Option<u64>| Change::DrainNode {
        id: id(id_),
        onto: onto.map(id),
    };
    // Before the cluster takes up rules 12 the proposal is refused.
    let early = approved(
        &mut r,
        &admin,
        "e",
        "00000000000000000000000000000001",
        drain(2, None),
    );
    rejected_for(&early[0], "apply rules 12");
    assert!(r.operators.drains.is_empty());
    announce_rules(&mut r, 210);
    for (n, (d, onto, why)) in [
        (2, Some(2), "own place"),
        (2, Some(9), "node 9 is not a member"),
        (9, None, "node 9 is not a member"),
    ]
    .into_iter()
    .enumerate()
    {
        let out = approved(
            &mut r,
            &admin,
            &format!("bad{n}"),
            &format!("0000000000000000000000000000001{n}"),
            drain(d, onto),
        );
        rejected_for(&out[0], why);
    }
    assert!(r.operators.drains.is_empty());
    // Proposed: nothing changes until the second approval.
    let cid = "00000000000000000000000000000020";
    let out = apply(
        &mut r,
        T0,
        vec![
            propose_id(&admin, "g-p", drain(2, Some(1)), 2, cid),
            approve(&operator(1), "g-a1", cid),
        ],
    );
    assert_eq!(out, vec![ok(), ok()]);
    assert!(r.operators.drains.is_empty());
    assert_eq!(
        apply(&mut r, T0, vec![approve(&operator(2), "g-a2", cid)]),
        vec![ok()]
    );
    assert_eq!(r.operators.drains.get(&id(2)), Some(&Some(id(1))));
    // Twice, or onto a node being drained: refused.
    let again = approved(
        &mut r,
        &admin,
        "a",
        "00000000000000000000000000000021",
        drain(2, None),
    );
    rejected_for(&again[0], "drained already");
    let onto = approved(
        &mut r,
        &admin,
        "o",
        "00000000000000000000000000000022",
        drain(1, Some(2)),
    );
    // No chains: node 1, taking node 2's place, is not drained in turn.
    rejected_for(&onto[0], "node 1 is taking node 2's place");
    // Removing node 2 voids its drain (an id re-added later is another node).
    let out = approved(
        &mut r,
        &admin,
        "rm",
        "00000000000000000000000000000023",
        Change::RemoveNode {
            id: id(2),
            despite_trees: false,
        },
    );
    assert_eq!(out, vec![ok(), ok(), ok()]);
    assert!(r.operators.drains.is_empty());
}

#[test]
fn a_drain_allows_exactly_the_drained_members_at_the_same_threshold() {
    let (mut r, _, _) = registry();
    for k in [
        key("k", 2, &[1, 2, 3]),
        key("reset.alice", 2, &[1, 2, 3]),
        key("pin.alice", 2, &[1, 2, 3]),
        key("other", 2, &[1, 3, 4]),
    ] {
        r.keys.records.insert(k.name.clone(), k);
    }
    r.rules = 12;
    // No drain: only the policy the key has.
    assert!(r.policy_allows("k", 2, &ids(&[3, 2, 1])));
    assert!(!r.policy_allows("k", 2, &ids(&[1, 3, 4])));
    assert_eq!(r.drained(&ids(&[1, 2, 3])), None);

    // Node 2 drained onto node 4.
    r.operators.drains.insert(id(2), Some(id(4)));
    assert_eq!(r.drained(&ids(&[1, 2, 3])), Some(ids(&[1, 3, 4])));
    assert!(r.policy_allows("k", 2, &ids(&[4, 3, 1])));
    for (t, m) in [
        (3, vec![1, 3, 4]),
        (2, vec![1, 3]),
        (2, vec![1, 2, 3, 4]),
        (2, vec![1, 3, 5]),
    ] {
        assert!(!r.policy_allows("k", t, &ids(&m)), "{t} of {m:?}");
    }
    // An account's keys do not move by a drain; a key without a share on
    // node 2 gets nothing from it; an unknown key nothing at all.
    assert!(!r.policy_allows("reset.alice", 2, &ids(&[1, 3, 4])));
    assert!(!r.policy_allows("pin.alice", 2, &ids(&[1, 3, 4])));
    assert_eq!(r.drained(&ids(&[1, 3, 4])), None);
    assert!(!r.policy_allows("other", 2, &ids(&[1, 3])));
    assert!(!r.policy_allows("none", 2, &ids(&[1, 3, 4])));

    // Without a replacement, or onto a member already there: left out,
    // but never down to t-of-t (one member would veto the key).
    r.operators.drains.insert(id(2), None);
    assert_eq!(r.drained(&ids(&[1, 2, 3])), Some(ids(&[1, 3])));
    assert!(!r.policy_allows("k", 2, &ids(&[1, 3])));
    r.keys
        .records
        .insert("wide".into(), key("wide", 2, &[1, 2, 3, 4]));
    assert!(r.policy_allows("wide", 2, &ids(&[1, 3, 4])));
    r.operators.drains.insert(id(2), Some(id(3)));
    assert_eq!(r.drained(&ids(&[1, 2, 3])), Some(ids(&[1, 3])));
    assert!(!r.policy_allows("k", 2, &ids(&[1, 3])));
    // A replacement drained in turn takes nothing.
    r.operators.drains.insert(id(2), Some(id(4)));
    r.operators.drains.insert(id(4), None);
    assert_eq!(r.drained(&ids(&[1, 2, 3])), Some(ids(&[1, 3])));
}

/// Puts a tree "fw" on `members` (2-of-them) into the state.
fn put_tree(r: &mut Registry, members: &[u64]) {
    let record = SeedtreeRecord {
        name: "fw".into(),
        run: Hex32([5; 32]),
        height: 5,
        winternitz: 4,
        subtrees: 2,
        threshold: 2,
        members: ids(members),
        commitments: Vec::new(),
        contributions: Vec::new(),
        builders: Vec::new(),
        roots: Vec::new(),
        public_key: Hex(Vec::new()),
        created_by: "admin".into(),
    };
    let entry = TreeEntry {
        record,
        next: 0,
        reserved_by: Default::default(),
        epoch: 0,
        first: 0,
        sharing: None,
    };
    r.seedtree.trees.insert("fw".into(), entry);
}

#[test]
fn a_signing_trees_member_is_removed_only_despite_its_trees() {
    let (mut r, admin, _) = registry();
    announce_rules(&mut r, 220);
    put_tree(&mut r, &[1, 2]);
    let out = approved(
        &mut r,
        &admin,
        "rm",
        "00000000000000000000000000000030",
        Change::RemoveNode {
            id: id(2),
            despite_trees: false,
        },
    );
    rejected_for(&out[0], "signing trees [\"fw\"]");
    assert!(r.members.contains_key(&id(2)));
    // A pending change naming node 2 (one approval of two) ...
    let pending = "00000000000000000000000000000031";
    assert_eq!(
        apply(
            &mut r,
            T0,
            vec![
                propose_id(
                    &admin,
                    "pd-p",
                    Change::DrainNode {
                        id: id(1),
                        onto: Some(id(2)),
                    },
                    2,
                    pending,
                ),
                approve(&operator(1), "pd-a1", pending),
            ]
        ),
        vec![ok(), ok()]
    );
    // The operators accept the tree's end: node 2 goes.
    let out = approved(
        &mut r,
        &admin,
        "rm2",
        "00000000000000000000000000000032",
        Change::RemoveNode {
            id: id(2),
            despite_trees: true,
        },
    );
    assert_eq!(out, vec![ok(), ok(), ok()]);
    assert!(!r.members.contains_key(&id(2)));
    // ... is gone with it: its approval does not carry over to a node
    // added later under that id.
    assert!(!r.operators.changes.contains_key(pending));
    // And no node joins under the id the tree names.
    let add = Change::AddNode {
        id: id(2),
        addr: "https://n2b:7000".into(),
        identity: Hex32(node_key(7).verifying_key().to_bytes()),
        hpke: Hex32([3; 32]),
        voter: true,
    };
    let out = approved(
        &mut r,
        &admin,
        "add2",
        "00000000000000000000000000000033",
        add,
    );
    rejected_for(&out[0], "member of the signing tree fw");
}

#[test]
fn a_tree_member_stays_even_when_the_others_make_a_lock_quorum() {
    let (mut r, admin, _) = registry();
    // despite_trees before rules 12: refused.
    let early = approved(
        &mut r,
        &admin,
        "e",
        "00000000000000000000000000000041",
        Change::RemoveNode {
            id: id(2),
            despite_trees: true,
        },
    );
    rejected_for(&early[0], "despite_trees needs apply rules 12");
    announce_rules(&mut r, 230);
    // 2-of-4, a lock quorum of 3, which the other three still make: the
    // node still keeps its shares of the unused leaves, so the operators
    // must say they accept that.
    put_tree(&mut r, &[1, 2, 3, 4]);
    let out = approved(
        &mut r,
        &admin,
        "rm",
        "00000000000000000000000000000040",
        Change::RemoveNode {
            id: id(2),
            despite_trees: false,
        },
    );
    rejected_for(&out[0], "member of the signing trees");
    assert!(r.members.contains_key(&id(2)));
}

#[test]
fn a_drained_node_is_no_accounts_guardian() {
    use keyquorum_wire::recovery::CreateAccountRequest;
    let (mut r, _, _) = registry();
    r.voters.insert(id(3));
    let ask = CreateAccountRequest {
        account: "alice".into(),
        guardians: Some(2),
        threshold: Some(2),
        channels: vec!["email:a@example.com".into(), "app".into()],
        device_key: Hex32([7; 32]),
        measurements: None,
    };
    let shape = |r: &Registry| crate::recovery::authority::shape(r, &ask);
    let (before, t) = shape(&r).unwrap();
    assert_eq!((before.len(), t), (2, 2));
    // Drain one of the two it picked: the other and the third voter now.
    let gone = before[0];
    r.operators.drains.insert(gone, None);
    let (after, _) = shape(&r).unwrap();
    assert!(!after.contains(&gone), "{after:?}");
    assert_eq!(after.len(), 2);
    // Too few voters left that are not drained: refused, not a drained
    // guardian.
    r.operators.drains.insert(after[0], None);
    assert!(shape(&r).is_err());
}

#[test]
fn a_drain_is_cancelled_by_the_quorum_from_rules_13() {
    let (mut r, admin, _) = registry();
    r.keys
        .records
        .insert("k".into(), key("k", 2, &[1, 2, 3, 4]));
    let cancel = Change::CancelDrain { id: id(2) };
    // Before the cluster takes up rules 13: refused.
    let early = approved(
        &mut r,
        &admin,
        "e",
        "00000000000000000000000000000031",
        cancel.clone(),
    );
    rejected_for(&early[0], "apply rules 13");
    announce_rules(&mut r, 220);
    // Nothing to cancel yet.
    let none = approved(
        &mut r,
        &admin,
        "n",
        "00000000000000000000000000000032",
        cancel.clone(),
    );
    rejected_for(&none[0], "node 2 is not being drained");
    let out = approved(
        &mut r,
        &admin,
        "d",
        "00000000000000000000000000000033",
        Change::DrainNode {
            id: id(2),
            onto: None,
        },
    );
    assert_eq!(out, vec![ok(), ok(), ok()]);
    assert!(r.policy_allows("k", 2, &ids(&[1, 3, 4])));
    assert!(!r.candidates().contains(&id(2)));
    // Proposed and approved once: the drain stands until the quorum.
    let cid = "00000000000000000000000000000034";
    let out = apply(
        &mut r,
        T0,
        vec![
            propose_id(&admin, "c-p", cancel.clone(), 2, cid),
            approve(&operator(1), "c-a1", cid),
        ],
    );
    assert_eq!(out, vec![ok(), ok()]);
    assert!(r.operators.drains.contains_key(&id(2)));
    assert_eq!(
        apply(&mut r, T0, vec![approve(&operator(2), "c-a2", cid)]),
        vec![ok()]
    );
    // Cancelled: the drained set is no longer allowed, node 2 takes new
    // keys again, and it can be drained anew.
    assert!(r.operators.drains.is_empty());
    assert!(!r.policy_allows("k", 2, &ids(&[1, 3, 4])));
    assert!(r.candidates().contains(&id(2)));
    let again = approved(
        &mut r,
        &admin,
        "d2",
        "00000000000000000000000000000035",
        Change::DrainNode {
            id: id(2),
            onto: Some(id(1)),
        },
    );
    assert_eq!(again, vec![ok(), ok(), ok()]);
    assert_eq!(r.operators.drains.get(&id(2)), Some(&Some(id(1))));
}

/// Approvals given while a drain was in one state do not carry over to
/// the next: once node 2's drain starts or ends (or its replacement is
/// removed), the other pending drains and cancellations of it are void.
#[test]
fn a_pending_drain_or_cancellation_dies_when_the_drain_changes() {
    let (mut r, admin, _) = registry();
    announce_rules(&mut r, 230);
    let drain2 = |onto: Option<u64>| Change::DrainNode {
        id: id(2),
        onto: onto.map(id),
    };
    let cancel2 = Change::CancelDrain { id: id(2) };
    let half = |r: &mut Registry, n: &str, cid: &str, change: Change| {
        let out = apply(
            r,
            T0,
            vec![
                propose_id(&admin, &format!("{n}-p"), change, 2, cid),
                approve(&operator(1), &format!("{n}-a1"), cid),
            ],
        );
        assert_eq!(out, vec![ok(), ok()], "{n}");
    };
    // A drain onto node 1, half approved; then the operators approve a
    // drain without a replacement: the first is void.
    let stale_drain = "00000000000000000000000000000041";
    half(&mut r, "sd", stale_drain, drain2(Some(1)));
    let out = approved(
        &mut r,
        &admin,
        "d",
        "00000000000000000000000000000042",
        drain2(None),
    );
    assert_eq!(out, vec![ok(), ok(), ok()]);
    assert!(!r.operators.changes.contains_key(stale_drain));
    // A cancellation half approved; another one carried out: the first
    // is void, so it cannot end the next drain.
    let stale_cancel = "00000000000000000000000000000043";
    half(&mut r, "sc", stale_cancel, cancel2.clone());
    let out = approved(
        &mut r,
        &admin,
        "c",
        "00000000000000000000000000000044",
        cancel2.clone(),
    );
    assert_eq!(out, vec![ok(), ok(), ok()]);
    assert!(r.operators.drains.is_empty());
    let out = approved(
        &mut r,
        &admin,
        "d2",
        "00000000000000000000000000000045",
        drain2(None),
    );
    assert_eq!(out, vec![ok(), ok(), ok()]);
    let late = apply(
        &mut r,
        T0,
        vec![approve(&operator(2), "sc-a2", stale_cancel)],
    );
    rejected_for(&late[0], "no change");
    assert_eq!(r.operators.drains.get(&id(2)), Some(&None));
}

/// A tree's leaves move (rules 15) only to the target an approved drain
/// gives its holders, with every new holder's endorsement, dealers that
/// are current holders, a cut inside the tree and the sharing in force;
/// the commit moves the tree to the new holders from the later of the
/// cut and the leaves handed out, and a second plan for the same sharing
/// is refused.
#[test]
fn a_trees_leaves_move_only_to_an_approved_drains_target() {
    use keyquorum_wire::seedtree::{reshare_statement, SeedtreeCommand, TreeResharePlan};
    let (mut r, admin, _) = registry();
    announce_rules(&mut r, 230);
    let add = Change::AddNode {
        id: id(3),
        addr: "https://n3:7000".into(),
        identity: Hex32(node_key(3).verifying_key().to_bytes()),
        hpke: Hex32([33; 32]),
        voter: false,
    };
    let out = approved(
        &mut r,
        &admin,
        "add3",
        "00000000000000000000000000000040",
        add,
    );
    assert_eq!(out, vec![ok(), ok(), ok()]);
    put_tree(&mut r, &[1, 2]);
    r.seedtree.trees.get_mut("fw").unwrap().next = 5;
    let plan = |members: &[u64], dealers: &[u64], cut: u32| TreeResharePlan {
        tree: "fw".into(),
        run: Hex32([5; 32]),
        epoch: 0,
        cut,
        threshold: 2,
        members: ids(members),
        dealers: ids(dealers),
        attempt: 0,
    };
    let endorse = |p: &TreeResharePlan, by: &[u64]| -> Vec<keyquorum_wire::control::Endorsement> {
        by.iter()
            .map(|n| keyquorum_wire::control::Endorsement {
                node: id(*n),
                signature: Hex(node_key(*n).sign(&reshare_statement(p)).to_bytes().to_vec()),
            })
            .collect()
    };
    let ask = |nonce: &str, asked: &[u64], p: TreeResharePlan, by: &[u64]| {
        let body = serde_json::json!({ "members": ids(asked), "threshold": 2 }).to_string();
        let endorsements = endorse(&p, by);
        client(
            &admin,
            "POST",
            "https://n1:7000/v1/seedtrees/fw/reshare",
            body.as_bytes(),
            T0,
            nonce,
            Command::Seedtree(SeedtreeCommand::StReshare {
                plan: Box::new(p),
                endorsements,
            }),
        )
    };
    // No drain: refused.
    let out = apply(
        &mut r,
        T0,
        vec![ask("rs1", &[2, 3], plan(&[2, 3], &[1, 2], 5), &[2, 3])],
    );
    rejected_for(&out[0], "approved drain");
    let out = approved(
        &mut r,
        &admin,
        "dr",
        "00000000000000000000000000000041",
        Change::DrainNode {
            id: id(1),
            onto: Some(id(3)),
        },
    );
    assert_eq!(out, vec![ok(), ok(), ok()]);
    for (what, nonce, asked, p, by, why) in [
        (
            "a holder did not endorse",
            "rs2",
            vec![2, 3],
            plan(&[2, 3], &[1, 2], 5),
            vec![2],
            "endorsement",
        ),
        (
            "another target",
            "rs3",
            vec![1, 3],
            plan(&[1, 3], &[1, 2], 5),
            vec![1, 3],
            "approved drain",
        ),
        (
            "a plan the request does not ask",
            "rs4",
            vec![2, 3],
            plan(&[1, 2, 3], &[1, 2], 5),
            vec![1, 2, 3],
            "asked for",
        ),
        (
            "a dealer that holds nothing",
            "rs5",
            vec![2, 3],
            plan(&[2, 3], &[2, 3], 5),
            vec![2, 3],
            "dealers",
        ),
        (
            "a cut past the tree",
            "rs6",
            vec![2, 3],
            plan(&[2, 3], &[1, 2], 40),
            vec![2, 3],
            "cut",
        ),
    ] {
        let out = apply(&mut r, T0, vec![ask(nonce, &asked, p, &by)]);
        rejected_for(&out[0], why);
        assert_eq!(r.seedtree.trees["fw"].epoch, 0, "{what}");
    }
    // The drain's target: in force from the leaves handed out (5, past
    // the cut 3), under a sharing of its own.
    let out = apply(
        &mut r,
        T0,
        vec![ask("rs7", &[3, 2], plan(&[2, 3], &[1, 2], 3), &[2, 3])],
    );
    assert_eq!(out, vec![ok()]);
    let e = &r.seedtree.trees["fw"];
    assert_eq!((e.epoch, e.first, &e.record.members), (1, 5, &ids(&[2, 3])));
    assert_ne!(e.sharing(), e.record.run);
    // Node 1 holds nothing now: its removal is not refused for the tree.
    assert!(r.check_remove_node(id(1), false).is_ok());
    // The same plan again (sharing 0 is gone).
    let out = apply(
        &mut r,
        T0,
        vec![ask("rs8", &[2, 3], plan(&[2, 3], &[1, 2], 5), &[2, 3])],
    );
    rejected_for(&out[0], "sharing now");
}
