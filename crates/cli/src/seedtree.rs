//! `keyquorum seedtree`: the federated hash-based signing tree. One
//! RFC 8554 HSS public key built in subtrees by the members; each
//! signature uses a fresh leaf whose key is rebuilt here, from shares the
//! members seal to this process, and used once.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use keyquorum_client::seedtree::verify;
use keyquorum_client::Client;
use keyquorum_wire::seedtree::{CreateSeedtreeRequest, SeedtreeInfo};
use keyquorum_wire::NodeId;
use serde_json::json;

use crate::cluster::print_json;

#[derive(Subcommand, Debug)]
pub(crate) enum SeedtreeCommand {
    /// Create a tree: the members commit to and reveal its identifier,
    /// build its subtrees in parallel and keep a share of every leaf.
    Create {
        /// Tree name.
        name: String,
        /// LMS height: 5, 10, 15 or 20 (2^height signatures).
        #[arg(long)]
        height: u8,
        /// Winternitz parameter: 1, 2, 4 or 8.
        #[arg(long, default_value_t = 4)]
        winternitz: u8,
        /// Subtrees built in parallel (a power of two; default: the
        /// smallest at least the member count).
        #[arg(long)]
        subtrees: Option<u32>,
        /// Members that must release a leaf (default: the cluster's).
        #[arg(long)]
        threshold: Option<u16>,
        /// Members (default: every voter), comma-separated.
        #[arg(long, value_delimiter = ',')]
        members: Option<Vec<NodeId>>,
    },
    /// Sign a message with a fresh leaf (the leaf's key is rebuilt here,
    /// used once and erased; the signature is checked before it is shown).
    Sign {
        /// Tree name.
        name: String,
        /// The message, hex.
        #[arg(long)]
        message_hex: String,
        /// The public key you expect (hex, as `create` printed it).
        #[arg(long)]
        public_key: Option<String>,
    },
    /// A tree's public key, members, builders and remaining leaves.
    Status {
        /// Tree name.
        name: String,
    },
    /// Check an RFC 8554 HSS signature under a tree's public key (here,
    /// not on the cluster).
    Verify {
        /// Tree name.
        name: String,
        /// The message, hex.
        #[arg(long)]
        message_hex: String,
        /// The signature, hex.
        #[arg(long)]
        signature: String,
        /// The public key (hex; default: the tree's, as a node shows it).
        #[arg(long)]
        public_key: Option<String>,
    },
}

fn hex_arg(what: &str, s: &str) -> Result<Vec<u8>> {
    hex::decode(s.trim()).with_context(|| format!("{what} is not hex"))
}

fn info_json(i: &SeedtreeInfo) -> serde_json::Value {
    let builders: serde_json::Map<String, serde_json::Value> = i
        .builders
        .iter()
        .enumerate()
        .map(|(s, n)| (s.to_string(), json!(u64::from(*n))))
        .collect();
    json!({
        "name": i.name,
        "public_key": hex::encode(&i.public_key.0),
        "height": i.height,
        "winternitz": i.winternitz,
        "subtrees": i.subtrees,
        "capacity": i.capacity,
        "reserved": i.reserved,
        "remaining": i.remaining,
        "threshold": i.threshold,
        "members": i.members.iter().map(|m| u64::from(*m)).collect::<Vec<_>>(),
        "lock_quorum": i.lock_quorum,
        "builders": builders,
        "epoch": i.epoch,
        "first": i.first,
    })
}

/// Await `create` behind a progress bar of the key generation of `name`:
/// the chunks of leaf shares the members stored out of all they store.
async fn with_progress<T>(
    c: &Client,
    name: &str,
    json_out: bool,
    create: impl std::future::Future<Output = T>,
) -> T {
    if json_out || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return create.await;
    }
    let pb = indicatif::ProgressBar::new(1);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {percent}% ({elapsed}, about {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message("committing to the identifier");
    pb.enable_steady_tick(std::time::Duration::from_millis(100));
    tokio::pin!(create);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    let out = loop {
        tokio::select! {
            out = &mut create => break out,
            _ = tick.tick() => {
                if let Ok(p) = c.seedtree_progress(name).await {
                    pb.set_length(p.chunks_total.max(1));
                    pb.set_position(p.chunks.min(p.chunks_total));
                    pb.set_message(match p.phase.as_str() {
                        "identifier" => "committing to the identifier".to_string(),
                        "building" => format!(
                            "building and dealing ({} of {} subtree roots)",
                            p.roots, p.subtrees
                        ),
                        "endorsing" => "the members check and endorse".to_string(),
                        other => other.to_string(),
                    });
                }
            }
        }
    };
    pb.finish_and_clear();
    out
}

pub(crate) async fn run(c: &Client, command: SeedtreeCommand, json_out: bool) -> Result<()> {
    match command {
        SeedtreeCommand::Create {
            name,
            height,
            winternitz,
            subtrees,
            threshold,
            members,
        } => {
            let req = CreateSeedtreeRequest {
                name,
                height,
                winternitz,
                subtrees,
                threshold,
                members,
            };
            // The members build in parallel; a progress bar meanwhile
            // (none with --json or off a terminal), fed by the node the
            // request went to.
            let info =
                with_progress(c, &req.name.clone(), json_out, c.seedtree_create(&req)).await?;
            if json_out {
                print_json(&info_json(&info))
            } else {
                println!(
                    "tree {}: {} one-time keys, {} subtrees\npublic key {}",
                    info.name,
                    info.capacity,
                    info.subtrees,
                    hex::encode(&info.public_key.0)
                );
                Ok(())
            }
        }
        SeedtreeCommand::Sign {
            name,
            message_hex,
            public_key,
        } => {
            let message = hex_arg("--message-hex", &message_hex)?;
            let pinned = public_key
                .map(|k| hex_arg("--public-key", &k))
                .transpose()?;
            let s = c.seedtree_sign(&name, &message, pinned.as_deref()).await?;
            if json_out {
                print_json(&json!({
                    "signature": hex::encode(&s.signature.0),
                    "leaf": s.leaf,
                }))
            } else {
                println!("leaf {}\n{}", s.leaf, hex::encode(&s.signature.0));
                Ok(())
            }
        }
        SeedtreeCommand::Status { name } => {
            let info = c.seedtree(&name).await?;
            if json_out {
                print_json(&info_json(&info))
            } else {
                println!(
                    "tree {}: H={} W={}, {} subtrees, {}-of-{} (lock quorum {}), {} of {} leaves left",
                    info.name,
                    info.height,
                    info.winternitz,
                    info.subtrees,
                    info.threshold,
                    info.members.len(),
                    info.lock_quorum,
                    info.remaining,
                    info.capacity
                );
                Ok(())
            }
        }
        SeedtreeCommand::Verify {
            name,
            message_hex,
            signature,
            public_key,
        } => {
            let message = hex_arg("--message-hex", &message_hex)?;
            let signature = hex_arg("--signature", &signature)?;
            let pk = match public_key {
                Some(k) => hex_arg("--public-key", &k)?,
                None => c.seedtree(&name).await?.public_key.0,
            };
            let valid = verify(&pk, &message, &signature);
            if json_out {
                print_json(&json!({ "valid": valid }))?;
            } else {
                println!("{}", if valid { "valid" } else { "invalid" });
            }
            if !valid {
                bail!("the signature does not verify under {name}'s public key");
            }
            Ok(())
        }
    }
}
