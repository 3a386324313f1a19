//! The commands that run nodes or talk to the API.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use keyquorum_client::{Client, ClientKey, ExportKey};
use keyquorum_wire::api::{CreateKeyRequest, KeyInfo, SuiteName};
use keyquorum_wire::control::ExportRecord;
use keyquorum_wire::Hex32;
use serde_json::json;

use crate::{AuditCommand, Command, ExportCommand, KeyCommand, Remote, SuiteArg};

fn suite(s: SuiteArg) -> SuiteName {
    match s {
        SuiteArg::Ed25519 => SuiteName::Ed25519,
        SuiteArg::Secp256k1Tr => SuiteName::Secp256k1Tr,
    }
}

pub(crate) fn print_json(v: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn spinner(json: bool, msg: &str) -> Option<indicatif::ProgressBar> {
    if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(100));
    Some(pb)
}

/// Await `work` behind a spinner (none with --json or off a terminal).
pub(crate) async fn spinning<T>(
    json: bool,
    msg: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    let pb = spinner(json, msg);
    let out = work.await;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    out
}

fn key_json(k: &KeyInfo) -> serde_json::Value {
    json!({
        "name": k.name,
        "suite": k.suite.as_str(),
        "threshold": k.threshold,
        "members": k.members,
        "public_key": k.public_key.to_string(),
        "epoch": k.epoch,
    })
}

fn key_human(k: &KeyInfo) -> String {
    format!(
        "{}  {}  {}-of-{}  members {:?}  epoch {}\n  public key {}",
        k.name,
        k.suite.as_str(),
        k.threshold,
        k.members.len(),
        k.members,
        k.epoch,
        k.public_key
    )
}

fn message(hex_arg: Option<String>, text: Option<String>) -> Result<Vec<u8>> {
    match (hex_arg, text) {
        (Some(h), _) => hex::decode(h.trim()).context("--message-hex is not hex"),
        (None, Some(t)) => Ok(t.into_bytes()),
        (None, None) => bail!("give --message-hex or --message"),
    }
}

/// Read a client's private key (PKCS#8 PEM).
pub(crate) fn load_key(path: &Path, name: &str) -> Result<ClientKey> {
    let pem = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    ClientKey::from_pkcs8_pem(name, &pem).with_context(|| format!("{}", path.display()))
}

pub(crate) fn client(r: &Remote) -> Result<Client> {
    let Some(key_file) = &r.key_file else {
        bail!(
            "no client key: set KEYQUORUM_KEY_FILE and KEYQUORUM_KEY_ID or pass --key-file and \
             --key-id (see <data-dir>/client.env)"
        );
    };
    let Some(path) = &r.ca_cert else {
        bail!("no CA certificate: set KEYQUORUM_CA_CERT or pass --ca-cert (see <data-dir>/client.env)");
    };
    let ca = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Client::new(&r.url, &load_key(key_file, &r.key_id)?, &ca)?)
}

