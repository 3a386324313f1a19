//! Credential guardians on the node (DESIGN.md §3.4; issue #20): the
//! threshold VOPRF service (item 4, here), accounts and rotation
//! ([`account`]), reset tokens ([`reset`]) and PIN-protected secrets
//! ([`pin`], whose guesses are evaluated by this service's rounds with
//! the guardian's own checks, `pin::authorize`).
//!
//! - **Keys** (`POST /v1/oprf/keys`, an admin): a DKG (the shared keys'
//!   DKG, suite ristretto255) among the members for the key `oprf.NAME`,
//!   committed like any key; apply checks the request named that key
//!   (apply rules 8). It is reshared, refreshed and repaired through
//!   `/v1/keys/oprf.NAME/...` like any key; it never signs or decrypts
//!   (signing refuses ristretto255 keys; sessions use `he.` keys only).
//! - **Evaluate** (`POST /v1/oprf/{key}/evaluate`): the entry node
//!   coordinates the two rounds of `keyquorum_core::oprf::threshold` with
//!   `t` members of the key's current generation. In round one each member
//!   checks the client's signed request itself (signature, freshness, sent
//!   to the node that asks, the path naming this key, a grant naming
//!   `oprf.KEY` explicitly (`*` does not reach OPRF keys), the blinded element in its body, at most `n − t + 1`
//!   attempts), then answers with its evaluation share and nonce
//!   commitments. Its nonces stay in memory only, keyed by the run and
//!   bound to the coordinator, and are used by the first round-two
//!   package that holds its commitment unchanged: never stored, so no
//!   restore of the vault or the log can bring one back; a crash loses
//!   them and the coordinator starts over with others. An answer that does
//!   not verify is named, audited and its member left out of the retry.
//!   The client gets `Z` and one RFC 9497 proof under the key's public
//!   key: any RFC 9497 VOPRF client checks it.

pub mod account;
pub mod api;
pub mod authority;
pub(crate) mod channels;
pub mod pin;
pub mod reset;
pub mod state;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use keyquorum_core::codec::Decode;
use keyquorum_core::httpsig;
use keyquorum_core::oprf::{self, Commitment, Element, Nonces, Package, Response};
use keyquorum_core::{GroupKey, KeyShare, Ristretto255};
use keyquorum_wire::api::{KeyInfo, SuiteName};
use keyquorum_wire::control::KeyRecord;
use keyquorum_wire::oprf::{key_name, CreateOprfKeyRequest, EvaluateRequest, EvaluateResponse};
use keyquorum_wire::peer::{ClientRequest, PeerMessage};
use keyquorum_wire::{Hex, Hex32, NodeId};
use rand_core::OsRng;
use sha2::{Digest, Sha256};

use crate::api::auth::{check_forwarded, check_sent_to, forwarded, Authorized, Ledger};
use crate::cluster::Node;
use crate::error::NodeError;
use crate::keys::{
    key_record, me_first, new_key_shape, pid, random_session, record_at, Keys, NewKey,
};

pub use state::OPRF_RULES;

/// Round-one nonces a member keeps at once; past it a round one is
/// refused (the coordinator tries others or the client later).
const MAX_PENDING: usize = 8192;

/// How long a member keeps round-one nonces for round two.
const PENDING_FOR: Duration = Duration::from_secs(30);

/// Round-one state a member keeps for one run.
struct Pending {
    nonces: Nonces,
    key: String,
    epoch: u64,
    at: Instant,
}

/// Round-one state by (coordinator, run): a run id another coordinator
/// saw cannot be claimed here first by someone else.
struct Table {
    runs: HashMap<(NodeId, Hex32), Pending>,
    /// When expired nonces were last dropped (they go within about
    /// `PENDING_FOR` of expiring, not only when the table is full).
    swept: Instant,
}

/// The threshold VOPRF service on this node: both halves.
pub struct Oprf {
    keys: Arc<Keys>,
    ledger: Ledger,
    pending: Mutex<Table>,
    rotation: AtomicUsize,
}

impl core::fmt::Debug for Oprf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Oprf").finish_non_exhaustive()
    }
}

