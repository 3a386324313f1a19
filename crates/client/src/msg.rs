//! A messaging endpoint (DESIGN.md §3.2): its secrets, kept in a local
//! sealed file, and the sender's and receiver's steps of
//! `keyquorum_core::msgkey` around the API calls.
//!
//! The file has the node vault's format (`keyquorum_store::Vault`: redb,
//! every value sealed with XChaCha20-Poly1305 under an Argon2id key from
//! the passphrase). It holds the endpoint's Ed25519 identity seed and the
//! secrets of its unused one-time prekeys; a prekey secret is deleted as
//! soon as the message sealed to it is processed, which is what makes
//! recorded traffic unreadable later even with the identity key.
//!
//! ```no_run
//! # async fn demo(c: keyquorum_client::Client) -> Result<(), keyquorum_client::ClientError> {
//! use keyquorum_client::msg::Endpoint;
//! use keyquorum_core::msgkey::Mode;
//! use keyquorum_store::{vault::KdfParams, Passphrase};
//! let pw = Passphrase::new(b"correct horse".to_vec());
//! let alice = Endpoint::create("alice.kqe".as_ref(), &pw, KdfParams::default(), "alice")?;
//! alice.register(&c, 20).await?;
//! let d = c.msg_deployment().await?;
//! alice.send(&c, &d, "bob", b"hello", 1, Mode::VerifyInTheExponent).await?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::Mutex as AsyncMutex;

use ed25519_dalek::SigningKey;
use keyquorum_core::msgkey::protocol::{
    self as mk, Confirmation, Outgoing, PrekeySecret, Recipient, Routing, Sealed,
    SignedConfirmation, SignedPrekey,
};
use keyquorum_core::msgkey::{Mode, MsgError};
use keyquorum_store::vault::{KdfParams, Op};
use keyquorum_store::{Passphrase, Table, Vault};
use keyquorum_wire::msg::{
    ClaimedPrekeys, CoordinatorBundle, CreateEndpointRequest, EndpointInfo, MailItem,
    MsgConfirmation, MsgDeployment, Prekey, SealedBox, SendRequest, SendResponse, MAX_CLAIM,
};
use keyquorum_wire::{Hex, Hex32, NodeId};
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::{Client, ClientError};

const SEED_SLOT: &[u8] = b"endpoint/ed25519-seed";
const NAME_SLOT: &[u8] = b"endpoint/name";

/// Publish more prekeys when fewer than this many are left unclaimed.
pub const PREKEY_LOW_WATER: u64 = 16;
/// How many to publish then.
pub const PREKEY_BATCH: usize = 64;

/// A messaging endpoint with its local sealed file.
pub struct Endpoint {
    name: String,
    signing: SigningKey,
    vault: Vault,
    /// Prekeys to reserve per claim ([`Self::with_claim_batch`]).
    claim_batch: u16,
    /// Reserved, not yet spent prekeys, by receiver (public values only:
    /// the secrets are the receiver's). One async lock per receiver: a
    /// sender that finds the queue empty claims while holding it, and the
    /// others wait for that claim instead of each claiming a batch.
    reserved: Mutex<HashMap<String, Arc<AsyncMutex<VecDeque<Reservation>>>>>,
}

/// A prekey of a receiver reserved for this sender through consensus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The receiver.
    pub endpoint: String,
    /// Its identity (the prekey signature verifies under it).
    pub identity: Hex32,
    /// The prekey.
    pub prekey: Prekey,
    /// When it was reserved (this side's clock, ms).
    pub at_ms: u64,
}

impl Reservation {
    /// Every prekey of one claim answer, stamped `at_ms`.
    pub fn all(claimed: &ClaimedPrekeys, at_ms: u64) -> Vec<Self> {
        claimed
            .prekeys
            .iter()
            .map(|p| Self {
                endpoint: claimed.endpoint.clone(),
                identity: claimed.identity,
                prekey: p.clone(),
                at_ms,
            })
            .collect()
    }
}

impl core::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("identity", &Hex32(self.identity()))
            .field("secrets", &"<redacted>")
            .finish()
    }
}

