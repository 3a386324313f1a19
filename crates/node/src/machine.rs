//! The control-plane state machine every node applies the Raft log to: key
//! registry, token grants, export requests, the audit log, and the
//! messaging endpoints, prekeys, mailboxes and seen-set ([`MsgState`]).
//!
//! The audit log is a hash chain: entry `i` stores
//! `h_i = SHA-256("keyquorum-audit-v1" ‖ i ‖ h_{i-1} ‖ JSON(event_i))`
//! with `h_{-1} = 0³²`. The leader signs the head periodically
//! ([`Command::SignHead`]); [`verify_chain`] recomputes every link and checks
//! every signed head against the signer's identity key, so altering,
//! dropping or reordering any stored entry is detected.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use keyquorum_store::raft::Machine;
use keyquorum_wire::control::{
    AuditEntry, AuditEvent, Command, CommandResponse, ExportRecord, KeyRecord, SignedHead,
    TokenGrant,
};
use keyquorum_wire::msg::{EndpointRecord, MailItem, Prekey};
use keyquorum_wire::Hex32;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The replicated state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Registry {
    /// Keys by name.
    pub keys: BTreeMap<String, KeyRecord>,
    /// Token grants by SHA-256 of the token.
    pub tokens: BTreeMap<Hex32, TokenGrant>,
    /// Export requests by id.
    pub exports: BTreeMap<String, ExportRecord>,
    /// The audit log.
    pub audit: Vec<AuditEntry>,
    /// Signed heads, oldest first.
    pub heads: Vec<SignedHead>,
    /// Per-message key derivation: endpoints, prekeys, mailboxes, seen-set.
    #[serde(default)]
    pub msg: MsgState,
}

/// Largest number of unclaimed prekeys an endpoint may have published.
pub const MAX_PREKEYS: usize = 1_000;
/// Most prekeys in one publish.
pub const MAX_PREKEYS_PER_CALL: usize = 200;
/// Most messages waiting in one mailbox.
pub const MAX_MAILBOX: usize = 10_000;

/// The replicated part of per-message key derivation (DESIGN.md §3.2).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MsgState {
    /// Public HKDF salt, set once.
    pub salt: Option<Hex32>,
    /// Acceptance window (ms).
    pub window_ms: u64,
    /// Endpoints by name.
    pub endpoints: BTreeMap<String, EndpointRecord>,
    /// Published, unclaimed prekeys by endpoint, oldest first.
    pub prekeys: BTreeMap<String, VecDeque<Prekey>>,
    /// Claimed, unused prekeys: public key → (receiver, sender).
    pub claimed: BTreeMap<Hex32, (String, String)>,
    /// Waiting messages by receiver, oldest first.
    pub mail: BTreeMap<String, Vec<MailItem>>,
    /// Identifiers accepted within the window: id → header time.
    pub seen: BTreeMap<Hex32, u64>,
    /// The same, ordered by time, for pruning.
    pub seen_by_time: BTreeSet<(u64, Hex32)>,
    /// Newest header time accepted.
    pub newest_ms: u64,
}

impl MsgState {
    /// The live (registered, not revoked) endpoint `name`.
    pub fn live(&self, name: &str) -> Result<&EndpointRecord, String> {
        match self.endpoints.get(name) {
            None => Err(format!("unknown endpoint {name}")),
            Some(r) if r.revoked => Err(format!("endpoint {name} is revoked")),
            Some(r) => Ok(r),
        }
    }

    /// Identifiers older than this are no longer remembered, and refused.
    /// Coordinators refuse anything outside ±window of their clock, and the
    /// newest accepted time is at most now + window, so nothing still
    /// acceptable is ever pruned.
    pub fn oldest_acceptable(&self) -> u64 {
        self.newest_ms
            .saturating_sub(self.window_ms.saturating_mul(2))
    }

