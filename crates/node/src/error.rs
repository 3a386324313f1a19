//! The node's error type and the one function mapping it to what an HTTP
//! client or a peer is told.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyquorum_wire::api::ErrorBody;
use keyquorum_wire::NodeId;

/// Everything a request can fail with, grouped by who is at fault.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The request is malformed or its values are out of range.
    #[error("{0}")]
    BadRequest(String),
    /// The request is not signed by a live client identity (the reason:
    /// unsigned, stale, replayed, unknown key, bad signature, revoked,
    /// expired).
    #[error("{0}")]
    Unauthorized(String),
    /// The client may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such object.
    #[error("{0}")]
    NotFound(String),
    /// The object exists or changed concurrently.
    #[error("{0}")]
    Conflict(String),
    /// A per-client quota is used up (`crate::msg::quota`).
    #[error("{0}")]
    TooMany(String),
    /// Peers misbehaved; they are named.
    #[error("{message}")]
    Misbehaved {
        /// Explanation.
        message: String,
        /// The nodes at fault.
        culprits: Vec<NodeId>,
    },
    /// Not enough live members, or no leader.
    #[error("{0}")]
    Unavailable(String),
    /// A write was not committed within its deadline (a leader that lost
    /// its quorum): it may still commit, so it is not retried.
    #[error("{0}")]
    TimedOut(String),
    /// A peer message failed authentication or replay checks.
    #[error("peer message rejected: {0}")]
    PeerRejected(String),
    /// Something on this node failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl NodeError {
    /// The HTTP status and stable code for this error.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            NodeError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            NodeError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            NodeError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            NodeError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            NodeError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            NodeError::TooMany(_) => (StatusCode::TOO_MANY_REQUESTS, "quota"),
            NodeError::Misbehaved { .. } => (StatusCode::BAD_GATEWAY, "peer_misbehaved"),
            NodeError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            NodeError::TimedOut(_) => (StatusCode::SERVICE_UNAVAILABLE, "timed_out"),
            NodeError::PeerRejected(_) => (StatusCode::UNAUTHORIZED, "peer_rejected"),
            NodeError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The JSON body sent to the client.
    pub fn body(&self) -> ErrorBody {
        let (_, code) = self.status();
        ErrorBody {
            error: code.to_string(),
            message: self.to_string(),
            culprits: match self {
                NodeError::Misbehaved { culprits, .. } => culprits.clone(),
                _ => Vec::new(),
            },
        }
    }

    /// Rebuild from a peer's error reply.
    pub fn from_peer(code: &str, message: String, culprits: Vec<NodeId>) -> Self {
        match code {
            "bad_request" => NodeError::BadRequest(message),
            "not_found" => NodeError::NotFound(message),
            "conflict" => NodeError::Conflict(message),
            "quota" => NodeError::TooMany(message),
            "forbidden" => NodeError::Forbidden(message),
            "peer_misbehaved" => NodeError::Misbehaved { message, culprits },
            "unavailable" => NodeError::Unavailable(message),
            "timed_out" => NodeError::TimedOut(message),
            "peer_rejected" => NodeError::PeerRejected(message),
            _ => NodeError::Internal(message),
        }
    }

    /// From a core protocol error: culprits are named when the core blames
    /// participants.
    pub fn from_core(e: keyquorum_core::Error) -> Self {
        let culprits: Vec<NodeId> = e
            .culprits()
            .iter()
            .map(|p| NodeId::from(p.nonzero()))
            .collect();
        if culprits.is_empty() {
            NodeError::BadRequest(e.to_string())
        } else {
            NodeError::Misbehaved {
                message: e.to_string(),
                culprits,
            }
        }
    }
}

impl From<keyquorum_store::VaultError> for NodeError {
    fn from(e: keyquorum_store::VaultError) -> Self {
        NodeError::Internal(e.to_string())
    }
}

impl IntoResponse for NodeError {
    fn into_response(self) -> Response {
        let (status, _) = self.status();
        (status, Json(self.body())).into_response()
    }
}

/// The answer to a JSON body that did not parse: a typed 4xx [`ErrorBody`].
pub(crate) fn json_rejection(r: JsonRejection) -> Response {
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
