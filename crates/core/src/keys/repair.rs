//! Repair: rebuild one member's lost share from `t` helpers without anyone
//! learning any share, on frost-core's `keys::repairable` (the "Enrollment
//! Repairable Threshold Scheme" of Laing and Stinson, "A survey and refinement
//! of repairable threshold schemes", J. Math. Cryptology 2018, §4 — the scheme
//! frost-core implements), made verifiable with public images of the deltas
//! so a helper that cheats is named.
//!
//! Helpers `H` (|H| ≥ t, not including the member `r` being repaired):
//! 1. Helper `i` splits `ζ_i·s_i` (its share weighted by its Lagrange
//!    coefficient for `H` at `x_r`) into random deltas `δ_ij`, one per helper
//!    `j` (frost `repair_share_part1`). It broadcasts `D_ij = δ_ij·G` for every
//!    `j` and sends `δ_ij` to helper `j` (secret). Everyone checks
//!    `Σ_j D_ij = ζ_i·Y_i` against `i`'s public share.
//! 2. Helper `j` checks each `δ_ij·G = D_ij`, sums them into `σ_j` (frost
//!    `repair_share_part2`) and sends `σ_j` to `r` (secret).
//! 3. `r` checks `σ_j·G = Σ_i D_ij`, sums the `σ_j` into its share (frost
//!    `repair_share_part3`) and checks it against its public share `Y_r`.
//!
//! The images `D_ij` reveal nothing beyond `Y_i` and `Y_r`, which are public.
//! Every message carries a hash of the sender's view of all `D_ij`, so helpers
//! and `r` detect a helper that broadcast different images to different peers.

use std::collections::{BTreeMap, BTreeSet};

use frost_core::keys::repairable::{self, Delta, Sigma};
use frost_core::{Element, Field, Group};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::codec::{Decode, Encode, Reader, Writer, MAX_PARTICIPANTS};
use crate::error::{DecodeError, Error, Fault};
use crate::id::{ParticipantId, SessionId};
use crate::keys::{GroupKey, KeyShare};
use crate::secret::SecretScalar;
use crate::suite::Suite;
use crate::vss::{self, x_of};

mod kind {
    pub(super) const IMAGES: u8 = 0x60;
    pub(super) const DELTA: u8 = 0x61;
    pub(super) const SIGMA: u8 = 0x62;
}

/// What the helpers and the repaired member agree on before a repair starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairParams {
    /// Identifies this run.
    pub session: SessionId,
    /// The helpers (at least `t` members, not `target`).
    pub helpers: BTreeSet<ParticipantId>,
    /// The member whose share is rebuilt.
    pub target: ParticipantId,
}

impl RepairParams {
    fn check<C: Suite>(&self, group: &GroupKey<C>) -> Result<(), Error> {
        if !group.members().contains(&self.target) {
            return Err(Error::UnknownParticipant(self.target));
        }
        if self.helpers.contains(&self.target) {
            return Err(Error::InvalidParameters("the repaired member cannot help"));
        }
        if let Some(h) = self.helpers.iter().find(|h| !group.members().contains(h)) {
            return Err(Error::UnknownParticipant(*h));
        }
        if self.helpers.len() < group.threshold() as usize {
            return Err(Error::NotEnough {
                have: self.helpers.len(),
                need: group.threshold() as usize,
            });
        }
        Ok(())
    }
}

/// Step 1 broadcast (to helpers and target): the images `D_ij` of helper `i`'s
/// deltas. Public.
#[derive(Clone, PartialEq, Eq)]
pub struct ImagesMessage<C: Suite> {
    /// The run this belongs to.
    pub session: SessionId,
    images: BTreeMap<ParticipantId, Element<C>>,
}

impl<C: Suite> core::fmt::Debug for ImagesMessage<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("repair::ImagesMessage")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// Step 1 private message: the delta `δ_ij` for helper `j`. Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct DeltaMessage<C: Suite> {
    /// The run this belongs to.
    pub session: SessionId,
    delta: SecretScalar<C>,
}

impl<C: Suite> core::fmt::Debug for DeltaMessage<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("repair::DeltaMessage")
            .field("session", &self.session)
            .field("delta", &"<redacted>")
            .finish()
    }
}

