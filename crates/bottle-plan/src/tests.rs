//! Plan resolution over in-memory manifests and a fake host.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use bottle_manifest::{Source, agent, bottle, merge};

use crate::*;

struct FakeHost {
    env: BTreeMap<String, String>,
    files: BTreeMap<PathBuf, String>,
    dirs: BTreeSet<PathBuf>,
}

impl Host for FakeHost {
    fn env(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
    fn read_secret_file(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn dir_exists(&self, path: &Path) -> bool {
        self.dirs.contains(path)
    }
}

const OAUTH: &str = "sk-ant-oat01-SECRETOAUTHVALUE";
const GH: &str = "ghp_SECRETGITHUBVALUE0000000000000000";
const NPM: &str = "npm_SECRETNPMVALUE";
const LITERAL: &str = "LITERAL-SECRET-VALUE";
const SSH_KEY: &str =
    "-----BEGIN OPENSSH PRIVATE KEY-----\nSECRETKEYBODY\n-----END OPENSSH PRIVATE KEY-----\n";

fn host() -> FakeHost {
    FakeHost {
        env: [
            ("CLAUDE_BOTTLE_OAUTH_TOKEN", OAUTH),
            ("GITHUB_TOKEN", GH),
            ("NPM_TOKEN", NPM),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        files: [(
            PathBuf::from("/home/u/.ssh/app_deploy"),
            SSH_KEY.to_string(),
        )]
        .into_iter()
        .collect(),
        dirs: [PathBuf::from("/home/u/.claude/skills/review")]
            .into_iter()
            .collect(),
    }
}

const BASE: &str =
    "---\nenv:\n  EDITOR: vim\negress:\n  allow:\n    - host: registry.npmjs.org\n---\n";
const DEV: &str = r#"---
extends: base
env:
  SECRET_LITERAL: LITERAL-SECRET-VALUE
  NPM_TOKEN: ${NPM_TOKEN}
  DB_PASSWORD: "?"
tokens:
  - kind: anthropic
    token_ref: CLAUDE_BOTTLE_OAUTH_TOKEN
  - kind: http
    host: api.github.com
    scheme: Bearer
    token_ref: GITHUB_TOKEN
egress:
  allow:
    - host: api.github.com
      methods: [GET, HEAD]
      paths: ["/repos/acme/"]
  resolve:
    git.internal: 10.0.0.5
git:
  user: {name: Bot, email: bot@example.com}
  repos:
    app:
      url: git@github.com:acme/app.git
      identity: ~/.ssh/app_deploy
      host_key: "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
      push: ["agent/*"]
---
"#;
const AGENT: &str = "---\nbottle: dev\nskills: [review]\ngit:\n  user: {name: Reviewer Bot}\ndescription: ignored\n---\nYou are a careful reviewer.\n";

fn facts(engine: Option<EngineFacts>) -> Facts {
    Facts {
        home: "/home/u".into(),
        bottle_home: "/home/u/.claude-bottle".into(),
        version: "0.1.0".into(),
        engine,
    }
}

fn load(
    files: &'static [(&'static str, &'static str)],
) -> impl FnMut(&str) -> Result<Option<bottle::Bottle>, bottle_manifest::Error> {
    move |name: &str| {
        files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, t)| {
                bottle::parse(
                    n,
                    &PathBuf::from(format!("/home/u/.claude-bottle/bottles/{n}.md")),
                    Path::new("/home/u"),
                    t,
                )
            })
            .transpose()
    }
}

fn plan_with(
    agent_text: &str,
    files: &'static [(&'static str, &'static str)],
    engine: Option<EngineFacts>,
    opts: &Options,
    host: &dyn Host,
) -> Result<Resolved, Error> {
    let a = agent::parse(
        "reviewer",
        Path::new("/home/u/.claude-bottle/agents/reviewer.md"),
        Source::Home,
        Path::new("/home/u"),
        agent_text,
    )?;
    let m = merge(a.bottle.as_deref().unwrap_or("dev"), load(files))?;
    resolve(&a, &m, &facts(engine), opts, host)
}

/// A plain agent of bottle `dev`, no engine, default options.
fn plain_agent(
    files: &'static [(&'static str, &'static str)],
    host: &dyn Host,
) -> Result<Resolved, Error> {
    agent_plan("---\nbottle: dev\n---\n", files, host)
}

/// The agent `agent_text`, no engine, default options.
fn agent_plan(
    agent_text: &str,
    files: &'static [(&'static str, &'static str)],
    host: &dyn Host,
) -> Result<Resolved, Error> {
    plan_with(agent_text, files, None, &Options::default(), host)
}

fn full(engine: Option<EngineFacts>) -> Resolved {
    plan_with(
        AGENT,
        &[("base", BASE), ("dev", DEV)],
        engine,
        &Options::default(),
        &host(),
    )
    .unwrap()
}

fn assert_no_secrets(text: &str) {
    for s in [OAUTH, GH, NPM, LITERAL, "SECRETKEYBODY", "vim"] {
        assert!(!text.contains(s), "output leaks {s}:\n{text}");
    }
}

#[test]
fn plan_json_snapshot() {
    let r = full(Some(EngineFacts::default()));
    let json = serde_json::to_string_pretty(&r.plan).unwrap();
    assert_no_secrets(&json);
    insta::assert_snapshot!("plan_json", json);
}

#[test]
fn preflight_snapshot() {
    let r = full(Some(EngineFacts::default()));
    let text = preflight::render(&r.plan);
    assert_no_secrets(&text);
    insta::assert_snapshot!("preflight", text);
}

#[test]
fn an_empty_workspace_is_said_in_the_preflight() {
    static BARE: &[(&str, &str)] = &[("dev", "---\nimage: x\n---\n")];
    let r = plain_agent(BARE, &host()).unwrap();
    let text = preflight::render(&r.plan);
    assert!(
        text.contains("workspace  empty: no `git.repos` and no --copy-cwd"),
        "{text}"
    );
    // With a repo, the preflight's git section says where it goes instead.
    let text = preflight::render(&full(None).plan);
    assert!(!text.contains("workspace  empty"), "{text}");
}

#[test]
fn secrets_are_resolved_and_hidden() {
    let r = full(None);
    assert_eq!(
        r.secrets.tokens["CLAUDE_BOTTLE_OAUTH_TOKEN"].expose(),
        OAUTH
    );
    assert_eq!(r.secrets.tokens["GITHUB_TOKEN"].expose(), GH);
    assert_eq!(r.secrets.env["NPM_TOKEN"].expose(), NPM);
    assert_eq!(r.secrets.env["SECRET_LITERAL"].expose(), LITERAL);
    assert!(r.secrets.ssh_keys["app"].expose().contains("SECRETKEYBODY"));
    assert!(!r.secrets.env.contains_key("DB_PASSWORD"));
    assert_no_secrets(&format!("{:?} {:?}", r.secrets, r.plan));
}

#[test]
fn engine_unreached_means_null_runtime_and_a_warning() {
    let r = full(None);
    assert_eq!(r.plan.runtime, None);
    assert!(!r.plan.engine_reached);
    assert!(r.plan.warnings[0].contains("not reached"));
    let json = serde_json::to_value(&r.plan).unwrap();
    assert!(json["runtime"].is_null());
}

/// `upstream_ca` is read with the plan and must hold a certificate; it
/// travels with the secrets, never in the plan JSON but as its path.
#[test]
fn upstream_ca_is_read_and_checked() {
    static CA: &[(&str, &str)] = &[("dev", "---\negress:\n  upstream_ca: ~/corp.pem\n---\n")];
    let a = "---\nbottle: dev\n---\n";
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let mut h = host();
    let missing = plan_with(a, CA, None, &Options::default(), &h).unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("`egress.upstream_ca`: cannot read `/home/u/corp.pem`"),
        "{missing}"
    );
    h.files
        .insert(PathBuf::from("/home/u/corp.pem"), "not a cert".to_string());
    let junk = plan_with(a, CA, None, &Options::default(), &h).unwrap_err();
    assert!(junk.to_string().contains("no PEM certificate"), "{junk}");
    h.files
        .insert(PathBuf::from("/home/u/corp.pem"), pem.to_string());
    let r = plan_with(a, CA, None, &Options::default(), &h).unwrap();
    assert_eq!(r.secrets.upstream_ca.as_deref(), Some(pem));
    assert_eq!(
        r.plan.egress.upstream_ca.as_deref(),
        Some("/home/u/corp.pem")
    );
}

