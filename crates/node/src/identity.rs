//! The node's long-term keys: an Ed25519 identity (signs every peer message
//! and audit head) and an X25519 key for HPKE (RFC 9180 base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305). Both are
//! generated on first start and kept in the vault.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, Serializable};
use keyquorum_store::{Table, Vault};
use keyquorum_wire::control::NodeInfo;
use keyquorum_wire::Hex32;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::error::NodeError;

/// The node's secret keys. `Debug` prints nothing secret.
pub struct NodeKeys {
    signing: SigningKey,
    hpke_sk: <X25519HkdfSha256 as Kem>::PrivateKey,
    hpke_pk: <X25519HkdfSha256 as Kem>::PublicKey,
}

impl core::fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NodeKeys")
            .field(
                "identity",
                &hex::encode(self.signing.verifying_key().as_bytes()),
            )
            .finish_non_exhaustive()
    }
}

const ED25519_SLOT: &[u8] = b"ed25519-seed";
const HPKE_SLOT: &[u8] = b"x25519-hpke-ikm";

fn load_or_make(vault: &Vault, slot: &[u8]) -> Result<Zeroizing<[u8; 32]>, NodeError> {
    if let Some(v) = vault.get(Table::Identity, slot)? {
        let a: [u8; 32] = v
            .as_slice()
            .try_into()
            .map_err(|_| NodeError::Internal("identity slot has wrong length".into()))?;
        return Ok(Zeroizing::new(a));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(seed.as_mut());
    vault.put(Table::Identity, slot, seed.as_ref())?;
    Ok(seed)
}

impl NodeKeys {
    /// Load the keys from the vault, creating them on first start.
    pub fn load_or_create(vault: &Vault) -> Result<Self, NodeError> {
        let seed = load_or_make(vault, ED25519_SLOT)?;
        let ikm = load_or_make(vault, HPKE_SLOT)?;
        let signing = SigningKey::from_bytes(&seed);
        let (hpke_sk, hpke_pk) = X25519HkdfSha256::derive_keypair(ikm.as_ref());
        Ok(Self {
            signing,
            hpke_sk,
            hpke_pk,
        })
    }

    /// The identity public key.
    pub fn identity(&self) -> Hex32 {
        Hex32(self.signing.verifying_key().to_bytes())
    }

    /// The HPKE public key.
    pub fn hpke_public(&self) -> Hex32 {
        let b = self.hpke_pk.to_bytes();
        let mut a = [0u8; 32];
        a.copy_from_slice(&b);
        Hex32(a)
    }

    /// This node's public description at `addr`.
    pub fn info(&self, addr: String) -> NodeInfo {
        NodeInfo {
            addr,
            identity: self.identity(),
            hpke: self.hpke_public(),
        }
    }

    /// Sign with the identity key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The identity key as PKCS#8 (RFC 5958, RFC 8410 §7), for TLS: the
    /// node's certificate is self-signed by, and carries, this key.
    pub(crate) fn identity_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, NodeError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let doc = self
            .signing
            .to_pkcs8_der()
            .map_err(|e| NodeError::Internal(format!("pkcs8: {e}")))?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    pub(crate) fn hpke_secret(&self) -> &<X25519HkdfSha256 as Kem>::PrivateKey {
        &self.hpke_sk
    }

    /// A secret of this node's for one purpose, the same at every start:
    /// HKDF-SHA256 (RFC 5869) from its HPKE secret key, salt
    /// `keyquorum-node-secret-v1`, info `label` (each use labels its own).
    pub(crate) fn derive_secret(&self, label: &[u8]) -> Zeroizing<[u8; 32]> {
        let ikm = Zeroizing::new(self.hpke_sk.to_bytes().to_vec());
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"keyquorum-node-secret-v1"), &ikm);
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit: expand cannot fail.
        let _ = hk.expand(label, out.as_mut());
        out
    }
}

/// Verify an identity signature.
pub fn verify(identity: &Hex32, message: &[u8], signature: &[u8]) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(&identity.0) else {
        return false;
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    vk.verify_strict(message, &sig).is_ok()
}

/// Parse an HPKE public key.
pub fn hpke_public(key: &Hex32) -> Result<<X25519HkdfSha256 as Kem>::PublicKey, NodeError> {
    <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(&key.0)
        .map_err(|_| NodeError::BadRequest("invalid HPKE public key".into()))
}

/// The file in a node's data directory holding its public identity,
/// written at every start, so `keyquorum node identity` reads it without
/// the passphrase while the node runs.
pub const PUBLIC_IDENTITY_FILE: &str = "identity.json";

/// A node's public identity: what peers' configs, `AddNode` changes and
/// clients' trusted certificates need. Nothing in it is secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublicIdentity {
    /// Its id.
    pub id: keyquorum_wire::NodeId,
    /// Its address and keys.
    pub info: NodeInfo,
    /// Its TLS certificate (PEM), self-signed by its identity key.
    pub certificate: String,
}

impl PublicIdentity {
    /// Write it to `data_dir` (replacing the last start's).
    pub fn write(&self, data_dir: &std::path::Path) -> Result<(), NodeError> {
        let path = data_dir.join(PUBLIC_IDENTITY_FILE);
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| NodeError::Internal(format!("public identity: {e}")))?;
        crate::config::write_private(&path, &bytes)
            .map_err(|e| NodeError::Internal(format!("{}: {e}", path.display())))
    }

    /// Read the one the node in `data_dir` wrote at its last start.
    pub fn read(data_dir: &std::path::Path) -> Result<Self, NodeError> {
        let path = data_dir.join(PUBLIC_IDENTITY_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            NodeError::NotFound(format!(
                "{}: {e} (written when the node starts; before that, `keyquorum node --config \
                 FILE --print-identity`)",
                path.display()
            ))
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| NodeError::Internal(format!("{}: {e}", path.display())))
    }
}
