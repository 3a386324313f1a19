//! Who is asking: a request signed (HTTP Message Signatures, RFC 9421,
//! Ed25519; `keyquorum_core::httpsig`) by a client identity in the registry,
//! and what that client's grant lets it do.
//!
//! `signed_requests` runs in front of every client route: it reads the
//! body (within the client body limit), rebuilds the request as the
//! signature saw it (`https://` + `Host` + path and query, the header
//! fields, the exact body), checks the signature, the client (known, not
//! revoked, not expired) and the nonce (not seen within the window), and
//! leaves the outcome for [`super::Audited`]. Public routes ignore it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyquorum_core::httpsig::{self, Policy, SigError};
use keyquorum_wire::control::Authorized as Proposed;
use keyquorum_wire::control::{Authority, ClientRecord, Command, Grant};
use keyquorum_wire::peer::ClientRequest;
use keyquorum_wire::{Hex, NodeId};
use sha2::{Digest, Sha256};

use super::CLIENT_BODY_LIMIT;
use crate::cluster::Node;
use crate::error::NodeError;

use crate::cluster::machine::authority::{authority_of, path_of, signed_request};
pub use crate::cluster::machine::authority::{SKEW_S, WINDOW_S};
/// Nonces remembered at once (each for the window); past this, signed
/// requests are refused as unavailable until old ones expire.
const MAX_NONCES: usize = 1 << 20;

/// An authenticated caller: the grant of the client that signed, and the
/// request exactly as it signed it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// What the client may do.
    pub grant: Grant,
    /// The signed request (method, target URI, fields, body).
    pub signed: Arc<httpsig::Request>,
}

impl Caller {
    /// Refused unless the client is an admin.
    pub fn require_admin(&self) -> Result<(), NodeError> {
        if self.grant.admin {
            Ok(())
        } else {
            Err(NodeError::Forbidden(format!(
                "client {} is not an admin",
                self.grant.name
            )))
        }
    }

    /// `command`, authorized by this caller's signed request: every replica
    /// verifies the request again when it applies the command.
    pub fn authorize(&self, command: impl Into<Command>) -> Proposed {
        by_request(&self.signed, command)
    }

    /// Refused unless the client is an admin or an operator.
    pub fn require_operator_or_admin(&self) -> Result<(), NodeError> {
        if self.grant.admin || self.grant.operator {
            Ok(())
        } else {
            Err(NodeError::Forbidden(format!(
                "client {} is neither admin nor operator",
                self.grant.name
            )))
        }
    }
}

/// The outcome of [`signed_requests`] for one request, as a request
/// extension.
#[derive(Debug, Clone)]
pub(crate) struct Authn(pub Result<Caller, NodeError>);

/// Checks signed requests for one node; remembers nonces.
#[derive(Debug)]
pub(crate) struct Authenticator {
    node: Node,
    seen: Mutex<Nonces>,
}

/// The nonces this node accepted within the window: by a 16-byte hash of
/// (client, nonce), expired in arrival order (each deadline is `created`
/// plus the window, and `created` is close to arrival), with a count per
/// client so that no one client can fill the cache for the others.
#[derive(Debug, Default)]
struct Nonces {
    until: HashMap<[u8; 16], u64>,
    order: VecDeque<([u8; 16], u64, Arc<str>)>,
    per_client: HashMap<Arc<str>, usize>,
}

/// The most nonces one client may have in the cache at once (a quarter of
/// it): about 870 requests/s sustained over the window.
const MAX_NONCES_PER_CLIENT: usize = MAX_NONCES / 4;

impl Nonces {
    /// Drop what can no longer be fresh at `now` (seconds).
    fn expire(&mut self, now: u64) {
        while let Some((h, until, who)) = self.order.front() {
            if *until >= now {
                break;
            }
            if self.until.get(h) == Some(until) {
                self.until.remove(h);
            }
            if let Some(n) = self.per_client.get_mut(who) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_client.remove(who);
                }
            }
            self.order.pop_front();
        }
    }

    /// Accept `v`'s nonce once.
    fn accept(&mut self, v: &httpsig::Verified, now: u64) -> Result<(), NodeError> {
        self.expire(now);
        let mut h = Sha256::new();
        h.update((v.keyid.len() as u64).to_be_bytes());
        h.update(v.keyid.as_bytes());
        h.update(v.nonce.as_bytes());
        let digest = h.finalize();
        let mut slot = [0u8; 16];
        slot.copy_from_slice(digest.get(..16).unwrap_or_default());
        if self.until.get(&slot).is_some_and(|&t| t >= now) {
            return Err(NodeError::Unauthorized(format!(
                "replayed request: client {} already used nonce {:?}",
                v.keyid, v.nonce
            )));
        }
        let who: Arc<str> = Arc::from(v.keyid.as_str());
        let mine = self.per_client.get(&who).copied().unwrap_or(0);
        if self.order.len() >= MAX_NONCES || mine >= MAX_NONCES_PER_CLIENT {
            return Err(NodeError::Unavailable(
                "too many signed requests within the freshness window".into(),
            ));
        }
        let until = v.created.saturating_add(WINDOW_S + SKEW_S);
        self.until.insert(slot, until);
        self.order.push_back((slot, until, who.clone()));
        *self.per_client.entry(who).or_insert(0) += 1;
        Ok(())
    }
}

