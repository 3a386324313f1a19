//! PIN-protected secrets (issue #20 item 3; the cryptography is
//! `keyquorum_core::oprf::pin`). Four client calls, as in Juicebox:
//!
//! 1. **Begin** (`POST .../secret/begin`, the account's enroller or an
//!    admin, while the account has no secret, or naming the record it
//!    replaces from apply rules 16): the entry node makes the account's
//!    PIN key `pin.ACCOUNT` by DKG among its guardians if it has none
//!    (`pin_key`, refused unless `t > n/2`; registering again always makes
//!    the next generation, `pin.ACCOUNT~G`, on the account's guardians of
//!    the day) and has them evaluate it on the client's blinded, stretched
//!    PIN. Each guardian checks the client's signed request itself (round
//!    one of the evaluation), after a strict read barrier that the key is
//!    the account's latest and not the live record's, and answers at most
//!    [`MAX_BEGINS`] begin requests per key, counted in its vault.
//! 2. **Register** (`POST .../secret`, the same client rules): the record
//!    (unlock public keys, sealed masked shares, the encrypted secret) is
//!    committed (`secret_register`); every replica checks its shape.
//! 3. **Guess** (`POST .../secret/guess`, a client with the `recovery`
//!    permission or an admin): the guess is committed first (`pin_guess`:
//!    counted; past the limit the record is destroyed instead), then `t`
//!    guardians evaluate. Each checks that the guess in the client's
//!    signed request is the record's last guess in its own replica and
//!    counts it in its own vault before answering (`oprf::pin::Counter`):
//!    even a log that lies gets at most `⌊n·L/t⌋`.
//! 4. **Unlock** (`POST .../secret/unlock`, the client that guessed): each
//!    guardian checks the client's Ed25519 unlock proof for it (the key
//!    the PIN gives it, over this guess and the one-time recipient key),
//!    starts its own count again, states `pin_unlocked` and releases its
//!    masked share sealed to the recipient key.
//!
//! Once the log destroys a record, or a registration again replaces it,
//! every guardian erases its share of its PIN key ([`erase_retired`]):
//! nothing can evaluate it again.

use futures::future::join_all;
use keyquorum_core::httpsig;
use keyquorum_core::oprf::pin::check_majority;
use keyquorum_core::oprf::reset::request_id;
use keyquorum_core::oprf::Element;
use keyquorum_wire::api::SuiteName;
use keyquorum_wire::control::KeyRecord;
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::recovery::{
    pin_key_name, pin_key_name_at, AccountRecord, GuessRecord, GuessRequest, GuessResponse,
    PinGuardian, RecoveryCommand, RegisterSecretRequest, SecretBeginRequest, SecretBeginResponse,
    SecretInfo, SecretRecord, UnlockRequest, UnlockResponse,
};
use keyquorum_wire::{Hex, Hex32};
use sha2::{Digest, Sha256};

use super::state::{AGAIN_RULES, PIN_RULES};
use super::Oprf;
use crate::api::auth::{by_request, check_forwarded, forwarded};
use crate::cluster::Node;
use crate::error::NodeError;
use crate::keys::{me_first, NewKey};

/// Whether `grant` may register a secret for `a`: an admin, or the client
/// with the `recovery` permission that enrolled it.
pub(crate) fn may_register(grant: &keyquorum_wire::control::Grant, a: &AccountRecord) -> bool {
    super::authority::may_rotate(grant, a)
}

fn account(node: &Node, account: &str) -> Result<AccountRecord, NodeError> {
    node.registry(|r| r.recovery.accounts.get(account).cloned())
        .ok_or_else(|| NodeError::NotFound(format!("no account {account}")))
}

/// `account`'s secret and the PIN key it was registered under.
fn secret_and_key(node: &Node, account: &str) -> Result<(SecretRecord, KeyRecord), NodeError> {
    node.registry(|r| {
        let s = r.recovery.secrets.get(account)?.clone();
        let k = r
            .keys
            .records
            .get(&pin_key_name_at(account, s.generation))?
            .clone();
        Some((s, k))
    })
    .ok_or_else(|| NodeError::NotFound(format!("account {account} has no secret")))
}

fn live_secret(node: &Node, account: &str) -> Result<(SecretRecord, KeyRecord), NodeError> {
    let (s, k) = secret_and_key(node, account)?;
    if s.destroyed {
        return Err(NodeError::Conflict(format!(
            "the secret of {account} was destroyed after {} wrong guesses",
            s.guesses
        )));
    }
    Ok((s, k))
}

fn element(b: &[u8]) -> Result<Element, NodeError> {
    Element::from_bytes(b).map_err(|e| {
        NodeError::BadRequest(format!(
            "blinded_element is not a canonical Ristretto255 element other than the identity: {e}"
        ))
    })
}

fn id16(b: &[u8], what: &str) -> Result<[u8; 16], NodeError> {
    b.try_into()
        .map_err(|_| NodeError::BadRequest(format!("{what} is 16 bytes")))
}

// ----- coordinator -----------------------------------------------------------

