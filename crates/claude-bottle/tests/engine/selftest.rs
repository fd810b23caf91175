//! `doctor --self-test` (cli.md): a throw-away bottle attacked by the CLI's
//! own probe; every check enforced, nothing left. And the probe is not
//! blind: in a container that has a route and holds the token, it reports
//! both.

use std::net::TcpListener;
use std::process::Command;

use super::bottle::{Home, leftovers};

#[test]
fn self_test_enforces_every_check_and_leaves_nothing() {
    if !super::images_ready("self_test_enforces_every_check_and_leaves_nothing") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("probe-selftest");
    let out = h.cli(&["doctor", "--self-test"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for check in [
        "enforced     no route out:",
        "enforced     DNS refused:",
        "enforced     denied host refused:",
        "enforced     no token in the agent:",
        "enforced     no route out (host listener):",
        "enforced     sidecar death means no egress:",
    ] {
        assert!(err.contains(check), "{check}\n{err}");
    }
    assert!(err.contains("self-test: all 6 checks enforced"), "{err}");
    assert!(!err.contains("NOT ENFORCED"), "{err}");
    assert_eq!(leftovers(&h.run), Vec::<String>::new());
    let home = h.bottle_home();
    let left: Vec<_> = std::fs::read_dir(&home)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("self-test"))
        .collect();
    assert!(left.is_empty(), "the throw-away home is removed: {left:?}");
}

#[test]
fn the_probe_sees_a_route_and_a_token_when_there_are_some() {
    if !super::images_ready("the_probe_sees_a_route_and_a_token_when_there_are_some") {
        return;
    }
    let world = super::world::World::start();
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // A container on the default bridge reaches the host at 172.17.0.1,
    // and holds the token in its environment.
    use sha2::Digest;
    let token = "sk-ant-oat01-selftest-planted-0123456789abcdef";
    let sha: String = sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let spec = serde_json::json!({
        "host_addrs": ["172.17.0.1"],
        "port": port,
        "sidecar": world.ip,
        "token": {"prefix": &token[..16], "len": token.len(), "sha256": sha},
    });
    let exe = env!("CARGO_BIN_EXE_claude-bottle");
    let o = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "bridge",
            "--dns",
            &world.ip,
            "--label",
            "io.claude-bottle.test-world=probe",
            "-e",
            &format!("PLANTED={token}"),
            "-v",
            &format!("{exe}:/probe:ro"),
            "claude-bottle-test/base:bookworm",
            "/probe",
            "self-test-probe",
            "live",
            &spec.to_string(),
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let check = |name: &str| {
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["check"] == name)
            .unwrap_or_else(|| panic!("{name}: {out}\n{}", String::from_utf8_lossy(&o.stderr)))
    };
    let held = check("no token in the agent");
    assert_eq!(held["enforced"], false, "{held}");
    assert!(
        held["detail"].as_str().unwrap().contains("environment"),
        "{held}"
    );
    let route = check("no route out");
    assert_eq!(route["enforced"], false, "{route}");
    assert!(
        route["detail"].as_str().unwrap().contains("172.17.0.1"),
        "{route}"
    );
}
