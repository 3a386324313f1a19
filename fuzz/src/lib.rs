//! Fuzz harnesses for keyquorum-core.
//!
//! Every decoder of bytes from outside and every state-machine handler that
//! consumes them has a harness here. The same functions are driven two ways:
//!
//! * `fuzz_targets/*.rs` — libFuzzer entry points for `cargo fuzz` (nightly,
//!   coverage-guided);
//! * `src/bin/smoke.rs` — a seeded mutational runner on stable Rust, which
//!   starts from valid encodings ([`seeds`]) and mutates them.
//!
//! Input layout: byte 0 picks the ciphersuite (Ed25519, secp256k1-tr,
//! Ristretto255, secp256k1), byte 1 picks the message kind / sender / step,
//! and the rest is the message.
//!
//! Besides "never panics", the harnesses check:
//! * decoders are canonical: whatever decodes re-encodes to the same bytes;
//! * a message rejected on receipt names exactly its sender (when blame is
//!   assigned);
//! * a protocol run that completes despite an injected message ended where an
//!   honest run ends (same signature validity, same group key, the original
//!   share after a repair).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use keyquorum_core::codec::{Decode, Encode};
use keyquorum_core::local::{self, Holders};
use keyquorum_core::{
    dkg, refresh, repair, reshare, sign, Ed25519, Error, GroupKey, KeyShare, ParticipantId,
    Ristretto255, Secp256k1, Secp256k1Tr, SessionId, Suite,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const SESSION: SessionId = SessionId([0x5a; 32]);
const MESSAGE: &[u8] = b"keyquorum fuzz message";

/// The suites, in the order byte 0 selects them.
pub const SUITES: [&str; 4] = ["ed25519", "secp256k1-tr", "ristretto255", "secp256k1"];

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(0x6b71_7566)
}

fn pid(n: u16) -> ParticipantId {
    ParticipantId::new(n).expect("nonzero")
}

fn ids(range: std::ops::RangeInclusive<u16>) -> BTreeSet<ParticipantId> {
    range.map(pid).collect()
}

/// A 2-of-3 key per suite, generated once (through the DKG) and shared by the
/// handler harnesses.
pub trait Fixture: Suite {
    /// Holders of the fixture key.
    fn holders() -> &'static Holders<Self>;
}

macro_rules! fixture {
    ($($c:ty),*) => {$(
        impl Fixture for $c {
            fn holders() -> &'static Holders<Self> {
                static HOLDERS: OnceLock<Holders<$c>> = OnceLock::new();
                HOLDERS.get_or_init(|| {
                    local::dkg::<$c, _>(SESSION, 2, &ids(1..=3), &mut rng()).expect("fixture DKG")
                })
            }
        }
    )*};
}
fixture!(Ed25519, Secp256k1Tr, Ristretto255, Secp256k1);

macro_rules! by_suite {
    ($data:expr, $f:ident) => {
        if let Some((suite, rest)) = $data.split_first() {
            match suite % 4 {
                0 => $f::<Ed25519>(rest),
                1 => $f::<Secp256k1Tr>(rest),
                2 => $f::<Ristretto255>(rest),
                _ => $f::<Secp256k1>(rest),
            }
        }
    };
}

/// Decode; whatever decodes must re-encode to exactly the input.
fn canonical<M: Encode + Decode>(bytes: &[u8]) -> Option<M> {
    let m = M::from_bytes(bytes).ok()?;
    assert_eq!(
        m.to_bytes(),
        bytes,
        "decoder accepted a non-canonical encoding"
    );
    Some(m)
}

/// A message rejected on receipt blames its sender and no one else.
fn blames_only(e: &Error, from: ParticipantId) {
    let culprits = e.culprits();
    assert!(
        culprits.is_empty() || culprits == [from],
        "{e} blamed {culprits:?}, the message came from {from}"
    );
}

/// A run that failed after an injected message from `from` was accepted
/// names `from` among the culprits (if it names anyone).
fn blames_including(e: &Error, from: ParticipantId) {
    let culprits = e.culprits();
    assert!(
        culprits.is_empty() || culprits.contains(&from),
        "{e} blamed {culprits:?}, the injected message came from {from}"
    );
}

