//! Accounts on apply (rules 9): `POST /v1/recovery/accounts` enrols
//! exactly the account a client with the `recovery` permission (or an
//! admin) asked for, with its guardians as every replica computes them
//! and its Ed25519 reset key on exactly those guardians; a coordinator
//! cannot change the device key, the channels, the guardians or the key.

use keyquorum_core::codec::Encode;
use keyquorum_wire::api::SuiteName;
use keyquorum_wire::control::KeyRecord;
use keyquorum_wire::recovery::{AccountRecord, RecoveryCommand};

use super::*;

mod pin;
use pin::pin_secrets;

#[test]
fn an_account_is_what_its_enroller_asked_for_from_rules_9() {
    let (mut r, admin, user) = registry();
    let pids = [1u16, 2]
        .iter()
        .map(|i| keyquorum_core::ParticipantId::from(std::num::NonZeroU16::new(*i).unwrap()))
        .collect();
    let holders = keyquorum_core::local::dkg::<keyquorum_core::Ed25519, _>(
        keyquorum_core::SessionId([4; 32]),
        2,
        &pids,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let ed = &holders.group;
    let key = |name: &str, suite: SuiteName, members: Vec<NodeId>| KeyRecord {
        name: name.into(),
        suite,
        threshold: 2,
        members,
        public_key: Hex(ed.public_key_bytes()),
        group_key: Hex(ed.to_bytes()),
        epoch: 1,
        session: Hex32([9; 32]),
        created_ms: T0,
    };
    let account = |device: u8, channels: &[&str], by: &str| AccountRecord {
        account: "alice".into(),
        guardians: vec![id(1), id(2)],
        threshold: 2,
        channels: channels.iter().map(|c| c.to_string()).collect(),
        device_key: Hex32([device; 32]),
        created_by: by.into(),
        measurements: None,
        version: 0,
    };
    let body = format!(
        r#"{{"account":"alice","channels":["email:a@example.com","app"],"device_key":"{}"}}"#,
        "07".repeat(32)
    );
    let put = |who: &ClientKey, nonce: &str, account: AccountRecord, key: KeyRecord| {
        let endorsements = endorse(&key, &[1, 2]);
        client(
            who,
            "POST",
            "https://n1:7000/v1/recovery/accounts",
            body.as_bytes(),
            T0,
            nonce,
            RecoveryCommand::AccountCreate {
                account: Box::new(account),
                key: Box::new(key),
                endorsements,
            },
        )
    };
    // A client with the recovery permission: not before rules 9, where
    // a body naming `recovery` at all is refused (older members refuse
    // the field), even `false`.
    let enroller = ClientKey::generate("enroller", &mut rand_core::OsRng);
    let put_client = |nonce: &str, recovery: bool, named: bool| {
        let mut rec = record(&enroller, false);
        rec.grant.recovery = recovery;
        let mut body = serde_json::json!({
            "name": "enroller",
            "public_key": hex::encode(enroller.public_key()),
        });
        if named {
            body["recovery"] = serde_json::json!(recovery);
        }
        client(
            &admin,
            "POST",
            "https://n1:7000/v1/clients",
            &serde_json::to_vec(&body).unwrap(),
            T0,
            nonce,
            ClusterCommand::PutClient { record: rec },
        )
    };
    for (nonce, recovery) in [("c1", true), ("c2", false)] {
        let early = put_client(nonce, recovery, true);
        assert!(
            refused(&apply(&mut r, T0, vec![early])[0]),
            "recovery: {recovery}"
        );
    }
    assert!(!r.clients.contains_key("enroller"));
    let chans = ["email:a@example.com", "app"];
    let good_key = || key("reset.alice", SuiteName::Ed25519, vec![id(1), id(2)]);
    // Before every member announced rules 9: refused.
    let early = put(&admin, "a1", account(7, &chans, "admin"), good_key());
    assert!(
        refused(&apply(&mut r, T0, vec![early])[0]),
        "before rules 9"
    );
    announce_rules(&mut r, 100);
    assert!(r.rules_to_stamp() >= crate::recovery::state::ACCOUNT_RULES);
    assert_eq!(
        apply(&mut r, T0, vec![put_client("c3", true, true)]),
        vec![ok()]
    );
    assert!(r.clients["enroller"].grant.recovery);
    let mut one_guardian = account(7, &chans, "admin");
    one_guardian.guardians = vec![id(1)];
    let mut versioned = account(7, &chans, "admin");
    versioned.version = 5;
    for (what, a) in [
        (
            "another device key",
            put(&admin, "a2", account(8, &chans, "admin"), good_key()),
        ),
        (
            "other channels",
            put(&admin, "a3", account(7, &["app"], "admin"), good_key()),
        ),
        (
            "another enroller",
            put(&admin, "a4", account(7, &chans, "user"), good_key()),
        ),
        (
            "other guardians",
            put(&admin, "a5", one_guardian, good_key()),
        ),
        ("a chosen version", put(&admin, "a6", versioned, good_key())),
        (
            "no recovery permission",
            put(&user, "a7", account(7, &chans, "user"), good_key()),
        ),
        (
            "another key name",
            put(
                &admin,
                "a8",
                account(7, &chans, "admin"),
                key("reset.bob", SuiteName::Ed25519, vec![id(1), id(2)]),
            ),
        ),
        (
            "a key on other members",
            put(
                &admin,
                "a9",
                account(7, &chans, "admin"),
                key("reset.alice", SuiteName::Ed25519, vec![id(1)]),
            ),
        ),
        (
            "another suite",
            put(
                &admin,
                "a10",
                account(7, &chans, "admin"),
                key("reset.alice", SuiteName::Secp256k1Tr, vec![id(1), id(2)]),
            ),
        ),
    ] {
        assert!(refused(&apply(&mut r, T0, vec![a])[0]), "{what}");
    }
    assert!(r.recovery.accounts.is_empty() && r.keys.records.is_empty());
    // A build requirement no guardian stated at boot: refused.
    let attested_body = format!(
        r#"{{"account":"alice","channels":["email:a@example.com","app"],"device_key":"{}","measurements":["{}"]}}"#,
        "07".repeat(32),
        "0a".repeat(32)
    );
    let mut wants = account(7, &chans, "admin");
    wants.measurements = Some(vec![Hex32([10; 32])]);
    let k = good_key();
    let endorsements = endorse(&k, &[1, 2]);
    let a = client(
        &admin,
        "POST",
        "https://n1:7000/v1/recovery/accounts",
        attested_body.as_bytes(),
        T0,
        "a13",
        RecoveryCommand::AccountCreate {
            account: Box::new(wants),
            key: Box::new(k),
            endorsements,
        },
    );
    assert!(
        refused(&apply(&mut r, T0, vec![a])[0]),
        "unattested guardians"
    );
    let good = put(&admin, "a11", account(7, &chans, "admin"), good_key());
    assert_eq!(apply(&mut r, T0, vec![good]), vec![ok()]);
    assert_eq!(r.recovery.version, 1);
    assert_eq!(r.recovery.accounts["alice"].version, 1);
    assert_eq!(r.keys.records["reset.alice"].suite, SuiteName::Ed25519);
    // Once only.
    let again = put(&admin, "a12", account(7, &chans, "admin"), good_key());
    assert!(refused(&apply(&mut r, T0, vec![again])[0]), "twice");
    assert_eq!(r.recovery.version, 1);
    // The registry round-trips through a snapshot with the account.
    let back: Registry = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
    assert_eq!(back.recovery, r.recovery);
    reset_requests(&mut r, &user, &holders);
    pin_secrets(&mut r, &admin, &user);
    rotation(&mut r, &admin, &user, &holders);
}

/// Rotation on apply: the account unchanged but for the guardians and
/// threshold every replica computes, the reset key's next generation under
/// the same public key, endorsed by the new guardians; a client with the
/// permission; a coordinator cannot bend any of it.
fn rotation(
    r: &mut Registry,
    admin: &ClientKey,
    user: &ClientKey,
    holders: &keyquorum_core::local::Holders<keyquorum_core::Ed25519>,
) {
    use keyquorum_core::ParticipantId;
    let p = |i: u16| ParticipantId::from(std::num::NonZeroU16::new(i).unwrap());
    let both: std::collections::BTreeSet<ParticipantId> = [p(1), p(2)].into_iter().collect();
    let next = keyquorum_core::local::reshare(
        holders,
        keyquorum_core::SessionId([5; 32]),
        &both,
        2,
        &both,
        &mut rand_core::OsRng,
    )
    .unwrap()
    .group;
    let other = keyquorum_core::local::dkg::<keyquorum_core::Ed25519, _>(
        keyquorum_core::SessionId([6; 32]),
        2,
        &both,
        &mut rand_core::OsRng,
    )
    .unwrap()
    .group;
    let now = r.recovery.accounts["alice"].clone();
    let key = |g: &keyquorum_core::GroupKey<keyquorum_core::Ed25519>, epoch: u64| KeyRecord {
        name: "reset.alice".into(),
        suite: SuiteName::Ed25519,
        threshold: 2,
        members: vec![id(1), id(2)],
        public_key: Hex(g.public_key_bytes()),
        group_key: Hex(g.to_bytes()),
        epoch,
        session: Hex32([5; 32]),
        created_ms: T0,
    };
    let body = br#"{"threshold":2}"#;
    let uri = "https://n1:7000/v1/recovery/accounts/alice/rotate";
    let rotate =
        |who: &ClientKey, nonce: &str, uri: &str, body: &[u8], a: AccountRecord, k: KeyRecord| {
            let endorsements = endorse(&k, &[1, 2]);
            client(
                who,
                "POST",
                uri,
                body,
                T0,
                nonce,
                RecoveryCommand::AccountRotate {
                    account: Box::new(a),
                    key: Box::new(k),
                    endorsements,
                },
            )
        };
    let with = |f: &dyn Fn(&mut AccountRecord)| {
        let mut a = now.clone();
        f(&mut a);
        a
    };
    for (what, cmd) in [
        (
            "no permission",
            rotate(user, "o1", uri, body, now.clone(), key(&next, 2)),
        ),
        (
            "another public key",
            rotate(admin, "o2", uri, body, now.clone(), key(&other, 2)),
        ),
        (
            "a generation skipped",
            rotate(admin, "o3", uri, body, now.clone(), key(&next, 3)),
        ),
        (
            "other channels",
            rotate(
                admin,
                "o4",
                uri,
                body,
                with(&|a| a.channels = vec!["app".into()]),
                key(&next, 2),
            ),
        ),
        (
            "another device",
            rotate(
                admin,
                "o5",
                uri,
                body,
                with(&|a| a.device_key = Hex32([1; 32])),
                key(&next, 2),
            ),
        ),
        (
            "a chosen version",
            rotate(
                admin,
                "o6",
                uri,
                body,
                with(&|a| a.version = 9),
                key(&next, 2),
            ),
        ),
        (
            "one guardian",
            rotate(
                admin,
                "o7",
                uri,
                body,
                with(&|a| a.guardians = vec![id(1)]),
                key(&next, 2),
            ),
        ),
        (
            "more guardians than voters",
            rotate(
                admin,
                "o8",
                uri,
                br#"{"guardians":3}"#,
                now.clone(),
                key(&next, 2),
            ),
        ),
        (
            "another account's path",
            rotate(
                admin,
                "o9",
                "https://n1:7000/v1/recovery/accounts/bob/rotate",
                body,
                now.clone(),
                key(&next, 2),
            ),
        ),
    ] {
        assert!(refused(&apply(r, T0, vec![cmd])[0]), "{what}");
    }
    assert_eq!(r.keys.records["reset.alice"].epoch, 1);
    let version = r.recovery.version;
    let good = rotate(admin, "o10", uri, body, now.clone(), key(&next, 2));
    assert_eq!(apply(r, T0, vec![good]), vec![ok()]);
    assert_eq!(r.keys.records["reset.alice"].epoch, 2);
    assert_eq!(r.recovery.version, version + 1);
    assert_eq!(r.recovery.accounts["alice"].version, version + 1);
    // Once: the same generation again is refused.
    let again = rotate(admin, "o11", uri, body, now.clone(), key(&next, 2));
    assert!(refused(&apply(r, T0, vec![again])[0]));
}

/// Reset requests on apply: exactly what the client's signed request asks,
/// with a signer set and commitments a hostile coordinator cannot bend;
/// once per signed request; the account's rate limit; inbox statements
/// only by an `app` signer, once.
fn reset_requests(
    r: &mut Registry,
    user: &ClientKey,
    holders: &keyquorum_core::local::Holders<keyquorum_core::Ed25519>,
) {
    use keyquorum_core::oprf::reset::{request_id, Fragment};
    use keyquorum_wire::recovery::{InboxItem, ResetCommitment, ResetRecord};
    let commitment = |i: u16| {
        let p = keyquorum_core::ParticipantId::from(std::num::NonZeroU16::new(i).unwrap());
        let (_, c) = keyquorum_core::sign::commit(&holders.shares[&p], &mut rand_core::OsRng);
        Hex(c.to_bytes())
    };
    let (c1, c2) = (commitment(1), commitment(2));
    let rc = |node: u64, c: &Hex| ResetCommitment {
        node: id(node),
        nonce: Hex(vec![u8::try_from(node).unwrap(); 16]),
        commitment: c.clone(),
    };
    let good = |nonce: &str| ResetRecord {
        account: "alice".into(),
        request_id: Hex(request_id("user", nonce).to_vec()),
        credential_hash: Hex32([5; 32]),
        expires: T0 / 1000 + 900,
        epoch: 1,
        commitments: vec![rc(1, &c1), rc(2, &c2)],
        requested_by: "user".into(),
        created_ms: T0,
        opened_ms: 0,
        inbox: Vec::new(),
    };
    let body = format!(r#"{{"credential_hash":"{}"}}"#, "05".repeat(32));
    let open = |nonce: &str, uri: &str, reset: ResetRecord| {
        client(
            user,
            "POST",
            uri,
            body.as_bytes(),
            T0,
            nonce,
            RecoveryCommand::ResetOpen {
                reset: Box::new(reset),
            },
        )
    };
    let uri = "https://n1:7000/v1/recovery/accounts/alice/resets";
    let with = |nonce: &str, f: &dyn Fn(&mut ResetRecord)| {
        let mut x = good(nonce);
        f(&mut x);
        open(nonce, uri, x)
    };
    let cases: Vec<(&str, Authorized)> = vec![
        (
            "another credential hash",
            with("r1", &|x| x.credential_hash = Hex32([6; 32])),
        ),
        ("another expiry", with("r2", &|x| x.expires += 1)),
        (
            "another request id",
            with("r3", &|x| x.request_id = Hex(vec![0; 16])),
        ),
        (
            "another client",
            with("r4", &|x| x.requested_by = "admin".into()),
        ),
        ("one signer", with("r5", &|x| x.commitments.truncate(1))),
        (
            "a signer who is no guardian",
            with("r6", &|x| x.commitments[1].node = id(3)),
        ),
        (
            "a commitment of another signer",
            with("r7", &|x| x.commitments[1].commitment = c1.clone()),
        ),
        (
            "signers out of order",
            with("r8", &|x| x.commitments.reverse()),
        ),
        (
            "a short nonce id",
            with("r9", &|x| x.commitments[0].nonce = Hex(vec![1; 15])),
        ),
        ("another generation", with("r10", &|x| x.epoch = 2)),
        (
            "a filled inbox",
            with("r11", &|x| {
                x.inbox.push(InboxItem {
                    request_id: x.request_id.clone(),
                    guardian: id(2),
                    fragment: "KQF1".into(),
                })
            }),
        ),
        (
            "another account's path",
            open(
                "r12",
                "https://n1:7000/v1/recovery/accounts/bob/resets",
                good("r12"),
            ),
        ),
    ];
    for (what, a) in cases {
        assert!(refused(&apply(r, T0, vec![a])[0]), "{what}");
    }
    assert!(r.recovery.resets.is_empty());
    // The members' clocks read 200 s later: a request signed at T0 is
    // still fresh, but one living 60 s would expire within 30 s: refused
    // (it would use up the account's resets and deliver nothing).
    let later = T0 + 200_000;
    let ticks = [1u64, 2, 3]
        .iter()
        .map(|n| statement(*n, later, 150 + *n as u8, ClusterCommand::Tick {}))
        .collect();
    apply(r, later, ticks);
    assert!(r.clock.now_ms() >= later);
    let short_body = format!(r#"{{"credential_hash":"{}","ttl_s":60}}"#, "05".repeat(32));
    let mut short = good("x1");
    short.expires = T0 / 1000 + 60;
    let short = client(
        user,
        "POST",
        uri,
        short_body.as_bytes(),
        T0,
        "x1",
        RecoveryCommand::ResetOpen {
            reset: Box::new(short),
        },
    );
    match &apply(r, later, vec![short])[0] {
        CommandResponse::Rejected { reason } => assert!(reason.contains("within 30 s"), "{reason}"),
        other => panic!("nearly expired: {other:?}"),
    }
    let first = open("g1", uri, good("g1"));
    assert_eq!(apply(r, T0, vec![first.clone()]), vec![ok()]);
    // One signed request opens one reset: a replay is refused.
    assert!(refused(&apply(r, T0, vec![first])[0]), "a replay");
    assert_eq!(r.recovery.resets.len(), 1);

    // The inbox: node 2's channel is app (guardians by id take email,
    // app); node 1's is email.
    let rid: [u8; 16] = request_id("user", "g1");
    let item = |signer: u16| InboxItem {
        request_id: Hex(rid.to_vec()),
        guardian: id(u64::from(signer)),
        fragment: Fragment::seal(&[7; 32], "alice", rid, signer, b"share")
            .unwrap()
            .to_text(),
    };
    let inbox = |node: u64, nonce: u8, item: InboxItem| {
        statement(
            node,
            T0,
            nonce,
            RecoveryCommand::ResetInbox {
                account: "alice".into(),
                item,
            },
        )
    };
    let mut theirs = item(2);
    theirs.guardian = id(1);
    let mut unknown = item(2);
    unknown.request_id = Hex(vec![3; 16]);
    for (what, a) in [
        ("an email signer", inbox(1, 200, item(1))),
        ("another signer's item", inbox(2, 201, theirs)),
        (
            "another signer's fragment",
            inbox(
                2,
                202,
                InboxItem {
                    guardian: id(2),
                    ..item(1)
                },
            ),
        ),
        ("an unknown request", inbox(2, 203, unknown)),
    ] {
        assert!(refused(&apply(r, T0, vec![a])[0]), "{what}");
    }
    assert_eq!(apply(r, T0, vec![inbox(2, 204, item(2))]), vec![ok()]);
    assert!(
        refused(&apply(r, T0, vec![inbox(2, 205, item(2))])[0]),
        "twice"
    );
    assert_eq!(r.recovery.resets[&hex::encode(rid)].inbox.len(), 1);
    // Past its expiry by the log clock, a signer's inbox statement for a
    // request is refused (on a copy of the log's state: the rest of this
    // test stays at T0).
    let mut expired = r.clone();
    let past = T0 + 901_000;
    let ticks = [1u64, 2]
        .iter()
        .map(|n| statement(*n, past, 170 + *n as u8, ClusterCommand::Tick {}))
        .collect();
    apply(&mut expired, past, ticks);
    assert!(expired.clock.now_ms() >= past);
    let mut fresh_item = item(2);
    fresh_item.fragment = Fragment::seal(&[7; 32], "alice", rid, 2, b"again")
        .unwrap()
        .to_text();
    expired
        .recovery
        .resets
        .get_mut(&hex::encode(rid))
        .unwrap()
        .inbox
        .clear();
    let late = statement(
        2,
        past,
        206,
        RecoveryCommand::ResetInbox {
            account: "alice".into(),
            item: fresh_item,
        },
    );
    match &apply(&mut expired, past, vec![late])[0] {
        CommandResponse::Rejected { reason } => assert!(reason.contains("expired"), "{reason}"),
        other => panic!("an expired request's inbox: {other:?}"),
    }
    // A client cannot put anything in the inbox.
    let by_client = client(
        user,
        "POST",
        uri,
        body.as_bytes(),
        T0,
        "i1",
        RecoveryCommand::ResetInbox {
            account: "alice".into(),
            item: item(2),
        },
    );
    assert!(refused(&apply(r, T0, vec![by_client])[0]));

    // One client's limit on one account: two within the hour.
    assert_eq!(apply(r, T0, vec![open("g2", uri, good("g2"))]), vec![ok()]);
    assert!(refused(&apply(r, T0, vec![open("g3", uri, good("g3"))])[0]));
    assert_eq!(r.recovery.resets.len(), 2);
    // The registry round-trips through a snapshot with its resets.
    let back: Registry = serde_json::from_slice(&serde_json::to_vec(&*r).unwrap()).unwrap();
    assert_eq!(back.recovery, r.recovery);
}

/// The rate limits and pruning on their own: per client across
/// accounts, and a request leaves the count once it has expired and
/// left the window.
#[test]
fn reset_rate_limits_count_per_account_and_per_client_within_the_window() {
    use crate::recovery::state::{RecoveryState, RESETS_PER_CLIENT, RESET_WINDOW_MS};
    use keyquorum_wire::recovery::ResetRecord;
    let reset = |i: usize, account: &str, client: &str, at: u64| ResetRecord {
        account: account.into(),
        request_id: Hex((i as u128).to_be_bytes().to_vec()),
        credential_hash: Hex32([0; 32]),
        expires: at / 1000 + 60,
        epoch: 1,
        commitments: Vec::new(),
        requested_by: client.into(),
        created_ms: at,
        opened_ms: 0,
        inbox: Vec::new(),
    };
    let mut s = RecoveryState::default();
    for i in 0..RESETS_PER_CLIENT {
        let r = reset(i, &format!("a{i}"), "c", T0);
        assert_eq!(s.open_reset(&r, T0), ok());
    }
    let over = reset(1000, "fresh", "c", T0);
    assert!(refused(&s.open_reset(&over, T0)));
    assert_eq!(s.open_reset(&reset(1001, "fresh", "d", T0), T0), ok());
    // An hour on, the old ones are gone and the client may ask again.
    let later = T0 + RESET_WINDOW_MS + 1;
    assert_eq!(s.open_reset(&reset(1002, "fresh", "c", later), later), ok());
    assert_eq!(s.resets.len(), 1);
    // A request id is never taken twice while it is kept.
    assert!(refused(
        &s.open_reset(&reset(1002, "other", "e", later), later)
    ));
}
