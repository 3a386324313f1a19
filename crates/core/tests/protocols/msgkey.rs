//! Per-message key derivation end to end in one process: sender,
//! coordinators and receiver as pure functions, every rejection the
//! protocol names, forward secrecy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests: a failed unwrap is a failed test"
)]

use ed25519_dalek::{Signer, SigningKey};
use hpke::kem::X25519HkdfSha256;
use hpke::{Kem, Serializable};
use keyquorum_core::msgkey::protocol::{
    coordinate, new_prekey, receive, seal_shares_for_node, send, AtCoordinator, Confirmation,
    Deployment, Header, Node, Outgoing, PrekeySecret, Recipient, Sealed, SignedConfirmation,
};
use keyquorum_core::msgkey::route::Member;
use keyquorum_core::msgkey::split::{Grp, Layout};
use keyquorum_core::msgkey::{Mode, MsgError};
use keyquorum_core::secret::SecretScalar;
use proptest::prelude::*;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

type HpkeSk = <X25519HkdfSha256 as Kem>::PrivateKey;

struct Cluster {
    nodes: Vec<Node>,
    signing: Vec<SigningKey>,
    hpke: Vec<HpkeSk>,
}

fn cluster(n: u64, rng: &mut ChaCha20Rng) -> Cluster {
    let mut c = Cluster {
        nodes: Vec::new(),
        signing: Vec::new(),
        hpke: Vec::new(),
    };
    for id in 1..=n {
        let sk = new_identity(rng);
        let mut ikm = [0u8; 32];
        rng.fill_bytes(&mut ikm);
        let (hsk, hpk) = X25519HkdfSha256::derive_keypair(&ikm);
        let mut hpke = [0u8; 32];
        hpke.copy_from_slice(&hpk.to_bytes());
        c.nodes.push(Node {
            member: Member {
                id,
                identity: sk.verifying_key().to_bytes(),
            },
            hpke,
        });
        c.signing.push(sk);
        c.hpke.push(hsk);
    }
    c
}

fn new_identity(rng: &mut ChaCha20Rng) -> SigningKey {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    SigningKey::from_bytes(&seed)
}

const NOW: u64 = 1_800_000_000_000;

fn deployment() -> Deployment {
    Deployment {
        salt: b"keyquorum test deployment".to_vec(),
        window_ms: 60_000,
    }
}

struct Endpoints {
    alice: SigningKey,
    bob: SigningKey,
    bob_prekey: PrekeySecret,
    to_bob: Recipient,
}

fn endpoints(rng: &mut ChaCha20Rng) -> Endpoints {
    let alice = new_identity(rng);
    let bob = new_identity(rng);
    let (bob_prekey, signed) = new_prekey(rng, &bob);
    let to_bob = Recipient {
        identity: bob.verifying_key().to_bytes(),
        prekey: signed,
    };
    Endpoints {
        alice,
        bob,
        bob_prekey,
        to_bob,
    }
}

/// Node `node` coordinates Alice's message `out`, given `bundle`, at `now`.
fn coordinate_at(
    c: &Cluster,
    e: &Endpoints,
    node: u64,
    out: &Outgoing,
    bundle: &Sealed,
    now: u64,
    rng: &mut ChaCha20Rng,
) -> Result<Confirmation, MsgError> {
    let i = usize::try_from(node - 1).unwrap();
    coordinate(
        rng,
        &deployment(),
        node,
        &c.hpke[i],
        &c.nodes,
        &e.alice.verifying_key().to_bytes(),
        now,
        AtCoordinator {
            header: &out.header,
            signature: &out.signature,
            payload: &out.payload,
            bundle,
        },
    )
    .map(|(_, conf)| conf)
}

/// Run every coordinator the message names; sign each confirmation.
fn coordinate_all(
    c: &Cluster,
    e: &Endpoints,
    out: &Outgoing,
    rng: &mut ChaCha20Rng,
) -> Result<Vec<SignedConfirmation>, MsgError> {
    let mut confs = Vec::new();
    for (node_id, bundle) in &out.for_coordinators {
        let i = usize::try_from(*node_id - 1).unwrap();
        let conf = coordinate_at(c, e, *node_id, out, bundle, NOW + 5, rng)?;
        let signature = c.signing[i].sign(&conf.signing_bytes()).to_bytes();
        confs.push(SignedConfirmation {
            confirmation: conf,
            signature,
        });
    }
    Ok(confs)
}

fn bob_receives(
    c: &Cluster,
    e: &Endpoints,
    out: &Outgoing,
    confs: &[SignedConfirmation],
) -> Result<Vec<u8>, MsgError> {
    receive(
        &deployment(),
        &e.bob.verifying_key().to_bytes(),
        &e.bob_prekey,
        &c.nodes,
        &e.alice.verifying_key().to_bytes(),
        out,
        confs,
    )
}

