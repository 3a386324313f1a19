//! What a client's signed request must ask for before a messaging command
//! applies, and what a delivered message must carry (DESIGN.md §4 item 3),
//! on every replica alike; the table is in
//! `crate::cluster::machine::authority`.

use keyquorum_wire::control::Grant;
use keyquorum_wire::msg::{
    AckRequest, ClaimRequest, CreateEndpointRequest, MsgCommand, PublishPrekeys,
};

use crate::cluster::machine::request::{body, need};
use crate::cluster::Registry;

/// Whether messaging command `command` is what a request `method` to the
/// path with segments `seg` and body `body_bytes` by a client with
/// `grant` asks for.
pub(crate) fn asks_for(
    r: &Registry,
    grant: &Grant,
    method: &str,
    seg: &[&str],
    body_bytes: &[u8],
    command: &MsgCommand,
) -> Result<(), String> {
    let post = method.eq_ignore_ascii_case("POST");
    let owner_or_admin = |name: &str| {
        let owner = r.msg.endpoints.get(name).map(|e| e.owner.as_str());
        need(
            grant.admin || owner == Some(grant.name.as_str()),
            "the client does not own the endpoint",
        )
    };
    match command {
        MsgCommand::PutEndpoint { record } => {
            need(
                post && seg == ["v1", "msg", "endpoints"],
                "POST /v1/msg/endpoints",
            )?;
            let b: CreateEndpointRequest = body(body_bytes)?;
            need(
                record.name == b.name
                    && record.identity == b.identity
                    && record.owner == grant.name
                    && !record.revoked,
                "the endpoint asked for",
            )?;
            r.clock.fresh(record.created_ms)
        }
        MsgCommand::AddPrekeys { name, prekeys } => {
            if post && seg == ["v1", "msg", "endpoints"] {
                let b: CreateEndpointRequest = body(body_bytes)?;
                owner_or_admin(name)?;
                need(
                    b.name == *name && b.prekeys == *prekeys,
                    "the prekeys asked for",
                )
            } else {
                need(
                    post && seg == ["v1", "msg", "endpoints", name.as_str(), "prekeys"],
                    "POST /v1/msg/endpoints/{name}/prekeys",
                )?;
                owner_or_admin(name)?;
                let b: PublishPrekeys = body(body_bytes)?;
                need(b.prekeys == *prekeys, "the prekeys asked for")
            }
        }
        MsgCommand::RevokeEndpoint { name } => {
            need(
                method.eq_ignore_ascii_case("DELETE")
                    && seg == ["v1", "msg", "endpoints", name.as_str()],
                "DELETE /v1/msg/endpoints/{name}",
            )?;
            owner_or_admin(name)
        }
        MsgCommand::ClaimPrekey {
            name,
            by,
            count,
            time_ms,
        } => {
            need(
                post && seg == ["v1", "msg", "endpoints", name.as_str(), "claim"],
                "POST /v1/msg/endpoints/{name}/claim",
            )?;
            let b: ClaimRequest = body(body_bytes)?;
            need(b.by == *by && b.count == *count, "the claim asked for")?;
            owner_or_admin(by)?;
            r.clock.fresh(*time_ms)
        }
        MsgCommand::Ack { name, ids } => {
            need(
                post && seg == ["v1", "msg", "endpoints", name.as_str(), "inbox", "ack"],
                "POST /v1/msg/endpoints/{name}/inbox/ack",
            )?;
            owner_or_admin(name)?;
            let b: AckRequest = body(body_bytes)?;
            need(b.ids == *ids, "the ids asked for")
        }
        MsgCommand::InitMsg { .. } | MsgCommand::Deliver { .. } => {
            Err("only a node may state this".into())
        }
    }
}

/// A delivered message is the one its sending endpoint signed, to the
/// receiving endpoint, under this identifier, prekey and time.
pub(crate) fn signed_by_sender(
    r: &Registry,
    item: &keyquorum_wire::msg::MailItem,
    prekey: &keyquorum_wire::Hex32,
) -> Result<(), String> {
    let identity = |name: &str| {
        r.msg
            .endpoints
            .get(name)
            .map(|e| e.identity.0)
            .ok_or_else(|| format!("no endpoint {name}"))
    };
    let (sender, receiver) = (identity(&item.from)?, identity(&item.to)?);
    let signature: [u8; 64] = item
        .signature
        .0
        .as_slice()
        .try_into()
        .map_err(|_| "the sender's signature is not 64 bytes".to_string())?;
    let header = keyquorum_core::msgkey::protocol::check_signed(
        &sender,
        &item.header.0,
        &item.payload.0,
        &signature,
    )
    .map_err(|e| format!("the message is not its sender's: {e}"))?;
    let routing = &header.routing;
    need(
        routing.receiver == receiver
            && routing.id == item.id.0
            && routing.prekey == prekey.0
            && routing.time_ms == item.time_ms,
        "the receiver, identifier, prekey and time the sender signed",
    )
}