/// The message kind or step a selector names: its low nibble mod `n` (the
/// high nibble names the sender).
fn kind(sel: u8, n: u8) -> u8 {
    (sel & 0x0f) % n
}

/// Split `[selector, message..]`; the sender is one of 1..=4.
fn split(data: &[u8]) -> Option<(u8, ParticipantId, &[u8])> {
    let (&sel, msg) = data.split_first()?;
    Some((sel, pid(1 + u16::from(sel >> 4) % 4), msg))
}

// ---------------------------------------------------------------------------
// Decoders

/// Group keys, Feldman commitments, key shares, nonces, signatures, and the
/// plain verifier.
pub fn decode_keys(data: &[u8]) {
    fn go<C: Suite>(data: &[u8]) {
        let Some((&sel, rest)) = data.split_first() else {
            return;
        };
        match kind(sel, 6) {
            0 => {
                canonical::<GroupKey<C>>(rest);
            }
            1 => {
                canonical::<keyquorum_core::vss::Commitment<C>>(rest);
            }
            2 => {
                if let Ok(share) = KeyShare::<C>::from_secret_bytes(rest) {
                    assert_eq!(
                        share.to_secret_bytes().as_slice(),
                        rest,
                        "non-canonical share"
                    );
                }
            }
            3 => {
                if let Ok(nonce) = sign::SigningNonce::<C>::from_secret_bytes(rest) {
                    assert_eq!(
                        nonce.to_secret_bytes().as_slice(),
                        rest,
                        "non-canonical nonce"
                    );
                }
            }
            4 => {
                if let Ok(sig) = sign::Signature::<C>::from_bytes(rest) {
                    assert_eq!(sig.to_bytes(), rest, "non-canonical signature");
                }
            }
            _ => {
                // [pk_len, pk.., sig_len, sig.., message..]
                let Some((&pk_len, rest)) = rest.split_first() else {
                    return;
                };
                let (pk, rest) = rest.split_at(usize::from(pk_len).min(rest.len()));
                let Some((&sig_len, rest)) = rest.split_first() else {
                    return;
                };
                let (sig, msg) = rest.split_at(usize::from(sig_len).min(rest.len()));
                let _ = sign::verify::<C>(pk, msg, sig);
            }
        }
    }
    by_suite!(data, go);
}

/// DKG round-one and round-two messages.
pub fn decode_dkg(data: &[u8]) {
    fn go<C: Suite>(data: &[u8]) {
        let Some((&sel, rest)) = data.split_first() else {
            return;
        };
        if kind(sel, 2) == 0 {
            canonical::<dkg::Round1Message<C>>(rest);
        } else {
            canonical::<dkg::Round2Message<C>>(rest);
        }
    }
    by_suite!(data, go);
}

/// Signing commitments, signing packages and signature shares.
pub fn decode_sign(data: &[u8]) {
    fn go<C: Suite>(data: &[u8]) {
        let Some((&sel, rest)) = data.split_first() else {
            return;
        };
        match kind(sel, 3) {
            0 => {
                canonical::<sign::SigningCommitment<C>>(rest);
            }
            1 => {
                canonical::<sign::SigningPackage<C>>(rest);
            }
            _ => {
                canonical::<sign::SignatureShare<C>>(rest);
            }
        }
    }
    by_suite!(data, go);
}

/// Refresh round-one and round-two messages.
pub fn decode_refresh(data: &[u8]) {
    fn go<C: Suite>(data: &[u8]) {
        let Some((&sel, rest)) = data.split_first() else {
            return;
        };
        if kind(sel, 2) == 0 {
            canonical::<refresh::Round1Message<C>>(rest);
        } else {
            canonical::<refresh::Round2Message<C>>(rest);
        }
    }
    by_suite!(data, go);
}

/// Reshare deal messages.
pub fn decode_reshare(data: &[u8]) {
    fn go<C: Suite>(data: &[u8]) {
        if let Some((_, rest)) = data.split_first() {
            canonical::<reshare::DealMessage<C>>(rest);
        }
    }
    by_suite!(data, go);
}

