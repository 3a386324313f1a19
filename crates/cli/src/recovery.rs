//! `keyquorum recovery`: credential guardians (issue #20). Enrol an
//! account (its device key pair is made here and the secret written to a
//! 0600 file), open a reset request, read the `app` inbox, and assemble
//! the reset token from the fragments with the device key, checked
//! against the pinned reset public key.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use keyquorum_client::recovery::{assemble_reset, ResetClaim};
use keyquorum_client::Client;
use keyquorum_core::oprf::reset::{DeviceSecret, Fragment};
use keyquorum_wire::recovery::{
    AccountInfo, CreateAccountRequest, ResetRequest, RotateAccountRequest,
};
use keyquorum_wire::Hex32;
use serde_json::json;

use crate::cluster::{print_json, write_secret_file};

#[derive(Subcommand, Debug)]
pub(crate) enum RecoveryCommand {
    /// Accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Reset tokens.
    #[command(subcommand)]
    Reset(ResetCommand),
    /// The account's `app` channel: fragments of its live reset requests
    /// (each marked whether it opens with the device key).
    Inbox {
        /// The account.
        account: String,
        /// The device's secret key file (from `account create`).
        #[arg(long)]
        device_key: PathBuf,
    },
    /// PIN-protected secrets.
    #[command(subcommand)]
    Secret(SecretCommand),
}

#[derive(Subcommand, Debug)]
pub(crate) enum SecretCommand {
    /// Register a secret (at most 128 bytes) under a PIN (an admin, or the
    /// client that enrolled the account). Prints the PIN key's public key:
    /// keep it, `recover` pins it.
    Register {
        /// The account.
        account: String,
        /// A file holding the PIN (one line; the newline is dropped).
        #[arg(long)]
        pin_file: PathBuf,
        /// A file holding the secret.
        #[arg(long)]
        secret_file: PathBuf,
        /// Wrong guesses allowed before the secret is destroyed (1-255).
        #[arg(long, default_value_t = keyquorum_core::oprf::pin::DEFAULT_GUESSES)]
        guesses: u16,
        /// Replace the account's current record (live or destroyed) with
        /// this one, on a new PIN key on the account's guardians of the
        /// day (apply rules 16). Without it, an account with a record is
        /// refused.
        #[arg(long)]
        again: bool,
        #[command(flatten)]
        expect: Expect,
    },
    /// Move the secret onto the account's guardians of the day (after a
    /// rotation or a drain), knowing its PIN: recover it (one counted
    /// guess), then register it again under the same PIN (apply rules 16).
    /// The new PIN key is used only on the guardians given with
    /// `--identity` and `--threshold` (required: the recovery pinned a key,
    /// the move does not fall back to trusting a node). Prints the new PIN
    /// key: pin it from then on.
    Move {
        /// The account.
        account: String,
        /// A file holding the PIN (one line; the newline is dropped).
        #[arg(long)]
        pin_file: PathBuf,
        /// The current PIN key's public key (hex), as for `recover`.
        #[arg(long)]
        pin_key: String,
        /// Wrong guesses allowed before the secret is destroyed (1-255),
        /// for the new record (never read from a node's answer).
        #[arg(long, default_value_t = keyquorum_core::oprf::pin::DEFAULT_GUESSES)]
        guesses: u16,
        #[command(flatten)]
        expect: Expect,
    },
    /// Recover the secret with the PIN (one counted guess). A wrong PIN
    /// prints the guesses left and exits non-zero.
    Recover {
        /// The account.
        account: String,
        /// A file holding the PIN (one line; the newline is dropped).
        #[arg(long)]
        pin_file: PathBuf,
        /// Where to write the secret (created 0600; must not exist).
        #[arg(long)]
        out: PathBuf,
        /// The PIN key's public key (hex, as `register` printed it): the
        /// evaluation is checked against it, so a node cannot substitute a
        /// key of its own and test PINs offline.
        #[arg(long)]
        pin_key: String,
    },
}

/// The guardians a registration expects its new PIN key on.
#[derive(clap::Args, Debug)]
pub(crate) struct Expect {
    /// A guardian and its identity key, `NODE=HEX` (`keyquorum node
    /// identity` on it); repeat for every guardian of the account, with
    /// `--threshold`: the PIN key is used only on exactly them and once
    /// that many endorse it (without, the node asked is trusted for the
    /// key).
    #[arg(long = "identity", requires = "threshold")]
    identities: Vec<String>,
    /// The account's threshold (as `account create` printed it).
    #[arg(long)]
    threshold: Option<u16>,
}

