//! The cluster's own client routes: client identities, membership, status, the audit
//! log, health and metrics.

use std::sync::atomic::Ordering;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keyquorum_wire::api::{
    ClientCreated, ClientList, ClusterStatus, CreateClientRequest, ErrorBody, Health, NodeStatus,
    Readiness,
};
use keyquorum_wire::control::{AuditEntry, AuditProof, ClientRecord, ClusterCommand, Grant};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, Audited};
use crate::cluster::Node;
use crate::error::NodeError;
use keyquorum_wire::NodeId;

/// The cluster's routes.
pub(crate) fn routes(node: Node) -> Router {
    Router::new()
        .route("/v1/clients", post(create_client).get(list_clients))
        .route("/v1/clients/{name}/revoke", post(revoke_client))
        .route("/v1/audit", get(audit_log))
        .route("/v1/audit/verify", get(audit_verify))
        .route("/v1/audit/proof/{seq}", get(audit_proof))
        .route("/v1/cluster", get(cluster))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(node)
}

/// Register a client identity: a name and an Ed25519 public key (the key
/// pair is made on the client's side; the private key never comes here).
#[utoipa::path(post, path = "/v1/clients", request_body = CreateClientRequest, security(("httpsig" = [])),
    responses((status = 200, body = ClientCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn create_client(
    req: Audited,
    State(node): State<Node>,
    body: Result<ApiJson<CreateClientRequest>, Response>,
) -> Response {
    req.run_json(
        "client.create",
        body,
        |b| Some(b.name.clone()),
        |c, req| async move {
            c.require_admin()?;
            if req.operator {
                return Err(NodeError::Forbidden(
                    "an admin cannot make an operator: operators are enrolled by `keyquorum init` \
                     or by a change the operator quorum approves (`keyquorum operator add`)"
                        .into(),
                ));
            }
            crate::names::check_name(&req.name).map_err(|_| {
                NodeError::BadRequest("client names are 1-64 characters from [A-Za-z0-9._-]".into())
            })?;
            if req.sign_keys.len() > 1024 || req.sign_keys.iter().any(|k| k.len() > 64) {
                return Err(NodeError::BadRequest(
                    "too many or too long sign_keys".into(),
                ));
            }
            if ed25519_dalek::VerifyingKey::from_bytes(&req.public_key.0).is_err() {
                return Err(NodeError::BadRequest(
                    "public_key is not an Ed25519 public key".into(),
                ));
            }
            if node.registry(|r| r.clients.contains_key(&req.name)) {
                return Err(NodeError::Conflict(format!(
                    "a client named {} exists",
                    req.name
                )));
            }
            let record = ClientRecord {
                grant: Grant {
                    name: req.name.clone(),
                    admin: req.admin,
                    operator: req.operator,
                    sign_keys: req.sign_keys,
                    recovery: req.recovery,
                },
                public_key: req.public_key,
                expires_ms: req.expires_ms,
                revoked: false,
            };
            node.commit(c.authorize(ClusterCommand::PutClient { record }))
                .await?;
            Ok(ClientCreated {
                key_id: req.name.clone(),
                name: req.name,
                public_key: req.public_key,
            })
        },
    )
    .await
}

/// Revoke a client: its requests are refused from now on; its name stays
/// taken.
#[utoipa::path(post, path = "/v1/clients/{name}/revoke", params(("name" = String, Path, description = "client name")),
    security(("httpsig" = [])),
    responses((status = 200, body = ClientRecord), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke_client(
    req: Audited,
    State(node): State<Node>,
    Path(name): Path<String>,
) -> Response {
    req.run("client.revoke", Some(&name.clone()), |c| async move {
        c.require_admin()?;
        if !node.registry(|r| r.clients.contains_key(&name)) {
            return Err(NodeError::NotFound(format!("no client named {name}")));
        }
        node.commit(c.authorize(ClusterCommand::RevokeClient { name: name.clone() }))
            .await?;
        node.registry(|r| r.clients.get(&name).cloned())
            .ok_or_else(|| NodeError::NotFound(format!("no client named {name}")))
    })
    .await
}

/// Every registered client (public keys and grants; revoked ones too).
#[utoipa::path(get, path = "/v1/clients", security(("httpsig" = [])),
    responses((status = 200, body = ClientList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_clients(req: Audited, State(node): State<Node>) -> Response {
    req.run("client.list", None, |c| async move {
        c.require_admin()?;
        Ok(ClientList {
            clients: node.registry(|r| r.clients.values().cloned().collect()),
        })
    })
    .await
}

/// Audit log page query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
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
    /// Members (fewer than a majority of the voters) whose latest signed
    /// head conflicts with this log, with that head's entry: they are
    /// named; this replica's log stands.
    #[serde(default)]
    pub disputed_by: Vec<(NodeId, u64)>,
}

/// Read the audit log.
#[utoipa::path(get, path = "/v1/audit", params(AuditQuery), security(("httpsig" = [])),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn audit_log(
    req: Audited,
    State(node): State<Node>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return NodeError::BadRequest(e.body_text()).into_response(),
    };
    req.run("audit.read", None, |c| async move {
        c.require_admin()?;
        // Every committed event, not this replica's view of them.
        node.read_barrier().await?;
        let offset = q.offset.unwrap_or(0);
        let limit = q.limit.unwrap_or(100).min(1000);
        let total = node.registry(|r| r.audit.written_len());
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let entries = {
            let node = node.clone();
            tokio::task::spawn_blocking(move || node.audit_entries(offset, limit))
                .await
                .map_err(|e| NodeError::Internal(e.to_string()))??
        };
        if entries.is_empty() && offset < total && limit > 0 {
            // A snapshot install left them out; the keeper is fetching.
            return Err(NodeError::Unavailable(format!(
                "this node is still fetching the audit log from entry {offset}"
            )));
        }
        Ok(AuditPage { total, entries })
    })
    .await
}

/// Verify the audit log's hash chain and signed heads on this node.
#[utoipa::path(get, path = "/v1/audit/verify", security(("httpsig" = [])),
    responses((status = 200, body = AuditVerification), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn audit_verify(req: Audited, State(node): State<Node>) -> Response {
    req.run("audit.verify", None, |c| async move {
        c.require_admin()?;
        node.read_barrier().await?;
        let verified = {
            let node = node.clone();
            tokio::task::spawn_blocking(move || node.verify_audit())
                .await
                .map_err(|e| NodeError::Internal(e.to_string()))??
        };
        let (entries, heads) = node.registry(|r| (r.audit.len(), r.audit.head_count()));
        Ok(match verified {
            Ok(v) => AuditVerification {
                valid: true,
                entries: v.entries,
                signed_heads: v.heads,
                signed_through: v.signed_through,
                fault: None,
                disputed_by: v.disputed_by,
            },
            Err(fault) => AuditVerification {
                valid: false,
                entries,
                signed_heads: heads,
                signed_through: None,
                fault: Some(fault.to_string()),
                disputed_by: Vec::new(),
            },
        })
    })
    .await
}

/// An audit entry with its Merkle inclusion proof against the latest
/// signed head (RFC 9162 §2.1.3; how to check it: [`AuditProof`]).
#[utoipa::path(get, path = "/v1/audit/proof/{seq}", params(("seq" = u64, Path, description = "The entry")),
    security(("httpsig" = [])),
    responses((status = 200, body = AuditProof), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn audit_proof(
    req: Audited,
    State(node): State<Node>,
    Path(seq): Path<u64>,
) -> Response {
    req.run("audit.proof", Some(&seq.to_string()), |c| async move {
        c.require_admin()?;
        node.read_barrier().await?;
        let node = node.clone();
        tokio::task::spawn_blocking(move || node.audit_proof(seq))
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))?
    })
    .await
}

/// Cluster status.
#[utoipa::path(get, path = "/v1/cluster", security(("httpsig" = [])),
    responses((status = 200, body = ClusterStatus), (status = 401, body = ErrorBody)))]
