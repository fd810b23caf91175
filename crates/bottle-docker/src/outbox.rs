//! The outbox: what the agent made in its git repositories, saved to the
//! host before the bottle is removed (`docker.md`, "Teardown").
//!
//! At the end of launch [`snapshot`] records the object ids every ref of
//! `/workspace` and each `/workspace/<name>` repository points at. At
//! teardown [`save`] writes, per repository, a `git bundle` of every ref
//! and commit not reachable from those ids (nor from remote-tracking refs,
//! which hold what came from upstream) and a patch of uncommitted changes:
//! staged, unstaged and untracked files that are not ignored, diffed from a
//! scratch copy of the index so the agent's own index is left alone.
//!
//! Git runs in the agent container as uid 1000 through exec; the bytes come
//! back over the exec's stdout, bounded by [`MAX_ARTIFACT`] on both sides,
//! and under a deadline. The whole save is bounded too ([`Bounds`]): the
//! agent chooses how many repositories there are and what git does in them
//! (a clean filter that sleeps), and the files stay on the host.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::engine::{Engine, EngineError};
use crate::exec::{self, Chunk, Exec};

/// Largest bundle or patch taken out of a bottle (1 GiB).
pub const MAX_ARTIFACT: u64 = 1024 * 1024 * 1024;
/// Deadline for listing the repositories and their refs.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for producing and copying out one bundle or patch.
pub const ARTIFACT_TIMEOUT: Duration = Duration::from_secs(600);
/// Most repositories saved from one bottle.
pub const MAX_REPOS: usize = 64;
/// Most bytes one bottle's outbox takes on the host, all files together.
pub const MAX_OUTBOX: u64 = 4 * 1024 * 1024 * 1024;
/// Deadline for the whole save, every repository together.
pub const SAVE_TIMEOUT: Duration = Duration::from_secs(900);
/// Most refs per repository kept from a snapshot; past this the rest are
/// dropped, so more (never less) goes into the bundle.
pub const MAX_SNAPSHOT_IDS: usize = 100_000;
/// The workspace inside the agent container.
pub const WORKSPACE: &str = "/workspace";

/// The agent's user: git runs as it, so files it creates stay its own.
const AGENT_UID: &str = "1000";

/// Why part of the outbox could not be saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the {what} of `{repo}` is over {limit} bytes and was not saved")]
    TooLarge {
        repo: String,
        what: &'static str,
        limit: u64,
    },
    #[error("the {what} of `{repo}` was not saved: the container's git said: {stderr}")]
    Git {
        repo: String,
        what: &'static str,
        stderr: String,
    },
    #[error(
        "the {what} of `{repo}` was not saved: what the container gave does not start as a {what} does"
    )]
    NotAnArtifact { repo: String, what: &'static str },
    #[error("the {what} of `{repo}` took longer than {limit:?} and was not saved")]
    Timeout {
        repo: String,
        what: &'static str,
        limit: Duration,
    },
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("listing the repositories in `{WORKSPACE}` took longer than {0:?}")]
    SnapshotTimeout(Duration),
    #[error("the save was interrupted; what was saved before is kept")]
    Interrupted,
    #[error(
        "the outbox reached its bound ({bound}): {skipped} of the workspace's repositories were not saved, or not in full"
    )]
    Bounded { bound: String, skipped: usize },
}

/// What one save may take: repositories, bytes on the host, time.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub repos: usize,
    pub bytes: u64,
    pub time: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            repos: MAX_REPOS,
            bytes: MAX_OUTBOX,
            time: SAVE_TIMEOUT,
        }
    }
}

/// The object ids each repository's refs pointed at when the agent started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartRefs {
    repos: BTreeMap<String, Vec<String>>,
}

/// What [`save`] wrote.
#[derive(Debug, Default)]
pub struct Saved {
    /// Created only when something was new.
    pub dir: Option<PathBuf>,
    pub files: Vec<PathBuf>,
    pub failures: Vec<OutboxError>,
}

