//! Peer messages to one member that leave together: the calls of
//! concurrent requests to the same peer (signature shares, a tree's leaf
//! locks and releases, OPRF evaluations: [`PeerMessage::batchable`]) are
//! sent as one [`PeerMessage::Batch`], so under load one envelope
//! signature and its check, one HTTPS request and one TLS record each way
//! carry many of them.
//!
//! The same group commit as the write batcher's (`super::batch`): a call
//! that finds fewer than [`NodeConfig::peer_batches`] batches on their
//! way to its peer leaves at once (alone, if nothing else waits: at
//! concurrency 1 nothing changes); while they are all out, new calls
//! gather into the next. The recipient handles each item as if it had
//! come alone (its own checks, the client's signed request among them) and
//! answers them in order; one refusal is that item's answer and nobody
//! else's. A batch is answered when its slowest item is (a signer catching
//! up on the registry, up to 2 s, holds its batch that long), and a caller
//! waits no longer than one call's time-out in all.
//!
//! A batch is sent only to a member whose latest boot announced apply
//! rules 17 or later (a build that takes batches); to an older build each
//! message goes alone.
//!
//! [`NodeConfig::peer_batches`]: crate::config::NodeConfig::peer_batches

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use futures::future::join_all;
use keyquorum_wire::control::NodeInfo;
use keyquorum_wire::peer::{PeerMessage, MAX_PEER_BATCH};
use keyquorum_wire::NodeId;
use tokio::sync::oneshot;

use super::Node;
use crate::error::NodeError;

/// The apply rules from which a build takes [`PeerMessage::Batch`].
pub const BATCH_RULES: u16 = 17;

/// A batch stops growing past about this many bytes (a client's request
/// may be large), so that it uploads well within one call's time-out.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// A call waiting for its batch: the message, when it began waiting, and
/// where its answer goes.
struct Waiting {
    msg: PeerMessage,
    since: Instant,
    answer: oneshot::Sender<Result<PeerMessage, NodeError>>,
}

/// Per peer: the calls waiting, and how many batches are on their way.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    in_flight: usize,
}

/// The queues of this node's batchable calls, by peer.
#[derive(Default)]
pub(crate) struct Coalescer {
    peers: Mutex<HashMap<NodeId, Queue>>,
}

impl Coalescer {
    fn peers(&self) -> MutexGuard<'_, HashMap<NodeId, Queue>> {
        // The queues hold no invariant a panic elsewhere could break.
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// About how many bytes `msg` takes in a batch.
fn rough_size(msg: &PeerMessage) -> usize {
    let request = super::batch::request_size;
    256 + match msg {
        PeerMessage::SignShare {
            package,
            request: r,
            ..
        } => 2 * package.0.len() + request(r),
        PeerMessage::StLock { request: r, .. } | PeerMessage::OprfCommit { request: r, .. } => {
            request(r)
        }
        PeerMessage::StRelease {
            request: r, locks, ..
        } => request(r) + 300 * locks.len(),
        PeerMessage::OprfRespond { package, .. } => 2 * package.0.len(),
        _ => 0,
    }
}

/// A peer's send loop's batch slot. The loop gives it back when it finds
/// nothing waiting (under the same lock, so no call is left behind); if
/// the loop ends otherwise (stopped with the node), dropping the slot gives
/// it back, and if no loop is left for the peer, the calls still waiting
/// are answered that they were not sent rather than left waiting.
struct Slot {
    node: Node,
    to: NodeId,
    given_back: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.given_back {
            return;
        }
        let mut peers = self.node.0.coalescer.peers();
        let Some(q) = peers.get_mut(&self.to) else {
            return;
        };
        q.in_flight = q.in_flight.saturating_sub(1);
        if q.in_flight == 0 {
            for w in q.waiting.drain(..) {
                let _ = w.answer.send(Err(NodeError::Unavailable(format!(
                    "node {}: the call was not sent (its batch sender stopped)",
                    self.to
                ))));
            }
        }
    }
}

