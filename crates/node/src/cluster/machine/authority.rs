//! What authorizes each command in the log, checked by every replica on
//! apply (DESIGN.md §4 item 3): deterministically, from the entry and the
//! replicated state alone (never a wall clock), so a leader or a member that
//! forwards a write cannot make honest replicas apply what no one asked for.
//!
//! | command | authority | what apply checks besides the signature |
//! |---|---|---|
//! | `put_client` | client request `POST /v1/clients` | admin; the record is the body's; not an operator |
//! | `revoke_client` | client request `POST /v1/clients/{name}/revoke` | admin (an operator is removed only by an approved change) |
//! | `init` | every voting member's statement | only while the registry has no client (each member signs only for a caller holding its init secret: `cluster::init`) |
//! | `propose_change` | client request `POST /v1/changes` | admin or operator; the change (to the operators or the membership record) is the body's; needs the current operator quorum's approvals |
//! | `approve_change` | client request `POST /v1/approvals/{id}` | operator; the approver is the signer; from rules 14 the body names the change and its proposer, as under that id |
//! | `put_key`, new | client request `POST /v1/keys` | admin; name, suite, threshold, members as asked (unstated members: every voter; unstated threshold: the cluster's default, `Registry::default_threshold`); endorsed by ≥ t members |
//! | `put_key`, next generation | client request `POST /v1/keys/{name}/refresh`, `/reshare` | admin; the same key, public key and next epoch; threshold and members as asked (changed: as the operator quorum approved, used up); endorsed by ≥ t new members |
//! | `request_export` | client request `POST /v1/keys/{key}/exports` | admin; key, requester, recipient, the key's epoch; needs the operator quorum's approvals; a well-formed id |
//! | `approve_export` | client request `POST /v1/exports/{id}/approve` or `POST /v1/approvals/{id}` | operator; the approver is the signer; from rules 14 the body names the key, epoch, requester and recipient, as under that id |
//! | `complete_export` | client request `POST /v1/exports/{id}/run` | the requester |
//! | `put_endpoint`, `add_prekeys` | client request `POST /v1/msg/endpoints` | the owner is the signer; name, identity, prekeys as asked |
//! | `add_prekeys` | client request `POST /v1/msg/endpoints/{name}/prekeys` | owner or admin; the prekeys asked |
//! | `revoke_endpoint` | client request `DELETE /v1/msg/endpoints/{name}` | owner or admin |
//! | `claim_prekey` | client request `POST /v1/msg/endpoints/{name}/claim` | the claiming endpoint's owner or an admin; count as asked |
//! | `ack` | client request `POST /v1/msg/endpoints/{name}/inbox/ack` | owner or admin; the ids asked |
//! | `audit` | node statement | every event is the signing node's |
//! | `sign_head` | node statement | the head is the signer's and its signature verifies |
//! | `tick` | node statement | (its time attests the node's clock) |
//! | `boot` | node statement | (the node's latest boot id: its signing nonces are bound to it) |
//! | `init_msg` | node statement | a window of 1 s to 1 day (first one wins) |
//! | `deliver` | node statement | the message's time fresh by the log clock; the sending endpoint signed its header and payload, for this receiver, identifier, prekey and time |
//! | `st_create` | client request `POST /v1/seedtrees` | admin; see `crate::seedtree::authority` |
//! | `st_reserve` | node statement | 1 to 1024 leaves, for the stating node |
//! | `account_create` | client request `POST /v1/recovery/accounts` | the `recovery` permission or admin; see `crate::recovery::authority` |
//!
//! A client request is verified as RFC 9421 against the client's key in
//! this replica's registry: live (not revoked, not expired) and fresh by the
//! log clock, addressed to a member's address, and each request authorizes
//! at most one command of each kind, once. A node statement is signed by a
//! current member's identity key, fresh by the log clock, and applied once.
//! A key generation is also endorsed by at least its threshold of its
//! members (each signed `key_statement` over the group key it computed).
//!
//! The log clock is attested by the members
//! ([`LogClock`](super::clock::LogClock)), never set by the leader alone.