/// Repair images, deltas and sigmas.
pub fn decode_repair(data: &[u8]) {
    fn go<C: Suite>(data: &[u8]) {
        let Some((&sel, rest)) = data.split_first() else {
            return;
        };
        match kind(sel, 3) {
            0 => {
                canonical::<repair::ImagesMessage<C>>(rest);
            }
            1 => {
                canonical::<repair::DeltaMessage<C>>(rest);
            }
            _ => {
                canonical::<repair::SigmaMessage<C>>(rest);
            }
        }
    }
    by_suite!(data, go);
}

// ---------------------------------------------------------------------------
// Handlers

/// Deliver `msgs` in order; `Ok(false)` if one was rejected (after checking
/// the blame).
fn deliver<M>(
    msgs: Vec<(ParticipantId, M)>,
    mut receive: impl FnMut(ParticipantId, M) -> Result<(), Error>,
) -> bool {
    for (from, m) in msgs {
        if let Err(e) = receive(from, m) {
            blames_only(&e, from);
            return false;
        }
    }
    true
}

/// Put the fuzzed message in place of `from`'s honest one (or beside the
/// honest ones when `from` sent none: it must then be rejected).
fn inject<M>(msgs: &mut Vec<(ParticipantId, M)>, from: ParticipantId, fuzzed: M) -> Option<M> {
    if let Some(slot) = msgs.iter_mut().find(|(f, _)| *f == from) {
        Some(std::mem::replace(&mut slot.1, fuzzed))
    } else {
        msgs.push((from, fuzzed));
        None
    }
}

/// A two-round protocol (DKG, refresh) among {1,2,3} as participant 1
/// sees it: its own state and the honest messages of the others.
trait TwoRound<C: Suite + Fixture> {
    type Msg1: Encode + Decode;
    type Msg2: Encode + Decode;
    type Round1;
    type Round2;
    fn start(me: u16, rng: &mut ChaCha20Rng) -> (Self::Round1, Self::Msg1);
    fn receive1(s: &mut Self::Round1, from: ParticipantId, m: Self::Msg1) -> Result<(), Error>;
    #[allow(clippy::type_complexity)]
    fn advance(s: Self::Round1) -> Result<(Self::Round2, Vec<(ParticipantId, Self::Msg2)>), Error>;
    fn receive2(s: &mut Self::Round2, from: ParticipantId, m: Self::Msg2) -> Result<(), Error>;
    fn finish(s: Self::Round2) -> Result<(KeyShare<C>, GroupKey<C>), Error>;
}

struct Dkg;
impl<C: Suite + Fixture> TwoRound<C> for Dkg {
    type Msg1 = dkg::Round1Message<C>;
    type Msg2 = dkg::Round2Message<C>;
    type Round1 = dkg::Round1<C>;
    type Round2 = dkg::Round2<C>;
    fn start(me: u16, rng: &mut ChaCha20Rng) -> (Self::Round1, Self::Msg1) {
        let params = dkg::DkgParams {
            session: SESSION,
            threshold: 2,
            members: ids(1..=3),
        };
        dkg::start::<C, _>(params, pid(me), rng).expect("start")
    }
    fn receive1(s: &mut Self::Round1, from: ParticipantId, m: Self::Msg1) -> Result<(), Error> {
        s.receive(from, m)
    }
    fn advance(s: Self::Round1) -> Result<(Self::Round2, Vec<(ParticipantId, Self::Msg2)>), Error> {
        s.advance()
    }
    fn receive2(s: &mut Self::Round2, from: ParticipantId, m: Self::Msg2) -> Result<(), Error> {
        s.receive(from, m)
    }
    fn finish(s: Self::Round2) -> Result<(KeyShare<C>, GroupKey<C>), Error> {
        s.finish()
    }
}

