#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! Property tests (proptest, fixed seed) over (t, n) with n ≤ 16:
//! any t-subset signs and reconstructs, no (t-1)-subset does; refresh, repair
//! and reshare keep the group key; old-epoch shares fail against the new
//! public shares; every tampered share or proof names the right culprit.

use std::collections::{BTreeMap, BTreeSet};

use keyquorum_core::dkg::{self, DkgParams};
use keyquorum_core::local::{self, Holders};
use keyquorum_core::secret::SecretScalar;
use keyquorum_core::sign::{self, Coordinator};
use keyquorum_core::{hazmat, refresh, repair, reshare, vss};
use keyquorum_core::{
    Ed25519, Error, Fault, KeyShare, ParticipantId, Secp256k1Tr, SessionId, Suite,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x6b65_7971_756f_7275),
        failure_persistence: None,
        ..Config::default()
    }
}

fn ids(r: impl IntoIterator<Item = u16>) -> BTreeSet<ParticipantId> {
    r.into_iter()
        .map(|i| ParticipantId::new(i).unwrap())
        .collect()
}

fn sid(rng: &mut ChaCha20Rng) -> SessionId {
    let mut s = [0u8; 32];
    rng.fill_bytes(&mut s);
    SessionId(s)
}

/// A random k-subset of `from`.
fn subset(
    from: &BTreeSet<ParticipantId>,
    k: usize,
    rng: &mut ChaCha20Rng,
) -> BTreeSet<ParticipantId> {
    let mut v: Vec<_> = from.iter().copied().collect();
    for i in (1..v.len()).rev() {
        let j = (rng.next_u32() as usize) % (i + 1);
        v.swap(i, j);
    }
    v.into_iter().take(k).collect()
}

fn zero<C: Suite>() -> frost_core::Scalar<C> {
    <<C::Group as frost_core::Group>::Field as frost_core::Field>::zero()
}

fn secrets<C: Suite>(
    h: &Holders<C>,
    who: &BTreeSet<ParticipantId>,
) -> BTreeMap<ParticipantId, SecretScalar<C>> {
    who.iter().map(|i| (*i, h.shares[i].secret())).collect()
}

fn reconstructs<C: Suite>(
    shares: &BTreeMap<ParticipantId, SecretScalar<C>>,
    h: &Holders<C>,
) -> bool {
    vss::interpolate(shares, &zero::<C>()).unwrap().public() == h.group.verifying_element()
}

/// (t, n) with 2 ≤ t ≤ n ≤ max.
fn t_n(max: u16) -> impl Strategy<Value = (u16, u16)> {
    (2..=max).prop_flat_map(|n| (2..=n, Just(n)))
}

fn any_subset_signs<C: Suite>(t: u16, n: u16, seed: u64) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let members = ids(1..=n);
    let h = local::dkg::<C, _>(sid(&mut rng), t, &members, &mut rng).unwrap();
    assert_eq!(h.group.threshold(), t);

    let signers = subset(&members, t as usize, &mut rng);
    let msg = seed.to_be_bytes();
    let sig = local::sign(&h, sid(&mut rng), &signers, &msg, &mut rng).unwrap();
    sign::verify::<C>(&h.group.public_key_bytes(), &msg, &sig.to_bytes()).unwrap();

    // The same t-subset reconstructs the key (hazmat path and raw interpolation).
    let chosen: Vec<&KeyShare<C>> = signers.iter().map(|i| &h.shares[i]).collect();
    let pk = hazmat::with_reconstructed_key(&h.group, &chosen, |k| k.public()).unwrap();
    assert!(pk == h.group.verifying_element());
    assert!(reconstructs(&secrets(&h, &signers), &h));

    // No (t-1)-subset does: hazmat refuses, and raw interpolation is wrong.
    let fewer = subset(&members, t as usize - 1, &mut rng);
    let chosen: Vec<&KeyShare<C>> = fewer.iter().map(|i| &h.shares[i]).collect();
    assert!(matches!(
        hazmat::with_reconstructed_key(&h.group, &chosen, |_| ()),
        Err(Error::NotEnough { .. })
    ));
    assert!(!reconstructs(&secrets(&h, &fewer), &h));

    // Fewer than t signers cannot even open a signing run.
    let mut commitments = Vec::new();
    for s in &fewer {
        commitments.push(sign::commit(&h.shares[s], &mut rng).1);
    }
    assert!(matches!(
        Coordinator::new(&h.group, sid(&mut rng), &msg, commitments),
        Err(Error::NotEnough { .. })
    ));
}

