//! The output of key generation: each holder's secret [`KeyShare`] and the
//! public [`GroupKey`] everyone agrees on.

use std::collections::{BTreeMap, BTreeSet};

use frost_core::keys::{KeyPackage, PublicKeyPackage, SigningShare, VerifyingShare};
use frost_core::{Element, Field, Group, VerifyingKey};
use zeroize::Zeroizing;

use crate::codec::{Decode, Encode, Reader, Writer};
use crate::error::{DecodeError, Error};
use crate::id::ParticipantId;
use crate::secret::SecretScalar;
use crate::suite::{Suite, SuiteId};
use crate::vss::{self, x_of};

mod kind {
    pub(super) const GROUP_KEY: u8 = 0x10;
    pub(super) const KEY_SHARE: u8 = 0x11;
}

/// The public description of a shared key: threshold, members, group
/// verifying key and every member's public share `s_i·G`.
///
/// Invariant (checked by every constructor and the decoder): the public shares
/// lie on one polynomial of degree `t - 1` whose value at 0 is the group key.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupKey<C: Suite> {
    threshold: u16,
    members: BTreeSet<ParticipantId>,
    public: PublicKeyPackage<C>,
}

impl<C: Suite> core::fmt::Debug for GroupKey<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GroupKey")
            .field("suite", &C::SUITE.name())
            .field("threshold", &self.threshold)
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

impl<C: Suite> GroupKey<C> {
    /// Build from public shares and the group element, checking the invariant.
    pub fn from_parts(
        threshold: u16,
        verifying_key: Element<C>,
        shares: BTreeMap<ParticipantId, Element<C>>,
    ) -> Result<Self, Error> {
        vss::check_threshold(threshold, shares.len())?;
        check_consistent::<C>(threshold, &verifying_key, &shares)?;
        Self::from_parts_trusted(threshold, verifying_key, shares)
    }

    /// Build from public shares evaluated from one commitment (consistent by
    /// construction): only the threshold and member count are checked.
    pub(crate) fn from_parts_trusted(
        threshold: u16,
        verifying_key: Element<C>,
        shares: BTreeMap<ParticipantId, Element<C>>,
    ) -> Result<Self, Error> {
        let members = shares.keys().copied().collect();
        let verifying_shares = shares
            .iter()
            .map(|(id, e)| (id.to_frost::<C>(), VerifyingShare::new(*e)))
            .collect();
        let public = PublicKeyPackage::new(
            verifying_shares,
            VerifyingKey::new(verifying_key),
            Some(threshold),
        );
        Self::from_frost_trusted(members, public)
    }

    /// Wrap a frost `PublicKeyPackage` for `members`, checking the invariant.
    pub fn from_frost(
        members: BTreeSet<ParticipantId>,
        public: PublicKeyPackage<C>,
    ) -> Result<Self, Error> {
        let threshold = public.min_signers().ok_or(Error::InvalidParameters(
            "public key package has no threshold",
        ))?;
        let mut shares = BTreeMap::new();
        for m in &members {
            let vs = public
                .verifying_shares()
                .get(&m.to_frost::<C>())
                .ok_or(Error::UnknownParticipant(*m))?;
            shares.insert(*m, vs.to_element());
        }
        if public.verifying_shares().len() != members.len() {
            return Err(Error::InvalidParameters(
                "public shares do not match the members",
            ));
        }
        Self::from_parts(threshold, public.verifying_key().to_element(), shares)
    }

    /// Wrap a frost `PublicKeyPackage` that frost derived from a commitment
    /// (so its public shares are consistent by construction): only the member
    /// set and threshold are checked.
    pub(crate) fn from_frost_trusted(
        members: BTreeSet<ParticipantId>,
        public: PublicKeyPackage<C>,
    ) -> Result<Self, Error> {
        let threshold = public.min_signers().ok_or(Error::InvalidParameters(
            "public key package has no threshold",
        ))?;
        vss::check_threshold(threshold, members.len())?;
        if public.verifying_shares().len() != members.len()
            || members
                .iter()
                .any(|m| !public.verifying_shares().contains_key(&m.to_frost::<C>()))
        {
            return Err(Error::InvalidParameters(
                "public shares do not match the members",
            ));
        }
        Ok(Self {
            threshold,
            members,
            public,
        })
    }

    /// The threshold `t`.
    pub fn threshold(&self) -> u16 {
        self.threshold
    }

    /// The member set.
    pub fn members(&self) -> &BTreeSet<ParticipantId> {
        &self.members
    }

    /// The frost public key package.
    pub fn frost(&self) -> &PublicKeyPackage<C> {
        &self.public
    }

    /// The group verifying key as a group element.
    pub fn verifying_element(&self) -> Element<C> {
        self.public.verifying_key().to_element()
    }

    /// The public share `s_i·G` of member `id`.
    pub fn public_share(&self, id: ParticipantId) -> Result<Element<C>, Error> {
        self.public
            .verifying_shares()
            .get(&id.to_frost::<C>())
            .map(|v| v.to_element())
            .ok_or(Error::UnknownParticipant(id))
    }

    /// The public key as ordinary verifiers expect it: 32-byte Ed25519 point,
    /// 32-byte x-only BIP-340 key, 32-byte Ristretto255 element, or 33-byte
    /// SEC1-compressed secp256k1 point.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        let full =
            crate::codec::element_to_bytes::<C>(&self.verifying_element()).unwrap_or_default();
        match C::SUITE {
            // BIP-340 keys are the x coordinate of the even-y point.
            SuiteId::Secp256k1Tr => full.get(1..).map(<[u8]>::to_vec).unwrap_or_default(),
            _ => full,
        }
    }

    /// Verify a signature (in the suite's signature encoding) on `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        let sig = crate::sign::Signature::<C>::from_bytes(signature)?;
        self.public
            .verifying_key()
            .verify(message, sig.frost())
            .map_err(|_| Error::InvalidSignature)
    }
}

