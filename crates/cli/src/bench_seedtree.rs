//! `keyquorum bench seedtree`: a federated hash-based signing tree end to
//! end, in an in-process local cluster.
//!
//! The nodes run in a child process (as for `bench sign` and `bench he`),
//! so their CPU is told apart from this process's (the load generator).
//!
//! - **Key generation**: the wall-clock time and the nodes' CPU for
//!   `seedtree create`, against the physical limit measured in the same
//!   run: the SHA-256 compressions the tree needs (every leaf's one-time
//!   key, the leaf and interior nodes) at this CPU's bare compression rate
//!   on one core (`lms::compression_rate`: `sha2::compress256` in a loop,
//!   the best of 1, 2 and 4 independent states in flight; before and
//!   after).
//! - **Signing**: signatures/s, p50/p99 at each concurrency, and the
//!   nodes' CPU per signature against the bare cost measured in the same
//!   run: rebuilding one leaf's key from `t` shares, signing and verifying
//!   it (`lms::federation::sign_leaf`), which the client does; the load
//!   generator's CPU (that, the HPKE opening of the shares, request
//!   signing, HTTP) is reported beside it. Beside the bare cost, floors
//!   measured in the same run: the share handling any protocol for it
//!   needs on the members (`t` members each checking the client's signed
//!   request and sealing its share to the client), against the nodes'
//!   CPU; and that with the bare signature and the client's opening of the
//!   shares, against all the CPU (nodes and load generator).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use keyquorum_client::Client;
use keyquorum_core::lms::federation::{self, sign_leaf, Layout, LeafSecret};
use keyquorum_core::lms::hss::HssPublicKey;
use keyquorum_core::lms::tree::{LmsPublicKey, Subtree};
use keyquorum_core::lms::{LmotsType, LmsType};
use keyquorum_core::ParticipantId;
use keyquorum_wire::seedtree::CreateSeedtreeRequest;
use rand_core::OsRng;
use serde_json::json;

use crate::bench::{drive, percentile, NodesChild};
use crate::bench_he::cpu_seconds;

/// What to measure.
#[derive(Debug, Clone)]
pub(crate) struct SeedtreeBenchOpts {
    pub nodes: u16,
    pub threshold: u16,
    pub height: u8,
    pub winternitz: u8,
    pub subtrees: Option<u32>,
    pub concurrency: Vec<usize>,
    pub seconds: f64,
}

/// SHA-256 compressions per second on one core (the best of 1, 2 and 4
/// in flight).
fn compression_rate() -> f64 {
    keyquorum_core::lms::compression_rate(2_000_000)
}

/// CPU seconds of one bare signature: `t` shares to a leaf's key, sign,
/// verify (a height-5 tree built here).
fn bare_signature(ots: LmotsType, threshold: u16, members: u16) -> Result<f64> {
    let layout = Layout::new(LmsType::H5, ots, 1)?;
    let id = [0x5a; 16];
    let built = federation::build(&layout, &id, 0, &mut OsRng)?;
    let sub = Subtree::from_leaves(&id, LmsType::H5, 0, &built.keys)?;
    let public = HssPublicKey::single(LmsPublicKey {
        lms: LmsType::H5,
        ots,
        id,
        root: sub.root(),
    });
    let holders: BTreeSet<ParticipantId> = (1..=members)
        .map(ParticipantId::new)
        .collect::<Result<_, _>>()?;
    let shares: Vec<BTreeMap<ParticipantId, federation::LeafShare>> = built
        .secrets
        .iter()
        .map(|s: &LeafSecret| {
            s.share(threshold, &holders, &mut OsRng)
                .map(|m| m.into_iter().take(usize::from(threshold)).collect())
        })
        .collect::<Result<_, _>>()?;
    let rounds = 8u32;
    let t0 = cpu_seconds()?;
    let w0 = Instant::now();
    for round in 0..rounds {
        for (q, set) in shares.iter().enumerate() {
            let q = q as u32;
            let path = sub.leaf_path(LmsType::H5, q)?;
            let node = sub.node(32 + q).unwrap_or_default();
            let sig = sign_leaf(&public, q, set, &node, &path, &round.to_be_bytes())?;
            std::hint::black_box(sig);
        }
    }
    let n = f64::from(rounds) * shares.len() as f64;
    Ok(((cpu_seconds()? - t0) / n).max(w0.elapsed().as_secs_f64() / n))
}

/// The share handling one signature needs beyond the bare signature,
/// whatever the protocol around it, in CPU seconds: the members' part
/// (each of `t` members checks the client's signed request, one Ed25519
/// `verify_strict` over a request signature base of typical size, and
/// seals its share to the client's key with HPKE as `seedtree::member`
/// does) and the client's (opening the `t` sealed shares). Recording a
/// release durably is a write, not CPU, and is left out: a lower bound.
/// Each part runs for half a second at least (the CPU clock ticks in
/// 10 ms) and counts the smaller of CPU and wall time per round.
struct ShareHandling {
    members: f64,
    client: f64,
}