fn lifecycle_keeps_key<C: Suite>(t: u16, n: u16, seed: u64) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let members = ids(1..=n);
    let h = local::dkg::<C, _>(sid(&mut rng), t, &members, &mut rng).unwrap();
    let vk = h.group.verifying_element();

    // Refresh: same key, every share new; old shares fail against the new public shares.
    let r = local::refresh(h.clone(), sid(&mut rng), &mut rng).unwrap();
    assert!(r.group.verifying_element() == vk);
    for (id, old) in &h.shares {
        assert!(r.shares[id].secret() != old.secret());
        assert!(matches!(
            KeyShare::new(*id, old.secret(), &r.group),
            Err(Error::ShareMismatch)
        ));
    }
    let signers = subset(&members, t as usize, &mut rng);
    let sig = local::sign(&r, sid(&mut rng), &signers, b"refreshed", &mut rng).unwrap();
    sign::verify::<C>(&r.group.public_key_bytes(), b"refreshed", &sig.to_bytes()).unwrap();

    // Repair a random member from a random t-subset of the others.
    let target = *subset(&members, 1, &mut rng).iter().next().unwrap();
    let others: BTreeSet<_> = members.iter().filter(|m| **m != target).copied().collect();
    if others.len() >= t as usize {
        let helpers = subset(&others, t as usize, &mut rng);
        let repaired = local::repair(&r, sid(&mut rng), &helpers, target, &mut rng).unwrap();
        assert!(repaired.secret() == r.shares[&target].secret());
    }

    // Reshare to (t+1)-of-(n+1): a random t-subset deals; the new set drops
    // one random old member and adds two new ones.
    let dealers = subset(&members, t as usize, &mut rng);
    let dropped = *subset(&members, 1, &mut rng).iter().next().unwrap();
    let mut new_members: BTreeSet<_> = members.iter().filter(|m| **m != dropped).copied().collect();
    new_members.extend(ids([n + 1, n + 2]));
    let t2 = t + 1;
    let s = local::reshare(&r, sid(&mut rng), &dealers, t2, &new_members, &mut rng).unwrap();
    assert!(s.group.verifying_element() == vk);
    assert_eq!(s.group.threshold(), t2);
    assert_eq!(s.group.members(), &new_members);
    let signers = subset(&new_members, t2 as usize, &mut rng);
    let sig = local::sign(&s, sid(&mut rng), &signers, b"reshared", &mut rng).unwrap();
    sign::verify::<C>(&s.group.public_key_bytes(), b"reshared", &sig.to_bytes()).unwrap();
    assert!(reconstructs(&secrets(&s, &signers), &s));

    // Old shares are useless against the new epoch: they fail the new public
    // shares, and mixing t'-1 new shares with any old share does not give the key.
    for (id, old) in &r.shares {
        if new_members.contains(id) {
            assert!(matches!(
                KeyShare::new(*id, old.secret(), &s.group),
                Err(Error::ShareMismatch)
            ));
        }
    }
    let few_new = subset(&new_members, t2 as usize - 1, &mut rng);
    let mut mixed = secrets(&s, &few_new);
    for (id, old) in &r.shares {
        mixed.entry(*id).or_insert_with(|| old.secret());
        if mixed.len() >= t2 as usize {
            break;
        }
    }
    assert!(mixed.len() >= t2 as usize);
    assert!(!reconstructs(&mixed, &s));
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn ed25519_any_t_subset_signs_and_reconstructs((t, n) in t_n(16), seed in any::<u64>()) {
        any_subset_signs::<Ed25519>(t, n, seed);
    }

    #[test]
    fn ed25519_refresh_repair_reshare_keep_the_key((t, n) in t_n(10), seed in any::<u64>()) {
        lifecycle_keeps_key::<Ed25519>(t, n, seed);
    }
}

