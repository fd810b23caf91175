//! Parsing and merging, end to end over text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::bottle::{self, EnvValue, Scheme, Tls, TokenKind, TokenRef};
use crate::{Error, ErrorKind, Source, agent, merge};

const HOME: &str = "/home/u";

fn bottle_file(name: &str) -> PathBuf {
    PathBuf::from(format!("/home/u/.claude-bottle/bottles/{name}.md"))
}

fn parse_bottle(text: &str) -> Result<bottle::Bottle, Error> {
    bottle::parse("dev", &bottle_file("dev"), Path::new(HOME), text)
}

fn parse_agent(text: &str) -> Result<crate::Agent, Error> {
    agent::parse(
        "rev",
        Path::new("/p/.claude-bottle/agents/rev.md"),
        Source::Project,
        Path::new(HOME),
        text,
    )
}

const FULL: &str = r#"---
extends: base
image: my/agent:1
env:
  EDITOR: vim
  N: 3
  B: true
  Y: yes
  PIN: "0123"
  OCT: 0755
  NPM_TOKEN: ${NPM_TOKEN}
  DB_PASSWORD: "?"
  Q: "?Your database password"
  ODD: {literal: "?not a question ${NOT_EXPANDED}"}
tokens:
  - kind: anthropic
    token_ref: CLAUDE_BOTTLE_OAUTH_TOKEN
  - kind: http
    host: api.github.com
    scheme: Bearer
    token_ref: file:~/gh-token
egress:
  upstream_proxy: http://proxy.corp:3128
  allow:
    - host: registry.npmjs.org
    - host: API.github.com
      methods: [get, HEAD]
      paths: ["/repos/acme/", "re:^/user$"]
      tls: intercept
      ports: [443]
  dlp: redact
  log: full
  resolve:
    git.internal: 10.0.0.5
    api.staging.local: 10.0.0.6:8443
  upstream_ca: corp.pem
git:
  user: {name: Bot, email: bot@example.com}
  repos:
    app:
      url: git@github.com:acme/app.git
      identity: ~/.ssh/app_deploy
      host_key: "github.com ssh-ed25519 AAAAC3Nza"
      push: ["agent/*"]
      protect: [main]
    web:
      url: https://github.com/acme/web.git
      token_ref: GITHUB_TOKEN
resources: {memory: 4G, cpus: 1.5, pids: 512}
runtime: runsc
---
Free text.
"#;

/// Numbers and booleans become strings as written: YAML reads `3.10` as
/// 3.1 and `12345678901234567890` as a rounded float, neither of which is
/// what the user meant.
#[test]
fn env_numbers_keep_their_text() {
    let b = parse_bottle(
        "---\nenv:\n  PYTHON_VERSION: 3.10\n  V: 1.0\n  BIG: 12345678901234567890\n  \
         HEX: 0x1F\n  T: TRUE\n  E: 1e3\n  L: {literal: 2.50}\n---\n",
    )
    .unwrap();
    assert_literals(
        &b,
        &[
            ("PYTHON_VERSION", "3.10"),
            ("V", "1.0"),
            ("BIG", "12345678901234567890"),
            ("HEX", "0x1F"),
            ("T", "TRUE"),
            ("E", "1e3"),
            ("L", "2.50"),
        ],
    );
}

fn assert_literals(b: &bottle::Bottle, expected: &[(&str, &str)]) {
    for (name, text) in expected {
        let e = b.env.iter().find(|e| e.name == *name).unwrap();
        assert_eq!(e.value, EnvValue::Literal(text.to_string()), "{name}");
    }
}

/// `${NAME}` is only a reference as the whole value; anything longer is
/// text, with no interpolation.
#[test]
fn env_references_only_as_the_whole_value() {
    let b = parse_bottle(
        "---\nenv:\n  AB: ${A}-${B}\n  PRE: x${A}\n  POST: ${A}x\n  \
         NEST: ${${A}}\n  ONE: ${A}\n---\n",
    )
    .unwrap();
    assert_literals(
        &b,
        &[
            ("AB", "${A}-${B}"),
            ("PRE", "x${A}"),
            ("POST", "${A}x"),
            ("NEST", "${${A}}"),
        ],
    );
    assert_eq!(b.env[4].value, EnvValue::Forward("A".into()));
}

