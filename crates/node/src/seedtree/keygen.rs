//! A member's half of a tree's key generation (DESIGN.md §3.5): commit,
//! reveal, build its subtrees and deal their leaves' shares, take the
//! other builders' deals, check every subtree, endorse.
//!
//! 1. `st_commit`: the member checks the admin's signed request itself
//!    (signature, freshness, sent to the coordinator, `POST /v1/seedtrees`,
//!    the shape asked), draws 32 random bytes and answers their commitment.
//! 2. `st_reveal`: given every member's commitment (its own among them), it
//!    reveals. The commitments it saw are kept: a coordinator cannot swap
//!    one after seeing the reveals.
//! 3. `st_build`: given every contribution, it checks them against the
//!    commitments it kept, computes `I` and the builders, and builds its
//!    subtrees on a blocking thread: one secret per leaf, each
//!    Shamir-shared `t`-of-`n`, dealt in chunks of [`CHUNK`] leaves (each
//!    member's shares HPKE-sealed to it, with the leaves' public `K`).
//!    The secrets are zeroized once dealt.
//! 4. `st_deal`: from the subtree's builder only, a chunk's shares go to
//!    the vault (`LeafShares`, by run and leaf); once a subtree's every
//!    leaf is in, the member computes its nodes from the `K`s and keeps
//!    them (`TreeNodes`).
//! 5. `st_endorse`: the member signs the record only if `I`, the builders
//!    and the public key follow from what it saw and every subtree root is
//!    the one it computed itself.
//!
//! Runs live in memory: a member restarted mid-run fails it (the client
//! tries again; a new run has new commitments and a new identifier).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use keyquorum_core::lms::federation::{
    self, commitment, identifier, Layout, LeafSecret, LeafShare,
};
use keyquorum_core::lms::tree::Subtree;
use keyquorum_core::lms::{Hash, Identifier};
use keyquorum_store::vault::{Op, Table};
use keyquorum_wire::control::Endorsement;
use keyquorum_wire::peer::{ClientRequest, PeerMessage, Sealed};
use keyquorum_wire::seedtree::{endorse_statement, CreateSeedtreeRequest, SeedtreeRecord};
use keyquorum_wire::{Hex, Hex32, NodeId};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use super::os_pool::OsPool;
use super::rows;
use super::state::{self, numbers};
use crate::api::auth::{check_forwarded, check_sent_to, Authorized, Ledger};
use crate::cluster::peer::{open_secret, seal_secret};
use crate::cluster::Node;
use crate::error::NodeError;
use crate::keys::pid;

/// Leaves per deal message.
pub(crate) const CHUNK: u32 = 4096;
// A deal (and a reshare's chunk) writes whole rows: rows never overlap.
const _: () = assert!(CHUNK.is_multiple_of(rows::ROW));
/// Most key generation runs a member takes part in at once.
const MAX_RUNS: usize = 4;
/// A run not endorsed within this is dropped.
const RUN_LIFETIME: Duration = Duration::from_secs(3600);

/// A member's state in one run.
struct Run {
    name: String,
    coordinator: NodeId,
    members: Vec<NodeId>,
    threshold: u16,
    layout: Layout,
    contribution: [u8; 32],
    commitments: Option<Vec<Hash>>,
    id: Option<Identifier>,
    /// The `K` of each leaf received, by subtree.
    keys: BTreeMap<u32, Vec<Hash>>,
    /// The chunks taken, by subtree (their first leaves).
    chunks: BTreeMap<u32, BTreeSet<u32>>,
    /// The chunks stored (shares in the vault, `K`s in `keys`), by subtree.
    stored: BTreeMap<u32, BTreeSet<u32>>,
    /// Subtrees held in full: the root computed here from their `K`s.
    held: BTreeMap<u32, Hash>,
    /// Subtrees this member built and dealt to everyone: their roots.
    built: BTreeMap<u32, Hash>,
    failed: Option<String>,
    /// Endorsed: no more deals.
    endorsed: bool,
    started: Instant,
}

