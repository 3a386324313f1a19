//! Peer messages: the signed envelope, HPKE sealing of secret payloads, the
//! replay window, and the HTTP client that carries envelopes.
//!
//! Authentication is end to end and independent of the transport: every
//! envelope is signed by its sender's Ed25519 identity key and checked
//! against the membership, so a relaying coordinator can forward another
//! member's message without being able to alter or forge it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use keyquorum_wire::control::NodeInfo;
use keyquorum_wire::peer::{Envelope, PeerMessage, Sealed, PROTOCOL_VERSION};
use keyquorum_wire::{Hex, Hex32, NodeId, RawJson};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::cluster::tls::NodeCert;
use crate::error::NodeError;
use crate::identity::{self, NodeKeys};

const DOMAIN: &[u8] = b"keyquorum-peer-v1\x00";
const HPKE_INFO: &[u8] = b"keyquorum peer secret v1";
/// How far a sender's clock may be from ours.
pub const CLOCK_WINDOW: Duration = Duration::from_secs(60);

/// Milliseconds since the Unix epoch (the system clock; a node's own,
/// skewed in tests, is `Node::now_ms`).
pub fn now_ms() -> u64 {
    super::netfaults::system_ms()
}

/// The bytes an envelope's signature covers.
pub fn signing_bytes(
    version: u16,
    from: NodeId,
    to: NodeId,
    id: &[u8],
    time_ms: u64,
    payload: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 2 + 8 + 8 + 8 + id.len() + 8 + payload.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&version.to_be_bytes());
    m.extend_from_slice(&u64::from(from).to_be_bytes());
    m.extend_from_slice(&u64::from(to).to_be_bytes());
    m.extend_from_slice(&(id.len() as u64).to_be_bytes());
    m.extend_from_slice(id);
    m.extend_from_slice(&time_ms.to_be_bytes());
    m.extend_from_slice(payload);
    m
}

/// Sign `msg` from `from` to `to`, stamped now.
pub fn seal_envelope(
    keys: &NodeKeys,
    from: NodeId,
    to: NodeId,
    msg: &PeerMessage,
) -> Result<Envelope, NodeError> {
    seal_envelope_at(keys, from, to, msg, now_ms())
}

/// [`seal_envelope`], stamped `time_ms` (the sender's clock).
pub(crate) fn seal_envelope_at(
    keys: &NodeKeys,
    from: NodeId,
    to: NodeId,
    msg: &PeerMessage,
    time_ms: u64,
) -> Result<Envelope, NodeError> {
    let payload = RawJson::of(msg).map_err(|e| NodeError::Internal(e.to_string()))?;
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    let sig = keys.sign(&signing_bytes(
        PROTOCOL_VERSION,
        from,
        to,
        &id,
        time_ms,
        payload.as_bytes(),
    ));
    Ok(Envelope {
        version: PROTOCOL_VERSION,
        from,
        to,
        id: Hex(id.to_vec()),
        time_ms,
        payload,
        signature: Hex(sig.to_vec()),
    })
}

/// Check an envelope's version and signature against `sender`'s identity and
/// that it is addressed to `me`; return its message. Replay and clock checks
/// are the [`ReplayGuard`]'s.
pub fn open_envelope(
    env: &Envelope,
    me: NodeId,
    sender: &NodeInfo,
) -> Result<PeerMessage, NodeError> {
    if env.version != PROTOCOL_VERSION {
        return Err(NodeError::PeerRejected(format!(
            "unsupported protocol version {}",
            env.version
        )));
    }
    if env.to != me {
        return Err(NodeError::PeerRejected(format!(
            "addressed to node {}, not {me}",
            env.to
        )));
    }
    if env.id.0.len() != 16 {
        return Err(NodeError::PeerRejected(
            "message id must be 16 bytes".into(),
        ));
    }
    let bytes = signing_bytes(
        env.version,
        env.from,
        env.to,
        &env.id.0,
        env.time_ms,
        env.payload.as_bytes(),
    );
    if !identity::verify(&sender.identity, &bytes, &env.signature.0) {
        return Err(NodeError::PeerRejected(format!(
            "bad signature from node {}",
            env.from
        )));
    }
    serde_json::from_str(env.payload.as_str()).map_err(|e| {
        NodeError::PeerRejected(format!("malformed payload from node {}: {e}", env.from))
    })
}

