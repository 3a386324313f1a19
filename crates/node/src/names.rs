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

/// Check a key's name as the key protocols take it: a name [`check_name`]
/// accepts, or an account's PIN key of a later generation
/// (`pin.ACCOUNT~G`, [`keyquorum_wire::recovery::pin_key_name_at`]) whose
/// first generation's name it accepts. Clients never name the latter: the
/// client API takes [`check_name`]'s names only.
pub fn check_key_name(name: &str) -> Result<(), NodeError> {
    match keyquorum_wire::recovery::pin_key_of(name) {
        Some((account, g)) if g > 1 => check_name(&keyquorum_wire::recovery::pin_key_name(account)),
        _ => check_name(name),
    }
}
