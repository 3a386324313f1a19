//! Credential guardians' accounts (issue #20): enrol an account, read its
//! guardians, channels and reset public key. The device key pair is made
//! and kept by the caller (`keyquorum_core::oprf::reset::DeviceSecret`).

use keyquorum_wire::recovery::{AccountInfo, AccountList, CreateAccountRequest};

use crate::{Client, ClientError};

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
        // Account names are [A-Za-z0-9._-]: safe in a path segment.
        self.get(&format!("/v1/recovery/accounts/{account}")).await
    }

    /// Every account and the shard map's version.
    pub async fn recovery_accounts(&self) -> Result<AccountList, ClientError> {
        self.get("/v1/recovery/accounts").await
    }
}
