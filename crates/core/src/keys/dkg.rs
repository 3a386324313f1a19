//! Distributed key generation: Pedersen DKG with Schnorr proofs of knowledge,
//! as in frost-core's `keys::dkg` (Komlo–Goldberg, "FROST", SAC 2020, Fig. 1;
//! RFC 9591 Appendix C leaves DKG out of scope). No participant ever holds the
//! group secret, not even during generation.
//!
//! ```text
//! start ──(broadcast Round1Message)──► Round1 ──receive×(n-1)──► advance
//!   ──(Round2Message to each peer, secret: encrypt in transit)──► Round2
//!   ──receive×(n-1)──► finish ──► (KeyShare, GroupKey)
//! ```
//!
//! Every message is checked when it arrives and a bad one is rejected with
//! [`Error::Misbehaved`] naming its sender: an invalid proof of knowledge, a
//! commitment of the wrong degree, a share off the sender's commitment, two
//! different messages from one sender, or a sender that saw a different set of
//! round-one broadcasts (each round-two message carries a hash of its sender's
//! round-one transcript, so a broadcast that was equivocated is caught).
//! The driver decides what to do with the culprit (exclude and restart).
//!
//! **Complaints** (Gennaro–Jarecki–Krawczyk–Rabin, "Secure Distributed Key
//! Generation for Discrete-Log Based Cryptosystems", J. Cryptology 2007,
//! Fig. 2, step 1(c)–(d)): a round-two share that does not check out is not
//! a verdict by itself, since only its recipient can see it. The recipient
//! [`Round2::dispute`]s it and lists its [`Round2::accusations`]; the
//! accused answers by revealing the share it dealt (its round-two message,
//! in the clear), which anyone checks against the accused's round-one
//! commitment ([`check_revealed`]). A valid reveal dismisses the
//! accusation and the accuser takes the revealed share
//! ([`Round2::resolve`]), so the run keeps every member; an invalid or
//! missing reveal convicts the accused. Revealing `f_j(i)` teaches nothing
//! to an adversary when the accuser `i` is corrupt (it received that value)
//! or the dealer `j` is; the driver must therefore let an accused reveal
//! only against a complaint its accuser signed, and an honest recipient
//! disputes only a share its dealer demonstrably sent (signed), never a
//! share that did not arrive and never a transcript mismatch (which a
//! member that equivocated in round one can cause between two honest
//! members).

use std::collections::{BTreeMap, BTreeSet};

use frost_core::keys::dkg::{self as fdkg, round1, round2};
use frost_core::keys::{
    CoefficientCommitment, KeyPackage, PublicKeyPackage, SigningShare,
    VerifiableSecretSharingCommitment, VerifyingShare,
};
use frost_core::{Field, Group, Identifier, Signature};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::codec::{Decode, Encode, Reader, Writer};
use crate::error::{DecodeError, Error, Fault};
use crate::id::{ParticipantId, SessionId};
use crate::keys::{GroupKey, KeyShare};
use crate::secret::SecretScalar;
use crate::suite::Suite;
use crate::vss::{self, Commitment};

const TRANSCRIPT_LABEL: &[u8] = b"keyquorum/dkg/round1-transcript/v1";

mod kind {
    pub(super) const ROUND1: u8 = 0x20;
    pub(super) const ROUND2: u8 = 0x21;
}

/// What every participant of one DKG run agrees on before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkgParams {
    /// Identifies this run; carried in every message.
    pub session: SessionId,
    /// Signing threshold `t` (2 ≤ t ≤ n).
    pub threshold: u16,
    /// The participants (n = `members.len()`).
    pub members: BTreeSet<ParticipantId>,
}

impl DkgParams {
    fn check(&self, me: ParticipantId) -> Result<(), Error> {
        vss::check_threshold(self.threshold, self.members.len())?;
        if !self.members.contains(&me) {
            return Err(Error::UnknownParticipant(me));
        }
        Ok(())
    }

    fn check_sender(&self, me: ParticipantId, from: ParticipantId) -> Result<(), Error> {
        if from == me || !self.members.contains(&from) {
            return Err(Error::UnknownParticipant(from));
        }
        Ok(())
    }
}

/// Round-one broadcast: the sender's Feldman commitment and its proof of
/// knowledge of the constant term. Public.
#[derive(Clone, PartialEq, Eq)]
pub struct Round1Message<C: Suite> {
    /// The run this belongs to.
    pub session: SessionId,
    package: round1::Package<C>,
}