/// Checks that `shares` lie on one polynomial of degree `< t` through
/// `(0, group)`: interpolate from the first `t` shares and compare the rest.
fn check_consistent<C: Suite>(
    t: u16,
    group: &Element<C>,
    shares: &BTreeMap<ParticipantId, Element<C>>,
) -> Result<(), Error> {
    let base: BTreeMap<_, _> = shares
        .iter()
        .take(t as usize)
        .map(|(k, v)| (*k, *v))
        .collect();
    let zero = <<C::Group as Group>::Field>::zero();
    if vss::interpolate_public::<C>(&base, &zero)? != *group {
        return Err(Error::InvalidParameters(
            "public shares do not interpolate to the group key",
        ));
    }
    for (id, e) in shares.iter().skip(t as usize) {
        if vss::interpolate_public::<C>(&base, &x_of::<C>(*id))? != *e {
            return Err(Error::InvalidParameters(
                "public shares are not on one polynomial of degree t-1",
            ));
        }
    }
    Ok(())
}

impl<C: Suite> Encode for GroupKey<C> {
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new::<C>(kind::GROUP_KEY);
        w.u16(self.threshold);
        w.element::<C>(&self.verifying_element());
        w.ids(self.members.iter());
        for m in &self.members {
            // Members and verifying shares are the same set (constructor invariant).
            let e = self
                .public_share(*m)
                .unwrap_or_else(|_| <C::Group>::identity());
            w.element::<C>(&e);
        }
        w.finish()
    }
}

impl<C: Suite> Decode for GroupKey<C> {
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new::<C>(bytes, kind::GROUP_KEY)?;
        let t = r.u16()?;
        let vk = r.element::<C>()?;
        let members = r.ids()?;
        let mut shares = BTreeMap::new();
        for m in members {
            shares.insert(m, r.element::<C>()?);
        }
        r.finish()?;
        GroupKey::from_parts(t, vk, shares)
            .map_err(|_| DecodeError::InvalidFrostValue("group key (inconsistent public shares)"))
    }
}

/// One holder's secret share of a group key, as a frost `KeyPackage`
/// (zeroized on drop). `Debug` shows only public parts.
#[derive(Clone)]
pub struct KeyShare<C: Suite> {
    id: ParticipantId,
    package: KeyPackage<C>,
}

impl<C: Suite> core::fmt::Debug for KeyShare<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyShare")
            .field("suite", &C::SUITE.name())
            .field("id", &self.id)
            .field("signing_share", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl<C: Suite> KeyShare<C> {
    /// A share for `id` of `group`, checked against the member's public share.
    pub fn new(
        id: ParticipantId,
        share: SecretScalar<C>,
        group: &GroupKey<C>,
    ) -> Result<Self, Error> {
        if share.public() != group.public_share(id)? {
            return Err(Error::ShareMismatch);
        }
        Ok(Self::new_unchecked(
            id,
            share,
            group.verifying_element(),
            group.threshold(),
        ))
    }

    pub(crate) fn new_unchecked(
        id: ParticipantId,
        share: SecretScalar<C>,
        verifying_key: Element<C>,
        threshold: u16,
    ) -> Self {
        let package = KeyPackage::new(
            id.to_frost::<C>(),
            SigningShare::new(*share.expose()),
            // The suite's basepoint table where it has one (this runs on
            // every decode of a stored share, so on every signature).
            VerifyingShare::new(C::mul_base(share.expose())),
            VerifyingKey::new(verifying_key),
            threshold,
        );
        Self { id, package }
    }

    pub(crate) fn from_frost(id: ParticipantId, package: KeyPackage<C>) -> Self {
        Self { id, package }
    }

    /// This holder's participant id.
    pub fn id(&self) -> ParticipantId {
        self.id
    }

    /// The threshold.
    pub fn threshold(&self) -> u16 {
        *self.package.min_signers()
    }

    /// The frost key package (secret).
    pub fn frost(&self) -> &KeyPackage<C> {
        &self.package
    }

    /// The secret share as a [`SecretScalar`].
    pub fn secret(&self) -> SecretScalar<C> {
        SecretScalar::new(self.package.signing_share().to_scalar())
    }

    /// This holder's public share.
    pub fn public_share(&self) -> Element<C> {
        self.package.verifying_share().to_element()
    }

    /// The group verifying key.
    pub fn verifying_element(&self) -> Element<C> {
        self.package.verifying_key().to_element()
    }

    /// Encode for the vault (the caller encrypts it at rest).
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new::<C>(kind::KEY_SHARE);
        w.id(self.id);
        w.u16(self.threshold());
        w.raw(&self.secret().to_bytes());
        w.element::<C>(&self.verifying_element());
        Zeroizing::new(w.finish())
    }

    /// Decode what [`KeyShare::to_secret_bytes`] wrote.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new::<C>(bytes, kind::KEY_SHARE)?;
        let id = r.id()?;
        let t = r.u16()?;
        let share = SecretScalar::<C>::new(r.scalar::<C>()?);
        let vk = r.element::<C>()?;
        r.finish()?;
        if t < 2 {
            return Err(DecodeError::InvalidFrostValue("threshold"));
        }
        Ok(Self::new_unchecked(id, share, vk, t))
    }
}