use std::collections::BTreeSet;

use keyquorum_core::httpsig::{self, Policy};
use keyquorum_wire::api::{
    ApprovalRequest, ChangeRequest, CreateClientRequest, CreateKeyRequest, ExportRequest,
    ReshareRequest,
};
use keyquorum_wire::control::{
    members_statement, node_statement, Authority, Authorized, ClientRecord, ClusterCommand,
    Command, Grant, KeysCommand,
};
use keyquorum_wire::msg::MsgCommand;
use keyquorum_wire::peer::ClientRequest;
use keyquorum_wire::NodeId;

use super::request::{admin, body, distinct, endorsed, need, segments};
use super::Registry;

pub use super::clock::{SKEW_S, WINDOW_S};

/// Who a checked command came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A client, with its grant.
    Client(Grant),
    /// A member node.
    Node(NodeId),
    /// Every voting member together.
    Members,
}

/// Who a command's authority names, its signature verified.
enum Signer {
    Client(httpsig::Verified, ClientRequest),
    Node(NodeId),
    Members,
}

/// Whether `a` is a boot statement on the state restored with the id it
/// names ([`super::clock::RestoreFloor`]).
fn restarted(r: &Registry, a: &Authorized) -> bool {
    matches!(
        &a.command,
        Command::Cluster(ClusterCommand::Boot { restored: Some(id), .. })
            if r.clock.restore_id() == Some(*id)
    )
}

/// Check what authorizes `a` and, if it holds, use the authorization up
/// (it cannot authorize the same command again); an admitted node
/// statement attests its signer's clock ([`LogClock`](super::clock::LogClock)). A refused command
/// changes nothing.
pub(crate) fn admit(r: &mut Registry, a: &Authorized) -> Result<Actor, String> {
    let (signer, made_ms, key) = authenticate(r, a)?;
    let restart = restarted(r, a);
    match signer {
        // A client's time is judged, never trusted.
        Signer::Client(..) => r.clock.fresh(made_ms)?,
        // A member's time may run ahead of the attested clock (that is
        // how the clock moves); it may not be old, nor from before a
        // restore, except its boot on the restored state.
        Signer::Node(_) | Signer::Members => {
            r.clock.not_stale(made_ms)?;
            if !restart {
                r.clock.after_restore(made_ms)?;
            }
        }
    }
    let actor = match signer {
        Signer::Client(v, request) => {
            let grant = live(r, &v.keyid)?;
            let path = path_of(&request.target_uri);
            asks_for(
                r,
                &grant,
                &v,
                &request.method,
                &path,
                &request.body.0,
                &a.command,
            )?;
            Actor::Client(grant)
        }
        Signer::Node(node) => {
            about_itself(r, node, &a.command)?;
            Actor::Node(node)
        }
        Signer::Members => {
            need(
                matches!(a.command, Command::Cluster(ClusterCommand::Init { .. }))
                    && r.clients.is_empty(),
                "the members together only initialise a new cluster",
            )?;
            Actor::Members
        }
    };
    let until = made_ms.saturating_add((WINDOW_S + SKEW_S) * 1000);
    r.clock.once(key, until)?;
    match &actor {
        Actor::Node(node) => {
            if restart {
                r.clock.booted_after_restore(*node, made_ms, &r.voters);
            }
            r.clock.attest(*node, made_ms, &r.voters);
        }
        Actor::Members => {
            for v in &r.voters {
                r.clock.attest(*v, made_ms, &r.voters);
            }
        }
        Actor::Client(_) => {}
    }
    Ok(actor)
}