/// Rejects envelopes seen before (by sender and id) and envelopes whose
/// timestamp is outside [`CLOCK_WINDOW`]. Ids are remembered until their
/// time is twice the window old, so a replay is either remembered or too
/// old; they are forgotten in arrival order (amortised constant time per
/// message, never a scan of the whole set).
///
/// In memory: a restarted node forgets them. Only the sender itself could
/// replay one then (the TLS client certificate must be the sender's), and
/// only within the window.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    ids: std::collections::HashSet<(NodeId, [u8; 16])>,
    /// (forget after, id), in arrival order.
    order: std::collections::VecDeque<(u64, (NodeId, [u8; 16]))>,
}

impl ReplayGuard {
    /// Accept `env` once, `now` by the receiver's clock.
    pub fn check(&self, env: &Envelope, now: u64) -> Result<(), NodeError> {
        let window = CLOCK_WINDOW.as_millis() as u64;
        if env.time_ms.saturating_add(window) < now || env.time_ms > now.saturating_add(window) {
            return Err(NodeError::PeerRejected(format!(
                "timestamp outside the {}s window",
                CLOCK_WINDOW.as_secs()
            )));
        }
        let id: [u8; 16] = env
            .id
            .0
            .as_slice()
            .try_into()
            .map_err(|_| NodeError::PeerRejected("message id must be 16 bytes".into()))?;
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| NodeError::Internal("replay lock".into()))?;
        let Seen { ids, order } = &mut *seen;
        // Forget what is past its time, oldest arrivals first (one that
        // arrived early and expires late only holds the later ones a while).
        while order.front().is_some_and(|(until, _)| *until < now) {
            if let Some((_, key)) = order.pop_front() {
                ids.remove(&key);
            }
        }
        let key = (env.from, id);
        if !ids.insert(key) {
            return Err(NodeError::PeerRejected(format!(
                "replayed message from node {}",
                env.from
            )));
        }
        order.push_back((env.time_ms.saturating_add(2 * window), key));
        Ok(())
    }
}

fn hpke_aad(session: &Hex32, from: NodeId, to: NodeId) -> Vec<u8> {
    let mut a = Vec::with_capacity(48);
    a.extend_from_slice(&session.0);
    a.extend_from_slice(&u64::from(from).to_be_bytes());
    a.extend_from_slice(&u64::from(to).to_be_bytes());
    a
}

/// Seal a secret for `to` (its HPKE key), bound to the session and both ends.
pub fn seal_secret(
    session: &Hex32,
    from: NodeId,
    to: NodeId,
    recipient: &NodeInfo,
    secret: &[u8],
) -> Result<Sealed, NodeError> {
    let pk = identity::hpke_public(&recipient.hpke)?;
    let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &pk,
        HPKE_INFO,
        secret,
        &hpke_aad(session, from, to),
        &mut rand_core_09::UnwrapErr(rand_core_09::OsRng),
    )
    .map_err(|e| NodeError::BadRequest(format!("cannot seal to that public key: {e}")))?;
    Ok(Sealed {
        to,
        enc: Hex(enc.to_bytes().to_vec()),
        ciphertext: Hex(ct),
    })
}

/// Open a secret sealed to this node by `from`.
pub fn open_secret(
    keys: &NodeKeys,
    session: &Hex32,
    from: NodeId,
    me: NodeId,
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, NodeError> {
    let enc = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(&sealed.enc.0).map_err(|_| {
        NodeError::Misbehaved {
            message: format!("node {from} sent a malformed sealed share"),
            culprits: vec![from],
        }
    })?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        keys.hpke_secret(),
        &enc,
        HPKE_INFO,
        &sealed.ciphertext.0,
        &hpke_aad(session, from, me),
    )
    .map(Zeroizing::new)
    .map_err(|_| NodeError::Misbehaved {
        message: format!("sealed share from node {from} does not open"),
        culprits: vec![from],
    })
}

