//! `keyquorum operator`, `keyquorum init` and `keyquorum approve`: the
//! operators' key pairs (made on each operator's own machine), initialising
//! a new cluster with them, and their approvals.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use keyquorum_client::{Client, ClientKey};
use keyquorum_node::cluster::init::InitSecret;
use keyquorum_wire::api::{ApprovalRequest, Approved, ChangeList, InitBody, InitRequest, NamedKey};
use keyquorum_wire::control::{Change, ChangeRecord};
use keyquorum_wire::Hex32;
use rand_core::OsRng;
use serde_json::json;

use crate::cluster::{load_key, print_json, write_secret_file};
use crate::{OperatorCommand, OperatorRemote};

/// An operator's client: the operator's key (`KEYQUORUM_OPERATOR_KEY_FILE`).
fn operator_client(r: &OperatorRemote) -> Result<Client> {
    let Some(key_file) = &r.key_file else {
        bail!(
            "no operator key: set KEYQUORUM_OPERATOR_KEY_FILE and KEYQUORUM_OPERATOR_KEY_ID or \
             pass --key-file and --key-id"
        );
    };
    let Some(path) = &r.ca_cert else {
        bail!("no CA certificate: set KEYQUORUM_CA_CERT or pass --ca-cert");
    };
    let ca = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Client::new(&r.url, &load_key(key_file, &r.key_id)?, &ca)?)
}

/// The name an operator key goes by when none is given.
fn default_name(public_key: &[u8; 32]) -> String {
    format!(
        "operator-{}",
        hex::encode(public_key.get(..4).unwrap_or_default())
    )
}

/// Parse `NAME=PUBKEY` or `PUBKEY` (named by [`default_name`]).
fn named_key(arg: &str) -> Result<NamedKey> {
    let (name, key) = match arg.split_once('=') {
        Some((n, k)) => (Some(n.to_string()), k),
        None => (None, arg),
    };
    let mut public_key = [0u8; 32];
    hex::decode_to_slice(key.trim(), &mut public_key)
        .with_context(|| format!("{arg:?}: the public key is not 64 hex digits"))?;
    Ok(NamedKey {
        name: name.unwrap_or_else(|| default_name(&public_key)),
        public_key: Hex32(public_key),
    })
}

pub(crate) fn change_line(c: &ChangeRecord) -> String {
    let what = match &c.change {
        Change::AddOperator { name, public_key } => format!("add operator {name} ({public_key})"),
        Change::RemoveOperator { name } => format!("remove operator {name}"),
        Change::SetQuorum { quorum } => format!("set the quorum to {quorum}"),
        Change::AddNode {
            id,
            addr,
            identity,
            voter,
            ..
        } => format!(
            "add node {id} at {addr} ({identity}){}",
            if *voter { "" } else { " as a learner" }
        ),
        Change::RemoveNode { id, despite_trees } => format!(
            "remove node {id}{}",
            if *despite_trees {
                ", despite the signing trees it is a member of"
            } else {
                ""
            }
        ),
        Change::DrainNode { id, onto: None } => format!("drain node {id}"),
        Change::DrainNode { id, onto: Some(o) } => format!("drain node {id} onto node {o}"),
        Change::CancelDrain { id } => format!("cancel node {id}'s drain"),
        Change::SetKeyPolicy {
            key,
            threshold,
            members,
        } => format!("let {key} be reshared {threshold}-of-{members:?}"),
    };
    format!(
        "{}  {what}  by {}  {}/{} approvals{}",
        c.id,
        c.requested_by,
        c.approvals.len(),
        c.needed,
        if c.done { "  done" } else { "" }
    )
}

fn print_changes(list: &ChangeList, json: bool) -> Result<()> {
    if json {
        return print_json(&serde_json::to_value(list)?);
    }
    println!("operators {:?}, quorum {}", list.operators, list.quorum);
    for c in &list.changes {
        println!("{}", change_line(c));
    }
    Ok(())
}

