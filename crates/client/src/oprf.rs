//! The client's side of the threshold VOPRF (RFC 9497, mode `0x01`,
//! ristretto255-SHA512): blinding, the proof check and finalisation are
//! the `voprf` crate's (Meta's RFC 9497 implementation), so what the
//! cluster answers is checked by code keyquorum did not write. The
//! cluster's `t` members answer jointly with one proof under the key's
//! public key (`keyquorum_core::oprf::threshold`).

use keyquorum_wire::api::{KeyInfo, KeyList};
use keyquorum_wire::oprf::{CreateOprfKeyRequest, EvaluateRequest, EvaluateResponse};
use keyquorum_wire::Hex;
use rand_core::OsRng;
use voprf::{BlindedElement, EvaluationElement, Group, Proof, VoprfClient};
use zeroize::Zeroizing;

use crate::{Client, ClientError};

type Suite = voprf::Ristretto255;

/// An evaluation: the PRF output and who answered.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The RFC 9497 output (64 bytes, SHA-512).
    pub output: Zeroizing<Vec<u8>>,
    /// The members that answered.
    pub members: Vec<keyquorum_wire::NodeId>,
    /// The key generation they answered with.
    pub epoch: u64,
}

fn refused(m: impl core::fmt::Display) -> ClientError {
    ClientError::Verification(format!("OPRF answer refused: {m}"))
}

/// The RFC 9497 output of `input`, from the cluster's `answer` to the
/// element `blinded` by `state`, checked against `public_key` (32 bytes).
pub fn finalize(
    state: &VoprfClient<Suite>,
    input: &[u8],
    answer: &EvaluateResponse,
    public_key: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    let pk = <Suite as voprf::CipherSuite>::Group::deserialize_elem(public_key)
        .map_err(|_| refused("the public key is not a ristretto255 element"))?;
    let z = EvaluationElement::<Suite>::deserialize(&answer.evaluated_element.0)
        .map_err(|_| refused("the evaluated element does not decode"))?;
    let proof = Proof::<Suite>::deserialize(&answer.proof.0)
        .map_err(|_| refused("the proof does not decode"))?;
    let out = state
        .finalize(input, &z, &proof, pk)
        .map_err(|e| refused(format!("the proof does not verify under the key: {e}")))?;
    Ok(Zeroizing::new(out.to_vec()))
}

impl Client {
    /// Create OPRF key `req.name` (an admin).
    pub async fn oprf_create(&self, req: &CreateOprfKeyRequest) -> Result<KeyInfo, ClientError> {
        self.post("/v1/oprf/keys", req).await
    }

    /// Every OPRF key.
    pub async fn oprf_keys(&self) -> Result<KeyList, ClientError> {
        self.get("/v1/oprf/keys").await
    }

    /// OPRF key `name`.
    pub async fn oprf_key(&self, name: &str) -> Result<KeyInfo, ClientError> {
        self.get(&format!("/v1/oprf/{name}")).await
    }

    /// The raw step: the cluster's answer to a blinded element.
    pub async fn oprf_blind_evaluate(
        &self,
        name: &str,
        blinded: &BlindedElement<Suite>,
    ) -> Result<EvaluateResponse, ClientError> {
        self.post(
            &format!("/v1/oprf/{name}/evaluate"),
            &EvaluateRequest {
                blinded_element: Hex(blinded.serialize().to_vec()),
            },
        )
        .await
    }

    /// The PRF output of `input` under key `name`: blinded here, evaluated
    /// by the cluster, its proof checked against `public_key` (the key's
    /// public key as `oprf_create` returned it: pinned, never taken from
    /// the node that answers, which could answer with a key of its own),
    /// unblinded.
    pub async fn oprf_evaluate(
        &self,
        name: &str,
        input: &[u8],
        public_key: &[u8],
    ) -> Result<Evaluation, ClientError> {
        let pk = public_key;
        let blind = VoprfClient::<Suite>::blind(input, &mut OsRng)
            .map_err(|e| ClientError::Config(format!("the input cannot be blinded: {e}")))?;
        let answer = self.oprf_blind_evaluate(name, &blind.message).await?;
        let output = finalize(&blind.state, input, &answer, pk)?;
        Ok(Evaluation {
            output,
            members: answer.members,
            epoch: answer.epoch,
        })
    }
}
