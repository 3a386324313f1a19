//! The control plane's replicated data: commands in the Raft log, the records
//! they create, and openraft's type configuration. Public data only: secrets
//! never enter the log.

#[cfg(feature = "raft")]
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::api::SuiteName;
use crate::msg::Prekey;
use crate::{Hex, Hex32, NodeId};

mod changes;
pub use changes::{drained, Change, ChangeRecord};

/// A founding member as the init names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Founder {
    /// Its id.
    pub id: NodeId,
    /// Its address and keys (each founder checks its own before it
    /// co-signs).
    pub info: NodeInfo,
}

/// A node as Raft membership records it: where to reach it and the keys that
/// authenticate it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeInfo {
    /// Base URL of its API, e.g. `https://127.0.0.1:7001`.
    pub addr: String,
    /// Ed25519 identity public key: peer messages from it carry signatures
    /// under this key, and its TLS certificate is issued for this key.
    pub identity: Hex32,
    /// X25519 HPKE public key (RFC 9180, DHKEM(X25519, HKDF-SHA256)): secret
    /// payloads to it are sealed to this key.
    pub hpke: Hex32,
}

impl core::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.addr, self.identity)
    }
}

/// A shared key in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Unique name.
    pub name: String,
    /// Signature scheme.
    pub suite: SuiteName,
    /// Signing threshold.
    pub threshold: u16,
    /// Share holders.
    pub members: Vec<NodeId>,
    /// The public key as verifiers take it.
    pub public_key: Hex,
    /// The core `GroupKey` encoding: threshold, members, every public share.
    pub group_key: Hex,
    /// Share generation.
    pub epoch: u64,
    /// The protocol run that produced this generation's shares; holders find
    /// their share in their vault under it.
    pub session: Hex32,
    /// When the generation was committed (ms since the Unix epoch, leader's clock).
    pub created_ms: u64,
}

/// What a client may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Grant {
    /// The client's name (its RFC 9421 `keyid`; shown in the audit log).
    pub name: String,
    /// May manage keys, clients and membership.
    pub admin: bool,
    /// May approve exports.
    pub operator: bool,
    /// Keys it may sign with (`*` for every key).
    pub sign_keys: Vec<String>,
    /// May enrol accounts with the credential guardians (apply rules 9;
    /// absent when false, so older records read and hash the same).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovery: bool,
}

/// A client identity: an Ed25519 public key whose holder signs requests
/// (RFC 9421), and what it may do. The private key never reaches the
/// cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientRecord {
    /// Its name and permissions.
    pub grant: Grant,
    /// Its Ed25519 public key.
    pub public_key: Hex32,
    /// After this time (ms since the Unix epoch) its requests are refused.
    #[serde(default)]
    pub expires_ms: Option<u64>,
    /// Revoked: its requests are refused; the name stays taken.
    #[serde(default)]
    pub revoked: bool,
}

/// One audited event, as a node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// When (ms since the Unix epoch, reporting node's clock).
    pub time_ms: u64,
    /// The node that handled it.
    pub node: NodeId,
    /// Who asked: a token name, `anonymous`, or `peer:<id>`.
    pub actor: String,
    /// What: e.g. `key.create`, `key.sign`, `http.reject`.
    pub action: String,
    /// The object, e.g. a key name.
    #[serde(default)]
    pub target: Option<String>,
    /// `ok`, or why it failed or was refused.
    pub outcome: String,
}

/// An entry of the hash-chained audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Position, from 0.
    pub seq: u64,
    /// The event.
    pub event: AuditEvent,
    /// Hash of the previous entry (zeros for the first).
    pub prev: Hex32,
    /// SHA-256 over the domain label, `seq`, `prev` and the event's JSON.
    pub hash: Hex32,
}

/// A signed statement by a node that the log's head at `seq` has `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedHead {
    /// Sequence number of the head entry.
    pub seq: u64,
    /// Its hash.
    pub hash: Hex32,
    /// The signing node (the leader when it signed).
    pub signer: NodeId,
    /// Ed25519 signature by the signer's identity key.
    pub signature: Hex,
    /// The root of the Merkle tree (RFC 9162 §2.1) over the first
    /// `seq + 1` entries' hashes, when the head states one (every head
    /// signed since the log kept its tree; the signature then covers it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<Hex32>,
}

