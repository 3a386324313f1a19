//! The inputs keeper: makes this member hold every input of every session.
//! A session's inputs are side records ([`super::state`]); a snapshot
//! carries each session's count and the end of its inputs' hash chain,
//! never the inputs, so a member that installs one (a new member, a member
//! the leader's compacted log left behind) lacks the inputs before it and
//! cannot serve the session's transcript. The keeper finds the first input
//! it lacks in each session and fetches the run from other members, newest
//! first, checking each input before anything is stored: the chain's link
//! after the run is known (the replicated state's `inputs_hash`, vouched
//! for with the snapshot, or the `prev` of the first input held after the
//! run), an input is taken only if it and its `prev` hash to that link
//! (`he::input_link`), and its `prev` is then the link the input before it
//! must end with. A member that answers anything else is caught on the
//! first wrong input and nothing it sent is stored; where the run meets the
//! inputs held before it, the chain must join them. This is the audit
//! keeper's scheme (`cluster::audit::keeper`) over the inputs' chain.

use std::collections::BTreeMap;
use std::time::Duration;

use keyquorum_store::raft::SideWrite;
use keyquorum_wire::he::HeStoredInput;
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::Hex32;

use super::state::chain;
use crate::cluster::fetch::{self, Fetch, PageFault, Run};
use crate::cluster::Node;
use crate::error::NodeError;

/// The most inputs one fetch asks for, and a member answers.
pub(crate) const FETCH_MAX: usize = 1000;

/// About the most bytes of inputs a member answers at once (at least one
/// input goes).
pub(crate) const FETCH_BYTES: usize = 4 << 20;

/// How often the keeper looks for something missing.
const ROUND: Duration = Duration::from_secs(1);

/// Inputs read from the side table at once while looking for a gap.
const SCAN: usize = 4096;

/// Run the keeper until the node stops.
pub(crate) async fn keeper(node: Node) {
    // Per session (by its side-record space): inputs [0, held) are stored.
    let mut held: BTreeMap<u32, u64> = BTreeMap::new();
    // Each session's count a round ago: the store wrote those inputs'
    // records when it applied them, so a gap below it is a real one, not an
    // apply in progress (a gap taken for one costs a fetch, never a wrong
    // record: what is fetched is checked).
    let mut settled: BTreeMap<u32, u64> = BTreeMap::new();
    // Sessions with a gap no fetch can fill (see [`Step::Unlinked`]).
    let mut stuck: BTreeMap<u32, u64> = BTreeMap::new();
    let mut turn = 0usize;
    loop {
        tokio::time::sleep(ROUND).await;
        let now: Vec<(String, u32, u64)> = node.registry(|r| {
            r.he.sessions
                .iter()
                .map(|(name, e)| (name.clone(), e.record.space, e.progress.count))
                .collect()
        });
        for (name, space, count) in &now {
            let target = settled.get(space).copied().unwrap_or(0).min(*count);
            let from = held.get(space).copied().unwrap_or(0);
            if from >= target || stuck.contains_key(space) {
                continue;
            }
            let n = node.clone();
            let session = name.clone();
            let step =
                tokio::task::spawn_blocking(move || local_step(&n, &session, from, target)).await;
            let step = match step {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(session = %name, error = %e, "inputs keeper: reading stored inputs failed");
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "inputs keeper: stopped");
                    return;
                }
            };
            match step {
                Step::Held(upto) => {
                    held.insert(*space, upto);
                }
                Step::Fetch { from, to, expect } => {
                    held.insert(*space, from);
                    turn = turn.wrapping_add(1);
                    if let Err(e) = fetch(&node, name, *space, from, to, expect, turn).await {
                        tracing::warn!(session = %name, error = %e, from, to, "inputs keeper: could not fetch inputs yet");
                    }
                }
                Step::Unlinked { from, to } => {
                    tracing::warn!(
                        session = %name,
                        from,
                        to,
                        "inputs keeper: the input after this gap was stored by an earlier \
                         build without its chain link, so no fetched run can be checked: \
                         this node cannot serve the session's transcript"
                    );
                    stuck.insert(*space, from);
                }
            }
        }
        settled = now
            .iter()
            .map(|(_, space, count)| (*space, *count))
            .collect();
    }
}

/// What the keeper does next for one session.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Every input before this is stored.
    Held(u64),
    /// Inputs `from..to` are missing; the chain's link after input `to - 1`
    /// is `expect`.
    Fetch { from: u64, to: u64, expect: Hex32 },
    /// Inputs `from..to` are missing and input `to`, held, was stored by a
    /// build whose records carry no link: nothing says which run joins it.
    Unlinked { from: u64, to: u64 },
}

