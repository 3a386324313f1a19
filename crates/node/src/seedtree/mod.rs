//! The federated hash-based signing tree on the node (DESIGN.md §3.5; the
//! math is `keyquorum_core::lms`).
//!
//! - **Create** (`POST /v1/seedtrees`, an admin): the entry node
//!   coordinates the members' key generation (`keygen`): commit, reveal,
//!   build in parallel and deal, endorse. It commits the tree with every
//!   member's endorsement ([`SeedtreeCommand::StCreate`]); every replica
//!   re-derives the identifier, the builders and the public key.
//! - **Sign** (`POST /v1/seedtrees/{name}/sign`, a client that may sign
//!   with `lms.NAME`; `sign`): the entry node takes the next leaf of the interval
//!   the log handed it ([`SeedtreeCommand::StReserve`], one log entry per
//!   [`RESERVE`] signatures), gathers a lock quorum's locks on the leaf for
//!   the client's request, then the members' shares sealed to the
//!   client's one-time key (`member`). The client rebuilds the leaf's key,
//!   signs, checks the signature against the public key and erases the key
//!   (`keyquorum_client::seedtree`). A leaf some member locked to another
//!   request is skipped.
//!
//! The trust assumptions, as the README states them: a builder sees its
//! subtree's leaf secrets while it builds (like a dealer); after key
//! generation no node holds a leaf key; the client that asked for a
//! signature holds that one leaf's key, once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use keyquorum_core::httpsig;
use keyquorum_core::lms::federation::{self, commitment};
use keyquorum_wire::control::Endorsement;
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::seedtree::{
    CreateSeedtreeRequest, SeedtreeCommand, SeedtreeInfo, SeedtreeList, SeedtreeProgress,
    SeedtreeRecord,
};
use keyquorum_wire::{Hex, Hex32, NodeId};

use crate::api::auth::{by_request, check_forwarded, forwarded};
use crate::cluster::Node;
use crate::error::NodeError;
use state::{info_of, numbers, shape, ST_RULES};

pub mod api;
pub(crate) mod authority;
pub(crate) mod keygen;
pub(crate) mod member;
mod os_pool;
pub(crate) mod records;
pub(crate) mod redeal;
pub(crate) mod reshare;
pub mod rows;
mod sign;
pub mod state;

/// Leaves a signing node reserves at once.
pub const RESERVE: u32 = 64;
/// How often the coordinator asks the members how the build goes.
const POLL: Duration = Duration::from_millis(100);

/// Signing trees on this node: the members' key generation runs, the
/// signing half of a member, and the leaves this node was handed.
pub struct Seedtrees {
    runs: Arc<keygen::Runs>,
    /// Key generations this node coordinates, by tree: how far they came.
    progress: Arc<std::sync::Mutex<BTreeMap<String, SeedtreeProgress>>>,
    member: member::Member,
    redeals: redeal::Redeals,
    /// Per tree, the leaves this node was handed and has not used: next, end.
    leaves: tokio::sync::Mutex<BTreeMap<String, (u64, u64)>>,
}

impl core::fmt::Debug for Seedtrees {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Seedtrees").finish_non_exhaustive()
    }
}

impl Default for Seedtrees {
    fn default() -> Self {
        Self::new()
    }
}

/// A key generation's entry in [`Seedtrees`]' progress table, removed
/// when the run ends (done or failed).
struct Report {
    table: Arc<std::sync::Mutex<BTreeMap<String, SeedtreeProgress>>>,
    name: String,
}

impl Report {
    fn start(
        table: &Arc<std::sync::Mutex<BTreeMap<String, SeedtreeProgress>>>,
        first: SeedtreeProgress,
    ) -> Result<Self, NodeError> {
        let name = first.name.clone();
        let mut t = table
            .lock()
            .map_err(|_| NodeError::Internal("progress table poisoned".into()))?;
        if t.contains_key(&name) {
            return Err(NodeError::Conflict(format!(
                "a key generation of {name} runs here already"
            )));
        }
        t.insert(name.clone(), first);
        Ok(Self {
            table: table.clone(),
            name,
        })
    }

