//! Wiring: starts a node (storage, Raft, the capabilities, the HTTPS
//! listener, the background writers) and stops it; and the thin
//! dispatchers in front of the capabilities:
//!
//! - peer messages: `Dispatch` hands each capability message to the
//!   capability that owns it (the cluster's own are handled in
//!   `cluster::transport`);
//! - routes: [`router`] merges each capability's routes, the cluster's and
//!   the peer endpoint, and serves the OpenAPI document of them all;
//! - commands: `cluster::machine::Registry` sends each to its part.
//!
//! A new capability adds one line to each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use keyquorum_store::Passphrase;
use keyquorum_wire::peer::PeerMessage;
use keyquorum_wire::NodeId;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use utoipa::OpenApi;

use crate::api::{refuse_oversized, CLIENT_BODY_LIMIT};
use crate::cluster::{Node, PeerHandler};
use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::he::He;
use crate::keys::Keys;
use crate::recovery::Oprf;
use crate::seedtree::Seedtrees;

/// Where capability messages go: to the capability that owns them.
pub(crate) struct Dispatch {
    keys: Arc<Keys>,
    he: Arc<He>,
    trees: Arc<Seedtrees>,
    oprf: Arc<Oprf>,
}

impl PeerHandler for Dispatch {
    fn handle<'a>(
        &'a self,
        node: &'a Node,
        from: NodeId,
        msg: PeerMessage,
    ) -> BoxFuture<'a, Result<PeerMessage, NodeError>> {
        Box::pin(async move {
            match msg {
                PeerMessage::MsgCoordinate { .. } => crate::msg::handle(node, msg).await,
                PeerMessage::HeDecrypt { .. } | PeerMessage::HeFetch { .. } => {
                    self.he.handle(node, from, msg).await
                }
                PeerMessage::StCommit { .. }
                | PeerMessage::StReveal { .. }
                | PeerMessage::StBuild { .. }
                | PeerMessage::StDeal { .. }
                | PeerMessage::StProgress { .. }
                | PeerMessage::StEndorse { .. }
                | PeerMessage::StLock { .. }
                | PeerMessage::StRelease { .. }
                | PeerMessage::StRedealOpen { .. }
                | PeerMessage::StRedeal { .. }
                | PeerMessage::StRedealPart { .. }
                | PeerMessage::StRedealEndorse { .. }
                | PeerMessage::StRedealDone { .. } => self.trees.handle(node, from, msg).await,
                PeerMessage::OprfCommit { .. } | PeerMessage::OprfRespond { .. } => {
                    self.oprf.handle(node, from, msg).await
                }
                // A reset key is reshared only by its account's rotation
                // (after the same wait for this replica to catch up as any
                // reshare's dealer).
                PeerMessage::ReshareDeal { ref plan, .. }
                    if keyquorum_wire::recovery::is_reset_key(&plan.key) =>
                {
                    crate::keys::catch_up(node, &msg).await;
                    match msg {
                        PeerMessage::ReshareDeal {
                            session,
                            plan,
                            request,
                        } => crate::recovery::account::deal_rotation(
                            &self.keys, node, from, session, &plan, &request,
                        ),
                        _ => Err(NodeError::Internal("not a reshare deal".into())),
                    }
                }
                PeerMessage::ResetSign {
                    account,
                    request_id,
                } => crate::recovery::reset::sign(&self.keys, node, &account, &request_id).await,
                PeerMessage::PinUnlock { request } => {
                    crate::recovery::pin::release(node, from, &request).await
                }
                _ => self.keys.handle(node, from, msg).await,
            }
        })
    }
}

/// A started node: its handle, bound address and server task.
pub struct RunningNode {
    /// The node.
    pub node: Node,
    /// Its shared keys.
    pub keys: Arc<Keys>,
    /// Its encrypted-data sessions.
    pub he: Arc<He>,
    /// Its signing trees.
    pub trees: Arc<Seedtrees>,
    /// Its OPRF service.
    pub oprf: Arc<Oprf>,
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    /// The node's own tasks: the audit writer, the batcher, the roster
    /// follower, the audit keeper, the sessions' inputs keeper.
    tasks: Vec<JoinHandle<()>>,
    raft_file: keyquorum_store::FileHandle,
    vault_file: keyquorum_store::FileHandle,
}

