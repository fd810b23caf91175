//! Why a plan could not be made. Every variant names what it is about (the
//! variable, file, key or container) and never holds a value.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    Manifest(bottle_manifest::Error),
    /// The agent names no bottle and `--bottle` was not given.
    NoBottle {
        agent: String,
        file: PathBuf,
    },
    /// The bottle the agent names (or `--bottle`) has no file.
    MissingBottle {
        name: String,
        /// The file looked for.
        path: PathBuf,
        /// Where the name came from.
        named_by: NamedBy,
    },
    /// A `${VAR}` or `token_ref` names an unset variable.
    UnsetVariable {
        name: String,
        file: PathBuf,
        line: u32,
        key: String,
    },
    /// `--forward-oauth-token` without the variable it forwards: the flag,
    /// not a manifest, asks for it, so no file or line is named.
    ForwardedTokenUnset {
        name: String,
    },
    /// A file holding a credential (token or ssh key) cannot be read.
    UnreadableFile {
        path: PathBuf,
        file: PathBuf,
        line: u32,
        key: String,
        reason: String,
    },
    /// A credential is empty.
    EmptyCredential {
        what: String,
        file: PathBuf,
        line: u32,
        key: String,
    },
    MissingSkill {
        name: String,
        path: PathBuf,
        file: PathBuf,
        line: u32,
        /// `skills[2]`.
        key: String,
    },
    /// `runtime: runsc` but the engine has no gVisor.
    NoRunsc {
        /// The file and line that set `runtime`.
        file: PathBuf,
        line: u32,
    },
    /// The engine would run the agent under runc without a seccomp
    /// profile: every system call open to it.
    NoSeccomp,
    /// `CLAUDE_BOTTLE_CONTAINER` names an existing container.
    ContainerExists {
        name: String,
    },
    /// `-2` to `-99` are all taken.
    SlugsExhausted {
        agent: String,
    },
    /// An ssh repo in a bottle whose egress goes through an upstream proxy:
    /// ssh cannot be sent through it, and going around it is not allowed.
    SshBehindUpstreamProxy {
        repo: String,
        file: PathBuf,
        line: u32,
        /// The file that sets `egress.upstream_proxy`.
        proxy_file: PathBuf,
    },
    /// A route and a token or rule that cannot go together.
    Conflict {
        message: String,
        file: PathBuf,
        line: u32,
        /// The key the message is about, such as `egress.allow[0].tls`.
        key: String,
        hint: String,
    },
}

/// Where the name of the agent's bottle came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedBy {
    /// The agent file's `bottle:` key, on this line when known.
    Agent { file: PathBuf, line: Option<u32> },
    /// `--bottle NAME` on the command line.
    Flag,
}