/// `keyquorum operator ...`.
pub(crate) async fn run(command: OperatorCommand, json: bool) -> Result<()> {
    let (remote, change) = match command {
        OperatorCommand::Keygen { out, name } => {
            // The name is only what the key signs as (its key id); the
            // key file does not hold it.
            let key = ClientKey::generate("operator", &mut OsRng);
            let name = name.unwrap_or_else(|| default_name(&key.public_key()));
            write_secret_file(&out, key.to_pkcs8_pem()?.as_bytes())?;
            let public_key = hex::encode(key.public_key());
            if json {
                return print_json(&json!({
                    "name": name,
                    "public_key": public_key,
                    "key_file": out,
                    "init_arg": format!("{name}={public_key}"),
                }));
            }
            println!("{public_key}");
            eprintln!(
                "operator {name}: private key in {} (keep it on this machine); give \
                 `keyquorum init --operator {name}={public_key}`, and sign as \
                 KEYQUORUM_OPERATOR_KEY_ID={name}",
                out.display()
            );
            return Ok(());
        }
        OperatorCommand::List { remote } => {
            return print_changes(&operator_client(&remote)?.changes().await?, json);
        }
        OperatorCommand::Add { remote, operator } => {
            let k = named_key(&operator)?;
            (
                remote,
                Change::AddOperator {
                    name: k.name,
                    public_key: k.public_key,
                },
            )
        }
        OperatorCommand::Remove { remote, name } => (remote, Change::RemoveOperator { name }),
        OperatorCommand::Quorum { remote, quorum } => (remote, Change::SetQuorum { quorum }),
    };
    let record = operator_client(&remote)?.propose_change(change).await?;
    if json {
        return print_json(&serde_json::to_value(&record)?);
    }
    println!("{}", change_line(&record));
    eprintln!(
        "needs {} operator approvals: {}",
        record.needed,
        change_hint(&record)?
    );
    Ok(())
}

/// A short fingerprint of what an approval approves: the first 8 bytes of
/// SHA-256 over its JSON, hex. The proposer's CLI prints it and the
/// approver's checks it (`--expect`), so both can compare what they read
/// over a channel of their own, whatever node each asked.
pub(crate) fn fingerprint(what: &ApprovalRequest) -> Result<String> {
    let bytes = serde_json::to_vec(what)?;
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
    Ok(hex::encode(digest.get(..8).unwrap_or_default()))
}

/// Refused unless `what` has the fingerprint `expect` (when given).
pub(crate) fn check_expected(id: &str, what: &ApprovalRequest, expect: Option<&str>) -> Result<()> {
    let Some(expected) = expect else {
        return Ok(());
    };
    let fp = fingerprint(what)?;
    // (Public values: no constant-time comparison needed.)
    if expected.trim().to_ascii_lowercase() != fp {
        bail!(
            "the request under {id} has fingerprint {fp}, not {expected}: it is not what was \
             proposed to you; nothing was approved"
        );
    }
    Ok(())
}

/// What the proposer tells the approvers: the command, with the
/// fingerprint of what they are to approve.
pub(crate) fn approve_hint(id: &str, what: &ApprovalRequest) -> Result<String> {
    Ok(format!(
        "keyquorum approve {id} --expect {}",
        fingerprint(what)?
    ))
}

/// [`approve_hint`] for a proposed change.
pub(crate) fn change_hint(record: &ChangeRecord) -> Result<String> {
    approve_hint(&record.id, &ApprovalRequest::of_change(record))
}

/// `keyquorum approve ID`: read the change or export under ID, show all of
/// it with its fingerprint, and approve exactly that (the nodes refuse the
/// approval if what they hold under ID is anything else). Asks first on a
/// terminal unless `--yes`; refuses if `--expect` names another
/// fingerprint.
pub(crate) async fn approve(
    remote: &OperatorRemote,
    id: &str,
    expect: Option<&str>,
    yes: bool,
    json: bool,
) -> Result<()> {
    let c = operator_client(remote)?;
    let (what, shown) = match c.changes().await?.changes.into_iter().find(|r| r.id == id) {
        Some(r) => (ApprovalRequest::of_change(&r), change_line(&r)),
        None => match c.exports().await?.exports.into_iter().find(|r| r.id == id) {
            Some(r) => (
                ApprovalRequest::of_export(&r),
                format!("export of key {} (generation {})", r.key, r.epoch),
            ),
            None => bail!("no change or export {id} on this node"),
        },
    };
    // Until every member announced rules 14, replicas approve the id alone.
    if !c.status().await.is_ok_and(|s| s.approvals_bound) {
        eprintln!(
            "warning: this cluster does not yet bind approvals to what they name (a member \
             has not announced apply rules 14): the nodes approve the id"
        );
    }
    eprintln!("approving {id}: {shown}");
    eprintln!("{}", serde_json::to_string_pretty(&what)?);
    eprintln!("fingerprint {}", fingerprint(&what)?);
    if expect.is_some() {
        check_expected(id, &what, expect)?;
    } else if !yes && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprint!("approve this? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("not approved");
        }
    }
    let approved = c.approve(id, &what).await?;
    if json {
        return print_json(&serde_json::to_value(&approved)?);
    }
    match approved {
        Approved::Export(e) => println!(
            "export {} of {}: {}/{} approvals",
            e.id,
            e.key,
            e.approvals.len(),
            e.needed
        ),
        Approved::Change(c) => println!("{}", change_line(&c)),
    }
    Ok(())
}

