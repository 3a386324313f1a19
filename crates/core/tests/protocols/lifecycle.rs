#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! Whole key lifecycle for every suite: DKG → sign → refresh → reshare →
//! repair → export, each signature checked by an independent verifier.

use std::collections::BTreeSet;

use keyquorum_core::local::{self, Holders};
use keyquorum_core::{
    hazmat, Ed25519, ParticipantId, Ristretto255, Secp256k1, Secp256k1Tr, SessionId, Suite,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn ids(r: impl IntoIterator<Item = u16>) -> BTreeSet<ParticipantId> {
    r.into_iter()
        .map(|i| ParticipantId::new(i).unwrap())
        .collect()
}

fn sid(n: u8) -> SessionId {
    SessionId([n; 32])
}

/// Independent verifiers: ed25519-dalek `verify_strict` (RFC 8032) and the
/// k256 BIP-340 verifier; frost's own verifier for the other suites.
fn check<C: Suite>(h: &Holders<C>, msg: &[u8], sig: &[u8]) {
    h.group.verify(msg, sig).unwrap();
    let pk = h.group.public_key_bytes();
    match C::SUITE {
        keyquorum_core::SuiteId::Ed25519 => {
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk.try_into().unwrap()).unwrap();
            let s = ed25519_dalek::Signature::from_slice(sig).unwrap();
            vk.verify_strict(msg, &s).unwrap();
        }
        keyquorum_core::SuiteId::Secp256k1Tr => {
            assert!(pk.len() == 32);
            let vk = k256::schnorr::VerifyingKey::from_bytes(&pk).unwrap();
            let s = k256::schnorr::Signature::try_from(sig).unwrap();
            vk.verify_raw(msg, &s).unwrap();
        }
        _ => {}
    }
}

fn lifecycle<C: Suite>() {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let h = local::dkg::<C, _>(sid(1), 2, &ids(1..=3), &mut rng).unwrap();
    let msg = b"keyquorum lifecycle";
    let sig = local::sign(&h, sid(2), &ids([1, 3]), msg, &mut rng).unwrap();
    check(&h, msg, &sig.to_bytes());
    let vk = h.group.verifying_element();

    let refreshed = local::refresh(h.clone(), sid(3), &mut rng).unwrap();
    assert!(refreshed.group.verifying_element() == vk);
    assert_ne!(refreshed.group, h.group, "public shares must change");
    let sig = local::sign(&refreshed, sid(4), &ids([2, 3]), msg, &mut rng).unwrap();
    check(&refreshed, msg, &sig.to_bytes());

    // 2-of-3 → 3-of-5 with two new members; then sign with new members only.
    let reshared = local::reshare(
        &refreshed,
        sid(5),
        &ids([1, 2]),
        3,
        &ids([2, 3, 4, 5, 6]),
        &mut rng,
    )
    .unwrap();
    assert!(reshared.group.verifying_element() == vk);
    assert!(reshared.group.threshold() == 3);
    let sig = local::sign(&reshared, sid(6), &ids([4, 5, 6]), msg, &mut rng).unwrap();
    check(&reshared, msg, &sig.to_bytes());

    let repaired = local::repair(
        &reshared,
        sid(7),
        &ids([2, 4, 6]),
        ParticipantId::new(5).unwrap(),
        &mut rng,
    )
    .unwrap();
    let p5 = ParticipantId::new(5).unwrap();
    assert!(repaired.secret() == reshared.shares[&p5].secret());

    let shares: Vec<_> = [3u16, 5, 6]
        .iter()
        .map(|i| &reshared.shares[&ParticipantId::new(*i).unwrap()])
        .collect();
    let pk = hazmat::with_reconstructed_key(&reshared.group, &shares, |k| k.public()).unwrap();
    assert!(pk == vk);
}

#[test]
fn lifecycle_ed25519() {
    lifecycle::<Ed25519>();
}

#[test]
fn lifecycle_secp256k1_tr() {
    lifecycle::<Secp256k1Tr>();
}

#[test]
fn lifecycle_secp256k1() {
    lifecycle::<Secp256k1>();
}

#[test]
fn lifecycle_ristretto255() {
    lifecycle::<Ristretto255>();
}
