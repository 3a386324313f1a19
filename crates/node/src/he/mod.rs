//! Computation on encrypted data on the node (DESIGN.md §3.3; the math is
//! `keyquorum_core::he`).
//!
//! - **Create** (`POST /v1/he/sessions`, an admin): the entry node runs a
//!   DKG (the shared keys' DKG, suite ristretto255) among the session's
//!   members for the key `he.NAME` and commits the session with the key's
//!   first generation in one command ([`HeCommand::HeCreate`]): the
//!   session's policy (slots, input proofs, bound, computation and
//!   weights, who may submit) is fixed there, for good.
//! - **Submit** (`POST /v1/he/sessions/{name}/inputs`): the client's signed
//!   request *is* the input. It goes through the log as it is
//!   ([`HeCommand::HeSubmit`]); every replica re-verifies the client's
//!   signature, checks the input's proof bound to the session and the
//!   submitter, adds it (times its weight) to the session's aggregate and
//!   keeps it as a side record.
//! - **Close**, then **result** (`POST .../result`, the creator, a reader
//!   or an admin): the entry node asks `t` members of the key's current
//!   generation for decryption shares ([`PeerMessage::HeDecrypt`]). Each
//!   member checks the client's request itself (signature, freshness, the
//!   path naming this session, the client's right to read it, sent to the
//!   node that asks), that the session is closed in its own replica, and
//!   decrypts its own replica's aggregate: never a ciphertext the
//!   coordinator hands it. A share whose proof fails is named and another
//!   member asked. The result is committed with the shares
//!   ([`HeCommand::HeResult`]); every replica checks every share's proof
//!   and the values against them. Later calls return the recorded result.
//! - **Reshare**: the session's key is an ordinary shared key, `he.NAME`:
//!   `POST /v1/keys/he.NAME/reshare` changes its threshold and members
//!   (with the operator quorum's approval, as for any key) while the
//!   session runs; its public key and inputs stay as they are.
//! - **Transcript** (`GET .../transcript`): the session, its state and
//!   every input; with the result's shares, anyone re-checks everything
//!   (`keyquorum he verify`, `keyquorum_client::he::verify_transcript`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use keyquorum_core::codec::Decode;
use keyquorum_core::he::{self as core_he, Ciphertext, DecryptionShare, DlogTable, InputPolicy};
use keyquorum_core::httpsig;
use keyquorum_core::{GroupKey, KeyShare, Ristretto255};
use keyquorum_wire::api::SuiteName;
use keyquorum_wire::control::{CommandResponse, KeyRecord};
use keyquorum_wire::he::{
    key_name, CreateHeSessionRequest, HeCommand, HeInput, HeInputsStatement, HeOp, HeResultRecord,
    HeResultResponse, HeSessionInfo, HeSessionList, HeStatus, HeTranscript, SubmitInputRequest,
    SubmitInputResponse,
};
use keyquorum_wire::peer::{ClientRequest, PeerMessage};
use keyquorum_wire::{Hex, Hex32, NodeId};
use rand_core::OsRng;

use crate::api::auth::{by_request, check_forwarded, check_sent_to, forwarded, Ledger};
use crate::cluster::Node;
use crate::error::NodeError;
use crate::keys::{
    key_record, me_first, new_key_shape, pid, random_session, record_at, Keys, NewKey,
};
use state::{may_read, record_from_request, HeEntry, HE_RULES};

pub mod api;
pub(crate) mod authority;
pub(crate) mod keeper;
pub mod state;

/// Inputs read from the side table at once for a transcript.
const PAGE: usize = 4096;

/// Encrypted-data sessions on this node: the coordinator and participant
/// halves of decryption, and the plaintext-recovery tables.
pub struct He {
    keys: Arc<Keys>,
    ledger: Ledger,
    tables: Mutex<BTreeMap<u8, Arc<DlogTable>>>,
    /// Inputs served to other members at once (each reads up to about
    /// `keeper::FETCH_BYTES`); past it a member is told to ask later.
    serving: Arc<tokio::sync::Semaphore>,
}

