//! The guardian's half of PIN-protected secrets: its own checks before it
//! evaluates a begin or a guess ([`authorize`]) or releases its share
//! ([`release`]), the counts it keeps in its vault, and the erasing of PIN
//! keys no longer in use ([`erase_retired`]).

use std::time::Duration;

use keyquorum_core::oprf::pin::{self as core_pin, Counter, Sealed};
use keyquorum_core::oprf::reset::request_id;
use keyquorum_core::oprf::Element;
use keyquorum_store::vault::Table;
use keyquorum_wire::peer::{ClientRequest, PeerMessage};
use keyquorum_wire::recovery::{
    pin_key_name_at, pin_key_of, GuessRequest, RecoveryCommand, SealedShare, SecretBeginRequest,
    SecretRecord, UnlockRequest,
};
use keyquorum_wire::{Hex, Hex32, NodeId};
use sha2::{Digest, Sha256};

use super::super::state::{AGAIN_RULES, PIN_RULES};
use super::{account, id16, live_secret, may_register};
use crate::api::auth::{check_forwarded, check_sent_to, Authorized};
use crate::cluster::Node;
use crate::error::NodeError;
use crate::keys::Keys;

/// Round one of an evaluation of PIN key `key` (the OPRF member's check):
/// the client's request is a begin by a client that may register, while
/// the account has no secret, or the record's last guess, counted here
/// before answering. The blinded element to evaluate.
pub(crate) async fn authorize(
    node: &Node,
    key: &str,
    a: &Authorized,
) -> Result<(Element, String), NodeError> {
    let refuse = |why: String| NodeError::Forbidden(format!("PIN evaluation refused: {why}"));
    node.require_rules(PIN_RULES, "PIN keys")?;
    let (name, generation) =
        pin_key_of(key).ok_or_else(|| refuse(format!("{key} is not a PIN key")))?;
    let seg: Vec<&str> = a.path.trim_start_matches('/').split('/').collect();
    let post = a.method == "POST";
    // A guardian on a build the account does not allow evaluates nothing.
    let record = account(node, name)?;
    node.registry(|r| super::super::authority::attested_for(r, &record, &[node.id()]))
        .map_err(refuse)?;
    match seg.as_slice() {
        ["v1", "recovery", "accounts", acct, "secret", "begin"] if post && *acct == name => {
            let b: SecretBeginRequest = serde_json::from_slice(&a.body)
                .map_err(|e| refuse(format!("the client's request body: {e}")))?;
            // Everything committed before, or no answer: a guardian kept
            // behind must not miss a registration (an evaluation of a
            // registered key is a guess). A leader that lies about the
            // read index still gets at most `MAX_BEGINS` evaluations per
            // guardian (its own count, below).
            strict_barrier(node).await?;
            if !may_register(&a.grant, &record) {
                return Err(refuse(format!(
                    "client {} may not register a secret for {name}",
                    a.grant.name
                )));
            }
            // A registration is evaluated only by the account's latest PIN
            // key, never by the live record's: a begin that names the
            // record it replaces gets a key of its own.
            let (latest, current) = node.registry(|r| {
                (
                    r.recovery.pin_generation(name),
                    r.recovery
                        .secrets
                        .get(name)
                        .map(|s| (s.version.clone(), s.generation)),
                )
            });
            if generation != latest {
                return Err(refuse(format!(
                    "{key} is not {name}'s latest PIN key (generation {latest})"
                )));
            }
            match (&current, &b.replace) {
                (None, None) => {}
                (Some((v, g)), Some(asked)) if v == asked && *g != generation => {
                    node.require_rules(AGAIN_RULES, "registering a secret again")?;
                    // On the account's guardians of the day: a stale key
                    // would keep the moved secret where it was.
                    let on_guardians = node.registry(|r| {
                        r.keys
                            .records
                            .get(key)
                            .is_some_and(|k| k.members == record.guardians)
                    });
                    if !on_guardians {
                        return Err(refuse(format!(
                            "{key} is not on {name}'s guardians of the day"
                        )));
                    }
                }
                (Some(_), _) => {
                    return Err(refuse(format!(
                        "{name} has a secret: its key evaluates counted guesses only, and a \
                         registration again names that record and is evaluated by a newer key"
                    )))
                }
                (None, Some(_)) => return Err(refuse(format!("{name} has no secret to replace"))),
            }
            let m = Element::from_bytes(&b.blinded_element.0)
                .map_err(|e| refuse(format!("the blinded element: {e}")))?;
            // The request and the element it asks for: a nonce signed
            // again over another element is another begin.
            let begun = Counter::guess_of(
                &request_id(&a.verified.keyid, &a.verified.nonce),
                &Sha256::digest(m.to_bytes()).into(),
            );
            let short = key
                .strip_prefix(keyquorum_wire::recovery::PIN_PREFIX)
                .unwrap_or(key);
            count_begin(node, short, &begun)?;
            Ok((m, format!("pin.begin {name}")))
        }
        ["v1", "recovery", "accounts", acct, "secret", "guess"] if post && *acct == name => {
            if !super::super::authority::may_enrol(&a.grant) {
                return Err(refuse(format!(
                    "client {} has neither the recovery permission nor admin",
                    a.grant.name
                )));
            }
            let b: GuessRequest = serde_json::from_slice(&a.body)
                .map_err(|e| refuse(format!("the client's request body: {e}")))?;
            let m = Element::from_bytes(&b.blinded_element.0)
                .map_err(|e| refuse(format!("the blinded element: {e}")))?;
            let id = request_id(&a.verified.keyid, &a.verified.nonce);
            let is_last = |s: &SecretRecord| s.last_guess.as_ref().is_some_and(|g| g.id.0 == id);
            let (mut s, _) = live_secret(node, name)?;
            if !is_last(&s) {
                let _ = node.read_barrier().await;
                s = live_secret(node, name)?.0;
            }
            if s.generation != generation {
                return Err(refuse(format!(
                    "{key} is not the PIN key {name}'s secret was registered under"
                )));
            }
            let last = s
                .last_guess
                .as_ref()
                .ok_or_else(|| refuse("no guess is counted in the log".into()))?;
            let digest: [u8; 32] = Sha256::digest(m.to_bytes()).into();
            if last.id.0 != id
                || last.blinded.0 != digest
                || last.client != a.grant.name
                || s.version != b.version
            {
                return Err(refuse(
                    "this guess is not the last one counted in the log".into(),
                ));
            }
            let version = id16(&s.version.0, "version")?;
            count(
                node,
                name,
                &version,
                &Counter::guess_of(&id, &digest),
                s.guesses,
            )?;
            Ok((m, format!("pin.guess {name}")))
        }
        _ => Err(refuse(format!(
            "the client's request is {} {}, not a begin or guess of {name}",
            a.method, a.path
        ))),
    }
}

