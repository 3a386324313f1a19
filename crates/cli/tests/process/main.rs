#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! The `keyquorum` binary driven as child processes, one test binary (each
//! former test file is a module), e.g.
//! `cargo test -p keyquorum --test process join::`.

mod common;

mod cli;
mod init;
mod join;
mod snapshot;
