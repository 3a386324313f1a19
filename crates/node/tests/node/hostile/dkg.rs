//! Key generation and refresh: a coordinator or an accuser cannot destroy,
//! fork or steal a key (DKG complaints, the committed group key, aborts).

use super::*;

/// A refresh coordinator that says abort to the members after they stored
/// and endorsed their new shares, and then commits the run anyway (with
/// their endorsements), would destroy the key if an abort rolled the new
/// shares back: the committed generation would have no shares and the old
/// one is erased once it is superseded. An abort never rolls back an
/// endorsed share, so the committed generation signs, under the same
/// public key, through every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_cannot_destroy_a_key_by_aborting_after_the_members_endorsed() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let key = admin
        .create_key(&create("z", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    sign_and_check(&admin, &key, b"before").await;
    let faults = c.keys(n(1)).unwrap();
    faults
        .faults()
        .abort_then_commit
        .store(true, Ordering::Relaxed);
    let next = admin.refresh("z").await.unwrap();
    faults
        .faults()
        .abort_then_commit
        .store(false, Ordering::Relaxed);
    assert_eq!(next.epoch, key.epoch + 1);
    assert_eq!(next.public_key, key.public_key);
    for via in [1u8, 2, 3] {
        let client =
            Client::new(&c.url_of(n(via.into())), &c.admin, c.ca_pem().as_bytes()).unwrap();
        let signers = sign_and_check(&client, &next, &[b'z', via]).await;
        assert_eq!(signers.len(), 2, "via {via}: {signers:?}");
    }
    for id in ns(&[1, 2, 3]) {
        // Each member holds exactly its share of the new generation.
        assert_eq!(
            vault_count(&c, id, Table::Shares, "z") + vault_count(&c, id, Table::Pending, "z"),
            1,
            "node {id}"
        );
    }
    c.shutdown().await;
}

/// A coordinator that commits another group key than the one the members
/// computed (here: an existing key's, whose secret it might know) gets it
/// refused on apply by every replica: the record is not endorsed by
/// threshold-many members (issue #17). The members keep their new shares
/// pending and never use them. (Were such a record committed, each member
/// would still refuse to promote a share under a group key it did not
/// compute: `keys::shares`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_key_the_members_did_not_compute_is_never_used() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let a = admin
        .create_key(&create("a", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    // Node 1 coordinates the next DKG and commits key a's group key for it.
    let commit_group_key_of = |key: Option<&str>| {
        *c.keys(n(1))
            .unwrap()
            .faults()
            .commit_group_key_of
            .lock()
            .unwrap() = key.map(str::to_string);
    };
    commit_group_key_of(Some("a"));
    let err = admin
        .create_key(&create("b", SuiteName::Ed25519, 2, None))
        .await
        .unwrap_err();
    commit_group_key_of(None);
    assert!(
        err.to_string().contains("endorsed by 0 of its members"),
        "{err}"
    );

    for via in [1, 2, 3] {
        let client = Client::new(&c.url_of(n(via)), &c.admin, c.ca_pem().as_bytes()).unwrap();
        let err = client.sign("b", b"under a forged key").await.unwrap_err();
        assert_eq!(status_of(&err), 404, "via {via}: {err}");
    }
    for id in ns(&[1, 2, 3]) {
        assert!(
            c.node(id)
                .unwrap()
                .registry(|r| !r.keys.records.contains_key("b")),
            "node {id}"
        );
        assert_eq!(vault_count(&c, id, Table::Shares, "b"), 0, "node {id}");
        assert_eq!(vault_count(&c, id, Table::Pending, "b"), 1, "node {id}");
        assert_eq!(
            vault_count(&c, id, Table::PendingGroups, "b"),
            1,
            "node {id}"
        );
    }
    // The key whose group key was borrowed is untouched and signs.
    sign_and_check(&admin, &a, b"a still signs").await;
    // An honest run afterwards promotes and erases as before.
    let d = admin
        .create_key(&create("d", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    let signers = sign_and_check(&admin, &d, b"d signs").await;
    for id in ns(&[1, 2, 3]) {
        // The digest leaves with the pending share it belongs to: at the
        // first use (the signers) or later (the others).
        let pending = vault_count(&c, id, Table::Pending, "d");
        assert_eq!(
            vault_count(&c, id, Table::PendingGroups, "d"),
            pending,
            "node {id}"
        );
        if signers.contains(&id) {
            assert_eq!(pending, 0, "node {id}");
            assert_eq!(vault_count(&c, id, Table::Shares, "d"), 1, "node {id}");
        }
    }
    c.shutdown().await;
}

/// A member falsely accuses an honest dealer in a DKG (issue #17 item 5):
/// the dealer reveals the share it dealt, it checks out against its
/// commitment, the accusation is dismissed with the accuser named in the
/// audit log, and the key keeps every member without the caller having
/// consented to fewer. A member that instead refuses, blaming the dealer in
/// an error with no evidence, is the one named and left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_false_dkg_accusation_is_dismissed_and_the_accuser_named() {
    let (_dir, c) = cluster(4, 3, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let faults = c.keys(n(4)).unwrap();
    faults.faults().accuse.store(2, Ordering::Relaxed);
    let key = admin
        .create_key(&create("accused", SuiteName::Ed25519, 3, None))
        .await
        .unwrap();
    assert_eq!(key.members, ns(&[1, 2, 3, 4]), "every member kept");
    let dismissed = common::wait_for_audit(&admin, "a dismissed accusation", |e| {
        e["event"]["action"] == "dkg.accusation_dismissed"
    })
    .await;
    let outcome = dismissed["event"]["outcome"].as_str().unwrap();
    assert!(outcome.contains("accusers [4] accused [2]"), "{outcome}");
    assert_eq!(dismissed["event"]["target"], "accused", "{dismissed}");
    // The accuser took the revealed share: every 3-subset signs, node 4's
    // share included.
    for set in [[1, 2, 4], [2, 3, 4], [1, 3, 4], [1, 2, 3]] {
        let signed = sign_with(&c, &key, &set).await;
        assert!(signed, "signer set {set:?}");
    }
    faults.faults().accuse.store(0, Ordering::Relaxed);

    // An accusation by refusal: without consent to fewer members no key;
    // with it, the refuser (not the accused) is left out.
    faults.faults().accuse_by_error.store(2, Ordering::Relaxed);
    let err = admin
        .create_key(&create("refused", SuiteName::Ed25519, 3, None))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("node 4 refused, blaming [2] with no evidence"),
        "{err}"
    );
    let key = admin
        .create_key(&keyquorum_wire::api::CreateKeyRequest {
            min_members: Some(3),
            ..create("refused", SuiteName::Ed25519, 3, None)
        })
        .await
        .unwrap();
    assert_eq!(
        key.members,
        ns(&[1, 2, 3]),
        "the refuser is left out, not the accused"
    );
    sign_and_check(&admin, &key, b"without the refuser").await;
    c.shutdown().await;
}

/// Sign with exactly the signer set `set` (as node 1 coordinating): true
/// if the signature verifies under the key.
async fn sign_with(c: &LocalCluster, key: &KeyInfo, set: &[u16]) -> bool {
    let record = c
        .node(n(1))
        .unwrap()
        .registry(|r| r.keys.records.get(&key.name).cloned())
        .unwrap();
    let group = GroupKey::<Ed25519>::from_bytes(&record.group_key.0).unwrap();
    let request = common::sign_request(&c.url_of(n(1)), &c.admin, &key.name, b"pay 1000");
    let mut commitments = Vec::new();
    for id in set {
        commitments.push(nonce(&c.node(n(*id)).unwrap(), &key.name, record.epoch).await);
    }
    let refs: Vec<&NonceCommitment> = commitments.iter().collect();
    let mut coord = package(&group, b"pay 1000", &refs);
    for (i, id) in set.iter().enumerate() {
        let node = c.node(n(*id)).unwrap();
        let reply = node
            .handle_peer(
                n(1),
                sign_share(&key.name, record.epoch, &commitments[i], &coord, &request),
            )
            .await;
        let Ok(PeerMessage::SignatureShare { share }) = reply else {
            return false;
        };
        let share = keyquorum_core::sign::SignatureShare::<Ed25519>::from_bytes(&share.0).unwrap();
        if coord
            .receive(keyquorum_node::keys::pid(n(*id)), share)
            .is_err()
        {
            return false;
        }
    }
    let Ok(signature) = coord.finish() else {
        return false;
    };
    // Checked by ed25519-dalek (RFC 8032, strict), not by our code.
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key.0.clone().try_into().unwrap())
        .unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&signature.to_bytes()).unwrap();
    vk.verify_strict(b"pay 1000", &sig).is_ok()
}

/// A member (here the coordinator of a run it drives by hand) tries to
/// make an honest dealer reveal the share it dealt to another honest
/// member: a dealer reveals only to the run's coordinator, only against a
/// complaint its accuser signed for this run (its id and its digest), and
/// only the accuser's share; a member complains only about a dealer's
/// message signed for the run it is in itself; a run id is used once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dealer_reveals_a_share_only_on_its_accusers_signed_complaint() {
    use keyquorum_node::cluster::peer::seal_envelope;
    use keyquorum_wire::Hex32;
    let (_dir, c) = cluster(3, 2, 0).await;
    let node = |i: u16| c.node(n(i)).unwrap();
    let session = Hex32([7; 32]);
    let members = ns(&[1, 2, 3]);
    let start = || PeerMessage::DkgStart {
        session,
        key: "by-hand".into(),
        suite: SuiteName::Ed25519,
        threshold: 2,
        members: members.clone(),
    };
    // Nodes 2 and 3 are honest; node 1 coordinates (and is hostile). Each
    // member's reply, as that member signs it to node 1.
    let sealed =
        |i: u16, msg: &PeerMessage| seal_envelope(node(i).keys(), n(i), n(1), msg).unwrap();
    let mut round1 = Vec::new();
    for i in 1..=3 {
        let r = node(i).handle_peer(n(1), start()).await.unwrap();
        round1.push((i, sealed(i, &r)));
    }
    // A run id is used once.
    let err = node(2).handle_peer(n(1), start()).await.unwrap_err();
    assert!(err.to_string().contains("already started"), "{err}");
    let mut round2 = Vec::new();
    for i in 1..=3 {
        let others = round1
            .iter()
            .filter(|(j, _)| *j != i)
            .map(|(_, e)| e.clone())
            .collect();
        let r = node(i)
            .handle_peer(
                n(1),
                PeerMessage::DkgRound2 {
                    session,
                    round1: others,
                },
            )
            .await
            .unwrap();
        round2.push((i, r));
    }
    let PeerMessage::DkgShares { run, .. } = &round2[1].1 else {
        panic!("expected node 2's shares");
    };
    let run = *run;
    // The coordinator relays to node 3 a message of its own signed for
    // another run (holding no share for node 3): node 3 does not complain
    // (a complaint would make an honest dealer reveal), the run fails.
    let PeerMessage::DkgShares { shares, .. } = &round2[0].1 else {
        panic!("expected node 1's shares");
    };
    let other_run = PeerMessage::DkgShares {
        session,
        run: Hex32([9; 32]),
        shares: shares.iter().filter(|x| x.to != n(3)).cloned().collect(),
    };
    let err = node(3)
        .handle_peer(
            n(1),
            PeerMessage::DkgFinish {
                session,
                round2: vec![sealed(2, &round2[1].1), sealed(1, &other_run)],
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("for another run"), "{err}");

    let reveal = |complaints| PeerMessage::DkgReveal {
        session,
        complaints,
    };
    let complaint = |accused: &[u16], sid: Hex32, run: Hex32| PeerMessage::DkgComplaint {
        session: sid,
        run,
        accused: ns(accused),
    };
    // Node 3 never complained: a complaint "by node 3" signed by node 1
    // does not verify.
    let mut forged = sealed(1, &complaint(&[2], session, run));
    forged.from = n(3);
    let err = node(2)
        .handle_peer(n(1), reveal(vec![forged]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    // Another signed message of node 3 is no complaint.
    let err = node(2)
        .handle_peer(n(1), reveal(vec![round1[2].1.clone()]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expected a DkgComplaint"), "{err}");
    // A complaint of another run id, or of another run (digest), or one
    // that accuses someone else.
    for (msg, needle) in [
        (complaint(&[2], Hex32([8; 32]), run), "no open run"),
        (complaint(&[2], session, Hex32([9; 32])), "no open run"),
        (complaint(&[3], session, run), "does not accuse node 2"),
    ] {
        let err = node(2)
            .handle_peer(n(1), reveal(vec![sealed(1, &msg)]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    // Only the run's coordinator asks.
    let err = node(2)
        .handle_peer(
            n(3),
            reveal(vec![sealed(1, &complaint(&[2], session, run))]),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    let err = node(2)
        .handle_peer(
            n(3),
            reveal(vec![seal_envelope(
                node(1).keys(),
                n(1),
                n(3),
                &complaint(&[2], session, run),
            )
            .unwrap()]),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("only the run's coordinator"),
        "{err}"
    );
    // Node 1's own signed complaint gets node 1's share only (which node 1
    // was dealt anyway), never node 3's.
    let r = node(2)
        .handle_peer(
            n(1),
            reveal(vec![sealed(1, &complaint(&[2], session, run))]),
        )
        .await
        .unwrap();
    let PeerMessage::DkgRevealed { shares, .. } = r else {
        panic!("expected a reveal, got {r:?}");
    };
    assert_eq!(shares.len(), 1);
    assert_eq!(shares[0].to, n(1));
    // Once the coordinator aborts, nothing is revealed any more, and the
    // run id cannot be used again.
    node(2)
        .handle_peer(n(1), PeerMessage::Abort { session })
        .await
        .unwrap();
    let err = node(2)
        .handle_peer(
            n(1),
            reveal(vec![sealed(1, &complaint(&[2], session, run))]),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no open run"), "{err}");
    let err = node(2).handle_peer(n(1), start()).await.unwrap_err();
    assert!(err.to_string().contains("used before"), "{err}");
    c.shutdown().await;
}
