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

/// What a PIN recovery gave.
#[derive(Debug)]
pub enum Recovered {
    /// The secret.
    Secret(zeroize::Zeroizing<Vec<u8>>),
    /// The PIN is wrong; this many guesses are left before the secret is
    /// destroyed.
    WrongPin {
        /// Guesses left.
        remaining: u16,
    },
}

fn pin_err(e: impl core::fmt::Display) -> ClientError {
    ClientError::Verification(format!("PIN recovery: {e}"))
}

fn wire_stretch(s: &keyquorum_core::oprf::pin::Stretch) -> keyquorum_wire::recovery::StretchParams {
    keyquorum_wire::recovery::StretchParams {
        m_kib: s.m_kib,
        t_cost: s.t_cost,
        p_cost: s.p_cost,
    }
}

/// Whether `t` of the PIN key's guardians, by the identity keys given,
/// endorsed the key `begun` names, and its public key is the group key's.
fn check_endorsed(
    account: &str,
    begun: &keyquorum_wire::recovery::SecretBeginResponse,
    identities: &[[u8; 32]],
) -> Result<(), ClientError> {
    let name = keyquorum_wire::recovery::pin_key_name(account);
    let group = GroupKey::<keyquorum_core::Ristretto255>::from_bytes(&begun.group_key.0)
        .map_err(|e| pin_err(format!("the PIN key's group key: {e}")))?;
    if group.public_key_bytes() != begun.public_key.0 || group.threshold() != begun.threshold {
        return Err(pin_err("the PIN key is not its group key's"));
    }
    let statement = keyquorum_wire::control::key_statement(
        &name,
        begun.epoch,
        &begun.session,
        &begun.group_key.0,
    );
    let mut signers = std::collections::BTreeSet::new();
    for e in &begun.endorsements {
        let sig = ed25519_dalek::Signature::from_slice(&e.signature.0);
        for id in identities {
            let ok = ed25519_dalek::VerifyingKey::from_bytes(id)
                .ok()
                .zip(sig.as_ref().ok())
                .is_some_and(|(vk, sig)| vk.verify_strict(&statement, sig).is_ok());
            if ok {
                signers.insert(*id);
            }
        }
    }
    if signers.len() < usize::from(begun.threshold) {
        return Err(pin_err(format!(
            "{} of the identity keys given endorsed the PIN key; {} needed",
            signers.len(),
            begun.threshold
        )));
    }
    Ok(())
}

/// Blind `stretched` and the evaluation's answer checked against
/// `public_key`: the 64-byte OPRF output.
fn output_of(
    state: &voprf::VoprfClient<voprf::Ristretto255>,
    stretched: &[u8],
    evaluated: &keyquorum_wire::Hex,
    proof: &keyquorum_wire::Hex,
    public_key: &[u8],
) -> Result<[u8; 64], ClientError> {
    let answer = keyquorum_wire::oprf::EvaluateResponse {
        evaluated_element: evaluated.clone(),
        proof: proof.clone(),
        members: Vec::new(),
        epoch: 0,
    };
    let out = crate::oprf::finalize(state, stretched, &answer, public_key)?;
    out.as_slice()
        .try_into()
        .map_err(|_| pin_err("the OPRF output is not 64 bytes"))
}