/// From input `held` on, find the first input of session `name` missing
/// below `target`, and say which run to fetch.
fn local_step(node: &Node, name: &str, held: u64, target: u64) -> Result<Step, NodeError> {
    let Some((space, count, last)) = node.registry(|r| {
        r.he.sessions
            .get(name)
            .map(|e| (e.record.space, e.progress.count, e.progress.inputs_hash))
    }) else {
        return Ok(Step::Held(held));
    };
    let mut a = held;
    loop {
        let keys = node.side_keys(space, a, SCAN)?;
        let before = a;
        for k in &keys {
            if *k != a || a >= target {
                break;
            }
            a += 1;
        }
        if a >= target {
            return Ok(Step::Held(a));
        }
        if a == before || keys.len() < SCAN {
            break;
        }
    }
    // Input `a` is missing: fetch up to the next one held, or to the end.
    let next = node.side_records(space, a, 1)?;
    Ok(match next.first() {
        Some((b, v)) if *b < count => match stored(*b, v)?.prev {
            Some(prev) => Step::Fetch {
                from: a,
                to: *b,
                expect: prev,
            },
            None => Step::Unlinked { from: a, to: *b },
        },
        _ => Step::Fetch {
            from: a,
            to: count,
            expect: last,
        },
    })
}

/// A stored input record.
fn stored(index: u64, v: &[u8]) -> Result<HeStoredInput, NodeError> {
    serde_json::from_slice(v).map_err(|e| NodeError::Internal(format!("stored input {index}: {e}")))
}

/// How sessions' inputs are fetched, checked and stored.
struct Inputs<'a> {
    name: &'a str,
    space: u32,
}

impl Fetch for Inputs<'_> {
    type Item = HeStoredInput;

    fn ask(&self, from: u64, limit: u32) -> PeerMessage {
        PeerMessage::HeFetch {
            session: self.name.to_string(),
            from,
            limit,
        }
    }

    fn take(&self, answer: PeerMessage) -> Option<Vec<HeStoredInput>> {
        match answer {
            PeerMessage::HeInputs { inputs } => Some(inputs),
            _ => None,
        }
    }

    fn check(
        &self,
        page: &[HeStoredInput],
        start: u64,
        end: u64,
        expect: Hex32,
    ) -> Result<Hex32, PageFault> {
        check_run(page, start, end, expect)
    }

    fn writes(&self, page: &[HeStoredInput]) -> Vec<SideWrite> {
        page.iter()
            .map(|s| SideWrite {
                space: self.space,
                key: s.input.index,
                value: serde_json::to_vec(s).unwrap_or_default(),
            })
            .collect()
    }
}

/// Fetch inputs `from..to` of session `name` from other members, newest
/// first, storing each page once it is checked (see the module text).
async fn fetch(
    node: &Node,
    name: &str,
    space: u32,
    from: u64,
    to: u64,
    expect: Hex32,
    turn: usize,
) -> Result<(), NodeError> {
    let what = format!("inputs of {name}");
    let run = Run {
        from,
        to,
        expect,
        turn,
        page: FETCH_MAX as u64,
        what: &what,
    };
    let expect = fetch::newest_first(node, run, &Inputs { name, space }).await?;
    // The fetched run must join the input held before it. (What was
    // fetched is right whatever this finds: it was checked from the top
    // link down. A run that does not join means the records before it
    // here were altered.)
    let joined = match from.checked_sub(1) {
        None => expect == Hex32([0u8; 32]),
        Some(p) => match node.side_records(space, p, 1)?.first() {
            Some((k, v)) if *k == p => {
                let s = stored(p, v)?;
                // A record written before records carried their link was
                // written by this node's own apply.
                s.prev.is_none_or(|prev| chain(&prev, &s.input) == expect)
            }
            _ => false,
        },
    };
    if !joined {
        return Err(NodeError::Internal(format!(
            "the inputs of {name} before {from} stored here do not join the chain the \
             members hold: this node's store was altered"
        )));
    }
    Ok(())
}

/// Check a run `start..end` newest first against the link after its last
/// input; answers the link the input before `start` must end with.
fn check_run(
    inputs: &[HeStoredInput],
    start: u64,
    end: u64,
    mut expect: Hex32,
) -> Result<Hex32, PageFault> {
    if inputs.len() as u64 != end - start {
        return Err(PageFault::Short);
    }
    for (s, index) in inputs.iter().rev().zip((start..end).rev()) {
        let Some(prev) = s.prev else {
            return Err(PageFault::Wrong(index));
        };
        if s.input.index != index || chain(&prev, &s.input) != expect {
            return Err(PageFault::Wrong(index));
        }
        expect = prev;
    }
    Ok(expect)
}

