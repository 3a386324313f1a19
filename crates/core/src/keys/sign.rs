//! FROST threshold signing (RFC 9591 §5) on ZcashFoundation's `frost-core`.
//!
//! ```text
//! signer:      commit / precompute ──► (SigningNonce [secret, one use], SigningCommitment [public])
//! coordinator: Coordinator::new(group, message, t+ commitments) ──► SigningPackage (to the signers)
//! signer:      nonce.sign(share, package) ──► SignatureShare          (consumes the nonce)
//! coordinator: receive × t ──► finish ──► Signature   (invalid shares: culprits named)
//! ```
//!
//! Precomputed nonces make online signing one round: a signer publishes many
//! commitments ahead of time (RFC 9591 §5.1, "preprocess") and the coordinator
//! picks one per signer per message. A [`SigningNonce`] is neither `Clone` nor
//! `Copy` and [`SigningNonce::sign`] takes it by value, so the type system makes
//! each nonce usable exactly once; the node's vault deletes its stored copy
//! durably before a signature share leaves the node.

use std::collections::{BTreeMap, BTreeSet};

use frost_core::round1::{self, Nonce, NonceCommitment};
use frost_core::round2;
use frost_core::{aggregate_custom, CheaterDetection, Identifier};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::codec::{Decode, Encode, Reader, Writer, MAX_BLOB, MAX_PARTICIPANTS};
use crate::error::{DecodeError, Error, Fault};
use crate::id::{ParticipantId, SessionId};
use crate::keys::{GroupKey, KeyShare};
use crate::suite::Suite;

mod kind {
    pub(super) const COMMITMENT: u8 = 0x30;
    pub(super) const PACKAGE: u8 = 0x31;
    pub(super) const SHARE: u8 = 0x32;
    pub(super) const NONCE: u8 = 0x33;
}

/// A signer's secret nonce pair for one signature (RFC 9591 §5.1). Use once.
pub struct SigningNonce<C: Suite> {
    id: ParticipantId,
    nonces: round1::SigningNonces<C>,
}

impl<C: Suite> core::fmt::Debug for SigningNonce<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SigningNonce")
            .field("id", &self.id)
            .field("nonces", &"<redacted>")
            .finish()
    }
}

/// The public commitment to a [`SigningNonce`] (hiding and binding points).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SigningCommitment<C: Suite> {
    id: ParticipantId,
    inner: round1::SigningCommitments<C>,
}

impl<C: Suite> core::fmt::Debug for SigningCommitment<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SigningCommitment")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<C: Suite> SigningCommitment<C> {
    /// The signer it belongs to.
    pub fn signer(&self) -> ParticipantId {
        self.id
    }

    /// The frost commitments.
    pub fn frost(&self) -> &round1::SigningCommitments<C> {
        &self.inner
    }
}

/// Round one for a single signature: a fresh nonce and its commitment.
pub fn commit<C: Suite, R: RngCore + CryptoRng>(
    share: &KeyShare<C>,
    rng: &mut R,
) -> (SigningNonce<C>, SigningCommitment<C>) {
    let (nonces, commitments) = round1::commit(share.frost().signing_share(), rng);
    (
        SigningNonce {
            id: share.id(),
            nonces,
        },
        SigningCommitment {
            id: share.id(),
            inner: commitments,
        },
    )
}

/// Precompute `count` nonces ahead of time (RFC 9591 §5.1 "preprocess").
pub fn precompute<C: Suite, R: RngCore + CryptoRng>(
    share: &KeyShare<C>,
    count: usize,
    rng: &mut R,
) -> Vec<(SigningNonce<C>, SigningCommitment<C>)> {
    (0..count).map(|_| commit(share, rng)).collect()
}

impl<C: Suite> SigningNonce<C> {
    /// Its public commitment.
    pub fn commitment(&self) -> SigningCommitment<C> {
        SigningCommitment {
            id: self.id,
            inner: *self.nonces.commitments(),
        }
    }

    /// Round two (RFC 9591 §5.2): this signer's share of the signature on the
    /// package's message. Consumes the nonce, which is zeroized on return.
    pub fn sign(
        self,
        share: &KeyShare<C>,
        package: &SigningPackage<C>,
    ) -> Result<SignatureShare<C>, Error> {
        self.share_of(share, package)
    }

