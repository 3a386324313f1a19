//! Reset tokens (DESIGN.md §3.4; issue #20 items 1-2), sans-I/O: the
//! pieces every party computes the same way, so that a coordinator cannot
//! choose them.
//!
//! - [`guardians`]: an account's guardians, the `n` nodes of highest
//!   rendezvous weight `SHA-256("keyquorum-guardians-v1" ‖ u16 len ‖
//!   account ‖ u64 node)` (Thaler & Ravishankar 1998, as in
//!   `msgkey::route`), listed by id.
//! - [`channel_of`]: guardians, ordered by id, take the account's channels
//!   in the order given, cycling when there are more guardians than
//!   channels.
//! - [`check_signers`]: a reset's FROST signer set is `t` guardians that
//!   cover as many distinct channels as the account has (up to `t`), so a
//!   coordinator cannot route every fragment over one channel.
//! - [`ResetMessage`]: the bytes the signers sign, exactly
//!   `"keyquorum-reset-v1" ‖ u16 BE len ‖ account (UTF-8) ‖ 16-byte request
//!   id ‖ u64 BE expiry (Unix seconds) ‖ 32-byte credential hash`.
//! - [`Fragment`]: one signer's signature share sealed to the account's
//!   device key, as one line of text a user can paste (layout below).
//!
//! ## Fragment layout (`KQF1`)
//! `"KQF1"` followed by lowercase hex of
//! `request id (16) ‖ signer (u16 BE, its node id) ‖ enc (32) ‖ ciphertext`,
//! where `(enc, ciphertext)` is RFC 9180 HPKE base mode,
//! DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20Poly1305, sealed to
//! the device's X25519 public key with
//! `info = "keyquorum-kqf1" ‖ u16 BE len ‖ account ‖ request id ‖ signer`
//! and empty AAD. The plaintext is the signer's FROST signature share in
//! keyquorum's share encoding (`keys::sign::SignatureShare`). The
//! account, request and signer are bound by `info`: a fragment moved to
//! another account, request or signer does not open.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::codec::Decode;
use crate::error::{DecodeError, Error, Fault};
use crate::sign::{Coordinator, Signature, SignatureShare, SigningCommitment};
use crate::{Ed25519, GroupKey, ParticipantId, SessionId};

/// The domain label that starts every reset message.
pub const RESET_LABEL: &[u8] = b"keyquorum-reset-v1";

/// The text every fragment starts with (its version).
pub const FRAGMENT_PREFIX: &str = "KQF1";

const GUARDIAN_LABEL: &[u8] = b"keyquorum-guardians-v1";
const FRAGMENT_INFO: &[u8] = b"keyquorum-kqf1";

/// The longest account name, in bytes (its reset key is `reset.ACCOUNT`,
/// a key name of at most 64).
pub const MAX_ACCOUNT_LEN: usize = 58;

/// The longest sealed share a fragment may carry (a share is about 40
/// bytes; this bounds what a pasted line may make us decode).
const MAX_SEALED: usize = 256;

/// An account name: 1 to [`MAX_ACCOUNT_LEN`] bytes of `[A-Za-z0-9._-]`,
/// at least one a letter or digit (an account id, not an address: the
/// channels carry addresses).
pub fn check_account(account: &str) -> Result<(), Error> {
    let ok = account.bytes().any(|b| b.is_ascii_alphanumeric())
        && account.len() <= MAX_ACCOUNT_LEN
        && account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidParameters(
            "an account is 1-58 characters from [A-Za-z0-9._-]",
        ))
    }
}