/// The runs this member takes part in.
#[derive(Default)]
pub(crate) struct Runs {
    runs: Mutex<BTreeMap<Hex32, Arc<Mutex<Run>>>>,
    ledger: Ledger,
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, NodeError> {
    m.lock()
        .map_err(|_| NodeError::Internal("seedtree lock poisoned".into()))
}

/// The run of the key generation the admin's request `request` asks
/// for: derived from what its signature covers, so no coordinator can
/// pick it (and reuse another tree's, whose shares and locks are stored
/// under it).
pub(crate) fn run_of(a: &Authorized, request: &ClientRequest) -> Hex32 {
    let mut h = Sha256::new();
    h.update(b"keyquorum-seedtree-run-v1");
    h.update(super::records::request_hash(a, request));
    Hex32(h.finalize().into())
}

/// The HPKE session of one deal: the run, the subtree and the first leaf.
fn deal_session(run: &Hex32, s: u32, first: u32) -> Hex32 {
    let mut h = Sha256::new();
    h.update(b"keyquorum-seedtree-deal-v1");
    h.update(run.0);
    h.update(s.to_be_bytes());
    h.update(first.to_be_bytes());
    Hex32(h.finalize().into())
}

fn refuse(why: impl std::fmt::Display) -> NodeError {
    NodeError::Forbidden(format!("tree key generation refused: {why}"))
}

impl Runs {
    /// Run `run`, if `coordinator` (when given) coordinates it.
    fn run(&self, run: &Hex32, coordinator: Option<NodeId>) -> Result<Arc<Mutex<Run>>, NodeError> {
        let r = lock(&self.runs)?
            .get(run)
            .cloned()
            .ok_or_else(|| NodeError::NotFound(format!("no tree key generation run {run}")))?;
        if let Some(from) = coordinator.filter(|f| lock(&r).is_ok_and(|r| r.coordinator != *f)) {
            return Err(refuse(format!("node {from} does not coordinate run {run}")));
        }
        Ok(r)
    }

    /// Step 1: check the admin's request, commit.
    #[allow(clippy::too_many_arguments, reason = "one peer message's fields")]
    pub(crate) async fn commit(
        &self,
        node: &Node,
        from: NodeId,
        tree: &str,
        run: Hex32,
        members: &[NodeId],
        threshold: u16,
        subtrees: u32,
        request: &ClientRequest,
    ) -> Result<PeerMessage, NodeError> {
        if check_forwarded(node, request).is_err()
            || node.registry(|r| r.seedtree.trees.contains_key(tree))
        {
            let _ = node.read_barrier().await;
        }
        let a = check_forwarded(node, request)?;
        check_sent_to(node, &request.target_uri, from).map_err(refuse)?;
        if a.method != "POST" || a.path != "/v1/seedtrees" || !a.grant.admin {
            return Err(refuse(
                "the client's request is not an admin's POST /v1/seedtrees",
            ));
        }
        let b: CreateSeedtreeRequest = serde_json::from_slice(&a.body)
            .map_err(|e| refuse(format!("the request's body: {e}")))?;
        let shape = node
            .registry(|r| {
                let voters = r.candidates();
                state::shape(&b, &voters, |n| r.default_threshold(n))
            })
            .map_err(refuse)?;
        if b.name != tree
            || shape.members != members
            || shape.threshold != threshold
            || shape.layout.subtrees != subtrees
        {
            return Err(refuse("the run is not the tree the client asked for"));
        }
        if run != run_of(&a, request) {
            return Err(refuse("the run is not the one the client's request makes"));
        }
        if node.registry(|r| r.seedtree.trees.values().any(|e| e.record.run == run)) {
            return Err(refuse(format!("run {run} made a tree already")));
        }
        if !members.contains(&node.id()) {
            return Err(refuse(format!(
                "node {} is not one of its members",
                node.id()
            )));
        }
        if node.registry(|r| r.seedtree.trees.contains_key(tree)) {
            return Err(NodeError::Conflict(format!("a tree named {tree} exists")));
        }
        self.ledger
            .record(&a, &format!("seedtree.create {tree}"), &run.to_string(), 1)?;
        let mut contribution = [0u8; 32];
        OsRng.fill_bytes(&mut contribution);
        let c = commitment(tree, u64::from(node.id()), &contribution);
        let mut runs = lock(&self.runs)?;
        // Runs whose tree is committed, endorsed a minute ago or older than
        // a run lives are over.
        let made: BTreeSet<Hex32> =
            node.registry(|r| r.seedtree.trees.values().map(|e| e.record.run).collect());
        runs.retain(|id, r| {
            !made.contains(id)
                && lock(r).is_ok_and(|r| {
                    let age = r.started.elapsed();
                    age < RUN_LIFETIME && !(r.endorsed && age > Duration::from_secs(60))
                })
        });
        if runs.len() >= MAX_RUNS {
            return Err(NodeError::Unavailable(format!(
                "this member takes part in {MAX_RUNS} tree key generations already"
            )));
        }
        if runs.contains_key(&run) {
            return Err(refuse(format!("run {run} exists")));
        }
        runs.insert(
            run,
            Arc::new(Mutex::new(Run {
                name: tree.to_string(),
                coordinator: from,
                members: members.to_vec(),
                threshold,
                layout: shape.layout,
                contribution,
                commitments: None,
                id: None,
                keys: BTreeMap::new(),
                chunks: BTreeMap::new(),
                stored: BTreeMap::new(),
                held: BTreeMap::new(),
                built: BTreeMap::new(),
                failed: None,
                endorsed: false,
                started: Instant::now(),
            })),
        );
        Ok(PeerMessage::StCommitted {
            commitment: Hex32(c),
        })
    }

