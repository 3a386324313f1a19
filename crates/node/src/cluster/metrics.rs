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
    /// Batches of peer messages this node sent (`cluster::coalesce`).
    pub peer_batches: AtomicU64,
    /// Peer messages that travelled in them.
    pub peer_batched_messages: AtomicU64,
    /// Client requests refused or failed, by error kind (the error body's
    /// `error`).
    pub errors: Labelled,
    /// Protocol failures the node found, by action: members blamed for a
    /// bad DKG, reshare, decryption, evaluation or tree message, DKG
    /// accusations ([`crate::cluster::Node::audit_failure`]).
    pub failures: Labelled,
    /// Changes of the leader this node knows.
    pub leader_changes: AtomicU64,
    /// Time to commit a proposal through Raft (this node's proposals,
    /// forwarded or not, retries included).
    pub commit: Histogram,
}

/// Counters by a label whose values come from the code (error kinds,
/// audit actions), at most [`Labelled::MAX`] of them.
#[derive(Debug, Default)]
pub struct Labelled(std::sync::Mutex<std::collections::BTreeMap<String, u64>>);

impl Labelled {
    /// Most label values kept (a bound, should a label ever vary).
    pub const MAX: usize = 256;

    /// Count one for `label`.
    pub fn add(&self, label: &str) {
        if let Ok(mut m) = self.0.lock() {
            if let Some(v) = m.get_mut(label) {
                *v += 1;
            } else if m.len() < Self::MAX {
                m.insert(label.to_string(), 1);
            }
        }
    }

    /// The counts, by label.
    pub fn counts(&self) -> Vec<(String, u64)> {
        self.0
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }
}

/// A latency histogram with fixed buckets (Prometheus `histogram`).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_MS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// The histogram's upper bounds, milliseconds.
const BUCKETS_MS: [u64; 11] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500];

impl Histogram {
    /// Count one observation of `d`.
    pub fn observe(&self, d: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        for (b, le) in self.buckets.iter().zip(BUCKETS_MS) {
            if micros <= le * 1000 {
                b.fetch_add(1, Relaxed);
            }
        }
        self.sum_micros.fetch_add(micros, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Its lines in the Prometheus text format, as `name` for `node`.
    pub fn render(&self, name: &str, node: &str) -> String {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering::Relaxed;
        let mut s = format!("# TYPE {name} histogram\n");
        for (b, le) in self.buckets.iter().zip(BUCKETS_MS) {
            let _ = writeln!(
                s,
                "{name}_bucket{{node=\"{node}\",le=\"{}\"}} {}",
                le as f64 / 1000.0,
                b.load(Relaxed)
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(s, "{name}_bucket{{node=\"{node}\",le=\"+Inf\"}} {count}");
        let _ = writeln!(
            s,
            "{name}_sum{{node=\"{node}\"}} {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "{name}_count{{node=\"{node}\"}} {count}");
        s
    }
}

/// While the node runs: count the changes of the leader it knows.
pub(crate) async fn watch_leader(node: super::Node) {
    let mut rx = node.raft().metrics();
    let mut last = rx.borrow().current_leader;
    while rx.changed().await.is_ok() {
        let now = rx.borrow().current_leader;
        if now != last {
            last = now;
            node.metrics()
                .leader_changes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn the_histogram_counts_each_observation_in_every_bucket_above_it() {
        let h = Histogram::default();
        h.observe(std::time::Duration::from_micros(800));
        h.observe(std::time::Duration::from_millis(30));
        h.observe(std::time::Duration::from_secs(9));
        let text = h.render("x", "1");
        assert!(
            text.contains("x_bucket{node=\"1\",le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_bucket{node=\"1\",le=\"0.025\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_bucket{node=\"1\",le=\"0.05\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_bucket{node=\"1\",le=\"2.5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_bucket{node=\"1\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("x_count{node=\"1\"} 3\n"), "{text}");
        assert!(text.contains("x_sum{node=\"1\"} 9.0308\n"), "{text}");
    }

    #[test]
    fn labels_are_bounded() {
        let l = Labelled::default();
        for i in 0..(Labelled::MAX + 10) {
            l.add(&format!("k{i}"));
        }
        l.add("k0");
        let counts = l.counts();
        assert_eq!(counts.len(), Labelled::MAX);
        assert!(counts.contains(&("k0".to_string(), 2)));
    }
}
