//! Absolute-form requests to the proxy's own names (`claude-bottle.local`,
//! and `sidecar` as the sidecar adds it) are served like origin form: the
//! reverse proxy with the real credential, health, DLP, audit; anything
//! else `no-route`; never forwarded as ordinary egress. The same holds for
//! its own addresses on its listen port (and on that port only).
//!
//! Every proxy here has a route for any host and pins `sidecar` and
//! `claude-bottle.local` to a decoy upstream: were an own name treated as
//! an ordinary host, the request would reach the decoy.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::*;

const TOKEN: &str = "sk-ant-oat01-OWNNAMESREALTOKEN";
const SECRET: &str = "own-names-known-secret-Zq8Vx2Lm5Nw9Tb4K";
const SECRETS: &[(&str, &str)] = &[("T", TOKEN), ("S", SECRET)];

struct World {
    p: Running,
    /// The fake model API (`api.anthropic.com`).
    model: Recorder,
    /// Where `sidecar`, `claude-bottle.local` and `*.app.test` resolve.
    decoy: Recorder,
}

async fn world() -> World {
    let ca = TestCa::new("test upstream CA");
    let (model_addr, model) = https_upstream(&ca, &["api.anthropic.com"]).await;
    let (decoy_addr, decoy) = http_upstream().await;
    let p = Setup::new(format!(
        "allow: [{{host: '*', ports: [80, 443, 3128]}}]\n\
         tokens: [{{kind: anthropic, token_ref: T}}]\n\
         known_secret_env: [S]\n\
         resolve: {{api.anthropic.com: '{model_addr}', sidecar: '{decoy_addr}', \
         claude-bottle.local: '{decoy_addr}', app.test: '{decoy_addr}', \
         sidecar.app.test: '{decoy_addr}'}}"
    ))
    .secrets(SECRETS)
    .upstream_ca(&ca)
    .tweak(|c| c.own_names.add("sidecar").unwrap())
    .start()
    .await;
    World { p, model, decoy }
}

/// Claude Code's request, as it sends it with a placeholder credential.
fn messages(uri: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    req(
        "POST",
        uri,
        &[
            ("authorization", "Bearer cred-proxy-placeholder"),
            ("x-api-key", "cred-proxy-placeholder"),
            ("anthropic-beta", "oauth-2025-04-20"),
            ("content-type", "application/json"),
        ],
        r#"{"model":"claude","messages":[]}"#,
    )
}

