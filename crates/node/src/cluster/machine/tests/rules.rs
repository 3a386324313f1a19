//! Apply rules: newer rules are taken up only once every member announced
//! them; a replica meets rules the cluster took up and it does not know
//! only by stopping (`Machine::check`), never by refusing and going on.

use keyquorum_store::raft::Machine;

use super::*;

fn boot(node: u64, nonce: u8, rules: Option<u16>) -> Authorized {
    boot_statement(node, T0, nonce, rules, None)
}

fn boot_at(node: u64, time_ms: u64, nonce: u8, rules: Option<u16>) -> Authorized {
    boot_statement(node, time_ms, nonce, rules, None)
}

fn proposal(rules: u16, commands: Vec<Authorized>) -> Proposal {
    Proposal {
        rules,
        time_ms: T0,
        commands,
    }
}

fn applied(r: &CommandResponse) -> bool {
    matches!(r, CommandResponse::Batch { responses } if responses.iter().all(|x| *x == ok()))
}

/// A log at rules 2 (an earlier build's) with nodes 1 and 2.
fn at_rules_2() -> Registry {
    let admin = ClientKey::new("admin", SigningKey::from_bytes(&[9; 32]));
    let mut r = Registry::default();
    r.membership(1, &nodes(2), &[1, 2]);
    assert!(applied(&r.apply(
        2,
        &proposal(2, vec![members(&[1, 2], 3, init_command(&admin))])
    )));
    assert_eq!(r.rules, 2);
    r
}

#[test]
fn newer_rules_are_taken_up_once_every_member_announced_them() {
    let mut r = at_rules_2();
    // Nobody announced: a leader stamps rules 2, and an entry stamped 3 is
    // refused by every replica alike (no replica stops over it).
    assert_eq!(r.rules_to_stamp(), 2);
    let tick = |nonce| statement(1, T0, nonce, ClusterCommand::Tick {});
    assert!(r.check(4, &proposal(3, vec![tick(40)])).is_ok());
    let before = json(&r);
    assert!(refused(&r.apply(4, &proposal(3, vec![tick(40)]))));
    assert_eq!(json(&r), before);
    // Node 1 runs the new build (its boot, under rules 2, announces 3);
    // node 2 does not yet: still rules 2.
    assert!(applied(
        &r.apply(5, &proposal(2, vec![boot(1, 41, Some(3))]))
    ));
    assert_eq!(r.announced.get(&id(1)).and_then(|a| a.rules), Some(3));
    assert_eq!(r.rules_to_stamp(), 2);
    let answer = r.apply(6, &proposal(3, vec![tick(42)]));
    assert!(
        matches!(&answer, CommandResponse::Rejected { reason } if reason.contains("[2]")),
        "{answer:?}"
    );
    // Node 2 announces too: rules 3 are taken up.
    assert!(applied(
        &r.apply(7, &proposal(2, vec![boot(2, 43, Some(3))]))
    ));
    assert_eq!(r.rules_to_stamp(), 3);
    assert!(applied(&r.apply(8, &proposal(3, vec![tick(44)]))));
    assert_eq!(r.rules, 3);
    // And there is no going back to 2.
    assert!(refused(&r.apply(9, &proposal(2, vec![tick(45)]))));
    // A node that restarts on an old build (no announcement) does not
    // take the rules back either: the log is at 3.
    assert!(applied(&r.apply(10, &proposal(3, vec![boot(2, 46, None)]))));
    assert_eq!(r.rules_to_stamp(), 3);
}

#[test]
fn a_replica_stops_at_rules_the_cluster_took_up_and_it_does_not_know() {
    let mut r = at_rules_2();
    let newer = APPLY_RULES + 1;
    let tick = proposal(newer, vec![statement(1, T0, 50, ClusterCommand::Tick {})]);
    // A leader stamps rules no member announced: refused alike, no stop.
    assert!(r.check(4, &tick).is_ok());
    assert!(refused(&r.apply(4, &tick)));
    // Every member announced them (builds newer than this one): this
    // replica, which does not know them, stops rather than refuse the
    // entry the others apply.
    assert!(applied(&r.apply(
        5,
        &proposal(2, vec![boot(1, 51, Some(newer)), boot(2, 52, Some(newer))])
    )));
    let why = r.check(6, &tick).unwrap_err();
    assert!(why.contains("upgrade this node"), "{why}");
    // Rules it knows, it applies as before.
    assert!(r
        .check(
            6,
            &proposal(
                APPLY_RULES,
                vec![statement(1, T0, 53, ClusterCommand::Tick {})]
            )
        )
        .is_ok());
    // A new log's first entry may set rules up to 3 only: a leader of a
    // forming cluster (whose members are Raft's, its to pick) cannot stop
    // the replicas with rules none of them knows.
    let mut fresh = Registry::default();
    assert_eq!(fresh.rules_to_stamp(), 3);
    assert!(fresh.check(1, &tick).is_ok());
    assert!(refused(&fresh.apply(1, &tick)));
    fresh.membership(1, &nodes(1), &[1]);
    assert!(applied(
        &fresh.apply(2, &proposal(3, vec![boot(1, 54, Some(newer))]))
    ));
    assert!(
        fresh.check(3, &tick).is_ok(),
        "not before the record is in force"
    );
    assert!(refused(&fresh.apply(3, &tick)));
}

