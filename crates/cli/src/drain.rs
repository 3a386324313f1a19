//! `keyquorum cluster drain ID [--onto M]`: move everything a node holds
//! a share of off it before its removal (issue #23 item 2), on one
//! approval by the operator quorum (DESIGN.md §4 item 2: an approval is
//! an authorization, and each participant checks it in its own replica).
//!
//! 1. The drain itself: proposed as [`Change::DrainNode`] unless the
//!    operators approved one already; the command waits up to `--wait`
//!    seconds for the approval and otherwise says to run it again.
//! 2. Keys with a share on the node (shared keys, HE sessions' `he.` keys,
//!    OPRF keys): each reshared, keeping its threshold, to its members
//!    drained ([`keyquorum_wire::control::drained`]), the target every
//!    dealer and every replica allows once the drain is approved.
//! 3. Accounts it guards: rotated (rendezvous hashing over the voters no
//!    longer picks a drained node).
//! 4. Signing trees it holds leaf shares of: their leaves not handed out
//!    yet re-dealt to the same target (`POST /v1/seedtrees/{name}/reshare`).
//! 5. What the operators cannot move is named and stops the removal: a
//!    PIN-protected secret (its record binds each guardian's masked share
//!    and unlock key to the guardian; only the client, who knows the PIN,
//!    can make new ones: once step 3 rotated the account, the client runs
//!    `keyquorum recovery secret move`, which registers it again on the new
//!    guardians, and the drain is run again), and a key or tree the drain
//!    would leave `t`-of-`t`. A destroyed secret's PIN key holds nothing.
//! 6. With `--remove`, once nothing is left: the removal is proposed.
//!
//! `--cancel` proposes [`Change::CancelDrain`] instead: what moved stays
//! moved, and the node takes new keys again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use keyquorum_client::Client;
use keyquorum_wire::control::{drained, Change, ChangeRecord};
use keyquorum_wire::recovery::{pin_key_of, RotateAccountRequest, KEY_PREFIX as RESET_PREFIX};
use keyquorum_wire::NodeId;
use serde_json::json;

use crate::cluster::print_json;

/// What `drain` did or could not do, one line each.
#[derive(Default)]
struct Report {
    moved: Vec<serde_json::Value>,
    failed: Vec<serde_json::Value>,
    blocked: Vec<serde_json::Value>,
}

impl Report {
    fn note(list: &mut Vec<serde_json::Value>, json: bool, kind: &str, name: &str, what: String) {
        if !json {
            eprintln!("{kind} {name}: {what}");
        }
        list.push(json!({ "kind": kind, "name": name, "detail": what }));
    }
}

/// The drains the operators approved, from the node's status.
async fn drains(c: &Client) -> Result<BTreeMap<NodeId, Option<NodeId>>> {
    Ok(c.status()
        .await?
        .nodes
        .iter()
        .filter(|n| n.draining)
        .map(|n| (n.id, n.drain_onto))
        .collect())
}

/// The pending proposal of `wanted` (approvals given to it count), or a
/// new one.
async fn pending_or_proposed(c: &Client, wanted: Change) -> Result<ChangeRecord> {
    let pending = c
        .changes()
        .await?
        .changes
        .into_iter()
        .find(|ch| !ch.done && ch.change == wanted);
    Ok(match pending {
        Some(ch) => ch,
        None => c.propose_change(wanted).await?,
    })
}