/// An audit entry with what proves it is in the log: for each of several
/// members' signed heads that cover it, the Merkle inclusion path
/// (RFC 9162 §2.1.3) of its hash, as leaf `entry.seq`, in the tree of
/// `head.seq + 1` entries whose root the head states and its signer signed.
/// Every member signs its own replica's head, so a client that holds t
/// members' identity keys needs no single member's word.
///
/// To check one: recompute `entry.hash` from its content, take
/// `SHA-256(0x00 ‖ entry.hash)` as the leaf, and for each head verify the
/// path to `head.root` (RFC 9162 §2.1.3.2) and `head.signature` over
/// `"keyquorum-audit-head-v2\0" ‖ u64 BE seq ‖ hash ‖ root` with a signer's
/// identity key you know (from the node, not from the proof:
/// `signer_identity` only names the key the answering node has for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditProof {
    /// The entry.
    pub entry: AuditEntry,
    /// The newest head of each signer that covers it, with its path.
    pub heads: Vec<HeadProof>,
}

/// One signed head of an [`AuditProof`] and the entry's path to its root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeadProof {
    /// The head (it has a root).
    pub head: SignedHead,
    /// Sibling hashes from the leaf up.
    pub path: Vec<Hex32>,
    /// The signer's identity key as the answering node knows it.
    pub signer_identity: Hex32,
}

/// A pending or completed export (temporary reconstruction) request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportRecord {
    /// Request id.
    pub id: String,
    /// Key name.
    pub key: String,
    /// Generation to export.
    pub epoch: u64,
    /// Token name that asked.
    pub requested_by: String,
    /// Operators (token names) that approved; distinct.
    pub approvals: Vec<String>,
    /// Approvals needed (the operator quorum when it was requested).
    pub needed: u16,
    /// Whether it has been carried out (an export runs once).
    pub done: bool,
    /// X25519 key the result is sealed to.
    pub recipient: Hex32,
    /// When it was requested (ms since the Unix epoch, requesting node's clock).
    pub created_ms: u64,
}

/// A node's software measurement (DESIGN.md §3.3): stated by the node in
/// its signed boot statement, not by a hardware platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Measurement {
    /// SHA-256 of its executable.
    pub binary: Hex32,
    /// SHA-256 of its configuration's tunables.
    pub config: Hex32,
}

/// A command in the Raft log: one enum per capability, each owning its
/// commands, behind one dispatcher. On the wire each is an object tagged by
/// `op` (`{"op": "put_key", ...}`): the capability enums are untagged here,
/// so the format is that of one flat enum, and op names are unique across
/// capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    /// The cluster's own: audit log, clients.
    Cluster(ClusterCommand),
    /// Shared keys: key records and exports.
    Keys(KeysCommand),
    /// Per-message key derivation.
    Msg(crate::msg::MsgCommand),
    /// Computation on encrypted data (apply rules 6 on).
    He(crate::he::HeCommand),
    /// The federated hash-based signing tree (apply rules 7 on).
    Seedtree(crate::seedtree::SeedtreeCommand),
    /// Credential guardians' accounts (apply rules 9 on).
    Recovery(crate::recovery::RecoveryCommand),
}

impl From<crate::recovery::RecoveryCommand> for Command {
    fn from(c: crate::recovery::RecoveryCommand) -> Self {
        Command::Recovery(c)
    }
}

impl From<crate::seedtree::SeedtreeCommand> for Command {
    fn from(c: crate::seedtree::SeedtreeCommand) -> Self {
        Command::Seedtree(c)
    }
}

impl From<crate::he::HeCommand> for Command {
    fn from(c: crate::he::HeCommand) -> Self {
        Command::He(c)
    }
}

impl From<ClusterCommand> for Command {
    fn from(c: ClusterCommand) -> Self {
        Command::Cluster(c)
    }
}

impl From<KeysCommand> for Command {
    fn from(c: KeysCommand) -> Self {
        Command::Keys(c)
    }
}

impl From<crate::msg::MsgCommand> for Command {
    fn from(c: crate::msg::MsgCommand) -> Self {
        Command::Msg(c)
    }
}

