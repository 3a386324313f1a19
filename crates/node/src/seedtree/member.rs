//! A member's half of signing with a tree: lock a leaf to one request,
//! then release its share of the leaf's secret, sealed to the client.
//!
//! Why two steps. Each member releases a leaf for one request only (its
//! own durable record, `LeafLocks`), but that alone does not stop a second
//! signature: with `t − 1` lying members (the coordinator among them), two
//! honest members each releasing leaf `q` once, to two requests, would
//! hand each request `t` shares. So a member releases its share only for a
//! request that a **lock quorum** of `⌈(n + t) / 2⌉` members signed a lock
//! for. Any two lock quorums share at least `t` members, so an honest one,
//! which locks a leaf once: at most one request ever gets a leaf's shares,
//! whatever the log, the leader or a restored control plane says (as long
//! as the members keep their lock records: a member whose disk is rolled
//! back to a backup takes its floor from the leader's `ReadIndex` as it
//! starts, which a lying leader can set too low; see the README).
//!
//! A lock is checked and recorded in one vault transaction, durable before
//! the member answers; concurrent locks share one sync to disk
//! (`cluster::commit`).
//!
//! Each step checks the client's signed request itself: signature,
//! freshness, sent to the coordinator, `POST /v1/seedtrees/{name}/sign`,
//! the client's right to sign with the tree; one request drives one
//! signing (a bounded number of leaves tried).
//!
//! The share is sealed to the one-time key in the client's signed request:
//! no node, the coordinator included, ever holds a leaf's key after key
//! generation. The client rebuilds the leaf's key, signs and verifies.

use std::collections::BTreeMap;

use keyquorum_core::lms::federation::Layout;
use keyquorum_core::lms::tree::Subtree;
use keyquorum_core::lms::Hash;
use keyquorum_store::vault::{Table, Vault};
use keyquorum_wire::control::Endorsement;
use keyquorum_wire::peer::{ClientRequest, PeerMessage};
use keyquorum_wire::seedtree::{
    grant_name, lock_quorum, lock_statement, share_aad, SealedLeafShare, SeedtreeRecord,
    SignSeedtreeRequest, SHARE_HPKE_INFO,
};
use keyquorum_wire::{Hex, Hex32, NodeId};
use zeroize::Zeroizing;

use super::records::{leaf_key, request_hash};
use super::rows;
use super::state::{identifier_of, layout_of, TreeEntry};
use crate::api::auth::{check_forwarded, check_sent_to, Authorized, Ledger};
use crate::cluster::commit::GroupCommit;
use crate::cluster::Node;
use crate::error::NodeError;

/// Leaves one request may try (each lock and release is an attempt).
pub(crate) const LEAVES_PER_REQUEST: usize = 8;
/// The start of a refusal because the leaf is locked to another request.
pub(crate) const LOCKED: &str = "leaf locked";
/// Longest message a client signs (64 KiB).
pub(crate) const MAX_MESSAGE: usize = 64 * 1024;

/// A leaf lock to record: its key and the request's hash.
type LockItem = ([u8; 36], [u8; 32]);
/// The thread that records leaf locks: per lock, the request that already
/// held the leaf (nothing written), or `None` (recorded).
type LockWriter = GroupCommit<LockItem, Option<Zeroizing<Vec<u8>>>>;

/// A member's signing half: its authorization ledger and the thread that
/// records leaf locks (check and record one step in one transaction,
/// group-committed).
#[derive(Debug, Default)]
pub(crate) struct Member {
    ledger: Ledger,
    locks: std::sync::OnceLock<LockWriter>,
    /// Per tree, the leaves the log had handed out when this member
    /// started (read once, after catching up): it locks none below. Its
    /// lock records may be older than the log (a vault restored from a
    /// backup): a leaf handed out before it started may have been locked
    /// by a record it no longer has.
    floor: tokio::sync::OnceCell<BTreeMap<String, u64>>,
}

fn refuse(why: impl std::fmt::Display) -> NodeError {
    NodeError::Forbidden(format!("leaf refused: {why}"))
}

/// The refusal of a leaf handed out before this member started.
pub(crate) const STALE: &str = "leaf handed out before this member started";

/// Whether a client with this grant signs with tree `name`.
pub(crate) fn may_sign(grant: &keyquorum_wire::control::Grant, name: &str) -> bool {
    let want = grant_name(name);
    grant.admin || grant.sign_keys.iter().any(|k| k == "*" || *k == want)
}