#[test]
fn every_bottle_key_is_read() {
    let b = parse_bottle(FULL).unwrap();
    assert_eq!(b.extends, vec![("base".to_string(), 2)]);
    assert_eq!(b.image.as_deref(), Some("my/agent:1"));
    let env: BTreeMap<_, _> = b.env.iter().map(|e| (e.name.as_str(), &e.value)).collect();
    assert_eq!(env["EDITOR"], &EnvValue::Literal("vim".into()));
    assert_eq!(env["N"], &EnvValue::Literal("3".into()));
    assert_eq!(env["B"], &EnvValue::Literal("true".into()));
    assert_eq!(env["Y"], &EnvValue::Literal("yes".into()));
    assert_eq!(env["PIN"], &EnvValue::Literal("0123".into()));
    assert_eq!(env["OCT"], &EnvValue::Literal("0755".into()));
    assert_eq!(env["NPM_TOKEN"], &EnvValue::Forward("NPM_TOKEN".into()));
    assert_eq!(env["DB_PASSWORD"], &EnvValue::Prompt(None));
    assert_eq!(
        env["Q"],
        &EnvValue::Prompt(Some("Your database password".into()))
    );
    assert_eq!(
        env["ODD"],
        &EnvValue::Literal("?not a question ${NOT_EXPANDED}".into())
    );
    assert_eq!(b.tokens[0].kind, TokenKind::Anthropic);
    assert_eq!(
        b.tokens[0].token_ref,
        TokenRef::Env("CLAUDE_BOTTLE_OAUTH_TOKEN".into())
    );
    assert_eq!(
        b.tokens[1].token_ref,
        TokenRef::File {
            written: "file:~/gh-token".into(),
            path: "/home/u/gh-token".into()
        }
    );
    assert_eq!(b.tokens[1].scheme, Some(Scheme::Bearer));
    let r = &b.egress.allow[1];
    assert_eq!(r.host, "api.github.com");
    assert_eq!(
        r.methods.as_deref(),
        Some(&["GET".to_string(), "HEAD".to_string()][..])
    );
    assert_eq!(r.paths.as_ref().map(Vec::len), Some(2));
    assert_eq!(r.tls, Some(Tls::Intercept));
    assert_eq!(r.ports, Some(vec![443]));
    assert_eq!(b.egress.resolve.len(), 2);
    assert_eq!(
        b.egress.upstream_ca.as_deref(),
        Some(Path::new("/home/u/.claude-bottle/bottles/corp.pem"))
    );
    assert_eq!(b.git.user.name.as_deref(), Some("Bot"));
    assert!(b.git.repos[0].is_ssh() && !b.git.repos[1].is_ssh());
    assert_eq!(
        b.git.repos[0].identity.as_deref(),
        Some(Path::new("/home/u/.ssh/app_deploy"))
    );
    // As written: the plan shows the size the user wrote.
    assert_eq!(b.resources.memory.as_deref(), Some("4G"));
    assert_eq!(b.resources.cpus, Some(1.5));
    assert_eq!(b.resources.pids, Some(512));
}

#[test]
fn debug_of_env_hides_literals() {
    let b = parse_bottle("---\nenv:\n  PASS: hunter2-secret\n---\n").unwrap();
    assert!(!format!("{b:?}").contains("hunter2"));
}

fn err(text: &str) -> Error {
    parse_bottle(text).unwrap_err()
}

#[test]
fn unknown_key_suggests_and_has_line() {
    let e = err("---\nimage: x\nenvv:\n  A: b\n---\n");
    assert_eq!(e.line, Some(3));
    assert_eq!(e.key.as_deref(), Some("envv"));
    assert!(matches!(
        e.kind,
        ErrorKind::UnknownKey {
            suggestion: Some("env"),
            ..
        }
    ));
    assert_eq!(e.hint().as_deref(), Some("did you mean `env`?"));
    let e = err("---\negress:\n  allow:\n    - host: a.com\n      method: [GET]\n---\n");
    assert_eq!(e.key.as_deref(), Some("egress.allow[0].method"));
    assert_eq!(e.line, Some(5));
    assert_eq!(e.hint().as_deref(), Some("did you mean `methods`?"));
    // Nothing close: the hint names the keys allowed there.
    let e = err("---\nimage: x\nzzzzzzzz: 1\n---\n");
    let hint = e.hint().unwrap_or_default();
    assert!(hint.starts_with("the keys of "), "{hint}");
    for key in ["`env`", "`egress`", "`tokens`", "`git`"] {
        assert!(hint.contains(key), "{hint}");
    }
}

#[test]
fn structural_errors() {
    assert!(matches!(err("image: x\n").kind, ErrorKind::NoFrontMatter));
    assert!(matches!(
        err("---\nimage: x\n").kind,
        ErrorKind::UnclosedFrontMatter
    ));
    let e = err("---\nimage: [x\n---\n");
    assert!(matches!(e.kind, ErrorKind::Yaml { .. }));
    assert!(e.line.is_some_and(|l| l >= 2));
    let e = err("---\nenv: [a]\n---\n");
    assert!(matches!(
        e.kind,
        ErrorKind::WrongType {
            expected: "a mapping",
            found: "a list"
        }
    ));
    // Where the value starts, and how to write the kind wanted.
    assert_eq!(
        e.to_string(),
        "`/home/u/.claude-bottle/bottles/dev.md`:2:6: `env` must be a mapping, found a list"
    );
    assert_eq!(
        e.hint().as_deref(),
        Some("write `env` as `NAME: value` lines indented below it")
    );
    let e = err("---\negress:\n  allow:\n    - host: a.com\n      paths:\n        x: y\n---\n");
    assert_eq!((e.line, e.column), (Some(6), Some(9)), "{e}");
    assert!(e.hint().is_some_and(|h| h.contains("`- item`")), "{e}");
}

