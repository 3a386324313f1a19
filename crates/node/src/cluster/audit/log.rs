//! The audit log's part of the replicated state: its head only. The
//! entries, the signed heads and the Merkle tree's stored subtrees are side
//! records (`keyquorum_store::raft::side`), written as the log applies
//! them and never part of a snapshot.
//!
//! Entry `i` has the chain hash
//! `h_i = SHA-256("keyquorum-audit-v1" ‖ i ‖ h_{i-1} ‖ JSON(event_i))`
//! with `h_{-1} = 0³²`, and is leaf `i` of a Merkle tree (RFC 9162 §2.1)
//! whose leaf data are the 32 bytes of `h_i`. The state keeps the number of
//! entries, the last `h`, the tree's frontier (its complete subtrees' roots)
//! and the latest signed head: enough to append, to compute the root, and
//! to check entries fetched from another member.

use keyquorum_core::merkle::{self, Frontier};
use keyquorum_store::raft::SideWrite;
use keyquorum_wire::control::{
    AuditEntry, AuditEvent, ClusterCommand, CommandResponse, SignedHead,
};
use keyquorum_wire::{Hex32, NodeId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, VecDeque};

/// Side space of the entries (key: `seq`; value: the entry's JSON).
pub const SPACE_ENTRY: u32 = 1;
/// Side space of the signed heads (key: their order of application;
/// value: the head's JSON).
pub const SPACE_HEAD: u32 = 2;
/// Side space of the tree's complete subtrees at level `l` is
/// `SPACE_TREE + l` (key: the subtree's index in its level; value: its
/// 32-byte hash).
pub const SPACE_TREE: u32 = 16;

/// The apply rules from which heads are checked against the log on apply
/// and every member signs its own ([`keyquorum_wire::control::APPLY_RULES`]).
pub const AUDIT_RULES: u16 = 5;

/// Apply rules from which a member's head that conflicts with this log is
/// kept as evidence (`audit verify` reports it) rather than refused.
pub const EVIDENCE_RULES: u16 = 6;

/// How many of the log's recent ends (after each audit statement) a head
/// may name.
pub const BOUNDARIES: usize = 1024;

/// Most events in one audit statement (rules 5).
pub const MAX_EVENTS: usize = 512;

/// Most bytes of an audit event's actor, action, target or outcome
/// (rules 5; the writer cuts longer ones).
pub const MAX_FIELD: usize = 1024;

/// A point a head may be signed at: the log's end after an audit
/// statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boundary {
    /// The last entry's number.
    pub seq: u64,
    /// Its hash.
    pub hash: Hex32,
    /// The tree's root over entries `0..=seq`.
    pub root: Hex32,
}

/// A signer's last head: its entry and where the head is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// The entry it covers up to.
    pub seq: u64,
    /// Its key among the stored heads.
    pub index: u64,
}

/// The audit log's head in the replicated state (serialized as part of
/// [`crate::cluster::Registry`]; see the module text).
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    last: Hex32,
    frontier: Frontier,
    heads: u64,
    last_head: Option<SignedHead>,
    /// The recent ends of audit statements, oldest first.
    recent: VecDeque<Boundary>,
    /// Each signer's last head (rules 5).
    signed: BTreeMap<NodeId, Signed>,
    /// Heads a member signed that this log does not have (rules 6): per
    /// signer, its latest that did not match (cleared when a later one of
    /// its heads matches). On an untouched replica a member's head is
    /// always one the log had (a head is ordered after its entries); one
    /// that is not means this replica's stored log, or that member, is
    /// wrong, and `audit verify` says so instead of dropping it.
    conflicts: BTreeMap<NodeId, SignedHead>,
    /// Records applying produced, not yet handed to the store.
    pending: Vec<SideWrite>,
    /// Entries whose records the store has written (not part of the
    /// state: the store says so after each write).
    written: u64,
}

