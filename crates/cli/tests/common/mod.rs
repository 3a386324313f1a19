//! What the tests that drive `keyquorum node` processes share.
#![allow(dead_code, reason = "each test binary uses a part")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_keyquorum");
pub const PASS: &str = "three process test passphrase";

/// Node processes, killed on drop (with the pipes their output goes to).
#[derive(Default)]
pub struct Nodes(pub Vec<(Child, Option<BufReader<ChildStdout>>)>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for (c, _) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Nodes {
    /// Start `keyquorum node ARGS --json` and read the JSON object it
    /// prints once it listens (or panic with what it printed if it exits).
    pub fn start(&mut self, args: &[&str]) -> Value {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--json")
            .env("KEYQUORUM_PASSPHRASE", PASS)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // `node --json` prints one pretty JSON object once it listens; the
        // pipe is kept open after it (the node may print more).
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = out.read_line(&mut line).unwrap();
            assert!(n > 0, "node {args:?} exited: {text}");
            text.push_str(&line);
            if line.trim_end() == "}" {
                break;
            }
        }
        self.0.push((child, Some(out)));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

/// Run `keyquorum ARGS` with the test passphrase and `env`.
pub fn kq(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).env("KEYQUORUM_PASSPHRASE", PASS);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run keyquorum")
}

/// Its JSON output, asserting it succeeded.
pub fn ok_json(o: &Output, what: &str) -> Value {
    assert!(
        o.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&o.stdout)))
}

/// A port the OS picked for a moment (the node binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Write node `id`'s config (data under `dir/n<id>`) listing `peers`.
pub fn config(dir: &Path, id: u16, port: u16, peers: &[(u16, Value)]) -> PathBuf {
    let mut text = format!(
        "id = {id}\ndata_dir = {:?}\nlisten = \"127.0.0.1:{port}\"\n\
         kdf = {{ m_kib = 1024, t = 1, p = 1 }}\n",
        dir.join(format!("n{id}"))
    );
    for (peer, info) in peers {
        text.push_str(&format!(
            "[[peers]]\nid = {peer}\ninfo = {{ addr = {}, identity = {}, hpke = {} }}\n",
            info["addr"], info["identity"], info["hpke"]
        ));
    }
    let path = dir.join(format!("node{id}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Two operators' key pairs (`operator keygen`): (key file, `NAME=PUBKEY`).
pub fn operators(dir: &Path, names: &[&str]) -> Vec<(PathBuf, String)> {
    names
        .iter()
        .map(|name| {
            let file = dir.join(format!("{name}.key"));
            let v = ok_json(
                &kq(
                    &[
                        "operator",
                        "keygen",
                        "--name",
                        name,
                        "--out",
                        file.to_str().unwrap(),
                        "--json",
                    ],
                    &[],
                ),
                "operator keygen",
            );
            (file, v["init_arg"].as_str().unwrap().to_string())
        })
        .collect()
}