/// An `upstream_ca` set by a parent is reported at the parent's line, not
/// in the bottle that merely extends it.
#[test]
fn upstream_ca_errors_name_the_file_that_sets_it() {
    static CA: &[(&str, &str)] = &[
        (
            "corp",
            "---\nimage: x\negress:\n  upstream_ca: ~/corp.pem\n---\n",
        ),
        ("dev", "---\nextends: corp\n---\n"),
    ];
    let e = plain_agent(CA, &host()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`/home/u/.claude-bottle/bottles/corp.md`:4: `egress.upstream_ca`: cannot read \
         `/home/u/corp.pem`: entity not found"
    );
}

/// A stand-in host (`info`) reads no file: the CA's path is in the plan and
/// its placeholder content is not checked for a certificate.
#[test]
fn upstream_ca_is_not_checked_on_a_stand_in_host() {
    static CA: &[(&str, &str)] = &[("dev", "---\negress:\n  upstream_ca: ~/corp.pem\n---\n")];
    let r = plain_agent(CA, &StandIn).unwrap();
    assert_eq!(
        r.plan.egress.upstream_ca.as_deref(),
        Some("/home/u/corp.pem")
    );
    assert_eq!(r.secrets.upstream_ca, None);
}

/// cli.md: "`memory` is the string as written".
#[test]
fn memory_is_the_string_as_written() {
    static MEM: &[(&str, &str)] = &[("dev", "---\nresources: {memory: 1.50G}\n---\n")];
    let r = plain_agent(MEM, &host()).unwrap();
    let json = serde_json::to_value(&r.plan).unwrap();
    assert_eq!(json["resources"]["memory"], "1.50G");
}

#[test]
fn leftovers_of_dead_runs_are_a_warning() {
    let clean = full(Some(EngineFacts::default()));
    assert!(clean.plan.warnings.is_empty(), "{:?}", clean.plan.warnings);
    let facts = EngineFacts {
        leftovers: ["old".to_string(), "older-2".to_string()].into(),
        ..Default::default()
    };
    let w = full(Some(facts)).plan.warnings;
    assert_eq!(
        w,
        [
            "objects left by bottles whose CLI is gone (old, older-2); `claude-bottle cleanup` removes them"
        ]
    );
}