/// Record the refs of every repository in the workspace.
pub async fn snapshot(engine: &Engine, container: &str) -> Result<StartRefs, OutboxError> {
    let run = exec::run(
        engine,
        container,
        Exec {
            cmd: sh(SNAPSHOT_SCRIPT, &[]),
            user: Some(AGENT_UID.into()),
            ..Default::default()
        },
    );
    let out = tokio::time::timeout(SNAPSHOT_TIMEOUT, run)
        .await
        .map_err(|_| OutboxError::SnapshotTimeout(SNAPSHOT_TIMEOUT))??;
    Ok(StartRefs::parse(&out.stdout_text()))
}

/// Save a bundle and a patch for each repository in the workspace into
/// `dir` (created 0700 on the first file; files 0600). `start` is `None`
/// when the refs at the start are unknown: then every commit not on a
/// remote-tracking ref counts as new. Every repository is tried even when
/// one fails.
pub async fn save(
    engine: &Engine,
    container: &str,
    start: Option<&StartRefs>,
    dir: &Path,
) -> Saved {
    save_within(engine, container, start, dir, Bounds::default()).await
}

/// [`save`] within `bounds`: past one, the rest is not saved and the
/// failure says so (`/workspace` itself comes first, then the others in
/// name order).
pub async fn save_within(
    engine: &Engine,
    container: &str,
    start: Option<&StartRefs>,
    dir: &Path,
    bounds: Bounds,
) -> Saved {
    let began = Instant::now();
    let mut saved = Saved::default();
    let repos = match snapshot(engine, container).await {
        Ok(now) => now.repos.into_keys().collect::<Vec<_>>(),
        Err(e) => {
            saved.failures.push(e);
            return saved;
        }
    };
    let total = repos.len();
    let mut bytes_left = bounds.bytes;
    let mut names = Vec::new();
    for (done, repo) in repos.into_iter().enumerate() {
        let time_left = bounds.time.saturating_sub(began.elapsed());
        let bound = if done == bounds.repos {
            Some(format!("{} repositories", bounds.repos))
        } else if bytes_left == 0 {
            Some(format!("{} bytes in all", bounds.bytes))
        } else if time_left.is_zero() {
            Some(format!("{:?} in all", bounds.time))
        } else {
            None
        };
        if let Some(bound) = bound {
            saved.failures.push(OutboxError::Bounded {
                bound,
                skipped: total - done,
            });
            break;
        }
        let base = unique(file_stem(&repo), &mut names);
        let ids = start
            .and_then(|s| s.repos.get(&repo))
            .map(|ids| ids.join("\n"))
            .unwrap_or_default();
        let artifacts = [
            ("bundle", BUNDLE_SCRIPT, format!("{base}.bundle"), ids),
            (
                "patch",
                PATCH_SCRIPT,
                format!("{base}.patch"),
                String::new(),
            ),
        ];
        for (what, script, file, stdin) in artifacts {
            let path = dir.join(file);
            let limits = Limits {
                bytes: bytes_left.min(MAX_ARTIFACT),
                time: bounds
                    .time
                    .saturating_sub(began.elapsed())
                    .min(ARTIFACT_TIMEOUT),
            };
            let run = Run {
                engine,
                container,
                repo: &repo,
                what,
                script,
                limits,
            };
            match artifact(run, stdin, dir, &path).await {
                Ok(Some(written)) => {
                    bytes_left = bytes_left.saturating_sub(written);
                    saved.dir = Some(dir.to_path_buf());
                    saved.files.push(path);
                }
                Ok(None) => {}
                Err(e) => saved.failures.push(e),
            }
        }
    }
    saved
}

// === impl Saved ===

impl Saved {
    /// A save stopped part way (its future dropped): the files completed in
    /// `dir` so far. One being written when it stopped was removed by its
    /// writer.
    pub fn interrupted(dir: &Path) -> Saved {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        Saved {
            dir: (!files.is_empty()).then(|| dir.to_path_buf()),
            files,
            failures: vec![OutboxError::Interrupted],
        }
    }
}

// === impl StartRefs ===