fn info_of(name: &str, k: &KeyRecord) -> KeyInfo {
    KeyInfo {
        name: name.to_string(),
        suite: k.suite,
        threshold: k.threshold,
        members: k.members.clone(),
        public_key: k.public_key.clone(),
        epoch: k.epoch,
    }
}

/// The key `oprf.NAME`, refused unless it is a ristretto255 key.
fn oprf_key(name: &str, k: KeyRecord) -> Result<KeyRecord, NodeError> {
    if k.suite != SuiteName::Ristretto255 {
        return Err(NodeError::NotFound(format!(
            "no OPRF key named {name} ({} is a {:?} signing key)",
            key_name(name),
            k.suite
        )));
    }
    Ok(k)
}

fn group_of(k: &KeyRecord) -> Result<GroupKey<Ristretto255>, NodeError> {
    GroupKey::<Ristretto255>::from_bytes(&k.group_key.0)
        .map_err(|e| NodeError::Internal(format!("stored group key of {}: {e}", k.name)))
}

/// The node a participant id names.
fn node_of(members: &[NodeId], id: keyquorum_core::ParticipantId) -> Option<NodeId> {
    members.iter().copied().find(|m| pid(*m) == id)
}

impl Oprf {
    /// The service, with this node's shared keys.
    pub fn new(keys: Arc<Keys>) -> Self {
        Self {
            keys,
            ledger: Ledger::default(),
            pending: Mutex::new(Table {
                runs: HashMap::new(),
                swept: Instant::now(),
            }),
            rotation: AtomicUsize::new(0),
        }
    }

    /// This node's shared keys (accounts' reset keys are among them).
    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Create OPRF key `req.name` by DKG (the caller is an admin).
    pub async fn create(
        &self,
        node: &Node,
        req: CreateOprfKeyRequest,
        request: &httpsig::Request,
    ) -> Result<KeyInfo, NodeError> {
        node.require_rules(OPRF_RULES, "OPRF keys")?;
        let key = key_name(&req.name);
        if crate::names::check_name(&key).is_err() || req.name == "keys" {
            return Err(NodeError::BadRequest(
                "OPRF key names are 1-59 characters from [A-Za-z0-9._-], not `keys` (the \
                 registry holds oprf.NAME)"
                    .into(),
            ));
        }
        let (members, threshold) = new_key_shape(node, req.members, req.threshold);
        let info = self
            .keys
            .create_key(
                node,
                NewKey {
                    name: key,
                    suite: SuiteName::Ristretto255,
                    threshold,
                    members,
                    min_members: None,
                },
                request,
            )
            .await?;
        Ok(KeyInfo {
            name: req.name,
            ..info
        })
    }

    /// OPRF key `name`'s public description.
    pub async fn info(node: &Node, name: &str) -> Result<KeyInfo, NodeError> {
        let k = oprf_key(name, key_record(node, &key_name(name)).await?)?;
        Ok(info_of(name, &k))
    }

    /// Every OPRF key.
    pub fn list(node: &Node) -> Vec<KeyInfo> {
        node.registry(|r| {
            r.keys
                .records
                .iter()
                .filter_map(|(n, k)| {
                    let name = n.strip_prefix(keyquorum_wire::oprf::KEY_PREFIX)?;
                    (k.suite == SuiteName::Ristretto255).then(|| info_of(name, k))
                })
                .collect()
        })
    }

    /// Evaluate the blinded element in the client's `request` with key
    /// `name`: both rounds with `t` members, retrying without members that
    /// failed or answered wrongly.
    pub async fn evaluate(
        &self,
        node: &Node,
        name: &str,
        blinded: &[u8],
        request: &httpsig::Request,
    ) -> Result<EvaluateResponse, NodeError> {
        node.require_rules(OPRF_RULES, "OPRF keys")?;
        let m = Element::from_bytes(blinded).map_err(|e| {
            NodeError::BadRequest(format!(
                "blinded_element is not a canonical Ristretto255 element other than the \
                 identity: {e}"
            ))
        })?;
        let key = oprf_key(name, key_record(node, &key_name(name)).await?)?;
        self.evaluate_record(node, &key, &m, request).await
    }

