#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench binary: no public API; a failed unwrap aborts the bench"
)]
//! criterion benchmarks of the threshold VOPRF, each beside the bare cost
//! it cannot avoid, measured in the same run:
//!
//! - `oprf_single`: one server holding the whole key answers a blinded
//!   element with `Z = k·M` and an RFC 9497 proof (`generate_proof`), and
//!   the client's `verify_proof`: the bare cost of one VOPRF evaluation;
//! - `oprf_threshold/t-of-n`: the same answer made jointly by `t`
//!   holders: every member's round one and round two and the aggregation
//!   with its per-member checks (all in one thread: the CPU the cluster
//!   spends on the math of one evaluation, before any network).
//!
//! `cargo bench -p keyquorum-core --bench oprf`

use std::collections::BTreeSet;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use curve25519_dalek::scalar::Scalar;
use keyquorum_core::oprf::{self, Element};
use keyquorum_core::{local, ParticipantId, Ristretto255, SessionId};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn single(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let k = Scalar::from(0x1234_5678_9abc_u64) * Scalar::from(0xfeed_u64);
    let pk = Element::from_bytes(
        &(&k * curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE)
            .compress()
            .to_bytes(),
    )
    .unwrap();
    let m = oprf::blind(b"input", &Scalar::from(77u64)).unwrap();
    let mut g = c.benchmark_group("oprf_single");
    g.bench_function("evaluate_prove_verify", |b| {
        b.iter(|| {
            let mut wide = [0u8; 64];
            rand_core::RngCore::fill_bytes(&mut rng, &mut wide);
            let r = Scalar::from_bytes_mod_order_wide(&wide);
            let z = Element::from_bytes(&(k * m.point()).compress().to_bytes()).unwrap();
            let proof = oprf::generate_proof(&k, &m, &z, &r);
            oprf::verify_proof(&pk, &m, &z, &proof).unwrap();
            black_box(proof)
        })
    });
    g.finish();
}

fn threshold(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut g = c.benchmark_group("oprf_threshold");
    for (t, n) in [(2u16, 3u16), (3, 5)] {
        let members: BTreeSet<ParticipantId> = ParticipantId::range(n).collect();
        let h = local::dkg::<Ristretto255, _>(SessionId([3; 32]), t, &members, &mut rng).unwrap();
        let set: Vec<ParticipantId> = members.iter().copied().take(usize::from(t)).collect();
        let m = oprf::blind(b"input", &Scalar::from(77u64)).unwrap();
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{t}-of-{n}")),
            &t,
            |b, _| {
                b.iter(|| {
                    let mut nonces = Vec::new();
                    let mut commits = Vec::new();
                    for id in &set {
                        let (nc, cm) = oprf::commit(&h.shares[id], &m, &mut rng);
                        nonces.push((*id, nc));
                        commits.push(cm);
                    }
                    let package = oprf::Package::new(m, commits).unwrap();
                    let responses: Vec<_> = nonces
                        .into_iter()
                        .map(|(id, nc)| {
                            oprf::respond(&h.shares[&id], &h.group, nc, &package).unwrap()
                        })
                        .collect();
                    black_box(oprf::aggregate(&h.group, &package, &responses).unwrap())
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, single, threshold);
criterion_main!(benches);
