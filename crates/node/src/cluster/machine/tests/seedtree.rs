//! Signing trees on apply: a tree is exactly what an admin asked for, with
//! the identifier its commitments and contributions make, the builders
//! that identifier picks, the public key its subtree roots make and every
//! member's endorsement; leaves are handed out once, until none are left.

use std::collections::BTreeMap;

use keyquorum_core::lms::federation::{self, builders, commitment, identifier, Layout};
use keyquorum_core::lms::ots::LmotsType;
use keyquorum_core::lms::tree::{LmsType, Subtree};
use keyquorum_wire::control::Endorsement;
use keyquorum_wire::seedtree::{
    endorse_statement, CreateSeedtreeRequest, SeedtreeCommand, SeedtreeRecord,
};

use super::*;

fn body() -> Vec<u8> {
    serde_json::to_vec(&CreateSeedtreeRequest {
        name: "fw".into(),
        height: 5,
        winternitz: 4,
        subtrees: Some(2),
        threshold: Some(2),
        members: None,
    })
    .unwrap()
}

/// The record two honest members would make, built here.
fn record() -> SeedtreeRecord {
    let layout = Layout::new(LmsType::H5, LmotsType::W4, 2).unwrap();
    let contributions: BTreeMap<u64, [u8; 32]> = [(1, [11u8; 32]), (2, [22u8; 32])].into();
    let commitments: BTreeMap<u64, [u8; 32]> = contributions
        .iter()
        .map(|(m, c)| (*m, commitment("fw", *m, c)))
        .collect();
    let i = identifier("fw", &commitments, &contributions).unwrap();
    let roots: Vec<Hex32> = (0..2)
        .map(|s| {
            let built = federation::build(&layout, &i, s, &mut rand_core::OsRng).unwrap();
            let first = layout.leaves_of(s).start;
            Hex32(
                Subtree::from_leaves(&i, LmsType::H5, first, &built.keys)
                    .unwrap()
                    .root(),
            )
        })
        .collect();
    let public = crate::seedtree::state::public_key(&layout, &i, &roots).unwrap();
    SeedtreeRecord {
        name: "fw".into(),
        run: Hex32([5; 32]),
        height: 5,
        winternitz: 4,
        subtrees: 2,
        threshold: 2,
        members: vec![id(1), id(2)],
        commitments: commitments.values().map(|c| Hex32(*c)).collect(),
        contributions: contributions.values().map(|c| Hex32(*c)).collect(),
        builders: builders("fw", &i, &layout, &[1, 2])
            .into_iter()
            .map(id)
            .collect(),
        roots,
        public_key: Hex(public.to_bytes()),
        created_by: "admin".into(),
    }
}

fn endorsed(record: &SeedtreeRecord, by: &[u64]) -> Vec<Endorsement> {
    by.iter()
        .map(|n| Endorsement {
            node: id(*n),
            signature: Hex(node_key(*n)
                .sign(&endorse_statement(record))
                .to_bytes()
                .to_vec()),
        })
        .collect()
}

fn create(
    k: &ClientKey,
    nonce: &str,
    record: SeedtreeRecord,
    endorsements: Vec<Endorsement>,
) -> Authorized {
    client(
        k,
        "POST",
        "https://n1:7000/v1/seedtrees",
        &body(),
        T0,
        nonce,
        SeedtreeCommand::StCreate {
            record: Box::new(record),
            endorsements,
        },
    )
}

fn refused_for(out: &[CommandResponse], why: &str) {
    assert!(
        matches!(out.first(), Some(CommandResponse::Rejected { reason }) if reason.contains(why)),
        "expected a refusal for {why:?}: {out:?}"
    );
}