impl Client {
    /// Register `secret` (at most 128 bytes) for `account` under `pin`
    /// (an admin, or the client that enrolled the account): the PIN is
    /// stretched with Argon2id here, the guardians evaluate the account's
    /// PIN key on it blinded, and only tag commitments, sealed shares and
    /// the encrypted secret leave this process. Keep the answer's
    /// `public_key`: recovery pins it.
    ///
    /// `identities` are the members' Ed25519 identity keys you hold
    /// (`keyquorum node identity` on each): with them, the PIN key is
    /// trusted only once `t` of its guardians have endorsed it, so the node
    /// this client talks to cannot substitute a key of its own (and then
    /// test PINs offline against the record). Without them (empty) the
    /// node answering is trusted for the key, as with any key's creation.
    pub async fn recovery_secret_register(
        &self,
        account: &str,
        pin: &[u8],
        secret: &[u8],
        guesses: u16,
        cost: &keyquorum_core::oprf::pin::Stretch,
        identities: &[[u8; 32]],
    ) -> Result<keyquorum_wire::recovery::SecretInfo, ClientError> {
        use keyquorum_core::oprf::pin::{stretch, PinKeys, Registration};
        use keyquorum_wire::recovery::{
            PinTag, RegisterSecretRequest, SealedShare, SecretBeginRequest, SecretBeginResponse,
        };
        use rand_core::RngCore;
        let account = checked(account)?;
        if secret.len() > keyquorum_core::oprf::pin::MAX_SECRET {
            return Err(ClientError::Config("a secret is at most 128 bytes".into()));
        }
        let mut salt = [0u8; 16];
        let mut version = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut salt);
        rand_core::OsRng.fill_bytes(&mut version);
        let stretched = stretch(pin, account, &salt, cost).map_err(pin_err)?;
        let blind = voprf::VoprfClient::<voprf::Ristretto255>::blind(
            stretched.as_ref(),
            &mut rand_core::OsRng,
        )
        .map_err(|e| pin_err(format!("cannot blind: {e}")))?;
        let begun: SecretBeginResponse = self
            .post(
                &format!("/v1/recovery/accounts/{account}/secret/begin"),
                &SecretBeginRequest {
                    blinded_element: keyquorum_wire::Hex(blind.message.serialize().to_vec()),
                },
            )
            .await?;
        if !identities.is_empty() {
            check_endorsed(account, &begun, identities)?;
        }
        let output = output_of(
            &blind.state,
            stretched.as_ref(),
            &begun.evaluated_element,
            &begun.proof,
            &begun.public_key.0,
        )?;
        let keys = PinKeys::derive(&output, account, &version);
        let guardians: Vec<(u16, [u8; 32])> = begun
            .guardians
            .iter()
            .map(|g| (g.node.nonzero().get(), g.hpke.0))
            .collect();
        let reg = Registration::new(
            &keys,
            secret,
            account,
            &version,
            &guardians,
            begun.threshold,
            &mut rand_core::OsRng,
        )
        .map_err(pin_err)?;
        let node_of = |g: u16| {
            begun
                .guardians
                .iter()
                .find(|x| x.node.nonzero().get() == g)
                .map(|x| x.node)
                .ok_or_else(|| pin_err("a guardian the cluster did not name"))
        };
        let req = RegisterSecretRequest {
            version: keyquorum_wire::Hex(version.to_vec()),
            epoch: begun.epoch,
            guesses,
            stretch: wire_stretch(cost),
            salt: keyquorum_wire::Hex(salt.to_vec()),
            commitments: reg
                .commitments
                .iter()
                .map(|(g, c)| {
                    Ok(PinTag {
                        node: node_of(*g)?,
                        value: keyquorum_wire::Hex32(*c),
                    })
                })
                .collect::<Result<_, ClientError>>()?,
            ciphertext: keyquorum_wire::Hex(reg.ciphertext.clone()),
            shares: reg
                .shares
                .iter()
                .map(|(g, s)| {
                    Ok(SealedShare {
                        node: node_of(*g)?,
                        enc: keyquorum_wire::Hex32(s.enc),
                        sealed: keyquorum_wire::Hex(s.ct.clone()),
                    })
                })
                .collect::<Result<_, ClientError>>()?,
        };
        self.post(&format!("/v1/recovery/accounts/{account}/secret"), &req)
            .await
    }

    /// The account's secret record (salt, cost, guesses left).
    pub async fn recovery_secret(
        &self,
        account: &str,
    ) -> Result<keyquorum_wire::recovery::SecretInfo, ClientError> {
        let account = checked(account)?;
        self.get(&format!("/v1/recovery/accounts/{account}/secret"))
            .await
    }

    /// Recover `account`'s secret with `pin`: one counted guess. The
    /// evaluation is checked against `pinned_key` (the PIN key's public key
    /// from registration, never the one a node answers with: a node that
    /// could substitute its own key could test PINs offline).
    pub async fn recovery_secret_recover(
        &self,
        account: &str,
        pin: &[u8],
        pinned_key: &[u8],
    ) -> Result<Recovered, ClientError> {
        use keyquorum_core::oprf::pin::{open, stretch, PinKeys, Sealed, Stretch};
        use keyquorum_core::oprf::reset::DeviceSecret;
        use keyquorum_wire::recovery::{
            GuessRequest, GuessResponse, PinProof, UnlockRequest, UnlockResponse,
        };
        let account = checked(account)?;
        let info = self.recovery_secret(account).await?;
        if info.destroyed {
            return Err(pin_err(format!(
                "the secret of {account} was destroyed after {} wrong guesses",
                info.guesses
            )));
        }
        if info.public_key.0 != pinned_key {
            return Err(pin_err("the PIN key is not the pinned one"));
        }
        let salt: [u8; 16] = info
            .salt
            .0
            .as_slice()
            .try_into()
            .map_err(|_| pin_err("salt"))?;
        let version: [u8; 16] = info
            .version
            .0
            .as_slice()
            .try_into()
            .map_err(|_| pin_err("version"))?;
        let cost = Stretch {
            m_kib: info.stretch.m_kib,
            t_cost: info.stretch.t_cost,
            p_cost: info.stretch.p_cost,
        };
        let stretched = stretch(pin, account, &salt, &cost).map_err(pin_err)?;
        let blind = voprf::VoprfClient::<voprf::Ristretto255>::blind(
            stretched.as_ref(),
            &mut rand_core::OsRng,
        )
        .map_err(|e| pin_err(format!("cannot blind: {e}")))?;
        let guessed: GuessResponse = self
            .post(
                &format!("/v1/recovery/accounts/{account}/secret/guess"),
                &GuessRequest {
                    version: info.version.clone(),
                    blinded_element: keyquorum_wire::Hex(blind.message.serialize().to_vec()),
                },
            )
            .await?;
        let output = output_of(
            &blind.state,
            stretched.as_ref(),
            &guessed.evaluated_element,
            &guessed.proof,
            pinned_key,
        )?;
        let keys = PinKeys::derive(&output, account, &version);
        let right = info
            .commitments
            .iter()
            .filter(|c| keys.commitment(account, &version, c.node.nonzero().get()) == c.value.0)
            .count();
        if right < usize::from(info.threshold) {
            return Ok(Recovered::WrongPin {
                remaining: guessed.remaining,
            });
        }
        let guess: [u8; 16] = guessed
            .guess_id
            .0
            .as_slice()
            .try_into()
            .map_err(|_| pin_err("guess id"))?;
        let recipient = DeviceSecret::generate();
        let r = recipient.public_key();
        let proofs: Vec<PinProof> = info
            .commitments
            .iter()
            .map(|c| PinProof {
                node: c.node,
                signature: keyquorum_wire::Hex(
                    keys.prove(account, &version, c.node.nonzero().get(), &guess, &r)
                        .to_vec(),
                ),
            })
            .collect();
        let unlocked: UnlockResponse = self
            .post(
                &format!("/v1/recovery/accounts/{account}/secret/unlock"),
                &UnlockRequest {
                    version: info.version.clone(),
                    guess_id: guessed.guess_id.clone(),
                    proofs,
                    recipient: keyquorum_wire::Hex32(r),
                },
            )
            .await?;
        let released: Vec<(u16, Sealed)> = unlocked
            .shares
            .iter()
            .map(|s| {
                (
                    s.node.nonzero().get(),
                    Sealed {
                        enc: s.enc.0,
                        ct: s.sealed.0.clone(),
                    },
                )
            })
            .collect();
        let secret = open(
            &keys,
            &recipient,
            &released,
            info.threshold,
            &info.ciphertext.0,
            account,
            &version,
            &guess,
        )
        .map_err(pin_err)?;
        Ok(Recovered::Secret(secret))
    }
}
