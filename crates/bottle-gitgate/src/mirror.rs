//! The bare mirror of each repo, and the two ways it talks to the upstream:
//! refresh (fetch) before serving a fetch, and the upstream push a clean
//! pre-receive hook makes.
//!
//! Both run git with the credential in the child's environment only (see
//! [`crate::credentials`]); the URL on the command line never carries one.
//! Error text from git is cut to a few lines and scrubbed of secret values
//! before it goes anywhere.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bottle_secret::Secret;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::credentials::Env;
use crate::policy::RefUpdate;

/// `<state_dir>/repos`, the `GIT_PROJECT_ROOT` of http-backend.
pub fn project_root(state_dir: &Path) -> PathBuf {
    state_dir.join("repos")
}

/// `<state_dir>/repos/<name>.git`.
pub fn mirror_path(state_dir: &Path, name: &str) -> PathBuf {
    project_root(state_dir).join(format!("{name}.git"))
}

fn command(env: &Env) -> Command {
    let mut c = Command::new("git");
    c.env_clear();
    for (k, v) in env {
        c.env(k, v.expose());
    }
    c.stdin(Stdio::null()).kill_on_drop(true);
    c
}

/// Creates the bare mirror if it does not exist yet.
pub async fn ensure(state_dir: &Path, name: &str, env: &Env) -> Result<(), String> {
    let path = mirror_path(state_dir, name);
    if path.join("HEAD").exists() {
        return Ok(());
    }
    let out = command(env)
        .arg("init")
        .arg("--bare")
        .arg("--quiet")
        .arg(&path)
        .output()
        .await
        .map_err(|e| format!("running git init: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git init of the mirror failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut config = tokio::fs::OpenOptions::new()
        .append(true)
        .open(path.join("config"))
        .await
        .map_err(|e| format!("opening the mirror's config: {e}"))?;
    config
        .write_all(MIRROR_CONFIG.as_bytes())
        .await
        .map_err(|e| format!("writing the mirror's config: {e}"))?;
    Ok(())
}

/// Settings every git child reads from the mirror (receive-pack, the
/// refresh's fetch, the hook's scans and its push), none of them secret.
/// No automatic maintenance: after enough pushes git would start a
/// detached `gc`/`maintenance` outside the mirror's lock, the gate's slots
/// and process groups, with the child's environment (credentials
/// included), repacking while the gate prunes. No signature program: a
/// push certificate the gate never asked for would otherwise make
/// receive-pack run `gpg`/`gpgsm` on the agent's bytes.
const MIRROR_CONFIG: &str = "[gc]\n\tauto = 0\n\
[maintenance]\n\tauto = false\n\
[receive]\n\tautogc = false\n\
[gpg]\n\tprogram = /bin/false\n\
[gpg \"x509\"]\n\tprogram = /bin/false\n\
[gpg \"ssh\"]\n\tprogram = /bin/false\n";

/// Keeps the end of git's stderr, short, without secret values.
pub fn summarize(stderr: &str, secrets: &[&str]) -> String {
    // Redacted before lines are cut short: a secret across the cut would
    // otherwise leave its start in the message.
    let mut whole = stderr.to_string();
    for s in secrets {
        if s.len() >= 4 {
            // The header git sends first: it holds the token encoded.
            whole = whole.replace(&crate::credentials::basic_value(s), "[REDACTED]");
            whole = whole.replace(s, "[REDACTED]");
        }
    }
    let lines: Vec<&str> = whole
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(4);
    let mut text = lines[start..]
        .iter()
        .map(|l| l.chars().take(300).collect::<String>())
        .collect::<Vec<_>>()
        .join("; ");
    if text.is_empty() {
        text = "no message".into();
    }
    text
}

/// Runs git with a deadline; returns stdout or a short error.
async fn run_git(
    env: &Env,
    args: &[&std::ffi::OsStr],
    timeout: Duration,
    secrets: &[&str],
) -> Result<Vec<u8>, String> {
    let mut c = command(env);
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let run = async {
        let mut child = c.spawn().map_err(|e| format!("cannot run git: {e}"))?;
        let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err("cannot read git's output".to_string());
        };
        let (stdout, stderr, status) = tokio::join!(
            read_bounded(&mut out, MAX_GIT_STDOUT, Keep::Head),
            read_bounded(&mut err, MAX_GIT_STDERR, Keep::Tail),
            child.wait()
        );
        let status = status.map_err(|e| format!("waiting for git: {e}"))?;
        Ok((stdout, stderr, status))
    };
    let (stdout, stderr, status) = match tokio::time::timeout(timeout, run).await {
        Err(_) => return Err(format!("no answer within {}s", timeout.as_secs())),
        Ok(r) => r?,
    };
    let (stdout, over) = stdout;
    if over {
        return Err(format!("git wrote more than {MAX_GIT_STDOUT} bytes"));
    }
    if status.success() {
        Ok(stdout)
    } else {
        Err(summarize(&String::from_utf8_lossy(&stderr.0), secrets))
    }
}

/// The most of a git child's stdout kept (ref lists of the largest
/// repositories fit many times over); more is an error, not a cut list.
const MAX_GIT_STDOUT: usize = 256 * 1024 * 1024;
/// The most of its stderr kept: the upstream writes there (`remote:`
/// lines), and a hostile one must not fill the sidecar's memory; only the
/// last lines are shown anyway.
const MAX_GIT_STDERR: usize = 1024 * 1024;

/// Which end of an over-long output [`read_bounded`] keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    Head,
    /// For stderr: only its last lines are shown, and a secret cut at the
    /// bound by keeping the head would be left in them half-redacted.
    Tail,
}

