//! Shared helpers for the cluster integration tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    dead_code,
    reason = "integration test helpers: a failed unwrap is a failed test"
)]

use std::time::{Duration, Instant};

use keyquorum_client::{Client, ClientError};
use keyquorum_core::codec::{Decode, Encode};
use keyquorum_core::sign::{Coordinator, SigningCommitment};
use keyquorum_core::{Ed25519, GroupKey, SessionId};
use keyquorum_node::dev::{DevOptions, LocalCluster};
use keyquorum_node::Node;
use keyquorum_store::vault::KdfParams;
use keyquorum_store::Passphrase;
use keyquorum_store::Table;
use keyquorum_wire::api::CreateKeyRequest;
use keyquorum_wire::api::{KeyInfo, SuiteName};
use keyquorum_wire::peer::{ClientRequest, NonceCommitment, PeerMessage};
use keyquorum_wire::Hex;
use keyquorum_wire::NodeId;

/// Node `i` (test shorthand for a literal id).
pub fn n(i: u16) -> NodeId {
    NodeId::new(i).expect("a node id is 1..=65535")
}

/// Nodes `ids`.
pub fn ns(ids: &[u16]) -> Vec<NodeId> {
    ids.iter().map(|i| n(*i)).collect()
}

pub async fn cluster(nodes: u16, threshold: u16, pool: usize) -> (tempfile::TempDir, LocalCluster) {
    cluster_with(
        nodes,
        threshold,
        pool,
        keyquorum_node::config::NodeConfig::DEFAULT_CHECKPOINT_EVERY,
    )
    .await
}

/// [`cluster`], checkpointing the control plane every `checkpoint_every`
/// entries.
pub async fn cluster_with(
    nodes: u16,
    threshold: u16,
    pool: usize,
    checkpoint_every: u64,
) -> (tempfile::TempDir, LocalCluster) {
    cluster_opts(
        nodes,
        threshold,
        pool,
        checkpoint_every,
        keyquorum_node::config::NodeConfig::DEFAULT_AUDIT_QUEUE,
    )
    .await
}

/// [`cluster_with`], with an audit queue of `audit_queue` events.
pub async fn cluster_opts(
    nodes: u16,
    threshold: u16,
    pool: usize,
    checkpoint_every: u64,
    audit_queue: usize,
) -> (tempfile::TempDir, LocalCluster) {
    cluster_full(
        nodes,
        threshold,
        pool,
        checkpoint_every,
        audit_queue,
        keyquorum_node::config::NodeConfig::DEFAULT_CLIENT_SESSIONS,
    )
    .await
}

/// [`cluster_opts`], with at most `client_sessions` requests in flight per
/// client on each node.
pub async fn cluster_full(
    nodes: u16,
    threshold: u16,
    pool: usize,
    checkpoint_every: u64,
    audit_queue: usize,
    client_sessions: usize,
) -> (tempfile::TempDir, LocalCluster) {
    cluster_smtp(
        nodes,
        threshold,
        pool,
        checkpoint_every,
        audit_queue,
        client_sessions,
        None,
    )
    .await
}

/// [`cluster_full`], with every node sending email through `smtp`.
pub async fn cluster_smtp(
    nodes: u16,
    threshold: u16,
    pool: usize,
    checkpoint_every: u64,
    audit_queue: usize,
    client_sessions: usize,
    smtp: Option<String>,
) -> (tempfile::TempDir, LocalCluster) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let opts = DevOptions {
        nodes,
        threshold,
        data_dir: dir.path().to_path_buf(),
        kdf: KdfParams::insecure_fast(),
        nonce_pool: pool,
        peer_batches: keyquorum_node::config::NodeConfig::DEFAULT_PEER_BATCHES,
        checkpoint_every,
        audit_queue,
        client_sessions,
        smtp,
    };
    let c = LocalCluster::start(opts, Passphrase::new(b"test".to_vec()))
        .await
        .unwrap();
    (dir, c)
}

pub fn check_ed25519(pk: &[u8], msg: &[u8], sig: &[u8]) {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(pk.try_into().unwrap()).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(sig).unwrap();
    vk.verify_strict(msg, &sig)
        .expect("ed25519-dalek accepts the threshold signature");
}

pub fn check_bip340(pk: &[u8], msg: &[u8], sig: &[u8]) {
    let vk = k256::schnorr::VerifyingKey::from_bytes(pk).unwrap();
    let sig = k256::schnorr::Signature::try_from(sig).unwrap();
    vk.verify_raw(msg, &sig)
        .expect("k256 BIP-340 verifier accepts the threshold signature");
}

pub fn status_of(e: &ClientError) -> u16 {
    match e {
        ClientError::Api { status, .. } => *status,
        other => panic!("expected an API error, got {other}"),
    }
}

