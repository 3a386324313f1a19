//! Fixtures shared by the criterion benches and the `scaling` example: each
//! prepares everything the *other* participants send to participant 1, so the
//! timed closure is exactly participant 1's own work in one protocol run,
//! including decoding what it receives and encoding what it sends (as over a
//! network).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench fixtures"
)]

use std::collections::BTreeSet;

use keyquorum_core::codec::{Decode, Encode};
use keyquorum_core::dkg::{self, DkgParams};
use keyquorum_core::local::{self, Holders};
use keyquorum_core::{refresh, reshare, Ed25519, KeyShare, ParticipantId, SessionId};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub type C = Ed25519;

pub const SIZES: [(u16, u16); 6] = [(2, 3), (3, 5), (7, 10), (11, 16), (22, 32), (43, 64)];

pub fn p1() -> ParticipantId {
    ParticipantId::new(1).unwrap()
}

pub fn ids(r: impl IntoIterator<Item = u16>) -> BTreeSet<ParticipantId> {
    r.into_iter()
        .map(|i| ParticipantId::new(i).unwrap())
        .collect()
}

fn own_rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(0x5eed)
}

/// What participant 1 receives from the others, as bytes.
fn encode_from_others<M: Encode>(msgs: Vec<(ParticipantId, M)>) -> Vec<(ParticipantId, Vec<u8>)> {
    msgs.into_iter()
        .filter(|(from, _)| *from != p1())
        .map(|(from, m)| (from, m.to_bytes()))
        .collect()
}

/// Encode what participant 1 sends (the cost is real; the bytes are dropped).
fn send<M: Encode>(msgs: impl IntoIterator<Item = M>) {
    for m in msgs {
        std::hint::black_box(m.to_bytes());
    }
}

pub struct DkgFixture {
    params: DkgParams,
    round1: Vec<(ParticipantId, Vec<u8>)>,
    round2: Vec<(ParticipantId, Vec<u8>)>,
}

pub fn dkg_fixture(t: u16, n: u16) -> DkgFixture {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let params = DkgParams {
        session: SessionId([1; 32]),
        threshold: t,
        members: ids(1..=n),
    };
    let mut states = Vec::new();
    let mut round1 = Vec::new();
    for me in params.members.iter() {
        let (s, m) = if *me == p1() {
            dkg::start::<C, _>(params.clone(), *me, &mut own_rng()).unwrap()
        } else {
            dkg::start::<C, _>(params.clone(), *me, &mut rng).unwrap()
        };
        states.push((*me, s));
        round1.push((*me, m));
    }
    for (me, s) in states.iter_mut() {
        for (from, m) in &round1 {
            if from != me {
                s.receive(*from, m.clone()).unwrap();
            }
        }
    }
    let mut round2 = Vec::new();
    for (me, s) in states {
        let (_, out) = s.advance().unwrap();
        round2.extend(
            out.into_iter()
                .filter(|(to, _)| *to == p1())
                .map(|(_, m)| (me, m)),
        );
    }
    DkgFixture {
        params,
        round1: encode_from_others(round1),
        round2: encode_from_others(round2),
    }
}

/// Participant 1's whole DKG: start, receive n-1 broadcasts, advance,
/// receive n-1 shares, finish.
pub fn dkg_participant(f: &DkgFixture) -> KeyShare<C> {
    let (mut s, m) = dkg::start::<C, _>(f.params.clone(), p1(), &mut own_rng()).unwrap();
    send([m]);
    for (from, m) in &f.round1 {
        s.receive(*from, Decode::from_bytes(m).unwrap()).unwrap();
    }
    let (mut s, out) = s.advance().unwrap();
    send(out.into_iter().map(|(_, m)| m));
    for (from, m) in &f.round2 {
        s.receive(*from, Decode::from_bytes(m).unwrap()).unwrap();
    }
    s.finish().unwrap().0
}

pub fn holders(t: u16, n: u16) -> Holders<C> {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    local::dkg::<C, _>(SessionId([2; 32]), t, &ids(1..=n), &mut rng).unwrap()
}

