//! Node-to-node messages. Every request and every reply travels in an
//! [`Envelope`] signed by the sender's identity key; secret payloads inside
//! (DKG shares) are additionally HPKE-sealed to their recipient, so the
//! coordinator that relays them learns nothing.

use serde::{Deserialize, Serialize};

use crate::api::SuiteName;
#[cfg(feature = "raft")]
use crate::control::TypeConfig;
use crate::control::{Authorized, CommandResponse};
use crate::msg::{MsgConfirmation, SealedBox};
use crate::{Hex, Hex32, NodeId, RawJson};

mod parts;
pub use parts::{NonceCommitment, RepairPlan, ResharePlan, RevealedShare, Sealed};

/// Peer protocol version carried in every envelope.
/// Version 2: the payload is embedded JSON instead of hex of the JSON.
pub const PROTOCOL_VERSION: u16 = 2;

/// A client's signed HTTP request (RFC 9421) as the entry node received
/// it, forwarded to the participants of the operation it asks for, so each
/// checks the client's signature and permission for itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRequest {
    /// The method.
    pub method: String,
    /// The absolute target URI (`https://` + `Host` + path and query).
    pub target_uri: String,
    /// The header fields, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Hex,
}

/// A signed peer message. The signature is Ed25519 by `from`'s identity key
/// over the domain label and every other field (see the node crate's
/// `peer::signing_bytes`). `payload` is the JSON of a [`PeerMessage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// [`PROTOCOL_VERSION`].
    pub version: u16,
    /// Sender.
    pub from: NodeId,
    /// Intended recipient.
    pub to: NodeId,
    /// 16 random bytes; a recipient accepts each id once.
    pub id: Hex,
    /// Sender's clock (ms since the Unix epoch); recipients accept a window.
    pub time_ms: u64,
    /// JSON of a [`PeerMessage`], carried verbatim (not re-encoded): the
    /// signature covers exactly these bytes.
    pub payload: RawJson,
    /// Ed25519 signature.
    pub signature: Hex,
}

/// Most messages one [`PeerMessage::Batch`] carries.
pub const MAX_PEER_BATCH: usize = 64;

/// Every peer request and reply.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant, reason = "serialized once per message")]
pub enum PeerMessage {
    /// Raft AppendEntries.
    #[cfg(feature = "raft")]
    AppendEntries(openraft::raft::AppendEntriesRequest<TypeConfig>),
    /// Raft AppendEntries reply.
    #[cfg(feature = "raft")]
    AppendEntriesReply(openraft::raft::AppendEntriesResponse<u64>),
    /// Raft RequestVote.
    #[cfg(feature = "raft")]
    Vote(openraft::raft::VoteRequest<u64>),
    /// Raft RequestVote reply.
    #[cfg(feature = "raft")]
    VoteReply(openraft::raft::VoteResponse<u64>),
    /// Raft InstallSnapshot (one chunk).
    #[cfg(feature = "raft")]
    InstallSnapshot(openraft::raft::InstallSnapshotRequest<TypeConfig>),
    /// Raft InstallSnapshot reply.
    #[cfg(feature = "raft")]
    InstallSnapshotReply(openraft::raft::InstallSnapshotResponse<u64>),
    /// Are you there, and are you who the membership request says? (The
    /// reply is an envelope signed by the recipient's identity key.)
    Ping,
    /// The answer to [`PeerMessage::Ping`].
    Pong,
    /// A replica about to install a snapshot at log index `index` asks a
    /// member for the digest of its own checkpoint there
    /// (`keyquorum_store::raft::checkpoint`).
    Attest {
        /// The snapshot's last log index.
        index: u64,
    },
    /// The answer to [`PeerMessage::Attest`] (in the envelope the member
    /// signed).
    Attestation {
        /// The index asked about.
        index: u64,
        /// The digest of the member's checkpoint there; `None` if it has
        /// none (not there yet, or past it and no longer keeping it).
        digest: Option<crate::Hex32>,
        /// The form of the member's checkpoints (a build that serializes
        /// the state differently has other digests for the same state;
        /// its answer is no answer, not another state).
        #[serde(default)]
        format: u16,
        /// The voters of the member's record now.
        #[serde(default)]
        voters: u16,
        /// The largest threshold of any key in the member's state now: the
        /// receiver asks for as many vouchers as the most demanding of its
        /// own state and the answers require (its own may be stale).
        #[serde(default)]
        largest_threshold: u16,
    },
    /// A member that installed a snapshot (which carries only the audit
    /// log's head) asks another for the entries it lacks.
    AuditFetch {
        /// The first entry wanted.
        from: u64,
        /// At most this many (the answer may hold fewer).
        limit: u32,
    },
    /// Entries from `from` on, in order, as far as the member holds them
    /// (the asker checks them against the head it has).
    AuditEntries {
        /// The entries.
        entries: Vec<crate::control::AuditEntry>,
    },
    /// A follower asks the leader for a read index (Raft thesis §6.4): the
    /// leader confirms it still leads and answers its commit index.
    ReadIndex,
    /// The leader's read index.
    ReadIndexReply {
        /// Apply up to here before reading.
        index: u64,
    },
    /// A member forwards control-plane writes to the leader, which stamps
    /// them into one [`crate::control::Proposal`]. The leader refuses the
    /// whole forward if it carries a node statement of another node.
    Forward {
        /// 1 ..= [`crate::control::MAX_BATCH`] commands.
        commands: Vec<Authorized>,
    },
    /// The leader's answer to a forwarded write.
    ForwardReply {
        /// Result of applying it.
        response: CommandResponse,
        /// Its log index, so the follower can wait until it has applied it
        /// too (read-your-writes on every node).
        #[serde(default)]
        index: u64,
    },