impl Error {
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Manifest(e) => e.hint(),
            Error::NoBottle { .. } => Some(
                "add `bottle: NAME` to the agent's front matter, or pass `--bottle NAME`".into(),
            ),
            Error::MissingBottle { .. } => Some(
                "`claude-bottle list bottles` shows the bottles there are: fix the name, or \
                 create that file"
                    .into(),
            ),
            Error::UnsetVariable { name, .. } if name == "CLAUDE_BOTTLE_OAUTH_TOKEN" => {
                Some(format!(
                    "export `{name}` (the OAuth token `claude setup-token` prints) before \
                     starting, or change the manifest"
                ))
            }
            Error::UnsetVariable { name, .. } => Some(format!(
                "export `{name}` before starting, or change the manifest"
            )),
            Error::ForwardedTokenUnset { name } => Some(format!(
                "export `{name}` (the OAuth token `claude setup-token` prints) before starting; \
                 or, better, declare an `anthropic` token in the bottle and drop the flag"
            )),
            Error::UnreadableFile { .. } => Some("check the path and its permissions".into()),
            Error::EmptyCredential { .. } => Some("put the credential on the first line".into()),
            Error::MissingSkill { name, .. } => Some(format!(
                "create the skill folder, or remove `{name}` from the agent's `skills`"
            )),
            Error::NoRunsc { .. } => Some(
                "install gVisor and register `runsc` with the engine, or set `runtime: auto`"
                    .into(),
            ),
            Error::NoSeccomp => Some(
                "remove `\"seccomp-profile\": \"unconfined\"` from /etc/docker/daemon.json (or \
                 use an engine built with seccomp) and restart it; or install gVisor, which \
                 sandboxes system calls itself"
                    .into(),
            ),
            Error::ContainerExists { name } => Some(format!(
                "remove it with `docker rm -f {name}`, or unset `CLAUDE_BOTTLE_CONTAINER`"
            )),
            Error::SlugsExhausted { agent } => Some(format!(
                "run `claude-bottle cleanup`, or remove old bottles with `docker rm -f claude-bottle-{agent}-N`"
            )),
            Error::SshBehindUpstreamProxy { repo, .. } => Some(format!(
                "give repo `{repo}` its `https://` URL and a `token_ref`, or remove \
                 `egress.upstream_proxy` if this network lets ssh out"
            )),
            Error::Conflict { hint, .. } => Some(hint.clone()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Manifest(e) => e.fmt(f),
            Error::NoBottle { agent, file } => {
                write!(f, "`{}`: agent `{agent}` names no bottle", file.display())
            }
            Error::MissingBottle {
                name,
                path,
                named_by,
            } => {
                match named_by {
                    NamedBy::Agent { file, line } => {
                        write!(f, "`{}`", file.display())?;
                        if let Some(l) = line {
                            write!(f, ":{l}")?;
                        }
                        f.write_str(": `bottle`")?;
                    }
                    NamedBy::Flag => f.write_str("`--bottle`")?,
                }
                write!(
                    f,
                    ": bottle `{name}` does not exist (looked for `{}`)",
                    path.display()
                )
            }
            Error::UnsetVariable {
                name,
                file,
                line,
                key,
            } => {
                at(f, file, *line)?;
                write!(
                    f,
                    "`{key}` needs the environment variable `{name}`, which is not set"
                )
            }
            Error::ForwardedTokenUnset { name } => write!(
                f,
                "`--forward-oauth-token` needs the environment variable `{name}`, which is not set"
            ),
            Error::UnreadableFile {
                path,
                file,
                line,
                key,
                reason,
            } => {
                at(f, file, *line)?;
                write!(f, "`{key}`: cannot read `{}`: {reason}", path.display())
            }
            Error::EmptyCredential {
                what,
                file,
                line,
                key,
            } => {
                at(f, file, *line)?;
                write!(f, "`{key}`: {what} is empty")
            }
            Error::MissingSkill {
                name,
                path,
                file,
                line,
                key,
            } => {
                at(f, file, *line)?;
                write!(
                    f,
                    "`{key}`: skill `{name}` does not exist (looked for `{}`)",
                    path.display()
                )
            }
            Error::NoRunsc { file, line } => {
                at(f, file, *line)?;
                f.write_str("`runtime`: `runsc` is asked for, but the engine has no gVisor runtime")
            }
            Error::NoSeccomp => f.write_str(
                "the engine applies no seccomp profile to containers, so the agent could make \
                 any system call (user namespaces, mounts: the start of most container \
                 escapes); the bottle is not started",
            ),
            Error::ContainerExists { name } => write!(
                f,
                "`CLAUDE_BOTTLE_CONTAINER` names container `{name}`, which already exists"
            ),
            Error::SlugsExhausted { agent } => {
                write!(f, "99 bottles of agent `{agent}` already exist")
            }
            Error::SshBehindUpstreamProxy {
                repo,
                file,
                line,
                proxy_file,
            } => {
                at(f, file, *line)?;
                write!(
                    f,
                    "`git.repos.{repo}.url`: an ssh repo cannot be reached through the upstream \
                     proxy that `{}` sets in `egress.upstream_proxy` (only https repos can)",
                    proxy_file.display()
                )
            }
            Error::Conflict {
                message,
                file,
                line,
                key,
                ..
            } => {
                at(f, file, *line)?;
                write!(f, "`{key}`: {message}")
            }
        }
    }
}

/// "`FILE`:LINE: ", the line left out when it is 0 (a merged key with no
/// single line, or a flag).
fn at(f: &mut fmt::Formatter<'_>, file: &Path, line: u32) -> fmt::Result {
    write!(f, "`{}`", file.display())?;
    if line > 0 {
        write!(f, ":{line}")?;
    }
    f.write_str(": ")
}

impl std::error::Error for Error {}

impl From<bottle_manifest::Error> for Error {
    fn from(e: bottle_manifest::Error) -> Self {
        Error::Manifest(e)
    }
}
