#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! The listener's limits (issue #18 item 4), on one node over real TLS
//! connections written by hand: a connection that does not send a whole
//! request head in time is closed, whether it never sends one or sits idle
//! after an answer; the peer endpoint answers a caller without a known
//! node's certificate at once, without reading its body; past the
//! connection cap, a client's new connection is closed at once while a
//! known node's is still served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keyquorum_node::cluster::tls::{peer_client_config, NodeCert};
use keyquorum_node::config::{KdfConfig, NodeConfig, PeerEntry};
use keyquorum_node::identity::NodeKeys;
use keyquorum_node::server::RunningNode;
use keyquorum_node::Node;
use keyquorum_store::Passphrase;
use keyquorum_wire::NodeId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A deadline for each wait in these tests (a hang is a failure, not a
/// slow pass); the node's own limits are far below it.
const WAIT: Duration = Duration::from_secs(20);

/// A node identity other than the node's, and its certificate.
fn other_node(dir: &tempfile::TempDir) -> (NodeKeys, NodeCert) {
    let vault = keyquorum_store::Vault::open(
        &dir.path().join("other.redb"),
        &Passphrase::new(b"other".to_vec()),
        keyquorum_store::vault::KdfParams::insecure_fast(),
    )
    .unwrap();
    let keys = NodeKeys::load_or_create(&vault).unwrap();
    let cert = NodeCert::new(&keys, NodeId::new(2).unwrap(), &[]).unwrap();
    (keys, cert)
}

async fn start(
    dir: &tempfile::TempDir,
    header_read_timeout_ms: u64,
    max_connections: usize,
    peer: Option<&NodeKeys>,
) -> (RunningNode, Arc<rustls::ClientConfig>) {
    start_with(
        dir,
        header_read_timeout_ms,
        max_connections,
        max_connections,
        peer,
    )
    .await
}

/// As [`start`], with at most `max_per_source` clients' connections from
/// one source.
async fn start_with(
    dir: &tempfile::TempDir,
    header_read_timeout_ms: u64,
    max_connections: usize,
    max_per_source: usize,
    peer: Option<&NodeKeys>,
) -> (RunningNode, Arc<rustls::ClientConfig>) {
    let mut c = NodeConfig::new(
        NodeId::new(1).unwrap(),
        dir.path().join("n1"),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    c.kdf = Some(KdfConfig {
        m_kib: 1024,
        t: 1,
        p: 1,
    });
    c.header_read_timeout_ms = header_read_timeout_ms;
    c.max_connections = max_connections;
    c.max_connections_per_source = max_per_source;
    if let Some(k) = peer {
        c.peers = vec![PeerEntry {
            id: NodeId::new(2).unwrap(),
            info: k.info("https://127.0.0.1:1".into()),
        }];
    }
    let node = Node::start(c, &Passphrase::new(b"limits".to_vec()), None)
        .await
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(node.node.certificate_pem().as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    (node, Arc::new(config))
}

async fn connect(node: &RunningNode, tls: &Arc<rustls::ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(node.addr).await.unwrap();
    tokio_rustls::TlsConnector::from(tls.clone())
        .connect(ServerName::IpAddress(node.addr.ip().into()), tcp)
        .await
        .unwrap()
}

/// Read until the node closes the connection (or fails it); what came.
async fn until_closed(s: &mut TlsStream<TcpStream>) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the node closes the connection");
    got
}

/// Read one answer's head (up to the blank line).
async fn head(s: &mut TlsStream<TcpStream>) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).await.unwrap(), 1, "closed mid-answer");
            got.push(byte[0]);
        }
    })
    .await
    .expect("an answer");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_whole_head_in_time_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (node, tls) = start(&dir, 2_000, 64, None).await;
    // Half a head, then nothing: closed with no answer.
    let mut half = connect(&node, &tls).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    half.flush().await.unwrap();
    assert!(until_closed(&mut half).await.is_empty());
    // A whole request is answered; the connection, then idle, is closed.
    let mut idle = connect(&node, &tls).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    idle.flush().await.unwrap();
    let answer = head(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    let _rest = until_closed(&mut idle).await;
    // A connection that never even finishes its handshake is closed too.
    let mut raw = TcpStream::connect(node.addr).await.unwrap();
    let n = tokio::time::timeout(WAIT, raw.read(&mut [0u8; 64]))
        .await
        .expect("the node closes a silent connection");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    node.stop().await;
}