pub(crate) async fn cluster(req: Audited, State(node): State<Node>) -> Response {
    req.run("cluster.status", None, |_| async { Ok(status(&node)) })
        .await
}

fn status(node: &Node) -> ClusterStatus {
    let metrics = node.raft().metrics().borrow().clone();
    let (rules, approvals_bound) = node.registry(|r| (r.rules, r.approvals_bound()));
    ClusterStatus {
        node_id: node.id(),
        leader: metrics
            .current_leader
            .and_then(|l| NodeId::try_from(l).ok()),
        term: metrics.current_term,
        applied: node.applied_index(),
        nodes: node
            .members()
            .into_iter()
            .map(|(id, info, voter)| NodeStatus {
                id,
                addr: info.addr,
                voter,
                measurement: node.registry(|r| r.attested.get(&id).copied()),
                draining: node.registry(|r| r.operators.drains.contains_key(&id)),
                drain_onto: node.registry(|r| r.operators.drains.get(&id).copied().flatten()),
            })
            .collect(),
        keys: node.registry(|r| r.keys.records.len()),
        audit_entries: node.registry(|r| r.audit.len()),
        rules,
        approvals_bound,
    }
}

/// Liveness and readiness.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub(crate) async fn healthz(State(node): State<Node>) -> Response {
    // A replica whose Raft stopped (a storage fault, or rules the cluster
    // took up that its build does not know) serves nothing current.
    let running = node.raft().metrics().borrow().running_state.is_ok();
    let has_leader = running && node.leader().is_some();
    let h = Health {
        status: if !running {
            "stopped".into()
        } else if has_leader {
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

/// Readiness: the node's Raft runs, it knows a leader, the membership
/// lists it, and it has applied the log through the leader's commit index
/// (asked of the leader, within 2 s). Its vault is open whenever it serves.
/// Found at most once a second, one request at a time: callers in between
/// get the last answer (anyone may call this route).
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub(crate) async fn readyz(State(node): State<Node>) -> Response {
    let mut last = node.readiness().lock().await;
    let r = match last.as_ref() {
        Some((at, r)) if at.elapsed() < std::time::Duration::from_secs(1) => r.clone(),
        _ => {
            let r = readiness(&node).await;
            *last = Some((std::time::Instant::now(), r.clone()));
            r
        }
    };
    drop(last);
    let code = if r.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r)).into_response()
}

