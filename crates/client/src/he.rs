//! Encrypted-data sessions from the client side: encrypt and prove inputs
//! here (the values never leave this process in the clear), and re-check a
//! session's whole public record ([`verify_transcript`]) without trusting
//! the node that gave it, nor any single member.

use keyquorum_core::codec::Decode;
use keyquorum_core::he::{
    self, Aggregate, Binding, Ciphertext, Context, DecryptionShare, InputPolicy,
};
use keyquorum_core::{GroupKey, Ristretto255};
use keyquorum_wire::api::{KeyInfo, ReshareRequest};
use keyquorum_wire::he::{
    key_name, CreateHeSessionRequest, HeInputsStatement, HeOp, HeResultResponse, HeSessionInfo,
    HeSessionList, HeSessionRecord, HeStatus, HeTranscript, SubmitInputRequest,
    SubmitInputResponse,
};
use keyquorum_wire::{Hex, Hex32, NodeId};

use crate::{Client, ClientError};

/// Why a transcript does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TranscriptError {
    /// Not a format this client reads.
    #[error("transcript version {0} (this client reads 1)")]
    Version(u16),
    /// The session's public key is not the one pinned.
    #[error("the session public key is not the one you pinned")]
    PublicKey,
    /// The session's id is not the hash of its record and public key: the
    /// record was altered.
    #[error("the session record does not match its id (altered policy?)")]
    Record,
    /// An input is wrong: out of order, undecodable, its proof fails, or
    /// its submitter may not submit.
    #[error("input {index}: {why}")]
    Input {
        /// Its index.
        index: u64,
        /// What is wrong.
        why: String,
    },
    /// The inputs do not add up to the stated aggregate, count or hash chain.
    #[error("the inputs do not give the stated {0}")]
    Aggregate(&'static str),
    /// The result does not check: a share's proof, the group key, or a
    /// value that is not what the shares decrypt.
    #[error("the result: {0}")]
    Result(String),
}

/// What a checked transcript says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Inputs checked.
    pub inputs: u64,
    /// The decrypted values, if the session is decrypted.
    pub values: Option<Vec<u64>>,
}