/// Reads `r` to its end, keeping `limit` bytes of it (its start or its
/// end) and discarding the rest (so the child never blocks on a full
/// pipe); true when some were discarded.
async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    limit: usize,
    keep: Keep,
) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut over = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => {
                if keep == Keep::Tail && kept.len() > limit {
                    kept.drain(..kept.len() - limit);
                }
                return (kept, over);
            }
            Ok(n) if keep == Keep::Tail => {
                kept.extend_from_slice(&buf[..n]);
                over |= kept.len() > limit;
                // Drained in large steps, not on every read.
                if kept.len() > 2 * limit {
                    kept.drain(..kept.len() - limit);
                }
            }
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                over |= n > room;
            }
        }
    }
}

/// The file in a mirror that says a refresh began and has not finished.
const REFRESH_PENDING: &str = "claude-bottle-refresh-pending";

/// Fetches every branch and tag of the upstream into the mirror, pruning
/// what the upstream no longer has. `set_head` also points the mirror's
/// HEAD at the upstream's default branch (done once per process).
pub async fn refresh(
    mirror: &Path,
    url: &str,
    env: &Env,
    timeout: Duration,
    secrets: &[&str],
    set_head: bool,
) -> Result<(), String> {
    let gd = mirror.as_os_str();
    let fetch: [&std::ffi::OsStr; 10] = [
        "--git-dir".as_ref(),
        gd,
        "fetch".as_ref(),
        "--prune".as_ref(),
        "--quiet".as_ref(),
        "--no-write-fetch-head".as_ref(),
        "--".as_ref(),
        url.as_ref(),
        "+refs/heads/*:refs/heads/*".as_ref(),
        "+refs/tags/*:refs/tags/*".as_ref(),
    ];
    // The default branch comes from its own connection; asking for it
    // alongside the fetch instead of after saves a round trip on the
    // first refresh.
    let head = async {
        if !set_head {
            return Ok(None);
        }
        let ls: [&std::ffi::OsStr; 7] = [
            "--git-dir".as_ref(),
            gd,
            "ls-remote".as_ref(),
            "--symref".as_ref(),
            "--".as_ref(),
            url.as_ref(),
            "HEAD".as_ref(),
        ];
        let out = run_git(env, &ls, timeout, secrets).await?;
        let text = String::from_utf8_lossy(&out);
        Ok::<_, String>(
            text.lines()
                .find_map(|l| l.strip_prefix("ref: "))
                .and_then(|l| l.strip_suffix("\tHEAD"))
                .filter(|b| b.starts_with("refs/heads/"))
                .map(str::to_string),
        )
    };
    // Present while a refresh runs: one that failed or was killed after
    // its fetch moved refs (a timeout, the sidecar stopped) has not judged
    // what the fetch left behind, and the next one, comparing only its own
    // before and after, would never see it. The next one then removes
    // whatever no ref reaches, whatever it finds.
    let pending = mirror.join(REFRESH_PENDING);
    let interrupted = pending.exists();
    std::fs::write(&pending, b"").map_err(|e| format!("cannot mark the mirror: {e}"))?;
    let before = tips(gd, env, timeout, secrets).await?;
    let (fetched, head) = tokio::join!(run_git(env, &fetch, timeout, secrets), head);
    fetched?;
    let after = tips(gd, env, timeout, secrets).await?;
    if interrupted || left_behind(gd, env, timeout, secrets, &before, &after).await? {
        drop_unreachable(gd, env, timeout, secrets).await?;
    }
    std::fs::remove_file(&pending).map_err(|e| format!("cannot unmark the mirror: {e}"))?;
    if let Some(branch) = head? {
        let sym: [&std::ffi::OsStr; 5] = [
            "--git-dir".as_ref(),
            gd,
            "symbolic-ref".as_ref(),
            "HEAD".as_ref(),
            branch.as_ref(),
        ];
        run_git(env, &sym, timeout, secrets).await?;
    }
    Ok(())
}

