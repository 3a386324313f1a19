//! Credential guardians' accounts on a real cluster on loopback (issue
//! #20 item 1): enrolment picks the guardians every replica would pick,
//! makes the reset key by DKG among them, and records channels and the
//! device key; only a client with the `recovery` permission (or an admin)
//! enrols; the reset key never signs through the signing API and is not
//! reshared under the account.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "integration tests: a failed unwrap is a failed test"
)]

mod common;

use common::{allow_reshare, cluster, n, new_client, ns, status_of};
use keyquorum_client::Client;
use keyquorum_core::oprf::reset::{guardians, DeviceSecret};
use keyquorum_wire::api::{CreateClientRequest, SuiteName};
use keyquorum_wire::recovery::CreateAccountRequest;
use keyquorum_wire::Hex32;

fn account(name: &str, device: &DeviceSecret, channels: &[&str]) -> CreateAccountRequest {
    CreateAccountRequest {
        account: name.into(),
        guardians: None,
        threshold: None,
        channels: channels.iter().map(|c| c.to_string()).collect(),
        device_key: Hex32(device.public_key()),
    }
}

/// Enrol with the `recovery` permission; read it back through every
/// node; refusals for clients without the permission, duplicates, bad
/// channels, names and shapes; the reset key refuses the signing API, a
/// reshare through `/v1/keys`, and `POST /v1/keys` takes no `reset.` name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_enrol_with_rendezvous_guardians_and_a_reset_key_that_signs_nothing_else() {
    let (_dir, c) = cluster(4, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let enroller = keyquorum_client::ClientKey::generate("enroller", &mut rand_core::OsRng);
    admin
        .create_client(&CreateClientRequest {
            name: "enroller".into(),
            public_key: Hex32(enroller.public_key()),
            admin: false,
            operator: false,
            sign_keys: Vec::new(),
            recovery: true,
            expires_ms: None,
        })
        .await
        .unwrap();
    let plain = new_client(&admin, "plain", false, false, &["*"]).await;
    let via = |i: u16, who: &keyquorum_client::ClientKey| {
        Client::new(&c.url_of(n(i)), who, c.ca_pem().as_bytes()).unwrap()
    };
    let device = DeviceSecret::generate();
    let mut req = account(
        "alice.example",
        &device,
        &["email:alice@example.com", "app"],
    );
    req.guardians = Some(3);
    let a = via(2, &enroller)
        .recovery_account_create(&req)
        .await
        .unwrap();
    // The guardians are the rendezvous choice over the four voters.
    let want = guardians("alice.example", &[1, 2, 3, 4], 3).unwrap();
    let got: Vec<u64> = a.guardians.iter().map(|g| u64::from(g.node)).collect();
    assert_eq!(got, want);
    // Channels in order over guardians by id, cycling.
    let channels: Vec<&str> = a.guardians.iter().map(|g| g.channel.as_str()).collect();
    assert_eq!(
        channels,
        ["email:alice@example.com", "app", "email:alice@example.com"]
    );
    assert_eq!((a.threshold, a.version, a.epoch), (2, 1, 1));
    assert_eq!(a.reset_public_key.0.len(), 32);
    assert_eq!(a.device_key.0, device.public_key());
    // The reset key is an ordinary Ed25519 key on exactly those guardians.
    let k = admin.key("reset.alice.example").await.unwrap();
    assert_eq!(k.suite, SuiteName::Ed25519);
    assert_eq!(
        k.members.iter().map(|m| u64::from(*m)).collect::<Vec<_>>(),
        want
    );
    assert_eq!(k.public_key, a.reset_public_key);
    // Every node answers the same.
    for i in 1..=4 {
        assert_eq!(
            via(i, &plain)
                .recovery_account("alice.example")
                .await
                .unwrap(),
            a
        );
    }
    let list = via(3, &plain).recovery_accounts().await.unwrap();
    assert_eq!((list.version, list.accounts.len()), (1, 1));
    // A second account moves the shard map on.
    let b = admin
        .recovery_account_create(&account("bob", &device, &["app"]))
        .await
        .unwrap();
    assert_eq!((b.version, b.guardians.len(), b.threshold), (2, 4, 2));
    assert!(b.guardians.iter().all(|g| g.channel == "app"));
    // Refusals: no permission; the account exists; bad input.
    let err = via(1, &plain)
        .recovery_account_create(&account("carol", &device, &["app"]))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    let err = via(1, &enroller)
        .recovery_account_create(&req)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    for (bad, what) in [
        (account("carol", &device, &[]), "no channel"),
        (
            account("carol", &device, &["sms:123"]),
            "an unknown channel",
        ),
        (
            account("carol", &device, &["email:nobody"]),
            "not an address",
        ),
        (account("carol smith", &device, &["app"]), "a bad name"),
        (
            account("carol@x", &device, &["app"]),
            "an address as a name",
        ),
        (
            CreateAccountRequest {
                guardians: Some(5),
                ..account("carol", &device, &["app"])
            },
            "more guardians than voters",
        ),
        (
            CreateAccountRequest {
                threshold: Some(1),
                ..account("carol", &device, &["app"])
            },
            "threshold 1",
        ),
    ] {
        let err = via(1, &enroller)
            .recovery_account_create(&bad)
            .await
            .unwrap_err();
        assert_eq!(status_of(&err), 400, "{what}: {err}");
    }
    let err = via(1, &plain).recovery_account("nobody").await.unwrap_err();
    assert_eq!(status_of(&err), 404, "{err}");
    // The reset key signs nothing through the signing API, even for an admin.
    let err = admin
        .sign("reset.alice.example", b"keyquorum-reset-v1 forged")
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    let err = via(1, &plain).sign("reset.bob", b"m").await.unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    // No reset. key outside an account; no reshare under the account.
    let err = admin
        .create_key(&common::create("reset.sneaky", SuiteName::Ed25519, 2, None))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 400, "{err}");
    allow_reshare(&c, &admin, "reset.bob", 3, &ns(&[1, 2, 3, 4])).await;
    let err = admin
        .reshare("reset.bob", 3, &ns(&[1, 2, 3, 4]))
        .await
        .unwrap_err();
    // Each member refuses to deal (and apply would refuse the commit).
    assert_eq!(status_of(&err), 403, "{err}");
    assert!(err.to_string().contains("an account's reset key"), "{err}");
    assert_eq!(admin.key("reset.bob").await.unwrap().epoch, 1);
    c.shutdown().await;
}