impl Member {
    /// The client's request checked for signing with `tree` (handed on by
    /// `from`), and the tree with this member among its members.
    async fn authorize(
        &self,
        node: &Node,
        from: NodeId,
        tree: &str,
        leaf: u32,
        request: &ClientRequest,
        step: &str,
    ) -> Result<(Authorized, TreeEntry, SignSeedtreeRequest), NodeError> {
        let behind = check_forwarded(node, request).is_err()
            || node.registry(|r| {
                r.seedtree
                    .trees
                    .get(tree)
                    .is_none_or(|e| u64::from(leaf) >= e.next)
            });
        if behind {
            let _ = node.read_barrier().await;
        }
        let a = check_forwarded(node, request)?;
        check_sent_to(node, &request.target_uri, from).map_err(refuse)?;
        if a.method != "POST" || a.path != format!("/v1/seedtrees/{tree}/sign") {
            return Err(refuse(format!(
                "the client's request is {} {}, not a signature with {tree}",
                a.method, a.path
            )));
        }
        if !may_sign(&a.grant, tree) {
            return Err(refuse(format!(
                "client {} may not sign with {tree}",
                a.grant.name
            )));
        }
        let body: SignSeedtreeRequest = serde_json::from_slice(&a.body)
            .map_err(|e| refuse(format!("the request's body: {e}")))?;
        let e = node
            .registry(|r| r.seedtree.trees.get(tree).cloned())
            .ok_or_else(|| NodeError::NotFound(format!("no tree named {tree}")))?;
        if !e.record.members.contains(&node.id()) {
            return Err(refuse(format!(
                "node {} holds no share of {tree}",
                node.id()
            )));
        }
        if u64::from(leaf) >= 1u64 << e.record.height {
            return Err(NodeError::BadRequest(format!("{tree} has no leaf {leaf}")));
        }
        // Only a leaf of the sharing in force (a reshare moved the leaves
        // from its `first` on; those below were handed out before it, or
        // not re-dealt).
        if u64::from(leaf) < e.first {
            return Err(refuse(format!(
                "leaf {leaf} of {tree} is below the sharing in force (it signs from {})",
                e.first
            )));
        }
        // Only a leaf the log handed out: one this member locked before it
        // last started was handed out before then, below its floor.
        if u64::from(leaf) >= e.next {
            return Err(refuse(format!(
                "leaf {leaf} of {tree} was not handed out (the log is at {})",
                e.next
            )));
        }
        self.ledger.record(
            &a,
            &format!("seedtree.sign {tree}"),
            &format!("{step} {leaf}"),
            2 * LEAVES_PER_REQUEST,
        )?;
        Ok((a, e, body))
    }

    /// Read, once this node caught up with the log after it started, how
    /// far each tree's leaves were handed out (a task started with the
    /// node; until it is done this member locks nothing).
    pub(crate) async fn settle(&self, node: &Node) {
        let mut wait = std::time::Duration::from_millis(50);
        loop {
            match node.read_index().await {
                // Caught up means applied through the leader's index (a
                // read barrier gives up waiting after a while).
                Ok(index)
                    if {
                        node.wait_applied(index).await;
                        node.applied_index().unwrap_or(0) >= index
                    } =>
                {
                    let floors = node.registry(|r| {
                        r.seedtree
                            .trees
                            .iter()
                            .map(|(name, e)| (name.clone(), e.next))
                            .collect()
                    });
                    let _ = self.floor.set(floors);
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "waiting to catch up before locking leaves"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_millis(250));
        }
    }

    /// The leaves of `tree` handed out before this member started; while
    /// it is still catching up after a start (a leader being elected),
    /// waited for up to 2 s (well within a peer call) before refusing.
    async fn floor(&self, tree: &str) -> Result<u64, NodeError> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while self.floor.get().is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let floors = self.floor.get().ok_or_else(|| {
            NodeError::Unavailable(
                "this member has not caught up with the log since it started: it locks no \
                 leaf yet"
                    .into(),
            )
        })?;
        Ok(floors.get(tree).copied().unwrap_or(0))
    }

