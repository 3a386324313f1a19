#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench binary: no public API; a failed unwrap aborts the bench"
)]
//! criterion benchmarks of computation on encrypted data, each beside the
//! bare curve25519-dalek operations it needs (the `bare` rows), so the
//! overhead of our encoding, hashing and checks is a ratio measured in the
//! same run:
//!
//! - `he_encrypt`: one slot, with each proof kind; bare = `r·B`, `m·B`,
//!   `r·P` and an addition (what encryption alone needs);
//! - `he_verify`: one slot's proof; bare = the point decompressions and
//!   multiscalar multiplications the check needs, without decoding or
//!   hashing;
//! - `he_aggregate`: 10^5 one-slot inputs from their bytes into the sum;
//!   bare = 2·10^5 decompressions and additions;
//! - `he_decrypt`: a 2-of-3 decryption of a 32-bit aggregate (shares
//!   checked, combined, logarithm found); bare = the combination and the
//!   search without share proofs.
//!
//! `cargo bench -p keyquorum-core --bench he`

use std::collections::BTreeSet;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, VartimeMultiscalarMul};
use keyquorum_core::he::{
    self, Aggregate, Binding, Ciphertext, Context, DecryptionShare, DlogTable, InputPolicy,
};
use keyquorum_core::{local, ParticipantId, Ristretto255, SessionId};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn context(rng: &mut ChaCha20Rng) -> (Scalar, Context) {
    let mut wide = [0u8; 64];
    rand_core::RngCore::fill_bytes(rng, &mut wide);
    let s = Scalar::from_bytes_mod_order_wide(&wide);
    (
        s,
        Context {
            session: [7; 32],
            public_key: &s * RISTRETTO_BASEPOINT_TABLE,
            submitter: "bench".into(),
        },
    )
}

fn encrypt(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (_, ctx) = context(&mut rng);
    let p = ctx.public_key;
    let mut g = c.benchmark_group("he_encrypt");
    g.bench_function("bare", |b| {
        b.iter(|| {
            let r = Scalar::from(rand_core::RngCore::next_u64(&mut rng));
            let m = Scalar::from(1234u64);
            black_box((
                &r * RISTRETTO_BASEPOINT_TABLE,
                &m * RISTRETTO_BASEPOINT_TABLE + r * p,
            ))
        })
    });
    for policy in ["none", "knowledge", "range:8", "range:32"] {
        let pol: InputPolicy = policy.parse().unwrap();
        g.bench_function(BenchmarkId::new("keyquorum", policy), |b| {
            b.iter(|| black_box(pol.encrypt(&ctx, &[123], &mut rng).unwrap()))
        });
    }
    g.finish();
}

fn verify(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let (_, ctx) = context(&mut rng);
    let p = ctx.public_key;
    let mut g = c.benchmark_group("he_verify");
    for policy in ["knowledge", "range:8", "range:32"] {
        let pol: InputPolicy = policy.parse().unwrap();
        let (ct, proof) = pol.encrypt(&ctx, &[123], &mut rng).unwrap();
        let bytes = ct.to_bytes();
        g.bench_function(BenchmarkId::new("keyquorum", policy), |b| {
            b.iter(|| {
                let ct = Ciphertext::from_bytes(&bytes, 1).unwrap();
                pol.verify(&ctx, &ct, &proof).unwrap();
            })
        });
        // Bare: decompress what the proof carries and do its
        // multiplications, no hashing, no encoding checks.
        let points: Vec<CompressedRistretto> = bytes
            .chunks(32)
            .chain(proof.chunks(32))
            .filter_map(|c| CompressedRistretto::from_slice(c).ok())
            .collect();
        let (decompress, mults) = match pol {
            InputPolicy::Knowledge => (2, 1),
            InputPolicy::Range(bits) => (2 + 2 * usize::from(bits), 4 * usize::from(bits) + 2),
            InputPolicy::None => (2, 0),
        };
        let e = Scalar::from(5u64);
        g.bench_function(BenchmarkId::new("bare", policy), |b| {
            b.iter(|| {
                let pts: Vec<RistrettoPoint> = points
                    .iter()
                    .take(decompress)
                    .map(|c| c.decompress().unwrap_or_default())
                    .collect();
                let mut acc = RistrettoPoint::identity();
                for i in 0..mults {
                    let q = pts[i % pts.len()];
                    acc += RistrettoPoint::vartime_multiscalar_mul([e, -e], [p, q]);
                }
                black_box(acc.compress())
            })
        });
    }
    g.finish();
}

