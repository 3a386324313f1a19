//! # keyquorum-client
//!
//! A typed async client for the keyquorum API, over the `keyquorum-wire`
//! types so client and server cannot drift.
//!
//! It compiles without openraft and the node's Raft store. The default
//! feature `endpoint-file` adds messaging endpoints ([`msg`]), whose secrets
//! live in a local file sealed like the node vault (redb + Argon2id); without
//! it the client is the typed API alone.
//!
//! ```no_run
//! # async fn demo() -> Result<(), keyquorum_client::ClientError> {
//! use keyquorum_client::{Client, ClientKey};
//! use keyquorum_wire::api::{CreateKeyRequest, SuiteName};
//! let ca = std::fs::read("data/ca.pem").unwrap();
//! let pem = std::fs::read_to_string("data/admin.key").unwrap();
//! let me = ClientKey::from_pkcs8_pem("admin", &pem).unwrap();
//! let c = Client::new("https://127.0.0.1:7001", &me, &ca)?;
//! let key = c.create_key(&CreateKeyRequest { name: "k".into(), suite: SuiteName::Ed25519, threshold: None, members: None, min_members: None }).await?;
//! let sig = c.sign("k", b"hello").await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

use keyquorum_wire::api::{
    AddNodeRequest, ClientCreated, ClientList, ClusterStatus, CreateClientRequest,
    CreateKeyRequest, ErrorBody, ExportList, ExportRequest, ExportResult, Health, KeyInfo, KeyList,
    ReshareRequest, SignRequest, SignResponse, VerifyRequest, VerifyResponse,
};
use keyquorum_wire::control::{ChangeRecord, ClientRecord, ExportRecord};
use keyquorum_wire::msg::{
    AckRequest, AckResponse, ClaimRequest, ClaimedPrekeys, CreateEndpointRequest, EndpointInfo,
    Inbox, MsgDeployment, Prekey, PublishPrekeys, SendRequest, SendResponse,
};
use keyquorum_wire::{Hex, Hex32, NodeId};

pub mod audit;
mod export;
pub mod he;
pub use keyquorum_core::httpsig::ClientKey;
#[cfg(feature = "endpoint-file")]
pub mod msg;
pub mod oprf;
pub mod recovery;
pub mod seedtree;
pub use export::ExportKey;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Client errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{status}: {} ({})", .body.message, .body.error)]
    Api {
        /// HTTP status.
        status: u16,
        /// The error body.
        body: ErrorBody,
    },
    /// Transport failure.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
    /// An answer failed a check on this side (a proof, a signature).
    #[error("{0}")]
    Verification(String),
    /// A message or confirmation failed a protocol check on this side.
    #[error("message refused: {0}")]
    Msg(#[from] keyquorum_core::msgkey::MsgError),
    /// The endpoint's local sealed file.
    #[cfg(feature = "endpoint-file")]
    #[error("endpoint file: {0}")]
    Store(#[from] keyquorum_store::VaultError),
}

/// A `reqwest` client that trusts exactly the certificates in `ca_pem` and
/// speaks TLS 1.3 only.
pub fn http_client(ca_pem: &[u8]) -> Result<reqwest::Client, ClientError> {
    let roots = reqwest::Certificate::from_pem_bundle(ca_pem)?;
    if roots.is_empty() {
        return Err(ClientError::Config(
            "no certificate in the CA file (expected PEM)".into(),
        ));
    }
    let mut b = reqwest::Client::builder()
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .pool_max_idle_per_host(256)
        // Nodes close a connection idle for 30 s (their default): drop it
        // first, rather than send on one the node is closing.
        .pool_idle_timeout(std::time::Duration::from_secs(20))
        .tcp_nodelay(true);
    for r in roots {
        b = b.add_root_certificate(r);
    }
    Ok(b.build()?)
}

/// Sign `req` as `me` (HTTP Message Signatures, RFC 9421): covers
/// `@method`, `@target-uri`, and with a body `content-digest` (added here)
/// and `content-type`; `created` now, a fresh random nonce. For callers that
/// build their own requests; [`Client`] signs every request it sends.
pub fn sign_request(
    me: &ClientKey,
    mut req: reqwest::Request,
) -> Result<reqwest::Request, ClientError> {
    let mut view = keyquorum_core::httpsig::Request {
        method: req.method().as_str().to_string(),
        target_uri: req.url().as_str().to_string(),
        headers: req
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: req
            .body()
            .and_then(reqwest::Body::as_bytes)
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| ClientError::Config(format!("the clock is before 1970: {e}")))?
        .as_secs();
    let mut nonce = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    me.sign(&mut view, created, &Hex(nonce.to_vec()).to_string())
        .map_err(|e| ClientError::Config(format!("cannot sign the request: {e}")))?;
    for field in ["content-digest", "signature-input", "signature"] {
        let value = view
            .field(field)
            .map(|v| reqwest::header::HeaderValue::from_str(&v))
            .transpose()
            .map_err(|e| ClientError::Config(format!("{field}: {e}")))?;
        if let Some(v) = value {
            req.headers_mut().insert(field, v);
        }
    }
    Ok(req)
}

/// A keyquorum API client.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    me: ClientKey,
}

