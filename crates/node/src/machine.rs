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
    TokenGrant, MAX_BATCH,
};
use keyquorum_wire::msg::{EndpointRecord, MailItem, Prekey, CLAIM_COUNTS, MAX_CLAIM};
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
    /// Claimed, unused prekeys by public key.
    pub claimed: BTreeMap<Hex32, Claim>,
    /// The same, ordered by claim time, for lapsing.
    #[serde(default)]
    pub claims_by_time: BTreeSet<(u64, Hex32)>,
    /// Waiting messages by receiver, oldest first.
    pub mail: BTreeMap<String, Vec<MailItem>>,
    /// Identifiers accepted within the window: id → header time.
    pub seen: BTreeMap<Hex32, u64>,
    /// The same, ordered by time, for pruning.
    pub seen_by_time: BTreeSet<(u64, Hex32)>,
    /// Newest header time accepted.
    pub newest_ms: u64,
}

/// Why an endpoint cannot send or receive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// Never registered.
    #[error("unknown endpoint {0}")]
    Unknown(String),
    /// Revoked.
    #[error("endpoint {0} is revoked")]
    Revoked(String),
}

/// A sender's reservation of a receiver's prekey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Receiving endpoint.
    pub to: String,
    /// Sending endpoint.
    pub by: String,
    /// When it was claimed (ms).
    pub at_ms: u64,
}

/// Remove from `map` (and its time index `by_time`) every entry older
/// than `oldest`.
fn lapse<V>(by_time: &mut BTreeSet<(u64, Hex32)>, map: &mut BTreeMap<Hex32, V>, oldest: u64) {
    while let Some(&(t, key)) = by_time.first() {
        if t >= oldest {
            break;
        }
        by_time.pop_first();
        map.remove(&key);
    }
}

