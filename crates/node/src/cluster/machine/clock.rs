//! The log clock: time as the members attest it in their signed
//! statements (never a wall clock, never the leader's stamp alone), and the
//! signed authorizations used within its window (each once).

use std::collections::{BTreeMap, BTreeSet};

use keyquorum_wire::{Hex32, NodeId};
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
    restore: Option<RestoreFloor>,
}

/// Words in every refusal for a restore's floor (a node signs a refused
/// statement again, later).
pub const RESTORED: &str = "the control plane was restored";

/// After a restore of the control plane (`crate::cluster::backup::restore`
/// marks the checkpoint it writes): the authorizations applied after the
/// checkpoint are forgotten with their nonces, so nothing signed before
/// the restore is taken. The floor is the (f+1)-th lowest of the times the
/// voters state in their first boot on the restored state (each names the
/// restore's id, which no statement from before it can): at least one of
/// them is an honest voter's, so the floor is past every signature made
/// before the restore; while fewer have booted, no client command and no
/// other statement is taken. Lying voters' far-future times cannot hold it
/// up once `2f + 1` have booted (it only moves down as more boot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreFloor {
    /// The restore's id: SHA-256 of the checkpoint restored.
    pub id: Hex32,
    /// Each voter's time in its boot on the restored state.
    pub booted: BTreeMap<NodeId, u64>,
    /// The floor, once `f + 1` voters have booted.
    pub floor: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct LogClockForm {
    now_ms: u64,
    #[serde(default)]
    latest: BTreeMap<NodeId, u64>,
    seen: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restore: Option<RestoreFloor>,
}

impl Serialize for LogClock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        LogClockForm {
            now_ms: self.now_ms,
            latest: self.latest.clone(),
            seen: self.seen.clone(),
            restore: self.restore.clone(),
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
            restore: f.restore,
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

    /// Mark this state as restored from a checkpoint with id `id`: nothing
    /// signed before the voters boot on it is taken ([`RestoreFloor`]).
    pub fn begin_restore(&mut self, id: Hex32) {
        self.restore = Some(RestoreFloor {
            id,
            booted: BTreeMap::new(),
            floor: None,
        });
    }

    /// The restore a node names in its boot statement, while it matters.
    pub fn restore_id(&self) -> Option<Hex32> {
        self.restore.as_ref().map(|r| r.id)
    }

    /// The restore's floor, while it matters.
    pub fn restore_floor(&self) -> Option<&RestoreFloor> {
        self.restore.as_ref()
    }

    /// Voter `node` booted on the restored state at `time_ms`: the floor is
    /// the (f+1)-th lowest of such boots, once there are that many.
    pub(super) fn booted_after_restore(
        &mut self,
        node: NodeId,
        time_ms: u64,
        voters: &BTreeSet<NodeId>,
    ) {
        let Some(r) = self.restore.as_mut() else {
            return;
        };
        if !voters.contains(&node) {
            return;
        }
        let t = r.booted.entry(node).or_insert(time_ms);
        *t = (*t).min(time_ms);
        r.booted.retain(|n, _| voters.contains(n));
        let mut times: Vec<u64> = r.booted.values().copied().collect();
        times.sort_unstable();
        let f = voters.len().saturating_sub(1) / 2;
        // Once set, a floor stays (voters added later raise f: the boots
        // counted so far do not unset it).
        if let Some(t) = times.get(f) {
            r.floor = Some(*t);
        }
    }

    /// Whether something signed at `time_ms` may be taken after a restore
    /// (always, without one); a refusal's reason contains [`RESTORED`].
    pub(super) fn after_restore(&self, time_ms: u64) -> Result<(), String> {
        match self.restore.as_ref().map(|r| r.floor) {
            None => Ok(()),
            Some(None) => Err(format!(
                "{RESTORED}: nothing is taken until a majority of the voters have started on the \
                 restored state"
            )),
            // A skew past the floor: before the restore, a client's time
            // was taken up to the skew ahead of the clock.
            Some(Some(floor)) if time_ms < floor.saturating_add(SKEW_S * 1000) => Err(format!(
                "{RESTORED}: made at {time_ms} ms, before the restore (nothing signed before \
                 {floor} ms and {SKEW_S} s is taken): sign it again"
            )),
            Some(Some(_)) => Ok(()),
        }
    }

    /// Move the clock to `time_ms` if that is later, and forget what can
    /// no longer be fresh.
    fn advance(&mut self, time_ms: u64) {
        self.now_ms = self.now_ms.max(time_ms);
        // Past the floor by a window, nothing from before the restore is
        // fresh any more: the floor has done its work.
        if self
            .restore
            .as_ref()
            .and_then(|r| r.floor)
            .is_some_and(|f| f.saturating_add(WINDOW_S * 1000) < self.now_ms)
        {
            self.restore = None;
        }
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
        self.after_restore(time_ms)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> NodeId {
        NodeId::try_from(n).unwrap()
    }

    /// With three voters (f = 1) the floor waits for two boots and is then
    /// the second lowest: one liar stating an early time cannot pull it
    /// below an honest boot, and one stating a far-future time holds it up
    /// only until the third voter boots.
    #[test]
    fn a_restore_floor_is_an_honest_voters_boot_or_later() {
        let voters: BTreeSet<NodeId> = [1, 2, 3].into_iter().map(id).collect();
        let (restore, honest, later, future) = (1_000, 500_000, 520_000, u64::MAX / 2);
        let floor = |boots: &[(u64, u64)]| {
            let mut c = LogClock::default();
            c.begin_restore(Hex32([7; 32]));
            for (n, t) in boots {
                c.booted_after_restore(id(*n), *t, &voters);
            }
            c.restore_floor().and_then(|r| r.floor)
        };
        assert_eq!(floor(&[(1, honest)]), None);
        assert_eq!(floor(&[(3, restore), (1, honest)]), Some(honest));
        assert_eq!(floor(&[(3, future), (1, honest)]), Some(future));
        assert_eq!(floor(&[(3, future), (1, honest), (2, later)]), Some(later));
        // A node outside the voters counts for nothing; a second boot of the
        // same voter keeps its first (earliest) time.
        assert_eq!(floor(&[(9, honest), (1, honest)]), None);
        assert_eq!(floor(&[(1, later), (1, honest), (2, later)]), Some(later));
        let mut c = LogClock::default();
        c.begin_restore(Hex32([7; 32]));
        assert!(c.after_restore(honest).is_err());
        c.booted_after_restore(id(1), honest, &voters);
        c.booted_after_restore(id(2), later, &voters);
        let skew = SKEW_S * 1000;
        assert!(c.after_restore(later + skew - 1).is_err());
        assert!(c.after_restore(later + skew).is_ok());
        // Voters added after the floor was set do not unset it.
        let more: BTreeSet<NodeId> = (1..=7).map(id).collect();
        c.booted_after_restore(id(3), later, &more);
        assert_eq!(c.restore_floor().and_then(|r| r.floor), Some(later));
        assert!(LogClock::default().after_restore(0).is_ok());
    }
}