impl Client {
    /// A client for the node at `base` (e.g. `https://127.0.0.1:7001`)
    /// trusting the certificates in `ca_pem` (PEM, one or more; for a dev
    /// cluster `<data-dir>/ca.pem`, the nodes' own certificates). No other
    /// roots are trusted.
    /// Every request is signed by `me` (RFC 9421).
    pub fn new(base: &str, me: &ClientKey, ca_pem: &[u8]) -> Result<Self, ClientError> {
        Ok(Self::with_http(http_client(ca_pem)?, base, me))
    }

    /// A client sharing an existing `reqwest::Client`.
    pub fn with_http(http: reqwest::Client, base: &str, me: &ClientKey) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            me: me.clone(),
        }
    }

    /// The client identity that signs this client's requests.
    pub fn identity(&self) -> &ClientKey {
        &self.me
    }

    fn signed(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Request, ClientError> {
        sign_request(&self.me, req.build()?)
    }
    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = self.http.execute(self.signed(req)?).await?;
        let status = resp.status();
        if status.is_success() {
            Ok(resp.json().await?)
        } else {
            let text = resp.text().await.unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(ErrorBody {
                error: "http".into(),
                message: text,
                culprits: Vec::new(),
            });
            Err(ClientError::Api {
                status: status.as_u16(),
                body,
            })
        }
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.post(format!("{}{path}", self.base)))
            .await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// Generate a key by DKG.
    pub async fn create_key(&self, req: &CreateKeyRequest) -> Result<KeyInfo, ClientError> {
        self.post("/v1/keys", req).await
    }

    /// List keys.
    pub async fn list_keys(&self) -> Result<KeyList, ClientError> {
        self.get("/v1/keys").await
    }

    /// One key.
    pub async fn key(&self, name: &str) -> Result<KeyInfo, ClientError> {
        self.get(&format!("/v1/keys/{name}")).await
    }

    /// Threshold-sign a message.
    pub async fn sign(&self, name: &str, message: &[u8]) -> Result<SignResponse, ClientError> {
        self.post(
            &format!("/v1/keys/{name}/sign"),
            &SignRequest {
                message: Hex(message.to_vec()),
            },
        )
        .await
    }

    /// Verify a signature under a key.
    pub async fn verify(
        &self,
        name: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, ClientError> {
        let r: VerifyResponse = self
            .post(
                &format!("/v1/keys/{name}/verify"),
                &VerifyRequest {
                    message: Hex(message.to_vec()),
                    signature: Hex(signature.to_vec()),
                },
            )
            .await?;
        Ok(r.valid)
    }

    /// Cluster status.
    pub async fn status(&self) -> Result<ClusterStatus, ClientError> {
        self.get("/v1/cluster").await
    }

    /// Health.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("/healthz").await
    }

    /// A page of the audit log (raw JSON).
    pub async fn audit(&self, offset: u64, limit: u64) -> Result<serde_json::Value, ClientError> {
        self.get(&format!("/v1/audit?offset={offset}&limit={limit}"))
            .await
    }

    /// Entry `seq` with its inclusion proof against the latest signed head
    /// (check it with [`audit::verify_proof`]).
    pub async fn audit_proof(
        &self,
        seq: u64,
    ) -> Result<keyquorum_wire::control::AuditProof, ClientError> {
        self.get(&format!("/v1/audit/proof/{seq}")).await
    }

    /// Verify the audit log (raw JSON: `valid`, `entries`, `signed_heads`, `fault`).
    pub async fn audit_verify(&self) -> Result<serde_json::Value, ClientError> {
        self.get("/v1/audit/verify").await
    }

    /// Refresh every share of a key (same public key; epoch + 1).
    pub async fn refresh(&self, name: &str) -> Result<KeyInfo, ClientError> {
        self.post_empty(&format!("/v1/keys/{name}/refresh")).await
    }

    /// Reshare a key to `threshold`-of-`members` (same public key; epoch + 1).
    pub async fn reshare(
        &self,
        name: &str,
        threshold: u16,
        members: &[NodeId],
    ) -> Result<KeyInfo, ClientError> {
        self.post(
            &format!("/v1/keys/{name}/reshare"),
            &ReshareRequest {
                threshold,
                members: members.to_vec(),
            },
        )
        .await
    }

    /// Rebuild node `node`'s lost share of a key from `t` other holders.
    pub async fn repair(&self, name: &str, node: NodeId) -> Result<KeyInfo, ClientError> {
        self.post(
            &format!("/v1/keys/{name}/repair"),
            &keyquorum_wire::api::RepairRequest { node },
        )
        .await
    }

    /// Ask for an export of a key, sealed to `recipient`'s public key.
    pub async fn request_export(
        &self,
        name: &str,
        recipient: &ExportKey,
    ) -> Result<ExportRecord, ClientError> {
        let record: ExportRecord = self
            .post(
                &format!("/v1/keys/{name}/exports"),
                &ExportRequest {
                    recipient: recipient.public(),
                },
            )
            .await?;
        // The record the operators will be asked to approve (by its id and
        // fingerprint) must be this request, not another one pending.
        if record.key != name
            || record.recipient != recipient.public()
            || record.requested_by != self.me.name()
        {
            return Err(ClientError::Verification(format!(
                "asked to export {name} to {}, the node answered with export {} of {} to {}",
                recipient.public(),
                record.id,
                record.key,
                record.recipient
            )));
        }
        Ok(record)
    }

    /// Every export request.
    pub async fn exports(&self) -> Result<ExportList, ClientError> {
        self.get("/v1/exports").await
    }

    /// Approve an export (an operator client): `record` as the operator
    /// read it (from [`Self::exports`]). The nodes approve it only if it is
    /// what they hold under its id.
    pub async fn approve_export(&self, record: &ExportRecord) -> Result<ExportRecord, ClientError> {
        self.post(
            &format!("/v1/exports/{}/approve", record.id),
            &keyquorum_wire::api::ApprovalRequest::of_export(record),
        )
        .await
    }

    /// Initialise a new cluster (`POST /v1/init`): its operators, quorum
    /// and first admin, with a proof of every voting member's init secret.
    /// The route ignores this client's signature (no client exists yet);
    /// build the client with the new admin's key.
    pub async fn init(
        &self,
        req: &keyquorum_wire::api::InitRequest,
    ) -> Result<keyquorum_wire::api::ChangeList, ClientError> {
        self.post("/v1/init", req).await
    }

    /// Propose a change to the operators (an admin or an operator).
    pub async fn propose_change(
        &self,
        change: keyquorum_wire::control::Change,
    ) -> Result<keyquorum_wire::control::ChangeRecord, ClientError> {
        let record: keyquorum_wire::control::ChangeRecord = self
            .post(
                "/v1/changes",
                &keyquorum_wire::api::ChangeRequest {
                    change: change.clone(),
                },
            )
            .await?;
        // The record the operators will be asked to approve (by its id and
        // fingerprint) must be this change, not another one pending.
        if record.change != change || record.requested_by != self.me.name() {
            return Err(ClientError::Verification(format!(
                "proposed {change:?}, the node answered with change {}: {:?}",
                record.id, record.change
            )));
        }
        Ok(record)
    }

    /// The operators, their quorum and the proposed changes.
    pub async fn changes(&self) -> Result<keyquorum_wire::api::ChangeList, ClientError> {
        self.get("/v1/changes").await
    }

    /// Approve the change or export `what` under `id` (an operator): what
    /// the operator read, from [`Self::changes`] or [`Self::exports`]. The
    /// nodes approve it only if it is what they hold under that id.
    pub async fn approve(
        &self,
        id: &str,
        what: &keyquorum_wire::api::ApprovalRequest,
    ) -> Result<keyquorum_wire::api::Approved, ClientError> {
        self.post(&format!("/v1/approvals/{id}"), what).await
    }

    /// Approve a proposed change (an operator): `record` as the operator
    /// read it. Answers the change as it stands after this approval.
    pub async fn approve_change(
        &self,
        record: &keyquorum_wire::control::ChangeRecord,
    ) -> Result<keyquorum_wire::control::ChangeRecord, ClientError> {
        let what = keyquorum_wire::api::ApprovalRequest::of_change(record);
        match self.approve(&record.id, &what).await? {
            keyquorum_wire::api::Approved::Change(c) if c.id == record.id => Ok(c),
            other => Err(ClientError::Verification(format!(
                "approved change {} but the answer is about something else: {other:?}",
                record.id
            ))),
        }
    }

    /// Carry out an approved export (the requester); open the result
    /// with [`ExportKey::open`].
    pub async fn run_export(&self, id: &str) -> Result<ExportResult, ClientError> {
        self.post_empty(&format!("/v1/exports/{id}/run")).await
    }

    /// Register a client identity (admin). The key pair is made by the
    /// client itself ([`ClientKey::generate`]); send its public key.
    pub async fn create_client(
        &self,
        req: &CreateClientRequest,
    ) -> Result<ClientCreated, ClientError> {
        self.post("/v1/clients", req).await
    }

    /// Revoke a client identity (admin).
    pub async fn revoke_client(&self, name: &str) -> Result<ClientRecord, ClientError> {
        self.post_empty(&format!("/v1/clients/{name}/revoke")).await
    }

    /// Every registered client (admin).
    pub async fn list_clients(&self) -> Result<ClientList, ClientError> {
        self.get("/v1/clients").await
    }

    /// Propose adding a node to the cluster (an admin or an operator): it
    /// joins once the operator quorum has approved the returned change
    /// ([`Self::approve`]); the leader then makes it a learner and, if
    /// `voter`, a voter.
    pub async fn add_node(&self, req: &AddNodeRequest) -> Result<ChangeRecord, ClientError> {
        self.add_node_change(req).await
    }

    /// The members as a joining node checks them, and their fingerprint
    /// (`keyquorum cluster join-code` makes the join code of it).
    pub async fn join_info(&self) -> Result<keyquorum_wire::api::JoinInfo, ClientError> {
        self.get("/v1/join").await
    }

    /// The newest checkpoint the node holds, its attestation of it and the
    /// audit log's signed heads (an admin; `keyquorum snapshot save`).
    pub async fn snapshot_download(
        &self,
    ) -> Result<keyquorum_wire::api::SnapshotDownload, ClientError> {
        self.get("/v1/snapshot").await
    }

    /// The join requests the node holds (an operator or admin); check
    /// each one's signature before proposing it.
    pub async fn joins(&self) -> Result<keyquorum_wire::api::JoinList, ClientError> {
        self.get("/v1/joins").await
    }

    async fn add_node_change(&self, req: &AddNodeRequest) -> Result<ChangeRecord, ClientError> {
        self.propose_change(keyquorum_wire::control::Change::AddNode {
            id: req.id,
            addr: req.addr.clone(),
            identity: req.identity,
            hpke: req.hpke,
            voter: req.voter,
        })
        .await
    }

    /// Propose removing a node that holds no shares (an admin or an
    /// operator): it leaves once the operator quorum has approved.
    pub async fn remove_node(&self, id: NodeId) -> Result<ChangeRecord, ClientError> {
        self.propose_change(keyquorum_wire::control::Change::RemoveNode {
            id,
            despite_trees: false,
        })
        .await
    }

    /// [`Client::remove_node`] although it is a member of signing trees:
    /// it keeps its shares of their unused leaves, and a tree that cannot
    /// gather a lock quorum without it stops signing for good.
    pub async fn remove_node_despite_trees(&self, id: NodeId) -> Result<ChangeRecord, ClientError> {
        self.propose_change(keyquorum_wire::control::Change::RemoveNode {
            id,
            despite_trees: true,
        })
        .await
    }

    /// The messaging deployment (salt, window, routing membership).
    pub async fn msg_deployment(&self) -> Result<MsgDeployment, ClientError> {
        self.get("/v1/msg/deployment").await
    }

    /// Register a messaging endpoint.
    pub async fn create_endpoint(
        &self,
        req: &CreateEndpointRequest,
    ) -> Result<EndpointInfo, ClientError> {
        self.post("/v1/msg/endpoints", req).await
    }

    /// Describe an endpoint.
    pub async fn endpoint(&self, name: &str) -> Result<EndpointInfo, ClientError> {
        self.get(&format!("/v1/msg/endpoints/{name}")).await
    }

    /// Revoke an endpoint.
    pub async fn revoke_endpoint(&self, name: &str) -> Result<EndpointInfo, ClientError> {
        self.send(
            self.http
                .delete(format!("{}/v1/msg/endpoints/{name}", self.base)),
        )
        .await
    }

    /// Publish signed one-time prekeys.
    pub async fn publish_prekeys(
        &self,
        name: &str,
        prekeys: Vec<Prekey>,
    ) -> Result<EndpointInfo, ClientError> {
        self.post(
            &format!("/v1/msg/endpoints/{name}/prekeys"),
            &PublishPrekeys { prekeys },
        )
        .await
    }

    /// Reserve `count` (1 ..= 64) of `name`'s prekeys, oldest first, for
    /// sending endpoint `by` (fewer come back when fewer are left).
    pub async fn claim_prekeys(
        &self,
        name: &str,
        by: &str,
        count: u16,
    ) -> Result<ClaimedPrekeys, ClientError> {
        self.post(
            &format!("/v1/msg/endpoints/{name}/claim"),
            &ClaimRequest {
                by: by.to_string(),
                count,
            },
        )
        .await
    }

    /// Hand a built message to the cluster.
    pub async fn send_message(&self, req: &SendRequest) -> Result<SendResponse, ClientError> {
        self.post("/v1/msg/messages", req).await
    }

    /// An endpoint's waiting messages.
    pub async fn inbox(&self, name: &str) -> Result<Inbox, ClientError> {
        self.get(&format!("/v1/msg/endpoints/{name}/inbox")).await
    }

    /// Remove opened messages.
    pub async fn ack(&self, name: &str, ids: Vec<Hex32>) -> Result<AckResponse, ClientError> {
        self.post(
            &format!("/v1/msg/endpoints/{name}/inbox/ack"),
            &AckRequest { ids },
        )
        .await
    }
}