    /// Evaluate `m` with key generation `key` for the client's `request`
    /// (each member checks the request for itself).
    pub(crate) async fn evaluate_record(
        &self,
        node: &Node,
        key: &KeyRecord,
        m: &Element,
        request: &httpsig::Request,
    ) -> Result<EvaluateResponse, NodeError> {
        let group = group_of(key)?;
        let t = usize::from(key.threshold);
        let forwarded = forwarded(request);
        let rotate = self.rotation.fetch_add(1, Ordering::Relaxed);
        let order = me_first(&key.members, node.id(), rotate);
        let mut failed: BTreeSet<NodeId> = BTreeSet::new();
        let mut why: Vec<String> = Vec::new();
        let mut culprits: Vec<NodeId> = Vec::new();
        loop {
            let signers: Vec<NodeId> = order
                .iter()
                .copied()
                .filter(|m| !failed.contains(m))
                .take(t)
                .collect();
            if signers.len() < t {
                let why = if why.is_empty() {
                    String::new()
                } else {
                    format!(": {}", why.join("; "))
                };
                return Err(if culprits.is_empty() {
                    NodeError::Unavailable(format!(
                        "fewer than {t} members of {} answered{why}",
                        key.name
                    ))
                } else {
                    NodeError::Misbehaved {
                        message: format!(
                            "too few members of {} answered correctly: {culprits:?} sent \
                             answers that do not verify{why}",
                            key.name
                        ),
                        culprits,
                    }
                });
            }
            match self
                .evaluate_once(node, key, &group, &signers, m, &forwarded)
                .await
            {
                Ok((z, proof)) => {
                    return Ok(EvaluateResponse {
                        evaluated_element: Hex(z.to_bytes().to_vec()),
                        proof: Hex(proof.to_bytes().to_vec()),
                        members: signers,
                        epoch: key.epoch,
                    })
                }
                Err(Failed::Down(who, e)) => {
                    why.push(format!("node {who}: {e}"));
                    failed.insert(who);
                }
                Err(Failed::Lied(who)) => {
                    for w in &who {
                        tracing::warn!(key = %key.name, node = %w, "an OPRF answer failed its check");
                        node.audit_failure(
                            "peer",
                            "oprf.blame",
                            Some(&key.name),
                            &format!("node {w} sent an evaluation answer that does not verify"),
                        );
                    }
                    failed.extend(who.iter().copied());
                    culprits.extend(who);
                }
                Err(Failed::Other(e)) => return Err(e),
            }
        }
    }

    async fn evaluate_once(
        &self,
        node: &Node,
        key: &KeyRecord,
        group: &GroupKey<Ristretto255>,
        signers: &[NodeId],
        m: &Element,
        request: &ClientRequest,
    ) -> Result<(Element, oprf::Proof), Failed> {
        let run = random_session();
        // Round one.
        let calls = signers.iter().map(|s| {
            let msg = PeerMessage::OprfCommit {
                key: key.name.clone(),
                epoch: key.epoch,
                run,
                request: request.clone(),
            };
            call(node, *s, msg)
        });
        let mut commitments = Vec::with_capacity(signers.len());
        for (s, reply) in signers.iter().zip(join_all(calls).await) {
            let c = match reply {
                Ok(PeerMessage::OprfCommitted { commitment }) => {
                    Commitment::from_bytes(&commitment.0)
                        .ok()
                        .filter(|c| c.member() == pid(*s))
                }
                Ok(_) => return Err(Failed::Down(*s, "an unexpected message".into())),
                Err(e) => return Err(Failed::Down(*s, e.to_string())),
            };
            match c {
                Some(c) => commitments.push(c),
                None => return Err(Failed::Lied(vec![*s])),
            }
        }
        let package = Package::new(*m, commitments)
            .map_err(|e| Failed::Other(NodeError::Internal(e.to_string())))?;
        // Round two.
        let bytes = Hex(package.to_bytes());
        let calls = signers.iter().map(|s| {
            let msg = PeerMessage::OprfRespond {
                run,
                package: bytes.clone(),
            };
            call(node, *s, msg)
        });
        let mut responses = Vec::with_capacity(signers.len());
        let mut malformed = Vec::new();
        for (s, reply) in signers.iter().zip(join_all(calls).await) {
            match reply {
                Ok(PeerMessage::OprfResponded { response }) => {
                    match Response::from_bytes(&response.0) {
                        Ok(r) if r.member() == pid(*s) => responses.push(r),
                        _ => malformed.push(*s),
                    }
                }
                Ok(_) => return Err(Failed::Down(*s, "an unexpected message".into())),
                Err(e) => return Err(Failed::Down(*s, e.to_string())),
            }
        }
        if !malformed.is_empty() {
            return Err(Failed::Lied(malformed));
        }
        match oprf::aggregate(group, &package, &responses) {
            Ok(ok) => Ok(ok),
            Err(keyquorum_core::Error::Misbehaved { culprits, .. }) => Err(Failed::Lied(
                culprits
                    .into_iter()
                    .filter_map(|id| node_of(&key.members, id))
                    .collect(),
            )),
            Err(e) => Err(Failed::Other(NodeError::from_core(e))),
        }
    }

