//! `keyquorum bench sign`: the end-to-end load tool.
//!
//! Starts an in-process local cluster (temporary directory, fast KDF
//! parameters since the data is thrown away) or uses a running one
//! (`--url`/`--key-file`), creates a key, and drives threshold signing over the
//! HTTP API at each requested concurrency for a fixed time. Reports
//! throughput, p50 and p99 latency as the client sees them, the coordinator's
//! own signing time from `/metrics` (so the HTTP and auth share shows), and
//! the same signing done by `frost-ed25519` in one process with no network,
//! so the service's overhead is a ratio.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keyquorum_client::Client;
use keyquorum_node::dev::{DevOptions, LocalCluster};
use keyquorum_store::vault::KdfParams;
use keyquorum_store::Passphrase;
use keyquorum_wire::api::{CreateKeyRequest, SuiteName};
use rand_core::{OsRng, RngCore};
use serde_json::json;

/// A scratch directory removed on drop.
pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A throw-away local cluster in a fresh temporary directory `<prefix>-…`
/// (fast KDF parameters: the data is deleted with the directory).
pub(crate) async fn local_cluster(
    prefix: &str,
    nodes: u16,
    threshold: u16,
    pool: usize,
) -> Result<(TempDir, LocalCluster)> {
    let mut tag = [0u8; 8];
    OsRng.fill_bytes(&mut tag);
    let dir = TempDir(std::env::temp_dir().join(format!("{prefix}-{}", hex::encode(tag))));
    let mut pass = [0u8; 24];
    OsRng.fill_bytes(&mut pass);
    let c = LocalCluster::start(
        DevOptions {
            nodes,
            threshold,
            data_dir: dir.0.clone(),
            kdf: KdfParams::insecure_fast(),
            nonce_pool: pool,
            checkpoint_every: keyquorum_node::config::NodeConfig::DEFAULT_CHECKPOINT_EVERY,
            audit_queue: keyquorum_node::config::NodeConfig::DEFAULT_AUDIT_QUEUE,
            client_sessions: keyquorum_node::config::NodeConfig::DEFAULT_CLIENT_SESSIONS,
            smtp: None,
        },
        Passphrase::new(hex::encode(pass).into_bytes()),
    )
    .await?;
    Ok((dir, c))
}

/// What to measure.
#[derive(Debug, Clone)]
pub(crate) struct BenchOpts {
    pub nodes: u16,
    pub threshold: u16,
    pub pool: usize,
    pub concurrency: Vec<usize>,
    pub seconds: f64,
    pub warmup: f64,
    pub url: Option<String>,
    pub key_file: Option<std::path::PathBuf>,
    pub key_id: String,
    pub ca_cert: Option<std::path::PathBuf>,
    pub suite: SuiteName,
}

/// One measured row.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    what: String,
    concurrency: usize,
    signatures: usize,
    errors: usize,
    seconds: f64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Mean coordinator-side signing time (ms) over the run, from
    /// `/metrics`; absent for raw FROST.
    coordinator_ms: Option<f64>,
}

/// What a load of `concurrency` workers did for some seconds.
pub(crate) struct Load {
    /// Each successful operation's latency, sorted.
    pub lat: Vec<Duration>,
    /// Operations that failed.
    pub failed: usize,
    /// Wall seconds the load ran.
    pub elapsed: f64,
    /// This process's CPU seconds meanwhile.
    pub cpu: f64,
}

