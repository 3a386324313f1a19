//! The threshold VOPRF service's client routes: `POST /v1/oprf/keys`
//! (create), `GET /v1/oprf/keys` (list), `GET /v1/oprf/{key}` (show) and
//! `POST /v1/oprf/{key}/evaluate`. Each handler is its domain logic;
//! [`Audited`] authenticates, audits and answers.

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use keyquorum_wire::api::{ErrorBody, KeyInfo, KeyList};
use keyquorum_wire::oprf::{CreateOprfKeyRequest, EvaluateRequest, EvaluateResponse};
use keyquorum_wire::recovery::{
    AccountInbox, AccountInfo, AccountList, CreateAccountRequest, GuessRequest, GuessResponse,
    RegisterSecretRequest, ResetPackage, ResetRequest, ResetResponse, RotateAccountRequest,
    SecretBeginRequest, SecretBeginResponse, SecretInfo, UnlockRequest, UnlockResponse,
};

use super::Oprf;
use crate::api::{ApiJson, Audited};
use crate::cluster::Node;

/// The routes' state: this node and its OPRF service.
#[derive(Clone)]
pub(crate) struct OprfApi {
    node: Node,
    oprf: Arc<Oprf>,
}

impl FromRef<OprfApi> for Node {
    fn from_ref(s: &OprfApi) -> Node {
        s.node.clone()
    }
}

/// The OPRF routes.
pub(crate) fn routes(node: Node, oprf: Arc<Oprf>) -> Router {
    Router::new()
        .route("/v1/oprf/keys", post(create_oprf_key).get(list_oprf_keys))
        .route("/v1/oprf/{key}", get(get_oprf_key))
        .route("/v1/oprf/{key}/evaluate", post(evaluate_oprf))
        .route(
            "/v1/recovery/accounts",
            post(create_account).get(list_accounts),
        )
        .route("/v1/recovery/accounts/{account}", get(get_account))
        .route(
            "/v1/recovery/accounts/{account}/rotate",
            post(rotate_account),
        )
        .route("/v1/recovery/accounts/{account}/resets", post(open_reset))
        .route(
            "/v1/recovery/accounts/{account}/resets/{id}",
            get(get_reset),
        )
        .route("/v1/recovery/accounts/{account}/inbox", get(get_inbox))
        .route(
            "/v1/recovery/accounts/{account}/secret",
            post(register_secret).get(get_secret),
        )
        .route(
            "/v1/recovery/accounts/{account}/secret/begin",
            post(begin_secret),
        )
        .route(
            "/v1/recovery/accounts/{account}/secret/guess",
            post(guess_secret),
        )
        .route(
            "/v1/recovery/accounts/{account}/secret/unlock",
            post(unlock_secret),
        )
        .with_state(OprfApi { node, oprf })
}