impl Node {
    /// Whether a call of `msg` to `to` goes through the coalescer: a
    /// batchable message, batching on, and a peer that takes batches.
    pub(super) fn coalesces(&self, to: NodeId, msg: &PeerMessage) -> bool {
        msg.batchable()
            && self.0.config.peer_batches > 0
            && self.registry(|r| r.announced_rules(to)) >= Some(BATCH_RULES)
    }

    /// Send `msg` to `to` with whatever other calls to `to` wait with it,
    /// and return its own answer. Past [`NodeConfig::peer_batches`] full
    /// batches waiting, a call goes alone.
    ///
    /// [`NodeConfig::peer_batches`]: crate::config::NodeConfig::peer_batches
    pub(super) async fn call_coalesced(
        &self,
        to: NodeId,
        info: &NodeInfo,
        msg: PeerMessage,
    ) -> Result<PeerMessage, NodeError> {
        let (answer, rx) = oneshot::channel();
        let slots = self.0.config.peer_batches;
        let (queued, start) = {
            let mut peers = self.0.coalescer.peers();
            let q = peers.entry(to).or_default();
            if q.waiting.len() >= slots * MAX_PEER_BATCH {
                (Err(msg), false)
            } else {
                q.waiting.push_back(Waiting {
                    msg,
                    since: Instant::now(),
                    answer,
                });
                let free = q.in_flight < slots;
                if free {
                    q.in_flight += 1;
                }
                (Ok(()), free)
            }
        };
        if let Err(msg) = queued {
            return self.0.peers.call(to, info, &msg).await.map(|(_, m)| m);
        }
        if start {
            // Its own task (ended with the node): the batch, with others'
            // calls in it, goes on even if this caller stops waiting. The
            // slot is made before the task, so a task dropped before it
            // ever ran (the node stopping) still gives it back.
            let mut slot = Slot {
                node: self.clone(),
                to,
                given_back: false,
            };
            self.spawn(async move {
                let node = slot.node.clone();
                node.send_batches(&mut slot).await;
            });
        }
        // A caller waits no longer than for a call of its own.
        let timeout = self.0.peers.timeout();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(NodeError::Unavailable(format!(
                "node {to}: the batch carrying the call was lost"
            ))),
            Err(_) => Err(NodeError::Unavailable(format!(
                "node {to} unreachable: timed out (in a batch)"
            ))),
        }
    }

    /// Send what waits for `to`, batch after batch, until nothing does.
    /// A call whose caller stopped waiting is dropped unsent; one that
    /// waited longer than a call's time-out is answered that it timed out.
    async fn send_batches(&self, slot: &mut Slot) {
        let to = slot.to;
        let timeout = self.0.peers.timeout();
        loop {
            let mut batch = Vec::new();
            {
                let mut peers = self.0.coalescer.peers();
                let q = peers.entry(to).or_default();
                let mut bytes = 0;
                while batch.len() < MAX_PEER_BATCH {
                    let Some(w) = q.waiting.front() else {
                        break;
                    };
                    let size = rough_size(&w.msg);
                    if !batch.is_empty() && bytes + size > MAX_BATCH_BYTES {
                        break;
                    }
                    let Some(w) = q.waiting.pop_front() else {
                        break;
                    };
                    if w.answer.is_closed() {
                        continue;
                    }
                    if w.since.elapsed() > timeout {
                        let _ = w.answer.send(Err(NodeError::Unavailable(format!(
                            "node {to} unreachable: the call waited for its batch past the time-out"
                        ))));
                        continue;
                    }
                    bytes += size;
                    batch.push(w);
                }
                if batch.is_empty() {
                    // Nothing left (what was there was dropped or timed out).
                    q.in_flight = q.in_flight.saturating_sub(1);
                    slot.given_back = true;
                    return;
                }
            }
            let (items, answers): (Vec<PeerMessage>, Vec<_>) =
                batch.into_iter().map(|w| (w.msg, w.answer)).unzip();
            // The peer's address and identity as the registry has them
            // now (a node removed meanwhile gets nothing).
            let replies = match self.node_info(to) {
                Some(info) => self.send_batch(to, &info, items).await,
                None => failed(
                    answers.len(),
                    &NodeError::Unavailable(format!("node {to} is not a member any more")),
                ),
            };
            for (answer, reply) in answers.into_iter().zip(replies) {
                // A caller that stopped waiting has nobody to tell.
                let _ = answer.send(reply);
            }
        }
    }

    /// One batch to `to` (a single message goes alone), an answer per item.
    async fn send_batch(
        &self,
        to: NodeId,
        info: &NodeInfo,
        mut items: Vec<PeerMessage>,
    ) -> Vec<Result<PeerMessage, NodeError>> {
        let count = items.len();
        if count == 1 {
            if let Some(msg) = items.pop() {
                return vec![self.0.peers.call(to, info, &msg).await.map(|(_, m)| m)];
            }
        }
        let m = &self.0.metrics;
        m.peer_batches.fetch_add(1, Ordering::Relaxed);
        m.peer_batched_messages
            .fetch_add(count as u64, Ordering::Relaxed);
        let batch = PeerMessage::Batch { items };
        match self.0.peers.call(to, info, &batch).await {
            Ok((_, PeerMessage::Batched { replies })) if replies.len() == count => {
                replies.into_iter().map(|r| item_reply(to, r)).collect()
            }
            Ok(_) => failed(
                count,
                &NodeError::Misbehaved {
                    message: format!("node {to} answered a batch of {count} wrongly"),
                    culprits: vec![to],
                },
            ),
            // A build that does not take batches after all (one rolled
            // back before its boot reached this replica) refuses the
            // envelope unread: each alone. (Only that refusal: a peer that
            // says so after handling the items gets the same messages
            // again, which it may refuse or answer as before.)
            Err(NodeError::Unavailable(m))
                if m.contains("refused the message (401") && m.contains("malformed payload") =>
            {
                let PeerMessage::Batch { items } = batch else {
                    return Vec::new();
                };
                let alone = items
                    .iter()
                    .map(|msg| async move { self.0.peers.call(to, info, msg).await });
                join_all(alone)
                    .await
                    .into_iter()
                    .map(|r| r.map(|(_, m)| m))
                    .collect()
            }
            Err(e) => failed(count, &e),
        }
    }

    /// Handle a batch from `from`: refused whole unless it holds 1 to
    /// [`MAX_PEER_BATCH`] batchable messages; else each item as if it had
    /// come alone, all at once, answered in order.
    pub(super) async fn handle_batch(
        &self,
        from: NodeId,
        items: Vec<PeerMessage>,
    ) -> Result<PeerMessage, NodeError> {
        if items.is_empty() || items.len() > MAX_PEER_BATCH {
            return Err(NodeError::BadRequest(format!(
                "a batch holds 1 to {MAX_PEER_BATCH} messages"
            )));
        }
        if let Some(i) = items.iter().position(|m| !m.batchable()) {
            return Err(NodeError::BadRequest(format!(
                "item {i} of the batch is a message that travels alone"
            )));
        }
        let handler = self.0.dispatch.get().cloned().ok_or_else(|| {
            NodeError::Unavailable("the node is not serving capability messages".into())
        })?;
        let replies = join_all(items.into_iter().map(|m| handler.handle(self, from, m))).await;
        Ok(PeerMessage::Batched {
            replies: replies
                .into_iter()
                .map(|r| r.unwrap_or_else(super::transport::error_reply))
                .collect(),
        })
    }
}

/// The same failure `e` as the answer to each of `count` items.
fn failed(count: usize, e: &NodeError) -> Vec<Result<PeerMessage, NodeError>> {
    (0..count).map(|_| Err(e.clone())).collect()
}

/// One item's answer in a batch from `to`, as a lone call's would be.
fn item_reply(to: NodeId, reply: PeerMessage) -> Result<PeerMessage, NodeError> {
    match reply {
        PeerMessage::Batch { .. } | PeerMessage::Batched { .. } => Err(NodeError::Misbehaved {
            message: format!("node {to} answered an item with a batch"),
            culprits: vec![to],
        }),
        other => super::peer::answer_of(to, other),
    }
}
