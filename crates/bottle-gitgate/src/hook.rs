//! The pre-receive hook: ref policy, DLP scan of every new commit, then the
//! upstream push with the gate's credential.
//!
//! `git receive-pack` (run by http-backend for a push to the gate) runs the
//! hook with the pushed objects in quarantine; the mirror's refs move only
//! if the hook exits 0, and the hook exits 0 only after the upstream
//! accepted the same updates. So a refused push (policy, secret, upstream)
//! leaves both the upstream and the mirror as they were.
//!
//! The gate passes the hook its configuration in the environment variable
//! [`HOOK_ENV`] of the http-backend child (inherited by receive-pack and the
//! hook); it is never written to the repo config. Everything the hook
//! prints on stderr reaches the pushing client as `remote: ...` lines, so it
//! prints only ref names, ids, paths, rule names and redacted previews.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use bottle_dlp::{Engine, MIN_KNOWN_SECRET_LEN};
use bottle_secret::Secret;
use serde::{Deserialize, Serialize};

use crate::audit::{FindingReport, PushTimings};
use crate::limits::Limits;
use crate::mirror;
use crate::policy::{self, Policy, RefUpdate};
use crate::scan::{self, Git, ScanError};
use crate::tips::{self, TipError};
use crate::trees;

/// The variable carrying the hook's JSON configuration.
pub const HOOK_ENV: &str = "BOTTLE_GITGATE_HOOK";

const TAG: &str = "claude-bottle git gate";

/// What the gate tells the hook for one push.
#[derive(Clone, Serialize, Deserialize)]
pub struct HookConfig {
    pub repo: String,
    pub url: String,
    pub push: Vec<String>,
    pub protect: Vec<String>,
    pub limits: Limits,
    /// Token values of the bottle (matched by the DLP engine).
    pub known_secrets: Vec<String>,
    /// The upstream credential environment (see `credentials`).
    pub upstream_env: Vec<(String, String)>,
    /// Where to write the [`Report`] for the gate's audit event.
    pub report: Option<PathBuf>,
    /// When the gate kills this request's git child with everything in its
    /// process group (ms since the Unix epoch). The upstream push runs in
    /// a group of its own, out of that kill's reach, so the hook stops it
    /// before then.
    #[serde(default)]
    pub deadline_unix_ms: Option<u64>,
}

impl std::fmt::Debug for HookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookConfig")
            .field("repo", &self.repo)
            .field("url", &self.url)
            .field("known_secrets", &self.known_secrets.len())
            .finish_non_exhaustive()
    }
}

/// The hook's verdict, read back by the gate for the audit log.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Report {
    pub decision: String,
    pub reason: Option<String>,
    pub refs: Vec<RefUpdate>,
    pub commits: u64,
    pub findings: Vec<FindingReport>,
    pub message: Option<String>,
    /// Milliseconds spent scanning, and pushing upstream.
    #[serde(default)]
    pub scan_ms: u64,
    #[serde(default)]
    pub upstream_ms: u64,
    /// Where the hook's time went, phase by phase.
    #[serde(default)]
    pub timings: PushTimings,
}

impl Report {
    fn block(reason: &str, message: String, refs: Vec<RefUpdate>) -> Report {
        Report {
            decision: "block".into(),
            reason: Some(reason.into()),
            refs,
            message: Some(message),
            ..Report::default()
        }
    }
}

/// Entry point for the binary: `claude-bottle sidecar hook pre-receive`
/// (or the test binary) calls this and exits with its result.
pub fn main() -> i32 {
    let stdin = std::io::stdin();
    let mut stderr = std::io::stderr();
    run_pre_receive(stdin.lock(), &mut stderr)
}