    /// DKG step 1 (coordinator → member): start a run; reply [`PeerMessage::DkgRound1`].
    DkgStart {
        /// Run id.
        session: Hex32,
        /// Key name.
        key: String,
        /// Scheme.
        suite: SuiteName,
        /// Threshold.
        threshold: u16,
        /// Members.
        members: Vec<NodeId>,
    },
    /// A member's round-1 broadcast (commitment + proof of knowledge).
    DkgRound1 {
        /// Run id.
        session: Hex32,
        /// Core `dkg::Round1Message` encoding.
        message: Hex,
    },
    /// DKG step 2: every member's signed round-1 reply, relayed; reply
    /// [`PeerMessage::DkgShares`].
    DkgRound2 {
        /// Run id.
        session: Hex32,
        /// The members' signed `DkgRound1` envelopes.
        round1: Vec<Envelope>,
    },
    /// A member's round-2 shares, each sealed to its recipient.
    DkgShares {
        /// Run id.
        session: Hex32,
        /// DKG: the run digest this member computed (its round-1
        /// transcript, the key, suite and coordinator): a member accuses
        /// only a dealer whose signed message names the run it is in itself.
        /// Refresh: all zero (refresh has no complaints).
        run: Hex32,
        /// One per other member.
        shares: Vec<Sealed>,
    },
    /// DKG step 3: the signed `DkgShares` replies, relayed; reply [`PeerMessage::DkgDone`].
    DkgFinish {
        /// Run id.
        session: Hex32,
        /// Every other member's signed `DkgShares` envelope.
        round2: Vec<Envelope>,
    },
    /// A member finished: its share is stored (pending until the registry commits).
    DkgDone {
        /// Run id.
        session: Hex32,
        /// Core `GroupKey` encoding.
        group_key: Hex,
        /// The member's signature over `control::key_statement` of the
        /// generation it computed.
        #[serde(default)]
        endorsement: Hex,
    },
    /// A member's answer to [`PeerMessage::DkgFinish`] when the signed
    /// round-2 message of one or more dealers held no share for it that
    /// opens, decodes and matches the dealer's commitment: it accuses them
    /// (GJKR complaint) and waits for [`PeerMessage::DkgResolve`].
    DkgComplaint {
        /// Run id.
        session: Hex32,
        /// The run digest the accuser and the accused dealer both signed.
        run: Hex32,
        /// The dealers accused.
        accused: Vec<NodeId>,
    },
    /// Coordinator → an accused dealer: the signed complaints naming it;
    /// reply [`PeerMessage::DkgRevealed`]. A dealer reveals only against a
    /// complaint its accuser signed for this run.
    DkgReveal {
        /// Run id.
        session: Hex32,
        /// The accusers' signed `DkgComplaint` envelopes.
        complaints: Vec<Envelope>,
    },
    /// The accused dealer's round-2 message to each accuser, in the clear
    /// (anyone checks it against the dealer's round-1 commitment).
    DkgRevealed {
        /// Run id.
        session: Hex32,
        /// One per accuser.
        shares: Vec<RevealedShare>,
    },
    /// Coordinator → an accuser whose accusations were all answered with a
    /// share on the dealer's commitment: the dealers' signed
    /// `DkgRevealed` envelopes; the accuser takes the revealed shares and
    /// finishes (reply [`PeerMessage::DkgDone`]).
    DkgResolve {
        /// Run id.
        session: Hex32,
        /// The accused dealers' signed `DkgRevealed` envelopes.
        reveals: Vec<Envelope>,
    },
    /// Co-sign the init command `init` asks for (every voting member, each
    /// only with a proof of its own init secret).
    InitSign {
        /// What `keyquorum init` asked for, with its proofs.
        init: crate::api::InitRequest,
        /// The statement's time (ms).
        time_ms: u64,
        /// Its 16 random bytes.
        nonce: Hex,
        /// The founding members the init names, with their addresses and
        /// keys (each checks its own).
        #[serde(default)]
        nodes: Vec<crate::control::Founder>,
    },
    /// A voting member's signature for [`PeerMessage::InitSign`].
    InitSigned {
        /// Over `members_statement` of the init command.
        endorsement: crate::control::Endorsement,
    },
    /// Abandon a run; members drop its state.
    Abort {
        /// Run id.
        session: Hex32,
    },

