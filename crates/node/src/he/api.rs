//! Encrypted-data sessions' client routes, under `/v1/he`: create, list,
//! show, submit, close, result, transcript. Each handler is its domain
//! logic; [`Audited`] authenticates, audits and answers. The session's key
//! (`he.NAME`) is reshared through `/v1/keys/he.NAME/reshare`.

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use keyquorum_wire::api::ErrorBody;
use keyquorum_wire::he::{
    CreateHeSessionRequest, HeInputsStatement, HeResultResponse, HeSessionInfo, HeSessionList,
    HeTranscript, SubmitInputRequest, SubmitInputResponse,
};

use super::He;
use crate::api::{ApiJson, Audited};
use crate::cluster::Node;

/// The routes' state: this node and its sessions.
#[derive(Clone)]
pub(crate) struct HeApi {
    node: Node,
    he: Arc<He>,
}

impl FromRef<HeApi> for Node {
    fn from_ref(s: &HeApi) -> Node {
        s.node.clone()
    }
}

/// Sessions' routes.
pub(crate) fn routes(node: Node, he: Arc<He>) -> Router {
    Router::new()
        .route("/v1/he/sessions", post(create_session).get(list_sessions))
        .route("/v1/he/sessions/{name}", get(get_session))
        .route("/v1/he/sessions/{name}/inputs", post(submit_input))
        .route("/v1/he/sessions/{name}/close", post(close_session))
        .route("/v1/he/sessions/{name}/result", post(session_result))
        .route("/v1/he/sessions/{name}/transcript", get(session_transcript))
        .with_state(HeApi { node, he })
}

/// Create a session: a DKG for its key (`he.NAME`, ristretto255) among its
/// members, and its policy fixed for good (an admin).
#[utoipa::path(post, path = "/v1/he/sessions", request_body = CreateHeSessionRequest, security(("httpsig" = [])),
    responses((status = 200, body = HeSessionInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn create_session(
    req: Audited,
    State(s): State<HeApi>,
    body: Result<ApiJson<CreateHeSessionRequest>, Response>,
) -> Response {
    req.run_json(
        "he.create",
        body,
        |b| Some(b.name.clone()),
        |c, req| async move {
            c.require_admin()?;
            s.he.create(&s.node, req, &c.grant.name, &c.signed).await
        },
    )
    .await
}

/// List sessions.
#[utoipa::path(get, path = "/v1/he/sessions", security(("httpsig" = [])),
    responses((status = 200, body = HeSessionList), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_sessions(req: Audited, State(s): State<HeApi>) -> Response {
    req.run("he.list", None, |_| async move { Ok(He::list(&s.node)) })
        .await
}

/// Show a session.
#[utoipa::path(get, path = "/v1/he/sessions/{name}", params(("name" = String, Path, description = "session name")),
    security(("httpsig" = [])),
    responses((status = 200, body = HeSessionInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_session(
    req: Audited,
    State(s): State<HeApi>,
    Path(name): Path<String>,
) -> Response {
    let target = name.clone();
    req.run("he.show", Some(&target), |_| async move {
        // What a client then states in a close or result request: the
        // committed inputs, not this replica's view a moment behind.
        s.node.read_barrier().await?;
        He::info(&s.node, &name)
    })
    .await
}

/// Submit an input: its ciphertext and the proof the session's policy
/// asks, bound to the session and the submitting client. Every replica
/// checks the proof.
#[utoipa::path(post, path = "/v1/he/sessions/{name}/inputs", params(("name" = String, Path, description = "session name")),
    request_body = SubmitInputRequest, security(("httpsig" = [])),
    responses((status = 200, body = SubmitInputResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn submit_input(
    req: Audited,
    State(s): State<HeApi>,
    Path(name): Path<String>,
    body: Result<ApiJson<SubmitInputRequest>, Response>,
) -> Response {
    let target = name.clone();
    req.run_json(
        "he.submit",
        body,
        move |_| Some(target),
        |c, req| async move {
            s.he.submit(&s.node, &name, req, &c.grant.name, &c.signed)
                .await
        },
    )
    .await
}

/// Close a session with exactly the inputs the body states (count and hash
/// chain, as the client saw them): its aggregate is final (the creator, a
/// reader, an admin).
#[utoipa::path(post, path = "/v1/he/sessions/{name}/close", params(("name" = String, Path, description = "session name")),
    request_body = HeInputsStatement, security(("httpsig" = [])),
    responses((status = 200, body = HeSessionInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn close_session(
    req: Audited,
    State(s): State<HeApi>,
    Path(name): Path<String>,
    body: Result<ApiJson<HeInputsStatement>, Response>,
) -> Response {
    let target = name.clone();
    req.run_json(
        "he.close",
        body,
        move |_| Some(target),
        |c, stated| async move {
            let who = (c.grant.name.as_str(), c.grant.admin);
            s.he.close(&s.node, &name, &stated, who, &c.signed).await
        },
    )
    .await
}

/// Decrypt a closed session's aggregate of exactly the inputs the body
/// states (the first call; `t` members each check this request and their
/// own replica) or return the recorded result, with the public transcript.
#[utoipa::path(post, path = "/v1/he/sessions/{name}/result", params(("name" = String, Path, description = "session name")),
    request_body = HeInputsStatement, security(("httpsig" = [])),
    responses((status = 200, body = HeResultResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn session_result(
    req: Audited,
    State(s): State<HeApi>,
    Path(name): Path<String>,
    body: Result<ApiJson<HeInputsStatement>, Response>,
) -> Response {
    let target = name.clone();
    req.run_json(
        "he.result",
        body,
        move |_| Some(target),
        |c, stated| async move {
            let who = (c.grant.name.as_str(), c.grant.admin);
            s.he.result(&s.node, &name, &stated, who, &c.signed).await
        },
    )
    .await
}

/// A session's public record: its policy, state, every input with its
/// proof and, once decrypted, the shares with their proofs.
#[utoipa::path(get, path = "/v1/he/sessions/{name}/transcript", params(("name" = String, Path, description = "session name")),
    security(("httpsig" = [])),
    responses((status = 200, body = HeTranscript), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn session_transcript(
    req: Audited,
    State(s): State<HeApi>,
    Path(name): Path<String>,
) -> Response {
    let target = name.clone();
    req.run("he.transcript", Some(&target), |_| async move {
        s.he.transcript(&s.node, &name)
    })
    .await
}