/// Most fetches of inputs this node serves at once.
const SERVING: usize = 2;

impl core::fmt::Debug for He {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("He").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, NodeError> {
    m.lock()
        .map_err(|_| NodeError::Internal("he lock poisoned".into()))
}

/// The session `name` as this replica has it; if it does not, after a
/// read barrier (it may have been created through another node a moment
/// ago).
async fn entry(node: &Node, name: &str) -> Result<HeEntry, NodeError> {
    node.registry_fresh(|r| r.he.sessions.get(name).cloned())
        .await
        .ok_or_else(|| NodeError::NotFound(format!("no session named {name}")))
}

/// Session `name`, if the cluster runs sessions and `client` (an admin
/// or not) may close it and read its result (`what` it asked, for the
/// refusal).
async fn readable(
    node: &Node,
    name: &str,
    (client, admin): (&str, bool),
    what: &str,
) -> Result<HeEntry, NodeError> {
    node.require_rules(HE_RULES, "encrypted-data sessions")?;
    let e = entry(node, name).await?;
    if !may_read(&e.record, client, admin) {
        return Err(NodeError::Forbidden(format!(
            "client {client} may not {what} {name}"
        )));
    }
    Ok(e)
}

/// `e`, or if it holds fewer inputs than `stated`, the session after a
/// read barrier (inputs committed through other nodes a moment ago).
async fn caught_up(
    node: &Node,
    e: HeEntry,
    stated: &HeInputsStatement,
) -> Result<HeEntry, NodeError> {
    if e.progress.count >= stated.count {
        return Ok(e);
    }
    node.read_barrier().await?;
    entry(node, &e.record.name).await
}

/// Refused unless `e` holds exactly the inputs `stated`.
fn same_inputs(e: &HeEntry, stated: &HeInputsStatement) -> Result<(), NodeError> {
    if stated.count != e.progress.count || stated.inputs_hash != e.progress.inputs_hash {
        return Err(NodeError::Conflict(format!(
            "session {} holds {} inputs (hash {}), not the {} (hash {}) the request states",
            e.record.name,
            e.progress.count,
            e.progress.inputs_hash,
            stated.count,
            stated.inputs_hash
        )));
    }
    Ok(())
}

fn info_of(e: &HeEntry, key: Option<&KeyRecord>) -> HeSessionInfo {
    HeSessionInfo {
        name: e.record.name.clone(),
        public_key: e.record.public_key,
        id: e.record.id,
        threshold: key.map_or(0, |k| k.threshold),
        members: key.map(|k| k.members.clone()).unwrap_or_default(),
        epoch: key.map_or(0, |k| k.epoch),
        slots: e.record.slots,
        inputs: e.record.inputs.clone(),
        bound: e.record.bound,
        op: e.record.op,
        status: e.progress.status,
        count: e.progress.count,
        inputs_hash: e.progress.inputs_hash,
        min_inputs: e.record.min_inputs,
        weights: e.record.weights.clone(),
        submitter_weights: e.record.submitter_weights.clone(),
        submitters: e.record.submitters.clone(),
        one_per_client: e.record.one_per_client,
        measurements: e.record.measurements.clone(),
    }
}

impl He {
    /// Sessions on this node, with its shared keys (their shares).
    pub fn new(keys: Arc<Keys>) -> Self {
        Self {
            keys,
            ledger: Ledger::default(),
            tables: Mutex::new(BTreeMap::new()),
            serving: Arc::new(tokio::sync::Semaphore::new(SERVING)),
        }
    }

    /// Session `name`'s public description.
    pub fn info(node: &Node, name: &str) -> Result<HeSessionInfo, NodeError> {
        node.registry(|r| {
            r.he.sessions
                .get(name)
                .map(|e| info_of(e, r.keys.records.get(&key_name(name))))
        })
        .ok_or_else(|| NodeError::NotFound(format!("no session named {name}")))
    }