fn send_to_bob(
    c: &Cluster,
    e: &Endpoints,
    m: u16,
    mode: Mode,
    text: &[u8],
    rng: &mut ChaCha20Rng,
) -> (Outgoing, [u8; 32]) {
    send(
        rng,
        &deployment(),
        &e.alice,
        &e.to_bob,
        &c.nodes,
        m,
        mode,
        NOW,
        text,
    )
    .unwrap()
}

#[test]
fn messages_open_at_the_receiver_in_both_modes_with_one_or_two_coordinators() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let c = cluster(5, &mut rng);
    for mode in [Mode::VerifyInTheExponent, Mode::CoordinatorReconstructs] {
        for m in [1u16, 2, 3] {
            for i in 0..20u32 {
                let e = endpoints(&mut rng);
                let text = format!("message {i} in {mode:?} with m = {m}");
                let (out, expected) = send_to_bob(&c, &e, m, mode, text.as_bytes(), &mut rng);
                assert_eq!(out.for_coordinators.len(), usize::from(m));
                let confs = coordinate_all(&c, &e, &out, &mut rng).unwrap();
                for sc in &confs {
                    assert_eq!(sc.confirmation.value, expected, "sender's check");
                }
                assert_eq!(bob_receives(&c, &e, &out, &confs).unwrap(), text.as_bytes());
                // With m ≥ 2 any one coordinator is enough (the others died).
                if m >= 2 {
                    let last = confs.last().cloned().unwrap();
                    assert_eq!(
                        bob_receives(&c, &e, &out, &[last]).unwrap(),
                        text.as_bytes()
                    );
                }
                // No coordinator: the receiver's own shares are below t.
                assert!(bob_receives(&c, &e, &out, &[]).is_err());
            }
        }
    }
}

#[test]
fn each_tampering_is_refused_with_its_error() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let c = cluster(5, &mut rng);
    let e = endpoints(&mut rng);
    let (out, _) = send_to_bob(&c, &e, 2, Mode::VerifyInTheExponent, b"pay 1 BTC", &mut rng);
    let confs = coordinate_all(&c, &e, &out, &mut rng).unwrap();

    // Payload flipped: the sender's signature covers its hash.
    let mut bad = out.clone();
    bad.payload[0] ^= 1;
    assert_eq!(bob_receives(&c, &e, &bad, &confs), Err(MsgError::Tampered));
    assert_eq!(
        coordinate_all(&c, &e, &bad, &mut rng).err(),
        Some(MsgError::Tampered)
    );
    // Header flipped (the time field).
    let mut bad = out.clone();
    bad.header[5] ^= 1;
    assert_eq!(bob_receives(&c, &e, &bad, &confs), Err(MsgError::Tampered));
    // Outside the window at the coordinator.
    let (late, _) = send(
        &mut rng,
        &deployment(),
        &e.alice,
        &e.to_bob,
        &c.nodes,
        1,
        Mode::VerifyInTheExponent,
        NOW - 120_000,
        b"old",
    )
    .unwrap();
    assert_eq!(
        coordinate_all(&c, &e, &late, &mut rng).err(),
        Some(MsgError::OutsideWindow)
    );
    // Routed to the wrong node: hand node X the bundle meant for Y.
    let header = Header::from_bytes(&out.header).unwrap();
    let outsider = (1..=5)
        .find(|n| !header.routing.coordinators.contains(n))
        .unwrap();
    let r = coordinate_at(
        &c,
        &e,
        outsider,
        &out,
        &out.for_coordinators[0].1,
        NOW,
        &mut rng,
    );
    assert_eq!(r.err(), Some(MsgError::WrongCoordinator));
    // A different membership view (a node missing) routes elsewhere for
    // some identifiers; the receiver checks the route too.
    let mut shrunk = c.nodes.clone();
    shrunk.retain(|n| n.member.id != header.routing.coordinators[0]);
    let r = receive(
        &deployment(),
        &e.bob.verifying_key().to_bytes(),
        &e.bob_prekey,
        &shrunk,
        &e.alice.verifying_key().to_bytes(),
        &out,
        &confs,
    );
    assert_eq!(r, Err(MsgError::WrongCoordinator));
    // A coordinator that lies about the verification value.
    let mut lying = confs.clone();
    lying[0].confirmation.value[0] ^= 1;
    let i = usize::try_from(lying[0].confirmation.node - 1).unwrap();
    lying[0].signature = c.signing[i]
        .sign(&lying[0].confirmation.signing_bytes())
        .to_bytes();
    assert_eq!(
        bob_receives(&c, &e, &out, &lying),
        Err(MsgError::VerificationMismatch)
    );
    // A confirmation signed by someone else.
    let mut forged = confs.clone();
    forged[0].signature = e.alice.sign(b"nope").to_bytes();
    assert!(bob_receives(&c, &e, &out, &forged).is_err());
    // Another prekey (e.g. a used, deleted one replaced by a new one).
    let (other_prekey, _) = new_prekey(&mut rng, &e.bob);
    let r = receive(
        &deployment(),
        &e.bob.verifying_key().to_bytes(),
        &other_prekey,
        &c.nodes,
        &e.alice.verifying_key().to_bytes(),
        &out,
        &confs,
    );
    assert!(r.is_err());
    // The untouched message still opens.
    assert_eq!(bob_receives(&c, &e, &out, &confs).unwrap(), b"pay 1 BTC");
}

