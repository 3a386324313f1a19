//! FROST signing across the members (core `sign`, RFC 9591).
//!
//! The coordinator draws one commitment per signer from its pool of
//! precomputed nonce commitments (or asks for a fresh one), builds the
//! signing package, and asks each signer for its share. A signer removes the
//! nonce from its vault durably before it signs (group-committed: see
//! [`super::taker`]). Unreachable signers are replaced by other members
//! while at least `t` remain; a signer whose share fails verification is
//! named.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use futures::future::join_all;
use keyquorum_core::codec::Encode;
use keyquorum_core::httpsig;
use keyquorum_core::sign::{SignatureShare, SigningCommitment, SigningNonce, SigningPackage};
use keyquorum_core::{sign, GroupKey, KeyShare, SessionId};
use keyquorum_store::vault::Op;
use keyquorum_store::Table;
use keyquorum_wire::api::{SignRequest, SignResponse, SuiteName};
use keyquorum_wire::control::{KeyRecord, NodeInfo};
use keyquorum_wire::peer::{ClientRequest, NonceCommitment, PeerMessage};
use keyquorum_wire::{Hex, NodeId};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::shares::nonce_slot;
use super::suite::{with_suite, KeySuite};
use super::{core_err, decode, key_record, lock, me_first, node_of, pid, Keys};
use crate::api::auth::{addressee, check_forwarded, forwarded};
use crate::cluster::Node;
use crate::error::NodeError;

/// Most nonces one request may ask a signer to precompute.
pub const MAX_NONCE_BATCH: u16 = 1024;

/// A pool's key: key name, generation, signer, and the signer's start
/// (its latest boot in the log when the commitments were asked for: a
/// signer drops its other starts' nonces, so a pool of an earlier start is
/// left behind, not drawn from, once the log has the signer's new start).
type PoolKey = (String, u64, NodeId, Option<keyquorum_wire::Hex32>);

/// The signing coordinator's pools of signers' precomputed nonce
/// commitments, and the refills under way.
#[derive(Default)]
pub(super) struct Pools {
    pools: Mutex<HashMap<PoolKey, VecDeque<NonceCommitment>>>,
    refilling: Mutex<BTreeSet<PoolKey>>,
}

/// Most decoded nonces a node keeps in memory.
const NONCE_CACHE: usize = 16 * 1024;

/// The nonces this start of the node precomputed, decoded (their
/// commitments computed), by vault slot, oldest first out.
///
/// The vault stays the authority: a signer first removes the nonce from the
/// vault durably ([`Keys::take_nonce`]) and only then looks here, and uses
/// what it finds only if it is the very nonce it removed (compared in
/// constant time); otherwise it decodes the removed bytes as before. So
/// the memory copy never lets a nonce sign twice or outlive its vault row,
/// and a miss (evicted, another start) costs only the decoding: rebuilding a
/// nonce recomputes its two commitments, two scalar multiplications, which
/// the copy made at precomputation saves on every signature. The nonces are
/// secrets: `SigningNonce` zeroizes them on drop, and they are in this
/// process's memory only while they wait to be used, as the key share is.
/// Each nonce is boxed: the table and its growth move pointers, never the
/// secret, and the nonce is zeroized where it lies when its box drops.
#[derive(Default)]
pub(super) struct NonceCache {
    /// Slot → (key, generation, nonce).
    by_slot: HashMap<Vec<u8>, (String, u64, super::suite::Suited<super::Nonces>)>,
    order: VecDeque<Vec<u8>>,
}

impl NonceCache {
    fn insert(
        &mut self,
        slot: Vec<u8>,
        key: (&str, u64),
        nonce: super::suite::Suited<super::Nonces>,
    ) {
        while self.by_slot.len() >= NONCE_CACHE {
            match self.order.pop_front() {
                Some(old) => {
                    self.by_slot.remove(&old);
                }
                None => break,
            }
        }
        let entry = (key.0.to_string(), key.1, nonce);
        if self.by_slot.insert(slot.clone(), entry).is_none() {
            self.order.push_back(slot);
        }
    }

