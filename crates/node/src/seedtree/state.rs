//! The signing trees' part of the replicated state machine: each tree's
//! record (checked on apply: its identifier from the members' commitments
//! and contributions, its builders, its public key from the subtree roots,
//! every member's endorsement) and how far its leaves are handed out.
//!
//! The log hands leaves out in intervals to signing nodes (`st_reserve`),
//! so consensus stays off each signature. It does not guard a leaf against
//! a second use: the members' own lock records do (`super::member`), so a
//! lying leader or a restored log cannot make a leaf sign twice. (Not
//! covered: a member whose own records are rolled back too, its whole disk
//! restored from a backup, while the leader lies to it as it starts: the
//! floor it then takes is the leader's word. The README's restore section
//! says so.)

use std::collections::BTreeMap;

use keyquorum_core::lms::federation::{builders, identifier, Layout};
use keyquorum_core::lms::hss::HssPublicKey;
use keyquorum_core::lms::ots::LmotsType;
use keyquorum_core::lms::tree::{LmsPublicKey, LmsType, Subtree};
use keyquorum_core::lms::Hash;
use keyquorum_wire::control::CommandResponse;
use keyquorum_wire::seedtree::{
    CreateSeedtreeRequest, SeedtreeInfo, SeedtreeRecord, TreeResharePlan,
};
use keyquorum_wire::{Hex32, NodeId};
use serde::{Deserialize, Serialize};

/// Apply rules from which trees exist (refused before).
pub const ST_RULES: u16 = 7;
/// Apply rules from which a tree's leaf shares move to new holders
/// (`st_reshare`, refused before).
pub const RESHARE_RULES: u16 = 15;
/// Tallest tree a cluster builds (2^20 one-time keys; each member keeps a
/// share of every leaf).
pub const MAX_HEIGHT: u8 = 20;
/// Most subtrees.
pub const MAX_SUBTREES: u32 = 1024;
/// Most trees.
pub const MAX_TREES: usize = 64;
/// Most leaves one reservation hands out.
pub const MAX_RESERVE: u32 = 1024;

/// The replicated part of the signing trees (DESIGN.md §3.5).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeedtreeState {
    /// Trees by name.
    pub trees: BTreeMap<String, TreeEntry>,
}

/// One tree and its usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// What was created.
    pub record: SeedtreeRecord,
    /// The next leaf no node was handed.
    pub next: u64,
    /// Leaves handed to each node.
    pub reserved_by: BTreeMap<NodeId, u64>,
    /// The sharing in force: 0 from key generation, one more per reshare
    /// (`record.members` are its holders).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u32,
    /// The first leaf the sharing in force signs (the holders refuse any
    /// below).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub first: u64,
    /// Where the sharing in force is stored (vault keys' prefix); `None`:
    /// the key generation run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing: Option<Hex32>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

impl TreeEntry {
    /// The vault keys' prefix of the sharing in force.
    pub fn sharing(&self) -> Hex32 {
        self.sharing.unwrap_or(self.record.run)
    }
}

/// Where the sharing a reshare plan makes is stored:
/// `SHA-256("keyquorum-seedtree-sharing-v1" ‖ run ‖ plan id)`.
pub(crate) fn sharing_of(run: &Hex32, plan: &Hex32) -> Hex32 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"keyquorum-seedtree-sharing-v1");
    h.update(run.0);
    h.update(plan.0);
    Hex32(h.finalize().into())
}

/// A reshare plan's id: `SHA-256("keyquorum-seedtree-plan-v1" ‖ plan as
/// JSON)`.
pub(crate) fn plan_id(plan: &TreeResharePlan) -> Hex32 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"keyquorum-seedtree-plan-v1");
    h.update(serde_json::to_vec(plan).unwrap_or_default());
    Hex32(h.finalize().into())
}

/// A tree's shape as asked, checked, with its defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// The layout.
    pub layout: Layout,
    /// Members, sorted.
    pub members: Vec<NodeId>,
    /// Threshold.
    pub threshold: u16,
}

