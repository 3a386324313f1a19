#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! A production-style cluster from the README, driven through the binary:
//! three `keyquorum node` processes (configs written by hand, identities
//! from `--print-identity`), two operators' key pairs from `operator
//! keygen`, `keyquorum init` with every node's init secret, then a key
//! created and a signature checked by ed25519-dalek. `init` without every
//! node's secret, or a second time, is refused.

use std::time::{Duration, Instant};

use crate::common;
use common::{config, free_port, identities, kq, ok_json, operators, Nodes};
use serde_json::Value;

#[test]
fn a_three_process_cluster_is_initialised_with_operator_keys_and_signs() {
    let dir = tempfile::tempdir().unwrap();
    let ids = [1u16, 2, 3];
    let ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
    // Each node's identity (this also makes its vault).
    let (infos, ca_file) = identities(dir.path(), &ids, &ports);
    // Configs that list the other nodes; node 1 forms the Raft group.
    let mut nodes = Nodes::default();
    for (id, port) in ids.iter().zip(&ports) {
        let peers: Vec<(u16, Value)> = infos.iter().filter(|(p, _)| p != id).cloned().collect();
        let cfg = config(dir.path(), *id, *port, &peers);
        let mut args = vec!["node", "--config", cfg.to_str().unwrap()];
        if *id == 1 {
            args.push("--init");
        }
        let v = nodes.start(&args);
        assert!(v["addr"].is_string(), "node {id} did not start: {v}");
    }
    let url = infos[0].1["addr"].as_str().unwrap().to_string();
    let secret = |id: u16| dir.path().join(format!("n{id}")).join("init-secret");
    for id in ids {
        assert!(secret(id).exists(), "node {id} wrote no init secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(secret(id)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "init secret mode");
        }
    }

    // Two operators make their key pairs on their own machines.
    let operators = operators(dir.path(), &["alice", "bob"]);
    let admin_key = dir.path().join("admin.key");
    let init = |secrets: &[u16]| {
        let files: Vec<_> = secrets.iter().map(|id| secret(*id)).collect();
        common::init(&url, &ca_file, &admin_key, &operators, &files)
    };
    // Until a leader is elected, init answers 503 (or cannot connect):
    // polled. Without node 3's secret, it is refused by node 3 (and the
    // admin's key file is not kept).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = init(&[1, 2]);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(
            !o.status.success(),
            "init without node 3's secret succeeded"
        );
        if err.contains("403") {
            assert!(err.contains("node 3"), "{err}");
            break;
        }
        assert!(Instant::now() < deadline, "init never got an answer: {err}");
        // Not answered (no leader yet): the CLI keeps the admin key in
        // case it was; here it was not.
        let _ = std::fs::remove_file(&admin_key);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!admin_key.exists(), "a refused init keeps no admin key");
    // With every node's secret it succeeds.
    let v = ok_json(&init(&[1, 2, 3]), "init");
    assert_eq!(v["quorum"], 2);
    assert_eq!(v["operators"], serde_json::json!(["alice", "bob"]));
    // The secrets are spent: every node deletes its file.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids.iter().any(|id| secret(*id).exists()) {
        assert!(Instant::now() < deadline, "init secrets not deleted");
        std::thread::sleep(Duration::from_millis(100));
    }

    let env = [
        ("KEYQUORUM_URL", url.as_str()),
        ("KEYQUORUM_CA_CERT", ca_file.to_str().unwrap()),
        ("KEYQUORUM_KEY_FILE", admin_key.to_str().unwrap()),
        ("KEYQUORUM_KEY_ID", "admin"),
    ];
    let key = ok_json(
        &kq(&["key", "create", "prod", "--json"], &env),
        "key create",
    );
    assert_eq!(key["members"].as_array().unwrap().len(), 3);
    let msg = b"first production signature";
    let sig = ok_json(
        &kq(
            &[
                "key",
                "sign",
                "prod",
                "--message-hex",
                &hex::encode(msg),
                "--json",
            ],
            &env,
        ),
        "key sign",
    );
    let pk: [u8; 32] = hex::decode(key["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let sig: [u8; 64] = hex::decode(sig["signature"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&pk)
        .unwrap()
        .verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .expect("an RFC 8032 verifier accepts the signature");

    // The admin alone cannot export: it asks, only the operators approve.
    let o = kq(
        &["operator", "list", "--json"],
        &[
            ("KEYQUORUM_URL", url.as_str()),
            ("KEYQUORUM_CA_CERT", ca_file.to_str().unwrap()),
            (
                "KEYQUORUM_OPERATOR_KEY_FILE",
                operators[0].0.to_str().unwrap(),
            ),
            ("KEYQUORUM_OPERATOR_KEY_ID", "alice"),
        ],
    );
    assert_eq!(ok_json(&o, "operator list")["quorum"], 2);

    // The secrets are gone, so init cannot be asked again (and apply
    // refuses a second init while there is a client: unit-tested).
    let o = init(&[1, 2, 3]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("init secret"), "{err}");
}