/// Sign through `via` and check the signature with an ordinary verifier;
/// returns the signers.
pub async fn sign_and_check(via: &Client, key: &KeyInfo, msg: &[u8]) -> Vec<NodeId> {
    let sig = via.sign(&key.name, msg).await.unwrap();
    check_sig(key, msg, &sig.signature.0);
    assert_eq!(sig.epoch, key.epoch);
    sig.signers
}

pub fn check_sig(key: &KeyInfo, msg: &[u8], sig: &[u8]) {
    match key.suite {
        SuiteName::Ed25519 => check_ed25519(&key.public_key.0, msg, sig),
        SuiteName::Secp256k1Tr => check_bip340(&key.public_key.0, msg, sig),
        SuiteName::Ristretto255 => panic!("ristretto255 keys never sign"),
    }
}

/// Every audit entry (up to 1,000).
pub async fn audit_entries(c: &Client) -> Vec<serde_json::Value> {
    c.audit(0, 1000).await.unwrap()["entries"]
        .as_array()
        .unwrap()
        .clone()
}

/// Poll the audit log until an entry matches `pred` (events are appended in
/// batches); returns it.
pub async fn wait_for_audit(
    c: &Client,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(e) = audit_entries(c).await.into_iter().find(|e| pred(e)) {
            return e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no audit entry for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Make a client identity here and register it through `admin`; returns its
/// key (what `keyquorum client create` does).
pub async fn new_client(
    admin: &Client,
    name: &str,
    is_admin: bool,
    operator: bool,
    sign_keys: &[&str],
) -> keyquorum_client::ClientKey {
    try_new_client(admin, name, is_admin, operator, sign_keys)
        .await
        .unwrap()
}

/// [`new_client`], the refusal returned.
pub async fn try_new_client(
    admin: &Client,
    name: &str,
    is_admin: bool,
    operator: bool,
    sign_keys: &[&str],
) -> Result<keyquorum_client::ClientKey, ClientError> {
    let key = keyquorum_client::ClientKey::generate(name, &mut rand_core::OsRng);
    admin
        .create_client(&keyquorum_wire::api::CreateClientRequest {
            name: name.into(),
            public_key: keyquorum_wire::Hex32(key.public_key()),
            admin: is_admin,
            operator,
            sign_keys: sign_keys.iter().map(|k| k.to_string()).collect(),
            recovery: false,
            expires_ms: None,
        })
        .await?;
    Ok(key)
}

/// Send a hand-built request signed as a client (RFC 9421).
pub trait SendAs {
    /// Sign as `me`, send, and return the response.
    fn send_as(
        self,
        me: &keyquorum_client::ClientKey,
    ) -> impl std::future::Future<Output = reqwest::Response>;
}

impl SendAs for reqwest::RequestBuilder {
    async fn send_as(self, me: &keyquorum_client::ClientKey) -> reqwest::Response {
        let (http, req) = self.build_split();
        let req = keyquorum_client::sign_request(me, req.unwrap()).unwrap();
        http.execute(req).await.unwrap()
    }
}

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A client's request signed by `me` as it reaches the node at `base`
/// (`https://host:port`), in the form an entry node forwards to the
/// participants; `created` in seconds.
pub fn client_request(
    base: &str,
    me: &keyquorum_client::ClientKey,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    created: u64,
) -> keyquorum_wire::peer::ClientRequest {
    let mut req = keyquorum_core::httpsig::Request {
        method: method.into(),
        target_uri: format!("{base}{path}"),
        headers: Vec::new(),
        body: Vec::new(),
    };
    if let Some(b) = body {
        req.headers
            .push(("content-type".into(), "application/json".into()));
        req.body = serde_json::to_vec(&b).unwrap();
    }
    let mut nonce = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    me.sign(&mut req, created, &hex::encode(nonce)).unwrap();
    keyquorum_wire::peer::ClientRequest {
        method: req.method,
        target_uri: req.target_uri,
        headers: req.headers,
        body: keyquorum_wire::Hex(req.body),
    }
}

/// `client_request` for `POST /v1/keys/{key}/sign` of `message`, now.
pub fn sign_request(
    base: &str,
    me: &keyquorum_client::ClientKey,
    key: &str,
    message: &[u8],
) -> keyquorum_wire::peer::ClientRequest {
    client_request(
        base,
        me,
        "POST",
        &format!("/v1/keys/{key}/sign"),
        Some(serde_json::json!({ "message": hex::encode(message) })),
        now_s(),
    )
}

/// One nonce commitment of `key` at `epoch` from `node`, asked as node 1.
pub async fn nonce(node: &Node, key: &str, epoch: u64) -> NonceCommitment {
    let batch = PeerMessage::NonceBatch {
        key: key.into(),
        epoch,
        count: 1,
    };
    match node.handle_peer(n(1), batch).await.unwrap() {
        PeerMessage::Nonces { mut items } => items.pop().unwrap(),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// A signing package over `msg` with commitments `cs`.
pub fn package<'a>(
    group: &'a GroupKey<Ed25519>,
    msg: &[u8],
    cs: &[&NonceCommitment],
) -> Coordinator<'a, Ed25519> {
    let cs: Vec<_> = cs
        .iter()
        .map(|c| SigningCommitment::<Ed25519>::from_bytes(&c.commitment.0).unwrap())
        .collect();
    Coordinator::new(group, SessionId([7; 32]), msg, cs).unwrap()
}

/// A `SignShare` peer message for `nonce` of `key`, carrying `request`.
pub fn sign_share(
    key: &str,
    epoch: u64,
    nonce: &NonceCommitment,
    c: &Coordinator<Ed25519>,
    request: &ClientRequest,
) -> PeerMessage {
    PeerMessage::SignShare {
        key: key.into(),
        epoch,
        nonce: nonce.id.clone(),
        package: Hex(c.package().to_bytes()),
        request: request.clone(),
    }
}

/// A create-key request for `t`-of-(`members` or all voters).
pub fn create(
    name: &str,
    suite: SuiteName,
    t: u16,
    members: Option<Vec<NodeId>>,
) -> CreateKeyRequest {
    CreateKeyRequest {
        name: name.into(),
        suite,
        threshold: Some(t),
        members,
        min_members: None,
    }
}

/// How many entries of `table` node `id`'s vault holds under `key/`.
pub fn vault_count(c: &LocalCluster, id: NodeId, table: Table, key: &str) -> usize {
    c.node(id)
        .unwrap()
        .vault()
        .count(table, format!("{key}/").as_bytes())
        .unwrap()
}

/// Poll `f` every 20 ms until it holds, failing after `timeout`.
pub async fn poll<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll `f` every 20 ms until it gives a value, failing after `timeout`.
#[allow(dead_code, reason = "not every test binary polls for a value")]
pub async fn poll_value<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Add the node `req` describes as the README says: an admin proposes it,
/// the dev cluster's operator (quorum 1) approves, and the leader makes it
/// a member; wait until every running node trusts it (and, for a voter,
/// counts its vote).
pub async fn join(c: &LocalCluster, admin: &Client, req: &keyquorum_wire::api::AddNodeRequest) {
    let change = admin.add_node(req).await.unwrap();
    assert!(!change.done, "an admin alone adds no node");
    let operator = Client::new(&c.url_of(n(1)), &c.operator, c.ca_pem().as_bytes()).unwrap();
    operator.approve_change(&change).await.unwrap();
    wait_member(c, req.id, req.voter).await;
    // The leader then makes it a Raft learner (caught up) and voter, and
    // it learns the record itself.
    let joined = c.node(req.id).unwrap();
    poll(
        &format!("node {} to join Raft and learn the record", req.id),
        Duration::from_secs(30),
        || async {
            joined.registry(|r| r.roster.nodes.contains_key(&req.id))
                && c.running().into_iter().all(|node| {
                    let m = node.raft().metrics().borrow().membership_config.clone();
                    let voters: Vec<u64> = m.membership().voter_ids().collect();
                    m.membership().get_node(&u64::from(req.id)).is_some()
                        && voters.contains(&u64::from(req.id)) == req.voter
                })
        },
    )
    .await;
}

/// Wait until every running node trusts `id` as a member (a voter if
/// `voter`), or, with `present` false, until none does.
pub async fn wait_membership(c: &LocalCluster, id: NodeId, present: bool, voter: bool) {
    poll(
        &format!("every node to see node {id} as a member: {present}"),
        Duration::from_secs(30),
        || async {
            c.running().into_iter().all(|node| {
                node.members()
                    .iter()
                    .find(|(m, _, _)| *m == id)
                    .map_or(!present, |(_, _, v)| present && *v == voter)
            })
        },
    )
    .await;
}

/// Wait until every running node trusts `id` as a member.
pub async fn wait_member(c: &LocalCluster, id: NodeId, voter: bool) {
    wait_membership(c, id, true, voter).await;
}

/// Let key `key` be reshared to `threshold` over `members` as the README
/// says: an admin proposes the policy, the dev cluster's operator (quorum
/// 1) approves; wait until every running node has the approval.
pub async fn allow_reshare(
    c: &LocalCluster,
    admin: &Client,
    key: &str,
    threshold: u16,
    members: &[NodeId],
) {
    let change = admin
        .propose_change(keyquorum_wire::control::Change::SetKeyPolicy {
            key: key.into(),
            threshold,
            members: members.to_vec(),
        })
        .await
        .unwrap();
    assert!(!change.done, "an admin alone changes no policy");
    let operator = Client::new(&c.url_of(n(1)), &c.operator, c.ca_pem().as_bytes()).unwrap();
    operator.approve_change(&change).await.unwrap();
    poll(
        &format!("every node to know {key}'s new policy"),
        Duration::from_secs(10),
        || async {
            c.running()
                .into_iter()
                .all(|node| node.registry(|r| r.operators.key_policies.contains_key(key)))
        },
    )
    .await;
}

/// Leave a member behind the leader's compacted log: stop a member that is
/// not the leader, register `3 * every` clients through the leader (a
/// checkpoint every `every` entries), and wait until the leader purged its
/// log past a checkpoint. Returns the leader, the stopped member and an
/// admin client on the leader.
pub async fn leave_member_behind(c: &mut LocalCluster, every: u64) -> (NodeId, NodeId, Client) {
    let (leader, behind, admin) = stop_a_follower(c).await;
    compact_past(c, leader, &admin, every).await;
    (leader, behind, admin)
}

/// Stop a member that is not the leader. Returns the leader, the stopped
/// member and an admin client on the leader.
pub async fn stop_a_follower(c: &mut LocalCluster) -> (NodeId, NodeId, Client) {
    let leader = c.node(n(1)).unwrap().leader().unwrap();
    let behind = c
        .running()
        .iter()
        .map(|node| node.id())
        .find(|i| *i != leader)
        .unwrap();
    let admin = Client::new(&c.url_of(leader), &c.admin, c.ca_pem().as_bytes()).unwrap();
    c.stop_node(behind).await;
    (leader, behind, admin)
}

/// Register `3 * every` clients through `admin` (a checkpoint every
/// `every` entries) and wait until the leader purged its log past a
/// checkpoint.
pub async fn compact_past(c: &LocalCluster, leader: NodeId, admin: &Client, every: u64) {
    for i in 0..3 * every {
        new_client(admin, &format!("c{i}"), false, false, &[]).await;
    }
    let lead = c.node(leader).unwrap();
    poll(
        "the leader to purge its log past a checkpoint",
        Duration::from_secs(30),
        || async {
            let m = lead.raft().metrics().borrow().clone();
            m.purged.is_some_and(|p| p.index > every) && m.snapshot.is_some()
        },
    )
    .await;
}

/// A session request with every option at its default.
#[allow(dead_code, reason = "not every test binary makes sessions")]
pub fn he_session(name: &str) -> keyquorum_wire::he::CreateHeSessionRequest {
    keyquorum_wire::he::CreateHeSessionRequest {
        name: name.into(),
        threshold: None,
        members: None,
        slots: None,
        inputs: None,
        bound: None,
        op: None,
        weights: None,
        submitter_weights: None,
        submitters: None,
        one_per_client: false,
        readers: Vec::new(),
        min_inputs: None,
        measurements: None,
    }
}

/// Sign `count` messages at once through node `via` while its outgoing
/// peer messages are held for `hold` (its nonce pools filled first by four
/// signatures, so its calls to each signer queue up at once); each
/// signature checked, the entry node among its signers. Returns the
/// batches of peer messages `via` sent meanwhile and the messages in them.
pub async fn held_concurrent_signs(
    c: &LocalCluster,
    key: &KeyInfo,
    via: u16,
    count: u8,
    hold: Duration,
) -> (u64, u64) {
    use std::sync::atomic::Ordering;
    let client = Client::new(&c.url_of(n(via)), &c.admin, c.ca_pem().as_bytes()).unwrap();
    let node = c.node(n(via)).unwrap();
    for i in 0..4u8 {
        sign_and_check(&client, key, &[b'w', i]).await;
    }
    let sent = || {
        let m = node.metrics();
        (
            m.peer_batches.load(Ordering::Relaxed),
            m.peer_batched_messages.load(Ordering::Relaxed),
        )
    };
    let before = sent();
    node.net_faults().pause_for(hold);
    let messages: Vec<Vec<u8>> = (0..count).map(|i| vec![b'c', i]).collect();
    let signed =
        futures::future::join_all(messages.iter().map(|m| client.sign(&key.name, m))).await;
    for (m, s) in messages.iter().zip(signed) {
        let s = s.unwrap();
        check_sig(key, m, &s.signature.0);
        assert!(s.signers.contains(&n(via)), "the entry node signs first");
    }
    let after = sent();
    (after.0 - before.0, after.1 - before.1)
}
