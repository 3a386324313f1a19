//! `keyquorum bench sign`: the end-to-end load tool (issue #22's measure).
//!
//! Starts a local cluster in a child process (`keyquorum bench nodes`, in a
//! temporary directory, fast KDF parameters since the data is thrown away),
//! or in this process (`--in-process`), or uses a running one
//! (`--url`/`--key-file`, with `--node-pids` to count its CPU), creates a
//! key, and drives threshold signing over the HTTP API at each requested
//! concurrency for a fixed time. Per row: throughput, p50 and p99 latency as
//! the client sees them, the coordinator's own signing time from
//! `/metrics`, the node processes' CPU per signature, and the ratios to raw
//! FROST of the same suite and t-of-n measured in the same run (on one
//! thread before and after the cluster rows; its CPU per signature is the
//! bare cost): R_cpu (CPU per signature ÷ raw FROST's) and R_thr
//! (signatures/s ÷ what raw FROST signs per second on the CPU the nodes had,
//! all cores minus the load generator's).

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
    local_cluster_with(
        prefix,
        nodes,
        threshold,
        pool,
        keyquorum_node::config::NodeConfig::DEFAULT_PEER_BATCHES,
    )
    .await
}

/// [`local_cluster`] with `peer_batches` (`NodeConfig::peer_batches`).
pub(crate) async fn local_cluster_with(
    prefix: &str,
    nodes: u16,
    threshold: u16,
    pool: usize,
    peer_batches: usize,
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
            peer_batches,
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
    pub peer_batches: usize,
    pub concurrency: Vec<usize>,
    pub seconds: f64,
    pub warmup: f64,
    pub url: Option<String>,
    pub key_file: Option<std::path::PathBuf>,
    pub key_id: String,
    pub ca_cert: Option<std::path::PathBuf>,
    pub suite: SuiteName,
    /// Run the nodes in this process (the old way: their CPU cannot be
    /// told apart from the load generator's).
    pub in_process: bool,
    /// The processes of a running cluster (`--url`) whose CPU to count.
    pub node_pids: Vec<u32>,
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
    /// CPU milliseconds per signature: of the node processes for a
    /// cluster row (absent when they are not known), of the signing
    /// threads for a raw row.
    cpu_ms_per_sig: Option<f64>,
    /// The load generator's CPU, in cores, during a cluster row.
    loadgen_cores: Option<f64>,
    /// Peer messages per batch the nodes sent, on average (absent: none).
    batch_mean: Option<f64>,
    /// Peer messages that went in batches, per signature.
    batched_per_sig: Option<f64>,
    /// `cpu_ms_per_sig` ÷ raw FROST's CPU per signature (same t-of-n,
    /// same run): issue #22's R_cpu.
    r_cpu: Option<f64>,
    /// Signatures/s ÷ what raw FROST signs per second on the CPU the
    /// nodes had (all cores minus the load generator's): R_thr.
    r_thr: Option<f64>,
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

/// What every node's `/metrics` sums to.
#[derive(Debug, Clone, Copy, Default)]
struct Scraped {
    /// `keyquorum_sign_seconds_sum`.
    sign_seconds: f64,
    /// `keyquorum_signatures_total`.
    signatures: f64,
    /// `keyquorum_peer_batches_total`.
    peer_batches: f64,
    /// `keyquorum_peer_batched_messages_total`.
    batched: f64,
}

/// The sums of the signing and peer-batch counters over every node's
/// `/metrics`.
async fn sign_metrics(http: &reqwest::Client, urls: &[String]) -> Scraped {
    let mut m = Scraped::default();
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
            let field = match name.split('{').next() {
                Some("keyquorum_sign_seconds_sum") => &mut m.sign_seconds,
                Some("keyquorum_signatures_total") => &mut m.signatures,
                Some("keyquorum_peer_batches_total") => &mut m.peer_batches,
                Some("keyquorum_peer_batched_messages_total") => &mut m.batched,
                _ => continue,
            };
            *field += v;
        }
    }
    m
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

/// This thread's CPU seconds (Linux `/proc/thread-self/stat`, 10 ms ticks).
fn thread_cpu_seconds() -> Result<f64> {
    proc_cpu_seconds("/proc/thread-self/stat")
}

