//! `--copy-cwd`: the current folder becomes the bottle's `/workspace`
//! through a derived image (`FROM` the agent image, one `COPY` owned by uid
//! 1000), so nothing of the host is mounted.
//!
//! In a git work tree exactly what git would track is copied (tracked
//! files plus untracked files that are not ignored) and `.git`; elsewhere
//! everything but the patterns of a `.claude-bottle-ignore` file. Symbolic
//! links are copied as links, never followed, so a link cannot pull a
//! host file from outside the folder into the image.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::engine::{Engine, EngineError};

/// The most a workspace copy may hold.
pub const MAX_BYTES: u64 = 1024 * 1024 * 1024;

/// The labels come between `FROM` and `COPY` (see [`dockerfile`]).
const DOCKERFILE_FROM: &str = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n";
const DOCKERFILE_COPY: &str = "COPY --chown=1000:1000 workspace/ /workspace/\n";

/// The derived image's Dockerfile. The bottle's labels come before the
/// copy, so every image the build makes that holds the workspace carries
/// them: a build cut short (Ctrl-C, SIGHUP) leaves the steps it finished
/// as untagged images, and teardown and `cleanup` find those by label.
fn dockerfile(labels: &HashMap<String, String>) -> String {
    format!(
        "{DOCKERFILE_FROM}{}{DOCKERFILE_COPY}",
        crate::image::label_line(labels)
    )
}

/// Why the folder cannot be copied.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot read `{path}`: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("`git ls-files` failed in `{path}`: {reason}")]
    Git { path: PathBuf, reason: String },
    #[error(
        "the current folder holds {:.1} GiB to copy, over the 1 GiB limit (the largest file: `{largest}`)",
        *bytes as f64 / (1u64 << 30) as f64
    )]
    TooBig { bytes: u64, largest: PathBuf },
    #[error(
        "`--copy-cwd` copies the current folder, and `{}` {what}: every dotfile and credential in it would go into the bottle",
        path.display()
    )]
    WholeHome { path: PathBuf, what: &'static str },
    #[error(
        "`{}` is a file, not a folder: this is a linked worktree or a submodule, whose repository lives elsewhere and cannot be copied with it",
        path.display()
    )]
    GitFile { path: PathBuf },
    #[error(
        "`{}` is a git folder (a bare repository or a `.git`), not a work tree",
        path.display()
    )]
    GitDir { path: PathBuf },
    #[error("git lists `{rel}` in `{}`, which {why}", cwd.display())]
    OutsideProject {
        cwd: PathBuf,
        rel: String,
        why: &'static str,
    },
}

impl CopyError {
    pub fn hint(&self) -> &'static str {
        match self {
            CopyError::TooBig { .. } => {
                "start from a smaller folder, or list build output and data in `.gitignore` or `.claude-bottle-ignore`"
            }
            CopyError::WholeHome { .. } => "`cd` into the project's folder and start from there",
            CopyError::GitFile { .. } => {
                "start from the repository's main worktree or from a clone of it"
            }
            CopyError::GitDir { .. } => "start from a work tree (a clone) of the repository",
            CopyError::OutsideProject { .. } => {
                "a repository whose index or folders point outside it was made to copy other files; start without `--copy-cwd` and check its `.git`"
            }
            _ => "check the folder's permissions, or start without `--copy-cwd`",
        }
    }
}

/// The build context in memory and the copied paths that look like
/// secrets ([`looks_secret`]); see [`prepare`] for the streamed way.
pub struct Context {
    pub tar: Vec<u8>,
    pub files: usize,
    pub bytes: u64,
    pub secret_looking: Vec<String>,
}

/// What `--copy-cwd` will copy: listed, sized and checked against the
/// limit, not read yet.
pub struct Workspace {
    cwd: PathBuf,
    entries: Vec<(String, std::fs::Metadata)>,
    pub files: usize,
    pub bytes: u64,
    pub secret_looking: Vec<String>,
}

/// Relative paths to copy (files and links; folders are implied).
pub fn list(cwd: &Path) -> Result<Vec<String>, CopyError> {
    // A git folder itself (a bare repository, or a `.git`): its config and
    // credential store would be top-level files, copied as they are.
    if is_git_dir(cwd) {
        return Err(CopyError::GitDir {
            path: cwd.to_path_buf(),
        });
    }
    let inside_git = Command::new("git")
        .args(["rev-parse", "--is-inside-work-tree"])
        .current_dir(cwd)
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"true"));
    let mut out = Vec::new();
    if inside_git {
        // The folder's own config could name a command git runs on the
        // host (`core.fsmonitor`); this listing needs none.
        let o = Command::new("git")
            .args([
                "-c",
                "core.fsmonitor=false",
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ])
            .current_dir(cwd)
            .output()
            .map_err(|e| CopyError::Git {
                path: cwd.to_path_buf(),
                reason: e.to_string(),
            })?;
        if !o.status.success() {
            return Err(CopyError::Git {
                path: cwd.to_path_buf(),
                reason: String::from_utf8_lossy(&o.stderr).trim().to_string(),
            });
        }
        for p in o.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
            out.push(String::from_utf8_lossy(p).into_owned());
        }
        let dot_git = cwd.join(".git");
        if dot_git.is_file() {
            return Err(CopyError::GitFile { path: dot_git });
        }
        if dot_git.exists() {
            walk(cwd, Path::new(".git"), &[], &mut out)?;
        }
    } else {
        let ignore: Vec<String> = read_ignore_file(&cwd.join(".claude-bottle-ignore"))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.trim_matches('/').to_string())
            .collect();
        walk(cwd, Path::new(""), &ignore, &mut out)?;
    }
    // Whichever way the folder was listed (an untracked bare repository in
    // a work tree comes file by file from `ls-files`), credential stores
    // in git folders stay out.
    out.retain(|p| !never_copied_in_git(cwd, p));
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(
    root: &Path,
    rel: &Path,
    ignore: &[String],
    out: &mut Vec<String>,
) -> Result<(), CopyError> {
    let dir = root.join(rel);
    let read = |e| CopyError::Read {
        path: dir.clone(),
        source: e,
    };
    for entry in std::fs::read_dir(&dir).map_err(read)? {
        let entry = entry.map_err(read)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = rel.join(&name);
        let shown = path.to_string_lossy().into_owned();
        if ignore.iter().any(|p| glob(p, &name) || glob(p, &shown)) {
            continue;
        }
        let ft = entry.file_type().map_err(read)?;
        if ft.is_dir() {
            walk(root, &path, ignore, out)?;
        } else if ft.is_file() || ft.is_symlink() {
            out.push(shown);
        }
    }
    Ok(())
}

