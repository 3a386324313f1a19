//! Creating a key, the coordinator's side of a DKG (participants' side:
//! `keys::dkg`): the members' relayed rounds ([`Keys::dkg_rounds`], shared
//! with refresh), complaints settled (`keys::complaints`), a retry without
//! the members named as culprits only with the client's consent, and the
//! first generation committed with every member's endorsement.

use std::collections::BTreeMap;

use futures::future::join_all;
use keyquorum_core::codec::Decode;
use keyquorum_core::httpsig;
use keyquorum_core::GroupKey;
use keyquorum_wire::api::{KeyInfo, SuiteName};
use keyquorum_wire::control::{Endorsement, KeyRecord, KeysCommand, NodeInfo};
use keyquorum_wire::peer::{Envelope, PeerMessage};
use keyquorum_wire::{Hex, Hex32, NodeId};

use super::run::{check_broadcasts, gather_run, run_digest};
use super::suite::with_suite;
use super::{random_session, Keys};
use crate::api::auth::by_request;
use crate::cluster::peer::now_ms;
use crate::cluster::transport::clone_request;
use crate::cluster::Node;
use crate::error::NodeError;
use crate::names::check_key_name;

/// A key to create, as the client asked for it (defaults filled in).
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Its name.
    pub name: String,
    /// Its signature scheme.
    pub suite: SuiteName,
    /// Its threshold.
    pub threshold: u16,
    /// Its members.
    pub members: Vec<NodeId>,
    /// The client's consent to fewer members (see
    /// `CreateKeyRequest::min_members`).
    pub min_members: Option<u16>,
}

impl Keys {
    /// Run a DKG among the plan's members and commit the key. Members named
    /// as culprits are left out of a retry only while at least the
    /// threshold and the plan's `min_members` remain (without
    /// `min_members`, never).
    pub async fn create_key(
        &self,
        node: &Node,
        plan: NewKey,
        request: &httpsig::Request,
    ) -> Result<KeyInfo, NodeError> {
        self.create_with(node, plan, |record, endorsements| async move {
            node.commit(by_request(
                request,
                KeysCommand::PutKey {
                    record,
                    expected_epoch: None,
                    endorsements,
                },
            ))
            .await
            .map(|_| ())
        })
        .await
    }

