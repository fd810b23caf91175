//! `init`: commented example manifests, never overwriting a file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::settings::Settings;

const BOTTLE: &str = include_str!("../../templates/bottle-dev.md");
const AGENT: &str = include_str!("../../templates/agent-claude.md");

pub fn run(settings: &Settings) -> Result<ExitCode> {
    let home = &settings.bottle_home;
    for dir in [home.clone(), home.join("bottles"), home.join("agents")] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    write_new(&home.join("bottles/dev.md"), BOTTLE)?;
    write_new(&home.join("agents/claude.md"), AGENT)?;
    stderrln!(
        "\nnext:\n  export CLAUDE_BOTTLE_OAUTH_TOKEN=...   # from `claude setup-token`\n  claude-bottle start claude --dry-run"
    );
    Ok(ExitCode::SUCCESS)
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match file {
        Ok(mut f) => {
            f.write_all(text.as_bytes())
                .with_context(|| format!("cannot write `{}`", path.display()))?;
            stderrln!("wrote   {}", path.display());
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            stderrln!("kept    {} (already there)", path.display());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create `{}`", path.display())),
    }
    Ok(())
}
