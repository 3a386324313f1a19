//! Operators' routes: initialising a new cluster (`POST /v1/init`, the one
//! write no client signs: it carries proofs of the nodes' init secrets,
//! `cluster::init`), proposing changes to the operators and approving
//! changes and exports (`POST /v1/approvals/{id}`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use keyquorum_wire::api::{
    ApprovalRequest, Approved, ChangeList, ChangeRequest, ErrorBody, InitRequest,
};
use keyquorum_wire::control::{Change, ChangeRecord, ClusterCommand, KeysCommand};

use super::auth::Caller;
use super::{ApiJson, Audited};
use crate::cluster::Node;
use crate::error::NodeError;

/// The operators' routes.
pub(crate) fn routes(node: Node) -> Router {
    Router::new()
        .route("/v1/init", post(init))
        .route("/v1/changes", post(propose_change).get(list_changes))
        .route("/v1/approvals/{id}", post(approve))
        .with_state(node)
}

/// Initialise a new cluster: its operators, their quorum and the first
/// admin client. Not signed by a client (none exists yet): accepted only
/// with a proof of every voting member's one-time init secret, and only
/// once.
#[utoipa::path(post, path = "/v1/init", request_body = InitRequest,
    responses((status = 200, body = ChangeList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn init(
    State(node): State<Node>,
    body: Result<ApiJson<InitRequest>, Response>,
) -> Response {
    let req = match body {
        Ok(ApiJson(r)) => r,
        Err(rejection) => return rejection,
    };
    // Once initialised, an init that is not this cluster's is refused here,
    // unaudited (anyone may call this route).
    if !node.uninitialised() {
        return match node
            .founders(&req.init.nodes)
            .and_then(|f| crate::cluster::init::init_command(&req.init, &f))
            .and_then(|c| node.initialised_as(&c))
        {
            Ok(()) => (StatusCode::OK, Json(change_list(&node))).into_response(),
            Err(e) => e.into_response(),
        };
    }
    let outcome = node.initialise(req).await;
    match &outcome {
        Ok(()) => node.audit_event("init", "cluster.init", None, "ok"),
        // Anyone may call this route: a failed init is counted, not
        // audited (`cluster::refusals`).
        Err(e) => node.refusal(
            None,
            "cluster.init",
            None,
            &e.to_string().chars().take(300).collect::<String>(),
        ),
    }
    match outcome {
        Ok(()) => (StatusCode::OK, Json(change_list(&node))).into_response(),
        Err(e) => e.into_response(),
    }
}

fn change_list(node: &Node) -> ChangeList {
    node.registry(|r| {
        let mut changes: Vec<ChangeRecord> = r.operators.changes.values().cloned().collect();
        changes.sort_by_key(|c| c.created_ms);
        ChangeList {
            quorum: r.operators.quorum,
            operators: r.live_operators().into_iter().collect(),
            changes,
        }
    })
}

/// Propose a change to the operators or the membership (an admin or an
/// operator). It takes effect when the operator quorum has approved it.
#[utoipa::path(post, path = "/v1/changes", request_body = ChangeRequest, security(("httpsig" = [])),
    responses((status = 200, body = ChangeRecord), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn propose_change(
    req: Audited,
    State(node): State<Node>,
    body: Result<ApiJson<ChangeRequest>, Response>,
) -> Response {
    req.run_json(
        "operator.change",
        body,
        |b| match &b.change {
            Change::AddOperator { name, .. } | Change::RemoveOperator { name } => {
                Some(name.clone())
            }
            Change::SetQuorum { quorum } => Some(format!("quorum {quorum}")),
            Change::AddNode { id, .. } => Some(format!("add node {id}")),
            Change::RemoveNode { id, despite_trees } => Some(if *despite_trees {
                format!("remove node {id} despite its trees")
            } else {
                format!("remove node {id}")
            }),
            Change::DrainNode { id, onto } => Some(match onto {
                Some(o) => format!("drain node {id} onto {o}"),
                None => format!("drain node {id}"),
            }),
            Change::CancelDrain { id } => Some(format!("cancel node {id}'s drain")),
            Change::SetKeyPolicy { key, .. } => Some(key.clone()),
        },
        |c, req| async move {
            c.require_operator_or_admin()?;
            // A build before rules 12 cannot read these: not in the log
            // until every member runs one that can.
            if matches!(
                req.change,
                Change::DrainNode { .. }
                    | Change::RemoveNode {
                        despite_trees: true,
                        ..
                    }
            ) {
                node.require_rules(
                    crate::cluster::machine::operators::DRAIN_RULES,
                    "drains and removals despite trees",
                )?;
            }
            if matches!(req.change, Change::CancelDrain { .. }) {
                node.require_rules(
                    crate::cluster::machine::operators::CANCEL_DRAIN_RULES,
                    "cancelling a drain",
                )?;
            }
            let quorum = node.registry(|r| r.operators.quorum);
            if quorum == 0 {
                return Err(NodeError::Conflict(
                    "the cluster has no operators (keyquorum init)".into(),
                ));
            }
            let mut id = [0u8; 16];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
            let record = ChangeRecord {
                id: hex::encode(id),
                change: req.change,
                requested_by: c.grant.name.clone(),
                approvals: Vec::new(),
                needed: quorum,
                done: false,
                created_ms: crate::cluster::peer::now_ms(),
            };
            node.commit(c.authorize(ClusterCommand::ProposeChange {
                record: record.clone(),
            }))
            .await?;
            Ok(record)
        },
    )
    .await
}

/// The operators, their quorum and the proposed changes.
#[utoipa::path(get, path = "/v1/changes", security(("httpsig" = [])),
    responses((status = 200, body = ChangeList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_changes(req: Audited, State(node): State<Node>) -> Response {
    req.run("operator.list", None, |c| async move {
        c.require_operator_or_admin()?;
        Ok(change_list(&node))
    })
    .await
}

/// Approve an export request or a change to the operators (an operator;
/// an export not by its requester). Each operator counts once. The body
/// names what is approved, as the operator read it (required from apply
/// rules 14); every replica compares it with the request under the id.
#[utoipa::path(post, path = "/v1/approvals/{id}", params(("id" = String, Path, description = "export or change id")),
    request_body = ApprovalRequest, security(("httpsig" = [])),
    responses((status = 200, body = Approved), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn approve(
    req: Audited,
    State(node): State<Node>,
    Path(id): Path<String>,
) -> Response {
    let target = id.clone();
    req.run("approve", Some(&target), |c| async move {
        if !c.grant.operator {
            return Err(NodeError::Forbidden(format!(
                "client {} is not an operator",
                c.grant.name
            )));
        }
        node.read_barrier().await?;
        let (export, change) = node.registry(|r| {
            (
                r.keys.exports.get(&id).map(ApprovalRequest::of_export),
                r.operators.changes.get(&id).map(ApprovalRequest::of_change),
            )
        });
        let operator = c.grant.name.clone();
        if let Some(held) = export {
            check_approval(&node, &c, &id, held)?;
            node.commit(c.authorize(KeysCommand::ApproveExport {
                id: id.clone(),
                operator,
            }))
            .await?;
            node.registry(|r| r.keys.exports.get(&id).cloned())
                .map(Approved::Export)
                .ok_or_else(|| NodeError::NotFound(format!("no export {id}")))
        } else if let Some(held) = change {
            check_approval(&node, &c, &id, held)?;
            node.commit(c.authorize(ClusterCommand::ApproveChange {
                id: id.clone(),
                operator,
            }))
            .await?;
            node.registry(|r| r.operators.changes.get(&id).cloned())
                .map(Approved::Change)
                .ok_or_else(|| NodeError::NotFound(format!("no change {id}")))
        } else {
            Err(NodeError::NotFound(format!("no export or change {id}")))
        }
    })
    .await
}

/// What an approval's body names, checked here against this node's record
/// under `id` (`held`) before the approval is proposed, for a clear answer;
/// every replica checks it again on apply (`machine::authority`). An empty
/// body (a client before apply rules 14) only while the cluster is older.
pub(crate) fn check_approval(
    node: &Node,
    c: &Caller,
    id: &str,
    held: ApprovalRequest,
) -> Result<(), NodeError> {
    if c.signed.body.is_empty() {
        if node.registry(|r| r.approvals_bound()) {
            return Err(NodeError::BadRequest(format!(
                "an approval names what it approves: the body is {{\"kind\": \"change\", \
                 \"change\": ..., \"requested_by\": ...}} or {{\"kind\": \"export\", \"key\": \
                 ..., \"epoch\": ..., \"requested_by\": ..., \"recipient\": ...}} as read from \
                 the request {id} (`keyquorum approve {id}` shows it and sends it)"
            )));
        }
        return Ok(());
    }
    let asked: ApprovalRequest = serde_json::from_slice(&c.signed.body)
        .map_err(|e| NodeError::BadRequest(format!("the approval does not parse: {e}")))?;
    if asked != held {
        return Err(NodeError::Conflict(format!(
            "the approval names another request than the one held under {id}; read it again \
             (`keyquorum approve {id}` shows it)"
        )));
    }
    Ok(())
}