    // ----- participant side -------------------------------------------------

    /// An OPRF message from `from`.
    pub(crate) async fn handle(
        &self,
        node: &Node,
        from: NodeId,
        msg: PeerMessage,
    ) -> Result<PeerMessage, NodeError> {
        match msg {
            PeerMessage::OprfCommit {
                key,
                epoch,
                run,
                request,
            } => self.commit(node, from, &key, epoch, run, &request).await,
            PeerMessage::OprfRespond { run, package } => self.respond(node, from, run, &package.0),
            _ => Err(NodeError::BadRequest("not an OPRF message".into())),
        }
    }

    /// Round one: this member's evaluation share of the blinded element in
    /// `request` and fresh nonce commitments, only if `request` is a
    /// client's request, sent to `from`, to evaluate with `key`, by a client
    /// whose grant names the key, within its attempts; and this node holds
    /// a share of the key's generation `epoch`.
    async fn commit(
        &self,
        node: &Node,
        from: NodeId,
        key: &str,
        epoch: u64,
        run: Hex32,
        request: &ClientRequest,
    ) -> Result<PeerMessage, NodeError> {
        let refuse = |why: String| NodeError::Forbidden(format!("OPRF evaluation refused: {why}"));
        // A client or key made through another node a moment ago, or a
        // generation this replica has not applied yet: catch up once.
        let behind = check_forwarded(node, request).is_err()
            || node.registry(|r| r.keys.records.get(key).is_none_or(|k| k.epoch < epoch));
        if behind {
            if let Err(e) = node.read_barrier().await {
                tracing::debug!(error = %e, "member could not catch up");
            }
        }
        let a = check_forwarded(node, request)?;
        check_sent_to(node, &request.target_uri, from).map_err(refuse)?;
        let (m, label) = if keyquorum_wire::recovery::is_pin_key(key) {
            pin::authorize(node, key, &a).await?
        } else {
            Self::authorize(key, &a)?
        };
        let record = record_at(node, key, epoch)?;
        if record.suite != SuiteName::Ristretto255 {
            return Err(refuse(format!("{key} is not a ristretto255 key")));
        }
        if !record.members.contains(&node.id()) {
            return Err(refuse(format!(
                "node {} holds no share of {key} at epoch {epoch}",
                node.id()
            )));
        }
        let attempts = record
            .members
            .len()
            .saturating_sub(usize::from(record.threshold))
            + 1;
        let digest = Sha256::digest(m.to_bytes());
        self.ledger.record(
            &a,
            &format!("{label} {key} {}", hex::encode(digest)),
            &hex::encode(run.0),
            attempts,
        )?;
        let share = self.share(node, &record)?;
        let (nonces, commitment) = oprf::commit(&share, &m, &mut OsRng);
        let mut table = self.lock()?;
        let now = Instant::now();
        if table.runs.len() >= MAX_PENDING || now.duration_since(table.swept) >= PENDING_FOR {
            table
                .runs
                .retain(|_, p| now.duration_since(p.at) < PENDING_FOR);
            table.swept = now;
        }
        if table.runs.len() >= MAX_PENDING {
            return Err(NodeError::Unavailable(
                "too many OPRF evaluations in flight here: try later".into(),
            ));
        }
        if table.runs.contains_key(&(from, run)) {
            return Err(refuse("this run has a round one here already".into()));
        }
        table.runs.insert(
            (from, run),
            Pending {
                nonces,
                key: key.to_string(),
                epoch,
                at: Instant::now(),
            },
        );
        Ok(PeerMessage::OprfCommitted {
            commitment: Hex(commitment.to_bytes().to_vec()),
        })
    }

