//! Tests of HTTP Message Signatures: the RFC's vectors, tampering,
//! freshness, coverage, malformed fields and a property test.

use super::*;

/// RFC 9421 Appendix B.1.4, `test-key-ed25519`: the PKCS#8 private key's
/// 32-byte seed (the last 32 bytes of the DER), and the public key.
const B14_SEED_B64: &str = "n4Ni+HpISpVObnQMW0wOhCKROaIKqKtW/2ZYb2p9KcU=";
const B14_PUBLIC_B64: &str = "JrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";

fn b64d(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn rfc_key() -> SigningKey {
    SigningKey::from_bytes(&b64d(B14_SEED_B64).try_into().unwrap())
}

/// The request of RFC 9421 Appendix B.2 (test-request).
fn rfc_request() -> Request {
    Request {
        method: "POST".into(),
        target_uri: "https://example.com/foo?param=Value&Pet=dog".into(),
        headers: vec![
            ("Host".into(), "example.com".into()),
            ("Date".into(), "Tue, 20 Apr 2021 02:07:55 GMT".into()),
            ("Content-Type".into(), "application/json".into()),
            (
                "Content-Digest".into(),
                "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:".into(),
            ),
            ("Content-Length".into(), "18".into()),
        ],
        body: br#"{"hello": "world"}"#.to_vec(),
    }
}

/// RFC 9421 Appendix B.1.4's key as the RFC prints it (PKCS#8 v1 PEM).
const B14_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
    MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n\
    -----END PRIVATE KEY-----\n";

#[test]
fn client_keys_read_and_write_pkcs8_v1_pem() {
    let k = ClientKey::from_pkcs8_pem("test-key-ed25519", B14_PEM).unwrap();
    assert_eq!(k.public_key().to_vec(), b64d(B14_PUBLIC_B64));
    // Written back byte for byte as the RFC prints it.
    assert_eq!(k.to_pkcs8_pem().unwrap().as_str(), B14_PEM);
    assert!(format!("{k:?}").contains("<redacted>"));
    assert!(ClientKey::from_pkcs8_pem("x", "not a key").is_err());
}

#[test]
fn the_rfc_key_is_the_rfc_public_key() {
    assert_eq!(
        rfc_key().verifying_key().to_bytes().to_vec(),
        b64d(B14_PUBLIC_B64)
    );
}

/// RFC 9421 Appendix B.2.6: the signature base and the Ed25519
/// signature (deterministic) are byte for byte the RFC's.
#[test]
fn rfc9421_b26_signature_base_and_signature() {
    let req = rfc_request();
    let covered: Vec<String> = [
        "date",
        "@method",
        "@path",
        "@authority",
        "content-type",
        "content-length",
    ]
    .map(String::from)
    .to_vec();
    let params = r#"("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#;
    let base = signature_base(&req, &covered, params).unwrap();
    assert_eq!(
        base,
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
         \"@method\": POST\n\
         \"@path\": /foo\n\
         \"@authority\": example.com\n\
         \"content-type\": application/json\n\
         \"content-length\": 18\n\
         \"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
    );
    let sig = rfc_key().sign(base.as_bytes());
    assert_eq!(
        b64(&sig.to_bytes()),
        "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw=="
    );
    // The parsed-and-reserialized parameters are the RFC's bytes.
    let dict: Dictionary = Parser::new(&format!("sig-b26={params}")).parse().unwrap();
    let Some(ListEntry::InnerList(l)) = dict.get("sig-b26") else {
        panic!("not an inner list")
    };
    assert_eq!(list_params_serialized(l).unwrap(), params);
}

fn policy(now: u64) -> Policy {
    Policy {
        now,
        window: 300,
        skew: 30,
    }
}

fn signed(now: u64) -> (Request, SigningKey) {
    let key = rfc_key();
    let mut req = rfc_request();
    req.headers.retain(|(n, _)| n != "Content-Digest");
    sign(
        &mut req,
        &key,
        SignParams {
            label: "sig1",
            keyid: "alice",
            created: now,
            nonce: "n1",
        },
    )
    .unwrap();
    (req, key)
}

fn alice(key: &SigningKey) -> impl Fn(&str) -> Option<VerifyingKey> + '_ {
    move |id| (id == "alice").then(|| key.verifying_key())
}

#[test]
fn a_signed_request_verifies_and_says_who_signed() {
    let (req, key) = signed(1000);
    let v = verify(&req, &policy(1000), alice(&key)).unwrap();
    assert_eq!(v.keyid, "alice");
    assert_eq!(v.nonce, "n1");
    assert_eq!(v.created, 1000);
    assert_eq!(
        v.covered,
        ["@method", "@target-uri", "content-digest", "content-type"]
    );
}

