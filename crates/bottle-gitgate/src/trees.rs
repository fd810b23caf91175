//! The names in every tree object new to the mirror, and the ids of the
//! submodules (gitlinks) they hold.
//!
//! The added-file list of the change scan comes from `git log --raw -r`,
//! which lists files only: the name of a directory that holds no file (a
//! tree entry pointing at the empty tree, or at trees of such) would reach
//! the upstream unread. So every tree new in the push is read whole and the
//! name of each of its entries (trees, blobs, symlinks, gitlinks) is
//! scanned: `git rev-list --objects --filter=object:type=tree <new tips>
//! --not --all` streams the ids straight into one `git cat-file --batch`,
//! whose output is parsed here (`<mode> <name>\0<id>`, bounded, with no
//! trust in the framing).
//!
//! A gitlink's id is 20 bytes the agent picks: its 40 hex digits are
//! scanned as text, each id on its own line (a credential that fits in 20
//! bytes, such as an AWS key id, or a known secret of up to 20 bytes, in
//! hex) and all of one batch's ids run together (the hex form of a longer
//! secret split over gitlinks that follow each other).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use bottle_dlp::Engine;

use crate::audit::FindingReport;
use crate::scan::{Git, ScanError, cat_file_io, object_header, read_line_bounded, reap};

/// What a finding in an entry name reports as its part.
pub const ENTRY_NAME: &str = "tree entry name";
/// What a finding in a gitlink's id reports as its part.
pub const SUBMODULE_ID: &str = "submodule id";
/// Names are scanned in batches of about this many bytes: one engine call
/// per tree would cost more than the scan of a small tree's names.
const BATCH: usize = 256 * 1024;
/// Mode of a gitlink (submodule) entry, as git writes it.
#[cfg(test)]
const GITLINK: u32 = 0o160_000;

/// Whether git reads an entry of this mode as a gitlink: its `canon_mode`
/// makes any mode that is not a file, a link or a tree one, and fsck only
/// notes such a mode (`badFilemode` is INFO), so `170000` or `60000` is a
/// gitlink whose 20 bytes the agent chose, as surely as `160000`.
fn reads_as_gitlink(mode: u32) -> bool {
    !matches!(mode & 0o170_000, 0o100_000 | 0o120_000 | 0o040_000)
}

/// What one remembered name or id costs beyond its bytes (the set's slot,
/// the allocation), for [`crate::Limits::max_tree_entry_bytes`].
pub const ENTRY_OVERHEAD: u64 = 64;

/// What the tree scan found and what it cost.
#[derive(Debug, Default)]
pub struct TreeOutcome {
    pub findings: Vec<FindingReport>,
    pub trees: u64,
    pub entries: u64,
    /// Time the DLP engine spent on names and ids.
    pub dlp: Duration,
}

/// Scans the entry names (and gitlink ids) of every tree reachable from
/// `tips` and new to the repository. Over [`crate::Limits::max_trees`]
/// trees, [`crate::Limits::max_tree_entries`] entries in all, or a tree
/// object larger than the text bound, the push is refused.
pub fn scan_new_trees(
    git: &Git<'_>,
    tips: &[&str],
    engine: &Engine,
    max_findings: usize,
) -> Result<TreeOutcome, ScanError> {
    let mut args = vec![
        "rev-list",
        "--objects",
        "--no-object-names",
        "--filter=object:type=tree",
    ];
    args.extend_from_slice(tips);
    args.extend_from_slice(&["--not", "--all"]);
    let mut list = git.spawn_reading(&args, std::process::Stdio::null())?;
    let Some(ids) = list.stdout.take() else {
        reap(&mut [&mut list], true);
        return Err(ScanError::Git("no pipes".into()));
    };
    let mut cat = match git.spawn_reading(&["cat-file", "--batch"], ids.into()) {
        Ok(c) => c,
        Err(e) => {
            reap(&mut [&mut list], true);
            return Err(e);
        }
    };
    let result = match cat.stdout.take() {
        Some(out) => {
            let mut r = BufReader::with_capacity(256 * 1024, out);
            read_trees(git, &mut r, engine, max_findings)
        }
        None => Err(ScanError::Git("no pipes".into())),
    };
    // cat-file first: rev-list may be blocked writing to it.
    let ok = reap(&mut [&mut cat, &mut list], result.is_err());
    let out = result?;
    if !ok {
        return Err(ScanError::Git("git rev-list or git cat-file failed".into()));
    }
    Ok(out)
}