/// Begin requests one guardian answers for one PIN key, ever (a
/// registration needs one; retries after a failed register use more; the
/// same request asked again counts once).
pub const MAX_BEGINS: u16 = 4;

/// Serializes this node's read-modify-write of its guess counts (round
/// ones run concurrently; two must not both count from the same value).
static COUNTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn counts_lock() -> Result<std::sync::MutexGuard<'static, ()>, NodeError> {
    COUNTS
        .lock()
        .map_err(|_| NodeError::Internal("the guess counts' lock is poisoned".into()))
}

/// A read barrier that fails instead of reading an older state.
async fn strict_barrier(node: &Node) -> Result<(), NodeError> {
    let index = node.read_index().await?;
    node.wait_applied(index).await;
    if node.applied_index().unwrap_or(0) < index {
        return Err(NodeError::Unavailable(
            "this guardian has not caught up with the log: try again".into(),
        ));
    }
    Ok(())
}

/// Count begin request `id` for PIN key `name` (without its `pin.`) in
/// this guardian's vault, refused past [`MAX_BEGINS`] requests; the same
/// request asked again (a coordinator repeating it under other run ids)
/// counts once. The row is the count (2 bytes, big-endian) and the ids
/// counted (16 bytes each; a row from an older build is the count alone).
fn count_begin(node: &Node, name: &str, id: &[u8; 16]) -> Result<(), NodeError> {
    let _held = counts_lock()?;
    let key = format!("begin/{name}");
    let row = node
        .vault()
        .get(Table::PinCounts, key.as_bytes())?
        .map(|b| b.to_vec())
        .unwrap_or_else(|| vec![0, 0]);
    let (done, ids) = match row.split_first_chunk::<2>() {
        Some((n, ids)) if ids.len() % 16 == 0 => (u16::from_be_bytes(*n), ids),
        _ => (u16::MAX, &[][..]),
    };
    if ids.chunks_exact(16).any(|c| c == id) {
        return Ok(());
    }
    if done >= MAX_BEGINS {
        return Err(NodeError::Forbidden(format!(
            "PIN evaluation refused: this guardian has answered {MAX_BEGINS} registrations of \
             {name} already"
        )));
    }
    let mut next = (done + 1).to_be_bytes().to_vec();
    next.extend_from_slice(ids);
    next.extend_from_slice(id);
    node.vault().put(Table::PinCounts, key.as_bytes(), &next)?;
    Ok(())
}

