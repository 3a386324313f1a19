//! The three roles' steps as pure functions: [`send`] (sender),
//! [`coordinate`] (each coordinator node), [`receive`] (receiver). Messages
//! in, messages out; the caller supplies the clock reading, the RNG, the
//! membership, and keeps the stateful parts (the seen-set of identifiers,
//! the prekey store, the endpoint registry).
//!
//! Transport secrecy: shares are sealed with HPKE (RFC 9180 base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305); the
//! receiver's shares and every share a coordinator forwards go to the
//! receiver's signed one-time prekey (as in X3DH, Marlinspike & Perrin
//! 2016), so once the receiver deletes the prekey secret, nothing recorded
//! opens again — forward secrecy for the receiver's side. Each coordinator's
//! bundle is sealed to its node HPKE key and holds fewer than `t` shares in
//! the default mode.

use std::collections::BTreeMap;

use crate::Rng09;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::kdf::{message_id, open_payload, seal_payload, session_key, SessionKey};
use super::route::{self, Member};
use super::split::{self, Grp, Layout};
use super::{Mode, MsgError};
use crate::codec::{Decode, Encode};
use crate::id::ParticipantId;
use crate::secret::SecretScalar;
use crate::vss::Commitment;

const VERSION: u8 = 1;
const HPKE_INFO: &[u8] = b"keyquorum/msg/share/v1";
const HEADER_SIG_LABEL: &[u8] = b"keyquorum/msg/header-sig/v1";
const PREKEY_LABEL: &[u8] = b"keyquorum/msg/prekey/v1";
const CONFIRM_SIG_LABEL: &[u8] = b"keyquorum/msg/confirmation/v1";

/// Deployment-wide parameters.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The public HKDF salt.
    pub salt: Vec<u8>,
    /// Acceptance window for timestamps (either side of now), ms.
    pub window_ms: u64,
}

/// A cluster node as the protocol sees it: routing identity and HPKE key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Node id and identity key.
    pub member: Member,
    /// X25519 HPKE public key.
    pub hpke: [u8; 32],
}

fn members(nodes: &[Node]) -> Vec<Member> {
    nodes.iter().map(|n| n.member).collect()
}

/// A one-time prekey's secret half. Zeroized on drop; deleting it after
/// use is what makes past messages unreadable.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct PrekeySecret([u8; 32]);

impl core::fmt::Debug for PrekeySecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PrekeySecret(<redacted>)")
    }
}

impl PrekeySecret {
    /// From stored bytes (the HPKE key-derivation input).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The stored bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    fn keypair(
        &self,
    ) -> (
        <X25519HkdfSha256 as Kem>::PrivateKey,
        <X25519HkdfSha256 as Kem>::PublicKey,
    ) {
        X25519HkdfSha256::derive_keypair(&self.0)
    }

    /// The public half.
    pub fn public(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.keypair().1.to_bytes());
        out
    }
}

/// A published one-time prekey: X25519 public key signed by the endpoint's
/// Ed25519 identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedPrekey {
    /// The X25519 public key.
    pub public: [u8; 32],
    /// Ed25519 signature over `PREKEY_LABEL ‖ public`.
    pub signature: [u8; 64],
}

impl SignedPrekey {
    /// Check the signature against the endpoint identity.
    pub fn verify(&self, identity: &[u8; 32]) -> Result<(), MsgError> {
        verify_sig(identity, &[PREKEY_LABEL, &self.public], &self.signature)
            .map_err(|_| MsgError::Invalid("prekey signature does not verify"))
    }
}

/// Make a one-time prekey for the endpoint with `identity`.
pub fn new_prekey<R: RngCore + CryptoRng>(
    rng: &mut R,
    identity: &SigningKey,
) -> (PrekeySecret, SignedPrekey) {
    let mut ikm = [0u8; 32];
    rng.fill_bytes(&mut ikm);
    let secret = PrekeySecret(ikm);
    ikm.zeroize();
    let public = secret.public();
    let signature = sign_parts(identity, &[PREKEY_LABEL, &public]);
    (secret, SignedPrekey { public, signature })
}

fn sign_parts(key: &SigningKey, parts: &[&[u8]]) -> [u8; 64] {
    key.sign(&parts.concat()).to_bytes()
}

fn verify_sig(identity: &[u8; 32], parts: &[&[u8]], sig: &[u8; 64]) -> Result<(), ()> {
    let vk = VerifyingKey::from_bytes(identity).map_err(|_| ())?;
    vk.verify_strict(&parts.concat(), &Signature::from_bytes(sig))
        .map_err(|_| ())
}

