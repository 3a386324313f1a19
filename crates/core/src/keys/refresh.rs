//! Proactive refresh: every member gets a new share of the same key, with the
//! same threshold and member set (Herzberg, Jarecki, Krawczyk, Yung, CRYPTO
//! 1995), on frost-core's `keys::refresh` DKG-style flow.
//!
//! Each member deals a random polynomial with constant term **zero** and
//! publishes a Feldman commitment to its non-constant coefficients (the
//! constant's commitment is the identity, implied rather than sent). Every
//! member adds the sub-shares it receives to its old share. Because every
//! dealt polynomial vanishes at 0, the group key cannot change, whatever a
//! dealer does; a sub-share off its dealer's commitment names the dealer.
//!
//! Same flow and checks as [`crate::dkg`]: round one broadcast, round two
//! secret sub-shares carrying a transcript hash of the round-one broadcasts.
//! frost-core does not check the round-one proof of knowledge in refresh (the
//! dealt secret is zero by construction), and neither do we; the degree check
//! and the Feldman check of every sub-share are what make refresh verifiable.

use std::collections::BTreeMap;

use frost_core::keys::dkg::{round1, round2};
use frost_core::keys::{refresh as frefresh, SigningShare, VerifiableSecretSharingCommitment};
use frost_core::{Field, Group, Identifier};
use rand_core::{CryptoRng, RngCore};

use crate::codec::{Decode, Encode, Reader, Writer};
use crate::dkg::{missing, our_commitment, read_package, transcript, write_package, DkgParams};
use crate::error::{DecodeError, Error, Fault};
use crate::id::{ParticipantId, SessionId};
use crate::keys::{GroupKey, KeyShare};
use crate::secret::SecretScalar;
use crate::suite::Suite;
use crate::vss::Commitment;

mod kind {
    pub(super) const ROUND1: u8 = 0x50;
    pub(super) const ROUND2: u8 = 0x51;
}

/// Round-one broadcast: commitment to the non-constant coefficients of the
/// sender's zero-constant polynomial. Public.
#[derive(Clone, PartialEq, Eq)]
pub struct Round1Message<C: Suite> {
    /// The run this belongs to.
    pub session: SessionId,
    package: round1::Package<C>,
}

impl<C: Suite> core::fmt::Debug for Round1Message<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("refresh::Round1Message")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// Round-two sub-share to one member. Secret: encrypt in transit.
#[derive(Clone, PartialEq, Eq)]
pub struct Round2Message<C: Suite> {
    /// The run this belongs to.
    pub session: SessionId,
    /// Hash of the round-one broadcasts the sender saw.
    pub transcript: [u8; 32],
    share: SecretScalar<C>,
}

impl<C: Suite> core::fmt::Debug for Round2Message<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("refresh::Round2Message")
            .field("session", &self.session)
            .field("share", &"<redacted>")
            .finish()
    }
}

/// Start a refresh of `group` as the holder of `share`. Every member of the
/// group takes part; `session` identifies the run.
pub fn start<C: Suite, R: RngCore + CryptoRng>(
    session: SessionId,
    group: &GroupKey<C>,
    share: KeyShare<C>,
    rng: &mut R,
) -> Result<(Round1<C>, Round1Message<C>), Error> {
    let params = DkgParams {
        session,
        threshold: group.threshold(),
        members: group.members().clone(),
    };
    let me = share.id();
    if share.verifying_element() != group.verifying_element()
        || share.public_share() != group.public_share(me)?
    {
        return Err(Error::ShareMismatch);
    }
    let n = params.members.len() as u16;
    let (secret, package) =
        frefresh::refresh_dkg_part1::<C, _>(me.to_frost(), n, params.threshold, &mut *rng)
            .map_err(Error::frost)?;
    let msg = Round1Message {
        session,
        package: package.clone(),
    };
    Ok((
        Round1 {
            params,
            group: group.clone(),
            share,
            secret,
            own: package,
            received: BTreeMap::new(),
        },
        msg,
    ))
}

/// What [`Round1::advance`] returns: the round-two state and one secret
/// message per peer.
pub type Advance<C> = (Round2<C>, Vec<(ParticipantId, Round2Message<C>)>);

/// Round one of a refresh.
pub struct Round1<C: Suite> {
    params: DkgParams,
    group: GroupKey<C>,
    share: KeyShare<C>,
    secret: round1::SecretPackage<C>,
    own: round1::Package<C>,
    received: BTreeMap<ParticipantId, round1::Package<C>>,
}

