#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! Backing up and restoring the control plane, driven through the binary:
//! three `keyquorum node` processes, a key and a signing tree used, `snapshot
//! save` (attested by the voters), more signatures after it, `snapshot
//! verify` (and what it refuses: a changed checkpoint, too few attestations,
//! a changed audit entry), every node stopped and restored from the file,
//! restarted, with node 2's vault from a copy older than the save: the key
//! signs again (fresh nonces), the tree signs with leaves never used before
//! (not the ones handed out after the save) and the audit log verifies.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common;
use common::{
    config, free_port, identities, init, kq, ok_json, operators, print_identity, signed, until,
    Nodes,
};
use serde_json::Value;

/// `key sign prod` of `msg`, checked by ed25519-dalek under `pk`.
fn sign_key(env: &[(&str, &str)], pk: &[u8; 32], msg: &[u8]) {
    let sig = signed(env, msg, "key sign");
    ed25519_dalek::VerifyingKey::from_bytes(pk)
        .unwrap()
        .verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .expect("an RFC 8032 verifier accepts the signature");
}

/// `seedtree sign tree` of `msg` (checked by the CLI against the public
/// key it is given): the leaf used.
fn sign_tree(env: &[(&str, &str)], pk: &str, msg: &[u8]) -> u64 {
    let v = until(60, "seedtree sign", || {
        let o = kq(
            &[
                "seedtree",
                "sign",
                "tree",
                "--message-hex",
                &hex::encode(msg),
                "--public-key",
                pk,
                "--json",
            ],
            env,
        );
        o.status.success().then(|| ok_json(&o, "seedtree sign"))
    });
    v["leaf"].as_u64().unwrap()
}

