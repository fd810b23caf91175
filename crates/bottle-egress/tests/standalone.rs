//! The standalone entry point and the DNS responder on real sockets (loopback).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use bottle_egress::audit::Audit;
use bottle_egress::config::AuditTarget;
use bottle_egress::dns::Responder;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs the standalone proxy with `config` (JSON, `audit.jsonl` as its
/// audit file) until `traffic` has run against it; the audit file after a
/// clean stop.
fn standalone_audit<F: std::future::Future<Output = ()>>(
    config: &str,
    traffic: impl FnOnce(std::net::SocketAddr) -> F,
) -> String {
    init();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.json");
    std::fs::write(&cfg, config).unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let cfg2 = cfg.clone();
    let t = std::thread::spawn(move || {
        bottle_egress::standalone::run_until(
            &cfg2,
            None,
            async move {
                let _ = stop_rx.await;
            },
            move |a| addr_tx.send(a).unwrap(),
        )
    });
    let addr = addr_rx.recv().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(traffic(addr));
    stop_tx.send(()).unwrap();
    t.join().unwrap().unwrap();
    // Relative audit path: next to the config file.
    std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap()
}

#[test]
fn standalone_serves_until_told_to_stop_and_exits_cleanly() {
    let audit = standalone_audit(
        r#"{"listen": "127.0.0.1:0", "allow": [], "audit": "audit.jsonl"}"#,
        |addr| async move {
            let mut c = client(addr).await;
            let (s, _, _) = send(
                &mut c,
                req("GET", "http://claude-bottle.local/health", &[], ""),
            )
            .await;
            assert_eq!(s, 200);
            let (s, _, _) = send(&mut c, req("GET", "http://nope.test/", &[], "")).await;
            assert_eq!(s, 403);
        },
    );
    assert!(audit.contains(r#""reason":"no-route""#), "{audit}");
}

/// Attack: a burst of refusals over the rate limit right before the
/// proxy stops. The counts of the last second are written at the stop,
/// not lost with the process: every refusal is in the log, as an event
/// of its own or in a count.
#[test]
fn refusals_held_back_are_counted_when_the_proxy_stops() {
    const REFUSED: u64 = 300;
    let audit = standalone_audit(
        r#"{"listen": "127.0.0.1:0", "allow": [], "audit": "audit.jsonl"}"#,
        |addr| async move {
            let mut c = client(addr).await;
            for i in 0..REFUSED {
                let url = format!("http://nope{i}.test/");
                let (s, _, _) = send(&mut c, req("GET", &url, &[], "")).await;
                assert_eq!(s, 403);
            }
        },
    );
    let events: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let written = events
        .iter()
        .filter(|e| e["reason"] == "no-route" && e["count"].is_null())
        .count() as u64;
    let counted: u64 = events
        .iter()
        .filter(|e| e["rule"] == "rate-limit:http")
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        written + counted,
        REFUSED,
        "{written} written, {counted} counted"
    );
}

#[test]
fn standalone_reports_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.yaml");
    std::fs::write(&cfg, "allow: []\nbogus: 1\n").unwrap();
    let e = bottle_egress::run_standalone(&cfg, None).unwrap_err();
    assert!(e.to_string().contains("bogus"), "{e}");
}

#[tokio::test]
async fn dns_over_udp_and_tcp_answers_own_names_only() {
    let (audit, log) = Audit::open(&AuditTarget::Memory, true).unwrap();
    let mut names = HashMap::new();
    names.insert("sidecar".to_string(), "10.9.8.7".parse().unwrap());
    let r = Arc::new(Responder::new(names, audit, None));
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_addr = udp.local_addr().unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    tokio::spawn(r.clone().serve_udp(udp, std::future::pending()));
    tokio::spawn(r.serve_tcp(tcp, std::future::pending()));

    let c = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.connect(udp_addr).await.unwrap();
    // Garbage first: the responder must survive it.
    c.send(b"\xff\xff\xff").await.unwrap();
    c.send(&bottle_egress::dns::query(0x1234, "sidecar", 1))
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = c.recv(&mut buf).await.unwrap();
    assert_eq!(&buf[n - 4..n], &[10, 9, 8, 7]);
    c.send(&bottle_egress::dns::query(
        0x1234,
        "secret.attacker.example",
        1,
    ))
    .await
    .unwrap();
    let n = c.recv(&mut buf).await.unwrap();
    assert_eq!(buf[3] & 0x0f, 3, "NXDOMAIN");
    assert!(n >= 12);

    let mut s = tokio::net::TcpStream::connect(tcp_addr).await.unwrap();
    let q = bottle_egress::dns::query(0x1234, "other.example", 1);
    s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&q).await.unwrap();
    let len = s.read_u16().await.unwrap();
    let mut a = vec![0u8; len as usize];
    s.read_exact(&mut a).await.unwrap();
    assert_eq!(a[3] & 0x0f, 3);
    let ev = log.unwrap().events();
    assert_eq!(
        ev.iter().filter(|e| e["reason"] == "dns-refused").count(),
        2
    );
}