/// A leader that appends a node's older boot statement after its newer one
/// (both validly signed, both fresh) does not bring back what the older
/// build announced; a state restored from before the rules were recorded
/// (rules 0, with clients) is not a forming cluster.
#[test]
fn a_late_boot_statement_does_not_replace_a_newer_one() {
    let mut r = at_rules_2();
    assert!(applied(
        &r.apply(5, &proposal(2, vec![boot_at(1, T0 + 2, 60, Some(3))]))
    ));
    assert!(applied(
        &r.apply(6, &proposal(2, vec![boot_at(1, T0 + 1, 61, None)]))
    ));
    assert_eq!(r.announced[&id(1)].rules, Some(3));
    assert!(applied(
        &r.apply(7, &proposal(2, vec![boot_at(1, T0 + 3, 62, None)]))
    ));
    assert_eq!(r.announced[&id(1)].rules, None);

    let mut restored = at_rules_2();
    restored.rules = 0;
    assert_eq!(restored.rules_to_stamp(), 2);
}

/// From rules 5 a head is applied only if it is one of the log's recent
/// ends, the same on a replica that applied the log and on one that
/// loaded a snapshot taken before the rules changed.
#[test]
fn audit_heads_are_checked_from_rules_5_alike_on_every_replica() {
    use crate::cluster::audit::head_signing_bytes;
    let each_refused = |x: &CommandResponse| matches!(x, CommandResponse::Batch { responses } if responses.iter().all(refused));
    let mut r = at_rules_2();
    let head = |r: &Registry, node: u64, nonce: u8, seq: u64, root: bool| {
        let hash = r.audit.last_hash();
        let root = root.then(|| r.audit.root());
        let signature = node_key(node).sign(&head_signing_bytes(seq, &hash, root.as_ref()));
        statement(
            node,
            T0,
            nonce,
            ClusterCommand::SignHead {
                head: keyquorum_wire::control::SignedHead {
                    seq,
                    hash,
                    signer: id(node),
                    signature: Hex(signature.to_bytes().to_vec()),
                    root,
                },
            },
        )
    };
    assert!(applied(&r.apply(
        4,
        &proposal(2, vec![statement(1, T0, 60, audit(1, "a"))])
    )));
    let end = r.audit.len() - 1;
    let old = head(&r, 1, 61, end, false);
    assert!(applied(&r.apply(5, &proposal(2, vec![old]))));
    for (i, n) in [(6, 1), (7, 2)] {
        assert!(applied(&r.apply(
            i,
            &proposal(2, vec![boot(n, 62 + n as u8, Some(APPLY_RULES))])
        )));
    }
    assert_eq!(r.rules_to_stamp(), APPLY_RULES);
    // Another replica loads a snapshot of this state.
    let mut copy: Registry = serde_json::from_str(&json(&r)).unwrap();
    for replica in [&mut r, &mut copy] {
        // Rules 5: an audit statement, then a member's head at its end.
        assert!(applied(&replica.apply(
            8,
            &proposal(5, vec![statement(2, T0, 70, audit(2, "b"))])
        )));
        let end = replica.audit.len() - 1;
        let good = head(replica, 2, 71, end, true);
        assert!(applied(&replica.apply(9, &proposal(5, vec![good]))));
        // A head at an end from before the rules, or without its root, or
        // past the log, is refused.
        let stale = head(replica, 1, 72, end - 1, true);
        assert!(each_refused(&replica.apply(10, &proposal(5, vec![stale]))));
        let rootless = head(replica, 1, 73, end, false);
        assert!(each_refused(
            &replica.apply(11, &proposal(5, vec![rootless]))
        ));
        let ahead = head(replica, 1, 74, end + 1_000, true);
        assert!(each_refused(&replica.apply(12, &proposal(5, vec![ahead]))));
        // An empty audit statement is refused.
        let empty = statement(1, T0, 75, ClusterCommand::Audit { events: vec![] });
        assert!(each_refused(&replica.apply(13, &proposal(5, vec![empty]))));
        // From rules 6 a member's head that conflicts with the log (past
        // it) is kept as evidence of the conflict, not as a head.
        let heads = replica.audit.head_count();
        let ahead = head(replica, 1, 76, end + 1_000, true);
        assert!(applied(
            &replica.apply(14, &proposal(APPLY_RULES, vec![ahead]))
        ));
        assert_eq!(replica.audit.head_count(), heads);
        assert_eq!(
            replica.audit.conflicts().get(&id(1)).map(|h| h.seq),
            Some(end + 1_000)
        );
    }
    assert_eq!(json(&r), json(&copy));
    assert_eq!(r.audit.signed_by(id(2)), Some(r.audit.len() - 1));
}

/// A state applied under rules this build does not know (a checkpoint or
/// snapshot a newer build wrote) is refused as a whole; its own rules and
/// those before are taken.
#[test]
fn a_state_under_rules_this_build_does_not_know_is_refused() {
    let mut r = at_rules_2();
    assert!(r.check_state().is_ok());
    r.rules = APPLY_RULES;
    assert!(r.check_state().is_ok());
    r.rules = APPLY_RULES + 1;
    let why = r.check_state().unwrap_err();
    assert!(
        why.contains(&format!(
            "applied under apply rules {}, and this build knows up to {APPLY_RULES}: run a build \
             that knows them (a node cannot go back past rules its cluster took up)",
            APPLY_RULES + 1
        )),
        "{why}"
    );
    // As it comes out of a snapshot.
    let back: Registry = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
    assert!(back.check_state().is_err());
}