struct Refresh;
impl<C: Suite + Fixture> TwoRound<C> for Refresh {
    type Msg1 = refresh::Round1Message<C>;
    type Msg2 = refresh::Round2Message<C>;
    type Round1 = refresh::Round1<C>;
    type Round2 = refresh::Round2<C>;
    fn start(me: u16, rng: &mut ChaCha20Rng) -> (Self::Round1, Self::Msg1) {
        let holders = C::holders();
        let share = holders.shares[&pid(me)].clone();
        refresh::start::<C, _>(SESSION, &holders.group, share, rng).expect("start")
    }
    fn receive1(s: &mut Self::Round1, from: ParticipantId, m: Self::Msg1) -> Result<(), Error> {
        s.receive(from, m)
    }
    fn advance(s: Self::Round1) -> Result<(Self::Round2, Vec<(ParticipantId, Self::Msg2)>), Error> {
        s.advance()
    }
    fn receive2(s: &mut Self::Round2, from: ParticipantId, m: Self::Msg2) -> Result<(), Error> {
        s.receive(from, m)
    }
    fn finish(s: Self::Round2) -> Result<(KeyShare<C>, GroupKey<C>), Error> {
        s.finish()
    }
}

/// Participant 1's starting state and the honest messages it receives.
type TwoRoundScene<C, P> = (
    <P as TwoRound<C>>::Round1,
    Vec<(ParticipantId, <P as TwoRound<C>>::Msg1)>,
    Vec<(ParticipantId, <P as TwoRound<C>>::Msg2)>,
);

fn two_round_scene<C: Suite + Fixture, P: TwoRound<C>>() -> TwoRoundScene<C, P> {
    let mut rng = rng();
    let (p1, m1) = P::start(1, &mut rng);
    let (mut p2, m2) = P::start(2, &mut rng);
    let (mut p3, m3) = P::start(3, &mut rng);
    let copy = |m: &P::Msg1| local::wire(m).expect("round trip");
    P::receive1(&mut p2, pid(1), copy(&m1)).expect("honest");
    P::receive1(&mut p2, pid(3), copy(&m3)).expect("honest");
    P::receive1(&mut p3, pid(1), m1).expect("honest");
    P::receive1(&mut p3, pid(2), copy(&m2)).expect("honest");
    let to_me = |out: Vec<(ParticipantId, P::Msg2)>| {
        out.into_iter()
            .find(|(to, _)| *to == pid(1))
            .expect("message for 1")
            .1
    };
    let r2_from_2 = to_me(P::advance(p2).expect("honest").1);
    let r2_from_3 = to_me(P::advance(p3).expect("honest").1);
    (
        p1,
        vec![(pid(2), m2), (pid(3), m3)],
        vec![(pid(2), r2_from_2), (pid(3), r2_from_3)],
    )
}

/// Selector bit 0 picks the round whose message from the selected sender is
/// replaced by the input. A run that completes must have received exactly the
/// honest message, and keeps the fixture's verifying key for a refresh.
fn two_round_harness<C: Suite + Fixture, P: TwoRound<C>>(data: &[u8], keeps_key: bool) {
    let Some((sel, from, msg)) = split(data) else {
        return;
    };
    let (mut p1, mut round1, mut round2) = two_round_scene::<C, P>();
    let replaced = if kind(sel, 2) == 0 {
        let Some(fuzzed) = canonical(msg) else { return };
        inject(&mut round1, from, fuzzed).map(|m| m.to_bytes())
    } else {
        let Some(fuzzed) = canonical(msg) else { return };
        inject(&mut round2, from, fuzzed).map(|m| m.to_bytes())
    };
    if !deliver(round1, |f, m| P::receive1(&mut p1, f, m)) {
        return;
    }
    let mut p1 = match P::advance(p1) {
        Ok((state, _)) => state,
        Err(e) => return blames_including(&e, from),
    };
    if !deliver(round2, |f, m| P::receive2(&mut p1, f, m)) {
        return;
    }
    match P::finish(p1) {
        Ok((share, group)) => {
            assert_eq!(replaced.as_deref(), Some(msg), "accepted a forged message");
            assert!(share.public_share() == group.public_share(pid(1)).expect("member"));
            if keeps_key {
                assert!(group.verifying_element() == C::holders().group.verifying_element());
            }
        }
        Err(e) => blames_including(&e, from),
    }
}

