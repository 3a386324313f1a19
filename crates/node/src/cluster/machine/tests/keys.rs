//! Key records and exports: endorsements, the request's parameters, the
//! export id and the operator.

use super::*;

/// A key record must be what threshold-many of its members computed,
/// asked for by an admin's request, and a next generation keeps the
/// public key.
#[test]
fn a_key_record_needs_its_request_and_its_members_endorsements() {
    use keyquorum_core::codec::Encode;
    use keyquorum_wire::api::SuiteName;
    use keyquorum_wire::control::{KeyRecord, KeysCommand};

    let (mut r, admin, user) = registry();
    let pids = [1u16, 2]
        .iter()
        .map(|i| keyquorum_core::ParticipantId::from(std::num::NonZeroU16::new(*i).unwrap()))
        .collect();
    let gk = |seed: u8| {
        let g = keyquorum_core::local::dkg::<keyquorum_core::Ed25519, _>(
            keyquorum_core::SessionId([seed; 32]),
            2,
            &pids,
            &mut rand_core::OsRng,
        )
        .unwrap()
        .group;
        (g.to_bytes(), g.public_key_bytes())
    };
    let (group, public) = gk(1);
    let rec = |epoch: u64, group: &[u8], public: &[u8]| KeyRecord {
        name: "k".into(),
        suite: SuiteName::Ed25519,
        threshold: 2,
        members: vec![id(1), id(2)],
        public_key: Hex(public.to_vec()),
        group_key: Hex(group.to_vec()),
        epoch,
        session: Hex32([epoch as u8; 32]),
        created_ms: T0,
    };
    let create: &[u8] = br#"{"name":"k","suite":"ed25519"}"#;
    let put = |who: &ClientKey,
               nonce: &str,
               rec: KeyRecord,
               by: &[u64],
               path: &str,
               body: &[u8],
               expected: Option<u64>| {
        let endorsements = endorse(&rec, by);
        client(
            who,
            "POST",
            &format!("https://n1:7000{path}"),
            body,
            T0,
            nonce,
            KeysCommand::PutKey {
                record: rec,
                expected_epoch: expected,
                endorsements,
            },
        )
    };
    let first = rec(1, &group, &public);
    let mut t1 = first.clone();
    t1.threshold = 1;
    let mut one_member = first.clone();
    one_member.members = vec![id(1)];
    let mut wrong_public = first.clone();
    wrong_public.public_key = Hex(gk(2).1);
    let other_name: &[u8] = br#"{"name":"j","suite":"ed25519"}"#;
    let only_node_1: &[u8] = br#"{"name":"k","suite":"ed25519","members":[1]}"#;
    let one_voter: &[u8] = br#"{"name":"k","suite":"ed25519","members":[1],"min_members":1}"#;
    let attempts = vec![
        (
            "endorsed by one of two",
            put(&admin, "k1", first.clone(), &[1], "/v1/keys", create, None),
        ),
        (
            "not an admin",
            put(
                &user,
                "k2",
                first.clone(),
                &[1, 2],
                "/v1/keys",
                create,
                None,
            ),
        ),
        // (These two are refused by the group key check; the member
        // rules alone refuse the last two.)
        (
            "threshold 1",
            put(&admin, "k3", t1, &[1, 2], "/v1/keys", create, None),
        ),
        (
            "fewer members than asked",
            put(&admin, "k4", one_member, &[1], "/v1/keys", create, None),
        ),
        (
            "a public key not the group key's",
            put(
                &admin,
                "k5",
                wrong_public,
                &[1, 2],
                "/v1/keys",
                create,
                None,
            ),
        ),
        (
            "another key's name",
            put(
                &admin,
                "k6",
                first.clone(),
                &[1, 2],
                "/v1/keys",
                other_name,
                None,
            ),
        ),
        // A valid, endorsed record over more members than asked, with
        // and without consent to fewer.
        (
            "members not asked for",
            put(
                &admin,
                "k11",
                first.clone(),
                &[1, 2],
                "/v1/keys",
                only_node_1,
                None,
            ),
        ),
        (
            "more members than asked, with consent to fewer",
            put(
                &admin,
                "k12",
                first.clone(),
                &[1, 2],
                "/v1/keys",
                one_voter,
                None,
            ),
        ),
    ];
    for (what, a) in attempts {
        assert!(refused(&apply(&mut r, T0, vec![a])[0]), "{what}");
    }
    assert!(r.keys.records.is_empty());
    // An unstated threshold is the cluster's default for the members
    // asked (replicated): an entry node cannot pick a lower one.
    let three_asked: &[u8] = br#"{"name":"k","suite":"ed25519","members":[1,2,3],"min_members":2}"#;
    assert_eq!(r.default_threshold(3), 2, "a majority by default");
    r.operators.default_threshold = Some(3);
    assert_eq!(r.default_threshold(3), 3);
    assert_eq!(r.default_threshold(2), 2, "at most the members");
    let low = put(
        &admin,
        "k13",
        first.clone(),
        &[1, 2],
        "/v1/keys",
        three_asked,
        None,
    );
    assert!(
        refused(&apply(&mut r, T0, vec![low])[0]),
        "a threshold below the cluster's default"
    );
    r.operators.default_threshold = None;
    let good = put(
        &admin,
        "k7",
        first.clone(),
        &[1, 2],
        "/v1/keys",
        create,
        None,
    );
    assert_eq!(apply(&mut r, T0, vec![good]), vec![ok()]);

    // A refresh: the same public key, the next epoch, endorsed.
    let (other_group, other_public) = gk(3);
    let swapped = rec(2, &other_group, &other_public);
    let refresh = "/v1/keys/k/refresh";
    let a = put(&admin, "k8", swapped, &[1, 2], refresh, b"", Some(1));
    assert!(
        refused(&apply(&mut r, T0, vec![a])[0]),
        "a refresh that swaps the public key"
    );
    let a = put(
        &admin,
        "k9",
        rec(2, &group, &public),
        &[1, 2],
        "/v1/keys/k/repair",
        b"",
        Some(1),
    );
    assert!(
        refused(&apply(&mut r, T0, vec![a])[0]),
        "repair commits no generation"
    );
    let a = put(
        &admin,
        "k10",
        rec(2, &group, &public),
        &[1, 2],
        refresh,
        b"",
        Some(1),
    );
    assert_eq!(apply(&mut r, T0, vec![a]), vec![ok()]);
    assert_eq!(r.keys.records["k"].epoch, 2);
}

