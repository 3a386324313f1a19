//! PIN-protected secrets (DESIGN.md §3.4; issue #20 item 3), sans-I/O:
//! what the client computes, what a guardian checks, and the guess count a
//! guardian keeps. The design follows Juicebox (Juicebox Protocol, 2023,
//! §4 "Registration" and §5 "Recovery") with the OPRF key made by DKG
//! among the guardians (no dealer) and the evaluation checked by one RFC
//! 9497 proof under the key's public key ([`super::threshold`]).
//!
//! ## Registration (the client; the PIN and the secret never leave it)
//! 1. `stretched = Argon2id(PIN, salt')` ([`stretch`]; RFC 9106, version
//!    0x13), `salt' = SHA-256("keyquorum-pin-v1/salt" ‖ u16 BE len ‖
//!    account ‖ salt)` for a random 16-byte `salt`.
//! 2. The guardians evaluate the threshold VOPRF on the blinded
//!    `stretched`; the client checks the proof and finalizes (RFC 9497
//!    §3.3.2): a 64-byte `output`.
//! 3. [`PinKeys::derive`]: HKDF-SHA256 (RFC 5869) of `output`, salt the
//!    16-byte registration `version`, gives the `unlock` key and the
//!    `seal` key (infos `"keyquorum-pin-v1/unlock"` and
//!    `"keyquorum-pin-v1/seal"`, each ‖ u16 BE len ‖ account).
//! 4. [`Registration::new`]: a random scalar `s` (ristretto255's scalar
//!    field) is Shamir-split t-of-n over the guardians' ids; the secret is
//!    encrypted with ChaCha20-Poly1305 (RFC 8439) under
//!    `HKDF(seal ‖ s, info "keyquorum-pin-v1/secret" ‖ u16 len ‖ account ‖
//!    version)`, nonce zero (the key is used once: `s` is fresh), AAD the
//!    same label. Guardian `i` gets an Ed25519 **unlock key** whose seed
//!    is `HKDF-Expand(unlock, "keyquorum-pin-v1/proof" ‖ u16 len ‖ account
//!    ‖ version ‖ u16 BE i)`; its public key is the guardian's commitment
//!    in the record. Its share `s_i` is masked, `s_i + HashToScalar(seal,
//!    i)` (SHA-512 of `"keyquorum-pin-v1/mask" ‖ seal ‖ u16 i`, mod ℓ), and
//!    sealed to its node's HPKE key (RFC 9180 base mode,
//!    X25519/HKDF-SHA256/ChaCha20Poly1305, `info = "keyquorum-pin-v1/share"
//!    ‖ u16 len ‖ account ‖ version ‖ u16 i`): whoever opens it without
//!    the PIN's OPRF output holds a uniformly random scalar.
//!
//! ## Recovery
//! The client stretches the PIN with the record's salt, has the guardians
//! evaluate (each guess counted first: below), derives the keys, and
//! checks its unlock public keys against the record's commitments: a
//! wrong PIN shows here. With the right one it sends guardian `i` an
//! Ed25519 signature by its unlock key over `"keyquorum-pin-v1/unlock" ‖
//! u16 len ‖ account ‖ version ‖ guess id ‖ recipient key ‖ u16 i`
//! ([`PinKeys::prove`], checked by [`check_proof`]): a proof of knowledge
//! of the PIN-derived key that is good for this guess and this recipient
//! only, so neither a guardian nor the entry node that sees it can use it
//! again. The guardian then starts its own count again and releases its
//! masked share sealed to the client's one-time X25519 key ([`release`];
//! `info = "keyquorum-pin-v1/release" ‖ u16 len ‖ account ‖ version ‖
//! guess id ‖ u16 i`). `t` shares give `s`, and [`open`] the secret. A
//! guardian learns neither the PIN (it sees a blinded element and a
//! signature) nor the secret (one masked share of `s`; `seal` comes from
//! the OPRF output only the client has).
//!
//! ## Guess limits (two bounds; documented in the README)
//! - **The log**: each guess is committed through the control plane before
//!   any guardian answers it; with `L` guesses allowed, exactly `L` guesses
//!   are evaluated between successes while the leader is honest, then the
//!   record is destroyed.
//! - **Each guardian** ([`Counter`]): it answers at most `L` guesses
//!   (counted durably, before answering) between successes it saw itself.
//!   A guess needs `t` answers, so even a leader that lies about the log
//!   (or a restored log) gets at most `⌊n·L/t⌋` guesses out of `n` honest
//!   guardians; with `f < t` guardians also hostile, at most
//!   `⌊(n−f)·L/(t−f)⌋` ([`max_guesses`]). Records need `t > n/2`.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305 as Aead20;
use curve25519_dalek::scalar::Scalar;
use hkdf::Hkdf;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::reset::DeviceSecret;
use crate::error::Error;
use crate::secret::SecretScalar;
use crate::{ParticipantId, Ristretto255};

