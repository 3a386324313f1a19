#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! Wire encodings: every message round-trips byte for byte; every decoder
//! rejects truncation, trailing bytes, wrong suite/kind/version, non-canonical
//! scalars and invalid or identity points with a typed error; random and
//! mutated inputs never panic.

use std::collections::BTreeSet;

use keyquorum_core::codec::{Decode, Encode};
use keyquorum_core::local::{self, wire};
use keyquorum_core::{dkg, refresh, repair, reshare, sign, vss};
use keyquorum_core::{
    DecodeError, Ed25519, GroupKey, KeyShare, ParticipantId, Secp256k1Tr, SessionId, Suite,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// One encoded sample of every message type and public value, for suite C.
fn samples<C: Suite>() -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let members: BTreeSet<_> = ParticipantId::range(3).collect();
    let p1 = ParticipantId::new(1).unwrap();
    let session = SessionId([7; 32]);
    let h = local::dkg::<C, _>(session, 2, &members, &mut rng).unwrap();
    let mut out = vec![("group_key", h.group.to_bytes())];

    let params = dkg::DkgParams {
        session,
        threshold: 2,
        members: members.clone(),
    };
    let (mut a, _) = dkg::start::<C, _>(params.clone(), p1, &mut rng).unwrap();
    let mut r2_msg = None;
    for p in [2u16, 3] {
        let (_, m) =
            dkg::start::<C, _>(params.clone(), ParticipantId::new(p).unwrap(), &mut rng).unwrap();
        out.push(("dkg_round1", m.to_bytes()));
        a.receive(ParticipantId::new(p).unwrap(), m).unwrap();
    }
    let (_, msgs) = a.advance().unwrap();
    if let Some((_, m)) = msgs.into_iter().next() {
        r2_msg = Some(m.to_bytes());
    }
    out.push(("dkg_round2", r2_msg.unwrap()));

    let (nonce, commitment) = sign::commit(&h.shares[&p1], &mut rng);
    out.push(("signing_commitment", commitment.to_bytes()));
    let (_, c2) = sign::commit(&h.shares[&ParticipantId::new(2).unwrap()], &mut rng);
    let coord = sign::Coordinator::new(&h.group, session, b"message", [commitment, c2]).unwrap();
    out.push(("signing_package", coord.package().to_bytes()));
    let share = nonce.sign(&h.shares[&p1], coord.package()).unwrap();
    out.push(("signature_share", share.to_bytes()));

    let (_, m) = refresh::start(session, &h.group, h.shares[&p1].clone(), &mut rng).unwrap();
    out.push(("refresh_round1", m.to_bytes()));

    let rp = reshare::ReshareParams {
        session,
        dealers: members.clone(),
        new_threshold: 2,
        new_members: members.clone(),
    };
    let deal = reshare::deal(&rp, &h.group, &h.shares[&p1], &mut rng).unwrap();
    out.push(("reshare_deal", deal[0].1.to_bytes()));

    let helpers: BTreeSet<_> = [1u16, 2]
        .iter()
        .map(|i| ParticipantId::new(*i).unwrap())
        .collect();
    let rpp = repair::RepairParams {
        session,
        helpers,
        target: ParticipantId::new(3).unwrap(),
    };
    let (_, images, deltas) =
        repair::Helper::start(rpp, h.group.clone(), &h.shares[&p1], &mut rng).unwrap();
    out.push(("repair_images", images.to_bytes()));
    out.push(("repair_delta", deltas[0].1.to_bytes()));
    out.push((
        "feldman_commitment",
        vss::Polynomial::<C>::random(
            keyquorum_core::secret::SecretScalar::random(&mut rng),
            3,
            &mut rng,
        )
        .commit()
        .to_bytes(),
    ));
    out.push(("key_share", h.shares[&p1].to_secret_bytes().to_vec()));
    out
}

