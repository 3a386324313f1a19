//! Export (core `hazmat`): the approved temporary reconstruction of a key,
//! by its requester only.
//!
//! An export request names the requester's one-time X25519 key; the
//! operator quorum approves it through Raft. The requester runs it (once):
//! the coordinator marks it carried out and forwards the requester's
//! signed request to the holders. Each holder checks for itself that the
//! request is the requester's, fresh and addressed to this cluster, that
//! the export is committed as approved by the quorum of live operators and
//! carried out, and that it has not released a share for it before; then
//! it seals its share to the requester's key (HPKE) and nothing else. No
//! node, the coordinator included, ever holds the key or a share it can
//! open: the requester opens the shares, checks each against its holder's
//! public share and rebuilds the key (`keyquorum_client::ExportKey`).

use keyquorum_core::httpsig;
use keyquorum_store::Table;
use keyquorum_wire::api::{export_aad, ExportResult, SealedExportShare, EXPORT_HPKE_INFO};
use keyquorum_wire::control::{ExportRecord, KeysCommand};
use keyquorum_wire::peer::{ClientRequest, PeerMessage};
use keyquorum_wire::{Hex, NodeId};

use super::{key_record, me_first, Keys};
use crate::api::auth::{by_request, check_forwarded, forwarded};
use crate::cluster::peer::seal_to;
use crate::cluster::Node;
use crate::error::NodeError;

fn released_slot(id: &str) -> Vec<u8> {
    format!("export-released/{id}").into_bytes()
}

/// Whether `export` is committed as approved by the operator quorum (live
/// operators only, the quorum as it is now if it was raised) and carried
/// out.
fn approved(node: &Node, export: &ExportRecord) -> bool {
    node.registry(|r| {
        let live = r.live_operators();
        let approvals = export
            .approvals
            .iter()
            .filter(|a| live.contains(*a))
            .count();
        export.done && approvals >= usize::from(export.needed.max(r.operators.quorum))
    })
}

impl Keys {
    /// Release this node's share for export `id`, sealed to the requester's
    /// key, if `request` is the requester's own signed request to run it
    /// and the registry says it is approved and carried out.
    pub(super) fn export_share(
        &self,
        node: &Node,
        from: NodeId,
        id: &str,
        request: &ClientRequest,
    ) -> Result<PeerMessage, NodeError> {
        let export = node
            .registry(|r| r.keys.exports.get(id).cloned())
            .ok_or_else(|| NodeError::NotFound(format!("no export {id}")))?;
        // An account's reset key is never released whole.
        if keyquorum_wire::recovery::is_reset_key(&export.key)
            || keyquorum_wire::recovery::is_pin_key(&export.key)
        {
            return Err(NodeError::Forbidden(format!(
                "{} is an account's reset or PIN key: it is never exported",
                export.key
            )));
        }
        // The requester asked, in a request this node checks itself.
        let asked = check_forwarded(node, request)?;
        if !asked.method.eq_ignore_ascii_case("POST")
            || asked.path != format!("/v1/exports/{id}/run")
            || asked.grant.name != export.requested_by
        {
            return Err(NodeError::Forbidden(format!(
                "no request by {} to run export {id}",
                export.requested_by
            )));
        }
        // The committed policy, not the coordinator's word.
        if !approved(node, &export) {
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
        let aad = export_aad(id, &export.key, export.epoch, node.id());
        let (enc, ciphertext) = seal_to(&export.recipient, EXPORT_HPKE_INFO, &aad, &share)?;
        // Durable before the share leaves.
        node.vault()
            .put(Table::Identity, &released_slot(id), b"1")?;
        node.audit_event(
            &format!("peer:{from}"),
            "export.release",
            Some(&export.key),
            &format!("share released for export {id}, sealed to the requester"),
        );
        Ok(PeerMessage::ExportedShare {
            id: id.to_string(),
            share: SealedExportShare {
                node: node.id(),
                enc: Hex(enc),
                ciphertext: Hex(ciphertext),
            },
        })
    }

    /// Carry out an approved export for its requester: mark it carried
    /// out, then ask every holder for its share (each sealed to the
    /// requester's key; every holder is asked, so that a holder releasing
    /// garbage does not spoil the export).
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
        let ask = PeerMessage::ExportShare {
            id: id.to_string(),
            request: forwarded(request),
        };
        let calls = me_first(&record.members, node.id(), 0)
            .into_iter()
            .filter_map(|m| node.node_info(m).map(|info| (m, info)))
            .map(|(m, info)| {
                let ask = &ask;
                async move { (m, node.call_signed(m, &info, ask).await) }
            });
        let mut shares = Vec::new();
        for (m, answer) in futures::future::join_all(calls).await {
            match answer {
                Ok((_, PeerMessage::ExportedShare { share, .. })) if share.node == m => {
                    shares.push(share)
                }
                Ok(_) => tracing::warn!(node = %m, "wrong answer to ExportShare"),
                Err(e) => tracing::warn!(node = %m, error = %e, "share not released"),
            }
        }
        let t = usize::from(record.threshold);
        if shares.len() < t {
            return Err(NodeError::Unavailable(format!(
                "only {} of the {t} shares needed were released",
                shares.len()
            )));
        }
        Ok(ExportResult {
            id: id.to_string(),
            key: record.name.clone(),
            suite: record.suite,
            epoch: record.epoch,
            public_key: record.public_key.clone(),
            group_key: record.group_key.clone(),
            shares,
        })
    }
}
