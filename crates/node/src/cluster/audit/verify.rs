//! Audit log verification: the chain and tree checks ([`ChainCheck`]),
//! signed heads checked against their signers' identity keys,
//! [`Node::verify_audit`] over the whole stored log and
//! [`Node::audit_proof`], one entry's inclusion proof against signed heads.

use std::time::Duration;

use keyquorum_core::merkle::{self, Frontier};
use keyquorum_wire::control::{AuditEntry, AuditProof, HeadProof, SignedHead};
use keyquorum_wire::{Hex32, NodeId};

use super::log::{audit_hash, head_signing_bytes};
use super::{PAGE, PROOF_HEADS};
use crate::cluster::Node;
use crate::error::NodeError;

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

impl Node {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: u64) -> Vec<AuditEntry> {
        super::super::log::tests::logged(0..n).1
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
