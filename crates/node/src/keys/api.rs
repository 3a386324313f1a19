//! Shared keys' client routes: `/v1/keys` (create by DKG, list, show, sign,
//! verify, refresh, reshare, repair) and `/v1/exports` (request, approve,
//! run). Each handler is its domain logic; [`Audited`] authenticates,
//! audits and answers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRef, Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use keyquorum_wire::api::{
    ApprovalRequest, CreateKeyRequest, ErrorBody, ExportList, ExportRequest, ExportResult, KeyInfo,
    KeyList, RepairRequest, ReshareRequest, SignRequest, SignResponse, VerifyRequest,
    VerifyResponse,
};
use keyquorum_wire::control::{ExportRecord, KeysCommand};

use super::{key_info, key_record, verify_signature, Keys};
use crate::api::{ApiJson, Audited, Caller};
use crate::cluster::Node;
use crate::error::NodeError;

/// Largest message to sign.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The routes' state: this node and its shared keys.
#[derive(Clone)]
pub(crate) struct KeysApi {
    node: Node,
    keys: Arc<Keys>,
}

impl FromRef<KeysApi> for Node {
    fn from_ref(s: &KeysApi) -> Node {
        s.node.clone()
    }
}

/// Shared keys' routes.
pub(crate) fn routes(node: Node, keys: Arc<Keys>) -> Router {
    Router::new()
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
        .with_state(KeysApi { node, keys })
}

/// Refused unless the token may sign with `key`.
fn may_sign(c: &Caller, key: &str) -> Result<(), NodeError> {
    if c.grant.admin || c.grant.sign_keys.iter().any(|k| k == "*" || k == key) {
        Ok(())
    } else {
        Err(NodeError::Forbidden(format!(
            "client {} may not sign with {key}",
            c.grant.name
        )))
    }
}

