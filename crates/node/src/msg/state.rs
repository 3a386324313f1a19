//! Per-message key derivation's part of the replicated state machine:
//! endpoints, published prekeys, claims, mailboxes and the seen-set
//! ([`MsgState`]), and how its commands ([`MsgCommand`]) apply.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use keyquorum_wire::control::CommandResponse;
use keyquorum_wire::msg::{
    EndpointRecord, MailItem, MsgCommand, MsgNode, MsgRoute, Prekey, CLAIM_COUNTS, MAX_CLAIM,
};
use keyquorum_wire::Hex32;
use serde::{Deserialize, Serialize};

use super::quota::Usage;

/// Largest number of unclaimed prekeys an endpoint may have published.
pub const MAX_PREKEYS: usize = 1_000;
/// Most prekeys in one publish.
pub const MAX_PREKEYS_PER_CALL: usize = 200;
/// Most messages waiting in one mailbox under apply rules older than
/// [`super::quota::QUOTA_RULES`] (from those, [`super::quota::MAILBOX_MESSAGES`]).
pub const MAX_MAILBOX: usize = 10_000;

/// The replicated part of per-message key derivation (DESIGN.md §3.2).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MsgState {
    /// Public HKDF salt, set once.
    pub salt: Option<Hex32>,
    /// Acceptance window (ms).
    pub window_ms: u64,
    /// Endpoints by name.
    pub endpoints: BTreeMap<String, EndpointRecord>,
    /// Published, unclaimed prekeys by endpoint, oldest first.
    pub prekeys: BTreeMap<String, VecDeque<Prekey>>,
    /// Claimed, unused prekeys by public key.
    pub claimed: BTreeMap<Hex32, Claim>,
    /// The same, ordered by claim time, for lapsing.
    #[serde(default)]
    pub claims_by_time: BTreeSet<(u64, Hex32)>,
    /// Waiting messages by receiver, oldest first.
    pub mail: BTreeMap<String, Vec<MailItem>>,
    /// Identifiers accepted within the window: id → header time.
    pub seen: BTreeMap<Hex32, u64>,
    /// The same, ordered by time, for pruning.
    pub seen_by_time: BTreeSet<(u64, Hex32)>,
    /// Newest header time accepted.
    pub newest_ms: u64,
    /// The voting members coordinators were chosen from, with the log time
    /// each set took over, oldest first (the last [`ROUTES`]).
    #[serde(default)]
    pub routes: VecDeque<(u64, Vec<MsgNode>)>,
    /// What each client uses, for the quotas (`super::quota`): derived,
    /// never serialized.
    #[serde(skip)]
    usage: Usage,
}

/// Why an endpoint cannot send or receive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// Never registered.
    #[error("unknown endpoint {0}")]
    Unknown(String),
    /// Revoked.
    #[error("endpoint {0} is revoked")]
    Revoked(String),
}

/// A sender's reservation of a receiver's prekey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Receiving endpoint.
    pub to: String,
    /// Sending endpoint.
    pub by: String,
    /// When it was claimed (ms).
    pub at_ms: u64,
}

/// Remove from `map` (and its time index `by_time`) every entry older
/// than `oldest`.
fn lapse<V>(by_time: &mut BTreeSet<(u64, Hex32)>, map: &mut BTreeMap<Hex32, V>, oldest: u64) {
    while let Some(&(t, key)) = by_time.first() {
        if t >= oldest {
            break;
        }
        by_time.pop_first();
        map.remove(&key);
    }
}

/// How many membership changes the state remembers for routing.
pub const ROUTES: usize = 16;

impl MsgState {
    /// The voting members are `nodes` from log time `now_ms` on (noted
    /// only when they changed).
    pub fn note_route(&mut self, now_ms: u64, nodes: Vec<MsgNode>) {
        if self.routes.back().is_some_and(|(_, last)| *last == nodes) {
            return;
        }
        self.routes.push_back((now_ms, nodes));
        // Past the last ROUTES, a route goes once no waiting message can
        // have been routed under it (mail is bounded by the quotas).
        let oldest = self
            .mail
            .values()
            .filter_map(|q| q.first())
            .map(|m| m.time_ms)
            .min();
        while self.routes.len() > ROUTES {
            let ended = self.routes.get(1).map_or(u64::MAX, |(t, _)| *t);
            if oldest.is_some_and(|o| ended.saturating_add(self.window_ms) >= o) {
                break;
            }
            self.routes.pop_front();
        }
    }

