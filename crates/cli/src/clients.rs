//! `keyquorum client`: client identities (Ed25519 key pairs made here, the
//! public key registered with the cluster) and the signature fields of a
//! request for other HTTP tools.

use anyhow::{anyhow, bail, Context, Result};
use keyquorum_client::ClientKey;
use keyquorum_wire::api::CreateClientRequest;
use keyquorum_wire::Hex32;
use rand_core::{OsRng, RngCore};
use serde_json::json;

use crate::cluster::{client, load_key, print_json, write_secret_file};
use crate::{ClientCommand, Remote};

/// `keyquorum client ...`.
pub(crate) async fn run(remote: &Remote, command: ClientCommand, json: bool) -> Result<()> {
    if let ClientCommand::Sign {
        url,
        method,
        body_file,
        content_type,
    } = command
    {
        return sign_fields(remote, url, method, body_file, content_type, json);
    }
    let c = client(remote)?;
    match command {
        ClientCommand::Sign { .. } => Ok(()),
        ClientCommand::Create {
            name,
            admin,
            operator,
            sign,
            recovery,
            key_out,
            expires,
        } => {
            let expires_ms = expires
                .map(|e| -> Result<u64> {
                    let ms = parse_duration_ms(&e)?;
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)?
                        .as_millis();
                    Ok(u64::try_from(now)?.saturating_add(ms))
                })
                .transpose()?;
            // The key pair is made here; the private key is written before
            // the public key is registered, so a registered key is never lost.
            let key = ClientKey::generate(name.clone(), &mut OsRng);
            write_secret_file(&key_out, key.to_pkcs8_pem()?.as_bytes())?;
            let created = c
                .create_client(&CreateClientRequest {
                    name,
                    public_key: Hex32(key.public_key()),
                    admin,
                    operator,
                    sign_keys: sign,
                    recovery,
                    expires_ms,
                })
                .await;
            let created = match created {
                Ok(v) => v,
                // Refused: nothing was registered, the key is useless.
                Err(
                    e @ keyquorum_client::ClientError::Api {
                        status: 400..=499, ..
                    },
                ) => {
                    let _ = std::fs::remove_file(&key_out);
                    return Err(e.into());
                }
                // Unknown outcome (a time-out, a lost leader): the client
                // may be registered, so its key stays.
                Err(e) => {
                    return Err(anyhow!(
                        "{e}; the key is kept in {} in case the client was registered \
                         (see `keyquorum client list`)",
                        key_out.display()
                    ))
                }
            };
            if json {
                print_json(&json!({
                    "name": created.name,
                    "key_id": created.key_id,
                    "public_key": created.public_key,
                    "key_file": key_out,
                    "expires_ms": expires_ms,
                }))
            } else {
                println!(
                    "client {} registered; its private key is in {}\n  key id     {}\n  public key {}",
                    created.name,
                    key_out.display(),
                    created.key_id,
                    created.public_key
                );
                Ok(())
            }
        }
        ClientCommand::Revoke { name } => {
            let r = c.revoke_client(&name).await?;
            if json {
                print_json(&serde_json::to_value(&r)?)
            } else {
                println!("client {} revoked", r.grant.name);
                Ok(())
            }
        }
        ClientCommand::List => {
            let list = c.list_clients().await?;
            if json {
                print_json(&serde_json::to_value(&list)?)
            } else {
                for r in &list.clients {
                    println!(
                        "{}  {}{}{}  sign {:?}{}",
                        r.grant.name,
                        if r.grant.admin { "admin " } else { "" },
                        if r.grant.operator { "operator " } else { "" },
                        if r.revoked { "REVOKED " } else { "" },
                        r.grant.sign_keys,
                        r.expires_ms
                            .map(|t| format!("  expires {t} ms"))
                            .unwrap_or_default(),
                    );
                }
                Ok(())
            }
        }
    }
}

/// `keyquorum client sign`: the signature fields for a request someone
/// else sends.
fn sign_fields(
    remote: &Remote,
    url: String,
    method: String,
    body_file: Option<std::path::PathBuf>,
    content_type: Option<String>,
    json: bool,
) -> Result<()> {
    let Some(key_file) = &remote.key_file else {
        bail!("no client key: set KEYQUORUM_KEY_FILE and KEYQUORUM_KEY_ID or pass --key-file");
    };
    let me = load_key(key_file, &remote.key_id)?;
    let body = match body_file {
        None => Vec::new(),
        Some(p) if p.as_os_str() == "-" => {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
            b
        }
        Some(p) => std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
    };
    let mut req = keyquorum_core::httpsig::Request {
        method: method.to_ascii_uppercase(),
        target_uri: url,
        headers: content_type
            .map(|t| vec![("content-type".to_string(), t)])
            .unwrap_or_default(),
        body,
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut nonce = [0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    me.sign(&mut req, created, &hex::encode(nonce))?;
    let fields: Vec<(&str, String)> = ["Content-Digest", "Signature-Input", "Signature"]
        .into_iter()
        .filter_map(|f| req.field(f).map(|v| (f, v)))
        .collect();
    if json {
        let map: serde_json::Map<String, serde_json::Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect();
        print_json(&serde_json::Value::Object(map))
    } else {
        for (k, v) in fields {
            println!("{k}: {v}");
        }
        Ok(())
    }
}

/// `90d`, `12h`, `30m`, `600s` (or plain seconds) in milliseconds.
fn parse_duration_ms(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a duration like 90d, 12h, 30m or 600s"))?;
    let unit_ms: u64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("{s:?}: the unit is one of s, m, h, d"),
    };
    n.checked_mul(unit_ms).context("the duration is too long")
}