/// The longest `.claude-bottle-ignore` read.
const MAX_IGNORE_FILE: u64 = 64 * 1024;

/// The text of `.claude-bottle-ignore`, empty when there is none. The
/// folder may be anyone's (a clone): a link to `/dev/zero` or a FIFO
/// there must not hang or fill the CLI, so only a regular file of at most
/// 64 KiB is read.
fn read_ignore_file(path: &Path) -> Result<String, CopyError> {
    use std::io::Read;
    let read = |e| CopyError::Read {
        path: path.to_path_buf(),
        source: e,
    };
    let refuse = |reason: &str| read(io::Error::other(reason.to_string()));
    let listed = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(read(e)),
        Ok(m) if !m.is_file() => return Err(refuse("not a regular file")),
        Ok(m) => m,
    };
    let mut text = Vec::new();
    open_as_listed(path, &listed)
        .map_err(read)?
        .take(MAX_IGNORE_FILE + 1)
        .read_to_end(&mut text)
        .map_err(read)?;
    if text.len() as u64 > MAX_IGNORE_FILE {
        return Err(refuse("larger than 64 KiB"));
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// `*` matches any run of characters, `?` one; everything else itself.
/// Iterative, with one point to come back to (the last `*`): time is at
/// most the product of the lengths, whatever the pattern (a recursive
/// matcher took exponential time on `*a*a*a*a…c`, and a stack frame per
/// `*` on a line of them).
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                // The last `*` takes one more character.
                Some((sp, sn)) => {
                    star = Some((sp, sn + 1));
                    pi = sp + 1;
                    ni = sn + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Whether a copied path looks like it holds a secret: `.env*`, keys and
/// certificates (`*.pem`, `*.key`, `*.p12`, `*.pfx`, `*.jks`,
/// `*.keystore`, `*.ppk`, `id_*`), and the credential files of common
/// tools (`.netrc`, `.git-credentials`, `.npmrc`, `.pypirc`, `.pgpass`,
/// `.aws/credentials`, `.docker/config.json`, `.kube/config`, …). Names
/// are compared without case.
pub fn looks_secret(path: &str) -> bool {
    const NAMES: &[&str] = &[
        ".netrc",
        "_netrc",
        ".git-credentials",
        ".npmrc",
        ".pypirc",
        ".pgpass",
        ".htpasswd",
        ".vault-token",
        ".s3cfg",
        "credentials.json",
        "credentials.toml",
        "client_secret.json",
        "secrets.json",
        "secrets.yaml",
        "secrets.yml",
    ];
    const EXTENSIONS: &[&str] = &[
        ".pem",
        ".key",
        ".p12",
        ".pfx",
        ".jks",
        ".keystore",
        ".ppk",
        ".kdbx",
        ".tfvars",
    ];
    // A file name only a tool's own folder makes secret.
    const IN_FOLDER: &[(&str, &str)] = &[
        (".aws", "credentials"),
        (".aws", "config"),
        (".docker", "config.json"),
        (".kube", "config"),
        (".cargo", "credentials"),
        (".gem", "credentials"),
        ("gh", "hosts.yml"),
        ("gcloud", "credentials.db"),
        ("gcloud", "application_default_credentials.json"),
    ];
    let lower = path.to_ascii_lowercase();
    let mut parts = lower.rsplit('/');
    let name = parts.next().unwrap_or(&lower);
    let folder = parts.next().unwrap_or("");
    name.starts_with(".env")
        || name.starts_with("id_")
        || NAMES.contains(&name)
        || EXTENSIONS.iter().any(|e| name.ends_with(e))
        || IN_FOLDER.iter().any(|(f, n)| *f == folder && *n == name)
}

/// Refuse to copy `/`, the user's home folder (`home`) or a folder that
/// holds it: the folder to copy is a project's, and a home holds
/// `~/.ssh`, `~/.aws`, shell histories. Compared after links are resolved.
pub fn refuse_home(cwd: &Path, home: &Path) -> Result<(), CopyError> {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (here, home) = (real(cwd), real(home));
    let what = if here.parent().is_none() {
        "is the root folder"
    } else if here == home {
        "is your home folder"
    } else if home.starts_with(&here) {
        "holds your home folder"
    } else {
        return Ok(());
    };
    Err(CopyError::WholeHome { path: here, what })
}

/// Whether `rel` names a path inside `cwd` through real folders only:
/// `Ok(false)` when a folder on the way does not exist (the path is gone),
/// an error when `rel` is absolute, has `.`/`..` parts, or passes through
/// a link or anything else that is not a folder.
fn within(cwd: &Path, rel: &str) -> Result<bool, CopyError> {
    let outside = |why| CopyError::OutsideProject {
        cwd: cwd.to_path_buf(),
        rel: rel.to_string(),
        why,
    };
    let path = Path::new(rel);
    if rel.is_empty()
        || !path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return Err(outside(
            "is not a plain path inside it (absolute, or with `.` or `..`)",
        ));
    }
    let mut folder = cwd.to_path_buf();
    let mut parts = path.components().peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            break; // the entry itself: a link there is copied as a link
        }
        folder.push(part);
        match std::fs::symlink_metadata(&folder) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(outside("goes through a link or a file, not a folder")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(CopyError::Read {
                    path: folder,
                    source: e,
                });
            }
        }
    }
    Ok(true)
}