impl core::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RunningNode")
            .field("node", &self.node)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningNode {
    /// Stop serving and shut Raft down. `stop` returns once the Raft file is
    /// closed (openraft's tasks drop their storage handles shortly after its
    /// shutdown returns) and the vault too (it closes when the last [`Node`]
    /// handle drops: a request's task inside a network call to a node that
    /// is gone holds one until its time-out), so the node can be started
    /// again at once. Each wait is capped at 20 s.
    pub async fn stop(mut self) {
        self.stop_inner().await;
        let vault = self.vault_file.clone();
        drop(self);
        if !closed_within(&vault, Duration::from_secs(20)).await {
            tracing::warn!("the vault is still held 20 s after the node stopped");
        }
    }

    async fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.node.stop_tasks();
        let _ = self.node.raft().shutdown().await;
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
            let _ = t.await;
        }
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), s).await;
        }
        // A replication stream may be inside a network call to a node
        // that is gone: allow it its time-outs.
        closed_within(&self.raft_file, Duration::from_secs(20)).await;
    }
}

/// Wait up to `within` for `file` to close; whether it did.
async fn closed_within(file: &keyquorum_store::FileHandle, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while file.is_open() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    !file.is_open()
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for t in &self.tasks {
            t.abort();
        }
        self.node.stop_tasks();
    }
}

impl Node {
    /// Open storage, start Raft and serve on `config.listen` (or on
    /// `listener` if given).
    pub async fn start(
        config: NodeConfig,
        passphrase: &Passphrase,
        listener: Option<tokio::net::TcpListener>,
    ) -> Result<RunningNode, NodeError> {
        let opened = Node::open(config, passphrase, listener).await?;
        let node = opened.node.clone();
        let keys = Arc::new(Keys::new(&node)?);
        let he = Arc::new(He::new(keys.clone()));
        let trees = Arc::new(Seedtrees::new());
        let oprf = Arc::new(Oprf::new(keys.clone()));
        node.set_dispatch(Arc::new(Dispatch {
            keys: keys.clone(),
            he: he.clone(),
            trees: trees.clone(),
            oprf: oprf.clone(),
        }));
        // A node of a cluster not yet initialised keeps an init secret for
        // `keyquorum init` (deleted once it is: `cluster::audit`).
        if node.uninitialised() {
            crate::cluster::init::tidy_init_secret(&node.config().data_dir, node.id(), false)?;
        }
        crate::identity::PublicIdentity {
            id: node.id(),
            info: node.info(),
            certificate: node.certificate_pem(),
        }
        .write(&node.config().data_dir)?;
        let erased = keys.tidy(&node)?;
        if erased > 0 {
            tracing::info!(
                node = %node.id(),
                erased,
                "erased old share generations, their nonces and pending shares of dead runs"
            );
        }
        let audit = tokio::spawn(crate::cluster::audit::audit_writer(
            node.clone(),
            opened.audit_rx,
        ));
        let batcher = tokio::spawn(crate::cluster::batch::batch_writer(
            node.clone(),
            opened.batch_rx,
        ));
        let roster = tokio::spawn(crate::cluster::membership::follow_roster(node.clone()));
        let leaders = tokio::spawn(crate::cluster::metrics::watch_leader(node.clone()));
        let joined = tokio::spawn(crate::cluster::join::guard(node.clone()));
        let keeper = tokio::spawn(crate::cluster::audit::keeper::keeper(node.clone()));
        let inputs = tokio::spawn(crate::he::keeper::keeper(node.clone()));
        let settle = tokio::spawn(trees.clone().settle(node.clone()));
        let retirer = tokio::spawn(keys.clone().retire_superseded(node.clone()));
        let pins = tokio::spawn(crate::recovery::pin::erase_retired(
            keys.clone(),
            node.clone(),
        ));
        let (tx, rx) = oneshot::channel::<()>();
        let app = router(
            node.clone(),
            keys.clone(),
            he.clone(),
            trees.clone(),
            oprf.clone(),
        );
        let limits = crate::cluster::tls::Limits {
            header_read_timeout: Duration::from_millis(node.config().header_read_timeout_ms),
            max_connections: node.config().max_connections,
            max_per_source: node
                .config()
                .max_connections_per_source
                .min(node.config().max_connections),
            is_peer: {
                let node = node.clone();
                Arc::new(move |k: &[u8; 32]| node.is_known_identity(k))
            },
        };
        let server = tokio::spawn(crate::cluster::tls::serve(
            opened.listener,
            opened.tls,
            app,
            limits,
            rx,
        ));
        tracing::info!(node = %node.id(), bound = %opened.bound, "node started");
        Ok(RunningNode {
            node,
            keys,
            he,
            trees,
            oprf,
            addr: opened.bound,
            shutdown: Some(tx),
            server: Some(server),
            tasks: vec![
                audit, batcher, roster, leaders, joined, keeper, inputs, settle, retirer, pins,
            ],
            raft_file: opened.raft_file,
            vault_file: opened.vault_file,
        })
    }
}

