//! What authorizes each command in the log, checked by every replica on
//! apply (DESIGN.md §4 item 3): deterministically, from the entry and the
//! replicated state alone (never a wall clock), so a leader or a member that
//! forwards a write cannot make honest replicas apply what no one asked for.
//!
//! | command | authority | what apply checks besides the signature |
//! |---|---|---|
//! | `put_client` | client request `POST /v1/clients` | admin; the record is the body's |
//! | `put_client` | node statement | only while the registry has no client (the first admin of `keyquorum dev`) |
//! | `revoke_client` | client request `POST /v1/clients/{name}/revoke` | admin |
//! | `put_key`, new | client request `POST /v1/keys` | admin; name, suite, threshold, members as asked |
//! | `put_key`, next generation | client request `POST /v1/keys/{name}/refresh`, `/reshare`, `/repair` | admin; the same key; threshold and members as asked |
//! | `request_export` | client request `POST /v1/keys/{key}/exports` | admin; key, requester, recipient, the key's epoch and threshold |
//! | `approve_export` | client request `POST /v1/exports/{id}/approve` | operator; the approver is the signer |
//! | `complete_export` | client request `POST /v1/exports/{id}/run` | the requester |
//! | `put_endpoint`, `add_prekeys` | client request `POST /v1/msg/endpoints` | the owner is the signer; name, identity, prekeys as asked |
//! | `add_prekeys` | client request `POST /v1/msg/endpoints/{name}/prekeys` | owner or admin; the prekeys asked |
//! | `revoke_endpoint` | client request `DELETE /v1/msg/endpoints/{name}` | owner or admin |
//! | `claim_prekey` | client request `POST /v1/msg/endpoints/{name}/claim` | the claiming endpoint's owner; count as asked |
//! | `ack` | client request `POST /v1/msg/endpoints/{name}/inbox/ack` | owner or admin; the ids asked |
//! | `audit` | node statement | every event is the signing node's |
//! | `sign_head` | node statement | the head is the signer's and its signature verifies |
//! | `init_msg` | node statement | (first one wins) |
//! | `deliver` | node statement | (see the README's threat model: not yet bound to the sender's request) |
//!
//! A client request is verified as RFC 9421 against the client's key in
//! this replica's registry: live (not revoked, not expired) and fresh by the
//! log clock, addressed to a member's address, and each request authorizes
//! at most one command of each kind, once. A node statement is signed by a
//! current member's identity key, fresh by the log clock, and applied once.

use std::collections::{BTreeMap, BTreeSet};

use keyquorum_core::httpsig::{self, Policy};
use keyquorum_wire::api::{CreateClientRequest, CreateKeyRequest, ExportRequest, ReshareRequest};
use keyquorum_wire::control::{
    node_statement, Authority, Authorized, ClientRecord, ClusterCommand, Command, Grant,
    KeysCommand,
};
use keyquorum_wire::msg::{
    AckRequest, ClaimRequest, CreateEndpointRequest, MsgCommand, PublishPrekeys,
};
use keyquorum_wire::peer::ClientRequest;
use keyquorum_wire::NodeId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Registry;

/// How old a signature's `created` (or a node statement's time) may be, in
/// seconds.
pub const WINDOW_S: u64 = 300;
/// How far ahead of the clock `created` may be, in seconds.
pub const SKEW_S: u64 = 30;

/// The log clock (the largest leader stamp applied) and the signed
/// authorizations applied while they could still be fresh: each is kept
/// until the clock passes its window, so a leader that re-appends an old
/// command gets it refused as a replay or as stale.
#[derive(Debug, Clone, Default)]
pub struct LogClock {
    now_ms: u64,
    seen: BTreeMap<String, u64>,
    by_expiry: BTreeSet<(u64, String)>,
}

#[derive(Serialize, Deserialize)]
struct LogClockForm {
    now_ms: u64,
    seen: BTreeMap<String, u64>,
}

impl Serialize for LogClock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        LogClockForm {
            now_ms: self.now_ms,
            seen: self.seen.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for LogClock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = LogClockForm::deserialize(d)?;
        let by_expiry = f.seen.iter().map(|(k, t)| (*t, k.clone())).collect();
        Ok(LogClock {
            now_ms: f.now_ms,
            seen: f.seen,
            by_expiry,
        })
    }
}

impl LogClock {
    /// The log clock (ms since the Unix epoch).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// How many authorizations are remembered.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }

    /// Move the clock to `stamp` if that is later, and forget what can no
    /// longer be fresh.
    pub(crate) fn advance(&mut self, stamp: u64) {
        self.now_ms = self.now_ms.max(stamp);
        while let Some((until, _)) = self.by_expiry.first() {
            if *until >= self.now_ms {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.seen.remove(&key);
            }
        }
    }