impl<C: Suite> core::fmt::Debug for Round1Message<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("dkg::Round1Message")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// Round-two message to one peer: the secret share `f_i(j)`. Secret: the
/// driver must encrypt it to the recipient (HPKE). `Debug` redacts it.
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
        f.debug_struct("dkg::Round2Message")
            .field("session", &self.session)
            .field("share", &"<redacted>")
            .finish()
    }
}

/// Start a DKG run as participant `me`: returns the round-one state and the
/// message to broadcast to every other member.
pub fn start<C: Suite, R: RngCore + CryptoRng>(
    params: DkgParams,
    me: ParticipantId,
    rng: &mut R,
) -> Result<(Round1<C>, Round1Message<C>), Error> {
    params.check(me)?;
    let n = params.members.len() as u16;
    let (secret, package) =
        fdkg::part1::<C, _>(me.to_frost(), n, params.threshold, &mut *rng).map_err(Error::frost)?;
    Ok(Round1::new(params, me, secret, package))
}

/// Start with a given secret polynomial (test vectors and deterministic
/// replays only). The polynomial must never be reused.
#[doc(hidden)]
pub fn start_with_polynomial<C: Suite, R: RngCore + CryptoRng>(
    params: DkgParams,
    me: ParticipantId,
    polynomial: &vss::Polynomial<C>,
    rng: &mut R,
) -> Result<(Round1<C>, Round1Message<C>), Error> {
    params.check(me)?;
    if polynomial.threshold() != params.threshold {
        return Err(Error::InvalidParameters(
            "polynomial degree does not match the threshold",
        ));
    }
    let coefficients: Vec<_> = polynomial
        .coefficients()
        .iter()
        .map(|c| *c.expose())
        .collect();
    let commitment = frost_commitment::<C>(&polynomial.commit());
    let pok = fdkg::compute_proof_of_knowledge::<C, _>(
        me.to_frost(),
        &coefficients,
        &commitment,
        &mut *rng,
    )
    .map_err(Error::frost)?;
    let n = params.members.len() as u16;
    let secret = round1::SecretPackage::new(
        me.to_frost(),
        coefficients,
        commitment.clone(),
        params.threshold,
        n,
    );
    let package = round1::Package::new(commitment, pok);
    Ok(Round1::new(params, me, secret, package))
}

pub(crate) fn frost_commitment<C: Suite>(
    c: &Commitment<C>,
) -> VerifiableSecretSharingCommitment<C> {
    VerifiableSecretSharingCommitment::new(
        c.elements()
            .iter()
            .map(|e| CoefficientCommitment::new(*e))
            .collect(),
    )
}

pub(crate) fn our_commitment<C: Suite>(c: &VerifiableSecretSharingCommitment<C>) -> Commitment<C> {
    Commitment::from_elements(c.coefficients().iter().map(|e| e.value()).collect())
}

/// Check `from`'s round-one broadcast on its own, as anyone can (a
/// coordinator before it relays it): the run, the sender, the commitment's
/// degree and the proof of knowledge of its constant term (Komlo–Goldberg,
/// Round 1, step 5). A bad broadcast names `from`.
pub fn check_round1<C: Suite>(
    params: &DkgParams,
    from: ParticipantId,
    msg: &Round1Message<C>,
) -> Result<(), Error> {
    if !params.members.contains(&from) {
        return Err(Error::UnknownParticipant(from));
    }
    if msg.session != params.session {
        return Err(Error::WrongSession);
    }
    if msg.package.commitment().coefficients().len() != params.threshold as usize {
        return Err(Error::misbehaved(from, Fault::WrongDegree));
    }
    fdkg::verify_proof_of_knowledge(
        from.to_frost(),
        msg.package.commitment(),
        msg.package.proof_of_knowledge(),
    )
    .map_err(|_| Error::misbehaved(from, Fault::InvalidProofOfKnowledge))
}

/// The round-one transcript hash every member computes in
/// [`Round1::advance`] (and carries in its round-two messages), computed by
/// anyone from every member's broadcast: a coordinator uses it to know the
/// run every honest member is in.
pub fn round1_transcript<C: Suite>(
    params: &DkgParams,
    all: &BTreeMap<ParticipantId, Round1Message<C>>,
) -> Result<[u8; 32], Error> {
    let first = *params
        .members
        .first()
        .ok_or(Error::InvalidParameters("no members"))?;
    let own = &all
        .get(&first)
        .ok_or(Error::UnknownParticipant(first))?
        .package;
    let mut received = BTreeMap::new();
    for m in params.members.iter().filter(|m| **m != first) {
        let msg = all.get(m).ok_or(Error::UnknownParticipant(*m))?;
        received.insert(*m, msg.package.clone());
    }
    Ok(transcript::<C>(
        TRANSCRIPT_LABEL,
        params,
        first,
        own,
        &received,
    ))
}

