use std::path::PathBuf;

use super::*;

const LOG: &str = r#"ready proxy 0.0.0.0:3128, dns 0.0.0.0:53
{"ts":"2026-01-05T10:00:00.001Z","kind":"connect","decision":"allow","rule":"api.anthropic.com","host":"api.anthropic.com","method":"CONNECT","bytes":10,"ms":3}
{"ts":"2026-01-05T10:00:00.002Z","kind":"http","decision":"allow","rule":"allowed.test","host":"allowed.test","method":"GET","path":"/","status":200,"bytes":10,"ms":3}
{"ts":"2026-01-05T10:00:00.003Z","kind":"connect","decision":"allow","rule":"api.anthropic.com","host":"api.anthropic.com","method":"CONNECT","bytes":10,"ms":3}
{"ts":"2026-01-05T10:00:00.004Z","kind":"http","decision":"block","reason":"no-route","host":"denied.example","method":"GET","path":"/","status":403,"bytes":0,"ms":0}
{"ts":"2026-01-05T10:00:00.005Z","kind":"connect","decision":"block","reason":"no-route","host":"evil.example:443","method":"CONNECT","status":403,"bytes":0,"ms":0}
{"ts":"2026-01-05T10:00:00.006Z","kind":"http","decision":"block","reason":"method","rule":"allowed.test","host":"allowed.test","method":"POST","path":"/x","status":403,"bytes":0,"ms":0}
{"ts":"2026-01-05T10:00:00.007Z","kind":"http","decision":"block","reason":"dlp","rule":"github-pat","host":"paste.example","method":"POST","path":"/","status":403,"bytes":0,"ms":0}
{"ts":"2026-01-05T10:00:00.007Z","kind":"http","decision":"block","reason":"upstream-error","rule":"allowed.test","host":"allowed.test","method":"GET","path":"/down","status":502,"bytes":0,"ms":7}
{"ts":"2026-01-05T10:00:00.008Z","kind":"dns","decision":"block","reason":"dns-refused","host":"c2VjcmV0.attacker.example","bytes":0,"ms":0}
{"ts":"2026-01-05T10:00:00.009Z","kind":"git-push","decision":"allow","host":"github.com","repo":"app","method":"POST","path":"/app.git/git-receive-pack","bytes":0,"ms":0}
{"ts":"2026-01-05T10:00:00.010Z","kind":"git-push","decision":"block","reason":"git-secret","host":"github.com","repo":"app","message":"commit abc: a secret","bytes":0,"ms":0}
"#;

fn events() -> Vec<AuditEvent> {
    LOG.lines().filter_map(AuditEvent::parse).collect()
}

fn tally() -> Tally {
    let mut t = Tally::default();
    for e in events() {
        t.add(&e);
    }
    t
}