pub(crate) async fn run(command: Command, json: bool) -> Result<()> {
    match command {
        Command::Dev {
            nodes,
            threshold,
            data_dir,
            exit_after_start,
            smtp,
        } => crate::nodes::dev(nodes, threshold, &data_dir, exit_after_start, smtp, json).await,
        Command::Node {
            action: Some(crate::nodes::NodeAction::Identity { config }),
            ..
        } => crate::nodes::node_identity(&config, json),
        Command::Node {
            action: None,
            config,
            init,
            print_identity,
            join,
            join_code,
        } => {
            let config = config.context("--config FILE is required")?;
            let join = join.zip(join_code);
            crate::nodes::node(&config, init, print_identity, join, json).await
        }
        Command::Key { remote, command } => key(&remote, command, json).await,
        Command::Init {
            url,
            ca_cert,
            operators,
            quorum,
            admin_name,
            admin_key_out,
            init_secret_files,
            default_threshold,
        } => {
            crate::operators::init(
                crate::operators::InitArgs {
                    url,
                    ca_cert,
                    operators,
                    quorum,
                    admin_name,
                    admin_key_out,
                    init_secret_files,
                    default_threshold,
                },
                json,
            )
            .await
        }
        Command::Operator(command) => crate::operators::run(command, json).await,
        Command::Approve {
            remote,
            id,
            expect,
            yes,
        } => crate::operators::approve(&remote, &id, expect.as_deref(), yes, json).await,
        Command::Client { remote, command } => crate::clients::run(&remote, command, json).await,
        Command::Msg {
            remote,
            files,
            command,
        } => crate::msg::run(&client(&remote)?, &files, command, json).await,
        Command::He { remote, command } => crate::he::run(&client(&remote)?, command, json).await,
        Command::Seedtree { remote, command } => {
            crate::seedtree::run(&client(&remote)?, command, json).await
        }
        Command::Oprf { remote, command } => {
            crate::oprf::run(&client(&remote)?, command, json).await
        }
        Command::Recovery { remote, command } => {
            crate::recovery::run(&client(&remote)?, command, json).await
        }
        Command::Bench(crate::BenchCommand::Sign {
            shape,
            concurrency,
            seconds,
            warmup,
            suite: s,
            url,
            key_file,
            key_id,
            ca_cert,
            node_pids,
            in_process,
        }) => {
            crate::bench::bench_sign(
                crate::bench::BenchOpts {
                    nodes: shape.nodes,
                    threshold: shape.threshold,
                    pool: shape.pool,
                    peer_batches: shape.peer_batches,
                    concurrency,
                    seconds,
                    warmup,
                    url,
                    key_file,
                    key_id,
                    ca_cert,
                    suite: suite(s),
                    in_process,
                    node_pids,
                },
                json,
            )
            .await
        }
        Command::Bench(crate::BenchCommand::Nodes { shape }) => {
            crate::bench::serve_nodes(shape.nodes, shape.threshold, shape.pool, shape.peer_batches)
                .await
        }
        Command::Bench(crate::BenchCommand::Seedtree {
            nodes,
            threshold,
            height,
            winternitz,
            subtrees,
            concurrency,
            seconds,
        }) => {
            crate::bench_seedtree::bench_seedtree(
                crate::bench_seedtree::SeedtreeBenchOpts {
                    nodes,
                    threshold,
                    height,
                    winternitz,
                    subtrees,
                    concurrency,
                    seconds,
                },
                json,
            )
            .await
        }
        Command::Bench(crate::BenchCommand::Oprf {
            nodes,
            threshold,
            concurrency,
            seconds,
        }) => {
            crate::bench_oprf::bench_oprf(
                crate::bench_oprf::OprfBenchOpts {
                    nodes,
                    threshold,
                    concurrency,
                    seconds,
                },
                json,
            )
            .await
        }
        Command::Bench(crate::BenchCommand::Recovery {
            nodes,
            threshold,
            concurrency,
            resets,
            pins,
        }) => {
            crate::bench_recovery::bench_recovery(
                crate::bench_recovery::RecoveryBenchOpts {
                    nodes,
                    threshold,
                    concurrency,
                    resets,
                    pins,
                },
                json,
            )
            .await
        }
        Command::Bench(crate::BenchCommand::He {
            nodes,
            concurrency,
            seconds,
            inputs,
        }) => {
            crate::bench_he::bench_he(
                crate::bench_he::HeBenchOpts {
                    nodes,
                    concurrency,
                    seconds,
                    inputs,
                },
                json,
            )
            .await
        }
        Command::Bench(crate::BenchCommand::Msg {
            nodes,
            concurrency,
            coordinators,
            seconds,
            size,
            claim_batch,
        }) => {
            crate::bench_msg::bench_msg(
                crate::bench_msg::MsgBenchOpts {
                    nodes,
                    concurrency,
                    coordinators,
                    seconds,
                    size,
                    claim_batch,
                },
                json,
            )
            .await
        }
        Command::Cluster { remote, command } => crate::nodes::cluster(&remote, command, json).await,
        Command::Snapshot { command } => crate::snapshot::run(command, json).await,
        Command::Status { remote } => {
            let s = client(&remote)?.status().await?;
            print_status(&s, json)
        }

        Command::Audit {
            remote,
            command,
            offset,
            limit,
        } => {
            if let Some(AuditCommand::CheckProof {
                file,
                identity,
                min_signers,
            }) = &command
            {
                let bytes =
                    std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
                let proof: keyquorum_wire::control::AuditProof =
                    serde_json::from_slice(&bytes).context("the proof file is not a proof")?;
                let keys = identity
                    .iter()
                    .map(|i| hex32(i, "--identity").map(|k| k.0))
                    .collect::<Result<Vec<_>>>()?;
                return check_proof(&proof, &keys, *min_signers, true, json);
            }
            let c = client(&remote)?;
            match command {
                Some(AuditCommand::CheckProof { .. }) => Ok(()),
                Some(AuditCommand::Proof {
                    entry,
                    identity,
                    min_signers,
                }) => {
                    let proof = c.audit_proof(entry).await?;
                    let pinned = !identity.is_empty();
                    let keys = match pinned {
                        true => identity
                            .iter()
                            .map(|i| hex32(i, "--identity").map(|k| k.0))
                            .collect::<Result<Vec<_>>>()?,
                        false => proof.heads.iter().map(|h| h.signer_identity.0).collect(),
                    };
                    check_proof(&proof, &keys, min_signers, pinned, json)
                }
                Some(AuditCommand::Verify) => {
                    let v = c.audit_verify().await?;
                    let valid = v.get("valid").and_then(|x| x.as_bool()).unwrap_or(false);
                    if json {
                        print_json(&v)?;
                    } else if valid {
                        println!(
                            "audit log verified: {} entries, {} signed heads",
                            v.get("entries").unwrap_or(&json!(0)),
                            v.get("signed_heads").unwrap_or(&json!(0))
                        );
                    } else {
                        println!(
                            "AUDIT LOG DOES NOT VERIFY: {}",
                            v.get("fault").unwrap_or(&json!(null))
                        );
                    }
                    if !valid {
                        bail!("audit log verification failed");
                    }
                    Ok(())
                }
                None => {
                    let page = c.audit(offset, limit).await?;
                    if json {
                        return print_json(&page);
                    }
                    let entries = page
                        .get("entries")
                        .and_then(|e| e.as_array())
                        .cloned()
                        .unwrap_or_default();
                    for e in entries {
                        let null = serde_json::Value::Null;
                        let ev = e.get("event").unwrap_or(&null);
                        let f = |k: &str| ev.get(k).cloned().unwrap_or(serde_json::Value::Null);
                        println!(
                            "{:>6}  {}  node {}  {:<12} {:<16} {:<12} {}",
                            e.get("seq").unwrap_or(&null),
                            f("time_ms"),
                            f("node"),
                            f("actor").as_str().unwrap_or(""),
                            f("action").as_str().unwrap_or(""),
                            f("target").as_str().unwrap_or("-"),
                            f("outcome").as_str().unwrap_or("")
                        );
                    }
                    Ok(())
                }
            }
        }
        Command::Demo { .. } => Err(anyhow!("demo runs without a runtime")),
    }
}