/// Check a share the dealer of `dealer_round1` revealed for `accuser` (its
/// round-two message to it) against the dealer's commitment, as anyone
/// can. A share off the commitment, or of another run, names `dealer`.
pub fn check_revealed<C: Suite>(
    dealer: ParticipantId,
    dealer_round1: &Round1Message<C>,
    accuser: ParticipantId,
    revealed: &Round2Message<C>,
) -> Result<(), Error> {
    if revealed.session != dealer_round1.session {
        return Err(Error::misbehaved(dealer, Fault::InvalidShare));
    }
    our_commitment(dealer_round1.package.commitment())
        .verify(accuser, &revealed.share)
        .map_err(|_| Error::misbehaved(dealer, Fault::InvalidShare))
}

/// What [`Round1::advance`] returns: the round-two state and one secret
/// message per peer.
pub type Advance<C> = (Round2<C>, Vec<(ParticipantId, Round2Message<C>)>);

/// Round one: collecting the other members' broadcasts.
pub struct Round1<C: Suite> {
    params: DkgParams,
    me: ParticipantId,
    secret: round1::SecretPackage<C>,
    own: round1::Package<C>,
    received: BTreeMap<ParticipantId, round1::Package<C>>,
}

impl<C: Suite> core::fmt::Debug for Round1<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("dkg::Round1")
            .field("me", &self.me)
            .field("received", &self.received.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<C: Suite> Round1<C> {
    fn new(
        params: DkgParams,
        me: ParticipantId,
        secret: round1::SecretPackage<C>,
        package: round1::Package<C>,
    ) -> (Self, Round1Message<C>) {
        let msg = Round1Message {
            session: params.session,
            package: package.clone(),
        };
        (
            Self {
                params,
                me,
                secret,
                own: package,
                received: BTreeMap::new(),
            },
            msg,
        )
    }

    /// Accept `from`'s broadcast. The proof of knowledge and the commitment's
    /// degree are checked now; a bad message names `from` and is not stored.
    /// Receiving the same message twice is harmless.
    pub fn receive(&mut self, from: ParticipantId, msg: Round1Message<C>) -> Result<(), Error> {
        self.params.check_sender(self.me, from)?;
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
        check_round1(&self.params, from, &msg)?;
        self.received.insert(from, msg.package);
        Ok(())
    }

    /// Members whose broadcast has not arrived.
    pub fn missing(&self) -> Vec<ParticipantId> {
        missing(&self.params.members, self.me, self.received.keys())
    }

    /// Whether every broadcast has arrived.
    pub fn is_ready(&self) -> bool {
        self.received.len() + 1 == self.params.members.len()
    }

    /// Move to round two: returns the state and one secret message per peer.
    pub fn advance(self) -> Result<Advance<C>, Error> {
        if !self.is_ready() {
            return Err(Error::NotEnough {
                have: self.received.len() + 1,
                need: self.params.members.len(),
            });
        }
        let transcript = transcript::<C>(
            TRANSCRIPT_LABEL,
            &self.params,
            self.me,
            &self.own,
            &self.received,
        );
        let by_frost: BTreeMap<Identifier<C>, round1::Package<C>> = self
            .received
            .iter()
            .map(|(id, p)| (id.to_frost(), p.clone()))
            .collect();
        let (secret, packages) = fdkg::part2(self.secret, &by_frost).map_err(Error::frost)?;
        let mut out = Vec::with_capacity(packages.len());
        for peer in self.params.members.iter().filter(|m| **m != self.me) {
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
                me: self.me,
                secret,
                round1: by_frost,
                transcript,
                received: BTreeMap::new(),
                disputed: BTreeSet::new(),
            },
            out,
        ))
    }
}

pub(crate) fn missing<'a>(
    members: &BTreeSet<ParticipantId>,
    me: ParticipantId,
    have: impl Iterator<Item = &'a ParticipantId>,
) -> Vec<ParticipantId> {
    let have: BTreeSet<_> = have.copied().collect();
    members
        .iter()
        .filter(|m| **m != me && !have.contains(m))
        .copied()
        .collect()
}

/// SHA-256 over the session and every member's round-one package in member
/// order: two honest participants agree on it iff they saw the same broadcasts.
pub(crate) fn transcript<C: Suite>(
    label: &[u8],
    params: &DkgParams,
    me: ParticipantId,
    own: &round1::Package<C>,
    received: &BTreeMap<ParticipantId, round1::Package<C>>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    h.update(params.session.0);
    h.update(params.threshold.to_be_bytes());
    for m in &params.members {
        let pkg = if *m == me { Some(own) } else { received.get(m) };
        h.update(m.get().to_be_bytes());
        if let Some(pkg) = pkg {
            let mut w = Writer::new::<C>(0);
            write_package(&mut w, pkg);
            h.update(w.finish());
        }
    }
    h.finalize().into()
}

