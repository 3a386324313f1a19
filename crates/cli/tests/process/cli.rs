#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! The `keyquorum` binary end to end: `dev` in a child process, then every
//! key, client, export and audit command against it, human and `--json`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_keyquorum");

/// A `keyquorum dev` child, killed on drop.
struct Dev {
    child: Child,
    url: String,
    ca: String,
    admin: Who,
    operator: Who,
}

/// A client identity: its private key file and name.
#[derive(Clone)]
struct Who {
    file: String,
    id: String,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dev(dir: &Path) -> Dev {
    let mut child = Command::new(BIN)
        .args([
            "dev",
            "--nodes",
            "3",
            "--threshold",
            "2",
            "--json",
            "--data-dir",
        ])
        .arg(dir)
        .env("KEYQUORUM_PASSPHRASE", "cli test passphrase")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn keyquorum dev");
    // `dev --json` prints one pretty JSON object once the cluster is up,
    // then waits for Ctrl-C: read up to its closing brace.
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = out.read_line(&mut line).expect("read dev output");
        assert!(n > 0, "dev exited before printing its URL: {text}");
        text.push_str(&line);
        if line.trim_end() == "}" {
            break;
        }
    }
    let v: Value = serde_json::from_str(&text).expect("dev --json output");
    let env = std::fs::read_to_string(dir.join("client.env")).expect("client.env");
    assert!(env.contains(v["url"].as_str().unwrap()));
    // Data directories are 0700 and secret files 0600 from the start.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for d in [dir.to_path_buf(), dir.join("node-1"), dir.join("node-2")] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        for f in ["client.env", "dev-passphrase"] {
            let f = dir.join(f);
            if f.exists() {
                assert_eq!(mode(&f), 0o600, "{}", f.display());
            }
        }
    }
    let ca = v["ca_cert"].as_str().unwrap().to_string();
    assert!(env.contains(&format!("KEYQUORUM_CA_CERT={ca}")), "{env}");
    assert!(v["url"].as_str().unwrap().starts_with("https://"));
    Dev {
        ca,
        url: v["url"].as_str().unwrap().to_string(),
        admin: Who {
            file: v["key_file"].as_str().unwrap().to_string(),
            id: v["key_id"].as_str().unwrap().to_string(),
        },
        operator: Who {
            file: v["operator_key_file"].as_str().unwrap().to_string(),
            id: v["operator_key_id"].as_str().unwrap().to_string(),
        },
        child,
    }
}