impl AuditLog {
    /// Entries in the log.
    pub fn len(&self) -> u64 {
        self.frontier.size()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last entry's chain hash (zeros when empty).
    pub fn last_hash(&self) -> Hex32 {
        self.last
    }

    /// The Merkle root over every entry.
    pub fn root(&self) -> Hex32 {
        Hex32(self.frontier.root())
    }

    /// The tree's frontier.
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Signed heads applied.
    pub fn head_count(&self) -> u64 {
        self.heads
    }

    /// The latest signed head applied.
    pub fn last_head(&self) -> Option<&SignedHead> {
        self.last_head.as_ref()
    }

    /// The last head `signer` signed that was applied (rules 5).
    pub fn signed_by(&self, signer: NodeId) -> Option<u64> {
        self.signed.get(&signer).map(|s| s.seq)
    }

    /// Each signer's last head (rules 5).
    pub fn signers(&self) -> &BTreeMap<NodeId, Signed> {
        &self.signed
    }

    /// The rules take up checked heads: heads may name the log's end from
    /// now on (no earlier end, which replicas that loaded an older
    /// snapshot would not know).
    pub(crate) fn take_up_strict(&mut self) {
        self.recent.clear();
        self.signed.clear();
        self.mark_end();
    }

    /// Whether a head is one this log had: among the recent ends of audit
    /// statements, with that hash and root, and newer than its signer's
    /// last (rules 5).
    fn check_head(&self, head: &SignedHead) -> Result<(), HeadRefused> {
        let Some(root) = head.root else {
            return Err(HeadRefused::Refused(
                "an audit head states the tree's root".into(),
            ));
        };
        if self.signed_by(head.signer).is_some_and(|s| s >= head.seq) {
            return Err(HeadRefused::Refused(format!(
                "node {} already signed a head at entry {} or later",
                head.signer, head.seq
            )));
        }
        match self.recent.iter().rev().find(|b| b.seq == head.seq) {
            Some(b) if b.hash == head.hash && b.root == root => Ok(()),
            Some(_) => Err(HeadRefused::Conflict),
            None if head.seq >= self.len() => Err(HeadRefused::Conflict),
            None => Err(HeadRefused::Refused(format!(
                "entry {} is not a recent end of the log (stale or never)",
                head.seq
            ))),
        }
    }

    /// Heads members signed that this log does not have (see
    /// `conflicts`), by signer.
    pub fn conflicts(&self) -> &BTreeMap<NodeId, SignedHead> {
        &self.conflicts
    }

    /// The entries among the records not yet taken (tests of the machine
    /// alone, where no store takes them).
    #[cfg(test)]
    pub(crate) fn pending_entries(&self) -> Vec<AuditEntry> {
        self.pending
            .iter()
            .filter(|w| w.space == SPACE_ENTRY)
            .filter_map(|w| serde_json::from_slice(&w.value).ok())
            .collect()
    }

    /// Entries applied and written to the store: what readers of the
    /// records look for (at most a write behind [`Self::len`]).
    pub fn written_len(&self) -> u64 {
        self.written.min(self.len())
    }

    /// The store wrote every record handed out.
    pub(crate) fn side_written(&mut self) {
        if self.pending.is_empty() {
            self.written = self.len();
        }
    }

    /// The records applying produced since the last call.
    pub(crate) fn take_side(&mut self) -> Vec<SideWrite> {
        std::mem::take(&mut self.pending)
    }

    fn push_entry(&mut self, entry: &AuditEntry) {
        self.pending.push(SideWrite {
            space: SPACE_ENTRY,
            key: entry.seq,
            value: serde_json::to_vec(entry).unwrap_or_default(),
        });
        for (level, index, hash) in self.frontier.push(merkle::leaf_hash(&entry.hash.0)) {
            self.pending.push(SideWrite {
                space: SPACE_TREE + u32::from(level),
                key: index,
                value: hash.to_vec(),
            });
        }
        self.last = entry.hash;
    }

    fn append(&mut self, event: &AuditEvent) {
        let seq = self.len();
        let prev = self.last;
        let hash = audit_hash(seq, &prev, event);
        self.push_entry(&AuditEntry {
            seq,
            event: event.clone(),
            prev,
            hash,
        });
    }

    fn push_head(&mut self, head: &SignedHead) {
        self.pending.push(SideWrite {
            space: SPACE_HEAD,
            key: self.heads,
            value: serde_json::to_vec(head).unwrap_or_default(),
        });
        self.heads += 1;
        self.last_head = Some(head.clone());
    }

    /// Note the log's end after an audit statement.
    fn mark_end(&mut self) {
        let Some(seq) = self.len().checked_sub(1) else {
            return;
        };
        self.recent.push_back(Boundary {
            seq,
            hash: self.last,
            root: self.root(),
        });
        while self.recent.len() > BOUNDARIES {
            self.recent.pop_front();
        }
    }

    /// Apply [`ClusterCommand::Audit`] and [`ClusterCommand::SignHead`];
    /// `strict`: a head must be one the log had ([`AUDIT_RULES`]);
    /// `evidence`: one that conflicts with it is kept as evidence instead
    /// of refused ([`EVIDENCE_RULES`]).
    pub(crate) fn apply(
        &mut self,
        command: &ClusterCommand,
        strict: bool,
        evidence: bool,
    ) -> CommandResponse {
        match command {
            ClusterCommand::Audit { events } => {
                for e in events {
                    self.append(e);
                }
                if strict && !events.is_empty() {
                    self.mark_end();
                }
                CommandResponse::Ok
            }
            ClusterCommand::SignHead { head } if strict => match self.check_head(head) {
                Ok(()) => {
                    self.conflicts.remove(&head.signer);
                    self.signed.insert(
                        head.signer,
                        Signed {
                            seq: head.seq,
                            index: self.heads,
                        },
                    );
                    self.push_head(head);
                    CommandResponse::Ok
                }
                Err(HeadRefused::Conflict) if evidence => {
                    // Kept as evidence (the state changes: it is applied
                    // as that), not as a head of this log.
                    self.conflicts.insert(head.signer, head.clone());
                    CommandResponse::Ok
                }
                Err(HeadRefused::Conflict) => {
                    CommandResponse::rejected("the head does not match the log")
                }
                Err(HeadRefused::Refused(why)) => CommandResponse::rejected(why),
            },
            ClusterCommand::SignHead { head } => {
                // Kept even when it does not match this replica's chain, or
                // lies beyond its end: a head is signed over entries the
                // leader applied, and the log orders it after them, so on
                // an untouched replica it matches. A mismatch or a missing
                // entry means this replica's stored log was altered, and
                // dropping the head would hide exactly that from the
                // verification. Who signed it was checked on apply: a
                // member at that point, stating its own head.
                self.push_head(head);
                CommandResponse::Ok
            }
            _ => CommandResponse::rejected("not an audit command"),
        }
    }
}

/// Why a head is not applied as one of this log's (rules 5).
enum HeadRefused {
    /// At an entry this log had or has not reached, with another hash or
    /// root: kept as evidence ([`AuditLog::conflicts`]).
    Conflict,
    /// Malformed, replayed, or too old to check.
    Refused(String),
}

/// The audit log's head as a snapshot carries it.
#[derive(Serialize, Deserialize)]
struct Stored {
    len: u64,
    last: Hex32,
    frontier: Vec<Hex32>,
    heads: u64,
    #[serde(default)]
    last_head: Option<SignedHead>,
    #[serde(default)]
    recent: VecDeque<Boundary>,
    #[serde(default)]
    signed: BTreeMap<NodeId, Signed>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    conflicts: BTreeMap<NodeId, SignedHead>,
}

impl Serialize for AuditLog {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Stored {
            len: self.len(),
            last: self.last,
            frontier: self.frontier.nodes().iter().map(|h| Hex32(*h)).collect(),
            heads: self.heads,
            last_head: self.last_head.clone(),
            recent: self.recent.clone(),
            signed: self.signed.clone(),
            conflicts: self.conflicts.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for AuditLog {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Stored::deserialize(d)?;
        let frontier = Frontier::from_parts(s.len, s.frontier.iter().map(|h| h.0).collect())
            .ok_or_else(|| {
                serde::de::Error::custom("the audit frontier does not fit the entry count")
            })?;
        Ok(AuditLog {
            last: s.last,
            frontier,
            heads: s.heads,
            last_head: s.last_head,
            recent: s.recent,
            signed: s.signed,
            conflicts: s.conflicts,
            pending: Vec::new(),
            written: 0,
        })
    }
}

impl AuditLog {
    /// The log of a snapshot from before the entries were side records:
    /// its entries and heads as they were stored, all of them handed to the
    /// store as records ([`Self::take_side`]).
    pub(crate) fn from_legacy(entries: &[AuditEntry], heads: &[SignedHead]) -> Self {
        let mut log = AuditLog::default();
        for e in entries {
            log.push_entry(e);
        }
        for h in heads {
            log.push_head(h);
        }
        log
    }
}

/// The hash of audit entry `seq` with predecessor `prev`
/// ([`keyquorum_core::auditlog::entry_hash`]).
pub fn audit_hash(seq: u64, prev: &Hex32, event: &AuditEvent) -> Hex32 {
    // serde_json writes struct fields in declaration order: deterministic.
    let json = serde_json::to_vec(event).unwrap_or_default();
    Hex32(keyquorum_core::auditlog::entry_hash(seq, &prev.0, &json))
}

/// The bytes a signed head's signature covers
/// ([`keyquorum_core::auditlog::head_signing_bytes`]).
pub fn head_signing_bytes(seq: u64, hash: &Hex32, root: Option<&Hex32>) -> Vec<u8> {
    keyquorum_core::auditlog::head_signing_bytes(seq, &hash.0, root.map(|r| &r.0))
}

#[cfg(test)]
pub(crate) mod tests {
    use keyquorum_wire::NodeId;

