//! The audit log: a hash chain and a Merkle tree over it (RFC 9162 §2.1),
//! kept as side records beside the replicated state ([`log`]), signed
//! heads, the writer that batches events into it, verification, inclusion
//! proofs, and the keeper that fetches from other members the entries a
//! snapshot install left out ([`keeper`]).
//!
//! The leader signs the head periodically ([`ClusterCommand::SignHead`]):
//! the last entry's number and chain hash and the tree's root.
//! [`Node::verify_audit`] recomputes every link and subtree and checks every
//! signed head against the signer's identity key, so altering, dropping or
//! reordering any stored entry is detected; [`Node::audit_proof`] proves
//! one entry against a signed head to anyone who knows the signer's key.
//!
//! **Audit before release**: [`Node::audit_event_committed`] lets a caller
//! hold a result back until its entry is committed.

use std::time::Duration;

use keyquorum_core::merkle::{self, Frontier};
use keyquorum_wire::control::{
    AuditEntry, AuditEvent, AuditProof, ClusterCommand, CommandResponse, HeadProof, SignedHead,
};
use keyquorum_wire::{Hex, Hex32, NodeId};
use tokio::sync::{mpsc, oneshot};

use super::Node;
use crate::error::NodeError;

pub mod keeper;
pub mod log;

pub use log::{audit_hash, head_signing_bytes, AuditLog};
use log::{SPACE_ENTRY, SPACE_HEAD, SPACE_TREE};

/// What the verification found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditFault {
    /// An entry's sequence number is not its position.
    #[error("entry at position {0} has sequence number {1}")]
    Sequence(u64, u64),
    /// An entry does not link to its predecessor's hash.
    #[error("entry {0} does not link to entry {prev}", prev = .0.wrapping_sub(1))]
    Link(u64),
    /// An entry's stored hash does not match its content.
    #[error("entry {0} was altered (hash mismatch)")]
    Hash(u64),
    /// A stored subtree of the Merkle tree does not match the entries.
    #[error("the stored subtree (level {0}, index {1}) does not match the entries")]
    Tree(u8, u64),
    /// An entry the log has is not stored on this node (yet: the keeper
    /// fetches what a snapshot install left out).
    #[error("entry {0} is not held on this node")]
    Absent(u64),
    /// The entries do not end where the replicated state says the log ends.
    #[error("the stored entries do not end at the log's head")]
    Head,
    /// A signed head does not match the log or its signature is invalid.
    #[error("signed head at {0} does not verify")]
    Signature(u64),
    /// A signed head's signer was not a member when the log had that many
    /// entries.
    #[error("node {1} signed the head at entry {0} but was not a member then")]
    Signer(u64, NodeId),
    /// A signed head covers an entry this log does not have.
    #[error("node {1} signed a head at entry {0}, which this log does not have")]
    Missing(u64, NodeId),
    /// A majority of the voters signed heads this log does not have
    /// (another hash or root at that entry, or past its end): this
    /// replica's stored log is wrong. (Named: the first of them.)
    #[error(
        "node {1} and a majority of the voters signed heads (node {1}'s at entry {0}) that \
         this log does not have: this replica's log is wrong"
    )]
    Conflict(u64, NodeId),
}

/// Checks entries in order: each one's number, its link to the one before
/// and its hash; grows the Merkle tree over them.
#[derive(Debug, Clone, Default)]
pub struct ChainCheck {
    prev: Hex32,
    frontier: Frontier,
}

impl ChainCheck {
    /// Start after the entries whose tree has frontier `frontier` and whose
    /// last hash is `prev`.
    pub fn resume(prev: Hex32, frontier: Frontier) -> Self {
        Self { prev, frontier }
    }

    /// Entries checked (the next one's number).
    pub fn next(&self) -> u64 {
        self.frontier.size()
    }

    /// The last entry's hash.
    pub fn prev(&self) -> Hex32 {
        self.prev
    }