    /// Step 2: every commitment fixed, reveal.
    pub(crate) fn reveal(
        &self,
        node: &Node,
        from: NodeId,
        run: &Hex32,
        commitments: &[Hex32],
    ) -> Result<PeerMessage, NodeError> {
        let r = self.run(run, Some(from))?;
        let mut r = lock(&r)?;
        let mine = commitment(&r.name, u64::from(node.id()), &r.contribution);
        let at = r.members.iter().position(|m| *m == node.id());
        if commitments.len() != r.members.len()
            || at.and_then(|i| commitments.get(i)).map(|c| c.0) != Some(mine)
        {
            return Err(refuse(
                "the commitments are not one per member with this member's own",
            ));
        }
        let list: Vec<Hash> = commitments.iter().map(|c| c.0).collect();
        if r.commitments.as_ref().is_some_and(|c| *c != list) {
            return Err(refuse("the commitments changed after this member saw them"));
        }
        r.commitments = Some(list);
        #[allow(unused_mut, reason = "altered by a test hook only")]
        let mut contribution = r.contribution;
        #[cfg(feature = "fault-injection")]
        if node
            .net_faults()
            .seedtree_lie_reveal
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            contribution[0] ^= 1;
        }
        Ok(PeerMessage::StRevealed {
            contribution: Hex32(contribution),
        })
    }

    /// Step 3: every contribution revealed; fix `I` and build this member's
    /// subtrees (in the background: [`Runs::progress`] reports).
    pub(crate) fn build(
        self: &Arc<Self>,
        node: &Node,
        from: NodeId,
        run: Hex32,
        contributions: &[Hex32],
    ) -> Result<PeerMessage, NodeError> {
        let cell = self.run(&run, Some(from))?;
        let (id, mine) = {
            let mut r = lock(&cell)?;
            let commitments = r
                .commitments
                .clone()
                .ok_or_else(|| refuse("no commitments seen yet"))?;
            if contributions.len() != r.members.len() {
                return Err(refuse("one contribution per member"));
            }
            let c: BTreeMap<u64, Hash> = r
                .members
                .iter()
                .zip(commitments)
                .map(|(m, c)| (u64::from(*m), c))
                .collect();
            let v: BTreeMap<u64, [u8; 32]> = r
                .members
                .iter()
                .zip(contributions)
                .map(|(m, c)| (u64::from(*m), c.0))
                .collect();
            let id = identifier(&r.name, &c, &v).map_err(refuse)?;
            if r.id.is_some() {
                return Err(refuse("the run builds already"));
            }
            r.id = Some(id);
            let builders = federation::builders(&r.name, &id, &r.layout, &numbers(&r.members));
            let me = u64::from(node.id());
            let mine: Vec<u32> = (0..r.layout.subtrees)
                .filter(|s| builders.get(*s as usize) == Some(&me))
                .collect();
            (id, mine)
        };
        let task_node = node.clone();
        node.spawn(async move {
            let node = task_node;
            for s in mine {
                if let Err(e) = build_and_deal(&node, &cell, run, &id, s).await {
                    tracing::warn!(run = %run, subtree = s, error = %e, "building a subtree failed");
                    if let Ok(mut r) = lock(&cell) {
                        r.failed = Some(format!("subtree {s}: {e}"));
                    }
                    return;
                }
            }
        });
        Ok(PeerMessage::Ack)
    }

