//! Join requests a member holds for the operators (`POST /v1/join` is
//! public): shared fairly between the addresses asking.

use std::collections::BTreeMap;
use std::time::Duration;

use keyquorum_wire::api::JoinRequest;
use keyquorum_wire::{Hex32, NodeId};

use crate::cluster::tls::Source;
use crate::error::NodeError;

/// Join requests a member holds at once (which go first: [`Pending`]).
const MAX_PENDING: usize = 64;

/// Join requests a member holds, keyed by (id, identity, address) so
/// neither a stranger asking under the same id nor anyone re-sending a
/// copy of the real request from elsewhere can replace or move the real
/// node's. The endpoint answers anyone, so the room is shared fairly
/// between the addresses asking (an IPv4 address or an IPv6 /64, as for
/// connections): one holds at most [`MAX_PER_SOURCE`] (its own oldest
/// goes), and past [`MAX_PENDING`] the oldest request of the addresses
/// holding the most goes. A request not asked again within
/// [`PENDING_FOR`] lapses (a joining node asks every 5 s). A flood from a
/// few addresses never pushes out a node asking from its own (a request's
/// own time does not count, so none can claim to be newest).
#[derive(Default)]
pub(crate) struct Pending(std::sync::Mutex<PendingInner>);

impl Pending {
    /// Hold `request` from `source` (see [`Pending`]).
    pub(crate) fn insert(
        &self,
        request: JoinRequest,
        source: Option<Source>,
    ) -> Result<(), NodeError> {
        self.0
            .lock()
            .map_err(|_| NodeError::Internal("join requests: lock poisoned".into()))?
            .insert(request, source);
        Ok(())
    }

    /// The requests held for nodes that are not `members`, the newest copy
    /// of each; what lapsed is dropped.
    pub(crate) fn held(&self, members: &[NodeId]) -> Vec<JoinRequest> {
        let Ok(mut p) = self.0.lock() else {
            return Vec::new();
        };
        p.lapse(std::time::Instant::now());
        p.requests.retain(|(id, _, _), _| !members.contains(id));
        p.listed()
    }
}

/// Join requests one address may have pending at once.
const MAX_PER_SOURCE: usize = 4;

/// How long a join request is held without being asked again.
const PENDING_FOR: Duration = Duration::from_secs(60);

/// A held request's key: the id, the identity and the address it came
/// from (`None`: not over the network).
type PendingKey = (NodeId, Hex32, Option<Source>);

/// [`Pending`]'s contents: each request with its arrival number.
#[derive(Default)]
struct PendingInner {
    requests: BTreeMap<PendingKey, Held>,
    arrivals: u64,
}

/// A pending request, when it first arrived and when it was last asked.
struct Held {
    arrival: u64,
    asked: std::time::Instant,
    request: JoinRequest,
}

impl PendingInner {
    /// Hold `request` from `source`, making room as [`Pending`] says.
    fn insert(&mut self, request: JoinRequest, source: Option<Source>) {
        self.insert_at(request, source, std::time::Instant::now());
    }