/// DKG among {1,2,3}, t = 2, seen by participant 1 (see [`two_round_harness`]).
pub fn handle_dkg(data: &[u8]) {
    fn go<C: Suite + Fixture>(data: &[u8]) {
        two_round_harness::<C, Dkg>(data, false);
    }
    by_suite!(data, go);
}

/// Refresh of the fixture key seen by holder 1 (see [`two_round_harness`]).
pub fn handle_refresh(data: &[u8]) {
    fn go<C: Suite + Fixture>(data: &[u8]) {
        two_round_harness::<C, Refresh>(data, true);
    }
    by_suite!(data, go);
}

/// Signers 1 and 2 of the fixture key after round one: their nonces and
/// commitments.
#[allow(clippy::type_complexity)]
fn sign_scene<C: Suite + Fixture>() -> ([sign::SigningNonce<C>; 2], [sign::SigningCommitment<C>; 2])
{
    let holders = C::holders();
    let mut rng = rng();
    let (n1, c1) = sign::commit(&holders.shares[&pid(1)], &mut rng);
    let (n2, c2) = sign::commit(&holders.shares[&pid(2)], &mut rng);
    ([n1, n2], [c1, c2])
}

/// Signing by {1,2} with the fixture key. Selector (low nibble) mod 3:
/// 0 replaces signer 2's commitment at the coordinator, 1 hands the input to
/// signer 1 as its signing package, 2 hands the input to the coordinator as a
/// signature share from the selected sender.
pub fn handle_sign(data: &[u8]) {
    fn go<C: Suite + Fixture>(data: &[u8]) {
        let Some((sel, from, msg)) = split(data) else {
            return;
        };
        let holders = C::holders();
        let share = |i: u16| &holders.shares[&pid(i)];
        let ([n1, n2], [c1, c2]) = sign_scene::<C>();
        let mode = kind(sel, 3);
        let mut commitments = vec![c1, c2];
        if mode == 0 {
            let Some(fuzzed) = canonical::<sign::SigningCommitment<C>>(msg) else {
                return;
            };
            commitments[1] = fuzzed;
        }
        let Ok(mut coordinator) =
            sign::Coordinator::new(&holders.group, SESSION, MESSAGE, commitments)
        else {
            return;
        };
        let honest_package = coordinator.package().clone();
        let package = if mode == 1 {
            let Some(fuzzed) = canonical::<sign::SigningPackage<C>>(msg) else {
                return;
            };
            fuzzed
        } else {
            honest_package.clone()
        };
        let Ok(s1) = n1.sign(share(1), &package) else {
            return;
        };
        let Ok(s2) = n2.sign(share(2), &honest_package) else {
            return;
        };
        let mut shares = vec![(pid(1), s1), (pid(2), s2)];
        let mut replaced = None;
        if mode == 2 {
            let Some(fuzzed) = canonical::<sign::SignatureShare<C>>(msg) else {
                return;
            };
            replaced = inject(&mut shares, from, fuzzed).map(|s| s.to_bytes());
        }
        if !deliver(shares, |f, s| coordinator.receive(f, s)) {
            return;
        }
        match coordinator.finish() {
            Ok(signature) => {
                holders
                    .group
                    .verify(MESSAGE, &signature.to_bytes())
                    .expect("an aggregated signature verifies");
                match mode {
                    0 => assert_eq!(c2.to_bytes(), msg, "accepted a forged commitment"),
                    1 => assert_eq!(honest_package.to_bytes(), msg, "signed a forged package"),
                    _ => assert_eq!(replaced.as_deref(), Some(msg), "accepted a forged share"),
                }
            }
            // A forged package makes signer 1's share the invalid one.
            Err(e) if mode == 1 => blames_including(&e, pid(1)),
            Err(e) => blames_including(&e, from),
        }
    }
    by_suite!(data, go);
}

fn reshare_params() -> reshare::ReshareParams {
    reshare::ReshareParams {
        session: SESSION,
        dealers: ids(1..=2),
        new_threshold: 2,
        new_members: ids(2..=4),
    }
}