    /// Round two: answer `package` with the nonces of `run`, which go away
    /// with the answer (or with a package this member refuses).
    fn respond(
        &self,
        node: &Node,
        from: NodeId,
        run: Hex32,
        package: &[u8],
    ) -> Result<PeerMessage, NodeError> {
        let refuse = |why: String| NodeError::Forbidden(format!("OPRF answer refused: {why}"));
        // Only the coordinator of round one finds its nonces; they go
        // away now, whatever comes of the package.
        let p = self.lock()?.runs.remove(&(from, run)).ok_or_else(|| {
            NodeError::Conflict(format!(
                "no round one of run {} by node {from} here (answered, expired or never made)",
                hex::encode(run.0)
            ))
        })?;
        if p.at.elapsed() >= PENDING_FOR {
            return Err(NodeError::Conflict(format!(
                "round one of run {} expired",
                hex::encode(run.0)
            )));
        }
        let package =
            Package::from_bytes(package).map_err(|e| refuse(format!("the package: {e}")))?;
        let record = record_at(node, &p.key, p.epoch)?;
        let share = self.share(node, &record)?;
        let group = group_of(&record)?;
        let mut response =
            oprf::respond(&share, &group, p.nonces, &package).map_err(|e| refuse(e.to_string()))?;
        if self.keys.hooks().send_bad_evaluation_shares() {
            response.tamper();
        }
        Ok(PeerMessage::OprfResponded {
            response: Hex(response.to_bytes().to_vec()),
        })
    }

    /// The OPRF service's own check of a client's evaluate request: the
    /// path names this key, the grant names it explicitly (`*` does not
    /// reach OPRF keys, each evaluation being a guess at whatever the key
    /// hardens), the blinded element is in the body.
    fn authorize(key: &str, a: &Authorized) -> Result<(Element, String), NodeError> {
        let refuse = |why: String| NodeError::Forbidden(format!("OPRF evaluation refused: {why}"));
        let Some(name) = key.strip_prefix(keyquorum_wire::oprf::KEY_PREFIX) else {
            return Err(refuse(format!("{key} is not an OPRF key")));
        };
        if a.method != "POST" || a.path != format!("/v1/oprf/{name}/evaluate") {
            return Err(refuse(format!(
                "the client's request is {} {}, not an evaluation with {name}",
                a.method, a.path
            )));
        }
        let g = &a.grant;
        if !(g.admin || g.sign_keys.iter().any(|k| k == key)) {
            return Err(refuse(format!(
                "client {} may not evaluate with {key}",
                g.name
            )));
        }
        let asked: EvaluateRequest = serde_json::from_slice(&a.body)
            .map_err(|e| refuse(format!("the client's request body does not parse: {e}")))?;
        let m = Element::from_bytes(&asked.blinded_element.0)
            .map_err(|e| refuse(format!("the blinded element: {e}")))?;
        Ok((m, "oprf.evaluate".into()))
    }

    fn share(&self, node: &Node, record: &KeyRecord) -> Result<KeyShare<Ristretto255>, NodeError> {
        let bytes = self.keys.share_bytes(node, record)?;
        KeyShare::<Ristretto255>::from_secret_bytes(&bytes)
            .map_err(|e| NodeError::Internal(format!("stored share of {}: {e}", record.name)))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Table>, NodeError> {
        self.pending
            .lock()
            .map_err(|_| NodeError::Internal("OPRF nonces lock poisoned".into()))
    }
}

/// Why one attempt failed.
enum Failed {
    /// A member did not answer (or answered out of turn).
    Down(NodeId, String),
    /// Members whose answers do not verify.
    Lied(Vec<NodeId>),
    /// Not a member's fault.
    Other(NodeError),
}

async fn call(node: &Node, to: NodeId, msg: PeerMessage) -> Result<PeerMessage, NodeError> {
    let info = node
        .node_info(to)
        .ok_or_else(|| NodeError::Unavailable(format!("no address for node {to}")))?;
    node.call(to, &info, msg).await
}
