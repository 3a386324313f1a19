//! `keyquorum he`: computation on encrypted data. Values are encrypted and
//! proved here; the cluster adds them up under a key no machine holds, and
//! a quorum of members decrypts only the sum, each share with a proof.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use keyquorum_client::he::{statement, verify_transcript};
use keyquorum_client::Client;
use keyquorum_wire::he::{
    CreateHeSessionRequest, HeOp, HeSessionInfo, HeTranscript, SubmitInputRequest,
};
use keyquorum_wire::{Hex, NodeId};
use serde_json::json;

use crate::cluster::print_json;

/// The computation a session is fixed to.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum OpArg {
    /// Slot-wise sum.
    Sum,
    /// Number of accepted inputs (no decryption).
    Count,
    /// Slot-wise sum of each input times its public weight.
    Weighted,
}

#[derive(Subcommand, Debug)]
pub(crate) enum HeCommand {
    /// Sessions: create, list, show.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Encrypt values here and submit them, or submit a ciphertext made
    /// elsewhere.
    Submit {
        /// Session name.
        name: String,
        /// One value per slot, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            conflicts_with = "ciphertext",
            required_unless_present = "ciphertext"
        )]
        value: Option<Vec<u64>>,
        /// A ciphertext (hex, 64 bytes per slot) made elsewhere.
        #[arg(long)]
        ciphertext: Option<String>,
        /// Its proof (hex), as the session's policy asks.
        #[arg(long, requires = "ciphertext")]
        proof: Option<String>,
        /// The session public key you expect (hex, as `he session create`
        /// printed it): refused if the node names another.
        #[arg(long)]
        public_key: Option<String>,
        /// With --ciphertext: the index the input takes (sessions weighted
        /// per index require it).
        #[arg(long, requires = "ciphertext")]
        index: Option<u64>,
    },
    /// Close a session: no more inputs. The request states the inputs the
    /// node shows (count and hash chain); it applies only on exactly those.
    Close {
        /// Session name.
        name: String,
        /// The number of inputs you expect it to hold (refused otherwise:
        /// the node you ask could show you fewer).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Decrypt a closed session (the first call) or show its result; the
    /// transcript is re-checked here before the values are printed.
    Result {
        /// Session name.
        name: String,
        /// The number of inputs you expect it to hold.
        #[arg(long)]
        count: Option<u64>,
        /// The session public key you expect (hex): the transcript is
        /// checked against it.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Reshare a session's key to a new threshold and members, during the
    /// session (the public key and the inputs stay; a changed threshold or
    /// member set needs the operators' approval: `keyquorum key policy`).
    Reshare {
        /// Session name.
        name: String,
        /// New threshold.
        #[arg(long)]
        threshold: u16,
        /// New members, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<NodeId>,
    },
    /// Re-check a session from public data alone: every input's proof, the
    /// aggregate, every decryption share's proof and the result.
    Verify {
        /// Session name (fetched from the cluster).
        #[arg(required_unless_present = "transcript")]
        name: Option<String>,
        /// A transcript file (`he transcript NAME --json`), checked offline.
        #[arg(long, conflicts_with = "name")]
        transcript: Option<PathBuf>,
        /// The session public key you expect (hex): pin it.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Print a session's public record (JSON).
    Transcript {
        /// Session name.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum SessionCommand {
    /// Create a session: a DKG for its key among its members, and its
    /// policy fixed for good.
    Create {
        /// Session name.
        name: String,
        /// Members that must cooperate to decrypt (default: the cluster's).
        #[arg(long)]
        threshold: Option<u16>,
        /// Members, comma-separated (default: every voter).
        #[arg(long, value_delimiter = ',')]
        members: Option<Vec<NodeId>>,
        /// Values per input.
        #[arg(long, default_value_t = 1)]
        slots: u16,
        /// Input proofs: none, knowledge or range:BITS.
        #[arg(long, default_value = "knowledge")]
        inputs: String,
        /// Bound (bits) on each slot's aggregate (at most 48).
        #[arg(long, default_value_t = 32)]
        bound: u8,
        /// The computation.
        #[arg(long, value_enum, default_value_t = OpArg::Sum)]
        op: OpArg,
        /// `weighted`: the weight of each input by index, comma-separated.
        #[arg(long, value_delimiter = ',')]
        weights: Option<Vec<u64>>,
        /// `weighted`: CLIENT=WEIGHT for each submitter (repeat).
        #[arg(long = "submitter-weight")]
        submitter_weights: Vec<String>,
        /// Clients that may submit (default: any client), comma-separated.
        #[arg(long, value_delimiter = ',')]
        submitters: Option<Vec<String>>,
        /// At most one input per client.
        #[arg(long)]
        one_per_client: bool,
        /// Clients that may close it and read its result besides you.
        #[arg(long, value_delimiter = ',')]
        readers: Vec<String>,
        /// Fewest inputs it may be closed with.
        #[arg(long, default_value_t = 1)]
        min_inputs: u64,
        /// A binary measurement (hex, as `keyquorum status --json` shows
        /// each node's) the members must have stated; repeat for each
        /// allowed build (default: any).
        #[arg(long = "measurement")]
        measurements: Vec<String>,
    },
    /// List sessions.
    List,
    /// Show a session.
    Show {
        /// Session name.
        name: String,
    },
}

fn info_json(i: &HeSessionInfo) -> serde_json::Value {
    json!({
        "name": i.name,
        "public_key": i.public_key.to_string(),
        "id": i.id.to_string(),
        "threshold": i.threshold,
        "members": i.members,
        "epoch": i.epoch,
        "slots": i.slots,
        "inputs": i.inputs,
        "bound": i.bound,
        "op": i.op,
        "status": i.status,
        "count": i.count,
        "inputs_hash": i.inputs_hash.to_string(),
        "min_inputs": i.min_inputs,
        "measurements": i.measurements,
    })
}

fn print_info(i: &HeSessionInfo, json: bool) -> Result<()> {
    if json {
        return print_json(&info_json(i));
    }
    println!(
        "{}: {:?}, {} inputs; {}-of-{:?} (epoch {}); {} slot(s), inputs {}, bound {} bits, {:?}\n  public key {}",
        i.name, i.status, i.count, i.threshold, i.members, i.epoch, i.slots, i.inputs, i.bound,
        i.op, i.public_key
    );
    Ok(())
}

/// Refused unless the session holds `count` inputs (when given).
fn expect_count(info: &HeSessionInfo, count: Option<u64>) -> Result<()> {
    if let Some(n) = count {
        if info.count != n {
            bail!(
                "session {} holds {} inputs as this node shows it, not the {n} you expect",
                info.name,
                info.count
            );
        }
    }
    Ok(())
}

fn hex_arg(what: &str, s: &str) -> Result<Vec<u8>> {
    hex::decode(s.trim()).with_context(|| format!("{what} is not hex"))
}

fn pinned(key: Option<&str>) -> Result<Option<[u8; 32]>> {
    key.map(|k| {
        hex_arg("--public-key", k)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("--public-key is 32 bytes"))
    })
    .transpose()
}

/// Run `keyquorum he ...`.
pub(crate) async fn run(c: &Client, command: HeCommand, json: bool) -> Result<()> {
    match command {
        HeCommand::Session(SessionCommand::Create {
            name,
            threshold,
            members,
            slots,
            inputs,
            bound,
            op,
            weights,
            submitter_weights,
            submitters,
            one_per_client,
            readers,
            min_inputs,
            measurements,
        }) => {
            let measurements = measurements
                .iter()
                .map(|m| {
                    let b: [u8; 32] = hex_arg("--measurement", m)?
                        .try_into()
                        .map_err(|_| anyhow::anyhow!("a measurement is 32 bytes"))?;
                    Ok(keyquorum_wire::Hex32(b))
                })
                .collect::<Result<Vec<_>>>()?;
            let by_submitter: BTreeMap<String, u64> = submitter_weights
                .iter()
                .map(|s| {
                    let (who, w) = s
                        .split_once('=')
                        .context("--submitter-weight is CLIENT=WEIGHT")?;
                    Ok((
                        who.to_string(),
                        w.parse().context("a weight is an integer")?,
                    ))
                })
                .collect::<Result<_>>()?;
            let info = c
                .he_create(&CreateHeSessionRequest {
                    name,
                    threshold,
                    members,
                    slots: Some(slots),
                    inputs: Some(inputs),
                    bound: Some(bound),
                    op: Some(match op {
                        OpArg::Sum => HeOp::Sum,
                        OpArg::Count => HeOp::Count,
                        OpArg::Weighted => HeOp::Weighted,
                    }),
                    weights,
                    submitter_weights: (!by_submitter.is_empty()).then_some(by_submitter),
                    submitters,
                    one_per_client,
                    readers,
                    min_inputs: Some(min_inputs),
                    measurements: (!measurements.is_empty()).then_some(measurements),
                })
                .await?;
            print_info(&info, json)
        }
        HeCommand::Session(SessionCommand::List) => {
            let list = c.he_sessions().await?;
            if json {
                return print_json(&json!({
                    "sessions": list.sessions.iter().map(info_json).collect::<Vec<_>>()
                }));
            }
            for i in &list.sessions {
                print_info(i, false)?;
            }
            Ok(())
        }
        HeCommand::Session(SessionCommand::Show { name }) => {
            print_info(&c.he_session(&name).await?, json)
        }
        HeCommand::Submit {
            name,
            value,
            ciphertext,
            proof,
            public_key,
            index,
        } => {
            let pin = pinned(public_key.as_deref())?;
            let r = match (value, ciphertext) {
                (Some(values), _) => {
                    if pin.is_none() {
                        eprintln!(
                            "note: the session public key was not pinned (--public-key): the \
                             values are encrypted under the key the node names"
                        );
                    }
                    c.he_submit(&name, &values, pin.as_ref()).await?
                }
                (None, Some(ct)) => {
                    let input = SubmitInputRequest {
                        index,
                        ciphertext: Hex(hex_arg("--ciphertext", &ct)?),
                        proof: Hex(proof
                            .map(|p| hex_arg("--proof", &p))
                            .transpose()?
                            .unwrap_or_default()),
                    };
                    c.he_submit_raw(&name, &input).await?
                }
                (None, None) => bail!("give --value or --ciphertext"),
            };
            if json {
                print_json(&json!({ "index": r.index }))
            } else {
                println!("input {} accepted", r.index);
                Ok(())
            }
        }
        HeCommand::Close { name, count } => {
            let info = c.he_session(&name).await?;
            expect_count(&info, count)?;
            print_info(&c.he_close_at(&name, &statement(&info)).await?, json)
        }
        HeCommand::Result {
            name,
            count,
            public_key,
        } => {
            let info = c.he_session(&name).await?;
            expect_count(&info, count)?;
            let r = c.he_result_at(&name, &statement(&info)).await?;
            let pin = pinned(public_key.as_deref())?;
            let checked = verify_transcript(&r.transcript, pin.as_ref())
                .with_context(|| format!("the result of {name} does not verify"))?;
            if checked.values.as_ref() != Some(&r.values) {
                bail!("the node's values are not its transcript's");
            }
            if json {
                print_json(&json!({
                    "values": r.values,
                    "transcript": serde_json::to_value(&r.transcript)?,
                }))
            } else {
                println!(
                    "{name}: {:?} ({} inputs)",
                    r.values, r.transcript.progress.count
                );
                Ok(())
            }
        }
        HeCommand::Reshare {
            name,
            threshold,
            members,
        } => {
            let k = c.he_reshare(&name, threshold, &members).await?;
            if json {
                print_json(&json!({
                    "name": name,
                    "threshold": k.threshold,
                    "members": k.members,
                    "epoch": k.epoch,
                    "public_key": k.public_key.to_string(),
                }))
            } else {
                println!(
                    "{name}: key reshared to {}-of-{:?} (epoch {}); public key unchanged",
                    k.threshold, k.members, k.epoch
                );
                Ok(())
            }
        }
        HeCommand::Transcript { name } => {
            print_json(&serde_json::to_value(c.he_transcript(&name).await?)?)
        }
        HeCommand::Verify {
            name,
            transcript,
            public_key,
        } => {
            let t: HeTranscript = match (name, transcript) {
                (_, Some(path)) => {
                    let text = std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let v: serde_json::Value = serde_json::from_slice(&text)
                        .with_context(|| format!("{} is not JSON", path.display()))?;
                    // A `he result --json` output holds it under "transcript".
                    serde_json::from_value(v.get("transcript").cloned().unwrap_or(v))
                        .context("not a session transcript")?
                }
                (Some(name), None) => c.he_transcript(&name).await?,
                (None, None) => bail!("give a session name or --transcript FILE"),
            };
            let pin = pinned(public_key.as_deref())?;
            match verify_transcript(&t, pin.as_ref()) {
                Ok(v) => {
                    if json {
                        print_json(&json!({
                            "valid": true,
                            "inputs": v.inputs,
                            "values": v.values,
                            "public_key_pinned": pin.is_some(),
                        }))
                    } else {
                        if pin.is_none() {
                            eprintln!(
                                "note: the session public key was not pinned (--public-key): \
                                 checked against the transcript's own"
                            );
                        }
                        let result = v
                            .values
                            .as_ref()
                            .map_or_else(|| "not decrypted yet".to_string(), |x| format!("{x:?}"));
                        println!(
                            "{}: valid: {} inputs, result {result}",
                            t.session.name, v.inputs
                        );
                        Ok(())
                    }
                }
                Err(e) => {
                    if json {
                        print_json(&json!({ "valid": false, "fault": e.to_string() }))?;
                    }
                    bail!("session {} does not verify: {e}", t.session.name)
                }
            }
        }
    }
}