    /// Refresh step 1 (coordinator → member): start refreshing the member's
    /// share of `key` at `epoch`; reply [`PeerMessage::DkgRound1`]. Rounds two
    /// and three reuse [`PeerMessage::DkgRound2`] and [`PeerMessage::DkgFinish`].
    RefreshStart {
        /// Run id.
        session: Hex32,
        /// Key name.
        key: String,
        /// Generation being refreshed.
        epoch: u64,
    },
    /// Reshare step 1 (coordinator → dealer): re-deal the dealer's share of
    /// `key` at `epoch` to the new members; reply [`PeerMessage::ReshareDealt`].
    ReshareDeal {
        /// Run id.
        session: Hex32,
        /// The run's parameters.
        plan: ResharePlan,
        /// The client's signed `POST /v1/keys/{key}/reshare`, byte for
        /// byte: each dealer checks it asks for this plan's threshold and
        /// members before it re-deals its share.
        request: ClientRequest,
    },
    /// A dealer's sub-shares, each sealed to its new member.
    ReshareDealt {
        /// Run id.
        session: Hex32,
        /// One per new member.
        shares: Vec<Sealed>,
    },
    /// Reshare step 2 (coordinator → new member): every dealer's signed
    /// `ReshareDealt`, relayed; reply [`PeerMessage::ReshareDone`].
    ReshareReceive {
        /// Run id.
        session: Hex32,
        /// The run's parameters.
        plan: ResharePlan,
        /// The dealers' signed envelopes.
        deals: Vec<Envelope>,
    },
    /// A new member finished: its share is stored (pending until the registry
    /// commits the new generation).
    ReshareDone {
        /// Run id.
        session: Hex32,
        /// Core `GroupKey` encoding of the new generation.
        group_key: Hex,
        /// Hash of every dealer commitment it saw.
        transcript: Hex32,
        /// The member's signature over `control::key_statement` of the
        /// generation it computed.
        #[serde(default)]
        endorsement: Hex,
    },
    /// Repair, step 1 (to each helper): split your weighted share into
    /// deltas for the other helpers. Reply `RepairImages`.
    RepairStart {
        /// Run id.
        session: Hex32,
        /// The plan.
        plan: RepairPlan,
    },
    /// A helper's public delta images (core `repair::ImagesMessage`) and its
    /// deltas, each HPKE-sealed to the helper it is for.
    RepairImages {
        /// Run id.
        session: Hex32,
        /// Core encoding of the images.
        images: Hex,
        /// Sealed core `repair::DeltaMessage`s.
        deltas: Vec<Sealed>,
    },
    /// Repair, step 2 (to each helper): every other helper's signed
    /// `RepairImages`. Reply `RepairSigma`.
    RepairSum {
        /// Run id.
        session: Hex32,
        /// The other helpers' `RepairImages` envelopes, as they signed them.
        round1: Vec<Envelope>,
    },
    /// A helper's sum of deltas, sealed to the member being repaired.
    RepairSigma {
        /// Run id.
        session: Hex32,
        /// Sealed core `repair::SigmaMessage`.
        sigma: Sealed,
    },
    /// Repair, step 3 (to the member being repaired): every helper's signed
    /// `RepairImages` and `RepairSigma`. Reply `Ack` once the rebuilt share
    /// checks against the member's public share and is stored.
    RepairFinish {
        /// Run id.
        session: Hex32,
        /// The plan.
        plan: RepairPlan,
        /// Every helper's `RepairImages` envelope.
        round1: Vec<Envelope>,
        /// Every helper's `RepairSigma` envelope.
        round2: Vec<Envelope>,
    },
    /// A new generation of `key` is committed: holders promote their new
    /// share and erase older generations (shares and nonces). Reply `Ack`.
    EpochCommitted {
        /// Key name.
        key: String,
        /// The committed generation.
        epoch: u64,
    },
    /// Release this member's share for an approved export, sealed to the
    /// requester's key; reply [`PeerMessage::ExportedShare`]. Each member
    /// releases a share at most once per export, and only for the
    /// requester's own signed request to run it.
    ExportShare {
        /// Export id.
        id: String,
        /// The requester's signed `POST /v1/exports/{id}/run`, byte for
        /// byte: each holder checks it for itself.
        request: ClientRequest,
    },
    /// A share released for an export.
    ExportedShare {
        /// Export id.
        id: String,
        /// The share, sealed by the holder to the requester's key.
        share: crate::api::SealedExportShare,
    },
    /// Generic acknowledgement.
    Ack,

