//! The arguments of `keyquorum bench`: one subcommand per end-to-end load
//! tool (`bench.rs` and the `bench_*` modules run them), and the local
//! cluster `bench sign` starts.

use std::path::PathBuf;

use clap::Subcommand;

use crate::SuiteArg;

#[derive(Subcommand, Debug)]
pub(crate) enum BenchCommand {
    /// Per-message key derivation end to end on a local cluster: messages/s
    /// and p50/p99 for each mode, coordinator count and concurrency, then
    /// the receivers draining their mailboxes.
    Msg {
        /// Nodes of the local cluster.
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// Concurrent senders, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,64")]
        concurrency: Vec<usize>,
        /// Coordinators per message, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        coordinators: Vec<u16>,
        /// Seconds per row.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Payload bytes.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Prekeys each sender reserves per claim, comma-separated (1 = a
        /// consensus claim per message, as `msg send` does).
        #[arg(long, value_delimiter = ',', default_value = "16")]
        claim_batch: Vec<u16>,
    },
    /// A federated hash-based signing tree: key generation against the
    /// SHA-256 compression limit, then signatures at several concurrencies
    /// against the bare cost of one.
    Seedtree {
        /// Nodes of the local cluster.
        #[arg(long, default_value_t = 4)]
        nodes: u16,
        /// Shares needed per leaf.
        #[arg(long, default_value_t = 2)]
        threshold: u16,
        /// LMS height.
        #[arg(long, default_value_t = 15)]
        height: u8,
        /// Winternitz parameter.
        #[arg(long, default_value_t = 4)]
        winternitz: u8,
        /// Subtrees (default: the smallest power of two at least the nodes).
        #[arg(long)]
        subtrees: Option<u32>,
        /// Concurrent signers, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        concurrency: Vec<usize>,
        /// Seconds per concurrency level.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Threshold VOPRF evaluations end to end (evaluations/s, p50/p99,
    /// CPU per evaluation against one server's bare evaluation and the
    /// threshold protocol's math, both measured in the same run).
    Oprf {
        /// Nodes of the local cluster.
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// Members that answer together.
        #[arg(long, default_value_t = 2)]
        threshold: u16,
        /// Concurrent clients, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        concurrency: Vec<usize>,
        /// Seconds per concurrency level.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Credential guardians end to end: reset request to assembled token,
    /// and PIN recovery (p50/p99 at each concurrency, the steps' shares,
    /// against a bare reset, Argon2id alone and a node round trip, all
    /// measured in the same run).
    Recovery {
        /// Nodes of the local cluster.
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// Guardians that act together.
        #[arg(long, default_value_t = 2)]
        threshold: u16,
        /// Concurrent clients, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        concurrency: Vec<usize>,
        /// Reset requests per concurrency level.
        #[arg(long, default_value_t = 64)]
        resets: usize,
        /// PIN recoveries per concurrency level.
        #[arg(long, default_value_t = 64)]
        pins: usize,
    },
    /// Encrypted-data submissions end to end on a local cluster
    /// (submissions/s, p50/p99, CPU per submission against the bare proof
    /// checks), then the decryption.
    He {
        /// Nodes of the local cluster.
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// Concurrent submitters, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        concurrency: Vec<usize>,
        /// Seconds per concurrency level.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Input proofs: none, knowledge or range:BITS.
        #[arg(long, default_value = "knowledge")]
        inputs: String,
    },
    /// Threshold signing over the HTTP API at several concurrencies
    /// (throughput, p50/p99, the nodes' CPU per signature), beside raw
    /// FROST of the same suite and t-of-n measured in the same run, as the
    /// ratios R_cpu and R_thr. Without --url it starts a local cluster in a
    /// child process (temp dir).
    Sign {
        #[command(flatten)]
        shape: SignCluster,
        /// Concurrent requests, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        concurrency: Vec<usize>,
        /// Seconds per concurrency level.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Warm-up seconds (fills the nonce pools).
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Signature scheme.
        #[arg(long, value_enum, default_value_t = SuiteArg::Ed25519)]
        suite: SuiteArg,
        /// Use a running cluster instead (with --key-file and --ca-cert).
        #[arg(long)]
        url: Option<String>,
        /// The client key for --url (PKCS#8 PEM; its client must be an admin).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// The client's name for --key-file.
        #[arg(long, default_value = "admin")]
        key_id: String,
        /// Certificates to trust for --url (PEM).
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// With --url: the node processes whose CPU to count (comma-separated
        /// pids on this machine).
        #[arg(long, value_delimiter = ',', requires = "url")]
        node_pids: Vec<u32>,
        /// Run the nodes in this process instead of a child process (their
        /// CPU then cannot be told apart from the load generator's).
        #[arg(long, conflicts_with = "url")]
        in_process: bool,
    },
    /// A throw-away local cluster for `bench sign`'s child process: prints
    /// where it listens as one JSON line, runs until stdin closes.
    #[command(hide = true)]
    Nodes {
        #[command(flatten)]
        shape: SignCluster,
    },
}

/// The local cluster `bench sign` starts (and `bench nodes` runs for it).
#[derive(clap::Args, Debug)]
pub(crate) struct SignCluster {
    /// Nodes of the local cluster (and members of the key).
    #[arg(long, default_value_t = 3)]
    pub(crate) nodes: u16,
    /// Signing threshold.
    #[arg(long, default_value_t = 2)]
    pub(crate) threshold: u16,
    /// Precomputed nonces per signer (0: fetch a fresh commitment per
    /// signature).
    #[arg(long, default_value_t = 256)]
    pub(crate) pool: usize,
    /// Batches of peer messages a node may have on their way to one
    /// member at once (the node config's `peer_batches`; 0: none).
    #[arg(long, default_value_t = keyquorum_node::config::NodeConfig::DEFAULT_PEER_BATCHES)]
    pub(crate) peer_batches: usize,
}
