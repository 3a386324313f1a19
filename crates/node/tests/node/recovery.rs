//! Credential guardians' accounts on a real cluster on loopback (issue
//! #20 item 1): enrolment picks the guardians every replica would pick,
//! makes the reset key by DKG among them, and records channels and the
//! device key; only a client with the `recovery` permission (or an admin)
//! enrols; the reset key never signs through the signing API and is not
//! reshared under the account. Reset requests (item 2): fragments over a
//! real SMTP server (aiosmtpd, from PyPI), a webhook and the app inbox
//! assemble into an Ed25519 token; refusals below t, with another device
//! key or another request's fragment; expiry; the account's rate limit; a
//! guardian sending a bad share is named.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "integration tests: a failed unwrap is a failed test"
)]

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{allow_reshare, cluster, n, new_client, ns, poll_value, status_of};
use keyquorum_client::Client;
use keyquorum_core::oprf::reset::{guardians, DeviceSecret};
use keyquorum_wire::api::{CreateClientRequest, SuiteName};
use keyquorum_wire::recovery::{CreateAccountRequest, ResetRequest};
use keyquorum_wire::Hex32;

/// A client with the `recovery` permission, registered through `admin`.
pub(crate) async fn recovery_client(admin: &Client, name: &str) -> keyquorum_client::ClientKey {
    let key = keyquorum_client::ClientKey::generate(name, &mut rand_core::OsRng);
    admin
        .create_client(&CreateClientRequest {
            name: name.into(),
            public_key: Hex32(key.public_key()),
            admin: false,
            operator: false,
            sign_keys: Vec::new(),
            recovery: true,
            expires_ms: None,
        })
        .await
        .unwrap();
    key
}

pub(crate) fn account(
    name: &str,
    device: &DeviceSecret,
    channels: &[&str],
) -> CreateAccountRequest {
    CreateAccountRequest {
        account: name.into(),
        guardians: None,
        threshold: None,
        channels: channels.iter().map(|c| c.to_string()).collect(),
        device_key: Hex32(device.public_key()),
        measurements: None,
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
    let enroller = recovery_client(&admin, "enroller").await;
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
    // Software attestation: an account can require its guardians' build
    // (each node states its executable's SHA-256 at boot).
    let m = common::poll_value("every node's measurement", Duration::from_secs(10), || {
        let admin = admin.clone();
        async move {
            let s = admin.status().await.ok()?;
            let ms: Vec<_> = s.nodes.iter().filter_map(|x| x.measurement).collect();
            (ms.len() == s.nodes.len()).then(|| ms[0])
        }
    })
    .await;
    let device = DeviceSecret::generate();
    let a = admin
        .recovery_account_create(&CreateAccountRequest {
            measurements: Some(vec![m.binary]),
            ..account("attested", &device, &["app"])
        })
        .await
        .unwrap();
    assert_eq!(a.measurements, Some(vec![m.binary]));
    let err = admin
        .recovery_account_create(&CreateAccountRequest {
            measurements: Some(vec![Hex32([7; 32])]),
            ..account("other-build", &device, &["app"])
        })
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 400, "{err}");
    assert!(err.to_string().contains("measurement"), "{err}");
    c.shutdown().await;
}

