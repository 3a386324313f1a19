//! Reset tokens' pieces: the message layout, guardians, channels, signer
//! sets and fragments (`super`).

use super::*;

fn chans(c: &[&str]) -> Vec<String> {
    c.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_message_has_the_layout_the_issue_fixes() {
    let m = ResetMessage {
        account: "alice".into(),
        request_id: [7; 16],
        expiry: 0x0102_0304_0506_0708,
        credential_hash: [9; 32],
    };
    let b = m.to_bytes().unwrap();
    let mut want = b"keyquorum-reset-v1".to_vec();
    want.extend_from_slice(&[0, 5]);
    want.extend_from_slice(b"alice");
    want.extend_from_slice(&[7; 16]);
    want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    want.extend_from_slice(&[9; 32]);
    assert_eq!(b, want);
    assert_eq!(ResetMessage::from_bytes(&b).unwrap(), m);
    assert!(ResetMessage::from_bytes(&b[..b.len() - 1]).is_err());
    let mut longer = b.clone();
    longer.push(0);
    assert!(ResetMessage::from_bytes(&longer).is_err());
}

#[test]
fn a_fragment_opens_only_for_its_device_account_request_and_signer() {
    let device = DeviceSecret::generate();
    let other = DeviceSecret::generate();
    let f = Fragment::seal(&device.public_key(), "alice", [1; 16], 3, b"share").unwrap();
    let text = f.to_text();
    assert!(text.starts_with("KQF1"));
    assert!(text[4..].bytes().all(|c| c.is_ascii_hexdigit()));
    // Surrounding whitespace and upper-case hex after the prefix parse.
    let upper = format!("  KQF1{}\n", text[4..].to_uppercase());
    assert_eq!(Fragment::from_text(&upper).unwrap(), f);
    let parsed = Fragment::from_text(&text).unwrap();
    assert_eq!(&*parsed.open(&device, "alice").unwrap(), b"share");
    assert!(parsed.open(&other, "alice").is_err());
    assert!(parsed.open(&device, "bob").is_err());
    let mut moved = parsed.clone();
    moved.request_id = [2; 16];
    assert!(moved.open(&device, "alice").is_err());
    let mut moved = parsed.clone();
    moved.signer = 4;
    assert!(moved.open(&device, "alice").is_err());
    for bad in ["", "KQF2", "KQF1zz", "KQF1abc", &text[..60]] {
        assert!(Fragment::from_text(bad).is_err(), "{bad}");
    }
    let secret = device.to_secret_bytes();
    let again = DeviceSecret::from_secret_bytes(&secret).unwrap();
    assert_eq!(again.public_key(), device.public_key());
    assert_eq!(format!("{device:?}"), "DeviceSecret(<redacted>)");
}

#[test]
fn guardians_are_stable_and_move_little_when_a_node_joins() {
    let nodes: Vec<u64> = (1..=7).collect();
    let g = guardians("alice", &nodes, 3).unwrap();
    assert_eq!(g.len(), 3);
    assert!(g.windows(2).all(|w| w[0] < w[1]));
    let mut shuffled = nodes.clone();
    shuffled.reverse();
    assert_eq!(guardians("alice", &shuffled, 3).unwrap(), g);
    // Adding an eighth node: every old guardian the new one does not
    // displace stays.
    let more: Vec<u64> = (1..=8).collect();
    let g2 = guardians("alice", &more, 3).unwrap();
    let kept = g.iter().filter(|x| g2.contains(x)).count();
    assert!(kept >= 2, "{g:?} -> {g2:?}");
    // Different accounts spread over the nodes.
    let mut hit = std::collections::BTreeSet::new();
    for i in 0..40 {
        hit.extend(guardians(&format!("acct{i}"), &nodes, 3).unwrap());
    }
    assert_eq!(hit.len(), 7);
    assert!(guardians("alice", &nodes, 8).is_err());
    assert!(guardians("alice", &[1, 1, 2], 2).is_err());
    assert!(guardians("bad name", &nodes, 2).is_err());
    // Dot segments are no names (a URL library would resolve them).
    for dots in ["", ".", "..", "-", "._-"] {
        assert!(check_account(dots).is_err(), "{dots}");
    }
}

#[test]
fn channels_cycle_and_signers_cover_them() {
    let g = [2, 5, 9];
    let c = chans(&["email:a@x", "webhook:https://h/", "app"]);
    assert_eq!(channel_of(&g, 3, 2), Some(0));
    assert_eq!(channel_of(&g, 3, 9), Some(2));
    assert_eq!(channel_of(&g, 2, 9), Some(0));
    assert_eq!(channel_of(&g, 2, 7), None);
    // Two channels over three guardians: 2 and 9 share email.
    let two = chans(&["email:a@x", "app"]);
    assert!(check_signers(&g, &two, 2, &[2, 9]).is_err());
    assert!(check_signers(&g, &two, 2, &[2, 5]).is_ok());
    assert!(check_signers(&g, &two, 2, &[5, 9]).is_ok());
    assert!(check_signers(&g, &c, 2, &[2, 2]).is_err());
    assert!(check_signers(&g, &c, 2, &[2, 3]).is_err());
    assert!(check_signers(&g, &c, 3, &[2, 5]).is_err());
    // The chooser prefers the caller's order but covers the channels.
    let s = choose_signers(&g, &two, 2, &[2, 9, 5], &[]).unwrap();
    assert_eq!(s, vec![2, 5]);
    assert!(check_signers(&g, &two, 2, &s).is_ok());
    // 5 (the only app guardian) excluded: no valid set.
    assert!(choose_signers(&g, &two, 2, &[2, 9, 5], &[5]).is_none());
    // One channel: any two.
    let one = chans(&["app"]);
    assert_eq!(
        choose_signers(&g, &one, 2, &[9, 5, 2], &[9]).unwrap(),
        vec![2, 5]
    );
}

#[test]
fn t_fragments_assemble_into_an_ed25519_signature_and_fewer_do_not() {
    use crate::codec::Encode;
    use crate::local;
    use rand_chacha::rand_core::SeedableRng;
    use std::collections::BTreeSet;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let members: BTreeSet<ParticipantId> = ParticipantId::range(3).collect();
    let h = local::dkg::<Ed25519, _>(SessionId([2; 32]), 2, &members, &mut rng).unwrap();
    let device = DeviceSecret::generate();
    let msg = ResetMessage {
        account: "alice".into(),
        request_id: [4; 16],
        expiry: 1_900_000_000,
        credential_hash: [8; 32],
    };
    let session = SessionId([3; 32]);
    let signers: Vec<ParticipantId> = members.iter().copied().take(2).collect();
    let mut nonces = Vec::new();
    let mut commitments = Vec::new();
    for p in &signers {
        let (n, c) = crate::sign::commit(&h.shares[p], &mut rng);
        nonces.push(n);
        commitments.push(c);
    }
    let co = Coordinator::new(
        &h.group,
        session,
        &msg.to_bytes().unwrap(),
        commitments.clone(),
    )
    .unwrap();
    let mut fragments = Vec::new();
    for (p, n) in signers.iter().zip(nonces) {
        let share = n.sign(&h.shares[p], co.package()).unwrap();
        fragments.push(
            Fragment::seal(
                &device.public_key(),
                "alice",
                [4; 16],
                p.get(),
                &share.to_bytes(),
            )
            .unwrap(),
        );
    }
    let sig = assemble(
        &h.group,
        session,
        &msg,
        commitments.clone(),
        &fragments,
        &device,
    )
    .unwrap();
    // An ordinary Ed25519 verifier accepts it.
    let pk =
        ed25519_dalek::VerifyingKey::from_bytes(&h.group.public_key_bytes().try_into().unwrap())
            .unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&sig.to_bytes()).unwrap();
    pk.verify_strict(&msg.to_bytes().unwrap(), &sig).unwrap();
    // Fewer than t, another device, another request's fragment, twice one signer.
    let one = assemble(
        &h.group,
        session,
        &msg,
        commitments.clone(),
        &fragments[..1],
        &device,
    );
    assert!(
        matches!(one, Err(Error::NotEnough { have: 1, need: 2 })),
        "{one:?}"
    );
    let other = DeviceSecret::generate();
    assert!(assemble(
        &h.group,
        session,
        &msg,
        commitments.clone(),
        &fragments,
        &other
    )
    .is_err());
    let mut moved = msg.clone();
    moved.request_id = [5; 16];
    assert!(assemble(
        &h.group,
        session,
        &moved,
        commitments.clone(),
        &fragments,
        &device
    )
    .is_err());
    let twice = [fragments[0].clone(), fragments[0].clone()];
    assert!(assemble(
        &h.group,
        session,
        &msg,
        commitments.clone(),
        &twice,
        &device
    )
    .is_err());
    // A signer that seals a wrong share is named.
    let mut bad =
        SignatureShare::<Ed25519>::from_bytes(&fragments[1].open(&device, "alice").unwrap())
            .unwrap();
    bad.tamper();
    let liar = signers[1];
    let forged = Fragment::seal(
        &device.public_key(),
        "alice",
        [4; 16],
        liar.get(),
        &bad.to_bytes(),
    )
    .unwrap();
    let r = assemble(
        &h.group,
        session,
        &msg,
        commitments,
        &[fragments[0].clone(), forged],
        &device,
    );
    match r {
        Err(Error::Misbehaved { culprits, .. }) => assert_eq!(culprits, vec![liar]),
        other => panic!("{other:?}"),
    }
}
