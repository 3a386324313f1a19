#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! Standard test vectors: RFC 9591 signing (Ed25519, secp256k1, ristretto255
//! and the BIP-340/Taproot variant), frost-core's DKG and repair vectors (read
//! from `../shared/vectors`), RFC 8032 §7.1 for the Ed25519 verifier path, and
//! cross-checks against k256's independent BIP-340 implementation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use frost_core::keys::repairable::{self, Delta, Sigma};
use frost_core::round1::{Nonce, SigningNonces};
use keyquorum_core::dkg::{self, DkgParams};
use keyquorum_core::secret::SecretScalar;
use keyquorum_core::sign::{self, Coordinator, SigningNonce};
use keyquorum_core::vss::Polynomial;
use keyquorum_core::{
    frost_core, Ed25519, GroupKey, KeyShare, ParticipantId, Ristretto255, Secp256k1, Secp256k1Tr,
    SessionId, Suite,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::Value;

fn vectors_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("KEYQUORUM_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
        });
    if dir.join("frost").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "test vectors missing at {} (CI always has ../shared/vectors)",
        dir.display()
    );
    eprintln!(
        "skipping: no test vectors at {} (set KEYQUORUM_VECTORS)",
        dir.display()
    );
    None
}

fn load(suite: &str, file: &str) -> Option<Value> {
    let path = vectors_dir()?.join("frost").join(suite).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Some(serde_json::from_str(&text).unwrap())
}

fn hexv(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn num(v: &Value) -> u16 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        other => other.as_u64().unwrap() as u16,
    }
}

fn pid(v: &Value) -> ParticipantId {
    ParticipantId::new(num(v)).unwrap()
}

fn scalar<C: Suite>(v: &Value) -> SecretScalar<C> {
    SecretScalar::from_bytes(&hexv(v)).unwrap()
}

/// RFC 9591 §E: sign with the given shares and nonces through our signer and
/// coordinator; every signature share and the final signature must match.
fn check_signing<C: Suite>(suite: &str) {
    let Some(v) = load(suite, "vectors.json") else {
        return;
    };
    let inputs = &v["inputs"];
    let t = num(&v["config"]["MIN_PARTICIPANTS"]);
    let vk_bytes = hexv(&inputs["verifying_key_key"]);
    let vk = frost_core::VerifyingKey::<C>::deserialize(&vk_bytes)
        .unwrap()
        .to_element();

    let mut secrets = BTreeMap::new();
    for p in inputs["participant_shares"].as_array().unwrap() {
        secrets.insert(pid(&p["identifier"]), scalar::<C>(&p["participant_share"]));
    }
    let publics = secrets.iter().map(|(id, s)| (*id, s.public())).collect();
    let group = GroupKey::<C>::from_parts(t, vk, publics).unwrap();
    // The group secret reconstructs from the shares.
    let group_secret = scalar::<C>(&inputs["group_secret_key"]);
    assert!(group_secret.public() == vk);

    let message = hexv(&inputs["message"]);
    let mut nonces = BTreeMap::new();
    let mut commitments = Vec::new();
    for o in v["round_one_outputs"]["outputs"].as_array().unwrap() {
        let id = pid(&o["identifier"]);
        let hiding = Nonce::<C>::deserialize(&hexv(&o["hiding_nonce"])).unwrap();
        let binding = Nonce::<C>::deserialize(&hexv(&o["binding_nonce"])).unwrap();
        let nonce = SigningNonce::from_frost(id, SigningNonces::from_nonces(hiding, binding));
        let c = nonce.commitment();
        assert_eq!(
            c.frost().hiding().serialize().unwrap(),
            hexv(&o["hiding_nonce_commitment"])
        );
        assert_eq!(
            c.frost().binding().serialize().unwrap(),
            hexv(&o["binding_nonce_commitment"])
        );
        commitments.push(c);
        nonces.insert(id, nonce);
    }
    let mut coord = Coordinator::new(&group, SessionId([9; 32]), &message, commitments).unwrap();
    let package = coord.package().clone();
    let expected: BTreeMap<_, _> = v["round_two_outputs"]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (pid(&o["identifier"]), hexv(&o["sig_share"])))
        .collect();
    for (id, nonce) in nonces {
        let share = KeyShare::new(id, secrets[&id].clone(), &group).unwrap();
        let s = nonce.sign(&share, &package).unwrap();
        assert_eq!(
            s.frost().serialize(),
            expected[&id],
            "signature share of {id}"
        );
        coord.receive(id, s).unwrap();
    }
    let sig = coord.finish().unwrap();
    assert_eq!(sig.to_bytes(), hexv(&v["final_output"]["sig"]));
    // And the plain verifier path accepts it.
    sign::verify::<C>(&group.public_key_bytes(), &message, &sig.to_bytes()).unwrap();
}