use crate::cluster::peer::now_ms;

fn unauthorized(e: SigError) -> NodeError {
    NodeError::Unauthorized(e.to_string())
}

impl Authenticator {
    pub(crate) fn new(node: Node) -> Self {
        Authenticator {
            node,
            seen: Mutex::default(),
        }
    }

    /// Admit a verified signature: the client is live and the nonce new.
    /// The caller keeps the request with only what the signature covers
    /// (and the signature fields): what participants are later handed.
    fn admit(
        &self,
        verified: &httpsig::Verified,
        req: &httpsig::Request,
        now: u64,
    ) -> Result<Caller, NodeError> {
        let record = live_client(&self.node, &verified.keyid, now)?;
        self.seen
            .lock()
            .map_err(|_| NodeError::Internal("nonce cache poisoned".into()))?
            .accept(verified, now / 1000)?;
        Ok(Caller {
            grant: record.grant,
            signed: Arc::new(covered_only(req, verified)),
        })
    }

    /// Authenticate one request, addressed to this node. A follower that
    /// does not know the client yet gives replication a moment (a client
    /// just registered through another node reaches this one within a
    /// heartbeat or two): it watches for the name, and checks the signature
    /// again only when the name appears.
    pub(crate) async fn authenticate(&self, req: httpsig::Request) -> Result<Caller, NodeError> {
        check_authority(&self.node, &req.target_uri, Scope::ThisNode)?;
        let now = self.node.now_ms();
        match verify_signature(&self.node, &req, now / 1000) {
            Ok(v) => self.admit(&v, &req, now),
            Err(SigError::UnknownKey(name))
                if crate::names::check_name(&name).is_ok()
                    && self.node.leader() != Some(self.node.id()) =>
            {
                let deadline = tokio::time::Instant::now() + Duration::from_millis(1_000);
                while tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    if self.node.registry(|r| r.clients.contains_key(&name)) {
                        let now = self.node.now_ms();
                        let v =
                            verify_signature(&self.node, &req, now / 1000).map_err(unauthorized)?;
                        return self.admit(&v, &req, now);
                    }
                }
                // Still unknown: a node still applying its log may simply
                // not have reached the client yet, and says so.
                if self.node.catching_up() {
                    return Err(NodeError::Unavailable(format!(
                        "this node is still applying its log and does not know {name} yet; \
                         try again or another node"
                    )));
                }
                Err(unauthorized(SigError::UnknownKey(name)))
            }
            Err(e) => Err(unauthorized(e)),
        }
    }
}

/// `req` with only the header fields its verified signature covers, and the
/// signature fields themselves.
fn covered_only(req: &httpsig::Request, v: &httpsig::Verified) -> httpsig::Request {
    let keep = |name: &str| {
        let name = name.to_ascii_lowercase();
        name == "signature" || name == "signature-input" || v.covered.contains(&name)
    };
    httpsig::Request {
        method: req.method.clone(),
        target_uri: req.target_uri.clone(),
        headers: req
            .headers
            .iter()
            .filter(|(n, _)| keep(n))
            .cloned()
            .collect(),
        body: req.body.clone(),
    }
}

/// Check a request's signature now against the clients in this node's
/// registry replica.
fn verify_signature(
    node: &Node,
    req: &httpsig::Request,
    now_s: u64,
) -> Result<httpsig::Verified, SigError> {
    let policy = Policy {
        now: now_s,
        window: WINDOW_S,
        skew: SKEW_S,
    };
    httpsig::verify_memo(
        req,
        &policy,
        |id| {
            node.registry(|r| r.clients.get(id).map(|c| c.public_key))
                .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k.0).ok())
        },
        node.verifications(),
    )
}

