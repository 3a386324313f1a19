//! HTTP Message Signatures (RFC 9421) with Ed25519 (§3.3.6), and the
//! `Content-Digest` field (RFC 9530) that binds a body to them: how a client
//! signs a request and how any participant — the node that received it, or
//! one that was handed the same bytes later — checks it.
//!
//! Sans-I/O like the rest of the crate: a [`Request`] is the method, the
//! absolute target URI, the header fields and the body, however they arrived;
//! the caller supplies the time and looks up the key for a `keyid`.
//!
//! What a signature must carry to be accepted here ([`Policy`]):
//! - covered components: at least `@method` and `@target-uri`, and
//!   `content-digest` when the request has a body; any other header field
//!   and the request-derived components of §2.2 (`@authority`, `@scheme`,
//!   `@request-target`, `@path`, `@query`) may be covered too. Components
//!   with parameters (`;sf`, `;key`, `;bs`, `;req`, `;tr`, `@query-param`)
//!   are refused as unsupported;
//! - parameters: `created` (integer, within the policy's window), `keyid`
//!   (string: the client's name), `nonce` (string, for the caller's replay
//!   check); `alg` if present must be `ed25519`; `expires` if present must not
//!   have passed; `tag` and unknown parameters are carried into the signature
//!   base and otherwise ignored;
//! - any label: every label of `Signature-Input` (at most
//!   [`MAX_SIGNATURES`]) is tried until one verifies.
//!
//! The signature base is built as §2.5 says: one line per covered component,
//! `"name": value`, then `"@signature-params": ` and the inner list exactly as
//! RFC 9651 serializes it. Header values are trimmed, repeated fields joined
//! with `", "` (§2.1). Tested against the Ed25519 example of RFC 9421
//! Appendix B.2.6 and, in CI, against an implementation we did not write.

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sfv::{BareItem, Dictionary, Item, ListEntry, Parser};
use sha2::{Digest, Sha256, Sha512};

mod memo;
pub use memo::Verifications;

/// The most signatures one request may carry (each is parsed and may be
/// checked).
pub const MAX_SIGNATURES: usize = 8;
/// The most components one signature may cover.
pub const MAX_COMPONENTS: usize = 32;
/// The longest `nonce` accepted.
pub const MAX_NONCE: usize = 128;
/// The longest `keyid` accepted.
pub const MAX_KEYID: usize = 128;

/// A request as the signature sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The absolute target URI, e.g. `https://kq.example:8443/v1/keys?x=1`.
    pub target_uri: String,
    /// Header fields, names in any case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
}

impl Request {
    /// All values of a header field, trimmed and joined with `", "`
    /// (RFC 9421 §2.1); `None` if the field is absent.
    pub fn field(&self, name: &str) -> Option<String> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim());
        let first = values.next()?;
        Some(values.fold(first.to_string(), |mut acc, v| {
            acc.push_str(", ");
            acc.push_str(v);
            acc
        }))
    }

    fn remove_field(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

/// Why a signed request was refused. The text is the reason a 401 gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// No `Signature-Input` or `Signature` field.
    #[error("the request is not signed (RFC 9421 Signature-Input and Signature fields)")]
    Unsigned,
    /// A field or parameter that does not parse or has the wrong type.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// A component or algorithm this verifier does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A component the policy requires is not covered.
    #[error("the signature does not cover {0}")]
    NotCovered(&'static str),
    /// A covered component is absent from the request.
    #[error("covered component {0} is not in the request")]
    MissingComponent(String),
    /// `created` is older than the window allows.
    #[error("the signature is stale: created {created}, now {now}, window {window}s")]
    Stale {
        /// The signature's `created`.
        created: u64,
        /// The verifier's time.
        now: u64,
        /// The policy's window in seconds.
        window: u64,
    },
    /// `created` is later than the verifier's clock allows.
    #[error("the signature was created in the future: created {created}, now {now}")]
    Future {
        /// The signature's `created`.
        created: u64,
        /// The verifier's time.
        now: u64,
    },
    /// `expires` has passed.
    #[error("the signature expired at {0}")]
    Expired(u64),
    /// The body does not match its `Content-Digest`.
    #[error("the body does not match its Content-Digest")]
    DigestMismatch,
    /// No key is known for the `keyid`.
    #[error("unknown key id {0:?}")]
    UnknownKey(String),
    /// The Ed25519 signature does not verify.
    #[error("the signature does not verify for key id {0:?}")]
    BadSignature(String),
}

/// What a verifier requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The verifier's time, seconds since the Unix epoch.
    pub now: u64,
    /// How old `created` may be, in seconds.
    pub window: u64,
    /// How far ahead of `now` `created` may be (clock skew), in seconds.
    pub skew: u64,
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its label in the request.
    pub label: String,
    /// Its `keyid`.
    pub keyid: String,
    /// Its `created`.
    pub created: u64,
    /// Its `nonce`.
    pub nonce: String,
    /// Its covered components, in order (`"@method"`, `"content-digest"`, …).
    pub covered: Vec<String>,
}