    /// [`Keys::create_key`], with the key's first generation committed by
    /// `commit` (an encrypted-data session commits it with the session).
    pub(crate) async fn create_with<F, Fut>(
        &self,
        node: &Node,
        plan: NewKey,
        commit: F,
    ) -> Result<KeyInfo, NodeError>
    where
        F: Fn(KeyRecord, Vec<Endorsement>) -> Fut,
        Fut: std::future::Future<Output = Result<(), NodeError>>,
    {
        let NewKey {
            name,
            suite,
            threshold,
            mut members,
            min_members,
        } = plan;
        let name = name.as_str();
        check_key_name(name)?;
        members.sort_unstable();
        members.dedup();
        if threshold < 2 || usize::from(threshold) > members.len() {
            return Err(NodeError::BadRequest(format!(
                "threshold must be between 2 and the number of members ({})",
                members.len()
            )));
        }
        if node.registry(|r| r.keys.records.contains_key(name)) {
            return Err(NodeError::Conflict(format!("a key named {name} exists")));
        }
        let mut infos = Self::infos(node, &members)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .run_dkg(node, name, suite, threshold, &infos, &commit)
                .await
            {
                Ok(info) => return Ok(info),
                Err(NodeError::Misbehaved { message, culprits }) if attempt < 3 => {
                    node.audit_failure(
                        "peer",
                        "dkg.blame",
                        Some(name),
                        &format!("culprits {culprits:?}: {message}"),
                    );
                    for c in &culprits {
                        infos.remove(c);
                    }
                    // Only with the caller's consent to fewer members.
                    let floor = min_members.map_or(usize::MAX, usize::from);
                    if infos.len() < usize::from(threshold)
                        || infos.len() < floor
                        || culprits.is_empty()
                    {
                        return Err(NodeError::Misbehaved { message, culprits });
                    }
                    tracing::warn!(
                        key = name,
                        ?culprits,
                        "DKG blamed members; retrying without them"
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) async fn run_dkg<F, Fut>(
        &self,
        node: &Node,
        name: &str,
        suite: SuiteName,
        threshold: u16,
        infos: &BTreeMap<NodeId, NodeInfo>,
        commit: &F,
    ) -> Result<KeyInfo, NodeError>
    where
        F: Fn(KeyRecord, Vec<Endorsement>) -> Fut,
        Fut: std::future::Future<Output = Result<(), NodeError>>,
    {
        let session = random_session();
        let members: Vec<NodeId> = infos.keys().copied().collect();
        let start = PeerMessage::DkgStart {
            session,
            key: name.to_string(),
            suite,
            threshold,
            members: members.clone(),
        };
        let result = self.dkg_rounds(node, suite, infos, session, &start).await;
        if result.is_err() {
            // Best effort: tell everyone to drop the run.
            let abort = PeerMessage::Abort { session };
            let calls = infos.iter().map(|(m, i)| node.call_signed(*m, i, &abort));
            let _ = join_all(calls).await;
        }
        let (group_bytes, public_key, endorsements) = result?;
        // A hostile coordinator (test hook) commits another key's group key.
        let (group_bytes, public_key) = self
            .faults
            .substitute_group_key(node)
            .unwrap_or((group_bytes, public_key));
        let record = KeyRecord {
            name: name.to_string(),
            suite,
            threshold,
            members: members.clone(),
            public_key: Hex(public_key.clone()),
            group_key: Hex(group_bytes),
            epoch: 1,
            session,
            created_ms: now_ms(),
        };
        commit(record, endorsements).await?;
        Ok(KeyInfo {
            name: name.to_string(),
            suite,
            threshold,
            members,
            public_key: Hex(public_key),
            epoch: 1,
        })
    }

    /// The three relayed rounds of a two-round protocol (DKG or refresh),
    /// opened by `start`; returns the group key every member agreed on and
    /// its public key, with each member's endorsement of it.
    pub(crate) async fn dkg_rounds(
        &self,
        node: &Node,
        suite: SuiteName,
        infos: &BTreeMap<NodeId, NodeInfo>,
        session: Hex32,
        start: &PeerMessage,
    ) -> Result<(Vec<u8>, Vec<u8>, Vec<Endorsement>), NodeError> {
        // DKG: the coordinator checks what it can itself and settles
        // complaints, so a member's word against another is not taken.
        // Refresh (no complaints, no exclusions): members' errors as they are.
        let checked = matches!(start, PeerMessage::DkgStart { .. });
        let round1 = gather_run(node, infos, checked, |_| clone_request(start).ok()).await?;
        let run = match start {
            PeerMessage::DkgStart {
                key,
                threshold,
                members,
                ..
            } => {
                // Round-1 broadcasts are public and signed: the coordinator
                // checks them itself, so no member need accuse anyone of
                // one; and from them it knows the run every honest member
                // is in.
                let transcript = check_broadcasts(suite, session, *threshold, members, &round1)?;
                Some(run_digest(&transcript, key, suite, node.id()))
            }
            _ => None,
        };
        let round2 = gather_run(node, infos, checked, |m| {
            Some(PeerMessage::DkgRound2 {
                session,
                round1: round1
                    .iter()
                    .filter(|(k, _)| **k != m)
                    .map(|(_, (e, _))| e.clone())
                    .collect(),
            })
        })
        .await?;
        if let Some(run) = run {
            let wrong: Vec<NodeId> = round2
                .iter()
                .filter(|(_, (_, msg))| {
                    !matches!(msg, PeerMessage::DkgShares { session: s, run: r, .. }
                        if *s == session && *r == run)
                })
                .map(|(m, _)| *m)
                .collect();
            if !wrong.is_empty() {
                return Err(NodeError::Misbehaved {
                    message: format!("{wrong:?} signed round-2 messages for another run"),
                    culprits: wrong,
                });
            }
        }
        let mut done = gather_run(node, infos, checked, |m| {
            Some(PeerMessage::DkgFinish {
                session,
                round2: round2
                    .iter()
                    .filter(|(k, _)| **k != m)
                    .map(|(_, (e, _))| e.clone())
                    .collect(),
            })
        })
        .await?;
        let complaints: BTreeMap<NodeId, (Envelope, PeerMessage)> = done
            .iter()
            .filter(|(_, (_, msg))| matches!(msg, PeerMessage::DkgComplaint { .. }))
            .map(|(m, (env, msg))| Ok((*m, (env.clone(), clone_request(msg)?))))
            .collect::<Result<_, NodeError>>()?;
        if !complaints.is_empty() {
            let (PeerMessage::DkgStart { key, .. }, Some(run)) = (start, run) else {
                return Err(NodeError::Misbehaved {
                    message: "a refresh member sent a DKG complaint".into(),
                    culprits: complaints.keys().copied().collect(),
                });
            };
            let resolved = self
                .settle_complaints(node, key, suite, infos, session, run, &round1, complaints)
                .await?;
            done.extend(resolved);
        }
        let mut agreed: Option<Vec<u8>> = None;
        let mut endorsements = Vec::with_capacity(done.len());
        for (m, (_, msg)) in &done {
            let PeerMessage::DkgDone {
                group_key,
                endorsement,
                ..
            } = msg
            else {
                return Err(NodeError::Misbehaved {
                    message: format!("node {m} answered DkgFinish with the wrong message"),
                    culprits: vec![*m],
                });
            };
            endorsements.push(Endorsement {
                node: *m,
                signature: endorsement.clone(),
            });
            match &agreed {
                None => agreed = Some(group_key.0.clone()),
                Some(g) if *g == group_key.0 => {}
                Some(_) => {
                    return Err(NodeError::Misbehaved {
                        message: "members computed different group keys".into(),
                        culprits: vec![*m],
                    })
                }
            }
        }
        let group_bytes = agreed.ok_or_else(|| NodeError::Internal("no members".into()))?;
        let public_key = with_suite!(suite, |C| {
            GroupKey::<C>::from_bytes(&group_bytes)
                .map_err(|e| NodeError::Internal(format!("group key: {e}")))?
                .public_key_bytes()
        });
        Ok((group_bytes, public_key, endorsements))
    }
}