#[test]
fn only_events_parse() {
    assert_eq!(events().len(), 11);
    assert_eq!(AuditEvent::parse("ready proxy"), None);
    assert_eq!(AuditEvent::parse(r#"{"kind":"http"}"#), None, "no decision");
    assert_eq!(AuditEvent::parse("[]"), None);
}

#[test]
fn summary_names_counts_places_and_routes() {
    let saved = Saved {
        outbox: Some(PathBuf::from(
            "/home/u/.claude-bottle/outbox/dev-1-20260105T100001Z",
        )),
        outbox_files: 2,
        outbox_checked: true,
        log: Some(PathBuf::from(
            "/home/u/.claude-bottle/logs/dev-1-20260105T100001Z.jsonl",
        )),
        bottle: Some("dev".into()),
    };
    insta::assert_snapshot!("summary_full", render("dev-1", &tally(), &saved));
}

#[test]
fn summary_of_a_quiet_bottle() {
    let saved = Saved {
        log: Some(PathBuf::from("/h/logs/x.jsonl")),
        outbox_checked: true,
        ..Default::default()
    };
    insta::assert_snapshot!("summary_quiet", render("x", &Tally::default(), &saved));
}

/// A flood the sidecar counted instead of writing still counts.
#[test]
fn refusals_over_the_rate_limit_count() {
    let log = r#"{"ts":"t","kind":"dns","decision":"block","reason":"dns-refused","host":"a.example"}
{"ts":"t","kind":"internal","decision":"block","reason":"dns-refused","rule":"rate-limit:dns","count":5000}
{"ts":"t","kind":"internal","decision":"block","reason":"no-route","rule":"rate-limit:http","count":7}
{"ts":"t","kind":"internal","decision":"block","reason":"no-route","rule":"something-else","count":9}
{"ts":"t","kind":"internal","decision":"block","reason":"timeout","rule":"rate-limit:connect","count":3}
{"ts":"t","kind":"internal","decision":"allow","rule":"rate-limit:connect","count":11}
{"ts":"t","kind":"internal","decision":"allow","rule":"rate-limit:internal","count":99}"#;
    let mut t = Tally::default();
    let events: Vec<AuditEvent> = log.lines().filter_map(AuditEvent::parse).collect();
    for e in &events {
        t.add(e);
    }
    assert_eq!(t.dns_refused.total, 5001);
    assert_eq!(t.refused.total, 7);
    assert_eq!(t.failed.total, 3);
    assert_eq!(t.allowed.total, 11, "health checks are not requests");
    assert_eq!(
        t.dns_refused.line(),
        "5001 ((not logged) 5000, a.example 1)"
    );
    assert!(
        events[1]
            .line()
            .ends_with("reason=dns-refused rule=rate-limit:dns count=5000")
    );
}

#[test]
fn event_lines() {
    let lines: Vec<String> = events().iter().map(AuditEvent::line).collect();
    insta::assert_snapshot!("event_lines", lines.join("\n"));
}

#[test]
fn hosts_are_bounded_and_ranked() {
    let mut t = Tally::default();
    for _ in 0..3 {
        t.add(
            &AuditEvent::parse(
                r#"{"kind":"http","decision":"block","reason":"no-route","host":"top.example"}"#,
            )
            .unwrap(),
        );
    }
    for i in 0..(MAX_HOSTS + 10) {
        let line = format!(
            r#"{{"kind":"http","decision":"block","reason":"no-route","host":"h{i}.example"}}"#
        );
        t.add(&AuditEvent::parse(&line).unwrap());
    }
    assert_eq!(t.refused.by_host.len(), MAX_HOSTS);
    assert_eq!(t.refused.total, MAX_HOSTS as u64 + 13);
    let line = t.refused.line();
    assert!(
        line.starts_with(&format!("{} (top.example 3, h0.example 1,", MAX_HOSTS + 13)),
        "{line}"
    );
    assert!(
        line.ends_with(&format!("+{} more and others)", MAX_HOSTS - 5)),
        "{line}"
    );
    let text = render("s", &t, &Saved::default());
    assert_eq!(text.matches("hint: to allow").count(), 5, "{text}");
    assert!(
        text.contains("more refused hosts; `claude-bottle logs s`"),
        "{text}"
    );
    assert!(text.contains("in the bottle"), "{text}");
}

#[test]
fn ports_and_control_characters() {
    assert_eq!(strip_port("evil.example:443"), "evil.example");
    assert_eq!(strip_port("[::1]:443"), "[::1]");
    assert_eq!(strip_port("::1"), "::1");
    assert_eq!(strip_port("plain.example"), "plain.example");
    let e = AuditEvent::parse(
        r#"{"ts":"\u001b]0;t\u0007","kind":"http\u001b[2J","decision":"block\r","host":"a\u001b[31m.example","path":"/\u0007"}"#,
    )
    .unwrap();
    let line = e.line();
    assert!(!line.chars().any(char::is_control), "{line:?}");
    assert!(line.contains(r"a\u{1b}[31m.example/\u{7}"), "{line}");
}

/// Attack: the agent asks for `*.trycloudflare.com` (a legal authority to
/// the proxy) so that the summary tells the user to allow every name
/// anyone can register there. Hints are given only for hosts a route
/// would name as written; an IPv6 address is quoted (`[::1]` is a YAML
/// list).
#[test]
fn hints_are_given_for_plain_hosts_only() {
    let refusal = |host: &str| {
        let mut t = Tally::default();
        let line = format!(
            r#"{{"kind":"connect","decision":"block","reason":"no-route","host":"{host}"}}"#
        );
        t.add(&AuditEvent::parse(&line).unwrap());
        render("s", &t, &Saved::default())
    };
    for host in ["*.trycloudflare.com:443", "*:443", "Evil.Example", "a..b"] {
        let text = refusal(host);
        assert!(!text.contains("hint: to allow"), "{host}: {text}");
    }
    let text = refusal("ok.example:443");
    assert!(text.contains("add `- host: ok.example`"), "{text}");
    let text = refusal("[2001:db8::1]:443");
    assert!(text.contains("add `- host: \"2001:db8::1\"`"), "{text}");
    let text = refusal("10.0.0.1:80");
    assert!(text.contains("add `- host: 10.0.0.1`"), "{text}");
}

/// Attack (a compromised sidecar): hosts of a megabyte each, to fill the
/// summary and the CLI's memory at teardown. They are counted, not named.
#[test]
fn long_hosts_are_counted_not_named() {
    let mut t = Tally::default();
    let long = "a".repeat(400);
    for i in 0..3 {
        let line = format!(
            r#"{{"kind":"http","decision":"block","reason":"no-route","host":"{long}{i}.example"}}"#
        );
        t.add(&AuditEvent::parse(&line).unwrap());
    }
    assert_eq!(t.refused.total, 3);
    assert!(t.refused.by_host.is_empty() && t.refusals.is_empty());
    let text = render("s", &t, &Saved::default());
    assert!(!text.contains(&long), "{text}");
}
