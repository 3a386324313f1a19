//! Computation on encrypted data's part of the replicated state machine:
//! sessions with their running aggregate ([`HeState`]), and how their
//! commands apply. Every replica checks every input's proof and every
//! decryption share itself: what the log holds is only what the math
//! allows.
//!
//! Inputs are side records (space [`SPACE_BASE`] + the session's number,
//! key = the input's index, value = the input with the chain's link before
//! it, `HeStoredInput`): the snapshot carries each session's count,
//! aggregate and hash chain, never its inputs; a node that installed one
//! fetches them (the inputs keeper, `he/keeper.rs`).

use std::collections::{BTreeMap, BTreeSet};

use keyquorum_core::codec::Decode;
use keyquorum_core::he::{
    self, Aggregate, Binding, Ciphertext, Context, DecryptionShare, InputPolicy,
};
use keyquorum_core::{GroupKey, Ristretto255};
use keyquorum_store::raft::SideWrite;
use keyquorum_wire::api::SuiteName;
use keyquorum_wire::control::{CommandResponse, KeyRecord};
use keyquorum_wire::he::{
    key_name, CreateHeSessionRequest, HeInput, HeInputsStatement, HeOp, HeProgress, HeResultRecord,
    HeSessionRecord, HeStatus, HeStoredInput, SubmitInputRequest,
};
use keyquorum_wire::{Hex, Hex32};
use serde::{Deserialize, Serialize};

/// Apply rules from which sessions exist (refused before).
pub const HE_RULES: u16 = 6;
/// Side-record spaces of sessions' inputs start here.
pub const SPACE_BASE: u32 = 0x0100_0000;
/// Most inputs one session takes.
pub const MAX_INPUTS: u64 = 1_000_000;
/// Most sessions not yet decrypted.
pub const MAX_OPEN_SESSIONS: usize = 1024;
/// Largest proof one input may carry: every replica checks it on apply
/// (64 KiB is 341 range-proof bits, about 50 ms of one core).
pub const MAX_PROOF_BYTES: usize = 64 * 1024;
/// Most baby-step/giant-step work a decryption may take: slots × 2^⌈bound/2⌉
/// (a result past the bound searches all of it).
pub const MAX_SEARCH: u64 = 1 << 26;
/// Longest list in a session's policy (submitters, readers, weights).
pub const MAX_LIST: usize = 4096;
/// Default bound (bits) on each slot's aggregate.
pub const DEFAULT_BOUND: u8 = 32;
/// Rejections that are the input's fault start with this (answered 400).
pub const BAD_INPUT: &str = "bad input";

/// The replicated part of computation on encrypted data (DESIGN.md §3.3).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HeState {
    /// Sessions by name.
    pub sessions: BTreeMap<String, HeEntry>,
    /// Sessions created so far (the next one's side-record space).
    pub created: u32,
    /// Input records to write, taken by the store after each apply.
    #[serde(skip)]
    pending: Vec<SideWrite>,
}

/// One session: its record, its state, who submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeEntry {
    /// What was created.
    pub record: HeSessionRecord,
    /// Where it stands.
    pub progress: HeProgress,
    /// Clients that submitted (kept for one-input-per-client sessions).
    #[serde(default)]
    pub submitted: BTreeSet<String>,
}

