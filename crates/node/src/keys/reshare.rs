//! Reshare to a new threshold and member set, new nodes included (core
//! `reshare`, Desmedt–Jajodia redistribution with Feldman commitments),
//! and what every generation change ends with: retiring the old shares.
//!
//! The coordinator picks `t` reachable old holders as dealers
//! and sends each a `ReshareDeal`; a dealer re-deals its share on a fresh
//! polynomial of degree `t' − 1` and returns one sub-share per new member,
//! HPKE-sealed to that member. The coordinator relays every dealer's signed
//! reply to every new member in `ReshareReceive`; each checks the dealers'
//! commitments against their old public shares, derives its share, stores it
//! as *pending* and reports the new group key and a transcript hash. Only
//! when every new member agrees is generation `epoch + 1` committed through
//! Raft (compare-and-set on the epoch); then holders are told
//! (`EpochCommitted`) to promote their new share and erase older generations.
//! Until that commit the old shares stay in place and keep signing, so an
//! interrupted run leaves the key exactly as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::future::join_all;
use keyquorum_core::codec::{Decode, Encode};
use keyquorum_core::httpsig;
use keyquorum_core::{reshare, GroupKey, KeyShare, SessionId};
use keyquorum_wire::api::{KeyInfo, ReshareRequest, SuiteName};
use keyquorum_wire::control::{key_statement, Endorsement, KeyRecord, KeysCommand, NodeInfo};
use keyquorum_wire::peer::{ClientRequest, Envelope, PeerMessage, ResharePlan};
use keyquorum_wire::{Hex, Hex32, NodeId};
use rand_core::OsRng;

use super::shares::pending_slot;
use super::suite::with_suite;
use super::{
    core_err, decode, gather, key_info, key_record, me_first, open_mine, pid, random_session,
    record_at, seal_all, Keys,
};
use crate::api::auth::{by_request, check_forwarded, check_sent_to, forwarded};
use crate::cluster::peer::now_ms;
use crate::cluster::Node;
use crate::error::NodeError;

/// Attempts of a reshare (dealers that fail are replaced).
const RESHARE_ATTEMPTS: usize = 3;

fn public_key_of(suite: SuiteName, group: &[u8]) -> Result<Vec<u8>, NodeError> {
    Ok(with_suite!(suite, |C| {
        GroupKey::<C>::from_bytes(group)
            .map_err(|e| NodeError::Internal(format!("group key: {e}")))?
            .public_key_bytes()
    }))
}

fn plan_params(plan: &ResharePlan, session: Hex32) -> Result<reshare::ReshareParams, NodeError> {
    let dealers: BTreeSet<_> = plan.dealers.iter().map(|d| pid(*d)).collect();
    let members: BTreeSet<_> = plan.members.iter().map(|m| pid(*m)).collect();
    if dealers.len() != plan.dealers.len() || members.len() != plan.members.len() {
        return Err(NodeError::BadRequest(
            "dealers and members must be distinct".into(),
        ));
    }
    Ok(reshare::ReshareParams {
        session: SessionId(session.0),
        dealers,
        new_threshold: plan.threshold,
        new_members: members,
    })
}

impl Keys {
    // ----- participant side -------------------------------------------------

    /// A dealer re-deals its share of `plan.key` at `plan.epoch`, only for
    /// an admin's request to reshare this key to exactly the plan's
    /// threshold and members (checked here), which drives one reshare:
    /// its attempts (one session each), never another reshare.
    pub(super) async fn reshare_deal(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        plan: &ResharePlan,
        request: &ClientRequest,
    ) -> Result<PeerMessage, NodeError> {
        self.authorize_reshare(node, from, plan, session, request)
            .await?;
        self.deal_authorized(node, session, plan)
    }