/// Create a shared key by distributed key generation.
#[utoipa::path(post, path = "/v1/keys", request_body = CreateKeyRequest, security(("httpsig" = [])),
    responses((status = 200, body = KeyInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn create_key(
    req: Audited,
    State(s): State<KeysApi>,
    body: Result<ApiJson<CreateKeyRequest>, Response>,
) -> Response {
    req.run_json(
        "key.create",
        body,
        |b| Some(b.name.clone()),
        |c, req| async move {
            c.require_admin()?;
            if req.suite == keyquorum_wire::api::SuiteName::Ristretto255
                || req.name.starts_with(keyquorum_wire::he::KEY_PREFIX)
                || req.name.starts_with(keyquorum_wire::oprf::KEY_PREFIX)
                || keyquorum_wire::recovery::is_reset_key(&req.name)
                || keyquorum_wire::recovery::is_pin_key(&req.name)
            {
                return Err(NodeError::BadRequest(
                    "ristretto255 keys, he.*, oprf.*, reset.* and pin.* names are encrypted-data \
                     sessions' (POST /v1/he/sessions), OPRF keys' (POST /v1/oprf/keys) and \
                     accounts' (POST /v1/recovery/accounts)"
                        .into(),
                ));
            }
            let node = &s.node;
            let (members, threshold) = super::new_key_shape(node, req.members, req.threshold);
            let info = s
                .keys
                .create_key(
                    node,
                    super::create::NewKey {
                        name: req.name,
                        suite: req.suite,
                        threshold,
                        members,
                        min_members: req.min_members,
                    },
                    &c.signed,
                )
                .await?;
            node.metrics().dkgs.fetch_add(1, Ordering::Relaxed);
            Ok(info)
        },
    )
    .await
}

/// List keys.
#[utoipa::path(get, path = "/v1/keys", security(("httpsig" = [])),
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_keys(req: Audited, State(s): State<KeysApi>) -> Response {
    req.run("key.list", None, |_| async move {
        Ok(KeyList {
            keys: s
                .node
                .registry(|r| r.keys.records.values().map(key_info).collect()),
        })
    })
    .await
}

/// Show one key.
#[utoipa::path(get, path = "/v1/keys/{name}", params(("name" = String, Path, description = "key name")),
    security(("httpsig" = [])),
    responses((status = 200, body = KeyInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_key(
    req: Audited,
    State(s): State<KeysApi>,
    Path(name): Path<String>,
) -> Response {
    req.run("key.show", Some(&name), |_| async {
        key_record(&s.node, &name).await.map(|r| key_info(&r))
    })
    .await
}

/// Threshold-sign a message.
#[utoipa::path(post, path = "/v1/keys/{name}/sign", params(("name" = String, Path, description = "key name")),
    request_body = SignRequest, security(("httpsig" = [])),
    responses((status = 200, body = SignResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn sign(
    req: Audited,
    State(s): State<KeysApi>,
    Path(name): Path<String>,
    body: Result<ApiJson<SignRequest>, Response>,
) -> Response {
    let target = name.clone();
    req.run_json(
        "key.sign",
        body,
        move |_| Some(target),
        |c, req| async move {
            may_sign(&c, &name)?;
            if req.message.0.len() > MAX_MESSAGE {
                return Err(NodeError::BadRequest(format!(
                    "messages are at most {MAX_MESSAGE} bytes"
                )));
            }
            let start = Instant::now();
            let r = s
                .keys
                .sign(&s.node, &name, &req.message.0, &c.signed)
                .await?;
            let m = s.node.metrics();
            m.signatures.fetch_add(1, Ordering::Relaxed);
            m.sign_micros.fetch_add(
                u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            Ok(r)
        },
    )
    .await
}

/// Verify a signature under a key (an ordinary single-signer verification).
#[utoipa::path(post, path = "/v1/keys/{name}/verify", params(("name" = String, Path, description = "key name")),
    request_body = VerifyRequest, security(("httpsig" = [])),
    responses((status = 200, body = VerifyResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn verify(
    req: Audited,
    State(s): State<KeysApi>,
    Path(name): Path<String>,
    body: Result<ApiJson<VerifyRequest>, Response>,
) -> Response {
    let target = name.clone();
    req.run_json(
        "key.verify",
        body,
        move |_| Some(target),
        |_, req| async move {
            let record = key_record(&s.node, &name).await?;
            let valid = verify_signature(
                record.suite,
                &record.public_key.0,
                &req.message.0,
                &req.signature.0,
            );
            Ok(VerifyResponse { valid })
        },
    )
    .await
}

/// Refresh every holder's share of a key (same public key, threshold and
/// members; the epoch advances).
#[utoipa::path(post, path = "/v1/keys/{name}/refresh", params(("name" = String, Path, description = "key name")),
    security(("httpsig" = [])),
    responses((status = 200, body = KeyInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn refresh_key(
    req: Audited,
    State(s): State<KeysApi>,
    Path(name): Path<String>,
) -> Response {
    let target = name.clone();
    req.run("key.refresh", Some(&target), |c| async move {
        c.require_admin()?;
        s.keys.refresh_key(&s.node, &name, &c.signed).await
    })
    .await
}

/// Reshare a key to a new threshold and member set (new nodes included);
/// the public key stays the same and the epoch advances. Old shares remain
/// usable until the new generation is committed.
#[utoipa::path(post, path = "/v1/keys/{name}/reshare", params(("name" = String, Path, description = "key name")),
    request_body = ReshareRequest, security(("httpsig" = [])),
    responses((status = 200, body = KeyInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn reshare_key(
    req: Audited,
    State(s): State<KeysApi>,
    Path(name): Path<String>,
    body: Result<ApiJson<ReshareRequest>, Response>,
) -> Response {
    let target = name.clone();
    req.run_json(
        "key.reshare",
        body,
        move |_| Some(target),
        |c, req| async move {
            c.require_admin()?;
            s.keys
                .reshare_key(&s.node, &name, req.threshold, req.members, &c.signed)
                .await
        },
    )
    .await
}

/// Rebuild one member's lost share of a key from `t` other holders (none of
/// them learns it); the member checks it against its public share.
#[utoipa::path(post, path = "/v1/keys/{name}/repair", params(("name" = String, Path, description = "key name")),
    request_body = RepairRequest, security(("httpsig" = [])),
    responses((status = 200, body = KeyInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn repair_key(
    req: Audited,
    State(s): State<KeysApi>,
    Path(name): Path<String>,
    body: Result<ApiJson<RepairRequest>, Response>,
) -> Response {
    let target = name.clone();
    req.run_json(
        "key.repair",
        body,
        move |_| Some(target),
        |c, req| async move {
            c.require_admin()?;
            s.keys.repair_key(&s.node, &name, req.node).await?;
            key_record(&s.node, &name).await.map(|r| key_info(&r))
        },
    )
    .await
}

/// Ask for an export (temporary reconstruction) of a key. It runs only after
/// the operator quorum (distinct operators, not the requester) approves it,
/// and only once.
#[utoipa::path(post, path = "/v1/keys/{name}/exports", params(("name" = String, Path, description = "key name")),
    request_body = ExportRequest, security(("httpsig" = [])),
    responses((status = 200, body = ExportRecord), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn request_export(
    req: Audited,
    State(s): State<KeysApi>,
    Path(name): Path<String>,
    body: Result<ApiJson<ExportRequest>, Response>,
) -> Response {
    let target = name.clone();
    req.run_json(
        "export.request",
        body,
        move |_| Some(target),
        |c, req| async move {
            c.require_admin()?;
            crate::cluster::peer::seal_to(&req.recipient, b"check", b"", b"")?;
            let record = key_record(&s.node, &name).await?;
            let quorum = s.node.registry(|r| r.operators.quorum);
            if quorum == 0 {
                return Err(NodeError::Conflict(
                    "the cluster has no operators to approve an export (keyquorum init)".into(),
                ));
            }
            // Every replica checks it again on apply.
            s.node
                .registry(|r| match r.rules >= crate::msg::quota::QUOTA_RULES {
                    true => r.keys.export_quota(&c.grant.name),
                    false => Ok(()),
                })
                .map_err(NodeError::TooMany)?;
            let mut id = [0u8; 16];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
            let export = ExportRecord {
                id: hex::encode(id),
                key: name.clone(),
                epoch: record.epoch,
                requested_by: c.grant.name.clone(),
                approvals: Vec::new(),
                needed: quorum,
                done: false,
                recipient: req.recipient,
                created_ms: crate::cluster::peer::now_ms(),
            };
            s.node
                .commit(c.authorize(KeysCommand::RequestExport {
                    record: export.clone(),
                }))
                .await?;
            Ok(export)
        },
    )
    .await
}

/// List export requests.
#[utoipa::path(get, path = "/v1/exports", security(("httpsig" = [])),
    responses((status = 200, body = ExportList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_exports(req: Audited, State(s): State<KeysApi>) -> Response {
    req.run("export.list", None, |c| async move {
        c.require_operator_or_admin()?;
        let mut exports: Vec<ExportRecord> = s
            .node
            .registry(|r| r.keys.exports.values().cloned().collect());
        exports.sort_by_key(|e| e.created_ms);
        Ok(ExportList { exports })
    })
    .await
}

/// Approve an export request (operator tokens; not the requester's). The
/// body names the export as the operator read it (required from apply
/// rules 14).
#[utoipa::path(post, path = "/v1/exports/{id}/approve", params(("id" = String, Path, description = "export id")),
    request_body = keyquorum_wire::api::ApprovalRequest, security(("httpsig" = [])),
    responses((status = 200, body = ExportRecord), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn approve_export(
    req: Audited,
    State(s): State<KeysApi>,
    Path(id): Path<String>,
) -> Response {
    let target = id.clone();
    req.run("export.approve", Some(&target), |c| async move {
        if !c.grant.operator {
            return Err(NodeError::Forbidden(format!(
                "token {} is not an operator token",
                c.grant.name
            )));
        }
        s.node.read_barrier().await?;
        let held = s
            .node
            .registry(|r| r.keys.exports.get(&id).map(ApprovalRequest::of_export))
            .ok_or_else(|| NodeError::NotFound(format!("no export {id}")))?;
        crate::api::operators::check_approval(&s.node, &c, &id, held)?;
        s.node
            .commit(c.authorize(KeysCommand::ApproveExport {
                id: id.clone(),
                operator: c.grant.name.clone(),
            }))
            .await?;
        s.node
            .registry(|r| r.keys.exports.get(&id).cloned())
            .ok_or_else(|| NodeError::NotFound(format!("no export {id}")))
    })
    .await
}

/// Carry out an approved export (the requester's token): the key is rebuilt
/// from threshold-many shares, sealed to the requester's X25519 key and
/// zeroized. Runs once.
#[utoipa::path(post, path = "/v1/exports/{id}/run", params(("id" = String, Path, description = "export id")),
    security(("httpsig" = [])),
    responses((status = 200, body = ExportResult), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn run_export(
    req: Audited,
    State(s): State<KeysApi>,
    Path(id): Path<String>,
) -> Response {
    let target = id.clone();
    req.run("export.run", Some(&target), |c| async move {
        let node = &s.node;
        // The approvals may have been committed through other nodes a
        // moment ago: see everything committed before deciding.
        node.read_barrier().await?;
        let export = node
            .registry(|r| r.keys.exports.get(&id).cloned())
            .ok_or_else(|| NodeError::NotFound(format!("no export {id}")))?;
        if export.requested_by != c.grant.name {
            return Err(NodeError::Forbidden(
                "only the requester's token runs an export".into(),
            ));
        }
        if export.done {
            return Err(NodeError::Conflict("export already carried out".into()));
        }
        let approvals = node.registry(|r| {
            let live = r.live_operators();
            export
                .approvals
                .iter()
                .filter(|a| live.contains(*a))
                .count()
        });
        if approvals < usize::from(export.needed) {
            return Err(NodeError::Forbidden(format!(
                "export has {approvals} of {} approvals by live operators",
                export.needed
            )));
        }
        s.keys.run_export(node, &id, &c.signed).await
    })
    .await
}
