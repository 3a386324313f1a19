#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! End to end on in-process clusters over loopback (OS-chosen ports,
//! readiness polled).

use keyquorum_client::Client;
use keyquorum_node::dev::{DevOptions, LocalCluster};
use keyquorum_store::vault::KdfParams;
use keyquorum_store::Passphrase;
use keyquorum_wire::api::{CreateKeyRequest, SuiteName};

async fn cluster(nodes: u16, threshold: u16, pool: usize) -> (tempfile::TempDir, LocalCluster) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let opts = DevOptions {
        nodes,
        threshold,
        data_dir: dir.path().to_path_buf(),
        kdf: KdfParams::insecure_fast(),
        nonce_pool: pool,
    };
    let c = LocalCluster::start(opts, Passphrase::new(b"test".to_vec()))
        .await
        .unwrap();
    (dir, c)
}

fn check_ed25519(pk: &[u8], msg: &[u8], sig: &[u8]) {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(pk.try_into().unwrap()).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(sig).unwrap();
    vk.verify_strict(msg, &sig)
        .expect("ed25519-dalek accepts the threshold signature");
}

fn check_bip340(pk: &[u8], msg: &[u8], sig: &[u8]) {
    let vk = k256::schnorr::VerifyingKey::from_bytes(pk).unwrap();
    let sig = k256::schnorr::Signature::try_from(sig).unwrap();
    vk.verify_raw(msg, &sig)
        .expect("k256 BIP-340 verifier accepts the threshold signature");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_dkg_and_sign_both_suites() {
    let (_dir, c) = cluster(3, 2, 8).await;
    for id in 1..=3u64 {
        let client = Client::new(&c.url_of(id), &c.admin_token).unwrap();
        let suite = if id % 2 == 1 {
            SuiteName::Ed25519
        } else {
            SuiteName::Secp256k1Tr
        };
        let name = format!("k{id}");
        let key = client
            .create_key(&CreateKeyRequest {
                name: name.clone(),
                suite,
                threshold: None,
                members: None,
            })
            .await
            .unwrap();
        assert_eq!(key.threshold, 2);
        assert_eq!(key.members, vec![1, 2, 3]);
        assert_eq!(key.public_key.0.len(), 32);
        for i in 0..5u8 {
            // Sign through every node in turn.
            let via = Client::new(&c.url_of(u64::from(i % 3) + 1), &c.admin_token).unwrap();
            let msg = [b'm', i];
            let sig = via.sign(&name, &msg).await.unwrap();
            assert_eq!(sig.signers.len(), 2);
            match suite {
                SuiteName::Ed25519 => check_ed25519(&key.public_key.0, &msg, &sig.signature.0),
                SuiteName::Secp256k1Tr => check_bip340(&key.public_key.0, &msg, &sig.signature.0),
            }
            assert!(via.verify(&name, &msg, &sig.signature.0).await.unwrap());
            assert!(!via.verify(&name, b"other", &sig.signature.0).await.unwrap());
        }
    }
    let client = Client::new(&c.url(), &c.admin_token).unwrap();
    assert_eq!(client.list_keys().await.unwrap().keys.len(), 3);
    c.shutdown().await;
}
