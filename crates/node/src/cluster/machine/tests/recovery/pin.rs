//! PIN-protected secrets on apply (rules 11).

use super::*;

/// `who`'s begin for alice (`body`), committing PIN key `key` endorsed by
/// nodes 1 and 2.
fn begin_command(who: &ClientKey, nonce: &str, key: KeyRecord, body: &str) -> Authorized {
    let endorsements = endorse(&key, &[1, 2]);
    client(
        who,
        "POST",
        "https://n1:7000/v1/recovery/accounts/alice/secret/begin",
        body.as_bytes(),
        T0,
        nonce,
        RecoveryCommand::PinKey {
            account: "alice".into(),
            key: Box::new(key),
            endorsements,
        },
    )
}

/// `who`'s registration of alice's secret (`body`), committing `rec`.
fn register_command(
    who: &ClientKey,
    nonce: &str,
    rec: keyquorum_wire::recovery::SecretRecord,
    body: &str,
) -> Authorized {
    client(
        who,
        "POST",
        "https://n1:7000/v1/recovery/accounts/alice/secret",
        body.as_bytes(),
        T0,
        nonce,
        RecoveryCommand::SecretRegister {
            record: Box::new(rec),
        },
    )
}

/// PIN-protected secrets on apply (rules 11): the PIN key only as its
/// enroller or an admin asked, on the account's guardians, once; the
/// record only as asked, well-formed; a guess only as the client that
/// has the recovery permission signed it; an unlock statement only from a
/// guardian, for the last guess, and `t` of them restart the count; past
/// the limit the record is destroyed.
pub(super) fn pin_secrets(r: &mut Registry, admin: &ClientKey, user: &ClientKey) {
    use keyquorum_core::oprf::reset::request_id;
    use keyquorum_wire::recovery::{GuessRecord, PinTag, SealedShare, SecretRecord, StretchParams};
    let pids = [1u16, 2]
        .iter()
        .map(|i| keyquorum_core::ParticipantId::from(std::num::NonZeroU16::new(*i).unwrap()))
        .collect();
    let holders = keyquorum_core::local::dkg::<keyquorum_core::Ristretto255, _>(
        keyquorum_core::SessionId([5; 32]),
        2,
        &pids,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let g = &holders.group;
    let pin_key = |name: &str, members: Vec<NodeId>| KeyRecord {
        name: name.into(),
        suite: SuiteName::Ristretto255,
        threshold: 2,
        members,
        public_key: Hex(g.public_key_bytes()),
        group_key: Hex(g.to_bytes()),
        epoch: 1,
        session: Hex32([8; 32]),
        created_ms: T0,
    };
    let begin_body = format!(r#"{{"blinded_element":"{}"}}"#, "11".repeat(32));
    let begin =
        |who: &ClientKey, nonce: &str, key: KeyRecord| begin_command(who, nonce, key, &begin_body);
    for (what, a) in [
        (
            "a client that did not enrol it",
            begin(user, "p1", pin_key("pin.alice", vec![id(1), id(2)])),
        ),
        (
            "another name",
            begin(admin, "p2", pin_key("pin.bob", vec![id(1), id(2)])),
        ),
        (
            "other members",
            begin(admin, "p3", pin_key("pin.alice", vec![id(1), id(3)])),
        ),
    ] {
        assert!(refused(&apply(r, T0, vec![a])[0]), "{what}");
    }
    let good = begin(admin, "p4", pin_key("pin.alice", vec![id(1), id(2)]));
    assert_eq!(apply(r, T0, vec![good]), vec![ok()]);
    assert!(r.recovery.pin_keys.contains_key("alice"));
    let again = begin(admin, "p5", pin_key("pin.alice", vec![id(1), id(2)]));
    assert!(refused(&apply(r, T0, vec![again])[0]), "a second PIN key");

    let stretch = StretchParams {
        m_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };
    let tag = |n: u64, v: u8| PinTag {
        node: id(n),
        value: Hex32([v; 32]),
    };
    let share = |n: u64| SealedShare {
        node: id(n),
        enc: Hex32([3; 32]),
        sealed: Hex(vec![4; 48]),
    };
    let body_of = |s: &SecretRecord| {
        serde_json::json!({
            "version": hex::encode(&s.version.0),
            "epoch": s.epoch,
            "guesses": s.guesses,
            "stretch": s.stretch,
            "salt": hex::encode(&s.salt.0),
            "commitments": s.commitments,
            "ciphertext": hex::encode(&s.ciphertext.0),
            "shares": s.shares,
        })
        .to_string()
    };
    let record = |guesses: u16| SecretRecord {
        account: "alice".into(),
        version: Hex(vec![1; 16]),
        epoch: 1,
        guesses,
        used: 0,
        stretch,
        salt: Hex(vec![2; 16]),
        commitments: vec![tag(1, 5), tag(2, 6)],
        ciphertext: Hex(vec![7; 40]),
        shares: vec![share(1), share(2)],
        registered_by: "admin".into(),
        last_guess: None,
        unlocked_by: Vec::new(),
        destroyed: false,
        generation: 1,
    };
    let register = |who: &ClientKey, nonce: &str, rec: SecretRecord, body: String| {
        register_command(who, nonce, rec, &body)
    };
    let with = |nonce: &str, f: &dyn Fn(&mut SecretRecord)| {
        let mut x = record(2);
        f(&mut x);
        let body = body_of(&x);
        register(admin, nonce, x, body)
    };
    let asked = record(2);
    let cases = vec![
        (
            "another client",
            register(
                user,
                "s1",
                {
                    let mut x = record(2);
                    x.registered_by = "user".into();
                    x
                },
                body_of(&record(2)),
            ),
        ),
        (
            "a record other than the body",
            register(
                admin,
                "s2",
                {
                    let mut x = record(2);
                    x.guesses = 200;
                    x
                },
                body_of(&asked),
            ),
        ),
        ("no guesses", with("s3", &|x| x.guesses = 0)),
        ("a cheap Argon2id", with("s4", &|x| x.stretch.m_kib = 1024)),
        (
            "a guardian's commitment missing",
            with("s5", &|x| {
                x.commitments.pop();
            }),
        ),
        (
            "a share for a stranger",
            with("s6", &|x| x.shares[1].node = id(3)),
        ),
        (
            "a secret longer than 128 bytes",
            with("s7", &|x| x.ciphertext = Hex(vec![7; 145])),
        ),
        ("a short salt", with("s8", &|x| x.salt = Hex(vec![2; 15]))),
        ("guesses already used", with("s9", &|x| x.used = 1)),
        ("another generation", with("s10", &|x| x.epoch = 2)),
    ];
    for (what, a) in cases {
        assert!(refused(&apply(r, T0, vec![a])[0]), "{what}");
    }
    assert!(r.recovery.secrets.is_empty());
    assert_eq!(apply(r, T0, vec![with("s11", &|_| {})]), vec![ok()]);

    let digest = |b: &[u8]| Hex32(<sha2::Sha256 as sha2::Digest>::digest(b).into());
    let guess_body = |el: u8| {
        format!(
            r#"{{"version":"{}","blinded_element":"{}"}}"#,
            "01".repeat(16),
            format!("{el:02x}").repeat(32)
        )
    };
    let guess = |who: &ClientKey, name: &str, nonce: &str, el: u8, rec: GuessRecord| {
        let _ = name;
        client(
            who,
            "POST",
            "https://n1:7000/v1/recovery/accounts/alice/secret/guess",
            guess_body(el).as_bytes(),
            T0,
            nonce,
            RecoveryCommand::PinGuess {
                account: "alice".into(),
                guess: rec,
            },
        )
    };
    let rec = |client: &str, nonce: &str, el: u8| GuessRecord {
        id: Hex(request_id(client, nonce).to_vec()),
        client: client.into(),
        blinded: digest(&[el; 32]),
    };
    for (what, a) in [
        (
            "no recovery permission",
            guess(user, "user", "g1", 9, rec("user", "g1", 9)),
        ),
        (
            "another guess id",
            guess(admin, "admin", "g2", 9, rec("admin", "gX", 9)),
        ),
        (
            "another element",
            guess(admin, "admin", "g3", 9, rec("admin", "g3", 8)),
        ),
        (
            "another client named",
            guess(admin, "admin", "g4", 9, rec("user", "g4", 9)),
        ),
    ] {
        assert!(refused(&apply(r, T0, vec![a])[0]), "{what}");
    }
    assert_eq!(r.recovery.secrets["alice"].used, 0);
    let g1 = rec("admin", "g5", 9);
    assert_eq!(
        apply(r, T0, vec![guess(admin, "admin", "g5", 9, g1.clone())]),
        vec![ok()]
    );
    assert_eq!(r.recovery.secrets["alice"].used, 1);
    // Unlock statements: a stranger's, or for another guess, do nothing;
    // one guardian is not enough; two restart the count.
    let unlocked = |node: u64, nonce: u8, gid: &Hex| {
        statement(
            node,
            T0,
            nonce,
            RecoveryCommand::PinUnlocked {
                account: "alice".into(),
                guess_id: gid.clone(),
            },
        )
    };
    assert!(
        refused(&apply(r, T0, vec![unlocked(3, 201, &g1.id)])[0]),
        "a stranger"
    );
    assert!(
        refused(&apply(r, T0, vec![unlocked(1, 202, &Hex(vec![0; 16]))])[0]),
        "another guess"
    );
    assert_eq!(apply(r, T0, vec![unlocked(1, 203, &g1.id)]), vec![ok()]);
    assert_eq!(apply(r, T0, vec![unlocked(1, 204, &g1.id)]), vec![ok()]);
    assert_eq!(r.recovery.secrets["alice"].used, 1, "one guardian, twice");
    assert_eq!(apply(r, T0, vec![unlocked(2, 205, &g1.id)]), vec![ok()]);
    assert_eq!(r.recovery.secrets["alice"].used, 0);
    // Two guesses allowed: the third destroys the record.
    for (n, nonce) in [(1, "g6"), (2, "g7")] {
        let g = rec("admin", nonce, 9);
        assert_eq!(
            apply(r, T0, vec![guess(admin, "admin", nonce, 9, g)]),
            vec![ok()]
        );
        assert_eq!(r.recovery.secrets["alice"].used, n);
    }
    let g = rec("admin", "g8", 9);
    assert_eq!(
        apply(r, T0, vec![guess(admin, "admin", "g8", 9, g)]),
        vec![ok()]
    );
    let s = &r.recovery.secrets["alice"];
    assert!(
        s.destroyed && s.shares.is_empty() && s.commitments.is_empty() && s.ciphertext.0.is_empty()
    );
    let g = rec("admin", "g9", 9);
    assert!(
        refused(&apply(r, T0, vec![guess(admin, "admin", "g9", 9, g)])[0]),
        "after destruction"
    );
    // The registry round-trips through a snapshot with the secret.
    let back: Registry = serde_json::from_slice(&serde_json::to_vec(&*r).unwrap()).unwrap();
    assert_eq!(back.recovery, r.recovery);
    register_again(r, admin, user, &pin_key, &record, &body_of);
}

/// Registering a secret again (rules 16): a new PIN key generation only
/// as the enroller or an admin asked, naming the record it replaces; the
/// new record only on the latest generation, naming it too; the replaced
/// record's key leaves the registry; a later key never registered is
/// replaced by a newer one, the live record's key is not.
fn register_again(
    r: &mut Registry,
    admin: &ClientKey,
    user: &ClientKey,
    pin_key: &dyn Fn(&str, Vec<NodeId>) -> KeyRecord,
    record: &dyn Fn(u16) -> keyquorum_wire::recovery::SecretRecord,
    body_of: &dyn Fn(&keyquorum_wire::recovery::SecretRecord) -> String,
) {
    use keyquorum_wire::recovery::SecretRecord;
    let old = r.recovery.secrets["alice"].clone();
    assert!(old.destroyed && old.generation == 1);
    let replace = |v: &Hex| format!(r#","replace":"{}""#, hex::encode(&v.0));
    let begin = |who: &ClientKey, nonce: &str, key: KeyRecord, extra: &str| {
        let body = format!(r#"{{"blinded_element":"{}"{extra}}}"#, "11".repeat(32));
        begin_command(who, nonce, key, &body)
    };
    let both = || vec![id(1), id(2)];
    let named = replace(&old.version);
    // A log still at rules 15 (a member on an older build) refuses it.
    let at_15 = Proposal {
        rules: 15,
        time_ms: T0,
        commands: vec![begin(admin, "q0", pin_key("pin.alice~2", both()), &named)],
    };
    let mut before = r.clone();
    before.rules = 15;
    let CommandResponse::Batch { responses } = before.apply(7, &at_15) else {
        panic!("a proposal at rules 15 is applied");
    };
    assert!(refused(&responses[0]), "before rules 16");
    // Nor, at rules 15, a registration whose body carries a field older
    // builds refuse (they decide alike only if this one refuses it too),
    // even with the value that means nothing new.
    let mut legacy = record(3);
    legacy.version = Hex(vec![0x44; 16]);
    let body = format!(
        "{},\"generation\":1}}",
        body_of(&legacy).trim_end_matches('}')
    );
    let at_15 = Proposal {
        rules: 15,
        time_ms: T0,
        commands: vec![register_command(admin, "q00", legacy, &body)],
    };
    let CommandResponse::Batch { responses } = before.apply(7, &at_15) else {
        panic!("a proposal at rules 15 is applied");
    };
    assert!(
        matches!(&responses[0], CommandResponse::Rejected { reason } if reason.contains("apply rules 16")),
        "{:?}",
        responses[0]
    );
    for (what, a) in [
        (
            "no record named",
            begin(admin, "q1", pin_key("pin.alice~2", both()), ""),
        ),
        (
            "another record named",
            begin(
                admin,
                "q2",
                pin_key("pin.alice~2", both()),
                &replace(&Hex(vec![9; 16])),
            ),
        ),
        (
            "a client that did not enrol it",
            begin(user, "q3", pin_key("pin.alice~2", both()), &named),
        ),
        (
            "the first generation again",
            begin(admin, "q4", pin_key("pin.alice", both()), &named),
        ),
        (
            "a generation skipped",
            begin(admin, "q5", pin_key("pin.alice~3", both()), &named),
        ),
        (
            "other members",
            begin(
                admin,
                "q6",
                pin_key("pin.alice~2", vec![id(1), id(3)]),
                &named,
            ),
        ),
    ] {
        assert!(refused(&apply(r, T0, vec![a])[0]), "{what}");
    }
    assert_eq!(r.recovery.pin_generation("alice"), 1);
    let good = begin(admin, "q7", pin_key("pin.alice~2", both()), &named);
    assert_eq!(apply(r, T0, vec![good]), vec![ok()]);
    assert_eq!(r.recovery.pin_generation("alice"), 2);
    assert!(r.keys.records.contains_key("pin.alice~2"));
    // The destroyed record is still the account's until the new one
    // commits (its key's shares are already erased: nothing in use).
    assert!(r.keys.records.contains_key("pin.alice"));
    assert_eq!(r.recovery.pin_generations_in_use("alice"), vec![2]);

    let register = |who: &ClientKey, nonce: &str, rec: SecretRecord, body: String| {
        register_command(who, nonce, rec, &body)
    };
    let again = |nonce: &str, f: &dyn Fn(&mut SecretRecord), extra: &str| {
        let mut x = record(3);
        x.version = Hex(vec![0x22; 16]);
        x.generation = 2;
        f(&mut x);
        let body = body_of(&x);
        let body = match x.generation {
            1 => format!("{}{extra}}}", body.trim_end_matches('}')),
            g => format!("{},\"generation\":{g}{extra}}}", body.trim_end_matches('}')),
        };
        register(admin, nonce, x, body)
    };
    for (what, a) in [
        ("no record named", again("r1", &|_| {}, "")),
        (
            "another record named",
            again("r2", &|_| {}, &replace(&Hex(vec![9; 16]))),
        ),
        (
            "the old key's generation",
            again("r3", &|x| x.generation = 1, &named),
        ),
        (
            "the replaced registration's id",
            again("r4", &|x| x.version = old.version.clone(), &named),
        ),
    ] {
        assert!(refused(&apply(r, T0, vec![a])[0]), "{what}");
    }
    assert_eq!(apply(r, T0, vec![again("r5", &|_| {}, &named)]), vec![ok()]);
    let s = &r.recovery.secrets["alice"];
    assert!(!s.destroyed && s.generation == 2 && s.used == 0 && s.version.0 == vec![0x22; 16]);
    assert!(
        !r.keys.records.contains_key("pin.alice"),
        "the replaced record's key retired"
    );
    assert_eq!(r.recovery.pin_generations_in_use("alice"), vec![2]);
    assert!(
        refused(
            &apply(
                r,
                T0,
                vec![again("r6", &|x| x.version = Hex(vec![0x33; 16]), &named)]
            )[0]
        ),
        "the record just replaced, named again"
    );

    // A third generation begun and never registered, then a fourth: the
    // third leaves the registry, the live record's (second) stays.
    let live = replace(&Hex(vec![0x22; 16]));
    assert_eq!(
        apply(
            r,
            T0,
            vec![begin(admin, "q8", pin_key("pin.alice~3", both()), &live)]
        ),
        vec![ok()]
    );
    assert_eq!(r.recovery.pin_generations_in_use("alice"), vec![3, 2]);
    assert_eq!(
        apply(
            r,
            T0,
            vec![begin(admin, "q9", pin_key("pin.alice~4", both()), &live)]
        ),
        vec![ok()]
    );
    assert!(!r.keys.records.contains_key("pin.alice~3"));
    assert!(
        r.keys.records.contains_key("pin.alice~2") && r.keys.records.contains_key("pin.alice~4")
    );
    assert_eq!(r.recovery.pin_generations_in_use("alice"), vec![4, 2]);
    let back: Registry = serde_json::from_slice(&serde_json::to_vec(&*r).unwrap()).unwrap();
    assert_eq!(back.recovery, r.recovery);
}