    /// Ask a member for `count` fresh nonce commitments for a key; it stores
    /// the nonces in its vault. Reply [`PeerMessage::Nonces`].
    NonceBatch {
        /// Key name.
        key: String,
        /// Generation.
        epoch: u64,
        /// How many (1..=1024).
        count: u16,
    },
    /// Fresh commitments.
    Nonces {
        /// The commitments.
        items: Vec<NonceCommitment>,
    },
    /// Sign with a stored nonce. Reply [`PeerMessage::SignatureShare`].
    SignShare {
        /// Key name.
        key: String,
        /// Generation.
        epoch: u64,
        /// Nonce id from a [`NonceCommitment`].
        nonce: Hex,
        /// Core `SigningPackage` encoding.
        package: Hex,
        /// The client's signed request, byte for byte: the signer checks it
        /// asks for this message with this key before it releases a share.
        request: ClientRequest,
    },
    /// A signature share.
    SignatureShare {
        /// Core `SignatureShare` encoding.
        share: Hex,
    },

    /// Coordinator → a member of session `session`'s key: your decryption
    /// share of the session's committed aggregate, as the client's request
    /// asks (the member checks it, and decrypts its own replica's
    /// aggregate); reply [`PeerMessage::HeShare`].
    HeDecrypt {
        /// Session name.
        session: String,
        /// The key generation to decrypt with.
        epoch: u64,
        /// The coordinator's run id (one attempt of one operation).
        run: Hex32,
        /// The client's signed request, byte for byte.
        request: ClientRequest,
    },
    /// A member's decryption share (core `he::DecryptionShare` encoding).
    HeShare {
        /// The share with its proof.
        share: Hex,
    },

    /// A member that lacks a run of a session's inputs (it installed a
    /// snapshot) asks another for them; reply [`PeerMessage::HeInputs`].
    HeFetch {
        /// Session name.
        session: String,
        /// The first input wanted.
        from: u64,
        /// At most this many (the answer may hold fewer).
        limit: u32,
    },
    /// Inputs from `from` on, in order, as far as the member holds them
    /// (the asker checks them against the chain it has).
    HeInputs {
        /// The inputs.
        inputs: Vec<crate::he::HeStoredInput>,
    },

