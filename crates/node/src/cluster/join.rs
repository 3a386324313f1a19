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
//!    valid requests in memory ([`Node::accept_join`]); nothing reaches the
//!    log.
//! 4. Joining is the operator quorum's decision (DESIGN.md §4 item 4): an
//!    operator reads the request (`keyquorum operator join ID`), checks the
//!    identity against the one the new node printed, and proposes the
//!    `AddNode` change with exactly its keys; the quorum approves; the
//!    leader makes it a learner, then a voter (`membership`).
//!
//! A request is only a proposal's input: a member that forges or drops one
//! changes nothing the operators did not approve.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ed25519_dalek::{Signature, VerifyingKey};
use keyquorum_wire::api::{join_statement, JoinInfo, JoinMember, JoinRequest, JoinStatus};
use keyquorum_wire::{Hex, Hex32, NodeId};
use sha2::{Digest, Sha256};

use super::Node;
use crate::config::PeerEntry;
use crate::error::NodeError;

/// The verified member list a joining node keeps in its data directory.
pub const JOIN_FILE: &str = "join.json";

/// How a join code starts (the format's version).
pub const CODE_PREFIX: &str = "kqjoin1-";

/// Join requests a member holds at once (the oldest go first).
const MAX_PENDING: usize = 64;

/// How far a request's time may be from the member's clock.
const FRESH_MS: u64 = 10 * 60 * 1000;

/// Longest address a request may name.
const MAX_ADDR: usize = 256;

/// The fingerprint of a member list: SHA-256 over a domain label and,
/// by id, each member's id, whether it votes, its address (with its
/// length) and its identity and HPKE keys.
pub fn fingerprint(members: &[JoinMember]) -> [u8; 32] {
    let mut sorted: Vec<&JoinMember> = members.iter().collect();
    sorted.sort_by_key(|m| m.id);
    let mut h = Sha256::new();
    h.update(b"keyquorum-members-v1\x00");
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
    if fingerprint(&info.members) != *code {
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
/// bootstrap peers at every start until its membership record is in force).
pub fn write_join_file(data_dir: &Path, info: &JoinInfo) -> Result<(), NodeError> {
    crate::config::create_private_dir(data_dir)
        .map_err(|e| NodeError::Internal(format!("data dir: {e}")))?;
    let bytes = serde_json::to_vec_pretty(info)
        .map_err(|e| NodeError::Internal(format!("join file: {e}")))?;
    let path = data_dir.join(JOIN_FILE);
    let tmp = data_dir.join(format!("{JOIN_FILE}.tmp"));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| NodeError::Internal(format!("{}: {e}", path.display())))
}

/// The bootstrap peers a join left in `data_dir` (none if it holds no
/// join file; a file that does not verify against its own fingerprint is
/// an error, not trusted).
pub(crate) fn joined_peers(data_dir: &Path) -> Result<Vec<PeerEntry>, NodeError> {
    match read_join_file(data_dir)? {
        Some(info) => verify_members(&info, &info.fingerprint.0),
        None => Ok(Vec::new()),
    }
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
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| NodeError::Unavailable(format!("{url}: {e}")))?;
    if bytes.len() > 1 << 20 {
        return Err(NodeError::BadRequest(format!(
            "{url}: the member list is too long"
        )));
    }
    let info: JoinInfo = serde_json::from_slice(&bytes)
        .map_err(|e| NodeError::BadRequest(format!("{url}: not a member list: {e}")))?;
    verify_members(&info, code)?;
    Ok(JoinInfo {
        fingerprint: Hex32(*code),
        ..info
    })
}

/// Check a join request on its own: the signature by the identity it
/// names, its time within [`FRESH_MS`] of `now_ms`, an `https://` address.
pub fn check_request(req: &JoinRequest, now_ms: u64) -> Result<(), NodeError> {
    let bad = |what: &str| NodeError::BadRequest(format!("join request: {what}"));
    if req.info.addr.len() > MAX_ADDR {
        return Err(bad("the address is too long"));
    }
    let url = reqwest::Url::parse(&req.info.addr).map_err(|_| bad("the address is not a URL"))?;
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err(bad("the address is not https://HOST[:PORT]"));
    }
    if now_ms.abs_diff(req.created_ms) > FRESH_MS {
        return Err(bad(
            "its time is more than 10 minutes from this node's clock",
        ));
    }
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

/// Join requests a member holds, keyed by (id, identity): a stranger
/// asking under a taken id cannot push out the real node's request.
#[derive(Default)]
pub(crate) struct Pending(std::sync::Mutex<BTreeMap<(NodeId, Hex32), JoinRequest>>);