pub struct RefreshFixture {
    holders: Holders<C>,
    round1: Vec<(ParticipantId, Vec<u8>)>,
    round2: Vec<(ParticipantId, Vec<u8>)>,
}

const REFRESH: SessionId = SessionId([3; 32]);

pub fn refresh_fixture(h: Holders<C>) -> RefreshFixture {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut states = Vec::new();
    let mut round1 = Vec::new();
    for (me, share) in &h.shares {
        let (s, m) = if *me == p1() {
            refresh::start(REFRESH, &h.group, share.clone(), &mut own_rng()).unwrap()
        } else {
            refresh::start(REFRESH, &h.group, share.clone(), &mut rng).unwrap()
        };
        states.push((*me, s));
        round1.push((*me, m));
    }
    for (me, s) in states.iter_mut() {
        for (from, m) in &round1 {
            if from != me {
                s.receive(*from, m.clone()).unwrap();
            }
        }
    }
    let mut round2 = Vec::new();
    for (me, s) in states {
        let (_, out) = s.advance().unwrap();
        round2.extend(
            out.into_iter()
                .filter(|(to, _)| *to == p1())
                .map(|(_, m)| (me, m)),
        );
    }
    RefreshFixture {
        holders: h,
        round1: encode_from_others(round1),
        round2: encode_from_others(round2),
    }
}

/// Participant 1's whole refresh.
pub fn refresh_participant(f: &RefreshFixture) -> KeyShare<C> {
    let share = f.holders.shares[&p1()].clone();
    let (mut s, m) = refresh::start(REFRESH, &f.holders.group, share, &mut own_rng()).unwrap();
    send([m]);
    for (from, m) in &f.round1 {
        s.receive(*from, Decode::from_bytes(m).unwrap()).unwrap();
    }
    let (mut s, out) = s.advance().unwrap();
    send(out.into_iter().map(|(_, m)| m));
    for (from, m) in &f.round2 {
        s.receive(*from, Decode::from_bytes(m).unwrap()).unwrap();
    }
    s.finish().unwrap().0
}

pub struct ReshareFixture {
    holders: Holders<C>,
    params: reshare::ReshareParams,
    to_p1: Vec<(ParticipantId, Vec<u8>)>,
}

/// Reshare t-of-n to (t+1)-of-(n+1); dealers are members 1..=t.
pub fn reshare_fixture(h: Holders<C>) -> ReshareFixture {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let t = h.group.threshold();
    let n = h.group.members().len() as u16;
    let params = reshare::ReshareParams {
        session: SessionId([4; 32]),
        dealers: ids(1..=t),
        new_threshold: t + 1,
        new_members: ids(1..=n + 1),
    };
    let mut to_p1 = Vec::new();
    for d in &params.dealers {
        let msgs = reshare::deal(&params, &h.group, &h.shares[d], &mut rng).unwrap();
        to_p1.extend(
            msgs.into_iter()
                .filter(|(to, _)| *to == p1())
                .map(|(_, m)| (*d, m)),
        );
    }
    ReshareFixture {
        holders: h,
        params,
        // Participant 1 is a dealer too and receives its own deal.
        to_p1: to_p1.into_iter().map(|(d, m)| (d, m.to_bytes())).collect(),
    }
}

/// Participant 1's whole reshare: deal as an old holder, then receive and
/// combine as a new member.
pub fn reshare_participant(f: &ReshareFixture) -> KeyShare<C> {
    let out = reshare::deal(
        &f.params,
        &f.holders.group,
        &f.holders.shares[&p1()],
        &mut own_rng(),
    )
    .unwrap();
    assert_eq!(out.len(), f.params.new_members.len());
    send(out.into_iter().map(|(_, m)| m));
    let mut r = reshare::Receiver::new(f.params.clone(), p1(), f.holders.group.clone()).unwrap();
    for (from, m) in &f.to_p1 {
        r.receive(*from, Decode::from_bytes(m).unwrap()).unwrap();
    }
    r.finish().unwrap().share
}