/// List and size what `cwd` holds to copy; the home folder (`home`) or
/// `/` and an oversized folder are refused here, before a byte is read.
pub fn prepare(cwd: &Path, home: &Path) -> Result<Workspace, CopyError> {
    refuse_home(cwd, home)?;
    let mut entries = Vec::new();
    let mut bytes = 0u64;
    let mut largest = (0u64, PathBuf::new());
    for rel in list(cwd)? {
        // Paths come from the folder's own git index, which whoever made
        // the repository wrote: an absolute path, `..`, or a folder that is
        // a link would read files from outside it (`~/.ssh`).
        if !within(cwd, &rel)? {
            continue; // gone: deleted, not yet staged
        }
        let src = cwd.join(&rel);
        // A path git lists may be gone (deleted, not yet staged).
        let meta = match std::fs::symlink_metadata(&src) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(CopyError::Read {
                    path: src,
                    source: e,
                });
            }
        };
        bytes = bytes.saturating_add(meta.len());
        if meta.len() >= largest.0 {
            largest = (meta.len(), src);
        }
        entries.push((rel, meta));
    }
    if bytes > MAX_BYTES {
        return Err(CopyError::TooBig {
            bytes,
            largest: largest.1,
        });
    }
    let secret_looking = entries
        .iter()
        .map(|(rel, _)| rel)
        .filter(|rel| looks_secret(rel))
        .cloned()
        .collect();
    Ok(Workspace {
        cwd: cwd.to_path_buf(),
        files: entries.len(),
        entries,
        bytes,
        secret_looking,
    })
}

/// [`prepare`] and the whole context in memory.
pub fn context(cwd: &Path, home: &Path) -> Result<Context, CopyError> {
    let ws = prepare(cwd, home)?;
    let mut tar = Vec::new();
    ws.write_tar(&mut tar, &dockerfile(&HashMap::new()))?;
    Ok(Context {
        tar,
        files: ws.files,
        bytes: ws.bytes,
        secret_looking: ws.secret_looking,
    })
}

/// The largest file [`Workspace::holding`] reads: credential files (a
/// token, a deploy key) are small, and reading every large file of a
/// workspace twice would slow each start.
pub const CREDENTIAL_FILE_BYTES: u64 = 64 * 1024;

impl Workspace {
    /// The listed files (up to [`CREDENTIAL_FILE_BYTES`]) that hold one of
    /// `values`: the bottle's credentials, which only the sidecar may
    /// hold, must not be copied into the agent's image and workspace from
    /// a token file or key that happens to sit in the folder.
    pub fn holding(&self, values: &[&[u8]]) -> Vec<String> {
        let finders: Vec<memchr::memmem::Finder<'_>> = values
            .iter()
            .filter(|v| v.len() >= 8)
            .map(memchr::memmem::Finder::new)
            .collect();
        if finders.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (rel, meta) in &self.entries {
            if !meta.is_file() || meta.len() > CREDENTIAL_FILE_BYTES {
                continue;
            }
            let Ok(f) = open_as_listed(&self.cwd.join(rel), meta) else {
                // Gone or swapped since the listing: the copy refuses it.
                continue;
            };
            let mut text = zeroize::Zeroizing::new(Vec::new());
            if f.take(CREDENTIAL_FILE_BYTES)
                .read_to_end(&mut text)
                .is_err()
            {
                continue;
            }
            if finders.iter().any(|f| f.find(&text).is_some()) {
                out.push(rel.clone());
            }
        }
        out
    }

    /// The build context: the listed paths under `workspace/`, with the
    /// Dockerfile beside them.
    pub fn write_tar(&self, out: impl io::Write, dockerfile: &str) -> Result<(), CopyError> {
        let cwd = &self.cwd;
        let mut tar = tar::Builder::new(out);
        tar.follow_symlinks(false);
        for (rel, meta) in &self.entries {
            let src = cwd.join(rel);
            let read = |e| CopyError::Read {
                path: src.clone(),
                source: e,
            };
            let dst = format!("workspace/{rel}");
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&src).map_err(read)?;
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                tar.append_link(&mut h, &dst, &target).map_err(read)?;
            } else if meta.is_file() {
                // The file `prepare` looked at, not one swapped in since.
                let f = open_as_listed(&src, meta).map_err(read)?;
                let mut h = tar::Header::new_gnu();
                h.set_metadata(meta);
                if let Some(how) = rewrite(cwd, rel) {
                    let mut text = Vec::new();
                    f.take(crate::gitconfig::MAX_BYTES as u64 + 1)
                        .read_to_end(&mut text)
                        .map_err(read)?;
                    let text = how.apply(text);
                    h.set_size(text.len() as u64);
                    tar.append_data(&mut h, &dst, &text[..]).map_err(read)?;
                } else {
                    h.set_size(meta.len());
                    tar.append_data(&mut h, &dst, f.take(meta.len()))
                        .map_err(read)?;
                }
            }
        }
        let whole = |e| CopyError::Read {
            path: cwd.clone(),
            source: e,
        };
        let mut h = tar::Header::new_gnu();
        h.set_size(dockerfile.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, "Dockerfile", dockerfile.as_bytes())
            .map_err(whole)?;
        // An empty folder still needs `workspace/` for the COPY.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o755);
        tar.append_data(&mut h, "workspace/", io::empty())
            .map_err(whole)?;
        tar.into_inner().and_then(|mut w| w.flush()).map_err(whole)
    }
}

/// How a file under `.git` is changed on its way into the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rewrite {
    /// A repository's `config` or `config.worktree`: scrubbed of
    /// credentials ([`crate::gitconfig::scrub`]).
    Config,
    /// The legacy `remotes/<name>` and `branches/<name>` files, which
    /// hold remote URLs: their user information removed.
    Urls,
}

