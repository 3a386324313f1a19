//! Proactive refresh (core `refresh`): every member re-randomises its share
//! through the DKG's relayed rounds ([`Keys::dkg_rounds`]) behind a
//! `RefreshStart`. Every member must take part; the result is committed as
//! generation `epoch + 1` with the same public key, and the old shares are
//! erased once it is.

use std::time::Instant;

use futures::future::join_all;
use keyquorum_core::codec::{Decode, Encode};
use keyquorum_core::httpsig;
use keyquorum_core::{refresh, GroupKey, KeyShare, SessionId};
use keyquorum_wire::api::KeyInfo;
use keyquorum_wire::control::KeyRecord;
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::{Hex, Hex32, NodeId};
use rand_core::OsRng;

use super::dkg::{DkgSession, Phase, Phases};
use super::suite::{with_suite, KeySuite};
use super::{core_err, key_record, random_session, Keys};
use crate::cluster::peer::now_ms;
use crate::cluster::Node;
use crate::error::NodeError;

impl Keys {
    /// Refresh round 1: start refreshing this node's share of `key` at `epoch`.
    pub(super) fn refresh_start(
        &self,
        node: &Node,
        from: NodeId,
        session: Hex32,
        key: &str,
        epoch: u64,
    ) -> Result<PeerMessage, NodeError> {
        let record = Self::record(node, key, epoch)?;
        let share_bytes = self.share_bytes(node, &record)?;
        let (phase, message) = with_suite!(record.suite, |C| {
            let group = GroupKey::<C>::from_bytes(&record.group_key.0)
                .map_err(|e| NodeError::Internal(format!("stored group key: {e}")))?;
            let share = KeyShare::<C>::from_secret_bytes(&share_bytes)
                .map_err(|e| NodeError::Internal(e.to_string()))?;
            let (state, msg) =
                refresh::start::<C, _>(SessionId(session.0), &group, share, &mut OsRng)
                    .map_err(core_err)?;
            (C::wrap::<Phases>(Phase::Refresh1(state)), msg.to_bytes())
        });
        self.open_session(
            &session,
            DkgSession {
                target: (key.to_string(), epoch + 1),
                coordinator: from,
                members: record.members.clone(),
                started: Instant::now(),
                phase,
                run: None,
            },
            "session already started",
        )?;
        Ok(PeerMessage::DkgRound1 {
            session,
            message: Hex(message),
        })
    }

    /// Refresh every member's share of `name` (same key, same members).
    pub async fn refresh_key(
        &self,
        node: &Node,
        name: &str,
        request: &httpsig::Request,
    ) -> Result<KeyInfo, NodeError> {
        let record = key_record(node, name).await?;
        let infos = Self::infos(node, &record.members)?;
        let session = random_session();
        let start = PeerMessage::RefreshStart {
            session,
            key: name.to_string(),
            epoch: record.epoch,
        };
        let result = self
            .dkg_rounds(node, record.suite, &infos, session, &start)
            .await;
        // A hostile coordinator (test hook) says abort after the members
        // endorsed the run, then commits it anyway.
        if result.is_err() || self.faults.abort_then_commit() {
            let abort = PeerMessage::Abort { session };
            let _ = join_all(infos.iter().map(|(m, i)| node.call_signed(*m, i, &abort))).await;
        }
        let (group_key, public_key, endorsements) = result?;
        if public_key != record.public_key.0 {
            return Err(NodeError::Internal(
                "refresh changed the public key; not committed".into(),
            ));
        }
        let next = KeyRecord {
            group_key: Hex(group_key),
            epoch: record.epoch + 1,
            session,
            created_ms: now_ms(),
            ..record.clone()
        };
        self.commit_generation(
            node,
            next,
            record.epoch,
            &record.members,
            request,
            endorsements,
        )
        .await
    }
}
