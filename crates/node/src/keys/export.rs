//! Export (core `hazmat`): the approved temporary reconstruction of a key.
//!
//! An export request names the requester's X25519 key; `t` operators other
//! than the requester approve it through Raft. The coordinator then marks
//! it carried out (once), and each of `t` holders — each checking the
//! committed approvals itself and releasing its share at most once per
//! export — seals its share to the coordinator, which rebuilds the key,
//! seals it to the requester's key and zeroizes it at once.

use keyquorum_core::codec::Decode;
use keyquorum_core::httpsig;
use keyquorum_core::{hazmat, GroupKey, KeyShare};
use keyquorum_store::Table;
use keyquorum_wire::api::{export_aad, ExportResult, EXPORT_HPKE_INFO};
use keyquorum_wire::control::{ExportRecord, KeysCommand};
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::{Hex, Hex32, NodeId};
use sha2::{Digest, Sha256};

use super::suite::with_suite;
use super::{core_err, key_record, me_first, Keys};
use crate::api::auth::by_request;
use crate::cluster::peer::{open_secret, seal_secret, seal_to};
use crate::cluster::Node;
use crate::error::NodeError;

/// The HPKE session binding of an export's shares.
fn export_session(id: &str) -> Hex32 {
    let mut h = Sha256::new();
    h.update(b"keyquorum/export-share/v1\x00");
    h.update(id.as_bytes());
    Hex32(h.finalize().into())
}

fn released_slot(id: &str) -> Vec<u8> {
    format!("export-released/{id}").into_bytes()
}

impl Keys {
    /// Release this node's share for an approved export, sealed to `from`.
    pub(super) fn export_share(
        &self,
        node: &Node,
        from: NodeId,
        id: &str,
    ) -> Result<PeerMessage, NodeError> {
        let export = node
            .registry(|r| r.keys.exports.get(id).cloned())
            .ok_or_else(|| NodeError::NotFound(format!("no export {id}")))?;
        // The node checks the committed policy itself rather than trusting
        // the coordinator: approved by enough operators and marked carried out.
        if !export.done || export.approvals.len() < usize::from(export.needed) {
            return Err(NodeError::Forbidden(format!(
                "export {id} is not approved and started"
            )));
        }
        let record = Self::record(node, &export.key, export.epoch)?;
        if node
            .vault()
            .get(Table::Identity, &released_slot(id))?
            .is_some()
        {
            return Err(NodeError::Conflict(format!(
                "this node already released its share for export {id}"
            )));
        }
        let share = self.share_bytes(node, &record)?;
        let info = node
            .node_info(from)
            .ok_or_else(|| NodeError::BadRequest(format!("unknown node {from}")))?;
        let sealed = seal_secret(&export_session(id), node.id(), from, &info, &share)?;
        // Durable before the share leaves.
        node.vault()
            .put(Table::Identity, &released_slot(id), b"1")?;
        node.audit_event(
            &format!("peer:{from}"),
            "export.release",
            Some(&export.key),
            &format!("share released for export {id}"),
        );
        Ok(PeerMessage::ExportedShare {
            id: id.to_string(),
            share: sealed,
        })
    }

    /// Carry out an approved export: gather `t` shares, rebuild the key,
    /// seal it to the requester and zeroize it.
    pub async fn run_export(
        &self,
        node: &Node,
        id: &str,
        request: &httpsig::Request,
    ) -> Result<ExportResult, NodeError> {
        let export: ExportRecord = node
            .registry(|r| r.keys.exports.get(id).cloned())
            .ok_or_else(|| NodeError::NotFound(format!("no export {id}")))?;
        let record = key_record(node, &export.key).await?;
        if record.epoch != export.epoch {
            return Err(NodeError::Conflict(format!(
                "key {} moved to epoch {} after the export was requested",
                record.name, record.epoch
            )));
        }
        node.commit(by_request(
            request,
            KeysCommand::CompleteExport { id: id.to_string() },
        ))
        .await?;
        let me = node.id();
        let order = me_first(&record.members, me, 0);
        let t = usize::from(record.threshold);
        let session = export_session(id);
        let mut opened = Vec::new();
        for m in order {
            if opened.len() == t {
                break;
            }
            let Some(info) = node.node_info(m) else {
                continue;
            };
            match node
                .call_signed(m, &info, &PeerMessage::ExportShare { id: id.to_string() })
                .await
            {
                Ok((_, PeerMessage::ExportedShare { share, .. })) => {
                    opened.push((m, open_secret(node.keys(), &session, m, me, &share)?));
                }
                Ok(_) => tracing::warn!(node = %m, "wrong answer to ExportShare"),
                Err(e) => tracing::warn!(node = %m, error = %e, "share not released"),
            }
        }
        if opened.len() < t {
            return Err(NodeError::Unavailable(format!(
                "only {} of the {t} shares needed were released",
                opened.len()
            )));
        }
        let aad = export_aad(id, &record.name, record.epoch);
        let (enc, ciphertext) = with_suite!(record.suite, |C| {
            let group = GroupKey::<C>::from_bytes(&record.group_key.0)
                .map_err(|e| NodeError::Internal(format!("stored group key: {e}")))?;
            let mut shares = Vec::with_capacity(opened.len());
            for (m, bytes) in &opened {
                shares.push(KeyShare::<C>::from_secret_bytes(bytes).map_err(|e| {
                    NodeError::Misbehaved {
                        message: format!("node {m} released a malformed share: {e}"),
                        culprits: vec![*m],
                    }
                })?);
            }
            let refs: Vec<&KeyShare<C>> = shares.iter().collect();
            hazmat::with_reconstructed_key(&group, &refs, |secret| {
                let bytes = secret.to_bytes();
                seal_to(&export.recipient, EXPORT_HPKE_INFO, &aad, &bytes)
            })
            .map_err(core_err)??
        });
        drop(opened);
        Ok(ExportResult {
            id: id.to_string(),
            key: record.name.clone(),
            suite: record.suite,
            epoch: record.epoch,
            public_key: record.public_key.clone(),
            enc: Hex(enc),
            ciphertext: Hex(ciphertext),
        })
    }
}
