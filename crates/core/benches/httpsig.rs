#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    reason = "bench binary: no public API; a failed unwrap aborts the bench"
)]
//! What checking a client's signed request costs (RFC 9421): each signing
//! request is checked by the node that receives it and again by every
//! signer. Beside it, the bare cost: one Ed25519 `verify_strict` of a
//! message of the same length, so the parsing and signature-base overhead
//! is a ratio.
//!
//! `cargo bench -p keyquorum-core --bench httpsig`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ed25519_dalek::{Signer as _, SigningKey};
use keyquorum_core::httpsig::{self, ClientKey, Policy, Request};

fn checks(c: &mut Criterion) {
    let key = ClientKey::new("bench", SigningKey::from_bytes(&[3; 32]));
    let vk = SigningKey::from_bytes(&[3; 32]).verifying_key();
    let mut req = Request {
        method: "POST".into(),
        target_uri: "https://127.0.0.1:7001/v1/keys/payments/sign".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"message":"0000000000000000000000000000000000000000000000000000000000000000"}"#
            .to_vec(),
    };
    key.sign(&mut req, 1_000, "0123456789abcdef0123456789abcdef")
        .unwrap();
    let policy = Policy {
        now: 1_000,
        window: 300,
        skew: 30,
    };
    let mut g = c.benchmark_group("httpsig");
    g.bench_function("verify_request", |b| {
        b.iter(|| black_box(httpsig::verify(&req, &policy, |_| Some(vk)).unwrap()))
    });
    g.bench_function("sign_request", |b| {
        b.iter(|| {
            let mut r = req.clone();
            key.sign(&mut r, 1_000, "0123456789abcdef0123456789abcdef")
                .unwrap();
            black_box(r)
        })
    });
    // The bare cost: one strict Ed25519 verification of a 300-byte message
    // (about the length of this request's signature base).
    let sk = SigningKey::from_bytes(&[3; 32]);
    let msg = [7u8; 300];
    let sig = sk.sign(&msg);
    g.bench_function("bare_ed25519_verify", |b| {
        b.iter(|| black_box(vk.verify_strict(&msg, &sig).is_ok()))
    });
    g.finish();
}

criterion_group!(benches, checks);
criterion_main!(benches);