    /// Take the nonce of `slot` out, if it is here (its place in the
    /// eviction order is dropped lazily).
    fn take(&mut self, slot: &[u8]) -> Option<super::suite::Suited<super::Nonces>> {
        let n = self.by_slot.remove(slot).map(|(_, _, n)| n);
        self.compact();
        n
    }

    /// Drop the nonces of `key`'s generations before `epoch` (their vault
    /// rows are being erased).
    pub(super) fn forget_older(&mut self, key: &str, epoch: u64) {
        self.by_slot.retain(|_, (k, e, _)| k != key || *e >= epoch);
        self.compact();
    }

    fn compact(&mut self) {
        if self.order.len() > 2 * self.by_slot.len() + 64 {
            let by_slot = &self.by_slot;
            self.order.retain(|s| by_slot.contains_key(s));
        }
    }
}

impl Pools {
    /// Forget every pool of generations of `record`'s key older than it.
    pub(super) fn forget_older(&self, key: &str, before: u64) {
        if let Ok(mut p) = self.pools.lock() {
            p.retain(|(name, epoch, _, _), _| name != key || *epoch >= before);
        }
    }
}

impl Keys {
    // ----- participant side -------------------------------------------------

    /// Precompute `count` signing nonces for this node's share of `name` at
    /// `epoch`: the secrets go to the vault, the commitments to the caller.
    pub(super) fn nonce_batch(
        &self,
        node: &Node,
        name: &str,
        epoch: u64,
        count: u16,
    ) -> Result<PeerMessage, NodeError> {
        if count == 0 || count > MAX_NONCE_BATCH {
            return Err(NodeError::BadRequest(format!(
                "nonce batch size must be 1..={MAX_NONCE_BATCH}"
            )));
        }
        let record = Self::record(node, name, epoch)?;
        // Nonces are bound to this process's boot, once the log has it
        // (see `sign_share`).
        if !node.boot_confirmed() {
            return Err(NodeError::Unavailable(format!(
                "node {}'s start is not in the log yet: it deals no nonces until it is",
                node.id()
            )));
        }
        let boot = node.boot();
        let share_bytes = self.share_bytes(node, &record)?;
        // Producing into this node's known elements: the fresh commitments
        // (multiples of the generator computed here) are remembered, so the
        // package that brings them back decodes them without the
        // prime-order check. Nothing else is encoded in this scope.
        let mut decoded = Vec::with_capacity(usize::from(count));
        let (items, secrets) = self.known.producing(|| -> Result<_, NodeError> {
            Ok(with_suite!(record.suite, |C| {
                let share = KeyShare::<C>::from_secret_bytes(&share_bytes)
                    .map_err(|e| NodeError::Internal(e.to_string()))?;
                let mut items = Vec::with_capacity(usize::from(count));
                let mut secrets = Vec::with_capacity(usize::from(count));
                for (nonce, commitment) in sign::precompute(&share, usize::from(count), &mut OsRng)
                {
                    let mut id = [0u8; 16];
                    OsRng.fill_bytes(&mut id);
                    let mut stored = zeroize::Zeroizing::new(boot.0.to_vec());
                    stored.extend_from_slice(&nonce.to_secret_bytes());
                    let slot = nonce_slot(name, epoch, &id);
                    decoded.push((slot.clone(), C::wrap::<super::Nonces>(Box::new(nonce))));
                    secrets.push((slot, stored));
                    items.push(NonceCommitment {
                        id: Hex(id.to_vec()),
                        commitment: Hex(commitment.to_bytes()),
                    });
                }
                (items, secrets)
            }))
        })?;
        let ops: Vec<Op<'_>> = secrets
            .iter()
            .map(|(k, v)| Op::Put(Table::Nonces, k, v))
            .collect();
        node.vault().apply(&ops)?;
        // Kept decoded only once they are durable (the copy is optional: a
        // poisoned lock only costs the decoding at signing time).
        let mut cache = self.decoded_nonces();
        for (slot, nonce) in decoded {
            cache.insert(slot, (name, epoch), nonce);
        }
        drop(cache);
        Ok(PeerMessage::Nonces { items })
    }

