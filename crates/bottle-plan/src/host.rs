//! What the plan needs to know about the machine, gathered by the caller.
//!
//! The plan does no I/O itself: environment lookups and file reads go
//! through [`Host`], engine answers arrive as [`EngineFacts`]. Tests supply
//! both in memory.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

/// Lookups the plan makes while resolving.
pub trait Host {
    /// A variable of the CLI's own environment.
    fn env(&self, name: &str) -> Option<String>;
    /// Read a file that may hold a credential (a `file:` token, an ssh key).
    fn read_secret_file(&self, path: &Path) -> io::Result<String>;
    fn dir_exists(&self, path: &Path) -> bool;
    /// Whether [`Host::env`] and [`Host::read_secret_file`] return what is
    /// really there. `false` for a host that stands in for the machine (as
    /// `info` does, so it works before the user has exported a credential):
    /// its values are placeholders, so checks on a value's content (a CA
    /// file holding a certificate) are skipped instead of failing on them.
    fn values_are_real(&self) -> bool {
        true
    }
}

/// A host that reads nothing: every variable is set and every file and
/// folder exists, all with placeholder values that are then thrown away.
/// For showing what an agent is made of (`info`) before the user has
/// exported its credentials.
pub struct StandIn;

impl Host for StandIn {
    fn env(&self, _: &str) -> Option<String> {
        Some("unresolved".into())
    }
    fn read_secret_file(&self, _: &Path) -> io::Result<String> {
        Ok("unresolved".into())
    }
    fn dir_exists(&self, _: &Path) -> bool {
        true
    }
    fn values_are_real(&self) -> bool {
        false
    }
}

/// Facts about this machine and invocation.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The user's home (for `~/.claude/skills`).
    pub home: PathBuf,
    /// `CLAUDE_BOTTLE_HOME`.
    pub bottle_home: PathBuf,
    /// The CLI's version, for default image tags.
    pub version: String,
    /// `None` when the engine could not be reached.
    pub engine: Option<EngineFacts>,
}

/// Read-only answers from the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineFacts {
    /// Names of every container on the engine.
    pub containers: BTreeSet<String>,
    /// Names of every network on the engine.
    pub networks: BTreeSet<String>,
    /// Slugs that labelled objects already carry.
    pub slugs: BTreeSet<String>,
    /// The name gVisor is registered under with the engine (`runsc`, or
    /// another name whose program is `runsc`), if it is.
    pub gvisor_runtime: Option<String>,
    /// The engine's default runtime (`docker info`'s `DefaultRuntime`).
    pub default_runtime: Option<String>,
    /// Whether the engine filters containers' system calls with a seccomp
    /// profile by default (`docker info`'s `SecurityOptions`); `None` when
    /// it does not say.
    pub seccomp: Option<bool>,
    /// Slugs whose objects were left by a CLI that is gone (and not kept
    /// with `--keep`): what `cleanup` would remove.
    pub leftovers: BTreeSet<String>,
}