    /// Coordinator → each member of a new signing tree: commit to your
    /// contribution to its identifier, as the client's request asks; reply
    /// [`PeerMessage::StCommitted`].
    StCommit {
        /// Tree name.
        tree: String,
        /// The key generation run.
        run: Hex32,
        /// The members, in order.
        members: Vec<NodeId>,
        /// The threshold.
        threshold: u16,
        /// Subtrees.
        subtrees: u32,
        /// The admin's signed request, byte for byte.
        request: ClientRequest,
    },
    /// A member's commitment.
    StCommitted {
        /// `keyquorum_core::lms::federation::commitment`.
        commitment: Hex32,
    },
    /// Coordinator → each member: every member's commitment (member order)
    /// is fixed; reveal yours. Reply [`PeerMessage::StRevealed`].
    StReveal {
        /// The run.
        run: Hex32,
        /// Commitments, in member order.
        commitments: Vec<Hex32>,
    },
    /// A member's contribution.
    StRevealed {
        /// 32 bytes.
        contribution: Hex32,
    },
    /// Coordinator → each member: every contribution (member order); build
    /// your subtrees and deal their shares. Reply `Ack` (the build runs on;
    /// [`PeerMessage::StProgress`] reports it).
    StBuild {
        /// The run.
        run: Hex32,
        /// Contributions, in member order.
        contributions: Vec<Hex32>,
    },
    /// Builder → each member: its shares of leaves `first ..` of subtree
    /// `subtree` and those leaves' one-time public key hashes. Reply `Ack`.
    StDeal {
        /// The run.
        run: Hex32,
        /// The subtree.
        subtree: u32,
        /// The first leaf (global index).
        first: u32,
        /// The leaves' `K`, 32 bytes each, in order.
        keys: Hex,
        /// The member's shares, 32 bytes each, sealed to its HPKE key.
        shares: Sealed,
    },
    /// Coordinator → a member: how far is the run? Reply
    /// [`PeerMessage::StProgressed`].
    StProgress {
        /// The run.
        run: Hex32,
    },
    /// A member's progress in a run.
    StProgressed {
        /// Roots of the subtrees it built and dealt in full, by subtree.
        built: Vec<(u32, Hex32)>,
        /// Subtrees whose every leaf's share and key it holds and checked.
        held: u32,
        /// Chunks of leaves it stored so far, over every subtree (a
        /// progress report; absent from older members).
        #[serde(default)]
        chunks: u32,
        /// Why the run failed here, if it did.
        failed: Option<String>,
    },
    /// Coordinator → each member: endorse this tree. Reply
    /// [`PeerMessage::StEndorsed`].
    StEndorse {
        /// The tree as it will be committed.
        record: Box<crate::seedtree::SeedtreeRecord>,
    },
    /// A member's signature over `seedtree::endorse_statement`.
    StEndorsed {
        /// Ed25519 signature by its identity key.
        signature: Hex,
    },
    /// Coordinator → a member: lock leaf `leaf` of `tree` to the client's
    /// request (never to another); reply [`PeerMessage::StLocked`].
    StLock {
        /// Tree name.
        tree: String,
        /// The leaf.
        leaf: u32,
        /// The client's signed sign request, byte for byte.
        request: ClientRequest,
    },
    /// A member's signature over `seedtree::lock_statement`.
    StLocked {
        /// Ed25519 signature by its identity key.
        signature: Hex,
    },
    /// Coordinator → a member: release your share of leaf `leaf`, sealed
    /// to the client's reply key, given a lock quorum's signatures; reply
    /// [`PeerMessage::StReleased`].
    StRelease {
        /// Tree name.
        tree: String,
        /// The leaf.
        leaf: u32,
        /// The client's signed sign request, byte for byte.
        request: ClientRequest,
        /// At least a lock quorum of members' lock signatures.
        locks: Vec<crate::control::Endorsement>,
    },
    /// A member's sealed share with the leaf's public data.
    StReleased {
        /// The share, sealed to the client.
        share: crate::seedtree::SealedLeafShare,
        /// Node `2^h + q`.
        leaf_node: Hex32,
        /// The leaf's authentication path.
        path: Vec<Hex32>,
    },
    /// Coordinator → each dealer and each new holder of a tree reshare:
    /// check the admin's request and the plan, and take part. Reply `Ack`.
    StRedealOpen {
        /// The reshare.
        plan: Box<crate::seedtree::TreeResharePlan>,
        /// The admin's signed request, byte for byte.
        request: ClientRequest,
    },
    /// Coordinator → a dealer: re-deal your shares of the chunk of leaves
    /// starting at `first` to every new holder. Reply `Ack` once each took
    /// it.
    StRedeal {
        /// The plan's id.
        plan: Hex32,
        /// The chunk's first leaf.
        first: u32,
    },
    /// Dealer → a new holder: its parts of the chunk starting at `first`.
    /// Reply `Ack`.
    StRedealPart {
        /// The plan's id.
        plan: Hex32,
        /// The chunk's first leaf.
        first: u32,
        /// The holder's parts of the re-dealt leaves of the chunk (those at
        /// or past the plan's cut), 32 bytes each, sealed to its HPKE key.
        shares: Sealed,
        /// The chunk's leaf nodes (node `2^h + q`, 32 bytes each), public:
        /// from the first dealer to a holder new to the tree, else empty.
        nodes: Hex,
    },
    /// Coordinator → a new holder: endorse the reshare. Reply
    /// [`PeerMessage::StEndorsed`] over `seedtree::reshare_statement`.
    StRedealEndorse {
        /// The plan's id.
        plan: Hex32,
    },
    /// Coordinator → each old and new holder, once the reshare is
    /// committed: erase every share of the tree not of the sharing in force.
    /// Reply `Ack`.
    StRedealDone {
        /// Tree name.
        tree: String,
        /// The sharing now in force.
        epoch: u32,
    },

