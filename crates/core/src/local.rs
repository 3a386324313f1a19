//! An in-process message router that runs every participant's state machine
//! and delivers each message through its byte encoding, as a network would.
//!
//! It is the reference driver for the protocols: the CLI demo, the tests and
//! the benchmarks use it, and the node crate does the same routing over the
//! network. It checks at the end that every participant reached the same
//! public result.

use std::collections::{BTreeMap, BTreeSet};

use rand_core::{CryptoRng, RngCore};

use crate::codec::{Decode, Encode};
use crate::error::Error;
use crate::id::{ParticipantId, SessionId};
use crate::keys::{GroupKey, KeyShare};
use crate::suite::Suite;
use crate::{dkg, refresh, repair, reshare, sign};

/// Every holder's share of one key, and the agreed group key.
#[derive(Debug, Clone)]
pub struct Holders<C: Suite> {
    /// The public group key.
    pub group: GroupKey<C>,
    /// Each member's share.
    pub shares: BTreeMap<ParticipantId, KeyShare<C>>,
}

/// Send a message through its encoding.
pub fn wire<M: Encode + Decode>(m: &M) -> Result<M, Error> {
    Ok(M::from_bytes(&m.to_bytes())?)
}

fn agree<C: Suite>(groups: impl IntoIterator<Item = GroupKey<C>>) -> Result<GroupKey<C>, Error> {
    let mut it = groups.into_iter();
    let first = it.next().ok_or(Error::NotEnough { have: 0, need: 1 })?;
    if it.any(|g| g != first) {
        return Err(Error::InvalidParameters(
            "participants computed different group keys",
        ));
    }
    Ok(first)
}

/// Run a whole DKG among `members` with threshold `t`.
pub fn dkg<C: Suite, R: RngCore + CryptoRng>(
    session: SessionId,
    threshold: u16,
    members: &BTreeSet<ParticipantId>,
    rng: &mut R,
) -> Result<Holders<C>, Error> {
    let params = dkg::DkgParams {
        session,
        threshold,
        members: members.clone(),
    };
    let mut round1 = BTreeMap::new();
    let mut broadcasts = Vec::new();
    for me in members {
        let (state, msg) = dkg::start::<C, _>(params.clone(), *me, rng)?;
        round1.insert(*me, state);
        broadcasts.push((*me, msg));
    }
    for (from, msg) in &broadcasts {
        for (to, state) in round1.iter_mut() {
            if to != from {
                state.receive(*from, wire(msg)?)?;
            }
        }
    }
    let mut round2 = BTreeMap::new();
    let mut direct = Vec::new();
    for (me, state) in round1 {
        let (state, out) = state.advance()?;
        round2.insert(me, state);
        direct.extend(out.into_iter().map(|(to, m)| (me, to, m)));
    }
    for (from, to, msg) in &direct {
        round2
            .get_mut(to)
            .ok_or(Error::UnknownParticipant(*to))?
            .receive(*from, wire(msg)?)?;
    }
    let mut shares = BTreeMap::new();
    let mut groups = Vec::new();
    for (me, state) in round2 {
        let (share, group) = state.finish()?;
        shares.insert(me, share);
        groups.push(group);
    }
    Ok(Holders {
        group: agree(groups)?,
        shares,
    })
}

/// Sign `message` with the given signers (two rounds, fresh nonces).
pub fn sign<C: Suite, R: RngCore + CryptoRng>(
    holders: &Holders<C>,
    session: SessionId,
    signers: &BTreeSet<ParticipantId>,
    message: &[u8],
    rng: &mut R,
) -> Result<sign::Signature<C>, Error> {
    let mut nonces = BTreeMap::new();
    let mut commitments = Vec::new();
    for s in signers {
        let share = holders.shares.get(s).ok_or(Error::UnknownParticipant(*s))?;
        let (nonce, commitment) = sign::commit(share, rng);
        nonces.insert(*s, nonce);
        commitments.push(wire(&commitment)?);
    }
    let mut coordinator = sign::Coordinator::new(&holders.group, session, message, commitments)?;
    let package = wire(coordinator.package())?;
    for (s, nonce) in nonces {
        let share = holders.shares.get(&s).ok_or(Error::UnknownParticipant(s))?;
        let sig_share = nonce.sign(share, &package)?;
        coordinator.receive(s, wire(&sig_share)?)?;
    }
    coordinator.finish()
}