/// Every branch and tag of the mirror: name → object id.
async fn tips(
    gd: &std::ffi::OsStr,
    env: &Env,
    timeout: Duration,
    secrets: &[&str],
) -> Result<std::collections::HashMap<String, String>, String> {
    let args: [&std::ffi::OsStr; 6] = [
        "--git-dir".as_ref(),
        gd,
        "for-each-ref".as_ref(),
        "--format=%(objectname) %(refname)".as_ref(),
        "refs/heads".as_ref(),
        "refs/tags".as_ref(),
    ];
    let out = run_git(env, &args, timeout, secrets).await?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, name)| (name.to_string(), id.to_string()))
        .collect())
}

/// Whether the refresh left objects behind that no ref reaches any more:
/// a tag the upstream deleted or moved (its tag object, message and all),
/// or a branch tip deleted or rewound whose commits no branch or tag
/// reaches now. One `rev-list` judges every branch tip that changed, and
/// a branch deleted after it was merged (its commits still reachable)
/// leaves nothing behind, so it costs no repack.
async fn left_behind(
    gd: &std::ffi::OsStr,
    env: &Env,
    timeout: Duration,
    secrets: &[&str],
    before: &std::collections::HashMap<String, String>,
    after: &std::collections::HashMap<String, String>,
) -> Result<bool, String> {
    let changed = |(name, old): &(&String, &String)| after.get(*name) != Some(*old);
    let mut old_tips = Vec::new();
    for (name, old) in before.iter().filter(changed) {
        if !name.starts_with("refs/heads/") {
            return Ok(true);
        }
        old_tips.push(old.as_str());
    }
    if old_tips.is_empty() {
        return Ok(false);
    }
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--git-dir".as_ref(),
        gd,
        "rev-list".as_ref(),
        "-n1".as_ref(),
    ];
    args.extend(old_tips.iter().map(|t| std::ffi::OsStr::new(*t)));
    args.extend(["--not", "--branches", "--tags"].map(std::ffi::OsStr::new));
    let out = run_git(env, &args, timeout, secrets).await?;
    Ok(!out.trim_ascii().is_empty())
}

/// Removes the objects no ref reaches. Protocol v2's upload-pack serves
/// any object the repository holds to a client that names it, reachable
/// or not: a commit the upstream's owner deleted or force-pushed away (a
/// leaked secret taken out, say) would stay fetchable by id through the
/// gate until then.
async fn drop_unreachable(
    gd: &std::ffi::OsStr,
    env: &Env,
    timeout: Duration,
    secrets: &[&str],
) -> Result<(), String> {
    let repack: [&std::ffi::OsStr; 6] = [
        "--git-dir".as_ref(),
        gd,
        "repack".as_ref(),
        "-a".as_ref(),
        "-d".as_ref(),
        "-q".as_ref(),
    ];
    run_git(env, &repack, timeout, secrets).await?;
    let prune: [&std::ffi::OsStr; 4] = [
        "--git-dir".as_ref(),
        gd,
        "prune".as_ref(),
        "--expire=now".as_ref(),
    ];
    run_git(env, &prune, timeout, secrets).await?;
    Ok(())
}