/// An SMTP server we did not write (aiosmtpd) on a free loopback port,
/// storing mail in a Maildir; `None` (and the test says so) when the
/// module is missing outside CI. CI installs it (`.ci/run`) and fails
/// without it.
struct Smtpd {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn smtpd() -> Option<Smtpd> {
    let python = std::env::var("KEYQUORUM_SMTPD_PYTHON").unwrap_or_else(|_| "python3".into());
    let have = std::process::Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs aiosmtpd for the SMTP test ({python} -m pip install aiosmtpd)"
        );
        eprintln!("SKIPPED the SMTP part: no aiosmtpd for {python} (pip install aiosmtpd)");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(&python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(dir.path().join("mail"))
        .spawn()
        .unwrap();
    let s = Smtpd { child, port, dir };
    poll_value("aiosmtpd to listen", Duration::from_secs(30), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;
    Some(s)
}

/// Every `KQF1` fragment in the Maildir, with its `To:` address.
fn mailed(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join("mail").join("new"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap();
        let text = text.replace("=\r\n", "").replace("=\n", "");
        let to = text
            .lines()
            .find_map(|l| l.strip_prefix("To: "))
            .unwrap_or_default()
            .trim()
            .to_string();
        for l in text.lines() {
            if let Some(i) = l.find("KQF1") {
                out.push((to.clone(), l[i..].trim().to_string()));
            }
        }
    }
    out
}

/// A webhook receiver on a free loopback port: every JSON body it got.
async fn webhook() -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    (port, got)
}

/// A reset over email (a real SMTP server), a webhook and the app inbox,
/// assembled into a token ed25519-dalek verifies; the refusals the issue
/// names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_token_assembles_from_fragments_over_email_webhook_and_app() {
    use keyquorum_client::recovery::{assemble_reset, ResetClaim};
    let smtp = smtpd().await;
    let (hook_port, hooks) = webhook().await;
    let (_dir, c) = common::cluster_smtp(
        3,
        2,
        0,
        keyquorum_node::config::NodeConfig::DEFAULT_CHECKPOINT_EVERY,
        keyquorum_node::config::NodeConfig::DEFAULT_AUDIT_QUEUE,
        keyquorum_node::config::NodeConfig::DEFAULT_CLIENT_SESSIONS,
        smtp.as_ref().map(|s| format!("127.0.0.1:{}", s.port)),
    )
    .await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    // The user's side: any client, no permission.
    let user = new_client(&admin, "user", false, false, &[]).await;
    let via = |i: u16| Client::new(&c.url_of(n(i)), &user, c.ca_pem().as_bytes()).unwrap();
    let user2 = new_client(&admin, "user2", false, false, &[]).await;
    let via2 = |i: u16| Client::new(&c.url_of(n(i)), &user2, c.ca_pem().as_bytes()).unwrap();
    let device = DeviceSecret::generate();
    let email = if smtp.is_some() {
        "email:alice@example.com"
    } else {
        "app"
    };
    let hook = format!("webhook:http://127.0.0.1:{hook_port}/hook");
    let mut req = account("alice", &device, &[email, &hook, "app"]);
    req.threshold = Some(3);
    let a = admin.recovery_account_create(&req).await.unwrap();
    let pinned = a.reset_public_key.0.clone();
    let channel_of = |g: keyquorum_wire::NodeId| {
        a.guardians
            .iter()
            .find(|x| x.node == g)
            .unwrap()
            .channel
            .clone()
    };