#[test]
fn runtime_rules() {
    let gvisor = EngineFacts {
        gvisor_runtime: Some("runsc".into()),
        ..Default::default()
    };
    assert_eq!(
        full(Some(gvisor.clone())).plan.runtime.as_deref(),
        Some("runsc")
    );
    // Registered under another name: that name is what the engine takes.
    let renamed = EngineFacts {
        gvisor_runtime: Some("gvisor".into()),
        ..Default::default()
    };
    let plan = full(Some(renamed)).plan;
    assert_eq!(plan.engine_runtime.as_deref(), Some("gvisor"));
    // The plan JSON says what it is, as `cli.md` lists: runc, runsc or null.
    assert_eq!(plan.runtime.as_deref(), Some("runsc"));
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["runtime"], "runsc");
    assert!(json.get("engine_runtime").is_none());
    assert!(
        crate::preflight::render(&plan).contains("runtime    runsc (registered as `gvisor`)"),
        "{}",
        crate::preflight::render(&plan)
    );
    // `auto` without gVisor: runc, named to the engine, whatever its
    // default (NVIDIA's runtime is not taken on trust)...
    let plan = full(Some(EngineFacts::default())).plan;
    assert_eq!(plan.runtime.as_deref(), Some("runc"));
    assert_eq!(plan.engine_runtime.as_deref(), Some("runc"));
    let nvidia = EngineFacts {
        default_runtime: Some("nvidia".into()),
        ..Default::default()
    };
    assert_eq!(
        full(Some(nvidia)).plan.engine_runtime.as_deref(),
        Some("runc")
    );
    // ...but a default known to isolate more is left to apply, and the
    // preflight says which.
    let kata = EngineFacts {
        default_runtime: Some("kata-runtime".into()),
        ..Default::default()
    };
    let plan = full(Some(kata)).plan;
    assert_eq!(plan.runtime.as_deref(), Some("runc"));
    assert_eq!(plan.engine_runtime, None);
    assert!(
        crate::preflight::render(&plan)
            .contains("runtime    kata-runtime (the engine's default; no gVisor)"),
        "{}",
        crate::preflight::render(&plan)
    );
    static RUNSC: &[(&str, &str)] = &[
        ("base", "---\nimage: x\nruntime: runsc\n---\n"),
        ("dev", "---\nextends: base\n---\n"),
    ];
    static RUNC: &[(&str, &str)] = &[("dev", "---\nruntime: runc\n---\n")];
    let a = "---\nbottle: dev\n---\n";
    let e = plan_with(
        a,
        RUNSC,
        Some(EngineFacts::default()),
        &Options::default(),
        &host(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::NoRunsc { .. }));
    // An engine whose containers get no seccomp profile leaves the agent
    // every system call under runc: refused, unless gVisor runs it.
    let unfiltered = EngineFacts {
        seccomp: Some(false),
        ..Default::default()
    };
    let auto = &[("dev", "---\n---\n")][..];
    let refused = plan_with(
        a,
        auto,
        Some(unfiltered.clone()),
        &Options::default(),
        &host(),
    )
    .unwrap_err();
    assert!(matches!(refused, Error::NoSeccomp), "{refused}");
    assert!(
        refused
            .hint()
            .is_some_and(|h| h.contains("seccomp-profile"))
    );
    let gvisor_unfiltered = EngineFacts {
        gvisor_runtime: Some("runsc".into()),
        ..unfiltered
    };
    let r = plan_with(
        a,
        auto,
        Some(gvisor_unfiltered),
        &Options::default(),
        &host(),
    )
    .unwrap();
    assert_eq!(r.plan.runtime.as_deref(), Some("runsc"));
    let filtered = EngineFacts {
        seccomp: Some(true),
        ..Default::default()
    };
    assert!(plan_with(a, auto, Some(filtered), &Options::default(), &host()).is_ok());
    // Where `runtime` is set: the parent here, not the bottle started.
    assert_eq!(
        e.to_string(),
        "`/home/u/.claude-bottle/bottles/base.md`:3: `runtime`: `runsc` is asked for, but the \
         engine has no gVisor runtime"
    );
    let r = plan_with(a, RUNC, Some(gvisor), &Options::default(), &host()).unwrap();
    assert_eq!(r.plan.runtime.as_deref(), Some("runc"));
    // Asked for by name: named to the engine.
    assert_eq!(r.plan.engine_runtime.as_deref(), Some("runc"));
}

#[test]
fn names_follow_the_slug() {
    let mut e = EngineFacts::default();
    e.containers.insert("claude-bottle-reviewer".into());
    let p = full(Some(e)).plan;
    assert_eq!(p.slug, "reviewer-2");
    assert_eq!(p.container, "claude-bottle-reviewer-2");
    assert_eq!(p.sidecar.container, "claude-bottle-reviewer-2-sidecar");
    assert_eq!(
        p.networks,
        [
            "claude-bottle-reviewer-2-internal",
            "claude-bottle-reviewer-2-egress"
        ]
    );
}

#[test]
fn a_new_slug_renames_what_the_slug_named() {
    let p = full(None).plan;
    let q = p.with_slug("reviewer-3");
    assert_eq!(q.slug, "reviewer-3");
    assert_eq!(q.container, "claude-bottle-reviewer-3");
    assert_eq!(q.sidecar.container, "claude-bottle-reviewer-3-sidecar");
    assert_eq!(
        q.networks,
        [
            "claude-bottle-reviewer-3-internal",
            "claude-bottle-reviewer-3-egress"
        ]
    );
    // Everything else is the same plan.
    let back = q.with_slug(&p.slug);
    assert_eq!(back, p);

    static FILES: &[(&str, &str)] = &[("dev", "---\n---\n")];
    let a = "---\nbottle: dev\n---\n";
    let opts = Options {
        copy_cwd: true,
        ..Default::default()
    };
    let p = plan_with(a, FILES, None, &opts, &host()).unwrap().plan;
    let q = p.with_slug("reviewer-2");
    assert_eq!(
        q.derived_image.as_deref(),
        Some("claude-bottle:cwd-reviewer-2")
    );
    // Pinned names stay.
    let opts = Options {
        container: Some("pinned".into()),
        derived_image: Some("mine:x".into()),
        copy_cwd: true,
        ..Default::default()
    };
    let q = plan_with(a, FILES, None, &opts, &host())
        .unwrap()
        .plan
        .with_slug("reviewer-2");
    assert_eq!(q.container, "pinned");
    assert_eq!(q.derived_image.as_deref(), Some("mine:x"));
    assert_eq!(q.sidecar.container, "claude-bottle-reviewer-2-sidecar");
}

