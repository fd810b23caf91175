//! An agent file: which bottle, which skills, the program, and the system
//! prompt (the Markdown body).

use std::path::{Path, PathBuf};

use crate::bottle::{BOTTLE_KEYS, GitUser, read_git_user};
use crate::error::{Error, ErrorKind};
use crate::name;
use crate::node::{self, Value};
use crate::read::{Reader, index};

const AGENT_KEYS: &[&str] = &["bottle", "skills", "git", "command"];
/// Bounds on an agent's `command` (a word may be a whole
/// `--append-system-prompt` text).
const MAX_COMMAND_WORD: usize = 64 * 1024;
const MAX_COMMAND_WORDS: usize = 64;
/// Claude Code subagent keys: accepted and ignored so one file serves both.
const SUBAGENT_KEYS: &[&str] = &[
    "name",
    "description",
    "tools",
    "disallowedTools",
    "model",
    "color",
    "permissionMode",
    "hooks",
    "mcpServers",
    "memory",
    "maxTurns",
];

/// The program an agent runs when its file names none.
pub const DEFAULT_COMMAND: &[&str] = &["claude", "--dangerously-skip-permissions"];

/// Where an agent file lives: the user's home or the current project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Home,
    Project,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Home => "home",
            Source::Project => "project",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub name: String,
    pub file: PathBuf,
    pub source: Source,
    pub bottle: Option<String>,
    /// The line of the `bottle:` key, for errors about the bottle it names.
    pub bottle_line: Option<u32>,
    pub skills: Vec<Skill>,
    pub git_user: GitUser,
    pub command: Vec<String>,
    /// The Markdown body: the system prompt.
    pub prompt: String,
}

/// A skill the agent names, with where it is named: the plan checks the
/// folder exists and says which entry names the one that does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skill {
    pub name: String,
    /// The key path, `skills[2]` (or `skills` for a single string).
    pub key: String,
    pub line: u32,
}

impl Agent {
    /// The names of the agent's skills, in file order.
    pub fn skill_names(&self) -> Vec<String> {
        self.skills.iter().map(|s| s.name.clone()).collect()
    }

    /// The prompt's first non-empty line, for `info` and the preflight.
    pub fn prompt_first_line(&self) -> Option<&str> {
        self.prompt.lines().map(str::trim).find(|l| !l.is_empty())
    }
}

pub fn parse(
    name: &str,
    file: &Path,
    source: Source,
    home: &Path,
    text: &str,
) -> Result<Agent, Error> {
    let fm = crate::split_file(file, text)?;
    let root = node::parse(fm.yaml, fm.yaml_line).map_err(|e| Error::yaml(file, e))?;
    let r = Reader { file, home };
    let top = r.map(&root, "front matter")?;
    for (k, _) in top {
        let bottle_only = BOTTLE_KEYS.contains(&k.name.as_str()) && k.name != "git";
        if bottle_only {
            return Err(Error::new(
                file,
                Some(k.line),
                Some(k.name.clone()),
                ErrorKind::BottleOnlyKey,
            ));
        }
    }
    r.check_keys(top, "", AGENT_KEYS, SUBAGENT_KEYS, "an agent")?;
    let mut agent = Agent {
        name: name.to_string(),
        file: file.to_path_buf(),
        source,
        bottle: None,
        bottle_line: None,
        skills: Vec::new(),
        git_user: GitUser::default(),
        command: DEFAULT_COMMAND.iter().map(|s| s.to_string()).collect(),
        prompt: fm.body.to_string(),
    };
    for (k, v) in top {
        let key = k.name.as_str();
        match key {
            "bottle" => {
                let b = r.string(v, key)?;
                if !name::is_valid(&b) {
                    return Err(Error::invalid(
                        file,
                        v.line,
                        key,
                        format!("`{b}` is not a bottle name ({})", name::NAME_RULE),
                    ));
                }
                agent.bottle = Some(b);
                agent.bottle_line = Some(k.line);
            }
            "skills" => {
                for s in r.items(v, key)? {
                    if !name::is_plain_name(&s.text) {
                        return Err(Error::invalid(
                            file,
                            s.line,
                            &s.key,
                            format!("`{}` is not a skill folder name", s.text),
                        ));
                    }
                    if !agent.skills.iter().any(|k| k.name == s.text) {
                        agent.skills.push(Skill {
                            name: s.text,
                            key: s.key,
                            line: s.line,
                        });
                    }
                }
            }
            "git" => {
                let entries = r.map(v, key)?;
                for (gk, gv) in entries {
                    match gk.name.as_str() {
                        "user" => agent.git_user = read_git_user(&r, gv, "git.user")?,
                        "repos" => {
                            return Err(Error::new(
                                file,
                                Some(gk.line),
                                Some("git.repos".into()),
                                ErrorKind::BottleOnlyKey,
                            ));
                        }
                        _ => r.check_keys(
                            std::slice::from_ref(&(gk.clone(), gv.clone())),
                            "git",
                            &["user"],
                            &[],
                            "an agent's `git`",
                        )?,
                    }
                }
            }
            "command" => {
                let items = match &v.value {
                    Value::Seq(items) => items,
                    _ => return Err(r.wrong_type(v, key, "a list of strings")),
                };
                let mut command = Vec::new();
                for (i, n) in items.iter().enumerate() {
                    let word_key = index(key, i);
                    let word = r.string(n, &word_key)?;
                    // Line breaks and tabs are text a program may take (a
                    // prompt); the preflight writes them out. Other control
                    // characters (NUL, escapes) have no place in a word.
                    if word
                        .chars()
                        .any(|c| c.is_control() && c != '\n' && c != '\t')
                    {
                        return Err(Error::invalid(
                            file,
                            n.line,
                            &word_key,
                            "must not contain control characters other than line breaks and tabs",
                        ));
                    }
                    if word.len() > MAX_COMMAND_WORD {
                        return Err(Error::invalid(
                            file,
                            n.line,
                            &word_key,
                            format!("must be at most {MAX_COMMAND_WORD} bytes"),
                        ));
                    }
                    command.push(word);
                }
                if command.len() > MAX_COMMAND_WORDS {
                    return Err(Error::invalid(
                        file,
                        v.line,
                        key,
                        format!("must have at most {MAX_COMMAND_WORDS} words"),
                    ));
                }
                if command.first().is_none_or(|w| w.is_empty()) {
                    return Err(Error::invalid(file, v.line, key, "must name a program"));
                }
                agent.command = command;
            }
            _ => {}
        }
    }
    Ok(agent)
}
