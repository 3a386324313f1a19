//! Coordinator selection by rendezvous (highest-random-weight) hashing:
//! Thaler & Ravishankar, "Using name-based mappings to increase hit rates"
//! (IEEE/ACM ToN 6(1), 1998).
//!
//! The weight of member `j` for identifier `id` is the first 8 bytes
//! (big-endian) of `SHA-256("keyquorum/msg/hrw/v1" ‖ id ‖ j ‖ identity_j)`;
//! the coordinators are the `m` members with the largest weights (ties,
//! which need a 64-bit collision, go to the smaller node id). The choice
//! depends only on the identifier and the *set* of members, never on their
//! order; when a member joins, only the identifiers it now wins move (about
//! `1/(n+1)` of them); when one leaves, only the ones it held.

use sha2::{Digest, Sha256};

use super::MsgError;

const HRW_LABEL: &[u8] = b"keyquorum/msg/hrw/v1";

/// A cluster member as routing sees it: node id and Ed25519 identity (the
/// identity is hashed in, so a re-keyed node is a different member).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Node id.
    pub id: u64,
    /// Identity public key.
    pub identity: [u8; 32],
}

/// The rendezvous weight of `member` for `id`.
pub fn weight(id: &[u8; 32], member: &Member) -> u64 {
    let mut h = Sha256::new();
    h.update(HRW_LABEL);
    h.update(id);
    h.update(member.id.to_be_bytes());
    h.update(member.identity);
    let d: [u8; 32] = h.finalize().into();
    let [a, b, c, e, f, g, i, j, ..] = d;
    u64::from_be_bytes([a, b, c, e, f, g, i, j])
}

/// The `m` coordinators for `id` among `members`, highest weight first.
/// Duplicated node ids are refused (a membership must list each node once).
pub fn coordinators(id: &[u8; 32], members: &[Member], m: usize) -> Result<Vec<u64>, MsgError> {
    if m == 0 {
        return Err(MsgError::Invalid("at least one coordinator per message"));
    }
    if m > members.len() {
        return Err(MsgError::Invalid("more coordinators than members"));
    }
    if has_duplicate_ids(members) {
        return Err(MsgError::Invalid(
            "a node id appears twice in the membership",
        ));
    }
    let mut ranked: Vec<(u64, u64)> = members.iter().map(|mb| (weight(id, mb), mb.id)).collect();
    ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(ranked.into_iter().take(m).map(|(_, node)| node).collect())
}

fn has_duplicate_ids(members: &[Member]) -> bool {
    let mut ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    ids.windows(2).any(|w| matches!(w, [a, b] if a == b))
}

/// Whether `node` is one of the `m` coordinators for `id`.
pub fn is_coordinator(
    id: &[u8; 32],
    members: &[Member],
    m: usize,
    node: u64,
) -> Result<(), MsgError> {
    if coordinators(id, members, m)?.contains(&node) {
        Ok(())
    } else {
        Err(MsgError::WrongCoordinator)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap is a failed test"
)]
mod tests {
    use super::*;

    fn members(n: u64) -> Vec<Member> {
        (1..=n)
            .map(|i| {
                let mut identity = [0u8; 32];
                identity[..8].copy_from_slice(&i.to_le_bytes());
                identity[31] = 0xA5;
                Member { id: i, identity }
            })
            .collect()
    }

    fn id_of(i: u64) -> [u8; 32] {
        Sha256::digest(i.to_be_bytes()).into()
    }

    #[test]
    fn choice_ignores_membership_order_and_is_checked() {
        let ms = members(7);
        let mut reversed = ms.clone();
        reversed.reverse();
        for i in 0..500 {
            let id = id_of(i);
            let a = coordinators(&id, &ms, 3).unwrap();
            assert_eq!(a, coordinators(&id, &reversed, 3).unwrap());
            assert_eq!(a.len(), 3);
            // The first of m is the m = 1 choice.
            assert_eq!(a[0], coordinators(&id, &ms, 1).unwrap()[0]);
            assert!(is_coordinator(&id, &ms, 3, a[2]).is_ok());
            let outsider = ms.iter().map(|m| m.id).find(|n| !a.contains(n)).unwrap();
            assert_eq!(
                is_coordinator(&id, &ms, 3, outsider),
                Err(MsgError::WrongCoordinator)
            );
        }
        assert!(coordinators(&id_of(0), &ms, 0).is_err());
        assert!(coordinators(&id_of(0), &ms, 8).is_err());
        let mut dup = ms.clone();
        dup.push(ms[0]);
        assert!(coordinators(&id_of(0), &dup, 1).is_err());
    }

    /// Issue #4: over 100,000 identifiers on 5 nodes, max/mean load ≤ 1.05.
    #[test]
    fn load_spreads_evenly() {
        let ms = members(5);
        let mut load = [0u64; 5];
        let total = 100_000u64;
        for i in 0..total {
            let c = coordinators(&id_of(i), &ms, 1).unwrap()[0];
            load[(c - 1) as usize] += 1;
        }
        let mean = total as f64 / 5.0;
        let max = *load.iter().max().unwrap() as f64;
        println!(
            "100,000 identifiers on 5 nodes: max/mean {:.4} ({load:?})",
            max / mean
        );
        assert!(max / mean <= 1.05, "max/mean {} ({load:?})", max / mean);
    }

    /// When a sixth node joins, only the identifiers it now wins move — and
    /// they are about 1/6 of all. (The measured fraction is printed with
    /// `--nocapture` and reported in BENCHMARKS.md.)
    #[test]
    fn a_join_moves_only_what_the_new_node_wins() {
        let five = members(5);
        let six = members(6);
        let total = 60_000u64;
        let mut moved = 0u64;
        for i in 0..total {
            let id = id_of(i);
            let before = coordinators(&id, &five, 1).unwrap()[0];
            let after = coordinators(&id, &six, 1).unwrap()[0];
            if before != after {
                assert_eq!(after, 6, "a move goes to the new node only");
                moved += 1;
            }
        }
        let fraction = moved as f64 / total as f64;
        println!("join 5 -> 6 nodes: {fraction:.4} of choices moved (ideal 1/6 = 0.1667)");
        assert!((fraction - 1.0 / 6.0).abs() < 0.01, "{fraction}");
    }
}
