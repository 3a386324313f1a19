//! Running nodes and changing who is in the cluster: `keyquorum dev`,
//! `keyquorum node` (with `--join` and `node identity`) and `keyquorum
//! cluster` (adding, removing and joining nodes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use keyquorum_node::config::NodeConfig;
use keyquorum_node::dev::{DevOptions, LocalCluster};
use keyquorum_node::Node;
use keyquorum_store::vault::KdfParams;
use keyquorum_store::Passphrase;
use keyquorum_wire::api::AddNodeRequest;
use keyquorum_wire::NodeId;
use rand_core::{OsRng, RngCore};
use serde_json::json;

use crate::cluster::{client, hex32, print_json, spinning};
use crate::Remote;

/// The vault passphrase: `KEYQUORUM_PASSPHRASE`, else the file
/// `KEYQUORUM_PASSPHRASE_FILE` names, else (dev only) a random one kept in
/// `<data-dir>/dev-passphrase`.
pub(crate) fn passphrase(dev_dir: Option<&Path>) -> Result<Passphrase> {
    if let Ok(p) = std::env::var("KEYQUORUM_PASSPHRASE") {
        if !p.is_empty() {
            return Ok(Passphrase::new(p.into_bytes()));
        }
    }
    // A file (a container secret, a systemd credential): its bytes up to
    // a final line break.
    if let Some(path) = std::env::var_os("KEYQUORUM_PASSPHRASE_FILE") {
        let mut p = std::fs::read(&path)
            .with_context(|| format!("KEYQUORUM_PASSPHRASE_FILE {}", Path::new(&path).display()))?;
        while p.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            p.pop();
        }
        if p.is_empty() {
            bail!("KEYQUORUM_PASSPHRASE_FILE is empty");
        }
        return Ok(Passphrase::new(p));
    }
    let Some(dir) = dev_dir else {
        bail!("set KEYQUORUM_PASSPHRASE or KEYQUORUM_PASSPHRASE_FILE (the vault passphrase)");
    };
    keyquorum_node::config::create_private_dir(dir)?;
    let file = dir.join("dev-passphrase");
    if let Ok(p) = std::fs::read(&file) {
        return Ok(Passphrase::new(p));
    }
    let mut b = [0u8; 24];
    OsRng.fill_bytes(&mut b);
    let p = hex::encode(b);
    // 0600 from the start, never over a file someone put there.
    keyquorum_node::config::create_private(&file, p.as_bytes())?;
    Ok(Passphrase::new(p.into_bytes()))
}

/// `keyquorum dev`: a local cluster in this process.
pub(crate) async fn dev(
    nodes: u16,
    threshold: u16,
    data_dir: &Path,
    exit_after_start: bool,
    smtp: Option<String>,
    json: bool,
) -> Result<()> {
    let pass = passphrase(Some(data_dir))?;
    let opts = DevOptions {
        nodes,
        threshold,
        data_dir: data_dir.to_path_buf(),
        kdf: KdfParams::default(),
        nonce_pool: 32,
        peer_batches: keyquorum_node::config::NodeConfig::DEFAULT_PEER_BATCHES,
        checkpoint_every: keyquorum_node::config::NodeConfig::DEFAULT_CHECKPOINT_EVERY,
        audit_queue: keyquorum_node::config::NodeConfig::DEFAULT_AUDIT_QUEUE,
        client_sessions: keyquorum_node::config::NodeConfig::DEFAULT_CLIENT_SESSIONS,
        smtp,
    };
    let msg = format!("starting {nodes} nodes");
    let cluster = spinning(json, &msg, LocalCluster::start(opts, pass)).await?;
    let env_file = data_dir.join("client.env");
    if json {
        let nodes: BTreeMap<String, String> = cluster
            .infos()
            .iter()
            .map(|(id, i)| (id.to_string(), i.addr.clone()))
            .collect();
        print_json(&json!({
            "url": cluster.url(),
            "key_file": cluster.admin_key_path(),
            "key_id": cluster.admin.name(),
            "operator_key_file": cluster.operator_key_path(),
            "operator_key_id": cluster.operator.name(),
            "ca_cert": cluster.ca_path(),
            "nodes": nodes,
            "client_env": env_file,
        }))?;
    } else {
        println!(
            "keyquorum dev cluster: {} nodes, default threshold {threshold}",
            cluster.infos().len()
        );
        for (id, i) in cluster.infos() {
            println!("  node {id}  {}", i.addr);
        }
        println!(
            "\nKEYQUORUM_URL={}\nKEYQUORUM_KEY_FILE={}\nKEYQUORUM_KEY_ID={}\nKEYQUORUM_CA_CERT={}",
            cluster.url(),
            cluster.admin_key_path().display(),
            cluster.admin.name(),
            cluster.ca_path().display()
        );
        println!(
            "KEYQUORUM_OPERATOR_KEY_FILE={}\nKEYQUORUM_OPERATOR_KEY_ID={}\n\
             (one operator, quorum 1: exports and operator changes need its approval, \
             `keyquorum approve ID`; the admin alone cannot export)",
            cluster.operator_key_path().display(),
            cluster.operator.name(),
        );
        println!(
            "\n(written to {}; `set -a; . {}` in another shell)",
            env_file.display(),
            env_file.display()
        );
        if !exit_after_start {
            println!(
                "Ctrl-C stops the cluster; its data stays in {}.",
                data_dir.display()
            );
        }
    }
    if !exit_after_start {
        stop_signal().await?;
        if !json {
            eprintln!("stopping");
        }
    }
    cluster.shutdown().await;
    Ok(())
}