/// The rendezvous weight of `node` for `account`.
pub fn weight(account: &str, node: u64) -> u64 {
    let mut h = Sha256::new();
    h.update(GUARDIAN_LABEL);
    // Account names are at most 64 bytes (checked by every caller).
    h.update(
        u16::try_from(account.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    h.update(account.as_bytes());
    h.update(node.to_be_bytes());
    let d: [u8; 32] = h.finalize().into();
    let [a, b, c, e, f, g, i, j, ..] = d;
    u64::from_be_bytes([a, b, c, e, f, g, i, j])
}

/// The `n` guardians of `account` among `nodes` (distinct): the highest
/// rendezvous weights (ties to the smaller id), returned in id order.
pub fn guardians(account: &str, nodes: &[u64], n: usize) -> Result<Vec<u64>, Error> {
    check_account(account)?;
    let mut distinct = nodes.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != nodes.len() {
        return Err(Error::InvalidParameters("a node appears twice"));
    }
    if n == 0 || n > nodes.len() {
        return Err(Error::InvalidParameters(
            "between 1 and the number of nodes guardians",
        ));
    }
    let mut ranked: Vec<(u64, u64)> = nodes.iter().map(|&m| (weight(account, m), m)).collect();
    ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut chosen: Vec<u64> = ranked.into_iter().take(n).map(|(_, m)| m).collect();
    chosen.sort_unstable();
    Ok(chosen)
}

/// The index (into the account's channels) of guardian `node`'s channel:
/// guardians ordered by id take the channels in order, cycling.
pub fn channel_of(guardians: &[u64], channels: usize, node: u64) -> Option<usize> {
    if channels == 0 {
        return None;
    }
    let mut sorted = guardians.to_vec();
    sorted.sort_unstable();
    sorted.iter().position(|g| *g == node).map(|i| i % channels)
}

/// Guardian `g`'s channel among the account's `channels` ([`channel_of`]).
pub fn channel<'c>(guardians: &[u64], channels: &'c [String], g: u64) -> Option<&'c str> {
    channel_of(guardians, channels.len(), g)
        .and_then(|i| channels.get(i))
        .map(String::as_str)
}

/// How many distinct channels a signer set of `t` must cover: every
/// distinct channel the guardians have, at most `t`.
fn channels_needed(guardians: &[u64], channels: &[String], t: usize) -> usize {
    let mut seen: Vec<&str> = guardians
        .iter()
        .filter_map(|g| channel(guardians, channels, *g))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len().min(t)
}

fn covered(guardians: &[u64], channels: &[String], signers: &[u64]) -> usize {
    let mut seen: Vec<&str> = signers
        .iter()
        .filter_map(|g| channel(guardians, channels, *g))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
}

/// Pick `t` signers among the guardians in `order` (the coordinator's
/// preference, e.g. reachable ones first), skipping `excluded`, so that
/// they cover as many distinct channels as [`check_signers`] demands.
/// Returned in id order; `None` when the guardians left cannot.
pub fn choose_signers(
    guardians: &[u64],
    channels: &[String],
    t: usize,
    order: &[u64],
    excluded: &[u64],
) -> Option<Vec<u64>> {
    let need = channels_needed(guardians, channels, t);
    let usable: Vec<u64> = order
        .iter()
        .copied()
        .filter(|g| guardians.contains(g) && !excluded.contains(g))
        .collect();
    let mut chosen: Vec<u64> = Vec::with_capacity(t);
    let mut seen: Vec<&str> = Vec::new();
    // One per channel first, in the caller's order, then the rest.
    for g in &usable {
        let l = channel(guardians, channels, *g)?;
        if chosen.len() < t && !seen.contains(&l) {
            seen.push(l);
            chosen.push(*g);
        }
    }
    for g in &usable {
        if chosen.len() < t && !chosen.contains(g) {
            chosen.push(*g);
        }
    }
    chosen.sort_unstable();
    (chosen.len() == t && covered(guardians, channels, &chosen) >= need).then_some(chosen)
}