    /// A dealer re-deals its share of account `account`'s reset key for the
    /// account's rotation, only for a client's request (an admin, or the
    /// client with the `recovery` permission that enrolled the account,
    /// `created_by`), sent to `from`, `POST
    /// /v1/recovery/accounts/{account}/rotate`, whose guardians and
    /// threshold as this replica computes them from the verified body
    /// (`asked`, by `crate::recovery::authority::rotate_shape`) are the
    /// plan's; one rotation per request, its attempts only.
    #[allow(
        clippy::too_many_arguments,
        reason = "one peer message's fields and the shape the caller computed"
    )]
    pub(crate) fn reshare_deal_for_rotation(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        plan: &ResharePlan,
        request: &ClientRequest,
        account: &str,
        created_by: &str,
        asked: impl FnOnce(&[u8]) -> Result<(Vec<NodeId>, u16), String>,
    ) -> Result<PeerMessage, NodeError> {
        let refuse = |why: String| NodeError::Forbidden(format!("rotation refused: {why}"));
        if plan.key != keyquorum_wire::recovery::key_name(account) {
            return Err(refuse(format!("{} is not {account}'s reset key", plan.key)));
        }
        let a = check_forwarded(node, request)?;
        check_sent_to(node, &request.target_uri, from).map_err(refuse)?;
        if !(a.grant.admin || (a.grant.recovery && a.grant.name == created_by)) {
            return Err(refuse(format!(
                "client {} is neither an admin nor the client that enrolled {account}",
                a.grant.name
            )));
        }
        if a.method != "POST" || a.path != format!("/v1/recovery/accounts/{account}/rotate") {
            return Err(refuse(format!(
                "the client's request is {} {}, not a rotation of {account}",
                a.method, a.path
            )));
        }
        // The shape this replica computes from the verified body.
        let asked = asked(&a.body).map_err(refuse)?;
        let members = |m: &[NodeId]| m.iter().copied().collect::<BTreeSet<_>>();
        if asked.1 != plan.threshold || members(&asked.0) != members(&plan.members) {
            return Err(refuse(
                "the plan's guardians or threshold are not the ones the account's rotation asks for"
                    .into(),
            ));
        }
        let operation = format!(
            "rotate {} from epoch {} to {}-of-{:?} coordinated by node {from}",
            plan.key,
            plan.epoch,
            plan.threshold,
            members(&plan.members)
        );
        self.ledger
            .record(&a, &operation, &hex::encode(session.0), RESHARE_ATTEMPTS)?;
        self.deal_authorized(node, session, plan)
    }

    /// The deal itself, once the caller authorized it.
    fn deal_authorized(
        &self,
        node: &Node,
        session: Hex32,
        plan: &ResharePlan,
    ) -> Result<PeerMessage, NodeError> {
        let record = Self::record(node, &plan.key, plan.epoch)?;
        if !plan.dealers.contains(&node.id()) {
            return Err(NodeError::BadRequest(
                "this node is not a dealer of the run".into(),
            ));
        }
        let params = plan_params(plan, session)?;
        let share_bytes = self.share_bytes(node, &record)?;
        let out = with_suite!(record.suite, |C| {
            let group = GroupKey::<C>::from_bytes(&record.group_key.0)
                .map_err(|e| NodeError::Internal(format!("stored group key: {e}")))?;
            let share = KeyShare::<C>::from_secret_bytes(&share_bytes)
                .map_err(|e| NodeError::Internal(e.to_string()))?;
            reshare::deal::<C, _>(&params, &group, &share, &mut OsRng)
                .map_err(core_err)?
                .into_iter()
                .map(|(to, m)| (to, m.to_bytes()))
                .collect::<Vec<_>>()
        });
        let shares = seal_all(node, &session, out)?;
        Ok(PeerMessage::ReshareDealt { session, shares })
    }

    /// Whether `request` is an admin's request, sent to `from`, to reshare
    /// `plan.key` to `plan`'s threshold and members; recorded as one
    /// operation of at most [`RESHARE_ATTEMPTS`] runs.
    async fn authorize_reshare(
        &self,
        node: &Node,
        from: NodeId,
        plan: &ResharePlan,
        session: Hex32,
        request: &ClientRequest,
    ) -> Result<(), NodeError> {
        let refuse = |why: String| NodeError::Forbidden(format!("reshare refused: {why}"));
        // An account's guardians move with the account, never under it.
        if keyquorum_wire::recovery::is_reset_key(&plan.key)
            || keyquorum_wire::recovery::is_pin_key(&plan.key)
        {
            return Err(refuse(format!(
                "{} is an account's reset or PIN key",
                plan.key
            )));
        }
        let a = check_forwarded(node, request)?;
        check_sent_to(node, &request.target_uri, from).map_err(refuse)?;
        if !a.grant.admin {
            return Err(refuse(format!("client {} is not an admin", a.grant.name)));
        }
        if a.method != "POST" || a.path != format!("/v1/keys/{}/reshare", plan.key) {
            return Err(refuse(format!(
                "the client's request is {} {}, not a reshare of {}",
                a.method, a.path, plan.key
            )));
        }
        let asked: ReshareRequest = serde_json::from_slice(&a.body)
            .map_err(|e| refuse(format!("the client's request body does not parse: {e}")))?;
        let members = |m: &[NodeId]| m.iter().copied().collect::<BTreeSet<_>>();
        if asked.threshold != plan.threshold || members(&asked.members) != members(&plan.members) {
            return Err(refuse(
                "the plan's threshold or members are not the ones the client asked for".into(),
            ));
        }
        // The approval that allows this plan (a policy, a drain) may be
        // committed but not applied here yet, or voided since (a drain
        // cancelled, a node removed): for the admin's own request, catch
        // up with the leader before deciding (a reshare is rare: one read
        // barrier per deal). The decision is still this replica's.
        node.read_barrier().await?;
        policy_allowed(node, &plan.key, plan.threshold, &plan.members).map_err(refuse)?;
        let operation = format!(
            "reshare {} from epoch {} to {}-of-{:?} coordinated by node {from}",
            plan.key,
            plan.epoch,
            plan.threshold,
            members(&plan.members)
        );
        self.ledger
            .record(&a, &operation, &hex::encode(session.0), RESHARE_ATTEMPTS)
    }

    /// A new member takes the dealers' sub-shares and derives its new share
    /// (stored pending until the generation is committed).
    pub(super) fn reshare_receive(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        plan: &ResharePlan,
        deals: &[Envelope],
    ) -> Result<PeerMessage, NodeError> {
        let me = node.id();
        if !plan.members.contains(&me) {
            return Err(NodeError::BadRequest(
                "this node is not a new member of the run".into(),
            ));
        }
        let record = record_at(node, &plan.key, plan.epoch)?;
        let params = plan_params(plan, session)?;
        let mut received = Vec::with_capacity(deals.len());
        for env in deals {
            let (origin, msg) = self.relayed(node, from, &plan.dealers, env)?;
            let PeerMessage::ReshareDealt {
                session: sid,
                shares,
            } = msg
            else {
                return Err(NodeError::BadRequest(
                    "expected a ReshareDealt message".into(),
                ));
            };
            if sid != session {
                return Err(NodeError::BadRequest("deal from another session".into()));
            }
            received.push((
                origin,
                open_mine(node, &session, origin, &shares, "dealer", "sub-share")?,
            ));
        }
        let (share, group, transcript) = with_suite!(record.suite, |C| {
            let old = GroupKey::<C>::from_bytes(&record.group_key.0)
                .map_err(|e| NodeError::Internal(format!("stored group key: {e}")))?;
            let mut r = reshare::Receiver::<C>::new(params, pid(me), old).map_err(core_err)?;
            for (origin, plain) in &received {
                let m = decode::<reshare::DealMessage<C>>(plain, "reshare sub-share", *origin)?;
                r.receive(pid(*origin), m).map_err(core_err)?;
            }
            let out = r.finish().map_err(core_err)?;
            (
                out.share.to_secret_bytes(),
                out.group.to_bytes(),
                out.transcript,
            )
        });
        let slot = pending_slot(&plan.key, plan.epoch + 1, &session);
        self.store_pending(node, &session, from, slot, &share, &group)?;
        let endorsement =
            node.keys()
                .sign(&key_statement(&plan.key, plan.epoch + 1, &session, &group));
        Ok(PeerMessage::ReshareDone {
            session,
            group_key: Hex(group),
            transcript: Hex32(transcript),
            endorsement: Hex(endorsement.to_vec()),
        })
    }

    /// Generation `epoch` of `key` is committed: promote this node's share
    /// and erase older generations. Waits (briefly) for the local registry to
    /// catch up; erases nothing on the coordinator's word alone.
    pub(crate) async fn retire(&self, node: &Node, key: &str, epoch: u64) -> Result<(), NodeError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let record = loop {
            let r = node.registry(|r| r.keys.records.get(key).cloned());
            match r {
                Some(r) if r.epoch >= epoch => break r,
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(NodeError::Unavailable(format!(
                        "generation {epoch} of {key} has not reached this node"
                    )))
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        if record.members.contains(&node.id()) {
            self.share_bytes(node, &record)?;
        }
        self.erase_older(node, &record)?;
        Ok(())
    }

    // ----- coordinator side -------------------------------------------------

    /// Commit generation `record.epoch` (compare-and-set on `expected`) and
    /// tell `notify` to retire the older ones.
    pub(super) async fn commit_generation(
        &self,
        node: &Node,
        record: KeyRecord,
        expected: u64,
        notify: &[NodeId],
        request: &httpsig::Request,
        endorsements: Vec<Endorsement>,
    ) -> Result<KeyInfo, NodeError> {
        let name = record.name.clone();
        let epoch = record.epoch;
        let info = key_info(&record);
        node.commit(by_request(
            request,
            KeysCommand::PutKey {
                record,
                expected_epoch: Some(expected),
                endorsements,
            },
        ))
        .await?;
        self.notify_generation(node, &name, epoch, notify).await;
        Ok(info)
    }

    /// Tell `notify` that generation `epoch` of `name` is committed, so they
    /// retire the older ones (best effort: holders also promote on first
    /// use and tidy at start).
    pub(super) async fn notify_generation(
        &self,
        node: &Node,
        name: &str,
        epoch: u64,
        notify: &[NodeId],
    ) {
        let name = name.to_string();
        let infos: BTreeMap<NodeId, NodeInfo> = notify
            .iter()
            .filter_map(|m| node.node_info(*m).map(|i| (*m, i)))
            .collect();
        let msg = PeerMessage::EpochCommitted { key: name, epoch };
        let calls = infos.iter().map(|(m, i)| node.call_signed(*m, i, &msg));
        for r in join_all(calls).await {
            if let Err(e) = r {
                tracing::warn!(error = %e, "a holder did not confirm the new generation");
            }
        }
    }

    /// Reshare `name` to `threshold`-of-`members` under the same public key.
    pub async fn reshare_key(
        &self,
        node: &Node,
        name: &str,
        threshold: u16,
        members: Vec<NodeId>,
        request: &httpsig::Request,
    ) -> Result<KeyInfo, NodeError> {
        self.reshare_with(
            node,
            name,
            threshold,
            members,
            request,
            true,
            |record, expected, endorsements| async move {
                node.commit(by_request(
                    request,
                    KeysCommand::PutKey {
                        record,
                        expected_epoch: Some(expected),
                        endorsements,
                    },
                ))
                .await
                .map(|_| ())
            },
        )
        .await
    }

    /// Reshare `name` to `threshold`-of-`members` under the same public key
    /// and commit the new generation with `commit(record, expected epoch,
    /// endorsements)` (a key's `PutKey`, or an account's rotation). With
    /// `policy`, the change needs the key's operator-approved policy (an
    /// account's guardians follow its rotation rule instead). Each dealer
    /// checks the client's request for itself.
    #[allow(
        clippy::too_many_arguments,
        reason = "the reshare's target, its request, and how to commit it"
    )]
    pub(crate) async fn reshare_with<F, Fut>(
        &self,
        node: &Node,
        name: &str,
        threshold: u16,
        mut members: Vec<NodeId>,
        request: &httpsig::Request,
        policy: bool,
        commit: F,
    ) -> Result<KeyInfo, NodeError>
    where
        F: Fn(KeyRecord, u64, Vec<Endorsement>) -> Fut,
        Fut: std::future::Future<Output = Result<(), NodeError>>,
    {
        let record = key_record(node, name).await?;
        members.sort_unstable();
        members.dedup();
        if threshold < 2 || usize::from(threshold) > members.len() {
            return Err(NodeError::BadRequest(format!(
                "threshold must be between 2 and the number of members ({})",
                members.len()
            )));
        }
        let new_infos = Self::infos(node, &members)?;
        if policy {
            policy_allowed(node, name, threshold, &members).map_err(NodeError::Forbidden)?;
        }
        // Dealers: this node first if it holds a share, then the others.
        let candidates = me_first(&record.members, node.id(), 0);
        let t = usize::from(record.threshold);
        let mut failed: BTreeSet<NodeId> = BTreeSet::new();
        let mut last = None;
        for _ in 0..RESHARE_ATTEMPTS {
            let dealers: Vec<NodeId> = candidates
                .iter()
                .copied()
                .filter(|d| !failed.contains(d))
                .take(t)
                .collect();
            if dealers.len() < t {
                break;
            }
            let plan = ResharePlan {
                key: name.to_string(),
                epoch: record.epoch,
                dealers: dealers.clone(),
                threshold,
                members: members.clone(),
            };
            match self
                .reshare_once(node, &record, &plan, &new_infos, request)
                .await
            {
                Ok((group_key, session, endorsements)) => {
                    let next = KeyRecord {
                        threshold,
                        members: members.clone(),
                        group_key: Hex(group_key),
                        epoch: record.epoch + 1,
                        session,
                        created_ms: now_ms(),
                        ..record.clone()
                    };
                    let notify: Vec<NodeId> = record
                        .members
                        .iter()
                        .chain(members.iter())
                        .copied()
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    let info = key_info(&next);
                    commit(next, record.epoch, endorsements).await?;
                    self.notify_generation(node, name, record.epoch + 1, &notify)
                        .await;
                    return Ok(info);
                }
                Err((bad, e)) => {
                    let bad: Vec<NodeId> =
                        bad.into_iter().filter(|b| dealers.contains(b)).collect();
                    if bad.is_empty() {
                        return Err(e);
                    }
                    node.audit_failure(
                        "peer",
                        "reshare.blame",
                        Some(name),
                        &format!("dealers {bad:?} failed: {e}"),
                    );
                    tracing::warn!(key = name, ?bad, error = %e, "reshare dealers failed; retrying with others");
                    failed.extend(bad);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            NodeError::Unavailable(format!("fewer than {t} holders of {name} are reachable"))
        }))
    }

    /// One reshare attempt; on failure, the dealers to blame (if any). A
    /// failed attempt is aborted: members that have not stored their new
    /// share yet never will; shares already stored (and endorsed) wait
    /// until a later generation supersedes them.
    pub(super) async fn reshare_once(
        &self,
        node: &Node,
        record: &KeyRecord,
        plan: &ResharePlan,
        new_infos: &BTreeMap<NodeId, NodeInfo>,
        request: &httpsig::Request,
    ) -> Result<Generation, (Vec<NodeId>, NodeError)> {
        let session = random_session();
        let result = self
            .reshare_attempt(node, record, plan, new_infos, session, request)
            .await;
        if result.is_err() {
            let abort = PeerMessage::Abort { session };
            let _ = join_all(
                new_infos
                    .iter()
                    .map(|(m, i)| node.call_signed(*m, i, &abort)),
            )
            .await;
        }
        result
    }

    pub(super) async fn reshare_attempt(
        &self,
        node: &Node,
        record: &KeyRecord,
        plan: &ResharePlan,
        new_infos: &BTreeMap<NodeId, NodeInfo>,
        session: Hex32,
        request: &httpsig::Request,
    ) -> Result<Generation, (Vec<NodeId>, NodeError)> {
        let dealer_infos = Self::infos(node, &plan.dealers).map_err(|e| (vec![], e))?;
        let request = forwarded(request);
        let calls = dealer_infos.iter().map(|(d, i)| {
            let msg = PeerMessage::ReshareDeal {
                session,
                plan: plan.clone(),
                request: request.clone(),
            };
            async move { (*d, node.call_signed(*d, i, &msg).await) }
        });
        let mut deals = Vec::new();
        let mut bad = Vec::new();
        let mut err = None;
        for (d, r) in join_all(calls).await {
            match r {
                Ok((env, PeerMessage::ReshareDealt { .. })) => deals.push(env),
                Ok(_) => {
                    bad.push(d);
                    err = Some(NodeError::Misbehaved {
                        message: format!("dealer {d} answered ReshareDeal wrongly"),
                        culprits: vec![d],
                    });
                }
                Err(e) => {
                    bad.push(d);
                    err = Some(e);
                }
            }
        }
        if let Some(e) = err {
            return Err((bad, e));
        }
        let done = gather(node, new_infos, |_| {
            Some(PeerMessage::ReshareReceive {
                session,
                plan: plan.clone(),
                deals: deals.clone(),
            })
        })
        .await
        .map_err(|e| {
            let culprits = match &e {
                NodeError::Misbehaved { culprits, .. } => culprits.clone(),
                _ => vec![],
            };
            (culprits, e)
        })?;
        let mut agreed: Option<(Vec<u8>, Hex32)> = None;
        let mut endorsements = Vec::with_capacity(done.len());
        for (m, (_, msg)) in &done {
            let PeerMessage::ReshareDone {
                group_key,
                transcript,
                endorsement,
                ..
            } = msg
            else {
                return Err((
                    vec![],
                    NodeError::Misbehaved {
                        message: format!("node {m} answered ReshareReceive wrongly"),
                        culprits: vec![*m],
                    },
                ));
            };
            endorsements.push(Endorsement {
                node: *m,
                signature: endorsement.clone(),
            });
            match &agreed {
                None => agreed = Some((group_key.0.clone(), *transcript)),
                Some((g, tr)) if *g == group_key.0 && tr == transcript => {}
                Some(_) => {
                    // Different views of the dealers' commitments: some dealer
                    // equivocated; every dealer is suspect.
                    return Err((
                        plan.dealers.clone(),
                        NodeError::Misbehaved {
                            message: "new members saw different dealer commitments".into(),
                            culprits: plan.dealers.clone(),
                        },
                    ));
                }
            }
        }
        let (group_key, _) =
            agreed.ok_or_else(|| (vec![], NodeError::Internal("no new members".into())))?;
        let public_key = public_key_of(record.suite, &group_key).map_err(|e| (vec![], e))?;
        if public_key != record.public_key.0 {
            return Err((
                vec![],
                NodeError::Internal("reshare changed the public key; not committed".into()),
            ));
        }
        Ok((group_key, session, endorsements))
    }
}