impl MsgState {
    /// The live (registered, not revoked) endpoint `name`.
    pub fn live(&self, name: &str) -> Result<&EndpointRecord, Unusable> {
        match self.endpoints.get(name) {
            None => Err(Unusable::Unknown(name.to_string())),
            Some(r) if r.revoked => Err(Unusable::Revoked(name.to_string())),
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

    /// Move the clock of the log forward to `time_ms` and forget what has
    /// fallen out of the window: identifiers in the seen-set, and claims
    /// never used (a message sealed to a lapsed claim is older than the
    /// window and refused anyway).
    fn advance(&mut self, time_ms: u64) {
        self.newest_ms = self.newest_ms.max(time_ms);
        let oldest = self.oldest_acceptable();
        lapse(&mut self.seen_by_time, &mut self.seen, oldest);
        lapse(&mut self.claims_by_time, &mut self.claimed, oldest);
    }

    /// Is `p` a prekey signed by `record`'s identity? (Checked by the node
    /// that takes the request, and again on apply.)
    pub fn check_prekey(record: &EndpointRecord, p: &Prekey) -> Result<(), String> {
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
        .map_err(|_| {
            format!(
                "prekey {} is not signed by endpoint {}",
                p.public, record.name
            )
        })
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
                    self.claimed.retain(|_, c| c.to != *name && c.by != *name);
                    let claimed = &self.claimed;
                    self.claims_by_time.retain(|(_, p)| claimed.contains_key(p));
                    CommandResponse::Ok
                }
            },
            Command::AddPrekeys { name, prekeys } => {
                let record = match self.live(name) {
                    Ok(r) => r,
                    Err(e) => return rejected(e.to_string()),
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
            Command::ClaimPrekey {
                name,
                by,
                count,
                time_ms,
            } => {
                if let Err(e) = self.live(name).and(self.live(by)) {
                    return rejected(e.to_string());
                }
                if !CLAIM_COUNTS.contains(count) {
                    return rejected(format!("a claim reserves 1 to {MAX_CLAIM} prekeys"));
                }
                let Some(queue) = self.prekeys.get_mut(name).filter(|q| !q.is_empty()) else {
                    return rejected(format!("{name} has no prekeys left"));
                };
                let take = queue.len().min(usize::from(*count));
                let prekeys: Vec<Prekey> = queue.drain(..take).collect();
                for p in &prekeys {
                    self.claimed.insert(
                        p.public,
                        Claim {
                            to: name.clone(),
                            by: by.clone(),
                            at_ms: *time_ms,
                        },
                    );
                    self.claims_by_time.insert((*time_ms, p.public));
                }
                self.advance(*time_ms);
                CommandResponse::Claimed { prekeys }
            }
            Command::Deliver { item, prekey } => {
                if let Err(e) = self.live(&item.to).and(self.live(&item.from)) {
                    return rejected(e.to_string());
                }
                if self.seen.contains_key(&item.id) {
                    return rejected(format!("message {} was already accepted (replay)", item.id));
                }
                if item.time_ms < self.oldest_acceptable() {
                    return rejected("message is older than the acceptance window");
                }
                match self.claimed.get(prekey) {
                    Some(c) if c.to == item.to && c.by == item.from => {}
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
                if let Some(c) = self.claimed.remove(prekey) {
                    self.claims_by_time.remove(&(c.at_ms, *prekey));
                }
                self.seen.insert(item.id, item.time_ms);
                self.seen_by_time.insert((item.time_ms, item.id));
                self.advance(item.time_ms);
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
            Command::Batch { commands } => {
                if commands.is_empty() || commands.len() > MAX_BATCH {
                    return rejected(format!("a batch holds 1 to {MAX_BATCH} commands"));
                }
                if commands.iter().any(|c| matches!(c, Command::Batch { .. })) {
                    return rejected("a batch cannot hold a batch");
                }
                CommandResponse::Batch {
                    responses: commands.iter().map(|c| self.apply(_index, c)).collect(),
                }
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

    fn endpoint(name: &str, key: &ed25519_dalek::SigningKey) -> Command {
        Command::PutEndpoint {
            record: EndpointRecord {
                name: name.into(),
                identity: Hex32(key.verifying_key().to_bytes()),
                owner: "t".into(),
                revoked: false,
                created_ms: 0,
            },
        }
    }

    fn prekeys(key: &ed25519_dalek::SigningKey, n: usize) -> Vec<Prekey> {
        (0..n)
            .map(|_| {
                let (_, p) =
                    keyquorum_core::msgkey::protocol::new_prekey(&mut rand_core::OsRng, key);
                Prekey {
                    public: Hex32(p.public),
                    signature: keyquorum_wire::Hex(p.signature.to_vec()),
                }
            })
            .collect()
    }

    fn item(id: u8, time_ms: u64) -> MailItem {
        let b = keyquorum_wire::msg::SealedBox {
            enc: Default::default(),
            ciphertext: Default::default(),
        };
        MailItem {
            id: Hex32([id; 32]),
            from: "a".into(),
            to: "b".into(),
            header: Default::default(),
            signature: Default::default(),
            payload: Default::default(),
            for_receiver: b,
            confirmations: Vec::new(),
            time_ms,
        }
    }

    fn claim_n(r: &mut Registry, count: u16, time_ms: u64) -> Vec<Hex32> {
        match r.apply(
            0,
            &Command::ClaimPrekey {
                name: "b".into(),
                by: "a".into(),
                count,
                time_ms,
            },
        ) {
            CommandResponse::Claimed { prekeys } => prekeys.iter().map(|p| p.public).collect(),
            other => panic!("claim: {other:?}"),
        }
    }

    fn claim(r: &mut Registry, time_ms: u64) -> Hex32 {
        let got = claim_n(r, 1, time_ms);
        assert_eq!(got.len(), 1);
        got[0]
    }

    #[test]
    fn a_batch_applies_each_command_on_its_own_and_a_bad_batch_changes_nothing() {
        let (ka, kb) = (
            ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]),
            ed25519_dalek::SigningKey::from_bytes(&[2u8; 32]),
        );
        let commands = vec![endpoint("a", &ka), endpoint("a", &kb), endpoint("b", &kb)];
        // Applied one by one, for comparison.
        let mut one_by_one = Registry::default();
        let singles: Vec<_> = commands.iter().map(|c| one_by_one.apply(1, c)).collect();
        assert_eq!(singles[0], CommandResponse::Ok);
        assert!(matches!(singles[1], CommandResponse::Rejected { .. }));
        assert_eq!(singles[2], CommandResponse::Ok);

        let mut r = Registry::default();
        let got = r.apply(
            1,
            &Command::Batch {
                commands: commands.clone(),
            },
        );
        assert_eq!(got, CommandResponse::Batch { responses: singles });
        let json = |r: &Registry| serde_json::to_string(r).unwrap();
        assert_eq!(json(&r), json(&one_by_one));
        assert_eq!(r.msg.endpoints.len(), 2);

        // Refused whole, the state unchanged: empty, too long, nested.
        let before = json(&r);
        let kc = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let long: Vec<_> = (0..=MAX_BATCH)
            .map(|i| endpoint(&format!("e{i}"), &kc))
            .collect();
        let nested = vec![
            endpoint("c", &kc),
            Command::Batch {
                commands: vec![endpoint("d", &kc)],
            },
        ];
        for bad in [Vec::new(), long, nested] {
            assert!(matches!(
                r.apply(2, &Command::Batch { commands: bad }),
                CommandResponse::Rejected { .. }
            ));
            assert_eq!(json(&r), before);
        }
    }

    #[test]
    fn prekeys_are_claimed_once_spent_once_and_lapse_with_the_window() {
        let ka = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
        let kb = ed25519_dalek::SigningKey::from_bytes(&[2u8; 32]);
        let mut r = Registry::default();
        let w = 1_000;
        let ok = CommandResponse::Ok;
        assert_eq!(
            r.apply(
                0,
                &Command::InitMsg {
                    salt: Hex32([9; 32]),
                    window_ms: w
                }
            ),
            ok
        );
        assert_eq!(r.apply(0, &endpoint("a", &ka)), ok);
        assert_eq!(r.apply(0, &endpoint("b", &kb)), ok);
        let is_rejected = |c: CommandResponse| matches!(c, CommandResponse::Rejected { .. });
        // A prekey signed by another identity is refused.
        assert!(is_rejected(r.apply(
            0,
            &Command::AddPrekeys {
                name: "b".into(),
                prekeys: prekeys(&ka, 1)
            }
        )));
        let published = prekeys(&kb, 3);
        assert_eq!(
            r.apply(
                0,
                &Command::AddPrekeys {
                    name: "b".into(),
                    prekeys: published.clone()
                }
            ),
            ok
        );
        // Republishing one is refused.
        assert!(is_rejected(r.apply(
            0,
            &Command::AddPrekeys {
                name: "b".into(),
                prekeys: published[..1].to_vec()
            }
        )));

        // Claimed oldest first, each once.
        let p1 = claim(&mut r, 10_000);
        let p2 = claim(&mut r, 10_000);
        assert_eq!((p1, p2), (published[0].public, published[1].public));
        assert_eq!(
            r.apply(
                0,
                &Command::Deliver {
                    item: item(1, 10_000),
                    prekey: p1
                }
            ),
            ok
        );
        // Replay, and a used prekey, are refused and change nothing.
        let before = r.msg.mail["b"].len();
        assert!(is_rejected(r.apply(
            0,
            &Command::Deliver {
                item: item(1, 10_000),
                prekey: p2
            }
        )));
        assert!(is_rejected(r.apply(
            0,
            &Command::Deliver {
                item: item(2, 10_000),
                prekey: p1
            }
        )));
        assert_eq!(r.msg.mail["b"].len(), before);
        assert!(r.msg.claimed.contains_key(&p2));

        // Time moves past 2 windows: the unused claim p2 lapses, the seen
        // identifier is forgotten, and an old message is refused as such.
        let p3 = claim(&mut r, 10_000 + 2 * w + 1);
        assert!(!r.msg.claimed.contains_key(&p2), "unused claim lapsed");
        assert!(r.msg.claims_by_time.iter().all(|(_, p)| *p == p3));
        assert!(!r.msg.seen.contains_key(&Hex32([1; 32])));
        match r.apply(
            0,
            &Command::Deliver {
                item: item(1, 10_000),
                prekey: p3,
            },
        ) {
            CommandResponse::Rejected { reason } => assert!(reason.contains("older"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(is_rejected(r.apply(
            0,
            &Command::Deliver {
                item: item(3, 12_001),
                prekey: p2
            }
        )));
        assert_eq!(
            r.apply(
                0,
                &Command::Deliver {
                    item: item(3, 12_001),
                    prekey: p3
                }
            ),
            ok
        );

        // Acks remove; revocation drops the mailbox and every claim.
        assert_eq!(
            r.apply(
                0,
                &Command::Ack {
                    name: "b".into(),
                    ids: vec![Hex32([1; 32])]
                }
            ),
            CommandResponse::Removed { count: 1 }
        );
        assert_eq!(r.msg.mail["b"].len(), 1);
        assert_eq!(
            r.apply(
                0,
                &Command::AddPrekeys {
                    name: "b".into(),
                    prekeys: prekeys(&kb, 1)
                }
            ),
            ok
        );
        claim(&mut r, 12_001);
        assert_eq!(
            r.apply(0, &Command::RevokeEndpoint { name: "b".into() }),
            ok
        );
        assert!(r.msg.claimed.is_empty() && r.msg.claims_by_time.is_empty());
        assert!(!r.msg.mail.contains_key("b"));
        assert!(is_rejected(r.apply(
            0,
            &Command::ClaimPrekey {
                name: "b".into(),
                by: "a".into(),
                count: 1,
                time_ms: 12_001
            }
        )));
    }

    #[test]
    fn a_batch_claim_reserves_the_oldest_up_to_what_is_left() {
        let ka = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
        let kb = ed25519_dalek::SigningKey::from_bytes(&[2u8; 32]);
        let mut r = Registry::default();
        let ok = CommandResponse::Ok;
        r.apply(
            0,
            &Command::InitMsg {
                salt: Hex32([9; 32]),
                window_ms: 1_000,
            },
        );
        assert_eq!(r.apply(0, &endpoint("a", &ka)), ok);
        assert_eq!(r.apply(0, &endpoint("b", &kb)), ok);
        let published = prekeys(&kb, 5);
        assert_eq!(
            r.apply(
                0,
                &Command::AddPrekeys {
                    name: "b".into(),
                    prekeys: published.clone()
                }
            ),
            ok
        );
        let ask = |r: &mut Registry, count| {
            r.apply(
                0,
                &Command::ClaimPrekey {
                    name: "b".into(),
                    by: "a".into(),
                    count,
                    time_ms: 10_000,
                },
            )
        };
        // Out-of-range counts are refused and take nothing.
        for count in [0, MAX_CLAIM + 1] {
            assert!(matches!(
                ask(&mut r, count),
                CommandResponse::Rejected { .. }
            ));
        }
        assert_eq!(r.msg.prekeys["b"].len(), 5);
        let first = claim_n(&mut r, 3, 10_000);
        let rest = claim_n(&mut r, 4, 10_000);
        let want: Vec<Hex32> = published.iter().map(|p| p.public).collect();
        assert_eq!(first, want[..3].to_vec(), "oldest first");
        assert_eq!(rest, want[3..].to_vec(), "fewer when fewer are left");
        assert!(matches!(ask(&mut r, 1), CommandResponse::Rejected { .. }));
        // Each reserved prekey carries exactly one message, once.
        for (i, p) in want.iter().enumerate() {
            let id = u8::try_from(i + 1).unwrap();
            assert_eq!(
                r.apply(
                    0,
                    &Command::Deliver {
                        item: item(id, 10_000),
                        prekey: *p
                    }
                ),
                ok
            );
            assert!(matches!(
                r.apply(
                    0,
                    &Command::Deliver {
                        item: item(id + 100, 10_000),
                        prekey: *p
                    }
                ),
                CommandResponse::Rejected { .. }
            ));
        }
        assert_eq!(r.msg.mail["b"].len(), 5);
        assert!(r.msg.claimed.is_empty());
    }
}
