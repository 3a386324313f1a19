//! Joining routes (`cluster::join`): the members a joining node checks
//! against its join code (`GET /v1/join`, public), its signed request
//! (`POST /v1/join`, public: it only informs the operators), and the
//! requests this node holds (`GET /v1/joins`, an operator or admin).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keyquorum_wire::api::{ErrorBody, JoinInfo, JoinList, JoinRequest, JoinStatus};

use super::{ApiJson, Audited};
use crate::cluster::Node;

/// The joining routes.
pub(crate) fn routes(node: Node) -> Router {
    Router::new()
        .route("/v1/join", get(join_info).post(join))
        .route("/v1/joins", get(list_joins))
        .with_state(node)
}

/// The members (ids, addresses, identity and HPKE keys, voters) and their
/// fingerprint: what a joining node checks against its join code. Public.
#[utoipa::path(get, path = "/v1/join", responses((status = 200, body = JoinInfo), (status = 409, body = ErrorBody)))]
pub(crate) async fn join_info(State(node): State<Node>) -> Response {
    match node.join_info() {
        Ok(info) => (StatusCode::OK, Json(info)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A node asks to join: kept (in this node's memory) for the operators if
/// its signature is its identity's, it is fresh, and it is for these
/// members. Joining takes the operator quorum's approval (`keyquorum
/// operator join`). Not signed by a client: refusals are counted, not
/// audited.
#[utoipa::path(post, path = "/v1/join", request_body = JoinRequest,
    responses((status = 200, body = JoinStatus), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn join(
    State(node): State<Node>,
    source: Option<axum::Extension<crate::cluster::tls::Source>>,
    body: Result<ApiJson<JoinRequest>, Response>,
) -> Response {
    let req = match body {
        Ok(ApiJson(r)) => r,
        Err(rejection) => return rejection,
    };
    let id = req.id.to_string();
    match node.accept_join(req, source.map(|axum::Extension(s)| s)) {
        Ok(status) => {
            if status.status == "pending" {
                tracing::info!(node = %id, "a node asks to join: `keyquorum operator join`");
            }
            (StatusCode::OK, Json(status)).into_response()
        }
        Err(e) => {
            node.refusal(
                None,
                "cluster.join",
                Some(&id),
                &e.to_string().chars().take(300).collect::<String>(),
            );
            e.into_response()
        }
    }
}

/// The join requests this node holds for nodes not yet members (an
/// operator or admin).
#[utoipa::path(get, path = "/v1/joins", security(("httpsig" = [])),
    responses((status = 200, body = JoinList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_joins(req: Audited, State(node): State<Node>) -> Response {
    req.run("cluster.joins", None, |c| async move {
        c.require_operator_or_admin()?;
        Ok(JoinList {
            requests: node.pending_joins(),
        })
    })
    .await
}