    /// Whether `time_ms` is fresh by the clock.
    fn fresh(&self, time_ms: u64) -> Result<(), String> {
        if time_ms.saturating_add(WINDOW_S * 1000) < self.now_ms {
            return Err(format!(
                "stale: made at {time_ms} ms, the log clock is at {} ms",
                self.now_ms
            ));
        }
        if time_ms > self.now_ms.saturating_add(SKEW_S * 1000) {
            return Err(format!(
                "made at {time_ms} ms, ahead of the log clock ({} ms)",
                self.now_ms
            ));
        }
        Ok(())
    }

    /// Accept `key` once; it is remembered until the clock passes `until`.
    fn once(&mut self, key: String, until: u64) -> Result<(), String> {
        if self.seen.contains_key(&key) {
            return Err("replayed: this authorization was already used".into());
        }
        self.by_expiry.insert((until, key.clone()));
        self.seen.insert(key, until);
        Ok(())
    }
}

/// Who a checked command came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A client, with its grant.
    Client(Grant),
    /// A member node.
    Node(NodeId),
}

/// Check what authorizes `a` against `r` and, if it holds, use the
/// authorization up (it cannot authorize the same command again).
pub(crate) fn admit(r: &mut Registry, a: &Authorized) -> Result<Actor, String> {
    let (actor, key, until) = check(r, a)?;
    r.clock.once(key, until)?;
    Ok(actor)
}

/// [`admit`] without using the authorization up: what a leader checks
/// before it appends a forwarded command.
pub(crate) fn check(r: &Registry, a: &Authorized) -> Result<(Actor, String, u64), String> {
    match &a.by {
        Authority::Client { request } => {
            let (grant, v) = client_request(r, request)?;
            let path = path_of(&request.target_uri);
            asks_for(
                r,
                &grant,
                &request.method,
                &path,
                &request.body.0,
                &a.command,
            )?;
            let op = op_name(&a.command);
            let key = format!("client/{}/{}/{op}", v.keyid, v.nonce);
            let until = (v.created + WINDOW_S + SKEW_S).saturating_mul(1000);
            Ok((Actor::Client(grant), key, until))
        }
        Authority::Node {
            node,
            time_ms,
            nonce,
            signature,
        } => {
            let info = r
                .members
                .get(node)
                .ok_or_else(|| format!("node {node} is not a member"))?;
            let statement = node_statement(*node, *time_ms, &nonce.0, &a.command);
            if nonce.0.len() != 16
                || !crate::identity::verify(&info.identity, &statement, &signature.0)
            {
                return Err(format!("node {node}'s statement does not verify"));
            }
            r.clock.fresh(*time_ms)?;
            about_itself(r, *node, &a.command)?;
            let key = format!("node/{node}/{}", hex::encode(&nonce.0));
            let until = time_ms.saturating_add((WINDOW_S + SKEW_S) * 1000);
            Ok((Actor::Node(*node), key, until))
        }
    }
}

/// Verify a client's signed request against the registry and the log clock.
fn client_request(r: &Registry, req: &ClientRequest) -> Result<(Grant, httpsig::Verified), String> {
    let request = httpsig::Request {
        method: req.method.clone(),
        target_uri: req.target_uri.clone(),
        headers: req.headers.clone(),
        body: req.body.0.clone(),
    };
    let now = r.clock.now_ms();
    let policy = Policy {
        now: now / 1000,
        window: WINDOW_S,
        skew: SKEW_S,
    };
    let v = httpsig::verify(&request, &policy, |id| {
        r.clients
            .get(id)
            .and_then(|c| ed25519_dalek::VerifyingKey::from_bytes(&c.public_key.0).ok())
    })
    .map_err(|e| format!("client request: {e}"))?;
    let record = r
        .clients
        .get(&v.keyid)
        .ok_or_else(|| format!("no client {}", v.keyid))?;
    if record.revoked {
        return Err(format!("client {} is revoked", v.keyid));
    }
    if record.expires_ms.is_some_and(|t| t <= now) {
        return Err(format!("client {} has expired", v.keyid));
    }
    let asked = authority_of(&req.target_uri);
    if asked.is_none() || !r.members.values().any(|m| authority_of(&m.addr) == asked) {
        return Err(format!(
            "the request was signed for {}, which is not a member's address",
            asked.unwrap_or_default()
        ));
    }
    Ok((record.grant.clone(), v))
}

/// The authority of an absolute URI, lowercased.
pub(crate) fn authority_of(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest.get(..end).map(str::to_ascii_lowercase)
}

/// The path of an absolute URI (no query or fragment).
pub(crate) fn path_of(uri: &str) -> String {
    uri.split_once("://")
        .and_then(|(_, rest)| rest.find('/').and_then(|i| rest.get(i..)))
        .unwrap_or("/")
        .split(['?', '#'])
        .next()
        .unwrap_or("/")
        .to_string()
}