/// Decode `bytes` as the named type and re-encode; `Err` if it does not decode.
fn redecode<C: Suite>(name: &str, bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    Ok(match name {
        "group_key" => GroupKey::<C>::from_bytes(bytes)?.to_bytes(),
        "dkg_round1" => dkg::Round1Message::<C>::from_bytes(bytes)?.to_bytes(),
        "dkg_round2" => dkg::Round2Message::<C>::from_bytes(bytes)?.to_bytes(),
        "signing_commitment" => sign::SigningCommitment::<C>::from_bytes(bytes)?.to_bytes(),
        "signing_package" => sign::SigningPackage::<C>::from_bytes(bytes)?.to_bytes(),
        "signature_share" => sign::SignatureShare::<C>::from_bytes(bytes)?.to_bytes(),
        "refresh_round1" => refresh::Round1Message::<C>::from_bytes(bytes)?.to_bytes(),
        "reshare_deal" => reshare::DealMessage::<C>::from_bytes(bytes)?.to_bytes(),
        "repair_images" => repair::ImagesMessage::<C>::from_bytes(bytes)?.to_bytes(),
        "repair_delta" => repair::DeltaMessage::<C>::from_bytes(bytes)?.to_bytes(),
        "feldman_commitment" => vss::Commitment::<C>::from_bytes(bytes)?.to_bytes(),
        "key_share" => KeyShare::<C>::from_secret_bytes(bytes)?
            .to_secret_bytes()
            .to_vec(),
        other => panic!("unknown sample {other}"),
    })
}

fn roundtrip_and_reject<C: Suite>() {
    for (name, bytes) in samples::<C>() {
        assert_eq!(
            redecode::<C>(name, &bytes).unwrap(),
            bytes,
            "{name} round-trips"
        );
        // Every strict prefix is rejected.
        for cut in 0..bytes.len() {
            assert!(
                redecode::<C>(name, &bytes[..cut]).is_err(),
                "{name} truncated at {cut}"
            );
        }
        // Trailing bytes are rejected.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(
            matches!(
                redecode::<C>(name, &longer),
                Err(DecodeError::TrailingBytes(1))
            ),
            "{name} trailing"
        );
        // Header checks.
        let mut v = bytes.clone();
        v[0] = 99;
        assert_eq!(
            redecode::<C>(name, &v),
            Err(DecodeError::UnsupportedVersion(99))
        );
        let mut v = bytes.clone();
        v[1] = 77;
        assert!(matches!(
            redecode::<C>(name, &v),
            Err(DecodeError::WrongSuite { found: 77, .. })
        ));
        let mut v = bytes.clone();
        v[2] ^= 0x80;
        assert!(matches!(
            redecode::<C>(name, &v),
            Err(DecodeError::WrongKind { .. })
        ));
    }
}

#[test]
fn ed25519_encodings() {
    roundtrip_and_reject::<Ed25519>();
}

#[test]
fn secp256k1_tr_encodings() {
    roundtrip_and_reject::<Secp256k1Tr>();
}

#[test]
fn cross_suite_decoding_is_refused() {
    for (name, bytes) in samples::<Ed25519>() {
        assert!(
            matches!(
                redecode::<Secp256k1Tr>(name, &bytes),
                Err(DecodeError::WrongSuite { .. })
            ),
            "{name}"
        );
    }
}

