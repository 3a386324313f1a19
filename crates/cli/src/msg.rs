//! `keyquorum msg`: messaging endpoints. Each endpoint's secrets (Ed25519
//! identity, one-time prekey secrets) live in `DIR/NAME.kqe`, a file sealed
//! like the node vault under `KEYQUORUM_ENDPOINT_PASSPHRASE`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use keyquorum_client::msg::Endpoint;
use keyquorum_client::Client;
use keyquorum_core::msgkey::Mode;
use keyquorum_store::vault::KdfParams;
use keyquorum_store::Passphrase;
use keyquorum_wire::msg::EndpointInfo;
use keyquorum_wire::NodeId;
use serde_json::json;

use crate::cluster::{print_json, write_secret_file};

/// Where endpoint files are and how they are unlocked.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct EndpointFiles {
    /// Directory of endpoint files (`NAME.kqe`).
    #[arg(
        long,
        env = "KEYQUORUM_ENDPOINT_DIR",
        default_value = "keyquorum-endpoints"
    )]
    endpoint_dir: PathBuf,
    /// Passphrase sealing the endpoint files.
    #[arg(
        long,
        env = "KEYQUORUM_ENDPOINT_PASSPHRASE",
        hide_env_values = true,
        default_value = ""
    )]
    endpoint_passphrase: String,
}

impl EndpointFiles {
    fn path(&self, name: &str) -> Result<PathBuf> {
        keyquorum_node::names::check_name(name).map_err(|_| {
            anyhow::anyhow!("endpoint names are 1-64 characters from [A-Za-z0-9._-]")
        })?;
        Ok(self.endpoint_dir.join(format!("{name}.kqe")))
    }

    fn passphrase(&self) -> Result<Passphrase> {
        if self.endpoint_passphrase.is_empty() {
            bail!("set KEYQUORUM_ENDPOINT_PASSPHRASE (seals the endpoint files; see <data-dir>/client.env)");
        }
        Ok(Passphrase::new(
            self.endpoint_passphrase.clone().into_bytes(),
        ))
    }

