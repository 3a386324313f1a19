#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! The node's integration tests, one binary (each former test file is a
//! module; one link instead of fourteen). Run one group with its module
//! path, e.g. `cargo test -p keyquorum-node --test node seedtree::`.

mod common;

mod abuse;
mod bad_input;
mod cluster;
mod faults;
mod he;
mod hostile;
mod lifecycle;
mod limits;
mod msg;
mod nemesis;
mod oprf;
mod recovery;
mod seedtree;
mod upgrade;