    /// The tree over the entries checked.
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Check the next entry; answers the subtrees it completes.
    pub fn entry(&mut self, e: &AuditEntry) -> Result<Vec<(u8, u64, merkle::Hash)>, AuditFault> {
        let i = self.next();
        if e.seq != i {
            return Err(AuditFault::Sequence(i, e.seq));
        }
        if e.prev != self.prev {
            return Err(AuditFault::Link(i));
        }
        if audit_hash(e.seq, &e.prev, &e.event) != e.hash {
            return Err(AuditFault::Hash(i));
        }
        self.prev = e.hash;
        Ok(self.frontier.push(merkle::leaf_hash(&e.hash.0)))
    }
}

/// What [`Node::verify_audit`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Entries checked.
    pub entries: u64,
    /// Signed heads checked.
    pub heads: u64,
    /// The last entry a signed head covers.
    pub signed_through: Option<u64>,
    /// Members whose latest head conflicts with this log (each with that
    /// head's entry), fewer than a majority of the voters: they are named,
    /// this replica's log stands.
    pub disputed_by: Vec<(NodeId, u64)>,
}

/// Entries read at once from the side table.
const PAGE: usize = 1000;

/// How many of the newest signed heads a proof looks through.
const PROOF_HEADS: u64 = 256;

fn stored(e: impl std::fmt::Display) -> NodeError {
    NodeError::Internal(format!("audit records: {e}"))
}

impl Node {
    /// Entries `from` on (at most `limit`) as this node holds them, in
    /// order: up to the first it lacks.
    pub fn audit_entries(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, NodeError> {
        let rows = self
            .0
            .side
            .range(SPACE_ENTRY, from, limit)
            .map_err(stored)?;
        let mut out: Vec<AuditEntry> = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            if k != from.saturating_add(out.len() as u64) {
                break;
            }
            out.push(serde_json::from_slice(&v).map_err(stored)?);
        }
        Ok(out)
    }

