//! Shared helpers for the cluster integration tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    dead_code,
    reason = "integration test helpers: a failed unwrap is a failed test"
)]

use keyquorum_node::dev::{DevOptions, LocalCluster};
use keyquorum_store::vault::KdfParams;
use keyquorum_store::Passphrase;

pub async fn cluster(nodes: u16, threshold: u16, pool: usize) -> (tempfile::TempDir, LocalCluster) {
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

pub fn check_ed25519(pk: &[u8], msg: &[u8], sig: &[u8]) {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(pk.try_into().unwrap()).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(sig).unwrap();
    vk.verify_strict(msg, &sig)
        .expect("ed25519-dalek accepts the threshold signature");
}

pub fn check_bip340(pk: &[u8], msg: &[u8], sig: &[u8]) {
    let vk = k256::schnorr::VerifyingKey::from_bytes(pk).unwrap();
    let sig = k256::schnorr::Signature::try_from(sig).unwrap();
    vk.verify_raw(msg, &sig)
        .expect("k256 BIP-340 verifier accepts the threshold signature");
}