/// The longest secret, in bytes.
pub const MAX_SECRET: usize = 128;
/// The most guesses a record may allow.
pub const MAX_GUESSES: u16 = 255;
/// Guesses allowed when the client does not say.
pub const DEFAULT_GUESSES: u16 = 10;

/// Argon2id's cost (RFC 9106 §4): memory in KiB, passes, lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stretch {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for Stretch {
    /// OWASP's Argon2id recommendation (19 MiB, 2 passes, 1 lane).
    fn default() -> Self {
        Self {
            m_kib: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

impl Stretch {
    /// Refused below 8 MiB and 1 pass (a stored record's cost is public
    /// and chosen by the registering client: this floor is what every
    /// client insists on), or above 1 GiB, 16 passes, 8 lanes.
    pub fn check(&self) -> Result<(), Error> {
        let ok = (8 * 1024..=1024 * 1024).contains(&self.m_kib)
            && (1..=16).contains(&self.t_cost)
            && (1..=8).contains(&self.p_cost);
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidParameters(
                "Argon2id cost: 8 MiB to 1 GiB, 1 to 16 passes, 1 to 8 lanes",
            ))
        }
    }
}

fn with_account(label: &str, account: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(label.len() + 2 + account.len() + 32);
    v.extend_from_slice(label.as_bytes());
    v.extend_from_slice(
        &u16::try_from(account.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    v.extend_from_slice(account.as_bytes());
    v
}

/// `Argon2id(pin, SHA-256("keyquorum-pin-v1/salt" ‖ u16 len ‖ account ‖
/// salt))`, 64 bytes: the OPRF input.
pub fn stretch(
    pin: &[u8],
    account: &str,
    salt: &[u8; 16],
    cost: &Stretch,
) -> Result<Zeroizing<[u8; 64]>, Error> {
    cost.check()?;
    let mut s = Sha256::new();
    s.update(with_account("keyquorum-pin-v1/salt", account));
    s.update(salt);
    let salt2: [u8; 32] = s.finalize().into();
    let params = argon2::Params::new(cost.m_kib, cost.t_cost, cost.p_cost, Some(64))
        .map_err(|_| Error::InvalidParameters("Argon2id parameters"))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 64]);
    a.hash_password_into(pin, &salt2, out.as_mut())
        .map_err(|_| Error::InvalidParameters("Argon2id"))?;
    Ok(out)
}

/// The keys a PIN's OPRF output gives (module docs, step 3).
pub struct PinKeys {
    unlock: Zeroizing<[u8; 32]>,
    seal: Zeroizing<[u8; 32]>,
}

impl core::fmt::Debug for PinKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PinKeys(<redacted>)")
    }
}