/// Whether `signers` is a valid signer set for a reset: `t` distinct
/// guardians covering every distinct channel of the account, up to `t`.
pub fn check_signers(
    guardians: &[u64],
    channels: &[String],
    t: usize,
    signers: &[u64],
) -> Result<(), Error> {
    let mut distinct = signers.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != signers.len()
        || signers.len() != t
        || !signers.iter().all(|s| guardians.contains(s))
    {
        return Err(Error::InvalidParameters(
            "a reset's signers are t distinct guardians of the account",
        ));
    }
    if covered(guardians, channels, signers) < channels_needed(guardians, channels, t) {
        return Err(Error::InvalidParameters(
            "a reset's signers cover every distinct channel of the account (up to t)",
        ));
    }
    Ok(())
}

/// What a reset token signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetMessage {
    /// The account.
    pub account: String,
    /// The reset request's id.
    pub request_id: [u8; 16],
    /// When the token stops being valid (Unix seconds).
    pub expiry: u64,
    /// The hash of the new credential.
    pub credential_hash: [u8; 32],
}

impl ResetMessage {
    /// The signed bytes (module docs).
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        check_account(&self.account)?;
        let len = u16::try_from(self.account.len())
            .map_err(|_| Error::InvalidParameters("account too long"))?;
        let mut m = Vec::with_capacity(RESET_LABEL.len() + 2 + self.account.len() + 56);
        m.extend_from_slice(RESET_LABEL);
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(self.account.as_bytes());
        m.extend_from_slice(&self.request_id);
        m.extend_from_slice(&self.expiry.to_be_bytes());
        m.extend_from_slice(&self.credential_hash);
        Ok(m)
    }

    /// Parse signed bytes (a relying service reading a token's message).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let rest = bytes
            .strip_prefix(RESET_LABEL)
            .ok_or(DecodeError::Invalid("not a keyquorum-reset-v1 message"))?;
        let (len, rest) = rest
            .split_first_chunk::<2>()
            .ok_or(DecodeError::Truncated)?;
        let len = usize::from(u16::from_be_bytes(*len));
        let (account, rest) = rest.split_at_checked(len).ok_or(DecodeError::Truncated)?;
        let account = std::str::from_utf8(account)
            .map_err(|_| DecodeError::Invalid("account is not UTF-8"))?
            .to_string();
        check_account(&account).map_err(|_| DecodeError::Invalid("account name"))?;
        if rest.len() > 16 + 8 + 32 {
            return Err(DecodeError::TrailingBytes(rest.len() - 56));
        }
        let (request_id, rest) = rest
            .split_first_chunk::<16>()
            .ok_or(DecodeError::Truncated)?;
        let (expiry, rest) = rest
            .split_first_chunk::<8>()
            .ok_or(DecodeError::Truncated)?;
        let credential_hash: [u8; 32] = rest.try_into().map_err(|_| DecodeError::Truncated)?;
        let (request_id, expiry) = (*request_id, *expiry);
        Ok(Self {
            account,
            request_id,
            expiry: u64::from_be_bytes(expiry),
            credential_hash,
        })
    }
}

/// A reset request's id: the first 16 bytes of
/// `SHA-256("keyquorum-reset-id-v1" ‖ u16 len ‖ client key id ‖ u16 len ‖
/// signature nonce)` of the client's signed request (RFC 9421 `keyid` and
/// `nonce`), so every replica derives it alike and one signed request
/// names one reset.
pub fn request_id(keyid: &str, nonce: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"keyquorum-reset-id-v1");
    for part in [keyid.as_bytes(), nonce.as_bytes()] {
        h.update(u16::try_from(part.len()).unwrap_or(u16::MAX).to_be_bytes());
        h.update(part);
    }
    let mut id = [0u8; 16];
    for (o, b) in id.iter_mut().zip(h.finalize()) {
        *o = b;
    }
    id
}

/// The FROST signing session of reset request `request_id` (the label a
/// signature share carries; the signers and the assembling client derive
/// it alike).
pub fn session(request_id: &[u8; 16]) -> SessionId {
    let mut h = Sha256::new();
    h.update(b"keyquorum-reset-session-v1");
    h.update(request_id);
    SessionId(h.finalize().into())
}