    fn check_prekey(record: &EndpointRecord, p: &Prekey) -> Result<(), String> {
        let signature: [u8; 64] = p
            .signature
            .0
            .as_slice()
            .try_into()
            .map_err(|_| "prekey signature is not 64 bytes".to_string())?;
        keyquorum_core::msgkey::protocol::SignedPrekey {
            public: p.public.0,
            signature,
        }
        .verify(&record.identity.0)
        .map_err(|_| format!("prekey {} is not signed by {}", p.public, record.name))
    }

    fn apply(&mut self, command: &Command) -> CommandResponse {
        match command {
            Command::InitMsg { salt, window_ms } => {
                if self.salt.is_none() {
                    self.salt = Some(*salt);
                    self.window_ms = *window_ms;
                }
                CommandResponse::Ok
            }
            Command::PutEndpoint { record } => {
                if self.endpoints.contains_key(&record.name) {
                    return rejected(format!("endpoint {} exists", record.name));
                }
                if record.revoked {
                    return rejected("a new endpoint cannot be revoked");
                }
                self.endpoints.insert(record.name.clone(), record.clone());
                CommandResponse::Ok
            }
            Command::RevokeEndpoint { name } => match self.endpoints.get_mut(name) {
                None => rejected(format!("unknown endpoint {name}")),
                Some(r) => {
                    r.revoked = true;
                    self.prekeys.remove(name);
                    self.mail.remove(name);
                    self.claimed.retain(|_, (to, by)| to != name && by != name);
                    CommandResponse::Ok
                }
            },
            Command::AddPrekeys { name, prekeys } => {
                let record = match self.live(name) {
                    Ok(r) => r,
                    Err(e) => return rejected(e),
                };
                if prekeys.is_empty() || prekeys.len() > MAX_PREKEYS_PER_CALL {
                    return rejected(format!(
                        "publish 1 to {MAX_PREKEYS_PER_CALL} prekeys at a time"
                    ));
                }
                let pool = self.prekeys.get(name).map_or(0, VecDeque::len);
                if pool + prekeys.len() > MAX_PREKEYS {
                    return rejected(format!(
                        "{name} would have more than {MAX_PREKEYS} unclaimed prekeys"
                    ));
                }
                let mut fresh = BTreeSet::new();
                for p in prekeys {
                    if let Err(e) = Self::check_prekey(record, p) {
                        return rejected(e);
                    }
                    let known = self.claimed.contains_key(&p.public)
                        || self
                            .prekeys
                            .get(name)
                            .is_some_and(|q| q.iter().any(|x| x.public == p.public));
                    if known || !fresh.insert(p.public) {
                        return rejected(format!("prekey {} published twice", p.public));
                    }
                }
                self.prekeys
                    .entry(name.clone())
                    .or_default()
                    .extend(prekeys.iter().cloned());
                CommandResponse::Ok
            }
            Command::ClaimPrekey { name, by } => {
                if let Err(e) = self.live(name).and(self.live(by)) {
                    return rejected(e);
                }
                match self.prekeys.get_mut(name).and_then(VecDeque::pop_front) {
                    None => rejected(format!("{name} has no prekeys left")),
                    Some(p) => {
                        self.claimed.insert(p.public, (name.clone(), by.clone()));
                        CommandResponse::Claimed { prekey: p }
                    }
                }
            }
            Command::Deliver { item, prekey } => {
                if let Err(e) = self.live(&item.to).and(self.live(&item.from)) {
                    return rejected(e);
                }
                if self.seen.contains_key(&item.id) {
                    return rejected(format!("message {} was already accepted (replay)", item.id));
                }
                if item.time_ms < self.oldest_acceptable() {
                    return rejected("message is older than the acceptance window");
                }
                match self.claimed.get(prekey) {
                    Some((to, by)) if *to == item.to && *by == item.from => {}
                    _ => {
                        return rejected(format!(
                            "prekey {prekey} is not claimed by {} for {}, or already used",
                            item.from, item.to
                        ))
                    }
                }
                let mailbox = self.mail.entry(item.to.clone()).or_default();
                if mailbox.len() >= MAX_MAILBOX {
                    return rejected(format!("mailbox of {} is full", item.to));
                }
                mailbox.push(item.clone());
                self.claimed.remove(prekey);
                self.seen.insert(item.id, item.time_ms);
                self.seen_by_time.insert((item.time_ms, item.id));
                self.newest_ms = self.newest_ms.max(item.time_ms);
                let oldest = self.oldest_acceptable();
                while let Some(&(t, id)) = self.seen_by_time.first() {
                    if t >= oldest {
                        break;
                    }
                    self.seen_by_time.pop_first();
                    self.seen.remove(&id);
                }
                CommandResponse::Ok
            }
            Command::Ack { name, ids } => {
                let Some(mailbox) = self.mail.get_mut(name) else {
                    return CommandResponse::Removed { count: 0 };
                };
                let ids: BTreeSet<&Hex32> = ids.iter().collect();
                let before = mailbox.len();
                mailbox.retain(|m| !ids.contains(&m.id));
                CommandResponse::Removed {
                    count: (before - mailbox.len()) as u64,
                }
            }
            _ => rejected("not a messaging command"),
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
}

/// Recompute every link of `entries` (a prefix of the log starting at 0) and
/// check `heads` that fall within it; `identity(node)` gives a signer's key.
pub fn verify_chain(
    entries: &[AuditEntry],
    heads: &[SignedHead],
    identity: impl Fn(u64) -> Option<Hex32>,
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
            if h.seq < entries.len() as u64 {
                return Err(AuditFault::Head(h.seq));
            }
            continue;
        };
        let ok = entry.hash == h.hash
            && identity(h.signer).is_some_and(|k| {
                crate::identity::verify(&k, &head_signing_bytes(h.seq, &h.hash), &h.signature.0)
            });
        if !ok {
            return Err(AuditFault::Head(h.seq));
        }
    }
    Ok(())
}