/// Runs the hook with the configuration from [`HOOK_ENV`]; `input` is
/// receive-pack's `<old> <new> <ref>` lines. Returns the exit code.
pub fn run_pre_receive(input: impl BufRead, err: &mut impl Write) -> i32 {
    let cfg: Option<HookConfig> = std::env::var(HOOK_ENV)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok());
    let Some(cfg) = cfg else {
        let _ = writeln!(
            err,
            "{TAG}: hook started without its configuration; refusing"
        );
        return 1;
    };
    let env = child_env(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    );
    let report = run_with(&cfg, &env, input, err);
    if let Some(path) = &cfg.report
        && let Ok(text) = serde_json::to_string(&report)
    {
        let _ = std::fs::write(path, text);
    }
    i32::from(report.decision != "allow")
}

/// What git children of the hook (the scan, the upstream push) get: the
/// hook's own environment minus its configuration and the config entries
/// the gate gave receive-pack (`GIT_CONFIG_COUNT`, `_KEY_n`, `_VALUE_n`,
/// `GIT_CONFIG_PARAMETERS`). Not every `GIT_CONFIG_*`: that would drop
/// `GIT_CONFIG_NOSYSTEM` and `GIT_CONFIG_GLOBAL` too, and with them the
/// rule that no git child reads `/etc/gitconfig` or a global config;
/// those two are set again whatever came in.
fn child_env(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, Secret)> {
    let receive_pack_config = |k: &str| {
        k == "GIT_CONFIG_COUNT"
            || k == "GIT_CONFIG_PARAMETERS"
            || k.starts_with("GIT_CONFIG_KEY_")
            || k.starts_with("GIT_CONFIG_VALUE_")
    };
    let mut env: Vec<(String, Secret)> = vars
        .filter(|(k, _)| {
            k != HOOK_ENV
                && !receive_pack_config(k)
                && k != "GIT_CONFIG_NOSYSTEM"
                && k != "GIT_CONFIG_GLOBAL"
        })
        .map(|(k, v)| (k, Secret::new(v)))
        .collect();
    env.push(("GIT_CONFIG_NOSYSTEM".into(), Secret::new("1")));
    env.push(("GIT_CONFIG_GLOBAL".into(), Secret::new("/dev/null")));
    env
}

/// The hook's logic with the configuration and git environment given.
pub fn run_with(
    cfg: &HookConfig,
    env: &[(String, Secret)],
    input: impl BufRead,
    err: &mut impl Write,
) -> Report {
    let started = std::time::Instant::now();
    let mut report = decide(cfg, env, input);
    report.timings.hook_ms = millis(started);
    report.timings.upstream_ms = report.upstream_ms;
    let say = |err: &mut dyn Write, line: &str| {
        let _ = writeln!(err, "{TAG}: {line}");
    };
    match report.reason.as_deref() {
        None => {
            if let Some(m) = &report.message {
                say(err, m);
            }
        }
        Some("git-secret") => {
            say(
                err,
                "push refused: a secret was found; nothing was sent upstream",
            );
            for f in &report.findings {
                let short = f.commit.get(..12).unwrap_or(&f.commit);
                let place = match (&f.part, &f.path) {
                    (Some(part), _) => format!("({part})"),
                    (None, Some(path)) => path.clone(),
                    (None, None) => "(commit message)".to_string(),
                };
                // A binary file has no lines: the byte offset says where.
                let at = match (f.offset, &f.part) {
                    (Some(o), _) => format!("{place} (binary, byte {o})"),
                    (None, Some(_)) => place,
                    (None, None) => format!("{place}:{}", f.line),
                };
                // A finding in a tree names the tree.
                let object = match f.part.as_deref() {
                    Some(trees::ENTRY_NAME | trees::SUBMODULE_ID) => "tree",
                    _ => "commit",
                };
                say(
                    err,
                    &format!("  {object} {short} {at} rule {} {}", f.rule, f.redacted),
                );
            }
            say(
                err,
                "remove the secret from every commit of the push (rewrite them), then push again",
            );
        }
        Some(_) => {
            for line in report.message.as_deref().unwrap_or("push refused").lines() {
                say(err, line);
            }
        }
    }
    report
}

