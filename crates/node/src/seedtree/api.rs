//! Signing trees' client routes, under `/v1/seedtrees`: create, list,
//! show, sign. Each handler is its domain logic; [`Audited`] authenticates,
//! audits and answers.

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use keyquorum_wire::api::ErrorBody;
use keyquorum_wire::seedtree::{
    CreateSeedtreeRequest, ReshareSeedtreeRequest, SeedtreeInfo, SeedtreeLeaf, SeedtreeList,
    SeedtreeProgress, SignSeedtreeRequest,
};

use super::Seedtrees;
use crate::api::{ApiJson, Audited};
use crate::cluster::Node;

/// The routes' state: this node and its trees.
#[derive(Clone)]
pub(crate) struct SeedtreeApi {
    node: Node,
    trees: Arc<Seedtrees>,
}

impl FromRef<SeedtreeApi> for Node {
    fn from_ref(s: &SeedtreeApi) -> Node {
        s.node.clone()
    }
}

/// Trees' routes.
pub(crate) fn routes(node: Node, trees: Arc<Seedtrees>) -> Router {
    Router::new()
        .route("/v1/seedtrees", post(create_tree).get(list_trees))
        .route("/v1/seedtrees/{name}", get(get_tree))
        .route("/v1/seedtrees/{name}/progress", get(tree_progress))
        .route("/v1/seedtrees/{name}/sign", post(sign_leaf))
        .route("/v1/seedtrees/{name}/reshare", post(reshare_tree))
        .with_state(SeedtreeApi { node, trees })
}

/// Create a tree: the members build its subtrees in parallel and keep a
/// share of every leaf's secret (an admin).
#[utoipa::path(post, path = "/v1/seedtrees", request_body = CreateSeedtreeRequest, security(("httpsig" = [])),
    responses((status = 200, body = SeedtreeInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn create_tree(
    req: Audited,
    State(s): State<SeedtreeApi>,
    body: Result<ApiJson<CreateSeedtreeRequest>, Response>,
) -> Response {
    req.run_json(
        "seedtree.create",
        body,
        |b| Some(b.name.clone()),
        |c, req| async move {
            c.require_admin()?;
            s.trees.create(&s.node, req, &c.grant.name, &c.signed).await
        },
    )
    .await
}

/// List trees.
#[utoipa::path(get, path = "/v1/seedtrees", security(("httpsig" = [])),
    responses((status = 200, body = SeedtreeList), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_trees(req: Audited, State(s): State<SeedtreeApi>) -> Response {
    req.run("seedtree.list", None, |_| async move {
        Ok(Seedtrees::list(&s.node))
    })
    .await
}

/// Show a tree: its public key, members and how many leaves are left.
#[utoipa::path(get, path = "/v1/seedtrees/{name}", params(("name" = String, Path, description = "tree name")),
    security(("httpsig" = [])),
    responses((status = 200, body = SeedtreeInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_tree(
    req: Audited,
    State(s): State<SeedtreeApi>,
    Path(name): Path<String>,
) -> Response {
    let target = name.clone();
    req.run("seedtree.show", Some(&target), |_| async move {
        s.node.read_barrier().await?;
        Seedtrees::info(&s.node, &name)
    })
    .await
}

/// How far a key generation this node coordinates has come (ask the node
/// the create request went to); a finished tree's is `done`.
#[utoipa::path(get, path = "/v1/seedtrees/{name}/progress", params(("name" = String, Path, description = "tree name")),
    security(("httpsig" = [])),
    responses((status = 200, body = SeedtreeProgress), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn tree_progress(
    req: Audited,
    State(s): State<SeedtreeApi>,
    Path(name): Path<String>,
) -> Response {
    let target = name.clone();
    req.run("seedtree.progress", Some(&target), |_| async move {
        s.trees.progress(&s.node, &name)
    })
    .await
}

/// One leaf for the client to sign with: a lock quorum locked it to this
/// request, and at least `t` members sealed their shares of its secret to
/// the request's reply key (a client that may sign with `lms.NAME`).
#[utoipa::path(post, path = "/v1/seedtrees/{name}/sign", params(("name" = String, Path, description = "tree name")),
    request_body = SignSeedtreeRequest, security(("httpsig" = [])),
    responses((status = 200, body = SeedtreeLeaf), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn sign_leaf(
    req: Audited,
    State(s): State<SeedtreeApi>,
    Path(name): Path<String>,
    body: Result<ApiJson<SignSeedtreeRequest>, Response>,
) -> Response {
    let target = name.clone();
    req.run_json(
        "seedtree.sign",
        body,
        move |_| Some(target),
        |c, req| async move {
            s.trees
                .sign(&s.node, &name, req, (&c.grant.name, &c.grant), &c.signed)
                .await
        },
    )
    .await
}

/// Move the tree's unused leaves to the holders an approved drain gives
/// it (an admin; `keyquorum cluster drain` calls it).
#[utoipa::path(post, path = "/v1/seedtrees/{name}/reshare", params(("name" = String, Path, description = "tree name")),
    request_body = ReshareSeedtreeRequest, security(("httpsig" = [])),
    responses((status = 200, body = SeedtreeInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn reshare_tree(
    req: Audited,
    State(s): State<SeedtreeApi>,
    Path(name): Path<String>,
    body: Result<ApiJson<ReshareSeedtreeRequest>, Response>,
) -> Response {
    let target = name.clone();
    req.run_json(
        "seedtree.reshare",
        body,
        move |_| Some(target),
        |c, req| async move {
            c.require_admin()?;
            s.trees.reshare(&s.node, &name, req, &c.signed).await
        },
    )
    .await
}