/// The client named `name` in this node's registry, if it is neither
/// revoked nor expired at `now_ms`.
fn live_client(node: &Node, name: &str, now_ms: u64) -> Result<ClientRecord, NodeError> {
    let record = node
        .registry(|r| r.clients.get(name).cloned())
        .ok_or_else(|| unauthorized(SigError::UnknownKey(name.to_string())))?;
    if record.revoked {
        return Err(NodeError::Unauthorized(format!("client {name} is revoked")));
    }
    if let Some(t) = record.expires_ms.filter(|&t| t <= now_ms) {
        return Err(NodeError::Unauthorized(format!(
            "client {name} expired at {t} ms"
        )));
    }
    Ok(record)
}

/// Whose names a request's authority must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The node that received it from the client: its own address or TLS
    /// names (a request signed for one node is not accepted by another).
    ThisNode,
    /// A participant handed the request by the entry node: any member's
    /// address, or this node's TLS names.
    Cluster,
}

/// The request must be addressed to this node or cluster (see [`Scope`]).
fn check_authority(node: &Node, target_uri: &str, scope: Scope) -> Result<(), NodeError> {
    let Some(asked) = authority_of(target_uri) else {
        return Err(NodeError::Unauthorized(format!(
            "target URI {target_uri:?} has no authority"
        )));
    };
    let host = asked.rsplit_once(':').map_or(asked.as_str(), |(h, _)| h);
    let named = node
        .config()
        .tls_names
        .iter()
        .any(|n| n.eq_ignore_ascii_case(host));
    let addr_of = |id| node.node_info(id).and_then(|i| authority_of(&i.addr));
    let ours = match scope {
        // A shared name must also carry this node's port: on one host (or
        // behind one name) a request for one node is not another's.
        Scope::ThisNode => {
            let own = addr_of(node.id());
            let port = |a: &str| a.rsplit_once(':').map(|(_, p)| p.to_string());
            own.as_deref() == Some(asked.as_str())
                || (named && own.as_deref().and_then(port) == port(&asked))
        }
        Scope::Cluster => {
            named
                || node
                    .members()
                    .iter()
                    .any(|(_, info, _)| authority_of(&info.addr).as_deref() == Some(asked.as_str()))
        }
    };
    if ours {
        Ok(())
    } else {
        Err(NodeError::Unauthorized(format!(
            "the request was signed for {asked}, which is not {}",
            if scope == Scope::ThisNode {
                "this node"
            } else {
                "this cluster"
            }
        )))
    }
}

/// The member whose API address a request's authority names, if any.
pub(crate) fn addressee(node: &Node, target_uri: &str) -> Option<NodeId> {
    let asked = authority_of(target_uri)?;
    node.members()
        .into_iter()
        .find(|(_, info, _)| authority_of(&info.addr).as_deref() == Some(asked.as_str()))
        .map(|(id, _, _)| id)
}

/// Whether a request handed on by `from` was sent to `from`: its covered
/// target URI names that member's address (so a member handed a request
/// cannot drive it elsewhere). A request addressed to a name every node
/// serves names no one, and is refused.
pub(crate) fn check_sent_to(node: &Node, target_uri: &str, from: NodeId) -> Result<(), String> {
    match addressee(node, target_uri) {
        Some(to) if to == from => Ok(()),
        Some(to) => Err(format!(
            "the client's request was sent to node {to}, not to node {from}"
        )),
        None => Err(
            "the client's request names no member's address (a name every node \
                     serves cannot say which node it asked)"
                .into(),
        ),
    }
}

/// `command`, authorized by the client's signed `request`.
pub(crate) fn by_request(request: &httpsig::Request, command: impl Into<Command>) -> Proposed {
    Proposed {
        command: command.into(),
        by: Authority::Client {
            request: forwarded(request),
        },
    }
}

/// The forwarded form of a signed request (what participants receive).
pub(crate) fn forwarded(req: &httpsig::Request) -> ClientRequest {
    ClientRequest {
        method: req.method.clone(),
        target_uri: req.target_uri.clone(),
        headers: req.headers.clone(),
        body: Hex(req.body.clone()),
    }
}