/// The members as the node `c` talks to lists them, checked against its
/// own fingerprint, once a majority of the listed voters list the same
/// members, genesis and threshold: each voter counts only if its identity
/// is one this machine trusts (a certificate in the CA file) and it
/// answers over TLS pinned to that identity, so a node that lists voters
/// of its own making gets no code. None may list others. `trust_one`
/// settles for the one node's word where the voters cannot be reached
/// from here (a warning names them).
async fn agreed_join_info(
    remote: &Remote,
    c: &keyquorum_client::Client,
    trust_one: bool,
) -> Result<keyquorum_wire::api::JoinInfo> {
    use keyquorum_node::cluster::join::{fingerprint, verify_members};
    use keyquorum_node::cluster::tls::identities_in_pem;
    let info = c.join_info().await?;
    let fp = fingerprint(&info);
    verify_members(&info, &fp)?;
    let ca = match &remote.ca_cert {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => Vec::new(),
    };
    let trusted = identities_in_pem(&ca);
    let voters: Vec<_> = info.members.iter().filter(|m| m.voter).collect();
    let mut agreed = 0usize;
    let mut unreached = Vec::new();
    for m in &voters {
        if !trusted.contains(&m.info.identity.0) {
            unreached.push(format!(
                "node {} (its identity is in no certificate of the CA file)",
                m.id
            ));
            continue;
        }
        let answer = pinned_get::<keyquorum_wire::api::JoinInfo>(&m.info, "/v1/join").await;
        match answer {
            // What it lists, fingerprinted here (not the field it states).
            Ok(other) if fingerprint(&other) == fp => agreed += 1,
            Ok(_) => bail!(
                "node {} at {} lists other members than {}: do not use a join code until \
                 they agree (a node may be lying, or a change is under way)",
                m.id,
                m.info.addr,
                remote.url
            ),
            Err(e) => unreached.push(format!("node {} at {} ({e:#})", m.id, m.info.addr)),
        }
    }
    let majority = voters.len() / 2 + 1;
    if agreed < majority {
        let why = format!(
            "{agreed} of {} voters confirmed these members ({majority} needed); not confirmed: \
             {}",
            voters.len(),
            unreached.join("; ")
        );
        if !trust_one {
            bail!(
                "{why}. Run this where the voters' addresses are reachable and the CA file \
                 holds their certificates, or pass --trust-one to rest on {}'s word",
                remote.url
            );
        }
        eprintln!(
            "warning: {why}; resting on {}'s word (--trust-one)",
            remote.url
        );
    }
    Ok(info)
}

/// `GET path` (public) from the member `info` describes, over TLS pinned to
/// its identity key (5 s).
pub(crate) async fn pinned_get<T: serde::de::DeserializeOwned>(
    info: &keyquorum_wire::control::NodeInfo,
    path: &str,
) -> Result<T> {
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(keyquorum_node::cluster::tls::pinned_client_config(
            info.identity.0,
        )?)
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let url = format!("{}{path}", info.addr.trim_end_matches('/'));
    let resp = http.get(&url).send().await?.error_for_status()?;
    Ok(resp.json::<T>().await?)
}