    /// [`SigningNonce::sign`] for a nonce kept on the heap: it is used where
    /// it is and zeroized there when the box drops (moving it out of the box
    /// first would leave a copy behind in the freed allocation).
    #[allow(
        clippy::boxed_local,
        reason = "the nonce must stay where it lies until the box drops and zeroizes it there"
    )]
    pub fn sign_boxed(
        self: Box<Self>,
        share: &KeyShare<C>,
        package: &SigningPackage<C>,
    ) -> Result<SignatureShare<C>, Error> {
        self.share_of(share, package)
    }

    fn share_of(
        &self,
        share: &KeyShare<C>,
        package: &SigningPackage<C>,
    ) -> Result<SignatureShare<C>, Error> {
        if share.id() != self.id {
            return Err(Error::Misuse("nonce belongs to another participant"));
        }
        match package.commitments.get(&self.id) {
            Some(c) if *c == *self.nonces.commitments() => {}
            Some(_) => {
                return Err(Error::Misuse(
                    "package carries another commitment for this signer",
                ))
            }
            None => return Err(Error::UnknownParticipant(self.id)),
        }
        let s = round2::sign(&package.inner, &self.nonces, share.frost()).map_err(Error::frost)?;
        Ok(SignatureShare {
            session: package.session,
            share: s,
        })
    }

    /// Encode for the vault (secret: encrypt at rest).
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new::<C>(kind::NONCE);
        w.id(self.id);
        w.raw(&Zeroizing::new(self.nonces.hiding().serialize()));
        w.raw(&Zeroizing::new(self.nonces.binding().serialize()));
        Zeroizing::new(w.finish())
    }

    /// Decode what [`SigningNonce::to_secret_bytes`] wrote.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new::<C>(bytes, kind::NONCE)?;
        let id = r.id()?;
        let hiding = Nonce::<C>::from_scalar(r.scalar::<C>()?);
        let binding = Nonce::<C>::from_scalar(r.scalar::<C>()?);
        r.finish()?;
        Ok(Self {
            id,
            nonces: round1::SigningNonces::from_nonces(hiding, binding),
        })
    }

    /// Build from given nonces (RFC test vectors only).
    #[doc(hidden)]
    pub fn from_frost(id: ParticipantId, nonces: round1::SigningNonces<C>) -> Self {
        Self { id, nonces }
    }
}

/// What the coordinator sends to the chosen signers: the message and one
/// commitment per signer (RFC 9591 §5.2 input).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningPackage<C: Suite> {
    /// The signing run.
    pub session: SessionId,
    commitments: BTreeMap<ParticipantId, round1::SigningCommitments<C>>,
    inner: frost_core::SigningPackage<C>,
}

impl<C: Suite> core::fmt::Debug for SigningPackage<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SigningPackage")
            .field("session", &self.session)
            .field("signers", &self.commitments.keys().collect::<Vec<_>>())
            .field("message_len", &self.inner.message().len())
            .finish()
    }
}

impl<C: Suite> SigningPackage<C> {
    fn new(
        session: SessionId,
        message: &[u8],
        commitments: BTreeMap<ParticipantId, round1::SigningCommitments<C>>,
    ) -> Self {
        let by_frost: BTreeMap<Identifier<C>, _> = commitments
            .iter()
            .map(|(id, c)| (id.to_frost(), *c))
            .collect();
        Self {
            session,
            inner: frost_core::SigningPackage::new(by_frost, message),
            commitments,
        }
    }

    /// The message to be signed.
    pub fn message(&self) -> &[u8] {
        self.inner.message()
    }

    /// The chosen signers.
    pub fn signers(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.commitments.keys().copied()
    }

    /// The frost signing package.
    pub fn frost(&self) -> &frost_core::SigningPackage<C> {
        &self.inner
    }
}

/// One signer's share of a signature (RFC 9591 §5.2 output). Public.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignatureShare<C: Suite> {
    /// The signing run.
    pub session: SessionId,
    share: round2::SignatureShare<C>,
}