#[test]
fn container_pin_and_images() {
    static FILES: &[(&str, &str)] = &[("dev", "---\n---\n")];
    let a = "---\nbottle: dev\n---\n";
    let opts = Options {
        container: Some("pinned".into()),
        image: Some("env/image:1".into()),
        copy_cwd: true,
        ..Default::default()
    };
    let p = plan_with(a, FILES, None, &opts, &host()).unwrap().plan;
    assert_eq!(p.container, "pinned");
    assert_eq!(p.image, "env/image:1");
    assert_eq!(
        p.derived_image.as_deref(),
        Some("claude-bottle:cwd-reviewer")
    );
    let opts = Options {
        derived_image: Some("mine:x".into()),
        ..opts
    };
    assert_eq!(
        plan_with(a, FILES, None, &opts, &host())
            .unwrap()
            .plan
            .derived_image
            .as_deref(),
        Some("mine:x")
    );
    let mut e = EngineFacts::default();
    e.containers.insert("pinned".into());
    let err = plan_with(a, FILES, Some(e), &opts, &host()).unwrap_err();
    assert!(
        err.to_string().contains("`pinned`") && err.hint().unwrap().contains("docker rm -f pinned")
    );
    static IMG: &[(&str, &str)] = &[("dev", "---\nimage: bottle/image:2\n---\n")];
    assert_eq!(
        plan_with(a, IMG, None, &opts, &host()).unwrap().plan.image,
        "bottle/image:2"
    );
    let p = plan_with(a, FILES, None, &Options::default(), &host())
        .unwrap()
        .plan;
    assert_eq!(p.image, "claude-bottle/agent:0.1.0");
    assert_eq!(p.derived_image, None);
}

#[test]
fn routes_and_tls_defaults() {
    let p = full(None).plan;
    let gh = p
        .egress
        .allow
        .iter()
        .find(|r| r.host == "api.github.com")
        .unwrap();
    assert_eq!(gh.auth.as_deref(), Some("Bearer"));
    assert_eq!(gh.tls, "intercept");
    let npm = p
        .egress
        .allow
        .iter()
        .find(|r| r.host == "registry.npmjs.org")
        .unwrap();
    assert_eq!(npm.tls, "intercept", "dlp on means interception");
    assert!(!p.egress.allow.iter().any(|r| r.host == "api.anthropic.com"));
    static OFF: &[(&str, &str)] = &[(
        "dev",
        "---\negress:\n  dlp: off\n  allow: [{host: a.com}, {host: b.com, paths: [/x]}]\ntokens:\n  - {kind: http, host: c.com, scheme: token, token_ref: GITHUB_TOKEN}\n---\n",
    )];
    let p = plan_with(
        "---\nbottle: dev\n---\n",
        OFF,
        None,
        &Options::default(),
        &host(),
    )
    .unwrap()
    .plan;
    let tls: Vec<_> = p
        .egress
        .allow
        .iter()
        .map(|r| (r.host.as_str(), r.tls.as_str()))
        .collect();
    assert_eq!(
        tls,
        [
            ("a.com", "passthrough"),
            ("b.com", "intercept"),
            ("c.com", "intercept")
        ]
    );
    static PASS: &[(&str, &str)] = &[(
        "dev",
        "---\negress:\n  allow: [{host: c.com, tls: passthrough}]\ntokens:\n  - {kind: http, host: c.com, scheme: token, token_ref: GITHUB_TOKEN}\n---\n",
    )];
    let e = plain_agent(PASS, &host()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`/home/u/.claude-bottle/bottles/dev.md`:3: `egress.allow[0].tls`: route `c.com` is \
         `tls: passthrough` but the `http` token `tokens[0]` \
         (`/home/u/.claude-bottle/bottles/dev.md`:5) injects into it"
    );
}

/// A token's host under a wildcard route: the route the token implies
/// keeps the wildcard's rules (the most specific wildcard's), so a
/// `GET`-only `*.github.com` does not become any method on the one host
/// the token can write to.
#[test]
fn a_token_under_a_wildcard_route_keeps_its_rules() {
    static WILD: &[(&str, &str)] = &[(
        "dev",
        "---\negress:\n  allow:\n    - {host: '*', methods: [GET, HEAD]}\n    - {host: '*.github.com', methods: [GET], paths: [/repos/], ports: [443, 8443]}\ntokens:\n  - {kind: http, host: api.github.com, scheme: Bearer, token_ref: GITHUB_TOKEN}\n  - {kind: http, host: other.example, scheme: token, token_ref: GITHUB_TOKEN}\n---\n",
    )];
    let p = plain_agent(WILD, &host()).unwrap().plan;
    let route = |h: &str| p.egress.allow.iter().find(|r| r.host == h).unwrap();
    let gh = route("api.github.com");
    assert_eq!(gh.methods.as_deref(), Some(&["GET".to_string()][..]));
    assert_eq!(gh.paths.as_deref(), Some(&["/repos/".to_string()][..]));
    assert_eq!(gh.tls, "intercept");
    let other = route("other.example");
    assert_eq!(
        other.methods.as_deref(),
        Some(&["GET".to_string(), "HEAD".to_string()][..])
    );
    assert_eq!(other.paths, None);
    assert_eq!(
        crate::resolve::wildcard_covers("*.github.com", "github.com"),
        None
    );
    assert_eq!(
        crate::resolve::wildcard_covers("*.github.com", "a.b.github.com"),
        Some(2)
    );
    assert_eq!(
        crate::resolve::wildcard_covers("*.github.com", "evilgithub.com"),
        None
    );
    assert_eq!(
        crate::resolve::wildcard_covers("api.github.com", "api.github.com"),
        None
    );
}

