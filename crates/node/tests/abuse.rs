#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub,
    reason = "integration tests: a failed unwrap is a failed test"
)]
//! Abuse load (issue #18 item 7): a bounded flood of unauthenticated,
//! wrongly signed, malformed and oversized requests, strangers on the peer
//! endpoint, and idle connections, against a 3-node cluster. The replicated
//! state is unchanged by it, the audit log records none of it, every
//! refusal is counted, and the API goes on answering an authorized client
//! (signing included) throughout. The probe latencies before and during
//! the flood are printed (run with `--nocapture`) for RELIABILITY.md,
//! never asserted.
//!
//! `KEYQUORUM_ABUSE_REQUESTS` sets the flood's size (default 5,000
//! requests, and a tenth as many idle connections).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cluster, n, sign_and_check};
use futures::StreamExt;
use keyquorum_client::Client;
use keyquorum_node::cluster::peer::PEER_PATH;
use keyquorum_node::Node;
use keyquorum_wire::api::SuiteName;
use serde_json::Value;

/// Everything replicated that a flood could change, as JSON: keys,
/// clients, messaging, membership, operators.
fn replicated(node: &Node) -> Value {
    node.registry(|r| {
        serde_json::json!({
            "keys": serde_json::to_value(&r.keys.records).unwrap(),
            "clients": serde_json::to_value(&r.clients).unwrap(),
            "msg": serde_json::to_value(&r.msg).unwrap(),
            "members": serde_json::to_value(&r.members).unwrap(),
            "voters": serde_json::to_value(&r.voters).unwrap(),
            "operators": serde_json::to_value(&r.operators).unwrap(),
        })
    })
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// One abusive request of kind `i % 6`; returns the status (or 0 when the
/// node closed the connection, which is a refusal too).
async fn abuse(http: &reqwest::Client, url: &str, i: usize) -> u16 {
    let r = match i % 6 {
        // Unsigned.
        0 => http.get(format!("{url}/v1/keys")).send().await,
        // A signature that does not parse.
        1 => {
            http.get(format!("{url}/v1/keys"))
                .header("signature-input", "sig1=(\"@method\");keyid=\"x\"")
                .header("signature", "sig1=:AAAA:")
                .send()
                .await
        }
        // Malformed JSON, unsigned.
        2 => {
            http.post(format!("{url}/v1/keys"))
                .header("content-type", "application/json")
                .body("{\"name\": ")
                .send()
                .await
        }
        // Oversized body.
        3 => {
            http.post(format!("{url}/v1/keys/k/sign"))
                .header("content-type", "application/json")
                .body(vec![b'0'; 2 << 20])
                .send()
                .await
        }
        // A stranger on the peer endpoint.
        4 => {
            http.post(format!("{url}{PEER_PATH}"))
                .header("content-type", "application/json")
                .body("{\"from\": 1}")
                .send()
                .await
        }
        // A path and method that exist nowhere.
        _ => http.delete(format!("{url}/v1/nothing/here")).send().await,
    };
    match r {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_requests_and_idle_connections_changes_nothing_and_the_api_answers() {
    let total: usize = std::env::var("KEYQUORUM_ABUSE_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let (_dir, c) = cluster(3, 2, 0).await;
    let url = c.url_of(n(1));
    let admin = Client::new(&url, &c.admin, c.ca_pem().as_bytes()).unwrap();
    let key = admin
        .create_key(&common::create("k", SuiteName::Ed25519, 2, None))
        .await
        .unwrap();
    sign_and_check(&admin, &key, b"before").await;
    let nodes: Vec<Node> = (1..=3).map(|i| c.node(n(i)).unwrap()).collect();
    for node in &nodes {
        common::poll(
            "every node to have the key",
            Duration::from_secs(20),
            || {
                let node = node.clone();
                async move { node.registry(|r| r.keys.records.contains_key("k")) }
            },
        )
        .await;
    }
    let before: Vec<Value> = nodes.iter().map(replicated).collect();
    let audit_before = common::audit_entries(&admin).await.len();
    let refused0: u64 = nodes
        .iter()
        .map(|n| n.metrics().refused_unauthenticated.load(Ordering::Relaxed))
        .sum();

    // The authorized client's latency without the flood.
    let mut baseline = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        admin.list_keys().await.unwrap();
        baseline.push(t.elapsed());
    }

    // Idle connections, held through the flood: a TCP connection that
    // never starts TLS, to each node.
    let mut idle = Vec::new();
    for i in 1..=3 {
        let addr = reqwest::Url::parse(&c.url_of(n(i))).unwrap();
        let addr = format!(
            "{}:{}",
            addr.host_str().unwrap(),
            addr.port_or_known_default().unwrap()
        );
        for _ in 0..(total / 10 / 3) {
            if let Ok(s) = tokio::net::TcpStream::connect(&addr).await {
                idle.push(s);
            }
        }
    }

    // The flood, spread over the three nodes, 16 at a time; meanwhile the
    // authorized client lists keys and signs.
    let http = keyquorum_client::http_client(c.ca_pem().as_bytes()).unwrap();
    let urls: Vec<String> = (1..=3).map(|i| c.url_of(n(i))).collect();
    let flooding = Arc::new(AtomicBool::new(true));
    let probe = {
        let admin = admin.clone();
        let key = key.clone();
        let flooding = flooding.clone();
        tokio::spawn(async move {
            let mut during = Vec::new();
            let mut signed = 0usize;
            while flooding.load(Ordering::Relaxed) {
                let t = Instant::now();
                admin
                    .list_keys()
                    .await
                    .expect("an authorized read during the flood");
                during.push(t.elapsed());
                if during.len() % 10 == 0 {
                    sign_and_check(&admin, &key, format!("during {signed}").as_bytes()).await;
                    signed += 1;
                }
            }
            (during, signed)
        })
    };
    let statuses: Vec<u16> = futures::stream::iter(0..total)
        .map(|i| {
            let http = http.clone();
            let url = urls[i % 3].clone();
            async move { abuse(&http, &url, i).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    flooding.store(false, Ordering::Relaxed);
    let (during, signed) = probe.await.unwrap();
    drop(idle);

    // Every abusive request was refused: a 4xx, or the connection closed
    // on it (an oversized body may be cut off).
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for s in &statuses {
        *by_status.entry(*s).or_default() += 1;
    }
    assert!(
        statuses.iter().all(|s| *s == 0 || (400..500).contains(s)),
        "{by_status:?}"
    );
    assert!(
        !during.is_empty() && signed > 0,
        "no probe ran during the flood"
    );

    // Nothing replicated changed on any node (the probes' signatures change
    // nothing replicated either).
    for (node, before) in nodes.iter().zip(&before) {
        assert_eq!(&replicated(node), before, "node {}", node.id());
    }
    // The audit log holds the probes and nothing of the flood.
    let entries = common::audit_entries(&admin).await;
    let added = &entries[audit_before..];
    assert!(
        added
            .iter()
            .all(|e| e["event"]["actor"] == "admin" && e["event"]["outcome"] == "ok"),
        "{:?}",
        added
            .iter()
            .find(|e| e["event"]["actor"] != "admin" || e["event"]["outcome"] != "ok")
    );
    // Unauthenticated refusals are counted: the unsigned, the wrongly
    // signed, the malformed and the oversized (the peer strangers are
    // counted as peer rejections, the unknown paths as nothing).
    let refused: u64 = nodes
        .iter()
        .map(|n| n.metrics().refused_unauthenticated.load(Ordering::Relaxed))
        .sum();
    assert!(
        refused - refused0 >= (total / 6 * 4) as u64,
        "only {} unauthenticated refusals counted",
        refused - refused0
    );

    let (b50, b99) = (
        percentile(baseline.clone(), 0.5),
        percentile(baseline, 0.99),
    );
    let (d50, d99) = (
        percentile(during.clone(), 0.5),
        percentile(during.clone(), 0.99),
    );
    println!(
        "abuse: {total} requests ({by_status:?}), {} idle connections; authorized reads \
         p50 {b50:?} -> {d50:?} ({:.2}x), p99 {b99:?} -> {d99:?} ({:.2}x); {} reads and {signed} \
         signatures during the flood",
        total / 10 / 3 * 3,
        d50.as_secs_f64() / b50.as_secs_f64(),
        d99.as_secs_f64() / b99.as_secs_f64(),
        during.len(),
    );
    c.shutdown().await;
}