    fn insert_at(&mut self, request: JoinRequest, source: Option<Source>, now: std::time::Instant) {
        self.lapse(now);
        let key = (request.id, request.info.identity, source);
        self.arrivals += 1;
        let arrival = match self.requests.get(&key) {
            // Asked again from the same address: it keeps its place.
            Some(h) => h.arrival,
            None => self.arrivals,
        };
        self.requests.insert(
            key,
            Held {
                arrival,
                asked: now,
                request,
            },
        );
        // This address's own oldest, while it holds more than its share.
        loop {
            let mine = self.requests.iter().filter(|(k, _)| k.2 == source);
            if mine.clone().count() <= MAX_PER_SOURCE {
                break;
            }
            match mine.min_by_key(|(_, h)| h.arrival).map(|(k, _)| *k) {
                Some(k) => self.requests.remove(&k),
                None => break,
            };
        }
        // Past the room: the oldest request of the addresses holding the
        // most (ties between addresses broken by arrival, not by address).
        while self.requests.len() > MAX_PENDING {
            let mut count: BTreeMap<Option<Source>, usize> = BTreeMap::new();
            for k in self.requests.keys() {
                *count.entry(k.2).or_default() += 1;
            }
            let most = count.values().copied().max().unwrap_or(0);
            let oldest = self
                .requests
                .iter()
                .filter(|(k, _)| count.get(&k.2) == Some(&most))
                .min_by_key(|(_, h)| h.arrival)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => self.requests.remove(&k),
                None => break,
            };
        }
    }

    /// Drop what was not asked again within [`PENDING_FOR`].
    fn lapse(&mut self, now: std::time::Instant) {
        self.requests
            .retain(|_, h| now.saturating_duration_since(h.asked) <= PENDING_FOR);
    }

    /// The requests held, one per (id, identity): the newest copy.
    fn listed(&self) -> Vec<JoinRequest> {
        let mut newest: BTreeMap<(NodeId, Hex32), &JoinRequest> = BTreeMap::new();
        for ((id, identity, _), h) in &self.requests {
            let e = newest.entry((*id, *identity)).or_insert(&h.request);
            if h.request.created_ms > e.created_ms {
                *e = &h.request;
            }
        }
        newest.into_values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use keyquorum_wire::control::NodeInfo;
    use keyquorum_wire::Hex;

    fn request(id: u16, key: u8) -> JoinRequest {
        JoinRequest {
            id: NodeId::new(id).unwrap(),
            info: NodeInfo {
                addr: format!("https://10.1.0.{key}:7001"),
                identity: Hex32([key; 32]),
                hpke: Hex32([key; 32]),
            },
            fingerprint: Hex32::default(),
            created_ms: 0,
            signature: Hex(Vec::new()),
        }
    }

    fn held_from(p: &PendingInner, source: Source) -> usize {
        p.requests.keys().filter(|k| k.2 == Some(source)).count()
    }

    #[test]
    fn a_flood_of_join_requests_never_pushes_out_another_addresss() {
        let honest = Source::V4([10, 0, 0, 4]);
        let mut p = PendingInner::default();
        p.insert(request(4, 4), Some(honest));
        // One address asking under many ids holds at most its share; its
        // own oldest go.
        let flood = Source::V4([192, 0, 2, 1]);
        for k in 0..200u16 {
            p.insert(request(100 + k, (k % 250) as u8 + 5), Some(flood));
        }
        assert_eq!(held_from(&p, flood), MAX_PER_SOURCE);
        assert_eq!(held_from(&p, honest), 1);
        assert!(p
            .requests
            .contains_key(&(NodeId::new(4).unwrap(), Hex32([4; 32]), Some(honest))));
        // Many addresses, each at its share: past the room, the busiest
        // address's oldest go, never the one asking once.
        for a in 0..40u8 {
            for k in 0..MAX_PER_SOURCE as u8 {
                let id = 1000 + u16::from(a) * 10 + u16::from(k);
                p.insert(
                    request(id, a.wrapping_mul(7).wrapping_add(k)),
                    Some(Source::V4([198, 51, a, 1])),
                );
            }
        }
        assert_eq!(p.requests.len(), MAX_PENDING);
        assert_eq!(held_from(&p, honest), 1, "the node asking once stays");
        // Asked again, it keeps its request (and its place).
        p.insert(request(4, 4), Some(honest));
        assert_eq!(held_from(&p, honest), 1);
        assert_eq!(p.requests.len(), MAX_PENDING);
        // A copy of it re-sent from the flooding address is that address's
        // own entry: evicting it there leaves the node's own.
        p.insert(request(4, 4), Some(flood));
        for k in 0..8u16 {
            p.insert(request(500 + k, 7), Some(flood));
        }
        assert_eq!(held_from(&p, honest), 1);
        assert_eq!(
            p.listed()
                .iter()
                .filter(|r| r.id == NodeId::new(4).unwrap())
                .count(),
            1
        );
    }

    #[test]
    fn join_requests_not_asked_again_lapse_and_ties_go_by_arrival() {
        let t0 = std::time::Instant::now();
        let mut p = PendingInner::default();
        // 64 addresses with one request each, the honest one's address
        // the highest of all: a 65th address's request evicts the oldest,
        // not the highest address's.
        for a in 0..64u8 {
            p.insert_at(
                request(100 + u16::from(a), a),
                Some(Source::V4([10, 0, 1, a])),
                t0,
            );
        }
        let honest = Source::V6([0xff; 8]);
        p.insert_at(request(4, 200), Some(honest), t0);
        assert_eq!(p.requests.len(), MAX_PENDING);
        assert_eq!(held_from(&p, honest), 1);
        assert_eq!(
            held_from(&p, Source::V4([10, 0, 1, 0])),
            0,
            "the oldest went"
        );
        // Asked again every 5 s, it stays; the others, never asked again,
        // lapse after a minute.
        let mut at = t0;
        for _ in 0..13 {
            at += Duration::from_secs(5);
            p.insert_at(request(4, 200), Some(honest), at);
        }
        assert_eq!(p.requests.len(), 1);
        assert_eq!(held_from(&p, honest), 1);
    }
}
