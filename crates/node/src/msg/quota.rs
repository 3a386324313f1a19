//! Per-client quotas on messaging's replicated state (issue #18 item 3),
//! in force from apply rules [`QUOTA_RULES`].
//!
//! | what | limit | counted against |
//! |---|---|---|
//! | live endpoints | [`ENDPOINTS_PER_CLIENT`] | the owner |
//! | messages waiting in one mailbox | [`MAILBOX_MESSAGES`] | the receiving endpoint |
//! | bytes waiting in one mailbox | [`MAILBOX_BYTES`] | the receiving endpoint |
//! | bytes waiting in all of a client's mailboxes | [`RECEIVED_BYTES_PER_CLIENT`] | the receiver's owner |
//! | messages a client's endpoints sent, still waiting | [`SENT_PER_CLIENT`] | the sender's owner |
//!
//! So the replicated state holds at most [`RECEIVED_BYTES_PER_CLIENT`] of
//! mail per client (clients are made by admins), and one sending client
//! cannot fill every mailbox: it has [`SENT_PER_CLIENT`] messages in
//! flight at most, across all receivers.
//!
//! Every replica checks the quotas on apply from the same state, so they
//! refuse alike; the node that takes a request checks them first and
//! answers 429 without a Raft write. A refusal on apply reads
//! `"{QUOTA_EXCEEDED}: ..."`, which [`crate::Node::commit`] turns into 429
//! too.
//!
//! Mail stays in the replicated log: a message is accepted once, by the
//! coordinators' confirmations, and must be readable from any member after
//! any node is lost; the log is where that durability and the replay
//! protection (the seen-set) come from. The quotas bound what it costs.

use std::collections::BTreeMap;

use keyquorum_wire::msg::MailItem;

use super::state::MsgState;

/// The apply rules from which the quotas hold (entries stamped with older
/// rules replay as they were applied).
pub const QUOTA_RULES: u16 = 4;

/// Live endpoints one client may own.
pub const ENDPOINTS_PER_CLIENT: usize = 1_000;
/// Messages waiting in one mailbox (under older rules: 10,000).
pub const MAILBOX_MESSAGES: usize = 1_000;
/// Bytes waiting in one mailbox ([`item_bytes`]).
pub const MAILBOX_BYTES: usize = 16 << 20;
/// Bytes waiting in all the mailboxes of one client's endpoints.
pub const RECEIVED_BYTES_PER_CLIENT: usize = 64 << 20;
/// Messages sent from one client's endpoints and not yet acknowledged.
pub const SENT_PER_CLIENT: usize = 4_096;

/// How a refusal on apply begins.
pub const QUOTA_EXCEEDED: &str = "quota exceeded";

/// What a message counts for: its header and payload (the parts a client
/// sizes, up to 4 KiB and 64 KiB) and a fixed 1 KiB for the rest (the
/// sealed shares, the confirmations, the names).
pub fn item_bytes(item: &MailItem) -> usize {
    message_bytes(item.header.0.len(), item.payload.0.len())
}

/// [`item_bytes`] of a message with a header and a payload this long.
pub fn message_bytes(header: usize, payload: usize) -> usize {
    header.saturating_add(payload).saturating_add(1024)
}

/// Counts kept beside [`MsgState`], never serialized: rebuilt from the
/// endpoints and mailboxes ([`MsgState::rebuild_usage`]) when the state is
/// loaded, so snapshots and their digests are unchanged by them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Live endpoints by owner.
    endpoints: BTreeMap<String, usize>,
    /// Bytes waiting by receiving endpoint.
    mailbox_bytes: BTreeMap<String, usize>,
    /// Bytes waiting in each owner's mailboxes.
    received_bytes: BTreeMap<String, usize>,
    /// Messages waiting that each owner's endpoints sent.
    sent: BTreeMap<String, usize>,
}

fn add(map: &mut BTreeMap<String, usize>, key: &str, n: usize) {
    *map.entry(key.to_string()).or_default() += n;
}

fn sub(map: &mut BTreeMap<String, usize>, key: &str, n: usize) {
    if let Some(v) = map.get_mut(key) {
        *v = v.saturating_sub(n);
        if *v == 0 {
            map.remove(key);
        }
    }
}

fn get(map: &BTreeMap<String, usize>, key: &str) -> usize {
    map.get(key).copied().unwrap_or(0)
}

impl MsgState {
    fn owner_of(&self, endpoint: &str) -> Option<&str> {
        self.endpoints.get(endpoint).map(|r| r.owner.as_str())
    }

