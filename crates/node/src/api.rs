//! The HTTP surface: client API under `/v1` (bearer tokens, audited), the
//! peer endpoint, `/healthz`, `/metrics` and `/openapi.json`.
//!
//! Every client request is audited with its outcome, refusals included. JSON
//! bodies are parsed by [`ApiJson`], which turns any parse failure into a
//! typed 4xx [`ErrorBody`].

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use keyquorum_wire::api::{
    AddNodeRequest, ClusterStatus, CreateKeyRequest, CreateTokenRequest, ErrorBody, ExportList,
    ExportRequest, ExportResult, Health, KeyInfo, KeyList, NodeStatus, RepairRequest,
    ReshareRequest, SignRequest, SignResponse, SuiteName, TokenCreated, VerifyRequest,
    VerifyResponse,
};
use keyquorum_wire::control::{AuditEntry, Command, ExportRecord, KeyRecord, TokenGrant};
use keyquorum_wire::msg::{
    AckRequest, AckResponse, ClaimRequest, ClaimedPrekeys, CoordinatorBundle,
    CreateEndpointRequest, EndpointInfo, EndpointRecord, Inbox, MailItem, MsgConfirmation,
    MsgDeployment, MsgNode, Prekey, PublishPrekeys, SealedBox, SendRequest, SendResponse,
};
use keyquorum_wire::peer::{Envelope, PeerMessage};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::dev::token_hash;
use crate::error::NodeError;
use crate::machine::verify_chain;
use crate::node::Node;
use crate::peer::{open_envelope, seal_envelope, PEER_PATH};
use crate::tls::TlsPeer;

/// Largest client request body.
pub const CLIENT_BODY_LIMIT: usize = 256 * 1024;
/// Largest peer message (DKG relays for large n, snapshots).
pub const PEER_BODY_LIMIT: usize = 64 * 1024 * 1024;
/// Largest message to sign.
pub const MAX_MESSAGE: usize = 64 * 1024;

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
async fn refuse_oversized(req: Request, next: axum::middleware::Next) -> Response {
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

fn json_rejection(r: JsonRejection) -> Response {
    let status = r.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "bad_request",
    };
    // JSON syntax and type errors are 400 (axum says 422 for type errors).
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    (
        status,
        Json(ErrorBody {
            error: code.to_string(),
            message: r.body_text(),
            culprits: Vec::new(),
        }),
    )
        .into_response()
}

/// Who is asking.
#[derive(Debug, Clone)]
struct Caller {
    grant: TokenGrant,
}

fn authenticate(node: &Node, headers: &HeaderMap) -> Result<Caller, NodeError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(NodeError::Unauthorized)?;
    let token = value
        .strip_prefix("Bearer ")
        .ok_or(NodeError::Unauthorized)?
        .trim();
    if token.is_empty() || token.len() > 256 {
        return Err(NodeError::Unauthorized);
    }
    let hash = token_hash(token);
    node.registry(|r| r.tokens.get(&hash).cloned())
        .map(|grant| Caller { grant })
        .ok_or(NodeError::Unauthorized)
}

/// Like [`authenticate`], but a follower that does not know the token yet
/// gives replication a moment: a token just issued through another node
/// reaches this one within a heartbeat or two.
async fn authenticate_fresh(node: &Node, headers: &HeaderMap) -> Result<Caller, NodeError> {
    let first = authenticate(node, headers);
    if first.is_ok()
        || headers.get(header::AUTHORIZATION).is_none()
        || node.leader() == Some(node.id())
    {
        return first;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(1_000);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        let r = authenticate(node, headers);
        if r.is_ok() || tokio::time::Instant::now() >= deadline {
            return r;
        }
    }
}

/// Actions whose result is released only after its audit entry commits.
const RELEASES: [&str; 2] = ["key.sign", "export.run"];

/// Run `f` as an authenticated, audited client request.
async fn audited<T: Serialize, F, Fut>(
    node: &Node,
    headers: &HeaderMap,
    action: &str,
    target: Option<&str>,
    f: F,
) -> Response
where
    F: FnOnce(Caller) -> Fut,
    Fut: std::future::Future<Output = Result<T, NodeError>>,
{
    let caller = authenticate_fresh(node, headers).await;
    let actor = caller
        .as_ref()
        .map(|c| c.grant.name.clone())
        .unwrap_or_else(|_| "anonymous".into());
    let result = match caller {
        Ok(c) => f(c).await,
        Err(e) => Err(e),
    };
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{}: {e}", e.status().1),
    };
    let result = match result {
        // What cannot be taken back once it leaves (a signature, an export)
        // leaves only after its audit entry is committed: a crash in
        // between loses the answer, never the record of it.
        Ok(v) if RELEASES.contains(&action) => {
            let committed = node.audit_event_committed(&actor, action, target, &outcome);
            // Bounded like a peer call: without a Raft quorum the audit
            // log cannot commit and the request fails closed.
            let wait = std::time::Duration::from_millis(node.config().peer_timeout_ms);
            match tokio::time::timeout(wait, committed).await {
                Ok(Ok(())) => Ok(v),
                _ => Err(NodeError::Unavailable(
                    "the audit log did not commit in time; the result was withheld".into(),
                )),
            }
        }
        other => {
            node.audit_event(&actor, action, target, &outcome);
            other
        }
    };
    match result {
        Ok(v) => {
            node.metrics().requests_ok.fetch_add(1, Ordering::Relaxed);
            Json(v).into_response()
        }
        Err(e) => {
            node.metrics().requests_err.fetch_add(1, Ordering::Relaxed);
            e.into_response()
        }
    }
}

