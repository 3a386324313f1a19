//! Valid inputs for every harness, taken from the same honest runs the
//! handler harnesses replay: the starting corpus for libFuzzer and the
//! material the stable smoke runner mutates.

use super::*;

fn input(suite: u8, sel: u8, msg: impl AsRef<[u8]>) -> Vec<u8> {
    let mut v = vec![suite, sel];
    v.extend_from_slice(msg.as_ref());
    v
}

/// Selector byte naming sender `from` (high nibble) and `low`.
fn from(from: u16, low: u8) -> u8 {
    (((from - 1) as u8) << 4) | low
}

fn keys<C: Suite + Fixture>(s: u8, out: &mut Vec<Vec<u8>>) {
    let holders = C::holders();
    let share = &holders.shares[&pid(1)];
    let mut rng = rng();
    let commitment = keyquorum_core::vss::Polynomial::random(share.secret(), 3, &mut rng).commit();
    let ([nonce, _], _) = sign_scene::<C>();
    let signature = local::sign(holders, SESSION, &ids(1..=2), MESSAGE, &mut rng)
        .expect("fixture signs")
        .to_bytes();
    let pk = holders.group.public_key_bytes();
    let mut verify = vec![pk.len() as u8];
    verify.extend_from_slice(&pk);
    verify.push(signature.len() as u8);
    verify.extend_from_slice(&signature);
    verify.extend_from_slice(MESSAGE);
    out.push(input(s, 0, holders.group.to_bytes()));
    out.push(input(s, 1, commitment.to_bytes()));
    out.push(input(s, 2, share.to_secret_bytes()));
    out.push(input(s, 3, nonce.to_secret_bytes()));
    out.push(input(s, 4, signature));
    out.push(input(s, 5, verify));
}

fn two_round<C: Suite + Fixture, P: TwoRound<C>>(s: u8, out: &mut Vec<Vec<u8>>) {
    let (_, round1, round2) = two_round_scene::<C, P>();
    for (f, m) in &round1 {
        out.push(input(s, from(f.get(), 0), m.to_bytes()));
    }
    for (f, m) in &round2 {
        out.push(input(s, from(f.get(), 1), m.to_bytes()));
    }
}

fn signing<C: Suite + Fixture>(s: u8, out: &mut Vec<Vec<u8>>) {
    let holders = C::holders();
    let ([n1, n2], [c1, c2]) = sign_scene::<C>();
    let coordinator = sign::Coordinator::new(&holders.group, SESSION, MESSAGE, vec![c1, c2])
        .expect("coordinator");
    let package = coordinator.package().clone();
    let s1 = n1.sign(&holders.shares[&pid(1)], &package).expect("sign");
    let s2 = n2.sign(&holders.shares[&pid(2)], &package).expect("sign");
    // The same selectors serve decode_sign (mod 3) and handle_sign.
    out.push(input(s, from(2, 0), c2.to_bytes()));
    out.push(input(s, from(2, 1), package.to_bytes()));
    out.push(input(s, from(2, 2), s2.to_bytes()));
    out.push(input(s, from(1, 2), s1.to_bytes()));
}

fn resharing<C: Suite + Fixture>(s: u8, out: &mut Vec<Vec<u8>>) {
    for (d, m) in reshare_scene::<C>() {
        out.push(input(s, from(d.get(), 0), m.to_bytes()));
    }
}

fn repairing<C: Suite + Fixture>(s: u8, handler: bool, out: &mut Vec<Vec<u8>>) {
    let RepairScene {
        mut h1,
        mut h2,
        img1,
        img2,
        d1_to_2,
        d2_to_1,
        ..
    } = repair_scene::<C>();
    let sel = |f, low| if handler { from(f, low) } else { low };
    out.push(input(s, sel(1, 0), img1.to_bytes()));
    out.push(input(s, sel(2, 0), img2.to_bytes()));
    h1.receive_images(pid(2), img2.clone()).expect("honest");
    h1.receive_delta(pid(2), d2_to_1.clone()).expect("honest");
    h2.receive_images(pid(1), img1).expect("honest");
    h2.receive_delta(pid(1), d1_to_2).expect("honest");
    let (_, sigma1) = h1.finish().expect("honest");
    let (_, sigma2) = h2.finish().expect("honest");
    if handler {
        out.push(input(s, from(1, 1), sigma1.to_bytes()));
        out.push(input(s, from(2, 1), sigma2.to_bytes()));
        out.push(input(s, from(2, 2), img2.to_bytes()));
        out.push(input(s, from(2, 3), d2_to_1.to_bytes()));
    } else {
        out.push(input(s, 1, d2_to_1.to_bytes()));
        out.push(input(s, 2, sigma1.to_bytes()));
    }
}

macro_rules! each_suite {
    ($out:ident, $f:ident $(::<$p:ty>)? $(, $arg:expr)*) => {{
        $f::<Ed25519 $(, $p)?>(0 $(, $arg)*, &mut $out);
        $f::<Secp256k1Tr $(, $p)?>(1 $(, $arg)*, &mut $out);
        $f::<Ristretto255 $(, $p)?>(2 $(, $arg)*, &mut $out);
        $f::<Secp256k1 $(, $p)?>(3 $(, $arg)*, &mut $out);
    }};
}

/// Valid inputs for the harness named `target` (empty for an unknown name).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    match target {
        "decode_keys" => each_suite!(out, keys),
        "decode_dkg" | "handle_dkg" => each_suite!(out, two_round::<Dkg>),
        "decode_refresh" | "handle_refresh" => each_suite!(out, two_round::<Refresh>),
        "decode_sign" | "handle_sign" => each_suite!(out, signing),
        "decode_reshare" | "handle_reshare" => each_suite!(out, resharing),
        "decode_repair" => each_suite!(out, repairing, false),
        "handle_repair" => each_suite!(out, repairing, true),
        "verify_lms" => {
            let key = crate::lms_vector("tc1.public_key");
            let sig = crate::lms_vector("tc1.signature");
            out.push([&[0u8][..], &key].concat());
            out.push([&[1u8][..], &sig].concat());
            // Test case 1's signature holds one LMS signature after Nspk.
            out.push([&[2u8][..], sig.get(4..1296).unwrap_or_default()].concat());
        }
        "decode_oprf" => {
            use keyquorum_core::oprf::{self, Package};
            let h = crate::oprf_holders();
            let m = crate::oprf_element();
            // The member's commitment as `decode_oprf` draws it, with
            // holder 2's: a package the member answers.
            let mut rng = ChaCha20Rng::seed_from_u64(5);
            let mut commits = Vec::new();
            for (i, id) in [crate::pid(1), crate::pid(2)].iter().enumerate() {
                if let Some(share) = h.shares.get(id) {
                    let (nonces, c) = oprf::commit(share, &m, &mut rng);
                    if i == 0 {
                        rng = ChaCha20Rng::seed_from_u64(6);
                    }
                    drop(nonces);
                    commits.push(c);
                }
            }
            if let Ok(p) = Package::new(m, commits.clone()) {
                out.push([&[4u8][..], &p.to_bytes()].concat());
                out.push([&[0u8][..], &p.to_bytes()].concat());
            }
            if let Some(c) = commits.first() {
                out.push([&[1u8][..], &c.to_bytes()[..]].concat());
            }
            out.push([&[2u8][..], &[0u8, 1][..], &[3u8; 32][..]].concat());
            out.push([&[3u8][..], &m.to_bytes()[..]].concat());
        }
        _ => {}
    }
    out
}
