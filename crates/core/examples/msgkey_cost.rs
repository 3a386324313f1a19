//! The bare cryptography of one per-message-key message in one process, one
//! thread: sender (split, HKDF, AEAD, HPKE seals, signature), each
//! coordinator (signature check, HPKE open, Feldman checks, verification
//! value, HPKE re-seal; plus the node's confirmation signature), receiver
//! (checks, HPKE opens, reconstruction, AEAD open). The ratio the cluster's
//! end-to-end figure is compared with (issue #4).
//!
//! `cargo run --release -p keyquorum-core --example msgkey_cost [-- --iters N --size BYTES]`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "example binary: a failed unwrap aborts the measurement"
)]

use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use hpke::kem::X25519HkdfSha256;
use hpke::{Kem, Serializable};
use keyquorum_core::msgkey::protocol::{
    coordinate, new_prekey, receive, send, AtCoordinator, Deployment, Node, Recipient,
    SignedConfirmation,
};
use keyquorum_core::msgkey::route::Member;
use keyquorum_core::msgkey::Mode;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

fn key(rng: &mut ChaCha20Rng) -> SigningKey {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    SigningKey::from_bytes(&seed)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let iters = arg("--iters", 2_000);
    let size = arg("--size", 1024);
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let mut node_sk = Vec::new();
    let mut node_hpke = Vec::new();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let sk = key(&mut rng);
        let mut ikm = [0u8; 32];
        rng.fill_bytes(&mut ikm);
        let (hsk, hpk) = X25519HkdfSha256::derive_keypair(&ikm);
        let mut hpke = [0u8; 32];
        hpke.copy_from_slice(&hpk.to_bytes());
        nodes.push(Node {
            member: Member {
                id,
                identity: sk.verifying_key().to_bytes(),
            },
            hpke,
        });
        node_sk.push(sk);
        node_hpke.push(hsk);
    }
    let d = Deployment {
        salt: b"bench".to_vec(),
        window_ms: 60_000,
    };
    let alice = key(&mut rng);
    let bob = key(&mut rng);
    let content = vec![0x5a; size];
    println!("one thread, 3 nodes, {size}-byte payload, {iters} messages per row");
    for mode in [Mode::VerifyInTheExponent, Mode::CoordinatorReconstructs] {
        for m in [1u16, 2] {
            let (mut t_send, mut t_coord, mut t_recv) =
                (Duration::ZERO, Duration::ZERO, Duration::ZERO);
            let started = Instant::now();
            for _ in 0..iters {
                let (prekey, signed) = new_prekey(&mut rng, &bob);
                let to = Recipient {
                    identity: bob.verifying_key().to_bytes(),
                    prekey: signed,
                };
                let t0 = Instant::now();
                let (out, _) =
                    send(&mut rng, &d, &alice, &to, &nodes, m, mode, 1_000, &content).unwrap();
                let t1 = Instant::now();
                let mut confs = Vec::new();
                for (node, bundle) in &out.for_coordinators {
                    let i = usize::try_from(*node - 1).unwrap();
                    let (_, c) = coordinate(
                        &mut rng,
                        &d,
                        *node,
                        &node_hpke[i],
                        &nodes,
                        &alice.verifying_key().to_bytes(),
                        1_000,
                        AtCoordinator {
                            header: &out.header,
                            signature: &out.signature,
                            payload: &out.payload,
                            bundle,
                        },
                    )
                    .unwrap();
                    let signature = node_sk[i].sign(&c.signing_bytes()).to_bytes();
                    confs.push(SignedConfirmation {
                        confirmation: c,
                        signature,
                    });
                }
                let t2 = Instant::now();
                let opened = receive(
                    &d,
                    &bob.verifying_key().to_bytes(),
                    &prekey,
                    &nodes,
                    &alice.verifying_key().to_bytes(),
                    &out,
                    &confs,
                )
                .unwrap();
                let t3 = Instant::now();
                assert_eq!(opened.len(), size);
                t_send += t1 - t0;
                t_coord += t2 - t1;
                t_recv += t3 - t2;
            }
            let total = started.elapsed().as_secs_f64();
            let per = |t: Duration| t.as_secs_f64() * 1e6 / iters as f64;
            println!(
                "{mode:?} m={m}: {:>6.0} msg/s  send {:>6.1} µs  coordinators {:>6.1} µs  receive {:>6.1} µs",
                iters as f64 / total,
                per(t_send),
                per(t_coord),
                per(t_recv),
            );
        }
    }
}