#[test]
fn value_rules() {
    let cases = [
        ("---\nenv:\n  HTTPS_PROXY: x\n---\n", "env.HTTPS_PROXY"),
        ("---\nenv:\n  1BAD: x\n---\n", "env.1BAD"),
        ("---\nenv:\n  A: ${lower-case}\n---\n", "env.A"),
        ("---\nenv:\n  A: ${1BAD}\n---\n", "env.A"),
        ("---\nenv:\n  A: ${}\n---\n", "env.A"),
        ("---\nenv:\n  A:\n---\n", "env.A"),
        (
            "---\ntokens:\n  - kind: aws\n    token_ref: X\n---\n",
            "tokens[0].kind",
        ),
        (
            "---\ntokens:\n  - kind: http\n    token_ref: X\n    scheme: Bearer\n---\n",
            "tokens[0].host",
        ),
        (
            "---\ntokens:\n  - kind: anthropic\n    token_ref: sk-ant-oat01-abc\n---\n",
            "tokens[0].token_ref",
        ),
        (
            "---\negress:\n  allow:\n    - host: a.com\n    - host: A.com\n---\n",
            "egress.allow[1].host",
        ),
        (
            "---\negress:\n  allow:\n    - host: a.com\n      tls: passthrough\n      paths: [/x]\n---\n",
            "egress.allow[0]",
        ),
        (
            "---\negress:\n  allow:\n    - host: https://a.com/\n---\n",
            "egress.allow[0].host",
        ),
        (
            "---\negress:\n  allow:\n    - host: a.com\n      paths: [x]\n---\n",
            "egress.allow[0].paths[0]",
        ),
        (
            "---\negress:\n  allow:\n    - host: a.com\n      paths: [\"re:(\"]\n---\n",
            "egress.allow[0].paths[0]",
        ),
        // A line break in a path would draw preflight lines of its own.
        (
            "---\negress:\n  allow:\n    - host: a.com\n      paths: [\"/x\\n  dlp: block\"]\n---\n",
            "egress.allow[0].paths[0]",
        ),
        (
            "---\negress:\n  allow:\n    - host: a.com\n      ports: [0]\n---\n",
            "egress.allow[0].ports[0]",
        ),
        (
            "---\negress:\n  resolve:\n    a.com: nowhere\n---\n",
            "egress.resolve.a.com",
        ),
        ("---\negress:\n  dlp: loud\n---\n", "egress.dlp"),
        (
            "---\ngit:\n  repos:\n    app:\n      url: git@h:a.git\n---\n",
            "git.repos.app.identity",
        ),
        (
            "---\ngit:\n  repos:\n    app:\n      url: https://h/a.git\n---\n",
            "git.repos.app.token_ref",
        ),
        (
            "---\ngit:\n  repos:\n    app:\n      url: ftp://h/a\n---\n",
            "git.repos.app.url",
        ),
        ("---\nresources: {memory: lots}\n---\n", "resources.memory"),
        // Sizes that saturate the engine's byte count, and a CPU share
        // that rounds to no limit: both would be no bound at all.
        ("---\nresources: {memory: 1e30g}\n---\n", "resources.memory"),
        (
            "---\nresources: {memory: 1048577g}\n---\n",
            "resources.memory",
        ),
        (
            "---\nresources: {cpus: 0.000000000001}\n---\n",
            "resources.cpus",
        ),
        ("---\nruntime: kata\n---\n", "runtime"),
        ("---\nextends: Base\n---\n", "extends"),
        ("---\nextends: [base, Bad]\n---\n", "extends[1]"),
    ];
    for (text, key) in cases {
        let e = err(text);
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
        assert!(e.line.is_some(), "{text}: {e}");
    }
}

/// An error about one entry of a list names that entry and its line, not
/// the list: in a long list the user is told which value to fix.
#[test]
fn list_entries_are_named_by_their_index_and_line() {
    let cases = [
        (
            "---\negress:\n  allow:\n    - host: a.com\n    - host: b.com\n      paths:\n        - /ok\n        - nope\n---\n",
            "egress.allow[1].paths[1]",
            8,
        ),
        (
            "---\negress:\n  allow:\n    - host: b.com\n      methods: [GET, \"PO ST\"]\n---\n",
            "egress.allow[0].methods[1]",
            5,
        ),
        (
            "---\negress:\n  allow:\n    - host: b.com\n      ports:\n        - 443\n        - 70000\n---\n",
            "egress.allow[0].ports[1]",
            7,
        ),
        (
            "---\ngit:\n  repos:\n    app:\n      url: https://h/a.git\n      token_ref: GH\n      push:\n        - agent/*\n        - \"a b\"\n---\n",
            "git.repos.app.push[1]",
            9,
        ),
        ("---\nextends:\n  - base\n  - Bad\n---\n", "extends[1]", 4),
    ];
    for (text, key, line) in cases {
        let e = err(text);
        assert_eq!(
            (e.key.as_deref(), e.line),
            (Some(key), Some(line)),
            "{text}: {e}"
        );
        assert!(e.to_string().contains(&format!("`{key}`")), "{e}");
    }
    let e = parse_agent("---\nskills:\n  - review\n  - pdf\n  - ../etc\n---\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "`/p/.claude-bottle/agents/rev.md`:5: `skills[2]`: `../etc` is not a skill folder name"
    );
    let e = parse_agent("---\ncommand: [sh, {a: b}]\n---\n").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("command[1]"), "{e}");
}

