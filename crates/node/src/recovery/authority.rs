//! What a client's signed request must ask for before an account command
//! applies (DESIGN.md §4 item 3), on every replica alike.
//!
//! | command | request | who |
//! |---|---|---|
//! | `account_create` | `POST /v1/recovery/accounts`: the account, its guardians (rendezvous over the voters), threshold, channels, device key and allowed measurements as asked (measurements from rules 11, every guardian having stated one at its latest boot); its reset key `reset.ACCOUNT`, Ed25519, epoch 1, on exactly those guardians, endorsed by ≥ t of them | a client with the `recovery` permission, or an admin |
//! | `account_rotate` | `POST /v1/recovery/accounts/{account}/rotate`: the account unchanged but for its guardians (rendezvous over the voters now) and threshold as asked (default: as now; never fewer guardians or a lower threshold); its reset key's next generation, same public key, on exactly those guardians, endorsed by ≥ t of them | an admin, or the client with the `recovery` permission that enrolled the account |
//! | `reset_open` | `POST /v1/recovery/accounts/{account}/resets`: that account, the credential hash asked, expiry = the request's signature time + its TTL (1-3600 s, default 900), the request id derived from the request's key id and nonce, the reset key's current generation, a signer set that passes `check_signers` (t guardians covering the account's distinct channels up to t), one well-formed commitment per signer; the rate limits are apply's ([`super::state`]) | any live client (a reset is open: the user has lost the credential) |
//! | `pin_key` | `POST /v1/recovery/accounts/{account}/secret/begin`: the account's PIN key `pin.ACCOUNT`, ristretto255, epoch 1, on exactly its guardians and threshold (`t > n/2`), endorsed by ≥ t of them; the account has no secret (apply rules 11) | an admin, or the client with the `recovery` permission that enrolled the account |
//! | `secret_register` | `POST /v1/recovery/accounts/{account}/secret`: the record exactly as the body (version, generation, guesses 1-255, Argon2id cost above the floor, salt, one commitment and one 48-byte sealed share per guardian in id order, a ciphertext of at most 144 bytes), by this client, no guesses | as `pin_key` |
//! | `pin_guess` | `POST /v1/recovery/accounts/{account}/secret/guess`: the registration asked for, the guess id derived from the request's key id and nonce, this client, the SHA-256 of the blinded element in the body | a client with the `recovery` permission, or an admin |
//!
//! A node may state `reset_inbox` on its own (`may_state`): its fragment
//! for a live reset it signs in, when its channel for the account is
//! `app`, once; and `pin_unlocked`: as a guardian of the account's PIN key,
//! for the record's last guess.

use keyquorum_core::codec::Decode;
use keyquorum_core::httpsig;
use keyquorum_core::oprf::reset;
use keyquorum_core::sign::SigningCommitment;
use keyquorum_core::Ed25519;
use keyquorum_wire::api::SuiteName;
use keyquorum_wire::control::Grant;
use keyquorum_wire::recovery::{
    check_channel, key_name, CreateAccountRequest, InboxItem, RecoveryCommand, ResetRecord,
    ResetRequest, RotateAccountRequest, DEFAULT_RESET_TTL_S, MAX_CHANNELS, MAX_RESET_TTL_S,
    MIN_RESET_TTL_S,
};
use sha2::Digest as _;

/// How long a reset must still live, by the log clock, when it opens.
const MIN_LIVE_MS: u64 = 30_000;
use keyquorum_wire::NodeId;

use super::state::{ACCOUNT_RULES, AGAIN_RULES, PIN_RULES, RESET_RULES};
use crate::cluster::machine::request::{body, distinct, endorsed, need};
use crate::cluster::Registry;

/// Whether key `name` is an account's reset key under the log's apply
/// rules (from rules 9), which the generic key paths do not touch.
/// From rules 11 the same holds for accounts' PIN keys (`pin.ACCOUNT`).
pub(crate) fn reset_key(r: &Registry, name: &str) -> bool {
    (r.rules >= ACCOUNT_RULES && keyquorum_wire::recovery::is_reset_key(name))
        || (r.rules >= PIN_RULES && keyquorum_wire::recovery::is_pin_key(name))
}

