//! The threshold VOPRF checked by an RFC 9497 implementation we did not
//! write (the `voprf` crate, Meta): its client blinds, `t` of our key
//! holders answer jointly, and its `finalize` verifies our one proof under
//! the group public key and yields the same output as its own server
//! holding the whole key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;

use curve25519_dalek::scalar::Scalar;
use keyquorum_core::oprf::{self, Element};
use keyquorum_core::{local, vss, ParticipantId, Ristretto255, SessionId};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use voprf::{EvaluationElement, Group, Proof, VoprfClient, VoprfServer};

type Cs = voprf::Ristretto255;

#[test]
fn a_standard_client_accepts_the_joint_proof_for_every_signer_set() {
    let mut rng = ChaCha20Rng::seed_from_u64(41);
    let members: BTreeSet<ParticipantId> = ParticipantId::range(5).collect();
    let h = local::dkg::<Ristretto255, _>(SessionId([2; 32]), 3, &members, &mut rng).unwrap();
    let pk_bytes = h.group.verifying_element().compress().to_bytes();
    let pk = <Cs as voprf::CipherSuite>::Group::deserialize_elem(&pk_bytes).unwrap();
    // The whole key, for the reference server only.
    let lambda = vss::lagrange_at_zero::<Ristretto255>(&members).unwrap();
    let k: Scalar = h
        .shares
        .iter()
        .map(|(id, s)| lambda[id] * s.secret().expose())
        .sum();
    let server = VoprfServer::<Cs>::new_with_key(k.as_bytes()).unwrap();
    assert_eq!(server.get_public_key(), pk);

    let ids: Vec<ParticipantId> = members.iter().copied().collect();
    for (n, set) in [
        &ids[..3],
        &ids[2..],
        &ids[1..4],
        &[ids[0], ids[2], ids[4]][..],
    ]
    .iter()
    .enumerate()
    {
        let input = format!("input {n}");
        let blinded = VoprfClient::<Cs>::blind(input.as_bytes(), &mut rng).unwrap();
        let m = Element::from_bytes(&blinded.message.serialize()).unwrap();
        let mut nonces = Vec::new();
        let mut commits = Vec::new();
        for id in *set {
            let (nc, c) = oprf::commit(&h.shares[id], &m, &mut rng);
            nonces.push((*id, nc));
            commits.push(c);
        }
        let package = oprf::Package::new(m, commits).unwrap();
        let responses: Vec<_> = nonces
            .into_iter()
            .map(|(id, nc)| oprf::respond(&h.shares[&id], &h.group, nc, &package).unwrap())
            .collect();
        let (z, proof) = oprf::aggregate(&h.group, &package, &responses).unwrap();
        let out = blinded
            .state
            .finalize(
                input.as_bytes(),
                &EvaluationElement::<Cs>::deserialize(&z.to_bytes()).unwrap(),
                &Proof::<Cs>::deserialize(&proof.to_bytes()).unwrap(),
                pk,
            )
            .expect("the voprf crate verifies the joint proof");
        assert_eq!(out[..], server.evaluate(input.as_bytes()).unwrap()[..]);
        // Another proof does not pass.
        let mut one = [0u8; 32];
        one[0] = 1;
        let other = oprf::Proof::from_bytes(&[&proof.to_bytes()[..32], &one[..]].concat()).unwrap();
        assert!(blinded
            .state
            .finalize(
                input.as_bytes(),
                &EvaluationElement::<Cs>::deserialize(&z.to_bytes()).unwrap(),
                &Proof::<Cs>::deserialize(&other.to_bytes()).unwrap(),
                pk,
            )
            .is_err());
    }
}
