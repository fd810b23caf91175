//! Which manifest files exist, and reading them on demand.
//!
//! Bottles come only from `$CLAUDE_BOTTLE_HOME/bottles/`; agents from the
//! home and from `<cwd>/.claude-bottle/agents/`, a project agent shadowing a
//! home agent of the same name. Listing reads directory entries only; a file
//! is read when a command selects it, so a broken file breaks only what
//! needs it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use bottle_manifest::{Agent, Bottle, Error, ErrorKind, Source, name};

#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    pub source: Source,
}

#[derive(Debug)]
pub struct Catalog {
    /// The user's home, for `~/` in manifests.
    pub user_home: PathBuf,
    pub agents: BTreeMap<String, Entry>,
    pub bottles: BTreeMap<String, Entry>,
    /// The folders agents were looked for in, home first: named when an
    /// agent is not found.
    pub agent_dirs: Vec<PathBuf>,
    /// Skipped files and ignored folders, to show the user.
    pub warnings: Vec<String>,
}

impl Catalog {
    pub fn scan(bottle_home: &Path, cwd: &Path, user_home: &Path) -> Catalog {
        let mut c = Catalog {
            user_home: user_home.to_path_buf(),
            agents: BTreeMap::new(),
            bottles: BTreeMap::new(),
            agent_dirs: vec![bottle_home.join("agents")],
            warnings: Vec::new(),
        };
        for e in c.list(&bottle_home.join("bottles"), Source::Home) {
            c.bottles.insert(e.name.clone(), e);
        }
        for e in c.list(&bottle_home.join("agents"), Source::Home) {
            c.agents.insert(e.name.clone(), e);
        }
        let project = cwd.join(".claude-bottle");
        if project.is_dir() && !same_dir(&project, bottle_home) {
            let ignored = project.join("bottles");
            if ignored.is_dir() {
                c.warnings.push(format!(
                    "ignoring `{}`: bottles grant credentials and egress, so only \
                     `$CLAUDE_BOTTLE_HOME/bottles/` may define them",
                    ignored.display()
                ));
            }
            c.agent_dirs.push(project.join("agents"));
            for e in c.list(&project.join("agents"), Source::Project) {
                // manifest.md: the project's wins; the user is told, since
                // a repository can pick any of their bottles this way.
                if let Some(home) = c.agents.get(&e.name) {
                    c.warnings.push(format!(
                        "the project's agent `{}` (`{}`) replaces your home agent of that name (`{}`)",
                        e.name,
                        shown(&e.path),
                        shown(&home.path)
                    ));
                }
                c.agents.insert(e.name.clone(), e);
            }
        }
        c
    }

    fn list(&mut self, dir: &Path, source: Source) -> Vec<Entry> {
        let Ok(read) = fs::read_dir(dir) else {
            return Vec::new();
        };
        // Canonical once: every project agent must resolve inside it.
        let project = (source == Source::Project)
            .then(|| dir.parent().and_then(Path::parent))
            .flatten()
            .and_then(|p| fs::canonicalize(p).ok());
        let mut out = Vec::new();
        for item in read.flatten() {
            let path = item.path();
            if path.extension().and_then(|e| e.to_str()) != Some("md") {
                continue;
            }
            let Some(stem) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
            else {
                self.warnings.push(format!(
                    "skipping `{}`: the file name is not UTF-8",
                    shown(&path)
                ));
                continue;
            };
            if !name::is_valid(&stem) {
                self.warnings.push(format!(
                    "skipping `{}`: `{}` is not a valid name ({})",
                    shown(&path),
                    crate::output::printable_field(&stem),
                    name::NAME_RULE
                ));
                continue;
            }
            // A repository's link (of the file, or of `.claude-bottle` or
            // `agents` themselves) would make the CLI read, show, and send
            // into the bottle as a prompt, a file of the user's.
            if source == Source::Project
                && !project
                    .as_ref()
                    .is_some_and(|p| fs::canonicalize(&path).is_ok_and(|t| t.starts_with(p)))
            {
                self.warnings.push(format!(
                    "skipping `{}`: a link to a file outside the project",
                    shown(&path),
                ));
                continue;
            }
            out.push(Entry {
                name: stem,
                path,
                source,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn load_agent(&self, name: &str) -> Result<Agent, Error> {
        let Some(e) = self.agents.get(name) else {
            // The file is where a home agent of that name would be; the
            // message names every folder that was searched, as a bare
            // `agents/NAME.md` would not say which ones.
            let dirs: Vec<String> = self
                .agent_dirs
                .iter()
                .map(|d| format!("`{}/`", d.display()))
                .collect();
            let file = self
                .agent_dirs
                .first()
                .map(|d| d.join(format!("{name}.md")))
                .unwrap_or_else(|| PathBuf::from(format!("agents/{name}.md")));
            return Err(Error::new(
                &file,
                None,
                None,
                ErrorKind::Invalid {
                    message: format!(
                        "agent `{name}` does not exist (looked in {})",
                        dirs.join(" and ")
                    ),
                    hint: Some(self.agent_hint()),
                },
            ));
        };
        let text = read_manifest(&e.path)?;
        bottle_manifest::agent::parse(name, &e.path, e.source, &self.user_home, &text)
    }

    /// `Ok(None)` when no such bottle exists.
    pub fn load_bottle(&self, name: &str) -> Result<Option<Bottle>, Error> {
        let Some(e) = self.bottles.get(name) else {
            return Ok(None);
        };
        let text = read_manifest(&e.path)?;
        bottle_manifest::bottle::parse(name, &e.path, &self.user_home, &text).map(Some)
    }

    fn agent_hint(&self) -> String {
        if self.agents.is_empty() {
            "there are no agents yet; run `claude-bottle init` to write an example".to_string()
        } else {
            let names: Vec<&str> = self.agents.keys().map(String::as_str).collect();
            format!(
                "known agents: {}; see `claude-bottle list`",
                names.join(", ")
            )
        }
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A path from a folder a repository controls, for one line of output:
/// control characters and line breaks written out.
fn shown(path: &Path) -> String {
    crate::output::printable_field(&path.display().to_string()).into_owned()
}

/// Read a manifest file: a regular file (a FIFO or a device from a
/// repository would hang the CLI), at most 1 MiB (checked before reading
/// it all), UTF-8.
pub fn read_manifest(path: &Path) -> Result<String, Error> {
    let limit = bottle_manifest::frontmatter::MAX_FILE_BYTES as u64;
    let read_err =
        |e: std::io::Error| Error::new(path, None, None, ErrorKind::Read(e.kind().to_string()));
    if !fs::metadata(path).map_err(read_err)?.is_file() {
        return Err(Error::new(
            path,
            None,
            None,
            ErrorKind::Read("not a regular file".into()),
        ));
    }
    let f = fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > limit {
        let size = fs::metadata(path).map(|m| m.len()).unwrap_or(limit + 1);
        return Err(Error::new(
            path,
            None,
            None,
            ErrorKind::TooLarge { size, limit },
        ));
    }
    bottle_manifest::decode(path, &bytes).map(str::to_string)
}