    fn update(&self, f: impl FnOnce(&mut SeedtreeProgress)) {
        if let Ok(mut t) = self.table.lock() {
            if let Some(p) = t.get_mut(&self.name) {
                f(p);
            }
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.lock() {
            t.remove(&self.name);
        }
    }
}

/// One call to each of `to`, concurrently, each answer with its member.
async fn ask_each(
    node: &Node,
    to: &[NodeId],
    msg: impl Fn(NodeId) -> PeerMessage,
) -> Vec<(NodeId, Result<PeerMessage, NodeError>)> {
    let calls = to.iter().map(|m| {
        let msg = msg(*m);
        async move {
            let info = node
                .node_info(*m)
                .ok_or_else(|| NodeError::Unavailable(format!("no address for node {m}")))?;
            node.call(*m, &info, msg).await
        }
    });
    to.iter().copied().zip(join_all(calls).await).collect()
}

/// Times a busy member is sent one message before the sender gives up.
const SEND_TRIES: u32 = 8;

/// Send `msg` to member `m` until it answers `Ack`: a busy member (every
/// member builds or deals at once) may answer late, so an unanswered call
/// is sent again, with backoff, up to [`SEND_TRIES`] times; the member
/// takes it once. A refusal or any other answer ends it (`what` names the
/// message in errors).
async fn send_until_acked(
    node: &Node,
    m: NodeId,
    info: &keyquorum_wire::control::NodeInfo,
    msg: &PeerMessage,
    what: &str,
) -> Result<(), NodeError> {
    let mut wait = Duration::from_millis(200);
    let mut tries = 0;
    loop {
        tries += 1;
        match node.call_signed(m, info, msg).await {
            Ok((_, PeerMessage::Ack)) => return Ok(()),
            Ok((_, PeerMessage::Error { message, .. })) => {
                return Err(NodeError::Unavailable(format!(
                    "node {m} refused its {what}: {message}"
                )))
            }
            Ok((_, other)) => {
                return Err(NodeError::Internal(format!(
                    "node {m} answered its {what} with {other:?}"
                )))
            }
            Err(NodeError::Unavailable(e) | NodeError::TimedOut(e)) if tries < SEND_TRIES => {
                tracing::debug!(node = %m, error = %e, "{what} not taken; again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Every answer, or the first failure naming its member.
fn all_ok(
    answers: Vec<(NodeId, Result<PeerMessage, NodeError>)>,
    step: &str,
) -> Result<Vec<(NodeId, PeerMessage)>, NodeError> {
    answers
        .into_iter()
        .map(|(m, r)| match r {
            Ok(PeerMessage::Error { message, .. }) => Err(NodeError::Unavailable(format!(
                "node {m} refused to {step}: {message}"
            ))),
            Ok(reply) => Ok((m, reply)),
            Err(NodeError::Misbehaved { message, culprits }) => {
                Err(NodeError::Misbehaved { message, culprits })
            }
            Err(e) => Err(NodeError::Unavailable(format!(
                "node {m} did not {step}: {e}"
            ))),
        })
        .collect()
}

impl Seedtrees {
    /// No trees yet.
    pub fn new() -> Self {
        Self {
            progress: Arc::default(),
            runs: Arc::new(keygen::Runs::default()),
            member: member::Member::default(),
            redeals: redeal::Redeals::default(),
            leaves: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// This member's start: once it caught up with the log, it knows which
    /// leaves were handed out before it started (a task the node runs).
    pub async fn settle(self: Arc<Self>, node: Node) {
        self.member.settle(&node).await;
        // Shares of sharings a reshare replaced while this node was down.
        self.redeals.sweep_now(&node).await;
    }

    /// Tree `name`'s public description.
    pub fn info(node: &Node, name: &str) -> Result<SeedtreeInfo, NodeError> {
        node.registry(|r| r.seedtree.trees.get(name).map(info_of))
            .ok_or_else(|| NodeError::NotFound(format!("no tree named {name}")))
    }

    /// Every tree.
    pub fn list(node: &Node) -> SeedtreeList {
        node.registry(|r| SeedtreeList {
            trees: r.seedtree.trees.values().map(info_of).collect(),
        })
    }

    /// How far the key generation of `name` this node coordinates has
    /// come; a finished tree's is `done`.
    pub fn progress(&self, node: &Node, name: &str) -> Result<SeedtreeProgress, NodeError> {
        if let Some(p) = self
            .progress
            .lock()
            .map_err(|_| NodeError::Internal("progress table poisoned".into()))?
            .get(name)
        {
            return Ok(p.clone());
        }
        let info = Self::info(node, name).map_err(|_| {
            NodeError::NotFound(format!(
                "no tree named {name}, and no key generation of it coordinated by this node"
            ))
        })?;
        let per_member = info
            .capacity
            .div_ceil(u64::from(keygen::CHUNK))
            .max(u64::from(info.subtrees));
        Ok(SeedtreeProgress {
            name: info.name,
            phase: "done".into(),
            subtrees: info.subtrees,
            roots: info.subtrees,
            chunks: per_member * info.members.len() as u64,
            chunks_total: per_member * info.members.len() as u64,
        })
    }

    /// Create tree `req.name` (the caller is an admin named `client`).
    pub async fn create(
        &self,
        node: &Node,
        req: CreateSeedtreeRequest,
        client: &str,
        request: &httpsig::Request,
    ) -> Result<SeedtreeInfo, NodeError> {
        node.require_rules(ST_RULES, "signing trees")?;
        let shape = node
            .registry(|r| {
                let voters = r.candidates();
                shape(&req, &voters, |n| r.default_threshold(n))
            })
            .map_err(NodeError::BadRequest)?;
        if node.registry(|r| r.seedtree.trees.contains_key(&req.name)) {
            return Err(NodeError::Conflict(format!(
                "a tree named {} exists",
                req.name
            )));
        }
        if let Some(m) = shape.members.iter().find(|m| node.node_info(**m).is_none()) {
            return Err(NodeError::BadRequest(format!("node {m} is not a member")));
        }
        let fwd = forwarded(request);
        let run = keygen::run_of(&check_forwarded(node, &fwd)?, &fwd);
        let members = shape.members.clone();
        let name = req.name.clone();
        let per_member = u64::from(shape.layout.subtrees)
            * u64::from(shape.layout.per_subtree().div_ceil(keygen::CHUNK));
        let report = Report::start(
            &self.progress,
            SeedtreeProgress {
                name: name.clone(),
                phase: "identifier".into(),
                subtrees: shape.layout.subtrees,
                roots: 0,
                chunks: 0,
                chunks_total: per_member * members.len() as u64,
            },
        )?;
        // 1. Commitments.
        let committed = all_ok(
            ask_each(node, &members, |_| PeerMessage::StCommit {
                tree: name.clone(),
                run,
                members: members.clone(),
                threshold: shape.threshold,
                subtrees: shape.layout.subtrees,
                request: fwd.clone(),
            })
            .await,
            "commit",
        )?;
        let commitments: Vec<Hex32> = committed
            .into_iter()
            .map(|(m, r)| match r {
                PeerMessage::StCommitted { commitment } => Ok(commitment),
                other => Err(NodeError::Internal(format!(
                    "node {m} answered a commit with {other:?}"
                ))),
            })
            .collect::<Result<_, _>>()?;
        // 2. Reveals, each checked against its commitment.
        let revealed = all_ok(
            ask_each(node, &members, |_| PeerMessage::StReveal {
                run,
                commitments: commitments.clone(),
            })
            .await,
            "reveal",
        )?;
        let mut contributions = Vec::with_capacity(members.len());
        let mut liars = Vec::new();
        for ((m, r), c) in revealed.into_iter().zip(&commitments) {
            match r {
                PeerMessage::StRevealed { contribution }
                    if commitment(&name, u64::from(m), &contribution.0) == c.0 =>
                {
                    contributions.push(contribution);
                }
                _ => liars.push(m),
            }
        }
        if !liars.is_empty() {
            node.audit_failure(
                "peer",
                "seedtree.blame",
                Some(&name),
                &format!("nodes {liars:?} revealed what they did not commit to"),
            );
            return Err(NodeError::Misbehaved {
                message: format!("nodes {liars:?} revealed what they did not commit to"),
                culprits: liars,
            });
        }
        // 3. Build and deal, in parallel on every builder.
        all_ok(
            ask_each(node, &members, |_| PeerMessage::StBuild {
                run,
                contributions: contributions.clone(),
            })
            .await,
            "build",
        )?;
        let commit_map: BTreeMap<u64, [u8; 32]> = members
            .iter()
            .zip(&commitments)
            .map(|(m, c)| (u64::from(*m), c.0))
            .collect();
        let reveal_map: BTreeMap<u64, [u8; 32]> = members
            .iter()
            .zip(&contributions)
            .map(|(m, c)| (u64::from(*m), c.0))
            .collect();
        let id = federation::identifier(&name, &commit_map, &reveal_map)
            .map_err(|e| NodeError::Internal(e.to_string()))?;
        let builders: Vec<NodeId> =
            federation::builders(&name, &id, &shape.layout, &numbers(&members))
                .into_iter()
                .filter_map(|b| NodeId::new(u16::try_from(b).unwrap_or(0)))
                .collect();
        report.update(|p| p.phase = "building".into());
        let roots = self
            .await_builds(node, &members, &builders, run, &shape.layout, &report)
            .await?;
        report.update(|p| p.phase = "endorsing".into());
        let public = state::public_key(&shape.layout, &id, &roots).map_err(NodeError::Internal)?;
        let record = SeedtreeRecord {
            name: name.clone(),
            run,
            height: req.height,
            winternitz: req.winternitz,
            subtrees: shape.layout.subtrees,
            threshold: shape.threshold,
            members: members.clone(),
            commitments,
            contributions,
            builders,
            roots,
            public_key: Hex(public.to_bytes()),
            created_by: client.to_string(),
        };
        // 4. Every member endorses what it holds.
        let endorsed = all_ok(
            ask_each(node, &members, |_| PeerMessage::StEndorse {
                record: Box::new(record.clone()),
            })
            .await,
            "endorse",
        )?;
        let endorsements: Vec<Endorsement> = endorsed
            .into_iter()
            .filter_map(|(m, r)| keygen::endorsement(m, r))
            .collect();
        node.commit(by_request(
            request,
            SeedtreeCommand::StCreate {
                record: Box::new(record),
                endorsements,
            },
        ))
        .await?;
        self.runs.forget(&run);
        Self::info(node, &name)
    }

    /// Wait until every builder built and dealt its subtrees and every
    /// member holds all of them; the roots, by subtree.
    async fn await_builds(
        &self,
        node: &Node,
        members: &[NodeId],
        builders: &[NodeId],
        run: Hex32,
        layout: &federation::Layout,
        report: &Report,
    ) -> Result<Vec<Hex32>, NodeError> {
        // A generous deadline: a key generation hash takes about 40 ns on
        // one core; allow 1 µs each (25× over), spread over the builders.
        let hashes = layout.ots.keygen_hashes() * u64::from(layout.lms.leaves());
        let per_builder = hashes / members.len().max(1) as u64;
        let deadline = Instant::now() + Duration::from_secs(60 + per_builder / 1_000_000);
        loop {
            // A member busy building may answer late: not fatal, asked
            // again (a member that failed says so).
            let answers: Vec<(NodeId, PeerMessage)> =
                ask_each(node, members, |_| PeerMessage::StProgress { run })
                    .await
                    .into_iter()
                    .filter_map(|(m, r)| match r {
                        Ok(reply) => Some((m, reply)),
                        Err(e) => {
                            tracing::debug!(node = %m, error = %e, "no progress report yet");
                            None
                        }
                    })
                    .collect();
            let mut held_everywhere = answers.len() == members.len();
            let mut roots: BTreeMap<u32, Hex32> = BTreeMap::new();
            let mut chunks_stored = 0u64;
            for (m, a) in answers {
                match a {
                    PeerMessage::StProgressed {
                        built,
                        held,
                        chunks,
                        failed,
                    } => {
                        chunks_stored += u64::from(chunks);
                        if let Some(why) = failed {
                            return Err(NodeError::Unavailable(format!(
                                "node {m} could not build: {why}"
                            )));
                        }
                        // A root counts from its subtree's builder only.
                        roots.extend(
                            built
                                .into_iter()
                                .filter(|(s, _)| builders.get(*s as usize) == Some(&m)),
                        );
                        held_everywhere &= held == layout.subtrees;
                    }
                    other => {
                        return Err(NodeError::Internal(format!(
                            "node {m} answered a progress request with {other:?}"
                        )))
                    }
                }
            }
            report.update(|p| {
                p.roots = roots.len() as u32;
                // Never backwards (a member that did not answer this time).
                p.chunks = p.chunks.max(chunks_stored);
            });
            if held_everywhere && roots.len() == layout.subtrees as usize {
                return Ok(roots.into_values().collect());
            }
            if Instant::now() > deadline {
                return Err(NodeError::TimedOut(format!(
                    "the subtrees were not built in time ({} of {} roots)",
                    roots.len(),
                    layout.subtrees
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A tree message from `from`.
    pub(crate) async fn handle(
        &self,
        node: &Node,
        from: NodeId,
        msg: PeerMessage,
    ) -> Result<PeerMessage, NodeError> {
        match msg {
            PeerMessage::StCommit {
                tree,
                run,
                members,
                threshold,
                subtrees,
                request,
            } => {
                self.runs
                    .commit(
                        node, from, &tree, run, &members, threshold, subtrees, &request,
                    )
                    .await
            }
            PeerMessage::StReveal { run, commitments } => {
                self.runs.reveal(node, from, &run, &commitments)
            }
            PeerMessage::StBuild { run, contributions } => {
                self.runs.build(node, from, run, &contributions)
            }
            PeerMessage::StDeal {
                run,
                subtree,
                first,
                keys,
                shares,
            } => {
                self.runs
                    .deal(node, from, run, subtree, first, &keys.0, &shares)
                    .await
            }
            PeerMessage::StProgress { run } => self.runs.progress(node, from, &run),
            PeerMessage::StEndorse { record } => self.runs.endorse(node, from, &record),
            PeerMessage::StLock {
                tree,
                leaf,
                request,
            } => self.member.lock(node, from, &tree, leaf, &request).await,
            PeerMessage::StRelease {
                tree,
                leaf,
                request,
                locks,
            } => {
                self.member
                    .release(node, from, &tree, leaf, &request, &locks)
                    .await
            }
            PeerMessage::StRedealOpen { plan, request } => {
                self.redeals.open(node, from, &plan, &request).await
            }
            PeerMessage::StRedeal { plan, first } => {
                self.redeals.deal(node, from, plan, first).await
            }
            PeerMessage::StRedealPart {
                plan,
                first,
                shares,
                nodes,
            } => {
                self.redeals
                    .part(node, from, plan, first, &shares, &nodes.0)
                    .await
            }
            PeerMessage::StRedealEndorse { plan } => self.redeals.endorse(node, from, plan),
            PeerMessage::StRedealDone { tree, epoch } => {
                self.redeals.done(node, &tree, epoch).await
            }
            _ => Err(NodeError::BadRequest("not a signing tree message".into())),
        }
    }
}