/// Round two: collecting the secret shares addressed to us.
pub struct Round2<C: Suite> {
    params: DkgParams,
    me: ParticipantId,
    secret: round2::SecretPackage<C>,
    round1: BTreeMap<Identifier<C>, round1::Package<C>>,
    transcript: [u8; 32],
    received: BTreeMap<ParticipantId, SecretScalar<C>>,
    /// Dealers whose signed round-two message held no usable share for us.
    disputed: BTreeSet<ParticipantId>,
}

impl<C: Suite> core::fmt::Debug for Round2<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("dkg::Round2")
            .field("me", &self.me)
            .field("received", &self.received.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<C: Suite> Round2<C> {
    /// Accept `from`'s share. Its transcript hash is checked now; the share
    /// itself is checked against `from`'s commitment in [`Round2::finish`].
    pub fn receive(&mut self, from: ParticipantId, msg: Round2Message<C>) -> Result<(), Error> {
        self.params.check_sender(self.me, from)?;
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
        self.received.insert(from, msg.share.clone());
        Ok(())
    }

    /// The run.
    pub fn session(&self) -> SessionId {
        self.params.session
    }

    /// Members whose share has not arrived (disputed ones included).
    pub fn missing(&self) -> Vec<ParticipantId> {
        missing(&self.params.members, self.me, self.received.keys())
    }

    /// Whether every share has arrived.
    pub fn is_ready(&self) -> bool {
        self.received.len() + 1 == self.params.members.len()
    }

    /// Dispute `from`'s share: its signed round-two message held no share
    /// this participant could open or decode. Only a dealer's own signed
    /// message may be disputed (see the module documentation).
    pub fn dispute(&mut self, from: ParticipantId) -> Result<(), Error> {
        self.params.check_sender(self.me, from)?;
        self.received.remove(&from);
        self.disputed.insert(from);
        Ok(())
    }

    /// The dealers to accuse: every disputed one and every one whose share
    /// is off its commitment (each checked only if the shares do not check
    /// out together, the common case costing one comparison). Empty once
    /// every share has arrived and checks out.
    pub fn accusations(&self) -> Result<Vec<ParticipantId>, Error> {
        let mut accused = self.disputed.clone();
        if accused.is_empty() && self.is_ready() && self.combined().is_ok() {
            return Ok(Vec::new());
        }
        for (from, share) in &self.received {
            let bad = self.round1.get(&from.to_frost()).is_none_or(|p| {
                our_commitment(p.commitment())
                    .verify(self.me, share)
                    .is_err()
            });
            if bad {
                accused.insert(*from);
            }
        }
        Ok(accused.into_iter().collect())
    }

    /// Take the share `from` revealed (its round-two message to us, after
    /// this participant accused it): a share on `from`'s commitment
    /// replaces whatever arrived before and dismisses the accusation; any
    /// other names `from`.
    pub fn resolve(
        &mut self,
        from: ParticipantId,
        revealed: Round2Message<C>,
    ) -> Result<(), Error> {
        self.params.check_sender(self.me, from)?;
        let package = self
            .round1
            .get(&from.to_frost())
            .ok_or(Error::UnknownParticipant(from))?;
        let round1 = Round1Message {
            session: self.params.session,
            package: package.clone(),
        };
        check_revealed(from, &round1, self.me, &revealed)?;
        self.disputed.remove(&from);
        self.received.insert(from, revealed.share);
        Ok(())
    }

    /// The hash of the round-one broadcasts this participant saw.
    pub fn transcript(&self) -> [u8; 32] {
        self.transcript
    }

    /// This participant's share and the group's public key package, if
    /// every share has arrived and they check out together.
    #[allow(clippy::type_complexity, reason = "one private helper")]
    fn combined(
        &self,
    ) -> Result<
        (
            SecretScalar<C>,
            <C::Group as Group>::Element,
            PublicKeyPackage<C>,
        ),
        Error,
    > {
        if !self.is_ready() {
            return Err(Error::NotEnough {
                have: self.received.len() + 1,
                need: self.params.members.len(),
            });
        }
        // frost-core's `part3` with the share checks done in aggregate:
        // s_i = f_i(i) + Σ_ℓ f_ℓ(i) must satisfy s_i·G = Σ_k i^k·(Σ_ℓ φ_ℓk), the
        // public share frost derives from the summed commitment. Only if that
        // fails is each f_ℓ(i) checked on its own (Round 2, step 2) to name
        // every culprit. Errors that cancel out leave s_i correct, which is
        // all the check must guarantee.
        let me = self.me;
        let own_commitment = self.secret.commitment().clone();
        let mut commitments: BTreeMap<Identifier<C>, &VerifiableSecretSharingCommitment<C>> = self
            .round1
            .iter()
            .map(|(id, p)| (*id, p.commitment()))
            .collect();
        commitments.insert(me.to_frost(), &own_commitment);
        let public = PublicKeyPackage::from_dkg_commitments(&commitments).map_err(Error::frost)?;
        let mut share = self.secret.secret_share();
        for s in self.received.values() {
            share = share + *s.expose();
        }
        let share = SecretScalar::<C>::new(share);
        let expected = public
            .verifying_shares()
            .get(&me.to_frost())
            .ok_or(Error::UnknownParticipant(me))?
            .to_element();
        if share.public() != expected {
            return Err(Error::ShareMismatch);
        }
        Ok((share, expected, public))
    }

    /// Finish: this participant's [`KeyShare`] and the [`GroupKey`]. A
    /// share off its dealer's commitment names the dealer (drivers that
    /// run complaints ask [`Round2::accusations`] first).
    pub fn finish(self) -> Result<(KeyShare<C>, GroupKey<C>), Error> {
        let me = self.me;
        let (share, expected, public) = match self.combined() {
            Ok(c) => c,
            Err(Error::ShareMismatch) => {
                let culprits = self.accusations()?;
                return Err(if culprits.is_empty() {
                    Error::ShareMismatch
                } else {
                    Error::Misbehaved {
                        culprits,
                        fault: Fault::InvalidShare,
                    }
                });
            }
            Err(e) => return Err(e),
        };
        let key_package = KeyPackage::new(
            me.to_frost(),
            SigningShare::new(*share.expose()),
            VerifyingShare::new(expected),
            *public.verifying_key(),
            self.params.threshold,
        );
        // Suite-specific post-processing (secp256k1-tr adds the unspendable
        // BIP-341 taproot tweak), exactly as frost's `part3` does.
        let (key_package, public) = C::post_dkg(key_package, public).map_err(Error::frost)?;
        let group = GroupKey::from_frost_trusted(self.params.members.clone(), public)?;
        Ok((KeyShare::from_frost(me, key_package), group))
    }
}

pub(crate) fn write_package<C: Suite>(w: &mut Writer, pkg: &round1::Package<C>) {
    vss::write_commitment::<C>(w, &our_commitment(pkg.commitment()));
    w.element::<C>(pkg.proof_of_knowledge().R());
    w.scalar::<C>(pkg.proof_of_knowledge().z());
}

pub(crate) fn read_package<C: Suite>(
    r: &mut Reader<'_>,
) -> Result<round1::Package<C>, DecodeError> {
    let commitment = vss::read_commitment::<C>(r)?;
    let big_r = r.element::<C>()?;
    let z = r.scalar::<C>()?;
    Ok(round1::Package::new(
        frost_commitment(&commitment),
        Signature::new(big_r, z),
    ))
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
    /// The encoding contains the secret share: encrypt it before it leaves
    /// the process.
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
    /// Build from a share (test vectors only).
    #[doc(hidden)]
    pub fn from_share(session: SessionId, transcript: [u8; 32], share: SecretScalar<C>) -> Self {
        Self {
            session,
            transcript,
            share,
        }
    }

    /// The share (test vectors only).
    #[doc(hidden)]
    pub fn share(&self) -> &SecretScalar<C> {
        &self.share
    }

    /// Replace the share (tests of culprit identification only).
    #[doc(hidden)]
    pub fn tamper_share(&mut self) {
        let one = <<C::Group as Group>::Field>::one();
        self.share = SecretScalar::new(*self.share.expose() + one);
    }
}

impl<C: Suite> Round1Message<C> {
    /// Wrap a frost package (test vectors only).
    #[doc(hidden)]
    pub fn from_frost(session: SessionId, package: round1::Package<C>) -> Self {
        Self { session, package }
    }

    /// Corrupt the proof of knowledge (tests of culprit identification only).
    #[doc(hidden)]
    pub fn tamper_proof(&mut self) {
        let pok = self.package.proof_of_knowledge();
        let one = <<C::Group as Group>::Field>::one();
        let bad = Signature::new(*pok.R(), *pok.z() + one);
        self.package = round1::Package::new(self.package.commitment().clone(), bad);
    }
}