/// What `keyquorum init` is given.
pub(crate) struct InitArgs {
    pub url: String,
    pub ca_cert: PathBuf,
    pub operators: Vec<String>,
    pub quorum: u16,
    pub admin_name: String,
    pub admin_key_out: PathBuf,
    pub init_secret_files: Vec<PathBuf>,
    pub default_threshold: Option<u16>,
}

/// `keyquorum init`: register the operators, their quorum and a first
/// admin whose key pair is made here.
pub(crate) async fn init(a: InitArgs, json: bool) -> Result<()> {
    if a.init_secret_files.is_empty() {
        bail!(
            "give every node's init secret: --init-secret-file DATA_DIR/init-secret (one per node)"
        );
    }
    let operators = a
        .operators
        .iter()
        .map(|o| named_key(o))
        .collect::<Result<Vec<_>>>()?;
    let secrets = a
        .init_secret_files
        .iter()
        .map(|f| Ok(InitSecret::read(f)?))
        .collect::<Result<Vec<_>>>()?;
    // The nodes being initialised: the membership record starts as
    // exactly these (each secret file names its node).
    let nodes = secrets
        .iter()
        .zip(&a.init_secret_files)
        .map(|(s, f)| {
            s.node().ok_or_else(|| {
                anyhow!(
                    "{} names no node (a file from an older version): restart that node, which \
                     adds its id, and try again",
                    f.display()
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let admin = ClientKey::generate(a.admin_name.clone(), &mut OsRng);
    let body = InitBody {
        operators,
        quorum: a.quorum,
        admin: NamedKey {
            name: a.admin_name.clone(),
            public_key: Hex32(admin.public_key()),
        },
        default_threshold: a.default_threshold,
        nodes,
    };
    let proofs = secrets.iter().map(|s| s.prove(&body)).collect();
    // The admin's private key is on disk before its public key is
    // registered.
    write_secret_file(&a.admin_key_out, admin.to_pkcs8_pem()?.as_bytes())?;
    let ca =
        std::fs::read(&a.ca_cert).with_context(|| format!("reading {}", a.ca_cert.display()))?;
    let c = Client::new(&a.url, &admin, &ca)?;
    let list = match c.init(&InitRequest { init: body, proofs }).await {
        Ok(l) => l,
        Err(e) => {
            // Refused outright: nothing was registered, the key is useless.
            // (A conflict may mean this very init was committed: the key
            // is kept.)
            if matches!(
                e,
                keyquorum_client::ClientError::Api {
                    status: 400 | 403,
                    ..
                }
            ) {
                let _ = std::fs::remove_file(&a.admin_key_out);
                return Err(e.into());
            }
            return Err(anyhow::anyhow!(
                "{e}; the admin key is kept in {} in case the init was committed \
                 (remove it before trying again if it was not)",
                a.admin_key_out.display()
            ));
        }
    };
    if json {
        return print_json(&json!({
            "operators": list.operators,
            "quorum": list.quorum,
            "admin": a.admin_name,
            "admin_key_file": a.admin_key_out,
        }));
    }
    println!(
        "initialised: operators {:?}, quorum {}; admin {} (key in {})",
        list.operators,
        list.quorum,
        a.admin_name,
        a.admin_key_out.display()
    );
    println!(
        "KEYQUORUM_URL={}\nKEYQUORUM_KEY_FILE={}\nKEYQUORUM_KEY_ID={}\nKEYQUORUM_CA_CERT={}",
        a.url,
        a.admin_key_out.display(),
        a.admin_name,
        a.ca_cert.display()
    );
    Ok(())
}
