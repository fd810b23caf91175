//! A bottle's state folder, `$CLAUDE_BOTTLE_HOME/state/<slug>/` (0700):
//! what teardown needs and the engine does not hold. `owner` (the CLI
//! process that started it), `bottle` (its name, for the summary's route
//! hints), `start-refs` (the workspace's git refs at launch, see
//! `docs/decisions.md`) and `keep` (present for `--keep` bottles, which
//! `cleanup` leaves alone without `--all`). Removed at teardown.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bottle_docker::outbox::{StartRefs, create_private};

use crate::settings::Settings;

/// Largest state file read back (start refs of many repos are the big one).
const MAX_STATE_FILE: u64 = 64 * 1024 * 1024;

/// What a state folder holds, as far as teardown reads it.
#[derive(Debug, Default)]
pub struct State {
    pub bottle: Option<String>,
    pub start_refs: Option<StartRefs>,
}

/// `$CLAUDE_BOTTLE_HOME/state/<slug>`.
pub fn dir(settings: &Settings, slug: &str) -> PathBuf {
    settings.bottle_home.join("state").join(slug)
}

/// Create the folder before anything is launched, with its `owner`, so
/// `cleanup` can tell a run killed mid-launch. A folder left by a dead run
/// of the same slug is replaced.
pub fn create(settings: &Settings, slug: &str, owner: &str) -> anyhow::Result<PathBuf> {
    let d = dir(settings, slug);
    create_in(&d, owner)
        .map_err(|e| anyhow::anyhow!("cannot create the state folder `{}`: {e}", d.display()))?;
    Ok(d)
}

fn create_in(d: &Path, owner: &str) -> io::Result<()> {
    match std::fs::remove_dir_all(d) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    write(d, "owner", owner.as_bytes())
}

/// Add what teardown needs once the bottle is up. Files are replaced.
pub fn record(
    settings: &Settings,
    slug: &str,
    bottle: &str,
    keep: bool,
    start_refs: &StartRefs,
) -> io::Result<()> {
    let d = dir(settings, slug);
    // `owner` is there since `create`.
    write(&d, "bottle", bottle.as_bytes())?;
    write(&d, "start-refs", start_refs.to_text().as_bytes())?;
    if keep {
        write(&d, "keep", b"")?;
    }
    Ok(())
}

/// Read what is there; a missing or unreadable file is `None`.
pub fn read(settings: &Settings, slug: &str) -> State {
    let d = dir(settings, slug);
    State {
        bottle: read_file(&d.join("bottle"))
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty()),
        start_refs: read_file(&d.join("start-refs")).map(|t| StartRefs::parse(&t)),
    }
}

/// Remove the folder; already gone is fine.
pub fn remove(settings: &Settings, slug: &str) -> io::Result<()> {
    match std::fs::remove_dir_all(dir(settings, slug)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let path = dir.join(name);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = create_private(dir, &path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn read_file(path: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_STATE_FILE)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_folder_with_owner() {
        let h = tempfile::tempdir().unwrap();
        let d = h.path().join("state/dev");
        create_in(&d, "host:1:2").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&d.join("owner")), 0o600);
        std::fs::write(d.join("start-refs"), "old").unwrap();
        // A new start of the same slug replaces a dead run's folder.
        create_in(&d, "host:3:4").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("owner")).unwrap(),
            "host:3:4"
        );
        assert!(!d.join("start-refs").exists());
    }
}