/// Whether a client may enrol accounts: the `recovery` permission or an
/// admin.
pub(crate) fn may_enrol(grant: &Grant) -> bool {
    grant.recovery || grant.admin
}

/// Default number of guardians: every voter, at most this many.
pub const DEFAULT_GUARDIANS: usize = 5;

/// The guardians and threshold a request asks for, from the replicated
/// voters not being drained (never the entry node's choice).
pub(crate) fn shape(r: &Registry, b: &CreateAccountRequest) -> Result<(Vec<NodeId>, u16), String> {
    reset::check_account(&b.account).map_err(|e| e.to_string())?;
    need(
        !b.channels.is_empty() && b.channels.len() <= MAX_CHANNELS,
        "1 to 16 channels",
    )?;
    for c in &b.channels {
        check_channel(c)?;
    }
    // A node the operators drain guards no account from then on.
    let candidates = r.candidates();
    let voters: Vec<u64> = candidates.iter().map(|v| u64::from(*v)).collect();
    let n = b
        .guardians
        .map_or(voters.len().min(DEFAULT_GUARDIANS), usize::from);
    let chosen = reset::guardians(&b.account, &voters, n).map_err(|e| e.to_string())?;
    let guardians: Vec<NodeId> = candidates
        .iter()
        .copied()
        .filter(|v| chosen.contains(&u64::from(*v)))
        .collect();
    let threshold = b
        .threshold
        .unwrap_or_else(|| r.default_threshold(guardians.len()));
    need(
        threshold >= 2 && usize::from(threshold) <= guardians.len(),
        "2 <= threshold <= guardians",
    )?;
    // Every reset's t signers cover every distinct channel: more distinct
    // channels than t would let a reset skip some of them.
    if let Some(allowed) = &b.measurements {
        need(
            r.rules >= PIN_RULES,
            "guardians' measurements need apply rules 11",
        )?;
        need(
            !allowed.is_empty() && allowed.len() <= MAX_MEASUREMENTS,
            "1 to 16 allowed measurements",
        )?;
        attested(r, allowed, &guardians)?;
    }
    let mut distinct: Vec<&String> = b.channels.iter().collect();
    distinct.sort_unstable();
    distinct.dedup();
    need(
        distinct.len() == b.channels.len() && distinct.len() <= usize::from(threshold),
        "distinct channels, at most the threshold (every reset needs every channel)",
    )?;
    Ok((guardians, threshold))
}

/// Most measurements an account allows.
pub const MAX_MEASUREMENTS: usize = 16;

/// `Ok` if each of `nodes` stated, at its latest boot, a binary measurement
/// in `allowed` (software attestation, DESIGN.md §3.3).
pub(crate) fn attested(
    r: &Registry,
    allowed: &[keyquorum_wire::Hex32],
    nodes: &[NodeId],
) -> Result<(), String> {
    let bad: Vec<NodeId> = nodes
        .iter()
        .copied()
        .filter(|m| {
            r.attested
                .get(m)
                .is_none_or(|x| !allowed.contains(&x.binary))
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "nodes {bad:?} have not stated a measurement the account allows (their latest boot \
             statement: GET /v1/cluster)"
        ))
    }
}

/// `Ok` if account `a` allows any build, or `nodes` all run one it allows.
pub(crate) fn attested_for(
    r: &Registry,
    a: &keyquorum_wire::recovery::AccountRecord,
    nodes: &[NodeId],
) -> Result<(), String> {
    match &a.measurements {
        Some(allowed) => attested(r, allowed, nodes),
        None => Ok(()),
    }
}

/// Whether a client may rotate account `a`: an admin, or the client with
/// the `recovery` permission that enrolled it.
pub(crate) fn may_rotate(grant: &Grant, a: &keyquorum_wire::recovery::AccountRecord) -> bool {
    grant.admin || (grant.recovery && grant.name == a.created_by)
}

