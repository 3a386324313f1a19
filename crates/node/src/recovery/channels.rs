//! The channels a signer sends its reset fragment over (besides `app`,
//! which is the log): a webhook (HTTP POST of JSON, e.g. to an SMS
//! gateway) and email through the node's `[smtp]` server (`lettre`).
//! Both verify TLS against the Web PKI roots (`webpki-roots`); a webhook
//! is `https://` to a public address (unless the node's
//! `allow_private_webhooks` is set), resolved once and pinned, and not
//! redirected; SMTP upgrades with STARTTLS, required, unless the server is
//! on loopback.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;

use crate::config::SmtpConfig;
use crate::error::NodeError;

/// TLS for webhooks: the Web PKI roots.
fn webhook_tls() -> Result<rustls::ClientConfig, NodeError> {
    static TLS: OnceLock<rustls::ClientConfig> = OnceLock::new();
    if let Some(c) = TLS.get() {
        return Ok(c.clone());
    }
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| NodeError::Internal(format!("webhook tls: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TLS.get_or_init(|| tls).clone())
}

/// Whether `ip` is an address a webhook may reach without
/// `allow_private_webhooks`: not loopback, private (RFC 1918, RFC 4193),
/// shared (RFC 6598), link-local, unspecified, broadcast, multicast,
/// documentation, benchmarking (RFC 2544), IETF protocol (192.0.0.0/24) or
/// reserved (240.0.0.0/4) space, nor site-local IPv6; IPv6 forms that carry
/// an IPv4 address (mapped, compatible, NAT64 64:ff9b::/96; 6to4
/// 2002::/16) are judged by that IPv4 address, and local-use NAT64
/// (64:ff9b:1::/48) is refused.
fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            let [a, b, c, _] = v.octets();
            !(v.is_loopback()
                || v.is_private()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_broadcast()
                || v.is_multicast()
                || v.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b)))
        }
        IpAddr::V6(v) => {
            if let Some(m) = v.to_ipv4_mapped() {
                return public(IpAddr::V4(m));
            }
            let o = v.octets();
            let v4 = |i: usize| {
                let b = |k: usize| o.get(i + k).copied().unwrap_or(0);
                IpAddr::V4(std::net::Ipv4Addr::new(b(0), b(1), b(2), b(3)))
            };
            match v.segments() {
                // IPv4-compatible (deprecated) ::a.b.c.d (:: and ::1 are
                // unspecified and loopback either way).
                [0, 0, 0, 0, 0, 0, _, _] => !v.is_loopback() && public(v4(12)),
                // NAT64: well-known 64:ff9b::/96; local-use 64:ff9b:1::/48.
                [0x64, 0xff9b, 0, 0, 0, 0, _, _] => public(v4(12)),
                [0x64, 0xff9b, 1, ..] => false,
                // 6to4: 2002:a.b.c.d::/48.
                [0x2002, ..] => public(v4(2)),
                // Site-local fec0::/10.
                [s0, ..] if (s0 & 0xffc0) == 0xfec0 => false,
                _ => {
                    !(v.is_loopback()
                        || v.is_unspecified()
                        || v.is_multicast()
                        || v.is_unique_local()
                        || v.is_unicast_link_local())
                }
            }
        }
    }
}