/// Begin: the PIN key (made if the account has none) evaluated once on
/// the client's blinded element.
pub async fn begin(
    oprf: &Oprf,
    node: &Node,
    name: &str,
    req: SecretBeginRequest,
    request: &httpsig::Request,
) -> Result<SecretBeginResponse, NodeError> {
    node.require_rules(PIN_RULES, "PIN-protected secrets")?;
    let m = element(&req.blinded_element.0)?;
    let a = check_forwarded(node, &forwarded(request))?;
    let acct = account(node, name)?;
    if !may_register(&a.grant, &acct) {
        return Err(NodeError::Forbidden(
            "an admin, or the client with the recovery permission that enrolled the account, \
             registers its secret"
                .into(),
        ));
    }
    let current = node.registry(|r| {
        r.recovery
            .secrets
            .get(name)
            .map(|s| (s.version.clone(), s.generation))
    });
    match (&current, &req.replace) {
        (None, None) => {}
        (None, Some(_)) => {
            return Err(NodeError::BadRequest(format!(
                "account {name} has no secret to replace"
            )))
        }
        (Some(_), None) => {
            return Err(NodeError::Conflict(format!(
                "account {name} has a secret registered (or destroyed): to register it again, \
                 name the record it replaces (replace; keyquorum recovery secret register --again)"
            )))
        }
        (Some((v, _)), Some(asked)) => {
            node.require_rules(AGAIN_RULES, "registering a secret again")?;
            if v != asked {
                return Err(NodeError::Conflict(format!(
                    "account {name}'s secret is registration {}, not {}",
                    hex::encode(&v.0),
                    hex::encode(&asked.0)
                )));
            }
        }
    }
    check_majority(acct.threshold, acct.guardians.len()).map_err(|_| {
        NodeError::BadRequest(format!(
            "PIN recovery needs a threshold above half the guardians ({} of {}): rotate the \
             account to a higher threshold first",
            acct.threshold,
            acct.guardians.len()
        ))
    })?;
    // The latest PIN key, unless registering again needs a new one: the
    // live record's key is never evaluated for a registration, and a new
    // registration goes on the account's guardians of the day.
    let (latest, existing) = node.registry(|r| {
        let g = r.recovery.pin_generation(name);
        let k = r
            .keys
            .records
            .get(&pin_key_name_at(name, g.max(1)))
            .cloned();
        (g, k)
    });
    if latest == 0 && existing.is_some() {
        return Err(NodeError::Conflict(format!(
            "{} is a key that is not {name}'s PIN key",
            pin_key_name(name)
        )));
    }
    // Registering again always makes a new generation (a key begun before
    // and never registered may be on other guardians, or its guardians'
    // begin counts used up by a coordinator that asked them in vain).
    let usable = existing.filter(|_| current.is_none());
    let (record, generation) = match usable {
        Some(k) => (k, latest.max(1)),
        None => {
            let generation = latest.saturating_add(1);
            let key = pin_key_name_at(name, generation);
            oprf.keys()
                .create_with(
                    node,
                    NewKey {
                        name: key.clone(),
                        suite: SuiteName::Ristretto255,
                        threshold: acct.threshold,
                        members: acct.guardians.clone(),
                        min_members: None,
                    },
                    |record, endorsements| async move {
                        node.commit(by_request(
                            request,
                            RecoveryCommand::PinKey {
                                account: name.to_string(),
                                key: Box::new(record),
                                endorsements,
                            },
                        ))
                        .await
                        .map(|_| ())
                    },
                )
                .await?;
            let k = node
                .registry(|r| r.keys.records.get(&key).cloned())
                .ok_or_else(|| NodeError::Internal(format!("{key} not applied after commit")))?;
            (k, generation)
        }
    };
    let answer = oprf.evaluate_record(node, &record, &m, request).await?;
    let guardians = record
        .members
        .iter()
        .map(|g| {
            node.node_info(*g)
                .map(|i| PinGuardian {
                    node: *g,
                    hpke: i.hpke,
                })
                .ok_or_else(|| NodeError::Unavailable(format!("no record of node {g}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let endorsements = node
        .registry(|r| r.recovery.pin_keys.get(name).cloned())
        .unwrap_or_default();
    Ok(SecretBeginResponse {
        evaluated_element: answer.evaluated_element,
        proof: answer.proof,
        public_key: record.public_key.clone(),
        epoch: record.epoch,
        threshold: record.threshold,
        guardians,
        session: record.session,
        group_key: record.group_key,
        endorsements,
        generation,
    })
}

/// Register: commit the record the client made (apply checks it).
pub async fn register(
    node: &Node,
    name: &str,
    req: RegisterSecretRequest,
    request: &httpsig::Request,
) -> Result<SecretInfo, NodeError> {
    node.require_rules(PIN_RULES, "PIN-protected secrets")?;
    let a = check_forwarded(node, &forwarded(request))?;
    let record = SecretRecord {
        account: name.to_string(),
        version: req.version,
        epoch: req.epoch,
        guesses: req.guesses,
        used: 0,
        stretch: req.stretch,
        salt: req.salt,
        commitments: req.commitments,
        ciphertext: req.ciphertext,
        shares: req.shares,
        registered_by: a.grant.name.clone(),
        last_guess: None,
        unlocked_by: Vec::new(),
        destroyed: false,
        generation: req.generation,
    };
    node.commit(by_request(
        request,
        RecoveryCommand::SecretRegister {
            record: Box::new(record),
        },
    ))
    .await?;
    info(node, name)
}

/// The public record (what recovering needs).
pub fn info(node: &Node, name: &str) -> Result<SecretInfo, NodeError> {
    let (s, k) = secret_and_key(node, name)?;
    Ok(SecretInfo {
        account: s.account,
        version: s.version,
        public_key: k.public_key,
        epoch: s.epoch,
        threshold: k.threshold,
        guardians: k.members,
        guesses: s.guesses,
        remaining: s.guesses.saturating_sub(s.used),
        stretch: s.stretch,
        salt: s.salt,
        commitments: s.commitments,
        ciphertext: s.ciphertext,
        destroyed: s.destroyed,
        generation: s.generation,
    })
}

/// Guess: counted in the log first, then evaluated by `t` guardians that
/// each count it themselves.
pub async fn guess(
    oprf: &Oprf,
    node: &Node,
    name: &str,
    req: GuessRequest,
    request: &httpsig::Request,
) -> Result<GuessResponse, NodeError> {
    node.require_rules(PIN_RULES, "PIN-protected secrets")?;
    let m = element(&req.blinded_element.0)?;
    let a = check_forwarded(node, &forwarded(request))?;
    if !super::authority::may_enrol(&a.grant) {
        return Err(NodeError::Forbidden(
            "a guess needs a client with the recovery permission, or an admin".into(),
        ));
    }
    let (s, _) = live_secret(node, name)?;
    if s.version != req.version {
        return Err(NodeError::Conflict(format!(
            "the secret of {name} is registration {}, not {}",
            hex::encode(&s.version.0),
            hex::encode(&req.version.0)
        )));
    }
    let id = request_id(&a.verified.keyid, &a.verified.nonce);
    node.commit(by_request(
        request,
        RecoveryCommand::PinGuess {
            account: name.to_string(),
            guess: GuessRecord {
                id: Hex(id.to_vec()),
                client: a.grant.name.clone(),
                blinded: Hex32(Sha256::digest(m.to_bytes()).into()),
            },
        },
    ))
    .await?;
    // Applied here (the commit waits for this node's apply).
    let (s, key) = live_secret(node, name)?;
    if s.last_guess.as_ref().map(|g| g.id.0.as_slice()) != Some(id.as_slice()) {
        return Err(NodeError::Conflict(
            "another guess was counted after this one: guess again".into(),
        ));
    }
    // The key's current generation: a refresh or repair keeps the key,
    // and so the PRF.
    let answer = oprf.evaluate_record(node, &key, &m, request).await?;
    Ok(GuessResponse {
        guess_id: Hex(id.to_vec()),
        evaluated_element: answer.evaluated_element,
        proof: answer.proof,
        remaining: s.guesses.saturating_sub(s.used),
    })
}

/// Unlock: each guardian in turn checks its tag and releases its share,
/// until `t` have.
pub async fn unlock(
    node: &Node,
    name: &str,
    req: UnlockRequest,
    request: &httpsig::Request,
) -> Result<UnlockResponse, NodeError> {
    node.require_rules(PIN_RULES, "PIN-protected secrets")?;
    id16(&req.guess_id.0, "guess_id")?;
    let (_, key) = live_secret(node, name)?;
    let t = usize::from(key.threshold);
    let order = me_first(&key.members, node.id(), 0);
    let fwd = forwarded(request);
    let asked = join_all(order.iter().map(|g| {
        let msg = PeerMessage::PinUnlock {
            request: fwd.clone(),
        };
        async move {
            let info = node
                .node_info(*g)
                .ok_or_else(|| NodeError::Unavailable(format!("no address for node {g}")))?;
            match node.call_signed(*g, &info, &msg).await?.1 {
                PeerMessage::PinShare { share } if share.node == *g => Ok(share),
                _ => Err(NodeError::Unavailable(format!(
                    "node {g} answered PinUnlock wrongly"
                ))),
            }
        }
    }))
    .await;
    let mut shares = Vec::with_capacity(t);
    let mut why = Vec::new();
    for (g, r) in order.iter().zip(asked) {
        match r {
            Ok(s) => shares.push(s),
            Err(e) => why.push(format!("node {g}: {e}")),
        }
    }
    if shares.len() < t {
        return Err(NodeError::Forbidden(format!(
            "fewer than {t} guardians released their share: {}",
            why.join("; ")
        )));
    }
    // All of them: the client tries t-subsets, so one guardian's wrong
    // share does not spoil the recovery.
    Ok(UnlockResponse { shares })
}

mod guardian;

pub(crate) use guardian::{authorize, release};
pub use guardian::{erase_retired, MAX_BEGINS};