proptest! {
    #![proptest_config(config(8))]

    #[test]
    fn secp256k1_tr_any_t_subset_signs((t, n) in t_n(8), seed in any::<u64>()) {
        any_subset_signs::<Secp256k1Tr>(t, n, seed);
    }

    #[test]
    fn secp256k1_tr_refresh_repair_reshare_keep_the_key((t, n) in t_n(6), seed in any::<u64>()) {
        lifecycle_keeps_key::<Secp256k1Tr>(t, n, seed);
    }
}

/// Every t-subset of small groups signs (exhaustive, not sampled).
#[test]
fn every_t_subset_signs_exhaustively() {
    let mut rng = ChaCha20Rng::seed_from_u64(17);
    for (t, n) in [(2u16, 3u16), (3, 5), (2, 4)] {
        let members = ids(1..=n);
        let h = local::dkg::<Ed25519, _>(sid(&mut rng), t, &members, &mut rng).unwrap();
        let all: Vec<_> = members.iter().copied().collect();
        let mut count = 0;
        for mask in 0u32..(1 << n) {
            if mask.count_ones() != t as u32 {
                continue;
            }
            let signers: BTreeSet<_> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, p)| *p)
                .collect();
            let sig = local::sign(&h, sid(&mut rng), &signers, b"all subsets", &mut rng).unwrap();
            h.group.verify(b"all subsets", &sig.to_bytes()).unwrap();
            count += 1;
        }
        assert!(count > 0);
    }
}

// ---- culprit identification -------------------------------------------------

/// Run a DKG by hand, corrupting one message from `culprit`, and return the
/// error a victim reports.
fn dkg_with_tamper(t: u16, n: u16, culprit: u16, victim: u16, bad_proof: bool, seed: u64) -> Error {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let members = ids(1..=n);
    let params = DkgParams {
        session: sid(&mut rng),
        threshold: t,
        members: members.clone(),
    };
    let culprit = ParticipantId::new(culprit).unwrap();
    let victim = ParticipantId::new(victim).unwrap();
    let mut r1 = BTreeMap::new();
    let mut msgs = Vec::new();
    for me in &members {
        let (s, m) = dkg::start::<Ed25519, _>(params.clone(), *me, &mut rng).unwrap();
        r1.insert(*me, s);
        msgs.push((*me, m));
    }
    for (from, m) in &msgs {
        for (to, s) in r1.iter_mut() {
            if to == from {
                continue;
            }
            let mut m = local::wire(m).unwrap();
            if bad_proof && *from == culprit && *to == victim {
                m.tamper_proof();
                return s.receive(*from, m).unwrap_err();
            }
            s.receive(*from, m).unwrap();
        }
    }
    let mut r2 = BTreeMap::new();
    let mut direct = Vec::new();
    for (me, s) in r1 {
        let (s, out) = s.advance().unwrap();
        r2.insert(me, s);
        direct.extend(out.into_iter().map(|(to, m)| (me, to, m)));
    }
    for (from, to, m) in direct {
        let mut m = local::wire(&m).unwrap();
        if from == culprit && to == victim {
            m.tamper_share();
        }
        r2.get_mut(&to).unwrap().receive(from, m).unwrap();
    }
    // Everyone else finishes; the victim names the culprit.
    let mut victim_error = None;
    for (me, s) in r2 {
        match s.finish() {
            Ok(_) => assert!(me != victim),
            Err(e) => {
                assert_eq!(me, victim);
                victim_error = Some(e);
            }
        }
    }
    victim_error.expect("the victim must reject the tampered share")
}

