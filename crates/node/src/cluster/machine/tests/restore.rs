//! A restored control plane takes nothing signed before the restore
//! (`clock::RestoreFloor`): the authorizations applied after the
//! checkpoint are forgotten with their nonces, and a leader (or anyone
//! holding one) must not get them applied again.

use super::*;
use crate::cluster::machine::clock::RESTORED;

fn boot(node: u64, nonce: u8, time_ms: u64, restored: Option<Hex32>) -> Authorized {
    let rules = Some(keyquorum_wire::control::APPLY_RULES);
    boot_statement(node, time_ms, nonce, rules, restored)
}

#[test]
fn nothing_signed_before_a_restore_is_taken_after_it() {
    let (r, admin, _user) = registry();
    // Signed after the checkpoint, applied, then lost with the log.
    let revoke = |nonce: &str, t: u64| {
        client(
            &admin,
            "POST",
            "https://n1:7000/v1/clients/user/revoke",
            b"",
            t,
            nonce,
            ClusterCommand::RevokeClient {
                name: "user".into(),
            },
        )
    };
    let forgotten = revoke("r1", T0 + 10_000);
    // Restored without the mark (the gap this closes): it applies again.
    let mut unmarked = r.clone();
    assert_eq!(
        apply(&mut unmarked, T0 + 10_000, vec![forgotten.clone()]),
        vec![ok()]
    );

    let mut r = r;
    let id = Hex32([0x5e; 32]);
    r.clock.begin_restore(id);
    // Until a voter boots on the restored state, nothing: not the
    // forgotten command, not a tick, not a boot that does not name this
    // restore (one captured before it), nor one naming another.
    for (what, a) in [
        ("the forgotten command", forgotten.clone()),
        (
            "a tick",
            statement(2, T0 + 20_000, 90, ClusterCommand::Tick {}),
        ),
        ("a boot from before", boot(1, 91, T0 + 20_000, None)),
        (
            "a boot naming another restore",
            boot(1, 92, T0 + 20_000, Some(Hex32([1; 32]))),
        ),
    ] {
        let got = apply(&mut r, T0 + 20_000, vec![a]);
        assert!(
            matches!(&got[0], CommandResponse::Rejected { reason } if reason.contains(RESTORED)),
            "{what}: {got:?}"
        );
    }
    assert_eq!(r.clock.restore_floor().and_then(|f| f.floor), None);
    // Voter 2 starts on it at T0 + 60 s: of two voters (f = 0) one boot
    // sets the floor.
    assert_eq!(
        apply(
            &mut r,
            T0 + 60_000,
            vec![boot(2, 93, T0 + 60_000, Some(id))]
        ),
        vec![ok()]
    );
    assert_eq!(
        r.clock.restore_floor().and_then(|f| f.floor),
        Some(T0 + 60_000)
    );
    // The forgotten command is still within the clock's window, and
    // refused: made before the restore.
    let got = apply(&mut r, T0 + 61_000, vec![forgotten]);
    assert!(
        matches!(&got[0], CommandResponse::Rejected { reason } if reason.contains("restored")),
        "{got:?}"
    );
    assert!(r.clients.get("user").is_some_and(|c| !c.revoked));
    // Nor within the skew past it (a client's time was taken up to 30 s
    // ahead of the clock before the restore); what is signed after that
    // is taken.
    assert!(refused(
        &apply(&mut r, T0 + 61_000, vec![revoke("r2", T0 + 89_999)])[0]
    ));
    assert_eq!(
        apply(&mut r, T0 + 90_000, vec![revoke("r3", T0 + 90_000)]),
        vec![ok()]
    );
    // Voter 1's boot on it comes later; a statement of voter 1 from
    // before the floor (and its skew) does not.
    assert!(refused(
        &apply(
            &mut r,
            T0 + 92_000,
            vec![statement(1, T0 + 80_000, 94, ClusterCommand::Tick {})]
        )[0]
    ));
    assert_eq!(
        apply(
            &mut r,
            T0 + 92_000,
            vec![boot(1, 95, T0 + 92_000, Some(id))]
        ),
        vec![ok()]
    );
    // The mark round-trips through a snapshot, and is dropped once the
    // clock is a window past the floor (nothing older is fresh then).
    let back: Registry = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
    assert_eq!(back.clock.restore_floor(), r.clock.restore_floor());
    let late = T0 + 60_000 + 301_000;
    assert_eq!(
        apply(
            &mut r,
            late,
            vec![
                statement(1, late, 96, ClusterCommand::Tick {}),
                statement(2, late, 97, ClusterCommand::Tick {})
            ]
        ),
        vec![ok(), ok()]
    );
    assert_eq!(r.clock.restore_floor(), None);
}

/// The same checkpoint restored twice (a first restore gone wrong): the
/// second restore's label makes it another restore, so the voters' boots
/// on the first, which a lying leader kept, count for nothing, and the
/// commands signed between the two restores stay refused.
#[test]
fn boots_on_an_earlier_restore_of_the_same_file_count_for_nothing() {
    let (checkpoint, admin, _user) = registry();
    let (first, second) = (Hex32([1; 32]), Hex32([2; 32]));
    let mut r = checkpoint.clone();
    r.clock.begin_restore(first);
    let early = boot(2, 80, T0 + 60_000, Some(first));
    assert_eq!(apply(&mut r, T0 + 60_000, vec![early.clone()]), vec![ok()]);
    // Between the two restores the cluster ran: a command signed then.
    let between = client(
        &admin,
        "POST",
        "https://n1:7000/v1/clients/user/revoke",
        b"",
        T0 + 120_000,
        "b1",
        ClusterCommand::RevokeClient {
            name: "user".into(),
        },
    );
    let mut r = checkpoint;
    r.clock.begin_restore(second);
    let got = apply(&mut r, T0 + 200_000, vec![early]);
    assert!(refused(&got[0]), "{got:?}");
    assert_eq!(r.clock.restore_floor().and_then(|f| f.floor), None);
    assert!(refused(
        &apply(&mut r, T0 + 200_000, vec![between.clone()])[0]
    ));
    // The voters' boots on the second restore set its floor, past it.
    assert_eq!(
        apply(
            &mut r,
            T0 + 300_000,
            vec![boot(1, 81, T0 + 300_000, Some(second))]
        ),
        vec![ok()]
    );
    assert!(refused(&apply(&mut r, T0 + 300_000, vec![between])[0]));
}