/// A session's policy, from a create request, checked and with its
/// defaults filled in (the entry node and every replica compute it alike).
pub(crate) fn record_from_request(
    req: &CreateHeSessionRequest,
    public_key: Hex32,
    created_by: &str,
) -> Result<HeSessionRecord, String> {
    let slots = req.slots.unwrap_or(1);
    if slots == 0 || usize::from(slots) > he::MAX_SLOTS {
        return Err(format!("slots must be 1 to {}", he::MAX_SLOTS));
    }
    let policy: InputPolicy = req
        .inputs
        .as_deref()
        .unwrap_or("knowledge")
        .parse()
        .map_err(|e: keyquorum_core::Error| e.to_string())?;
    let proof = policy.proof_len(usize::from(slots));
    if proof > MAX_PROOF_BYTES {
        return Err(format!(
            "{policy} over {slots} slots makes proofs of {proof} bytes; an input carries at most \
             {MAX_PROOF_BYTES} (fewer slots or bits)"
        ));
    }
    let bound = req.bound.unwrap_or(DEFAULT_BOUND);
    if bound == 0 || bound > he::MAX_BOUND_BITS {
        return Err(format!("bound must be 1 to {} bits", he::MAX_BOUND_BITS));
    }
    let search = u64::from(slots) << u32::from(bound).div_ceil(2);
    if search > MAX_SEARCH {
        return Err(format!(
            "{slots} slots with a bound of {bound} bits take {search} steps to decrypt; at most \
             {MAX_SEARCH} (fewer slots or bits)"
        ));
    }
    if policy == InputPolicy::None && req.submitters.is_none() {
        return Err(
            "inputs without proofs (none) only from a list of submitters: one of them could \
             otherwise cancel the others' ciphertexts and isolate a single input"
                .into(),
        );
    }
    if req
        .measurements
        .as_ref()
        .is_some_and(|m| m.is_empty() || m.len() > MAX_LIST)
    {
        return Err(format!(
            "an allowed set of measurements holds 1 to {MAX_LIST} of them"
        ));
    }
    let min_inputs = req.min_inputs.unwrap_or(1);
    if min_inputs == 0 || min_inputs > MAX_INPUTS {
        return Err(format!("min_inputs must be 1 to {MAX_INPUTS}"));
    }
    let op = req.op.unwrap_or_default();
    match (op, &req.weights, &req.submitter_weights) {
        // Per index, no weight is 0: the index follows the log's order,
        // which the leader picks, so a zero would let it choose whose
        // input counts alone.
        (HeOp::Weighted, Some(w), None)
            if !w.is_empty() && w.len() <= MAX_LIST && w.iter().all(|x| *x >= 1) => {}
        (HeOp::Weighted, None, Some(w)) if !w.is_empty() && w.len() <= MAX_LIST => {}
        (HeOp::Weighted, _, _) => {
            return Err(format!(
                "weighted takes weights per input index (each at least 1) or per submitter \
                 (one of them, 1 to {MAX_LIST} weights)"
            ))
        }
        (_, None, None) => {}
        _ => return Err("weights are for the weighted computation only".into()),
    }
    let lists = [
        req.submitters.as_ref().map_or(0, Vec::len),
        req.readers.len(),
    ];
    if lists.iter().any(|l| *l > MAX_LIST) {
        return Err(format!("lists of clients hold at most {MAX_LIST} names"));
    }
    if req.submitters.as_ref().is_some_and(Vec::is_empty) {
        return Err("an empty list of submitters would take no input".into());
    }
    let mut record = HeSessionRecord {
        name: req.name.clone(),
        id: Hex32([0; 32]),
        public_key,
        slots,
        inputs: policy.to_string(),
        bound,
        op,
        weights: req.weights.clone(),
        submitter_weights: req.submitter_weights.clone(),
        submitters: req.submitters.clone(),
        one_per_client: req.one_per_client,
        created_by: created_by.to_string(),
        readers: req.readers.clone(),
        min_inputs,
        measurements: req.measurements.clone(),
        space: 0,
    };
    record.id = derive_id(&record);
    Ok(record)
}

/// The id of `record`: `he::session_id` of its JSON with the id zeroed
/// and `space` 0, and its public key.
pub(crate) fn derive_id(record: &HeSessionRecord) -> Hex32 {
    let policy = HeSessionRecord {
        id: Hex32([0; 32]),
        space: 0,
        ..record.clone()
    };
    Hex32(he::session_id(
        &serde_json::to_vec(&policy).unwrap_or_default(),
        &record.public_key.0,
    ))
}

/// Members of `members` whose latest boot did not state a binary
/// measurement in `record`'s allowed set (none if it has no set).
pub(crate) fn unattested(
    record: &HeSessionRecord,
    members: &[keyquorum_wire::NodeId],
    attested: &BTreeMap<keyquorum_wire::NodeId, keyquorum_wire::control::Measurement>,
) -> Vec<keyquorum_wire::NodeId> {
    let Some(allowed) = &record.measurements else {
        return Vec::new();
    };
    members
        .iter()
        .copied()
        .filter(|m| attested.get(m).is_none_or(|x| !allowed.contains(&x.binary)))
        .collect()
}

/// Whether `client` may close the session and ask for its result.
pub(crate) fn may_read(record: &HeSessionRecord, client: &str, admin: bool) -> bool {
    admin || record.created_by == client || record.readers.iter().any(|r| r == client)
}

/// The next link of the inputs' hash chain (`he::input_link`).
pub(crate) fn chain(previous: &Hex32, input: &HeInput) -> Hex32 {
    Hex32(he::input_link(
        &previous.0,
        input.index,
        &input.submitter,
        &input.ciphertext.0,
        &input.proof.0,
    ))
}

