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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyquorum_core::httpsig::{self, Policy, SigError};
use keyquorum_wire::control::Grant;

use super::CLIENT_BODY_LIMIT;
use crate::cluster::Node;
use crate::error::NodeError;

/// How old a signature's `created` may be, in seconds.
pub const WINDOW_S: u64 = 300;
/// How far ahead of this node's clock `created` may be, in seconds.
pub const SKEW_S: u64 = 30;
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
    /// (client, nonce) → when it may be forgotten (seconds).
    seen: Mutex<HashMap<(String, String), u64>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn unauthorized(e: SigError) -> NodeError {
    NodeError::Unauthorized(e.to_string())
}

impl Authenticator {
    pub(crate) fn new(node: Node) -> Self {
        Authenticator {
            node,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Check the signature now (the client's key from this replica).
    fn verify(&self, req: &httpsig::Request, now_s: u64) -> Result<httpsig::Verified, SigError> {
        let policy = Policy {
            now: now_s,
            window: WINDOW_S,
            skew: SKEW_S,
        };
        httpsig::verify(req, &policy, |id| {
            self.node
                .registry(|r| r.clients.get(id).map(|c| c.public_key))
                .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k.0).ok())
        })
    }

    /// Admit a verified signature: the client is live and the nonce new.
    fn admit(
        &self,
        verified: &httpsig::Verified,
        req: &Arc<httpsig::Request>,
        now: u64,
    ) -> Result<Caller, NodeError> {
        let record = self
            .node
            .registry(|r| r.clients.get(&verified.keyid).cloned())
            .ok_or_else(|| unauthorized(SigError::UnknownKey(verified.keyid.clone())))?;
        if record.revoked {
            return Err(NodeError::Unauthorized(format!(
                "client {} is revoked",
                verified.keyid
            )));
        }
        if let Some(t) = record.expires_ms.filter(|&t| t <= now) {
            return Err(NodeError::Unauthorized(format!(
                "client {} expired at {t} ms",
                verified.keyid
            )));
        }
        self.fresh_nonce(verified, now / 1000)?;
        Ok(Caller {
            grant: record.grant,
            signed: req.clone(),
        })
    }

    /// Refuse a nonce this node has seen from the same client within the
    /// window; remember it until the signature could no longer be fresh.
    fn fresh_nonce(&self, v: &httpsig::Verified, now: u64) -> Result<(), NodeError> {
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| NodeError::Internal("nonce cache poisoned".into()))?;
        let until = v.created.saturating_add(WINDOW_S + SKEW_S);
        let slot = (v.keyid.clone(), v.nonce.clone());
        if seen.get(&slot).is_some_and(|&t| t >= now) {
            return Err(NodeError::Unauthorized(format!(
                "replayed request: client {} already used nonce {:?}",
                v.keyid, v.nonce
            )));
        }
        if seen.len() >= MAX_NONCES {
            seen.retain(|_, t| *t >= now);
            if seen.len() >= MAX_NONCES {
                return Err(NodeError::Unavailable(
                    "too many signed requests within the freshness window".into(),
                ));
            }
        }
        seen.insert(slot, until);
        Ok(())
    }

    /// Authenticate one request. A follower that does not know the client
    /// yet gives replication a moment: a client just registered through
    /// another node reaches this one within a heartbeat or two.
    pub(crate) async fn authenticate(&self, req: httpsig::Request) -> Result<Caller, NodeError> {
        let req = Arc::new(req);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1_000);
        loop {
            let now = now_ms();
            match self.verify(&req, now / 1000) {
                Ok(v) => return self.admit(&v, &req, now),
                Err(SigError::UnknownKey(_))
                    if self.node.leader() != Some(self.node.id())
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(e) => return Err(unauthorized(e)),
            }
        }
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
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", axum::http::uri::PathAndQuery::as_str);
    Ok(httpsig::Request {
        method: parts.method.as_str().to_string(),
        target_uri: format!("https://{host}{path}"),
        headers: parts
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    })
}

/// Middleware in front of the client routes: authenticate a signed request
/// and leave the outcome ([`Authn`]) for the handler's audit. A request
/// with no signature fields is not read here.
pub(crate) async fn signed_requests(
    State(auth): State<Arc<Authenticator>>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let signed =
        parts.headers.contains_key("signature-input") || parts.headers.contains_key("signature");
    let (authn, body) = if signed {
        let Ok(bytes) = axum::body::to_bytes(body, CLIENT_BODY_LIMIT).await else {
            return NodeError::BadRequest(format!(
                "the body could not be read or is over {CLIENT_BODY_LIMIT} bytes"
            ))
            .into_response();
        };
        let authn = match request_of(&parts, &bytes) {
            Ok(r) => auth.authenticate(r).await,
            Err(e) => Err(e),
        };
        (authn, Body::from(bytes))
    } else {
        (Err(unauthorized(SigError::Unsigned)), body)
    };
    parts.extensions.insert(Authn(authn));
    next.run(Request::from_parts(parts, body)).await
}
