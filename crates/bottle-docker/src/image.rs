//! The agent and sidecar images, built without a registry.
//!
//! The build context is made here, in memory: an embedded Dockerfile plus,
//! for the sidecar, the CLI's own executable. `ARG BASE_IMAGE` lets a
//! machine with no registry build from a local image.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::labels;

const SIDECAR_DOCKERFILE: &str = include_str!("../dockerfiles/sidecar.Dockerfile");
const AGENT_DOCKERFILE: &str = include_str!("../dockerfiles/agent.Dockerfile");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Agent,
    Sidecar,
}

impl ImageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Agent => "agent",
            ImageKind::Sidecar => "sidecar",
        }
    }

    /// `claude-bottle/agent:<version>` or `claude-bottle/sidecar:<version>`.
    pub fn tag(self, version: &str) -> String {
        format!("claude-bottle/{}:{version}", self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("cannot read the claude-bottle executable `{path}`: {reason}")]
    Executable { path: PathBuf, reason: String },
    #[error(
        "the claude-bottle executable `{0}` is dynamically linked; the sidecar needs a static one"
    )]
    NotStatic(PathBuf),
    #[error("building `{tag}` failed: {reason}")]
    Build { tag: String, reason: String },
}

impl BuildError {
    pub fn hint(&self) -> Option<String> {
        match self {
            BuildError::NotStatic(_) => Some(
                "install a static one with `RUSTFLAGS=\"-C target-feature=+crt-static\" cargo install \
                 --locked --path crates/claude-bottle --target x86_64-unknown-linux-gnu` (the \
                 README's install line; it lands in `~/.cargo/bin/claude-bottle`), or build with \
                 the same RUSTFLAGS and `--release --target x86_64-unknown-linux-gnu` and run \
                 `target/x86_64-unknown-linux-gnu/release/claude-bottle`"
                    .into(),
            ),
            BuildError::Build { .. } => Some(
                "without registry access, pass a local image with `--base-image` \
                 (or `CLAUDE_BOTTLE_BASE_IMAGE`)"
                    .into(),
            ),
            BuildError::Executable { .. } => None,
        }
    }
}

/// The executable a sidecar image is built from.
#[derive(Debug, Clone)]
pub struct Executable {
    pub path: PathBuf,
    pub sha256: String,
}

/// Largest executable accepted into a build context.
const MAX_EXECUTABLE: u64 = 512 * 1024 * 1024;

impl Executable {
    /// Read and hash an executable; refuse one that is not statically linked.
    pub fn load(path: &Path) -> Result<(Executable, Vec<u8>), BuildError> {
        let err = |e: std::io::Error| BuildError::Executable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(err)?
            .take(MAX_EXECUTABLE)
            .read_to_end(&mut bytes)
            .map_err(err)?;
        if !is_static_elf(&bytes) {
            return Err(BuildError::NotStatic(path.to_path_buf()));
        }
        let sha256 = hex(&Sha256::digest(&bytes));
        Ok((
            Executable {
                path: path.to_path_buf(),
                sha256,
            },
            bytes,
        ))
    }
}

/// [`sha256_file`], remembered in the file `cache` under the file's
/// device, inode, size, modification and change times, so `start` does not
/// hash its own executable (tens to hundreds of MB) on every run. The
/// change time moves on every write, even one that restores the
/// modification time. A cache that cannot be read or written only costs
/// the hashing.
pub fn sha256_cached(path: &Path, cache: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    let key = format!(
        "{} {} {} {}.{} {}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    );
    if let Ok(text) = std::fs::read_to_string(cache)
        && let Some((k, sha)) = text.trim_end().rsplit_once(' ')
        && k == key
        && sha.len() == 64
        && sha.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Ok(sha.to_string());
    }
    let sha = sha256_file(path)?;
    let _ = write_cache(cache, &format!("{key} {sha}\n"));
    Ok(sha)
}

/// Write `text` to `cache` whole or not at all (a temporary file renamed),
/// in a 0700 folder.
fn write_cache(cache: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = cache.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    // A new file, never through a link planted under that name (a folder
    // others can write to would let them aim the write elsewhere); a
    // stale one from a dead process of the same pid goes first.
    let _ = std::fs::remove_file(&tmp);
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&tmp)?
    };
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, cache)
}

