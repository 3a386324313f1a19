//! RFC 8554 (LMS/HSS) conformance of `keyquorum_core::lms`:
//! - the RFC's Appendix F vectors verify, and any altered byte fails;
//! - the Test Case 2 top-level key regenerates from its SEED and I (the
//!   public root) and its signature `sig[0]` is reproduced byte for byte;
//! - signatures we make, for every LM-OTS width and several tree heights,
//!   built whole or from aligned subtrees, verify with `hbs-lms`, an RFC 8554
//!   implementation we did not write, and altered ones do not.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests: a failed unwrap is a failed test"
)]

use std::collections::BTreeMap;

use keyquorum_core::lms::hss::{single_signature, HssPublicKey};
use keyquorum_core::lms::ots::LeafSeed;
use keyquorum_core::lms::tree::{self, LmsSignature, Subtree};
use keyquorum_core::lms::{Identifier, LmotsType, LmsPublicKey, LmsType, OtsPrivateKey};
use proptest::prelude::*;

/// The vectors file: `name = hex` lines.
fn vectors() -> BTreeMap<String, Vec<u8>> {
    let text = include_str!("../vectors/rfc8554_appendix_f.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once(" = ").unwrap();
            (k.to_string(), hex::decode(v).unwrap())
        })
        .collect()
}

#[test]
fn the_rfc_8554_appendix_f_signatures_verify_and_altered_ones_do_not() {
    let v = vectors();
    for tc in ["tc1", "tc2"] {
        let pk = HssPublicKey::from_bytes(&v[&format!("{tc}.public_key")]).unwrap();
        assert_eq!(pk.levels, 2);
        let msg = &v[&format!("{tc}.message")];
        let sig = &v[&format!("{tc}.signature")];
        pk.verify(msg, sig).unwrap();
        assert_eq!(pk.to_bytes(), v[&format!("{tc}.public_key")]);
        // An altered message, or a byte altered anywhere in the signature
        // (sampled through every part), fails; so does a cut or longer one.
        let mut other = msg.clone();
        other[0] ^= 1;
        assert!(pk.verify(&other, sig).is_err());
        for at in (0..sig.len()).step_by(97).chain([sig.len() - 1]) {
            let mut bad = sig.clone();
            bad[at] ^= 0x40;
            assert!(pk.verify(msg, &bad).is_err(), "{tc}: byte {at} altered");
        }
        assert!(pk.verify(msg, &sig[..sig.len() - 1]).is_err());
        let mut longer = sig.clone();
        longer.push(0);
        assert!(pk.verify(msg, &longer).is_err());
    }
}

#[test]
fn the_test_case_2_top_tree_regenerates_from_its_seed_and_signs_as_the_rfc_shows() {
    let v = vectors();
    let pk = HssPublicKey::from_bytes(&v["tc2.public_key"]).unwrap();
    let id: Identifier = v["tc2.top_i"].clone().try_into().unwrap();
    let seed = LeafSeed::from_bytes(v["tc2.top_seed"].clone().try_into().unwrap());
    assert_eq!(pk.top.id, id);
    assert_eq!((pk.top.lms, pk.top.ots), (LmsType::H10, LmotsType::W4));
    // Appendix A: every leaf's key from the one SEED.
    let ks: Vec<_> = (0..LmsType::H10.leaves())
        .map(|q| OtsPrivateKey::derive(LmotsType::W4, &id, q, &seed).public_key_hash())
        .collect();
    let whole = Subtree::from_leaves(&id, LmsType::H10, 0, &ks).unwrap();
    assert_eq!(whole.root(), pk.top.root);
    // The same root from eight subtrees of 128 leaves and the tree above them.
    let subs: Vec<Subtree> = ks
        .chunks(128)
        .zip((0u32..).step_by(128))
        .map(|(k, first)| Subtree::from_leaves(&id, LmsType::H10, first, k).unwrap())
        .collect();
    let upper = Subtree::from_nodes(&id, 8, subs.iter().map(Subtree::root).collect()).unwrap();
    assert_eq!(upper.root(), pk.top.root);

    // sig[0] signs the second level's public key with one top leaf: our
    // signature from that leaf's key, the RFC's C and our path is the RFC's.
    let sig = &v["tc2.signature"][4..];
    let len = LmsSignature::len_at(sig).unwrap();
    let (sig0, rest) = sig.split_at(len);
    let child = &rest[..LmsPublicKey::LEN];
    let parsed = LmsSignature::parse(sig0).unwrap();
    let c: [u8; 32] = parsed.ots_signature[4..36].try_into().unwrap();
    let q = parsed.q;
    let path = subs[(q / 128) as usize]
        .path(1024 + q)
        .unwrap()
        .join(upper.path(subs[(q / 128) as usize].root_node()).unwrap());
    let key = OtsPrivateKey::derive(LmotsType::W4, &id, q, &seed);
    let ours = tree::sign(&pk.top, key, &path, child, &c).unwrap();
    assert_eq!(ours, sig0);
}

