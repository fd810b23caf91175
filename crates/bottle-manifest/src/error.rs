//! The one error type of the manifest: every failure names the file, the
//! line where one is known, the key, and what to do.

use std::fmt;
use std::path::{Path, PathBuf};

/// A manifest problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub file: PathBuf,
    pub line: Option<u32>,
    /// The column on that line, where the parser gives one (YAML errors).
    pub column: Option<u32>,
    /// The key path, such as `egress.allow[2].host`.
    pub key: Option<String>,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be read at all.
    Read(String),
    TooLarge {
        size: u64,
        limit: u64,
    },
    NotUtf8,
    /// The file does not start with a `---` line.
    NoFrontMatter,
    /// The opening `---` has no closing `---`.
    UnclosedFrontMatter,
    /// The YAML itself cannot be read: a syntax error or a parser limit.
    Yaml {
        message: String,
        hint: &'static str,
    },
    UnknownKey {
        what: &'static str,
        suggestion: Option<&'static str>,
        /// The keys allowed there, for the hint when none is close.
        known: &'static [&'static str],
    },
    /// An agent names a key only a bottle may set.
    BottleOnlyKey,
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
    /// A value is not allowed; the message never quotes a secret.
    Invalid {
        message: String,
        hint: Option<String>,
    },
    ExtendsCycle {
        chain: Vec<String>,
    },
    MissingBottle {
        name: String,
        chain: Vec<String>,
    },
}

impl Error {
    pub fn new(file: &Path, line: Option<u32>, key: Option<String>, kind: ErrorKind) -> Self {
        Error {
            file: file.to_path_buf(),
            line: line.filter(|&l| l > 0),
            column: None,
            key,
            kind,
        }
    }

    /// A YAML error of the front matter of `file`, located by the parser.
    pub fn yaml(file: &Path, e: crate::node::YamlError) -> Self {
        Self::new(
            file,
            e.line,
            None,
            ErrorKind::Yaml {
                message: e.message,
                hint: e.hint,
            },
        )
        .with_column(e.column.unwrap_or(0))
    }

    pub fn invalid(file: &Path, line: u32, key: &str, message: impl Into<String>) -> Self {
        Self::new(
            file,
            Some(line),
            Some(key.to_string()),
            ErrorKind::Invalid {
                message: message.into(),
                hint: None,
            },
        )
    }

    /// The column on the error's line; 0 (unknown) leaves it out.
    pub fn with_column(mut self, column: u32) -> Self {
        self.column = Some(column).filter(|&c| c > 0 && self.line.is_some());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        if let ErrorKind::Invalid { hint: h, .. } = &mut self.kind {
            *h = Some(hint.into());
        }
        self
    }

    /// What the user can do about it, when there is something specific.
    pub fn hint(&self) -> Option<String> {
        match &self.kind {
            ErrorKind::TooLarge { .. } => {
                Some("manifest files are limited to 1 MiB; move long text elsewhere".into())
            }
            ErrorKind::NotUtf8 => Some("save the file as UTF-8".into()),
            ErrorKind::NoFrontMatter => Some(
                "a manifest starts with a line `---`, then YAML, then another `---` line".into(),
            ),
            ErrorKind::UnclosedFrontMatter => {
                Some("add a line that is exactly `---` after the YAML".into())
            }
            ErrorKind::UnknownKey {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean `{s}`?")),
            ErrorKind::UnknownKey {
                suggestion: None,
                known,
                what,
            } => Some(format!(
                "the keys of {what} are {}",
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            ErrorKind::BottleOnlyKey => Some(
                "bottles grant env, tokens, egress, git repos and images; move this key to the \
                 agent's bottle in `$CLAUDE_BOTTLE_HOME/bottles/`"
                    .into(),
            ),
            ErrorKind::ExtendsCycle { .. } => Some("remove one of the `extends` links".into()),
            ErrorKind::MissingBottle { name, .. } => Some(format!(
                "create `bottles/{name}.md` in `$CLAUDE_BOTTLE_HOME`, or fix the name"
            )),
            ErrorKind::Invalid { hint, .. } => hint.clone(),
            ErrorKind::Yaml { hint, .. } => Some((*hint).to_string()),
            ErrorKind::WrongType { expected, .. } => {
                Some(type_hint(expected, self.key.as_deref().unwrap_or("")))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        let key = self.key.as_deref().unwrap_or("");
        match &self.kind {
            ErrorKind::Read(e) => write!(f, "cannot read the file: {e}"),
            ErrorKind::TooLarge { size, limit } => {
                write!(
                    f,
                    "the file is {size} bytes, over the limit of {limit} bytes"
                )
            }
            ErrorKind::NotUtf8 => f.write_str("the file is not valid UTF-8"),
            ErrorKind::NoFrontMatter => f.write_str("the file does not start with a `---` line"),
            ErrorKind::UnclosedFrontMatter => {
                f.write_str("the front matter opened by `---` on line 1 is never closed")
            }
            ErrorKind::Yaml { message, .. } => write!(f, "invalid YAML: {message}"),
            ErrorKind::UnknownKey { what, .. } => write!(f, "unknown key `{key}` in {what}"),
            ErrorKind::BottleOnlyKey => {
                write!(f, "`{key}` can only be set in a bottle, not in an agent")
            }
            ErrorKind::WrongType { expected, found } => {
                write!(f, "`{key}` must be {expected}, found {found}")
            }
            ErrorKind::Invalid { message, .. } if key.is_empty() => f.write_str(message),
            ErrorKind::Invalid { message, .. } => write!(f, "`{key}`: {message}"),
            ErrorKind::ExtendsCycle { chain } => {
                write!(f, "`extends` makes a cycle: {}", chain.join(" -> "))
            }
            ErrorKind::MissingBottle { name, chain } if chain.len() > 1 => write!(
                f,
                "bottle `{name}` does not exist (needed by {})",
                chain.join(" -> ")
            ),
            ErrorKind::MissingBottle { name, .. } => write!(f, "bottle `{name}` does not exist"),
        }
    }
}

impl std::error::Error for Error {}

/// How to write a value of the kind that was `expected` at `key`.
fn type_hint(expected: &str, key: &str) -> String {
    match expected {
        "a mapping" => format!("write `{key}` as `NAME: value` lines indented below it"),
        "a list" | "a list of strings" => {
            format!("write `{key}` as `[a, b]`, or as one `- item` per line indented below it")
        }
        "a whole number" | "a number" => "write a number, without quotes".to_string(),
        _ => "write one value, not a list or a mapping; quote it (`\"...\"`) if it \
              contains `: `, ` #` or starts with `[` or `{`"
            .to_string(),
    }
}
