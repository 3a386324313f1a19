//! Accounts on apply (rules 9): `POST /v1/recovery/accounts` enrols
//! exactly the account a client with the `recovery` permission (or an
//! admin) asked for, with its guardians as every replica computes them
//! and its Ed25519 reset key on exactly those guardians; a coordinator
//! cannot change the device key, the channels, the guardians or the key.

use keyquorum_core::codec::Encode;
use keyquorum_wire::api::SuiteName;
use keyquorum_wire::control::{key_statement, Endorsement, KeyRecord};
use keyquorum_wire::recovery::{AccountRecord, RecoveryCommand};

use super::*;

#[test]
fn an_account_is_what_its_enroller_asked_for_from_rules_9() {
    let (mut r, admin, user) = registry();
    let pids = [1u16, 2]
        .iter()
        .map(|i| keyquorum_core::ParticipantId::from(std::num::NonZeroU16::new(*i).unwrap()))
        .collect();
    let ed = keyquorum_core::local::dkg::<keyquorum_core::Ed25519, _>(
        keyquorum_core::SessionId([4; 32]),
        2,
        &pids,
        &mut rand_core::OsRng,
    )
    .unwrap()
    .group;
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
        version: 0,
    };
    let body = format!(
        r#"{{"account":"alice","channels":["email:a@example.com","app"],"device_key":"{}"}}"#,
        "07".repeat(32)
    );
    let put = |who: &ClientKey, nonce: &str, account: AccountRecord, key: KeyRecord| {
        let endorsements = [1u64, 2]
            .iter()
            .map(|n| Endorsement {
                node: id(*n),
                signature: Hex(node_key(*n)
                    .sign(&key_statement(
                        &key.name,
                        key.epoch,
                        &key.session,
                        &key.group_key.0,
                    ))
                    .to_bytes()
                    .to_vec()),
            })
            .collect();
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
}