async fn key(remote: &Remote, command: KeyCommand, json: bool) -> Result<()> {
    let c = client(remote)?;
    match command {
        KeyCommand::Create {
            name,
            suite: s,
            threshold,
            members,
            min_members,
        } => {
            let msg = format!("distributed key generation for {name}");
            let k = spinning(
                json,
                &msg,
                c.create_key(&CreateKeyRequest {
                    name,
                    suite: suite(s),
                    threshold,
                    members,
                    min_members,
                }),
            )
            .await?;
            show_key(&k, json)
        }
        KeyCommand::List => {
            let l = c.list_keys().await?;
            if json {
                return print_json(
                    &json!({ "keys": l.keys.iter().map(key_json).collect::<Vec<_>>() }),
                );
            }
            for k in &l.keys {
                println!("{}", key_human(k));
            }
            Ok(())
        }
        KeyCommand::Show { name } => show_key(&c.key(&name).await?, json),
        KeyCommand::Sign {
            name,
            message_hex,
            message: text,
        } => {
            let msg = message(message_hex, text)?;
            let s = c.sign(&name, &msg).await?;
            if json {
                print_json(
                    &json!({ "key": name, "signature": s.signature.to_string(), "signers": s.signers, "epoch": s.epoch }),
                )
            } else {
                println!("{}", s.signature);
                Ok(())
            }
        }
        KeyCommand::Verify {
            name,
            message_hex,
            message: text,
            signature,
        } => {
            let msg = message(message_hex, text)?;
            let sig = hex::decode(signature.trim()).context("--signature is not hex")?;
            let valid = c.verify(&name, &msg, &sig).await?;
            if json {
                print_json(&json!({ "valid": valid }))?;
            } else {
                println!("{}", if valid { "valid" } else { "INVALID" });
            }
            if !valid {
                bail!("signature does not verify");
            }
            Ok(())
        }
        KeyCommand::Refresh { name } => {
            let k = spinning(json, &format!("refreshing {name}"), c.refresh(&name)).await?;
            show_key(&k, json)
        }
        KeyCommand::Policy {
            name,
            threshold,
            members,
        } => {
            let record = c
                .propose_change(keyquorum_wire::control::Change::SetKeyPolicy {
                    key: name,
                    threshold,
                    members,
                })
                .await?;
            if json {
                return print_json(&serde_json::to_value(&record)?);
            }
            println!("{}", crate::operators::change_line(&record));
            eprintln!(
                "needs {} operator approvals: {}; then keyquorum key reshare",
                record.needed,
                crate::operators::change_hint(&record)?
            );
            Ok(())
        }
        KeyCommand::Reshare {
            name,
            threshold,
            members,
        } => {
            let msg = format!("resharing {name} to {threshold}-of-{members:?}");
            let k = spinning(json, &msg, c.reshare(&name, threshold, &members)).await?;
            show_key(&k, json)
        }
        KeyCommand::Repair { name, node } => {
            let msg = format!("repairing node {node}'s share of {name}");
            let k = spinning(json, &msg, c.repair(&name, node)).await?;
            show_key(&k, json)
        }
        KeyCommand::Export(e) => export(&c, e, json).await,
    }
}

