//! What every client route shares: bodies parsed into typed errors
//! ([`ApiJson`]), oversized bodies refused cleanly, and the audited request
//! ([`Audited`]): authenticate the caller, run the handler's domain logic,
//! record the outcome in the audit log, answer. A handler is its domain
//! logic only.
//!
//! The routes themselves live with their capability (`crate::keys::api`,
//! `crate::msg::api`) or, for the cluster's own resources, in [`cluster`];
//! `crate::server` puts them together with the peer endpoint.

use std::future::Future;
use std::sync::atomic::Ordering;

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyquorum_wire::api::ErrorBody;
use serde::Serialize;

use crate::cluster::Node;
use crate::error::{json_rejection, NodeError};

pub mod auth;
pub mod backup;
pub mod cluster;
pub mod join;
pub mod operators;

pub use auth::Caller;

/// Largest client request body.
pub const CLIENT_BODY_LIMIT: usize = 256 * 1024;

/// A JSON body whose rejection is a typed [`ErrorBody`].
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// How much of a refused oversized body is read and thrown away before the
/// 413 is sent, and for how long.
const DRAIN_CAP: u64 = 16 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Refuses a client body whose declared length is over the limit — after
/// reading it (up to [`DRAIN_CAP`] / [`DRAIN_TIME`]) and discarding it.
///
/// Answering before the body is read and then closing makes the kernel
/// reset the connection over the unread bytes, and the client may see the
/// reset (EPIPE, ECONNRESET) instead of the 413: the "lingering close"
/// problem (RFC 9112 §9.6). Draining first lets the client read a clear
/// answer and keeps the connection usable. Bodies without a length, or
/// longer than the cap, still meet [`DefaultBodyLimit`] and a plain close.
pub(crate) async fn refuse_oversized(
    State(node): State<Node>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(len) = declared.filter(|&n| n > CLIENT_BODY_LIMIT as u64) else {
        return next.run(req).await;
    };
    if len <= DRAIN_CAP {
        use futures::StreamExt;
        let mut body = req.into_body().into_data_stream();
        let drain = async {
            let mut seen = 0u64;
            while let Some(Ok(chunk)) = body.next().await {
                seen += chunk.len() as u64;
                if seen > DRAIN_CAP {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    }
    // Refused before anyone is authenticated: counted (`cluster::refusals`).
    node.refusal(None, "request.body", None, "payload_too_large");
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        Json(ErrorBody {
            error: "payload_too_large".into(),
            message: format!("request body is {len} bytes; the limit is {CLIENT_BODY_LIMIT}"),
            culprits: Vec::new(),
        }),
    )
        .into_response()
}

/// An audited client request: who is asking (the client whose signature
/// `auth::signed_requests` checked) on which node. Handlers take it as an extractor and hand it
/// their domain logic through [`Audited::run`] or [`Audited::run_json`].
#[derive(Debug)]
pub struct Audited {
    node: Node,
    authn: Result<Caller, NodeError>,
}

impl<S> FromRequestParts<S> for Audited
where
    Node: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let authn = parts.extensions.get::<auth::Authn>().map_or_else(
            || Err(NodeError::Unauthorized("unsigned".into())),
            |a| a.0.clone(),
        );
        Ok(Audited {
            node: Node::from_ref(state),
            authn,
        })
    }
}

/// Actions whose result is released only after its audit entry commits.
const RELEASES: [&str; 2] = ["key.sign", "export.run"];