/// Hash of a file, for comparing against an image's label.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Lower-case hex, as image labels and digests are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A 64-bit ELF with no `PT_INTERP` program header needs no dynamic loader.
/// (A static-pie binary still has `PT_DYNAMIC`; only the interpreter
/// matters.)
pub fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let read = |off: usize, len: usize| bytes.get(off..off + len);
    if read(0, 4) != Some(b"\x7fELF") || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (read(0x20, 8), read(0x36, 2), read(0x38, 2))
    else {
        return false;
    };
    let phoff = u64::from_le_bytes(phoff.try_into().unwrap_or([0; 8])) as usize;
    let phentsize = u16::from_le_bytes([phentsize[0], phentsize[1]]) as usize;
    let phnum = u16::from_le_bytes([phnum[0], phnum[1]]) as usize;
    if phentsize < 4 || phnum == 0 {
        return false;
    }
    (0..phnum).all(|i| {
        let at = phoff.saturating_add(i.saturating_mul(phentsize));
        match read(at, 4) {
            Some(t) => u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != PT_INTERP,
            None => false,
        }
    })
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub kind: ImageKind,
    pub tag: String,
    pub base_image: Option<String>,
    pub version: String,
    /// The executable: copied into the sidecar, and its hash labels both.
    pub executable: Executable,
    pub extra_labels: HashMap<String, String>,
}

/// The build context: the Dockerfile and, for the sidecar, the executable.
pub fn context(
    kind: ImageKind,
    executable: &[u8],
    labels: &HashMap<String, String>,
) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let dockerfile = match kind {
        ImageKind::Agent => AGENT_DOCKERFILE,
        ImageKind::Sidecar => SIDECAR_DOCKERFILE,
    };
    let dockerfile = format!("{dockerfile}{}", label_line(labels));
    append(&mut tar, "Dockerfile", dockerfile.as_bytes(), 0o644)?;
    if kind == ImageKind::Sidecar {
        append(&mut tar, "claude-bottle", executable, 0o755)?;
    }
    tar.into_inner()
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    data: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, name, data)
}

/// One `LABEL` instruction for every label, to end a Dockerfile with. The
/// engine's `labels` build option costs the legacy builder one committed
/// layer per label (about 3 s each on this machine's fuse-overlayfs).
/// Values are double-quoted with `\` and `"` escaped; a line break cannot
/// be written and becomes a space.
pub fn label_line(labels: &HashMap<String, String>) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let quote = |s: &str| {
        let s = s
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace(['\n', '\r'], " ");
        format!("\"{s}\"")
    };
    let mut pairs: Vec<_> = labels.iter().collect();
    pairs.sort();
    let items: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{}={}", quote(k), quote(v)))
        .collect();
    format!("\nLABEL {}\n", items.join(" "))
}

/// Build an image from this executable (the sidecar copies it in),
/// passing each line of the engine's output to `progress`.
pub async fn build(
    engine: &Engine,
    req: &BuildRequest,
    executable: &[u8],
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), BuildError> {
    let mut labels = req.extra_labels.clone();
    labels.insert(labels::VERSION.into(), req.version.clone());
    labels.insert(labels::BINARY_SHA256.into(), req.executable.sha256.clone());
    labels.insert(labels::ROLE.into(), "image".into());
    let context = context(req.kind, executable, &labels).map_err(|e| BuildError::Build {
        tag: req.tag.clone(),
        reason: format!("cannot make the build context: {e}"),
    })?;
    let base = req.base_image.as_deref();
    let previous = ours(engine, &req.tag).await;
    let options = build_options(&req.tag, base, false);
    run_build(engine, options, Context::Whole(context), progress)
        .await
        .map_err(|reason| BuildError::Build {
            tag: req.tag.clone(),
            reason,
        })?;
    if let Some(old) = previous {
        remove_replaced(engine, &req.tag, &old).await;
    }
    Ok(())
}

/// The id of the image `tag` names, when claude-bottle built it.
async fn ours(engine: &Engine, tag: &str) -> Option<String> {
    let img = engine.docker.inspect_image(tag).await.ok()?;
    let labels = img.config.as_ref()?.labels.as_ref()?;
    (labels.get(labels::ROLE).map(String::as_str) == Some("image")).then_some(img.id?)
}