impl Node {
    /// The members as a joining node checks them, and their fingerprint.
    pub fn join_info(&self) -> JoinInfo {
        let members: Vec<JoinMember> = self
            .members()
            .into_iter()
            .map(|(id, info, voter)| JoinMember { id, info, voter })
            .collect();
        let fingerprint = Hex32(fingerprint(&members));
        JoinInfo {
            members,
            fingerprint,
        }
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

    /// Whether the membership record lists this node (it has joined).
    pub fn is_member(&self) -> bool {
        let me = self.info();
        self.registry(|r| r.roster.in_force && r.members.get(&self.0.id) == Some(&me))
    }

    /// Take a join request (`POST /v1/join`): kept in memory for the
    /// operators if it checks, is for these members, and names an id and
    /// an identity no member has.
    pub(crate) fn accept_join(&self, req: JoinRequest) -> Result<JoinStatus, NodeError> {
        check_request(&req, super::peer::now_ms())?;
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
        if req.fingerprint.0 != fingerprint(&self.join_info().members) {
            return Err(NodeError::Conflict(
                "the members changed since the join code was made: make a new one".into(),
            ));
        }
        let mut pending = self
            .0
            .joins
            .0
            .lock()
            .map_err(|_| NodeError::Internal("join requests: lock poisoned".into()))?;
        let key = (req.id, req.info.identity);
        if pending
            .get(&key)
            .is_some_and(|old| old.created_ms > req.created_ms)
        {
            return Ok(JoinStatus {
                status: "pending".into(),
            });
        }
        pending.insert(key, req);
        while pending.len() > MAX_PENDING {
            let oldest = pending
                .iter()
                .min_by_key(|(_, r)| r.created_ms)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => pending.remove(&k),
                None => break,
            };
        }
        Ok(JoinStatus {
            status: "pending".into(),
        })
    }

    /// The join requests this node holds for nodes that are not members
    /// yet, by id.
    pub(crate) fn pending_joins(&self) -> Vec<JoinRequest> {
        let members = self.registry(|r| r.members.keys().copied().collect::<Vec<_>>());
        let Ok(mut pending) = self.0.joins.0.lock() else {
            return Vec::new();
        };
        pending.retain(|(id, _), _| !members.contains(id));
        pending.values().cloned().collect()
    }
}

/// The joining side, while the node runs: ask every member in `members`
/// to let this node join, again every `every` (members keep requests in
/// memory only), until the membership record lists it. Returns once it
/// does.
pub async fn ask_until_member(node: Node, members: Vec<JoinMember>, every: Duration) {
    let Ok(client) = unpinned_client() else {
        return;
    };
    let fp = fingerprint(&members);
    loop {
        if node.is_member() {
            return;
        }
        let req = node.join_request(&fp);
        for m in &members {
            let url = format!("{}/v1/join", m.info.addr.trim_end_matches('/'));
            match client.post(&url).json(&req).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    tracing::warn!(member = %m.id, %status, %body, "join request refused");
                }
                Err(e) => tracing::debug!(member = %m.id, error = %e, "join request not sent"),
            }
        }
        tokio::time::sleep(every).await;
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

    #[test]
    fn the_fingerprint_covers_every_field_and_not_the_order() {
        let ms = vec![member(1, true), member(2, true), member(3, false)];
        let fp = fingerprint(&ms);
        let mut reversed = ms.clone();
        reversed.reverse();
        assert_eq!(fingerprint(&reversed), fp);
        let changes: [fn(&mut JoinMember); 5] = [
            |m| m.voter = !m.voter,
            |m| m.info.addr.push('0'),
            |m| m.info.identity.0[31] ^= 1,
            |m| m.info.hpke.0[0] ^= 1,
            |m| m.id = NodeId::new(9).unwrap(),
        ];
        for change in changes {
            let mut other = ms.clone();
            change(&mut other[1]);
            assert_ne!(fingerprint(&other), fp);
        }
        assert_ne!(fingerprint(&ms[..2]), fp);
    }

    #[test]
    fn members_are_trusted_only_under_their_code_and_well_formed() {
        let ms = vec![member(1, true), member(2, false)];
        let info = JoinInfo {
            fingerprint: Hex32(fingerprint(&ms)),
            members: ms.clone(),
        };
        let code = parse_join_code(&join_code(&info.fingerprint.0)).unwrap();
        assert_eq!(verify_members(&info, &code).unwrap().len(), 2);
        assert!(matches!(
            verify_members(&info, &[0; 32]),
            Err(NodeError::Conflict(_))
        ));
        // A list with a repeated identity or no voter: refused even when
        // the code is its own.
        let mut twice = ms.clone();
        twice[1].info.identity = twice[0].info.identity;
        let twice = JoinInfo {
            fingerprint: Hex32(fingerprint(&twice)),
            members: twice,
        };
        assert!(verify_members(&twice, &twice.fingerprint.0).is_err());
        let learners = vec![member(1, false)];
        let learners = JoinInfo {
            fingerprint: Hex32(fingerprint(&learners)),
            members: learners,
        };
        assert!(verify_members(&learners, &learners.fingerprint.0).is_err());
        for bad in ["", "kqjoin1-", "kqjoin1-zz", "kqjoin2-00", &"0".repeat(64)] {
            assert!(parse_join_code(bad).is_err(), "{bad}");
        }
    }
}