#[test]
fn a_tree_needs_its_request_its_derivations_and_every_members_endorsement() {
    let (mut r, admin, user) = registry();
    let good = record();
    // Before the cluster takes up rules 7: refused.
    let early = create(&admin, "st-0", good.clone(), endorsed(&good, &[1, 2]));
    assert!(refused(&apply(&mut r, T0, vec![early])[0]));
    announce_rules(&mut r, 200);
    // One member's endorsement of two.
    let half = create(&admin, "st-1", good.clone(), endorsed(&good, &[1]));
    refused_for(&apply(&mut r, T0, vec![half]), "every member's endorsement");
    // A root changed: the public key no longer follows (and re-signing
    // the changed record does not help).
    let mut root = good.clone();
    root.roots[1].0[0] ^= 1;
    let signed = endorsed(&root, &[1, 2]);
    refused_for(
        &apply(&mut r, T0, vec![create(&admin, "st-2", root, signed)]),
        "public key",
    );
    // A contribution that does not open its commitment.
    let mut reveal = good.clone();
    reveal.contributions[0].0[0] ^= 1;
    let signed = endorsed(&reveal, &[1, 2]);
    refused_for(
        &apply(&mut r, T0, vec![create(&admin, "st-3", reveal, signed)]),
        "did not commit to",
    );
    // Builders the identifier does not pick.
    let mut swapped = good.clone();
    swapped.builders.reverse();
    if swapped.builders != good.builders {
        let signed = endorsed(&swapped, &[1, 2]);
        refused_for(
            &apply(&mut r, T0, vec![create(&admin, "st-4", swapped, signed)]),
            "builders",
        );
    }
    // Another shape than the request asks.
    let mut taller = good.clone();
    taller.threshold = 1;
    let signed = endorsed(&taller, &[1, 2]);
    refused_for(
        &apply(&mut r, T0, vec![create(&admin, "st-5", taller, signed)]),
        "the tree asked for",
    );
    // Not an admin.
    let mut by_user = good.clone();
    by_user.created_by = "user".into();
    let signed = endorsed(&by_user, &[1, 2]);
    refused_for(
        &apply(&mut r, T0, vec![create(&user, "st-6", by_user, signed)]),
        "admin",
    );
    assert!(r.seedtree.trees.is_empty());
    // The tree as asked, endorsed by both: created, once.
    let both = endorsed(&good, &[1, 2]);
    assert_eq!(
        apply(
            &mut r,
            T0,
            vec![create(&admin, "st-7", good.clone(), both.clone())]
        ),
        vec![ok()]
    );
    refused_for(
        &apply(&mut r, T0, vec![create(&admin, "st-8", good.clone(), both)]),
        "exists",
    );
    assert_eq!(r.seedtree.trees["fw"].record, good);
}

#[test]
fn leaves_are_handed_out_once_until_none_are_left() {
    let (mut r, admin, _) = registry();
    announce_rules(&mut r, 200);
    let good = record();
    let both = endorsed(&good, &[1, 2]);
    assert_eq!(
        apply(&mut r, T0, vec![create(&admin, "st-1", good, both)]),
        vec![ok()]
    );
    let reserve = |node: u64, nonce: u8, count: u32| {
        statement(
            node,
            T0,
            nonce,
            SeedtreeCommand::StReserve {
                tree: "fw".into(),
                count,
            },
        )
    };
    // Out of bounds: refused.
    for (count, nonce) in [(0, 1), (1025, 2)] {
        assert!(refused(
            &apply(&mut r, T0, vec![reserve(1, nonce, count)])[0]
        ));
    }
    assert_eq!(
        apply(&mut r, T0, vec![reserve(1, 3, 20), reserve(2, 4, 20)]),
        vec![
            CommandResponse::Appended { index: 0 },
            CommandResponse::Appended { index: 20 }
        ]
    );
    let e = &r.seedtree.trees["fw"];
    assert_eq!(e.next, 32);
    assert_eq!(e.reserved_by[&id(1)], 20);
    assert_eq!(e.reserved_by[&id(2)], 12);
    let done = apply(&mut r, T0, vec![reserve(1, 5, 1)]);
    assert!(
        matches!(&done[0], CommandResponse::Rejected { reason } if reason.contains("exhausted")),
        "{done:?}"
    );
    // No tree of that name; no client may reserve.
    let other = statement(
        1,
        T0,
        6,
        SeedtreeCommand::StReserve {
            tree: "none".into(),
            count: 1,
        },
    );
    assert!(refused(&apply(&mut r, T0, vec![other])[0]));
    // The snapshot form keeps the trees.
    let back: Registry = serde_json::from_str(&json(&r)).unwrap();
    assert_eq!(back.seedtree.trees, r.seedtree.trees);
}