/// Refresh every member's share.
pub fn refresh<C: Suite, R: RngCore + CryptoRng>(
    holders: Holders<C>,
    session: SessionId,
    rng: &mut R,
) -> Result<Holders<C>, Error> {
    let mut round1 = BTreeMap::new();
    let mut broadcasts = Vec::new();
    for (me, share) in holders.shares {
        let (state, msg) = refresh::start(session, &holders.group, share, rng)?;
        round1.insert(me, state);
        broadcasts.push((me, msg));
    }
    for (from, msg) in &broadcasts {
        for (to, state) in round1.iter_mut() {
            if to != from {
                state.receive(*from, wire(msg)?)?;
            }
        }
    }
    let mut round2 = BTreeMap::new();
    let mut direct = Vec::new();
    for (me, state) in round1 {
        let (state, out) = state.advance()?;
        round2.insert(me, state);
        direct.extend(out.into_iter().map(|(to, m)| (me, to, m)));
    }
    for (from, to, msg) in &direct {
        round2
            .get_mut(to)
            .ok_or(Error::UnknownParticipant(*to))?
            .receive(*from, wire(msg)?)?;
    }
    let mut shares = BTreeMap::new();
    let mut groups = Vec::new();
    for (me, state) in round2 {
        let (share, group) = state.finish()?;
        shares.insert(me, share);
        groups.push(group);
    }
    Ok(Holders {
        group: agree(groups)?,
        shares,
    })
}

/// Reshare from `dealers` (old holders) to `new_threshold`-of-`new_members`.
pub fn reshare<C: Suite, R: RngCore + CryptoRng>(
    holders: &Holders<C>,
    session: SessionId,
    dealers: &BTreeSet<ParticipantId>,
    new_threshold: u16,
    new_members: &BTreeSet<ParticipantId>,
    rng: &mut R,
) -> Result<Holders<C>, Error> {
    let params = reshare::ReshareParams {
        session,
        dealers: dealers.clone(),
        new_threshold,
        new_members: new_members.clone(),
    };
    let mut receivers = BTreeMap::new();
    for m in new_members {
        receivers.insert(
            *m,
            reshare::Receiver::new(params.clone(), *m, holders.group.clone())?,
        );
    }
    for d in dealers {
        let share = holders.shares.get(d).ok_or(Error::UnknownParticipant(*d))?;
        for (to, msg) in reshare::deal(&params, &holders.group, share, rng)? {
            receivers
                .get_mut(&to)
                .ok_or(Error::UnknownParticipant(to))?
                .receive(*d, wire(&msg)?)?;
        }
    }
    let mut shares = BTreeMap::new();
    let mut groups = Vec::new();
    let mut transcripts = BTreeSet::new();
    for (me, r) in receivers {
        let out = r.finish()?;
        shares.insert(me, out.share);
        groups.push(out.group);
        transcripts.insert(out.transcript);
    }
    if transcripts.len() != 1 {
        return Err(Error::InvalidParameters(
            "new members saw different dealer commitments",
        ));
    }
    Ok(Holders {
        group: agree(groups)?,
        shares,
    })
}

/// Rebuild `target`'s share with the help of `helpers`.
pub fn repair<C: Suite, R: RngCore + CryptoRng>(
    holders: &Holders<C>,
    session: SessionId,
    helpers: &BTreeSet<ParticipantId>,
    target: ParticipantId,
    rng: &mut R,
) -> Result<KeyShare<C>, Error> {
    let params = repair::RepairParams {
        session,
        helpers: helpers.clone(),
        target,
    };
    let mut target_state = repair::Target::new(params.clone(), holders.group.clone())?;
    let mut states = BTreeMap::new();
    let mut images = Vec::new();
    let mut deltas = Vec::new();
    for h in helpers {
        let share = holders.shares.get(h).ok_or(Error::UnknownParticipant(*h))?;
        let (state, img, out) =
            repair::Helper::start(params.clone(), holders.group.clone(), share, rng)?;
        states.insert(*h, state);
        images.push((*h, img));
        deltas.extend(out.into_iter().map(|(to, m)| (*h, to, m)));
    }
    for (from, img) in &images {
        target_state.receive_images(*from, wire(img)?)?;
        for (to, state) in states.iter_mut() {
            if to != from {
                state.receive_images(*from, wire(img)?)?;
            }
        }
    }
    for (from, to, msg) in &deltas {
        states
            .get_mut(to)
            .ok_or(Error::UnknownParticipant(*to))?
            .receive_delta(*from, wire(msg)?)?;
    }
    for (h, state) in states {
        let (_, sigma) = state.finish()?;
        target_state.receive_sigma(h, wire(&sigma)?)?;
    }
    target_state.finish()
}
