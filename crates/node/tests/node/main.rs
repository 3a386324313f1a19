#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! The node's integration tests on in-process clusters, one binary (each
//! module was a test file; one link instead of ten). Run one group with its
//! module path, e.g. `cargo test -p keyquorum-node --test node hostile::`.
//!
//! The suites that load the machine (`nemesis`, `abuse`, `seedtree`) and
//! the rolling upgrade stay in binaries of their own, so that they run
//! alone, as before: in one pool beside them, cluster tests here waited
//! more than the 5 s peer timeout for an audit commit.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod cluster;
mod faults;
mod he;
mod hostile;
mod lifecycle;
mod limits;
mod msg;
mod oprf;
mod pin_again;
mod recovery;