/// Errors found once the lineage is merged still name the entry in the
/// file that declared it (`tokens[1].token_ref`, `skills[1]`), not a bare
/// `token_ref` that could be any of them.
#[test]
fn resolution_errors_name_the_key_path() {
    static TOKENS: &[(&str, &str)] = &[
        (
            "base",
            "---\ntokens:\n  - kind: anthropic\n    token_ref: CLAUDE_BOTTLE_OAUTH_TOKEN\n  - kind: openai\n    token_ref: NO_SUCH_VAR\n---\n",
        ),
        ("dev", "---\nextends: base\n---\n"),
    ];
    let e = plain_agent(TOKENS, &host()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`/home/u/.claude-bottle/bottles/base.md`:6: `tokens[1].token_ref` needs the \
         environment variable `NO_SUCH_VAR`, which is not set"
    );

    static EMPTY: &[(&str, &str)] = &[(
        "dev",
        "---\ntokens:\n  - {kind: anthropic, token_ref: CLAUDE_BOTTLE_OAUTH_TOKEN}\n  - {kind: openai, token_ref: \"file:/t/empty\"}\n---\n",
    )];
    let mut h = host();
    h.files.insert("/t/empty".into(), "\n".into());
    let e = plain_agent(EMPTY, &h).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`/home/u/.claude-bottle/bottles/dev.md`:4: `tokens[1].token_ref`: the credential \
         named by `file:/t/empty` is empty"
    );

    static REPO: &[(&str, &str)] = &[(
        "dev",
        "---\ngit:\n  repos:\n    app:\n      url: https://github.com/acme/app.git\n      push: [\"*\"]\n      token_ref: REPO_TOKEN_UNSET\n---\n",
    )];
    let e = plain_agent(REPO, &host()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`/home/u/.claude-bottle/bottles/dev.md`:7: `git.repos.app.token_ref` needs the \
         environment variable `REPO_TOKEN_UNSET`, which is not set"
    );

    let e = agent_plan(
        "---\nbottle: dev\nskills:\n  - review\n  - pdf\n---\n",
        &[("dev", "---\n---\n")],
        &host(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "`/home/u/.claude-bottle/agents/reviewer.md`:5: `skills[1]`: skill `pdf` does not \
         exist (looked for `/home/u/.claude/skills/pdf`)"
    );
}

#[test]
fn star_host_warns() {
    static STAR: &[(&str, &str)] = &[("dev", "---\negress:\n  allow: [{host: \"*\"}]\n---\n")];
    let p = plan_with(
        "---\nbottle: dev\n---\n",
        STAR,
        None,
        &Options::default(),
        &host(),
    )
    .unwrap()
    .plan;
    assert!(p.warnings.iter().any(|w| w.contains("any host")));
}

/// A wildcard directly over a top-level domain (`*.com`, one label after
/// `*.`) is nearly as wide as `*`: intercepted it is allowed, as `*` is,
/// and the preflight warns the same way. One warning names them all;
/// `*.example.com` is one domain's hosts and gets none.
#[test]
fn top_level_domain_wildcard_warns() {
    static TLD: &[(&str, &str)] = &[(
        "dev",
        "---\negress:\n  allow: [\"*.com\", a.com, \"*.IO\", \"*.example.com\"]\n---\n",
    )];
    // The engine-not-reached warning aside.
    let wide = |p: &Plan| -> Vec<String> {
        p.warnings
            .iter()
            .filter(|w| w.contains("host"))
            .cloned()
            .collect()
    };
    let p = plain_agent(TLD, &host()).unwrap().plan;
    assert_eq!(p.egress.allow[0].tls, "intercept");
    assert_eq!(
        wide(&p),
        [
            "routes allow every host under a top-level domain (`*.com`, `*.io`): the agent can \
             reach a large part of the internet through the proxy; only DLP stands between it \
             and exfiltration"
        ]
    );
    // With DLP off a passthrough `*.com` is allowed, and the warning says
    // that nothing checks what is sent.
    static OFF: &[(&str, &str)] = &[(
        "dev",
        "---\negress:\n  dlp: off\n  allow: [{host: \"*.com\", tls: passthrough}]\n---\n",
    )];
    let p = plain_agent(OFF, &host()).unwrap().plan;
    assert_eq!(p.egress.allow[0].tls, "passthrough");
    assert_eq!(
        wide(&p),
        [
            "a route allows every host under a top-level domain (`*.com`) and DLP is off: the \
             agent can reach a large part of the internet through the proxy and nothing checks \
             what it sends"
        ]
    );
    static DOMAIN: &[(&str, &str)] =
        &[("dev", "---\negress:\n  allow: [\"*.example.com\"]\n---\n")];
    let p = plain_agent(DOMAIN, &host()).unwrap().plan;
    assert!(wide(&p).is_empty(), "{:?}", p.warnings);
    // Beside `*`, which covers it, `*.com` adds no second warning.
    static BOTH: &[(&str, &str)] = &[("dev", "---\negress:\n  allow: [\"*.com\", \"*\"]\n---\n")];
    let p = plain_agent(BOTH, &host()).unwrap().plan;
    assert_eq!(wide(&p).len(), 1, "{:?}", p.warnings);
    assert!(wide(&p)[0].contains("any host"), "{:?}", p.warnings);
}