    /// Lock `leaf` of tree `record` to the request hashed `h`: `Ok` if it
    /// is locked to it now (it was, or it was free and handed out since
    /// this member started), a refusal naming [`LOCKED`] if another
    /// request holds it, or [`STALE`]. Durable before it returns.
    async fn lock_to(
        &self,
        node: &Node,
        record: &SeedtreeRecord,
        leaf: u32,
        h: &[u8; 32],
        floor: u64,
    ) -> Result<(), NodeError> {
        let key = leaf_key(&record.run, leaf);
        let held = match node
            .vault()
            .get(Table::LeafLocks, &key)
            .map_err(|e| NodeError::Internal(format!("vault: {e}")))?
        {
            Some(held) => Some(held),
            None if u64::from(leaf) < floor => {
                return Err(NodeError::Conflict(format!(
                    "{STALE}: leaf {leaf} of {} (node {} locks leaves from {floor} on)",
                    record.name,
                    node.id()
                )))
            }
            // Recorded unless another request's lock got there first: the
            // check and the write are one step in the writer's transaction.
            None => self.writer(node)?.submit((key, *h)).await?,
        };
        match held {
            None => Ok(()),
            Some(held) if held.as_slice() == h => Ok(()),
            Some(_) => Err(NodeError::Conflict(format!(
                "{LOCKED}: leaf {leaf} of {} is locked to another request on node {}",
                record.name,
                node.id()
            ))),
        }
    }

    /// The thread that records leaf locks (started on first use).
    fn writer(&self, node: &Node) -> Result<&LockWriter, NodeError> {
        if let Some(w) = self.locks.get() {
            return Ok(w);
        }
        let w = GroupCommit::start(
            node.vault_arc(),
            "keyquorum-leaf-locks",
            Box::new(|vault: &Vault, items: &[LockItem]| {
                let items: Vec<(&[u8], &[u8])> = items
                    .iter()
                    .map(|(k, h)| (k.as_slice(), h.as_slice()))
                    .collect();
                vault.put_absent_many(Table::LeafLocks, &items)
            }),
        )?;
        // Started twice at once: the spare's thread ends with its handle.
        Ok(self.locks.get_or_init(|| w))
    }

    /// Step 1: lock `leaf` to the client's request and sign the lock.
    pub(crate) async fn lock(
        &self,
        node: &Node,
        from: NodeId,
        tree: &str,
        leaf: u32,
        request: &ClientRequest,
    ) -> Result<PeerMessage, NodeError> {
        let (a, e, _) = self
            .authorize(node, from, tree, leaf, request, "lock")
            .await?;
        let h = request_hash(&a, request);
        let floor = self.floor(tree).await?;
        self.lock_to(node, &e.record, leaf, &h, floor).await?;
        let signature = node.keys().sign(&lock_statement(&e.record.run, leaf, &h));
        Ok(PeerMessage::StLocked {
            signature: Hex(signature.to_vec()),
        })
    }

    /// Step 2: given a lock quorum's locks on `leaf` for this request,
    /// release this member's share sealed to the client's reply key, with
    /// the leaf's node and authentication path.
    pub(crate) async fn release(
        &self,
        node: &Node,
        from: NodeId,
        tree: &str,
        leaf: u32,
        request: &ClientRequest,
        locks: &[Endorsement],
    ) -> Result<PeerMessage, NodeError> {
        let (a, e, body) = self
            .authorize(node, from, tree, leaf, request, "release")
            .await?;
        let record = &e.record;
        let sharing = e.sharing();
        let h = request_hash(&a, request);
        let statement = lock_statement(&record.run, leaf, &h);
        let need = lock_quorum(record.members.len(), record.threshold);
        if locks.len() > record.members.len() {
            return Err(NodeError::BadRequest(format!(
                "at most one lock per member ({})",
                record.members.len()
            )));
        }
        // The members' keys copied out, checked outside the registry's lock.
        let keys: BTreeMap<NodeId, Hex32> = node.registry(|r| {
            record
                .members
                .iter()
                .filter_map(|m| r.members.get(m).map(|i| (*m, i.identity)))
                .collect()
        });
        // This member's own lock is not checked by its signature: its own
        // durable record decides (`lock_to` below holds the leaf to this
        // request or refuses), which a signature could only repeat. Counted
        // here, it is taken below before anything is released, exactly as
        // if it had locked it in step 1.
        let mut locked = std::collections::BTreeSet::new();
        for l in locks {
            if !locked.contains(&l.node)
                && ((l.node == node.id() && keys.contains_key(&l.node))
                    || keys
                        .get(&l.node)
                        .is_some_and(|k| crate::identity::verify(k, &statement, &l.signature.0)))
            {
                locked.insert(l.node);
            }
        }
        if locked.len() < need {
            return Err(refuse(format!(
                "{} of the {need} members' locks on leaf {leaf} for this request",
                locked.len()
            )));
        }
        // This member's own record agrees, or takes the lock now: durably,
        // before anything is released. Safety rests on this write, not
        // only a check: the count above took this member's own lock on
        // trust in it, and a lock only checked here would let this member
        // lock the leaf to another request later.
        let floor = self.floor(tree).await?;
        self.lock_to(node, record, leaf, &h, floor).await?;
        let layout = layout_of(record).map_err(NodeError::Internal)?;
        let share = rows::read(
            node.vault(),
            Table::LeafShares,
            &sharing,
            leaf,
            rows::leaf_row(&layout),
        )?
        .ok_or_else(|| {
            NodeError::NotFound(format!("node {} holds no share of leaf {leaf}", node.id()))
        })?;
        let (leaf_node, path) = path(node, record, &layout, leaf)?;
        let sealed = seal_to_client(&body.reply_key, record, leaf, node.id(), share.as_slice())?;
        node.audit_event(
            &a.grant.name,
            "seedtree.release",
            Some(tree),
            &format!("leaf {leaf} for node {from}'s request"),
        );
        Ok(PeerMessage::StReleased {
            share: sealed,
            leaf_node: Hex32(leaf_node),
            path: path.into_iter().map(Hex32).collect(),
        })
    }
}

