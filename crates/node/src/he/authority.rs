//! What a client's signed request must ask for before a session command
//! applies (DESIGN.md §4 item 3), on every replica alike.
//!
//! | command | request | who |
//! |---|---|---|
//! | `he_create` | `POST /v1/he/sessions`, the session and key it describes | an admin |
//! | `he_submit` | `POST /v1/he/sessions/{name}/inputs` (the body is the input) | a submitter the session allows (checked on apply) |
//! | `he_close` | `POST /v1/he/sessions/{name}/close` | the creator, a reader, an admin |
//! | `he_result` | `POST /v1/he/sessions/{name}/result` | the creator, a reader, an admin |

use keyquorum_wire::api::SuiteName;
use keyquorum_wire::control::Grant;
use keyquorum_wire::he::{key_name, CreateHeSessionRequest, HeCommand};
use keyquorum_wire::NodeId;

use super::state::{may_read, record_from_request, unattested, HE_RULES};
use crate::cluster::machine::request::{admin, body, distinct, endorsed, need};
use crate::cluster::Registry;

/// Whether session command `command` is what a `POST` (`post`) to the
/// path with segments `seg` and body `body_bytes` by a client with
/// `grant` asks for.
pub(crate) fn asks_for(
    r: &Registry,
    grant: &Grant,
    post: bool,
    seg: &[&str],
    body_bytes: &[u8],
    command: &HeCommand,
) -> Result<(), String> {
    if r.rules < HE_RULES {
        return Err(format!(
            "encrypted-data sessions need apply rules {HE_RULES} (the log is at {})",
            r.rules
        ));
    }
    match command {
        HeCommand::HeCreate {
            session,
            key,
            endorsements,
        } => {
            need(
                post && seg == ["v1", "he", "sessions"],
                "POST /v1/he/sessions",
            )?;
            admin(grant)?;
            let b: CreateHeSessionRequest = body(body_bytes)?;
            crate::names::check_name(&key_name(&b.name)).map_err(|e| e.to_string())?;
            // The id is derived from the policy and the public key: the
            // record is exactly what was asked for, with the members' key.
            let want = record_from_request(&b, session.public_key, &grant.name)?;
            need(**session == want, "the session asked for")?;
            need(
                key.public_key.0 == session.public_key.0,
                "the session's public key is its key's",
            )?;
            endorsed(r, key, endorsements)?;
            let members = distinct(&key.members);
            let asked: Vec<NodeId> = match &b.members {
                Some(m) => distinct(m),
                None => r.candidates(),
            };
            let threshold = b
                .threshold
                .unwrap_or_else(|| r.default_threshold(asked.len()));
            need(
                key.name == key_name(&b.name)
                    && key.suite == SuiteName::Ristretto255
                    && key.epoch == 1
                    && key.threshold == threshold
                    && key.threshold >= 2
                    && members == asked
                    && members.len() == key.members.len()
                    && usize::from(key.threshold) <= members.len()
                    && members.iter().all(|m| r.members.contains_key(m)),
                "the session's key: he.NAME, ristretto255, the threshold and members asked for",
            )?;
            let bad = unattested(session, &key.members, &r.attested);
            need(
                bad.is_empty(),
                &format!("members whose measurement the session allows ({bad:?} do not)"),
            )
        }
        HeCommand::HeSubmit { session } => need(
            post && seg == ["v1", "he", "sessions", session.as_str(), "inputs"],
            "POST /v1/he/sessions/{name}/inputs",
        ),
        HeCommand::HeClose { session } => {
            need(
                post && seg == ["v1", "he", "sessions", session.as_str(), "close"],
                "POST /v1/he/sessions/{name}/close",
            )?;
            reader(r, grant, session)
        }
        HeCommand::HeResult { session, .. } => {
            need(
                post && seg == ["v1", "he", "sessions", session.as_str(), "result"],
                "POST /v1/he/sessions/{name}/result",
            )?;
            reader(r, grant, session)
        }
    }
}

fn reader(r: &Registry, grant: &Grant, session: &str) -> Result<(), String> {
    let entry =
        r.he.sessions
            .get(session)
            .ok_or_else(|| format!("no session named {session}"))?;
    need(
        may_read(&entry.record, &grant.name, grant.admin),
        "the session's creator, one of its readers or an admin",
    )
}