/// The honest deals dealers 1 and 2 send to new member 4.
fn reshare_scene<C: Suite + Fixture>() -> Vec<(ParticipantId, reshare::DealMessage<C>)> {
    let holders = C::holders();
    let params = reshare_params();
    let mut rng = rng();
    (1..=2)
        .map(|d| {
            let out = reshare::deal(&params, &holders.group, &holders.shares[&pid(d)], &mut rng)
                .expect("honest deal");
            let to_me = out
                .into_iter()
                .find(|(to, _)| *to == pid(4))
                .expect("deal for 4");
            (pid(d), to_me.1)
        })
        .collect()
}

/// Reshare of the fixture key by dealers {1,2} to 2-of-{2,3,4}, seen by the
/// new member 4; the input replaces the selected dealer's message. A
/// completed reshare keeps the verifying key and yields a share that matches
/// its public image.
pub fn handle_reshare(data: &[u8]) {
    fn go<C: Suite + Fixture>(data: &[u8]) {
        let Some((_, from, msg)) = split(data) else {
            return;
        };
        let holders = C::holders();
        let mut deals = reshare_scene::<C>();
        let Some(fuzzed) = canonical(msg) else {
            return;
        };
        inject(&mut deals, from, fuzzed);
        let mut receiver = reshare::Receiver::new(reshare_params(), pid(4), holders.group.clone())
            .expect("receiver");
        if !deliver(deals, |f, m| receiver.receive(f, m)) {
            return;
        }
        match receiver.finish() {
            Ok(out) => {
                assert!(out.group.verifying_element() == holders.group.verifying_element());
                assert!(
                    out.share.public_share() == out.group.public_share(pid(4)).expect("member")
                );
            }
            Err(e) => blames_including(&e, from),
        }
    }
    by_suite!(data, go);
}

/// Repair of holder 3's share by helpers {1,2}, after step one.
struct RepairScene<C: Suite> {
    target: repair::Target<C>,
    h1: repair::Helper<C>,
    h2: repair::Helper<C>,
    img1: repair::ImagesMessage<C>,
    img2: repair::ImagesMessage<C>,
    d1_to_2: repair::DeltaMessage<C>,
    d2_to_1: repair::DeltaMessage<C>,
}

fn repair_scene<C: Suite + Fixture>() -> RepairScene<C> {
    let holders = C::holders();
    let params = repair::RepairParams {
        session: SESSION,
        helpers: ids(1..=2),
        target: pid(3),
    };
    let mut rng = rng();
    let target = repair::Target::new(params.clone(), holders.group.clone()).expect("target");
    let mut start = |i: u16| {
        let share = &holders.shares[&pid(i)];
        repair::Helper::start(params.clone(), holders.group.clone(), share, &mut rng)
            .expect("helper")
    };
    let (h1, img1, out1) = start(1);
    let (h2, img2, out2) = start(2);
    let delta = |out: Vec<(ParticipantId, repair::DeltaMessage<C>)>, to| {
        out.into_iter()
            .find(|(t, _)| *t == pid(to))
            .expect("delta")
            .1
    };
    RepairScene {
        target,
        h1,
        h2,
        img1,
        img2,
        d1_to_2: delta(out1, 2),
        d2_to_1: delta(out2, 1),
    }
}