/// CPU seconds (user + system, all threads) of process `pid`.
fn process_cpu_seconds(pid: u32) -> Result<f64> {
    proc_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// CPU seconds (user + system) in a `/proc/.../stat` file.
pub(crate) fn proc_cpu_seconds(path: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name (which may hold spaces) in parentheses;
    // utime and stime are fields 14 and 15 (1-based): 11 and 12 here.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("parsing {path}"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64> {
        Ok(f.get(i)
            .with_context(|| format!("short {path}"))?
            .parse::<f64>()?
            / 100.0)
    };
    Ok(tick(11)? + tick(12)?)
}

/// What raw FROST measured: its row and its CPU seconds per signature.
struct Raw {
    row: Row,
    cpu_per_sig: f64,
}

/// FROST alone (`frost-core` with the suite's ciphersuite): commit,
/// package, t shares, aggregate (which verifies the signature), no
/// network, no storage, for `seconds`, in `threads` threads at once
/// (1: the latency and CPU of the math; all cores: the most signatures per
/// second this machine's CPUs can produce). CPU is each signing thread's
/// own, so the idle nodes and the load generator do not count.
fn raw_frost<C: frost_core::Ciphersuite>(
    name: &str,
    n: u16,
    t: u16,
    seconds: f64,
    threads: usize,
) -> Result<Raw> {
    use frost_core as frost;
    let (shares, pubkeys) = frost::keys::generate_with_dealer::<C, _>(
        n,
        t,
        frost::keys::IdentifierList::Default,
        &mut OsRng,
    )
    .context("frost keygen")?;
    let keys: BTreeMap<_, _> = shares
        .into_iter()
        .take(usize::from(t))
        .map(|(id, s)| Ok((id, frost::keys::KeyPackage::try_from(s)?)))
        .collect::<Result<_, frost::Error<C>>>()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    type Keys<C> = BTreeMap<frost::Identifier<C>, frost::keys::KeyPackage<C>>;
    let one = |keys: &Keys<C>| -> Result<(Vec<Duration>, f64)> {
        let cpu0 = thread_cpu_seconds()?;
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
        Ok((lat, thread_cpu_seconds()? - cpu0))
    };
    let mut lat = Vec::new();
    let mut cpu = 0.0;
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| scope.spawn(|| one(&keys)))
            .collect();
        for w in workers {
            let (l, c) = w
                .join()
                .map_err(|_| anyhow::anyhow!("bench thread panicked"))??;
            lat.extend(l);
            cpu += c;
        }
        Ok(())
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    if lat.is_empty() {
        bail!("raw FROST signed nothing in {seconds} s");
    }
    let cpu_per_sig = cpu / lat.len() as f64;
    Ok(Raw {
        row: Row {
            what: format!("raw {name} {t}-of-{n}, {threads} thread(s)"),
            concurrency: threads,
            signatures: lat.len(),
            errors: 0,
            seconds: elapsed,
            per_second: lat.len() as f64 / elapsed,
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
            coordinator_ms: None,
            cpu_ms_per_sig: Some(cpu_per_sig * 1e3),
            loadgen_cores: None,
            batch_mean: None,
            batched_per_sig: None,
            r_cpu: None,
            r_thr: None,
        },
        cpu_per_sig,
    })
}

/// [`raw_frost`] with `suite`'s ciphersuite.
fn raw_for(suite: SuiteName, n: u16, t: u16, seconds: f64, threads: usize) -> Result<Raw> {
    match suite {
        SuiteName::Ed25519 => {
            raw_frost::<frost_ed25519::Ed25519Sha512>("frost-ed25519", n, t, seconds, threads)
        }
        SuiteName::Secp256k1Tr => raw_frost::<frost_secp256k1_tr::Secp256K1Sha256TR>(
            "frost-secp256k1-tr",
            n,
            t,
            seconds,
            threads,
        ),
        SuiteName::Ristretto255 => bail!("ristretto255 keys decrypt; they do not sign"),
    }
}

/// Where the nodes' child process says they listen (`keyquorum bench
/// nodes` prints it as one JSON line).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct NodesInfo {
    pub urls: Vec<String>,
    pub key_file: std::path::PathBuf,
    pub key_id: String,
    pub ca_cert: std::path::PathBuf,
}

