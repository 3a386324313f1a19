//! The write batcher behind [`Node::propose_batched`]: writes that need no
//! read-back through this node are grouped into one
//! [`Proposal`](keyquorum_wire::control::Proposal) each, so
//! under load one forward (one signed envelope, one HTTPS request) and one
//! Raft entry carry many of them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use keyquorum_wire::control::{Authorized, Command, CommandResponse, MAX_BATCH};
use keyquorum_wire::msg::MsgCommand;
use tokio::sync::{mpsc, oneshot};

use super::raft::ReadBack;
use super::Node;
use crate::error::NodeError;

/// A write waiting for the batcher, and where its result goes.
pub(crate) type Pending = (
    Authorized,
    oneshot::Sender<Result<CommandResponse, NodeError>>,
);

/// How many batches one node may have on their way to the leader at once.
/// More in flight means smaller batches and less waiting for a turn; while
/// all are out, new writes gather into the next.
///
/// One measured best (group commit: while a batch is on its way the next
/// gathers); see BENCHMARKS.md, session 10.
const BATCHES_IN_FLIGHT: usize = 1;

/// A batch stops growing past about this many bytes in the log, so that
/// one entry (and the AppendEntries carrying it) stays small enough to
/// replicate well within the heartbeat-bounded RPC time-out.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// About how many bytes a client's forwarded request takes in JSON (its
/// body is hex there, twice its length).
pub(super) fn request_size(r: &keyquorum_wire::peer::ClientRequest) -> usize {
    2 * r.body.0.len()
        + r.target_uri.len()
        + r.headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 8)
            .sum::<usize>()
}

/// About how many bytes `command` takes in the log (its byte strings are
/// hex there, twice their length).
fn rough_size(a: &Authorized) -> usize {
    const OVERHEAD: usize = 256;
    let authority = match &a.by {
        keyquorum_wire::control::Authority::Client { request } => request_size(request),
        keyquorum_wire::control::Authority::Node { .. } => 300,
        keyquorum_wire::control::Authority::Members { signatures, .. } => {
            200 + 200 * signatures.len()
        }
    };
    authority
        + match &a.command {
            Command::Msg(MsgCommand::Deliver { item, .. }) => {
                let boxed =
                    |b: &keyquorum_wire::msg::SealedBox| b.enc.0.len() + b.ciphertext.0.len();
                let bytes = item.header.0.len()
                    + item.payload.0.len()
                    + item.signature.0.len()
                    + boxed(&item.for_receiver)
                    + item
                        .confirmations
                        .iter()
                        .map(|c| boxed(&c.forwarded) + c.signature.0.len() + 32)
                        .sum::<usize>();
                2 * bytes + OVERHEAD
            }
            _ => OVERHEAD,
        }
}

/// Groups the writes that need no read-back ([`Node::propose_batched`]) into
/// [`Proposal`](keyquorum_wire::control::Proposal)s: whatever has queued up by the time a batch may go
/// leaves together (up to [`MAX_BATCH`] commands or about
/// [`MAX_BATCH_BYTES`]), so under load one forward (one
/// signed envelope, one HTTPS request) and one Raft entry carry many writes,
/// and when idle a write leaves alone at once.
pub(crate) async fn batch_writer(node: Node, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let batch = gather(first, &mut rx);
        if batch.is_empty() {
            continue;
        }
        let task_node = node.clone();
        node.spawn(async move {
            let node = task_node;
            let _permit = permit;
            write_batch(&node, batch).await;
        });
    }
}

/// `first` and what is queued behind it, up to [`MAX_BATCH`] commands or
/// about [`MAX_BATCH_BYTES`]. A write whose requester is gone (a client
/// that hung up: its request's place among its client's was given back)
/// is dropped, not written: the queue holds only writes someone waits for.
fn gather(first: Pending, rx: &mut mpsc::UnboundedReceiver<Pending>) -> Vec<Pending> {
    let mut bytes = 0;
    let mut batch = Vec::new();
    let mut next = Some(first);
    while let Some(p) = next.take() {
        if !p.1.is_closed() {
            bytes += rough_size(&p.0);
            batch.push(p);
        }
        if batch.len() >= MAX_BATCH || bytes >= MAX_BATCH_BYTES {
            break;
        }
        next = rx.try_recv().ok();
    }
    batch
}

