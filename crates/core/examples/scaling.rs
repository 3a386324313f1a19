//! Per-participant cost of DKG, refresh and reshare for every (t, n) size the
//! benchmarks track, the whole-DKG cost, and a least-squares fit of the
//! per-participant time against n·t. Prints a markdown table for BENCHMARKS.md.
//!
//! `cargo run --release -p keyquorum-core --example scaling`
#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "measurement tool"
)]

use std::time::{Duration, Instant};

use keyquorum_core::{local, SessionId};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

#[path = "../benches/support/mod.rs"]
mod support;
use support::*;

fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut v: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Fit y = a·x + b by least squares; returns (a, b, R²).
fn fit(points: &[(f64, f64)]) -> (f64, f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let a = sxy / sxx;
    let b = my - a * mx;
    let ss_res: f64 = points.iter().map(|(x, y)| (y - (a * x + b)).powi(2)).sum();
    let ss_tot: f64 = points.iter().map(|(_, y)| (y - my).powi(2)).sum();
    (a, b, 1.0 - ss_res / ss_tot)
}

fn main() {
    println!("| t-of-n | n·t | DKG / participant (ms) | DKG whole, all n in one process (ms) | refresh / participant (ms) | reshare to (t+1)-of-(n+1) / participant (ms) | DKG µs per n·t |");
    println!("|---|---|---|---|---|---|---|");
    let mut dkg_pts = Vec::new();
    let mut refresh_pts = Vec::new();
    let mut reshare_pts = Vec::new();
    for (t, n) in SIZES {
        let runs = if n >= 32 { 3 } else { 11 };
        let f = dkg_fixture(t, n);
        let dkg = median(|| drop(dkg_participant(&f)), runs);
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let whole = median(
            || drop(local::dkg::<C, _>(SessionId([7; 32]), t, &ids(1..=n), &mut rng).unwrap()),
            if n >= 32 { 1 } else { 5 },
        );
        let rf = refresh_fixture(holders(t, n));
        let refresh = median(|| drop(refresh_participant(&rf)), runs);
        let rs = reshare_fixture(holders(t, n));
        let reshare = median(|| drop(reshare_participant(&rs)), runs);
        let nt = f64::from(n) * f64::from(t);
        dkg_pts.push((nt, ms(dkg)));
        refresh_pts.push((nt, ms(refresh)));
        reshare_pts.push((f64::from(n + 1) * f64::from(t + 1), ms(reshare)));
        println!(
            "| {t}-of-{n} | {nt} | {:.2} | {:.1} | {:.2} | {:.2} | {:.1} |",
            ms(dkg),
            ms(whole),
            ms(refresh),
            ms(reshare),
            ms(dkg) * 1e3 / nt
        );
    }
    println!();
    for (name, pts) in [
        ("DKG", &dkg_pts),
        ("refresh", &refresh_pts),
        ("reshare", &reshare_pts),
    ] {
        let (a, b, r2) = fit(pts);
        println!(
            "{name} per participant ≈ {:.2} µs · n·t + {:.2} ms (R² = {r2:.4})",
            a * 1e3,
            b
        );
    }
}
