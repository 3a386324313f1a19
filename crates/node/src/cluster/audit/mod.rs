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

use keyquorum_core::merkle;
use keyquorum_wire::control::{
    AuditEntry, AuditEvent, ClusterCommand, CommandResponse, SignedHead,
};
use keyquorum_wire::Hex;
use tokio::sync::{mpsc, oneshot};

use super::machine::clock::RESTORED;
use super::Node;
use crate::error::NodeError;

pub mod keeper;
pub mod log;
mod verify;

pub use log::{audit_hash, head_signing_bytes, AuditLog};
use log::{SPACE_ENTRY, SPACE_HEAD, SPACE_TREE};
pub use verify::{AuditFault, ChainCheck, Verified};

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
}

impl Node {
    /// Record a protocol failure the node found (members blamed, an
    /// accusation): audited as [`Self::audit_event`] and counted by action
    /// at `/metrics` (`keyquorum_protocol_failures_total`).
    pub fn audit_failure(&self, actor: &str, action: &str, target: Option<&str>, outcome: &str) {
        self.0.metrics.failures.add(action);
        self.audit_event(actor, action, target, outcome);
    }

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
    let mut signing: Option<(u64, tokio::task::JoinHandle<Option<bool>>)> = None;
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
            let task_node = node.clone();
            node.spawn(async move {
                let node = task_node;
                let boot = ClusterCommand::Boot {
                    boot: node.boot(),
                    rules: Some(crate::cluster::machine::rules::announced_by(node.id())),
                    measurement: Some(node.measurement()),
                    restored: node.registry(|r| r.clock.restore_id()),
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
                    // Made before the restored control plane's floor (or
                    // while it waits for the voters' boots): never taken, so
                    // signed again once the floor may have passed it.
                    Ok(CommandResponse::Rejected { reason }) if reason.contains(RESTORED) => {
                        tracing::info!(reason, "audit statement from before the restore's floor");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
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
            let task_node = node.clone();
            node.spawn(async move {
                let node = task_node;
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
            if task.await.ok().flatten().unwrap_or(false) {
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
            let task_node = node.clone();
            let task = node.spawn(async move {
                let node = task_node;
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
