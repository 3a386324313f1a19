//! The state machine's apply rules: what authorizes each command
//! (`super::authority`), the log clock, batches, the snapshot form.

use ed25519_dalek::{Signer, SigningKey};
use keyquorum_core::httpsig::{ClientKey, Request};
use keyquorum_wire::control::{node_statement, AuditEvent, Authority, Grant};
use keyquorum_wire::msg::MsgCommand;
use keyquorum_wire::peer::ClientRequest;
use keyquorum_wire::{Hex, Hex32};

use super::*;

const T0: u64 = 1_800_000_000_000;

fn id(n: u64) -> NodeId {
    NodeId::new(n as u16).unwrap()
}

fn node_key(n: u64) -> SigningKey {
    SigningKey::from_bytes(&[n as u8; 32])
}

/// Members 1 ..= `count`, at https://n1:7000 and so on.
fn nodes(count: u64) -> Vec<(u64, NodeInfo)> {
    (1..=count)
        .map(|n| {
            (
                n,
                NodeInfo {
                    addr: format!("https://n{n}:7000"),
                    identity: Hex32(node_key(n).verifying_key().to_bytes()),
                    hpke: Hex32([0; 32]),
                },
            )
        })
        .collect()
}

/// A registry with members 1 and 2 (addresses https://n1, https://n2)
/// and an admin client `admin` and a plain client `user`.
fn registry() -> (Registry, ClientKey, ClientKey) {
    let mut r = Registry::default();
    let nodes = nodes(2);
    r.membership(1, &nodes, &[1, 2]);
    assert_eq!(r.members.len(), 2);
    assert_eq!(r.voters.len(), 2);
    let admin = ClientKey::new("admin", SigningKey::from_bytes(&[9; 32]));
    let user = ClientKey::new("user", SigningKey::from_bytes(&[8; 32]));
    let first = init_command(&admin);
    // One member alone cannot initialise the cluster; one of two
    // members' signatures is not enough; both are.
    assert!(refused(
        &apply(&mut r, T0, vec![statement(1, T0, 1, first.clone())])[0]
    ));
    assert!(refused(
        &apply(&mut r, T0, vec![members(&[1], 2, first.clone())])[0]
    ));
    assert_eq!(
        apply(&mut r, T0, vec![members(&[1, 2], 3, first.clone())]),
        vec![ok()]
    );
    assert_eq!(r.operators.quorum, 2);
    assert_eq!(r.live_operators().len(), 2);
    // Once there is a client, not even all members together add one or
    // initialise again.
    let again = ClusterCommand::PutClient {
        record: record(
            &ClientKey::new("other", SigningKey::from_bytes(&[6; 32])),
            true,
        ),
    };
    assert!(refused(
        &apply(&mut r, T0, vec![members(&[1, 2], 4, again)])[0]
    ));
    let other = init_command(&ClientKey::new("other", SigningKey::from_bytes(&[6; 32])));
    assert!(refused(
        &apply(&mut r, T0, vec![members(&[1, 2], 5, other)])[0]
    ));
    assert!(!r.clients.contains_key("other"));
    let put_user = client(
        &admin,
        "POST",
        "https://n1:7000/v1/clients",
        &create_body(&user, false),
        T0,
        "n-user",
        ClusterCommand::PutClient {
            record: record(&user, false),
        },
    );
    assert_eq!(apply(&mut r, T0, vec![put_user]), vec![ok()]);
    (r, admin, user)
}

/// Operator `n` (`op1`, `op2`, ...).
fn operator(n: u8) -> ClientKey {
    ClientKey::new(format!("op{n}"), SigningKey::from_bytes(&[100 + n; 32]))
}

/// Initialise with operators op1 and op2 (quorum 2) and `admin`, naming
/// nodes 1 and 2.
fn init_command(admin: &ClientKey) -> ClusterCommand {
    init_naming(admin, founders(&[1, 2]))
}

/// [`init_command`] naming `nodes` instead.
fn init_naming(admin: &ClientKey, nodes: Vec<keyquorum_wire::control::Founder>) -> ClusterCommand {
    ClusterCommand::Init {
        operators: [operator(1), operator(2)]
            .iter()
            .map(|k| super::operators::operator_record(k.name().to_string(), Hex32(k.public_key())))
            .collect(),
        quorum: 2,
        admin: record(admin, true),
        default_threshold: None,
        nodes,
    }
}