/// The proofs' context of `record`'s inputs by `submitter`.
pub(crate) fn context(record: &HeSessionRecord, submitter: &str) -> Result<Context, String> {
    Context::new(record.id.0, &record.public_key.0, submitter)
        .map_err(|e| format!("the session public key: {e}"))
}

/// The weight of input `index` by `submitter` (None: it may not submit).
fn weight_of(record: &HeSessionRecord, index: u64, submitter: &str) -> Option<u64> {
    match record.op {
        HeOp::Sum | HeOp::Count => Some(1),
        HeOp::Weighted => match (&record.weights, &record.submitter_weights) {
            (Some(w), _) => usize::try_from(index).ok().and_then(|i| w.get(i)).copied(),
            (None, Some(w)) => w.get(submitter).copied(),
            (None, None) => None,
        },
    }
}

fn bad(why: impl std::fmt::Display) -> CommandResponse {
    CommandResponse::rejected(format!("{BAD_INPUT}: {why}"))
}

impl HeState {
    /// The input records of the last applies (the store writes them).
    pub(crate) fn take_side(&mut self) -> Vec<SideWrite> {
        std::mem::take(&mut self.pending)
    }

    /// Create session `record` with its key (`keys`: the key registry,
    /// which the key joins).
    pub(crate) fn create(
        &mut self,
        record: &HeSessionRecord,
        key: &KeyRecord,
        keys: &mut BTreeMap<String, KeyRecord>,
    ) -> CommandResponse {
        if self.sessions.contains_key(&record.name) {
            return CommandResponse::rejected(format!("a session named {} exists", record.name));
        }
        if keys.contains_key(&key.name) {
            return CommandResponse::rejected(format!("a key named {} exists", key.name));
        }
        let open = self
            .sessions
            .values()
            .filter(|s| s.progress.status != HeStatus::Decrypted)
            .count();
        if open >= MAX_OPEN_SESSIONS {
            return CommandResponse::rejected(format!(
                "{}: {MAX_OPEN_SESSIONS} sessions are not decrypted yet",
                crate::msg::quota::QUOTA_EXCEEDED
            ));
        }
        let Some(space) = self.created.checked_add(SPACE_BASE) else {
            return CommandResponse::rejected("no session numbers left");
        };
        let Ok(aggregate) = Aggregate::new(usize::from(record.slots)) else {
            return CommandResponse::rejected("slots must be 1 to 256");
        };
        let mut record = record.clone();
        record.space = space;
        self.created += 1;
        keys.insert(key.name.clone(), key.clone());
        self.sessions.insert(
            record.name.clone(),
            HeEntry {
                record,
                progress: HeProgress {
                    status: HeStatus::Open,
                    count: 0,
                    aggregate: Hex(aggregate.ciphertext().to_bytes()),
                    inputs_hash: Hex32([0; 32]),
                    result: None,
                },
                submitted: BTreeSet::new(),
            },
        );
        CommandResponse::Ok
    }

