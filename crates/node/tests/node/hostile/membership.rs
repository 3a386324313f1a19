//! Membership: the record the operator quorum changes, not Raft's
//! membership, is whom members trust.

use super::*;

/// The leader appends a membership entry that gives member 2 keys of the
/// leader's choosing (Raft applies membership on append, so no replica can
/// refuse it): every node still seals to, and checks signatures of, the
/// keys node 2 joined with, so a new key is dealt to node 2 itself and
/// signs through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cannot_swap_a_members_keys() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let leader = c.node(n(1)).unwrap().leader().unwrap();
    let victim = if leader == n(2) { n(3) } else { n(2) };
    let lead = c.node(leader).unwrap();
    let honest = lead.node_info(victim).unwrap();
    // The leader's own keys, in the victim's name.
    let mut swapped = lead.node_info(leader).unwrap();
    swapped.addr = honest.addr.clone();
    lead.raft()
        .change_membership(
            openraft::ChangeMembers::SetNodes([(u64::from(victim), swapped.clone())].into()),
            false,
        )
        .await
        .unwrap();
    // (The victim itself stops getting entries: the leader's replication
    // to it pins the swapped identity. Stalling a member is a leader's to
    // do; using keys in its name is not.)
    for id in (1..=3u16).filter(|i| n(*i) != victim) {
        let node = c.node(n(id)).unwrap();
        common::poll(
            "the swapped entry to reach every node",
            std::time::Duration::from_secs(10),
            || async {
                let m = node.raft().metrics().borrow().membership_config.clone();
                m.membership()
                    .get_node(&u64::from(victim))
                    .is_some_and(|i| i.identity == swapped.identity)
            },
        )
        .await;
        let seen = node.node_info(victim).unwrap();
        assert_eq!(seen.identity, honest.identity, "node {id}");
        assert_eq!(seen.hpke, honest.hpke, "node {id}");
    }
    // A key dealt after the swap: the victim opened its shares (sealed to
    // its own HPKE key) and signed its endorsement with its own identity,
    // or no key would be made (every member must finish).
    let key = admin
        .create_key(&create("after-swap", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    assert!(key.members.contains(&victim));
    sign_and_check(&admin, &key, b"after the swap").await;
    c.shutdown().await;
}

/// Membership is a record only the operator quorum changes (DESIGN.md §4
/// item 3): a client that is neither admin nor operator cannot propose a
/// node; an admin's proposal alone changes nothing; a leader that puts a
/// node into Raft's membership on its own (openraft applies it on append,
/// no replica can refuse it) gets it trusted by no one (no member looks it
/// up, lists it or counts it), and an honest leader takes it out again;
/// a removal takes effect only once an operator approves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_only_with_the_operator_quorum() {
    let (_dir, c) = cluster(3, 2, 0).await;
    let leader = c.node(n(1)).unwrap().leader().unwrap();
    let follower = (1..=3).map(n).find(|i| *i != leader).unwrap();
    let other = (1..=3)
        .map(n)
        .find(|i| *i != leader && *i != follower)
        .unwrap();
    let lead = c.node(leader).unwrap();
    let admin = Client::new(&c.url_of(follower), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let operator = Client::new(&c.url_of(follower), &c.operator, c.ca_pem().as_bytes()).unwrap();
    let app = common::new_client(&admin, "app", false, false, &["*"]).await;
    let app = Client::new(&c.url_of(follower), &app, c.ca_pem().as_bytes()).unwrap();
    // A rogue node: fresh keys, an address no one serves.
    let rogue_key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let rogue = keyquorum_wire::control::NodeInfo {
        addr: "https://127.0.0.1:9".into(),
        identity: Hex32(rogue_key.verifying_key().to_bytes()),
        hpke: Hex32([9u8; 32]),
    };
    let req = keyquorum_wire::api::AddNodeRequest {
        id: n(9),
        addr: rogue.addr.clone(),
        identity: rogue.identity,
        hpke: rogue.hpke,
        voter: true,
    };
    let every_node = |f: &dyn Fn(&Node) -> bool| (1..=3).map(n).all(|id| f(&c.node(id).unwrap()));
    let trusted = |node: &Node, id: NodeId| {
        node.node_info(id).is_some() || node.members().iter().any(|(m, _, _)| *m == id)
    };

    let e = app.add_node(&req).await.unwrap_err();
    assert_eq!(status_of(&e), 403, "{e}");
    let proposed = admin.add_node(&req).await.unwrap();
    assert!(!proposed.done && proposed.approvals.is_empty());
    common::poll(
        "the proposal on every node",
        std::time::Duration::from_secs(10),
        || async {
            every_node(&|node| node.registry(|r| r.operators.changes.contains_key(&proposed.id)))
        },
    )
    .await;
    assert!(every_node(
        &|node| !node.registry(|r| r.roster.nodes.contains_key(&n(9)))
    ));

    // The leader adds node 9 to Raft's membership by itself, as a voter.
    for id in (1..=3).map(n) {
        c.node(id).unwrap().hold_membership(true);
    }
    lead.raft()
        .add_learner(u64::from(n(9)), rogue.clone(), false)
        .await
        .unwrap();
    common::poll(
        "the rogue entry to be applied everywhere",
        std::time::Duration::from_secs(10),
        || async { every_node(&|node| node.registry(|r| r.roster.raft_nodes.contains_key(&n(9)))) },
    )
    .await;
    assert!(
        every_node(&|node| !trusted(node, n(9))),
        "no one trusts node 9"
    );
    // Nor a swapped identity under a member's id, nor a stranger's
    // statement: members are the record's.
    assert!(every_node(
        &|node| node.registry(|r| r.members.len() == 3 && r.voters.len() == 3)
    ));
    // An honest leader takes it out.
    for id in (1..=3).map(n) {
        c.node(id).unwrap().hold_membership(false);
    }
    common::poll(
        "the honest leader to remove the stranger",
        std::time::Duration::from_secs(20),
        || async {
            let leader = c.node(n(1)).unwrap().leader();
            leader.is_some_and(|l| {
                let m = c
                    .node(l)
                    .unwrap()
                    .raft()
                    .metrics()
                    .borrow()
                    .membership_config
                    .clone();
                m.membership().get_node(&u64::from(n(9))).is_none()
            })
        },
    )
    .await;

    // A removal: proposed by the admin, nothing happens until approved.
    let removal = admin.remove_node(other).await.unwrap();
    assert!(!removal.done);
    assert!(every_node(&|node| trusted(node, other)));
    let e = app.remove_node(other).await.unwrap_err();
    assert_eq!(status_of(&e), 403, "{e}");
    operator.approve_change(&removal).await.unwrap();
    common::wait_membership(&c, other, false, false).await;
    common::poll(
        "Raft's membership to follow the record",
        std::time::Duration::from_secs(20),
        || async {
            let m = lead.raft().metrics().borrow().membership_config.clone();
            m.membership().get_node(&u64::from(other)).is_none()
        },
    )
    .await;
    c.shutdown().await;
}

/// Join requests (`POST /v1/join`, public) only inform the operators: a
/// forged signature, a stale or future time, another cluster's members, a
/// member's id or a member's identity is refused with a clear 4xx; a
/// stranger asking under the same new id as a real node cannot push the
/// real request out (both are listed, by identity), nor can a flood from
/// other addresses; and no request, valid or not, changes the membership
/// or proposes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_requests_change_nothing_and_cannot_displace_each_other() {
    use ed25519_dalek::Signer as _;
    use keyquorum_node::cluster::join::{fingerprint, join_code, parse_join_code};
    use keyquorum_wire::api::{join_statement, JoinInfo, JoinRequest};
    use keyquorum_wire::control::NodeInfo;

    let (_dir, c) = cluster(3, 2, 0).await;
    let url = c.url_of(n(2));
    let admin = Client::new(&url, &c.admin, c.ca_pem().as_bytes()).unwrap();
    let http = keyquorum_client::http_client(c.ca_pem().as_bytes()).unwrap();
    let info: JoinInfo = http
        .get(format!("{url}/v1/join"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info.members.len(), 3);
    assert_eq!(info.fingerprint.0, fingerprint(&info));
    assert_eq!(
        parse_join_code(&join_code(&info.fingerprint.0)).unwrap(),
        info.fingerprint.0
    );
    let before = admin.changes().await.unwrap().changes.len();

    let key = |seed: u8| ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let now = keyquorum_node::cluster::peer::now_ms();
    let request = |k: &ed25519_dalek::SigningKey, id: u16, fp: [u8; 32], at: u64| {
        let info = NodeInfo {
            addr: format!("https://node{id}.example:7001"),
            identity: Hex32(k.verifying_key().to_bytes()),
            hpke: Hex32([7; 32]),
        };
        let fp = Hex32(fp);
        let sig = k.sign(&join_statement(n(id), &info, &fp, at));
        JoinRequest {
            id: n(id),
            info,
            fingerprint: fp,
            created_ms: at,
            signature: Hex(sig.to_bytes().to_vec()),
        }
    };
    let post = |r: JoinRequest| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let resp = http
                .post(format!("{url}/v1/join"))
                .json(&r)
                .send()
                .await
                .unwrap();
            let code = resp.status().as_u16();
            (code, resp.text().await.unwrap())
        }
    };
    let fp = info.fingerprint.0;
    let real = key(1);
    let stranger = key(2);

    // Refused, each with its reason.
    let mut forged = request(&stranger, 9, fp, now);
    forged.info.identity = Hex32(real.verifying_key().to_bytes());
    let (code, body) = post(forged).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("signature"), "{body}");
    let (code, body) = post(request(&real, 9, fp, now - 3_600_000)).await;
    assert_eq!(code, 400, "stale: {body}");
    let (code, body) = post(request(&real, 9, fp, now + 3_600_000)).await;
    assert_eq!(code, 400, "future: {body}");
    let (code, body) = post(request(&real, 9, [0x5a; 32], now)).await;
    assert_eq!(code, 409, "another cluster's members: {body}");
    let (code, body) = post(request(&stranger, 2, fp, now)).await;
    assert_eq!(code, 409, "a member's id: {body}");
    let mut http_addr = request(&real, 9, fp, now);
    http_addr.info.addr = "http://10.9.9.9:7001".into();
    let (code, body) = post(http_addr).await;
    assert_eq!(code, 400, "not https: {body}");
    let (code, body) = post(JoinRequest {
        signature: Hex(vec![1; 10]),
        ..request(&real, 9, fp, now)
    })
    .await;
    assert_eq!(code, 400, "short signature: {body}");

    // Requests from other addresses (loopback has the whole 127/8): the
    // endpoint shares its room between the addresses asking.
    let from = |last: u8| {
        let mut b = reqwest::Client::builder()
            .min_tls_version(reqwest::tls::Version::TLS_1_3)
            .local_address(std::net::IpAddr::from([127, 0, 0, last]));
        for r in reqwest::Certificate::from_pem_bundle(c.ca_pem().as_bytes()).unwrap() {
            b = b.add_root_certificate(r);
        }
        b.build().unwrap()
    };
    let post_from = |client: &reqwest::Client, r: JoinRequest| {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .post(format!("{url}/v1/join"))
                .json(&r)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let held = |joins: &[JoinRequest], k: &ed25519_dalek::SigningKey, id: u16| {
        joins
            .iter()
            .any(|r| r.id == n(id) && r.info.identity.0 == k.verifying_key().to_bytes())
    };

    // The real node's request and a stranger's under the same id (from
    // another address): both kept, told apart by identity.
    let (code, body) = post(request(&real, 9, fp, now)).await;
    assert_eq!(code, 200, "{body}");
    let flood = from(2);
    for i in 0..80u64 {
        // Many of the stranger's (newer each time) replace its own only.
        assert_eq!(
            post_from(&flood, request(&stranger, 9, fp, now + i)).await,
            200
        );
    }
    let joins = admin.joins().await.unwrap().requests;
    assert!(
        held(&joins, &real, 9) && held(&joins, &stranger, 9),
        "{joins:?}"
    );
    // The stranger's address asking under 80 other ids holds 4 requests
    // at most (its own oldest go); the real one stays.
    for i in 0..80u16 {
        let k = key(3 + (i % 200) as u8);
        assert_eq!(post_from(&flood, request(&k, 100 + i, fp, now)).await, 200);
    }
    let joins = admin.joins().await.unwrap().requests;
    assert_eq!(joins.len(), 5, "{joins:?}");
    assert!(held(&joins, &real, 9));
    // Twenty more addresses, four requests each, overflow the room (64):
    // the busiest addresses' oldest go, never the real node's one.
    for a in 0..20u8 {
        let client = from(10 + a);
        for j in 0..4u16 {
            let id = 300 + u16::from(a) * 4 + j;
            let k = key(100 + a.wrapping_mul(4).wrapping_add(j as u8) % 150);
            assert_eq!(post_from(&client, request(&k, id, fp, now)).await, 200);
        }
    }
    let joins = admin.joins().await.unwrap().requests;
    assert_eq!(joins.len(), 64);
    assert!(
        held(&joins, &real, 9),
        "the node asking from its own address stays"
    );

    // Nothing reached the registry.
    assert_eq!(admin.changes().await.unwrap().changes.len(), before);
    assert_eq!(admin.status().await.unwrap().nodes.len(), 3);
    // Only an operator or admin reads the requests.
    let app = common::new_client(&admin, "app", false, false, &["*"]).await;
    let app = Client::new(&url, &app, c.ca_pem().as_bytes()).unwrap();
    assert_eq!(status_of(&app.joins().await.unwrap_err()), 403);
    c.shutdown().await;
}