    fn open(&self, name: &str) -> Result<Endpoint> {
        let path = self.path(name)?;
        Endpoint::open(&path, &self.passphrase()?)
            .with_context(|| format!("opening endpoint {name} ({})", path.display()))
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum MsgCommand {
    /// Endpoints: create, show, revoke.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Send a message from an endpoint of yours to another endpoint.
    Send {
        /// Sending endpoint (its file must be here).
        #[arg(long)]
        from: String,
        /// Receiving endpoint.
        #[arg(long)]
        to: String,
        /// The message from a file.
        #[arg(long, conflicts_with = "text", required_unless_present = "text")]
        file: Option<PathBuf>,
        /// The message as text.
        #[arg(long)]
        text: Option<String>,
        /// Coordinators per message (more survive lost nodes).
        #[arg(long, default_value_t = 1)]
        coordinators: u16,
        /// How coordinators confirm.
        #[arg(long, value_enum, default_value_t = ModeArg::Verify)]
        mode: ModeArg,
    },
    /// Take every waiting message for an endpoint of yours, open each, and
    /// remove them from the mailbox.
    Receive {
        /// Receiving endpoint (its file must be here).
        #[arg(long = "as")]
        name: String,
        /// Also write each message to `DIR/ID` (ID: its identifier; mode 0600).
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum EndpointCommand {
    /// Make an identity, seal it in DIR/NAME.kqe, register it and publish
    /// one-time prekeys.
    Create {
        /// Endpoint name.
        name: String,
        /// Prekeys to publish (each message to it uses one).
        #[arg(long, default_value_t = 64)]
        prekeys: usize,
    },
    /// Show an endpoint.
    Show {
        /// Endpoint name.
        name: String,
    },
    /// Revoke an endpoint (it neither sends nor receives again).
    Revoke {
        /// Endpoint name.
        name: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum ModeArg {
    /// Coordinators check shares and confirm H(k·G ‖ id) without learning k.
    Verify,
    /// Coordinators rebuild k and confirm H(session key): they are trusted
    /// with the key.
    Reconstruct,
}

fn endpoint_json(e: &EndpointInfo) -> serde_json::Value {
    json!({
        "name": e.record.name,
        "identity": e.record.identity.to_string(),
        "owner": e.record.owner,
        "revoked": e.record.revoked,
        "prekeys_available": e.prekeys_available,
        "mailbox": e.mailbox,
    })
}

fn print_endpoint(e: &EndpointInfo, json: bool) -> Result<()> {
    if json {
        return print_json(&endpoint_json(e));
    }
    println!(
        "{}  identity {}  owner {}{}\n  prekeys available {}  mailbox {}",
        e.record.name,
        e.record.identity,
        e.record.owner,
        if e.record.revoked { "  REVOKED" } else { "" },
        e.prekeys_available,
        e.mailbox
    );
    Ok(())
}

pub(crate) async fn run(
    c: &Client,
    files: &EndpointFiles,
    command: MsgCommand,
    json: bool,
) -> Result<()> {
    match command {
        MsgCommand::Endpoint(EndpointCommand::Create { name, prekeys }) => {
            let path = files.path(&name)?;
            if path.exists() {
                bail!("{} exists already", path.display());
            }
            keyquorum_node::config::create_private_dir(&files.endpoint_dir)?;
            let e = Endpoint::create(&path, &files.passphrase()?, KdfParams::default(), &name)?;
            let info = match e.register(c, prekeys.clamp(1, 200)).await {
                Ok(i) => i,
                Err(err) => {
                    // Not registered: leave no orphan file behind.
                    drop(e);
                    let _ = std::fs::remove_file(&path);
                    return Err(err.into());
                }
            };
            print_endpoint(&info, json)?;
            if !json {
                println!("  secrets sealed in {}", path.display());
            }
            Ok(())
        }
        MsgCommand::Endpoint(EndpointCommand::Show { name }) => {
            print_endpoint(&c.endpoint(&name).await?, json)
        }
        MsgCommand::Endpoint(EndpointCommand::Revoke { name }) => {
            print_endpoint(&c.revoke_endpoint(&name).await?, json)
        }
        MsgCommand::Send {
            from,
            to,
            file,
            text,
            coordinators,
            mode,
        } => {
            let content = match (file, text) {
                (Some(f), _) => {
                    std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?
                }
                (None, Some(t)) => t.into_bytes(),
                (None, None) => bail!("give --file or --text"),
            };
            let e = files.open(&from)?;
            let d = c.msg_deployment().await?;
            let mode = match mode {
                ModeArg::Verify => Mode::VerifyInTheExponent,
                ModeArg::Reconstruct => Mode::CoordinatorReconstructs,
            };
            let r = e.send(c, &d, &to, &content, coordinators, mode).await?;
            let confirmed: Vec<NodeId> = r.confirmations.iter().map(|k| k.node).collect();
            if json {
                print_json(&json!({
                    "id": r.id.to_string(),
                    "from": from,
                    "to": to,
                    "bytes": content.len(),
                    "confirmed_by": confirmed,
                    "unreachable": r.unreachable,
                }))
            } else {
                println!(
                    "sent {} bytes {from} → {to}\n  id {}\n  confirmed by node(s) {confirmed:?}{}",
                    content.len(),
                    r.id,
                    if r.unreachable.is_empty() {
                        String::new()
                    } else {
                        format!("; unreachable {:?}", r.unreachable)
                    }
                );
                Ok(())
            }
        }
        MsgCommand::Receive { name, out_dir } => {
            let e = files.open(&name)?;
            let d = c.msg_deployment().await?;
            let got = e.receive(c, &d).await?;
            let mut rows = Vec::new();
            let mut failed = 0usize;
            for r in &got {
                match &r.content {
                    Ok(content) => {
                        if let Some(dir) = &out_dir {
                            write_secret_file(&dir.join(r.id.to_string()), content)?;
                        }
                        let text = std::str::from_utf8(content).ok();
                        if json {
                            rows.push(json!({
                                "id": r.id.to_string(),
                                "from": r.from,
                                "text": text,
                                "content_hex": if text.is_none() { Some(hex::encode(content.as_slice())) } else { None },
                            }));
                        } else {
                            println!("from {}  id {}", r.from, r.id);
                            match text {
                                Some(t) => println!("  {t}"),
                                None => println!("  ({} bytes, not text)", content.len()),
                            }
                        }
                    }
                    Err(err) => {
                        failed += 1;
                        if json {
                            rows.push(json!({"id": r.id.to_string(), "from": r.from, "error": err.to_string()}));
                        } else {
                            println!("from {}  id {}\n  REFUSED: {err}", r.from, r.id);
                        }
                    }
                }
            }
            if json {
                print_json(&json!({ "endpoint": name, "messages": rows }))?;
            } else if got.is_empty() {
                println!("no messages for {name}");
            }
            if failed > 0 {
                bail!("{failed} message(s) refused");
            }
            Ok(())
        }
    }
}
