//! TLS for every connection to a node (RFC 8446, TLS 1.3 only, rustls with
//! the ring provider).
//!
//! **Certificates are bound to node identities.** Each node's certificate is
//! self-signed by its Ed25519 identity key and carries that key as its
//! subject public key (RFC 8410 §4), so the certificate *is* the identity:
//! - a node dialing a peer pins the identity the membership records for it
//!   ([`PinnedIdentity`]): any other key fails the handshake, names and CAs
//!   play no part;
//! - a node dialing a peer presents its own certificate (mutual TLS); the
//!   server records the key the client proved ([`TlsPeer`]) and the peer
//!   endpoint requires it to be the envelope sender's identity;
//! - clients (CLI, curl, the Rust client) trust the node certificates as
//!   roots: `keyquorum dev` writes them to `<data-dir>/ca.pem`.
//!
//! Using the identity key for TLS as well as for envelopes and audit heads is
//! domain-separated: TLS 1.3 `CertificateVerify` signs 64 spaces and a context
//! string (RFC 8446 §4.4.3), a certificate signs a DER `TBSCertificate`
//! (first byte 0x30), envelopes sign bytes starting `keyquorum-peer-v1\0`.
//! TLS 1.2, whose server signature covers client-chosen bytes first, is not
//! offered.
//!
//! The certificate is deterministic (fixed validity, serial from the key's
//! hash, Ed25519 signatures are deterministic), so it is the same after every
//! restart and never needs storing.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use keyquorum_wire::NodeId;