/// A client request checked by a participant for itself, before it
/// releases anything for the operation the request asks for.
#[derive(Debug)]
pub(crate) struct Authorized {
    /// The client's grant in this node's registry.
    pub grant: Grant,
    /// The signature's parameters (who, when, which nonce).
    pub verified: httpsig::Verified,
    /// The request's path (no query).
    pub path: String,
    /// The method.
    pub method: String,
    /// The body.
    pub body: Vec<u8>,
}

/// A participant's check of a forwarded client request: signed by a live
/// client of this node's registry replica, fresh by this node's clock,
/// addressed to this cluster. What the request asks for is the caller's to
/// compare with the step it is asked to take.
pub(crate) fn check_forwarded(node: &Node, req: &ClientRequest) -> Result<Authorized, NodeError> {
    let now = node.now_ms();
    let request = signed_request(req);
    let verified = verify_signature(node, &request, now / 1000).map_err(unauthorized)?;
    check_authority(node, &request.target_uri, Scope::Cluster)?;
    let record = live_client(node, &verified.keyid, now)?;
    let path = path_of(&request.target_uri);
    Ok(Authorized {
        grant: record.grant,
        verified,
        path,
        method: request.method,
        body: request.body,
    })
}

/// What each authorization has driven on this node: one operation, and
/// within it each attempt (a signer set, a round) once, at most a bounded
/// number of attempts. Entries are kept until the signature could no longer
/// be fresh. In memory: a restart forgets it (see the README's threat
/// model); freshness still bounds a replay to the window.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    uses: Mutex<HashMap<(String, String), Use>>,
    sweep_at: std::sync::atomic::AtomicUsize,
}

#[derive(Debug)]
struct Use {
    operation: String,
    attempts: Vec<String>,
    until: u64,
}

impl Ledger {
    /// Record that `a` drives `operation`, attempt `attempt`; refused if
    /// it already drove another operation, this attempt, or `max_attempts`.
    pub(crate) fn record(
        &self,
        a: &Authorized,
        operation: &str,
        attempt: &str,
        max_attempts: usize,
    ) -> Result<(), NodeError> {
        let now = now_ms() / 1000;
        let mut uses = self
            .uses
            .lock()
            .map_err(|_| NodeError::Internal("authorization ledger poisoned".into()))?;
        // Expired entries are dropped whenever the ledger has doubled since
        // the last sweep (amortised constant time per record).
        let mut sweep = self
            .sweep_at
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(4096);
        if uses.len() >= sweep {
            uses.retain(|_, u| u.until >= now);
            sweep = (uses.len() * 2).max(4096);
            self.sweep_at
                .store(sweep, std::sync::atomic::Ordering::Relaxed);
        }
        if uses.len() >= MAX_NONCES {
            return Err(NodeError::Unavailable(
                "too many authorizations within the freshness window".into(),
            ));
        }
        let v = &a.verified;
        let slot = (v.keyid.clone(), v.nonce.clone());
        let entry = uses.entry(slot).or_insert_with(|| Use {
            operation: operation.to_string(),
            attempts: Vec::new(),
            until: v.created.saturating_add(WINDOW_S + SKEW_S),
        });
        if entry.until < now {
            *entry = Use {
                operation: operation.to_string(),
                attempts: Vec::new(),
                until: v.created.saturating_add(WINDOW_S + SKEW_S),
            };
        }
        let replay = |why: &str| {
            NodeError::Unauthorized(format!(
                "replayed authorization: client {}'s request (nonce {:?}) {why}",
                v.keyid, v.nonce
            ))
        };
        if entry.operation != operation {
            return Err(replay("already drove another operation"));
        }
        if entry.attempts.iter().any(|x| x == attempt) {
            return Err(replay("already drove this step"));
        }
        if entry.attempts.len() >= max_attempts {
            return Err(replay("already drove as many attempts as an operation has"));
        }
        entry.attempts.push(attempt.to_string());
        Ok(())
    }
}

/// The request as its signature covers it: this node serves HTTPS only,
/// so the target URI is `https://` + `Host` + path and query.
fn request_of(parts: &Parts, body: &[u8]) -> Result<httpsig::Request, NodeError> {
    let host = parts
        .headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| NodeError::Unauthorized("the request has no Host field".into()))?;
    // An authority and nothing else: no path, query, fragment or user part
    // may hide in it and shift where the covered URI splits.
    let valid = host
        .parse::<axum::http::uri::Authority>()
        .is_ok_and(|a| a.as_str() == host && !host.contains('@'));
    if !valid {
        return Err(NodeError::Unauthorized(format!(
            "the Host field {host:?} is not an authority"
        )));
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", axum::http::uri::PathAndQuery::as_str);
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (n, v) in &parts.headers {
        // A value that is not visible ASCII is refused, not dropped: a
        // dropped instance would make the signature and the handler read
        // different values of the same field.
        let v = v.to_str().map_err(|_| {
            NodeError::Unauthorized(format!("header field {n} is not visible ASCII"))
        })?;
        headers.push((n.as_str().to_string(), v.to_string()));
    }
    Ok(httpsig::Request {
        method: parts.method.as_str().to_string(),
        target_uri: format!("https://{host}{path}"),
        headers,
        body: body.to_vec(),
    })
}