impl<C: Suite> core::fmt::Debug for SignatureShare<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignatureShare")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl<C: Suite> SignatureShare<C> {
    /// Corrupt the share by adding one (tests of culprit identification
    /// only; adding rather than flipping bits means several corrupted shares
    /// never cancel out in the sum).
    #[doc(hidden)]
    pub fn tamper(&mut self) {
        use frost_core::{Field, Group};
        type F<C> = <<C as frost_core::Ciphersuite>::Group as Group>::Field;
        if let Ok(s) = crate::codec::scalar_from_bytes::<C>(&self.share.serialize()) {
            let bumped = s + <F<C>>::one();
            if let Ok(share) =
                round2::SignatureShare::deserialize(<F<C>>::serialize(&bumped).as_ref())
            {
                self.share = share;
            }
        }
    }

    /// The frost signature share.
    pub fn frost(&self) -> &round2::SignatureShare<C> {
        &self.share
    }
}

/// A complete signature in the suite's standard encoding (64 bytes for all
/// suites but plain secp256k1, which is 65).
#[derive(Clone, PartialEq, Eq)]
pub struct Signature<C: Suite>(frost_core::Signature<C>);

impl<C: Suite> core::fmt::Debug for Signature<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Signature").field(&self.to_bytes()).finish()
    }
}

impl<C: Suite> Signature<C> {
    /// The standard encoding (RFC 8032 for Ed25519, BIP-340 for secp256k1-tr).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.serialize().unwrap_or_default()
    }

    /// The frost signature.
    pub fn frost(&self) -> &frost_core::Signature<C> {
        &self.0
    }
}

/// The coordinator of one signing run (sans-I/O). Borrowing the group key
/// keeps the hot path free of copies.
pub struct Coordinator<'g, C: Suite> {
    group: &'g GroupKey<C>,
    package: SigningPackage<C>,
    shares: BTreeMap<Identifier<C>, round2::SignatureShare<C>>,
    signers: BTreeSet<ParticipantId>,
}

impl<'g, C: Suite> Coordinator<'g, C> {
    /// Open a run for `message` with the given signers' commitments (at least
    /// `t`, all members). Send [`Coordinator::package`] to each signer.
    pub fn new(
        group: &'g GroupKey<C>,
        session: SessionId,
        message: &[u8],
        commitments: impl IntoIterator<Item = SigningCommitment<C>>,
    ) -> Result<Self, Error> {
        let mut map = BTreeMap::new();
        for c in commitments {
            if !group.members().contains(&c.id) {
                return Err(Error::UnknownParticipant(c.id));
            }
            if map.insert(c.id, c.inner).is_some() {
                return Err(Error::InvalidParameters("two commitments for one signer"));
            }
        }
        if map.len() < group.threshold() as usize {
            return Err(Error::NotEnough {
                have: map.len(),
                need: group.threshold() as usize,
            });
        }
        let signers = map.keys().copied().collect();
        Ok(Self {
            group,
            package: SigningPackage::new(session, message, map),
            shares: BTreeMap::new(),
            signers,
        })
    }

    /// The package to send to every signer.
    pub fn package(&self) -> &SigningPackage<C> {
        &self.package
    }

    /// Accept `from`'s signature share. Shares are checked in [`finish`](Self::finish)
    /// (Coordinator::finish), where a bad one is named.
    pub fn receive(&mut self, from: ParticipantId, share: SignatureShare<C>) -> Result<(), Error> {
        if !self.signers.contains(&from) {
            return Err(Error::UnknownParticipant(from));
        }
        if share.session != self.package.session {
            return Err(Error::WrongSession);
        }
        self.shares.insert(from.to_frost(), share.share);
        Ok(())
    }

    /// Signers whose share has not arrived.
    pub fn missing(&self) -> Vec<ParticipantId> {
        self.signers
            .iter()
            .filter(|s| !self.shares.contains_key(&s.to_frost()))
            .copied()
            .collect()
    }

    /// Aggregate (RFC 9591 §5.3). If the signature does not verify, every
    /// invalid share is found and its signer named.
    pub fn finish(self) -> Result<Signature<C>, Error> {
        if self.shares.len() != self.signers.len() {
            return Err(Error::NotEnough {
                have: self.shares.len(),
                need: self.signers.len(),
            });
        }
        aggregate_custom(
            self.package.frost(),
            &self.shares,
            self.group.frost(),
            CheaterDetection::AllCheaters,
        )
        .map(Signature)
        .map_err(|e| match e {
            frost_core::Error::InvalidSignatureShare { culprits } => Error::Misbehaved {
                culprits: culprits
                    .iter()
                    .filter_map(|c| ParticipantId::from_frost(c, &self.signers))
                    .collect(),
                fault: Fault::InvalidSignatureShare,
            },
            other => Error::frost(other),
        })
    }
}