/// A DKG with one complaint: `accuser` accuses `accused`, who dealt it a
/// good share (`tampered` false: a false accusation) or a share off its
/// commitment (`tampered` true). The accused reveals what it dealt; anyone
/// checks the reveal against the accused's round-one commitment. Returns
/// the check's verdict and, if the accusation is dismissed, every
/// member's group key after the accuser took the revealed share.
#[allow(clippy::type_complexity, reason = "test helper")]
fn dkg_with_complaint(
    t: u16,
    n: u16,
    accused: u16,
    accuser: u16,
    tampered: bool,
    seed: u64,
) -> (Result<(), Error>, Vec<Vec<u8>>) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let members = ids(1..=n);
    let params = DkgParams {
        session: sid(&mut rng),
        threshold: t,
        members: members.clone(),
    };
    let accused = ParticipantId::new(accused).unwrap();
    let accuser = ParticipantId::new(accuser).unwrap();
    let mut r1 = BTreeMap::new();
    let mut msgs = BTreeMap::new();
    for me in &members {
        let (s, m) = dkg::start::<Ed25519, _>(params.clone(), *me, &mut rng).unwrap();
        // Every broadcast checks out on its own, as a coordinator checks it.
        dkg::check_round1(&params, *me, &m).unwrap();
        r1.insert(*me, s);
        msgs.insert(*me, m);
    }
    for (from, m) in &msgs {
        for (to, s) in r1.iter_mut() {
            if to != from {
                s.receive(*from, local::wire(m).unwrap()).unwrap();
            }
        }
    }
    let everyone = dkg::round1_transcript(&params, &msgs).unwrap();
    let mut r2 = BTreeMap::new();
    let mut dealt = None;
    let mut direct = Vec::new();
    for (me, s) in r1 {
        let (s, out) = s.advance().unwrap();
        r2.insert(me, s);
        direct.extend(out.into_iter().map(|(to, m)| (me, to, m)));
    }
    for (from, to, m) in direct {
        let mut m = local::wire(&m).unwrap();
        if from == accused && to == accuser {
            if tampered {
                m.tamper_share();
            }
            // What the accused dealt, as it will reveal it.
            dealt = Some(local::wire(&m).unwrap());
        }
        r2.get_mut(&to).unwrap().receive(from, m).unwrap();
    }
    for s in r2.values() {
        assert_eq!(
            s.transcript(),
            everyone,
            "anyone computes the members' transcript"
        );
    }
    let state = r2.get_mut(&accuser).unwrap();
    if tampered {
        // The accuser finds the bad share itself.
        assert_eq!(state.accusations().unwrap(), vec![accused]);
    } else {
        // A false accusation: nothing is wrong with the share.
        assert!(state.accusations().unwrap().is_empty());
        state.dispute(accused).unwrap();
        assert_eq!(state.accusations().unwrap(), vec![accused]);
        assert!(state.missing().contains(&accused));
    }
    let revealed: dkg::Round2Message<Ed25519> = dealt.unwrap();
    let verdict = dkg::check_revealed(accused, &msgs[&accused], accuser, &revealed);
    if verdict.is_err() {
        // The accuser refuses the bad share too.
        assert!(r2
            .get_mut(&accuser)
            .unwrap()
            .resolve(accused, revealed)
            .is_err());
        return (verdict, Vec::new());
    }
    // A share the accused dealt to someone else is no answer.
    let other = members.iter().find(|m| **m != accuser && **m != accused);
    if let Some(other) = other {
        assert!(dkg::check_revealed(accused, &msgs[&accused], *other, &revealed).is_err());
    }
    let state = r2.get_mut(&accuser).unwrap();
    state.resolve(accused, revealed).unwrap();
    assert!(state.accusations().unwrap().is_empty());
    let keys = r2
        .into_values()
        .map(|s| {
            let (_, group) = s.finish().unwrap();
            keyquorum_core::codec::Encode::to_bytes(&group)
        })
        .collect();
    (verdict, keys)
}