/// The JSON `snapshot verify` prints, or its error.
fn verify(file: &Path, ca: &Path) -> Result<Value, String> {
    let o = kq(
        &[
            "snapshot",
            "verify",
            file.to_str().unwrap(),
            "--ca-cert",
            ca.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    if o.status.success() {
        Ok(ok_json(&o, "snapshot verify"))
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

#[test]
fn the_control_plane_is_saved_verified_and_restored_without_reusing_a_nonce_or_a_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let ids = [1u16, 2, 3];
    let ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
    let (infos, ca_file) = identities(dir.path(), &ids, &ports);
    // Configs listing the others; checkpoints every 20 entries.
    let cfgs: Vec<String> = ids
        .iter()
        .zip(&ports)
        .map(|(id, port)| {
            let peers: Vec<(u16, Value)> = infos.iter().filter(|(p, _)| p != id).cloned().collect();
            let path = config(dir.path(), *id, *port, &peers);
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, format!("checkpoint_every = 20\n{text}")).unwrap();
            path.to_str().unwrap().to_string()
        })
        .collect();
    let start = |nodes: &mut Nodes, init: bool| {
        for (i, cfg) in cfgs.iter().enumerate() {
            let mut args = vec!["node", "--config", cfg.as_str()];
            if init && i == 0 {
                args.push("--init");
            }
            nodes.start(&args);
        }
    };
    let mut nodes = Nodes::default();
    start(&mut nodes, true);
    let url = infos[0].1["addr"].as_str().unwrap().to_string();
    let ops = operators(dir.path(), &["alice", "bob"]);
    let admin_key = dir.path().join("admin.key");
    let secrets: Vec<_> = ids
        .iter()
        .map(|id| dir.path().join(format!("n{id}")).join("init-secret"))
        .collect();
    until(60, "init", || {
        let _ = std::fs::remove_file(&admin_key);
        let o = init(&url, &ca_file, &admin_key, &ops, &secrets);
        o.status.success().then_some(())
    });
    let ca = ca_file.to_str().unwrap().to_string();
    let admin_file = admin_key.to_str().unwrap().to_string();
    let env = [
        ("KEYQUORUM_URL", url.as_str()),
        ("KEYQUORUM_CA_CERT", ca.as_str()),
        ("KEYQUORUM_KEY_FILE", admin_file.as_str()),
        ("KEYQUORUM_KEY_ID", "admin"),
    ];

    // A key and a signing tree, each used.
    let key = ok_json(
        &kq(&["key", "create", "prod", "--json"], &env),
        "key create",
    );
    let pk: [u8; 32] = hex::decode(key["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    // Signing trees need the apply rules every member announces as it
    // starts: polled until the cluster has moved to them.
    let tree = until(60, "seedtree create", || {
        let o = kq(
            &["seedtree", "create", "tree", "--height", "5", "--json"],
            &env,
        );
        o.status.success().then(|| ok_json(&o, "seedtree create"))
    });
    let tree_pk = tree["public_key"].as_str().unwrap().to_string();
    let mut leaves = Vec::new();
    leaves.push(sign_tree(&env, &tree_pk, b"before the save 0"));
    sign_key(&env, &pk, b"before the save");

    // Node 2's vault copied, node 2 stopped for it (the procedure in the
    // README): it is put back with the control plane below, so both are
    // older than what was used after the save.
    let (mut n2, _) = nodes.0.remove(1);
    n2.kill().unwrap();
    n2.wait().unwrap();
    let vault2 = dir.path().join("n2").join("vault.redb");
    let vault2_copy = dir.path().join("vault2.copy");
    std::fs::copy(&vault2, &vault2_copy).unwrap();
    nodes.start(&["node", "--config", &cfgs[1]]);

    // Save once a checkpoint holds the key and the tree (the log moves on
    // with each signature; a checkpoint every 20 entries).
    let file = dir.path().join("control-plane.json");
    let saved = until(120, "a checkpoint holding the key and the tree", || {
        let o = kq(
            &["snapshot", "save", file.to_str().unwrap(), "--json"],
            &env,
        );
        if o.status.success() {
            let v = ok_json(&o, "snapshot save");
            if v["checked"]["keys"] == 1 && v["checked"]["trees"] == 1 {
                return Some(v["checked"].clone());
            }
        } else {
            eprintln!("save: {}", String::from_utf8_lossy(&o.stderr));
        }
        sign_key(&env, &pk, b"moving the log on");
        None
    });
    assert_eq!(saved["voters"], serde_json::json!([1, 2, 3]));
    assert!(
        saved["trusted_by"].as_array().unwrap().len() >= 2,
        "{saved}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "snapshot file mode");
    }
    let checked = verify(&file, &ca_file).unwrap();
    assert_eq!(checked["index"], saved["index"]);
    assert_eq!(checked["audit_entries"], saved["audit_entries"]);

    // An operator's floor above what the file has: refused.
    let o = kq(
        &[
            "snapshot",
            "verify",
            file.to_str().unwrap(),
            "--ca-cert",
            ca_file.to_str().unwrap(),
            "--min-attestations",
            "4",
        ],
        &[],
    );
    assert!(!o.status.success(), "4 attestations asked of 3 voters");

    // What verify refuses.
    let text = std::fs::read_to_string(&file).unwrap();
    let original: Value = serde_json::from_str(&text).unwrap();
    // The saved log has handed out fewer leaves than will be used before
    // the restore: the restored log hands some out again.
    let state: Value = serde_json::from_str(original["data"].as_str().unwrap()).unwrap();
    let handed_out = state["machine"]["seedtree"]["trees"]["tree"]["next"]
        .as_u64()
        .unwrap();
    assert!(handed_out < 4, "{handed_out}");
    let tampered = |what: &str, f: &dyn Fn(&mut Value)| {
        let mut v = original.clone();
        f(&mut v);
        let p = dir.path().join(format!("{what}.json"));
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        let err = verify(&p, &ca_file).expect_err(what);
        (p, err)
    };
    // A checkpoint changed after the members attested it (the key renamed).
    let (changed, err) = tampered("changed", &|v| {
        let data = v["data"].as_str().unwrap().replace("\"prod\"", "\"prxd\"");
        v["data"] = Value::String(data);
    });
    assert!(err.contains("not vouched"), "{err}");
    // One voter's word alone is not enough.
    let (_, err) = tampered("one-attestation", &|v| {
        v["attestations"].as_array_mut().unwrap().truncate(1);
    });
    assert!(err.contains("not vouched"), "{err}");
    // An audit entry altered.
    let (_, err) = tampered("audit", &|v| {
        v["entries"][1]["event"]["actor"] = Value::String("mallory".into());
    });
    assert!(err.contains("audit"), "{err}");
    // A CA file holding none of the members: nothing is trusted.
    let v = print_identity(&config(dir.path(), 9, free_port(), &[]));
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, v["certificate"].as_str().unwrap()).unwrap();
    let err = verify(&file, &other_ca).unwrap_err();
    assert!(err.contains("not vouched"), "{err}");

    // Used after the save: leaves and nonces the restored log does not know of.
    for i in 1..4 {
        leaves.push(sign_tree(
            &env,
            &tree_pk,
            format!("after the save {i}").as_bytes(),
        ));
    }
    sign_key(&env, &pk, b"after the save");

    // A running node is not restored.
    let restore = |i: usize, file: &Path| {
        kq(
            &[
                "snapshot",
                "restore",
                file.to_str().unwrap(),
                "--config",
                &cfgs[i],
                "--restore-id",
                "test-1",
                "--json",
            ],
            &[],
        )
    };
    let o = restore(0, &file);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("stop the node"), "{err}");

    // Every node stopped, node 2's vault put back, every control plane
    // restored from the file.
    drop(nodes);
    std::fs::copy(&vault2_copy, &vault2).unwrap();
    let o = restore(0, &changed);
    assert!(!o.status.success(), "a changed checkpoint was restored");
    for i in 0..3 {
        let r = ok_json(&restore(i, &file), "snapshot restore");
        assert_eq!(r["index"], saved["index"]);
        assert_eq!(r["own"], true, "node {} attested its own checkpoint", i + 1);
        // Its own state read (its snapshot and log replayed): nothing of
        // it is newer than the checkpoint but leaves and signatures.
        assert_eq!(r["previous_state"], "read", "{r}");
        assert_eq!(r["lost"], serde_json::json!([]), "{r}");
        let previous = r["previous"].as_str().unwrap();
        assert!(Path::new(previous).exists(), "{previous}");
    }
    let mut nodes = Nodes::default();
    start(&mut nodes, false);

    // The key signs with fresh nonces; the tree never signs with a leaf
    // used before, those handed out after the save included: the restored
    // log hands out leaves from `handed_out` on again, and the members
    // that locked them refuse them.
    sign_key(&env, &pk, b"after the restore");
    for i in 0..3 {
        let leaf = sign_tree(&env, &tree_pk, format!("after the restore {i}").as_bytes());
        assert!(
            !leaves.contains(&leaf),
            "leaf {leaf} signed twice (used before: {leaves:?})"
        );
        leaves.push(leaf);
    }
    assert_eq!(
        leaves.iter().collect::<BTreeSet<_>>().len(),
        leaves.len(),
        "{leaves:?}"
    );
    // The restored audit log verifies (the keeper rebuilt its tree from
    // the entries restored) and goes on from the checkpoint.
    let v = until(60, "the restored audit log verifies", || {
        let o = kq(&["audit", "verify", "--json"], &env);
        let v = o.status.success().then(|| ok_json(&o, "audit verify"))?;
        (v["valid"] == true).then_some(v)
    });
    assert!(
        v["entries"].as_u64().unwrap() > saved["audit_entries"].as_u64().unwrap(),
        "{v}"
    );
    drop(nodes);
}