/// A missing key says which one to add, in the entry that lacks it.
#[test]
fn missing_keys_say_what_to_add() {
    let e = err("---\ntokens:\n  - kind: anthropic\n  - kind: http\n    token_ref: X\n---\n");
    assert_eq!(
        (e.key.as_deref(), e.line),
        (Some("tokens[0].token_ref"), Some(3))
    );
    assert_eq!(
        e.hint().as_deref(),
        Some("add `token_ref: ...` to this entry")
    );
    let e = err("---\ntokens:\n  - kind: openai\n    token_ref: X\n    host: a.com\n---\n");
    assert_eq!(e.key.as_deref(), Some("tokens[0].host"));
    assert!(
        e.hint().is_some_and(|h| h.starts_with("remove `host`")),
        "{e}"
    );
}

/// Entries keep their key path and lines, for the plan's errors once the
/// lineage is merged.
#[test]
fn tokens_and_routes_keep_their_key_path() {
    let b = parse_bottle(
        "---\ntokens:\n  - kind: anthropic\n    token_ref: A\n  - kind: openai\n\n    token_ref: B\negress:\n  allow:\n    - a.com\n    - host: b.com\n---\n",
    )
    .unwrap();
    let t: Vec<_> = b
        .tokens
        .iter()
        .map(|t| (t.key.as_str(), t.ref_line))
        .collect();
    assert_eq!(t, [("tokens[0]", 4), ("tokens[1]", 7)]);
    let r: Vec<_> = b.egress.allow.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(r, ["egress.allow[0]", "egress.allow[1]"]);
    let a = parse_agent("---\nskills: [review,\n  pdf]\n---\n").unwrap();
    let s: Vec<_> = a.skills.iter().map(|s| (s.key.as_str(), s.line)).collect();
    assert_eq!(s, [("skills[0]", 2), ("skills[1]", 3)]);
}

/// `ALL_PROXY` is reserved, but not because the CLI sets it (it does not):
/// the reason given is the real one.
#[test]
fn all_proxy_is_refused_for_what_it_would_do() {
    for name in ["ALL_PROXY", "all_proxy"] {
        let e = err(&format!("---\nenv:\n  {name}: socks5://x\n---\n"));
        let msg = e.to_string();
        assert_eq!(e.line, Some(3), "{msg}");
        assert!(msg.contains(&format!("`env.{name}`")), "{msg}");
        assert!(msg.contains("around the sidecar's proxy"), "{msg}");
        assert!(!msg.contains("set by claude-bottle"), "{msg}");
    }
}