/// Create an OPRF key by distributed key generation (an admin). The key
/// is `oprf.NAME` in the key registry (reshare, refresh and repair it
/// there).
#[utoipa::path(post, path = "/v1/oprf/keys", request_body = CreateOprfKeyRequest, security(("httpsig" = [])),
    responses((status = 200, body = KeyInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn create_oprf_key(
    req: Audited,
    State(s): State<OprfApi>,
    body: Result<ApiJson<CreateOprfKeyRequest>, Response>,
) -> Response {
    req.run_json(
        "oprf.create",
        body,
        |b| Some(b.name.clone()),
        |c, req| async move {
            c.require_admin()?;
            s.oprf.create(&s.node, req, &c.signed).await
        },
    )
    .await
}

/// List OPRF keys.
#[utoipa::path(get, path = "/v1/oprf/keys", security(("httpsig" = [])),
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_oprf_keys(req: Audited, State(s): State<OprfApi>) -> Response {
    req.run("oprf.list", None, |_| async move {
        Ok(KeyList {
            keys: Oprf::list(&s.node),
        })
    })
    .await
}

/// Show an OPRF key: its public key (what a VOPRF client verifies
/// against), threshold, members and generation.
#[utoipa::path(get, path = "/v1/oprf/{key}", params(("key" = String, Path, description = "OPRF key name")),
    security(("httpsig" = [])),
    responses((status = 200, body = KeyInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_oprf_key(
    req: Audited,
    State(s): State<OprfApi>,
    Path(key): Path<String>,
) -> Response {
    let target = key.clone();
    req.run("oprf.show", Some(&target), |_| async move {
        Oprf::info(&s.node, &key).await
    })
    .await
}

/// RFC 9497 VOPRF `BlindEvaluate` by `t` members together: the evaluated
/// element and one proof under the key's public key (a client whose
/// grant names `oprf.KEY`, or an admin; every member checks it).
#[utoipa::path(post, path = "/v1/oprf/{key}/evaluate", params(("key" = String, Path, description = "OPRF key name")),
    request_body = EvaluateRequest, security(("httpsig" = [])),
    responses((status = 200, body = EvaluateResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn evaluate_oprf(
    req: Audited,
    State(s): State<OprfApi>,
    Path(key): Path<String>,
    body: Result<ApiJson<EvaluateRequest>, Response>,
) -> Response {
    let target = key.clone();
    req.run_json(
        "oprf.evaluate",
        body,
        move |_| Some(target),
        |c, req| async move {
            let k = keyquorum_wire::oprf::key_name(&key);
            let g = &c.grant;
            if !(g.admin || g.sign_keys.contains(&k)) {
                return Err(crate::error::NodeError::Forbidden(format!(
                    "client {} may not evaluate with {k}",
                    g.name
                )));
            }
            s.oprf
                .evaluate(&s.node, &key, &req.blinded_element.0, &c.signed)
                .await
        },
    )
    .await
}

/// Enrol an account with the credential guardians (a client with the
/// `recovery` permission, or an admin): its guardians by rendezvous
/// hashing, its Ed25519 reset key by DKG among them, its channels and
/// device key.
#[utoipa::path(post, path = "/v1/recovery/accounts", request_body = CreateAccountRequest, security(("httpsig" = [])),
    responses((status = 200, body = AccountInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn create_account(
    req: Audited,
    State(s): State<OprfApi>,
    body: Result<ApiJson<CreateAccountRequest>, Response>,
) -> Response {
    req.run_json(
        "recovery.account.create",
        body,
        |b| Some(b.account.clone()),
        |c, req| async move {
            if !super::authority::may_enrol(&c.grant) {
                return Err(crate::error::NodeError::Forbidden(format!(
                    "client {} has neither the recovery permission nor admin",
                    c.grant.name
                )));
            }
            super::account::create(s.oprf.keys(), &s.node, req, &c.grant.name, &c.signed).await
        },
    )
    .await
}

/// List the enrolled accounts and the shard map's version.
#[utoipa::path(get, path = "/v1/recovery/accounts", security(("httpsig" = [])),
    responses((status = 200, body = AccountList), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_accounts(req: Audited, State(s): State<OprfApi>) -> Response {
    req.run("recovery.account.list", None, |_| async move {
        Ok(super::account::list(&s.node))
    })
    .await
}

/// Show an account: its guardians and their channels, its reset public
/// key (tokens verify under it), its device key.
#[utoipa::path(get, path = "/v1/recovery/accounts/{account}", params(("account" = String, Path, description = "account")),
    security(("httpsig" = [])),
    responses((status = 200, body = AccountInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_account(
    req: Audited,
    State(s): State<OprfApi>,
    Path(account): Path<String>,
) -> Response {
    let target = account.clone();
    req.run("recovery.account.show", Some(&target), |_| async move {
        super::account::info(&s.node, &account)
    })
    .await
}

/// Open a reset request (any live client: the user has lost the
/// credential; rate-limited per account and per client). `t` guardians
/// sign the reset message and each sends its fragment, sealed to the
/// account's device, over its own channel; the answer says which went
/// where.
#[utoipa::path(post, path = "/v1/recovery/accounts/{account}/resets", params(("account" = String, Path, description = "account")),
    request_body = ResetRequest, security(("httpsig" = [])),
    responses((status = 200, body = ResetResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn open_reset(
    req: Audited,
    State(s): State<OprfApi>,
    Path(account): Path<String>,
    body: Result<ApiJson<ResetRequest>, Response>,
) -> Response {
    let target = account.clone();
    req.run_json(
        "recovery.reset.open",
        body,
        move |_| Some(target),
        |c, req| async move {
            super::reset::open(s.oprf.keys(), &s.node, &account, req, &c.signed).await
        },
    )
    .await
}

/// A live reset request's signing package: the message, the signers and
/// their commitments, the reset key's verifying shares (what assembling
/// the token from its fragments needs).
#[utoipa::path(get, path = "/v1/recovery/accounts/{account}/resets/{id}",
    params(("account" = String, Path, description = "account"), ("id" = String, Path, description = "request id, hex")),
    security(("httpsig" = [])),
    responses((status = 200, body = ResetPackage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn get_reset(
    req: Audited,
    State(s): State<OprfApi>,
    Path((account, id)): Path<(String, String)>,
) -> Response {
    let target = account.clone();
    req.run("recovery.reset.show", Some(&target), |_| async move {
        s.node.read_barrier().await?;
        super::reset::package(&s.node, &account, &id)
    })
    .await
}

/// The account's `app` channel: fragments of its live reset requests,
/// each sealed to the device.
#[utoipa::path(get, path = "/v1/recovery/accounts/{account}/inbox", params(("account" = String, Path, description = "account")),
    security(("httpsig" = [])),
    responses((status = 200, body = AccountInbox), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_inbox(
    req: Audited,
    State(s): State<OprfApi>,
    Path(account): Path<String>,
) -> Response {
    let target = account.clone();
    req.run("recovery.inbox", Some(&target), |_| async move {
        // A request's POST answers once its `app` fragments are committed:
        // read everything committed before this call, on any node.
        s.node.read_barrier().await?;
        super::reset::inbox(&s.node, &account)
    })
    .await
}

/// Move an account to the guardians rendezvous hashing picks over the
/// voters now (a client with the `recovery` permission, or an admin), by
/// resharing its reset key: the reset public key does not change.
#[utoipa::path(post, path = "/v1/recovery/accounts/{account}/rotate", params(("account" = String, Path, description = "account")),
    request_body = RotateAccountRequest, security(("httpsig" = [])),
    responses((status = 200, body = AccountInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn rotate_account(
    req: Audited,
    State(s): State<OprfApi>,
    Path(account): Path<String>,
    body: Result<ApiJson<RotateAccountRequest>, Response>,
) -> Response {
    let target = account.clone();
    req.run_json(
        "recovery.account.rotate",
        body,
        move |_| Some(target),
        |c, req| async move {
            if !super::authority::may_enrol(&c.grant) {
                return Err(crate::error::NodeError::Forbidden(format!(
                    "client {} has neither the recovery permission nor admin",
                    c.grant.name
                )));
            }
            super::account::rotate(s.oprf.keys(), &s.node, &c.grant, &account, req, &c.signed).await
        },
    )
    .await
}

/// Begin registering a PIN-protected secret (an admin, or the client with
/// the `recovery` permission that enrolled the account; only while it has
/// no secret): the account's PIN key, made by DKG among its guardians if
/// it has none (`t > n/2` needed), evaluated once on the blinded,
/// Argon2id-stretched PIN.
#[utoipa::path(post, path = "/v1/recovery/accounts/{account}/secret/begin", params(("account" = String, Path, description = "account")),
    request_body = SecretBeginRequest, security(("httpsig" = [])),
    responses((status = 200, body = SecretBeginResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn begin_secret(
    req: Audited,
    State(s): State<OprfApi>,
    Path(account): Path<String>,
    body: Result<ApiJson<SecretBeginRequest>, Response>,
) -> Response {
    let target = account.clone();
    req.run_json(
        "recovery.secret.begin",
        body,
        move |_| Some(target),
        |c, req| async move { super::pin::begin(&s.oprf, &s.node, &account, req, &c.signed).await },
    )
    .await
}

/// Register the secret (the client that began: tag commitments, sealed
/// shares, the encrypted secret; every replica checks the shape).
#[utoipa::path(post, path = "/v1/recovery/accounts/{account}/secret", params(("account" = String, Path, description = "account")),
    request_body = RegisterSecretRequest, security(("httpsig" = [])),
    responses((status = 200, body = SecretInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn register_secret(
    req: Audited,
    State(s): State<OprfApi>,
    Path(account): Path<String>,
    body: Result<ApiJson<RegisterSecretRequest>, Response>,
) -> Response {
    let target = account.clone();
    req.run_json(
        "recovery.secret.register",
        body,
        move |_| Some(target),
        |c, req| async move { super::pin::register(&s.node, &account, req, &c.signed).await },
    )
    .await
}

/// The account's secret record: what recovering needs (salt, cost, tag
/// commitments, the encrypted secret) and the guesses left.
#[utoipa::path(get, path = "/v1/recovery/accounts/{account}/secret", params(("account" = String, Path, description = "account")),
    security(("httpsig" = [])),
    responses((status = 200, body = SecretInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_secret(
    req: Audited,
    State(s): State<OprfApi>,
    Path(account): Path<String>,
) -> Response {
    let target = account.clone();
    req.run("recovery.secret.show", Some(&target), |_| async move {
        s.node.read_barrier().await?;
        super::pin::info(&s.node, &account)
    })
    .await
}

/// Guess (any live client): counted in the log before any guardian
/// answers, then evaluated by `t` guardians that each count it too. Past
/// the limit the secret is destroyed.
#[utoipa::path(post, path = "/v1/recovery/accounts/{account}/secret/guess", params(("account" = String, Path, description = "account")),
    request_body = GuessRequest, security(("httpsig" = [])),
    responses((status = 200, body = GuessResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn guess_secret(
    req: Audited,
    State(s): State<OprfApi>,
    Path(account): Path<String>,
    body: Result<ApiJson<GuessRequest>, Response>,
) -> Response {
    let target = account.clone();
    req.run_json(
        "recovery.secret.guess",
        body,
        move |_| Some(target),
        |c, req| async move { super::pin::guess(&s.oprf, &s.node, &account, req, &c.signed).await },
    )
    .await
}

/// Unlock (the client that made the last guess): each guardian checks its
/// tag and releases its share sealed to the one-time recipient key.
#[utoipa::path(post, path = "/v1/recovery/accounts/{account}/secret/unlock", params(("account" = String, Path, description = "account")),
    request_body = UnlockRequest, security(("httpsig" = [])),
    responses((status = 200, body = UnlockResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn unlock_secret(
    req: Audited,
    State(s): State<OprfApi>,
    Path(account): Path<String>,
    body: Result<ApiJson<UnlockRequest>, Response>,
) -> Response {
    let target = account.clone();
    req.run_json(
        "recovery.secret.unlock",
        body,
        move |_| Some(target),
        |c, req| async move { super::pin::unlock(&s.node, &account, req, &c.signed).await },
    )
    .await
}