/// The join request for node `id` whose identity is `identity` (all 64
/// hex digits, as the new node printed it), made for the members `agreed`
/// (so the node checked the same members), its signature checked here.
fn chosen_join(
    list: &keyquorum_wire::api::JoinList,
    id: NodeId,
    identity: &str,
    agreed: &keyquorum_wire::api::JoinInfo,
) -> Result<keyquorum_wire::api::JoinRequest> {
    let identity = hex32(
        identity,
        "--identity (all 64 hex digits the new node printed)",
    )?;
    let now = keyquorum_node::cluster::peer::now_ms();
    let others = list
        .requests
        .iter()
        .filter(|r| r.id == id && r.info.identity != identity)
        .count();
    if others > 0 {
        eprintln!("warning: {others} other request(s) ask to join as node {id} under other keys");
    }
    list.requests
        .iter()
        .find(|r| {
            r.id == id
                && r.info.identity == identity
                && r.fingerprint.0 == keyquorum_node::cluster::join::fingerprint(agreed)
                && keyquorum_node::cluster::join::check_request(r, now).is_ok()
        })
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "no valid request to join as node {id} with identity {identity} for the members \
                 now (start the node with --join and a current code; `keyquorum cluster joins` \
                 lists the requests)"
            )
        })
}

/// A node's config and the public identity it wrote at its last start
/// (no passphrase needed).
pub(crate) fn public_identity(
    config: &Path,
) -> Result<(NodeConfig, keyquorum_node::identity::PublicIdentity)> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let cfg: NodeConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", config.display()))?;
    let p = keyquorum_node::identity::PublicIdentity::read(&cfg.data_dir)?;
    if p.id != cfg.id {
        bail!(
            "{} holds node {}'s identity, not node {}'s",
            cfg.data_dir.display(),
            p.id,
            cfg.id
        );
    }
    Ok((cfg, p))
}

/// `keyquorum node identity`: the public identity the node wrote at its
/// last start (no passphrase; the node may be running).
pub(crate) fn node_identity(config: &Path, json: bool) -> Result<()> {
    let (_, p) = public_identity(config)?;
    if json {
        return print_json(&json!({ "id": p.id, "info": {
            "addr": p.info.addr, "identity": p.info.identity.to_string(), "hpke": p.info.hpke.to_string() },
            "certificate": p.certificate }));
    }
    println!(
        "node {} at {}\nidentity {}\nhpke {}\n{}",
        p.id, p.info.addr, p.info.identity, p.info.hpke, p.certificate
    );
    Ok(())
}

/// The joining side's first step: the members through `url`, kept only if
/// they are the join code's (or those a join left in the data directory).
async fn joining(
    cfg: &NodeConfig,
    join: Option<(String, String)>,
) -> Result<Option<keyquorum_wire::api::JoinInfo>> {
    use keyquorum_node::cluster::join;
    let kept = join::read_join_file(&cfg.data_dir)?;
    let Some((url, code)) = join else {
        return Ok(kept);
    };
    let fp = join::parse_join_code(&code)?;
    let info = match kept {
        Some(i) if i.fingerprint.0 == fp => i,
        _ => join::fetch_members(&url, &fp)
            .await
            .with_context(|| format!("joining through {url}"))?,
    };
    join::write_join_file(&cfg.data_dir, &info)?;
    Ok(Some(info))
}