/// A built message not yet handed over ([`Endpoint::prepare`]).
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Its identifier.
    pub id: [u8; 32],
    /// The verification value every coordinator must confirm.
    pub expected: [u8; 32],
    /// The request as it goes to the cluster.
    pub request: SendRequest,
}

/// One message taken from the mailbox.
#[derive(Debug)]
pub struct Received {
    /// Message identifier.
    pub id: Hex32,
    /// The sending endpoint.
    pub from: String,
    /// The content, or why it was refused (a refused message is removed
    /// from the mailbox too: its prekey is spent).
    pub content: Result<Zeroizing<Vec<u8>>, ClientError>,
}

fn sealed(b: &SealedBox) -> Sealed {
    Sealed {
        enc: b.enc.0.clone(),
        ciphertext: b.ciphertext.0.clone(),
    }
}

fn sealed_box(s: &Sealed) -> SealedBox {
    SealedBox {
        enc: Hex(s.enc.clone()),
        ciphertext: Hex(s.ciphertext.clone()),
    }
}

fn sig64(h: &Hex) -> Result<[u8; 64], MsgError> {
    h.0.as_slice()
        .try_into()
        .map_err(|_| MsgError::Invalid("signature is not 64 bytes"))
}

fn confirmation(id: [u8; 32], c: &MsgConfirmation) -> Result<SignedConfirmation, MsgError> {
    Ok(SignedConfirmation {
        confirmation: Confirmation {
            id,
            node: u64::from(c.node),
            value: c.value.0,
            forwarded: sealed(&c.forwarded),
        },
        signature: sig64(&c.signature)?,
    })
}

/// The protocol's view of a deployment.
pub fn protocol_parts(d: &MsgDeployment) -> (mk::Deployment, Vec<mk::Node>) {
    (
        mk::Deployment {
            salt: d.salt.0.to_vec(),
            window_ms: d.window_ms,
        },
        route_nodes(&d.nodes),
    )
}