/// Repair of holder 3's share by helpers {1,2}. Selector (low nibble) mod 4:
/// 0 images to the target, 1 a sigma to the target, 2 images to helper 1,
/// 3 a delta to helper 1. A completed repair yields exactly the original
/// share.
pub fn handle_repair(data: &[u8]) {
    fn go<C: Suite + Fixture>(data: &[u8]) {
        let Some((sel, from, msg)) = split(data) else {
            return;
        };
        let RepairScene {
            mut target,
            mut h1,
            mut h2,
            img1,
            img2,
            d1_to_2,
            d2_to_1,
        } = repair_scene::<C>();
        let mut images_to_target = vec![(pid(1), img1.clone()), (pid(2), img2.clone())];
        let mut images_to_h1 = vec![(pid(2), img2)];
        let mut deltas_to_h1 = vec![(pid(2), d2_to_1)];
        let mode = kind(sel, 4);
        match mode {
            0 => {
                let Some(m) = canonical(msg) else { return };
                inject(&mut images_to_target, from, m);
            }
            2 => {
                let Some(m) = canonical(msg) else { return };
                inject(&mut images_to_h1, from, m);
            }
            3 => {
                let Some(m) = canonical(msg) else { return };
                inject(&mut deltas_to_h1, from, m);
            }
            _ => {}
        }
        if !deliver(images_to_target, |f, m| target.receive_images(f, m)) {
            return;
        }
        h2.receive_images(pid(1), img1).expect("honest");
        h2.receive_delta(pid(1), d1_to_2).expect("honest");
        if !deliver(images_to_h1, |f, m| h1.receive_images(f, m)) {
            return;
        }
        if !deliver(deltas_to_h1, |f, m| h1.receive_delta(f, m)) {
            return;
        }
        let (_, sigma1) = match h1.finish() {
            Ok(out) => out,
            Err(e) => return blames_including(&e, from),
        };
        let (_, sigma2) = h2.finish().expect("honest");
        let mut sigmas = vec![(pid(1), sigma1), (pid(2), sigma2)];
        if mode == 1 {
            let Some(m) = canonical(msg) else { return };
            inject(&mut sigmas, from, m);
        }
        if !deliver(sigmas, |f, m| target.receive_sigma(f, m)) {
            return;
        }
        match target.finish() {
            Ok(share) => assert_eq!(
                share.to_secret_bytes(),
                C::holders().shares[&pid(3)].to_secret_bytes(),
                "repair completed with a share other than the original"
            ),
            Err(e) => blames_including(&e, from),
        }
    }
    by_suite!(data, go);
}

/// The RFC 8554 Appendix F test case 1 key, message and signature (hex).
pub(crate) fn lms_vector(name: &str) -> Vec<u8> {
    let text = include_str!("../../crates/core/tests/vectors/rfc8554_appendix_f.txt");
    let hex = text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(" = "))
        .unwrap_or("");
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Hash-based signatures (RFC 8554) from untrusted bytes: an HSS public key
/// read and re-encoded unchanged; a signature checked against the RFC's key
/// and message (only the RFC's own signature verifies); an LMS signature
/// read and its length agreed.
pub fn verify_lms(data: &[u8]) {
    use keyquorum_core::lms::hss::HssPublicKey;
    use keyquorum_core::lms::tree::LmsSignature;
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match kind(sel, 3) {
        0 => {
            if let Ok(pk) = HssPublicKey::from_bytes(rest) {
                assert_eq!(pk.to_bytes(), rest, "an HSS key re-encoded differently");
            }
        }
        1 => {
            static KEY: OnceLock<HssPublicKey> = OnceLock::new();
            let key = KEY.get_or_init(|| {
                HssPublicKey::from_bytes(&lms_vector("tc1.public_key"))
                    .unwrap_or_else(|e| panic!("the RFC key: {e}"))
            });
            if key.verify(&lms_vector("tc1.message"), rest).is_ok() {
                assert_eq!(
                    rest,
                    lms_vector("tc1.signature"),
                    "a forged signature verified"
                );
            }
        }
        _ => {
            if let Ok(sig) = LmsSignature::parse(rest) {
                assert_eq!(LmsSignature::len_at(rest).ok(), Some(rest.len()));
                assert_eq!(sig.path.len(), usize::from(sig.lms.height()));
            }
        }
    }
}

