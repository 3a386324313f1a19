//! The node's counters, exported at `/metrics` (Prometheus text format).

use std::sync::atomic::AtomicU64;

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Client requests answered, by outcome.
    pub requests_ok: AtomicU64,
    /// Client requests refused or failed.
    pub requests_err: AtomicU64,
    /// Signatures produced.
    pub signatures: AtomicU64,
    /// Total signing latency, microseconds.
    pub sign_micros: AtomicU64,
    /// Keys generated.
    pub dkgs: AtomicU64,
    /// Peer messages rejected (signature, membership, replay).
    pub peer_rejects: AtomicU64,
    /// Requests refused before their caller authenticated (counted, not
    /// audited: `cluster::refusals`).
    pub refused_unauthenticated: AtomicU64,
    /// Refusals of authenticated callers past their audited burst.
    pub refusals_unaudited: AtomicU64,
    /// Requests refused because the audit queue was full (the log cannot
    /// commit: no quorum, or a flood): refused before anything was done.
    pub audit_backlog_refusals: AtomicU64,
    /// Audit events of the node's own work (a DKG's outcome, a membership
    /// step) that found the queue full and were lost.
    pub audit_dropped: AtomicU64,
    /// Writes that went through the batcher.
    pub batched_writes: AtomicU64,
    /// Commits (forwards or local Raft writes) that carried them.
    pub write_batches: AtomicU64,
}