/// Seal `share` to the client's reply key.
fn seal_to_client(
    reply_key: &Hex32,
    record: &SeedtreeRecord,
    leaf: u32,
    me: NodeId,
    share: &[u8],
) -> Result<SealedLeafShare, NodeError> {
    use hpke::aead::ChaCha20Poly1305;
    use hpke::kdf::HkdfSha256;
    use hpke::kem::X25519HkdfSha256;
    use hpke::{OpModeS, Serializable};
    let pk = crate::identity::hpke_public(reply_key)?;
    let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &pk,
        SHARE_HPKE_INFO,
        share,
        &share_aad(&record.run, leaf, me),
        &mut rand_core_09::UnwrapErr(rand_core_09::OsRng),
    )
    .map_err(|e| NodeError::BadRequest(format!("cannot seal to the reply key: {e}")))?;
    Ok(SealedLeafShare {
        node: me,
        enc: Hex(enc.to_bytes().to_vec()),
        ciphertext: Hex(ct),
    })
}

/// Leaf `leaf`'s node and authentication path: the siblings inside its
/// subtree from the nodes this member checked at key generation, then the
/// path above the subtrees from the roots in the record.
pub(crate) fn path(
    node: &Node,
    record: &SeedtreeRecord,
    layout: &Layout,
    leaf: u32,
) -> Result<(Hash, Vec<Hash>), NodeError> {
    let missing =
        |r: u32| NodeError::Internal(format!("node {r} of {} is not stored here", record.name));
    let read = |r: u32| -> Result<Hash, NodeError> {
        let v = rows::read(
            node.vault(),
            Table::TreeNodes,
            &record.run,
            r,
            rows::node_row(layout, r),
        )?;
        Ok(*v.ok_or_else(|| missing(r))?)
    };
    let subtrees_top = layout.subtrees * 2 - 1;
    let mut r = layout.lms.leaves() + leaf;
    // The leaf's node and its sibling share a row: read once.
    let even = r & !1;
    let bottom = rows::read_range(
        node.vault(),
        Table::TreeNodes,
        &record.run,
        even..even + 2,
        rows::node_row(layout, r),
    )?;
    let at = |r: u32| bottom.get((r - even) as usize).cloned().flatten();
    let leaf_node = *at(r).ok_or_else(|| missing(r))?;
    let mut out = Vec::with_capacity(usize::from(layout.lms.height()));
    if r > subtrees_top {
        out.push(*at(r ^ 1).ok_or_else(|| missing(r ^ 1))?);
        r /= 2;
    }
    while r > subtrees_top {
        out.push(read(r ^ 1)?);
        r /= 2;
    }
    let id = identifier_of(record).map_err(NodeError::Internal)?;
    let top = Subtree::from_nodes(
        &id,
        layout.subtrees,
        record.roots.iter().map(|h| h.0).collect(),
    )
    .map_err(NodeError::from_core)?;
    out.extend(top.path(r).map_err(NodeError::from_core)?.0);
    Ok((leaf_node, out))
}