/// `keyquorum bench nodes` (hidden): a throw-away local cluster in this
/// process, announced on stdout, until stdin closes (the bench that
/// started it went away) or Ctrl-C.
pub(crate) async fn serve_nodes(
    nodes: u16,
    threshold: u16,
    pool: usize,
    peer_batches: usize,
) -> Result<()> {
    let (dir, c) =
        local_cluster_with("keyquorum-bench", nodes, threshold, pool, peer_batches).await?;
    let info = NodesInfo {
        urls: c.infos().keys().map(|id| c.url_of(*id)).collect(),
        key_file: c.admin_key_path(),
        key_id: c.admin.name().to_string(),
        ca_cert: c.ca_path(),
    };
    println!("{}", serde_json::to_string(&info)?);
    let closed = tokio::task::spawn_blocking(|| {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
    });
    tokio::select! {
        _ = closed => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    c.shutdown().await;
    drop(dir);
    Ok(())
}

/// The nodes' child process; stopped (stdin closed, then killed if it
/// lingers) on drop.
pub(crate) struct NodesChild {
    child: std::process::Child,
}

impl NodesChild {
    pub(crate) fn start(
        nodes: u16,
        threshold: u16,
        pool: usize,
        peer_batches: usize,
    ) -> Result<(Self, NodesInfo)> {
        use std::io::BufRead;
        let exe = std::env::current_exe().context("locating the keyquorum binary")?;
        let mut child = std::process::Command::new(exe)
            .args([
                "bench",
                "nodes",
                "--nodes",
                &nodes.to_string(),
                "--threshold",
                &threshold.to_string(),
                "--pool",
                &pool.to_string(),
                "--peer-batches",
                &peer_batches.to_string(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting the nodes' process")?;
        let out = child.stdout.take().context("the nodes' stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .context("reading the nodes' address")?;
        let me = Self { child };
        let info: NodesInfo = serde_json::from_str(line.trim())
            .with_context(|| format!("the nodes' process said {line:?}"))?;
        Ok((me, info))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds the nodes' process used so far (all its threads).
    pub(crate) fn cpu_seconds(&self) -> Result<f64> {
        proc_cpu_seconds(&format!("/proc/{}/stat", self.pid()))
    }
}

impl Drop for NodesChild {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn bench_sign(o: BenchOpts, json_out: bool) -> Result<()> {
    if o.concurrency.is_empty() || o.concurrency.contains(&0) {
        bail!("--concurrency needs positive values");
    }
    // The cluster: a running one, the nodes in a child process (default),
    // or in this process. Kept until the end: a local cluster's directory
    // goes with it.
    let _dir;
    let mut local = None;
    let mut child = None;
    let mut pids = o.node_pids.clone();
    let (urls, me, ca) = match (&o.url, &o.key_file) {
        (Some(u), Some(k)) => {
            let path = o.ca_cert.as_ref().context("--url needs --ca-cert")?;
            let ca = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            (vec![u.clone()], crate::cluster::load_key(k, &o.key_id)?, ca)
        }
        (None, None) if o.in_process => {
            let (d, c) = local_cluster_with(
                "keyquorum-bench",
                o.nodes,
                o.threshold,
                o.pool,
                o.peer_batches,
            )
            .await?;
            _dir = d;
            let urls = c.infos().keys().map(|id| c.url_of(*id)).collect();
            let me = c.admin.clone();
            let ca = c.ca_pem().into_bytes();
            local = Some(c);
            (urls, me, ca)
        }
        (None, None) => {
            let (c, info) = NodesChild::start(o.nodes, o.threshold, o.pool, o.peer_batches)?;
            pids = vec![c.pid()];
            if !json_out {
                println!("nodes: process {} ({} nodes)", c.pid(), info.urls.len());
            }
            child = Some(c);
            let ca = std::fs::read(&info.ca_cert)
                .with_context(|| format!("reading {}", info.ca_cert.display()))?;
            (
                info.urls,
                crate::cluster::load_key(&info.key_file, &info.key_id)?,
                ca,
            )
        }
        _ => bail!("give both --url and --key-file, or neither (then a local cluster starts)"),
    };
    let node_cpu = || -> Result<Option<f64>> {
        if pids.is_empty() {
            return Ok(None);
        }
        let mut sum = 0.0;
        for p in &pids {
            sum += process_cpu_seconds(*p)?;
        }
        Ok(Some(sum))
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
    let (n, t) = (key.members.len() as u16, key.threshold);
    let label = format!(
        "keyquorum {} {t}-of-{n}, nonce pool {}",
        o.suite.as_str(),
        if o.pool > 0 { "on" } else { "off" }
    );
    if o.warmup > 0.0 {
        run_load(&clients, &name, &key.public_key.0, o.suite, 4, o.warmup).await?;
    }
    let raw_seconds = o.seconds.clamp(0.5, 3.0);
    // Raw FROST on one thread before and after the cluster rows: its CPU
    // per signature is the bare cost the ratios divide by (the mean of
    // the two, so drift during the run shows up in neither side alone).
    let raw_before = raw_for(o.suite, n, t, raw_seconds, 1)?;
    let mut rows = Vec::new();
    for &c in &o.concurrency {
        let m0 = sign_metrics(&http, &urls).await;
        let (cpu0, gen0) = (node_cpu()?, crate::bench_he::cpu_seconds()?);
        let (lat, errors, secs) =
            run_load(&clients, &name, &key.public_key.0, o.suite, c, o.seconds).await?;
        let (cpu1, gen1) = (node_cpu()?, crate::bench_he::cpu_seconds()?);
        let m1 = sign_metrics(&http, &urls).await;
        let signed = m1.signatures - m0.signatures;
        let coordinator_ms =
            (signed > 0.0).then(|| (m1.sign_seconds - m0.sign_seconds) / signed * 1e3);
        let batches = m1.peer_batches - m0.peer_batches;
        let batched = m1.batched - m0.batched;
        let sigs = lat.len();
        let loadgen = (child.is_some() || !o.node_pids.is_empty()).then(|| (gen1 - gen0) / secs);
        let row = Row {
            what: label.clone(),
            concurrency: c,
            signatures: sigs,
            errors,
            seconds: secs,
            per_second: sigs as f64 / secs,
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
            coordinator_ms,
            cpu_ms_per_sig: match (cpu0, cpu1) {
                (Some(a), Some(b)) if sigs > 0 => Some((b - a) / sigs as f64 * 1e3),
                _ => None,
            },
            loadgen_cores: loadgen,
            batch_mean: (batches > 0.0).then(|| batched / batches),
            batched_per_sig: (signed > 0.0).then(|| batched / signed),
            r_cpu: None,
            r_thr: None,
        };
        rows.push(row);
    }
    let raw_after = raw_for(o.suite, n, t, raw_seconds, 1)?;
    let bare = (raw_before.cpu_per_sig + raw_after.cpu_per_sig) / 2.0;
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    for r in &mut rows {
        r.r_cpu = r.cpu_ms_per_sig.map(|c| c / 1e3 / bare);
        // What raw FROST would sign per second on the CPU the nodes had.
        r.r_thr = r
            .loadgen_cores
            .map(|g| r.per_second / ((cores - g).max(0.01) / bare));
    }
    let mut raws = vec![raw_before.row, raw_after.row];
    if cores > 1.0 {
        raws.push(raw_for(o.suite, n, t, raw_seconds, cores as usize)?.row);
    }
    if let Some(c) = local {
        c.shutdown().await;
    }
    drop(child);
    rows.extend(raws);
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "bare_cpu_ms_per_sig": bare * 1e3,
                "cores": cores,
                "rows": rows,
            }))?
        );
    } else {
        for r in &rows {
            print_row(r);
        }
        println!(
            "bare: raw FROST {t}-of-{n}, {:.3} ms CPU per signature (one thread, mean of before and after)",
            bare * 1e3
        );
    }
    Ok(())
}

fn print_row(r: &Row) {
    let opt = |v: Option<f64>, p: usize| v.map_or_else(|| "-".into(), |v| format!("{v:.p$}"));
    println!(
        "{:<44} c={:<3} {:>7.0} sig/s  p50 {:>7.2} ms  p99 {:>7.2} ms  cpu/sig {:>6} ms  R_cpu {:>5}  R_thr {:>5}  loadgen {:>4} cores  coord {:>6} ms  batch {:>5} x{:>5}/sig  ({} sigs, {} errors, {:.1} s)",
        r.what,
        r.concurrency,
        r.per_second,
        r.p50_ms,
        r.p99_ms,
        opt(r.cpu_ms_per_sig, 3),
        opt(r.r_cpu, 2),
        opt(r.r_thr, 2),
        opt(r.loadgen_cores, 2),
        opt(r.coordinator_ms, 2),
        opt(r.batch_mean, 1),
        opt(r.batched_per_sig, 2),
        r.signatures,
        r.errors,
        r.seconds
    );
}