/// Step 2 private message to the target: `σ_j`. Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SigmaMessage<C: Suite> {
    /// The run this belongs to.
    pub session: SessionId,
    /// Hash of all images the sender saw.
    pub transcript: [u8; 32],
    sigma: SecretScalar<C>,
}

impl<C: Suite> core::fmt::Debug for SigmaMessage<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("repair::SigmaMessage")
            .field("session", &self.session)
            .field("sigma", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Collected images, shared by helpers and the target.
struct Images<C: Suite> {
    params: RepairParams,
    group: GroupKey<C>,
    by_helper: BTreeMap<ParticipantId, BTreeMap<ParticipantId, Element<C>>>,
}

impl<C: Suite> Images<C> {
    fn receive(&mut self, from: ParticipantId, msg: ImagesMessage<C>) -> Result<(), Error> {
        if !self.params.helpers.contains(&from) {
            return Err(Error::UnknownParticipant(from));
        }
        if msg.session != self.params.session {
            return Err(Error::WrongSession);
        }
        if let Some(prev) = self.by_helper.get(&from) {
            return if *prev == msg.images {
                Ok(())
            } else {
                Err(Error::misbehaved(from, Fault::Equivocation))
            };
        }
        if msg.images.keys().ne(self.params.helpers.iter()) {
            return Err(Error::misbehaved(from, Fault::WrongDegree));
        }
        // Σ_j D_ij must equal ζ_i·Y_i.
        let zeta =
            vss::lagrange_at::<C>(&self.params.helpers, from, &x_of::<C>(self.params.target))?;
        let sum = msg
            .images
            .values()
            .fold(<C::Group>::identity(), |acc, d| acc + *d);
        if sum != self.group.public_share(from)? * zeta {
            return Err(Error::misbehaved(from, Fault::WrongConstantTerm));
        }
        self.by_helper.insert(from, msg.images);
        Ok(())
    }

    fn complete(&self) -> bool {
        self.by_helper.len() == self.params.helpers.len()
    }

    /// `Σ_i D_ij`: the public image of `σ_j`.
    fn column(&self, j: ParticipantId) -> Element<C> {
        self.by_helper
            .values()
            .filter_map(|row| row.get(&j))
            .fold(<C::Group>::identity(), |acc, d| acc + *d)
    }

    fn transcript(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"keyquorum/repair/images/v1");
        h.update(self.params.session.0);
        h.update(self.params.target.get().to_be_bytes());
        for (i, row) in &self.by_helper {
            h.update(i.get().to_be_bytes());
            for (j, d) in row {
                h.update(j.get().to_be_bytes());
                h.update(crate::codec::element_to_bytes::<C>(d).unwrap_or_default());
            }
        }
        h.finalize().into()
    }
}

/// A helper in a repair.
pub struct Helper<C: Suite> {
    me: ParticipantId,
    images: Images<C>,
    deltas: BTreeMap<ParticipantId, SecretScalar<C>>,
}

impl<C: Suite> core::fmt::Debug for Helper<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("repair::Helper")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

/// What a helper sends at the start: the broadcast images and one delta per helper.
pub type HelperStart<C> = (
    Helper<C>,
    ImagesMessage<C>,
    Vec<(ParticipantId, DeltaMessage<C>)>,
);

impl<C: Suite> Helper<C> {
    /// Step 1 for the holder of `share`.
    pub fn start<R: RngCore + CryptoRng>(
        params: RepairParams,
        group: GroupKey<C>,
        share: &KeyShare<C>,
        rng: &mut R,
    ) -> Result<HelperStart<C>, Error> {
        params.check(&group)?;
        let me = share.id();
        if !params.helpers.contains(&me) {
            return Err(Error::Misuse("this holder is not one of the helpers"));
        }
        let helpers: Vec<_> = params.helpers.iter().map(|h| h.to_frost::<C>()).collect();
        let deltas =
            repairable::repair_share_part1(&helpers, share.frost(), rng, params.target.to_frost())
                .map_err(Error::frost)?;
        let mut own = BTreeMap::new();
        let mut images = BTreeMap::new();
        let mut out = Vec::new();
        for j in &params.helpers {
            let d = deltas
                .get(&j.to_frost())
                .ok_or(Error::Misuse("frost produced no delta for a helper"))?;
            let d = SecretScalar::<C>::from_bytes(&zeroize::Zeroizing::new(d.serialize()))?;
            images.insert(*j, d.public());
            if *j == me {
                own.insert(me, d);
            } else {
                out.push((
                    *j,
                    DeltaMessage {
                        session: params.session,
                        delta: d,
                    },
                ));
            }
        }
        let msg = ImagesMessage {
            session: params.session,
            images: images.clone(),
        };
        let mut state = Images {
            params,
            group,
            by_helper: BTreeMap::new(),
        };
        state.by_helper.insert(me, images);
        Ok((
            Helper {
                me,
                images: state,
                deltas: own,
            },
            msg,
            out,
        ))
    }