/// Middleware in front of the client routes: authenticate a signed request
/// and leave the outcome ([`Authn`]) for the handler's audit. A request
/// with no signature fields is not read here.
/// The longest a request's body may take to arrive, client or peer.
pub(crate) const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Read a whole body of at most `limit` bytes within [`BODY_TIMEOUT`] (a
/// caller that trickles one holds its connection no longer than that).
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, NodeError> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(NodeError::BadRequest(format!(
            "the body could not be read or is over {limit} bytes"
        ))),
        Err(_) => Err(NodeError::BadRequest(format!(
            "the body did not arrive within {} s",
            BODY_TIMEOUT.as_secs()
        ))),
    }
}

pub(crate) async fn signed_requests(
    State(auth): State<Arc<Authenticator>>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let signed =
        parts.headers.contains_key("signature-input") || parts.headers.contains_key("signature");
    // Every body is read here, within a deadline. One too large or too
    // slow is refused before anyone is authenticated: counted, like any
    // unauthenticated refusal (`cluster::refusals`).
    let bytes = match read_body(body, CLIENT_BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => {
            auth.node
                .refusal(None, "request.body", None, &e.to_string());
            return e.into_response();
        }
    };
    let authn = if signed {
        match request_of(&parts, &bytes) {
            Ok(r) => auth.authenticate(r).await,
            Err(e) => Err(e),
        }
    } else {
        Err(unauthorized(SigError::Unsigned))
    };
    let body = Body::from(bytes);
    parts.extensions.insert(Authn(authn));
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn verified(keyid: &str, nonce: &str, created: u64) -> httpsig::Verified {
        httpsig::Verified {
            label: "sig1".into(),
            keyid: keyid.into(),
            created,
            nonce: nonce.into(),
            covered: vec!["@method".into(), "@target-uri".into()],
        }
    }

    #[test]
    fn a_nonce_is_accepted_once_within_the_window_and_forgotten_after() {
        let mut n = Nonces::default();
        n.accept(&verified("a", "x", 1_000), 1_000).unwrap();
        let e = n.accept(&verified("a", "x", 1_000), 1_010).unwrap_err();
        assert!(e.to_string().contains("replayed"), "{e}");
        // Another client may use the same nonce string.
        n.accept(&verified("b", "x", 1_000), 1_010).unwrap();
        // Past created + window + skew the entry is gone (the signature
        // itself would be refused as stale by then).
        n.accept(&verified("c", "y", 1_400), 1_400).unwrap();
        assert!(!n.per_client.contains_key("a"));
        assert_eq!(n.order.len(), 1);
    }

    #[test]
    fn one_client_cannot_fill_the_cache() {
        let mut n = Nonces::default();
        for i in 0..MAX_NONCES_PER_CLIENT {
            n.accept(&verified("greedy", &i.to_string(), 1_000), 1_000)
                .unwrap();
        }
        let e = n
            .accept(&verified("greedy", "one more", 1_000), 1_000)
            .unwrap_err();
        assert!(matches!(e, NodeError::Unavailable(_)), "{e}");
        n.accept(&verified("other", "0", 1_000), 1_000).unwrap();
    }

    #[test]
    fn a_host_field_that_is_more_than_an_authority_is_refused() {
        for host in ["a/v1/audit?x=", "a?b", "a#b", "user@a", "a b", ""] {
            let (parts, ()) = axum::http::Request::builder()
                .uri("/v1/keys")
                .header("host", host)
                .body(())
                .unwrap()
                .into_parts();
            assert!(request_of(&parts, b"").is_err(), "{host:?}");
        }
        let (parts, ()) = axum::http::Request::builder()
            .uri("/v1/keys?x=1")
            .header("host", "127.0.0.1:7001")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(
            request_of(&parts, b"").unwrap().target_uri,
            "https://127.0.0.1:7001/v1/keys?x=1"
        );
    }
}