fn two_distinct() -> impl Strategy<Value = (u16, u16, u16, u16)> {
    t_n(8)
        .prop_flat_map(|(t, n)| (Just(t), Just(n), 1..=n, 1..=n))
        .prop_filter("distinct", |(_, _, a, b)| a != b)
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn dkg_bad_share_names_its_sender((t, n, c, v) in two_distinct(), seed in any::<u64>()) {
        let e = dkg_with_tamper(t, n, c, v, false, seed);
        prop_assert_eq!(e, Error::Misbehaved { culprits: vec![ParticipantId::new(c).unwrap()], fault: Fault::InvalidShare });
    }

    #[test]
    fn dkg_false_accusation_is_dismissed_and_keeps_every_member((t, n, c, v) in two_distinct(), seed in any::<u64>()) {
        let (verdict, keys) = dkg_with_complaint(t, n, c, v, false, seed);
        prop_assert!(verdict.is_ok());
        prop_assert_eq!(keys.len(), n as usize);
        prop_assert!(keys.iter().all(|k| *k == keys[0]), "every member computes the same group key");
    }

    #[test]
    fn dkg_true_accusation_convicts_the_dealer((t, n, c, v) in two_distinct(), seed in any::<u64>()) {
        let (verdict, _) = dkg_with_complaint(t, n, c, v, true, seed);
        prop_assert_eq!(verdict, Err(Error::Misbehaved { culprits: vec![ParticipantId::new(c).unwrap()], fault: Fault::InvalidShare }));
    }

    #[test]
    fn dkg_bad_proof_names_its_sender((t, n, c, v) in two_distinct(), seed in any::<u64>()) {
        let e = dkg_with_tamper(t, n, c, v, true, seed);
        prop_assert_eq!(e, Error::Misbehaved { culprits: vec![ParticipantId::new(c).unwrap()], fault: Fault::InvalidProofOfKnowledge });
    }

    #[test]
    fn signing_names_every_bad_signer((t, n) in t_n(8), seed in any::<u64>(), mask in any::<u16>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let members = ids(1..=n);
        let h = local::dkg::<Ed25519, _>(sid(&mut rng), t, &members, &mut rng).unwrap();
        let signers = subset(&members, t as usize, &mut rng);
        let mut nonces = BTreeMap::new();
        let mut commitments = Vec::new();
        for s in &signers {
            let (nonce, c) = sign::commit(&h.shares[s], &mut rng);
            nonces.insert(*s, nonce);
            commitments.push(c);
        }
        let mut coord = Coordinator::new(&h.group, sid(&mut rng), b"m", commitments).unwrap();
        let package = coord.package().clone();
        let mut bad = Vec::new();
        for (i, (s, nonce)) in nonces.into_iter().enumerate() {
            let mut share = nonce.sign(&h.shares[&s], &package).unwrap();
            if mask & (1 << i) != 0 {
                share.tamper();
                bad.push(s);
            }
            coord.receive(s, share).unwrap();
        }
        match coord.finish() {
            Ok(sig) => {
                prop_assert!(bad.is_empty());
                h.group.verify(b"m", &sig.to_bytes()).unwrap();
            }
            Err(e) => prop_assert_eq!(e, Error::Misbehaved { culprits: bad, fault: Fault::InvalidSignatureShare }),
        }
    }

    #[test]
    fn reshare_bad_dealer_is_named((t, n) in t_n(7), seed in any::<u64>(), constant in any::<bool>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let members = ids(1..=n);
        let h = local::dkg::<Ed25519, _>(sid(&mut rng), t, &members, &mut rng).unwrap();
        let dealers = subset(&members, t as usize, &mut rng);
        let culprit = *subset(&dealers, 1, &mut rng).iter().next().unwrap();
        let new_members = ids(1..=n + 1);
        let params = reshare::ReshareParams { session: sid(&mut rng), dealers: dealers.clone(), new_threshold: t, new_members: new_members.clone() };
        let victim = *subset(&new_members, 1, &mut rng).iter().next().unwrap();
        let mut rx = reshare::Receiver::new(params.clone(), victim, h.group.clone()).unwrap();
        for d in &dealers {
            for (to, mut m) in reshare::deal(&params, &h.group, &h.shares[d], &mut rng).unwrap() {
                if to != victim { continue; }
                if *d == culprit && constant {
                    // Caught on arrival: the commitment is not to the dealer's old share.
                    m.tamper_constant(victim, &mut rng);
                    prop_assert_eq!(rx.receive(*d, m), Err(Error::Misbehaved { culprits: vec![culprit], fault: Fault::WrongConstantTerm }));
                } else {
                    if *d == culprit { m.tamper_share() }
                    rx.receive(*d, m).unwrap();
                }
            }
        }
        if constant {
            prop_assert_eq!(rx.missing(), vec![culprit]);
            let not_enough = matches!(rx.finish(), Err(Error::NotEnough { .. }));
            prop_assert!(not_enough);
        } else {
            // Caught when the sub-shares are combined.
            prop_assert_eq!(rx.finish().unwrap_err(), Error::Misbehaved { culprits: vec![culprit], fault: Fault::InvalidShare });
        }
    }

    #[test]
    fn refresh_bad_subshare_is_named((t, n, c, v) in two_distinct(), seed in any::<u64>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let members = ids(1..=n);
        let h = local::dkg::<Ed25519, _>(sid(&mut rng), t, &members, &mut rng).unwrap();
        let (culprit, victim) = (ParticipantId::new(c).unwrap(), ParticipantId::new(v).unwrap());
        let session = sid(&mut rng);
        let mut r1 = BTreeMap::new();
        let mut msgs = Vec::new();
        for (me, share) in h.shares.clone() {
            let (s, m) = refresh::start(session, &h.group, share, &mut rng).unwrap();
            r1.insert(me, s);
            msgs.push((me, m));
        }
        for (from, m) in &msgs {
            for (to, s) in r1.iter_mut() {
                if to != from { s.receive(*from, m.clone()).unwrap(); }
            }
        }
        let mut found = None;
        let mut r2 = BTreeMap::new();
        let mut direct = Vec::new();
        for (me, s) in r1 {
            let (s, out) = s.advance().unwrap();
            r2.insert(me, s);
            direct.extend(out.into_iter().map(|(to, m)| (me, to, m)));
        }
        for (from, to, mut m) in direct {
            if from == culprit && to == victim {
                m.tamper_share();
            }
            r2.get_mut(&to).unwrap().receive(from, m).unwrap();
        }
        for (me, s) in r2 {
            match s.finish() {
                Ok(_) => prop_assert!(me != victim),
                Err(e) => {
                    prop_assert_eq!(me, victim);
                    found = Some(e);
                }
            }
        }
        prop_assert_eq!(found, Some(Error::Misbehaved { culprits: vec![culprit], fault: Fault::InvalidShare }));
    }

    #[test]
    fn repair_bad_delta_or_sigma_is_named((t, n) in t_n(7).prop_filter("needs a spare member", |(t, n)| n > t), seed in any::<u64>(), sigma in any::<bool>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let members = ids(1..=n);
        let h = local::dkg::<Ed25519, _>(sid(&mut rng), t, &members, &mut rng).unwrap();
        let target = *subset(&members, 1, &mut rng).iter().next().unwrap();
        let others: BTreeSet<_> = members.iter().filter(|m| **m != target).copied().collect();
        let helpers = subset(&others, t as usize, &mut rng);
        let culprit = *subset(&helpers, 1, &mut rng).iter().next().unwrap();
        let params = repair::RepairParams { session: sid(&mut rng), helpers: helpers.clone(), target };
        let mut tgt = repair::Target::new(params.clone(), h.group.clone()).unwrap();
        let mut states = BTreeMap::new();
        let mut images = Vec::new();
        let mut deltas = Vec::new();
        for hp in &helpers {
            let (s, img, out) = repair::Helper::start(params.clone(), h.group.clone(), &h.shares[hp], &mut rng).unwrap();
            states.insert(*hp, s);
            images.push((*hp, img));
            deltas.extend(out.into_iter().map(|(to, m)| (*hp, to, m)));
        }
        for (from, img) in &images {
            tgt.receive_images(*from, img.clone()).unwrap();
            for (to, s) in states.iter_mut() {
                if to != from { s.receive_images(*from, img.clone()).unwrap(); }
            }
        }
        for (from, to, mut m) in deltas {
            if !sigma && from == culprit {
                m.tamper();
                prop_assert_eq!(states.get_mut(&to).unwrap().receive_delta(from, m), Err(Error::Misbehaved { culprits: vec![culprit], fault: Fault::InconsistentValue }));
                return Ok(());
            }
            states.get_mut(&to).unwrap().receive_delta(from, m).unwrap();
        }
        for (hp, s) in states {
            let (_, mut m) = s.finish().unwrap();
            if hp == culprit {
                m.tamper();
                prop_assert_eq!(tgt.receive_sigma(hp, m), Err(Error::Misbehaved { culprits: vec![culprit], fault: Fault::InconsistentValue }));
                return Ok(());
            }
            tgt.receive_sigma(hp, m).unwrap();
        }
        prop_assert!(false, "culprit never sent");
    }
}