/// A one-level HSS key of type `(lms, ots)` with one seed per leaf, built
/// from `subtrees` aligned subtrees; its public key and a signer.
struct Key {
    lms: LmsType,
    ots: LmotsType,
    id: Identifier,
    seeds: Vec<LeafSeed>,
    whole: Subtree,
    public: HssPublicKey,
}

impl Key {
    fn new(lms: LmsType, ots: LmotsType, salt: u8, subtrees: u32) -> Self {
        let id = [salt; 16];
        let seeds: Vec<LeafSeed> = (0..lms.leaves())
            .map(|q| {
                let mut b = [salt; 32];
                b[..4].copy_from_slice(&q.to_be_bytes());
                LeafSeed::from_bytes(b)
            })
            .collect();
        let ks: Vec<_> = seeds
            .iter()
            .zip(0..)
            .map(|(s, q)| OtsPrivateKey::derive(ots, &id, q, s).public_key_hash())
            .collect();
        let per = (lms.leaves() / subtrees) as usize;
        let roots: Vec<_> = ks
            .chunks(per)
            .zip((0u32..).step_by(per))
            .map(|(k, first)| Subtree::from_leaves(&id, lms, first, k).unwrap().root())
            .collect();
        let whole = Subtree::from_leaves(&id, lms, 0, &ks).unwrap();
        let upper = Subtree::from_nodes(&id, subtrees, roots).unwrap();
        assert_eq!(upper.root(), whole.root());
        let public = HssPublicKey::single(LmsPublicKey {
            lms,
            ots,
            id,
            root: whole.root(),
        });
        Self {
            lms,
            ots,
            id,
            seeds,
            whole,
            public,
        }
    }

    fn sign(&self, q: u32, message: &[u8], c: [u8; 32]) -> Vec<u8> {
        let key = OtsPrivateKey::derive(self.ots, &self.id, q, &self.seeds[q as usize]);
        let path = self.whole.path(self.lms.leaves() + q).unwrap();
        single_signature(&tree::sign(&self.public.top, key, &path, message, &c).unwrap())
    }
}

#[test]
fn our_signatures_verify_with_an_implementation_we_did_not_write() {
    use hbs_lms::Sha256_256;
    let mut cases = vec![(LmsType::H10, LmotsType::W4, 8)];
    cases.extend(LmotsType::ALL.map(|ots| (LmsType::H5, ots, 4)));
    for (lms, ots, subtrees) in cases {
        let key = Key::new(lms, ots, lms.height() ^ ots.w(), subtrees);
        let pk = key.public.to_bytes();
        for (q, msg) in [
            (0u32, &b"firmware 1.0"[..]),
            (lms.leaves() - 1, b""),
            (7, b"x"),
        ] {
            let sig = key.sign(q, msg, [q as u8; 32]);
            key.public.verify(msg, &sig).unwrap();
            assert!(
                hbs_lms::verify::<Sha256_256>(msg, &sig, &pk).is_ok(),
                "{lms:?}/{ots:?} leaf {q}: hbs-lms refused our signature"
            );
            let mut bad = sig.clone();
            bad[50] ^= 1;
            assert!(hbs_lms::verify::<Sha256_256>(msg, &bad, &pk).is_err());
            assert!(key.public.verify(msg, &bad).is_err());
        }
    }
}