/// A rebuild moves the tag; the image it named (ours, now untagged) would
/// stay on disk for good, one per upgrade. Removed unless something still
/// uses it (a running bottle's sidecar, another tag): the engine refuses
/// then, and that refusal is fine.
async fn remove_replaced(engine: &Engine, tag: &str, old: &str) {
    let now = engine
        .docker
        .inspect_image(tag)
        .await
        .ok()
        .and_then(|i| i.id);
    if now.as_deref() == Some(old) {
        return;
    }
    let _ = engine
        .docker
        .remove_image(
            old,
            Some(bollard::query_parameters::RemoveImageOptions {
                force: false,
                noprune: false,
                ..Default::default()
            }),
            None,
        )
        .await;
}

/// A build context: a tar archive in memory, or one streamed as it is
/// written (a workspace copy can be large).
pub enum Context {
    Whole(Vec<u8>),
    Streamed(
        std::pin::Pin<
            Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>,
        >,
    ),
}

/// The engine's options for building `tag` (from `base`, as the
/// `BASE_IMAGE` build argument). `offline`: the build's steps get network
/// mode `none`, so a `RUN` in it (an `ONBUILD` trigger of the base image)
/// reaches no network; the agent and sidecar images need one for their
/// packages, a workspace copy does not.
pub fn build_options(tag: &str, base: Option<&str>, offline: bool) -> BuildImageOptions {
    let buildargs: HashMap<String, String> = base
        .map(|b| ("BASE_IMAGE".to_string(), b.to_string()))
        .into_iter()
        .collect();
    BuildImageOptions {
        dockerfile: "Dockerfile".into(),
        t: Some(tag.to_string()),
        rm: true,
        forcerm: true,
        buildargs: Some(buildargs),
        networkmode: offline.then(|| "none".to_string()),
        ..Default::default()
    }
}

/// Build from a context holding a `Dockerfile` (with `ARG BASE_IMAGE`
/// when [`build_options`] were given a base), passing each line of the
/// engine's output to `progress`. The engine's error text on failure.
pub async fn run_build(
    engine: &Engine,
    options: BuildImageOptions,
    context: Context,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), String> {
    let body = match context {
        Context::Whole(tar) => bollard::body_full(tar.into()),
        Context::Streamed(stream) => bollard::body_try_stream(stream),
    };
    let mut stream = engine.docker.build_image(options, None, Some(body));
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| e.to_string())?;
        if let Some(detail) = info.error_detail.and_then(|d| d.message) {
            return Err(detail);
        }
        if let Some(line) = info.stream {
            let line = line.trim_end();
            if !line.is_empty() {
                progress(line);
            }
        }
    }
    Ok(())
}

/// Whether an image can be used as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageState {
    Missing,
    /// Built from another executable; holds the reason.
    Stale(String),
    Fresh,
}

