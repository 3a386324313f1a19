//! # keyquorum-wire
//!
//! Every type that crosses a process boundary, and nothing else:
//!
//! | module | what |
//! |---|---|
//! | [`api`] | client API requests and responses (JSON over HTTPS; OpenAPI schemas derive from these with the feature `openapi`) |
//! | [`peer`] | node-to-node messages: the signed envelope and every protocol step |
//! | [`he`] | computation on encrypted data: sessions, inputs, results, transcripts |
//! | [`oprf`] | the threshold VOPRF service: keys and evaluations |
//! | [`msg`] | per-message key derivation: endpoints, prekeys, messages, mailbox |
//! | [`control`] | control-plane (Raft) commands, records and the openraft type configuration (feature `raft`, which only the node enables) |
//!
//! Versioning: peer envelopes carry [`peer::PROTOCOL_VERSION`]; the client
//! API is under `/v1`. Bytes travel as lowercase hex strings ([`Hex`]).
#![forbid(unsafe_code)]

pub mod api;
pub mod control;
pub mod he;
pub mod msg;
pub mod oprf;
pub mod peer;
pub mod recovery;
pub mod seedtree;

use core::num::NonZeroU16;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A node's identifier in the cluster, which is also its participant index
/// in every shared key: 1..=65535, so it can never name an invalid
/// participant. On the wire a plain JSON number, as when it was a `u64`;
/// decoding refuses 0 and anything above 65535.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(NonZeroU16);

/// A number that is not a node id (0, or above 65535).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node id {0} is not in 1..=65535")]
pub struct InvalidNodeId(pub u64);

impl NodeId {
    /// Node `id`, if it is in 1..=65535.
    pub const fn new(id: u16) -> Option<Self> {
        match NonZeroU16::new(id) {
            Some(n) => Some(NodeId(n)),
            None => None,
        }
    }

    /// The number.
    pub const fn get(self) -> u16 {
        self.0.get()
    }

    /// The number, known not to be zero.
    pub const fn nonzero(self) -> NonZeroU16 {
        self.0
    }
}

impl From<NonZeroU16> for NodeId {
    fn from(n: NonZeroU16) -> Self {
        NodeId(n)
    }
}

impl From<NodeId> for u64 {
    fn from(id: NodeId) -> u64 {
        u64::from(id.get())
    }
}

impl TryFrom<u64> for NodeId {
    type Error = InvalidNodeId;

    fn try_from(v: u64) -> Result<Self, InvalidNodeId> {
        u16::try_from(v)
            .ok()
            .and_then(NodeId::new)
            .ok_or(InvalidNodeId(v))
    }
}

impl core::str::FromStr for NodeId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let v: u64 = s
            .parse()
            .map_err(|_| format!("node id {s:?} is not a number"))?;
        NodeId::try_from(v).map_err(|e| e.to_string())
    }
}

impl core::fmt::Display for NodeId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.0, f)
    }
}

impl core::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.get())
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        NodeId::try_from(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for NodeId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .minimum(Some(1))
            .maximum(Some(65535))
            .description(Some("a node id: 1..=65535"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for NodeId {}

/// Bytes carried as a lowercase hex string in JSON.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hex(pub Vec<u8>);

impl Hex {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl core::fmt::Debug for Hex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", hex::encode(&self.0))
    }
}

impl core::fmt::Display for Hex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl From<Vec<u8>> for Hex {
    fn from(v: Vec<u8>) -> Self {
        Hex(v)
    }
}

/// Lowercase hex of `bytes`. `hex::encode` goes through a `char` iterator,
/// which showed up at about 5% of CPU in the message load test (every peer
/// envelope and Raft entry is hex inside JSON); this writes through
/// `hex::encode_to_slice` in one pass.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    // The output is exactly twice the input, so this cannot fail, and the
    // hex digits are ASCII, so neither can the UTF-8 check.
    if hex::encode_to_slice(bytes, &mut out).is_err() {
        return hex::encode(bytes);
    }
    String::from_utf8(out).unwrap_or_else(|_| hex::encode(bytes))
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(&self.0))
    }
}

/// Each ASCII byte's hex digit value, or `0xff` for a byte that is not a
/// hex digit.
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of range fails the build"
)]
const HEX_VALUES: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut c = 0u8;
    while c < 10 {
        t[(b'0' + c) as usize] = c;
        c += 1;
    }
    let mut c = 0u8;
    while c < 6 {
        t[(b'a' + c) as usize] = 10 + c;
        t[(b'A' + c) as usize] = 10 + c;
        c += 1;
    }
    t
};