impl StartRefs {
    /// Read the snapshot text: `repo PATH` lines, each followed by the
    /// object ids of its refs. Paths outside the workspace and ids that are
    /// not hex are dropped: the text comes from the agent's container.
    pub fn parse(text: &str) -> StartRefs {
        let mut repos: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut current: Option<&mut Vec<String>> = None;
        for line in text.lines() {
            if let Some(path) = line.strip_prefix("repo ") {
                current = if is_repo_path(path) {
                    Some(repos.entry(path.to_string()).or_default())
                } else {
                    None
                };
            } else if let Some(ids) = current.as_mut()
                && is_object_id(line)
                && ids.len() < MAX_SNAPSHOT_IDS
            {
                ids.push(line.to_string());
            }
        }
        for ids in repos.values_mut() {
            ids.sort();
            ids.dedup();
        }
        StartRefs { repos }
    }

    /// The same text [`StartRefs::parse`] reads, for the state folder.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (repo, ids) in &self.repos {
            out.push_str("repo ");
            out.push_str(repo);
            out.push('\n');
            for id in ids {
                out.push_str(id);
                out.push('\n');
            }
        }
        out
    }

    /// Repository paths in the container.
    pub fn repos(&self) -> impl Iterator<Item = &str> {
        self.repos.keys().map(String::as_str)
    }
}