/// The guardians and threshold a rotation of `account` asks for: as
/// enrolment computes them over the voters now, with the account's
/// channels, and by default as many guardians and the threshold it has.
/// A rotation never lowers the threshold or the number of guardians (that
/// would let fewer nodes, some perhaps the requester's, make tokens).
pub(crate) fn rotate_shape(
    r: &Registry,
    account: &str,
    b: &RotateAccountRequest,
) -> Result<(Vec<NodeId>, u16), String> {
    let a = r
        .recovery
        .accounts
        .get(account)
        .ok_or_else(|| format!("no account {account}"))?;
    let n = u16::try_from(a.guardians.len()).unwrap_or(u16::MAX);
    let (guardians, threshold) = shape(
        r,
        &CreateAccountRequest {
            account: account.to_string(),
            guardians: Some(b.guardians.unwrap_or(n)),
            threshold: Some(b.threshold.unwrap_or(a.threshold)),
            channels: a.channels.clone(),
            device_key: a.device_key,
            measurements: a.measurements.clone(),
        },
    )?;
    need(
        threshold >= a.threshold && guardians.len() >= a.guardians.len(),
        "a rotation keeps at least the account's threshold and number of guardians",
    )?;
    Ok((guardians, threshold))
}

/// Whether account command `command` is what a `POST` (`post`) to the path
/// with segments `seg` and body `body_bytes` by a client with `grant` asks
/// for.
pub(crate) fn asks_for(
    r: &Registry,
    grant: &Grant,
    v: &httpsig::Verified,
    post: bool,
    seg: &[&str],
    body_bytes: &[u8],
    command: &RecoveryCommand,
) -> Result<(), String> {
    if r.rules < ACCOUNT_RULES {
        return Err(format!(
            "accounts need apply rules {ACCOUNT_RULES} (the log is at {})",
            r.rules
        ));
    }
    match command {
        RecoveryCommand::AccountCreate {
            account,
            key,
            endorsements,
        } => {
            need(
                post && seg == ["v1", "recovery", "accounts"],
                "POST /v1/recovery/accounts",
            )?;
            need(
                may_enrol(grant),
                "the client has neither the recovery permission nor admin",
            )?;
            let b: CreateAccountRequest = body(body_bytes)?;
            let (guardians, threshold) = shape(r, &b)?;
            need(
                account.account == b.account
                    && account.guardians == guardians
                    && account.threshold == threshold
                    && account.channels == b.channels
                    && account.device_key == b.device_key
                    && account.created_by == grant.name
                    && account.measurements == b.measurements
                    && account.version == 0,
                "the account asked for",
            )?;
            endorsed(r, key, endorsements)?;
            need(
                key.name == key_name(&b.account)
                    && key.suite == SuiteName::Ed25519
                    && key.epoch == 1
                    && key.threshold == threshold
                    && distinct(&key.members) == guardians
                    && key.members.len() == guardians.len(),
                "the account's reset key: reset.ACCOUNT, Ed25519, epoch 1, on its guardians",
            )
        }
        RecoveryCommand::AccountRotate {
            account,
            key,
            endorsements,
        } => {
            need(r.rules >= RESET_RULES, "rotation needs apply rules 10")?;
            need(
                post && seg
                    == [
                        "v1",
                        "recovery",
                        "accounts",
                        account.account.as_str(),
                        "rotate",
                    ],
                "POST /v1/recovery/accounts/{account}/rotate for this account",
            )?;
            let (now, old) = account_and_key(r, &account.account)?;
            need(
                may_rotate(grant, now),
                "an admin, or the client with the recovery permission that enrolled the account",
            )?;
            let b: RotateAccountRequest = body(body_bytes)?;
            let (guardians, threshold) = rotate_shape(r, &account.account, &b)?;
            need(
                account.guardians == guardians
                    && account.threshold == threshold
                    && account.channels == now.channels
                    && account.device_key == now.device_key
                    && account.created_by == now.created_by
                    && account.measurements == now.measurements
                    && account.version == now.version,
                "the account as it is, with the guardians and threshold asked for",
            )?;
            endorsed(r, key, endorsements)?;
            need(
                key.name == old.name
                    && key.suite == SuiteName::Ed25519
                    && key.epoch == old.epoch + 1
                    && key.public_key == old.public_key
                    && key.threshold == threshold
                    && distinct(&key.members) == guardians
                    && key.members.len() == guardians.len(),
                "the reset key's next generation, same public key, on the new guardians",
            )
        }
        RecoveryCommand::ResetOpen { reset } => {
            need(r.rules >= RESET_RULES, "reset requests need apply rules 10")?;
            need(
                post && seg
                    == [
                        "v1",
                        "recovery",
                        "accounts",
                        reset.account.as_str(),
                        "resets",
                    ],
                "POST /v1/recovery/accounts/{account}/resets for this account",
            )?;
            let b: ResetRequest = body(body_bytes)?;
            let ttl = b.ttl_s.unwrap_or(DEFAULT_RESET_TTL_S);
            need(
                (MIN_RESET_TTL_S..=MAX_RESET_TTL_S).contains(&ttl),
                "a reset lives 60 to 3600 seconds",
            )?;
            // Not already (nearly) expired by the log clock: a backdated
            // request would use up the account's resets and deliver
            // nothing.
            need(
                reset.expires.saturating_mul(1000) >= r.clock.now_ms().saturating_add(MIN_LIVE_MS),
                "a reset that expires within 30 s by the log clock",
            )?;
            need(
                reset.credential_hash == b.credential_hash
                    && reset.expires == v.created.saturating_add(u64::from(ttl))
                    && reset.created_ms == v.created.saturating_mul(1000)
                    && reset.requested_by == grant.name
                    && reset.request_id.0 == reset::request_id(&v.keyid, &v.nonce)
                    && reset.inbox.is_empty()
                    && reset.opened_ms == 0,
                "the reset asked for: its credential hash, expiry, client and request id",
            )?;
            check_reset(r, reset)
        }
        RecoveryCommand::ResetInbox { .. } => Err("a signer states its inbox fragment".into()),
        RecoveryCommand::PinUnlocked { .. } => Err("a guardian states its unlock".into()),
        RecoveryCommand::PinKey {
            account,
            key,
            endorsements,
        } => {
            secret_request(r, post, seg, account, Some("begin"))?;
            let a = r
                .recovery
                .accounts
                .get(account)
                .ok_or_else(|| format!("no account {account}"))?;
            need(
                may_rotate(grant, a),
                "an admin, or the client with the recovery permission that enrolled the account",
            )?;
            let b: keyquorum_wire::recovery::SecretBeginRequest = body(body_bytes)?;
            attested_for(r, a, &key.members)?;
            let name = if r.rules >= AGAIN_RULES {
                replacing(r, account, b.replace.as_ref())?;
                let next = r.recovery.pin_generation(account).saturating_add(1);
                need(
                    next == 1 || b.replace.is_some(),
                    "a first PIN key, or a later one to register the secret again",
                )?;
                keyquorum_wire::recovery::pin_key_name_at(account, next)
            } else {
                before_again(body_bytes, 1)?;
                need(
                    !r.recovery.secrets.contains_key(account),
                    "an account without a secret",
                )?;
                keyquorum_wire::recovery::pin_key_name(account)
            };
            endorsed(r, key, endorsements)?;
            need(
                key.name == name
                    && key.suite == SuiteName::Ristretto255
                    && key.epoch == 1
                    && key.threshold == a.threshold
                    && distinct(&key.members) == a.guardians
                    && key.members.len() == a.guardians.len()
                    && keyquorum_core::oprf::pin::check_majority(key.threshold, key.members.len())
                        .is_ok(),
                "the PIN key pin.ACCOUNT (pin.ACCOUNT~G for generation G), ristretto255, epoch \
                 1, on the account's guardians and threshold, t > n/2",
            )
        }
        RecoveryCommand::SecretRegister { record } => {
            secret_request(r, post, seg, &record.account, None)?;
            let a = r
                .recovery
                .accounts
                .get(&record.account)
                .ok_or_else(|| format!("no account {}", record.account))?;
            need(
                may_rotate(grant, a),
                "an admin, or the client with the recovery permission that enrolled the account",
            )?;
            let b: keyquorum_wire::recovery::RegisterSecretRequest = body(body_bytes)?;
            let latest = if r.rules >= AGAIN_RULES {
                r.recovery.pin_generation(&record.account)
            } else {
                before_again(body_bytes, 8)?;
                1
            };
            let key = r
                .keys
                .records
                .get(&keyquorum_wire::recovery::pin_key_name_at(
                    &record.account,
                    latest,
                ))
                .ok_or("the account has no PIN key: begin first")?;
            if r.rules >= AGAIN_RULES {
                replacing(r, &record.account, b.replace.as_ref())?;
                if let Some(old) = r.recovery.secrets.get(&record.account) {
                    // On the account's guardians of the day, or a stale
                    // key would keep the "moved" secret where it was.
                    need(
                        old.generation < latest
                            && old.version != record.version
                            && key.members == a.guardians
                            && key.threshold == a.threshold,
                        "a new registration on a PIN key made, on the account's guardians, to \
                         register again",
                    )?;
                }
            }
            // (Below rules 16 older builds ignore the record's generation,
            // and apply stores the first: so is it checked here.)
            let generation = if r.rules >= AGAIN_RULES {
                record.generation
            } else {
                1
            };
            need(
                generation == latest && b.generation == latest,
                "the account's latest PIN key",
            )?;
            need(
                record.version == b.version
                    && record.epoch == b.epoch
                    && record.guesses == b.guesses
                    && record.stretch == b.stretch
                    && record.salt == b.salt
                    && record.commitments == b.commitments
                    && record.ciphertext == b.ciphertext
                    && record.shares == b.shares
                    && record.registered_by == grant.name
                    && record.used == 0
                    && record.last_guess.is_none()
                    && record.unlocked_by.is_empty()
                    && !record.destroyed,
                "the secret asked for, by this client, with no guesses",
            )?;
            check_secret(key, record)
        }
        RecoveryCommand::PinGuess { account, guess } => {
            secret_request(r, post, seg, account, Some("guess"))?;
            need(
                may_enrol(grant),
                "a client with the recovery permission, or an admin",
            )?;
            let b: keyquorum_wire::recovery::GuessRequest = body(body_bytes)?;
            let s = r
                .recovery
                .secrets
                .get(account)
                .ok_or_else(|| format!("{account} has no secret"))?;
            let digest: [u8; 32] = sha2::Sha256::digest(&b.blinded_element.0).into();
            need(
                s.version == b.version
                    && guess.id.0 == reset::request_id(&v.keyid, &v.nonce)
                    && guess.client == grant.name
                    && guess.blinded.0 == digest,
                "the guess asked for: its registration, id, client and blinded element",
            )
        }
    }
}

