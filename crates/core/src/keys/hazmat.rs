//! Sharp tools: temporary reconstruction ("export") of a group secret.
//!
//! keyquorum exists so that no single machine ever holds a whole key. The one
//! exception is an explicit, policy-gated, audited export: `t` holders hand
//! their shares to one process, which rebuilds the key, lends it to a closure
//! and zeroizes it as soon as the closure returns. The node layer requires `t`
//! operator approvals and records the export in the audit log before calling
//! this.

use std::collections::{BTreeMap, BTreeSet};

use frost_core::{Field, Group};

use crate::error::{Error, Fault};
use crate::id::ParticipantId;
use crate::keys::{GroupKey, KeyShare};
use crate::secret::SecretScalar;
use crate::suite::Suite;
use crate::vss;

/// Rebuild the group secret from at least `t` shares, lend it to `f`, and
/// zeroize it when `f` returns (or unwinds).
///
/// Every share is checked against its holder's public share first; a bad
/// share names its holder. The result is checked against the group key.
/// For secp256k1-tr the secret is the discrete log of the (tweaked) output
/// key as stored; BIP-340 signers negate it when that key's `y` is odd.
pub fn with_reconstructed_key<C: Suite, T>(
    group: &GroupKey<C>,
    shares: &[&KeyShare<C>],
    f: impl FnOnce(&SecretScalar<C>) -> T,
) -> Result<T, Error> {
    let mut points: BTreeMap<ParticipantId, SecretScalar<C>> = BTreeMap::new();
    for share in shares {
        let id = share.id();
        let secret = share.secret();
        if secret.public() != group.public_share(id)? {
            return Err(Error::misbehaved(id, Fault::InvalidShare));
        }
        points.insert(id, secret);
    }
    let t = group.threshold() as usize;
    if points.len() < t {
        return Err(Error::NotEnough {
            have: points.len(),
            need: t,
        });
    }
    // Exactly t shares suffice; using the first t keeps the work O(t^2).
    let chosen: BTreeSet<ParticipantId> = points.keys().take(t).copied().collect();
    points.retain(|id, _| chosen.contains(id));
    let zero = <<C::Group as Group>::Field>::zero();
    let key = vss::interpolate(&points, &zero)?;
    drop(points);
    if key.public() != group.verifying_element() {
        return Err(Error::ShareMismatch);
    }
    // `key` is a SecretScalar: zeroized when it drops at the end of this scope,
    // including when `f` unwinds.
    Ok(f(&key))
}