#[test]
fn an_export_needs_a_well_formed_id_and_an_operator_to_approve() {
    use keyquorum_wire::control::{ExportRecord, KeysCommand};
    let (mut r, admin, _) = registry();
    // A key to export, put straight into the state part (endorsements
    // are another test's).
    put_test_key(&mut r);
    let export = |id: &str| ExportRecord {
        id: id.into(),
        key: "k".into(),
        epoch: 1,
        requested_by: "admin".into(),
        approvals: vec![],
        needed: 2,
        done: false,
        recipient: Hex32([5; 32]),
        created_ms: T0,
    };
    let body = format!(r#"{{"recipient":"{}"}}"#, hex::encode([5u8; 32]));
    let ask = |id: &str, nonce: &str| {
        client(
            &admin,
            "POST",
            "https://n2:7000/v1/keys/k/exports",
            body.as_bytes(),
            T0,
            nonce,
            KeysCommand::RequestExport { record: export(id) },
        )
    };
    assert!(refused(&apply(&mut r, T0, vec![ask("a/b", "e1")])[0]));
    let id = "00112233445566778899aabbccddeeff";
    assert_eq!(apply(&mut r, T0, vec![ask(id, "e2")]), vec![ok()]);
    // Approving needs an operator (this admin is not one).
    let approve = client(
        &admin,
        "POST",
        &format!("https://n2:7000/v1/exports/{id}/approve"),
        b"",
        T0,
        "e3",
        KeysCommand::ApproveExport {
            id: id.into(),
            operator: "admin".into(),
        },
    );
    assert!(refused(&apply(&mut r, T0, vec![approve])[0]));
    assert!(r.keys.exports[id].approvals.is_empty());
}
