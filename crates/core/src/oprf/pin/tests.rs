//! The PIN protocol's steps and bounds.

use super::*;
use rand_core::OsRng;

fn cheap() -> Stretch {
    Stretch {
        m_kib: 8 * 1024,
        t_cost: 1,
        p_cost: 1,
    }
}

fn output_of(pin: &[u8], salt: &[u8; 16]) -> [u8; 64] {
    // The OPRF is the identity map here: these tests are about what
    // comes after it.
    let s = stretch(pin, "alice", salt, &cheap()).unwrap();
    *s
}

#[test]
fn registration_round_trips_with_t_shares_and_the_right_pin_only() {
    let version = [7u8; 16];
    let salt = [1u8; 16];
    let nodes: Vec<(u16, DeviceSecret)> = (1..=5).map(|i| (i, DeviceSecret::generate())).collect();
    let pks: Vec<(u16, [u8; 32])> = nodes.iter().map(|(i, d)| (*i, d.public_key())).collect();
    let keys = PinKeys::derive(&output_of(b"1234", &salt), "alice", &version);
    let reg =
        Registration::new(&keys, b"the secret", "alice", &version, &pks, 3, &mut OsRng).unwrap();
    assert_eq!(reg.commitments.len(), 5);
    // The right PIN's keys make every commitment; a wrong PIN's none.
    let wrong = PinKeys::derive(&output_of(b"1235", &salt), "alice", &version);
    let client = DeviceSecret::generate();
    let guess = [9u8; 16];
    let r = client.public_key();
    for (g, c) in &reg.commitments {
        assert_eq!(keys.commitment("alice", &version, *g), *c);
        assert_ne!(wrong.commitment("alice", &version, *g), *c);
        let p = keys.prove("alice", &version, *g, &guess, &r);
        assert!(check_proof(c, &p, "alice", &version, *g, &guess, &r));
        // A proof is for one guardian, one guess and one recipient.
        assert!(!check_proof(
            c,
            &p,
            "alice",
            &version,
            *g % 5 + 1,
            &guess,
            &r
        ));
        assert!(!check_proof(c, &p, "alice", &version, *g, &[8; 16], &r));
        assert!(!check_proof(c, &p, "alice", &version, *g, &guess, &[1; 32]));
        let w = wrong.prove("alice", &version, *g, &guess, &r);
        assert!(!check_proof(c, &w, "alice", &version, *g, &guess, &r));
        assert!(!check_proof(c, &p[..63], "alice", &version, *g, &guess, &r));
    }
    let released: Vec<(u16, Sealed)> = reg
        .shares
        .iter()
        .take(3)
        .map(|(g, s)| {
            let node = &nodes[usize::from(*g) - 1].1;
            (
                *g,
                release(
                    node.hpke(),
                    s,
                    &client.public_key(),
                    "alice",
                    &version,
                    &guess,
                    *g,
                )
                .unwrap(),
            )
        })
        .collect();
    let secret = open(
        &keys,
        &client,
        &released,
        3,
        &reg.ciphertext,
        "alice",
        &version,
        &guess,
    )
    .unwrap();
    assert_eq!(secret.as_slice(), b"the secret");
    // One guardian releasing garbage among more than t: still opens.
    let mut more: Vec<(u16, Sealed)> = reg
        .shares
        .iter()
        .map(|(g, s)| {
            let node = &nodes[usize::from(*g) - 1].1;
            (
                *g,
                release(
                    node.hpke(),
                    s,
                    &client.public_key(),
                    "alice",
                    &version,
                    &guess,
                    *g,
                )
                .unwrap(),
            )
        })
        .collect();
    more[0].1.ct[0] ^= 1;
    let bad = hpke_seal(
        &client.public_key(),
        &info(
            "keyquorum-pin-v1/release",
            "alice",
            &version,
            &[&guess, &2u16.to_be_bytes()],
        ),
        Scalar::ONE.as_bytes(),
    )
    .unwrap();
    more[1].1 = bad;
    let secret = open(
        &keys,
        &client,
        &more,
        3,
        &reg.ciphertext,
        "alice",
        &version,
        &guess,
    )
    .unwrap();
    assert_eq!(secret.as_slice(), b"the secret");
    // Below t; the wrong PIN's keys; another guess id; another client.
    assert!(open(
        &keys,
        &client,
        &released[..2],
        3,
        &reg.ciphertext,
        "alice",
        &version,
        &guess
    )
    .is_err());
    assert!(open(
        &wrong,
        &client,
        &released,
        3,
        &reg.ciphertext,
        "alice",
        &version,
        &guess
    )
    .is_err());
    assert!(open(
        &keys,
        &client,
        &released,
        3,
        &reg.ciphertext,
        "alice",
        &version,
        &[8; 16]
    )
    .is_err());
    assert!(open(
        &keys,
        &DeviceSecret::generate(),
        &released,
        3,
        &reg.ciphertext,
        "alice",
        &version,
        &guess
    )
    .is_err());
    // A guardian's sealed share opens only with its own node key.
    let (g, s) = &reg.shares[0];
    assert!(release(
        nodes[1].1.hpke(),
        s,
        &client.public_key(),
        "alice",
        &version,
        &guess,
        *g
    )
    .is_err());
    // A guardian's share, opened with its node key, is masked: not the
    // Shamir share of s.
    let (g1, s1) = &reg.shares[0];
    let opened = hpke_open(
        nodes[usize::from(*g1) - 1].1.hpke(),
        &info(
            "keyquorum-pin-v1/share",
            "alice",
            &version,
            &[&g1.to_be_bytes()],
        ),
        s1,
    )
    .unwrap();
    let unmasked = Scalar::from_canonical_bytes(opened.as_slice().try_into().unwrap()).unwrap()
        - keys.mask(*g1);
    assert_ne!(opened.as_slice(), unmasked.as_bytes());
    // The stored record holds neither the PIN nor the secret.
    let mut stored = reg.ciphertext.clone();
    for (_, s) in &reg.shares {
        stored.extend_from_slice(&s.ct);
    }
    assert!(!stored.windows(10).any(|w| w == b"the secret"));
    assert!(!stored.windows(4).any(|w| w == b"1234"));
}

