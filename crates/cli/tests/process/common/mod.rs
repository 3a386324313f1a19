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

/// Poll `f` every 200 ms until it returns `Some`, at most `secs`.
pub fn until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `keyquorum node --config CFG --print-identity` (this also makes the
/// node's vault): its JSON.
pub fn print_identity(cfg: &Path) -> Value {
    ok_json(
        &kq(
            &[
                "node",
                "--config",
                cfg.to_str().unwrap(),
                "--print-identity",
            ],
            &[],
        ),
        "print-identity",
    )
}

/// Each node's identity (`id`, `info`) from a bare config under `dir`, and
/// `dir/ca.pem` holding their certificates.
pub fn identities(dir: &Path, ids: &[u16], ports: &[u16]) -> (Vec<(u16, Value)>, PathBuf) {
    let mut infos = Vec::new();
    let mut ca = String::new();
    for (id, port) in ids.iter().zip(ports) {
        let v = print_identity(&config(dir, *id, *port, &[]));
        ca.push_str(v["certificate"].as_str().unwrap());
        infos.push((*id, v["info"].clone()));
    }
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    (infos, ca_file)
}

/// `keyquorum init` at `url` with quorum 2, the operators `ops` (from
/// [`operators`]), the admin's key written to `admin_key` and the init
/// secret files `secrets`.
pub fn init(
    url: &str,
    ca_file: &Path,
    admin_key: &Path,
    ops: &[(PathBuf, String)],
    secrets: &[PathBuf],
) -> Output {
    let mut args: Vec<String> = [
        "init",
        "--url",
        url,
        "--ca-cert",
        ca_file.to_str().unwrap(),
        "--quorum",
        "2",
        "--admin-key-out",
        admin_key.to_str().unwrap(),
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (_, arg) in ops {
        args.extend(["--operator".into(), arg.clone()]);
    }
    for s in secrets {
        args.extend(["--init-secret-file".into(), s.to_str().unwrap().into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kq(&args, &[])
}

/// `key sign prod` of `msg` through `env`: the signature, once it succeeds
/// (polled: the node may still be catching up).
pub fn signed(env: &[(&str, &str)], msg: &[u8], what: &str) -> [u8; 64] {
    let v = until(60, what, || {
        let o = kq(
            &[
                "key",
                "sign",
                "prod",
                "--message-hex",
                &hex::encode(msg),
                "--json",
            ],
            env,
        );
        o.status.success().then(|| ok_json(&o, "sign"))
    });
    hex::decode(v["signature"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}