/// Nodes `ids` of [`nodes`] as an init names them.
fn founders(ids: &[u64]) -> Vec<keyquorum_wire::control::Founder> {
    nodes(4)
        .into_iter()
        .filter(|(n, _)| ids.contains(n))
        .map(|(n, info)| keyquorum_wire::control::Founder { id: id(n), info })
        .collect()
}

/// Key "k" (2-of-2 on nodes 1 and 2), put straight into the state part
/// (endorsements are another test's).
fn put_test_key(r: &mut Registry) {
    let put = keyquorum_wire::control::KeysCommand::PutKey {
        record: keyquorum_wire::control::KeyRecord {
            name: "k".into(),
            suite: keyquorum_wire::api::SuiteName::Ed25519,
            threshold: 2,
            members: vec![id(1), id(2)],
            public_key: Hex(vec![]),
            group_key: Hex(vec![]),
            epoch: 1,
            session: Hex32([1; 32]),
            created_ms: T0,
        },
        expected_epoch: None,
        endorsements: vec![],
    };
    assert_eq!(r.keys.apply(&put, true), CommandResponse::Ok);
}

fn ok() -> CommandResponse {
    CommandResponse::Ok
}

fn refused(r: &CommandResponse) -> bool {
    matches!(r, CommandResponse::Rejected { .. })
}

fn record(k: &ClientKey, admin: bool) -> ClientRecord {
    ClientRecord {
        grant: Grant {
            name: k.name().to_string(),
            admin,
            operator: false,
            sign_keys: vec![],
            recovery: false,
        },
        public_key: Hex32(k.public_key()),
        expires_ms: None,
        revoked: false,
    }
}

fn create_body(k: &ClientKey, admin: bool) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "name": k.name(),
        "public_key": hex::encode(k.public_key()),
        "admin": admin,
    }))
    .unwrap()
}

/// Node `node`'s boot statement (boot id of `nonce`s) at `time_ms`,
/// announcing `rules`, on the restore `restored` names.
fn boot_statement(
    node: u64,
    time_ms: u64,
    nonce: u8,
    rules: Option<u16>,
    restored: Option<Hex32>,
) -> Authorized {
    statement(
        node,
        time_ms,
        nonce,
        ClusterCommand::Boot {
            boot: Hex32([nonce; 32]),
            rules,
            measurement: None,
            restored,
        },
    )
}

/// Both members state a boot announcing this build's rules (statement
/// nonces from `nonce + 1`), so the log takes them up.
fn announce_rules(r: &mut Registry, nonce: u8) {
    let boots = [1u64, 2]
        .iter()
        .map(|n| {
            let rules = Some(keyquorum_wire::control::APPLY_RULES);
            boot_statement(*n, T0, nonce + *n as u8, rules, None)
        })
        .collect();
    assert_eq!(apply(r, T0, boots), vec![ok(), ok()]);
    assert_eq!(r.rules_to_stamp(), keyquorum_wire::control::APPLY_RULES);
}

/// Nodes `by`'s endorsements of key record `rec` (what apply checks a new
/// key generation against).
fn endorse(
    rec: &keyquorum_wire::control::KeyRecord,
    by: &[u64],
) -> Vec<keyquorum_wire::control::Endorsement> {
    by.iter()
        .map(|n| keyquorum_wire::control::Endorsement {
            node: id(*n),
            signature: Hex(node_key(*n)
                .sign(&keyquorum_wire::control::key_statement(
                    &rec.name,
                    rec.epoch,
                    &rec.session,
                    &rec.group_key.0,
                ))
                .to_bytes()
                .to_vec()),
        })
        .collect()
}

fn statement(node: u64, time_ms: u64, nonce: u8, command: impl Into<Command>) -> Authorized {
    let command = command.into();
    let nonce = vec![nonce; 16];
    let sig = node_key(node).sign(&node_statement(id(node), time_ms, &nonce, &command));
    Authorized {
        command,
        by: Authority::Node {
            node: id(node),
            time_ms,
            nonce: Hex(nonce),
            signature: Hex(sig.to_bytes().to_vec()),
        },
    }
}

/// A statement signed by each of `nodes`, made at `T0`.
fn members(nodes: &[u64], nonce: u8, command: impl Into<Command>) -> Authorized {
    let command = command.into();
    let nonce = vec![nonce; 16];
    let signatures = nodes
        .iter()
        .map(|n| keyquorum_wire::control::Endorsement {
            node: id(*n),
            signature: Hex(node_key(*n)
                .sign(&keyquorum_wire::control::members_statement(
                    T0, &nonce, &command,
                ))
                .to_bytes()
                .to_vec()),
        })
        .collect();
    Authorized {
        command,
        by: Authority::Members {
            time_ms: T0,
            nonce: Hex(nonce),
            signatures,
        },
    }
}