#[test]
fn subsets_are_enumerated_once_each() {
    let mut pick = vec![0, 1];
    let mut seen = vec![pick.clone()];
    while next_subset(&mut pick, 4) {
        seen.push(pick.clone());
    }
    assert_eq!(seen, [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]);
}

#[test]
fn majority_thresholds_only() {
    assert!(check_majority(2, 3).is_ok());
    assert!(check_majority(3, 5).is_ok());
    assert!(check_majority(2, 4).is_err());
    assert!(check_majority(3, 6).is_err());
    assert!(check_majority(1, 1).is_err());
    assert!(check_majority(4, 3).is_err());
}

#[test]
fn stretch_depends_on_pin_account_and_salt_and_refuses_cheap_costs() {
    let a = stretch(b"1234", "alice", &[1; 16], &cheap()).unwrap();
    assert_ne!(*a, *stretch(b"1235", "alice", &[1; 16], &cheap()).unwrap());
    assert_ne!(*a, *stretch(b"1234", "alicf", &[1; 16], &cheap()).unwrap());
    assert_ne!(*a, *stretch(b"1234", "alice", &[2; 16], &cheap()).unwrap());
    let low = Stretch {
        m_kib: 1024,
        ..cheap()
    };
    assert!(stretch(b"1234", "alice", &[1; 16], &low).is_err());
}

#[test]
fn counter_stops_at_the_limit_and_a_success_restarts_it() {
    let v = [1u8; 16];
    let mut c = Counter::default();
    for g in 1..=3u8 {
        let id = Counter::guess_of(&[g; 16], &[0; 32]);
        c.answer(&v, &id, 3).unwrap();
        // A retry of the same guess is not counted again; the same id
        // on another element is another guess.
        c.answer(&v, &id, 3).unwrap();
        assert_ne!(id, Counter::guess_of(&[g; 16], &[1; 32]));
    }
    assert_eq!(c.used, 3);
    assert!(c.answer(&v, &[4; 16], 3).is_err());
    assert_eq!(Counter::from_bytes(&c.to_bytes()).unwrap(), c);
    c.unlocked();
    c.answer(&v, &[5; 16], 3).unwrap();
    // A new registration counts from zero.
    let mut d = c;
    d.answer(&[2; 16], &[1; 16], 1).unwrap();
    assert!(d.answer(&[2; 16], &[2; 16], 1).is_err());
    assert!(Counter::from_bytes(&[0; 5]).is_err());
}

/// An adversary that controls the coordinator and the log (it never
/// counts a guess) and picks any `t` guardians for each guess: the
/// guesses it gets evaluated stay within `⌊n·L/t⌋`, and the bound is
/// reached.
#[test]
fn a_lying_leader_rotating_over_guardian_subsets_stays_within_n_l_over_t() {
    for (n, t, limit) in [(3u16, 2u16, 10u16), (5, 3, 10), (5, 4, 3), (7, 4, 5)] {
        let v = [3u8; 16];
        let mut counters = vec![Counter::default(); usize::from(n)];
        let mut evaluated = 0u32;
        let mut guess = 0u32;
        loop {
            guess += 1;
            let id = {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&guess.to_be_bytes());
                b
            };
            // Greedy: the t guardians with the most answers left.
            let mut order: Vec<usize> = (0..usize::from(n)).collect();
            order.sort_by_key(|i| counters[*i].used);
            let chosen: Vec<usize> = order.into_iter().take(usize::from(t)).collect();
            let answered = chosen
                .iter()
                .filter(|i| counters[**i].answer(&v, &id, limit).is_ok())
                .count();
            if answered < usize::from(t) {
                break;
            }
            evaluated += 1;
        }
        assert_eq!(
            evaluated,
            max_guesses(n, t, limit, 0),
            "n={n} t={t} L={limit}"
        );
        assert!(evaluated <= u32::from(n) * u32::from(limit) / u32::from(t));
    }
    assert_eq!(max_guesses(5, 3, 10, 2), 30);
}