/// The refspecs and leases that forward `updates` to the upstream.
///
/// Fast-forwards and creations are plain refspecs (the upstream refuses
/// them if they are not fast-forwards from its own state). A rewrite or
/// delete the policy allowed is forced, but only with a lease on the value
/// the mirror saw, so an upstream change the gate has not seen is never
/// overwritten.
///
/// git splits a refspec at its last `:` and a lease at its first, so a
/// name that is not a valid ref name (a `:` in it, above all) would push
/// something else somewhere else. The hook refuses such names first; this
/// refuses them again, where the refspec is built.
pub fn push_args(updates: &[(RefUpdate, bool)]) -> Result<Vec<String>, String> {
    let mut leases = Vec::new();
    let mut specs = Vec::new();
    for (u, fast_forward) in updates {
        let hex = |id: &str| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit());
        if crate::policy::ref_name_problem(&u.name).is_some()
            || u.name.contains(':')
            || !hex(&u.old)
            || !hex(&u.new)
        {
            return Err(format!("the gate will not push {:?}", u.name));
        }
        if u.is_delete() {
            leases.push(format!("--force-with-lease={}:{}", u.name, u.old));
            specs.push(format!(":{}", u.name));
        } else if u.is_create() || *fast_forward {
            specs.push(format!("{}:{}", u.new, u.name));
        } else {
            leases.push(format!("--force-with-lease={}:{}", u.name, u.old));
            specs.push(format!("+{}:{}", u.new, u.name));
        }
    }
    leases.extend(specs);
    Ok(leases)
}

/// Checks that every ref `git push --porcelain` reports (`<flag>\t<from>:<to>\t
/// <summary>`) is one the gate asked for: a second line of defence should a
/// refspec ever be read differently from how it was meant.
pub fn check_porcelain(stdout: &str, updates: &[(RefUpdate, bool)]) -> Result<(), String> {
    for line in stdout.lines() {
        let mut fields = line.split('\t');
        let (Some(flag), Some(spec)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !matches!(flag, " " | "+" | "-" | "*" | "!" | "=") {
            continue;
        }
        let to = spec.rsplit_once(':').map_or(spec, |(_, to)| to);
        if !updates.iter().any(|(u, _)| u.name == to) {
            return Err(format!(
                "git push reported {to:?}, a ref the gate did not ask for"
            ));
        }
    }
    Ok(())
}

/// Runs a command to completion in a process group of its own, killing
/// the whole group after `timeout` (a hung upstream must not hold the push
/// lock forever). `git push` alone is not enough: its transport helper
/// (`git remote-https` and its `send-pack`, or `ssh`) and `pack-objects`
/// would go on without it and could finish the push after the gate said
/// it was refused and let go of the repository's lock.
fn output_with_deadline(
    mut c: std::process::Command,
    timeout: Duration,
) -> Result<(std::process::ExitStatus, String, String), String> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run git push: {e}"))?;
    let group = crate::cgi::group_of(Some(child.id()));
    // Before the child is reaped, while the group's id is still its own.
    let stop = |child: &mut std::process::Child| {
        crate::cgi::kill_group(group);
        let _ = child.kill();
        let _ = child.wait();
    };
    // Kept up to a bound, the rest read and dropped: the upstream writes
    // to stderr (`remote:` lines), and a hostile one must not fill the
    // hook's memory. Porcelain lines on stdout are one per pushed ref.
    let drain = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut p) = p {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = p.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = MAX_GIT_STDERR.saturating_sub(s.len());
                    s.extend_from_slice(&buf[..n.min(room)]);
                }
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                stop(&mut child);
                return Err(format!(
                    "the upstream gave no answer within {}s",
                    timeout.as_secs()
                ));
            }
            Err(e) => {
                stop(&mut child);
                return Err(format!("waiting for git push: {e}"));
            }
        }
    };
    Ok((
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    ))
}

