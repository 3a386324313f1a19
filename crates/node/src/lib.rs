//! # keyquorum-node
//!
//! A keyquorum node: the I/O around the core's state machines, one folder
//! per capability beside the cluster plumbing they share.
//!
//! | module | what |
//! |---|---|
//! | [`cluster`] | the plumbing: this node's handle ([`Node`]), the Raft client and write batching, membership, peer transport and TLS, the replicated state machine's dispatcher, the audit log, metrics |
//! | [`keys`] | shared keys (DESIGN.md §3.1): DKG, signing, refresh, reshare, repair, export — coordinator and participant halves, session tables, state-machine part, routes |
//! | [`he`] | computation on encrypted data (DESIGN.md §3.3): sessions, their keys by DKG, inputs checked on every replica, threshold decryption with a proof per share, transcripts |
//! | [`seedtree`] | the federated hash-based signing tree (DESIGN.md §3.5): key generation in subtrees across the members, leaves locked by a quorum and released sealed to the client |
//! | [`msg`] | per-message key derivation (DESIGN.md §3.2): endpoint registry, coordinator step, delivery to mailboxes, state-machine part, routes |
//! | [`api`] | what every client route shares: typed JSON bodies, the audited request, tokens; the cluster's own routes |
//! | [`server`] | wiring and lifecycle; the dispatchers for peer messages and routes, the OpenAPI document |
//! | [`config`], [`identity`], [`error`], [`names`] | node configuration, its identity and HPKE keys, the error type, the name rule |
//! | [`dev`] | a whole cluster in one process on loopback (`keyquorum dev`, tests) |
//!
//! A new capability is a folder here (its coordinator and participant
//! halves, session table, state-machine part and routes) and one line in
//! each dispatcher: `server::Dispatch` (peer messages),
//! [`cluster::machine::Registry`] (commands), [`server::router`] (routes).
//!
//! No protocol math lives here: every cryptographic step is a call into
//! `keyquorum-core`.
#![forbid(unsafe_code)]

pub mod api;
pub mod cluster;
pub mod config;
pub mod dev;
pub mod error;
pub mod he;
pub mod identity;
pub mod keys;
pub mod msg;
pub mod names;
pub mod recovery;
pub mod seedtree;
pub mod server;

pub use cluster::Node;
pub use config::NodeConfig;
pub use error::NodeError;
pub use keys::Keys;
pub use server::RunningNode;