fn aggregate(c: &mut Criterion) {
    const N: usize = 100_000;
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let (_, ctx) = context(&mut rng);
    let inputs: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            Ciphertext::encrypt(&ctx.public_key, &[i as u64 % 100], &mut rng)
                .unwrap()
                .0
                .to_bytes()
        })
        .collect();
    let mut g = c.benchmark_group("he_aggregate");
    g.sample_size(10);
    g.bench_function(BenchmarkId::new("keyquorum", N), |b| {
        b.iter(|| {
            let mut agg = Aggregate::new(1).unwrap();
            for x in &inputs {
                agg.add(&Ciphertext::from_bytes(x, 1).unwrap(), 1).unwrap();
            }
            black_box(agg.ciphertext().to_bytes())
        })
    });
    g.bench_function(BenchmarkId::new("bare", N), |b| {
        b.iter(|| {
            let (mut a, mut z) = (RistrettoPoint::identity(), RistrettoPoint::identity());
            for x in &inputs {
                a += CompressedRistretto::from_slice(&x[..32])
                    .unwrap()
                    .decompress()
                    .unwrap();
                z += CompressedRistretto::from_slice(&x[32..])
                    .unwrap()
                    .decompress()
                    .unwrap();
            }
            black_box((a.compress(), z.compress()))
        })
    });
    g.finish();
}

fn decrypt(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let members: BTreeSet<ParticipantId> = ParticipantId::range(3).collect();
    let h = local::dkg::<Ristretto255, _>(SessionId([1; 32]), 2, &members, &mut rng).unwrap();
    let p = h.group.verifying_element();
    let value = 3_000_000_000u64;
    let (ct, _) = Ciphertext::encrypt(&p, &[value], &mut rng).unwrap();
    let bind = Binding {
        count: 1,
        inputs: [0; 32],
    };
    let sid = [9u8; 32];
    let shares: Vec<DecryptionShare> = h
        .shares
        .values()
        .take(2)
        .map(|s| DecryptionShare::new(&sid, s, &ct, &bind, &mut rng).unwrap())
        .collect();
    let table = DlogTable::new(32).unwrap();
    let mut g = c.benchmark_group("he_decrypt");
    g.bench_function("share", |b| {
        let s = h.shares.values().next().unwrap();
        b.iter(|| black_box(DecryptionShare::new(&sid, s, &ct, &bind, &mut rng).unwrap()))
    });
    g.bench_function(BenchmarkId::new("keyquorum", "2-of-3, 32 bits"), |b| {
        b.iter(|| {
            let (v, _) = he::decrypt(&sid, &h.group, &ct, &bind, &shares, &table).unwrap();
            assert_eq!(v, [value]);
        })
    });
    // Bare: Lagrange-combine the two D_i (no proofs) and search.
    let lambda = keyquorum_core::vss::lagrange_at_zero::<Ristretto255>(
        &shares.iter().map(DecryptionShare::member).collect(),
    )
    .unwrap();
    let ds: Vec<(Scalar, RistrettoPoint)> = h
        .shares
        .iter()
        .take(2)
        .map(|(id, s)| (lambda[id], s.secret().expose() * ct.slots()[0].0))
        .collect();
    g.bench_function(BenchmarkId::new("bare", "2-of-3, 32 bits"), |b| {
        b.iter_batched(
            || ds.clone(),
            |ds| {
                let (l, d): (Vec<Scalar>, Vec<RistrettoPoint>) = ds.into_iter().unzip();
                let m = ct.slots()[0].1 - RistrettoPoint::vartime_multiscalar_mul(l, d);
                assert_eq!(table.solve(&m).unwrap(), value);
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("table 32 bits", |b| {
        b.iter(|| black_box(DlogTable::new(32).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, encrypt, verify, aggregate, decrypt);
criterion_main!(benches);