fn run(dev: &Dev, who: &Who, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(BIN)
        .args(args)
        .env("KEYQUORUM_URL", &dev.url)
        .env("KEYQUORUM_KEY_FILE", &who.file)
        .env("KEYQUORUM_KEY_ID", &who.id)
        .env("KEYQUORUM_OPERATOR_KEY_FILE", &who.file)
        .env("KEYQUORUM_OPERATOR_KEY_ID", &who.id)
        .env("KEYQUORUM_CA_CERT", &dev.ca)
        .output()
        .expect("run keyquorum");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json(dev: &Dev, who: &Who, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (ok, out, err) = run(dev, who, &a);
    assert!(ok, "keyquorum {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

#[test]
fn cli_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dev(dir.path());
    let admin = d.admin.clone();
    // `client create` makes the key pair here and registers the public key.
    let new_client = |name: &str, flags: &[&str]| -> Who {
        let file = dir.path().join(format!("{name}.key"));
        let mut args = vec![
            "client",
            "create",
            name,
            "--key-out",
            file.to_str().unwrap(),
        ];
        args.extend_from_slice(flags);
        let v = json(&d, &admin, &args);
        assert_eq!(v["name"], name);
        assert_eq!(v["key_id"], name);
        assert_eq!(v["public_key"].as_str().unwrap().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "client key file mode");
        }
        Who {
            file: file.to_str().unwrap().to_string(),
            id: name.to_string(),
        }
    };

    // key create --json prints exactly the documented fields.
    let k = json(&d, &admin, &["key", "create", "alpha"]);
    assert_eq!(k["name"], "alpha");
    assert_eq!(k["suite"], "ed25519");
    assert_eq!(k["threshold"], 2);
    assert_eq!(k["members"], serde_json::json!([1, 2, 3]));
    let pk_hex = k["public_key"].as_str().unwrap().to_string();
    assert_eq!(pk_hex.len(), 64);
    let tr = json(
        &d,
        &admin,
        &[
            "key",
            "create",
            "beta",
            "--suite",
            "secp256k1-tr",
            "--threshold",
            "3",
        ],
    );
    assert_eq!(tr["threshold"], 3);
    assert_eq!(tr["public_key"].as_str().unwrap().len(), 64);

    // sign, and check with an ordinary verifier.
    let s = json(
        &d,
        &admin,
        &["key", "sign", "alpha", "--message-hex", "00ff"],
    );
    let sig_hex = s["signature"].as_str().unwrap().to_string();
    let vk =
        ed25519_dalek::VerifyingKey::from_bytes(&hex::decode(&pk_hex).unwrap().try_into().unwrap())
            .unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&hex::decode(&sig_hex).unwrap()).unwrap();
    vk.verify_strict(&[0x00, 0xff], &sig)
        .expect("ed25519-dalek accepts it");
    let (ok, out, _) = run(
        &d,
        &admin,
        &[
            "key",
            "verify",
            "alpha",
            "--message-hex",
            "00ff",
            "--signature",
            &sig_hex,
        ],
    );
    assert!(ok);
    assert_eq!(out.trim(), "valid");
    let (ok, out, _) = run(
        &d,
        &admin,
        &[
            "key",
            "verify",
            "alpha",
            "--message-hex",
            "00fe",
            "--signature",
            &sig_hex,
        ],
    );
    assert!(!ok, "a wrong message must fail the command");
    assert_eq!(out.trim(), "INVALID");

    // refresh and reshare keep the public key.
    let r = json(&d, &admin, &["key", "refresh", "alpha"]);
    let e0 = k["epoch"].as_u64().unwrap();
    assert_eq!(r["epoch"].as_u64().unwrap(), e0 + 1);
    assert_eq!(r["public_key"].as_str().unwrap(), pk_hex);
    // A new threshold is a policy change: without the operators' approval
    // the reshare is refused; the admin proposes it, the operator approves.
    let reshare = [
        "key",
        "reshare",
        "alpha",
        "--threshold",
        "3",
        "--members",
        "1,2,3",
    ];
    let (ok, _, err) = run(&d, &admin, &reshare);
    assert!(!ok && err.contains("403"), "{err}");
    let policy = json(
        &d,
        &admin,
        &[
            "key",
            "policy",
            "alpha",
            "--threshold",
            "3",
            "--members",
            "1,2,3",
        ],
    );
    assert_eq!(policy["done"], false);
    let approved = json(
        &d,
        &d.operator,
        &["approve", policy["id"].as_str().unwrap()],
    );
    assert_eq!(approved["done"], true);
    let r = json(
        &d,
        &admin,
        &[
            "key",
            "reshare",
            "alpha",
            "--threshold",
            "3",
            "--members",
            "1,2,3",
        ],
    );
    assert_eq!(r["threshold"], 3);
    assert_eq!(r["epoch"].as_u64().unwrap(), e0 + 2);
    assert_eq!(r["public_key"].as_str().unwrap(), pk_hex);
    let s = json(&d, &admin, &["key", "sign", "alpha", "--message", "after"]);
    let sig = ed25519_dalek::Signature::from_slice(
        &hex::decode(s["signature"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    vk.verify_strict(b"after", &sig).unwrap();

    // clients: a signer limited to one key.
    let app = new_client("app", &["--sign", "beta"]);
    // The key file is never overwritten, and the name is not registered twice.
    let (ok, _, err) = run(
        &d,
        &admin,
        &["client", "create", "app2", "--key-out", &app.file],
    );
    assert!(!ok && err.contains("must not exist"), "{err}");
    let (ok, _, err) = run(
        &d,
        &admin,
        &[
            "client",
            "create",
            "app",
            "--key-out",
            dir.path().join("x.key").to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("409"), "{err}");
    assert!(
        !dir.path().join("x.key").exists(),
        "a refused key is not kept"
    );
    let (ok, _, err) = run(&d, &app, &["key", "sign", "alpha", "--message", "x"]);
    assert!(!ok);
    assert!(err.contains("403"), "{err}");
    json(&d, &app, &["key", "sign", "beta", "--message", "x"]);

    // Operators: an admin cannot make one; two more are enrolled (made by
    // `operator keygen`, proposed by the admin, approved by the dev
    // cluster's operator at quorum 1), then the quorum is raised to 3.
    let (ok, _, err) = run(
        &d,
        &admin,
        &[
            "client",
            "create",
            "rogue",
            "--operator",
            "--key-out",
            dir.path().join("rogue.key").to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("403"), "{err}");
    let mut ops = vec![d.operator.clone()];
    for i in 1..3 {
        let name = format!("op{i}");
        let file = dir.path().join(format!("{name}.key"));
        let k = json(
            &d,
            &admin,
            &[
                "operator",
                "keygen",
                "--name",
                &name,
                "--out",
                file.to_str().unwrap(),
            ],
        );
        let arg = k["init_arg"].as_str().unwrap().to_string();
        assert_eq!(arg, format!("{name}={}", k["public_key"].as_str().unwrap()));
        let change = json(&d, &admin, &["operator", "add", &arg]);
        assert_eq!(change["needed"], 1);
        assert_eq!(change["done"], false);
        let approved = json(
            &d,
            &d.operator,
            &["approve", change["id"].as_str().unwrap()],
        );
        assert_eq!(approved["kind"], "change");
        assert_eq!(approved["done"], true);
        ops.push(Who {
            file: file.to_str().unwrap().to_string(),
            id: name,
        });
    }
    // The proposer is told the command to approve with the fingerprint of
    // what it proposed; an approver expecting another fingerprint (what a
    // lying node would show differs) approves nothing.
    let (ok, _, hint) = run(&d, &admin, &["operator", "quorum", "3"]);
    assert!(ok, "{hint}");
    let hint = hint
        .split("keyquorum approve ")
        .nth(1)
        .unwrap_or_else(|| panic!("no approve hint in {hint}"));
    let mut words = hint.split_whitespace();
    let (qid, flag, fp) = (
        words.next().unwrap(),
        words.next().unwrap(),
        words.next().unwrap(),
    );
    assert_eq!(flag, "--expect");
    assert_eq!(fp.len(), 16, "{fp}");
    let (ok, _, err) = run(
        &d,
        &ops[1],
        &["approve", qid, "--expect", "00112233aabbccdd"],
    );
    assert!(!ok && err.contains("not what was proposed"), "{err}");
    assert_eq!(json(&d, &ops[2], &["operator", "list"])["quorum"], 1);
    let approved = json(&d, &ops[1], &["approve", qid, "--expect", fp]);
    assert_eq!(approved["done"], true, "{approved}");
    let list = json(&d, &ops[2], &["operator", "list"]);
    assert_eq!(list["quorum"], 3);
    assert_eq!(list["operators"].as_array().unwrap().len(), 3);

    // export: request, 3 operator approvals (the quorum), run.
    let key_file = dir.path().join("export.key");
    let out_file = dir.path().join("alpha.secret");
    let req = json(
        &d,
        &admin,
        &[
            "key",
            "export",
            "request",
            "alpha",
            "--key-file",
            key_file.to_str().unwrap(),
        ],
    );
    let id = req["id"].as_str().unwrap().to_string();
    assert_eq!(req["needed"], 3);
    let run_args = [
        "key",
        "export",
        "run",
        &id,
        "--key-file",
        key_file.to_str().unwrap(),
        "--out",
        out_file.to_str().unwrap(),
    ];
    let (ok, _, err) = run(&d, &admin, &run_args);
    assert!(!ok, "export ran without approvals");
    assert!(err.contains("403"), "{err}");
    assert!(!out_file.exists());
    let (ok, _, err) = run(&d, &admin, &["approve", &id]);
    assert!(
        !ok && err.contains("403"),
        "the admin is no operator: {err}"
    );
    for (i, op) in ops.iter().enumerate() {
        let r = if i == 0 {
            json(&d, op, &["key", "export", "approve", &id])
        } else {
            json(&d, op, &["approve", &id])
        };
        let approvals = r["approvals"].as_array().unwrap().len();
        assert_eq!(approvals, i + 1, "{r}");
    }
    let l = json(&d, &admin, &["key", "export", "list"]);
    assert_eq!(l["exports"].as_array().unwrap().len(), 1);
    let res = json(&d, &admin, &run_args);
    assert_eq!(res["public_key"].as_str().unwrap(), pk_hex);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "secret file readable by others");
    }
    let scalar: [u8; 32] = hex::decode(std::fs::read_to_string(&out_file).unwrap().trim())
        .unwrap()
        .try_into()
        .unwrap();
    let s = curve25519_dalek::Scalar::from_canonical_bytes(scalar).unwrap();
    let point = curve25519_dalek::constants::ED25519_BASEPOINT_POINT * s;
    assert_eq!(hex::encode(point.compress().as_bytes()), pk_hex);

    // status and audit.
    let st = json(&d, &admin, &["status"]);
    assert_eq!(st["nodes"].as_array().unwrap().len(), 3);
    let (ok, out, err) = run(&d, &admin, &["audit", "verify"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("audit log verified"), "{out}");
    let a = json(&d, &admin, &["audit", "--limit", "500"]);
    let actions: Vec<String> = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"]["action"].as_str().map(str::to_string))
        .collect();
    assert!(actions.iter().any(|a| a.contains("export")), "{actions:?}");

    // An entry's inclusion proof: unpinned, it says whose word it took;
    // saved, it checks offline against the members' keys, and altered or
    // against a stranger's key it does not.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let proof = loop {
        let (ok, out, err) = run(&d, &admin, &["audit", "proof", "1", "--json"]);
        let heads = serde_json::from_str::<Value>(&out)
            .ok()
            .filter(|p| p["heads"].as_array().is_some_and(|h| h.len() >= 2));
        match heads {
            Some(p) if ok => {
                assert!(err.contains("not keys you hold"), "{err}");
                break p;
            }
            _ => {
                assert!(std::time::Instant::now() < deadline, "no proof: {err}");
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    };
    let file = dir.path().join("proof.json");
    std::fs::write(&file, proof.to_string()).unwrap();
    let keys: Vec<String> = proof["heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["signer_identity"].as_str().unwrap().to_string())
        .collect();
    let mut args = vec!["audit", "check-proof", file.to_str().unwrap()];
    for k in &keys {
        args.extend(["--identity", k.as_str()]);
    }
    let (ok, out, err) = run(&d, &admin, &args);
    assert!(ok, "{err}");
    assert!(out.contains("proof verified"), "{out}");
    let stranger = "11".repeat(32);
    let (ok, out, _) = run(
        &d,
        &admin,
        &[
            "audit",
            "check-proof",
            file.to_str().unwrap(),
            "--identity",
            &stranger,
        ],
    );
    assert!(!ok && out.contains("DOES NOT VERIFY"), "{out}");
    let mut altered = proof.clone();
    altered["entry"]["event"]["outcome"] = "altered".into();
    std::fs::write(&file, altered.to_string()).unwrap();
    let (ok, out, _) = run(&d, &admin, &args);
    assert!(!ok && out.contains("DOES NOT VERIFY"), "{out}");

    // A revoked client is refused; one that expires is refused after.
    json(&d, &admin, &["client", "revoke", "app"]);
    let (ok, _, err) = run(&d, &app, &["key", "sign", "beta", "--message", "x"]);
    assert!(
        !ok && err.contains("401") && err.contains("revoked"),
        "{err}"
    );
    let brief = new_client("brief", &["--sign", "beta", "--expires", "2s"]);
    json(&d, &brief, &["key", "sign", "beta", "--message", "x"]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (ok, _, err) = run(&d, &brief, &["key", "sign", "beta", "--message", "x"]);
    assert!(!ok && err.contains("expired"), "{err}");
    let list = json(&d, &admin, &["client", "list"]);
    assert_eq!(list["clients"].as_array().unwrap().len(), 6);

    // no key: a clear error, not a panic.
    let o = Command::new(BIN)
        .args(["key", "list"])
        .env("KEYQUORUM_URL", &d.url)
        .env("KEYQUORUM_CA_CERT", &d.ca)
        .env_remove("KEYQUORUM_KEY_FILE")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("KEYQUORUM_KEY_FILE"));

    // TLS: the node certificates are the only roots. Without them the CLI
    // says what to set; trusting some other certificate fails the handshake.
    let without_ca = Command::new(BIN)
        .args(["key", "list"])
        .env("KEYQUORUM_URL", &d.url)
        .env("KEYQUORUM_KEY_FILE", &admin.file)
        .env("KEYQUORUM_KEY_ID", &admin.id)
        .env_remove("KEYQUORUM_CA_CERT")
        .output()
        .unwrap();
    assert!(!without_ca.status.success());
    assert!(String::from_utf8_lossy(&without_ca.stderr).contains("KEYQUORUM_CA_CERT"));
    let pem = std::fs::read_to_string(&d.ca).unwrap();
    let first = pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 3, "one per node");
    let only_one = dir.path().join("one-node.pem");
    std::fs::write(&only_one, first).unwrap();
    // d.url is node 1 (its certificate is first): trusted alone, it works...
    let o = Command::new(BIN)
        .args(["key", "list"])
        .env("KEYQUORUM_URL", &d.url)
        .env("KEYQUORUM_KEY_FILE", &admin.file)
        .env("KEYQUORUM_KEY_ID", &admin.id)
        .env("KEYQUORUM_CA_CERT", &only_one)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // ...while node 2's certificate alone does not vouch for node 1.
    let second = pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .nth(1)
        .unwrap();
    let wrong = dir.path().join("wrong.pem");
    std::fs::write(&wrong, second).unwrap();
    let o = Command::new(BIN)
        .args(["key", "list"])
        .env("KEYQUORUM_URL", &d.url)
        .env("KEYQUORUM_KEY_FILE", &admin.file)
        .env("KEYQUORUM_KEY_ID", &admin.id)
        .env("KEYQUORUM_CA_CERT", &wrong)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

/// The help texts are part of the interface: a change shows up here.
#[test]
fn help_lists_every_command() {
    let o = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    for c in [
        "dev", "node", "key", "client", "cluster", "status", "audit", "msg", "he", "seedtree",
        "demo",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(c)),
            "`{c}` missing from --help:\n{text}"
        );
    }
    let o = Command::new(BIN).args(["key", "--help"]).output().unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    for c in [
        "create", "list", "show", "sign", "verify", "refresh", "reshare", "export",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(c)),
            "`key {c}` missing from key --help:\n{text}"
        );
    }
    let o = Command::new(BIN).args(["he", "--help"]).output().unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    for c in [
        "session",
        "submit",
        "close",
        "result",
        "reshare",
        "verify",
        "transcript",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(c)),
            "`he {c}` missing from he --help:\n{text}"
        );
    }
}