    /// Every session.
    pub fn list(node: &Node) -> HeSessionList {
        node.registry(|r| HeSessionList {
            sessions: r
                .he
                .sessions
                .iter()
                .map(|(n, e)| info_of(e, r.keys.records.get(&key_name(n))))
                .collect(),
        })
    }

    /// Create session `req.name` (the caller is an admin; `client` its
    /// name): DKG for its key, then the session and key in one command.
    pub async fn create(
        &self,
        node: &Node,
        req: CreateHeSessionRequest,
        client: &str,
        request: &httpsig::Request,
    ) -> Result<HeSessionInfo, NodeError> {
        node.require_rules(HE_RULES, "encrypted-data sessions")?;
        let key = key_name(&req.name);
        crate::names::check_name(&key).map_err(|_| {
            NodeError::BadRequest(
                "session names are 1-61 characters from [A-Za-z0-9._-] (the key is he.NAME)".into(),
            )
        })?;
        // The policy checked once, before any DKG (the id comes with the key).
        let spec =
            record_from_request(&req, Hex32([0; 32]), client).map_err(NodeError::BadRequest)?;
        if node.registry(|r| {
            r.he.sessions.contains_key(&req.name) || r.keys.records.contains_key(&key)
        }) {
            return Err(NodeError::Conflict(format!(
                "a session named {} exists",
                req.name
            )));
        }
        let (members, threshold) = new_key_shape(node, req.members.clone(), req.threshold);
        let bad = node.registry(|r| state::unattested(&spec, &members, &r.attested));
        if !bad.is_empty() {
            return Err(NodeError::Conflict(format!(
                "nodes {bad:?} have not stated a measurement the session allows (their latest \
                 boot statement: GET /v1/cluster)"
            )));
        }
        let plan = NewKey {
            name: key,
            suite: SuiteName::Ristretto255,
            threshold,
            members,
            min_members: None,
        };
        let req = &req;
        self.keys
            .create_with(node, plan, |key, endorsements| async move {
                let public_key: [u8; 32] =
                    key.public_key.0.as_slice().try_into().map_err(|_| {
                        NodeError::Internal("a ristretto255 public key is 32 bytes".into())
                    })?;
                let session = record_from_request(req, Hex32(public_key), client)
                    .map_err(NodeError::BadRequest)?;
                node.commit(by_request(
                    request,
                    HeCommand::HeCreate {
                        session: Box::new(session),
                        key: Box::new(key),
                        endorsements,
                    },
                ))
                .await
                .map(|_| ())
            })
            .await?;
        Self::info(node, &req.name)
    }

    /// Submit the input in the client's `request` (whose body is `input`)
    /// as client `client`.
    pub async fn submit(
        &self,
        node: &Node,
        name: &str,
        input: SubmitInputRequest,
        client: &str,
        request: &httpsig::Request,
    ) -> Result<SubmitInputResponse, NodeError> {
        node.require_rules(HE_RULES, "encrypted-data sessions")?;
        let e = entry(node, name).await?;
        if e.progress.status != HeStatus::Open {
            return Err(NodeError::Conflict(format!("session {name} is closed")));
        }
        // Checked here first, so an input that would fail on apply never
        // costs every replica its check (and the log an entry).
        let slots = usize::from(e.record.slots);
        let ct = Ciphertext::from_bytes(&input.ciphertext.0, slots).map_err(|err| {
            NodeError::BadRequest(format!(
                "the ciphertext is not {slots} slots of two canonical Ristretto255 points \
                 (c1 not the identity): {err}"
            ))
        })?;
        let policy: InputPolicy = e
            .record
            .inputs
            .parse()
            .map_err(|err: keyquorum_core::Error| NodeError::Internal(err.to_string()))?;
        if input.proof.0.len() != policy.proof_len(slots) {
            return Err(NodeError::BadRequest(format!(
                "a {policy} proof over {slots} slots is {} bytes, not {}",
                policy.proof_len(slots),
                input.proof.0.len()
            )));
        }
        let ctx = state::context(&e.record, client).map_err(NodeError::Internal)?;
        tokio::task::spawn_blocking(move || policy.verify(&ctx, &ct, &input.proof.0))
            .await
            .map_err(|err| NodeError::Internal(format!("proof task: {err}")))?
            .map_err(|err| NodeError::BadRequest(format!("{}: {err}", state::BAD_INPUT)))?;
        match node
            .commit_batched(by_request(
                request,
                HeCommand::HeSubmit {
                    session: name.to_string(),
                },
            ))
            .await?
        {
            CommandResponse::Appended { index } => Ok(SubmitInputResponse { index }),
            other => Err(NodeError::Internal(format!(
                "an input was answered {other:?}"
            ))),
        }
    }