/// `keyquorum node`: run one node from its config (forming, joining or
/// rejoining a cluster) until Ctrl-C or SIGTERM.
pub(crate) async fn node(
    config: &Path,
    init: bool,
    print_identity: bool,
    join: Option<(String, String)>,
    json: bool,
) -> Result<()> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let cfg: NodeConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", config.display()))?;
    let pass = passphrase(None)?;
    if print_identity {
        let kdf = cfg.kdf.map(KdfParams::from).unwrap_or_default();
        let keys = keyquorum_node::dev::prepare_identity(&cfg.data_dir, &pass, kdf)?;
        let addr = cfg
            .advertise
            .clone()
            .unwrap_or_else(|| format!("https://{}", cfg.listen));
        let cert = keyquorum_node::cluster::tls::NodeCert::new(
            &keys,
            cfg.id,
            &keyquorum_node::cluster::tls::certificate_names(&addr, &cfg.tls_names),
        )?;
        let info = keys.info(addr);
        return print_json(&json!({ "id": cfg.id, "info": {
            "addr": info.addr, "identity": info.identity.to_string(), "hpke": info.hpke.to_string() },
            "certificate": cert.pem() }));
    }
    let joined = joining(&cfg, join).await?;
    let running = Node::start(cfg.clone(), &pass, None).await?;
    if init {
        let mut members: BTreeMap<NodeId, _> =
            cfg.peers.iter().map(|p| (p.id, p.info.clone())).collect();
        members.insert(cfg.id, running.node.info());
        running.node.initialize(members).await?;
    }
    let identity = running.node.info().identity;
    if json {
        print_json(&json!({ "id": cfg.id, "addr": running.addr.to_string(),
            "identity": identity.to_string() }))?;
    } else {
        println!("node {} listening on {}", cfg.id, running.addr);
    }
    if joined.is_some() && !running.node.check_joined().unwrap_or(false) {
        eprintln!(
            "node {id} asks to join; identity {identity}. An operator checks that identity and \
             proposes it: `keyquorum cluster join {id} --identity {identity}`, then the operator \
             quorum approves (`keyquorum approve CHANGE`)",
            id = cfg.id
        );
    }
    // A node that joined with a code checks the history it is sent until
    // it is a member, and stops if it is not the code's cluster.
    let asking = keyquorum_node::cluster::join::ask_until_member(
        running.node.clone(),
        std::time::Duration::from_secs(5),
    );
    let outcome = tokio::select! {
        r = stop_signal() => r,
        r = async { asking.await?; std::future::pending::<Result<()>>().await } => r,
    };
    running.stop().await;
    outcome
}

/// `keyquorum cluster ...`: membership changes and joins.
pub(crate) async fn cluster(remote: &Remote, command: ClusterCommand, json: bool) -> Result<()> {
    let c = client(remote)?;
    let s = match command {
        ClusterCommand::Add {
            id,
            addr,
            identity,
            hpke,
            learner,
        } => {
            c.add_node(&AddNodeRequest {
                id,
                addr,
                identity: hex32(&identity, "--identity")?,
                hpke: hex32(&hpke, "--hpke")?,
                voter: !learner,
            })
            .await?
        }
        ClusterCommand::Remove { id, despite_trees } => {
            if despite_trees {
                c.remove_node_despite_trees(id).await?
            } else {
                c.remove_node(id).await?
            }
        }
        ClusterCommand::Drain {
            id,
            onto,
            wait,
            remove,
            cancel,
        } => {
            let wait = Duration::from_secs(wait);
            if cancel {
                return crate::drain::cancel(&c, id, wait, json).await;
            }
            return crate::drain::drain(&c, id, onto, wait, remove, json).await;
        }
        ClusterCommand::JoinCode { trust_one } => {
            let info = agreed_join_info(remote, &c, trust_one).await?;
            let fp = keyquorum_node::cluster::join::fingerprint(&info);
            let code = keyquorum_node::cluster::join::join_code(&fp);
            if json {
                return print_json(&json!({ "code": code,
                    "members": info.members.iter().map(|m| m.id).collect::<Vec<_>>() }));
            }
            println!("{code}");
            return Ok(());
        }
        ClusterCommand::Joins => {
            let list = c.joins().await?;
            let now = keyquorum_node::cluster::peer::now_ms();
            let rows: Vec<_> = list
                .requests
                .iter()
                .map(|r| {
                    let check = keyquorum_node::cluster::join::check_request(r, now);
                    json!({ "id": r.id, "addr": r.info.addr,
                        "identity": r.info.identity.to_string(),
                        "hpke": r.info.hpke.to_string(), "created_ms": r.created_ms,
                        "valid": check.is_ok() })
                })
                .collect();
            if json {
                return print_json(&json!({ "requests": rows }));
            }
            for r in &rows {
                println!(
                    "node {} at {} identity {}{}",
                    r["id"],
                    r["addr"].as_str().unwrap_or_default(),
                    r["identity"].as_str().unwrap_or_default(),
                    if r["valid"] == true { "" } else { " (INVALID)" }
                );
            }
            return Ok(());
        }
        ClusterCommand::Join {
            id,
            identity,
            learner,
            trust_one,
        } => {
            let agreed = agreed_join_info(remote, &c, trust_one).await?;
            let req = chosen_join(&c.joins().await?, id, &identity, &agreed)?;
            c.add_node(&AddNodeRequest {
                id,
                addr: req.info.addr.clone(),
                identity: req.info.identity,
                hpke: req.info.hpke,
                voter: !learner,
            })
            .await?
        }
    };
    if json {
        return print_json(&serde_json::to_value(&s)?);
    }
    println!("{}", crate::operators::change_line(&s));
    eprintln!(
        "needs {} operator approvals: {}; the leader then changes the membership \
         (keyquorum status shows it)",
        s.needed,
        crate::operators::change_hint(&s)?
    );
    Ok(())
}

