//! `keyquorum bench msg`: per-message key derivation end to end.
//!
//! Starts an in-process local cluster (temporary directory, fast KDF
//! parameters), registers sending and receiving endpoints (sealed files in
//! the same directory) with enough prekeys, then for each (mode,
//! coordinators, claim batch, concurrency) sends messages for a fixed time
//! through every node: reserve a prekey (one consensus claim per
//! `claim_batch` messages to a receiver), build, coordinators confirm,
//! mailbox commit, the sender checks each confirmation. Reports messages/s
//! and p50/p99 as the sender sees them; then drains every mailbox (open, verify, ack) and
//! reports the receivers' rate. The bare cryptography of one message in one
//! process is `cargo run --release -p keyquorum-core --example msgkey_cost`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use keyquorum_client::msg::Endpoint;
use keyquorum_client::Client;
use keyquorum_core::msgkey::Mode;
use keyquorum_store::vault::KdfParams;
use keyquorum_store::Passphrase;
use keyquorum_wire::msg::CLAIM_COUNTS;
use serde_json::json;

use crate::bench::{local_cluster, percentile};

/// What to measure.
#[derive(Debug, Clone)]
pub(crate) struct MsgBenchOpts {
    pub nodes: u16,
    pub concurrency: Vec<usize>,
    pub coordinators: Vec<u16>,
    pub seconds: f64,
    pub size: usize,
    pub claim_batch: Vec<u16>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    what: String,
    concurrency: usize,
    messages: usize,
    errors: usize,
    seconds: f64,
    per_second: f64,
    /// Per-message latency, for rows that time each message (sends).
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

fn print_row(r: &Row) {
    let ms = |v: Option<f64>| v.map_or_else(|| format!("{:>7}", "-"), |v| format!("{v:>7.2}"));
    println!(
        "{:<50} c={:<3} {:>7.0} msg/s  p50 {} ms  p99 {} ms  ({} msgs, {} errors, {:.1} s)",
        r.what,
        r.concurrency,
        r.per_second,
        ms(r.p50_ms),
        ms(r.p99_ms),
        r.messages,
        r.errors,
        r.seconds
    );
}

/// Receivers: one per 4 concurrent senders at least, each with up to 1,000
/// prekeys (the per-endpoint cap).
const PREKEYS_PER_RECEIVER: usize = 1_000;
/// Senders stop this many messages before a receiver's prekeys run out,
/// beyond what claims in flight may hold.
const PREKEY_SLACK: usize = 64;

pub(crate) async fn bench_msg(o: MsgBenchOpts, json_out: bool) -> Result<()> {
    if o.concurrency.is_empty() || o.concurrency.contains(&0) {
        bail!("--concurrency needs positive values");
    }
    if o.claim_batch.is_empty() || o.claim_batch.iter().any(|b| !CLAIM_COUNTS.contains(b)) {
        bail!("--claim-batch needs values from 1 to 64");
    }
    let (dir, cluster) = local_cluster("keyquorum-bench-msg", o.nodes, 2.min(o.nodes), 0).await?;
    let http = keyquorum_client::http_client(cluster.ca_pem().as_bytes())?;
    let clients: Vec<Client> = cluster
        .infos()
        .keys()
        .map(|id| Client::with_http(http.clone(), &cluster.url_of(*id), &cluster.admin))
        .collect();
    let admin = clients
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no node"))?;
    let d = admin.msg_deployment().await?;
    let content = vec![0x5au8; o.size];
    let mut rows = Vec::new();
    let mut round = 0usize;
    for mode in [Mode::VerifyInTheExponent, Mode::CoordinatorReconstructs] {
        for &m in &o.coordinators {
            for (&batch, &c) in o
                .claim_batch
                .iter()
                .flat_map(|b| o.concurrency.iter().map(move |c| (b, c)))
            {
                round += 1;
                // Fresh endpoints per row: enough prekeys for the row.
                let receivers = c.div_ceil(4).max(2);
                let pw = Passphrase::new(b"bench".to_vec());
                let mut eps = Vec::new();
                for i in 0..receivers {
                    let name = format!("r{round}-{i}");
                    let e = Endpoint::create(
                        &dir.0.join(format!("{name}.kqe")),
                        &pw,
                        KdfParams::insecure_fast(),
                        &name,
                    )?
                    .with_claim_batch(batch);
                    e.register(&admin, 200).await?;
                    for _ in 0..(PREKEYS_PER_RECEIVER / 200 - 1) {
                        admin.publish_prekeys(&name, e.new_prekeys(200)?).await?;
                    }
                    eps.push(Arc::new(e));
                }
                let stop = Arc::new(AtomicBool::new(false));
                // Sender k uses endpoint k % receivers and writes to the
                // next one, so each receiver has one sending endpoint and
                // up to `per` tasks, each with a claim of `batch` in
                // flight: stop before its prekeys run out.
                let per = c.div_ceil(receivers);
                let budgets: Vec<Arc<AtomicUsize>> = (0..receivers)
                    .map(|_| {
                        Arc::new(AtomicUsize::new(
                            PREKEYS_PER_RECEIVER.saturating_sub(per * usize::from(batch)),
                        ))
                    })
                    .collect();
                let started = Instant::now();
                let mut tasks = Vec::new();
                for k in 0..c {
                    let (Some(sender), Some(to), Some(via)) = (
                        eps.get(k % receivers).cloned(),
                        eps.get((k + 1) % receivers).map(|e| e.name().to_string()),
                        clients.get(k % clients.len()).cloned(),
                    ) else {
                        bail!("no endpoints or nodes to use");
                    };
                    let Some(budget) = budgets.get((k + 1) % receivers).cloned() else {
                        bail!("no budget for receiver");
                    };
                    let (stop, d, content) = (stop.clone(), d.clone(), content.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut lat = Vec::new();
                        let mut errors = 0usize;
                        while !stop.load(Ordering::Relaxed)
                            && budget.fetch_sub(1, Ordering::Relaxed) > PREKEY_SLACK
                        {
                            let t0 = Instant::now();
                            match sender.send(&via, &d, &to, &content, m, mode).await {
                                Ok(_) => lat.push(t0.elapsed()),
                                Err(e) => {
                                    errors += 1;
                                    tracing::debug!(error = %e, "send");
                                }
                            }
                        }
                        (lat, errors, Instant::now())
                    }));
                }
                tokio::time::sleep(Duration::from_secs_f64(o.seconds)).await;
                stop.store(true, Ordering::Relaxed);
                let mut lat = Vec::new();
                let mut errors = 0;
                // Until the last sender finished: one that ran out of its
                // receiver's prekeys stops before the time is up.
                let mut ended = started;
                for t in tasks {
                    let (l, e, end) = t.await?;
                    lat.extend(l);
                    errors += e;
                    ended = ended.max(end);
                }
                let secs = ended.duration_since(started).as_secs_f64();
                lat.sort_unstable();
                let row = Row {
                    what: format!("send {mode:?} m={m}, claim batch {batch}"),
                    concurrency: c,
                    messages: lat.len(),
                    errors,
                    seconds: secs,
                    per_second: lat.len() as f64 / secs,
                    p50_ms: Some(percentile(&lat, 0.5)),
                    p99_ms: Some(percentile(&lat, 0.99)),
                };
                if !json_out {
                    print_row(&row);
                }
                rows.push(row);
                // Drain: every receiver at once.
                let t0 = Instant::now();
                let drains: Vec<_> = eps
                    .iter()
                    .map(|e| {
                        let (e, admin, d) = (e.clone(), admin.clone(), d.clone());
                        tokio::spawn(async move {
                            let mut opened = 0usize;
                            let mut failed = 0usize;
                            loop {
                                let got = e.receive(&admin, &d).await?;
                                if got.is_empty() {
                                    break;
                                }
                                for r in got {
                                    match r.content {
                                        Ok(_) => opened += 1,
                                        Err(e) => {
                                            if failed == 0 {
                                                eprintln!("receive refused a message: {e}");
                                            }
                                            failed += 1;
                                        }
                                    }
                                }
                            }
                            anyhow::Ok((opened, failed))
                        })
                    })
                    .collect();
                let mut opened = 0;
                let mut failed = 0;
                for h in drains {
                    let (a, b) = h.await??;
                    opened += a;
                    failed += b;
                }
                let secs = t0.elapsed().as_secs_f64();
                let row = Row {
                    what: format!("receive {mode:?} m={m}"),
                    concurrency: receivers,
                    messages: opened,
                    errors: failed,
                    seconds: secs,
                    per_second: opened as f64 / secs,
                    p50_ms: None,
                    p99_ms: None,
                };
                if opened != rows.last().map_or(0, |r: &Row| r.messages) {
                    bail!(
                        "sent {} but opened {opened}",
                        rows.last().map_or(0, |r| r.messages)
                    );
                }
                if !json_out {
                    print_row(&row);
                }
                rows.push(row);
            }
        }
    }
    cluster.shutdown().await;
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "rows": rows }))?
        );
    }
    Ok(())
}