    use super::*;

    pub(crate) fn event(i: u64) -> AuditEvent {
        AuditEvent {
            time_ms: i,
            node: NodeId::new(1).unwrap(),
            actor: "admin".into(),
            action: "key.sign".into(),
            target: Some(format!("k{i}")),
            outcome: "ok".into(),
        }
    }

    /// A log of the events numbered `events`, and its entries (the
    /// records taken).
    pub(crate) fn logged(events: std::ops::Range<u64>) -> (AuditLog, Vec<AuditEntry>) {
        let mut log = AuditLog::default();
        log.apply(
            &ClusterCommand::Audit {
                events: events.map(event).collect(),
            },
            true,
            true,
        );
        let entries = entries_of(&log.take_side());
        (log, entries)
    }

    /// The entries among `records`.
    pub(crate) fn entries_of(records: &[SideWrite]) -> Vec<AuditEntry> {
        records
            .iter()
            .filter(|w| w.space == SPACE_ENTRY)
            .map(|w| serde_json::from_slice(&w.value).unwrap())
            .collect()
    }

    /// Appending makes one entry record and the subtrees it completes; the
    /// snapshot form holds the head only and reads back the same; a legacy
    /// log converts to the same records.
    #[test]
    fn the_state_keeps_the_head_and_hands_out_the_records() {
        let mut log = AuditLog::default();
        log.apply(
            &ClusterCommand::Audit {
                events: (0..5).map(event).collect(),
            },
            true,
            true,
        );
        let records = log.take_side();
        let entries = entries_of(&records);
        assert_eq!(entries.len(), 5);
        assert_eq!(log.len(), 5);
        assert_eq!(log.last_hash(), entries[4].hash);
        // 5 leaves: 5 + 2 + 1 complete subtrees.
        assert_eq!(records.iter().filter(|w| w.space >= SPACE_TREE).count(), 8);
        assert!(log.take_side().is_empty());

        let json = serde_json::to_string(&log).unwrap();
        assert!(!json.contains("k4"), "no entry in the snapshot form");
        let back: AuditLog = serde_json::from_str(&json).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(back.root(), log.root());
        // A frontier that does not fit its count is refused.
        let bad = json.replace("\"len\":5", "\"len\":7");
        assert!(serde_json::from_str::<AuditLog>(&bad).is_err());

        let mut legacy = AuditLog::from_legacy(&entries, &[]);
        assert_eq!(legacy.root(), log.root());
        assert_eq!(legacy.take_side(), records);
    }