fn show_key(k: &KeyInfo, json: bool) -> Result<()> {
    if json {
        print_json(&key_json(k))
    } else {
        println!("{}", key_human(k));
        Ok(())
    }
}

fn print_status(s: &keyquorum_wire::api::ClusterStatus, json: bool) -> Result<()> {
    if json {
        return print_json(&serde_json::to_value(s)?);
    }
    println!(
        "node {}  leader {:?}  term {}  applied {:?}",
        s.node_id, s.leader, s.term, s.applied
    );
    for n in &s.nodes {
        println!(
            "  node {} {} {}  runs {}",
            n.id,
            n.addr,
            if n.voter { "voter" } else { "learner" },
            n.measurement
                .map_or_else(|| "(not stated)".to_string(), |m| m.binary.to_string())
        );
    }
    println!("{} keys, {} audit entries", s.keys, s.audit_entries);
    if s.approvals_bound && s.rules < keyquorum_node::cluster::machine::operators::APPROVAL_RULES {
        eprintln!(
            "warning: every member announced apply rules 14 but the log is still at {}: the \
             leader is not stamping them; start no older build on any node (a joining one \
             included) until it does",
            s.rules
        );
    }
    println!(
        "apply rules {}; approvals {}",
        s.rules,
        if s.approvals_bound {
            "name what they approve"
        } else {
            "are bound to the id only (a member has not announced rules 14)"
        }
    );
    Ok(())
}

pub(crate) fn hex32(s: &str, what: &str) -> Result<Hex32> {
    let v = hex::decode(s.trim()).with_context(|| format!("{what} is not hex"))?;
    let b: [u8; 32] = v
        .try_into()
        .map_err(|_| anyhow!("{what} must be 32 bytes (64 hex digits)"))?;
    Ok(Hex32(b))
}