/// A repo URL the git gate would refuse when the sidecar starts is refused
/// when the file is read, before the plan JSON, the preflight or `info`
/// show it; a credential in it is never quoted back.
#[test]
fn repo_urls_the_gate_would_refuse_are_refused_at_read() {
    let repo = |url: &str, auth: &str| {
        format!("---\ngit:\n  repos:\n    app:\n      url: {url}\n{auth}---\n")
    };
    let https = "      token_ref: GH\n";
    let ssh = "      identity: k\n      host_key: \"h ssh-ed25519 AAAA\"\n";
    let cases = [
        (
            "\"https://x-access-token:ghp_SECRET@github.com/a.git\"",
            https,
            "in the URL",
        ),
        (
            "\"https://ghp_SECRET@github.com/a.git\"",
            https,
            "in the URL",
        ),
        (
            "\"https://github.com/a.git?access_token=ghp_SECRET\"",
            https,
            "in the URL",
        ),
        (
            "\"ssh://git:ghp_SECRET@github.com/a.git\"",
            ssh,
            "in the URL",
        ),
        ("\"-ghp_SECRET:a.git\"", ssh, "the URL alone"),
        ("\"git@github.com:a.git ghp_SECRET\"", ssh, "the URL alone"),
        (
            "\"git@github.com:a.git\\tghp_SECRET\"",
            ssh,
            "the URL alone",
        ),
        (
            "\"ssh://-oProxyCommand=ghp_SECRET/a.git\"",
            ssh,
            "host name",
        ),
        ("\"git@-oProxyCommand=ghp_SECRET:a.git\"", ssh, "host name"),
        // scp-like with a password: git reads `git` as the host, and the
        // rest would be shown as the path.
        ("\"git:ghp_SECRET@github.com:a.git\"", ssh, "in the URL"),
    ];
    for (url, auth, hint) in cases {
        let e = err(&repo(url, auth));
        let msg = e.to_string();
        assert_eq!(
            (e.key.as_deref(), e.line),
            (Some("git.repos.app.url"), Some(5)),
            "{url}: {msg}"
        );
        assert!(
            msg.starts_with("`/home/u/.claude-bottle/bottles/dev.md`:5: "),
            "{msg}"
        );
        assert!(!msg.contains("SECRET"), "{msg}");
        let h = e.hint().unwrap_or_default();
        assert!(h.contains(hint) && !h.contains("SECRET"), "{url}: {h}");
    }
    let e = err(&repo("\"https://x:ghp_SECRET@github.com/a.git\"", https));
    assert!(e.to_string().contains("must not hold credentials"), "{e}");
    assert!(e.hint().is_some_and(|h| h.contains("`token_ref`")), "{e}");
    // `transport::address` (a remote helper; `ext::` runs a command) and
    // other transports are neither ssh nor https.
    for url in [
        "ext::sh",
        "fd::3",
        "host::path",
        "file:///etc/x",
        "a:b://c/d",
    ] {
        let e = err(&repo(url, ssh));
        assert_eq!(e.key.as_deref(), Some("git.repos.app.url"), "{url}: {e}");
        assert!(e.to_string().contains("must be an ssh URL"), "{url}: {e}");
    }
    // The gate serves `<name>.git`, and refuses a name that already ends so.
    let e = err(
        "---\ngit:\n  repos:\n    app.git:\n      url: https://h/a.git\n      token_ref: GH\n---\n",
    );
    assert_eq!(
        (e.key.as_deref(), e.line),
        (Some("git.repos.app.git"), Some(4)),
        "{e}"
    );
    assert!(e.hint().is_some_and(|h| h.contains("`app`")), "{e}");
    // So is a branch pattern with any whitespace in it, a tab as well.
    let e = err(&repo(
        "https://h/a.git",
        "      token_ref: GH\n      push: [\"agent/\\t*\"]\n",
    ));
    assert_eq!(e.key.as_deref(), Some("git.repos.app.push[0]"), "{e}");
    // A full ref name matches no branch: in `protect` it would protect nothing.
    let e = err(&repo(
        "https://h/a.git",
        "      token_ref: GH\n      protect: [release, refs/heads/main]\n",
    ));
    assert_eq!(e.key.as_deref(), Some("git.repos.app.protect[1]"), "{e}");
    assert!(e.to_string().contains("`main`"), "{e}");
    // What the gate accepts still reads.
    for (url, auth) in [
        ("https://github.com/acme/app.git", https),
        ("git@github.com:acme/app.git", ssh),
        ("ssh://git@github.com:2222/acme/app.git", ssh),
        ("\"ssh://git@[::1]:22/app.git\"", ssh),
    ] {
        let b = parse_bottle(&repo(url, auth)).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(b.git.repos.len(), 1);
    }
}

/// The sidecar injects an `http` token into every request to its host, so
/// a wildcard host would let the agent send the credential anywhere.
#[test]
fn a_token_host_is_never_a_wildcard() {
    for host in ["\"*\"", "\"*.github.com\"", "\"*.COM\""] {
        let e = err(&http_token(host));
        assert_eq!(
            (e.key.as_deref(), e.line),
            (Some("tokens[0].host"), Some(6)),
            "{host}: {e}"
        );
        assert!(e.to_string().contains("exactly one host"), "{e}");
        assert!(e.hint().is_some_and(|h| h.contains("exact host")), "{e}");
    }
    let b = parse_bottle(&http_token("API.github.com")).unwrap();
    assert_eq!(b.tokens[0].host.as_deref(), Some("api.github.com"));
}

/// A bottle with one `http` token for `host` (as YAML text), on line 6.
fn http_token(host: &str) -> String {
    format!(
        "---\ntokens:\n  - kind: http\n    token_ref: GH\n    scheme: Bearer\n    host: {host}\n---\n"
    )
}