    /// From rules 5 a head is applied only if the log had it: one of its
    /// recent ends, hash and root equal, newer than its signer's last.
    #[test]
    fn a_head_the_log_never_had_is_refused() {
        use keyquorum_wire::Hex;
        let mut log = AuditLog::default();
        let audit = |from: u64, to: u64| ClusterCommand::Audit {
            events: (from..to).map(event).collect(),
        };
        log.apply(&audit(0, 3), true, false);
        let at2 = (log.last_hash(), log.root());
        log.apply(&audit(3, 5), true, false);
        let at4 = (log.last_hash(), log.root());
        let head = |signer: u16, seq: u64, (hash, root): (Hex32, Hex32)| ClusterCommand::SignHead {
            head: SignedHead {
                seq,
                hash,
                signer: NodeId::new(signer).unwrap(),
                signature: Hex(vec![0u8; 64]),
                root: Some(root),
            },
        };
        let ok = |r: CommandResponse| assert_eq!(r, CommandResponse::Ok);
        let refused =
            |r: CommandResponse| assert!(matches!(r, CommandResponse::Rejected { .. }), "{r:?}");
        ok(log.apply(&head(1, 4, at4), true, false));
        refused(log.apply(&head(1, 2, at2), true, false)); // not newer than its last
        ok(log.apply(&head(2, 2, at2), true, false));
        refused(log.apply(&head(3, 3, at4), true, false)); // not an end of the log
        refused(log.apply(&head(3, 4, (at4.0, at2.1)), true, false)); // wrong root
        refused(log.apply(&head(3, 4, (at2.0, at4.1)), true, false)); // wrong hash
        refused(log.apply(&head(3, 1_000_000, at4), true, false)); // far ahead
        let mut rootless = head(3, 4, at4);
        if let ClusterCommand::SignHead { head } = &mut rootless {
            head.root = None;
        }
        refused(log.apply(&rootless, true, false));
        assert_eq!(log.head_count(), 2);
        assert_eq!(log.signed_by(NodeId::new(1).unwrap()), Some(4));
        // The rules survive a snapshot.
        let mut back: AuditLog =
            serde_json::from_str(&serde_json::to_string(&log).unwrap()).unwrap();
        refused(back.apply(&head(3, 3, at4), true, false));
        ok(back.apply(&head(3, 4, at4), true, false));
        // Before rules 5 a head was kept as stated.
        ok(log.apply(&head(3, 1_000_000, at4), false, false));
        // From rules 6 a head that conflicts with the log is kept as
        // evidence, the signer's latest; a later matching head of the
        // signer clears it; stale or replayed heads are still refused.
        let mut ev = back;
        ok(ev.apply(&head(4, 4, (at4.0, at2.1)), true, true)); // wrong root
        ok(ev.apply(&head(5, 1_000_000, at4), true, true)); // far ahead
        refused(ev.apply(&head(6, 3, at4), true, true)); // not an end
        let who = |i: u16| NodeId::new(i).unwrap();
        assert_eq!(
            ev.conflicts().keys().copied().collect::<Vec<_>>(),
            vec![who(4), who(5)]
        );
        assert_eq!(ev.conflicts()[&who(5)].seq, 1_000_000);
        let kept: AuditLog = serde_json::from_str(&serde_json::to_string(&ev).unwrap()).unwrap();
        assert_eq!(kept.conflicts(), ev.conflicts());
        ok(ev.apply(&head(4, 4, at4), true, true));
        assert!(!ev.conflicts().contains_key(&who(4)));
        assert_eq!(ev.head_count(), 4);
    }
}