    /// Coordinator → a member of OPRF key `key` (generation `epoch`):
    /// round one of a joint evaluation of the blinded element in the
    /// client's request (the member checks it); reply
    /// [`PeerMessage::OprfCommitted`].
    OprfCommit {
        /// The key's registry name (`oprf.NAME`).
        key: String,
        /// The key generation.
        epoch: u64,
        /// The coordinator's run (one attempt of one evaluation).
        run: Hex32,
        /// The client's signed evaluate request, byte for byte.
        request: ClientRequest,
    },
    /// A member's evaluation share and nonce commitments (core
    /// `oprf::Commitment` encoding).
    OprfCommitted {
        /// The commitment.
        commitment: Hex,
    },
    /// Coordinator → the same member: round two, the signer set's
    /// commitments (core `oprf::Package` encoding); reply
    /// [`PeerMessage::OprfResponded`].
    OprfRespond {
        /// The run of round one.
        run: Hex32,
        /// The package.
        package: Hex,
    },
    /// A member's answer (core `oprf::Response` encoding).
    OprfResponded {
        /// The response.
        response: Hex,
    },
    /// Coordinator → a signer of a committed reset request: sign it from
    /// the log, seal the share to the account's device and deliver it over
    /// this signer's channel; reply [`PeerMessage::ResetDelivered`].
    ResetSign {
        /// The account.
        account: String,
        /// The request id (16 bytes).
        request_id: Hex,
    },
    /// The signer delivered its fragment over `channel`.
    ResetDelivered {
        /// The channel.
        channel: String,
    },
    /// Coordinator → a guardian of a PIN-protected secret: release your
    /// share for the client's signed unlock request (the guardian checks
    /// it and its tag); reply [`PeerMessage::PinShare`].
    PinUnlock {
        /// The client's signed unlock request, byte for byte.
        request: ClientRequest,
    },
    /// The guardian's share, sealed to the request's recipient key.
    PinShare {
        /// The sealed share.
        share: crate::recovery::SealedShare,
    },

    /// Sender's entry node → coordinator: check this message and confirm
    /// it; reply [`PeerMessage::MsgConfirmed`].
    MsgCoordinate {
        /// Sending endpoint.
        from: String,
        /// Canonical header bytes.
        header: Hex,
        /// Sender's signature.
        signature: Hex,
        /// Sealed payload (its hash is signed).
        payload: Hex,
        /// This coordinator's shares, sealed to its HPKE key.
        bundle: SealedBox,
    },
    /// The coordinator's signed confirmation.
    MsgConfirmed {
        /// The confirmation.
        confirmation: MsgConfirmation,
    },

    /// Several messages from one sender to one recipient in one envelope
    /// (apply rules 17: sent only to a member that announced them): each
    /// is handled as if it had come alone, concurrently, and answered in
    /// [`PeerMessage::Batched`] in the same order. Only messages for which
    /// [`PeerMessage::batchable`] holds, 1 to [`MAX_PEER_BATCH`] of them;
    /// any other batch is refused whole, before any item is handled.
    Batch {
        /// The messages.
        items: Vec<PeerMessage>,
    },
    /// The answers to a [`PeerMessage::Batch`], one per item, in order (a
    /// refused item's is [`PeerMessage::Error`]).
    Batched {
        /// The answers.
        replies: Vec<PeerMessage>,
    },

    /// Any failure.
    Error {
        /// Stable code.
        code: String,
        /// Explanation.
        message: String,
        /// Nodes blamed, if any.
        culprits: Vec<NodeId>,
    },
}

impl PeerMessage {
    /// Whether this message may travel in a [`PeerMessage::Batch`]: the
    /// per-request messages of the hot paths, each complete in itself and
    /// authorized on its own (a signer's share, a tree's leaf lock and
    /// release, an OPRF evaluation's two steps). Never the cluster's own
    /// messages, a batch, or a message whose reply envelope the caller
    /// relays to others.
    pub fn batchable(&self) -> bool {
        matches!(
            self,
            PeerMessage::SignShare { .. }
                | PeerMessage::StLock { .. }
                | PeerMessage::StRelease { .. }
                | PeerMessage::OprfCommit { .. }
                | PeerMessage::OprfRespond { .. }
        )
    }
}