mod header;
pub use header::{Header, Routing};

/// An HPKE-sealed share bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Encapsulated key.
    pub enc: Vec<u8>,
    /// Ciphertext.
    pub ciphertext: Vec<u8>,
}

/// What the sender emits for one message.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The message identifier (as in the header).
    pub id: [u8; 32],
    /// The encoded header.
    pub header: Vec<u8>,
    /// Sender's signature over the header and the payload's hash.
    pub signature: [u8; 64],
    /// The sealed payload.
    pub payload: Vec<u8>,
    /// The receiver's shares, sealed to its prekey.
    pub for_receiver: Sealed,
    /// Each coordinator's bundle, sealed to its node key, by node id.
    pub for_coordinators: Vec<(u64, Sealed)>,
}

/// A coordinator's answer: the verification value, and its share sealed to
/// the receiver's prekey. The node signs [`Confirmation::signing_bytes`]
/// with its identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// The message identifier.
    pub id: [u8; 32],
    /// The coordinator's node id.
    pub node: u64,
    /// `H(k·G ‖ id)` (default mode) or `H(session key ‖ id)` (literal).
    pub value: [u8; 32],
    /// The coordinator's own share, sealed to the receiver's prekey.
    pub forwarded: Sealed,
}

impl Confirmation {
    /// The bytes the coordinator's identity signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let fwd: [u8; 32] = Sha256::new()
            .chain_update(&self.forwarded.enc)
            .chain_update(&self.forwarded.ciphertext)
            .finalize()
            .into();
        [
            CONFIRM_SIG_LABEL,
            &self.id,
            &self.node.to_be_bytes(),
            &self.value,
            &fwd,
        ]
        .concat()
    }
}

fn header_sig_parts<'a>(header: &'a [u8], payload_hash: &'a [u8]) -> [&'a [u8]; 3] {
    [HEADER_SIG_LABEL, header, payload_hash]
}

fn aad(id: &[u8; 32], recipient: &str) -> Vec<u8> {
    [HPKE_INFO, id, recipient.as_bytes()].concat()
}

/// Associated data of a coordinator's bundle for message `id`.
fn node_aad(id: &[u8; 32], node: u64) -> Vec<u8> {
    aad(id, &format!("node {node}"))
}

/// Associated data of the share coordinator `node` forwards to the receiver.
fn forwarded_aad(id: &[u8; 32], node: u64) -> Vec<u8> {
    aad(id, &format!("forwarded by node {node}"))
}

fn encode_shares(shares: &[(ParticipantId, &SecretScalar<Grp>)]) -> Zeroizing<Vec<u8>> {
    let mut b = Zeroizing::new(Vec::with_capacity(shares.len() * 34));
    for (i, s) in shares {
        b.extend_from_slice(&i.get().to_be_bytes());
        b.extend_from_slice(&s.to_bytes());
    }
    b
}

fn decode_shares(bytes: &[u8]) -> Result<BTreeMap<ParticipantId, SecretScalar<Grp>>, MsgError> {
    let bad = MsgError::Invalid("malformed share bundle");
    if bytes.is_empty() || !bytes.len().is_multiple_of(34) {
        return Err(bad);
    }
    let mut out = BTreeMap::new();
    for chunk in bytes.chunks_exact(34) {
        let (i, s) = chunk.split_at(2);
        let i = ParticipantId::new(u16::from_be_bytes([
            *i.first().ok_or(bad.clone())?,
            *i.get(1).ok_or(bad.clone())?,
        ]))
        .map_err(|_| bad.clone())?;
        let s = SecretScalar::<Grp>::from_bytes(s).map_err(|_| bad.clone())?;
        if out.insert(i, s).is_some() {
            return Err(bad);
        }
    }
    Ok(out)
}

fn seal<R: RngCore + CryptoRng>(
    rng: &mut R,
    to: &[u8; 32],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, MsgError> {
    let pk = <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(to)
        .map_err(|_| MsgError::Invalid("not an X25519 public key"))?;
    let (enc, ciphertext) =
        hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
            &OpModeS::Base,
            &pk,
            HPKE_INFO,
            plaintext,
            aad,
            &mut Rng09(rng),
        )
        .map_err(|_| MsgError::Invalid("HPKE seal failed"))?;
    Ok(Sealed {
        enc: enc.to_bytes().to_vec(),
        ciphertext,
    })
}