/// The command's `op` name.
fn op_name(c: &Command) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.get("op").and_then(|o| o.as_str().map(str::to_string)))
        .unwrap_or_default()
}

fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("the request's body does not parse: {e}"))
}

fn need(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the command is not what the request asks for: {what}"
        ))
    }
}

fn admin(grant: &Grant) -> Result<(), String> {
    need(grant.admin, "the client is not an admin")
}

/// The path's segments after `/`.
fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

/// Whether `command` is what a request `method path` with `body` from a
/// client with `grant` asks for.
fn asks_for(
    r: &Registry,
    grant: &Grant,
    method: &str,
    path: &str,
    body_bytes: &[u8],
    command: &Command,
) -> Result<(), String> {
    let seg = segments(path);
    let post = method.eq_ignore_ascii_case("POST");
    match command {
        Command::Cluster(ClusterCommand::PutClient { record }) => {
            need(post && seg == ["v1", "clients"], "POST /v1/clients")?;
            admin(grant)?;
            let b: CreateClientRequest = body(body_bytes)?;
            let want = ClientRecord {
                grant: Grant {
                    name: b.name,
                    admin: b.admin,
                    operator: b.operator,
                    sign_keys: b.sign_keys,
                },
                public_key: b.public_key,
                expires_ms: b.expires_ms,
                revoked: false,
            };
            need(*record == want, "the client record")
        }
        Command::Cluster(ClusterCommand::RevokeClient { name }) => {
            need(
                post && seg == ["v1", "clients", name.as_str(), "revoke"],
                "POST /v1/clients/{name}/revoke",
            )?;
            admin(grant)
        }
        Command::Cluster(ClusterCommand::Audit { .. } | ClusterCommand::SignHead { .. }) => {
            Err("only a node may state audit events and heads".into())
        }
        Command::Keys(KeysCommand::PutKey {
            record,
            expected_epoch,
        }) => {
            admin(grant)?;
            match (expected_epoch, seg.as_slice()) {
                (None, ["v1", "keys"]) if post => {
                    let b: CreateKeyRequest = body(body_bytes)?;
                    need(
                        record.members.iter().all(|m| r.members.contains_key(m)),
                        "every key member is a member node",
                    )?;
                    need(
                        b.name == record.name
                            && b.suite == record.suite
                            && b.threshold.is_none_or(|t| t == record.threshold)
                            && b.members.as_ref().is_none_or(|m| {
                                let (mut a, mut b) = (m.clone(), record.members.clone());
                                a.sort();
                                b.sort();
                                a == b
                            }),
                        "the key asked for",
                    )
                }
                (Some(_), ["v1", "keys", name, step]) if post && *name == record.name => {
                    let current = r
                        .keys
                        .records
                        .get(&record.name)
                        .ok_or_else(|| format!("no key {}", record.name))?;
                    match *step {
                        "refresh" | "repair" => need(
                            record.threshold == current.threshold
                                && record.members == current.members
                                && record.suite == current.suite,
                            "a refresh or repair keeps threshold and members",
                        ),
                        "reshare" => {
                            let b: ReshareRequest = body(body_bytes)?;
                            let (mut a, mut m) = (b.members.clone(), record.members.clone());
                            a.sort();
                            m.sort();
                            need(
                                b.threshold == record.threshold
                                    && a == m
                                    && record.suite == current.suite,
                                "the threshold and members asked for",
                            )
                        }
                        _ => need(false, "refresh, reshare or repair"),
                    }
                }
                _ => need(false, "POST /v1/keys or a key's refresh, reshare or repair"),
            }
        }
        Command::Keys(KeysCommand::RequestExport { record }) => {
            need(
                post && seg == ["v1", "keys", record.key.as_str(), "exports"],
                "POST /v1/keys/{key}/exports",
            )?;
            admin(grant)?;
            let b: ExportRequest = body(body_bytes)?;
            let key = r
                .keys
                .records
                .get(&record.key)
                .ok_or_else(|| format!("no key {}", record.key))?;
            need(
                record.recipient == b.recipient
                    && record.requested_by == grant.name
                    && record.approvals.is_empty()
                    && !record.done
                    && record.epoch == key.epoch
                    && record.needed == key.threshold,
                "the export asked for",
            )?;
            r.clock.fresh(record.created_ms)
        }
        Command::Keys(KeysCommand::ApproveExport { id, operator }) => {
            need(
                post && seg == ["v1", "exports", id.as_str(), "approve"],
                "POST /v1/exports/{id}/approve",
            )?;
            need(grant.operator, "the client is not an operator")?;
            need(*operator == grant.name, "the approver is the signer")
        }
        Command::Keys(KeysCommand::CompleteExport { id }) => {
            need(
                post && seg == ["v1", "exports", id.as_str(), "run"],
                "POST /v1/exports/{id}/run",
            )?;
            let export = r
                .keys
                .exports
                .get(id)
                .ok_or_else(|| format!("no export {id}"))?;
            need(
                export.requested_by == grant.name,
                "only the requester runs an export",
            )
        }
        Command::Msg(m) => msg_asks_for(r, grant, method, &seg, body_bytes, m),
    }
}