/// Reads `cat-file --batch` output for rev-list's ids until EOF: commits
/// (rev-list lists them whatever the filter) are skipped, trees parsed.
fn read_trees(
    git: &Git<'_>,
    r: &mut impl BufRead,
    engine: &Engine,
    max_findings: usize,
) -> Result<TreeOutcome, ScanError> {
    let limits = git.limits;
    let mut out = TreeOutcome::default();
    let mut names = Batch::new(ENTRY_NAME);
    let mut links = Batch::new(SUBMODULE_ID);
    let mut joined: Vec<u8> = Vec::new();
    // Every new tree is read whole, unchanged entries too (a commit that
    // edits one file of a 5,000-entry folder makes a new 5,000-entry
    // tree): a name or gitlink met before in this push is not scanned or
    // counted again, so work and the bound follow what is new.
    let mut seen_names: HashSet<Vec<u8>> = HashSet::new();
    let mut seen_links: HashSet<Vec<u8>> = HashSet::new();
    let mut held: u64 = 0;
    let mut header = Vec::with_capacity(128);
    let mut body = Vec::new();
    while read_line_bounded(r, &mut header, 1024)? {
        let (id, kind, size) = object_header(&header)?;
        match kind.as_str() {
            "commit" => {
                // Read (by the message scan), not needed here: skip it.
                let want = size.saturating_add(1);
                let skipped = std::io::copy(&mut r.by_ref().take(want), &mut std::io::sink())
                    .map_err(cat_file_io)?;
                if skipped != want {
                    return Err(ScanError::Git("git cat-file ended early".into()));
                }
                continue;
            }
            "tree" => {}
            other => {
                return Err(ScanError::Git(format!("cat-file: {id} is a {other}")));
            }
        }
        out.trees += 1;
        if out.trees > limits.max_trees {
            return Err(ScanError::TooLarge(format!(
                "more than {} new trees (folders) in one push",
                limits.max_trees
            )));
        }
        if size > limits.max_text_blob {
            return Err(ScanError::TooLarge(format!(
                "tree {id} is {size} bytes; trees are read up to {}",
                limits.max_text_blob
            )));
        }
        let id_len = match id.len() {
            40 => 20,
            64 => 32,
            _ => return Err(ScanError::Git(format!("cat-file: odd id {id}"))),
        };
        let len = usize::try_from(size).map_err(|_| ScanError::Git("bad size".into()))?;
        body.clear();
        body.resize(len + 1, 0);
        r.read_exact(&mut body).map_err(cat_file_io)?;
        if body.pop() != Some(b'\n') {
            return Err(ScanError::Git("cat-file: bad framing".into()));
        }
        names.owner(&id);
        links.owner(&id);
        let n = for_each_entry(&body, id_len, |mode, name, oid| {
            if seen_names.insert(name.to_vec()) {
                held = held.saturating_add(name.len() as u64 + ENTRY_OVERHEAD);
                names.push(name);
            }
            if reads_as_gitlink(mode) && seen_links.insert(oid.to_vec()) {
                held = held.saturating_add(oid.len() as u64 + ENTRY_OVERHEAD);
                let hex = bottle_dlp::hex_encode(oid, false);
                links.push(&hex);
                joined.extend_from_slice(&hex);
            }
        })
        .map_err(|why| ScanError::Git(format!("tree {id}: {why}")))?;
        out.entries += n;
        if (seen_names.len() + seen_links.len()) as u64 > limits.max_tree_entries {
            return Err(ScanError::TooLarge(format!(
                "more than {} distinct entries in the new trees of one push",
                limits.max_tree_entries
            )));
        }
        if held > limits.max_tree_entry_bytes {
            let bound = limits.max_tree_entry_bytes;
            let bound = if bound >= 1 << 20 {
                format!("{} MiB", bound >> 20)
            } else {
                format!("{bound} bytes")
            };
            return Err(ScanError::TooLarge(format!(
                "the distinct entry names in the new trees of one push take more than {bound}"
            )));
        }
        if names.buf.len() + links.buf.len() + joined.len() >= BATCH {
            links.close(&mut joined);
            names.scan(engine, &mut out, max_findings);
            links.scan(engine, &mut out, max_findings);
        }
    }
    links.close(&mut joined);
    names.scan(engine, &mut out, max_findings);
    links.scan(engine, &mut out, max_findings);
    Ok(out)
}