    /// Signed heads `from` on (in the order they were applied), at most
    /// `limit`.
    pub fn audit_heads(&self, from: u64, limit: usize) -> Result<Vec<SignedHead>, NodeError> {
        self.0
            .side
            .range(SPACE_HEAD, from, limit)
            .map_err(stored)?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(stored))
            .collect()
    }

    /// A stored complete subtree of the audit tree.
    fn audit_subtree(&self, level: u8, index: u64) -> Option<merkle::Hash> {
        let v = self
            .0
            .side
            .get(SPACE_TREE + u32::from(level), index)
            .ok()??;
        v.try_into().ok()
    }

    /// The signer's identity key of a head at entry `seq`: a member when
    /// the log had `seq + 1` entries (from the membership record's history
    /// once it is in force, a founding voter before; a cluster made before
    /// the record: its members now).
    fn head_signer(&self, signer: NodeId, seq: u64) -> Option<Hex32> {
        self.registry(|r| r.head_signer(signer, seq)).or_else(|| {
            let recorded = self.registry(|r| r.roster.since().is_some());
            (!recorded)
                .then(|| self.node_info(signer).map(|i| i.identity))
                .flatten()
        })
    }

    /// Check one signed head against this node's stored log.
    fn check_head(&self, h: &SignedHead) -> Result<(), AuditFault> {
        let Some(entry) = self.audit_entries(h.seq, 1).ok().and_then(|mut e| e.pop()) else {
            return Err(AuditFault::Missing(h.seq, h.signer));
        };
        let Some(key) = self.head_signer(h.signer, h.seq) else {
            return Err(AuditFault::Signer(h.seq, h.signer));
        };
        let root_ok = match &h.root {
            Some(root) => {
                merkle::root_at(h.seq.saturating_add(1), &|l, i| self.audit_subtree(l, i))
                    .is_ok_and(|r| r == root.0)
            }
            None => true,
        };
        let bytes = head_signing_bytes(h.seq, &h.hash, h.root.as_ref());
        if entry.hash != h.hash
            || !root_ok
            || !crate::identity::verify(&key, &bytes, &h.signature.0)
        {
            return Err(AuditFault::Signature(h.seq));
        }
        Ok(())
    }

    /// Verify the whole audit log as this node stores it: every entry's
    /// number, link and hash; every stored subtree of the tree; that the
    /// entries end at the head the replicated state holds; and every signed
    /// head (its signer a member then, its hash and root this log's, its
    /// signature). Blocking work: call it from a blocking thread.
    pub fn verify_audit(&self) -> Result<Result<Verified, AuditFault>, NodeError> {
        // The head and the records as of one point: the store writes a
        // batch's records just after it applies them.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let (len, last, root) = loop {
            let (len, written, last, root) = self.registry(|r| {
                let a = &r.audit;
                (a.len(), a.written_len(), a.last_hash(), a.root())
            });
            if written == len || std::time::Instant::now() >= deadline {
                break (len, last, root);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut check = ChainCheck::default();
        while check.next() < len {
            let page = self.audit_entries(check.next(), PAGE)?;
            if page.is_empty() {
                return Ok(Err(AuditFault::Absent(check.next())));
            }
            let before = check.next();
            for e in page.iter().take_while(|e| e.seq < len) {
                let done = match check.entry(e) {
                    Ok(d) => d,
                    Err(f) => return Ok(Err(f)),
                };
                for (level, index, hash) in done {
                    if self.audit_subtree(level, index) != Some(hash) {
                        return Ok(Err(AuditFault::Tree(level, index)));
                    }
                }
            }
            // A stored entry whose number is not its key.
            if check.next() == before {
                let seq = page.first().map(|e| e.seq).unwrap_or_default();
                return Ok(Err(AuditFault::Sequence(before, seq)));
            }
        }
        if check.prev() != last || Hex32(check.frontier().root()) != root {
            return Ok(Err(AuditFault::Head));
        }
        // Voters whose latest head conflicts with this log: a majority of
        // them means this replica's log is the odd one out; fewer are named
        // (one member signing false heads cannot fail everyone's check).
        let (disputed_by, voters) = self.registry(|r| {
            let d: Vec<(NodeId, u64)> = r
                .audit
                .conflicts()
                .iter()
                .filter(|(s, _)| r.voters.contains(s))
                .map(|(s, h)| (*s, h.seq))
                .collect();
            (d, r.voters.len())
        });
        if disputed_by.len() * 2 > voters {
            if let Some((signer, seq)) = disputed_by.first() {
                return Ok(Err(AuditFault::Conflict(*seq, *signer)));
            }
        }
        let (mut heads, mut signed_through) = (0u64, None);
        loop {
            let page = self.audit_heads(heads, PAGE)?;
            if page.is_empty() {
                break;
            }
            for h in &page {
                if let Err(f) = self.check_head(h) {
                    return Ok(Err(f));
                }
                signed_through = signed_through.max(Some(h.seq));
            }
            heads += page.len() as u64;
        }
        Ok(Ok(Verified {
            entries: len,
            heads,
            signed_through,
            disputed_by,
        }))
    }

    /// Entry `seq` with its inclusion proofs against the newest signed
    /// head of each signer that covers it (every member signs heads about
    /// a second after the log moves) and matches this node's tree.
    pub fn audit_proof(&self, seq: u64) -> Result<AuditProof, NodeError> {
        let (len, heads) = self.registry(|r| (r.audit.written_len(), r.audit.head_count()));
        if seq >= len {
            return Err(NodeError::NotFound(format!(
                "the audit log has {len} entries; there is no entry {seq}"
            )));
        }
        let entry = self.audit_entries(seq, 1)?.pop().ok_or_else(|| {
            NodeError::Unavailable(format!("entry {seq} is not held on this node yet"))
        })?;
        let get = |l, i| self.audit_subtree(l, i);
        // Each signer's newest head (it covers the most), read where it is
        // stored; then the newest heads (those applied before rules 5).
        let newest: Vec<u64> =
            self.registry(|r| r.audit.signers().values().map(|s| s.index).collect());
        let mut candidates = Vec::new();
        for index in newest {
            candidates.extend(self.audit_heads(index, 1)?);
        }
        candidates.sort_by_key(|h| h.seq);
        let recent = self.audit_heads(heads.saturating_sub(PROOF_HEADS), PROOF_HEADS as usize)?;
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for head in recent.into_iter().chain(candidates).rev() {
            let Some(root) = head.root else { continue };
            if head.seq < seq || head.seq >= len || seen.contains(&head.signer) {
                continue;
            }
            let size = head.seq.saturating_add(1);
            // A head that does not match this tree is left out (from rules
            // 5 none is applied; before, a member could state one).
            if merkle::root_at(size, &get).ok() != Some(root.0) {
                continue;
            }
            let Ok(path) = merkle::inclusion_path(seq, size, &get) else {
                continue;
            };
            let Some(signer_identity) = self.head_signer(head.signer, head.seq) else {
                continue;
            };
            seen.insert(head.signer);
            out.push(HeadProof {
                head,
                path: path.into_iter().map(Hex32).collect(),
                signer_identity,
            });
        }
        if out.is_empty() {
            // Not a fault of the node: the members sign about a second
            // after the log moves.
            return Err(NodeError::Conflict(format!(
                "entry {seq} is not yet under a signed head; try again in a second"
            )));
        }
        Ok(AuditProof { entry, heads: out })
    }
}

