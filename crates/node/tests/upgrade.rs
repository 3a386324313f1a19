#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! A rolling upgrade (issue #23 item 5), in its own test binary: the hook
//! that makes a node announce an older build's apply rules is process-wide.
//!
//! Three nodes run "the old build" (they announce apply rules 8: OPRF keys,
//! no accounts yet) and a key signs. A node of "the new build" (this build's rules)
//! joins the old cluster and takes part at the old rules. Then each old
//! node in turn is stopped and started as the new build, and the cluster
//! keeps signing through the whole upgrade; the log stays at the old rules
//! until the last member announces the new ones, and only then do the new
//! build's features (accounts, rules 9) work.

mod common;

use std::time::Duration;

use common::{cluster, n, sign_and_check};
use keyquorum_client::Client;
use keyquorum_core::oprf::reset::DeviceSecret;
use keyquorum_node::cluster::machine::rules::announce_as;
use keyquorum_node::dev::LocalCluster;
use keyquorum_wire::api::SuiteName;
use keyquorum_wire::recovery::CreateAccountRequest;
use keyquorum_wire::seedtree::{CreateSeedtreeRequest, SeedtreeInfo};
use keyquorum_wire::Hex32;

const OLD: u16 = 8;

/// Wait until every running node's log is at `rules`.
async fn rules_reach(c: &LocalCluster, rules: u16) {
    common::poll(
        &format!("every node at apply rules {rules}"),
        Duration::from_secs(30),
        || async {
            c.running()
                .iter()
                .all(|node| node.registry(|r| r.rules) == rules)
        },
    )
    .await;
}

/// A small signing tree on nodes 1 to 3.
fn tree(name: &str) -> CreateSeedtreeRequest {
    CreateSeedtreeRequest {
        name: name.into(),
        height: 5,
        winternitz: 4,
        subtrees: Some(2),
        threshold: Some(2),
        members: Some(vec![n(1), n(2), n(3)]),
    }
}

/// The lengths of the vault keys node 1 keeps `tree`'s leaf shares under
/// (36: one value per row, as builds before rows; 37: rows of values).
fn share_key_lengths(c: &LocalCluster, tree: &SeedtreeInfo) -> Vec<usize> {
    let node = c.node(n(1)).unwrap();
    let mut lengths: Vec<usize> = node
        .vault()
        .keys(keyquorum_store::Table::LeafShares, &tree.run.0)
        .unwrap()
        .iter()
        .map(Vec::len)
        .collect();
    lengths.dedup();
    lengths
}

fn account(name: &str) -> CreateAccountRequest {
    CreateAccountRequest {
        account: name.into(),
        guardians: None,
        threshold: None,
        channels: vec!["app".into()],
        device_key: Hex32(DeviceSecret::generate().public_key()),
        measurements: None,
    }
}

/// Sign `msg` through `via` and check it, while the cluster may be
/// electing a leader (the stopped node may have led): a 503 withholding the
/// result because the audit entry did not commit yet is what a client
/// retries, here for up to 30 s; any other failure fails the test.
async fn sign_while_electing(via: &Client, key: &keyquorum_wire::api::KeyInfo, msg: String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match via.sign(&key.name, msg.as_bytes()).await {
            Ok(s) => {
                common::check_sig(key, msg.as_bytes(), &s.signature.0);
                return;
            }
            Err(e) if common::status_of(&e) == 503 && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("signing {msg:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_keeps_signing_and_takes_up_new_rules_after_the_last_member() {
    for id in 1..=3 {
        announce_as(n(id), Some(OLD));
    }
    // Nonce pools as deployed (the default 32): a pooled commitment of a
    // member restarted since is refused and the request retried.
    let (_dir, mut c) = cluster(3, 2, 32).await;
    let admin = |c: &LocalCluster, i: u16| {
        Client::new(&c.url_of(n(i)), &c.admin, c.ca_pem().as_bytes()).unwrap()
    };
    rules_reach(&c, OLD).await;
    let key = admin(&c, 1)
        .create_key(&common::create("k", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    sign_and_check(&admin(&c, 1), &key, b"on the old build").await;
    // A signing tree made at the old rules keeps one value per vault row,
    // as the old build reads them.
    let old_tree = admin(&c, 1).seedtree_create(&tree("old")).await.unwrap();
    admin(&c, 2)
        .seedtree_sign("old", b"old tree, old build", Some(&old_tree.public_key.0))
        .await
        .unwrap();
    assert_eq!(share_key_lengths(&c, &old_tree), [36]);
    // The old build takes no batches of peer messages: none is sent.
    assert_eq!(
        common::held_concurrent_signs(&c, &key, 1, 16, Duration::from_secs(1))
            .await
            .0,
        0
    );
    // The old cluster does not take the new build's requests.
    let e = admin(&c, 2)
        .recovery_account_create(&account("early.example"))
        .await
        .unwrap_err();
    assert_eq!(common::status_of(&e), 409, "{e}");
    assert!(e.to_string().contains("apply rules 9"), "{e}");

    // A node of the new build joins the old cluster and works at its rules.
    let req = c.spawn_node().await.unwrap();
    common::join(&c, &admin(&c, 1), &req).await;
    assert_eq!(c.node(req.id).unwrap().registry(|r| r.rules), OLD);
    rules_reach(&c, OLD).await;

    // Rolling: one old node at a time is stopped and started as the new
    // build; the others sign meanwhile, through a node that is up.
    for id in 1..=3u16 {
        announce_as(n(id), None);
        c.stop_node(n(id)).await;
        let up = if id == 3 { 1 } else { id + 1 };
        sign_while_electing(&admin(&c, up), &key, format!("while node {id} is down")).await;
        c.restart_node(n(id)).await.unwrap();
        sign_and_check(
            &admin(&c, id),
            &key,
            format!("after node {id} upgraded").as_bytes(),
        )
        .await;
        if id < 3 {
            // Some member still runs the old build: the log stays old.
            tokio::time::sleep(Duration::from_millis(300)).await;
            for node in c.running() {
                assert_eq!(node.registry(|r| r.rules), OLD, "node {}", node.id());
            }
        }
    }
    // The last member announced the new rules: the log takes them up, and
    // the new build's requests work on the same key and cluster.
    rules_reach(&c, keyquorum_wire::control::APPLY_RULES).await;
    sign_and_check(&admin(&c, 4), &key, b"on the new build").await;
    assert!(
        common::held_concurrent_signs(&c, &key, 1, 16, Duration::from_secs(1))
            .await
            .0
            >= 1,
        "batches now"
    );
    let a = admin(&c, 2)
        .recovery_account_create(&account("after.example"))
        .await
        .unwrap();
    assert_eq!(a.account, "after.example");
    // The old tree still signs from its one-value rows; a new tree keeps
    // rows of values.
    admin(&c, 3)
        .seedtree_sign("old", b"old tree, new build", Some(&old_tree.public_key.0))
        .await
        .unwrap();
    let new_tree = admin(&c, 1).seedtree_create(&tree("new")).await.unwrap();
    admin(&c, 2)
        .seedtree_sign("new", b"new tree", Some(&new_tree.public_key.0))
        .await
        .unwrap();
    assert_eq!(share_key_lengths(&c, &new_tree), [37]);
    assert_eq!(share_key_lengths(&c, &old_tree), [36]);
    c.shutdown().await;
}