impl PinKeys {
    /// From the OPRF output, for `account`'s registration `version`.
    pub fn derive(output: &[u8; 64], account: &str, version: &[u8; 16]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(version), output);
        let mut unlock = Zeroizing::new([0u8; 32]);
        let mut seal = Zeroizing::new([0u8; 32]);
        // 32 bytes are always within HKDF-SHA256's output length.
        let _ = hk.expand(
            &with_account("keyquorum-pin-v1/unlock", account),
            unlock.as_mut(),
        );
        let _ = hk.expand(
            &with_account("keyquorum-pin-v1/seal", account),
            seal.as_mut(),
        );
        Self { unlock, seal }
    }

    fn unlock_key(
        &self,
        account: &str,
        version: &[u8; 16],
        node: u16,
    ) -> ed25519_dalek::SigningKey {
        let mut info = with_account("keyquorum-pin-v1/proof", account);
        info.extend_from_slice(version);
        info.extend_from_slice(&node.to_be_bytes());
        let mut seed = Zeroizing::new([0u8; 32]);
        // A 32-byte PRK is HKDF-SHA256's hash length; 32 bytes of output
        // are within its limit.
        if let Ok(hk) = Hkdf::<Sha256>::from_prk(self.unlock.as_ref()) {
            let _ = hk.expand(&info, seed.as_mut());
        }
        ed25519_dalek::SigningKey::from_bytes(&seed)
    }

    /// Guardian `node`'s commitment: its unlock key's public key.
    pub fn commitment(&self, account: &str, version: &[u8; 16], node: u16) -> [u8; 32] {
        self.unlock_key(account, version, node)
            .verifying_key()
            .to_bytes()
    }

    /// The proof for guardian `node` that this client knows the PIN's
    /// keys, for guess `guess_id` and one-time key `recipient` only.
    pub fn prove(
        &self,
        account: &str,
        version: &[u8; 16],
        node: u16,
        guess_id: &[u8; 16],
        recipient: &[u8; 32],
    ) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.unlock_key(account, version, node)
            .sign(&unlock_message(account, version, node, guess_id, recipient))
            .to_bytes()
    }

    fn mask(&self, node: u16) -> Scalar {
        let mut h = sha2::Sha512::new();
        h.update(b"keyquorum-pin-v1/mask");
        h.update(self.seal.as_ref());
        h.update(node.to_be_bytes());
        Scalar::from_bytes_mod_order_wide(&h.finalize().into())
    }
}

fn unlock_message(
    account: &str,
    version: &[u8; 16],
    node: u16,
    guess_id: &[u8; 16],
    recipient: &[u8; 32],
) -> Vec<u8> {
    info(
        "keyquorum-pin-v1/unlock",
        account,
        version,
        &[guess_id, recipient, &node.to_be_bytes()],
    )
}

/// Whether `proof` is guardian `node`'s unlock proof under `commitment`
/// for this guess and recipient (Ed25519, strict verification).
pub fn check_proof(
    commitment: &[u8; 32],
    proof: &[u8],
    account: &str,
    version: &[u8; 16],
    node: u16,
    guess_id: &[u8; 16],
    recipient: &[u8; 32],
) -> bool {
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(commitment) else {
        return false;
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(proof) else {
        return false;
    };
    vk.verify_strict(
        &unlock_message(account, version, node, guess_id, recipient),
        &sig,
    )
    .is_ok()
}

fn secret_key(seal: &[u8; 32], s: &[u8], account: &str, version: &[u8; 16]) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(64));
    ikm.extend_from_slice(seal);
    ikm.extend_from_slice(s);
    let hk = Hkdf::<Sha256>::new(None, &ikm);
    let mut info = with_account("keyquorum-pin-v1/secret", account);
    info.extend_from_slice(version);
    let mut key = Zeroizing::new([0u8; 32]);
    let _ = hk.expand(&info, key.as_mut());
    key
}

fn aad(account: &str, version: &[u8; 16]) -> Vec<u8> {
    let mut a = with_account("keyquorum-pin-v1/secret", account);
    a.extend_from_slice(version);
    a
}

fn info(label: &str, account: &str, version: &[u8; 16], rest: &[&[u8]]) -> Vec<u8> {
    let mut i = with_account(label, account);
    i.extend_from_slice(version);
    for r in rest {
        i.extend_from_slice(r);
    }
    i
}

/// A share sealed by HPKE: `enc` and the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The encapsulated key.
    pub enc: [u8; 32],
    /// The ciphertext.
    pub ct: Vec<u8>,
}