use crate::error::NodeError;
use crate::identity::NodeKeys;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4): SEQUENCE {
/// SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) } followed by
/// the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The Ed25519 identity a TLS client proved on this connection, if it
/// presented a certificate (peers do; API clients do not). Inserted into
/// every request's extensions by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsPeer(pub Option<[u8; 32]>);

/// A node's certificate and the private key behind it.
pub struct NodeCert {
    cert: CertificateDer<'static>,
    pem: String,
    key: PrivatePkcs8KeyDer<'static>,
}

impl core::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NodeCert")
            .field("cert", &self.cert.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl NodeCert {
    /// The certificate for `keys`, valid for `names` (DNS names or IP
    /// addresses clients dial; peers ignore them and pin the key).
    pub fn new(keys: &NodeKeys, id: NodeId, names: &[String]) -> Result<Self, NodeError> {
        let err = |e: rcgen::Error| NodeError::Internal(format!("certificate: {e}"));
        let pkcs8 = keys.identity_pkcs8()?;
        let key = PrivatePkcs8KeyDer::from(pkcs8.to_vec());
        let pair = rcgen::KeyPair::try_from(&key).map_err(err)?;
        let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(err)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("keyquorum node {id} {}", hex::encode(keys.identity().0)),
        );
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.self_signed(&pair).map_err(err)?;
        Ok(Self {
            cert: cert.der().clone(),
            pem: cert.pem(),
            key,
        })
    }

    /// The certificate, DER.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The certificate, PEM.
    pub fn pem(&self) -> String {
        self.pem.clone()
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// The names in the node's certificate: the advertised host and any
/// configured extra names, without duplicates.
pub fn certificate_names(advertise: &str, extra: &[String]) -> Vec<String> {
    let rest = advertise
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(advertise);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        // [IPv6]:port
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority),
    };
    let mut names = vec![host.to_string()];
    for n in extra {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

/// The Ed25519 identity a certificate carries, if it is an Ed25519
/// certificate that parses.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    let spki = ee.subject_public_key_info();
    let key = spki.as_ref().strip_prefix(ED25519_SPKI_PREFIX.as_slice())?;
    key.try_into().ok()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

fn tls_err(e: rustls::Error) -> NodeError {
    NodeError::Internal(format!("tls: {e}"))
}

/// The server side: TLS 1.3, this node's certificate, client certificates
/// optional (peers present theirs, API clients do not).
pub fn server_config(cert: &NodeCert) -> Result<Arc<rustls::ServerConfig>, NodeError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(Arc::new(AnyIdentity { algs: algorithms() }))
        .with_single_cert(vec![cert.der().clone()], cert.key())
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side for calls to the peer whose identity is `pinned`,
/// presenting this node's certificate.
pub fn peer_client_config(
    cert: &NodeCert,
    pinned: [u8; 32],
) -> Result<rustls::ClientConfig, NodeError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedIdentity {
            identity: pinned,
            algs: algorithms(),
        }))
        .with_client_auth_cert(vec![cert.der().clone()], cert.key())
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The client side for a client (no certificate of its own) that must
/// reach exactly the node whose identity is `pinned` (`keyquorum cluster
/// join-code` asking each voter).
pub fn pinned_client_config(pinned: [u8; 32]) -> Result<rustls::ClientConfig, NodeError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedIdentity {
            identity: pinned,
            algs: algorithms(),
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The Ed25519 identities of the node certificates in a PEM bundle (a
/// client's `ca.pem`); anything else in it is skipped.
pub fn identities_in_pem(pem: &[u8]) -> Vec<[u8; 32]> {
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .filter_map(|c| identity_of(&c))
        .collect()
}

/// Accepts exactly one server: the one whose certificate carries the
/// pinned Ed25519 identity and who proves it in the handshake. Names,
/// issuers and validity dates are not consulted — the membership in the
/// Raft log is the trust root.
#[derive(Debug)]
pub struct PinnedIdentity {
    identity: [u8; 32],
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedIdentity {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match identity_of(end_entity) {
            Some(k) if bool::from(subtle::ConstantTimeEq::ct_eq(&k[..], &self.identity[..])) => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::General(
                "peer certificate is not the pinned node identity".into(),
            )),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Server-side client authentication: any Ed25519 certificate whose key
/// the client proves possession of in the handshake. Which identities may
/// do what is decided per request (the peer endpoint requires the proven
/// key to be the envelope sender's); a joining node must be reachable by
/// the leader before it knows the membership, so nothing is refused here.
#[derive(Debug)]
struct AnyIdentity {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyIdentity {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        identity_of(end_entity)
            .map(|_| ClientCertVerified::assertion())
            .ok_or(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// What one client may hold of the listener.
#[derive(Clone)]
pub(crate) struct Limits {
    /// From a connection's opening (TLS handshake included) until a whole
    /// request head has come; then from each answer to the next head.
    pub(crate) header_read_timeout: Duration,
    /// Connections of clients (and of strangers) served at once.
    pub(crate) max_connections: usize,
    /// Of those, at most this many from one source ([`Source`]).
    pub(crate) max_per_source: usize,
    /// Whether a client certificate's identity is a known node's: those
    /// connections have their own slots ([`PEER_CONNECTIONS`]), so clients
    /// filling theirs never keep Raft and the protocols from the node.
    pub(crate) is_peer: IsPeer,
}

/// Whether an identity key is a known node's.
pub(crate) type IsPeer = Arc<dyn Fn(&[u8; 32]) -> bool + Send + Sync>;

/// Connections of known nodes served at once.
pub(crate) const PEER_CONNECTIONS: usize = 1024;

/// Where a connection comes from, as far as one party controls it: an IPv4
/// address, or an IPv6 /64 (a host is usually given a whole /64, so a cap
/// per IPv6 address would be no cap). IPv4-mapped IPv6 addresses count as
/// IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl Source {
    pub(crate) fn of(ip: std::net::IpAddr) -> Self {
        match ip.to_canonical() {
            std::net::IpAddr::V4(a) => Source::V4(a.octets()),
            std::net::IpAddr::V6(a) => {
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&a.octets()[..8]);
                Source::V6(prefix)
            }
        }
    }
}

/// Clients' connections held per source.
#[derive(Default)]
struct Sources(std::sync::Mutex<std::collections::HashMap<Source, usize>>);

/// One connection's place in its source's count, given back when dropped.
struct SourceSlot {
    sources: Arc<Sources>,
    source: Source,
}

impl Sources {
    /// A slot for one more connection from `source`, if it holds fewer than
    /// `max`.
    fn take(self: &Arc<Self>, source: Source, max: usize) -> Option<SourceSlot> {
        let mut held = self.0.lock().ok()?;
        let n = held.entry(source).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            sources: self.clone(),
            source,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        if let Ok(mut held) = self.sources.0.lock() {
            if let Some(n) = held.get_mut(&self.source) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    held.remove(&self.source);
                }
            }
        }
    }
}

/// Serve `app` over TLS on `listener` until `shutdown` fires, then let open
/// requests finish (for 5 s; then their tasks are dropped, so no connection
/// outlives the server). Every connection is accepted; one that finds
/// no free slot (clients', or its source's share of them, or, for a known
/// node's certificate, peers') is closed at once, so a full listener never
/// leaves peers in the listen queue.
pub(crate) async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: axum::Router,
    limits: Limits,
    shutdown: oneshot::Receiver<()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let clients = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let peers = Arc::new(tokio::sync::Semaphore::new(PEER_CONNECTIONS));
    let sources = Arc::new(Sources::default());
    let mut shutdown = std::pin::pin!(shutdown);
    // Every connection's task, so that none outlives the server (each holds
    // the app, and through it the node's files).
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off briefly,
                    // as hyper's own accept loop does.
                    tracing::debug!(error = %e, "accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        // A client slot if one is free (taken before the handshake);
        // otherwise the handshake decides whether it is a peer's.
        let client_slot = clients.clone().try_acquire_owned().ok().and_then(|slot| {
            sources
                .take(Source::of(remote.ip()), limits.max_per_source)
                .map(|source| (slot, source))
        });
        let peers = peers.clone();
        let acceptor = acceptor.clone();
        let app = app.clone();
        let limits = limits.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let opened = tokio::time::Instant::now();
            let handshake = HANDSHAKE_TIMEOUT.min(limits.header_read_timeout);
            let tls = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            let peer = TlsPeer(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(identity_of),
            );
            let known_peer = peer.0.as_ref().is_some_and(|k| (limits.is_peer)(k));
            let _slot = if known_peer {
                // A peer's connection uses a peer slot (a client slot it
                // took, and its source's count, are given back).
                drop(client_slot);
                match peers.try_acquire_owned() {
                    Ok(s) => (s, None),
                    Err(_) => {
                        tracing::debug!("peer connections at the cap: closed");
                        return;
                    }
                }
            } else {
                match client_slot {
                    Some((s, source)) => (s, Some(source)),
                    None => {
                        tracing::debug!("connections at the cap (all, or its source's): closed");
                        return;
                    }
                }
            };
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer);
                    req.extensions_mut().insert(Source::of(remote.ip()));
                    tower_service::Service::call(&mut app.clone(), req)
                },
            );
            // The first head's time counts from the opening, the
            // handshake's share included (hyper's timer then runs again
            // while it waits for each later head, idle or not).
            let first = limits
                .header_read_timeout
                .saturating_sub(opened.elapsed())
                .max(Duration::from_millis(1));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(first)
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open after 5 s; closing");
    }
    // What is left (a handshake under way, a request still inside a call to
    // a node that is gone) is dropped.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_an_ipv4_address_or_an_ipv6_slash_64() {
        use std::net::IpAddr;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(Source::of(ip("10.0.0.1")), Source::V4([10, 0, 0, 1]));
        assert_ne!(Source::of(ip("10.0.0.1")), Source::of(ip("10.0.0.2")));
        assert_eq!(
            Source::of(ip("::ffff:10.0.0.1")),
            Source::of(ip("10.0.0.1"))
        );
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        // Slots are counted and given back.
        let sources = Arc::new(Sources::default());
        let s = Source::of(ip("10.0.0.1"));
        let a = sources.take(s, 2).unwrap();
        let b = sources.take(s, 2).unwrap();
        assert!(sources.take(s, 2).is_none());
        assert!(sources.take(Source::of(ip("10.0.0.2")), 2).is_some());
        drop(a);
        let _c = sources.take(s, 2).unwrap();
        drop(b);
        assert_eq!(sources.0.lock().unwrap().get(&s), Some(&1));
    }

    #[test]
    fn certificate_carries_the_identity_and_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let vault = keyquorum_store::Vault::open(
            &dir.path().join("v.redb"),
            &keyquorum_store::Passphrase::new(b"pw".to_vec()),
            keyquorum_store::vault::KdfParams::insecure_fast(),
        )
        .unwrap();
        let keys = NodeKeys::load_or_create(&vault).unwrap();
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let a = NodeCert::new(&keys, NodeId::new(1).unwrap(), &names).unwrap();
        let b = NodeCert::new(&keys, NodeId::new(1).unwrap(), &names).unwrap();
        assert_eq!(identity_of(a.der()), Some(keys.identity().0));
        assert_eq!(a.der(), b.der(), "deterministic across restarts");
        assert!(a.pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(format!("{a:?}").contains("redacted"));
        // Not an Ed25519 certificate / not a certificate at all.
        assert_eq!(identity_of(&CertificateDer::from(vec![0x30, 0x00])), None);
        let other = rcgen::generate_simple_self_signed(vec!["x".to_string()]).unwrap();
        assert_eq!(
            identity_of(other.cert.der()),
            None,
            "P-256 key is not an identity"
        );
    }
}