fn client(
    k: &ClientKey,
    method: &str,
    uri: &str,
    body: &[u8],
    created_ms: u64,
    nonce: &str,
    command: impl Into<Command>,
) -> Authorized {
    let mut req = Request {
        method: method.into(),
        target_uri: uri.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_vec(),
    };
    k.sign(&mut req, created_ms / 1000, nonce).unwrap();
    Authorized {
        command: command.into(),
        by: Authority::Client {
            request: ClientRequest {
                method: req.method,
                target_uri: req.target_uri,
                headers: req.headers,
                body: Hex(req.body),
            },
        },
    }
}

fn apply(r: &mut Registry, time_ms: u64, commands: Vec<Authorized>) -> Vec<CommandResponse> {
    // The rules a leader of this log would stamp.
    let p = Proposal {
        rules: r.rules_to_stamp(),
        time_ms,
        commands,
    };
    match r.apply(7, &p) {
        CommandResponse::Batch { responses } => responses,
        other => vec![other],
    }
}

fn audit(node: u64, action: &str) -> ClusterCommand {
    ClusterCommand::Audit {
        events: vec![AuditEvent {
            time_ms: T0,
            node: id(node),
            actor: "x".into(),
            action: action.into(),
            target: None,
            outcome: "ok".into(),
        }],
    }
}

fn json(r: &Registry) -> String {
    serde_json::to_string(r).unwrap()
}

#[test]
fn a_proposal_applies_each_command_on_its_own_and_a_bad_proposal_changes_nothing() {
    let (mut r, _, _) = registry();
    let got = apply(
        &mut r,
        T0 + 1,
        vec![
            statement(1, T0, 10, audit(1, "a")),
            // Node 1 reports an event as node 2's: refused alone.
            statement(1, T0, 11, audit(2, "b")),
            statement(2, T0, 12, audit(2, "c")),
        ],
    );
    assert_eq!(got[0], ok());
    assert!(refused(&got[1]), "{got:?}");
    assert_eq!(got[2], ok());
    let actions: Vec<_> = r
        .audit
        .pending_entries()
        .iter()
        .map(|e| e.event.action.clone())
        .collect();
    assert_eq!(actions, ["a", "c"]);
    assert_eq!(r.clock.now_ms(), T0);

    // Refused whole, the state unchanged: empty, too long, other rules.
    let before = json(&r);
    let long: Vec<_> = (0..=MAX_BATCH)
        .map(|i| statement(1, T0, (i % 250) as u8 + 1, audit(1, "l")))
        .collect();
    for (rules, commands) in [
        (APPLY_RULES, Vec::new()),
        (APPLY_RULES, long),
        (APPLY_RULES + 1, vec![statement(1, T0, 20, audit(1, "z"))]),
        // Older rules than the log used: a leader cannot skip newer checks.
        (MIN_APPLY_RULES, vec![statement(1, T0, 21, audit(1, "y"))]),
    ] {
        let p = Proposal {
            rules,
            time_ms: T0 + 2,
            commands,
        };
        assert!(refused(&r.apply(8, &p)));
        assert_eq!(json(&r), before);
    }
}

