//! `keyquorum bench recovery`: credential guardians end to end in an
//! in-process local cluster, at each concurrency, a fixed number of
//! operations each (reset requests are rate-limited per account and per
//! client, so each request uses its own account and client pair within
//! the limits):
//!
//! - **reset**: a reset request opened, its `app` fragments read from the
//!   inbox, the package fetched, the token assembled and checked: p50/p99
//!   and the share of each step; against the **bare** cost, measured in
//!   the same run: one Ed25519 signature and the `t` fragments sealed and
//!   opened in one thread (what a single server issuing the same token
//!   over the same sealed channels would do).
//! - **pin**: a PIN recovery (record read, Argon2id, counted guess with
//!   the threshold evaluation, unlock proofs, `t` sealed shares, secret
//!   decrypted): p50/p99; against Argon2id alone at the same cost, one
//!   node round trip (a read after a read barrier) and one commit as a
//!   client sees it (a client record created), all measured in the same
//!   run at idle. Both flows make two commits in sequence (reset: the
//!   request, then the signers' inbox statements; PIN: the guess, then the
//!   guardians' unlock statements) and three client round trips: the
//!   shares printed are those counts times the idle costs, estimates of
//!   where the time goes, not a profile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keyquorum_client::recovery::{assemble_reset, Recovered, ResetClaim};
use keyquorum_client::{Client, ClientKey};
use keyquorum_core::oprf::pin::{stretch, Stretch};
use keyquorum_core::oprf::reset::{DeviceSecret, Fragment};
use keyquorum_wire::api::CreateClientRequest;
use keyquorum_wire::recovery::{CreateAccountRequest, ResetRequest};
use keyquorum_wire::Hex32;
use rand_core::OsRng;
use serde_json::json;

use crate::bench::{local_cluster, percentile};
use crate::bench_he::cpu_seconds;

/// What to measure.
#[derive(Debug, Clone)]
pub(crate) struct RecoveryBenchOpts {
    pub nodes: u16,
    pub threshold: u16,
    pub concurrency: Vec<usize>,
    pub resets: usize,
    pub pins: usize,
}

/// Latencies (sorted), failures, wall and CPU seconds of `total` calls of
/// `op` by `conc` workers.
async fn run_n<F, Fut>(conc: usize, total: usize, op: F) -> Result<(Vec<Duration>, usize, f64, f64)>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_seconds()?;
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..conc)
        .map(|w| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut failed = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let s = Instant::now();
                    if op(w, i).await {
                        lat.push(s.elapsed());
                    } else {
                        failed += 1;
                    }
                }
                (lat, failed)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await?;
        lat.extend(l);
        failed += f;
    }
    lat.sort_unstable();
    Ok((
        lat,
        failed,
        t0.elapsed().as_secs_f64(),
        cpu_seconds()? - cpu0,
    ))
}

fn mean_ms(f: impl Fn() -> Result<()>, times: u32) -> Result<f64> {
    let t0 = Instant::now();
    for _ in 0..times {
        f()?;
    }
    Ok(t0.elapsed().as_secs_f64() * 1e3 / f64::from(times))
}

/// One Ed25519 signature and `t` fragments sealed and opened.
fn bare_reset(t: u16) -> Result<f64> {
    let sk = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let device = DeviceSecret::generate();
    let pk = device.public_key();
    mean_ms(
        || {
            use ed25519_dalek::Signer as _;
            let sig = sk.sign(b"keyquorum-reset-v1 bench message");
            for i in 0..t {
                let f = Fragment::seal(&pk, "bench", [1; 16], i + 1, &sig.to_bytes())?;
                f.open(&device, "bench")?;
            }
            Ok(())
        },
        200,
    )
}

/// A client without permissions, registered through `admin`.
async fn plain_client(admin: &Client, name: String) -> Result<ClientKey> {
    let key = ClientKey::generate(name.clone(), &mut OsRng);
    admin
        .create_client(&CreateClientRequest {
            name,
            public_key: Hex32(key.public_key()),
            admin: false,
            operator: false,
            sign_keys: Vec::new(),
            recovery: false,
            expires_ms: None,
        })
        .await?;
    Ok(key)
}

/// Milliseconds of each reset step (open, inbox and package, assemble),
/// summed over a run.
#[derive(Default)]
struct Steps {
    open: std::sync::Mutex<(f64, f64, f64)>,
}

