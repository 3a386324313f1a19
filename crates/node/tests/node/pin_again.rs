//! Registering a PIN-protected secret again (apply rules 16; issue #23
//! item 2: a drain or rotation moves an account's guardians, and only the
//! client, who knows the PIN, can give the new ones masked shares): the
//! record replaced is named, the new one goes on a new PIN key on the
//! account's guardians of the day, the old key leaves the registry and
//! every guardian erases its share of it; the old key never evaluates a
//! registration or a guess for the new record; a destroyed secret is
//! registered again the same way.

use std::time::Duration;

use crate::common;
use crate::recovery::{account, recovery_client};

use common::{cluster, n, ns, status_of, vault_count};
use keyquorum_client::recovery::{ExpectedGuardians, Recovered};
use keyquorum_client::Client;
use keyquorum_core::oprf::pin::Stretch;
use keyquorum_core::oprf::reset::DeviceSecret;
use keyquorum_store::vault::Table;
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::recovery::RotateAccountRequest;
use keyquorum_wire::{Hex, Hex32};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_registered_again_moves_to_the_new_guardians_and_retires_the_old_key() {
    let (_dir, c) = cluster(5, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let enroller = recovery_client(&admin, "enroller").await;
    let runner = recovery_client(&admin, "runner").await;
    let urls: Vec<String> = (1..=5).map(|i| c.url_of(n(i))).collect();
    let ca = c.ca_pem();
    let via = |k: &keyquorum_client::ClientKey, i: u16| {
        Client::new(&urls[usize::from(i) - 1], k, ca.as_bytes()).unwrap()
    };
    let expect = |ids: &[u16], threshold: u16| ExpectedGuardians {
        guardians: ids
            .iter()
            .map(|i| (n(*i), c.node(n(*i)).unwrap().keys().identity().0))
            .collect(),
        threshold,
    };
    let device = DeviceSecret::generate();
    let mut req = account("dora", &device, &["app"]);
    req.guardians = Some(3);
    let a = via(&enroller, 1)
        .recovery_account_create(&req)
        .await
        .unwrap();
    let old: Vec<u16> = a.guardians.iter().map(|g| g.node.nonzero().get()).collect();
    let cost = Stretch::default();
    let first = via(&enroller, 2)
        .recovery_secret_register(
            "dora",
            b"1357",
            b"first secret",
            3,
            &cost,
            Some(&expect(&old, 2)),
        )
        .await
        .unwrap();
    assert_eq!((first.generation, first.threshold), (1, 2));
    let pinned = first.public_key.0.clone();

    // Only the old three hold the live record's key.
    let holds = |key: &'static str| {
        (1..=5u16)
            .filter(|i| vault_count(&c, n(*i), Table::Shares, key) == 1)
            .collect::<Vec<u16>>()
    };
    // (each promotes its pending share within about a second)
    common::poll(
        "the PIN key's shares stored",
        Duration::from_secs(10),
        || async { holds("pin.dora") == old },
    )
    .await;

    let m = voprf::VoprfClient::<voprf::Ristretto255>::blind(b"x", &mut rand_core::OsRng)
        .unwrap()
        .message
        .serialize()
        .to_vec();
    let ask = |who: &keyquorum_client::ClientKey, path: &str, body: serde_json::Value| {
        common::client_request(&urls[0], who, "POST", path, Some(body), common::now_s())
    };
    let round_one = |key: &str, run: u8, request| PeerMessage::OprfCommit {
        key: key.into(),
        epoch: 1,
        run: Hex32([run; 32]),
        request,
    };
    let again_body = serde_json::json!({
        "blinded_element": hex::encode(&m),
        "replace": hex::encode(&first.version.0),
    });
    let begin_again = || {
        ask(
            &enroller,
            "/v1/recovery/accounts/dora/secret/begin",
            again_body.clone(),
        )
    };

    // A registration again the client abandons (the identities it holds
    // are not the guardians'): a later key begun on the old three, never
    // registered; the live record's key and shares stay.
    let strangers = ExpectedGuardians {
        guardians: old.iter().map(|i| (n(*i), [7; 32])).collect(),
        threshold: 2,
    };
    let err = via(&enroller, 1)
        .recovery_secret_register_again(&first, b"2468", b"x", 3, &cost, Some(&strangers))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("endorsed"), "{err}");
    common::poll(
        "the later key's shares stored",
        Duration::from_secs(10),
        || async { holds("pin.dora~2") == old },
    )
    .await;
    // Past the erasing task's round: the live record's key is kept.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(holds("pin.dora"), old, "the live record's key kept");
    // A coordinator repeating one genuine begin under other run ids gets
    // it counted once by each guardian.
    let g = n(old[1]);
    let once = begin_again();
    for run in 10..16 {
        let asked = c
            .node(g)
            .unwrap()
            .handle_peer(n(old[0]), round_one("pin.dora~2", run, once.clone()))
            .await;
        // (past a few runs the node's replay guard refuses the request)
        if let Err(e) = asked {
            assert!(run > 10 && e.to_string().contains("attempts"), "{e}");
        }
    }
    let row = c
        .node(g)
        .unwrap()
        .vault()
        .get(Table::PinCounts, b"begin/dora~2")
        .unwrap()
        .unwrap();
    assert_eq!(
        &row[..2],
        &2u16.to_be_bytes(),
        "the client's begin and this one"
    );

    // The account moves to all five guardians, 3-of-5; the secret stays
    // on its key (the old three) and still recovers.
    admin
        .recovery_account_rotate(
            "dora",
            &RotateAccountRequest {
                guardians: Some(5),
                threshold: Some(3),
            },
        )
        .await
        .unwrap();
    let got = via(&runner, 3)
        .recovery_secret_recover("dora", b"1357", &pinned)
        .await
        .unwrap();
    assert!(matches!(&got, Recovered::Secret(s) if s.as_slice() == b"first secret"));

    // Refused: a registration that does not name the record it replaces,
    // one that names another, and one by a client that did not enrol it.
    let err = via(&enroller, 1)
        .recovery_secret_register("dora", b"2468", b"x", 3, &cost, None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    let mut stale = first.clone();
    stale.version = Hex(vec![9; 16]);
    let err = via(&enroller, 1)
        .recovery_secret_register_again(&stale, b"2468", b"x", 3, &cost, None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    let err = via(&runner, 1)
        .recovery_secret_register_again(&first, b"2468", b"x", 3, &cost, None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    assert_eq!(
        c.node(n(1))
            .unwrap()
            .registry(|r| r.recovery.pin_generation("dora")),
        2,
        "no key made for a refused registration"
    );

    // A hostile coordinator asking a guardian to evaluate, for the
    // enroller's genuine registration again, the live record's key (it
    // evaluates counted guesses only) or the key begun before the rotation
    // (not on the account's guardians of the day): refused.
    for (key, why) in [
        ("pin.dora", "latest PIN key"),
        ("pin.dora~2", "guardians of the day"),
    ] {
        let e = c
            .node(g)
            .unwrap()
            .handle_peer(n(old[0]), round_one(key, 1, begin_again()))
            .await
            .unwrap_err();
        assert!(e.to_string().contains(why), "{key}: {e}");
    }

    // Registered again, under a new PIN, on the five guardians: a new key,
    // checked against their identities and threshold.
    let second = via(&enroller, 4)
        .recovery_secret_register_again(
            &first,
            b"97531",
            b"second secret",
            2,
            &cost,
            Some(&expect(&[1, 2, 3, 4, 5], 3)),
        )
        .await
        .unwrap();
    assert_eq!(second.generation, 3);
    assert_eq!(
        (second.threshold, second.guardians.clone()),
        (3, ns(&[1, 2, 3, 4, 5]))
    );
    assert_ne!(second.public_key.0, pinned);
    // The old key is gone from the registry, and from every vault.
    assert_eq!(status_of(&admin.key("pin.dora").await.unwrap_err()), 404);
    common::poll(
        "the old PIN key erased",
        Duration::from_secs(20),
        || async {
            (1..=5).all(|i| {
                vault_count(&c, n(i), Table::Shares, "pin.dora") == 0
                    && vault_count(&c, n(i), Table::Shares, "pin.dora~2") == 0
                    && vault_count(&c, n(i), Table::Shares, "pin.dora~3") == 1
            })
        },
    )
    .await;
    // The old key and PIN recover nothing; the new ones do, through any
    // of the new guardians.
    assert!(via(&runner, 2)
        .recovery_secret_recover("dora", b"1357", &pinned)
        .await
        .is_err());
    let got = via(&runner, 5)
        .recovery_secret_recover("dora", b"97531", &second.public_key.0)
        .await
        .unwrap();
    assert!(matches!(&got, Recovered::Secret(s) if s.as_slice() == b"second secret"));
    // The old key evaluates no guess for the new record (a hostile
    // coordinator naming it), nor a registration naming the new record.
    let guess = ask(
        &runner,
        "/v1/recovery/accounts/dora/secret/guess",
        serde_json::json!({
            "version": hex::encode(&second.version.0),
            "blinded_element": hex::encode(&m),
        }),
    );
    let e = c
        .node(g)
        .unwrap()
        .handle_peer(n(old[0]), round_one("pin.dora", 1, guess))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("registered under"), "{e}");
    let begin_third = ask(
        &enroller,
        "/v1/recovery/accounts/dora/secret/begin",
        serde_json::json!({
            "blinded_element": hex::encode(&m),
            "replace": hex::encode(&second.version.0),
        }),
    );
    for (key, why) in [
        ("pin.dora", "latest PIN key"),
        ("pin.dora~3", "has a secret"),
    ] {
        let e = c
            .node(n(4))
            .unwrap()
            .handle_peer(n(1), round_one(key, 2, begin_third.clone()))
            .await
            .unwrap_err();
        assert!(e.to_string().contains(why), "{key}: {e}");
    }

    // Destroyed after its guesses, then registered again from the
    // destroyed record.
    for _ in 0..3 {
        let _ = via(&runner, 1)
            .recovery_secret_recover("dora", b"0000", &second.public_key.0)
            .await;
    }
    let destroyed = via(&runner, 1).recovery_secret("dora").await.unwrap();
    assert!(destroyed.destroyed, "{destroyed:?}");
    let third = via(&enroller, 3)
        .recovery_secret_register_again(&destroyed, b"8642", b"third secret", 3, &cost, None)
        .await
        .unwrap();
    assert_eq!(third.generation, 4);
    let got = via(&runner, 2)
        .recovery_secret_recover("dora", b"8642", &third.public_key.0)
        .await
        .unwrap();
    assert!(matches!(&got, Recovered::Secret(s) if s.as_slice() == b"third secret"));
    common::poll(
        "the destroyed record's key erased",
        Duration::from_secs(20),
        || async {
            (1..=5).all(|i| {
                vault_count(&c, n(i), Table::Shares, "pin.dora~3") == 0
                    && vault_count(&c, n(i), Table::Shares, "pin.dora~4") == 1
            })
        },
    )
    .await;
    c.shutdown().await;
}