/// A node that joined with a code is sent a history whose founders are
/// not the code's (a lying member serving another cluster's log): once
/// that history has clients, the node finds out, its guard stops its Raft
/// and its joining side returns the refusal. A node under the true code
/// joins (first: the leader's wait for the stopped one to catch up would
/// hold up later joins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_sent_another_clusters_history_stops() {
    use keyquorum_node::cluster::join::{ask_until_member, fingerprint, write_join_file};

    let (dir, mut c) = cluster(3, 2, 0).await;
    let admin = Client::new(&c.url_of(n(1)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let truth = c.node(n(1)).unwrap().join_info().unwrap();
    let mut other = truth.clone();
    other.genesis.0[0] ^= 1;
    other.fingerprint = Hex32(fingerprint(&other));
    for (id, info) in [(4u16, &truth), (5, &other)] {
        write_join_file(&dir.path().join(format!("node-{id}")), info).unwrap();
        let req = c.spawn_node().await.unwrap();
        assert_eq!(req.id, n(id));
        let joiner = c.node(n(id)).unwrap();
        // Nothing to check before it has a history.
        assert!(!joiner.check_joined().unwrap());
        let outcome = if id == 5 {
            // Approved, it is sent the cluster's log, which is not its
            // code's: it stops before it takes part.
            let change = admin.add_node(&req).await.unwrap();
            let operator =
                Client::new(&c.url_of(n(1)), &c.operator, c.ca_pem().as_bytes()).unwrap();
            operator.approve_change(&change).await.unwrap();
            let outcome = tokio::time::timeout(
                std::time::Duration::from_secs(20),
                ask_until_member(joiner.clone(), std::time::Duration::from_secs(5)),
            )
            .await
            .unwrap();
            common::poll(
                "the guard to stop node 5's Raft",
                std::time::Duration::from_secs(10),
                || async { joiner.raft().metrics().borrow().running_state.is_err() },
            )
            .await;
            outcome
        } else {
            common::join(&c, &admin, &req).await;
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                ask_until_member(joiner.clone(), std::time::Duration::from_secs(5)),
            )
            .await
            .unwrap()
        };
        if id == 5 {
            let e = outcome.unwrap_err().to_string();
            assert!(e.contains("join code"), "{e}");
            assert!(joiner.check_joined().is_err());
        } else {
            outcome.unwrap();
            assert!(joiner.check_joined().unwrap());
        }
    }
    c.shutdown().await;
}
