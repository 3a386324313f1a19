#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! Joining without hand-copied keys, driven through the binary: node 1
//! starts from a bare config and forms the cluster, `keyquorum init`
//! registers two operators (quorum 2); nodes 2 and 3 start from bare
//! configs with `--join URL --join-code CODE`, the operators propose and
//! approve each, and the three sign with a new key. No config lists
//! another node's keys. A node given a code for other members refuses to
//! start; a join no quorum approved changes nothing.

use crate::common;
use common::{config, free_port, kq, ok_json, operators, signed, until, Nodes};

/// Wait until `keyquorum status` through `env` counts `n` voters.
fn wait_voters(env: &[(&str, &str)], n: usize) {
    until(60, &format!("{n} voters"), || {
        let v = ok_json(&kq(&["status", "--json"], env), "status");
        let voters = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["voter"] == true)
            .count();
        (voters == n).then_some(())
    });
}

#[test]
fn nodes_join_a_running_cluster_with_a_join_code_and_the_operators_approval() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let cfg: Vec<_> = (1..=4u16)
        .map(|id| config(dir.path(), id, ports[usize::from(id) - 1], &[]))
        .collect();
    let path = |i: usize| cfg[i].to_str().unwrap().to_string();
    let mut nodes = Nodes::default();

    // Node 1 forms a cluster of one.
    let v1 = nodes.start(&["node", "--config", &path(0), "--init"]);
    // Its public identity, read while it runs and without the passphrase.
    let identity = |i: usize| {
        let o = std::process::Command::new(common::BIN)
            .args(["node", "identity", "--config", &path(i), "--json"])
            .env_remove("KEYQUORUM_PASSPHRASE")
            .output()
            .unwrap();
        ok_json(&o, "node identity")
    };
    let id1 = identity(0);
    assert_eq!(id1["id"], 1);
    assert_eq!(id1["info"]["identity"], v1["identity"]);
    let url = id1["info"]["addr"].as_str().unwrap().to_string();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, id1["certificate"].as_str().unwrap()).unwrap();

    let ops = operators(dir.path(), &["alice", "bob"]);
    let admin_key = dir.path().join("admin.key");
    let secret = dir.path().join("n1").join("init-secret");
    let init = until(60, "init", || {
        let _ = std::fs::remove_file(&admin_key);
        let o = common::init(
            &url,
            &ca_file,
            &admin_key,
            &ops,
            std::slice::from_ref(&secret),
        );
        o.status.success().then(|| ok_json(&o, "init"))
    });
    assert_eq!(init["quorum"], 2);
    let ca = ca_file.to_str().unwrap().to_string();
    let admin_file = admin_key.to_str().unwrap().to_string();
    let admin = [
        ("KEYQUORUM_URL", url.as_str()),
        ("KEYQUORUM_CA_CERT", ca.as_str()),
        ("KEYQUORUM_KEY_FILE", admin_file.as_str()),
        ("KEYQUORUM_KEY_ID", "admin"),
    ];
    let operator = |i: usize| {
        [
            ("KEYQUORUM_URL", url.clone()),
            ("KEYQUORUM_CA_CERT", ca.clone()),
            (
                "KEYQUORUM_OPERATOR_KEY_FILE",
                ops[i].0.to_str().unwrap().to_string(),
            ),
            ("KEYQUORUM_OPERATOR_KEY_ID", ["alice", "bob"][i].to_string()),
        ]
    };
    let approve = |i: usize, change: &str| {
        let env = operator(i);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ok_json(&kq(&["approve", change, "--json"], &env), "approve")
    };

    let code = ok_json(
        &kq(&["cluster", "join-code", "--json"], &admin),
        "join-code",
    );
    let code = code["code"].as_str().unwrap().to_string();
    assert!(code.starts_with("kqjoin1-"), "{code}");

    // A code for other members (another cluster's, or a stale one): the
    // node trusts nothing and does not start.
    let mut wrong = code.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    // Node 4 started under `code` must refuse to: its error.
    let refused = |code: &str| {
        let o = kq(
            &[
                "node",
                "--config",
                &path(3),
                "--join",
                &url,
                "--join-code",
                code,
                "--json",
            ],
            &[],
        );
        assert!(!o.status.success(), "node 4 joined under {code}");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = refused(&wrong);
    assert!(err.contains("join code"), "{err}");
    assert!(!dir.path().join("n4").join("join.json").exists());

    // Nodes 2 and 3 ask to join; their configs list no peer.
    let mut asked = Vec::new();
    for i in [1usize, 2] {
        let v = nodes.start(&[
            "node",
            "--config",
            &path(i),
            "--join",
            &url,
            "--join-code",
            &code,
        ]);
        asked.push(v["identity"].as_str().unwrap().to_string());
    }
    let joins = until(30, "both requests listed", || {
        let v = ok_json(&kq(&["cluster", "joins", "--json"], &admin), "joins");
        (v["requests"].as_array().unwrap().len() == 2).then_some(v)
    });
    for r in joins["requests"].as_array().unwrap() {
        assert_eq!(r["valid"], true, "{r}");
    }
    // Unapproved, they are not members.
    let status = ok_json(&kq(&["status", "--json"], &admin), "status");
    assert_eq!(status["nodes"].as_array().unwrap().len(), 1);

    // Only the whole identity the new node printed names its request: a
    // prefix, or node 3's key for node 2, is refused.
    for wrong in [&asked[0][..16], asked[1].as_str()] {
        let o = kq(
            &["cluster", "join", "2", "--identity", wrong, "--json"],
            &admin,
        );
        assert!(!o.status.success(), "{wrong}");
    }

    let join_as = |id: &str, identity: &str| {
        let change = ok_json(
            &kq(
                &["cluster", "join", id, "--identity", identity, "--json"],
                &admin,
            ),
            "cluster join",
        );
        assert_eq!(change["change"]["identity"], identity);
        let change = change["id"].as_str().unwrap().to_string();
        // One approval of two: not done.
        assert_eq!(approve(0, &change)["done"], false);
        assert_eq!(approve(1, &change)["done"], true);
    };
    join_as("2", &asked[0]);
    wait_voters(&admin, 2);
    // While this machine trusts only node 1's certificate, node 2 cannot
    // confirm the members: no code, unless on node 1's word alone.
    let o = kq(&["cluster", "join-code", "--json"], &admin);
    assert!(!o.status.success(), "a code confirmed by 1 of 2 voters");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("1 of 2 voters confirmed"), "{err}");
    ok_json(
        &kq(&["cluster", "join-code", "--trust-one", "--json"], &admin),
        "join-code --trust-one",
    );
    let mut pem = std::fs::read_to_string(&ca_file).unwrap();
    pem.push_str(identity(1)["certificate"].as_str().unwrap());
    std::fs::write(&ca_file, pem).unwrap();
    // Node 3 asked for the members before node 2 joined: its request is
    // stale, and the operators cannot take it.
    let o = kq(
        &["cluster", "join", "3", "--identity", &asked[1], "--json"],
        &admin,
    );
    assert!(!o.status.success(), "a request for old members was taken");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("members now"), "{err}");
    // Restarted with a new code (both voters confirm it), it asks again.
    let code = ok_json(
        &kq(&["cluster", "join-code", "--json"], &admin),
        "join-code",
    );
    let code = code["code"].as_str().unwrap().to_string();
    nodes.0[2].0.kill().unwrap();
    nodes.0[2].0.wait().unwrap();
    let again = nodes.start(&[
        "node",
        "--config",
        &path(2),
        "--join",
        &url,
        "--join-code",
        &code,
    ]);
    assert_eq!(again["identity"].as_str().unwrap(), asked[1]);
    let node3 = nodes.0.len() - 1;
    let change = until(30, "node 3's new request", || {
        let o = kq(
            &["cluster", "join", "3", "--identity", &asked[1], "--json"],
            &admin,
        );
        o.status.success().then(|| ok_json(&o, "cluster join"))
    });
    let change = change["id"].as_str().unwrap().to_string();
    approve(0, &change);
    approve(1, &change);
    // The leader makes it a learner, then a voter.
    wait_voters(&admin, 3);

    // Clients trust the new nodes' certificates, read from each running
    // node; a key on all three signs through node 3.
    let mut pem = String::new();
    for i in 0..3 {
        let v = identity(i);
        assert_eq!(
            v["info"]["identity"].as_str().unwrap(),
            if i == 0 {
                v1["identity"].as_str().unwrap()
            } else {
                asked[i - 1].as_str()
            }
        );
        pem.push_str(v["certificate"].as_str().unwrap());
    }
    std::fs::write(&ca_file, pem).unwrap();
    let key = ok_json(
        &kq(&["key", "create", "prod", "--json"], &admin),
        "key create",
    );
    assert_eq!(key["members"].as_array().unwrap().len(), 3);
    let url3 = identity(2)["info"]["addr"].as_str().unwrap().to_string();
    let mut via3 = admin;
    via3[0] = ("KEYQUORUM_URL", url3.as_str());
    let msg = b"signed by a cluster that was joined, not configured";
    let sig = signed(&via3, msg, "node 3 signs");
    let pk: [u8; 32] = hex::decode(key["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let verifier = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
    verifier
        .verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .expect("an RFC 8032 verifier accepts the signature");

    // Node 3 killed (SIGKILL) under a signing load through node 1: every
    // acknowledged signature verifies, and signing goes on with two.
    let acked = std::sync::Mutex::new(Vec::<(Vec<u8>, [u8; 64])>::new());
    std::thread::scope(|s| {
        let load = s.spawn(|| {
            for i in 0..40u32 {
                let m = format!("under load {i}").into_bytes();
                let o = kq(
                    &[
                        "key",
                        "sign",
                        "prod",
                        "--message-hex",
                        &hex::encode(&m),
                        "--json",
                    ],
                    &admin,
                );
                if o.status.success() {
                    let v = ok_json(&o, "sign");
                    let sig: [u8; 64] = hex::decode(v["signature"].as_str().unwrap())
                        .unwrap()
                        .try_into()
                        .unwrap();
                    acked.lock().unwrap().push((m, sig));
                }
            }
        });
        until(60, "signatures before the kill", || {
            (acked.lock().unwrap().len() >= 5).then_some(())
        });
        nodes.0[node3].0.kill().unwrap();
        nodes.0[node3].0.wait().unwrap();
        let before = acked.lock().unwrap().len();
        load.join().unwrap();
        assert!(
            acked.lock().unwrap().len() > before + 10,
            "signing did not go on without node 3"
        );
    });
    for (m, sig) in acked.lock().unwrap().iter() {
        verifier
            .verify_strict(m, &ed25519_dalek::Signature::from_bytes(sig))
            .expect("an acknowledged signature verifies");
    }
    // Restarted from its config alone (the join left its member list), it
    // catches up and signs again.
    let again = nodes.start(&["node", "--config", &path(2)]);
    assert_eq!(again["identity"].as_str().unwrap(), asked[1]);
    let back = b"after the restart";
    let sig = signed(&via3, back, "node 3 signs after its restart");
    verifier
        .verify_strict(back, &ed25519_dalek::Signature::from_bytes(&sig))
        .expect("node 3 signs after its restart");

    // An account guarded by nodes 1-3 with a PIN-protected secret: a drain
    // of node 1 rotates the account, and the secret waits for its client.
    let (pin, secret) = (dir.path().join("pin"), dir.path().join("secret"));
    std::fs::write(&pin, "5550123\n").unwrap();
    std::fs::write(&secret, b"seed of bob's wallet").unwrap();
    let (pin, secret) = (pin.to_str().unwrap(), secret.to_str().unwrap());
    let device = dir.path().join("bob.device");
    ok_json(
        &kq(
            &[
                "recovery",
                "account",
                "create",
                "bob",
                "--channel",
                "app",
                "--guardians",
                "3",
                "--threshold",
                "2",
                "--device-key-out",
                device.to_str().unwrap(),
                "--json",
            ],
            &admin,
        ),
        "recovery account create",
    );
    let registered = ok_json(
        &kq(
            &[
                "recovery",
                "secret",
                "register",
                "bob",
                "--pin-file",
                pin,
                "--secret-file",
                secret,
                "--json",
            ],
            &admin,
        ),
        "recovery secret register",
    );
    assert_eq!(registered["guardians"], serde_json::json!([1, 2, 3]));
    let pin_key = registered["pin_key"].as_str().unwrap().to_string();

    // A fourth node joins under a new code (the old one is stale: the
    // members changed), node 1 is drained onto it with the operators'
    // approval (its key shares reshared onto nodes 2-4), and removed.
    refused(&code);
    let code = ok_json(
        &kq(&["cluster", "join-code", "--json"], &admin),
        "join-code",
    );
    let code = code["code"].as_str().unwrap().to_string();
    let v4 = nodes.start(&[
        "node",
        "--config",
        &path(3),
        "--join",
        &url,
        "--join-code",
        &code,
    ]);
    let identity4 = v4["identity"].as_str().unwrap().to_string();
    let change = until(30, "node 4's request", || {
        let o = kq(
            &["cluster", "join", "4", "--identity", &identity4, "--json"],
            &admin,
        );
        o.status.success().then(|| ok_json(&o, "cluster join"))
    });
    let change = change["id"].as_str().unwrap().to_string();
    approve(0, &change);
    approve(1, &change);
    let mut pem = std::fs::read_to_string(&ca_file).unwrap();
    pem.push_str(identity(3)["certificate"].as_str().unwrap());
    std::fs::write(&ca_file, pem).unwrap();
    wait_voters(&admin, 4);
    // An OPRF key on nodes 1-3 too: the drain moves both keys.
    let oprf = ok_json(
        &kq(
            &[
                "oprf",
                "key",
                "create",
                "ids",
                "--threshold",
                "2",
                "--members",
                "1,2,3",
                "--json",
            ],
            &admin,
        ),
        "oprf key create",
    );
    // And a signing tree on nodes 1-3: the drain moves its unused leaves.
    let tree = ok_json(
        &kq(
            &[
                "seedtree",
                "create",
                "fw",
                "--height",
                "5",
                "--threshold",
                "2",
                "--members",
                "1,2,3",
                "--json",
            ],
            &admin,
        ),
        "seedtree create",
    );
    // A drain the operators change their minds about: node 3's drain is
    // approved, then cancelled on a second approval; nothing moved.
    let draining = |id: u64| {
        let v = ok_json(&kq(&["status", "--json"], &admin), "status");
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == id && n["draining"] == true)
    };
    let d3 = ok_json(
        &kq(&["cluster", "drain", "3", "--json"], &admin),
        "cluster drain 3",
    );
    let d3 = d3["change"].as_str().unwrap().to_string();
    approve(0, &d3);
    approve(1, &d3);
    until(30, "node 3 draining", || draining(3).then_some(()));
    let cancel = ok_json(
        &kq(&["cluster", "drain", "3", "--cancel", "--json"], &admin),
        "cluster drain 3 --cancel",
    );
    assert_eq!(cancel["cancelled"], false, "{cancel}");
    let c3 = cancel["change"].as_str().unwrap().to_string();
    approve(0, &c3);
    approve(1, &c3);
    until(30, "node 3's drain cancelled", || {
        (!draining(3)).then_some(())
    });
    let keys = ok_json(&kq(&["key", "list", "--json"], &admin), "key list");
    for k in keys["keys"].as_array().unwrap() {
        assert_eq!(k["members"], serde_json::json!([1, 2, 3]), "{k}");
    }

    // Node 1 is drained onto node 4. Nothing moves before the operators
    // approve: the drain is proposed and the reshare onto 2-4 refused.
    let drain = ["cluster", "drain", "1", "--onto", "4", "--json"];
    let asked = ok_json(&kq(&drain, &admin), "cluster drain (proposed)");
    assert_eq!(asked["approved"], false, "{asked}");
    let early = kq(
        &[
            "key",
            "reshare",
            "prod",
            "--threshold",
            "2",
            "--members",
            "2,3,4",
        ],
        &admin,
    );
    assert!(
        !early.status.success(),
        "a reshare onto 2-4 before the approval"
    );
    // Running it again proposes nothing new.
    let again = ok_json(&kq(&drain, &admin), "cluster drain (again)");
    assert_eq!(again["change"], asked["change"]);
    let change = asked["change"].as_str().unwrap().to_string();
    approve(0, &change);
    approve(1, &change);
    let drain_remove = ["cluster", "drain", "1", "--onto", "4", "--remove", "--json"];
    let names = |v: &serde_json::Value, list: &str| -> Vec<String> {
        v[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    };
    // The PIN-protected secret stops the removal until its client moves
    // it (everything else moved, the account rotated onto 2-4).
    let o = kq(&drain_remove, &admin);
    assert!(!o.status.success(), "a drain with something blocked fails");
    let drained: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        names(&drained, "moved"),
        ["oprf.ids", "prod", "bob", "fw"],
        "{drained}"
    );
    assert_eq!(names(&drained, "blocked"), ["pin.bob"], "{drained}");
    assert!(drained["removal"].is_null(), "{drained}");
    // The client, knowing the PIN, moves it: recovered with the old key,
    // registered again on the account's new guardians under a new key.
    // It names the new guardians' identity keys: the new PIN key is used
    // only on them.
    let guardian = |i: usize| {
        format!(
            "{}={}",
            i + 1,
            identity(i)["info"]["identity"].as_str().unwrap()
        )
    };
    let (g2, g3, g4) = (guardian(1), guardian(2), guardian(3));
    let mut args = vec![
        "recovery",
        "secret",
        "move",
        "bob",
        "--pin-file",
        pin,
        "--pin-key",
        &pin_key,
        "--json",
    ];
    // Without them the move is refused before anything is recovered.
    let o = kq(&args, &admin);
    assert!(
        !o.status.success(),
        "a move without the guardians' identities"
    );
    args.extend(["--identity", &g2, "--identity", &g3, "--identity", &g4]);
    args.extend(["--threshold", "2"]);
    let moved = ok_json(&kq(&args, &admin), "recovery secret move");
    assert_eq!(moved["guardians"], serde_json::json!([2, 3, 4]), "{moved}");
    assert_eq!(moved["generation"], 2, "{moved}");
    assert_ne!(moved["pin_key"].as_str().unwrap(), pin_key);
    let drained = ok_json(&kq(&drain_remove, &admin), "cluster drain (after the move)");
    assert_eq!(drained["moved"], serde_json::json!([]), "{drained}");
    assert_eq!(drained["blocked"], serde_json::json!([]), "{drained}");
    let keys = ok_json(&kq(&["key", "list", "--json"], &admin), "key list");
    for k in keys["keys"].as_array().unwrap() {
        assert_eq!(k["members"], serde_json::json!([2, 3, 4]), "{k}");
        assert_eq!(k["threshold"], 2, "{k}");
        if k["name"] == "prod" || k["name"] == "oprf.ids" {
            let before = if k["name"] == "prod" { &key } else { &oprf };
            assert_eq!(k["public_key"], before["public_key"], "{k}");
        }
    }
    let remove = drained["removal"].as_str().unwrap().to_string();
    approve(0, &remove);
    approve(1, &remove);
    // Through node 3 now: the cluster is nodes 2-4 and still signs.
    until(60, "node 1 removed", || {
        let o = kq(&["status", "--json"], &via3);
        if !o.status.success() {
            return None;
        }
        let v = ok_json(&o, "status");
        let ids: Vec<u64> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_u64().unwrap())
            .collect();
        (ids == [2, 3, 4]).then_some(())
    });
    // The secret comes back from nodes 2-4 under its new key.
    let out = dir.path().join("bob.out");
    let got = until(30, "recovery secret recover (a leader elected)", || {
        let _ = std::fs::remove_file(&out);
        let o = kq(
            &[
                "recovery",
                "secret",
                "recover",
                "bob",
                "--pin-file",
                pin,
                "--out",
                out.to_str().unwrap(),
                "--pin-key",
                moved["pin_key"].as_str().unwrap(),
                "--json",
            ],
            &via3,
        );
        o.status
            .success()
            .then(|| ok_json(&o, "recovery secret recover"))
    });
    assert_eq!(got["recovered"], true, "{got}");
    assert_eq!(std::fs::read(&out).unwrap(), b"seed of bob's wallet");
    let last = b"after node 1 left";
    let sig = signed(&via3, last, "signing without node 1");
    verifier
        .verify_strict(last, &ed25519_dalek::Signature::from_bytes(&sig))
        .expect("the same key signs after the reshare");
    // The tree signs through its new holders, under the same public key.
    let msg = hex::encode(b"firmware after node 1 left");
    let pk = tree["public_key"].as_str().unwrap();
    let s = ok_json(
        &kq(
            &[
                "seedtree",
                "sign",
                "fw",
                "--message-hex",
                &msg,
                "--public-key",
                pk,
                "--json",
            ],
            &via3,
        ),
        "seedtree sign",
    );
    let status = ok_json(
        &kq(&["seedtree", "status", "fw", "--json"], &via3),
        "seedtree status",
    );
    assert_eq!(status["members"], serde_json::json!([2, 3, 4]), "{status}");
    assert_eq!(status["epoch"], 1, "{status}");
    assert!(
        s["leaf"].as_u64().unwrap() >= status["first"].as_u64().unwrap(),
        "{s}"
    );
    let checked = ok_json(
        &kq(
            &[
                "seedtree",
                "verify",
                "fw",
                "--message-hex",
                &msg,
                "--signature",
                s["signature"].as_str().unwrap(),
                "--public-key",
                pk,
                "--json",
            ],
            &via3,
        ),
        "seedtree verify",
    );
    assert_eq!(checked["valid"], true, "{checked}");
}

/// The compose cluster's node configs (deploy/compose/) are node configs
/// a node accepts, one per id, listing no peer (nodes 2 and 3 join).
#[test]
fn the_compose_configs_are_valid_and_list_no_peer() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/compose");
    for id in 1..=3u16 {
        let path = dir.join(format!("node{id}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let cfg: keyquorum_node::config::NodeConfig = toml::from_str(&text).unwrap();
        cfg.check().unwrap();
        assert_eq!(cfg.id.get(), id);
        assert!(cfg.peers.is_empty(), "{}", path.display());
        assert_eq!(
            cfg.advertise.as_deref(),
            Some(format!("https://kq{id}:7001").as_str())
        );
    }
}