/// manifest.md: `*` implies interception when DLP is on, so an explicit
/// `tls: passthrough` on it (blind tunnels to any host) is refused, where
/// the route is written, even when `dlp` comes from another file.
#[test]
fn star_passthrough_with_dlp_on_is_refused() {
    static STAR: &[(&str, &str)] = &[
        (
            "base",
            "---\negress:\n  allow:\n    - host: a.com\n    - host: \"*\"\n      tls: passthrough\n---\n",
        ),
        ("dev", "---\nextends: base\negress: {dlp: log}\n---\n"),
    ];
    let e = plain_agent(STAR, &host()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`/home/u/.claude-bottle/bottles/base.md`:5: `egress.allow[1].tls`: route `*` is \
         `tls: passthrough` while DLP is `log`: it would tunnel to any host without DLP \
         seeing what is sent"
    );
    let hint = e.hint().unwrap_or_default();
    assert!(
        hint.contains("`tls: intercept`") && hint.contains("`egress.dlp: off`"),
        "{hint}"
    );
    // `*.com` is as wide: refused too; `*.example.com` is one domain's.
    static TLD: &[(&str, &str)] = &[(
        "dev",
        "---\negress:\n  allow: [{host: \"*.com\", tls: passthrough}]\n---\n",
    )];
    let e = plain_agent(TLD, &host()).unwrap_err().to_string();
    assert!(
        e.contains("route `*.com`") && e.contains("any host under `com`"),
        "{e}"
    );
    static DOMAIN: &[(&str, &str)] = &[(
        "dev",
        "---\negress:\n  allow: [{host: \"*.example.com\", tls: passthrough}]\n---\n",
    )];
    assert!(plain_agent(DOMAIN, &host()).is_ok());
    // Without `tls`, `*` is intercepted; with `dlp: off` the tunnel is
    // what was asked for, and the warning says nothing checks it.
    static DEFAULT: &[(&str, &str)] = &[("dev", "---\negress:\n  allow: [\"*\"]\n---\n")];
    let p = plain_agent(DEFAULT, &host()).unwrap().plan;
    assert_eq!(p.egress.allow[0].tls, "intercept");
    static OFF: &[(&str, &str)] = &[(
        "dev",
        "---\negress:\n  dlp: off\n  allow: [{host: \"*\", tls: passthrough}]\n---\n",
    )];
    let p = plain_agent(OFF, &host()).unwrap().plan;
    assert_eq!(p.egress.allow[0].tls, "passthrough");
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("any host") && w.contains("nothing checks")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn set_by_bottle_rules() {
    let p = full(None).plan;
    let set = &p.env.set_by_bottle;
    for n in [
        "HTTPS_PROXY",
        "ANTHROPIC_BASE_URL",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "SSL_CERT_FILE",
        "DISABLE_ERROR_REPORTING",
    ] {
        assert!(set.iter().any(|s| s == n), "{n} in {set:?}");
    }
    assert!(!set.iter().any(|s| s == "ANTHROPIC_API_KEY"));
    let env = bottle_env(&p);
    assert_eq!(env["ANTHROPIC_BASE_URL"], "http://sidecar:3128/anthropic");
    assert_eq!(env["CLAUDE_CODE_OAUTH_TOKEN"], "cred-proxy-placeholder");

    let mut h = host();
    h.env.insert(
        "CLAUDE_BOTTLE_OAUTH_TOKEN".into(),
        "sk-ant-api03-KEY".into(),
    );
    static TELE: &[(&str, &str)] = &[(
        "dev",
        "---\nenv: {DISABLE_ERROR_REPORTING: \"0\"}\ntokens:\n  - {kind: anthropic, token_ref: CLAUDE_BOTTLE_OAUTH_TOKEN}\n  - {kind: openai, token_ref: GITHUB_TOKEN}\negress: {dlp: off}\n---\n",
    )];
    let r = plan_with(
        "---\nbottle: dev\n---\n",
        TELE,
        None,
        &Options::default(),
        &h,
    )
    .unwrap();
    assert!(r.secrets.anthropic_is_api_key);
    let set = &r.plan.env.set_by_bottle;
    assert!(
        set.iter().any(|s| s == "ANTHROPIC_API_KEY") && set.iter().any(|s| s == "OPENAI_BASE_URL")
    );
    assert!(
        !set.iter()
            .any(|s| s == "DISABLE_ERROR_REPORTING" || s == "SSL_CERT_FILE"),
        "{set:?}"
    );
}

#[test]
fn forward_oauth_token_mode() {
    static NOTOK: &[(&str, &str)] = &[("dev", "---\n---\n")];
    let opts = Options {
        forward_oauth_token: true,
        ..Default::default()
    };
    let r = plan_with("---\nbottle: dev\n---\n", NOTOK, None, &opts, &host()).unwrap();
    assert!(r.plan.forward_oauth_token);
    assert!(
        r.plan
            .warnings
            .iter()
            .any(|w| w.contains("holds the real OAuth token"))
    );
    assert_eq!(r.secrets.env["CLAUDE_CODE_OAUTH_TOKEN"].expose(), OAUTH);
    assert!(
        r.plan
            .egress
            .allow
            .iter()
            .any(|a| a.host == "api.anthropic.com" && a.tls == "passthrough")
    );
    let r = plan_with(AGENT, &[("base", BASE), ("dev", DEV)], None, &opts, &host()).unwrap();
    assert!(!r.plan.forward_oauth_token);

    // The flag, not a manifest, asks for the variable: the error names the
    // flag and no file.
    let mut h = host();
    h.env.remove("CLAUDE_BOTTLE_OAUTH_TOKEN");
    let e = plan_with("---\nbottle: dev\n---\n", NOTOK, None, &opts, &h).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`--forward-oauth-token` needs the environment variable `CLAUDE_BOTTLE_OAUTH_TOKEN`, \
         which is not set"
    );
    assert!(
        e.hint()
            .is_some_and(|h| h.contains("export `CLAUDE_BOTTLE_OAUTH_TOKEN`"))
    );
}