#[test]
fn errors_never_quote_literal_values() {
    let e = err("---\nenv:\n  PASS: {literal: [hunter2]}\n---\n");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = err("---\nenv:\n  PASS: {nope: hunter2}\n---\n");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn agent_keys() {
    let a = parse_agent(
        "---\nbottle: dev\nskills: [review, pdf]\ngit:\n  user: {name: Reviewer}\nname: reviewer\ndescription: x\ntools: Read, Grep\nmodel: sonnet\nhooks: {a: 1}\n---\n\nYou are careful.\nMore.\n",
    )
    .unwrap();
    assert_eq!(a.bottle.as_deref(), Some("dev"));
    assert_eq!(a.bottle_line, Some(2));
    assert_eq!(a.skill_names(), ["review", "pdf"]);
    assert_eq!(a.git_user.name.as_deref(), Some("Reviewer"));
    assert_eq!(a.command, ["claude", "--dangerously-skip-permissions"]);
    assert_eq!(a.prompt_first_line(), Some("You are careful."));
    assert_eq!(a.source, Source::Project);
    let a = parse_agent("---\ncommand: [sh, -c]\n---\n").unwrap();
    assert_eq!(a.command, ["sh", "-c"]);
}

/// A typo of an accepted Claude Code subagent key is suggested like one of
/// the agent's own keys.
#[test]
fn unknown_agent_key_suggests_subagent_keys_too() {
    for (typo, meant) in [
        ("descripton", "description"),
        ("maxturns", "maxTurns"),
        ("disallowedTool", "disallowedTools"),
        ("skils", "skills"),
    ] {
        let e = parse_agent(&format!("---\nbottle: dev\n{typo}: x\n---\n")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(typo), "{e}");
        assert_eq!(
            e.hint(),
            Some(format!("did you mean `{meant}`?")),
            "{typo}: {e}"
        );
    }
}

#[test]
fn agent_refuses_bottle_keys() {
    for (text, key) in [
        ("---\ntokens: []\n---\n", "tokens"),
        ("---\negress: {}\n---\n", "egress"),
        ("---\nenv: {A: b}\n---\n", "env"),
        ("---\nimage: x\n---\n", "image"),
        ("---\ngit:\n  repos: {}\n---\n", "git.repos"),
    ] {
        let e = parse_agent(text).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BottleOnlyKey, "{text}");
        assert_eq!(e.key.as_deref(), Some(key));
        assert!(e.to_string().contains("can only be set in a bottle"), "{e}");
    }
    let e = parse_agent("---\nskils: [a]\n---\n").unwrap_err();
    assert_eq!(e.hint().as_deref(), Some("did you mean `skills`?"));
}

#[test]
fn ignored_keys_still_parse_under_budget() {
    let mut y = String::from("---\nhooks:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..10 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("l{}", i - 1)
        };
        y.push_str(&format!("  l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    y.push_str("---\n");
    let e = parse_agent(&y).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Yaml { .. }), "{e}");
}

#[test]
fn decode_limits() {
    let f = Path::new("/x.md");
    let big = vec![b'a'; 1024 * 1024 + 1];
    assert!(matches!(
        crate::decode(f, &big).unwrap_err().kind,
        ErrorKind::TooLarge { .. }
    ));
    let e = crate::decode(f, b"---\nok\n\xff\n").unwrap_err();
    assert_eq!((e.kind, e.line), (ErrorKind::NotUtf8, Some(3)));
}

fn bottles(files: &[(&str, &str)]) -> impl FnMut(&str) -> Result<Option<bottle::Bottle>, Error> {
    let map: BTreeMap<String, String> = files
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    move |name: &str| match map.get(name) {
        Some(text) => bottle::parse(name, &bottle_file(name), Path::new(HOME), text).map(Some),
        None => Ok(None),
    }
}

#[test]
fn merge_order_and_rules() {
    let load = bottles(&[
        (
            "a",
            "---\nenv: {X: a, A: 1}\nimage: img-a\negress:\n  allow: [{host: one.com}, {host: two.com, methods: [GET]}]\n  resolve: {r.com: 10.0.0.1}\nresources: {memory: 1g}\ngit:\n  user: {name: A, email: a@x}\n---\n",
        ),
        (
            "b",
            "---\nextends: a\nenv: {X: b}\negress:\n  allow: [{host: two.com, methods: [POST]}]\n  dlp: log\n---\n",
        ),
        (
            "c",
            "---\nextends: a\nimage: img-c\ntokens:\n  - {kind: anthropic, token_ref: T1}\n---\n",
        ),
        (
            "dev",
            "---\nextends: [b, c]\ntokens:\n  - {kind: anthropic, token_ref: T2}\nresources: {cpus: 3}\ngit:\n  user: {email: dev@x}\n---\n",
        ),
    ]);
    let m = merge("dev", load).unwrap();
    assert_eq!(m.lineage, ["a", "b", "c", "dev"]);
    assert_eq!(m.image.as_deref(), Some("img-c"));
    assert_eq!(m.env["X"].value, EnvValue::Literal("b".into()));
    assert_eq!(m.env["A"].value, EnvValue::Literal("1".into()));
    assert_eq!(m.allow.len(), 2);
    assert_eq!(
        m.allow[1].methods.as_deref(),
        Some(&["POST".to_string()][..])
    );
    assert_eq!(m.tokens.len(), 1);
    assert_eq!(m.tokens[0].token_ref, TokenRef::Env("T2".into()));
    assert_eq!(m.dlp, Some(bottle::Dlp::Log));
    assert_eq!(m.resources.memory.as_deref(), Some("1g"));
    assert_eq!(m.resources.cpus, Some(3.0));
    assert_eq!(m.git_user.name.as_deref(), Some("A"));
    assert_eq!(m.git_user.email.as_deref(), Some("dev@x"));
    assert_eq!(m.resolve["r.com"], "10.0.0.1");
}

