//! Fetching a run of records other members hold, newest first, each page
//! checked before anything of it is stored: the scheme of the audit keeper
//! (`audit::keeper`) and of the sessions' inputs keeper (`he::keeper`).
//! The value the run must end with is known (a hash the replicated state
//! vouches for, or a link stored after the run); a page is checked from its
//! end against it and yields the value the page before it must end with.
//! A member that answers anything else is caught on its first wrong record
//! and the next member is asked; one that answers fewer than asked (a byte
//! budget) is asked for that many.

use keyquorum_store::raft::SideWrite;
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::Hex32;

use super::Node;
use crate::error::NodeError;

/// Why a page was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PageFault {
    /// Fewer records than asked.
    Short,
    /// The record at this position does not continue the chain.
    Wrong(u64),
}

/// A run to fetch: records `from..to`, the last of which must end the
/// chain at `expect`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run<'a> {
    /// The first record wanted.
    pub(crate) from: u64,
    /// One past the last.
    pub(crate) to: u64,
    /// The chain's value after record `to - 1`.
    pub(crate) expect: Hex32,
    /// Which member to ask first (rotates between calls).
    pub(crate) turn: usize,
    /// The most records one page asks for.
    pub(crate) page: u64,
    /// What the records are (for the log).
    pub(crate) what: &'a str,
}

/// How one kind of record is fetched, checked and stored.
pub(crate) trait Fetch {
    /// The record.
    type Item;

    /// The question for records `from`, at most `limit` of them.
    fn ask(&self, from: u64, limit: u32) -> PeerMessage;

    /// The records in an answer (`None`: not an answer to the question).
    fn take(&self, answer: PeerMessage) -> Option<Vec<Self::Item>>;

    /// Check a page `start..end` against the value its last record must end
    /// with; the value the record before `start` must end with.
    fn check(
        &self,
        page: &[Self::Item],
        start: u64,
        end: u64,
        expect: Hex32,
    ) -> Result<Hex32, PageFault>;

    /// The side records that store a checked page.
    fn writes(&self, page: &[Self::Item]) -> Vec<SideWrite>;
}

/// Fetch `run` from the other members, newest first, storing each page once
/// it is checked; answers the value the record before `run.from` must end
/// with (the caller checks that its records before the run join it).
pub(crate) async fn newest_first<F: Fetch>(
    node: &Node,
    run: Run<'_>,
    kind: &F,
) -> Result<Hex32, NodeError> {
    let mut peers: Vec<_> = node
        .members()
        .into_iter()
        .filter(|(id, _, _)| *id != node.id())
        .collect();
    if peers.is_empty() {
        return Err(NodeError::Unavailable(
            "no other member to fetch from".into(),
        ));
    }
    let n = peers.len();
    peers.rotate_left(run.turn % n);
    let (mut end, mut expect, mut page) = (run.to, run.expect, run.page.max(1));
    while end > run.from {
        let start = end.saturating_sub(page).max(run.from);
        let mut got = None;
        let mut shorter = None;
        for (id, info, _) in &peers {
            let ask = kind.ask(start, u32::try_from(end - start).unwrap_or(u32::MAX));
            let records = match node.call(*id, info, ask).await {
                Ok(answer) => match kind.take(answer) {
                    Some(r) => r,
                    None => continue,
                },
                Err(e) => {
                    tracing::debug!(peer = %id, error = %e, what = run.what, "fetch failed");
                    continue;
                }
            };
            match kind.check(&records, start, end, expect) {
                Ok(next) => {
                    got = Some((records, next));
                    break;
                }
                // Fewer than asked: it answers less at once (a byte
                // budget), or it lacks them too.
                Err(PageFault::Short) => {
                    if !records.is_empty() {
                        shorter = Some(records.len() as u64);
                    }
                }
                Err(PageFault::Wrong(at)) => {
                    tracing::warn!(
                        peer = %id,
                        at,
                        what = run.what,
                        "a member answered a record that does not continue the chain: refused"
                    );
                }
            }
        }
        let Some((records, next)) = got else {
            if let Some(k) = shorter.filter(|k| *k < page) {
                page = k;
                continue;
            }
            return Err(NodeError::Unavailable(format!(
                "no member had {} {start}..{end} that check",
                run.what
            )));
        };
        let writes = kind.writes(&records);
        let n = node.clone();
        tokio::task::spawn_blocking(move || n.put_side_records(&writes))
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))??;
        expect = next;
        end = start;
    }
    Ok(expect)
}