fn counter_of(node: &Node, name: &str) -> Result<Counter, NodeError> {
    match node.vault().get(Table::PinCounts, name.as_bytes())? {
        Some(b) => Counter::from_bytes(&b).map_err(NodeError::from_core),
        None => Ok(Counter::default()),
    }
}

/// Count guess `id` of registration `version` in this guardian's vault
/// (durably, before it answers).
fn count(
    node: &Node,
    name: &str,
    version: &[u8; 16],
    id: &[u8; 16],
    limit: u16,
) -> Result<(), NodeError> {
    let _held = counts_lock()?;
    let mut c = counter_of(node, name)?;
    c.answer(version, id, limit)
        .map_err(|e| NodeError::Forbidden(format!("PIN evaluation refused: {e} ({limit})")))?;
    node.vault()
        .put(Table::PinCounts, name.as_bytes(), &c.to_bytes())?;
    Ok(())
}

/// `PinUnlock`: release this guardian's share for the client's signed
/// unlock request if its tag opens this guardian's commitment.
pub(crate) async fn release(
    node: &Node,
    from: NodeId,
    request: &ClientRequest,
) -> Result<PeerMessage, NodeError> {
    let refuse = |why: String| NodeError::Forbidden(format!("PIN unlock refused: {why}"));
    if check_forwarded(node, request).is_err() {
        let _ = node.read_barrier().await;
    }
    let a = check_forwarded(node, request)?;
    check_sent_to(node, &request.target_uri, from).map_err(refuse)?;
    let seg: Vec<&str> = a.path.trim_start_matches('/').split('/').collect();
    let ["v1", "recovery", "accounts", name, "secret", "unlock"] = seg.as_slice() else {
        return Err(refuse(format!("{} {} is not an unlock", a.method, a.path)));
    };
    if a.method != "POST" {
        return Err(refuse("an unlock is a POST".into()));
    }
    let b: UnlockRequest = serde_json::from_slice(&a.body)
        .map_err(|e| refuse(format!("the client's request body: {e}")))?;
    let (mut s, key) = live_secret(node, name)?;
    if s.last_guess.as_ref().map(|g| g.id.0.as_slice()) != Some(b.guess_id.0.as_slice()) {
        let _ = node.read_barrier().await;
        s = live_secret(node, name)?.0;
    }
    let me = node.id();
    let last = s
        .last_guess
        .as_ref()
        .filter(|g| g.id == b.guess_id && g.client == a.grant.name && s.version == b.version)
        .ok_or_else(|| refuse("not the last guess counted, or not this client's".into()))?;
    if !key.members.contains(&me) {
        return Err(refuse(format!("node {me} is not a guardian of {name}")));
    }
    let mine = s
        .commitments
        .iter()
        .find(|c| c.node == me)
        .ok_or_else(|| refuse("no commitment of this guardian".into()))?;
    let proof = b
        .proofs
        .iter()
        .find(|t| t.node == me)
        .ok_or_else(|| refuse(format!("no unlock proof for node {me}")))?;
    let version = id16(&s.version.0, "version")?;
    let guess = id16(&last.id.0, "guess id")?;
    if !core_pin::check_proof(
        &mine.value.0,
        &proof.signature.0,
        name,
        &version,
        u16::from(me.nonzero()),
        &guess,
        &b.recipient.0,
    ) {
        return Err(refuse(
            "the unlock proof does not verify (wrong PIN, or not for this guess and recipient)"
                .into(),
        ));
    }
    let guess_id = guess;
    let share = s
        .shares
        .iter()
        .find(|x| x.node == me)
        .ok_or_else(|| refuse("no share of this guardian".into()))?;
    let sealed = core_pin::release(
        node.keys().hpke_secret(),
        &Sealed {
            enc: share.enc.0,
            ct: share.sealed.0.clone(),
        },
        &b.recipient.0,
        name,
        &version,
        &guess_id,
        u16::from(me.nonzero()),
    )
    .map_err(NodeError::from_core)?;
    // The right PIN: this guardian's count starts again, and the log's
    // once `t` guardians have said so.
    {
        let _held = counts_lock()?;
        let mut c = counter_of(node, name)?;
        // Only this registration's count (a retry of an old unlock does
        // not touch a newer one's).
        if c.version == version {
            c.unlocked();
            node.vault()
                .put(Table::PinCounts, name.as_bytes(), &c.to_bytes())?;
        }
    }
    if let Err(e) = node
        .commit(node.statement(RecoveryCommand::PinUnlocked {
            account: name.to_string(),
            guess_id: last.id.clone(),
        }))
        .await
    {
        tracing::warn!(account = %name, error = %e, "could not state the unlock");
    }
    node.audit_event(
        "peer",
        "pin.release",
        Some(name),
        "released a share for the right tag",
    );
    Ok(PeerMessage::PinShare {
        share: SealedShare {
            node: me,
            enc: Hex32(sealed.enc),
            sealed: Hex(sealed.ct),
        },
    })
}