    /// Close session `name` with exactly the inputs `stated` (what the
    /// client saw).
    pub async fn close(
        &self,
        node: &Node,
        name: &str,
        stated: &HeInputsStatement,
        (client, admin): (&str, bool),
        request: &httpsig::Request,
    ) -> Result<HeSessionInfo, NodeError> {
        let e = readable(node, name, (client, admin), "close").await?;
        let e = if e.progress.status == HeStatus::Open {
            caught_up(node, e, stated).await?
        } else {
            e
        };
        if e.progress.status == HeStatus::Open {
            same_inputs(&e, stated)?;
        }
        node.commit(by_request(
            request,
            HeCommand::HeClose {
                session: name.to_string(),
            },
        ))
        .await?;
        Self::info(node, name)
    }

    /// Decrypt session `name`'s aggregate of exactly the inputs `stated`
    /// (the first call) or return the recorded result.
    pub async fn result(
        &self,
        node: &Node,
        name: &str,
        stated: &HeInputsStatement,
        (client, admin): (&str, bool),
        request: &httpsig::Request,
    ) -> Result<HeResultResponse, NodeError> {
        let e = readable(node, name, (client, admin), "read the result of").await?;
        match e.progress.status {
            HeStatus::Open => {
                return Err(NodeError::Conflict(format!(
                    "session {name} is open: close it first"
                )))
            }
            HeStatus::Decrypted => return self.recorded(node, name),
            HeStatus::Closed => {}
        }
        let e = caught_up(node, e, stated).await?;
        same_inputs(&e, stated)?;
        let result = self.decrypt(node, &e, request).await?;
        let committed = node
            .commit(by_request(
                request,
                HeCommand::HeResult {
                    session: name.to_string(),
                    result,
                },
            ))
            .await;
        match committed {
            Ok(_) => {}
            // Decrypted by a concurrent call meanwhile: that result stands.
            Err(NodeError::Conflict(m)) if m.contains("decrypted already") => {}
            Err(err) => return Err(err),
        }
        self.recorded(node, name)
    }

    /// The recorded result with the transcript.
    fn recorded(&self, node: &Node, name: &str) -> Result<HeResultResponse, NodeError> {
        let transcript = self.transcript(node, name)?;
        let values = transcript
            .progress
            .result
            .as_ref()
            .map(|r| r.values.clone())
            .ok_or_else(|| NodeError::Conflict(format!("session {name} is not decrypted")))?;
        Ok(HeResultResponse { values, transcript })
    }