/// What the audit log says for a ref whose name held a secret.
const WITHHELD: &str = "(withheld: the name holds a secret)";

/// The updates without their names, for a report whose names may hold a
/// secret: found there, or not scanned yet.
fn withheld(updates: Vec<RefUpdate>) -> Vec<RefUpdate> {
    updates
        .into_iter()
        .map(|u| RefUpdate {
            name: WITHHELD.into(),
            ..u
        })
        .collect()
}

/// `text` with whatever the DLP engine finds in it redacted
/// ([`Engine::redact`]): for messages that quote a path the agent chose.
fn redact(engine: &Engine, text: &str) -> String {
    String::from_utf8_lossy(&engine.redact(text.as_bytes()).0).into_owned()
}

/// A finding in a file whose name holds a secret reports no path: the name
/// would print the secret (its own finding says `file name`).
fn withhold_secret_paths(engine: &Engine, findings: &mut [FindingReport]) {
    for f in findings {
        if f.path
            .as_deref()
            .is_some_and(|p| !engine.scan(p.as_bytes()).is_empty())
        {
            f.path = Some(WITHHELD_PATH.into());
        }
    }
}

/// What a report says for a path that holds a secret.
const WITHHELD_PATH: &str = "(path withheld: it holds a secret)";

/// The refusal for a push the gate could not scan; its message may quote a
/// path, redacted.
fn scan_refusal(e: ScanError, updates: Vec<RefUpdate>, engine: &Engine) -> Report {
    match e {
        ScanError::TooLarge(why) => Report::block(
            "too-large",
            format!(
                "push refused: {}; nothing was sent upstream",
                redact(engine, &why)
            ),
            updates,
        ),
        ScanError::Git(why) => Report::block(
            "malformed",
            format!(
                "push refused: the gate could not scan it ({})",
                redact(engine, &why)
            ),
            updates,
        ),
    }
}

/// The refusal of a push with a line that is no `<old> <new> <ref>`. A
/// ref name with a line break in it reaches the hook as two lines, the
/// second of them usually one of these.
fn unreadable(updates: Vec<RefUpdate>) -> Report {
    Report::block(
        "malformed",
        "push refused: unreadable ref update (a ref name with a line break?); \
         nothing was sent upstream"
            .into(),
        // Refused before the names are scanned: none goes to the log.
        withheld(updates),
    )
}

/// A ref name as a refusal quotes it: secrets redacted, then quoted and
/// escaped (`"refs/heads/a\r"`), so no control character the agent put
/// in it reaches a terminal or the log raw.
fn quoted_name(engine: &Engine, name: &str) -> String {
    format!("{:?}", redact(engine, name))
}

/// The refusal of a push naming refs git would not create (see
/// [`policy::ref_name_problem`]), or `None`.
fn bad_ref_names(updates: &[RefUpdate], engine: &Engine) -> Option<Report> {
    let bad: Vec<String> = updates
        .iter()
        .filter_map(|u| {
            let why = policy::ref_name_problem(&u.name)?;
            Some(format!("{}: {why}", quoted_name(engine, &u.name)))
        })
        .collect();
    if bad.is_empty() {
        return None;
    }
    let mut msg = String::from(
        "push refused: not a valid ref name (git would not create it); nothing was sent upstream",
    );
    for b in bad {
        msg.push_str("\n  ");
        msg.push_str(&b);
    }
    // The names are not scanned yet: the log gets them redacted in the
    // message only.
    Some(Report::block("git-policy", msg, withheld(updates.to_vec())))
}