/// `keyquorum seedtree` as the README shows it: create (the documented
/// fields), sign pinned, verify (and a wrong message refused), status; the
/// subcommands listed in its help.
#[test]
fn seedtree_end_to_end() {
    let o = Command::new(BIN)
        .args(["seedtree", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    for c in ["create", "sign", "status", "verify"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(c)),
            "`seedtree {c}` missing from seedtree --help:\n{text}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dev(dir.path());
    let admin = d.admin.clone();
    let t = json(
        &d,
        &admin,
        &[
            "seedtree",
            "create",
            "fw",
            "--height",
            "5",
            "--winternitz",
            "4",
            "--subtrees",
            "4",
        ],
    );
    for f in [
        "name",
        "public_key",
        "height",
        "winternitz",
        "subtrees",
        "capacity",
        "builders",
    ] {
        assert!(!t[f].is_null(), "{f} missing: {t}");
    }
    assert_eq!(
        (t["capacity"].as_u64(), t["subtrees"].as_u64()),
        (Some(32), Some(4))
    );
    assert_eq!(t["builders"].as_object().unwrap().len(), 4);
    let pk = t["public_key"].as_str().unwrap().to_string();
    assert_eq!(pk.len(), 120, "an HSS public key is 60 bytes");
    let msg = hex::encode(b"firmware 1.0");
    let s = json(
        &d,
        &admin,
        &[
            "seedtree",
            "sign",
            "fw",
            "--message-hex",
            &msg,
            "--public-key",
            &pk,
        ],
    );
    let sig = s["signature"].as_str().unwrap().to_string();
    assert!(s["leaf"].as_u64().unwrap() < 32);
    let v = json(
        &d,
        &admin,
        &[
            "seedtree",
            "verify",
            "fw",
            "--message-hex",
            &msg,
            "--signature",
            &sig,
        ],
    );
    assert_eq!(v["valid"], true);
    let other = hex::encode(b"firmware 6.6");
    let (ok, _, err) = run(
        &d,
        &admin,
        &[
            "seedtree",
            "verify",
            "fw",
            "--message-hex",
            &other,
            "--signature",
            &sig,
        ],
    );
    assert!(!ok && err.contains("does not verify"), "{err}");
    let st = json(&d, &admin, &["seedtree", "status", "fw"]);
    assert_eq!(st["lock_quorum"], 3);
    assert!(st["remaining"].as_u64().unwrap() < 32);
}

/// `keyquorum oprf` as the README shows it: a key by DKG (the documented
/// fields), evaluations checked here against the pinned public key (the
/// same input gives the same output through any node, another input
/// another), and a wrong pinned key refused.
#[test]
fn oprf_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dev(dir.path());
    let admin = d.admin.clone();
    let k = json(&d, &admin, &["oprf", "key", "create", "pw"]);
    for f in ["name", "public_key", "threshold", "members", "epoch"] {
        assert!(!k[f].is_null(), "{f} missing: {k}");
    }
    assert_eq!(
        (k["name"].as_str(), k["threshold"].as_u64()),
        (Some("pw"), Some(2))
    );
    let pk = k["public_key"].as_str().unwrap().to_string();
    assert_eq!(pk.len(), 64);
    let eval = |input: &str| {
        json(
            &d,
            &admin,
            &[
                "oprf",
                "evaluate",
                "pw",
                "--input-hex",
                input,
                "--public-key",
                &pk,
            ],
        )
    };
    let a = eval("00");
    let b = eval("00");
    let c = eval("5a5a");
    let out = a["output"].as_str().unwrap();
    assert_eq!(out.len(), 128, "a 64-byte RFC 9497 output");
    assert_eq!(b["output"], a["output"]);
    assert_ne!(c["output"], a["output"]);
    let other = json(&d, &admin, &["oprf", "key", "create", "other"]);
    let (ok, _, err) = run(
        &d,
        &admin,
        &[
            "oprf",
            "evaluate",
            "pw",
            "--input-hex",
            "00",
            "--public-key",
            other["public_key"].as_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("does not verify"), "{err}");
    let list = json(&d, &admin, &["oprf", "key", "list"]);
    assert_eq!(list["keys"].as_array().unwrap().len(), 2);
    let show = json(&d, &admin, &["oprf", "key", "show", "pw"]);
    assert_eq!(show["public_key"].as_str(), Some(pk.as_str()));
}

/// `keyquorum recovery` as the README shows it: enrol (the device key
/// written 0600), open a reset, read the app inbox, assemble the token
/// (checked by ed25519-dalek); a wrong pinned key and too few fragments
/// refused.
#[test]
fn recovery_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dev(dir.path());
    let admin = d.admin.clone();
    let device = dir.path().join("alice.device");
    let a = json(
        &d,
        &admin,
        &[
            "recovery",
            "account",
            "create",
            "alice",
            "--channel",
            "app",
            "--device-key-out",
            device.to_str().unwrap(),
        ],
    );
    for f in ["account", "guardians", "threshold", "reset_public_key"] {
        assert!(!a[f].is_null(), "{f} missing: {a}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&device).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let pk = a["reset_public_key"].as_str().unwrap().to_string();
    let hash = "ab".repeat(32);
    let r = json(
        &d,
        &admin,
        &[
            "recovery",
            "reset",
            "request",
            "alice",
            "--credential-hash",
            &hash,
        ],
    );
    let id = r["request_id"].as_str().unwrap().to_string();
    assert!(r["expires"].as_u64().unwrap() > 0);
    let sent = r["fragments"].as_array().unwrap();
    assert_eq!(sent.len(), 2, "{r}");
    assert!(
        sent.iter()
            .all(|f| f["channel"] == "app" && f["delivered"] == true),
        "{r}"
    );
    let inbox = json(
        &d,
        &admin,
        &[
            "recovery",
            "inbox",
            "alice",
            "--device-key",
            device.to_str().unwrap(),
        ],
    );
    let frags: Vec<String> = inbox["fragments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["request_id"] == id.as_str())
        .inspect(|f| assert_eq!(f["opens"], true))
        .map(|f| f["fragment"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(frags.len(), 2, "{inbox}");
    let assemble = |pk: &str, frags: &[String]| {
        let mut args = vec![
            "recovery".to_string(),
            "reset".into(),
            "assemble".into(),
            "alice".into(),
            "--request".into(),
            id.clone(),
            "--credential-hash".into(),
            hash.clone(),
            "--device-key".into(),
            device.to_str().unwrap().into(),
            "--reset-public-key".into(),
            pk.into(),
        ];
        for f in frags {
            args.push("--fragment".into());
            args.push(f.clone());
        }
        args
    };
    let args = assemble(&pk, &frags);
    let t = json(
        &d,
        &admin,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let token = hex::decode(t["token"].as_str().unwrap()).unwrap();
    let message = hex::decode(t["message"].as_str().unwrap()).unwrap();
    assert_eq!(t["reset_public_key"].as_str(), Some(pk.as_str()));
    let vk =
        ed25519_dalek::VerifyingKey::from_bytes(&hex::decode(&pk).unwrap().try_into().unwrap())
            .unwrap();
    vk.verify_strict(
        &message,
        &ed25519_dalek::Signature::from_slice(&token).unwrap(),
    )
    .expect("ed25519-dalek accepts the reset token");
    assert!(message.ends_with(&hex::decode(&hash).unwrap()));
    let (ok, _, err) = run(
        &d,
        &admin,
        &assemble(&"11".repeat(32), &frags)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(!ok && err.contains("pinned"), "{err}");
    let (ok, _, err) = run(
        &d,
        &admin,
        &assemble(&pk, &frags[..1])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(!ok, "{err}");
    // A PIN-protected secret: register, recover, a wrong PIN counted.
    let pin = dir.path().join("pin");
    let bad_pin = dir.path().join("bad-pin");
    let secret = dir.path().join("secret");
    std::fs::write(&pin, "482913\n").unwrap();
    std::fs::write(&bad_pin, "000000\n").unwrap();
    std::fs::write(&secret, b"wallet seed words").unwrap();
    let reg = json(
        &d,
        &admin,
        &[
            "recovery",
            "secret",
            "register",
            "alice",
            "--pin-file",
            pin.to_str().unwrap(),
            "--secret-file",
            secret.to_str().unwrap(),
            "--guesses",
            "2",
        ],
    );
    assert_eq!(reg["guesses"], 2, "{reg}");
    let pin_key = reg["pin_key"].as_str().unwrap().to_string();
    let out = dir.path().join("recovered");
    let got = json(
        &d,
        &admin,
        &[
            "recovery",
            "secret",
            "recover",
            "alice",
            "--pin-file",
            pin.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--pin-key",
            &pin_key,
        ],
    );
    assert_eq!(got["recovered"], true, "{got}");
    assert_eq!(std::fs::read(&out).unwrap(), b"wallet seed words");
    let out2 = dir.path().join("recovered-2");
    let (ok, stdout, err) = run(
        &d,
        &admin,
        &[
            "recovery",
            "secret",
            "recover",
            "alice",
            "--pin-file",
            bad_pin.to_str().unwrap(),
            "--out",
            out2.to_str().unwrap(),
            "--pin-key",
            &pin_key,
            "--json",
        ],
    );
    assert!(!ok && err.contains("wrong PIN"), "{err}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["guesses_remaining"], 1, "{v}");
    assert!(!out2.exists());
}

/// `keyquorum he` as the README shows it: create (the documented fields),
/// submit pinned, close with the expected count, decrypt (the transcript
/// re-checked), verify online and offline; a wrong pin or count refused.
#[test]
fn he_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dev(dir.path());
    let admin = d.admin.clone();
    let s = json(
        &d,
        &admin,
        &["he", "session", "create", "poll", "--slots", "2"],
    );
    for f in ["name", "public_key", "threshold", "members", "slots"] {
        assert!(!s[f].is_null(), "{f} missing: {s}");
    }
    assert_eq!(s["slots"], 2);
    assert_eq!(s["threshold"], 2);
    let pk = s["public_key"].as_str().unwrap().to_string();
    assert_eq!(pk.len(), 64);
    for (i, v) in ["3,4", "5,6"].iter().enumerate() {
        let r = json(
            &d,
            &admin,
            &["he", "submit", "poll", "--value", v, "--public-key", &pk],
        );
        assert_eq!(r["index"], i as u64);
    }
    let other = "11".repeat(32);
    let (ok, _, err) = run(
        &d,
        &admin,
        &[
            "he",
            "submit",
            "poll",
            "--value",
            "1,1",
            "--public-key",
            &other,
        ],
    );
    assert!(!ok && err.contains("pinned"), "{err}");
    let (ok, _, err) = run(&d, &admin, &["he", "close", "poll", "--count", "3"]);
    assert!(!ok && err.contains("not the 3"), "{err}");
    json(&d, &admin, &["he", "close", "poll", "--count", "2"]);
    let r = json(&d, &admin, &["he", "result", "poll", "--public-key", &pk]);
    assert_eq!(r["values"], serde_json::json!([8, 10]));
    let file = dir.path().join("result.json");
    std::fs::write(&file, serde_json::to_vec(&r).unwrap()).unwrap();
    let v = json(
        &d,
        &admin,
        &[
            "he",
            "verify",
            "--transcript",
            file.to_str().unwrap(),
            "--public-key",
            &pk,
        ],
    );
    assert_eq!(
        (v["valid"].as_bool(), v["inputs"].as_u64()),
        (Some(true), Some(2))
    );
    let v = json(&d, &admin, &["he", "verify", "poll", "--public-key", &pk]);
    assert_eq!(v["values"], serde_json::json!([8, 10]));
    // An altered transcript file: refused offline.
    let mut t = r.clone();
    t["transcript"]["progress"]["result"]["values"] = serde_json::json!([9, 10]);
    std::fs::write(&file, serde_json::to_vec(&t).unwrap()).unwrap();
    let (ok, _, err) = run(
        &d,
        &admin,
        &["he", "verify", "--transcript", file.to_str().unwrap()],
    );
    assert!(!ok && err.contains("does not verify"), "{err}");
}

/// The load tool runs end to end on its own local cluster, in a child
/// process, and reports rows with real signatures, the nodes' CPU per
/// signature and the ratios to raw FROST of the same suite measured in the
/// same run (figures are not checked: no timing in tests).
#[test]
fn bench_sign_smoke() {
    for suite in ["ed25519", "secp256k1-tr"] {
        let o = Command::new(BIN)
            .args([
                "bench",
                "sign",
                "--suite",
                suite,
                "--seconds",
                "0.5",
                "--warmup",
                "0",
                "--concurrency",
                "1,4",
                "--pool",
                "8",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let rows = v["rows"].as_array().unwrap();
        // Two concurrency levels; raw FROST on one thread before and after
        // them, and on every core when there is more than one.
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let raw_rows = if cores > 1 { 3 } else { 2 };
        assert_eq!(rows.len(), 2 + raw_rows, "{rows:?}");
        let (raw, cluster): (Vec<_>, Vec<_>) = rows
            .iter()
            .partition(|r| r["what"].as_str().unwrap().starts_with("raw frost"));
        assert_eq!(raw.len(), raw_rows, "{rows:?}");
        assert!(
            raw.iter()
                .all(|r| r["what"].as_str().unwrap().contains(suite)),
            "{rows:?}"
        );
        for r in rows {
            assert!(r["signatures"].as_u64().unwrap() > 0, "{r}");
            assert_eq!(r["errors"], 0, "{r}");
            assert!(r["cpu_ms_per_sig"].as_f64().unwrap() > 0.0, "{r}");
        }
        // The nodes ran in their own process: their CPU is counted apart
        // from the load generator's, and the ratios are reported.
        let bare = v["bare_cpu_ms_per_sig"].as_f64().unwrap();
        assert!(bare > 0.0, "{v}");
        for r in cluster {
            let r_cpu = r["r_cpu"].as_f64().unwrap();
            let expect = r["cpu_ms_per_sig"].as_f64().unwrap() / bare;
            assert!((r_cpu - expect).abs() < 1e-9 * expect.max(1.0), "{r}");
            assert!(r["r_thr"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r["loadgen_cores"].as_f64().is_some(), "{r}");
        }
    }
}

/// `keyquorum bench recovery` runs resets and PIN recoveries end to end
/// and reports every one done, none failed (figures are not checked).
#[test]
fn bench_recovery_smoke() {
    let o = Command::new(BIN)
        .args([
            "bench",
            "recovery",
            "--concurrency",
            "1,2",
            "--resets",
            "3",
            "--pins",
            "3",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    for (rows, what) in [("reset", "resets"), ("pin", "recoveries")] {
        let rows = v[rows].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{v}");
        for r in rows {
            assert_eq!(
                (r[what].as_u64(), r["failed"].as_u64()),
                (Some(3), Some(0)),
                "{r}"
            );
        }
    }
}

/// `keyquorum msg`: endpoints with sealed local files, send and receive,
/// human and `--json`, with the settings `dev` writes to client.env.
#[test]
fn msg_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dev(dir.path());
    let env = std::fs::read_to_string(dir.path().join("client.env")).unwrap();
    let setting = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing from client.env: {env}"))
            .to_string()
    };
    let (edir, epass) = (
        setting("KEYQUORUM_ENDPOINT_DIR"),
        setting("KEYQUORUM_ENDPOINT_PASSPHRASE"),
    );
    let msg = |pass: &str, args: &[&str]| {
        let o = Command::new(BIN)
            .arg("msg")
            .args(args)
            .env("KEYQUORUM_URL", &d.url)
            .env("KEYQUORUM_KEY_FILE", &d.admin.file)
            .env("KEYQUORUM_KEY_ID", &d.admin.id)
            .env("KEYQUORUM_CA_CERT", &d.ca)
            .env("KEYQUORUM_ENDPOINT_DIR", &edir)
            .env("KEYQUORUM_ENDPOINT_PASSPHRASE", pass)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let msg_json = |args: &[&str]| -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let (ok, out, err) = msg(&epass, &a);
        assert!(ok, "msg {args:?} failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };

    let alice = msg_json(&["endpoint", "create", "alice"]);
    assert_eq!(alice["name"], "alice");
    assert_eq!(alice["prekeys_available"], 64);
    assert_eq!(alice["identity"].as_str().unwrap().len(), 64);
    assert!(Path::new(&edir).join("alice.kqe").exists());
    let (ok, out, _) = msg(&epass, &["endpoint", "create", "bob", "--prekeys", "5"]);
    assert!(ok);
    assert!(out.contains("prekeys available 5"), "{out}");
    let (ok, _, err) = msg(&epass, &["endpoint", "create", "bob"]);
    assert!(!ok && err.contains("exists"), "{err}");

    let sent = msg_json(&["send", "--from", "alice", "--to", "bob", "--text", "hi bob"]);
    assert_eq!(sent["confirmed_by"].as_array().unwrap().len(), 1);
    assert_eq!(sent["id"].as_str().unwrap().len(), 64);
    let file = dir.path().join("payload.bin");
    std::fs::write(&file, [0u8, 159, 146, 150]).unwrap();
    let sent2 = msg_json(&[
        "send",
        "--from",
        "alice",
        "--to",
        "bob",
        "--file",
        file.to_str().unwrap(),
        "--coordinators",
        "2",
        "--mode",
        "reconstruct",
    ]);
    assert_eq!(sent2["confirmed_by"].as_array().unwrap().len(), 2);
    let shown = msg_json(&["endpoint", "show", "bob"]);
    assert_eq!(shown["mailbox"], 2);
    assert_eq!(shown["prekeys_available"], 3);

    // Wrong passphrase and a missing endpoint file fail clearly.
    let (ok, _, err) = msg("not it", &["receive", "--as", "bob"]);
    assert!(!ok && err.contains("passphrase"), "{err}");
    let (ok, _, err) = msg(
        &epass,
        &["send", "--from", "carol", "--to", "bob", "--text", "x"],
    );
    assert!(!ok && err.contains("no endpoint file"), "{err}");
    assert_eq!(msg_json(&["endpoint", "show", "bob"])["mailbox"], 2);

    let got = msg_json(&["receive", "--as", "bob"]);
    let rows = got["messages"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{got}");
    let by_id = |id: &Value| rows.iter().find(|r| r["id"] == *id).unwrap().clone();
    assert_eq!(by_id(&sent["id"])["text"], "hi bob");
    assert_eq!(by_id(&sent["id"])["from"], "alice");
    assert_eq!(by_id(&sent2["id"])["content_hex"], "009f9296");
    let (ok, out, _) = msg(&epass, &["receive", "--as", "bob"]);
    assert!(ok);
    assert!(out.contains("no messages for bob"), "{out}");

    let revoked = msg_json(&["endpoint", "revoke", "bob"]);
    assert_eq!(revoked["revoked"], true);
    let (ok, _, err) = msg(
        &epass,
        &["send", "--from", "alice", "--to", "bob", "--text", "x"],
    );
    assert!(!ok && err.contains("revoked"), "{err}");
}