    /// Accept helper `from`'s images.
    pub fn receive_images(
        &mut self,
        from: ParticipantId,
        msg: ImagesMessage<C>,
    ) -> Result<(), Error> {
        if from == self.me {
            return Err(Error::UnknownParticipant(from));
        }
        self.images.receive(from, msg)
    }

    /// Accept helper `from`'s delta for us; it must match `from`'s image, so
    /// images from `from` must arrive first.
    pub fn receive_delta(
        &mut self,
        from: ParticipantId,
        msg: DeltaMessage<C>,
    ) -> Result<(), Error> {
        if from == self.me || !self.images.params.helpers.contains(&from) {
            return Err(Error::UnknownParticipant(from));
        }
        if msg.session != self.images.params.session {
            return Err(Error::WrongSession);
        }
        let image = self
            .images
            .by_helper
            .get(&from)
            .and_then(|row| row.get(&self.me))
            .ok_or(Error::Misuse("images from this helper have not arrived"))?;
        if msg.delta.public() != *image {
            return Err(Error::misbehaved(from, Fault::InconsistentValue));
        }
        self.deltas.insert(from, msg.delta);
        Ok(())
    }

    /// Whether every image and delta has arrived.
    pub fn is_ready(&self) -> bool {
        self.images.complete() && self.deltas.len() == self.images.params.helpers.len()
    }

    /// Step 2: `σ_j` for the target.
    pub fn finish(self) -> Result<(ParticipantId, SigmaMessage<C>), Error> {
        if !self.is_ready() {
            return Err(Error::NotEnough {
                have: self.deltas.len(),
                need: self.images.params.helpers.len(),
            });
        }
        let deltas = self
            .deltas
            .values()
            .map(|d| Delta::<C>::deserialize(&d.to_bytes()).map_err(Error::frost))
            .collect::<Result<Vec<_>, _>>()?;
        let sigma = repairable::repair_share_part2(&deltas);
        let sigma = SecretScalar::<C>::from_bytes(&zeroize::Zeroizing::new(sigma.serialize()))?;
        Ok((
            self.images.params.target,
            SigmaMessage {
                session: self.images.params.session,
                transcript: self.images.transcript(),
                sigma,
            },
        ))
    }
}

/// The member whose share is rebuilt.
pub struct Target<C: Suite> {
    images: Images<C>,
    sigmas: BTreeMap<ParticipantId, SecretScalar<C>>,
}

impl<C: Suite> core::fmt::Debug for Target<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("repair::Target")
            .field("me", &self.images.params.target)
            .finish_non_exhaustive()
    }
}

impl<C: Suite> Target<C> {
    /// Prepare to receive a repaired share for `params.target`.
    pub fn new(params: RepairParams, group: GroupKey<C>) -> Result<Self, Error> {
        params.check(&group)?;
        Ok(Self {
            images: Images {
                params,
                group,
                by_helper: BTreeMap::new(),
            },
            sigmas: BTreeMap::new(),
        })
    }

    /// Accept helper `from`'s images.
    pub fn receive_images(
        &mut self,
        from: ParticipantId,
        msg: ImagesMessage<C>,
    ) -> Result<(), Error> {
        self.images.receive(from, msg)
    }

