#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench binary: no public API; a failed unwrap aborts the bench"
)]
//! criterion benchmarks, one group per operation, parameterised by (t, n).
//! Signing runs side by side with the same steps called on `frost-ed25519`
//! directly, so our overhead over raw FROST is a ratio.
//!
//! `cargo bench -p keyquorum-core --bench threshold` (add `-- sign` etc. to filter).
//! The two largest sizes of the DKG/refresh/reshare groups are measured by
//! `cargo run --release -p keyquorum-core --example scaling` instead, which
//! also fits their growth.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use frost_ed25519 as frost;
use keyquorum_core::sign::{self, Coordinator};
use keyquorum_core::SessionId;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

mod support;
use support::*;

fn signing(c: &mut Criterion) {
    let msg = b"benchmark message, 32 bytes long";
    for (t, n) in SIZES {
        let h = holders(t, n);
        let signers = ids(1..=t);
        let label = format!("{t}-of-{n}");
        let mut rng = ChaCha20Rng::seed_from_u64(9);

        // Same key material as frost types, for the raw side.
        let key_packages: BTreeMap<frost::Identifier, frost::keys::KeyPackage> = signers
            .iter()
            .map(|s| (s.to_frost(), h.shares[s].frost().clone()))
            .collect();
        let pubkeys = h.group.frost().clone();

        let mut g = c.benchmark_group("sign_round1");
        g.bench_function(BenchmarkId::new("keyquorum", &label), |b| {
            b.iter(|| black_box(sign::commit(&h.shares[&p1()], &mut rng)))
        });
        g.bench_function(BenchmarkId::new("frost", &label), |b| {
            let kp = &key_packages[&p1().to_frost()];
            b.iter(|| black_box(frost::round1::commit(kp.signing_share(), &mut rng)))
        });
        g.finish();

        // Fixed commitments for round 2 / aggregate.
        let mut nonces = Vec::new();
        let mut commitments = Vec::new();
        for s in &signers {
            let (nonce, cm) = sign::commit(&h.shares[s], &mut rng);
            nonces.push((*s, nonce));
            commitments.push(cm);
        }
        let coord =
            Coordinator::new(&h.group, SessionId([5; 32]), msg, commitments.clone()).unwrap();
        let package = coord.package().clone();
        let frost_commitments: BTreeMap<_, _> = commitments
            .iter()
            .map(|c| (c.signer().to_frost(), *c.frost()))
            .collect();

        let mut g = c.benchmark_group("sign_round2");
        // Each iteration consumes a nonce: a fresh one whose commitment is in
        // the package is built in the untimed setup.
        let p1_share = h.shares[&p1()].clone();
        g.bench_function(BenchmarkId::new("keyquorum", &label), |b| {
            b.iter_batched(
                || {
                    let (nonce, cm) = sign::commit(&p1_share, &mut rng);
                    let mut cms = commitments.clone();
                    cms[0] = cm;
                    let coord = Coordinator::new(&h.group, SessionId([5; 32]), msg, cms).unwrap();
                    (nonce, coord.package().clone())
                },
                |(nonce, pkg)| black_box(nonce.sign(&p1_share, &pkg).unwrap()),
                BatchSize::SmallInput,
            )
        });
        let kp = key_packages[&p1().to_frost()].clone();
        g.bench_function(BenchmarkId::new("frost", &label), |b| {
            b.iter_batched(
                || {
                    let (nonce, cm) = frost::round1::commit(kp.signing_share(), &mut rng);
                    let mut cms = frost_commitments.clone();
                    cms.insert(p1().to_frost(), cm);
                    (nonce, frost::SigningPackage::new(cms, msg))
                },
                |(nonce, pkg)| black_box(frost::round2::sign(&pkg, &nonce, &kp).unwrap()),
                BatchSize::SmallInput,
            )
        });
        g.finish();

        let shares: Vec<_> = nonces
            .into_iter()
            .map(|(s, nonce)| (s, nonce.sign(&h.shares[&s], &package).unwrap()))
            .collect();
        let frost_shares: BTreeMap<_, _> = shares
            .iter()
            .map(|(s, sh)| (s.to_frost(), *sh.frost()))
            .collect();

        let mut g = c.benchmark_group("sign_aggregate");
        g.bench_function(BenchmarkId::new("keyquorum", &label), |b| {
            b.iter(|| {
                let mut coord = Coordinator::new(
                    &h.group,
                    SessionId([5; 32]),
                    msg,
                    commitments.iter().copied(),
                )
                .unwrap();
                for (s, sh) in &shares {
                    coord.receive(*s, *sh).unwrap();
                }
                black_box(coord.finish().unwrap())
            })
        });
        g.bench_function(BenchmarkId::new("frost", &label), |b| {
            b.iter(|| {
                let pkg = frost::SigningPackage::new(frost_commitments.clone(), msg);
                black_box(frost::aggregate(&pkg, &frost_shares, &pubkeys).unwrap())
            })
        });
        g.finish();

        let sig = {
            let mut coord = Coordinator::new(
                &h.group,
                SessionId([5; 32]),
                msg,
                commitments.iter().copied(),
            )
            .unwrap();
            for (s, sh) in &shares {
                coord.receive(*s, *sh).unwrap();
            }
            coord.finish().unwrap()
        };
        let sig_bytes = sig.to_bytes();
        let mut g = c.benchmark_group("sign_verify");
        g.bench_function(BenchmarkId::new("keyquorum", &label), |b| {
            b.iter(|| h.group.verify(msg, black_box(&sig_bytes)).unwrap())
        });
        // Both sides start from the signature's bytes, as a verifier does.
        g.bench_function(BenchmarkId::new("frost", &label), |b| {
            b.iter(|| {
                let sig = frost::Signature::deserialize(black_box(&sig_bytes)).unwrap();
                pubkeys.verifying_key().verify(msg, &sig).unwrap()
            })
        });
        g.finish();
    }
}

fn protocols(c: &mut Criterion) {
    for (t, n) in SIZES.into_iter().filter(|(_, n)| *n <= 16) {
        let label = format!("{t}-of-{n}");
        let mut g = c.benchmark_group("dkg_participant");
        g.sample_size(10);
        let f = dkg_fixture(t, n);
        g.bench_function(BenchmarkId::from_parameter(&label), |b| {
            b.iter(|| black_box(dkg_participant(&f)))
        });
        g.finish();

        let mut g = c.benchmark_group("dkg_whole");
        g.sample_size(10);
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        g.bench_function(BenchmarkId::from_parameter(&label), |b| {
            b.iter(|| {
                black_box(
                    keyquorum_core::local::dkg::<C, _>(
                        SessionId([7; 32]),
                        t,
                        &ids(1..=n),
                        &mut rng,
                    )
                    .unwrap(),
                )
            })
        });
        g.finish();

        let mut g = c.benchmark_group("refresh_participant");
        g.sample_size(10);
        let f = refresh_fixture(holders(t, n));
        g.bench_function(BenchmarkId::from_parameter(&label), |b| {
            b.iter(|| black_box(refresh_participant(&f)))
        });
        g.finish();

        let mut g = c.benchmark_group("reshare_participant");
        g.sample_size(10);
        let f = reshare_fixture(holders(t, n));
        g.bench_function(BenchmarkId::from_parameter(&label), |b| {
            b.iter(|| black_box(reshare_participant(&f)))
        });
        g.finish();
    }
}

criterion_group!(benches, signing, protocols);
criterion_main!(benches);