    /// Step 4: a chunk of a subtree's leaves from its builder.
    #[allow(clippy::too_many_arguments, reason = "one peer message's fields")]
    pub(crate) async fn deal(
        self: &Arc<Self>,
        node: &Node,
        from: NodeId,
        run: Hex32,
        subtree: u32,
        first: u32,
        keys: &[u8],
        shares: &Sealed,
    ) -> Result<PeerMessage, NodeError> {
        let cell = self.run(&run, None)?;
        let (layout, id, name) = {
            let r = lock(&cell)?;
            let id = r.id.ok_or_else(|| {
                // The coordinator's build message to this member may
                // come after a builder's first deal: asked again.
                NodeError::Unavailable("the identifier is not fixed here yet".into())
            })?;
            let builders = federation::builders(&r.name, &id, &r.layout, &numbers(&r.members));
            if builders.get(subtree as usize) != Some(&u64::from(from)) {
                return Err(refuse(format!(
                    "node {from} does not build subtree {subtree}"
                )));
            }
            // A deal sent again (its answer was lost): taken already,
            // nothing is written twice.
            if r.chunks.get(&subtree).is_some_and(|c| c.contains(&first)) {
                return Ok(PeerMessage::Ack);
            }
            if r.endorsed || r.held.contains_key(&subtree) {
                return Err(refuse(format!("subtree {subtree} is held in full already")));
            }
            (r.layout, id, r.name.clone())
        };
        if !self.take_chunk(node, &cell, run, subtree, first, keys.len())? {
            return Ok(PeerMessage::Ack);
        }
        // The rest runs as its own task: a builder that gave up waiting
        // (and sends the deal again, answered at once) does not cancel it.
        let (task_node, keys, shares) = (node.clone(), keys.to_vec(), shares.clone());
        let task = node.spawn(async move {
            let node = task_node;
            let stored = store_deal(
                &node,
                from,
                (run, first, rows::leaf_row(&layout)),
                &keys,
                &shares,
                deal_session(&run, subtree, first),
            )
            .await;
            if let Err(e) = stored {
                if let Some(c) = lock(&cell)?.chunks.get_mut(&subtree) {
                    c.remove(&first);
                }
                return Err(e);
            }
            let range = layout.leaves_of(subtree);
            let complete = {
                let mut r = lock(&cell)?;
                let per = layout.per_subtree() as usize;
                let ks = r
                    .keys
                    .entry(subtree)
                    .or_insert_with(|| vec![[0u8; 32]; per]);
                let at = (first - range.start) as usize;
                for (slot, k) in ks.iter_mut().skip(at).zip(keys.chunks_exact(32)) {
                    slot.copy_from_slice(k);
                }
                let done = r.stored.entry(subtree).or_default();
                done.insert(first);
                let all = done.len() as u32;
                (all * CHUNK >= layout.per_subtree()).then(|| r.keys.remove(&subtree))
            };
            if let Some(Some(ks)) = complete {
                let node2 = node.clone();
                let root = tokio::task::spawn_blocking(move || -> Result<Hash, NodeError> {
                    let sub = Subtree::from_leaves(&id, layout.lms, range.start, &ks)
                        .map_err(NodeError::from_core)?;
                    store_nodes(&node2, &layout, &run, &sub, layout.lms.leaves() + range.start)?;
                    Ok(sub.root())
                })
                .await
                .map_err(|e| NodeError::Internal(format!("subtree task: {e}")))?;
                match root {
                    Ok(root) => {
                        lock(&cell)?.held.insert(subtree, root);
                        tracing::debug!(tree = %name, subtree, "holds a subtree's shares and nodes");
                    }
                    Err(e) => {
                        lock(&cell)?.failed = Some(format!("subtree {subtree}'s nodes: {e}"));
                        return Err(e);
                    }
                }
            }
            Ok::<(), NodeError>(())
        });
        task.await
            .map_err(|e| NodeError::Internal(format!("deal task: {e}")))?
            .ok_or_else(|| NodeError::Unavailable("the node is stopping".into()))??;
        Ok(PeerMessage::Ack)
    }

