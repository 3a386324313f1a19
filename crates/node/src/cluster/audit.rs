//! The audit log: a hash chain in the replicated state ([`AuditLog`]),
//! signed heads, the writer that batches events into it, and verification.
//!
//! Entry `i` stores
//! `h_i = SHA-256("keyquorum-audit-v1" ‖ i ‖ h_{i-1} ‖ JSON(event_i))`
//! with `h_{-1} = 0³²`. The leader signs the head periodically
//! ([`ClusterCommand::SignHead`]); [`verify_chain`] recomputes every link and checks
//! every signed head against the signer's identity key, so altering,
//! dropping or reordering any stored entry is detected.
//!
//! **Audit before release**: [`Node::audit_event_committed`] lets a caller
//! hold a result back until its entry is committed.

use std::time::Duration;

use keyquorum_wire::control::{
    AuditEntry, AuditEvent, ClusterCommand, CommandResponse, SignedHead,
};
use keyquorum_wire::{Hex, Hex32, NodeId};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::Node;

/// The audit log's part of the replicated state (serialized as part of
/// [`super::Registry`]).
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    /// The entries, oldest first.
    pub entries: Vec<AuditEntry>,
    /// Signed heads, oldest first.
    pub heads: Vec<SignedHead>,
}

impl AuditLog {
    fn append(&mut self, event: &AuditEvent) {
        let seq = self.entries.len() as u64;
        let prev = self
            .entries
            .last()
            .map(|e| e.hash)
            .unwrap_or(Hex32([0u8; 32]));
        let hash = audit_hash(seq, &prev, event);
        self.entries.push(AuditEntry {
            seq,
            event: event.clone(),
            prev,
            hash,
        });
    }

    /// Apply [`ClusterCommand::Audit`] and [`ClusterCommand::SignHead`].
    pub(crate) fn apply(&mut self, command: &ClusterCommand) -> CommandResponse {
        match command {
            ClusterCommand::Audit { events } => {
                for e in events {
                    self.append(e);
                }
                CommandResponse::Ok
            }
            ClusterCommand::SignHead { head } => {
                // Kept even when it does not match this replica's chain, or
                // lies beyond its end: a head is signed over entries the
                // leader applied, and the log orders it after them, so on
                // an untouched replica it matches. A mismatch or a missing
                // entry means this replica's stored log was altered (an
                // altered entry no longer verifies on apply and is left
                // out), and dropping the head would hide exactly that from
                // `verify_chain`. Who signed it was checked on apply: a
                // member at that point, stating its own head.
                self.heads.push(head.clone());
                CommandResponse::Ok
            }
            _ => CommandResponse::rejected("not an audit command"),
        }
    }
}

const AUDIT_DOMAIN: &[u8] = b"keyquorum-audit-v1";

/// The hash of audit entry `seq` with predecessor `prev`.
pub fn audit_hash(seq: u64, prev: &Hex32, event: &AuditEvent) -> Hex32 {
    let mut h = Sha256::new();
    h.update(AUDIT_DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(prev.0);
    // serde_json writes struct fields in declaration order: deterministic.
    h.update(serde_json::to_vec(event).unwrap_or_default());
    Hex32(h.finalize().into())
}

/// The bytes a signed head's signature covers.
pub fn head_signing_bytes(seq: u64, hash: &Hex32) -> Vec<u8> {
    let mut m = b"keyquorum-audit-head-v1\x00".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&hash.0);
    m
}

/// What [`verify_chain`] found wrong.
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
    /// A signed head does not match the chain or its signature is invalid.
    #[error("signed head at {0} does not verify")]
    Head(u64),
    /// A signed head's signer was not a member when the log had that many
    /// entries.
    #[error("node {1} signed the head at entry {0} but was not a member then")]
    Signer(u64, NodeId),
    /// A signed head covers an entry this log does not have.
    #[error("node {1} signed a head at entry {0}, which this log does not have")]
    Missing(u64, NodeId),
}