/// Check a session's public record from public data alone: the record
/// against its id (the hash of the policy and the public key, which every
/// proof and share binds), every input's proof (bound to the session and
/// its submitter) and weight, the aggregate, the count and the inputs'
/// hash chain, and, once decrypted, the `t` decryption shares: each
/// proof against its member's public share (from the group key, whose
/// shares interpolate to the public key) binding this count and hash chain
/// (so the inputs listed are those `t` members decrypted), and each value
/// against the shares. With `public_key`, the session must be under that
/// key: pin it when you create the session or learn it from a source you
/// trust; without a pin, a transcript made up whole under a key of its
/// maker's also checks.
pub fn verify_transcript(
    t: &HeTranscript,
    public_key: Option<&[u8; 32]>,
) -> Result<Verified, TranscriptError> {
    if t.version != 1 {
        return Err(TranscriptError::Version(t.version));
    }
    let s = &t.session;
    if public_key.is_some_and(|p| *p != s.public_key.0) {
        return Err(TranscriptError::PublicKey);
    }
    if session_id(s) != s.id.0 {
        return Err(TranscriptError::Record);
    }
    let policy: InputPolicy = s
        .inputs
        .parse()
        .map_err(|e: keyquorum_core::Error| TranscriptError::Result(e.to_string()))?;
    let slots = usize::from(s.slots);
    let mut aggregate =
        Aggregate::new(slots).map_err(|e| TranscriptError::Result(e.to_string()))?;
    let mut chain = [0u8; 32];
    let mut seen = std::collections::BTreeSet::new();
    for (i, input) in (0u64..).zip(&t.inputs) {
        let bad = |why: String| TranscriptError::Input { index: i, why };
        if input.index != i {
            return Err(bad(format!("stated as index {}", input.index)));
        }
        if s.submitters
            .as_ref()
            .is_some_and(|l| !l.contains(&input.submitter))
        {
            return Err(bad(format!("{} may not submit", input.submitter)));
        }
        if s.one_per_client && !seen.insert(input.submitter.clone()) {
            return Err(bad(format!("a second input by {}", input.submitter)));
        }
        let weight = match s.op {
            HeOp::Sum | HeOp::Count => Some(1),
            HeOp::Weighted => match (&s.weights, &s.submitter_weights) {
                (Some(w), _) => usize::try_from(i).ok().and_then(|k| w.get(k)).copied(),
                (None, Some(w)) => w.get(&input.submitter).copied(),
                (None, None) => None,
            },
        }
        .ok_or_else(|| bad("no weight for it".into()))?;
        let ct = Ciphertext::from_bytes(&input.ciphertext.0, slots)
            .map_err(|e| bad(format!("ciphertext: {e}")))?;
        let ctx = Context::new(s.id.0, &s.public_key.0, &input.submitter)
            .map_err(|e| bad(e.to_string()))?;
        policy
            .verify(&ctx, &ct, &input.proof.0)
            .map_err(|e| bad(e.to_string()))?;
        aggregate.add(&ct, weight).map_err(|e| bad(e.to_string()))?;
        chain = he::input_link(
            &chain,
            i,
            &input.submitter,
            &input.ciphertext.0,
            &input.proof.0,
        );
    }
    let p = &t.progress;
    if aggregate.count() != p.count || t.inputs.len() as u64 != p.count {
        return Err(TranscriptError::Aggregate("count"));
    }
    if chain != p.inputs_hash.0 {
        return Err(TranscriptError::Aggregate("hash chain"));
    }
    let stated = Ciphertext::from_bytes_any(&p.aggregate.0, slots)
        .map_err(|_| TranscriptError::Aggregate("aggregate"))?;
    if aggregate.ciphertext() != stated {
        return Err(TranscriptError::Aggregate("aggregate"));
    }
    let values = match (&p.result, p.status) {
        (Some(r), HeStatus::Decrypted) => {
            let group = GroupKey::<Ristretto255>::from_bytes(&r.group_key.0)
                .map_err(|e| TranscriptError::Result(format!("group key: {e}")))?;
            if group.public_key_bytes() != s.public_key.0 {
                return Err(TranscriptError::Result(
                    "the group key is not the session's".into(),
                ));
            }
            let counting = s.op == HeOp::Count;
            let shares: Vec<DecryptionShare> = r
                .shares
                .iter()
                .map(|x| DecryptionShare::from_bytes(&x.0, if counting { 0 } else { slots }))
                .collect::<Result<_, _>>()
                .map_err(|e| TranscriptError::Result(format!("a share: {e}")))?;
            let binding = Binding {
                count: p.count,
                inputs: chain,
            };
            if counting {
                if r.values != [p.count] {
                    return Err(TranscriptError::Result(
                        "a count is the number of inputs".into(),
                    ));
                }
                he::check_attestation(&s.id.0, &group, &binding, &shares)
            } else {
                he::check_result(
                    &s.id.0, &group, &stated, &binding, &shares, &r.values, s.bound,
                )
            }
            .map_err(|e| TranscriptError::Result(e.to_string()))?;
            Some(r.values.clone())
        }
        (None, HeStatus::Decrypted) | (Some(_), _) => {
            return Err(TranscriptError::Result(
                "the status and the result disagree".into(),
            ))
        }
        (None, _) => None,
    };
    Ok(Verified {
        inputs: p.count,
        values,
    })
}

/// The id a session record must have: `he::session_id` of its JSON with
/// the id zeroed and `space` 0, and its public key.
pub fn session_id(record: &HeSessionRecord) -> [u8; 32] {
    let policy = HeSessionRecord {
        id: Hex32([0; 32]),
        space: 0,
        ..record.clone()
    };
    he::session_id(
        &serde_json::to_vec(&policy).unwrap_or_default(),
        &record.public_key.0,
    )
}

/// Encrypt `values` for session `info` as client `submitter`, with the
/// proof its policy asks: the request body of an input.
pub fn encrypt_input(
    info: &HeSessionInfo,
    submitter: &str,
    values: &[u64],
) -> Result<SubmitInputRequest, ClientError> {
    if values.len() != usize::from(info.slots) {
        return Err(ClientError::Config(format!(
            "session {} takes {} values per input, not {}",
            info.name,
            info.slots,
            values.len()
        )));
    }
    let policy: InputPolicy = info
        .inputs
        .parse()
        .map_err(|e: keyquorum_core::Error| ClientError::Config(e.to_string()))?;
    let ctx = Context::new(info.id.0, &info.public_key.0, submitter)
        .map_err(|e| ClientError::Config(format!("the session public key: {e}")))?;
    let (ct, proof) = policy
        .encrypt(&ctx, values, &mut rand_core::OsRng)
        .map_err(|e| ClientError::Config(e.to_string()))?;
    Ok(SubmitInputRequest {
        ciphertext: Hex(ct.to_bytes()),
        proof: Hex(proof),
        // Inputs weighted by index state theirs (the next one as `info`
        // shows it; a race with another submitter is refused, and retried
        // by `Client::he_submit`).
        index: (info.op == HeOp::Weighted && info.weights.is_some()).then_some(info.count),
    })
}

