//! Group commit of vault work. Concurrent requests hand their durable
//! writes to one thread, which does a batch of them in one vault
//! transaction (one sync to disk for many) and answers each. A caller's
//! rule is unchanged: it goes on only once its own write is on disk; only
//! the cost of the sync is shared.
//!
//! Used for nonce removal (`keys::taker`) and a tree's leaf locks
//! (`seedtree::member`).

use std::sync::mpsc;
use std::sync::{Arc, Weak};

use keyquorum_store::vault::VaultError;
use keyquorum_store::Vault;
use tokio::sync::oneshot;

use crate::error::NodeError;

/// Most items committed together.
const MAX_BATCH: usize = 256;

type Reply<R> = Result<R, NodeError>;

struct Job<J, R> {
    work: J,
    reply: oneshot::Sender<Reply<R>>,
}

/// What the thread does with a batch: one result per item, in order,
/// inside one transaction's result.
pub(crate) type Batch<J, R> =
    Box<dyn Fn(&Vault, &[J]) -> Result<Vec<Result<R, VaultError>>, VaultError> + Send>;

/// Answer every one of `replies` with `e`.
fn fail<R>(replies: Vec<oneshot::Sender<Reply<R>>>, e: NodeError) {
    for reply in replies {
        let _ = reply.send(Err(e.clone()));
    }
}

/// The handle; the thread stops (and lets go of the vault) when it drops.
pub(crate) struct GroupCommit<J, R> {
    tx: mpsc::Sender<Job<J, R>>,
}

impl<J, R> core::fmt::Debug for GroupCommit<J, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("GroupCommit")
    }
}

impl<J: Send + 'static, R: Send + 'static> GroupCommit<J, R> {
    /// Start the thread `name`. It holds the vault weakly: the file closes
    /// when the node lets go of it, not when the thread notices.
    pub(crate) fn start(
        vault: &Arc<Vault>,
        name: &str,
        batch: Batch<J, R>,
    ) -> Result<Self, NodeError> {
        let vault: Weak<Vault> = Arc::downgrade(vault);
        let (tx, rx) = mpsc::channel::<Job<J, R>>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    let (work, replies): (Vec<J>, Vec<_>) =
                        jobs.into_iter().map(|j| (j.work, j.reply)).unzip();
                    let Some(vault) = vault.upgrade() else {
                        fail(
                            replies,
                            NodeError::Unavailable("the vault is closed".into()),
                        );
                        return;
                    };
                    // A panic in the batch (the store asserting on what it
                    // read) fails its items and stops the thread: the vault
                    // is in a state nobody knows, so nothing more is written
                    // through it (fail closed; later calls are refused).
                    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        batch(&vault, &work)
                    }));
                    match done {
                        Ok(Ok(results)) if results.len() == replies.len() => {
                            for (reply, r) in replies.into_iter().zip(results) {
                                let _ = reply.send(r.map_err(NodeError::from));
                            }
                        }
                        // Cannot happen with this crate's batches (one result
                        // per item). The writes are committed: answering
                        // them as failed is safe for both users (a nonce is
                        // burnt; a lock stays with its request, whose retry
                        // is answered Ok).
                        Ok(Ok(_)) => fail(
                            replies,
                            NodeError::Internal(
                                "a group commit answered the wrong number of items".into(),
                            ),
                        ),
                        Ok(Err(e)) => fail(replies, NodeError::from(e)),
                        Err(_) => {
                            fail(
                                replies,
                                NodeError::Internal(
                                    "a vault write failed (panicked); writes through it stop"
                                        .into(),
                                ),
                            );
                            return;
                        }
                    }
                }
            })
            .map_err(|e| NodeError::Internal(format!("starting the {name} thread: {e}")))?;
        Ok(Self { tx })
    }

    /// Hand `work` to the thread; its result once it is on disk.
    pub(crate) async fn submit(&self, work: J) -> Reply<R> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job { work, reply }).map_err(|_| {
            NodeError::Unavailable("the vault is closed, or its writes stopped".into())
        })?;
        rx.await
            .map_err(|_| NodeError::Internal("a group commit thread stopped".into()))?
    }
}
