//! `keyquorum`: the command-line interface.
//!
//! - `dev`: a whole local cluster in one process (embedded storage).
//! - `node`: one node of a real cluster, from a config file.
//! - `key`, `status`, `audit`: API calls (`KEYQUORUM_URL`, `KEYQUORUM_TOKEN`).
//! - `msg`: messaging endpoints (sealed local files) sending and receiving.
//! - `demo`: the threshold-key core in one process, no network.
//!
//! Human output by default, `--json` on every command.

/// The allocator of the binary users run: mimalloc in place of the system
/// allocator. A node allocates and frees many small buffers per request
/// (JSON, hex, envelopes, redb pages) from many threads; glibc's allocator
/// was about a tenth of a node's CPU while signing with a tree. With
/// mimalloc, node CPU per tree signature went down 9% and per encrypted
/// submission 12% (BENCHMARKS.md, stop 45). The test binaries keep the
/// system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod bench_args;
mod bench_he;
mod bench_msg;
mod bench_oprf;
mod bench_recovery;
mod bench_seedtree;
mod clients;
mod cluster;
mod demo;
mod drain;
mod he;
mod msg;
mod nodes;
mod operators;
mod oprf;
mod recovery;
mod seedtree;
mod snapshot;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use bench_args::BenchCommand;
use clap::{Parser, Subcommand, ValueEnum};
use keyquorum_core::{Ed25519, Secp256k1Tr};
use keyquorum_wire::NodeId;