impl Audited {
    /// Run `f` for the authenticated caller as action `action` on `target`,
    /// audit the outcome and answer with `f`'s result as JSON.
    pub async fn run<T: Serialize, F, Fut>(
        self,
        action: &str,
        target: Option<&str>,
        f: F,
    ) -> Response
    where
        F: FnOnce(Caller) -> Fut,
        Fut: Future<Output = Result<T, NodeError>>,
    {
        let node = &self.node;
        let caller = self.authn;
        let authenticated = caller.is_ok();
        let actor = caller
            .as_ref()
            .map(|c| c.grant.name.clone())
            .unwrap_or_else(|_| "anonymous".into());
        // Nothing is done that the log could not record: an admitted
        // request holds a place in the audit queue for its outcome. The
        // refusal itself is counted, not queued: it would take the room
        // kept for the node's own events.
        let permit = match authenticated {
            true => match node.audit_permit() {
                Some(p) => Some(p),
                None => {
                    let m = node.metrics();
                    m.audit_backlog_refusals.fetch_add(1, Ordering::Relaxed);
                    m.requests_err.fetch_add(1, Ordering::Relaxed);
                    m.errors.add("unavailable");
                    return NodeError::Unavailable(
                        "the audit log is not keeping up (no quorum, or overload); nothing was \
                         done"
                            .into(),
                    )
                    .into_response();
                }
            },
            false => None,
        };
        // The outcome, in the place held for it (or, unauthenticated, as a
        // counted refusal).
        let record = |committed: bool, outcome: &str| match permit {
            Some(p) => node.audit_outcome(p, &actor, action, target, outcome, committed),
            None if committed => Some(node.audit_event_committed(&actor, action, target, outcome)),
            None => {
                node.audit_event(&actor, action, target, outcome);
                None
            }
        };
        // The place this request holds among its client's (quota), until
        // it is answered.
        let mut session = None;
        let result = match caller {
            Ok(c) => match node.client_session(&c.grant.name) {
                Some(s) => {
                    session = Some(s);
                    f(c).await
                }
                None => Err(NodeError::TooMany(format!(
                    "quota exceeded: client {} has {} requests in flight on this node; wait for \
                     one to finish",
                    c.grant.name,
                    node.config().client_sessions
                ))),
            },
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(e) => clip(format!("{}: {e}", e.status().1)),
        };
        let result = match result {
            // What cannot be taken back once it leaves (a signature, an export)
            // leaves only after its audit entry is committed: a crash in
            // between loses the answer, never the record of it.
            Ok(v) if RELEASES.contains(&action) => {
                // Bounded like a peer call: without a Raft quorum the audit
                // log cannot commit and the request fails closed.
                let wait = std::time::Duration::from_millis(node.config().peer_timeout_ms);
                match record(true, &outcome) {
                    Some(committed) => match tokio::time::timeout(wait, committed).await {
                        Ok(Ok(())) => Ok(v),
                        _ => Err(NodeError::Unavailable(
                            "the audit log did not commit in time; the result was withheld".into(),
                        )),
                    },
                    None => Err(NodeError::Internal("no audit receipt".into())),
                }
            }
            Ok(v) => {
                record(false, &outcome);
                Ok(v)
            }
            // A refusal (4xx: nothing was done) is rate-limited per caller
            // (the place held for it is given back first); any other
            // failure is audited.
            // An unauthenticated caller's failure of any kind is counted,
            // never audited (it would let a stranger write the log).
            Err(e) if !authenticated || e.status().0.is_client_error() => {
                drop(record);
                let who = authenticated.then_some((actor.as_str(), actor.as_str()));
                node.refusal(who, action, target, &outcome);
                Err(e)
            }
            Err(e) => {
                record(false, &outcome);
                Err(e)
            }
        };
        drop(session);
        match result {
            Ok(v) => {
                node.metrics().requests_ok.fetch_add(1, Ordering::Relaxed);
                Json(v).into_response()
            }
            Err(e) => {
                node.metrics().requests_err.fetch_add(1, Ordering::Relaxed);
                node.metrics().errors.add(e.status().1);
                e.into_response()
            }
        }
    }

    /// [`Self::run`] for a request with a JSON body: an unauthenticated
    /// request is refused first, then a body that does not parse (both
    /// audited); `target` names
    /// the object from the parsed body.
    pub async fn run_json<B, T: Serialize, F, Fut>(
        self,
        action: &str,
        body: Result<ApiJson<B>, Response>,
        target: impl FnOnce(&B) -> Option<String>,
        f: F,
    ) -> Response
    where
        F: FnOnce(Caller, B) -> Fut,
        Fut: Future<Output = Result<T, NodeError>>,
    {
        // Who is asking comes first: an unauthenticated request is refused
        // as such, whatever its body.
        if self.authn.is_err() {
            return self.run(action, None, |_| async { Ok(()) }).await;
        }
        let ApiJson(body) = match body {
            Ok(b) => b,
            Err(r) => return self.reject(action, r),
        };
        let target = target(&body);
        self.run(action, target.as_deref(), |c| f(c, body)).await
    }

    /// Audit (or count: `cluster::refusals`) a request refused before its
    /// handler ran.
    fn reject(&self, action: &str, r: Response) -> Response {
        let who = self.authn.as_ref().ok().map(|c| c.grant.name.clone());
        self.node.refusal(
            who.as_deref().map(|w| (w, w)),
            action,
            None,
            &format!("rejected: HTTP {}", r.status().as_u16()),
        );
        self.node
            .metrics()
            .requests_err
            .fetch_add(1, Ordering::Relaxed);
        self.node.metrics().errors.add("rejected");
        r
    }
}

/// The longest outcome text the audit log keeps (a refusal's reason may
/// quote what an unauthenticated caller sent).
const MAX_OUTCOME: usize = 300;

fn clip(mut s: String) -> String {
    if s.len() > MAX_OUTCOME {
        let mut end = MAX_OUTCOME;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// The answer to a path no route has.
pub(crate) async fn not_found() -> Response {
    NodeError::NotFound("no such endpoint".into()).into_response()
}