/// Before rules 16 a begin or registration body is what older builds read
/// (they refuse unknown fields): one naming a record to replace or a key
/// generation is refused, so every build decides alike. A body written as
/// an array (serde reads a struct from its fields in order) may hold no
/// more than the `fields` older builds know.
fn before_again(body_bytes: &[u8], fields: usize) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_slice(body_bytes).map_err(|e| e.to_string())?;
    let old = match &v {
        serde_json::Value::Object(m) => !m.contains_key("replace") && !m.contains_key("generation"),
        serde_json::Value::Array(a) => a.len() <= fields,
        _ => true,
    };
    need(
        old,
        "registering a secret again (replace, generation) needs apply rules 16",
    )
}

/// A begin or registration for `account` that replaces its secret names
/// the record it replaces (so a client cannot replace one it has not
/// seen), from apply rules 16; one for an account without a secret names
/// none.
fn replacing(
    r: &Registry,
    account: &str,
    replace: Option<&keyquorum_wire::Hex>,
) -> Result<(), String> {
    match (r.recovery.secrets.get(account), replace) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(format!("{account} has no secret to replace")),
        (Some(_), None) => Err(format!(
            "{account} has a secret: registering again names the record it replaces"
        )),
        (Some(old), Some(v)) => {
            need(
                r.rules >= AGAIN_RULES,
                "registering a secret again needs apply rules 16",
            )?;
            need(
                &old.version == v,
                "the record it replaces is the account's current one",
            )
        }
    }
}