fn rejected(reason: impl Into<String>) -> CommandResponse {
    CommandResponse::Rejected {
        reason: reason.into(),
    }
}

impl Registry {
    fn append_audit(&mut self, event: &AuditEvent) {
        let seq = self.audit.len() as u64;
        let prev = self
            .audit
            .last()
            .map(|e| e.hash)
            .unwrap_or(Hex32([0u8; 32]));
        let hash = audit_hash(seq, &prev, event);
        self.audit.push(AuditEntry {
            seq,
            event: event.clone(),
            prev,
            hash,
        });
    }
}

impl Machine for Registry {
    type Command = Command;
    type Response = CommandResponse;

    fn apply(&mut self, _index: u64, command: &Command) -> CommandResponse {
        match command {
            Command::PutKey {
                record,
                expected_epoch,
            } => {
                let current = self.keys.get(&record.name).map(|r| r.epoch);
                if current != *expected_epoch {
                    return rejected(match current {
                        Some(e) => format!("key {} is at epoch {e}", record.name),
                        None => format!("key {} does not exist", record.name),
                    });
                }
                if record.epoch != expected_epoch.map_or(1, |e| e + 1) {
                    return rejected("epoch must advance by one");
                }
                self.keys.insert(record.name.clone(), record.clone());
                CommandResponse::Ok
            }
            Command::Audit { events } => {
                for e in events {
                    self.append_audit(e);
                }
                CommandResponse::Ok
            }
            Command::SignHead { head } => {
                // Kept even when it does not match this replica's chain: a
                // mismatch means this replica's stored log was altered, and
                // dropping the head would hide exactly that from
                // `verify_chain`. (A head for an entry not yet present is
                // refused: heads are signed over applied entries.)
                if usize::try_from(head.seq)
                    .ok()
                    .and_then(|s| self.audit.get(s))
                    .is_none()
                {
                    return rejected("head beyond the end of the log");
                }
                self.heads.push(head.clone());
                CommandResponse::Ok
            }
            Command::PutToken { token_hash, grant } => {
                self.tokens.insert(*token_hash, grant.clone());
                CommandResponse::Ok
            }
            Command::RequestExport { record } => {
                if self.exports.contains_key(&record.id) {
                    return rejected("export id in use");
                }
                if !self.keys.contains_key(&record.key) {
                    return rejected(format!("no key {}", record.key));
                }
                self.exports.insert(record.id.clone(), record.clone());
                CommandResponse::Ok
            }
            Command::ApproveExport { id, operator } => match self.exports.get_mut(id) {
                None => rejected(format!("no export request {id}")),
                Some(r) if r.done => rejected("export already carried out"),
                Some(r) if r.requested_by == *operator => {
                    rejected("the requester cannot approve its own export")
                }
                Some(r) => {
                    if !r.approvals.contains(operator) {
                        r.approvals.push(operator.clone());
                    }
                    CommandResponse::Ok
                }
            },
            Command::CompleteExport { id } => match self.exports.get_mut(id) {
                None => rejected(format!("no export request {id}")),
                Some(r) if r.done => rejected("export already carried out"),
                Some(r) if r.approvals.len() < usize::from(r.needed) => {
                    rejected("not enough approvals")
                }
                Some(r) => {
                    r.done = true;
                    CommandResponse::Ok
                }
            },
            Command::InitMsg { .. }
            | Command::PutEndpoint { .. }
            | Command::RevokeEndpoint { .. }
            | Command::AddPrekeys { .. }
            | Command::ClaimPrekey { .. }
            | Command::Deliver { .. }
            | Command::Ack { .. } => self.msg.apply(command),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> AuditEvent {
        AuditEvent {
            time_ms: i,
            node: 1,
            actor: "admin".into(),
            action: "key.sign".into(),
            target: Some(format!("k{i}")),
            outcome: "ok".into(),
        }
    }

    #[test]
    fn chain_verifies_and_every_tamper_is_found() {
        let mut r = Registry::default();
        r.apply(
            0,
            &Command::Audit {
                events: (0..5).map(event).collect(),
            },
        );
        assert_eq!(verify_chain(&r.audit, &[], |_| None), Ok(()));

        let mut altered = r.audit.clone();
        altered[2].event.outcome = "denied".into();
        assert_eq!(
            verify_chain(&altered, &[], |_| None),
            Err(AuditFault::Hash(2))
        );

        let mut dropped = r.audit.clone();
        dropped.remove(1);
        assert_eq!(
            verify_chain(&dropped, &[], |_| None),
            Err(AuditFault::Sequence(1, 2))
        );

        let mut relinked = r.audit.clone();
        relinked[3].prev = Hex32([7u8; 32]);
        assert_eq!(
            verify_chain(&relinked, &[], |_| None),
            Err(AuditFault::Link(3))
        );
    }

    #[test]
    fn put_key_is_compare_and_set() {
        let mut r = Registry::default();
        let mut rec = KeyRecord {
            name: "k".into(),
            suite: keyquorum_wire::api::SuiteName::Ed25519,
            threshold: 2,
            members: vec![1, 2, 3],
            public_key: Default::default(),
            group_key: Default::default(),
            epoch: 1,
            session: Hex32([1u8; 32]),
            created_ms: 0,
        };
        assert_eq!(
            r.apply(
                1,
                &Command::PutKey {
                    record: rec.clone(),
                    expected_epoch: None
                }
            ),
            CommandResponse::Ok
        );
        assert!(matches!(
            r.apply(
                2,
                &Command::PutKey {
                    record: rec.clone(),
                    expected_epoch: None
                }
            ),
            CommandResponse::Rejected { .. }
        ));
        rec.epoch = 3;
        assert!(matches!(
            r.apply(
                3,
                &Command::PutKey {
                    record: rec.clone(),
                    expected_epoch: Some(1)
                }
            ),
            CommandResponse::Rejected { .. }
        ));
        rec.epoch = 2;
        assert_eq!(
            r.apply(
                4,
                &Command::PutKey {
                    record: rec,
                    expected_epoch: Some(1)
                }
            ),
            CommandResponse::Ok
        );
        assert_eq!(r.keys["k"].epoch, 2);
    }
}