/// Non-canonical scalars, the identity and off-curve points are refused.
#[test]
fn invalid_scalars_and_points() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let members: BTreeSet<_> = ParticipantId::range(3).collect();
    let h = local::dkg::<Ed25519, _>(SessionId([1; 32]), 2, &members, &mut rng).unwrap();
    let p1 = ParticipantId::new(1).unwrap();
    let (_, c) = sign::commit(&h.shares[&p1], &mut rng);
    let good = c.to_bytes();
    // Layout: header(3) id(2) hiding(32) binding(32).
    let mut identity = good.clone();
    identity[5..37].copy_from_slice(&{
        let mut b = [0u8; 32];
        b[0] = 1; // the Ed25519 identity encodes as y = 1
        b
    });
    assert_eq!(
        sign::SigningCommitment::<Ed25519>::from_bytes(&identity),
        Err(DecodeError::InvalidElement)
    );
    let mut off_curve = good.clone();
    off_curve[5..37].copy_from_slice(&[0xff; 32]);
    assert_eq!(
        sign::SigningCommitment::<Ed25519>::from_bytes(&off_curve),
        Err(DecodeError::InvalidElement)
    );
    // A small-order point (order 4: y = 0) is refused.
    let mut small = good.clone();
    small[5..37].copy_from_slice(&[0u8; 32]);
    assert_eq!(
        sign::SigningCommitment::<Ed25519>::from_bytes(&small),
        Err(DecodeError::InvalidElement)
    );
    // Identifier zero is refused.
    let mut zero_id = good;
    zero_id[3] = 0;
    zero_id[4] = 0;
    assert_eq!(
        sign::SigningCommitment::<Ed25519>::from_bytes(&zero_id),
        Err(DecodeError::ZeroIdentifier)
    );

    // A non-canonical scalar (the group order ℓ itself) in a signature share.
    let share_bytes = {
        let (n, c1) = sign::commit(&h.shares[&p1], &mut rng);
        let (_, c2) = sign::commit(&h.shares[&ParticipantId::new(2).unwrap()], &mut rng);
        let coord = sign::Coordinator::new(&h.group, SessionId([1; 32]), b"m", [c1, c2]).unwrap();
        n.sign(&h.shares[&p1], coord.package()).unwrap().to_bytes()
    };
    let mut bad = share_bytes.clone();
    let ell =
        hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010").unwrap();
    bad[35..67].copy_from_slice(&ell);
    assert_eq!(
        sign::SignatureShare::<Ed25519>::from_bytes(&bad),
        Err(DecodeError::InvalidScalar)
    );
    // Unsorted or duplicate participant lists are refused.
    let gk = h.group.to_bytes();
    // Layout: header(3) t(2) vk(32) count(2) ids(2 each)...
    let mut dup = gk.clone();
    dup[39..41].copy_from_slice(&1u16.to_be_bytes());
    dup[41..43].copy_from_slice(&1u16.to_be_bytes());
    assert_eq!(
        GroupKey::<Ed25519>::from_bytes(&dup),
        Err(DecodeError::UnsortedIdentifiers)
    );
    // A group key whose public shares are inconsistent is refused.
    let mut swapped = gk.clone();
    let (a, b) = (43 + 32, 43 + 64);
    let first: Vec<u8> = swapped[43..a].to_vec();
    let second: Vec<u8> = swapped[a..b].to_vec();
    swapped[43..a].copy_from_slice(&second);
    swapped[a..b].copy_from_slice(&first);
    assert!(GroupKey::<Ed25519>::from_bytes(&swapped).is_err());
}

/// k256's SEC1 parser also accepts the 0x05 "compact" tag; a point so
/// encoded is a second byte form of a valid point and must be refused
/// (found by the `decode_sign` fuzz target).
fn compact_tag_refused<C: Suite>() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let members: BTreeSet<_> = ParticipantId::range(3).collect();
    let h = local::dkg::<C, _>(SessionId([1; 32]), 2, &members, &mut rng).unwrap();
    let p1 = ParticipantId::new(1).unwrap();
    let (_, c) = sign::commit(&h.shares[&p1], &mut rng);
    // Layout: header(3) id(2) hiding(33) binding(33).
    let good = c.to_bytes();
    assert!(good[5] == 0x02 || good[5] == 0x03);
    let mut compact = good.clone();
    compact[5] = 0x05;
    assert_eq!(
        sign::SigningCommitment::<C>::from_bytes(&compact),
        Err(DecodeError::InvalidElement)
    );
    // The same in a group key's verifying key, header(3) t(2) vk(33).
    let mut gk = h.group.to_bytes();
    gk[5] = 0x05;
    assert!(GroupKey::<C>::from_bytes(&gk).is_err());

    let signers: BTreeSet<_> = ParticipantId::range(2).collect();
    let sig = local::sign(&h, SessionId([2; 32]), &signers, b"m", &mut rng)
        .unwrap()
        .to_bytes();
    let pk = h.group.public_key_bytes();
    sign::verify::<C>(&pk, b"m", &sig).unwrap();
    if sig.len() == 65 {
        // Plain secp256k1 (RFC 9591): R is a 33-byte SEC1 point.
        let mut bad = sig.clone();
        bad[0] = 0x05;
        assert!(sign::Signature::<C>::from_bytes(&bad).is_err());
        assert!(sign::verify::<C>(&pk, b"m", &bad).is_err());
        assert!(h.group.verify(b"m", &bad).is_err());
    }
    if pk.len() == 33 {
        let mut bad = pk.clone();
        bad[0] = 0x05;
        assert!(sign::verify::<C>(&bad, b"m", &sig).is_err());
    }
}