pub(crate) async fn bench_recovery(o: RecoveryBenchOpts, json_out: bool) -> Result<()> {
    if o.concurrency.is_empty() || o.concurrency.contains(&0) {
        bail!("--concurrency needs positive values");
    }
    let (_dir, c) = local_cluster("keyquorum-bench-recovery", o.nodes, o.threshold, 0).await?;
    let urls: Vec<String> = c.infos().keys().map(|id| c.url_of(*id)).collect();
    let ca = c.ca_pem();
    let admins: Vec<Client> = urls
        .iter()
        .map(|u| Client::new(u, &c.admin, ca.as_bytes()))
        .collect::<Result<_, _>>()?;
    let Some(admin) = admins.first().cloned() else {
        bail!("no node");
    };
    let device = Arc::new(DeviceSecret::generate());
    let account = |name: String| CreateAccountRequest {
        account: name,
        guardians: None,
        threshold: None,
        channels: vec!["app".into()],
        device_key: Hex32(device.public_key()),
        measurements: None,
    };

    // ----- resets: each (client, account) pair opens two, each account
    // serves one pair (the rate limits: 5 per account, 2 per client and
    // account, 30 per client, per hour).
    let rows = o.concurrency.len();
    let pairs = (o.resets * rows).div_ceil(2);
    let nclients = pairs.div_ceil(14).max(1);
    let mut clients = Vec::with_capacity(nclients);
    for j in 0..nclients {
        clients.push(plain_client(&admin, format!("bench-reset-{j}")).await?);
    }
    let mut pinned = Vec::with_capacity(pairs);
    let mut t = 2;
    for a in 0..pairs {
        let info = admin
            .recovery_account_create(&account(format!("r{a}")))
            .await?;
        t = info.threshold;
        pinned.push(info.reset_public_key.0);
    }
    let bare_reset_ms = bare_reset(t)?;
    // One commit as a client sees it at idle: a client record created
    // (one command through consensus, applied here).
    let c0 = Instant::now();
    for j in 0..10 {
        plain_client(&admin, format!("bench-commit-{j}")).await?;
    }
    let commit_ms = c0.elapsed().as_secs_f64() * 1e3 / 10.0;
    let clients = Arc::new(clients);
    let pinned = Arc::new(pinned);
    let urls = Arc::new(urls);
    let mut reset_rows = Vec::new();
    let mut base = 0usize;
    for &conc in &o.concurrency {
        let steps = Arc::new(Steps::default());
        let (clients, pinned, urls, device, steps2, ca) = (
            clients.clone(),
            pinned.clone(),
            urls.clone(),
            device.clone(),
            steps.clone(),
            ca.clone(),
        );
        let start = base;
        let (lat, failed, elapsed, cpu) = run_n(conc, o.resets, move |_, i| {
            let k = start + i;
            let a = k / 2;
            let who = clients.get(a % clients.len()).cloned();
            let url = urls.get(k % urls.len().max(1)).cloned();
            let (pinned, device, steps, ca) =
                (pinned.clone(), device.clone(), steps2.clone(), ca.clone());
            async move {
                let (Some(who), Some(url)) = (who, url) else {
                    return false;
                };
                let Ok(via) = Client::new(&url, &who, ca.as_bytes()) else {
                    return false;
                };
                let name = format!("r{a}");
                let hash = [u8::try_from(k % 251).unwrap_or(0); 32];
                let t0 = Instant::now();
                let Ok(r) = via
                    .recovery_reset(
                        &name,
                        &ResetRequest {
                            credential_hash: Hex32(hash),
                            ttl_s: None,
                        },
                    )
                    .await
                else {
                    return false;
                };
                let t1 = Instant::now();
                let (Ok(inbox), Ok(package)) = (
                    via.recovery_inbox(&name).await,
                    via.recovery_reset_package(&name, &hex::encode(&r.request_id.0))
                        .await,
                ) else {
                    return false;
                };
                let t2 = Instant::now();
                let frags: Vec<String> = inbox
                    .fragments
                    .into_iter()
                    .filter(|f| f.request_id == r.request_id)
                    .map(|f| f.fragment)
                    .collect();
                let Ok(id) = <[u8; 16]>::try_from(r.request_id.0.as_slice()) else {
                    return false;
                };
                let claim = ResetClaim {
                    account: name,
                    request_id: id,
                    credential_hash: hash,
                };
                let Some(pk) = pinned.get(a) else {
                    return false;
                };
                let ok = assemble_reset(&package, &claim, pk, &frags, &device).is_ok();
                let t3 = Instant::now();
                if let Ok(mut s) = steps.open.lock() {
                    s.0 += (t1 - t0).as_secs_f64() * 1e3;
                    s.1 += (t2 - t1).as_secs_f64() * 1e3;
                    s.2 += (t3 - t2).as_secs_f64() * 1e3;
                }
                ok
            }
        })
        .await?;
        base += o.resets;
        let n = lat.len().max(1) as f64;
        let (open, fetch, assemble) = steps.open.lock().map(|s| *s).unwrap_or_default();
        let total = (open + fetch + assemble).max(f64::MIN_POSITIVE);
        reset_rows.push(json!({
            "concurrency": conc,
            "resets": lat.len(),
            "failed": failed,
            "per_s": lat.len() as f64 / elapsed,
            "p50_ms": percentile(&lat, 0.5),
            "p99_ms": percentile(&lat, 0.99),
            "p50_over_bare": percentile(&lat, 0.5) / bare_reset_ms,
            "cpu_ms_per_reset": cpu / n * 1e3,
            "commits_share_of_p50": 2.0 * commit_ms / percentile(&lat, 0.5),
            "share_open": open / total,
            "share_fetch": fetch / total,
            "share_assemble": assemble / total,
        }));
    }

    // ----- PIN recovery: one account per worker, each with a secret.
    let workers = o.concurrency.iter().copied().max().unwrap_or(1);
    let cost = Stretch::default();
    let mut pin_keys = Vec::with_capacity(workers);
    for w in 0..workers {
        let name = format!("p{w}");
        admin
            .recovery_account_create(&account(name.clone()))
            .await?;
        let info = admin
            .recovery_secret_register(&name, b"482913", b"a secret of the bench", 10, &cost, None)
            .await
            .with_context(|| format!("registering {name}"))?;
        pin_keys.push(info.public_key.0);
    }
    let argon_ms = mean_ms(
        || {
            stretch(b"482913", "p0", &[1; 16], &cost)?;
            Ok(())
        },
        5,
    )?;
    let rt0 = Instant::now();
    for _ in 0..10 {
        admin.recovery_secret("p0").await?;
    }
    let round_trip_ms = rt0.elapsed().as_secs_f64() * 1e3 / 10.0;
    let pin_keys = Arc::new(pin_keys);
    let admins = Arc::new(admins);
    let mut pin_rows = Vec::new();
    for &conc in &o.concurrency {
        let (pin_keys, admins) = (pin_keys.clone(), admins.clone());
        let (lat, failed, elapsed, cpu) = run_n(conc, o.pins, move |w, i| {
            // Each worker on its own account (guesses on one account are
            // one at a time).
            let via = admins.get(i % admins.len().max(1)).cloned();
            let pk = pin_keys.get(w).cloned();
            async move {
                let (Some(via), Some(pk)) = (via, pk) else {
                    return false;
                };
                matches!(
                    via.recovery_secret_recover(&format!("p{w}"), b"482913", &pk)
                        .await,
                    Ok(Recovered::Secret(_))
                )
            }
        })
        .await?;
        let n = lat.len().max(1) as f64;
        let p50 = percentile(&lat, 0.5);
        pin_rows.push(json!({
            "concurrency": conc,
            "recoveries": lat.len(),
            "failed": failed,
            "per_s": lat.len() as f64 / elapsed,
            "p50_ms": p50,
            "p99_ms": percentile(&lat, 0.99),
            "cpu_ms_per_recovery": cpu / n * 1e3,
            "argon2_share_of_p50": argon_ms / p50,
            "commits_share_of_p50": 2.0 * commit_ms / p50,
            "round_trips_share_of_p50": 3.0 * round_trip_ms / p50,
            "p50_over_argon2": p50 / argon_ms,
            "p50_over_round_trip": p50 / round_trip_ms,
        }));
    }
    let out = json!({
        "threshold": t,
        "nodes": o.nodes,
        "bare_reset_ms": bare_reset_ms,
        "argon2_ms": argon_ms,
        "round_trip_ms": round_trip_ms,
        "commit_ms": commit_ms,
        "reset": reset_rows,
        "pin": pin_rows,
    });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{t}-of-{} guardians: bare reset (one Ed25519 signature, {t} fragments sealed and \
             opened) {bare_reset_ms:.3} ms; Argon2id {argon_ms:.1} ms; one node round trip \
             {round_trip_ms:.2} ms; one commit {commit_ms:.2} ms",
            o.nodes
        );
        for r in &reset_rows {
            println!(
                "reset c={:>3}: {:>6.1}/s  p50 {:>7.2} ms ({:.0}× bare)  p99 {:>7.2} ms  steps: open \
                 {:.0}%, inbox+package {:.0}%, assemble {:.0}%; two commits {:.0}% of p50  ({} failed)",
                r["concurrency"],
                r["per_s"].as_f64().unwrap_or(0.0),
                r["p50_ms"].as_f64().unwrap_or(0.0),
                r["p50_over_bare"].as_f64().unwrap_or(0.0),
                r["p99_ms"].as_f64().unwrap_or(0.0),
                100.0 * r["share_open"].as_f64().unwrap_or(0.0),
                100.0 * r["share_fetch"].as_f64().unwrap_or(0.0),
                100.0 * r["share_assemble"].as_f64().unwrap_or(0.0),
                100.0 * r["commits_share_of_p50"].as_f64().unwrap_or(0.0),
                r["failed"],
            );
        }
        for r in &pin_rows {
            println!(
                "pin   c={:>3}: {:>6.1}/s  p50 {:>7.2} ms ({:.2}× Argon2id; of it Argon2id {:.0}%, two \
                 commits {:.0}%, three client round trips {:.0}%)  p99 {:>7.2} ms  ({} failed)",
                r["concurrency"],
                r["per_s"].as_f64().unwrap_or(0.0),
                r["p50_ms"].as_f64().unwrap_or(0.0),
                r["p50_over_argon2"].as_f64().unwrap_or(0.0),
                100.0 * r["argon2_share_of_p50"].as_f64().unwrap_or(0.0),
                100.0 * r["commits_share_of_p50"].as_f64().unwrap_or(0.0),
                100.0 * r["round_trips_share_of_p50"].as_f64().unwrap_or(0.0),
                r["p99_ms"].as_f64().unwrap_or(0.0),
                r["failed"],
            );
        }
    }
    c.shutdown().await;
    Ok(())
}