    /// Take the input in `body` (a [`SubmitInputRequest`]) from `submitter`
    /// into session `name`, if the session takes it and its proof holds.
    pub(crate) fn submit(&mut self, name: &str, submitter: &str, body: &[u8]) -> CommandResponse {
        let Some(entry) = self.sessions.get_mut(name) else {
            return CommandResponse::rejected(format!("no session named {name}"));
        };
        let (record, progress) = (&entry.record, &mut entry.progress);
        if progress.status != HeStatus::Open {
            return CommandResponse::rejected(format!("session {name} is closed"));
        }
        if record
            .submitters
            .as_ref()
            .is_some_and(|s| !s.iter().any(|x| x == submitter))
        {
            return CommandResponse::rejected(format!(
                "client {submitter} may not submit to {name}"
            ));
        }
        if record.one_per_client && entry.submitted.contains(submitter) {
            return CommandResponse::rejected(format!(
                "client {submitter} submitted to {name} already (one input per client)"
            ));
        }
        if progress.count >= MAX_INPUTS {
            return CommandResponse::rejected(format!(
                "{}: session {name} took {MAX_INPUTS} inputs",
                crate::msg::quota::QUOTA_EXCEEDED
            ));
        }
        let index = progress.count;
        let stated = serde_json::from_slice::<SubmitInputRequest>(body)
            .ok()
            .and_then(|i| i.index);
        if record.op == HeOp::Weighted && record.weights.is_some() && stated.is_none() {
            return bad(format!(
                "session {name} weighs inputs by index: an input states the index it takes"
            ));
        }
        if stated.is_some_and(|i| i != index) {
            return CommandResponse::rejected(format!(
                "session {name} is at input {index}, not the {} stated",
                stated.unwrap_or_default()
            ));
        }
        let Some(weight) = weight_of(record, index, submitter) else {
            return CommandResponse::rejected(format!(
                "the weighted session {name} has no weight for input {index} by {submitter}"
            ));
        };
        let input: SubmitInputRequest = match serde_json::from_slice(body) {
            Ok(i) => i,
            Err(e) => return bad(format!("the request body is not an input: {e}")),
        };
        let slots = usize::from(record.slots);
        let ct = match Ciphertext::from_bytes(&input.ciphertext.0, slots) {
            Ok(c) => c,
            Err(e) => {
                return bad(format!(
                    "the ciphertext is not {slots} slots of two canonical Ristretto255 points \
                     (c1 not the identity): {e}"
                ))
            }
        };
        let policy: InputPolicy = match record.inputs.parse() {
            Ok(p) => p,
            Err(e) => return CommandResponse::rejected(format!("session policy: {e}")),
        };
        let ctx = match context(record, submitter) {
            Ok(c) => c,
            Err(e) => return CommandResponse::rejected(e),
        };
        if let Err(e) = policy.verify(&ctx, &ct, &input.proof.0) {
            return bad(e);
        }
        let mut aggregate = match Ciphertext::from_bytes_any(&progress.aggregate.0, slots) {
            Ok(a) => Aggregate::from_parts(a, progress.count),
            Err(e) => return CommandResponse::rejected(format!("stored aggregate: {e}")),
        };
        if let Err(e) = aggregate.add(&ct, weight) {
            return bad(e);
        }
        let stored = HeInput {
            index,
            submitter: submitter.to_string(),
            ciphertext: input.ciphertext,
            proof: input.proof,
        };
        // (The stated index is in the client's signed request; the stored
        // input is its position, the same.)
        let prev = progress.inputs_hash;
        progress.inputs_hash = chain(&prev, &stored);
        progress.aggregate = Hex(aggregate.ciphertext().to_bytes());
        progress.count += 1;
        if record.one_per_client {
            entry.submitted.insert(submitter.to_string());
        }
        let stored = HeStoredInput {
            input: stored,
            prev: Some(prev),
        };
        self.pending.push(SideWrite {
            space: record.space,
            key: index,
            value: serde_json::to_vec(&stored).unwrap_or_default(),
        });
        CommandResponse::Appended { index }
    }

    /// Close session `name` (`body`: the [`HeInputsStatement`] the client
    /// signed): its aggregate is final, if it holds exactly the inputs the
    /// client saw and at least the session's minimum.
    pub(crate) fn close(&mut self, name: &str, body: &[u8]) -> CommandResponse {
        let Some(entry) = self.sessions.get_mut(name) else {
            return CommandResponse::rejected(format!("no session named {name}"));
        };
        if entry.progress.status != HeStatus::Open {
            return CommandResponse::rejected(format!("session {name} is closed already"));
        }
        if let Err(e) = holds_stated(&entry.progress, body) {
            return CommandResponse::rejected(e);
        }
        if entry.progress.count < entry.record.min_inputs {
            return CommandResponse::rejected(format!(
                "session {name} has {} inputs; it closes with at least {}",
                entry.progress.count, entry.record.min_inputs
            ));
        }
        entry.progress.status = HeStatus::Closed;
        CommandResponse::Ok
    }