/// The cluster's own commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClusterCommand {
    /// Append events to the audit log.
    Audit {
        /// The events, in order.
        events: Vec<AuditEvent>,
    },
    /// Record a signed audit head.
    SignHead {
        /// The statement.
        head: SignedHead,
    },
    /// Register a client; its name must be new (names are never reused,
    /// even after revocation).
    PutClient {
        /// The client.
        record: ClientRecord,
    },
    /// Revoke a client.
    RevokeClient {
        /// Its name.
        name: String,
    },
    /// Nothing but the stating node's time: it keeps the members' attested
    /// log clock moving when a node has nothing else to say.
    Tick {},
    /// The stating node started, with this random boot id: its signing
    /// nonces are bound to its latest boot in the log, so nonces from an
    /// earlier start (a restored vault, a clone) are never used.
    Boot {
        /// The boot id.
        boot: Hex32,
        /// The newest apply rules its build knows ([`APPLY_RULES`]): the
        /// cluster moves to newer rules only once every member announced
        /// them (absent: a build from before the announcement).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rules: Option<u16>,
        /// What it runs, as it measures itself (software attestation;
        /// absent: a build from before it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        measurement: Option<Measurement>,
        /// The restore of the control plane it starts on, as its state
        /// names it (the first boots after a restore set the time before
        /// which nothing signed is taken; absent: none, or a build from
        /// before it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restored: Option<Hex32>,
    },
    /// Initialise a new cluster: its operators, their quorum and the first
    /// admin client. Every voting member states it together, each only
    /// after the caller proved it holds that member's one-time init secret;
    /// applied once, while the registry has no client.
    Init {
        /// The operators (`grant.operator`, nothing else).
        operators: Vec<ClientRecord>,
        /// Distinct operator approvals needed (1 ..= operators).
        quorum: u16,
        /// The first admin client (`grant.admin`, not an operator).
        admin: ClientRecord,
        /// Threshold of a new key whose request states none (unset: a
        /// majority of the key's members).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default_threshold: Option<u16>,
        /// The founding members the membership record starts with: the
        /// nodes the initialising operator named (each a voter before
        /// init), each with the address and keys it stated for itself
        /// when it co-signed. Empty (a cluster initialised before this
        /// field): the founding voters that were members at init.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        nodes: Vec<Founder>,
    },
    /// Propose a change to the operators.
    ProposeChange {
        /// The proposal (no approvals yet).
        record: ChangeRecord,
    },
    /// An operator approves a proposed change; the last approval needed
    /// carries it out.
    ApproveChange {
        /// The change's id.
        id: String,
        /// The approving operator (the request's signer).
        operator: String,
    },
}

/// Shared keys' commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum KeysCommand {
    /// Register or advance a key. `expected_epoch: None` means the key must
    /// not exist yet; `Some(e)` means its current epoch must be `e`.
    PutKey {
        /// The new record.
        record: KeyRecord,
        /// Compare-and-set guard.
        expected_epoch: Option<u64>,
        /// The members' signatures over [`key_statement`] of the record:
        /// apply needs at least the record's threshold of them, by distinct
        /// members of the record.
        #[serde(default)]
        endorsements: Vec<Endorsement>,
    },
    /// Open an export request.
    RequestExport {
        /// The request.
        record: ExportRecord,
    },
    /// An operator approves an export.
    ApproveExport {
        /// Request id.
        id: String,
        /// Operator token name.
        operator: String,
    },
    /// Mark an export carried out (it cannot run again).
    CompleteExport {
        /// Request id.
        id: String,
    },
}

/// A member's signature over [`key_statement`]: it computed this group key
/// for this run and holds its share of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Endorsement {
    /// The member.
    pub node: NodeId,
    /// Ed25519 signature by its identity key.
    pub signature: Hex,
}

/// The bytes each member signs for [`Authority::Members`].
pub fn members_statement(time_ms: u64, nonce: &[u8], command: &Command) -> Vec<u8> {
    let mut m = b"keyquorum-members-command-v1\x00".to_vec();
    m.extend_from_slice(&time_ms.to_be_bytes());
    m.extend_from_slice(&(nonce.len() as u64).to_be_bytes());
    m.extend_from_slice(nonce);
    m.extend_from_slice(&serde_json::to_vec(command).unwrap_or_default());
    m
}

/// The bytes a member signs to endorse a key generation: the key's name,
/// the generation, the run and the group key encoding (which states the
/// threshold, the members and every public share).
pub fn key_statement(name: &str, epoch: u64, session: &Hex32, group_key: &[u8]) -> Vec<u8> {
    let mut m = b"keyquorum-key-generation-v1\x00".to_vec();
    m.extend_from_slice(&(name.len() as u64).to_be_bytes());
    m.extend_from_slice(name.as_bytes());
    m.extend_from_slice(&epoch.to_be_bytes());
    m.extend_from_slice(&session.0);
    m.extend_from_slice(group_key);
    m
}

/// Most commands in one [`Proposal`].
pub const MAX_BATCH: usize = 128;