/// Verify the signature of what authorizes `a`; return who signed, the
/// time they state (ms) and the key under which it is used once.
fn authenticate(r: &Registry, a: &Authorized) -> Result<(Signer, u64, String), String> {
    match &a.by {
        Authority::Client { request } => {
            let v = client_signature(r, request)?;
            // One request approves one thing: an export's and a change's
            // approvals share a once-key.
            let op = match op_name(&a.command).as_str() {
                "approve_export" | "approve_change" => "approve".to_string(),
                other => other.to_string(),
            };
            let key = format!("client/{}/{}/{op}", v.keyid, v.nonce);
            let made = v.created.saturating_mul(1000);
            Ok((Signer::Client(v, request.clone()), made, key))
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
            let key = format!("node/{node}/{}", hex::encode(&nonce.0));
            Ok((Signer::Node(*node), *time_ms, key))
        }
        Authority::Members {
            time_ms,
            nonce,
            signatures,
        } => {
            // Every voter now and every voter the cluster had before it was
            // initialised (a leader that removed voters cannot sign alone),
            // each by the identity it had then.
            let statement = members_statement(*time_ms, &nonce.0, &a.command);
            let identity = |n: &NodeId| {
                r.founders
                    .get(n)
                    .or_else(|| r.members.get(n).map(|m| &m.identity))
            };
            let signed: BTreeSet<NodeId> = signatures
                .iter()
                .filter(|e| {
                    identity(&e.node)
                        .is_some_and(|k| crate::identity::verify(k, &statement, &e.signature.0))
                })
                .map(|e| e.node)
                .collect();
            let needed: BTreeSet<NodeId> =
                r.voters.iter().chain(r.founders.keys()).copied().collect();
            if nonce.0.len() != 16 || needed.is_empty() || !needed.is_subset(&signed) {
                return Err(format!(
                    "a members' statement needs every voting and founding member's signature \
                     ({} of {})",
                    needed.intersection(&signed).count(),
                    needed.len()
                ));
            }
            let key = format!("members/{}", hex::encode(&nonce.0));
            Ok((Signer::Members, *time_ms, key))
        }
    }
}

/// Verify a client's signed request against the client's key in the
/// registry (its freshness is the caller's to judge, against the clock).
fn client_signature(r: &Registry, req: &ClientRequest) -> Result<httpsig::Verified, String> {
    let request = signed_request(req);
    // Any time passes here; `admit` checks it against the log clock.
    let open = Policy {
        now: 0,
        window: u64::MAX,
        skew: u64::MAX,
    };
    let v = httpsig::verify(&request, &open, |id| {
        r.clients
            .get(id)
            .and_then(|c| ed25519_dalek::VerifyingKey::from_bytes(&c.public_key.0).ok())
    })
    .map_err(|e| format!("client request: {e}"))?;
    let asked = authority_of(&req.target_uri);
    if asked.is_none() || !r.members.values().any(|m| authority_of(&m.addr) == asked) {
        return Err(format!(
            "the request was signed for {}, which is not a member's address",
            asked.unwrap_or_default()
        ));
    }
    Ok(v)
}

/// A forwarded request in the form `httpsig` verifies.
pub(crate) fn signed_request(req: &ClientRequest) -> httpsig::Request {
    httpsig::Request {
        method: req.method.clone(),
        target_uri: req.target_uri.clone(),
        headers: req.headers.clone(),
        body: req.body.0.clone(),
    }
}

/// The grant of client `name` if it is live by the log clock.
fn live(r: &Registry, name: &str) -> Result<Grant, String> {
    let record = r
        .clients
        .get(name)
        .ok_or_else(|| format!("no client {name}"))?;
    if record.revoked {
        return Err(format!("client {name} is revoked"));
    }
    if record.expires_ms.is_some_and(|t| t <= r.clock.now_ms()) {
        return Err(format!("client {name} has expired"));
    }
    Ok(record.grant.clone())
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

/// The key record named `name`.
fn key_record<'a>(
    r: &'a Registry,
    name: &str,
) -> Result<&'a keyquorum_wire::control::KeyRecord, String> {
    r.keys
        .records
        .get(name)
        .ok_or_else(|| format!("no key {name}"))
}

