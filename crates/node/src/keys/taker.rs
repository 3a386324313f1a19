//! Group commit for nonce removal (`cluster::commit`). Concurrent
//! signature-share requests hand their nonce slots to one thread, which
//! removes a batch of them in one durable vault transaction (one sync to
//! disk for many) and answers each. The rule is unchanged: a share is
//! computed only after its nonce's removal is on disk; only the cost of the
//! sync is shared.

use std::sync::Arc;

use keyquorum_store::{Table, Vault};
use zeroize::Zeroizing;

use crate::cluster::commit::GroupCommit;
use crate::error::NodeError;

type Reply = Result<Option<Zeroizing<Vec<u8>>>, NodeError>;

/// The handle; the thread stops (and lets go of the vault) when it drops.
#[derive(Debug)]
pub(crate) struct NonceTaker(GroupCommit<Vec<u8>, Option<Zeroizing<Vec<u8>>>>);

impl NonceTaker {
    /// Start the thread.
    pub(crate) fn start(vault: &Arc<Vault>) -> Result<Self, NodeError> {
        Ok(Self(GroupCommit::start(
            vault,
            "keyquorum-nonce-taker",
            Box::new(|vault: &Vault, slots: &[Vec<u8>]| {
                let slots: Vec<&[u8]> = slots.iter().map(Vec::as_slice).collect();
                vault.take_many(Table::Nonces, &slots)
            }),
        )?))
    }

    /// Remove the nonce at `slot` durably and return it (`None` if absent).
    pub(crate) async fn take(&self, slot: Vec<u8>) -> Reply {
        self.0.submit(slot).await
    }
}
