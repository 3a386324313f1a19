//! What a client's signed request must ask for before a tree command
//! applies (DESIGN.md §4 item 3), on every replica alike.
//!
//! | command | request | who | what apply re-derives |
//! |---|---|---|---|
//! | `st_create` | `POST /v1/seedtrees` (the body is the tree asked for) | an admin | name, height, Winternitz parameter, subtrees, threshold and members as asked; `I` from the commitments and contributions; the builders; the public key from the subtree roots; every member's endorsement |
//! | `st_reserve` | (a node statement, `machine::authority`) | any member node | — |

use keyquorum_wire::control::Grant;
use keyquorum_wire::seedtree::{endorse_statement, CreateSeedtreeRequest, SeedtreeCommand};
use keyquorum_wire::NodeId;

use super::state::{check_record, shape, ST_RULES};
use crate::cluster::machine::request::{admin, body, need};
use crate::cluster::Registry;

/// Whether tree command `command` is what a `POST` (`post`) to the path
/// with segments `seg` and body `body_bytes` by a client with `grant`
/// asks for.
pub(crate) fn asks_for(
    r: &Registry,
    grant: &Grant,
    post: bool,
    seg: &[&str],
    body_bytes: &[u8],
    command: &SeedtreeCommand,
) -> Result<(), String> {
    if r.rules < ST_RULES {
        return Err(format!(
            "signing trees need apply rules {ST_RULES} (the log is at {})",
            r.rules
        ));
    }
    match command {
        SeedtreeCommand::StCreate {
            record,
            endorsements,
        } => {
            need(post && seg == ["v1", "seedtrees"], "POST /v1/seedtrees")?;
            admin(grant)?;
            let b: CreateSeedtreeRequest = body(body_bytes)?;
            let voters = r.candidates();
            let want = shape(&b, &voters, |n| r.default_threshold(n))?;
            need(
                record.name == b.name
                    && record.height == b.height
                    && record.winternitz == b.winternitz
                    && record.subtrees == want.layout.subtrees
                    && record.threshold == want.threshold
                    && record.members == want.members
                    && record.created_by == grant.name,
                "the tree asked for: its name, height, Winternitz parameter, subtrees, threshold \
                 and members",
            )?;
            need(
                record.members.iter().all(|m| r.members.contains_key(m)),
                "members of this cluster",
            )?;
            check_record(record, &want.layout)?;
            need(
                endorsements.len() <= record.members.len(),
                "at most one endorsement per member",
            )?;
            // Every member holds a share of every leaf and checked every
            // subtree: each endorses the record.
            let statement = endorse_statement(record);
            let unsigned: Vec<NodeId> = record
                .members
                .iter()
                .copied()
                .filter(|m| {
                    !endorsements.iter().any(|e| {
                        e.node == *m
                            && r.members.get(m).is_some_and(|info| {
                                crate::identity::verify(&info.identity, &statement, &e.signature.0)
                            })
                    })
                })
                .collect();
            need(
                unsigned.is_empty(),
                &format!("every member's endorsement ({unsigned:?} did not endorse)"),
            )
        }
        SeedtreeCommand::StReserve { .. } => {
            Err("leaves are reserved by a node's statement, not a client's request".into())
        }
    }
}