/// The threshold OPRF's messages from untrusted bytes: a package, a
/// commitment and a response decoded and re-encoded unchanged; and a
/// member (holder 1 of a 2-of-3 Ristretto255 key) handed a fuzzed
/// package for its round-one nonces answers only a package that holds
/// its commitment unchanged, for its blinded element, and otherwise
/// refuses (never a panic).
pub fn decode_oprf(data: &[u8]) {
    use keyquorum_core::oprf::{self, Commitment, Element, Package, Proof, Response};
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match kind(sel, 5) {
        0 => {
            if let Ok(p) = Package::from_bytes(rest) {
                assert_eq!(p.to_bytes(), rest, "a package re-encoded differently");
            }
        }
        1 => {
            if let Ok(c) = Commitment::from_bytes(rest) {
                assert_eq!(
                    c.to_bytes().as_slice(),
                    rest,
                    "a commitment re-encoded differently"
                );
            }
        }
        2 => {
            if let Ok(r) = Response::from_bytes(rest) {
                assert_eq!(
                    r.to_bytes().as_slice(),
                    rest,
                    "a response re-encoded differently"
                );
            }
        }
        3 => {
            if let Ok(e) = Element::from_bytes(rest) {
                assert_eq!(e.to_bytes().as_slice(), rest);
            }
            if let Ok(p) = Proof::from_bytes(rest) {
                assert_eq!(p.to_bytes().as_slice(), rest);
            }
        }
        _ => {
            let h = oprf_holders();
            let me = pid(1);
            let Some(share) = h.shares.get(&me) else {
                return;
            };
            let m = oprf_element();
            let mut rng = ChaCha20Rng::seed_from_u64(5);
            let (nonces, own) = oprf::commit(share, &m, &mut rng);
            let Ok(package) = Package::from_bytes(rest) else {
                return;
            };
            let holds = package.to_bytes().len() >= 34
                && package.element() == &m
                && package
                    .to_bytes()
                    .get(34..)
                    .is_some_and(|cs| cs.chunks(own.to_bytes().len()).any(|c| c == own.to_bytes()));
            if oprf::respond(share, &h.group, nonces, &package).is_ok() {
                assert!(
                    holds,
                    "answered a package without its commitment or for another element"
                );
            }
        }
    }
}

/// The 2-of-3 Ristretto255 holders [`decode_oprf`] uses.
pub(crate) fn oprf_holders() -> &'static Holders<Ristretto255> {
    static H: OnceLock<Holders<Ristretto255>> = OnceLock::new();
    H.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let members: BTreeSet<ParticipantId> = ParticipantId::range(3).collect();
        local::dkg::<Ristretto255, _>(SessionId([4; 32]), 2, &members, &mut rng)
            .unwrap_or_else(|e| panic!("dkg: {e}"))
    })
}

/// The blinded element [`decode_oprf`]'s member committed for.
pub(crate) fn oprf_element() -> keyquorum_core::oprf::Element {
    keyquorum_core::oprf::blind(b"fuzz", &curve25519_dalek::Scalar::from(7u64))
        .unwrap_or_else(|e| panic!("blind: {e}"))
}

/// A harness: one fuzz input in, panics only on a finding.
pub type Harness = fn(&[u8]);

/// Every harness by name, for the smoke runner.
pub const TARGETS: &[(&str, Harness)] = &[
    ("decode_keys", decode_keys),
    ("decode_dkg", decode_dkg),
    ("decode_sign", decode_sign),
    ("decode_refresh", decode_refresh),
    ("decode_reshare", decode_reshare),
    ("decode_repair", decode_repair),
    ("handle_dkg", handle_dkg),
    ("handle_sign", handle_sign),
    ("handle_refresh", handle_refresh),
    ("handle_reshare", handle_reshare),
    ("handle_repair", handle_repair),
    ("verify_lms", verify_lms),
    ("decode_oprf", decode_oprf),
];

pub mod seeds;

#[cfg(test)]
mod tests {
    /// The `decode_oprf` seed package is one the member answers, so the
    /// fuzzer starts from the answering path, not only from refusals.
    #[test]
    fn the_oprf_seed_package_is_answered() {
        use keyquorum_core::oprf::{self, Package};
        use rand_chacha::ChaCha20Rng;
        use rand_core::SeedableRng;
        let seeds = crate::seeds::seeds("decode_oprf");
        let seed = seeds.first().map(|s| s[1..].to_vec()).unwrap_or_default();
        let package = Package::from_bytes(&seed).unwrap_or_else(|e| panic!("{e}"));
        let h = crate::oprf_holders();
        let share = &h.shares[&crate::pid(1)];
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let (nonces, _) = oprf::commit(share, &crate::oprf_element(), &mut rng);
        assert!(oprf::respond(share, &h.group, nonces, &package).is_ok());
    }
}
