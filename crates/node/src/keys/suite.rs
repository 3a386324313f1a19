//! The suites shared keys come in, as types: a closed set ([`Suited`]) over
//! the suites the service offers, so a session's state for one suite is
//! stored and taken back with its type intact (no `Any`, no downcast).
//!
//! [`with_suite!`] turns a [`SuiteName`] from the registry or a request into
//! a type `C` for generic code; [`KeySuite::wrap`] and [`KeySuite::unwrap`]
//! move a `F::Of<C>` (e.g. a `dkg::Round1<C>`) in and out of a
//! [`Suited<F>`]. Offering a new suite means a variant here, one in
//! `SuiteName`, one arm in [`with_suite!`] and one `KeySuite` impl.

use keyquorum_core::{Ed25519, Ristretto255, Secp256k1Tr, Suite};
use keyquorum_wire::api::SuiteName;

/// Run `$body` with `$C` an alias of the suite type `$suite` names.
macro_rules! with_suite {
    ($suite:expr, |$C:ident| $body:expr) => {
        match $suite {
            keyquorum_wire::api::SuiteName::Ed25519 => {
                type $C = keyquorum_core::Ed25519;
                $body
            }
            keyquorum_wire::api::SuiteName::Secp256k1Tr => {
                type $C = keyquorum_core::Secp256k1Tr;
                $body
            }
            keyquorum_wire::api::SuiteName::Ristretto255 => {
                type $C = keyquorum_core::Ristretto255;
                $body
            }
        }
    };
}
pub(crate) use with_suite;

/// What a group key encoding of `suite` states: its threshold, its members
/// (as node ids, ascending) and its public key.
pub(crate) fn group_key_facts(
    suite: SuiteName,
    bytes: &[u8],
) -> Result<(u16, Vec<u64>, Vec<u8>), String> {
    with_suite!(suite, |C| {
        let g = <keyquorum_core::GroupKey<C> as keyquorum_core::codec::Decode>::from_bytes(bytes)
            .map_err(|e| format!("the group key does not decode: {e}"))?;
        Ok((
            g.threshold(),
            g.members().iter().map(|p| u64::from(p.get())).collect(),
            g.public_key_bytes(),
        ))
    })
}

/// A family of types indexed by suite: `Of<C>` is, say, `dkg::Round1<C>`.
pub(crate) trait PerSuite {
    /// The family's type for suite `C`.
    type Of<C: KeySuite>: Send;
}

/// A value of family `F` for one of the offered suites.
pub(crate) enum Suited<F: PerSuite> {
    /// Ed25519 (RFC 8032 signatures).
    Ed25519(F::Of<Ed25519>),
    /// secp256k1 with BIP-340/Taproot output.
    Secp256k1Tr(F::Of<Secp256k1Tr>),
    /// Ristretto255 (the keys of encrypted-data sessions).
    Ristretto255(F::Of<Ristretto255>),
}

impl<F: PerSuite> Suited<F> {
    /// Which suite the value is for.
    pub(crate) fn suite(&self) -> SuiteName {
        match self {
            Suited::Ed25519(_) => SuiteName::Ed25519,
            Suited::Secp256k1Tr(_) => SuiteName::Secp256k1Tr,
            Suited::Ristretto255(_) => SuiteName::Ristretto255,
        }
    }
}

/// A suite the service offers: how its values enter and leave [`Suited`].
pub(crate) trait KeySuite: Suite + Sized {
    /// Put `value` in the closed set.
    fn wrap<F: PerSuite>(value: F::Of<Self>) -> Suited<F>;
    /// Take the value back if it is of this suite.
    fn unwrap<F: PerSuite>(value: Suited<F>) -> Option<F::Of<Self>>;
    /// Borrow the value if it is of this suite.
    fn get<F: PerSuite>(value: &Suited<F>) -> Option<&F::Of<Self>>;
}

impl KeySuite for Ed25519 {
    fn wrap<F: PerSuite>(value: F::Of<Self>) -> Suited<F> {
        Suited::Ed25519(value)
    }

    fn unwrap<F: PerSuite>(value: Suited<F>) -> Option<F::Of<Self>> {
        match value {
            Suited::Ed25519(v) => Some(v),
            _ => None,
        }
    }

    fn get<F: PerSuite>(value: &Suited<F>) -> Option<&F::Of<Self>> {
        match value {
            Suited::Ed25519(v) => Some(v),
            _ => None,
        }
    }
}

impl KeySuite for Secp256k1Tr {
    fn wrap<F: PerSuite>(value: F::Of<Self>) -> Suited<F> {
        Suited::Secp256k1Tr(value)
    }

    fn unwrap<F: PerSuite>(value: Suited<F>) -> Option<F::Of<Self>> {
        match value {
            Suited::Secp256k1Tr(v) => Some(v),
            _ => None,
        }
    }

    fn get<F: PerSuite>(value: &Suited<F>) -> Option<&F::Of<Self>> {
        match value {
            Suited::Secp256k1Tr(v) => Some(v),
            _ => None,
        }
    }
}

impl KeySuite for Ristretto255 {
    fn wrap<F: PerSuite>(value: F::Of<Self>) -> Suited<F> {
        Suited::Ristretto255(value)
    }

    fn unwrap<F: PerSuite>(value: Suited<F>) -> Option<F::Of<Self>> {
        match value {
            Suited::Ristretto255(v) => Some(v),
            _ => None,
        }
    }

    fn get<F: PerSuite>(value: &Suited<F>) -> Option<&F::Of<Self>> {
        match value {
            Suited::Ristretto255(v) => Some(v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Numbers;
    impl PerSuite for Numbers {
        type Of<C: KeySuite> = u8;
    }

    #[test]
    fn a_value_comes_back_only_as_its_own_suite() {
        let v = Ed25519::wrap::<Numbers>(7);
        assert_eq!(v.suite(), SuiteName::Ed25519);
        assert_eq!(Secp256k1Tr::get(&v), None);
        assert_eq!(Ed25519::get(&v), Some(&7));
        assert_eq!(Secp256k1Tr::unwrap(v), None);
        let w = Secp256k1Tr::wrap::<Numbers>(9);
        assert_eq!(w.suite(), SuiteName::Secp256k1Tr);
        assert_eq!(Secp256k1Tr::unwrap(w), Some(9));
    }
}