    /// Accept helper `from`'s `σ`; checked once every image is in.
    pub fn receive_sigma(
        &mut self,
        from: ParticipantId,
        msg: SigmaMessage<C>,
    ) -> Result<(), Error> {
        if !self.images.params.helpers.contains(&from) {
            return Err(Error::UnknownParticipant(from));
        }
        if msg.session != self.images.params.session {
            return Err(Error::WrongSession);
        }
        if !self.images.complete() {
            return Err(Error::Misuse("sigma before every helper's images"));
        }
        if msg.transcript != self.images.transcript() {
            return Err(Error::misbehaved(from, Fault::TranscriptMismatch));
        }
        if msg.sigma.public() != self.images.column(from) {
            return Err(Error::misbehaved(from, Fault::InconsistentValue));
        }
        self.sigmas.insert(from, msg.sigma);
        Ok(())
    }

    /// Whether every `σ` has arrived.
    pub fn is_ready(&self) -> bool {
        self.sigmas.len() == self.images.params.helpers.len()
    }

    /// Step 3: the rebuilt share, checked against the target's public share.
    pub fn finish(self) -> Result<KeyShare<C>, Error> {
        if !self.is_ready() {
            return Err(Error::NotEnough {
                have: self.sigmas.len(),
                need: self.images.params.helpers.len(),
            });
        }
        let sigmas = self
            .sigmas
            .values()
            .map(|s| Sigma::<C>::deserialize(&s.to_bytes()).map_err(Error::frost))
            .collect::<Result<Vec<_>, _>>()?;
        let target = self.images.params.target;
        let package =
            repairable::repair_share_part3(&sigmas, target.to_frost(), self.images.group.frost())
                .map_err(Error::frost)?;
        let share = KeyShare::from_frost(target, package);
        if share.public_share() != self.images.group.public_share(target)? {
            return Err(Error::ShareMismatch);
        }
        Ok(share)
    }
}

impl<C: Suite> Encode for ImagesMessage<C> {
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new::<C>(kind::IMAGES);
        w.session(&self.session);
        w.ids(self.images.keys());
        for e in self.images.values() {
            w.element::<C>(e);
        }
        w.finish()
    }
}

impl<C: Suite> Decode for ImagesMessage<C> {
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new::<C>(bytes, kind::IMAGES)?;
        let session = r.session()?;
        let ids = r.ids()?;
        if ids.len() > MAX_PARTICIPANTS {
            return Err(DecodeError::TooLong {
                len: ids.len(),
                max: MAX_PARTICIPANTS,
            });
        }
        let mut images = BTreeMap::new();
        for id in ids {
            images.insert(id, r.element::<C>()?);
        }
        r.finish()?;
        Ok(Self { session, images })
    }
}

impl<C: Suite> Encode for DeltaMessage<C> {
    /// Contains a secret delta: encrypt before it leaves the process.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new::<C>(kind::DELTA);
        w.session(&self.session);
        w.raw(&self.delta.to_bytes());
        w.finish()
    }
}

impl<C: Suite> Decode for DeltaMessage<C> {
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new::<C>(bytes, kind::DELTA)?;
        let session = r.session()?;
        let delta = SecretScalar::new(r.scalar::<C>()?);
        r.finish()?;
        Ok(Self { session, delta })
    }
}

impl<C: Suite> Encode for SigmaMessage<C> {
    /// Contains a secret sum: encrypt before it leaves the process.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new::<C>(kind::SIGMA);
        w.session(&self.session);
        w.raw(&self.transcript);
        w.raw(&self.sigma.to_bytes());
        w.finish()
    }
}

impl<C: Suite> Decode for SigmaMessage<C> {
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new::<C>(bytes, kind::SIGMA)?;
        let session = r.session()?;
        let transcript = r.array32()?;
        let sigma = SecretScalar::new(r.scalar::<C>()?);
        r.finish()?;
        Ok(Self {
            session,
            transcript,
            sigma,
        })
    }
}

impl<C: Suite> DeltaMessage<C> {
    /// Corrupt the delta (tests of culprit identification only).
    #[doc(hidden)]
    pub fn tamper(&mut self) {
        let one = <<C::Group as Group>::Field>::one();
        self.delta = SecretScalar::new(*self.delta.expose() + one);
    }
}

impl<C: Suite> SigmaMessage<C> {
    /// Corrupt sigma (tests of culprit identification only).
    #[doc(hidden)]
    pub fn tamper(&mut self) {
        let one = <<C::Group as Group>::Field>::one();
        self.sigma = SecretScalar::new(*self.sigma.expose() + one);
    }
}
