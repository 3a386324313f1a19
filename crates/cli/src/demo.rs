//! `keyquorum demo`: the whole key lifecycle in one process, every
//! participant a separate state machine, every message through its encoding.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use keyquorum_core::local::{self, Holders};
use keyquorum_core::{hazmat, ParticipantId, SessionId, Suite};
use rand_core::{OsRng, RngCore};
use serde_json::json;

struct Report {
    json: bool,
    steps: Vec<serde_json::Value>,
}

impl Report {
    fn step(&mut self, name: &str, started: Instant, detail: serde_json::Value, human: String) {
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if !self.json {
            println!("{name:<8} {ms:>8.2} ms  {human}");
        }
        let mut v = json!({ "step": name, "ms": ms });
        if let (Some(obj), serde_json::Value::Object(d)) = (v.as_object_mut(), detail) {
            obj.extend(d);
        }
        self.steps.push(v);
    }
}

fn session() -> SessionId {
    let mut s = [0u8; 32];
    OsRng.fill_bytes(&mut s);
    SessionId(s)
}

fn ids(range: impl IntoIterator<Item = u16>) -> BTreeSet<ParticipantId> {
    range
        .into_iter()
        .filter_map(|i| ParticipantId::new(i).ok())
        .collect()
}

fn members(h: &Holders<impl Suite>) -> Vec<u16> {
    h.group.members().iter().map(|m| m.get()).collect()
}

pub(crate) fn demo<C: Suite>(n: u16, t: u16, message: &[u8], json: bool) -> Result<()> {
    if t < 2 || t > n {
        bail!("need 2 <= threshold <= nodes (got threshold {t}, nodes {n})");
    }
    if n >= u16::MAX - 1 {
        bail!("too many nodes");
    }
    let mut rng = OsRng;
    let mut r = Report {
        json,
        steps: vec![],
    };
    if !json {
        println!(
            "keyquorum demo: suite {}, {t}-of-{n}, all in one process\n",
            C::SUITE.name()
        );
    }

    let started = Instant::now();
    let holders = local::dkg::<C, _>(session(), t, &ids(1..=n), &mut rng).context("DKG")?;
    let pk = hex::encode(holders.group.public_key_bytes());
    r.step(
        "dkg",
        started,
        json!({ "threshold": t, "members": members(&holders), "public_key": pk }),
        format!("{n} participants, threshold {t}; public key {pk}"),
    );

    let signers = ids(1..=t);
    let started = Instant::now();
    let sig = local::sign(&holders, session(), &signers, message, &mut rng).context("signing")?;
    let sig_hex = hex::encode(sig.to_bytes());
    r.step(
        "sign",
        started,
        json!({ "signers": signers.iter().map(|s| s.get()).collect::<Vec<_>>(), "signature": sig_hex }),
        format!("signers {:?}: {sig_hex}", signers.iter().map(|s| s.get()).collect::<Vec<_>>()),
    );

    let started = Instant::now();
    holders
        .group
        .verify(message, &sig.to_bytes())
        .context("verify")?;
    r.step(
        "verify",
        started,
        json!({ "valid": true }),
        "signature valid under the group key".into(),
    );

    let started = Instant::now();
    let refreshed = local::refresh(holders, session(), &mut rng).context("refresh")?;
    r.step(
        "refresh",
        started,
        json!({ "public_key": hex::encode(refreshed.group.public_key_bytes()) }),
        "every share replaced; same public key".into(),
    );

    // Reshare to (t+1)-of-(n+1): dealers are the first t old members; the new
    // set drops member 1 and adds two new members.
    let (t2, new_members) = (t + 1, ids(2..=n + 2));
    let dealers = ids(1..=t);
    let started = Instant::now();
    let reshared = local::reshare(&refreshed, session(), &dealers, t2, &new_members, &mut rng)
        .context("reshare")?;
    let new_pk = hex::encode(reshared.group.public_key_bytes());
    if new_pk != pk {
        bail!("reshare changed the public key");
    }
    r.step(
        "reshare",
        started,
        json!({ "threshold": t2, "members": members(&reshared), "public_key": new_pk }),
        format!(
            "now {t2}-of-{} with members {:?}; same public key",
            new_members.len(),
            members(&reshared)
        ),
    );

    // Sign with the newest members only (those that joined in the reshare first).
    let newest: BTreeSet<_> = new_members
        .iter()
        .rev()
        .take(t2 as usize)
        .copied()
        .collect();
    let started = Instant::now();
    let sig2 = local::sign(&reshared, session(), &newest, message, &mut rng)
        .context("signing after reshare")?;
    reshared
        .group
        .verify(message, &sig2.to_bytes())
        .context("verify after reshare")?;
    r.step(
        "sign",
        started,
        json!({ "signers": newest.iter().map(|s| s.get()).collect::<Vec<_>>(), "signature": hex::encode(sig2.to_bytes()) }),
        format!("signers {:?}: valid", newest.iter().map(|s| s.get()).collect::<Vec<_>>()),
    );

    let target = *new_members.iter().next().context("no members")?;
    let helpers: BTreeSet<_> = new_members
        .iter()
        .filter(|m| **m != target)
        .take(t2 as usize)
        .copied()
        .collect();
    let started = Instant::now();
    let repaired =
        local::repair(&reshared, session(), &helpers, target, &mut rng).context("repair")?;
    let ok = reshared
        .shares
        .get(&target)
        .map(|s| s.secret() == repaired.secret())
        .unwrap_or(false);
    if !ok {
        bail!("repaired share differs from the original");
    }
    r.step(
        "repair",
        started,
        json!({ "target": target.get(), "helpers": helpers.iter().map(|s| s.get()).collect::<Vec<_>>() }),
        format!("member {target}'s share rebuilt by {:?}", helpers.iter().map(|s| s.get()).collect::<Vec<_>>()),
    );

    let started = Instant::now();
    let shares: Vec<_> = reshared.shares.values().take(t2 as usize).collect();
    let matches = hazmat::with_reconstructed_key(&reshared.group, &shares, |k| {
        k.public() == reshared.group.verifying_element()
    })
    .context("export")?;
    if !matches {
        bail!("reconstructed key does not match");
    }
    r.step(
        "export",
        started,
        json!({ "matches_public_key": true, "zeroized": true }),
        format!("{t2} shares rebuilt the key, checked it and zeroized it"),
    );

    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "suite": C::SUITE.name(), "steps": r.steps }))?
        );
    }
    Ok(())
}
