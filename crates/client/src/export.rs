//! The requester's side of an export: an X25519 key pair the reconstructed
//! secret is HPKE-sealed to (RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, ChaCha20-Poly1305), and opening the result.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, Serializable};
use keyquorum_wire::api::{export_aad, ExportResult, EXPORT_HPKE_INFO};
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

    /// Open an export result: the 32-byte secret scalar (see
    /// [`ExportResult::ciphertext`] for its encoding).
    pub fn open(&self, result: &ExportResult) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let enc = <KemT as Kem>::EncappedKey::from_bytes(&result.enc.0)
            .map_err(|_| ClientError::Config("malformed export result".into()))?;
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, KemT>(
            &OpModeR::Base,
            &self.secret,
            &enc,
            EXPORT_HPKE_INFO,
            &result.ciphertext.0,
            &export_aad(&result.id, &result.key, result.epoch),
        )
        .map(Zeroizing::new)
        .map_err(|_| ClientError::Config("export result does not open with this key".into()))
    }
}