/// What a hostile leader or member might append: each is refused and
/// changes nothing.
#[test]
fn commands_without_their_authority_are_refused_on_apply() {
    let (mut r, admin, user) = registry();
    let mallory = ClientKey::new("mallory", SigningKey::from_bytes(&[7; 32]));
    let put_mallory = || ClusterCommand::PutClient {
        record: record(&mallory, true),
    };
    let outsider = SigningKey::from_bytes(&[66; 32]);
    let forged_by_outsider = {
        let mut a = statement(1, T0, 30, audit(1, "x"));
        if let Authority::Node { signature, .. } = &mut a.by {
            let c = a.command.clone();
            *signature = Hex(outsider
                .sign(&node_statement(id(1), T0, &[30; 16], &c))
                .to_bytes()
                .to_vec());
        }
        a
    };
    let body = create_body(&mallory, true);
    let uri = "https://n1:7000/v1/clients";
    let attempts: Vec<(&str, Authorized)> = vec![
        // A member mints an admin on its own.
        (
            "node statement of a client",
            statement(1, T0, 31, put_mallory()),
        ),
        // A statement by a node that is not a member.
        ("non-member", statement(3, T0, 32, audit(3, "x"))),
        ("bad signature", forged_by_outsider),
        // A client's request for one thing carried with another.
        (
            "command not asked for",
            client(
                &admin,
                "POST",
                uri,
                &create_body(&user, false),
                T0,
                "c1",
                put_mallory(),
            ),
        ),
        // A plain client asking for an admin.
        (
            "not an admin",
            client(&user, "POST", uri, &body, T0, "c2", put_mallory()),
        ),
        // A request signed for another cluster's address.
        (
            "another cluster",
            client(
                &admin,
                "POST",
                "https://elsewhere:7000/v1/clients",
                &body,
                T0,
                "c3",
                put_mallory(),
            ),
        ),
        // A request made long before the log clock.
        (
            "stale request",
            client(
                &admin,
                "POST",
                uri,
                &body,
                T0 - 400_000,
                "c4",
                put_mallory(),
            ),
        ),
        // A statement made long before the log clock.
        (
            "stale statement",
            statement(1, T0 - 400_000, 33, audit(1, "x")),
        ),
        // A request to revoke another client used to revoke the admin.
        (
            "other path",
            client(
                &admin,
                "POST",
                "https://n1:7000/v1/clients/user/revoke",
                b"",
                T0,
                "c5",
                ClusterCommand::RevokeClient {
                    name: "admin".into(),
                },
            ),
        ),
        // Messaging commands a node may not state for a client.
        (
            "node statement of an ack",
            statement(
                2,
                T0,
                34,
                MsgCommand::Ack {
                    name: "e".into(),
                    ids: vec![],
                },
            ),
        ),
    ];
    let before = json(&r);
    for (what, a) in attempts {
        let got = apply(&mut r, T0 + 5, vec![a]);
        assert!(refused(&got[0]), "{what}: {got:?}");
    }
    // Nothing changed but the log clock.
    let mut after: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
    let mut was: serde_json::Value = serde_json::from_str(&before).unwrap();
    after["clock"] = serde_json::Value::Null;
    was["clock"] = serde_json::Value::Null;
    assert_eq!(after, was);

    // The real request is accepted once; the same authorization again
    // (a leader re-appending an old entry) is refused.
    let good = client(&admin, "POST", uri, &body, T0, "c6", put_mallory());
    assert_eq!(apply(&mut r, T0 + 6, vec![good.clone()]), vec![ok()]);
    let revoke = client(
        &admin,
        "POST",
        "https://n1:7000/v1/clients/mallory/revoke",
        b"",
        T0,
        "c7",
        ClusterCommand::RevokeClient {
            name: "mallory".into(),
        },
    );
    assert_eq!(apply(&mut r, T0 + 7, vec![revoke.clone()]), vec![ok()]);
    let a = statement(2, T0, 40, audit(2, "once"));
    assert_eq!(apply(&mut r, T0 + 8, vec![a.clone()]), vec![ok()]);
    let entries = r.audit.len();
    for replay in [good, revoke, a.clone()] {
        assert!(refused(&apply(&mut r, T0 + 9, vec![replay])[0]));
    }
    assert_eq!(r.audit.len(), entries);
    // Once the clock passes the window (moved by a command made then)
    // the authorization is forgotten, and the old statement is refused
    // as stale instead.
    let later = T0 + 1_000_000;
    let now = statement(1, later, 41, audit(1, "later"));
    assert_eq!(apply(&mut r, later, vec![now]), vec![ok()]);
    // With two voters (f = 0) the highest attested time is the clock;
    // `no_single_member_moves_the_log_clock` has three (f = 1).
    let now = statement(2, later, 42, audit(2, "later"));
    assert_eq!(apply(&mut r, later, vec![now]), vec![ok()]);
    assert_eq!(r.clock.now_ms(), later);
    let got = apply(&mut r, later, vec![a]);
    assert!(
        matches!(&got[0], CommandResponse::Rejected { reason } if reason.contains("stale")),
        "{got:?}"
    );
    assert_eq!(r.clock.remembered(), 2);
}