impl Node {
    /// Record an event in the audit log (asynchronously, batched). Only a
    /// full queue loses it: counted (`keyquorum_audit_dropped_total`) and
    /// logged. Requests are not admitted that close to full
    /// (`Node::audit_has_room`), so this is the node's own work while the
    /// log cannot commit.
    pub fn audit_event(&self, actor: &str, action: &str, target: Option<&str>, outcome: &str) {
        if !self.queue_audit(None, actor, action, target, outcome, None) {
            self.0
                .metrics
                .audit_dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(
                actor,
                action,
                target,
                outcome,
                "the audit queue is full (the log cannot commit): event lost"
            );
        }
    }

    /// A place in the audit queue for one request's outcome, taken when
    /// the request is admitted: None (refuse it) unless more than the
    /// reserve is free ([`Self::audit_has_room`]). Its outcome then always
    /// finds room ([`Self::audit_outcome`]), however many requests are in
    /// flight.
    pub(crate) fn audit_permit(&self) -> Option<AuditPermit> {
        if !self.audit_has_room() {
            return None;
        }
        self.0
            .audit_tx
            .clone()
            .try_reserve_owned()
            .ok()
            .map(AuditPermit)
    }

    /// Record an admitted request's outcome in the place `permit` holds;
    /// with `committed`, the returned receiver fires once it is committed
    /// (and applied here: `audit_writer`).
    pub(crate) fn audit_outcome(
        &self,
        permit: AuditPermit,
        actor: &str,
        action: &str,
        target: Option<&str>,
        outcome: &str,
        committed: bool,
    ) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = match committed {
            true => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        self.queue_audit(Some(permit), actor, action, target, outcome, tx);
        rx
    }

    /// Whether a request may be admitted: more than an eighth of the audit
    /// queue (`NodeConfig::audit_queue`) is free, the room kept for the
    /// node's own events (a DKG's outcome, a membership step) and the
    /// outcomes of requests already admitted. Past that the log is not keeping up (no quorum, a
    /// flood) and a request it could not record is refused before it runs
    /// (Vault's rule: what cannot be audited is not done).
    pub(crate) fn audit_has_room(&self) -> bool {
        self.0.audit_tx.capacity() > self.0.audit_tx.max_capacity() / 8
    }

    /// Events waiting for the audit writer.
    pub fn audit_queued(&self) -> usize {
        let tx = &self.0.audit_tx;
        tx.max_capacity().saturating_sub(tx.capacity())
    }