    /// The routes before the current one, newest first, each with the
    /// time it ended.
    pub fn earlier_routes(&self) -> Vec<MsgRoute> {
        let ends: Vec<u64> = self.routes.iter().skip(1).map(|(t, _)| *t).collect();
        self.routes
            .iter()
            .zip(ends)
            .map(|((from_ms, nodes), until_ms)| MsgRoute {
                from_ms: *from_ms,
                until_ms,
                nodes: nodes.clone(),
            })
            .rev()
            .collect()
    }

    fn owner_of(&self, endpoint: &str) -> Option<&str> {
        self.endpoints.get(endpoint).map(|r| r.owner.as_str())
    }

    /// Recount the quotas' [`Usage`] from the state (after loading it).
    pub fn rebuild_usage(&mut self) {
        self.usage = Usage::rebuild(&self.endpoints, &self.mail);
    }

    /// The quotas' counts (for tests: they must equal a recount).
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// Whether `owner` may register one more endpoint (`super::quota`).
    pub fn endpoint_quota(&self, owner: &str) -> Result<(), String> {
        self.usage.endpoint_quota(owner)
    }

    /// Whether a message of `bytes` from endpoint `from` to endpoint `to`
    /// fits its quotas (`super::quota`).
    pub fn delivery_quota(&self, from: &str, to: &str, bytes: usize) -> Result<(), String> {
        let waiting = self.mail.get(to).map_or(0, Vec::len);
        self.usage
            .delivery_quota(waiting, self.owner_of(from), to, self.owner_of(to), bytes)
    }

    /// Count `item` waiting, or gone from its mailbox.
    fn count_item(&mut self, item: &MailItem, waiting: bool) {
        let sender = self.owner_of(&item.from).map(str::to_string);
        let receiver = self.owner_of(&item.to).map(str::to_string);
        self.usage
            .count_item(sender.as_deref(), item, receiver.as_deref(), waiting);
    }

    /// The live (registered, not revoked) endpoint `name`.
    pub fn live(&self, name: &str) -> Result<&EndpointRecord, Unusable> {
        match self.endpoints.get(name) {
            None => Err(Unusable::Unknown(name.to_string())),
            Some(r) if r.revoked => Err(Unusable::Revoked(name.to_string())),
            Some(r) => Ok(r),
        }
    }

    /// Identifiers older than this are no longer remembered, and refused.
    /// Coordinators refuse anything outside ±window of their clock, and the
    /// newest accepted time is at most now + window, so nothing still
    /// acceptable is ever pruned.
    pub fn oldest_acceptable(&self) -> u64 {
        self.newest_ms
            .saturating_sub(self.window_ms.saturating_mul(2))
    }

    /// Move the clock of the log forward to `time_ms` and forget what has
    /// fallen out of the window: identifiers in the seen-set, and claims
    /// never used (a message sealed to a lapsed claim is older than the
    /// window and refused anyway).
    fn advance(&mut self, time_ms: u64) {
        self.newest_ms = self.newest_ms.max(time_ms);
        let oldest = self.oldest_acceptable();
        lapse(&mut self.seen_by_time, &mut self.seen, oldest);
        lapse(&mut self.claims_by_time, &mut self.claimed, oldest);
    }

    /// Is `p` a prekey signed by `record`'s identity? (Checked by the node
    /// that takes the request, and again on apply.)
    pub fn check_prekey(record: &EndpointRecord, p: &Prekey) -> Result<(), String> {
        let signature: [u8; 64] = p
            .signature
            .0
            .as_slice()
            .try_into()
            .map_err(|_| "prekey signature is not 64 bytes".to_string())?;
        keyquorum_core::msgkey::protocol::SignedPrekey {
            public: p.public.0,
            signature,
        }
        .verify(&record.identity.0)
        .map_err(|_| {
            format!(
                "prekey {} is not signed by endpoint {}",
                p.public, record.name
            )
        })
    }