/// The newest apply rules this build knows ([`Proposal::rules`]). A
/// replica applies each entry by the rules stamped on it (a log written by
/// an earlier build replays to the same state), never by older rules than
/// an entry it applied before (a leader cannot stamp old rules to skip
/// newer checks), and takes up newer rules only once every member
/// announced it knows them (a leader cannot stamp rules some replica
/// would not apply); a replica that meets rules the cluster took up and
/// it does not know stops, so replicas of different builds never apply
/// the same entry differently.
///
/// - 1: the first rules.
/// - 2: the membership record (an init puts it in force), an unstated
///   threshold is the replicated default, a changed key policy needs the
///   operator quorum's approval, a delivered message is checked against
///   its sender's signature.
/// - 3: newer rules are adopted only once every member announced them
///   (`ClusterCommand::Boot::rules`), and a replica whose build does not
///   know rules the cluster adopted stops applying (instead of refusing
///   the entries and falling out of step).
/// - 4: per-client quotas on messaging (endpoints, mailboxes, messages
///   waiting: `keyquorum_node::msg::quota`).
/// - 5: audit heads: every member signs its own replica's head, with the
///   Merkle root; a head is applied only if it is one the log had (among
///   its recent ends of audit statements, hash and root equal) and newer
///   than its signer's last; an audit statement holds at most 512 events,
///   each field at most 1 KiB.
/// - 6: computation on encrypted data (`crate::he::HeCommand`; refused
///   before); key names starting `he.` and the ristretto255 suite are only
///   for its sessions.
/// - 7: the federated hash-based signing tree
///   (`crate::seedtree::SeedtreeCommand`; refused before).
/// - 8: OPRF keys: `POST /v1/oprf/keys` creates a ristretto255 key named
///   `oprf.NAME` (refused before); `POST /v1/keys` refuses `oprf.` names.
/// - 9: credential guardians' accounts (`crate::recovery::RecoveryCommand`;
///   refused before) and the clients' `recovery` permission (a client
///   record granting it is refused before).
/// - 10: reset requests (`reset_open`, and signers' `reset_inbox`
///   statements; refused before).
/// - 11: PIN-protected secrets (`pin_key`, `secret_register`, `pin_guess`,
///   and guardians' `pin_unlocked` statements; refused before), and the
///   `pin.` key names kept for them.
/// - 12: drains (`Change::DrainNode`; refused before), and a node that is
///   a member of a signing tree is not removed (its lock quorums would
///   be lost).
/// - 13: a drain can be cancelled (`Change::CancelDrain`; refused before).
/// - 14: an approval names what it approves
///   (`crate::api::ApprovalRequest` as the request's body, compared with
///   the change or export under its id; an approval by id alone is
///   refused).
/// - 15: a signing tree's unused leaves move to new holders
///   (`crate::seedtree::SeedtreeCommand::StReshare`, for an approved
///   drain's target; refused before).
/// - 16: a PIN-protected secret is registered again (`pin_key` of a later
///   generation, `pin.ACCOUNT~G`, and `secret_register` naming the record
///   it replaces; refused before), which retires the old record's key.
/// - 17: nothing changes in apply; a build announcing 17 takes batches of
///   peer messages (`crate::peer::PeerMessage::Batch`), and only a member
///   that announced it is sent one.
/// - 18: nothing changes in apply; once its log applied an entry at 18 a
///   member keeps a signing tree's leaf shares and public nodes in rows of
///   up to 64 values (a build before it reads one value per row, and stops
///   applying at that entry of its log, so it never goes on applying with
///   rows it cannot read).
pub const APPLY_RULES: u16 = 18;

/// The oldest apply rules this build still applies.
pub const MIN_APPLY_RULES: u16 = 1;

/// One Raft log entry: the commands the leader appended together, stamped
/// with its clock. Each command carries what authorizes it, and every
/// replica checks that on apply (DESIGN.md §4 item 3); one command's
/// refusal neither stops nor undoes the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The apply rules ([`APPLY_RULES`]).
    pub rules: u16,
    /// The appending leader's clock (ms since the Unix epoch), for the
    /// record. Freshness on apply is judged against the log clock the
    /// members attest through their signed statements, never against the
    /// leader's stamp or a replica's own clock.
    pub time_ms: u64,
    /// 1 ..= [`MAX_BATCH`] commands, applied in order, each on its own.
    pub commands: Vec<Authorized>,
}

/// A command and what authorizes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorized {
    /// The command.
    pub command: Command,
    /// Who asked for it, in a form every replica can check.
    pub by: Authority,
}