#[test]
fn merge_errors_show_the_chain() {
    let e = merge(
        "a",
        bottles(&[
            ("a", "---\nextends: b\n---\n"),
            ("b", "---\nextends: a\n---\n"),
        ]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("a -> b -> a"), "{e}");
    let e = merge("a", bottles(&[("a", "---\nextends: a\n---\n")])).unwrap_err();
    assert!(e.to_string().contains("a -> a"), "{e}");
    let e = merge(
        "a",
        bottles(&[
            ("a", "---\nextends: [b]\n---\n"),
            ("b", "---\nextends: gone\n---\n"),
        ]),
    )
    .unwrap_err();
    assert!(matches!(&e.kind, ErrorKind::MissingBottle { name, .. } if name == "gone"));
    assert!(e.to_string().contains("a -> b -> gone"), "{e}");
    assert_eq!(e.file, bottle_file("b"));
    assert_eq!(e.line, Some(2));
    let e = merge("zzz", bottles(&[])).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::MissingBottle { .. }));

    // A chain one bottle too long: said at the `extends` line of the last
    // bottle that fits, in its file.
    let files: Vec<(String, String)> = (0..=crate::lineage::MAX_DEPTH)
        .map(|i| {
            let text = if i < crate::lineage::MAX_DEPTH {
                format!("---\nimage: x\nextends: b{}\n---\n", i + 1)
            } else {
                "---\n---\n".to_string()
            };
            (format!("b{i}"), text)
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let e = merge("b0", bottles(&refs)).unwrap_err();
    assert!(e.to_string().contains("too deep"), "{e}");
    let last = format!("b{}", crate::lineage::MAX_DEPTH - 1);
    assert_eq!((e.file, e.line), (bottle_file(&last), Some(3)));
    // One fewer fits.
    let fits = bottles(&refs[1..]);
    assert!(merge("b1", fits).is_ok());
}

#[test]
fn lazy_loading_reads_only_the_lineage() {
    let mut asked = Vec::new();
    let mut inner = bottles(&[
        ("a", "---\n---\n"),
        ("dev", "---\nextends: a\n---\n"),
        ("broken", "nope"),
    ]);
    merge("dev", |n: &str| {
        asked.push(n.to_string());
        inner(n)
    })
    .unwrap();
    assert_eq!(asked, ["dev", "a"]);
}

#[test]
fn scheme_forms() {
    for (s, want) in [
        ("token", Scheme::Token),
        ("basic", Scheme::Basic),
        ("header:X-Api-Key", Scheme::Header("X-Api-Key".into())),
    ] {
        let b = parse_bottle(&format!(
            "---\ntokens:\n  - {{kind: http, host: a.com, scheme: \"{s}\", token_ref: T}}\n---\n"
        ))
        .unwrap();
        assert_eq!(b.tokens[0].scheme, Some(want));
    }
}

/// What the preflight shows of an agent (its command, its git identity)
/// cannot carry escapes; the git identity is one short line, command words
/// may hold line breaks (the preflight writes them out) and are bounded.
#[test]
fn shown_agent_values_are_bounded_and_escape_free() {
    for (text, key) in [
        ("---\ncommand: [\"x\\e[2K\"]\n---\n", "command[0]"),
        ("---\ncommand: [claude, \"a\\rb\"]\n---\n", "command[1]"),
        (
            "---\ngit:\n  user: {name: \"a\\tb\"}\n---\n",
            "git.user.name",
        ),
        (
            "---\ngit:\n  user: {email: \"a\\nb\"}\n---\n",
            "git.user.email",
        ),
    ] {
        let e = parse_agent(text).unwrap_err().to_string();
        assert!(e.contains(&format!("`{key}`")), "{text}: {e}");
    }
    let a = parse_agent("---\ncommand: [claude, --append-system-prompt, \"one\\n\\ttwo\"]\n---\n")
        .unwrap();
    assert_eq!(a.command[2], "one\n\ttwo");
    let long = "x".repeat(64 * 1024 + 1);
    let e = parse_agent(&format!("---\ncommand: [claude, {long}]\n---\n")).unwrap_err();
    assert!(e.to_string().contains("at most 65536 bytes"), "{e}");
    let many = vec!["w"; 65].join(", ");
    let e = parse_agent(&format!("---\ncommand: [{many}]\n---\n")).unwrap_err();
    assert!(e.to_string().contains("at most 64 words"), "{e}");
    let name = "n".repeat(257);
    let e = parse_agent(&format!("---\ngit:\n  user: {{name: {name}}}\n---\n")).unwrap_err();
    assert!(e.to_string().contains("at most 256 bytes"), "{e}");
    assert!(parse_agent("---\ngit:\n  user: {name: Ünïcode Näme}\n---\n").is_ok());
}

/// The sidecar reads a host by inet_aton's rules (`bottle_addr::classify_host`):
/// `10.1` is 10.0.0.1 to it and `foo.123` an address it refuses. A manifest
/// that took either for a name would show a name in the plan while the
/// sidecar exempted an address from its SSRF guard, or refused to start
/// after the containers were made. Each is refused where it is written,
/// with the form to write instead where there is one.
#[test]
fn numeric_look_alike_hosts_are_refused_with_what_to_write() {
    let cases = [
        ("10.1", Some("`10.0.0.1`")),
        ("0x7f000001", Some("`127.0.0.1`")),
        ("2130706433", Some("`127.0.0.1`")),
        ("0177.0.0.1", Some("`127.0.0.1`")),
        ("127.1", Some("`127.0.0.1`")),
        ("0x", Some("`0.0.0.0`")),
        ("10.0.0.1.", Some("`10.0.0.1`")),
        ("::ffff:127.0.0.1", Some("`127.0.0.1`")),
        ("64:ff9b::a9fe:a9fe", Some("`169.254.169.254`")),
        ("0:0:0:0:0:0:0:1", Some("`::1`")),
        ("2001:DB8:0::1", Some("`2001:db8::1`")),
        ("[::1]", Some("`::1`")),
        ("foo.123", None),
        ("999.1.1.1", None),
        ("1.2.3.4.5", None),
        ("a.0x1f", None),
        ("*.1", None),
        ("*.10.0.0.1", None),
        ("*.foo.123", None),
        ("*.0x", None),
    ];
    let file = "`/home/u/.claude-bottle/bottles/dev.md`";
    for (host, write) in cases {
        let e = err(&format!(
            "---\negress:\n  allow:\n    - a.com\n    - host: \"{host}\"\n---\n"
        ));
        assert_eq!(
            (e.key.as_deref(), e.line),
            (Some("egress.allow[1].host"), Some(5)),
            "{host}: {e}"
        );
        let shown = e.to_string();
        assert!(shown.starts_with(&format!("{file}:5: ")), "{host}: {shown}");
        let hint = e.hint().unwrap_or_default();
        match write {
            Some(w) => assert!(hint.contains(&format!("write {w}")), "{host}: {hint}"),
            None => assert!(
                hint.contains("letter") || hint.contains("wildcard"),
                "{host}: {hint}"
            ),
        }
        // The shorthand `- HOST` and a token's host go through the same rule.
        let e = err(&format!("---\negress:\n  allow:\n    - \"{host}\"\n---\n"));
        assert_eq!(e.key.as_deref(), Some("egress.allow[0]"), "{host}: {e}");
        if !host.starts_with('*') {
            let e = err(&http_token(&format!("\"{host}\"")));
            assert_eq!(
                (e.key.as_deref(), e.line),
                (Some("tokens[0].host"), Some(6)),
                "{host}: {e}"
            );
        }
    }
}

/// `resolve` pins a name; a key the sidecar reads as an address (or refuses
/// as a broken one) would stop it at start.
#[test]
fn resolve_keys_are_names_as_the_sidecar_reads_them() {
    for key in [
        "10.1",
        "10.0.0.1",
        "0x7f000001",
        "foo.123",
        "999.1.1.1",
        "::1",
    ] {
        let e = err(&format!(
            "---\negress:\n  resolve:\n    git.internal: 10.0.0.5\n    \"{key}\": 10.0.0.6\n---\n"
        ));
        assert_eq!(
            (e.key.clone(), e.line),
            (Some(format!("egress.resolve.{key}")), Some(5)),
            "{key}: {e}"
        );
        let hint = e.hint().unwrap_or_default();
        assert!(hint.contains("host name"), "{key}: {hint}");
    }
}

/// What the manifest accepts it keeps as written (lower-cased), and it is
/// what the sidecar reads: dotted quads and IPv6 as the sidecar prints them,
/// names whose last label has a letter, wildcards over such names.
#[test]
fn canonical_addresses_and_names_are_kept() {
    let hosts = [
        "10.0.0.1",
        "0.0.0.0",
        "::1",
        "2001:db8::1",
        "1.example.com",
        "0xdead.beef",
        "123.example",
        "*.example.com",
        "*.io",
        "*",
        "a_b.c-d.example",
    ];
    let allow: String = hosts.iter().map(|h| format!("    - \"{h}\"\n")).collect();
    let b = parse_bottle(&format!(
        "---\negress:\n  allow:\n{allow}  resolve:\n    1.example.com: 10.0.0.5\n---\n"
    ))
    .unwrap();
    let kept: Vec<&str> = b.egress.allow.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(kept, hosts);
    assert_eq!(b.egress.resolve[0].0, "1.example.com");
    let b = parse_bottle("---\negress:\n  allow: [\"API.Example.COM\", \"2001:DB8::1\"]\n---\n")
        .unwrap();
    assert_eq!(b.egress.allow[0].host, "api.example.com");
    assert_eq!(b.egress.allow[1].host, "2001:db8::1");
}
