//! `keyquorum oprf`: the threshold VOPRF service (RFC 9497,
//! ristretto255-SHA512). A key made by DKG; `t` members answer each
//! blinded input together with one proof under the key's public key,
//! checked here by an ordinary RFC 9497 client before the output is shown.

use anyhow::{Context, Result};
use clap::Subcommand;
use keyquorum_client::Client;
use keyquorum_wire::api::KeyInfo;
use keyquorum_wire::oprf::CreateOprfKeyRequest;
use keyquorum_wire::NodeId;
use serde_json::json;

use crate::cluster::print_json;

#[derive(Subcommand, Debug)]
pub(crate) enum OprfCommand {
    /// OPRF keys.
    #[command(subcommand)]
    Key(OprfKeyCommand),
    /// The PRF output of an input: blinded here, evaluated by the members,
    /// the proof checked here, unblinded.
    Evaluate {
        /// Key name.
        name: String,
        /// The input, hex (1 to 65535 bytes).
        #[arg(long)]
        input_hex: String,
        /// The key's public key (hex, as `oprf key create` printed it):
        /// the answer's proof is checked against it, so a node cannot
        /// answer with a key of its own.
        #[arg(long)]
        public_key: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum OprfKeyCommand {
    /// Create a key by distributed key generation among the members.
    Create {
        /// Key name.
        name: String,
        /// Members that answer together (default: the cluster's).
        #[arg(long)]
        threshold: Option<u16>,
        /// Members (default: every voter), comma-separated.
        #[arg(long, value_delimiter = ',')]
        members: Option<Vec<NodeId>>,
    },
    /// A key's public key, threshold and members.
    Show {
        /// Key name.
        name: String,
    },
    /// Every OPRF key.
    List,
}

fn info_json(k: &KeyInfo) -> serde_json::Value {
    json!({
        "name": k.name,
        "public_key": hex::encode(&k.public_key.0),
        "threshold": k.threshold,
        "members": k.members.iter().map(|m| u64::from(*m)).collect::<Vec<_>>(),
        "epoch": k.epoch,
    })
}

fn print_info(k: &KeyInfo) {
    println!(
        "oprf key {}: {}-of-{} (members {:?}), generation {}\npublic key {}",
        k.name,
        k.threshold,
        k.members.len(),
        k.members,
        k.epoch,
        hex::encode(&k.public_key.0)
    );
}

pub(crate) async fn run(c: &Client, command: OprfCommand, json_out: bool) -> Result<()> {
    match command {
        OprfCommand::Key(OprfKeyCommand::Create {
            name,
            threshold,
            members,
        }) => {
            let k = c
                .oprf_create(&CreateOprfKeyRequest {
                    name,
                    threshold,
                    members,
                })
                .await?;
            if json_out {
                print_json(&info_json(&k))
            } else {
                print_info(&k);
                Ok(())
            }
        }
        OprfCommand::Key(OprfKeyCommand::Show { name }) => {
            let k = c.oprf_key(&name).await?;
            if json_out {
                print_json(&info_json(&k))
            } else {
                print_info(&k);
                Ok(())
            }
        }
        OprfCommand::Key(OprfKeyCommand::List) => {
            let keys = c.oprf_keys().await?.keys;
            if json_out {
                print_json(&json!({ "keys": keys.iter().map(info_json).collect::<Vec<_>>() }))
            } else {
                for k in &keys {
                    print_info(k);
                }
                Ok(())
            }
        }
        OprfCommand::Evaluate {
            name,
            input_hex,
            public_key,
        } => {
            let input = hex::decode(input_hex.trim()).context("--input-hex is not hex")?;
            let pinned = hex::decode(public_key.trim()).context("--public-key is not hex")?;
            let e = c.oprf_evaluate(&name, &input, &pinned).await?;
            if json_out {
                print_json(&json!({
                    "output": hex::encode(&*e.output),
                    "members": e.members.iter().map(|m| u64::from(*m)).collect::<Vec<_>>(),
                    "epoch": e.epoch,
                }))
            } else {
                println!("{}", hex::encode(&*e.output));
                Ok(())
            }
        }
    }
}