    /// Ask members of the key's generation for shares of the session's
    /// aggregate until `t` verify; combine them and recover the values.
    async fn decrypt(
        &self,
        node: &Node,
        e: &HeEntry,
        request: &httpsig::Request,
    ) -> Result<HeResultRecord, NodeError> {
        let name = &e.record.name;
        let key = key_record(node, &key_name(name)).await?;
        let group = GroupKey::<Ristretto255>::from_bytes(&key.group_key.0)
            .map_err(|err| NodeError::Internal(format!("stored group key: {err}")))?;
        let count = e.record.op == HeOp::Count;
        let slots = if count {
            0
        } else {
            usize::from(e.record.slots)
        };
        let aggregate = if count {
            Ciphertext::empty()
        } else {
            Ciphertext::from_bytes_any(&e.progress.aggregate.0, slots)
                .map_err(|err| NodeError::Internal(format!("stored aggregate: {err}")))?
        };
        let bind = state::binding(&e.progress);
        let t = usize::from(key.threshold);
        let run = random_session();
        let forwarded = forwarded(request);
        // Members whose measurement the session allows (all, without a set).
        let barred = node.registry(|r| state::unattested(&e.record, &key.members, &r.attested));
        let mut candidates = me_first(&key.members, node.id(), 0)
            .into_iter()
            .filter(|m| !barred.contains(m))
            .collect::<Vec<_>>()
            .into_iter();
        let mut good: Vec<DecryptionShare> = Vec::with_capacity(t);
        let mut excluded: Vec<NodeId> = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        while good.len() < t {
            let ask: Vec<NodeId> = candidates.by_ref().take(t - good.len()).collect();
            if ask.is_empty() {
                break;
            }
            let calls = ask.iter().map(|m| {
                let msg = PeerMessage::HeDecrypt {
                    session: name.clone(),
                    epoch: key.epoch,
                    run,
                    request: forwarded.clone(),
                };
                async move {
                    let info = node.node_info(*m).ok_or_else(|| {
                        NodeError::Unavailable(format!("no address for node {m}"))
                    })?;
                    node.call_signed(*m, &info, &msg)
                        .await
                        .map(|(_, reply)| reply)
                }
            });
            for (m, reply) in ask.iter().zip(join_all(calls).await) {
                let share = match reply {
                    Ok(PeerMessage::HeShare { share }) => {
                        DecryptionShare::from_bytes(&share.0, slots).ok()
                    }
                    Ok(_) => None,
                    Err(err) => {
                        failures.push(format!("node {m}: {err}"));
                        continue;
                    }
                };
                match share.filter(|s| {
                    s.member() == pid(*m)
                        && s.verify(&e.record.id.0, &group, &aggregate, &bind).is_ok()
                }) {
                    Some(s) => good.push(s),
                    None => {
                        tracing::warn!(session = %name, node = %m, "a decryption share failed its proof");
                        node.audit_failure(
                            "peer",
                            "he.blame",
                            Some(name),
                            &format!("node {m} sent a decryption share that does not verify"),
                        );
                        excluded.push(*m);
                    }
                }
            }
        }
        if good.len() < t {
            let why = if failures.is_empty() {
                String::new()
            } else {
                format!(": {}", failures.join("; "))
            };
            return Err(if excluded.is_empty() {
                NodeError::Unavailable(format!(
                    "{} of the {t} decryption shares {name} needs were given{why}",
                    good.len()
                ))
            } else {
                NodeError::Misbehaved {
                    message: format!(
                        "too few valid decryption shares for {name}: {excluded:?} sent shares \
                         that do not verify{why}"
                    ),
                    culprits: excluded,
                }
            });
        }
        let shares: Vec<Hex> = good.iter().map(|s| Hex(s.to_bytes())).collect();
        if count {
            return Ok(HeResultRecord {
                values: vec![e.progress.count],
                epoch: key.epoch,
                group_key: key.group_key.clone(),
                shares,
            });
        }
        let table = self.table(e.record.bound).await?;
        let sid = e.record.id.0;
        let values = tokio::task::spawn_blocking(move || {
            core_he::decrypt(&sid, &group, &aggregate, &bind, &good, &table)
        })
        .await
        .map_err(|err| NodeError::Internal(format!("decryption task: {err}")))?
        .map_err(|err| match err {
            keyquorum_core::Error::BeyondBound { bits } => NodeError::Conflict(format!(
                "the result of {name} is beyond the session's bound of {bits} bits: a slot's \
                 aggregate is at least 2^{bits} (or an input without a range proof was negative)"
            )),
            other => NodeError::from_core(other),
        })?
        .0;
        Ok(HeResultRecord {
            values,
            epoch: key.epoch,
            group_key: key.group_key.clone(),
            shares,
        })
    }