    /// Sign `package` with the nonce `nonce`, which is removed from the
    /// vault durably first (it can never sign twice) — only if `request` is
    /// a client's request, checked here, to sign this message with this key.
    #[allow(
        clippy::too_many_arguments,
        reason = "one peer message's fields, unpacked"
    )]
    pub(super) async fn sign_share(
        &self,
        node: &Node,
        from: NodeId,
        name: &str,
        epoch: u64,
        nonce: &Hex,
        package: &Hex,
        request: &ClientRequest,
    ) -> Result<PeerMessage, NodeError> {
        let record = Self::record(node, name, epoch)?;
        // A client registered through another node a moment ago may not
        // have reached this replica yet: read through the leader once.
        if let Err(NodeError::Unauthorized(m)) = check_forwarded(node, request) {
            if m.starts_with("unknown key id") {
                if let Err(e) = node.read_barrier().await {
                    tracing::debug!(error = %e, "signer could not catch up on clients");
                }
            }
        }
        if nonce.0.len() != 16 {
            return Err(NodeError::BadRequest("nonce id must be 16 bytes".into()));
        }
        let me = pid(node.id());
        let share_bytes = self.share_bytes(node, &record)?;
        let slot = nonce_slot(name, epoch, &nonce.0);
        let share = with_suite!(record.suite, |C| {
            // Check the package names this node before spending a nonce.
            let package = self
                .known
                .scope(|| decode::<SigningPackage<C>>(&package.0, "signing package", from))?;
            if !package.signers().any(|s| s == me) {
                return Err(NodeError::BadRequest(
                    "this node is not a signer in the package".into(),
                ));
            }
            let signers: Vec<NodeId> = package.signers().map(node_of).collect();
            // An attempt is recorded only for a nonce this node holds: a
            // made-up nonce id cannot use up the request's attempts.
            if node.vault().get(Table::Nonces, &slot)?.is_none() {
                return Err(NodeError::Conflict("unknown or already used nonce".into()));
            }
            self.authorize_sign(node, from, &record, package.message(), &signers, request)?;
            let nonce = self.take_signing_nonce::<C>(node, slot).await?;
            let share = self
                .known
                .scope(|| KeyShare::<C>::from_secret_bytes(&share_bytes))
                .map_err(|e| NodeError::Internal(e.to_string()))?;
            let mut s: SignatureShare<C> = nonce.sign_boxed(&share, &package).map_err(core_err)?;
            if self.faults.send_bad_signature_shares() {
                s.tamper();
            }
            s.to_bytes()
        });
        Ok(PeerMessage::SignatureShare { share: Hex(share) })
    }

    /// Spend the nonce in `slot`, in this order: removed from the vault
    /// durably ([`Keys::take_nonce`]), its decoded copy taken out of the
    /// memory cache at once (whatever fails next), then checked to be of
    /// this start of the node and used from the copy only if its bytes are
    /// the removed ones.
    async fn take_signing_nonce<C: KeySuite>(
        &self,
        node: &Node,
        slot: Vec<u8>,
    ) -> Result<Box<SigningNonce<C>>, NodeError> {
        let stored = self.take_nonce(slot.clone()).await?;
        let kept = self
            .decoded_nonces()
            .take(&slot)
            .and_then(C::unwrap::<super::Nonces>);
        removed_nonce::<C>(kept, this_start(node, &stored)?)
    }

    /// Remove the nonce in `slot` from the vault durably and return what
    /// was stored (this start's boot id, then the nonce): a crash after
    /// this can never sign with it again. (Removals of concurrent
    /// requests share one commit; see `taker`.)
    async fn take_nonce(&self, slot: Vec<u8>) -> Result<zeroize::Zeroizing<Vec<u8>>, NodeError> {
        self.nonces
            .take(slot)
            .await?
            .ok_or_else(|| NodeError::Conflict("unknown or already used nonce".into()))
    }

    /// This node's Ed25519 signature share of reset request `request_id`'s
    /// package `package` with its share of the account's reset key
    /// `record` and its nonce `nonce_id`, whose commitment must be
    /// `commitment`. Only `crate::recovery::reset` calls it, after checking
    /// the reset request in its own replica of the log (the package is
    /// rebuilt from that record, never taken from a peer). In order: the
    /// stored nonce's commitment is checked (a record naming another
    /// nonce spends nothing); the request is recorded as signed in the
    /// vault, durably, once for good (a log rewritten later with another
    /// record for the same id gets no second share); the nonce is spent
    /// durably; then the share is computed.
    #[allow(
        clippy::too_many_arguments,
        reason = "the reset record's fields a signer checks, unpacked"
    )]
    pub(crate) async fn reset_share(
        &self,
        node: &Node,
        record: &KeyRecord,
        request_id: &[u8; 16],
        nonce_id: &[u8],
        commitment: &[u8],
        package: &SigningPackage<keyquorum_core::Ed25519>,
    ) -> Result<SignatureShare<keyquorum_core::Ed25519>, NodeError> {
        use keyquorum_core::Ed25519;
        if record.suite != SuiteName::Ed25519
            || !keyquorum_wire::recovery::is_reset_key(&record.name)
        {
            return Err(NodeError::Forbidden(format!(
                "{} is not an account's reset key",
                record.name
            )));
        }
        if nonce_id.len() != 16 {
            return Err(NodeError::BadRequest("nonce id must be 16 bytes".into()));
        }
        let share_bytes = self.share_bytes(node, record)?;
        let slot = nonce_slot(&record.name, record.epoch, nonce_id);
        let peek = node
            .vault()
            .get(Table::Nonces, &slot)?
            .ok_or_else(|| NodeError::Conflict("unknown or already used nonce".into()))?;
        let mine = SigningNonce::<Ed25519>::from_secret_bytes(this_start(node, &peek)?)
            .map_err(|e| NodeError::Internal(e.to_string()))?;
        if mine.commitment().to_bytes() != commitment {
            return Err(NodeError::Conflict(
                "the reset names another commitment for this node's nonce".into(),
            ));
        }
        {
            static MARKING: Mutex<()> = Mutex::new(());
            let _one = lock(&MARKING)?;
            if node.vault().get(Table::ResetsSigned, request_id)?.is_some() {
                return Err(NodeError::Conflict(format!(
                    "this node has signed reset request {} already",
                    hex::encode(request_id)
                )));
            }
            node.vault()
                .put(Table::ResetsSigned, request_id, nonce_id)?;
        }
        let nonce = self.take_signing_nonce::<Ed25519>(node, slot).await?;
        let share = self
            .known
            .scope(|| KeyShare::<Ed25519>::from_secret_bytes(&share_bytes))
            .map_err(|e| NodeError::Internal(e.to_string()))?;
        let mut s = nonce.sign_boxed(&share, package).map_err(core_err)?;
        if self.faults.send_bad_signature_shares() {
            s.tamper();
        }
        Ok(s)
    }

    // ----- coordinator side -------------------------------------------------

    /// Take a commitment for `signer` from the pool, or fetch fresh ones.
    pub(crate) async fn commitment(
        &self,
        node: &Node,
        record: &KeyRecord,
        signer: NodeId,
        info: &NodeInfo,
    ) -> Result<NonceCommitment, NodeError> {
        let start = node.registry(|r| r.boots.get(&signer).copied());
        let pool_key = (record.name.clone(), record.epoch, signer, start);
        let target = node.config().nonce_pool;
        let (got, low) = {
            let mut pools = lock(&self.pools.pools)?;
            if !pools.contains_key(&pool_key) {
                // The signer's earlier starts' pools are of no use.
                pools.retain(|(n, e, s, b), _| {
                    *s != signer || *n != record.name || *e != record.epoch || *b == start
                });
            }
            let q = pools.entry(pool_key.clone()).or_default();
            (q.pop_front(), q.len() < target / 2)
        };
        if target > 0 && low {
            self.spawn_refill(node, pool_key.clone(), info.clone());
        }
        if let Some(c) = got {
            return Ok(c);
        }
        let batch = PeerMessage::NonceBatch {
            key: record.name.clone(),
            epoch: record.epoch,
            count: 1,
        };
        match node.call(signer, info, batch).await? {
            PeerMessage::Nonces { mut items } if items.len() == 1 => items
                .pop()
                .ok_or_else(|| NodeError::Internal("empty".into())),
            _ => Err(NodeError::Misbehaved {
                message: format!("node {signer} answered NonceBatch wrongly"),
                culprits: vec![signer],
            }),
        }
    }

    fn spawn_refill(&self, node: &Node, key: PoolKey, info: NodeInfo) {
        let signer = key.2;
        match self.pools.refilling.lock() {
            Ok(mut r) => {
                if !r.insert(key.clone()) {
                    return;
                }
            }
            Err(_) => return,
        }
        let (task_node, pools) = (node.clone(), self.pools.clone());
        let count = u16::try_from(
            node.config()
                .nonce_pool
                .clamp(1, usize::from(MAX_NONCE_BATCH)),
        )
        .unwrap_or(1);
        node.spawn(async move {
            let node = task_node;
            let batch = PeerMessage::NonceBatch {
                key: key.0.clone(),
                epoch: key.1,
                count,
            };
            let got = node.call(signer, &info, batch).await;
            // Kept only if the signer has not started again meanwhile (its
            // new start drops these nonces), judged under the pools' lock
            // so a start applied in between cannot leave an orphan pool.
            if let Ok(PeerMessage::Nonces { items }) = got {
                if let Ok(mut p) = pools.pools.lock() {
                    if node.registry(|r| r.boots.get(&key.2).copied()) == key.3 {
                        p.entry(key.clone()).or_default().extend(items);
                    }
                }
            }
            if let Ok(mut r) = pools.refilling.lock() {
                r.remove(&key);
            }
        });
    }

    /// Forget pooled commitments of `signer` (it failed; its vault may have
    /// lost them).
    pub(crate) fn drop_pool(&self, record: &KeyRecord, signer: NodeId) {
        if let Ok(mut p) = self.pools.pools.lock() {
            p.retain(|(n, e, s, _), _| *s != signer || *n != record.name || *e != record.epoch);
        }
    }

    /// A signer's own check of the client's request before it releases a
    /// share (DESIGN.md §4 item 2): a live client of this node's registry
    /// signed it, freshly, for this cluster; it is `POST
    /// /v1/keys/{key}/sign` with this message in its body; the client may
    /// sign with the key; and the request has not driven another operation,
    /// this signer set, or more attempts than an operation can make
    /// (n − t + 1: each retry drops a failed signer).
    fn authorize_sign(
        &self,
        node: &Node,
        from: NodeId,
        record: &KeyRecord,
        message: &[u8],
        signers: &[NodeId],
        request: &ClientRequest,
    ) -> Result<(), NodeError> {
        if record.suite == SuiteName::Ristretto255 {
            return Err(NodeError::Forbidden(format!(
                "signing refused: {} is an encrypted-data session's key; it decrypts, never signs",
                record.name
            )));
        }
        // An account's reset key signs reset tokens only, sealed to the
        // account's device over its channels (`crate::recovery`).
        if keyquorum_wire::recovery::is_reset_key(&record.name) {
            return Err(NodeError::Forbidden(format!(
                "signing refused: {} is an account's reset key; it signs reset tokens only",
                record.name
            )));
        }
        let a = check_forwarded(node, request)?;
        // Only the node the client sent the request to coordinates it: a
        // member handed the request cannot use up its attempts elsewhere.
        if let Some(to) = addressee(node, &request.target_uri) {
            if to != from {
                return Err(NodeError::Forbidden(format!(
                    "signing refused: the client's request was sent to node {to}, not to node {from}"
                )));
            }
        }
        let refuse = |why: String| NodeError::Forbidden(format!("signing refused: {why}"));
        if a.method != "POST" || a.path != format!("/v1/keys/{}/sign", record.name) {
            return Err(refuse(format!(
                "the client's request is {} {}, not a signature with {}",
                a.method, a.path, record.name
            )));
        }
        let asked: SignRequest = serde_json::from_slice(&a.body)
            .map_err(|e| refuse(format!("the client's request body does not parse: {e}")))?;
        if asked.message.0 != message {
            return Err(refuse(
                "the message to sign is not the one the client asked for".into(),
            ));
        }
        let g = &a.grant;
        if !(g.admin || g.sign_keys.iter().any(|k| k == "*" || *k == record.name)) {
            return Err(refuse(format!(
                "client {} may not sign with {}",
                g.name, record.name
            )));
        }
        let digest = Sha256::digest(message);
        let operation = format!("sign {} {}", record.name, hex::encode(digest));
        let attempt = format!("{signers:?}");
        let attempts = record
            .members
            .len()
            .saturating_sub(usize::from(record.threshold))
            + 1;
        self.ledger.record(&a, &operation, &attempt, attempts)
    }

    /// Threshold-sign `message` with key `name`, as the client's signed
    /// `request` asks (forwarded to every signer, which checks it).
    pub async fn sign(
        &self,
        node: &Node,
        name: &str,
        message: &[u8],
        request: &httpsig::Request,
    ) -> Result<SignResponse, NodeError> {
        let request = forwarded(request);
        let record = key_record(node, name).await?;
        if record.suite == SuiteName::Ristretto255 {
            return Err(NodeError::Forbidden(format!(
                "{name} is an encrypted-data session's key: it decrypts, never signs"
            )));
        }
        let t = usize::from(record.threshold);
        // This node first (no network hop), then the others rotated per
        // request so load spreads.
        let rotate = self.rotation.fetch_add(1, Ordering::Relaxed);
        let order = me_first(&record.members, node.id(), rotate);
        let mut failed: BTreeSet<NodeId> = BTreeSet::new();
        let mut last_err = None;
        loop {
            let signers: Vec<NodeId> = order
                .iter()
                .copied()
                .filter(|m| !failed.contains(m))
                .take(t)
                .collect();
            if signers.len() < t {
                return Err(last_err.unwrap_or_else(|| {
                    NodeError::Unavailable(format!(
                        "fewer than {t} members of {name} are reachable"
                    ))
                }));
            }
            match self
                .sign_once(node, &record, &signers, message, &request)
                .await
            {
                Ok(r) => return Ok(r),
                Err((bad, e)) => {
                    if bad.is_empty() {
                        return Err(e);
                    }
                    for b in &bad {
                        self.drop_pool(&record, *b);
                    }
                    tracing::warn!(key = name, ?bad, error = %e, "signers failed; retrying with others");
                    failed.extend(bad);
                    last_err = Some(e);
                }
            }
        }
    }

    pub(super) async fn sign_once(
        &self,
        node: &Node,
        record: &KeyRecord,
        signers: &[NodeId],
        message: &[u8],
        request: &ClientRequest,
    ) -> Result<SignResponse, (Vec<NodeId>, NodeError)> {
        let mut infos = BTreeMap::new();
        for s in signers {
            let info = node.node_info(*s).ok_or_else(|| {
                (
                    vec![*s],
                    NodeError::Unavailable(format!("no address for node {s}")),
                )
            })?;
            infos.insert(*s, info);
        }
        let fetched = join_all(
            infos
                .iter()
                .map(|(s, i)| async move { (*s, self.commitment(node, record, *s, i).await) }),
        )
        .await;
        let mut nonce_ids = BTreeMap::new();
        let mut commitments = Vec::new();
        let mut bad = Vec::new();
        let mut err = None;
        for (s, r) in fetched {
            match r {
                Ok(c) => {
                    commitments.push((s, c.commitment));
                    nonce_ids.insert(s, c.id);
                }
                Err(e) => {
                    bad.push(s);
                    err = Some(e);
                }
            }
        }
        if let Some(e) = err {
            return Err((bad, e));
        }
        let mut sid = [0u8; 32];
        OsRng.fill_bytes(&mut sid);
        with_suite!(record.suite, |C| {
            let group = self.group_key::<C>(record).map_err(|e| (vec![], e))?;
            let group: &GroupKey<C> = &group;
            let mut cs = Vec::with_capacity(commitments.len());
            for (s, c) in &commitments {
                let c = self
                    .known
                    .scope(|| decode::<SigningCommitment<C>>(&c.0, "nonce commitment", *s))
                    .map_err(|e| (vec![*s], e))?;
                if node_of(c.signer()) != *s {
                    return Err((
                        vec![*s],
                        NodeError::Misbehaved {
                            message: format!("node {s} sent another signer's commitment"),
                            culprits: vec![*s],
                        },
                    ));
                }
                cs.push(c);
            }
            let mut coordinator = sign::Coordinator::new(group, SessionId(sid), message, cs)
                .map_err(|e| (vec![], core_err(e)))?;
            let package = Hex(coordinator.package().to_bytes());
            let calls = infos.iter().map(|(s, i)| {
                let msg = PeerMessage::SignShare {
                    key: record.name.clone(),
                    epoch: record.epoch,
                    nonce: nonce_ids.get(s).cloned().unwrap_or_default(),
                    package: package.clone(),
                    request: request.clone(),
                };
                async move { (*s, node.call(*s, i, msg).await) }
            });
            let replies = join_all(calls).await;
            let mut bad = Vec::new();
            let mut err = None;
            for (s, r) in replies {
                match r {
                    Ok(PeerMessage::SignatureShare { share }) => {
                        let share = decode::<SignatureShare<C>>(&share.0, "signature share", s)
                            .map_err(|e| (vec![s], e))?;
                        coordinator
                            .receive(pid(s), share)
                            .map_err(|e| (vec![s], core_err(e)))?;
                    }
                    Ok(_) => {
                        bad.push(s);
                        err = Some(NodeError::Misbehaved {
                            message: format!("node {s} answered SignShare wrongly"),
                            culprits: vec![s],
                        });
                    }
                    Err(e) => {
                        bad.push(s);
                        err = Some(e);
                    }
                }
            }
            if let Some(e) = err {
                return Err((bad, e));
            }
            let sig = coordinator.finish().map_err(|e| {
                let culprits: Vec<NodeId> = e.culprits().iter().copied().map(node_of).collect();
                (culprits, core_err(e))
            })?;
            Ok(SignResponse {
                signature: Hex(sig.to_bytes()),
                signers: signers.to_vec(),
                epoch: record.epoch,
            })
        })
    }
}