/// A finished reshare: the new group key, the run, the new members'
/// endorsements of it.
type Generation = (Vec<u8>, Hex32, Vec<Endorsement>);

/// Whether this replica allows key `key` a reshare to `threshold` over
/// `members`: its policy unchanged, or changed as the operator quorum
/// approved (DESIGN.md §4 item 4).
fn policy_allowed(
    node: &Node,
    key: &str,
    threshold: u16,
    members: &[NodeId],
) -> Result<(), String> {
    // A session's key goes only to members whose measurement the session
    // allows (apply checks it too; here no share is dealt to one first).
    let unattested = node.registry(|r| {
        key.strip_prefix(keyquorum_wire::he::KEY_PREFIX)
            .and_then(|s| r.he.sessions.get(s))
            .map_or_else(Vec::new, |s| {
                crate::he::state::unattested(&s.record, members, &r.attested)
            })
    });
    if !unattested.is_empty() {
        return Err(format!(
            "nodes {unattested:?} have not stated a measurement session {key} allows"
        ));
    }
    if node.registry(|r| r.policy_allows(key, threshold, members)) {
        Ok(())
    } else {
        Err(format!(
            "a new threshold or member set for {key} needs the operator quorum's approval \
             (keyquorum key policy {key} --threshold {threshold} --members ..., then keyquorum approve ID)"
        ))
    }
}