#[test]
fn rfc9591_ed25519() {
    check_signing::<Ed25519>("ed25519");
}

#[test]
fn rfc9591_secp256k1() {
    check_signing::<Secp256k1>("secp256k1");
}

#[test]
fn rfc9591_ristretto255() {
    check_signing::<Ristretto255>("ristretto255");
}

#[test]
fn bip340_frost_secp256k1_tr() {
    check_signing::<Secp256k1Tr>("secp256k1-tr");
}

/// frost-core's DKG vectors, run through our state machine: each participant
/// starts from its vector polynomial, receives the others' round-one packages
/// (proofs of knowledge verified) and round-two shares (Feldman-verified), and
/// must end with the vector's share, public share and group key.
fn check_dkg<C: Suite>(suite: &str) {
    let Some(v) = load(suite, "vectors_dkg.json") else {
        return;
    };
    let inputs = &v["inputs"];
    let n = num(&v["config"]["MAX_PARTICIPANTS"]);
    let t = num(&v["config"]["MIN_PARTICIPANTS"]);
    let members: BTreeSet<_> = ParticipantId::range(n).collect();
    let session = SessionId([1; 32]);
    let params = DkgParams {
        session,
        threshold: t,
        members: members.clone(),
    };
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let expected_vk = hexv(&inputs["verifying_key"]);
    for me in &members {
        let data = &inputs[me.get().to_string()];
        let poly = Polynomial::from_coefficients(vec![
            scalar::<C>(&data["signing_key"]),
            scalar::<C>(&data["coefficient"]),
        ]);
        let (mut r1, _) =
            dkg::start_with_polynomial::<C, _>(params.clone(), *me, &poly, &mut rng).unwrap();
        for other in members.iter().filter(|o| *o != me) {
            let od = &inputs[other.get().to_string()];
            let commitment = frost_core::keys::VerifiableSecretSharingCommitment::<C>::deserialize(
                od["vss_commitments"].as_array().unwrap().iter().map(hexv),
            )
            .unwrap();
            let pok = C::deserialize_signature(&hexv(&od["proof_of_knowledge"])).unwrap();
            let pkg = frost_core::keys::dkg::round1::Package::new(commitment, pok);
            r1.receive(*other, dkg::Round1Message::from_frost(session, pkg))
                .unwrap();
        }
        let (mut r2, out) = r1.advance().unwrap();
        // frost's vectors list under each participant the shares it *received*:
        // inputs[j].signing_shares[i] = f_i(j). What we send to j must be that.
        for (other, msg) in &out {
            let expected = &inputs[other.get().to_string()]["signing_shares"][me.get().to_string()];
            assert_eq!(msg.share().to_bytes().as_slice(), hexv(expected).as_slice());
        }
        let transcript = r2.transcript();
        for other in members.iter().filter(|o| *o != me) {
            let s = scalar::<C>(&data["signing_shares"][other.get().to_string()]);
            r2.receive(
                *other,
                dkg::Round2Message::from_share(session, transcript, s),
            )
            .unwrap();
        }
        let (share, group) = r2.finish().unwrap();
        assert_eq!(
            share.secret().to_bytes().as_slice(),
            hexv(&data["signing_share"]).as_slice()
        );
        let vs =
            frost_core::keys::VerifyingShare::<C>::deserialize(&hexv(&data["verifying_share"]))
                .unwrap();
        assert!(share.public_share() == vs.to_element());
        let vk = frost_core::VerifyingKey::<C>::deserialize(&expected_vk).unwrap();
        assert!(group.verifying_element() == vk.to_element());
    }
}