fn require_admin(c: &Caller) -> Result<(), NodeError> {
    if c.grant.admin {
        Ok(())
    } else {
        Err(NodeError::Forbidden(format!(
            "token {} is not an admin token",
            c.grant.name
        )))
    }
}

fn may_sign(c: &Caller, key: &str) -> Result<(), NodeError> {
    if c.grant.admin || c.grant.sign_keys.iter().any(|k| k == "*" || k == key) {
        Ok(())
    } else {
        Err(NodeError::Forbidden(format!(
            "token {} may not sign with {key}",
            c.grant.name
        )))
    }
}

fn key_info(r: &KeyRecord) -> KeyInfo {
    KeyInfo {
        name: r.name.clone(),
        suite: r.suite,
        threshold: r.threshold,
        members: r.members.clone(),
        public_key: r.public_key.clone(),
        epoch: r.epoch,
    }
}

/// Create a shared key by distributed key generation.
#[utoipa::path(post, path = "/v1/keys", request_body = CreateKeyRequest, security(("bearer" = [])),
    responses((status = 200, body = KeyInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
async fn create_key(
    State(node): State<Node>,
    headers: HeaderMap,
    body: Result<ApiJson<CreateKeyRequest>, Response>,
) -> Response {
    let ApiJson(req) = match body {
        Ok(b) => b,
        Err(r) => return reject(&node, &headers, "key.create", r),
    };
    let target = req.name.clone();
    let n = node.clone();
    audited(
        &node,
        &headers,
        "key.create",
        Some(&target),
        |c| async move {
            let node = n;
            require_admin(&c)?;
            let members = match req.members {
                Some(m) => m,
                None => node
                    .members()
                    .into_iter()
                    .filter(|(_, _, voter)| *voter)
                    .map(|(id, _, _)| id)
                    .collect(),
            };
            // An explicit threshold is taken as asked (and refused if it
            // does not fit); only the default adapts to a small member set.
            let threshold = req.threshold.unwrap_or_else(|| {
                node.config()
                    .default_threshold
                    .min(u16::try_from(members.len()).unwrap_or(u16::MAX))
            });
            let info = node
                .driver()
                .create_key(&node, &req.name, req.suite, threshold, members)
                .await?;
            node.metrics().dkgs.fetch_add(1, Ordering::Relaxed);
            Ok(info)
        },
    )
    .await
}

/// List keys.
#[utoipa::path(get, path = "/v1/keys", security(("bearer" = [])),
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody)))]
async fn list_keys(State(node): State<Node>, headers: HeaderMap) -> Response {
    audited(&node, &headers, "key.list", None, |_| async {
        Ok(KeyList {
            keys: node.registry(|r| r.keys.values().map(key_info).collect()),
        })
    })
    .await
}

