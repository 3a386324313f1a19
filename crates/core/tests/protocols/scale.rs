#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! DKG at n = 64, t = 43 completes and signs (checked by ed25519-dalek).

use std::collections::BTreeSet;

use keyquorum_core::local;
use keyquorum_core::{Ed25519, ParticipantId, SessionId};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

#[test]
fn dkg_64_participants_threshold_43_signs() {
    let mut rng = ChaCha20Rng::seed_from_u64(64);
    let members: BTreeSet<_> = ParticipantId::range(64).collect();
    let h = local::dkg::<Ed25519, _>(SessionId([64; 32]), 43, &members, &mut rng).unwrap();
    assert_eq!(h.shares.len(), 64);
    assert_eq!(h.group.threshold(), 43);
    // The last 43 members sign.
    let signers: BTreeSet<_> = members.iter().rev().take(43).copied().collect();
    let msg = b"sixty-four holders, forty-three sign";
    let sig = local::sign(&h, SessionId([65; 32]), &signers, msg, &mut rng).unwrap();
    let vk =
        ed25519_dalek::VerifyingKey::from_bytes(&h.group.public_key_bytes().try_into().unwrap())
            .unwrap();
    vk.verify_strict(
        msg,
        &ed25519_dalek::Signature::from_slice(&sig.to_bytes()).unwrap(),
    )
    .unwrap();
}