    /// Apply one of messaging's commands; `quotas`: whether the entry's
    /// apply rules put the quotas in force (`super::quota`).
    pub(crate) fn apply(&mut self, command: &MsgCommand, quotas: bool) -> CommandResponse {
        match command {
            MsgCommand::InitMsg { salt, window_ms } => {
                if self.salt.is_none() {
                    self.salt = Some(*salt);
                    self.window_ms = *window_ms;
                }
                CommandResponse::Ok
            }
            MsgCommand::PutEndpoint { record } => {
                if self.endpoints.contains_key(&record.name) {
                    return CommandResponse::rejected(format!("endpoint {} exists", record.name));
                }
                if record.revoked {
                    return CommandResponse::rejected("a new endpoint cannot be revoked");
                }
                if quotas {
                    if let Err(e) = self.endpoint_quota(&record.owner) {
                        return CommandResponse::rejected(e);
                    }
                }
                self.endpoints.insert(record.name.clone(), record.clone());
                self.usage.count_endpoint(&record.owner, true);
                CommandResponse::Ok
            }
            MsgCommand::RevokeEndpoint { name } => match self.endpoints.get_mut(name) {
                None => CommandResponse::rejected(format!("unknown endpoint {name}")),
                Some(r) => {
                    let owner = (!r.revoked).then(|| r.owner.clone());
                    r.revoked = true;
                    if let Some(owner) = owner {
                        self.usage.count_endpoint(&owner, false);
                    }
                    self.prekeys.remove(name);
                    for item in self.mail.remove(name).unwrap_or_default() {
                        self.count_item(&item, false);
                    }
                    self.claimed.retain(|_, c| c.to != *name && c.by != *name);
                    let claimed = &self.claimed;
                    self.claims_by_time.retain(|(_, p)| claimed.contains_key(p));
                    CommandResponse::Ok
                }
            },
            MsgCommand::AddPrekeys { name, prekeys } => {
                let record = match self.live(name) {
                    Ok(r) => r,
                    Err(e) => return CommandResponse::rejected(e.to_string()),
                };
                if prekeys.is_empty() || prekeys.len() > MAX_PREKEYS_PER_CALL {
                    return CommandResponse::rejected(format!(
                        "publish 1 to {MAX_PREKEYS_PER_CALL} prekeys at a time"
                    ));
                }
                let pool = self.prekeys.get(name).map_or(0, VecDeque::len);
                if pool + prekeys.len() > MAX_PREKEYS {
                    return CommandResponse::rejected(format!(
                        "{name} would have more than {MAX_PREKEYS} unclaimed prekeys"
                    ));
                }
                let mut fresh = BTreeSet::new();
                for p in prekeys {
                    if let Err(e) = Self::check_prekey(record, p) {
                        return CommandResponse::rejected(e);
                    }
                    let known = self.claimed.contains_key(&p.public)
                        || self
                            .prekeys
                            .get(name)
                            .is_some_and(|q| q.iter().any(|x| x.public == p.public));
                    if known || !fresh.insert(p.public) {
                        return CommandResponse::rejected(format!(
                            "prekey {} published twice",
                            p.public
                        ));
                    }
                }
                self.prekeys
                    .entry(name.clone())
                    .or_default()
                    .extend(prekeys.iter().cloned());
                CommandResponse::Ok
            }
            MsgCommand::ClaimPrekey {
                name,
                by,
                count,
                time_ms,
            } => {
                if let Err(e) = self.live(name).and(self.live(by)) {
                    return CommandResponse::rejected(e.to_string());
                }
                if !CLAIM_COUNTS.contains(count) {
                    return CommandResponse::rejected(format!(
                        "a claim reserves 1 to {MAX_CLAIM} prekeys"
                    ));
                }
                let Some(queue) = self.prekeys.get_mut(name).filter(|q| !q.is_empty()) else {
                    return CommandResponse::rejected(format!("{name} has no prekeys left"));
                };
                let take = queue.len().min(usize::from(*count));
                let prekeys: Vec<Prekey> = queue.drain(..take).collect();
                for p in &prekeys {
                    self.claimed.insert(
                        p.public,
                        Claim {
                            to: name.clone(),
                            by: by.clone(),
                            at_ms: *time_ms,
                        },
                    );
                    self.claims_by_time.insert((*time_ms, p.public));
                }
                self.advance(*time_ms);
                CommandResponse::Claimed { prekeys }
            }
            MsgCommand::Deliver { item, prekey } => {
                if let Err(e) = self.live(&item.to).and(self.live(&item.from)) {
                    return CommandResponse::rejected(e.to_string());
                }
                if quotas {
                    if let Err(e) =
                        super::quota::check_shape(&item.for_receiver, &item.confirmations)
                    {
                        return CommandResponse::rejected(e);
                    }
                }
                if self.seen.contains_key(&item.id) {
                    return CommandResponse::rejected(format!(
                        "message {} was already accepted (replay)",
                        item.id
                    ));
                }
                if item.time_ms < self.oldest_acceptable() {
                    return CommandResponse::rejected(
                        "message is older than the acceptance window",
                    );
                }
                match self.claimed.get(prekey) {
                    Some(c) if c.to == item.to && c.by == item.from => {}
                    _ => {
                        return CommandResponse::rejected(format!(
                            "prekey {prekey} is not claimed by {} for {}, or already used",
                            item.from, item.to
                        ))
                    }
                }
                if quotas {
                    if let Err(e) =
                        self.delivery_quota(&item.from, &item.to, super::quota::item_bytes(item))
                    {
                        return CommandResponse::rejected(e);
                    }
                }
                let mailbox = self.mail.entry(item.to.clone()).or_default();
                if mailbox.len() >= MAX_MAILBOX {
                    return CommandResponse::rejected(format!("mailbox of {} is full", item.to));
                }
                mailbox.push(item.clone());
                self.count_item(item, true);
                if let Some(c) = self.claimed.remove(prekey) {
                    self.claims_by_time.remove(&(c.at_ms, *prekey));
                }
                self.seen.insert(item.id, item.time_ms);
                self.seen_by_time.insert((item.time_ms, item.id));
                self.advance(item.time_ms);
                CommandResponse::Ok
            }
            MsgCommand::Ack { name, ids } => {
                let Some(mailbox) = self.mail.get_mut(name) else {
                    return CommandResponse::Removed { count: 0 };
                };
                let ids: BTreeSet<&Hex32> = ids.iter().collect();
                let (gone, kept): (Vec<MailItem>, Vec<MailItem>) = std::mem::take(mailbox)
                    .into_iter()
                    .partition(|m| ids.contains(&m.id));
                *mailbox = kept;
                for item in &gone {
                    self.count_item(item, false);
                }
                CommandResponse::Removed {
                    count: gone.len() as u64,
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use keyquorum_wire::control::CommandResponse;

    use super::*;

    /// Messaging's part alone, applied as the state machine's dispatcher
    /// would apply its commands.
    struct Part(MsgState);

    impl Part {
        fn new() -> Self {
            Part(MsgState::default())
        }

        fn apply(&mut self, _index: u64, command: MsgCommand) -> CommandResponse {
            self.0.apply(&command, true)
        }
    }

    /// A command registering endpoint `name` with identity `key`.
    pub(crate) fn endpoint(name: &str, key: &ed25519_dalek::SigningKey) -> MsgCommand {
        MsgCommand::PutEndpoint {
            record: EndpointRecord {
                name: name.into(),
                identity: Hex32(key.verifying_key().to_bytes()),
                owner: "t".into(),
                revoked: false,
                created_ms: 0,
            },
        }
    }

    fn prekeys(key: &ed25519_dalek::SigningKey, n: usize) -> Vec<Prekey> {
        (0..n)
            .map(|_| {
                let (_, p) =
                    keyquorum_core::msgkey::protocol::new_prekey(&mut rand_core::OsRng, key);
                Prekey {
                    public: Hex32(p.public),
                    signature: keyquorum_wire::Hex(p.signature.to_vec()),
                }
            })
            .collect()
    }

    fn item(id: u8, time_ms: u64) -> MailItem {
        let b = keyquorum_wire::msg::SealedBox {
            enc: Default::default(),
            ciphertext: Default::default(),
        };
        MailItem {
            id: Hex32([id; 32]),
            from: "a".into(),
            to: "b".into(),
            header: Default::default(),
            signature: Default::default(),
            payload: Default::default(),
            for_receiver: b,
            confirmations: Vec::new(),
            time_ms,
        }
    }

    fn claim_n(r: &mut Part, count: u16, time_ms: u64) -> Vec<Hex32> {
        match r.apply(
            0,
            MsgCommand::ClaimPrekey {
                name: "b".into(),
                by: "a".into(),
                count,
                time_ms,
            },
        ) {
            CommandResponse::Claimed { prekeys } => prekeys.iter().map(|p| p.public).collect(),
            other => panic!("claim: {other:?}"),
        }
    }

    fn claim(r: &mut Part, time_ms: u64) -> Hex32 {
        let got = claim_n(r, 1, time_ms);
        assert_eq!(got.len(), 1);
        got[0]
    }

    #[test]
    fn prekeys_are_claimed_once_spent_once_and_lapse_with_the_window() {
        let ka = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
        let kb = ed25519_dalek::SigningKey::from_bytes(&[2u8; 32]);
        let mut r = Part::new();
        let w = 1_000;
        let ok = CommandResponse::Ok;
        assert_eq!(
            r.apply(
                0,
                MsgCommand::InitMsg {
                    salt: Hex32([9; 32]),
                    window_ms: w
                }
            ),
            ok
        );
        assert_eq!(r.apply(0, endpoint("a", &ka)), ok);
        assert_eq!(r.apply(0, endpoint("b", &kb)), ok);
        let is_rejected = |c: CommandResponse| matches!(c, CommandResponse::Rejected { .. });
        // A prekey signed by another identity is refused.
        assert!(is_rejected(r.apply(
            0,
            MsgCommand::AddPrekeys {
                name: "b".into(),
                prekeys: prekeys(&ka, 1)
            }
        )));
        let published = prekeys(&kb, 3);
        assert_eq!(
            r.apply(
                0,
                MsgCommand::AddPrekeys {
                    name: "b".into(),
                    prekeys: published.clone()
                }
            ),
            ok
        );
        // Republishing one is refused.
        assert!(is_rejected(r.apply(
            0,
            MsgCommand::AddPrekeys {
                name: "b".into(),
                prekeys: published[..1].to_vec()
            }
        )));

        // Claimed oldest first, each once.
        let p1 = claim(&mut r, 10_000);
        let p2 = claim(&mut r, 10_000);
        assert_eq!((p1, p2), (published[0].public, published[1].public));
        assert_eq!(
            r.apply(
                0,
                MsgCommand::Deliver {
                    item: item(1, 10_000),
                    prekey: p1
                }
            ),
            ok
        );
        // Replay, and a used prekey, are refused and change nothing.
        let before = r.0.mail["b"].len();
        assert!(is_rejected(r.apply(
            0,
            MsgCommand::Deliver {
                item: item(1, 10_000),
                prekey: p2
            }
        )));
        assert!(is_rejected(r.apply(
            0,
            MsgCommand::Deliver {
                item: item(2, 10_000),
                prekey: p1
            }
        )));
        assert_eq!(r.0.mail["b"].len(), before);
        assert!(r.0.claimed.contains_key(&p2));

        // Time moves past 2 windows: the unused claim p2 lapses, the seen
        // identifier is forgotten, and an old message is refused as such.
        let p3 = claim(&mut r, 10_000 + 2 * w + 1);
        assert!(!r.0.claimed.contains_key(&p2), "unused claim lapsed");
        assert!(r.0.claims_by_time.iter().all(|(_, p)| *p == p3));
        assert!(!r.0.seen.contains_key(&Hex32([1; 32])));
        match r.apply(
            0,
            MsgCommand::Deliver {
                item: item(1, 10_000),
                prekey: p3,
            },
        ) {
            CommandResponse::Rejected { reason } => assert!(reason.contains("older"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(is_rejected(r.apply(
            0,
            MsgCommand::Deliver {
                item: item(3, 12_001),
                prekey: p2
            }
        )));
        assert_eq!(
            r.apply(
                0,
                MsgCommand::Deliver {
                    item: item(3, 12_001),
                    prekey: p3
                }
            ),
            ok
        );

        // Acks remove; revocation drops the mailbox and every claim.
        assert_eq!(
            r.apply(
                0,
                MsgCommand::Ack {
                    name: "b".into(),
                    ids: vec![Hex32([1; 32])]
                }
            ),
            CommandResponse::Removed { count: 1 }
        );
        assert_eq!(r.0.mail["b"].len(), 1);
        assert_eq!(
            r.apply(
                0,
                MsgCommand::AddPrekeys {
                    name: "b".into(),
                    prekeys: prekeys(&kb, 1)
                }
            ),
            ok
        );
        claim(&mut r, 12_001);
        assert_eq!(
            r.apply(0, MsgCommand::RevokeEndpoint { name: "b".into() }),
            ok
        );
        assert!(r.0.claimed.is_empty() && r.0.claims_by_time.is_empty());
        assert!(!r.0.mail.contains_key("b"));
        assert!(is_rejected(r.apply(
            0,
            MsgCommand::ClaimPrekey {
                name: "b".into(),
                by: "a".into(),
                count: 1,
                time_ms: 12_001
            }
        )));
    }

    #[test]
    fn a_batch_claim_reserves_the_oldest_up_to_what_is_left() {
        let ka = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
        let kb = ed25519_dalek::SigningKey::from_bytes(&[2u8; 32]);
        let mut r = Part::new();
        let ok = CommandResponse::Ok;
        r.apply(
            0,
            MsgCommand::InitMsg {
                salt: Hex32([9; 32]),
                window_ms: 1_000,
            },
        );
        assert_eq!(r.apply(0, endpoint("a", &ka)), ok);
        assert_eq!(r.apply(0, endpoint("b", &kb)), ok);
        let published = prekeys(&kb, 5);
        assert_eq!(
            r.apply(
                0,
                MsgCommand::AddPrekeys {
                    name: "b".into(),
                    prekeys: published.clone()
                }
            ),
            ok
        );
        let ask = |r: &mut Part, count| {
            r.apply(
                0,
                MsgCommand::ClaimPrekey {
                    name: "b".into(),
                    by: "a".into(),
                    count,
                    time_ms: 10_000,
                },
            )
        };
        // Out-of-range counts are refused and take nothing.
        for count in [0, MAX_CLAIM + 1] {
            assert!(matches!(
                ask(&mut r, count),
                CommandResponse::Rejected { .. }
            ));
        }
        assert_eq!(r.0.prekeys["b"].len(), 5);
        let first = claim_n(&mut r, 3, 10_000);
        let rest = claim_n(&mut r, 4, 10_000);
        let want: Vec<Hex32> = published.iter().map(|p| p.public).collect();
        assert_eq!(first, want[..3].to_vec(), "oldest first");
        assert_eq!(rest, want[3..].to_vec(), "fewer when fewer are left");
        assert!(matches!(ask(&mut r, 1), CommandResponse::Rejected { .. }));
        // Each reserved prekey carries exactly one message, once.
        for (i, p) in want.iter().enumerate() {
            let id = u8::try_from(i + 1).unwrap();
            assert_eq!(
                r.apply(
                    0,
                    MsgCommand::Deliver {
                        item: item(id, 10_000),
                        prekey: *p
                    }
                ),
                ok
            );
            assert!(matches!(
                r.apply(
                    0,
                    MsgCommand::Deliver {
                        item: item(id + 100, 10_000),
                        prekey: *p
                    }
                ),
                CommandResponse::Rejected { .. }
            ));
        }
        assert_eq!(r.0.mail["b"].len(), 5);
        assert!(r.0.claimed.is_empty());
    }
}