/// The node's router: every capability's client routes, the cluster's,
/// the OpenAPI document and the peer endpoint.
pub fn router(
    node: Node,
    keys: Arc<Keys>,
    he: Arc<He>,
    trees: Arc<Seedtrees>,
    oprf: Arc<Oprf>,
) -> Router {
    let client = Router::new()
        .merge(crate::api::cluster::routes(node.clone()))
        .merge(crate::api::operators::routes(node.clone()))
        .merge(crate::api::join::routes(node.clone()))
        .merge(crate::api::backup::routes(node.clone()))
        .merge(crate::keys::api::routes(node.clone(), keys))
        .merge(crate::msg::api::routes(node.clone()))
        .merge(crate::he::api::routes(node.clone(), he))
        .merge(crate::seedtree::api::routes(node.clone(), trees))
        .merge(crate::recovery::api::routes(node.clone(), oprf))
        .route("/openapi.json", get(openapi))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(crate::api::auth::Authenticator::new(node.clone())),
            crate::api::auth::signed_requests,
        ))
        .layer(DefaultBodyLimit::max(CLIENT_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            refuse_oversized,
        ));
    client
        .merge(crate::cluster::transport::routes(node))
        .fallback(crate::api::not_found)
}

/// The OpenAPI document.
async fn openapi() -> Response {
    Json(doc::ApiDoc::openapi()).into_response()
}