/// Commit `batch` in one log entry and hand each waiter its own result.
async fn write_batch(node: &Node, batch: Vec<Pending>) {
    let m = node.metrics();
    m.write_batches.fetch_add(1, Ordering::Relaxed);
    m.batched_writes
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    let (commands, waiters): (Vec<Authorized>, Vec<_>) = batch.into_iter().unzip();
    match node.propose_now(commands, ReadBack::NotNeeded).await {
        Ok(responses) => {
            for (tx, r) in waiters.into_iter().zip(responses) {
                let _ = tx.send(Ok(r));
            }
        }
        Err(e) => {
            for tx in waiters {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use keyquorum_wire::msg::{MailItem, SealedBox};
    use keyquorum_wire::{Hex, Hex32};

    use super::*;

    fn deliver(payload: usize) -> Authorized {
        let b = SealedBox {
            enc: Hex(vec![0; 32]),
            ciphertext: Hex(vec![0; 80]),
        };
        let command = MsgCommand::Deliver {
            item: MailItem {
                id: Hex32([0; 32]),
                from: "a".into(),
                to: "b".into(),
                header: Hex(vec![0; 300]),
                signature: Hex(vec![0; 64]),
                payload: Hex(vec![0; payload]),
                for_receiver: b,
                confirmations: Vec::new(),
                time_ms: 0,
            },
            prekey: Hex32([0; 32]),
        };
        Authorized {
            command: command.into(),
            by: keyquorum_wire::control::Authority::Node {
                node: keyquorum_wire::NodeId::new(1).unwrap(),
                time_ms: 0,
                nonce: keyquorum_wire::Hex(vec![0; 16]),
                signature: keyquorum_wire::Hex(vec![0; 64]),
            },
        }
    }

    /// Queue `n` copies of `command`, then gather one batch.
    fn gathered(command: &Authorized, n: usize) -> (usize, usize) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut waiting = Vec::new();
        for _ in 0..n {
            let (reply, wait) = oneshot::channel();
            waiting.push(wait);
            tx.send((command.clone(), reply)).unwrap();
        }
        let first = rx.try_recv().unwrap();
        let batch = gather(first, &mut rx);
        let left = std::iter::from_fn(|| rx.try_recv().ok()).count();
        (batch.len(), left)
    }

    /// A write nobody waits for any more (its client hung up) is dropped,
    /// not written.
    #[test]
    fn a_write_whose_requester_is_gone_is_not_written() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut waiting = Vec::new();
        for i in 0..6 {
            let (reply, wait) = oneshot::channel();
            if i % 2 == 0 {
                waiting.push(wait);
            }
            tx.send((deliver(16), reply)).unwrap();
        }
        let first = rx.try_recv().unwrap();
        assert_eq!(gather(first, &mut rx).len(), 3);
        drop(waiting);
    }

    #[test]
    fn a_batch_is_bounded_by_count_and_by_bytes() {
        // Small commands: MAX_BATCH of them, the rest wait.
        let small = deliver(1024);
        assert_eq!(gathered(&small, 300), (MAX_BATCH, 300 - MAX_BATCH));
        assert_eq!(gathered(&small, 5), (5, 0));
        // The largest payloads: the batch stops once about MAX_BATCH_BYTES
        // are in it, and its log entry stays near that size.
        let big = deliver(crate::msg::MAX_PAYLOAD);
        let (n, left) = gathered(&big, 100);
        assert_eq!(n + left, 100);
        assert!(n > 1 && n < MAX_BATCH, "{n}");
        let entry = serde_json::to_vec(&keyquorum_wire::control::Proposal {
            rules: 1,
            time_ms: 0,
            commands: vec![big; n],
        })
        .unwrap();
        assert!(entry.len() >= MAX_BATCH_BYTES, "{}", entry.len());
        assert!(
            entry.len() < MAX_BATCH_BYTES + 2 * rough_size(&deliver(crate::msg::MAX_PAYLOAD)),
            "{}",
            entry.len()
        );
    }
}