/// Create `path` with mode 0600 and write `data`; refuses to overwrite.
pub(crate) fn write_secret_file(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .with_context(|| format!("creating {} (it must not exist)", path.display()))?;
    // A file that could not be written whole is not left behind.
    if let Err(e) = f.write_all(data).and_then(|()| f.sync_all()) {
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

fn export_json(r: &ExportRecord) -> serde_json::Value {
    json!({
        "id": r.id,
        "key": r.key,
        "epoch": r.epoch,
        "requested_by": r.requested_by,
        "approvals": r.approvals,
        "needed": r.needed,
        "done": r.done,
        "recipient": r.recipient.to_string(),
        "created_ms": r.created_ms,
    })
}

fn export_human(r: &ExportRecord) -> String {
    format!(
        "{}  key {} epoch {}  requested by {}  approvals {}/{} {:?}{}",
        r.id,
        r.key,
        r.epoch,
        r.requested_by,
        r.approvals.len(),
        r.needed,
        r.approvals,
        if r.done { "  done" } else { "" }
    )
}

async fn export(c: &Client, command: ExportCommand, json: bool) -> Result<()> {
    match command {
        ExportCommand::Request { name, key_file } => {
            if key_file.exists() {
                bail!("{} exists; give a new file", key_file.display());
            }
            let k = ExportKey::generate();
            let secret = zeroize::Zeroizing::new(hex::encode(k.secret_bytes().as_slice()));
            write_secret_file(&key_file, secret.as_bytes())?;
            let r = match c.request_export(&name, &k).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = std::fs::remove_file(&key_file);
                    return Err(e.into());
                }
            };
            if json {
                print_json(&export_json(&r))
            } else {
                println!("{}", export_human(&r));
                println!(
                    "needs {} operator approvals: {}",
                    r.needed,
                    crate::operators::approve_hint(
                        &r.id,
                        &keyquorum_wire::api::ApprovalRequest::of_export(&r)
                    )?
                );
                Ok(())
            }
        }
        ExportCommand::List => {
            let l = c.exports().await?;
            if json {
                return print_json(
                    &json!({ "exports": l.exports.iter().map(export_json).collect::<Vec<_>>() }),
                );
            }
            for r in &l.exports {
                println!("{}", export_human(r));
            }
            Ok(())
        }
        ExportCommand::Approve { id, expect } => {
            let Some(record) = c.exports().await?.exports.into_iter().find(|r| r.id == id) else {
                bail!("no export {id} on this node");
            };
            let what = keyquorum_wire::api::ApprovalRequest::of_export(&record);
            eprintln!(
                "approving export {id} of key {} (generation {}), asked by {}, sealed to {}; \
                 fingerprint {}",
                record.key,
                record.epoch,
                record.requested_by,
                record.recipient,
                crate::operators::fingerprint(&what)?
            );
            crate::operators::check_expected(&id, &what, expect.as_deref())?;
            let r = c.approve_export(&record).await?;
            if json {
                print_json(&export_json(&r))
            } else {
                println!("{}", export_human(&r));
                Ok(())
            }
        }
        ExportCommand::Run { id, key_file, out } => {
            if out.exists() {
                bail!("{} exists; give a new file", out.display());
            }
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&key_file)
                    .with_context(|| format!("reading {}", key_file.display()))?,
            );
            let raw = zeroize::Zeroizing::new(
                hex::decode(text.trim()).context("the key file is not hex")?,
            );
            let k = ExportKey::from_secret(&raw)?;
            let res = spinning(json, &format!("export {id}"), c.run_export(&id)).await?;
            let secret = k.open(&res)?;
            let hexed = zeroize::Zeroizing::new(hex::encode(secret.as_slice()));
            write_secret_file(&out, hexed.as_bytes())?;
            if json {
                print_json(&json!({
                    "id": res.id,
                    "key": res.key,
                    "suite": res.suite.as_str(),
                    "epoch": res.epoch,
                    "public_key": res.public_key.to_string(),
                    "out": out,
                }))
            } else {
                println!(
                    "exported {} (epoch {}) to {}; public key {}",
                    res.key,
                    res.epoch,
                    out.display(),
                    res.public_key
                );
                Ok(())
            }
        }
    }
}

/// Check an audit proof against `keys` and print it (or the proof as
/// JSON, the verdict then on standard error); `min_signers` defaults to
/// every key given (lower it to the cluster's largest key threshold, at
/// least a majority, to allow for members that have not signed yet).
fn check_proof(
    proof: &keyquorum_wire::control::AuditProof,
    keys: &[[u8; 32]],
    min_signers: Option<usize>,
    pinned: bool,
    json: bool,
) -> Result<()> {
    let need = min_signers.unwrap_or(keys.len());
    let checked = keyquorum_client::audit::verify_proof(proof, keys, need);
    if json {
        print_json(&serde_json::to_value(proof)?)?;
    } else {
        let e = &proof.entry;
        println!(
            "entry {}: {} node {} {} {} {} {}",
            e.seq,
            e.event.time_ms,
            e.event.node,
            e.event.actor,
            e.event.action,
            e.event.target.as_deref().unwrap_or("-"),
            e.event.outcome
        );
        for h in &proof.heads {
            println!(
                "in the log of {} entries with root {}, signed by node {} (identity {})",
                h.head.seq.saturating_add(1),
                h.head
                    .root
                    .map(|r| hex::encode(r.0))
                    .unwrap_or_else(|| "-".into()),
                h.head.signer,
                hex::encode(h.signer_identity.0)
            );
        }
    }
    let verdict = match &checked {
        Ok(n) if pinned => format!("proof verified: {n} of the keys given signed ({need} needed)"),
        Ok(n) => format!(
            "proof checked against the {n} identity keys the node named, not keys you hold: \
             pass --identity with the members' keys to rely on it"
        ),
        Err(e) => format!("PROOF DOES NOT VERIFY: {e}"),
    };
    match json {
        true => eprintln!("{verdict}"),
        false => println!("{verdict}"),
    }
    checked.map(|_| ()).map_err(|e| anyhow!("audit proof: {e}"))
}
