//! Credential guardians' accounts (DESIGN.md §3.4; issue #20 item 1): an
//! account's guardians (its shard map entry), its reset key and the
//! channels its reset fragments travel over; the API's bodies and the
//! record in the Raft log.
//!
//! Bytes are lowercase hex. The guardians, the channel each takes and the
//! reset message's layout are computed as in `keyquorum_core::oprf::reset`.

use serde::{Deserialize, Serialize};

use crate::{Hex, Hex32, NodeId};

/// Prefix of an account's reset key in the key registry: account `a`'s
/// reset key is the Ed25519 key `reset.a`; it signs only reset tokens.
pub const KEY_PREFIX: &str = "reset.";

/// The registry name of `account`'s reset key.
pub fn key_name(account: &str) -> String {
    format!("{KEY_PREFIX}{account}")
}

/// Whether registry key `name` is an account's reset key (it signs reset
/// tokens only: never through `/v1/keys`, never exported or reshared
/// there).
pub fn is_reset_key(name: &str) -> bool {
    name.starts_with(KEY_PREFIX)
}

/// Prefix of an account's PIN key in the key registry: account `a`'s
/// threshold OPRF key for PIN-protected recovery is the ristretto255 key
/// `pin.a`; it evaluates only counted guesses (and one registration).
pub const PIN_PREFIX: &str = "pin.";

/// The registry name of `account`'s first PIN key.
pub fn pin_key_name(account: &str) -> String {
    format!("{PIN_PREFIX}{account}")
}

/// Separates an account from its PIN key's generation in the key's name
/// (`pin.ACCOUNT~G`): not a character of account or key names, so no
/// account's first key can be mistaken for another's later one.
pub const GENERATION_SEPARATOR: char = '~';

/// The registry name of `account`'s PIN key of `generation` (apply rules
/// 16): `pin.ACCOUNT` for the first, `pin.ACCOUNT~G` for each made by
/// registering the secret again.
pub fn pin_key_name_at(account: &str, generation: u32) -> String {
    if generation <= 1 {
        pin_key_name(account)
    } else {
        format!("{PIN_PREFIX}{account}{GENERATION_SEPARATOR}{generation}")
    }
}

/// The account and generation a PIN key's name stands for (`None`: not a
/// PIN key's name, or a generation that is not a number above 1).
pub fn pin_key_of(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_prefix(PIN_PREFIX)?;
    match rest.split_once(GENERATION_SEPARATOR) {
        None => Some((rest, 1)),
        Some((account, g)) => {
            let n: u32 = g.parse().ok()?;
            (n >= 2 && n.to_string() == g).then_some((account, n))
        }
    }
}

fn first_generation() -> u32 {
    1
}

fn is_first_generation(g: &u32) -> bool {
    *g == 1
}

/// Whether registry key `name` is an account's PIN key (never through
/// `/v1/keys` or `/v1/oprf`, never exported or reshared there).
pub fn is_pin_key(name: &str) -> bool {
    name.starts_with(PIN_PREFIX)
}

/// Most channels an account lists.
pub const MAX_CHANNELS: usize = 16;

/// Longest channel, in bytes.
pub const MAX_CHANNEL_LEN: usize = 512;

/// Whether `channel` is `email:ADDR`, `webhook:http(s)://...` or `app`.
pub fn check_channel(channel: &str) -> Result<(), String> {
    if channel.len() > MAX_CHANNEL_LEN || channel.chars().any(char::is_control) {
        return Err(format!(
            "a channel is at most {MAX_CHANNEL_LEN} bytes with no control characters"
        ));
    }
    if channel == "app" {
        return Ok(());
    }
    if let Some(addr) = channel.strip_prefix("email:") {
        let ok = addr.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && !d.is_empty() && !addr.contains([' ', '<', '>', ',', ';'])
        });
        return if ok {
            Ok(())
        } else {
            Err(format!("{channel}: not an email address"))
        };
    }
    if let Some(url) = channel.strip_prefix("webhook:") {
        let ok = (url.starts_with("https://") || url.starts_with("http://"))
            && !url.contains(char::is_whitespace);
        return if ok {
            Ok(())
        } else {
            Err(format!("{channel}: a webhook is an http(s) URL"))
        };
    }
    Err(format!(
        "{channel}: a channel is email:ADDR, webhook:URL or app"
    ))
}