/// Check a create request against the members it names (or `voters`) and
/// the cluster's default threshold for a member count.
pub(crate) fn shape(
    req: &CreateSeedtreeRequest,
    voters: &[NodeId],
    default_threshold: impl Fn(usize) -> u16,
) -> Result<Shape, String> {
    crate::names::check_name(&req.name).map_err(|e| e.to_string())?;
    let lms = LmsType::from_height(req.height)
        .filter(|l| l.height() <= MAX_HEIGHT)
        .ok_or_else(|| format!("height is 5, 10, 15 or 20 (at most {MAX_HEIGHT})"))?;
    let ots = LmotsType::from_w(req.winternitz).ok_or("winternitz is 1, 2, 4 or 8")?;
    let mut members: Vec<NodeId> = req.members.clone().unwrap_or_else(|| voters.to_vec());
    members.sort_unstable();
    members.dedup();
    if members.len() < 2 || members.len() > 64 {
        return Err("a tree has 2 to 64 members".into());
    }
    let threshold = req
        .threshold
        .unwrap_or_else(|| default_threshold(members.len()));
    if threshold < 2 || usize::from(threshold) > members.len() {
        return Err(format!(
            "the threshold is 2 to the member count ({}): one member alone never holds a leaf",
            members.len()
        ));
    }
    let subtrees = req
        .subtrees
        .unwrap_or_else(|| (members.len() as u32).next_power_of_two());
    if !subtrees.is_power_of_two() || subtrees > MAX_SUBTREES || subtrees > lms.leaves() {
        return Err(format!(
            "subtrees is a power of two, at most {MAX_SUBTREES} and at most the leaves"
        ));
    }
    let layout = Layout::new(lms, ots, subtrees).map_err(|e| e.to_string())?;
    Ok(Shape {
        layout,
        members,
        threshold,
    })
}

/// Members as the federation's math numbers them.
pub(crate) fn numbers(members: &[NodeId]) -> Vec<u64> {
    members.iter().map(|m| u64::from(*m)).collect()
}

/// The record's identifier `I` (from its commitments and contributions),
/// its builders and its public key, re-derived: `Ok` only if the record
/// states exactly those.
pub(crate) fn check_record(record: &SeedtreeRecord, layout: &Layout) -> Result<(), String> {
    let n = record.members.len();
    if record.commitments.len() != n || record.contributions.len() != n {
        return Err("one commitment and one contribution per member".into());
    }
    let commitments: BTreeMap<u64, Hash> = record
        .members
        .iter()
        .zip(&record.commitments)
        .map(|(m, c)| (u64::from(*m), c.0))
        .collect();
    let reveals: BTreeMap<u64, [u8; 32]> = record
        .members
        .iter()
        .zip(&record.contributions)
        .map(|(m, c)| (u64::from(*m), c.0))
        .collect();
    let id = identifier(&record.name, &commitments, &reveals).map_err(|e| e.to_string())?;
    let want: Vec<u64> = builders(&record.name, &id, layout, &numbers(&record.members));
    let have: Vec<u64> = record.builders.iter().map(|b| u64::from(*b)).collect();
    if want != have {
        return Err("the builders are not the ones the identifier picks".into());
    }
    if record.roots.len() != layout.subtrees as usize {
        return Err("one root per subtree".into());
    }
    let public = public_key(layout, &id, &record.roots)?;
    if public.to_bytes() != record.public_key.0 {
        return Err("the public key is not the one the subtree roots make".into());
    }
    Ok(())
}

/// The HSS public key (L = 1) of a tree with identifier `id` whose
/// subtrees have `roots`.
pub(crate) fn public_key(
    layout: &Layout,
    id: &[u8; 16],
    roots: &[keyquorum_wire::Hex32],
) -> Result<HssPublicKey, String> {
    let top = Subtree::from_nodes(id, layout.subtrees, roots.iter().map(|r| r.0).collect())
        .map_err(|e| e.to_string())?;
    Ok(HssPublicKey::single(LmsPublicKey {
        lms: layout.lms,
        ots: layout.ots,
        id: *id,
        root: top.root(),
    }))
}

/// The record's layout.
pub(crate) fn layout_of(record: &SeedtreeRecord) -> Result<Layout, String> {
    let lms = LmsType::from_height(record.height).ok_or("bad height")?;
    let ots = LmotsType::from_w(record.winternitz).ok_or("bad winternitz")?;
    Layout::new(lms, ots, record.subtrees).map_err(|e| e.to_string())
}

/// The tree's identifier, from its record's public key.
pub(crate) fn identifier_of(record: &SeedtreeRecord) -> Result<[u8; 16], String> {
    let pk = HssPublicKey::from_bytes(&record.public_key.0).map_err(|e| e.to_string())?;
    Ok(pk.top.id)
}