    /// Recount [`Usage`] from the state (after loading it).
    pub fn rebuild_usage(&mut self) {
        let mut u = Usage::default();
        for r in self.endpoints.values().filter(|r| !r.revoked) {
            add(&mut u.endpoints, &r.owner, 1);
        }
        for (to, items) in &self.mail {
            for item in items {
                let bytes = item_bytes(item);
                add(&mut u.mailbox_bytes, to, bytes);
                if let Some(owner) = self.owner_of(to) {
                    add(&mut u.received_bytes, owner, bytes);
                }
                if let Some(owner) = self.owner_of(&item.from) {
                    add(&mut u.sent, owner, 1);
                }
            }
        }
        self.usage = u;
    }

    /// Whether `owner` may register one more endpoint; Err says why not.
    pub fn endpoint_quota(&self, owner: &str) -> Result<(), String> {
        if get(&self.usage.endpoints, owner) >= ENDPOINTS_PER_CLIENT {
            return Err(format!(
                "{QUOTA_EXCEEDED}: client {owner} has {ENDPOINTS_PER_CLIENT} live endpoints \
                 (revoke one first)"
            ));
        }
        Ok(())
    }

    /// Whether a message of `bytes` ([`item_bytes`]) from endpoint `from`
    /// to endpoint `to` fits every quota it counts against; Err says which
    /// it does not.
    pub fn delivery_quota(&self, from: &str, to: &str, bytes: usize) -> Result<(), String> {
        let waiting = self.mail.get(to).map_or(0, Vec::len);
        if waiting >= MAILBOX_MESSAGES {
            return Err(format!(
                "{QUOTA_EXCEEDED}: mailbox of {} holds {MAILBOX_MESSAGES} messages",
                to
            ));
        }
        if get(&self.usage.mailbox_bytes, to) + bytes > MAILBOX_BYTES {
            return Err(format!(
                "{QUOTA_EXCEEDED}: mailbox of {} would hold more than {MAILBOX_BYTES} bytes",
                to
            ));
        }
        if let Some(owner) = self.owner_of(to) {
            if get(&self.usage.received_bytes, owner) + bytes > RECEIVED_BYTES_PER_CLIENT {
                return Err(format!(
                    "{QUOTA_EXCEEDED}: the mailboxes of client {owner} would hold more than \
                     {RECEIVED_BYTES_PER_CLIENT} bytes"
                ));
            }
        }
        if let Some(owner) = self.owner_of(from) {
            if get(&self.usage.sent, owner) >= SENT_PER_CLIENT {
                return Err(format!(
                    "{QUOTA_EXCEEDED}: client {owner} has {SENT_PER_CLIENT} sent messages \
                     waiting to be read"
                ));
            }
        }
        Ok(())
    }

    /// Count a new live endpoint of `owner`.
    pub(super) fn count_endpoint(&mut self, owner: &str) {
        add(&mut self.usage.endpoints, owner, 1);
    }

    /// Count `owner`'s endpoint revoked.
    pub(super) fn uncount_endpoint(&mut self, owner: &str) {
        sub(&mut self.usage.endpoints, owner, 1);
    }

    /// Count `item`, now waiting.
    pub(super) fn count_item(&mut self, item: &MailItem) {
        let bytes = item_bytes(item);
        add(&mut self.usage.mailbox_bytes, &item.to, bytes);
        if let Some(owner) = self.owner_of(&item.to).map(str::to_string) {
            add(&mut self.usage.received_bytes, &owner, bytes);
        }
        if let Some(owner) = self.owner_of(&item.from).map(str::to_string) {
            add(&mut self.usage.sent, &owner, 1);
        }
    }

    /// Uncount `item`, gone from its mailbox.
    pub(super) fn uncount_item(&mut self, item: &MailItem) {
        let bytes = item_bytes(item);
        sub(&mut self.usage.mailbox_bytes, &item.to, bytes);
        if let Some(owner) = self.owner_of(&item.to).map(str::to_string) {
            sub(&mut self.usage.received_bytes, &owner, bytes);
        }
        if let Some(owner) = self.owner_of(&item.from).map(str::to_string) {
            sub(&mut self.usage.sent, &owner, 1);
        }
    }