/// Recompute every link of `entries` (the whole log) and check every head
/// against it; `identity(node, len)` gives a signer's key when the log had
/// `len` entries (a head at entry `s` is signed when the log has `s + 1`),
/// `None` if it was no member then.
pub fn verify_chain(
    entries: &[AuditEntry],
    heads: &[SignedHead],
    identity: impl Fn(NodeId, u64) -> Option<Hex32>,
) -> Result<(), AuditFault> {
    let mut prev = Hex32([0u8; 32]);
    for (i, e) in entries.iter().enumerate() {
        let i = i as u64;
        if e.seq != i {
            return Err(AuditFault::Sequence(i, e.seq));
        }
        if e.prev != prev {
            return Err(AuditFault::Link(i));
        }
        if audit_hash(e.seq, &e.prev, &e.event) != e.hash {
            return Err(AuditFault::Hash(i));
        }
        prev = e.hash;
    }
    for h in heads {
        let Some(entry) = usize::try_from(h.seq).ok().and_then(|s| entries.get(s)) else {
            return Err(AuditFault::Missing(h.seq, h.signer));
        };
        let Some(key) = identity(h.signer, h.seq.saturating_add(1)) else {
            return Err(AuditFault::Signer(h.seq, h.signer));
        };
        let ok = entry.hash == h.hash
            && crate::identity::verify(&key, &head_signing_bytes(h.seq, &h.hash), &h.signature.0);
        if !ok {
            return Err(AuditFault::Head(h.seq));
        }
    }
    Ok(())
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
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.map(str::to_string),
            outcome: outcome.to_string(),
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

/// What the audit queue carries: an event, and who waits for its commit.
pub(crate) type Queued = (AuditEvent, Option<oneshot::Sender<()>>);

/// A place reserved in the audit queue ([`Node::audit_permit`]); dropped
/// unused, it frees the place.
#[derive(Debug)]
pub(crate) struct AuditPermit(mpsc::OwnedPermit<Queued>);

/// Whether this replica's audit log holds `events`, appended at or after
/// entry `from` (waiting briefly for it to apply them: a follower learns of
/// a commit about one replication round after the leader).
async fn holds(node: &Node, from: usize, events: &[AuditEvent]) -> bool {
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return true;
    };
    let found = || {
        node.registry(|r| {
            let tail = r.audit.entries.get(from..).unwrap_or_default();
            // The whole batch, in order (one `Audit` command appends its
            // events together; another copy of its first event elsewhere
            // is not taken for it).
            tail.windows(events.len()).any(|w| {
                w.first().is_some_and(|e| e.event == *first)
                    && w.last().is_some_and(|e| e.event == *last)
                    && w.iter().zip(events).all(|(e, ev)| e.event == *ev)
            })
        })
    };
    let deadline = tokio::time::Instant::now() + HOLD_WAIT;
    loop {
        if found() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
            while batch.len() < 512 {
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
            let from = node.registry(|r| r.audit.entries.len());
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
        if node.leader() != Some(node.id()) {
            continue;
        }
        let head = node.registry(|r| {
            let last_signed = r.audit.heads.last().map(|h| h.seq);
            r.audit
                .entries
                .last()
                .filter(|e| Some(e.seq) > last_signed)
                .map(|e| (e.seq, e.hash))
        });
        if let Some((seq, hash)) = head {
            if signed == Some(seq) {
                continue;
            }
            let signature = node.keys().sign(&head_signing_bytes(seq, &hash));
            let head = SignedHead {
                seq,
                hash,
                signer: node.id(),
                signature: Hex(signature.to_vec()),
            };
            match node
                .propose(node.statement(ClusterCommand::SignHead { head }))
                .await
            {
                Ok(_) => signed = Some(seq),
                Err(e) => tracing::warn!(error = %e, "signing the audit head failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> AuditEvent {
        AuditEvent {
            time_ms: i,
            node: NodeId::new(1).unwrap(),
            actor: "admin".into(),
            action: "key.sign".into(),
            target: Some(format!("k{i}")),
            outcome: "ok".into(),
        }
    }

    #[test]
    fn chain_verifies_and_every_tamper_is_found() {
        let mut r = AuditLog::default();
        r.apply(&ClusterCommand::Audit {
            events: (0..5).map(event).collect(),
        });
        assert_eq!(verify_chain(&r.entries, &[], |_, _| None), Ok(()));

        let mut altered = r.entries.clone();
        altered[2].event.outcome = "denied".into();
        assert_eq!(
            verify_chain(&altered, &[], |_, _| None),
            Err(AuditFault::Hash(2))
        );

        let mut dropped = r.entries.clone();
        dropped.remove(1);
        assert_eq!(
            verify_chain(&dropped, &[], |_, _| None),
            Err(AuditFault::Sequence(1, 2))
        );

        let mut relinked = r.entries.clone();
        relinked[3].prev = Hex32([7u8; 32]);
        assert_eq!(
            verify_chain(&relinked, &[], |_, _| None),
            Err(AuditFault::Link(3))
        );

        // A head over entry 4: it verifies on the whole chain, and on a
        // chain that lost its last entries it is reported, not skipped.
        let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let public = Hex32(key.verifying_key().to_bytes());
        let head = SignedHead {
            seq: 4,
            hash: r.entries[4].hash,
            signer: NodeId::new(1).unwrap(),
            signature: Hex(ed25519_dalek::Signer::sign(
                &key,
                &head_signing_bytes(4, &r.entries[4].hash),
            )
            .to_bytes()
            .to_vec()),
        };
        let heads = [head];
        assert_eq!(
            verify_chain(&r.entries, &heads, |_, _| Some(public)),
            Ok(())
        );
        assert_eq!(
            verify_chain(&r.entries[..3], &heads, |_, _| Some(public)),
            Err(AuditFault::Missing(4, NodeId::new(1).unwrap()))
        );
        assert_eq!(
            verify_chain(&r.entries, &heads, |_, _| None),
            Err(AuditFault::Signer(4, NodeId::new(1).unwrap()))
        );
        // Another key: the signature does not verify.
        let other = Hex32(
            ed25519_dalek::SigningKey::from_bytes(&[4u8; 32])
                .verifying_key()
                .to_bytes(),
        );
        assert_eq!(
            verify_chain(&r.entries, &heads, |_, _| Some(other)),
            Err(AuditFault::Head(4))
        );
        // The signer is asked for as of the log's length when it signed.
        assert_eq!(
            verify_chain(&r.entries, &heads, |_, len| (len == 5).then_some(public)),
            Ok(())
        );
    }
}
