//! `keyquorum snapshot save | verify | restore`: the control plane backed
//! up to a file anyone holding the members' certificates can check, and
//! restored from it (`keyquorum_node::cluster::backup`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use keyquorum_node::cluster::backup::{self, BackupError, SnapshotFile};
use keyquorum_wire::api::CheckpointAttestation;
use keyquorum_wire::control::AuditEntry;
use serde_json::json;

use crate::cluster::{client, print_json};
use crate::Remote;

/// Backing up and restoring the control plane.
#[derive(Subcommand, Debug)]
pub(crate) enum SnapshotCommand {
    /// Save the newest checkpoint of the control plane, attested by the
    /// voters, and the whole audit log to FILE (an admin). Each voter is
    /// asked at its own address over TLS pinned to its identity; FILE is
    /// written only if enough of those in the CA file attest it.
    Save {
        #[command(flatten)]
        remote: Remote,
        /// Where to write it (replaced whole).
        file: PathBuf,
        /// Attestations asked for at least (give the largest key
        /// threshold where it is above a majority of the members).
        #[arg(long, default_value_t = 0)]
        min_attestations: usize,
    },
    /// Check FILE offline: its checkpoint attested by enough voters whose
    /// certificates are in the CA file, and its audit log.
    Verify {
        /// The saved file.
        file: PathBuf,
        /// PEM file of the members' certificates (the identities trusted).
        #[arg(long, env = "KEYQUORUM_CA_CERT")]
        ca_cert: PathBuf,
        /// Attestations asked for at least (give the largest key
        /// threshold where it is above a majority of the members).
        #[arg(long, default_value_t = 0)]
        min_attestations: usize,
    },
    /// Restore a stopped node's control plane from FILE. Accepted if the
    /// node attested the checkpoint itself, or (with --ca-cert) if as many
    /// voters did as `verify` asks and as the node's own state would ask
    /// of a snapshot. The node's Raft file is kept as
    /// raft.redb.before-restore-MS; its vault is not touched. Restore
    /// every node from the same file, then start them.
    Restore {
        /// The saved file.
        file: PathBuf,
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
        /// PEM file of the members' certificates: needed unless the node
        /// attested the checkpoint itself.
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Attestations asked for at least (give the largest key
        /// threshold where it is above a majority of the members).
        #[arg(long, default_value_t = 0)]
        min_attestations: usize,
        /// Restore even though the checkpoint rolls back keys, trees,
        /// members or clients of the node's current state (they are
        /// lost), or its state cannot be read to tell.
        #[arg(long)]
        lose_newer: bool,
        /// This restore's label: the same on every node, never used for
        /// another restore (e.g. `2026-12-04-1`). Nothing signed before the
        /// nodes start on the restored state is taken after it; the label
        /// keeps boots from an earlier restore of the same file from
        /// counting.
        #[arg(long)]
        restore_id: String,
    },
}

pub(crate) async fn run(command: SnapshotCommand, json: bool) -> Result<()> {
    match command {
        SnapshotCommand::Save {
            remote,
            file,
            min_attestations,
        } => save(&remote, &file, min_attestations, json).await,
        SnapshotCommand::Verify {
            file,
            ca_cert,
            min_attestations,
        } => {
            let f = backup::read_file(&file)?;
            let c = backup::check(&f, &trusted(Some(&ca_cert))?, min_attestations)?;
            if json {
                return print_json(&serde_json::to_value(&c)?);
            }
            println!(
                "checkpoint {} ({}) attested by voters {:?} ({} needed); audit log: {} entries \
                 ({} after the checkpoint), {} signed heads ({} verified)",
                c.index,
                c.digest,
                c.trusted_by,
                c.needed,
                c.audit_entries,
                c.audit_after,
                c.heads,
                c.heads_verified
            );
            Ok(())
        }
        SnapshotCommand::Restore {
            file,
            config,
            ca_cert,
            min_attestations,
            lose_newer,
            restore_id,
        } => {
            let (cfg, me) = crate::nodes::public_identity(&config)?;
            let f = backup::read_file(&file)?;
            let opts = backup::RestoreOptions {
                trusted: trusted(ca_cert.as_deref())?,
                min: min_attestations,
                lose_newer,
                now_ms: keyquorum_node::cluster::peer::now_ms(),
                label: restore_id,
            };
            let r = backup::restore(&cfg.data_dir, cfg.id, me.info.identity, &f, &opts)?;
            if json {
                return print_json(&serde_json::to_value(&r)?);
            }
            println!(
                "node {} restored to checkpoint {} ({} audit entries); {} entries saved after it \
                 are not in the restored log. Restore every node from this file, then start them.",
                cfg.id, r.checked.index, r.checked.audit_entries, r.checked.audit_after
            );
            for what in &r.lost {
                eprintln!("lost: {what}");
            }
            if let Some(p) = &r.previous {
                println!("the previous Raft file is at {}", p.display());
            }
            Ok(())
        }
    }
}

/// The identity keys of the certificates in `ca` (none without one).
fn trusted(ca: Option<&Path>) -> Result<Vec<[u8; 32]>> {
    let Some(path) = ca else {
        return Ok(Vec::new());
    };
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    // Repeated certificates count once (`backup::check` counts distinct
    // identities).
    let ids = keyquorum_node::cluster::tls::identities_in_pem(&pem);
    if ids.is_empty() {
        bail!("{} holds no node certificate", path.display());
    }
    Ok(ids)
}

/// Save: the node's newest checkpoint, every voter's attestation of it,
/// the audit log; retried while too few voters still hold that checkpoint
/// (each keeps its newest few).
async fn save(remote: &Remote, file: &Path, min: usize, json: bool) -> Result<()> {
    const TRIES: usize = 10;
    let c = client(remote)?;
    let trusted = trusted(remote.ca_cert.as_deref())?;
    let mut last = None;
    for _ in 0..TRIES {
        let dl = c.snapshot_download().await?;
        let index = dl.attestation.index;
        let mut attestations = vec![dl.attestation.clone()];
        for (id, info) in backup::voters_of(&dl.data)? {
            if id == dl.attestation.node {
                continue;
            }
            let path = format!("/v1/checkpoints/{index}");
            match crate::nodes::pinned_get::<CheckpointAttestation>(&info, &path).await {
                Ok(a) => attestations.push(a),
                Err(e) => eprintln!("node {id} at {}: no attestation ({e:#})", info.addr),
            }
        }
        let entries = audit_entries(&c).await?;
        let saved = SnapshotFile {
            format: backup::FILE_FORMAT.into(),
            saved_ms: keyquorum_node::cluster::peer::now_ms(),
            saved_from: remote.url.clone(),
            meta: dl.meta,
            data: dl.data,
            attestations,
            heads: dl.heads,
            entries,
        };
        match backup::check(&saved, &trusted, min) {
            Ok(checked) => {
                backup::write_file(file, &saved)?;
                if json {
                    return print_json(&json!({ "file": file, "checked": checked }));
                }
                println!(
                    "saved checkpoint {} attested by voters {:?} and {} audit entries to {}",
                    checked.index,
                    checked.trusted_by,
                    saved.entries.len(),
                    file.display()
                );
                return Ok(());
            }
            // A voter may not have reached the checkpoint yet, or passed
            // it: try the newest again.
            Err(e @ BackupError::Unvouched(_)) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    match last {
        Some(e) => Err(e.into()),
        None => bail!("no snapshot saved"),
    }
}

/// Every audit entry the node holds now, from the first.
async fn audit_entries(c: &keyquorum_client::Client) -> Result<Vec<AuditEntry>> {
    const PAGE: u64 = 1000;
    #[derive(serde::Deserialize)]
    struct Page {
        total: u64,
        entries: Vec<AuditEntry>,
    }
    let mut out: Vec<AuditEntry> = Vec::new();
    let mut total = None;
    loop {
        let page: Page = serde_json::from_value(c.audit(out.len() as u64, PAGE).await?)
            .context("an audit page that does not parse")?;
        // Up to the entries there were at the start (reading the log adds
        // entries of its own).
        let t = *total.get_or_insert(page.total);
        if page.entries.is_empty() {
            break;
        }
        out.extend(page.entries);
        if out.len() as u64 >= t {
            break;
        }
    }
    Ok(out)
}