/// Check `req`'s signatures under `policy`; `key_of` gives the public key of
/// a `keyid`, or `None` for an unknown one. The first label that verifies
/// wins; if none does, the first label's reason is returned.
pub fn verify(
    req: &Request,
    policy: &Policy,
    key_of: impl Fn(&str) -> Option<VerifyingKey>,
) -> Result<Verified, SigError> {
    verify_inner(req, policy, key_of, None)
}

/// [`verify`], answering the Ed25519 equation from `memo` when these exact
/// bytes verified before (every other check runs every time; see
/// [`Verifications`]).
pub fn verify_memo(
    req: &Request,
    policy: &Policy,
    key_of: impl Fn(&str) -> Option<VerifyingKey>,
    memo: &Verifications,
) -> Result<Verified, SigError> {
    verify_inner(req, policy, key_of, Some(memo))
}

fn verify_inner(
    req: &Request,
    policy: &Policy,
    key_of: impl Fn(&str) -> Option<VerifyingKey>,
    memo: Option<&Verifications>,
) -> Result<Verified, SigError> {
    let (Some(inputs), Some(sigs)) = (req.field("signature-input"), req.field("signature")) else {
        return Err(SigError::Unsigned);
    };
    let inputs: Dictionary = Parser::new(&inputs)
        .parse()
        .map_err(|e| SigError::Malformed(format!("Signature-Input: {e}")))?;
    let sigs: Dictionary = Parser::new(&sigs)
        .parse()
        .map_err(|e| SigError::Malformed(format!("Signature: {e}")))?;
    if inputs.is_empty() {
        return Err(SigError::Unsigned);
    }
    if inputs.len() > MAX_SIGNATURES {
        return Err(SigError::Malformed(format!(
            "more than {MAX_SIGNATURES} signatures"
        )));
    }
    let mut first = None;
    let digest_checked = std::cell::OnceCell::new();
    for (label, input) in &inputs {
        let r = verify_one(
            req,
            policy,
            &key_of,
            (label.as_str(), input, sigs.get(label)),
            &digest_checked,
            memo,
        );
        match r {
            Ok(v) => return Ok(v),
            Err(e) => first = first.or(Some(e)),
        }
    }
    Err(first.unwrap_or(SigError::Unsigned))
}