#[test]
fn resolution_errors_name_what_is_missing() {
    let dev_fails = |h| {
        plan_with(
            AGENT,
            &[("base", BASE), ("dev", DEV)],
            None,
            &Options::default(),
            h,
        )
        .unwrap_err()
    };
    let mut h = host();
    h.env.remove("NPM_TOKEN");
    let e = dev_fails(&h);
    assert!(
        matches!(&e, Error::UnsetVariable { name, key, .. } if name == "NPM_TOKEN" && key == "env.NPM_TOKEN"),
        "{e}"
    );
    assert!(e.to_string().contains("dev.md"));

    // A forwarded value that would break the env file's lines: refused at
    // plan time, by name, without the value.
    let mut h = host();
    h.env.insert("NPM_TOKEN".into(), "line1\nEVIL=1".into());
    let e = dev_fails(&h);
    assert!(
        matches!(&e, Error::Conflict { key, .. } if key == "env.NPM_TOKEN"),
        "{e}"
    );
    assert!(
        e.to_string().contains("line break") && !e.to_string().contains("EVIL"),
        "{e}"
    );

    let mut h = host();
    h.files.clear();
    let e = dev_fails(&h);
    assert!(matches!(e, Error::UnreadableFile { .. }), "{e}");
    assert!(
        e.to_string().starts_with(
            "`/home/u/.claude-bottle/bottles/dev.md`:26: `git.repos.app.identity`: cannot read \
             `/home/u/.ssh/app_deploy`"
        ),
        "{e}"
    );

    let mut h = host();
    h.dirs.clear();
    let e = dev_fails(&h);
    assert!(
        matches!(&e, Error::MissingSkill { name, .. } if name == "review"),
        "{e}"
    );

    static FILETOK: &[(&str, &str)] = &[(
        "dev",
        "---\ntokens:\n  - {kind: anthropic, token_ref: \"file:/nope/token\"}\n---\n",
    )];
    let e = plan_with(
        "---\nbottle: dev\n---\n",
        FILETOK,
        None,
        &Options::default(),
        &host(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("/nope/token"), "{e}");
}

#[test]
fn file_tokens_use_the_first_line() {
    static FILETOK: &[(&str, &str)] = &[(
        "dev",
        "---\ntokens:\n  - {kind: anthropic, token_ref: \"file:/t/token\"}\n---\n",
    )];
    let mut h = host();
    h.files.insert(
        "/t/token".into(),
        "  sk-ant-oat01-FROMFILE  \nsecond line\n".into(),
    );
    let r = plan_with(
        "---\nbottle: dev\n---\n",
        FILETOK,
        None,
        &Options::default(),
        &h,
    )
    .unwrap();
    assert_eq!(
        r.secrets.tokens["file:/t/token"].expose(),
        "sk-ant-oat01-FROMFILE"
    );
}

/// docs/gitgate.md: an ssh repo cannot go through `egress.upstream_proxy`
/// (ssh would need a CONNECT `ProxyCommand`, and going around the proxy is
/// not allowed). The plan refuses it with the repo's `url` line and the
/// file that sets the proxy, here a parent, before anything is started.
#[test]
fn ssh_repo_behind_an_upstream_proxy_is_a_plan_error() {
    static PROXIED: &[(&str, &str)] = &[
        ("base", BASE),
        (
            "corp",
            "---\nextends: base\negress:\n  upstream_proxy: http://proxy.corp:3128\n---\n",
        ),
        ("dev", DEV),
        ("both", "---\nextends: [corp, dev]\n---\n"),
    ];
    let e = agent_plan("---\nbottle: both\n---\n", PROXIED, &host()).unwrap_err();
    assert!(matches!(e, Error::SshBehindUpstreamProxy { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "`/home/u/.claude-bottle/bottles/dev.md`:25: `git.repos.app.url`: an ssh repo cannot \
         be reached through the upstream proxy that `/home/u/.claude-bottle/bottles/corp.md` \
         sets in `egress.upstream_proxy` (only https repos can)"
    );
    assert!(
        e.hint().is_some_and(|h| h.contains("`https://` URL")),
        "{e}"
    );

    // An https repo behind the same proxy is fine.
    static HTTPS: &[(&str, &str)] = &[(
        "dev",
        "---\negress:\n  upstream_proxy: http://proxy.corp:3128\ngit:\n  repos:\n    app:\n      url: https://github.com/acme/app.git\n      token_ref: GITHUB_TOKEN\n---\n",
    )];
    let r = plain_agent(HTTPS, &host()).unwrap();
    assert_eq!(r.plan.git.repos[0].auth, "token");
}

/// Attack (on the guarantee the preflight states): a bottle's env hands the
/// agent a credential the sidecar is said to hold alone, forwarded from
/// the same variable, written in, or inside a longer value.
#[test]
fn env_holding_a_token_or_deploy_key_is_refused() {
    const TOKEN: &str = "---\ntokens:\n  - {kind: http, host: api.github.com, scheme: Bearer, token_ref: GITHUB_TOKEN}\n";
    static FORWARDED: &[(&str, &str)] = &[(
        "dev",
        concat!(
            "---\ntokens:\n  - {kind: http, host: api.github.com, scheme: Bearer, token_ref: GITHUB_TOKEN}\n",
            "env:\n  GH: ${GITHUB_TOKEN}\n---\n"
        ),
    )];
    let e = plain_agent(FORWARDED, &host()).unwrap_err();
    let text = e.to_string();
    assert_eq!(
        text,
        "`/home/u/.claude-bottle/bottles/dev.md`:5: `env.GH`: `env.GH` holds the value of \
         token `GITHUB_TOKEN`, which only the sidecar may hold: the agent would have the \
         credential itself"
    );
    assert!(e.hint().unwrap_or_default().contains("remove the variable"));
    assert!(!text.contains(GH));
    // Inside a longer value.
    let inside: &'static str = format!("{TOKEN}env:\n  AUTH: \"Bearer {GH}\"\n---\n").leak();
    let files: &'static [(&str, &str)] = vec![("dev", inside)].leak();
    let e = plain_agent(files, &host()).unwrap_err().to_string();
    assert!(
        e.contains("`env.AUTH` holds the value of token `GITHUB_TOKEN`"),
        "{e}"
    );
    // The deploy key, found in a forwarded variable.
    let mut with_key = host();
    with_key.env.insert("KEY".into(), SSH_KEY.into());
    static KEY: &[(&str, &str)] = &[(
        "dev",
        concat!(
            "---\nenv:\n  K: ${KEY}\ngit:\n  repos:\n    app:\n      url: git@github.com:acme/app.git\n",
            "      identity: ~/.ssh/app_deploy\n",
            "      host_key: \"github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n---\n"
        ),
    )];
    let e = plain_agent(KEY, &with_key).unwrap_err().to_string();
    assert!(e.contains("the deploy key of repo `app`"), "{e}");
    // The full bottle's env (literal, forwarded, asked) holds none: fine.
    full(None);
}

/// An `http` token on a route that lets writes through on any path can do
/// all the credential can (mint keys, add deploy keys): the preflight
/// says so, and says when a repo is pushed with the same credential (its
/// `protect` holds only at the gate). Reads only, or writes under `paths`,
/// get no warning.
#[test]
fn a_token_on_a_route_open_to_writes_warns() {
    let scoped = |p: &Plan| -> Vec<String> {
        p.warnings
            .iter()
            .filter(|w| w.contains("api.github.com"))
            .cloned()
            .collect()
    };
    static OPEN: &[(&str, &str)] = &[(
        "dev",
        "---\ntokens:\n  - {kind: http, host: api.github.com, scheme: Bearer, token_ref: GITHUB_TOKEN}\n\
         git:\n  repos:\n    app: {url: https://github.com/acme/app.git, token_ref: GITHUB_TOKEN}\n---\n",
    )];
    let p = plain_agent(OPEN, &host()).unwrap().plan;
    let w = scoped(&p);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("any request") && w[0].contains("`paths`"),
        "{w:?}"
    );
    assert!(
        w[1].contains("repo `app`") && w[1].contains("`protect`"),
        "{w:?}"
    );
    for (front, want) in [
        // Writes, but only under `paths`: scoped by the user; the repo
        // warning stays (the paths may cover the repo's branches).
        (
            "---\negress:\n  allow: [{host: api.github.com, methods: [GET, POST], paths: [/repos/acme/app/issues]}]\n\
             tokens:\n  - {kind: http, host: api.github.com, scheme: Bearer, token_ref: GITHUB_TOKEN}\n---\n",
            0,
        ),
        // Paths that cover every path are none.
        (
            "---\negress:\n  allow: [{host: api.github.com, methods: [GET, POST], paths: [/repos/x, /]}]\n\
             tokens:\n  - {kind: http, host: api.github.com, scheme: Bearer, token_ref: GITHUB_TOKEN}\n---\n",
            1,
        ),
        (
            "---\negress:\n  allow: [{host: api.github.com, methods: [POST], paths: [\"re:^.*\"]}]\n\
             tokens:\n  - {kind: http, host: api.github.com, scheme: Bearer, token_ref: GITHUB_TOKEN}\n---\n",
            1,
        ),
        // Reads only, on any path.
        (
            "---\negress:\n  allow: [{host: api.github.com, methods: [GET, HEAD]}]\n\
             tokens:\n  - {kind: http, host: api.github.com, scheme: Bearer, token_ref: GITHUB_TOKEN}\n\
             git:\n  repos:\n    app: {url: https://github.com/acme/app.git, token_ref: GITHUB_TOKEN}\n---\n",
            0,
        ),
    ] {
        let files: &'static [(&'static str, &'static str)] = Box::leak(Box::new([(
            "dev",
            Box::leak(front.to_string().into_boxed_str()) as &str,
        )]));
        let p = plain_agent(files, &host()).unwrap().plan;
        assert_eq!(scoped(&p).len(), want, "{front}: {:?}", scoped(&p));
    }
}