/// The longest a snapshot chunk's call may take (at least the per-call
/// timeout); openraft's `install_snapshot_timeout` is set to it.
pub(crate) const SNAPSHOT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Carries envelopes to peers over mutual TLS and checks their signed
/// replies. One HTTP client (and connection pool) per peer identity, each
/// pinned to that identity ([`crate::cluster::tls::PinnedIdentity`]).
#[derive(Clone, Debug)]
pub struct PeerClient {
    http: Arc<Mutex<HashMap<[u8; 32], reqwest::Client>>>,
    cert: Arc<NodeCert>,
    me: NodeId,
    keys: Arc<NodeKeys>,
    timeout: Duration,
    net: Arc<super::netfaults::NetFaults>,
}

/// The peer endpoint's path.
pub const PEER_PATH: &str = "/peer/v1/message";

/// Largest peer message (DKG relays for large n, snapshots), and largest
/// answer read.
pub const PEER_BODY_LIMIT: usize = 64 * 1024 * 1024;

impl PeerClient {
    /// A client signing as `me`.
    pub fn new(
        me: NodeId,
        keys: Arc<NodeKeys>,
        cert: Arc<NodeCert>,
        timeout: Duration,
    ) -> Result<Self, NodeError> {
        Ok(Self {
            http: Arc::default(),
            cert,
            me,
            keys,
            timeout,
            net: Arc::default(),
        })
    }

    /// The HTTP client for the peer whose identity is `identity`.
    fn http_for(&self, identity: &Hex32) -> Result<reqwest::Client, NodeError> {
        let mut clients = self
            .http
            .lock()
            .map_err(|_| NodeError::Internal("peer client lock".into()))?;
        if let Some(c) = clients.get(&identity.0) {
            return Ok(c.clone());
        }
        let tls = crate::cluster::tls::peer_client_config(&self.cert, identity.0)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(self.timeout)
            // Peers close a connection idle past their head timeout (30 s
            // by default): drop it before then.
            .pool_idle_timeout(Duration::from_secs(20))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| NodeError::Internal(e.to_string()))?;
        clients.insert(identity.0, client.clone());
        Ok(client)
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The keys it signs with.
    pub fn keys(&self) -> &NodeKeys {
        &self.keys
    }

    /// This node's network faults (tests only: `netfaults`).
    pub(crate) fn net(&self) -> &super::netfaults::NetFaults {
        &self.net
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Send `msg` to `to` at `info` and return the verified reply envelope
    /// and its message. An `Error` reply becomes an `Err`.
    pub async fn call(
        &self,
        to: NodeId,
        info: &NodeInfo,
        msg: &PeerMessage,
    ) -> Result<(Envelope, PeerMessage), NodeError> {
        self.net.wait_unpaused().await;
        if !self.net.reaches(to) {
            // A dropped message: the caller learns nothing until its
            // timeout (a test's partition, `netfaults`).
            tokio::time::sleep(self.timeout).await;
            return Err(NodeError::Unavailable(format!(
                "node {to} unreachable: timed out"
            )));
        }
        let env = seal_envelope_at(&self.keys, self.me, to, msg, self.net.now_ms())?;
        let url = format!("{}{}", info.addr.trim_end_matches('/'), PEER_PATH);
        let mut request = self.http_for(&info.identity)?.post(&url).json(&env);
        match msg {
            // A snapshot's last chunk waits for the receiver to ask the
            // members to vouch for it and to install it.
            PeerMessage::InstallSnapshot(_) => {
                request = request.timeout(self.timeout.max(SNAPSHOT_CALL_TIMEOUT));
            }
            // The leader waits up to one timeout for the commit
            // (`Node::write_deadline`) and then answers that it timed out:
            // its answer must get back before this call gives up, or the
            // forwarder would take a lost answer for a lost message.
            PeerMessage::Forward { .. } => request = request.timeout(self.timeout * 2),
            _ => {}
        }
        let resp = request
            .send()
            .await
            .map_err(|e| NodeError::Unavailable(format!("node {to} unreachable: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(NodeError::Unavailable(format!(
                "node {to} refused the message ({status}): {body}"
            )));
        }
        // Read no more than a request may carry: a member cannot make
        // another hold an unbounded answer.
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| NodeError::Unavailable(format!("node {to} reply: {e}")))?
        {
            if body.len() + chunk.len() > PEER_BODY_LIMIT {
                return Err(NodeError::Misbehaved {
                    message: format!("node {to} answered more than {} bytes", PEER_BODY_LIMIT),
                    culprits: vec![to],
                });
            }
            body.extend_from_slice(&chunk);
        }
        let reply: Envelope = serde_json::from_slice(&body).map_err(|e| {
            NodeError::Unavailable(format!("node {to} sent a malformed reply: {e}"))
        })?;
        if reply.from != to {
            return Err(NodeError::Misbehaved {
                message: format!("reply claims to be from node {}", reply.from),
                culprits: vec![to],
            });
        }
        let msg = open_envelope(&reply, self.me, info)?;
        answer_of(to, msg).map(|m| (reply, m))
    }
}