fn share_handling(threshold: u16) -> Result<ShareHandling> {
    use ed25519_dalek::{Signer, SigningKey};
    use hpke::aead::ChaCha20Poly1305;
    use hpke::kdf::HkdfSha256;
    use hpke::kem::X25519HkdfSha256;
    use hpke::{Kem, OpModeR, OpModeS};
    fn timed(mut round: impl FnMut() -> Result<()>) -> Result<f64> {
        let (t0, w0) = (cpu_seconds()?, Instant::now());
        let mut n = 0u32;
        while n < 16 || w0.elapsed().as_secs_f64() < 0.5 {
            round()?;
            n += 1;
        }
        let n = f64::from(n);
        Ok(((cpu_seconds()? - t0) / n).min(w0.elapsed().as_secs_f64() / n))
    }
    let client = SigningKey::generate(&mut OsRng);
    let base = [0x42u8; 400];
    let signature = client.sign(&base);
    let public = client.verifying_key();
    let mut rng = rand_core_09::UnwrapErr(rand_core_09::OsRng);
    let (sk, pk) = X25519HkdfSha256::gen_keypair(&mut rng);
    let share = [7u8; 32];
    let aad = |m: u16| [b"leaf".as_slice(), &m.to_be_bytes()].concat();
    let mut sealed = Vec::new();
    let members = timed(|| {
        sealed.clear();
        for m in 0..threshold {
            if public
                .verify_strict(std::hint::black_box(&base), &signature)
                .is_err()
            {
                bail!("the request signature did not verify");
            }
            sealed.push(
                hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
                    &OpModeS::Base,
                    &pk,
                    b"bench",
                    &share,
                    &aad(m),
                    &mut rng,
                )
                .map_err(|e| anyhow::anyhow!("seal: {e}"))?,
            );
        }
        Ok(())
    })?;
    let client = timed(|| {
        for (m, (enc, ct)) in (0..threshold).zip(&sealed) {
            let opened = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
                &OpModeR::Base,
                &sk,
                enc,
                b"bench",
                ct,
                &aad(m),
            )
            .map_err(|e| anyhow::anyhow!("open: {e}"))?;
            if opened != share {
                bail!("a share did not open to itself");
            }
        }
        Ok(())
    })?;
    Ok(ShareHandling { members, client })
}