fn open(
    sk: &<X25519HkdfSha256 as Kem>::PrivateKey,
    aad: &[u8],
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, MsgError> {
    let enc = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(&sealed.enc)
        .map_err(|_| MsgError::Tampered)?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        sk,
        &enc,
        HPKE_INFO,
        &sealed.ciphertext,
        aad,
    )
    .map(Zeroizing::new)
    .map_err(|_| MsgError::Tampered)
}

fn in_window(d: &Deployment, time_ms: u64, now_ms: u64) -> Result<(), MsgError> {
    if time_ms.abs_diff(now_ms) > d.window_ms {
        return Err(MsgError::OutsideWindow);
    }
    Ok(())
}

/// Seal `shares` for coordinator `node` of message `id` — what [`send`]
/// does for each coordinator.
pub fn seal_shares_for_node<R: RngCore + CryptoRng>(
    rng: &mut R,
    node: &Node,
    id: &[u8; 32],
    shares: &[(ParticipantId, &SecretScalar<Grp>)],
) -> Result<Sealed, MsgError> {
    seal(
        rng,
        &node.hpke,
        &node_aad(id, node.member.id),
        &encode_shares(shares),
    )
}

/// Everything [`send`] needs about the receiver.
#[derive(Debug, Clone, Copy)]
pub struct Recipient {
    /// Receiver identity.
    pub identity: [u8; 32],
    /// One of its published, unused prekeys.
    pub prekey: SignedPrekey,
}

/// The sender's step: split a fresh base secret, seal the payload and the
/// shares. Returns the message and the verification value the
/// coordinators must confirm.
#[allow(
    clippy::too_many_arguments,
    reason = "one pure step with its whole input"
)]
pub fn send<R: RngCore + CryptoRng>(
    rng: &mut R,
    deployment: &Deployment,
    sender: &SigningKey,
    to: &Recipient,
    nodes: &[Node],
    m: u16,
    mode: Mode,
    time_ms: u64,
    content: &[u8],
) -> Result<(Outgoing, [u8; 32]), MsgError> {
    to.prekey.verify(&to.identity)?;
    let layout = Layout::new(m, mode)?;
    let mut nonce = [0u8; 16];
    rng.fill_bytes(&mut nonce);
    let sender_id = sender.verifying_key().to_bytes();
    let id = message_id(content, time_ms, &sender_id, &to.identity, &nonce);
    let coordinators = route::coordinators(&id, &members(nodes), usize::from(m))?;
    let dealt = split::deal(&layout, rng);
    let header = Header {
        routing: Routing {
            mode,
            time_ms,
            sender: sender_id,
            receiver: to.identity,
            prekey: to.prekey.public,
            nonce,
            id,
            coordinators: coordinators.clone(),
        },
        commitment: Commitment::from_elements(dealt.commitment.elements().to_vec()),
    };
    let header_bytes = header.to_bytes();
    let key = session_key(&split::ikm(&dealt.secret), &deployment.salt, &id);
    let payload = seal_payload(&key, &header_bytes, content)?;
    let payload_hash = Sha256::digest(&payload);
    let signature = sign_parts(sender, &header_sig_parts(&header_bytes, &payload_hash));
    let pick =
        |ids: &[ParticipantId]| -> Result<Vec<(ParticipantId, &SecretScalar<Grp>)>, MsgError> {
            ids.iter()
                .map(|i| {
                    dealt
                        .shares
                        .get(i)
                        .map(|s| (*i, s))
                        .ok_or(MsgError::Invalid("share missing"))
                })
                .collect()
        };
    let for_receiver = seal(
        rng,
        &to.prekey.public,
        &aad(&id, "receiver"),
        &encode_shares(&pick(&layout.receiver())?),
    )?;
    let mut for_coordinators = Vec::with_capacity(coordinators.len());
    for (rank, node_id) in coordinators.iter().enumerate() {
        let node = nodes
            .iter()
            .find(|n| n.member.id == *node_id)
            .ok_or(MsgError::Invalid("coordinator not in the membership"))?;
        let rank = u16::try_from(rank).map_err(|_| MsgError::Invalid("rank"))?;
        let sealed =
            seal_shares_for_node(rng, node, &id, &pick(&layout.coordinator_shares(rank)?)?)?;
        for_coordinators.push((*node_id, sealed));
    }
    let expected = match mode {
        Mode::VerifyInTheExponent => split::verification_value(&dealt.commitment.constant(), &id)?,
        Mode::CoordinatorReconstructs => key.confirmation(&id),
    };
    Ok((
        Outgoing {
            id,
            header: header_bytes,
            signature,
            payload,
            for_receiver,
            for_coordinators,
        },
        expected,
    ))
}

