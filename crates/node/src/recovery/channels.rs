//! The channels a signer sends its reset fragment over (besides `app`,
//! which is the log): a webhook (HTTP POST of JSON, e.g. to an SMS
//! gateway) and email through the node's `[smtp]` server (`lettre`).
//! Both verify TLS against the Web PKI roots (`webpki-roots`); a webhook
//! is not redirected; SMTP upgrades with STARTTLS, required, unless the
//! server is on loopback.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;

use crate::config::SmtpConfig;
use crate::error::NodeError;

/// One client for every webhook: Web PKI roots, no redirects.
fn webhook_client(timeout: Duration) -> Result<&'static reqwest::Client, NodeError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
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
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .map_err(|e| NodeError::Internal(format!("webhook client: {e}")))?;
    Ok(CLIENT.get_or_init(|| client))
}

/// POST `body` as JSON to `url`; a 2xx answer is a delivery.
pub(crate) async fn webhook<T: Serialize>(
    url: &str,
    body: &T,
    timeout: Duration,
) -> Result<(), NodeError> {
    let r = webhook_client(timeout)?
        .post(url)
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
