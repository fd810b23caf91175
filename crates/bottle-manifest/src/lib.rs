//! Manifest files (Markdown with YAML front matter) to a typed model.
//!
//! Pure: this crate takes text and returns bottles and agents; finding and
//! reading files is the caller's job (see the binary's `catalog`). Every
//! error carries the file, the line where known, and the key.
//!
//! - [`frontmatter`] splits a file into YAML and body;
//! - [`node`] parses the YAML with hard budgets into a line-aware tree;
//! - [`bottle`] and [`agent`] read that tree into types;
//! - [`host`] reads hosts as the sidecar does (`bottle_addr::classify_host`);
//! - [`lineage`] resolves `extends` and merges a bottle with its parents.

#![forbid(unsafe_code)]

pub mod agent;
pub mod bottle;
pub mod error;
pub mod frontmatter;
pub mod host;
pub mod lineage;
pub mod name;
pub mod node;
mod read;

use std::path::Path;

pub use agent::{Agent, Skill, Source};
pub use bottle::Bottle;
pub use error::{Error, ErrorKind};
pub use lineage::{MergedBottle, merge};

/// Check a file's raw bytes: at most 1 MiB, UTF-8. Returns the text.
pub fn decode<'a>(file: &Path, bytes: &'a [u8]) -> Result<&'a str, Error> {
    if bytes.len() > frontmatter::MAX_FILE_BYTES {
        return Err(Error::new(
            file,
            None,
            None,
            ErrorKind::TooLarge {
                size: bytes.len() as u64,
                limit: frontmatter::MAX_FILE_BYTES as u64,
            },
        ));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Error::new(file, u32::try_from(line).ok(), None, ErrorKind::NotUtf8)
    })
}

pub(crate) fn split_file<'t>(
    file: &Path,
    text: &'t str,
) -> Result<frontmatter::FrontMatter<'t>, Error> {
    frontmatter::split(text).map_err(|e| {
        let kind = match e {
            frontmatter::SplitError::NoFrontMatter => ErrorKind::NoFrontMatter,
            frontmatter::SplitError::Unclosed => ErrorKind::UnclosedFrontMatter,
        };
        Error::new(file, Some(1), None, kind)
    })
}

#[cfg(test)]
mod tests;
