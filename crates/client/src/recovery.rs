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

/// The guardians a client expects an account's PIN key on: each node with
/// the identity key you hold for it (`keyquorum node identity` on each),
/// and the threshold the account was enrolled with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedGuardians {
    /// `(node, identity key)`, one per guardian.
    pub guardians: Vec<(keyquorum_wire::NodeId, [u8; 32])>,
    /// Guardians that act together.
    pub threshold: u16,
}

/// Whether the PIN key `begun` names is on exactly the expected guardians
/// with the expected threshold, endorsed by at least that many of them
/// (each by its own identity key), and its public key is the group key's.
/// The node answering chooses nothing here: a key that t − 1 guardians
/// made up among themselves cannot pass.
fn check_endorsed(
    account: &str,
    begun: &keyquorum_wire::recovery::SecretBeginResponse,
    expect: &ExpectedGuardians,
) -> Result<(), ClientError> {
    use std::collections::BTreeSet;
    let name = keyquorum_wire::recovery::pin_key_name_at(account, begun.generation);
    let group = GroupKey::<keyquorum_core::Ristretto255>::from_bytes(&begun.group_key.0)
        .map_err(|e| pin_err(format!("the PIN key's group key: {e}")))?;
    let ids: BTreeSet<keyquorum_wire::NodeId> = expect.guardians.iter().map(|(n, _)| *n).collect();
    let members: BTreeSet<keyquorum_wire::NodeId> = group
        .members()
        .iter()
        .map(|p| keyquorum_wire::NodeId::from(p.nonzero()))
        .collect();
    let named: BTreeSet<keyquorum_wire::NodeId> = begun.guardians.iter().map(|g| g.node).collect();
    if ids.len() != expect.guardians.len()
        || members != ids
        || named != ids
        || group.threshold() != expect.threshold
        || begun.threshold != expect.threshold
        || group.public_key_bytes() != begun.public_key.0
    {
        return Err(pin_err(
            "the PIN key is not on the expected guardians with the expected threshold",
        ));
    }
    let statement = keyquorum_wire::control::key_statement(
        &name,
        begun.epoch,
        &begun.session,
        &begun.group_key.0,
    );
    let signers: BTreeSet<keyquorum_wire::NodeId> = begun
        .endorsements
        .iter()
        .filter(|e| {
            let key = expect.guardians.iter().find(|(n, _)| *n == e.node);
            let sig = ed25519_dalek::Signature::from_slice(&e.signature.0);
            match (key, sig) {
                (Some((_, k)), Ok(sig)) => ed25519_dalek::VerifyingKey::from_bytes(k)
                    .is_ok_and(|vk| vk.verify_strict(&statement, &sig).is_ok()),
                _ => false,
            }
        })
        .map(|e| e.node)
        .collect();
    if signers.len() < usize::from(expect.threshold) {
        return Err(pin_err(format!(
            "{} of the expected guardians endorsed the PIN key; {} needed",
            signers.len(),
            expect.threshold
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
    /// With `expect` (the account's guardians, each with the identity key
    /// you hold for it, and its threshold) the PIN key is trusted only on
    /// exactly those guardians and once `t` of them have endorsed it, so
    /// the node this client talks to cannot substitute a key of its own
    /// (and then test PINs offline against the record). Without it the
    /// node answering is trusted for the key, as at any key's creation.
    pub async fn recovery_secret_register(
        &self,
        account: &str,
        pin: &[u8],
        secret: &[u8],
        guesses: u16,
        cost: &keyquorum_core::oprf::pin::Stretch,
        expect: Option<&ExpectedGuardians>,
    ) -> Result<keyquorum_wire::recovery::SecretInfo, ClientError> {
        self.register_secret(account, None, pin, secret, guesses, cost, expect)
            .await
    }

    /// Register `secret` again for the account of `replaces` (its current
    /// record, live or destroyed, as [`Self::recovery_secret`] gave it),
    /// under `pin` (the same or a new one): the same clients may as for a
    /// first registration (apply rules 16). The guardians make a new PIN
    /// key on the account's guardians of the day (after a rotation or a
    /// drain, the new ones) and evaluate it; once the new record commits,
    /// the old one and its key are gone and their guardians erase their
    /// shares. The answer's `public_key` is the new key to pin. To move a
    /// secret whose PIN you know, recover it first
    /// ([`Self::recovery_secret_recover`]), then register it again.
    pub async fn recovery_secret_register_again(
        &self,
        replaces: &keyquorum_wire::recovery::SecretInfo,
        pin: &[u8],
        secret: &[u8],
        guesses: u16,
        cost: &keyquorum_core::oprf::pin::Stretch,
        expect: Option<&ExpectedGuardians>,
    ) -> Result<keyquorum_wire::recovery::SecretInfo, ClientError> {
        let replace = Some(replaces.version.clone());
        self.register_secret(
            &replaces.account,
            replace,
            pin,
            secret,
            guesses,
            cost,
            expect,
        )
        .await
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the two public registrations' arguments and the record replaced"
    )]
    async fn register_secret(
        &self,
        account: &str,
        replace: Option<keyquorum_wire::Hex>,
        pin: &[u8],
        secret: &[u8],
        guesses: u16,
        cost: &keyquorum_core::oprf::pin::Stretch,
        expect: Option<&ExpectedGuardians>,
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
                    replace: replace.clone(),
                },
            )
            .await?;
        if let Some(expect) = expect {
            check_endorsed(account, &begun, expect)?;
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
            generation: begun.generation,
            replace,
        };
        let info: keyquorum_wire::recovery::SecretInfo = self
            .post(&format!("/v1/recovery/accounts/{account}/secret"), &req)
            .await?;
        // The key to pin is the one evaluated (and, with `expect`, checked
        // above), never one the answering node names.
        if info.public_key != begun.public_key
            || info.generation != begun.generation
            || info.version.0 != version
        {
            return Err(pin_err(
                "the registered record is not the one made here (another PIN key or version)",
            ));
        }
        Ok(info)
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
        // Only the record's guardians, and only ids that came once (a
        // share is not signed: a node could add shares of its own).
        let ids: Vec<u16> = unlocked
            .shares
            .iter()
            .map(|s| s.node.nonzero().get())
            .collect();
        let released: Vec<(u16, Sealed)> = unlocked
            .shares
            .iter()
            .filter(|s| {
                let id = s.node.nonzero().get();
                ids.iter().filter(|x| **x == id).count() == 1
                    && info.commitments.iter().any(|c| c.node == s.node)
            })
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

#[cfg(test)]
mod tests {
    //! `check_endorsed` against a node that answers a begin with a PIN key
    //! of its own making.
    use super::*;
    use ed25519_dalek::Signer as _;
    use keyquorum_core::codec::Encode as _;
    use keyquorum_core::{local, ParticipantId, Ristretto255, SessionId};
    use keyquorum_wire::control::{key_statement, Endorsement};
    use keyquorum_wire::recovery::{PinGuardian, SecretBeginResponse};
    use keyquorum_wire::{Hex, Hex32, NodeId};

    fn node(i: u16) -> NodeId {
        NodeId::try_from(u64::from(i)).unwrap()
    }

    fn identity(i: u16) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[u8::try_from(i).unwrap(); 32])
    }

    /// A begin answer for a key on `members` with threshold `t`, endorsed
    /// by `signers` (`(claimed node, whose key signs)`).
    fn answer(members: &[u16], t: u16, signers: &[(u16, u16)]) -> SecretBeginResponse {
        let ids = members
            .iter()
            .map(|i| ParticipantId::new(*i).unwrap())
            .collect();
        let h = local::dkg::<Ristretto255, _>(SessionId([1; 32]), t, &ids, &mut rand_core::OsRng)
            .unwrap();
        let group_key = h.group.to_bytes();
        let session = Hex32([2; 32]);
        let statement = key_statement("pin.alice", 1, &session, &group_key);
        SecretBeginResponse {
            evaluated_element: Hex(Vec::new()),
            proof: Hex(Vec::new()),
            public_key: Hex(h.group.public_key_bytes()),
            epoch: 1,
            threshold: t,
            guardians: members
                .iter()
                .map(|i| PinGuardian {
                    node: node(*i),
                    hpke: Hex32([0; 32]),
                })
                .collect(),
            session,
            group_key: Hex(group_key),
            endorsements: signers
                .iter()
                .map(|(claimed, by)| Endorsement {
                    node: node(*claimed),
                    signature: Hex(identity(*by).sign(&statement).to_bytes().to_vec()),
                })
                .collect(),
            generation: 1,
        }
    }

    #[test]
    fn only_the_expected_guardians_endorsing_at_the_threshold_pass() {
        let expect = ExpectedGuardians {
            guardians: (1..=5)
                .map(|i| (node(i), identity(i).verifying_key().to_bytes()))
                .collect(),
            threshold: 3,
        };
        let all = [1, 2, 3, 4, 5];
        let good = answer(&all, 3, &[(1, 1), (2, 2), (4, 4)]);
        assert!(check_endorsed("alice", &good, &expect).is_ok());
        // Two guardians' own 2-of-2 key, both endorsing it.
        let theirs = answer(&[1, 2], 2, &[(1, 1), (2, 2)]);
        assert!(check_endorsed("alice", &theirs, &expect).is_err());
        // A 2-of-5 key on the right members, endorsed by two.
        let low = answer(&all, 2, &[(1, 1), (2, 2)]);
        assert!(check_endorsed("alice", &low, &expect).is_err());
        // The right shape, two endorsements, one of them counted twice or
        // claimed for another node.
        let two = answer(&all, 3, &[(1, 1), (2, 2), (2, 2)]);
        assert!(check_endorsed("alice", &two, &expect).is_err());
        let claimed = answer(&all, 3, &[(1, 1), (2, 2), (3, 1)]);
        assert!(check_endorsed("alice", &claimed, &expect).is_err());
        // The answer's public key is not the group key's.
        let mut other = good.clone();
        other.public_key = Hex(vec![7; 32]);
        assert!(check_endorsed("alice", &other, &expect).is_err());
        // Another account's key name.
        assert!(check_endorsed("bob", &good, &expect).is_err());
        // The first generation's key, endorsed as such, answered as the
        // second (a registration again must get a key of its own).
        let mut later = good.clone();
        later.generation = 2;
        assert!(check_endorsed("alice", &later, &expect).is_err());
    }
}
