//! `extends`: a bottle and its parents merged into one.
//!
//! The lineage is the parents depth-first, left to right, each bottle once
//! (at its first appearance), then the bottle itself; the merge applies them
//! in that order. Lookups go through a caller-supplied function, so only the
//! files a bottle actually names are read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::bottle::{
    Bottle, Dlp, EnvEntry, GitUser, Log, Repo, Resources, Route, Runtime, Token, same_token_slot,
};
use crate::error::{Error, ErrorKind};

/// Longest `extends` chain followed before giving up.
pub const MAX_DEPTH: usize = 32;

/// A bottle with its lineage merged.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedBottle {
    pub name: String,
    pub file: PathBuf,
    pub lineage: Vec<String>,
    pub image: Option<String>,
    pub env: BTreeMap<String, EnvEntry>,
    pub tokens: Vec<Token>,
    pub allow: Vec<Route>,
    pub dlp: Option<Dlp>,
    pub log: Option<Log>,
    pub resolve: BTreeMap<String, String>,
    pub upstream_ca: Option<PathBuf>,
    /// The file and line whose `egress.upstream_ca` won, for errors about it.
    pub upstream_ca_file: Option<PathBuf>,
    pub upstream_ca_line: u32,
    pub upstream_proxy: Option<String>,
    /// The file whose `egress.upstream_proxy` won, for errors about it.
    pub upstream_proxy_file: Option<PathBuf>,
    pub git_user: GitUser,
    pub repos: Vec<Repo>,
    pub resources: Resources,
    pub runtime: Option<Runtime>,
    /// The file and line whose `runtime` won, for errors about it.
    pub runtime_file: Option<PathBuf>,
    pub runtime_line: u32,
}

/// Resolve `name` and its parents through `load`, which returns `Ok(None)`
/// when no such bottle exists.
pub fn merge(
    name: &str,
    mut load: impl FnMut(&str) -> Result<Option<Bottle>, Error>,
) -> Result<MergedBottle, Error> {
    let mut order: Vec<Bottle> = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let root = load(name)?.ok_or_else(|| Error {
        file: PathBuf::from(format!("bottles/{name}.md")),
        line: None,
        column: None,
        key: None,
        kind: ErrorKind::MissingBottle {
            name: name.to_string(),
            chain: vec![name.to_string()],
        },
    })?;
    visit(root, &mut load, &mut stack, &mut order)?;
    let mut merged = MergedBottle {
        name: name.to_string(),
        file: order.last().map(|b| b.file.clone()).unwrap_or_default(),
        lineage: order.iter().map(|b| b.name.clone()).collect(),
        image: None,
        env: BTreeMap::new(),
        tokens: Vec::new(),
        allow: Vec::new(),
        dlp: None,
        log: None,
        resolve: BTreeMap::new(),
        upstream_ca: None,
        upstream_ca_file: None,
        upstream_ca_line: 0,
        upstream_proxy: None,
        upstream_proxy_file: None,
        git_user: GitUser::default(),
        repos: Vec::new(),
        resources: Resources::default(),
        runtime: None,
        runtime_file: None,
        runtime_line: 0,
    };
    for b in order {
        apply(&mut merged, b);
    }
    Ok(merged)
}

fn visit(
    bottle: Bottle,
    load: &mut impl FnMut(&str) -> Result<Option<Bottle>, Error>,
    stack: &mut Vec<String>,
    order: &mut Vec<Bottle>,
) -> Result<(), Error> {
    stack.push(bottle.name.clone());
    for (parent, line) in &bottle.extends {
        // Said at the `extends` entry that would go one level too deep.
        if stack.len() >= MAX_DEPTH {
            return Err(Error::invalid(
                &bottle.file,
                *line,
                "extends",
                format!("the `extends` chain is too deep (at most {MAX_DEPTH} bottles)"),
            ));
        }
        if stack.contains(parent) {
            let mut chain = stack.clone();
            chain.push(parent.clone());
            return Err(Error::new(
                &bottle.file,
                Some(*line),
                Some("extends".into()),
                ErrorKind::ExtendsCycle { chain },
            ));
        }
        if order.iter().any(|b| &b.name == parent) {
            continue;
        }
        let Some(p) = load(parent)? else {
            let mut chain = stack.clone();
            chain.push(parent.clone());
            return Err(Error::new(
                &bottle.file,
                Some(*line),
                Some("extends".into()),
                ErrorKind::MissingBottle {
                    name: parent.clone(),
                    chain,
                },
            ));
        };
        visit(p, load, stack, order)?;
    }
    stack.pop();
    order.push(bottle);
    Ok(())
}

fn apply(m: &mut MergedBottle, b: Bottle) {
    if b.image.is_some() {
        m.image = b.image;
    }
    for e in b.env {
        m.env.insert(e.name.clone(), e);
    }
    for t in b.tokens {
        replace_or_push(&mut m.tokens, t, same_token_slot);
    }
    for r in b.egress.allow {
        replace_or_push(&mut m.allow, r, |a, b| a.host == b.host);
    }
    m.dlp = b.egress.dlp.or(m.dlp);
    m.log = b.egress.log.or(m.log);
    m.resolve.extend(b.egress.resolve);
    if b.egress.upstream_ca.is_some() {
        m.upstream_ca = b.egress.upstream_ca;
        m.upstream_ca_file = Some(b.file.clone());
        m.upstream_ca_line = b.egress.upstream_ca_line;
    }
    if b.egress.upstream_proxy.is_some() {
        m.upstream_proxy = b.egress.upstream_proxy;
        m.upstream_proxy_file = Some(b.file.clone());
    }
    m.git_user = m.git_user.overlay(&b.git.user);
    for r in b.git.repos {
        replace_or_push(&mut m.repos, r, |a, b| a.name == b.name);
    }
    m.resources.memory = b.resources.memory.or(m.resources.memory.take());
    m.resources.cpus = b.resources.cpus.or(m.resources.cpus);
    m.resources.pids = b.resources.pids.or(m.resources.pids);
    if b.runtime.is_some() {
        m.runtime = b.runtime;
        m.runtime_file = Some(b.file.clone());
        m.runtime_line = b.runtime_line;
    }
}

/// A later entry replaces an earlier one with the same key, in its place.
fn replace_or_push<T>(list: &mut Vec<T>, item: T, same: impl Fn(&T, &T) -> bool) {
    match list.iter_mut().find(|x| same(x, &item)) {
        Some(slot) => *slot = item,
        None => list.push(item),
    }
}