/// The inputs `info` shows: what a close or result request states.
pub fn statement(info: &HeSessionInfo) -> HeInputsStatement {
    HeInputsStatement {
        count: info.count,
        inputs_hash: info.inputs_hash,
    }
}

impl Client {
    /// Create an encrypted-data session (an admin).
    pub async fn he_create(
        &self,
        req: &CreateHeSessionRequest,
    ) -> Result<HeSessionInfo, ClientError> {
        self.post("/v1/he/sessions", req).await
    }

    /// Every session.
    pub async fn he_sessions(&self) -> Result<HeSessionList, ClientError> {
        self.get("/v1/he/sessions").await
    }

    /// One session.
    pub async fn he_session(&self, name: &str) -> Result<HeSessionInfo, ClientError> {
        self.get(&format!("/v1/he/sessions/{name}")).await
    }

    /// Encrypt `values` here (with the proof the session asks, bound to
    /// this client) and submit them. With `public_key`, refused unless the
    /// session is under that key: without a pin, the node asked for the
    /// session's public key could name a key of its own and read the
    /// values.
    pub async fn he_submit(
        &self,
        name: &str,
        values: &[u64],
        public_key: Option<&[u8; 32]>,
    ) -> Result<SubmitInputResponse, ClientError> {
        let mut tries = 0;
        loop {
            let info = self.he_session(name).await?;
            if public_key.is_some_and(|p| *p != info.public_key.0) {
                return Err(ClientError::Config(format!(
                    "session {name}'s public key is {}, not the one you pinned",
                    info.public_key
                )));
            }
            let input = encrypt_input(&info, self.identity().name(), values)?;
            match self.he_submit_raw(name, &input).await {
                // Another input took the index this one stated: again.
                Err(ClientError::Api { status: 409, body })
                    if input.index.is_some()
                        && body.message.contains("is at input")
                        && tries < 8 =>
                {
                    tries += 1;
                }
                r => return r,
            }
        }
    }

    /// Submit an input made elsewhere.
    pub async fn he_submit_raw(
        &self,
        name: &str,
        input: &SubmitInputRequest,
    ) -> Result<SubmitInputResponse, ClientError> {
        self.post(&format!("/v1/he/sessions/{name}/inputs"), input)
            .await
    }

    /// Close a session with the inputs it holds now (as this node shows
    /// them: the close applies only if the session holds exactly those).
    pub async fn he_close(&self, name: &str) -> Result<HeSessionInfo, ClientError> {
        let info = self.he_session(name).await?;
        self.he_close_at(name, &statement(&info)).await
    }

    /// Close a session with exactly the inputs `stated`.
    pub async fn he_close_at(
        &self,
        name: &str,
        stated: &HeInputsStatement,
    ) -> Result<HeSessionInfo, ClientError> {
        self.post(&format!("/v1/he/sessions/{name}/close"), stated)
            .await
    }

    /// Decrypt a closed session (the first call) or fetch its result: of
    /// the inputs it holds as this node shows them (each member decrypts
    /// only if its own replica holds exactly those).
    pub async fn he_result(&self, name: &str) -> Result<HeResultResponse, ClientError> {
        let info = self.he_session(name).await?;
        self.he_result_at(name, &statement(&info)).await
    }

    /// Decrypt a closed session of exactly the inputs `stated`.
    pub async fn he_result_at(
        &self,
        name: &str,
        stated: &HeInputsStatement,
    ) -> Result<HeResultResponse, ClientError> {
        self.post(&format!("/v1/he/sessions/{name}/result"), stated)
            .await
    }

    /// A session's public record.
    pub async fn he_transcript(&self, name: &str) -> Result<HeTranscript, ClientError> {
        self.get(&format!("/v1/he/sessions/{name}/transcript"))
            .await
    }

    /// Reshare a session's key (`he.NAME`) to `threshold` of `members`
    /// during the session (a changed threshold or member set needs the
    /// operator quorum's approval, as for any key).
    pub async fn he_reshare(
        &self,
        name: &str,
        threshold: u16,
        members: &[NodeId],
    ) -> Result<KeyInfo, ClientError> {
        self.post(
            &format!("/v1/keys/{}/reshare", key_name(name)),
            &ReshareRequest {
                threshold,
                members: members.to_vec(),
            },
        )
        .await
    }
}