/// Makes sure the operators approved draining `id` onto `onto`: proposes
/// it if no one did, then waits up to `wait`. `Ok(false)`: not approved
/// yet (the change's id was printed).
async fn approved(
    c: &Client,
    id: NodeId,
    onto: Option<NodeId>,
    wait: Duration,
    json: bool,
) -> Result<bool> {
    let status = c.status().await?;
    let Some(me) = status.nodes.iter().find(|n| n.id == id) else {
        bail!("node {id} is not a member");
    };
    if me.draining {
        if onto.is_some() && me.drain_onto != onto {
            bail!(
                "node {id} is being drained onto {:?} already, not {onto:?}",
                me.drain_onto
            );
        }
        return Ok(true);
    }
    let wanted = Change::DrainNode { id, onto };
    let change = pending_or_proposed(c, wanted).await?;
    if !json {
        println!("{}", crate::operators::change_line(&change));
        eprintln!(
            "the drain needs {} operator approvals: {}",
            change.needed,
            crate::operators::change_hint(&change)?
        );
    }
    let until = Instant::now() + wait;
    loop {
        if drains(c).await?.contains_key(&id) {
            return Ok(true);
        }
        if Instant::now() >= until {
            if json {
                print_json(&json!({ "node": id, "approved": false, "change": change.id }))?;
            } else {
                eprintln!("not approved yet: run this again once it is");
            }
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `keyquorum cluster drain ID --cancel`: proposes the cancellation (or
/// finds it pending) and waits up to `wait` for the approval.
pub(crate) async fn cancel(c: &Client, id: NodeId, wait: Duration, json: bool) -> Result<()> {
    if !drains(c).await?.contains_key(&id) {
        bail!("node {id} is not being drained");
    }
    let wanted = Change::CancelDrain { id };
    let change = pending_or_proposed(c, wanted).await?;
    if !json {
        println!("{}", crate::operators::change_line(&change));
    }
    let until = Instant::now() + wait;
    let cancelled = loop {
        if !drains(c).await?.contains_key(&id) {
            break true;
        }
        if Instant::now() >= until {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if json {
        return print_json(&json!({ "node": id, "cancelled": cancelled, "change": change.id }));
    }
    if cancelled {
        eprintln!("node {id} is no longer being drained");
    } else {
        eprintln!(
            "the cancellation needs {} operator approvals: {}",
            change.needed,
            crate::operators::change_hint(&change)?
        );
    }
    Ok(())
}

/// `keyquorum cluster drain`.
pub(crate) async fn drain(
    c: &Client,
    id: NodeId,
    onto: Option<NodeId>,
    wait: Duration,
    remove: bool,
    json: bool,
) -> Result<()> {
    if !approved(c, id, onto, wait, json).await? {
        return Ok(());
    }
    let drains = drains(c).await?;
    let mut report = Report::default();

    for k in c.list_keys().await?.keys {
        if !k.members.contains(&id) {
            continue;
        }
        if let Some((account, generation)) = pin_key_of(&k.name) {
            // A destroyed secret's key: its guardians erased their shares.
            let secret = c.recovery_secret(account).await.ok();
            if secret.is_some_and(|s| s.destroyed && s.generation == generation) {
                continue;
            }
            Report::note(
                &mut report.blocked,
                json,
                "pin_key",
                &k.name,
                format!(
                    "account {account}'s secret binds a masked share to each guardian that only \
                     its PIN opens: once the account is rotated (below), its client moves it \
                     (keyquorum recovery secret move {account} --pin-file F --pin-key HEX), then \
                     drain again"
                ),
            );
            continue;
        }
        if k.name.starts_with(RESET_PREFIX) {
            continue; // moved with its account, below
        }
        let Some(target) = drained(&drains, &k.members) else {
            continue;
        };
        // A drain shrinks a key only while a member more than its
        // threshold stays (the rule every replica applies).
        if target.len() < k.members.len() && target.len() <= usize::from(k.threshold) {
            Report::note(
                &mut report.blocked,
                json,
                "key",
                &k.name,
                format!(
                    "{} members would be left for a threshold of {}: drain onto a new member \
                     (--onto), or change its policy (keyquorum key policy)",
                    target.len(),
                    k.threshold
                ),
            );
            continue;
        }
        let work = c.reshare(&k.name, k.threshold, &target);
        match crate::cluster::spinning(json, &format!("resharing {}", k.name), work).await {
            Ok(info) => Report::note(
                &mut report.moved,
                json,
                "key",
                &k.name,
                format!(
                    "reshared {}-of-{:?}, epoch {}",
                    info.threshold, info.members, info.epoch
                ),
            ),
            Err(e) => Report::note(&mut report.failed, json, "key", &k.name, e.to_string()),
        }
    }

    for a in c.recovery_accounts().await?.accounts {
        if !a.guardians.iter().any(|g| g.node == id) {
            continue;
        }
        let same = RotateAccountRequest::default();
        let work = c.recovery_account_rotate(&a.account, &same);
        match crate::cluster::spinning(json, &format!("rotating {}", a.account), work).await {
            Ok(info) => {
                let guardians: Vec<NodeId> = info.guardians.iter().map(|g| g.node).collect();
                Report::note(
                    &mut report.moved,
                    json,
                    "account",
                    &a.account,
                    format!("rotated to guardians {guardians:?}, epoch {}", info.epoch),
                );
            }
            Err(e) => Report::note(
                &mut report.failed,
                json,
                "account",
                &a.account,
                e.to_string(),
            ),
        }
    }

    for t in c.seedtrees().await?.trees {
        if !t.members.contains(&id) {
            continue;
        }
        let Some(target) = drained(&drains, &t.members) else {
            continue;
        };
        if target.len() < t.members.len() && target.len() <= usize::from(t.threshold) {
            Report::note(
                &mut report.blocked,
                json,
                "seedtree",
                &t.name,
                format!(
                    "{} holders would be left for a threshold of {}: drain onto a new member \
                     (--onto)",
                    target.len(),
                    t.threshold
                ),
            );
            continue;
        }
        let work = c.seedtree_reshare(&t.name, t.threshold, &target);
        match crate::cluster::spinning(json, &format!("moving {}'s leaves", t.name), work).await {
            Ok(info) => Report::note(
                &mut report.moved,
                json,
                "seedtree",
                &t.name,
                format!(
                    "leaves {}.. moved to {}-of-{:?}, sharing {}",
                    info.first, info.threshold, info.members, info.epoch
                ),
            ),
            Err(e) => Report::note(&mut report.failed, json, "seedtree", &t.name, e.to_string()),
        }
    }

    let clear = report.failed.is_empty() && report.blocked.is_empty();
    let removal = if clear && remove {
        Some(c.remove_node(id).await?)
    } else {
        None
    };
    if json {
        print_json(&json!({
            "node": id,
            "approved": true,
            "moved": report.moved,
            "failed": report.failed,
            "blocked": report.blocked,
            "removal": removal.as_ref().map(|r| r.id.clone()),
        }))?;
    } else if let Some(r) = &removal {
        println!("{}", crate::operators::change_line(r));
        eprintln!(
            "node {id} holds nothing now; its removal needs {} operator approvals: {}",
            r.needed,
            crate::operators::change_hint(r)?
        );
    } else if clear {
        eprintln!("node {id} holds nothing now: keyquorum cluster remove {id}");
    }
    if !report.failed.is_empty() {
        bail!(
            "{} moves failed (run the drain again: what moved stays moved)",
            report.failed.len()
        );
    }
    if !report.blocked.is_empty() {
        bail!(
            "node {id} still holds what cannot be moved ({} items above)",
            report.blocked.len()
        );
    }
    Ok(())
}