/// The root a leaf's key and path imply, computed here from RFC 8554 §5.3
/// and §5.4.2 with SHA-256 directly (not with the code under test).
fn root_of(id: &Identifier, lms: LmsType, q: u32, k: &[u8; 32], path: &[[u8; 32]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut node = (1u32 << lms.height()) + q;
    let mut tmp: [u8; 32] = Sha256::new()
        .chain_update(id)
        .chain_update(node.to_be_bytes())
        .chain_update([0x82, 0x82])
        .chain_update(k)
        .finalize()
        .into();
    for p in path {
        let (left, right) = if node % 2 == 1 { (p, &tmp) } else { (&tmp, p) };
        tmp = Sha256::new()
            .chain_update(id)
            .chain_update((node / 2).to_be_bytes())
            .chain_update([0x83, 0x83])
            .chain_update(left)
            .chain_update(right)
            .finalize()
            .into();
        node /= 2;
    }
    tmp
}

/// Tall trees without building them: a leaf's signature with an arbitrary
/// path, under the root that path implies, for every height up to H25 and
/// leaves at both ends (node numbers up to 2^26 − 1): both implementations
/// accept it; the same signature claiming the leaf one past the tree, or
/// under the wrong parameter sets, is refused.
#[test]
fn tall_trees_and_their_last_leaves_verify_with_both_implementations() {
    let id = [0x3cu8; 16];
    for lms in LmsType::ALL {
        for q in [0, lms.leaves() - 1] {
            let ots = LmotsType::W8;
            let seed = LeafSeed::from_bytes([lms.height(); 32]);
            let k = OtsPrivateKey::derive(ots, &id, q, &seed).public_key_hash();
            let path: Vec<[u8; 32]> = (0..lms.height()).map(|i| [i ^ 0x5a; 32]).collect();
            let top = LmsPublicKey {
                lms,
                ots,
                id,
                root: root_of(&id, lms, q, &k, &path),
            };
            let key = OtsPrivateKey::derive(ots, &id, q, &seed);
            let sig = tree::sign(&top, key, &tree::AuthPath(path), b"tall", &[1u8; 32]).unwrap();
            let hss = HssPublicKey::single(top);
            let full = single_signature(&sig);
            hss.verify(b"tall", &full).unwrap();
            assert!(
                hbs_lms::verify::<hbs_lms::Sha256_256>(b"tall", &full, &hss.to_bytes()).is_ok(),
                "{lms:?} leaf {q}"
            );
            // The leaf one past the tree, at the right length: refused.
            let mut past = full.clone();
            past[4..8].copy_from_slice(&lms.leaves().to_be_bytes());
            assert!(hss.verify(b"tall", &past).is_err());
            // The same bytes under a W4 key: the type check refuses it.
            let w4 = HssPublicKey::single(LmsPublicKey {
                ots: LmotsType::W4,
                ..top
            });
            assert!(w4.verify(b"tall", &full).is_err());
        }
    }
}

#[test]
fn hss_levels_and_their_counts_must_agree() {
    let v = vectors();
    let pk = HssPublicKey::from_bytes(&v["tc1.public_key"]).unwrap();
    let msg = &v["tc1.message"];
    let sig = &v["tc1.signature"];
    // Nspk 1 under an L = 1 key, Nspk 0xffffffff, L = 0 and 9 keys.
    let one = HssPublicKey { levels: 1, ..pk };
    assert!(one.verify(msg, sig).is_err());
    let mut huge = sig.clone();
    huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(pk.verify(msg, &huge).is_err());
    for l in [0u32, 9] {
        let mut bytes = pk.to_bytes();
        bytes[..4].copy_from_slice(&l.to_be_bytes());
        assert!(HssPublicKey::from_bytes(&bytes).is_err());
    }
    // The signature cut inside the second level's public key.
    let len = LmsSignature::len_at(&sig[4..]).unwrap();
    assert!(pk.verify(msg, &sig[..4 + len + 20]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any leaf signs any message; the signature verifies for that message
    /// only, with both implementations, and altered anywhere it fails.
    #[test]
    fn any_leaf_signs_any_message(
        q in 0u32..32,
        msg in proptest::collection::vec(any::<u8>(), 0..200),
        c in any::<[u8; 32]>(),
        flip in any::<prop::sample::Index>(),
    ) {
        use std::sync::OnceLock;
        static KEY: OnceLock<Key> = OnceLock::new();
        let key = KEY.get_or_init(|| Key::new(LmsType::H5, LmotsType::W2, 77, 2));
        let sig = key.sign(q, &msg, c);
        prop_assert!(key.public.verify(&msg, &sig).is_ok());
        prop_assert!(hbs_lms::verify::<hbs_lms::Sha256_256>(&msg, &sig, &key.public.to_bytes()).is_ok());
        let mut other = msg.clone();
        other.push(1);
        prop_assert!(key.public.verify(&other, &sig).is_err());
        let mut bad = sig.clone();
        let at = flip.index(bad.len());
        bad[at] ^= 1;
        prop_assert!(key.public.verify(&msg, &bad).is_err());
    }
}