/// The rules gate and the path every PIN command's request starts with:
/// `POST /v1/recovery/accounts/{account}/secret[/{step}]`.
fn secret_request(
    r: &Registry,
    post: bool,
    seg: &[&str],
    account: &str,
    step: Option<&str>,
) -> Result<(), String> {
    need(
        r.rules >= PIN_RULES,
        "PIN-protected secrets need apply rules 11",
    )?;
    let mut want = vec!["v1", "recovery", "accounts", account, "secret"];
    want.extend(step);
    need(
        post && seg == want.as_slice(),
        "POST /v1/recovery/accounts/{account}/secret[/begin|/guess] for this account",
    )
}

/// A secret's record against its PIN key: the key's generation, one tag
/// commitment and one sealed share per guardian (ascending), 1-255
/// guesses, Argon2id's floor, a 16-byte version and salt, a ciphertext of
/// at most 128 + 16 bytes.
fn check_secret(
    key: &keyquorum_wire::control::KeyRecord,
    s: &keyquorum_wire::recovery::SecretRecord,
) -> Result<(), String> {
    use keyquorum_core::oprf::pin::{Stretch, MAX_GUESSES, MAX_SECRET};
    need(key.epoch == s.epoch, "the PIN key's current generation")?;
    need((1..=MAX_GUESSES).contains(&s.guesses), "1 to 255 guesses")?;
    Stretch {
        m_kib: s.stretch.m_kib,
        t_cost: s.stretch.t_cost,
        p_cost: s.stretch.p_cost,
    }
    .check()
    .map_err(|e| e.to_string())?;
    need(
        s.version.0.len() == 16 && s.salt.0.len() == 16,
        "a 16-byte version and salt",
    )?;
    need(
        (16..=MAX_SECRET + 16).contains(&s.ciphertext.0.len()),
        "a ciphertext of a secret of at most 128 bytes",
    )?;
    let cs: Vec<NodeId> = s.commitments.iter().map(|c| c.node).collect();
    let ss: Vec<NodeId> = s.shares.iter().map(|c| c.node).collect();
    need(
        cs == key.members && ss == key.members,
        "one tag commitment and one share per guardian, by id",
    )?;
    need(
        s.shares.iter().all(|x| x.sealed.0.len() == 32 + 16),
        "each share a sealed 32-byte scalar",
    )
}