    /// Take chunk `first` of `subtree` for this deal (`false`: a copy of it
    /// is taken already), once its shape is checked and no rows of it are
    /// in the vault (a create request replayed after a restart makes a live
    /// tree's run again: its shares are never overwritten).
    fn take_chunk(
        &self,
        node: &Node,
        cell: &Arc<Mutex<Run>>,
        run: Hex32,
        subtree: u32,
        first: u32,
        key_bytes: usize,
    ) -> Result<bool, NodeError> {
        let layout = lock(cell)?.layout;
        let range = layout.leaves_of(subtree);
        let len = (key_bytes / 32) as u32;
        if !key_bytes.is_multiple_of(32)
            || len == 0
            || len > CHUNK
            || !range.contains(&first)
            || !(first - range.start).is_multiple_of(CHUNK)
            || first + len > range.end
            || (first + len != range.end && len != CHUNK)
        {
            return Err(NodeError::BadRequest(
                "a deal is a whole chunk of its subtree's leaves".into(),
            ));
        }
        let exists = rows::read(
            node.vault(),
            Table::LeafShares,
            &run,
            first,
            rows::leaf_row(&layout),
        )?
        .is_some();
        let mut r = lock(cell)?;
        if !r.chunks.entry(subtree).or_default().insert(first) {
            return Ok(false);
        }
        if exists {
            if let Some(c) = r.chunks.get_mut(&subtree) {
                c.remove(&first);
            }
            return Err(refuse(format!(
                "leaves {first}.. of run {run} are stored here already"
            )));
        }
        Ok(true)
    }