impl Rewrite {
    fn apply(self, text: Vec<u8>) -> Vec<u8> {
        if text.len() > crate::gitconfig::MAX_BYTES {
            return Vec::new();
        }
        match self {
            // A branch or tag named `config` is a ref, not a config file;
            // its reflog is named so too.
            Rewrite::Config if is_ref_or_log(&text) => text,
            Rewrite::Config => crate::gitconfig::scrub(&text),
            Rewrite::Urls => crate::gitconfig::strip_userinfo(&text),
        }
    }
}

/// Whether the copied path `rel` is rewritten: files named `config` or
/// `config.worktree` anywhere under `.git` (the repository's own, a
/// linked worktree's under `.git/worktrees/`, a submodule's under
/// `.git/modules/`), and legacy remote definitions.
fn rewrite(root: &Path, rel: &str) -> Option<Rewrite> {
    let mut parts = rel.rsplit('/');
    let name = parts.next()?;
    let parent = parts.next().unwrap_or("");
    let how = if name == "config" || name == "config.worktree" {
        Rewrite::Config
    } else if parent == "remotes" || parent == "branches" {
        Rewrite::Urls
    } else {
        return None;
    };
    // The names first: the git-folder test stats the path's folders.
    let inner = git_inner(root, rel)?;
    (how == Rewrite::Config || inner.contains('/')).then_some(how)
}

/// The part of `rel` (a path under `root`) inside a git folder: after its
/// last `.git` component (a repository's own, or one nested in a walked
/// folder) or its last folder that holds a repository's `HEAD` and
/// `objects` (a bare repository, `x.git` or any other name). `None`
/// outside any. A folder merely named `x.git` is not one.
fn git_inner<'a>(root: &Path, rel: &'a str) -> Option<&'a str> {
    let mut inner = None;
    let mut start = 0;
    for part in rel.split('/') {
        let end = start + part.len();
        if end < rel.len() && (part == ".git" || is_git_dir(&root.join(&rel[..end]))) {
            inner = Some(&rel[end + 1..]);
        }
        start = end + 1;
    }
    inner
}

/// A repository's git folder: a `HEAD` file and an `objects` folder.
fn is_git_dir(dir: &Path) -> bool {
    dir.join("HEAD").is_file() && dir.join("objects").is_dir()
}

/// Every line is a ref (`<oid>` or `ref: …`) or a reflog entry (`<oid>
/// <oid> …`): no git config parses as that.
fn is_ref_or_log(text: &[u8]) -> bool {
    !text.is_empty()
        && text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .all(|l| {
                let hex = l.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                l.starts_with(b"ref: ")
                    || ((hex == 40 || hex == 64) && matches!(l.get(hex), None | Some(b' ' | b'\r')))
            })
}

/// Paths in git folders that are never copied: a credential store kept in
/// the repository (`credential.helper = store --file=.git/credentials`),
/// or anything under a folder so named.
fn never_copied_in_git(root: &Path, rel: &str) -> bool {
    let credential = |p: &str| p.to_ascii_lowercase().contains("credential");
    // The name test first: the git-folder test stats the path's folders.
    credential(rel) && git_inner(root, rel).is_some_and(credential)
}

/// The workspace build's options: network mode `none`, since a `COPY`
/// needs no network and nothing else should run in this build.
fn build_options(tag: &str, base: &str) -> bollard::query_parameters::BuildImageOptions {
    crate::image::build_options(tag, Some(base), true)
}

/// Refuse a base image with `ONBUILD` triggers: they would run in the
/// workspace build, which is meant to be only the copy (docs/decisions.md,
/// "--copy-cwd scrubs git credentials, builds offline").
fn refuse_onbuild(base: &str, triggers: &[String]) -> Result<(), EngineError> {
    if triggers.is_empty() {
        return Ok(());
    }
    Err(EngineError::Api {
        what: "build the --copy-cwd image",
        reason: format!(
            "the agent image `{base}` has ONBUILD triggers ({}), which would run in the build \
             that copies the current folder",
            triggers.join("; ").replace(['\n', '\r'], " ")
        ),
    })
}

/// Sends what is written, in chunks, to the build request's body.
struct ChannelWriter(tokio::sync::mpsc::Sender<Result<bytes::Bytes, io::Error>>);