/// The bytes of hex `text` (either case), with `hex::decode`'s errors (the
/// first byte that is not a hex digit is named). Decoded by a table, two
/// digits per byte, validity checked once at the end: peer messages carry
/// bulk data as hex (a tree's deal is hundreds of kilobytes), and the
/// `hex` crate's digit-by-digit decoding was 4% of a node's CPU in key
/// generation.
pub fn from_hex(text: &str) -> Result<Vec<u8>, hex::FromHexError> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err(hex::FromHexError::OddLength);
    }
    let value = |c: u8| HEX_VALUES.get(usize::from(c)).copied().unwrap_or(0xff);
    let mut out = Vec::with_capacity(digits.len() / 2);
    let mut invalid = 0u8;
    for pair in digits.chunks_exact(2) {
        if let [a, b] = pair {
            let (hi, lo) = (value(*a), value(*b));
            invalid |= hi | lo;
            out.push(hi << 4 | (lo & 0x0f));
        }
    }
    if invalid & 0xf0 != 0 {
        // As the hex crate names it: the byte's index, the byte as a char.
        let (index, c) = digits
            .iter()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_hexdigit())
            .map_or((0, '?'), |(i, c)| (i, char::from(*c)));
        return Err(hex::FromHexError::InvalidHexCharacter { c, index });
    }
    Ok(out)
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        from_hex(s.as_ref())
            .map(Hex)
            .map_err(|e| serde::de::Error::custom(format!("invalid hex: {e}")))
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Hex {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^([0-9a-fA-F]{2})*$"))
            .description(Some("bytes as hex"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Hex {}

/// A JSON value embedded verbatim in the JSON around it: its bytes stay
/// exactly as the sender wrote them, so a signature over them survives the
/// trip, and nothing is re-encoded (a peer envelope used to carry its
/// payload as hex of the JSON, twice the bytes and two passes).
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<serde_json::value::RawValue>);

impl RawJson {
    /// The JSON of `value`.
    pub fn of<T: Serialize>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Self)
    }

    /// Checked JSON text.
    pub fn from_json(text: String) -> Result<Self, serde_json::Error> {
        serde_json::value::RawValue::from_string(text).map(Self)
    }

    /// The exact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.get().as_bytes()
    }

    /// The exact text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for RawJson {}

impl core::fmt::Debug for RawJson {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 32-byte value as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hex32(pub [u8; 32]);

impl core::fmt::Debug for Hex32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", hex::encode(self.0))
    }
}

impl core::fmt::Display for Hex32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Serialize for Hex32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(&self.0))
    }
}

impl<'de> Deserialize<'de> for Hex32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Hex(v) = Hex::deserialize(d)?;
        let a: [u8; 32] = v
            .try_into()
            .map_err(|_| serde::de::Error::custom("expected 32 bytes"))?;
        Ok(Hex32(a))
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Hex32 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-fA-F]{64}$"))
            .description(Some("32 bytes as hex"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Hex32 {}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_keep_their_number_form_and_refuse_zero() {
        let id: NodeId = serde_json::from_str("7").unwrap();
        assert_eq!(id.get(), 7);
        assert_eq!(serde_json::to_string(&id).unwrap(), "7");
        assert_eq!(
            serde_json::to_string(&vec![NodeId::new(1).unwrap(), NodeId::new(65535).unwrap()])
                .unwrap(),
            "[1,65535]"
        );
        for bad in ["0", "65536", "-1", "1.5", "\"3\"", "18446744073709551615"] {
            assert!(serde_json::from_str::<NodeId>(bad).is_err(), "{bad}");
        }
        assert_eq!("12".parse::<NodeId>().unwrap().get(), 12);
        assert!("0".parse::<NodeId>().is_err());
        assert_eq!(NodeId::try_from(0u64), Err(InvalidNodeId(0)));
        assert_eq!(u64::from(NodeId::try_from(9u64).unwrap()), 9);
    }

    #[test]
    fn hex_round_trips_and_matches_the_hex_crate() {
        for len in [0usize, 1, 2, 15, 16, 31, 32, 33, 257, 4096] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 131 + 7) as u8).collect();
            let text = to_hex(&bytes);
            assert_eq!(text, hex::encode(&bytes));
            let json = serde_json::to_string(&Hex(bytes.clone())).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            let back: Hex = serde_json::from_str(&json).unwrap();
            assert_eq!(back.0, bytes);
        }
        assert_eq!(from_hex("00aBfF").unwrap(), vec![0x00, 0xab, 0xff]);
        // Every pair of bytes decodes (or fails) as the hex crate has it,
        // with its error.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let text = [b'4', b'f', a, b, b'0', b'9'];
                let Ok(text) = core::str::from_utf8(&text) else {
                    continue;
                };
                assert_eq!(from_hex(text), hex::decode(text), "{text:?}");
            }
        }
        assert_eq!(from_hex("abc"), Err(hex::FromHexError::OddLength));
        assert_eq!(from_hex(""), Ok(vec![]));
        assert!(serde_json::from_str::<Hex>("\"abc\"").is_err());
        assert!(serde_json::from_str::<Hex>("\"zz\"").is_err());
    }
}
