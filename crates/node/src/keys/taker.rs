//! Group commit for nonce removal. Concurrent signature-share requests hand
//! their nonce slots to one thread, which removes a batch of them in one
//! durable vault transaction (one sync to disk for many) and answers each.
//! The rule is unchanged: a share is computed only after its nonce's removal
//! is on disk; only the cost of the sync is shared.

use std::sync::mpsc;
use std::sync::Arc;

use keyquorum_store::{Table, Vault};
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use crate::error::NodeError;

/// Most removals committed together.
const MAX_BATCH: usize = 256;

type Reply = Result<Option<Zeroizing<Vec<u8>>>, NodeError>;

struct Job {
    slot: Vec<u8>,
    reply: oneshot::Sender<Reply>,
}

/// The handle; the thread stops (and lets go of the vault) when it drops.
pub(crate) struct NonceTaker {
    tx: mpsc::Sender<Job>,
}

impl core::fmt::Debug for NonceTaker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("NonceTaker")
    }
}

impl NonceTaker {
    /// The thread holds the vault weakly: the file closes when the node
    /// lets go of it, not when the thread notices.
    pub(crate) fn start(vault: &Arc<Vault>) -> Result<Self, NodeError> {
        let vault = Arc::downgrade(vault);
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("keyquorum-nonce-taker".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    let slots: Vec<&[u8]> = jobs.iter().map(|j| j.slot.as_slice()).collect();
                    let Some(vault) = vault.upgrade() else {
                        for j in jobs {
                            let _ = j
                                .reply
                                .send(Err(NodeError::Unavailable("the vault is closed".into())));
                        }
                        return;
                    };
                    match vault.take_many(Table::Nonces, &slots) {
                        Ok(results) => {
                            for (j, r) in jobs.into_iter().zip(results) {
                                let _ = j.reply.send(r.map_err(NodeError::from));
                            }
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            for j in jobs {
                                let _ = j.reply.send(Err(NodeError::Internal(msg.clone())));
                            }
                        }
                    }
                }
            })
            .map_err(|e| NodeError::Internal(format!("starting the nonce thread: {e}")))?;
        Ok(Self { tx })
    }

    /// Remove the nonce at `slot` durably and return it (`None` if absent).
    pub(crate) async fn take(&self, slot: Vec<u8>) -> Reply {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { slot, reply })
            .map_err(|_| NodeError::Unavailable("the vault is closed".into()))?;
        rx.await
            .map_err(|_| NodeError::Internal("the nonce thread stopped".into()))?
    }
}
