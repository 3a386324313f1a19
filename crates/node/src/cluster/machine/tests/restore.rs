//! A restored control plane takes nothing signed before the restore
//! (`clock::RestoreFloor`): the authorizations applied after the
//! checkpoint are forgotten with their nonces, and a leader (or anyone
//! holding one) must not get them applied again.

use super::*;

fn boot(node: u64, nonce: u8, time_ms: u64, restored: Option<Hex32>) -> Authorized {
    statement(
        node,
        time_ms,
        nonce,
        ClusterCommand::Boot {
            boot: Hex32([nonce; 32]),
            rules: Some(keyquorum_wire::control::APPLY_RULES),
            measurement: None,
            restored,
        },
    )
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
        assert!(refused(&apply(&mut r, T0 + 20_000, vec![a])[0]), "{what}");
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
    // What is signed after it is taken.
    assert_eq!(
        apply(&mut r, T0 + 61_000, vec![revoke("r2", T0 + 61_000)]),
        vec![ok()]
    );
    // Voter 1's boot on it comes later; a statement of voter 1 from
    // before the floor does not.
    assert!(refused(
        &apply(
            &mut r,
            T0 + 62_000,
            vec![statement(1, T0 + 59_000, 94, ClusterCommand::Tick {})]
        )[0]
    ));
    assert_eq!(
        apply(
            &mut r,
            T0 + 62_000,
            vec![boot(1, 95, T0 + 62_000, Some(id))]
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