/// Whether git itself says the upstream cannot push atomically. Its own
/// line only: `remote:` text (an upstream hook that echoes a commit
/// message) must not make the forward non-atomic.
fn says_no_atomic(stderr: &str) -> bool {
    stderr
        .lines()
        .any(|l| l.starts_with("fatal: the receiving end does not support --atomic"))
}

/// Pushes the updates to the upstream from inside the hook (synchronous:
/// the hook is a plain process). `env` is the hook's environment for git
/// (quarantine variables kept) plus the upstream credential.
pub fn push_upstream(
    url: &str,
    updates: &[(RefUpdate, bool)],
    env: &[(String, Secret)],
    secrets: &[&str],
    timeout: Duration,
) -> Result<String, String> {
    let args = push_args(updates)?;
    // Err((why, the upstream cannot do --atomic)).
    let attempt = |atomic: bool| -> Result<String, (String, bool)> {
        let mut c = std::process::Command::new("git");
        c.env_clear();
        for (k, v) in env {
            c.env(k, v.expose());
        }
        c.arg("push").arg("--porcelain").arg("--no-verify");
        if atomic {
            c.arg("--atomic");
        }
        // Options (leases), then the URL, then the refspecs: ref names and
        // object ids only, nothing secret.
        c.args(args.iter().filter(|a| a.starts_with("--")));
        c.arg(url);
        c.args(args.iter().filter(|a| !a.starts_with("--")));
        c.stdin(Stdio::null());
        let (status, stdout, stderr) =
            output_with_deadline(c, timeout).map_err(|why| (why, false))?;
        check_porcelain(&stdout, updates).map_err(|why| (why, false))?;
        if status.success() {
            Ok(summarize(&stdout, secrets))
        } else {
            // Porcelain lines `!\t<src>:<dst>\t[rejected] (reason)` name the
            // upstream's reason; stderr has the rest ("remote: ..." lines).
            let rejected: Vec<&str> = stdout.lines().filter(|l| l.starts_with('!')).collect();
            let mut why = summarize(&stderr, secrets);
            if !rejected.is_empty() {
                why = format!("{}; {why}", summarize(&rejected.join("\n"), secrets));
            }
            Err((why, says_no_atomic(&stderr)))
        }
    };
    match attempt(updates.len() > 1) {
        Err((_, true)) => attempt(false).map_err(|(why, _)| why),
        r => r.map_err(|(why, _)| why),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Read back through git itself, with the gate's environment: what
    /// every child of the gate sees in the mirror.
    #[tokio::test]
    async fn a_new_mirror_runs_no_maintenance_and_no_signature_program() {
        let dir = tempfile::tempdir().unwrap();
        let env = crate::credentials::base_env(dir.path());
        ensure(dir.path(), "app", &env).await.unwrap();
        for (key, want) in [
            ("gc.auto", "0"),
            ("maintenance.auto", "false"),
            ("receive.autogc", "false"),
            ("gpg.program", "/bin/false"),
            ("gpg.x509.program", "/bin/false"),
            ("gpg.ssh.program", "/bin/false"),
        ] {
            let out = command(&env)
                .arg("--git-dir")
                .arg(mirror_path(dir.path(), "app"))
                .args(["config", "--get", key])
                .output()
                .await
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want, "{key}");
        }
    }

    /// A hostile upstream's flood of `remote:` lines is read to its end
    /// (the child never blocks) and kept only up to the bound.
    #[test]
    fn git_output_is_kept_up_to_a_bound() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut data = vec![b'x'; 300 * 1024];
        data.extend_from_slice(b"the end");
        let (kept, over) = rt.block_on(read_bounded(&mut data.as_slice(), 100 * 1024, Keep::Head));
        assert_eq!((kept.len(), over), (100 * 1024, true));
        let (kept, over) = rt.block_on(read_bounded(&mut data.as_slice(), data.len(), Keep::Head));
        assert_eq!((kept.len(), over), (data.len(), false));
        // stderr keeps its end, where the lines shown are.
        let (kept, over) = rt.block_on(read_bounded(&mut data.as_slice(), 100 * 1024, Keep::Tail));
        assert_eq!((kept.len(), over), (100 * 1024, true));
        assert!(kept.ends_with(b"the end"));
    }

    /// Attack: an upstream hook that echoes the agent's commit message
    /// ("the receiving end does not support --atomic") would make the
    /// gate retry without `--atomic`, so part of a refused push could land.
    #[test]
    fn only_git_itself_can_make_a_forward_non_atomic() {
        assert!(says_no_atomic(
            "fatal: the receiving end does not support --atomic push\n"
        ));
        assert!(!says_no_atomic(
            "remote: fatal: the receiving end does not support --atomic push\n\
             error: failed to push some refs\n"
        ));
        assert!(!says_no_atomic("remote: does not support --atomic\n"));
    }

    #[test]
    fn leases_only_where_forced() {
        let z = "0".repeat(40);
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let up = |o: &str, n: &str, r: &str| RefUpdate::parse(&format!("{o} {n} {r}")).unwrap();
        let args = push_args(&[
            (up(&z, &a, "refs/heads/new"), false),
            (up(&a, &b, "refs/heads/ff"), true),
            (up(&a, &b, "refs/heads/rw"), false),
            (up(&a, &z, "refs/heads/gone"), false),
        ])
        .unwrap();
        assert_eq!(
            args,
            vec![
                format!("--force-with-lease=refs/heads/rw:{a}"),
                format!("--force-with-lease=refs/heads/gone:{a}"),
                format!("{a}:refs/heads/new"),
                format!("{b}:refs/heads/ff"),
                format!("+{b}:refs/heads/rw"),
                ":refs/heads/gone".to_string(),
            ]
        );
    }

    /// A name git would read as two (`<src>:<dst>`), or refuse, never
    /// becomes a refspec.
    #[test]
    fn no_refspec_from_a_bad_name() {
        let z = "0".repeat(40);
        let a = "a".repeat(40);
        for name in [
            "refs/heads/agent/x:refs/heads/exfil",
            "refs/heads/a\nb",
            "refs/heads/../main",
            "refs/heads//main",
            "main",
        ] {
            let u = RefUpdate {
                old: a.clone(),
                new: a.clone(),
                name: name.into(),
            };
            let e = push_args(&[(u.clone(), false)]).unwrap_err();
            assert!(e.starts_with("the gate will not push"), "{e}");
            assert!(!e.contains('\n'), "{e:?}");
            let created = RefUpdate {
                old: z.clone(),
                ..u
            };
            assert!(push_args(&[(created, true)]).is_err(), "{name:?}");
        }
    }

    #[test]
    fn porcelain_names_only_the_refs_asked_for() {
        let a = "a".repeat(40);
        let up = |r: &str| (RefUpdate::parse(&format!("{a} {a} {r}")).unwrap(), true);
        let asked = [up("refs/heads/x"), up("refs/heads/gone")];
        let ok = format!(
            "To https://up/app.git\n*\t{a}:refs/heads/x\t[new branch]\n\
             -\t:refs/heads/gone\t[deleted]\nDone\n"
        );
        assert_eq!(check_porcelain(&ok, &asked), Ok(()));
        let other = format!("To u\n*\t{a}:refs/heads/x:refs/heads/exfil\t[new branch]\nDone\n");
        let e = check_porcelain(&other, &[up("refs/heads/x")]).unwrap_err();
        assert!(e.contains("\"refs/heads/exfil\""), "{e}");
    }

    #[test]
    fn summaries_are_short_and_scrubbed() {
        let s = summarize(
            "a\n\nb\nc\nd\nfatal: token tok-secret-1 refused\n",
            &["tok-secret-1"],
        );
        assert_eq!(s, "b; c; d; fatal: token [REDACTED] refused");
        // A secret across the cut at 300 characters leaves nothing of itself.
        let secret = "tok-0123456789abcdef";
        let line = format!("{}{secret}", "x".repeat(290));
        let s = summarize(&line, &[secret]);
        assert!(!s.contains("tok-0123"), "{s}");
        // Nor the header git sends, which holds it encoded.
        let basic = crate::credentials::basic_value(secret);
        let s = summarize(
            &format!("> Authorization: Basic {basic}\nfatal: no"),
            &[secret],
        );
        assert!(!s.contains(&basic[..12]), "{s}");
    }
}
