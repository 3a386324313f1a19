//! Resharing to a new threshold and member set under the same group key.
//!
//! Construction: secret redistribution of Desmedt and Jajodia ("Redistributing
//! secret shares to new access structures and its applications", GMU tech.
//! report ISSE-TR-97-01, 1997), made verifiable with Feldman commitments as in
//! Wong, Wang and Wing ("Verifiable secret redistribution for archive
//! systems", IEEE SISW 2002); the same re-dealing step underlies the proactive
//! refresh of Herzberg, Jarecki, Krawczyk and Yung (CRYPTO 1995).
//!
//! 1. The driver fixes the *dealers* `D` (≥ `t` old holders), the new
//!    threshold `t'` and the new members `M'` (any overlap with the old set).
//! 2. Each dealer `i ∈ D` picks a random polynomial `g_i` of degree `t' - 1`
//!    with `g_i(0) = s_i`, its old share, commits `G_ik = g_ik·G` and sends
//!    every new member `j` the commitment and `g_i(j)` (secret; the driver
//!    encrypts it to `j`).
//! 3. New member `j` checks, for each dealer, that the commitment has `t'`
//!    coefficients, that `G_i0` equals the dealer's *old public share* `Y_i`
//!    (so the dealer really re-dealt its share) and that `g_i(j)·G` matches the
//!    commitment (Feldman). A failure names the dealer.
//! 4. With `λ_i` the Lagrange coefficients of `D` at 0, the new share is
//!    `s'_j = Σ λ_i g_i(j)`, the new commitment `Γ_k = Σ λ_i G_ik`, and
//!    `Γ_0 = Σ λ_i Y_i = Y`: the group key is unchanged. Every new member
//!    derives every new public share from `Γ`.
//!
//! New members agree on the result iff they saw the same dealer commitments;
//! [`Output::transcript`] hashes them, and the driver commits the new epoch only
//! when all new members report the same transcript and group key.
//!
//! After the new epoch is committed, old holders delete their old shares:
//! new shares lie on a fresh random polynomial, so old shares combined with
//! fewer than `t'` new shares reveal nothing about the key, and old shares
//! fail verification against the new public shares. (An adversary that keeps
//! `t` *old* shares could still combine them; erasing them is the assumption
//! every proactive scheme makes, and the vault enforces it.)

use std::collections::{BTreeMap, BTreeSet};

use frost_core::{Element, Field, Group};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::codec::{Decode, Encode, Reader, Writer};
use crate::error::{DecodeError, Error, Fault};
use crate::id::{ParticipantId, SessionId};
use crate::keys::{GroupKey, KeyShare};
use crate::secret::SecretScalar;
use crate::suite::Suite;
use crate::vss::{self, Commitment, Polynomial};

mod kind {
    pub(super) const DEAL: u8 = 0x40;
}

/// What every dealer and new member agree on before a reshare starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReshareParams {
    /// Identifies this run.
    pub session: SessionId,
    /// The old holders who deal (at least the old threshold of them).
    pub dealers: BTreeSet<ParticipantId>,
    /// The new threshold `t'`.
    pub new_threshold: u16,
    /// The new member set.
    pub new_members: BTreeSet<ParticipantId>,
}

impl ReshareParams {
    fn check<C: Suite>(&self, old: &GroupKey<C>) -> Result<(), Error> {
        vss::check_threshold(self.new_threshold, self.new_members.len())?;
        if let Some(d) = self.dealers.iter().find(|d| !old.members().contains(d)) {
            return Err(Error::UnknownParticipant(*d));
        }
        if self.dealers.len() < old.threshold() as usize {
            return Err(Error::NotEnough {
                have: self.dealers.len(),
                need: old.threshold() as usize,
            });
        }
        Ok(())
    }
}

/// A dealer's message to one new member: its commitment (public) and the
/// member's sub-share `g_i(j)` (secret: encrypt in transit).
#[derive(Clone, PartialEq, Eq)]
pub struct DealMessage<C: Suite> {
    /// The run this belongs to.
    pub session: SessionId,
    commitment: Commitment<C>,
    share: SecretScalar<C>,
}