    /// The plaintext-recovery table for `bound` bits (built once per node,
    /// off the async threads).
    async fn table(&self, bound: u8) -> Result<Arc<DlogTable>, NodeError> {
        if let Some(t) = lock(&self.tables)?.get(&bound) {
            return Ok(t.clone());
        }
        let built = tokio::task::spawn_blocking(move || DlogTable::new(bound))
            .await
            .map_err(|e| NodeError::Internal(format!("table task: {e}")))?
            .map_err(NodeError::from_core)?;
        let table = Arc::new(built);
        lock(&self.tables)?.insert(bound, table.clone());
        Ok(table)
    }

    /// Session `name`'s public record: its policy, state and every input.
    pub fn transcript(&self, node: &Node, name: &str) -> Result<HeTranscript, NodeError> {
        let e = node
            .registry(|r| r.he.sessions.get(name).cloned())
            .ok_or_else(|| NodeError::NotFound(format!("no session named {name}")))?;
        let mut inputs: Vec<HeInput> = Vec::new();
        while (inputs.len() as u64) < e.progress.count {
            let from = inputs.len() as u64;
            let rows = node.side_records(e.record.space, from, PAGE)?;
            let before = inputs.len();
            for (k, v) in rows {
                if k != inputs.len() as u64 || k >= e.progress.count {
                    break;
                }
                inputs.push(serde_json::from_slice(&v).map_err(|err| {
                    NodeError::Internal(format!("stored input {k} of {name}: {err}"))
                })?);
            }
            if inputs.len() == before {
                return Err(NodeError::Unavailable(format!(
                    "this node holds inputs 0..{} of {name}'s {} (it installed a snapshot \
                     after them and is fetching them from the other members): try again \
                     shortly or ask another node",
                    inputs.len(),
                    e.progress.count
                )));
            }
        }
        // What is served is what the replicated state's chain says.
        let end = inputs
            .iter()
            .fold(Hex32([0u8; 32]), |link, i| state::chain(&link, i));
        if end != e.progress.inputs_hash {
            return Err(NodeError::Internal(format!(
                "the inputs of {name} stored here do not end at the session's chain: this \
                 node's store was altered"
            )));
        }
        Ok(HeTranscript {
            version: 1,
            session: e.record,
            progress: e.progress,
            inputs,
        })
    }

    // ----- participant side -------------------------------------------------