fn hpke_seal(to: &[u8; 32], info: &[u8], pt: &[u8]) -> Result<Sealed, Error> {
    let pk = <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(to)
        .map_err(|_| Error::InvalidParameters("an X25519 public key"))?;
    let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &pk,
        info,
        pt,
        &[],
        &mut crate::Rng09(&mut rand_core::OsRng),
    )
    .map_err(|_| Error::InvalidParameters("cannot seal to that key"))?;
    let mut e = [0u8; 32];
    e.copy_from_slice(&enc.to_bytes());
    Ok(Sealed { enc: e, ct })
}

fn hpke_open(
    sk: &<X25519HkdfSha256 as Kem>::PrivateKey,
    info: &[u8],
    s: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let enc = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(&s.enc)
        .map_err(|_| Error::InvalidParameters("a sealed share's key"))?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        sk,
        &enc,
        info,
        &s.ct,
        &[],
    )
    .map(Zeroizing::new)
    .map_err(|_| Error::InvalidParameters("a sealed share does not open"))
}

/// What registration stores: per guardian, a commitment (its unlock
/// public key) and a sealed masked share; the encrypted secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// `(guardian, unlock public key)`, by guardian.
    pub commitments: Vec<(u16, [u8; 32])>,
    /// `(guardian, share sealed to its node key)`, by guardian.
    pub shares: Vec<(u16, Sealed)>,
    /// The secret, encrypted.
    pub ciphertext: Vec<u8>,
}

impl Registration {
    /// Make the record for `secret` (at most [`MAX_SECRET`] bytes) under
    /// `keys`, for `guardians` (`(node, HPKE public key)`, distinct
    /// non-zero ids) and threshold `t` (more than half of them).
    pub fn new<R: RngCore + CryptoRng>(
        keys: &PinKeys,
        secret: &[u8],
        account: &str,
        version: &[u8; 16],
        guardians: &[(u16, [u8; 32])],
        t: u16,
        rng: &mut R,
    ) -> Result<Self, Error> {
        if secret.len() > MAX_SECRET {
            return Err(Error::InvalidParameters("a secret is at most 128 bytes"));
        }
        check_majority(t, guardians.len())?;
        let mut ids = std::collections::BTreeSet::new();
        for (g, _) in guardians {
            ids.insert(ParticipantId::new(*g).map_err(Error::Decode)?);
        }
        if ids.len() != guardians.len() {
            return Err(Error::InvalidParameters("guardians are distinct"));
        }
        let s = SecretScalar::<Ristretto255>::random(rng);
        let s_bytes = s.to_bytes();
        let key = secret_key(&keys.seal, &s_bytes, account, version);
        let ciphertext = Aead20::new(key.as_ref().into())
            .encrypt(
                &[0u8; 12].into(),
                Payload {
                    msg: secret,
                    aad: &aad(account, version),
                },
            )
            .map_err(|_| Error::InvalidParameters("cannot encrypt the secret"))?;
        let shares = crate::vss::shares::<Ristretto255, _>(s, t, &ids, rng)?;
        let mut out = Self {
            commitments: Vec::with_capacity(guardians.len()),
            shares: Vec::with_capacity(guardians.len()),
            ciphertext,
        };
        let mut sorted = guardians.to_vec();
        sorted.sort_unstable_by_key(|(g, _)| *g);
        for (g, pk) in sorted {
            let pid = ParticipantId::new(g).map_err(Error::Decode)?;
            let share = shares
                .get(&pid)
                .ok_or(Error::InvalidParameters("a guardian without a share"))?;
            out.commitments
                .push((g, keys.commitment(account, version, g)));
            let masked = Zeroizing::new((share.expose() + keys.mask(g)).to_bytes());
            let sealed = hpke_seal(
                &pk,
                &info(
                    "keyquorum-pin-v1/share",
                    account,
                    version,
                    &[&g.to_be_bytes()],
                ),
                masked.as_ref(),
            )?;
            out.shares.push((g, sealed));
        }
        Ok(out)
    }
}