/// Show one key.
#[utoipa::path(get, path = "/v1/keys/{name}", params(("name" = String, Path, description = "key name")),
    security(("bearer" = [])),
    responses((status = 200, body = KeyInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_key(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    audited(&node, &headers, "key.show", Some(&name), |_| async {
        node.key_record(&name)
            .await
            .map(|r| key_info(&r))
            .ok_or_else(|| NodeError::NotFound(format!("no key named {name}")))
    })
    .await
}

/// Threshold-sign a message.
#[utoipa::path(post, path = "/v1/keys/{name}/sign", params(("name" = String, Path, description = "key name")),
    request_body = SignRequest, security(("bearer" = [])),
    responses((status = 200, body = SignResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
async fn sign(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<ApiJson<SignRequest>, Response>,
) -> Response {
    let ApiJson(req) = match body {
        Ok(b) => b,
        Err(r) => return reject(&node, &headers, "key.sign", r),
    };
    let (n, key) = (node.clone(), name.clone());
    audited(&node, &headers, "key.sign", Some(&name), |c| async move {
        let (node, name) = (n, key);
        may_sign(&c, &name)?;
        if req.message.0.len() > MAX_MESSAGE {
            return Err(NodeError::BadRequest(format!(
                "messages are at most {MAX_MESSAGE} bytes"
            )));
        }
        let start = Instant::now();
        let r = node.driver().sign(&node, &name, &req.message.0).await?;
        let m = node.metrics();
        m.signatures.fetch_add(1, Ordering::Relaxed);
        m.sign_micros.fetch_add(
            u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Ok(r)
    })
    .await
}

/// Verify a signature under a key (an ordinary single-signer verification).
#[utoipa::path(post, path = "/v1/keys/{name}/verify", params(("name" = String, Path, description = "key name")),
    request_body = VerifyRequest, security(("bearer" = [])),
    responses((status = 200, body = VerifyResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn verify(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<ApiJson<VerifyRequest>, Response>,
) -> Response {
    let ApiJson(req) = match body {
        Ok(b) => b,
        Err(r) => return reject(&node, &headers, "key.verify", r),
    };
    audited(&node, &headers, "key.verify", Some(&name), |_| async {
        let record = node
            .key_record(&name)
            .await
            .ok_or_else(|| NodeError::NotFound(format!("no key named {name}")))?;
        let valid = crate::driver::verify_signature(
            record.suite,
            &record.public_key.0,
            &req.message.0,
            &req.signature.0,
        );
        Ok(VerifyResponse { valid })
    })
    .await
}

/// Refresh every holder's share of a key (same public key, threshold and
/// members; the epoch advances).
#[utoipa::path(post, path = "/v1/keys/{name}/refresh", params(("name" = String, Path, description = "key name")),
    security(("bearer" = [])),
    responses((status = 200, body = KeyInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
async fn refresh_key(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let (n, key) = (node.clone(), name.clone());
    audited(
        &node,
        &headers,
        "key.refresh",
        Some(&name),
        |c| async move {
            require_admin(&c)?;
            n.driver().refresh_key(&n, &key).await
        },
    )
    .await
}

/// Reshare a key to a new threshold and member set (new nodes included);
/// the public key stays the same and the epoch advances. Old shares remain
/// usable until the new generation is committed.
#[utoipa::path(post, path = "/v1/keys/{name}/reshare", params(("name" = String, Path, description = "key name")),
    request_body = ReshareRequest, security(("bearer" = [])),
    responses((status = 200, body = KeyInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn reshare_key(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<ApiJson<ReshareRequest>, Response>,
) -> Response {
    let ApiJson(req) = match body {
        Ok(b) => b,
        Err(r) => return reject(&node, &headers, "key.reshare", r),
    };
    let (n, key) = (node.clone(), name.clone());
    audited(
        &node,
        &headers,
        "key.reshare",
        Some(&name),
        |c| async move {
            require_admin(&c)?;
            n.driver()
                .reshare_key(&n, &key, req.threshold, req.members)
                .await
        },
    )
    .await
}

/// Rebuild one member's lost share of a key from `t` other holders (none of
/// them learns it); the member checks it against its public share.
#[utoipa::path(post, path = "/v1/keys/{name}/repair", params(("name" = String, Path, description = "key name")),
    request_body = RepairRequest, security(("bearer" = [])),
    responses((status = 200, body = KeyInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn repair_key(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<ApiJson<RepairRequest>, Response>,
) -> Response {
    let ApiJson(req) = match body {
        Ok(b) => b,
        Err(r) => return reject(&node, &headers, "key.repair", r),
    };
    let (n, key) = (node.clone(), name.clone());
    audited(&node, &headers, "key.repair", Some(&name), |c| async move {
        require_admin(&c)?;
        n.driver().repair_key(&n, &key, req.node).await?;
        n.key_record(&key)
            .await
            .map(|r| key_info(&r))
            .ok_or_else(|| NodeError::NotFound(format!("no key named {key}")))
    })
    .await
}

/// Ask for an export (temporary reconstruction) of a key. It runs only after
/// as many operators as the key's threshold, other than the requester,
/// approve it, and only once.
#[utoipa::path(post, path = "/v1/keys/{name}/exports", params(("name" = String, Path, description = "key name")),
    request_body = ExportRequest, security(("bearer" = [])),
    responses((status = 200, body = ExportRecord), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn request_export(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<ApiJson<ExportRequest>, Response>,
) -> Response {
    let ApiJson(req) = match body {
        Ok(b) => b,
        Err(r) => return reject(&node, &headers, "export.request", r),
    };
    let (n, key) = (node.clone(), name.clone());
    audited(
        &node,
        &headers,
        "export.request",
        Some(&name),
        |c| async move {
            require_admin(&c)?;
            crate::peer::seal_to(&req.recipient, b"check", b"", b"")?;
            let record = n
                .key_record(&key)
                .await
                .ok_or_else(|| NodeError::NotFound(format!("no key named {key}")))?;
            let mut id = [0u8; 16];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
            let export = ExportRecord {
                id: hex::encode(id),
                key: key.clone(),
                epoch: record.epoch,
                requested_by: c.grant.name.clone(),
                approvals: Vec::new(),
                needed: record.threshold,
                done: false,
                recipient: req.recipient,
                created_ms: crate::peer::now_ms(),
            };
            commit(
                &n,
                Command::RequestExport {
                    record: export.clone(),
                },
            )
            .await?;
            Ok(export)
        },
    )
    .await
}

/// List export requests.
#[utoipa::path(get, path = "/v1/exports", security(("bearer" = [])),
    responses((status = 200, body = ExportList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_exports(State(node): State<Node>, headers: HeaderMap) -> Response {
    let n = node.clone();
    audited(&node, &headers, "export.list", None, |c| async move {
        require_operator_or_admin(&c)?;
        let mut exports: Vec<ExportRecord> = n.registry(|r| r.exports.values().cloned().collect());
        exports.sort_by_key(|e| e.created_ms);
        Ok(ExportList { exports })
    })
    .await
}

/// Approve an export request (operator tokens; not the requester's).
#[utoipa::path(post, path = "/v1/exports/{id}/approve", params(("id" = String, Path, description = "export id")),
    security(("bearer" = [])),
    responses((status = 200, body = ExportRecord), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn approve_export(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (n, eid) = (node.clone(), id.clone());
    audited(
        &node,
        &headers,
        "export.approve",
        Some(&id),
        |c| async move {
            if !c.grant.operator {
                return Err(NodeError::Forbidden(format!(
                    "token {} is not an operator token",
                    c.grant.name
                )));
            }
            commit(
                &n,
                Command::ApproveExport {
                    id: eid.clone(),
                    operator: c.grant.name.clone(),
                },
            )
            .await?;
            n.registry(|r| r.exports.get(&eid).cloned())
                .ok_or_else(|| NodeError::NotFound(format!("no export {eid}")))
        },
    )
    .await
}

/// Carry out an approved export (the requester's token): the key is rebuilt
/// from threshold-many shares, sealed to the requester's X25519 key and
/// zeroized. Runs once.
#[utoipa::path(post, path = "/v1/exports/{id}/run", params(("id" = String, Path, description = "export id")),
    security(("bearer" = [])),
    responses((status = 200, body = ExportResult), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn run_export(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (n, eid) = (node.clone(), id.clone());
    audited(&node, &headers, "export.run", Some(&id), |c| async move {
        // The approvals may have been committed through other nodes a
        // moment ago: see everything committed before deciding.
        n.read_barrier().await?;
        let export = n
            .registry(|r| r.exports.get(&eid).cloned())
            .ok_or_else(|| NodeError::NotFound(format!("no export {eid}")))?;
        if export.requested_by != c.grant.name {
            return Err(NodeError::Forbidden(
                "only the requester's token runs an export".into(),
            ));
        }
        if export.done {
            return Err(NodeError::Conflict("export already carried out".into()));
        }
        if export.approvals.len() < usize::from(export.needed) {
            return Err(NodeError::Forbidden(format!(
                "export has {} of {} approvals",
                export.approvals.len(),
                export.needed
            )));
        }
        n.driver().run_export(&n, &eid).await
    })
    .await
}

/// Issue a bearer token (shown once; stored as a SHA-256 hash).
#[utoipa::path(post, path = "/v1/tokens", request_body = CreateTokenRequest, security(("bearer" = [])),
    responses((status = 200, body = TokenCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_token(
    State(node): State<Node>,
    headers: HeaderMap,
    body: Result<ApiJson<CreateTokenRequest>, Response>,
) -> Response {
    let ApiJson(req) = match body {
        Ok(b) => b,
        Err(r) => return reject(&node, &headers, "token.create", r),
    };
    let n = node.clone();
    let target = req.name.clone();
    audited(
        &node,
        &headers,
        "token.create",
        Some(&target),
        |c| async move {
            require_admin(&c)?;
            crate::driver::check_key_name(&req.name).map_err(|_| {
                NodeError::BadRequest("token names are 1-64 characters from [A-Za-z0-9._-]".into())
            })?;
            if req.sign_keys.len() > 1024 || req.sign_keys.iter().any(|k| k.len() > 64) {
                return Err(NodeError::BadRequest(
                    "too many or too long sign_keys".into(),
                ));
            }
            if n.registry(|r| r.tokens.values().any(|g| g.name == req.name)) {
                return Err(NodeError::Conflict(format!(
                    "a token named {} exists",
                    req.name
                )));
            }
            let token = crate::dev::new_token();
            commit(
                &n,
                Command::PutToken {
                    token_hash: token_hash(&token),
                    grant: TokenGrant {
                        name: req.name.clone(),
                        admin: req.admin,
                        operator: req.operator,
                        sign_keys: req.sign_keys,
                    },
                },
            )
            .await?;
            Ok(TokenCreated {
                name: req.name,
                token,
            })
        },
    )
    .await
}

/// Add a node to the cluster: as a learner, then (by default) as a voter
/// through joint consensus. Start the node first, with the cluster's nodes
/// as its bootstrap peers.
#[utoipa::path(post, path = "/v1/cluster/nodes", request_body = AddNodeRequest, security(("bearer" = [])),
    responses((status = 200, body = ClusterStatus), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn add_node(
    State(node): State<Node>,
    headers: HeaderMap,
    body: Result<ApiJson<AddNodeRequest>, Response>,
) -> Response {
    let ApiJson(req) = match body {
        Ok(b) => b,
        Err(r) => return reject(&node, &headers, "cluster.add_node", r),
    };
    let n = node.clone();
    let target = req.id.to_string();
    audited(
        &node,
        &headers,
        "cluster.add_node",
        Some(&target),
        |c| async move {
            require_admin(&c)?;
            n.add_node(req).await?;
            Ok(status(&n))
        },
    )
    .await
}

/// Remove a node from the cluster (it must hold no key shares: reshare its
/// keys away first).
#[utoipa::path(delete, path = "/v1/cluster/nodes/{id}", params(("id" = u64, Path, description = "node id")),
    security(("bearer" = [])),
    responses((status = 200, body = ClusterStatus), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
async fn remove_node(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let n = node.clone();
    let target = id.clone();
    audited(
        &node,
        &headers,
        "cluster.remove_node",
        Some(&target),
        |c| async move {
            require_admin(&c)?;
            let id: u64 = id
                .parse()
                .map_err(|_| NodeError::BadRequest("node id must be a number".into()))?;
            n.remove_node(id).await?;
            Ok(status(&n))
        },
    )
    .await
}

fn require_operator_or_admin(c: &Caller) -> Result<(), NodeError> {
    if c.grant.admin || c.grant.operator {
        Ok(())
    } else {
        Err(NodeError::Forbidden(format!(
            "token {} is neither admin nor operator",
            c.grant.name
        )))
    }
}

pub(crate) async fn commit(node: &Node, command: Command) -> Result<(), NodeError> {
    node.commit(command).await.map(drop)
}

/// Audit log page query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// First entry (default 0).
    #[serde(default)]
    offset: Option<u64>,
    /// How many (default 100, at most 1000).
    #[serde(default)]
    limit: Option<u64>,
}

/// A page of the audit log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Total entries.
    pub total: u64,
    /// The entries.
    pub entries: Vec<AuditEntry>,
}

/// The result of verifying the audit log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditVerification {
    /// Whether every link and every signed head verified.
    pub valid: bool,
    /// Entries checked.
    pub entries: u64,
    /// Signed heads checked.
    pub signed_heads: u64,
    /// The last entry a signed head covers (entries after it are chained
    /// but not yet signed).
    #[serde(default)]
    pub signed_through: Option<u64>,
    /// The first fault found.
    #[serde(default)]
    pub fault: Option<String>,
}

/// Read the audit log.
#[utoipa::path(get, path = "/v1/audit", params(AuditQuery), security(("bearer" = [])),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
async fn audit_log(
    State(node): State<Node>,
    headers: HeaderMap,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return NodeError::BadRequest(e.body_text()).into_response(),
    };
    let n = node.clone();
    audited(&node, &headers, "audit.read", None, |c| async move {
        let node = n;
        require_admin(&c)?;
        // Every committed event, not this replica's view of them.
        node.read_barrier().await?;
        let offset = q.offset.unwrap_or(0);
        let limit = q.limit.unwrap_or(100).min(1000);
        Ok(node.registry(|r| AuditPage {
            total: r.audit.len() as u64,
            entries: r
                .audit
                .iter()
                .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                .take(usize::try_from(limit).unwrap_or(0))
                .cloned()
                .collect(),
        }))
    })
    .await
}

/// Verify the audit log's hash chain and signed heads on this node.
#[utoipa::path(get, path = "/v1/audit/verify", security(("bearer" = [])),
    responses((status = 200, body = AuditVerification), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
async fn audit_verify(State(node): State<Node>, headers: HeaderMap) -> Response {
    let n = node.clone();
    audited(&node, &headers, "audit.verify", None, |c| async move {
        let node = n;
        require_admin(&c)?;
        node.read_barrier().await?;
        let (entries, heads) = node.registry(|r| (r.audit.clone(), r.heads.clone()));
        let fault = verify_chain(&entries, &heads, |id| {
            node.node_info(id).map(|i| i.identity)
        })
        .err();
        Ok(AuditVerification {
            valid: fault.is_none(),
            entries: entries.len() as u64,
            signed_heads: heads.len() as u64,
            signed_through: heads.iter().map(|h| h.seq).max(),
            fault: fault.map(|f| f.to_string()),
        })
    })
    .await
}

/// Cluster status.
#[utoipa::path(get, path = "/v1/cluster", security(("bearer" = [])),
    responses((status = 200, body = ClusterStatus), (status = 401, body = ErrorBody)))]
async fn cluster(State(node): State<Node>, headers: HeaderMap) -> Response {
    audited(&node, &headers, "cluster.status", None, |_| async {
        Ok(status(&node))
    })
    .await
}

fn status(node: &Node) -> ClusterStatus {
    let metrics = node.raft().metrics().borrow().clone();
    ClusterStatus {
        node_id: node.id(),
        leader: metrics.current_leader,
        term: metrics.current_term,
        applied: node.applied_index(),
        nodes: node
            .members()
            .into_iter()
            .map(|(id, info, voter)| NodeStatus {
                id,
                addr: info.addr,
                voter,
            })
            .collect(),
        keys: node.registry(|r| r.keys.len()),
        audit_entries: node.registry(|r| r.audit.len() as u64),
    }
}

/// Liveness and readiness.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn healthz(State(node): State<Node>) -> Response {
    let has_leader = node.leader().is_some();
    let h = Health {
        status: if has_leader {
            "ok".into()
        } else {
            "no_leader".into()
        },
        node_id: node.id(),
        has_leader,
    };
    let code = if has_leader {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(h)).into_response()
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(node): State<Node>) -> Response {
    let m = node.metrics();
    let raft = node.raft().metrics().borrow().clone();
    let id = node.id();
    let g = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    let text = format!(
        "# TYPE keyquorum_requests_total counter\n\
         keyquorum_requests_total{{node=\"{id}\",outcome=\"ok\"}} {}\n\
         keyquorum_requests_total{{node=\"{id}\",outcome=\"error\"}} {}\n\
         # TYPE keyquorum_signatures_total counter\nkeyquorum_signatures_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_sign_seconds_sum counter\nkeyquorum_sign_seconds_sum{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_keys_generated_total counter\nkeyquorum_keys_generated_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_peer_rejects_total counter\nkeyquorum_peer_rejects_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_batched_writes_total counter\nkeyquorum_batched_writes_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_write_batches_total counter\nkeyquorum_write_batches_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_raft_term gauge\nkeyquorum_raft_term{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_raft_is_leader gauge\nkeyquorum_raft_is_leader{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_raft_applied_index gauge\nkeyquorum_raft_applied_index{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_keys gauge\nkeyquorum_keys{{node=\"{id}\"}} {}\n",
        g(&m.requests_ok),
        g(&m.requests_err),
        g(&m.signatures),
        g(&m.sign_micros) as f64 / 1e6,
        g(&m.dkgs),
        g(&m.peer_rejects),
        g(&m.batched_writes),
        g(&m.write_batches),
        raft.current_term,
        u8::from(raft.current_leader == Some(id)),
        node.applied_index().unwrap_or(0),
        node.registry(|r| r.keys.len()),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The OpenAPI document.
async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// The peer endpoint: a signed envelope in, a signed envelope out.
///
/// The TLS client certificate must carry the sender's identity: a member
/// cannot relay a message on another connection than its own, and a
/// message without a client certificate is refused before its signature is
/// even checked.
async fn peer(
    State(node): State<Node>,
    tls: Option<Extension<TlsPeer>>,
    body: Result<Json<Envelope>, JsonRejection>,
) -> Response {
    let env = match body {
        Ok(Json(e)) => e,
        Err(r) => {
            node.inner().count_peer_reject();
            return json_rejection(r);
        }
    };
    let from = env.from;
    let checked = node
        .node_info(from)
        .filter(|_| from != node.id())
        .ok_or_else(|| NodeError::PeerRejected(format!("node {from} is not a member")))
        .and_then(|info| {
            let proven = tls.as_ref().and_then(|Extension(TlsPeer(k))| *k);
            match proven {
                Some(k) if bool::from(k.ct_eq(&info.identity.0)) => Ok(info),
                Some(_) => Err(NodeError::PeerRejected(format!(
                    "TLS client certificate is not node {from}'s identity"
                ))),
                None => Err(NodeError::PeerRejected(
                    "peer messages need a TLS client certificate".into(),
                )),
            }
        })
        .and_then(|info| open_envelope(&env, node.id(), &info))
        .and_then(|msg| node.inner().replay.check(&env).map(|()| msg));
    let msg = match checked {
        Ok(m) => m,
        Err(e) => {
            node.inner().count_peer_reject();
            node.audit_event(&format!("peer:{from}"), "peer.reject", None, &e.to_string());
            return e.into_response();
        }
    };
    let reply = match node.handle_peer(from, msg).await {
        Ok(m) => m,
        Err(e) => {
            let (_, code) = e.status();
            let culprits = match &e {
                NodeError::Misbehaved { culprits, .. } => culprits.clone(),
                _ => Vec::new(),
            };
            PeerMessage::Error {
                code: code.to_string(),
                message: e.to_string(),
                culprits,
            }
        }
    };
    match seal_envelope(node.keys(), node.id(), from, &reply) {
        Ok(env) => Json(env).into_response(),
        Err(e) => e.into_response(),
    }
}

// ---- per-message key derivation (crate::msg) ----

/// The messaging deployment: public salt, acceptance window and the nodes
/// coordinators are chosen from (with their identity and HPKE keys).
#[utoipa::path(get, path = "/v1/msg/deployment", security(("bearer" = [])),
    responses((status = 200, body = MsgDeployment), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn msg_deployment(State(node): State<Node>, headers: HeaderMap) -> Response {
    audited(&node, &headers, "msg.deployment", None, |_| {
        crate::msg::deployment(&node)
    })
    .await
}

/// Register a messaging endpoint (an Ed25519 identity) with its first
/// signed one-time prekeys. The calling token owns it.
#[utoipa::path(post, path = "/v1/msg/endpoints", request_body = CreateEndpointRequest, security(("bearer" = [])),
    responses((status = 200, body = EndpointInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn create_endpoint(
    State(node): State<Node>,
    headers: HeaderMap,
    body: Result<ApiJson<CreateEndpointRequest>, Response>,
) -> Response {
    let ApiJson(req) = match body {
        Ok(b) => b,
        Err(r) => return reject(&node, &headers, "msg.endpoint.create", r),
    };
    let target = req.name.clone();
    let n = node.clone();
    audited(
        &node,
        &headers,
        "msg.endpoint.create",
        Some(&target),
        move |c| async move {
            crate::msg::create_endpoint(&n, &c.grant, req.name, req.identity, req.prekeys).await
        },
    )
    .await
}

/// Show an endpoint: identity, owner, revocation, prekeys left, mailbox size.
#[utoipa::path(get, path = "/v1/msg/endpoints/{name}", params(("name" = String, Path, description = "endpoint name")),
    security(("bearer" = [])),
    responses((status = 200, body = EndpointInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_endpoint(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    audited(
        &node,
        &headers,
        "msg.endpoint.show",
        Some(&name),
        // This replica's view: an identity never changes, and the counts
        // may lag by a heartbeat (no leadership round trip per lookup).
        |_| async { crate::msg::endpoint(&node, &name) },
    )
    .await
}

/// Revoke an endpoint (owner or admin): it neither sends nor receives
/// again; its prekeys and mailbox are dropped.
#[utoipa::path(delete, path = "/v1/msg/endpoints/{name}", params(("name" = String, Path, description = "endpoint name")),
    security(("bearer" = [])),
    responses((status = 200, body = EndpointInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn revoke_endpoint(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let (n, nm) = (node.clone(), name.clone());
    audited(
        &node,
        &headers,
        "msg.endpoint.revoke",
        Some(&name),
        move |c| async move { crate::msg::revoke(&n, &c.grant, &nm).await },
    )
    .await
}

/// Publish more signed one-time prekeys (owner or admin).
#[utoipa::path(post, path = "/v1/msg/endpoints/{name}/prekeys", params(("name" = String, Path, description = "endpoint name")),
    request_body = PublishPrekeys, security(("bearer" = [])),
    responses((status = 200, body = EndpointInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
async fn publish_prekeys(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<ApiJson<PublishPrekeys>, Response>,
) -> Response {
    let ApiJson(req) = match body {
        Ok(b) => b,
        Err(r) => return reject(&node, &headers, "msg.prekeys", r),
    };
    let (n, nm) = (node.clone(), name.clone());
    audited(
        &node,
        &headers,
        "msg.prekeys",
        Some(&name),
        move |c| async move { crate::msg::add_prekeys(&n, &c.grant, &nm, req.prekeys).await },
    )
    .await
}

/// Reserve 1 to 64 of the receiver's prekeys, oldest first, for a sending
/// endpoint the caller owns (through consensus: no prekey is handed out
/// twice). Fewer come back when fewer are left; none left is 409.
#[utoipa::path(post, path = "/v1/msg/endpoints/{name}/claim", params(("name" = String, Path, description = "receiving endpoint")),
    request_body = ClaimRequest, security(("bearer" = [])),
    responses((status = 200, body = ClaimedPrekeys), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
async fn claim_prekey(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<ApiJson<ClaimRequest>, Response>,
) -> Response {
    let ApiJson(req) = match body {
        Ok(b) => b,
        Err(r) => return reject(&node, &headers, "msg.claim", r),
    };
    let (n, nm) = (node.clone(), name.clone());
    audited(
        &node,
        &headers,
        "msg.claim",
        Some(&name),
        move |c| async move { crate::msg::claim(&n, &c.grant, &nm, &req.by, req.count).await },
    )
    .await
}

/// Hand a message built by the sending endpoint to its coordinators and,
/// once at least one confirmed, to the receiver's mailbox. Refused: a
/// tampered message, a share off the commitments, a replayed identifier, a
/// timestamp outside the window, the wrong coordinators, an unknown or
/// revoked endpoint, an unclaimed or used prekey.
#[utoipa::path(post, path = "/v1/msg/messages", request_body = SendRequest, security(("bearer" = [])),
    responses((status = 200, body = SendResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn send_message(
    State(node): State<Node>,
    headers: HeaderMap,
    body: Result<ApiJson<SendRequest>, Response>,
) -> Response {
    let ApiJson(req) = match body {
        Ok(b) => b,
        Err(r) => return reject(&node, &headers, "msg.send", r),
    };
    let target = format!("{}->{}", req.from, req.to);
    let n = node.clone();
    audited(
        &node,
        &headers,
        "msg.send",
        Some(&target),
        move |c| async move { crate::msg::send(&n, &c.grant, req).await },
    )
    .await
}

/// The endpoint's waiting messages, oldest first, at most 256 per call;
/// `more` says whether to ack and call again (owner or admin).
#[utoipa::path(get, path = "/v1/msg/endpoints/{name}/inbox", params(("name" = String, Path, description = "endpoint name")),
    security(("bearer" = [])),
    responses((status = 200, body = Inbox), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn inbox(State(node): State<Node>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let (n, nm) = (node.clone(), name.clone());
    audited(
        &node,
        &headers,
        "msg.inbox",
        Some(&name),
        move |c| async move {
            n.read_barrier().await?;
            crate::msg::inbox(&n, &c.grant, &nm).map(|(messages, more)| Inbox { messages, more })
        },
    )
    .await
}

/// Remove opened messages from the mailbox (owner or admin).
#[utoipa::path(post, path = "/v1/msg/endpoints/{name}/inbox/ack", params(("name" = String, Path, description = "endpoint name")),
    request_body = AckRequest, security(("bearer" = [])),
    responses((status = 200, body = AckResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
async fn ack_inbox(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<ApiJson<AckRequest>, Response>,
) -> Response {
    let ApiJson(req) = match body {
        Ok(b) => b,
        Err(r) => return reject(&node, &headers, "msg.ack", r),
    };
    let (n, nm) = (node.clone(), name.clone());
    audited(
        &node,
        &headers,
        "msg.ack",
        Some(&name),
        move |c| async move {
            crate::msg::ack(&n, &c.grant, &nm, req.ids)
                .await
                .map(|removed| AckResponse { removed })
        },
    )
    .await
}

fn reject(node: &Node, headers: &HeaderMap, action: &str, r: Response) -> Response {
    let actor = authenticate(node, headers)
        .map(|c| c.grant.name)
        .unwrap_or_else(|_| "anonymous".into());
    node.audit_event(
        &actor,
        action,
        None,
        &format!("rejected: HTTP {}", r.status().as_u16()),
    );
    node.metrics().requests_err.fetch_add(1, Ordering::Relaxed);
    r
}

async fn not_found() -> Response {
    NodeError::NotFound("no such endpoint".into()).into_response()
}

/// The OpenAPI description of the client API.
#[derive(OpenApi)]
#[openapi(
    info(title = "keyquorum", description = "Threshold key management: distributed key generation and FROST signing by a cluster of nodes; per-message key derivation for authenticated messages between endpoints."),
    paths(create_key, list_keys, get_key, sign, verify, refresh_key, reshare_key, repair_key, request_export, list_exports,
        approve_export, run_export, create_token, add_node, remove_node, audit_log, audit_verify, cluster, healthz, metrics,
        msg_deployment, create_endpoint, get_endpoint, revoke_endpoint, publish_prekeys, claim_prekey, send_message, inbox, ack_inbox),
    components(schemas(CreateKeyRequest, KeyInfo, KeyList, SignRequest, SignResponse, VerifyRequest, VerifyResponse,
        ReshareRequest, RepairRequest, ExportRequest, ExportRecord, ExportList, ExportResult, CreateTokenRequest, TokenCreated, AddNodeRequest,
        ClusterStatus, NodeStatus, Health, ErrorBody, AuditPage, AuditVerification, AuditEntry, SuiteName,
        MsgDeployment, MsgNode, CreateEndpointRequest, EndpointInfo, EndpointRecord, Prekey, PublishPrekeys, ClaimRequest, ClaimedPrekeys,
        SendRequest, SendResponse, CoordinatorBundle, SealedBox, MsgConfirmation, MailItem, Inbox, AckRequest, AckResponse)),
    modifiers(&Security)
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The node's router.
pub fn router(node: Node) -> Router {
    let client = Router::new()
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{name}", get(get_key))
        .route("/v1/keys/{name}/sign", post(sign))
        .route("/v1/keys/{name}/verify", post(verify))
        .route("/v1/keys/{name}/refresh", post(refresh_key))
        .route("/v1/keys/{name}/reshare", post(reshare_key))
        .route("/v1/keys/{name}/repair", post(repair_key))
        .route("/v1/keys/{name}/exports", post(request_export))
        .route("/v1/exports", get(list_exports))
        .route("/v1/exports/{id}/approve", post(approve_export))
        .route("/v1/exports/{id}/run", post(run_export))
        .route("/v1/tokens", post(create_token))
        .route("/v1/cluster/nodes", post(add_node))
        .route("/v1/cluster/nodes/{id}", axum::routing::delete(remove_node))
        .route("/v1/audit", get(audit_log))
        .route("/v1/audit/verify", get(audit_verify))
        .route("/v1/cluster", get(cluster))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/msg/deployment", get(msg_deployment))
        .route("/v1/msg/endpoints", post(create_endpoint))
        .route(
            "/v1/msg/endpoints/{name}",
            get(get_endpoint).delete(revoke_endpoint),
        )
        .route("/v1/msg/endpoints/{name}/prekeys", post(publish_prekeys))
        .route("/v1/msg/endpoints/{name}/claim", post(claim_prekey))
        .route("/v1/msg/endpoints/{name}/inbox", get(inbox))
        .route("/v1/msg/endpoints/{name}/inbox/ack", post(ack_inbox))
        .route("/v1/msg/messages", post(send_message))
        .route("/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(CLIENT_BODY_LIMIT))
        .layer(axum::middleware::from_fn(refuse_oversized));
    let peer_routes = Router::new()
        .route(PEER_PATH, post(peer))
        .layer(DefaultBodyLimit::max(PEER_BODY_LIMIT));
    client
        .merge(peer_routes)
        .fallback(not_found)
        .with_state(node)
}
