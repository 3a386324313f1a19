//! What a client's signed request must ask for before a tree command
//! applies (DESIGN.md §4 item 3), on every replica alike.
//!
//! | command | request | who | what apply re-derives |
//! |---|---|---|---|
//! | `st_create` | `POST /v1/seedtrees` (the body is the tree asked for) | an admin | name, height, Winternitz parameter, subtrees, threshold and members as asked; `I` from the commitments and contributions; the builders; the public key from the subtree roots; every member's endorsement |
//! | `st_reserve` | (a node statement, `machine::authority`) | any member node | — |
//! | `st_reshare` | `POST /v1/seedtrees/{name}/reshare` (the body is the holders and threshold asked for) | an admin | the plan's tree, run and sharing are the tree's now; its holders and threshold are the ones asked, and the target an approved drain gives the tree's holders (its threshold kept, never down to `t`-of-`t`); its dealers are `t` current holders; every new holder's endorsement |

use keyquorum_wire::control::Grant;
use keyquorum_wire::seedtree::{
    endorse_statement, reshare_statement, CreateSeedtreeRequest, ReshareSeedtreeRequest,
    SeedtreeCommand, TreeResharePlan,
};
use keyquorum_wire::NodeId;

use super::state::{check_record, shape, TreeEntry, RESHARE_RULES, ST_RULES};
use crate::cluster::machine::request::{admin, body, distinct as set, need};
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
        SeedtreeCommand::StReshare { plan, endorsements } => {
            if r.rules < RESHARE_RULES {
                return Err(format!(
                    "moving a tree's leaves needs apply rules {RESHARE_RULES} (the log is at {})",
                    r.rules
                ));
            }
            need(
                post && matches!(seg, ["v1", "seedtrees", name, "reshare"] if *name == plan.tree),
                "POST /v1/seedtrees/{name}/reshare",
            )?;
            admin(grant)?;
            let asked: ReshareSeedtreeRequest = body(body_bytes)?;
            let e = r
                .seedtree
                .trees
                .get(&plan.tree)
                .ok_or_else(|| format!("no tree named {}", plan.tree))?;
            check_plan(r, e, &asked, plan)?;
            let statement = reshare_statement(plan);
            let unsigned: Vec<NodeId> = plan
                .members
                .iter()
                .copied()
                .filter(|m| {
                    !endorsements.iter().any(|x| {
                        x.node == *m
                            && r.members.get(m).is_some_and(|info| {
                                crate::identity::verify(&info.identity, &statement, &x.signature.0)
                            })
                    })
                })
                .collect();
            need(
                unsigned.is_empty() && endorsements.len() <= plan.members.len(),
                &format!("every new holder's endorsement ({unsigned:?} did not endorse)"),
            )
        }
    }
}

/// Whether reshare `plan` of tree `e` is what the admin `asked` for and
/// what this registry allows: the tree's run and sharing now, its
/// threshold kept, the holders the approved drains give its holders (a
/// drain replaces; it shrinks a tree only while a holder more than the
/// threshold stays, never `t`-of-`t`), holders of this cluster, and `t`
/// distinct current holders as dealers. Dealers, new holders and every
/// replica each check it.
pub(crate) fn check_plan(
    r: &Registry,
    e: &TreeEntry,
    asked: &ReshareSeedtreeRequest,
    plan: &TreeResharePlan,
) -> Result<(), String> {
    let record = &e.record;
    need(
        plan.run == record.run && plan.epoch == e.epoch,
        &format!(
            "the tree's sharing now (sharing {} of run {})",
            e.epoch, record.run
        ),
    )?;
    need(
        plan.members == set(&plan.members)
            && set(&asked.members) == plan.members
            && asked.threshold == plan.threshold,
        "the holders and threshold the admin asked for",
    )?;
    need(
        plan.threshold == record.threshold,
        "the tree's own threshold (a reshare keeps it)",
    )?;
    let allowed = r.drained(&record.members).is_some_and(|m| {
        (m.len() >= record.members.len() || m.len() > usize::from(record.threshold))
            && m == plan.members
    });
    need(
        allowed,
        "the holders an approved drain gives the tree (keyquorum cluster drain ID --onto NEW, \
         then keyquorum approve ID)",
    )?;
    need(
        plan.members.iter().all(|m| r.members.contains_key(m)),
        "holders that are members of this cluster",
    )?;
    need(
        plan.dealers == set(&plan.dealers)
            && plan.dealers.len() == usize::from(record.threshold)
            && plan.dealers.iter().all(|d| record.members.contains(d)),
        "exactly the threshold's worth of distinct current holders as dealers",
    )?;
    // A drained holder deals only when too few others are left: the
    // others' parts alone make the new sharing.
    let staying = record
        .members
        .iter()
        .filter(|m| !r.operators.drains.contains_key(m))
        .count();
    need(
        staying < usize::from(record.threshold)
            || plan
                .dealers
                .iter()
                .all(|d| !r.operators.drains.contains_key(d)),
        "dealers that are not being drained",
    )?;
    // The leaves below the cut are not moved: a cut past what was handed
    // out (and an interval more) would throw leaves away.
    let handed = e.next.max(e.first);
    need(
        u64::from(plan.cut) < 1u64 << record.height
            && u64::from(plan.cut) >= e.first
            && u64::from(plan.cut) <= handed + u64::from(super::state::MAX_RESERVE),
        &format!(
            "a cut inside the tree, at most an interval past the leaves handed out ({handed})"
        ),
    )
}