/// Replicas that apply the same entries reach the same state, and a
/// snapshot of it (members, clock, seen authorizations) loads back to
/// the same bytes and the same decisions.
#[test]
fn the_snapshot_form_round_trips_and_keeps_decisions() {
    let (mut r, admin, _) = registry();
    let a = statement(1, T0, 50, audit(1, "s"));
    assert_eq!(apply(&mut r, T0 + 1, vec![a.clone()]), vec![ok()]);
    let json1 = json(&r);
    let mut back: Registry = serde_json::from_str(&json1).unwrap();
    assert_eq!(json(&back), json1);
    assert!(
        refused(&apply(&mut back, T0 + 2, vec![a])[0]),
        "replay after a snapshot"
    );
    let c = client(
        &admin,
        "POST",
        "https://n2:7000/v1/clients/user/revoke",
        b"",
        T0,
        "s1",
        ClusterCommand::RevokeClient {
            name: "user".into(),
        },
    );
    assert_eq!(apply(&mut back, T0 + 3, vec![c.clone()]), vec![ok()]);
    assert!(refused(
        &apply(&mut r, T0 + 2, vec![statement(1, T0, 50, audit(1, "s"))])[0]
    ));
    assert_eq!(apply(&mut r, T0 + 3, vec![c]), vec![ok()]);
    assert_eq!(json(&r), json(&back));
    // The flat form: the parts' fields side by side.
    assert!(json1.starts_with(r#"{"keys":{},"clients":{"#), "{json1}");
    let old = r#"{"keys":{},"clients":{},"exports":{},"audit":[],"heads":[]}"#;
    let back: Registry = serde_json::from_str(old).unwrap();
    assert!(back.keys.records.is_empty() && back.members.is_empty());
}

/// The log clock is what the members attest: with three voters, the
/// second-highest of their latest statements. A leader's stamp moves
/// nothing; one member (the leader included) signing far-future times
/// moves only its own entry.
#[test]
fn no_single_member_moves_the_log_clock() {
    let mut r = Registry::default();
    let nodes = nodes(3);
    r.membership(1, &nodes, &[1, 2, 3]);
    // A later membership entry cannot swap a member's keys, and an id
    // that is no node id is left out without losing the others.
    let mut swapped = nodes.clone();
    swapped[0].1.identity = Hex32([9; 32]);
    swapped.push((0, swapped[1].1.clone()));
    r.membership(2, &swapped, &[0, 1, 2, 3]);
    assert_eq!(r.members.len(), 3);
    assert_eq!(r.voters.len(), 3);
    assert_eq!(r.members[&id(1)].identity, nodes[0].1.identity);
    let far = u64::MAX / 4;
    // The leader (node 1) stamps and signs a far-future time.
    assert_eq!(
        apply(&mut r, far, vec![statement(1, far, 60, audit(1, "t"))]),
        vec![ok()]
    );
    assert_eq!(r.clock.now_ms(), 0);
    // Nodes 2 and 3 attest real times: the clock is the second highest.
    assert_eq!(
        apply(&mut r, far, vec![statement(2, T0, 61, audit(2, "t"))]),
        vec![ok()]
    );
    assert_eq!(r.clock.now_ms(), T0);
    assert_eq!(
        apply(&mut r, far, vec![statement(3, T0 + 5, 62, audit(3, "t"))]),
        vec![ok()]
    );
    assert_eq!(r.clock.now_ms(), T0 + 5);
    // A refused statement (bad signature) attests nothing.
    let mut forged = statement(2, far, 63, audit(2, "u"));
    if let Authority::Node { signature, .. } = &mut forged.by {
        signature.0[0] ^= 1;
    }
    assert!(refused(&apply(&mut r, far, vec![forged])[0]));
    assert_eq!(r.clock.now_ms(), T0 + 5);
    // A tick is a statement like any other.
    let tick = statement(2, T0 + 9, 64, ClusterCommand::Tick {});
    assert_eq!(apply(&mut r, far, vec![tick]), vec![ok()]);
    assert_eq!(r.clock.now_ms(), T0 + 9);
}

/// Messaging statements within bounds only.
#[test]
fn messaging_statements_are_bounded() {
    let (mut r, _, _) = registry();
    let init = |window_ms, nonce| {
        statement(
            1,
            T0,
            nonce,
            MsgCommand::InitMsg {
                salt: Hex32([1; 32]),
                window_ms,
            },
        )
    };
    for (bad, nonce) in [(0, 70), (u64::MAX, 71)] {
        assert!(refused(&apply(&mut r, T0, vec![init(bad, nonce)])[0]));
    }
    assert_eq!(apply(&mut r, T0, vec![init(60_000, 72)]), vec![ok()]);
}

mod drain;
mod keys;
mod operators;
mod oprf;
mod recovery;
mod restore;
mod roster;
mod rules;
mod seedtree;