/// `Suite::CANONICAL_ELEMENT_DECODER` is true for Ed25519 and Ristretto255:
/// every non-canonical encoding must already be refused by the frost decoder.
#[test]
fn ed25519_and_ristretto_non_canonical_encodings_are_refused() {
    // p = 2^255 - 19, little-endian.
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    fn with_point<C: Suite>(point: &[u8; 32]) -> Vec<u8> {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let members: BTreeSet<_> = ParticipantId::range(3).collect();
        let h = local::dkg::<C, _>(SessionId([1; 32]), 2, &members, &mut rng).unwrap();
        let (_, c) = sign::commit(&h.shares[&ParticipantId::new(1).unwrap()], &mut rng);
        let mut bytes = c.to_bytes();
        bytes[5..37].copy_from_slice(point);
        bytes
    }
    // Ed25519: the 19 values y = p + k (k = 0..18), either sign of x.
    for k in 0..19u8 {
        for sign in [0u8, 0x80] {
            let mut y = p;
            y[0] = y[0].wrapping_add(k);
            if y[0] < k {
                continue; // carried past 2^255; not an encoding of p + k
            }
            y[31] = (y[31] & 0x7f) | sign;
            let bytes = with_point::<Ed25519>(&y);
            assert!(
                sign::SigningCommitment::<Ed25519>::from_bytes(&bytes).is_err(),
                "Ed25519 y = p + {k} (sign {sign:#x}) accepted"
            );
        }
    }
    // Ristretto255 (RFC 9496 §4.3.1): s >= p and negative s are refused.
    let mut negative_one = [0u8; 32];
    negative_one[0] = 1;
    for s in [p, negative_one] {
        let bytes = with_point::<keyquorum_core::Ristretto255>(&s);
        assert!(
            sign::SigningCommitment::<keyquorum_core::Ristretto255>::from_bytes(&bytes).is_err()
        );
    }
}

#[test]
fn secp256k1_compact_point_tag_is_refused() {
    compact_tag_refused::<keyquorum_core::Secp256k1>();
    compact_tag_refused::<Secp256k1Tr>();
}

fn config() -> Config {
    Config {
        cases: 512,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x656e_636f_6465),
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Random bytes never panic any decoder.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        for (name, _) in [("group_key", ()), ("dkg_round1", ()), ("dkg_round2", ()), ("signing_commitment", ()),
            ("signing_package", ()), ("signature_share", ()), ("refresh_round1", ()), ("reshare_deal", ()),
            ("repair_images", ()), ("repair_delta", ()), ("feldman_commitment", ()), ("key_share", ())] {
            let _ = redecode::<Ed25519>(name, &bytes);
            let _ = redecode::<Secp256k1Tr>(name, &bytes);
        }
    }

    /// Mutating any byte of a valid encoding either fails to decode or decodes
    /// to something that re-encodes to exactly the mutated bytes.
    #[test]
    fn mutations_are_rejected_or_canonical(index in any::<prop::sample::Index>(), xor in 1u8..=255, which in 0usize..12) {
        let all = samples::<Ed25519>();
        let (name, bytes) = &all[which % all.len()];
        let mut v = bytes.clone();
        let i = index.index(v.len());
        v[i] ^= xor;
        if let Ok(re) = redecode::<Ed25519>(name, &v) {
            prop_assert_eq!(re, v);
        }
    }

    /// The same for secp256k1-tr, whose SEC1 points have a tag byte.
    #[test]
    fn secp256k1_mutations_are_rejected_or_canonical(index in any::<prop::sample::Index>(), xor in 1u8..=255, which in 0usize..12) {
        let all = samples::<Secp256k1Tr>();
        let (name, bytes) = &all[which % all.len()];
        let mut v = bytes.clone();
        let i = index.index(v.len());
        v[i] ^= xor;
        if let Ok(re) = redecode::<Secp256k1Tr>(name, &v) {
            prop_assert_eq!(re, v);
        }
    }
}

#[test]
fn wire_helper_roundtrips() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let members: BTreeSet<_> = ParticipantId::range(3).collect();
    let h = local::dkg::<Secp256k1Tr, _>(SessionId([2; 32]), 2, &members, &mut rng).unwrap();
    assert_eq!(wire(&h.group).unwrap(), h.group);
}
