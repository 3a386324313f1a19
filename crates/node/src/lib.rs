//! # keyquorum-node
//!
//! A keyquorum node: the I/O around the core's state machines.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | node configuration |
//! | [`identity`] | the node's Ed25519 identity and X25519 HPKE keys, kept in the vault |
//! | [`peer`] | signed envelopes, HPKE sealing, replay window, the peer HTTP client |
//! | [`machine`] | the control-plane state machine: key registry, tokens, hash-chained audit log, exports |
//! | [`msg`] | per-message key derivation: endpoint registry, coordinator step, delivery to mailboxes |
//! | [`raftnet`] | openraft's network over the peer API |
//! | [`driver`] | runs DKG and signing across the members (coordinator and participant sides) |
//! | [`api`] | the axum router: client API, peer endpoint, health, metrics, OpenAPI |
//! | [`node`] | wiring and lifecycle |
//! | [`dev`] | a whole cluster in one process on loopback (`keyquorum dev`, tests) |
//!
//! No protocol math lives here: every cryptographic step is a call into
//! `keyquorum-core`.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod dev;
#[macro_use]
pub mod driver;
pub mod error;
pub mod identity;
mod lifecycle;
pub mod machine;
pub mod msg;
pub mod node;
pub mod peer;
pub mod raftnet;
mod repair;
mod taker;
pub mod tls;

pub use config::NodeConfig;
pub use error::NodeError;
pub use node::{Node, RunningNode};