#[test]
fn any_change_to_a_covered_part_is_refused() {
    let (req, key) = signed(1000);
    let p = policy(1000);
    let mut r = req.clone();
    r.body[0] ^= 1;
    assert_eq!(verify(&r, &p, alice(&key)), Err(SigError::DigestMismatch));
    let mut r = req.clone();
    r.method = "PUT".into();
    assert!(matches!(
        verify(&r, &p, alice(&key)),
        Err(SigError::BadSignature(_))
    ));
    let mut r = req.clone();
    r.target_uri = "https://example.com/foo?param=Value&Pet=cat".into();
    assert!(matches!(
        verify(&r, &p, alice(&key)),
        Err(SigError::BadSignature(_))
    ));
    let mut r = req.clone();
    r.target_uri = "https://other.example/foo?param=Value&Pet=dog".into();
    assert!(matches!(
        verify(&r, &p, alice(&key)),
        Err(SigError::BadSignature(_))
    ));
    // A header that is not covered may change.
    let mut r = req.clone();
    r.headers.push(("x-extra".into(), "1".into()));
    assert!(verify(&r, &p, alice(&key)).is_ok());
}

#[test]
fn freshness_keys_and_coverage_are_enforced() {
    let (req, key) = signed(1000);
    assert!(matches!(
        verify(&req, &policy(1301), alice(&key)),
        Err(SigError::Stale { .. })
    ));
    assert!(matches!(
        verify(&req, &policy(969), alice(&key)),
        Err(SigError::Future { .. })
    ));
    assert!(verify(&req, &policy(1300), alice(&key)).is_ok());
    assert_eq!(
        verify(&req, &policy(1000), |_| None),
        Err(SigError::UnknownKey("alice".into()))
    );
    let other = SigningKey::from_bytes(&[7; 32]);
    assert_eq!(
        verify(&req, &policy(1000), |_| Some(other.verifying_key())),
        Err(SigError::BadSignature("alice".into()))
    );
    let mut r = req.clone();
    r.headers.retain(|(n, _)| !n.starts_with("signature"));
    assert_eq!(
        verify(&r, &policy(1000), alice(&key)),
        Err(SigError::Unsigned)
    );
}