/// The protocol's view of a set of voting members.
fn route_nodes(nodes: &[keyquorum_wire::msg::MsgNode]) -> Vec<mk::Node> {
    nodes
        .iter()
        .map(|n| mk::Node {
            member: keyquorum_core::msgkey::route::Member {
                id: u64::from(n.id),
                identity: n.identity.0,
            },
            hpke: n.hpke.0,
        })
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Endpoint {
    /// Create the endpoint's sealed file at `path` with a fresh identity.
    /// Refuses a file that already holds an endpoint.
    pub fn create(
        path: &Path,
        passphrase: &Passphrase,
        kdf: KdfParams,
        name: &str,
    ) -> Result<Self, ClientError> {
        let vault = Vault::open(path, passphrase, kdf)?;
        if vault.get(Table::Identity, SEED_SLOT)?.is_some() {
            return Err(ClientError::Config(format!(
                "{} already holds an endpoint",
                path.display()
            )));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        rand_core::RngCore::fill_bytes(&mut OsRng, seed.as_mut());
        let signing = SigningKey::from_bytes(&seed);
        vault.put(Table::Identity, SEED_SLOT, signing.as_bytes())?;
        vault.put(Table::Identity, NAME_SLOT, name.as_bytes())?;
        Ok(Self {
            name: name.to_string(),
            signing,
            vault,
            claim_batch: 1,
            reserved: Mutex::default(),
        })
    }

    /// Open an existing endpoint file.
    pub fn open(path: &Path, passphrase: &Passphrase) -> Result<Self, ClientError> {
        if !path.exists() {
            return Err(ClientError::Config(format!(
                "no endpoint file at {}",
                path.display()
            )));
        }
        let vault = Vault::open(path, passphrase, KdfParams::default())?;
        let seed = vault
            .get(Table::Identity, SEED_SLOT)?
            .ok_or_else(|| ClientError::Config(format!("{} holds no endpoint", path.display())))?;
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            seed.as_slice()
                .try_into()
                .map_err(|_| ClientError::Config("endpoint seed is not 32 bytes".into()))?,
        );
        let name = vault
            .get(Table::Identity, NAME_SLOT)?
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .unwrap_or_default();
        Ok(Self {
            name,
            signing: SigningKey::from_bytes(&seed),
            vault,
            claim_batch: 1,
            reserved: Mutex::default(),
        })
    }

    /// Reserve `n` (1 ..= 64) of a receiver's prekeys per claim and spend
    /// them over the next messages to it: one consensus write per `n`
    /// messages instead of one per message. The default, 1, reserves
    /// nothing beyond the message at hand. Reservations this process does
    /// not spend (it exits, or one is older than the acceptance window and
    /// is skipped here) lapse in the cluster after twice the window; the
    /// receiver's replenishing covers them.
    #[must_use]
    pub fn with_claim_batch(mut self, n: u16) -> Self {
        self.claim_batch = n.clamp(1, MAX_CLAIM);
        self
    }

    /// Reserved prekeys not yet spent, over all receivers (a queue being
    /// refilled at this moment counts as empty).
    pub fn reserved(&self) -> usize {
        self.reserved
            .lock()
            .map(|r| {
                r.values()
                    .map(|q| q.try_lock().map_or(0, |q| q.len()))
                    .sum()
            })
            .unwrap_or(0)
    }

    /// One reserved prekey of `to`: a fresh enough one already held, or
    /// the first of a new claim (the rest are kept). With a claim batch of
    /// 1 this is one claim per call.
    pub async fn reserve(
        &self,
        c: &Client,
        deployment: &MsgDeployment,
        to: &str,
    ) -> Result<Reservation, ClientError> {
        // One claim: its first reservation, and the rest.
        let claim = || async {
            let at = now_ms();
            let claimed = c.claim_prekeys(to, &self.name, self.claim_batch).await?;
            let mut got = VecDeque::from(Reservation::all(&claimed, at));
            let first = got
                .pop_front()
                .ok_or(MsgError::Invalid("the cluster reserved no prekey"))?;
            Ok::<_, ClientError>((first, got))
        };
        if self.claim_batch == 1 {
            return claim().await.map(|(first, _)| first);
        }
        let queue = {
            let mut held = self
                .reserved
                .lock()
                .map_err(|_| ClientError::Config("reservation lock poisoned".into()))?;
            held.entry(to.to_string()).or_default().clone()
        };
        let mut queue = queue.lock().await;
        // A reservation younger than the window has not lapsed: the cluster
        // keeps unused claims for twice the window.
        let now_ms = now_ms();
        while let Some(r) = queue.pop_front() {
            if r.at_ms.saturating_add(deployment.window_ms) > now_ms {
                return Ok(r);
            }
        }
        let (first, rest) = claim().await?;
        *queue = rest;
        Ok(first)
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Ed25519 identity public key.
    pub fn identity(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// Make `n` fresh prekeys: the secrets go into the file, the signed
    /// public halves are returned for publishing.
    pub fn new_prekeys(&self, n: usize) -> Result<Vec<Prekey>, ClientError> {
        let made: Vec<(PrekeySecret, SignedPrekey)> = (0..n)
            .map(|_| mk::new_prekey(&mut OsRng, &self.signing))
            .collect();
        // One sealed write for the batch.
        let ops: Vec<Op<'_>> = made
            .iter()
            .map(|(secret, signed)| Op::Put(Table::Prekeys, &signed.public, secret.expose()))
            .collect();
        self.vault.apply(&ops)?;
        Ok(made
            .iter()
            .map(|(_, signed)| Prekey {
                public: Hex32(signed.public),
                signature: Hex(signed.signature.to_vec()),
            })
            .collect())
    }

    /// How many prekey secrets the file holds (published and unused).
    pub fn prekey_secrets(&self) -> Result<usize, ClientError> {
        Ok(self.vault.count(Table::Prekeys, b"")?)
    }

    /// Register with the cluster, publishing `prekeys` prekeys.
    pub async fn register(&self, c: &Client, prekeys: usize) -> Result<EndpointInfo, ClientError> {
        c.create_endpoint(&CreateEndpointRequest {
            name: self.name.clone(),
            identity: Hex32(self.identity()),
            prekeys: self.new_prekeys(prekeys)?,
        })
        .await
    }

    /// Publish another batch of prekeys if the cluster holds fewer than
    /// [`PREKEY_LOW_WATER`] unclaimed ones.
    pub async fn replenish(&self, c: &Client) -> Result<EndpointInfo, ClientError> {
        let info = c.endpoint(&self.name).await?;
        if info.prekeys_available >= PREKEY_LOW_WATER {
            return Ok(info);
        }
        c.publish_prekeys(&self.name, self.new_prekeys(PREKEY_BATCH)?)
            .await
    }

    /// Send `content` to endpoint `to` through `m` coordinators: claim one
    /// of its prekeys, build the message (the sender's step), hand it to
    /// the cluster, and check every coordinator's confirmation against the
    /// value this side expects.
    pub async fn send(
        &self,
        c: &Client,
        deployment: &MsgDeployment,
        to: &str,
        content: &[u8],
        m: u16,
        mode: Mode,
    ) -> Result<SendResponse, ClientError> {
        let prepared = self
            .prepare(c, deployment, to, content, m, mode, now_ms())
            .await?;
        self.submit(c, deployment, &prepared).await
    }

    /// The first half of [`Self::send`]: reserve a prekey of `to`
    /// ([`Self::reserve`]) and build the message stamped `time_ms`, without
    /// handing it over.
    #[allow(
        clippy::too_many_arguments,
        reason = "the sender's step with its whole input"
    )]
    pub async fn prepare(
        &self,
        c: &Client,
        deployment: &MsgDeployment,
        to: &str,
        content: &[u8],
        m: u16,
        mode: Mode,
        time_ms: u64,
    ) -> Result<Prepared, ClientError> {
        let reserved = self.reserve(c, deployment, to).await?;
        self.build(deployment, &reserved, content, m, mode, time_ms)
    }

    /// Build a message to the holder of a reserved prekey (the sender's
    /// step, no I/O).
    pub fn build(
        &self,
        deployment: &MsgDeployment,
        claimed: &Reservation,
        content: &[u8],
        m: u16,
        mode: Mode,
        time_ms: u64,
    ) -> Result<Prepared, ClientError> {
        let recipient = Recipient {
            identity: claimed.identity.0,
            prekey: SignedPrekey {
                public: claimed.prekey.public.0,
                signature: sig64(&claimed.prekey.signature)?,
            },
        };
        let (dep, nodes) = protocol_parts(deployment);
        let (out, expected) = mk::send(
            &mut OsRng,
            &dep,
            &self.signing,
            &recipient,
            &nodes,
            m,
            mode,
            time_ms,
            content,
        )?;
        let id = out.id;
        Ok(Prepared {
            id,
            expected,
            request: SendRequest {
                from: self.name.clone(),
                to: claimed.endpoint.clone(),
                header: Hex(out.header),
                signature: Hex(out.signature.to_vec()),
                payload: Hex(out.payload),
                for_receiver: sealed_box(&out.for_receiver),
                for_coordinators: out
                    .for_coordinators
                    .iter()
                    .map(|(node, s)| {
                        // Coordinators are picked from the deployment's
                        // nodes, whose ids are node ids.
                        let node = NodeId::try_from(*node)
                            .map_err(|_| MsgError::Invalid("coordinator id is not a node id"))?;
                        Ok(CoordinatorBundle {
                            node,
                            sealed: sealed_box(s),
                        })
                    })
                    .collect::<Result<_, MsgError>>()?,
            },
        })
    }

    /// The second half of [`Self::send`]: hand the message over and check
    /// every confirmation (node signature, and the value this side expects).
    pub async fn submit(
        &self,
        c: &Client,
        deployment: &MsgDeployment,
        prepared: &Prepared,
    ) -> Result<SendResponse, ClientError> {
        let resp = c.send_message(&prepared.request).await?;
        if resp.id.0 != prepared.id || resp.confirmations.is_empty() {
            return Err(MsgError::Invalid("the cluster answered for another message").into());
        }
        let (_, nodes) = protocol_parts(deployment);
        for conf in &resp.confirmations {
            let sc = confirmation(prepared.id, conf)?;
            mk::verify_confirmation(&nodes, &sc)?;
            if conf.value.0 != prepared.expected {
                return Err(MsgError::VerificationMismatch.into());
            }
        }
        Ok(resp)
    }

    /// Open one mailbox item (the receiver's step). The prekey secret it
    /// names is deleted afterwards whatever the outcome: the cluster spent
    /// it when it accepted the message.
    pub fn open_item(
        &self,
        deployment: &MsgDeployment,
        sender_identity: &[u8; 32],
        item: &MailItem,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        // The receiver's step decodes and checks the whole header.
        let header = Routing::from_header(&item.header.0)?;
        let secret = self
            .vault
            .get(Table::Prekeys, &header.prekey)?
            .ok_or(MsgError::Invalid(
                "the prekey it names is unknown here or already used",
            ))?;
        let prekey = PrekeySecret::from_bytes(
            secret
                .as_slice()
                .try_into()
                .map_err(|_| ClientError::Config("stored prekey is not 32 bytes".into()))?,
        );
        let (dep, nodes) = protocol_parts(deployment);
        let confirmations = item
            .confirmations
            .iter()
            .map(|c| confirmation(header.id, c))
            .collect::<Result<Vec<_>, _>>();
        // The membership now, then the earlier ones in force around the
        // time the sender signed (it was routed under one of them).
        let window = deployment.window_ms;
        let earlier = deployment.earlier.iter().filter(|r| {
            r.until_ms.saturating_add(window) >= header.time_ms
                && r.from_ms <= header.time_ms.saturating_add(window)
        });
        let candidates = std::iter::once(nodes).chain(earlier.map(|r| route_nodes(&r.nodes)));
        let open = |nodes: &[mk::Node]| {
            confirmations.clone().and_then(|confirmations| {
                mk::receive(
                    &dep,
                    &self.identity(),
                    &prekey,
                    nodes,
                    sender_identity,
                    &Outgoing {
                        id: header.id,
                        header: item.header.0.clone(),
                        signature: sig64(&item.signature)?,
                        payload: item.payload.0.clone(),
                        for_receiver: sealed(&item.for_receiver),
                        for_coordinators: Vec::new(),
                    },
                    &confirmations,
                )
            })
        };
        // The first that opens it; else why the current one did not (the
        // step is pure: trying several changes nothing).
        let mut result = None;
        for nodes in candidates {
            match open(&nodes) {
                Ok(v) => {
                    result = Some(Ok(v));
                    break;
                }
                Err(e) => {
                    result.get_or_insert(Err(e));
                }
            }
        }
        let result = result.unwrap_or(Err(MsgError::WrongCoordinator));
        self.vault.delete(Table::Prekeys, &header.prekey)?;
        Ok(Zeroizing::new(result?))
    }

    /// Take every waiting message: open each, remove them from the
    /// mailbox (page by page), and top up the published prekeys.
    pub async fn receive(
        &self,
        c: &Client,
        deployment: &MsgDeployment,
    ) -> Result<Vec<Received>, ClientError> {
        let mut senders: BTreeMap<String, Result<[u8; 32], String>> = BTreeMap::new();
        let mut out = Vec::new();
        // Items left in the mailbox (sender not found) come back at the
        // head of the next page: reported once.
        let mut left = BTreeSet::new();
        loop {
            let inbox = c.inbox(&self.name).await?;
            let mut done = Vec::new();
            for item in &inbox.messages {
                if left.contains(&item.id) {
                    continue;
                }
                let known = match senders.get(&item.from) {
                    Some(k) => k.clone(),
                    None => {
                        let who = c
                            .endpoint(&item.from)
                            .await
                            .map(|e| e.record.identity.0)
                            .map_err(|e| e.to_string());
                        senders.insert(item.from.clone(), who.clone());
                        who
                    }
                };
                // A sender that cannot be looked up now (a network error)
                // is left in the mailbox for the next call; everything
                // opened or refused is removed.
                let content = match known {
                    Ok(identity) => {
                        done.push(item.id);
                        self.open_item(deployment, &identity, item)
                    }
                    Err(e) => {
                        left.insert(item.id);
                        Err(ClientError::Config(format!(
                            "sender {} cannot be looked up: {e}",
                            item.from
                        )))
                    }
                };
                out.push(Received {
                    id: item.id,
                    from: item.from.clone(),
                    content,
                });
            }
            let progressed = !done.is_empty();
            if progressed {
                c.ack(&self.name, done).await?;
            }
            if !inbox.more || !progressed {
                break;
            }
        }
        self.replenish(c).await?;
        Ok(out)
    }
}