/// Whether a new key's first generation `record` has the members and
/// threshold a client asked for: unstated members are every voter; an
/// unstated threshold is the cluster's default for that many members
/// (replicated: not the entry node's choice); fewer members than asked
/// only with the client's consent (`min_members`).
fn shape_asked(
    r: &Registry,
    record: &keyquorum_wire::control::KeyRecord,
    members: Option<&[NodeId]>,
    threshold: Option<u16>,
    min_members: Option<u16>,
) -> bool {
    let got = distinct(&record.members);
    let asked: Vec<NodeId> = match members {
        Some(m) => distinct(m),
        None => r.candidates(),
    };
    // (Rules 1: any valid threshold passed.)
    let threshold = threshold.unwrap_or_else(|| {
        if r.rules >= 2 {
            r.default_threshold(asked.len())
        } else {
            record.threshold
        }
    });
    let members_ok = asked == got
        || min_members.is_some_and(|floor| {
            got.len() >= usize::from(floor) && got.iter().all(|m| asked.contains(m))
        });
    record.epoch == 1 && threshold == record.threshold && members_ok
}

/// An id made of 16 random bytes: 32 lowercase hex digits.
fn well_formed_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// From apply rules 14, an approval's body names what the operator read
/// and approves; it must be what this replica holds under the id
/// (`held`). Before, the id alone was approved (a node could show an
/// operator another request's content under that id).
///
/// Checked as soon as the log may take up rules 14
/// ([`Registry::approvals_bound`]: replicated state, so every replica
/// decides alike), not only once an entry is stamped 14.
fn approves(
    r: &Registry,
    body_bytes: &[u8],
    held: impl FnOnce() -> Option<ApprovalRequest>,
) -> Result<(), String> {
    if !r.approvals_bound() {
        return Ok(());
    }
    let asked: ApprovalRequest = body(body_bytes)?;
    // (Nothing under the id: the approval approves nothing, and apply says
    // so.)
    need(
        held().is_none_or(|h| h == asked),
        "the approval names what is held under its id (the same change and proposer, or the \
         same key, epoch, requester and recipient)",
    )
}