/// A caller with no client certificate posts a peer message with a large
/// declared body and sends almost none of it: the refusal comes at once
/// (were the node reading the body first, it would wait for bytes that
/// never come, and the connection would be closed with no answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_endpoint_refuses_a_stranger_before_reading_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let (node, tls) = start(&dir, 10_000, 64, None).await;
    let mut s = connect(&node, &tls).await;
    s.write_all(
        b"POST /peer/v1/message HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
          content-length: 60000000\r\n\r\n{\"from\":",
    )
    .await
    .unwrap();
    s.flush().await.unwrap();
    let answer = head(&mut s).await;
    assert!(
        answer.starts_with("HTTP/1.1 401") || answer.starts_with("HTTP/1.1 403"),
        "{answer}"
    );
    node.stop().await;
}

/// A new client connection asks for `/healthz`: whether the node answers
/// it (false: it closed the connection without an answer, during the
/// handshake or after it).
async fn answered(node: &RunningNode, tls: &Arc<rustls::ClientConfig>) -> bool {
    let tcp = TcpStream::connect(node.addr).await.unwrap();
    let Ok(mut s) = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(ServerName::IpAddress(node.addr.ip().into()), tcp)
        .await
    else {
        return false;
    };
    let _ = s
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let _ = s.flush().await;
    let mut buf = [0u8; 9];
    match tokio::time::timeout(WAIT, s.read_exact(&mut buf)).await {
        Ok(Ok(_)) => {
            assert_eq!(&buf, b"HTTP/1.1 ");
            true
        }
        Ok(Err(_)) => false,
        Err(_) => panic!("the node neither answered nor closed the connection"),
    }
}

/// With room for 64 clients' connections but two per source, both held
/// from loopback: a third from the same source is closed at once, a known
/// node's connection from it is still served, and once one of the two
/// closes, a new one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_holds_at_most_its_share_of_the_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (other, other_cert) = other_node(&dir);
    let (node, tls) = start_with(&dir, 60_000, 64, 2, Some(&other)).await;
    let first = connect(&node, &tls).await;
    let mut second = connect(&node, &tls).await;
    let served = |mut s: TlsStream<TcpStream>| async move {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        s.flush().await.unwrap();
        let answer = head(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
        s
    };
    second = served(second).await;
    assert!(
        !answered(&node, &tls).await,
        "served past the source's share"
    );
    let pinned = node.node.info().identity.0;
    let peer_tls = Arc::new(peer_client_config(&other_cert, pinned).unwrap());
    let _peer = served(connect(&node, &peer_tls).await).await;
    // Still two held: still refused. One closes: a new one is served.
    assert!(
        !answered(&node, &tls).await,
        "served past the source's share"
    );
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    // (The node sees the close a moment after the drop: polled.)
    while !answered(&node, &tls).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new connection was served after one of the two closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(second);
    node.stop().await;
}

/// With a cap of two client connections, both held: a third client's
/// connection is closed at once (not queued, so a full listener keeps no
/// one waiting), and a known node's connection is still served (peers
/// have their own slots: clients filling theirs never cut Raft off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_clients_are_closed_and_peers_served() {
    let dir = tempfile::tempdir().unwrap();
    let (other, other_cert) = other_node(&dir);
    let (node, tls) = start(&dir, 60_000, 2, Some(&other)).await;
    let _first = connect(&node, &tls).await;
    let _second = connect(&node, &tls).await;
    // The third: the handshake may finish (it decides whose connection it
    // is), then the node closes it without an answer (closed during the
    // handshake is as good).
    assert!(!answered(&node, &tls).await, "served past the cap");
    // A known node's connection, over mutual TLS with its certificate.
    let pinned = node.node.info().identity.0;
    let peer_tls = Arc::new(peer_client_config(&other_cert, pinned).unwrap());
    let mut p = connect(&node, &peer_tls).await;
    p.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    p.flush().await.unwrap();
    let answer = head(&mut p).await;
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    node.stop().await;
}