#[test]
fn dkg_vectors_ed25519() {
    check_dkg::<Ed25519>("ed25519");
}

#[test]
fn dkg_vectors_secp256k1() {
    check_dkg::<Secp256k1>("secp256k1");
}

#[test]
fn dkg_vectors_secp256k1_tr() {
    check_dkg::<Secp256k1Tr>("secp256k1-tr");
}

#[test]
fn dkg_vectors_ristretto255() {
    check_dkg::<Ristretto255>("ristretto255");
}

/// frost-core's repair vectors: the delta and sigma sums our helpers and
/// target rely on (frost `repair_share_part2/3`).
fn check_repair<C: Suite>(suite: &str) {
    let Some(v) = load(suite, "repair-share.json") else {
        return;
    };
    let g = &v["scalar_generation"];
    let deltas: Vec<_> = (1..=3)
        .map(|i| Delta::<C>::deserialize(&hexv(&g[format!("random_scalar_{i}")])).unwrap())
        .collect();
    assert_eq!(
        repairable::repair_share_part2(&deltas).serialize(),
        hexv(&g["random_scalar_sum"])
    );
    let s = &v["sigma_generation"];
    let sigmas: Vec<_> = (1..=4)
        .map(|i| Sigma::<C>::deserialize(&hexv(&s[format!("sigma_{i}")])).unwrap())
        .collect();
    let sum = scalar::<C>(&s["sigma_sum"]);
    // A public key package whose member 1 has the repaired share.
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let (_, pkp) = frost_core::keys::generate_with_dealer::<C, _>(
        3,
        2,
        frost_core::keys::IdentifierList::Default,
        &mut rng,
    )
    .unwrap();
    let id = ParticipantId::new(1).unwrap();
    let kp = repairable::repair_share_part3(&sigmas, id.to_frost(), &pkp).unwrap();
    assert_eq!(kp.signing_share().serialize(), sum.to_bytes().to_vec());
}

#[test]
fn repair_vectors_all_suites() {
    check_repair::<Ed25519>("ed25519");
    check_repair::<Secp256k1>("secp256k1");
    check_repair::<Secp256k1Tr>("secp256k1-tr");
    check_repair::<Ristretto255>("ristretto255");
}

/// RFC 8032 §7.1, tests 1–3: our plain verifier path accepts them and rejects
/// a flipped bit.
#[test]
fn rfc8032_verifier_path() {
    let cases = [
        (
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
    ];
    for (pk, msg, sig) in cases {
        let (pk, msg, mut sig) = (
            hex::decode(pk).unwrap(),
            hex::decode(msg).unwrap(),
            hex::decode(sig).unwrap(),
        );
        sign::verify::<Ed25519>(&pk, &msg, &sig).unwrap();
        sig[40] ^= 1;
        assert!(sign::verify::<Ed25519>(&pk, &msg, &sig).is_err());
    }
}

/// Signatures made by k256's BIP-340 signer verify on our verifier path, and
/// ours verify under k256 (in `lifecycle.rs` and the proptests).
#[test]
fn bip340_cross_check_with_k256() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    for i in 0..16u8 {
        let sk = k256::schnorr::SigningKey::random(&mut rng);
        let msg = [i; 32];
        // BIP-340 over the raw message (k256's `Signer` impl pre-hashes).
        let sig = sk.sign_raw(&msg, &[i; 32]).unwrap();
        let pk = sk.verifying_key().to_bytes();
        sign::verify::<Secp256k1Tr>(&pk, &msg, &sig.to_bytes()).unwrap();
        assert!(sign::verify::<Secp256k1Tr>(&pk, &[i ^ 1; 32], &sig.to_bytes()).is_err());
    }
    // Ed25519: dalek's signatures verify on our path.
    for i in 0..16u8 {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[i + 1; 32]);
        use ed25519_dalek::Signer as _;
        let sig = sk.sign(&[i; 7]);
        sign::verify::<Ed25519>(sk.verifying_key().as_bytes(), &[i; 7], &sig.to_bytes()).unwrap();
    }
}