/// A message replayed into another session is refused; a duplicate is harmless;
/// a different message from the same sender is equivocation.
#[test]
fn session_binding_and_equivocation() {
    let mut rng = ChaCha20Rng::seed_from_u64(23);
    let members = ids(1..=3);
    let p = |s| DkgParams {
        session: SessionId([s; 32]),
        threshold: 2,
        members: members.clone(),
    };
    let (mut a, _) =
        dkg::start::<Ed25519, _>(p(1), ParticipantId::new(1).unwrap(), &mut rng).unwrap();
    let (_, from_b) =
        dkg::start::<Ed25519, _>(p(1), ParticipantId::new(2).unwrap(), &mut rng).unwrap();
    let (_, from_b_other_session) =
        dkg::start::<Ed25519, _>(p(2), ParticipantId::new(2).unwrap(), &mut rng).unwrap();
    let (_, from_b_again) =
        dkg::start::<Ed25519, _>(p(1), ParticipantId::new(2).unwrap(), &mut rng).unwrap();
    let b = ParticipantId::new(2).unwrap();
    assert_eq!(a.receive(b, from_b_other_session), Err(Error::WrongSession));
    a.receive(b, from_b.clone()).unwrap();
    a.receive(b, from_b).unwrap();
    assert_eq!(
        a.receive(b, from_b_again),
        Err(Error::Misbehaved {
            culprits: vec![b],
            fault: Fault::Equivocation
        })
    );
    let outsider = ParticipantId::new(9).unwrap();
    let (_, m) = dkg::start::<Ed25519, _>(p(1), ParticipantId::new(3).unwrap(), &mut rng).unwrap();
    assert_eq!(
        a.receive(outsider, m),
        Err(Error::UnknownParticipant(outsider))
    );
    assert!(matches!(a.advance(), Err(Error::NotEnough { .. })));
}