/// What authorizes a command, checked by every replica on apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Authority {
    /// A client's signed request (RFC 9421), byte for byte as the entry
    /// node received it: apply verifies the signature against the client's
    /// key in the registry, its freshness against the log clock and its
    /// nonce (once), and that the command is what the request asks for.
    Client {
        /// The request.
        request: crate::peer::ClientRequest,
    },
    /// A statement a node makes about itself, signed by its identity key
    /// over [`node_statement`]; fresh against the log clock and applied
    /// once.
    Node {
        /// The node.
        node: NodeId,
        /// When it signed (its clock, ms).
        time_ms: u64,
        /// 16 random bytes.
        nonce: Hex,
        /// Ed25519 signature by the node's identity key.
        signature: Hex,
    },
    /// A statement every voting member signs over [`members_statement`]:
    /// the first client of a new cluster, which no client can authorize.
    Members {
        /// When it was made (ms).
        time_ms: u64,
        /// 16 random bytes.
        nonce: Hex,
        /// One per voting member.
        signatures: Vec<Endorsement>,
    },
}

/// The bytes a node signs for [`Authority::Node`]: a domain label, the
/// node, the time, the nonce and the command's JSON (serde_json writes
/// struct fields in declaration order and maps sorted: one encoding per
/// value).
pub fn node_statement(node: NodeId, time_ms: u64, nonce: &[u8], command: &Command) -> Vec<u8> {
    let mut m = b"keyquorum-command-v1\x00".to_vec();
    m.extend_from_slice(&u64::from(node).to_be_bytes());
    m.extend_from_slice(&time_ms.to_be_bytes());
    m.extend_from_slice(&(nonce.len() as u64).to_be_bytes());
    m.extend_from_slice(nonce);
    m.extend_from_slice(&serde_json::to_vec(command).unwrap_or_default());
    m
}

/// The result of applying a command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CommandResponse {
    /// Applied.
    #[default]
    Ok,
    /// Not applied; the state is unchanged.
    Rejected {
        /// Why.
        reason: String,
    },
    /// Applied; the prekeys a [`crate::msg::MsgCommand::ClaimPrekey`] reserved, oldest
    /// first.
    Claimed {
        /// The prekeys.
        prekeys: Vec<Prekey>,
    },
    /// Applied; how many items a [`crate::msg::MsgCommand::Ack`] removed.
    Removed {
        /// Count.
        count: u64,
    },
    /// Applied; the index it gave (an input to a session).
    Appended {
        /// The index.
        index: u64,
    },
    /// A [`Proposal`]'s commands' results, in order.
    Batch {
        /// One per command.
        responses: Vec<CommandResponse>,
    },
}

impl CommandResponse {
    /// A refusal: not applied, the state unchanged, for `reason`.
    pub fn rejected(reason: impl Into<String>) -> Self {
        CommandResponse::Rejected {
            reason: reason.into(),
        }
    }
}

#[cfg(feature = "raft")]
openraft::declare_raft_types!(
    /// openraft's type configuration for the keyquorum control plane.
    pub TypeConfig:
        D = Proposal,
        R = CommandResponse,
        // Raft's own node id: a node's [`NodeId`] as a `u64` (the form the
        // log and snapshots have always stored; openraft also needs a
        // `Default`, which no valid node id has).
        NodeId = u64,
        Node = NodeInfo,
);

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]
mod tests {
    use super::*;
    use crate::msg::MsgCommand;

    /// Log entries written before commands were split by capability: one
    /// flat enum tagged by `op`.
    #[test]
    fn commands_keep_their_flat_op_tagged_form() {
        let commands: Vec<Command> = vec![
            KeysCommand::CompleteExport { id: "e1".into() }.into(),
            ClusterCommand::Audit { events: vec![] }.into(),
            MsgCommand::RevokeEndpoint { name: "a".into() }.into(),
            KeysCommand::ApproveExport {
                id: "e1".into(),
                operator: "op".into(),
            }
            .into(),
        ];
        let want = [
            r#"{"op":"complete_export","id":"e1"}"#,
            r#"{"op":"audit","events":[]}"#,
            r#"{"op":"revoke_endpoint","name":"a"}"#,
            r#"{"op":"approve_export","id":"e1","operator":"op"}"#,
        ];
        for (c, w) in commands.iter().zip(want) {
            assert_eq!(serde_json::to_string(c).unwrap(), w);
            assert_eq!(&serde_json::from_str::<Command>(w).unwrap(), c);
        }
        // A claim written before batching (no count, no time) still reads.
        let old = r#"{"op":"claim_prekey","name":"b","by":"a"}"#;
        assert_eq!(
            serde_json::from_str::<Command>(old).unwrap(),
            Command::Msg(MsgCommand::ClaimPrekey {
                name: "b".into(),
                by: "a".into(),
                count: 1,
                time_ms: 0,
            })
        );
        assert!(serde_json::from_str::<Command>(r#"{"op":"no_such_op"}"#).is_err());
    }
}
