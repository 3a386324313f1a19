#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! openraft's storage suite against the redb backend, with a small
//! key-value machine as the application.

use std::collections::BTreeMap;
use std::io::Cursor;

use keyquorum_store::raft::{conformance, Machine};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Put(String, String);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Kv(BTreeMap<String, String>);

impl Machine for Kv {
    type Command = Put;
    type Response = Option<String>;
    fn apply(&mut self, _index: u64, c: &Put) -> Option<String> {
        self.0.insert(c.0.clone(), c.1.clone())
    }
}

openraft::declare_raft_types!(
    TestConfig: D = Put, R = Option<String>
);

#[test]
fn redb_backend_passes_openraft_storage_suite() {
    conformance::run::<TestConfig, Kv>().unwrap();
}