impl<C: Suite> core::fmt::Debug for Round1<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("refresh::Round1")
            .field("me", &self.share.id())
            .field("received", &self.received.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn check_sender(params: &DkgParams, me: ParticipantId, from: ParticipantId) -> Result<(), Error> {
    if from == me || !params.members.contains(&from) {
        return Err(Error::UnknownParticipant(from));
    }
    Ok(())
}

impl<C: Suite> Round1<C> {
    /// Accept `from`'s broadcast; a commitment of the wrong degree names `from`.
    pub fn receive(&mut self, from: ParticipantId, msg: Round1Message<C>) -> Result<(), Error> {
        check_sender(&self.params, self.share.id(), from)?;
        if msg.session != self.params.session {
            return Err(Error::WrongSession);
        }
        if let Some(prev) = self.received.get(&from) {
            return if *prev == msg.package {
                Ok(())
            } else {
                Err(Error::misbehaved(from, Fault::Equivocation))
            };
        }
        if msg.package.commitment().coefficients().len() + 1 != self.params.threshold as usize {
            return Err(Error::misbehaved(from, Fault::WrongDegree));
        }
        self.received.insert(from, msg.package);
        Ok(())
    }

    /// Members whose broadcast has not arrived.
    pub fn missing(&self) -> Vec<ParticipantId> {
        missing(&self.params.members, self.share.id(), self.received.keys())
    }

    /// Whether every broadcast has arrived.
    pub fn is_ready(&self) -> bool {
        self.received.len() + 1 == self.params.members.len()
    }

    /// Move to round two: the state and one secret sub-share per peer.
    pub fn advance(self) -> Result<Advance<C>, Error> {
        if !self.is_ready() {
            return Err(Error::NotEnough {
                have: self.received.len() + 1,
                need: self.params.members.len(),
            });
        }
        let me = self.share.id();
        let transcript = transcript::<C>(
            b"keyquorum/refresh/round1-transcript/v1",
            &self.params,
            me,
            &self.own,
            &self.received,
        );
        let by_frost: BTreeMap<Identifier<C>, round1::Package<C>> = self
            .received
            .iter()
            .map(|(id, p)| (id.to_frost(), p.clone()))
            .collect();
        let (secret, packages) =
            frefresh::refresh_dkg_part2(self.secret, &by_frost).map_err(Error::frost)?;
        let mut out = Vec::with_capacity(packages.len());
        for peer in self.params.members.iter().filter(|m| **m != me) {
            let pkg = packages
                .get(&peer.to_frost())
                .ok_or(Error::Misuse("frost produced no package for a member"))?;
            out.push((
                *peer,
                Round2Message {
                    session: self.params.session,
                    transcript,
                    share: SecretScalar::new(pkg.signing_share().to_scalar()),
                },
            ));
        }
        Ok((
            Round2 {
                params: self.params,
                group: self.group,
                share: self.share,
                secret,
                round1: by_frost,
                transcript,
                received: BTreeMap::new(),
            },
            out,
        ))
    }
}

/// Round two of a refresh.
pub struct Round2<C: Suite> {
    params: DkgParams,
    group: GroupKey<C>,
    share: KeyShare<C>,
    secret: round2::SecretPackage<C>,
    round1: BTreeMap<Identifier<C>, round1::Package<C>>,
    transcript: [u8; 32],
    received: BTreeMap<ParticipantId, SecretScalar<C>>,
}

impl<C: Suite> core::fmt::Debug for Round2<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("refresh::Round2")
            .field("me", &self.share.id())
            .field("received", &self.received.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<C: Suite> Round2<C> {
    /// Accept `from`'s sub-share. Its transcript hash is checked now; the
    /// sub-share is checked against `from`'s commitment (with the implied
    /// identity constant term) in [`Round2::finish`].
    pub fn receive(&mut self, from: ParticipantId, msg: Round2Message<C>) -> Result<(), Error> {
        let me = self.share.id();
        check_sender(&self.params, me, from)?;
        if msg.session != self.params.session {
            return Err(Error::WrongSession);
        }
        if let Some(prev) = self.received.get(&from) {
            return if *prev == msg.share {
                Ok(())
            } else {
                Err(Error::misbehaved(from, Fault::Equivocation))
            };
        }
        if msg.transcript != self.transcript {
            return Err(Error::misbehaved(from, Fault::TranscriptMismatch));
        }
        self.received.insert(from, msg.share);
        Ok(())
    }

    /// Members whose sub-share has not arrived.
    pub fn missing(&self) -> Vec<ParticipantId> {
        missing(&self.params.members, self.share.id(), self.received.keys())
    }

    /// Whether every sub-share has arrived.
    pub fn is_ready(&self) -> bool {
        self.received.len() + 1 == self.params.members.len()
    }

    /// The refreshed share and group key (same verifying key and threshold,
    /// new public shares).
    pub fn finish(self) -> Result<(KeyShare<C>, GroupKey<C>), Error> {
        if !self.is_ready() {
            return Err(Error::NotEnough {
                have: self.received.len() + 1,
                need: self.params.members.len(),
            });
        }
        let round2: BTreeMap<Identifier<C>, round2::Package<C>> = self
            .received
            .iter()
            .map(|(id, s)| {
                (
                    id.to_frost(),
                    round2::Package::new(SigningShare::new(*s.expose())),
                )
            })
            .collect();
        let me = self.share.id();
        let (key_package, public) = frefresh::refresh_dkg_shares(
            &self.secret,
            &self.round1,
            &round2,
            self.group.frost().clone(),
            self.share.frost().clone(),
        )
        .map_err(|e| match e {
            // frost stops at the first bad sub-share without naming it: check
            // each one against its dealer's commitment to name every culprit.
            frost_core::Error::InvalidSecretShare { .. } => {
                let culprits: Vec<_> = self
                    .received
                    .iter()
                    .filter(|(from, s)| {
                        self.round1.get(&from.to_frost()).is_none_or(|p| {
                            zero_constant_commitment::<C>(p.commitment())
                                .verify(me, s)
                                .is_err()
                        })
                    })
                    .map(|(from, _)| *from)
                    .collect();
                if culprits.is_empty() {
                    Error::frost(e)
                } else {
                    Error::Misbehaved {
                        culprits,
                        fault: Fault::InvalidShare,
                    }
                }
            }
            other => Error::frost(other),
        })?;
        if public.verifying_key() != self.group.frost().verifying_key() {
            return Err(Error::ShareMismatch);
        }
        let group = GroupKey::from_frost_trusted(self.params.members.clone(), public)?;
        let share = KeyShare::from_frost(me, key_package);
        if share.public_share() != group.public_share(me)? {
            return Err(Error::ShareMismatch);
        }
        Ok((share, group))
    }
}

/// `(identity, C_1, ..., C_{t-1})`: the commitment of a zero-constant polynomial.
fn zero_constant_commitment<C: Suite>(c: &VerifiableSecretSharingCommitment<C>) -> Commitment<C> {
    let mut elements = vec![<C::Group>::identity()];
    elements.extend(our_commitment(c).elements().iter().copied());
    Commitment::from_elements(elements)
}

impl<C: Suite> Encode for Round1Message<C> {
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new::<C>(kind::ROUND1);
        w.session(&self.session);
        write_package(&mut w, &self.package);
        w.finish()
    }
}

impl<C: Suite> Decode for Round1Message<C> {
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new::<C>(bytes, kind::ROUND1)?;
        let session = r.session()?;
        let package = read_package(&mut r)?;
        r.finish()?;
        Ok(Self { session, package })
    }
}

impl<C: Suite> Encode for Round2Message<C> {
    /// Contains the secret sub-share: encrypt before it leaves the process.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new::<C>(kind::ROUND2);
        w.session(&self.session);
        w.raw(&self.transcript);
        w.raw(&self.share.to_bytes());
        w.finish()
    }
}

impl<C: Suite> Decode for Round2Message<C> {
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new::<C>(bytes, kind::ROUND2)?;
        let session = r.session()?;
        let transcript = r.array32()?;
        let share = SecretScalar::new(r.scalar::<C>()?);
        r.finish()?;
        Ok(Self {
            session,
            transcript,
            share,
        })
    }
}

impl<C: Suite> Round2Message<C> {
    /// Corrupt the sub-share (tests of culprit identification only).
    #[doc(hidden)]
    pub fn tamper_share(&mut self) {
        let one = <<C::Group as Group>::Field>::one();
        self.share = SecretScalar::new(*self.share.expose() + one);
    }
}
