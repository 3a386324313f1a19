//! OPRF keys on apply: `POST /v1/oprf/keys` makes exactly the
//! ristretto255 key `oprf.NAME` an admin asked for, once the log took up
//! rules 8; `POST /v1/keys` never makes an `oprf.` key.

use keyquorum_core::codec::Encode;
use keyquorum_wire::api::SuiteName;
use keyquorum_wire::control::{KeyRecord, KeysCommand};

use super::*;

#[test]
fn an_oprf_key_is_the_ristretto255_key_an_admin_asked_for_from_rules_8() {
    let (mut r, admin, user) = registry();
    let pids = [1u16, 2]
        .iter()
        .map(|i| keyquorum_core::ParticipantId::from(std::num::NonZeroU16::new(*i).unwrap()))
        .collect();
    let rist = keyquorum_core::local::dkg::<keyquorum_core::Ristretto255, _>(
        keyquorum_core::SessionId([3; 32]),
        2,
        &pids,
        &mut rand_core::OsRng,
    )
    .unwrap()
    .group;
    let ed = keyquorum_core::local::dkg::<keyquorum_core::Ed25519, _>(
        keyquorum_core::SessionId([4; 32]),
        2,
        &pids,
        &mut rand_core::OsRng,
    )
    .unwrap()
    .group;
    let rec = |name: &str, suite: SuiteName, group: Vec<u8>, public: Vec<u8>| KeyRecord {
        name: name.into(),
        suite,
        threshold: 2,
        members: vec![id(1), id(2)],
        public_key: Hex(public),
        group_key: Hex(group),
        epoch: 1,
        session: Hex32([9; 32]),
        created_ms: T0,
    };
    let oprf = |name: &str| {
        rec(
            name,
            SuiteName::Ristretto255,
            rist.to_bytes(),
            rist.public_key_bytes(),
        )
    };
    let put = |who: &ClientKey, nonce: &str, rec: KeyRecord, path: &str, body: &[u8]| {
        let endorsements = endorse(&rec, &[1, 2]);
        client(
            who,
            "POST",
            &format!("https://n1:7000{path}"),
            body,
            T0,
            nonce,
            KeysCommand::PutKey {
                record: rec,
                expected_epoch: None,
                endorsements,
            },
        )
    };
    let asked: &[u8] = br#"{"name":"pw"}"#;
    // Before every member announced rules 8: refused.
    let early = put(&admin, "o1", oprf("oprf.pw"), "/v1/oprf/keys", asked);
    assert!(
        refused(&apply(&mut r, T0, vec![early])[0]),
        "before rules 8"
    );
    announce_rules(&mut r, 100);
    assert!(r.rules_to_stamp() >= crate::recovery::state::OPRF_RULES);
    let ed_named = rec(
        "oprf.pw",
        SuiteName::Ed25519,
        ed.to_bytes(),
        ed.public_key_bytes(),
    );
    for (what, a) in [
        (
            "another name than asked",
            put(&admin, "o2", oprf("oprf.other"), "/v1/oprf/keys", asked),
        ),
        (
            "the name without its prefix",
            put(&admin, "o3", oprf("pw"), "/v1/oprf/keys", asked),
        ),
        (
            "not an admin",
            put(&user, "o4", oprf("oprf.pw"), "/v1/oprf/keys", asked),
        ),
        (
            "a signing suite",
            put(&admin, "o5", ed_named.clone(), "/v1/oprf/keys", asked),
        ),
        (
            "an oprf. name through POST /v1/keys",
            put(
                &admin,
                "o6",
                ed_named,
                "/v1/keys",
                br#"{"name":"oprf.pw","suite":"ed25519"}"#,
            ),
        ),
        (
            "a threshold other than asked",
            put(
                &admin,
                "o7",
                oprf("oprf.pw"),
                "/v1/oprf/keys",
                br#"{"name":"pw","threshold":3}"#,
            ),
        ),
    ] {
        assert!(refused(&apply(&mut r, T0, vec![a])[0]), "{what}");
    }
    assert!(r.keys.records.is_empty());
    let good = put(&admin, "o8", oprf("oprf.pw"), "/v1/oprf/keys", asked);
    assert_eq!(apply(&mut r, T0, vec![good]), vec![ok()]);
    assert_eq!(r.keys.records["oprf.pw"].suite, SuiteName::Ristretto255);
}
