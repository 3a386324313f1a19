//! The participants' side of a tree reshare (`super::reshare` has the
//! protocol and why it is safe): a dealer re-deals its shares chunk by
//! chunk, a new holder adds the dealers' parts up, keeps the public nodes
//! it needs, and endorses; every member erases what is not in force.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyquorum_core::lms::federation::{Layout, LeafShare, RedealWeight};
use keyquorum_core::lms::tree::Subtree;
use keyquorum_core::lms::{Hash, Identifier};
use keyquorum_store::vault::{Op, Table};
use keyquorum_wire::peer::{ClientRequest, PeerMessage, Sealed};
use keyquorum_wire::seedtree::{reshare_statement, ReshareSeedtreeRequest, TreeResharePlan};
use keyquorum_wire::{Hex, Hex32, NodeId};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};

use super::authority::check_plan;
use super::keygen::{store_nodes, CHUNK};
use super::rows;
use super::state::{identifier_of, layout_of, plan_id, sharing_of, TreeEntry, RESHARE_RULES};
use crate::api::auth::{check_forwarded, check_sent_to, Ledger};
use crate::cluster::peer::{open_secret, seal_secret};
use crate::cluster::Node;
use crate::error::NodeError;
use crate::keys::pid;
/// Plans one admin request drives (a dealer that fails is replaced).
pub(crate) const RESHARE_ATTEMPTS: usize = 3;
/// `Pending` vault rows naming each sharing this node stores leaf shares
/// under (written before the first row), so a sweep finds every one.
const SHARING_ROW: &[u8] = b"seedtree-sharing/";
/// Most trees a member takes part in reshares of at once (one run each).
const MAX_RUNS: usize = 8;
/// A reshare not endorsed within this is dropped.
const RUN_LIFETIME: Duration = Duration::from_secs(3600);