pub(crate) async fn bench_seedtree(o: SeedtreeBenchOpts, json_out: bool) -> Result<()> {
    if o.concurrency.is_empty() || o.concurrency.contains(&0) {
        bail!("--concurrency needs positive values");
    }
    let lms = LmsType::from_height(o.height)
        .ok_or_else(|| anyhow::anyhow!("--height 5, 10, 15 or 20"))?;
    let ots = LmotsType::from_w(o.winternitz)
        .ok_or_else(|| anyhow::anyhow!("--winternitz 1, 2, 4 or 8"))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let (nodes, nodes_info) = NodesChild::start(
        o.nodes,
        o.threshold,
        0,
        keyquorum_node::config::NodeConfig::DEFAULT_PEER_BATCHES,
    )?;
    if !json_out {
        println!(
            "nodes: process {} ({} nodes)",
            nodes.pid(),
            nodes_info.urls.len()
        );
    }
    let ca = std::fs::read(&nodes_info.ca_cert)
        .with_context(|| format!("reading {}", nodes_info.ca_cert.display()))?;
    let key = crate::cluster::load_key(&nodes_info.key_file, &nodes_info.key_id)?;
    let clients: Vec<Client> = nodes_info
        .urls
        .iter()
        .map(|u| Client::new(u, &key, &ca))
        .collect::<Result<_, _>>()?;
    let Some(first) = clients.first() else {
        bail!("no node");
    };

    // Shares and nodes are kept in rows once the log is at their rules
    // (the entry after every member's boot: an audit tick within 5 s).
    let until = Instant::now() + std::time::Duration::from_secs(20);
    while first.status().await.map(|s| s.rules).unwrap_or(0)
        < keyquorum_node::seedtree::rows::ROWS_RULES
    {
        if Instant::now() > until {
            bail!("the cluster's log did not reach the rules of rows in 20 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let rate_before = compression_rate();
    let leaves = u64::from(lms.leaves());
    let compressions = leaves * (ots.keygen_hashes() + 1) + (leaves - 1) * 2;
    let cpu0 = nodes.cpu_seconds()?;
    let w0 = Instant::now();
    let info = first
        .seedtree_create(&CreateSeedtreeRequest {
            name: "bench".into(),
            height: o.height,
            winternitz: o.winternitz,
            subtrees: o.subtrees,
            threshold: Some(o.threshold),
            members: None,
        })
        .await?;
    let keygen_wall = w0.elapsed().as_secs_f64();
    let keygen_cpu = nodes.cpu_seconds()? - cpu0;
    let rate = (rate_before + compression_rate()) / 2.0;
    let limit = compressions as f64 / rate;
    let keygen = json!({
        "height": o.height,
        "winternitz": o.winternitz,
        "subtrees": info.subtrees,
        "members": info.members.len(),
        "leaves": leaves,
        "compressions": compressions,
        "compressions_per_s_one_core": rate,
        "limit_one_core_s": limit,
        "wall_s": keygen_wall,
        "cpu_s": keygen_cpu,
        "cpu_over_limit": keygen_cpu / limit,
        "wall_over_limit_on_all_cores": keygen_wall / (limit / cores),
        "cores": cores,
    });

    let bare = bare_signature(ots, o.threshold, o.nodes)?;
    // The floors: the members' share handling for the nodes' CPU; with the
    // bare signature and the client's openings, for all of it.
    let handling = share_handling(o.threshold)?;
    let floor = bare + handling.members + handling.client;
    let pk = info.public_key.0.clone();
    let mut rows = Vec::new();
    for &conc in &o.concurrency {
        let clients = clients.clone();
        let pk = pk.clone();
        let node_cpu0 = nodes.cpu_seconds()?;
        let load = drive(conc, o.seconds, move |w, i| {
            let via = clients.get(w % clients.len().max(1)).cloned();
            let pk = pk.clone();
            async move {
                let Some(via) = via else { return false };
                let msg = format!("{w}/{i}");
                via.seedtree_sign("bench", msg.as_bytes(), Some(&pk))
                    .await
                    .is_ok()
            }
        })
        .await?;
        let cpu = nodes.cpu_seconds()? - node_cpu0;
        let lat = &load.lat;
        let n = lat.len().max(1) as f64;
        rows.push(json!({
            "concurrency": conc,
            "signatures": lat.len(),
            "per_s": lat.len() as f64 / load.elapsed,
            "p50_ms": percentile(lat, 0.5),
            "p99_ms": percentile(lat, 0.99),
            "cpu_ms_per_signature": cpu / n * 1e3,
            "load_generator_cpu_ms_per_signature": load.cpu / n * 1e3,
            "failed": load.failed,
            "bare_ms": bare * 1e3,
            "cpu_over_bare": cpu / n / bare,
            "members_floor_ms": handling.members * 1e3,
            "cpu_over_members_floor": cpu / n / handling.members,
            "floor_ms": floor * 1e3,
            "all_cpu_over_floor": (cpu + load.cpu) / n / floor,
        }));
    }
    let out = json!({ "keygen": keygen, "sign": rows });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "keygen H{}/W{} on {} members ({} subtrees): {:.2} s wall, {:.2} s node CPU; limit {:.2} s on one core \
             ({:.2} M compressions at {:.2} M/s): CPU {:.2}× the limit, wall {:.2}× the limit spread on {} cores",
            o.height,
            o.winternitz,
            info.members.len(),
            info.subtrees,
            keygen_wall,
            keygen_cpu,
            limit,
            compressions as f64 / 1e6,
            rate / 1e6,
            keygen_cpu / limit,
            keygen_wall / (limit / cores),
            cores
        );
        println!(
            "bare signature (t shares → key, sign, verify): {:.3} ms",
            bare * 1e3
        );
        println!(
            "floors, t = {}: the members' share handling (t × (client request check, HPKE seal)) {:.3} ms; \
             with the bare signature and the client's t HPKE openings {:.3} ms",
            o.threshold,
            handling.members * 1e3,
            floor * 1e3
        );
        for r in &rows {
            println!(
                "concurrency {:>3}: {:>7.1} sig/s  p50 {:>7.2} ms  p99 {:>7.2} ms  node CPU {:.2} ms/sig = {:.2}× bare, {:.2}× the members' floor  (load generator {:.2} ms/sig; all CPU {:.2}× the whole floor; {} failed)",
                r["concurrency"],
                r["per_s"].as_f64().unwrap_or(0.0),
                r["p50_ms"].as_f64().unwrap_or(0.0),
                r["p99_ms"].as_f64().unwrap_or(0.0),
                r["cpu_ms_per_signature"].as_f64().unwrap_or(0.0),
                r["cpu_over_bare"].as_f64().unwrap_or(0.0),
                r["cpu_over_members_floor"].as_f64().unwrap_or(0.0),
                r["load_generator_cpu_ms_per_signature"]
                    .as_f64()
                    .unwrap_or(0.0),
                r["all_cpu_over_floor"].as_f64().unwrap_or(0.0),
                r["failed"],
            );
        }
    }
    drop(nodes);
    Ok(())
}
