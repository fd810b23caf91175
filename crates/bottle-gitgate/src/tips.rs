//! What a push names and points at, checked before its commits are
//! scanned: the ref names (the agent chooses them, and the upstream keeps
//! them), and the object each updated ref points to. Only commits, and
//! annotated tags of commits, are forwarded: a ref straight to a blob or a
//! tree would carry content no diff shows, and a tag's own text (name,
//! tagger, message) is scanned like a commit's.

use bottle_dlp::Engine;

use crate::audit::FindingReport;
use crate::policy::RefUpdate;
use crate::scan::{Git, Place, ScanError, push_findings};

/// How many tags may stand between a ref and its commit.
const MAX_TAG_DEPTH: usize = 8;

/// Why a pushed ref cannot be forwarded.
#[derive(Debug)]
pub enum TipError {
    Scan(ScanError),
    /// The ref points (maybe through tags) at something that is not a
    /// commit: `kind` is git's word for it.
    NotACommit {
        name: String,
        kind: String,
    },
}

impl From<ScanError> for TipError {
    fn from(e: ScanError) -> Self {
        TipError::Scan(e)
    }
}

/// Findings in the names of the updated refs. A finding reports the ref's
/// new id (its old one for a deletion), never the name.
pub fn scan_ref_names(updates: &[RefUpdate], engine: &Engine) -> Vec<FindingReport> {
    let mut out = Vec::new();
    for u in updates {
        let id = if u.is_delete() { &u.old } else { &u.new };
        push_findings(
            &mut out,
            engine,
            u.name.as_bytes(),
            &[],
            id,
            Place::Part("ref name"),
        );
    }
    out
}

/// The commits the updated refs point to (through any tags), each tag on
/// the way scanned into `findings`. One `cat-file --batch-check` per level
/// of tags, for all refs at once.
pub fn commits_of(
    git: &Git<'_>,
    updates: &[RefUpdate],
    engine: &Engine,
    findings: &mut Vec<FindingReport>,
) -> Result<Vec<String>, TipError> {
    let mut commits = Vec::new();
    // (ref name, the object it reaches so far)
    let mut pending: Vec<(&str, String)> = updates
        .iter()
        .filter(|u| !u.is_delete())
        .map(|u| (u.name.as_str(), u.new.clone()))
        .collect();
    for depth in 0..=MAX_TAG_DEPTH {
        if pending.is_empty() {
            break;
        }
        let ids: Vec<String> = pending.iter().map(|(_, id)| id.clone()).collect();
        let kinds = git.object_types(&ids)?;
        let mut next = Vec::new();
        for ((name, id), kind) in pending.into_iter().zip(kinds) {
            match kind.as_str() {
                "commit" => commits.push(id),
                "tag" if depth < MAX_TAG_DEPTH => {
                    next.push((name, scan_tag(git, &id, engine, findings)?));
                }
                "tag" => {
                    return Err(TipError::NotACommit {
                        name: name.to_string(),
                        kind: format!("chain of more than {MAX_TAG_DEPTH} tags"),
                    });
                }
                _ => {
                    return Err(TipError::NotACommit {
                        name: name.to_string(),
                        kind,
                    });
                }
            }
        }
        pending = next;
    }
    Ok(commits)
}

/// Scans tag `id` whole (its header names the tagger and the tag, then
/// the message) and returns the id of the object it tags.
fn scan_tag(
    git: &Git<'_>,
    id: &str,
    engine: &Engine,
    findings: &mut Vec<FindingReport>,
) -> Result<String, ScanError> {
    let size = git.output(&["cat-file", "-s", id])?;
    let size: u64 = String::from_utf8_lossy(&size)
        .trim()
        .parse()
        .map_err(|_| ScanError::Git(format!("cat-file: bad size of tag {id}")))?;
    if size > git.limits.max_message + 64 * 1024 {
        return Err(ScanError::TooLarge(format!(
            "tag {id} is {size} bytes; tags are scanned up to {}",
            git.limits.max_message
        )));
    }
    let body = git.output(&["cat-file", "tag", id])?;
    push_findings(findings, engine, &body, &[], id, Place::Part("tag"));
    let target = body
        .split(|b| *b == b'\n')
        .next()
        .and_then(|l| l.strip_prefix(b"object "))
        .map(|t| String::from_utf8_lossy(t).trim().to_string())
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ScanError::Git(format!("tag {id} names no object")))?;
    Ok(target)
}
