#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! The core crate's integration tests, one binary (each former test file
//! is a module), e.g. `cargo test -p keyquorum-core --test protocols rfc8554::`.

mod encoding;
mod lifecycle;
mod msgkey;
mod oprf_interop;
mod properties;
mod rfc8554;
mod scale;
mod vectors;