    /// How far run `run` is on this member.
    pub(crate) fn progress(
        &self,
        node: &Node,
        from: NodeId,
        run: &Hex32,
    ) -> Result<PeerMessage, NodeError> {
        let cell = self.run(run, Some(from))?;
        let r = lock(&cell)?;
        #[cfg(feature = "fault-injection")]
        let flip = u8::from(
            node.net_faults()
                .seedtree_bad_root
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        #[cfg(not(feature = "fault-injection"))]
        let flip = {
            let _ = node;
            0u8
        };
        Ok(PeerMessage::StProgressed {
            built: r
                .built
                .iter()
                .map(|(s, h)| {
                    let mut h = *h;
                    h[0] ^= flip;
                    (*s, Hex32(h))
                })
                .collect(),
            held: r.held.len() as u32,
            chunks: r.stored.values().map(|c| c.len() as u32).sum(),
            failed: r.failed.clone(),
        })
    }

    /// Step 5: endorse the record if it is what this member saw and built.
    pub(crate) fn endorse(
        &self,
        node: &Node,
        from: NodeId,
        record: &SeedtreeRecord,
    ) -> Result<PeerMessage, NodeError> {
        let cell = self.run(&record.run, Some(from))?;
        let r = lock(&cell)?;
        let seen: Vec<Hex32> = r
            .commitments
            .as_ref()
            .map(|c| c.iter().map(|h| Hex32(*h)).collect())
            .unwrap_or_default();
        if record.name != r.name
            || record.members != r.members
            || record.threshold != r.threshold
            || record.subtrees != r.layout.subtrees
            || record.height != r.layout.lms.height()
            || record.winternitz != r.layout.ots.w()
            || record.commitments != seen
        {
            return Err(refuse("the record is not the run this member took part in"));
        }
        state::check_record(record, &r.layout).map_err(refuse)?;
        if state::identifier_of(record).ok() != r.id {
            return Err(refuse("the record's identifier is not the one fixed here"));
        }
        let mismatched: Vec<u32> = (0..r.layout.subtrees)
            .filter(|s| r.held.get(s).map(|h| Hex32(*h)) != record.roots.get(*s as usize).copied())
            .collect();
        if !mismatched.is_empty() {
            let culprits: Vec<NodeId> = mismatched
                .iter()
                .filter_map(|s| record.builders.get(*s as usize).copied())
                .collect();
            return Err(NodeError::Misbehaved {
                message: format!(
                    "subtrees {mismatched:?} are not held here with the roots the record states"
                ),
                culprits,
            });
        }
        drop(r);
        lock(&cell)?.endorsed = true;
        let signature = node.keys().sign(&endorse_statement(record));
        Ok(PeerMessage::StEndorsed {
            signature: Hex(signature.to_vec()),
        })
    }

    /// Forget run `run` (committed or abandoned).
    pub(crate) fn forget(&self, run: &Hex32) {
        if let Ok(mut runs) = lock(&self.runs) {
            runs.remove(run);
        }
    }
}

/// Open a deal's shares (sealed under `session`), check each, and store
/// them in rows of `size` (blocking work, off the async threads).
async fn store_deal(
    node: &Node,
    from: NodeId,
    (run, first, size): (Hex32, u32, u32),
    keys: &[u8],
    shares: &Sealed,
    session: Hex32,
) -> Result<(), NodeError> {
    let len = (keys.len() / 32) as u32;
    // Opening, checking and storing 4,096 shares is blocking work.
    let sealed = shares.clone();
    let node2 = node.clone();
    let want = keys.len();
    tokio::task::spawn_blocking(move || -> Result<(), NodeError> {
        let opened = open_secret(node2.keys(), &session, from, node2.id(), &sealed)?;
        if opened.len() != want {
            return Err(NodeError::Misbehaved {
                message: format!(
                    "node {from} dealt {} bytes of shares for {len} leaves",
                    opened.len()
                ),
                culprits: vec![from],
            });
        }
        for share in opened.chunks_exact(32) {
            LeafShare::from_bytes(share).map_err(|_| NodeError::Misbehaved {
                message: format!("node {from} dealt a share that is not a scalar"),
                culprits: vec![from],
            })?;
        }
        let rows = rows::to_write(&node2, &run, first, &opened, size)?;
        let ops: Vec<Op<'_>> = rows
            .iter()
            .map(|(k, v)| Op::Put(Table::LeafShares, k.as_slice(), v.as_slice()))
            .collect();
        node2
            .vault()
            .apply(&ops)
            .map_err(|e| NodeError::Internal(format!("vault: {e}")))
    })
    .await
    .map_err(|e| NodeError::Internal(format!("deal task: {e}")))??;
    Ok(())
}

/// This member's endorsement, for the coordinator.
pub(crate) fn endorsement(node: NodeId, reply: PeerMessage) -> Option<Endorsement> {
    match reply {
        PeerMessage::StEndorsed { signature } => Some(Endorsement { node, signature }),
        _ => None,
    }
}

/// Keep subtree `sub`'s every node (public data; the authentication paths
/// are read from them), bottom level starting at node number `first`, in
/// rows ([`rows::node_row`]).
pub(super) fn store_nodes(
    node: &Node,
    layout: &Layout,
    run: &Hex32,
    sub: &Subtree,
    first: u32,
) -> Result<(), NodeError> {
    let mut rows = Vec::new();
    let mut r = first;
    let mut width = 1u32 << sub.height();
    loop {
        let mut level = Vec::with_capacity(32 * width as usize);
        for i in r..r + width {
            let h = sub
                .node(i)
                .ok_or_else(|| NodeError::Internal(format!("subtree node {i} missing")))?;
            level.extend_from_slice(&h);
        }
        rows.extend(rows::to_write(
            node,
            run,
            r,
            &level,
            rows::node_row(layout, r),
        )?);
        if width == 1 {
            break;
        }
        r /= 2;
        width /= 2;
    }
    for batch in rows.chunks(4096) {
        let ops: Vec<Op<'_>> = batch
            .iter()
            .map(|(k, v)| Op::Put(Table::TreeNodes, k.as_slice(), v.as_slice()))
            .collect();
        node.vault()
            .apply(&ops)
            .map_err(|e| NodeError::Internal(format!("vault: {e}")))?;
    }
    Ok(())
}

/// Build subtree `s`, deal its leaves' shares to every member chunk by
/// chunk, and record its root once every member took every chunk.
async fn build_and_deal(
    node: &Node,
    cell: &Arc<Mutex<Run>>,
    run: Hex32,
    id: &Identifier,
    s: u32,
) -> Result<(), NodeError> {
    let (layout, members, threshold) = {
        let r = lock(cell)?;
        (r.layout, r.members.clone(), r.threshold)
    };
    let id2 = *id;
    let built = tokio::task::spawn_blocking(move || {
        federation::build(&layout, &id2, s, &mut OsPool::new())
    })
    .await
    .map_err(|e| NodeError::Internal(format!("build task: {e}")))?
    .map_err(NodeError::from_core)?;
    let holders: BTreeSet<_> = members.iter().map(|m| pid(*m)).collect();
    let range = layout.leaves_of(s);
    let mut first = range.start;
    for (keys, secrets) in built
        .keys
        .chunks(CHUNK as usize)
        .zip(built.secrets.chunks(CHUNK as usize))
    {
        // Each member's shares of this chunk, in order (blocking work).
        let chunk: Vec<LeafSecret> = secrets.to_vec();
        let (who, holders2) = (members.clone(), holders.clone());
        let per: BTreeMap<NodeId, zeroize::Zeroizing<Vec<u8>>> =
            tokio::task::spawn_blocking(move || -> Result<_, NodeError> {
                let mut per: BTreeMap<NodeId, zeroize::Zeroizing<Vec<u8>>> = who
                    .iter()
                    .map(|m| {
                        (
                            *m,
                            zeroize::Zeroizing::new(Vec::with_capacity(chunk.len() * 32)),
                        )
                    })
                    .collect();
                let mut rng = OsPool::new();
                for secret in &chunk {
                    let shares = secret
                        .share(threshold, &holders2, &mut rng)
                        .map_err(NodeError::from_core)?;
                    for m in &who {
                        let share = shares
                            .get(&pid(*m))
                            .ok_or_else(|| NodeError::Internal("a member got no share".into()))?;
                        if let Some(out) = per.get_mut(m) {
                            out.extend_from_slice(&share.to_bytes());
                        }
                    }
                }
                Ok(per)
            })
            .await
            .map_err(|e| NodeError::Internal(format!("share task: {e}")))??;
        let key_bytes: Vec<u8> = keys.iter().flatten().copied().collect();
        let session = deal_session(&run, s, first);
        let calls = members.iter().map(|m| {
            let bytes = per.get(m).map(|b| b.as_slice()).unwrap_or_default();
            let key_bytes = key_bytes.clone();
            async move {
                let info = node
                    .node_info(*m)
                    .ok_or_else(|| NodeError::Unavailable(format!("no address for node {m}")))?;
                let sealed = seal_secret(&session, node.id(), *m, &info, bytes)?;
                let msg = PeerMessage::StDeal {
                    run,
                    subtree: s,
                    first,
                    keys: Hex(key_bytes),
                    shares: sealed,
                };
                super::send_until_acked(node, *m, &info, &msg, "deal").await
            }
        });
        for (m, r) in members.iter().zip(join_all(calls).await) {
            r.map_err(|e| NodeError::Unavailable(format!("dealing to node {m}: {e}")))?;
        }
        first += keys.len() as u32;
    }
    let root = Subtree::from_leaves(id, layout.lms, range.start, &built.keys)
        .map_err(NodeError::from_core)?
        .root();
    drop(built);
    lock(cell)?.built.insert(s, root);
    Ok(())
}