/// What `/readyz` reports, found now.
async fn readiness(node: &Node) -> Readiness {
    let running = node.raft().metrics().borrow().running_state.is_ok();
    let applied = node.applied_index().unwrap_or(0);
    let mut leader_index = None;
    let status = if !running {
        "stopped"
    } else if node.leader().is_none() {
        "no_leader"
    } else if !node.members().iter().any(|(id, _, _)| *id == node.id()) {
        "not_member"
    } else {
        match tokio::time::timeout(std::time::Duration::from_secs(2), node.read_index()).await {
            Ok(Ok(index)) => {
                leader_index = Some(index);
                if applied >= index {
                    "ready"
                } else {
                    "catching_up"
                }
            }
            _ => "no_leader",
        }
    };
    Readiness {
        status: status.into(),
        node_id: node.id(),
        applied,
        leader_index,
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(State(node): State<Node>) -> Response {
    let m = node.metrics();
    let raft = node.raft().metrics().borrow().clone();
    let id = node.id();
    // The last `/readyz` answer if it is recent (never waiting for one
    // under way): 0 when nothing asked for a while.
    let ready = node.readiness().try_lock().is_ok_and(|last| {
        last.as_ref().is_some_and(|(at, r)| {
            at.elapsed() < std::time::Duration::from_secs(30) && r.status == "ready"
        })
    });
    let g = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    let text = format!(
        "# TYPE keyquorum_requests_total counter\n\
         keyquorum_requests_total{{node=\"{id}\",outcome=\"ok\"}} {}\n\
         keyquorum_requests_total{{node=\"{id}\",outcome=\"error\"}} {}\n\
         # TYPE keyquorum_signatures_total counter\nkeyquorum_signatures_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_sign_seconds_sum counter\nkeyquorum_sign_seconds_sum{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_keys_generated_total counter\nkeyquorum_keys_generated_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_peer_rejects_total counter\nkeyquorum_peer_rejects_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_refused_unauthenticated_total counter\nkeyquorum_refused_unauthenticated_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_refusals_unaudited_total counter\nkeyquorum_refusals_unaudited_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_audit_backlog_refusals_total counter\nkeyquorum_audit_backlog_refusals_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_audit_dropped_total counter\nkeyquorum_audit_dropped_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_audit_queue gauge\nkeyquorum_audit_queue{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_batched_writes_total counter\nkeyquorum_batched_writes_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_write_batches_total counter\nkeyquorum_write_batches_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_peer_batches_total counter\nkeyquorum_peer_batches_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_peer_batched_messages_total counter\nkeyquorum_peer_batched_messages_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_raft_term gauge\nkeyquorum_raft_term{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_raft_is_leader gauge\nkeyquorum_raft_is_leader{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_raft_applied_index gauge\nkeyquorum_raft_applied_index{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_keys gauge\nkeyquorum_keys{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_raft_leader_changes_total counter\nkeyquorum_raft_leader_changes_total{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_raft_millis_since_quorum_ack gauge\nkeyquorum_raft_millis_since_quorum_ack{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_raft_last_log_index gauge\nkeyquorum_raft_last_log_index{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_raft_voters gauge\nkeyquorum_raft_voters{{node=\"{id}\"}} {}\n\
         # TYPE keyquorum_ready gauge\nkeyquorum_ready{{node=\"{id}\"}} {}\n",
        g(&m.requests_ok),
        g(&m.requests_err),
        g(&m.signatures),
        g(&m.sign_micros) as f64 / 1e6,
        g(&m.dkgs),
        g(&m.peer_rejects),
        g(&m.refused_unauthenticated),
        g(&m.refusals_unaudited),
        g(&m.audit_backlog_refusals),
        g(&m.audit_dropped),
        node.audit_queued(),
        g(&m.batched_writes),
        g(&m.write_batches),
        g(&m.peer_batches),
        g(&m.peer_batched_messages),
        raft.current_term,
        u8::from(raft.current_leader == Some(u64::from(id))),
        node.applied_index().unwrap_or(0),
        node.registry(|r| r.keys.records.len()),
        g(&m.leader_changes),
        // The leader's; -1 on a follower.
        raft.millis_since_quorum_ack.map_or(-1, |m| i64::try_from(m).unwrap_or(i64::MAX)),
        raft.last_log_index.unwrap_or(0),
        raft.membership_config.membership().voter_ids().count(),
        u8::from(ready),
    );
    let mut text = text;
    text.push_str(
        &m.commit
            .render("keyquorum_raft_commit_seconds", &id.to_string()),
    );
    text.push_str("# TYPE keyquorum_request_errors_total counter\n");
    for (kind, n) in m.errors.counts() {
        text.push_str(&format!(
            "keyquorum_request_errors_total{{node=\"{id}\",kind=\"{kind}\"}} {n}\n"
        ));
    }
    text.push_str("# TYPE keyquorum_protocol_failures_total counter\n");
    for (action, n) in m.failures.counts() {
        text.push_str(&format!(
            "keyquorum_protocol_failures_total{{node=\"{id}\",action=\"{action}\"}} {n}\n"
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
