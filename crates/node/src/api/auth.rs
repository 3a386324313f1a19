//! Who is asking: bearer tokens (stored as SHA-256 hashes in the registry,
//! [`token_hash`]) and what a token's grant lets its holder do.

use axum::http::{header, HeaderMap};
use keyquorum_wire::control::TokenGrant;
use keyquorum_wire::Hex32;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::cluster::Node;
use crate::error::NodeError;

/// The SHA-256 of a bearer token, as the registry stores it.
pub fn token_hash(token: &str) -> Hex32 {
    Hex32(Sha256::digest(token.as_bytes()).into())
}

/// A fresh random token.
pub fn new_token() -> String {
    let mut b = [0u8; 24];
    OsRng.fill_bytes(&mut b);
    format!("kq_{}", hex::encode(b))
}

/// An authenticated caller: the grant of the token it presented.
#[derive(Debug, Clone)]
pub struct Caller {
    /// What the token may do.
    pub grant: TokenGrant,
}

impl Caller {
    /// Refused unless the token is an admin token.
    pub fn require_admin(&self) -> Result<(), NodeError> {
        if self.grant.admin {
            Ok(())
        } else {
            Err(NodeError::Forbidden(format!(
                "token {} is not an admin token",
                self.grant.name
            )))
        }
    }

    /// Refused unless the token is an admin or an operator token.
    pub fn require_operator_or_admin(&self) -> Result<(), NodeError> {
        if self.grant.admin || self.grant.operator {
            Ok(())
        } else {
            Err(NodeError::Forbidden(format!(
                "token {} is neither admin nor operator",
                self.grant.name
            )))
        }
    }
}

pub(crate) fn authenticate(node: &Node, headers: &HeaderMap) -> Result<Caller, NodeError> {
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
pub(crate) async fn authenticate_fresh(
    node: &Node,
    headers: &HeaderMap,
) -> Result<Caller, NodeError> {
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
