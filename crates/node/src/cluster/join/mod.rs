//! Joining a running cluster without hand-copied keys (`keyquorum node
//! --join URL --join-code CODE`).
//!
//! 1. An operator or admin makes a *join code* (`keyquorum cluster
//!    join-code`): the [`fingerprint`] of the members as their own trusted
//!    connection shows them (ids, addresses, identity and HPKE keys,
//!    voters).
//! 2. The new node fetches `GET /v1/join` from any member, over TLS whose
//!    certificate it does not check (it knows no key yet), and keeps the
//!    list only if its fingerprint is the code's ([`verify_members`]): no
//!    impostor can make it trust other keys without the members' own. It
//!    writes the list to [`JOIN_FILE`]; the node trusts those members as
//!    bootstrap peers (for Raft traffic) until its log's membership record
//!    is in force.
//! 3. It asks every member to let it join (`POST /v1/join`), signing the
//!    request with its identity key ([`Node::join_request`]). A member keeps
//!    valid requests in memory (`Node::accept_join`); nothing reaches the
//!    log.
//! 4. Joining is the operator quorum's decision (DESIGN.md §4 item 4): an
//!    operator reads the request (`keyquorum operator join ID`), checks the
//!    identity against the one the new node printed, and proposes the
//!    `AddNode` change with exactly its keys; the quorum approves; the
//!    leader makes it a learner, then a voter (`membership`).
//!
//! A request is only a proposal's input: a member that forges or drops one
//! changes nothing the operators did not approve.
//!
//! What the code anchors, on the joining side:
//! - the cluster's *genesis* (its founders' identity keys, fixed at init,
//!   whose init needs every founder's signature): once the node's log puts
//!   its membership record in force, a history whose founders are not the
//!   code's stops the node ([`Node::check_joined`]), so one member feeding it
//!   a made-up cluster gets nowhere;
//! - the voters and the largest key threshold: until its record is in
//!   force, a snapshot is installed only if as many of those voters vouch
//!   for it as a member would ask of its own (`checkpoint`).
//!
//! Not covered: before its record is in force, the node takes Raft traffic
//! from the listed members as from any leader, and a lying one can feed it
//! entries the cluster never committed (each still passes every apply
//! check, as with a hostile leader) or keep it behind.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ed25519_dalek::{Signature, VerifyingKey};
use keyquorum_wire::api::{join_statement, JoinInfo, JoinMember, JoinRequest, JoinStatus};
use keyquorum_wire::{Hex, Hex32, NodeId};
use sha2::{Digest, Sha256};

use super::tls::Source;
use super::Node;

mod pending;
use crate::config::PeerEntry;
use crate::error::NodeError;
pub(crate) use pending::Pending;

/// The verified member list a joining node keeps in its data directory.
pub const JOIN_FILE: &str = "join.json";

/// How a join code starts (the format's version).
pub const CODE_PREFIX: &str = "kqjoin1-";

/// How far a request's time may be from the member's clock.
const FRESH_MS: u64 = 10 * 60 * 1000;

/// Longest address a request may name.
const MAX_ADDR: usize = 256;

/// The cluster's genesis: SHA-256 over a domain label and, by id, each
/// founder's id and identity key.
pub fn genesis(founders: &BTreeMap<NodeId, Hex32>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"keyquorum-genesis-v1\x00");
    h.update((founders.len() as u64).to_be_bytes());
    for (id, identity) in founders {
        h.update(id.get().to_be_bytes());
        h.update(identity.0);
    }
    h.finalize().into()
}

/// The fingerprint a join code carries: SHA-256 over a domain label, the
/// genesis, the largest threshold and, by id, each member's id, whether it
/// votes, its address (with its length) and its identity and HPKE keys.
pub fn fingerprint(info: &JoinInfo) -> [u8; 32] {
    let mut sorted: Vec<&JoinMember> = info.members.iter().collect();
    sorted.sort_by_key(|m| m.id);
    let mut h = Sha256::new();
    h.update(b"keyquorum-members-v1\x00");
    h.update(info.genesis.0);
    h.update(info.threshold.to_be_bytes());
    h.update((sorted.len() as u64).to_be_bytes());
    for m in sorted {
        h.update(m.id.get().to_be_bytes());
        h.update([u8::from(m.voter)]);
        h.update((m.info.addr.len() as u64).to_be_bytes());
        h.update(m.info.addr.as_bytes());
        h.update(m.info.identity.0);
        h.update(m.info.hpke.0);
    }
    h.finalize().into()
}

