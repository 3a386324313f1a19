//! Names clients give to keys, tokens and endpoints: 1–64 characters from
//! `[A-Za-z0-9._-]` (safe in URLs, vault slots and logs).

use crate::error::NodeError;

/// Check a name: 1–64 characters from `[A-Za-z0-9._-]`.
pub fn check_name(name: &str) -> Result<(), NodeError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(NodeError::BadRequest(
            "key names are 1-64 characters from [A-Za-z0-9._-]".into(),
        ))
    }
}
