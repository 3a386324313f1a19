//! The log clock: time as the members attest it in their signed
//! statements (never a wall clock, never the leader's stamp alone), and the
//! signed authorizations used within its window (each once).

use std::collections::{BTreeMap, BTreeSet};

use keyquorum_wire::NodeId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How old a signature's `created` (or a node statement's time) may be, in
/// seconds.
pub const WINDOW_S: u64 = 300;
/// How far ahead of the clock `created` may be, in seconds.
pub const SKEW_S: u64 = 30;

/// The log clock and the signed authorizations applied while they could
/// still be fresh: each is kept until the clock passes its window, so a
/// leader that re-appends an old command gets it refused as a replay or as
/// stale.
///
/// The clock is attested by the members, not set by the leader: each
/// applied node statement records its signer's time, and the clock is the
/// (f+1)-th highest of the voters' latest times (f = ⌊(voters − 1)/2⌋), so
/// at least one honest voter's clock has reached it. A member (the leader
/// included) that signs far-future times moves only its own entry. Nodes
/// state a tick when they have had nothing else to say for a while
/// (`cluster::audit`), so the clock follows real time within seconds.
#[derive(Debug, Clone, Default)]
pub struct LogClock {
    now_ms: u64,
    latest: BTreeMap<NodeId, u64>,
    seen: BTreeMap<String, u64>,
    by_expiry: BTreeSet<(u64, String)>,
}

#[derive(Serialize, Deserialize)]
struct LogClockForm {
    now_ms: u64,
    #[serde(default)]
    latest: BTreeMap<NodeId, u64>,
    seen: BTreeMap<String, u64>,
}

impl Serialize for LogClock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        LogClockForm {
            now_ms: self.now_ms,
            latest: self.latest.clone(),
            seen: self.seen.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for LogClock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = LogClockForm::deserialize(d)?;
        let by_expiry = f.seen.iter().map(|(k, t)| (*t, k.clone())).collect();
        Ok(LogClock {
            now_ms: f.now_ms,
            latest: f.latest,
            seen: f.seen,
            by_expiry,
        })
    }
}

impl LogClock {
    /// The log clock (ms since the Unix epoch).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// How many authorizations are remembered.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }

    /// `node` stated that its clock read `time_ms`; the clock moves to the
    /// (f+1)-th highest of the `voters`' latest statements if that is later.
    pub(super) fn attest(&mut self, node: NodeId, time_ms: u64, voters: &BTreeSet<NodeId>) {
        let t = self.latest.entry(node).or_insert(0);
        *t = (*t).max(time_ms);
        self.latest.retain(|n, _| voters.contains(n));
        let mut times: Vec<u64> = self.latest.values().copied().collect();
        times.sort_unstable_by(|a, b| b.cmp(a));
        let f = voters.len().saturating_sub(1) / 2;
        if let Some(t) = times.get(f) {
            self.advance(*t);
        }
    }

    /// Move the clock to `time_ms` if that is later, and forget what can
    /// no longer be fresh.
    fn advance(&mut self, time_ms: u64) {
        self.now_ms = self.now_ms.max(time_ms);
        while let Some((until, _)) = self.by_expiry.first() {
            if *until >= self.now_ms {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.seen.remove(&key);
            }
        }
    }

    /// Whether `time_ms` is not older than the window by the clock.
    pub(super) fn not_stale(&self, time_ms: u64) -> Result<(), String> {
        if time_ms.saturating_add(WINDOW_S * 1000) < self.now_ms {
            return Err(format!(
                "stale: made at {time_ms} ms, the log clock is at {} ms",
                self.now_ms
            ));
        }
        Ok(())
    }

    /// Whether `time_ms` is fresh by the clock: not stale, and not ahead
    /// of it by more than the skew.
    pub(crate) fn fresh(&self, time_ms: u64) -> Result<(), String> {
        self.not_stale(time_ms)?;
        if time_ms > self.now_ms.saturating_add(SKEW_S * 1000) {
            return Err(format!(
                "made at {time_ms} ms, ahead of the log clock ({} ms)",
                self.now_ms
            ));
        }
        Ok(())
    }

    /// Accept `key` once; it is remembered until the clock passes `until`.
    pub(super) fn once(&mut self, key: String, until: u64) -> Result<(), String> {
        if self.seen.contains_key(&key) {
            return Err("replayed: this authorization was already used".into());
        }
        self.by_expiry.insert((until, key.clone()));
        self.seen.insert(key, until);
        Ok(())
    }
}
