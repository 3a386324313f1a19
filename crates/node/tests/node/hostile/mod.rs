#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! The malicious-member suite (issue #17): one member, the coordinator or
//! the leader runs hostile code (the `fault-injection` hooks, or peer
//! messages and log entries written by hand) and tries to release, commit
//! or destroy what no client asked for. Every attempt is refused by the
//! honest nodes and changes none of their keys, shares or registry.

use crate::common;

mod approvals;
mod control;
mod dkg;
mod drain;
mod membership;
mod release;
mod signing;
mod snapshot;

use std::sync::atomic::Ordering;

use common::{
    cluster, create, n, nonce, ns, package, sign_and_check, sign_share, status_of, vault_count,
};
use keyquorum_client::Client;
use keyquorum_core::codec::Decode;
use keyquorum_core::{Ed25519, GroupKey};
use keyquorum_node::dev::LocalCluster;
use keyquorum_node::Node;
use keyquorum_store::Table;
use keyquorum_wire::api::{KeyInfo, SuiteName};
use keyquorum_wire::peer::{ClientRequest, NonceCommitment, PeerMessage};
use keyquorum_wire::{Hex, Hex32, NodeId};