#[derive(Parser, Debug)]
#[command(
    name = "keyquorum",
    version,
    about = "Threshold key management: no single machine ever holds a whole key"
)]
struct Cli {
    /// Print machine-readable JSON instead of human text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Where the API is and who is calling.
#[derive(clap::Args, Debug, Clone)]
struct Remote {
    /// API base URL of any node.
    #[arg(long, env = "KEYQUORUM_URL", default_value = "https://127.0.0.1:7001")]
    url: String,
    /// PEM file of the node certificates to trust (for `keyquorum dev`,
    /// DATA_DIR/ca.pem). Every connection is TLS 1.3.
    #[arg(long, env = "KEYQUORUM_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// The client identity's private key (PKCS#8 PEM) that signs every
    /// request (RFC 9421); for `keyquorum dev`, DATA_DIR/admin.key.
    #[arg(long, env = "KEYQUORUM_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// The client's name (its key id).
    #[arg(long, env = "KEYQUORUM_KEY_ID", default_value = "admin")]
    key_id: String,
}

/// Where the API is, signing as an operator.
#[derive(clap::Args, Debug, Clone)]
struct OperatorRemote {
    /// API base URL of any node.
    #[arg(long, env = "KEYQUORUM_URL", default_value = "https://127.0.0.1:7001")]
    url: String,
    /// PEM file of the node certificates to trust.
    #[arg(long, env = "KEYQUORUM_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// The operator's private key (PKCS#8 PEM, from `operator keygen`; for
    /// `keyquorum dev`, DATA_DIR/operator.key).
    #[arg(long, env = "KEYQUORUM_OPERATOR_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// The operator's name (its key id).
    #[arg(long, env = "KEYQUORUM_OPERATOR_KEY_ID", default_value = "operator")]
    key_id: String,
}

#[derive(Subcommand, Debug)]
enum OperatorCommand {
    /// Make an operator key pair on this machine: the private key goes to
    /// --out (PKCS#8 PEM, 0600, never overwritten), the public key is
    /// printed for `keyquorum init --operator` or `operator add`.
    Keygen {
        /// Where to write the private key (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// The name it signs as (default: operator-<first 4 bytes of its
        /// public key, hex>).
        #[arg(long)]
        name: Option<String>,
    },
    /// The operators, their quorum and the proposed changes.
    List {
        #[command(flatten)]
        remote: OperatorRemote,
    },
    /// Propose enrolling an operator (takes effect with the quorum's
    /// approvals).
    Add {
        #[command(flatten)]
        remote: OperatorRemote,
        /// NAME=PUBKEY (or PUBKEY) as `operator keygen` printed it.
        operator: String,
    },
    /// Propose removing an operator.
    Remove {
        #[command(flatten)]
        remote: OperatorRemote,
        /// Its name.
        name: String,
    },
    /// Propose a new operator quorum.
    Quorum {
        #[command(flatten)]
        remote: OperatorRemote,
        /// Distinct approvals needed (1 ..= operators).
        quorum: u16,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a local cluster in one process (embedded storage, loopback);
    /// prints the API URL and where the admin client's key is, and writes
    /// both to DATA_DIR/client.env. Runs until Ctrl-C.
    Dev {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// Default signing threshold for new keys.
        #[arg(long, default_value_t = 2)]
        threshold: u16,
        /// Where the nodes keep their files (reused on restart).
        #[arg(long, default_value = "keyquorum-dev")]
        data_dir: PathBuf,
        /// Start, print, and stop at once (for scripts and tests).
        #[arg(long)]
        exit_after_start: bool,
        /// An SMTP server (HOST:PORT) the nodes send email fragments to
        /// (STARTTLS unless it is on loopback).
        #[arg(long)]
        smtp: Option<String>,
    },
    /// Run one node from a config file (TOML; see README).
    #[command(args_conflicts_with_subcommands = true)]
    Node {
        /// `identity`: print the node's public identity while it runs.
        #[command(subcommand)]
        action: Option<nodes::NodeAction>,
        /// Config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Initialize a new cluster with this node and its configured peers as voters.
        #[arg(long)]
        init: bool,
        /// Print this node's public identity (id, address, keys) and exit.
        #[arg(long)]
        print_identity: bool,
        /// Join a running cluster through this member's API URL (with
        /// --join-code); the operator quorum approves the join.
        #[arg(long, requires = "join_code", conflicts_with = "init")]
        join: Option<String>,
        /// The join code an operator made (`keyquorum cluster join-code`).
        #[arg(long, requires = "join")]
        join_code: Option<String>,
    },

    /// Initialise a new cluster (started with `keyquorum node`): register
    /// its operators, their quorum and a first admin client whose key pair
    /// is made here. Needs every node's one-time init secret
    /// (DATA_DIR/init-secret), so whoever reaches a new cluster first
    /// cannot claim it.
    Init {
        /// API base URL of any node.
        #[arg(long, env = "KEYQUORUM_URL", default_value = "https://127.0.0.1:7001")]
        url: String,
        /// PEM file of the node certificates to trust.
        #[arg(long, env = "KEYQUORUM_CA_CERT")]
        ca_cert: PathBuf,
        /// An operator: NAME=PUBKEY (or PUBKEY) from `operator keygen`;
        /// repeat for each.
        #[arg(long = "operator", required = true)]
        operators: Vec<String>,
        /// Distinct operator approvals needed for exports and operator
        /// changes.
        #[arg(long)]
        quorum: u16,
        /// The first admin client's name.
        #[arg(long, default_value = "admin")]
        admin_name: String,
        /// Where to write the admin's private key (must not exist).
        #[arg(long)]
        admin_key_out: PathBuf,
        /// A node's init secret file (DATA_DIR/init-secret); repeat for
        /// every voting node.
        #[arg(long = "init-secret-file", required = true)]
        init_secret_files: Vec<PathBuf>,
        /// Threshold of a new key whose request states none (default: a
        /// majority of the key's members). Replicated: no entry node can
        /// pick a lower one.
        #[arg(long)]
        default_threshold: Option<u16>,
    },
    /// Operators: key pairs, enrolment, removal, quorum.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Approve an export request or an operator change (as an operator).
    /// Shows all of what is approved and its fingerprint first, and asks
    /// on a terminal; the nodes refuse the approval if what they hold under
    /// the id is anything else.
    Approve {
        #[command(flatten)]
        remote: OperatorRemote,
        /// The export's or change's id.
        id: String,
        /// The fingerprint the proposer's command printed: refuse unless
        /// the request under the id has it (then no question is asked).
        #[arg(long)]
        expect: Option<String>,
        /// Approve without asking (what is approved is still printed).
        #[arg(long)]
        yes: bool,
    },
    /// Manage and use shared keys.
    Key {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Client identities: Ed25519 key pairs that sign requests (admin).
    Client {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Add or remove cluster nodes (admin).
    Cluster {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: nodes::ClusterCommand,
    },
    /// Cluster status.
    Status {
        #[command(flatten)]
        remote: Remote,
    },
    /// Save, check or restore the control plane (README "Backups").
    Snapshot {
        #[command(subcommand)]
        command: snapshot::SnapshotCommand,
    },
    /// Read or verify the audit log.
    Audit {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: Option<AuditCommand>,
        /// First entry.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Authenticated, encrypted messages between endpoints, each under a
    /// fresh key derived per message with the cluster's coordinators.
    Msg {
        #[command(flatten)]
        remote: Remote,
        #[command(flatten)]
        files: msg::EndpointFiles,
        #[command(subcommand)]
        command: msg::MsgCommand,
    },
    /// Computation on encrypted data: sessions whose inputs the cluster
    /// adds up under a key no machine holds, decrypted only by a quorum,
    /// with a proof per member anyone can re-check.
    He {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: he::HeCommand,
    },
    /// Federated hash-based signing: one RFC 8554 LMS/HSS key built in
    /// subtrees by the members, each one-time key Shamir-shared and
    /// released leaf by leaf to the client that signs.
    Seedtree {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: seedtree::SeedtreeCommand,
    },
    /// A threshold RFC 9497 VOPRF: a key no machine holds; `t` members
    /// answer each blinded input with one proof under its public key.
    Oprf {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: oprf::OprfCommand,
    },
    /// Credential guardians: accounts whose reset tokens no guardian
    /// holds, delivered as fragments over separate channels.
    Recovery {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: recovery::RecoveryCommand,
    },
    /// Load tools.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run DKG → sign → verify → refresh → reshare → sign → repair → export in
    /// one process, every participant a separate state machine, every message
    /// through its wire encoding.
    Demo {
        /// Signature scheme.
        #[arg(long, value_enum, default_value_t = SuiteArg::Ed25519)]
        suite: SuiteArg,
        /// Number of participants.
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// Signing threshold.
        #[arg(long, default_value_t = 2)]
        threshold: u16,
        /// Message to sign.
        #[arg(long, default_value = "hello from keyquorum")]
        message: String,
    },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Generate a key by distributed key generation.
    Create {
        /// Key name.
        name: String,
        /// Signature scheme.
        #[arg(long, value_enum, default_value_t = SuiteArg::Ed25519)]
        suite: SuiteArg,
        /// Threshold (default: the cluster's).
        #[arg(long)]
        threshold: Option<u16>,
        /// Member node ids, comma-separated (default: every voter).
        #[arg(long, value_delimiter = ',')]
        members: Option<Vec<NodeId>>,
        /// Consent to fewer members: members found misbehaving during key
        /// generation may be left out, down to this many (default: the key
        /// has exactly the members asked for or is not made).
        #[arg(long)]
        min_members: Option<u16>,
    },
    /// List keys.
    List,
    /// Show one key.
    Show {
        /// Key name.
        name: String,
    },
    /// Threshold-sign a message.
    Sign {
        /// Key name.
        name: String,
        /// The message as hex.
        #[arg(long, conflicts_with = "message")]
        message_hex: Option<String>,
        /// The message as text.
        #[arg(long)]
        message: Option<String>,
    },
    /// Verify a signature under a key.
    Verify {
        /// Key name.
        name: String,
        /// The message as hex.
        #[arg(long, conflicts_with = "message")]
        message_hex: Option<String>,
        /// The message as text.
        #[arg(long)]
        message: Option<String>,
        /// The signature as hex.
        #[arg(long)]
        signature: String,
    },
    /// Replace every share with a fresh one (same public key, epoch + 1);
    /// old shares are erased once the new generation commits.
    Refresh {
        /// Key name.
        name: String,
    },
    /// Propose a new threshold and member set for a key (its signing
    /// policy): `key reshare` may then move it there once the operator
    /// quorum has approved.
    Policy {
        /// Key name.
        name: String,
        /// New threshold.
        #[arg(long)]
        threshold: u16,
        /// New member node ids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<NodeId>,
    },
    /// Move a key to a new threshold and member set (same public key; a
    /// change of either needs an approved `key policy`).
    Reshare {
        /// Key name.
        name: String,
        /// New threshold.
        #[arg(long)]
        threshold: u16,
        /// New member node ids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<NodeId>,
    },
    /// Rebuild one member's lost share from t other holders (same key).
    Repair {
        /// Key name.
        name: String,
        /// The node whose share is rebuilt.
        #[arg(long)]
        node: NodeId,
    },
    /// Temporary t-of-n reconstruction of a key, approved by t operators and
    /// sealed to the requester's one-time key.
    #[command(subcommand)]
    Export(ExportCommand),
}

#[derive(Subcommand, Debug)]
enum ExportCommand {
    /// Ask for an export: makes a one-time X25519 key, keeps its secret in
    /// KEY_FILE (mode 0600) and prints the request id.
    Request {
        /// Key name.
        name: String,
        /// Where to keep the one-time secret key (must not exist).
        #[arg(long)]
        key_file: PathBuf,
    },
    /// List export requests.
    List,
    /// Approve an export request (an operator client; not the requester).
    /// What is approved is printed with its fingerprint first; the nodes
    /// refuse the approval if what they hold under the id is anything else.
    Approve {
        /// Request id.
        id: String,
        /// The fingerprint the requester's command printed: refuse unless
        /// the request under the id has it.
        #[arg(long)]
        expect: Option<String>,
    },
    /// Carry out an approved export (the requester) and write the
    /// secret scalar, hex, to OUT (mode 0600, must not exist).
    Run {
        /// Request id.
        id: String,
        /// The one-time secret key file from `export request`.
        #[arg(long)]
        key_file: PathBuf,
        /// Where to write the secret scalar.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum ClientCommand {
    /// Make a key pair here, write the private key to --key-out (PKCS#8
    /// PEM, 0600, never overwritten) and register only the public key.
    Create {
        /// Its name (the key id its signatures carry; shown in the audit log).
        name: String,
        /// May manage keys, clients and membership.
        #[arg(long)]
        admin: bool,
        /// May approve exports.
        #[arg(long)]
        operator: bool,
        /// Keys it may sign with, comma-separated (`*`: every key).
        #[arg(long, value_delimiter = ',')]
        sign: Vec<String>,
        /// May enrol accounts with the credential guardians.
        #[arg(long)]
        recovery: bool,
        /// Where to write the private key (must not exist).
        #[arg(long)]
        key_out: PathBuf,
        /// Refuse its requests after this long: e.g. 90d, 12h, 30m, 600s.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Revoke a client: its requests are refused from now on.
    Revoke {
        /// Its name.
        name: String,
    },
    /// List the registered clients.
    List,
    /// Print the signature fields for one request, for curl and other HTTP
    /// tools: `Content-Digest` (with a body), `Signature-Input`,
    /// `Signature`. Sign just before sending: a signature is good for 300 s
    /// and once.
    Sign {
        /// The exact URL the request goes to (scheme, host, port, path, query).
        url: String,
        /// The method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// The body, from a file (`-` for standard input).
        #[arg(long)]
        body_file: Option<PathBuf>,
        /// The Content-Type the request will carry (covered when given).
        #[arg(long)]
        content_type: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Recompute the hash chain and the Merkle tree and check the signed
    /// heads (on the node).
    Verify,
    /// Print entry ENTRY with its Merkle inclusion proofs against the
    /// members' newest signed heads, checked here (RFC 9162 §2.1.3);
    /// `--json` prints the proof for anyone to check with
    /// `audit check-proof`.
    Proof {
        /// The entry's number.
        entry: u64,
        /// A member's identity key (hex) you trust; repeat it for each.
        /// Without any, the proof is checked against the keys the node
        /// names, and says so.
        #[arg(long)]
        identity: Vec<String>,
        /// How many of those keys must have signed a head the entry checks
        /// against (default: all of them; at least the cluster's largest
        /// key threshold and a majority, or t-1 members could agree on a
        /// false log).
        #[arg(long)]
        min_signers: Option<usize>,
    },
    /// Check a proof saved by `audit proof --json`, offline.
    CheckProof {
        /// The proof file (JSON).
        file: std::path::PathBuf,
        /// A member's identity key (hex); repeat it for each.
        #[arg(long, required = true)]
        identity: Vec<String>,
        /// How many of those keys must have signed (default: all of them).
        #[arg(long)]
        min_signers: Option<usize>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum SuiteArg {
    /// Ed25519 (RFC 8032 verifiers accept the signatures).
    Ed25519,
    /// secp256k1 with BIP-340/Taproot output.
    #[value(name = "secp256k1-tr")]
    Secp256k1Tr,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,openraft=error")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Demo {
            suite,
            nodes,
            threshold,
            message,
        } => match suite {
            SuiteArg::Ed25519 => demo::demo::<Ed25519>(nodes, threshold, message.as_bytes(), json),
            SuiteArg::Secp256k1Tr => {
                demo::demo::<Secp256k1Tr>(nodes, threshold, message.as_bytes(), json)
            }
        },
        other => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(cluster::run(other, json))
        }
    }
}