/// Compare an image's labels with the running executable.
pub async fn state(engine: &Engine, tag: &str, sha256: &str) -> ImageState {
    match engine.docker.inspect_image(tag).await {
        Err(_) => ImageState::Missing,
        Ok(img) => {
            let labels = img.config.and_then(|c| c.labels).unwrap_or_default();
            match labels.get(labels::BINARY_SHA256) {
                Some(h) if h == sha256 => ImageState::Fresh,
                Some(_) => ImageState::Stale("built from another claude-bottle executable".into()),
                None => ImageState::Stale("not built by claude-bottle".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attack: in a cache folder others can write to, a link planted
    /// under the temporary file's name would aim the cache write at a file
    /// of the user's. The write makes a new file instead.
    #[test]
    fn a_cache_write_never_follows_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let cache = dir.path().join("cache/binary-sha256");
        std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
        let tmp = cache
            .parent()
            .unwrap()
            .join(format!(".{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write_cache(&cache, "key sha\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&cache).unwrap(), "key sha\n");
    }

    /// A minimal ELF64 little-endian header with the given program header types.
    fn elf(types: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 * types.len()];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            b[64 + 56 * i..64 + 56 * i + 4].copy_from_slice(&t.to_le_bytes());
        }
        b
    }

    #[test]
    fn static_detection() {
        const LOAD: u32 = 1;
        const DYNAMIC: u32 = 2;
        const INTERP: u32 = 3;
        assert!(is_static_elf(&elf(&[LOAD, LOAD])));
        assert!(
            is_static_elf(&elf(&[LOAD, DYNAMIC])),
            "static-pie has PT_DYNAMIC"
        );
        assert!(!is_static_elf(&elf(&[LOAD, INTERP, DYNAMIC])));
        assert!(!is_static_elf(&elf(&[])));
        let mut truncated = elf(&[LOAD]);
        truncated.truncate(66);
        assert!(!is_static_elf(&truncated));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        assert!(!is_static_elf(&[]));
        // A real dynamically linked program on this machine.
        assert!(!is_static_elf(&std::fs::read("/bin/sh").unwrap()));
    }

    #[test]
    fn the_hash_cache_follows_the_file() {
        let d = tempfile::tempdir().unwrap();
        let exe = d.path().join("exe");
        let cache = d.path().join("cache/executable.sha256");
        std::fs::write(&exe, b"one").unwrap();
        let first = sha256_cached(&exe, &cache).unwrap();
        assert_eq!(first, sha256_file(&exe).unwrap());
        assert!(cache.exists());
        // A stored hash for this very file is used as it is...
        let text = std::fs::read_to_string(&cache).unwrap();
        let forged = text.replace(&first, &"a".repeat(64));
        std::fs::write(&cache, forged).unwrap();
        assert_eq!(sha256_cached(&exe, &cache).unwrap(), "a".repeat(64));
        // ...and any write to the file makes it hash again.
        std::fs::write(&exe, b"two").unwrap();
        let second = sha256_cached(&exe, &cache).unwrap();
        assert_eq!(second, sha256_file(&exe).unwrap());
        assert_ne!(second, first);
        std::fs::write(&cache, "garbage").unwrap();
        assert_eq!(sha256_cached(&exe, &cache).unwrap(), second);
    }

    #[test]
    fn labels_are_one_instruction_quoted() {
        let labels = HashMap::from([
            ("io.claude-bottle.slug".to_string(), "dev".to_string()),
            (
                "io.claude-bottle.test".to_string(),
                "a \"b\" \\c\nd".to_string(),
            ),
        ]);
        assert_eq!(
            label_line(&labels),
            "\nLABEL \"io.claude-bottle.slug\"=\"dev\" \"io.claude-bottle.test\"=\"a \\\"b\\\" \\\\c d\"\n"
        );
        assert_eq!(label_line(&HashMap::new()), "");
        let tar = context(ImageKind::Agent, b"", &labels).unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut a.entries().unwrap().next().unwrap().unwrap(),
            &mut text,
        )
        .unwrap();
        assert_eq!(text.matches("\nLABEL ").count(), 1, "{text}");
        assert!(
            text.trim_end()
                .ends_with("\"dev\" \"io.claude-bottle.test\"=\"a \\\"b\\\" \\\\c d\"")
        );
    }

    #[test]
    fn only_an_offline_build_has_no_network() {
        let o = build_options("t", Some("b"), true);
        assert_eq!(o.networkmode.as_deref(), Some("none"));
        assert_eq!(
            o.buildargs.unwrap().get("BASE_IMAGE").map(String::as_str),
            Some("b")
        );
        assert_eq!(build_options("t", None, false).networkmode, None);
    }

    #[test]
    fn context_holds_what_the_dockerfile_copies() {
        let labels = HashMap::from([("io.claude-bottle.role".to_string(), "image".to_string())]);
        let tar = context(ImageKind::Sidecar, b"binary", &labels).unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile", "claude-bottle"]);
        assert!(SIDECAR_DOCKERFILE.contains("COPY claude-bottle"));
        assert!(
            SIDECAR_DOCKERFILE.contains("ARG BASE_IMAGE")
                && AGENT_DOCKERFILE.contains("ARG BASE_IMAGE")
        );
        let tar = context(ImageKind::Agent, b"", &HashMap::new()).unwrap();
        assert_eq!(tar::Archive::new(&tar[..]).entries().unwrap().count(), 1);
    }
}