/// Run `op(worker, i)` in `concurrency` workers, each calling it again as
/// soon as it returns, for `seconds`; `op` says whether it succeeded.
pub(crate) async fn drive<F, Fut>(concurrency: usize, seconds: f64, op: F) -> Result<Load>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu0 = crate::bench_he::cpu_seconds()?;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (op, stop, failed) = (op.clone(), stop.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let s = Instant::now();
                if op(w, i).await {
                    lat.push(s.elapsed());
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = crate::bench_he::cpu_seconds()? - cpu0;
    lat.sort();
    Ok(Load {
        lat,
        failed: failed.load(Ordering::Relaxed),
        elapsed,
        cpu,
    })
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted
        .get(i.min(sorted.len().saturating_sub(1)))
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// Sum of `keyquorum_sign_seconds_sum` and `keyquorum_signatures_total`
/// over every node's `/metrics`.
async fn sign_metrics(http: &reqwest::Client, urls: &[String]) -> (f64, f64) {
    let mut seconds = 0.0;
    let mut count = 0.0;
    for u in urls {
        let Ok(r) = http.get(format!("{u}/metrics")).send().await else {
            continue;
        };
        let Ok(text) = r.text().await else { continue };
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(name), Some(v)) = (it.next(), it.next()) else {
                continue;
            };
            let v: f64 = v.parse().unwrap_or(0.0);
            if name.starts_with("keyquorum_sign_seconds_sum") {
                seconds += v;
            } else if name.starts_with("keyquorum_signatures_total") {
                count += v;
            }
        }
    }
    (seconds, count)
}