#[test]
fn a_share_off_the_commitments_names_its_index() {
    // A dishonest sender deals coordinator rank 0 a share off its own
    // commitment (anyone can seal to a node's public HPKE key).
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let c = cluster(5, &mut rng);
    let e = endpoints(&mut rng);
    let (out, _) = send_to_bob(&c, &e, 2, Mode::VerifyInTheExponent, b"a", &mut rng);
    let header = Header::from_bytes(&out.header).unwrap();
    let layout = Layout::new(2, Mode::VerifyInTheExponent).unwrap();
    let own = layout.coordinator(0).unwrap();
    let node = header.routing.coordinators[0];
    let i = usize::try_from(node - 1).unwrap();
    let bogus = SecretScalar::<Grp>::random(&mut rng);
    let bundle =
        seal_shares_for_node(&mut rng, &c.nodes[i], &header.routing.id, &[(own, &bogus)]).unwrap();
    let r = coordinate_at(&c, &e, node, &out, &bundle, NOW, &mut rng);
    assert_eq!(
        r.err(),
        Some(MsgError::ShareOffCommitments { holder: own.get() })
    );
    // A bundle with another holder's index is refused too.
    let wrong = layout.coordinator(1).unwrap();
    let bundle = seal_shares_for_node(
        &mut rng,
        &c.nodes[i],
        &header.routing.id,
        &[(wrong, &bogus)],
    )
    .unwrap();
    let r = coordinate_at(&c, &e, node, &out, &bundle, NOW, &mut rng);
    assert!(matches!(r, Err(MsgError::Invalid(_))), "{r:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// For any seed and m: a coordinator's bundle taken from another
    /// message (same node, same rank) does not open — HPKE binds it to its
    /// identifier — and the genuine message still opens at the receiver.
    #[test]
    fn bundles_spliced_from_another_message_do_not_open(seed in any::<u64>(), m in 1u16..=3) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let c = cluster(3, &mut rng);
        let e = endpoints(&mut rng);
        let (a, _) = send_to_bob(&c, &e, m, Mode::VerifyInTheExponent, b"x", &mut rng);
        let (b, _) = send_to_bob(&c, &e, m, Mode::VerifyInTheExponent, b"x", &mut rng);
        let ha = Header::from_bytes(&a.header).unwrap();
        let hb = Header::from_bytes(&b.header).unwrap();
        // Find a node that coordinates both at the same rank.
        let shared = ha.routing.coordinators.iter().enumerate()
            .find(|(r, n)| hb.routing.coordinators.get(*r) == Some(n));
        if let Some((rank, node)) = shared {
            let spliced = coordinate_at(
                &c, &e, *node, &a, &b.for_coordinators[rank].1, NOW, &mut rng,
            );
            // Sealed to another identifier: HPKE refuses to open it.
            prop_assert_eq!(spliced.err(), Some(MsgError::Tampered));
        }
        let confs = coordinate_all(&c, &e, &a, &mut rng).unwrap();
        prop_assert_eq!(bob_receives(&c, &e, &a, &confs).unwrap(), b"x".to_vec());
    }
}

#[test]
fn forward_secrecy_after_the_prekey_is_deleted() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let c = cluster(5, &mut rng);
    let e = endpoints(&mut rng);
    let (out, _) = send_to_bob(&c, &e, 1, Mode::VerifyInTheExponent, b"secret", &mut rng);
    let confs = coordinate_all(&c, &e, &out, &mut rng).unwrap();
    assert_eq!(bob_receives(&c, &e, &out, &confs).unwrap(), b"secret");
    // Delivery done: Bob deletes the prekey. An attacker later steals
    // Bob's long-term identity key and has recorded all traffic (`out`,
    // `confs`). Everything for Bob was sealed to the prekey's public key;
    // no key the attacker can derive from the identity is that prekey.
    let header = Header::from_bytes(&out.header).unwrap();
    let Endpoints {
        bob, bob_prekey, ..
    } = e;
    drop(bob_prekey);
    let candidates = [
        PrekeySecret::from_bytes(bob.to_bytes()),
        PrekeySecret::from_bytes(bob.to_scalar_bytes()),
    ];
    for stolen in &candidates {
        assert_ne!(stolen.public(), header.routing.prekey);
        let r = receive(
            &deployment(),
            &bob.verifying_key().to_bytes(),
            stolen,
            &c.nodes,
            &header.routing.sender,
            &out,
            &confs,
        );
        assert!(r.is_err(), "the identity key does not open the message");
    }
}