impl Expect {
    fn guardians(&self) -> Result<Option<keyquorum_client::recovery::ExpectedGuardians>> {
        let guardians = self
            .identities
            .iter()
            .map(|i| {
                let (node, key) = i.split_once('=').context("--identity is NODE=HEX")?;
                Ok((
                    node.parse()
                        .map_err(|e| anyhow::anyhow!("--identity: a node id: {e}"))?,
                    hex32(key, "--identity")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self
            .threshold
            .map(|threshold| keyquorum_client::recovery::ExpectedGuardians {
                guardians,
                threshold,
            }))
    }
}

/// What a registration printed: the record and the PIN key to pin.
fn print_registered(info: &keyquorum_wire::recovery::SecretInfo, json_out: bool) -> Result<()> {
    if json_out {
        print_json(&json!({
            "account": info.account,
            "version": hex::encode(&info.version.0),
            "pin_key": hex::encode(&info.public_key.0),
            "generation": info.generation,
            "guardians": info.guardians.iter().map(|g| u64::from(*g)).collect::<Vec<_>>(),
            "threshold": info.threshold,
            "guesses": info.guesses,
        }))
    } else {
        println!(
            "secret of {} registered: {} guesses, {} of {} guardians; PIN key {} (keep it: \
             recover --pin-key)",
            info.account,
            info.guesses,
            info.threshold,
            info.guardians.len(),
            hex::encode(&info.public_key.0)
        );
        Ok(())
    }
}

fn read_pin(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let mut b = zeroize::Zeroizing::new(
        std::fs::read(path).with_context(|| format!("{}", path.display()))?,
    );
    while b.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
        b.pop();
    }
    if b.is_empty() {
        bail!("{}: the PIN is empty", path.display());
    }
    Ok(b)
}

async fn run_secret(c: &Client, command: SecretCommand, json_out: bool) -> Result<()> {
    use keyquorum_client::recovery::Recovered;
    match command {
        SecretCommand::Register {
            account,
            pin_file,
            secret_file,
            guesses,
            again,
            expect,
        } => {
            let expect = expect.guardians()?;
            let pin = read_pin(&pin_file)?;
            let secret = zeroize::Zeroizing::new(
                std::fs::read(&secret_file)
                    .with_context(|| format!("{}", secret_file.display()))?,
            );
            let cost = keyquorum_core::oprf::pin::Stretch::default();
            let info = if again {
                let old = c.recovery_secret(&account).await?;
                c.recovery_secret_register_again(
                    &old,
                    &pin,
                    &secret,
                    guesses,
                    &cost,
                    expect.as_ref(),
                )
                .await?
            } else {
                c.recovery_secret_register(&account, &pin, &secret, guesses, &cost, expect.as_ref())
                    .await?
            };
            print_registered(&info, json_out)
        }
        SecretCommand::Move {
            account,
            pin_file,
            pin_key,
            guesses,
            expect,
        } => {
            let Some(expect) = expect.guardians()? else {
                bail!(
                    "move needs --identity NODE=HEX for each of the account's guardians of the \
                     day and --threshold T (keyquorum recovery account show; keyquorum node \
                     identity on each)"
                );
            };
            let pin = read_pin(&pin_file)?;
            let pinned = hex32(&pin_key, "--pin-key")?;
            let old = c.recovery_secret(&account).await?;
            let secret = match c.recovery_secret_recover(&account, &pin, &pinned).await? {
                Recovered::Secret(s) => s,
                Recovered::WrongPin { remaining } => {
                    bail!("wrong PIN: {remaining} guesses remaining before the secret is destroyed")
                }
            };
            let cost = keyquorum_core::oprf::pin::Stretch::default();
            let info = c
                .recovery_secret_register_again(&old, &pin, &secret, guesses, &cost, Some(&expect))
                .await?;
            print_registered(&info, json_out)
        }
        SecretCommand::Recover {
            account,
            pin_file,
            out,
            pin_key,
        } => {
            let pin = read_pin(&pin_file)?;
            let pinned = hex32(&pin_key, "--pin-key")?;
            match c.recovery_secret_recover(&account, &pin, &pinned).await? {
                Recovered::Secret(s) => {
                    write_secret_file(&out, &s)?;
                    if json_out {
                        print_json(&json!({"recovered": true, "out": out.display().to_string()}))
                    } else {
                        println!("secret of {account} written to {}", out.display());
                        Ok(())
                    }
                }
                Recovered::WrongPin { remaining } => {
                    if json_out {
                        print_json(&json!({"recovered": false, "guesses_remaining": remaining}))?;
                    }
                    bail!("wrong PIN: {remaining} guesses remaining before the secret is destroyed")
                }
            }
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum AccountCommand {
    /// Enrol an account (a client with the recovery permission, or an
    /// admin): its guardians by rendezvous hashing, its Ed25519 reset key
    /// by DKG among them, its channels, and a device key pair made here.
    Create {
        /// The account (1-58 characters of [A-Za-z0-9._-]).
        account: String,
        /// Number of guardians (default: every voter, at most 5).
        #[arg(long)]
        guardians: Option<u16>,
        /// Guardians that sign a token together (default: the cluster's).
        #[arg(long)]
        threshold: Option<u16>,
        /// A channel: `email:ADDR`, `webhook:URL` or `app`; repeat. Guardians,
        /// by id, take them in order, cycling.
        #[arg(long = "channel", required = true)]
        channels: Vec<String>,
        /// Where to write the device's secret key (hex, a new 0600 file).
        #[arg(long)]
        device_key_out: PathBuf,
        /// An executable's SHA-256 the guardians must run (software
        /// attestation; `keyquorum status --json` shows each node's);
        /// repeat for several builds. Without it, any build.
        #[arg(long = "measurement")]
        measurements: Vec<String>,
    },
    /// Move an account to the guardians rendezvous hashing picks over the
    /// voters now, by resharing its reset key (the reset public key stays).
    Rotate {
        /// The account.
        account: String,
        /// Number of guardians (default: as many as now).
        #[arg(long)]
        guardians: Option<u16>,
        /// Guardians that sign a token together (default: as now).
        #[arg(long)]
        threshold: Option<u16>,
    },
    /// An account's guardians, channels and reset public key.
    Show {
        /// The account.
        account: String,
    },
    /// Every account.
    List,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ResetCommand {
    /// Open a reset request: t guardians each send a fragment over their
    /// channel.
    Request {
        /// The account.
        account: String,
        /// The new credential's hash (32 bytes, hex).
        #[arg(long)]
        credential_hash: String,
        /// Lifetime in seconds (1-3600; default 900).
        #[arg(long)]
        ttl_s: Option<u32>,
    },
    /// Assemble the token from the request's fragments with the device key.
    Assemble {
        /// The account.
        account: String,
        /// The request id (hex, as `reset request` printed it).
        #[arg(long)]
        request: String,
        /// The new credential's hash asked for (hex): the token is refused
        /// unless it signs exactly this.
        #[arg(long)]
        credential_hash: String,
        /// The device's secret key file.
        #[arg(long)]
        device_key: PathBuf,
        /// The account's reset public key (hex, as `account create`
        /// printed it): the token is checked against it, so a node cannot
        /// substitute a key of its own.
        #[arg(long)]
        reset_public_key: String,
        /// A fragment (`KQF1...`); repeat, one per guardian.
        #[arg(long = "fragment", required = true)]
        fragments: Vec<String>,
    },
}

fn read_device(path: &Path) -> Result<DeviceSecret> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let bytes = zeroize::Zeroizing::new(
        hex::decode(text.trim()).context("the device key file holds 32 bytes of hex")?,
    );
    Ok(DeviceSecret::from_secret_bytes(&bytes)?)
}

fn hex32(s: &str, what: &str) -> Result<[u8; 32]> {
    let b = hex::decode(s.trim()).with_context(|| format!("{what}: not hex"))?;
    b.try_into()
        .map_err(|_| anyhow::anyhow!("{what}: 32 bytes of hex"))
}

fn account_json(a: &AccountInfo) -> serde_json::Value {
    json!({
        "account": a.account,
        "guardians": a.guardians.iter().map(|g| json!({"node": u64::from(g.node), "channel": g.channel})).collect::<Vec<_>>(),
        "threshold": a.threshold,
        "reset_public_key": hex::encode(&a.reset_public_key.0),
        "device_key": hex::encode(a.device_key.0),
        "measurements": a.measurements.as_ref().map(|m| m.iter().map(|x| hex::encode(x.0)).collect::<Vec<_>>()),
        "version": a.version,
        "epoch": a.epoch,
    })
}

fn print_account(a: &AccountInfo, json_out: bool) -> Result<()> {
    if json_out {
        return print_json(&account_json(a));
    }
    println!(
        "account {}: {}-of-{} guardians, reset public key {}",
        a.account,
        a.threshold,
        a.guardians.len(),
        hex::encode(&a.reset_public_key.0)
    );
    for g in &a.guardians {
        println!("  guardian {} over {}", g.node, g.channel);
    }
    Ok(())
}

pub(crate) async fn run(c: &Client, command: RecoveryCommand, json_out: bool) -> Result<()> {
    match command {
        RecoveryCommand::Secret(s) => run_secret(c, s, json_out).await,
        RecoveryCommand::Account(AccountCommand::Create {
            account,
            guardians,
            threshold,
            channels,
            device_key_out,
            measurements,
        }) => {
            if device_key_out.exists() {
                bail!("{} exists: not overwritten", device_key_out.display());
            }
            let device = DeviceSecret::generate();
            let a = c
                .recovery_account_create(&CreateAccountRequest {
                    account,
                    guardians,
                    threshold,
                    channels,
                    device_key: Hex32(device.public_key()),
                    measurements: (!measurements.is_empty())
                        .then(|| {
                            measurements
                                .iter()
                                .map(|m| hex32(m, "--measurement").map(Hex32))
                                .collect::<Result<Vec<_>>>()
                        })
                        .transpose()?,
                })
                .await?;
            let secret = zeroize::Zeroizing::new(hex::encode(device.to_secret_bytes().as_slice()));
            write_secret_file(&device_key_out, secret.as_bytes())?;
            print_account(&a, json_out)
        }
        RecoveryCommand::Account(AccountCommand::Rotate {
            account,
            guardians,
            threshold,
        }) => print_account(
            &c.recovery_account_rotate(
                &account,
                &RotateAccountRequest {
                    guardians,
                    threshold,
                },
            )
            .await?,
            json_out,
        ),
        RecoveryCommand::Account(AccountCommand::Show { account }) => {
            print_account(&c.recovery_account(&account).await?, json_out)
        }
        RecoveryCommand::Account(AccountCommand::List) => {
            let list = c.recovery_accounts().await?;
            if json_out {
                return print_json(&json!({
                    "accounts": list.accounts.iter().map(account_json).collect::<Vec<_>>(),
                    "version": list.version,
                }));
            }
            for a in &list.accounts {
                print_account(a, false)?;
            }
            Ok(())
        }
        RecoveryCommand::Reset(ResetCommand::Request {
            account,
            credential_hash,
            ttl_s,
        }) => {
            let r = c
                .recovery_reset(
                    &account,
                    &ResetRequest {
                        credential_hash: Hex32(hex32(&credential_hash, "--credential-hash")?),
                        ttl_s,
                    },
                )
                .await?;
            let failed = r.fragments.iter().filter(|f| !f.delivered).count();
            if json_out {
                print_json(&json!({
                    "request_id": hex::encode(&r.request_id.0),
                    "expires": r.expires,
                    "fragments": r.fragments.iter().map(|f| json!({
                        "guardian": u64::from(f.guardian),
                        "channel": f.channel,
                        "delivered": f.delivered,
                        "error": f.error,
                    })).collect::<Vec<_>>(),
                }))?;
            } else {
                println!(
                    "reset request {} for {account}, expires at {} (Unix time)",
                    hex::encode(&r.request_id.0),
                    r.expires
                );
                for f in &r.fragments {
                    match &f.error {
                        None => println!(
                            "  guardian {} sent its fragment over {}",
                            f.guardian, f.channel
                        ),
                        Some(e) => println!(
                            "  guardian {} over {}: NOT delivered: {e}",
                            f.guardian, f.channel
                        ),
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} fragment(s) were not delivered: this request cannot complete; open another");
            }
            Ok(())
        }
        RecoveryCommand::Reset(ResetCommand::Assemble {
            account,
            request,
            credential_hash,
            device_key,
            reset_public_key,
            fragments,
        }) => {
            let device = read_device(&device_key)?;
            let pinned = hex32(&reset_public_key, "--reset-public-key")?;
            let request_id: [u8; 16] = hex::decode(request.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .context("--request: 16 bytes of hex")?;
            let claim = ResetClaim {
                account: account.clone(),
                request_id,
                credential_hash: hex32(&credential_hash, "--credential-hash")?,
            };
            let package = c.recovery_reset_package(&account, &request).await?;
            let t = assemble_reset(&package, &claim, &pinned, &fragments, &device)?;
            if json_out {
                print_json(&json!({
                    "token": hex::encode(&t.token),
                    "message": hex::encode(&t.message),
                    "reset_public_key": hex::encode(&t.reset_public_key),
                }))
            } else {
                println!("token {}", hex::encode(&t.token));
                println!("message {}", hex::encode(&t.message));
                println!("reset public key {}", hex::encode(&t.reset_public_key));
                Ok(())
            }
        }
        RecoveryCommand::Inbox {
            account,
            device_key,
        } => {
            let device = read_device(&device_key)?;
            let inbox = c.recovery_inbox(&account).await?;
            let opens =
                |f: &str| Fragment::from_text(f).is_ok_and(|x| x.open(&device, &account).is_ok());
            if json_out {
                return print_json(&json!({
                    "fragments": inbox.fragments.iter().map(|f| json!({
                        "request_id": hex::encode(&f.request_id.0),
                        "guardian": u64::from(f.guardian),
                        "fragment": f.fragment,
                        "opens": opens(&f.fragment),
                    })).collect::<Vec<_>>(),
                }));
            }
            for f in &inbox.fragments {
                let mark = if opens(&f.fragment) {
                    ""
                } else {
                    " (does not open with this device key)"
                };
                println!(
                    "request {} guardian {}{mark}\n{}",
                    hex::encode(&f.request_id.0),
                    f.guardian,
                    f.fragment
                );
            }
            Ok(())
        }
    }
}