/// `to`'s answer `msg`, an `Error` answer as the error it names.
pub(crate) fn answer_of(to: NodeId, msg: PeerMessage) -> Result<PeerMessage, NodeError> {
    match msg {
        PeerMessage::Error {
            code,
            message,
            culprits,
        } => Err(NodeError::from_peer(
            &code,
            format!("node {to}: {message}"),
            culprits,
        )),
        m => Ok(m),
    }
}

/// Seal `secret` to an arbitrary X25519 public key (RFC 9180 base mode,
/// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305): the export
/// result to its requester. Returns `(enc, ciphertext)`.
pub fn seal_to(
    recipient: &Hex32,
    info: &[u8],
    aad: &[u8],
    secret: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), NodeError> {
    let pk = <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(&recipient.0)
        .map_err(|_| NodeError::BadRequest("recipient is not an X25519 public key".into()))?;
    let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &pk,
        info,
        secret,
        aad,
        &mut rand_core_09::UnwrapErr(rand_core_09::OsRng),
    )
    .map_err(|e| NodeError::BadRequest(format!("cannot seal to that public key: {e}")))?;
    Ok((enc.to_bytes().to_vec(), ct))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn envelope(from: u16, id: u8, time_ms: u64) -> Envelope {
        Envelope {
            version: PROTOCOL_VERSION,
            from: NodeId::new(from).unwrap(),
            to: NodeId::new(9).unwrap(),
            id: Hex(vec![id; 16]),
            time_ms,
            payload: RawJson::of(&PeerMessage::Ping).unwrap(),
            signature: Hex(vec![0; 64]),
        }
    }

    #[test]
    fn an_envelope_is_taken_once_within_the_window_and_forgotten_after() {
        let g = ReplayGuard::default();
        let w = CLOCK_WINDOW.as_millis() as u64;
        let t0 = 10 * w;
        assert!(g.check(&envelope(1, 1, t0), t0).is_ok());
        let again = g.check(&envelope(1, 1, t0), t0 + w).unwrap_err();
        assert!(again.to_string().contains("replayed"), "{again}");
        // Another sender's same id is another message.
        assert!(g.check(&envelope(2, 1, t0), t0).is_ok());
        // Outside the window either way.
        assert!(g.check(&envelope(1, 2, t0), t0 + w + 1).is_err());
        assert!(g.check(&envelope(1, 3, t0 + w + 1), t0).is_err());
        // Past twice the window the id is forgotten, and the old envelope
        // is refused by its time instead.
        assert!(g
            .check(&envelope(1, 4, t0 + 2 * w + 1), t0 + 2 * w + 1)
            .is_ok());
        let seen = g.seen.lock().unwrap();
        assert_eq!(seen.ids.len(), 1, "the two at t0 were forgotten");
        assert_eq!(seen.order.len(), 1);
    }
}