impl<C: Suite> core::fmt::Debug for DealMessage<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("reshare::DealMessage")
            .field("session", &self.session)
            .field("share", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Step 2, run by each dealer: one message per new member. Stateless: the
/// polynomial is dropped (and zeroized) on return.
pub fn deal<C: Suite, R: RngCore + CryptoRng>(
    params: &ReshareParams,
    old_group: &GroupKey<C>,
    old_share: &KeyShare<C>,
    rng: &mut R,
) -> Result<Vec<(ParticipantId, DealMessage<C>)>, Error> {
    params.check(old_group)?;
    if !params.dealers.contains(&old_share.id()) {
        return Err(Error::Misuse("this holder is not one of the dealers"));
    }
    let poly = Polynomial::random(old_share.secret(), params.new_threshold, rng);
    let commitment = poly.commit();
    Ok(params
        .new_members
        .iter()
        .map(|j| {
            (
                *j,
                DealMessage {
                    session: params.session,
                    commitment: commitment.clone(),
                    share: poly.share_for(*j),
                },
            )
        })
        .collect())
}

/// A new member collecting the dealers' messages (steps 3–4).
pub struct Receiver<C: Suite> {
    params: ReshareParams,
    me: ParticipantId,
    old_group: GroupKey<C>,
    received: BTreeMap<ParticipantId, DealMessage<C>>,
}

impl<C: Suite> core::fmt::Debug for Receiver<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("reshare::Receiver")
            .field("me", &self.me)
            .field("received", &self.received.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What a new member ends with.
#[derive(Debug)]
pub struct Output<C: Suite> {
    /// The new member's share.
    pub share: KeyShare<C>,
    /// The new group key (same verifying key, new threshold, members and public shares).
    pub group: GroupKey<C>,
    /// Hash of every dealer commitment, for the driver's agreement check.
    pub transcript: [u8; 32],
}

impl<C: Suite> Receiver<C> {
    /// Become new member `me` of `params` for the key described by `old_group`.
    pub fn new(
        params: ReshareParams,
        me: ParticipantId,
        old_group: GroupKey<C>,
    ) -> Result<Self, Error> {
        params.check(&old_group)?;
        if !params.new_members.contains(&me) {
            return Err(Error::UnknownParticipant(me));
        }
        Ok(Self {
            params,
            me,
            old_group,
            received: BTreeMap::new(),
        })
    }

    /// Accept dealer `from`'s message. Its degree and constant term are
    /// checked now (step 3; a bad one names the dealer and is not stored); its
    /// sub-share is checked in [`Receiver::finish`].
    pub fn receive(&mut self, from: ParticipantId, msg: DealMessage<C>) -> Result<(), Error> {
        if !self.params.dealers.contains(&from) {
            return Err(Error::UnknownParticipant(from));
        }
        if msg.session != self.params.session {
            return Err(Error::WrongSession);
        }
        if let Some(prev) = self.received.get(&from) {
            return if *prev == msg {
                Ok(())
            } else {
                Err(Error::misbehaved(from, Fault::Equivocation))
            };
        }
        if msg.commitment.threshold() != self.params.new_threshold as usize {
            return Err(Error::misbehaved(from, Fault::WrongDegree));
        }
        if msg.commitment.constant() != self.old_group.public_share(from)? {
            return Err(Error::misbehaved(from, Fault::WrongConstantTerm));
        }
        self.received.insert(from, msg);
        Ok(())
    }

    /// Dealers whose message has not arrived.
    pub fn missing(&self) -> Vec<ParticipantId> {
        self.params
            .dealers
            .iter()
            .filter(|d| !self.received.contains_key(d))
            .copied()
            .collect()
    }

    /// Whether every dealer's message has arrived.
    pub fn is_ready(&self) -> bool {
        self.received.len() == self.params.dealers.len()
    }

    /// Step 4: the new share and group key.
    pub fn finish(self) -> Result<Output<C>, Error> {
        if !self.is_ready() {
            return Err(Error::NotEnough {
                have: self.received.len(),
                need: self.params.dealers.len(),
            });
        }
        let lambdas = vss::lagrange_at_zero::<C>(&self.params.dealers)?;
        let t_new = self.params.new_threshold as usize;
        let mut share = <<C::Group as Group>::Field>::zero();
        let mut gamma: Vec<Element<C>> = vec![<C::Group>::identity(); t_new];
        let mut h = Sha256::new();
        h.update(b"keyquorum/reshare/transcript/v1");
        h.update(self.params.session.0);
        for (dealer, msg) in &self.received {
            let l = lambdas
                .get(dealer)
                .ok_or(Error::UnknownParticipant(*dealer))?;
            share = share + *l * *msg.share.expose();
            for (g, c) in gamma.iter_mut().zip(msg.commitment.elements()) {
                *g = *g + *c * *l;
            }
            h.update(dealer.get().to_be_bytes());
            h.update(msg.commitment.to_bytes());
        }
        let gamma = Commitment::<C>::from_elements(gamma);
        let group_key = self.old_group.verifying_element();
        if gamma.constant() != group_key {
            // Unreachable when every dealer passed `receive` and the old group
            // key is consistent; kept as a guard.
            return Err(Error::ShareMismatch);
        }
        // Step 3's Feldman check in aggregate: s'_j·G = Γ(j). Only if it fails
        // is each g_i(j) checked against G_i, naming every bad dealer.
        let share = SecretScalar::<C>::new(share);
        if share.public() != gamma.public_share(self.me) {
            let culprits: Vec<_> = self
                .received
                .iter()
                .filter(|(_, m)| m.commitment.verify(self.me, &m.share).is_err())
                .map(|(d, _)| *d)
                .collect();
            return Err(if culprits.is_empty() {
                Error::ShareMismatch
            } else {
                Error::Misbehaved {
                    culprits,
                    fault: Fault::InvalidShare,
                }
            });
        }
        let shares = self
            .params
            .new_members
            .iter()
            .map(|m| (*m, gamma.public_share(*m)))
            .collect();
        // Public shares evaluated from one commitment are consistent by construction.
        let group = GroupKey::from_parts_trusted(self.params.new_threshold, group_key, shares)?;
        let share = KeyShare::new(self.me, share, &group)?;
        Ok(Output {
            share,
            group,
            transcript: h.finalize().into(),
        })
    }
}

impl<C: Suite> Encode for DealMessage<C> {
    /// Contains the secret sub-share: encrypt before it leaves the process.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new::<C>(kind::DEAL);
        w.session(&self.session);
        vss::write_commitment::<C>(&mut w, &self.commitment);
        w.raw(&self.share.to_bytes());
        w.finish()
    }
}

impl<C: Suite> Decode for DealMessage<C> {
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new::<C>(bytes, kind::DEAL)?;
        let session = r.session()?;
        let commitment = vss::read_commitment::<C>(&mut r)?;
        let share = SecretScalar::new(r.scalar::<C>()?);
        r.finish()?;
        Ok(Self {
            session,
            commitment,
            share,
        })
    }
}

impl<C: Suite> DealMessage<C> {
    /// Corrupt the sub-share (tests of culprit identification only).
    #[doc(hidden)]
    pub fn tamper_share(&mut self) {
        let one = <<C::Group as Group>::Field>::one();
        self.share = SecretScalar::new(*self.share.expose() + one);
    }

    /// Re-deal a different secret under a fresh commitment (tests only): the
    /// Feldman check passes but the constant term is not the old share.
    #[doc(hidden)]
    pub fn tamper_constant<R: RngCore + CryptoRng>(&mut self, me: ParticipantId, rng: &mut R) {
        let poly = Polynomial::<C>::random(
            SecretScalar::random(rng),
            self.commitment.threshold() as u16,
            rng,
        );
        self.commitment = poly.commit();
        self.share = poly.share_for(me);
    }
}
