//! Paths and switches resolved once from the environment, before any
//! command runs; commands never read the environment for these themselves.

use std::path::PathBuf;

use anyhow::Result;

use crate::env;
use crate::report::UsageError;

#[derive(Debug, Clone)]
pub struct Settings {
    /// The user's home folder.
    pub user_home: PathBuf,
    /// `$CLAUDE_BOTTLE_HOME`.
    pub bottle_home: PathBuf,
    pub cwd: PathBuf,
    pub version: &'static str,
}

impl Settings {
    pub fn from_env() -> Result<Settings> {
        let user_home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| {
                // Needed even with `CLAUDE_BOTTLE_HOME` set: skills are
                // read from `~/.claude/skills`.
                UsageError::new("`HOME` is not set").with_hint(
                    "set `HOME` to your home folder: skills are read from \
                     `~/.claude/skills`, and state is kept in `~/.claude-bottle` \
                     unless `CLAUDE_BOTTLE_HOME` names another folder",
                )
            })?;
        let bottle_home = env::var(env::HOME)
            .map(PathBuf::from)
            .unwrap_or_else(|| user_home.join(".claude-bottle"));
        let cwd = std::env::current_dir()
            .map_err(|e| UsageError::new(format!("cannot read the current directory: {e}")))?;
        if let Some(backend) = env::var(env::BACKEND).filter(|b| b != "docker") {
            return Err(UsageError::new(format!(
                "unknown backend `{backend}` in `{}`",
                env::BACKEND
            ))
            .with_hint("the only backend is `docker`; unset the variable")
            .into());
        }
        Ok(Settings {
            user_home,
            bottle_home,
            cwd,
            version: env!("CARGO_PKG_VERSION"),
        })
    }
}
