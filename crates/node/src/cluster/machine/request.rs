//! What a client's signed request must be to authorize a command: the
//! checks every capability's part of [`super::authority`] shares (the
//! request's path and body, the client's grant, a key generation's
//! endorsements).

use std::collections::BTreeSet;

use keyquorum_wire::control::{key_statement, Endorsement, Grant};
use keyquorum_wire::NodeId;
use serde::de::DeserializeOwned;

use super::Registry;

/// The request's JSON body as `T`.
pub(crate) fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("the request's body does not parse: {e}"))
}

/// `Ok` if `ok`, else a refusal saying what the command must be.
pub(crate) fn need(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the command is not what the request asks for: {what}"
        ))
    }
}

/// Refused unless the client is an admin.
pub(crate) fn admin(grant: &Grant) -> Result<(), String> {
    need(grant.admin, "the client is not an admin")
}

/// `ids` sorted, each once.
pub(crate) fn distinct(ids: &[NodeId]) -> Vec<NodeId> {
    ids.iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The path's segments after `/`.
pub(crate) fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

/// A key generation's record must be what its members computed: the group
/// key encoding states the record's threshold, members and public key, and
/// at least the threshold of distinct members of the record signed
/// [`key_statement`] over it.
pub(crate) fn endorsed(
    r: &Registry,
    record: &keyquorum_wire::control::KeyRecord,
    endorsements: &[Endorsement],
) -> Result<(), String> {
    let (threshold, members, public_key) =
        crate::keys::suite::group_key_facts(record.suite, &record.group_key.0)?;
    let mut listed: Vec<u64> = record.members.iter().map(|m| u64::from(*m)).collect();
    listed.sort_unstable();
    need(
        threshold == record.threshold && members == listed && public_key == record.public_key.0,
        "the record's threshold, members and public key are its group key's",
    )?;
    let statement = key_statement(
        &record.name,
        record.epoch,
        &record.session,
        &record.group_key.0,
    );
    let signers: BTreeSet<NodeId> = endorsements
        .iter()
        .filter(|e| record.members.contains(&e.node))
        .filter(|e| {
            r.members
                .get(&e.node)
                .is_some_and(|m| crate::identity::verify(&m.identity, &statement, &e.signature.0))
        })
        .map(|e| e.node)
        .collect();
    if signers.len() < usize::from(record.threshold) {
        return Err(format!(
            "the key generation is endorsed by {} of its members, {} are needed",
            signers.len(),
            record.threshold
        ));
    }
    Ok(())
}