/// `t > n/2` and `2 ≤ t ≤ n`: two disjoint quorums could each count a
/// guess once otherwise.
pub fn check_majority(t: u16, n: usize) -> Result<(), Error> {
    if t < 2 || usize::from(t) > n || 2 * usize::from(t) <= n {
        return Err(Error::InvalidParameters(
            "PIN recovery needs 2 <= t <= n and t > n/2",
        ));
    }
    Ok(())
}

/// Guardian `node` opens its sealed share with its node's HPKE secret key
/// and seals it again to the client's one-time `recipient` key for guess
/// `guess_id`.
pub fn release(
    node_secret: &<X25519HkdfSha256 as Kem>::PrivateKey,
    share: &Sealed,
    recipient: &[u8; 32],
    account: &str,
    version: &[u8; 16],
    guess_id: &[u8; 16],
    node: u16,
) -> Result<Sealed, Error> {
    let s = hpke_open(
        node_secret,
        &info(
            "keyquorum-pin-v1/share",
            account,
            version,
            &[&node.to_be_bytes()],
        ),
        share,
    )?;
    hpke_seal(
        recipient,
        &info(
            "keyquorum-pin-v1/release",
            account,
            version,
            &[guess_id, &node.to_be_bytes()],
        ),
        &s,
    )
}

/// The client: open `t` released shares with its one-time key, recombine
/// `s` and decrypt the secret.
#[allow(clippy::too_many_arguments)]
pub fn open(
    keys: &PinKeys,
    recipient: &DeviceSecret,
    released: &[(u16, Sealed)],
    t: u16,
    ciphertext: &[u8],
    account: &str,
    version: &[u8; 16],
    guess_id: &[u8; 16],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut shares: Vec<(ParticipantId, SecretScalar<Ristretto255>)> = Vec::new();
    for (g, sealed) in released {
        // A share that does not open is left out (HPKE base mode does not
        // say who sealed it: the caller keeps only the record's guardians,
        // once each).
        let Ok(pt) = hpke_open(
            recipient.hpke(),
            &info(
                "keyquorum-pin-v1/release",
                account,
                version,
                &[guess_id, &g.to_be_bytes()],
            ),
            sealed,
        ) else {
            continue;
        };
        let Ok(masked) = SecretScalar::<Ristretto255>::from_bytes(&pt) else {
            continue;
        };
        let Ok(id) = ParticipantId::new(*g) else {
            continue;
        };
        if shares.iter().all(|(i, _)| *i != id) {
            let share = SecretScalar::<Ristretto255>::new(masked.expose() - keys.mask(*g));
            shares.push((id, share));
        }
    }
    let t = usize::from(t);
    if shares.len() < t {
        return Err(Error::NotEnough {
            have: shares.len(),
            need: t,
        });
    }
    // Every t-subset in turn (a wrong share from one guardian spoils only
    // the subsets it is in; the AEAD tells a right one).
    let mut pick: Vec<usize> = (0..t).collect();
    for _ in 0..MAX_SUBSETS {
        let subset: std::collections::BTreeMap<_, _> = pick
            .iter()
            .filter_map(|i| shares.get(*i).cloned())
            .collect();
        let Ok(s) = crate::vss::interpolate::<Ristretto255>(&subset, &Scalar::ZERO) else {
            if !next_subset(&mut pick, shares.len()) {
                break;
            }
            continue;
        };
        let key = secret_key(&keys.seal, &s.to_bytes(), account, version);
        let opened = Aead20::new(key.as_ref().into()).decrypt(
            &[0u8; 12].into(),
            Payload {
                msg: ciphertext,
                aad: &aad(account, version),
            },
        );
        if let Ok(secret) = opened {
            return Ok(Zeroizing::new(secret));
        }
        if !next_subset(&mut pick, shares.len()) {
            break;
        }
    }
    Err(Error::InvalidParameters(
        "the secret does not decrypt from any t of the released shares: guardians released \
         wrong shares",
    ))
}

/// How many t-subsets of the released shares [`open`] tries.
const MAX_SUBSETS: usize = 4096;

