//! The message identifier, the session key (HKDF-SHA256, RFC 5869) and the
//! payload AEAD (ChaCha20-Poly1305, RFC 8439).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{MsgError, ID_LABEL};

/// `SHA-256(ID_LABEL ‖ SHA-256(content) ‖ time_ms ‖ sender ‖ receiver ‖
/// nonce)`, every field fixed-length (times big-endian), so the encoding
/// is injective. Sender and receiver are the endpoints' Ed25519 identity
/// keys. The receiver recomputes it after opening the payload, which binds
/// the content to the identifier the coordinators routed on.
pub fn message_id(
    content: &[u8],
    time_ms: u64,
    sender: &[u8; 32],
    receiver: &[u8; 32],
    nonce: &[u8; 16],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ID_LABEL);
    h.update(Sha256::digest(content));
    h.update(time_ms.to_be_bytes());
    h.update(sender);
    h.update(receiver);
    h.update(nonce);
    h.finalize().into()
}

/// A per-message session key. Zeroized on drop, `Debug` prints
/// `<redacted>`, compared in constant time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SessionKey([u8; 32]);

impl core::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

impl PartialEq for SessionKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SessionKey {}

impl SessionKey {
    /// The key bytes, for the AEAD and the literal mode's key confirmation.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Key confirmation for the literal mode: `SHA-256(label ‖ key ‖ id)`.
    pub fn confirmation(&self, id: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"keyquorum/msg/key-confirm/v1");
        h.update(self.0);
        h.update(id);
        h.finalize().into()
    }
}

/// `HKDF-SHA256(ikm = base secret, salt = deployment salt, info = id)`,
/// 32 bytes (RFC 5869 §2.2 extract, §2.3 expand).
pub fn session_key(base_secret: &[u8], salt: &[u8], id: &[u8; 32]) -> SessionKey {
    let hk = Hkdf::<Sha256>::new(Some(salt), base_secret);
    let mut okm = [0u8; 32];
    // 32 ≤ 255·HashLen: expand cannot fail for this length.
    if hk.expand(id, &mut okm).is_err() {
        okm.zeroize();
    }
    SessionKey(okm)
}

/// Every session key seals exactly one payload, so a fixed nonce never
/// repeats under a key (RFC 8439 §4 requires (key, nonce) uniqueness).
const NONCE: [u8; 12] = [0u8; 12];

/// Seal `plaintext` with the header bytes as associated data.
pub fn seal_payload(
    key: &SessionKey,
    header: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, MsgError> {
    ChaCha20Poly1305::new(key.expose().into())
        .encrypt(
            (&NONCE).into(),
            Payload {
                msg: plaintext,
                aad: header,
            },
        )
        .map_err(|_| MsgError::Invalid("payload too large"))
}

/// Open a sealed payload; any change to it or to the header is
/// [`MsgError::Tampered`].
pub fn open_payload(key: &SessionKey, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>, MsgError> {
    ChaCha20Poly1305::new(key.expose().into())
        .decrypt(
            (&NONCE).into(),
            Payload {
                msg: sealed,
                aad: header,
            },
        )
        .map_err(|_| MsgError::Tampered)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap is a failed test"
)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 5869 Appendix A.1 and A.3 (SHA-256): PRK and the 42-byte OKM
    /// through the same `Hkdf` extract/expand path `session_key` uses.
    #[test]
    fn hkdf_matches_rfc5869_vectors() {
        struct V {
            ikm: Vec<u8>,
            salt: Vec<u8>,
            info: Vec<u8>,
            prk: &'static str,
            okm: &'static str,
        }
        let ikm = vec![0x0b; 22];
        let cases = [
            V {
                ikm: ikm.clone(),
                salt: (0x00..=0x0c).collect(),
                info: (0xf0..=0xf9).collect(),
                prk: "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
                okm: "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
            },
            V {
                ikm,
                salt: Vec::new(),
                info: Vec::new(),
                prk: "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
                okm: "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
            },
        ];
        for v in cases {
            let (prk, hk) = Hkdf::<Sha256>::extract(Some(&v.salt), &v.ikm);
            assert_eq!(prk.to_vec(), h(v.prk));
            let mut okm = [0u8; 42];
            hk.expand(&v.info, &mut okm).unwrap();
            assert_eq!(okm.to_vec(), h(v.okm));
            if v.info.is_empty() {
                // Empty salt is 32 zero bytes (RFC 5869 §2.2).
                let zeros = [0u8; 32];
                let (_, hk) = Hkdf::<Sha256>::extract(Some(&zeros), &v.ikm);
                let mut again = [0u8; 42];
                hk.expand(&[], &mut again).unwrap();
                assert_eq!(again, okm);
            }
        }
    }

    #[test]
    fn session_key_is_hkdf_with_the_identifier_as_info() {
        let salt = b"deployment salt";
        let id = [7u8; 32];
        let k = session_key(b"base secret", salt, &id);
        let mut okm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(salt), b"base secret")
            .expand(&id, &mut okm)
            .unwrap();
        assert_eq!(k.expose(), &okm);
        assert_ne!(k, session_key(b"base secret", salt, &[8u8; 32]));
        assert_ne!(k, session_key(b"base secret", b"other salt", &id));
        assert_eq!(format!("{k:?}"), "SessionKey(<redacted>)");
    }

    #[test]
    fn message_id_binds_every_field() {
        let (s, r, n) = ([1u8; 32], [2u8; 32], [3u8; 16]);
        let base = message_id(b"hi", 5, &s, &r, &n);
        assert_ne!(base, message_id(b"ho", 5, &s, &r, &n));
        assert_ne!(base, message_id(b"hi", 6, &s, &r, &n));
        assert_ne!(base, message_id(b"hi", 5, &r, &s, &n));
        assert_ne!(base, message_id(b"hi", 5, &s, &r, &[4u8; 16]));
        assert_eq!(base, message_id(b"hi", 5, &s, &r, &n));
    }

    #[test]
    fn payload_opens_only_unchanged() {
        let k = session_key(b"k", b"salt", &[1u8; 32]);
        let sealed = seal_payload(&k, b"header", b"pay 1 BTC").unwrap();
        assert_eq!(open_payload(&k, b"header", &sealed).unwrap(), b"pay 1 BTC");
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert_eq!(
            open_payload(&k, b"header", &flipped),
            Err(MsgError::Tampered)
        );
        assert_eq!(
            open_payload(&k, b"headeR", &sealed),
            Err(MsgError::Tampered)
        );
        let other = session_key(b"k2", b"salt", &[1u8; 32]);
        assert_eq!(
            open_payload(&other, b"header", &sealed),
            Err(MsgError::Tampered)
        );
    }
}
