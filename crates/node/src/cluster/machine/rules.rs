//! Which apply rules an entry may carry (`keyquorum_wire::control::APPLY_RULES`).
//!
//! Rules only go up. Up to rules 2 a leader moved the log to newer rules
//! on its own (the logs of those builds replay as they were applied). From
//! rules 3 on, the log takes up newer rules only once every member
//! announced, in its signed boot statement, that its build knows them: a
//! leader cannot stamp rules some replica would not apply (every replica
//! refuses such an entry alike), and during a rolling upgrade the leader
//! keeps stamping the old rules until the last member runs the new build.
//! A replica that meets rules the cluster did take up and it does not
//! know (a node downgraded, or started from an old build after the
//! upgrade) stops applying ([`Registry::check`](keyquorum_store::raft::Machine::check)).

use keyquorum_wire::control::{APPLY_RULES, MIN_APPLY_RULES};
use keyquorum_wire::NodeId;
use serde::{Deserialize, Serialize};

use super::Registry;

/// What a node announced at its latest boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announced {
    /// The newest apply rules its build knows (`None`: a build from
    /// before the announcement).
    pub rules: Option<u16>,
    /// When it stated it (its signed statement's time): an older boot
    /// statement, appended late by a leader, does not replace it.
    pub time_ms: u64,
}

/// The newest rules a leader could move the log to on its own.
const UNANNOUNCED: u16 = 2;

/// Rules a new log may start at, and the newest a cluster whose membership
/// record is not in force may take up (its members are Raft's, which a
/// leader picks): a constant, not this build's newest, so that every build
/// decides alike and no leader can stop a forming cluster's replicas with
/// rules none of them knows.
const FIRST: u16 = 3;

impl Registry {
    /// Whether the log may be at rules `rules` after the entries applied
    /// so far: the rules it is at or older (refused elsewhere), rules up to
    /// [`UNANNOUNCED`], up to [`FIRST`] for the first entry, or rules every
    /// member announced (past [`FIRST`], members of the record in force).
    /// Err says why not.
    pub(super) fn may_take_up(&self, rules: u16) -> Result<(), String> {
        // A forming cluster (no client yet): its first entry sets the rules.
        let forming = self.rules == 0 && self.clients.is_empty();
        if rules <= self.rules || rules <= UNANNOUNCED || (forming && rules <= FIRST) {
            return Ok(());
        }
        if rules > FIRST && !self.roster.in_force {
            return Err(format!(
                "apply rules {rules} are taken up only once the membership record is in force"
            ));
        }
        let behind: Vec<_> = self
            .members
            .keys()
            .filter(|m| {
                self.announced
                    .get(m)
                    .and_then(|a| a.rules)
                    .is_none_or(|a| a < rules)
            })
            .collect();
        if behind.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "apply rules {rules} are not taken up: nodes {behind:?} have not announced \
                 them (the log is at rules {})",
                self.rules
            ))
        }
    }

    /// Node `node` booted, a build knowing `rules`, as it stated at
    /// `time_ms`; an older statement than the one kept changes nothing.
    pub(super) fn announce(&mut self, node: NodeId, rules: Option<u16>, time_ms: u64) {
        if self
            .announced
            .get(&node)
            .is_some_and(|a| a.time_ms > time_ms)
        {
            return;
        }
        self.announced.insert(node, Announced { rules, time_ms });
    }

    /// The newest apply rules node `node`'s build knows, as its latest boot
    /// announced (`None`: not announced, or not a node this replica knows).
    pub fn announced_rules(&self, node: NodeId) -> Option<u16> {
        self.announced.get(&node).and_then(|a| a.rules)
    }

    /// The rules a leader stamps on its next entry: the newest this build
    /// knows that the log may take up.
    pub fn rules_to_stamp(&self) -> u16 {
        (self.rules.max(MIN_APPLY_RULES)..=APPLY_RULES)
            .rev()
            .find(|r| self.may_take_up(*r).is_ok())
            .unwrap_or(self.rules.max(MIN_APPLY_RULES))
    }
}

/// Test hook (`fault-injection` only): the rules the nodes named here
/// announce at boot instead of this build's, as an older build would
/// (rolling-upgrade tests run every node in one process).
#[cfg(feature = "fault-injection")]
static ANNOUNCE_AS: std::sync::Mutex<std::collections::BTreeMap<NodeId, u16>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Test hook: make node `node`'s next boots announce `rules` (`None`: this
/// build's own), as if it ran an older build.
#[cfg(feature = "fault-injection")]
pub fn announce_as(node: NodeId, rules: Option<u16>) {
    if let Ok(mut m) = ANNOUNCE_AS.lock() {
        match rules {
            Some(r) => m.insert(node, r),
            None => m.remove(&node),
        };
    }
}

/// The newest apply rules node `node` announces at boot: this build's
/// ([`APPLY_RULES`]), unless a test hook says otherwise.
pub fn announced_by(node: NodeId) -> u16 {
    #[cfg(feature = "fault-injection")]
    if let Some(r) = ANNOUNCE_AS.lock().ok().and_then(|m| m.get(&node).copied()) {
        return r;
    }
    let _ = node;
    APPLY_RULES
}