/// The next `pick.len()`-subset of `0..n` in lexicographic order.
fn next_subset(pick: &mut [usize], n: usize) -> bool {
    let k = pick.len();
    let mut i = k;
    while i > 0 {
        i -= 1;
        let room = n - (k - i);
        if pick.get(i).is_some_and(|v| *v < room) {
            let start = pick.get(i).copied().unwrap_or(0) + 1;
            for (j, v) in pick.iter_mut().enumerate().skip(i) {
                *v = start + (j - i);
            }
            return true;
        }
    }
    false
}

/// A guardian's own durable guess count for one registration (module
/// docs): at most `limit` answered guesses between successes it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter {
    /// The registration it counts for.
    pub version: [u8; 16],
    /// Guesses answered since the last success.
    pub used: u16,
    /// The last guess answered, `SHA-256(guess id ‖ blinded element
    /// digest)` truncated to 16 bytes (a retry of exactly it is not counted
    /// again; the same id with another element is a new guess).
    pub last: [u8; 16],
}

impl Counter {
    /// Bytes of [`Counter::to_bytes`].
    pub const LEN: usize = 34;

    /// The `last` of guess `id` on the element whose SHA-256 is `blinded`:
    /// the first 16 bytes of `SHA-256("keyquorum-pin-v1/guess" ‖ id ‖
    /// blinded)`.
    pub fn guess_of(id: &[u8; 16], blinded: &[u8; 32]) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(b"keyquorum-pin-v1/guess");
        h.update(id);
        h.update(blinded);
        let d: [u8; 32] = h.finalize().into();
        let mut out = [0u8; 16];
        out.copy_from_slice(d.get(..16).unwrap_or(&[0; 16]));
        out
    }

    /// Count guess `guess` ([`Counter::guess_of`]) of registration
    /// `version` before answering it: refused once `limit` guesses were
    /// answered (a new registration starts from zero; the same guess
    /// again is not counted twice).
    pub fn answer(
        &mut self,
        version: &[u8; 16],
        guess: &[u8; 16],
        limit: u16,
    ) -> Result<(), Error> {
        if &self.version != version {
            *self = Self {
                version: *version,
                ..Self::default()
            };
        }
        if self.used > 0 && &self.last == guess {
            return Ok(());
        }
        if self.used >= limit {
            return Err(Error::InvalidParameters(
                "this guardian has answered every guess the record allows",
            ));
        }
        self.used += 1;
        self.last = *guess;
        Ok(())
    }

    /// A success (a right unlock proof): the count starts again.
    pub fn unlocked(&mut self) {
        self.used = 0;
        self.last = [0; 16];
    }

    /// `version ‖ u16 BE used ‖ last`.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..16].copy_from_slice(&self.version);
        b[16..18].copy_from_slice(&self.used.to_be_bytes());
        b[18..].copy_from_slice(&self.last);
        b
    }

    /// Decode [`Counter::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        let b: &[u8; Self::LEN] = b
            .try_into()
            .map_err(|_| Error::InvalidParameters("a guess counter is 34 bytes"))?;
        let (version, rest) = b
            .split_first_chunk::<16>()
            .ok_or(Error::InvalidParameters("counter"))?;
        let (used, last) = rest
            .split_first_chunk::<2>()
            .ok_or(Error::InvalidParameters("counter"))?;
        let last: [u8; 16] = last
            .try_into()
            .map_err(|_| Error::InvalidParameters("counter"))?;
        Ok(Self {
            version: *version,
            used: u16::from_be_bytes(*used),
            last,
        })
    }
}

impl Drop for PinKeys {
    fn drop(&mut self) {
        self.unlock.zeroize();
        self.seal.zeroize();
    }
}

/// The most guesses `n` guardians of threshold `t` answer between
/// successes when each answers at most `limit` and `hostile` of them
/// (fewer than `t`) answer anything: `⌊(n − f)·L / (t − f)⌋`.
pub fn max_guesses(n: u16, t: u16, limit: u16, hostile: u16) -> u32 {
    let honest = u32::from(n.saturating_sub(hostile));
    let need = u32::from(t.saturating_sub(hostile)).max(1);
    honest * u32::from(limit) / need
}

#[cfg(test)]
mod tests;