/// The nonce whose encoding `secret` is, just removed from the vault: the
/// decoded copy `kept` at precomputation if it is this very nonce (compared
/// in constant time), else decoded from `secret` (the copy, if any, is
/// dropped and zeroized).
fn removed_nonce<C: KeySuite>(
    kept: Option<Box<SigningNonce<C>>>,
    secret: &[u8],
) -> Result<Box<SigningNonce<C>>, NodeError> {
    if let Some(n) = kept {
        if bool::from(n.to_secret_bytes().as_slice().ct_eq(secret)) {
            return Ok(n);
        }
    }
    SigningNonce::<C>::from_secret_bytes(secret)
        .map(Box::new)
        .map_err(|e| NodeError::Internal(e.to_string()))
}

/// The nonce in what [`Keys::take_nonce`] returned, if this start of the
/// node dealt it. A nonce is used only in the start that dealt it, and only
/// while the log's latest start of this node is this one: a vault restored
/// from a copy, or a clone of this node started since, never brings a
/// spent nonce back into use.
fn this_start<'s>(node: &Node, stored: &'s [u8]) -> Result<&'s [u8], NodeError> {
    match stored.split_at_checked(32) {
        Some((boot, secret)) if boot == node.boot().0 && node.boot_confirmed() => Ok(secret),
        _ => Err(NodeError::Conflict(
            "a nonce from another start of this node: never used".into(),
        )),
    }
}

/// Whether `signature` on `message` verifies under `public_key` with the
/// ordinary verifier of `suite` (RFC 8032 Ed25519, BIP-340).
pub fn verify_signature(
    suite: SuiteName,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    with_suite!(suite, |C| sign::verify::<C>(public_key, message, signature)
        .is_ok())
}