fn decide(cfg: &HookConfig, env: &[(String, Secret)], input: impl BufRead) -> Report {
    let mut updates = Vec::new();
    // Lines end at `\n` only: a `\r` receive-pack passes on is part of the
    // name (and refused with it), not dropped as a line ending would be.
    for line in input.split(b'\n') {
        let Some(line) = line.ok().and_then(|l| String::from_utf8(l).ok()) else {
            return unreadable(updates);
        };
        if line.is_empty() {
            continue;
        }
        let Some(u) = RefUpdate::parse(&line) else {
            return unreadable(updates);
        };
        updates.push(u);
        if updates.len() > cfg.limits.max_refs {
            return Report::block(
                "too-large",
                format!("push refused: more than {} refs", cfg.limits.max_refs),
                withheld(updates),
            );
        }
    }
    let git = Git {
        env,
        limits: &cfg.limits,
    };

    // (a) the names of the refs, before anything prints or logs them, and
    // the ref policy.
    let engine_started = std::time::Instant::now();
    let mut builder = Engine::builder();
    for s in &cfg.known_secrets {
        if s.len() >= MIN_KNOWN_SECRET_LEN {
            builder = builder.known_secret(s);
        }
    }
    let engine = match builder.build() {
        Ok(e) => e,
        Err(e) => return Report::block("malformed", format!("gate error: {e}"), updates),
    };
    let engine_ms = millis(engine_started);
    // Before anything else looks at the names: receive-pack checks their
    // format only after this hook, and the upstream push must not be
    // built from a name git would split or refuse.
    if let Some(refused) = bad_ref_names(&updates, &engine) {
        return refused;
    }
    let in_names = tips::scan_ref_names(&updates, &engine);
    if !in_names.is_empty() {
        let mut r = Report::block("git-secret", String::new(), withheld(updates));
        r.message = Some(format!("{} finding(s)", in_names.len()));
        r.findings = in_names;
        return r;
    }
    let policy = Policy {
        push: cfg.push.clone(),
        protect: cfg.protect.clone(),
    };
    let mut refusals = Vec::new();
    let mut forwarded = Vec::new();
    for u in &updates {
        let mut ff = false;
        let checked = policy.check(u, || {
            ff = git.is_ancestor(&u.old, &u.new);
            ff
        });
        match checked {
            Ok(()) => {
                if !u.is_create() && !u.is_delete() && !ff {
                    // The closure is not called for unprotected refs.
                    ff = git.is_ancestor(&u.old, &u.new);
                }
                forwarded.push((u.clone(), ff));
            }
            Err(r) => refusals.push(r.message(&u.name)),
        }
    }
    if !refusals.is_empty() {
        let mut msg = String::from("push refused by the branch policy; nothing was sent upstream");
        for r in refusals {
            msg.push_str("\n  ");
            msg.push_str(&r);
        }
        return Report::block("git-policy", msg, updates);
    }

    // (b) DLP scan of every new commit, and of the tags on the way to them.
    let scan_started = std::time::Instant::now();
    let mut tag_findings = Vec::new();
    let tips = match tips::commits_of(&git, &updates, &engine, &mut tag_findings) {
        Ok(t) => t,
        Err(TipError::NotACommit { name, kind }) => {
            return Report::block(
                "git-policy",
                format!(
                    "push refused: `{name}` points to a {kind}; only commits and tags of \
                     commits are forwarded; nothing was sent upstream"
                ),
                updates,
            );
        }
        Err(TipError::Scan(e)) => return scan_refusal(e, updates, &engine),
    };
    let tips: Vec<&str> = tips.iter().map(String::as_str).collect();
    let scanned = scan::scan_push(&git, &tips, &engine);
    let scan_ms = millis(scan_started);
    let outcome = match scanned {
        Ok(mut o) => {
            o.timings.engine_ms = engine_ms;
            tag_findings.append(&mut o.findings);
            o.findings = tag_findings;
            o
        }
        Err(e) => return scan_refusal(e, updates, &engine),
    };
    if !outcome.findings.is_empty() {
        let mut outcome = outcome;
        withhold_secret_paths(&engine, &mut outcome.findings);
        let mut r = Report::block("git-secret", String::new(), updates);
        r.commits = outcome.commits;
        r.message = Some(format!("{} finding(s)", outcome.findings.len()));
        r.findings = outcome.findings;
        r.scan_ms = scan_ms;
        r.timings = outcome.timings;
        return r;
    }

    // (c) forward upstream.
    let mut push_env: Vec<(String, Secret)> = env.to_vec();
    push_env.extend(
        cfg.upstream_env
            .iter()
            .map(|(k, v)| (k.clone(), Secret::new(v.clone()))),
    );
    let secrets: Vec<&str> = cfg.known_secrets.iter().map(String::as_str).collect();
    if forwarded.is_empty() {
        let mut r = Report::block("malformed", "nothing to push".into(), updates);
        r.decision = "allow".into();
        r.reason = None;
        return r;
    }
    let push_started = std::time::Instant::now();
    let pushed = mirror::push_upstream(
        &cfg.url,
        &forwarded,
        &push_env,
        &secrets,
        upstream_timeout(cfg, std::time::SystemTime::now()),
    );
    let upstream_ms = millis(push_started);
    match pushed {
        Ok(_) => Report {
            decision: "allow".into(),
            reason: None,
            refs: updates,
            commits: outcome.commits,
            findings: Vec::new(),
            message: Some(format!(
                "scanned {} new commit(s); forwarded to the upstream",
                outcome.commits
            )),
            scan_ms,
            upstream_ms,
            timings: outcome.timings,
        },
        Err(why) => {
            let mut r = Report::block(
                "upstream-error",
                format!("push refused: the upstream refused it: {why}"),
                updates,
            );
            r.commits = outcome.commits;
            r.scan_ms = scan_ms;
            r.upstream_ms = upstream_ms;
            r.timings = outcome.timings;
            r
        }
    }
}