// Lists `/workspace` and each `/workspace/<name>` that is the top of a git
// work tree, each with the object ids of HEAD and every ref.
pub(crate) const SNAPSHOT_SCRIPT: &str = r#"
for d in /workspace /workspace/*; do
  [ -d "$d" ] || continue
  top=$(git -c safe.directory='*' -C "$d" rev-parse --show-toplevel 2>/dev/null) || continue
  [ "$top" = "$d" ] || continue
  printf 'repo %s\n' "$d"
  git -c safe.directory='*' -C "$d" rev-parse -q --verify HEAD 2>/dev/null
  git -c safe.directory='*' -C "$d" for-each-ref --format='%(objectname)' 2>/dev/null
done
exit 0
"#;

// $1 repo, $2 limit; stdin: object ids at the start. Exit 0 with no output
// when nothing is new, 3 when too large.
const BUNDLE_SCRIPT: &str = r#"
set -e
cd "$1"
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
g() { git -c safe.directory='*' "$@"; }
cat > "$t/start"
g for-each-ref --format='%(objectname)' refs/remotes >> "$t/start"
g cat-file --batch-check='%(objectname)' < "$t/start" | grep -v ' missing$' | sed 's/^/^/' > "$t/not" || true
if ! g bundle create "$t/out" --all --stdin < "$t/not" 2> "$t/err"; then
  if grep -q 'empty bundle' "$t/err"; then exit 0; fi
  cat "$t/err" >&2
  exit 1
fi
size=$(wc -c < "$t/out")
if [ "$size" -gt "$2" ]; then echo "$size bytes" >&2; exit 3; fi
cat "$t/out"
"#;

// $1 repo, $2 limit. Staged, unstaged and untracked (not ignored) changes
// against HEAD, through a scratch index; the agent's index is only read.
const PATCH_SCRIPT: &str = r#"
set -e
cd "$1"
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
g() { git -c safe.directory='*' -c core.quotepath=off "$@"; }
idx=$(g rev-parse --git-path index)
if [ -f "$idx" ]; then cp "$idx" "$t/index"; fi
export GIT_INDEX_FILE="$t/index"
g add -A -- . 2> "$t/err" || { cat "$t/err" >&2; exit 1; }
base=$(g rev-parse -q --verify 'HEAD^{tree}' 2>/dev/null || g hash-object -t tree /dev/null)
g diff --cached --binary --no-ext-diff --no-textconv "$base" > "$t/out"
size=$(wc -c < "$t/out")
if [ "$size" -gt "$2" ]; then echo "$size bytes" >&2; exit 3; fi
cat "$t/out"
"#;

/// What one artifact may take.
#[derive(Debug, Clone, Copy)]
struct Limits {
    bytes: u64,
    time: Duration,
}

/// One artifact script to run in one repository.
struct Run<'a> {
    engine: &'a Engine,
    container: &'a str,
    repo: &'a str,
    what: &'static str,
    script: &'a str,
    limits: Limits,
}

/// Run one artifact script and stream its stdout into `path`. Returns
/// the bytes written, or `None` when nothing was new.
async fn artifact(
    run: Run<'_>,
    stdin: String,
    dir: &Path,
    path: &Path,
) -> Result<Option<u64>, OutboxError> {
    let Run {
        engine,
        container,
        repo,
        what,
        script,
        limits,
    } = run;
    let mut sink = FileSink::new(dir, path, limits.bytes, starts_of(what));
    let mut stderr = Vec::new();
    let mut on_chunk = |chunk: Chunk<'_>| match chunk {
        Chunk::Stdout(b) => sink.write(b),
        Chunk::Stderr(b) if stderr.len() < 64 * 1024 => stderr.extend_from_slice(b),
        Chunk::Stderr(_) => {}
    };
    let run = exec::run_with(
        engine,
        container,
        Exec {
            cmd: sh(script, &[repo, &limits.bytes.to_string()]),
            user: Some(AGENT_UID.into()),
            stdin: Some(stdin.into_bytes()),
            ..Default::default()
        },
        &mut on_chunk,
    );
    let result = tokio::time::timeout(limits.time, run).await;
    let code = match result {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            sink.discard();
            return Err(e.into());
        }
        Err(_) => {
            sink.discard();
            return Err(OutboxError::Timeout {
                repo: repo.into(),
                what,
                limit: limits.time,
            });
        }
    };
    let too_large = code == 3 || sink.over;
    if code != 0 || too_large {
        sink.discard();
        if too_large {
            return Err(OutboxError::TooLarge {
                repo: repo.into(),
                what,
                limit: limits.bytes,
            });
        }
        let text = String::from_utf8_lossy(&stderr);
        return Err(OutboxError::Git {
            repo: repo.into(),
            what,
            stderr: one_line(&text),
        });
    }
    if sink.wrong_start() {
        sink.discard();
        return Err(OutboxError::NotAnArtifact {
            repo: repo.into(),
            what,
        });
    }
    sink.finish()
}

/// How a bundle or a patch starts. The bytes are the container's: a
/// "bundle" that is the text `gitdir: /home/u/other` would make the
/// printed `git fetch` read another repository of the host (git takes a
/// path that is no bundle for a repository), so only what starts as the
/// artifact does is kept.
fn starts_of(what: &str) -> &'static [&'static [u8]] {
    match what {
        "bundle" => &[b"# v2 git bundle\n", b"# v3 git bundle\n"],
        _ => &[b"diff --git "],
    }
}

/// Writes exec output to a file created once its first bytes are found to
/// start as one of `starts` does, with the folder created 0700 then; stops
/// past `limit` bytes.
struct FileSink<'a> {
    dir: &'a Path,
    path: &'a Path,
    file: Option<std::fs::File>,
    limit: u64,
    written: u64,
    over: bool,
    error: Option<std::io::Error>,
    starts: &'static [&'static [u8]],
    /// The first bytes, until there are enough to check them.
    head: Vec<u8>,
    checked: bool,
    wrong: bool,
}

impl<'a> FileSink<'a> {
    fn new(dir: &'a Path, path: &'a Path, limit: u64, starts: &'static [&'static [u8]]) -> Self {
        FileSink {
            dir,
            path,
            file: None,
            limit,
            written: 0,
            over: false,
            error: None,
            starts,
            head: Vec::new(),
            checked: starts.is_empty(),
            wrong: false,
        }
    }

    /// Output came, and it does not start as it must.
    fn wrong_start(&self) -> bool {
        self.wrong || (!self.checked && !self.head.is_empty())
    }

    fn write(&mut self, b: &[u8]) {
        if self.over || self.wrong || self.error.is_some() || b.is_empty() {
            return;
        }
        self.written += b.len() as u64;
        if self.written > self.limit {
            self.over = true;
            return;
        }
        let held;
        let mut b = b;
        if !self.checked {
            self.head.extend_from_slice(b);
            let need = self.starts.iter().map(|s| s.len()).max().unwrap_or(0);
            let head = &self.head;
            if head.len() < need {
                self.wrong = !self.starts.iter().any(|s| s.starts_with(head));
                return;
            }
            self.checked = true;
            if !self.starts.iter().any(|s| head.starts_with(s)) {
                self.wrong = true;
                return;
            }
            held = std::mem::take(&mut self.head);
            b = &held;
        }
        if self.file.is_none() {
            match create_private(self.dir, self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
        }
        if let Some(f) = self.file.as_mut()
            && let Err(e) = f.write_all(b)
        {
            self.error = Some(e);
        }
    }

    fn discard(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(self.path);
        }
    }

    fn finish(mut self) -> Result<Option<u64>, OutboxError> {
        if let Some(e) = self.error.take() {
            self.discard();
            return Err(OutboxError::Write {
                path: self.path.to_path_buf(),
                source: e,
            });
        }
        let written = self.written;
        match self.file.take() {
            None => Ok(None),
            Some(f) => f
                .sync_all()
                .map(|()| Some(written))
                .map_err(|e| OutboxError::Write {
                    path: self.path.to_path_buf(),
                    source: e,
                }),
        }
    }
}

/// A save dropped while writing (interrupted) leaves no half file behind.
impl Drop for FileSink<'_> {
    fn drop(&mut self) {
        self.discard();
    }
}

/// A new file, 0600, in `dir` (made 0700 if missing); never overwrites.
pub fn create_private(dir: &Path, path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

fn sh(script: &str, args: &[&str]) -> Vec<String> {
    let mut cmd = vec!["sh".into(), "-c".into(), script.into(), "sh".into()];
    cmd.extend(args.iter().map(|a| a.to_string()));
    cmd
}

fn is_repo_path(p: &str) -> bool {
    if p == WORKSPACE {
        return true;
    }
    p.strip_prefix("/workspace/").is_some_and(|name| {
        !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.chars().any(char::is_control)
    })
}

fn is_object_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How to take a saved bundle's branches into a repository of one's own
/// (`FILE` stands for the bundle's path). `--no-tags`: git would otherwise
/// fetch the tags the agent made on those commits too, and a later
/// `git push --follow-tags` would publish them past the gate.
/// `transfer.fsckObjects`: the objects are the agent's, so git checks
/// them as it would a stranger's (malformed objects, `.gitmodules` and
/// path tricks) where the git in use supports it for bundles.
pub const FETCH_BUNDLE: &str = "git -c transfer.fsckObjects=true fetch --no-tags FILE.bundle 'refs/heads/*:refs/remotes/bottle/*'";
/// How to apply a saved patch (`FILE` stands for its path), after a look
/// at what it touches: it is the agent's, and a change to hooks
/// (`.husky/`, a `core.hooksPath` folder), build scripts or editor tasks
/// runs on the host the next time they do.
pub const APPLY_PATCH: &str =
    "git apply --stat FILE.patch, read it, then git apply --index FILE.patch";

/// Longest stem of an outbox file: with `-N`, `.bundle` and the folder it
/// stays well inside a file name's 255 bytes.
const MAX_STEM: usize = 200;

/// `workspace` for the workspace itself, else the folder's name with
/// anything but `[A-Za-z0-9._-]` replaced, never starting with a dot. A
/// name too long for a file is cut and ends with a hash of the whole name
/// (a file the system refuses to create would lose that repository's work).
fn file_stem(repo: &str) -> String {
    match repo.strip_prefix("/workspace/") {
        None => "workspace".into(),
        Some(name) => {
            let s: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let stem = format!("workspace.{}", s.trim_start_matches('.'));
            if stem.len() <= MAX_STEM {
                return stem;
            }
            let hash = crate::image::hex(&sha2::Sha256::digest(name.as_bytes()));
            // Only ASCII is left, so any byte index is a char boundary.
            format!("{}-{}", &stem[..MAX_STEM - 17], &hash[..16])
        }
    }
}

/// `stem`, or `stem-N` when a name already taken is the same but for
/// case: on a disk that ignores case (macOS's default) `App` and `app`
/// would be one file, and the second repository's work would be lost.
fn unique(stem: String, taken: &mut Vec<String>) -> String {
    let mut name = stem.clone();
    let mut n = 2;
    while taken.iter().any(|t| t.eq_ignore_ascii_case(&name)) {
        name = format!("{stem}-{n}");
        n += 1;
    }
    taken.push(name.clone());
    name
}

fn one_line(text: &str) -> String {
    let t: String = text
        .trim()
        .lines()
        .collect::<Vec<_>>()
        .join("; ")
        .chars()
        .take(200)
        .collect();
    if t.is_empty() { "no message".into() } else { t }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn snapshot_text_round_trips_and_drops_what_is_not_ours() {
        let text = format!(
            "repo /workspace\n{A}\n{B}\n{A}\nrepo /etc\n{A}\nrepo /workspace/app\nnot-an-id\n{B}\nrepo /workspace/a/b\n{A}\n"
        );
        let s = StartRefs::parse(&text);
        assert_eq!(
            s.repos().collect::<Vec<_>>(),
            ["/workspace", "/workspace/app"]
        );
        assert_eq!(s.repos["/workspace"], [A, B]);
        assert_eq!(s.repos["/workspace/app"], [B]);
        assert_eq!(StartRefs::parse(&s.to_text()), s);
        assert_eq!(StartRefs::parse(""), StartRefs::default());
    }

    #[test]
    fn repo_paths_stay_in_the_workspace() {
        assert!(is_repo_path("/workspace"));
        assert!(is_repo_path("/workspace/app"));
        for bad in [
            "/workspace/",
            "/workspace/..",
            "/workspace/a/b",
            "/etc",
            "/workspace/a\u{1b}b",
        ] {
            assert!(!is_repo_path(bad), "{bad}");
        }
    }

    #[test]
    fn file_names_are_plain_and_unique() {
        let mut taken = Vec::new();
        assert_eq!(unique(file_stem("/workspace"), &mut taken), "workspace");
        assert_eq!(
            unique(file_stem("/workspace/my app"), &mut taken),
            "workspace.my_app"
        );
        assert_eq!(
            unique(file_stem("/workspace/my_app"), &mut taken),
            "workspace.my_app-2"
        );
        assert_eq!(
            unique(file_stem("/workspace/..hidden"), &mut taken),
            "workspace.hidden"
        );
        // One file on a disk that ignores case: kept apart.
        assert_eq!(
            unique(file_stem("/workspace/App"), &mut taken),
            "workspace.App"
        );
        assert_eq!(
            unique(file_stem("/workspace/app"), &mut taken),
            "workspace.app-2"
        );
    }

    /// The command the summary and README give brings the agent's
    /// branches and none of its tags.
    #[test]
    fn the_documented_fetch_takes_branches_and_no_tags() {
        let dir = tempfile::tempdir().unwrap();
        let git = |cwd: &Path, args: &[&str]| {
            let o = std::process::Command::new("git")
                .args(args)
                .current_dir(cwd)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_AUTHOR_NAME", "a")
                .env("GIT_AUTHOR_EMAIL", "a@example.com")
                .env("GIT_COMMITTER_NAME", "a")
                .env("GIT_COMMITTER_EMAIL", "a@example.com")
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8(o.stdout).unwrap()
        };
        let (agent, user) = (dir.path().join("agent"), dir.path().join("user"));
        for d in [&agent, &user] {
            std::fs::create_dir(d).unwrap();
            git(d, &["init", "-q", "-b", "main"]);
        }
        git(&agent, &["commit", "-q", "--allow-empty", "-m", "work"]);
        git(&agent, &["tag", "v9.9.9"]);
        git(&agent, &["bundle", "create", "-q", "../x.bundle", "--all"]);

        let cmd = FETCH_BUNDLE.replace("FILE", "../x");
        let o = std::process::Command::new("sh")
            .args(["-c", &cmd])
            .current_dir(&user)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let refs = git(&user, &["for-each-ref", "--format=%(refname)"]);
        assert_eq!(refs.trim(), "refs/remotes/bottle/main", "{refs}");
    }

    #[test]
    fn a_long_folder_name_gives_a_file_name_that_can_be_created() {
        let long_a = format!("/workspace/{}", "a".repeat(255));
        let long_b = format!("/workspace/{}b", "a".repeat(254));
        let (a, b) = (file_stem(&long_a), file_stem(&long_b));
        assert!(a.len() <= MAX_STEM, "{}", a.len());
        assert_ne!(a, b, "two long names keep distinct files");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{a}-99.bundle")), b"").unwrap();
        assert_eq!(file_stem("/workspace/short"), "workspace.short");
    }

    #[test]
    fn file_sink_writes_nothing_for_no_output() {
        let tmp = std::env::temp_dir().join(format!("outbox-sink-{}", std::process::id()));
        let path = tmp.join("x.patch");
        let sink = FileSink::new(&tmp, &path, MAX_ARTIFACT, &[]);
        assert_eq!(sink.finish().unwrap(), None);
        assert!(!tmp.exists(), "no folder when nothing is new");
        let mut sink = FileSink::new(&tmp, &path, MAX_ARTIFACT, &[]);
        sink.write(b"diff");
        assert_eq!(sink.finish().unwrap(), Some(4));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tmp), 0o700);
        assert_eq!(mode(&path), 0o600);
        // Past its limit, or dropped before it finished (an interrupted
        // save), a sink leaves no file.
        let over = tmp.join("over.bundle");
        let mut sink = FileSink::new(&tmp, &over, 3, &[]);
        sink.write(b"ab");
        sink.write(b"cd");
        assert!(sink.over);
        drop(sink);
        let cut = tmp.join("cut.bundle");
        let mut sink = FileSink::new(&tmp, &cut, MAX_ARTIFACT, &[]);
        sink.write(b"half a bundle");
        assert!(cut.exists());
        drop(sink);
        assert!(!over.exists() && !cut.exists());
        let kept = Saved::interrupted(&tmp);
        assert_eq!(kept.files, vec![path.clone()]);
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    /// Attack: the container's "bundle" is `gitdir: /home/u/other`, which
    /// the printed `git fetch FILE.bundle` would read as a path to another
    /// repository of the host. Only output that starts as a bundle (or a
    /// patch) is kept, whatever the chunks it comes in.
    #[test]
    fn a_sink_keeps_only_what_starts_as_its_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("outbox");
        let run = |what: &str, chunks: &[&[u8]]| {
            let path = tmp.join(format!("x.{what}"));
            let mut sink = FileSink::new(&tmp, &path, MAX_ARTIFACT, starts_of(what));
            for c in chunks {
                sink.write(c);
            }
            let wrong = sink.wrong_start();
            let kept = if wrong { None } else { sink.finish().unwrap() };
            let exists = path.exists();
            let _ = std::fs::remove_file(&path);
            (wrong, kept, exists)
        };
        assert_eq!(
            run("bundle", &[b"gitdir: /home/u/other\n"]),
            (true, None, false)
        );
        assert_eq!(
            run("bundle", &[b"# v2 git", b" bundle\nabc"]),
            (false, Some(19), true)
        );
        assert_eq!(
            run("bundle", &[b"# v3 git bundle\n"]),
            (false, Some(16), true)
        );
        assert_eq!(
            run("bundle", &[b"# v2 git"]),
            (true, None, false),
            "cut short"
        );
        assert_eq!(run("bundle", &[b"# v4 git bundle\n"]), (true, None, false));
        assert_eq!(
            run("patch", &[b"diff --git a/x b/x\n"]),
            (false, Some(19), true)
        );
        assert_eq!(run("patch", &[b"#!/bin/sh\n"]), (true, None, false));
        assert_eq!(run("patch", &[]), (false, None, false), "nothing new");
    }
}