    /// A refused request: audited if the caller authenticated (`who`: the
    /// key its limit is kept under, and the actor the audit entry names),
    /// at most a burst at once per caller; counted, and sampled into this
    /// node's own log, if not (`super::refusals`).
    pub(crate) fn refusal(
        &self,
        who: Option<(&str, &str)>,
        action: &str,
        target: Option<&str>,
        outcome: &str,
    ) {
        use std::sync::atomic::Ordering;
        match who {
            Some((key, actor)) if self.audit_has_room() && self.0.refusals.audit(key) => {
                self.audit_event(actor, action, target, outcome);
            }
            Some((_, actor)) => {
                self.0
                    .metrics
                    .refusals_unaudited
                    .fetch_add(1, Ordering::Relaxed);
                if self.0.refusals.sample() {
                    tracing::info!(
                        actor,
                        action,
                        target,
                        outcome,
                        "refusal past the caller's audited burst: counted, not audited"
                    );
                }
            }
            None => {
                self.0
                    .metrics
                    .refused_unauthenticated
                    .fetch_add(1, Ordering::Relaxed);
                if self.0.refusals.sample() {
                    tracing::info!(
                        action,
                        target,
                        outcome,
                        "refused an unauthenticated request"
                    );
                }
            }
        }
    }

    /// Like [`Self::audit_event`], and the returned receiver fires once the
    /// batch holding the event is committed in the Raft log. Used to hold a
    /// signature or an export back until its audit entry is durable.
    pub fn audit_event_committed(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        outcome: &str,
    ) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let _ = self.queue_audit(None, actor, action, target, outcome, Some(tx));
        rx
    }

    fn queue_audit(
        &self,
        permit: Option<AuditPermit>,
        actor: &str,
        action: &str,
        target: Option<&str>,
        outcome: &str,
        done: Option<oneshot::Sender<()>>,
    ) -> bool {
        let event = AuditEvent {
            time_ms: self.now_ms(),
            node: self.0.id,
            actor: cut(actor),
            action: cut(action),
            target: target.map(cut),
            outcome: cut(outcome),
        };
        match permit {
            Some(AuditPermit(p)) => {
                p.send((event, done));
                true
            }
            // A full queue drops `done` with the event: its waiter sees
            // the event was never recorded.
            None => self.0.audit_tx.try_send((event, done)).is_ok(),
        }
    }
}

/// `field`, cut to [`log::MAX_FIELD`] bytes (at a character boundary, with
/// a mark that it was cut).
fn cut(field: &str) -> String {
    if field.len() <= log::MAX_FIELD {
        return field.to_string();
    }
    let mut end = log::MAX_FIELD - 3;
    while !field.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &field[..end])
}

/// What the audit queue carries: an event, and who waits for its commit.
pub(crate) type Queued = (AuditEvent, Option<oneshot::Sender<()>>);

/// A place reserved in the audit queue ([`Node::audit_permit`]); dropped
/// unused, it frees the place.
#[derive(Debug)]
pub(crate) struct AuditPermit(mpsc::OwnedPermit<Queued>);

