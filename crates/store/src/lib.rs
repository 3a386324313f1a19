//! # keyquorum-store
//!
//! Storage for a keyquorum node, two separate redb files (the Raft part
//! behind the default feature `raft`; a client's sealed endpoint file needs
//! only the vault):
//!
//! | module | file | holds |
//! |---|---|---|
//! | [`vault`] | `vault.redb` | this node's secrets (identity keys, key shares, signing nonces), each value sealed with XChaCha20-Poly1305 under a key derived by Argon2id from the operator's passphrase |
//! | [`raft`] | `raft.redb` | the openraft log, vote, committed index and state-machine snapshots — public data only |
//!
//! The Raft storage is generic over a [`raft::Machine`] (the application
//! state the log drives) so this crate knows no protocol. [`raft::conformance`]
//! runs openraft's own storage test suite against it; any other backend must
//! pass the same suite.
#![forbid(unsafe_code)]

mod closed;
#[cfg(feature = "raft")]
pub mod raft;
pub mod vault;

pub use closed::FileHandle;
pub use vault::{Passphrase, Table, Vault, VaultError};
