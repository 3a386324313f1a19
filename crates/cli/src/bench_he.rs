//! `keyquorum bench he`: encrypted-data submissions end to end.
//!
//! Starts a local cluster in a child process (as `bench sign` does),
//! creates a session with `knowledge` proofs, encrypts and proves a pool of
//! inputs up front (the client's work, outside the timed part), then
//! submits them over the API at each concurrency for a fixed time through
//! every node. Reports submissions/s and p50/p99, and the node process's
//! CPU per submission (the load generator's, this process's, beside it)
//! against the bare cost measured in the same run: checking one input's
//! proof once per replica, plus once at the entry node; and against a
//! floor: that plus the check of the client's signed request beside each
//! proof check, which every replica makes (DESIGN.md §4). Then closes the
//! session, decrypts it (latency) and checks the sum.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use keyquorum_client::he::encrypt_input;
use keyquorum_client::Client;
use keyquorum_core::he::{Ciphertext, Context, InputPolicy};
use keyquorum_wire::he::{CreateHeSessionRequest, SubmitInputRequest};
use serde_json::json;

use crate::bench::{percentile, NodesChild};

/// What to measure.
#[derive(Debug, Clone)]
pub(crate) struct HeBenchOpts {
    pub nodes: u16,
    pub concurrency: Vec<usize>,
    pub seconds: f64,
    pub inputs: String,
}

/// CPU seconds this process has used (user + system), from
/// `/proc/self/stat` (clock ticks of 1/100 s).
pub(crate) fn cpu_seconds() -> Result<f64> {
    crate::bench::proc_cpu_seconds("/proc/self/stat")
}