/// Whether this replica's audit log holds `events`, appended at or after
/// entry `from` (waiting briefly for it to apply them: a follower learns of
/// a commit about one replication round after the leader).
async fn holds(node: &Node, from: u64, events: &[AuditEvent]) -> bool {
    if events.is_empty() {
        return true;
    }
    let found = || {
        let node = node.clone();
        let events = events.to_vec();
        tokio::task::spawn_blocking(move || held_from(&node, from, &events))
    };
    let deadline = tokio::time::Instant::now() + HOLD_WAIT;
    loop {
        if found().await.unwrap_or(false) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the entries from `from` on hold `events`, whole and in order
/// (one `Audit` command appends its events together; another copy of its
/// first event elsewhere is not taken for it). Reads page by page, each
/// page overlapping the last by the batch's length.
fn held_from(node: &Node, from: u64, events: &[AuditEvent]) -> bool {
    let upto = node.registry(|r| r.audit.written_len());
    let mut at = from;
    let overlap = events.len().saturating_sub(1) as u64;
    while at < upto {
        let Ok(page) = node.audit_entries(at, PAGE + events.len()) else {
            return false;
        };
        if page.len() < events.len() {
            return false;
        }
        if page
            .windows(events.len())
            .any(|w| w.iter().zip(events).all(|(e, ev)| e.event == *ev))
        {
            return true;
        }
        at = at.saturating_add((page.len() as u64).saturating_sub(overlap).max(1));
    }
    false
}

/// How long [`holds`] waits for this replica to apply an audit batch.
const HOLD_WAIT: Duration = Duration::from_secs(5);

/// How long a node stays silent before it states a [`ClusterCommand::Tick`]:
/// the members' statements are what moves the log clock.
const TICK_EVERY: Duration = Duration::from_secs(5);

/// Batches audit events into `Audit` commands; as leader, signs the head
/// whenever it has moved, at most once a second (so every entry is covered
/// by a signed head about a second after it is appended); states a tick
/// when this node has said nothing for [`TICK_EVERY`].
pub(crate) async fn audit_writer(
    node: Node,
    mut rx: mpsc::Receiver<(AuditEvent, Option<oneshot::Sender<()>>)>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut signed: Option<u64> = None;
    // The head being stated (a follower forwards it to the leader, which
    // can take a while): on its own task, so audit events never wait for
    // it; one at a time.
    let mut signing: Option<(u64, tokio::task::JoinHandle<bool>)> = None;
    let mut last_said: Option<std::time::Instant> = None;
    // The init secret is deleted once the cluster is initialised (checked
    // on the idle path until it is).
    let mut secret_gone = false;
    // This process's boot is stated in the log at start (and again each
    // second until it is applied here): signing waits for it.
    let mut boot_tried: Option<std::time::Instant> = None;
    loop {
        if boot_tried.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            && !node.boot_confirmed()
        {
            boot_tried = Some(std::time::Instant::now());
            let node = node.clone();
            tokio::spawn(async move {
                let boot = ClusterCommand::Boot {
                    boot: node.boot(),
                    rules: Some(keyquorum_wire::control::APPLY_RULES),
                    measurement: Some(node.measurement()),
                };
                if let Err(e) = node.propose(node.statement(boot)).await {
                    tracing::debug!(error = %e, "boot statement not committed yet");
                }
            });
        }
        let first = tokio::select! {
            e = rx.recv() => match e {
                Some(e) => Some(e),
                None => return,
            },
            _ = tick.tick() => None,
        };
        if let Some(first) = first {
            let mut batch = vec![first];
            while batch.len() < log::MAX_EVENTS {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            let (events, waiters): (Vec<AuditEvent>, Vec<_>) = batch.into_iter().unzip();
            let mut delay = Duration::from_millis(50);
            // One statement for every try: a try that timed out may still
            // commit, and then the next is refused as its replay instead
            // of appending the events twice. Signed again only once it is
            // too old to be taken (no commit for the whole window).
            let audit = || {
                node.statement(ClusterCommand::Audit {
                    events: events.clone(),
                })
            };
            let mut statement = audit();
            // The events land after the entries this replica has now.
            let from = node.registry(|r| r.audit.len());
            loop {
                match node.propose(statement.clone()).await {
                    // Done once this replica applied the events itself: the
                    // leader's answer (a forward's reply) is only its word,
                    // and a signature waiting on this batch must not leave
                    // on it. Not held yet: the same statement again (a
                    // commit this replica has not seen makes it a refused
                    // replay, not a second copy).
                    Ok(_) if holds(&node, from, &events).await => break,
                    // Too old to be taken, and not held here: signed again.
                    Ok(CommandResponse::Rejected { reason }) if reason.contains("stale") => {
                        tracing::warn!(reason, "audit statement too old; signing it again");
                        statement = audit();
                    }
                    Ok(_) => {
                        tracing::warn!(
                            pending = events.len(),
                            "the leader answered the audit append, and this replica does not \
                             hold it yet: sending it again"
                        );
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, pending = events.len(), "audit append failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
            }
            for w in waiters.into_iter().flatten() {
                let _ = w.send(());
            }
            last_said = Some(std::time::Instant::now());
            continue;
        }
        if !secret_gone && !node.uninitialised() {
            match super::init::tidy_init_secret(&node.config().data_dir, node.id(), true) {
                Ok(()) => secret_gone = true,
                Err(e) => tracing::warn!(error = %e, "could not delete the init secret"),
            }
        }
        if last_said.is_none_or(|t| t.elapsed() >= TICK_EVERY) {
            last_said = Some(std::time::Instant::now());
            let node = node.clone();
            tokio::spawn(async move {
                if let Err(e) = node
                    .propose_batched(node.statement(ClusterCommand::Tick {}))
                    .await
                {
                    tracing::debug!(error = %e, "tick not committed");
                }
            });
        }
        // From rules 5 every member signs its own replica's head (with
        // the tree's root), so a proof needs no single member's word;
        // before, the leader alone, without the root (older builds check
        // the first form of the signed bytes).
        let strict = node.registry(|r| r.rules >= log::AUDIT_RULES);
        if !strict && node.leader() != Some(node.id()) {
            continue;
        }
        let me = node.id();
        let my_identity = node.keys().identity();
        let head = node.registry(|r| {
            let last_signed = match strict {
                true => r.audit.signed_by(me),
                false => r.audit.last_head().map(|h| h.seq),
            };
            let seq = r.audit.len().checked_sub(1)?;
            // A head at an entry where this node was no member yet (a
            // joiner still catching up) would not verify: not signed.
            let member = !strict || r.head_signer(me, seq) == Some(my_identity);
            (Some(seq) > last_signed && member).then(|| (seq, r.audit.last_hash(), r.audit.root()))
        });
        if let Some((at, task)) = signing.take() {
            if !task.is_finished() {
                signing = Some((at, task));
                continue;
            }
            if task.await.unwrap_or(false) {
                signed = Some(at);
            }
        }
        if let Some((seq, hash, root)) = head {
            if signed == Some(seq) {
                continue;
            }
            let root = strict.then_some(root);
            let signature = node
                .keys()
                .sign(&head_signing_bytes(seq, &hash, root.as_ref()));
            let head = SignedHead {
                seq,
                hash,
                signer: me,
                signature: Hex(signature.to_vec()),
                root,
            };
            let node = node.clone();
            let task = tokio::spawn(async move {
                match node
                    .propose(node.statement(ClusterCommand::SignHead { head }))
                    .await
                {
                    // Refused (the log moved past it): the next round signs
                    // the newer end; while the log stays, the same one
                    // again.
                    Ok(CommandResponse::Rejected { reason }) => {
                        tracing::debug!(reason, "audit head refused");
                        false
                    }
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "signing the audit head failed");
                        false
                    }
                }
            });
            signing = Some((seq, task));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: u64) -> Vec<AuditEntry> {
        log::tests::logged(0..n).1
    }

    fn check(entries: &[AuditEntry]) -> Result<ChainCheck, AuditFault> {
        let mut c = ChainCheck::default();
        for e in entries {
            c.entry(e)?;
        }
        Ok(c)
    }

    #[test]
    fn the_chain_check_finds_every_tamper() {
        let log = entries(5);
        let c = check(&log).unwrap();
        assert_eq!(c.next(), 5);
        assert_eq!(c.prev(), log[4].hash);

        let mut altered = log.clone();
        altered[2].event.outcome = "denied".into();
        assert_eq!(check(&altered).err(), Some(AuditFault::Hash(2)));

        let mut dropped = log.clone();
        dropped.remove(1);
        assert_eq!(check(&dropped).err(), Some(AuditFault::Sequence(1, 2)));

        let mut relinked = log.clone();
        relinked[3].prev = Hex32([7u8; 32]);
        assert_eq!(check(&relinked).err(), Some(AuditFault::Link(3)));

        // Resumed from the middle, it reaches the same head.
        let mut half = check(&log[..2]).unwrap();
        let mut resumed = ChainCheck::resume(half.prev(), half.frontier().clone());
        for e in &log[2..] {
            resumed.entry(e).unwrap();
            half.entry(e).unwrap();
        }
        assert_eq!(resumed.frontier().root(), c.frontier().root());
    }
}