/// `POST /v1/recovery/accounts` (a client with the `recovery`
/// permission, or an admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateAccountRequest {
    /// The account: 1-58 characters from `[A-Za-z0-9._-]`.
    pub account: String,
    /// How many guardians (default: every voter, at most 5).
    #[serde(default)]
    pub guardians: Option<u16>,
    /// Guardians that must sign a reset together (default: the cluster's
    /// default for that many guardians).
    #[serde(default)]
    pub threshold: Option<u16>,
    /// Where fragments go: `email:ADDR`, `webhook:URL`, `app`; guardians
    /// ordered by id take them in this order, cycling.
    pub channels: Vec<String>,
    /// The enrolled device's X25519 public key (fragments are sealed to
    /// it).
    pub device_key: Hex32,
    /// Software attestation (apply rules 11): the executables' SHA-256
    /// measurements the account's guardians must have stated at their
    /// latest boot (`keyquorum status --json`), at enrolment, rotation,
    /// each reset's signers and the PIN key; a guardian on another build
    /// also refuses to sign or evaluate for the account. None: any build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Vec<Hex32>>,
}

/// An account in the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountRecord {
    /// The account.
    pub account: String,
    /// Its guardians, by id (its shard map entry).
    pub guardians: Vec<NodeId>,
    /// Guardians that sign a reset together.
    pub threshold: u16,
    /// Its channels, in the order given.
    pub channels: Vec<String>,
    /// The device's X25519 public key.
    pub device_key: Hex32,
    /// The client that enrolled it.
    pub created_by: String,
    /// The builds its guardians must run (software attestation), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Vec<Hex32>>,
    /// The shard map's version when this entry was last written (the map
    /// counts every enrolment and rotation; set on apply, 0 in a command).
    pub version: u64,
}

/// `GET /v1/recovery/accounts/{account}` and the create's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountInfo {
    /// The account.
    pub account: String,
    /// Its guardians, with the channel each sends over.
    pub guardians: Vec<GuardianInfo>,
    /// Guardians that sign a reset together.
    pub threshold: u16,
    /// The reset key's Ed25519 public key (32 bytes): tokens verify under
    /// it.
    pub reset_public_key: Hex,
    /// The device's X25519 public key.
    pub device_key: Hex32,
    /// The shard map's version of this entry.
    pub version: u64,
    /// The builds its guardians must run (software attestation), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Vec<Hex32>>,
    /// The reset key's generation.
    pub epoch: u64,
}

/// One guardian of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GuardianInfo {
    /// The node.
    pub node: NodeId,
    /// Its channel.
    pub channel: String,
}

/// `GET /v1/recovery/accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountList {
    /// Every account, by name.
    pub accounts: Vec<AccountInfo>,
    /// The shard map's version.
    pub version: u64,
}

/// `POST /v1/recovery/accounts/{account}/rotate`: move the account to the
/// guardians rendezvous hashing picks over the voters now, by resharing
/// its reset key (the reset public key does not change).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RotateAccountRequest {
    /// Number of guardians (default: as many as now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardians: Option<u16>,
    /// Guardians that sign a token together (default: as now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u16>,
}

/// Default lifetime of a reset request and its token (seconds).
pub const DEFAULT_RESET_TTL_S: u32 = 900;

/// Shortest lifetime a reset request may ask for (seconds).
pub const MIN_RESET_TTL_S: u32 = 60;

/// Longest lifetime a reset request may ask for (seconds).
pub const MAX_RESET_TTL_S: u32 = 3600;

/// `POST /v1/recovery/accounts/{account}/resets`: open a reset request
/// (any live client; rate-limited per account and per client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The hash of the new credential (what the token authorizes).
    pub credential_hash: Hex32,
    /// Lifetime in seconds from the request's signature time (60 to 3600,
    /// default 900): the token's expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u32>,
}

/// One signer's round-one commitment in a reset request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResetCommitment {
    /// The signer.
    pub node: NodeId,
    /// The id of the signer's stored nonce (16 bytes).
    pub nonce: Hex,
    /// The core `SigningCommitment` encoding (Ed25519).
    pub commitment: Hex,
}

/// A fragment a signer left in the account's app inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InboxItem {
    /// The reset request (16 bytes, hex).
    pub request_id: Hex,
    /// The signer.
    pub guardian: NodeId,
    /// The fragment (`KQF1...`).
    pub fragment: String,
}