/// The join code for a fingerprint.
pub fn join_code(fingerprint: &[u8; 32]) -> String {
    format!("{CODE_PREFIX}{}", hex::encode(fingerprint))
}

/// The fingerprint a join code carries.
pub fn parse_join_code(code: &str) -> Result<[u8; 32], NodeError> {
    let bad = || {
        NodeError::BadRequest(format!(
            "a join code is {CODE_PREFIX} and 64 hex digits (`keyquorum cluster join-code`)"
        ))
    };
    let hex = code.trim().strip_prefix(CODE_PREFIX).ok_or_else(bad)?;
    let mut fp = [0u8; 32];
    hex::decode_to_slice(hex, &mut fp).map_err(|_| bad())?;
    Ok(fp)
}

/// The members of `info` as bootstrap peers, if their fingerprint is
/// `code`'s (and the list is well formed: distinct ids and identities, at
/// least one voter).
pub fn verify_members(info: &JoinInfo, code: &[u8; 32]) -> Result<Vec<PeerEntry>, NodeError> {
    if fingerprint(info) != *code {
        return Err(NodeError::Conflict(
            "the members this node lists are not the ones the join code was made for (another \
             cluster, or its members changed since): make a new join code"
                .into(),
        ));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut identities = std::collections::BTreeSet::new();
    for m in &info.members {
        if !ids.insert(m.id) || !identities.insert(m.info.identity) {
            return Err(NodeError::BadRequest(
                "the member list names a node or an identity twice".into(),
            ));
        }
    }
    if !info.members.iter().any(|m| m.voter) {
        return Err(NodeError::BadRequest("the member list has no voter".into()));
    }
    Ok(info
        .members
        .iter()
        .map(|m| PeerEntry {
            id: m.id,
            info: m.info.clone(),
        })
        .collect())
}

/// The verified member list kept in `data_dir` by an earlier join, if any.
pub fn read_join_file(data_dir: &Path) -> Result<Option<JoinInfo>, NodeError> {
    let path = data_dir.join(JOIN_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| NodeError::Internal(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NodeError::Internal(format!("{}: {e}", path.display()))),
    }
}

/// Keep a verified member list in `data_dir` (the node trusts it as
/// bootstrap peers at every start until its membership record is in
/// force), written whole and synced before it replaces the last one.
pub fn write_join_file(data_dir: &Path, info: &JoinInfo) -> Result<(), NodeError> {
    crate::config::create_private_dir(data_dir)
        .map_err(|e| NodeError::Internal(format!("data dir: {e}")))?;
    let bytes = serde_json::to_vec_pretty(info)
        .map_err(|e| NodeError::Internal(format!("join file: {e}")))?;
    let path = data_dir.join(JOIN_FILE);
    crate::config::write_private(&path, &bytes)
        .map_err(|e| NodeError::Internal(format!("{}: {e}", path.display())))
}

/// The member list a join left in `data_dir`, checked against its own
/// fingerprint (none if it holds no join file; one that does not check is
/// an error, not trusted).
pub(crate) fn joined(data_dir: &Path) -> Result<Option<JoinInfo>, NodeError> {
    match read_join_file(data_dir)? {
        Some(info) => {
            verify_members(&info, &info.fingerprint.0).map_err(|e| {
                NodeError::Internal(format!(
                    "{}: {e} (remove it to start without it)",
                    data_dir.join(JOIN_FILE).display()
                ))
            })?;
            Ok(Some(info))
        }
        None => Ok(None),
    }
}

/// Most bytes read of a member list or an error answer.
const MAX_BODY: usize = 1 << 20;

/// Read at most [`MAX_BODY`] bytes of `resp`.
async fn capped(mut resp: reqwest::Response) -> Result<Vec<u8>, NodeError> {
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(NodeError::BadRequest("the answer is too long".into()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| NodeError::Unavailable(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(NodeError::BadRequest("the answer is too long".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A client for the joining side's calls to members whose keys it does not
/// know yet: it does not check their certificates (what it reads is
/// checked against the join code; what it sends is public and signed).
fn unpinned_client() -> Result<reqwest::Client, NodeError> {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| NodeError::Internal(format!("http client: {e}")))
}

/// Fetch the members from `url` (any member) and keep them if they match
/// `code`: the joining side's first step.
pub async fn fetch_members(url: &str, code: &[u8; 32]) -> Result<JoinInfo, NodeError> {
    let url = format!("{}/v1/join", url.trim_end_matches('/'));
    let resp = unpinned_client()?
        .get(&url)
        .send()
        .await
        .map_err(|e| NodeError::Unavailable(format!("{url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(NodeError::Unavailable(format!(
            "{url} answered {}",
            resp.status()
        )));
    }
    let bytes = capped(resp).await?;
    let info: JoinInfo = serde_json::from_slice(&bytes)
        .map_err(|e| NodeError::BadRequest(format!("{url}: not a member list: {e}")))?;
    verify_members(&info, code)?;
    Ok(JoinInfo {
        fingerprint: Hex32(*code),
        ..info
    })
}

/// How far ahead of the member's clock a request's time may be.
const AHEAD_MS: u64 = 30_000;

/// Check a join request's shape: its time no more than [`FRESH_MS`] behind
/// `now_ms` or [`AHEAD_MS`] ahead, an `https://` address of printable
/// ASCII (it is shown to operators).
fn check_shape(req: &JoinRequest, now_ms: u64) -> Result<(), NodeError> {
    let bad = |what: &str| NodeError::BadRequest(format!("join request: {what}"));
    if req.info.addr.len() > MAX_ADDR {
        return Err(bad("the address is too long"));
    }
    if !req.info.addr.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("the address holds spaces or control characters"));
    }
    let url = reqwest::Url::parse(&req.info.addr).map_err(|_| bad("the address is not a URL"))?;
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err(bad("the address is not https://HOST[:PORT]"));
    }
    if req.created_ms > now_ms.saturating_add(AHEAD_MS) {
        return Err(bad("its time is ahead of this node's clock"));
    }
    if now_ms.saturating_sub(req.created_ms) > FRESH_MS {
        return Err(bad("it is more than 10 minutes old"));
    }
    Ok(())
}

/// Check a join request on its own: its shape (`check_shape`) and the
/// signature by the identity it names.
pub fn check_request(req: &JoinRequest, now_ms: u64) -> Result<(), NodeError> {
    check_shape(req, now_ms)?;
    let bad = |what: &str| NodeError::BadRequest(format!("join request: {what}"));
    let key = VerifyingKey::from_bytes(&req.info.identity.0)
        .map_err(|_| bad("the identity is not an Ed25519 public key"))?;
    let sig: [u8; 64] = req
        .signature
        .0
        .as_slice()
        .try_into()
        .map_err(|_| bad("the signature is not 64 bytes"))?;
    key.verify_strict(
        &join_statement(req.id, &req.info, &req.fingerprint, req.created_ms),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| bad("the signature is not the identity's"))
}

impl Node {
    /// The members as a joining node checks them, the cluster's genesis
    /// and largest threshold, and their fingerprint; refused before the
    /// cluster is initialised (it has no genesis yet).
    pub fn join_info(&self) -> Result<JoinInfo, NodeError> {
        let (in_force, founders, threshold) = self.registry(|r| {
            (
                r.roster.in_force && !r.clients.is_empty(),
                r.founders.clone(),
                u16::try_from(super::checkpoint::largest_threshold(r)).unwrap_or(u16::MAX),
            )
        });
        if !in_force || founders.is_empty() {
            return Err(NodeError::Conflict(
                "the cluster is not initialised yet (keyquorum init)".into(),
            ));
        }
        let members: Vec<JoinMember> = self
            .members()
            .into_iter()
            .map(|(id, info, voter)| JoinMember { id, info, voter })
            .collect();
        let mut info = JoinInfo {
            members,
            genesis: Hex32(genesis(&founders)),
            threshold,
            fingerprint: Hex32::default(),
        };
        info.fingerprint = Hex32(fingerprint(&info));
        Ok(info)
    }

    /// The member list this node joined under (`JOIN_FILE`), if any.
    pub(crate) fn joined(&self) -> Option<&JoinInfo> {
        self.0.joined.as_ref()
    }

    /// For a node that joined under a code, in one read of its registry:
    /// whether the membership record lists it (it has joined), refused if
    /// the history it was sent is not the code's cluster: one with clients
    /// but no membership record in force (an init under rules that make
    /// none), or whose founders are not the code's (a member that fed it a
    /// history of another cluster is found out here). Nodes that did not
    /// join with a code: whether they are members.
    pub fn check_joined(&self) -> Result<bool, NodeError> {
        let me = self.info();
        let (clients, in_force, founders, member) = self.registry(|r| {
            (
                !r.clients.is_empty(),
                r.roster.in_force,
                r.founders.clone(),
                r.roster.in_force && r.members.get(&self.0.id) == Some(&me),
            )
        });
        let Some(joined) = self.joined() else {
            return Ok(member);
        };
        let lied = |what: &str| {
            NodeError::Conflict(format!(
                "the log this node was sent is not the cluster its join code names ({what}): a \
                 member lied to it. Stop it, remove {JOIN_FILE} and its data, and join again"
            ))
        };
        if !in_force {
            return match clients {
                true => Err(lied("clients but no membership record")),
                false => Ok(false),
            };
        }
        if genesis(&founders) != joined.genesis.0 {
            return Err(lied("other founders"));
        }
        Ok(member)
    }

    /// This node's request to join the members fingerprinted `fingerprint`,
    /// signed by its identity key.
    pub fn join_request(&self, fingerprint: &[u8; 32]) -> JoinRequest {
        let info = self.info();
        let created_ms = super::peer::now_ms();
        let fingerprint = Hex32(*fingerprint);
        let statement = join_statement(self.id(), &info, &fingerprint, created_ms);
        JoinRequest {
            id: self.id(),
            signature: Hex(self.0.keys.sign(&statement).to_vec()),
            info,
            fingerprint,
            created_ms,
        }
    }

    /// Take a join request (`POST /v1/join`): kept in memory for the
    /// operators if it checks, is for these members, and names an id and
    /// an identity no member has.
    pub(crate) fn accept_join(
        &self,
        req: JoinRequest,
        source: Option<Source>,
    ) -> Result<JoinStatus, NodeError> {
        // The cheap checks first; the signature last.
        check_shape(&req, super::peer::now_ms())?;
        let (taken, identity_taken) = self.registry(|r| {
            (
                r.members.get(&req.id).cloned(),
                r.members
                    .iter()
                    .any(|(id, i)| *id != req.id && i.identity == req.info.identity),
            )
        });
        match taken {
            Some(info) if info == req.info => {
                return Ok(JoinStatus {
                    status: "member".into(),
                })
            }
            Some(_) => {
                return Err(NodeError::Conflict(format!(
                    "node id {} is a member's: choose another id in the config",
                    req.id
                )))
            }
            None => {}
        }
        if identity_taken {
            return Err(NodeError::Conflict(
                "another member has this identity key".into(),
            ));
        }
        if req.fingerprint != self.join_info()?.fingerprint {
            return Err(NodeError::Conflict(
                "the members changed since the join code was made: make a new one".into(),
            ));
        }
        check_request(&req, super::peer::now_ms())?;
        self.0.joins.insert(req, source)?;
        Ok(JoinStatus {
            status: "pending".into(),
        })
    }

    /// The join requests this node holds for nodes that are not members
    /// yet, by id.
    pub(crate) fn pending_joins(&self) -> Vec<JoinRequest> {
        let members = self.registry(|r| r.members.keys().copied().collect::<Vec<_>>());
        self.0.joins.held(&members)
    }
}

/// Started with a node that joined with a code: check the history it is
/// sent ([`Node::check_joined`]) every 100 ms until it is a member (and
/// once more then); if it is not the code's cluster, stop its Raft (it
/// takes part in nothing more, and `/healthz` says stopped) and say why.
pub(crate) async fn guard(node: Node) {
    if node.joined().is_none() {
        return;
    }
    loop {
        match node.check_joined() {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "stopping: the history this node was sent is not its join code's");
                let _ = node.raft().shutdown().await;
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The joining side, while the node runs: ask every member it joined
/// under to let it join, again every `every` (members keep requests in
/// memory only), until the membership record lists it; meanwhile check
/// the history it is sent ([`Node::check_joined`]) every 100 ms. Returns
/// once it is a member, or the refusal that must stop it.
pub async fn ask_until_member(node: Node, every: Duration) -> Result<(), NodeError> {
    let Some(joined) = node.joined().cloned() else {
        return Ok(());
    };
    let client = unpinned_client()?;
    let mut next = tokio::time::Instant::now();
    loop {
        if node.check_joined()? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= next {
            next += every;
            let req = node.join_request(&joined.fingerprint.0);
            for m in &joined.members {
                let url = format!("{}/v1/join", m.info.addr.trim_end_matches('/'));
                match client.post(&url).json(&req).send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        let status = r.status();
                        let body = capped(r).await.unwrap_or_default();
                        let body: String =
                            String::from_utf8_lossy(&body).chars().take(300).collect();
                        tracing::warn!(member = %m.id, %status, body = ?body, "join request refused");
                    }
                    Err(e) => tracing::debug!(member = %m.id, error = %e, "join request not sent"),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use keyquorum_wire::control::NodeInfo;

    fn member(id: u16, voter: bool) -> JoinMember {
        JoinMember {
            id: NodeId::new(id).unwrap(),
            info: NodeInfo {
                addr: format!("https://10.0.0.{id}:7001"),
                identity: Hex32([u8::try_from(id).unwrap(); 32]),
                hpke: Hex32([100 + u8::try_from(id).unwrap(); 32]),
            },
            voter,
        }
    }

    fn info(members: Vec<JoinMember>) -> JoinInfo {
        let mut i = JoinInfo {
            members,
            genesis: Hex32([9; 32]),
            threshold: 2,
            fingerprint: Hex32::default(),
        };
        i.fingerprint = Hex32(fingerprint(&i));
        i
    }

    #[test]
    fn the_fingerprint_covers_every_field_and_not_the_order() {
        let ms = vec![member(1, true), member(2, true), member(3, false)];
        let base = info(ms.clone());
        let fp = fingerprint(&base);
        let mut reversed = base.clone();
        reversed.members.reverse();
        assert_eq!(fingerprint(&reversed), fp);
        let changes: [fn(&mut JoinMember); 5] = [
            |m| m.voter = !m.voter,
            |m| m.info.addr.push('0'),
            |m| m.info.identity.0[31] ^= 1,
            |m| m.info.hpke.0[0] ^= 1,
            |m| m.id = NodeId::new(9).unwrap(),
        ];
        for change in changes {
            let mut other = base.clone();
            change(&mut other.members[1]);
            assert_ne!(fingerprint(&other), fp);
        }
        let mut fewer = base.clone();
        fewer.members.pop();
        assert_ne!(fingerprint(&fewer), fp);
        let mut other = base.clone();
        other.genesis.0[0] ^= 1;
        assert_ne!(fingerprint(&other), fp);
        let mut other = base.clone();
        other.threshold = 3;
        assert_ne!(fingerprint(&other), fp);
        // The genesis covers each founder's id and key.
        let founders: BTreeMap<NodeId, Hex32> = [(NodeId::new(1).unwrap(), Hex32([1; 32]))].into();
        let g = genesis(&founders);
        assert_ne!(
            genesis(&[(NodeId::new(2).unwrap(), Hex32([1; 32]))].into()),
            g
        );
        assert_ne!(
            genesis(&[(NodeId::new(1).unwrap(), Hex32([2; 32]))].into()),
            g
        );
        assert_ne!(genesis(&BTreeMap::new()), g);
    }

    #[test]
    fn members_are_trusted_only_under_their_code_and_well_formed() {
        let good = info(vec![member(1, true), member(2, false)]);
        let code = parse_join_code(&join_code(&good.fingerprint.0)).unwrap();
        assert_eq!(verify_members(&good, &code).unwrap().len(), 2);
        assert!(matches!(
            verify_members(&good, &[0; 32]),
            Err(NodeError::Conflict(_))
        ));
        // A list with a repeated identity or no voter: refused even when
        // the code is its own.
        let mut twice = good.members.clone();
        twice[1].info.identity = twice[0].info.identity;
        let twice = info(twice);
        assert!(verify_members(&twice, &twice.fingerprint.0).is_err());
        let learners = info(vec![member(1, false)]);
        assert!(verify_members(&learners, &learners.fingerprint.0).is_err());
        for bad in ["", "kqjoin1-", "kqjoin1-zz", "kqjoin2-00", &"0".repeat(64)] {
            assert!(parse_join_code(bad).is_err(), "{bad}");
        }
    }
}
