//! Credential guardians' accounts (issue #20): enrol an account, read its
//! guardians, channels and reset public key; open a reset request, read
//! its package and the `app` inbox, and assemble the token from the
//! fragments. The device key pair is made and kept by the caller
//! (`keyquorum_core::oprf::reset::DeviceSecret`).

use keyquorum_core::codec::Decode;
use keyquorum_core::oprf::reset::{self, DeviceSecret, Fragment, ResetMessage};
use keyquorum_core::sign::SigningCommitment;
use keyquorum_core::{Ed25519, GroupKey};
use keyquorum_wire::recovery::{
    AccountInbox, AccountInfo, AccountList, CreateAccountRequest, ResetPackage, ResetRequest,
    ResetResponse, RotateAccountRequest,
};

use crate::{Client, ClientError};

fn checked(account: &str) -> Result<&str, ClientError> {
    reset::check_account(account)
        .map(|()| account)
        .map_err(|e| ClientError::Config(e.to_string()))
}

impl Client {
    /// Enrol an account (a client with the `recovery` permission, or an
    /// admin).
    pub async fn recovery_account_create(
        &self,
        req: &CreateAccountRequest,
    ) -> Result<AccountInfo, ClientError> {
        self.post("/v1/recovery/accounts", req).await
    }

    /// Account `account`'s guardians, channels and reset public key.
    pub async fn recovery_account(&self, account: &str) -> Result<AccountInfo, ClientError> {
        let account = checked(account)?;
        self.get(&format!("/v1/recovery/accounts/{account}")).await
    }

    /// Move an account to the guardians rendezvous hashing picks now (the
    /// reset public key stays).
    pub async fn recovery_account_rotate(
        &self,
        account: &str,
        req: &RotateAccountRequest,
    ) -> Result<AccountInfo, ClientError> {
        let account = checked(account)?;
        self.post(&format!("/v1/recovery/accounts/{account}/rotate"), req)
            .await
    }

    /// Every account and the shard map's version.
    pub async fn recovery_accounts(&self) -> Result<AccountList, ClientError> {
        self.get("/v1/recovery/accounts").await
    }

    /// Open a reset request for `account` (any client; rate-limited).
    pub async fn recovery_reset(
        &self,
        account: &str,
        req: &ResetRequest,
    ) -> Result<ResetResponse, ClientError> {
        let account = checked(account)?;
        self.post(&format!("/v1/recovery/accounts/{account}/resets"), req)
            .await
    }

    /// The package of live reset request `request_id` (hex).
    pub async fn recovery_reset_package(
        &self,
        account: &str,
        request_id: &str,
    ) -> Result<ResetPackage, ClientError> {
        let account = checked(account)?;
        if request_id.len() != 32 || !request_id.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(ClientError::Config(
                "a reset request id is 16 bytes of hex".into(),
            ));
        }
        self.get(&format!(
            "/v1/recovery/accounts/{account}/resets/{request_id}"
        ))
        .await
    }

    /// The account's `app` inbox.
    pub async fn recovery_inbox(&self, account: &str) -> Result<AccountInbox, ClientError> {
        let account = checked(account)?;
        self.get(&format!("/v1/recovery/accounts/{account}/inbox"))
            .await
    }
}

/// An assembled reset token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetToken {
    /// The Ed25519 signature (64 bytes): the token.
    pub token: Vec<u8>,
    /// The signed bytes (`keyquorum-reset-v1` layout).
    pub message: Vec<u8>,
    /// The reset public key it verifies under.
    pub reset_public_key: Vec<u8>,
}

/// What the user asked a reset for: assembling checks the package's
/// message against it, so a node cannot hand over the package of another
/// request (say, one an attacker opened for the same account with its own
/// credential hash) for the user's fragments to complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetClaim {
    /// The account.
    pub account: String,
    /// The request id the user's request opened.
    pub request_id: [u8; 16],
    /// The hash of the credential the user asked to set.
    pub credential_hash: [u8; 32],
}

/// Assemble reset request `package`'s token from its fragments with the
/// device's secret key, against what the user asked for (`claim`) and the
/// account's pinned reset public key (`pinned`, 32 bytes: from enrolment,
/// never from the package alone). Checks the package's key against
/// `pinned`, its message against `claim` and against its own account and
/// request id, each share against its signer's verifying share (a bad one
/// names its guardian), and the token with an ordinary Ed25519
/// verification. Fewer than `t` fragments, a fragment of another request
/// or a repeated one is an error.
pub fn assemble_reset(
    package: &ResetPackage,
    claim: &ResetClaim,
    pinned: &[u8],
    fragments: &[String],
    device: &DeviceSecret,
) -> Result<ResetToken, ClientError> {
    let fail = |m: String| ClientError::Verification(m);
    let group = GroupKey::<Ed25519>::from_bytes(&package.group_key.0)
        .map_err(|e| fail(format!("the package's group key: {e}")))?;
    if group.public_key_bytes() != pinned || package.reset_public_key.0 != pinned {
        return Err(fail(
            "the package's reset key is not the account's pinned reset public key".into(),
        ));
    }
    let message = ResetMessage::from_bytes(&package.message.0)
        .map_err(|e| fail(format!("the package's message: {e}")))?;
    if message.account != package.account || message.request_id.as_slice() != package.request_id.0 {
        return Err(fail(
            "the package's message is of another account or request".into(),
        ));
    }
    if message.account != claim.account
        || message.request_id != claim.request_id
        || message.credential_hash != claim.credential_hash
    {
        return Err(fail(
            "the package is not of the reset asked for (another account, request or credential \
             hash)"
                .into(),
        ));
    }
    let commitments = package
        .commitments
        .iter()
        .map(|c| {
            let s = SigningCommitment::<Ed25519>::from_bytes(&c.commitment.0)
                .map_err(|e| fail(format!("guardian {}'s commitment: {e}", c.node)))?;
            if u64::from(s.signer().get()) != u64::from(c.node) {
                return Err(fail(format!(
                    "guardian {}'s commitment is another's",
                    c.node
                )));
            }
            Ok(s)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let fragments = fragments
        .iter()
        .map(|f| Fragment::from_text(f).map_err(|e| fail(format!("fragment: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let sig = reset::assemble(
        &group,
        reset::session(&message.request_id),
        &message,
        commitments,
        &fragments,
        device,
    )
    .map_err(|e| fail(format!("assembling the token: {e}")))?;
    let token = sig.to_bytes();
    keyquorum_core::sign::verify::<Ed25519>(pinned, &package.message.0, &token)
        .map_err(|e| fail(format!("the token does not verify: {e}")))?;
    Ok(ResetToken {
        token,
        message: package.message.0.clone(),
        reset_public_key: pinned.to_vec(),
    })
}