/// Account `name` and its reset key's current generation, from the
/// replicated state.
fn account_and_key<'r>(
    r: &'r Registry,
    name: &str,
) -> Result<
    (
        &'r keyquorum_wire::recovery::AccountRecord,
        &'r keyquorum_wire::control::KeyRecord,
    ),
    String,
> {
    let account = r
        .recovery
        .accounts
        .get(name)
        .ok_or_else(|| format!("no account {name}"))?;
    let key = r
        .keys
        .records
        .get(&key_name(name))
        .ok_or_else(|| format!("account {name} has no reset key"))?;
    Ok((account, key))
}

/// A reset's signer set and commitments against the replicated account:
/// the reset key's current generation, `t` guardians covering the
/// account's distinct channels (up to `t`), ascending, each with a 16-byte
/// nonce id and a well-formed commitment of its own.
pub(crate) fn check_reset(r: &Registry, reset: &ResetRecord) -> Result<(), String> {
    let (account, key) = account_and_key(r, &reset.account)?;
    need(
        key.epoch == reset.epoch,
        "the reset key's current generation",
    )?;
    let guardians: Vec<u64> = key.members.iter().map(|m| u64::from(*m)).collect();
    let signers: Vec<u64> = reset
        .commitments
        .iter()
        .map(|c| u64::from(c.node))
        .collect();
    need(
        signers.windows(2).all(|w| matches!(w, [a, b] if a < b)),
        "signers in ascending order",
    )?;
    reset::check_signers(
        &guardians,
        &account.channels,
        usize::from(key.threshold),
        &signers,
    )
    .map_err(|e| e.to_string())?;
    let signer_ids: Vec<NodeId> = reset.commitments.iter().map(|c| c.node).collect();
    attested_for(r, account, &signer_ids)?;
    for c in &reset.commitments {
        let ok = c.nonce.0.len() == 16
            && SigningCommitment::<Ed25519>::from_bytes(&c.commitment.0)
                .is_ok_and(|s| s.signer() == keyquorum_core::ParticipantId::from(c.node.nonzero()));
        need(ok, "each signer's own well-formed commitment and nonce id")?;
    }
    Ok(())
}