async fn run_load(
    clients: &[Client],
    key: &str,
    pk: &[u8],
    suite: SuiteName,
    concurrency: usize,
    seconds: f64,
) -> Result<(Vec<Duration>, usize, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(concurrency);
    let started = Instant::now();
    for client in clients.iter().cycle().take(concurrency) {
        let client = client.clone();
        let (stop, key, pk) = (stop.clone(), key.to_string(), pk.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let mut msg = [0u8; 32];
                OsRng.fill_bytes(&mut msg);
                let t0 = Instant::now();
                match client.sign(&key, &msg).await {
                    Ok(s) => {
                        lat.push(t0.elapsed());
                        // Spot-check one signature in 64 with the verifier.
                        if i % 64 == 1
                            && !keyquorum_node::keys::verify_signature(
                                suite,
                                &pk,
                                &msg,
                                &s.signature.0,
                            )
                        {
                            return Err(anyhow::anyhow!("an invalid signature came back"));
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            Ok((lat, errors))
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await??;
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    Ok((all, errors, elapsed))
}

/// `frost-ed25519` alone: commit, package, t shares, aggregate, no network,
/// no storage, for `seconds`, in `threads` threads at once (1: the latency
/// of the math; all cores: the most signatures per second this machine's
/// CPUs can produce — the ceiling for a cluster whose nodes share them).
fn raw_frost(n: u16, t: u16, seconds: f64, threads: usize) -> Result<Row> {
    use frost_ed25519 as frost;
    let (shares, pubkeys) =
        frost::keys::generate_with_dealer(n, t, frost::keys::IdentifierList::Default, OsRng)
            .context("frost keygen")?;
    let keys: BTreeMap<_, _> = shares
        .into_iter()
        .take(usize::from(t))
        .map(|(id, s)| Ok((id, frost::keys::KeyPackage::try_from(s)?)))
        .collect::<Result<_, frost::Error>>()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let one =
        |keys: &BTreeMap<frost::Identifier, frost::keys::KeyPackage>| -> Result<Vec<Duration>> {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let mut msg = [0u8; 32];
                OsRng.fill_bytes(&mut msg);
                let mut nonces = BTreeMap::new();
                let mut commitments = BTreeMap::new();
                for (id, kp) in keys {
                    let (nonce, c) = frost::round1::commit(kp.signing_share(), &mut OsRng);
                    nonces.insert(*id, nonce);
                    commitments.insert(*id, c);
                }
                let package = frost::SigningPackage::new(commitments, &msg);
                let mut sig_shares = BTreeMap::new();
                for (id, kp) in keys {
                    let nonce = nonces.get(id).context("nonce")?;
                    sig_shares.insert(*id, frost::round2::sign(&package, nonce, kp)?);
                }
                let sig = frost::aggregate(&package, &sig_shares, &pubkeys)?;
                std::hint::black_box(sig);
                lat.push(t0.elapsed());
            }
            Ok(lat)
        };
    let mut lat = Vec::new();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| scope.spawn(|| one(&keys)))
            .collect();
        for w in workers {
            lat.extend(
                w.join()
                    .map_err(|_| anyhow::anyhow!("bench thread panicked"))??,
            );
        }
        Ok(())
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    Ok(Row {
        what: format!("raw frost-ed25519 {t}-of-{n}, {threads} thread(s)"),
        concurrency: threads,
        signatures: lat.len(),
        errors: 0,
        seconds: elapsed,
        per_second: lat.len() as f64 / elapsed,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        coordinator_ms: None,
    })
}

pub(crate) async fn bench_sign(o: BenchOpts, json_out: bool) -> Result<()> {
    if o.concurrency.is_empty() || o.concurrency.contains(&0) {
        bail!("--concurrency needs positive values");
    }
    // The cluster: a running one, or an in-process one in a temp dir.
    // Kept until the end: the local cluster's directory goes with it.
    let _dir;
    let mut local = None;
    let (urls, me, ca) = match (&o.url, &o.key_file) {
        (Some(u), Some(k)) => {
            let path = o.ca_cert.as_ref().context("--url needs --ca-cert")?;
            let ca = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            (vec![u.clone()], crate::cluster::load_key(k, &o.key_id)?, ca)
        }
        (None, None) => {
            let (d, c) = local_cluster("keyquorum-bench", o.nodes, o.threshold, o.pool).await?;
            _dir = d;
            let urls = c.infos().keys().map(|id| c.url_of(*id)).collect();
            let me = c.admin.clone();
            let ca = c.ca_pem().into_bytes();
            local = Some(c);
            (urls, me, ca)
        }
        _ => bail!("give both --url and --key-file, or neither (then a local cluster starts)"),
    };
    let http = keyquorum_client::http_client(&ca)?;
    let clients: Vec<Client> = urls
        .iter()
        .map(|u| Client::with_http(http.clone(), u, &me))
        .collect();
    let mut name_bytes = [0u8; 4];
    OsRng.fill_bytes(&mut name_bytes);
    let name = format!("bench-{}", hex::encode(name_bytes));
    let key = clients
        .first()
        .context("no node to talk to")?
        .create_key(&CreateKeyRequest {
            name: name.clone(),
            suite: o.suite,
            threshold: Some(o.threshold),
            members: None,
            min_members: None,
        })
        .await?;
    let label = format!(
        "keyquorum {} {}-of-{}, nonce pool {}",
        o.suite.as_str(),
        key.threshold,
        key.members.len(),
        if o.pool > 0 { "on" } else { "off" }
    );
    if o.warmup > 0.0 {
        run_load(&clients, &name, &key.public_key.0, o.suite, 4, o.warmup).await?;
    }
    let mut rows = Vec::new();
    for &c in &o.concurrency {
        let (m0, n0) = sign_metrics(&http, &urls).await;
        let (lat, errors, secs) =
            run_load(&clients, &name, &key.public_key.0, o.suite, c, o.seconds).await?;
        let (m1, n1) = sign_metrics(&http, &urls).await;
        let coordinator_ms = (n1 > n0).then(|| (m1 - m0) / (n1 - n0) * 1e3);
        let row = Row {
            what: label.clone(),
            concurrency: c,
            signatures: lat.len(),
            errors,
            seconds: secs,
            per_second: lat.len() as f64 / secs,
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
            coordinator_ms,
        };
        if !json_out {
            print_row(&row);
        }
        rows.push(row);
    }
    if o.suite == SuiteName::Ed25519 {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mut threads = vec![1];
        if cores > 1 {
            threads.push(cores);
        }
        for th in threads {
            let raw = raw_frost(
                key.members.len() as u16,
                key.threshold,
                o.seconds.min(3.0),
                th,
            )?;
            if !json_out {
                print_row(&raw);
            }
            rows.push(raw);
        }
    }
    if let Some(c) = local {
        c.shutdown().await;
    }
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "rows": rows }))?
        );
    }
    Ok(())
}

fn print_row(r: &Row) {
    println!(
        "{:<48} c={:<3} {:>8.0} sig/s  p50 {:>7.2} ms  p99 {:>7.2} ms  coordinator {:>6} ms  ({} sigs, {} errors, {:.1} s)",
        r.what,
        r.concurrency,
        r.per_second,
        r.p50_ms,
        r.p99_ms,
        r.coordinator_ms
            .map(|m| format!("{m:.2}"))
            .unwrap_or_else(|| "-".into()),
        r.signatures,
        r.errors,
        r.seconds
    );
}
