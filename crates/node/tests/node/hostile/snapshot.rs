//! Snapshots: a replica installs the state a leader sends only when the
//! other members vouch for it (`cluster::checkpoint`).

use std::time::Duration;

use super::*;

/// Checkpoint interval in these tests (entries).
const EVERY: u64 = 20;

/// A member far behind catches up from a snapshot, which it installs only
/// because the other members' own checkpoints at its index have its
/// digest; a snapshot the leader forged at the same index (the real state
/// plus an admin client of its own) is refused by that member, whose
/// registry never holds the forged client, and the refusal is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_installs_only_a_snapshot_the_members_vouch_for() {
    let (_dir, mut c) = common::cluster_with(3, 2, 0, EVERY).await;
    let (leader, behind, _admin) = common::leave_member_behind(&mut c, EVERY).await;
    let lead = c.node(leader).unwrap();

    // The leader's forgery: its checkpoint's position, its state plus an
    // admin client "mallory".
    let m = lead.raft().metrics().borrow().clone();
    let at = m.snapshot.unwrap();
    assert_eq!(at.index % EVERY, 0, "snapshots are taken at the multiples");
    let mut machine = lead.registry(|r| serde_json::to_value(r).unwrap());
    let clients = machine["clients"].as_object_mut().unwrap();
    let mut forged = clients
        .values()
        .find(|r| r["grant"]["admin"] == true)
        .unwrap()
        .clone();
    forged["grant"]["name"] = "mallory".into();
    clients.insert("mallory".into(), forged);
    let data = serde_json::to_vec(&serde_json::json!({
        "last_applied": at,
        "membership": &*m.membership_config,
        "machine": machine,
    }))
    .unwrap();
    let meta = openraft::SnapshotMeta {
        last_log_id: Some(at),
        last_membership: (*m.membership_config).clone(),
        snapshot_id: format!("forged-{}", at.index),
    };

    c.restart_node(behind).await.unwrap();
    let info = lead.node_info(behind).unwrap();
    let vote = lead.raft().metrics().borrow().vote;
    let chunk = |offset: usize, end: usize, done: bool| {
        PeerMessage::InstallSnapshot(openraft::raft::InstallSnapshotRequest {
            vote,
            meta: meta.clone(),
            offset: offset as u64,
            data: data[offset..end].to_vec(),
            done,
        })
    };
    let answer = |r: Result<PeerMessage, keyquorum_node::error::NodeError>| match r {
        Err(e) => Err(e.to_string()),
        Ok(PeerMessage::Error { message, .. }) => Err(message),
        Ok(other) => Ok(other),
    };
    let half = data.len() / 2;
    // In two chunks: the first is held, not passed to Raft; a chunk that
    // does not continue it is refused; the last one is refused for want
    // of vouchers.
    assert!(matches!(
        answer(lead.call(behind, &info, chunk(0, half, false)).await),
        Ok(PeerMessage::InstallSnapshotReply(_))
    ));
    let gap = answer(
        lead.call(behind, &info, chunk(half + 1, data.len(), true))
            .await,
    );
    assert!(
        gap.as_ref().is_err_and(|e| e.contains("does not continue")),
        "{gap:?}"
    );
    assert!(matches!(
        answer(lead.call(behind, &info, chunk(0, half, false)).await),
        Ok(PeerMessage::InstallSnapshotReply(_))
    ));
    let refused = answer(
        lead.call(behind, &info, chunk(half, data.len(), true))
            .await,
    )
    .expect_err("a forged snapshot was taken");
    assert!(refused.contains("vouch"), "{refused}");
    assert!(refused.contains("another state"), "{refused}");

    // The honest snapshot, vouched for, brings the member up to date.
    let member = c.node(behind).unwrap();
    let target = lead.raft().metrics().borrow().last_applied.unwrap().index;
    common::poll(
        "the member behind to catch up",
        Duration::from_secs(30),
        || async {
            member
                .raft()
                .metrics()
                .borrow()
                .last_applied
                .is_some_and(|l| l.index >= target)
        },
    )
    .await;
    let installed = member.raft().metrics().borrow().snapshot.unwrap();
    assert!(
        installed.index >= at.index,
        "the member caught up from a snapshot ({installed}), not from the log"
    );
    let names = |node: &Node| node.registry(|r| r.clients.keys().cloned().collect::<Vec<_>>());
    assert!(!names(&member).contains(&"mallory".to_string()));
    assert!(names(&member).contains(&format!("c{}", 3 * EVERY - 1)));
    assert_eq!(names(&member), names(&lead));
    // The refusal is in the audit log, naming the leader.
    common::poll(
        "the refusal to be audited",
        Duration::from_secs(10),
        || async {
            lead.audit_entries(0, usize::MAX).unwrap().iter().any(|e| {
                e.event.action == "snapshot.refused" && e.event.actor == format!("peer:{leader}")
            })
        },
    )
    .await;
    c.shutdown().await;
}
