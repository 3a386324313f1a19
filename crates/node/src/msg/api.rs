//! Per-message key derivation's client routes, under `/v1/msg`: the
//! deployment, endpoints and their prekeys, claims, sending, the inbox.
//! Each handler is its domain logic; [`Audited`] authenticates, audits and
//! answers.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use keyquorum_wire::api::ErrorBody;
use keyquorum_wire::msg::{
    AckRequest, AckResponse, ClaimRequest, ClaimedPrekeys, CreateEndpointRequest, EndpointInfo,
    Inbox, MsgDeployment, PublishPrekeys, SendRequest, SendResponse,
};

use crate::api::{ApiJson, Audited};
use crate::cluster::Node;

/// Messaging's routes.
pub(crate) fn routes(node: Node) -> Router {
    Router::new()
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
        .with_state(node)
}

/// The messaging deployment: public salt, acceptance window and the nodes
/// coordinators are chosen from (with their identity and HPKE keys).
#[utoipa::path(get, path = "/v1/msg/deployment", security(("httpsig" = [])),
    responses((status = 200, body = MsgDeployment), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn msg_deployment(req: Audited, State(node): State<Node>) -> Response {
    req.run("msg.deployment", None, |_| super::deployment(&node))
        .await
}

/// Register a messaging endpoint (an Ed25519 identity) with its first
/// signed one-time prekeys. The calling token owns it.
#[utoipa::path(post, path = "/v1/msg/endpoints", request_body = CreateEndpointRequest, security(("httpsig" = [])),
    responses((status = 200, body = EndpointInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn create_endpoint(
    req: Audited,
    State(node): State<Node>,
    body: Result<ApiJson<CreateEndpointRequest>, Response>,
) -> Response {
    req.run_json(
        "msg.endpoint.create",
        body,
        |b| Some(b.name.clone()),
        |c, req| async move {
            super::create_endpoint(&node, &c, req.name, req.identity, req.prekeys).await
        },
    )
    .await
}

/// Show an endpoint: identity, owner, revocation, prekeys left, mailbox size.
#[utoipa::path(get, path = "/v1/msg/endpoints/{name}", params(("name" = String, Path, description = "endpoint name")),
    security(("httpsig" = [])),
    responses((status = 200, body = EndpointInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_endpoint(
    req: Audited,
    State(node): State<Node>,
    Path(name): Path<String>,
) -> Response {
    req.run(
        "msg.endpoint.show",
        Some(&name),
        // This replica's view: an identity never changes, and the counts
        // may lag by a heartbeat (no leadership round trip per lookup).
        |_| async { super::endpoint(&node, &name) },
    )
    .await
}

/// Revoke an endpoint (owner or admin): it neither sends nor receives
/// again; its prekeys and mailbox are dropped.
#[utoipa::path(delete, path = "/v1/msg/endpoints/{name}", params(("name" = String, Path, description = "endpoint name")),
    security(("httpsig" = [])),
    responses((status = 200, body = EndpointInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn revoke_endpoint(
    req: Audited,
    State(node): State<Node>,
    Path(name): Path<String>,
) -> Response {
    let target = name.clone();
    req.run("msg.endpoint.revoke", Some(&target), |c| async move {
        super::revoke(&node, &c, &name).await
    })
    .await
}

/// Publish more signed one-time prekeys (owner or admin).
#[utoipa::path(post, path = "/v1/msg/endpoints/{name}/prekeys", params(("name" = String, Path, description = "endpoint name")),
    request_body = PublishPrekeys, security(("httpsig" = [])),
    responses((status = 200, body = EndpointInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn publish_prekeys(
    req: Audited,
    State(node): State<Node>,
    Path(name): Path<String>,
    body: Result<ApiJson<PublishPrekeys>, Response>,
) -> Response {
    let target = name.clone();
    req.run_json(
        "msg.prekeys",
        body,
        move |_| Some(target),
        |c, req| async move { super::add_prekeys(&node, &c, &name, req.prekeys).await },
    )
    .await
}

/// Reserve 1 to 64 of the receiver's prekeys, oldest first, for a sending
/// endpoint the caller owns (through consensus: no prekey is handed out
/// twice). Fewer come back when fewer are left; none left is 409.
#[utoipa::path(post, path = "/v1/msg/endpoints/{name}/claim", params(("name" = String, Path, description = "receiving endpoint")),
    request_body = ClaimRequest, security(("httpsig" = [])),
    responses((status = 200, body = ClaimedPrekeys), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn claim_prekey(
    req: Audited,
    State(node): State<Node>,
    Path(name): Path<String>,
    body: Result<ApiJson<ClaimRequest>, Response>,
) -> Response {
    let target = name.clone();
    req.run_json(
        "msg.claim",
        body,
        move |_| Some(target),
        |c, req| async move { super::claim(&node, &c, &name, &req.by, req.count).await },
    )
    .await
}

/// Hand a message built by the sending endpoint to its coordinators and,
/// once at least one confirmed, to the receiver's mailbox. Refused: a
/// tampered message, a share off the commitments, a replayed identifier, a
/// timestamp outside the window, the wrong coordinators, an unknown or
/// revoked endpoint, an unclaimed or used prekey.
#[utoipa::path(post, path = "/v1/msg/messages", request_body = SendRequest, security(("httpsig" = [])),
    responses((status = 200, body = SendResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn send_message(
    req: Audited,
    State(node): State<Node>,
    body: Result<ApiJson<SendRequest>, Response>,
) -> Response {
    req.run_json(
        "msg.send",
        body,
        |b| Some(format!("{}->{}", b.from, b.to)),
        |c, req| async move { super::send(&node, &c.grant, req).await },
    )
    .await
}

/// The endpoint's waiting messages, oldest first, at most 256 per call;
/// `more` says whether to ack and call again (owner or admin).
#[utoipa::path(get, path = "/v1/msg/endpoints/{name}/inbox", params(("name" = String, Path, description = "endpoint name")),
    security(("httpsig" = [])),
    responses((status = 200, body = Inbox), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn inbox(
    req: Audited,
    State(node): State<Node>,
    Path(name): Path<String>,
) -> Response {
    let target = name.clone();
    req.run("msg.inbox", Some(&target), |c| async move {
        node.read_barrier().await?;
        super::inbox(&node, &c.grant, &name).map(|(messages, more)| Inbox { messages, more })
    })
    .await
}

/// Remove opened messages from the mailbox (owner or admin).
#[utoipa::path(post, path = "/v1/msg/endpoints/{name}/inbox/ack", params(("name" = String, Path, description = "endpoint name")),
    request_body = AckRequest, security(("httpsig" = [])),
    responses((status = 200, body = AckResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn ack_inbox(
    req: Audited,
    State(node): State<Node>,
    Path(name): Path<String>,
    body: Result<ApiJson<AckRequest>, Response>,
) -> Response {
    let target = name.clone();
    req.run_json(
        "msg.ack",
        body,
        move |_| Some(target),
        |c, req| async move {
            super::ack(&node, &c, &name, req.ids)
                .await
                .map(|removed| AckResponse { removed })
        },
    )
    .await
}
