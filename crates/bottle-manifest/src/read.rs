//! Typed reads from a [`Node`] tree, with errors that name the file, line
//! and key path. Shared by the bottle and agent readers.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};
use crate::node::{Key, Node, Value};

/// Reads values out of one file's tree.
pub(crate) struct Reader<'a> {
    pub file: &'a Path,
    /// The user's home, for paths starting with `~/`.
    pub home: &'a Path,
}

impl Reader<'_> {
    pub fn wrong_type(&self, node: &Node, key: &str, expected: &'static str) -> Error {
        Error::new(
            self.file,
            Some(node.line),
            Some(key.to_string()),
            ErrorKind::WrongType {
                expected,
                found: node.value.kind(),
            },
        )
        .with_column(node.column)
    }

    pub fn map<'n>(&self, node: &'n Node, key: &str) -> Result<&'n [(Key, Node)], Error> {
        match &node.value {
            Value::Map(entries) => Ok(entries),
            Value::Null => Ok(&[]),
            _ => Err(self.wrong_type(node, key, "a mapping")),
        }
    }

    pub fn seq<'n>(&self, node: &'n Node, key: &str) -> Result<&'n [Node], Error> {
        match &node.value {
            Value::Seq(items) => Ok(items),
            Value::Null => Ok(&[]),
            _ => Err(self.wrong_type(node, key, "a list")),
        }
    }

    pub fn string(&self, node: &Node, key: &str) -> Result<String, Error> {
        match &node.value {
            Value::Str(s) => Ok(s.clone()),
            _ => Err(self.wrong_type(node, key, "a string")),
        }
    }

    /// Strings, numbers and booleans as text (env literals, memory sizes),
    /// numbers and booleans as written: `3.10` stays `3.10`, not the 3.1
    /// YAML reads. Where the text was not kept, an error asks for quotes
    /// rather than a silently different value.
    pub fn scalar_text(&self, node: &Node, key: &str) -> Result<String, Error> {
        match &node.value {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                node.text.clone().ok_or_else(|| {
                    Error::invalid(
                        self.file,
                        node.line,
                        key,
                        format!(
                            "is {} whose text as written could not be kept",
                            node.value.kind()
                        ),
                    )
                    .with_hint("quote the value (`\"...\"`) to have it taken as text")
                })
            }
            _ => Err(self.wrong_type(node, key, "a string, number or boolean")),
        }
    }

    /// A list of strings, each with its own key path and line, so a rule
    /// checked later names the entry (`paths[1]`), not the whole list. A
    /// single string counts as a list of one and keeps the plain `key`.
    pub fn items(&self, node: &Node, key: &str) -> Result<Vec<Item>, Error> {
        if let Value::Str(s) = &node.value {
            return Ok(vec![Item {
                text: s.clone(),
                key: key.to_string(),
                line: node.line,
            }]);
        }
        self.seq(node, key)?
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let key = index(key, i);
                Ok(Item {
                    text: self.scalar_text(n, &key)?,
                    line: if n.line > 0 { n.line } else { node.line },
                    key,
                })
            })
            .collect()
    }

    pub fn unsigned(&self, node: &Node, key: &str, min: i64, max: i64) -> Result<i64, Error> {
        match &node.value {
            Value::Int(i) if (min..=max).contains(i) => Ok(*i),
            Value::Int(_) => Err(Error::invalid(
                self.file,
                node.line,
                key,
                format!("must be a whole number from {min} to {max}"),
            )),
            _ => Err(self.wrong_type(node, key, "a whole number")),
        }
    }

    /// Refuse keys outside `known`; `ignored` keys are accepted and skipped.
    pub fn check_keys(
        &self,
        entries: &[(Key, Node)],
        prefix: &str,
        known: &'static [&'static str],
        ignored: &'static [&'static str],
        what: &'static str,
    ) -> Result<(), Error> {
        for (k, _) in entries {
            if known.contains(&k.name.as_str()) || ignored.contains(&k.name.as_str()) {
                continue;
            }
            // Ignored keys are accepted too (`descripton` was meant as
            // Claude Code's `description`), so they are suggested as well.
            let accepted: Vec<&'static str> = known.iter().chain(ignored).copied().collect();
            return Err(Error::new(
                self.file,
                Some(k.line),
                Some(join(prefix, &k.name)),
                ErrorKind::UnknownKey {
                    what,
                    suggestion: suggest(&k.name, &accepted),
                    known,
                },
            ));
        }
        Ok(())
    }

    /// A path from the manifest: `~/` is the user's home, a relative path is
    /// relative to the folder of the file that names it.
    pub fn path(&self, node: &Node, key: &str) -> Result<PathBuf, Error> {
        let raw = self.string(node, key)?;
        if raw.is_empty() {
            return Err(Error::invalid(
                self.file,
                node.line,
                key,
                "must not be empty",
            ));
        }
        Ok(resolve_path(&raw, self.file, self.home))
    }
}

pub(crate) fn resolve_path(raw: &str, file: &Path, home: &Path) -> PathBuf {
    if let Some(rest) = raw.strip_prefix("~/") {
        return home.join(rest);
    }
    if raw == "~" {
        return home.to_path_buf();
    }
    let p = Path::new(raw);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    file.parent().unwrap_or(Path::new(".")).join(p)
}

/// One string of a list read by [`Reader::items`], with where it was written.
pub(crate) struct Item {
    pub text: String,
    /// The full key path, such as `egress.allow[0].paths[1]`.
    pub key: String,
    pub line: u32,
}

/// The key path of entry `i` of the list at `key`: `tokens[1]`.
pub(crate) fn index(key: &str, i: usize) -> String {
    format!("{key}[{i}]")
}

pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The closest known key, when it is close enough to be a typo.
pub(crate) fn suggest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| {
            (
                strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase()),
                *k,
            )
        })
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let known = &["env", "egress", "extends", "tokens", "image"];
        assert_eq!(suggest("envv", known), Some("env"));
        assert_eq!(suggest("egres", known), Some("egress"));
        assert_eq!(suggest("token", known), Some("tokens"));
        assert_eq!(suggest("Image", known), Some("image"));
        assert_eq!(suggest("zzzzzz", known), None);
    }

    /// A number whose text was not kept is refused with the place and a
    /// hint, never turned into a different text.
    #[test]
    fn a_number_without_its_text_asks_for_quotes() {
        let r = Reader {
            file: Path::new("/b/dev.md"),
            home: Path::new("/home/u"),
        };
        let mut node = crate::node::parse("V: 3.10\n", 4).unwrap();
        let Value::Map(entries) = &mut node.value else {
            panic!("{node:?}")
        };
        let v = &mut entries[0].1;
        assert_eq!(r.scalar_text(v, "env.V").unwrap(), "3.10");
        v.text = None;
        let e = r.scalar_text(v, "env.V").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`/b/dev.md`:4: `env.V`: is a number whose text as written could not be kept"
        );
        assert!(e.hint().is_some_and(|h| h.contains("quote")), "{e:?}");
    }

    #[test]
    fn paths() {
        let home = Path::new("/home/u");
        let file = Path::new("/home/u/.claude-bottle/bottles/dev.md");
        assert_eq!(resolve_path("~/k", file, home), Path::new("/home/u/k"));
        assert_eq!(resolve_path("/etc/x", file, home), Path::new("/etc/x"));
        assert_eq!(
            resolve_path("ca.pem", file, home),
            Path::new("/home/u/.claude-bottle/bottles/ca.pem")
        );
    }
}