fn verify_one(
    req: &Request,
    policy: &Policy,
    key_of: &impl Fn(&str) -> Option<VerifyingKey>,
    (label, input, sig): (&str, &ListEntry, Option<&ListEntry>),
    digest_checked: &std::cell::OnceCell<Result<(), SigError>>,
    memo: Option<&Verifications>,
) -> Result<Verified, SigError> {
    let ListEntry::InnerList(list) = input else {
        return Err(SigError::Malformed(format!(
            "Signature-Input {label} is not an inner list"
        )));
    };
    let signature = match sig {
        Some(ListEntry::Item(Item {
            bare_item: BareItem::ByteSequence(b),
            ..
        })) => Signature::from_slice(b)
            .map_err(|_| SigError::Malformed(format!("signature {label} is not 64 bytes")))?,
        Some(_) => {
            return Err(SigError::Malformed(format!(
                "Signature {label} is not a byte sequence"
            )))
        }
        None => {
            return Err(SigError::Malformed(format!(
                "Signature-Input {label} has no Signature"
            )))
        }
    };
    if list.items.len() > MAX_COMPONENTS {
        return Err(SigError::Malformed(format!(
            "more than {MAX_COMPONENTS} covered components"
        )));
    }
    let covered = list
        .items
        .iter()
        .map(|item| match (&item.bare_item, item.params.is_empty()) {
            (BareItem::String(s), true) => Ok(s.as_str().to_string()),
            (BareItem::String(s), false) => Err(SigError::Unsupported(format!(
                "component parameters on {:?}",
                s.as_str()
            ))),
            _ => Err(SigError::Malformed(
                "a covered component is not a string".into(),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (i, c) in covered.iter().enumerate() {
        if covered.iter().take(i).any(|d| d == c) {
            return Err(SigError::Malformed(format!("{c:?} is covered twice")));
        }
    }
    for required in ["@method", "@target-uri"] {
        if !covered.iter().any(|c| c == required) {
            return Err(SigError::NotCovered(required));
        }
    }
    let has_digest = req.field("content-digest").is_some();
    if !req.body.is_empty() && !covered.iter().any(|c| c == "content-digest") {
        return Err(SigError::NotCovered("content-digest"));
    }
    let params = Params::read(&list.params, label)?;
    if let Some(alg) = &params.alg {
        if alg != "ed25519" {
            return Err(SigError::Unsupported(format!("alg {alg:?}")));
        }
    }
    if params.created > policy.now.saturating_add(policy.skew) {
        return Err(SigError::Future {
            created: params.created,
            now: policy.now,
        });
    }
    if policy.now.saturating_sub(params.created) > policy.window {
        return Err(SigError::Stale {
            created: params.created,
            now: policy.now,
            window: policy.window,
        });
    }
    if let Some(expires) = params.expires {
        if expires < policy.now {
            return Err(SigError::Expired(expires));
        }
    }
    // Cheap checks first; the body is hashed only for a signature that
    // verified under a known key, and at most once per request.
    let key = key_of(&params.keyid).ok_or_else(|| SigError::UnknownKey(params.keyid.clone()))?;
    let base = signature_base(req, &covered, &list_params_serialized(list)?)?;
    let valid = match memo {
        Some(m) => m.verify_strict(&key, base.as_bytes(), &signature),
        None => key.verify_strict(base.as_bytes(), &signature).is_ok(),
    };
    if !valid {
        return Err(SigError::BadSignature(params.keyid.clone()));
    }
    if has_digest {
        digest_checked.get_or_init(|| check_digest(req)).clone()?;
    }
    Ok(Verified {
        label: label.to_string(),
        keyid: params.keyid,
        created: params.created,
        nonce: params.nonce,
        covered,
    })
}

/// The signature parameters this verifier reads.
struct Params {
    created: u64,
    expires: Option<u64>,
    keyid: String,
    nonce: String,
    alg: Option<String>,
}

impl Params {
    fn read(params: &sfv::Parameters, label: &str) -> Result<Self, SigError> {
        let int = |name: &str| -> Result<Option<u64>, SigError> {
            match params.get(name) {
                None => Ok(None),
                Some(BareItem::Integer(i)) => u64::try_from(i64::from(*i))
                    .map(Some)
                    .map_err(|_| SigError::Malformed(format!("{name} is negative"))),
                Some(_) => Err(SigError::Malformed(format!("{name} is not an integer"))),
            }
        };
        let string = |name: &str| -> Result<Option<String>, SigError> {
            match params.get(name) {
                None => Ok(None),
                Some(BareItem::String(s)) => Ok(Some(s.as_str().to_string())),
                Some(_) => Err(SigError::Malformed(format!("{name} is not a string"))),
            }
        };
        let missing = |name: &str| SigError::Malformed(format!("signature {label} has no {name}"));
        let nonce = string("nonce")?.ok_or_else(|| missing("nonce"))?;
        if nonce.is_empty() || nonce.len() > MAX_NONCE {
            return Err(SigError::Malformed(format!(
                "nonce must be 1..={MAX_NONCE} characters"
            )));
        }
        let keyid = string("keyid")?.ok_or_else(|| missing("keyid"))?;
        if keyid.is_empty() || keyid.len() > MAX_KEYID {
            return Err(SigError::Malformed(format!(
                "keyid must be 1..={MAX_KEYID} characters"
            )));
        }
        Ok(Params {
            created: int("created")?.ok_or_else(|| missing("created"))?,
            expires: int("expires")?,
            keyid,
            nonce,
            alg: string("alg")?,
        })
    }
}

/// The inner list with its parameters, serialized (RFC 9651 §4.1.1.1).
fn list_params_serialized(list: &sfv::InnerList) -> Result<String, SigError> {
    let mut ser = sfv::ListSerializer::new();
    ser.members([&ListEntry::InnerList(list.clone())]);
    ser.finish()
        .ok_or_else(|| SigError::Malformed("empty signature parameters".into()))
}

/// The signature base of RFC 9421 §2.5 for `covered` and the serialized
/// `@signature-params` value.
pub fn signature_base(req: &Request, covered: &[String], params: &str) -> Result<String, SigError> {
    let mut base = String::new();
    for name in covered {
        let value = component(req, name)?;
        if value.chars().any(|c| c == '\n' || c == '\r') {
            return Err(SigError::Malformed(format!(
                "component {name:?} contains a line break"
            )));
        }
        base.push('"');
        base.push_str(name);
        base.push_str("\": ");
        base.push_str(&value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(params);
    Ok(base)
}

/// The parts of an absolute URI the derived components need.
struct Uri<'a> {
    scheme: &'a str,
    authority: &'a str,
    path: &'a str,
    query: Option<&'a str>,
}

fn split_uri(uri: &str) -> Result<Uri<'_>, SigError> {
    let bad = || SigError::Malformed(format!("target URI {uri:?} is not absolute"));
    let (scheme, rest) = uri.split_once("://").ok_or_else(bad)?;
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path_query) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if scheme.is_empty() || authority.is_empty() {
        return Err(bad());
    }
    let (path, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_query, None),
    };
    Ok(Uri {
        scheme,
        authority,
        path,
        query,
    })
}

/// The value of one covered component (RFC 9421 §2.1, §2.2).
fn component(req: &Request, name: &str) -> Result<String, SigError> {
    let missing = || SigError::MissingComponent(name.to_string());
    if let Some(derived) = name.strip_prefix('@') {
        let uri = || split_uri(&req.target_uri);
        return Ok(match derived {
            "method" => req.method.clone(),
            "target-uri" => req.target_uri.clone(),
            "authority" => uri()?.authority.to_ascii_lowercase(),
            "scheme" => uri()?.scheme.to_ascii_lowercase(),
            "path" => {
                let p = uri()?.path;
                if p.is_empty() { "/" } else { p }.to_string()
            }
            "query" => format!("?{}", uri()?.query.unwrap_or_default()),
            "request-target" => {
                let u = uri()?;
                let p = if u.path.is_empty() { "/" } else { u.path };
                match u.query {
                    Some(q) => format!("{p}?{q}"),
                    None => p.to_string(),
                }
            }
            _ => {
                return Err(SigError::Unsupported(format!(
                    "derived component {name:?} in a request"
                )))
            }
        });
    }
    if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(SigError::Malformed(format!(
            "component name {name:?} is not a lowercase field name"
        )));
    }
    req.field(name).ok_or_else(missing)
}

/// Check `Content-Digest` against the body (RFC 9530 §2): every algorithm
/// this verifier knows (`sha-256`, `sha-512`) must match, and at least one
/// must be present.
fn check_digest(req: &Request) -> Result<(), SigError> {
    let value = req.field("content-digest").unwrap_or_default();
    let dict: Dictionary = Parser::new(&value)
        .parse()
        .map_err(|e| SigError::Malformed(format!("Content-Digest: {e}")))?;
    let mut known = 0;
    for (alg, entry) in &dict {
        let expected: Vec<u8> = match alg.as_str() {
            "sha-256" => Sha256::digest(&req.body).to_vec(),
            "sha-512" => Sha512::digest(&req.body).to_vec(),
            _ => continue,
        };
        match entry {
            ListEntry::Item(Item {
                bare_item: BareItem::ByteSequence(got),
                ..
            }) if *got == expected => known += 1,
            ListEntry::Item(Item {
                bare_item: BareItem::ByteSequence(_),
                ..
            }) => return Err(SigError::DigestMismatch),
            _ => {
                return Err(SigError::Malformed(format!(
                    "Content-Digest {} is not a byte sequence",
                    alg.as_str()
                )))
            }
        }
    }
    if known == 0 {
        return Err(SigError::Unsupported(
            "Content-Digest has neither sha-256 nor sha-512".into(),
        ));
    }
    Ok(())
}

/// How a client signs: the label, key id, creation time and nonce.
#[derive(Debug, Clone, Copy)]
pub struct SignParams<'a> {
    /// The signature's label (`sig1` is as good as any).
    pub label: &'a str,
    /// The client's name.
    pub keyid: &'a str,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// A fresh random string (the verifier refuses a repeat).
    pub nonce: &'a str,
}

