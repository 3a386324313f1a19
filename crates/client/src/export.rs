//! The requester's side of an export: an X25519 key pair each holder seals
//! its share to (RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, ChaCha20-Poly1305), and opening the shares and rebuilding
//! the key here, the only place it ever exists.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, Serializable};
use keyquorum_core::codec::Decode;
use keyquorum_core::{hazmat, Ed25519, Error, GroupKey, KeyShare, Secp256k1Tr, Suite};
use keyquorum_wire::api::{export_aad, ExportResult, SuiteName, EXPORT_HPKE_INFO};
use keyquorum_wire::Hex32;
use zeroize::Zeroizing;

use crate::ClientError;

type KemT = X25519HkdfSha256;

/// A one-time X25519 key pair for receiving an export.
pub struct ExportKey {
    secret: <KemT as Kem>::PrivateKey,
    public: <KemT as Kem>::PublicKey,
}

impl core::fmt::Debug for ExportKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ExportKey")
            .field("public", &self.public())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl ExportKey {
    /// A fresh key pair from the OS RNG.
    pub fn generate() -> Self {
        let (secret, public) = KemT::gen_keypair(&mut rand_core_09::UnwrapErr(rand_core_09::OsRng));
        Self { secret, public }
    }

    /// Rebuild from a saved 32-byte secret key.
    pub fn from_secret(bytes: &[u8]) -> Result<Self, ClientError> {
        let secret = <KemT as Kem>::PrivateKey::from_bytes(bytes)
            .map_err(|_| ClientError::Config("not an X25519 secret key".into()))?;
        let public = KemT::sk_to_pk(&secret);
        Ok(Self { secret, public })
    }

    /// The secret key, to keep between requesting and running an export.
    pub fn secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.secret.to_bytes().to_vec())
    }

    /// The public key to put in the export request.
    pub fn public(&self) -> Hex32 {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.public.to_bytes());
        Hex32(out)
    }

    /// Open an export result: each holder's share (sealed to this key),
    /// each checked against its holder's public share in the result's
    /// group key, and the key rebuilt from threshold-many of them: the
    /// 32-byte secret scalar (little-endian for Ed25519 and ristretto255, big-endian for
    /// secp256k1; see [`ExportResult::shares`]). Shares that do not open or
    /// do not check are left out; too few good ones is an error.
    pub fn open(&self, result: &ExportResult) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        match result.suite {
            SuiteName::Ed25519 => self.open_as::<Ed25519>(result),
            SuiteName::Secp256k1Tr => self.open_as::<Secp256k1Tr>(result),
            SuiteName::Ristretto255 => self.open_as::<keyquorum_core::Ristretto255>(result),
        }
    }

    fn open_as<C: Suite>(&self, result: &ExportResult) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let bad = |m: &str| ClientError::Config(format!("export result: {m}"));
        let group = GroupKey::<C>::from_bytes(&result.group_key.0)
            .map_err(|_| bad("malformed group key"))?;
        let mut shares: Vec<KeyShare<C>> = Vec::new();
        for s in &result.shares {
            let Ok(enc) = <KemT as Kem>::EncappedKey::from_bytes(&s.enc.0) else {
                continue;
            };
            let Ok(bytes) = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, KemT>(
                &OpModeR::Base,
                &self.secret,
                &enc,
                EXPORT_HPKE_INFO,
                &s.ciphertext.0,
                &export_aad(&result.id, &result.key, result.epoch, s.node),
            ) else {
                continue;
            };
            let bytes = Zeroizing::new(bytes);
            if let Ok(share) = KeyShare::<C>::from_secret_bytes(&bytes) {
                if u64::from(share.id().get()) == u64::from(s.node) {
                    shares.push(share);
                }
            }
        }
        // A share that does not match its holder's public share is named
        // by the rebuild: leave it out and try again with the others.
        loop {
            let refs: Vec<&KeyShare<C>> = shares.iter().collect();
            match hazmat::with_reconstructed_key(&group, &refs, |secret| secret.to_bytes()) {
                Ok(secret) => return Ok(secret),
                Err(Error::Misbehaved { culprits, .. }) if !culprits.is_empty() => {
                    shares.retain(|s| !culprits.contains(&s.id()));
                }
                Err(e) => {
                    return Err(bad(&format!(
                        "the shares that open with this key do not rebuild the key: {e}"
                    )))
                }
            }
        }
    }
}