/// Ctrl-C, or SIGTERM where there is one (`docker stop`, systemd).
async fn stop_signal() -> Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(anyhow::Error::from),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(anyhow::Error::from)
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum NodeAction {
    /// Print a node's public identity (id, address, keys, certificate)
    /// from its data directory, without its passphrase: works while the
    /// node runs (the node writes it at each start).
    Identity {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ClusterCommand {
    /// Propose adding a node (its public identity from `keyquorum node
    /// --print-identity`); it joins once the operator quorum approves.
    Add {
        /// Node id (unused, 1..=65535).
        #[arg(long)]
        id: NodeId,
        /// Its API base URL.
        #[arg(long)]
        addr: String,
        /// Its Ed25519 identity public key, hex.
        #[arg(long)]
        identity: String,
        /// Its X25519 HPKE public key, hex.
        #[arg(long)]
        hpke: String,
        /// Keep it a non-voting learner.
        #[arg(long)]
        learner: bool,
    },
    /// Propose removing a node that holds no shares (reshare its keys away
    /// first); it leaves once the operator quorum approves.
    Remove {
        /// Node id.
        id: NodeId,
        /// Remove it although it is a member of signing trees (a drain
        /// moves their leaves first, from apply rules 15): it keeps its
        /// shares of their unused leaves, and a tree that cannot gather a
        /// lock quorum without it stops signing for good.
        #[arg(long)]
        despite_trees: bool,
    },
    /// Move everything a node holds a share of off it, on one approval by
    /// the operator quorum (proposed here if no one did): reshare its keys
    /// (shared, HE sessions', OPRF) keeping their thresholds, move the
    /// unused leaves of the signing trees it holds shares of, rotate the
    /// accounts it guards, and name what cannot be moved (PIN keys). Run
    /// it again after the approval, or after a failure.
    Drain {
        /// The node to drain.
        id: NodeId,
        /// A member that takes its place in every key (default: none, the
        /// others keep the key at its threshold).
        #[arg(long)]
        onto: Option<NodeId>,
        /// Seconds to wait for the operators' approval of the drain.
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// Once nothing is left on it, propose its removal.
        #[arg(long, conflicts_with = "cancel")]
        remove: bool,
        /// Stop draining it instead (what moved stays moved); needs the
        /// operators' approval like the drain.
        #[arg(long, conflicts_with = "onto")]
        cancel: bool,
    },
    /// Print a join code for a new node (`keyquorum node --join URL
    /// --join-code CODE`): the fingerprint of the members, the cluster's
    /// genesis and largest threshold, once a majority of the voters list
    /// the same (each asked at its address, trusted by the CA file). It
    /// goes stale when the members change.
    JoinCode {
        /// Rest on the one node's word when the others cannot be reached
        /// from here (a warning names them).
        #[arg(long)]
        trust_one: bool,
    },
    /// The requests to join the node holds (each signature checked here).
    Joins,
    /// Propose adding a node that asked to join, with exactly the keys of
    /// its signed request; it joins once the operator quorum approves.
    Join {
        /// Its id.
        id: NodeId,
        /// Its identity key, all 64 hex digits, as the new node printed it
        /// (`keyquorum node identity` on its machine): what the operators
        /// vouch for.
        #[arg(long)]
        identity: String,
        /// Keep it a non-voting learner.
        #[arg(long)]
        learner: bool,
        /// As for `join-code`: the members its request was made for are
        /// checked with one node's word only.
        #[arg(long)]
        trust_one: bool,
    },
}