/// Sign `req` in place: add `Content-Digest` (SHA-256) when it has a body,
/// then `Signature-Input` and `Signature` covering `@method`, `@target-uri`,
/// and, when present, `content-digest` and `content-type`. Any earlier
/// signature fields are replaced.
pub fn sign(req: &mut Request, key: &SigningKey, p: SignParams<'_>) -> Result<(), SigError> {
    let bad = |e: sfv::Error| SigError::Malformed(e.to_string());
    for f in ["signature", "signature-input", "content-digest"] {
        req.remove_field(f);
    }
    if !req.body.is_empty() {
        let digest = Sha256::digest(&req.body);
        let mut ser = sfv::DictSerializer::new();
        ser.bare_item(sfv::KeyRef::from_str("sha-256").map_err(bad)?, &digest[..]);
        let value = ser.finish().unwrap_or_default();
        req.headers.push(("content-digest".into(), value));
    }
    let mut covered = vec!["@method".to_string(), "@target-uri".to_string()];
    for f in ["content-digest", "content-type"] {
        if req.field(f).is_some() {
            covered.push(f.to_string());
        }
    }
    let created =
        i64::try_from(p.created).map_err(|_| SigError::Malformed("created is too large".into()))?;
    let key_ref = |k: &'static str| sfv::KeyRef::from_str(k).map_err(bad);
    let string = |s: &str| {
        sfv::StringRef::from_str(s)
            .map_err(bad)
            .map(ToOwned::to_owned)
    };
    let mut params = sfv::Parameters::new();
    params.insert(
        key_ref("created")?.to_owned(),
        BareItem::Integer(sfv::Integer::try_from(created).map_err(bad)?),
    );
    params.insert(
        key_ref("keyid")?.to_owned(),
        BareItem::String(string(p.keyid)?),
    );
    params.insert(
        key_ref("nonce")?.to_owned(),
        BareItem::String(string(p.nonce)?),
    );
    params.insert(
        key_ref("alg")?.to_owned(),
        BareItem::String(string("ed25519")?),
    );
    let items = covered
        .iter()
        .map(|c| string(c).map(|s| Item::new(BareItem::String(s))))
        .collect::<Result<Vec<_>, _>>()?;
    let list = sfv::InnerList::with_params(items, params);
    let serialized = list_params_serialized(&list)?;
    let base = signature_base(req, &covered, &serialized)?;
    let signature = key.sign(base.as_bytes());
    let label = sfv::KeyRef::from_str(p.label).map_err(bad)?;
    req.headers.push((
        "signature-input".into(),
        format!("{}={serialized}", label.as_str()),
    ));
    let mut ser = sfv::DictSerializer::new();
    ser.bare_item(label, &signature.to_bytes()[..]);
    req.headers
        .push(("signature".into(), ser.finish().unwrap_or_default()));
    Ok(())
}