/// What a client sees of tree `e`.
pub(crate) fn info_of(e: &TreeEntry) -> SeedtreeInfo {
    let capacity = 1u64 << e.record.height;
    SeedtreeInfo {
        name: e.record.name.clone(),
        public_key: e.record.public_key.clone(),
        height: e.record.height,
        winternitz: e.record.winternitz,
        subtrees: e.record.subtrees,
        threshold: e.record.threshold,
        members: e.record.members.clone(),
        lock_quorum: keyquorum_wire::seedtree::lock_quorum(
            e.record.members.len(),
            e.record.threshold,
        ) as u16,
        builders: e.record.builders.clone(),
        capacity,
        reserved: e.next,
        remaining: capacity.saturating_sub(e.next),
        run: e.record.run,
        epoch: e.epoch,
        first: e.first,
    }
}

impl SeedtreeState {
    /// No tree (the snapshot leaves the field out).
    pub fn is_empty(&self) -> bool {
        self.trees.is_empty()
    }

    /// Create tree `record` (its authority checked it).
    pub(crate) fn create(&mut self, record: &SeedtreeRecord) -> CommandResponse {
        if self.trees.contains_key(&record.name) {
            return CommandResponse::rejected(format!("a tree named {} exists", record.name));
        }
        if self.trees.values().any(|e| e.record.run == record.run) {
            return CommandResponse::rejected(format!(
                "run {} made another tree (its shares are stored under it)",
                record.run
            ));
        }
        if self.trees.len() >= MAX_TREES {
            return CommandResponse::rejected(format!(
                "{}: the cluster holds {MAX_TREES} trees",
                crate::msg::quota::QUOTA_EXCEEDED
            ));
        }
        self.trees.insert(
            record.name.clone(),
            TreeEntry {
                record: record.clone(),
                next: 0,
                reserved_by: BTreeMap::new(),
                epoch: 0,
                first: 0,
                sharing: None,
            },
        );
        CommandResponse::Ok
    }

    /// Hand node `node` the next `count` leaves of `tree` (fewer at the
    /// end): answered with the first one.
    pub(crate) fn reserve(&mut self, tree: &str, count: u32, node: NodeId) -> CommandResponse {
        let Some(e) = self.trees.get_mut(tree) else {
            return CommandResponse::rejected(format!("no tree named {tree}"));
        };
        if !e.record.members.contains(&node) {
            return CommandResponse::rejected(format!(
                "node {node} is not a member of tree {tree}: its members sign with it"
            ));
        }
        let capacity = 1u64 << e.record.height;
        // Leaves below the sharing in force are never handed out (only
        // after a reshare, rules 15, is `first` past `next`).
        e.next = e.next.max(e.first);
        if e.next >= capacity {
            return CommandResponse::rejected(format!(
                "{}: tree {tree} has handed out all {capacity} of its one-time keys",
                EXHAUSTED
            ));
        }
        let first = e.next;
        let granted = u64::from(count).min(capacity - first);
        e.next += granted;
        *e.reserved_by.entry(node).or_default() += granted;
        CommandResponse::Appended { index: first }
    }
}

impl SeedtreeState {
    /// Put reshare `plan` in force (its authority checked it): its holders
    /// sign from the later of its cut and the leaves handed out by now.
    pub(crate) fn reshare(&mut self, plan: &TreeResharePlan) -> CommandResponse {
        let Some(e) = self.trees.get_mut(&plan.tree) else {
            return CommandResponse::rejected(format!("no tree named {}", plan.tree));
        };
        if e.record.run != plan.run || e.epoch != plan.epoch {
            return CommandResponse::rejected(format!(
                "tree {} is at sharing {}, not {} (another reshare came first)",
                plan.tree, e.epoch, plan.epoch
            ));
        }
        e.record.members = plan.members.clone();
        e.record.threshold = plan.threshold;
        e.epoch = plan.epoch + 1;
        e.first = e.first.max(e.next).max(u64::from(plan.cut));
        e.sharing = Some(sharing_of(&plan.run, &plan_id(plan)));
        CommandResponse::Ok
    }
}

/// The start of a refusal because a tree is used up.
pub const EXHAUSTED: &str = "exhausted";