/// What a coordinator is given for one message.
#[derive(Debug, Clone, Copy)]
pub struct AtCoordinator<'a> {
    /// The encoded header.
    pub header: &'a [u8],
    /// The sender's signature.
    pub signature: &'a [u8; 64],
    /// The sealed payload (only its hash is used).
    pub payload: &'a [u8],
    /// This node's sealed bundle.
    pub bundle: &'a Sealed,
}

/// A coordinator's step. `sender_identity` is the registered identity of
/// the endpoint the header names (the caller looks it up and refuses
/// unknown or revoked endpoints); `hpke_ikm` derives this node's HPKE key.
/// The caller checks the identifier against its persisted seen-set
/// (replay) and records it only when this returns `Ok`.
#[allow(
    clippy::too_many_arguments,
    reason = "one pure step with its whole input"
)]
pub fn coordinate<R: RngCore + CryptoRng>(
    rng: &mut R,
    deployment: &Deployment,
    me: u64,
    hpke_secret: &<X25519HkdfSha256 as Kem>::PrivateKey,
    nodes: &[Node],
    sender_identity: &[u8; 32],
    now_ms: u64,
    msg: AtCoordinator<'_>,
) -> Result<(Header, Confirmation), MsgError> {
    let header = Header::from_bytes(msg.header)?;
    if &header.routing.sender != sender_identity {
        return Err(MsgError::Invalid("header names another sender"));
    }
    let payload_hash = Sha256::digest(msg.payload);
    verify_sig(
        sender_identity,
        &header_sig_parts(msg.header, &payload_hash),
        msg.signature,
    )
    .map_err(|_| MsgError::Tampered)?;
    in_window(deployment, header.routing.time_ms, now_ms)?;
    header.check_route(nodes)?;
    let rank = header
        .routing
        .coordinators
        .iter()
        .position(|c| *c == me)
        .ok_or(MsgError::WrongCoordinator)?;
    let rank = u16::try_from(rank).map_err(|_| MsgError::Invalid("rank"))?;
    let layout = header.layout()?;
    let plain = open(hpke_secret, &node_aad(&header.routing.id, me), msg.bundle)?;
    let shares = decode_shares(&plain)?;
    let mut expected: Vec<ParticipantId> = layout.coordinator_shares(rank)?;
    expected.sort();
    if shares.keys().copied().collect::<Vec<_>>() != expected {
        return Err(MsgError::Invalid("bundle holds the wrong share indices"));
    }
    for (i, s) in &shares {
        split::check_share(&layout, &header.commitment, *i, s)?;
    }
    let value = match header.routing.mode {
        Mode::VerifyInTheExponent => {
            let kg = split::public_image(&layout, &header.commitment)?;
            split::verification_value(&kg, &header.routing.id)?
        }
        Mode::CoordinatorReconstructs => {
            let k = split::reconstruct(&layout, &header.commitment, &shares)?;
            session_key(&split::ikm(&k), &deployment.salt, &header.routing.id)
                .confirmation(&header.routing.id)
        }
    };
    let own = layout.coordinator(rank)?;
    let share = shares
        .get(&own)
        .ok_or(MsgError::Invalid("own share missing"))?;
    let forwarded = seal(
        rng,
        &header.routing.prekey,
        &forwarded_aad(&header.routing.id, me),
        &encode_shares(&[(own, share)]),
    )?;
    Ok((
        header.clone(),
        Confirmation {
            id: header.routing.id,
            node: me,
            value,
            forwarded,
        },
    ))
}

/// Check a message as it is delivered, against its sender's signature
/// (every replica does, on apply, so no node can deliver what the sender
/// did not sign): the header parses and names `sender_identity` as its
/// sender, and the sender signed the header and this payload. Returns the
/// header for the caller's checks of identifier, receiver, prekey and time.
pub fn check_signed(
    sender_identity: &[u8; 32],
    header: &[u8],
    payload: &[u8],
    signature: &[u8; 64],
) -> Result<Header, MsgError> {
    let parsed = Header::from_bytes(header)?;
    if &parsed.routing.sender != sender_identity {
        return Err(MsgError::Invalid("header names another sender"));
    }
    let payload_hash = Sha256::digest(payload);
    verify_sig(
        sender_identity,
        &header_sig_parts(header, &payload_hash),
        signature,
    )
    .map_err(|_| MsgError::Tampered)?;
    Ok(parsed)
}