/// A client identity's signing key and name (its `keyid`). The key pair is
/// made where the client runs; only [`ClientKey::public_key`] is registered
/// with the cluster.
#[derive(Clone)]
pub struct ClientKey {
    name: String,
    key: SigningKey,
}

impl core::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientKey")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ClientKey {
    /// A named key.
    pub fn new(name: impl Into<String>, key: SigningKey) -> Self {
        ClientKey {
            name: name.into(),
            key,
        }
    }

    /// A fresh key pair.
    pub fn generate(
        name: impl Into<String>,
        rng: &mut (impl rand_core::RngCore + rand_core::CryptoRng),
    ) -> Self {
        Self::new(name, SigningKey::generate(rng))
    }

    /// Read a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`, as
    /// `keyquorum client create` and OpenSSL write them).
    pub fn from_pkcs8_pem(name: impl Into<String>, pem: &str) -> Result<Self, SigError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let key = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| SigError::Malformed(format!("not an Ed25519 PKCS#8 PEM key: {e}")))?;
        Ok(Self::new(name, key))
    }

    /// The private key as PKCS#8 PEM, version 1 (RFC 8410 §7: the seed
    /// alone, no public key), the form OpenSSL and Python's `cryptography`
    /// read.
    pub fn to_pkcs8_pem(&self) -> Result<zeroize::Zeroizing<String>, SigError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let bytes = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        };
        bytes
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| SigError::Malformed(e.to_string()))
    }

    /// Its name (the `keyid` its signatures carry).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Sign `req` in place (see [`sign`]) as this client, label `sig1`.
    pub fn sign(&self, req: &mut Request, created: u64, nonce: &str) -> Result<(), SigError> {
        sign(
            req,
            &self.key,
            SignParams {
                label: "sig1",
                keyid: &self.name,
                created,
                nonce,
            },
        )
    }
}

/// Standard base64 (for keys shown to users).
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests;