    /// A session message from `from`.
    pub(crate) async fn handle(
        &self,
        node: &Node,
        from: NodeId,
        msg: PeerMessage,
    ) -> Result<PeerMessage, NodeError> {
        match msg {
            PeerMessage::HeDecrypt {
                session,
                epoch,
                run,
                request,
            } => {
                self.decrypt_share(node, from, &session, epoch, run, &request)
                    .await
            }
            PeerMessage::HeFetch {
                session,
                from,
                limit,
            } => {
                let permit = self.serving.clone().try_acquire_owned().map_err(|_| {
                    NodeError::Unavailable("serving other members' fetches: ask later".into())
                })?;
                let node = node.clone();
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    keeper::serve(&node, &session, from, limit)
                })
                .await
                .map_err(|e| NodeError::Internal(e.to_string()))?
            }
            _ => Err(NodeError::BadRequest("not a session message".into())),
        }
    }

    /// This member's decryption share of session `name`'s aggregate, only
    /// if `request` is a client's request, sent to `from`, for this
    /// session's result, by a client that may read it; the session is
    /// closed in this replica; and this node holds a share of the key's
    /// generation `epoch`. It decrypts its own replica's aggregate.
    async fn decrypt_share(
        &self,
        node: &Node,
        from: NodeId,
        name: &str,
        epoch: u64,
        run: Hex32,
        request: &ClientRequest,
    ) -> Result<PeerMessage, NodeError> {
        let refuse = |why: String| NodeError::Forbidden(format!("decryption share refused: {why}"));
        // A client or session made through another node a moment ago, or
        // a close this replica has not applied yet: catch up once.
        let stated_count = serde_json::from_slice::<HeInputsStatement>(&request.body.0)
            .map(|s| s.count)
            .unwrap_or(0);
        let behind = check_forwarded(node, request).is_err()
            || node.registry(|r| {
                r.he.sessions.get(name).is_none_or(|e| {
                    e.progress.status == HeStatus::Open || e.progress.count < stated_count
                }) || r
                    .keys
                    .records
                    .get(&key_name(name))
                    .is_none_or(|k| k.epoch < epoch)
            });
        if behind {
            if let Err(e) = node.read_barrier().await {
                tracing::debug!(error = %e, "member could not catch up");
            }
        }
        let a = check_forwarded(node, request)?;
        check_sent_to(node, &request.target_uri, from).map_err(refuse)?;
        if a.method != "POST" || a.path != format!("/v1/he/sessions/{name}/result") {
            return Err(refuse(format!(
                "the client's request is {} {}, not the result of {name}",
                a.method, a.path
            )));
        }
        let e = node
            .registry(|r| r.he.sessions.get(name).cloned())
            .ok_or_else(|| NodeError::NotFound(format!("no session named {name}")))?;
        if !may_read(&e.record, &a.grant.name, a.grant.admin) {
            return Err(refuse(format!(
                "client {} may not read the result of {name}",
                a.grant.name
            )));
        }
        match e.progress.status {
            HeStatus::Closed => {}
            HeStatus::Open => return Err(refuse(format!("session {name} is not closed here"))),
            HeStatus::Decrypted => {
                return Err(refuse(format!("session {name} is decrypted already")))
            }
        }
        // Exactly the inputs the client stated, in this replica: a leader
        // that showed this replica another log (a close after fewer
        // inputs) gets nothing.
        let stated: HeInputsStatement = serde_json::from_slice(&a.body)
            .map_err(|err| refuse(format!("the request does not state the inputs: {err}")))?;
        same_inputs(&e, &stated).map_err(|err| refuse(err.to_string()))?;
        let key = record_at(node, &key_name(name), epoch)?;
        if !key.members.contains(&node.id()) {
            return Err(refuse(format!(
                "node {} holds no share of {} at epoch {epoch}",
                node.id(),
                key.name
            )));
        }
        let attempts = key.members.len().saturating_sub(usize::from(key.threshold)) + 1;
        self.ledger.record(
            &a,
            &format!("he.result {name} coordinated by node {from}"),
            &hex::encode(run.0),
            attempts,
        )?;
        // A count decrypts nothing: its share is the member's statement of
        // the inputs alone.
        let aggregate = if e.record.op == HeOp::Count {
            Ciphertext::empty()
        } else {
            Ciphertext::from_bytes_any(&e.progress.aggregate.0, usize::from(e.record.slots))
                .map_err(|err| NodeError::Internal(format!("stored aggregate: {err}")))?
        };
        let share_bytes = self.keys.share_bytes(node, &key)?;
        let share = KeyShare::<Ristretto255>::from_secret_bytes(&share_bytes)
            .map_err(|err| NodeError::Internal(err.to_string()))?;
        let mut d = DecryptionShare::new(
            &e.record.id.0,
            &share,
            &aggregate,
            &state::binding(&e.progress),
            &mut OsRng,
        )
        .map_err(NodeError::from_core)?;
        if self.keys.hooks().send_bad_decryption_shares() {
            d.tamper();
        }
        node.audit_event(
            &a.grant.name,
            "he.share",
            Some(name),
            &format!("decryption share for node {from}'s run"),
        );
        Ok(PeerMessage::HeShare {
            share: Hex(d.to_bytes()),
        })
    }
}