/// A reset request as committed: the message its signers sign is fixed by
/// it (`keyquorum_core::oprf::reset::ResetMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResetRecord {
    /// The account.
    pub account: String,
    /// The request id (16 bytes): the first 16 bytes of SHA-256 over the
    /// client's signed request's key id and nonce.
    pub request_id: Hex,
    /// The new credential's hash.
    pub credential_hash: Hex32,
    /// Expiry (Unix seconds).
    pub expires: u64,
    /// The reset key's generation the signers sign with.
    pub epoch: u64,
    /// The FROST signer set, ascending, with each one's commitment.
    pub commitments: Vec<ResetCommitment>,
    /// The client that asked.
    pub requested_by: String,
    /// When it was asked (the request's signature time, ms).
    pub created_ms: u64,
    /// When it was committed (the log clock, ms; set on apply, 0 in the
    /// command): the rate limits count from it.
    #[serde(default)]
    pub opened_ms: u64,
    /// Fragments of signers whose channel is `app` (the account's inbox).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbox: Vec<InboxItem>,
}

/// Where one signer's fragment went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FragmentDelivery {
    /// The signer.
    pub guardian: NodeId,
    /// Its channel (`email:...`, `webhook:...` or `app`).
    pub channel: String,
    /// Whether the signer reported it delivered.
    pub delivered: bool,
    /// Why not, if not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer to a reset request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResetResponse {
    /// The account.
    pub account: String,
    /// The request id (16 bytes, hex).
    pub request_id: Hex,
    /// Expiry (Unix seconds).
    pub expires: u64,
    /// One per signer.
    pub fragments: Vec<FragmentDelivery>,
}

/// `GET /v1/recovery/accounts/{account}/resets/{id}`: what the client
/// needs to assemble the token from its fragments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResetPackage {
    /// The account.
    pub account: String,
    /// The request id (16 bytes).
    pub request_id: Hex,
    /// The signed bytes.
    pub message: Hex,
    /// Expiry (Unix seconds).
    pub expires: u64,
    /// The signers' commitments.
    pub commitments: Vec<ResetCommitment>,
    /// The signers and their channels.
    pub signers: Vec<GuardianInfo>,
    /// The reset key's core `GroupKey` encoding (public key and every
    /// guardian's verifying share) at the request's generation.
    pub group_key: Hex,
    /// The reset public key (32 bytes): pin it, and check the token
    /// against it.
    pub reset_public_key: Hex,
}

/// `GET /v1/recovery/accounts/{account}/inbox`: the `app` channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountInbox {
    /// Fragments of live requests, oldest request first.
    pub fragments: Vec<InboxItem>,
}

/// Argon2id's cost for a PIN (RFC 9106): memory in KiB, passes, lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StretchParams {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

/// `POST /v1/recovery/accounts/{account}/secret/begin`: make the
/// account's PIN key (if it has none) and evaluate it once on the blinded,
/// stretched PIN (the account's enroller or an admin; only while no
/// secret is registered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretBeginRequest {
    /// The blinded element (RFC 9497 `Blind`), 32 bytes.
    pub blinded_element: Hex,
    /// Registering again (apply rules 16): the registration id of the
    /// record this one replaces (live or destroyed), as `GET .../secret`
    /// shows it. A begin for an account with a secret is refused without
    /// it, and with any other id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<Hex>,
}

/// A guardian of a PIN key and the HPKE key its share is sealed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PinGuardian {
    /// The node.
    pub node: NodeId,
    /// Its X25519 HPKE public key.
    pub hpke: Hex32,
}

/// The answer to a begin: the evaluation and what registering needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretBeginResponse {
    /// `k·M`, 32 bytes.
    pub evaluated_element: Hex,
    /// The RFC 9497 proof under `public_key`, 64 bytes.
    pub proof: Hex,
    /// The PIN key's public key (32 bytes).
    pub public_key: Hex,
    /// The PIN key's generation.
    pub epoch: u64,
    /// Guardians that answer a guess together.
    pub threshold: u16,
    /// The PIN key's guardians, by id.
    pub guardians: Vec<PinGuardian>,
    /// The key generation's run (for [`crate::control::key_statement`]).
    pub session: Hex32,
    /// The group key encoding (threshold, members, public shares).
    pub group_key: Hex,
    /// The guardians' endorsements of the key: Ed25519 signatures by their
    /// identity keys over its `key_statement`. A client that holds the
    /// members' identity keys checks `t` of them before it trusts
    /// `public_key`.
    pub endorsements: Vec<crate::control::Endorsement>,
    /// The PIN key's generation among the account's PIN keys (its name is
    /// [`pin_key_name_at`]; 1 unless the secret was registered again).
    #[serde(
        default = "first_generation",
        skip_serializing_if = "is_first_generation"
    )]
    pub generation: u32,
}

/// A guardian's unlock proof: an Ed25519 signature by the unlock key the
/// PIN gives for it, over this guess and recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PinProof {
    /// The guardian.
    pub node: NodeId,
    /// The signature, 64 bytes.
    pub signature: Hex,
}