impl io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the build stopped reading"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Build `tag` from `base` plus the workspace, with the bottle's labels.
/// The context is streamed to the engine as it is read, so memory stays
/// small however large the workspace is.
pub async fn build(
    engine: &Engine,
    tag: &str,
    base: &str,
    workspace: Workspace,
    labels: HashMap<String, String>,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), EngineError> {
    let triggers = engine
        .docker
        .inspect_image(base)
        .await
        .map_err(crate::engine::api("inspect the agent image"))?
        .config
        .and_then(|c| c.on_build)
        .unwrap_or_default();
    refuse_onbuild(base, &triggers)?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let dockerfile = dockerfile(&labels);
    let packer = tokio::task::spawn_blocking(move || {
        let out = io::BufWriter::with_capacity(256 * 1024, ChannelWriter(tx.clone()));
        let packed = workspace.write_tar(out, &dockerfile);
        if let Err(e) = &packed {
            // Ends the request body with an error instead of a short tar.
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
        packed
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let built = crate::image::run_build(
        engine,
        build_options(tag, base),
        crate::image::Context::Streamed(Box::pin(body)),
        progress,
    )
    .await;
    let built = built.map_err(|reason| EngineError::Api {
        what: "build the --copy-cwd image",
        reason,
    });
    match packer.await {
        // The packer stopped because the engine stopped reading: the
        // engine's error is the one that explains it.
        Ok(Err(CopyError::Read { source, .. }))
            if source.kind() == io::ErrorKind::BrokenPipe && built.is_err() =>
        {
            built
        }
        // Reading the folder failed: that says more than the cut request.
        Ok(Err(e)) => Err(EngineError::Api {
            what: "copy the current folder",
            reason: e.to_string(),
        }),
        Err(e) => Err(crate::engine::api("copy the current folder")(e)),
        Ok(Ok(())) => built,
    }
}

/// Opens the regular file `path` only if it is still the one `listed`
/// (metadata taken when the folder was walked, links not followed): not a
/// link put in its place since, nor a file reached through a folder on the
/// way swapped for a link (any other file has another device and inode).
/// What the user approved is what is copied, not a key the swap points at.
pub(crate) fn open_as_listed(path: &Path, listed: &std::fs::Metadata) -> io::Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    let now = f.metadata()?;
    if (now.dev(), now.ino()) != (listed.dev(), listed.ino()) {
        return Err(io::Error::other("the file changed since it was listed"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every image the build makes that holds the workspace carries the
    /// bottle's labels: they come before the copy.
    #[test]
    fn the_labels_come_before_the_copy() {
        let labels = HashMap::from([(crate::labels::SLUG.to_string(), "rev".to_string())]);
        let d = dockerfile(&labels);
        let label = d.find("LABEL \"io.claude-bottle.slug\"=\"rev\"").unwrap();
        assert!(d.find("FROM ").unwrap() < label, "{d}");
        assert!(label < d.find("COPY ").unwrap(), "{d}");
    }

    /// The bottle's own credential, by value, in a file the copy would
    /// take (a token file, a deploy key kept beside the project): named,
    /// so `start` refuses. Files without it, short values and files over
    /// the read bound are not.
    #[test]
    fn files_holding_a_credential_are_named() {
        let d = tempfile::tempdir().unwrap();
        let (home, cwd) = (d.path().join("home"), d.path().join("proj"));
        std::fs::create_dir_all(cwd.join(".secrets")).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let token = "ghp_bottleTokenValue1234567890";
        std::fs::write(cwd.join(".secrets/gh-token"), format!("{token}\n")).unwrap();
        std::fs::write(cwd.join("main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(cwd.join("notes.md"), "short: abc\n").unwrap();
        let mut big = vec![b'x'; CREDENTIAL_FILE_BYTES as usize];
        big.extend_from_slice(token.as_bytes());
        std::fs::write(cwd.join("big.log"), big).unwrap();
        let ws = prepare(&cwd, &home).unwrap();
        assert_eq!(
            ws.holding(&[token.as_bytes(), b"abc"]),
            [".secrets/gh-token"]
        );
        assert!(ws.holding(&[b"not-in-any-file-123"]).is_empty());
        assert!(ws.holding(&[]).is_empty());
    }

    /// Attack: between the walk and the read, the listed file is replaced
    /// by a link to a key (or by another file). The read must refuse,
    /// not follow the link.
    #[test]
    fn a_file_swapped_after_the_listing_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("id_ed25519");
        std::fs::write(&key, "PRIVATE KEY").unwrap();
        let listed_path = d.path().join("notes.md");
        std::fs::write(&listed_path, "notes").unwrap();
        let listed = std::fs::symlink_metadata(&listed_path).unwrap();
        let mut text = String::new();
        open_as_listed(&listed_path, &listed)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "notes");

        std::fs::remove_file(&listed_path).unwrap();
        std::os::unix::fs::symlink(&key, &listed_path).unwrap();
        assert!(open_as_listed(&listed_path, &listed).is_err());

        // A regular file in its place (a hard link to the key) too.
        std::fs::remove_file(&listed_path).unwrap();
        std::fs::hard_link(&key, &listed_path).unwrap();
        let e = open_as_listed(&listed_path, &listed).unwrap_err();
        assert!(e.to_string().contains("changed since it was listed"), "{e}");
    }

    #[test]
    fn over_a_gib_is_refused_by_path() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("small"), "x").unwrap();
        // Sparse: nothing is written, the size is what counts.
        let f = std::fs::File::create(d.path().join("huge.img")).unwrap();
        f.set_len(MAX_BYTES).unwrap();
        let e = context(d.path(), Path::new("/nonexistent"))
            .err()
            .expect("refused");
        assert!(matches!(e, CopyError::TooBig { .. }), "{e}");
        assert!(e.to_string().contains("1.0 GiB"), "{e}");
        assert!(
            e.to_string().contains("huge.img"),
            "the largest is named: {e}"
        );
    }

    /// Attack: a folder whose own `.git/config` names an fsmonitor hook
    /// (a shared folder or an unpacked archive carries one; a clone does
    /// not): listing it for `--copy-cwd` must not run the hook on the host.
    #[test]
    fn listing_the_folder_runs_none_of_its_git_hooks() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("ran");
        let hook = d.path().join("hook.sh");
        std::fs::write(&hook, format!("#!/bin/sh\ntouch '{}'\n", marker.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let repo = d.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .args(args)
                .current_dir(&repo)
                .status()
                .unwrap()
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(repo.join("a"), "a").unwrap();
        git(&["add", "a"]);
        git(&["config", "core.fsmonitor", &hook.display().to_string()]);
        let files = list(&repo).unwrap();
        assert!(files.iter().any(|f| f == "a"), "{files:?}");
        assert!(
            !marker.exists(),
            "the folder's fsmonitor hook ran on the host"
        );
    }

    #[test]
    fn secret_looking_names() {
        for p in [
            ".env",
            "app/.env.local",
            "certs/server.pem",
            "home/id_ed25519",
            ".netrc",
            "_netrc",
            "ci/.git-credentials",
            "web/.npmrc",
            ".pypirc",
            "db/.pgpass",
            "backup/.aws/credentials",
            ".docker/config.json",
            "ops/.kube/config",
            "tls/server.key",
            "tls/Client.P12",
            "win/cert.pfx",
            "gcp/credentials.json",
            ".cargo/credentials.toml",
            "prod.tfvars",
        ] {
            assert!(looks_secret(p), "{p}");
        }
        for p in [
            "src/env.rs",
            "README.md",
            "identity.txt",
            "pem/readme",
            "src/key.rs",
            "docs/keys.md",
            ".git/config",
            "config.json",
            "kube/config.yaml",
            "src/credentials.rs",
            "monkey",
        ] {
            assert!(!looks_secret(p), "{p}");
        }
    }

    #[test]
    fn the_home_folder_and_root_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home/me");
        std::fs::create_dir_all(home.join("proj")).unwrap();
        std::os::unix::fs::symlink(&home, d.path().join("link")).unwrap();
        for (cwd, what) in [
            (home.clone(), "is your home folder"),
            (d.path().join("link"), "is your home folder"),
            (home.join("proj/.."), "is your home folder"),
            (d.path().join("home"), "holds your home folder"),
            (PathBuf::from("/"), "is the root folder"),
        ] {
            let e = prepare(&cwd, &home).err().expect("refused");
            assert!(matches!(e, CopyError::WholeHome { .. }), "{e}");
            assert!(e.to_string().contains(what), "{cwd:?}: {e}");
            assert!(e.hint().contains("project's folder"), "{e}");
        }
        assert!(prepare(&home.join("proj"), &home).is_ok());
        assert!(prepare(&home.join("proj"), Path::new("/nonexistent")).is_ok());
    }

    /// The copied repository: `.git/config` scrubbed yet read by git, a
    /// credential store left out, refs named `config` kept as they are.
    #[test]
    fn the_copied_git_config_holds_no_credential() {
        let d = tempfile::tempdir().unwrap();
        let git = |dir: &Path, args: &[&str]| git_at(d.path(), dir, args);
        let proj = repo_with_one_commit(d.path(), "proj", "a.txt");
        git(&proj, &["branch", "config"]);
        git(&proj, &["tag", "config.worktree"]);
        let config = proj.join(".git/config");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(
            "[remote \"origin\"]\n\turl = https://x-access-token:ghs_TOKEN1@github.com/o/r\n\
             [http \"https://github.com/\"]\n\textraheader = AUTHORIZATION: basic VE9LRU4y\n\
             [credential]\n\thelper = store --file=.git/credentials\n\
             [include]\n\tpath = /home/me/.gitconfig-secrets\n",
        );
        std::fs::write(&config, text).unwrap();
        std::fs::write(proj.join(".git/credentials"), "https://u:TOKEN3@h\n").unwrap();
        std::fs::create_dir_all(proj.join(".git/remotes")).unwrap();
        std::fs::write(
            proj.join(".git/remotes/old"),
            "URL: https://u:TOKEN4@h/r\nPull: refs/heads/main:refs/heads/old\n",
        )
        .unwrap();
        let files = list(&proj).unwrap();
        assert!(
            !files.iter().any(|f| f.contains("credentials")),
            "{files:?}"
        );

        let c = context(&proj, d.path()).unwrap();
        let out = d.path().join("out");
        tar::Archive::new(&c.tar[..]).unpack(&out).unwrap();
        let ws = out.join("workspace");
        for f in ["config", "remotes/old"] {
            let text = std::fs::read_to_string(ws.join(".git").join(f)).unwrap();
            for secret in [
                "TOKEN1", "VE9LRU4y", "TOKEN3", "TOKEN4", "helper", "secrets",
            ] {
                assert!(!text.contains(secret), "{secret} in {f}: {text}");
            }
        }
        assert_eq!(
            git(&ws, &["config", "remote.origin.url"]),
            "https://github.com/o/r\n"
        );
        assert_eq!(git(&ws, &["log", "--format=%s", "config"]), "one\n");
        assert_eq!(
            git(&ws, &["log", "--format=%s", "config.worktree"]),
            "one\n"
        );
        assert_eq!(git(&ws, &["status", "--porcelain"]), "");
    }

    /// A folder that is not itself a repository is copied by walking it,
    /// repositories inside included: their `.git` (and a bare `x.git`)
    /// are scrubbed like the top one's.
    #[test]
    fn nested_and_bare_repositories_are_scrubbed_too() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("src");
        let token = "[remote \"origin\"]\n\turl = https://x-access-token:ghs_NESTED@github.com/o/r\n\
                     [http]\n\textraheader = AUTHORIZATION: basic TkVTVEVE\n";
        for dir in ["proj/.git", "deep/er/.git", "bare.git", "mirror"] {
            std::fs::create_dir_all(top.join(dir).join("objects")).unwrap();
            std::fs::write(top.join(dir).join("config"), token).unwrap();
            std::fs::write(top.join(dir).join("HEAD"), "ref: refs/heads/main\n").unwrap();
        }
        std::fs::write(top.join("mirror/credentials"), "https://u:NESTED4@h\n").unwrap();
        // Named like a bare repository, but not one: project files.
        std::fs::create_dir_all(top.join("fixtures/repo.git")).unwrap();
        std::fs::write(
            top.join("fixtures/repo.git/config"),
            "# a comment\nplain text\n",
        )
        .unwrap();
        std::fs::write(top.join("fixtures/repo.git/credentials.rs"), "fn f() {}\n").unwrap();
        std::fs::write(top.join("proj/.git/credentials"), "https://u:NESTED3@h\n").unwrap();
        std::fs::write(top.join("proj/config"), "not git: url = https://u:KEPT@h\n").unwrap();
        let files = list(&top).unwrap();
        for gone in ["proj/.git/credentials", "mirror/credentials"] {
            assert!(!files.iter().any(|f| f == gone), "{gone}: {files:?}");
        }
        let c = context(&top, d.path()).unwrap();
        let out = d.path().join("out");
        tar::Archive::new(&c.tar[..]).unpack(&out).unwrap();
        let ws = out.join("workspace");
        for dir in ["proj/.git", "deep/er/.git", "bare.git", "mirror"] {
            let text = std::fs::read_to_string(ws.join(dir).join("config")).unwrap();
            assert!(
                !text.contains("NESTED") && !text.contains("TkVTVEVE"),
                "{dir}: {text}"
            );
            assert!(text.contains("https://github.com/o/r"), "{dir}: {text}");
        }
        // A file named `config` outside any git folder is the project's.
        let kept = std::fs::read_to_string(ws.join("proj/config")).unwrap();
        assert!(kept.contains("KEPT"), "{kept}");
        assert!(!ws.join("mirror/credentials").exists());
        assert_eq!(
            std::fs::read_to_string(ws.join("fixtures/repo.git/config")).unwrap(),
            "# a comment\nplain text\n"
        );
        assert!(ws.join("fixtures/repo.git/credentials.rs").exists());

        // Started from inside a git folder: refused, not copied as files.
        let e = list(&top.join("mirror")).expect_err("refused");
        assert!(matches!(e, CopyError::GitDir { .. }), "{e}");
        let e = list(&top.join("proj/.git")).expect_err("refused");
        assert!(matches!(e, CopyError::GitDir { .. }), "{e}");
    }

    /// Git in `dir` with `home` as HOME and no system config; its stdout.
    fn git_at(home: &Path, dir: &Path, args: &[&str]) -> String {
        let o = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", home)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    }

    /// `home/name`, a repository with one commit of file `file`.
    fn repo_with_one_commit(home: &Path, name: &str, file: &str) -> PathBuf {
        let dir = home.join(name);
        std::fs::create_dir(&dir).unwrap();
        git_at(home, &dir, &["init", "-q", "-b", "main"]);
        std::fs::write(dir.join(file), "a").unwrap();
        git_at(home, &dir, &["add", file]);
        let who = ["-c", "user.name=T", "-c", "user.email=t@e"];
        git_at(home, &dir, &[&who[..], &["commit", "-qm", "one"]].concat());
        dir
    }

    /// In a work tree, `git ls-files --others` lists an untracked bare
    /// repository file by file: its credential store stays out there too.
    #[test]
    fn an_untracked_bare_repository_keeps_its_credentials() {
        let d = tempfile::tempdir().unwrap();
        let proj = repo_with_one_commit(d.path(), "proj", "a");
        let bare = proj.join("backup.git");
        std::fs::create_dir_all(bare.join("objects")).unwrap();
        std::fs::write(bare.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(bare.join("credentials"), "https://u:TOKEN@h\n").unwrap();
        std::fs::write(bare.join("description"), "x\n").unwrap();
        let files = list(&proj).unwrap();
        assert!(
            files.contains(&"backup.git/description".to_string()),
            "{files:?}"
        );
        assert!(
            !files.iter().any(|f| f.contains("credentials")),
            "{files:?}"
        );
    }

    /// A linked worktree's `.git` is a file naming a repository elsewhere:
    /// refused with what to do, not a read error.
    #[test]
    fn a_linked_worktree_is_refused_with_a_hint() {
        let d = tempfile::tempdir().unwrap();
        let git = |dir: &Path, args: &[&str]| git_at(d.path(), dir, args);
        let main = repo_with_one_commit(d.path(), "main", "a");
        git(&main, &["worktree", "add", "-q", "../linked"]);
        let e = list(&d.path().join("linked")).expect_err("refused");
        assert!(matches!(e, CopyError::GitFile { .. }), "{e}");
        assert!(e.hint().contains("main worktree"), "{}", e.hint());
    }

    /// Attack: the repository's index lists `k/id_x`, and `k` is now a
    /// link (ignored, so git lists only the indexed path) to a folder
    /// outside the project: the file there must not be copied.
    #[test]
    fn a_linked_folder_in_an_indexed_path_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let git = |dir: &Path, args: &[&str]| git_at(d.path(), dir, args);
        let proj = repo_with_one_commit(d.path(), "proj", "a");
        std::fs::create_dir(proj.join("k")).unwrap();
        std::fs::write(proj.join("k/id_x"), "decoy").unwrap();
        git(&proj, &["add", "k/id_x"]);
        std::fs::remove_dir_all(proj.join("k")).unwrap();
        let outside = d.path().join("secret");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("id_x"), "PRIVATE KEY").unwrap();
        std::os::unix::fs::symlink(&outside, proj.join("k")).unwrap();
        std::fs::write(proj.join(".gitignore"), "/k\n").unwrap();
        assert!(list(&proj).unwrap().contains(&"k/id_x".to_string()));
        let e = prepare(&proj, Path::new("/nonexistent-home"))
            .err()
            .expect("refused");
        assert!(matches!(e, CopyError::OutsideProject { .. }), "{e}");
        assert!(e.to_string().contains("k/id_x"), "{e}");
    }

    /// Attack: between the listing (shown in the preflight) and the copy,
    /// a file or a folder on its way is swapped for a link out of the
    /// project. The copy refuses instead of reading through it.
    #[test]
    fn a_file_swapped_for_a_link_after_the_listing_is_not_read() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("secret");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("f"), "PRIVATE KEY").unwrap();
        for swap in ["f", "sub"] {
            let proj = d.path().join(format!("proj-{swap}"));
            std::fs::create_dir_all(proj.join("sub")).unwrap();
            std::fs::write(proj.join("f"), "plain").unwrap();
            std::fs::write(proj.join("sub/f"), "plain").unwrap();
            let ws = prepare(&proj, Path::new("/nonexistent-home")).unwrap();
            let target = proj.join(swap);
            if swap == "f" {
                std::fs::remove_file(&target).unwrap();
                std::os::unix::fs::symlink(outside.join("f"), &target).unwrap();
            } else {
                std::fs::remove_dir_all(&target).unwrap();
                std::os::unix::fs::symlink(&outside, &target).unwrap();
            }
            let mut tar = Vec::new();
            let copied = ws.write_tar(&mut tar, "FROM x\n");
            assert!(copied.is_err(), "{swap}: copied");
            assert!(
                !tar.windows(11).any(|w| w == b"PRIVATE KEY"),
                "{swap}: the outside file is in the context"
            );
        }
    }

    /// Paths an index written by hand can hold.
    #[test]
    fn only_plain_relative_paths_are_within() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("src")).unwrap();
        assert!(within(d.path(), "src/main.rs").unwrap());
        assert!(!within(d.path(), "gone/main.rs").unwrap());
        for bad in [
            "/etc/hostname",
            "a/../../../etc/passwd",
            "./x",
            "",
            "src/../x",
        ] {
            assert!(
                matches!(within(d.path(), bad), Err(CopyError::OutsideProject { .. })),
                "{bad}"
            );
        }
        std::fs::write(d.path().join("file"), "x").unwrap();
        assert!(within(d.path(), "file/x").is_err(), "a file as a folder");
    }

    #[test]
    fn the_workspace_build_has_no_network() {
        let o = build_options("cwd", "agent");
        assert_eq!(o.networkmode.as_deref(), Some("none"));
        assert_eq!(o.t.as_deref(), Some("cwd"));
    }

    #[test]
    fn onbuild_triggers_are_refused() {
        assert!(refuse_onbuild("img", &[]).is_ok());
        let e = refuse_onbuild("img", &["RUN curl http://x\n".into(), "COPY . /x".into()])
            .expect_err("refused");
        let text = e.to_string();
        assert!(
            text.contains("`img` has ONBUILD triggers (RUN curl http://x ; COPY . /x)"),
            "{text}"
        );
        assert!(e.hint().contains("ONBUILD"), "{}", e.hint());
    }

    #[test]
    fn globs() {
        assert!(glob("*.log", "a.log"));
        assert!(glob("target", "target"));
        assert!(!glob("*.log", "a.txt"));
        assert!(glob("a?c", "abc"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("a*b*c", "aXbYbZ"));
        assert!(glob("**x*", "yyx"));
        assert!(!glob("?", ""));
        // Every pattern of these letters against every name of them, up to
        // four each, as the plain recursive definition says.
        fn reference(p: &[u8], n: &[u8]) -> bool {
            match (p.first(), n.first()) {
                (None, None) => true,
                (Some(b'*'), _) => {
                    reference(&p[1..], n) || (!n.is_empty() && reference(p, &n[1..]))
                }
                (Some(b'?'), Some(_)) => reference(&p[1..], &n[1..]),
                (Some(a), Some(b)) if a == b => reference(&p[1..], &n[1..]),
                _ => false,
            }
        }
        fn all(alphabet: &[u8], max: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{}", *c as char)))
                    .collect();
                out.extend(last.iter().cloned());
            }
            out
        }
        for p in all(b"a*?", 4) {
            for n in all(b"ab", 4) {
                assert_eq!(
                    glob(&p, &n),
                    reference(p.as_bytes(), n.as_bytes()),
                    "{p} {n}"
                );
            }
        }
    }

    /// Attack: a folder's `.claude-bottle-ignore` made to hang the CLI or
    /// blow up its matching: a pattern that took the recursive matcher
    /// exponential time, a line of a million `*`, a FIFO, a link to
    /// `/dev/zero`, a huge file. Each ends at once, as an error or a match.
    #[test]
    fn a_hostile_ignore_file_neither_hangs_nor_crashes() {
        let name = "a".repeat(200);
        assert!(!glob(&format!("{}c", "*a".repeat(30)), &name));
        assert!(glob(&"*".repeat(1_000_000), &name));
        let d = tempfile::tempdir().unwrap();
        let ignore = d.path().join(".claude-bottle-ignore");
        std::fs::write(d.path().join("kept.txt"), "x").unwrap();
        std::os::unix::fs::symlink("/dev/zero", &ignore).unwrap();
        let e = list(d.path()).unwrap_err().to_string();
        assert!(
            e.contains(".claude-bottle-ignore") && e.contains("not a regular file"),
            "{e}"
        );
        std::fs::remove_file(&ignore).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &ignore,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = list(d.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::remove_file(&ignore).unwrap();
        std::fs::write(&ignore, "#".repeat(64 * 1024 + 1)).unwrap();
        let e = list(d.path()).unwrap_err().to_string();
        assert!(e.contains("larger than 64 KiB"), "{e}");
        std::fs::write(&ignore, "*.txt\n").unwrap();
        assert_eq!(
            list(d.path()).unwrap(),
            vec![".claude-bottle-ignore".to_string()]
        );
    }

    #[test]
    fn git_work_tree_copies_what_git_tracks_and_dot_git() {
        let d = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            assert!(
                Command::new("git")
                    .args(args)
                    .current_dir(d.path())
                    .env("GIT_CONFIG_NOSYSTEM", "1")
                    .env("HOME", d.path())
                    .output()
                    .unwrap()
                    .status
                    .success()
            );
        };
        git(&["init", "-q"]);
        std::fs::write(d.path().join(".gitignore"), "build/\n").unwrap();
        std::fs::write(d.path().join("main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(d.path().join(".env"), "KEY=1\n").unwrap();
        std::fs::create_dir(d.path().join("build")).unwrap();
        std::fs::write(d.path().join("build/out"), "x").unwrap();
        git(&["add", "main.rs"]);
        let files = list(d.path()).unwrap();
        assert!(files.contains(&"main.rs".to_string()));
        assert!(
            files.contains(&".env".to_string()),
            "untracked, not ignored"
        );
        assert!(files.contains(&".git/HEAD".to_string()));
        assert!(!files.iter().any(|f| f.starts_with("build/")), "{files:?}");
        let c = context(d.path(), Path::new("/nonexistent")).unwrap();
        assert_eq!(c.secret_looking, [".env"]);
    }

    #[test]
    fn plain_folder_honours_the_ignore_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(".claude-bottle-ignore"),
            "# data\n*.bin\nnode_modules/\n",
        )
        .unwrap();
        std::fs::write(d.path().join("a.txt"), "a").unwrap();
        std::fs::write(d.path().join("big.bin"), "b").unwrap();
        std::fs::create_dir(d.path().join("node_modules")).unwrap();
        std::fs::write(d.path().join("node_modules/x"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", d.path().join("link")).unwrap();
        let files = list(d.path()).unwrap();
        assert_eq!(files, [".claude-bottle-ignore", "a.txt", "link"]);
        let c = context(d.path(), Path::new("/nonexistent")).unwrap();
        let mut a = tar::Archive::new(&c.tar[..]);
        let link = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().ends_with("link"))
            .unwrap();
        assert_eq!(link.header().entry_type(), tar::EntryType::Symlink);
    }
}