    /// Record the result of session `name`, checked: a `count` is the
    /// number of inputs; otherwise exactly `t` shares of the key's
    /// generation, each with a valid proof over this replica's aggregate,
    /// combine to `values·B`.
    pub(crate) fn result(
        &mut self,
        name: &str,
        result: &HeResultRecord,
        body: &[u8],
        keys: &BTreeMap<String, KeyRecord>,
        attested: &BTreeMap<keyquorum_wire::NodeId, keyquorum_wire::control::Measurement>,
    ) -> CommandResponse {
        let Some(entry) = self.sessions.get_mut(name) else {
            return CommandResponse::rejected(format!("no session named {name}"));
        };
        match entry.progress.status {
            HeStatus::Open => {
                return CommandResponse::rejected(format!("session {name} is not closed"))
            }
            HeStatus::Decrypted => {
                return CommandResponse::rejected(format!("session {name} is decrypted already"))
            }
            HeStatus::Closed => {}
        }
        if let Err(e) = holds_stated(&entry.progress, body) {
            return CommandResponse::rejected(e);
        }
        if let Err(e) = check_result(&entry.record, &entry.progress, result, keys) {
            return CommandResponse::rejected(format!("the result does not check out: {e}"));
        }
        // Every share from a member whose measurement the session allows.
        let members: Vec<keyquorum_wire::NodeId> = result
            .shares
            .iter()
            .filter_map(|s| s.0.first_chunk::<2>())
            .filter_map(|b| keyquorum_wire::NodeId::new(u16::from_be_bytes(*b)))
            .collect();
        let bad = unattested(&entry.record, &members, attested);
        if !bad.is_empty() {
            return CommandResponse::rejected(format!(
                "shares of {bad:?}, whose measurement session {name} does not allow"
            ));
        }
        entry.progress.result = Some(result.clone());
        entry.progress.status = HeStatus::Decrypted;
        CommandResponse::Ok
    }
}

/// Whether `progress` holds exactly the inputs of the statement in `body`
/// (a [`HeInputsStatement`] the client signed).
pub(crate) fn holds_stated(progress: &HeProgress, body: &[u8]) -> Result<(), String> {
    let stated: HeInputsStatement = serde_json::from_slice(body)
        .map_err(|e| format!("the request does not state the inputs: {e}"))?;
    if stated.count != progress.count || stated.inputs_hash != progress.inputs_hash {
        return Err(format!(
            "the session holds {} inputs (hash {}), not the {} (hash {}) the client stated",
            progress.count, progress.inputs_hash, stated.count, stated.inputs_hash
        ));
    }
    Ok(())
}

/// What each member's share states: this replica's inputs.
pub(crate) fn binding(progress: &HeProgress) -> Binding {
    Binding {
        count: progress.count,
        inputs: progress.inputs_hash.0,
    }
}

/// [`HeState::result`]'s checks: exactly `t` shares of the key's current
/// generation, each with a valid proof binding this replica's inputs, over
/// this replica's aggregate, combining to `values` (a `count`: `t`
/// attestations, and the number of inputs).
pub(crate) fn check_result(
    record: &HeSessionRecord,
    progress: &HeProgress,
    result: &HeResultRecord,
    keys: &BTreeMap<String, KeyRecord>,
) -> Result<(), String> {
    let key = keys
        .get(&key_name(&record.name))
        .ok_or("the session has no key")?;
    if key.epoch != result.epoch || key.group_key != result.group_key {
        return Err(format!(
            "decrypted with generation {} of the key, which is at {}",
            result.epoch, key.epoch
        ));
    }
    if key.suite != SuiteName::Ristretto255 {
        return Err("the session's key is not a ristretto255 key".into());
    }
    let group = GroupKey::<Ristretto255>::from_bytes(&result.group_key.0)
        .map_err(|e| format!("group key: {e}"))?;
    check_decryption(record, progress, result, &group)
}

/// The shares in `result` are exactly `t` valid ones of `group` over the
/// aggregate and inputs in `progress`, and combine to `result.values`.
pub(crate) fn check_decryption(
    record: &HeSessionRecord,
    progress: &HeProgress,
    result: &HeResultRecord,
    group: &GroupKey<Ristretto255>,
) -> Result<(), String> {
    if group.public_key_bytes() != record.public_key.0 {
        return Err("the group key is not the session's".into());
    }
    let slots = if record.op == HeOp::Count {
        0
    } else {
        usize::from(record.slots)
    };
    let shares: Vec<DecryptionShare> = result
        .shares
        .iter()
        .map(|s| DecryptionShare::from_bytes(&s.0, slots))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("a share does not decode: {e}"))?;
    let bind = binding(progress);
    if record.op == HeOp::Count {
        if result.values != [progress.count] {
            return Err("a count is the number of inputs".into());
        }
        return he::check_attestation(&record.id.0, group, &bind, &shares)
            .map_err(|e| e.to_string());
    }
    let aggregate =
        Ciphertext::from_bytes_any(&progress.aggregate.0, slots).map_err(|e| e.to_string())?;
    he::check_result(
        &record.id.0,
        group,
        &aggregate,
        &bind,
        &shares,
        &result.values,
        record.bound,
    )
    .map_err(|e| e.to_string())
}