/// How long the upstream push may take: the limit, but ending a second
/// before the request's deadline, so the hook kills the push's process
/// group before the gate kills the hook (which would leave that group
/// running).
fn upstream_timeout(cfg: &HookConfig, now: std::time::SystemTime) -> std::time::Duration {
    let limit = std::time::Duration::from_secs(cfg.limits.upstream_timeout_secs);
    let Some(deadline) = cfg.deadline_unix_ms else {
        return limit;
    };
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let left = std::time::Duration::from_millis(deadline).saturating_sub(now);
    limit.min(left.saturating_sub(std::time::Duration::from_secs(1)))
}

fn millis(t: std::time::Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gate's config entries for receive-pack stay behind; the rule
    /// that no git child reads the system or a global config does not.
    #[test]
    fn children_never_read_the_system_or_global_config() {
        let given = [
            ("PATH", "/usr/bin"),
            (HOOK_ENV, "{}"),
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", "http.extraHeader"),
            ("GIT_CONFIG_VALUE_0", "Authorization: Bearer x"),
            ("GIT_CONFIG_PARAMETERS", "'core.x'='y'"),
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ];
        let env = child_env(given.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let shown: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        assert_eq!(
            shown,
            [
                ("PATH", "/usr/bin"),
                ("GIT_CONFIG_NOSYSTEM", "1"),
                ("GIT_CONFIG_GLOBAL", "/dev/null")
            ]
        );
        // Set whatever came in (nothing, or another file).
        let env = child_env([("GIT_CONFIG_GLOBAL".to_string(), "/tmp/x".to_string())].into_iter());
        assert!(
            env.iter()
                .any(|(k, v)| k == "GIT_CONFIG_GLOBAL" && v.expose() == "/dev/null")
        );
        assert!(!env.iter().any(|(_, v)| v.expose() == "/tmp/x"));
    }

    #[test]
    fn messages_quoting_a_secret_path_are_redacted() {
        let secret = "gt-upstream-token-5f2c9a71d04e8b36";
        let engine = Engine::builder().known_secret(secret).build().unwrap();
        let text = format!("commit abc adds more than 5 bytes to notes/{secret}.txt");
        let out = redact(&engine, &text);
        assert!(!out.contains(secret), "{out}");
        assert!(out.contains("[REDACTED:known-secret]"), "{out}");
        assert!(
            out.starts_with("commit abc adds more than 5 bytes to notes/"),
            "{out}"
        );
        assert!(out.ends_with(".txt"), "{out}");
        assert_eq!(redact(&engine, "nothing here"), "nothing here");
    }

    fn config() -> HookConfig {
        HookConfig {
            repo: "app".into(),
            url: "https://example.invalid/app.git".into(),
            push: vec!["*".into()],
            protect: vec!["main".into()],
            limits: Limits::default(),
            known_secrets: vec!["gt-upstream-token-5f2c9a71d04e8b36".into()],
            upstream_env: Vec::new(),
            report: None,
            deadline_unix_ms: None,
        }
    }

    #[test]
    fn the_upstream_push_ends_before_the_request_deadline() {
        use std::time::{Duration, UNIX_EPOCH};
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut cfg = config();
        cfg.limits.upstream_timeout_secs = 300;
        assert_eq!(upstream_timeout(&cfg, now), Duration::from_secs(300));
        cfg.deadline_unix_ms = Some(1_000_000_000 + 3_600_000);
        assert_eq!(upstream_timeout(&cfg, now), Duration::from_secs(300));
        cfg.deadline_unix_ms = Some(1_000_000_000 + 60_500);
        assert_eq!(upstream_timeout(&cfg, now), Duration::from_millis(59_500));
        cfg.deadline_unix_ms = Some(1_000_000_000 - 5);
        assert_eq!(upstream_timeout(&cfg, now), Duration::ZERO);
    }

    /// Refused before git runs at all (no repository here): the whole
    /// push, naming each bad ref escaped, secrets in it redacted.
    #[test]
    fn bad_ref_names_refuse_the_push() {
        let z = "0".repeat(40);
        let a = "a".repeat(40);
        let input = format!(
            "{z} {a} refs/heads/ok\n{z} {a} refs/heads/agent/x:refs/heads/exfil\n\
             {z} {a} refs/heads/x\x1b[2J\r\n{z} {a} refs/heads/gt-upstream-token-5f2c9a71d04e8b36..\n"
        );
        let mut err = Vec::new();
        let r = run_with(&config(), &[], input.as_bytes(), &mut err);
        assert_eq!(r.decision, "block");
        assert_eq!(r.reason.as_deref(), Some("git-policy"));
        assert!(r.refs.iter().all(|u| u.name == WITHHELD), "{r:?}");
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains(r#""refs/heads/agent/x:refs/heads/exfil": it holds one of"#),
            "{err}"
        );
        assert!(
            err.contains(r#""refs/heads/x\u{1b}[2J\r": it holds a control"#),
            "{err}"
        );
        assert!(err.contains("[REDACTED:known-secret]"), "{err}");
        assert!(!err.contains("gt-upstream-token"), "{err}");
        assert!(!err.contains("refs/heads/ok"), "only the bad names: {err}");
        assert!(!err.contains(['\x1b', '\r']), "{err:?}");
        assert!(!r.message.unwrap().contains('\x1b'));
    }

    #[test]
    fn a_line_that_is_no_update_refuses_the_push() {
        let z = "0".repeat(40);
        let a = "a".repeat(40);
        for input in [
            format!("{z} {a} refs/heads/x\nrefs/heads/exfil\n").into_bytes(),
            b"\xff\xfe\n".to_vec(),
        ] {
            let mut err = Vec::new();
            let r = run_with(&config(), &[], input.as_slice(), &mut err);
            assert_eq!(r.reason.as_deref(), Some("malformed"));
            assert!(r.refs.iter().all(|u| u.name == WITHHELD), "{r:?}");
        }
    }
}