/// [`asks_for`] for messaging commands.
fn msg_asks_for(
    r: &Registry,
    grant: &Grant,
    method: &str,
    seg: &[&str],
    body_bytes: &[u8],
    command: &MsgCommand,
) -> Result<(), String> {
    let post = method.eq_ignore_ascii_case("POST");
    let owner_or_admin = |name: &str| {
        let owner = r.msg.endpoints.get(name).map(|e| e.owner.as_str());
        need(
            grant.admin || owner == Some(grant.name.as_str()),
            "the client does not own the endpoint",
        )
    };
    match command {
        MsgCommand::PutEndpoint { record } => {
            need(
                post && seg == ["v1", "msg", "endpoints"],
                "POST /v1/msg/endpoints",
            )?;
            let b: CreateEndpointRequest = body(body_bytes)?;
            need(
                record.name == b.name
                    && record.identity == b.identity
                    && record.owner == grant.name
                    && !record.revoked,
                "the endpoint asked for",
            )?;
            r.clock.fresh(record.created_ms)
        }
        MsgCommand::AddPrekeys { name, prekeys } => {
            if post && seg == ["v1", "msg", "endpoints"] {
                let b: CreateEndpointRequest = body(body_bytes)?;
                owner_or_admin(name)?;
                need(
                    b.name == *name && b.prekeys == *prekeys,
                    "the prekeys asked for",
                )
            } else {
                need(
                    post && seg == ["v1", "msg", "endpoints", name.as_str(), "prekeys"],
                    "POST /v1/msg/endpoints/{name}/prekeys",
                )?;
                owner_or_admin(name)?;
                let b: PublishPrekeys = body(body_bytes)?;
                need(b.prekeys == *prekeys, "the prekeys asked for")
            }
        }
        MsgCommand::RevokeEndpoint { name } => {
            need(
                method.eq_ignore_ascii_case("DELETE")
                    && seg == ["v1", "msg", "endpoints", name.as_str()],
                "DELETE /v1/msg/endpoints/{name}",
            )?;
            owner_or_admin(name)
        }
        MsgCommand::ClaimPrekey {
            name,
            by,
            count,
            time_ms,
        } => {
            need(
                post && seg == ["v1", "msg", "endpoints", name.as_str(), "claim"],
                "POST /v1/msg/endpoints/{name}/claim",
            )?;
            let b: ClaimRequest = body(body_bytes)?;
            need(b.by == *by && b.count == *count, "the claim asked for")?;
            owner_or_admin(by)?;
            r.clock.fresh(*time_ms)
        }
        MsgCommand::Ack { name, ids } => {
            need(
                post && seg == ["v1", "msg", "endpoints", name.as_str(), "inbox", "ack"],
                "POST /v1/msg/endpoints/{name}/inbox/ack",
            )?;
            owner_or_admin(name)?;
            let b: AckRequest = body(body_bytes)?;
            need(b.ids == *ids, "the ids asked for")
        }
        MsgCommand::InitMsg { .. } | MsgCommand::Deliver { .. } => {
            Err("only a node may state this".into())
        }
    }
}

/// Whether a node may state `command` (see the table in the module docs).
fn about_itself(r: &Registry, node: NodeId, command: &Command) -> Result<(), String> {
    match command {
        Command::Cluster(ClusterCommand::Audit { events }) => {
            if events.iter().all(|e| e.node == node) {
                Ok(())
            } else {
                Err(format!("node {node} may only report its own audit events"))
            }
        }
        Command::Cluster(ClusterCommand::SignHead { head }) => {
            let ok = head.signer == node
                && r.members.get(&node).is_some_and(|m| {
                    crate::identity::verify(
                        &m.identity,
                        &crate::cluster::audit::head_signing_bytes(head.seq, &head.hash),
                        &head.signature.0,
                    )
                });
            if ok {
                Ok(())
            } else {
                Err(format!("the head is not node {node}'s or does not verify"))
            }
        }
        Command::Cluster(ClusterCommand::PutClient { .. }) if r.clients.is_empty() => Ok(()),
        Command::Msg(MsgCommand::InitMsg { .. } | MsgCommand::Deliver { .. }) => Ok(()),
        other => Err(format!(
            "a node may not state {} on its own: it needs a client's request",
            op_name(other)
        )),
    }
}
