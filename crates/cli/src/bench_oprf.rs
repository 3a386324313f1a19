//! `keyquorum bench oprf`: threshold VOPRF evaluations end to end, in an
//! in-process local cluster: evaluations/s, p50/p99 at each concurrency,
//! and the process's CPU per evaluation (the nodes *and* the load
//! generator, including the client's blinding, proof check and
//! finalisation) against two costs measured in the same run:
//!
//! - **bare**: one server holding the whole key answers (`Z = k·M` and an
//!   RFC 9497 proof) and the client checks the proof: the cost of one
//!   VOPRF evaluation with no threshold at all;
//! - **math**: the same answer made jointly by `t` holders in one thread
//!   (both rounds of every member and the aggregation with its checks):
//!   the group operations the threshold protocol cannot avoid.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::scalar::Scalar;
use keyquorum_client::Client;
use keyquorum_core::oprf::{self, Element};
use keyquorum_core::{local, ParticipantId, Ristretto255, SessionId};
use keyquorum_wire::oprf::CreateOprfKeyRequest;
use rand_core::OsRng;
use serde_json::json;

use crate::bench::{drive, local_cluster, percentile};
use crate::bench_he::cpu_seconds;

/// What to measure.
#[derive(Debug, Clone)]
pub(crate) struct OprfBenchOpts {
    pub nodes: u16,
    pub threshold: u16,
    pub concurrency: Vec<usize>,
    pub seconds: f64,
}

fn random_scalar() -> Scalar {
    let mut wide = [0u8; 64];
    rand_core::RngCore::fill_bytes(&mut OsRng, &mut wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// Seconds of CPU per call of `f`, over about half a second.
fn per_call(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let t0 = cpu_seconds()?;
    let w0 = Instant::now();
    let mut n = 0u32;
    while w0.elapsed() < Duration::from_millis(500) || n < 20 {
        f()?;
        n += 1;
    }
    Ok((cpu_seconds()? - t0) / f64::from(n))
}

/// One server's evaluation and proof, and the client's check.
fn bare() -> Result<f64> {
    let k = random_scalar();
    let pk = Element::from_bytes(&(&k * RISTRETTO_BASEPOINT_TABLE).compress().to_bytes())?;
    let m = oprf::blind(b"bench", &random_scalar())?;
    per_call(|| {
        let z = Element::from_bytes(&(k * m.point()).compress().to_bytes())?;
        let proof = oprf::generate_proof(&k, &m, &z, &random_scalar());
        oprf::verify_proof(&pk, &m, &z, &proof)?;
        Ok(())
    })
}

/// The threshold protocol's math for `t` of `n`, in one thread.
fn math(t: u16, n: u16) -> Result<f64> {
    let members: BTreeSet<ParticipantId> = ParticipantId::range(n).collect();
    let h = local::dkg::<Ristretto255, _>(SessionId([3; 32]), t, &members, &mut OsRng)?;
    let set: Vec<ParticipantId> = members.iter().copied().take(usize::from(t)).collect();
    let m = oprf::blind(b"bench", &random_scalar())?;
    per_call(|| {
        let mut nonces = Vec::new();
        let mut commits = Vec::new();
        for id in &set {
            let Some(share) = h.shares.get(id) else {
                bail!("no share")
            };
            let (nc, cm) = oprf::commit(share, &m, &mut OsRng);
            nonces.push((share, nc));
            commits.push(cm);
        }
        let package = oprf::Package::new(m, commits)?;
        let responses = nonces
            .into_iter()
            .map(|(share, nc)| oprf::respond(share, &h.group, nc, &package))
            .collect::<Result<Vec<_>, _>>()?;
        oprf::aggregate(&h.group, &package, &responses)?;
        Ok(())
    })
}

pub(crate) async fn bench_oprf(o: OprfBenchOpts, json_out: bool) -> Result<()> {
    if o.concurrency.is_empty() || o.concurrency.contains(&0) {
        bail!("--concurrency needs positive values");
    }
    let (_dir, c) = local_cluster("keyquorum-bench-oprf", o.nodes, o.threshold, 0).await?;
    let urls: Vec<String> = c.infos().keys().map(|id| c.url_of(*id)).collect();
    let clients: Vec<Client> = urls
        .iter()
        .map(|u| Client::new(u, &c.admin, c.ca_pem().as_bytes()))
        .collect::<Result<_, _>>()?;
    let Some(first) = clients.first() else {
        bail!("no node");
    };
    let key = first
        .oprf_create(&CreateOprfKeyRequest {
            name: "bench".into(),
            threshold: Some(o.threshold),
            members: None,
        })
        .await?;
    let bare_s = bare()?;
    let math_s = math(key.threshold, u16::try_from(key.members.len())?)?;
    let pk = key.public_key.0.clone();
    let mut rows = Vec::new();
    for &conc in &o.concurrency {
        let clients = clients.clone();
        let pk = pk.clone();
        let load = drive(conc, o.seconds, move |w, i| {
            let via = clients.get(w % clients.len().max(1)).cloned();
            let pk = pk.clone();
            async move {
                let Some(via) = via else { return false };
                let input = format!("{w}/{i}");
                via.oprf_evaluate("bench", input.as_bytes(), &pk)
                    .await
                    .is_ok()
            }
        })
        .await?;
        let (lat, cpu, elapsed) = (&load.lat, load.cpu, load.elapsed);
        let n = lat.len().max(1) as f64;
        rows.push(json!({
            "concurrency": conc,
            "evaluations": lat.len(),
            "failed": load.failed,
            "per_s": lat.len() as f64 / elapsed,
            "p50_ms": percentile(lat, 0.5),
            "p99_ms": percentile(lat, 0.99),
            "cpu_ms_per_evaluation": cpu / n * 1e3,
            "cpu_over_bare": cpu / n / bare_s,
            "cpu_over_math": cpu / n / math_s,
        }));
    }
    let out = json!({
        "threshold": key.threshold,
        "members": key.members.len(),
        "bare_ms": bare_s * 1e3,
        "math_ms": math_s * 1e3,
        "math_over_bare": math_s / bare_s,
        "evaluate": rows,
    });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{}-of-{}: bare evaluation (one server, proof, client check) {:.3} ms; threshold math \
             (both rounds, aggregation, one thread) {:.3} ms = {:.2}× bare",
            key.threshold,
            key.members.len(),
            bare_s * 1e3,
            math_s * 1e3,
            math_s / bare_s
        );
        for r in &rows {
            println!(
                "concurrency {:>3}: {:>7.1} eval/s  p50 {:>7.2} ms  p99 {:>7.2} ms  CPU {:.2} ms/eval = \
                 {:.2}× bare, {:.2}× the math ({} failed)",
                r["concurrency"],
                r["per_s"].as_f64().unwrap_or(0.0),
                r["p50_ms"].as_f64().unwrap_or(0.0),
                r["p99_ms"].as_f64().unwrap_or(0.0),
                r["cpu_ms_per_evaluation"].as_f64().unwrap_or(0.0),
                r["cpu_over_bare"].as_f64().unwrap_or(0.0),
                r["cpu_over_math"].as_f64().unwrap_or(0.0),
                r["failed"],
            );
        }
    }
    c.shutdown().await;
    Ok(())
}