/// A nonce is consumed by signing (it cannot be used twice: `sign` takes it by
/// value and the type is neither Clone nor Copy), and a nonce only signs the
/// package that carries its own commitment.
#[test]
fn nonce_binds_to_its_commitment() {
    let mut rng = ChaCha20Rng::seed_from_u64(29);
    let h = local::dkg::<Ed25519, _>(sid(&mut rng), 2, &ids(1..=3), &mut rng).unwrap();
    let (p1, p2) = (
        ParticipantId::new(1).unwrap(),
        ParticipantId::new(2).unwrap(),
    );
    let (n1, c1) = sign::commit(&h.shares[&p1], &mut rng);
    let (_n1b, c1b) = sign::commit(&h.shares[&p1], &mut rng);
    let (_, c2) = sign::commit(&h.shares[&p2], &mut rng);
    // A package that carries another commitment of p1 is refused by n1.
    let coord = Coordinator::new(&h.group, sid(&mut rng), b"x", [c1b, c2]).unwrap();
    assert!(matches!(
        n1.sign(&h.shares[&p1], coord.package()),
        Err(Error::Misuse(_))
    ));
    let (n1, _) = sign::commit(&h.shares[&p1], &mut rng);
    // A nonce cannot sign with another participant's share.
    let coord = Coordinator::new(&h.group, sid(&mut rng), b"x", [c1, c2]).unwrap();
    assert!(matches!(
        n1.sign(&h.shares[&p2], coord.package()),
        Err(Error::Misuse(_))
    ));
}