/// Node task: erase this node's shares of an account's PIN keys that are
/// no longer in use, within about a second of applying what retired them
/// (`super::state::RecoveryState::pin_generations_in_use`): the key of a
/// secret the log destroyed, the key of a record a registration again
/// replaced, and a later key made but never registered that a newer one
/// replaced. Generations are never used again once retired, so each
/// account's are erased from the lowest not yet erased.
pub async fn erase_retired(keys: std::sync::Arc<Keys>, node: Node) {
    // Per account: every generation below this one is erased.
    let mut low: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let work: Vec<(String, Vec<u32>, u32)> = node.registry(|r| {
            r.recovery
                .pin_keys
                .keys()
                .filter_map(|account| {
                    let latest = r.recovery.pin_generation(account);
                    let keep = r.recovery.pin_generations_in_use(account);
                    let from = low.get(account).copied().unwrap_or(1);
                    let gone: Vec<u32> = (from..=latest).filter(|g| !keep.contains(g)).collect();
                    let next = keep
                        .iter()
                        .copied()
                        .min()
                        .unwrap_or(latest.saturating_add(1));
                    (!gone.is_empty() || next > from).then(|| (account.clone(), gone, next))
                })
                .collect()
        });
        for (account, gone, next) in work {
            let mut all = true;
            for g in gone {
                let name = pin_key_name_at(&account, g);
                match keys.erase_all(&node, &name) {
                    Ok(n) if n > 0 => {
                        tracing::info!(key = %name, erased = n, "erased a retired PIN key's share");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        all = false;
                        tracing::warn!(key = %name, error = %e, "could not erase");
                    }
                }
            }
            if all {
                low.insert(account, next);
            }
        }
    }
}