/// A coordinator's signed confirmation as the receiver gets it.
#[derive(Debug, Clone)]
pub struct SignedConfirmation {
    /// The confirmation.
    pub confirmation: Confirmation,
    /// The node's identity signature over its signing bytes.
    pub signature: [u8; 64],
}

/// Check a coordinator's identity signature on its confirmation (the
/// sender does, on the confirmations it is sent back; [`receive`] does).
pub fn verify_confirmation(nodes: &[Node], sc: &SignedConfirmation) -> Result<(), MsgError> {
    let node = nodes
        .iter()
        .find(|n| n.member.id == sc.confirmation.node)
        .ok_or(MsgError::WrongCoordinator)?;
    verify_sig(
        &node.member.identity,
        &[&sc.confirmation.signing_bytes()],
        &sc.signature,
    )
    .map_err(|_| MsgError::Invalid("confirmation signature does not verify"))
}

/// The receiver's step: check everything, rebuild `k` from its shares and
/// at least one coordinator's, compare every verification value, derive
/// the session key and open the payload. `prekey` is the secret of the
/// prekey the header names (the caller refuses used or unknown prekeys and
/// deletes this one afterwards).
pub fn receive(
    deployment: &Deployment,
    me: &[u8; 32],
    prekey: &PrekeySecret,
    nodes: &[Node],
    sender_identity: &[u8; 32],
    msg: &Outgoing,
    confirmations: &[SignedConfirmation],
) -> Result<Vec<u8>, MsgError> {
    let header = Header::from_bytes(&msg.header)?;
    if &header.routing.sender != sender_identity {
        return Err(MsgError::Invalid("header names another sender"));
    }
    let (sk, pk) = prekey.keypair();
    if &header.routing.receiver != me || header.routing.prekey[..] != pk.to_bytes()[..] {
        return Err(MsgError::Invalid(
            "message is for another receiver or prekey",
        ));
    }
    let payload_hash = Sha256::digest(&msg.payload);
    verify_sig(
        sender_identity,
        &header_sig_parts(&msg.header, &payload_hash),
        &msg.signature,
    )
    .map_err(|_| MsgError::Tampered)?;
    header.check_route(nodes)?;
    let layout = header.layout()?;
    let mut shares = decode_shares(&open(
        &sk,
        &aad(&header.routing.id, "receiver"),
        &msg.for_receiver,
    )?)?;
    if shares.keys().copied().collect::<Vec<_>>() != layout.receiver() {
        return Err(MsgError::Invalid("receiver bundle holds the wrong indices"));
    }
    let mut values = Vec::new();
    for sc in confirmations {
        let c = &sc.confirmation;
        let Some(rank) = header
            .routing
            .coordinators
            .iter()
            .position(|n| *n == c.node)
        else {
            return Err(MsgError::WrongCoordinator);
        };
        verify_confirmation(nodes, sc)?;
        if c.id != header.routing.id {
            return Err(MsgError::Invalid("confirmation for another message"));
        }
        let fwd = decode_shares(&open(
            &sk,
            &forwarded_aad(&header.routing.id, c.node),
            &c.forwarded,
        )?)?;
        let own =
            layout.coordinator(u16::try_from(rank).map_err(|_| MsgError::Invalid("rank"))?)?;
        if fwd.keys().copied().collect::<Vec<_>>() != [own] {
            return Err(MsgError::Invalid("forwarded share has the wrong index"));
        }
        shares.extend(fwd);
        values.push(c.value);
    }
    if values.is_empty() {
        return Err(MsgError::Invalid("no coordinator confirmation"));
    }
    let k = split::reconstruct(&layout, &header.commitment, &shares)?;
    let key: SessionKey = session_key(&split::ikm(&k), &deployment.salt, &header.routing.id);
    let mine = match header.routing.mode {
        // reconstruct() checked k·G == C_0 already.
        Mode::VerifyInTheExponent => {
            split::verification_value(&header.commitment.constant(), &header.routing.id)?
        }
        Mode::CoordinatorReconstructs => key.confirmation(&header.routing.id),
    };
    if values.iter().any(|v| *v != mine) {
        return Err(MsgError::VerificationMismatch);
    }
    let content = open_payload(&key, &msg.header, &msg.payload)?;
    let id = message_id(
        &content,
        header.routing.time_ms,
        &header.routing.sender,
        &header.routing.receiver,
        &header.routing.nonce,
    );
    if id != header.routing.id {
        return Err(MsgError::Tampered);
    }
    Ok(content)
}