fn refuse(why: impl std::fmt::Display) -> NodeError {
    NodeError::Forbidden(format!("tree reshare refused: {why}"))
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, NodeError> {
    m.lock()
        .map_err(|_| NodeError::Internal("tree reshare lock poisoned".into()))
}

fn vault_err(e: impl std::fmt::Display) -> NodeError {
    NodeError::Internal(format!("vault: {e}"))
}

/// The first leaf of every chunk a plan moves: from the start of the cut's
/// subtree (a new holder rebuilds whole subtrees) to the last leaf.
pub(super) fn chunks(layout: &Layout, cut: u32) -> Vec<u32> {
    let start = layout.leaves_of(layout.subtree_of(cut)).start;
    (start..layout.lms.leaves())
        .step_by(CHUNK as usize)
        .collect()
}

/// The end of the chunk starting at `first`.
fn chunk_end(layout: &Layout, first: u32) -> u32 {
    first.saturating_add(CHUNK).min(layout.lms.leaves())
}

/// The HPKE session of one dealer's parts of one chunk.
fn part_session(plan: &Hex32, first: u32, dealer: NodeId) -> Hex32 {
    let mut h = Sha256::new();
    h.update(b"keyquorum-seedtree-redeal-v1");
    h.update(plan.0);
    h.update(first.to_be_bytes());
    h.update(u64::from(dealer).to_be_bytes());
    Hex32(h.finalize().into())
}

/// A member's state in one reshare.
struct Redeal {
    plan: TreeResharePlan,
    coordinator: NodeId,
    layout: Layout,
    tree_id: Identifier,
    roots: Vec<Hex32>,
    /// Where the new shares go.
    sharing: Hex32,
    /// This member deals: its weight.
    weight: Option<RedealWeight>,
    /// What the admin asked (each deal checks the plan again).
    asked: ReshareSeedtreeRequest,
    /// This member is new to the tree: it takes the public nodes too.
    new_holder: bool,
    /// Per chunk being summed: the dealers whose parts are in, the sums.
    sums: BTreeMap<u32, (BTreeSet<NodeId>, Vec<LeafShare>)>,
    /// Chunks taken whole (being stored or stored).
    taken: BTreeSet<u32>,
    /// Chunks stored.
    stored: BTreeSet<u32>,
    /// A new holder's leaf nodes, per subtree, until the subtree is whole.
    nodes: BTreeMap<u32, BTreeMap<u32, Hash>>,
    /// Subtrees checked and kept.
    held: BTreeSet<u32>,
    failed: Option<String>,
    started: Instant,
}

/// The reshares this member takes part in.
#[derive(Default)]
pub(crate) struct Redeals {
    runs: Mutex<BTreeMap<Hex32, Arc<Mutex<Redeal>>>>,
    ledger: Ledger,
}

impl Redeals {
    fn run(
        &self,
        id: &Hex32,
        coordinator: Option<NodeId>,
    ) -> Result<Arc<Mutex<Redeal>>, NodeError> {
        let r = lock(&self.runs)?
            .get(id)
            .cloned()
            .ok_or_else(|| NodeError::NotFound(format!("no tree reshare {id} here")))?;
        if let Some(from) = coordinator.filter(|f| lock(&r).is_ok_and(|r| r.coordinator != *f)) {
            return Err(refuse(format!(
                "node {from} does not coordinate reshare {id}"
            )));
        }
        Ok(r)
    }

    /// Step 1: check the admin's request and the plan; take part.
    pub(crate) async fn open(
        &self,
        node: &Node,
        from: NodeId,
        plan: &TreeResharePlan,
        request: &ClientRequest,
    ) -> Result<PeerMessage, NodeError> {
        node.require_rules(RESHARE_RULES, "moving a tree's leaves")?;
        let a = check_forwarded(node, request)?;
        check_sent_to(node, &request.target_uri, from).map_err(refuse)?;
        if !a.grant.admin {
            return Err(refuse(format!("client {} is not an admin", a.grant.name)));
        }
        if a.method != "POST" || a.path != format!("/v1/seedtrees/{}/reshare", plan.tree) {
            return Err(refuse(format!(
                "the client's request is {} {}, not a reshare of tree {}",
                a.method, a.path, plan.tree
            )));
        }
        let asked: ReshareSeedtreeRequest = serde_json::from_slice(&a.body)
            .map_err(|e| refuse(format!("the request's body: {e}")))?;
        // The drain that allows the plan may be committed and not applied
        // here yet: catch up first. The decision is this replica's.
        node.read_barrier().await?;
        let e = tree(node, &plan.tree)?;
        node.registry(|r| check_plan(r, &e, &asked, plan))
            .map_err(refuse)?;
        let me = node.id();
        let dealer = plan.dealers.contains(&me);
        let holder = plan.members.contains(&me);
        if !dealer && !holder {
            return Err(refuse(format!(
                "node {me} neither deals nor holds in this plan"
            )));
        }
        let id = plan_id(plan);
        // The same plan from another request (a second coordinator), or
        // again: the run goes on as it is, never started over.
        if lock(&self.runs)?.contains_key(&id) {
            return Ok(PeerMessage::Ack);
        }
        self.ledger.record(
            &a,
            &format!("seedtree.reshare {}", plan.tree),
            &hex::encode(id.0),
            RESHARE_ATTEMPTS,
        )?;
        let weight = if dealer {
            let dealers: BTreeSet<_> = plan.dealers.iter().map(|d| pid(*d)).collect();
            Some(RedealWeight::new(pid(me), &dealers).map_err(NodeError::from_core)?)
        } else {
            None
        };
        let layout = layout_of(&e.record).map_err(NodeError::Internal)?;
        let tree_id = identifier_of(&e.record).map_err(NodeError::Internal)?;
        let sharing = sharing_of(&plan.run, &id);
        let run = Redeal {
            plan: plan.clone(),
            coordinator: from,
            layout,
            tree_id,
            roots: e.record.roots.clone(),
            sharing,
            weight,
            asked,
            new_holder: holder && !e.record.members.contains(&me),
            sums: BTreeMap::new(),
            taken: BTreeSet::new(),
            stored: BTreeSet::new(),
            nodes: BTreeMap::new(),
            held: BTreeSet::new(),
            failed: None,
            started: Instant::now(),
        };
        {
            let mut runs = lock(&self.runs)?;
            // The same plan from another request (a second coordinator):
            // the run goes on as it is, never started over.
            if runs.contains_key(&id) {
                return Ok(PeerMessage::Ack);
            }
            // One run per tree: a newer plan replaces an older one.
            runs.retain(|_, r| {
                lock(r)
                    .is_ok_and(|r| r.started.elapsed() < RUN_LIFETIME && r.plan.tree != plan.tree)
            });
            if runs.len() >= MAX_RUNS {
                return Err(NodeError::Unavailable(format!(
                    "reshares of {MAX_RUNS} trees run here already"
                )));
            }
            runs.insert(id, Arc::new(Mutex::new(run)));
        }
        if holder {
            // Named before any row is written, so a sweep finds its rows,
            // with the sharing it replaces: erased only once a later one
            // is in force (until then this plan may still be committed).
            let named = node.vault().put(
                Table::Pending,
                &sharing_row(&sharing),
                &pending_value(&plan.tree, plan.epoch),
            );
            if let Err(e) = named {
                lock(&self.runs)?.remove(&id);
                return Err(vault_err(e));
            }
        }
        Ok(PeerMessage::Ack)
    }

    /// Step 2, a dealer: re-deal this member's shares of the chunk from
    /// `first` to every new holder.
    pub(crate) async fn deal(
        &self,
        node: &Node,
        from: NodeId,
        id: Hex32,
        first: u32,
    ) -> Result<PeerMessage, NodeError> {
        let cell = self.run(&id, Some(from))?;
        let (plan, layout, old, weight, mut rng, asked) = {
            let r = lock(&cell)?;
            let Some(weight) = r.weight.clone() else {
                return Err(refuse(format!("node {} does not deal in {id}", node.id())));
            };
            // The chunk's dealing follows from a secret of this node's, the
            // plan and the chunk, the same at every start: asked again (a
            // retry, a restart, a second coordinator), it deals the very
            // same parts; holders that took parts of two dealings would
            // hold shares of no one polynomial.
            let mut label = b"keyquorum-seedtree-redeal-v1/".to_vec();
            label.extend_from_slice(&id.0);
            label.extend_from_slice(&first.to_be_bytes());
            let rng = ChaCha20Rng::from_seed(*node.keys().derive_secret(&label));
            if !chunks(&r.layout, r.plan.cut).contains(&first) {
                return Err(NodeError::BadRequest(format!(
                    "no chunk starts at leaf {first}"
                )));
            }
            (
                r.plan.clone(),
                r.layout,
                r.plan.dealers.clone(),
                weight,
                rng,
                r.asked.clone(),
            )
        };
        // The sharing this member re-deals is the one the plan replaces,
        // and the plan is still allowed (a drain cancelled since: no more).
        let e = tree(node, &plan.tree)?;
        node.registry(|r| check_plan(r, &e, &asked, &plan))
            .map_err(refuse)?;
        let current = e.record.members.clone();
        let (source, end, cut) = (e.sharing(), chunk_end(&layout, first), plan.cut);
        let lo = first.max(cut);
        let me = node.id();
        let holders: BTreeSet<_> = plan.members.iter().map(|m| pid(*m)).collect();
        let (node2, plan2) = (node.clone(), plan.clone());
        // Reading, re-dealing and sealing 4,096 shares is blocking work.
        let per: BTreeMap<NodeId, (Sealed, Vec<u8>)> =
            tokio::task::spawn_blocking(move || -> Result<_, NodeError> {
                let mut parts: BTreeMap<NodeId, zeroize::Zeroizing<Vec<u8>>> = plan2
                    .members
                    .iter()
                    .map(|m| (*m, zeroize::Zeroizing::new(Vec::new())))
                    .collect();
                let held = rows::read_range(
                    node2.vault(),
                    Table::LeafShares,
                    &source,
                    lo..end,
                    rows::leaf_row(&layout),
                )?;
                for (q, bytes) in (lo..end).zip(held) {
                    let bytes = bytes.ok_or_else(|| {
                        NodeError::NotFound(format!(
                            "node {me} holds no share of leaf {q} of {}",
                            plan2.tree
                        ))
                    })?;
                    let share =
                        LeafShare::from_bytes(bytes.as_slice()).map_err(NodeError::from_core)?;
                    let dealt = share
                        .redeal(&weight, plan2.threshold, &holders, &mut rng)
                        .map_err(NodeError::from_core)?;
                    for (m, out) in parts.iter_mut() {
                        let part = dealt
                            .get(&pid(*m))
                            .ok_or_else(|| NodeError::Internal("a holder got no part".into()))?;
                        out.extend_from_slice(&part.to_bytes());
                    }
                }
                // The public leaf nodes, from the first dealer, for a
                // holder new to the tree.
                let first_dealer = old.first() == Some(&me);
                let mut leaf_nodes = Vec::new();
                if first_dealer {
                    let bottom = layout.lms.leaves();
                    let stored = rows::read_range(
                        node2.vault(),
                        Table::TreeNodes,
                        &plan2.run,
                        bottom + first..bottom + end,
                        rows::node_row(&layout, bottom + first),
                    )?;
                    for (r, v) in (bottom + first..).zip(stored) {
                        let v = v.ok_or_else(|| {
                            NodeError::Internal(format!(
                                "node {r} of {} is not stored here",
                                plan2.tree
                            ))
                        })?;
                        leaf_nodes.extend_from_slice(v.as_slice());
                    }
                }
                let session = part_session(&id, first, me);
                parts
                    .into_iter()
                    .map(|(m, bytes)| {
                        let info = node2.node_info(m).ok_or_else(|| {
                            NodeError::Unavailable(format!("no address for node {m}"))
                        })?;
                        let sealed = seal_secret(&session, me, m, &info, &bytes)?;
                        let nodes = if current.contains(&m) {
                            Vec::new()
                        } else {
                            leaf_nodes.clone()
                        };
                        Ok((m, (sealed, nodes)))
                    })
                    .collect()
            })
            .await
            .map_err(|e| NodeError::Internal(format!("re-deal task: {e}")))??;
        let calls = per.into_iter().map(|(m, (sealed, nodes))| {
            let msg = PeerMessage::StRedealPart {
                plan: id,
                first,
                shares: sealed,
                nodes: Hex(nodes),
            };
            async move {
                let info = node
                    .node_info(m)
                    .ok_or_else(|| NodeError::Unavailable(format!("no address for node {m}")))?;
                super::send_until_acked(node, m, &info, &msg, "parts").await
            }
        });
        for r in futures::future::join_all(calls).await {
            r?;
        }
        Ok(PeerMessage::Ack)
    }

    /// Step 3, a new holder: a dealer's parts of the chunk from `first`.
    pub(crate) async fn part(
        &self,
        node: &Node,
        from: NodeId,
        id: Hex32,
        first: u32,
        shares: &Sealed,
        nodes: &[u8],
    ) -> Result<PeerMessage, NodeError> {
        let cell = self.run(&id, None)?;
        let (lo, end, dealers, want_nodes) = {
            let r = lock(&cell)?;
            if !r.plan.members.contains(&node.id()) {
                return Err(refuse(format!("node {} holds nothing in {id}", node.id())));
            }
            if !r.plan.dealers.contains(&from) {
                return Err(refuse(format!("node {from} does not deal in {id}")));
            }
            if !chunks(&r.layout, r.plan.cut).contains(&first) {
                return Err(NodeError::BadRequest(format!(
                    "no chunk starts at leaf {first}"
                )));
            }
            // Sent again (its answer was lost): taken already.
            if r.taken.contains(&first)
                || r.sums.get(&first).is_some_and(|(d, _)| d.contains(&from))
            {
                return Ok(PeerMessage::Ack);
            }
            let end = chunk_end(&r.layout, first);
            let want_nodes = r.new_holder && r.plan.dealers.first() == Some(&from);
            (
                first.max(r.plan.cut),
                end,
                r.plan.dealers.clone(),
                want_nodes,
            )
        };
        let count = end.saturating_sub(lo) as usize;
        if nodes.len()
            != if want_nodes {
                (end - first) as usize * 32
            } else {
                0
            }
        {
            return Err(NodeError::Misbehaved {
                message: format!("node {from} sent {} bytes of leaf nodes", nodes.len()),
                culprits: vec![from],
            });
        }
        let (node2, sealed) = (node.clone(), shares.clone());
        let parts: Vec<LeafShare> = tokio::task::spawn_blocking(move || {
            let opened = open_secret(
                node2.keys(),
                &part_session(&id, first, from),
                from,
                node2.id(),
                &sealed,
            )?;
            if opened.len() != count * 32 {
                return Err(NodeError::Misbehaved {
                    message: format!(
                        "node {from} dealt {} bytes of parts for {count} leaves",
                        opened.len()
                    ),
                    culprits: vec![from],
                });
            }
            opened
                .chunks_exact(32)
                .map(|b| {
                    LeafShare::from_bytes(b).map_err(|_| NodeError::Misbehaved {
                        message: format!("node {from} dealt a part that is not a scalar"),
                        culprits: vec![from],
                    })
                })
                .collect()
        })
        .await
        .map_err(|e| NodeError::Internal(format!("part task: {e}")))??;
        // Add the parts in; a chunk with every dealer's is taken whole.
        let whole = {
            let mut r = lock(&cell)?;
            if r.taken.contains(&first) {
                return Ok(PeerMessage::Ack);
            }
            let (from_set, sums) = r
                .sums
                .entry(first)
                .or_insert_with(|| (BTreeSet::new(), Vec::new()));
            if !from_set.insert(from) {
                return Ok(PeerMessage::Ack);
            }
            if sums.is_empty() {
                *sums = parts;
            } else {
                for (s, p) in sums.iter_mut().zip(&parts) {
                    *s = LeafShare::sum([&*s, p]);
                }
            }
            if from_set.len() == dealers.len() {
                r.taken.insert(first);
                r.sums.remove(&first).map(|(_, s)| s)
            } else {
                None
            }
        };
        if want_nodes {
            // Rebuilding and keeping a whole subtree's nodes can take longer
            // than a peer call waits: its own task (the endorsement waits
            // for it, and says if it failed).
            let (node2, cell2, bytes) = (node.clone(), cell.clone(), nodes.to_vec());
            node.spawn(async move {
                if let Err(e) = take_nodes(&node2, &cell2, first, &bytes).await {
                    tracing::warn!(error = %e, "a tree reshare's public nodes");
                }
            });
        }
        if let Some(sums) = whole {
            let (node2, sharing, size) = {
                let r = lock(&cell)?;
                (node.clone(), r.sharing, rows::leaf_row(&r.layout))
            };
            let stored = tokio::task::spawn_blocking(move || -> Result<(), NodeError> {
                let mut values = zeroize::Zeroizing::new(Vec::with_capacity(32 * sums.len()));
                for share in &sums {
                    values.extend_from_slice(&share.to_bytes());
                }
                let rows = rows::to_write(&node2, &sharing, lo, &values, size)?;
                let ops: Vec<Op<'_>> = rows
                    .iter()
                    .map(|(k, v)| Op::Put(Table::LeafShares, k.as_slice(), v.as_slice()))
                    .collect();
                node2.vault().apply(&ops).map_err(vault_err)
            })
            .await
            .map_err(|e| NodeError::Internal(format!("store task: {e}")))?;
            let mut r = lock(&cell)?;
            match stored {
                Ok(()) => {
                    r.stored.insert(first);
                }
                Err(e) => {
                    r.failed = Some(format!("storing leaves {lo}..{end}: {e}"));
                    return Err(e);
                }
            }
        }
        Ok(PeerMessage::Ack)
    }

    /// Step 3's end: a new holder endorses the reshare once it stored every
    /// re-dealt leaf (and, new to the tree, checked and kept every subtree
    /// it signs in).
    pub(crate) fn endorse(
        &self,
        node: &Node,
        from: NodeId,
        id: Hex32,
    ) -> Result<PeerMessage, NodeError> {
        let cell = self.run(&id, Some(from))?;
        let r = lock(&cell)?;
        if !r.plan.members.contains(&node.id()) {
            return Err(refuse(format!("node {} holds nothing in {id}", node.id())));
        }
        if let Some(why) = &r.failed {
            return Err(NodeError::Internal(format!(
                "the reshare failed here: {why}"
            )));
        }
        let all = chunks(&r.layout, r.plan.cut);
        let missing = all.iter().filter(|c| !r.stored.contains(c)).count();
        if missing > 0 {
            return Err(NodeError::Unavailable(format!(
                "{missing} of {} chunks are not stored here yet",
                all.len()
            )));
        }
        if r.new_holder {
            let need = r.layout.subtree_of(r.plan.cut)..r.layout.subtrees;
            if let Some(s) = need.clone().find(|s| !r.held.contains(s)) {
                return Err(NodeError::Unavailable(format!(
                    "subtree {s}'s nodes are not checked here yet"
                )));
            }
        }
        let signature = node.keys().sign(&reshare_statement(&r.plan));
        Ok(PeerMessage::StEndorsed {
            signature: Hex(signature.to_vec()),
        })
    }

    /// Step 5: once this replica has sharing `epoch` (at least 1) of
    /// `tree` in force, forget the reshares it replaced and erase every
    /// share row a later sharing replaced.
    pub(crate) async fn done(
        &self,
        node: &Node,
        tree_name: &str,
        epoch: u32,
    ) -> Result<PeerMessage, NodeError> {
        if epoch == 0 {
            return Err(NodeError::BadRequest("no reshare makes sharing 0".into()));
        }
        node.read_barrier().await?;
        let e = tree(node, tree_name)?;
        if e.epoch < epoch {
            return Err(NodeError::Unavailable(format!(
                "sharing {epoch} of {tree_name} is not applied here yet"
            )));
        }
        if let Ok(mut runs) = lock(&self.runs) {
            runs.retain(|_, r| {
                lock(r).is_ok_and(|r| r.plan.tree != tree_name || r.plan.epoch >= e.epoch)
            });
        }
        let node2 = node.clone();
        tokio::task::spawn_blocking(move || sweep(&node2, false))
            .await
            .map_err(|e| NodeError::Internal(format!("sweep task: {e}")))??;
        Ok(PeerMessage::Ack)
    }

    /// Erase every share row a later sharing replaced (at start, after
    /// catching up).
    pub(crate) async fn sweep_now(&self, node: &Node) {
        let node2 = node.clone();
        match tokio::task::spawn_blocking(move || sweep(&node2, true)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(rows = n, "erased leaf shares of sharings not in force"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not erase old leaf shares"),
            Err(e) => tracing::warn!(error = %e, "leaf share sweep task"),
        }
    }
}

/// What a sharing's `Pending` row holds: the sharing its plan replaces
/// (u32) and the tree's name.
fn pending_value(tree: &str, epoch: u32) -> Vec<u8> {
    let mut v = epoch.to_be_bytes().to_vec();
    v.extend_from_slice(tree.as_bytes());
    v
}

/// The `Pending` row naming sharing `sharing`.
fn sharing_row(sharing: &Hex32) -> Vec<u8> {
    let mut k = SHARING_ROW.to_vec();
    k.extend_from_slice(&sharing.0);
    k
}

/// Tree `name`'s entry in this replica.
pub(super) fn tree(node: &Node, name: &str) -> Result<TreeEntry, NodeError> {
    node.registry(|r| r.seedtree.trees.get(name).cloned())
        .ok_or_else(|| NodeError::NotFound(format!("no tree named {name}")))
}

/// Erase the leaf share rows of every sharing a later sharing replaced in
/// this replica: a reshare's (its `Pending` row names the tree and the
/// sharing its plan replaces) once the tree's sharing in force is newer
/// than that and is not it, and a key generation's own once a reshare
/// replaced it. A plan for the sharing in force now may still be committed
/// (with its endorsements): its rows stay, whatever the runs in memory
/// (a restart, a run dropped) or a stale replica say. The `Pending` row of
/// an erased sharing goes only at a start (`forget`), when no store of its
/// parts can still be under way: until then each sweep erases what such a
/// store wrote late. The rows counted.
pub(crate) fn sweep(node: &Node, forget: bool) -> Result<usize, NodeError> {
    let (trees, replaced): (BTreeMap<String, (u32, Hex32)>, Vec<Hex32>) = node.registry(|r| {
        (
            r.seedtree
                .trees
                .iter()
                .map(|(name, e)| (name.clone(), (e.epoch, e.sharing())))
                .collect(),
            r.seedtree
                .trees
                .values()
                .filter(|e| e.sharing() != e.record.run)
                .map(|e| e.record.run)
                .collect(),
        )
    });
    let vault = node.vault();
    let mut gone: Vec<Hex32> = replaced;
    let mut rows_gone = Vec::new();
    for k in vault.keys(Table::Pending, SHARING_ROW).map_err(vault_err)? {
        let Some(sharing) = k
            .strip_prefix(SHARING_ROW)
            .and_then(|s| <[u8; 32]>::try_from(s).ok())
            .map(Hex32)
        else {
            continue;
        };
        let Some(value) = vault.get(Table::Pending, &k).map_err(vault_err)? else {
            continue;
        };
        let Some((replaces, name)) = value.split_first_chunk::<4>() else {
            continue;
        };
        let replaces = u32::from_be_bytes(*replaces);
        let superseded = std::str::from_utf8(name)
            .ok()
            .and_then(|n| trees.get(n))
            .is_some_and(|(epoch, in_force)| *epoch > replaces && *in_force != sharing);
        if superseded {
            gone.push(sharing);
            rows_gone.push(k);
        }
    }
    let mut erased = 0;
    for sharing in gone {
        let keys = vault
            .keys(Table::LeafShares, &sharing.0)
            .map_err(vault_err)?;
        for batch in keys.chunks(65_536) {
            let ops: Vec<Op<'_>> = batch
                .iter()
                .map(|k| Op::Delete(Table::LeafShares, k.as_slice()))
                .collect();
            vault.apply(&ops).map_err(vault_err)?;
        }
        erased += keys.len();
    }
    for k in rows_gone.iter().filter(|_| forget) {
        vault.delete(Table::Pending, k).map_err(vault_err)?;
    }
    Ok(erased)
}

/// A new holder keeps a chunk's leaf nodes; a subtree whose every leaf
/// node is in is rebuilt, checked against its root in the record, and
/// kept (`TreeNodes`, public data for the authentication paths).
async fn take_nodes(
    node: &Node,
    cell: &Arc<Mutex<Redeal>>,
    first: u32,
    bytes: &[u8],
) -> Result<(), NodeError> {
    let whole: Vec<(u32, Vec<Hash>)> = {
        let mut r = lock(cell)?;
        let layout = r.layout;
        for (q, v) in (first..).zip(bytes.chunks_exact(32)) {
            let mut h = [0u8; 32];
            h.copy_from_slice(v);
            r.nodes
                .entry(layout.subtree_of(q))
                .or_default()
                .insert(q, h);
        }
        let per = layout.per_subtree() as usize;
        let full: Vec<u32> = r
            .nodes
            .iter()
            .filter(|(_, n)| n.len() == per)
            .map(|(s, _)| *s)
            .collect();
        full.into_iter()
            .filter_map(|s| r.nodes.remove(&s).map(|n| (s, n.into_values().collect())))
            .collect()
    };
    for (s, leaves) in whole {
        let (layout, tree_id, root, run, dealer) = {
            let r = lock(cell)?;
            (
                r.layout,
                r.tree_id,
                r.roots.get(s as usize).copied(),
                r.plan.run,
                r.plan.dealers.first().copied(),
            )
        };
        let node2 = node.clone();
        let checked = tokio::task::spawn_blocking(move || -> Result<(), NodeError> {
            let bottom = layout.lms.leaves() + layout.leaves_of(s).start;
            let sub =
                Subtree::from_nodes(&tree_id, bottom, leaves).map_err(NodeError::from_core)?;
            if Some(Hex32(sub.root())) != root {
                return Err(NodeError::Misbehaved {
                    message: format!("the leaf nodes of subtree {s} do not make its root"),
                    culprits: dealer.into_iter().collect(),
                });
            }
            store_nodes(&node2, &layout, &run, &sub, bottom)
        })
        .await
        .map_err(|e| NodeError::Internal(format!("subtree task: {e}")))?;
        let mut r = lock(cell)?;
        match checked {
            Ok(()) => {
                r.held.insert(s);
            }
            Err(e) => {
                r.failed = Some(format!("subtree {s}: {e}"));
                return Err(e);
            }
        }
    }
    Ok(())
}