/// Whether `node` may state `command` on its own: its `app` fragment for
/// a live reset it signs in, once.
pub(crate) fn may_state(
    r: &Registry,
    node: NodeId,
    command: &RecoveryCommand,
) -> Result<(), String> {
    if r.rules < RESET_RULES {
        return Err(format!("reset requests need apply rules {RESET_RULES}"));
    }
    match command {
        RecoveryCommand::ResetInbox { account, item } => inbox_item(r, node, account, item),
        RecoveryCommand::PinUnlocked { account, guess_id } => {
            need(
                r.rules >= PIN_RULES,
                "PIN-protected secrets need apply rules 11",
            )?;
            let s = r
                .recovery
                .secrets
                .get(account)
                .ok_or("no secret of the account")?;
            let key = r
                .keys
                .records
                .get(&keyquorum_wire::recovery::pin_key_name_at(
                    account,
                    s.generation,
                ))
                .ok_or("no PIN key")?;
            need(
                key.members.contains(&node)
                    && s.last_guess.as_ref().map(|g| &g.id) == Some(guess_id),
                "a guardian's unlock of the last guess",
            )
        }
        _ => Err("a node states only its own inbox fragment or unlock".into()),
    }
}

/// Whether `item` is `node`'s fragment for the live reset it names, on
/// the `app` channel, not yet in the inbox.
fn inbox_item(r: &Registry, node: NodeId, account: &str, item: &InboxItem) -> Result<(), String> {
    let reset = r
        .recovery
        .resets
        .get(&hex::encode(&item.request_id.0))
        .filter(|x| x.account == account)
        .ok_or("no such reset request of the account")?;
    need(
        r.clock.now_ms() / 1000 < reset.expires,
        "the reset request has expired",
    )?;
    need(
        item.guardian == node && reset.commitments.iter().any(|c| c.node == node),
        "the stating node's own fragment, as a signer of the request",
    )?;
    let (a, key) = account_and_key(r, account)?;
    let guardians: Vec<u64> = key.members.iter().map(|m| u64::from(*m)).collect();
    need(
        reset::channel(&guardians, &a.channels, u64::from(node)) == Some("app"),
        "the signer's channel is app",
    )?;
    let f = reset::Fragment::from_text(&item.fragment).map_err(|e| e.to_string())?;
    need(
        f.request_id.as_slice() == item.request_id.0.as_slice()
            && u64::from(f.signer) == u64::from(node),
        "the fragment is of this request and signer",
    )?;
    need(
        !reset.inbox.iter().any(|i| i.guardian == node),
        "one fragment per signer",
    )
}