/// A value per guardian (its unlock public key, the commitment), 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PinTag {
    /// The guardian.
    pub node: NodeId,
    /// The value.
    pub value: Hex32,
}

/// A share sealed by HPKE (RFC 9180 base mode) for one guardian or to the
/// client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SealedShare {
    /// The guardian.
    pub node: NodeId,
    /// The encapsulated key.
    pub enc: Hex32,
    /// The ciphertext.
    pub sealed: Hex,
}

/// `POST /v1/recovery/accounts/{account}/secret`: register the secret
/// (the client that began, after the begin's evaluation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterSecretRequest {
    /// A fresh registration id, 16 bytes.
    pub version: Hex,
    /// The PIN key's generation it was evaluated under.
    pub epoch: u64,
    /// Guesses allowed between successes (1-255).
    pub guesses: u16,
    /// Argon2id's cost.
    pub stretch: StretchParams,
    /// Argon2id's salt input, 16 bytes.
    pub salt: Hex,
    /// Each guardian's unlock public key.
    pub commitments: Vec<PinTag>,
    /// The secret, encrypted (at most 128 bytes + 16).
    pub ciphertext: Hex,
    /// Each guardian's share, sealed to its node key.
    pub shares: Vec<SealedShare>,
    /// The PIN key generation the begin answered with.
    #[serde(
        default = "first_generation",
        skip_serializing_if = "is_first_generation"
    )]
    pub generation: u32,
    /// Registering again: the registration id of the record this one
    /// replaces (as in the begin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<Hex>,
}

/// The last guess of a registered secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GuessRecord {
    /// The guess id: the client request's id (16 bytes).
    pub id: Hex,
    /// The client that guessed.
    pub client: String,
    /// SHA-256 of the blinded element evaluated for it.
    pub blinded: Hex32,
}

/// A PIN-protected secret in the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretRecord {
    /// The account.
    pub account: String,
    /// The registration id (16 bytes).
    pub version: Hex,
    /// The PIN key's generation.
    pub epoch: u64,
    /// Guesses allowed between successes.
    pub guesses: u16,
    /// Guesses committed since the last success.
    pub used: u16,
    /// Argon2id's cost.
    pub stretch: StretchParams,
    /// Argon2id's salt input.
    pub salt: Hex,
    /// Each guardian's unlock public key.
    pub commitments: Vec<PinTag>,
    /// The encrypted secret.
    pub ciphertext: Hex,
    /// Each guardian's sealed share.
    pub shares: Vec<SealedShare>,
    /// The client that registered it.
    pub registered_by: String,
    /// The last guess.
    pub last_guess: Option<GuessRecord>,
    /// Guardians that released their share for the last guess.
    pub unlocked_by: Vec<NodeId>,
    /// Destroyed after its guesses ran out (its shares and commitments are
    /// gone).
    pub destroyed: bool,
    /// The generation of the PIN key it was registered under
    /// ([`pin_key_name_at`]).
    #[serde(
        default = "first_generation",
        skip_serializing_if = "is_first_generation"
    )]
    pub generation: u32,
}

/// `GET /v1/recovery/accounts/{account}/secret`: what recovering needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretInfo {
    /// The account.
    pub account: String,
    /// The registration id.
    pub version: Hex,
    /// The PIN key's public key.
    pub public_key: Hex,
    /// The PIN key's generation.
    pub epoch: u64,
    /// Guardians that answer a guess together.
    pub threshold: u16,
    /// The guardians.
    pub guardians: Vec<NodeId>,
    /// Guesses allowed between successes.
    pub guesses: u16,
    /// Guesses left.
    pub remaining: u16,
    /// Argon2id's cost.
    pub stretch: StretchParams,
    /// Argon2id's salt input.
    pub salt: Hex,
    /// Each guardian's unlock public key.
    pub commitments: Vec<PinTag>,
    /// The encrypted secret.
    pub ciphertext: Hex,
    /// Destroyed after its guesses ran out.
    pub destroyed: bool,
    /// The PIN key's generation among the account's PIN keys (1 unless the
    /// secret was registered again).
    #[serde(default = "first_generation")]
    pub generation: u32,
}

/// `POST /v1/recovery/accounts/{account}/secret/guess` (a client with the
/// `recovery` permission, or an admin): counted in the log before any
/// guardian answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GuessRequest {
    /// The registration id.
    pub version: Hex,
    /// The blinded element, 32 bytes.
    pub blinded_element: Hex,
}

/// The answer to a guess.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GuessResponse {
    /// The guess id (16 bytes).
    pub guess_id: Hex,
    /// `k·M`.
    pub evaluated_element: Hex,
    /// The RFC 9497 proof under the PIN key's public key.
    pub proof: Hex,
    /// Guesses left after this one (if it is wrong).
    pub remaining: u16,
}

