//! The membership record on apply: set at init from the founding voters;
//! Raft's membership alone (what a leader appends) adds no member and swaps
//! no member's keys; an approved change adds or removes one, and its
//! history says who was a member when.

use keyquorum_wire::control::Change;

use super::operators::{approve, propose, propose_id, ID};
use super::*;

fn ids(r: &Registry) -> Vec<u64> {
    r.members.keys().map(|m| u64::from(*m)).collect()
}

#[test]
fn members_are_the_records_and_follow_raft_only_within_it() {
    let (mut r, admin, _) = registry();
    assert!(r.roster.in_force);
    assert_eq!(ids(&r), vec![1, 2]);
    assert_eq!(r.roster.since(), Some(0));
    // A leader appends node 3 (and swaps node 2's keys for node 3's):
    // Raft's membership has it, the members do not.
    let mut three = nodes(3);
    three[1].1.identity = three[2].1.identity;
    r.membership(2, &three, &[1, 2, 3]);
    assert_eq!(ids(&r), vec![1, 2]);
    assert_eq!(r.voters.len(), 2);
    assert_eq!(r.members[&id(2)].identity, nodes(2)[1].1.identity);
    assert!(r.roster.raft_nodes.contains_key(&id(3)));
    // Nor does an entry that drops node 2 take its trust away.
    r.membership(3, &nodes(1), &[1]);
    assert_eq!(ids(&r), vec![1, 2]);
    assert_eq!(r.voters.len(), 2);
    r.membership(4, &three, &[1, 2, 3]);
    // A node statement by node 3 is refused on apply.
    assert!(refused(
        &apply(
            &mut r,
            T0,
            vec![statement(3, T0, 40, ClusterCommand::Tick {})]
        )[0]
    ));

    // The admin proposes node 3; nothing changes until the operators
    // (quorum 2) approve.
    let info = NodeInfo {
        hpke: Hex32([3; 32]),
        ..nodes(3)[2].1.clone()
    };
    let add = Change::AddNode {
        id: id(3),
        addr: info.addr.clone(),
        identity: info.identity,
        hpke: info.hpke,
        voter: true,
    };
    assert_eq!(
        apply(&mut r, T0, vec![propose(&admin, "r1", add, 2)]),
        vec![ok()]
    );
    assert_eq!(
        apply(&mut r, T0, vec![approve(&operator(1), "r2", ID)]),
        vec![ok()]
    );
    assert_eq!(ids(&r), vec![1, 2]);
    let before = r.audit.len();
    assert_eq!(
        apply(&mut r, T0, vec![approve(&operator(2), "r3", ID)]),
        vec![ok()]
    );
    // Approved and in Raft's membership: a member and a voter, under the
    // approved keys.
    assert_eq!(ids(&r), vec![1, 2, 3]);
    assert!(r.voters.contains(&id(3)));
    assert_eq!(r.members[&id(3)].identity, info.identity);
    assert_eq!(r.roster.identity_at(id(3), before), Some(info.identity));
    assert_eq!(
        apply(
            &mut r,
            T0,
            vec![statement(3, T0, 41, ClusterCommand::Tick {})]
        ),
        vec![ok()]
    );
    // Approving it again is refused.
    assert!(refused(
        &apply(&mut r, T0, vec![approve(&operator(1), "r4", ID)])[0]
    ));
}

#[test]
fn a_removal_and_its_history() {
    let (mut r, admin, _) = registry();
    let history_before = r.roster.history.len();
    // Node 2 holds no shares: its removal, approved by both operators.
    assert_eq!(
        apply(
            &mut r,
            T0,
            vec![
                propose(
                    &admin,
                    "d1",
                    Change::RemoveNode {
                        id: id(2),
                        despite_trees: false,
                    },
                    2
                ),
                approve(&operator(1), "d2", ID),
                approve(&operator(2), "d3", ID),
            ]
        ),
        vec![ok(), ok(), ok()]
    );
    assert_eq!(ids(&r), vec![1]);
    assert_eq!(r.roster.history.len(), history_before + 1);
    let at = r.roster.history.last().unwrap().at;
    // A member up to the change, not after it.
    assert!(r.roster.identity_at(id(2), at).is_some());
    assert!(r.roster.identity_at(id(2), at + 1).is_none());
    assert!(r.roster.identity_at(id(1), at + 1).is_some());
    // Raft's membership still lists node 2 (until the leader follows the
    // record): not a member.
    r.membership(3, &nodes(2), &[1, 2]);
    assert_eq!(ids(&r), vec![1]);
    // The last voter cannot go.
    let again = propose_id(
        &admin,
        "d4",
        Change::RemoveNode {
            id: id(1),
            despite_trees: false,
        },
        2,
        "ffeeddccbbaa99887766554433221100",
    );
    let CommandResponse::Batch { responses } = r.apply(
        8,
        &Proposal {
            rules: r.rules_to_stamp(),
            time_ms: T0,
            commands: vec![again],
        },
    ) else {
        panic!("a batch answer");
    };
    assert!(
        matches!(&responses[0], CommandResponse::Rejected { reason } if reason.contains("last voter")),
        "{responses:?}"
    );
}

