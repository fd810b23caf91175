//! Bad input: exit 2 and one clear message naming file, line, key and fix.

use super::util::*;

/// Run `start AGENT --dry-run` and return (code, stderr).
fn start(t: &TestEnv, agent: &str) -> (i32, String) {
    let (code, out, err) = t.run(t.cmd(&["start", agent, "--dry-run"]));
    assert_eq!(out, "");
    (code, err)
}

/// [`start`] that must be refused as bad input (exit 2); returns stderr.
fn refused(t: &TestEnv, agent: &str) -> String {
    let (code, err) = start(t, agent);
    assert_eq!(code, 2, "{err}");
    err
}

#[test]
fn unknown_key_with_suggestion() {
    let t = TestEnv::new();
    t.bottle("dev", "---\nimage: x\negres:\n  allow: []\n---\n");
    t.agent("a", "---\nbottle: dev\n---\n");
    let (code, err) = start(&t, "a");
    assert_eq!(code, 2);
    insta::assert_snapshot!(err, @r"
    error: `[TMP]/home/.claude-bottle/bottles/dev.md`:3: unknown key `egres` in a bottle

    hint: did you mean `egress`?
    ");
}

#[test]
fn unclosed_front_matter() {
    let t = TestEnv::new();
    t.agent("a", "---\nbottle: dev\n");
    let (code, err) = start(&t, "a");
    assert_eq!(code, 2);
    insta::assert_snapshot!(err, @r"
    error: `[TMP]/home/.claude-bottle/agents/a.md`:1: the front matter opened by `---` on line 1 is never closed

    hint: add a line that is exactly `---` after the YAML
    ");
}

#[test]
fn invalid_yaml_names_the_line() {
    let t = TestEnv::new();
    t.bottle("dev", "---\nenv:\n  A: b\n  B: [unclosed\n---\n");
    t.agent("a", "---\nbottle: dev\n---\n");
    let (code, err) = start(&t, "a");
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: `[TMP]/home/.claude-bottle/bottles/dev.md`:"),
        "{err}"
    );
    assert!(err.contains("invalid YAML"), "{err}");
    let line: u32 = err
        .split('`')
        .nth(2)
        .unwrap()
        .trim_start_matches(':')
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((4..=6).contains(&line), "{err}");
}

/// A YAML syntax error: the file line and column of the problem (not the
/// parser's line within the front matter), in our words, with a hint; the
/// parser's own location suffix and advice do not appear.
#[test]
fn yaml_syntax_error_has_line_column_and_hint() {
    let t = TestEnv::new();
    t.bottle("dev", "---\nimage: x\nenv:\n  A: b\n  A: c\n---\n");
    t.agent("a", "---\nbottle: dev\n---\n");
    insta::assert_snapshot!(refused(&t, "a"), @r"
    error: `[TMP]/home/.claude-bottle/bottles/dev.md`:5:3: invalid YAML: the key `A` is given twice in one mapping

    hint: remove one of the two; each key appears once in a mapping
    ");

    t.bottle("dev", "---\nenv:\n  A: b\n  B: [unclosed\n---\n");
    insta::assert_snapshot!(refused(&t, "a"), @r"
    error: `[TMP]/home/.claude-bottle/bottles/dev.md`:4:6: invalid YAML: a list opened with `[` is never closed

    hint: close the list with `]`, or quote the value if the `[` is text
    ");
}

/// A value of the wrong kind: where it starts, what was wanted, and how to
/// write that.
#[test]
fn yaml_type_error_has_line_column_and_hint() {
    let t = TestEnv::new();
    t.bottle(
        "dev",
        "---\negress:\n  allow:\n    - host: a.com\n      methods: {GET: true}\n---\n",
    );
    t.agent("a", "---\nbottle: dev\n---\n");
    insta::assert_snapshot!(refused(&t, "a"), @r"
    error: `[TMP]/home/.claude-bottle/bottles/dev.md`:5:16: `egress.allow[0].methods` must be a list, found a mapping

    hint: write `egress.allow[0].methods` as `[a, b]`, or as one `- item` per line indented below it
    ");
}

#[test]
fn file_over_one_mib() {
    let t = TestEnv::new();
    let mut big = String::from("---\nbottle: dev\n---\n");
    big.push_str(&"x".repeat(1024 * 1024));
    t.agent("a", &big);
    let (code, err) = start(&t, "a");
    assert_eq!(code, 2);
    assert!(
        err.contains("a.md`: the file is 1048596 bytes, over the limit of 1048576 bytes"),
        "{err}"
    );
}

#[test]
fn non_utf8_file() {
    let t = TestEnv::new();
    t.write(
        "home/.claude-bottle/agents/a.md",
        b"---\nbottle: dev\n---\n\xff\xfe\n",
    );
    let (code, err) = start(&t, "a");
    assert_eq!(code, 2);
    assert!(
        err.contains("a.md`:4: the file is not valid UTF-8"),
        "{err}"
    );
    assert!(err.contains("hint: save the file as UTF-8"), "{err}");
}

#[test]
fn bad_file_name_is_skipped_with_a_warning() {
    let t = TestEnv::standard();
    t.agent("Bad_Name", "---\nbottle: dev\n---\n");
    let (code, out, err) = t.run(t.cmd(&["list"]));
    assert_eq!(code, 0);
    assert!(err.contains("skipping `[TMP]/home/.claude-bottle/agents/Bad_Name.md`: `Bad_Name` is not a valid name"), "{err}");
    assert!(!out.contains("Bad_Name"));
    let (code, err) = start(&t, "Bad_Name");
    assert_eq!(code, 2);
    assert!(err.contains("agent `Bad_Name` does not exist"), "{err}");
}

#[test]
fn extends_cycle_shows_the_chain() {
    let t = TestEnv::new();
    t.bottle("a", "---\nextends: b\n---\n");
    t.bottle("b", "---\nextends: [c]\n---\n");
    t.bottle("c", "---\nextends: a\n---\n");
    t.agent("x", "---\nbottle: a\n---\n");
    let (code, err) = start(&t, "x");
    assert_eq!(code, 2);
    insta::assert_snapshot!(err, @r"
    error: `[TMP]/home/.claude-bottle/bottles/c.md`:2: `extends` makes a cycle: a -> b -> c -> a

    hint: remove one of the `extends` links
    ");
}

#[test]
fn missing_bottle_agent_and_skill() {
    let t = TestEnv::standard();
    let (code, err) = start(&t, "nobody");
    assert_eq!(code, 2);
    // The folders searched, not a relative `agents/nobody.md`.
    insta::assert_snapshot!(err, @r"
    error: `[TMP]/home/.claude-bottle/agents/nobody.md`: agent `nobody` does not exist (looked in `[TMP]/home/.claude-bottle/agents/`)

    hint: known agents: reviewer; see `claude-bottle list`
    ");
    // With a project folder, its agents are searched and named too.
    t.project_agent("other", "---\nbottle: dev\n---\n");
    let (code, err) = start(&t, "nobody");
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "agent `nobody` does not exist (looked in `[TMP]/home/.claude-bottle/agents/` and \
             `[TMP]/project/.claude-bottle/agents/`)"
        ),
        "{err}"
    );

    // The agent's `bottle:` line and the file looked for, not a made-up
    // `bottles/nowhere.md`.
    t.agent("lost", "---\nname: lost\nbottle: nowhere\n---\n");
    let (code, err) = start(&t, "lost");
    assert_eq!(code, 2);
    insta::assert_snapshot!(err, @r"
    error: `[TMP]/home/.claude-bottle/agents/lost.md`:3: `bottle`: bottle `nowhere` does not exist (looked for `[TMP]/home/.claude-bottle/bottles/nowhere.md`)

    hint: `claude-bottle list bottles` shows the bottles there are: fix the name, or create that file
    ");

    t.bottle("child", "---\nextends: ghost\n---\n");
    t.agent("kid", "---\nbottle: child\n---\n");
    let (code, err) = start(&t, "kid");
    assert_eq!(code, 2);
    assert!(
        err.contains("child.md`:2: bottle `ghost` does not exist (needed by child -> ghost)"),
        "{err}"
    );

    t.agent("skilled", "---\nbottle: base\nskills: [pdf]\n---\n");
    let (code, err) = start(&t, "skilled");
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "skilled.md`:3: `skills[0]`: skill `pdf` does not exist (looked for `[TMP]/home/.claude/skills/pdf`)"
        ),
        "{err}"
    );
    std::fs::create_dir_all(t.home.join(".claude/skills/pdf")).unwrap();
    assert_eq!(start(&t, "skilled").0, 0);

    t.agent("orphan", "---\ndescription: no bottle\n---\n");
    let (code, err) = start(&t, "orphan");
    assert_eq!(code, 2);
    assert!(err.contains("agent `orphan` names no bottle"), "{err}");
    assert!(err.contains("--bottle NAME"), "{err}");
}

#[test]
fn unset_variable_names_it() {
    let t = TestEnv::standard();
    let mut c = t.cmd(&["start", "reviewer", "--dry-run"]);
    c.env_remove("NPM_TOKEN");
    let (code, _, err) = t.run(c);
    assert_eq!(code, 2);
    insta::assert_snapshot!(err, @r"
    error: `[TMP]/home/.claude-bottle/bottles/dev.md`:5: `env.NPM_TOKEN` needs the environment variable `NPM_TOKEN`, which is not set

    hint: export `NPM_TOKEN` before starting, or change the manifest
    ");
    let mut c = t.cmd(&["start", "reviewer", "--dry-run"]);
    c.env_remove("GITHUB_TOKEN");
    let (code, _, err) = t.run(c);
    assert_eq!(code, 2);
    assert!(err.contains("`GITHUB_TOKEN`, which is not set"), "{err}");
}

#[test]
fn unreadable_file_token() {
    let t = TestEnv::new();
    t.bottle(
        "dev",
        "---\ntokens:\n  - kind: anthropic\n    token_ref: file:~/no-such-token\n---\n",
    );
    t.agent("a", "---\nbottle: dev\n---\n");
    let (code, err) = start(&t, "a");
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "dev.md`:4: `tokens[0].token_ref`: cannot read `[TMP]/home/no-such-token`: entity not found"
        ),
        "{err}"
    );
    t.write("home/tok", format!("{OAUTH}\n"));
    t.bottle(
        "dev",
        "---\ntokens:\n  - kind: anthropic\n    token_ref: file:../../tok\n---\n",
    );
    let (code, err) = start(&t, "a");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("file:../../tok"), "{err}");
}

#[test]
fn agent_with_bottle_keys_is_refused() {
    let t = TestEnv::standard();
    t.project_agent(
        "sneaky",
        "---\nbottle: dev\negress:\n  allow: [{host: \"*\"}]\n---\n",
    );
    let (code, err) = start(&t, "sneaky");
    assert_eq!(code, 2);
    assert!(
        err.contains("sneaky.md`:3: `egress` can only be set in a bottle, not in an agent"),
        "{err}"
    );
}

/// Hostile YAML is refused quickly, also under keys the agent ignores.
#[test]
fn hostile_yaml_is_refused_within_a_second() {
    let t = TestEnv::standard();
    let mut bomb = String::from(
        "---\nbottle: dev\nhooks:\n  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut prev = "a".to_string();
    for i in 0..9 {
        let refs = vec![format!("*{prev}"); 9].join(",");
        bomb.push_str(&format!("  l{i}: &l{i} [{refs}]\n"));
        prev = format!("l{i}");
    }
    bomb.push_str("---\n");
    t.agent("bomb", &bomb);
    let deep = format!(
        "---\nbottle: dev\nmcpServers: {}x{}\n---\n",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    t.agent("deep", &deep);
    let mut huge = String::from("---\nbottle: dev\nmemory:\n");
    while huge.len() < 900 * 1024 {
        huge.push_str("  - [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p]\n");
    }
    huge.push_str("---\n");
    t.agent("huge", &huge);
    for agent in ["bomb", "deep", "huge"] {
        // One second of CPU at most (over it the kernel kills the process
        // and the exit code is not 2); wall time depends on the load.
        let (code, out, err) = t.run(t.cmd_cpu_limited(1, &["start", agent, "--dry-run"]));
        assert_eq!(out, "");
        assert_eq!(code, 2, "{agent}: {err}");
        assert!(err.contains("invalid YAML"), "{agent}: {err}");
    }
}

#[test]
fn reserved_env_names_are_refused() {
    let t = TestEnv::new();
    t.bottle("dev", "---\nenv:\n  ANTHROPIC_BASE_URL: http://evil\n---\n");
    t.agent("a", "---\nbottle: dev\n---\n");
    let (code, err) = start(&t, "a");
    assert_eq!(code, 2);
    assert!(
        err.contains("dev.md`:3: `env.ANTHROPIC_BASE_URL`: is set by claude-bottle itself"),
        "{err}"
    );
}

/// A bad value deep in a list is named by its full key path and its own
/// line, from the file that declares it (a parent here).
#[test]
fn errors_name_the_full_key_path() {
    let t = TestEnv::new();
    t.bottle(
        "base",
        "---\ntokens:\n  - kind: anthropic\n    token_ref: CLAUDE_BOTTLE_OAUTH_TOKEN\n  - kind: openai\n    token_ref: OPENAI_KEY_UNSET\n---\n",
    );
    t.bottle("dev", "---\nextends: base\n---\n");
    t.agent("a", "---\nbottle: dev\n---\n");
    insta::assert_snapshot!(refused(&t, "a"), @r"
    error: `[TMP]/home/.claude-bottle/bottles/base.md`:6: `tokens[1].token_ref` needs the environment variable `OPENAI_KEY_UNSET`, which is not set

    hint: export `OPENAI_KEY_UNSET` before starting, or change the manifest
    ");

    t.bottle(
        "dev",
        "---\negress:\n  allow:\n    - host: a.com\n      paths:\n        - /ok\n        - no-slash\n---\n",
    );
    insta::assert_snapshot!(refused(&t, "a"), @r"
    error: `[TMP]/home/.claude-bottle/bottles/dev.md`:7: `egress.allow[0].paths[1]`: `no-slash` must start with `/` (a path prefix) or `re:` (a regex)

    hint: write a prefix such as `/repos/acme/`, or `re:^/user$` for a regex
    ");
}

/// An ssh repo behind `egress.upstream_proxy` is refused when the plan is
/// made (exit 2), naming the repo's `url` line and the proxy's file, not
/// later when the sidecar's gate refuses to start.
#[test]
fn ssh_repo_behind_upstream_proxy_is_refused() {
    let t = TestEnv::new();
    t.write(
        "home/.ssh/deploy",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n",
    );
    t.bottle(
        "corp",
        "---\negress:\n  upstream_proxy: http://proxy.corp:3128\n---\n",
    );
    t.bottle(
        "dev",
        "---\nextends: corp\ngit:\n  repos:\n    app:\n      url: git@github.com:acme/app.git\n      identity: ~/.ssh/deploy\n      host_key: \"github.com ssh-ed25519 AAAA\"\n---\n",
    );
    t.agent("a", "---\nbottle: dev\n---\n");
    insta::assert_snapshot!(refused(&t, "a"), @r"
    error: `[TMP]/home/.claude-bottle/bottles/dev.md`:6: `git.repos.app.url`: an ssh repo cannot be reached through the upstream proxy that `[TMP]/home/.claude-bottle/bottles/corp.md` sets in `egress.upstream_proxy` (only https repos can)

    hint: give repo `app` its `https://` URL and a `token_ref`, or remove `egress.upstream_proxy` if this network lets ssh out
    ");
}

/// `proxy --config FILE` with a file it cannot use is bad usage: exit 2,
/// the cause said once, and a hint.
#[test]
fn proxy_config_errors_are_usage_errors() {
    let t = TestEnv::new();
    t.write("project/syntax.yaml", "allow: [unclosed\n");
    t.write("project/key.yaml", "alow: []\n");
    t.write("project/listen.yaml", "listen: nowhere\n");
    for (file, says) in [
        (
            "missing.yaml",
            "cannot read `missing.yaml`: No such file or directory",
        ),
        (
            "syntax.yaml",
            "`syntax.yaml`:1:8: a list opened with `[` is never closed",
        ),
        ("key.yaml", "`key.yaml`:1:1: unknown field `alow`"),
        (
            "listen.yaml",
            "`listen.yaml`: listen: \"nowhere\" is not ADDR:PORT",
        ),
    ] {
        let (code, out, err) = t.run(t.cmd(&["proxy", "--config", file]));
        assert_eq!((code, out.as_str()), (2, ""), "{file}: {err}");
        assert!(err.starts_with(&format!("error: {says}")), "{file}: {err}");
        assert!(err.contains("\nhint: "), "{file}: {err}");
        // Once: no `caused by` line, no parser snippet repeating it.
        assert_eq!(
            err.lines().filter(|l| !l.trim().is_empty()).count(),
            2,
            "{file}: {err}"
        );
    }
}

/// The proxy's config gets the manifest's form of parse errors, from the
/// same rendering: the file, line and column, the manifest's words for a
/// syntax error (the parser's otherwise, without its location suffix), and
/// a hint for the kind of error (syntax, or a value of the wrong kind).
#[test]
fn proxy_config_parse_errors_have_line_column_and_hint() {
    let t = TestEnv::new();
    t.write("project/syntax.yaml", "dlp: block\nallow: [{host: a.com}\n");
    t.write("project/type.yaml", "dlp: block\nallow: {host: a.com}\n");
    t.write("project/type.json", "{\"allow\": 5}");
    let mut shown = String::new();
    for file in ["syntax.yaml", "type.yaml", "type.json"] {
        let (code, out, err) = t.run(t.cmd(&["proxy", "--config", file]));
        assert_eq!((code, out.as_str()), (2, ""), "{file}: {err}");
        shown.push_str(&err);
    }
    insta::assert_snapshot!(shown, @r"
    error: `syntax.yaml`:2:8: a list opened with `[` is never closed

    hint: close the list with `]`, or quote the value if the `[` is text
    error: `type.yaml`:2:8: expected sequence start

    hint: the value there is not of the kind its key takes: `allow`, `tokens`, `known_secret_env`, `host_addresses` and a route's `methods`, `paths` and `ports` are lists, `ca` and `resolve` are mappings, the other keys single values
    error: `type.json`:1:11: invalid type: integer `5`, expected a sequence

    hint: the value there is not of the kind its key takes: `allow`, `tokens`, `known_secret_env`, `host_addresses` and a route's `methods`, `paths` and `ports` are lists, `ca` and `resolve` are mappings, the other keys single values
    ");
}

/// `proxy` on an address another program holds: exit 2, one message with
/// the address and a hint, nothing else (no `caused by`, no backtrace, no
/// `listening on`).
#[test]
fn proxy_on_a_taken_address_says_so_once() {
    let t = TestEnv::new();
    t.write("project/proxy.yaml", "allow: []\n");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut c = t.cmd(&["proxy", "--config", "proxy.yaml", "--listen", &addr]);
    c.env("RUST_BACKTRACE", "1");
    let (code, out, err) = t.run(c);
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    let err = err.replace(&port.to_string(), "[PORT]");
    insta::assert_snapshot!(err, @r"
    error: cannot listen on `127.0.0.1:[PORT]`: the address is already in use

    hint: another program listens on port [PORT] (`ss -ltnp 'sport = :[PORT]'` shows which); stop it, or pass another address with `--listen ADDR:PORT`, or change `listen` in the config file
    ");
    drop(taken);
}

/// A project's agent file is not trusted: a key holding terminal escape
/// sequences is shown with them written out, never sent to the terminal.
#[test]
fn control_characters_in_messages_are_written_out() {
    let t = TestEnv::standard();
    t.project_agent(
        "evil",
        "---\nbottle: dev\n\"x\\e]0;owned\\a\\e[2J\": 1\n---\n",
    );
    let err = refused(&t, "evil");
    assert!(!err.contains(['\u{1b}', '\u{7}']), "{err:?}");
    assert!(
        err.contains("unknown key `x\\u{1b}]0;owned\\u{7}\\u{1b}[2J` in an agent"),
        "{err}"
    );
}

/// `doctor` names each broken manifest with its place and the error's own
/// hint, not a generic "fix the file".
#[test]
fn doctor_gives_a_broken_manifests_own_hint() {
    let t = TestEnv::standard();
    t.bottle("tabs", "---\nenv:\n\tA: 1\n---\n");
    let (_, out, err) = t.run(t.cmd(&["doctor"]));
    let shown = format!("{out}{err}");
    let line = shown
        .lines()
        .position(|l| l.contains("tabs.md`:3:"))
        .unwrap_or_else(|| panic!("no line for tabs.md: {shown}"));
    let lines: Vec<&str> = shown.lines().collect();
    assert!(
        lines[line].contains("a tab is used where YAML needs spaces"),
        "{shown}"
    );
    assert!(
        lines
            .get(line + 1)
            .is_some_and(|l| l.contains("fix: indent with spaces")),
        "{shown}"
    );
}

/// Attack: a hostile repository's agent file carries terminal escape
/// sequences in its prompt and command, to redraw the consent screen (turn
/// "project" into "home", hide the bottle line). Every place that shows
/// the agent writes them out instead of sending them to the terminal.
#[test]
fn escape_sequences_from_a_project_agent_never_reach_the_terminal() {
    let t = TestEnv::standard();
    t.project_agent(
        "evil",
        "---\nbottle: dev\n---\n\u{1b}[1A\u{1b}[2Kagent      evil (home: trusted)\u{7}\n",
    );
    for args in [
        &["start", "evil", "--dry-run"][..],
        &["list"][..],
        &["info", "evil"][..],
    ] {
        let (_, out, err) = t.run(t.cmd(args));
        let shown = format!("{out}{err}");
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{7}') && !shown.contains('\r'),
            "{args:?} let a control character through: {shown:?}"
        );
        assert!(shown.contains(r"\u{1b}"), "{args:?}: {shown}");
    }
    // As JSON: still a document a tool can read, with DEL, C1 and hidden
    // characters escaped the JSON way (the text escaping made it invalid).
    t.project_agent(
        "hidden",
        "---\nbottle: dev\n---\nzero\u{200b}width\u{7f}del\u{9b}csi\n",
    );
    let (code, out, err) = t.run(t.cmd(&["list", "--format", "json"]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let hidden = v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "hidden")
        .unwrap()
        .to_string();
    assert!(
        hidden.contains("zero\u{200b}width\u{7f}del\u{9b}csi"),
        "{hidden}"
    );
    assert!(!out.contains(['\u{200b}', '\u{7f}', '\u{9b}']), "{out}");
}

/// Attack: a hostile repository draws preflight lines of its own, with
/// line breaks where the CLI shows its text: in a file name (Linux allows
/// them; the name fails the name rule and is quoted in a warning printed
/// just above `Launch? [y/N]`) and in the agent's command words.
#[test]
fn a_project_cannot_draw_preflight_lines() {
    let t = TestEnv::standard();
    t.write(
        "project/.claude-bottle/agents/x\n\negress     none\nagent      fake (home: trusted)\n.md",
        "---\nbottle: dev\n---\n",
    );
    let (_, out, err) = t.run(t.cmd(&["start", "reviewer", "--dry-run"]));
    let shown = format!("{out}{err}");
    assert!(shown.contains(r"x\u{a}\u{a}egress"), "{shown}");
    assert!(
        !shown
            .lines()
            .any(|l| l.starts_with("agent      fake") || l.starts_with("egress     none")),
        "{shown}"
    );
    t.project_agent(
        "evil",
        "---\nbottle: dev\ncommand: [claude, \"x\\n\\nagent      evil (home: trusted)\"]\n---\n",
    );
    let (code, out, err) = t.run(t.cmd(&["start", "evil", "--dry-run"]));
    assert_eq!(code, 0, "{out}{err}");
    let shown = format!("{out}{err}");
    assert!(shown.contains(r"command    claude x\n\nagent"), "{shown}");
    assert!(
        !shown
            .lines()
            .any(|l| l.starts_with("agent      evil (home")),
        "{shown}"
    );
}

/// Attack: a repository's agent file is a link to a file of the user's (a
/// Claude Code subagent, whose body would become the prompt sent into the
/// bottle), or a FIFO that would hang `list`. Links that stay in the
/// project's agents folder still work.
#[test]
fn a_project_agent_file_is_the_projects_own_regular_file() {
    let t = TestEnv::standard();
    let mine = t.write(
        "home/.claude/agents/private.md",
        "---\nbottle: dev\n---\nUSER-PRIVATE\n",
    );
    let agents = t.root.join("project/.claude-bottle/agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::os::unix::fs::symlink(&mine, agents.join("stolen.md")).unwrap();
    t.project_agent("real", "---\nbottle: dev\n---\nProject prompt.\n");
    std::os::unix::fs::symlink(agents.join("real.md"), agents.join("alias.md")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(agents.join("fifo.md"))
        .status()
        .unwrap();
    assert!(made.success());
    let mut list = t.cmd(&["list"]);
    list.timeout(std::time::Duration::from_secs(20));
    let (code, out, err) = t.run(list);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(
            "skipping `[TMP]/project/.claude-bottle/agents/stolen.md`: a link to a file outside the project"
        ),
        "{err}"
    );
    assert!(
        out.contains("fifo") && out.contains("not a regular file"),
        "{out}"
    );
    assert!(out.contains("alias"), "{out}");
    let (code, out, err) = t.run(t.cmd(&["start", "stolen", "--dry-run"]));
    assert_eq!(code, 2);
    assert!(!format!("{out}{err}").contains("USER-PRIVATE"));
    let (code, out, err) = t.run(t.cmd(&["start", "alias", "--dry-run"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        format!("{out}{err}").contains("Project prompt."),
        "{out}{err}"
    );

    // The whole `.claude-bottle` a link to the user's Claude Code folder:
    // its subagents are not the project's.
    let t = TestEnv::standard();
    t.write(
        "home/.claude/agents/helper.md",
        "---\nbottle: dev\n---\nUSER-SUBAGENT\n",
    );
    std::fs::create_dir_all(t.root.join("project")).unwrap();
    std::os::unix::fs::symlink("../home/.claude", t.root.join("project/.claude-bottle")).unwrap();
    let (_, out, err) = t.run(t.cmd(&["list"]));
    assert!(!out.contains("helper"), "{out}");
    assert!(
        err.contains("a link to a file outside the project"),
        "{err}"
    );
    let (code, out, err) = t.run(t.cmd(&["start", "helper", "--dry-run"]));
    assert_eq!(code, 2);
    assert!(!format!("{out}{err}").contains("USER-SUBAGENT"));
}

/// The plan JSON stays JSON with control characters in a manifest, C1 ones
/// included (serde leaves U+0080 to U+009F raw, and a terminal may act on
/// U+009B): escaped as JSON, never written out in a non-JSON form.
#[test]
fn plan_json_escapes_c1_controls_and_stays_json() {
    let t = TestEnv::standard();
    t.project_agent(
        "evil",
        // The prompt's first line is in the plan, from the file as is.
        "---\nbottle: dev\n---\n\u{9b}2K\u{1b}[1Ahome\u{7f}\n",
    );
    let (code, out, err) = t.run(t.cmd(&["start", "evil", "--dry-run", "--format", "json"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains(|c: char| c.is_control() && c != '\n'),
        "a control character got through: {out:?}"
    );
    let plan: serde_json::Value = serde_json::from_str(&out).expect("the plan is JSON");
    assert_eq!(
        plan["agent"]["prompt_first_line"], "\u{9b}2K\u{1b}[1Ahome\u{7f}",
        "{out}"
    );
    assert!(out.contains(r"\u009b2K\u001b[1Ahome\u007f"), "{out}");
}

/// Without `HOME` nothing runs, even with `CLAUDE_BOTTLE_HOME` set (skills
/// live under `~/.claude`), and the hint says so rather than suggesting
/// `CLAUDE_BOTTLE_HOME` would do.
#[test]
fn no_home_says_why_it_is_needed() {
    let t = TestEnv::new();
    let mut c = t.cmd(&["list"]);
    c.env_remove("HOME")
        .env("CLAUDE_BOTTLE_HOME", t.home.join(".claude-bottle"));
    let (code, out, err) = t.run(c);
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert!(err.contains("`HOME` is not set"), "{err}");
    assert!(
        err.contains("skills are read from `~/.claude/skills`"),
        "{err}"
    );
}

/// Attack (on the wire): the user asked for TLS to a remote engine, which
/// this build does not speak; the CLI would send the bottle's secrets in
/// plain HTTP to whoever answers. It refuses before connecting.
#[test]
fn an_engine_in_plain_http_across_the_network_is_refused() {
    let t = TestEnv::standard();
    for (host, tls) in [
        ("tcp://buildbox.invalid:2376", "1"),
        ("tcp://buildbox.invalid:2375", ""),
    ] {
        let mut c = t.cmd(&["doctor"]);
        c.env("DOCKER_HOST", host).env("DOCKER_TLS_VERIFY", tls);
        let (_, out, err) = t.run(c);
        let shown = format!("{out}{err}");
        assert!(
            shown.contains("will not use the container engine"),
            "{host}: {shown}"
        );
        assert!(shown.contains("ssh -NL"), "{host}: {shown}");
    }
}