pub(crate) async fn bench_he(o: HeBenchOpts, json_out: bool) -> Result<()> {
    if o.concurrency.is_empty() || o.concurrency.contains(&0) {
        bail!("--concurrency needs positive values");
    }
    let policy: InputPolicy = o.inputs.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    // The nodes in a child process, so their CPU is told apart from this
    // process's (the load generator: encrypting, proving, signing requests).
    let (nodes, info) = NodesChild::start(
        o.nodes,
        o.nodes / 2 + 1,
        0,
        keyquorum_node::config::NodeConfig::DEFAULT_PEER_BATCHES,
    )?;
    if !json_out {
        println!("nodes: process {} ({} nodes)", nodes.pid(), info.urls.len());
    }
    let ca = std::fs::read(&info.ca_cert)
        .with_context(|| format!("reading {}", info.ca_cert.display()))?;
    let key = crate::cluster::load_key(&info.key_file, &info.key_id)?;
    let clients: Vec<Client> = info
        .urls
        .iter()
        .map(|u| Client::new(u, &key, &ca))
        .collect::<Result<_, _>>()?;
    let admin = clients.first().context("no node")?.clone();
    let name = "bench";
    let me = admin.identity().name().to_string();
    let info = admin
        .he_create(&CreateHeSessionRequest {
            name: name.into(),
            threshold: None,
            members: None,
            slots: Some(1),
            inputs: Some(o.inputs.clone()),
            bound: Some(32),
            op: None,
            weights: None,
            submitter_weights: None,
            // Inputs without proofs only from a list of submitters.
            submitters: (policy == InputPolicy::None).then(|| vec![me.clone()]),
            one_per_client: false,
            readers: Vec::new(),
            min_inputs: None,
            measurements: None,
        })
        .await?;

    // The bare cost: one proof check, on this machine, now.
    let ctx = Context::new(info.id.0, &info.public_key.0, &me)?;
    let sample: Vec<(Ciphertext, Vec<u8>)> = (0..64)
        .map(|i| policy.encrypt(&ctx, &[i], &mut rand_core::OsRng))
        .collect::<Result<_, _>>()?;
    // About half a second each (the CPU clock ticks in 10 ms).
    let checks = 8_000;
    let t0 = cpu_seconds()?;
    let w0 = Instant::now();
    for (ct, proof) in sample.iter().cycle().take(checks) {
        policy.verify(&ctx, ct, proof)?;
    }
    let check_wall = w0.elapsed().as_secs_f64() / checks as f64;
    let check_cpu = ((cpu_seconds()? - t0) / checks as f64).max(check_wall);
    let bare = check_cpu * f64::from(o.nodes + 1);
    // The floor under any submission that travels as a client's signed
    // write (DESIGN.md §4: every replica checks the client's request
    // itself): that check beside each proof check, Ed25519 `verify_strict`
    // over a request signature base of typical size.
    let sig_cpu = {
        use ed25519_dalek::{Signer, SigningKey};
        let client = SigningKey::generate(&mut rand_core::OsRng);
        let base = [0x42u8; 400];
        let signature = client.sign(&base);
        let public = client.verifying_key();
        let t0 = cpu_seconds()?;
        let w0 = Instant::now();
        for _ in 0..checks {
            if public.verify_strict(&base, &signature).is_err() {
                bail!("the request signature did not verify");
            }
        }
        let wall = w0.elapsed().as_secs_f64() / checks as f64;
        ((cpu_seconds()? - t0) / checks as f64).max(wall)
    };
    let floor = (check_cpu + sig_cpu) * f64::from(o.nodes + 1);

    let mut rows = Vec::new();
    let mut want: u64 = 0;
    let mut total = 0usize;
    for &conc in &o.concurrency {
        // The client's work, up front: enough inputs for the row.
        let pool: Arc<Vec<SubmitInputRequest>> = Arc::new(
            (0..(conc * 400).max(2_000))
                .map(|i| encrypt_input(&info, &me, &[(i % 1000) as u64]))
                .collect::<Result<_, _>>()?,
        );
        let next = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs_f64(o.seconds);
        let (cpu0, gen0) = (nodes.cpu_seconds()?, cpu_seconds()?);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for client in clients.iter().cycle().take(conc) {
            let client = client.clone();
            let (pool, next, errors) = (pool.clone(), next.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut sum = 0u64;
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(input) = pool.get(i) else { break };
                    let t = Instant::now();
                    match client.he_submit_raw("bench", input).await {
                        Ok(_) => {
                            lat.push(t.elapsed());
                            sum += (i % 1000) as u64;
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                (lat, sum)
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            let (l, s) = t.await?;
            lat.extend(l);
            want += s;
        }
        let secs = start.elapsed().as_secs_f64();
        let (cpu, gen) = (nodes.cpu_seconds()? - cpu0, cpu_seconds()? - gen0);
        lat.sort_unstable();
        let n = lat.len();
        total += n;
        let per = cpu / n.max(1) as f64;
        rows.push(json!({
            "what": format!("submit ({}) into {} nodes", o.inputs, o.nodes),
            "concurrency": conc,
            "submissions": n,
            "errors": errors.load(Ordering::Relaxed),
            "per_second": n as f64 / secs,
            "p50_ms": percentile(&lat, 0.5),
            "p99_ms": percentile(&lat, 0.99),
            "cpu_ms_per_submission": per * 1e3,
            "loadgen_cpu_ms_per_submission": gen / n.max(1) as f64 * 1e3,
            "bare_ms": bare * 1e3,
            "ratio": per / bare,
            "floor_ms": floor * 1e3,
            "ratio_to_floor": per / floor,
        }));
    }
    // Close and decrypt; the sum must be the sum.
    admin.he_close(name).await?;
    let t = Instant::now();
    let r = admin.he_result(name).await?;
    let decrypt_ms = t.elapsed().as_secs_f64() * 1e3;
    if r.values != [want] || r.transcript.progress.count != total as u64 {
        bail!(
            "decrypted {:?} over {} inputs; submitted {want} over {total}",
            r.values,
            r.transcript.progress.count
        );
    }
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "proof_check_ms": check_cpu * 1e3,
                "request_check_ms": sig_cpu * 1e3,
                "rows": rows,
                "decrypt_ms": decrypt_ms,
                "inputs": total,
            }))?
        );
    } else {
        println!(
            "bare: one {} proof check {:.3} ms (CPU), × {} replicas + entry = {:.3} ms per submission",
            o.inputs,
            check_cpu * 1e3,
            o.nodes,
            bare * 1e3
        );
        println!(
            "floor: (proof check + client request check {:.3} ms) × {} replicas + entry = {:.3} ms per submission",
            sig_cpu * 1e3,
            o.nodes,
            floor * 1e3
        );
        for row in &rows {
            println!(
                "{:<40} c={:<3} {:>7.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  node CPU {:.3} ms/submission = {:.2}× bare, {:.2}× floor  (load generator {:.3} ms; {} ok, {} errors)",
                row["what"].as_str().unwrap_or_default(),
                row["concurrency"],
                row["per_second"].as_f64().unwrap_or_default(),
                row["p50_ms"].as_f64().unwrap_or_default(),
                row["p99_ms"].as_f64().unwrap_or_default(),
                row["cpu_ms_per_submission"].as_f64().unwrap_or_default(),
                row["ratio"].as_f64().unwrap_or_default(),
                row["ratio_to_floor"].as_f64().unwrap_or_default(),
                row["loadgen_cpu_ms_per_submission"]
                    .as_f64()
                    .unwrap_or_default(),
                row["submissions"],
                row["errors"],
            );
        }
        println!(
            "decrypt {total} inputs (32-bit bound, table built on first use): {decrypt_ms:.1} ms; the sum checks"
        );
    }
    drop(nodes);
    Ok(())
}