    let claim = |r: &keyquorum_wire::recovery::ResetResponse, hash: u8| ResetClaim {
        account: "alice".into(),
        request_id: r.request_id.0.clone().try_into().unwrap(),
        credential_hash: [hash; 32],
    };
    let open = |client: Client, hash: u8, ttl: Option<u32>| async move {
        client
            .recovery_reset(
                "alice",
                &ResetRequest {
                    credential_hash: Hex32([hash; 32]),
                    ttl_s: ttl,
                },
            )
            .await
    };
    let r1 = open(via(2), 7, None).await.unwrap();
    assert_eq!(r1.fragments.len(), 3);
    assert!(r1.fragments.iter().all(|f| f.delivered), "{r1:?}");
    for f in &r1.fragments {
        assert_eq!(f.channel, channel_of(f.guardian));
    }
    let id = hex::encode(&r1.request_id.0);
    // Each fragment from its own channel.
    let mut fragments: Vec<String> = Vec::new();
    let hooked = hooks.lock().unwrap().clone();
    assert_eq!(hooked.len(), 1, "{hooked:?}");
    assert_eq!(hooked[0]["request_id"], id.as_str());
    fragments.push(hooked[0]["fragment"].as_str().unwrap().to_string());
    let inbox = via(3).recovery_inbox("alice").await.unwrap();
    let apps: Vec<String> = inbox.fragments.iter().map(|f| f.fragment.clone()).collect();
    if let Some(s) = &smtp {
        assert_eq!(apps.len(), 1);
        let mail = poll_value("the fragment by email", Duration::from_secs(10), || {
            let m = mailed(s.dir.path());
            async move { (!m.is_empty()).then_some(m) }
        })
        .await;
        assert_eq!(mail.len(), 1, "{mail:?}");
        assert_eq!(mail[0].0, "alice@example.com");
        fragments.push(mail[0].1.clone());
    } else {
        assert_eq!(apps.len(), 2);
    }
    fragments.extend(apps);
    // The package from any node; the token verifies as plain Ed25519.
    let package = via(1).recovery_reset_package("alice", &id).await.unwrap();
    assert_eq!(package.signers.len(), 3);
    let c1 = claim(&r1, 7);
    let token = assemble_reset(&package, &c1, &pinned, &fragments, &device).unwrap();
    common::check_ed25519(&pinned, &token.message, &token.token);
    let m = keyquorum_core::oprf::reset::ResetMessage::from_bytes(&token.message).unwrap();
    assert_eq!(
        (m.account.as_str(), m.credential_hash, m.expiry),
        ("alice", [7; 32], r1.expires)
    );
    assert_eq!(hex::encode(m.request_id), id);
    // Below t; another device; a pinned key that is not the account's.
    let e = assemble_reset(&package, &c1, &pinned, &fragments[..2], &device).unwrap_err();
    assert!(
        e.to_string().contains("2 of 3")
            || e.to_string().contains("not enough")
            || e.to_string().to_lowercase().contains("need"),
        "{e}"
    );
    let e = assemble_reset(
        &package,
        &c1,
        &pinned,
        &fragments,
        &DeviceSecret::generate(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not open"), "{e}");
    let e = assemble_reset(&package, &c1, &[9; 32], &fragments, &device).unwrap_err();
    assert!(e.to_string().contains("pinned"), "{e}");
    // Another request's package (say, one an attacker opened with its own
    // credential hash) does not complete the user's claim.
    let e = assemble_reset(&package, &claim(&r1, 6), &pinned, &fragments, &device).unwrap_err();
    assert!(e.to_string().contains("not of the reset asked for"), "{e}");

    // A second request: its fragments do not mix with the first's.
    let r2 = open(via(3), 8, Some(60)).await.unwrap();
    assert!(
        r2.expires < r1.expires,
        "a 60 s request ends before a 900 s one"
    );
    assert!(r2.fragments.iter().all(|f| f.delivered), "{r2:?}");
    let inbox = via(1).recovery_inbox("alice").await.unwrap();
    let other = inbox
        .fragments
        .iter()
        .find(|f| f.request_id == r2.request_id)
        .unwrap()
        .fragment
        .clone();
    let mut mixed = fragments.clone();
    mixed[0] = other;
    let e = assemble_reset(&package, &c1, &pinned, &mixed, &device).unwrap_err();
    assert!(e.to_string().contains("another reset request"), "{e}");
    // A guardian sending a bad share is named.
    let bad = r1.fragments[0].guardian;
    c.keys(bad)
        .unwrap()
        .faults()
        .bad_signature_share
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let r3 = open(via2(1), 9, None).await.unwrap();
    c.keys(bad)
        .unwrap()
        .faults()
        .bad_signature_share
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let id3 = hex::encode(&r3.request_id.0);
    let mut frags3: Vec<String> = hooks
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h["request_id"] == id3.as_str())
        .map(|h| h["fragment"].as_str().unwrap().to_string())
        .collect();
    frags3.extend(
        via(1)
            .recovery_inbox("alice")
            .await
            .unwrap()
            .fragments
            .into_iter()
            .filter(|f| f.request_id == r3.request_id)
            .map(|f| f.fragment),
    );
    if let Some(s) = &smtp {
        let mail = poll_value(
            "the third fragment by email",
            Duration::from_secs(10),
            || {
                let m = mailed(s.dir.path());
                async move { (m.len() >= 3).then_some(m) }
            },
        )
        .await;
        frags3.extend(mail.into_iter().map(|(_, f)| f).filter(|f| f[4..36] == id3));
    }
    assert_eq!(frags3.len(), 3, "{frags3:?}");
    let p3 = via(2).recovery_reset_package("alice", &id3).await.unwrap();
    let e = assemble_reset(&p3, &claim(&r3, 9), &pinned, &frags3, &device).unwrap_err();
    assert!(e.to_string().contains(&format!("{bad}")), "{e}");
    assert!(e.to_string().to_lowercase().contains("share"), "{e}");

    // Two requests of the account by one client this hour: its third is
    // refused (before any nonce is drawn, and on apply).
    let e = open(via(2), 10, None).await.unwrap_err();
    assert_eq!(status_of(&e), 409, "{e}");
    assert!(e.to_string().contains("rate limit"), "{e}");
    c.shutdown().await;
}

/// Rotation 2-of-3 → 3-of-5 keeps the reset public key; a request opened
/// before it cannot complete (its fragments stop counting); one opened
/// after assembles from the new guardians' fragments; only a client with
/// the recovery permission (or an admin) rotates, and the dealers refuse a
/// reshare of the reset key through `/v1/keys`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_the_reset_key_and_retires_the_old_guardians() {
    use keyquorum_client::recovery::{assemble_reset, ResetClaim};
    use keyquorum_wire::recovery::RotateAccountRequest;
    let (_dir, c) = cluster(5, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let user = new_client(&admin, "user", false, false, &[]).await;
    let via = |i: u16| Client::new(&c.url_of(n(i)), &user, c.ca_pem().as_bytes()).unwrap();
    let device = DeviceSecret::generate();
    let mut req = account("carol", &device, &["app"]);
    req.guardians = Some(3);
    let a = admin.recovery_account_create(&req).await.unwrap();
    assert_eq!((a.guardians.len(), a.threshold, a.epoch), (3, 2, 1));
    let old: Vec<u64> = a.guardians.iter().map(|g| u64::from(g.node)).collect();
    assert_eq!(old, guardians("carol", &[1, 2, 3, 4, 5], 3).unwrap());
    let open = |client: Client, hash: u8| async move {
        client
            .recovery_reset(
                "carol",
                &ResetRequest {
                    credential_hash: Hex32([hash; 32]),
                    ttl_s: None,
                },
            )
            .await
            .unwrap()
    };
    let fragments_of = |r: keyquorum_wire::recovery::ResetResponse| async move {
        via(3)
            .recovery_inbox("carol")
            .await
            .unwrap()
            .fragments
            .into_iter()
            .filter(|f| f.request_id == r.request_id)
            .map(|f| f.fragment)
            .collect::<Vec<_>>()
    };
    let before = open(via(1), 1).await;
    let before_frags = fragments_of(before.clone()).await;
    assert_eq!(before_frags.len(), 2);
    // Only the recovery permission or an admin rotates.
    let err = via(2)
        .recovery_account_rotate("carol", &RotateAccountRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    let r = admin
        .recovery_account_rotate(
            "carol",
            &RotateAccountRequest {
                guardians: Some(5),
                threshold: Some(3),
            },
        )
        .await
        .unwrap();
    assert_eq!((r.guardians.len(), r.threshold, r.epoch), (5, 3, 2));
    assert_eq!(r.reset_public_key, a.reset_public_key);
    assert_eq!(r.version, a.version + 1);
    let k = admin.key("reset.carol").await.unwrap();
    assert_eq!((k.threshold, k.members.len(), k.epoch), (3, 5, 2));
    // Never a lower threshold or fewer guardians, even for an admin; a
    // recovery client that did not enrol the account may not rotate it.
    for (g, t) in [(Some(5), Some(2)), (Some(4), Some(3))] {
        let err = admin
            .recovery_account_rotate(
                "carol",
                &RotateAccountRequest {
                    guardians: g,
                    threshold: t,
                },
            )
            .await
            .unwrap_err();
        assert_eq!(status_of(&err), 400, "{err}");
        assert!(err.to_string().contains("at least"), "{err}");
    }
    let enroller = recovery_client(&admin, "other-enroller").await;
    let err = Client::new(&c.url_of(n(1)), &enroller, c.ca_pem().as_bytes())
        .unwrap()
        .recovery_account_rotate("carol", &RotateAccountRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    // Every guardian ends with one share of the key: the new generation's.
    common::poll(
        "old generations erased",
        Duration::from_secs(20),
        || async {
            (1..=5).all(|i| {
                common::vault_count(
                    &c,
                    n(i),
                    keyquorum_store::vault::Table::Shares,
                    "reset.carol",
                ) == 1
            })
        },
    )
    .await;
    // The request opened before cannot complete: its generation is gone.
    let id = hex::encode(&before.request_id.0);
    let err = via(4)
        .recovery_reset_package("carol", &id)
        .await
        .unwrap_err();
    assert!(matches!(status_of(&err), 404 | 409 | 410), "{err}");
    // A request opened now: three new guardians' fragments make the token,
    // under the same public key.
    let after = open(via(2), 2).await;
    assert_eq!(after.fragments.len(), 3);
    let frags = fragments_of(after.clone()).await;
    assert_eq!(frags.len(), 3);
    let package = via(5)
        .recovery_reset_package("carol", &hex::encode(&after.request_id.0))
        .await
        .unwrap();
    let claim = ResetClaim {
        account: "carol".into(),
        request_id: after.request_id.0.clone().try_into().unwrap(),
        credential_hash: [2; 32],
    };
    let pinned = a.reset_public_key.0.clone();
    let token = assemble_reset(&package, &claim, &pinned, &frags, &device).unwrap();
    common::check_ed25519(&pinned, &token.message, &token.token);
    // The old request's fragments do not count towards the new one.
    let mut mixed = frags.clone();
    mixed[0] = before_frags[0].clone();
    assert!(assemble_reset(&package, &claim, &pinned, &mixed, &device).is_err());
    // The reset key is still not reshared through /v1/keys.
    allow_reshare(&c, &admin, "reset.carol", 2, &ns(&[1, 2, 3])).await;
    let err = admin
        .reshare("reset.carol", 2, &ns(&[1, 2, 3]))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    assert_eq!(admin.key("reset.carol").await.unwrap().epoch, 2);
    c.shutdown().await;
}

/// PIN-protected recovery end to end on three guardians (2-of-3): the
/// right PIN gives the secret back, a wrong one counts down (the count
/// survives a guardian's restart and a success starts it again), and past
/// the limit the secret is destroyed and every guardian erases its PIN
/// key share. Only the enroller or an admin registers, once; a threshold
/// of half the guardians or less is refused; the PIN key is no signing,
/// OPRF, export or reshare key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_protects_a_secret_with_counted_guesses_and_destruction_at_the_limit() {
    use keyquorum_client::recovery::Recovered;
    use keyquorum_core::oprf::pin::Stretch;
    let (_dir, mut c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let plain = new_client(&admin, "plain", false, false, &[]).await;
    // The service that runs recoveries holds the recovery permission.
    let user = recovery_client(&admin, "pin-user").await;
    let expect = keyquorum_client::recovery::ExpectedGuardians {
        guardians: (1..=3)
            .map(|i| (n(i), c.node(n(i)).unwrap().keys().identity().0))
            .collect(),
        threshold: 2,
    };
    let urls: Vec<String> = (1..=3).map(|i| c.url_of(n(i))).collect();
    let ca = c.ca_pem();
    let via = |k: &keyquorum_client::ClientKey, i: u16| {
        Client::new(&urls[usize::from(i) - 1], k, ca.as_bytes()).unwrap()
    };
    // The enroller needs the recovery permission to enrol.
    let enroller_key = recovery_client(&admin, "pin-enroller").await;
    let device = DeviceSecret::generate();
    via(&enroller_key, 1)
        .recovery_account_create(&account("dora", &device, &["app"]))
        .await
        .unwrap();
    let cost = Stretch::default();
    let secret = b"correct horse battery staple".to_vec();
    // Another client may not register it.
    let err = via(&user, 2)
        .recovery_secret_register("dora", b"246813579", &secret, 3, &cost, Some(&expect))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    // Identity keys that are not the guardians': the PIN key is not
    // trusted and nothing is registered.
    let strangers = keyquorum_client::recovery::ExpectedGuardians {
        guardians: (1..=3)
            .map(|i| (n(i), [u8::try_from(i).unwrap(); 32]))
            .collect(),
        threshold: 2,
    };
    let err = via(&enroller_key, 2)
        .recovery_secret_register("dora", b"246813579", &secret, 3, &cost, Some(&strangers))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("endorsed"), "{err}");
    assert_eq!(
        status_of(&via(&user, 1).recovery_secret("dora").await.unwrap_err()),
        404
    );
    let info = via(&enroller_key, 2)
        .recovery_secret_register("dora", b"246813579", &secret, 3, &cost, Some(&expect))
        .await
        .unwrap();
    assert_eq!((info.guesses, info.remaining, info.threshold), (3, 3, 2));
    assert_eq!(info.guardians, ns(&[1, 2, 3]));
    let pinned = info.public_key.0.clone();
    // Registered once; the record holds neither the PIN nor the secret.
    let err = via(&enroller_key, 3)
        .recovery_secret_register("dora", b"1111", b"other", 3, &cost, None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    let stored =
        serde_json::to_string(&via(&user, 1).recovery_secret("dora").await.unwrap()).unwrap();
    assert!(
        !stored.contains(&hex::encode(&secret)) && !stored.contains(&hex::encode(b"246813579"))
    );
    // The right PIN, from any client through any node.
    let got = via(&user, 3)
        .recovery_secret_recover("dora", b"246813579", &pinned)
        .await
        .unwrap();
    assert!(
        matches!(&got, Recovered::Secret(s) if s.as_slice() == secret.as_slice()),
        "{got:?}"
    );
    // A lying coordinator (node 1) asking guardian 2 directly gets
    // nothing the log did not count or the PIN did not prove.
    {
        use keyquorum_wire::peer::PeerMessage;
        let n2 = c.node(n(2)).unwrap();
        let base = urls[0].clone();
        let m = voprf::VoprfClient::<voprf::Ristretto255>::blind(b"x", &mut rand_core::OsRng)
            .unwrap()
            .message
            .serialize()
            .to_vec();
        let version = hex::encode(&info.version.0);
        let ask = |who: &keyquorum_client::ClientKey, path: &str, body: serde_json::Value| {
            common::client_request(&base, who, "POST", path, Some(body), common::now_s())
        };
        let round_one = |request| PeerMessage::OprfCommit {
            key: "pin.dora".into(),
            epoch: 1,
            run: Hex32([1; 32]),
            request,
        };
        let uncounted = ask(
            &user,
            "/v1/recovery/accounts/dora/secret/guess",
            serde_json::json!({"version": version, "blinded_element": hex::encode(&m)}),
        );
        let e = n2
            .handle_peer(n(1), round_one(uncounted))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not the last one counted"), "{e}");
        let begin = ask(
            &enroller_key,
            "/v1/recovery/accounts/dora/secret/begin",
            serde_json::json!({"blinded_element": hex::encode(&m)}),
        );
        let e = n2.handle_peer(n(1), round_one(begin)).await.unwrap_err();
        assert!(e.to_string().contains("has a secret"), "{e}");
        // The last guess is the user's right one: an unlock proof that is
        // not the PIN's, or an unlock by another client, releases nothing.
        let last = n2.registry(|r| r.recovery.secrets["dora"].last_guess.clone().unwrap());
        let unlock = |who: &keyquorum_client::ClientKey| {
            ask(
                who,
                "/v1/recovery/accounts/dora/secret/unlock",
                serde_json::json!({
                    "version": version,
                    "guess_id": hex::encode(&last.id.0),
                    "proofs": [{"node": 2, "signature": "00".repeat(64)}],
                    "recipient": "09".repeat(32),
                }),
            )
        };
        let e = n2
            .handle_peer(
                n(1),
                PeerMessage::PinUnlock {
                    request: unlock(&user),
                },
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
        let e = n2
            .handle_peer(
                n(1),
                PeerMessage::PinUnlock {
                    request: unlock(&plain),
                },
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not this client's"), "{e}");
    }
    // A client without the recovery permission may not guess.
    let err = via(&plain, 2)
        .recovery_secret_recover("dora", b"246813579", &pinned)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    // A pinned key that is not the PIN key is refused before any guess.
    assert!(via(&user, 1)
        .recovery_secret_recover("dora", b"246813579", &[7; 32])
        .await
        .is_err());
    // Wrong PINs count down; the count survives a guardian's restart.
    let wrong = |i: u16| {
        let cl = via(&user, i);
        let pinned = pinned.clone();
        async move { cl.recovery_secret_recover("dora", b"0000", &pinned).await }
    };
    assert!(matches!(
        wrong(1).await.unwrap(),
        Recovered::WrongPin { remaining: 2 }
    ));
    c.stop_node(n(2)).await;
    c.restart_node(n(2)).await.unwrap();
    let count = c
        .node(n(2))
        .unwrap()
        .vault()
        .get(keyquorum_store::vault::Table::PinCounts, b"dora")
        .unwrap()
        .map(|b| keyquorum_core::oprf::pin::Counter::from_bytes(&b).unwrap());
    assert!(
        count.is_some_and(|k| k.used <= 1),
        "the guardian's own count is in its vault"
    );
    assert!(matches!(
        wrong(2).await.unwrap(),
        Recovered::WrongPin { remaining: 1 }
    ));
    // A success starts the count again (once t guardians said so).
    let got = via(&user, 1)
        .recovery_secret_recover("dora", b"246813579", &pinned)
        .await
        .unwrap();
    assert!(matches!(got, Recovered::Secret(_)));
    common::poll(
        "the count starts again",
        Duration::from_secs(10),
        || async {
            via(&user, 1)
                .recovery_secret("dora")
                .await
                .unwrap()
                .remaining
                == 3
        },
    )
    .await;
    for left in [2, 1, 0] {
        match wrong(3).await.unwrap() {
            Recovered::WrongPin { remaining } => assert_eq!(remaining, left),
            other => panic!("{other:?}"),
        }
    }
    // Past the limit: destroyed, even for the right PIN.
    let err = via(&user, 1)
        .recovery_secret_recover("dora", b"246813579", &pinned)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    assert!(err.to_string().contains("destroyed"), "{err}");
    let info = via(&user, 2).recovery_secret("dora").await.unwrap();
    assert!(info.destroyed && info.ciphertext.0.is_empty() && info.commitments.is_empty());
    common::poll("PIN key shares erased", Duration::from_secs(20), || async {
        (1..=3).all(|i| {
            common::vault_count(&c, n(i), keyquorum_store::vault::Table::Shares, "pin.dora") == 0
        })
    })
    .await;
    // No node's files (vault, Raft log, audit log) hold the secret or the
    // PIN in the clear.
    let mut files = vec![_dir.path().to_path_buf()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&p) {
            for needle in [secret.as_slice(), b"246813579".as_slice()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds a secret in the clear",
                    p.display()
                );
            }
        }
    }
    // The PIN key is nobody's signing, export or reshare key.
    let err = admin
        .reshare("pin.dora", 2, &ns(&[1, 2, 3]))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 403, "{err}");
    assert!(admin.key("pin.dora").await.is_ok_and(|k| k.epoch == 1));
    // t ≤ n/2 is refused: two of four guardians could count a guess twice.
    let (_d4, c4) = cluster(4, 2, 0).await;
    let admin4 = Client::new(&c4.url_of(n(1)), &c4.admin, c4.ca_pem().as_bytes()).unwrap();
    let mut req = account("erin", &device, &["app"]);
    req.threshold = Some(2);
    req.guardians = Some(4);
    admin4.recovery_account_create(&req).await.unwrap();
    let err = admin4
        .recovery_secret_register("erin", b"1", b"s", 3, &cost, None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 400, "{err}");
    assert!(err.to_string().contains("above half"), "{err}");
    c4.shutdown().await;
    c.shutdown().await;
}