/// A device's X25519 secret key (it opens the fragments). Zeroized on
/// drop; `Debug` prints `<redacted>`.
pub struct DeviceSecret(<X25519HkdfSha256 as Kem>::PrivateKey);

impl core::fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DeviceSecret(<redacted>)")
    }
}

impl DeviceSecret {
    /// A fresh device key pair.
    pub fn generate() -> Self {
        let mut os = rand_core::OsRng;
        let mut rng = crate::Rng09(&mut os);
        let (sk, _) = X25519HkdfSha256::gen_keypair(&mut rng);
        Self(sk)
    }

    /// The secret key's 32 bytes (to store it encrypted or in a 0600 file).
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.to_bytes().to_vec())
    }

    /// From 32 secret bytes.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        <X25519HkdfSha256 as Kem>::PrivateKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| DecodeError::Invalid("device secret key"))
    }

    /// The HPKE private key (to open what is sealed to it).
    pub fn hpke(&self) -> &<X25519HkdfSha256 as Kem>::PrivateKey {
        &self.0
    }

    /// The public key the account is enrolled with (32 bytes).
    pub fn public_key(&self) -> [u8; 32] {
        let pk = X25519HkdfSha256::sk_to_pk(&self.0);
        let mut out = [0u8; 32];
        out.copy_from_slice(&pk.to_bytes());
        out
    }
}

/// One signer's sealed signature share (module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// The reset request it belongs to.
    pub request_id: [u8; 16],
    /// The signer (node id).
    pub signer: u16,
    enc: [u8; 32],
    sealed: Vec<u8>,
}

fn fragment_info(account: &str, request_id: &[u8; 16], signer: u16) -> Vec<u8> {
    let mut info = Vec::with_capacity(FRAGMENT_INFO.len() + 2 + account.len() + 18);
    info.extend_from_slice(FRAGMENT_INFO);
    info.extend_from_slice(
        &u16::try_from(account.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    info.extend_from_slice(account.as_bytes());
    info.extend_from_slice(request_id);
    info.extend_from_slice(&signer.to_be_bytes());
    info
}

impl Fragment {
    /// Seal `share` (the signer's encoded signature share) to `device`.
    pub fn seal(
        device: &[u8; 32],
        account: &str,
        request_id: [u8; 16],
        signer: u16,
        share: &[u8],
    ) -> Result<Self, Error> {
        check_account(account)?;
        let pk = <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(device)
            .map_err(|_| Error::InvalidParameters("device public key"))?;
        let (enc, sealed) =
            hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
                &OpModeS::Base,
                &pk,
                &fragment_info(account, &request_id, signer),
                share,
                &[],
                &mut crate::Rng09(&mut rand_core::OsRng),
            )
            .map_err(|_| Error::InvalidParameters("cannot seal to the device key"))?;
        let mut e = [0u8; 32];
        e.copy_from_slice(&enc.to_bytes());
        Ok(Self {
            request_id,
            signer,
            enc: e,
            sealed,
        })
    }

    /// Open with the device's secret key: the signer's encoded share.
    pub fn open(&self, device: &DeviceSecret, account: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        let enc = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(&self.enc)
            .map_err(|_| Error::Decode(DecodeError::Invalid("fragment key")))?;
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &device.0,
            &enc,
            &fragment_info(account, &self.request_id, self.signer),
            &self.sealed,
            &[],
        )
        .map(Zeroizing::new)
        .map_err(|_| {
            Error::InvalidParameters(
                "the fragment does not open with this device key for this account",
            )
        })
    }

    /// The one line of text (module docs).
    pub fn to_text(&self) -> String {
        let mut b = Vec::with_capacity(50 + self.sealed.len());
        b.extend_from_slice(&self.request_id);
        b.extend_from_slice(&self.signer.to_be_bytes());
        b.extend_from_slice(&self.enc);
        b.extend_from_slice(&self.sealed);
        let mut s = String::with_capacity(FRAGMENT_PREFIX.len() + 2 * b.len());
        s.push_str(FRAGMENT_PREFIX);
        for x in b {
            use core::fmt::Write as _;
            let _ = write!(s, "{x:02x}");
        }
        s
    }

    /// Parse a pasted line (surrounding whitespace ignored; hex in either
    /// case).
    pub fn from_text(text: &str) -> Result<Self, DecodeError> {
        let body = text
            .trim()
            .strip_prefix(FRAGMENT_PREFIX)
            .ok_or(DecodeError::Invalid("a fragment starts with KQF1"))?;
        if body.len() % 2 != 0 || body.len() > 2 * (50 + MAX_SEALED) {
            return Err(DecodeError::Invalid("fragment length"));
        }
        let nibble = |c: u8| -> Result<u8, DecodeError> {
            match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(DecodeError::Invalid("a fragment is hex after KQF1")),
            }
        };
        let bytes = body
            .as_bytes()
            .chunks_exact(2)
            .map(|p| match *p {
                [hi, lo] => Ok((nibble(hi)? << 4) | nibble(lo)?),
                _ => Err(DecodeError::Truncated),
            })
            .collect::<Result<Vec<u8>, DecodeError>>()?;
        let (request_id, rest) = bytes
            .split_first_chunk::<16>()
            .ok_or(DecodeError::Truncated)?;
        let (signer, rest) = rest
            .split_first_chunk::<2>()
            .ok_or(DecodeError::Truncated)?;
        let (enc, sealed) = rest
            .split_first_chunk::<32>()
            .ok_or(DecodeError::Truncated)?;
        // At least the AEAD tag.
        if sealed.len() < 16 {
            return Err(DecodeError::Truncated);
        }
        Ok(Self {
            request_id: *request_id,
            signer: u16::from_be_bytes(*signer),
            enc: *enc,
            sealed: sealed.to_vec(),
        })
    }
}

