//! The guardians' part of the replicated state machine. OPRF keys are
//! ordinary key records (`oprf.NAME`, suite ristretto255); what is theirs
//! is the apply rule that lets `POST /v1/oprf/keys` create one
//! (`crate::cluster::machine::authority`). Accounts (apply rules 9) are
//! records here, each with its reset key `reset.ACCOUNT` in the key
//! registry, committed together ([`RecoveryState::create`]).

use std::collections::BTreeMap;

use keyquorum_wire::control::{CommandResponse, KeyRecord};
use keyquorum_wire::recovery::{AccountRecord, GuessRecord, InboxItem, ResetRecord, SecretRecord};
use keyquorum_wire::NodeId;
use serde::{Deserialize, Serialize};

/// Apply rules from which OPRF keys exist
/// (`keyquorum_wire::control::APPLY_RULES`).
pub const OPRF_RULES: u16 = 8;

/// Apply rules from which accounts and the `recovery` permission exist.
pub const ACCOUNT_RULES: u16 = 9;

/// Apply rules from which reset requests exist.
pub const RESET_RULES: u16 = 10;

/// Apply rules from which PIN-protected secrets exist.
pub const PIN_RULES: u16 = 11;

/// Apply rules from which a secret is registered again (on a new PIN key
/// generation, `pin.ACCOUNT~G`, made on the account's guardians of the
/// day), replacing a live or destroyed record.
pub const AGAIN_RULES: u16 = 16;

/// The window the reset rate limits count over (ms).
pub const RESET_WINDOW_MS: u64 = 3_600_000;

/// Reset requests one account may have opened within the window (any
/// client may open one: this bounds the deliveries to its channels).
pub const RESETS_PER_ACCOUNT: usize = 5;

/// Reset requests one client may have opened for one account within the
/// window (so one client cannot use up an account's resets alone).
pub const RESETS_PER_CLIENT_ACCOUNT: usize = 2;

/// Reset requests one client may have opened within the window.
pub const RESETS_PER_CLIENT: usize = 30;

/// Accounts by name, and the shard map's version (every enrolment and
/// rotation counts one); reset requests live or within the rate limits'
/// window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryState {
    /// Accounts by name.
    pub accounts: BTreeMap<String, AccountRecord>,
    /// The shard map's version.
    pub version: u64,
    /// Reset requests by request id (hex), kept until they have expired
    /// and left the rate limits' window.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resets: BTreeMap<String, ResetRecord>,
    /// PIN-protected secrets by account (apply rules 11).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRecord>,
    /// Accounts' PIN keys (made by `pin_key`), with the guardians'
    /// endorsements a client may check.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pin_keys: BTreeMap<String, Vec<keyquorum_wire::control::Endorsement>>,
    /// The latest PIN key generation of each account that has made more
    /// than one (apply rules 16); absent: 1 if the account has a PIN key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pin_generations: BTreeMap<String, u32>,
}