/// The record survives a snapshot, and a snapshot from before the record
/// keeps Raft's membership.
#[test]
fn the_record_in_a_snapshot() {
    let (r, _, _) = registry();
    let bytes = serde_json::to_vec(&r).unwrap();
    let back: Registry = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back.roster, r.roster);
    assert_eq!(back.members, r.members);
    let mut old = serde_json::to_value(&r).unwrap();
    old.as_object_mut().unwrap().remove("roster");
    let back: Registry = serde_json::from_value(old).unwrap();
    assert!(!back.roster.in_force);
    assert_eq!(back.roster.raft_nodes, r.members);
}

/// The record starts as the nodes the init names, with the address and
/// keys each stated for itself: a node a leader slipped into Raft's
/// membership before init (and which signs anything) is left out; a
/// founder the leader demoted is kept; a founder the leader re-added with
/// an HPKE key of its own gets its own key in the record; a node that was
/// never a founding voter, or named with another identity, cannot be named.
#[test]
fn init_names_the_founding_members() {
    let admin = ClientKey::new("admin", SigningKey::from_bytes(&[9; 32]));
    let mut r = Registry::default();
    r.membership(1, &nodes(3), &[1, 2, 3]);
    // Node 2 removed and re-added with the leader's HPKE key, as a learner.
    r.membership(2, &nodes(1), &[1]);
    let mut swapped = nodes(3);
    swapped[1].1.hpke = Hex32([66; 32]);
    r.membership(3, &swapped, &[1, 3]);
    assert_eq!(r.members[&id(2)].hpke, Hex32([66; 32]));
    let init = |named| init_naming(&admin, named);
    let mut impostor = founders(&[1, 2]);
    impostor[1].info.identity = nodes(3)[2].1.identity;
    for (i, named) in [founders(&[1, 4]), impostor].into_iter().enumerate() {
        assert!(
            refused(
                &apply(
                    &mut r,
                    T0,
                    vec![members(&[1, 2, 3], 11 + i as u8, init(named))]
                )[0]
            ),
            "case {i}"
        );
    }
    assert!(r.clients.is_empty());
    assert_eq!(
        apply(
            &mut r,
            T0,
            vec![members(&[1, 2, 3], 20, init(founders(&[1, 2])))]
        ),
        vec![ok()]
    );
    assert_eq!(ids(&r), vec![1, 2]);
    assert!(r.voters.contains(&id(2)), "the demoted founder votes");
    assert_eq!(r.members[&id(2)].hpke, nodes(2)[1].1.hpke, "its own key");
    assert!(!r.roster.nodes.contains_key(&id(3)));
}

/// A log written under rules 1 (before the record) replays as it was
/// applied then: its init puts no record in force, and members follow
/// Raft's membership. Once an entry under rules 2 is applied, rules 1 are
/// refused.
#[test]
fn a_log_of_rules_1_replays_without_the_record() {
    let admin = ClientKey::new("admin", SigningKey::from_bytes(&[9; 32]));
    let mut r = Registry::default();
    r.membership(1, &nodes(2), &[1, 2]);
    let under = |r: &mut Registry, rules: u16, commands: Vec<Authorized>| {
        r.apply(
            9,
            &Proposal {
                rules,
                time_ms: T0,
                commands,
            },
        )
    };
    let legacy_init = init_naming(&admin, Vec::new());
    // An init made for rules 2 (it names its nodes), stamped with rules 1
    // by a leader to leave the record off: refused.
    let answer = under(&mut r, 1, vec![members(&[1, 2], 29, init_command(&admin))]);
    assert!(
        matches!(&answer, CommandResponse::Batch { responses } if refused(&responses[0])),
        "{answer:?}"
    );
    assert!(r.clients.is_empty());
    let answer = under(&mut r, 1, vec![members(&[1, 2], 30, legacy_init)]);
    assert_eq!(
        answer,
        CommandResponse::Batch {
            responses: vec![ok()]
        }
    );
    assert!(!r.clients.is_empty());
    assert!(!r.roster.in_force, "rules 1 had no record");
    r.membership(2, &nodes(3), &[1, 2, 3]);
    assert_eq!(ids(&r), vec![1, 2, 3], "members follow Raft's membership");
    // Rules 2 from here on; rules 1 no more.
    let tick = |nonce| statement(1, T0, nonce, ClusterCommand::Tick {});
    assert_eq!(
        under(&mut r, 2, vec![tick(31)]),
        CommandResponse::Batch {
            responses: vec![ok()]
        }
    );
    assert!(refused(&under(&mut r, 1, vec![tick(32)])));
    assert_eq!(r.rules, 2);
}