/// Inputs `from` on of session `name` as this node holds them, for a
/// member that lacks them (at most [`FETCH_MAX`], about [`FETCH_BYTES`]:
/// what is read is bounded by bytes too).
pub(crate) fn serve(
    node: &Node,
    name: &str,
    from: u64,
    limit: u32,
) -> Result<PeerMessage, NodeError> {
    let (space, count) = node
        .registry(|r| {
            r.he.sessions
                .get(name)
                .map(|e| (e.record.space, e.progress.count))
        })
        .ok_or_else(|| NodeError::NotFound(format!("no session named {name}")))?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX).min(FETCH_MAX);
    let end = count.min(from.saturating_add(limit as u64));
    let mut inputs = Vec::new();
    if from < end {
        let wanted = usize::try_from(end - from).unwrap_or(FETCH_MAX);
        let mut bytes = 0usize;
        for (k, v) in node.side_records_within(space, from, wanted, FETCH_BYTES)? {
            if k != from + inputs.len() as u64 || k >= end {
                break;
            }
            bytes = bytes.saturating_add(v.len());
            if bytes > FETCH_BYTES && !inputs.is_empty() {
                break;
            }
            inputs.push(stored(k, &v)?);
        }
    }
    if node.forges_he_inputs() {
        for s in &mut inputs {
            if let Some(b) = s.input.ciphertext.0.first_mut() {
                *b ^= 1;
            }
        }
    }
    Ok(PeerMessage::HeInputs { inputs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyquorum_wire::he::HeInput;
    use keyquorum_wire::Hex;

    /// A chain of `n` inputs as a replica stores them, and its end.
    fn inputs(n: u64, salt: u8) -> (Vec<HeStoredInput>, Hex32) {
        let mut link = Hex32([0u8; 32]);
        let mut out = Vec::new();
        for index in 0..n {
            let input = HeInput {
                index,
                submitter: format!("client{}", index % 3),
                ciphertext: Hex(vec![salt; 64]),
                proof: Hex(vec![index as u8; 64]),
            };
            let prev = link;
            link = chain(&prev, &input);
            out.push(HeStoredInput {
                input,
                prev: Some(prev),
            });
        }
        (out, link)
    }

    #[test]
    fn a_run_is_taken_only_if_it_ends_at_the_known_link() {
        let (all, end) = inputs(6, 1);
        // The last three, then the first three, joining at the start.
        let prev = check_run(&all[3..], 3, 6, end).unwrap();
        assert_eq!(Some(prev), all[3].prev);
        assert_eq!(check_run(&all[..3], 0, 3, prev), Ok(Hex32([0u8; 32])));
        // Short, altered, re-linked, shifted or unlinked runs are refused.
        assert_eq!(check_run(&all[4..], 3, 6, end), Err(PageFault::Short));
        let mut altered = all.clone();
        altered[4].input.ciphertext.0[0] ^= 1;
        assert_eq!(
            check_run(&altered[3..], 3, 6, end),
            Err(PageFault::Wrong(4))
        );
        let mut renamed = all.clone();
        renamed[5].input.submitter = "mallory".into();
        assert_eq!(
            check_run(&renamed[3..], 3, 6, end),
            Err(PageFault::Wrong(5))
        );
        // A forged input whose link is recomputed breaks the link above it.
        let mut relinked = all.clone();
        relinked[4].input.proof.0[0] ^= 1;
        relinked[5].prev = Some(chain(
            relinked[4].prev.as_ref().unwrap(),
            &relinked[4].input,
        ));
        assert_eq!(
            check_run(&relinked[3..], 3, 6, end),
            Err(PageFault::Wrong(5))
        );
        assert_eq!(check_run(&all[2..5], 3, 6, end), Err(PageFault::Wrong(5)));
        let mut unlinked = all.clone();
        unlinked[5].prev = None;
        assert_eq!(
            check_run(&unlinked[3..], 3, 6, end),
            Err(PageFault::Wrong(5))
        );
        // A whole other chain does not end at the known link.
        let (other, _) = inputs(6, 2);
        assert_eq!(check_run(&other[3..], 3, 6, end), Err(PageFault::Wrong(5)));
    }

    #[test]
    fn a_stored_record_reads_as_a_transcript_input_and_old_records_read_too() {
        let (all, _) = inputs(1, 1);
        let bytes = serde_json::to_vec(&all[0]).unwrap();
        let plain: HeInput = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(plain, all[0].input);
        let old = serde_json::to_vec(&all[0].input).unwrap();
        let read: HeStoredInput = serde_json::from_slice(&old).unwrap();
        assert_eq!(read.prev, None);
        assert_eq!(read.input, all[0].input);
    }
}