impl RecoveryState {
    /// Nothing enrolled (left out of snapshots, which then read as
    /// before).
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
            && self.version == 0
            && self.resets.is_empty()
            && self.secrets.is_empty()
            && self.pin_keys.is_empty()
            && self.pin_generations.is_empty()
    }

    /// The generation of `account`'s latest PIN key (0: none yet).
    pub fn pin_generation(&self, account: &str) -> u32 {
        match self.pin_generations.get(account) {
            Some(g) => *g,
            None => u32::from(self.pin_keys.contains_key(account)),
        }
    }

    /// The generations of `account`'s PIN keys in use: the latest (unless
    /// its secret was destroyed on it) and the live secret's.
    pub fn pin_generations_in_use(&self, account: &str) -> Vec<u32> {
        let latest = self.pin_generation(account);
        let secret = self.secrets.get(account);
        let mut keep = Vec::new();
        if latest > 0 && !secret.is_some_and(|s| s.destroyed && s.generation == latest) {
            keep.push(latest);
        }
        if let Some(s) = secret.filter(|s| !s.destroyed && s.generation != latest) {
            keep.push(s.generation);
        }
        keep
    }

    /// Move `account` to its new guardians with its reset key's next
    /// generation (checked against the request by `super::authority`):
    /// refused unless the key is still at the generation before.
    pub fn rotate(
        &mut self,
        account: &AccountRecord,
        key: &KeyRecord,
        keys: &mut BTreeMap<String, KeyRecord>,
    ) -> CommandResponse {
        let Some(entry) = self.accounts.get_mut(&account.account) else {
            return CommandResponse::rejected(format!("no account {}", account.account));
        };
        if keys.get(&key.name).map(|k| k.epoch + 1) != Some(key.epoch) {
            return CommandResponse::rejected(format!(
                "{} is no longer at generation {}",
                key.name,
                key.epoch.saturating_sub(1)
            ));
        }
        self.version += 1;
        entry.guardians = account.guardians.clone();
        entry.threshold = account.threshold;
        entry.version = self.version;
        keys.insert(key.name.clone(), key.clone());
        CommandResponse::Ok
    }

    /// Whether `client` may open a reset of `account` at log time
    /// `now_ms`: within [`RESET_WINDOW_MS`], fewer than
    /// [`RESETS_PER_ACCOUNT`] for the account, [`RESETS_PER_CLIENT_ACCOUNT`]
    /// by the client for it and [`RESETS_PER_CLIENT`] by the client (counted
    /// from when each was committed, by the log clock).
    pub fn reset_limits(&self, account: &str, client: &str, now_ms: u64) -> Result<(), String> {
        let since = now_ms.saturating_sub(RESET_WINDOW_MS);
        let recent = |f: &dyn Fn(&ResetRecord) -> bool| {
            self.resets
                .values()
                .filter(|r| r.opened_ms >= since && f(r))
                .count()
        };
        if recent(&|r| r.account == account) >= RESETS_PER_ACCOUNT {
            return Err(format!(
                "rate limit: account {account} had {RESETS_PER_ACCOUNT} reset requests in the last hour"
            ));
        }
        if recent(&|r| r.account == account && r.requested_by == client)
            >= RESETS_PER_CLIENT_ACCOUNT
        {
            return Err(format!(
                "rate limit: client {client} opened {RESETS_PER_CLIENT_ACCOUNT} reset requests \
                 of {account} in the last hour"
            ));
        }
        if recent(&|r| r.requested_by == client) >= RESETS_PER_CLIENT {
            return Err(format!(
                "rate limit: client {client} opened {RESETS_PER_CLIENT} reset requests in the last hour"
            ));
        }
        Ok(())
    }

    /// Open reset request `reset` (its shape already checked by
    /// `super::authority`) at log time `now_ms`: refused for a request id
    /// seen before or past [`Self::reset_limits`]. Requests that have
    /// expired and left the window are dropped first.
    pub fn open_reset(&mut self, reset: &ResetRecord, now_ms: u64) -> CommandResponse {
        let since = now_ms.saturating_sub(RESET_WINDOW_MS);
        self.resets
            .retain(|_, r| r.opened_ms >= since || r.expires.saturating_mul(1000) > now_ms);
        let id = hex::encode(&reset.request_id.0);
        if self.resets.contains_key(&id) {
            return CommandResponse::rejected(format!("reset request {id} exists"));
        }
        if let Err(e) = self.reset_limits(&reset.account, &reset.requested_by, now_ms) {
            return CommandResponse::rejected(e);
        }
        let mut entry = reset.clone();
        entry.opened_ms = now_ms;
        self.resets.insert(id, entry);
        CommandResponse::Ok
    }

    /// Put a signer's fragment in the account's inbox (checked by
    /// `super::authority::may_state`).
    pub fn add_to_inbox(&mut self, account: &str, item: &InboxItem) -> CommandResponse {
        match self
            .resets
            .get_mut(&hex::encode(&item.request_id.0))
            .filter(|r| r.account == account)
        {
            Some(r) if !r.inbox.iter().any(|i| i.guardian == item.guardian) => {
                r.inbox.push(item.clone());
                CommandResponse::Ok
            }
            Some(_) => CommandResponse::rejected("one fragment per signer"),
            None => CommandResponse::rejected("no such reset request"),
        }
    }

    /// Enrol `account` with its reset key's first generation (already
    /// checked against the request by `super::authority`).
    pub fn create(
        &mut self,
        account: &AccountRecord,
        key: &KeyRecord,
        keys: &mut BTreeMap<String, KeyRecord>,
    ) -> CommandResponse {
        if self.accounts.contains_key(&account.account) {
            return CommandResponse::rejected(format!("account {} exists", account.account));
        }
        if keys.contains_key(&key.name) {
            return CommandResponse::rejected(format!("a key named {} exists", key.name));
        }
        self.version += 1;
        keys.insert(key.name.clone(), key.clone());
        let mut entry = account.clone();
        entry.version = self.version;
        self.accounts.insert(entry.account.clone(), entry);
        CommandResponse::Ok
    }

    /// Add `account`'s PIN key (checked by `super::authority`).
    pub fn pin_key(
        &mut self,
        account: &str,
        key: &KeyRecord,
        endorsements: &[keyquorum_wire::control::Endorsement],
        keys: &mut BTreeMap<String, KeyRecord>,
    ) -> CommandResponse {
        if !self.accounts.contains_key(account) {
            return CommandResponse::rejected(format!("no account {account}"));
        }
        let latest = self.pin_generation(account);
        let next = latest.saturating_add(1);
        if keys.contains_key(&key.name)
            || key.name != keyquorum_wire::recovery::pin_key_name_at(account, next)
        {
            return CommandResponse::rejected(format!(
                "{account}'s next PIN key is its generation {next}"
            ));
        }
        let secret = self.secrets.get(account).map(|s| s.generation);
        if latest == 0 && secret.is_some() {
            return CommandResponse::rejected(format!("{account} has a secret"));
        }
        // A later generation made before, never registered, is replaced
        // (its members erase it); the live secret's key stays.
        if latest > 0 && secret != Some(latest) {
            keys.remove(&keyquorum_wire::recovery::pin_key_name_at(account, latest));
        }
        keys.insert(key.name.clone(), key.clone());
        self.pin_keys
            .insert(account.to_string(), endorsements.to_vec());
        if next > 1 {
            self.pin_generations.insert(account.to_string(), next);
        }
        CommandResponse::Ok
    }

    /// Register a secret (checked by `super::authority`), on the account's
    /// latest PIN key; one that replaces a record (registering again)
    /// takes the replaced record's key out of the registry, and its
    /// guardians erase their shares of it
    /// (`crate::recovery::pin::erase_retired`).
    pub fn register_secret(
        &mut self,
        record: &SecretRecord,
        keys: &mut BTreeMap<String, KeyRecord>,
    ) -> CommandResponse {
        let latest = self.pin_generation(&record.account);
        if latest == 0 {
            return CommandResponse::rejected(format!("{} has no PIN key", record.account));
        }
        if record.generation != latest {
            return CommandResponse::rejected(format!(
                "{}'s latest PIN key is its generation {latest}",
                record.account
            ));
        }
        if let Some(old) = self.secrets.get(&record.account) {
            if old.generation >= latest {
                return CommandResponse::rejected(format!("{} has a secret", record.account));
            }
            keys.remove(&keyquorum_wire::recovery::pin_key_name_at(
                &record.account,
                old.generation,
            ));
        }
        self.secrets.insert(record.account.clone(), record.clone());
        CommandResponse::Ok
    }

    /// Count a guess; with none left, destroy the record instead (its
    /// shares and commitments go; guardians erase their PIN key shares).
    pub fn guess(&mut self, account: &str, guess: &GuessRecord) -> CommandResponse {
        let Some(s) = self.secrets.get_mut(account).filter(|s| !s.destroyed) else {
            return CommandResponse::rejected(format!("{account} has no live secret"));
        };
        if s.last_guess.as_ref().is_some_and(|g| g.id == guess.id) {
            return CommandResponse::rejected("this guess was counted");
        }
        if s.used >= s.guesses {
            s.destroyed = true;
            s.shares.clear();
            s.commitments.clear();
            s.ciphertext = keyquorum_wire::Hex(Vec::new());
            s.last_guess = None;
            s.unlocked_by.clear();
            return CommandResponse::Ok;
        }
        s.used += 1;
        s.last_guess = Some(guess.clone());
        s.unlocked_by.clear();
        CommandResponse::Ok
    }

    /// Guardian `node` released its share for guess `guess_id` (checked by
    /// `super::authority::may_state`); once `threshold` have, the count
    /// starts again.
    pub fn unlocked(
        &mut self,
        account: &str,
        guess_id: &keyquorum_wire::Hex,
        node: NodeId,
        threshold: u16,
    ) -> CommandResponse {
        let Some(s) = self.secrets.get_mut(account).filter(|s| !s.destroyed) else {
            return CommandResponse::rejected(format!("{account} has no live secret"));
        };
        if s.last_guess.as_ref().map(|g| &g.id) != Some(guess_id) {
            return CommandResponse::rejected("not the last guess");
        }
        if !s.unlocked_by.contains(&node) {
            s.unlocked_by.push(node);
        }
        if s.unlocked_by.len() >= usize::from(threshold) {
            s.used = 0;
        }
        CommandResponse::Ok
    }
}