/// Whether `command` is what a request `method path` with `body` from a
/// client with `grant` asks for.
fn asks_for(
    r: &Registry,
    grant: &Grant,
    v: &httpsig::Verified,
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
                    recovery: b.recovery,
                },
                public_key: b.public_key,
                expires_ms: b.expires_ms,
                revoked: false,
            };
            need(*record == want, "the client record")?;
            // Before rules 9 a body naming `recovery` at all is refused,
            // as older members (whose request type has no such field and
            // denies unknown ones) refuse it: every replica alike.
            need(
                r.rules >= crate::recovery::state::ACCOUNT_RULES
                    || serde_json::from_slice::<serde_json::Value>(body_bytes)
                        .ok()
                        .is_some_and(|v| v.get("recovery").is_none()),
                "no recovery permission before apply rules 9",
            )?;
            need(
                !record.grant.operator,
                "an admin cannot make an operator: operators are enrolled by `keyquorum init` \
                 or by a change the operator quorum approves",
            )
        }
        Command::Cluster(ClusterCommand::RevokeClient { name }) => {
            need(
                post && seg == ["v1", "clients", name.as_str(), "revoke"],
                "POST /v1/clients/{name}/revoke",
            )?;
            admin(grant)
        }
        Command::Cluster(
            ClusterCommand::Audit { .. }
            | ClusterCommand::SignHead { .. }
            | ClusterCommand::Tick {}
            | ClusterCommand::Boot { .. },
        ) => Err("only a node may state audit events, heads, ticks and boots".into()),
        Command::Cluster(ClusterCommand::Init { .. }) => {
            Err("only the voting members together initialise a cluster".into())
        }
        Command::Cluster(ClusterCommand::ProposeChange { record }) => {
            need(post && seg == ["v1", "changes"], "POST /v1/changes")?;
            need(
                grant.admin || grant.operator,
                "the client is neither admin nor operator",
            )?;
            let b: ChangeRequest = body(body_bytes)?;
            need(
                well_formed_id(&record.id)
                    && record.change == b.change
                    && record.requested_by == grant.name
                    && record.approvals.is_empty()
                    && !record.done
                    && record.needed >= 1
                    && record.needed == r.operators.quorum,
                "the change asked for, needing the operator quorum's approvals",
            )?;
            need(
                !r.keys.exports.contains_key(&record.id),
                "a change's id is not an export's",
            )?;
            r.clock.fresh(record.created_ms)
        }
        Command::Cluster(ClusterCommand::ApproveChange { id, operator }) => {
            need(
                post && seg == ["v1", "approvals", id.as_str()],
                "POST /v1/approvals/{id}",
            )?;
            need(grant.operator, "the client is not an operator")?;
            need(*operator == grant.name, "the approver is the signer")?;
            approves(r, body_bytes, || {
                r.operators.changes.get(id).map(ApprovalRequest::of_change)
            })
        }
        Command::Keys(KeysCommand::PutKey {
            record,
            expected_epoch,
            endorsements,
        }) => {
            admin(grant)?;
            endorsed(r, record, endorsements)?;
            let members = distinct(&record.members);
            need(
                members.len() == record.members.len()
                    && record.threshold >= 2
                    && usize::from(record.threshold) <= members.len()
                    && members.iter().all(|m| r.members.contains_key(m)),
                "2 <= threshold <= members, distinct member nodes",
            )?;
            match (expected_epoch, seg.as_slice()) {
                (None, ["v1", "keys"]) if post => {
                    let b: CreateKeyRequest = body(body_bytes)?;
                    need(
                        b.name == record.name
                            && b.suite == record.suite
                            && shape_asked(
                                r,
                                record,
                                b.members.as_deref(),
                                b.threshold,
                                b.min_members,
                            ),
                        "the key asked for",
                    )?;
                    // (Rules 6 on: the `he.` names and the ristretto255
                    // suite are the sessions'.)
                    // (Ristretto255 at any rules: no build before rules 6
                    // could decode it. The `he.` names from rules 6, the
                    // `oprf.` names from rules 8.)
                    need(
                        record.suite != keyquorum_wire::api::SuiteName::Ristretto255
                            && (r.rules < crate::he::state::HE_RULES
                                || !record.name.starts_with(keyquorum_wire::he::KEY_PREFIX))
                            && (r.rules < crate::recovery::state::OPRF_RULES
                                || !record.name.starts_with(keyquorum_wire::oprf::KEY_PREFIX))
                            && !crate::recovery::authority::reset_key(r, &record.name),
                        "a signing key (he.* names and ristretto255 are for encrypted-data \
                         sessions, oprf.* names for OPRF keys, reset.* names for accounts)",
                    )
                }
                (None, ["v1", "oprf", "keys"]) if post => {
                    need(
                        r.rules >= crate::recovery::state::OPRF_RULES,
                        "OPRF keys (apply rules 8)",
                    )?;
                    let b: keyquorum_wire::oprf::CreateOprfKeyRequest = body(body_bytes)?;
                    need(
                        keyquorum_wire::oprf::key_name(&b.name) == record.name
                            && b.name != "keys"
                            && record.suite == keyquorum_wire::api::SuiteName::Ristretto255
                            && shape_asked(r, record, b.members.as_deref(), b.threshold, None),
                        "the OPRF key asked for",
                    )
                }
                (Some(_), ["v1", "keys", name, step]) if post && *name == record.name => {
                    let current = key_record(r, &record.name)?;
                    need(
                        record.public_key == current.public_key
                            && record.suite == current.suite
                            && Some(current.epoch) == *expected_epoch
                            && record.epoch == current.epoch + 1,
                        "a next generation keeps the key's public key and follows its epoch",
                    )?;
                    match *step {
                        "refresh" => need(
                            record.threshold == current.threshold
                                && record.members == current.members,
                            "a refresh keeps threshold and members",
                        ),
                        "reshare" => {
                            // (Rules 9 on: an account's guardians move
                            // with the account, not under it.)
                            need(
                                !crate::recovery::authority::reset_key(r, &record.name),
                                "a reshare of a key that is not an account's reset key",
                            )?;
                            let b: ReshareRequest = body(body_bytes)?;
                            need(
                                b.threshold == record.threshold && distinct(&b.members) == members,
                                "the threshold and members asked for",
                            )?;
                            // (Rules 1: none needed.)
                            need(
                                r.rules < 2
                                    || r.policy_allows(&record.name, record.threshold, &members),
                                "a new threshold or member set the operator quorum approved",
                            )?;
                            // A session's key goes only to members whose
                            // measurement the session allows.
                            let session = record
                                .name
                                .strip_prefix(keyquorum_wire::he::KEY_PREFIX)
                                .and_then(|s| r.he.sessions.get(s));
                            let bad = session.map_or_else(Vec::new, |s| {
                                crate::he::state::unattested(&s.record, &members, &r.attested)
                            });
                            need(
                                bad.is_empty(),
                                &format!(
                                    "members whose measurement the session allows ({bad:?} do not)"
                                ),
                            )
                        }
                        _ => need(false, "refresh or reshare"),
                    }
                }
                _ => need(false, "POST /v1/keys or a key's refresh or reshare"),
            }
        }
        Command::Keys(KeysCommand::RequestExport { record }) => {
            need(
                post && seg == ["v1", "keys", record.key.as_str(), "exports"],
                "POST /v1/keys/{key}/exports",
            )?;
            admin(grant)?;
            let b: ExportRequest = body(body_bytes)?;
            need(
                well_formed_id(&record.id),
                "an export id is 16 random bytes in lowercase hex",
            )?;
            let key = key_record(r, &record.key)?;
            // (Rules 9 on: an account's reset key would sign any token.)
            need(
                !crate::recovery::authority::reset_key(r, &record.key),
                "an export of a key that is not an account's reset key",
            )?;
            // (Rules 6 on: a session's key would decrypt every input.)
            need(
                r.rules < crate::he::state::HE_RULES
                    || key.suite != keyquorum_wire::api::SuiteName::Ristretto255,
                "a signing key's export (an encrypted-data session's key is never exported)",
            )?;
            need(
                record.recipient == b.recipient
                    && record.requested_by == grant.name
                    && record.approvals.is_empty()
                    && !record.done
                    && record.epoch == key.epoch
                    && record.needed >= 1
                    && record.needed == r.operators.quorum,
                "the export asked for, needing the operator quorum's approvals",
            )?;
            need(
                !r.operators.changes.contains_key(&record.id),
                "an export's id is not a change's",
            )?;
            r.clock.fresh(record.created_ms)
        }
        Command::Keys(KeysCommand::ApproveExport { id, operator }) => {
            need(
                post && (seg == ["v1", "exports", id.as_str(), "approve"]
                    || seg == ["v1", "approvals", id.as_str()]),
                "POST /v1/exports/{id}/approve or /v1/approvals/{id}",
            )?;
            need(grant.operator, "the client is not an operator")?;
            need(*operator == grant.name, "the approver is the signer")?;
            approves(r, body_bytes, || {
                r.keys.exports.get(id).map(ApprovalRequest::of_export)
            })
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
            )?;
            // Approvals by operators removed since do not count.
            let live = r.live_operators();
            let approvals = export
                .approvals
                .iter()
                .filter(|a| live.contains(*a))
                .count();
            need(
                approvals >= usize::from(export.needed.max(r.operators.quorum)),
                "the operator quorum (as it is now, if it was raised) approved the export",
            )
        }
        Command::Msg(m) => crate::msg::authority::asks_for(r, grant, method, &seg, body_bytes, m),
        Command::He(h) => crate::he::authority::asks_for(r, grant, post, &seg, body_bytes, h),
        Command::Seedtree(c) => {
            crate::seedtree::authority::asks_for(r, grant, post, &seg, body_bytes, c)
        }
        Command::Recovery(c) => {
            crate::recovery::authority::asks_for(r, grant, v, post, &seg, body_bytes, c)
        }
    }
}