/// Re-sign with chosen components and parameters (what another
/// implementation might send).
fn custom(covered: &[&str], params: &str, req: &Request, key: &SigningKey) -> Request {
    let mut r = req.clone();
    r.headers.retain(|(n, _)| !n.starts_with("signature"));
    let list = format!(
        "({}){params}",
        covered
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let names: Vec<String> = covered.iter().map(|c| c.to_string()).collect();
    // A base that cannot be built (a component the verifier must refuse)
    // is signed as empty: the refusal must come before the signature.
    let base = signature_base(&r, &names, &list).unwrap_or_default();
    let sig = key.sign(base.as_bytes());
    r.headers
        .push(("Signature-Input".into(), format!("other={list}")));
    r.headers.push((
        "Signature".into(),
        format!("other=:{}:", b64(&sig.to_bytes())),
    ));
    r
}

#[test]
fn other_labels_extra_components_and_parameters_are_accepted() {
    let (req, key) = signed(1000);
    let r = custom(
        &[
            "content-digest",
            "@authority",
            "@target-uri",
            "date",
            "@method",
            "@query",
            "@request-target",
        ],
        r#";keyid="alice";created=990;nonce="zz";tag="app";expires=2000"#,
        &req,
        &key,
    );
    let v = verify(&r, &policy(1000), alice(&key)).unwrap();
    assert_eq!(v.label, "other");
    assert_eq!(v.nonce, "zz");
}

#[test]
fn what_the_policy_requires_is_refused_when_absent() {
    let (req, key) = signed(1000);
    let p = policy(1000);
    let ok = r#";created=1000;keyid="alice";nonce="a""#;
    let cases: Vec<(Request, SigError)> = vec![
        (
            custom(&["@target-uri", "content-digest"], ok, &req, &key),
            SigError::NotCovered("@method"),
        ),
        (
            custom(&["@method", "@path", "content-digest"], ok, &req, &key),
            SigError::NotCovered("@target-uri"),
        ),
        (
            custom(&["@method", "@target-uri"], ok, &req, &key),
            SigError::NotCovered("content-digest"),
        ),
        (
            custom(
                &["@method", "@target-uri", "content-digest"],
                r#";created=1000;keyid="alice""#,
                &req,
                &key,
            ),
            SigError::Malformed("signature other has no nonce".into()),
        ),
        (
            custom(
                &["@method", "@target-uri", "content-digest"],
                r#";keyid="alice";nonce="a""#,
                &req,
                &key,
            ),
            SigError::Malformed("signature other has no created".into()),
        ),
        (
            custom(
                &["@method", "@target-uri", "content-digest"],
                r#";created=1000;keyid="alice";nonce="a";alg="rsa-pss-sha512""#,
                &req,
                &key,
            ),
            SigError::Unsupported("alg \"rsa-pss-sha512\"".into()),
        ),
        (
            custom(
                &["@method", "@target-uri", "content-digest"],
                r#";created=1000;keyid="alice";nonce="a";expires=999"#,
                &req,
                &key,
            ),
            SigError::Expired(999),
        ),
        (
            custom(
                &["@method", "@target-uri", "content-digest", "x-absent"],
                ok,
                &req,
                &key,
            ),
            SigError::MissingComponent("x-absent".into()),
        ),
        (
            custom(
                &["@method", "@target-uri", "content-digest", "@status"],
                ok,
                &req,
                &key,
            ),
            SigError::Unsupported("derived component \"@status\" in a request".into()),
        ),
    ];
    for (r, want) in cases {
        assert_eq!(verify(&r, &p, alice(&key)), Err(want));
    }
    // Component parameters are refused, not ignored.
    let mut r = req.clone();
    r.headers.retain(|(n, _)| !n.starts_with("signature"));
    r.headers.push((
        "Signature-Input".into(),
        r#"s=("@method" "@target-uri" "content-digest" "content-type";sf);created=1000;keyid="alice";nonce="a""#.into(),
    ));
    r.headers
        .push(("Signature".into(), format!("s=:{}:", b64(&[0; 64]))));
    assert!(matches!(
        verify(&r, &p, alice(&key)),
        Err(SigError::Unsupported(_))
    ));
}

#[test]
fn one_good_signature_among_bad_ones_is_enough() {
    let (req, key) = signed(1000);
    let mut r = req.clone();
    let input = r.field("signature-input").unwrap();
    let sig = r.field("signature").unwrap();
    r.headers.retain(|(n, _)| !n.starts_with("signature"));
    r.headers.push((
        "signature-input".into(),
        format!(r#"bad=("@method");created=1000;keyid="alice";nonce="b", {input}"#),
    ));
    r.headers.push((
        "signature".into(),
        format!("bad=:{}:, {sig}", b64(&[1; 64])),
    ));
    assert_eq!(
        verify(&r, &policy(1000), alice(&key)).unwrap().label,
        "sig1"
    );
}

#[test]
fn malformed_fields_are_typed_errors() {
    let (req, key) = signed(1000);
    for (input, sig) in [
        ("sig1=", "sig1=:AA==:"),
        ("sig1=(\"@method\"", "sig1=:AA==:"),
        ("sig1=\"x\"", "sig1=:AA==:"),
        ("sig1=(\"@method\" \"@target-uri\")", "sig1=1"),
        ("sig1=(\"@method\" \"@target-uri\")", "sig1=:AA==:"),
        ("sig1=(\"@method\" \"@target-uri\")", "other=:AA==:"),
        ("sig1=(1 2)", "sig1=:AA==:"),
    ] {
        let mut r = req.clone();
        r.headers.retain(|(n, _)| !n.starts_with("signature"));
        r.headers.push(("signature-input".into(), input.into()));
        r.headers.push(("signature".into(), sig.into()));
        assert!(verify(&r, &policy(1000), alice(&key)).is_err(), "{input}");
    }
    let mut r = req.clone();
    r.headers.retain(|(n, _)| n != "content-digest");
    r.headers
        .push(("content-digest".into(), "md5=:AAAA:".into()));
    assert!(verify(&r, &policy(1000), alice(&key)).is_err());
}

proptest::proptest! {
    /// Whatever the method, path, body and time, a signature verifies
    /// for its request and not for a request differing in any covered
    /// part.
    #[test]
    fn sign_then_verify(
        method in "[A-Z]{3,7}",
        path in "(/[a-z0-9_-]{1,8}){0,4}",
        query in proptest::option::of("[a-z]=[a-z0-9]{0,5}"),
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        created in 0u64..4_000_000_000,
        flip in 0usize..64,
    ) {
        let key = SigningKey::from_bytes(&[9; 32]);
        let uri = match &query {
            Some(q) => format!("https://kq.test:8443{path}?{q}"),
            None => format!("https://kq.test:8443{path}"),
        };
        let mut req = Request { method, target_uri: uri, headers: vec![], body };
        sign(&mut req, &key, SignParams { label: "sig1", keyid: "k", created, nonce: "n" }).unwrap();
        let p = Policy { now: created, window: 60, skew: 0 };
        let k = |_: &str| Some(key.verifying_key());
        proptest::prop_assert!(verify(&req, &p, k).is_ok());
        if !req.body.is_empty() {
            let mut r = req.clone();
            let i = flip % r.body.len();
            r.body[i] ^= 1;
            proptest::prop_assert_eq!(verify(&r, &p, k), Err(SigError::DigestMismatch));
        }
        let mut r = req.clone();
        r.method.push('X');
        proptest::prop_assert!(verify(&r, &p, k).is_err());
    }
}