fn write_commitments<C: Suite>(w: &mut Writer, c: &round1::SigningCommitments<C>) {
    w.element::<C>(&c.hiding().value());
    w.element::<C>(&c.binding().value());
}

fn read_commitments<C: Suite>(
    r: &mut Reader<'_>,
) -> Result<round1::SigningCommitments<C>, DecodeError> {
    let hiding = NonceCommitment::new(r.element::<C>()?);
    let binding = NonceCommitment::new(r.element::<C>()?);
    Ok(round1::SigningCommitments::new(hiding, binding))
}

impl<C: Suite> Encode for SigningCommitment<C> {
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new::<C>(kind::COMMITMENT);
        w.id(self.id);
        write_commitments(&mut w, &self.inner);
        w.finish()
    }
}

impl<C: Suite> Decode for SigningCommitment<C> {
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new::<C>(bytes, kind::COMMITMENT)?;
        let id = r.id()?;
        let inner = read_commitments(&mut r)?;
        r.finish()?;
        Ok(Self { id, inner })
    }
}

impl<C: Suite> Encode for SigningPackage<C> {
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new::<C>(kind::PACKAGE);
        w.session(&self.session);
        w.blob(self.message());
        w.ids(self.commitments.keys());
        for c in self.commitments.values() {
            write_commitments(&mut w, c);
        }
        w.finish()
    }
}

impl<C: Suite> Decode for SigningPackage<C> {
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new::<C>(bytes, kind::PACKAGE)?;
        let session = r.session()?;
        let message = r.blob(MAX_BLOB)?;
        let ids = r.ids()?;
        if ids.len() > MAX_PARTICIPANTS {
            return Err(DecodeError::TooLong {
                len: ids.len(),
                max: MAX_PARTICIPANTS,
            });
        }
        let mut commitments = BTreeMap::new();
        for id in ids {
            commitments.insert(id, read_commitments(&mut r)?);
        }
        r.finish()?;
        Ok(SigningPackage::new(session, message, commitments))
    }
}

impl<C: Suite> Encode for SignatureShare<C> {
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new::<C>(kind::SHARE);
        w.session(&self.session);
        w.raw(&self.share.serialize());
        w.finish()
    }
}

impl<C: Suite> Decode for SignatureShare<C> {
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new::<C>(bytes, kind::SHARE)?;
        let session = r.session()?;
        let s = r.scalar::<C>()?;
        r.finish()?;
        let bytes = zeroize::Zeroizing::new(
            <<C::Group as frost_core::Group>::Field as frost_core::Field>::serialize(&s)
                .as_ref()
                .to_vec(),
        );
        let share = round2::SignatureShare::deserialize(&bytes)
            .map_err(|_| DecodeError::InvalidFrostValue("signature share"))?;
        Ok(Self { session, share })
    }
}

/// Verify `signature` on `message` under a public key in the form
/// [`GroupKey::public_key_bytes`] returns (32-byte Ed25519 point, 32-byte
/// x-only BIP-340 key, ...). This is the plain single-key verifier path.
pub fn verify<C: Suite>(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), Error> {
    let full;
    let pk = if C::SUITE == crate::SuiteId::Secp256k1Tr && public_key.len() == 32 {
        // BIP-340: the x-only key is the even-y point.
        let mut v = Vec::with_capacity(33);
        v.push(0x02);
        v.extend_from_slice(public_key);
        full = v;
        &full[..]
    } else {
        public_key
    };
    let vk = frost_core::VerifyingKey::<C>::new(crate::codec::element_from_bytes::<C>(pk)?);
    let sig = Signature::<C>::from_bytes(signature)?;
    vk.verify(message, &sig.0)
        .map_err(|_| Error::InvalidSignature)
}

impl<C: Suite> Signature<C> {
    /// Decode a signature in the suite's standard encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let sig = C::deserialize_signature(bytes)
            .map_err(|_| DecodeError::InvalidFrostValue("signature"))?;
        // Reject non-canonical encodings of `R` (see `codec::element_from_bytes`),
        // so a signature has one byte form.
        if !C::CANONICAL_ELEMENT_DECODER && sig.serialize().ok().as_deref() != Some(bytes) {
            return Err(DecodeError::InvalidFrostValue("signature"));
        }
        Ok(Signature(sig))
    }
}