    /// The counts kept (for tests: they must equal a recount).
    pub fn usage(&self) -> &Usage {
        &self.usage
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use keyquorum_wire::control::CommandResponse;
    use keyquorum_wire::msg::{EndpointRecord, MsgCommand, Prekey, SealedBox};
    use keyquorum_wire::{Hex, Hex32};

    use super::*;

    fn record(name: &str, owner: &str, key: &ed25519_dalek::SigningKey) -> EndpointRecord {
        EndpointRecord {
            name: name.into(),
            identity: Hex32(key.verifying_key().to_bytes()),
            owner: owner.into(),
            revoked: false,
            created_ms: 0,
        }
    }

    fn put(s: &mut MsgState, name: &str, owner: &str, quotas: bool) -> CommandResponse {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        s.apply(
            &MsgCommand::PutEndpoint {
                record: record(name, owner, &key),
            },
            quotas,
        )
    }

    fn mail(id: u32, from: &str, to: &str, payload: usize) -> MailItem {
        let mut idb = [0u8; 32];
        idb[..4].copy_from_slice(&id.to_be_bytes());
        MailItem {
            id: Hex32(idb),
            from: from.into(),
            to: to.into(),
            header: Hex(vec![0; 100]),
            signature: Hex(vec![0; 64]),
            payload: Hex(vec![0; payload]),
            for_receiver: SealedBox {
                enc: Default::default(),
                ciphertext: Default::default(),
            },
            confirmations: Vec::new(),
            time_ms: 0,
        }
    }

    fn refused(r: Result<(), String>, what: &str) {
        match r {
            Err(e) => assert!(e.starts_with(QUOTA_EXCEEDED) && e.contains(what), "{e}"),
            Ok(()) => panic!("not refused: {what}"),
        }
    }

    /// State holding `items` (delivered around the checks), its counts
    /// rebuilt as a load would.
    fn with_mail(endpoints: &[(&str, &str)], items: Vec<MailItem>) -> MsgState {
        let mut s = MsgState::default();
        for (name, owner) in endpoints {
            assert_eq!(put(&mut s, name, owner, true), CommandResponse::Ok);
        }
        for item in items {
            s.mail.entry(item.to.clone()).or_default().push(item);
        }
        s.rebuild_usage();
        s
    }

    #[test]
    fn a_client_has_at_most_its_endpoints_and_revoking_one_frees_a_place() {
        let mut s = MsgState::default();
        for i in 0..ENDPOINTS_PER_CLIENT {
            assert_eq!(
                put(&mut s, &format!("e{i}"), "t", true),
                CommandResponse::Ok
            );
        }
        match put(&mut s, "one-more", "t", true) {
            CommandResponse::Rejected { reason } => {
                assert!(reason.starts_with(QUOTA_EXCEEDED), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(!s.endpoints.contains_key("one-more"));
        // Another client is not held by t's quota; older rules had none.
        assert_eq!(put(&mut s, "u0", "u", true), CommandResponse::Ok);
        assert_eq!(put(&mut s, "legacy", "t", false), CommandResponse::Ok);
        let revoke = MsgCommand::RevokeEndpoint { name: "e0".into() };
        assert_eq!(s.apply(&revoke, true), CommandResponse::Ok);
        assert_eq!(s.apply(&revoke, true), CommandResponse::Ok, "revoked again");
        // 1,000 live again (legacy counts): still full.
        refused(s.endpoint_quota("t"), "live endpoints");
        let revoke = MsgCommand::RevokeEndpoint {
            name: "legacy".into(),
        };
        assert_eq!(s.apply(&revoke, true), CommandResponse::Ok);
        assert_eq!(put(&mut s, "one-more", "t", true), CommandResponse::Ok);
    }

    #[test]
    fn each_mail_quota_refuses_the_message_past_it() {
        let small = message_bytes(100, 10);
        // Messages in one mailbox.
        let s = with_mail(
            &[("a", "t"), ("b", "u")],
            (0..MAILBOX_MESSAGES as u32)
                .map(|i| mail(i, "a", "b", 10))
                .collect(),
        );
        refused(s.delivery_quota("a", "b", small), "holds 1000 messages");
        let s = with_mail(
            &[("a", "t"), ("b", "u")],
            (0..MAILBOX_MESSAGES as u32 - 1)
                .map(|i| mail(i, "a", "b", 10))
                .collect(),
        );
        assert_eq!(s.delivery_quota("a", "b", small), Ok(()));

        // Bytes in one mailbox: 64 KiB payloads.
        let big = message_bytes(100, 64 << 10);
        let fit = MAILBOX_BYTES / big;
        let s = with_mail(
            &[("a", "t"), ("b", "u")],
            (0..fit as u32)
                .map(|i| mail(i, "a", "b", 64 << 10))
                .collect(),
        );
        refused(s.delivery_quota("a", "b", big), "bytes");
        assert_eq!(
            s.delivery_quota("a", "b", small),
            Ok(()),
            "a small one fits"
        );

        // Bytes across a client's mailboxes: six mailboxes of u, each
        // under its own limit, hold more than u's share; a seventh is
        // refused too, while another client's mailbox is not.
        let per = fit / 2;
        let boxes = RECEIVED_BYTES_PER_CLIENT / (per * big) + 1;
        let mut endpoints = vec![("a", "t"), ("other", "v")];
        let names: Vec<String> = (0..=boxes).map(|i| format!("b{i}")).collect();
        endpoints.extend(names.iter().map(|n| (n.as_str(), "u")));
        let mut items = Vec::new();
        let mut id = 0;
        for name in &names[..boxes] {
            for _ in 0..per {
                items.push(mail(id, "a", name, 64 << 10));
                id += 1;
            }
        }
        let s = with_mail(&endpoints, items);
        refused(
            s.delivery_quota("a", &names[boxes], big),
            "the mailboxes of client u",
        );
        assert_eq!(s.delivery_quota("a", "other", big), Ok(()));

        // Messages a client sent, waiting: spread over mailboxes of
        // several receivers, each far from full.
        let receivers: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
        let mut endpoints = vec![("a", "t"), ("c", "w"), ("r-last", "x")];
        endpoints.extend(receivers.iter().map(|n| (n.as_str(), "x")));
        let items = (0..SENT_PER_CLIENT as u32)
            .map(|i| mail(i, "a", &receivers[i as usize % 8], 10))
            .collect();
        let s = with_mail(&endpoints, items);
        refused(
            s.delivery_quota("a", "r-last", small),
            "sent messages waiting",
        );
        assert_eq!(
            s.delivery_quota("c", "r-last", small),
            Ok(()),
            "another sender"
        );
    }

    #[test]
    fn the_counts_kept_on_apply_equal_a_recount() {
        let ka = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
        let kb = ed25519_dalek::SigningKey::from_bytes(&[2u8; 32]);
        let mut s = MsgState::default();
        let check = |s: &MsgState| {
            let mut recount = s.clone();
            recount.rebuild_usage();
            assert_eq!(s.usage(), recount.usage());
            // And a state loaded from its serialized form counts alike.
            let mut loaded: MsgState =
                serde_json::from_slice(&serde_json::to_vec(s).unwrap()).unwrap();
            loaded.rebuild_usage();
            assert_eq!(s.usage(), loaded.usage());
        };
        s.apply(
            &MsgCommand::InitMsg {
                salt: Hex32([9; 32]),
                window_ms: 1_000_000,
            },
            true,
        );
        for (name, owner, key) in [("a", "t", &ka), ("b", "u", &kb)] {
            let put = MsgCommand::PutEndpoint {
                record: record(name, owner, key),
            };
            assert_eq!(s.apply(&put, true), CommandResponse::Ok);
        }
        let prekeys: Vec<Prekey> = (0..4)
            .map(|_| {
                let (_, p) =
                    keyquorum_core::msgkey::protocol::new_prekey(&mut rand_core::OsRng, &kb);
                Prekey {
                    public: Hex32(p.public),
                    signature: Hex(p.signature.to_vec()),
                }
            })
            .collect();
        let publish = MsgCommand::AddPrekeys {
            name: "b".into(),
            prekeys: prekeys.clone(),
        };
        assert_eq!(s.apply(&publish, true), CommandResponse::Ok);
        check(&s);
        for (i, p) in prekeys.iter().enumerate() {
            let claim = MsgCommand::ClaimPrekey {
                name: "b".into(),
                by: "a".into(),
                count: 1,
                time_ms: 10_000,
            };
            assert!(matches!(
                s.apply(&claim, true),
                CommandResponse::Claimed { .. }
            ));
            let mut item = mail(i as u32, "a", "b", 1_000 * (i + 1));
            item.time_ms = 10_000;
            let deliver = MsgCommand::Deliver {
                item,
                prekey: p.public,
            };
            assert_eq!(s.apply(&deliver, true), CommandResponse::Ok);
            check(&s);
        }
        assert_ne!(s.usage(), &Usage::default());
        let ack = MsgCommand::Ack {
            name: "b".into(),
            ids: vec![mail(1, "a", "b", 0).id, mail(3, "a", "b", 0).id],
        };
        assert_eq!(s.apply(&ack, true), CommandResponse::Removed { count: 2 });
        check(&s);
        let revoke = MsgCommand::RevokeEndpoint { name: "b".into() };
        assert_eq!(s.apply(&revoke, true), CommandResponse::Ok);
        check(&s);
        let mut live_a = Usage::default();
        add(&mut live_a.endpoints, "t", 1);
        assert_eq!(s.usage(), &live_a, "only a's endpoint is counted");
    }
}