/// `POST /v1/recovery/accounts/{account}/secret/unlock` (the client that
/// made the guess): each guardian's unlock proof; shares come back sealed
/// to `recipient`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UnlockRequest {
    /// The registration id.
    pub version: Hex,
    /// The guess id.
    pub guess_id: Hex,
    /// Each guardian's unlock proof for this guess and recipient.
    pub proofs: Vec<PinProof>,
    /// A one-time X25519 public key.
    pub recipient: Hex32,
}

/// The released shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnlockResponse {
    /// The shares of every guardian that released one (at least `t`),
    /// each sealed to the recipient key.
    pub shares: Vec<SealedShare>,
}

/// The guardians' commands in the Raft log (apply rules 9 on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RecoveryCommand {
    /// Enrol an account with its reset key's first generation, endorsed
    /// by its guardians as any key's.
    AccountCreate {
        /// The account.
        account: Box<AccountRecord>,
        /// Its reset key (`reset.ACCOUNT`, Ed25519, epoch 1).
        key: Box<crate::control::KeyRecord>,
        /// The guardians' endorsements of the key.
        endorsements: Vec<crate::control::Endorsement>,
    },
    /// Move an account to new guardians with its reset key's next
    /// generation (same public key), endorsed by the new guardians (apply
    /// rules 10).
    AccountRotate {
        /// The account as it will be (version set on apply).
        account: Box<AccountRecord>,
        /// The reset key's next generation.
        key: Box<crate::control::KeyRecord>,
        /// The new guardians' endorsements of it.
        endorsements: Vec<crate::control::Endorsement>,
    },
    /// Open a reset request (a client's request; apply checks the signer
    /// set, the commitments, the expiry and the rate limits).
    ResetOpen {
        /// The request.
        reset: Box<ResetRecord>,
    },
    /// A signer's statement: its fragment for the account's app inbox.
    ResetInbox {
        /// The account.
        account: String,
        /// The item (its `guardian` is the stating node).
        item: InboxItem,
    },
    /// Make an account's PIN key (a begin; apply rules 11).
    PinKey {
        /// The account.
        account: String,
        /// The key (`pin.ACCOUNT`, ristretto255, epoch 1).
        key: Box<crate::control::KeyRecord>,
        /// The guardians' endorsements of it.
        endorsements: Vec<crate::control::Endorsement>,
    },
    /// Register a PIN-protected secret (apply rules 11).
    SecretRegister {
        /// The record (`used`, `last_guess`, `unlocked_by` empty).
        record: Box<SecretRecord>,
    },
    /// Count a guess (apply rules 11); past the limit the record is
    /// destroyed instead.
    PinGuess {
        /// The account.
        account: String,
        /// The guess.
        guess: GuessRecord,
    },
    /// A guardian's statement: it released its share for the last guess
    /// (the right tag); once `t` have, the count starts again.
    PinUnlocked {
        /// The account.
        account: String,
        /// The guess id.
        guess_id: Hex,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_checked() {
        for ok in [
            "app",
            "email:a@b.example",
            "webhook:https://h.example/x",
            "webhook:http://127.0.0.1:9/",
        ] {
            assert!(check_channel(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "sms:123",
            "email:",
            "email:nobody",
            "email:a@b, c@d",
            "webhook:ftp://x",
            "webhook:https://a b",
            "app\n",
        ] {
            assert!(check_channel(bad).is_err(), "{bad}");
        }
        assert!(check_channel(&format!("email:{}@x", "a".repeat(600))).is_err());
    }

    #[test]
    fn pin_key_names_carry_their_generation() {
        assert_eq!(pin_key_name_at("a.b", 1), "pin.a.b");
        assert_eq!(pin_key_name_at("a.b", 0), "pin.a.b");
        assert_eq!(pin_key_name_at("a.b", 7), "pin.a.b~7");
        for g in [1, 2, 9, 10, u32::MAX] {
            assert_eq!(pin_key_of(&pin_key_name_at("x-1", g)), Some(("x-1", g)));
        }
        for bad in [
            "oprf.x", "pin.x~1", "pin.x~0", "pin.x~02", "pin.x~+3", "pin.x~", "pin.x~a",
        ] {
            assert_eq!(pin_key_of(bad), None, "{bad}");
        }
        // Generations are not part of SecretRecord's encoding until used,
        // so a record from an older build reads back as generation 1.
        let r = SecretBeginRequest {
            blinded_element: Hex(vec![1]),
            replace: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"blinded_element":"01"}"#
        );
    }
}