/// The OpenAPI description of the client API (handlers named bare, as
/// before the routes moved to their capabilities, so operations carry no
/// module tags).
pub mod doc {
    #![allow(
        clippy::wildcard_imports,
        reason = "utoipa needs each handler's path struct in scope"
    )]
    use keyquorum_wire::api::{
        AddNodeRequest, ApprovalRequest, Approved, ChangeList, ChangeRequest,
        CheckpointAttestation, ClientCreated, ClientList, ClusterStatus, CreateClientRequest,
        CreateKeyRequest, ErrorBody, ExportList, ExportRequest, ExportResult, Health, InitBody,
        InitProof, InitRequest, JoinInfo, JoinList, JoinMember, JoinRequest, JoinStatus, KeyInfo,
        KeyList, NamedKey, NodeStatus, Readiness, RepairRequest, ReshareRequest, SealedExportShare,
        SignRequest, SignResponse, SnapshotDownload, SuiteName, VerifyRequest, VerifyResponse,
    };
    use keyquorum_wire::control::{
        AuditEntry, AuditProof, Change, ChangeRecord, ClientRecord, ExportRecord, Grant, SignedHead,
    };
    use keyquorum_wire::he::{
        CreateHeSessionRequest, HeInput, HeInputsStatement, HeOp, HeProgress, HeResultRecord,
        HeResultResponse, HeSessionInfo, HeSessionList, HeSessionRecord, HeStatus, HeTranscript,
        SubmitInputRequest, SubmitInputResponse,
    };
    use keyquorum_wire::msg::{
        AckRequest, AckResponse, ClaimRequest, ClaimedPrekeys, CoordinatorBundle,
        CreateEndpointRequest, EndpointInfo, EndpointRecord, Inbox, MailItem, MsgConfirmation,
        MsgDeployment, MsgNode, Prekey, PublishPrekeys, SealedBox, SendRequest, SendResponse,
    };
    use keyquorum_wire::oprf::{CreateOprfKeyRequest, EvaluateRequest, EvaluateResponse};
    use keyquorum_wire::recovery::{
        AccountInbox, AccountInfo, AccountList, CreateAccountRequest, FragmentDelivery,
        GuardianInfo, GuessRequest, GuessResponse, InboxItem, PinGuardian, PinProof, PinTag,
        RegisterSecretRequest, ResetCommitment, ResetPackage, ResetRequest, ResetResponse,
        RotateAccountRequest, SealedShare, SecretBeginRequest, SecretBeginResponse, SecretInfo,
        StretchParams, UnlockRequest, UnlockResponse,
    };
    use keyquorum_wire::seedtree::{
        CreateSeedtreeRequest, ReshareSeedtreeRequest, SealedLeafShare, SeedtreeInfo, SeedtreeLeaf,
        SeedtreeList, SeedtreeProgress, SeedtreeRecord, SignSeedtreeRequest,
    };
    use utoipa::OpenApi;

    use crate::api::backup::*;
    use crate::api::cluster::*;
    use crate::api::join::*;
    use crate::api::operators::*;
    use crate::he::api::*;
    use crate::keys::api::*;
    use crate::msg::api::*;
    use crate::recovery::api::*;
    use crate::seedtree::api::*;

    /// The OpenAPI description of the client API.
    #[derive(OpenApi)]
    #[openapi(
        info(title = "keyquorum", description = "Threshold key management: distributed key generation and FROST signing by a cluster of nodes; per-message key derivation for authenticated messages between endpoints; computation on encrypted data under a threshold key; a federated RFC 8554 hash-based signing tree; a threshold RFC 9497 VOPRF; credential guardians' accounts."),
        paths(create_key, list_keys, get_key, sign, verify, refresh_key, reshare_key, repair_key, request_export, list_exports,
            approve_export, run_export, create_client, list_clients, revoke_client, audit_log, audit_verify, audit_proof, cluster, healthz, readyz, metrics, join_info, join, list_joins, snapshot, checkpoint,
            msg_deployment, create_endpoint, get_endpoint, revoke_endpoint, publish_prekeys, claim_prekey, send_message, inbox, ack_inbox,
            init, propose_change, list_changes, approve,
            create_session, list_sessions, get_session, submit_input, close_session, session_result, session_transcript,
            create_tree, list_trees, get_tree, tree_progress, sign_leaf, reshare_tree,
            create_oprf_key, list_oprf_keys, get_oprf_key, evaluate_oprf,
            create_account, list_accounts, get_account, rotate_account, open_reset, get_reset, get_inbox, begin_secret, register_secret, get_secret, guess_secret, unlock_secret),
        components(schemas(CreateKeyRequest, KeyInfo, KeyList, SignRequest, SignResponse, VerifyRequest, VerifyResponse,
            ReshareRequest, RepairRequest, ExportRequest, ExportRecord, ExportList, ExportResult, SealedExportShare, CreateClientRequest, ClientCreated, ClientList, ClientRecord, Grant, AddNodeRequest,
            ClusterStatus, NodeStatus, Health, Readiness, JoinInfo, JoinMember, JoinRequest, JoinStatus, JoinList, CheckpointAttestation, SnapshotDownload, keyquorum_wire::control::NodeInfo, ErrorBody, AuditPage, AuditVerification, AuditEntry, AuditProof, SignedHead, SuiteName,
            MsgDeployment, MsgNode, CreateEndpointRequest, EndpointInfo, EndpointRecord, Prekey, PublishPrekeys, ClaimRequest, ClaimedPrekeys,
            SendRequest, SendResponse, CoordinatorBundle, SealedBox, MsgConfirmation, MailItem, Inbox, AckRequest, AckResponse,
            InitRequest, InitBody, InitProof, NamedKey, ChangeRequest, ChangeList, Change, ChangeRecord, ApprovalRequest, Approved,
            CreateHeSessionRequest, HeSessionInfo, HeSessionList, HeSessionRecord, HeProgress, HeResultRecord, HeStatus, HeOp,
            SubmitInputRequest, SubmitInputResponse, HeInput, HeTranscript, HeResultResponse, HeInputsStatement,
            CreateSeedtreeRequest, SeedtreeInfo, SeedtreeList, SeedtreeRecord, SignSeedtreeRequest, SeedtreeLeaf, SealedLeafShare, SeedtreeProgress, ReshareSeedtreeRequest,
            CreateOprfKeyRequest, EvaluateRequest, EvaluateResponse,
            CreateAccountRequest, AccountInfo, AccountList, GuardianInfo,
            RotateAccountRequest, ResetRequest, ResetResponse, FragmentDelivery, ResetPackage, ResetCommitment, AccountInbox, InboxItem,
            SecretBeginRequest, SecretBeginResponse, PinGuardian, PinTag, SealedShare, RegisterSecretRequest, SecretInfo,
            StretchParams, GuessRequest, GuessResponse, UnlockRequest, UnlockResponse, PinProof, keyquorum_wire::control::Endorsement)),
        modifiers(&Security)
    )]
    pub struct ApiDoc;

    struct Security;

    impl utoipa::Modify for Security {
        fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
            use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
            let components = openapi.components.get_or_insert_with(Default::default);
            // OpenAPI has no scheme type for HTTP Message Signatures: the
            // `Signature` field is described, with `Signature-Input` and
            // `Content-Digest` beside it.
            components.add_security_scheme(
                "httpsig",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "Signature",
                    "HTTP Message Signatures (RFC 9421), alg ed25519: Signature and \
                     Signature-Input fields covering at least @method, @target-uri and, \
                     with a body, content-digest (RFC 9530, sha-256 or sha-512); \
                     parameters created (within 300 s), nonce (never repeated) and \
                     keyid (the client's name)",
                ))),
            );
        }
    }
}