#[tokio::test]
async fn absolute_form_anthropic_on_an_own_name_is_the_reverse_proxy() {
    let w = world().await;
    let uris = [
        "http://sidecar:3128/anthropic/v1/messages?beta=true",
        "http://SideCar.:3128/anthropic/v1/messages?beta=true",
        "http://claude-bottle.local/anthropic/v1/messages?beta=true",
    ];
    for (i, uri) in uris.iter().enumerate() {
        let mut c = client(w.p.addr).await;
        let (s, _, body) = send(&mut c, messages(uri)).await;
        assert_eq!((s, body.as_str()), (200, "hello /v1/messages"), "{uri}");
        let seen = &w.model.all()[i];
        assert_eq!(seen.uri, "/v1/messages?beta=true");
        assert_eq!(seen.headers["host"], "api.anthropic.com");
        let auth: Vec<_> = seen.headers.get_all("authorization").iter().collect();
        assert_eq!(auth, vec![format!("Bearer {TOKEN}").as_str()], "{uri}");
        assert!(seen.headers.get("x-api-key").is_none(), "{uri}");
        assert_eq!(seen.headers["anthropic-beta"], "oauth-2025-04-20");
        assert_eq!(seen.body, br#"{"model":"claude","messages":[]}"#);
    }
    assert_eq!(w.decoy.count(), 0, "an own name was forwarded");
    w.p.event_like(json!({"kind": "reverse", "decision": "allow",
        "host": "api.anthropic.com", "path": "/anthropic/v1/messages"}))
        .await;
    w.p.events_without(&[TOKEN]);
}

#[tokio::test]
async fn absolute_form_health_and_ca_on_an_own_name_are_the_proxys() {
    let w = world().await;
    let mut c = client(w.p.addr).await;
    for uri in [
        "http://sidecar:3128/health",
        "http://SIDECAR/health",
        "http://claude-bottle.local./health",
    ] {
        let (s, _, body) = send(&mut c, req("GET", uri, &[], "")).await;
        assert_eq!((s, body.as_str()), (200, "ok\n"), "{uri}");
    }
    let (s, _, body) = send(&mut c, req("GET", "http://sidecar:3128/ca.pem", &[], "")).await;
    assert_eq!((s, body.as_str()), (200, w.p.proxy.ca_pem()));
    assert_eq!(w.decoy.count(), 0, "an own name was forwarded");
    w.p.event_like(
        json!({"kind": "internal", "decision": "allow", "host": "sidecar",
        "path": "/health", "status": 200}),
    )
    .await;
}

#[tokio::test]
async fn unknown_paths_and_tunnels_on_own_names_are_no_route() {
    let w = world().await;
    for (uri, host) in [
        ("http://sidecar:3128/v1/messages", "sidecar"),
        ("http://sidecar:3128/anthropicx/v1", "sidecar"),
        ("http://claude-bottle.local/", "claude-bottle.local"),
        ("http://claude-bottle.local/healthz", "claude-bottle.local"),
    ] {
        let mut c = client(w.p.addr).await;
        let (s, h, body) = send(&mut c, req("GET", uri, &[], "")).await;
        assert_eq!(s, 403, "{uri}: {body}");
        assert_eq!(h["x-claude-bottle-block"], "no-route", "{uri}");
        assert_eq!(h["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["blocked"], true);
        assert_eq!(v["reason"], "no-route");
        assert_eq!(v["host"], host, "{uri}");
    }
    for authority in ["sidecar:443", "claude-bottle.local:443", "sidecar:3128"] {
        let (s, text, _) = connect(w.p.addr, authority).await;
        assert_eq!(s, 403, "{authority}: {text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("x-claude-bottle-block: no-route"),
            "{authority}: {text}"
        );
    }
    assert_eq!(w.decoy.count(), 0, "an own name was forwarded");
    assert_eq!(w.model.count(), 0);
    w.p.event_like(
        json!({"kind": "http", "decision": "block", "reason": "no-route",
        "host": "sidecar", "status": 403}),
    )
    .await;
    w.p.event_like(json!({"kind": "connect", "reason": "no-route", "host": "sidecar"}))
        .await;
}

#[tokio::test]
async fn dlp_blocks_a_secret_in_an_absolute_form_own_name_request() {
    let w = world().await;
    let in_url = req(
        "GET",
        &format!("http://sidecar:3128/anthropic/v1/models?q={SECRET}"),
        &[],
        "",
    );
    let mut in_header = messages("http://claude-bottle.local/anthropic/v1/messages");
    in_header
        .headers_mut()
        .insert("x-note", SECRET.parse().unwrap());
    let in_body = req(
        "POST",
        "http://sidecar:3128/anthropic/v1/messages",
        &[("content-type", "application/json")],
        &format!(r#"{{"messages":[{{"content":"{SECRET}"}}]}}"#),
    );
    for (what, r) in [("url", in_url), ("header", in_header), ("body", in_body)] {
        let mut c = client(w.p.addr).await;
        let (s, h, body) = send(&mut c, r).await;
        assert_eq!(s, 403, "{what}: {body}");
        assert_eq!(h["x-claude-bottle-block"], "dlp", "{what}");
        assert!(!body.contains(SECRET), "{what}: {body}");
    }
    // Nothing carrying the secret reached the model API (a refused body
    // may leave a request whose body never arrived whole).
    for seen in w.model.all() {
        let all = format!("{} {:?} {:?}", seen.uri, seen.headers, seen.body);
        assert!(!all.contains(SECRET), "{all}");
        assert!(
            !String::from_utf8_lossy(&seen.body).contains(SECRET),
            "{all}"
        );
    }
    assert_eq!(w.decoy.count(), 0, "an own name was forwarded");
    w.p.event_like(json!({"kind": "reverse", "decision": "block", "reason": "dlp"}))
        .await;
    w.p.events_without(&[SECRET, TOKEN]);
}

/// Only the own names themselves: a host that merely looks like one is an
/// ordinary destination, forwarded by its route with the agent's headers
/// as sent and no model credential.
#[tokio::test]
async fn only_own_names_are_served_by_the_proxy() {
    let w = world().await;
    let mut c = client(w.p.addr).await;
    let (s, _, _) = send(
        &mut c,
        messages("http://sidecar:3128/anthropic/v1/messages"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(w.model.count(), 1);
    for uri in [
        "http://app.test/anthropic/v1/messages",
        "http://sidecar.app.test/anthropic/v1/messages",
    ] {
        let mut c = client(w.p.addr).await;
        let (s, h, body) = send(&mut c, messages(uri)).await;
        assert_eq!(
            (s, body.as_str()),
            (200, "hello /anthropic/v1/messages"),
            "{uri}"
        );
        assert_eq!(h["x-upstream"], "yes");
    }
    let seen = w.decoy.all();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.uri, "/anthropic/v1/messages");
        assert_eq!(s.headers["authorization"], "Bearer cred-proxy-placeholder");
        assert_eq!(s.headers["x-api-key"], "cred-proxy-placeholder");
    }
    assert_eq!(seen[1].headers["host"], "sidecar.app.test");
    assert_eq!(
        w.model.count(),
        1,
        "only the own name reached the model API"
    );
    w.p.events_without(&[TOKEN]);
}

/// The proxy's own addresses, on its listen port, are own names too. Here
/// the proxy "listens" (as its configuration says) on a decoy's address,
/// `127.0.0.1:<decoy>`, and a route names that address and port: were an
/// own address treated as an ordinary host, the request would reach the
/// decoy. `10.9.8.7` is an added own address (the sidecar adds the one
/// its DNS answers with). `127.0.0.1:<other>` is another service on the
/// proxy's address (the sidecar's DNS, its git gate), which no route allows.
struct IpWorld {
    p: Running,
    model: Recorder,
    /// At the proxy's configured listen address.
    decoy: Recorder,
    decoy_port: u16,
    /// Another port on the proxy's address.
    other: Recorder,
    other_port: u16,
}

const OWN_IP: &str = "10.9.8.7";

async fn ip_world() -> IpWorld {
    let ca = TestCa::new("test upstream CA");
    let (model_addr, model) = https_upstream(&ca, &["api.anthropic.com"]).await;
    let (decoy_addr, decoy) = http_upstream().await;
    let (other_addr, other) = http_upstream().await;
    let decoy_port = decoy_addr.port();
    let p = Setup::new(format!(
        "allow: [{{host: '*', ports: [80, 443]}}, {{host: 127.0.0.1, ports: [{decoy_port}]}}]\n\
         tokens: [{{kind: anthropic, token_ref: T}}]\n\
         known_secret_env: [S]\n\
         resolve: {{api.anthropic.com: '{model_addr}'}}"
    ))
    .secrets(SECRETS)
    .upstream_ca(&ca)
    .tweak(move |c| {
        c.listen = decoy_addr;
        assert!(c.own_names.add_addr(OWN_IP.parse().unwrap()));
    })
    .start()
    .await;
    IpWorld {
        p,
        model,
        decoy,
        decoy_port,
        other,
        other_port: other_addr.port(),
    }
}

#[tokio::test]
async fn absolute_form_on_an_own_address_and_the_listen_port_is_served_like_origin_form() {
    let w = ip_world().await;
    let port = w.decoy_port;
    let mut c = client(w.p.addr).await;
    for uri in [
        format!("http://127.0.0.1:{port}/health"),
        format!("http://[::ffff:127.0.0.1]:{port}/health"),
        format!("http://{OWN_IP}:{port}/health"),
    ] {
        let (s, _, body) = send(&mut c, req("GET", &uri, &[], "")).await;
        assert_eq!((s, body.as_str()), (200, "ok\n"), "{uri}");
    }
    let uri = format!("http://{OWN_IP}:{port}/ca.pem");
    let (s, _, body) = send(&mut c, req("GET", &uri, &[], "")).await;
    assert_eq!((s, body.as_str()), (200, w.p.proxy.ca_pem()));
    for (i, ip) in ["127.0.0.1", OWN_IP].iter().enumerate() {
        let uri = format!("http://{ip}:{port}/anthropic/v1/messages?beta=true");
        let mut c = client(w.p.addr).await;
        let (s, _, body) = send(&mut c, messages(&uri)).await;
        assert_eq!((s, body.as_str()), (200, "hello /v1/messages"), "{uri}");
        let seen = &w.model.all()[i];
        assert_eq!(seen.uri, "/v1/messages?beta=true");
        assert_eq!(seen.headers["host"], "api.anthropic.com");
        let auth: Vec<_> = seen.headers.get_all("authorization").iter().collect();
        assert_eq!(auth, vec![format!("Bearer {TOKEN}").as_str()], "{uri}");
        assert!(seen.headers.get("x-api-key").is_none(), "{uri}");
    }
    assert_eq!(w.decoy.count(), 0, "an own address was forwarded");
    assert_eq!(w.other.count(), 0);
    w.p.event_like(
        json!({"kind": "internal", "decision": "allow", "host": OWN_IP,
        "path": "/health", "status": 200}),
    )
    .await;
    w.p.event_like(json!({"kind": "reverse", "decision": "allow",
        "host": "api.anthropic.com", "path": "/anthropic/v1/messages"}))
        .await;
    w.p.events_without(&[TOKEN]);
}

#[tokio::test]
async fn unknown_paths_and_tunnels_on_an_own_address_are_no_route() {
    let w = ip_world().await;
    let port = w.decoy_port;
    for (uri, host) in [
        (format!("http://127.0.0.1:{port}/"), "127.0.0.1"),
        (format!("http://127.0.0.1:{port}/v1/messages"), "127.0.0.1"),
        (format!("http://{OWN_IP}:{port}/healthz"), OWN_IP),
    ] {
        let mut c = client(w.p.addr).await;
        let (s, h, body) = send(&mut c, req("GET", &uri, &[], "")).await;
        assert_eq!(s, 403, "{uri}: {body}");
        assert_eq!(h["x-claude-bottle-block"], "no-route", "{uri}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["reason"], "no-route");
        assert_eq!(v["host"], host, "{uri}");
    }
    for authority in [format!("127.0.0.1:{port}"), format!("{OWN_IP}:{port}")] {
        let (s, text, _) = connect(w.p.addr, &authority).await;
        assert_eq!(s, 403, "{authority}: {text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("x-claude-bottle-block: no-route"),
            "{authority}: {text}"
        );
    }
    assert_eq!(w.decoy.count(), 0, "an own address was forwarded");
    assert_eq!(w.model.count(), 0);
    assert_eq!(w.p.net.connect_count(), 0);
    w.p.event_like(json!({"kind": "connect", "reason": "no-route", "host": OWN_IP}))
        .await;
}

/// An own address is the proxy on its listen port only: on any other port
/// (the sidecar's DNS on 53, its git gate) it is an ordinary destination,
/// an IP literal refused as before unless a route names it, never a way
/// around the routes.
#[tokio::test]
async fn an_own_address_on_another_port_is_not_the_proxy() {
    let w = ip_world().await;
    let port = w.decoy_port;
    let other = w.other_port;
    // The listen port is the proxy...
    let mut c = client(w.p.addr).await;
    let uri = format!("http://{OWN_IP}:{port}/health");
    let (s, _, body) = send(&mut c, req("GET", &uri, &[], "")).await;
    assert_eq!((s, body.as_str()), (200, "ok\n"), "{uri}");
    // ...no other port is.
    for (uri, reason) in [
        (format!("http://127.0.0.1:{other}/health"), "port"),
        (
            format!("http://127.0.0.1:{other}/anthropic/v1/messages"),
            "port",
        ),
        (format!("http://{OWN_IP}:{other}/health"), "ip-literal"),
        (format!("http://{OWN_IP}:53/health"), "ip-literal"),
        (format!("http://{OWN_IP}:8418/health"), "ip-literal"),
        (format!("http://{OWN_IP}/health"), "ip-literal"),
    ] {
        let mut c = client(w.p.addr).await;
        let (s, h, body) = send(&mut c, messages(&uri)).await;
        assert_eq!(s, 403, "{uri}: {body}");
        assert_eq!(h["x-claude-bottle-block"], reason, "{uri}");
    }
    for (authority, reason) in [
        (format!("127.0.0.1:{other}"), "port"),
        (format!("{OWN_IP}:{other}"), "ip-literal"),
        (format!("{OWN_IP}:8418"), "ip-literal"),
        (format!("{OWN_IP}:443"), "ip-literal"),
    ] {
        let (s, text, _) = connect(w.p.addr, &authority).await;
        assert_eq!(s, 403, "{authority}: {text}");
        let header = format!("x-claude-bottle-block: {reason}");
        assert!(
            text.to_ascii_lowercase().contains(&header),
            "{authority}: {text}"
        );
    }
    assert_eq!(
        w.other.count(),
        0,
        "another port on an own address was reached"
    );
    assert_eq!(w.decoy.count(), 0);
    assert_eq!(w.model.count(), 0, "another port got the model credential");
    assert_eq!(w.p.net.connect_count(), 0);
}

/// The proxy's concrete listen address, where it really listens, is its
/// own (the standalone proxy on `127.0.0.1:3128`); a wildcard listen
/// address makes no address its own, loopback included.
#[tokio::test]
async fn the_concrete_listen_address_is_own_and_a_wildcard_is_not() {
    let p = Setup::new("allow: []").start().await;
    let mut c = client(p.addr).await;
    let uri = format!("http://{}/health", p.addr);
    let (s, _, body) = send(&mut c, req("GET", &uri, &[], "")).await;
    assert_eq!((s, body.as_str()), (200, "ok\n"), "{uri}");

    let p = Setup::new("allow: []")
        .tweak(|c| c.listen.set_ip("0.0.0.0".parse().unwrap()))
        .start()
        .await;
    let port = p.addr.port();
    for uri in [
        format!("http://127.0.0.1:{port}/health"),
        format!("http://0.0.0.0:{port}/health"),
        format!("http://[::1]:{port}/health"),
    ] {
        let mut c = client(p.addr).await;
        let (s, h, body) = send(&mut c, req("GET", &uri, &[], "")).await;
        assert_eq!(s, 403, "{uri}: {body}");
        assert_eq!(h["x-claude-bottle-block"], "ip-literal", "{uri}");
    }
    assert_eq!(p.net.connect_count(), 0);
}
