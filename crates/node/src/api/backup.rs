//! Backup routes (`cluster::backup`): a member's signed attestation of one
//! of its checkpoints (`GET /v1/checkpoints/{index}`, public: a digest of
//! state and a signature, nothing more) and the newest checkpoint with the
//! audit log's signed heads (`GET /v1/snapshot`, an admin).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keyquorum_wire::api::{CheckpointAttestation, ErrorBody, SnapshotDownload};

use super::Audited;
use crate::cluster::Node;
use crate::error::NodeError;

/// The backup routes.
pub(crate) fn routes(node: Node) -> Router {
    Router::new()
        .route("/v1/snapshot", get(snapshot))
        .route("/v1/checkpoints/{index}", get(checkpoint))
        .with_state(node)
}

/// This node's signed attestation of its checkpoint at `index` (it keeps
/// its newest few). Public.
#[utoipa::path(get, path = "/v1/checkpoints/{index}", params(("index" = u64, Path, description = "the checkpoint's log index")),
    responses((status = 200, body = CheckpointAttestation), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn checkpoint(
    State(node): State<Node>,
    index: Result<Path<u64>, axum::extract::rejection::PathRejection>,
) -> Response {
    let index = match index {
        Ok(Path(i)) => i,
        Err(e) => return NodeError::BadRequest(e.body_text()).into_response(),
    };
    match node.checkpoint_attestation(index) {
        Ok(a) => (StatusCode::OK, Json(a)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The newest checkpoint this node holds, its own attestation of it and
/// the audit log's signed heads: what `keyquorum snapshot save` starts
/// from (an admin).
#[utoipa::path(get, path = "/v1/snapshot", security(("httpsig" = [])),
    responses((status = 200, body = SnapshotDownload), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn snapshot(req: Audited, State(node): State<Node>) -> Response {
    req.run("snapshot.save", None, |c| async move {
        c.require_admin()?;
        tokio::task::spawn_blocking(move || node.snapshot_download())
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))?
    })
    .await
}