/// POST `body` as JSON to `url`; a 2xx answer is a delivery. Unless
/// `private` (the node's `allow_private_webhooks`), only `https://` to a
/// public address, which is resolved here once and pinned.
pub(crate) async fn webhook<T: Serialize>(
    url: &str,
    body: &T,
    private: bool,
    timeout: Duration,
) -> Result<(), NodeError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| NodeError::BadRequest(format!("webhook URL: {e}")))?;
    if parsed.scheme() != "https" && !private {
        return Err(NodeError::Forbidden(
            "webhooks are https:// (this node does not allow plain http)".into(),
        ));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| NodeError::BadRequest("webhook URL has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| NodeError::Unavailable("webhook host: lookup timed out".into()))?
            .map_err(|e| NodeError::Unavailable(format!("webhook host: {e}")))?
            .collect();
    let addr = addrs
        .iter()
        .copied()
        .find(|a| private || public(a.ip()))
        .ok_or_else(|| {
            NodeError::Forbidden(
                "the webhook's host resolves to no public address (this node does not allow \
                 private ones)"
                    .into(),
            )
        })?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(webhook_tls()?)
        .redirect(reqwest::redirect::Policy::none())
        // No proxy from the environment: it would resolve the host itself.
        .no_proxy()
        .timeout(timeout)
        .resolve(&host, addr)
        .build()
        .map_err(|e| NodeError::Internal(format!("webhook client: {e}")))?;
    let r = client
        .post(parsed)
        .json(body)
        .send()
        .await
        .map_err(|e| NodeError::Unavailable(format!("webhook: {}", e.without_url())))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(NodeError::Unavailable(format!(
            "webhook answered {}",
            r.status()
        )))
    }
}

/// The host and port of `HOST:PORT` (`[v6]:PORT` too).
fn host_port(server: &str) -> Result<(String, u16), NodeError> {
    let bad = || NodeError::Internal(format!("[smtp] server {server:?} is not HOST:PORT"));
    let (host, port) = server.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Send `text` to `to` through the `[smtp]` server.
pub(crate) async fn email(
    smtp: &SmtpConfig,
    to: &str,
    subject: &str,
    text: String,
    timeout: Duration,
) -> Result<(), NodeError> {
    let (host, port) = host_port(&smtp.server)?;
    let addr = |a: &str, what: &str| {
        a.parse::<lettre::message::Mailbox>()
            .map_err(|e| NodeError::BadRequest(format!("{what} address: {e}")))
    };
    let message = Message::builder()
        .from(addr(&smtp.from, "[smtp] from")?)
        .to(addr(to, "the account's email")?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(text)
        .map_err(|e| NodeError::Internal(format!("email: {e}")))?;
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
        .port(port)
        .timeout(Some(timeout));
    if !is_loopback(&host) {
        let tls = TlsParameters::new(host.clone())
            .map_err(|e| NodeError::Internal(format!("smtp tls: {e}")))?;
        b = b.tls(Tls::Required(tls));
    }
    if let Some(user) = &smtp.username {
        let password = match &smtp.password_file {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| NodeError::Internal(format!("[smtp] password_file: {e}")))?
                .trim_end()
                .to_string(),
            None => String::new(),
        };
        b = b.credentials(Credentials::new(user.clone(), password));
    }
    b.build()
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| NodeError::Unavailable(format!("smtp: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_reach_public_addresses_only() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "ff02::1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "::127.0.0.1",
            "::10.0.0.1",
            "fec0::1",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
        ] {
            assert!(!public(private.parse().unwrap()), "{private}");
        }
        for ok in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(public(ok.parse().unwrap()), "{ok}");
        }
    }

    #[tokio::test]
    async fn a_webhook_over_http_or_to_a_private_address_is_refused() {
        let body = serde_json::json!({});
        let t = Duration::from_secs(1);
        let e = webhook("http://example.com/x", &body, false, t)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("https"), "{e}");
        let e = webhook("https://127.0.0.1:9/x", &body, false, t)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no public address"), "{e}");
    }

    #[test]
    fn smtp_servers_parse_and_loopback_is_recognised() {
        assert_eq!(
            host_port("mail.example:587").unwrap(),
            ("mail.example".into(), 587)
        );
        assert_eq!(host_port("[::1]:25").unwrap(), ("::1".into(), 25));
        assert!(host_port("mail.example").is_err());
        assert!(host_port(":25").is_err());
        assert!(host_port("h:99999").is_err());
        assert!(is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("LOCALHOST"));
        assert!(!is_loopback("mail.example") && !is_loopback("10.0.0.1"));
    }
}