/// Whether a node may state `command` (see the table in the module docs).
fn about_itself(r: &Registry, node: NodeId, command: &Command) -> Result<(), String> {
    match command {
        Command::Cluster(ClusterCommand::Audit { events }) => {
            use crate::cluster::audit::log::{AUDIT_RULES, MAX_EVENTS, MAX_FIELD};
            if !events.iter().all(|e| e.node == node) {
                return Err(format!("node {node} may only report its own audit events"));
            }
            let oversized = |e: &keyquorum_wire::control::AuditEvent| {
                [&e.actor, &e.action, &e.outcome]
                    .into_iter()
                    .chain(e.target.as_ref())
                    .any(|f| f.len() > MAX_FIELD)
            };
            if r.rules >= AUDIT_RULES
                && (events.is_empty() || events.len() > MAX_EVENTS || events.iter().any(oversized))
            {
                return Err(format!(
                    "an audit statement holds 1 to {MAX_EVENTS} events, each field at most \
                     {MAX_FIELD} bytes"
                ));
            }
            Ok(())
        }
        Command::Cluster(ClusterCommand::SignHead { head }) => {
            // Rules 5: a member at the head's entry, with the key it had
            // then (what the verification asks of every head).
            let then = r.rules < crate::cluster::audit::log::AUDIT_RULES
                || r.members.get(&node).map(|m| m.identity) == r.head_signer(node, head.seq);
            let ok = then
                && head.signer == node
                && r.members.get(&node).is_some_and(|m| {
                    crate::identity::verify(
                        &m.identity,
                        &crate::cluster::audit::head_signing_bytes(
                            head.seq,
                            &head.hash,
                            head.root.as_ref(),
                        ),
                        &head.signature.0,
                    )
                });
            if ok {
                Ok(())
            } else {
                Err(format!("the head is not node {node}'s or does not verify"))
            }
        }
        Command::Cluster(ClusterCommand::Tick {} | ClusterCommand::Boot { .. }) => Ok(()),
        // Leaves for the stating node itself to sign with.
        Command::Seedtree(keyquorum_wire::seedtree::SeedtreeCommand::StReserve {
            count, ..
        }) => need(
            (1..=crate::seedtree::state::MAX_RESERVE).contains(count),
            "a reservation is 1 to 1024 leaves",
        ),
        Command::Msg(MsgCommand::InitMsg { window_ms, .. }) => need(
            (1_000..=86_400_000).contains(window_ms),
            "the messaging window is 1 s to 1 day",
        ),
        // Its time moves the messaging state's clock: it must be fresh by
        // the log clock. (Rules 2: and it is the message its sender signed,
        // for this receiver, identifier, prekey and time.)
        Command::Msg(MsgCommand::Deliver { item, prekey }) => {
            r.clock.fresh(item.time_ms)?;
            if r.rules >= 2 {
                crate::msg::authority::signed_by_sender(r, item, prekey)?;
            }
            Ok(())
        }
        Command::Recovery(c) => crate::recovery::authority::may_state(r, node, c),
        other => Err(format!(
            "a node may not state {} on its own: it needs a client's request",
            op_name(other)
        )),
    }
}