/// Calls `f(mode, name, id)` for each entry of the raw tree object `body`
/// whose ids are `id_len` bytes; returns the number of entries. Hostile
/// input gives an error, never a panic or a read out of bounds.
fn for_each_entry(
    body: &[u8],
    id_len: usize,
    mut f: impl FnMut(u32, &[u8], &[u8]),
) -> Result<u64, &'static str> {
    let mut rest = body;
    let mut n = 0;
    while !rest.is_empty() {
        let sp = rest
            .iter()
            .take(8)
            .position(|b| *b == b' ')
            .ok_or("an entry without a mode")?;
        let (mode, after) = rest.split_at(sp);
        if mode.is_empty() || !mode.iter().all(|b| (b'0'..=b'7').contains(b)) {
            return Err("an entry with a bad mode");
        }
        let mode = mode
            .iter()
            .fold(0u32, |m, b| (m << 3) | u32::from(b - b'0'));
        let after = &after[1..];
        let nul = after
            .iter()
            .position(|b| *b == 0)
            .ok_or("an entry without its end")?;
        let (name, after) = after.split_at(nul);
        let oid = after.get(1..1 + id_len).ok_or("an entry without its id")?;
        f(mode, name, oid);
        n += 1;
        rest = &after[1 + id_len..];
    }
    Ok(n)
}

/// Text to scan, gathered from several trees: each tree's part starts at a
/// recorded offset, so a finding names its tree.
struct Batch {
    part: &'static str,
    buf: Vec<u8>,
    /// (offset in `buf`, tree id), in order of offset.
    owners: Vec<(usize, String)>,
}

impl Batch {
    fn new(part: &'static str) -> Self {
        Batch {
            part,
            buf: Vec::new(),
            owners: Vec::new(),
        }
    }

    /// What is pushed from now on belongs to tree `id`.
    fn owner(&mut self, id: &str) {
        if self
            .owners
            .last()
            .is_some_and(|(at, _)| *at == self.buf.len())
        {
            self.owners.pop();
        }
        self.owners.push((self.buf.len(), id.to_string()));
    }

    /// One line of text (a name may hold newlines itself: it stays one
    /// piece of the buffer all the same).
    fn push(&mut self, text: &[u8]) {
        self.buf.extend_from_slice(text);
        self.buf.push(b'\n');
    }

    /// Adds the gitlink ids run together (`joined`, emptied) as a last
    /// line, owned by the last tree.
    fn close(&mut self, joined: &mut Vec<u8>) {
        if joined.len() > 40 {
            self.push(joined);
        }
        joined.clear();
    }

