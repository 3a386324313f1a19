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
}
