//! Our whole signing path against the same path on `frost-ed25519` directly,
//! as a ratio that machine noise cannot blur: the two are timed in
//! alternating blocks in one process and the median of the per-block ratios is
//! reported. The path is: every signer commits (round 1), the coordinator
//! builds the package, every signer signs (round 2), the coordinator
//! aggregates, and the signature is verified from its bytes.
//!
//! ```text
//! cargo run --release -p keyquorum-core --example sign_overhead
//! # instruction counts instead of time (deterministic):
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/sign_overhead --only keyquorum --size 2-of-3 --iters 200
//! ```
#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "measurement tool"
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use frost_ed25519 as frost;
use keyquorum_core::local::Holders;
use keyquorum_core::sign::{self, Coordinator};
use keyquorum_core::SessionId;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

#[path = "../benches/support/mod.rs"]
mod support;
use support::*;

const MSG: &[u8] = b"benchmark message, 32 bytes long";

fn ours(h: &Holders<C>, t: u16, rng: &mut ChaCha20Rng) {
    let signers = ids(1..=t);
    let mut nonces = Vec::new();
    let mut commitments = Vec::new();
    for s in &signers {
        let (n, c) = sign::commit(&h.shares[s], rng);
        nonces.push((*s, n));
        commitments.push(c);
    }
    let mut coord = Coordinator::new(&h.group, SessionId([5; 32]), MSG, commitments).unwrap();
    let package = coord.package().clone();
    for (s, n) in nonces {
        let share = n.sign(&h.shares[&s], &package).unwrap();
        coord.receive(s, share).unwrap();
    }
    let sig = coord.finish().unwrap().to_bytes();
    h.group.verify(MSG, black_box(&sig)).unwrap();
}

struct Raw {
    keys: BTreeMap<frost::Identifier, frost::keys::KeyPackage>,
    pubkeys: frost::keys::PublicKeyPackage,
}

fn raw(r: &Raw, rng: &mut ChaCha20Rng) {
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for (id, kp) in &r.keys {
        let (n, c) = frost::round1::commit(kp.signing_share(), rng);
        nonces.insert(*id, n);
        commitments.insert(*id, c);
    }
    let package = frost::SigningPackage::new(commitments, MSG);
    let mut shares = BTreeMap::new();
    for (id, kp) in &r.keys {
        shares.insert(*id, frost::round2::sign(&package, &nonces[id], kp).unwrap());
    }
    let sig = frost::aggregate(&package, &shares, &r.pubkeys)
        .unwrap()
        .serialize()
        .unwrap();
    let sig = frost::Signature::deserialize(black_box(&sig)).unwrap();
    r.pubkeys.verifying_key().verify(MSG, &sig).unwrap();
}

fn raw_for(h: &Holders<C>, t: u16) -> Raw {
    Raw {
        keys: ids(1..=t)
            .iter()
            .map(|s| (s.to_frost(), h.shares[s].frost().clone()))
            .collect(),
        pubkeys: h.group.frost().clone(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let sizes: Vec<(u16, u16)> = match arg("--size") {
        Some(s) => {
            let (t, n) = s.split_once("-of-").expect("--size T-of-N");
            vec![(t.parse().unwrap(), n.parse().unwrap())]
        }
        None => SIZES.to_vec(),
    };
    let mut rng = ChaCha20Rng::seed_from_u64(11);

    if let Some(only) = arg("--only") {
        // For instruction counting: one side only, a fixed number of times.
        let iters: usize = arg("--iters").map_or(200, |s| s.parse().unwrap());
        for (t, n) in sizes {
            let h = holders(t, n);
            let r = raw_for(&h, t);
            for _ in 0..iters {
                match only.as_str() {
                    "keyquorum" => ours(&h, t, &mut rng),
                    "frost" => raw(&r, &mut rng),
                    other => panic!("--only keyquorum|frost, not {other}"),
                }
            }
        }
        return;
    }

    println!(
        "| t-of-n | keyquorum (µs) | frost-ed25519 (µs) | ratio (median of {BLOCKS} blocks) |"
    );
    println!("|---|---|---|---|");
    const BLOCKS: usize = 21;
    for (t, n) in sizes {
        let h = holders(t, n);
        let r = raw_for(&h, t);
        let per_block = (2000 / usize::from(t)).clamp(10, 400);
        let (mut ratios, mut a, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for block in 0..BLOCKS {
            let time = |f: &mut dyn FnMut()| {
                let s = Instant::now();
                for _ in 0..per_block {
                    f();
                }
                s.elapsed().as_secs_f64() * 1e6 / per_block as f64
            };
            // Alternate which side goes first, so drift favours neither.
            let (x, y) = if block % 2 == 0 {
                let x = time(&mut || ours(&h, t, &mut rng));
                (x, time(&mut || raw(&r, &mut rng)))
            } else {
                let y = time(&mut || raw(&r, &mut rng));
                (time(&mut || ours(&h, t, &mut rng)), y)
            };
            ratios.push(x / y);
            a.push(x);
            b.push(y);
        }
        println!(
            "| {t}-of-{n} | {:.0} | {:.0} | {:.3} |",
            median(a),
            median(b),
            median(ratios)
        );
    }
}