    /// Scans the text gathered, reports findings by tree, and empties it.
    fn scan(&mut self, engine: &Engine, out: &mut TreeOutcome, max_findings: usize) {
        if !self.buf.is_empty() && out.findings.len() < max_findings {
            let t = Instant::now();
            let hits = engine.scan(&self.buf);
            out.dlp += t.elapsed();
            for h in hits.into_iter().take(max_findings - out.findings.len()) {
                let at = usize::try_from(h.range.start).unwrap_or(usize::MAX);
                let i = self.owners.partition_point(|(off, _)| *off <= at);
                let tree = i
                    .checked_sub(1)
                    .and_then(|i| self.owners.get(i))
                    .map_or_else(String::new, |(_, id)| id.clone());
                out.findings.push(FindingReport {
                    commit: tree,
                    path: None,
                    line: 0,
                    offset: None,
                    part: Some(self.part.to_string()),
                    rule: h.rule.to_string(),
                    redacted: h.redacted,
                });
            }
        }
        self.buf.clear();
        let last = self.owners.pop();
        self.owners.clear();
        // The tree being read goes on in the next batch.
        if let Some((_, id)) = last {
            self.owners.push((0, id));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(mode: &str, name: &[u8], id: &[u8]) -> Vec<u8> {
        let mut e = format!("{mode} ").into_bytes();
        e.extend_from_slice(name);
        e.push(0);
        e.extend_from_slice(id);
        e
    }

    #[test]
    fn tree_entries_are_parsed_with_any_name() {
        let mut body = entry("40000", b"empty\ndir", &[1; 20]);
        body.extend(entry("160000", b"sub", &[0xab; 20]));
        body.extend(entry("0100644", b"", &[0; 20]));
        let mut seen = Vec::new();
        let n = for_each_entry(&body, 20, |m, name, id| {
            seen.push((m, name.to_vec(), id.to_vec()));
        })
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(seen[0], (0o40000, b"empty\ndir".to_vec(), vec![1; 20]));
        assert_eq!(seen[1].0, GITLINK);
        assert_eq!(seen[2].0, 0o100644);
        assert_eq!(for_each_entry(b"", 20, |_, _, _| {}), Ok(0));
    }

    /// Attack: a gitlink written with another mode than `160000` (git
    /// reads every odd mode as one) so that the scan of gitlink ids,
    /// which catches a known secret or an AWS key id in those 20 bytes,
    /// passes it by.
    #[test]
    fn every_odd_mode_is_a_gitlink() {
        for m in [0o160000, 0o170000, 0o060000, 0o000000, 0o020000, 0o140000] {
            assert!(reads_as_gitlink(m), "{m:o}");
        }
        for m in [0o100644, 0o100755, 0o100664, 0o120000, 0o040000] {
            assert!(!reads_as_gitlink(m), "{m:o}");
        }
    }

    /// Every truncation and corruption of a tree is an error, not a panic.
    #[test]
    fn hostile_trees_are_errors() {
        let good = entry("100644", b"name", &[7; 20]);
        for cut in 0..good.len() {
            let r = for_each_entry(&good[..cut], 20, |_, _, _| {});
            assert!(cut == 0 || r.is_err(), "cut at {cut}: {r:?}");
        }
        for bad in [
            entry("10064x", b"n", &[0; 20]),
            entry("", b"n", &[0; 20]),
            entry("1006440000", b"n", &[0; 20]),
            b"100644 no-nul".to_vec(),
        ] {
            assert!(for_each_entry(&bad, 20, |_, _, _| {}).is_err(), "{bad:?}");
        }
        // A 32-byte id read as 20: the rest is garbage, not a panic.
        let long = entry("100644", b"n", &[0x31; 32]);
        assert!(for_each_entry(&long, 20, |_, _, _| {}).is_err());
    }

    #[test]
    fn findings_name_the_tree_of_their_batch_part() {
        let engine = Engine::builder()
            .known_secret("gt-upstream-token-5f2c9a71d04e8b36")
            .build()
            .unwrap();
        let mut b = Batch::new(ENTRY_NAME);
        b.owner("aaaa");
        b.push(b"clean");
        b.owner("bbbb");
        b.push(b"x-gt-upstream-token-5f2c9a71d04e8b36");
        let mut out = TreeOutcome::default();
        b.scan(&engine, &mut out, 10);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].commit, "bbbb");
        assert_eq!(out.findings[0].part.as_deref(), Some(ENTRY_NAME));
        assert!(b.buf.is_empty());
        assert_eq!(b.owners, vec![(0, "bbbb".to_string())]);
    }
}