/// Assemble a reset token (client side): open each fragment with the
/// device key, check each share against its signer's verifying share and
/// aggregate all `t` into an Ed25519 signature on `message` under the
/// group key (RFC 9591 §5.3). A fragment of another request, a repeated or
/// unknown signer, or fewer than `t` fragments is an error; a share that
/// does not verify names its signer.
pub fn assemble(
    group: &GroupKey<Ed25519>,
    session: SessionId,
    message: &ResetMessage,
    commitments: Vec<SigningCommitment<Ed25519>>,
    fragments: &[Fragment],
    device: &DeviceSecret,
) -> Result<Signature<Ed25519>, Error> {
    let bytes = message.to_bytes()?;
    let mut c = Coordinator::new(group, session, &bytes, commitments)?;
    let signers: Vec<ParticipantId> = c.package().signers().collect();
    let mut seen: Vec<u16> = Vec::with_capacity(fragments.len());
    for f in fragments {
        if f.request_id != message.request_id {
            return Err(Error::InvalidParameters(
                "a fragment belongs to another reset request",
            ));
        }
        if seen.contains(&f.signer) {
            return Err(Error::InvalidParameters("two fragments from one signer"));
        }
        seen.push(f.signer);
        let from = signers
            .iter()
            .copied()
            .find(|p| p.get() == f.signer)
            .ok_or(Error::InvalidParameters(
                "a fragment from a guardian outside the request's signer set",
            ))?;
        let plain = f.open(device, &message.account)?;
        let share = SignatureShare::<Ed25519>::from_bytes(&plain)
            .map_err(|_| Error::misbehaved(from, Fault::InvalidSignatureShare))?;
        c.receive(from, share)?;
    }
    let missing = c.missing();
    if !missing.is_empty() {
        return Err(Error::NotEnough {
            have: signers.len() - missing.len(),
            need: signers.len(),
        });
    }
    c.finish()
}

#[cfg(test)]
mod tests;
